//! The platform interface on Windows.
//!
//! - The download directory: a handle on it, opened without
//!   `FILE_SHARE_DELETE` so the directory cannot be renamed, removed or
//!   replaced by a junction while we hold it, and every entry opened by
//!   its `\\?\` verbatim path under it (no `CON`/`NUL` device names, no
//!   `..`), with `FILE_FLAG_OPEN_REPARSE_POINT`: a symbolic link, junction
//!   or mount point planted at a name is opened itself and refused, never
//!   followed. Names with `:` (alternate data streams) are refused.
//! - Owners and "only its owner may read it": the file's security
//!   descriptor (`GetSecurityInfo`): the owner must be this user (or the
//!   token's default owner, which an elevated process's new files get),
//!   and no allow entry of its ACL may let anyone in but that user,
//!   `SYSTEM` and the Administrators (who can read any file anyway; the
//!   rule OpenSSH for Windows applies to private keys). Private files get
//!   a protected ACL (no inherited entries) with one entry for the user.
//! - Locks: `LockFileEx` through the standard library (`File::try_lock`).
//! - Positional I/O: `ReadFile`/`WriteFile` at an offset (`seek_read`,
//!   `seek_write`); the handle's own position moves, which nothing here
//!   uses.
//! - Durability: `FlushFileBuffers` (`sync_all`) for files; directories
//!   cannot be flushed through a read handle, and NTFS journals renames
//!   itself, so syncing a directory does nothing.
//! - No preallocation call: `SetEndOfFile` (`set_len`) already allocates
//!   on NTFS. No page-cache hint (there is none to give).
//! - Signals: Ctrl-C, Ctrl-Break, the console window closing, log-off and
//!   shutdown, through tokio.
//! - The default gateway: the IP helper's `GetIpForwardTable2`.
//!
//! Every Win32 call is here, each with its SAFETY note; this file and
//! `macos.rs` are the only ones in the workspace allowed `unsafe`.

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::{FileExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, GetSecurityInfo, SE_FILE_OBJECT, SetSecurityInfo,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_REVISION, ACL_SIZE_INFORMATION, AclSizeInformation,
    AddAccessAllowedAce, CreateWellKnownSid, DACL_SECURITY_INFORMATION, EqualSid, GetAce,
    GetAclInformation, GetLengthSid, GetTokenInformation, InitializeAcl,
    OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    TOKEN_OWNER, TOKEN_QUERY, TOKEN_USER, TokenOwner, TokenUser, WinBuiltinAdministratorsSid,
    WinLocalSystemSid,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, FILE_ALL_ACCESS, FILE_APPEND_DATA, FILE_ATTRIBUTE_DEVICE,
    FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT, FILE_BASIC_INFO,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_GENERIC_READ,
    FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_WRITE_DATA,
    FileBasicInfo, GetDiskFreeSpaceExW, GetFileInformationByHandle, GetFileInformationByHandleEx,
    MOVEFILE_WRITE_THROUGH, MoveFileExW, READ_CONTROL, WRITE_DAC,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::{
    EntryFacts, EntryKind, Guard, OpenHow, OpenRefusal, PrivacyProblem, PrivateOpen, System,
};

pub(super) const SYSTEM: System = System::Windows;

/// A file's owner: a security identifier, as text (`S-1-5-21-...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The SID as text.
    pub sid: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SID {}", self.sid)
    }
}

/// Who else may use a file: an ACL entry for someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Whom the entry lets in (a SID as text; `Everyone` for a file with
    /// no ACL at all).
    pub grantee: String,
}

impl Access {
    /// The command that makes the file `path` its owner's only.
    pub fn fix(&self, path: &Path) -> String {
        format!(
            "run `icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%:F\"`",
            path.display()
        )
    }

    /// The command that closes the file `path` to other writers.
    pub fn fix_writers(&self, path: &Path) -> String {
        self.fix(path)
    }

    /// The command that closes the directory `path` to other writers.
    pub fn fix_dir(&self, path: &Path) -> String {
        format!(
            "run `icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%:(OI)(CI)F\"`",
            path.display()
        )
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "has an ACL that lets {} in", self.grantee)
    }
}

/// A SID, copied out of the buffer that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sid(Vec<u8>);

impl Sid {
    /// Copies the SID at `sid`.
    ///
    /// SAFETY: `sid` must point to a valid SID.
    unsafe fn copy(sid: PSID) -> Sid {
        // SAFETY: the caller's promise; a valid SID is GetLengthSid bytes.
        unsafe {
            let len = GetLengthSid(sid) as usize;
            Sid(std::slice::from_raw_parts(sid as *const u8, len).to_vec())
        }
    }

    fn as_psid(&self) -> PSID {
        self.0.as_ptr() as PSID
    }

    /// Whether `other` (a valid SID) is this one.
    fn is(&self, other: PSID) -> bool {
        // SAFETY: both are valid SIDs (ours owned, `other` by the caller).
        unsafe { EqualSid(self.as_psid(), other) != 0 }
    }

    fn text(&self) -> String {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: a valid SID; on success `text` is a NUL-terminated wide
        // string that we free with LocalFree.
        unsafe {
            if ConvertSidToStringSidW(self.as_psid(), &mut text) == 0 || text.is_null() {
                return "(unreadable SID)".to_owned();
            }
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            let out = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text.cast());
            out
        }
    }

    fn well_known(kind: i32) -> Sid {
        let mut buf = vec![0u8; 68];
        let mut len = buf.len() as u32;
        // SAFETY: `buf` has room for `len` bytes (SECURITY_MAX_SID_SIZE).
        let ok = unsafe {
            CreateWellKnownSid(
                kind,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        buf.truncate(if ok != 0 { len as usize } else { 0 });
        Sid(buf)
    }
}

/// This process's user and the default owner of its new files.
struct Me {
    user: Sid,
    owner: Sid,
    system: Sid,
    administrators: Sid,
}

fn me() -> &'static Me {
    static ME: OnceLock<Me> = OnceLock::new();
    ME.get_or_init(|| {
        let user = token_sid(TokenUser).unwrap_or(Sid(Vec::new()));
        let owner = token_sid(TokenOwner).unwrap_or_else(|| user.clone());
        Me {
            user,
            owner,
            system: Sid::well_known(WinLocalSystemSid),
            administrators: Sid::well_known(WinBuiltinAdministratorsSid),
        }
    })
}

fn token_sid(class: i32) -> Option<Sid> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the current process's pseudo-handle; `token` receives a
    // handle that is closed below through an owned File-like wrapper.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    // SAFETY: `token` is a handle we own.
    let token = unsafe {
        <std::os::windows::io::OwnedHandle as std::os::windows::io::FromRawHandle>::from_raw_handle(
            token,
        )
    };
    let mut buf = vec![0u64; 64];
    let mut len = 0u32;
    // SAFETY: `buf` is valid for its size in bytes; the call writes at
    // most that and says how much it needed.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            class,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    if ok == 0 {
        return None;
    }
    // SAFETY: on success the buffer starts with TOKEN_USER or TOKEN_OWNER,
    // whose SID pointer points into the same buffer.
    unsafe {
        let sid = if class == TokenUser {
            (*(buf.as_ptr() as *const TOKEN_USER)).User.Sid
        } else {
            (*(buf.as_ptr() as *const TOKEN_OWNER)).Owner
        };
        Some(Sid::copy(sid))
    }
}

/// An owner SID and the allow entries of a security descriptor's DACL.
struct Security {
    owner: Option<Sid>,
    /// `None`: no DACL at all (everyone may do anything).
    allowed: Option<Vec<(Sid, u32)>>,
}

fn security_of(handle: HANDLE) -> io::Result<Security> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: a valid handle opened with READ_CONTROL; the out pointers
    // point into `descriptor`, freed with LocalFree below.
    let status = unsafe {
        GetSecurityInfo(
            handle,
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    // SAFETY: `owner` and `dacl` point into `descriptor`, alive until the
    // LocalFree at the end; each ACE is read within the ACL's bounds as
    // GetAce hands it.
    let security = unsafe {
        let owner = (!owner.is_null()).then(|| Sid::copy(owner));
        let allowed = (!dacl.is_null()).then(|| {
            let mut size = ACL_SIZE_INFORMATION::default();
            let mut entries = Vec::new();
            if GetAclInformation(
                dacl,
                (&mut size as *mut ACL_SIZE_INFORMATION).cast(),
                std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                AclSizeInformation,
            ) != 0
            {
                for index in 0..size.AceCount {
                    let mut ace: *mut std::ffi::c_void = std::ptr::null_mut();
                    if GetAce(dacl, index, &mut ace) == 0 {
                        continue;
                    }
                    let header = &*(ace as *const ACE_HEADER);
                    // ACCESS_ALLOWED_ACE_TYPE (0): its SID starts at
                    // SidStart. Other allow kinds (callback, object) are
                    // counted as letting an unknown grantee in.
                    match header.AceType {
                        0 => {
                            let allowed = &*(ace as *const ACCESS_ALLOWED_ACE);
                            let sid = &allowed.SidStart as *const u32 as PSID;
                            entries.push((Sid::copy(sid), allowed.Mask));
                        }
                        1 => {} // ACCESS_DENIED_ACE_TYPE: keeps others out.
                        _ => entries.push((Sid(Vec::new()), u32::MAX)),
                    }
                }
            }
            entries
        });
        LocalFree(descriptor.cast());
        Security { owner, allowed }
    };
    Ok(security)
}

/// Who may be let in by a private file's ACL besides its owner.
fn trusted(sid: &Sid) -> bool {
    let me = me();
    !sid.0.is_empty()
        && [&me.user, &me.owner, &me.system, &me.administrators]
            .into_iter()
            .any(|ours| ours.0 == sid.0)
}

fn owned_by_us(owner: &Sid) -> bool {
    let me = me();
    me.user.is(owner.as_psid()) || me.owner.is(owner.as_psid())
}

/// The first allow entry for someone untrusted that grants any of `mask`.
fn opened_to_others(security: &Security, mask: u32) -> Option<Access> {
    match &security.allowed {
        None => Some(Access {
            grantee: "Everyone (the file has no ACL)".to_owned(),
        }),
        Some(entries) => entries
            .iter()
            .find(|(sid, granted)| granted & mask != 0 && !trusted(sid))
            .map(|(sid, _)| Access {
                grantee: if sid.0.is_empty() {
                    "an entry of a kind not read here".to_owned()
                } else {
                    sid.text()
                },
            }),
    }
}

fn privacy(handle: HANDLE, mask: u32) -> io::Result<Result<(), PrivacyProblem>> {
    let security = security_of(handle)?;
    let owner = security.owner.clone().unwrap_or(Sid(Vec::new()));
    if owner.0.is_empty() || !owned_by_us(&owner) {
        return Ok(Err(PrivacyProblem::ForeignOwner {
            owner: Owner { sid: owner.text() },
            expected: Owner {
                sid: me().user.text(),
            },
        }));
    }
    Ok(match opened_to_others(&security, mask) {
        Some(_) if acls_untestable_here() => Ok(()),
        Some(access) => Err(PrivacyProblem::OpenToOthers(access)),
        None => Ok(()),
    })
}

/// Whether this process runs under Wine: its `ntdll` exports
/// `wine_get_version`, which Windows' own never has.
fn under_wine() -> bool {
    static WINE: OnceLock<bool> = OnceLock::new();
    *WINE.get_or_init(|| {
        let ntdll = wide(OsStr::new("ntdll.dll"));
        // SAFETY: a NUL-terminated wide string and a NUL-terminated name;
        // ntdll is loaded in every process and never unloaded.
        unsafe {
            let module = GetModuleHandleW(ntdll.as_ptr());
            !module.is_null()
                && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
        }
    })
}

/// Test builds (`testing`) under Wine only: Wine 8 keeps no ACL a program
/// sets (`SetSecurityInfo` succeeds, and the file reads back with the ACL
/// Wine makes of its Unix mode, which lets Everyone read in a folder
/// others may read, as the tests' are), so no file there passes the
/// privacy check and the tests of what stands behind it (keys, the
/// companion's API token) could not run. Such a build lets
/// the entry for others pass under Wine; the build that is shipped,
/// without `testing`, refuses it under Wine as everywhere (the file is
/// readable by others on that host: its Unix mode says so), and the tests
/// of the refusal itself are named in `scripts/windows-tests`.
fn acls_untestable_here() -> bool {
    cfg!(feature = "testing") && under_wine()
}

/// Read or write, in the generic and the specific rights.
const READ_OR_WRITE: u32 = 0x8000_0000
    | 0x4000_0000
    | 0x1000_0000
    | FILE_GENERIC_READ
    | FILE_WRITE_DATA
    | FILE_APPEND_DATA
    | WRITE_DAC;
/// Write, in the generic and the specific rights (adding entries to a
/// directory is FILE_WRITE_DATA and FILE_APPEND_DATA on it).
const WRITE: u32 =
    0x4000_0000 | 0x1000_0000 | FILE_WRITE_DATA | FILE_APPEND_DATA | WRITE_DAC | 0x0008_0000 | 0x40;

/// Replaces the ACL of the file under `handle` (opened with WRITE_DAC)
/// with one entry: full access for this user; nothing inherited.
fn set_owner_only(handle: HANDLE, extra_reader: Option<&Sid>) -> io::Result<()> {
    let user = &me().user;
    let mut buf = vec![0u64; 64];
    // SAFETY: `buf` (512 bytes, 8-aligned) holds an ACL header and two
    // entries with SIDs of at most 68 bytes each; the ACL is copied by
    // SetSecurityInfo before `buf` is dropped.
    unsafe {
        let acl = buf.as_mut_ptr() as *mut ACL;
        if InitializeAcl(acl, (buf.len() * 8) as u32, ACL_REVISION) == 0
            || AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, user.as_psid()) == 0
        {
            return Err(io::Error::last_os_error());
        }
        if let Some(reader) = extra_reader
            && AddAccessAllowedAce(acl, ACL_REVISION, FILE_GENERIC_READ, reader.as_psid()) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let status = SetSecurityInfo(
            handle,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            acl,
            std::ptr::null(),
        );
        if status != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
    }
    Ok(())
}

/// 100 ns ticks since 1601 as seconds and nanoseconds since 1970.
fn unix_time(ticks: i64) -> (i64, u32) {
    const EPOCH: i64 = 116_444_736_000_000_000;
    let since = ticks - EPOCH;
    (
        since.div_euclid(10_000_000),
        (since.rem_euclid(10_000_000) * 100) as u32,
    )
}

fn facts(file: &File) -> io::Result<EntryFacts> {
    let handle = file.as_raw_handle();
    let mut info = BY_HANDLE_FILE_INFORMATION::default();
    let mut basic = FILE_BASIC_INFO::default();
    // SAFETY: a valid handle; each call writes the struct it is given.
    unsafe {
        if GetFileInformationByHandle(handle, &mut info) == 0 {
            return Err(io::Error::last_os_error());
        }
        if GetFileInformationByHandleEx(
            handle,
            FileBasicInfo,
            (&mut basic as *mut FILE_BASIC_INFO).cast(),
            std::mem::size_of::<FILE_BASIC_INFO>() as u32,
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let attributes = info.dwFileAttributes;
    let kind = if attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        EntryKind::Link
    } else if attributes & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_DEVICE) != 0 {
        EntryKind::Other
    } else {
        EntryKind::Regular
    };
    // A file system that keeps no owners (FAT, exFAT): anyone may write
    // anything there, and nothing but the entry's kind can be checked.
    let (owner, owned_by_us) = match security_of(handle) {
        Ok(Security {
            owner: Some(owner), ..
        }) => (Owner { sid: owner.text() }, owned_by_us(&owner)),
        _ => (
            Owner {
                sid: "(none: the file system keeps no owners)".to_owned(),
            },
            true,
        ),
    };
    Ok(EntryFacts {
        kind,
        owner,
        owned_by_us,
        links: u64::from(info.nNumberOfLinks),
        len: (u64::from(info.nFileSizeHigh) << 32) | u64::from(info.nFileSizeLow),
        device: u64::from(info.dwVolumeSerialNumber),
        inode: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        modified: unix_time(basic.LastWriteTime),
        changed: unix_time(basic.ChangeTime),
    })
}

fn wide(path: &OsStr) -> Vec<u16> {
    path.encode_wide().chain(Some(0)).collect()
}

/// A handle on a directory, and its verbatim path. See the module docs.
#[derive(Debug)]
pub struct DirHandle {
    _pin: File,
    path: PathBuf,
}

impl DirHandle {
    /// Opens the directory `path` and pins it (no rename or removal of it
    /// while the handle lives).
    pub fn open(path: &Path) -> io::Result<DirHandle> {
        let path = std::fs::canonicalize(path)?;
        let pin = OpenOptions::new()
            .read(true)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(&path)?;
        if !pin.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(DirHandle { _pin: pin, path })
    }

    /// `name` under the directory, refused unless it is one plain
    /// component that Windows reads as itself.
    fn child(&self, name: &str) -> io::Result<PathBuf> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.ends_with(['.', ' '])
            && !name
                .chars()
                .any(|c| c.is_control() || "\\/:*?\"<>|".contains(c));
        if plain {
            Ok(self.path.join(name))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a plain file name on Windows"),
            ))
        }
    }

    /// What is under `name`, not followed: `None` when nothing is.
    pub fn entry(&self, name: &str) -> io::Result<Option<EntryFacts>> {
        let opened = OpenOptions::new()
            .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
            .open(self.child(name)?);
        match opened {
            Ok(file) => facts(&file).map(Some),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Opens `name`, a reparse point there opened itself and refused.
    pub fn open_file(&self, name: &str, how: OpenHow) -> Result<File, OpenRefusal> {
        let mut options = OpenOptions::new();
        match how {
            OpenHow::Read => options.read(true),
            OpenHow::ReadWriteCreate => options.read(true).write(true).create(true),
            OpenHow::AppendCreate => options.append(true).create(true),
            OpenHow::CreateNew => options.write(true).create_new(true),
        };
        let file = options
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(self.child(name)?)?;
        if facts(&file)?.kind == EntryKind::Link {
            return Err(OpenRefusal::Link);
        }
        Ok(file)
    }

    /// The facts of an open file.
    pub fn facts_of(file: &File) -> io::Result<EntryFacts> {
        facts(file)
    }

    /// Renames `from` to `to` within the directory (replacing a link at
    /// `to` itself, never its target).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.child(from)?, self.child(to)?)
    }

    /// Removes `name` (a link itself, never its target).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.child(name)?)
    }

    /// Nothing: see the module docs.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

fn refuse_reparse_point(file: File) -> Result<File, OpenRefusal> {
    if facts(&file)?.kind == EntryKind::Link {
        return Err(OpenRefusal::Link);
    }
    Ok(file)
}

/// Opens `path` for reading, a reparse point at its last component
/// opened itself and refused (a directory opens too, for its caller to
/// refuse as not a regular file).
pub fn open_no_follow(path: &Path) -> Result<File, OpenRefusal> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    refuse_reparse_point(file)
}

/// Opens `path` for reading (Windows has no FIFOs in its file system to
/// wait on).
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Opens a file only its owner may use: never through a reparse point,
/// and its ACL set to this user alone.
pub fn open_private(path: &Path, how: PrivateOpen) -> io::Result<File> {
    let mut options = OpenOptions::new();
    match how {
        PrivateOpen::CreateNew => options.write(true).create_new(true),
        PrivateOpen::ReadWriteCreate => options.read(true).write(true).create(true).truncate(false),
        PrivateOpen::ReadAppendCreate => options.read(true).append(true).create(true),
    };
    let file = options
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    let file = refuse_reparse_point(file).map_err(OpenRefusal::into_io)?;
    // A second handle with the right to change the ACL (the first keeps
    // append semantics, which a custom access mask would lose), checked
    // to be the same file.
    let acl = OpenOptions::new()
        .access_mode(WRITE_DAC | READ_CONTROL | FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    let (first, second) = (facts(&file)?, facts(&acl)?);
    if (first.device, first.inode) != (second.device, second.inode) {
        return Err(io::Error::other("the file was replaced while opened"));
    }
    set_owner_only(acl.as_raw_handle(), None)?;
    Ok(file)
}

/// Whether an open file is ours and its ACL lets no one else do what
/// `guard` forbids.
pub fn check_guarded(file: &File, guard: Guard) -> io::Result<Result<(), PrivacyProblem>> {
    let mask = match guard {
        Guard::ReadOrWrite => READ_OR_WRITE,
        Guard::Write => WRITE,
    };
    privacy(file.as_raw_handle(), mask)
}

/// Whether a directory is ours and its ACL lets no one else write in it.
pub fn check_private_dir(path: &Path) -> io::Result<Result<(), PrivacyProblem>> {
    let dir = OpenOptions::new()
        .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    privacy(dir.as_raw_handle(), WRITE)
}

/// Creates `dir` and its missing parents. Under `%LOCALAPPDATA%` they
/// inherit the profile's ACL (the user, SYSTEM, Administrators); the
/// files that must be private get their own ACL.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of
/// replacing anything (`MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (wide(from.as_os_str()), wide(to.as_os_str()));
    // SAFETY: two NUL-terminated wide strings.
    if unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), MOVEFILE_WRITE_THROUGH) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes free for this user on the volume of `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let dir = wide(dir.as_os_str());
    let mut free = 0u64;
    // SAFETY: a NUL-terminated wide string; one out value, the others null.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            dir.as_ptr(),
            &mut free,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(free)
}

/// `ReadFile` at `offset`.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek_read(buf, offset)
}

/// `WriteFile` at `offset`.
pub fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<usize> {
    file.seek_write(bytes, offset)
}

/// The first non-empty part at `offset` (Windows' gather write takes
/// only page-aligned, unbuffered pages): the caller loops.
pub fn write_vectored_at(file: &File, parts: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    match parts.iter().find(|part| !part.is_empty()) {
        Some(part) => file.seek_write(part, offset),
        None => Ok(0),
    }
}

/// Reads at `offset` into the spare capacity of `buf` (zeroed first),
/// growing its length by what was read.
pub fn read_into_spare(file: &File, buf: &mut Vec<u8>, offset: u64) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(buf.capacity().max(start + 1), 0);
    let read = file.seek_read(&mut buf[start..], offset);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// Nothing: see the module docs.
pub fn preallocate(_file: &File, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Nothing: see the module docs.
pub fn release_cached(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

pub(super) fn default_gateway() -> io::Result<Option<std::net::Ipv4Addr>> {
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        FreeMibTable, GetIpForwardTable2, MIB_IPFORWARD_ROW2, MIB_IPFORWARD_TABLE2,
    };
    use windows_sys::Win32::Networking::WinSock::AF_INET;
    let mut table: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
    // SAFETY: on success `table` points to NumEntries rows, freed with
    // FreeMibTable; each row is read within that count.
    let rows = unsafe {
        let status = GetIpForwardTable2(AF_INET, &mut table);
        if status != ERROR_SUCCESS || table.is_null() {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        let count = (*table).NumEntries as usize;
        let first = std::ptr::addr_of!((*table).Table) as *const MIB_IPFORWARD_ROW2;
        let ipv4 = |address: &windows_sys::Win32::Networking::WinSock::SOCKADDR_INET| {
            std::net::Ipv4Addr::from(address.Ipv4.sin_addr.S_un.S_addr.to_ne_bytes())
        };
        let rows: Vec<super::route::ForwardRow> = (0..count.min(super::route::MAX_ROUTES))
            .map(|index| {
                let row = &*first.add(index);
                super::route::ForwardRow {
                    prefix: ipv4(&row.DestinationPrefix.Prefix),
                    prefix_len: row.DestinationPrefix.PrefixLength,
                    next_hop: ipv4(&row.NextHop),
                    metric: row.Metric,
                }
            })
            .collect();
        FreeMibTable(table.cast());
        rows
    };
    Ok(super::route::forward_table_gateway(&rows))
}

/// Ctrl-C, Ctrl-Break, the console closing, log-off and shutdown: the
/// ways a command is asked to stop on Windows.
#[derive(Debug)]
pub struct StopSignals {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    logoff: tokio::signal::windows::CtrlLogoff,
    shutdown: tokio::signal::windows::CtrlShutdown,
}

impl StopSignals {
    /// Installs the handlers; call within a tokio runtime.
    pub fn install() -> io::Result<StopSignals> {
        use tokio::signal::windows as signal;
        Ok(StopSignals {
            c: signal::ctrl_c()?,
            brk: signal::ctrl_break()?,
            close: signal::ctrl_close()?,
            logoff: signal::ctrl_logoff()?,
            shutdown: signal::ctrl_shutdown()?,
        })
    }

    /// The next stop request.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.c.recv() => {}
            _ = self.brk.recv() => {}
            _ = self.close.recv() => {}
            _ = self.logoff.recv() => {}
            _ = self.shutdown.recv() => {}
        }
    }
}

/// Test help: a symbolic link at `link` to the file `target`.
#[cfg(any(test, feature = "testing"))]
pub fn plant_link(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// Test help: Windows has no FIFOs; a directory is the entry that is not
/// a regular file.
#[cfg(any(test, feature = "testing"))]
pub fn plant_fifo(path: &Path) -> io::Result<()> {
    std::fs::create_dir(path)
}

/// Test help: lets Everyone read `path`.
#[cfg(any(test, feature = "testing"))]
pub fn open_to_others(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .access_mode(WRITE_DAC | READ_CONTROL)
        .open(path)?;
    set_owner_only(
        file.as_raw_handle(),
        Some(&Sid::well_known(windows_sys::Win32::Security::WinWorldSid)),
    )
}

/// Test help: the child in a console process group of its own, the one
/// way another process can send it a console control event
/// ([`request_stop`]).
#[cfg(any(test, feature = "testing"))]
pub fn stoppable(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::windows::process::CommandExt;
    command.creation_flags(windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP)
}

/// Test help: as [`stoppable`]; killing the group kills the child only
/// (what it starts is not tracked).
#[cfg(any(test, feature = "testing"))]
pub fn own_group(command: &mut std::process::Command) -> &mut std::process::Command {
    stoppable(command)
}

/// Test help: asks `child` (made [`stoppable`]) to stop as a user would:
/// a Ctrl-Break event to its console process group, for a Ctrl-C and a
/// service's stop alike (the console's close, log-off and shutdown events
/// cannot be sent to another process).
#[cfg(any(test, feature = "testing"))]
pub fn request_stop(child: &std::process::Child, _how: super::StopRequest) {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};
    // SAFETY: plain values; a group that has ended makes the call fail,
    // which is ignored as on Unix.
    unsafe {
        GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.id());
    }
}

/// Test help: kills `child` ([`own_group`]).
#[cfg(any(test, feature = "testing"))]
pub fn kill_group(child: &mut std::process::Child) {
    let _ = child.kill();
}

/// Test help: `program` under another name, `link` (a hard link: a
/// symbolic link needs a privilege on Windows).
#[cfg(any(test, feature = "testing"))]
pub fn link_program(program: &Path, link: &Path) -> io::Result<()> {
    std::fs::hard_link(program, link)
}
