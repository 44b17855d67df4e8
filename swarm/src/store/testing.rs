//! Storage decorators for tests: a disk that fills up, a slow disk.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Storage;

/// Fails every write once `budget` bytes were written, like a full disk
/// (`ENOSPC`). Reads and syncs pass through.
#[derive(Debug)]
pub struct FaultyStorage<S> {
    inner: S,
    budget: AtomicU64,
}

impl<S> FaultyStorage<S> {
    /// Wraps `inner`, allowing `budget` more bytes of writes.
    pub fn new(inner: S, budget: u64) -> Self {
        Self {
            inner,
            budget: AtomicU64::new(budget),
        }
    }

    /// Allows `bytes` more (space was freed).
    pub fn grant(&self, bytes: u64) {
        self.budget.fetch_add(bytes, Ordering::SeqCst);
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let len = bytes.len() as u64;
        let granted = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(len)
            });
        if granted.is_err() {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.write_all_at(offset, bytes)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }

    fn release_cached(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.release_cached(offset, len)
    }
}

/// Sleeps before every write (and, if asked, every sync), like a slow
/// disk.
#[derive(Debug)]
pub struct SlowStorage<S> {
    inner: S,
    delay: Duration,
    sync_delay: Duration,
}

impl<S> SlowStorage<S> {
    /// Wraps `inner`, sleeping `delay` before each write.
    pub fn new(inner: S, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            sync_delay: Duration::ZERO,
        }
    }

    /// Also sleeps `delay` before each sync.
    pub fn with_sync_delay(mut self, delay: Duration) -> Self {
        self.sync_delay = delay;
        self
    }
}

impl<S: Storage> Storage for SlowStorage<S> {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.write_all_at(offset, bytes)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(self.sync_delay);
        self.inner.sync_data()
    }

    fn release_cached(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.release_cached(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::FileStorage;
    use super::*;

    #[test]
    fn a_full_disk_refuses_writes_until_space_is_granted() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileStorage::open_sized(&dir.path().join("c.part"), 1000).unwrap();
        let storage = FaultyStorage::new(file, 10);
        storage.write_all_at(0, b"0123456789").unwrap();
        let error = storage.write_all_at(10, b"x").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(28));
        storage.grant(1);
        storage.write_all_at(10, b"x").unwrap();
        let mut buf = [0u8; 11];
        storage.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"0123456789x");
    }
}
