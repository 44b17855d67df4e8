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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_node::NodeStart;
use minimodel_node::book::Source;
use minimodel_node::node::KnownPeer;
use minimodel_node::report::{DamageCause, Failure, Fault, Tried};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::ImportReceipt;
use minimodel_verifier::signing::trust::{SignatureCheck, TrustError};
use minimodel_wire::{PeerAddr, SwarmIdentity, SwarmParams};
use tokio::sync::mpsc;

use crate::node::{
    DeliveryContext, End, Jobs, Node, NodeError, NodeParts, NodeReport, NodeSettings, ProofSource,
};
use crate::resume::PartialDownload;
use crate::transport::Identity;

/// What to fetch, from whom, and how.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The artifact's manifest.
    pub manifest: Manifest,
    /// SHA-256 of the manifest file's bytes (for the receipt).
    pub manifest_sha256: Sha256Digest,
    /// The check of the manifest's signature made before anything else
    /// (`minimodel_verifier::signing::trust::judge`), which the receipt
    /// records.
    pub signature: SignatureCheck,
    /// Where the partial and the final file go.
    pub out_dir: PathBuf,
    /// Peers to dial; one id given with several addresses is one peer
    /// tried at each.
    pub peers: Vec<PeerAddr>,
    /// Serve verified chunks to other peers while downloading.
    pub serve: bool,
    /// Keep serving the finished file until stopped (with `serve`).
    pub seed_after: bool,
    /// The node's settings (the download's among them:
    /// `node.core.download`, `node.core.give_up_after`).
    pub node: NodeSettings,
    /// Find peers on the Mainline DHT too (and, when serving, announce
    /// there), through this DHT client.
    pub dht: Option<std::sync::Arc<crate::dht::Discovery>>,
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
    /// The manifest's signature, or its key, is refused; nothing was
    /// opened or dialed.
    #[error("the manifest is refused")]
    Signature(#[from] TrustError),
    /// The manifest's geometry does not fit the protocol.
    #[error("the manifest cannot be fetched: {0}")]
    Unfetchable(String),
    /// The node could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Local storage failed while the download ran (typed inside: a
    /// [`crate::resume::ResumeError`] or a [`crate::resume::DeliveryError`]).
    #[error("the download could not be written or read back: {0}")]
    Storage(Fault),
    /// The partial download could not be written or kept (a full disk,
    /// say); the last checkpoint is intact.
    #[error("the partial download could not be written")]
    Disk(#[from] crate::resume::ResumeError),
    /// No peer could deliver the missing chunks.
    #[error("{}", Failure::NoPeers { missing: *missing, total: *total, tried: tried.clone() })]
    NoPeers {
        /// Chunks still missing.
        missing: u32,
        /// Chunks in all.
        total: u32,
        /// What became of each peer tried.
        tried: Vec<Tried>,
    },
    /// Every chunk passed its proof but the whole file failed a check.
    #[error("the downloaded file failed its final check: {0}")]
    Verification(Fault),
    /// Chunks that passed their proofs went bad on disk, and could not be
    /// fetched again (no peer delivered them, or the disk damaged them
    /// again each time). The good part is kept.
    #[error(
        "the file on disk failed its check: {bad} chunks went bad after they were verified and were not repaired ({cause})"
    )]
    Damaged {
        /// Chunks still bad or missing.
        bad: u32,
        /// Why they could not be repaired.
        cause: DamageCause,
    },
    /// Stopped before the end (the part so far is kept).
    #[error("stopped before the download finished; run the same command to resume")]
    Interrupted,
    /// No identity for the node (the system random number generator
    /// failed).
    #[error("no identity for the node")]
    Identity(#[source] crate::transport::IdentityError),
}

/// A download in progress.
pub struct Fetcher {
    node: Node,
    config: FetchConfig,
}

/// Why a manifest does not define a swarm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmOfError {
    /// More chunks than the protocol counts.
    #[error("the chunk count does not fit the protocol")]
    ChunkCount,
    /// The geometry is not one the wire protocol carries.
    #[error(transparent)]
    Params(#[from] minimodel_wire::SwarmParamsError),
    /// The model id or root cannot be a swarm's.
    #[error("{0}")]
    Identity(String),
}

/// The swarm identity a manifest defines.
pub fn swarm_of(manifest: &Manifest) -> Result<SwarmIdentity, SwarmOfError> {
    let chunk_count =
        u32::try_from(manifest.chunks.chunk_count).map_err(|_| SwarmOfError::ChunkCount)?;
    let params = SwarmParams::new(
        manifest.artifact_bytes,
        manifest.chunks.chunk_size,
        chunk_count,
    )?;
    SwarmIdentity::new(
        manifest.model_id.as_str(),
        manifest.chunks.merkle_root.0,
        params,
    )
    .map_err(|e| SwarmOfError::Identity(e.to_string()))
}

/// The peers of a fetch, one entry per id with all its addresses.
fn known_peers(peers: &[PeerAddr]) -> Vec<KnownPeer> {
    let mut known: Vec<KnownPeer> = Vec::new();
    for peer in peers {
        match known.iter_mut().find(|k| k.id == Some(peer.id)) {
            Some(entry) => {
                if !entry.addrs.contains(&peer.addr) {
                    entry.addrs.push(peer.addr);
                }
            }
            None => known.push(KnownPeer {
                id: Some(peer.id),
                addrs: vec![peer.addr],
                source: Source::Offer,
            }),
        }
    }
    known
}

impl Fetcher {
    /// Starts the node on an opened partial download; the peers are dialed
    /// when it runs.
    pub fn start(
        config: FetchConfig,
        partial: Arc<PartialDownload>,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Self, FetchError> {
        let manifest = &config.manifest;
        let swarm = swarm_of(manifest).map_err(|e| FetchError::Unfetchable(e.to_string()))?;
        let geometry = partial.geometry();
        let have = partial.verified();
        // Every node breaks ties its own way: with one seed for all, peers
        // that start together would ask a seeder for the same chunks.
        let id = identity.peer_id();
        let seed = u64::from_le_bytes([
            id.0[0], id.0[1], id.0[2], id.0[3], id.0[4], id.0[5], id.0[6], id.0[7],
        ]);
        let mut node_config = config.node.clone();
        if !config.serve {
            // It listens nowhere of its own; on a shared endpoint it stays
            // (it dials from it, and the endpoint's caps hold for it), and
            // the endpoint's gate keeps it no part of the peer budget.
            node_config.listen = None;
        }
        let mut jobs = Jobs::new(
            geometry,
            partial.verifier(),
            partial.storage(),
            ProofSource::Download(Arc::clone(&partial)),
            Some(Arc::clone(&partial)),
            Some(DeliveryContext {
                manifest: manifest.clone(),
                manifest_sha256: config.manifest_sha256,
                signature: config.signature.clone(),
                started: Instant::now(),
            }),
            node_config.core.verify_jobs,
        );
        let served = config
            .serve
            .then(|| crate::node::served_manifest(&node_config, manifest));
        let node = Node::new(NodeParts {
            config: node_config,
            identity,
            swarm,
            start: NodeStart {
                discovery: config.dht.is_some(),
                swarm: swarm_of(manifest).map_err(|e| FetchError::Unfetchable(e.to_string()))?,
                local_id: id,
                serve: config.serve,
                listen: false,
                have,
                download: true,
                seed_after: config.serve && config.seed_after,
                seed,
                manifest_sha256: served.as_ref().map(|(digest, _)| *digest),
                lan: Vec::new(),
            },
            manifest: served,
            jobs: {
                jobs.delivered = None;
                jobs
            },
            reports,
        })?;
        let mut fetcher = Self { node, config };
        fetcher.node.start_hash();
        if let Some(dht) = fetcher.config.dht.clone() {
            let key = crate::dht::SwarmKey::of(&fetcher.config.manifest.chunks.merkle_root);
            fetcher.node.use_dht(dht, key);
        }
        let now = Instant::now();
        for peer in known_peers(&fetcher.config.peers) {
            fetcher.node.core().add_peer(peer, now);
        }
        // The peers that served earlier runs are dialed too (a file that
        // cannot be used is replaced at the next checkpoint).
        let before = partial.remembered_peers().unwrap_or_default();
        for peer in minimodel_node::remembered::fresh(&before, crate::node::unix_now()) {
            let known = KnownPeer {
                id: Some(peer.id),
                addrs: peer.addrs,
                source: Source::Remembered,
            };
            fetcher.node.core().add_peer(known, now);
        }
        fetcher.node.remember_peers_from(before);
        Ok(fetcher)
    }

    /// Where this node listens, when it serves.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.node.listen_addr()
    }

    /// The port mapping's state to watch (see
    /// [`crate::portmap::settled_external`]), when this node asks its
    /// router for one.
    pub fn port_mapping(&self) -> Option<tokio::sync::watch::Receiver<crate::portmap::MapState>> {
        self.node.port_mapping()
    }

    /// A handle that asks the running node for its counters (for a
    /// metrics endpoint).
    pub fn metrics(&self) -> crate::node::MetricsHandle {
        self.node.metrics()
    }

    /// This node's id.
    pub fn peer_id(&self) -> minimodel_wire::PeerId {
        self.node.peer_id()
    }

    /// Downloads until done, failed or `stop` resolves; with `seed_after`,
    /// a delivered download is served on until `stop`. On failure or stop
    /// the verified part is kept (the core writes a last checkpoint).
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<FetchOutcome, FetchError> {
        self.node.run(stop).await;
        let delivered = self.node.jobs.delivered.take();
        let result = match (self.node.outcome().cloned(), delivered) {
            (_, Some(delivered)) => Ok(FetchOutcome {
                artifact_path: delivered.finished.artifact,
                receipt_path: delivered.finished.receipt_path,
                receipt: delivered.finished.receipt,
                finish_elapsed: delivered.finish_elapsed,
            }),
            (Some(End::Failed(failure)), None) => Err(self.fetch_error(failure)),
            _ => Err(FetchError::Interrupted),
        };
        self.node.shutdown().await;
        result
    }

    fn fetch_error(&mut self, failure: Failure) -> FetchError {
        match failure {
            Failure::NoPeers {
                missing,
                total,
                tried,
            } => FetchError::NoPeers {
                missing,
                total,
                tried,
            },
            Failure::Damaged { bad, cause } => FetchError::Damaged { bad, cause },
            Failure::Storage(fault) => FetchError::Storage(fault),
            Failure::Verification(fault) => FetchError::Verification(fault),
        }
    }
}

impl FetchError {
    /// The disk's error, when storage failed.
    pub fn resume_error(&self) -> Option<&crate::resume::ResumeError> {
        match self {
            FetchError::Disk(error) => Some(error),
            FetchError::Storage(fault) => fault.downcast_ref(),
            _ => None,
        }
    }
}
