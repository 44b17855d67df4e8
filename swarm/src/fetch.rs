//! Fetching an artifact from several peers at once, chunk by verified
//! chunk, and delivering it only after the full checks pass.
//!
//! [`Fetcher::start`] opens the partial file and the QUIC endpoint and dials
//! every peer; [`Fetcher::run`] downloads until every chunk is verified,
//! then runs the same checks as a local `verify` (container, header drift,
//! Merkle root, chunk list, artifact SHA-256, the last one from the trailing
//! hasher, so there is no second pass over the file), moves the file to
//! `DIR/<model-id>.slm` and writes `DIR/<model-id>.receipt.json`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::check::{VerifyError, verify_with_hashes};
use minimodel_verifier::chunk::{ChunkGeometry, ChunkVerifier};
use minimodel_verifier::hashing::FileHashes;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::merkle::PartialTree;
use minimodel_verifier::receipt::{ImportReceipt, PeerContribution, ReceiptSource, TransferSummary};
use minimodel_wire::{HaveBitfield, PeerAddr, SwarmIdentity, SwarmParams};
use tokio::sync::mpsc;

use crate::download::{DownloadConfig, DownloadCore};
use crate::node::{DownloadParts, Node, NodeConfig, NodeError, NodeParts, NodeReport, ProofSource};
use crate::store::{FileStorage, Storage};
use crate::transport::Identity;

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
    /// Local storage failed (a full disk, say).
    #[error("storage failed")]
    Storage(#[source] std::io::Error),
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
    /// Stopped before the end (the part so far is kept).
    #[error("stopped before the download finished; run the same command to resume")]
    Interrupted,
}

/// A download in progress.
pub struct Fetcher {
    node: Node,
    config: FetchConfig,
    part_path: PathBuf,
    storage: Arc<FileStorage>,
    started: Instant,
    refusals: Arc<std::sync::Mutex<Vec<String>>>,
}

/// File paths of one model in a download directory.
pub fn artifact_paths(dir: &Path, model_id: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{model_id}.slm.part")),
        dir.join(format!("{model_id}.slm")),
        dir.join(format!("{model_id}.receipt.json")),
    )
}

/// The swarm identity a manifest defines.
pub fn swarm_of(manifest: &Manifest) -> Result<SwarmIdentity, String> {
    let chunk_count = u32::try_from(manifest.chunks.chunk_count).map_err(|e| e.to_string())?;
    let params = SwarmParams::new(manifest.artifact_bytes, manifest.chunks.chunk_size, chunk_count)
        .map_err(|e| e.to_string())?;
    SwarmIdentity::new(
        manifest.model_id.as_str(),
        manifest.chunks.merkle_root.0,
        params,
    )
    .map_err(|e| e.to_string())
}

impl Fetcher {
    /// Opens the partial file and the endpoint, and dials every peer.
    pub fn start(
        config: FetchConfig,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Self, FetchError> {
        let manifest = &config.manifest;
        let swarm = swarm_of(manifest).map_err(FetchError::Unfetchable)?;
        let geometry = ChunkGeometry::of_manifest(manifest)
            .map_err(|e| FetchError::Unfetchable(e.to_string()))?;
        std::fs::create_dir_all(&config.out_dir).map_err(FetchError::Storage)?;
        let (part_path, _, _) = artifact_paths(&config.out_dir, manifest.model_id.as_str());
        let storage = Arc::new(
            FileStorage::open_sized(&part_path, manifest.artifact_bytes).map_err(FetchError::Storage)?,
        );
        let count = geometry.chunk_count();
        let resumed = HaveBitfield::new(count);
        let core = DownloadCore::new(geometry.chunk_size(), &resumed, config.download.clone());
        let mut node_config = config.node.clone();
        if !config.serve {
            node_config.listen = None;
        }
        let node = Node::new(NodeParts {
            config: node_config,
            identity,
            swarm,
            geometry,
            verifier: Arc::new(ChunkVerifier::new(geometry, manifest.chunks.merkle_root)),
            storage: Arc::clone(&storage) as Arc<dyn Storage>,
            proofs: ProofSource::Partial(PartialTree::new(manifest.chunks.merkle_root, count)),
            local_have: resumed.clone(),
            serving: config.serve,
            download: Some(DownloadParts {
                core,
                resumed,
                resumed_hashes: vec![None; count as usize],
            }),
            reports,
        })?;
        let mut fetcher = Self {
            node,
            config,
            part_path,
            storage,
            started: Instant::now(),
            refusals: Arc::default(),
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

    /// Downloads until done, failed or `stop` resolves.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<FetchOutcome, FetchError> {
        let mut stop = Box::pin(stop);
        let give_up_after = self.config.give_up_after;
        let serve = self.config.serve;
        let mut quiet_since = Instant::now();
        let mut last_verified = 0;
        let mut gave_up = false;
        self.node
            .run(&mut stop, |node| {
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
        let download = self.node.download_state_mut().ok_or(FetchError::Interrupted)?;
        if let Some(error) = download.fatal.take() {
            self.node.shutdown().await;
            return Err(FetchError::Storage(error));
        }
        if !download.core.is_complete() {
            let missing = download.core.picker().chunk_count() - download.core.picker().verified_count();
            let total = download.core.picker().chunk_count();
            self.node.shutdown().await;
            if gave_up {
                return Err(FetchError::NoPeers {
                    missing,
                    total,
                    detail: self.node.failure_summary(),
                });
            }
            return Err(FetchError::Interrupted);
        }
        let outcome = self.deliver().await;
        if outcome.is_ok() && self.config.serve && self.config.seed_after {
            self.node.run(&mut stop, |_| false).await;
        }
        self.node.shutdown().await;
        outcome
    }

    /// Every chunk is verified: final checks, rename, receipt.
    async fn deliver(&mut self) -> Result<FetchOutcome, FetchError> {
        let manifest = self.config.manifest.clone();
        let download = self.node.download_state_mut().ok_or(FetchError::Interrupted)?;
        let trailing = download.take_trailing();
        let chunk_hashes: Option<Vec<Sha256Digest>> = download.chunk_hashes.iter().copied().collect();
        let chunk_hashes = chunk_hashes.ok_or_else(|| {
            FetchError::Verification(VerifyError::Io(std::io::Error::other("a chunk hash is missing")))
        })?;
        let summary = self.transfer_summary();
        let storage = Arc::clone(&self.storage);
        let part_path = self.part_path.clone();
        let out_dir = self.config.out_dir.clone();
        let manifest_sha256 = self.config.manifest_sha256;
        let artifact = tokio::task::spawn_blocking(move || -> Result<_, FetchError> {
            let sha256 = trailing().map_err(FetchError::Storage)?;
            storage.sync_data().map_err(FetchError::Storage)?;
            let hashes = FileHashes {
                bytes: manifest.artifact_bytes,
                sha256,
                chunk_hashes,
            };
            let artifact =
                verify_with_hashes(&manifest, &part_path, hashes).map_err(FetchError::Verification)?;
            let (_, final_path, receipt_path) = artifact_paths(&out_dir, manifest.model_id.as_str());
            std::fs::rename(&part_path, &final_path).map_err(FetchError::Storage)?;
            sync_dir(&out_dir).map_err(FetchError::Storage)?;
            let receipt = artifact.receipt(manifest_sha256, ReceiptSource::Peers(summary));
            write_json_atomically(&receipt_path, &receipt).map_err(FetchError::Storage)?;
            Ok((artifact, FetchOutcome {
                artifact_path: final_path,
                receipt_path,
                receipt,
            }))
        })
        .await
        .map_err(|e| FetchError::Storage(std::io::Error::other(e.to_string())))??;
        let (artifact, outcome) = artifact;
        self.node.become_seeder(Arc::new(artifact.tree().clone()));
        Ok(outcome)
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
            let banned = |id| download.core.is_banned(&id);
            for (id, stats) in download.core.all_peer_stats() {
                summary.bytes_wasted += stats.wasted_bytes;
                summary.peers.push(PeerContribution {
                    peer_id: id.to_string(),
                    address: self.node.address_of(&id).map(|a| a.to_string()).unwrap_or_default(),
                    chunks: stats.chunks,
                    bytes: stats.bytes,
                    bad_chunks: stats.bad_chunks,
                    banned: banned(id),
                });
            }
        }
        let _ = &self.refusals;
        summary
    }
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
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}
