//! `status(DIR)`: every download in a directory, partial or complete, read
//! from its state files and receipts without touching the artifact bytes.
//! A damaged file is listed as such, never an error.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use minimodel_verifier::ModelId;
use serde::Serialize;

use super::error::{ResumeError, io_error};
use super::files::{self, DownloadPaths, StateFile};
use super::state::PartialState;

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
    models
        .iter()
        .map(|model_id| one(&DownloadPaths::new(dir, model_id), model_id))
        .collect()
}

fn one(paths: &DownloadPaths, model_id: &ModelId) -> Result<DownloadStatus, ResumeError> {
    if files::exists(&paths.artifact) {
        return Ok(match files::load_receipt(&paths.receipt) {
            Ok(receipt) => DownloadStatus {
                chunks_verified: Some(receipt.chunk_count),
                chunk_count: Some(receipt.chunk_count),
                bytes_verified: Some(receipt.artifact_bytes),
                artifact_bytes: Some(receipt.artifact_bytes),
                percent: Some(100.0),
                last_checkpoint: Some(receipt.verified_at.clone()),
                ..DownloadStatus::bare(model_id, StatusKind::Complete)
            },
            Err(problem) => DownloadStatus {
                note: Some(format!("{} {problem}", paths.receipt.display())),
                ..DownloadStatus::bare(model_id, StatusKind::Unverified)
            },
        });
    }
    let current = files::load_state(&paths.state)?;
    let previous = match current {
        StateFile::Usable(_) => StateFile::Missing,
        _ => files::load_state(&paths.previous)?,
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
