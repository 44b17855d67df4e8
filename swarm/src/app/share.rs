//! Share: serve a verified local `.slm` file to other peers.
//!
//! [`SharePlan::verify`] reads the whole file once (container, header,
//! every chunk, the Merkle root, the whole-file SHA-256); only what it
//! returns can be started, so nothing unverified is served. A
//! [`VerifiedShare`] can start a [`Seeder`] more than once (after a stop,
//! with other limits) without reading the file again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use minimodel_verifier::check::{VerifiedArtifact, VerifyError, verify_local_file};
use minimodel_verifier::manifest::Manifest;
use tokio::sync::mpsc;

use super::{Limits, node_settings};
use crate::node::NodeReport;
use crate::seed::{SeedError, Seeder};
use crate::transport::{Identity, TransportTuning};

/// What to serve and how.
#[derive(Debug, Clone)]
pub struct SharePlan {
    /// The artifact's manifest (its signature checked by the caller).
    pub manifest: Manifest,
    /// The local `.slm` file.
    pub file: PathBuf,
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The upload cap and the peer limit (the download limits do not
    /// apply).
    pub limits: Limits,
    /// QUIC tuning (the congestion controller).
    pub tuning: TransportTuning,
    /// The manifest file's bytes as read, handed to a manifest query (a
    /// ticket names their SHA-256). `None`: the manifest's canonical text.
    pub manifest_file: Option<Arc<[u8]>>,
    /// Ask the home router to map the listening port (UPnP IGD, NAT-PMP,
    /// PCP; default off: a front end turns it on with its user's consent).
    pub port_mapping: bool,
    /// Announce the swarm on the local network (`--lan`, mDNS; default
    /// off: it tells everyone on the network what this host shares).
    pub lan: bool,
    /// Serve on this endpoint with the other swarms on it (one port for
    /// a library) instead of listening at `listen`.
    pub endpoint: Option<crate::node::SharedEndpoint>,
    /// Addresses the user says peers reach it at (`--public-addr`), for
    /// the verdict on who can reach it.
    pub public_addrs: Vec<SocketAddr>,
    /// Relays to register with (`--relay`, `docs/relay.md`).
    pub relays: Vec<crate::relay::RelayAddr>,
}

/// A share whose file passed every check against its manifest.
#[derive(Debug)]
pub struct VerifiedShare {
    plan: SharePlan,
    artifact: VerifiedArtifact,
}

impl SharePlan {
    /// A plan listening at `listen` with default limits and tuning.
    pub fn new(manifest: Manifest, file: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            manifest,
            file: file.into(),
            listen,
            limits: Limits::default(),
            tuning: TransportTuning::default(),
            manifest_file: None,
            port_mapping: false,
            lan: false,
            endpoint: None,
            public_addrs: Vec::new(),
            relays: Vec::new(),
        }
    }

    /// Verifies the file against the manifest: one full read, blocking;
    /// `progress` hears the bytes read so far.
    pub fn verify(self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifiedShare, VerifyError> {
        let artifact = verify_local_file(&self.manifest, &self.file, progress)?;
        Ok(VerifiedShare {
            plan: self,
            artifact,
        })
    }
}

impl VerifiedShare {
    /// The plan it was verified with.
    pub fn plan(&self) -> &SharePlan {
        &self.plan
    }

    /// The proof that the file passed.
    pub fn artifact(&self) -> &VerifiedArtifact {
        &self.artifact
    }

    /// Starts listening with `identity`; serve with [`Seeder::run`].
    pub fn start(
        &self,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Seeder, SeedError> {
        self.start_with(self.plan.listen, &self.plan.limits, identity, reports)
    }

    /// [`VerifiedShare::start`] listening at `listen` with `limits`
    /// instead of the plan's (a share started again with other caps, or
    /// on another port, without reading its file again).
    pub fn start_with(
        &self,
        listen: SocketAddr,
        limits: &Limits,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Seeder, SeedError> {
        let plan = &self.plan;
        let mut settings = node_settings(Some(listen), limits, plan.tuning.clone());
        settings.manifest_file = plan.manifest_file.clone();
        settings.port_mapping = plan.port_mapping;
        settings.lan = plan.lan;
        settings.shared = plan.endpoint.clone();
        settings.public_addrs = plan.public_addrs.clone();
        settings.relays = plan.relays.clone();
        Seeder::start(&self.artifact, &plan.file, settings, identity, reports)
    }
}
