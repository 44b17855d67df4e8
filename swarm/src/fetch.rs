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
use minimodel_node::report::Failure;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::ImportReceipt;
use minimodel_verifier::signing::trust::{SignatureCheck, TrustError};
use minimodel_wire::PeerAddr;
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
    /// HTTPS copies of the artifact to fetch from beside the peers
    /// (`docs/swarm.md`, "Mirrors"), if any.
    pub mirrors: Option<crate::mirror::MirrorSet>,
    /// The artifact's whole chunk list when it is known before the
    /// download ends (read ahead and checked against the Merkle root,
    /// [`crate::app::DownloadPlan::read_chunk_list_ahead`]): a serving
    /// download hands it to chunk list queries from the start, not only
    /// once delivered.
    pub chunk_list: Option<Arc<[[u8; 32]]>>,
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
    Unfetchable(#[from] SwarmOfError),
    /// The node could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The partial download could not be written or kept (a full disk,
    /// say); the last checkpoint is intact.
    #[error("the partial download could not be written")]
    Disk(#[from] crate::resume::ResumeError),
    /// The node ended the download before it was done (the core's
    /// [`Failure`]): no peer could deliver the missing chunks, storage
    /// failed while it ran (typed inside: a [`crate::resume::ResumeError`]
    /// or a [`crate::resume::DeliveryError`]), the whole file failed a
    /// check though every chunk passed its proof, or chunks that passed
    /// went bad on disk and could not be fetched again. The good part is
    /// kept.
    #[error("{0}")]
    Failed(Failure),
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
    partial: Arc<PartialDownload>,
}

pub use minimodel_node::node::{SwarmOfError, swarm_of};

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
        let swarm = swarm_of(manifest)?;
        let geometry = partial.geometry();
        let have = partial.verified();
        let id = identity.peer_id();
        let mut node_config = config.node.clone();
        if !config.serve {
            // It listens nowhere of its own; on a shared endpoint it stays
            // (it dials from it, and the endpoint's caps hold for it), and
            // the endpoint's gate keeps it no part of the peer budget.
            node_config.listen = None;
        }
        let jobs = Jobs::new(
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
            &node_config.core,
        );
        // Where it listens and its LAN: Node::new, which binds.
        let mut start = NodeStart::new(swarm.clone(), id, node_config.agent.clone(), have);
        start.discovery = config.dht.is_some();
        start.serve = config.serve;
        start.download = true;
        // The node seeds after only while it serves (NodeCore decides).
        start.seed_after = config.seed_after;
        start.peers = config.peers.clone();
        start.mirrors = config
            .mirrors
            .as_ref()
            .map(crate::mirror::MirrorSet::labels)
            .unwrap_or_default();
        start.manifest = config
            .serve
            .then(|| crate::node::served_manifest(&node_config, manifest));
        start.chunk_list = config.chunk_list.clone().filter(|_| config.serve);
        let node = Node::new(NodeParts {
            config: node_config,
            identity,
            swarm,
            start,
            jobs,
            reports,
        })?;
        let mut fetcher = Self {
            node,
            config,
            partial: Arc::clone(&partial),
        };
        fetcher.node.start_hash();
        if let Some(set) = fetcher.config.mirrors.clone() {
            let manifest = &fetcher.config.manifest;
            let facts = crate::mirror::ArtifactFacts {
                bytes: manifest.artifact_bytes,
                chunk_count: geometry.chunk_count(),
                merkle_root: manifest.chunks.merkle_root,
                chunk_list_sha256: manifest.chunks.chunk_list.as_ref().map(|list| list.sha256),
            };
            // What earlier runs saw of the mirrors: a file changed since is
            // another file (an unusable list means nothing seen).
            let before = partial.remembered_mirrors().unwrap_or_default();
            fetcher.node.core().remember_mirrors_from(before);
            fetcher.node.use_mirrors(set, facts);
        }
        if let Some(dht) = fetcher.config.dht.clone() {
            let key = crate::dht::SwarmKey::of(&fetcher.config.manifest.chunks.merkle_root);
            fetcher.node.use_dht(dht, key);
        }
        let now = Instant::now();
        // The peers that served earlier runs are dialed too (a file that
        // cannot be used is replaced at the next checkpoint).
        let before = partial.remembered_peers().unwrap_or_default();
        let unix_now = crate::node::unix_now();
        fetcher
            .node
            .core()
            .remember_peers_from(before, unix_now, now);
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

    /// Its relay links' registrations, to watch (see
    /// [`crate::relay::settled_relays`]).
    pub fn registered_relays(&self) -> Vec<crate::relay::RegisteredWatch> {
        self.node.registered_relays()
    }

    /// A handle that asks the running node for its counters (for a
    /// metrics endpoint).
    pub fn metrics(&self) -> crate::node::MetricsHandle {
        self.node.metrics()
    }

    /// A handle that changes the running node's peer budget and caps
    /// without a restart.
    pub fn limits(&self) -> crate::node::LimitsHandle {
        self.node.limits()
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
            (Some(End::Failed(failure)), None) => Err(FetchError::Failed(failure)),
            _ => Err(FetchError::Interrupted),
        };
        self.node.shutdown().await;
        // The directory is free again once this returns: a run started
        // right after (a resume, a retry) is not told it is in use.
        self.node
            .settle_jobs(std::time::Duration::from_secs(30))
            .await;
        // Given up with every chunk missing: the `.part` reserved at the
        // artifact's size is given back (a stop keeps it: the user means
        // to go on). Files that cannot be removed stay as they were.
        if let Err(FetchError::Failed(Failure::NoPeers { missing, total, .. })) = &result
            && missing == total
        {
            let _ = self.partial.discard_if_nothing_verified();
        }
        result
    }
}

impl FetchError {
    /// The disk's error, when storage failed.
    pub fn resume_error(&self) -> Option<&crate::resume::ResumeError> {
        match self {
            FetchError::Disk(error) => Some(error),
            FetchError::Failed(Failure::Storage(fault)) => fault.downcast_ref(),
            _ => None,
        }
    }
}
