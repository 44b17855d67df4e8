//! The downloading side of a node: verification and storage jobs, the
//! trailing full-file hasher, and turning the download core's actions into
//! messages.
//!
//! A chunk's bytes go from the piece stream to a blocking worker that
//! checks its proof and writes it with `pwrite` (at most
//! [`VERIFY_JOBS`] at once); only then does the chunk count: the picker
//! marks it verified, peers hear a Have, and the trailing hasher is told
//! that it may read the chunk back from the `.part`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex as VerifierIndex, VerifiedChunk};
use minimodel_wire::{ChunkIndex, GoodbyeReason, HaveBitfield, Message};
use tokio::sync::Semaphore;

use super::{Internal, Node, NodeReport};
use crate::link::ArrivedPiece;
use crate::resume::PartialDownload;
use crate::store::Storage;
use crate::trailing::TrailingHasher;
use minimodel_node::download::{Action, DisconnectReason, Downloader};
use minimodel_node::picker::LinkId;

/// A checkpoint is written at least this often while chunks arrive.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// And at the latest after this many new bytes.
const CHECKPOINT_BYTES: u64 = 64 << 20;

/// Verification and storage jobs at once.
pub(crate) const VERIFY_JOBS: usize = 2;
/// When the verified prefix is this far ahead of the trailing hasher, no
/// new chunk is requested until it catches up: the hash pass keeps pace
/// with the download, so the end of a download is not followed by a long
/// tail, and the chunks it reads back are still in the page cache.
const TRAILING_LAG: u64 = 4 << 20;

/// A chunk that passed its proof and is on storage.
pub(crate) struct StoredChunk {
    pub(crate) key: LinkId,
    pub(crate) chunk: VerifiedChunk,
}

/// The trailing hasher on its own thread. It drains its inbox (indices of
/// stored chunks) between chunks, so taking in new chunks never waits for
/// hashing, and reports its progress (the number of chunks hashed) after
/// each chunk.
struct TrailingThread {
    sender: Option<std_mpsc::Sender<u32>>,
    hashed: Arc<AtomicU32>,
    thread: Option<JoinHandle<io::Result<Sha256Digest>>>,
}

impl TrailingThread {
    fn start(
        geometry: ChunkGeometry,
        storage: Arc<dyn Storage>,
        stored: &HaveBitfield,
        progress: tokio::sync::mpsc::UnboundedSender<Internal>,
    ) -> Self {
        let (sender, inbox) = std_mpsc::channel::<u32>();
        let hashed = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&hashed);
        let resumed: Vec<u32> = stored.iter_ones().map(|c| c.0).collect();
        let thread = std::thread::Builder::new()
            .name("trailing-sha256".into())
            .spawn(move || {
                let mut hasher = TrailingHasher::new(geometry);
                for chunk in resumed {
                    hasher.note_stored(chunk);
                }
                loop {
                    while let Ok(chunk) = inbox.try_recv() {
                        hasher.note_stored(chunk);
                    }
                    if hasher.step(storage.as_ref())? {
                        counter.store(hasher.hashed_chunks(), Ordering::Relaxed);
                        let _ = progress.send(Internal::TrailingProgress);
                        continue;
                    }
                    match inbox.recv() {
                        Ok(chunk) => hasher.note_stored(chunk),
                        Err(_) => break,
                    }
                }
                hasher.finish(storage.as_ref())
            })
            .ok();
        Self {
            sender: Some(sender),
            hashed,
            thread,
        }
    }

    /// Chunk `chunk` is verified and written: it may be read back.
    fn stored(&mut self, chunk: u32) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(chunk);
        }
    }

    /// Chunks of the prefix hashed so far.
    fn hashed_chunks(&self) -> u32 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Waits for the hasher to reach the end. Blocking.
    fn finish(mut self) -> io::Result<Sha256Digest> {
        drop(self.sender.take());
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("trailing hasher panicked"))?,
            None => Err(io::Error::other("trailing hasher could not start")),
        }
    }
}

/// Everything a node needs while it downloads.
pub(crate) struct DownloadState {
    pub(crate) core: Downloader,
    pub(crate) partial: Arc<PartialDownload>,
    geometry: ChunkGeometry,
    trailing: Option<TrailingThread>,
    progress: tokio::sync::mpsc::UnboundedSender<Internal>,
    /// Chunks `0..prefix` are verified.
    prefix: u32,
    /// The verified prefix when the trailing hasher (re)started: while it
    /// reads those back, the download does not wait for it.
    start_prefix: u32,
    jobs: Arc<Semaphore>,
    pub(crate) verified_bytes: u64,
    pub(crate) fetched_chunks: u64,
    pub(crate) resumed_chunks: u64,
    pub(crate) failed_dials: usize,
    bytes_since_checkpoint: u64,
    last_checkpoint: Instant,
    pub(crate) checkpoint_running: bool,
    /// The `.part`'s page cache is released below this offset.
    released_below: u64,
    pub(crate) fatal: Option<crate::resume::ResumeError>,
    /// When the last chunk was verified.
    pub(crate) completed_at: Option<Instant>,
    pub(crate) last_report: Instant,
    rate_window: VecDeque<(Instant, u64)>,
}

impl DownloadState {
    pub(crate) fn new(
        core: Downloader,
        geometry: &ChunkGeometry,
        partial: Arc<PartialDownload>,
        progress: tokio::sync::mpsc::UnboundedSender<Internal>,
    ) -> Self {
        let resumed = partial.verified();
        let prefix = verified_prefix(&resumed, 0);
        let verified_bytes = resumed
            .iter_ones()
            .filter_map(|chunk| geometry.chunk_len(VerifierIndex(chunk.0)))
            .map(u64::from)
            .sum();
        Self {
            core,
            trailing: Some(TrailingThread::start(
                *geometry,
                partial.storage(),
                &resumed,
                progress.clone(),
            )),
            progress,
            prefix,
            start_prefix: prefix,
            partial,
            geometry: *geometry,
            jobs: Arc::new(Semaphore::new(VERIFY_JOBS)),
            verified_bytes,
            fetched_chunks: 0,
            resumed_chunks: u64::from(resumed.count_ones()),
            failed_dials: 0,
            bytes_since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            checkpoint_running: false,
            released_below: 0,
            fatal: None,
            completed_at: None,
            last_report: Instant::now(),
            rate_window: VecDeque::new(),
        }
    }

    /// Waits for the full-file SHA-256. Blocking: call on a worker.
    pub(crate) fn take_trailing(&mut self) -> impl FnOnce() -> io::Result<Sha256Digest> + use<> {
        let trailing = self.trailing.take();
        move || match trailing {
            Some(trailing) => trailing.finish(),
            None => Err(io::Error::other("full-file hash already taken")),
        }
    }

    /// Chunks were found bad on disk after all: forget them, fetch them
    /// again, and hash the whole file anew once they are back.
    pub(crate) fn refetch(&mut self, bad: &[u32]) {
        let now = Instant::now();
        for &chunk in bad {
            self.core.chunk_found_bad(chunk, now);
            if let Some(len) = self.geometry.chunk_len(VerifierIndex(chunk)) {
                self.verified_bytes -= u64::from(len);
            }
        }
        let stored = self.partial.verified();
        self.prefix = verified_prefix(&stored, 0);
        self.start_prefix = self.prefix;
        self.trailing = Some(TrailingThread::start(
            self.geometry,
            self.partial.storage(),
            &stored,
            self.progress.clone(),
        ));
    }

    /// Holds new requests while the trailing hasher lags behind the
    /// verified prefix (see [`TRAILING_LAG`]).
    pub(crate) fn pace(&mut self) {
        let Some(trailing) = &self.trailing else {
            self.core.set_hold(false, Instant::now());
            return;
        };
        let hashed = trailing.hashed_chunks();
        let lag =
            u64::from(self.prefix.saturating_sub(hashed)) * u64::from(self.geometry.chunk_size());
        self.core.set_hold(
            hashed >= self.start_prefix && lag > TRAILING_LAG,
            Instant::now(),
        );
    }

    /// Waits for every verification job to end (none is started after
    /// the last chunk, but endgame duplicates may still be running).
    pub(crate) async fn jobs_idle(&self) {
        let _all = self.jobs.acquire_many(VERIFY_JOBS as u32).await;
    }

    pub(crate) fn progress(&mut self, geometry: &ChunkGeometry, now: Instant) -> NodeReport {
        self.rate_window.push_back((now, self.verified_bytes));
        while self
            .rate_window
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at).as_secs_f64() > 5.0)
        {
            self.rate_window.pop_front();
        }
        let rate = match (self.rate_window.front(), self.rate_window.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1 - b0) as f64 / t1.saturating_duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        NodeReport::Progress {
            verified_bytes: self.verified_bytes,
            total_bytes: geometry.artifact_bytes(),
            verified_chunks: self.core.picker().verified_count(),
            total_chunks: geometry.chunk_count(),
            peers: self.core.peer_count(),
            rate,
        }
    }
}

impl Node {
    /// A requested chunk's bytes arrived: check and store them on a worker.
    pub(crate) fn on_piece(&mut self, key: LinkId, piece: ArrivedPiece) {
        let Some(download) = &mut self.download else {
            return;
        };
        let chunk = piece.chunk.0;
        if !download
            .core
            .peer(key)
            .is_some_and(|s| s.is_requested(chunk))
        {
            // Cancelled or timed out while it was on its way.
            return;
        }
        let jobs = Arc::clone(&download.jobs);
        let verifier = Arc::clone(&self.verifier);
        let partial = Arc::clone(&download.partial);
        let internal = self.internal_sender.clone();
        tokio::spawn(async move {
            let Ok(_permit) = jobs.acquire_owned().await else {
                return;
            };
            let proof = piece.proof;
            let outcome = tokio::task::spawn_blocking(move || {
                match verifier.verify(VerifierIndex(chunk), piece.data, &proof) {
                    Err(error) => Internal::BadChunk {
                        key,
                        chunk,
                        error: error.to_string(),
                    },
                    Ok(verified) => match partial.store_verified(&verified, &proof) {
                        Ok(_) => Internal::Stored(Box::new(StoredChunk {
                            key,
                            chunk: verified,
                        })),
                        Err(error) => Internal::StoreFailed { key, chunk, error },
                    },
                }
            })
            .await;
            if let Ok(outcome) = outcome {
                let _ = internal.send(outcome);
            }
        });
    }

    /// A chunk passed its proof and is on storage.
    pub(crate) fn on_stored(&mut self, stored: StoredChunk) {
        let StoredChunk { key, chunk } = stored;
        let index = chunk.index().0;
        let len = chunk.data().len() as u64;
        if let Some(peer) = self.peers.get(&key) {
            peer.link.forget_chunk(index);
        }
        let Some(download) = &mut self.download else {
            return;
        };
        let first = !download.core.is_verified(index);
        download
            .core
            .on_chunk_verified(key, index, len, Instant::now());
        if !first {
            return;
        }
        download.verified_bytes += len;
        download.fetched_chunks += 1;
        download.bytes_since_checkpoint += len;
        while download.prefix < self.geometry.chunk_count()
            && download.core.is_verified(download.prefix)
        {
            download.prefix += 1;
        }
        if let Some(trailing) = &mut download.trailing {
            trailing.stored(index);
        }
        download.pace();
        if download.core.is_complete() {
            download.completed_at = Some(Instant::now());
        }
        let _ = self.local_have.set(ChunkIndex(index), true);
        if self.serving {
            self.uploads.queue.add_local_chunk(index);
            if let Ok(mut admission) = self.admission.lock() {
                let _ = admission.have.set(ChunkIndex(index), true);
            }
            let keys: Vec<LinkId> = self.peers.keys().copied().collect();
            for key in keys {
                let have = Message::Have {
                    chunk: ChunkIndex(index),
                };
                self.send_or_drop(key, have);
            }
        }
    }

    pub(crate) fn on_bad_chunk(&mut self, key: LinkId, chunk: u32, error: String) {
        if let Some(peer) = self.peers.get(&key) {
            peer.link.forget_chunk(chunk);
            self.report(NodeReport::Banned {
                peer: peer.id,
                addr: peer.addr,
                chunk,
                error,
            });
        }
        if let Some(download) = &mut self.download {
            download.core.on_chunk_bad(key, chunk, Instant::now());
        }
    }

    /// Writes a checkpoint on a worker when one is due.
    pub(crate) fn maybe_checkpoint(&mut self, now: Instant) {
        let Some(download) = &mut self.download else {
            return;
        };
        let due = download.bytes_since_checkpoint >= CHECKPOINT_BYTES
            || (download.bytes_since_checkpoint > 0
                && now.saturating_duration_since(download.last_checkpoint) >= CHECKPOINT_EVERY);
        if !due || download.checkpoint_running {
            return;
        }
        download.checkpoint_running = true;
        download.bytes_since_checkpoint = 0;
        download.last_checkpoint = now;
        // Chunks below the trailing hasher were written before this
        // checkpoint's sync: once it is done their cached pages are clean
        // and nobody reads them again, so the kernel may reuse them.
        let hashed = download
            .trailing
            .as_ref()
            .map_or(0, TrailingThread::hashed_chunks);
        let release_from = download.released_below;
        let release_to = (u64::from(hashed) * u64::from(download.geometry.chunk_size()))
            .min(download.geometry.artifact_bytes())
            .max(release_from);
        download.released_below = release_to;
        let partial = Arc::clone(&download.partial);
        let internal = self.internal_sender.clone();
        tokio::task::spawn_blocking(move || {
            let result = partial.checkpoint().map(|_| ());
            if result.is_ok() {
                let _ = partial
                    .storage()
                    .release_cached(release_from, release_to - release_from);
            }
            let _ = internal.send(Internal::Checkpointed(result));
        });
    }

    pub(crate) fn on_store_failed(
        &mut self,
        key: LinkId,
        chunk: u32,
        error: crate::resume::ResumeError,
    ) {
        if let Some(download) = &mut self.download {
            download.core.on_chunk_lost(key, chunk, Instant::now());
            if download.fatal.is_none() {
                download.fatal = Some(error);
            }
        }
    }

    /// Turns the download core's decisions into messages and closes.
    pub(crate) fn drain_download_actions(&mut self) {
        let Some(download) = &mut self.download else {
            return;
        };
        let mut actions = Vec::new();
        while let Some(action) = download.core.poll_action() {
            actions.push(action);
        }
        for action in actions {
            match action {
                Action::Request { peer, chunk } => {
                    let sent = self.peers.get(&peer).is_some_and(|p| {
                        p.link.expect_chunk(chunk);
                        p.link.send(Message::Request {
                            chunk: ChunkIndex(chunk),
                        })
                    });
                    if !sent {
                        self.remove_peer(peer, "not reading its control stream".into());
                    }
                }
                Action::Cancel { peer, chunk } => {
                    if let Some(p) = self.peers.get(&peer) {
                        p.link.forget_chunk(chunk);
                        p.link.send(Message::Cancel {
                            chunk: ChunkIndex(chunk),
                        });
                    }
                }
                Action::Disconnect { peer, reason } => {
                    let Some(p) = self.peers.get(&peer) else {
                        continue;
                    };
                    let (goodbye, text) = match reason {
                        DisconnectReason::BadData => (
                            GoodbyeReason::BadData,
                            "sent a chunk that failed its proof; banned",
                        ),
                        DisconnectReason::Stalled => (GoodbyeReason::Idle, "stalled"),
                        DisconnectReason::TooManyTimeouts => {
                            (GoodbyeReason::Idle, "too many requests timed out")
                        }
                        // Every peer stays until the fetch ends (the goodbye
                        // goes out at shutdown): the final checks may still
                        // find a chunk bad on disk and fetch it again.
                        DisconnectReason::Done => continue,
                    };
                    let id = p.id;
                    p.link.close(goodbye);
                    if reason == DisconnectReason::BadData {
                        self.ban(id);
                    }
                    self.remove_peer(peer, text.to_owned());
                }
            }
        }
    }
}

/// The length of the verified prefix, scanning on from `from`.
fn verified_prefix(verified: &HaveBitfield, from: u32) -> u32 {
    let mut prefix = from;
    while prefix < verified.chunk_count() && verified.get(ChunkIndex(prefix)) {
        prefix += 1;
    }
    prefix
}
