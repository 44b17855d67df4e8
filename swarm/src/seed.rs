//! Seeding: serving every chunk of a verified local artifact until stopped.
//!
//! A seeder starts from a [`VerifiedArtifact`], the proof that the whole
//! file passed every check against its manifest, so there is no way to seed
//! a file that was not verified. Chunks are read from the file as they are
//! requested; their proofs come from the artifact's Merkle tree.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use minimodel_node::NodeStart;
use minimodel_verifier::check::VerifiedArtifact;
use minimodel_verifier::chunk::ChunkVerifier;
use minimodel_wire::{HaveBitfield, PeerAddr, PeerId};
use tokio::sync::mpsc;

use crate::fetch::{FetchError, swarm_of};
use crate::node::{Jobs, Node, NodeParts, NodeReport, NodeSettings, ProofSource};
use crate::store::{FileStorage, Storage};
use crate::transport::Identity;

/// The most a peer can make a seeder buffer on one connection: peers send
/// a seeder only control messages (a Request is 9 bytes), so a small
/// receive window costs nothing, and a peer that pushes streams of junk
/// pins at most this much until it is dropped (instead of the 12 MiB a
/// downloading connection needs for speed).
pub const SEEDER_RECEIVE_WINDOW: u64 = 256 * 1024;

/// A running seeder.
pub struct Seeder {
    node: Node,
}

/// Why seeding could not start.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The manifest's geometry does not fit the protocol.
    #[error("the manifest cannot be served: {0}")]
    Unservable(#[from] crate::fetch::SwarmOfError),
    /// The manifest's chunk geometry is invalid.
    #[error("the manifest cannot be served: {0}")]
    Geometry(#[from] minimodel_verifier::chunk::GeometryError),
    /// The file could not be opened.
    #[error("cannot open the artifact")]
    Open(#[source] std::io::Error),
    /// The node could not start.
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// The file is not the artifact the manifest describes (or cannot be
    /// read).
    #[error("the file does not pass its check against the manifest")]
    Verify(#[source] minimodel_verifier::check::VerifyError),
    /// No identity for the node.
    #[error("no identity for the node")]
    Identity(#[source] crate::transport::IdentityError),
    /// The manifest's signature, or its key, is refused.
    #[error("the manifest is refused")]
    Signature(#[source] minimodel_verifier::signing::trust::TrustError),
}

impl Seeder {
    /// Opens `path` (the file `artifact` was verified from) and starts
    /// listening. `config.listen` must be set. The receive windows of
    /// `config.tuning` are capped at [`SEEDER_RECEIVE_WINDOW`].
    pub fn start(
        artifact: &VerifiedArtifact,
        path: &Path,
        mut config: NodeSettings,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Self, SeedError> {
        let manifest = artifact.manifest();
        let geometry = artifact.geometry().clone();
        let swarm = swarm_of(manifest, &geometry)?;
        let tuning = &mut config.tuning;
        tuning.connection_receive_window =
            tuning.connection_receive_window.min(SEEDER_RECEIVE_WINDOW);
        tuning.stream_receive_window = tuning.stream_receive_window.min(SEEDER_RECEIVE_WINDOW);
        let storage: Arc<dyn Storage> =
            Arc::new(FileStorage::open_read_only(path).map_err(SeedError::Open)?);
        let have = HaveBitfield::full(geometry.chunk_count());
        // Where it listens and its LAN: Node::new, which binds.
        let mut start = NodeStart::new(
            swarm.clone(),
            identity.peer_id(),
            config.agent.clone(),
            have,
        );
        start.serve = true;
        start.manifest = Some(crate::node::served_manifest(&config, manifest));
        start.chunk_list = Some(crate::node::chunk_list_of(artifact.tree().chunk_hashes()));
        let jobs = Jobs::new(
            geometry.clone(),
            ChunkVerifier::new(geometry, manifest.chunks.merkle_root),
            storage,
            ProofSource::Full(Arc::new(artifact.tree().clone())),
            None,
            None,
            &config.core,
        );
        let node = Node::new(NodeParts {
            config,
            start,
            identity,
            swarm,
            jobs,
            reports,
        })?;
        Ok(Self { node })
    }

    /// Where peers reach this seeder.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
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

    /// This seeder's id.
    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id()
    }

    /// The address to paste into `fetch --peer`, with a loopback address
    /// when listening on all interfaces.
    pub fn peer_addr(&self) -> Option<PeerAddr> {
        self.listen_addr().map(|mut addr| {
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            PeerAddr {
                id: self.peer_id(),
                addr,
            }
        })
    }

    /// Serves until `stop` resolves, then says goodbye to every peer.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<(), FetchError> {
        self.node.run(stop).await;
        self.node.shutdown().await;
        Ok(())
    }
}
