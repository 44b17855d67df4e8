//! `status(DIR)`: every download in a directory, partial or complete, read
//! from its state files and receipts without touching the artifact bytes;
//! [`verify_status`] reads the bytes too and says what they are now.
//! A damaged file is listed as such, never an error. Nothing is written.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex};
use minimodel_verifier::chunk_list::{ChunkList, ListShape};
use minimodel_verifier::hashing::hash_reader_in;
use minimodel_verifier::manifest::ChunkScheme;
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::{ModelId, Sha256Digest};
use serde::Serialize;

use super::dir::SafeDir;
use super::error::{ResumeError, io_error};
use super::files::{DownloadPaths, StateFile, load_receipt, load_state};
use super::recheck::{RecheckProgress, hash_chunks};
use super::state::PartialState;
use crate::store::FileStorage;

/// What a download in a directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusKind {
    /// A partial download with a usable state.
    Partial,
    /// `<model-id>.slm` with a receipt.
    Complete,
    /// A partial download whose state is damaged or missing; the next run
    /// falls back to the previous generation or rechecks the `.part`.
    Corrupt,
    /// A state of a format this version does not read.
    Unsupported,
    /// `<model-id>.slm` without a usable receipt.
    Unverified,
}

/// One download in a directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadStatus {
    /// The model id (from the file names).
    pub model_id: String,
    /// What it is.
    pub kind: StatusKind,
    /// Verified chunks, when known.
    pub chunks_verified: Option<u32>,
    /// Chunks in the artifact, when known.
    pub chunk_count: Option<u32>,
    /// Verified bytes, when known.
    pub bytes_verified: Option<u64>,
    /// Bytes in the artifact, when known.
    pub artifact_bytes: Option<u64>,
    /// `bytes_verified / artifact_bytes` in percent, when known.
    pub percent: Option<f64>,
    /// Time of the last checkpoint (of the receipt, when complete).
    pub last_checkpoint: Option<String>,
    /// Generation of the state the figures come from.
    pub generation: Option<u64>,
    /// What is wrong or notable, in words.
    pub note: Option<String>,
    /// What reading the bytes found ([`verify_status`] only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<BytesCheck>,
}

/// What [`verify_status`] found when it read a download's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BytesCheck {
    /// When, RFC 3339 UTC.
    pub checked_at: String,
    /// Whether every byte that should be good is.
    pub ok: bool,
    /// Chunks checked.
    pub chunks_checked: u32,
    /// Of those, chunks whose bytes are not what they should be; `None`
    /// when a damaged finished file has no chunk list to tell which.
    pub bad_chunks: Option<u32>,
    /// Bytes read.
    pub bytes_read: u64,
}

impl DownloadStatus {
    fn bare(model_id: &ModelId, kind: StatusKind) -> Self {
        Self {
            model_id: model_id.to_string(),
            kind,
            chunks_verified: None,
            chunk_count: None,
            bytes_verified: None,
            artifact_bytes: None,
            percent: None,
            last_checkpoint: None,
            generation: None,
            note: None,
            check: None,
        }
    }

    fn with_state(mut self, state: &PartialState) -> Self {
        let bytes = state.bytes_verified();
        self.chunks_verified = Some(state.chunks_verified());
        self.chunk_count = Some(state.binding.chunk_count);
        self.bytes_verified = Some(bytes);
        self.artifact_bytes = Some(state.binding.artifact_bytes);
        self.percent = Some(percent(bytes, state.binding.artifact_bytes));
        self.last_checkpoint = Some(state.checkpoint_at.clone());
        self.generation = Some(state.generation);
        self
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// The file suffixes that belong to a download, longest first.
const SUFFIXES: [&str; 4] = [".slm.state.prev", ".slm.state", ".slm.part", ".slm"];

/// Every download in `dir`, by model id.
pub fn status(dir: &Path) -> Result<Vec<DownloadStatus>, ResumeError> {
    let safe = SafeDir::open(dir, false)?;
    model_ids(dir)?
        .iter()
        .map(|model_id| one(&safe, &DownloadPaths::new(dir, model_id), model_id))
        .collect()
}

/// [`status`], and every download's bytes read and checked: a finished
/// file against its receipt's SHA-256 and Merkle root (its chunk list names
/// the damaged chunks), a partial one's verified chunks against their chunk
/// hashes. `progress` hears of each download's bytes as they are read.
pub fn verify_status(
    dir: &Path,
    progress: &(dyn Fn(&str, RecheckProgress) + Sync),
) -> Result<Vec<DownloadStatus>, ResumeError> {
    let safe = SafeDir::open(dir, false)?;
    let mut list = Vec::new();
    for model_id in model_ids(dir)? {
        let paths = DownloadPaths::new(dir, &model_id);
        let mut entry = one(&safe, &paths, &model_id)?;
        let report = |p: RecheckProgress| progress(model_id.as_str(), p);
        entry.check = match entry.kind {
            StatusKind::Complete => Some(check_complete(&safe, &paths, &report)?),
            StatusKind::Partial | StatusKind::Corrupt => check_partial(&safe, &paths, &report)?,
            StatusKind::Unsupported | StatusKind::Unverified => None,
        };
        list.push(entry);
    }
    Ok(list)
}

fn model_ids(dir: &Path) -> Result<BTreeSet<ModelId>, ResumeError> {
    let entries = fs::read_dir(dir).map_err(io_error("list", dir))?;
    let mut models = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = SUFFIXES.iter().find_map(|suffix| name.strip_suffix(suffix));
        if let Some(model_id) = stem.and_then(|stem| ModelId::new(stem).ok()) {
            models.insert(model_id);
        }
    }
    Ok(models)
}

fn check_complete(
    dir: &SafeDir,
    paths: &DownloadPaths,
    progress: &(dyn Fn(RecheckProgress) + Sync),
) -> Result<BytesCheck, ResumeError> {
    let names = &paths.names;
    let receipt =
        load_receipt(dir, &names.receipt).map_err(|problem| ResumeError::UnverifiedFinal {
            path: paths.artifact.clone(),
            receipt: paths.receipt.clone(),
            problem,
        })?;
    let file = dir
        .open_read(&names.artifact)?
        .ok_or_else(|| io_error("open", &paths.artifact)(std::io::ErrorKind::NotFound.into()))?;
    let count = receipt.chunk_count;
    let chunk_size = u64::from(receipt.chunk_size.max(1));
    let total = receipt.artifact_bytes;
    let report = |bytes: u64| {
        progress(RecheckProgress {
            chunks_done: (bytes / chunk_size).min(u64::from(count)) as u32,
            chunks_total: count,
            bytes_done: bytes,
            bytes_total: total,
        })
    };
    // A receipt names no scheme: more chunks than fixed-size ones make
    // means they were listed, and then they are the file's own `.slm`
    // parts (a file that is no `.slm` any more fails as cut fixed-size).
    let fixed = ChunkGeometry::new(receipt.artifact_bytes, receipt.chunk_size);
    let geometry = match fixed {
        Ok(fixed) if fixed.chunk_count() == count => fixed,
        // Read through the file already open (the directory may hold a
        // link planted since), then from its start again.
        _ => minimodel_verifier::slm::read_slm(&mut &file)
            .ok()
            .and_then(|slm| {
                ChunkGeometry::slm_parts(slm.file_len, receipt.chunk_size, &slm.part_starts).ok()
            })
            .or_else(|| ChunkGeometry::new(receipt.artifact_bytes, receipt.chunk_size).ok())
            .ok_or_else(|| {
                io_error("read", &paths.artifact)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the receipt's chunk geometry is impossible",
                ))
            })?,
    };
    std::io::Seek::seek(&mut &file, std::io::SeekFrom::Start(0))
        .map_err(io_error("read", &paths.artifact))?;
    let hashes =
        hash_reader_in(&file, &geometry, &report).map_err(io_error("read", &paths.artifact))?;
    let root = MerkleTree::from_chunk_hashes(hashes.chunk_hashes.clone())
        .ok()
        .map(|tree| tree.root());
    let ok = hashes.bytes == receipt.artifact_bytes
        && hashes.sha256 == receipt.artifact_sha256
        && root == Some(receipt.merkle_root);
    let bad_chunks = if ok {
        Some(0)
    } else {
        let shape = ListShape {
            scheme: if geometry.is_listed() {
                ChunkScheme::SlmParts
            } else {
                ChunkScheme::FixedSize
            },
            artifact_bytes: receipt.artifact_bytes,
            chunk_size: receipt.chunk_size,
            chunk_count: count,
        };
        own_chunk_list(dir, names, shape, receipt.merkle_root)?
            .map(|list| list.into_parts().0)
            .map(|list| {
                let mut bad = list.len().abs_diff(hashes.chunk_hashes.len());
                bad += list
                    .iter()
                    .zip(&hashes.chunk_hashes)
                    .filter(|(want, found)| want != found)
                    .count();
                bad as u32
            })
    };
    Ok(BytesCheck {
        checked_at: now_rfc3339(),
        ok,
        chunks_checked: count,
        bad_chunks,
        bytes_read: hashes.bytes,
    })
}

/// The download's chunk list in DIR, read as `shape`, when its hashes
/// give `root`.
fn own_chunk_list(
    dir: &SafeDir,
    names: &super::files::FileNames,
    shape: ListShape,
    root: Sha256Digest,
) -> Result<Option<ChunkList>, ResumeError> {
    let limit = super::plan::chunk_list_limit(shape.chunk_count);
    Ok(dir
        .read(&names.chunk_list, limit)?
        .and_then(|bytes| ChunkList::parse(&bytes, shape).ok())
        .filter(|list| {
            MerkleTree::from_chunk_hashes(list.hashes().to_vec())
                .is_ok_and(|tree| tree.root() == root)
        }))
}

/// A state file as [`load_state`] reads it; a listed download's
/// (`slm-parts-merkle-v0`) bound to its chunks' lengths, from the chunk
/// list kept in DIR while it is partial, taken only when it has the
/// state's count, bytes and root (the state holds the count and the root,
/// not the lengths).
fn load_partial_state(
    dir: &SafeDir,
    names: &super::files::FileNames,
    name: &str,
) -> Result<StateFile, ResumeError> {
    let mut file = load_state(dir, name)?;
    if let StateFile::Usable(state) = &mut file {
        let binding = &mut state.binding;
        let count = binding.chunk_count;
        let fixed = binding.geometry().map(|geometry| geometry.chunk_count());
        if fixed != Ok(count) {
            let shape = ListShape {
                scheme: ChunkScheme::SlmParts,
                artifact_bytes: binding.artifact_bytes,
                chunk_size: binding.chunk_size,
                chunk_count: count,
            };
            if let Some(list) = own_chunk_list(dir, names, shape, binding.merkle_root)? {
                binding.listed = Some(list.into_parts().1);
            }
        }
    }
    Ok(file)
}

fn check_partial(
    dir: &SafeDir,
    paths: &DownloadPaths,
    progress: &(dyn Fn(RecheckProgress) + Sync),
) -> Result<Option<BytesCheck>, ResumeError> {
    let names = &paths.names;
    let state = match load_partial_state(dir, names, &names.state)? {
        StateFile::Usable(state) => state,
        _ => match load_partial_state(dir, names, &names.previous)? {
            StateFile::Usable(state) => state,
            _ => return Ok(None),
        },
    };
    let Some(file) = dir.open_read(&names.part)? else {
        return Ok(None);
    };
    let geometry = state.binding.geometry()?;
    if geometry.chunk_count() != state.binding.chunk_count {
        // Listed chunks whose list is not in DIR: their lengths are not
        // known here.
        return Ok(None);
    }
    let storage = FileStorage::from_file(file);
    let (indices, expected): (Vec<u32>, Vec<Sha256Digest>) = state
        .knowledge
        .verified()
        .iter_ones()
        .filter_map(|index| {
            state
                .knowledge
                .chunk_hash(ChunkIndex(index.0))
                .map(|hash| (index.0, hash))
        })
        .unzip();
    let found = hash_chunks(&storage, &geometry, &indices, progress)
        .map_err(io_error("read", &paths.part))?;
    let bad = found.iter().zip(&expected).filter(|(a, b)| a != b).count() as u32;
    let bytes_read = indices
        .iter()
        .filter_map(|&index| geometry.chunk_len(ChunkIndex(index)))
        .map(u64::from)
        .sum();
    Ok(Some(BytesCheck {
        checked_at: now_rfc3339(),
        ok: bad == 0,
        chunks_checked: indices.len() as u32,
        bad_chunks: Some(bad),
        bytes_read,
    }))
}

fn one(
    dir: &SafeDir,
    paths: &DownloadPaths,
    model_id: &ModelId,
) -> Result<DownloadStatus, ResumeError> {
    let names = &paths.names;
    if dir.exists(&names.artifact) {
        if let Err(ResumeError::UnsafeEntry { kind, .. }) = dir.inspect(&names.artifact) {
            return Ok(DownloadStatus {
                note: Some(format!(
                    "{} {kind}; minimodel does not use it",
                    paths.artifact.display()
                )),
                ..DownloadStatus::bare(model_id, StatusKind::Unverified)
            });
        }
        return Ok(match load_receipt(dir, &names.receipt) {
            Ok(receipt) => DownloadStatus {
                chunks_verified: Some(receipt.chunk_count),
                chunk_count: Some(receipt.chunk_count),
                bytes_verified: Some(receipt.artifact_bytes),
                artifact_bytes: Some(receipt.artifact_bytes),
                percent: Some(100.0),
                last_checkpoint: Some(receipt.last_verified().to_owned()),
                ..DownloadStatus::bare(model_id, StatusKind::Complete)
            },
            Err(problem) => DownloadStatus {
                note: Some(format!("{} {problem}", paths.receipt.display())),
                ..DownloadStatus::bare(model_id, StatusKind::Unverified)
            },
        });
    }
    let current = load_partial_state(dir, names, &names.state)?;
    let previous = match current {
        StateFile::Usable(_) => StateFile::Missing,
        _ => load_partial_state(dir, names, &names.previous)?,
    };
    Ok(match (current, previous) {
        (StateFile::Usable(state), _) => {
            DownloadStatus::bare(model_id, StatusKind::Partial).with_state(&state)
        }
        (StateFile::Unusable(error), _) if error.is_unsupported() => DownloadStatus {
            note: Some(error.to_string()),
            ..DownloadStatus::bare(model_id, StatusKind::Unsupported)
        },
        (StateFile::Missing, StateFile::Usable(state)) => {
            let mut status = DownloadStatus::bare(model_id, StatusKind::Partial).with_state(&state);
            status.note = Some("no current state: the next run uses this previous generation and rechecks its chunks".to_owned());
            status
        }
        (StateFile::Unusable(error), StateFile::Usable(state)) => {
            let mut status = DownloadStatus::bare(model_id, StatusKind::Corrupt).with_state(&state);
            status.note = Some(format!(
                "state is damaged ({error}); the figures are from the previous generation, which the next run falls back to"
            ));
            status
        }
        (StateFile::Unusable(error), _) => DownloadStatus {
            note: Some(format!(
                "state is damaged ({error}) and no previous generation is usable; the next run rechecks the whole .part"
            )),
            ..DownloadStatus::bare(model_id, StatusKind::Corrupt)
        },
        (StateFile::Missing, StateFile::Unusable(error)) if error.is_unsupported() => {
            DownloadStatus {
                note: Some(error.to_string()),
                ..DownloadStatus::bare(model_id, StatusKind::Unsupported)
            }
        }
        (StateFile::Missing, _) => DownloadStatus {
            note: Some("no usable state; the next run rechecks the whole .part".to_owned()),
            ..DownloadStatus::bare(model_id, StatusKind::Corrupt)
        },
    })
}
