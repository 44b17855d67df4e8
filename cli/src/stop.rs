//! Stopping long-running commands on SIGINT or SIGTERM.

use minimodel_swarm::platform::StopSignals;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{Exit, Failure};
use crate::output::Output;

/// The signals the fallback thread took, and whether a command has a stop
/// of its own ([`signal`]). Both change under one lock, so that every
/// signal is either before the stop (the process ends at once) or after
/// it (the stop sees it): none falls between them.
struct Signals {
    /// SIGINT and SIGTERM taken so far.
    count: u64,
    /// Whether a command has installed a stop of its own: from then on it
    /// decides what one signal does, for the rest of the process (its
    /// clean-up after any stop included).
    handled: bool,
    /// Signals taken since the last stop was installed; a second one
    /// ends the process at once.
    since_handled: u64,
    /// When the last signal was taken: one within [`SAME_PRESS`] of it is
    /// the same Ctrl-C (a terminal signals the whole process group, and a
    /// wrapper such as a package runner may pass the signal on again).
    last: Option<std::time::Instant>,
}

/// Signals this close together count once.
const SAME_PRESS: std::time::Duration = std::time::Duration::from_millis(200);

static SIGNALS: std::sync::Mutex<Signals> = std::sync::Mutex::new(Signals {
    count: 0,
    handled: false,
    since_handled: 0,
    last: None,
});

/// The count of signals taken, for the stops to wait on; set once the
/// fallback thread has its handlers.
static TAKEN: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> = std::sync::OnceLock::new();

impl Signals {
    /// A signal at `now`: counted (and published on `taken`) unless it is
    /// the same press as the last; what to end the process with, if
    /// anything: "interrupted" before any stop, "interrupted again" at the
    /// second signal after the last stop.
    fn take(
        &mut self,
        now: std::time::Instant,
        taken: &tokio::sync::watch::Sender<u64>,
    ) -> Option<&'static str> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < SAME_PRESS)
        {
            return None;
        }
        self.last = Some(now);
        self.count += 1;
        taken.send_replace(self.count);
        if !self.handled {
            return Some("interrupted");
        }
        self.since_handled += 1;
        (self.since_handled >= 2).then_some("interrupted again: ending now")
    }
}

fn signals() -> std::sync::MutexGuard<'static, Signals> {
    SIGNALS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends the process on SIGINT or SIGTERM before any command has a stop
/// of its own (a consent prompt, a ticket's manifest lookup, hashing a
/// file): the failure is said like any other (text on stderr, or a JSON
/// `error` event under `--json`), with exit 130. Once a command installs
/// its own ([`signal`]), the first signal after that is the command's,
/// whenever it comes (a clean-up after a stop from elsewhere is not cut
/// short by one Ctrl-C); a second one (200 ms or more after it: one press
/// can arrive twice) ends the process at once, exit 130, "interrupted
/// again", without the rest of the clean-up: what a clean-up protects (a
/// download's state, the companion's library) is written so that a
/// process killed at any point resumes from it. Every signal goes through
/// this thread, which hands those after a stop to it. Started once,
/// before the command runs; without a runtime or handlers a command's
/// stop installs handlers of its own, and a signal before it ends the
/// process as the system does.
pub fn end_unhandled_signals(out: Output) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let (ready, installed) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(mut stops) = StopSignals::install() else {
                    let _ = ready.send(());
                    return;
                };
                let taken = TAKEN.get_or_init(|| tokio::sync::watch::channel(0).0);
                let _ = ready.send(());
                loop {
                    stops.recv().await;
                    let ending = signals().take(std::time::Instant::now(), taken);
                    if let Some(what) = ending {
                        say_interrupted_and_exit(out, what);
                    }
                }
            });
        });
    if spawned.is_ok() {
        let _ = installed.recv();
    }
}

/// Says "interrupted" (on a line of its own after a prompt or a bar) and
/// ends with exit 130; an output that cannot be written (a full pipe, a
/// lock the stopped command holds) delays the exit by half a second at
/// most.
fn say_interrupted_and_exit(out: Output, what: &'static str) -> ! {
    let (said, done) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("interrupted".into())
        .spawn(move || {
            use std::io::{IsTerminal, Write};
            if !out.json && std::io::stderr().is_terminal() {
                let _ = writeln!(std::io::stderr().lock());
            }
            out.failure(&Failure::new(Exit::Interrupted, anyhow::anyhow!(what)));
            let _ = said.send(());
        });
    let _ = done.recv_timeout(std::time::Duration::from_millis(500));
    std::process::exit(Exit::Interrupted as i32)
}

/// A stop of the command's own: resolves on the first SIGINT or SIGTERM
/// after this call. Installing it before the command says it is ready
/// (prints its address or offer) means a signal sent as soon as it is
/// ready stops it cleanly instead of ending the process. Call it within a
/// tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    // Through the fallback thread, which takes every signal.
    let through_fallback = TAKEN.get().map(|taken| {
        let taken = taken.subscribe();
        let mut signals = signals();
        signals.handled = true;
        // The first signal from now on is this stop's.
        signals.since_handled = 0;
        (taken, signals.count)
    });
    // Without it, handlers of its own.
    let handlers = through_fallback.is_none().then(|| {
        let handlers = StopSignals::install();
        signals().handled = true;
        handlers
    });
    async move {
        if let Some((mut taken, before)) = through_fallback {
            // The sender lives as long as the process: an error would
            // mean no signal can come.
            if taken.wait_for(|count| *count > before).await.is_err() {
                std::future::pending::<()>().await;
            }
            return;
        }
        let Some(Ok(mut stops)) = handlers else {
            // Without signal handlers, only killing the process stops it.
            return std::future::pending().await;
        };
        stops.recv().await;
    }
}

/// A stop on SIGINT or SIGTERM that remembers whether it happened, so a
/// command can tell an interruption (exit 130) from other ends.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    fired: Arc<AtomicBool>,
}

impl Stop {
    /// Installs the handlers now (see [`signal`]); the future resolves on
    /// the first SIGINT or SIGTERM, and the stop remembers it.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let fired = Arc::clone(&self.fired);
        let signalled = signal();
        async move {
            signalled.await;
            fired.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a signal arrived.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// For a command that runs without an async runtime (`fixture`): the
    /// handlers are installed by a thread of its own before this returns,
    /// and the stop remembers the first SIGINT or SIGTERM for the command
    /// to poll ([`Stop::fired`]) and end cleanly, removing what it had
    /// begun. Without a runtime or handlers, the stop never fires (a signal
    /// then ends the process as before).
    pub fn on_signal_thread() -> Self {
        let stop = Self::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build();
        let Ok(runtime) = runtime else {
            return stop;
        };
        let (ready, installed) = std::sync::mpsc::channel();
        let watched = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // The handlers are installed by this call.
                    let waiting = watched.signal();
                    let _ = ready.send(());
                    waiting.await;
                });
            });
        if spawned.is_ok() {
            let _ = installed.recv();
        }
        stop
    }
}
