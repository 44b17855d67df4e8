//! The final checks of a download whose every chunk is verified: the
//! whole-file SHA-256 as read back from the `.part`, every check of a local
//! `verify`, then the receipt and the rename to the final name. A
//! whole-file hash that disagrees while every chunk passed its proof means
//! bytes changed on disk since: the chunks that no longer match are found,
//! dropped and reported, to be fetched again (`docs/resume.md`, "Bad chunks
//! found later").

use std::io;
use std::time::{Duration, Instant};

use minimodel_node::node::Finish;
use minimodel_node::report::Fault;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::check::{VerifyError, verify_with_hashes};
use minimodel_verifier::hashing::FileHashes;
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::receipt::{ReceiptSource, TransferSummary};
use minimodel_wire::ChunkIndex;

use super::{FinishedDownload, PartialDownload, ResumeError};

/// What the final checks need to write a receipt.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryContext {
    pub(crate) manifest: minimodel_verifier::manifest::Manifest,
    pub(crate) manifest_sha256: Sha256Digest,
    pub(crate) signature: minimodel_verifier::signing::trust::SignatureCheck,
    pub(crate) started: Instant,
}

/// Why the final checks could not judge the file (the checks' own
/// verdicts are [`VerifyError`]s).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The whole-file hash could not read the file back.
    #[error("cannot read the file back")]
    ReadBack(#[source] io::Error),
    /// The trailing hasher was not running.
    #[error("the whole-file hash was not running")]
    NoWholeFileHash,
    /// A chunk counted as verified has no proven hash.
    #[error("a verified chunk has no hash")]
    NoChunkHash,
    /// The whole-file hash disagrees with the manifest, yet every chunk on
    /// disk matches its proven hash.
    #[error("the whole-file hash differs but every chunk matches its hash")]
    HashWithoutBadChunk,
    /// The checks' worker ended without an answer.
    #[error("the final checks did not finish: {0}")]
    Worker(String),
}

/// A delivered download.
pub(crate) struct Delivered {
    /// The file, its receipt and its storage under the final name.
    pub(crate) finished: FinishedDownload,
    /// From the last verified chunk to the delivered file.
    pub(crate) finish_elapsed: Duration,
    pub(crate) tree: MerkleTree,
}

impl PartialDownload {
    /// Checks the whole file and delivers it. `context` holds the
    /// manifest, the digest of its file and the check of its signature,
    /// which the receipt records; `sha256` is the whole-file hash read back
    /// from the `.part` (`None`: it was not running); `summary` goes into
    /// the receipt with its durations filled in, from `context.started`
    /// and from `completed_at` (the last verified chunk). Blocking.
    pub(crate) fn final_checks(
        &self,
        context: &DeliveryContext,
        sha256: Option<io::Result<Sha256Digest>>,
        mut summary: TransferSummary,
        completed_at: Instant,
    ) -> (Finish, Option<Box<Delivered>>) {
        let manifest = &context.manifest;
        let storage_failed = |error: ResumeError| (Finish::StorageFailed(Fault::new(error)), None);
        let sha256 = match sha256 {
            Some(Ok(sha256)) => sha256,
            Some(Err(error)) => {
                return (
                    Finish::StorageFailed(Fault::new(DeliveryError::ReadBack(error))),
                    None,
                );
            }
            None => {
                return (
                    Finish::Failed(Fault::new(DeliveryError::NoWholeFileHash)),
                    None,
                );
            }
        };
        let chunk_hashes: Option<Vec<Sha256Digest>> = self
            .geometry()
            .indices()
            .map(|index| self.chunk_hash(index))
            .collect();
        let Some(chunk_hashes) = chunk_hashes else {
            return (Finish::Failed(Fault::new(DeliveryError::NoChunkHash)), None);
        };
        let hashes = FileHashes {
            bytes: manifest.artifact_bytes,
            sha256,
            chunk_hashes,
        };
        let artifact = match verify_with_hashes(manifest, &self.paths().part, hashes) {
            Ok(artifact) => artifact,
            Err(VerifyError::ArtifactSha256 { .. }) => {
                // Every chunk passed its proof, so bytes changed on disk
                // since (or were written in the wrong place): find them.
                let bad = match self.find_bad_chunks(&|_| {}) {
                    Ok(bad) => bad,
                    Err(error) => return storage_failed(error),
                };
                if bad.is_empty() {
                    return (
                        Finish::Failed(Fault::new(DeliveryError::HashWithoutBadChunk)),
                        None,
                    );
                }
                for index in &bad {
                    if let Err(error) = self.drop_chunk(*index) {
                        return storage_failed(error);
                    }
                }
                if let Err(error) = self.checkpoint() {
                    return storage_failed(error);
                }
                return (
                    Finish::Damaged(bad.iter().map(|index| ChunkIndex(index.0)).collect()),
                    None,
                );
            }
            Err(error) => return (Finish::Failed(Fault::new(error)), None),
        };
        // Chunks copied from older versions before the node started are
        // verified at its start, so the node counted them as resumed.
        let reused = self.chunks_reused();
        summary.chunks_resumed = summary.chunks_resumed.saturating_sub(reused);
        summary.chunks_reused = reused;
        let finished = self.finish_with(|| {
            // Everything after the last verified chunk up to here: the
            // read-back hash, the checks and the final sync.
            summary.finish_ms = completed_at.elapsed().as_millis() as u64;
            summary.duration_ms = context.started.elapsed().as_millis() as u64;
            artifact.receipt(
                context.manifest_sha256,
                &context.signature,
                ReceiptSource::Peers(summary),
            )
        });
        match finished {
            Ok(finished) => (
                Finish::Delivered {
                    path: finished.artifact.clone(),
                    receipt: finished.receipt_path.clone(),
                },
                Some(Box::new(Delivered {
                    finished,
                    finish_elapsed: completed_at.elapsed(),
                    tree: artifact.tree().clone(),
                })),
            ),
            Err(error) => storage_failed(error),
        }
    }
}
