//! Stopping long-running commands on SIGINT or SIGTERM.

use std::future::Future;

/// Installs the SIGINT and SIGTERM handlers now and resolves on the first
/// signal after this call. Installing them before the command says it is
/// ready (prints its address or offer) means a signal sent as soon as it
/// is ready stops it cleanly instead of killing it. Call it within a tokio
/// runtime.
pub fn signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
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
