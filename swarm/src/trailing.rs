//! The trailing full-file hasher: SHA-256 of the artifact as it is on
//! disk, computed over the verified prefix while the download goes on, so
//! the end of a download is not followed by a long second pass over the
//! file.
//!
//! It never hashes the buffers that were written: each chunk of the prefix
//! is read back from storage once it is stored (through the page cache,
//! right behind the writer, so a read costs a copy, not a disk access) in
//! blocks of at most [`READ_BLOCK`] bytes into one reused buffer. A chunk
//! written at the wrong place, or bytes changed on disk after their chunk
//! was verified, therefore make the whole-file hash disagree with the
//! manifest, and the download is not delivered (`docs/resume.md`, "Bad
//! chunks found later").
//!
//! The thread also hashes arriving chunks for their proofs, side by side
//! with its own pass ([`minimodel_sha256x2`]): a verification job hands
//! it the chunk it must hash ([`LeafHasher`]) while the thread holds fewer
//! than [`LEAVES_HELD`], and the thread hashes each beside the next chunk
//! of the prefix read back, or beside the other one it holds. From one
//! peer a chunk arrives just after the one before it was stored, so nearly
//! every chunk of the pass finds a partner; a chunk that arrives ahead of
//! the prefix (from many peers, out of order) waits a little for a second
//! one. On a CPU that cannot hash two at once, every job hashes its own
//! chunk.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use minimodel_sha256x2::{Sha256, pairs_side_by_side, update_pair};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::aligned::AlignedBuf;
use minimodel_verifier::chunk::{ChunkData, ChunkGeometry, ChunkIndex};
use minimodel_wire::HaveBitfield;

use crate::resume::READ_BLOCK;
use crate::store::Storage;

/// SHA-256 of the verified prefix of an artifact, read from storage.
pub struct TrailingHasher {
    geometry: ChunkGeometry,
    hasher: Sha256,
    /// The first chunk not hashed yet.
    next: u32,
    /// Stored chunks at or ahead of `next`, not hashed yet.
    stored: BTreeSet<u32>,
    read_bytes: u64,
    /// Chunks of the prefix hashed side by side with a chunk for its
    /// proof.
    paired: u32,
    /// Pairs of chunks hashed side by side for their proofs.
    leaf_pairs: u32,
    /// Where chunks are read (none until the first read; on a cache line,
    /// which the kernel fills several times faster).
    read_buffer: Option<AlignedBuf>,
}

impl TrailingHasher {
    /// A hasher at the start of the artifact.
    pub fn new(geometry: ChunkGeometry) -> Self {
        Self {
            geometry,
            hasher: Sha256::new(),
            next: 0,
            stored: BTreeSet::new(),
            read_bytes: 0,
            paired: 0,
            leaf_pairs: 0,
            read_buffer: None,
        }
    }

    /// Chunks hashed so far (the prefix length in chunks).
    pub fn hashed_chunks(&self) -> u32 {
        self.next
    }

    /// Bytes read from storage so far.
    #[cfg(test)]
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Notes a chunk that is verified and on storage.
    pub fn note_stored(&mut self, index: u32) {
        if index >= self.next && index < self.geometry.chunk_count() {
            self.stored.insert(index);
        }
    }

    /// Forgets a chunk ahead of the prefix (it turned out bad and will be
    /// fetched again). Returns false when it was hashed already.
    #[cfg(test)]
    pub fn forget(&mut self, index: u32) -> bool {
        if index < self.next {
            return false;
        }
        self.stored.remove(&index);
        true
    }

    /// Whether the next chunk of the prefix is stored (a step would hash
    /// it).
    fn ready(&self) -> bool {
        self.stored.contains(&self.next)
    }

    /// Stored chunks in a row from the next one of the prefix, counted up
    /// to `most`.
    fn ready_in_a_row(&self, most: u32) -> u32 {
        let mut count = 0;
        for &index in self.stored.range(self.next..) {
            if count == most || index != self.next + count {
                break;
            }
            count += 1;
        }
        count
    }

    /// Hashes the next chunk of the prefix if it is stored. Returns
    /// whether it hashed one.
    pub fn step(&mut self, storage: &dyn Storage) -> io::Result<bool> {
        self.step_beside(storage, None)
    }

    /// [`TrailingHasher::step`], with `leaf`'s bytes hashed side by side
    /// with the chunk's as it is read back (those left over after it
    /// alone). Without a step, `leaf` is not touched.
    fn step_beside(&mut self, storage: &dyn Storage, leaf: Option<&mut Leaf>) -> io::Result<bool> {
        if !self.stored.remove(&self.next) {
            return Ok(false);
        }
        let range = self
            .geometry
            .byte_range(ChunkIndex(self.next))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk out of range"))?;
        // One buffer for the whole run, sized at the largest a chunk can
        // be (the chunk size, or the artifact when smaller): a new
        // chunk-sized allocation per read made the allocator keep freed
        // megabytes around. Not at the first chunk's length: a listed
        // artifact's first chunk is its 256-byte header, and every read
        // of the run was that long.
        let largest = u64::from(self.geometry.chunk_size()).min(self.geometry.artifact_bytes());
        let block_len = READ_BLOCK.min(usize::try_from(largest).unwrap_or(usize::MAX));
        let buffer = self
            .read_buffer
            .get_or_insert_with(|| AlignedBuf::zeroed(block_len))
            .as_mut_slice();
        let mut leaf = leaf.map(|leaf| (leaf, PartCursor::default()));
        let mut offset = range.start;
        while offset < range.end {
            let len = buffer.len().min((range.end - offset) as usize);
            let block = &mut buffer[..len];
            storage.read_exact_at(offset, block)?;
            match &mut leaf {
                Some((leaf, cursor)) => {
                    let parts = cursor.take(leaf.data.parts(), len);
                    update_pair(&mut leaf.sha256, parts, &mut self.hasher, [&*block]);
                }
                None => self.hasher.update(block),
            }
            offset += len as u64;
        }
        if let Some((leaf, mut cursor)) = leaf {
            for part in cursor.take(leaf.data.parts(), usize::MAX) {
                leaf.sha256.update(part);
            }
            self.paired += 1;
        }
        self.read_bytes += range.end - range.start;
        self.next += 1;
        Ok(true)
    }

    /// The SHA-256 of the whole artifact as read from storage, once every
    /// chunk was noted as stored. An error names the first chunk that is
    /// missing.
    pub fn finish(mut self, storage: &dyn Storage) -> io::Result<Sha256Digest> {
        while self.step(storage)? {}
        if self.next != self.geometry.chunk_count() {
            return Err(io::Error::other(format!(
                "full-file hash stopped at chunk {} of {}: it was never stored",
                self.next,
                self.geometry.chunk_count()
            )));
        }
        Ok(Sha256Digest(self.hasher.finalize()))
    }
}

/// A chunk hashed for its proof on the trailing thread.
struct Leaf {
    data: ChunkData,
    sha256: Sha256,
    /// Since when it has waited for a partner, once it has.
    waiting: Option<Instant>,
}

impl Leaf {
    fn new(data: ChunkData) -> Self {
        Self {
            data,
            sha256: Sha256::new(),
            waiting: None,
        }
    }

    fn digest(self) -> Sha256Digest {
        Sha256Digest(self.sha256.finalize())
    }
}

/// Where the next byte of a chunk's parts is.
#[derive(Default)]
struct PartCursor {
    part: usize,
    offset: usize,
}

impl PartCursor {
    /// The next `len` bytes of `parts` (fewer at their end), as slices.
    fn take<'a>(&mut self, parts: &'a [Bytes], mut len: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while len > 0 {
            let Some(part) = parts.get(self.part) else {
                break;
            };
            let rest = &part[self.offset..];
            let take = rest.len().min(len);
            out.push(&rest[..take]);
            len -= take;
            if take == rest.len() {
                self.part += 1;
                self.offset = 0;
            } else {
                self.offset += take;
            }
        }
        out
    }
}

/// The thread takes chunks to hash for their proofs while it holds fewer
/// than this: two in hand always pair. With more verification jobs than
/// this at once, the rest hash their own chunks, so the thread never holds
/// the jobs back by more than two chunks' hashing.
pub(crate) const LEAVES_HELD: usize = 2;

/// With more chunks than this in a row ready to hash, the thread hashes
/// without waiting for a partner (it is falling behind, or hashes a
/// resumed prefix).
const PAIR_WAIT_AHEAD: u32 = 2;

enum Work {
    /// A chunk verified and stored: it may be read back.
    Stored(u32),
    /// A chunk to hash for its proof; the digest goes back on `reply`.
    Leaf(ChunkData, mpsc::SyncSender<Sha256Digest>),
    /// Hash what is left and end.
    Finish,
}

/// Chunks of the file's pass hashed beside a chunk for its proof, and
/// pairs of chunks for their proofs hashed side by side.
type Pairs = (u32, u32);

/// A [`TrailingHasher`] on a thread of its own. It drains its inbox
/// (indices of stored chunks, chunks to hash for their proofs) between
/// chunks, so taking in new chunks never waits for hashing, and tells
/// `progress` how many chunks it has hashed after each one.
pub(crate) struct TrailingThread {
    sender: mpsc::Sender<Work>,
    /// Chunks handed to the thread for their proofs and not answered yet.
    held: Arc<AtomicUsize>,
    thread: Option<JoinHandle<io::Result<(Sha256Digest, Pairs)>>>,
}

impl TrailingThread {
    /// Starts hashing `storage` from its first chunk; `stored` marks the
    /// chunks already verified and on storage.
    pub(crate) fn start(
        geometry: ChunkGeometry,
        storage: Arc<dyn Storage>,
        stored: &HaveBitfield,
        pair_wait: Duration,
        progress: impl Fn(u32) + Send + 'static,
    ) -> Self {
        let (sender, inbox) = mpsc::channel::<Work>();
        let resumed: Vec<u32> = stored.iter_ones().map(|c| c.0).collect();
        let thread = {
            std::thread::Builder::new()
                .name("trailing-sha256".into())
                .spawn(move || {
                    let mut hasher = TrailingHasher::new(geometry);
                    for chunk in resumed {
                        hasher.note_stored(chunk);
                    }
                    let ran = run(&mut hasher, storage.as_ref(), &inbox, pair_wait, progress);
                    // A chunk sent for its proof after the end gets no
                    // answer: its job hashes it itself, now.
                    drop(inbox);
                    ran?;
                    let counts = (hasher.paired, hasher.leaf_pairs);
                    Ok((hasher.finish(storage.as_ref())?, counts))
                })
                .ok()
        };
        Self {
            sender,
            held: Arc::new(AtomicUsize::new(0)),
            thread,
        }
    }

    /// Chunk `chunk` is verified and written: it may be read back.
    pub(crate) fn stored(&mut self, chunk: u32) {
        // The thread is gone only after a read error, which `finish`
        // reports.
        let _ = self.sender.send(Work::Stored(chunk));
    }

    /// A handle for verification jobs: it hashes a chunk on this thread
    /// when the thread asks for a partner.
    pub(crate) fn leaf_hasher(&self) -> LeafHasher {
        LeafHasher {
            sender: self.sender.clone(),
            held: Arc::clone(&self.held),
        }
    }

    /// Waits for the hasher to reach the end. Blocking.
    pub(crate) fn finish(self) -> io::Result<Sha256Digest> {
        self.finish_counted().map(|(sha256, _)| sha256)
    }

    /// [`TrailingThread::finish`], with how many chunks of the file's pass
    /// were hashed beside a chunk checked for its proof, and how many pairs
    /// of chunks checked for their proofs were hashed side by side.
    fn finish_counted(mut self) -> io::Result<(Sha256Digest, Pairs)> {
        let _ = self.sender.send(Work::Finish);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("trailing hasher panicked"))?,
            None => Err(io::Error::other("trailing hasher could not start")),
        }
    }
}

impl Drop for TrailingThread {
    fn drop(&mut self) {
        // Not finished (a restart, a failed download): the thread ends
        // once what it holds is hashed. Nothing waits for it.
        if self.thread.is_some() {
            let _ = self.sender.send(Work::Finish);
        }
    }
}

/// What the thread does with the first chunk it holds for a proof.
#[derive(Debug, PartialEq, Eq)]
enum LeafStep {
    /// Hash it beside the next chunk of the prefix, which is stored.
    BesidePrefix,
    /// Hash it beside the next chunk it holds for a proof.
    BesideLeaf,
    /// Wait at most this long for either to come (chunks that arrive out
    /// of order leave the prefix behind them for a while).
    Wait(Duration),
    /// Hash it alone.
    Alone,
}

/// The step for a chunk held for its proof: `ready`, the next chunk of
/// the prefix is stored; `another`, a second chunk for a proof is held;
/// `waited`, how long this one has waited for a partner so far. It waits
/// `pair_wait` in all, never once the thread is finishing.
fn leaf_step(
    ready: bool,
    another: bool,
    waited: Duration,
    pair_wait: Duration,
    finishing: bool,
) -> LeafStep {
    let left = pair_wait.saturating_sub(waited);
    if ready {
        LeafStep::BesidePrefix
    } else if another {
        LeafStep::BesideLeaf
    } else if finishing || left.is_zero() {
        LeafStep::Alone
    } else {
        LeafStep::Wait(left)
    }
}

/// The trailing thread's loop, until it is told to finish (or everything
/// that could tell it is gone).
fn run(
    hasher: &mut TrailingHasher,
    storage: &dyn Storage,
    inbox: &mpsc::Receiver<Work>,
    pair_wait: Duration,
    progress: impl Fn(u32),
) -> io::Result<()> {
    let mut leaves: VecDeque<(Leaf, mpsc::SyncSender<Sha256Digest>)> = VecDeque::new();
    let mut finishing = false;
    // The chunk of the prefix held for a partner, and since when.
    let mut held: Option<(u32, Instant)> = None;
    let take = |work: Work, hasher: &mut TrailingHasher, leaves: &mut VecDeque<_>| match work {
        Work::Stored(chunk) => {
            hasher.note_stored(chunk);
            false
        }
        Work::Leaf(data, reply) => {
            leaves.push_back((Leaf::new(data), reply));
            false
        }
        Work::Finish => true,
    };
    loop {
        while !finishing {
            match inbox.try_recv() {
                Ok(work) => finishing = take(work, hasher, &mut leaves),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => finishing = true,
            }
        }
        if let Some((mut leaf, reply)) = leaves.pop_front() {
            let waited = leaf.waiting.map_or(Duration::ZERO, |since| since.elapsed());
            match leaf_step(
                hasher.ready(),
                !leaves.is_empty(),
                waited,
                pair_wait,
                finishing,
            ) {
                LeafStep::BesidePrefix => {
                    hasher.step_beside(storage, Some(&mut leaf))?;
                    progress(hasher.hashed_chunks());
                }
                LeafStep::BesideLeaf => {
                    if let Some((mut other, other_reply)) = leaves.pop_front() {
                        update_pair(
                            &mut leaf.sha256,
                            leaf.data.parts().iter().map(|part| &part[..]),
                            &mut other.sha256,
                            other.data.parts().iter().map(|part| &part[..]),
                        );
                        let _ = other_reply.send(other.digest());
                        hasher.leaf_pairs += 1;
                    }
                }
                LeafStep::Wait(left) => {
                    leaf.waiting.get_or_insert_with(Instant::now);
                    let got = inbox.recv_timeout(left);
                    leaves.push_front((leaf, reply));
                    match got {
                        Ok(work) => finishing = take(work, hasher, &mut leaves),
                        Err(mpsc::RecvTimeoutError::Disconnected) => finishing = true,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    continue;
                }
                LeafStep::Alone => {
                    let _ = reply.send(leaf.data.sha256());
                    continue;
                }
            }
            let _ = reply.send(leaf.digest());
            continue;
        }
        if finishing {
            while hasher.step(storage)? {
                progress(hasher.hashed_chunks());
            }
            return Ok(());
        }
        if hasher.ready() {
            // How long the next chunk has been held for a partner so far:
            // the wait is the chunk's, whatever arrives meanwhile.
            let since = match held {
                Some((chunk, since)) if chunk == hasher.next => since,
                _ => held.insert((hasher.next, Instant::now())).1,
            };
            let left = pair_wait.saturating_sub(since.elapsed());
            if !left.is_zero()
                && hasher.ready_in_a_row(PAIR_WAIT_AHEAD + 1) <= PAIR_WAIT_AHEAD
                && pairs_side_by_side()
            {
                match inbox.recv_timeout(left) {
                    Ok(work) => finishing = take(work, hasher, &mut leaves),
                    Err(mpsc::RecvTimeoutError::Disconnected) => finishing = true,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if hasher.step(storage)? {
                            progress(hasher.hashed_chunks());
                        }
                    }
                }
                continue;
            }
            if hasher.step(storage)? {
                progress(hasher.hashed_chunks());
            }
            continue;
        }
        match inbox.recv() {
            Ok(work) => finishing = take(work, hasher, &mut leaves),
            Err(mpsc::RecvError) => finishing = true,
        }
    }
}

/// Hashes chunks for their proofs on the trailing thread while it holds
/// fewer than [`LEAVES_HELD`] (its pass then hashes them side by side with
/// the file's chunks or with each other), and here otherwise.
#[derive(Clone)]
pub(crate) struct LeafHasher {
    sender: mpsc::Sender<Work>,
    held: Arc<AtomicUsize>,
}

impl LeafHasher {
    /// The SHA-256 of `data`.
    pub(crate) fn sha256(&self, data: &ChunkData) -> Sha256Digest {
        // Counted before it is sent, so that two jobs at once cannot both
        // see room for one.
        let before = self.held.fetch_add(1, Ordering::AcqRel);
        let mut digest = None;
        if before < LEAVES_HELD && pairs_side_by_side() {
            let (reply, answer) = mpsc::sync_channel(1);
            // A thread that ended (or ends before it answers) drops the
            // reply: the chunk is then hashed here.
            if self.sender.send(Work::Leaf(data.clone(), reply)).is_ok() {
                digest = answer.recv().ok();
            }
        }
        self.held.fetch_sub(1, Ordering::AcqRel);
        digest.unwrap_or_else(|| data.sha256())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStorage;

    fn setup(len: usize, chunk: u32) -> (tempfile::TempDir, FileStorage, Vec<u8>, ChunkGeometry) {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open_sized(&dir.path().join("x.part"), len as u64).unwrap();
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        storage.write_all_at(0, &bytes).unwrap();
        (
            dir,
            storage,
            bytes,
            ChunkGeometry::new(len as u64, chunk).unwrap(),
        )
    }

    #[test]
    fn the_prefix_is_hashed_from_storage_in_order() {
        let (_dir, storage, bytes, geometry) = setup(100_000, 16384);
        let mut hasher = TrailingHasher::new(geometry.clone());
        for index in [6, 5, 4, 3, 2, 1] {
            hasher.note_stored(index);
            assert!(!hasher.step(&storage).unwrap());
        }
        hasher.note_stored(0);
        while hasher.step(&storage).unwrap() {}
        assert_eq!(hasher.hashed_chunks(), 7);
        assert_eq!(hasher.read_bytes(), 100_000);
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn a_listed_artifact_is_read_back_in_blocks_of_its_chunk_size_not_its_first_chunks() {
        // Cut at parts: a 256-byte header first, then chunks of up to
        // 64 KiB. Each read is of a whole chunk (up to READ_BLOCK), not of
        // the header's 256 bytes.
        struct Counting<'a>(&'a FileStorage, std::sync::atomic::AtomicUsize);
        impl Storage for Counting<'_> {
            fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
                self.0.write_all_at(offset, bytes)
            }
            fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.read_exact_at(offset, buf)
            }
            fn sync_data(&self) -> io::Result<()> {
                Ok(())
            }
        }
        let lengths = [256u64, 65_536, 65_536, 1_000, 65_536, 65_536, 30_000];
        let len: u64 = lengths.iter().sum();
        let (_dir, storage, bytes, _) = setup(len as usize, 65_536);
        let geometry = ChunkGeometry::listed(len, 65_536, lengths).unwrap();
        let counting = Counting(&storage, Default::default());
        let mut hasher = TrailingHasher::new(geometry);
        for index in 0..lengths.len() as u32 {
            hasher.note_stored(index);
        }
        assert_eq!(hasher.finish(&counting).unwrap(), Sha256Digest::of(&bytes));
        assert_eq!(
            counting.1.load(std::sync::atomic::Ordering::Relaxed),
            lengths.len(),
            "one read a chunk"
        );
    }

    #[test]
    fn it_hashes_what_is_on_disk_not_what_was_meant_to_be() {
        let (_dir, storage, mut bytes, geometry) = setup(50_000, 16384);
        // A byte changed on disk after its chunk was verified.
        bytes[20_000] ^= 1;
        storage
            .write_all_at(20_000, &bytes[20_000..20_001])
            .unwrap();
        let mut hasher = TrailingHasher::new(geometry.clone());
        for index in 0..geometry.chunk_count() {
            hasher.note_stored(index);
        }
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn chunks_larger_than_a_read_block_are_read_in_blocks() {
        let len = 3 * READ_BLOCK + 12_345;
        let (_dir, storage, bytes, geometry) = setup(len, 4 * READ_BLOCK as u32);
        let mut hasher = TrailingHasher::new(geometry.clone());
        hasher.note_stored(0);
        assert!(hasher.step(&storage).unwrap());
        assert_eq!(
            hasher.read_buffer.as_ref().map(AlignedBuf::len),
            Some(READ_BLOCK)
        );
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    /// A thread over a file of `len` bytes in chunks of `chunk`, none of
    /// them stored yet, that waits for partners far longer than any test:
    /// what pairs does not depend on how fast this machine runs it.
    fn started(
        len: usize,
        chunk: u32,
    ) -> (tempfile::TempDir, Vec<u8>, ChunkGeometry, TrailingThread) {
        let (dir, storage, bytes, geometry) = setup(len, chunk);
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let none = HaveBitfield::new(geometry.chunk_count());
        let wait = Duration::from_secs(600);
        let thread = TrailingThread::start(geometry.clone(), storage, &none, wait, |_| {});
        (dir, bytes, geometry, thread)
    }

    fn parted(bytes: &[u8], part: usize) -> ChunkData {
        let mut data = ChunkData::new();
        for piece in bytes.chunks(part) {
            data.push(Bytes::copy_from_slice(piece));
        }
        data
    }

    #[test]
    fn a_chunk_hashed_beside_the_pass_gets_its_own_digest() {
        // Chunks larger than a read block: the leaf's parts are split
        // across the blocks read back.
        let len = 2 * READ_BLOCK + 5000;
        let (_dir, storage, bytes, geometry) = setup(len, 2 * READ_BLOCK as u32);
        let mut hasher = TrailingHasher::new(geometry.clone());
        hasher.note_stored(0);
        // Longer than the chunk read back, in parts of a packet's size.
        let other: Vec<u8> = bytes.iter().rev().copied().chain([1, 2, 3]).collect();
        let mut leaf = Leaf::new(parted(&other, 1452));
        assert!(hasher.step_beside(&storage, Some(&mut leaf)).unwrap());
        assert_eq!(leaf.digest(), Sha256Digest::of(&other));
        // Shorter than the chunk, beside the last one.
        let short = b"a short chunk".repeat(100);
        let mut leaf = Leaf::new(parted(&short, 77));
        assert!(!hasher.step_beside(&storage, Some(&mut leaf)).unwrap());
        assert!(leaf.sha256.is_empty(), "no step, nothing hashed");
        hasher.note_stored(1);
        assert!(hasher.step_beside(&storage, Some(&mut leaf)).unwrap());
        assert_eq!(leaf.digest(), Sha256Digest::of(&short));
        assert_eq!(hasher.paired, 2);
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn verification_jobs_hand_their_chunks_to_the_thread() {
        let chunk = 16384;
        let (_dir, bytes, _, mut thread) = started(8 * chunk, chunk as u32);
        let leaves = thread.leaf_hasher();
        // Chunk 0 is stored; chunk 1 arrives: its hash goes beside chunk
        // 0's read-back when this CPU can do both at once.
        for index in 0..8 {
            thread.stored(index);
            if index == 7 {
                break;
            }
            let next = &bytes[(index as usize + 1) * chunk..][..chunk];
            assert_eq!(leaves.sha256(&parted(next, 1452)), Sha256Digest::of(next));
            assert_eq!(thread.held.load(Ordering::Acquire), 0);
        }
        drop(leaves);
        let (sha256, (paired, _)) = thread.finish_counted().unwrap();
        assert_eq!(sha256, Sha256Digest::of(&bytes));
        if pairs_side_by_side() {
            assert_eq!(paired, 7, "every chunk but the last beside the next");
        } else {
            assert_eq!(paired, 0, "a CPU that cannot pair is never handed a chunk");
        }
    }

    #[test]
    fn a_chunk_for_a_proof_waits_for_a_partner_only_so_long() {
        let wait = Duration::from_millis(10);
        let ms = Duration::from_millis;
        assert_eq!(
            leaf_step(true, true, ms(0), wait, false),
            LeafStep::BesidePrefix
        );
        assert_eq!(
            leaf_step(false, true, ms(0), wait, false),
            LeafStep::BesideLeaf
        );
        assert_eq!(
            leaf_step(false, false, ms(0), wait, false),
            LeafStep::Wait(ms(10))
        );
        assert_eq!(
            leaf_step(false, false, ms(4), wait, false),
            LeafStep::Wait(ms(6))
        );
        assert_eq!(
            leaf_step(false, false, ms(10), wait, false),
            LeafStep::Alone
        );
        assert_eq!(
            leaf_step(false, false, ms(0), wait, true),
            LeafStep::Alone,
            "finishing"
        );
        assert_eq!(
            leaf_step(false, false, ms(0), Duration::ZERO, false),
            LeafStep::Alone
        );
        // Once ready or partnered, however long it waited.
        assert_eq!(
            leaf_step(true, false, ms(50), wait, true),
            LeafStep::BesidePrefix
        );
        assert_eq!(
            leaf_step(false, true, ms(50), wait, true),
            LeafStep::BesideLeaf
        );
    }

    #[test]
    fn a_chunk_ahead_of_the_prefix_waits_for_a_partner() {
        let chunk = 16384;
        // The first chunk is held until the second comes, however slowly
        // this machine runs it.
        let (_dir, bytes, _, thread) = started(4 * chunk, chunk as u32);
        // Chunks 2 and 3 arrive while chunk 0, the prefix, is missing.
        let first = thread.leaf_hasher();
        let third = bytes[2 * chunk..][..chunk].to_vec();
        let job = std::thread::spawn(move || first.sha256(&parted(&third, 1452)));
        // On a CPU that cannot pair, the job hashes its chunk itself.
        let start = std::time::Instant::now();
        while pairs_side_by_side() && thread.held.load(Ordering::Acquire) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the first chunk was not held for a partner"
            );
            std::thread::yield_now();
        }
        let fourth = &bytes[3 * chunk..];
        let leaves = thread.leaf_hasher();
        assert_eq!(
            leaves.sha256(&parted(fourth, 1000)),
            Sha256Digest::of(fourth)
        );
        assert_eq!(
            job.join().unwrap(),
            Sha256Digest::of(&bytes[2 * chunk..][..chunk])
        );
        drop(leaves);
        let mut thread = thread;
        for index in 0..4 {
            thread.stored(index);
        }
        let (sha256, (_, leaf_pairs)) = thread.finish_counted().unwrap();
        assert_eq!(sha256, Sha256Digest::of(&bytes));
        if pairs_side_by_side() {
            assert_eq!(leaf_pairs, 1, "the two chunks were hashed side by side");
        } else {
            assert_eq!(leaf_pairs, 0);
        }
    }

    #[test]
    fn a_job_hashes_its_own_chunk_while_the_thread_holds_enough() {
        let chunk = 16384;
        let (_dir, bytes, _, mut thread) = started(2 * chunk, chunk as u32);
        let leaves = thread.leaf_hasher();
        thread.stored(0);
        // As if other jobs had handed it as many as it takes.
        thread.held.store(LEAVES_HELD, Ordering::Release);
        let next = &bytes[chunk..];
        assert_eq!(leaves.sha256(&parted(next, 1000)), Sha256Digest::of(next));
        assert_eq!(thread.held.load(Ordering::Acquire), LEAVES_HELD);
        thread.held.store(0, Ordering::Release);
        thread.stored(1);
        let (sha256, (paired, _)) = thread.finish_counted().unwrap();
        assert_eq!(sha256, Sha256Digest::of(&bytes));
        assert_eq!(paired, 0, "the thread was handed nothing");
    }

    #[test]
    fn every_chunk_hashed_is_reported_also_after_the_end_is_asked_for() {
        let (_dir, storage, bytes, geometry) = setup(8 * 16384, 16384);
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let none = HaveBitfield::new(geometry.chunk_count());
        let (sender, reports) = mpsc::channel();
        let wait = Duration::from_secs(600);
        let mut thread =
            TrailingThread::start(geometry.clone(), storage, &none, wait, move |hashed| {
                let _ = sender.send(hashed);
            });
        for index in 0..geometry.chunk_count() {
            thread.stored(index);
        }
        // The last chunks may be held for a partner when the end comes.
        let (sha256, (paired, _)) = thread.finish_counted().unwrap();
        assert_eq!(sha256, Sha256Digest::of(&bytes));
        assert_eq!(paired, 0);
        assert_eq!(
            reports.try_iter().collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_resumed_prefix_is_hashed_without_waiting_for_partners() {
        let (_dir, storage, bytes, geometry) = setup(8 * 16384, 16384);
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let mut resumed = HaveBitfield::new(geometry.chunk_count());
        for index in 0..geometry.chunk_count() {
            resumed
                .set(minimodel_wire::ChunkIndex(index), true)
                .unwrap();
        }
        let (sender, reports) = mpsc::channel();
        // A wait far longer than the test: a chunk held for a partner
        // would stop the reports.
        let wait = Duration::from_secs(600);
        let thread =
            TrailingThread::start(geometry.clone(), storage, &resumed, wait, move |hashed| {
                let _ = sender.send(hashed);
            });
        // Only with two left in a row may the thread hold one back.
        let ahead = geometry.chunk_count() - PAIR_WAIT_AHEAD;
        for expected in 1..=ahead {
            let hashed = reports
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("chunk {expected} was held back"));
            assert_eq!(hashed, expected);
        }
        assert_eq!(thread.finish().unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn a_chunk_handed_over_after_the_thread_ended_is_hashed_by_the_job() {
        let (_dir, bytes, geometry, mut thread) = started(50_000, 16384);
        for index in 0..geometry.chunk_count() {
            thread.stored(index);
        }
        let leaves = thread.leaf_hasher();
        let held = Arc::clone(&thread.held);
        assert_eq!(thread.finish().unwrap(), Sha256Digest::of(&bytes));
        // The thread is gone: the job must not wait for it.
        let data = parted(&bytes[..16384], 1000);
        assert_eq!(leaves.sha256(&data), Sha256Digest::of(&bytes[..16384]));
        assert_eq!(held.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_missing_chunk_is_named() {
        let (_dir, storage, _bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry.clone());
        hasher.note_stored(0);
        hasher.note_stored(2);
        let error = hasher.finish(&storage).unwrap_err();
        assert!(error.to_string().contains("chunk 1 of 4"), "{error}");
    }

    #[test]
    fn forgotten_chunks_are_not_hashed() {
        let (_dir, storage, bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry.clone());
        hasher.note_stored(1);
        assert!(hasher.forget(1));
        hasher.note_stored(0);
        while hasher.step(&storage).unwrap() {}
        assert_eq!(hasher.hashed_chunks(), 1, "chunk 1 waits for its good copy");
        assert!(!hasher.forget(0), "chunk 0 is hashed already");
        for index in 1..4 {
            hasher.note_stored(index);
        }
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }
}
