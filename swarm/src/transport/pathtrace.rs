//! A connection's path, sampled for diagnosis. With
//! `RUST_LOG=minimodel_swarm::pathtrace=debug` (or `-vv`), every link logs
//! every 250 ms what quinn says of its path since the last sample: the
//! round trip, the default controller's one-way reading of the queue, the
//! congestion window, bytes sent and received, packets
//! lost, congestion events, and the flow-control frames that say a side
//! waited for credit (`docs/transport.md`, "Tracing a path"); the default
//! controller logs each loss with what it made of it, and the piece
//! streams log when each request left, and when each chunk's header, last
//! byte and (sending) acknowledgement came. Off, it costs a check of the
//! filter: the link does not start the sampler.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds of the system clock, within its last 1000 seconds: the
/// same clock in every process on a host, so that the lines of a seeder
/// and a fetch can be set side by side.
pub fn ms() -> f64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs() % 1000) as f64 * 1e3 + f64::from(since.subsec_micros()) / 1e3
}

/// Whether links should sample their paths.
pub fn enabled() -> bool {
    tracing::enabled!(target: "minimodel_swarm::pathtrace", tracing::Level::DEBUG)
}

/// How often a path is sampled.
const EVERY: Duration = Duration::from_millis(250);

/// Samples `connection` every [`EVERY`] until it closes.
pub async fn run(connection: quinn::Connection) {
    let mut last = connection.stats();
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = connection.closed() => return,
            _ = tick.tick() => {}
        }
        let now = connection.stats();
        let (path, was) = (&now.path, &last.path);
        // The default controller's reading of the queue on the way there
        // (`super::oneway`): -1 when it has none fresh (another
        // controller, a peer that does not echo, no stamp lately), and
        // whether the connection counts as sending (stamps go out).
        let forward = super::yielding::YieldingController::forward_delay(&connection);
        let at = std::time::Instant::now();
        let one_way_ms = (forward.as_ref())
            .and_then(|forward| forward.fresh(at))
            .map_or(-1.0, |queue| queue.as_secs_f64() * 1e3);
        let sending = forward
            .as_ref()
            .is_some_and(|forward| forward.is_active(at));
        tracing::debug!(
            target: "minimodel_swarm::pathtrace",
            at_ms = ms(),
            peer = %connection.remote_address(),
            rtt_ms = path.rtt.as_secs_f64() * 1e3,
            one_way_ms,
            sending,
            cwnd = path.cwnd,
            mtu = path.current_mtu,
            sent_bytes = now.udp_tx.bytes - last.udp_tx.bytes,
            received_bytes = now.udp_rx.bytes - last.udp_rx.bytes,
            lost_packets = path.lost_packets - was.lost_packets,
            sent_packets = path.sent_packets - was.sent_packets,
            congestion_events = path.congestion_events - was.congestion_events,
            data_blocked_sent = now.frame_tx.data_blocked - last.frame_tx.data_blocked,
            stream_data_blocked_sent =
                now.frame_tx.stream_data_blocked - last.frame_tx.stream_data_blocked,
            data_blocked_received = now.frame_rx.data_blocked - last.frame_rx.data_blocked,
            stream_data_blocked_received =
                now.frame_rx.stream_data_blocked - last.frame_rx.stream_data_blocked,
            streams_blocked_received =
                now.frame_rx.streams_blocked_uni - last.frame_rx.streams_blocked_uni,
            acks_received = now.frame_rx.acks - last.frame_rx.acks,
            "path"
        );
        last = now;
    }
}
