//! The serving side of a node: upload slots, the rate limit, and peer
//! exchange.
//!
//! Uploads run as tasks: read the chunk on a blocking worker (one read
//! from the page cache into a buffer that becomes `Bytes`, no further
//! copy), take its proof, open a piece stream, write it paced by the token
//! bucket. At most `upload_slots` run at once, at most
//! `upload_slots_per_peer` for one peer; the [`UploadQueue`] decides which
//! request goes next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use minimodel_verifier::chunk::ChunkIndex as VerifierIndex;
use minimodel_wire::{
    ChunkIndex, MAX_PEERS_PER_MESSAGE, Message, PeerAddr, PeerEntry, PieceHeader,
};
use tokio::task::AbortHandle;

use super::{Internal, Node};
use crate::link::PieceStreamError;
use crate::link::pieces::send_piece;
use crate::store::read_chunk;
use minimodel_node::picker::LinkId;
use minimodel_node::upload::{TokenBucket, UploadQueue};

/// How often peers are told about serving peers they have not heard of
/// (each peer hears of each other peer once).
const PEER_EXCHANGE_EVERY: Duration = Duration::from_millis(250);

pub(crate) struct Uploads {
    pub(crate) queue: UploadQueue,
    limit: Option<Arc<tokio::sync::Mutex<TokenBucket>>>,
    active: BTreeMap<(LinkId, u32), AbortHandle>,
    last_served: Option<LinkId>,
    pub(crate) uploaded_bytes: u64,
    pub(crate) last_report: Instant,
    last_exchange: Instant,
}

impl Uploads {
    pub(crate) fn new(
        queue: UploadQueue,
        limit: Option<Arc<tokio::sync::Mutex<TokenBucket>>>,
    ) -> Self {
        Self {
            queue,
            limit,
            active: BTreeMap::new(),
            last_served: None,
            uploaded_bytes: 0,
            last_report: Instant::now(),
            last_exchange: Instant::now(),
        }
    }

    fn active_for(&self, key: LinkId) -> usize {
        self.active.range((key, 0)..=(key, u32::MAX)).count()
    }

    pub(crate) fn cancel(&mut self, key: LinkId, chunk: u32) {
        if !self.queue.on_cancel(key, chunk) {
            if let Some(handle) = self.active.remove(&(key, chunk)) {
                handle.abort();
            }
        }
    }

    pub(crate) fn finished(&mut self, key: LinkId, chunk: u32) {
        self.active.remove(&(key, chunk));
    }

    pub(crate) fn remove_peer(&mut self, key: LinkId) {
        self.queue.remove_peer(key);
        let chunks: Vec<(LinkId, u32)> = self
            .active
            .range((key, 0)..=(key, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for entry in chunks {
            if let Some(handle) = self.active.remove(&entry) {
                handle.abort();
            }
        }
    }
}

impl Node {
    /// Starts queued uploads while slots are free: peers take turns.
    pub(crate) fn start_uploads(&mut self) {
        loop {
            if self.uploads.active.len() >= self.config.upload_slots {
                return;
            }
            let per_peer = self.config.upload_slots_per_peer;
            let after = self.uploads.last_served;
            let eligible: Vec<LinkId> = self
                .peers
                .keys()
                .copied()
                .filter(|key| {
                    self.uploads.queue.queued(*key) > 0 && self.uploads.active_for(*key) < per_peer
                })
                .collect();
            let Some(key) = eligible
                .iter()
                .copied()
                .find(|key| after.is_none_or(|last| *key > last))
                .or_else(|| eligible.first().copied())
            else {
                return;
            };
            let Some((_, chunk)) = self.uploads.queue.next_request_of(key) else {
                return;
            };
            self.uploads.last_served = Some(key);
            self.start_upload(key, chunk);
        }
    }

    fn start_upload(&mut self, key: LinkId, chunk: u32) {
        let (Some(peer), Some(proof), Some(chunk_len)) = (
            self.peers.get(&key),
            self.proofs.proof(chunk),
            self.geometry.chunk_len(VerifierIndex(chunk)),
        ) else {
            return;
        };
        let header = PieceHeader {
            chunk: ChunkIndex(chunk),
            chunk_len,
            proof: proof.into_iter().map(|digest| digest.0).collect(),
        };
        let connection = peer.link.connection.clone();
        let storage = Arc::clone(&self.storage);
        let geometry = self.geometry;
        let params = self.params;
        let limit = self.uploads.limit.clone();
        let stall = self.config.upload_stall_timeout;
        let internal = self.internal_sender.clone();
        let task = tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                read_chunk(storage.as_ref(), &geometry, VerifierIndex(chunk))
            })
            .await;
            let ok = match read {
                Ok(Ok(bytes)) => {
                    let bytes = Bytes::from(bytes);
                    let len = bytes.len() as u64;
                    let sent = send_piece(
                        &connection,
                        &header,
                        &params,
                        bytes,
                        limit.as_deref(),
                        stall,
                    )
                    .await;
                    let _ = internal.send(Internal::UploadDone {
                        key,
                        chunk,
                        bytes: len,
                        ok: sent.is_ok(),
                        stalled: match sent {
                            Err(error @ PieceStreamError::Stalled(_)) => Some(error.to_string()),
                            _ => None,
                        },
                    });
                    return;
                }
                _ => false,
            };
            let _ = internal.send(Internal::UploadDone {
                key,
                chunk,
                bytes: 0,
                ok,
                stalled: None,
            });
        });
        self.uploads
            .active
            .insert((key, chunk), task.abort_handle());
    }

    /// Peer exchange, received: dial serving peers we do not know yet while
    /// there is room (only when downloading), as many as the sender's
    /// budget allows (`peer_exchange_min_interval`).
    pub(crate) fn on_peer_exchange(&mut self, from: LinkId, entries: Vec<PeerEntry>) {
        if self.download.as_ref().is_none_or(|d| d.core.is_complete()) {
            return;
        }
        let now = Instant::now();
        for entry in entries.into_iter().take(MAX_PEERS_PER_MESSAGE) {
            if self.peers.len() + self.dialing.len() >= self.config.max_peers {
                break;
            }
            if self.is_known(&entry.id) {
                continue;
            }
            let Some(peer) = self.peers.get_mut(&from) else {
                return;
            };
            if !peer.peer_exchange_budget.try_take(1, now) {
                break;
            }
            self.dial(PeerAddr {
                id: entry.id,
                addr: entry.addr,
            });
        }
    }

    /// Peer exchange, sent: at most four times a second, each peer hears of the
    /// connected peers that announced they serve (and where) and that it has
    /// not heard of from us yet, at most [`MAX_PEERS_PER_MESSAGE`] at a time.
    pub(crate) fn exchange_peers(&mut self, now: Instant) {
        if now.saturating_duration_since(self.uploads.last_exchange) < PEER_EXCHANGE_EVERY {
            return;
        }
        self.uploads.last_exchange = now;
        let serving: Vec<PeerEntry> = self
            .peers
            .values()
            .filter(|peer| peer.serving)
            .filter_map(|peer| peer.listen.map(|addr| PeerEntry { id: peer.id, addr }))
            .collect();
        if serving.is_empty() {
            return;
        }
        for peer in self.peers.values_mut() {
            let entries: Vec<PeerEntry> = serving
                .iter()
                .filter(|entry| entry.id != peer.id && !peer.told.contains(&entry.id))
                .take(MAX_PEERS_PER_MESSAGE)
                .cloned()
                .collect();
            if entries.is_empty() {
                continue;
            }
            peer.told.extend(entries.iter().map(|entry| entry.id));
            peer.link.send(Message::Peers { entries });
        }
    }
}
