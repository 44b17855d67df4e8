//! Stopping long-running commands on SIGINT or SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::exit::{Exit, Failure};
use crate::output::Output;

/// How many [`signal`] futures are alive: while one is, the command that
/// holds it decides what a signal does.
static LISTENING: AtomicUsize = AtomicUsize::new(0);
/// Whether a [`signal`] future has seen its signal: the command that held
/// it is stopping cleanly, even once the future is gone.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Counts a [`signal`] future as alive.
struct Listening;

impl Listening {
    fn new() -> Self {
        LISTENING.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        LISTENING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ends the process on SIGINT or SIGTERM that no command has a stop for
/// (a consent prompt, a ticket's manifest lookup, hashing a file): the
/// failure is said like any other (text on stderr, or a JSON `error`
/// event under `--json`), with exit 130. Installing handlers means the
/// signal no longer ends the process by itself, so once a command holds
/// a [`signal`] future (or has seen its signal) this one stays out of its
/// way. Started once, before the command runs; without a runtime or
/// handlers a signal ends the process as before.
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
                loop {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    if LISTENING.load(Ordering::SeqCst) == 0 && !CLAIMED.load(Ordering::SeqCst) {
                        out.failure(&Failure::new(
                            Exit::Interrupted,
                            anyhow::anyhow!("interrupted"),
                        ));
                        std::process::exit(Exit::Interrupted as i32);
                    }
                }
            });
        });
    if spawned.is_ok() {
        let _ = installed.recv();
    }
}

/// Installs the SIGINT and SIGTERM handlers now and resolves on the first
/// signal after this call. Installing them before the command says it is
/// ready (prints its address or offer) means a signal sent as soon as it
/// is ready stops it cleanly instead of killing it. Call it within a tokio
/// runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listening = Listening::new();
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let _listening = listening;
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            // Without signal handlers, only killing the process stops it.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        CLAIMED.store(true, Ordering::SeqCst);
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
