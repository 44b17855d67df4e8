//! The upload side's state: the uplink meter, the upload slots (overdue
//! uploads included), the request queue and the rate cap. What the node
//! does with it is in `serving`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use minimodel_wire::{ChunkIndex, HaveBitfield};

use super::Action;
use crate::ids::LinkId;
use crate::upload::{RequestRefusal, TokenBucket, UploadQueue};

/// How fast this node's uplink carries its uploads: bytes of finished
/// uploads per second of time with at least one upload under way, a moving
/// average over periods of at least [`UplinkMeter::PERIOD`]. Unknown until
/// the first period ends.
#[derive(Debug, Default)]
pub(super) struct UplinkMeter {
    rate: Option<f64>,
    busy_since: Option<Instant>,
    /// Busy time and finished bytes of the period so far.
    busy: std::time::Duration,
    bytes: u64,
}

impl UplinkMeter {
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(500);
    const WEIGHT: f64 = 0.3;

    /// Bytes per second, once measured.
    pub(super) fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Whether an upload is under way changed (or not) at `now`.
    pub(super) fn set_busy(&mut self, busy: bool, now: Instant) {
        match (busy, self.busy_since) {
            (true, None) => self.busy_since = Some(now),
            (false, Some(since)) => {
                self.busy += now.saturating_duration_since(since);
                self.busy_since = None;
            }
            _ => {}
        }
    }

    /// An upload of `bytes` finished at `now`.
    pub(super) fn finished(&mut self, bytes: u64, now: Instant) {
        self.bytes += bytes;
        let busy = self.busy
            + self.busy_since.map_or(std::time::Duration::ZERO, |since| {
                now.saturating_duration_since(since)
            });
        if busy < Self::PERIOD {
            return;
        }
        let sample = self.bytes as f64 / busy.as_secs_f64();
        self.rate = Some(match self.rate {
            Some(rate) => rate + Self::WEIGHT * (sample - rate),
            None => sample,
        });
        self.bytes = 0;
        self.busy = std::time::Duration::ZERO;
        if self.busy_since.is_some() {
            self.busy_since = Some(now);
        }
    }
}

/// The upload side's state.
#[derive(Debug)]
pub(super) struct Uploads {
    pub(super) queue: UploadQueue,
    /// Uploads under way, each with the time from which it is overdue
    /// (`upload_overdue`) and no longer holds a slot.
    pub(super) active: BTreeMap<(LinkId, u32), Option<Instant>>,
    /// The offsets of queued RequestFroms (v3): their uploads send the
    /// chunk from there on. A queued request without one is whole.
    pub(super) offsets: BTreeMap<(LinkId, u32), u32>,
    /// Chunks a link asked for again while their upload to it ran, each
    /// with the first byte asked (0: whole), the last asking kept: taken
    /// up as a request when that upload ends ([`Self::asked_again`]). A
    /// peer that found a chunk damaged on its disk asks for it again as
    /// soon as it is stored, which can be before the upload here saw its
    /// last bytes acknowledged. One at most per upload under way.
    pub(super) again: BTreeMap<(LinkId, u32), u32>,
    pub(super) limit: Option<(u64, TokenBucket)>,
    /// An upload waits for the rate limit until then.
    pub(super) wake: Option<Instant>,
    pub(super) uploaded_bytes: u64,
    pub(super) meter: UplinkMeter,
    /// Uploads at once the endpoint's gate grants this swarm, when it
    /// shares its endpoint with others (`crate::gate`).
    pub(super) grant: Option<usize>,
    /// Its own upload cap (`max_upload`) and its part of the endpoint's;
    /// `limit` holds the lower.
    own_rate: Option<u64>,
    shared_rate: Option<u64>,
    /// The bucket of a cap that went, kept with its debt for when one
    /// comes back.
    parked: Option<TokenBucket>,
    /// Links whose connection made no progress at its last measurement
    /// (`upload_progress_every`): their uploads hold no slot and count
    /// toward no limit but [`Self::most_under_way`].
    stuck: std::collections::BTreeSet<LinkId>,
    /// When the chunks started so far have left the uplink, at its
    /// measured rate ([`Self::wire_idle`]).
    wire_free_at: Option<Instant>,
}

/// Bytes of chunks under way to one link at most, past what may run
/// ([`Uploads::most_per_link`]).
const LINK_UPLOAD_BYTES: u64 = 32 << 20;
/// Bytes of chunks under way at most, past twice what may run
/// ([`Uploads::most_under_way`]).
const UPLOAD_BYTES: u64 = 40 << 20;

/// Whole chunks of `chunk_size` in `bytes`.
fn chunks_in(bytes: u64, chunk_size: u32) -> usize {
    usize::try_from(bytes / u64::from(chunk_size.max(1))).unwrap_or(usize::MAX)
}

/// A token bucket's burst for `rate`: 64 KiB to 1 MiB.
fn burst_of(rate: u64) -> u64 {
    rate.clamp(64 << 10, 1 << 20)
}

impl Uploads {
    pub(super) fn new(queue: UploadQueue, max_upload: Option<u64>, now: Instant) -> Self {
        Self {
            queue,
            active: BTreeMap::new(),
            offsets: BTreeMap::new(),
            limit: max_upload.map(|rate| (rate, TokenBucket::new(rate, burst_of(rate), now))),
            wake: None,
            uploaded_bytes: 0,
            meter: UplinkMeter::default(),
            grant: None,
            own_rate: max_upload,
            shared_rate: None,
            parked: None,
            stuck: std::collections::BTreeSet::new(),
            wire_free_at: None,
            again: BTreeMap::new(),
        }
    }

    /// An upload of `len` bytes started at `now`: it leaves the uplink
    /// after those started before it, at the measured rate or the cap in
    /// force, the lower (no rate measured yet: no estimate, and the
    /// uplink counts as idle only with no upload under way). At least a
    /// microsecond, so that a tiny last chunk does not leave the uplink
    /// idle for every second copy queued.
    pub(super) fn note_wire(&mut self, len: u64, now: Instant) {
        let Some(measured) = self.meter.rate().filter(|rate| *rate > 0.0) else {
            return;
        };
        let rate = self
            .rate_cap()
            .map_or(measured, |cap| measured.min(cap.max(1) as f64));
        let from = self.wire_free_at.map_or(now, |at| at.max(now));
        let secs = (len as f64 / rate).clamp(1e-6, 3600.0);
        self.wire_free_at = Some(from + std::time::Duration::from_secs_f64(secs));
    }

    /// Whether the uploads under way have left the uplink by `now`, as far
    /// as the measured rate tells: what remains of them is their last
    /// bytes' acknowledgements, a round trip through the peer's uplink,
    /// and the uplink idles meanwhile unless another upload starts. None
    /// under way (stuck ones aside): idle. The estimate counts every
    /// upload started since the uplink was last idle, cancelled and stuck
    /// ones too, and the meter counts an upload's time until its
    /// acknowledgement, so its rate is at most the uplink's: the estimate
    /// is usually late, which costs only what this rule gains. It is
    /// early when the uplink's rate fell below what the meter last
    /// measured (a busier shared endpoint, whose other swarms' bytes this
    /// swarm's meter does not see); each early reading lets one upload
    /// start, whose bytes move the estimate on.
    pub(super) fn wire_idle(&self, now: Instant) -> bool {
        self.running() == 0 || self.wire_free_at.is_some_and(|at| at <= now)
    }

    /// When the uploads under way leave the uplink, if later than `now`
    /// (see [`Self::wire_idle`]).
    pub(super) fn next_wire_idle(&self, now: Instant) -> Option<Instant> {
        (self.running() > 0)
            .then_some(self.wire_free_at)
            .flatten()
            .filter(|&at| at > now)
    }

    /// Marks `link`'s uploads as making no progress (`stuck`) or as
    /// making it again; whether that changed. The uplink counts as busy
    /// while an upload that is not stuck runs.
    pub(super) fn set_stuck(&mut self, link: LinkId, stuck: bool, now: Instant) -> bool {
        let changed = match stuck {
            true => self.active_for(link) > 0 && self.stuck.insert(link),
            false => self.stuck.remove(&link),
        };
        if changed {
            self.note_busy(now);
        }
        changed
    }

    /// Whether `link`'s uploads make no progress.
    pub(super) fn is_stuck(&self, link: LinkId) -> bool {
        self.stuck.contains(&link)
    }

    /// Tells the meter whether an upload that makes progress runs.
    pub(super) fn note_busy(&mut self, now: Instant) {
        let busy = self.running() > 0;
        self.meter.set_busy(busy, now);
        if !busy {
            // Nothing under way: what was counted on the uplink is gone.
            self.wire_free_at = None;
        }
    }

    /// The uplink's measured rate ([`UplinkMeter::rate`]).
    pub(super) fn meter_rate(&self) -> Option<f64> {
        self.meter.rate()
    }

    /// Uploads under way to links that make progress.
    pub(super) fn running(&self) -> usize {
        match self.stuck.is_empty() {
            true => self.active.len(),
            false => self
                .active
                .keys()
                .filter(|(link, _)| !self.stuck.contains(link))
                .count(),
        }
    }

    /// Sets this swarm's part of its endpoint's upload cap; whether uploads
    /// may now start sooner (the cap rose or went).
    pub(super) fn set_shared_rate(&mut self, rate: Option<u64>, now: Instant) -> bool {
        self.shared_rate = rate;
        self.rates_changed(now)
    }

    /// Sets this swarm's own upload cap (`max_upload`) while it runs;
    /// whether uploads may now start sooner.
    pub(super) fn set_own_rate(&mut self, rate: Option<u64>, now: Instant) -> bool {
        self.own_rate = rate;
        self.rates_changed(now)
    }

    /// The cap in force now: its own and its part of the endpoint's, the
    /// lower.
    pub(super) fn rate_cap(&self) -> Option<u64> {
        self.limit.as_ref().map(|(rate, _)| *rate)
    }

    /// Puts the lower of the own and the shared rate in force; whether
    /// uploads may now start sooner (the cap rose or went).
    fn rates_changed(&mut self, now: Instant) -> bool {
        let wanted = match (self.own_rate, self.shared_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let current = self.limit.as_ref().map(|(rate, _)| *rate);
        if wanted == current {
            return false;
        }
        match (&mut self.limit, wanted) {
            (Some((rate, bucket)), Some(new)) => {
                *rate = new;
                bucket.set_rate(new, burst_of(new), now);
            }
            (limit @ None, Some(new)) => {
                // A bucket used before comes back with its debt: a cap that
                // goes and comes lets no burst through.
                let bucket = match self.parked.take() {
                    Some(mut bucket) => {
                        bucket.set_rate(new, burst_of(new), now);
                        bucket
                    }
                    None => TokenBucket::new(new, burst_of(new), now),
                };
                *limit = Some((new, bucket));
            }
            (limit, None) => self.parked = limit.take().map(|(_, bucket)| bucket),
        }
        match (current, wanted) {
            (Some(old), Some(new)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Uploads at once: as many as can each finish within
    /// `upload_slot_time` at the measured uplink rate (a slow uplink sends
    /// one chunk after another, so each is whole, and can be passed on,
    /// soon), at least 1, at most `upload_slots`; one until the rate is
    /// known (a first upload at a slow rate must not be one of eight, nor
    /// its measurement wait for all of them).
    pub(super) fn slots(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        let own = self.own_slots(config, chunk_size);
        self.grant.map_or(own, |grant| own.min(grant.max(1)))
    }

    /// [`Self::slots`] before the gate's grant.
    pub(super) fn own_slots(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        let Some(slot_time) = config.upload_slot_time else {
            return config.upload_slots;
        };
        match self.meter.rate() {
            Some(rate) => {
                let fit = rate * slot_time.as_secs_f64() / f64::from(chunk_size.max(1));
                (fit.ceil() as usize).clamp(1, config.upload_slots)
            }
            None => 1,
        }
    }

    /// Requests queued at most, over all peers: what the uplink sends in
    /// `upload_queue_time` at its measured rate (at least the slots);
    /// `upload_slots` until the rate is known. More are answered
    /// Busy at once, so that the asking peer tries another source instead
    /// of waiting behind a slow uplink.
    fn queue_limit(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        let Some(queue_time) = config.upload_queue_time else {
            return usize::MAX;
        };
        let slots = self.slots(config, chunk_size);
        match self.meter.rate() {
            Some(rate) => {
                let fit = rate * queue_time.as_secs_f64() / f64::from(chunk_size.max(1));
                (fit.floor() as usize).max(slots)
            }
            None => config.upload_slots,
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.wake
    }

    /// Requests queued, over all peers.
    pub(super) fn queued(&self) -> usize {
        self.queue.total_queued()
    }

    /// Whether any request waits for a slot.
    pub(super) fn has_queued(&self) -> bool {
        self.queue.total_queued() > 0
    }

    /// Uploads under way that hold a slot: not yet overdue at `now`, to a
    /// link that makes progress.
    pub(super) fn holding(&self, now: Instant) -> usize {
        self.active
            .iter()
            .filter(|((link, _), overdue)| {
                overdue.is_none_or(|at| at > now) && !self.stuck.contains(link)
            })
            .count()
    }

    /// When the next upload under way becomes overdue and frees its slot.
    pub(super) fn next_overdue(&self, now: Instant) -> Option<Instant> {
        self.active
            .values()
            .flatten()
            .filter(|&&at| at > now)
            .min()
            .copied()
    }

    /// Most uploads under way at once, overdue ones included, each link
    /// counted for at most `upload_slots_per_peer` ([`Self::sharing`]):
    /// twice the slots, at most `upload_slots` or, on an endpoint shared
    /// with other swarms, the gate's grant (the grants add up to the
    /// endpoint's slots).
    fn most_running(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        let cap = self.grant.map_or(config.upload_slots, |grant| grant.max(1));
        (2 * self.slots(config, chunk_size)).min(cap)
    }

    /// Most uploads under way to one link: four times
    /// [`Self::most_running`], and no more than [`LINK_UPLOAD_BYTES`] of
    /// chunks, but never fewer than may run. Past its first
    /// `upload_slots_per_peer`, a link's uploads take no slot
    /// ([`Self::sharing`]): this keeps one far link from taking every
    /// upload under way ([`Self::most_under_way`]), and bounds the chunks
    /// read for it.
    pub(super) fn most_per_link(
        &self,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
    ) -> usize {
        let running = self.most_running(config, chunk_size);
        (4 * running)
            .min(chunks_in(LINK_UPLOAD_BYTES, chunk_size))
            .max(running)
    }

    /// Most uploads under way at once, stuck ones included: five times
    /// [`Self::most_running`] and no more than [`UPLOAD_BYTES`] of chunks,
    /// but never fewer than twice what may run, so that links that make no
    /// progress cannot open uploads without end, one that stops reading
    /// with all the uploads one link may have ([`Self::most_per_link`])
    /// leaves others theirs, and each upload's chunk, read whole, is
    /// bounded in memory.
    #[cfg(test)]
    pub(super) fn most_under_way_for_tests(
        &self,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
    ) -> usize {
        self.most_under_way(config, chunk_size)
    }

    fn most_under_way(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        let running = self.most_running(config, chunk_size);
        (5 * running)
            .min(chunks_in(UPLOAD_BYTES, chunk_size))
            .max(2 * running)
    }

    /// Uploads under way to links that make progress, at most `per_link`
    /// of each link (`upload_slots_per_peer`), of those `counts` keeps.
    ///
    /// A link's further uploads share nothing with other links: a
    /// connection sends its piece streams one after another, oldest first
    /// (`PieceSendStream::open`), so they wait behind its first ones on
    /// its own connection. On a long path they are what keeps it busy: an
    /// upload ends only when every byte is acknowledged, a round trip
    /// after its last one left, two on a lossy path, and the next ones go
    /// out meanwhile.
    fn sharing(&self, per_link: usize, counts: impl Fn(Option<Instant>) -> bool) -> usize {
        let mut count = 0;
        let mut link = None;
        let mut of_link = 0;
        for ((this, _), overdue) in &self.active {
            if self.stuck.contains(this) || !counts(*overdue) {
                continue;
            }
            if link != Some(*this) {
                link = Some(*this);
                of_link = 0;
            }
            if of_link < per_link {
                count += 1;
                of_link += 1;
            }
        }
        count
    }

    /// Whether a slot is free at `now`: fewer uploads hold one than
    /// `slots`, fewer than [`Self::most_running`] run to links that make
    /// progress (each counted as at most `upload_slots_per_peer` of a link,
    /// [`Self::sharing`]), and fewer than [`Self::most_under_way`] in all.
    pub(super) fn slot_free(
        &self,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
        now: Instant,
    ) -> bool {
        let per_link = config.upload_slots_per_peer;
        self.sharing(per_link, |overdue| overdue.is_none_or(|at| at > now))
            < self.slots(config, chunk_size)
            && self.sharing(per_link, |_| true) < self.most_running(config, chunk_size)
            && self.active.len() < self.most_under_way(config, chunk_size)
    }

    /// When the next upload under way becomes overdue and so frees a slot
    /// (`None` if that cannot free one: all the uploads that may run are
    /// running).
    pub(super) fn next_slot_free(
        &self,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
        now: Instant,
    ) -> Option<Instant> {
        let running = self.sharing(config.upload_slots_per_peer, |_| true);
        (running < self.most_running(config, chunk_size)
            && self.active.len() < self.most_under_way(config, chunk_size))
        .then(|| self.next_overdue(now))
        .flatten()
    }

    /// When an upload of `len` bytes starting now is overdue:
    /// `upload_overdue` times what it takes at the measured uplink rate
    /// shared with the uploads under way (a link's past its share, which
    /// wait behind its first ones, not counted: [`Self::sharing`]) or, if
    /// more, with as many as the slots let run.
    pub(super) fn overdue_at(
        &self,
        config: &crate::config::NodeConfig,
        len: u64,
        chunk_size: u32,
        now: Instant,
    ) -> Option<Instant> {
        let factor = config.upload_overdue?;
        let rate = self.meter.rate().filter(|rate| *rate > 0.0)?;
        let running = self.sharing(config.upload_slots_per_peer, |_| true);
        let sharing = (running + 1).max(self.slots(config, chunk_size));
        let secs = factor * len as f64 * sharing as f64 / rate;
        // An hour at most: a huge factor must not overflow the clock.
        Some(now + std::time::Duration::from_secs_f64(secs.min(3600.0)))
    }

    /// Uploads this swarm would run now: those under way and those
    /// waiting, of links that make progress, at most its own slots (a
    /// frozen peer's uploads claim no part of a shared endpoint's slots).
    pub(super) fn demand(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        (self.running() + self.queued_by_progressing()).min(self.own_slots(config, chunk_size))
    }

    /// See [`UploadQueue::next_starving`].
    pub(super) fn next_starving(
        &self,
        after: std::time::Duration,
        now: Instant,
    ) -> Option<Instant> {
        self.queue.next_starving(after, now)
    }

    /// A peer linked with `has`; `serves`: its Hello says it serves others.
    pub(super) fn add_peer(&mut self, link: LinkId, has: HaveBitfield, serves: bool) {
        self.queue.add_peer(link, has);
        if serves {
            self.queue.set_serves(link);
        }
    }

    pub(super) fn peer_have(&mut self, link: LinkId, chunk: ChunkIndex) {
        self.queue.peer_have(link, chunk.0);
    }

    /// Queues a request; at a full node-wide queue, in place of a
    /// request for a commoner chunk, which it returns (to be answered
    /// busy): see [`UploadQueue::on_request_replacing`]. A request for a
    /// chunk being sent to the same peer is never queued beside it (its
    /// asker keeps it with [`Self::asked_again`] first): each upload under
    /// way is one of (link, chunk), so another started beside it would be
    /// counted by no limit (its slot, its bytes read) and could not be
    /// cancelled.
    pub(super) fn on_request(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        have: &HaveBitfield,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
        now: Instant,
    ) -> Result<Option<(LinkId, ChunkIndex)>, RequestRefusal> {
        if self.active.contains_key(&(link, chunk.0)) {
            return Err(RequestRefusal::Duplicate);
        }
        if have.get(chunk) && self.queued_by_progressing() >= self.queue_limit(config, chunk_size) {
            let (victim, queued) = self.queue.on_request_replacing(link, chunk.0, have, now)?;
            return Ok(Some((victim, ChunkIndex(queued))));
        }
        self.queue.on_request(link, chunk.0, have, now)?;
        Ok(None)
    }

    /// Requests queued by links that make progress: those of a link that
    /// makes none (its process frozen, say) wait without keeping others'
    /// requests out.
    fn queued_by_progressing(&self) -> usize {
        let stuck: usize = self.stuck.iter().map(|&link| self.queue.queued(link)).sum();
        self.queue.total_queued().saturating_sub(stuck)
    }

    /// Whether anything is queued for or being sent to `link`.
    pub(super) fn is_busy(&self, link: LinkId) -> bool {
        self.queue.queued(link) > 0 || self.active_for(link) > 0
    }

    pub(super) fn active_for(&self, link: LinkId) -> usize {
        self.active.range((link, 0)..=(link, u32::MAX)).count()
    }

    /// Forgets what `link` asked for and has not begun: it will not read
    /// it (it said goodbye).
    pub(super) fn drop_queued(&mut self, link: LinkId) {
        self.queue.remove_peer(link);
        self.forget_offsets(link);
    }

    /// Forgets the offsets of `link`'s requests, and what it asked for
    /// again.
    fn forget_offsets(&mut self, link: LinkId) {
        self.offsets.retain(|(asker, _), _| *asker != link);
        self.again.retain(|(asker, _), _| *asker != link);
    }

    /// Whether `link` asking for `chunk` (from byte `from`) is asking
    /// again for one being uploaded to it: then the asking is kept, the
    /// last one for each upload, to be taken up when the upload ends
    /// ([`Self::take_asked_again`]). Another upload started beside it
    /// would be counted by no limit (its slot, its bytes read) and could
    /// not be cancelled, and one dropped would leave the peer waiting for
    /// a chunk it was told nothing of.
    pub(super) fn asked_again(&mut self, link: LinkId, chunk: ChunkIndex, from: u32) -> bool {
        if !self.active.contains_key(&(link, chunk.0)) {
            return false;
        }
        self.again.insert((link, chunk.0), from);
        true
    }

    /// The asking kept for `chunk` by [`Self::asked_again`], once its
    /// upload to `link` ended: the first byte asked.
    pub(super) fn take_asked_again(&mut self, link: LinkId, chunk: ChunkIndex) -> Option<u32> {
        self.again.remove(&(link, chunk.0))
    }

    /// The first byte to send of a request taken off the queue (0 for a
    /// whole chunk), forgotten here.
    pub(super) fn take_offset(&mut self, link: LinkId, chunk: ChunkIndex) -> u32 {
        self.offsets.remove(&(link, chunk.0)).unwrap_or(0)
    }

    /// A request was queued: from `from` on (a RequestFrom) or whole; a
    /// request it replaced is forgotten.
    pub(super) fn note_offset(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        from: u32,
        replaced: Option<(LinkId, ChunkIndex)>,
    ) {
        if let Some((victim, queued)) = replaced {
            self.offsets.remove(&(victim, queued.0));
        }
        if from > 0 {
            self.offsets.insert((link, chunk.0), from);
        } else {
            self.offsets.remove(&(link, chunk.0));
        }
    }

    /// The chunks being uploaded to `link`.
    pub(super) fn active_chunks(&self, link: LinkId) -> impl Iterator<Item = u32> + '_ {
        self.active
            .range((link, 0)..=(link, u32::MAX))
            .map(|((_, chunk), _)| *chunk)
    }

    /// Drops a queued request of `link` for `chunk`, with its offset;
    /// false when it was not queued.
    pub(super) fn drop_request(&mut self, link: LinkId, chunk: u32) -> bool {
        let queued = self.queue.on_cancel(link, chunk);
        if queued {
            self.offsets.remove(&(link, chunk));
        }
        queued
    }

    /// The peer withdrew a request: dropped from the queue, or its upload
    /// is stopped (its stream reset, never finished short).
    pub(super) fn cancel(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        actions: &mut VecDeque<Action>,
    ) {
        self.offsets.remove(&(link, chunk.0));
        // The withdrawn request is the one asked again: the upload under
        // way, all of whose bytes the peer may have, runs to its end.
        if self.again.remove(&(link, chunk.0)).is_some() {
            return;
        }
        if !self.queue.on_cancel(link, chunk.0) && self.active.remove(&(link, chunk.0)).is_some() {
            actions.push_back(Action::CancelUpload { link, chunk });
        }
    }

    /// Forgets `link`'s requests and stops its uploads.
    pub(super) fn remove_peer(
        &mut self,
        link: LinkId,
        actions: &mut VecDeque<Action>,
        now: Instant,
    ) {
        self.queue.remove_peer(link);
        self.forget_offsets(link);
        self.stuck.remove(&link);
        let chunks: Vec<u32> = self
            .active
            .range((link, 0)..=(link, u32::MAX))
            .map(|((_, chunk), _)| *chunk)
            .collect();
        for chunk in chunks {
            self.active.remove(&(link, chunk));
            actions.push_back(Action::CancelUpload {
                link,
                chunk: ChunkIndex(chunk),
            });
        }
        self.note_busy(now);
    }
}
