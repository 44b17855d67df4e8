//! Stopping long-running commands on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers, only killing the process stops it.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

/// A stop on SIGINT or SIGTERM that remembers whether it happened, so a
/// command can tell an interruption (exit 130) from other ends.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    fired: Arc<AtomicBool>,
}

impl Stop {
    /// Resolves on the first SIGINT or SIGTERM, and remembers it.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let fired = Arc::clone(&self.fired);
        async move {
            signal().await;
            fired.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a signal arrived.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}
