//! What differs between Linux, macOS and Windows, behind one small
//! interface: one file per system, chosen once here (quinn-udp's and
//! cap-std's shape), so that the code above never sees a `cfg`.
//!
//! - `unix.rs`: Linux and macOS alike (`openat`, `O_NOFOLLOW`, modes,
//!   `pwritev`, signals), with the few calls one of them lacks in
//!   `linux.rs` and `macos.rs` (preallocation, dropping cached pages, the
//!   routing table).
//! - `windows.rs`: the same interface on Win32 (reparse points, ACLs,
//!   positional I/O on handles, console control events, the IP helper).
//! - `route.rs`, `places.rs`: the pure parts (routing table parsers, where
//!   files live), compiled and tested on every system.
//!
//! What each function promises is written here once; a system that lacks
//! a facility (preallocation on macOS and Windows, dropping cached pages)
//! says so in its own file and does nothing, which is never a weaker
//! check, only a missed hint to the kernel.
//!
//! **Why not cap-std for the download directory.** cap-std gives a
//! directory handle that no path can escape, on all three systems
//! (`openat2(RESOLVE_BENEATH)` on Linux, `NtCreateFile` relative to a
//! handle on Windows). Our names are single components, checked before
//! any call, so escape through `..` or `/` cannot happen; what we must
//! refuse is a *planted link at the last component*, and refuse it with
//! the entry's kind, owner and link count in the message, which cap-std
//! would hand back as a generic error we would then `stat` again. Its
//! Windows path also brings `cap-primitives`, `io-lifetimes`,
//! `maybe-owned`, `fs-set-times` and `winx` for three calls. So the Unix
//! side keeps its `openat`/`O_NOFOLLOW` code and Windows opens
//! `\\?\`-verbatim paths under a directory handle that forbids the
//! directory's rename or removal while held, with
//! `FILE_FLAG_OPEN_REPARSE_POINT` so that a symbolic link or junction is
//! opened itself and refused, never followed (see `windows.rs`).

use std::fs::File;
use std::io;
use std::path::PathBuf;

pub mod places;
pub mod route;

#[cfg(unix)]
#[path = "unix.rs"]
mod sys;
#[cfg(windows)]
#[path = "windows.rs"]
mod sys;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod os;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!(
    "minimodel supports Linux, macOS and Windows; src/platform/ has no adapter for this system"
);

pub use sys::{
    Access, DirHandle, Owner, StopSignals, check_guarded, check_private_dir, create_private_dir,
    free_space, open_no_follow, open_nonblocking, open_private, preallocate, read_at,
    read_into_spare, release_cached, rename_no_replace, write_at, write_vectored_at,
};
/// Test help (the `testing` feature): plant links and FIFOs, open a file
/// to others, start, stop and kill a child, each system's way.
#[cfg(any(test, feature = "testing"))]
pub use sys::{
    kill_group, link_program, open_to_others, own_group, plant_fifo, plant_link, request_stop,
    stoppable,
};

/// How a test asks a child to stop, the ways a user does
/// ([`request_stop`]; the `testing` feature).
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// Ctrl-C: SIGINT; on Windows a Ctrl-Break event.
    Interrupt,
    /// A service manager's stop: SIGTERM; on Windows a Ctrl-Break event
    /// too.
    Terminate,
}

/// The systems minimodel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Linux (glibc or musl).
    Linux,
    /// macOS, Apple Silicon or Intel.
    MacOs,
    /// Windows 10 or later.
    Windows,
}

impl System {
    /// The system this program was built for.
    pub const CURRENT: System = sys::SYSTEM;
}

/// What kind of entry a name of a directory holds, seen without following
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    Regular,
    /// A symbolic link; on Windows any reparse point (a symbolic link, a
    /// junction, a mount point).
    Link,
    /// A directory, FIFO, socket or device.
    Other,
}

/// What the system says about one entry, read without following it (or
/// from an open handle on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    /// Its kind.
    pub kind: EntryKind,
    /// Its owner.
    pub owner: Owner,
    /// Whether that owner is the user running this process (on Windows
    /// also the token's default owner, which an elevated process's new
    /// files get).
    pub owned_by_us: bool,
    /// Its number of names (hard links).
    pub links: u64,
    /// Its length in bytes.
    pub len: u64,
    /// The file system it is on (device number, volume serial number).
    pub device: u64,
    /// Its identity on that file system (inode, file index).
    pub inode: u64,
    /// When its bytes last changed: seconds and nanoseconds since 1970.
    pub modified: (i64, u32),
    /// When its bytes or attributes last changed (ctime; on Windows the
    /// change time of `FILE_BASIC_INFO`).
    pub changed: (i64, u32),
}

/// How [`DirHandle::open_file`] opens an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenHow {
    /// Read only; the entry must exist.
    Read,
    /// Read and write, created if missing.
    ReadWriteCreate,
    /// Append, created if missing.
    AppendCreate,
    /// Write only, created now: fails if the name exists.
    CreateNew,
}

/// Why [`DirHandle::open_file`] or [`open_no_follow`] did not open.
#[derive(Debug)]
pub enum OpenRefusal {
    /// The last component is a symbolic link (or reparse point): it was
    /// not followed.
    Link,
    /// What the system said.
    Io(io::Error),
}

impl From<io::Error> for OpenRefusal {
    fn from(error: io::Error) -> Self {
        OpenRefusal::Io(error)
    }
}

impl OpenRefusal {
    /// As an `io::Error`, a link worded for a file the user named.
    pub fn into_io(self) -> io::Error {
        match self {
            OpenRefusal::Link => io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link; it must be a regular file",
            ),
            OpenRefusal::Io(error) => error,
        }
    }
}

/// How [`open_private`] opens a file only its owner may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateOpen {
    /// Write only, created now: fails if the name exists.
    CreateNew,
    /// Read and write, created if missing, never truncated.
    ReadWriteCreate,
    /// Read and append, created if missing.
    ReadAppendCreate,
}

/// What others may not do with a file of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Read or write it (a secret key, a token): mode bits `0o077`; on
    /// Windows, read or write rights in an ACL entry for anyone else.
    ReadOrWrite,
    /// Write it (a keyring others may read): mode bits `0o022`; on
    /// Windows, write rights.
    Write,
}

/// Why a file that only its owner may read is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyProblem {
    /// It belongs to another user.
    ForeignOwner {
        /// Its owner.
        owner: Owner,
        /// The user running this process.
        expected: Owner,
    },
    /// Other users may read or write it.
    OpenToOthers(Access),
}

/// Whether an open file is ours and closed to others for reading and
/// writing ([`check_guarded`] with [`Guard::ReadOrWrite`]).
pub fn check_owner_only(file: &File) -> io::Result<Result<(), PrivacyProblem>> {
    check_guarded(file, Guard::ReadOrWrite)
}

/// Reads exactly `buf.len()` bytes at `offset`, never moving a shared
/// file position (on Windows, the handle's position moves; nothing here
/// reads or writes through it).
pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match read_at(file, buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ends before the range",
                ));
            }
            Ok(read) => {
                buf = &mut buf[read..];
                offset += read as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Writes all of `bytes` at `offset` (see [`read_exact_at`]).
pub fn write_all_at(file: &File, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        match write_at(file, bytes, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                bytes = &bytes[written..];
                offset += written as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Takes an exclusive advisory lock on `file` without waiting: `false`
/// when another open file description holds it. `flock` on Linux and
/// macOS, `LockFileEx` on Windows (through the standard library), all
/// released when the handle closes or the process dies. A file system
/// without locks locks nothing and is not refused (`true`).
pub fn try_lock(file: &File) -> bool {
    !matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Where this system keeps an application's data for the user running it
/// (the parent of `minimodel/`): `$XDG_DATA_HOME` or `~/.local/share` on
/// Linux, `~/Library/Application Support` on macOS, `%LOCALAPPDATA%` on
/// Windows. `None` when the environment names no such place.
pub fn data_home() -> Option<PathBuf> {
    places::data_home(System::CURRENT, &|name| std::env::var_os(name))
}

/// The host's IPv4 default gateway from the routing table (Linux:
/// `/proc/net/route`; macOS: the `sysctl` routing dump; Windows: the IP
/// helper's forward table); `Ok(None)` when the table has no default
/// route.
pub fn default_gateway() -> io::Result<Option<std::net::Ipv4Addr>> {
    sys::default_gateway()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_reads_and_writes_leave_other_ranges_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.set_len(16).unwrap();
        write_all_at(&file, b"abcd", 4).unwrap();
        // A vectored write may write less than all of its parts (Windows
        // writes the first): the rest is written as the store does.
        let mut parts = [io::IoSlice::new(b"xy"), io::IoSlice::new(b"z")];
        let mut rest = &mut parts[..];
        let mut offset = 12;
        while !rest.is_empty() {
            let written = write_vectored_at(&file, rest, offset).unwrap();
            assert!(written > 0, "a write of {} parts wrote nothing", rest.len());
            offset += written as u64;
            io::IoSlice::advance_slices(&mut rest, written);
        }
        let mut all = [0u8; 16];
        read_exact_at(&file, &mut all, 0).unwrap();
        assert_eq!(&all, b"\0\0\0\0abcd\0\0\0\0xyz\0");
        let mut past = [0u8; 4];
        let error = read_exact_at(&file, &mut past, 14).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let mut spare = Vec::with_capacity(8);
        let read = read_into_spare(&file, &mut spare, 4).unwrap();
        assert!(
            read > 0 && spare.starts_with(&b"abcd"[..read.min(4)]),
            "{spare:?}"
        );
    }

    #[test]
    fn a_lock_is_one_holder_at_a_time_and_goes_with_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let first = open();
        assert!(try_lock(&first));
        let second = open();
        assert!(!try_lock(&second), "two handles held the lock at once");
        drop(first);
        assert!(try_lock(&second));
    }

    #[test]
    fn a_private_file_is_ours_and_closed_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let file = open_private(&path, PrivateOpen::CreateNew).unwrap();
        assert_eq!(check_owner_only(&file).unwrap(), Ok(()));
        drop(file);
        // A second create of the same name fails: nothing is replaced.
        let again = open_private(&path, PrivateOpen::CreateNew).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        let reopened = open_no_follow(&path).unwrap();
        assert_eq!(check_owner_only(&reopened).unwrap(), Ok(()));
    }

    #[test]
    fn a_file_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        drop(open_private(&path, PrivateOpen::CreateNew).unwrap());
        // Mode 0644; on Windows an ACL entry that lets Everyone read.
        open_to_others(&path).unwrap();
        let file = open_no_follow(&path).unwrap();
        assert!(
            matches!(
                check_owner_only(&file).unwrap(),
                Err(PrivacyProblem::OpenToOthers(_))
            ),
            "a file others may read passed as private"
        );
        // Others may read it, but not write it: enough for a keyring.
        assert_eq!(check_guarded(&file, Guard::Write).unwrap(), Ok(()));
    }

    #[test]
    fn a_rename_that_must_not_replace_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let error = rename_no_replace(&from, &to).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        std::fs::remove_file(&to).unwrap();
        rename_no_replace(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
    }

    #[test]
    fn a_directory_handle_sees_entries_without_following_them() {
        let dir = tempfile::tempdir().unwrap();
        let handle = DirHandle::open(dir.path()).unwrap();
        assert_eq!(handle.entry("missing").unwrap(), None);
        let file = handle.open_file("made", OpenHow::CreateNew).unwrap();
        write_all_at(&file, b"12345", 0).unwrap();
        drop(file);
        let facts = handle.entry("made").unwrap().unwrap();
        assert_eq!(
            (facts.kind, facts.owned_by_us, facts.links, facts.len),
            (EntryKind::Regular, true, 1, 5)
        );
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(handle.entry("sub").unwrap().unwrap().kind, EntryKind::Other);
        handle.rename("made", "moved").unwrap();
        assert_eq!(handle.entry("made").unwrap(), None);
        handle.sync().unwrap();
        handle.remove("moved").unwrap();
        assert_eq!(handle.entry("moved").unwrap(), None);
        assert!(matches!(
            handle.open_file("moved", OpenHow::Read),
            Err(OpenRefusal::Io(error)) if error.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn free_space_is_known_for_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).is_some_and(|free| free > 0));
    }
}
