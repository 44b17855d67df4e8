//! Where chunk bytes live: a small synchronous trait of positional reads
//! and writes ([`Storage`]), the file behind it, and, with the `testing` feature,
//! decorators that inject failures and slowness for tests.
//!
//! Only a [`VerifiedChunk`] can be written through [`write_chunk`], so an
//! unchecked byte never reaches the partial file.

mod file;
#[cfg(any(test, feature = "testing"))]
mod testing;

use std::io;

use bytes::Bytes;

use minimodel_verifier::aligned::AlignedBuf;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex, VerifiedChunk};

pub use file::FileStorage;
#[cfg(any(test, feature = "testing"))]
pub use testing::{FaultyStorage, SlowStorage};

/// Positional reads and writes on the bytes of one artifact.
pub trait Storage: Send + Sync {
    /// Writes all of `bytes` at `offset`.
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Writes `parts` one after another from `offset`. The default makes
    /// one [`Storage::write_all_at`] per part; a file gathers them into
    /// as few system calls as it can.
    fn write_parts_at(&self, offset: u64, parts: &[Bytes]) -> io::Result<()> {
        let mut offset = offset;
        for part in parts {
            self.write_all_at(offset, part)?;
            offset += part.len() as u64;
        }
        Ok(())
    }
    /// Fills `buf` from `offset`; an error if the storage ends first.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Makes written data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Tells the storage that `len` bytes from `offset` were made durable
    /// and will not be read again soon, so it may drop its cached copy.
    /// The default does nothing.
    fn release_cached(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Reads `len` bytes from `offset` into a new buffer that starts on a
    /// cache line (the kernel fills one several times faster,
    /// [`minimodel_verifier::aligned`]). The default zeroes the buffer
    /// first; storages that can read into uninitialised memory skip that
    /// (a seeder reads every byte it serves).
    fn read_bytes_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = AlignedBuf::zeroed(len);
        self.read_exact_at(offset, buf.as_mut_slice())?;
        let (vec, range) = buf.into_parts();
        Ok(Bytes::from(vec).slice(range))
    }
}

/// Writes a verified chunk at its place.
pub fn write_chunk(
    storage: &dyn Storage,
    geometry: &ChunkGeometry,
    chunk: &VerifiedChunk,
) -> io::Result<()> {
    let range = geometry
        .byte_range(chunk.index())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk out of range"))?;
    storage.write_parts_at(range.start, chunk.data().parts())
}

/// Reads chunk `index` into a new buffer.
pub fn read_chunk(
    storage: &dyn Storage,
    geometry: &ChunkGeometry,
    index: ChunkIndex,
) -> io::Result<Bytes> {
    read_chunk_from(storage, geometry, index, 0)
}

/// Reads chunk `index` from its byte `from` on (what a PieceFrom carries;
/// 0: the whole chunk).
pub fn read_chunk_from(
    storage: &dyn Storage,
    geometry: &ChunkGeometry,
    index: ChunkIndex,
    from: u32,
) -> io::Result<Bytes> {
    let range = geometry
        .byte_range(index)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk out of range"))?;
    let start = range.start + u64::from(from);
    if start >= range.end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "offset past the chunk",
        ));
    }
    storage.read_bytes_at(start, (range.end - start) as usize)
}
