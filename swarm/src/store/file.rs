//! [`Storage`] on a file, with positional reads and writes (`pread` and
//! `pwritev`, `ReadFile`/`WriteFile` at an offset on Windows:
//! [`crate::platform`]) so that writers and readers on several threads
//! never share a file position.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::path::Path;

use bytes::Bytes;
use minimodel_verifier::aligned::{ALIGN, offset_to_aligned};

use super::Storage;
use crate::platform;

/// A file used through positional I/O.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
}

impl FileStorage {
    /// Opens an existing file read-only (a seeder's verified artifact).
    pub fn open_read_only(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
        })
    }

    /// Opens or creates a read-write file of exactly `len` bytes,
    /// reserving the space up front where the file system can (so a full
    /// disk shows up now, not in the middle of the download).
    pub fn open_sized(path: &Path, len: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Self::sized(file, len)
    }

    /// An open read-write file, made exactly `len` bytes long with its
    /// space reserved (see [`FileStorage::open_sized`]).
    pub fn sized(file: File, len: u64) -> io::Result<Self> {
        let current = file.metadata()?.len();
        if current != len {
            file.set_len(len)?;
        }
        preallocate(&file, len)?;
        Ok(Self { file })
    }

    /// An open file as it is (reading, say).
    pub fn from_file(file: File) -> Self {
        Self { file }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Reserves `len` bytes for `file` without changing its contents where
/// the system can ([`platform::preallocate`]: `fallocate` on Linux;
/// elsewhere the file `set_len` made).
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    platform::preallocate(file, len)
}

/// Buffers one `pwritev` takes at most (Linux's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

impl Storage for FileStorage {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        platform::write_all_at(&self.file, bytes, offset)
    }

    /// One `pwritev` for up to `MAX_IOVECS` (1024) parts. A chunk arrives as a
    /// few hundred packet-sized parts; written one `pwrite` each, every
    /// part boundary inside a page made the file system zero the rest of
    /// that page first and took the inode lock again.
    fn write_parts_at(&self, mut offset: u64, parts: &[Bytes]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = parts
            .iter()
            .filter(|part| !part.is_empty())
            .map(|part| IoSlice::new(part))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let batch = rest.len().min(MAX_IOVECS);
            let written = match platform::write_vectored_at(&self.file, &rest[..batch], offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(error) => return Err(error),
            };
            offset += written as u64;
            IoSlice::advance_slices(&mut rest, written);
        }
        Ok(())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        platform::read_exact_at(&self.file, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// [`platform::release_cached`]: on Linux
    /// `posix_fadvise(POSIX_FADV_DONTNEED)`, so the kernel drops the clean
    /// cached pages of the range (dirty ones stay until written back);
    /// nothing where the system takes no such hint.
    fn release_cached(&self, offset: u64, len: u64) -> io::Result<()> {
        platform::release_cached(&self.file, offset, len)
    }

    fn read_bytes_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = Vec::with_capacity(len + ALIGN);
        // The bytes start on a cache line: zeroes before it.
        let start = offset_to_aligned(buf.as_ptr());
        buf.resize(start, 0);
        while buf.len() < start + len {
            let at = offset + (buf.len() - start) as u64;
            // Reads into the spare capacity: no zeroing, no unsafe here.
            // The spare capacity reaches past the range: what it reads
            // there is cut below.
            let read = platform::read_into_spare(&self.file, &mut buf, at)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ends before the chunk",
                ));
            }
        }
        buf.truncate(start + len);
        Ok(Bytes::from(buf).slice(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_lose_no_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open_sized(&dir.path().join("r.part"), 3 << 20).unwrap();
        let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        storage.write_all_at(0, &bytes).unwrap();
        storage.sync_data().unwrap();
        storage.release_cached(0, 2 << 20).unwrap();
        // Nothing to release, and a range past the end: both fine.
        storage.release_cached(5, 0).unwrap();
        storage.release_cached(4 << 20, 1 << 20).unwrap();
        // Dirty pages are left alone, not dropped.
        storage.write_all_at(100, b"dirty").unwrap();
        storage.release_cached(0, 4096).unwrap();
        let mut expected = bytes;
        expected[100..105].copy_from_slice(b"dirty");
        assert_eq!(storage.read_bytes_at(0, 3 << 20).unwrap(), expected);
    }

    #[test]
    fn sized_files_keep_existing_bytes_and_take_the_right_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.part");
        let storage = FileStorage::open_sized(&path, 10_000).unwrap();
        storage.write_all_at(5000, b"hello").unwrap();
        drop(storage);
        let storage = FileStorage::open_sized(&path, 10_000).unwrap();
        let mut buf = [0u8; 5];
        storage.read_exact_at(5000, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10_000);
    }

    /// A storage with the trait's default reads.
    struct Plain<'a>(&'a FileStorage);

    impl Storage for Plain<'_> {
        fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
            self.0.write_all_at(offset, bytes)
        }
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.0.read_exact_at(offset, buf)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
    }

    #[test]
    fn whole_buffers_read_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open_sized(&dir.path().join("d.part"), 3 << 20).unwrap();
        let bytes: Vec<u8> = (0..(2 << 20)).map(|i| (i % 253) as u8).collect();
        storage.write_all_at(1000, &bytes).unwrap();
        let read = storage.read_bytes_at(1000, bytes.len()).unwrap();
        assert_eq!(read, bytes);
        // On a cache line, which the kernel fills several times faster,
        // from this storage and from the trait's default alike.
        assert_eq!(read.as_ptr().addr() % ALIGN, 0);
        let read = Storage::read_bytes_at(&Plain(&storage), 1000, bytes.len()).unwrap();
        assert_eq!(read, bytes);
        assert_eq!(read.as_ptr().addr() % ALIGN, 0);
        let error = storage.read_bytes_at((3 << 20) - 10, 20).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn gathered_parts_land_in_order_past_the_iovec_limit() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open_sized(&dir.path().join("g.part"), 1 << 20).unwrap();
        // 1500 parts of odd sizes (some empty): more than one pwritev, and
        // part boundaries inside pages.
        let mut expected = Vec::new();
        let parts: Vec<Bytes> = (0..1500)
            .map(|i| {
                let part: Vec<u8> = (0..(i * 7 % 613)).map(|j| (i + j) as u8).collect();
                expected.extend_from_slice(&part);
                Bytes::from(part)
            })
            .collect();
        assert!(expected.len() < (1 << 20) - 4099);
        storage.write_parts_at(4099, &parts).unwrap();
        assert_eq!(
            storage.read_bytes_at(4099, expected.len()).unwrap(),
            expected
        );
        let mut before = [1u8; 4099];
        storage.read_exact_at(0, &mut before).unwrap();
        assert!(
            before.iter().all(|&b| b == 0),
            "bytes before the offset untouched"
        );
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open_sized(&dir.path().join("b.part"), 100).unwrap();
        let mut buf = [0u8; 10];
        let error = storage.read_exact_at(95, &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
