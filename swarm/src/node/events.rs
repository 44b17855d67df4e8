//! How the node reacts to what its links and jobs report, and what it
//! reports to the program that runs it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_wire::{ControlEvent, GoodbyeReason, Message, PeerId, RejectReason};
use serde::Serialize;

use super::{Internal, Node};
use crate::link::{LinkEvent, PieceStreamError};
use minimodel_node::picker::LinkId;
use minimodel_node::upload::RequestRefusal;

/// What a node tells the program that runs it (log lines, progress).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum NodeReport {
    /// A peer finished its handshake.
    PeerConnected {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Whether we dialed it.
        dialed: bool,
        /// Whether it serves.
        serving: bool,
        /// Its agent string.
        agent: String,
    },
    /// A peer left or was dropped.
    PeerDisconnected {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: String,
        /// Chunks we served it.
        uploaded_chunks: u64,
        /// Bytes we served it.
        uploaded_bytes: u64,
    },
    /// A connection attempt or handshake failed or was refused.
    Refused {
        /// The other side.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A peer sent a chunk that failed its proof and is banned.
    Banned {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// The chunk.
        chunk: u32,
        /// What failed.
        error: String,
    },
    /// Download progress (every half second while downloading).
    Progress {
        /// Verified bytes.
        verified_bytes: u64,
        /// Artifact size.
        total_bytes: u64,
        /// Verified chunks.
        verified_chunks: u32,
        /// Chunks in all.
        total_chunks: u32,
        /// Peers we download from.
        peers: usize,
        /// Verified bytes per second over the last few seconds.
        rate: f64,
    },
    /// The download passed every check and is delivered with its receipt
    /// (a node with `seed_after` goes on serving).
    Delivered {
        /// The artifact.
        path: std::path::PathBuf,
        /// Its receipt.
        receipt: std::path::PathBuf,
        /// Whether the node goes on serving it until stopped.
        seeding: bool,
    },
    /// Upload progress of a serving node (every second while serving).
    Serving {
        /// Connected peers.
        peers: usize,
        /// Bytes uploaded in all.
        uploaded_bytes: u64,
    },
}

fn display<S: serde::Serializer>(id: &PeerId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

impl Node {
    pub(crate) fn on_link_event(&mut self, key: LinkId, event: LinkEvent) {
        if !self.peers.contains_key(&key) {
            return;
        }
        let now = Instant::now();
        match event {
            LinkEvent::Control(control) => self.on_control(key, control, now),
            LinkEvent::PieceStarted(_) => {
                if let Some(download) = &mut self.download {
                    download.core.on_progress(key, now);
                }
            }
            LinkEvent::PieceArrived(piece) => self.on_piece(key, piece),
            LinkEvent::PieceFailed { chunk, error } => {
                if error.is_peer_misbehaviour() {
                    self.drop_misbehaving(key, error.to_string());
                } else if let (Some(chunk), Some(download)) = (chunk, &mut self.download) {
                    if !matches!(error, PieceStreamError::NoLongerWanted(_)) {
                        download.core.on_chunk_lost(key, chunk.0, now);
                        if let Some(peer) = self.peers.get(&key) {
                            peer.link.forget_chunk(chunk.0);
                        }
                    }
                }
            }
            LinkEvent::Closed(error) if error.is_peer_misbehaviour() => {
                self.drop_misbehaving(key, error.to_string())
            }
            LinkEvent::Closed(error) => self.remove_peer(key, error.to_string()),
        }
        self.drain_download_actions();
    }

    fn on_control(&mut self, key: LinkId, event: ControlEvent, now: Instant) {
        match event {
            ControlEvent::Have(chunk) => {
                self.uploads.queue.peer_have(key, chunk.0);
                if let Some(download) = &mut self.download {
                    download.core.on_have(key, chunk.0, now);
                }
            }
            ControlEvent::Request(chunk) => {
                let refusal = if self.serving {
                    self.uploads.queue.on_request(key, chunk.0).err()
                } else {
                    Some(RequestRefusal::NotHave)
                };
                match refusal {
                    None => self.start_uploads(),
                    Some(RequestRefusal::Duplicate) => {}
                    Some(refusal) => {
                        let reason = match refusal {
                            RequestRefusal::Busy => RejectReason::Busy,
                            _ => RejectReason::NotHave,
                        };
                        self.send_or_drop(key, Message::Reject { chunk, reason });
                    }
                }
            }
            ControlEvent::Cancel(chunk) => self.uploads.cancel(key, chunk.0),
            ControlEvent::Rejected { chunk, reason } => {
                if let Some(peer) = self.peers.get(&key) {
                    peer.link.forget_chunk(chunk.0);
                }
                if let Some(download) = &mut self.download {
                    let busy = matches!(reason, RejectReason::Busy | RejectReason::RateLimited);
                    download.core.on_reject(key, chunk.0, busy, now);
                }
            }
            ControlEvent::Peers(entries) => self.on_peer_exchange(key, entries),
            ControlEvent::Goodbye(reason) => {
                self.remove_peer(key, format!("said goodbye ({reason:?})"))
            }
            ControlEvent::KeepAlive
            | ControlEvent::PeerHello(_)
            | ControlEvent::HelloRejected { .. }
            | ControlEvent::Bitfield(_) => {}
        }
    }

    /// Queues `message` for the peer; a peer whose queue is full (it does
    /// not read its control stream) is dropped.
    pub(crate) fn send_or_drop(&mut self, key: LinkId, message: Message) {
        let sent = self
            .peers
            .get(&key)
            .is_none_or(|peer| peer.link.send(message));
        if !sent {
            self.remove_peer(key, "not reading its control stream".into());
        }
    }

    /// A peer broke the protocol: it is dropped (not banned: it sent no
    /// bad chunk data).
    pub(crate) fn drop_misbehaving(&mut self, key: LinkId, reason: String) {
        if let Some(peer) = self.peers.get(&key) {
            peer.link.close(GoodbyeReason::ProtocolViolation);
        }
        self.remove_peer(key, format!("protocol violation: {reason}"));
    }

    pub(crate) fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::LinkUp(up) => self.on_link_up(*up),
            Internal::DialFailed { peer, error } => {
                self.dialing.remove(&peer.id);
                self.report(NodeReport::Refused {
                    addr: peer.addr,
                    reason: error,
                });
                if let Some(download) = &mut self.download {
                    download.failed_dials += 1;
                }
            }
            Internal::Stored(stored) => self.on_stored(*stored),
            Internal::BadChunk { key, chunk, error } => self.on_bad_chunk(key, chunk, error),
            Internal::StoreFailed { key, chunk, error } => self.on_store_failed(key, chunk, error),
            Internal::TrailingProgress => {
                if let Some(download) = &mut self.download {
                    download.pace();
                }
            }
            Internal::Checkpointed(result) => {
                if let Some(download) = &mut self.download {
                    download.checkpoint_running = false;
                    // Progress that cannot be saved would be lost at the
                    // next crash: stop, like a failed write (a full disk).
                    if let Err(error) = result {
                        download.fatal.get_or_insert(error);
                    }
                }
            }
            Internal::UploadDone {
                key,
                chunk,
                bytes,
                ok,
                stalled,
            } => {
                self.uploads.finished(key, chunk);
                if let Some(reason) = stalled {
                    // It holds upload slots and reads nothing: let it go.
                    if let Some(peer) = self.peers.get(&key) {
                        peer.link.close(GoodbyeReason::Idle);
                    }
                    self.remove_peer(key, reason);
                }
                if let (true, Some(peer)) = (ok, self.peers.get_mut(&key)) {
                    peer.uploaded_chunks += 1;
                    peer.uploaded_bytes += bytes;
                    self.uploads.uploaded_bytes += bytes;
                }
                self.start_uploads();
            }
        }
        self.drain_download_actions();
    }

    pub(crate) fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(download) = &mut self.download {
            for (key, peer) in &self.peers {
                if peer.downloading_from {
                    download.core.set_rtt(*key, peer.link.connection.rtt());
                }
            }
            download.core.tick(now);
        }
        self.drain_download_actions();
        self.maybe_checkpoint(now);
        self.report_progress(now);
        self.exchange_peers(now);
    }

    fn report_progress(&mut self, now: Instant) {
        let report_every = Duration::from_millis(500);
        if let Some(download) = &mut self.download {
            if now.saturating_duration_since(download.last_report) >= report_every {
                download.last_report = now;
                let report = download.progress(&self.geometry, now);
                self.report(report);
            }
        } else if now.saturating_duration_since(self.uploads.last_report) >= Duration::from_secs(1)
        {
            self.uploads.last_report = now;
            self.report(NodeReport::Serving {
                peers: self.peers.len(),
                uploaded_bytes: self.uploads.uploaded_bytes,
            });
        }
    }
}
