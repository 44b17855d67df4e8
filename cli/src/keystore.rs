//! Where keys and the keyring live on disk, and how their files are
//! protected (`docs/signing.md`, section 7; `docs/security.md`, "The
//! keyring and trust on first use").
//!
//! - A secret key file is written once, mode 0600, never over an existing
//!   file, through a temporary file hard-linked into place; it is read only
//!   when it is a regular file (not a link, not a FIFO) owned by the user
//!   and closed to group and others, like the node's identity key
//!   (`minimodel_swarm::transport::identity`) and like OpenSSH's keys.
//! - The keyring is read only when it is a regular file owned by the user
//!   that neither group nor others may write (whoever can write it decides
//!   which keys are trusted), and written whole through the crash-safe
//!   writer (`minimodel_swarm::resume::NewFile`). Its default place is
//!   `$XDG_DATA_HOME/minimodel/keyring`, else
//!   `~/.local/share/minimodel/keyring`; `--keyring FILE` names another.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use minimodel_swarm::input::{Input, InputError, read_open};
use minimodel_swarm::platform::{self, Guard, PrivacyProblem};
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::keyfile::{
    KeyFile, MAX_KEY_FILE_LEN, PUBLIC_KEY_FORMAT, SECRET_KEY_FORMAT, public_key_file,
    read_key_file, read_secret_key_file, secret_key_file,
};
use minimodel_verifier::signing::keyring::{Keyring, MAX_KEYRING_LEN};
use minimodel_verifier::signing::{TextFileError, TextFileErrorKind};

/// Why a key file or the keyring cannot be used. Every variant names the
/// file; none is anyone's fault but local.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Nothing at the path named.
    #[error("{path}: no such key file")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A symbolic link where the file should be.
    #[error("{path} is a symbolic link; it must be a regular file")]
    Link {
        /// The file.
        path: PathBuf,
    },
    /// Not a regular file (a FIFO, a device, a directory).
    #[error("{path} is not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Owned by another user, who could read or replace it.
    #[error("{path} belongs to another user ({owner}, not {expected}); use a file of your own")]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: platform::Owner,
        /// The user running this process.
        expected: platform::Owner,
    },
    /// Permission bits (an ACL on Windows) that open it to others.
    #[error("{path} {access}, which lets {who}; {fix}")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Who else may use it: its mode, or an ACL entry.
        access: platform::Access,
        /// Who it lets do what.
        who: &'static str,
        /// The command that fixes it.
        fix: String,
    },
    /// Larger than any file of its kind.
    #[error("{path} is {len} bytes, larger than any {kind} ({max} at most)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// What it should be.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
    /// Its content is refused.
    #[error("{path} is not a valid {kind}: {source}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What it should be.
        kind: &'static str,
        /// What the reader said.
        #[source]
        source: minimodel_verifier::signing::TextFileError,
    },
    /// A file of another kind where a secret key file is expected.
    #[error("{path} is not a secret key file: it holds {holds}")]
    NotSecret {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        holds: String,
    },
    /// A file is already where a new key goes.
    #[error(
        "{path} exists; a key file is never replaced (choose another name, or remove it yourself)"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A secret key file where a public key is expected.
    #[error(
        "{path} is a secret key file; give its public key file ({path}.pub) or the key itself (mmpk1...)"
    )]
    SecretGiven {
        /// The file.
        path: PathBuf,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed; no key was made")]
    Random,
}

impl KeyFileError {
    /// Whether the file itself is wrong (invalid input, exit 3) rather
    /// than reading or writing it failing (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, KeyFileError::Io { .. } | KeyFileError::Random)
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens `path` for reading without following a link and without waiting
/// on a FIFO; `Ok(None)` when there is nothing there.
fn open_no_follow(path: &Path) -> Result<Option<File>, KeyFileError> {
    match platform::open_no_follow(path) {
        Ok(file) => Ok(Some(file)),
        Err(platform::OpenRefusal::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(platform::OpenRefusal::Link) => Err(KeyFileError::Link {
            path: path.to_owned(),
        }),
        Err(platform::OpenRefusal::Io(source)) => Err(KeyFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// What others may not do with a file of ours: the guard, who it keeps
/// out in words, and the fix.
#[derive(Debug, Clone, Copy)]
struct Protection {
    guard: Guard,
    who: &'static str,
}

/// Group or other may read or write a secret key.
const SECRET: Protection = Protection {
    guard: Guard::ReadOrWrite,
    who: "other users read it",
};
/// Group or other may write the keyring.
const KEYRING: Protection = Protection {
    guard: Guard::Write,
    who: "other users change it",
};

/// Checks the open file (not the name, which could have changed since):
/// a regular file of ours that `protection` keeps others out of, at most
/// `max` bytes; then reads it. `privacy` is what the system says of it
/// ([`platform::check_guarded`]), given by the caller so that a test can
/// stand in for another user.
fn read_checked(
    file: File,
    path: &Path,
    privacy: Result<(), PrivacyProblem>,
    protection: Protection,
    kind: &'static str,
    max: usize,
) -> Result<Vec<u8>, KeyFileError> {
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(KeyFileError::NotRegular {
            path: path.to_owned(),
        });
    }
    match privacy {
        Ok(()) => {}
        Err(PrivacyProblem::ForeignOwner { owner, expected }) => {
            return Err(KeyFileError::Owner {
                path: path.to_owned(),
                owner,
                expected,
            });
        }
        Err(PrivacyProblem::OpenToOthers(access)) => {
            let fix = match protection.guard {
                Guard::ReadOrWrite => access.fix(path),
                Guard::Write => access.fix_writers(path),
            };
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                access,
                who: protection.who,
                fix,
            });
        }
    }
    // The one bounded reader of named files, from the file's start.
    let input = Input {
        what: kind,
        limit: max as u64,
    };
    read_open(file, path, input).map_err(|error| match error {
        InputError::NotRegular { .. } => KeyFileError::NotRegular {
            path: path.to_owned(),
        },
        InputError::TooLarge { .. } => KeyFileError::TooLarge {
            path: path.to_owned(),
            len: metadata.len(),
            kind,
            max,
        },
        InputError::Open { source, .. } | InputError::Read { source, .. } => KeyFileError::Io {
            path: path.to_owned(),
            source,
        },
    })
}

/// What the system says of an open file's protection.
fn privacy_of(
    file: &File,
    path: &Path,
    protection: Protection,
) -> Result<Result<(), PrivacyProblem>, KeyFileError> {
    if !file.metadata().map_err(io_error(path))?.is_file() {
        // Refused as not regular by `read_checked`.
        return Ok(Ok(()));
    }
    platform::check_guarded(file, protection.guard).map_err(io_error(path))
}

/// Reads a secret key file, refusing one that is not protected.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    read_secret_key_as(path, None)
}

/// [`read_secret_key`], with what the system says of its protection
/// replaced by `privacy` when given (a test standing in for another
/// user).
fn read_secret_key_as(
    path: &Path,
    privacy: Option<Result<(), PrivacyProblem>>,
) -> Result<SecretKey, KeyFileError> {
    let file = open_no_follow(path)?.ok_or_else(|| KeyFileError::Missing {
        path: path.to_owned(),
    })?;
    if let Some(holds) = another_kind(&file) {
        return Err(KeyFileError::NotSecret {
            path: path.to_owned(),
            holds,
        });
    }
    let privacy = match privacy {
        Some(privacy) => privacy,
        None => privacy_of(&file, path, SECRET)?,
    };
    let bytes = read_checked(
        file,
        path,
        privacy,
        SECRET,
        "secret key file",
        MAX_KEY_FILE_LEN,
    )?;
    read_secret_key_file(&bytes).map_err(|source| KeyFileError::Content {
        path: path.to_owned(),
        kind: "secret key file",
        source,
    })
}

/// What a regular file holds when its first bytes show it to be a
/// document of another kind, an artifact or empty: said before its
/// protection is judged, since the advice to `chmod 600` a public key or a
/// model helps nobody. `None` when it may be a secret key file (a file
/// whose kind is not told is left to the checks and the reader that
/// follow) or is not a regular file.
fn another_kind(file: &File) -> Option<String> {
    use minimodel_verifier::document::{Document, HEAD_BYTES, family};
    use minimodel_verifier::signing::keyfile::SECRET_KEY_FORMAT;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = vec![0; HEAD_BYTES];
    let read = platform::read_at(file, &mut head, 0).ok()?;
    let kind = Document::sniff(&head[..read]);
    match &kind {
        Document::Other => None,
        Document::Format(format) if family(format) == family(SECRET_KEY_FORMAT) => None,
        _ => Some(kind.describe()),
    }
}

/// A key given on the command line: a public key, or the path of a
/// secret key file (read only where a secret key is wanted, with its
/// protection checked).
#[derive(Debug, Clone)]
pub enum KeyArg {
    /// `mmpk1...`, or a public key file.
    Public(PublicKey),
    /// A secret key file, not read yet.
    SecretFile(PathBuf),
}

/// Reads a key argument: its text (`mmpk1...`) or a key file.
pub fn read_key_arg(text: &str) -> Result<KeyArg, String> {
    if text.starts_with("mmpk1") {
        return text.parse().map(KeyArg::Public).map_err(|e| format!("{e}"));
    }
    let path = Path::new(text);
    let bytes = match open_no_follow(path) {
        Ok(Some(file)) => read_open(file, path, Input::KEY_FILE).map_err(|e| e.to_string())?,
        Ok(None) => {
            return Err(format!(
                "{text} is neither a public key (mmpk1...) nor a file"
            ));
        }
        Err(error) => return Err(error.to_string()),
    };
    match read_key_file(&bytes) {
        Ok(KeyFile::Public(key)) => Ok(KeyArg::Public(key)),
        Ok(KeyFile::Secret(_)) => Ok(KeyArg::SecretFile(path.to_owned())),
        // Empty, or something else entirely: either kind of key file
        // would do here, so both are named.
        Err(TextFileError {
            kind: TextFileErrorKind::MissingFormat { .. },
            ..
        }) => Err(format!(
            "{text} is not a key file: a key file starts with `format: {PUBLIC_KEY_FORMAT}` (a public key) or `format: {SECRET_KEY_FORMAT}`"
        )),
        Err(error) => Err(format!("{text} is not a key file: {error}")),
    }
}

/// A public key given on the command line: its text (`mmpk1...`) or a
/// public key file. A secret key file is refused: it is not read where a
/// public key will do.
pub fn read_public_key_arg(text: &str) -> Result<PublicKey, String> {
    match read_key_arg(text)? {
        KeyArg::Public(key) => Ok(key),
        KeyArg::SecretFile(path) => Err(KeyFileError::SecretGiven { path }.to_string()),
    }
}

/// A public key argument as given (`mmpk1...` or a public key file),
/// read when the command runs: a missing or wrong key file is then
/// invalid input (exit 3), as the help says, not a usage error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyArg(String);

impl std::str::FromStr for PublicKeyArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl PublicKeyArg {
    /// Reads the key: [`read_public_key_arg`], a failure exit 3.
    pub fn read(&self) -> Result<PublicKey, crate::exit::Failure> {
        use crate::exit::{Exit, OrExit};
        read_public_key_arg(&self.0)
            .map_err(anyhow::Error::msg)
            .or_exit(Exit::InvalidInput)
    }
}

/// The paths `key new FILE` writes: FILE and FILE.pub.
pub fn key_pair_paths(path: &Path) -> (PathBuf, PathBuf) {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    (path.to_owned(), PathBuf::from(public))
}

/// A new key from the system's random number generator.
pub fn generate_key() -> Result<SecretKey, KeyFileError> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| KeyFileError::Random)?;
    let key = SecretKey::from_seed(&seed);
    seed.fill(0);
    Ok(key)
}

/// Writes `key` to `path` (mode 0600) and its public key to `path.pub`,
/// refusing to replace either. The secret file goes in whole or not at
/// all: written to a temporary name, synced, hard-linked to its name
/// (which fails if anything is there), the temporary name removed, the
/// directory synced.
pub fn write_key_pair(path: &Path, key: &SecretKey) -> Result<PathBuf, KeyFileError> {
    let (secret_path, public_path) = key_pair_paths(path);
    for existing in [&secret_path, &public_path] {
        if fs::symlink_metadata(existing).is_ok() {
            return Err(KeyFileError::Exists {
                path: existing.clone(),
            });
        }
    }
    let dir = secret_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = secret_path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut random = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let temp = dir.join(format!(".{name}.{:016x}.tmp", u64::from_le_bytes(random)));
    let mut file =
        platform::open_private(&temp, platform::PrivateOpen::CreateNew).map_err(io_error(&temp))?;
    let written = file
        .write_all(secret_key_file(key).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temp));
    drop(file);
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    let linked = fs::hard_link(&temp, &secret_path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists { path: secret_path });
        }
        Err(source) => {
            return Err(KeyFileError::Io {
                path: secret_path,
                source,
            });
        }
    }
    // The directory's own handle: Windows opens no directory as a file,
    // and there this syncs nothing (NTFS journals the new entry itself,
    // docs in swarm/src/platform/windows.rs).
    platform::DirHandle::open(dir)
        .and_then(|d| d.sync())
        .map_err(io_error(dir))?;
    minimodel_swarm::resume::write_file_atomically(
        &public_path,
        public_key_file(&key.public_key()).as_bytes(),
    )
    .map_err(|error| KeyFileError::Io {
        path: public_path.clone(),
        source: io::Error::other(error.to_string()),
    })?;
    Ok(public_path)
}

/// The keyring's default place: `minimodel/keyring` in the system's
/// place for application data ([`platform::data_home`]:
/// `$XDG_DATA_HOME` or `$HOME/.local/share` on Linux, each only when
/// absolute, as the XDG base directory specification says; `~/Library/
/// Application Support` on macOS; `%LOCALAPPDATA%` on Windows); `None`
/// when the environment names none.
pub fn default_keyring_path() -> Option<PathBuf> {
    platform::data_home().map(|data| data.join("minimodel").join("keyring"))
}

/// The keyring as read from its file (empty when there is no file yet).
#[derive(Debug)]
pub struct KeyringFile {
    /// Where it is read from and written to; `None` when no place is known
    /// (no `--keyring`, no `HOME`): it then holds no pins and takes none.
    pub path: Option<PathBuf>,
    /// The pins.
    pub keyring: Keyring,
}

impl KeyringFile {
    /// Reads the keyring at `path` (or the default place).
    pub fn load(path: Option<&Path>) -> Result<KeyringFile, KeyFileError> {
        let path = path.map(Path::to_owned).or_else(default_keyring_path);
        let Some(path) = path else {
            return Ok(KeyringFile {
                path: None,
                keyring: Keyring::new(),
            });
        };
        let keyring = Self::read(&path)?;
        Ok(KeyringFile {
            path: Some(path),
            keyring,
        })
    }

    fn read(path: &Path) -> Result<Keyring, KeyFileError> {
        let Some(file) = open_no_follow(path)? else {
            return Ok(Keyring::new());
        };
        let privacy = privacy_of(&file, path, KEYRING)?;
        let bytes = read_checked(file, path, privacy, KEYRING, "keyring", MAX_KEYRING_LEN)?;
        Keyring::parse(&bytes).map_err(|source| KeyFileError::Content {
            path: path.to_owned(),
            kind: "keyring",
            source,
        })
    }

    /// Writes the keyring whole (creating its directory, mode 0700, when
    /// missing). Refused when no place is known.
    pub fn save(&self) -> Result<&Path, KeyFileError> {
        let Some(path) = &self.path else {
            return Err(KeyFileError::Io {
                path: PathBuf::from("keyring"),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no place for the keyring: {}; pass --keyring FILE",
                        platform::places::data_home_variables(platform::System::CURRENT)
                    ),
                ),
            });
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            platform::create_private_dir(dir).map_err(io_error(dir))?;
        }
        minimodel_swarm::resume::write_file_atomically(path, self.keyring.to_text().as_bytes())
            .map_err(|error| KeyFileError::Io {
                path: path.clone(),
                source: io::Error::other(error.to_string()),
            })?;
        Ok(path)
    }

    /// The keyring's path for messages.
    pub fn describe(&self) -> String {
        self.path.as_ref().map_or_else(
            || "(no keyring: HOME is not set)".to_owned(),
            |path| path.display().to_string(),
        )
    }
}

/// Unix only: these name modes and uids (`scripts/windows-tests`); the
/// platform's own tests check Windows' ACLs.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_pair_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        let key = SecretKey::from_seed(&[7; 32]);
        let public_path = write_key_pair(&path, &key).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_secret_key(&path).unwrap().public_key(),
            key.public_key()
        );
        assert_eq!(
            read_public_key_arg(public_path.to_str().unwrap()).unwrap(),
            key.public_key()
        );
        let error = write_key_pair(&path, &SecretKey::from_seed(&[8; 32])).unwrap_err();
        assert!(matches!(error, KeyFileError::Exists { .. }), "{error}");
        // The key on disk is still the first one.
        assert_eq!(
            read_secret_key(&path).unwrap().public_key(),
            key.public_key()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    /// The files as if they belonged to another user.
    fn someone_else() -> PrivacyProblem {
        let me = rustix::process::geteuid().as_raw();
        PrivacyProblem::ForeignOwner {
            owner: platform::Owner { uid: me + 1 },
            expected: platform::Owner { uid: me },
        }
    }

    #[test]
    fn an_unprotected_linked_foreign_or_odd_secret_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key_pair(&path, &SecretKey::from_seed(&[7; 32])).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let error = read_secret_key(&path).unwrap_err();
        assert!(
            matches!(&error, KeyFileError::Permissions { access, .. } if access.mode == 0o640),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let error = read_secret_key_as(&path, Some(Err(someone_else()))).unwrap_err();
        assert!(matches!(error, KeyFileError::Owner { .. }), "{error}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            read_secret_key(&link).unwrap_err(),
            KeyFileError::Link { .. }
        ));
        let fifo = dir.path().join("fifo");
        minimodel_swarm::platform::plant_fifo(&fifo).unwrap();
        assert!(matches!(
            read_secret_key(&fifo).unwrap_err(),
            KeyFileError::NotRegular { .. }
        ));
        let big = dir.path().join("big");
        fs::write(&big, vec![b'#'; MAX_KEY_FILE_LEN + 1]).unwrap();
        fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_secret_key(&big).unwrap_err(),
            KeyFileError::TooLarge { .. }
        ));
        // A file of another kind is named as such, whatever its mode: no
        // advice to chmod a public key or a model.
        let public = dir.path().join("k.pub");
        for mode in [0o600, 0o644] {
            fs::set_permissions(&public, fs::Permissions::from_mode(mode)).unwrap();
            let error = read_secret_key(&public).unwrap_err();
            assert!(
                matches!(error, KeyFileError::NotSecret { .. }) && error.is_invalid_input(),
                "{error}"
            );
            assert!(
                error
                    .to_string()
                    .contains("holds a minimodel-public-key-v1 document"),
                "{error}"
            );
        }
        let model = dir.path().join("m.slm");
        let mut bytes = b"\x7fMINISLM".to_vec();
        bytes.resize(MAX_KEY_FILE_LEN * 4, 0);
        fs::write(&model, bytes).unwrap();
        fs::set_permissions(&model, fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_secret_key(&model).unwrap_err();
        assert!(
            error.to_string().contains("holds a .slm artifact"),
            "{error}"
        );
        // A file whose kind is not told still gets the checks that follow.
        let odd = dir.path().join("odd");
        fs::write(&odd, "not a key\n").unwrap();
        fs::set_permissions(&odd, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_secret_key(&odd).unwrap_err(),
            KeyFileError::Permissions { .. }
        ));
        let error = read_public_key_arg(path.to_str().unwrap()).unwrap_err();
        assert!(error.contains("is a secret key file"), "{error}");
    }

    #[test]
    fn a_keyring_others_can_write_or_another_owns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("keyring");
        let mut file = KeyringFile::load(Some(&path)).unwrap();
        assert_eq!(file.keyring.pins().count(), 0);
        file.keyring
            .set(minimodel_verifier::signing::keyring::Pin {
                publisher_id: "acme".parse().unwrap(),
                key: SecretKey::from_seed(&[7; 32]).public_key(),
                pinned_by: minimodel_verifier::signing::keyring::PinnedBy::KeyPin,
                pinned_at: "2026-11-23T00:00:00Z".to_owned(),
            })
            .unwrap();
        file.save().unwrap();
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            KeyringFile::load(Some(&path))
                .unwrap()
                .keyring
                .pins()
                .count(),
            1
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let error = KeyringFile::load(Some(&path)).unwrap_err();
        assert!(error.to_string().contains("chmod 644"), "{error}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let file = File::open(&path).unwrap();
        assert!(matches!(
            read_checked(file, &path, Err(someone_else()), KEYRING, "keyring", 1024).unwrap_err(),
            KeyFileError::Owner { .. }
        ));
        fs::write(&path, "format: minimodel-keyring-v1\npin: nonsense\n").unwrap();
        let error = KeyringFile::load(Some(&path)).unwrap_err();
        assert!(
            matches!(error, KeyFileError::Content { .. }) && error.is_invalid_input(),
            "{error}"
        );
        assert!(error.to_string().contains("line 2"), "{error}");
    }
}
