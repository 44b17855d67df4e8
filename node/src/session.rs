//! One peer as the download sees it: what it has, what it was asked for,
//! how fast it delivers, and how deep its request pipeline should be.
//!
//! The pipeline depth adapts to the peer: `2 * rate * rtt / chunk_size + 1`
//! requests, clamped to the configured range, so the peer always has the
//! next chunk queued by the time it finishes one, whatever its speed and
//! distance. The rate is an exponentially weighted average of the bytes it
//! delivered per period of at least [`RATE_PERIOD`] while it had requests:
//! chunks that complete in a burst (verification queued behind a busy core)
//! do not make a peer look faster than it is.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, HaveBitfield, PeerId};

use crate::config::DownloadConfig;

/// Weight of a new rate sample.
const RATE_SMOOTHING: f64 = 0.25;
/// Deliveries are summed over at least this long per rate sample.
pub const RATE_PERIOD: Duration = Duration::from_millis(200);
/// A chunk's check (its proof, then the write) that takes at least this
/// share of the time its link takes to bring one chunk asks for one more
/// request in the peer's pipeline ([`PeerDownload::pipeline_depth`]).
const CHECK_SHARE: f64 = 0.25;
/// Weight of a new check time in the running mean.
const CHECK_SMOOTHING: f64 = 0.125;
/// Round trip assumed until the transport reports one.
const DEFAULT_RTT: Duration = Duration::from_millis(50);
/// A peer whose smallest round trip is at least this long is far
/// ([`PeerDownload::is_far`]).
pub const FAR_RTT: Duration = Duration::from_millis(20);
/// A link counts as having idled before a piece header only after at least
/// this long without piece bytes (a busy machine's scheduling is not an
/// idle link).
const MIN_QUIET: Duration = Duration::from_millis(5);
/// The bytes of a few datagrams: at a slow peer's rate, the gap between two
/// of them is not an idle link either.
const QUIET_BYTES: f64 = 4.0 * 1452.0;

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

impl PeerStats {
    /// Whether the peer delivered any bytes, verified or bad.
    pub fn delivered_any(&self) -> bool {
        self.chunks > 0 || self.bytes > 0 || self.wasted_bytes > 0 || self.bad_chunks > 0
    }

    /// Adds another session's figures of the same peer.
    pub fn add(&mut self, other: &PeerStats) {
        self.chunks += other.chunks;
        self.bytes += other.bytes;
        self.wasted_bytes += other.wasted_bytes;
        self.bad_chunks += other.bad_chunks;
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
    }
}

/// One connected peer.
#[derive(Debug, Clone)]
pub struct PeerDownload {
    peer_id: PeerId,
    has: HaveBitfield,
    /// In-flight requests: chunk -> when it was sent.
    requests: BTreeMap<u32, Instant>,
    /// Those of them whose piece stream began.
    begun: BTreeSet<u32>,
    /// Those of them that arrived whole and are being checked, and since
    /// when.
    arrived: BTreeMap<u32, Instant>,
    /// The running mean of the time from a chunk's arrival to the end of
    /// its check ([`Self::note_checked`]).
    check_time: Option<Duration>,
    rate: Option<f64>,
    rtt: Option<Duration>,
    /// Start of the current rate period and the bytes delivered in it.
    window_start: Option<Instant>,
    window_bytes: u64,
    last_progress: Instant,
    backoff_until: Option<Instant>,
    stats: PeerStats,
    /// Chunks it announced since it joined.
    haves: u64,
    /// The picker had nothing for it when the picker's returns and its own
    /// announcements stood at these counts.
    dry_at: Option<(u64, u64)>,
    /// The pipeline depth its link showed it needs ([`Self::note_header`]):
    /// 0 until its link idled waiting for a request of ours.
    probed: usize,
    /// Headers that came over a busy link since `probed` last moved.
    busy_headers: usize,
    /// When the picker last had nothing for it.
    dry_when: Option<Instant>,
}

impl PeerDownload {
    /// A peer that just joined with `has`.
    pub fn new(peer_id: PeerId, has: HaveBitfield, now: Instant) -> Self {
        Self {
            peer_id,
            has,
            requests: BTreeMap::new(),
            begun: BTreeSet::new(),
            arrived: BTreeMap::new(),
            check_time: None,
            rate: None,
            rtt: None,
            window_start: None,
            window_bytes: 0,
            last_progress: now,
            backoff_until: None,
            stats: PeerStats::default(),
            haves: 0,
            dry_at: None,
            probed: 0,
            busy_headers: 0,
            dry_when: None,
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
        self.rate.unwrap_or(0.0)
    }

    /// The rate this peer is delivering at right now: its measured rate,
    /// or less when it has requests in flight and has delivered nothing for
    /// longer than one chunk would take at that rate. A peer that went
    /// quiet looks slow at once, not only when its requests time out.
    pub fn effective_rate(&self, now: Instant, chunk_size: u32) -> f64 {
        let rate = self.rate();
        if self.awaited().next().is_none() {
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

    /// Requests in flight whose piece stream began: their bytes arrive,
    /// and are held until verified and written.
    pub fn requests_begun(&self) -> usize {
        self.begun.len()
    }

    /// Its requests not begun that the path itself holds
    /// ([`DownloadConfig::max_in_flight_bytes`]): for a far peer
    /// ([`Self::is_far`]), those its rate brings in two round trips (a
    /// request's own round trip, and a lost packet's repair on a lossy
    /// path), whole chunks, at most those not begun; none for a near peer
    /// or one whose rate is not known yet. Requests beyond them wait in the
    /// peer's queue behind other downloaders' uploads, not on the path.
    pub fn requests_on_the_path(&self, chunk_size: u32) -> usize {
        let (true, Some(rate)) = (self.is_far(), self.rate) else {
            return 0;
        };
        let path = 2.0 * rate * self.rtt().as_secs_f64() / f64::from(chunk_size.max(1));
        let not_begun = self.requests_in_flight() - self.requests_begun();
        not_begun.min(path.floor() as usize)
    }

    /// The piece stream of an in-flight request began.
    pub(crate) fn begin(&mut self, chunk: u32) {
        if self.requests.contains_key(&chunk) {
            self.begun.insert(chunk);
        }
    }

    /// An in-flight request's chunk arrived whole, and its check begins.
    /// False when it was not in flight (or had arrived already).
    pub(crate) fn arrive(&mut self, chunk: u32, now: Instant) -> bool {
        if !self.requests.contains_key(&chunk) || self.arrived.contains_key(&chunk) {
            return false;
        }
        self.arrived.insert(chunk, now);
        true
    }

    /// Whether `chunk` arrived whole from this peer and waits for its
    /// check.
    pub(crate) fn is_arrived(&self, chunk: u32) -> bool {
        self.arrived.contains_key(&chunk)
    }

    /// The check of an arrived chunk ended: its time goes into the running
    /// mean ([`Self::check_time`]).
    pub(crate) fn note_checked(&mut self, chunk: u32, now: Instant) {
        let Some(arrived) = self.arrived.remove(&chunk) else {
            return;
        };
        let took = now.saturating_duration_since(arrived);
        self.check_time = Some(match self.check_time {
            None => took,
            Some(mean) => mean.mul_f64(1.0 - CHECK_SMOOTHING) + took.mul_f64(CHECK_SMOOTHING),
        });
    }

    /// How long a chunk from this peer takes from its arrival to the end
    /// of its check, on the running mean; zero until one was checked.
    pub fn check_time(&self) -> Duration {
        self.check_time.unwrap_or_default()
    }

    /// The in-flight requests: chunk and when it was sent.
    pub fn requests(&self) -> impl Iterator<Item = (u32, Instant)> + '_ {
        self.requests.iter().map(|(&chunk, &sent)| (chunk, sent))
    }

    /// Whether `chunk` is requested from this peer.
    pub fn is_requested(&self, chunk: u32) -> bool {
        self.requests.contains_key(&chunk)
    }

    /// Its delivery rate, as if measured.
    #[cfg(test)]
    pub(crate) fn set_rate(&mut self, rate: f64) {
        self.rate = Some(rate);
    }

    /// A round-trip sample. The pipeline follows the smallest one seen:
    /// the path's own delay, not the queueing of a busy machine, which a
    /// deeper pipeline would only make worse.
    pub(crate) fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(self.rtt.map_or(rtt, |known| known.min(rtt)));
    }

    /// The smallest round trip seen (50 ms until one is).
    pub fn rtt(&self) -> Duration {
        self.rtt.unwrap_or(DEFAULT_RTT)
    }

    /// The smallest round trip seen, once one is.
    pub fn known_rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Whether its smallest round trip, once known, is [`FAR_RTT`] or
    /// more. A far peer's requests wait long for their pieces to begin
    /// (the download's budget lets more of them wait), and its pipeline
    /// learns from its link's idling ([`Self::note_header`]). A near
    /// peer's requests take about their pieces' own time, which its rate
    /// covers; and there a busy receiver's reads pause for longer than
    /// the round trip, which would look like an idle link.
    pub fn is_far(&self) -> bool {
        self.rtt.is_some_and(|rtt| rtt >= FAR_RTT)
    }

    /// Records an announced chunk; false when it was known (or out of range).
    pub(crate) fn add_have(&mut self, chunk: u32) -> bool {
        let new = matches!(self.has.set(ChunkIndex(chunk), true), Ok(false));
        self.haves += u64::from(new);
        new
    }

    /// Whether the picker had nothing for this peer the last time it was
    /// asked, and nothing changed since that could give it something: no
    /// chunk went back to missing (`returns`, [`PiecePicker::returns`]) and
    /// the peer announced none. Picking only takes chunks away.
    ///
    /// [`PiecePicker::returns`]: crate::picker::PiecePicker::returns
    pub(crate) fn is_dry(&self, returns: u64) -> bool {
        self.dry_at == Some((returns, self.haves))
    }

    /// Whether it could take a request asked again: nothing in flight from
    /// us, not backing off, and nothing new for it in the picker.
    pub(crate) fn is_idle(&self, now: Instant, returns: u64) -> bool {
        self.requests_in_flight() == 0 && !self.is_backing_off(now) && self.is_dry(returns)
    }

    /// The picker has nothing for this peer now.
    pub(crate) fn set_dry(&mut self, returns: u64, now: Instant) {
        self.dry_at = Some((returns, self.haves));
        self.dry_when = Some(now);
    }

    /// Forgets a chunk the peer said it has but then refused; false when it
    /// was not set.
    pub(crate) fn drop_have(&mut self, chunk: u32) -> bool {
        matches!(self.has.set(ChunkIndex(chunk), false), Ok(true))
    }

    /// The pipeline depth this peer deserves now: what its rate brings in
    /// `pipeline_round_trips` of its round trip, and the chunk being sent;
    /// one more when a chunk's check takes a noticeable share
    /// ([`CHECK_SHARE`]) of the time the link takes to bring one (a request
    /// stays in flight until its chunk is checked, so on a fast link the
    /// chunk being checked would otherwise leave the link idle; never more
    /// than one, as more would only wait in memory when checking is what
    /// is slow); more when its link showed that is too few
    /// ([`Self::note_header`]).
    pub fn pipeline_depth(&self, chunk_size: u32, config: &DownloadConfig) -> usize {
        let Some(rate) = self.rate else {
            return config
                .initial_pipeline
                .clamp(config.min_pipeline, config.max_pipeline);
        };
        let rtt = self.rtt.unwrap_or(DEFAULT_RTT).as_secs_f64();
        let chunks_per_rtt = rate * rtt / f64::from(chunk_size.max(1));
        let checked = rate * self.check_time().as_secs_f64() / f64::from(chunk_size.max(1));
        let depth = (config.pipeline_round_trips * chunks_per_rtt).ceil() as usize
            + 1
            + usize::from(checked >= CHECK_SHARE);
        depth
            .max(self.probed)
            .clamp(config.min_pipeline, config.max_pipeline)
    }

    /// The depth [`Self::note_header`] found the link needs (0: none
    /// beyond the rate's).
    pub fn probed_depth(&self) -> usize {
        self.probed
    }

    /// The header of `chunk`'s piece stream came after the link from this
    /// peer carried no piece bytes for `quiet`: a far peer's
    /// ([`Self::is_far`]) pipeline learns from it; a near one's does not.
    ///
    /// The rate's pipeline grows only as fast as the rate it lets the peer
    /// show: by the pipeline's round trips over the time a request takes.
    /// On a long lossy path a request takes about two round trips (nearly
    /// every chunk waits for a lost packet's repair), so it grows slowly
    /// there. The link tells more. When it idled (quiet for an eighth of
    /// a round trip, and longer than a few datagrams take at the peer's
    /// rate), the header came within about a round trip of its request,
    /// and nothing on our side held requests back meanwhile (the picker
    /// had chunks for the peer, the download was not held, nor at its
    /// budget or rate limit: `held`, and we did not back off from the
    /// peer), then the peer had nothing of ours to send while our request
    /// travelled: the pipeline was short. It then doubles, or grows by
    /// what the rate would have brought in while the link idled if that is
    /// more: a slow start, as TCP's. A header over a busy link, or one the peer held back
    /// (serving others), says nothing of the kind: after as many such
    /// headers as the probed depth, it shrinks by one, so that it follows
    /// the path down again, and the rate's depth takes over.
    pub(crate) fn note_header(
        &mut self,
        chunk: u32,
        quiet: Duration,
        held: Option<Instant>,
        chunk_size: u32,
        config: &DownloadConfig,
        now: Instant,
    ) {
        let (Some(&sent), Some(rate)) = (self.requests.get(&chunk), self.rate) else {
            return;
        };
        if rate <= 0.0 || !self.is_far() {
            return;
        }
        let rtt = self.rtt();
        let threshold = (rtt / 8)
            .max(MIN_QUIET)
            .max(Duration::from_secs_f64((QUIET_BYTES / rate).min(60.0)));
        let waited = now.saturating_duration_since(sent);
        let quiet_from = now.checked_sub(quiet).unwrap_or(sent);
        // Quiet for want of a request: not while the picker had nothing
        // for the peer, the download held its requests back (`held`: the
        // hold, the budget, the rate limit), or we backed off from it.
        let ours = |when: Option<Instant>| when.is_some_and(|when| when >= quiet_from);
        let idled = quiet >= threshold
            && waited <= rtt * 3 / 2 + threshold
            && !ours(self.dry_when)
            && !ours(held)
            && !ours(self.backoff_until);
        if idled {
            // The chunks the rate would have brought in while the link
            // idled.
            let missed =
                (quiet.as_secs_f64() * rate / f64::from(chunk_size.max(1))).ceil() as usize;
            let depth = self.pipeline_depth(chunk_size, config);
            self.probed = (depth + missed.max(depth)).min(config.max_pipeline);
            self.busy_headers = 0;
        } else if self.probed > 0 {
            self.busy_headers += 1;
            if self.busy_headers >= self.probed {
                self.probed -= 1;
                self.busy_headers = 0;
            }
        }
    }

    pub(crate) fn start_request(&mut self, chunk: u32, now: Instant) {
        if self.awaited().next().is_none() {
            // An idle peer's stall clock starts with its first request
            // (one whose chunk is here being checked leaves it idle), and
            // so does its rate period: idle time is not slowness.
            self.last_progress = now;
        }
        if self.requests.is_empty() && self.window_bytes == 0 {
            self.window_start = Some(now);
        }
        self.requests.insert(chunk, now);
    }

    /// Removes the request; returns when it was sent, `None` if it was not
    /// in flight.
    pub(crate) fn finish_request(&mut self, chunk: u32) -> Option<Instant> {
        self.begun.remove(&chunk);
        self.arrived.remove(&chunk);
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
        let start = *self.window_start.get_or_insert(sent.unwrap_or(now));
        self.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(start);
        if self.rate.is_none() || elapsed >= RATE_PERIOD {
            let seconds = elapsed.as_secs_f64();
            if seconds > 0.0 {
                let sample = self.window_bytes as f64 / seconds;
                self.rate = Some(match self.rate {
                    None => sample,
                    Some(rate) => rate + RATE_SMOOTHING * (sample - rate),
                });
            }
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
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

    /// Requests awaited (their chunks not here yet) with nothing
    /// delivered for `silence_timeout` (true from the deadline
    /// [`Self::next_deadline`] names on).
    pub(crate) fn is_silent(&self, now: Instant, silence_timeout: Duration) -> bool {
        self.awaited().next().is_some()
            && now.saturating_duration_since(self.last_progress) >= silence_timeout
    }

    /// The earliest moment something about this peer is due: a request
    /// expires ([`Self::expired_requests`]), it counts as stalled, or its
    /// back-off ends (a back-off that ended before `now` is due no more).
    pub(crate) fn next_deadline(
        &self,
        now: Instant,
        chunk_size: u32,
        min_timeout: Duration,
        factor: u32,
        silence_timeout: Duration,
    ) -> Option<Instant> {
        // The n-th oldest request (from 0) is allowed n + 1 times the
        // allowance of one: sent times and allowances both grow with n, so
        // the oldest request expires first.
        let backoff = self.backoff_until.filter(|until| *until > now);
        // A chunk here whose verdict never came is given up on.
        let lost = (self.arrived.values().min()).map(|arrived| *arrived + lost_after(min_timeout));
        // Most peers of a large swarm have nothing in flight from us: only
        // a back-off can be due then.
        let Some(oldest) = self.awaited().map(|(_, sent)| sent).min() else {
            return [lost, backoff].into_iter().flatten().min();
        };
        let expiry = self
            .rate
            .is_some()
            .then(|| oldest + (self.chunk_time(chunk_size) * factor).max(min_timeout));
        let stall = Some(self.last_progress + silence_timeout);
        [expiry, stall, lost, backoff].into_iter().flatten().min()
    }

    /// The in-flight requests whose chunk has not arrived whole yet: one
    /// that arrived is being checked here, and its time is ours, not the
    /// peer's.
    pub(crate) fn awaited(&self) -> impl Iterator<Item = (u32, Instant)> + '_ {
        (self.requests.iter())
            .filter(|(chunk, _)| !self.is_arrived(**chunk))
            .map(|(&chunk, &sent)| (chunk, sent))
    }

    fn chunk_time(&self, chunk_size: u32) -> Duration {
        match self.rate {
            Some(rate) if rate > 0.0 => Duration::from_secs_f64(f64::from(chunk_size) / rate),
            _ => Duration::ZERO,
        }
    }

    /// Requests that took far longer than this peer's rate predicts: the
    /// `n`-th oldest may take `factor * n` chunk times, and never less than
    /// `min_timeout`. A request expires at the deadline
    /// [`Self::next_deadline`] names for it, not after it.
    ///
    /// Until its first chunk arrives the peer's rate is unknown, and no
    /// request expires: over a slow path the first few chunks can take
    /// longer than `min_timeout` together (a lossy 100 ms path carries a
    /// few hundred KB/s), and expiring them would cancel work in progress
    /// and drop an honest peer. A peer that delivers nothing at all is
    /// dropped at the stall timeout instead. A chunk that arrived whole
    /// and waits for its check ([`Self::arrive`]) does not expire this
    /// way, and does not count among the older ones: a slow check here is
    /// not the peer's delay, and expiring it would send for the same bytes
    /// again. Only one whose verdict has not come twice `min_timeout`
    /// after it arrived is given up on, so that a check lost on our side
    /// cannot hold its chunk for ever.
    pub(crate) fn expired_requests(
        &self,
        now: Instant,
        chunk_size: u32,
        min_timeout: Duration,
        factor: u32,
    ) -> Vec<u32> {
        let lost = (self.arrived.iter())
            .filter(|(_, arrived)| {
                now.saturating_duration_since(**arrived) >= lost_after(min_timeout)
            })
            .map(|(&chunk, _)| chunk);
        let lost: Vec<u32> = lost.collect();
        if self.rate.is_none() {
            return lost;
        }
        let chunk_time = self.chunk_time(chunk_size);
        let mut by_age: Vec<(Instant, u32)> =
            self.awaited().map(|(chunk, sent)| (sent, chunk)).collect();
        by_age.sort();
        by_age
            .into_iter()
            .enumerate()
            .filter(|&(position, (sent, _))| {
                let allowed = (chunk_time * factor)
                    .saturating_mul(position as u32 + 1)
                    .max(min_timeout);
                now.saturating_duration_since(sent) >= allowed
            })
            .map(|(_, (_, chunk))| chunk)
            .chain(lost)
            .collect()
    }
}

/// How long a chunk that arrived may wait for its verdict before it is
/// taken as lost ([`PeerDownload::expired_requests`]): twice the least
/// request timeout (30 s by default). A check takes milliseconds.
fn lost_after(min_timeout: Duration) -> Duration {
    min_timeout.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: Instant) -> PeerDownload {
        PeerDownload::new(PeerId([7; 32]), HaveBitfield::full(100), now)
    }

    #[test]
    fn before_its_first_chunk_a_peer_is_held_to_the_stall_timeout_only() {
        let config = DownloadConfig::default();
        let t0 = Instant::now();
        let mut slow = session(t0);
        for chunk in 0..4 {
            slow.start_request(chunk, t0);
        }
        let chunk = 1 << 20;
        let (min, factor, stall) = (
            config.min_request_timeout,
            config.request_timeout_factor,
            config.silence_timeout,
        );
        let later = t0 + min + Duration::from_secs(5);
        assert!(slow.expired_requests(later, chunk, min, factor).is_empty());
        assert_eq!(
            slow.next_deadline(t0, chunk, min, factor, stall),
            Some(t0 + stall)
        );
        assert!(slow.is_silent(t0 + stall, stall));
        // Once it delivered, its rate sets the timeouts: 1 MiB in 10 s
        // allows the oldest remaining request 4 chunk times (40 s).
        let t1 = t0 + Duration::from_secs(10);
        slow.finish_request(0);
        slow.record_delivery(chunk.into(), Some(t0), t1);
        let oldest = t0 + Duration::from_secs(40);
        assert!(
            slow.expired_requests(oldest - Duration::from_millis(1), chunk, min, factor)
                .is_empty()
        );
        assert_eq!(slow.expired_requests(oldest, chunk, min, factor), vec![1]);
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
        assert_eq!(near.pipeline_depth(1 << 20, &config), 2);
        // A busy moment does not deepen the pipeline: the smallest round
        // trip counts.
        near.set_rtt(Duration::from_millis(40));
        assert_eq!(near.pipeline_depth(1 << 20, &config), 2);
        // The same rate 100 ms away: ten chunks a round trip, three round
        // trips of them and the one being sent.
        let mut far = PeerDownload::new(PeerId([8; 32]), HaveBitfield::full(100), t0);
        far.start_request(0, t0);
        far.record_delivery(1 << 20, Some(t0), t0 + Duration::from_millis(10));
        far.set_rtt(Duration::from_millis(100));
        assert_eq!(far.pipeline_depth(1 << 20, &config), 31);
        let two = DownloadConfig {
            pipeline_round_trips: 2.0,
            ..config.clone()
        };
        assert_eq!(far.pipeline_depth(1 << 20, &two), 21);
        // And never more than the maximum.
        let mut very_far = far.clone();
        very_far.rtt = Some(Duration::from_secs(10));
        assert_eq!(
            very_far.pipeline_depth(1 << 20, &config),
            config.max_pipeline
        );
    }

    #[test]
    fn a_check_that_takes_a_quarter_of_a_chunk_s_time_on_the_link_asks_for_one_more_request() {
        let config = DownloadConfig::default();
        let t0 = Instant::now();
        let us = |n| t0 + Duration::from_micros(n);
        // 1 MiB in 1 ms, 0.2 ms away (a copy on one machine): the least
        // pipeline, two.
        let mut near = PeerDownload::new(PeerId([7; 32]), HaveBitfield::full(100), t0);
        near.set_rtt(Duration::from_micros(200));
        let mut at = 0;
        for chunk in 0..300 {
            near.start_request(chunk, us(at));
            at += 1_000;
            assert!(near.arrive(chunk, us(at)));
            assert!(!near.arrive(chunk, us(at)), "arrived once");
            // Checked at once (the simulator's way): no more depth.
            near.note_checked(chunk, us(at));
            near.record_delivery(1 << 20, Some(us(at - 1_000)), us(at));
            near.finish_request(chunk);
        }
        assert_eq!(near.pipeline_depth(1 << 20, &config), 2);
        // `chunks` asked at `at`, arrived 1 ms later, each checked `check`
        // after it arrived.
        fn checks(
            session: &mut PeerDownload,
            chunks: std::ops::Range<u32>,
            at: Instant,
            check: Duration,
        ) {
            for chunk in chunks {
                session.start_request(chunk, at);
                let arrived = at + Duration::from_millis(1);
                assert!(session.arrive(chunk, arrived));
                session.note_checked(chunk, arrived + check);
                session.finish_request(chunk);
            }
        }
        let at = us(at);
        // Checks of 0.2 ms, a fifth of the chunk's time: not yet.
        let mut quick_checks = near.clone();
        checks(&mut quick_checks, 300..340, at, Duration::from_micros(200));
        assert_eq!(quick_checks.pipeline_depth(1 << 20, &config), 2);
        // Checks of 0.3 ms, a third of the chunk's time: one more.
        let mut slow_checks = near.clone();
        checks(&mut slow_checks, 300..340, at, Duration::from_micros(300));
        assert!(slow_checks.check_time() > Duration::from_micros(250));
        assert_eq!(slow_checks.pipeline_depth(1 << 20, &config), 3);
        // Checks of 30 ms, thirty chunks' time: still one more only.
        let mut slower = slow_checks.clone();
        checks(&mut slower, 340..380, at, Duration::from_millis(30));
        assert_eq!(slower.pipeline_depth(1 << 20, &config), 3);
        // A home uplink: 256 KiB in a second, a check of 1 ms is noise.
        let mut home = PeerDownload::new(PeerId([9; 32]), HaveBitfield::full(100), t0);
        home.set_rtt(Duration::from_millis(40));
        home.start_request(0, t0);
        assert!(home.arrive(0, t0 + Duration::from_secs(1)));
        home.note_checked(0, t0 + Duration::from_millis(1_001));
        home.record_delivery(1 << 18, Some(t0), t0 + Duration::from_secs(1));
        home.finish_request(0);
        assert_eq!(home.check_time(), Duration::from_millis(1));
        assert_eq!(home.pipeline_depth(1 << 18, &config), 2);
        // A chunk never asked for does not arrive.
        assert!(!home.arrive(5, t0));
    }

    #[test]
    fn a_link_that_idled_waiting_for_a_request_doubles_the_pipeline() {
        let config = DownloadConfig::default();
        let chunk = 1 << 20;
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        // 1 MiB in 200 ms, 100 ms away: the rate's depth is 3.
        let mut far = session(t0);
        far.set_rtt(ms(100));
        far.start_request(0, t0);
        far.finish_request(0);
        far.record_delivery(chunk.into(), Some(t0), t0 + ms(200));
        assert_eq!(far.pipeline_depth(chunk, &config), 3);
        let header = |peer: &mut PeerDownload, n: u32, sent: Instant, after: Duration, quiet| {
            peer.start_request(n, sent);
            peer.note_header(n, quiet, None, chunk, &config, sent + after);
            peer.finish_request(n);
            peer.pipeline_depth(chunk, &config)
        };
        let t1 = t0 + ms(300);
        // Quiet for less than an eighth of a round trip: a busy link.
        assert_eq!(header(&mut far, 1, t1, ms(105), ms(10)), 3);
        // Quiet for 50 ms, the header a round trip after its request: the
        // link idled for want of a request. The depth doubles.
        assert_eq!(header(&mut far, 2, t1, ms(105), ms(50)), 6);
        assert_eq!(far.probed_depth(), 6);
        // A header the peer held back (four round trips after its request)
        // says nothing of our pipeline, however quiet the link was: it
        // counts as one over a busy link.
        assert_eq!(header(&mut far, 3, t1, ms(400), ms(300)), 6);
        // Six such headers take one back.
        for n in 4..8 {
            assert_eq!(header(&mut far, n, t1, ms(105), Duration::ZERO), 6);
        }
        assert_eq!(header(&mut far, 8, t1, ms(105), Duration::ZERO), 5);
        // A link that idled while the picker had nothing for the peer: no
        // growth.
        let t2 = t1 + ms(1_000);
        far.set_dry(0, t2);
        assert_eq!(header(&mut far, 9, t2, ms(105), ms(150)), 5);
        // Nor while the download held its requests back, or we backed off
        // from the peer.
        let t3 = t2 + ms(500);
        far.start_request(10, t3);
        far.note_header(10, ms(150), Some(t3), chunk, &config, t3 + ms(105));
        far.finish_request(10);
        assert_eq!(far.pipeline_depth(chunk, &config), 5);
        far.back_off(t3 + ms(10));
        assert_eq!(header(&mut far, 11, t3 + ms(10), ms(105), ms(150)), 5);
        // Once nothing held it back, an idle link counts.
        let t4 = t3 + ms(500);
        assert_eq!(header(&mut far, 12, t4, ms(105), ms(80)), 10);
        // Never past the maximum.
        for n in 13..20 {
            header(&mut far, n, t4, ms(105), ms(80));
        }
        assert_eq!(far.pipeline_depth(chunk, &config), config.max_pipeline);
    }

    #[test]
    fn rate_is_bytes_over_time_and_ignores_bursts() {
        let t0 = Instant::now();
        let mut peer = session(t0);
        for chunk in 0..8 {
            peer.start_request(chunk, t0);
        }
        // The first chunk after 100 ms gives the first estimate.
        let sent = peer.finish_request(0);
        peer.record_delivery(1_000_000, sent, t0 + Duration::from_millis(100));
        assert!(
            (peer.rate() - 10_000_000.0).abs() < 1.0,
            "rate {}",
            peer.rate()
        );
        // Six chunks in one burst, then the seventh after a full period:
        // one sample of 7 MB over 200 ms, not seven samples of huge rates.
        for chunk in 1..7 {
            let sent = peer.finish_request(chunk);
            peer.record_delivery(1_000_000, sent, t0 + Duration::from_millis(150));
        }
        let sent = peer.finish_request(7);
        peer.record_delivery(1_000_000, sent, t0 + Duration::from_millis(300));
        let expected = 10_000_000.0 + RATE_SMOOTHING * (35_000_000.0 - 10_000_000.0);
        assert!((peer.rate() - expected).abs() < 1.0, "rate {}", peer.rate());
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
    fn a_chunk_that_arrived_and_waits_for_its_check_is_not_timed_as_the_peer_s() {
        let t0 = Instant::now();
        let mut peer = session(t0);
        peer.start_request(9, t0);
        let sent = peer.finish_request(9);
        // One chunk in 10 s: the oldest request may take 40 s, the next 80.
        peer.record_delivery(1 << 20, sent, t0 + Duration::from_secs(10));
        let asked = t0 + Duration::from_secs(10);
        for chunk in 0..3 {
            peer.start_request(chunk, asked);
        }
        // The oldest arrived whole at once, and its check is slow.
        assert!(peer.arrive(0, asked + Duration::from_millis(10)));
        assert!(peer.is_arrived(0));
        let min = Duration::from_secs(15);
        let at = |ms| asked + Duration::from_millis(ms);
        // Chunk 1 is the oldest awaited now (40 s, not the 80 s of the
        // second place); chunk 0 is given up on only when its verdict has
        // not come 30 s after it arrived.
        assert!(
            peer.expired_requests(at(30_000), 1 << 20, min, 4)
                .is_empty()
        );
        assert_eq!(peer.expired_requests(at(39_900), 1 << 20, min, 4), vec![0]);
        assert_eq!(
            peer.expired_requests(at(40_000), 1 << 20, min, 4),
            vec![1, 0]
        );
        assert_eq!(
            peer.expired_requests(at(80_000), 1 << 20, min, 4),
            vec![1, 2, 0]
        );
        // Its check ended: the chunk leaves the requests as delivered.
        peer.note_checked(0, at(1_000));
        assert!(peer.finish_request(0).is_some());
        assert!(!peer.is_requested(0) && !peer.is_arrived(0));
        assert_eq!(peer.expired_requests(at(40_000), 1 << 20, min, 4), vec![1]);
    }

    #[test]
    fn a_peer_whose_chunks_all_arrived_is_not_silent_and_a_lost_verdict_ends_at_last() {
        let t0 = Instant::now();
        let config = DownloadConfig::default();
        let (min, factor, silence) = (
            config.min_request_timeout,
            config.request_timeout_factor,
            config.silence_timeout,
        );
        let mut peer = session(t0);
        peer.start_request(9, t0);
        let sent = peer.finish_request(9);
        peer.record_delivery(1 << 20, sent, t0 + Duration::from_secs(1));
        let asked = t0 + Duration::from_secs(1);
        peer.start_request(0, asked);
        peer.start_request(1, asked);
        let arrived = asked + Duration::from_millis(5);
        assert!(peer.arrive(0, arrived));
        assert!(peer.arrive(1, arrived));
        peer.note_progress(arrived);
        // Both are here, checked on our side: no silence, no slowness.
        let later = arrived + silence + Duration::from_secs(1);
        assert!(!peer.is_silent(later, silence));
        assert_eq!(peer.effective_rate(later, 1 << 20), peer.rate());
        // What is due is only the end of the wait for their verdicts.
        let lost = arrived + min * 2;
        assert_eq!(
            peer.next_deadline(arrived, 1 << 20, min, factor, silence),
            Some(lost)
        );
        assert!(
            (peer.expired_requests(lost - Duration::from_millis(1), 1 << 20, min, factor))
                .is_empty()
        );
        assert_eq!(
            peer.expired_requests(lost, 1 << 20, min, factor),
            vec![0, 1]
        );
        // A new request to it while they wait starts its stall clock anew:
        // the time their checks took is not the peer's silence.
        peer.start_request(2, later);
        assert!(!peer.is_silent(later + silence - Duration::from_millis(1), silence));
        assert!(peer.is_silent(later + silence, silence));
    }

    #[test]
    fn stall_clock_starts_with_the_first_request() {
        let t0 = Instant::now();
        let mut peer = session(t0);
        let stall = Duration::from_secs(30);
        let later = t0 + Duration::from_secs(100);
        assert!(!peer.is_silent(later, stall), "an idle peer is not stalled");
        peer.start_request(0, later);
        assert!(!peer.is_silent(later + Duration::from_secs(29), stall));
        assert!(peer.is_silent(later + Duration::from_secs(31), stall));
        peer.note_progress(later + Duration::from_secs(31));
        assert!(!peer.is_silent(later + Duration::from_secs(40), stall));
    }

    #[test]
    fn haves_are_counted_once() {
        let t0 = Instant::now();
        let mut peer = PeerDownload::new(PeerId([1; 32]), HaveBitfield::new(10), t0);
        assert!(peer.add_have(3));
        assert!(!peer.add_have(3));
        assert!(!peer.add_have(10), "out of range");
        assert!(peer.drop_have(3));
        assert!(!peer.drop_have(3));
    }
}
