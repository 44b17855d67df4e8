//! The node's blocking work and its uploads, as jobs the core asks for:
//! verify and store a chunk, read and send a chunk, checkpoint, hash the
//! file as it is on disk (`crate::trailing`), and the final checks
//! (`crate::resume`'s `final_checks`). Each reports back as an event; none
//! decides anything.

use std::sync::Arc;
use std::time::Instant;

use minimodel_node::LinkId;
use minimodel_node::node::{Finish, TransferStats, UploadOutcome, VerifyOutcome};
use minimodel_node::report::Fault;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{
    ChunkData, ChunkGeometry, ChunkIndex as VerifierIndex, ChunkVerifier,
};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_wire::{ChunkIndex, PieceHeader};
use tokio::sync::{Semaphore, mpsc};

use super::{DriverLink, Event, Node};
use crate::link::ArrivedPiece;
use crate::link::pieces::send_piece;
use crate::resume::{Delivered, PartialDownload};
use crate::store::{Storage, read_chunk_from};
use crate::trailing::TrailingThread;

/// A job's result.
pub(crate) enum JobDone {
    Verified {
        link: LinkId,
        chunk: ChunkIndex,
        /// The first byte the piece stream carried (a PieceFrom's).
        from: u32,
        outcome: VerifyOutcome,
    },
    /// A chunk's check ended with no verdict (its worker panicked): the
    /// chunk is lost, and asked again.
    CheckLost {
        link: LinkId,
        chunk: ChunkIndex,
    },
    /// An upload's task ended; `task` tells it from a later upload of
    /// the same chunk to the same link.
    Uploaded {
        link: LinkId,
        chunk: ChunkIndex,
        task: tokio::task::Id,
        outcome: UploadOutcome,
    },
    MirrorVerified {
        mirror: minimodel_node::mirror::MirrorId,
        chunk: ChunkIndex,
        outcome: minimodel_node::mirror::MirrorChunkOutcome,
    },
    Trailing(u32),
    Checkpointed(Result<(), Fault>),
    Delivered(Finish, Option<Box<Delivered>>),
}

/// Where proofs come from: the whole tree (a seeder, or a download once
/// delivered) or what a downloading peer learned from the proofs it
/// checked.
#[derive(Debug, Clone)]
pub(crate) enum ProofSource {
    Full(Arc<MerkleTree>),
    Download(Arc<PartialDownload>),
}

impl ProofSource {
    fn proof(&self, chunk: u32) -> Option<Vec<Sha256Digest>> {
        match self {
            ProofSource::Full(tree) => tree.proof(chunk),
            ProofSource::Download(download) => download.proof(VerifierIndex(chunk)),
        }
    }
}

/// The node's job runner.
pub(crate) struct Jobs {
    pub(crate) geometry: ChunkGeometry,
    pub(crate) verifier: Arc<ChunkVerifier>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) proofs: ProofSource,
    pub(crate) partial: Option<Arc<PartialDownload>>,
    pub(crate) delivery: Option<crate::resume::DeliveryContext>,
    trailing: Option<TrailingThread>,
    /// The trailing hasher's wait for a chunk to hash beside its own (the
    /// core's `trailing_pair_wait`).
    pair_wait: std::time::Duration,
    /// Verification and storage jobs at once (the core's `verify_jobs`),
    /// and their slots: the delivery takes them all, so that it starts
    /// after every job before it.
    verify_jobs: u32,
    verify_slots: Arc<Semaphore>,
    /// The delivered download, once it is.
    pub(crate) delivered: Option<Box<Delivered>>,
    /// Held by every job that holds the partial download (and so its
    /// lock): once every copy is dropped, `settled` hears `None`.
    running: Option<mpsc::Sender<()>>,
    settled: mpsc::Receiver<()>,
}

impl Jobs {
    pub(crate) fn new(
        geometry: ChunkGeometry,
        verifier: ChunkVerifier,
        storage: Arc<dyn Storage>,
        proofs: ProofSource,
        partial: Option<Arc<PartialDownload>>,
        delivery: Option<crate::resume::DeliveryContext>,
        config: &minimodel_node::config::NodeConfig,
    ) -> Self {
        // At least one (the node's config is checked for that too), at most
        // what a semaphore holds.
        let verify_jobs = config.verify_jobs.clamp(1, Semaphore::MAX_PERMITS);
        let verify_jobs = u32::try_from(verify_jobs).unwrap_or(u32::MAX);
        let (running, settled) = mpsc::channel(1);
        Self {
            geometry,
            verifier: Arc::new(verifier),
            storage,
            proofs,
            partial,
            delivery,
            trailing: None,
            pair_wait: config.trailing_pair_wait,
            verify_jobs,
            verify_slots: Arc::new(Semaphore::new(verify_jobs as usize)),
            delivered: None,
            running: Some(running),
            settled,
        }
    }

    /// A token a job holds while it holds the partial download.
    fn running(&self) -> Option<mpsc::Sender<()>> {
        self.running.clone()
    }

    /// No job starts after this; what the returned receiver hears is
    /// `None` once every job that started has ended.
    pub(crate) fn stop_running(&mut self) -> mpsc::Receiver<()> {
        self.running = None;
        let (_, closed) = mpsc::channel(1);
        std::mem::replace(&mut self.settled, closed)
    }

    /// Starts the trailing hasher (a download only), with the chunks
    /// verified so far noted.
    pub(crate) fn start_hash(&mut self, events: &mpsc::Sender<Event>) {
        if let Some(partial) = &self.partial {
            let events = events.clone();
            self.trailing = Some(TrailingThread::start(
                self.geometry.clone(),
                partial.storage(),
                &partial.verified(),
                self.pair_wait,
                // The node may be gone; the hasher then finishes quietly.
                move |hashed| {
                    let _ = events.blocking_send(Event::Job(JobDone::Trailing(hashed)));
                },
            ));
        }
    }

    pub(crate) fn hash_stored(&mut self, chunk: ChunkIndex) {
        if let Some(trailing) = &mut self.trailing {
            trailing.stored(chunk.0);
        }
    }

    pub(crate) fn restart_hash(&mut self, events: &mpsc::Sender<Event>) {
        self.trailing = None;
        self.start_hash(events);
    }
}

/// Verifies and stores a piece on a blocking worker.
pub(super) fn verify(node: &mut Node, link: LinkId, piece: ArrivedPiece) {
    let Some(partial) = node.jobs.partial.clone() else {
        return;
    };
    let slots = Arc::clone(&node.jobs.verify_slots);
    let verifier = Arc::clone(&node.jobs.verifier);
    let leaves = node.jobs.trailing.as_ref().map(TrailingThread::leaf_hasher);
    let events = node.sender.clone();
    let running = node.jobs.running();
    tokio::spawn(async move {
        let _running = running;
        let Ok(_permit) = slots.acquire_owned().await else {
            return;
        };
        let chunk = piece.chunk;
        let from = piece.from;
        let done = tokio::task::spawn_blocking(move || {
            let proof = piece.proof;
            // After a PieceFrom, the start held here comes first. One that
            // cannot be read, or is of another length, leaves the chunk
            // short: it fails its check, which blames nobody (the core
            // hears that the piece carried the chunk from an offset).
            let data = if from > 0 {
                let mut joined = ChunkData::new();
                let start = partial
                    .held_start(chunk.0)
                    .filter(|start| start.len == from);
                if let Some(Ok(bytes)) = start.map(|start| start.read()) {
                    joined.push(bytes);
                }
                for part in piece.data.parts() {
                    joined.push(part.clone());
                }
                joined
            } else {
                piece.data
            };
            // The chunk's hash, beside the whole-file hash's pass when the
            // trailing thread offers.
            let sha256 = |data: &ChunkData| match &leaves {
                Some(leaves) => leaves.sha256(data),
                None => data.sha256(),
            };
            match verifier.verify_with(VerifierIndex(chunk.0), data, &proof, sha256) {
                Err(error) => VerifyOutcome::Bad(error),
                Ok(verified) => match partial.store_joined(&verified, &proof, from) {
                    Ok(_) => VerifyOutcome::Stored,
                    Err(error) => VerifyOutcome::StoreFailed(Fault::new(error)),
                },
            }
        })
        .await;
        // Every check the core heard of ends with a verdict or a loss: a
        // chunk that arrived is not counted against its peer's timeouts
        // while it is checked, so a check that ended unheard would hold
        // it.
        let done = match done {
            Ok(outcome) => JobDone::Verified {
                link,
                chunk,
                from,
                outcome,
            },
            Err(_) => JobDone::CheckLost { link, chunk },
        };
        let _ = events.send(Event::Job(done)).await;
    });
}

/// Checks a mirror's chunk against the chunk list's tree (the same Merkle
/// check as a peer's, with the proof the tree gives) and stores it, on a
/// blocking worker.
pub(super) fn verify_mirror(
    node: &mut Node,
    mirror: minimodel_node::mirror::MirrorId,
    chunk: ChunkIndex,
    data: ChunkData,
    tree: Arc<MerkleTree>,
) {
    use minimodel_node::mirror::MirrorChunkOutcome;
    let Some(partial) = node.jobs.partial.clone() else {
        return;
    };
    let slots = Arc::clone(&node.jobs.verify_slots);
    let verifier = Arc::clone(&node.jobs.verifier);
    let leaves = node.jobs.trailing.as_ref().map(TrailingThread::leaf_hasher);
    let events = node.sender.clone();
    let running = node.jobs.running();
    tokio::spawn(async move {
        let _running = running;
        let Ok(_permit) = slots.acquire_owned().await else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || {
            let sha256 = |data: &ChunkData| match &leaves {
                Some(leaves) => leaves.sha256(data),
                None => data.sha256(),
            };
            match crate::mirror::check_chunk(&verifier, &tree, chunk, data, sha256) {
                Err((expected, got)) => MirrorChunkOutcome::Bad { expected, got },
                Ok((verified, proof)) => match partial.store_verified(&verified, &proof) {
                    Ok(_) => MirrorChunkOutcome::Stored,
                    Err(error) => MirrorChunkOutcome::StoreFailed(Fault::new(error)),
                },
            }
        })
        .await;
        if let Ok(outcome) = done {
            let _ = events
                .send(Event::Job(JobDone::MirrorVerified {
                    mirror,
                    chunk,
                    outcome,
                }))
                .await;
        }
    });
}

/// Reads a chunk and sends it on a new piece stream, paced if asked.
pub(super) fn upload(
    node: &mut Node,
    link: LinkId,
    chunk: ChunkIndex,
    from: u32,
    pace: Option<u64>,
) {
    if crate::transport::pathtrace::enabled() {
        let state = node.core.upload_state(Instant::now());
        tracing::debug!(
            target: "minimodel_swarm::pathtrace",
            at_ms = crate::transport::pathtrace::ms(),
            chunk = chunk.0,
            under_way = state.under_way,
            holding = state.holding,
            slots = state.slots,
            queued = state.queued,
            uplink_rate = state.uplink_rate.unwrap_or(0.0),
            "upload-start"
        );
    }
    let (Some(proof), Some(chunk_len)) = (
        node.jobs.proofs.proof(chunk.0),
        node.jobs.geometry.chunk_len(VerifierIndex(chunk.0)),
    ) else {
        let now = Instant::now();
        node.core
            .handle_upload_done(link, chunk, UploadOutcome::Failed, now);
        return;
    };
    let Some(DriverLink::Up(handle, uploads)) = node.links.get_mut(&link) else {
        return;
    };
    let header = PieceHeader {
        chunk,
        from,
        chunk_len,
        proof: proof.into_iter().map(|digest| digest.0).collect(),
    };
    let connection = handle.connection.clone();
    let storage = Arc::clone(&node.jobs.storage);
    let geometry = node.jobs.geometry.clone();
    let params = node.swarm.params().clone();
    let events = node.sender.clone();
    let task = tokio::spawn(async move {
        let task = tokio::task::id();
        let read = tokio::task::spawn_blocking(move || {
            read_chunk_from(storage.as_ref(), &geometry, VerifierIndex(chunk.0), from)
        })
        .await;
        let outcome = match read {
            Ok(Ok(bytes)) => {
                let len = bytes.len() as u64;
                match send_piece(&connection, &header, &params, bytes, pace).await {
                    Ok(()) => UploadOutcome::Sent { bytes: len },
                    Err(_) => UploadOutcome::Stopped,
                }
            }
            _ => UploadOutcome::Failed,
        };
        let _ = events
            .send(Event::Job(JobDone::Uploaded {
                link,
                chunk,
                task,
                outcome,
            }))
            .await;
    });
    uploads.insert(chunk.0, task.abort_handle());
}

/// Writes a checkpoint on a worker, then releases the `.part`'s cached
/// pages in `release` (written before its sync, hashed already).
pub(super) fn checkpoint(node: &mut Node, release: std::ops::Range<u64>) {
    let Some(partial) = node.jobs.partial.clone() else {
        return;
    };
    let events = node.sender.clone();
    let remembered = node.peers_to_remember();
    let mirrors = node.core.mirrors_to_remember();
    let running = node.jobs.running();
    tokio::task::spawn_blocking(move || {
        // Locals drop in reverse: the download before the token.
        let _running = running;
        let partial = partial;
        // Advisory: a list that cannot be written is written again at the
        // next checkpoint; the checkpoint's directory sync makes it durable.
        if let Some(list) = remembered {
            let _ = partial.remember_peers(&list);
        }
        if let Some(list) = mirrors {
            let _ = partial.remember_mirrors(&list);
        }
        let result = partial.checkpoint().map(|_| ()).map_err(Fault::new);
        if result.is_ok() {
            let _ = partial
                .storage()
                .release_cached(release.start, release.end.saturating_sub(release.start));
        }
        let _ = events.blocking_send(Event::Job(JobDone::Checkpointed(result)));
    });
}

/// Every chunk is verified: wait for the verification jobs still running,
/// take the whole-file hash read back from disk, run every check of a local
/// `verify`, then write the receipt and move the file to its final name.
pub(super) fn deliver(node: &mut Node) {
    let (Some(partial), Some(context)) = (node.jobs.partial.clone(), node.jobs.delivery.clone())
    else {
        return;
    };
    let trailing = node.jobs.trailing.take();
    let slots = Arc::clone(&node.jobs.verify_slots);
    let all = node.jobs.verify_jobs;
    let events = node.sender.clone();
    let stats = node.core.transfer();
    let remembered = node.peers_to_remember();
    let mirrors = node.core.mirrors_to_remember();
    let running = node.jobs.running();
    tokio::spawn(async move {
        let _running = running;
        let _all = slots.acquire_many(all).await;
        let done = tokio::task::spawn_blocking(move || {
            if let Some(list) = remembered {
                let _ = partial.remember_peers(&list);
            }
            if let Some(list) = mirrors {
                let _ = partial.remember_mirrors(&list);
            }
            let sha256 = trailing.map(TrailingThread::finish);
            let completed_at = stats
                .as_ref()
                .and_then(|stats| stats.completed_at)
                .unwrap_or_else(Instant::now);
            let summary = stats
                .as_ref()
                .map(TransferStats::summary)
                .unwrap_or_default();
            partial.final_checks(&context, sha256, summary, completed_at)
        })
        .await;
        let (finish, delivered) = match done {
            Ok(result) => result,
            Err(error) => (
                Finish::Failed(Fault::new(crate::resume::DeliveryError::Worker(
                    error.to_string(),
                ))),
                None,
            ),
        };
        let _ = events
            .send(Event::Job(JobDone::Delivered(finish, delivered)))
            .await;
    });
}

/// A job ended: tell the core.
pub(super) fn on_done(node: &mut Node, done: JobDone, now: Instant) {
    match done {
        JobDone::Verified {
            link,
            chunk,
            from,
            outcome,
        } => node
            .core
            .handle_verified_from(link, chunk, from, outcome, now),
        JobDone::CheckLost { link, chunk } => {
            let end = minimodel_node::node::PieceEnd::Reset;
            node.core.handle_piece_failed(link, Some(chunk), end, now);
        }
        JobDone::Uploaded {
            link,
            chunk,
            task,
            outcome,
        } => {
            if let Some(DriverLink::Up(_, uploads)) = node.links.get_mut(&link) {
                // The end of an upload that was cancelled, reported before
                // its task was stopped: the core forgot it at the Cancel,
                // and a later upload of the chunk to this link, under way
                // now, is not the one that ended.
                if uploads.get(&chunk.0).is_none_or(|held| held.id() != task) {
                    return;
                }
                uploads.remove(&chunk.0);
            }
            node.core.handle_upload_done(link, chunk, outcome, now);
        }
        JobDone::MirrorVerified {
            mirror,
            chunk,
            outcome,
        } => node
            .core
            .handle_mirror_verified(mirror, chunk, outcome, now),
        JobDone::Trailing(hashed) => node.core.handle_trailing(hashed, now),
        JobDone::Checkpointed(result) => node.core.handle_checkpointed(result, now),
        JobDone::Delivered(finish, delivered) => {
            if let Some(delivered) = delivered {
                // Verified as a whole: serve every chunk from the full tree.
                node.jobs.proofs = ProofSource::Full(Arc::new(delivered.tree.clone()));
                // Whole now: chunk list queries get it.
                node.core
                    .set_chunk_list(super::chunk_list_of(delivered.tree.chunk_hashes()));
                node.jobs.delivered = Some(delivered);
            }
            node.core.handle_finished(finish, now);
        }
    }
}
