//! The trailing full-file hasher: SHA-256 of the artifact, computed over
//! the verified prefix while the download goes on, so the end of a download
//! is not followed by a long second pass over the file.
//!
//! Verified chunks are offered as they are stored. A chunk that extends the
//! prefix is hashed from the bytes in hand (no copy, no read). One that
//! arrives ahead of the prefix is kept in memory while the buffer has room
//! ([`TrailingHasher::new`]'s `max_buffered`), otherwise only noted; when
//! the prefix reaches a noted chunk it is read back from storage (the page
//! cache, usually). Chunks verified in an earlier run are noted the same
//! way, so a resumed download hashes them from disk as the prefix passes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkData, ChunkGeometry, ChunkIndex};
use sha2::{Digest, Sha256};

use crate::store::Storage;

/// SHA-256 of the verified prefix of an artifact.
pub struct TrailingHasher {
    geometry: ChunkGeometry,
    hasher: Sha256,
    /// The first chunk not hashed yet.
    next: u32,
    buffered: BTreeMap<u32, ChunkData>,
    buffered_bytes: usize,
    max_buffered: usize,
    /// Verified chunks ahead of the prefix that are only on storage.
    on_storage: BTreeSet<u32>,
    read_back_bytes: u64,
    /// Where chunks are read back (empty until the first read).
    read_buffer: Vec<u8>,
}

impl TrailingHasher {
    /// A hasher at the start of the artifact that keeps at most
    /// `max_buffered` bytes of out-of-order chunks in memory.
    pub fn new(geometry: ChunkGeometry, max_buffered: usize) -> Self {
        Self {
            geometry,
            hasher: Sha256::new(),
            next: 0,
            buffered: BTreeMap::new(),
            buffered_bytes: 0,
            max_buffered,
            on_storage: BTreeSet::new(),
            read_back_bytes: 0,
            read_buffer: Vec::new(),
        }
    }

    /// Chunks hashed so far (the prefix length in chunks).
    pub fn hashed_chunks(&self) -> u32 {
        self.next
    }

    /// Bytes of chunks kept in memory until their turn.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Bytes that had to be read back from storage.
    pub fn read_back_bytes(&self) -> u64 {
        self.read_back_bytes
    }

    /// Takes a stored chunk without hashing anything yet: its bytes are
    /// kept while the buffer has room (whether or not it continues the
    /// prefix), otherwise it is only noted and read back when its turn
    /// comes. [`TrailingHasher::step`] does the hashing, one chunk at a time.
    pub fn accept(&mut self, index: u32, data: &ChunkData) {
        if index < self.next || self.buffered.contains_key(&index) {
            return;
        }
        if self.buffered_bytes + data.len() <= self.max_buffered {
            self.buffered_bytes += data.len();
            self.buffered.insert(index, data.clone());
            self.on_storage.remove(&index);
        } else {
            self.on_storage.insert(index);
        }
    }

    /// Hashes the next chunk of the prefix if it is here (in memory or on
    /// storage). Returns whether it hashed one.
    pub fn step(&mut self, storage: &dyn Storage) -> io::Result<bool> {
        if let Some(data) = self.buffered.remove(&self.next) {
            self.buffered_bytes -= data.len();
            self.hash(&data);
            return Ok(true);
        }
        if self.on_storage.remove(&self.next) {
            self.hash_from_storage(storage)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Notes a chunk that is verified and on storage, without its bytes.
    pub fn note_stored(&mut self, index: u32) {
        if index >= self.next {
            self.on_storage.insert(index);
        }
    }

    /// Offers a chunk that was verified and stored, with its bytes, and
    /// hashes as far as the prefix now reaches.
    pub fn offer(&mut self, index: u32, data: &ChunkData, storage: &dyn Storage) -> io::Result<()> {
        if index < self.next {
            return Ok(());
        }
        if index == self.next {
            self.hash(data);
            return self.advance(storage);
        }
        if self.buffered_bytes + data.len() <= self.max_buffered {
            if !self.buffered.contains_key(&index) {
                self.buffered_bytes += data.len();
                self.buffered.insert(index, data.clone());
            }
        } else {
            self.on_storage.insert(index);
        }
        Ok(())
    }

    /// Forgets a chunk ahead of the prefix (it turned out bad and will be
    /// fetched again). Returns false when it was hashed already.
    pub fn forget(&mut self, index: u32) -> bool {
        if index < self.next {
            return false;
        }
        if let Some(data) = self.buffered.remove(&index) {
            self.buffered_bytes -= data.len();
        }
        self.on_storage.remove(&index);
        true
    }

    /// Reads the next chunk back into the one buffer kept for that (a new
    /// chunk-sized allocation per read made the allocator keep freed
    /// megabytes around) and hashes it.
    fn hash_from_storage(&mut self, storage: &dyn Storage) -> io::Result<()> {
        let range = self
            .geometry
            .byte_range(ChunkIndex(self.next))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk out of range"))?;
        let len = (range.end - range.start) as usize;
        self.read_buffer.resize(len, 0);
        storage.read_exact_at(range.start, &mut self.read_buffer)?;
        self.hasher.update(&self.read_buffer);
        self.read_back_bytes += len as u64;
        self.next += 1;
        Ok(())
    }

    fn hash(&mut self, data: &ChunkData) {
        for part in data.parts() {
            self.hasher.update(part);
        }
        self.next += 1;
    }

    /// Hashes every chunk that now continues the prefix.
    fn advance(&mut self, storage: &dyn Storage) -> io::Result<()> {
        loop {
            if let Some(data) = self.buffered.remove(&self.next) {
                self.buffered_bytes -= data.len();
                self.hash(&data);
            } else if self.on_storage.remove(&self.next) {
                self.hash_from_storage(storage)?;
            } else {
                return Ok(());
            }
        }
    }

    /// The SHA-256 of the whole artifact, once every chunk was offered or
    /// noted; reads what is still only on storage. An error names the
    /// first chunk that is missing.
    pub fn finish(mut self, storage: &dyn Storage) -> io::Result<Sha256Digest> {
        self.advance(storage)?;
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

    fn data(bytes: &[u8], geometry: &ChunkGeometry, index: u32) -> ChunkData {
        let range = geometry.byte_range(ChunkIndex(index)).unwrap();
        ChunkData::from(bytes[range.start as usize..range.end as usize].to_vec())
    }

    #[test]
    fn in_order_chunks_are_hashed_without_reading_back() {
        let (_dir, storage, bytes, geometry) = setup(100_000, 16384);
        let mut hasher = TrailingHasher::new(geometry, 0);
        for index in 0..geometry.chunk_count() {
            hasher
                .offer(index, &data(&bytes, &geometry, index), &storage)
                .unwrap();
        }
        assert_eq!(hasher.hashed_chunks(), geometry.chunk_count());
        assert_eq!(hasher.read_back_bytes(), 0);
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn out_of_order_chunks_are_buffered_or_read_back() {
        let (_dir, storage, bytes, geometry) = setup(100_000, 16384);
        // Room for one chunk: 6 arrives first and is kept, 5 does not fit.
        let mut hasher = TrailingHasher::new(geometry, 16384);
        for index in [6, 5, 4, 3, 2, 1] {
            hasher
                .offer(index, &data(&bytes, &geometry, index), &storage)
                .unwrap();
            assert_eq!(hasher.hashed_chunks(), 0);
        }
        hasher
            .offer(0, &data(&bytes, &geometry, 0), &storage)
            .unwrap();
        assert_eq!(hasher.hashed_chunks(), 7);
        assert_eq!(
            hasher.read_back_bytes(),
            5 * 16384,
            "chunks 1..=5 came from storage"
        );
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn resumed_chunks_are_read_from_storage() {
        let (_dir, storage, bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry, 1 << 20);
        hasher.note_stored(0);
        hasher.note_stored(2);
        hasher
            .offer(1, &data(&bytes, &geometry, 1), &storage)
            .unwrap();
        assert_eq!(hasher.hashed_chunks(), 0);
        hasher
            .offer(3, &data(&bytes, &geometry, 3), &storage)
            .unwrap();
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn a_missing_chunk_is_named() {
        let (_dir, storage, bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry, 1 << 20);
        hasher
            .offer(0, &data(&bytes, &geometry, 0), &storage)
            .unwrap();
        hasher
            .offer(2, &data(&bytes, &geometry, 2), &storage)
            .unwrap();
        let error = hasher.finish(&storage).unwrap_err();
        assert!(error.to_string().contains("chunk 1 of 4"), "{error}");
    }

    #[test]
    fn accept_and_step_hash_the_prefix_one_chunk_at_a_time() {
        let (_dir, storage, bytes, geometry) = setup(100_000, 16384);
        let mut hasher = TrailingHasher::new(geometry, 2 * 16384);
        for index in [1, 0, 3, 2] {
            hasher.accept(index, &data(&bytes, &geometry, index));
        }
        // 1 and 0 fit in the buffer; 3 and 2 are only noted.
        assert!(hasher.step(&storage).unwrap());
        assert_eq!(hasher.hashed_chunks(), 1);
        while hasher.step(&storage).unwrap() {}
        assert_eq!(hasher.hashed_chunks(), 4);
        assert_eq!(hasher.read_back_bytes(), 2 * 16384);
        assert!(!hasher.step(&storage).unwrap(), "chunk 4 is not here yet");
        for index in 4..geometry.chunk_count() {
            hasher.accept(index, &data(&bytes, &geometry, index));
        }
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }

    #[test]
    fn forgotten_chunks_are_not_hashed() {
        let (_dir, storage, bytes, geometry) = setup(50_000, 16384);
        let mut hasher = TrailingHasher::new(geometry, 1 << 20);
        let mut wrong = data(&bytes, &geometry, 1).to_contiguous().to_vec();
        wrong[0] ^= 1;
        hasher.offer(1, &ChunkData::from(wrong), &storage).unwrap();
        assert!(hasher.forget(1));
        hasher
            .offer(0, &data(&bytes, &geometry, 0), &storage)
            .unwrap();
        assert_eq!(hasher.hashed_chunks(), 1, "chunk 1 waits for its good copy");
        for index in 1..4 {
            hasher
                .offer(index, &data(&bytes, &geometry, index), &storage)
                .unwrap();
        }
        assert_eq!(hasher.finish(&storage).unwrap(), Sha256Digest::of(&bytes));
    }
}
