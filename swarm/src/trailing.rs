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

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::aligned::AlignedBuf;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex};
use minimodel_wire::HaveBitfield;
use sha2::{Digest, Sha256};

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

    /// Hashes the next chunk of the prefix if it is stored. Returns
    /// whether it hashed one.
    pub fn step(&mut self, storage: &dyn Storage) -> io::Result<bool> {
        if !self.stored.remove(&self.next) {
            return Ok(false);
        }
        let range = self
            .geometry
            .byte_range(ChunkIndex(self.next))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk out of range"))?;
        // One buffer for the whole run, sized at the first chunk (the
        // largest): a new chunk-sized allocation per read made the
        // allocator keep freed megabytes around.
        let block_len = READ_BLOCK.min((range.end - range.start) as usize);
        let buffer = self
            .read_buffer
            .get_or_insert_with(|| AlignedBuf::zeroed(block_len))
            .as_mut_slice();
        let mut offset = range.start;
        while offset < range.end {
            let len = buffer.len().min((range.end - offset) as usize);
            let block = &mut buffer[..len];
            storage.read_exact_at(offset, block)?;
            self.hasher.update(&*block);
            offset += len as u64;
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
        Ok(Sha256Digest(self.hasher.finalize().into()))
    }
}

/// A [`TrailingHasher`] on a thread of its own. It drains its inbox
/// (indices of stored chunks) between chunks, so taking in new chunks never
/// waits for hashing, and tells `progress` how many chunks it has hashed
/// after each one.
pub(crate) struct TrailingThread {
    sender: Option<mpsc::Sender<u32>>,
    thread: Option<JoinHandle<io::Result<Sha256Digest>>>,
}

impl TrailingThread {
    /// Starts hashing `storage` from its first chunk; `stored` marks the
    /// chunks already verified and on storage.
    pub(crate) fn start(
        geometry: ChunkGeometry,
        storage: Arc<dyn Storage>,
        stored: &HaveBitfield,
        progress: impl Fn(u32) + Send + 'static,
    ) -> Self {
        let (sender, inbox) = mpsc::channel::<u32>();
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
                        progress(hasher.hashed_chunks());
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
            thread,
        }
    }

    /// Chunk `chunk` is verified and written: it may be read back.
    pub(crate) fn stored(&mut self, chunk: u32) {
        if let Some(sender) = &self.sender {
            // The thread is gone only after a read error, which `finish`
            // reports.
            let _ = sender.send(chunk);
        }
    }

    /// Waits for the hasher to reach the end. Blocking.
    pub(crate) fn finish(mut self) -> io::Result<Sha256Digest> {
        drop(self.sender.take());
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("trailing hasher panicked"))?,
            None => Err(io::Error::other("trailing hasher could not start")),
        }
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
        let mut hasher = TrailingHasher::new(geometry);
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
    fn it_hashes_what_is_on_disk_not_what_was_meant_to_be() {
        let (_dir, storage, mut bytes, geometry) = setup(50_000, 16384);
        // A byte changed on disk after its chunk was verified.
        bytes[20_000] ^= 1;
        storage
            .write_all_at(20_000, &bytes[20_000..20_001])
            .unwrap();
        let mut hasher = TrailingHasher::new(geometry);
        for index in 0..geometry.chunk_count() {
            hasher.note_stored(index);
        }
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn chunks_larger_than_a_read_block_are_read_in_blocks() {
        let len = 3 * READ_BLOCK + 12_345;
        let (_dir, storage, bytes, geometry) = setup(len, 4 * READ_BLOCK as u32);
        let mut hasher = TrailingHasher::new(geometry);
        hasher.note_stored(0);
        assert!(hasher.step(&storage).unwrap());
        assert_eq!(
            hasher.read_buffer.as_ref().map(AlignedBuf::len),
            Some(READ_BLOCK)
        );
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn a_missing_chunk_is_named() {
        let (_dir, storage, _bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry);
        hasher.note_stored(0);
        hasher.note_stored(2);
        let error = hasher.finish(&storage).unwrap_err();
        assert!(error.to_string().contains("chunk 1 of 4"), "{error}");
    }

    #[test]
    fn forgotten_chunks_are_not_hashed() {
        let (_dir, storage, bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry);
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
