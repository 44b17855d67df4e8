//! Stopping long-running commands on SIGINT or SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{Exit, Failure};
use crate::output::Output;

/// Whether a command has installed a stop of its own ([`signal`]): from
/// then on it decides what one signal does, for the rest of the process
/// (its clean-up after any stop included); the fallback steps in only at
/// a second signal, which ends the process at once.
static HANDLED: AtomicBool = AtomicBool::new(false);

/// Ends the process on SIGINT or SIGTERM before any command has a stop
/// of its own (a consent prompt, a ticket's manifest lookup, hashing a
/// file): the failure is said like any other (text on stderr, or a JSON
/// `error` event under `--json`), with exit 130. Installing handlers
/// means the signal no longer ends the process by itself, so once a
/// command installs its own ([`signal`]) this one leaves the first signal
/// to it, whenever it comes (a clean-up after a stop from elsewhere is
/// not cut short by one Ctrl-C); a second one ends the process at once,
/// exit 130, saying the clean-up was not done: what a clean-up protects
/// (a download's state, the companion's library) is written so that a
/// process killed at any point resumes from it. Started once, before the
/// command runs; without a runtime or handlers a signal ends the process
/// as before.
pub fn end_unhandled_signals(out: Output) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let (ready, installed) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("unhandled-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let handlers = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                );
                let _ = ready.send(());
                let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
                    return;
                };
                // Signals a command's own stop has had: the first is its
                // to handle; a second means "now" (its clean-up is taking
                // too long for whoever sent them).
                let mut handled = 0;
                loop {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    if !HANDLED.load(Ordering::SeqCst) {
                        say_interrupted_and_exit(out, "interrupted");
                    }
                    handled += 1;
                    if handled >= 2 {
                        say_interrupted_and_exit(
                            out,
                            "interrupted again: ending now, before the clean-up is done",
                        );
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

/// Installs the SIGINT and SIGTERM handlers now and resolves on the first
/// signal after this call. Installing them before the command says it is
/// ready (prints its address or offer) means a signal sent as soon as it
/// is ready stops it cleanly instead of killing it. Call it within a tokio
/// runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    // After the handlers: a signal in between ends the process with 130
    // (the fallback's), never nobody's.
    HANDLED.store(true, Ordering::SeqCst);
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            // Without signal handlers, only killing the process stops it.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
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
