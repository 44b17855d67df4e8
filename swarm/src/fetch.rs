//! Fetching an artifact from several peers at once, chunk by verified
//! chunk, and delivering it only after the full checks pass.
//!
//! A [`DownloadPlan`] says what to fetch, from whom and how, once for every
//! front end; [`Fetcher::start`] turns it into the node on the opened
//! partial file (the QUIC endpoint bound, every peer dialed when it runs); [`Fetcher::run`] downloads until every chunk is verified,
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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_node::NodeStart;
use minimodel_node::report::Failure;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::ImportReceipt;
use minimodel_verifier::signing::trust::{SignatureCheck, TrustError};
use tokio::sync::mpsc;

use crate::node::{
    CoreConfig, DeliveryContext, End, Jobs, Node, NodeError, NodeParts, NodeReport, NodeSettings,
    ProofSource, SharedEndpoint,
};
use crate::peers::PeerAddrs;
use crate::resume::PartialDownload;
use crate::resume::reuse::NewChunkList;
use crate::transport::{Identity, TransportTuning};

/// Serving verified chunks while downloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// Keep serving the finished file until stopped.
    pub seed_after: bool,
    /// Ask the home router to map the listening port (UPnP IGD, NAT-PMP,
    /// PCP).
    pub port_mapping: bool,
}

/// A download: what, from whom, where to, and how; everything but an
/// identity. The one spec of a download from every front end to the node
/// ([`crate::app::fetch`] opens it, [`Fetcher::start`] turns it into the
/// node's settings and start in one place).
#[derive(Debug, Clone)]
pub struct DownloadPlan {
    /// The artifact's manifest.
    pub manifest: Manifest,
    /// SHA-256 of the manifest file's bytes as read (for the receipt).
    pub manifest_sha256: Sha256Digest,
    /// The check of the manifest's signature that the caller made first
    /// (against its keyring, `minimodel_verifier::signing::trust::judge`);
    /// the receipt records it.
    pub signature: SignatureCheck,
    /// `DIR`: the partial download and the finished file go there.
    pub out_dir: PathBuf,
    /// Peers to dial, one entry per peer id with all its addresses (each
    /// tried in turn).
    pub peers: Vec<PeerAddrs>,
    /// Serve verified chunks while downloading. Default: download only,
    /// accept nothing.
    pub serving: Option<Serving>,
    /// Find peers on the Mainline DHT too (and announce there when
    /// serving), through this DHT client.
    pub dht: Option<Arc<crate::dht::Discovery>>,
    /// The core's settings: the caps, the peer budget, the give-up time
    /// and every timer (`minimodel_node::NodeConfig`). Front ends lay
    /// their user's limits over the defaults with
    /// [`crate::app::Limits::apply`].
    pub core: CoreConfig,
    /// QUIC tuning (the congestion controller, the handshake's timeout).
    pub tuning: TransportTuning,
    /// Read every chunk a partial download says it has (and a finished
    /// file whole) before trusting it, and repair a damaged finished file.
    pub recheck: bool,
    /// The manifest file's bytes as read, handed to a manifest query when
    /// serving (a ticket names their SHA-256). `None`: the manifest's
    /// canonical text.
    pub manifest_file: Option<Arc<[u8]>>,
    /// Local discovery (`--lan`): dial the neighbours that announce this
    /// swarm on the local network, and announce it there when serving.
    pub lan: bool,
    /// Serve and dial on this endpoint with the other swarms on it (one
    /// port for a library) instead of listening at the serving address.
    pub endpoint: Option<SharedEndpoint>,
    /// HTTPS copies of the artifact to fetch from beside the peers, if
    /// any (`docs/swarm.md`, "Mirrors").
    pub mirrors: Option<crate::mirror::MirrorSet>,
    /// When serving: addresses the user says peers reach it at
    /// (`--public-addr`), for the verdict on who can reach it.
    pub public_addrs: Vec<SocketAddr>,
    /// Relays to register with (`--relay`, `docs/relay.md`).
    pub relays: Vec<crate::relay::RelayAddr>,
    /// The relays each peer names ("reach me via": a ticket's or an
    /// offer's): the node registers with them too.
    pub peer_relays: Vec<(minimodel_wire::PeerId, Vec<crate::relay::RelayAddr>)>,
    /// Older versions on this machine to copy matching chunks from before
    /// asking peers (`--reuse`), with the finished downloads of other
    /// models in `out_dir`; used only with [`Self::chunk_list`].
    pub reuse: Vec<PathBuf>,
    /// The new artifact's chunk list, checked against the manifest: it
    /// says which chunks the older versions may hold, and a serving
    /// download hands it to chunk list queries from the start, not only
    /// once delivered.
    pub chunk_list: Option<NewChunkList>,
}

impl DownloadPlan {
    /// A plan with no peers, no serving, no DHT, the core's default
    /// settings and the default tuning.
    pub fn new(
        manifest: Manifest,
        manifest_sha256: Sha256Digest,
        signature: SignatureCheck,
        out_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            manifest,
            manifest_sha256,
            signature,
            out_dir: out_dir.into(),
            peers: Vec::new(),
            serving: None,
            dht: None,
            core: CoreConfig::default(),
            tuning: TransportTuning::default(),
            recheck: false,
            manifest_file: None,
            lan: false,
            endpoint: None,
            mirrors: None,
            public_addrs: Vec::new(),
            relays: Vec::new(),
            peer_relays: Vec::new(),
            reuse: Vec::new(),
            chunk_list: None,
        }
    }

    /// Whether the download serves on once done ([`Serving::seed_after`]):
    /// only a download that serves. The node decides it again while it
    /// runs (not while it is stopping); a front end asks this, for a file
    /// that was done before any node ran.
    pub fn seeds_after(&self) -> bool {
        self.serving.is_some_and(|serving| serving.seed_after)
    }

    /// The node's settings for this download.
    fn node_settings(&self) -> NodeSettings {
        NodeSettings {
            // A download that does not serve listens nowhere of its own;
            // on a shared endpoint it stays (it dials from it, and the
            // endpoint's caps hold for it), and the endpoint's gate keeps
            // it no part of the peer budget.
            listen: self.serving.map(|serving| serving.listen),
            tuning: self.tuning.clone(),
            core: self.core.clone(),
            manifest_file: self.manifest_file.clone(),
            port_mapping: self.serving.is_some_and(|serving| serving.port_mapping),
            lan: self.lan,
            // On a library's endpoint every download runs there, serving
            // or not, so that the endpoint's download cap holds for all.
            shared: self.endpoint.clone(),
            public_addrs: self.public_addrs.clone(),
            relays: self.relays.clone(),
            peer_relays: self.peer_relays.clone(),
            ..NodeSettings::default()
        }
    }
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
    partial: Arc<PartialDownload>,
}

pub use minimodel_node::node::{SwarmOfError, swarm_of};

impl Fetcher {
    /// Starts the node for `plan` on its opened partial download; the
    /// peers are dialed when it runs. Front ends come here through
    /// [`crate::app::fetch::ReadyDownload::start`], which opened `partial`
    /// from the same plan.
    pub fn start(
        plan: DownloadPlan,
        partial: Arc<PartialDownload>,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Self, FetchError> {
        let manifest = &plan.manifest;
        let geometry = partial.geometry();
        let swarm = swarm_of(manifest, &geometry)?;
        let have = partial.verified();
        let id = identity.peer_id();
        let serve = plan.serving.is_some();
        let settings = plan.node_settings();
        let jobs = Jobs::new(
            geometry.clone(),
            partial.verifier(),
            partial.storage(),
            ProofSource::Download(Arc::clone(&partial)),
            Some(Arc::clone(&partial)),
            Some(DeliveryContext {
                manifest: manifest.clone(),
                manifest_sha256: plan.manifest_sha256,
                signature: plan.signature.clone(),
                started: Instant::now(),
            }),
            &settings.core,
        );
        // Where it listens and its LAN: Node::new, which binds.
        let mut start = NodeStart::new(swarm.clone(), id, settings.agent.clone(), have);
        start.discovery = plan.dht.is_some();
        start.serve = serve;
        start.download = true;
        // The node seeds after only while it serves (NodeCore decides).
        start.seed_after = plan.seeds_after();
        // One entry per address; the node gathers them by peer id and
        // tries each address of a peer in turn.
        start.peers = PeerAddrs::flatten(&plan.peers);
        start.mirrors = plan
            .mirrors
            .as_ref()
            .map(crate::mirror::MirrorSet::labels)
            .unwrap_or_default();
        start.manifest = serve.then(|| crate::node::served_manifest(&settings, manifest));
        start.chunk_list = (plan.chunk_list.as_ref())
            .filter(|_| serve)
            .map(|list| crate::node::chunk_list_of(list.chunk_hashes()));
        // Chunks whose start an older version here holds: asked for from
        // there of peers that speak v3.
        start.prefixes = partial.held_starts();
        let node = Node::new(NodeParts {
            config: settings,
            identity,
            swarm,
            start,
            jobs,
            reports,
        })?;
        let mut fetcher = Self {
            node,
            partial: Arc::clone(&partial),
        };
        fetcher.node.start_hash();
        if let Some(set) = plan.mirrors {
            let facts = crate::mirror::ArtifactFacts {
                bytes: manifest.artifact_bytes,
                chunk_count: geometry.chunk_count(),
                merkle_root: manifest.chunks.merkle_root,
                chunk_list_sha256: manifest.chunks.chunk_list.as_ref().map(|list| list.sha256),
                listed: geometry.is_listed().then(|| geometry.clone()),
            };
            // What earlier runs saw of the mirrors: a file changed since is
            // another file (an unusable list means nothing seen).
            let before = partial.remembered_mirrors().unwrap_or_default();
            fetcher.node.core().remember_mirrors_from(before);
            fetcher.node.use_mirrors(set, facts);
        }
        if let Some(dht) = plan.dht {
            let key = crate::dht::SwarmKey::of(&manifest.chunks.merkle_root);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DownloadPlan {
        let text = include_str!("../../fixtures/manifest/good-commented.manifest");
        let manifest = Manifest::parse(text).expect("the fixture parses");
        let signature = minimodel_verifier::signing::trust::judge_without_pins(&manifest)
            .expect("the fixture's signature is judged");
        DownloadPlan::new(
            manifest,
            Sha256Digest::of(text.as_bytes()),
            signature,
            "out",
        )
    }

    #[test]
    fn a_download_that_does_not_serve_listens_nowhere_and_keeps_its_core_settings() {
        let mut plan = plan();
        plan.core.give_up_after = Duration::from_secs(7);
        plan.core.max_peers = 3;
        plan.lan = true;
        let settings = plan.node_settings();
        assert_eq!(settings.listen, None);
        assert!(!settings.port_mapping);
        assert_eq!(settings.core.give_up_after, Duration::from_secs(7));
        assert_eq!(settings.core.max_peers, 3);
        assert!(settings.lan);
        assert!(!plan.seeds_after());
    }

    #[test]
    fn a_serving_download_listens_where_it_is_told_and_maps_only_when_asked() {
        let mut plan = plan();
        let listen: SocketAddr = "0.0.0.0:4433".parse().unwrap();
        plan.serving = Some(Serving {
            listen,
            seed_after: true,
            port_mapping: false,
        });
        plan.relays = vec!["203.0.113.7:4434".parse().unwrap()];
        let settings = plan.node_settings();
        assert_eq!(settings.listen, Some(listen));
        assert!(!settings.port_mapping);
        assert_eq!(settings.relays, plan.relays);
        assert!(plan.seeds_after());
        plan.serving = Some(Serving {
            listen,
            seed_after: false,
            port_mapping: true,
        });
        assert!(plan.node_settings().port_mapping);
        assert!(!plan.seeds_after());
    }
}
