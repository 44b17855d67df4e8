//! One peer as the download sees it: what it has, what it was asked for,
//! how fast it delivers, and how deep its request pipeline should be.
//!
//! The pipeline depth adapts to the peer: `2 * rate * rtt / chunk_size + 2`
//! requests, clamped to the configured range, so the peer always has the
//! next chunk queued by the time it finishes one, whatever its speed and
//! distance. The rate is an exponentially weighted average of per-chunk
//! service times (the time from when the peer could start a chunk to when
//! its last byte arrived).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, HaveBitfield, PeerId};

use crate::download::DownloadConfig;

/// Weight of a new service-time sample.
const RATE_SMOOTHING: f64 = 0.25;
/// Round trip assumed until the transport reports one.
const DEFAULT_RTT: Duration = Duration::from_millis(50);

/// What one peer did for the download.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Verified chunks it delivered first.
    pub chunks: u64,
    /// Verified bytes it delivered first.
    pub bytes: u64,
    /// Verified bytes it delivered after another peer (endgame duplicates).
    pub wasted_bytes: u64,
    /// Chunks that failed their proof.
    pub bad_chunks: u64,
    /// Requests that timed out.
    pub timeouts: u32,
}

/// One connected peer.
#[derive(Debug, Clone)]
pub struct PeerSession {
    peer_id: PeerId,
    has: HaveBitfield,
    /// In-flight requests: chunk -> when it was sent.
    requests: BTreeMap<u32, Instant>,
    /// Smoothed service time per byte, in seconds: the average of times,
    /// not of rates, so that two chunks delivered together (one after a
    /// long wait, one right after it) give their true joint rate instead
    /// of the huge rate of the second alone.
    seconds_per_byte: Option<f64>,
    rtt: Option<Duration>,
    last_delivery: Option<Instant>,
    last_progress: Instant,
    backoff_until: Option<Instant>,
    stats: PeerStats,
}

impl PeerSession {
    /// A peer that just joined with `has`.
    pub fn new(peer_id: PeerId, has: HaveBitfield, now: Instant) -> Self {
        Self {
            peer_id,
            has,
            requests: BTreeMap::new(),
            seconds_per_byte: None,
            rtt: None,
            last_delivery: None,
            last_progress: now,
            backoff_until: None,
            stats: PeerStats::default(),
        }
    }

    /// Its key, the id it proved in the handshake.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The chunks it has.
    pub fn has(&self) -> &HaveBitfield {
        &self.has
    }

    /// What it did so far.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// Its delivery rate in bytes per second, 0 until the first chunk.
    pub fn rate(&self) -> f64 {
        self.measured_rate().unwrap_or(0.0)
    }

    fn measured_rate(&self) -> Option<f64> {
        self.seconds_per_byte
            .filter(|pace| *pace > 0.0)
            .map(|pace| 1.0 / pace)
    }

    /// The rate this peer is delivering at right now: its measured rate,
    /// or less when it has requests in flight and has delivered nothing for
    /// longer than one chunk would take at that rate. A peer that went
    /// quiet looks slow at once, not only when its requests time out.
    pub fn effective_rate(&self, now: Instant, chunk_size: u32) -> f64 {
        let rate = self.rate();
        if self.requests.is_empty() {
            return rate;
        }
        let quiet = now
            .saturating_duration_since(self.last_progress)
            .as_secs_f64();
        if quiet > 0.0 {
            rate.min(f64::from(chunk_size) / quiet)
        } else {
            rate
        }
    }

    /// Requests in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The in-flight requests: chunk and when it was sent.
    pub fn requests(&self) -> impl Iterator<Item = (u32, Instant)> + '_ {
        self.requests.iter().map(|(&chunk, &sent)| (chunk, sent))
    }

    /// Whether `chunk` is requested from this peer.
    pub fn is_requested(&self, chunk: u32) -> bool {
        self.requests.contains_key(&chunk)
    }

    pub(crate) fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// Records an announced chunk; false when it was known (or out of range).
    pub(crate) fn add_have(&mut self, chunk: u32) -> bool {
        matches!(self.has.set(ChunkIndex(chunk), true), Ok(false))
    }

    /// Forgets a chunk the peer said it has but then refused; false when it
    /// was not set.
    pub(crate) fn drop_have(&mut self, chunk: u32) -> bool {
        matches!(self.has.set(ChunkIndex(chunk), false), Ok(true))
    }

    /// The pipeline depth this peer deserves now.
    pub fn pipeline_depth(&self, chunk_size: u32, config: &DownloadConfig) -> usize {
        let Some(rate) = self.measured_rate() else {
            return config
                .initial_pipeline
                .clamp(config.min_pipeline, config.max_pipeline);
        };
        let rtt = self.rtt.unwrap_or(DEFAULT_RTT).as_secs_f64();
        let chunks_per_rtt = rate * rtt / f64::from(chunk_size.max(1));
        let depth = (2.0 * chunks_per_rtt).ceil() as usize + 2;
        depth.clamp(config.min_pipeline, config.max_pipeline)
    }

    pub(crate) fn start_request(&mut self, chunk: u32, now: Instant) {
        if self.requests.is_empty() {
            // An idle peer's stall clock starts with its first request.
            self.last_progress = now;
        }
        self.requests.insert(chunk, now);
    }

    /// Removes the request; returns when it was sent, `None` if it was not
    /// in flight.
    pub(crate) fn finish_request(&mut self, chunk: u32) -> Option<Instant> {
        self.requests.remove(&chunk)
    }

    pub(crate) fn note_progress(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// A chunk it delivered first was verified.
    pub(crate) fn record_delivery(&mut self, bytes: u64, sent: Option<Instant>, now: Instant) {
        self.stats.chunks += 1;
        self.stats.bytes += bytes;
        self.last_progress = now;
        // Service time: from when the peer could start this chunk (the later
        // of our request and its previous delivery) to now.
        let start = match (sent, self.last_delivery) {
            (Some(sent), Some(previous)) => sent.max(previous),
            (Some(sent), None) => sent,
            (None, Some(previous)) => previous,
            (None, None) => now,
        };
        self.last_delivery = Some(now);
        let seconds = now.saturating_duration_since(start).as_secs_f64();
        if bytes == 0 {
            return;
        }
        let sample = seconds / bytes as f64;
        self.seconds_per_byte = match self.seconds_per_byte {
            // A first sample of no time says nothing about the rate yet.
            None if seconds > 0.0 => Some(sample),
            None => None,
            Some(pace) => Some(pace + RATE_SMOOTHING * (sample - pace)),
        };
    }

    pub(crate) fn record_wasted(&mut self, bytes: u64) {
        self.stats.wasted_bytes += bytes;
    }

    pub(crate) fn record_bad_chunk(&mut self) {
        self.stats.bad_chunks += 1;
    }

    pub(crate) fn record_timeout(&mut self) {
        self.stats.timeouts += 1;
    }

    pub(crate) fn back_off(&mut self, until: Instant) {
        self.backoff_until = Some(until);
    }

    pub(crate) fn is_backing_off(&self, now: Instant) -> bool {
        self.backoff_until.is_some_and(|until| now < until)
    }

    /// Requests in flight with nothing delivered for `stall_timeout`.
    pub(crate) fn is_stalled(&self, now: Instant, stall_timeout: Duration) -> bool {
        !self.requests.is_empty()
            && now.saturating_duration_since(self.last_progress) > stall_timeout
    }

    /// Requests that took far longer than this peer's rate predicts: the
    /// `n`-th oldest may take `factor * n` chunk times, and never less than
    /// `min_timeout`.
    pub(crate) fn expired_requests(
        &self,
        now: Instant,
        chunk_size: u32,
        min_timeout: Duration,
        factor: u32,
    ) -> Vec<u32> {
        let chunk_time = match self.measured_rate() {
            Some(rate) if rate > 0.0 => Duration::from_secs_f64(f64::from(chunk_size) / rate),
            _ => Duration::ZERO,
        };
        let mut by_age: Vec<(Instant, u32)> = self
            .requests
            .iter()
            .map(|(&chunk, &sent)| (sent, chunk))
            .collect();
        by_age.sort();
        by_age
            .into_iter()
            .enumerate()
            .filter(|&(position, (sent, _))| {
                let allowed = (chunk_time * factor)
                    .saturating_mul(position as u32 + 1)
                    .max(min_timeout);
                now.saturating_duration_since(sent) > allowed
            })
            .map(|(_, (_, chunk))| chunk)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: Instant) -> PeerSession {
        PeerSession::new(PeerId([7; 32]), HaveBitfield::full(100), now)
    }

    #[test]
    fn pipeline_starts_at_the_initial_depth_and_grows_with_rate_and_rtt() {
        let config = DownloadConfig::default();
        let t0 = Instant::now();
        let mut near = session(t0);
        assert_eq!(
            near.pipeline_depth(1 << 20, &config),
            config.initial_pipeline
        );
        // 100 MiB/s at 1 ms: a fraction of a chunk per round trip.
        near.start_request(0, t0);
        near.record_delivery(1 << 20, Some(t0), t0 + Duration::from_millis(10));
        near.set_rtt(Duration::from_millis(1));
        assert_eq!(near.pipeline_depth(1 << 20, &config), 3);
        // The same rate 100 ms away needs about 20 chunks queued.
        let mut far = near.clone();
        far.set_rtt(Duration::from_millis(100));
        assert_eq!(far.pipeline_depth(1 << 20, &config), 22);
        // And never more than the maximum.
        far.set_rtt(Duration::from_secs(10));
        assert_eq!(far.pipeline_depth(1 << 20, &config), config.max_pipeline);
    }

    #[test]
    fn rate_follows_service_times() {
        let t0 = Instant::now();
        let mut peer = session(t0);
        peer.start_request(0, t0);
        peer.start_request(1, t0);
        let sent = peer.finish_request(0);
        peer.record_delivery(1_000_000, sent, t0 + Duration::from_secs(1));
        assert!((peer.rate() - 1_000_000.0).abs() < 1.0);
        // The second chunk was queued behind the first: its service time
        // starts at the first delivery, not at the request.
        let sent = peer.finish_request(1);
        peer.record_delivery(1_000_000, sent, t0 + Duration::from_millis(1500));
        let pace = 1e-6 + RATE_SMOOTHING * (0.5e-6 - 1e-6);
        assert!(
            (peer.rate() - 1.0 / pace).abs() < 1.0,
            "rate {}",
            peer.rate()
        );
    }

    #[test]
    fn chunks_delivered_together_do_not_inflate_the_rate() {
        // A peer serving two chunks at once at 1 MB/s in all: both arrive
        // after 2 s, the second a microsecond after the first. Averaging
        // rates would see 1 MB/s and 1 TB/s; averaging times sees 1 MB/s.
        let t0 = Instant::now();
        let mut peer = session(t0);
        let mut now = t0;
        for round in 0..20u32 {
            let (a, b) = (2 * round, 2 * round + 1);
            peer.start_request(a, now);
            peer.start_request(b, now);
            now += Duration::from_secs(2);
            let sent = peer.finish_request(a);
            peer.record_delivery(1_000_000, sent, now);
            now += Duration::from_micros(1);
            let sent = peer.finish_request(b);
            peer.record_delivery(1_000_000, sent, now);
        }
        assert!(
            (800_000.0..1_300_000.0).contains(&peer.rate()),
            "rate {}",
            peer.rate()
        );
        let config = DownloadConfig::default();
        peer.set_rtt(Duration::from_millis(1));
        assert_eq!(peer.pipeline_depth(1 << 20, &config), 3);
    }

    #[test]
    fn queued_requests_get_more_time_than_the_first() {
        let t0 = Instant::now();
        let mut peer = session(t0);
        peer.start_request(9, t0);
        let sent = peer.finish_request(9);
        peer.record_delivery(1 << 20, sent, t0 + Duration::from_secs(1));
        for chunk in 0..3 {
            peer.start_request(chunk, t0 + Duration::from_secs(1));
        }
        let min = Duration::from_secs(1);
        // One chunk takes 1 s; with factor 4 the oldest may take 4 s, the
        // second 8 s, the third 12 s.
        let at = |s| t0 + Duration::from_secs(1) + Duration::from_millis(s);
        assert!(peer.expired_requests(at(3_900), 1 << 20, min, 4).is_empty());
        assert_eq!(peer.expired_requests(at(4_100), 1 << 20, min, 4).len(), 1);
        assert_eq!(peer.expired_requests(at(8_100), 1 << 20, min, 4).len(), 2);
        assert_eq!(peer.expired_requests(at(12_100), 1 << 20, min, 4).len(), 3);
    }

    #[test]
    fn stall_clock_starts_with_the_first_request() {
        let t0 = Instant::now();
        let mut peer = session(t0);
        let stall = Duration::from_secs(30);
        let later = t0 + Duration::from_secs(100);
        assert!(
            !peer.is_stalled(later, stall),
            "an idle peer is not stalled"
        );
        peer.start_request(0, later);
        assert!(!peer.is_stalled(later + Duration::from_secs(29), stall));
        assert!(peer.is_stalled(later + Duration::from_secs(31), stall));
        peer.note_progress(later + Duration::from_secs(31));
        assert!(!peer.is_stalled(later + Duration::from_secs(40), stall));
    }

    #[test]
    fn haves_are_counted_once() {
        let t0 = Instant::now();
        let mut peer = PeerSession::new(PeerId([1; 32]), HaveBitfield::new(10), t0);
        assert!(peer.add_have(3));
        assert!(!peer.add_have(3));
        assert!(!peer.add_have(10), "out of range");
        assert!(peer.drop_have(3));
        assert!(!peer.drop_have(3));
    }
}
