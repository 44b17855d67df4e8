//! The piece picker: which chunk to ask which peer for next.
//!
//! A plain synchronous struct, no I/O, no clock of its own (time comes in as
//! an argument), tested on its own and driven by [`crate::download`].
//!
//! # Invariant
//!
//! Each chunk is in exactly one state:
//! - **missing**: nobody is fetching it; it sits in exactly one
//!   availability bucket (and, if it was started before and handed back, in
//!   the retry set too);
//! - **in flight**: requested from one or more owners (more than one only
//!   in endgame or when the first owner is much slower than others); it is
//!   in no bucket;
//! - **verified**: its bytes passed the Merkle proof and are stored; it is
//!   in no bucket and has no owners.
//!
//! `missing + in_flight + verified == chunk_count` at all times, and a
//! chunk only becomes verified through [`PiecePicker::mark_verified`].
//!
//! # Order
//!
//! 1. In a download that moves front to back (see 2), chunks that were
//!    started and handed back (peer left, timed out, rejected, sent bad
//!    data) go first: what was started is finished before new chunks are
//!    started. In a swarm they rank by rarity like the rest.
//! 2. Then rarest first: the lowest availability (number of connected peers
//!    that have the chunk) among the chunks this peer has. Ties depend on
//!    the swarm ([`PiecePicker::set_wide`]): with no other downloader
//!    around, the lowest index, so the download moves front to back and
//!    chunks arrive in order (the trailing full-file hasher hashes them
//!    from memory, the disk writes sequentially); with other downloaders
//!    (or, for a node that serves, until its first chunk arrives), the
//!    first from a random place in the whole bucket, so that downloaders
//!    ask a seeder for different chunks and then trade them instead of
//!    each fetching the same ones.
//! 3. When no missing chunk is left for a peer, [`PiecePicker::pick_duplicate`]
//!    offers in-flight chunks to another owner: endgame, and the rescue of
//!    chunks held by a slow peer. Outside endgame the first piece stream
//!    to begin cancels the owners whose streams have not (unless it is
//!    much slower); in endgame the streams race. The first verified copy
//!    wins.

use std::collections::BTreeSet;

pub use crate::rng::SplitMix64;
use minimodel_wire::{ChunkIndex, HaveBitfield};
use std::time::Instant;

/// Availability buckets above this count are merged: a chunk held by 64
/// peers is as common as one held by 65.
const MAX_TRACKED_AVAILABILITY: usize = 64;
/// An in-flight chunk has at most this many owners at once, outside
/// endgame; in endgame it takes a new owner only while fewer than this
/// many of its owners' piece streams have begun.
pub const MAX_OWNERS: usize = 2;
/// In endgame, owners beyond [`MAX_OWNERS`] (four in all): a last chunk
/// queued behind two slow peers' uploads would otherwise hold every idle
/// peer back until one of them begins. Their streams race too once
/// begun (endgame cancels nothing until the first verified copy), so up
/// to four copies of one chunk can be in transit.
pub const MAX_ENDGAME_WAITING: usize = 2;

/// Whether an in-flight chunk with `owners` takes one more in endgame:
/// fewer than [`MAX_OWNERS`] streams begun and fewer than
/// [`MAX_OWNERS`] + [`MAX_ENDGAME_WAITING`] owners in all.
fn endgame_room(owners: &[Owner]) -> bool {
    owners.iter().filter(|owner| owner.started).count() < MAX_OWNERS
        && owners.len() < MAX_OWNERS + MAX_ENDGAME_WAITING
}

pub use crate::ids::LinkId;

/// Whether `chunks` holds chunk `index`.
fn has(chunks: &HaveBitfield, index: u32) -> bool {
    chunks.get(ChunkIndex(index))
}

/// One owner of an in-flight chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Who was asked.
    pub peer: LinkId,
    /// When.
    pub since: Instant,
    /// Whether its piece stream has begun (the peer took the request off
    /// its queue).
    pub started: bool,
}

/// The state of one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkState {
    /// Nobody is fetching it.
    Missing,
    /// Requested from these owners (one; two for a rescue or a request
    /// asked again; up to four in endgame).
    InFlight(Vec<Owner>),
    /// Verified and stored.
    Verified,
}

/// What [`PiecePicker::mark_verified`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedOutcome {
    /// The chunk is now verified; these other owners should be cancelled.
    Done {
        /// Owners other than the one that delivered.
        cancel: Vec<LinkId>,
    },
    /// It was verified already (a duplicate in endgame); nothing changes.
    AlreadyVerified,
}

/// Rarest-first chunk selection with endgame. See the module docs.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    states: Vec<ChunkState>,
    availability: Vec<u16>,
    /// Missing chunks by `min(availability, MAX_TRACKED_AVAILABILITY)`.
    buckets: Vec<BTreeSet<u32>>,
    /// Missing chunks that were in flight before and were handed back.
    retry: BTreeSet<u32>,
    in_flight: u32,
    verified: u32,
    rng: SplitMix64,
    /// Break ties at random over the whole bucket, not by lowest index.
    wide: bool,
    /// Times a chunk became missing again (released, found bad).
    returns: u64,
    /// In-flight chunks with one owner whose piece stream has not begun:
    /// requests waiting in a peer's queue (see [`PiecePicker::waiting`]).
    waiting: BTreeSet<u32>,
}

impl PiecePicker {
    /// A picker for `chunk_count` missing chunks. `seed` drives the random
    /// tie-break (tests pass a fixed one).
    pub fn new(chunk_count: u32, seed: u64) -> Self {
        let mut buckets = vec![BTreeSet::new(); MAX_TRACKED_AVAILABILITY + 1];
        buckets[0] = (0..chunk_count).collect();
        Self {
            states: vec![ChunkState::Missing; chunk_count as usize],
            availability: vec![0; chunk_count as usize],
            buckets,
            retry: BTreeSet::new(),
            in_flight: 0,
            verified: 0,
            rng: SplitMix64(seed),
            wide: false,
            returns: 0,
            waiting: BTreeSet::new(),
        }
    }

    /// Chunks in flight with a single owner whose piece stream has not
    /// begun, in index order: requests that wait in a peer's queue.
    pub fn waiting(&self) -> impl Iterator<Item = (u32, Owner)> + '_ {
        self.waiting
            .iter()
            .filter_map(|&index| match &self.states[index as usize] {
                ChunkState::InFlight(owners) => Some((index, owners[0])),
                _ => None,
            })
    }

    /// Whether chunk `index` is in flight with one owner whose piece
    /// stream has not begun.
    pub fn is_waiting(&self, index: u32) -> bool {
        self.waiting.contains(&index)
    }

    /// Keeps `waiting` in step with chunk `index`'s state.
    fn note_waiting(&mut self, index: u32) {
        let waits = matches!(
            self.states.get(index as usize),
            Some(ChunkState::InFlight(owners)) if owners.len() == 1 && !owners[0].started
        );
        if waits {
            self.waiting.insert(index);
        } else {
            self.waiting.remove(&index);
        }
    }

    /// Whether ties are broken at random over the whole bucket (other
    /// downloaders are connected) or by the lowest index.
    pub fn set_wide(&mut self, wide: bool) {
        self.wide = wide;
    }

    /// How many times a chunk became missing again (handed back with no
    /// owner left, or found bad after its check). Between two equal counts
    /// the missing chunks only shrank: a peer [`PiecePicker::pick`] found
    /// nothing for finds nothing still unless it announced more.
    pub fn returns(&self) -> u64 {
        self.returns
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.states.len() as u32
    }

    /// Chunks verified.
    pub fn verified_count(&self) -> u32 {
        self.verified
    }

    /// Chunks in flight.
    pub fn in_flight_count(&self) -> u32 {
        self.in_flight
    }

    /// Chunks nobody is fetching yet.
    pub fn missing_count(&self) -> u32 {
        self.chunk_count() - self.verified - self.in_flight
    }

    /// Whether every chunk is verified.
    pub fn is_complete(&self) -> bool {
        self.verified == self.chunk_count()
    }

    /// The state of chunk `index`.
    pub fn state(&self, index: u32) -> Option<&ChunkState> {
        self.states.get(index as usize)
    }

    /// How many connected peers have chunk `index`.
    pub fn availability(&self, index: u32) -> u16 {
        self.availability.get(index as usize).copied().unwrap_or(0)
    }

    /// Marks chunks verified before any peer is asked (a resumed download).
    pub fn mark_verified_at_start(&mut self, index: u32) {
        if matches!(self.states.get(index as usize), Some(ChunkState::Missing)) {
            self.leave_missing(index);
            self.states[index as usize] = ChunkState::Verified;
            self.verified += 1;
        }
    }

    /// A peer joined with this set of chunks.
    pub fn add_peer_chunks(&mut self, chunks: &HaveBitfield) {
        for index in chunks.iter_ones() {
            if index.0 < self.chunk_count() {
                self.change_availability(index.0, 1);
            }
        }
    }

    /// A peer left; its chunks no longer count.
    pub fn remove_peer_chunks(&mut self, chunks: &HaveBitfield) {
        for index in chunks.iter_ones().map(|index| index.0) {
            if index < self.chunk_count() {
                self.change_availability(index, -1);
            }
        }
    }

    /// A peer announced one more chunk.
    pub fn add_have(&mut self, index: u32) {
        if index < self.chunk_count() {
            self.change_availability(index, 1);
        }
    }

    /// A peer turned out not to have a chunk it announced.
    pub fn remove_have(&mut self, index: u32) {
        if index < self.chunk_count() {
            self.change_availability(index, -1);
        }
    }

    fn change_availability(&mut self, index: u32, delta: i32) {
        let slot = &mut self.availability[index as usize];
        let old = *slot;
        *slot = (i32::from(old) + delta).clamp(0, i32::from(u16::MAX)) as u16;
        let new = *slot;
        if matches!(self.states[index as usize], ChunkState::Missing) {
            self.buckets[bucket_of(old)].remove(&index);
            self.buckets[bucket_of(new)].insert(index);
        }
    }

    fn leave_missing(&mut self, index: u32) {
        let availability = self.availability[index as usize];
        self.buckets[bucket_of(availability)].remove(&index);
        self.retry.remove(&index);
    }

    /// The next missing chunk to request from a peer that has `peer_has`,
    /// marked in flight with that peer as owner. `None` when this peer has
    /// no missing chunk (try [`PiecePicker::pick_duplicate`]).
    pub fn pick(&mut self, peer: LinkId, peer_has: &HaveBitfield, now: Instant) -> Option<u32> {
        // Handed-back chunks first only in a download that moves front
        // to back. In a swarm a handed-back chunk ranks by its rarity like
        // any other: first, a chunk refused as busy by one peer would be
        // asked straight of the next that has it, most often a seeder,
        // for a chunk other peers hold too, while chunks only the seeder
        // has wait.
        let retried = if self.wide {
            None
        } else {
            self.retry
                .iter()
                .copied()
                .find(|&index| has(peer_has, index))
        };
        let chosen = retried.or_else(|| self.pick_rarest(peer_has))?;
        self.take(chosen, peer, now);
        Some(chosen)
    }

    /// The next missing chunk held by exactly `availability` sources
    /// (bucketed as the rest: a count above 64 is 64), marked in flight
    /// with `peer` as owner: for a mirror, `availability` is the number
    /// of mirrors, which hold every chunk, so these are the chunks no
    /// connected peer holds. The lowest index, or with wide ties the first
    /// from a random place.
    pub fn pick_at_availability(
        &mut self,
        peer: LinkId,
        availability: u16,
        now: Instant,
    ) -> Option<u32> {
        self.pick_at_availability_if(peer, availability, now, usize::MAX, |_| true)
    }

    /// [`Self::pick_at_availability`], taking the first chunk `accept`s
    /// among the first `limit` of the walk.
    pub fn pick_at_availability_if(
        &mut self,
        peer: LinkId,
        availability: u16,
        now: Instant,
        limit: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        if self.buckets[bucket_of(availability)].is_empty() {
            return None;
        }
        let start = match self.wide {
            true => self.rng.below(u64::from(self.chunk_count())) as u32,
            false => 0,
        };
        let bucket = &self.buckets[bucket_of(availability)];
        let chosen = bucket
            .range(start..)
            .chain(bucket.range(..start))
            .take(limit)
            .copied()
            .find(|&chunk| accept(chunk))?;
        self.take(chosen, peer, now);
        Some(chosen)
    }

    /// Missing chunks held by exactly `availability` sources (bucketed).
    pub fn count_at_availability(&self, availability: u16) -> usize {
        self.buckets[bucket_of(availability)].len()
    }

    /// Marks missing chunk `chosen` in flight with `peer` as its owner.
    fn take(&mut self, chosen: u32, peer: LinkId, now: Instant) {
        self.leave_missing(chosen);
        self.states[chosen as usize] = ChunkState::InFlight(vec![Owner {
            peer,
            since: now,
            started: false,
        }]);
        self.in_flight += 1;
        self.note_waiting(chosen);
    }

    fn pick_rarest(&mut self, peer_has: &HaveBitfield) -> Option<u32> {
        // Ties at random over the whole bucket (from a random start), or
        // in index order: a chunk passed over at random could trail the
        // ones after it by many chunks, more than the trailing hasher
        // keeps in memory, and would then be read back from disk.
        let start = self
            .wide
            .then(|| self.rng.below(u64::from(self.chunk_count())) as u32);
        // In endgame every peer with room asks, and nothing is missing:
        // no walk over the empty buckets then (after the draw, so that the
        // random ties stay the same).
        if self.missing_count() == 0 {
            return None;
        }
        // The same choice two ways: a peer holding fewer chunks than are
        // missing here (most peers of a young swarm) is the shorter walk.
        if peer_has.count_ones() < self.missing_count() {
            self.rarest_held(peer_has, start)
        } else {
            self.rarest_missing(peer_has, start)
        }
    }

    /// Walks the missing chunks rarest first (from `start` in each
    /// bucket, round) for the first the peer has. Bucket 0 holds chunks
    /// nobody has: nothing to ask for there.
    fn rarest_missing(&self, peer_has: &HaveBitfield, start: Option<u32>) -> Option<u32> {
        let start = start.unwrap_or(0);
        self.buckets[1..]
            .iter()
            .filter(|bucket| !bucket.is_empty())
            .find_map(|bucket| {
                bucket
                    .range(start..)
                    .chain(bucket.range(..start))
                    .copied()
                    .find(|&index| has(peer_has, index))
            })
    }

    /// Walks the peer's chunks for the missing one in the lowest bucket
    /// above 0, the first from `start` among equals: what
    /// [`Self::rarest_missing`] finds.
    fn rarest_held(&self, peer_has: &HaveBitfield, start: Option<u32>) -> Option<u32> {
        let (start, count) = (start.unwrap_or(0), self.chunk_count());
        peer_has
            .iter_ones()
            .map(|chunk| chunk.0)
            .filter(|&index| {
                // A bitfield longer than the artifact: its extra bits name
                // nothing here (the bucket walk never meets them either).
                matches!(self.states.get(index as usize), Some(ChunkState::Missing))
            })
            .map(|index| {
                let bucket = bucket_of(self.availability[index as usize]);
                let order =
                    (u64::from(index) + u64::from(count) - u64::from(start)) % u64::from(count);
                (bucket, order, index)
            })
            .filter(|&(bucket, _, _)| bucket > 0)
            .min()
            .map(|(_, _, index)| index)
    }

    /// An in-flight chunk this peer has and does not own yet, with room
    /// for another owner (`endgame_room`), for which `wanted(owners)` is
    /// true; the peer becomes another owner. Among several, the one in
    /// flight the longest is chosen. Used for endgame and to rescue chunks
    /// from slow peers.
    pub fn pick_duplicate(
        &mut self,
        peer: LinkId,
        peer_has: &HaveBitfield,
        now: Instant,
        wanted: impl Fn(&[Owner]) -> bool,
    ) -> Option<u32> {
        let mut best: Option<(Instant, u32)> = None;
        for (index, state) in self.states.iter().enumerate() {
            let ChunkState::InFlight(owners) = state else {
                continue;
            };
            let index = index as u32;
            if !endgame_room(owners)
                || owners.iter().any(|owner| owner.peer == peer)
                || !has(peer_has, index)
                || !wanted(owners)
            {
                continue;
            }
            let oldest = owners.iter().map(|owner| owner.since).min().unwrap_or(now);
            if best.is_none_or(|(since, _)| oldest < since) {
                best = Some((oldest, index));
            }
        }
        let (_, index) = best?;
        if let ChunkState::InFlight(owners) = &mut self.states[index as usize] {
            owners.push(Owner {
                peer,
                since: now,
                started: false,
            });
        }
        self.note_waiting(index);
        Some(index)
    }

    /// Adds `peer` as another owner of in-flight chunk `index` (the rescue
    /// of a chunk from a slow peer). False when the chunk is not in flight,
    /// the peer owns it already or it has [`MAX_OWNERS`] owners.
    pub fn add_owner(&mut self, index: u32, peer: LinkId, now: Instant) -> bool {
        let Some(ChunkState::InFlight(owners)) = self.states.get_mut(index as usize) else {
            return false;
        };
        if owners.len() >= MAX_OWNERS || owners.iter().any(|owner| owner.peer == peer) {
            return false;
        }
        owners.push(Owner {
            peer,
            since: now,
            started: false,
        });
        self.note_waiting(index);
        true
    }

    /// `peer`'s piece stream for in-flight chunk `index` has begun: the
    /// other owners whose streams have not begun and that `cancel` allows
    /// are dropped (their requests are to be cancelled) and returned.
    pub fn start(
        &mut self,
        index: u32,
        peer: LinkId,
        cancel: impl Fn(LinkId) -> bool,
    ) -> Vec<LinkId> {
        let Some(ChunkState::InFlight(owners)) = self.states.get_mut(index as usize) else {
            return Vec::new();
        };
        let Some(owner) = owners.iter_mut().find(|owner| owner.peer == peer) else {
            return Vec::new();
        };
        owner.started = true;
        let mut dropped = Vec::new();
        owners.retain(|owner| {
            let keep = owner.started || !cancel(owner.peer);
            if !keep {
                dropped.push(owner.peer);
            }
            keep
        });
        self.note_waiting(index);
        dropped
    }

    /// The owners of chunk `index` when it is in flight.
    pub fn owners(&self, index: u32) -> &[Owner] {
        match self.states.get(index as usize) {
            Some(ChunkState::InFlight(owners)) => owners,
            _ => &[],
        }
    }

    /// `peer` no longer fetches `index` (cancelled, rejected, timed out,
    /// failed). With no owner left the chunk is missing again and goes to
    /// the retry set (first in a download that moves front to back).
    /// Returns whether the peer was an owner.
    pub fn release(&mut self, index: u32, peer: LinkId) -> bool {
        let Some(ChunkState::InFlight(owners)) = self.states.get_mut(index as usize) else {
            return false;
        };
        let before = owners.len();
        owners.retain(|owner| owner.peer != peer);
        let released = owners.len() < before;
        if owners.is_empty() {
            self.states[index as usize] = ChunkState::Missing;
            self.in_flight -= 1;
            let availability = self.availability[index as usize];
            self.buckets[bucket_of(availability)].insert(index);
            self.retry.insert(index);
            self.returns += 1;
        }
        self.note_waiting(index);
        released
    }

    /// Releases every chunk `peer` owns; returns them.
    pub fn release_peer(&mut self, peer: LinkId) -> Vec<u32> {
        let owned: Vec<u32> = self
            .states
            .iter()
            .enumerate()
            .filter_map(|(index, state)| match state {
                ChunkState::InFlight(owners) if owners.iter().any(|o| o.peer == peer) => {
                    Some(index as u32)
                }
                _ => None,
            })
            .collect();
        for &index in &owned {
            self.release(index, peer);
        }
        owned
    }

    /// Chunk `index` passed its proof and was stored. Only call this with a
    /// chunk that went through the verifier.
    pub fn mark_verified(&mut self, index: u32, delivered_by: LinkId) -> VerifiedOutcome {
        match self.states.get(index as usize) {
            None | Some(ChunkState::Verified) => return VerifiedOutcome::AlreadyVerified,
            Some(ChunkState::Missing) => self.leave_missing(index),
            Some(ChunkState::InFlight(_)) => self.in_flight -= 1,
        }
        let previous = std::mem::replace(&mut self.states[index as usize], ChunkState::Verified);
        self.waiting.remove(&index);
        self.verified += 1;
        let cancel = match previous {
            ChunkState::InFlight(owners) => owners
                .into_iter()
                .map(|owner| owner.peer)
                .filter(|&peer| peer != delivered_by)
                .collect(),
            _ => Vec::new(),
        };
        VerifiedOutcome::Done { cancel }
    }

    /// A verified chunk turned out bad after all (the full-file check found
    /// it on disk): it is missing again and goes to the retry set.
    pub fn mark_missing(&mut self, index: u32) {
        if matches!(self.states.get(index as usize), Some(ChunkState::Verified)) {
            self.states[index as usize] = ChunkState::Missing;
            self.verified -= 1;
            let availability = self.availability[index as usize];
            self.buckets[bucket_of(availability)].insert(index);
            self.retry.insert(index);
            self.returns += 1;
        }
    }

    /// Checks the invariant of the module docs; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariant(&self) {
        let mut counts = (0, 0, 0);
        for (index, state) in self.states.iter().enumerate() {
            let index = index as u32;
            let in_buckets = self.buckets.iter().filter(|b| b.contains(&index)).count();
            match state {
                ChunkState::Missing => {
                    counts.0 += 1;
                    assert_eq!(
                        in_buckets, 1,
                        "missing chunk {index} in {in_buckets} buckets"
                    );
                    let bucket = bucket_of(self.availability[index as usize]);
                    assert!(
                        self.buckets[bucket].contains(&index),
                        "chunk {index} in wrong bucket"
                    );
                }
                ChunkState::InFlight(owners) => {
                    counts.1 += 1;
                    assert!(!owners.is_empty() && owners.len() <= MAX_OWNERS + MAX_ENDGAME_WAITING);
                    assert_eq!(
                        self.waiting.contains(&index),
                        owners.len() == 1 && !owners[0].started,
                        "chunk {index} waiting"
                    );
                    assert_eq!(in_buckets, 0);
                    assert!(!self.retry.contains(&index));
                }
                ChunkState::Verified => {
                    counts.2 += 1;
                    assert_eq!(in_buckets, 0);
                    assert!(!self.retry.contains(&index));
                }
            }
        }
        assert_eq!(counts.1, self.in_flight);
        assert!(
            self.waiting
                .iter()
                .all(|index| matches!(self.states[*index as usize], ChunkState::InFlight(_)))
        );
        assert_eq!(counts.2, self.verified);
        assert_eq!(counts.0 + counts.1 + counts.2, self.chunk_count());
    }
}

fn bucket_of(availability: u16) -> usize {
    usize::from(availability).min(MAX_TRACKED_AVAILABILITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: LinkId = LinkId(1);
    const B: LinkId = LinkId(2);

    fn all(count: u32) -> HaveBitfield {
        HaveBitfield::full(count)
    }

    fn only(count: u32, held: &[u32]) -> HaveBitfield {
        let mut chunks = HaveBitfield::new(count);
        for &index in held {
            chunks.set(ChunkIndex(index), true).unwrap();
        }
        chunks
    }

    #[test]
    fn a_bitfield_of_another_size_counts_only_within_the_picker() {
        let mut picker = PiecePicker::new(4, 1);
        let longer = all(12);
        picker.add_peer_chunks(&longer);
        picker.check_invariant();
        picker.remove_peer_chunks(&longer);
        picker.add_peer_chunks(&only(2, &[1]));
        picker.check_invariant();
        assert_eq!(picker.pick(A, &only(4, &[0, 2, 3]), Instant::now()), None);
        assert_eq!(picker.pick(A, &only(4, &[1]), Instant::now()), Some(1));
    }

    #[test]
    fn nothing_is_picked_from_a_peer_without_chunks() {
        let mut picker = PiecePicker::new(4, 1);
        picker.add_peer_chunks(&only(4, &[]));
        assert_eq!(picker.pick(A, &only(4, &[]), Instant::now()), None);
        picker.check_invariant();
    }

    #[test]
    fn a_single_seeder_is_read_front_to_back_with_many_in_flight() {
        let count = 256;
        let mut picker = PiecePicker::new(count, 7);
        picker.add_peer_chunks(&all(count));
        let now = Instant::now();
        // Sixteen in flight at a time, the oldest verified first: chunks
        // are still asked for strictly in index order.
        let mut in_flight = std::collections::VecDeque::new();
        let mut picked = Vec::new();
        while !picker.is_complete() {
            while in_flight.len() < 16 {
                let Some(index) = picker.pick(A, &all(count), now) else {
                    break;
                };
                picked.push(index);
                in_flight.push_back(index);
            }
            let index = in_flight.pop_front().unwrap();
            assert_eq!(
                picker.mark_verified(index, A),
                VerifiedOutcome::Done { cancel: vec![] }
            );
        }
        assert_eq!(picked, (0..count).collect::<Vec<_>>());
        picker.check_invariant();
    }

    #[test]
    fn wide_ties_spread_downloaders_over_the_whole_file() {
        let count = 1024;
        let firsts: BTreeSet<u32> = (0..16)
            .map(|seed| {
                let mut picker = PiecePicker::new(count, seed);
                picker.set_wide(true);
                picker.add_peer_chunks(&all(count));
                picker.pick(A, &all(count), Instant::now()).unwrap()
            })
            .collect();
        assert!(
            firsts.len() > 12,
            "different seeds start in different places: {firsts:?}"
        );
        assert!(firsts.iter().any(|&i| i > count / 2));
        // Rarity still comes first.
        let mut picker = PiecePicker::new(count, 3);
        picker.set_wide(true);
        picker.add_peer_chunks(&all(count));
        picker.add_peer_chunks(&only(count, &(0..1000).collect::<Vec<_>>()));
        for _ in 0..24 {
            assert!(picker.pick(A, &all(count), Instant::now()).unwrap() >= 1000);
        }
        picker.check_invariant();
    }

    #[test]
    fn rarest_chunks_go_first() {
        let count = 10;
        let mut picker = PiecePicker::new(count, 3);
        // Both peers have 0..8, only B has 8 and 9.
        let a = only(count, &[0, 1, 2, 3, 4, 5, 6, 7]);
        let b = all(count);
        picker.add_peer_chunks(&a);
        picker.add_peer_chunks(&b);
        let now = Instant::now();
        let first = picker.pick(B, &b, now).unwrap();
        let second = picker.pick(B, &b, now).unwrap();
        let mut firsts = [first, second];
        firsts.sort();
        assert_eq!(firsts, [8, 9], "chunks only one peer has come first");
        picker.check_invariant();
    }

    #[test]
    fn released_chunks_are_finished_before_new_ones_start() {
        let count = 32;
        let mut picker = PiecePicker::new(count, 5);
        picker.add_peer_chunks(&all(count));
        let now = Instant::now();
        let taken: Vec<u32> = (0..4)
            .map(|_| picker.pick(A, &all(count), now).unwrap())
            .collect();
        let released = picker.release_peer(A);
        assert_eq!(released.len(), 4);
        picker.check_invariant();
        let mut again: Vec<u32> = (0..4)
            .map(|_| picker.pick(B, &all(count), now).unwrap())
            .collect();
        let mut taken_sorted = taken.clone();
        taken_sorted.sort();
        again.sort();
        assert_eq!(again, taken_sorted, "handed-back chunks are picked first");
        picker.check_invariant();
    }

    #[test]
    fn in_a_swarm_a_handed_back_chunk_ranks_by_rarity() {
        let count = 2;
        for wide in [false, true] {
            let mut picker = PiecePicker::new(count, 5);
            picker.set_wide(wide);
            // Chunk 0 is held by both peers, chunk 1 by B alone.
            picker.add_peer_chunks(&only(count, &[0]));
            picker.add_peer_chunks(&all(count));
            let now = Instant::now();
            // A asks for chunk 0 and is refused: it is handed back.
            assert_eq!(picker.pick(A, &only(count, &[0]), now), Some(0));
            assert!(picker.release(0, A));
            let next = picker.pick(B, &all(count), now);
            if wide {
                assert_eq!(next, Some(1), "the chunk only B has goes first");
            } else {
                assert_eq!(next, Some(0), "front to back: the handed-back one");
            }
            picker.check_invariant();
        }
    }

    #[test]
    fn endgame_adds_a_second_owner_and_cancels_the_loser() {
        let count = 2;
        let mut picker = PiecePicker::new(count, 9);
        picker.add_peer_chunks(&all(count));
        picker.add_peer_chunks(&all(count));
        let t0 = Instant::now();
        let first = picker.pick(A, &all(count), t0).unwrap();
        let second = picker
            .pick(A, &all(count), t0 + Duration::from_millis(5))
            .unwrap();
        assert_eq!(
            picker.pick(B, &all(count), t0),
            None,
            "nothing missing is left"
        );
        let duplicate = picker.pick_duplicate(B, &all(count), t0, |_| true).unwrap();
        assert_eq!(
            duplicate, first,
            "the chunk in flight the longest goes first"
        );
        assert_eq!(
            picker.pick_duplicate(A, &all(count), t0, |_| true),
            None,
            "A owns both"
        );
        picker.check_invariant();
        assert_eq!(
            picker.mark_verified(first, B),
            VerifiedOutcome::Done { cancel: vec![A] }
        );
        assert_eq!(
            picker.mark_verified(first, A),
            VerifiedOutcome::AlreadyVerified
        );
        assert_eq!(
            picker.mark_verified(second, A),
            VerifiedOutcome::Done { cancel: vec![] }
        );
        assert!(picker.is_complete());
        picker.check_invariant();
    }

    #[test]
    fn duplicates_respect_the_owner_limits_and_the_filter() {
        let mut picker = PiecePicker::new(1, 1);
        for _ in 0..6 {
            picker.add_peer_chunks(&all(1));
        }
        let now = Instant::now();
        let peer = LinkId;
        picker.pick(peer(1), &all(1), now).unwrap();
        assert_eq!(
            picker.pick_duplicate(peer(2), &all(1), now, |_| false),
            None
        );
        // Requests waiting in queues: up to four owners.
        for key in 2..=4 {
            assert_eq!(
                picker.pick_duplicate(peer(key), &all(1), now, |_| true),
                Some(0)
            );
        }
        assert_eq!(picker.owners(0).len(), MAX_OWNERS + MAX_ENDGAME_WAITING);
        assert_eq!(
            picker.pick_duplicate(peer(5), &all(1), now, |_| true),
            None,
            "four owners in all"
        );
        picker.check_invariant();
        // Two streams begun (neither cancels the others here): no more,
        // even with a waiting owner gone.
        picker.start(0, peer(1), |_| false);
        picker.start(0, peer(2), |_| false);
        assert!(picker.release(0, peer(4)));
        assert_eq!(
            picker.pick_duplicate(peer(5), &all(1), now, |_| true),
            None,
            "two streams begun"
        );
        // One of them handed back: room again.
        assert!(picker.release(0, peer(2)));
        assert_eq!(
            picker.pick_duplicate(peer(5), &all(1), now, |_| true),
            Some(0)
        );
        picker.check_invariant();
    }

    #[test]
    fn releasing_one_of_two_owners_keeps_the_chunk_in_flight() {
        let mut picker = PiecePicker::new(1, 1);
        picker.add_peer_chunks(&all(1));
        let now = Instant::now();
        picker.pick(A, &all(1), now).unwrap();
        picker.pick_duplicate(B, &all(1), now, |_| true).unwrap();
        assert!(picker.release(0, A));
        assert!(matches!(picker.state(0), Some(ChunkState::InFlight(owners)) if owners.len() == 1));
        assert!(!picker.release(0, A), "A is no longer an owner");
        assert!(picker.release(0, B));
        assert_eq!(picker.state(0), Some(&ChunkState::Missing));
        picker.check_invariant();
    }

    #[test]
    fn availability_follows_peers_and_haves() {
        let count = 4;
        let mut picker = PiecePicker::new(count, 1);
        let a = only(count, &[0, 1]);
        picker.add_peer_chunks(&a);
        picker.add_have(3);
        picker.add_have(3);
        assert_eq!(
            (0..count)
                .map(|i| picker.availability(i))
                .collect::<Vec<_>>(),
            [1, 1, 0, 2]
        );
        picker.remove_peer_chunks(&a);
        assert_eq!(picker.availability(0), 0);
        picker.check_invariant();
    }

    #[test]
    fn resumed_chunks_are_never_picked() {
        let count = 8;
        let mut picker = PiecePicker::new(count, 1);
        for index in 0..6 {
            picker.mark_verified_at_start(index);
        }
        picker.add_peer_chunks(&all(count));
        let now = Instant::now();
        let mut picked = vec![
            picker.pick(A, &all(count), now).unwrap(),
            picker.pick(A, &all(count), now).unwrap(),
        ];
        picked.sort();
        assert_eq!(picked, [6, 7]);
        assert_eq!(picker.pick(A, &all(count), now), None);
        picker.check_invariant();
    }

    #[test]
    fn a_chunk_found_bad_later_is_fetched_again_first() {
        let count = 8;
        let mut picker = PiecePicker::new(count, 1);
        picker.add_peer_chunks(&all(count));
        for index in 0..count {
            picker.mark_verified_at_start(index);
        }
        picker.mark_missing(5);
        assert!(!picker.is_complete());
        assert_eq!(picker.pick(A, &all(count), Instant::now()), Some(5));
        picker.check_invariant();
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            AddPeer(Vec<bool>),
            Have(u32),
            Pick(u32),
            Duplicate(u32),
            Release(u32, u32),
            Start(u32, u32, bool),
            AddOwner(u32, u32),
            ReleasePeer(u32),
            Verify(u32, u32),
            Missing(u32),
        }

        const COUNT: u32 = 24;

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                proptest::collection::vec(any::<bool>(), COUNT as usize).prop_map(Op::AddPeer),
                (0..COUNT).prop_map(Op::Have),
                (0..4u32).prop_map(Op::Pick),
                (0..4u32).prop_map(Op::Duplicate),
                (0..COUNT, 0..4u32).prop_map(|(c, p)| Op::Release(c, p)),
                (0..COUNT, 0..4u32, any::<bool>()).prop_map(|(c, p, b)| Op::Start(c, p, b)),
                (0..COUNT, 0..4u32).prop_map(|(c, p)| Op::AddOwner(c, p)),
                (0..4u32).prop_map(Op::ReleasePeer),
                (0..COUNT, 0..4u32).prop_map(|(c, p)| Op::Verify(c, p)),
                (0..COUNT).prop_map(Op::Missing),
            ]
        }

        /// Applies `op`; the chunk a pick or a verification was about.
        fn apply(picker: &mut PiecePicker, op: Op, now: Instant) -> Option<u32> {
            let everything = all(COUNT);
            match op {
                Op::AddPeer(has) => {
                    let held: Vec<u32> = (0..COUNT).filter(|i| has[*i as usize]).collect();
                    picker.add_peer_chunks(&only(COUNT, &held));
                    None
                }
                Op::Have(chunk) => {
                    picker.add_have(chunk);
                    None
                }
                Op::Pick(peer) => picker.pick(LinkId(u64::from(peer)), &everything, now),
                Op::Duplicate(peer) => {
                    picker.pick_duplicate(LinkId(u64::from(peer)), &everything, now, |_| true)
                }
                Op::Release(chunk, peer) => {
                    picker.release(chunk, LinkId(u64::from(peer)));
                    None
                }
                Op::Start(chunk, peer, cancel) => {
                    let dropped = picker.start(chunk, LinkId(u64::from(peer)), |_| cancel);
                    assert!(
                        dropped
                            .iter()
                            .all(|other| *other != LinkId(u64::from(peer)))
                    );
                    None
                }
                Op::AddOwner(chunk, peer) => {
                    picker.add_owner(chunk, LinkId(u64::from(peer)), now);
                    None
                }
                Op::ReleasePeer(peer) => {
                    picker.release_peer(LinkId(u64::from(peer)));
                    None
                }
                Op::Verify(chunk, peer) => {
                    picker.mark_verified(chunk, LinkId(u64::from(peer)));
                    Some(chunk)
                }
                Op::Missing(chunk) => {
                    picker.mark_missing(chunk);
                    None
                }
            }
        }

        proptest! {
            /// Whatever happens, every chunk is in exactly one state and
            /// the counts add up.
            #[test]
            fn the_invariant_holds_under_any_sequence(ops in proptest::collection::vec(op(), 1..120)) {
                let mut picker = PiecePicker::new(COUNT, 11);
                let now = Instant::now();
                for op in ops {
                    let chunk = apply(&mut picker, op.clone(), now);
                    match (op, chunk) {
                        (Op::Pick(_), Some(chunk)) => {
                            prop_assert!(matches!(picker.state(chunk), Some(ChunkState::InFlight(_))));
                        }
                        (Op::Verify(..), Some(chunk)) => {
                            prop_assert_eq!(picker.state(chunk), Some(&ChunkState::Verified));
                        }
                        _ => {}
                    }
                    picker.check_invariant();
                }
            }

            /// Walking the missing chunks and walking the peer's chunks
            /// choose the same chunk, whatever the picker's state, the
            /// peer's chunks and the tie-break's start.
            #[test]
            fn both_walks_choose_the_same_chunk(
                ops in proptest::collection::vec(op(), 1..120),
                peer in proptest::collection::vec(any::<bool>(), COUNT as usize),
                start in proptest::option::of(0..COUNT),
            ) {
                let mut picker = PiecePicker::new(COUNT, 11);
                let now = Instant::now();
                for op in ops {
                    apply(&mut picker, op, now);
                }
                let held: Vec<u32> = (0..COUNT).filter(|i| peer[*i as usize]).collect();
                let peer = only(COUNT, &held);
                prop_assert_eq!(
                    picker.rarest_held(&peer, start),
                    picker.rarest_missing(&peer, start)
                );
            }
        }
    }
}
