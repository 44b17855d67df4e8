//! Fetching an artifact from several peers at once, chunk by verified
//! chunk, and delivering it only after the full checks pass.
//!
//! [`Fetcher::start`] opens the partial file and the QUIC endpoint and dials
//! every peer; [`Fetcher::run`] downloads until every chunk is verified,
//! then runs the same checks as a local `verify` (container, header drift,
//! Merkle root, chunk list, artifact SHA-256), moves the file to
//! `DIR/<model-id>.slm` and writes `DIR/<model-id>.receipt.json`.
//!
//! The checks vouch for bytes they read: the Merkle root for every chunk as
//! it arrived (before it was written), the artifact SHA-256 for the file as
//! the trailing hasher read it back from disk, the container and header for
//! the file's header on disk. When the file on disk disagrees, the chunks
//! are checked on disk, the bad ones are fetched again, and nothing is
//! delivered until the whole file passes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::check::{VerifyError, verify_with_hashes};
use minimodel_verifier::hashing::FileHashes;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::{
    ImportReceipt, PeerContribution, ReceiptSource, TransferSummary,
};
use minimodel_wire::{PeerAddr, SwarmIdentity, SwarmParams};
use tokio::sync::mpsc;

use crate::node::{DownloadParts, Node, NodeConfig, NodeError, NodeParts, NodeReport, ProofSource};
use crate::resume::PartialDownload;
use crate::transport::Identity;
use minimodel_node::download::{DownloadConfig, Downloader};

/// What to fetch, from whom, and how.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The artifact's manifest.
    pub manifest: Manifest,
    /// SHA-256 of the manifest file's bytes (for the receipt).
    pub manifest_sha256: Sha256Digest,
    /// Where the partial and the final file go.
    pub out_dir: PathBuf,
    /// Peers to dial.
    pub peers: Vec<PeerAddr>,
    /// Serve verified chunks to other peers while downloading.
    pub serve: bool,
    /// Keep serving the finished file until stopped (with `serve`).
    pub seed_after: bool,
    /// The node's settings.
    pub node: NodeConfig,
    /// The download state machine's settings.
    pub download: DownloadConfig,
    /// Give up when nothing arrives for this long and no request is out.
    /// Default 20 s.
    pub give_up_after: Duration,
}

/// A finished download.
#[derive(Debug, Clone)]
pub struct FetchOutcome {
    /// `DIR/<model-id>.slm`.
    pub artifact_path: PathBuf,
    /// `DIR/<model-id>.receipt.json`.
    pub receipt_path: PathBuf,
    /// The receipt written there.
    pub receipt: ImportReceipt,
    /// From the last verified chunk until the receipt and the file were in
    /// place and synced (the receipt's `finish_ms` ends when it is made).
    pub finish_elapsed: Duration,
}

/// Why a fetch failed. The verified part stays on disk in every case.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The manifest's geometry does not fit the protocol.
    #[error("the manifest cannot be fetched: {0}")]
    Unfetchable(String),
    /// The node could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Local storage failed.
    #[error("storage failed")]
    Storage(#[source] std::io::Error),
    /// The partial download could not be written or kept (a full disk,
    /// say); the last checkpoint is intact.
    #[error("the partial download could not be written")]
    Disk(#[from] crate::resume::ResumeError),
    /// No peer could deliver the missing chunks.
    #[error("no peer could deliver the missing chunks ({missing} of {total} missing): {detail}")]
    NoPeers {
        /// Chunks still missing.
        missing: u32,
        /// Chunks in all.
        total: u32,
        /// What happened to the peers.
        detail: String,
    },
    /// Every chunk passed its proof but the whole file failed a check.
    #[error("the downloaded file failed its final check")]
    Verification(#[source] VerifyError),
    /// Chunks that passed their proofs went bad on disk, and could not be
    /// fetched again (no peer delivered them, or the disk damaged them
    /// again each time). The good part is kept.
    #[error(
        "the file on disk failed its check: {bad} chunks went bad after they were verified and were not repaired ({detail})"
    )]
    Damaged {
        /// Chunks still bad or missing.
        bad: u32,
        /// Why they could not be repaired.
        detail: String,
    },
    /// Stopped before the end (the part so far is kept).
    #[error("stopped before the download finished; run the same command to resume")]
    Interrupted,
}

/// A download in progress.
pub struct Fetcher {
    node: Node,
    config: FetchConfig,
    partial: Arc<PartialDownload>,
    started: Instant,
    /// Chunks found bad on disk after they were verified, and how often.
    repaired: std::collections::BTreeMap<u32, u32>,
}

/// The swarm identity a manifest defines.
pub fn swarm_of(manifest: &Manifest) -> Result<SwarmIdentity, String> {
    let chunk_count = u32::try_from(manifest.chunks.chunk_count).map_err(|e| e.to_string())?;
    let params = SwarmParams::new(
        manifest.artifact_bytes,
        manifest.chunks.chunk_size,
        chunk_count,
    )
    .map_err(|e| e.to_string())?;
    SwarmIdentity::new(
        manifest.model_id.as_str(),
        manifest.chunks.merkle_root.0,
        params,
    )
    .map_err(|e| e.to_string())
}

/// What a finished download attempt found.
enum Delivery {
    Delivered(Box<FetchOutcome>),
    /// These chunks passed their proofs but are bad on disk now.
    Refetch(Vec<u32>),
}

/// How often one chunk may be found bad on disk after it was verified
/// before the disk, not the peers, is taken to be the problem.
const MAX_REPAIRS_PER_CHUNK: u32 = 3;

impl Fetcher {
    /// Starts the node on an opened partial download and dials every peer.
    pub fn start(
        config: FetchConfig,
        partial: Arc<PartialDownload>,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Self, FetchError> {
        let manifest = &config.manifest;
        let swarm = swarm_of(manifest).map_err(FetchError::Unfetchable)?;
        let geometry = partial.geometry();
        let have = partial.verified();
        // Every node breaks ties its own way: with one seed for all, peers
        // that start together would ask a seeder for the same chunks.
        let mut download = config.download.clone();
        let id = identity.peer_id();
        download.seed ^= u64::from_le_bytes([
            id.0[0], id.0[1], id.0[2], id.0[3], id.0[4], id.0[5], id.0[6], id.0[7],
        ]);
        let core = Downloader::new(geometry.chunk_size(), &have, download);
        let mut node_config = config.node.clone();
        if !config.serve {
            node_config.listen = None;
        }
        let node = Node::new(NodeParts {
            config: node_config,
            identity,
            swarm,
            geometry,
            verifier: Arc::new(partial.verifier()),
            storage: partial.storage(),
            proofs: ProofSource::Download(Arc::clone(&partial)),
            local_have: have,
            serving: config.serve,
            download: Some(DownloadParts {
                core,
                partial: Arc::clone(&partial),
            }),
            reports,
        })?;
        let mut fetcher = Self {
            node,
            config,
            partial,
            started: Instant::now(),
            repaired: std::collections::BTreeMap::new(),
        };
        for peer in fetcher.config.peers.clone() {
            fetcher.node.dial(peer);
        }
        Ok(fetcher)
    }

    /// Where this node listens, when it serves.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.node.listen_addr()
    }

    /// This node's id.
    pub fn peer_id(&self) -> minimodel_wire::PeerId {
        self.node.peer_id()
    }

    /// Downloads until done, failed or `stop` resolves. On failure or stop
    /// the verified part is checkpointed and kept.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<FetchOutcome, FetchError> {
        let mut stop = Box::pin(stop);
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let result = loop {
            let gave_up = self.download_until_done(&mut stop, &stopped).await;
            let Some(download) = self.node.download_state_mut() else {
                break Err(FetchError::Interrupted);
            };
            if let Some(error) = download.fatal.take() {
                break Err(FetchError::Disk(error));
            }
            if !download.core.is_complete() {
                let picker = download.core.picker();
                let (missing, total) = (
                    picker.chunk_count() - picker.verified_count(),
                    picker.chunk_count(),
                );
                break Err(match (gave_up, self.repaired.is_empty()) {
                    (true, true) => FetchError::NoPeers {
                        missing,
                        total,
                        detail: self.node.failure_summary(),
                    },
                    (true, false) => FetchError::Damaged {
                        bad: missing,
                        detail: format!(
                            "no peer delivered them again: {}",
                            self.node.failure_summary()
                        ),
                    },
                    (false, _) => FetchError::Interrupted,
                });
            }
            match self.deliver().await {
                Ok(Delivery::Delivered(outcome)) => break Ok(*outcome),
                Ok(Delivery::Refetch(bad)) => {
                    for &chunk in &bad {
                        *self.repaired.entry(chunk).or_default() += 1;
                    }
                    let worst = self.repaired.iter().max_by_key(|(_, times)| **times);
                    if let Some((&chunk, &times)) = worst
                        && times > MAX_REPAIRS_PER_CHUNK
                    {
                        break Err(FetchError::Damaged {
                            bad: bad.len() as u32,
                            detail: format!(
                                "chunk {chunk} was damaged on disk {times} times after it was written; the disk or something else writing to the file is at fault"
                            ),
                        });
                    }
                    if let Some(download) = self.node.download_state_mut() {
                        download.refetch(&bad);
                    }
                }
                Err(error) => break Err(error),
            }
        };
        if result.is_err() {
            // Keep what was verified: one last checkpoint.
            let partial = Arc::clone(&self.partial);
            let _ = tokio::task::spawn_blocking(move || partial.checkpoint()).await;
        } else if self.config.serve && self.config.seed_after && !stopped.into_inner() {
            self.node.run(&mut stop, |_| false).await;
        }
        self.node.shutdown().await;
        result
    }

    /// Runs the node until the download is complete, failed, given up
    /// (returns true) or stopped.
    async fn download_until_done(
        &mut self,
        stop: &mut std::pin::Pin<Box<impl Future<Output = ()>>>,
        stopped: &std::sync::atomic::AtomicBool,
    ) -> bool {
        let give_up_after = self.config.give_up_after;
        let serve = self.config.serve;
        let mut quiet_since = Instant::now();
        let mut last_verified = u32::MAX;
        let mut gave_up = false;
        let mut flagged_stop = Box::pin(async {
            stop.await;
            stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        self.node
            .run(&mut flagged_stop, |node| {
                let Some(download) = node.download_state() else {
                    return true;
                };
                if download.core.is_complete() || download.fatal.is_some() {
                    return true;
                }
                let verified = download.core.picker().verified_count();
                let busy = download.core.picker().in_flight_count() > 0;
                if verified != last_verified || busy || node.is_dialing() {
                    last_verified = verified;
                    quiet_since = Instant::now();
                }
                let nobody = node.download_peer_count() == 0 && !node.is_dialing() && !serve;
                if nobody || quiet_since.elapsed() > give_up_after {
                    gave_up = true;
                    return true;
                }
                false
            })
            .await;
        gave_up
    }

    /// Every chunk is verified: the final checks, then the receipt and the
    /// rename, or the chunks that turned out bad on disk.
    async fn deliver(&mut self) -> Result<Delivery, FetchError> {
        let manifest = self.config.manifest.clone();
        let download = self
            .node
            .download_state_mut()
            .ok_or(FetchError::Interrupted)?;
        download.jobs_idle().await;
        let download = self
            .node
            .download_state_mut()
            .ok_or(FetchError::Interrupted)?;
        let trailing = download.take_trailing();
        let completed_at = download.completed_at.unwrap_or_else(Instant::now);
        let started = self.started;
        let mut summary = self.transfer_summary();
        let partial = Arc::clone(&self.partial);
        let manifest_sha256 = self.config.manifest_sha256;
        let delivery = tokio::task::spawn_blocking(move || -> Result<_, FetchError> {
            // Read back from the .part, behind the writer: the bytes on disk.
            let sha256 = trailing().map_err(FetchError::Storage)?;
            let geometry = partial.geometry();
            let chunk_hashes: Option<Vec<Sha256Digest>> = geometry
                .indices()
                .map(|index| partial.chunk_hash(index))
                .collect();
            let chunk_hashes = chunk_hashes.ok_or_else(|| {
                FetchError::Storage(std::io::Error::other("a verified chunk has no hash"))
            })?;
            let hashes = FileHashes {
                bytes: manifest.artifact_bytes,
                sha256,
                chunk_hashes,
            };
            let artifact = match verify_with_hashes(&manifest, &partial.paths().part, hashes) {
                Ok(artifact) => artifact,
                Err(VerifyError::ArtifactSha256 { .. }) => {
                    // Every chunk passed its proof, so bytes changed on disk
                    // since (or were written in the wrong place): find them
                    // by their chunk hashes.
                    let bad = partial.find_bad_chunks(&|_| {}).map_err(resume_to_fetch)?;
                    if bad.is_empty() {
                        return Err(FetchError::Verification(VerifyError::Io(
                            std::io::Error::other(
                                "the whole-file hash differs but every chunk matches its hash",
                            ),
                        )));
                    }
                    for index in &bad {
                        partial.drop_chunk(*index).map_err(resume_to_fetch)?;
                    }
                    partial.checkpoint().map_err(resume_to_fetch)?;
                    return Ok((Delivery::Refetch(bad.iter().map(|i| i.0).collect()), None));
                }
                Err(error) => return Err(FetchError::Verification(error)),
            };
            let finished = partial
                .finish_with(|| {
                    // Everything after the last verified chunk up to here:
                    // the read-back hash, the checks and the final sync.
                    summary.finish_ms = completed_at.elapsed().as_millis() as u64;
                    summary.duration_ms = started.elapsed().as_millis() as u64;
                    artifact.receipt(manifest_sha256, ReceiptSource::Peers(summary))
                })
                .map_err(resume_to_fetch)?;
            let delivered = Delivery::Delivered(Box::new(FetchOutcome {
                artifact_path: finished.artifact,
                receipt_path: finished.receipt_path,
                receipt: finished.receipt,
                finish_elapsed: completed_at.elapsed(),
            }));
            Ok((delivered, Some(Arc::new(artifact.tree().clone()))))
        })
        .await
        .map_err(|e| FetchError::Storage(std::io::Error::other(e.to_string())))?;
        let (delivery, tree) = match delivery? {
            (Delivery::Refetch(bad), _) => (Delivery::Refetch(bad), None),
            (delivered, tree) => (delivered, tree),
        };
        if let Some(tree) = tree {
            // Verified as a whole: serve every chunk from the full tree.
            self.node.become_seeder(tree);
        }
        if let Delivery::Delivered(outcome) = &delivery {
            self.node.report(NodeReport::Delivered {
                path: outcome.artifact_path.clone(),
                receipt: outcome.receipt_path.clone(),
                seeding: self.config.serve && self.config.seed_after,
            });
        }
        Ok(delivery)
    }

    fn transfer_summary(&self) -> TransferSummary {
        let download = self.node.download_state();
        let mut summary = TransferSummary {
            duration_ms: self.started.elapsed().as_millis() as u64,
            ..TransferSummary::default()
        };
        if let Some(download) = download {
            summary.chunks_resumed = download.resumed_chunks;
            summary.chunks_fetched = download.fetched_chunks;
            summary.chunks_refetched = self.repaired.values().map(|&n| u64::from(n)).sum();
            for (id, stats) in download.core.all_peer_stats() {
                summary.bytes_wasted += stats.wasted_bytes;
                summary.peers.push(PeerContribution {
                    peer_id: id.to_string(),
                    address: self
                        .node
                        .address_of(&id)
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    chunks: stats.chunks,
                    bytes: stats.bytes,
                    bad_chunks: stats.bad_chunks,
                    banned: download.core.is_banned(&id),
                });
            }
        }
        summary
    }
}

fn resume_to_fetch(error: crate::resume::ResumeError) -> FetchError {
    FetchError::Disk(error)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes JSON through a temporary file and a rename.
pub fn write_json_atomically(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, &text)?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, path)?;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    sync_dir(dir.unwrap_or(Path::new(".")))
}
