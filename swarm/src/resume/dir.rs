//! A download directory that may hold traps: every file of a download is
//! opened relative to a handle on `DIR`, never through a symbolic link, and
//! only when it is a regular file that the user owns, with one name.
//!
//! Anyone who can write into `DIR` (a shared directory, an unpacked
//! archive) may plant a link at a name a download uses, hoping the download
//! writes through it into another file. [`SafeDir`] defeats that:
//! - names are single path components (model ids cannot hold `/` or `..`);
//! - opening never follows a link in the last component (`O_NOFOLLOW` on
//!   Linux and macOS; on Windows a symbolic link, junction or other
//!   reparse point is opened itself) and never waits on a FIFO, then the
//!   open handle is checked: a regular file owned by the user running us,
//!   with one hard link; anything else is refused with
//!   [`ResumeError::UnsafeEntry`] and left untouched (the system calls are
//!   in [`crate::platform`]; what is refused is decided here, once);
//! - temporary files get unpredictable names and are created exclusively
//!   (`O_CREAT | O_EXCL | O_NOFOLLOW`), so a planted name is never reused;
//! - renames and removals go through the directory handle, and a name is
//!   only replaced or removed after the entry under it was checked the same
//!   way (a rename replaces a link itself, never its target).
//!
//! `DIR` itself may be a link: the user named it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::platform::{self, DirHandle, EntryFacts, EntryKind, OpenHow, OpenRefusal};

use minimodel_verifier::receipt::{FileStamp, NsTime};

use super::error::{ResumeError, io_error};

/// Why an entry of the directory is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafeKind {
    /// A symbolic link.
    Symlink,
    /// A directory, FIFO, socket or device.
    NotRegular,
    /// A regular file owned by another user.
    ForeignOwner {
        /// Its owner.
        owner: platform::Owner,
    },
    /// A regular file with more than one name (a hard link elsewhere).
    HardLinked {
        /// Its link count.
        links: u64,
    },
}

impl std::fmt::Display for UnsafeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnsafeKind::Symlink => write!(f, "is a symbolic link"),
            UnsafeKind::NotRegular => write!(f, "is not a regular file"),
            UnsafeKind::ForeignOwner { owner } => {
                write!(f, "is owned by another user ({owner})")
            }
            UnsafeKind::HardLinked { links } => {
                write!(f, "has {links} hard links (another name points to it)")
            }
        }
    }
}

/// A handle on a download directory. See the module docs.
#[derive(Debug)]
pub(crate) struct SafeDir {
    handle: DirHandle,
    path: PathBuf,
}

impl SafeDir {
    /// Opens `path` (creating it and its parents when `create`).
    pub(crate) fn open(path: &Path, create: bool) -> Result<Self, ResumeError> {
        // A file (or a link to one) where the directory belongs is the
        // user's input, not the disk failing.
        if std::fs::metadata(path).is_ok_and(|meta| !meta.is_dir()) {
            return Err(ResumeError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        if create {
            std::fs::create_dir_all(path).map_err(io_error("create the directory", path))?;
        }
        let handle = DirHandle::open(path).map_err(io_error("open the directory", path))?;
        Ok(Self {
            handle,
            path: path.to_path_buf(),
        })
    }

    /// The path of `name` in the directory (for messages).
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The entry under `name`: `None` when there is none, an error when it
    /// is anything but a regular file of ours with one name.
    pub(crate) fn inspect(&self, name: &str) -> Result<Option<FileFacts>, ResumeError> {
        match self.handle.entry(name) {
            Ok(Some(facts)) => self.check(name, facts).map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(io_error("look at", self.join(name))(error)),
        }
    }

    /// Whether anything at all is under `name` (an error to find out
    /// counts as yes, so that nothing is overwritten on a guess).
    pub(crate) fn exists(&self, name: &str) -> bool {
        !matches!(self.handle.entry(name), Ok(None))
    }

    /// What an entry may be for a download to use it: the one decision,
    /// on facts each system's adapter gathers.
    fn check(&self, name: &str, facts: EntryFacts) -> Result<FileFacts, ResumeError> {
        match unsafe_kind(&facts) {
            Some(kind) => Err(ResumeError::UnsafeEntry {
                path: self.join(name),
                kind,
            }),
            None => Ok(FileFacts {
                len: facts.len,
                stamp: FileStamp {
                    bytes: facts.len,
                    device: facts.device,
                    inode: facts.inode,
                    modified: NsTime {
                        secs: facts.modified.0,
                        nanos: facts.modified.1,
                    },
                    changed: NsTime {
                        secs: facts.changed.0,
                        nanos: facts.changed.1,
                    },
                    stamped: NsTime::now(),
                },
            }),
        }
    }

    fn open_at(&self, name: &str, how: OpenHow, action: &'static str) -> Result<File, ResumeError> {
        // Looked at first, so that nothing but a regular file is ever
        // opened (opening a device can have effects of its own); checked
        // again on the open handle, in case the name changed in between.
        let creates = !matches!(how, OpenHow::Read);
        if self.inspect(name)?.is_none() && !creates {
            return Err(io_error(action, self.join(name))(
                io::ErrorKind::NotFound.into(),
            ));
        }
        let file = self
            .handle
            .open_file(name, how)
            .map_err(|refusal| match refusal {
                OpenRefusal::Link => ResumeError::UnsafeEntry {
                    path: self.join(name),
                    kind: UnsafeKind::Symlink,
                },
                OpenRefusal::Io(error) => io_error(action, self.join(name))(error),
            })?;
        let facts = DirHandle::facts_of(&file).map_err(io_error(action, self.join(name)))?;
        self.check(name, facts)?;
        Ok(file)
    }

    /// Opens `name` for reading; `None` when it does not exist.
    pub(crate) fn open_read(&self, name: &str) -> Result<Option<File>, ResumeError> {
        match self.open_at(name, OpenHow::Read, "open") {
            Ok(file) => Ok(Some(file)),
            Err(ResumeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Opens `name` for reading and writing, creating it if missing.
    pub(crate) fn open_read_write(&self, name: &str) -> Result<File, ResumeError> {
        self.open_at(name, OpenHow::ReadWriteCreate, "open")
    }

    /// Opens `name` to append to it, creating it if missing.
    pub(crate) fn open_append(&self, name: &str) -> Result<File, ResumeError> {
        self.open_at(name, OpenHow::AppendCreate, "open")
    }

    /// Reads `name` whole, at most `limit` bytes; `None` when missing.
    pub(crate) fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ResumeError> {
        let Some(file) = self.open_read(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", self.join(name)))?;
        Ok(Some(bytes))
    }

    /// Writes `bytes` under `name` through a new temporary file, fsynced,
    /// and a rename; `name` is checked first (it must be missing or a
    /// regular file of ours). The caller syncs the directory.
    pub(crate) fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), ResumeError> {
        self.inspect(name)?;
        let (mut file, temp) = self.create_temp(name)?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(io_error("write", self.join(&temp)));
        let renamed = written.and_then(|()| self.rename(&temp, name));
        if renamed.is_err() {
            let _ = self.handle.remove(&temp);
        }
        renamed
    }

    /// Creates a new file named `.<stem>.<random>.tmp`, exclusively, and
    /// holds an advisory lock on it while it is open, so that another
    /// writer of the same name knows it is not stale.
    pub(crate) fn create_temp(&self, stem: &str) -> Result<(File, String), ResumeError> {
        for _ in 0..16 {
            let name = format!(".{stem}.{:016x}.tmp", random_u64());
            match self.open_at(&name, OpenHow::CreateNew, "create") {
                Ok(file) => {
                    // Someone else took it for stale between our create
                    // and our lock: it is theirs to remove. (Any other
                    // error: a file system without locks, where stale-temp
                    // removal cannot tell a live write from a dead one.)
                    if !platform::try_lock(&file) {
                        continue;
                    }
                    // Removed by another writer before we locked it.
                    if DirHandle::facts_of(&file).is_ok_and(|facts| facts.links == 0) {
                        continue;
                    }
                    return Ok((file, name));
                }
                Err(ResumeError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
        Err(io_error("create a temporary file in", self.path.clone())(
            io::Error::other("16 random names were taken"),
        ))
    }

    /// Opens (creating it if missing) and locks `name`, the lock file of a
    /// download, for as long as the returned handle lives: `Ok(None)` when
    /// another process holds it ([`platform::try_lock`]: `flock`, or
    /// `LockFileEx` on Windows). A file system without locks locks
    /// nothing and is not refused.
    pub(crate) fn lock(&self, name: &str) -> Result<Option<File>, ResumeError> {
        let file = self.open_at(name, OpenHow::ReadWriteCreate, "create")?;
        Ok(platform::try_lock(&file).then_some(file))
    }

    /// Removes what [`SafeDir::create_temp`] left behind for `stem` (a
    /// crash between creating and renaming): regular files of ours only,
    /// and only those no process holds locked (a write of the same name
    /// under way in another process or thread is left alone; a killed
    /// writer's lock went with it).
    pub(crate) fn remove_stale_temps(&self, stem: &str) -> Result<(), ResumeError> {
        let prefix = format!(".{stem}.");
        let entries = std::fs::read_dir(&self.path).map_err(io_error("list", self.path.clone()))?;
        for entry in entries {
            let entry = entry.map_err(io_error("list", self.path.clone()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(middle) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".tmp"))
            else {
                continue;
            };
            let ours = middle.len() == 16 && middle.bytes().all(|b| b.is_ascii_hexdigit());
            if !ours || self.inspect(&name).is_err() {
                continue;
            }
            let Ok(file) = self.open_at(&name, OpenHow::Read, "open") else {
                continue;
            };
            if platform::try_lock(&file) {
                // Unlocked before the removal: Windows refuses to remove
                // a file that is open without shared deletion.
                drop(file);
                self.remove_if_present(&name)?;
            }
        }
        Ok(())
    }

    /// Renames `from` to `to` within the directory; what is under `to` is
    /// checked first.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), ResumeError> {
        self.inspect(to)?;
        self.handle
            .rename(from, to)
            .map_err(io_error("rename to", self.join(to)))
    }

    /// Removes `name` if it is a regular file of ours; a missing one is fine.
    pub(crate) fn remove_if_present(&self, name: &str) -> Result<(), ResumeError> {
        if self.inspect(name)?.is_none() {
            return Ok(());
        }
        match self.handle.remove(name) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", self.join(name))(error)),
        }
    }

    /// Makes renames and removals in the directory durable.
    pub(crate) fn sync(&self) -> Result<(), ResumeError> {
        self.handle
            .sync()
            .map_err(io_error("sync the directory", self.path.clone()))
    }
}

/// A whole file being written, put in place by [`NewFile::commit`] so that
/// a reader sees the old file or the new one, never half of either, and a
/// crash keeps one of them: an exclusive, unpredictably named temporary
/// file in the same directory, fsynced, renamed over the target through a
/// handle on the directory, and the directory fsynced. Whatever is at the
/// target must be missing or a regular file of ours with one name
/// ([`ResumeError::UnsafeEntry`] otherwise, and it is left untouched), so a
/// link planted there is never written through. Dropped before the commit,
/// the temporary file is removed.
///
/// The one way the workspace writes a whole file outside a download's own
/// files: offers, requests, manifests, receipts, chunk lists, fixtures.
#[derive(Debug)]
pub struct NewFile {
    dir: SafeDir,
    name: String,
    temp: Option<String>,
    file: File,
}

impl NewFile {
    /// Starts writing the file that will be `path`.
    pub fn create(path: &Path) -> Result<Self, ResumeError> {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| {
                io_error("write", path)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a file name in UTF-8",
                ))
            })?
            .to_owned();
        let dir = SafeDir::open(dir, false)?;
        dir.inspect(&name)?;
        // What an interrupted write of this name left behind.
        dir.remove_stale_temps(&name)?;
        let (file, temp) = dir.create_temp(&name)?;
        Ok(Self {
            dir,
            name,
            temp: Some(temp),
            file,
        })
    }

    /// Syncs the bytes and puts the file in place.
    pub fn commit(mut self) -> Result<(), ResumeError> {
        let temp = self.temp.take().unwrap_or_default();
        let renamed = self
            .file
            .sync_all()
            .map_err(io_error("write", self.dir.join(&temp)))
            .and_then(|()| self.dir.rename(&temp, &self.name));
        if renamed.is_err() {
            let _ = self.dir.handle.remove(&temp);
        }
        renamed?;
        self.dir.sync()
    }
}

impl Write for NewFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = self.dir.handle.remove(&temp);
        }
    }
}

/// Writes `bytes` to `path` whole, through a [`NewFile`].
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), ResumeError> {
    let mut file = NewFile::create(path)?;
    file.write_all(bytes).map_err(io_error("write", path))?;
    file.commit()
}

/// Why an entry may not be used, if it may not: anything but a regular
/// file owned by the user running us with one name. Decided here for
/// every system, on the facts its adapter reads.
pub(crate) fn unsafe_kind(facts: &EntryFacts) -> Option<UnsafeKind> {
    match facts.kind {
        EntryKind::Link => Some(UnsafeKind::Symlink),
        EntryKind::Other => Some(UnsafeKind::NotRegular),
        EntryKind::Regular if !facts.owned_by_us => Some(UnsafeKind::ForeignOwner {
            owner: facts.owner.clone(),
        }),
        EntryKind::Regular if facts.links > 1 => {
            Some(UnsafeKind::HardLinked { links: facts.links })
        }
        EntryKind::Regular => None,
    }
}

/// What [`SafeDir::inspect`] learned about a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    /// Its length.
    pub(crate) len: u64,
    /// Its size, identity and times, stamped now.
    pub(crate) stamp: FileStamp,
}

/// A random number for temporary names (unpredictable, so that a name
/// cannot be planted in advance).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // Exclusive creation still refuses a planted name; only the
        // unpredictability is lost.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsafe_kind(result: Result<impl std::fmt::Debug, ResumeError>) -> UnsafeKind {
        match result {
            Err(ResumeError::UnsafeEntry { kind, .. }) => kind,
            other => panic!("expected an unsafe entry, got {other:?}"),
        }
    }

    #[test]
    fn links_fifos_and_directories_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        platform::plant_link(&victim, &dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        platform::plant_fifo(&dir.path().join("fifo")).unwrap();
        let safe = SafeDir::open(dir.path(), false).unwrap();
        assert_eq!(
            unsafe_kind(safe.open_read_write("link")),
            UnsafeKind::Symlink
        );
        assert_eq!(unsafe_kind(safe.open_read("link")), UnsafeKind::Symlink);
        assert_eq!(unsafe_kind(safe.open_append("link")), UnsafeKind::Symlink);
        assert_eq!(unsafe_kind(safe.inspect("link")), UnsafeKind::Symlink);
        assert_eq!(
            unsafe_kind(safe.open_read_write("sub")),
            UnsafeKind::NotRegular
        );
        assert_eq!(unsafe_kind(safe.open_read("fifo")), UnsafeKind::NotRegular);
        assert_eq!(
            unsafe_kind(safe.write_atomically("link", b"model bytes")),
            UnsafeKind::Symlink
        );
        assert_eq!(
            unsafe_kind(safe.remove_if_present("link")),
            UnsafeKind::Symlink
        );
        std::fs::write(dir.path().join("tmpfile"), b"x").unwrap();
        assert_eq!(
            unsafe_kind(safe.rename("tmpfile", "link")),
            UnsafeKind::Symlink
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(
            std::fs::symlink_metadata(dir.path().join("link"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn a_second_name_for_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let safe = SafeDir::open(dir.path(), false).unwrap();
        assert_eq!(
            unsafe_kind(safe.open_read_write("b")),
            UnsafeKind::HardLinked { links: 2 }
        );
    }

    #[test]
    fn a_whole_file_write_replaces_a_file_and_refuses_a_planted_link() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("offer.json");
        write_file_atomically(&path, b"one").unwrap();
        write_file_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);

        let victim = temp.path().join("victim.txt");
        std::fs::write(&victim, b"keep").unwrap();
        let link = temp.path().join("request.json");
        platform::plant_link(&victim, &link).unwrap();
        let error = write_file_atomically(&link, b"model bytes").unwrap_err();
        assert!(
            matches!(
                error,
                ResumeError::UnsafeEntry {
                    kind: UnsafeKind::Symlink,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_new_file_removes_what_an_interrupted_write_left() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("big.slm");
        let stale = temp.path().join(".big.slm.0123456789abcdef.tmp");
        std::fs::write(&stale, b"half of an earlier run").unwrap();
        let mut file = NewFile::create(&path).unwrap();
        file.write_all(b"whole").unwrap();
        file.commit().unwrap();
        assert!(!stale.exists());
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);
    }

    #[test]
    fn two_writes_of_one_name_at_once_both_succeed_and_leave_one_file() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("offer.json");
        let mut first = NewFile::create(&path).unwrap();
        first.write_all(b"first").unwrap();
        // The second starts while the first is half written: the first's
        // temporary file is not stale and stays.
        let mut second = NewFile::create(&path).unwrap();
        second.write_all(b"second").unwrap();
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 2);
        first.commit().unwrap();
        second.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_new_file_dropped_before_its_commit_leaves_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("big.slm");
        let mut file = NewFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file_and_stale_ones_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let safe = SafeDir::open(&dir.path().join("new/dir"), true).unwrap();
        safe.write_atomically("x.json", b"one").unwrap();
        safe.write_atomically("x.json", b"two").unwrap();
        assert_eq!(std::fs::read(safe.join("x.json")).unwrap(), b"two");
        let names = || -> Vec<String> {
            std::fs::read_dir(&safe.path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        };
        assert_eq!(names(), ["x.json"]);
        let (file, temp) = safe.create_temp("x.json").unwrap();
        assert!(
            temp.starts_with(".x.json.") && temp.ends_with(".tmp"),
            "{temp}"
        );
        // Not ours by its name: left alone.
        std::fs::write(safe.join(".x.json.keep.tmp"), b"").unwrap();
        // Still open (a write under way): left alone.
        safe.remove_stale_temps("x.json").unwrap();
        assert_eq!(names().len(), 3);
        // Its writer gone (killed): removed.
        drop(file);
        safe.remove_stale_temps("x.json").unwrap();
        let mut left = names();
        left.sort();
        assert_eq!(left, [".x.json.keep.tmp", "x.json"]);
    }

    #[test]
    fn facts_of_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"12345").unwrap();
        let safe = SafeDir::open(dir.path(), false).unwrap();
        assert_eq!(safe.inspect("f").unwrap().unwrap().len, 5);
        assert_eq!(safe.inspect("missing").unwrap(), None);
        assert!(safe.exists("f") && !safe.exists("missing"));
        assert!(safe.open_read("missing").unwrap().is_none());
    }
}
