//! The serving side: which queued request to answer next, and how fast.
//!
//! Sans-IO, like the download side. [`UploadQueue`] holds every peer's
//! requests (at most [`UploadConfig::max_queued_per_peer`] each; more are
//! rejected as busy) and hands out the next one to serve: the rarest
//! requested chunk over all peers (the fewest connected peers have it, and
//! this side sent it the fewest times), so a seeder whose upload is the
//! bottleneck sends every chunk once before it sends any twice, spread over
//! the peers that ask; among equally rare ones peers take turns (round
//! robin). A chunk this side has sent already to a connected peer that
//! serves others waits while any upload is under way (see
//! [`UploadQueue::next_request`]). [`TokenBucket`] caps the
//! upload rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, HaveBitfield};

use crate::picker::LinkId;

/// Tunables of the serving side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Requests queued per peer; more are rejected as busy. Default 256:
    /// deep enough for 1 GiB/s at 250 ms with 1 MiB chunks, small enough
    /// that the queue of a flooding peer is a few KiB.
    pub max_queued_per_peer: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_queued_per_peer: 256,
        }
    }
}

/// Why a request was not queued; maps to a wire Reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    /// This side does not have the chunk (yet).
    #[error("chunk not available here")]
    NotHave,
    /// The peer's queue is full.
    #[error("too many requests queued")]
    Busy,
    /// The peer asked for a chunk it has queued already.
    #[error("chunk requested twice")]
    Duplicate,
}

#[derive(Debug, Default, Clone)]
struct PeerQueue {
    /// Queued requests: chunk -> when it was asked for.
    requests: BTreeMap<u32, Instant>,
    has: Option<HaveBitfield>,
    /// It serves others (its Hello says so): its chunks count in
    /// `served_by`.
    serves: bool,
    served_chunks: u64,
    /// The chunks this side sent it while it serves others: each counts
    /// in [`UploadQueue::sent`] while it is connected.
    sent_here: Option<HaveBitfield>,
    /// When an upload to it last started.
    last_started: Option<Instant>,
}

impl PeerQueue {
    /// Whether its oldest request has waited `after` with nothing started
    /// for it meanwhile.
    fn starving(&self, after: Duration, now: Instant) -> bool {
        let waited = |since: Instant| now.saturating_duration_since(since) >= after;
        self.requests
            .values()
            .min()
            .is_some_and(|oldest| waited(*oldest))
            && self.last_started.is_none_or(waited)
    }
}

/// Which requests for a chunk this side sent before (a second copy) may
/// be served now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resends {
    /// Any: the uplink is otherwise idle.
    Allowed,
    /// Only those of a peer whose oldest request has waited this long with
    /// nothing started for it meanwhile: second copies wait behind first
    /// ones, but nobody waits for ever.
    WhenStarving(Duration),
}

/// Every connected peer's requests, and the order they are served in.
#[derive(Debug, Clone)]
pub struct UploadQueue {
    config: UploadConfig,
    chunk_count: u32,
    /// How many connected peers have each chunk.
    availability: Vec<u16>,
    /// How many connected peers that serve others have each chunk.
    served_by: Vec<u16>,
    /// How often this side has sent each chunk to a connected peer that
    /// serves others: a chunk just sent to one will soon be available from
    /// it, so it counts as less rare, and a second copy waits. A copy sent
    /// to a plain fetch, or to a peer that has left, will be available from
    /// nobody: it does not count (a seeder that served the file once would
    /// otherwise serve the next fetch one chunk at a time).
    sent: Vec<u16>,
    peers: BTreeMap<LinkId, PeerQueue>,
    /// Requests queued over all peers (read after every event).
    queued: usize,
    /// The peer served last; the next turn goes to the one after it.
    last_served: Option<LinkId>,
}

impl UploadQueue {
    /// A queue for an artifact of `chunk_count` chunks.
    pub fn new(chunk_count: u32, config: UploadConfig) -> Self {
        Self {
            config,
            chunk_count,
            availability: vec![0; chunk_count as usize],
            served_by: vec![0; chunk_count as usize],
            sent: vec![0; chunk_count as usize],
            peers: BTreeMap::new(),
            queued: 0,
            last_served: None,
        }
    }

    /// A peer connected with `has`: it counts towards availability.
    pub fn add_peer(&mut self, peer: LinkId, has: HaveBitfield) {
        self.remove_peer(peer);
        for chunk in has.iter_ones() {
            increment(&mut self.availability, chunk.0);
        }
        self.peers.insert(
            peer,
            PeerQueue {
                has: Some(has),
                ..PeerQueue::default()
            },
        );
    }

    /// The peer serves others: what it has counts in
    /// [`Self::served_by`] too.
    pub fn set_serves(&mut self, peer: LinkId) {
        let Some(queue) = self.peers.get_mut(&peer) else {
            return;
        };
        if queue.serves {
            return;
        }
        queue.serves = true;
        for chunk in queue.has.iter().flat_map(HaveBitfield::iter_ones) {
            increment(&mut self.served_by, chunk.0);
        }
    }

    /// The peer announced a chunk.
    pub fn peer_have(&mut self, peer: LinkId, chunk: u32) {
        let count = self.chunk_count;
        let Some(queue) = self.peers.get_mut(&peer) else {
            return;
        };
        let has = queue.has.get_or_insert_with(|| HaveBitfield::new(count));
        if matches!(has.set(ChunkIndex(chunk), true), Ok(false)) {
            increment(&mut self.availability, chunk);
            if queue.serves {
                increment(&mut self.served_by, chunk);
            }
        }
    }

    /// A peer left: its queue and its chunks are forgotten.
    pub fn remove_peer(&mut self, peer: LinkId) {
        if let Some(queue) = self.peers.remove(&peer) {
            self.queued -= queue.requests.len();
            for chunk in queue.sent_here.iter().flat_map(HaveBitfield::iter_ones) {
                decrement(&mut self.sent, chunk.0);
            }
            if let Some(has) = queue.has {
                for chunk in has.iter_ones() {
                    decrement(&mut self.availability, chunk.0);
                    if queue.serves {
                        decrement(&mut self.served_by, chunk.0);
                    }
                }
            }
        }
    }

    /// Queues a request, or says why not; `have` is what this side has.
    pub fn on_request(
        &mut self,
        peer: LinkId,
        chunk: u32,
        have: &HaveBitfield,
        now: Instant,
    ) -> Result<(), RequestRefusal> {
        self.check_request(peer, chunk, have)?;
        self.enqueue(peer, chunk, now);
        Ok(())
    }

    /// Queues a request at a node-wide queue that is full, in place of
    /// the queued request for the commonest chunk (the oldest among
    /// equals, possibly the asking peer's own) when that chunk is commoner
    /// than this one ([`Self::rarity`]): its peer can fetch it elsewhere
    /// more easily than this one can, and the uplink carries rare chunks
    /// first. Returns the request taken off, to be answered busy; busy
    /// itself when no queued chunk is commoner. One pass over the queue,
    /// which holds what the uplink sends in `upload_queue_time`.
    pub fn on_request_replacing(
        &mut self,
        peer: LinkId,
        chunk: u32,
        have: &HaveBitfield,
        now: Instant,
    ) -> Result<(LinkId, u32), RequestRefusal> {
        self.check_request(peer, chunk, have)?;
        let (rarity, _, victim, victim_chunk) = self
            .peers
            .iter()
            .flat_map(|(link, queue)| {
                queue
                    .requests
                    .iter()
                    .map(move |(queued, asked)| (*link, *queued, *asked))
            })
            .map(|(link, queued, asked)| {
                (self.rarity(queued), std::cmp::Reverse(asked), link, queued)
            })
            .max()
            .ok_or(RequestRefusal::Busy)?;
        if rarity <= self.rarity(chunk) {
            return Err(RequestRefusal::Busy);
        }
        self.on_cancel(victim, victim_chunk);
        self.enqueue(peer, chunk, now);
        Ok((victim, victim_chunk))
    }

    fn enqueue(&mut self, peer: LinkId, chunk: u32, now: Instant) {
        let queue = self.peers.entry(peer).or_default();
        if queue.requests.insert(chunk, now).is_none() {
            self.queued += 1;
        }
    }

    /// Why a request cannot be queued, if it cannot: this side lacks the
    /// chunk, the peer asked for it already, or its queue is full.
    fn check_request(
        &self,
        peer: LinkId,
        chunk: u32,
        have: &HaveBitfield,
    ) -> Result<(), RequestRefusal> {
        if !have.get(ChunkIndex(chunk)) {
            return Err(RequestRefusal::NotHave);
        }
        let Some(queue) = self.peers.get(&peer) else {
            return Ok(());
        };
        if queue.requests.contains_key(&chunk) {
            return Err(RequestRefusal::Duplicate);
        }
        if queue.requests.len() >= self.config.max_queued_per_peer {
            return Err(RequestRefusal::Busy);
        }
        Ok(())
    }

    /// Drops a queued request; false when it was not queued (being sent
    /// already, or never asked).
    pub fn on_cancel(&mut self, peer: LinkId, chunk: u32) -> bool {
        let removed = self
            .peers
            .get_mut(&peer)
            .is_some_and(|queue| queue.requests.remove(&chunk).is_some());
        self.queued -= usize::from(removed);
        removed
    }

    /// Requests queued for a peer.
    pub fn queued(&self, peer: LinkId) -> usize {
        self.peers
            .get(&peer)
            .map_or(0, |queue| queue.requests.len())
    }

    /// When the next peer whose requests wait behind first copies starts
    /// to starve ([`Resends::WhenStarving`] with `after`), after `now`, if
    /// one will. A peer starving already needs no wake-up: it is served
    /// when a slot frees.
    pub fn next_starving(&self, after: Duration, now: Instant) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|queue| {
                let oldest = *queue.requests.values().min()?;
                Some(match queue.last_started {
                    Some(started) => oldest.max(started) + after,
                    None => oldest + after,
                })
            })
            .filter(|at| *at > now)
            .min()
    }

    /// Requests queued in all.
    pub fn total_queued(&self) -> usize {
        debug_assert_eq!(
            self.queued,
            self.peers
                .values()
                .map(|queue| queue.requests.len())
                .sum::<usize>()
        );
        self.queued
    }

    /// How many connected peers that serve others this side has sent
    /// `chunk` (see the field).
    pub fn sent(&self, chunk: u32) -> u16 {
        self.sent.get(chunk as usize).copied().unwrap_or(0)
    }

    /// How many connected peers that serve others hold `chunk` (a plain
    /// fetch holds chunks it gives nobody).
    pub fn served_by(&self, chunk: u32) -> u16 {
        self.served_by.get(chunk as usize).copied().unwrap_or(0)
    }

    /// Requests queued before `before` for chunks this side sent before
    /// that a connected server holds: those a sparing seed holds back.
    pub fn held_back(&self, before: Instant) -> Vec<(LinkId, u32)> {
        self.peers
            .iter()
            .flat_map(|(peer, queue)| {
                queue
                    .requests
                    .iter()
                    .filter(move |(_, at)| **at <= before)
                    .map(move |(chunk, _)| (*peer, *chunk))
            })
            .filter(|(_, chunk)| self.sent(*chunk) > 0 && self.served_by(*chunk) > 0)
            .collect()
    }

    /// How rare a chunk is to this side: peers that have it, plus the
    /// copies this side sent already (they will soon be available).
    fn rarity(&self, chunk: u32) -> u32 {
        let index = chunk as usize;
        let held = self.availability.get(index).copied().unwrap_or(0);
        let sent = self.sent.get(index).copied().unwrap_or(0);
        u32::from(held) + u32::from(sent)
    }

    /// The next request to serve, taken off the queue, among the peers
    /// `eligible` allows: the rarest requested chunk over all of them, so
    /// that a side whose upload is the bottleneck sends every chunk once
    /// before it sends any twice, spread over the peers that ask; among
    /// equally rare ones, peers take turns (round robin).
    ///
    /// A chunk this side has sent before is served only as `resends`
    /// allows. With slots to spare, ordering alone would start a second
    /// copy next to the first, whatever is rarer; held back, the peers that
    /// asked for a second copy fetch it from the one that got the first
    /// (their downloads take a chunk a slow peer holds to a faster one) and
    /// cancel here, and the uplink carries first copies while there are
    /// any. But a peer whose every request is for a second copy must not
    /// wait for ever behind peers that keep asking for first ones (when the
    /// peers that got the first copies upload slowly, it is the only way
    /// it gets anything): once it has waited long enough
    /// ([`Resends::WhenStarving`]), its second copies rank with first ones.
    pub fn next_request(
        &mut self,
        eligible: impl Fn(LinkId) -> bool,
        resends: Resends,
        now: Instant,
    ) -> Option<(LinkId, u32)> {
        self.pick(eligible, resends, false, now)
    }

    /// [`Self::next_request`] for a sparing seed: a chunk sent before goes
    /// again only as `resends` allows and only while no connected peer
    /// that serves others holds it.
    pub fn next_unheld_request(
        &mut self,
        eligible: impl Fn(LinkId) -> bool,
        resends: Resends,
        now: Instant,
    ) -> Option<(LinkId, u32)> {
        self.pick(eligible, resends, true, now)
    }

    fn pick(
        &mut self,
        eligible: impl Fn(LinkId) -> bool,
        resends: Resends,
        unheld_only: bool,
        now: Instant,
    ) -> Option<(LinkId, u32)> {
        let after = self.last_served;
        let turn = |peer: LinkId| match after {
            Some(last) if peer <= last => (1u8, peer),
            _ => (0u8, peer),
        };
        let (_, _, peer, chunk) = self
            .peers
            .iter()
            .filter(|(peer, _)| eligible(**peer))
            .filter_map(|(peer, queue)| {
                let second_copies_too = match resends {
                    Resends::Allowed => true,
                    Resends::WhenStarving(after) => queue.starving(after, now),
                };
                let chunk = queue
                    .requests
                    .keys()
                    .copied()
                    .filter(|&chunk| {
                        self.sent(chunk) == 0
                            || (second_copies_too && (!unheld_only || self.served_by(chunk) == 0))
                    })
                    .min_by_key(|&chunk| (self.rarity(chunk), chunk))?;
                // A starving peer's second copy counts as a first one.
                let rank = if second_copies_too && resends != Resends::Allowed {
                    self.availability
                        .get(chunk as usize)
                        .copied()
                        .map_or(0, u32::from)
                } else {
                    self.rarity(chunk)
                };
                Some((rank, turn(*peer), *peer, chunk))
            })
            .min()?;
        self.take(peer, chunk, now);
        Some((peer, chunk))
    }

    fn take(&mut self, peer: LinkId, chunk: u32, now: Instant) {
        let count = self.chunk_count;
        if let Some(queue) = self.peers.get_mut(&peer) {
            self.queued -= usize::from(queue.requests.remove(&chunk).is_some());
            queue.served_chunks += 1;
            queue.last_started = Some(now);
            if queue.serves {
                let sent = queue
                    .sent_here
                    .get_or_insert_with(|| HaveBitfield::new(count));
                if matches!(sent.set(ChunkIndex(chunk), true), Ok(false)) {
                    increment(&mut self.sent, chunk);
                }
            }
        }
        self.last_served = Some(peer);
    }
}

fn increment(availability: &mut [u16], chunk: u32) {
    if let Some(count) = availability.get_mut(chunk as usize) {
        *count = count.saturating_add(1);
    }
}

fn decrement(availability: &mut [u16], chunk: u32) {
    if let Some(count) = availability.get_mut(chunk as usize) {
        *count = count.saturating_sub(1);
    }
}

/// A token bucket: at most `rate` bytes per second on average, with bursts
/// of up to `burst` bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `burst` is clamped to at least one byte.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Changes the rate and burst from `now` on; tokens earned so far at
    /// the old rate are kept (and any debt), up to the new burst.
    pub fn set_rate(&mut self, rate: u64, burst: u64, now: Instant) {
        self.refill(now);
        self.rate = rate.max(1) as f64;
        self.burst = burst.max(1) as f64;
        self.tokens = self.tokens.min(self.burst);
    }

    /// Takes `bytes` and returns how long to wait before sending them (zero
    /// when the bucket held enough). The debt is kept, so callers that wait
    /// the returned time stay at the rate on average.
    pub fn reserve(&mut self, bytes: u64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Gives back `bytes` spent for something that did not happen (up to
    /// the burst).
    pub fn refund(&mut self, bytes: u64) {
        self.tokens = (self.tokens + bytes as f64).min(self.burst);
    }

    /// Spends `bytes` if the bucket is not in debt (it may go into debt by
    /// them); otherwise says how long until it is out of debt. Whole chunks
    /// are paid for this way, so the rate holds on average over chunks
    /// larger than the burst.
    pub fn try_spend(&mut self, bytes: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens < 0.0 {
            return Err(
                Duration::from_secs_f64(-self.tokens / self.rate).max(Duration::from_micros(1))
            );
        }
        self.tokens -= bytes as f64;
        Ok(())
    }

    /// Takes `amount` if the bucket holds it; takes nothing (and keeps no
    /// debt) if not.
    pub fn try_take(&mut self, amount: u64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= amount as f64 {
            self.tokens -= amount as f64;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Second copies only for a peer that waited an hour: none here.
    const NO_RESENDS: Resends = Resends::WhenStarving(Duration::from_secs(3600));

    const A: LinkId = LinkId(1);
    const B: LinkId = LinkId(2);
    const C: LinkId = LinkId(3);

    fn bitfield(count: u32, held: &[u32]) -> HaveBitfield {
        let mut has = HaveBitfield::new(count);
        for &chunk in held {
            has.set(ChunkIndex(chunk), true).unwrap();
        }
        has
    }

    fn seeder_queue(count: u32) -> UploadQueue {
        UploadQueue::new(count, UploadConfig::default())
    }

    /// Serving everything: whatever the peer asks is here.
    fn all(count: u32) -> HaveBitfield {
        HaveBitfield::full(count)
    }

    fn next(queue: &mut UploadQueue) -> Option<(LinkId, u32)> {
        queue.next_request(|_| true, Resends::Allowed, Instant::now())
    }

    /// `peers` linked with nothing yet, each serving others (a swarm's
    /// `fetch --serve`): what is sent to them will be theirs to pass on.
    fn serving(queue: &mut UploadQueue, count: u32, peers: &[LinkId]) {
        for &peer in peers {
            queue.add_peer(peer, HaveBitfield::new(count));
            queue.set_serves(peer);
        }
    }

    #[test]
    fn chunks_this_side_lacks_are_refused() {
        let mut queue = seeder_queue(4);
        let mut have = bitfield(4, &[1]);
        queue.add_peer(A, HaveBitfield::new(4));
        assert_eq!(
            queue.on_request(A, 0, &have, Instant::now()),
            Err(RequestRefusal::NotHave)
        );
        assert_eq!(queue.on_request(A, 1, &have, Instant::now()), Ok(()));
        assert_eq!(
            queue.on_request(A, 99, &have, Instant::now()),
            Err(RequestRefusal::NotHave)
        );
        have.set(ChunkIndex(0), true).unwrap();
        assert_eq!(queue.on_request(A, 0, &have, Instant::now()), Ok(()));
    }

    #[test]
    fn a_flooding_peer_is_told_busy_and_others_are_not_affected() {
        let mut queue = UploadQueue::new(
            1000,
            UploadConfig {
                max_queued_per_peer: 8,
            },
        );
        let have = all(1000);
        for chunk in 0..8 {
            assert_eq!(queue.on_request(A, chunk, &have, Instant::now()), Ok(()));
        }
        assert_eq!(
            queue.on_request(A, 8, &have, Instant::now()),
            Err(RequestRefusal::Busy)
        );
        assert_eq!(
            queue.on_request(A, 3, &have, Instant::now()),
            Err(RequestRefusal::Duplicate)
        );
        assert_eq!(queue.on_request(B, 8, &have, Instant::now()), Ok(()));
        assert_eq!(queue.total_queued(), 9);
    }

    #[test]
    fn only_peers_that_serve_count_as_serving_a_chunk() {
        let mut queue = seeder_queue(10);
        queue.add_peer(A, bitfield(10, &[0, 1]));
        queue.set_serves(A);
        queue.add_peer(B, bitfield(10, &[0, 2]));
        queue.peer_have(A, 3);
        queue.peer_have(B, 3);
        let served: Vec<u16> = (0..4).map(|chunk| queue.served_by(chunk)).collect();
        assert_eq!(served, [1, 1, 0, 1]);
        // Set twice, it counts once; gone, it counts no more.
        queue.set_serves(A);
        assert_eq!(queue.served_by(0), 1);
        queue.remove_peer(A);
        let served: Vec<u16> = (0..4).map(|chunk| queue.served_by(chunk)).collect();
        assert_eq!(served, [0, 0, 0, 0]);
    }

    #[test]
    fn peers_take_turns() {
        let mut queue = seeder_queue(100);
        let have = all(100);
        for chunk in 0..10 {
            queue.on_request(A, chunk, &have, Instant::now()).unwrap();
        }
        queue.on_request(B, 50, &have, Instant::now()).unwrap();
        queue.on_request(C, 60, &have, Instant::now()).unwrap();
        let order: Vec<LinkId> = (0..4).map(|_| next(&mut queue).unwrap().0).collect();
        assert_eq!(
            order,
            [A, B, C, A],
            "no peer waits behind another's long queue"
        );
    }

    #[test]
    fn the_rarest_requested_chunk_goes_first() {
        let mut queue = seeder_queue(10);
        let have = all(10);
        queue.add_peer(A, HaveBitfield::new(10));
        // B and C both have chunks 0..5; nobody has 7.
        queue.add_peer(B, bitfield(10, &[0, 1, 2, 3, 4]));
        queue.add_peer(C, bitfield(10, &[0, 1, 2, 3, 4]));
        for chunk in [0, 2, 7, 4] {
            queue.on_request(A, chunk, &have, Instant::now()).unwrap();
        }
        assert_eq!(next(&mut queue), Some((A, 7)));
        queue.peer_have(B, 9);
        queue.on_request(A, 9, &have, Instant::now()).unwrap();
        queue.on_request(A, 8, &have, Instant::now()).unwrap();
        assert_eq!(
            next(&mut queue),
            Some((A, 8)),
            "nobody has 8, one peer has 9"
        );
        assert_eq!(next(&mut queue), Some((A, 9)));
    }

    #[test]
    fn a_chunk_just_sent_to_one_peer_waits_behind_unsent_ones() {
        let mut queue = seeder_queue(10);
        serving(&mut queue, 10, &[A, B]);
        let have = all(10);
        queue.on_request(A, 4, &have, Instant::now()).unwrap();
        assert_eq!(next(&mut queue), Some((A, 4)));
        queue.on_request(B, 4, &have, Instant::now()).unwrap();
        queue.on_request(B, 7, &have, Instant::now()).unwrap();
        assert_eq!(
            next(&mut queue),
            Some((B, 7)),
            "4 is on its way to A already"
        );
        assert_eq!(next(&mut queue), Some((B, 4)));
    }

    #[test]
    fn a_request_for_a_rarer_chunk_takes_the_place_of_the_commonest() {
        let mut queue = seeder_queue(10);
        let have = all(10);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Chunk 3 was sent once; B and C hold chunk 5; chunk 8 is only here.
        serving(&mut queue, 10, &[A]);
        queue.on_request(A, 3, &have, at(0)).unwrap();
        assert_eq!(next(&mut queue), Some((A, 3)));
        queue.add_peer(B, bitfield(10, &[5]));
        queue.add_peer(C, bitfield(10, &[5]));
        queue.on_request(A, 5, &have, at(1)).unwrap();
        queue.on_request(B, 3, &have, at(2)).unwrap();
        queue.on_request(C, 3, &have, at(3)).unwrap();
        // The commonest queued chunk is 5 (two peers hold it); 3 (one copy
        // sent) next, the oldest request among equals first.
        assert_eq!(queue.on_request_replacing(C, 8, &have, at(4)), Ok((A, 5)));
        assert_eq!(queue.on_request_replacing(A, 9, &have, at(5)), Ok((B, 3)));
        assert_eq!(queue.total_queued(), 3);
        queue.on_request(A, 7, &have, at(6)).unwrap();
        assert_eq!(
            queue.on_request_replacing(B, 4, &have, at(7)),
            Ok((C, 3)),
            "3 was sent once, 4 never"
        );
        // Every queued chunk is now as rare as 6: busy, nothing taken off.
        assert_eq!(
            queue.on_request_replacing(B, 6, &have, at(8)),
            Err(RequestRefusal::Busy)
        );
        // What cannot be queued at all takes nobody's place.
        assert_eq!(
            queue.on_request_replacing(C, 8, &have, at(9)),
            Err(RequestRefusal::Duplicate)
        );
        assert_eq!(
            queue.on_request_replacing(C, 2, &bitfield(10, &[8]), at(9)),
            Err(RequestRefusal::NotHave)
        );
        assert_eq!(queue.total_queued(), 4);
    }

    #[test]
    fn every_chunk_goes_out_once_before_any_goes_out_twice() {
        // A asks for what B was sent already; C asks for something new:
        // C is served first even though it is A's turn.
        let mut queue = seeder_queue(10);
        serving(&mut queue, 10, &[A, B, C]);
        let have = all(10);
        queue.on_request(B, 3, &have, Instant::now()).unwrap();
        assert_eq!(next(&mut queue), Some((B, 3)));
        queue.on_request(A, 3, &have, Instant::now()).unwrap();
        queue.on_request(C, 5, &have, Instant::now()).unwrap();
        assert_eq!(next(&mut queue), Some((C, 5)));
        assert_eq!(next(&mut queue), Some((A, 3)), "then the second copy");
        // A peer that is not eligible (its upload slots are full) is skipped.
        queue.on_request(A, 6, &have, Instant::now()).unwrap();
        queue.on_request(B, 2, &have, Instant::now()).unwrap();
        assert_eq!(
            queue.next_request(|peer| peer != A, Resends::Allowed, Instant::now()),
            Some((B, 2))
        );
        assert_eq!(next(&mut queue), Some((A, 6)));
    }

    #[test]
    fn a_second_copy_waits_unless_resends_are_allowed() {
        let mut queue = seeder_queue(10);
        serving(&mut queue, 10, &[A, B, C]);
        let have = all(10);
        queue.on_request(A, 3, &have, Instant::now()).unwrap();
        assert_eq!(
            queue.next_request(|_| true, NO_RESENDS, Instant::now()),
            Some((A, 3))
        );
        queue.on_request(B, 3, &have, Instant::now()).unwrap();
        assert_eq!(
            queue.next_request(|_| true, NO_RESENDS, Instant::now()),
            None,
            "3 went out once: B waits while an upload is under way"
        );
        queue.on_request(C, 8, &have, Instant::now()).unwrap();
        assert_eq!(
            queue.next_request(|_| true, NO_RESENDS, Instant::now()),
            Some((C, 8))
        );
        assert_eq!(
            queue.next_request(|_| true, Resends::Allowed, Instant::now()),
            Some((B, 3))
        );
    }

    #[test]
    fn a_copy_sent_to_a_plain_fetch_or_to_a_peer_gone_is_no_second_copy() {
        // A plain fetch passes nothing on: a seeder that served one fetch
        // serves the next one at full speed, not one chunk at a time
        // behind "second copies" nobody else can supply.
        let mut queue = seeder_queue(10);
        let have = all(10);
        queue.add_peer(A, HaveBitfield::new(10));
        queue.on_request(A, 3, &have, Instant::now()).unwrap();
        assert_eq!(next(&mut queue), Some((A, 3)));
        assert_eq!(queue.sent(3), 0, "sent to a peer that serves nobody");
        queue.on_request(B, 3, &have, Instant::now()).unwrap();
        assert_eq!(
            queue.next_request(|_| true, NO_RESENDS, Instant::now()),
            Some((B, 3)),
            "no peer can hand B chunk 3 but this one"
        );
        // A copy sent to a server counts while it is linked, not after.
        serving(&mut queue, 10, &[C]);
        queue.on_request(C, 5, &have, Instant::now()).unwrap();
        assert_eq!(next(&mut queue), Some((C, 5)));
        assert_eq!(queue.sent(5), 1);
        queue.on_request(B, 5, &have, Instant::now()).unwrap();
        assert_eq!(
            queue.next_request(|_| true, NO_RESENDS, Instant::now()),
            None,
            "C will pass 5 on: B waits while an upload is under way"
        );
        queue.remove_peer(C);
        assert_eq!(queue.sent(5), 0);
        assert_eq!(
            queue.next_request(|_| true, NO_RESENDS, Instant::now()),
            Some((B, 5)),
            "C left: nobody else will hand B chunk 5"
        );
    }

    #[test]
    fn a_departed_peer_no_longer_counts() {
        let mut queue = seeder_queue(4);
        let have = all(4);
        queue.add_peer(B, bitfield(4, &[0]));
        queue.on_request(A, 0, &have, Instant::now()).unwrap();
        queue.on_request(A, 1, &have, Instant::now()).unwrap();
        queue.on_request(B, 2, &have, Instant::now()).unwrap();
        queue.remove_peer(B);
        assert_eq!(queue.queued(B), 0);
        // With B gone, chunk 0 is as rare as chunk 1: index order decides.
        assert_eq!(next(&mut queue), Some((A, 0)));
    }

    #[test]
    fn cancels_remove_queued_requests_only() {
        let mut queue = seeder_queue(4);
        let have = all(4);
        queue.on_request(A, 1, &have, Instant::now()).unwrap();
        queue.on_request(A, 2, &have, Instant::now()).unwrap();
        assert!(queue.on_cancel(A, 1));
        assert!(!queue.on_cancel(A, 1));
        assert_eq!(next(&mut queue), Some((A, 2)));
        assert!(!queue.on_cancel(A, 2), "already being sent");
        assert_eq!(next(&mut queue), None);
    }

    #[test]
    fn the_bucket_holds_the_rate_on_average() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000_000, 100_000, t0);
        assert_eq!(
            bucket.reserve(100_000, t0),
            Duration::ZERO,
            "a full burst is free"
        );
        // Sending 10 MB more at once must wait 10 s in total.
        let mut now = t0;
        let mut waited = Duration::ZERO;
        for _ in 0..100 {
            let wait = bucket.reserve(100_000, now);
            waited += wait;
            now += wait;
        }
        let seconds = waited.as_secs_f64();
        assert!((seconds - 10.0).abs() < 0.01, "waited {seconds} s");
    }

    #[test]
    fn the_bucket_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000, 500, t0);
        bucket.reserve(500, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.reserve(500, later), Duration::ZERO);
        assert!(
            bucket.reserve(500, later) > Duration::ZERO,
            "an idle hour does not save up"
        );
    }
}

#[cfg(test)]
mod starving {
    use super::*;

    #[test]
    fn a_peer_asking_only_for_second_copies_is_served_once_it_has_waited() {
        let t0 = Instant::now();
        let after = Duration::from_secs(1);
        let (a, b) = (LinkId(1), LinkId(2));
        let mut queue = UploadQueue::new(100, UploadConfig::default());
        for peer in [a, b] {
            queue.add_peer(peer, HaveBitfield::new(100));
            queue.set_serves(peer);
        }
        let have = HaveBitfield::full(100);
        // A got chunk 0; B asks for 0 too, A keeps asking for new chunks.
        queue.on_request(a, 0, &have, t0).unwrap();
        assert_eq!(
            queue.next_request(|_| true, Resends::WhenStarving(after), t0),
            Some((a, 0))
        );
        queue.on_request(b, 0, &have, t0).unwrap();
        let mut now = t0;
        let mut served_b = None;
        for chunk in 1..20 {
            now += Duration::from_millis(100);
            queue.on_request(a, chunk, &have, now).unwrap();
            let next = queue.next_request(|_| true, Resends::WhenStarving(after), now);
            if next == Some((b, 0)) {
                served_b = Some(now);
                break;
            }
            assert_eq!(next, Some((a, chunk)), "first copies go first");
        }
        let served_b = served_b.expect("B is served once it starved");
        assert_eq!(
            served_b.duration_since(t0),
            after,
            "not before, not much later"
        );
    }
}
