//! A peer's long-term Ed25519 key and the file that keeps it across runs.
//!
//! The key is stored as one file, [`KEY_FILE_NAME`], in the identity
//! directory: the unencrypted PKCS#8 v2 DER that `ring` generates (private
//! and public key, 83 bytes). The directory is created with mode 0700 and the
//! file with mode 0600 (on Windows: an ACL for the user alone); a key file
//! that any group or other permission bit (an ACL entry for anyone else)
//! opens up is refused, like OpenSSH refuses an unprotected private key
//! ([`crate::platform::check_owner_only`]).
//! A new key is written to a temporary file, synced, and then hard-linked to
//! its final name, so a reader never sees half a key and two processes that
//! start at once end up with the same key (the one that links second loads
//! the first one's key instead of replacing it).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use minimodel_wire::PeerId;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::sign::{CertifiedKey, SigningKey};

use super::spki::ed25519_spki;
use crate::platform::{self, PrivacyProblem, PrivateOpen};

/// The key file's name inside the identity directory.
pub const KEY_FILE_NAME: &str = "peer-key.pk8";

/// A key file larger than this is not a PKCS#8 Ed25519 key (those are 48 to
/// 83 bytes); refusing early keeps a wrong `--identity` path from reading a
/// large file into memory.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// A peer's identity: its Ed25519 key pair. The public half is its
/// [`PeerId`]; the private half signs every TLS handshake.
#[derive(Clone)]
pub struct Identity {
    peer_id: PeerId,
    /// The rustls view of the key: the raw public key (SPKI) as the single
    /// "certificate" and a signer over the private key.
    certified_key: Arc<CertifiedKey>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

/// Why an identity could not be loaded or created. Every variant names the
/// file; none of them is the peer's fault, all are local.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading, writing or creating a file or directory failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The key file can be read or written by the group or by others.
    #[error(
        "identity key {path} {access}, which lets other users read it; \
         {} (or remove it to make a new identity)", .access.fix(.path)
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Who else may read it (its mode, or an ACL entry).
        access: platform::Access,
    },
    /// The key file belongs to another user: whoever owns it can read or
    /// replace the key, and so speak as this peer.
    #[error(
        "identity key {path} belongs to another user ({owner}, not {expected}); use an identity directory of your own"
    )]
    Owner {
        /// The key file.
        path: PathBuf,
        /// Its owner.
        owner: platform::Owner,
        /// The user running this process.
        expected: platform::Owner,
    },
    /// The key file is not an unencrypted PKCS#8 v2 key that `ring` accepts.
    #[error("identity key {path} is corrupt ({reason}); remove it to make a new identity")]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The key file holds a well-formed PKCS#8 key of another algorithm.
    #[error("identity key {path} is not an Ed25519 key; remove it to make a new identity")]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
    },
    /// The system random number generator failed.
    #[error("could not generate an Ed25519 key: the system random number generator failed")]
    Random,
}

impl Identity {
    /// A fresh identity that lives only as long as the process.
    pub fn generate() -> Result<Identity, IdentityError> {
        let pkcs8 = generate_pkcs8()?;
        Identity::from_pkcs8(&pkcs8).map_err(|reason| IdentityError::Corrupt {
            path: PathBuf::from("<generated>"),
            reason,
        })
    }

    /// Loads the identity kept in `dir`, or creates one there if the
    /// directory holds no key yet (creating the directory too, mode 0700).
    ///
    /// Refuses a key file with group or other permission bits, a corrupt
    /// file, and a key that is not Ed25519; it never replaces an existing
    /// key, so a peer keeps its id.
    pub fn load_or_generate(dir: &Path) -> Result<Identity, IdentityError> {
        create_private_dir(dir)?;
        let path = dir.join(KEY_FILE_NAME);
        match open_key_file(&path) {
            Ok(file) => return load_key_file(file, &path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IdentityError::Io { path, source }),
        }
        let pkcs8 = generate_pkcs8()?;
        match write_new_key_file(dir, &path, &pkcs8)? {
            WriteOutcome::Written => {}
            // Another process created the key between our open and our
            // link: use its key, so both agree on the peer id.
            WriteOutcome::AlreadyExists => {
                let file = open_key_file(&path).map_err(|source| IdentityError::Io {
                    path: path.clone(),
                    source,
                })?;
                return load_key_file(file, &path);
            }
        }
        Identity::from_pkcs8(&pkcs8).map_err(|reason| IdentityError::Corrupt { path, reason })
    }

    /// The peer id: the raw Ed25519 public key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The key as rustls presents it: the SPKI as the only "certificate".
    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified_key)
    }

    /// Builds an identity from PKCS#8 v2 bytes. The error is the parser's
    /// reason; `"WrongAlgorithm"` means a valid key of another algorithm.
    fn from_pkcs8(pkcs8: &[u8]) -> Result<Identity, String> {
        // `from_pkcs8` (not `_maybe_unchecked`) requires the v2 form and
        // checks that the stored public key matches the private key.
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
        let public: [u8; 32] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| "public key is not 32 bytes".to_owned())?;
        let der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
        let signer: Arc<dyn SigningKey> =
            rustls::crypto::ring::sign::any_eddsa_type(&der).map_err(|e| e.to_string())?;
        let spki = ed25519_spki(&PeerId(public));
        let certified_key = CertifiedKey::new(vec![spki.to_vec().into()], signer);
        Ok(Identity {
            peer_id: PeerId(public),
            certified_key: Arc::new(certified_key),
        })
    }
}

fn generate_pkcs8() -> Result<Vec<u8>, IdentityError> {
    let document =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| IdentityError::Random)?;
    Ok(document.as_ref().to_vec())
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist.
/// An existing directory keeps its mode: the key file's own mode protects
/// the key.
fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    platform::create_private_dir(dir).map_err(|source| IdentityError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Opens the key file without following a link (a link there could point
/// the node at any key its owner can read) and without waiting on a FIFO.
fn open_key_file(path: &Path) -> io::Result<File> {
    platform::open_no_follow(path).map_err(|refusal| match refusal {
        platform::OpenRefusal::Link => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link; a key file must be a regular file",
        ),
        platform::OpenRefusal::Io(error) => error,
    })
}

/// Reads and checks an opened key file. Owner and permissions are checked
/// on the open file itself, so a rename in between cannot swap in another
/// file.
fn load_key_file(file: File, path: &Path) -> Result<Identity, IdentityError> {
    let privacy = platform::check_owner_only(&file).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_checked_key_file(file, path, privacy)
}

/// [`load_key_file`] once the file's privacy is known.
fn load_checked_key_file(
    file: File,
    path: &Path,
    privacy: Result<(), PrivacyProblem>,
) -> Result<Identity, IdentityError> {
    let io_error = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    match privacy {
        Ok(()) => {}
        Err(PrivacyProblem::ForeignOwner { owner, expected }) => {
            return Err(IdentityError::Owner {
                path: path.to_owned(),
                owner,
                expected,
            });
        }
        Err(PrivacyProblem::OpenToOthers(access)) => {
            return Err(IdentityError::Permissions {
                path: path.to_owned(),
                access,
            });
        }
    }
    // The one bounded reader of named files ([`crate::input`]).
    let input = crate::input::Input {
        what: "peer key",
        limit: MAX_KEY_FILE_LEN,
    };
    let pkcs8 = crate::input::read_open(file, path, input).map_err(|error| match error {
        crate::input::InputError::NotRegular { .. } => IdentityError::Corrupt {
            path: path.to_owned(),
            reason: "not a regular file".to_owned(),
        },
        crate::input::InputError::TooLarge { .. } => IdentityError::Corrupt {
            path: path.to_owned(),
            reason: "more bytes than any Ed25519 key".to_owned(),
        },
        crate::input::InputError::Open { source, .. }
        | crate::input::InputError::Read { source, .. } => io_error(source),
    })?;
    Identity::from_pkcs8(&pkcs8).map_err(|reason| {
        if reason == "WrongAlgorithm" {
            IdentityError::NotEd25519 {
                path: path.to_owned(),
            }
        } else {
            IdentityError::Corrupt {
                path: path.to_owned(),
                reason,
            }
        }
    })
}

enum WriteOutcome {
    Written,
    AlreadyExists,
}

/// Writes `pkcs8` to `path` atomically: temp file (mode 0600, created
/// exclusively), fsync, hard link to the final name (fails if it exists),
/// unlink the temp name, fsync the directory.
fn write_new_key_file(
    dir: &Path,
    path: &Path,
    pkcs8: &[u8],
) -> Result<WriteOutcome, IdentityError> {
    // Unique within this process too: threads racing for a first key must
    // not share a temporary name.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let sequence = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(
        ".{KEY_FILE_NAME}.tmp-{}-{nanos}-{sequence}",
        std::process::id()
    ));
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| IdentityError::Io { path, source }
    };
    let mut file =
        platform::open_private(&temp, PrivateOpen::CreateNew).map_err(io_error(&temp))?;
    let written = file
        .write_all(pkcs8)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temp));
    drop(file);
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    // A rename that refuses to replace: the key file never has a second
    // name (a reader that finds it while a link to the temporary file
    // still existed would refuse it as hard-linked).
    let linked = match platform::rename_no_replace(&temp, path) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = fs::remove_file(&temp);
            Err(error)
        }
    };
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(WriteOutcome::AlreadyExists);
        }
        Err(source) => {
            return Err(IdentityError::Io {
                path: path.to_owned(),
                source,
            });
        }
    }
    // Make the new directory entry durable; a failure here loses nothing
    // that the next run cannot redo, so it is reported like any I/O error.
    platform::DirHandle::open(dir)
        .and_then(|d| d.sync())
        .map_err(io_error(dir))?;
    Ok(WriteOutcome::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_signs_with_the_key_it_names() {
        let identity = Identity::generate().unwrap();
        let key = identity.certified_key();
        // rustls's own view of the public key must equal our SPKI.
        let spki = key
            .key
            .public_key()
            .expect("ed25519 signer exposes its key");
        assert_eq!(spki.as_ref(), &ed25519_spki(&identity.peer_id())[..]);
        assert_eq!(key.cert.len(), 1);
        assert_eq!(key.cert[0].as_ref(), spki.as_ref());
    }

    #[test]
    fn a_key_file_that_is_a_link_or_a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let other = Identity::load_or_generate(elsewhere.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        platform::plant_link(&elsewhere.path().join(KEY_FILE_NAME), &path).unwrap();
        let error = Identity::load_or_generate(dir.path()).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        // The link is left alone: nothing replaced it with a new key.
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        drop(other);
        std::fs::remove_file(&path).unwrap();
        platform::plant_fifo(&path).unwrap();
        let error = Identity::load_or_generate(dir.path()).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    /// Unix only: it names users by uid (Windows builds the same
    /// refusal from SIDs; `scripts/windows-tests`).
    #[cfg(unix)]
    #[test]
    fn a_key_file_owned_by_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_generate(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let me = rustix::process::geteuid().as_raw();
        // The same file, read as if by someone else: refused, naming both.
        let foreign = Err(PrivacyProblem::ForeignOwner {
            owner: platform::Owner { uid: me },
            expected: platform::Owner { uid: me + 1 },
        });
        let Err(error) = load_checked_key_file(File::open(&path).unwrap(), &path, foreign) else {
            panic!("a key file owned by another user was loaded");
        };
        assert!(
            matches!(&error, IdentityError::Owner { owner, expected, .. } if owner.uid == me && expected.uid == me + 1),
            "{error}"
        );
        assert!(
            error.to_string().contains("belongs to another user"),
            "{error}"
        );
        // Its owner loads it.
        let again = load_key_file(File::open(&path).unwrap(), &path).unwrap();
        assert_eq!(again.peer_id(), first.peer_id());
    }

    #[test]
    fn key_file_content_is_pkcs8_v2_ed25519() {
        let pkcs8 = generate_pkcs8().unwrap();
        assert_eq!(pkcs8.len(), 83);
        // SEQUENCE, version 1 (v2), AlgorithmIdentifier id-Ed25519.
        assert_eq!(
            &pkcs8[..12],
            &[
                0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70
            ]
        );
    }

    #[test]
    fn two_generated_identities_differ() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        assert_ne!(a.peer_id(), b.peer_id());
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let identity = Identity::generate().unwrap();
        let text = format!("{identity:?}");
        assert!(text.contains("peer_id"));
        assert!(!text.contains("certified_key"));
    }

    #[test]
    fn pkcs8_v1_without_public_key_is_refused_as_corrupt() {
        // A v1 PKCS#8 Ed25519 key (as `openssl genpkey` writes): ring's
        // strict parser wants v2, whose public key it can check.
        let mut v1 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v1.extend_from_slice(&[7u8; 32]);
        let error = Identity::from_pkcs8(&v1).map(|_| ()).unwrap_err();
        assert_ne!(error, "WrongAlgorithm");
    }
}
