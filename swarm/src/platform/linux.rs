//! What Linux has that macOS lacks: `fallocate`, `posix_fadvise`, and the
//! routing table in `/proc/net/route`.

use std::fs::File;
use std::io;

use super::System;

pub(super) const SYSTEM: System = System::Linux;

/// `fallocate(FALLOC_FL_KEEP_SIZE)`: the blocks are reserved now, so a
/// full disk shows up before the download, not in its middle. A file
/// system without it keeps the sparse file `set_len` made.
pub(super) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, len) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// `posix_fadvise(POSIX_FADV_DONTNEED)`: the kernel drops the clean
/// cached pages of the range (dirty ones stay until written back).
pub(super) fn release_cached(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let Some(len) = std::num::NonZeroU64::new(len) else {
        return Ok(());
    };
    rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed)
        .map_err(io::Error::from)
}

/// The default gateway in `/proc/net/route`.
pub(super) fn default_gateway() -> io::Result<Option<std::net::Ipv4Addr>> {
    Ok(super::route::proc_net_route_gateway(
        &std::fs::read_to_string("/proc/net/route")?,
    ))
}

/// Test help: a FIFO at `path` (`mknodat`).
#[cfg(any(test, feature = "testing"))]
pub(super) fn plant_fifo(path: &std::path::Path) -> io::Result<()> {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    Ok(mknodat(
        CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )?)
}
