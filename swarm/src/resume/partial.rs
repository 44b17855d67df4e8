//! [`PartialDownload`]: an open partial download, shared by the threads of
//! a driver (every method takes `&self` except [`PartialDownload::finish`]).
//!
//! Two sets of chunks, and the invariant between them:
//! - *verified*: recorded by [`PartialDownload::record_verified`] after the
//!   driver wrote the chunk; known to be good, may be served;
//! - *persisted*: listed by the state file on disk. A chunk is persisted
//!   only after its bytes were synced: [`PartialDownload::checkpoint`]
//!   takes the verified set, syncs the `.part`, then writes that set.
//!
//! Between checkpoints, every chunk recorded as verified is also appended
//! to the journal (`journal.rs`), without a sync: a process that is killed
//! loses only what was in flight, because the next open finds the journaled
//! chunks on disk and checks them again. A power loss may lose the journal's
//! tail: then the chunks verified since the last checkpoint are fetched
//! again.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex, ChunkVerifier, VerifiedChunk};
use minimodel_verifier::merkle::PartialTree;
use minimodel_verifier::receipt::{ImportReceipt, RECEIPT_FORMAT, now_rfc3339};
use minimodel_wire::HaveBitfield;

use super::dir::SafeDir;
use super::error::{ResumeError, io_error};
use super::files::{self, DownloadPaths};
use super::journal;
use super::knowledge::ChunkKnowledge;
use super::recheck::{RecheckProgress, hash_chunks};
use super::state::{PartialState, ResumeCounters, StateBinding, StateContent};
use crate::store::{Storage, write_chunk};

/// An open partial download: its `.part`, what is verified, and its state
/// file.
pub struct PartialDownload {
    paths: DownloadPaths,
    dir: SafeDir,
    binding: StateBinding,
    geometry: ChunkGeometry,
    manifest_sha256: Sha256Digest,
    storage: Arc<dyn Storage>,
    live: Mutex<Live>,
    disk: Mutex<OnDisk>,
    /// The download's lock file, locked (`DownloadPaths::lock`): no other
    /// process opens this download while it lives, until it is delivered.
    held: Mutex<Option<File>>,
    /// See [`Start::discardable`].
    discardable: bool,
}

/// What is true now, in memory.
struct Live {
    knowledge: ChunkKnowledge,
    counters: ResumeCounters,
    /// Where verified chunks are journaled; `None` until
    /// [`PartialDownload::begin_journal`].
    journal: Option<File>,
    /// Chunks copied from older versions in this run
    /// ([`PartialDownload::store_reused`]).
    reused: u64,
    /// Where the start of a chunk may be read on this machine (an older
    /// version's part that ended inside it, [`super::reuse::plan_prefixes`]):
    /// peers are asked for the rest only ([`PartialDownload::held_start`]).
    held: std::collections::BTreeMap<u32, HeldStart>,
}

/// The start of a chunk an older file on this machine may hold: `len`
/// bytes at `offset` of `path`. Believed, never trusted: only the whole
/// chunk, this start and the rest from a peer, is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldStart {
    /// The older file.
    pub path: std::path::PathBuf,
    /// Where the start is in it.
    pub offset: u64,
    /// Its length: fewer bytes than the chunk's.
    pub len: u32,
}

impl HeldStart {
    /// Reads the start's bytes (blocking).
    pub fn read(&self) -> std::io::Result<bytes::Bytes> {
        crate::store::FileStorage::open_read_only(&self.path)?
            .read_bytes_at(self.offset, self.len as usize)
    }
}

/// What the state files on disk hold.
struct OnDisk {
    /// Generation of the newest state written or loaded; `None` before the
    /// first one.
    generation: Option<u64>,
    persisted: HaveBitfield,
    /// Whether the file under the state name is a good state (and may
    /// become `.prev`).
    current_is_good: bool,
    checkpoint_at: Option<String>,
    /// The last checkpoint succeeded, so the next one may start a new
    /// journal: the records of the one before are all persisted. After a
    /// failed checkpoint, `.prev` may hold records no state lists; it is
    /// kept until a checkpoint succeeds.
    rotate_journal: bool,
}

/// What a checkpoint wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Its generation.
    pub generation: u64,
    /// Chunks it lists.
    pub chunks: u32,
    /// Chunks it lists that the previous checkpoint did not.
    pub new_chunks: u32,
    /// Chunks the previous checkpoint listed and this one does not
    /// (dropped as bad).
    pub removed_chunks: u32,
    /// When, RFC 3339 UTC.
    pub checkpoint_at: String,
}

/// A finished download: the artifact at its final name with its receipt.
pub struct FinishedDownload {
    /// `DIR/<model-id>.slm`.
    pub artifact: std::path::PathBuf,
    /// `DIR/<model-id>.receipt.json`.
    pub receipt_path: std::path::PathBuf,
    /// The receipt written there.
    pub receipt: ImportReceipt,
    /// The same storage, now under the final name, for seeding on.
    pub storage: Arc<dyn Storage>,
}

impl std::fmt::Debug for FinishedDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishedDownload")
            .field("artifact", &self.artifact)
            .field("receipt", &self.receipt_path)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PartialDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialDownload")
            .field("paths", &self.paths)
            .field("binding", &self.binding)
            .field("chunks_verified", &self.chunks_verified())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere does not make the data wrong: every change is
    // completed under the lock before anything can fail.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an opened download starts: built by the open logic.
pub(crate) struct Start {
    pub(crate) paths: DownloadPaths,
    pub(crate) dir: SafeDir,
    pub(crate) binding: StateBinding,
    pub(crate) manifest_sha256: Sha256Digest,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) knowledge: ChunkKnowledge,
    pub(crate) counters: ResumeCounters,
    /// The state on disk it continues, if any.
    pub(crate) persisted: Option<Persisted>,
    pub(crate) current_is_good: bool,
    /// The download's lock, held as long as it is open.
    pub(crate) lock: File,
    /// Whether its files may be removed when nothing of it is verified
    /// ([`PartialDownload::discard_if_nothing_verified`]): not for a
    /// finished file being repaired, whose chunks are unknown, not missing.
    pub(crate) discardable: bool,
}

/// What a loaded state file holds, as far as checkpoints care.
#[derive(Debug)]
pub(crate) struct Persisted {
    pub(crate) generation: u64,
    pub(crate) verified: HaveBitfield,
    pub(crate) checkpoint_at: String,
}

impl Persisted {
    pub(crate) fn of(state: &PartialState) -> Self {
        Self {
            generation: state.generation,
            verified: state.knowledge.verified().clone(),
            checkpoint_at: state.checkpoint_at.clone(),
        }
    }
}

impl PartialDownload {
    pub(crate) fn start(start: Start) -> Result<Self, ResumeError> {
        let geometry = start.binding.geometry()?;
        let count = geometry.chunk_count();
        let (generation, persisted, checkpoint_at) = match start.persisted {
            Some(state) => (
                Some(state.generation),
                state.verified,
                Some(state.checkpoint_at),
            ),
            None => (None, HaveBitfield::new(count), None),
        };
        Ok(Self {
            paths: start.paths,
            dir: start.dir,
            binding: start.binding,
            geometry,
            manifest_sha256: start.manifest_sha256,
            storage: start.storage,
            live: Mutex::new(Live {
                knowledge: start.knowledge,
                counters: start.counters,
                journal: None,
                reused: 0,
                held: std::collections::BTreeMap::new(),
            }),
            disk: Mutex::new(OnDisk {
                generation,
                persisted,
                current_is_good: start.current_is_good,
                checkpoint_at,
                rotate_journal: false,
            }),
            held: Mutex::new(Some(start.lock)),
            discardable: start.discardable,
        })
    }

    /// The files of this download.
    pub fn paths(&self) -> &DownloadPaths {
        &self.paths
    }

    /// The peers earlier runs remember (`<model-id>.slm.peers`, stale ones
    /// included): empty when there is no file; a file that cannot be used
    /// is its error (it is replaced at the next checkpoint).
    pub fn remembered_peers(
        &self,
    ) -> Result<Vec<minimodel_node::remembered::RememberedPeer>, super::PeersFileError> {
        super::peers::read_peers(&self.dir, &self.paths.names.peers)
            .unwrap_or_else(|error| Err(super::PeersFileError::Syntax(error.to_string())))
    }

    /// Writes the peers to remember (`<model-id>.slm.peers`, a whole-file
    /// write; made durable by the next directory sync).
    pub fn remember_peers(
        &self,
        peers: &[minimodel_node::remembered::RememberedPeer],
    ) -> Result<(), ResumeError> {
        super::peers::write_peers(&self.dir, &self.paths.names.peers, peers)
    }

    /// What earlier runs saw of their mirrors (`<model-id>.slm.mirrors`):
    /// empty when there is no file; a file that cannot be used is its
    /// error (it is replaced at the next checkpoint).
    pub fn remembered_mirrors(
        &self,
    ) -> Result<Vec<minimodel_node::node::RememberedMirror>, super::MirrorsFileError> {
        super::mirrors::read_mirrors(&self.dir, &self.paths.names.mirrors)
            .unwrap_or_else(|error| Err(super::MirrorsFileError::Syntax(error.to_string())))
    }

    /// Writes what this download saw of its mirrors
    /// (`<model-id>.slm.mirrors`, a whole-file write; made durable by the
    /// next directory sync).
    pub fn remember_mirrors(
        &self,
        mirrors: &[minimodel_node::node::RememberedMirror],
    ) -> Result<(), ResumeError> {
        super::mirrors::write_mirrors(&self.dir, &self.paths.names.mirrors, mirrors)
    }

    /// Keeps a listed download's chunk list (`slm-parts-merkle-v0`, checked
    /// against the manifest) in DIR while it is partial: a resumed run,
    /// and `status`, find the chunks' lengths here instead of asking peers
    /// again. Delivery writes the same list. Another file under that name
    /// (a list of another version left behind) is replaced: while the
    /// download is partial the name is its own.
    pub fn keep_chunk_list(&self, list: &super::reuse::NewChunkList) -> Result<(), ResumeError> {
        let Some(geometry) = list.listed_geometry() else {
            return Ok(());
        };
        let name = &self.paths.names.chunk_list;
        let text = minimodel_verifier::chunk_list::list_text(list.chunk_hashes(), geometry);
        let limit = text.len() as u64 + 1;
        if self.dir.read(name, limit)?.as_deref() == Some(text.as_bytes()) {
            return Ok(());
        }
        self.dir.write_atomically(name, text.as_bytes())?;
        self.dir.sync()
    }

    /// The directory handle every file of the download goes through.
    pub(crate) fn dir(&self) -> &SafeDir {
        &self.dir
    }

    /// The artifact this download is bound to.
    pub fn binding(&self) -> &StateBinding {
        &self.binding
    }

    /// How the artifact is cut into chunks.
    pub fn geometry(&self) -> ChunkGeometry {
        self.geometry.clone()
    }

    /// A verifier for incoming chunks of this artifact.
    pub fn verifier(&self) -> ChunkVerifier {
        ChunkVerifier::new(self.geometry.clone(), self.binding.merkle_root)
    }

    /// The `.part` storage: write verified chunks here, read them to serve.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    /// The verified chunks (recorded, whether checkpointed or not).
    pub fn verified(&self) -> HaveBitfield {
        lock(&self.live).knowledge.verified().clone()
    }

    /// The chunks the state file on disk lists.
    pub fn persisted(&self) -> HaveBitfield {
        lock(&self.disk).persisted.clone()
    }

    /// Number of verified chunks.
    pub fn chunks_verified(&self) -> u32 {
        lock(&self.live).knowledge.verified().count_ones()
    }

    /// Whether every chunk is verified.
    pub fn is_complete(&self) -> bool {
        lock(&self.live).knowledge.verified().is_full()
    }

    /// Whether chunk `index` is verified.
    pub fn is_verified(&self, index: ChunkIndex) -> bool {
        lock(&self.live).knowledge.is_verified(index)
    }

    /// The chunk hash of a verified chunk.
    pub fn chunk_hash(&self, index: ChunkIndex) -> Option<Sha256Digest> {
        lock(&self.live).knowledge.chunk_hash(index)
    }

    /// The Merkle proof of a verified chunk, to send with it.
    pub fn proof(&self, index: ChunkIndex) -> Option<Vec<Sha256Digest>> {
        lock(&self.live).knowledge.proof(index)
    }

    /// A copy of the Merkle tree as far as it is known.
    pub fn tree(&self) -> PartialTree {
        lock(&self.live).knowledge.tree().clone()
    }

    /// Counters over all runs, this one's records included.
    pub fn counters(&self) -> ResumeCounters {
        lock(&self.live).counters
    }

    /// Generation of the newest state on disk (`None` before the first).
    pub fn generation(&self) -> Option<u64> {
        lock(&self.disk).generation
    }

    /// Records a chunk the driver has written to [`Self::storage`]: it
    /// counts as verified (may be served) from now on, and is persisted by
    /// the next [`Self::checkpoint`]. `proof` must be the proof the chunk
    /// was verified with; it is checked again and its nodes are learned.
    /// Returns whether the chunk was new.
    pub fn record_verified(
        &self,
        chunk: &VerifiedChunk,
        proof: &[Sha256Digest],
    ) -> Result<bool, ResumeError> {
        let mut live = lock(&self.live);
        let new = live
            .knowledge
            .insert(chunk.index(), chunk.chunk_hash(), proof)?;
        if new {
            live.counters.chunks_fetched += 1;
            live.counters.bytes_fetched += chunk.data().len() as u64;
            if let Some(file) = &mut live.journal {
                let record = journal::encode_record(chunk.index().0, &chunk.chunk_hash(), proof);
                file.write_all(&record)
                    .map_err(io_error("append to", &self.paths.journal))?;
            }
        }
        Ok(new)
    }

    /// Starts journaling verified chunks: called once the state on disk
    /// lists every chunk verified so far (when opening is done). Earlier
    /// journals are removed: their chunks were checked and persisted, or
    /// failed the check.
    pub(crate) fn begin_journal(&self) -> Result<(), ResumeError> {
        let names = &self.paths.names;
        self.dir.remove_if_present(&names.journal_prev)?;
        self.dir.remove_if_present(&names.journal)?;
        let file = self.new_journal()?;
        lock(&self.live).journal = Some(file);
        lock(&self.disk).rotate_journal = true;
        Ok(())
    }

    fn new_journal(&self) -> Result<File, ResumeError> {
        let mut file = self.dir.open_append(&self.paths.names.journal)?;
        file.write_all(&journal::encode_header(&self.binding.merkle_root))
            .map_err(io_error("start", &self.paths.journal))?;
        Ok(file)
    }

    /// [`Self::store_verified`] for a chunk copied from an older version
    /// on this machine (`reuse.rs`): counted as reused, not as fetched.
    pub fn store_reused(
        &self,
        chunk: &VerifiedChunk,
        proof: &[Sha256Digest],
    ) -> Result<bool, ResumeError> {
        write_chunk(self.storage.as_ref(), &self.geometry, chunk)
            .map_err(io_error("write a chunk to", &self.paths.part))?;
        let new = self.record_verified(chunk, proof)?;
        if new {
            let mut live = lock(&self.live);
            live.counters.chunks_fetched -= 1;
            live.counters.bytes_fetched -= chunk.data().len() as u64;
            live.reused += 1;
        }
        Ok(new)
    }

    /// Chunks copied from older versions in this run.
    pub fn chunks_reused(&self) -> u64 {
        lock(&self.live).reused
    }

    /// Records where the starts of chunks not verified yet may be read
    /// (the reuse planner's).
    pub fn hold_starts(&self, starts: std::collections::BTreeMap<u32, HeldStart>) {
        lock(&self.live).held = starts;
    }

    /// Where the start of `chunk` may be read, if this machine may hold it.
    pub fn held_start(&self, chunk: u32) -> Option<HeldStart> {
        lock(&self.live).held.get(&chunk).cloned()
    }

    /// Every chunk whose start this machine may hold, with the start's
    /// length: what the node may ask of peers from an offset on.
    pub fn held_starts(&self) -> std::collections::BTreeMap<u32, u32> {
        (lock(&self.live).held.iter())
            .map(|(chunk, start)| (*chunk, start.len))
            .collect()
    }

    /// [`Self::store_verified`] for a chunk joined from a start held here
    /// (`held` bytes, [`Self::held_start`]) and the rest from a peer: the
    /// start's bytes do not count as fetched.
    pub fn store_joined(
        &self,
        chunk: &VerifiedChunk,
        proof: &[Sha256Digest],
        held: u32,
    ) -> Result<bool, ResumeError> {
        let new = self.store_verified(chunk, proof)?;
        if new {
            let mut live = lock(&self.live);
            live.counters.bytes_fetched -= u64::from(held).min(live.counters.bytes_fetched);
            live.held.remove(&chunk.index().0);
        }
        Ok(new)
    }

    /// Writes a verified chunk to the `.part` and records it. A write
    /// error (a full disk) records nothing and leaves the state on disk as
    /// it was.
    pub fn store_verified(
        &self,
        chunk: &VerifiedChunk,
        proof: &[Sha256Digest],
    ) -> Result<bool, ResumeError> {
        write_chunk(self.storage.as_ref(), &self.geometry, chunk)
            .map_err(io_error("write a chunk to", &self.paths.part))?;
        self.record_verified(chunk, proof)
    }

    /// Forgets a chunk found bad (its bytes on disk do not hash to its
    /// chunk hash): it is no longer verified nor served, and the next
    /// checkpoint no longer lists it. Returns whether it was verified.
    pub fn drop_chunk(&self, index: ChunkIndex) -> Result<bool, ResumeError> {
        if !self.geometry.contains(index) {
            return Err(ResumeError::ChunkOutOfRange {
                index: index.0,
                count: self.geometry.chunk_count(),
            });
        }
        let mut live = lock(&self.live);
        let dropped = live.knowledge.drop_chunk(index);
        if dropped {
            live.counters.chunks_dropped += 1;
        }
        Ok(dropped)
    }

    /// The crash-safe checkpoint (`docs/resume.md`): takes the verified
    /// set, syncs the `.part`, writes the state to a temporary file and
    /// fsyncs it, renames the current state to `.prev`, renames the new one
    /// into place and fsyncs the directory. Chunks recorded while it runs
    /// go to the next one. On error the last good state stays on disk.
    pub fn checkpoint(&self) -> Result<CheckpointReport, ResumeError> {
        let mut disk = lock(&self.disk);
        let generation = disk.generation.map_or(0, |generation| generation + 1);
        let checkpoint_at = now_rfc3339();
        let content = {
            let mut live = lock(&self.live);
            if disk.rotate_journal && live.journal.is_some() {
                // Records from here on go to a new journal; the old one is
                // kept as `.prev` until this checkpoint is on disk.
                let names = &self.paths.names;
                let old = live.journal.take();
                if let Err(error) = self.dir.rename(&names.journal, &names.journal_prev) {
                    live.journal = old;
                    return Err(error);
                }
                live.journal = Some(self.new_journal()?);
            }
            StateContent {
                binding: self.binding.clone(),
                manifest_sha256: self.manifest_sha256,
                generation,
                checkpoint_at: checkpoint_at.clone(),
                counters: live.counters,
                verified: live.knowledge.verified().clone(),
                chunk_hashes: live.knowledge.verified_hashes(),
                tree_nodes: live.knowledge.extra_nodes(),
            }
        };
        disk.rotate_journal = false;
        self.storage
            .sync_data()
            .map_err(io_error("sync", &self.paths.part))?;
        let bytes = content.encode();
        let disk = &mut *disk;
        files::write_state(
            &self.dir,
            &self.paths.names,
            &bytes,
            &mut disk.current_is_good,
        )?;
        // Every record of `.prev` is in the state just written.
        self.dir.remove_if_present(&self.paths.names.journal_prev)?;
        disk.rotate_journal = true;
        let (mut new_chunks, mut removed_chunks) = (0, 0);
        for (now, before) in content
            .verified
            .as_bytes()
            .iter()
            .zip(disk.persisted.as_bytes())
        {
            new_chunks += (now & !before).count_ones();
            removed_chunks += (before & !now).count_ones();
        }
        let report = CheckpointReport {
            generation,
            chunks: content.verified.count_ones(),
            new_chunks,
            removed_chunks,
            checkpoint_at,
        };
        disk.generation = Some(generation);
        disk.persisted = content.verified;
        disk.checkpoint_at = Some(report.checkpoint_at.clone());
        Ok(report)
    }

    /// Rehashes every verified chunk on disk and returns those whose bytes
    /// no longer hash to their chunk hash, in increasing order. For when
    /// the whole-file SHA-256 disagrees: drop them ([`Self::drop_chunk`]),
    /// fetch them again, and only then deliver.
    pub fn find_bad_chunks(
        &self,
        progress: &dyn Fn(RecheckProgress),
    ) -> Result<Vec<ChunkIndex>, ResumeError> {
        let (indices, expected): (Vec<u32>, Vec<Sha256Digest>) = {
            let live = lock(&self.live);
            let knowledge = &live.knowledge;
            knowledge
                .verified()
                .iter_ones()
                .filter_map(|index| {
                    knowledge
                        .chunk_hash(ChunkIndex(index.0))
                        .map(|hash| (index.0, hash))
                })
                .unzip()
        };
        let hashes = hash_chunks(self.storage.as_ref(), &self.geometry, &indices, progress)
            .map_err(io_error("read", &self.paths.part))?;
        Ok(indices
            .iter()
            .zip(hashes.iter().zip(&expected))
            .filter(|(_, (found, expected))| found != expected)
            .map(|(&index, _)| ChunkIndex(index))
            .collect())
    }

    /// Delivers the finished download, once every chunk is verified and
    /// the caller has checked the whole file (SHA-256 and container):
    /// syncs the `.part`, asks `make_receipt` for the receipt (so that a
    /// time taken there includes the sync), writes the chunk list and the
    /// receipt, renames the `.part` to `DIR/<model-id>.slm`, fsyncs the
    /// directory, removes the state files and journals and fsyncs the
    /// directory again. The receipt is written first so that a crash never
    /// leaves the final file without it. Takes `&self` so that a driver
    /// sharing the download between threads can finish it; nothing should
    /// record chunks after this.
    pub fn finish_with(
        &self,
        make_receipt: impl FnOnce() -> ImportReceipt,
    ) -> Result<FinishedDownload, ResumeError> {
        let chunk_hashes = {
            let live = lock(&self.live);
            let verified = live.knowledge.verified().count_ones();
            let count = self.geometry.chunk_count();
            if verified != count {
                return Err(ResumeError::Incomplete {
                    missing: count - verified,
                    count,
                });
            }
            live.knowledge.verified_hashes()
        };
        let names = &self.paths.names;
        if self.dir.exists(&names.artifact) {
            return Err(ResumeError::ArtifactInTheWay {
                path: self.paths.artifact.clone(),
            });
        }
        self.storage
            .sync_data()
            .map_err(io_error("sync", &self.paths.part))?;
        let receipt = make_receipt();
        check_receipt(&receipt, &self.binding)?;
        let chunk_list = minimodel_verifier::chunk_list::list_text(&chunk_hashes, &self.geometry);
        self.dir
            .write_atomically(&names.chunk_list, chunk_list.as_bytes())?;
        let mut text = serde_json::to_vec_pretty(&receipt).unwrap_or_default();
        text.push(b'\n');
        self.dir.write_atomically(&names.receipt, &text)?;
        self.dir.rename(&names.part, &names.artifact)?;
        self.dir.sync()?;
        // The file as the checks leave it, after the rename (which sets its
        // status-change time): a later run tells from this stamp whether it
        // may have changed since. A crash before this write leaves the
        // receipt without a stamp, and the file is checked again.
        let mut receipt = receipt;
        receipt.file = self.dir.inspect(&names.artifact)?.map(|facts| facts.stamp);
        let mut text = serde_json::to_vec_pretty(&receipt).unwrap_or_default();
        text.push(b'\n');
        self.dir.write_atomically(&names.receipt, &text)?;
        lock(&self.live).journal = None;
        self.remove_files(&[
            &names.state,
            &names.previous,
            &names.journal,
            &names.journal_prev,
        ])?;
        // Delivered: nothing of the download changes any more, and a
        // recheck by another process may begin (what serves the file on
        // reads it only).
        lock(&self.held).take();
        Ok(FinishedDownload {
            artifact: self.paths.artifact.clone(),
            receipt_path: self.paths.receipt.clone(),
            receipt,
            storage: Arc::clone(&self.storage),
        })
    }

    /// Removes the download's `.part`, states and journals when not one
    /// chunk of it is verified (by this run or any before): a download
    /// that ends so holds the artifact's whole size on disk (the `.part`
    /// is reserved at full size) for nothing, and a rerun starts over as
    /// fast. The remembered peers stay. A finished file being repaired is
    /// never removed. Returns whether it removed them; the download must
    /// not be used after it did.
    pub fn discard_if_nothing_verified(&self) -> Result<bool, ResumeError> {
        let mut live = lock(&self.live);
        if !self.discardable || live.knowledge.verified().count_ones() > 0 {
            return Ok(false);
        }
        live.journal = None;
        let names = &self.paths.names;
        self.remove_files(&[
            &names.part,
            &names.state,
            &names.previous,
            &names.journal,
            &names.journal_prev,
        ])?;
        Ok(true)
    }

    /// Removes each of `names` that is there, then syncs the directory.
    fn remove_files(&self, names: &[&String]) -> Result<(), ResumeError> {
        for name in names {
            self.dir.remove_if_present(name)?;
        }
        self.dir.sync()
    }

    /// [`Self::finish_with`] a receipt made beforehand.
    pub fn finish(&self, receipt: &ImportReceipt) -> Result<FinishedDownload, ResumeError> {
        self.finish_with(|| receipt.clone())
    }
}

/// A receipt must describe the artifact of the download.
pub(crate) fn check_receipt(
    receipt: &ImportReceipt,
    binding: &StateBinding,
) -> Result<(), ResumeError> {
    let field = if receipt.format != RECEIPT_FORMAT {
        Some("format")
    } else {
        receipt_binding(receipt).first_difference(binding)
    };
    match field {
        Some(field) => Err(ResumeError::ReceiptMismatch { field }),
        None => Ok(()),
    }
}

/// What a receipt says the artifact is.
pub(crate) fn receipt_binding(receipt: &ImportReceipt) -> StateBinding {
    StateBinding {
        model_id: receipt.model_id.clone(),
        artifact_bytes: receipt.artifact_bytes,
        artifact_sha256: receipt.artifact_sha256,
        chunk_size: receipt.chunk_size,
        chunk_count: receipt.chunk_count,
        merkle_root: receipt.merkle_root,
        listed: None,
    }
}
