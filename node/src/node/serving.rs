//! The serving side: which request is uploaded next, the upload rate cap,
//! and telling peers of each other (peer exchange).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use minimodel_wire::{ChunkIndex, GoodbyeReason, HaveBitfield, Message, PeerEntry, PeerFlags};

use super::{Action, NodeCore};
use crate::address::{canonical, reachable_from};
use crate::ids::LinkId;
use crate::report::{Departure, LinkEnd};
use crate::upload::{RequestRefusal, Resends, TokenBucket, UploadQueue};

/// How an upload ended, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Every byte was handed to the transport and the stream finished.
    Sent {
        /// Bytes of the chunk.
        bytes: u64,
    },
    /// The peer stopped the stream or the link went away.
    Stopped,
    /// Reading the chunk failed here.
    Failed,
}

/// Whether a peer with uploads under way takes their bytes: its
/// connection must send `upload_stall_bytes` per `upload_stall_timeout`
/// (measured by the driver on request, [`Action::MeasureSent`]). A slow
/// link that keeps draining is not a stall; a peer whose flow control
/// stays shut is.
#[derive(Debug, Clone)]
pub(super) struct UploadWatch {
    /// The connection's bytes sent at `since`; `None` until the first
    /// measurement arrives.
    sent: Option<u64>,
    since: Instant,
    /// A measurement was asked for and has not come back.
    asking: bool,
}

impl UploadWatch {
    /// When the next measurement is due, if one is.
    pub(super) fn deadline(&self, timeout: std::time::Duration) -> Option<Instant> {
        (!self.asking && self.sent.is_some()).then(|| self.since + timeout)
    }
}

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
    fn set_busy(&mut self, busy: bool, now: Instant) {
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
    fn finished(&mut self, bytes: u64, now: Instant) {
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
    queue: UploadQueue,
    /// Uploads under way, each with the time from which it is overdue
    /// (`upload_overdue`) and no longer holds a slot.
    active: BTreeMap<(LinkId, u32), Option<Instant>>,
    limit: Option<(u64, TokenBucket)>,
    /// An upload waits for the rate limit until then.
    wake: Option<Instant>,
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
            limit: max_upload.map(|rate| (rate, TokenBucket::new(rate, burst_of(rate), now))),
            wake: None,
            uploaded_bytes: 0,
            meter: UplinkMeter::default(),
            grant: None,
            own_rate: max_upload,
            shared_rate: None,
            parked: None,
        }
    }

    /// Sets this swarm's part of its endpoint's upload cap; whether uploads
    /// may now start sooner (the cap rose or went).
    pub(super) fn set_shared_rate(&mut self, rate: Option<u64>, now: Instant) -> bool {
        self.shared_rate = rate;
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

    /// Whether no upload is under way.
    pub(super) fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Requests queued, over all peers.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.total_queued()
    }

    /// Whether any request waits for a slot.
    pub(super) fn has_queued(&self) -> bool {
        self.queue.total_queued() > 0
    }

    /// Uploads under way.
    pub(super) fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Uploads under way that hold a slot: not yet overdue at `now`.
    pub(super) fn holding(&self, now: Instant) -> usize {
        self.active
            .values()
            .filter(|overdue| overdue.is_none_or(|at| at > now))
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

    /// Most uploads under way at once, overdue ones included: twice the
    /// slots, at most `upload_slots` or, on an endpoint shared with other
    /// swarms, the gate's grant (the grants add up to the endpoint's
    /// slots).
    fn most_running(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        let cap = self.grant.map_or(config.upload_slots, |grant| grant.max(1));
        (2 * self.slots(config, chunk_size)).min(cap)
    }

    /// Whether a slot is free at `now`: fewer uploads hold one than
    /// `slots`, and fewer than [`Self::most_running`] run in all.
    pub(super) fn slot_free(
        &self,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
        now: Instant,
    ) -> bool {
        self.holding(now) < self.slots(config, chunk_size)
            && self.active.len() < self.most_running(config, chunk_size)
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
        (self.active.len() < self.most_running(config, chunk_size))
            .then(|| self.next_overdue(now))
            .flatten()
    }

    /// When an upload of `len` bytes starting now is overdue:
    /// `upload_overdue` times what it takes at the measured uplink rate
    /// shared with the uploads under way or, if more, with as many as the
    /// slots let run.
    fn overdue_at(
        &self,
        config: &crate::config::NodeConfig,
        len: u64,
        slots: usize,
        now: Instant,
    ) -> Option<Instant> {
        let factor = config.upload_overdue?;
        let rate = self.meter.rate().filter(|rate| *rate > 0.0)?;
        let share = rate / (self.active.len() + 1).max(slots) as f64;
        let secs = factor * len as f64 / share;
        Some(now + std::time::Duration::from_secs_f64(secs.min(3600.0)))
    }

    /// Uploads this swarm would run now: those under way and those
    /// waiting, at most its own slots.
    pub(super) fn demand(&self, config: &crate::config::NodeConfig, chunk_size: u32) -> usize {
        (self.active.len() + self.queue.total_queued()).min(self.own_slots(config, chunk_size))
    }

    /// See [`UploadQueue::next_starving`].
    pub(super) fn next_starving(
        &self,
        after: std::time::Duration,
        now: Instant,
    ) -> Option<Instant> {
        self.queue.next_starving(after, now)
    }

    pub(super) fn add_peer(&mut self, link: LinkId, has: HaveBitfield) {
        self.queue.add_peer(link, has);
    }

    pub(super) fn peer_have(&mut self, link: LinkId, chunk: ChunkIndex) {
        self.queue.peer_have(link, chunk.0);
    }

    pub(super) fn on_request(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        have: &HaveBitfield,
        config: &crate::config::NodeConfig,
        chunk_size: u32,
        now: Instant,
    ) -> Result<(), RequestRefusal> {
        if have.get(chunk) && self.queue.total_queued() >= self.queue_limit(config, chunk_size) {
            return Err(RequestRefusal::Busy);
        }
        self.queue.on_request(link, chunk.0, have, now)
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
    }

    /// The chunks being uploaded to `link`.
    pub(super) fn active_chunks(&self, link: LinkId) -> impl Iterator<Item = u32> + '_ {
        self.active
            .range((link, 0)..=(link, u32::MAX))
            .map(|((_, chunk), _)| *chunk)
    }

    /// The peer withdrew a request: dropped from the queue, or its upload
    /// is stopped (its stream reset, never finished short).
    pub(super) fn cancel(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        actions: &mut VecDeque<Action>,
    ) {
        if !self.queue.on_cancel(link, chunk.0) && self.active.remove(&(link, chunk.0)).is_some() {
            actions.push_back(Action::CancelUpload { link, chunk });
        }
    }

    pub(super) fn remove_peer(&mut self, link: LinkId, actions: &mut VecDeque<Action>) {
        self.queue.remove_peer(link);
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
    }
}

impl NodeCore {
    /// Starts queued uploads while slots are free and the rate cap allows:
    /// the rarest requested chunk over all peers below their share first;
    /// a slot no such peer wants goes to a peer at its share; a chunk sent
    /// before only when no upload is under way.
    pub(super) fn start_uploads(&mut self, now: Instant) {
        self.uploads.wake = None;
        while self
            .uploads
            .slot_free(&self.config, self.params.chunk_size(), now)
        {
            let per_peer = self.config.upload_slots_per_peer;
            let chunk_size = u64::from(self.params.chunk_size());
            if let Some((_, bucket)) = &mut self.uploads.limit {
                // Whole chunks are paid for at their start; the driver paces
                // each one's bytes at the cap.
                if let Err(wait) = bucket.try_spend(0, now) {
                    if self.uploads.queue.total_queued() > 0 {
                        self.uploads.wake = Some(now + wait);
                    }
                    return;
                }
            }
            let below_share: std::collections::BTreeSet<LinkId> = self
                .peers()
                .filter(|(link, peer)| !peer.leaving && self.uploads.active_for(*link) < per_peer)
                .map(|(link, _)| link)
                .collect();
            // A second copy of a chunk only on an otherwise idle uplink,
            // or for a peer that waited long enough behind first copies.
            let resends = if self.uploads.active.is_empty() {
                Resends::Allowed
            } else {
                Resends::WhenStarving(self.config.resend_after)
            };
            let next = self
                .uploads
                .queue
                .next_request(|link| below_share.contains(&link), resends, now)
                .or_else(|| {
                    // No peer below its share asks for anything: a free
                    // slot goes to a peer at its share rather than idle.
                    // An upload holds its slot until acknowledged, so one
                    // peer on a long path needs more than its share to
                    // fill the uplink.
                    let leaving: std::collections::BTreeSet<LinkId> = self
                        .peers()
                        .filter(|(_, peer)| peer.leaving)
                        .map(|(link, _)| link)
                        .collect();
                    self.uploads
                        .queue
                        .next_request(|link| !leaving.contains(&link), resends, now)
                });
            let Some((link, chunk)) = next else {
                return;
            };
            let chunk = ChunkIndex(chunk);
            let len = self.params.chunk_len(chunk).map_or(chunk_size, u64::from);
            let pace = match &mut self.uploads.limit {
                Some((rate, bucket)) => {
                    let _ = bucket.try_spend(len, now);
                    Some(*rate)
                }
                None => None,
            };
            let slots = self.uploads.slots(&self.config, self.params.chunk_size());
            let overdue = self.uploads.overdue_at(&self.config, len, slots, now);
            self.uploads.active.insert((link, chunk.0), overdue);
            self.uploads.meter.set_busy(true, now);
            let mut measure = false;
            if let Some(peer) = self.peer_mut(link) {
                peer.last_useful = now;
                if peer.upload_watch.is_none() {
                    peer.upload_watch = Some(UploadWatch {
                        sent: None,
                        since: now,
                        asking: true,
                    });
                    measure = true;
                }
            }
            self.actions.push_back(Action::Upload { link, chunk, pace });
            if measure {
                self.actions.push_back(Action::MeasureSent { link });
            }
        }
    }

    /// An upload ended.
    pub fn handle_upload_done(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        outcome: UploadOutcome,
        now: Instant,
    ) {
        let was_active = self.uploads.active.remove(&(link, chunk.0)).is_some();
        if let (UploadOutcome::Sent { bytes }, true) = (outcome, was_active) {
            self.uploads.meter.finished(bytes, now);
            self.uploads.uploaded_bytes += bytes;
            if let Some(peer) = self.peer_mut(link) {
                peer.uploaded_chunks += 1;
                peer.uploaded_bytes += bytes;
                peer.last_useful = now;
            }
        }
        if self.uploads.active_for(link) == 0 {
            if let Some(peer) = self.peer_mut(link) {
                peer.upload_watch = None;
            }
        }
        self.release_goodbye(link, now);
        self.start_uploads(now);
        let busy = !self.uploads.active.is_empty();
        self.uploads.meter.set_busy(busy, now);
    }

    /// Takes a Goodbye held for `link`'s uploads once none it waits for
    /// is under way any more.
    pub(super) fn release_goodbye(&mut self, link: LinkId, now: Instant) {
        let uploads = &self.uploads;
        let Some(super::Link::Up(peer)) = self.links.get(&link) else {
            return;
        };
        let Some((reason, waiting)) = &peer.goodbye else {
            return;
        };
        if !waiting
            .iter()
            .any(|&chunk| uploads.active.contains_key(&(link, chunk)))
        {
            let reason = *reason;
            self.take_goodbye(link, reason, now);
        }
    }

    /// A peer's Goodbye: it sends nothing more, and its connection closes
    /// by itself.
    pub(super) fn take_goodbye(&mut self, link: LinkId, reason: GoodbyeReason, now: Instant) {
        self.actions.push_back(Action::Abort { link });
        self.remove_peer(link, Departure::Goodbye(reason), now);
    }

    /// How many bytes the connection of `link` has sent in all, as asked
    /// ([`Action::MeasureSent`]). A peer whose uploads took less than
    /// `upload_stall_bytes` since the last measurement,
    /// `upload_stall_timeout` ago, holds upload slots and reads nothing: it
    /// is closed.
    pub fn handle_sent(&mut self, link: LinkId, sent: u64, now: Instant) {
        let least = self.config.upload_stall_bytes;
        let Some(peer) = self.peer_mut(link) else {
            return;
        };
        let Some(watch) = &mut peer.upload_watch else {
            return;
        };
        watch.asking = false;
        let stalled = watch
            .sent
            .is_some_and(|before| sent.saturating_sub(before) < least);
        if stalled {
            self.close_peer(
                link,
                GoodbyeReason::Idle,
                Departure::Ended(LinkEnd::UploadStalled),
                now,
            );
            // Its peer slot is free: a dial waiting for room may go.
            self.dial_due(now);
            return;
        }
        watch.sent = Some(sent);
        watch.since = now;
        // The watch's deadline starts now: it may be the links' earliest.
        self.links.changed();
    }

    /// Asks for the bytes sent on links whose upload watch is due.
    pub(super) fn watch_uploads(&mut self, now: Instant) {
        let timeout = self.config.upload_stall_timeout;
        let due: Vec<LinkId> = self
            .peers()
            .filter(|(_, peer)| {
                peer.upload_watch
                    .as_ref()
                    .and_then(|watch| watch.deadline(timeout))
                    .is_some_and(|at| at <= now)
            })
            .map(|(link, _)| link)
            .collect();
        for link in due {
            if let Some(watch) = self
                .peer_mut(link)
                .and_then(|peer| peer.upload_watch.as_mut())
            {
                watch.asking = true;
            }
            self.actions.push_back(Action::MeasureSent { link });
        }
    }

    pub(super) fn has_exchange_work(&self) -> bool {
        self.exchange_due && self.serving_peers().next().is_some() && self.connected_count() > 1
    }

    /// Connected peers that serve and whose listening address we have seen
    /// in use: their address (the IP they were seen at, the port their
    /// Hello names).
    pub(super) fn serving_peers(&self) -> impl Iterator<Item = PeerEntry> + '_ {
        self.peers().filter_map(|(_, peer)| {
            let addr = peer.listen?;
            (peer.serving && !peer.leaving).then_some(PeerEntry {
                id: peer.id,
                addr,
                flags: minimodel_wire::PeerFlags::default(),
            })
        })
    }

    /// Peer exchange, sent: each connected peer hears of the serving peers
    /// it has not heard of from us, once each, at most 32 per message, and
    /// only addresses it can reach (loopback to loopback peers, a private
    /// address to peers on the same private network). A peer seen at the
    /// same IP address as the receiver (behind the same NAT, which seldom
    /// loops back its own public address) is named by its LAN addresses
    /// first, flagged LAN, when its Hello lists any
    /// (`docs/wire-protocol.md` 7.1 and 7.10).
    pub(super) fn exchange_peers(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_exchange) < self.config.peer_exchange_every {
            return;
        }
        self.last_exchange = now;
        // Only a link that came up brings new entries (a peer's Hello does
        // not change), or a round that had more than one message's worth.
        if !std::mem::take(&mut self.exchange_due) {
            return;
        }
        // Each serving peer: its public entry, where it is seen, its LAN
        // addresses. One that listens on LAN addresses but is seen at
        // another IP address is behind a NAT router, which lets nothing in
        // unasked: it is named where its connection comes from (its
        // router's mapping), flagged VIA_RENDEZVOUS, so that the receiver
        // asks us for an introduction at once instead of after a dial
        // that cannot get through; unless its Hello says it listens at the
        // address it is seen at (its router maps a port for it).
        let serving: Vec<(PeerEntry, IpAddr, Vec<SocketAddr>)> = self
            .peers()
            .filter_map(|(_, peer)| {
                let listen = peer.listen?;
                (peer.serving && !peer.leaving).then(|| {
                    let at = canonical(peer.remote.ip());
                    let behind_nat = !peer.lan.is_empty()
                        && !peer.listens_where_seen
                        && !peer.lan.iter().any(|lan| canonical(lan.ip()) == at);
                    let entry = if behind_nat {
                        PeerEntry {
                            id: peer.id,
                            addr: SocketAddr::new(at, peer.remote.port()),
                            flags: PeerFlags::VIA_RENDEZVOUS,
                        }
                    } else {
                        PeerEntry {
                            id: peer.id,
                            addr: listen,
                            flags: PeerFlags::default(),
                        }
                    };
                    (entry, at, peer.lan.clone())
                })
            })
            .collect();
        if serving.is_empty() {
            return;
        }
        let links: Vec<LinkId> = self.peers().map(|(link, _)| link).collect();
        let mut more = false;
        for link in links {
            let Some(peer) = self.peer_mut(link) else {
                continue;
            };
            let seen_at = canonical(peer.remote.ip());
            let mut entries: Vec<PeerEntry> = Vec::new();
            for (public, at, lan) in &serving {
                if public.id == peer.id || peer.told.contains(&public.id) {
                    continue;
                }
                if *at == seen_at {
                    entries.extend(lan.iter().map(|&addr| PeerEntry {
                        id: public.id,
                        addr,
                        flags: PeerFlags::LAN,
                    }));
                }
                // The public entry too (after the LAN ones): a receiver
                // that cannot use LAN addresses (it does not know its own
                // network) still hears of the peer.
                if reachable_from(public.addr, seen_at) {
                    entries.push(*public);
                }
            }
            if entries.len() > minimodel_wire::MAX_PEERS_PER_MESSAGE {
                entries.truncate(minimodel_wire::MAX_PEERS_PER_MESSAGE);
                more = true;
            }
            if entries.is_empty() {
                continue;
            }
            peer.told.extend(entries.iter().map(|entry| entry.id));
            self.send(link, Message::Peers { entries }, now);
        }
        self.exchange_due |= more;
    }
}
