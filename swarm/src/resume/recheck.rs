//! Rehashing chunks on disk: on every core, with one buffer of at most
//! [`READ_BLOCK`] bytes per thread whatever the chunk size, and progress
//! reported from the calling thread.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::aligned::AlignedBuf;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex};
use minimodel_wire::HaveBitfield;
use sha2::{Digest, Sha256};

use crate::store::Storage;
use minimodel_node::picker::SplitMix64;

/// Bytes read at a time by each hashing thread.
pub const READ_BLOCK: usize = 1 << 20;

/// How far a recheck has come; given to the progress callback after each
/// chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecheckProgress {
    /// Chunks hashed so far.
    pub chunks_done: u32,
    /// Chunks to hash.
    pub chunks_total: u32,
    /// Bytes hashed so far.
    pub bytes_done: u64,
    /// Bytes to hash.
    pub bytes_total: u64,
}

/// Hashes chunks `indices` of `storage`; the hashes come back in the order
/// of `indices`. Stops at the first read error and returns it.
pub fn hash_chunks(
    storage: &dyn Storage,
    geometry: &ChunkGeometry,
    indices: &[u32],
    progress: &dyn Fn(RecheckProgress),
) -> io::Result<Vec<Sha256Digest>> {
    let mut ranges = Vec::with_capacity(indices.len());
    for &index in indices {
        let range = geometry.byte_range(ChunkIndex(index)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("chunk {index} is out of range"),
            )
        })?;
        ranges.push(range);
    }
    let bytes_total: u64 = ranges.iter().map(|range| range.end - range.start).sum();
    let chunks_total = indices.len() as u32;
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(indices.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut hashes = vec![Sha256Digest::default(); indices.len()];
    std::thread::scope(|scope| {
        let (results, inbox) = mpsc::channel::<(usize, io::Result<Sha256Digest>)>();
        for _ in 0..threads {
            let results = results.clone();
            let (next, stop, ranges) = (&next, &stop, &ranges);
            scope.spawn(move || {
                let mut buf = AlignedBuf::zeroed(READ_BLOCK.min(geometry.chunk_size() as usize));
                while !stop.load(Ordering::Relaxed) {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(range) = ranges.get(slot) else { break };
                    let result = hash_range(storage, range.start, range.end, buf.as_mut_slice());
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if results.send((slot, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(results);
        let mut done = RecheckProgress {
            chunks_done: 0,
            chunks_total,
            bytes_done: 0,
            bytes_total,
        };
        let mut first_error = None;
        for (slot, result) in inbox {
            match result {
                Ok(hash) => {
                    hashes[slot] = hash;
                    done.chunks_done += 1;
                    done.bytes_done += ranges[slot].end - ranges[slot].start;
                    progress(done);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(hashes),
        }
    })
}

fn hash_range(
    storage: &dyn Storage,
    start: u64,
    end: u64,
    buf: &mut [u8],
) -> io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut offset = start;
    while offset < end {
        let len = buf.len().min((end - offset) as usize);
        storage.read_exact_at(offset, &mut buf[..len])?;
        hasher.update(&buf[..len]);
        offset += len as u64;
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}

/// Up to `count` distinct verified chunks, chosen at random from `seed`
/// (the same seed gives the same sample), in increasing order.
pub fn sample_chunks(verified: &HaveBitfield, count: usize, seed: u64) -> Vec<u32> {
    let mut chunks: Vec<u32> = verified.iter_ones().map(|index| index.0).collect();
    let take = count.min(chunks.len());
    let mut rng = SplitMix64(seed);
    for position in 0..take {
        let pick = position + rng.below((chunks.len() - position) as u64) as usize;
        chunks.swap(position, pick);
    }
    chunks.truncate(take);
    chunks.sort_unstable();
    chunks
}

/// A seed for the resume sample when none is given: differs from run to
/// run, so that repeated resumes look at different chunks.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStorage;
    use std::cell::Cell;

    fn stored(len: usize) -> (tempfile::TempDir, FileStorage, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open_sized(&dir.path().join("r.part"), len as u64).unwrap();
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + i / 977) as u8).collect();
        storage.write_all_at(0, &bytes).unwrap();
        (dir, storage, bytes)
    }

    #[test]
    fn hashes_match_one_shot_hashing_in_the_order_asked() {
        // Chunks larger than the read block are hashed in several reads.
        let chunk = 2 * READ_BLOCK as u32;
        let (_dir, storage, bytes) = stored(5 * chunk as usize + 12345);
        let geometry = ChunkGeometry::new(bytes.len() as u64, chunk).unwrap();
        let indices = [5, 0, 3, 1];
        let calls = Cell::new(0);
        let last = Cell::new(None);
        let hashes = hash_chunks(&storage, &geometry, &indices, &|progress| {
            calls.set(calls.get() + 1);
            last.set(Some(progress));
        })
        .unwrap();
        for (hash, index) in hashes.iter().zip(indices) {
            let range = geometry.byte_range(ChunkIndex(index)).unwrap();
            assert_eq!(
                *hash,
                Sha256Digest::of(&bytes[range.start as usize..range.end as usize])
            );
        }
        assert_eq!(calls.get(), 4);
        let last = last.get().unwrap();
        assert_eq!((last.chunks_done, last.chunks_total), (4, 4));
        assert_eq!(last.bytes_done, 3 * u64::from(chunk) + 12345);
        assert_eq!(last.bytes_done, last.bytes_total);
    }

    #[test]
    fn read_errors_are_returned() {
        struct Broken;
        impl Storage for Broken {
            fn write_all_at(&self, _: u64, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
            fn read_exact_at(&self, _: u64, _: &mut [u8]) -> io::Result<()> {
                Err(io::Error::other("bad sector"))
            }
            fn sync_data(&self) -> io::Result<()> {
                Ok(())
            }
        }
        let geometry = ChunkGeometry::new(100_000, 16384).unwrap();
        let error = hash_chunks(&Broken, &geometry, &[0, 1, 2], &|_| {}).unwrap_err();
        assert_eq!(error.to_string(), "bad sector");
        let error = hash_chunks(&Broken, &geometry, &[9], &|_| {}).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn nothing_to_hash_is_fine() {
        let geometry = ChunkGeometry::new(100, 16384).unwrap();
        let (_dir, storage, _) = stored(100);
        assert_eq!(
            hash_chunks(&storage, &geometry, &[], &|_| {}).unwrap(),
            vec![]
        );
    }

    #[test]
    fn samples_are_distinct_verified_and_follow_the_seed() {
        let mut verified = HaveBitfield::new(100);
        for index in (0..100).step_by(3) {
            verified
                .set(minimodel_wire::ChunkIndex(index), true)
                .unwrap();
        }
        let sample = sample_chunks(&verified, 4, 42);
        assert_eq!(sample.len(), 4);
        assert!(sample.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(sample.iter().all(|index| index % 3 == 0));
        assert_eq!(sample, sample_chunks(&verified, 4, 42));
        let seeds_differ = (0..20).any(|seed| sample_chunks(&verified, 4, seed) != sample);
        assert!(seeds_differ);
        assert_eq!(sample_chunks(&verified, 1000, 1).len(), 34);
        assert!(sample_chunks(&HaveBitfield::new(10), 4, 1).is_empty());
    }
}
