//! One module per command.

pub mod catalog;
pub mod channel;
pub mod companion;
pub mod demo;
pub mod dht;
pub mod docs;
pub mod fetch;
pub mod fixture;
pub mod follow;
pub mod import;
pub mod key;
pub mod manifest;
pub mod network;
pub mod relay;
pub mod request;
pub mod seed;
pub mod sign;
pub mod status;
pub mod ticket;
pub mod verify;

use std::fs;
use std::path::Path;

use anyhow::Context;
use minimodel_swarm::input::{Input, InputError};
use minimodel_verifier::Manifest;
use minimodel_verifier::digest::Sha256Digest;
use minimodel_verifier::document::Document;

use crate::exit::{Exit, Failure, OrExit};

/// A manifest file as read: its parsed form and the SHA-256 of its bytes.
pub struct LoadedManifest {
    pub manifest: Manifest,
    /// SHA-256 of the file's bytes.
    pub sha256: Sha256Digest,
    /// The file's bytes, handed to a manifest query when serving.
    pub bytes: std::sync::Arc<[u8]>,
}

/// Reads a file a person named through the one bounded reader
/// ([`minimodel_swarm::input`]): missing, not a regular file (a FIFO, a
/// device) or over its kind's limit is invalid input (exit 3), said at
/// once and unread; a read that fails part way is an I/O failure (exit 1).
pub fn read_input(path: &Path, input: Input) -> Result<Vec<u8>, Failure> {
    read_input_if_present(path, input)?.ok_or_else(|| {
        Failure::new(
            Exit::InvalidInput,
            anyhow::anyhow!(
                "cannot read {} {}: no such file",
                input.what,
                path.display()
            ),
        )
    })
}

/// [`read_input`], `None` when nothing is at `path`.
pub fn read_input_if_present(path: &Path, input: Input) -> Result<Option<Vec<u8>>, Failure> {
    minimodel_swarm::input::read_input_if_present(path, input).map_err(input_failure)
}

/// The exit of a file that could not be read ([`read_input`]).
pub fn input_failure(error: InputError) -> Failure {
    let exit = match error {
        InputError::Read { .. } => Exit::Transfer,
        _ => Exit::InvalidInput,
    };
    Failure::new(exit, anyhow::Error::new(error))
}

/// Reads and parses a manifest; a bad one is invalid input (exit 3).
pub fn load_manifest(path: &Path) -> Result<LoadedManifest, Failure> {
    let bytes = read_input(path, Input::MANIFEST)?;
    let manifest = Manifest::parse_bytes(&bytes)
        .with_context(|| format!("manifest {} is invalid", path.display()))
        .or_exit(Exit::InvalidInput)?;
    Ok(LoadedManifest {
        manifest,
        sha256: Sha256Digest::of(&bytes),
        bytes: bytes.into(),
    })
}

/// Checks that the `.slm` a command reads names a regular file: one that
/// does not exist, or a directory, is invalid input (exit 3), as a
/// missing manifest is, and is said before anything else is asked or
/// done. A read that fails later, in the middle of the file, stays an I/O
/// failure (exit 1).
pub fn check_slm_input(path: &Path) -> Result<(), Failure> {
    let problem = match fs::metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(meta) if meta.is_dir() => "it is a directory",
        Ok(_) => "it is not a regular file",
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "no such file",
        // Anything else (a permission, a disk) is met again, and said, by
        // the read itself.
        Err(_) => return Ok(()),
    };
    Err(Failure::new(
        Exit::InvalidInput,
        anyhow::anyhow!("cannot read {}: {problem}", path.display()),
    ))
}

/// Writes `bytes` to `path` so that a reader never sees half a file and a
/// link planted at `path` is refused, not written through (exit 3); see
/// [`minimodel_swarm::resume::write_file_atomically`].
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    minimodel_swarm::resume::write_file_atomically(path, bytes).map_err(|error| {
        let exit = if error.is_invalid_input() {
            Exit::InvalidInput
        } else {
            Exit::Transfer
        };
        Failure::new(exit, error)
    })
}

/// [`write_atomically`] for a document a user names (`-o`, `--receipt`,
/// `--offer`): a file already at `path` is replaced only when it holds the
/// same kind of document (a manifest a manifest, a receipt a receipt) or
/// nothing; anything else there, the model, a secret key, a manifest under
/// a receipt's name or a file minimodel did not write, is left as it is
/// (exit 3, a file in the way) and nothing is written.
pub fn write_document(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    check_replaceable(path, &Document::sniff(bytes))?;
    write_atomically(path, bytes)
}

/// The check of [`write_document`], for a document of kind `new`; a
/// command that works long before it writes (a whole-file check) makes it
/// first as well, so that it fails before the work. A path that is not a
/// regular file is left to [`write_atomically`], which refuses a link and
/// cannot replace a directory.
pub fn check_replaceable(path: &Path, new: &Document) -> Result<(), Failure> {
    use minimodel_verifier::document::HEAD_BYTES;
    use std::io::Read;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {}
        _ => return Ok(()),
    }
    let mut head = Vec::with_capacity(HEAD_BYTES);
    fs::File::open(path)
        .and_then(|file| file.take(HEAD_BYTES as u64).read_to_end(&mut head))
        .with_context(|| {
            format!(
                "cannot read {} to see what it holds before replacing it",
                path.display()
            )
        })
        .or_exit(Exit::Transfer)?;
    let there = Document::sniff(&head);
    if there.may_be_replaced_by(new) {
        return Ok(());
    }
    Err(Failure::new(
        Exit::InvalidInput,
        anyhow::anyhow!(
            "{} holds {}, not {}: minimodel writes over a file only when it holds the same kind of document",
            path.display(),
            there.describe(),
            new.describe()
        ),
    )
    .with_hint("name another file, or move that one away first"))
}

/// [`write_document`] for a JSON document, pretty-printed with a final
/// newline.
pub fn write_json_document(path: &Path, value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut text = serde_json::to_vec_pretty(value).or_exit(Exit::Transfer)?;
    text.push(b'\n');
    write_document(path, &text)
}
