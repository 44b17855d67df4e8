//! One module per command.

pub mod catalog;
pub mod demo;
pub mod dht;
pub mod docs;
pub mod fetch;
pub mod fixture;
pub mod import;
pub mod manifest;
pub mod network;
pub mod request;
pub mod seed;
pub mod status;
pub mod verify;

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use minimodel_verifier::Manifest;
use minimodel_verifier::digest::Sha256Digest;

use crate::exit::{Exit, Failure, OrExit};

/// A manifest file as read: its parsed form and the SHA-256 of its bytes.
pub struct LoadedManifest {
    pub manifest: Manifest,
    pub sha256: Sha256Digest,
}

/// Reads and parses a manifest; a bad one is invalid input (exit 3).
pub fn load_manifest(path: &Path) -> Result<LoadedManifest, Failure> {
    let bytes = fs::read(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))
        .or_exit(Exit::InvalidInput)?;
    let manifest = Manifest::parse_bytes(&bytes)
        .with_context(|| format!("manifest {} is invalid", path.display()))
        .or_exit(Exit::InvalidInput)?;
    Ok(LoadedManifest {
        manifest,
        sha256: Sha256Digest::of(&bytes),
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
