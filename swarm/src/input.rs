//! One bounded reader for every file a person or another program names:
//! manifests, offers, import requests, chunk lists, keys, keyrings,
//! rotations, receipts, channel items and the JSON documents the
//! companion's commands take. The next kind of file goes through it too.
//!
//! A named file may be anything: a FIFO that nobody writes to (a read
//! waits forever), `/dev/zero` or a link to it (a read to its end never
//! ends), a sparse file of gigabytes that takes no disk, a directory. So
//! every one is:
//! - opened without waiting ([`crate::platform::open_nonblocking`]: a FIFO
//!   opens at once where FIFOs exist), and the open handle, never the
//!   name, checked to be a regular file; anything else is refused unread
//!   ([`InputError::NotRegular`]);
//! - refused unread when the size the system gives is over the limit of
//!   its kind ([`Input`]), and read through a reader that stops one byte
//!   past that limit, so a file that grows between the two is refused all
//!   the same ([`InputError::TooLarge`]).
//!
//! Memory is at most the limit and a byte whatever the path names, and
//! no read waits on a writer. What is refused is the caller's input (exit
//! 3 in the command line), said with the path and the kind of file.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use crate::platform;

/// A kind of file a person names, and the most bytes one may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// What it is, for messages ("manifest", "offer", ...).
    pub what: &'static str,
    /// The most bytes one may have.
    pub limit: u64,
}

impl Input {
    /// A manifest (`docs/manifest-v0.md`: at most 64 KiB).
    pub const MANIFEST: Input = Input {
        what: "manifest",
        limit: minimodel_verifier::manifest::MAX_MANIFEST_LEN as u64,
    };
    /// A peer offer (`docs/formats.md`).
    pub const OFFER: Input = Input {
        what: "offer",
        limit: 256 * 1024,
    };
    /// An import request (the same limit as an offer: it holds offers).
    pub const REQUEST: Input = Input {
        what: "import request",
        limit: Self::OFFER.limit,
    };
    /// A key file, public or secret (`docs/signing.md`).
    pub const KEY_FILE: Input = Input {
        what: "key file",
        limit: minimodel_verifier::signing::keyfile::MAX_KEY_FILE_LEN as u64,
    };
    /// A keyring of pinned publisher keys.
    pub const KEYRING: Input = Input {
        what: "keyring",
        limit: minimodel_verifier::signing::keyring::MAX_KEYRING_LEN as u64,
    };
    /// A key rotation statement.
    pub const ROTATION: Input = Input {
        what: "key rotation",
        limit: minimodel_verifier::signing::rotation::MAX_ROTATION_LEN as u64,
    };
    /// A receipt (`docs/formats.md`: at most 1 MiB).
    pub const RECEIPT: Input = Input {
        what: "receipt",
        limit: 1 << 20,
    };
    /// A channel item kept in a file.
    pub const CHANNEL_ITEM: Input = Input {
        what: "channel item",
        limit: minimodel_verifier::channel_state::MAX_ITEM_FILE_LEN as u64,
    };

    /// The chunk list of an artifact of `chunks` chunks, in either form
    /// (`docs/merkle.md`): at most 74 bytes a chunk (a hex SHA-256, and in
    /// `slm-parts-merkle-v0` a space and a length, and its newline) and a
    /// header line.
    pub fn chunk_list(chunks: u64) -> Input {
        Input {
            what: "chunk list",
            limit: chunks
                .saturating_mul(minimodel_verifier::chunk_list::MAX_LISTED_LINE as u64)
                .saturating_add(4096),
        }
    }

    /// A JSON document of another kind, at most `limit` bytes.
    pub const fn json(what: &'static str, limit: u64) -> Input {
        Input { what, limit }
    }
}

/// Why a named file was not read. Every kind names the path and what the
/// file was to be.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// It could not be opened (missing, a permission, a link refused).
    #[error("cannot read {what} {}: {source}", path.display())]
    Open {
        /// What it was to be.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A directory, a FIFO, a device or a socket.
    #[error("{what} {} is not a regular file ({kind}); name the file itself", path.display())]
    NotRegular {
        /// What it was to be.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// Over its kind's limit: not such a file.
    #[error("{what} {} is larger than {limit} bytes, the most a {what} has", path.display())]
    TooLarge {
        /// What it was to be.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// Reading it failed part way.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What it was to be.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl InputError {
    /// Whether nothing is at the path.
    pub fn is_missing(&self) -> bool {
        matches!(self, InputError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads the file at `path` (links followed, as a person means them),
/// within `input`'s limit. See the module docs.
pub fn read_input(path: &Path, input: Input) -> Result<Vec<u8>, InputError> {
    let file = platform::open_nonblocking(path).map_err(|source| InputError::Open {
        what: input.what,
        path: path.to_owned(),
        source,
    })?;
    read_open(file, path, input)
}

/// [`read_input`], `None` when nothing is at `path`.
pub fn read_input_if_present(path: &Path, input: Input) -> Result<Option<Vec<u8>>, InputError> {
    match read_input(path, input) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.is_missing() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Reads `file`, opened from `path` without waiting (by a caller that
/// opens it its own way: without following a link, say), from its start,
/// within `input`'s limit: the checks of [`read_input`] on the open
/// handle.
pub fn read_open(mut file: File, path: &Path, input: Input) -> Result<Vec<u8>, InputError> {
    let read_error = |source| InputError::Read {
        what: input.what,
        path: path.to_owned(),
        source,
    };
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        let kind = if metadata.is_dir() {
            "a directory"
        } else {
            "a FIFO, a device or a socket"
        };
        return Err(InputError::NotRegular {
            what: input.what,
            path: path.to_owned(),
            kind,
        });
    }
    let too_large = || InputError::TooLarge {
        what: input.what,
        path: path.to_owned(),
        limit: input.limit,
    };
    if metadata.len() > input.limit {
        return Err(too_large());
    }
    // From the start: a positional read before this one moves a Windows
    // handle's position.
    file.rewind().map_err(read_error)?;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    Read::by_ref(&mut file)
        .take(input.limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > input.limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Input = Input::json("test document", 16);

    #[test]
    fn a_file_within_its_limit_is_read_whole_and_one_beyond_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc");
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        assert_eq!(read_input(&path, SMALL).unwrap(), b"0123456789abcdef");
        std::fs::write(&path, b"0123456789abcdefg").unwrap();
        let error = read_input(&path, SMALL).unwrap_err();
        assert!(
            matches!(error, InputError::TooLarge { limit: 16, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("test document"), "{error}");
        assert!(
            error.to_string().contains("larger than 16 bytes"),
            "{error}"
        );
    }

    #[test]
    fn a_sparse_file_of_gigabytes_is_refused_by_its_size_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(3 << 30).unwrap();
        let error = read_input(&path, Input::RECEIPT).unwrap_err();
        assert!(matches!(error, InputError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn a_directory_is_not_read_and_a_missing_file_is_said_missing() {
        let dir = tempfile::tempdir().unwrap();
        match read_input(dir.path(), SMALL) {
            // Windows opens no directory without backup semantics.
            Err(InputError::NotRegular { kind, .. }) => assert_eq!(kind, "a directory"),
            Err(InputError::Open { .. }) => {}
            other => panic!("{other:?}"),
        }
        let missing = dir.path().join("missing");
        assert!(read_input(&missing, SMALL).unwrap_err().is_missing());
        assert!(read_input_if_present(&missing, SMALL).unwrap().is_none());
    }

    #[test]
    fn a_handle_opened_elsewhere_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc");
        std::fs::write(&path, b"whole").unwrap();
        let mut file = File::open(&path).unwrap();
        let mut first = [0u8; 2];
        file.read_exact(&mut first).unwrap();
        assert_eq!(read_open(file, &path, SMALL).unwrap(), b"whole");
    }
}

/// FIFOs and devices exist only where the system has them: these tests
/// are the Unix adapter's.
#[cfg(all(test, unix))]
mod unix_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_fifo_nobody_writes_and_a_link_to_dev_zero_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for path in [&fifo, &zero, &PathBuf::from("/dev/zero")] {
            let started = Instant::now();
            let error = read_input(path, Input::MANIFEST).unwrap_err();
            assert!(
                matches!(error, InputError::NotRegular { .. }),
                "{}: {error}",
                path.display()
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }
}
