//! The control stream of a connected peer: every message goes through the
//! wire crate's state machine first; a message it forbids ends the link
//! with the peer to blame.

use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, ControlEvent, Message, RejectReason};

use super::NodeCore;
use crate::ids::LinkId;
use crate::report::{Departure, Violation};
use crate::upload::RequestRefusal;

impl NodeCore {
    /// A control message arrived from a connected peer.
    pub fn handle_message(&mut self, link: LinkId, message: Message, now: Instant) {
        let Some(peer) = self.peer_mut(link) else {
            return;
        };
        let event = match peer.control.on_receive(&message) {
            Ok(event) => event,
            Err(violation) => {
                let goodbye = violation.goodbye_reason();
                self.close_peer(
                    link,
                    goodbye,
                    Departure::Violation(Violation::Wire(violation.into())),
                    now,
                );
                return;
            }
        };
        match event {
            ControlEvent::Have(chunk) => {
                let mut new = false;
                if let Some(peer) = self.peer_mut(link) {
                    new = matches!(peer.has.set(chunk, true), Ok(false));
                    // Chunks from other peers: it is not stranded here.
                    let ours = peer.sent_to.as_ref().is_some_and(|sent| sent.get(chunk));
                    if let Some((_, from_others)) = &mut peer.spared
                        && new
                        && !ours
                    {
                        *from_others += 1;
                        if *from_others >= super::serving::SPARING_RELIEF {
                            peer.spared = None;
                        }
                    }
                }
                // Only a chunk new to the peer counts toward the rate: a
                // repeated Have announces nothing.
                if let (true, Some(sparing)) = (new, &mut self.sparing) {
                    sparing.have(now);
                }
                self.uploads.peer_have(link, chunk);
                self.download_have(link, chunk, now);
                self.close_seed_link(link, now);
            }
            ControlEvent::Request(chunk) => self.peer_requested(link, chunk, 0, now),
            ControlEvent::RequestFrom { chunk, from } => {
                self.peer_requested(link, chunk, from, now);
            }
            ControlEvent::Cancel(chunk) => {
                self.uploads.cancel(link, chunk, &mut self.actions);
                // A stopped upload never reports its end: the link's watch
                // ends here when it was its last.
                self.uploads_to_link_changed(link, now);
                // A stopped upload frees its slot (and may let a second
                // copy of a chunk go out on an idle uplink).
                self.start_uploads(now);
            }
            ControlEvent::Rejected { chunk, reason } => {
                let busy = matches!(reason, RejectReason::Busy | RejectReason::RateLimited);
                self.download_rejected(link, chunk, busy, now);
            }
            ControlEvent::Peers(entries) => self.learn_from_exchange(link, entries, now),
            ControlEvent::Goodbye(reason) => {
                let waiting: std::collections::BTreeSet<u32> =
                    self.uploads.active_chunks(link).collect();
                match self.peer_mut(link) {
                    Some(peer) if !waiting.is_empty() => {
                        peer.goodbye = Some((reason, waiting));
                        // Nothing more starts for a peer that left.
                        self.uploads.drop_queued(link);
                    }
                    _ => self.take_goodbye(link, reason, now),
                }
            }
            ControlEvent::Rendezvous(target) => self.handle_rendezvous(link, target, now),
            ControlEvent::Connect { peer, addrs } => self.handle_connect(link, peer, addrs, now),
            // The introduction will not come: the entry waits for its
            // back-off as after any failed dial.
            ControlEvent::RendezvousFailed { peer, reason } => {
                self.handle_rendezvous_failed(link, peer, reason);
            }
            // ManifestRequest and Manifest open and answer a manifest
            // query, ChunkListRequest and ChunkHashes a chunk list query:
            // the control stream refuses them on a swarm session.
            ControlEvent::KeepAlive
            | ControlEvent::PeerHello(_)
            | ControlEvent::HelloRejected { .. }
            | ControlEvent::Bitfield(_)
            | ControlEvent::ManifestRequested(_)
            | ControlEvent::Manifest(_)
            | ControlEvent::ChunkListRequested(_)
            | ControlEvent::ChunkHashes { .. } => {}
        }
    }

    /// The round trip the transport measured to a peer.
    pub fn handle_rtt(&mut self, link: LinkId, rtt: Duration) {
        if let Some(download) = &mut self.download {
            download.set_rtt(link, rtt);
        }
    }

    /// A Request (`from` 0) or RequestFrom (v3: the chunk from `from` on)
    /// from `link`: queued for an upload slot, or refused.
    pub(super) fn peer_requested(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        from: u32,
        now: Instant,
    ) {
        if let Some(peer) = self.peer_mut(link) {
            peer.last_useful = now;
        }
        if self.uploads.asked_again(link, chunk, from) {
            return;
        }
        let queued = if self.serve && self.spared(link, chunk, now) {
            Err(RequestRefusal::Busy)
        } else if self.serve {
            let chunk_size = self.params.chunk_size();
            self.uploads
                .on_request(link, chunk, &self.have, &self.config, chunk_size, now)
        } else {
            Err(RequestRefusal::NotHave)
        };
        match queued {
            Ok(replaced) => {
                self.uploads.note_offset(link, chunk, from, replaced);
                // A request for a commoner chunk gave its place up
                // to this one: its peer asks elsewhere.
                if let Some((peer, chunk)) = replaced {
                    let reason = RejectReason::Busy;
                    self.send(peer, Message::Reject { chunk, reason }, now);
                }
                self.start_uploads(now);
            }
            Err(RequestRefusal::Duplicate) => {}
            Err(refusal) => {
                let reason = match refusal {
                    RequestRefusal::Busy => RejectReason::Busy,
                    _ => RejectReason::NotHave,
                };
                self.send(link, Message::Reject { chunk, reason }, now);
            }
        }
    }
}
