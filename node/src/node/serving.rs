//! The serving side: which request is uploaded next, the upload rate cap,
//! and telling peers of each other (peer exchange). The upload state it
//! works on (the meter, the slots, the queue) is `upload_slots`.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use minimodel_wire::{ChunkIndex, GoodbyeReason, HaveBitfield, Message, PeerEntry, PeerFlags};

use super::{Action, NodeCore};
use crate::address::{canonical, reachable_from};
use crate::ids::LinkId;
use crate::report::{Departure, LinkEnd};
use crate::upload::Resends;

/// How long a sparing seed answers one peer Busy, while the peer gets
/// fewer than [`SPARING_RELIEF`] chunks from others, before it serves
/// that peer whatever others hold (`NodeCore::stranded`).
pub(super) const SPARING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a queued request a sparing seed holds back may wait before it
/// is answered Busy (`NodeCore::turn_away_held_back`): a second copy
/// queued just before a server announced its chunk is often next.
pub(super) const HELD_BACK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Chunks from other peers that show a peer turned away by a sparing seed
/// is not stranded there: its patience starts again.
pub(super) const SPARING_RELIEF: u32 = 4;

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

/// Whether a peer with uploads under way takes their bytes, from what its
/// connection sent (measured by the driver on request,
/// [`Action::MeasureSent`], every `upload_progress_every`):
/// - it makes progress while it sent `upload_progress_bytes` since the
///   last measurement; without, its uploads give their slots back
///   ([`super::upload_slots::Uploads::set_stuck`]);
/// - it stalls when it sent less than `upload_stall_bytes` in
///   `upload_stall_timeout`, and is closed. A slow link that keeps draining
///   is not a stall; a peer whose flow control stays shut is.
#[derive(Debug, Clone)]
pub(super) struct UploadWatch {
    /// The connection's bytes sent at the last measurement; `None` until
    /// the first arrives.
    sent: Option<u64>,
    /// When the last measurement arrived (or the watch began).
    since: Instant,
    /// The stall rule's baseline: bytes sent and when, judged once
    /// `upload_stall_timeout` has passed.
    stall_base: Option<(u64, Instant)>,
    /// A measurement was asked for and has not come back.
    asking: bool,
}

/// What a measurement of a watched connection shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measured {
    /// The first, a baseline.
    Baseline,
    Progress,
    NoProgress,
    Stalled,
}

impl UploadWatch {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            sent: None,
            since: now,
            stall_base: None,
            asking: true,
        }
    }

    /// When the next measurement is due, if one is.
    pub(super) fn deadline(&self, config: &crate::config::NodeConfig) -> Option<Instant> {
        let every = config
            .upload_progress_every
            .min(config.upload_stall_timeout);
        (!self.asking && self.sent.is_some()).then(|| self.since + every)
    }

    /// Takes the connection's bytes sent, `sent`, at `now`.
    fn measured(
        &mut self,
        sent: u64,
        config: &crate::config::NodeConfig,
        now: Instant,
    ) -> Measured {
        self.asking = false;
        let before = self.sent.replace(sent);
        self.since = now;
        let (base, at) = *self.stall_base.get_or_insert((sent, now));
        if now.saturating_duration_since(at) >= config.upload_stall_timeout {
            if sent.saturating_sub(base) < config.upload_stall_bytes {
                return Measured::Stalled;
            }
            self.stall_base = Some((sent, now));
        }
        match before {
            None => Measured::Baseline,
            Some(before) if sent.saturating_sub(before) < config.upload_progress_bytes => {
                Measured::NoProgress
            }
            Some(_) => Measured::Progress,
        }
    }
}

/// The next request among the peers `eligible` allows, as a sparing seed
/// picks it when `sparing`.
fn pick(
    queue: &mut crate::upload::UploadQueue,
    sparing: bool,
    eligible: impl Fn(LinkId) -> bool,
    resends: Resends,
    now: Instant,
) -> Option<(LinkId, u32)> {
    match sparing {
        true => queue.next_unheld_request(eligible, resends, now),
        false => queue.next_request(eligible, resends, now),
    }
}

impl NodeCore {
    /// Starts queued uploads while slots are free and the rate cap allows:
    /// the rarest requested chunk over all peers below their share first;
    /// a slot no such peer wants goes to a peer at its share; a chunk sent
    /// before only once the uploads under way have left the uplink
    /// (`Uploads::wire_idle`), or to a peer starving behind first copies.
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
            // Nothing asked, nothing to start: most calls (every wake-up
            // of a node) end here, before the walks over its links below.
            // A sparing seed still looks at its uplink, whose state moves
            // with each look.
            if !self.uploads.has_queued() && self.sparing.is_none() {
                return;
            }
            // A link that makes no progress gets no new upload.
            let below_share: std::collections::BTreeSet<LinkId> = self
                .peers()
                .filter(|(link, peer)| {
                    !peer.leaving
                        && self.uploads.active_for(*link) < per_peer
                        && !self.uploads.is_stuck(*link)
                })
                .map(|(link, _)| link)
                .collect();
            // A second copy of a chunk only on an otherwise idle uplink
            // (uploads to links that make no progress do not use it; those
            // under way whose bytes have left it and wait for their
            // acknowledgement do not either: `Uploads::wire_idle`), or
            // for a peer that waited long enough behind first copies; a
            // sparing seed's only of a chunk no linked server holds, but
            // first to a peer stranded here (see `stranded`).
            let resends = if self.uploads.wire_idle(now) {
                Resends::Allowed
            } else {
                Resends::WhenStarving(self.config.resend_after)
            };
            let sparing = self.spares(now);
            let mut stranded = if sparing {
                self.stranded(now)
            } else {
                std::collections::BTreeSet::new()
            };
            // Not one that makes no progress either.
            stranded.retain(|&link| !self.uploads.is_stuck(link));
            let mut next = None;
            if !stranded.is_empty() {
                next =
                    self.uploads
                        .queue
                        .next_request(|link| stranded.contains(&link), resends, now);
            }
            if next.is_none() {
                next = pick(
                    &mut self.uploads.queue,
                    sparing,
                    |link| below_share.contains(&link),
                    resends,
                    now,
                );
            }
            if next.is_none() {
                // No peer below its share asks for anything: a free slot
                // goes to a peer at its share rather than idle. An upload
                // holds its slot until acknowledged, so one peer on a long
                // path needs more than its share to fill the uplink; its
                // uploads past its share wait behind the others on its own
                // connection, and take no slot from other links
                // (`Uploads::slot_free`). One link has at most
                // `Uploads::most_per_link` under way, so that one that
                // stops reading cannot take every upload under way.
                let most = self
                    .uploads
                    .most_per_link(&self.config, self.params.chunk_size());
                let passed_over: std::collections::BTreeSet<LinkId> = self
                    .peers()
                    .filter(|(link, peer)| {
                        peer.leaving
                            || self.uploads.is_stuck(*link)
                            || self.uploads.active_for(*link) >= most
                    })
                    .map(|(link, _)| link)
                    .collect();
                next = pick(
                    &mut self.uploads.queue,
                    sparing,
                    |link| !passed_over.contains(&link),
                    resends,
                    now,
                );
            }
            let Some((link, chunk)) = next else {
                return;
            };
            let chunk = ChunkIndex(chunk);
            // A RequestFrom's upload sends the chunk from its offset on.
            let from = self.uploads.take_offset(link, chunk);
            let len = self
                .params
                .chunk_len(chunk)
                .map_or(chunk_size, u64::from)
                .saturating_sub(u64::from(from));
            let pace = match &mut self.uploads.limit {
                Some((rate, bucket)) => {
                    let _ = bucket.try_spend(len, now);
                    Some(*rate)
                }
                None => None,
            };
            let overdue = self
                .uploads
                .overdue_at(&self.config, len, self.params.chunk_size(), now);
            self.uploads.active.insert((link, chunk.0), overdue);
            self.uploads.note_busy(now);
            self.uploads.note_wire(len, now);
            let mut measure = false;
            let count = self.params.chunk_count();
            // A seed from the start keeps what it sent each peer, for
            // when it spares (`stranded`).
            let track = self.sparing.is_some();
            if let Some(peer) = self.peer_mut(link) {
                peer.last_useful = now;
                if track {
                    let sent = peer.sent_to.get_or_insert_with(|| HaveBitfield::new(count));
                    let _ = sent.set(chunk, true);
                }
                if peer.upload_watch.is_none() {
                    peer.upload_watch = Some(UploadWatch::new(now));
                    measure = true;
                }
            }
            self.actions.push_back(Action::Upload {
                link,
                chunk,
                from,
                pace,
            });
            if measure {
                self.actions.push_back(Action::MeasureSent { link });
            }
        }
    }

    /// Whether this node, a seed from its start, spares its uplink now
    /// (`sparing`).
    pub(super) fn spares(&mut self, now: Instant) -> bool {
        let inputs = super::sparing::Inputs {
            own_rate: self.uploads.meter.rate(),
            links: self.connected_count(),
            chunk_size: self.params.chunk_size(),
        };
        match &mut self.sparing {
            Some(sparing) => sparing.is_on(&self.config, inputs, now),
            None => false,
        }
    }

    /// Whether `link`'s request for `chunk` is one a sparing seed answers
    /// Busy: it sent the chunk before, a peer linked to it that serves
    /// others holds it, and `link` is not stranded here (see `stranded`).
    /// The first such answer to a peer starts its patience (`spared`).
    pub(super) fn spared(&mut self, link: LinkId, chunk: ChunkIndex, now: Instant) -> bool {
        if self.uploads.queue.sent(chunk.0) == 0
            || self.uploads.queue.served_by(chunk.0) == 0
            || !self.spares(now)
        {
            return false;
        }
        let Some(peer) = self.peer_mut(link) else {
            return false;
        };
        let (since, _) = *peer.spared.get_or_insert((now, 0));
        now.saturating_duration_since(since) < SPARING_PATIENCE
    }

    /// Peers a sparing seed serves as before: those it turned away
    /// [`SPARING_PATIENCE`] ago that got fewer than [`SPARING_RELIEF`]
    /// chunks from other peers since. A peer that reaches no other holder,
    /// behind a router say, is not left to the seed's spare uplink.
    fn stranded(&self, now: Instant) -> std::collections::BTreeSet<LinkId> {
        self.peers()
            .filter(|(_, peer)| {
                !peer.leaving
                    && peer.spared.is_some_and(|(since, _)| {
                        now.saturating_duration_since(since) >= SPARING_PATIENCE
                    })
            })
            .map(|(link, _)| link)
            .collect()
    }

    /// A sparing seed answers Busy the queued requests it now holds back
    /// (queued before it spared, or before a linked server had the chunk)
    /// once they have waited [`HELD_BACK_GRACE`]: their peers ask a holder
    /// instead of waiting here unanswered. Runs at each timeout.
    pub(super) fn turn_away_held_back(&mut self, now: Instant) {
        if !self.spares(now) {
            return;
        }
        let Some(before) = now.checked_sub(HELD_BACK_GRACE) else {
            return;
        };
        let held_back = self.uploads.queue.held_back(before);
        if held_back.is_empty() {
            return;
        }
        let stranded = self.stranded(now);
        for (link, chunk) in held_back {
            if stranded.contains(&link) || !self.uploads.drop_request(link, chunk) {
                continue;
            }
            if let Some(peer) = self.peer_mut(link) {
                peer.spared.get_or_insert((now, 0));
            }
            let reason = minimodel_wire::RejectReason::Busy;
            let chunk = ChunkIndex(chunk);
            self.send(link, Message::Reject { chunk, reason }, now);
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
        // Measured before the link's flag may clear: time with only stuck
        // uploads under way is not counted as busy, so their bytes are not
        // counted either.
        let stuck = self.uploads.is_stuck(link);
        let was_active = self.uploads.active.remove(&(link, chunk.0)).is_some();
        if let (UploadOutcome::Sent { bytes }, true) = (outcome, was_active) {
            if !stuck {
                self.uploads.meter.finished(bytes, now);
            }
            self.uploads.uploaded_bytes += bytes;
            if let Some(peer) = self.peer_mut(link) {
                peer.uploaded_chunks += 1;
                peer.uploaded_bytes += bytes;
                peer.last_useful = now;
            }
        }
        self.uploads_to_link_changed(link, now);
        self.release_goodbye(link, now);
        // Asked for again while it ran: asked now (a link that went, or
        // said Goodbye, forgot it). The slot freed is filled whether that
        // asking is queued or refused.
        if let Some(from) = self.uploads.take_asked_again(link, chunk) {
            self.peer_requested(link, chunk, from, now);
        }
        self.start_uploads(now);
    }

    /// An upload to `link` ended or was stopped: with none left, its watch
    /// ends and it no longer counts as making no progress.
    pub(super) fn uploads_to_link_changed(&mut self, link: LinkId, now: Instant) {
        if self.uploads.active_for(link) == 0 {
            if let Some(peer) = self.peer_mut(link) {
                peer.upload_watch = None;
            }
            self.uploads.set_stuck(link, false, now);
        }
        self.uploads.note_busy(now);
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
    /// ([`Action::MeasureSent`]). A peer whose connection sent less than
    /// `upload_progress_bytes` since the last measurement makes no
    /// progress: its uploads give their slots back until it does. One
    /// whose uploads took less than `upload_stall_bytes` in
    /// `upload_stall_timeout` holds upload slots and reads nothing: it is
    /// closed.
    pub fn handle_sent(&mut self, link: LinkId, sent: u64, now: Instant) {
        let config = &self.config;
        let Some(watch) = self
            .links
            .peer_mut(link)
            .and_then(|peer| peer.upload_watch.as_mut())
        else {
            return;
        };
        match watch.measured(sent, config, now) {
            Measured::Stalled => {
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
            Measured::Baseline => {}
            Measured::Progress => {
                self.uploads.set_stuck(link, false, now);
            }
            Measured::NoProgress => {
                if self.uploads.set_stuck(link, true, now) {
                    // Its slots are free now.
                    self.start_uploads(now);
                }
            }
        }
        // The watch's deadline starts now: it may be the links' earliest.
        self.links.changed();
    }

    /// Asks for the bytes sent on links whose upload watch is due.
    pub(super) fn watch_uploads(&mut self, now: Instant) {
        let config = &self.config;
        let due: Vec<LinkId> = self
            .peers()
            .filter(|(_, peer)| {
                peer.upload_watch
                    .as_ref()
                    .and_then(|watch| watch.deadline(config))
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
    /// (`docs/wire-protocol.md` 7.1 and 7.8).
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
            let Some(remote) = self.peer(link).map(|peer| peer.remote) else {
                continue;
            };
            let seen_at = self.seen_ip(remote);
            let Some(peer) = self.peer_mut(link) else {
                continue;
            };
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
