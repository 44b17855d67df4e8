//! What macOS does its own way: no `fallocate` or `posix_fadvise` (both
//! are left out: a missed hint, never a weaker check), and the routing
//! table through `sysctl(NET_RT_FLAGS)`. `File::sync_all` and
//! `sync_data` are `fcntl(F_FULLFSYNC)` in the standard library on macOS,
//! so a checkpoint reaches the disk, not only its cache.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use super::System;

pub(super) const SYSTEM: System = System::MacOs;

/// Nothing: APFS has no `fallocate`, and `F_PREALLOCATE` reserves blocks
/// that `set_len` does not then keep; a full disk shows up as a failed
/// write, which stops the download with its state saved.
pub(super) fn preallocate(_file: &File, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Nothing: macOS has no `posix_fadvise`; its unified buffer cache ages
/// the pages out by itself.
pub(super) fn release_cached(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// The routing table's gateway routes (`sysctl` of
/// `{CTL_NET, PF_ROUTE, 0, AF_INET, NET_RT_FLAGS, RTF_GATEWAY}`), read
/// by [`super::route::route_dump_gateway`].
pub(super) fn default_gateway() -> io::Result<Option<std::net::Ipv4Addr>> {
    let mut mib = [
        libc::CTL_NET,
        libc::PF_ROUTE,
        0,
        libc::AF_INET,
        libc::NET_RT_FLAGS,
        libc::RTF_GATEWAY,
    ];
    for _ in 0..4 {
        let mut len: libc::size_t = 0;
        // SAFETY: `mib` is a valid array of its stated length; a null
        // buffer asks for the size only, written to `len`.
        let sized = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                mib.len() as libc::c_uint,
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if sized != 0 {
            return Err(io::Error::last_os_error());
        }
        // Room for routes added between the two calls.
        let mut buf = vec![0u8; len + len / 2 + 1024];
        let mut got: libc::size_t = buf.len();
        // SAFETY: `buf` is valid for `got` bytes, and the kernel writes
        // at most `got` bytes and sets `got` to what it wrote.
        let read = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                mib.len() as libc::c_uint,
                buf.as_mut_ptr().cast(),
                &mut got,
                std::ptr::null_mut(),
                0,
            )
        };
        if read == 0 {
            buf.truncate(got.min(buf.len()));
            return Ok(super::route::route_dump_gateway(&buf));
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOMEM) {
            return Err(error);
        }
    }
    Err(io::Error::other(
        "the routing table kept growing while read",
    ))
}

/// Test help: a FIFO at `path` (`mkfifo`; rustix has no `mknodat` here).
#[cfg(any(test, feature = "testing"))]
pub(super) fn plant_fifo(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
