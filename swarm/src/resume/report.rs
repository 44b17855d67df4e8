//! What opening a download directory may be asked to do, and what it
//! reports having done.

use std::fmt;
use std::time::Duration;

use minimodel_verifier::receipt::ImportReceipt;

use super::error::StateError;
use super::files::DownloadPaths;
use super::partial::PartialDownload;

/// How much to trust a state file when resuming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeOptions {
    /// Rehash every chunk the state lists (`--recheck`) instead of a
    /// sample. Default false.
    pub recheck: bool,
    /// Chunks of a trusted state rehashed at start; a mismatch turns into a
    /// full recheck. Default 4. 0 skips the sample (weakens the check
    /// against bytes changed while the download was stopped).
    pub sample: usize,
    /// Seed of the sample. Default `None`: a new seed each run, so that
    /// repeated resumes look at different chunks. Tests set it.
    pub sample_seed: Option<u64>,
    /// For a manifest whose scheme lists its chunks
    /// (`slm-parts-merkle-v0`): their geometry, from its checked chunk
    /// list ([`super::reuse::NewChunkList::listed_geometry`]). Such a
    /// download is not opened without it. Default `None`.
    pub listed: Option<minimodel_verifier::ChunkGeometry>,
}

impl Default for ResumeOptions {
    fn default() -> Self {
        Self {
            recheck: false,
            sample: 4,
            sample_seed: None,
            listed: None,
        }
    }
}

/// What opening a directory found.
// Made once per download: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum OpenedDownload {
    /// `DIR/<model-id>.slm` is there with a receipt for this artifact:
    /// nothing to fetch.
    Complete(CompleteDownload),
    /// A partial download to continue (or a new one).
    Partial(PartialDownload, ResumeReport),
}

/// A download that was finished before.
#[derive(Debug, Clone)]
pub struct CompleteDownload {
    /// Its files.
    pub paths: DownloadPaths,
    /// Its receipt.
    pub receipt: ImportReceipt,
    /// When its bytes were last checked (RFC 3339 UTC): by this open, or
    /// as its receipt records.
    pub verified_at: String,
    /// Whether this open read the file.
    pub check: CompleteCheck,
}

/// What opening did with a finished file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteCheck {
    /// Not read: its receipt says it was verified at `verified_at`, and it
    /// has not been modified since.
    Unchanged,
    /// Not read, but modified after it was verified: opening checks it
    /// again (this value is only seen by the code that decides that).
    ChangedSinceVerified,
    /// Read whole and passed every check just now.
    RecheckedNow,
}

/// What opening did, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeReport {
    /// What happened.
    pub outcome: ResumeOutcome,
    /// Chunks verified after opening.
    pub chunks_verified: u32,
    /// Chunks in the artifact.
    pub chunk_count: u32,
    /// Chunks verified after the last checkpoint of the run before,
    /// brought back from the journal (their bytes on disk checked again).
    pub chunks_from_journal: u32,
    /// Bytes rehashed while opening.
    pub bytes_rechecked: u64,
    /// Why the current state was not used, when it exists but was not.
    pub current_problem: Option<StateError>,
    /// Why the previous state was not used, when it was needed and exists.
    pub previous_problem: Option<StateError>,
    /// The state was written under another manifest file for the same
    /// artifact (other metadata, same bytes); the next checkpoint records
    /// this one.
    pub manifest_changed: bool,
    /// Wall time of opening.
    pub elapsed: Duration,
}

/// What opening did with what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Nothing was there: a new `.part` and a state of generation 0.
    Fresh,
    /// The state was trusted; a sample of its chunks rehashed clean.
    Resumed {
        /// Chunks taken over.
        chunks: u32,
        /// Chunks rehashed.
        sampled: u32,
    },
    /// Every chunk the state lists was rehashed; bad ones were dropped.
    Rechecked {
        /// Why.
        reason: RecheckReason,
        /// Chunks that hashed right.
        good: u32,
        /// Chunks dropped.
        dropped: u32,
    },
    /// The current state was unusable (or missing); the previous
    /// generation was used and every chunk it lists rechecked.
    FellBack {
        /// The generation used.
        generation: u64,
        /// Chunks that hashed right.
        good: u32,
        /// Chunks dropped.
        dropped: u32,
    },
    /// No usable state, but the whole `.part` hashes to the Merkle root:
    /// every chunk is verified.
    RecoveredWhole {
        /// Chunks.
        chunks: u32,
    },
    /// Starting over: nothing could be trusted. The `.part` is kept (its
    /// space stays reserved), no chunk counts as verified.
    Restarted {
        /// Why.
        reason: RestartReason,
    },
    /// The finished file failed its check and is a partial download again:
    /// its good chunks are kept, the damaged ones are fetched again.
    Repairing {
        /// Chunks that hashed right.
        good: u32,
        /// Chunks dropped.
        dropped: u32,
        /// Whether its chunk list told which chunks are bad; without it
        /// no chunk can be trusted and every one is fetched again.
        chunk_list: bool,
    },
}

/// Why every listed chunk was rehashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecheckReason {
    /// `--recheck`.
    Requested,
    /// A sampled chunk did not hash to its chunk hash.
    SampleMismatch {
        /// The first one.
        chunk: u32,
    },
    /// The `.part` did not have the artifact's length.
    PartResized {
        /// Its length.
        found: u64,
    },
}

/// Why a download started over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartReason {
    /// A state exists but its `.part` does not.
    PartMissing,
    /// No usable state, and the `.part`'s chunks do not give the Merkle
    /// root: without chunk hashes no single chunk can be trusted.
    PartUnverified,
}

impl fmt::Display for ResumeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeOutcome::Fresh => write!(f, "new download"),
            ResumeOutcome::Resumed { chunks, sampled } => {
                write!(
                    f,
                    "resumed {chunks} verified chunks ({sampled} rehashed as a sample)"
                )
            }
            ResumeOutcome::Rechecked {
                reason,
                good,
                dropped,
            } => {
                let why = match reason {
                    RecheckReason::Requested => "as asked".to_owned(),
                    RecheckReason::SampleMismatch { chunk } => {
                        format!("because sampled chunk {chunk} changed on disk")
                    }
                    RecheckReason::PartResized { found } => {
                        format!("because the .part was {found} bytes")
                    }
                };
                write!(
                    f,
                    "rechecked every chunk {why}: {good} good, {dropped} dropped"
                )
            }
            ResumeOutcome::FellBack {
                generation,
                good,
                dropped,
            } => write!(
                f,
                "state unusable, fell back to generation {generation}: {good} chunks good, {dropped} dropped"
            ),
            ResumeOutcome::RecoveredWhole { chunks } => write!(
                f,
                "no state, but the whole .part hashes to the Merkle root: {chunks} chunks verified"
            ),
            ResumeOutcome::Restarted {
                reason: RestartReason::PartMissing,
            } => write!(f, "state found without its .part: starting over"),
            ResumeOutcome::Repairing {
                dropped,
                chunk_list: true,
                ..
            } => write!(
                f,
                "the finished file failed its check: {dropped} damaged {} fetched again, the rest is kept",
                if *dropped == 1 {
                    "chunk is"
                } else {
                    "chunks are"
                }
            ),
            ResumeOutcome::Repairing {
                chunk_list: false, ..
            } => write!(
                f,
                "the finished file failed its check and has no usable chunk list to tell the damaged chunks: every chunk is fetched again"
            ),
            ResumeOutcome::Restarted {
                reason: RestartReason::PartUnverified,
            } => write!(
                f,
                "no usable state and the .part does not hash to the Merkle root: starting over"
            ),
        }
    }
}
