//! Errors of the resume layer, by blame: a damaged state file
//! ([`StateError`]: fall back, never trust it), a directory that holds
//! another download or a newer format (refused, nothing written), local
//! misuse, and I/O (the disk, named with the file and the action).

use std::fmt;
use std::io;
use std::path::PathBuf;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::GeometryError;
use minimodel_verifier::merkle::ProofError;

use super::dir::UnsafeKind;
use super::state::{MAX_STATE_BYTES, STATE_FORMAT, StateBinding};

/// Why a state file cannot be used. Every variant except
/// [`StateError::UnsupportedFormat`] means the file is damaged: the loader
/// falls back to the previous generation or rechecks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No bytes at all.
    #[error("the state file is empty")]
    Empty,
    /// Larger than any valid state.
    #[error("the state file is {len} bytes; no valid state is larger than {MAX_STATE_BYTES}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not JSON, or cut short.
    #[error("the state file is not valid JSON: {0}")]
    Syntax(String),
    /// A JSON object without a `format` string.
    #[error("the state file has no format field")]
    MissingFormat,
    /// A format this version does not read (a newer version wrote it, or
    /// it is another kind of file). Not a damaged file: it is refused.
    #[error("the state file has format {found:?}; this version reads only {STATE_FORMAT:?}")]
    UnsupportedFormat {
        /// The `format` value.
        found: String,
    },
    /// A missing, unknown, duplicate or mistyped field, or a bad id or digest.
    #[error("the state file does not follow {STATE_FORMAT}: {0}")]
    Schema(String),
    /// A chunk geometry no manifest can have.
    #[error(
        "{artifact_bytes} bytes in chunks of {chunk_size} with {chunk_count} chunks is not a valid chunk geometry: {reason}"
    )]
    Geometry {
        /// `artifact_bytes`.
        artifact_bytes: u64,
        /// `chunk_size`.
        chunk_size: u32,
        /// `chunk_count`.
        chunk_count: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The `verified` bitfield is not lowercase hex of the right length with
    /// clear spare bits.
    #[error("the verified bitfield is invalid: {0}")]
    Bitfield(String),
    /// `chunk_hashes` does not hold one hash per verified chunk.
    #[error("{found} chunk hashes for {expected} verified chunks")]
    ChunkHashCount {
        /// Verified chunks.
        expected: u32,
        /// Hashes given.
        found: usize,
    },
    /// A `tree_nodes` entry out of range or out of order.
    #[error("tree node #{entry} (level {level}, position {position}): {reason}")]
    TreeNode {
        /// Its place in the list.
        entry: usize,
        /// Its level.
        level: u32,
        /// Its position.
        position: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// `checkpoint_at` is not `YYYY-MM-DDTHH:MM:SSZ`.
    #[error("checkpoint time {0:?} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SSZ)")]
    Time(String),
    /// No `checksum` field.
    #[error("the state file has no checksum")]
    MissingChecksum,
    /// The content does not hash to the stored checksum.
    #[error("checksum mismatch: the file says {stored}, its content hashes to {computed}")]
    Checksum {
        /// The `checksum` field.
        stored: Sha256Digest,
        /// SHA-256 of the canonical content.
        computed: Sha256Digest,
    },
    /// The Merkle knowledge does not lead to the root.
    #[error("the Merkle knowledge is inconsistent: {0}")]
    Inconsistent(#[from] KnowledgeError),
}

impl StateError {
    /// Whether the file is of a format this version does not read (refused)
    /// rather than damaged (fallen back from).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, StateError::UnsupportedFormat { .. })
    }
}

/// Saved Merkle knowledge that does not check out against the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnowledgeError {
    /// A node computed from its children differs from the one stored (or
    /// from the root).
    #[error("node (level {level}, position {position}) disagrees with its children")]
    Conflict {
        /// Its level.
        level: u32,
        /// Its position.
        position: u32,
    },
    /// Not one chunk hash per verified chunk.
    #[error("{found} chunk hashes for {expected} verified chunks")]
    HashCount {
        /// Verified chunks.
        expected: u32,
        /// Hashes given.
        found: usize,
    },
    /// A verified chunk whose path to the root is not fully known.
    #[error("verified chunk {index} has no complete proof")]
    MissingProof {
        /// The chunk.
        index: u32,
    },
}

/// Why a download directory could not be opened, checkpointed or finished.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// A state file of another download is in the directory.
    #[error(
        "{path} belongs to another download: it holds {found}, but the manifest describes {expected}; move it away or choose another directory"
    )]
    ForeignState {
        /// The state file.
        path: PathBuf,
        /// What the state file is bound to.
        found: Box<StateBinding>,
        /// What the manifest describes.
        expected: Box<StateBinding>,
    },
    /// A state file of a format this version cannot read.
    #[error(
        "{path} has format {found:?}, which this version of minimodel cannot read (it reads {STATE_FORMAT:?}); use the version that wrote it, or move the file away to start over"
    )]
    UnsupportedState {
        /// The state file.
        path: PathBuf,
        /// Its `format`.
        found: String,
    },
    /// The final file exists and its receipt is for another artifact.
    #[error(
        "{path} is another artifact: its receipt says {found}, but the manifest describes {expected}; move it away or choose another directory"
    )]
    ForeignComplete {
        /// The final file.
        path: PathBuf,
        /// What its receipt describes.
        found: Box<StateBinding>,
        /// What the manifest describes.
        expected: Box<StateBinding>,
    },
    /// The final file exists without a usable receipt: it is not ours to
    /// overwrite.
    #[error(
        "{path} exists but {receipt} {problem}; check it with `minimodel verify`, or move it away to download again"
    )]
    UnverifiedFinal {
        /// The final file.
        path: PathBuf,
        /// Where its receipt should be.
        receipt: PathBuf,
        /// What is wrong with the receipt.
        problem: String,
    },
    /// A file under the name of one of the download's own files (its
    /// receipt, chunk list or peer list) that is not one: the user's own,
    /// not ours to overwrite.
    #[error(
        "{path} exists and is not a minimodel {what}; move it away or choose another directory"
    )]
    NotOurs {
        /// The file.
        path: PathBuf,
        /// What the download would write there.
        what: &'static str,
    },
    /// Another process (a fetch, a companion) has the same download open
    /// in this directory.
    #[error(
        "{path} is in use: a download of {model_id} into this directory is open elsewhere (another fetch, or a companion's run, perhaps still stopping); wait for it to end, stop it, or choose another directory"
    )]
    InUse {
        /// The download's lock file.
        path: PathBuf,
        /// The artifact.
        model_id: String,
    },
    /// The final file appeared while downloading: it is not overwritten.
    #[error("{path} appeared while downloading and is not overwritten; move it away and run again")]
    ArtifactInTheWay {
        /// The final file.
        path: PathBuf,
    },
    /// The manifest's geometry cannot be cut into chunks, or its chunks
    /// are listed and the list was not given.
    #[error("no chunk geometry for the manifest")]
    Geometry(#[from] GeometryError),
    /// A chunk index outside the artifact.
    #[error("chunk {index} is out of range: the artifact has {count} chunks")]
    ChunkOutOfRange {
        /// The index.
        index: u32,
        /// Chunks in the artifact.
        count: u32,
    },
    /// The proof given with a verified chunk does not lead to the root
    /// (local misuse: it must be the proof the chunk was verified with).
    #[error("the proof given for a verified chunk does not lead to the Merkle root")]
    Proof(#[from] ProofError),
    /// `finish` before every chunk was verified.
    #[error("the download is not complete: {missing} of {count} chunks are missing")]
    Incomplete {
        /// Chunks not verified.
        missing: u32,
        /// Chunks in the artifact.
        count: u32,
    },
    /// `finish` with a receipt for another artifact.
    #[error("the receipt does not describe this download: {field} differs")]
    ReceiptMismatch {
        /// The first field that differs.
        field: &'static str,
    },
    /// Something other than a regular file of ours is where a file we
    /// write belongs (a planted link, say): refused and left untouched.
    #[error(
        "{path} {kind}; minimodel only writes over regular files it owns, so it stops here and leaves it untouched (move it away, or choose another directory)"
    )]
    UnsafeEntry {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: UnsafeKind,
    },
    /// A directory to write in (a download's, an output's) names something
    /// that is not one (a file, say): left as it is.
    #[error(
        "{path} is not a directory (a file is there); name a directory, or a path where one can be created"
    )]
    NotADirectory {
        /// What was given as the directory.
        path: PathBuf,
    },
    /// The disk said no.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// To which file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ResumeError {
    /// Whether the disk is full (`ENOSPC`): free space and run again.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, ResumeError::Io { source, .. } if source.raw_os_error() == Some(28))
    }

    /// Whether the error is I/O (the disk), not the directory's content.
    pub fn is_io(&self) -> bool {
        matches!(self, ResumeError::Io { .. })
    }

    /// Whether the directory holds something this download refuses to
    /// touch or use (another download's files, an unknown format, a file
    /// that is not ours): invalid input, not a transfer failure.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, ResumeError::Io { .. } | ResumeError::Proof(_))
    }
}

/// An error and its causes, one sentence each, for a person to read.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Wraps an I/O error with what was being done to which path.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> ResumeError {
    let path = path.into();
    move |source| ResumeError::Io {
        action,
        path,
        source,
    }
}

impl fmt::Display for StateBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model {} ({} bytes, {} chunks of {} bytes, merkle root {}, artifact sha256 {})",
            self.model_id,
            self.artifact_bytes,
            self.chunk_count,
            self.chunk_size,
            self.merkle_root,
            self.artifact_sha256
        )
    }
}
