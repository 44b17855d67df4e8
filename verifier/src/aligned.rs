//! Read buffers that start on a cache line.
//!
//! The kernel copies file data out of the page cache, whose pages start on
//! page boundaries. A destination that starts a few bytes past a page
//! boundary makes every store of that copy land just after a load from
//! the same place in another page, and the CPU stalls on each (4K
//! aliasing). On this project's test machine a cached file read in 1 MiB
//! `pread`s was 4 to 5 times slower into a buffer 8, 16 or 24 bytes past a
//! page boundary than into one 0, 32, 40, 48, 64 or 80 bytes past it:
//! 256 MiB took 153 ms at 16 and 28 ms on a cache line (`cargo bench -p
//! minimodel-benches --bench hashing -- whole_file`, `docs/performance.md`
//! "Where a read lands"). The allocator takes a large `Vec` from `mmap`
//! (until it has freed one that large) and hands it out exactly 16 bytes
//! past a page boundary: the fetch's whole-file hash and the whole-file
//! check read into such buffers. A buffer on a cache line starts a
//! multiple of 64 bytes past a page boundary. Writes do not care where
//! their source starts.
//!
use std::ops::Range;

/// Where a buffer of this module starts: a multiple of this many bytes.
pub const ALIGN: usize = 64;

/// How many bytes after `ptr` the first [`ALIGN`] boundary is (0 to
/// `ALIGN - 1`).
pub fn offset_to_aligned(ptr: *const u8) -> usize {
    (ALIGN - ptr.addr() % ALIGN) % ALIGN
}

/// A zeroed buffer of `len` bytes whose first byte is on an [`ALIGN`]
/// boundary, carved out of a `Vec` a little longer.
#[derive(Debug)]
pub struct AlignedBuf {
    buf: Vec<u8>,
    range: Range<usize>,
}

impl AlignedBuf {
    /// `len` zero bytes, aligned.
    pub fn zeroed(len: usize) -> Self {
        let buf = vec![0u8; len + ALIGN];
        let start = offset_to_aligned(buf.as_ptr());
        Self {
            buf,
            range: start..start + len,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }

    /// The aligned bytes, to read into.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.range.clone()]
    }

    /// The `Vec` and where in it the aligned bytes are (to hand the memory
    /// on without a copy, e.g. as a slice of `bytes::Bytes`).
    pub fn into_parts(self) -> (Vec<u8>, Range<usize>) {
        (self.buf, self.range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_starts_on_a_cache_line() {
        // Sizes on both sides of the allocator's switch to mmap (128 KiB).
        for len in [0, 1, 63, 4096, 65_536, 131_072, 1 << 20, (1 << 20) + 7] {
            let mut buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.is_empty(), len == 0);
            assert_eq!(buf.as_mut_slice().as_ptr().addr() % ALIGN, 0, "{len}");
            assert!(buf.as_slice().iter().all(|&byte| byte == 0));
            let (vec, range) = buf.into_parts();
            assert_eq!(vec[range].as_ptr().addr() % ALIGN, 0);
        }
    }

    #[test]
    fn the_start_is_found_at_any_offset() {
        let buf = vec![0u8; 4 * ALIGN];
        for skip in 0..2 * ALIGN {
            let slice = &buf[skip..];
            let start = offset_to_aligned(slice.as_ptr());
            assert!(start < ALIGN);
            assert_eq!(slice[start..].as_ptr().addr() % ALIGN, 0, "{skip}");
        }
    }
}
