//! Closing an endpoint without waiting out its draining period.
//!
//! After a close, quinn keeps each connection draining for three probe
//! timeouts to answer stray packets; `Endpoint::wait_idle` waits for that
//! (40 ms on loopback, 100 ms or more on any real path). A finished
//! command only needs its CONNECTION_CLOSE packets to have left.

use std::time::Duration;

/// Connections closed from our side whose CONNECTION_CLOSE is owed.
#[derive(Debug, Default)]
pub struct Closing(Vec<(quinn::Connection, u64)>);

impl Closing {
    /// Closes each of `connections` that is still open, noting the
    /// datagrams it sent so far: a closed connection sends nothing but its
    /// CONNECTION_CLOSE, so one more datagram means it left. One closed
    /// before (by the peer, or earlier from our side) owes nothing here.
    pub fn close(
        connections: impl IntoIterator<Item = quinn::Connection>,
        reason: &'static [u8],
    ) -> Self {
        Self(
            connections
                .into_iter()
                .filter(|connection| connection.close_reason().is_none())
                .map(|connection| {
                    let sent = connection.stats().udp_tx.datagrams;
                    connection.close(0u32.into(), reason);
                    (connection, sent)
                })
                .collect(),
        )
    }

    /// Closes `endpoint` (and any connection on it still open), then waits
    /// until every owed CONNECTION_CLOSE left, at most `bound`. The runtime
    /// gets a few turns first, so that the drivers of connections closed
    /// earlier, woken by their close, have run.
    pub async fn flush(self, endpoint: &quinn::Endpoint, reason: &'static [u8], bound: Duration) {
        endpoint.close(0u32.into(), reason);
        let owed = self.0;
        let left = async {
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            while owed
                .iter()
                .any(|(connection, sent)| connection.stats().udp_tx.datagrams <= *sent)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let _ = tokio::time::timeout(bound, left).await;
    }
}
