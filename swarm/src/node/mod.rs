//! A peer of one swarm: the tokio driver around the sans-IO state machines.
//!
//! One coordinator task owns all state (the download core, the upload
//! queue, the peers, the storage handle, the Merkle knowledge) and reacts
//! to events: link events from the peers' tasks, results of verification
//! and storage jobs, finished uploads, new connections, and a tick every
//! 100 ms. Hashing and disk I/O run on blocking workers; the QUIC tasks
//! only move bytes.
//!
//! The same node seeds (every chunk, no download), fetches (a download,
//! no serving) or does both (`fetch --serve`: verified chunks are served
//! while the rest downloads).

mod connect;
mod events;
mod fetching;
mod serving;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex as VerifierIndex, ChunkVerifier};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_wire::{
    HaveBitfield, MAX_PEERS_PER_MESSAGE, PeerAddr, PeerId, SwarmIdentity, SwarmParams,
};
use tokio::sync::mpsc;

pub use events::NodeReport;

use crate::download::DownloadCore;
use crate::link::{LinkEvent, LinkHandle, LocalHello};
use crate::picker::PeerKey;
use crate::resume::PartialDownload;
use crate::store::Storage;
use crate::transport::{Identity, TransportTuning};
use crate::upload::{TokenBucket, UploadConfig, UploadQueue};

use self::connect::Admission;
use self::fetching::DownloadState;
use self::serving::Uploads;

/// How often the node checks timeouts, refills pipelines and reports.
const TICK: Duration = Duration::from_millis(100);

/// Settings every node has.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where to listen when serving (port 0 picks one). `None`: dial only.
    pub listen: Option<SocketAddr>,
    /// Most peers connected at once. Default 32.
    pub max_peers: usize,
    /// Upload cap in bytes per second, if any.
    pub max_upload: Option<u64>,
    /// Chunks uploaded at once, over all peers. Default 8.
    pub upload_slots: usize,
    /// Chunks uploaded at once to one peer. Default 2: one being sent, the
    /// next one ready, so the peer never waits.
    pub upload_slots_per_peer: usize,
    /// Serving side queue limits.
    pub upload: UploadConfig,
    /// QUIC tuning.
    pub tuning: TransportTuning,
    /// Program name and version, sent in Hello.
    pub agent: String,
    /// Handshake timeout (QUIC and Hello/bitfield exchange).
    pub handshake_timeout: Duration,
    /// Incoming connections from one IP address at once, handshakes
    /// included; more are refused before their TLS handshake. Default 16:
    /// room for peers behind one NAT and for a download restarted several
    /// times while its old connections time out (`idle_timeout`), while
    /// one host cannot take every peer slot (`max_peers`, 32).
    pub max_connections_per_ip: usize,
    /// Incoming handshakes (QUIC, then Hello and bitfields) in progress at
    /// once; more are refused. Default 16: a handshake on loopback takes
    /// under a millisecond, a far one a few round trips, so 16 admit
    /// hundreds of peers a second, while peers that connect and stall hold
    /// at most 16 tasks until `handshake_timeout`.
    pub max_handshakes: usize,
    /// Addresses learned from one peer's Peers messages (peer exchange)
    /// are dialed at most 32 at once and 32 per this interval: unknown
    /// addresses beyond that are ignored. Default 2 s. An honest node tells
    /// each peer of each other serving peer once, so unless a swarm grows
    /// by more than 32 serving peers in a burst nothing it says is lost; a
    /// flood cannot make this node dial more than 16 addresses a second per
    /// peer.
    pub peer_exchange_min_interval: Duration,
    /// An upload whose next 64 KiB are not taken by the peer's flow control
    /// within this time is given up and the peer dropped. Default 20 s
    /// (3.2 KiB/s): a peer that requests chunks and never reads them would
    /// otherwise hold upload slots for good.
    pub upload_stall_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_peers: 32,
            max_upload: None,
            upload_slots: 8,
            upload_slots_per_peer: 2,
            upload: UploadConfig::default(),
            tuning: TransportTuning::default(),
            agent: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
            handshake_timeout: Duration::from_secs(10),
            max_connections_per_ip: 16,
            max_handshakes: 16,
            peer_exchange_min_interval: Duration::from_secs(2),
            upload_stall_timeout: Duration::from_secs(20),
        }
    }
}

/// The addresses one peer may make us dial (peer exchange), one token
/// each: [`MAX_PEERS_PER_MESSAGE`] at most, refilled at that many per
/// `interval` ([`NodeConfig::peer_exchange_min_interval`]).
pub(crate) fn peer_exchange_budget(interval: Duration, now: Instant) -> TokenBucket {
    let burst = MAX_PEERS_PER_MESSAGE as u64;
    let per_second = (burst as f64 / interval.as_secs_f64().max(1e-3)).round() as u64;
    TokenBucket::new(per_second, burst, now)
}

/// Where proofs come from: the whole tree (a seeder) or what a downloading
/// peer learned from the proofs it checked.
#[derive(Debug, Clone)]
pub(crate) enum ProofSource {
    Full(Arc<MerkleTree>),
    Download(Arc<PartialDownload>),
}

impl ProofSource {
    pub(crate) fn proof(&self, chunk: u32) -> Option<Vec<Sha256Digest>> {
        match self {
            ProofSource::Full(tree) => tree.proof(chunk),
            ProofSource::Download(download) => download.proof(VerifierIndex(chunk)),
        }
    }
}

/// A connected peer.
pub(crate) struct Peer {
    pub(crate) id: PeerId,
    pub(crate) addr: SocketAddr,
    pub(crate) link: LinkHandle,
    /// We dialed it (rather than it us).
    pub(crate) dialed: bool,
    /// Peers it was told about by peer exchange.
    pub(crate) told: BTreeSet<PeerId>,
    /// It announced that it serves (and where), so it may be passed on.
    pub(crate) serving: bool,
    pub(crate) listen: Option<SocketAddr>,
    /// It is part of the download (it serves and we fetch).
    pub(crate) downloading_from: bool,
    pub(crate) uploaded_chunks: u64,
    pub(crate) uploaded_bytes: u64,
    /// How many more addresses from its Peers messages we would dial now
    /// ([`NodeConfig::peer_exchange_min_interval`]).
    pub(crate) peer_exchange_budget: TokenBucket,
    /// Its place among the connections from its address (incoming only).
    _ip_slot: Option<connect::IpSlot>,
}

/// Events that the node's own jobs send back to it.
pub(crate) enum Internal {
    /// A handshake finished (we dialed, or a peer dialed us).
    LinkUp(Box<connect::LinkUp>),
    /// Dialing a peer failed.
    DialFailed { peer: PeerAddr, error: String },
    /// A chunk passed its proof and is stored.
    Stored(Box<fetching::StoredChunk>),
    /// A chunk failed its proof.
    BadChunk {
        key: PeerKey,
        chunk: u32,
        error: String,
    },
    /// Storing a verified chunk failed: the download stops.
    StoreFailed {
        key: PeerKey,
        chunk: u32,
        error: crate::resume::ResumeError,
    },
    /// The trailing hasher hashed another chunk.
    TrailingProgress,
    /// A checkpoint of the partial download finished; a failed one stops
    /// the download.
    Checkpointed(Result<(), crate::resume::ResumeError>),
    /// An upload ended.
    UploadDone {
        key: PeerKey,
        chunk: u32,
        bytes: u64,
        ok: bool,
        /// The peer stopped taking bytes: why, to drop it.
        stalled: Option<String>,
    },
}

/// The whole state of a node.
pub(crate) struct Node {
    config: NodeConfig,
    identity: Arc<Identity>,
    endpoint: quinn::Endpoint,
    params: SwarmParams,
    geometry: ChunkGeometry,
    verifier: Arc<ChunkVerifier>,
    storage: Arc<dyn Storage>,
    proofs: ProofSource,
    /// Chunks this node has verified and can prove.
    local_have: HaveBitfield,
    serving: bool,
    local_hello: LocalHello,
    peers: BTreeMap<PeerKey, Peer>,
    next_key: u32,
    banned: BTreeSet<PeerId>,
    /// Addresses being dialed or connected, so no peer is dialed twice.
    dialing: BTreeSet<PeerId>,
    admission: Arc<Mutex<Admission>>,
    acceptor_started: bool,
    download: Option<DownloadState>,
    uploads: Uploads,
    link_events: mpsc::Receiver<(PeerKey, LinkEvent)>,
    link_sender: mpsc::Sender<(PeerKey, LinkEvent)>,
    internal: mpsc::UnboundedReceiver<Internal>,
    internal_sender: mpsc::UnboundedSender<Internal>,
    reports: mpsc::UnboundedSender<NodeReport>,
    /// Where each peer we ever talked to was reached.
    addresses: BTreeMap<PeerId, SocketAddr>,
    /// The last few reasons peers failed or left, for error messages.
    history: Vec<String>,
}

/// What [`Node::new`] needs.
pub(crate) struct NodeParts {
    pub(crate) config: NodeConfig,
    pub(crate) identity: Arc<Identity>,
    pub(crate) swarm: SwarmIdentity,
    pub(crate) geometry: ChunkGeometry,
    pub(crate) verifier: Arc<ChunkVerifier>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) proofs: ProofSource,
    pub(crate) local_have: HaveBitfield,
    pub(crate) serving: bool,
    pub(crate) download: Option<DownloadParts>,
    pub(crate) reports: mpsc::UnboundedSender<NodeReport>,
}

/// The download half of a node: the core and what an earlier run left.
pub(crate) struct DownloadParts {
    pub(crate) core: DownloadCore,
    /// The partial file and its state (chunks from earlier runs included).
    pub(crate) partial: Arc<PartialDownload>,
}

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The endpoint could not be created.
    #[error("cannot open the QUIC endpoint")]
    Transport(#[from] crate::transport::TransportError),
    /// The storage failed.
    #[error("storage failed")]
    Storage(#[from] std::io::Error),
}

impl Node {
    pub(crate) fn new(parts: NodeParts) -> Result<Self, NodeError> {
        // A node that does not listen accepts nothing: no server config, so
        // Initials sent to it cost nothing (issue 18). Its socket is
        // dual-stack, so it dials IPv4 and IPv6 peers.
        let endpoint = match parts.config.listen {
            Some(listen) => {
                crate::transport::bind_endpoint(listen, &parts.identity, &parts.config.tuning)?
            }
            None => crate::transport::bind_client_endpoint(&parts.config.tuning)?,
        };
        let listen = parts.config.listen.and_then(|_| endpoint.local_addr().ok());
        let params = *parts.swarm.params();
        let (link_sender, link_events) = mpsc::channel(1024);
        let (internal_sender, internal) = mpsc::unbounded_channel();
        let local_hello = LocalHello {
            swarm: parts.swarm.clone(),
            serving: parts.serving,
            listen,
            agent: parts.config.agent.clone(),
        };
        let limit = parts.config.max_upload.map(|rate| {
            Arc::new(tokio::sync::Mutex::new(TokenBucket::new(
                rate,
                rate.clamp(64 << 10, 1 << 20),
                Instant::now(),
            )))
        });
        let uploads = Uploads::new(
            UploadQueue::new(parts.local_have.clone(), parts.config.upload.clone()),
            limit,
        );
        let admission = Arc::new(Mutex::new(Admission {
            max_peers: parts.config.max_peers,
            connected: BTreeSet::new(),
            dialed_us: BTreeSet::new(),
            admitting: BTreeSet::new(),
            banned: BTreeSet::new(),
            serving: parts.serving,
            have: parts.local_have.clone(),
        }));
        let download = parts.download.map(|d| {
            DownloadState::new(d.core, &parts.geometry, d.partial, internal_sender.clone())
        });
        Ok(Self {
            config: parts.config,
            identity: parts.identity,
            endpoint,
            params,
            geometry: parts.geometry,
            verifier: parts.verifier,
            storage: parts.storage,
            proofs: parts.proofs,
            local_have: parts.local_have,
            serving: parts.serving,
            local_hello,
            peers: BTreeMap::new(),
            next_key: 0,
            banned: BTreeSet::new(),
            dialing: BTreeSet::new(),
            admission,
            acceptor_started: false,
            download,
            uploads,
            link_events,
            link_sender,
            internal,
            internal_sender,
            reports: parts.reports,
            addresses: BTreeMap::new(),
            history: Vec::new(),
        })
    }

    /// The address peers reach this node at, when it listens.
    pub(crate) fn listen_addr(&self) -> Option<SocketAddr> {
        self.local_hello.listen
    }

    /// This node's id.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    pub(crate) fn report(&mut self, report: NodeReport) {
        let line = match &report {
            NodeReport::PeerDisconnected { addr, reason, .. }
            | NodeReport::Refused { addr, reason } => Some(format!("{addr}: {reason}")),
            NodeReport::Banned { addr, error, .. } => Some(format!("{addr}: banned: {error}")),
            _ => None,
        };
        if let Some(line) = line {
            if self.history.len() >= 16 {
                self.history.remove(0);
            }
            self.history.push(line);
        }
        let _ = self.reports.send(report);
    }

    /// What happened to peers lately, for an error message.
    pub(crate) fn failure_summary(&self) -> String {
        if self.history.is_empty() {
            "no peer answered".to_owned()
        } else {
            self.history.join("; ")
        }
    }

    /// Where a peer was reached.
    pub(crate) fn address_of(&self, id: &PeerId) -> Option<SocketAddr> {
        self.addresses.get(id).copied()
    }

    pub(crate) fn download_state(&self) -> Option<&DownloadState> {
        self.download.as_ref()
    }

    pub(crate) fn download_state_mut(&mut self) -> Option<&mut DownloadState> {
        self.download.as_mut()
    }

    /// Whether a dial is under way.
    pub(crate) fn is_dialing(&self) -> bool {
        !self.dialing.is_empty()
    }

    /// Connected peers that serve us.
    pub(crate) fn download_peer_count(&self) -> usize {
        self.peers.values().filter(|p| p.downloading_from).count()
    }

    /// The download is complete and verified: serve every chunk from the
    /// whole tree from now on.
    pub(crate) fn become_seeder(&mut self, tree: Arc<MerkleTree>) {
        let count = self.params.chunk_count();
        self.proofs = ProofSource::Full(tree);
        self.local_have = HaveBitfield::full(count);
        for chunk in 0..count {
            self.uploads.queue.add_local_chunk(chunk);
        }
        if let Ok(mut admission) = self.admission.lock() {
            admission.have = HaveBitfield::full(count);
        }
    }

    /// Says goodbye to every peer and closes the endpoint, waiting briefly
    /// for the goodbyes to leave.
    pub(crate) async fn shutdown(&mut self) {
        let reason = if self.download.as_ref().is_none_or(|d| d.core.is_complete()) {
            minimodel_wire::GoodbyeReason::Done
        } else {
            minimodel_wire::GoodbyeReason::Shutdown
        };
        for peer in self.peers.values() {
            peer.link.close(reason);
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self
                .peers
                .values()
                .any(|p| p.link.connection.close_reason().is_none())
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Runs until `done` says so (checked after every event) or `stop`
    /// resolves.
    pub(crate) async fn run(
        &mut self,
        mut stop: impl std::future::Future<Output = ()> + Unpin,
        mut done: impl FnMut(&Node) -> bool,
    ) {
        if self.serving && self.local_hello.listen.is_some() {
            self.spawn_acceptor();
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(internal) = self.internal.recv() => self.on_internal(internal),
                Some((key, event)) = self.link_events.recv() => self.on_link_event(key, event),
                _ = tick.tick() => self.on_tick(),
            }
            if done(self) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_exchange_budget_allows_a_burst_then_its_rate() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(2);
        let mut budget = peer_exchange_budget(interval, t0);
        let burst = (0..100).filter(|_| budget.try_take(1, t0)).count();
        assert_eq!(burst, MAX_PEERS_PER_MESSAGE);
        // Half an interval later: half a burst.
        let later = t0 + interval / 2;
        let more = (0..100).filter(|_| budget.try_take(1, later)).count();
        assert_eq!(more, MAX_PEERS_PER_MESSAGE / 2);
        // Never more than a burst, however long it waited.
        let much_later = later + interval * 10;
        let refilled = (0..100).filter(|_| budget.try_take(1, much_later)).count();
        assert_eq!(refilled, MAX_PEERS_PER_MESSAGE);
    }
}
