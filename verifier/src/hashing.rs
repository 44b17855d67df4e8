//! One read of a file, two hashes at once: the chunk hashes of
//! fixed-size-merkle-v0 and the full-file SHA-256.
//!
//! The full-file SHA-256 is one sequential pass and cannot be split, so it
//! gets a thread of its own; the reading thread computes the chunk hashes of
//! the same blocks beside it. Blocks travel between the two as shared
//! buffers from a small pool, so memory stays at `POOL_BLOCKS * BLOCK_SIZE`
//! (6 MiB) whatever the file size, and the wall time is about one SHA-256
//! pass on two cores.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::aligned::AlignedBuf;
use crate::chunk::{ChunkGeometry, ChunkIndex};
use crate::digest::Sha256Digest;

/// Bytes read at a time.
pub const BLOCK_SIZE: usize = 1 << 20;
/// Blocks in flight between the two threads.
const POOL_BLOCKS: usize = 6;

/// What one pass over a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    /// Bytes read.
    pub bytes: u64,
    /// SHA-256 of all bytes.
    pub sha256: Sha256Digest,
    /// SHA-256 of each chunk, in order (the last chunk may be short).
    pub chunk_hashes: Vec<Sha256Digest>,
}

struct Block {
    buf: AlignedBuf,
    len: usize,
}

/// Hashes the file at `path`; see [`hash_reader`].
pub fn hash_file(
    path: &Path,
    chunk_size: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileHashes> {
    hash_reader(File::open(path)?, chunk_size, progress)
}

/// Reads `reader` to its end once, computing the chunk hashes for chunks of
/// `chunk_size` bytes and the full SHA-256 on two threads. `progress` is
/// called with the running byte count after each block.
pub fn hash_reader(
    reader: impl Read + Send,
    chunk_size: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileHashes> {
    if chunk_size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "chunk size must be at least one byte",
        ));
    }
    hash_with(reader, ChunkHasher::new(chunk_size as usize), progress)
}

/// [`hash_reader`] with the chunks of `geometry` (fixed or listed); bytes
/// past its end are cut in chunks of its chunk size, so that a longer file
/// shows as more chunks and bytes, not as a shorter last chunk.
pub fn hash_reader_in(
    reader: impl Read + Send,
    geometry: &ChunkGeometry,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileHashes> {
    hash_with(reader, ChunkHasher::over(geometry.clone()), progress)
}

fn hash_with(
    mut reader: impl Read + Send,
    mut leaves: ChunkHasher,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileHashes> {
    std::thread::scope(|scope| {
        let (to_full, full_inbox) = mpsc::sync_channel::<Arc<Block>>(POOL_BLOCKS);
        let (returns, returned) = mpsc::channel::<Arc<Block>>();
        let full = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for block in full_inbox {
                hasher.update(&block.buf.as_slice()[..block.len]);
                // The reader may be gone after an error; nothing to return to.
                let _ = returns.send(block);
            }
            Sha256Digest(hasher.finalize().into())
        });

        let mut allocated = 0;
        let mut total = 0u64;
        let read_result = loop {
            let mut block = match returned.try_recv() {
                Ok(block) => block,
                Err(_) if allocated < POOL_BLOCKS => {
                    allocated += 1;
                    Arc::new(Block {
                        buf: AlignedBuf::zeroed(BLOCK_SIZE),
                        len: 0,
                    })
                }
                Err(_) => match returned.recv() {
                    Ok(block) => block,
                    Err(_) => break Err(io::Error::other("full-file hasher stopped")),
                },
            };
            let Some(exclusive) = Arc::get_mut(&mut block) else {
                break Err(io::Error::other("hash buffer still shared"));
            };
            exclusive.len = match read_full(&mut reader, exclusive.buf.as_mut_slice()) {
                Ok(len) => len,
                Err(error) => break Err(error),
            };
            if exclusive.len == 0 {
                break Ok(());
            }
            total += exclusive.len as u64;
            if to_full.send(Arc::clone(&block)).is_err() {
                break Err(io::Error::other("full-file hasher stopped"));
            }
            leaves.update(&block.buf.as_slice()[..block.len]);
            drop(block);
            progress(total);
        };
        drop(to_full);
        let sha256 = full
            .join()
            .map_err(|_| io::Error::other("full-file hasher panicked"))?;
        read_result?;
        Ok(FileHashes {
            bytes: total,
            sha256,
            chunk_hashes: leaves.finish(),
        })
    })
}

/// Fills `buf` unless the reader ends first; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Incremental chunk hashes over a byte stream cut into fixed-size chunks,
/// or into the chunks of a geometry.
#[derive(Clone)]
pub struct ChunkHasher {
    chunk_size: usize,
    geometry: Option<ChunkGeometry>,
    current: Sha256,
    in_current: usize,
    hashes: Vec<Sha256Digest>,
}

impl ChunkHasher {
    /// A hasher for chunks of `chunk_size` bytes.
    pub fn new(chunk_size: usize) -> Self {
        Self {
            chunk_size: chunk_size.max(1),
            geometry: None,
            current: Sha256::new(),
            in_current: 0,
            hashes: Vec::new(),
        }
    }

    /// A hasher for the chunks of `geometry`; past its end, chunks of its
    /// chunk size.
    pub fn over(geometry: ChunkGeometry) -> Self {
        Self {
            chunk_size: (geometry.chunk_size() as usize).max(1),
            geometry: Some(geometry),
            current: Sha256::new(),
            in_current: 0,
            hashes: Vec::new(),
        }
    }

    /// The length of the chunk being hashed.
    fn current_len(&self) -> usize {
        let index = u32::try_from(self.hashes.len()).unwrap_or(u32::MAX);
        self.geometry
            .as_ref()
            .and_then(|geometry| geometry.chunk_len(ChunkIndex(index)))
            .map_or(self.chunk_size, |len| len as usize)
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let chunk_len = self.current_len();
            let take = (chunk_len - self.in_current).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.in_current += take;
            bytes = &bytes[take..];
            if self.in_current == chunk_len {
                self.hashes
                    .push(Sha256Digest(self.current.finalize_reset().into()));
                self.in_current = 0;
            }
        }
    }

    /// The hashes of all chunks, the last one possibly short.
    pub fn finish(mut self) -> Vec<Sha256Digest> {
        if self.in_current > 0 {
            self.hashes
                .push(Sha256Digest(self.current.finalize().into()));
        }
        self.hashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i ^ (i >> 9)) as u8).collect()
    }

    fn expected_chunks(data: &[u8], chunk_size: usize) -> Vec<Sha256Digest> {
        data.chunks(chunk_size).map(Sha256Digest::of).collect()
    }

    #[test]
    fn both_hashes_match_one_shot_hashing() {
        // Sizes around the block size and chunk sizes above and below it.
        for (len, chunk_size) in [
            (0, 16384),
            (1, 16384),
            (BLOCK_SIZE - 1, 16384),
            (BLOCK_SIZE + 7, 16384),
            (3 * BLOCK_SIZE + 5, 4 * BLOCK_SIZE as u32 as usize),
            (2 * BLOCK_SIZE, 2 * BLOCK_SIZE),
        ] {
            let data = bytes(len);
            let hashes = hash_reader(&data[..], chunk_size as u32, &|_| {}).unwrap();
            assert_eq!(hashes.bytes, len as u64);
            assert_eq!(hashes.sha256, Sha256Digest::of(&data), "len {len}");
            assert_eq!(hashes.chunk_hashes, expected_chunks(&data, chunk_size));
        }
    }

    #[test]
    fn progress_reaches_the_total() {
        let data = bytes(BLOCK_SIZE * 2 + 100);
        let seen = AtomicU64::new(0);
        hash_reader(&data[..], 65536, &|n| seen.store(n, Ordering::Relaxed)).unwrap();
        assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
    }

    #[test]
    fn read_errors_are_reported_not_swallowed() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let error = hash_reader(Failing(BLOCK_SIZE * 3 + 1), 16384, &|_| {}).unwrap_err();
        assert_eq!(error.to_string(), "disk on fire");
    }

    #[test]
    fn zero_chunk_size_is_refused() {
        assert!(hash_reader(&b"x"[..], 0, &|_| {}).is_err());
    }

    #[test]
    fn chunk_hasher_is_independent_of_how_bytes_are_split() {
        let data = bytes(100_000);
        let mut whole = ChunkHasher::new(16384);
        whole.update(&data);
        let mut split = ChunkHasher::new(16384);
        for piece in data.chunks(777) {
            split.update(piece);
        }
        assert_eq!(whole.finish(), split.finish());
    }
}
