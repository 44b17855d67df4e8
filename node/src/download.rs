//! The download state machine: which peer to ask for which chunk, and when
//! to give up on a request or a peer.
//!
//! Sans-IO: every input carries the time, every decision comes out as an
//! [`Action`] from [`Downloader::poll_action`]. The tokio driver turns
//! actions into wire messages; the simulated swarm in the tests turns them
//! into events on a virtual clock.
//!
//! Per peer, a [`crate::session::PeerDownload`] keeps its requests and measures its
//! rate; its pipeline depth follows the rate times the round trip, so a fast
//! far peer gets many requests in flight and a slow one few. A request that
//! takes far longer than the peer's own rate predicts times out and its chunk
//! is asked again (first, in a download that moves front to back); a peer
//! that delivers nothing for [`DownloadConfig::silence_timeout`] is
//! dropped; a peer whose chunk fails its proof is dropped at once (its
//! driver bans it by key: `NodeCore` keeps the one record of bans in its
//! address book and never lets a banned peer join again).
//!
//! Mirrors (`crate::mirror`) are sources beside the peers, under keys of
//! the same kind; their rules are in [`mirrors`].

mod mirrors;
pub use mirrors::MirrorVerdict;

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use minimodel_wire::{HaveBitfield, PeerId};

use crate::mirror::MirrorSession;
use crate::picker::{LinkId, Owner, PiecePicker, VerifiedOutcome};
use crate::session::{PeerDownload, PeerStats};

pub use crate::config::DownloadConfig;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `Request { chunk }` to the peer.
    Request {
        /// To whom.
        peer: LinkId,
        /// Which chunk.
        chunk: u32,
    },
    /// Send `Cancel { chunk }` to the peer and stop reading its piece stream.
    Cancel {
        /// To whom.
        peer: LinkId,
        /// Which chunk.
        chunk: u32,
    },
    /// Say goodbye and close the connection; the peer is gone from the
    /// download already.
    Disconnect {
        /// Whom.
        peer: LinkId,
        /// Why.
        reason: DisconnectReason,
    },
}

/// Why the download drops a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// It sent a chunk that failed its proof (its driver bans it).
    BadData,
    /// It had requests and delivered nothing for `silence_timeout`.
    Silent,
    /// Too many of its requests timed out.
    TooManyTimeouts,
    /// The download is complete.
    Done,
}

pub use crate::ends::JoinError;

/// How soon, at most, a slow peer's overdue request is offered to a helper
/// again when none could take it (sooner, a quarter of the patience, when
/// the fastest peer is fast).
const RESCUE_RECHECK: Duration = Duration::from_millis(100);

/// Departed links kept for the pieces of theirs still being verified
/// ([`Downloader::departed_links`]): a piece is verified within moments
/// of its arrival, and hundreds of links do not end in between.
const DEPARTED_LINKS: usize = 256;

/// The request budget ([`DownloadConfig::max_in_flight_bytes`]) as it
/// stands: requests in all, and those on far peers' paths
/// ([`PeerDownload::requests_on_the_path`]), against the budget in chunks.
///
/// Every request counts, but up to one budget of requests on far paths:
/// those wait a round trip or more for their pieces (on a path that loses
/// packets, about two), and hold no memory meanwhile. So at most one
/// budget of pieces arrives at once from near peers, where the pieces of
/// all requests begin at once and wait for verification, and at most two
/// from far ones. A far peer's requests beyond what its rate brings in two
/// round trips wait in its queue, behind the uploads it serves others:
/// those count, or a crowd of slow far peers would be asked twice what
/// the budget lets their pieces be raced for.
#[derive(Debug, Clone, Copy)]
struct Budget {
    all: usize,
    on_path: usize,
    chunks: usize,
}

impl Budget {
    fn used(&self) -> usize {
        self.all - self.on_path.min(self.chunks)
    }

    fn is_spent(&self) -> bool {
        self.used() >= self.chunks
    }

    /// Requests it still allows.
    fn left(&self) -> usize {
        self.chunks.saturating_sub(self.used())
    }

    /// One more request, not begun, on a far peer's path or not.
    fn ask(&mut self, on_path: bool) {
        self.all += 1;
        self.on_path += usize::from(on_path);
    }
}

/// A peer a fill round may ask ([`Downloader::fill_pipelines`]).
///
/// Peers never tried yet come first, so that each is asked once and its
/// rate learned even when the budget is smaller than the swarm; then the
/// fastest, so they get the rarest chunks and endgame duplicates go to
/// whoever can finish them soonest. Near the end (fewer chunks missing than
/// peers to ask) a rate learned is of no use, and an untried peer is often
/// a slow one (the fast ones were tried long ago): the fastest first then.
#[derive(Debug)]
struct FillCandidate {
    key: LinkId,
    untried: bool,
    rate: f64,
    depth: usize,
    /// In endgame the picker had nothing for it, not even a duplicate
    /// (outside endgame the peer's own marker says so).
    dry_in_endgame: bool,
    /// No later level of this round can ask it: it leaves the order,
    /// which changes no decision and spares the walks.
    done: bool,
}

/// The download of one artifact from a changing set of peers.
#[derive(Debug)]
pub struct Downloader {
    config: DownloadConfig,
    chunk_size: u32,
    picker: PiecePicker,
    peers: BTreeMap<LinkId, PeerDownload>,
    /// Statistics of peers that left, kept for the receipt: one entry per
    /// peer id, its sessions summed, and only for peers that delivered
    /// something (good or bad). A peer that connects and leaves without a
    /// chunk costs nothing here, so endless reconnects under fresh ids do
    /// not grow it; every entry cost its peer at least one chunk sent.
    departed: BTreeMap<PeerId, PeerStats>,
    /// Links that left with requests in flight, and their peers: a piece
    /// already handed to verification when its link ended is credited to
    /// its peer when it passes (`departed`). At most
    /// [`DEPARTED_LINKS`], the oldest forgotten first.
    departed_links: BTreeMap<LinkId, PeerId>,
    /// No new requests while set (the driver's pipeline behind us is full).
    hold: bool,
    /// `max_rate`, when set.
    rate_limit: Option<crate::upload::TokenBucket>,
    /// This swarm's part of its endpoint's download cap
    /// ([`Self::set_shared_rate`]).
    shared_rate: Option<u64>,
    /// Requests are held for the rate limit until then.
    rate_wait: Option<Instant>,
    /// When requests were last held back by this side (the hold, the
    /// budget, the rate limit): a link that went quiet since was quiet
    /// for us, not for want of a deeper pipeline
    /// ([`PeerDownload::note_header`]).
    held_when: Option<Instant>,
    actions: VecDeque<Action>,
    /// [`Self::next_deadline`]'s last answer, kept until something it
    /// reads changes (requests, rates, progress, back-offs, peers, the
    /// rate wait) or it falls due. A node asks after every event, and
    /// most events (a Have of a chunk held or in flight) change none of
    /// it: without this, every Have cost a walk over every peer's
    /// requests.
    deadline: Cell<Option<Option<Instant>>>,
    /// A chunk of this run has been verified (see
    /// [`DownloadConfig::spread_from_start`]).
    first_chunk_in: bool,
    /// [`Self::fill_pipelines`]'s candidates, kept between rounds so that
    /// the round a node runs after nearly every event allocates nothing.
    fill_order: Vec<FillCandidate>,
    /// [`Self::fill_pipelines`]'s peers' rates near the end (for the
    /// endgame's duplicates), kept between rounds likewise.
    endgame_rates: Vec<(LinkId, f64)>,
    /// The peers' keys a tick walks, kept between ticks (no allocation
    /// per tick).
    tick_keys: Vec<LinkId>,
    /// The mirrors taking part, by key (`crate::mirror`).
    mirrors: BTreeMap<LinkId, MirrorSession>,
    /// What mirrors that left delivered, by key.
    departed_mirrors: BTreeMap<LinkId, PeerStats>,
    /// This node's id: which chunks no peer holds are its own to ask a
    /// mirror for ([`mirrors`]).
    local_id: Option<PeerId>,
    /// The most downloaders seen at once.
    crowd: usize,
}

impl Downloader {
    /// A download of `chunk_count` chunks of `chunk_size` bytes (the last
    /// may be shorter); `have` marks chunks verified in an earlier run.
    pub fn new(chunk_size: u32, have: &HaveBitfield, config: DownloadConfig) -> Self {
        let mut picker = PiecePicker::new(have.chunk_count(), config.seed);
        for chunk in have.iter_ones() {
            picker.mark_verified_at_start(chunk.0);
        }
        picker.set_wide(config.spread_from_start);
        Self {
            config,
            chunk_size,
            picker,
            peers: BTreeMap::new(),
            departed: BTreeMap::new(),
            departed_links: BTreeMap::new(),
            hold: false,
            rate_limit: None,
            shared_rate: None,
            rate_wait: None,
            held_when: None,
            actions: VecDeque::new(),
            deadline: Cell::new(None),
            first_chunk_in: false,
            fill_order: Vec::new(),
            endgame_rates: Vec::new(),
            tick_keys: Vec::new(),
            mirrors: BTreeMap::new(),
            departed_mirrors: BTreeMap::new(),
            local_id: None,
            crowd: 0,
        }
    }

    /// The earliest moment [`Self::tick`] has something to do: a request
    /// expires, a peer stalls, a back-off or the rate limit ends, or a
    /// chunk held by a slow peer may be asked of a faster one.
    ///
    /// The answer is kept until something it reads changes (a request
    /// starts or ends, a peer delivers, joins, leaves or backs off, the
    /// rate wait moves, a tick) or it falls due. One input moves with the
    /// clock alone: a peer that goes quiet looks slower as time passes,
    /// and is seen as slow (for a rescue) at the next change rather than
    /// the moment it becomes so; a node ticks the download at each of its
    /// wake-ups (at least every progress report), which is such a change.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if let Some(kept) = self.deadline.get()
            && kept.is_none_or(|deadline| deadline > now)
        {
            return kept;
        }
        let deadline = self.compute_deadline(now);
        self.deadline.set(Some(deadline));
        deadline
    }

    fn compute_deadline(&self, now: Instant) -> Option<Instant> {
        let config = &self.config;
        let sessions = self.peers.values().filter_map(|session| {
            session.next_deadline(
                now,
                self.chunk_size,
                config.min_request_timeout,
                config.request_timeout_factor,
                config.silence_timeout,
            )
        });
        let rescue = self.next_rescue(now);
        let reask = self.next_reask(now);
        let mirrors = self.next_mirror_deadline(now);
        sessions
            .chain(rescue)
            .chain(reask)
            .chain(mirrors)
            .chain(self.rate_wait)
            .min()
    }

    #[cfg(test)]
    pub(crate) fn debug_deadlines(&self, now: Instant) -> String {
        let config = &self.config;
        let sessions: Vec<String> = self
            .peers
            .iter()
            .filter_map(|(k, session)| {
                let d = session.next_deadline(
                    now,
                    self.chunk_size,
                    config.min_request_timeout,
                    config.request_timeout_factor,
                    config.silence_timeout,
                )?;
                (d <= now).then(|| {
                    format!(
                        "{k:?} {:?} reqs {:?} rate {} expired {:?} silent {}",
                        now.saturating_duration_since(d),
                        session
                            .requests()
                            .map(|(c, t)| (c, now.saturating_duration_since(t)))
                            .collect::<Vec<_>>(),
                        session.rate(),
                        session.expired_requests(
                            now,
                            self.chunk_size,
                            config.min_request_timeout,
                            config.request_timeout_factor
                        ),
                        session.is_silent(now, config.silence_timeout)
                    )
                })
            })
            .collect();
        let idle = self.idle_peers(now);
        let waiting: Vec<_> = self
            .picker
            .waiting()
            .map(|(c, o)| {
                (
                    c,
                    o.peer,
                    o.since,
                    idle.iter()
                        .filter(|k| self.peers[*k].has().get(minimodel_wire::ChunkIndex(c)))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        format!(
            "reask {:?} idle {idle:?} waiting {waiting:?} outstanding {} seed {:x} now {now:?} due sessions {sessions:?} rescue {:?} rate_wait {:?}",
            self.next_reask(now)
                .map(|t| now.saturating_duration_since(t)),
            self.requests_in_flight(),
            self.config.seed,
            self.next_rescue(now)
                .map(|t| t.saturating_duration_since(now)),
            self.rate_wait
        )
    }

    /// The picker, for progress and inspection.
    pub fn picker(&self) -> &PiecePicker {
        &self.picker
    }

    /// Whether every chunk is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// Whether chunk `chunk` is verified.
    pub fn is_verified(&self, chunk: u32) -> bool {
        matches!(
            self.picker.state(chunk),
            Some(crate::picker::ChunkState::Verified)
        )
    }

    /// Connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The session of a connected peer.
    pub fn peer(&self, key: LinkId) -> Option<&PeerDownload> {
        self.peers.get(&key)
    }

    /// Statistics of every peer that delivered something, connected or
    /// gone (connected peers also when they delivered nothing yet): one
    /// entry per peer id, its sessions summed.
    pub fn all_peer_stats(&self) -> Vec<(PeerId, PeerStats)> {
        let mut all = self.departed.clone();
        for session in self.peers.values() {
            all.entry(session.peer_id())
                .or_default()
                .add(session.stats());
        }
        all.into_iter().collect()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A peer finished its handshake and sent its bitfield; `key` is how
    /// the driver names it (unique while it is connected).
    pub fn add_peer(
        &mut self,
        key: LinkId,
        peer_id: PeerId,
        has: HaveBitfield,
        now: Instant,
    ) -> Result<(), JoinError> {
        self.deadline.take();
        if self.peers.contains_key(&key) || self.peers.values().any(|s| s.peer_id() == peer_id) {
            return Err(JoinError::AlreadyConnected);
        }
        if has.chunk_count() != self.picker.chunk_count() {
            return Err(JoinError::WrongBitfield {
                expected: self.picker.chunk_count(),
                found: has.chunk_count(),
            });
        }
        self.picker.add_peer_chunks(&has);
        self.peers.insert(key, PeerDownload::new(peer_id, has, now));
        self.update_spread();
        self.fill(now);
        Ok(())
    }

    /// The peer left (or was dropped by the driver): its requests go back.
    pub fn remove_peer(&mut self, key: LinkId, now: Instant) {
        self.deadline.take();
        if let Some(session) = self.peers.remove(&key) {
            self.picker.release_peer(key);
            self.picker.remove_peer_chunks(session.has());
            if session.requests_in_flight() > 0 {
                self.departed_links.insert(key, session.peer_id());
                if self.departed_links.len() > DEPARTED_LINKS {
                    self.departed_links.pop_first();
                }
            }
            let stats = session.stats();
            if stats.delivered_any() {
                self.departed
                    .entry(session.peer_id())
                    .or_default()
                    .add(stats);
            }
            self.fill(now);
        }
    }

    /// The peer's measured round trip.
    pub fn set_rtt(&mut self, key: LinkId, rtt: Duration) {
        self.deadline.take();
        if let Some(session) = self.peers.get_mut(&key) {
            session.set_rtt(rtt);
        }
    }

    /// The peer's delivery rate, as if measured (bytes per second).
    #[cfg(test)]
    fn set_rate(&mut self, key: LinkId, rate: f64) {
        if let Some(session) = self.peers.get_mut(&key) {
            session.set_rate(rate);
        }
    }

    /// The peer announced a chunk.
    pub fn on_have(&mut self, key: LinkId, chunk: u32, now: Instant) {
        let returns = self.picker.returns();
        let Some(session) = self.peers.get_mut(&key) else {
            return;
        };
        let was_dry = session.is_dry(returns);
        if session.add_have(chunk) {
            let now_complete = session.has().is_full();
            self.picker.add_have(chunk);
            if now_complete {
                self.update_spread();
            }
            // A chunk we hold or fetch already gives nobody new work, but
            // in endgame (a duplicate for this peer): a peer the picker
            // had nothing for still has nothing.
            let missing = matches!(
                self.picker.state(chunk),
                Some(crate::picker::ChunkState::Missing)
            );
            if missing || self.picker.missing_count() == 0 {
                // Only a request started (or the rate wait moved) changes
                // a deadline; a Have alone does not.
                let (actions, wait) = (self.actions.len(), self.rate_wait);
                self.fill(now);
                if self.actions.len() != actions || self.rate_wait != wait {
                    self.deadline.take();
                }
            } else {
                let idle = self
                    .peers
                    .get_mut(&key)
                    .map(|session| {
                        if was_dry {
                            session.set_dry(returns, now);
                        }
                        session.requests_in_flight() == 0
                    })
                    .unwrap_or(false);
                // An idle peer that now has a chunk waiting in another
                // peer's queue may be asked for it once it has waited.
                if idle && self.config.reask_after.is_some() && self.picker.is_waiting(chunk) {
                    self.deadline.take();
                    self.reask_queued(now);
                }
            }
        }
    }

    /// The peer refused a request.
    pub fn on_reject(&mut self, key: LinkId, chunk: u32, busy: bool, now: Instant) {
        self.deadline.take();
        let Some(session) = self.peers.get_mut(&key) else {
            return;
        };
        if session.finish_request(chunk).is_none() {
            return;
        }
        if busy {
            session.back_off(now + self.config.busy_backoff);
        } else if session.drop_have(chunk) {
            // It does not have the chunk after all.
            self.picker.remove_have(chunk);
        }
        self.picker.release(chunk, key);
        self.fill(now);
    }

    /// Bytes of a requested chunk arrived (not yet verified): the peer is
    /// making progress.
    pub fn on_progress(&mut self, key: LinkId, now: Instant) {
        self.deadline.take();
        if let Some(session) = self.session_mut(key) {
            session.note_progress(now);
        }
    }

    /// A requested chunk from this peer arrived whole, and its check
    /// begins: the time until [`Self::on_chunk_verified`] is its check's
    /// ([`PeerDownload::check_time`]).
    pub fn on_piece_arrived(&mut self, key: LinkId, chunk: u32, now: Instant) {
        self.on_progress(key, now);
        if let Some(session) = self.peers.get_mut(&key) {
            session.arrive(chunk, now);
        }
    }

    /// The session of a peer or a mirror.
    fn session_mut(&mut self, key: LinkId) -> Option<&mut PeerDownload> {
        match self.peers.get_mut(&key) {
            Some(session) => Some(session),
            None => self.mirrors.get_mut(&key).map(|mirror| &mut mirror.session),
        }
    }

    /// The session of a peer or a mirror.
    fn session(&self, key: LinkId) -> Option<&PeerDownload> {
        self.peers
            .get(&key)
            .or_else(|| self.mirrors.get(&key).map(|mirror| &mirror.session))
    }

    /// The header of a piece stream of a chunk requested from a peer came
    /// after its link carried no piece bytes for `quiet` (zero when the
    /// driver cannot tell): the pipeline learns from it
    /// ([`PeerDownload::note_header`]), then [`Self::on_piece_started`].
    pub fn on_piece_header(&mut self, key: LinkId, chunk: u32, quiet: Duration, now: Instant) {
        let (chunk_size, held) = (self.chunk_size, self.held_when);
        if let Some(session) = self.peers.get_mut(&key) {
            session.note_header(chunk, quiet, held, chunk_size, &self.config, now);
        }
        self.on_piece_started(key, chunk, now);
    }

    /// The peer began the piece stream of a chunk requested from it: the
    /// chunk's other requests whose streams have not begun are cancelled,
    /// unless this peer is much slower than theirs (a slow start must not
    /// take a chunk from a fast peer; one that has delivered nothing yet
    /// counts as slower than any that has). In endgame the duplicates race
    /// on: a chunk cancelled there would be picked again for the same peer
    /// at once.
    pub fn on_piece_started(&mut self, key: LinkId, chunk: u32, now: Instant) {
        self.on_progress(key, now);
        if let Some(session) = self.session_mut(key) {
            session.begin(chunk);
        }
        let endgame = self.picker.missing_count() == 0;
        let factor = self.config.slow_peer_factor;
        if let Some(mirror) = self.mirrors.get_mut(&key) {
            mirror.started.insert(chunk);
        }
        let rate_of = |this: &Self, key: LinkId| this.session(key).map_or(0.0, PeerDownload::rate);
        let starter = rate_of(self, key);
        let rates: Vec<(LinkId, f64)> = self
            .picker
            .owners(chunk)
            .iter()
            .map(|owner| (owner.peer, rate_of(self, owner.peer)))
            .collect();
        // Written so that an infinite factor with a rate of 0, which makes
        // NaN, counts as not slower.
        let cancelled = self.picker.start(chunk, key, |other| {
            let rate = rates
                .iter()
                .find(|(key, _)| *key == other)
                .map_or(0.0, |(_, rate)| *rate);
            let much_slower = starter * factor < rate;
            !endgame && !much_slower
        });
        if cancelled.is_empty() {
            return;
        }
        for peer in cancelled {
            if let Some(session) = self.session_mut(peer) {
                session.finish_request(chunk);
                self.actions.push_back(Action::Cancel { peer, chunk });
            }
        }
        self.fill(now);
    }

    /// The chunk from this peer passed its proof and is stored.
    pub fn on_chunk_verified(&mut self, key: LinkId, chunk: u32, bytes: u64, now: Instant) {
        self.deadline.take();
        let outcome = self.picker.mark_verified(chunk, key);
        if matches!(outcome, VerifiedOutcome::Done { .. }) && !self.first_chunk_in {
            self.first_chunk_in = true;
            self.update_spread();
        }
        if let Some(mirror) = self.mirrors.get_mut(&key) {
            mirror.failures = 0;
            mirror.started.remove(&chunk);
        }
        if let Some(session) = self.session_mut(key) {
            session.note_checked(chunk, now);
            let requested = session.finish_request(chunk);
            match outcome {
                VerifiedOutcome::Done { .. } => session.record_delivery(bytes, requested, now),
                VerifiedOutcome::AlreadyVerified => session.record_wasted(bytes),
            }
        } else if let Some(id) = self.departed_links.get(&key) {
            // Its link ended while the piece was being verified: the
            // bytes are still its peer's, in the receipt.
            let stats = self.departed.entry(*id).or_default();
            match outcome {
                VerifiedOutcome::Done { .. } => {
                    stats.chunks += 1;
                    stats.bytes += bytes;
                }
                VerifiedOutcome::AlreadyVerified => stats.wasted_bytes += bytes,
            }
        }
        if let VerifiedOutcome::Done { cancel } = outcome {
            for peer in cancel {
                if let Some(mirror) = self.mirrors.get_mut(&peer) {
                    mirror.started.remove(&chunk);
                }
                if let Some(session) = self.session_mut(peer) {
                    session.finish_request(chunk);
                    self.actions.push_back(Action::Cancel { peer, chunk });
                }
            }
        }
        if self.is_complete() {
            let keys: Vec<LinkId> = self.peers.keys().copied().collect();
            for peer in keys {
                self.actions.push_back(Action::Disconnect {
                    peer,
                    reason: DisconnectReason::Done,
                });
            }
        } else {
            self.fill(now);
        }
    }

    /// The chunk from this peer failed its proof: the peer is dropped
    /// (its driver bans it), the chunk goes to another peer.
    pub fn on_chunk_bad(&mut self, key: LinkId, chunk: u32, now: Instant) {
        self.deadline.take();
        if let Some(session) = self.session_mut(key) {
            session.record_bad_chunk();
        }
        self.picker.release(chunk, key);
        if self.mirrors.contains_key(&key) {
            self.remove_mirror(key, now);
            return;
        }
        self.drop_peer(key, DisconnectReason::BadData, now);
    }

    /// The chunk from this peer did not arrive whole (stream reset, write
    /// failure on our side): it goes back to the queue.
    pub fn on_chunk_lost(&mut self, key: LinkId, chunk: u32, now: Instant) {
        self.deadline.take();
        if let Some(mirror) = self.mirrors.get_mut(&key) {
            mirror.started.remove(&chunk);
        }
        if let Some(session) = self.session_mut(key)
            && session.finish_request(chunk).is_some()
        {
            self.picker.release(chunk, key);
        }
        self.fill(now);
    }

    /// Whether this download would fetch now: it lacks chunks, and a peer
    /// has a request under way or may have one of them (the picker did
    /// not find it empty-handed since it last announced a chunk). What a
    /// swarm reports to the gate of an endpoint it shares
    /// (`crate::gate::Gate::set_download_demand`); a hold for the hasher
    /// is brief and does not end it.
    pub fn wants_bytes(&self) -> bool {
        let returns = self.picker.returns();
        !self.is_complete()
            && (self
                .peers
                .values()
                .any(|session| session.requests_in_flight() > 0 || !session.is_dry(returns))
                || !self.mirrors.is_empty())
    }

    /// Sets this swarm's part of its endpoint's download cap (`None`: no
    /// part); the download runs at the lower of it and its own
    /// `max_rate`. A faster rate asks at once.
    pub fn set_shared_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.deadline.take();
        if rate == self.shared_rate {
            return;
        }
        self.shared_rate = rate;
        self.rate_changed(now);
    }

    /// Sets this download's own cap (`max_rate`) while it runs; it runs
    /// at the lower of it and its endpoint part. A faster rate asks at
    /// once.
    pub fn set_max_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.deadline.take();
        if rate == self.config.max_rate {
            return;
        }
        self.config.max_rate = rate;
        self.rate_changed(now);
    }

    /// The cap in force now (bytes per second): its own and its endpoint
    /// part, the lower.
    pub fn rate_cap(&self) -> Option<u64> {
        self.max_rate()
    }

    fn rate_changed(&mut self, now: Instant) {
        // Without a cap the bucket is kept unused, with its debt: a cap
        // that goes and comes back lets no burst through.
        let burst = self.burst();
        if let (Some(rate), Some(bucket)) = (self.max_rate(), &mut self.rate_limit) {
            bucket.set_rate(rate, burst, now);
        }
        self.fill(now);
    }

    /// The download cap in force: its own and its endpoint part, the lower.
    fn max_rate(&self) -> Option<u64> {
        match (self.config.max_rate, self.shared_rate) {
            (Some(own), Some(shared)) => Some(own.min(shared)),
            (own, shared) => own.or(shared),
        }
    }

    /// The download cap's burst: a chunk, at least 1 MiB.
    fn burst(&self) -> u64 {
        u64::from(self.chunk_size).max(1 << 20)
    }

    /// Holds (or releases) new requests: the driver's later stages (the
    /// trailing full-file hasher) are behind. Requests in flight go on.
    pub fn set_hold(&mut self, hold: bool, now: Instant) {
        let released = self.hold && !hold;
        if self.hold != hold {
            // A hold stops requests asked again, and their deadline.
            self.deadline.take();
        }
        self.hold = hold;
        if released {
            self.fill(now);
        }
    }

    /// A verified chunk turned out bad on disk (the whole-file check found
    /// it): it is missing again and fetched again (first, in a download
    /// that moves front to back).
    pub fn chunk_found_bad(&mut self, chunk: u32, now: Instant) {
        self.deadline.take();
        self.picker.mark_missing(chunk);
        self.fill(now);
    }

    /// Checks timeouts and refills pipelines. Call it every few hundred
    /// milliseconds.
    pub fn tick(&mut self, now: Instant) {
        self.deadline.take();
        let mut keys = std::mem::take(&mut self.tick_keys);
        keys.clear();
        keys.extend(self.peers.keys().copied());
        for &key in &keys {
            let Some(session) = self.peers.get_mut(&key) else {
                continue;
            };
            let due = session
                .next_deadline(
                    now,
                    self.chunk_size,
                    self.config.min_request_timeout,
                    self.config.request_timeout_factor,
                    self.config.silence_timeout,
                )
                .is_some_and(|deadline| deadline <= now);
            if !due {
                // Neither silent nor a request expired (their deadlines
                // are the peer's), and its timeouts were counted before.
                continue;
            }
            if session.is_silent(now, self.config.silence_timeout) {
                self.drop_peer(key, DisconnectReason::Silent, now);
                continue;
            }
            // A request's allowance depends on its place among the peer's
            // requests: once the oldest has expired, the next is the oldest,
            // and may be over its (shorter) allowance too.
            loop {
                let expired = session.expired_requests(
                    now,
                    self.chunk_size,
                    self.config.min_request_timeout,
                    self.config.request_timeout_factor,
                );
                if expired.is_empty() {
                    break;
                }
                for chunk in expired {
                    // One here whose verdict was lost on our side is not
                    // the peer's timeout.
                    if !session.is_arrived(chunk) {
                        session.record_timeout();
                    }
                    session.finish_request(chunk);
                    self.picker.release(chunk, key);
                    self.actions.push_back(Action::Cancel { peer: key, chunk });
                }
            }
            if session.stats().timeouts >= self.config.max_timeouts {
                self.drop_peer(key, DisconnectReason::TooManyTimeouts, now);
            }
        }
        self.tick_keys = keys;
        self.tick_mirrors(now);
        self.rescue_from_slow_peers(now);
        self.fill(now);
    }

    /// With other downloaders connected (peers that lack chunks), or
    /// until its first chunk arrives for a node that serves
    /// ([`DownloadConfig::spread_from_start`]), ties are broken over the
    /// whole file so that downloaders fetch different chunks from a seeder
    /// and trade them; alone with seeders the download moves front to
    /// back (its whole-file hash then keeps up with it: a 1 GiB
    /// `fetch --serve` from one seeder on loopback took twice as long with
    /// every pick spread).
    fn update_spread(&mut self) {
        let downloaders = self.peers.values().filter(|s| !s.has().is_full()).count();
        let first_pick = self.config.spread_from_start && !self.first_chunk_in;
        self.picker.set_wide(first_pick || downloaders > 0);
    }

    fn drop_peer(&mut self, key: LinkId, reason: DisconnectReason, now: Instant) {
        if self.peers.contains_key(&key) {
            self.actions
                .push_back(Action::Disconnect { peer: key, reason });
            self.remove_peer(key, now);
        }
    }

    /// When the oldest request of a peer much slower than the fastest one
    /// will have waited two chunk times of the fastest (see
    /// [`Self::rescue_from_slow_peers`]).
    fn next_rescue(&self, now: Instant) -> Option<Instant> {
        let chunk_size = self.chunk_size;
        // Only a peer with requests can hold one past its patience.
        if self.peers.len() + self.mirrors.len() < 2
            || !self
                .sources()
                .any(|(_, session)| session.requests_in_flight() > 0)
        {
            return None;
        }
        let fastest = self
            .sources()
            .map(|(_, session)| session.effective_rate(now, chunk_size))
            .fold(0.0, f64::max);
        if fastest <= 0.0 {
            return None;
        }
        let patience = Duration::from_secs_f64(2.0 * f64::from(chunk_size) / fastest);
        self.sources()
            .map(|(_, session)| session)
            .filter(|session| session.requests_in_flight() > 0)
            .filter(|session| {
                session.effective_rate(now, chunk_size) * self.config.slow_peer_factor < fastest
            })
            .filter_map(|session| session.requests().map(|(_, sent)| sent).min())
            // A request past its patience that no helper could take is
            // looked at again after a while, not on every wake-up.
            .map(|sent| {
                let due = sent + patience;
                if due > now {
                    due
                } else {
                    now + (patience / 4).clamp(Duration::from_millis(1), RESCUE_RECHECK)
                }
            })
            .min()
    }

    /// Asks a fast peer for the chunks that a much slower peer has held for
    /// longer than two chunk times of the fast one. Runs on each tick; a
    /// rescue may take the helper one request past its pipeline depth, but
    /// never the download past its budget.
    fn rescue_from_slow_peers(&mut self, now: Instant) {
        let chunk_size = self.chunk_size;
        // In the peers' (key) order, then the mirrors'.
        let rates: Vec<(LinkId, f64)> = self
            .sources()
            .map(|(key, session)| (key, session.effective_rate(now, chunk_size)))
            .collect();
        // Helpers: every peer, and a mirror only when peers are behind it
        // (`mirrors::Downloader::mirror_may_help`).
        let may_help: Vec<LinkId> = rates
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !self.mirrors.contains_key(key) || self.mirror_may_help(*key, now))
            .collect();
        let helps = |key: LinkId| may_help.contains(&key);
        let fastest = rates
            .iter()
            .filter(|(key, _)| helps(*key))
            .map(|(_, rate)| *rate)
            .fold(0.0, f64::max);
        if fastest <= 0.0 {
            return;
        }
        let patience = Duration::from_secs_f64(2.0 * f64::from(chunk_size) / fastest);
        let factor = self.config.slow_peer_factor;
        let stuck: Vec<u32> = rates
            .iter()
            .filter(|(_, rate)| *rate * factor < fastest)
            .flat_map(|(key, _)| {
                self.session(*key)
                    .into_iter()
                    .flat_map(PeerDownload::awaited)
                    .filter(|(_, sent)| now.saturating_duration_since(*sent) > patience)
                    .map(|(chunk, _)| chunk)
            })
            .collect();
        for chunk in stuck {
            // The fastest peer that can take it (the lowest key among
            // equals): not slow itself, has the chunk, not asked for it
            // already, and at most one past its pipeline depth.
            let mut helper: Option<(LinkId, f64)> = None;
            for &(key, rate) in &rates {
                let Some(session) = self.session(key) else {
                    continue;
                };
                let fits = rate * factor >= fastest
                    && session.has().get(minimodel_wire::ChunkIndex(chunk))
                    && !session.is_requested(chunk)
                    && session.requests_in_flight() <= self.depth_of(key, session)
                    && helps(key);
                if fits && helper.is_none_or(|(_, best)| rate.total_cmp(&best).is_gt()) {
                    helper = Some((key, rate));
                }
            }
            let helper = helper.map(|(key, _)| key);
            let Some(helper) = helper else {
                continue;
            };
            if self.budget().is_spent() {
                return;
            }
            if self.picker.add_owner(chunk, helper, now) {
                if let Some(session) = self.session_mut(helper) {
                    session.start_request(chunk, now);
                }
                self.actions.push_back(Action::Request {
                    peer: helper,
                    chunk,
                });
            }
        }
    }

    /// Every source: the peers (in key order), then the mirrors.
    fn sources(&self) -> impl Iterator<Item = (LinkId, &PeerDownload)> {
        self.peers
            .iter()
            .map(|(key, session)| (*key, session))
            .chain(
                self.mirrors
                    .iter()
                    .map(|(key, mirror)| (*key, &mirror.session)),
            )
    }

    /// A source's pipeline depth: a peer's by its rate and round trip. A
    /// mirror's ranges run side by side (a connection each), not one after
    /// another as a peer's requests do, so each more one splits its rate:
    /// among other downloaders one at a time (every range a crowd asks of
    /// a mirror at once ends only when all of them do, and only then can
    /// the crowd trade them), alone as a peer's, at most
    /// [`MirrorConfig::max_requests`].
    fn depth_of(&self, key: LinkId, session: &PeerDownload) -> usize {
        let depth = session.pipeline_depth(self.chunk_size, &self.config);
        if !self.mirrors.contains_key(&key) {
            return depth;
        }
        let crowd = self.peers.values().any(|peer| !peer.has().is_full());
        match crowd {
            true => 1,
            false => depth.min(self.config.mirrors.max_requests.max(1)),
        }
    }

    /// The request budget in whole chunks ([`DownloadConfig::max_in_flight_bytes`]).
    fn budget_chunks(&self) -> usize {
        (self.config.max_in_flight_bytes / u64::from(self.chunk_size.max(1))).max(1) as usize
    }

    /// The chunks asked of a peer and not received yet (a chunk asked of
    /// two peers in endgame comes twice).
    pub fn in_flight_chunks(&self) -> impl Iterator<Item = u32> + '_ {
        self.peers
            .values()
            .flat_map(|session| session.requests().map(|(chunk, _)| chunk))
    }

    /// Requests in flight over all peers (endgame duplicates included).
    pub fn requests_in_flight(&self) -> usize {
        self.budget().all
    }

    /// The request budget as it stands ([`Budget`]).
    fn budget(&self) -> Budget {
        let (all, on_path) = self
            .peers
            .values()
            .chain(self.mirrors.values().map(|mirror| &mirror.session))
            .fold((0, 0), |(all, far), session| {
                let in_flight = session.requests_in_flight();
                let on_path = session.requests_on_the_path(self.chunk_size);
                (all + in_flight, far + on_path)
            });
        Budget {
            all,
            on_path,
            chunks: self.budget_chunks(),
        }
    }

    /// When a request waiting in its owner's queue may be asked again: it
    /// was sent [`DownloadConfig::reask_after`] ago, plus the owner's
    /// round trip (a piece stream begun at once shows a round trip later).
    fn reask_due(&self, owner: &Owner, after: Duration) -> Instant {
        let rtt = self
            .peers
            .get(&owner.peer)
            .map_or(Duration::ZERO, PeerDownload::rtt);
        owner.since + after + rtt
    }

    /// Peers that could take a request asked again: nothing in flight from
    /// us, not backing off, and nothing new for them in the picker.
    fn idle_peers(&self, now: Instant) -> Vec<LinkId> {
        let returns = self.picker.returns();
        self.peers
            .iter()
            .filter(|(_, session)| session.is_idle(now, returns))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Whether requests may be asked again now at all.
    fn may_reask(&self) -> Option<Duration> {
        let after = self.config.reask_after?;
        (!self.hold
            && self.rate_wait.is_none()
            && self.picker.missing_count() > 0
            && !self.budget().is_spent())
        .then_some(after)
    }

    /// When the first waiting request an idle peer could take is due to be
    /// asked again ([`Self::reask_queued`]).
    fn next_reask(&self, now: Instant) -> Option<Instant> {
        self.picker.waiting().next()?;
        let after = self.may_reask()?;
        // Most calls find no idle peer: told without collecting them.
        let returns = self.picker.returns();
        if !self
            .peers
            .values()
            .any(|session| session.is_idle(now, returns))
        {
            return None;
        }
        let idle = self.idle_peers(now);
        self.picker
            .waiting()
            .filter(|(chunk, _)| {
                idle.iter().any(|key| {
                    self.peers[key]
                        .has()
                        .get(minimodel_wire::ChunkIndex(*chunk))
                })
            })
            .map(|(_, owner)| self.reask_due(&owner, after))
            .min()
    }

    /// Asks each idle peer for the longest-waiting request due to be asked
    /// again ([`DownloadConfig::reask_after`]) that it can serve. Runs on
    /// each tick (a wake-up at [`Self::next_reask`] among them).
    fn reask_queued(&mut self, now: Instant) {
        let Some(after) = self.config.reask_after else {
            return;
        };
        // Cheap first: most calls find no idle peer, or nothing that
        // waited long enough.
        if self.picker.waiting().next().is_none() || self.may_reask().is_none() {
            return;
        }
        let idle = self.idle_peers(now);
        if idle.is_empty() {
            return;
        }
        let mut due: Vec<(Instant, u32)> = self
            .picker
            .waiting()
            .filter(|(_, owner)| self.reask_due(owner, after) <= now)
            .map(|(chunk, owner)| (owner.since, chunk))
            .collect();
        due.sort_unstable();
        let mut budget = self.budget();
        let capped = self.max_rate().is_some();
        for key in idle {
            if budget.is_spent() || due.is_empty() {
                return;
            }
            let has = self.peers[&key].has();
            let Some(position) = due
                .iter()
                .position(|(_, chunk)| has.get(minimodel_wire::ChunkIndex(*chunk)))
            else {
                continue;
            };
            let (_, chunk) = due.remove(position);
            if let (true, Some(bucket)) = (capped, &mut self.rate_limit)
                && let Err(wait) = bucket.try_spend(u64::from(self.chunk_size), now)
            {
                self.rate_wait = Some(now + wait);
                return;
            }
            if self.picker.add_owner(chunk, key, now) {
                let mut far = false;
                if let Some(session) = self.peers.get_mut(&key) {
                    let on_path = session.requests_on_the_path(self.chunk_size);
                    session.start_request(chunk, now);
                    far = session.requests_on_the_path(self.chunk_size) > on_path;
                }
                budget.ask(far);
                self.actions.push_back(Action::Request { peer: key, chunk });
            }
        }
    }

    /// Tops up every peer's pipeline: chunks handed back first in a
    /// download that moves front to back, then the rarest missing ones,
    /// then, in endgame, duplicates of chunks in flight; then asks idle
    /// peers for requests that waited in a queue.
    fn fill(&mut self, now: Instant) {
        self.fill_pipelines(now);
        self.fill_mirrors(now);
        self.reask_queued(now);
    }

    fn fill_pipelines(&mut self, now: Instant) {
        // A wait for the rate limit is asked again here, or not at all: a
        // hold or the end leaves none behind (one left in the past would
        // be due at every wake-up until the hold ends).
        self.rate_wait = None;
        if self.is_complete() {
            return;
        }
        if self.hold {
            self.held_when = Some(now);
            return;
        }
        let mut budget = self.budget();
        if budget.is_spent() {
            self.held_when = Some(now);
            return;
        }
        let capped = self.max_rate().is_some();
        if let Some(max_rate) = self.max_rate() {
            let burst = self.burst();
            self.rate_limit
                .get_or_insert_with(|| crate::upload::TokenBucket::new(max_rate, burst, now));
        }
        // Only peers the rounds below could ask: with room, not backing
        // off, and not dry, unless the endgame may begin during the rounds
        // (it lets dry peers take duplicates). Requesting only fills
        // pipelines and marks peers dry, so a peer left out here would be
        // passed over at every level anyway; most calls find one or two
        // peers with room among dozens. Each peer's depth is read once:
        // requesting does not change it.
        let endgame = self.picker.missing_count() == 0;
        let returns = self.picker.returns();
        let endgame_may_begin = u64::from(self.picker.missing_count()) <= budget.left() as u64;
        let mut order = std::mem::take(&mut self.fill_order);
        order.clear();
        // Most calls (a Have, a chunk in) find every pipeline full, every
        // peer dry or backing off: nothing to order then. (A dry peer
        // outside endgame is a candidate only for the endgame's
        // duplicates, which need some other peer to begin it.)
        let mut any_room = false;
        for (key, session) in &self.peers {
            let depth = session.pipeline_depth(self.chunk_size, &self.config);
            if session.requests_in_flight() >= depth || session.is_backing_off(now) {
                continue;
            }
            let dry = session.is_dry(returns);
            if dry && !endgame_may_begin {
                continue;
            }
            any_room |= endgame || !dry;
            order.push(FillCandidate {
                key: *key,
                untried: session.stats().chunks == 0 && session.requests_in_flight() == 0,
                rate: session.rate(),
                depth,
                dry_in_endgame: false,
                done: false,
            });
        }
        if !any_room {
            self.fill_order = order;
            return;
        }
        let learn = self.picker.missing_count() as usize >= order.len();
        // The keys are distinct: the order is total, and a sort that
        // needs no scratch space gives the same one.
        order.sort_unstable_by(|a, b| {
            (learn && b.untried)
                .cmp(&(learn && a.untried))
                .then(b.rate.total_cmp(&a.rate))
                .then(a.key.cmp(&b.key))
        });
        // Level by level: every peer gets its first request before any gets
        // a second, and so on, so peers share the budget evenly up to their
        // own pipeline depths rather than by who came first. Peers that
        // joined early may hold the whole budget; one that joins later gets
        // its first request when one of theirs ends (level 0 comes first).
        // A peer the picker had nothing for is not asked again in this
        // round (picking only takes chunks away) unless the endgame began
        // since.
        //
        // A level below every candidate's requests in flight asks nobody,
        // and a candidate no later level can ask leaves the order: its
        // depth reached, its requests below the level (they only grow
        // here), backing off, or dry for the rest of the round (in
        // endgame, or outside it when the endgame cannot begin: each
        // request takes one missing chunk and one place of the budget, so
        // `endgame_may_begin` holds all round or never). Neither changes
        // whom the round asks, or in which order.
        let first = order
            .iter()
            .filter_map(|candidate| self.peers.get(&candidate.key))
            .map(PeerDownload::requests_in_flight)
            .min()
            .unwrap_or(0);
        // The peers' rates, for the endgame's duplicates (kept between
        // rounds, as `fill_order` is).
        let mut endgame_rates = std::mem::take(&mut self.endgame_rates);
        endgame_rates.clear();
        if self.config.endgame_duplicate_factor.is_some()
            && u64::from(self.picker.missing_count()) <= budget.left() as u64
        {
            endgame_rates.extend((self.peers.iter()).map(|(key, session)| (*key, session.rate())));
        }
        for level in first..self.config.max_pipeline {
            if budget.is_spent() || order.is_empty() {
                break;
            }
            for candidate in &mut order {
                if budget.is_spent() {
                    break;
                }
                let key = candidate.key;
                let endgame = self.picker.missing_count() == 0;
                if level >= candidate.depth || (endgame && candidate.dry_in_endgame) {
                    candidate.done = true;
                    continue;
                }
                // After this level, whatever happens below.
                candidate.done = level + 1 >= candidate.depth;
                let Some(session) = self.peers.get_mut(&key) else {
                    candidate.done = true;
                    continue;
                };
                if session.requests_in_flight() < level || session.is_backing_off(now) {
                    candidate.done = true;
                    continue;
                }
                if session.requests_in_flight() != level {
                    continue;
                }
                if !endgame && session.is_dry(self.picker.returns()) {
                    candidate.done |= !endgame_may_begin;
                    continue;
                }
                let mine = session.rate();
                let factor = self.config.endgame_duplicate_factor;
                let rates = &endgame_rates;
                let picked = self.picker.pick(key, session.has(), now).or_else(|| {
                    // Endgame: everything not verified is in flight.
                    (self.picker.missing_count() == 0)
                        .then(|| {
                            self.picker
                                .pick_duplicate(key, session.has(), now, |owners| {
                                    let Some(factor) = factor else {
                                        return true;
                                    };
                                    // Only a chunk whose begun streams are all
                                    // much slower than this peer's would be.
                                    owners.iter().filter(|owner| owner.started).all(|owner| {
                                        let rate = rates
                                            .iter()
                                            .find(|(key, _)| *key == owner.peer)
                                            .map_or(0.0, |(_, rate)| *rate);
                                        rate * factor < mine
                                    })
                                })
                        })
                        .flatten()
                });
                let Some(chunk) = picked else {
                    if endgame {
                        candidate.dry_in_endgame = true;
                        candidate.done = true;
                    } else {
                        session.set_dry(self.picker.returns(), now);
                        candidate.done |= !endgame_may_begin;
                    }
                    continue;
                };
                if let (true, Some(bucket)) = (capped, &mut self.rate_limit)
                    && let Err(wait) = bucket.try_spend(u64::from(self.chunk_size), now)
                {
                    // Over the download cap: hand the chunk back, ask
                    // again once the bucket has refilled.
                    self.picker.release(chunk, key);
                    self.rate_wait = Some(now + wait);
                    self.held_when = Some(now);
                    return;
                }
                let on_path = session.requests_on_the_path(self.chunk_size);
                session.start_request(chunk, now);
                budget.ask(session.requests_on_the_path(self.chunk_size) > on_path);
                self.actions.push_back(Action::Request { peer: key, chunk });
            }
            order.retain(|candidate| !candidate.done);
        }
        if budget.is_spent() {
            self.held_when = Some(now);
        }
        self.fill_order = order;
        self.endgame_rates = endgame_rates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn requests(core: &mut Downloader) -> Vec<(LinkId, u32)> {
        let mut out = Vec::new();
        while let Some(action) = core.poll_action() {
            if let Action::Request { peer, chunk } = action {
                out.push((peer, chunk));
            }
        }
        out
    }

    /// Every action the download queued, in order.
    fn drain(core: &mut Downloader) -> Vec<Action> {
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    #[test]
    fn a_request_waiting_in_a_queue_is_asked_of_an_idle_peer_and_the_first_to_begin_keeps_it() {
        let count = 8;
        // No rescues: `a` delivers nothing here, and would look slow.
        let config = DownloadConfig {
            slow_peer_factor: f64::INFINITY,
            ..DownloadConfig::default()
        };
        let mut core = Downloader::new(1 << 20, &HaveBitfield::new(count), config);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (a, b) = (LinkId(1), LinkId(2));
        core.add_peer(a, PeerId([1; 32]), HaveBitfield::full(count), t0)
            .unwrap();
        // Alone with a seeder the download moves front to back: the first
        // four go to `a`, which begins the first and queues the rest.
        assert_eq!(requests(&mut core), [(a, 0), (a, 1), (a, 2), (a, 3)]);
        // `b` has only chunks in flight: nothing new for it.
        let mut some = HaveBitfield::new(count);
        for chunk in 0..4 {
            some.set(minimodel_wire::ChunkIndex(chunk), true).unwrap();
        }
        core.add_peer(b, PeerId([2; 32]), some, t0).unwrap();
        assert_eq!(requests(&mut core), []);
        core.on_piece_started(a, 0, ms(100));
        // Due after 500 ms and `a`'s round trip (50 ms until one is known).
        core.tick(ms(549));
        assert_eq!(requests(&mut core), [], "asked again before it waited");
        assert_eq!(core.next_deadline(ms(549)), Some(ms(550)));
        core.tick(ms(550));
        // The oldest request not begun goes to the idle peer, once.
        assert_eq!(requests(&mut core), [(b, 1)]);
        core.tick(ms(600));
        assert_eq!(requests(&mut core), []);
        // `b` begins first: `a`'s queued request is cancelled (neither has
        // a rate yet, so neither counts as slower).
        core.on_piece_started(b, 1, ms(650));
        let actions = drain(&mut core);
        assert_eq!(actions[0], Action::Cancel { peer: a, chunk: 1 });
        // And `a`, with room again, is asked for a chunk nobody has asked.
        assert!(
            matches!(actions[1..], [Action::Request { peer, chunk }] if peer == a && chunk >= 4),
            "{actions:?}"
        );
        assert!(!core.peer(a).unwrap().is_requested(1));
        // A chunk whose stream has begun is not asked again: with chunk 1
        // in, `b` takes the oldest still queued, 2, not 0.
        core.on_chunk_verified(b, 1, 1 << 20, ms(700));
        assert_eq!(requests(&mut core), [(b, 2)]);
    }

    #[test]
    fn a_slow_peer_that_begins_a_chunk_does_not_cancel_a_fast_peer_asked_for_it_too() {
        let count = 64;
        let mut core = Downloader::new(
            1 << 20,
            &HaveBitfield::new(count),
            DownloadConfig::default(),
        );
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (fast, slow) = (LinkId(1), LinkId(2));
        core.add_peer(fast, PeerId([1; 32]), HaveBitfield::full(count), t0)
            .unwrap();
        core.add_peer(slow, PeerId([2; 32]), HaveBitfield::full(count), t0)
            .unwrap();
        let first = requests(&mut core);
        let of = |peer: LinkId| {
            first
                .iter()
                .filter(move |(p, _)| *p == peer)
                .map(|(_, c)| *c)
        };
        let fast_chunk = of(fast).next().unwrap();
        let slow_chunk = of(slow).next().unwrap();
        // The fast peer delivers a chunk in 50 ms, the slow one in 2 s.
        core.on_piece_started(fast, fast_chunk, ms(10));
        core.on_chunk_verified(fast, fast_chunk, 1 << 20, ms(50));
        core.on_piece_started(slow, slow_chunk, ms(10));
        core.on_chunk_verified(slow, slow_chunk, 1 << 20, ms(2_000));
        core.on_progress(fast, ms(2_050));
        drain(&mut core);
        // The slow peer's queued requests are rescued: the fast one is
        // asked for them too.
        core.tick(ms(2_100));
        let rescued: Vec<u32> = drain(&mut core)
            .into_iter()
            .filter_map(|action| match action {
                Action::Request { peer, chunk }
                    if peer == fast && core.peer(slow).unwrap().is_requested(chunk) =>
                {
                    Some(chunk)
                }
                _ => None,
            })
            .collect();
        let [chunk] = rescued[..] else {
            panic!("not one rescue: {rescued:?}");
        };
        // The slow peer begins it: the fast peer's request stays.
        core.on_piece_started(slow, chunk, ms(2_200));
        assert_eq!(drain(&mut core), []);
        assert!(core.peer(fast).unwrap().is_requested(chunk));
        // The fast one's copy, verified first, wins and cancels the slow.
        core.on_piece_started(fast, chunk, ms(2_210));
        core.on_chunk_verified(fast, chunk, 1 << 20, ms(2_250));
        assert!(drain(&mut core).contains(&Action::Cancel { peer: slow, chunk }));
    }

    /// In endgame a newcomer is asked for a duplicate of a chunk nobody
    /// has begun sending, not of one a peer as fast as it is sending
    /// already: with `endgame_duplicate_factor`, that race is bytes sent
    /// twice by whichever loses. Without it, both.
    #[test]
    fn in_endgame_a_chunk_a_fast_peer_is_sending_is_not_asked_again() {
        let count = 3;
        for factor in [Some(4.0), None] {
            let config = DownloadConfig {
                endgame_duplicate_factor: factor,
                ..DownloadConfig::default()
            };
            let mut core = Downloader::new(1 << 20, &HaveBitfield::new(count), config);
            let t0 = Instant::now();
            let ms = |n: u64| t0 + Duration::from_millis(n);
            let (a, b) = (LinkId(1), LinkId(2));
            core.add_peer(a, PeerId([1; 32]), HaveBitfield::full(count), t0)
                .unwrap();
            assert_eq!(requests(&mut core), [(a, 0), (a, 1), (a, 2)]);
            // `a` delivers the first chunk (its rate is known) and begins
            // the second; the third waits in its queue.
            core.on_piece_started(a, 0, ms(10));
            core.on_chunk_verified(a, 0, 1 << 20, ms(50));
            core.on_piece_started(a, 1, ms(50));
            drain(&mut core);
            // Endgame: everything missing is in flight at `a`.
            core.add_peer(b, PeerId([2; 32]), HaveBitfield::full(count), ms(60))
                .unwrap();
            let asked = requests(&mut core);
            match factor {
                Some(_) => assert_eq!(asked, [(b, 2)], "only the chunk not begun"),
                None => assert_eq!(asked, [(b, 1), (b, 2)], "every chunk in flight"),
            }
        }
    }

    /// A download of 1000 chunks of 1 MiB with a request budget of
    /// `budget` bytes.
    fn budgeted_core(budget: u64) -> Downloader {
        let config = DownloadConfig {
            max_in_flight_bytes: budget,
            ..DownloadConfig::default()
        };
        Downloader::new(1 << 20, &HaveBitfield::new(1000), config)
    }

    /// Peer `i` joins with every chunk.
    fn join(core: &mut Downloader, i: u8, now: Instant) {
        core.add_peer(
            LinkId(u64::from(i)),
            PeerId([i; 32]),
            HaveBitfield::full(1000),
            now,
        )
        .unwrap();
    }

    #[test]
    fn newcomers_that_serve_ask_a_lone_seeder_for_different_chunks_from_the_start() {
        // A crowd's newcomers each know only the seeder at first. Those
        // that only download read front to back, and so all ask for the
        // same first chunks; those that serve spread their picks over the
        // file, so the seeder's first copies differ and can be traded.
        let t0 = Instant::now();
        let first_requests = |seed: u64, serve: bool| {
            let config = DownloadConfig {
                seed,
                spread_from_start: serve,
                ..DownloadConfig::default()
            };
            let mut core = Downloader::new(1 << 20, &HaveBitfield::new(1000), config);
            join(&mut core, 1, t0);
            requests(&mut core)
                .into_iter()
                .map(|(_, chunk)| chunk)
                .collect::<BTreeSet<u32>>()
        };
        let front: BTreeSet<u32> = (0..4).collect();
        assert_eq!(first_requests(1, false), front);
        assert_eq!(first_requests(2, false), front);
        let (one, two) = (first_requests(1, true), first_requests(2, true));
        assert_eq!((one.len(), two.len()), (4, 4));
        assert!(one.is_disjoint(&two), "{one:?} {two:?}");
        assert_ne!(one, front);
        // Still alone with the seeder once its first chunk is in, it moves
        // front to back (its whole-file hash keeps up).
        let config = DownloadConfig {
            seed: 1,
            spread_from_start: true,
            ..DownloadConfig::default()
        };
        let mut core = Downloader::new(1 << 20, &HaveBitfield::new(1000), config);
        join(&mut core, 1, t0);
        let mut next = Vec::new();
        for (n, (_, chunk)) in requests(&mut core).into_iter().enumerate() {
            let at = t0 + Duration::from_millis(100 * (n as u64 + 1));
            core.on_chunk_verified(LinkId(1), chunk, 1 << 20, at);
            next.extend(requests(&mut core).into_iter().map(|(_, chunk)| chunk));
        }
        assert!(next.len() >= 2, "{next:?}");
        assert_eq!(next, (0..next.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn a_hold_leaves_no_rate_wait_behind() {
        let config = DownloadConfig {
            max_rate: Some(1 << 20),
            ..DownloadConfig::default()
        };
        let mut core = Downloader::new(1 << 20, &HaveBitfield::new(1000), config);
        let mut now = Instant::now();
        join(&mut core, 1, now);
        assert!(!requests(&mut core).is_empty());
        let wait = core
            .next_deadline(now)
            .expect("the bucket is spent: a wait for it");
        assert!(wait > now);
        // The hasher falls behind before the wait ends, and stays behind.
        core.set_hold(true, now);
        now = wait + Duration::from_secs(1);
        core.tick(now);
        assert!(
            core.next_deadline(now)
                .is_none_or(|deadline| deadline > now),
            "a wait in the past would wake the node at once, again and again"
        );
        // Released: it asks again.
        core.set_hold(false, now);
        assert!(!requests(&mut core).is_empty());
    }

    #[test]
    fn a_shared_download_part_paces_requests_and_demand_follows_what_peers_have() {
        let mut core = budgeted_core(64 << 20);
        let mut now = Instant::now();
        assert!(!core.wants_bytes(), "no peer: nothing to fetch now");
        // A peer with nothing we lack: asked once, then dry.
        core.add_peer(LinkId(9), PeerId([9; 32]), HaveBitfield::new(1000), now)
            .unwrap();
        assert!(requests(&mut core).is_empty());
        assert!(!core.wants_bytes(), "its peer has nothing it lacks");
        // Its part of the endpoint's cap: 2 MiB/s, a burst of one chunk.
        core.set_shared_rate(Some(2 << 20), now);
        join(&mut core, 1, now);
        assert!(core.wants_bytes());
        let first = requests(&mut core);
        assert_eq!(first.len(), 2, "the burst (one chunk) and one in debt");
        // Every request answered at once: the part alone paces them.
        let mut asked = 0;
        let mut in_flight = first;
        let step = |core: &mut Downloader, in_flight: &mut Vec<(LinkId, u32)>, now| {
            for (peer, chunk) in in_flight.drain(..) {
                core.on_chunk_verified(peer, chunk, 1 << 20, now);
            }
            core.tick(now);
            in_flight.extend(requests(core));
            in_flight.len()
        };
        for _ in 0..10 {
            now += Duration::from_millis(500);
            asked += step(&mut core, &mut in_flight, now);
        }
        // Five seconds at 2 MiB/s: ten chunks, give or take one.
        assert!((9..=11).contains(&asked), "{asked} chunks in 5 s");
        // The part grows: the next second asks for many more.
        core.set_shared_rate(Some(64 << 20), now);
        let mut faster = 0;
        for _ in 0..10 {
            now += Duration::from_millis(100);
            faster += step(&mut core, &mut in_flight, now);
        }
        assert!(faster >= 10, "{faster} chunks in 1 s at 64 MiB/s");
        // No part and no cap of its own: no pacing.
        core.set_shared_rate(None, now);
        now += Duration::from_millis(100);
        assert!(step(&mut core, &mut in_flight, now) > 2);
    }

    #[test]
    fn a_have_of_a_chunk_already_held_leaves_a_dry_peer_dry() {
        let now = Instant::now();
        let mut core = budgeted_core(64 << 20);
        let mut first = HaveBitfield::new(1000);
        first.set(minimodel_wire::ChunkIndex(0), true).unwrap();
        core.add_peer(LinkId(1), PeerId([1; 32]), first, now)
            .unwrap();
        let asked = requests(&mut core);
        assert_eq!(asked, [(LinkId(1), 0)]);
        core.on_chunk_verified(LinkId(1), 0, 1 << 20, now);
        core.add_peer(LinkId(2), PeerId([2; 32]), HaveBitfield::new(1000), now)
            .unwrap();
        assert!(requests(&mut core).is_empty());
        assert!(!core.wants_bytes(), "neither peer has a chunk it lacks");
        core.on_have(LinkId(2), 0, now);
        assert!(!core.wants_bytes(), "chunk 0 is held already");
        core.on_have(LinkId(2), 1, now);
        assert!(core.wants_bytes(), "chunk 1 is missing");
    }

    #[test]
    fn far_peers_may_be_asked_twice_the_budget_while_their_pieces_have_not_begun() {
        let mut core = budgeted_core(8 << 20);
        let now = Instant::now();
        // Fast far peers: 100 MB/s at 100 ms, 19 chunks in two round trips
        // each, more than the budget.
        let far = |core: &mut Downloader, i: u8| {
            join(core, i, now);
            core.set_rtt(LinkId(u64::from(i)), Duration::from_millis(100));
            core.set_rate(LinkId(u64::from(i)), 100e6);
        };
        let count = |core: &Downloader, of: fn(&PeerDownload) -> usize| -> usize {
            (0..10).filter_map(|i| core.peer(LinkId(i))).map(of).sum()
        };
        let all = |core: &Downloader| count(core, PeerDownload::requests_in_flight);
        let begun = |core: &Downloader| count(core, PeerDownload::requests_begun);
        // Far peers (100 ms) join one by one; the first ones take the
        // budget with their initial pipelines, the later ones wait: twice
        // the budget (8 chunks) may be asked while no piece has begun.
        let mut sent = Vec::new();
        for i in 0..10u8 {
            far(&mut core, i);
            sent.extend(requests(&mut core));
            assert!(all(&core) <= 16);
        }
        assert_eq!(sent.len(), 16, "{sent:?}");
        // Ten pieces begin: more than the budget, as asked. While eight or
        // more arrive, the ones that end free nothing.
        let mut queue: VecDeque<(LinkId, u32)> = sent.into();
        let mut arriving = VecDeque::new();
        for _ in 0..10 {
            let (peer, chunk) = queue.pop_front().expect("a request");
            core.on_piece_started(peer, chunk, now);
            arriving.push_back((peer, chunk));
        }
        assert_eq!(begun(&core), 10);
        for _ in 0..2 {
            let (peer, chunk) = arriving.pop_front().expect("a piece");
            core.on_chunk_verified(peer, chunk, 1 << 20, now);
            assert!(requests(&mut core).is_empty());
        }
        assert_eq!((all(&core), begun(&core)), (14, 8));
        // Below the budget of pieces arriving, requests go up to twice it
        // in all.
        let (peer, chunk) = arriving.pop_front().expect("a piece");
        core.on_chunk_verified(peer, chunk, 1 << 20, now);
        let more = requests(&mut core);
        assert_eq!(more.len(), 3, "{more:?}");
        assert_eq!((all(&core), begun(&core)), (16, 7));
        queue.extend(more);
        queue.extend(arriving);
        // As requests end, the slots they free go to peers without one
        // first: every peer is served in time, and the totals never grow
        // past their bounds.
        let mut served: BTreeSet<LinkId> = queue.iter().map(|(peer, _)| *peer).collect();
        served.insert(peer);
        while served.len() < 10 {
            let (peer, chunk) = queue.pop_front().expect("a request in flight");
            core.on_piece_started(peer, chunk, now);
            core.on_chunk_verified(peer, chunk, 1 << 20, now);
            for (peer, chunk) in requests(&mut core) {
                served.insert(peer);
                queue.push_back((peer, chunk));
            }
            assert!(all(&core) <= 16 && begun(&core) <= 8);
        }
    }

    #[test]
    fn far_peers_are_asked_beyond_the_budget_only_what_their_rate_brings_in_two_round_trips() {
        // A crowd's far peers serve many downloaders: what we ask of one
        // beyond what its path holds waits in its queue, and counts.
        let now = Instant::now();
        let asked_with = |rate: f64| {
            let mut core = budgeted_core(8 << 20);
            for i in 0..10u8 {
                join(&mut core, i, now);
                core.set_rtt(LinkId(u64::from(i)), Duration::from_millis(100));
                core.set_rate(LinkId(u64::from(i)), rate);
            }
            requests(&mut core);
            core.tick(now);
            requests(&mut core);
            let per_peer: Vec<usize> = (0..10)
                .map(|i| {
                    core.peer(LinkId(i))
                        .map_or(0, PeerDownload::requests_in_flight)
                })
                .collect();
            let on_path: usize = (0..10)
                .filter_map(|i| core.peer(LinkId(i)))
                .map(|peer| peer.requests_on_the_path(1 << 20))
                .sum();
            (per_peer.iter().sum::<usize>(), on_path)
        };
        // Home uplinks, 1 MB/s at 100 ms: a fifth of a chunk in two round
        // trips, so none beyond the budget, as from near peers.
        assert_eq!(asked_with(1e6), (8, 0));
        // 20 MB/s: 3 chunks each in two round trips; the budget's 8 chunks
        // and up to 8 more on the paths.
        let (all, on_path) = asked_with(20e6);
        assert_eq!(
            all - on_path.min(8),
            8,
            "{all} asked, {on_path} on the paths"
        );
        assert!(all > 8 && all <= 16, "{all} asked");
        // 100 MB/s: twice the budget, as the test above.
        assert_eq!(asked_with(100e6), (16, 16));
    }

    #[test]
    fn requested_bytes_stay_within_the_budget_however_many_peers() {
        let mut core = budgeted_core(8 << 20);
        let now = Instant::now();
        let outstanding = |core: &Downloader| -> usize {
            (0..10)
                .filter_map(|i| core.peer(LinkId(i)))
                .map(|s| s.requests_in_flight())
                .sum()
        };
        // Peers join one by one; the first ones take the budget (8 chunks)
        // with their initial pipelines, the later ones wait.
        let mut sent = Vec::new();
        for i in 0..10u8 {
            join(&mut core, i, now);
            sent.extend(requests(&mut core));
            assert!(outstanding(&core) <= 8);
        }
        assert_eq!(sent.len(), 8, "{sent:?}");
        // As requests end, the slots they free go to peers without one
        // first: every peer is served in time, and the total never grows
        // past the budget.
        let mut served: BTreeSet<LinkId> = sent.iter().map(|(peer, _)| *peer).collect();
        let mut queue: VecDeque<(LinkId, u32)> = sent.into();
        while served.len() < 10 {
            let (peer, chunk) = queue.pop_front().expect("a request in flight");
            core.on_chunk_verified(peer, chunk, 1 << 20, now);
            for (peer, chunk) in requests(&mut core) {
                served.insert(peer);
                queue.push_back((peer, chunk));
            }
            assert_eq!(outstanding(&core), 8, "a freed slot is used at once");
        }
    }

    #[test]
    fn thirty_two_peers_and_chunks_as_large_as_the_budget_ask_for_one_chunk() {
        // 16 MiB chunks and the default 16 MiB budget: one request at a
        // time, whoever joins, whatever times out or is rejected.
        let count = 64;
        let mut core = Downloader::new(
            16 << 20,
            &HaveBitfield::new(count),
            DownloadConfig::default(),
        );
        let t0 = Instant::now();
        let in_flight = |core: &Downloader| -> usize {
            (0..32)
                .filter_map(|i| core.peer(LinkId(i)))
                .map(|s| s.requests_in_flight())
                .sum()
        };
        for i in 0..32u8 {
            core.add_peer(
                LinkId(u64::from(i)),
                PeerId([i; 32]),
                HaveBitfield::full(count),
                t0,
            )
            .unwrap();
            assert!(in_flight(&core) <= 1);
        }
        let mut now = t0;
        let mut verified = 0;
        let mut rejected = BTreeSet::new();
        while !core.is_complete() {
            now += Duration::from_millis(100);
            core.tick(now);
            let sent = requests(&mut core);
            assert!(
                in_flight(&core) <= 1,
                "{} requests in flight",
                in_flight(&core)
            );
            for (peer, chunk) in sent {
                if chunk % 3 == 0 && rejected.insert(chunk) {
                    // Busy: handed back and asked elsewhere.
                    core.on_reject(peer, chunk, true, now);
                } else {
                    core.on_chunk_verified(peer, chunk, 16 << 20, now);
                    verified += 1;
                }
                assert!(in_flight(&core) <= 1);
            }
        }
        assert_eq!(verified, count);
    }

    #[test]
    fn peers_that_come_and_go_without_a_chunk_leave_no_trace_and_a_returning_peer_is_summed() {
        let mut core = budgeted_core(8 << 20);
        let now = Instant::now();
        // Ten thousand sessions under fresh ids, none delivering anything.
        for i in 0..10_000u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            id[31] = 1;
            core.add_peer(LinkId(1000 + i), PeerId(id), HaveBitfield::full(1000), now)
                .unwrap();
            core.remove_peer(LinkId(1000 + i), now);
        }
        assert!(core.all_peer_stats().is_empty());
        // One peer delivers a chunk in each of two sessions.
        let giver = PeerId([7; 32]);
        for session in 0..2u64 {
            core.add_peer(LinkId(session), giver, HaveBitfield::full(1000), now)
                .unwrap();
            let (_, chunk) = requests(&mut core)
                .into_iter()
                .find(|(peer, _)| *peer == LinkId(session))
                .expect("the peer is asked for a chunk");
            core.on_chunk_verified(LinkId(session), chunk, 1 << 20, now);
            core.remove_peer(LinkId(session), now);
        }
        let all = core.all_peer_stats();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, giver);
        assert_eq!(all[0].1.chunks, 2);
        assert_eq!(all[0].1.bytes, 2 << 20);
    }

    #[test]
    fn a_piece_verified_after_its_link_ended_is_credited_to_its_peer() {
        // The piece arrived whole and went to verification; the link ended
        // before it passed (the peer was done, say). Its bytes are still
        // that peer's, so the receipt's peers add up to the file.
        let mut core = budgeted_core(8 << 20);
        let now = Instant::now();
        let giver = PeerId([7; 32]);
        core.add_peer(LinkId(0), giver, HaveBitfield::full(1000), now)
            .unwrap();
        let asked: Vec<u32> = requests(&mut core)
            .into_iter()
            .filter(|(peer, _)| *peer == LinkId(0))
            .map(|(_, chunk)| chunk)
            .collect();
        assert!(asked.len() >= 2, "{asked:?}");
        core.on_chunk_verified(LinkId(0), asked[0], 1 << 20, now);
        core.remove_peer(LinkId(0), now);
        core.on_chunk_verified(LinkId(0), asked[1], 1 << 20, now);
        let all = core.all_peer_stats();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, giver);
        assert_eq!((all[0].1.chunks, all[0].1.bytes), (2, 2 << 20));
    }

    #[test]
    fn a_peer_whose_chunk_fails_its_proof_is_dropped_and_a_wrong_bitfield_refused() {
        let count = 10;
        let mut core = Downloader::new(
            1 << 20,
            &HaveBitfield::new(count),
            DownloadConfig::default(),
        );
        let now = Instant::now();
        let liar = PeerId([9; 32]);
        core.add_peer(LinkId(0), liar, HaveBitfield::full(count), now)
            .unwrap();
        let (_, chunk) = requests(&mut core)[0];
        core.on_chunk_bad(LinkId(0), chunk, now);
        let mut dropped = Vec::new();
        while let Some(action) = core.poll_action() {
            if let Action::Disconnect { peer, reason } = action {
                dropped.push((peer, reason));
            }
        }
        assert_eq!(dropped, [(LinkId(0), DisconnectReason::BadData)]);
        assert_eq!(core.peer_count(), 0);
        let all = core.all_peer_stats();
        assert_eq!((all[0].0, all[0].1.bad_chunks), (liar, 1));
        assert_eq!(
            core.add_peer(
                LinkId(2),
                PeerId([1; 32]),
                HaveBitfield::full(count + 1),
                now
            ),
            Err(JoinError::WrongBitfield {
                expected: count,
                found: count + 1
            })
        );
    }

    mod kept_deadline {
        use super::*;
        use proptest::prelude::*;

        const COUNT: u32 = 16;

        #[derive(Debug, Clone)]
        enum Op {
            Join(u8, Vec<bool>),
            Leave(u8),
            Have(u8, u32),
            Reject(u8, u32, bool),
            Progress(u8),
            Started(u8, u32),
            Verified(u8, u32),
            Lost(u8, u32),
            Hold(bool),
            SharedRate(Option<u64>),
            Rtt(u8, u64),
            Tick,
            Wait(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            let peer = 0..4u8;
            let chunk = 0..COUNT;
            prop_oneof![
                // Sparse: a peer that holds nothing we lack is common.
                (
                    peer.clone(),
                    proptest::collection::vec(proptest::bool::weighted(0.1), COUNT as usize)
                )
                    .prop_map(|(p, has)| Op::Join(p, has)),
                peer.clone().prop_map(Op::Leave),
                (peer.clone(), chunk.clone()).prop_map(|(p, c)| Op::Have(p, c)),
                (peer.clone(), chunk.clone(), any::<bool>())
                    .prop_map(|(p, c, b)| Op::Reject(p, c, b)),
                peer.clone().prop_map(Op::Progress),
                (peer.clone(), chunk.clone()).prop_map(|(p, c)| Op::Started(p, c)),
                (peer.clone(), chunk.clone()).prop_map(|(p, c)| Op::Verified(p, c)),
                (peer.clone(), chunk).prop_map(|(p, c)| Op::Lost(p, c)),
                any::<bool>().prop_map(Op::Hold),
                proptest::option::of(1u64..(64 << 20)).prop_map(Op::SharedRate),
                (peer, 1u64..500).prop_map(|(p, ms)| Op::Rtt(p, ms)),
                Just(Op::Tick),
                (1u64..40_000).prop_map(Op::Wait),
            ]
        }

        proptest! {
            /// Whatever changes, the deadline kept is the one computed
            /// afresh. Rescues are off here (`slow_peer_factor` infinite):
            /// a rescue's deadline moves with the clock between changes,
            /// by design (see `Downloader::next_deadline`).
            #[test]
            fn the_kept_deadline_is_the_computed_one(ops in proptest::collection::vec(op(), 1..80)) {
                let config = DownloadConfig {
                    slow_peer_factor: f64::INFINITY,
                    max_in_flight_bytes: 6 << 20,
                    ..DownloadConfig::default()
                };
                let mut core = Downloader::new(1 << 20, &HaveBitfield::new(COUNT), config);
                let mut now = Instant::now();
                for op in ops {
                    let key = |p: u8| LinkId(u64::from(p));
                    match op.clone() {
                        Op::Join(p, has) => {
                            let mut bits = HaveBitfield::new(COUNT);
                            for (i, held) in has.iter().enumerate() {
                                bits.set(minimodel_wire::ChunkIndex(i as u32), *held).unwrap();
                            }
                            let _ = core.add_peer(key(p), PeerId([p; 32]), bits, now);
                        }
                        Op::Leave(p) => core.remove_peer(key(p), now),
                        Op::Have(p, c) => core.on_have(key(p), c, now),
                        Op::Reject(p, c, busy) => core.on_reject(key(p), c, busy, now),
                        Op::Progress(p) => core.on_progress(key(p), now),
                        Op::Started(p, c) => {
                            if core.peer(key(p)).is_some_and(|s| s.is_requested(c)) {
                                core.on_piece_started(key(p), c, now);
                            }
                        }
                        Op::Verified(p, c) => {
                            if core.peer(key(p)).is_some_and(|s| s.is_requested(c)) {
                                core.on_chunk_verified(key(p), c, 1 << 20, now);
                            }
                        }
                        Op::Lost(p, c) => core.on_chunk_lost(key(p), c, now),
                        Op::Hold(hold) => core.set_hold(hold, now),
                        Op::SharedRate(rate) => core.set_shared_rate(rate, now),
                        Op::Rtt(p, ms) => core.set_rtt(key(p), Duration::from_millis(ms)),
                        Op::Tick => core.tick(now),
                        Op::Wait(ms) => now += Duration::from_millis(ms),
                    }
                    let ticked = matches!(op, Op::Tick);
                    while core.poll_action().is_some() {}
                    prop_assert_eq!(core.next_deadline(now), core.compute_deadline(now));
                    // A tick acts on everything due: nothing is left due
                    // at once (a node would wake again and again).
                    if ticked {
                        prop_assert!(core.compute_deadline(now).is_none_or(|at| at > now));
                    }
                    // The picker's owners are the sessions' requests.
                    core.picker.check_invariant();
                    for chunk in 0..COUNT {
                        for owner in core.picker.owners(chunk) {
                            prop_assert!(core.peers[&owner.peer].is_requested(chunk));
                        }
                    }
                    for (key, session) in &core.peers {
                        for (chunk, _) in session.requests() {
                            prop_assert!(core.picker.owners(chunk).iter().any(|o| o.peer == *key));
                        }
                    }
                }
            }
        }
    }
}
