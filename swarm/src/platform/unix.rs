//! The platform interface on Linux and macOS: `openat` relative to a
//! directory descriptor with `O_NOFOLLOW`, owner and mode bits,
//! `pread`/`pwritev`, `fsync` of directories, `statvfs`, SIGINT and
//! SIGTERM. What only one of the two has is in `linux.rs` or `macos.rs`.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{
    EntryFacts, EntryKind, Guard, OpenHow, OpenRefusal, PrivacyProblem, PrivateOpen, System,
};

pub(super) const SYSTEM: System = super::os::SYSTEM;

/// A file's owner: a user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The uid.
    pub uid: u32,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}", self.uid)
    }
}

/// Who else may use a file: its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The permission bits (`0o7777` of the mode).
    pub mode: u32,
}

impl Access {
    /// The command that makes the file `path` its owner's only.
    pub fn fix(&self, path: &Path) -> String {
        format!("run `chmod 600 {}`", path.display())
    }

    /// The command that closes the directory `path` to other writers.
    pub fn fix_dir(&self, path: &Path) -> String {
        format!("run `chmod 700 {}`", path.display())
    }

    /// The command that closes the file `path` to other writers (others
    /// may still read it).
    pub fn fix_writers(&self, path: &Path) -> String {
        format!("run `chmod 644 {}`", path.display())
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "has mode {:04o}", self.mode)
    }
}

fn me() -> Owner {
    Owner {
        uid: rustix::process::geteuid().as_raw(),
    }
}

// The casts: `stat`'s field types differ between Linux and macOS.
#[allow(clippy::unnecessary_cast)]
fn facts(stat: &rustix::fs::Stat) -> EntryFacts {
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => EntryKind::Link,
        FileType::RegularFile => EntryKind::Regular,
        _ => EntryKind::Other,
    };
    let owner = Owner { uid: stat.st_uid };
    EntryFacts {
        kind,
        owned_by_us: owner == me(),
        owner,
        links: stat.st_nlink as u64,
        len: stat.st_size as u64,
        device: stat.st_dev as u64,
        inode: stat.st_ino as u64,
        modified: (stat.st_mtime as i64, stat.st_mtime_nsec as u32),
        changed: (stat.st_ctime as i64, stat.st_ctime_nsec as u32),
    }
}

/// A handle on a directory; every name is opened relative to it, the last
/// component never followed.
#[derive(Debug)]
pub struct DirHandle {
    fd: OwnedFd,
}

impl DirHandle {
    /// Opens the directory `path` (following links in `path`: the user
    /// named it).
    pub fn open(path: &Path) -> io::Result<DirHandle> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirHandle { fd })
    }

    /// What is under `name`, not followed: `None` when nothing is.
    pub fn entry(&self, name: &str) -> io::Result<Option<EntryFacts>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(facts(&stat))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Opens `name` without following a link there and without waiting
    /// on a FIFO; new files get mode 0644 (less the umask).
    pub fn open_file(&self, name: &str, how: OpenHow) -> Result<File, OpenRefusal> {
        let flags = match how {
            OpenHow::Read => OFlags::RDONLY,
            OpenHow::ReadWriteCreate => OFlags::RDWR | OFlags::CREATE,
            OpenHow::AppendCreate => OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
            OpenHow::CreateNew => OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        };
        rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::from_raw_mode(0o644),
        )
        .map(File::from)
        .map_err(|errno| match errno {
            rustix::io::Errno::LOOP => OpenRefusal::Link,
            errno => OpenRefusal::Io(errno.into()),
        })
    }

    /// The facts of an open file (checked on the handle, so a rename in
    /// between cannot swap another file in).
    pub fn facts_of(file: &File) -> io::Result<EntryFacts> {
        Ok(facts(&rustix::fs::fstat(file)?))
    }

    /// Renames `from` to `to` within the directory (replacing a link at
    /// `to` itself, never its target).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Removes `name` (a link itself, never its target).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Makes renames and removals in the directory durable (`fsync` of
    /// the directory).
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }
}

/// Opens `path` for reading without following a link in its last
/// component and without waiting on a FIFO.
pub fn open_no_follow(path: &Path) -> Result<File, OpenRefusal> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                OpenRefusal::Link
            } else {
                OpenRefusal::Io(error)
            }
        })
}

/// Opens `path` for reading, following links, without waiting on a FIFO
/// (a file the user named, which the caller checks is a regular file).
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Opens a file only its owner may use: created with mode 0600, never
/// through a link. An existing file keeps its mode: [`check_owner_only`]
/// is the check.
pub fn open_private(path: &Path, how: PrivateOpen) -> io::Result<File> {
    let mut options = OpenOptions::new();
    match how {
        PrivateOpen::CreateNew => options.write(true).create_new(true),
        PrivateOpen::ReadWriteCreate => options.read(true).write(true).create(true).truncate(false),
        PrivateOpen::ReadAppendCreate => options.read(true).append(true).create(true),
    };
    options
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                OpenRefusal::Link.into_io()
            } else {
                error
            }
        })
}

/// Whether an open file is ours and closed to group and others as `guard`
/// says (no mode bit in `0o077`, or in `0o022`).
pub fn check_guarded(file: &File, guard: Guard) -> io::Result<Result<(), PrivacyProblem>> {
    let forbidden = match guard {
        Guard::ReadOrWrite => 0o077,
        Guard::Write => 0o022,
    };
    let meta = file.metadata()?;
    let owner = Owner {
        uid: std::os::unix::fs::MetadataExt::uid(&meta),
    };
    if owner != me() {
        return Ok(Err(PrivacyProblem::ForeignOwner {
            owner,
            expected: me(),
        }));
    }
    let mode = meta.permissions().mode() & 0o7777;
    Ok(if mode & forbidden != 0 {
        Err(PrivacyProblem::OpenToOthers(Access { mode }))
    } else {
        Ok(())
    })
}

/// Whether a directory is ours and closed to writers other than us (no
/// mode bit in `0o022`).
pub fn check_private_dir(path: &Path) -> io::Result<Result<(), PrivacyProblem>> {
    let meta = std::fs::metadata(path)?;
    let owner = Owner {
        uid: std::os::unix::fs::MetadataExt::uid(&meta),
    };
    if owner != me() {
        return Ok(Err(PrivacyProblem::ForeignOwner {
            owner,
            expected: me(),
        }));
    }
    let mode = meta.permissions().mode() & 0o7777;
    Ok(if mode & 0o022 != 0 {
        Err(PrivacyProblem::OpenToOthers(Access { mode }))
    } else {
        Ok(())
    })
}

/// Creates `dir` and its missing parents, each new one mode 0700; an
/// existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of
/// replacing anything at `to` (`renameat2(RENAME_NOREPLACE)`,
/// `renamex_np(RENAME_EXCL)`; a file system without it: a hard link, then
/// the old name removed).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::NOTSUP) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Bytes free for this user on the file system of `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `pread`: some bytes at `offset`.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.read_at(buf, offset)
}

/// `pwrite`: some bytes at `offset`.
pub fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<usize> {
    file.write_at(bytes, offset)
}

/// `pwritev`: some bytes of `parts`, in order, at `offset`, in one call.
pub fn write_vectored_at(file: &File, parts: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    loop {
        match rustix::io::pwritev(file, parts, offset) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// `pread` into the spare capacity of `buf` (no zeroing), growing its
/// length by what was read.
pub fn read_into_spare(file: &File, buf: &mut Vec<u8>, offset: u64) -> io::Result<usize> {
    loop {
        match rustix::io::pread(file, rustix::buffer::spare_capacity(buf), offset) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Reserves `len` bytes for `file` without changing its contents, where
/// the system can.
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    super::os::preallocate(file, len)
}

/// Tells the kernel the cached pages of a range will not be read again,
/// where it takes such a hint.
pub fn release_cached(file: &File, offset: u64, len: u64) -> io::Result<()> {
    super::os::release_cached(file, offset, len)
}

pub(super) fn default_gateway() -> io::Result<Option<std::net::Ipv4Addr>> {
    super::os::default_gateway()
}

/// SIGINT and SIGTERM, the ways a command is asked to stop on Linux and
/// macOS (a terminal's Ctrl-C, `kill`, systemd or launchd stopping it).
#[derive(Debug)]
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; call within a tokio runtime with I/O.
    pub fn install() -> io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next stop request.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Test help: a symbolic link at `link` to `target`.
#[cfg(any(test, feature = "testing"))]
pub fn plant_link(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Test help: a FIFO at `path`.
#[cfg(any(test, feature = "testing"))]
pub fn plant_fifo(path: &Path) -> io::Result<()> {
    super::os::plant_fifo(path)
}

/// Test help: lets group and others read `path`.
#[cfg(any(test, feature = "testing"))]
pub fn open_to_others(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Test help: nothing to prepare; a child gets SIGINT and SIGTERM as it is.
#[cfg(any(test, feature = "testing"))]
pub fn stoppable(command: &mut std::process::Command) -> &mut std::process::Command {
    command
}

/// Test help: the child in a process group of its own, so that whatever
/// it starts can be killed with it ([`kill_group`]).
#[cfg(any(test, feature = "testing"))]
pub fn own_group(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    command.process_group(0)
}

/// Test help: asks `child` to stop as a user would: SIGINT (Ctrl-C) or
/// SIGTERM. A child that has ended already gets nothing.
#[cfg(any(test, feature = "testing"))]
pub fn request_stop(child: &std::process::Child, how: super::StopRequest) {
    use rustix::process::{Pid, Signal, kill_process};
    let signal = match how {
        super::StopRequest::Interrupt => Signal::INT,
        super::StopRequest::Terminate => Signal::TERM,
    };
    let _ = kill_process(Pid::from_child(child), signal);
}

/// Test help: kills the process group `child` leads ([`own_group`]) and
/// `child`.
#[cfg(any(test, feature = "testing"))]
pub fn kill_group(child: &mut std::process::Child) {
    use rustix::process::{Pid, Signal, kill_process_group};
    // Its id stays taken while any member lives, so this hits nothing else.
    let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
    let _ = child.kill();
}

/// Test help: `program` under another name, `link` (a symbolic link).
#[cfg(any(test, feature = "testing"))]
pub fn link_program(program: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(program, link)
}
