//! The on-disk state of a partial download, so that a download resumes
//! after `kill -9`, a corrupt state file or a full disk without fetching a
//! verified chunk again. Normative spec: `docs/resume.md`; the state file
//! format: `docs/formats.md`, section "Partial download state".
//!
//! What it is: blocking functions a driver calls on a worker thread.
//! - [`PartialDownload::open`] looks at `DIR` and decides: already complete,
//!   fresh, resumed (the state is trusted, a small sample rehashed),
//!   rechecked, fallen back to the previous state generation, recovered
//!   from a bare `.part`, or restarted. It refuses, writing nothing, a
//!   directory that holds another artifact's state.
//! - The open [`PartialDownload`] holds the `.part` storage, the verified
//!   chunks with their hashes and Merkle nodes (to serve proofs), and the
//!   crash-safe [`PartialDownload::checkpoint`].
//! - [`PartialDownload::finish`] moves the finished `.part` to
//!   `DIR/<model-id>.slm` with its receipt; [`status`] lists a directory.
//!
//! What it is not: it fetches nothing and knows no peers or clocks beyond
//! the checkpoint's time stamp. It never decides that bytes are good
//! without a hash that leads to the manifest's Merkle root.
//!
//! Files of the download of `<model-id>` in `DIR` ([`DownloadPaths`]):
//! `<model-id>.slm.part` (bytes at their final offsets),
//! `<model-id>.slm.state` and `<model-id>.slm.state.prev` (the current and
//! previous state), `.<model-id>.slm.state.tmp` (a state being written),
//! `.<model-id>.slm.lock` (locked while a process has the download open),
//! and at the end `<model-id>.slm` with `<model-id>.receipt.json`.
//!
//! ```no_run
//! # fn driver(manifest: &minimodel_verifier::Manifest,
//! #           manifest_sha256: minimodel_verifier::Sha256Digest,
//! #           receipt: &minimodel_verifier::receipt::ImportReceipt)
//! #           -> Result<(), minimodel_swarm::resume::ResumeError> {
//! use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions};
//!
//! let dir = std::path::Path::new("downloads");
//! let opened = PartialDownload::open(dir, manifest, manifest_sha256,
//!     &ResumeOptions::default(), &|_progress| {})?;
//! let OpenedDownload::Partial(download, report) = opened else {
//!     return Ok(()); // already complete
//! };
//! println!("{}", report.outcome);
//! // For each chunk a peer sends: verify it, then
//! // download.store_verified(&chunk, &proof)?;
//! // and every few seconds:
//! download.checkpoint()?;
//! // When complete and the whole file checked out:
//! download.finish(receipt)?;
//! # Ok(()) }
//! ```

mod deliver;
mod dir;
mod error;
mod files;
pub mod journal;
mod knowledge;
mod mirrors;
mod open;
mod partial;
mod peers;
mod plan;
mod recheck;
mod report;
pub mod reuse;
mod state;
mod status;

pub use deliver::DeliveryError;
pub(crate) use deliver::{Delivered, DeliveryContext};
pub use dir::{NewFile, UnsafeKind, write_file_atomically};
pub use error::{KnowledgeError, ResumeError, StateError};
pub use files::{DownloadPaths, RemovedDownload, remove_download};
pub use knowledge::{ChunkKnowledge, SavedNode};
pub use mirrors::{
    MAX_MIRRORS_FILE_BYTES, MIRRORS_FORMAT, MirrorsFileError, mirrors_file_text, parse_mirrors_file,
};
pub use partial::{CheckpointReport, FinishedDownload, HeldStart, PartialDownload};
pub(crate) use peers::unix_now;
pub use peers::{
    MAX_PEERS_FILE_BYTES, PEERS_FORMAT, PeersFileError, parse_peers_file, peers_file_text,
    remembered_peers,
};
pub(crate) use plan::{chunk_list_limit, parse_chunk_list};
pub use recheck::{READ_BLOCK, RecheckProgress, hash_chunks, sample_chunks};
pub use report::{
    CompleteCheck, CompleteDownload, OpenedDownload, RecheckReason, RestartReason, ResumeOptions,
    ResumeOutcome, ResumeReport,
};
pub use state::{
    MAX_STATE_BYTES, PartialState, ResumeCounters, STATE_FORMAT, StateBinding, StateContent,
    parse_state,
};
pub use status::{BytesCheck, DownloadStatus, StatusKind, status, verify_status};

/// An error and its causes in one line, for a person to read.
pub fn describe(error: &ResumeError) -> String {
    error::chain(error)
}
