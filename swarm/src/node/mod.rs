//! The tokio + quinn driver of a [`NodeCore`]: it moves bytes, runs
//! blocking jobs and carries out the core's actions; it decides nothing.
//!
//! One task owns the core, the endpoint and every link handle. It waits
//! for the next of: an incoming connection (asking the core whether to
//! accept it), an event from a link or a job, the core's next deadline
//! ([`NodeCore::poll_timeout`]), or the stop signal; it feeds the core and
//! then carries out every action the core queued. Links run as small tasks
//! (`crate::link`); hashing and disk I/O run on blocking workers
//! (`jobs`). Nothing is shared between tasks but channels.

mod connect;
mod jobs;
mod shared;

pub use shared::SharedEndpoint;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use minimodel_node::node::{Action, LinkUp};
use minimodel_node::{LinkId, NodeCore, NodeStart};
use minimodel_wire::SwarmIdentity;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use minimodel_node::NodeReport;
pub use minimodel_node::book::Source;
pub use minimodel_node::config::MIN_RATE_CAP;
pub use minimodel_node::config::NodeConfig as CoreConfig;
pub use minimodel_node::config::{ConfigError, NodeLimits};
pub use minimodel_node::node::{End, MAX_MIRRORS};
pub use minimodel_node::reach::{Reach, TicketReach, ticket_reach};
pub use minimodel_node::report::{
    Blame, CHUNK_MAP_CELLS, ChunkCell, ChunkMap, DamageCause, Departure, Failure as NodeFailure,
    Fault, IntroductionCounts, LinkEnd, LinkFigures, NodeMetrics, PeerFigures, Problem, Refusal,
    Tried, Violation,
};

use crate::link::{self, LinkEvent, LinkHandle, Session};
use crate::transport::{Identity, TransportTuning};

pub(crate) use crate::resume::DeliveryContext;
pub(crate) use jobs::{Jobs, ProofSource};

/// Settings of a running node: the core's policy and timers
/// ([`CoreConfig`]), and what only the program around it knows (where to
/// listen, the transport's tuning, its name).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Where to listen when serving (port 0 picks one). `None`: dial only,
    /// and accept nothing.
    pub listen: Option<SocketAddr>,
    /// QUIC tuning.
    pub tuning: TransportTuning,
    /// Program name and version, sent in Hello.
    pub agent: String,
    /// Every decision's settings and timers (`minimodel_node::NodeConfig`).
    pub core: CoreConfig,
    /// The manifest file's bytes as the user has them, handed to a
    /// manifest query (a ticket names their SHA-256). `None`: the
    /// manifest's canonical text.
    pub manifest_file: Option<Arc<[u8]>>,
    /// Ask the home router to map the listening port (UPnP IGD, NAT-PMP,
    /// PCP) when the node listens behind one
    /// (`minimodel_node::portmap::wants_mapping`); the mapping is removed
    /// when the node shuts down.
    pub port_mapping: bool,
    /// Local discovery (`--lan`): announce the swarm on the local network
    /// with mDNS when the node listens, and dial the neighbours heard
    /// there ([`crate::lan`]).
    pub lan: bool,
    /// Serve and dial on this endpoint, with the other swarms on it,
    /// instead of one of the node's own; `listen` and `port_mapping` are
    /// then the endpoint's. Its identity must be the node's.
    pub shared: Option<SharedEndpoint>,
    /// Addresses the user says peers reach this node at (`--public-addr`):
    /// the verdict on who can reach it takes their word
    /// (`minimodel_node::reach`).
    pub public_addrs: Vec<SocketAddr>,
    /// Relays to register with (`--relay`, and those the peers it is given
    /// name): it keeps a link to each (`docs/relay.md`).
    pub relays: Vec<crate::relay::RelayAddr>,
    /// The relays each peer it is given names ("reach me via").
    pub peer_relays: Vec<(minimodel_wire::PeerId, Vec<crate::relay::RelayAddr>)>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            listen: None,
            tuning: TransportTuning::default(),
            agent: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
            core: CoreConfig::default(),
            manifest_file: None,
            port_mapping: false,
            lan: false,
            shared: None,
            public_addrs: Vec::new(),
            relays: Vec::new(),
            peer_relays: Vec::new(),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The endpoint could not be created.
    #[error("cannot open the QUIC endpoint")]
    Transport(#[from] crate::transport::TransportError),
    /// A setting cannot work.
    #[error("invalid settings")]
    Config(#[from] minimodel_node::config::ConfigError),
    /// The program name cannot be sent in a Hello.
    #[error("invalid agent for the Hello")]
    Agent(#[from] minimodel_wire::FieldError),
    /// The shared endpoint cannot take this node.
    #[error("cannot serve on the shared endpoint: {0}")]
    Shared(String),
}

/// What the node's own tasks report back to it.
pub(crate) enum Event {
    /// A link's event.
    Link(LinkId, LinkEvent),
    /// A handshake finished.
    Up(LinkId, Box<Session>, SocketAddr),
    /// A dial or an incoming handshake failed, or the peer we dialed
    /// refused our Hello (`Err`, with other peers to try).
    Failed(LinkId, Result<LinkEnd, minimodel_node::node::Rejection>),
    /// A dial's connection is up: its handshake asks for our Hello (the
    /// core's, once the core no longer holds it) to the peer at `remote`.
    OurHello {
        remote: SocketAddr,
        reply: tokio::sync::oneshot::Sender<minimodel_wire::Hello>,
    },
    /// An incoming handshake read the dialer's first message (a Hello or
    /// a manifest query): the core answers.
    First {
        link: LinkId,
        peer: minimodel_wire::PeerId,
        first: minimodel_node::node::First,
        reply: tokio::sync::oneshot::Sender<minimodel_node::node::Answer>,
    },
    /// An incoming connection's manifest query was answered and the answer
    /// went out (the core closes the link it kept until then).
    Answered(LinkId),
    /// A job finished.
    Job(jobs::JobDone),
    /// A DHT lookup found addresses.
    Discovered(Vec<SocketAddr>),
    /// The DHT lookup ended.
    LookupDone,
    /// A neighbour was heard on the local network.
    Neighbour(minimodel_wire::PeerId, Vec<SocketAddr>),
    /// Someone asks for the node's counters.
    Metrics(tokio::sync::oneshot::Sender<NodeMetrics>),
    /// Someone changes the node's limits ([`LimitsHandle`]).
    Limits(
        NodeLimits,
        tokio::sync::oneshot::Sender<Result<(), ConfigError>>,
    ),
    /// The shared endpoint routed an incoming handshake here.
    Opened(Box<shared::RoutedOpening>),
    /// The shared endpoint's gate asks this swarm, over its part of the
    /// peer budget (`keep`), to close an idle incoming peer for a swarm
    /// below its own.
    Shed { keep: usize },
}

/// Asks a running node for a snapshot of its counters (a metrics scrape),
/// from any task.
#[derive(Clone)]
pub struct MetricsHandle {
    events: mpsc::Sender<Event>,
}

impl MetricsHandle {
    /// The node's counters now; `None` once the node has stopped.
    pub async fn snapshot(&self) -> Option<NodeMetrics> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.events.send(Event::Metrics(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// Changes a running node's limits (its peer budget and its own caps)
/// from any task, without a restart: the core takes them at once
/// ([`NodeCore::set_limits`]) and, on a shared endpoint, tells the gate.
#[derive(Clone)]
pub struct LimitsHandle {
    events: mpsc::Sender<Event>,
}

/// Why a node's limits were not changed.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The limits cannot work (a cap below [`MIN_RATE_CAP`]); nothing
    /// changed.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Ended,
}

impl LimitsHandle {
    /// Puts `limits` in force.
    pub async fn set(&self, limits: NodeLimits) -> Result<(), LimitsError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Limits(limits, reply))
            .await
            .map_err(|_| LimitsError::Ended)?;
        answer.await.map_err(|_| LimitsError::Ended)??;
        Ok(())
    }
}

/// A link as the driver holds it.
enum DriverLink {
    /// A dial or a handshake in progress.
    Attempt(AbortHandle),
    /// Up: its handle and its uploads under way.
    Up(LinkHandle, BTreeMap<u32, AbortHandle>),
    /// Its Goodbye is on its way; the connection, to close it when the
    /// core says.
    Closing(quinn::Connection),
}

/// A node: the core and everything around it.
pub(crate) struct Node {
    core: NodeCore,
    endpoint: quinn::Endpoint,
    /// The endpoint socket's opening packets and relay paths.
    paths: crate::transport::Paths,
    identity: Arc<Identity>,
    config: NodeSettings,
    swarm: SwarmIdentity,
    /// Where peers reach this node, when it listens.
    listen: Option<SocketAddr>,
    /// The router's mapping of the listening port (this node's or its
    /// shared endpoint's), when one was asked for.
    mapped: Option<tokio::sync::watch::Receiver<crate::portmap::MapState>>,
    /// Dialed links waiting for our Hello while the core holds it
    /// ([`NodeCore::hello_held`]).
    held_hellos: Vec<(
        SocketAddr,
        tokio::sync::oneshot::Sender<minimodel_wire::Hello>,
    )>,
    links: BTreeMap<LinkId, DriverLink>,
    events: mpsc::Receiver<Event>,
    sender: mpsc::Sender<Event>,
    link_events: mpsc::Receiver<(LinkId, LinkEvent)>,
    link_sender: mpsc::Sender<(LinkId, LinkEvent)>,
    pub(crate) jobs: Jobs,
    reports: mpsc::UnboundedSender<NodeReport>,
    outcome: Option<End>,
    /// The DHT client and this swarm's key, when peers are found there.
    dht: Option<(Arc<crate::dht::Discovery>, crate::dht::SwarmKey)>,
    /// This node's announcement on the DHT (stopped when dropped).
    announcement: Option<crate::dht::Announcement>,
    /// The router's mapping of our port, while the node listens behind one.
    port_map: Option<crate::portmap::PortMapTask>,
    /// Local discovery, with `--lan`.
    lan: Option<crate::lan::LanTask>,
    /// The links to the relays it uses, and what they say.
    relay_links: RelayLinks,
    relay_events: mpsc::Receiver<crate::relay::RelayEvent>,
    /// This node's swarm on a shared endpoint, when it uses one (the
    /// endpoint's accept loop routes its handshakes here).
    registration: Option<shared::Registration>,
    /// The grants the shared endpoint's gate decides for this swarm.
    grants: Option<tokio::sync::watch::Receiver<(u64, minimodel_node::gate::Share)>>,
    /// The download's mirrors, when it has some, and what they report.
    mirrors: Option<crate::mirror::MirrorDriver>,
    mirror_events: Option<mpsc::Receiver<crate::mirror::MirrorEvent>>,
}

/// The next change of a watch, or never without one.
async fn changed<T>(
    watch: &mut Option<tokio::sync::watch::Receiver<T>>,
) -> Option<Result<(), tokio::sync::watch::error::RecvError>> {
    match watch {
        Some(watch) => Some(watch.changed().await),
        None => std::future::pending().await,
    }
}

/// The next event of the mirrors, or never without them.
async fn mirror_event(
    events: &mut Option<mpsc::Receiver<crate::mirror::MirrorEvent>>,
) -> Option<crate::mirror::MirrorEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What [`Node::new`] needs.
pub(crate) struct NodeParts {
    pub(crate) config: NodeSettings,
    pub(crate) identity: Arc<Identity>,
    pub(crate) swarm: SwarmIdentity,
    pub(crate) start: NodeStart,
    pub(crate) jobs: Jobs,
    pub(crate) reports: mpsc::UnboundedSender<NodeReport>,
}

/// The manifest a serving node hands to a manifest query: the file's
/// bytes from `settings` or else the canonical text.
pub(crate) fn served_manifest(
    settings: &NodeSettings,
    manifest: &minimodel_verifier::manifest::Manifest,
) -> Arc<[u8]> {
    settings
        .manifest_file
        .clone()
        .unwrap_or_else(|| Arc::from(manifest.to_text().into_bytes()))
}

/// A chunk list as the core hands it to chunk list queries.
pub(crate) fn chunk_list_of(hashes: &[minimodel_verifier::Sha256Digest]) -> Arc<[[u8; 32]]> {
    hashes.iter().map(|hash| hash.0).collect()
}

pub(crate) use crate::resume::unix_now;

/// What a node registers with at its relays: the addresses it listens at
/// that peers may reach without its router (global IPv6, LAN), at most 4.
fn listen_addrs_for_relays(core: &NodeCore) -> Vec<SocketAddr> {
    use minimodel_node::address::{Scope, scope};
    core.reach_evidence()
        .addrs
        .iter()
        .copied()
        .filter(|addr| {
            minimodel_wire::is_lan_addr(*addr) || (addr.is_ipv6() && scope(*addr) == Scope::Global)
        })
        .take(minimodel_wire::relay::MAX_REGISTER_ADDRS)
        .collect()
}

/// The links a node asks its relays through: its own, or its shared
/// endpoint's (one set for every swarm on it).
#[derive(Debug)]
enum RelayLinks {
    Own(Vec<crate::relay::RelayLink>),
    Shared(crate::relay::hub::HubSubscription),
}

impl RelayLinks {
    fn introduce(&self, relay: SocketAddr, peer: minimodel_wire::PeerId) {
        match self {
            RelayLinks::Own(links) => {
                if let Some(link) = links.iter().find(|link| link.relay().addr == relay) {
                    link.introduce(peer);
                }
            }
            RelayLinks::Shared(subscription) => {
                subscription.introduce(relay, peer);
            }
        }
    }

    fn registered(&self) -> Vec<crate::relay::RegisteredWatch> {
        match self {
            RelayLinks::Own(links) => links
                .iter()
                .map(|link| (link.relay(), link.registered()))
                .collect(),
            RelayLinks::Shared(subscription) => subscription.hub().registered(),
        }
    }

    /// Ends its own links (the relays forget it); a shared endpoint's stay
    /// for the other swarms on it.
    fn clear(&mut self) {
        *self = RelayLinks::Own(Vec::new());
    }
}

/// Starts a link to every relay the node uses (its own, and those its
/// peers name), or asks its shared endpoint to keep one, and tells the
/// core which relays each peer names.
fn start_relay_links(
    config: &NodeSettings,
    identity: &Arc<Identity>,
    agent: &str,
    endpoint: &quinn::Endpoint,
    paths: &crate::transport::Paths,
    addrs: Vec<SocketAddr>,
    core: &mut NodeCore,
) -> (RelayLinks, mpsc::Receiver<crate::relay::RelayEvent>) {
    let (sender, events) = mpsc::channel(256);
    let now = Instant::now();
    for (peer, named) in &config.peer_relays {
        let addrs: Vec<SocketAddr> = named.iter().map(|relay| relay.addr).collect();
        core.add_peer_relays(*peer, &addrs, now);
    }
    let most = match config.shared {
        Some(_) => crate::relay::hub::MAX_HUB_LINKS,
        None => crate::relay::MAX_NODE_RELAYS,
    };
    let relays = crate::relay::relays_used(&config.relays, &config.peer_relays, most);
    // One link per endpoint and relay: on a shared endpoint the relays
    // are the endpoint's, for every swarm on it.
    if let Some(shared) = &config.shared {
        let hub = shared.relay_hub();
        hub.use_relays(&relays);
        let (subscription, events) = hub.subscribe();
        return (RelayLinks::Shared(subscription), events);
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return (RelayLinks::Own(Vec::new()), events);
    }
    let registration = crate::relay::Registration {
        agent: agent.to_owned(),
        addrs,
        mapping: minimodel_wire::relay::MappingKind::Unknown,
    };
    let links = relays
        .into_iter()
        .map(|relay| {
            crate::relay::RelayLink::start(
                endpoint.clone(),
                paths.clone(),
                relay,
                Arc::clone(identity),
                &config.tuning,
                registration.clone(),
                sender.clone(),
            )
        })
        .collect();
    (RelayLinks::Own(links), events)
}

/// Starts local discovery for the node `parts` describes: announcing at
/// `listen`'s port on its `lan` addresses when it listens and serves,
/// passing what it hears to the node's events. Reports how it started.
fn start_lan(
    parts: &NodeParts,
    listen: Option<SocketAddr>,
    lan: &[SocketAddr],
    sender: &mpsc::Sender<Event>,
) -> Option<crate::lan::LanTask> {
    let key = crate::dht::SwarmKey::of(&minimodel_verifier::Sha256Digest(
        *parts.swarm.merkle_root(),
    ));
    let announce = listen
        .filter(|_| parts.start.serve)
        .map(|listen| (listen.port(), lan.iter().map(SocketAddr::ip).collect()));
    let events = sender.clone();
    // Never waits: mDNS hands its events over on a small channel of its
    // own and stalls while one is not taken, so a neighbour heard while
    // the node's queue is full is dropped (it is heard again when it
    // announces again).
    let heard = move |peer, addrs| {
        !matches!(
            events.try_send(Event::Neighbour(peer, addrs)),
            Err(mpsc::error::TrySendError::Closed(_))
        )
    };
    let step = match crate::lan::LanTask::start(key, parts.identity.peer_id(), announce, heard) {
        Ok(task) => {
            let announced = task.announces().then(|| listen.map(|l| l.port())).flatten();
            let _ = parts.reports.send(NodeReport::Lan {
                step: minimodel_node::report::LanStep::Started { announced },
            });
            return Some(task);
        }
        Err(error) => minimodel_node::report::LanStep::Unavailable {
            reason: error.to_string(),
        },
    };
    let _ = parts.reports.send(NodeReport::Lan { step });
    None
}

impl Node {
    pub(crate) fn new(parts: NodeParts) -> Result<Self, NodeError> {
        parts.config.core.validate()?;
        minimodel_wire::validate_agent(&parts.start.agent)?;
        // A node that does not listen accepts nothing: no server config, so
        // Initials sent to it cost nothing. Its socket is
        // dual-stack, so it dials IPv4 and IPv6 peers.
        let shared = parts.config.shared.clone();
        if let Some(shared) = &shared
            && shared.identity().peer_id() != parts.identity.peer_id()
        {
            return Err(NodeError::Shared(
                "the endpoint has another identity than the node".into(),
            ));
        }
        let (endpoint, paths) = match (&shared, parts.config.listen) {
            (Some(shared), _) => (shared.endpoint().clone(), shared.paths().clone()),
            (None, Some(listen)) => crate::transport::bind_endpoint_with_paths(
                listen,
                &parts.identity,
                &parts.config.tuning,
            )?,
            (None, None) => {
                crate::transport::bind_client_endpoint_with_paths(&parts.config.tuning)?
            }
        };
        // A node that does not serve listens nowhere, on a shared endpoint
        // too (it only dials from it): its Hello names no address and it
        // announces itself on no DHT.
        let listen = match &shared {
            Some(shared) => parts.start.serve.then(|| shared.local_addr()),
            None => parts.config.listen.and_then(|_| endpoint.local_addr().ok()),
        };
        // Where peers behind the same router reach us: our LAN addresses
        // (none when the interfaces cannot be read: a peer then reaches us
        // only at our public address).
        // A node that does not listen still knows its own networks.
        let listen_addrs = match listen {
            Some(bound) => crate::addrs::listener_addrs(bound, &[]).unwrap_or_default(),
            None => Vec::new(),
        };
        let lan = minimodel_node::address::own_lan(match listen {
            Some(_) => listen_addrs.clone(),
            None => (crate::addrs::interface_ips()
                .unwrap_or_default()
                .into_iter())
            .map(|ip| SocketAddr::new(ip, 0))
            .collect(),
        });
        // The router maps our port while we listen behind it (started
        // here, inside the runtime, so that an offer can wait for it).
        let port_map = listen
            .filter(|&bound| {
                shared.is_none()
                    && parts.config.port_mapping
                    && minimodel_node::portmap::wants_mapping(bound)
                    && tokio::runtime::Handle::try_current().is_ok()
            })
            .map(|bound| {
                crate::portmap::PortMapTask::start(
                    bound.port(),
                    minimodel_node::portmap::PortMapConfig::default(),
                    parts.reports.clone(),
                )
            });
        let (sender, events) = mpsc::channel(1024);
        let lan_task = parts
            .config
            .lan
            .then(|| start_lan(&parts, listen, &lan, &sender))
            .flatten();
        let mapped = match &shared {
            // The endpoint's mapping, for a node that listens there.
            Some(shared) => listen.and_then(|_| shared.port_mapping()),
            None => port_map.as_ref().map(crate::portmap::PortMapTask::state),
        };
        let serve = parts.start.serve;
        let agent = parts.start.agent.clone();
        let mut start = parts.start;
        start.listen = listen;
        start.lan = lan;
        start.neighbours = lan_task.is_some();
        let mut core = NodeCore::new(parts.config.core.clone(), start, Instant::now());
        // What the verdict on who can reach us judges by, before the
        // mapping (which may give it at once).
        core.set_listen_addrs(
            listen_addrs,
            parts.config.public_addrs.clone(),
            Instant::now(),
        );
        core.set_mapping(mapped.as_ref().map(|state| *state.borrow()), Instant::now());
        let (registration, grants) = match &shared {
            Some(shared) => {
                let name = (
                    parts.swarm.model_id().to_owned(),
                    *parts.swarm.merkle_root(),
                );
                let (registration, grants) = shared
                    .register(name, core.manifest_sha256(), serve, sender.clone())
                    .map_err(|error| NodeError::Shared(error.to_string()))?;
                (Some(registration), Some(grants))
            }
            None => (None, None),
        };
        if let Some(registration) = &registration {
            let (generation, share) = registration.share();
            core.take_grant(generation, share, Instant::now());
        }
        let (link_sender, link_events) = mpsc::channel(1024);
        let (relay_links, relay_events) = start_relay_links(
            &parts.config,
            &parts.identity,
            &agent,
            &endpoint,
            &paths,
            listen_addrs_for_relays(&core),
            &mut core,
        );
        Ok(Self {
            core,
            endpoint,
            paths,
            identity: parts.identity,
            config: parts.config,
            swarm: parts.swarm,
            listen,
            mapped,
            held_hellos: Vec::new(),
            links: BTreeMap::new(),
            events,
            sender,
            link_events,
            link_sender,
            jobs: parts.jobs,
            reports: parts.reports,
            outcome: None,
            dht: None,
            announcement: None,
            port_map,
            lan: lan_task,
            relay_links,
            relay_events,
            registration,
            grants,
            mirrors: None,
            mirror_events: None,
        })
    }

    /// Drives the download's mirrors (the core was started with their
    /// labels, in the same order).
    pub(crate) fn use_mirrors(
        &mut self,
        set: crate::mirror::MirrorSet,
        facts: crate::mirror::ArtifactFacts,
    ) {
        if set.urls.is_empty() {
            return;
        }
        let (sender, events) = mpsc::channel(256);
        self.mirrors = Some(crate::mirror::MirrorDriver::start(
            set,
            facts,
            &self.config.agent,
            sender,
        ));
        self.mirror_events = Some(events);
    }

    /// Its relay links' registrations, to watch.
    pub(crate) fn registered_relays(&self) -> Vec<crate::relay::RegisteredWatch> {
        self.relay_links.registered()
    }

    fn on_relay_event(&mut self, event: crate::relay::RelayEvent) {
        use crate::relay::RelayEvent;
        let now = Instant::now();
        match event {
            RelayEvent::Registered {
                relay,
                id,
                observed,
                limits,
            } => {
                self.core
                    .handle_relay_registered(relay, id, observed, limits, now);
            }
            RelayEvent::Refused { relay, reason } => {
                self.core
                    .handle_relay_lost(relay, format!("registration refused: {reason}"), now);
            }
            RelayEvent::Lost { relay, reason } => {
                self.core.handle_relay_lost(relay, reason, now);
            }
            RelayEvent::Connect {
                relay,
                peer,
                addrs,
                path,
                role,
            } => self
                .core
                .handle_relay_connect(relay, peer, addrs, path, role, now),
            RelayEvent::IntroduceFailed {
                relay,
                peer,
                reason,
            } => self
                .core
                .handle_relay_introduce_failed(relay, peer, reason, now),
            RelayEvent::ChannelClosed { relay, path, .. } => {
                if let Some(path) = path {
                    self.core.handle_relay_channel_closed(relay, path, now);
                }
            }
        }
    }

    /// The peers to write now, when this node remembers them (the
    /// core's list at this wall-clock second).
    fn peers_to_remember(&self) -> Option<Vec<minimodel_node::remembered::RememberedPeer>> {
        self.core.peers_to_remember(unix_now())
    }

    /// The port mapping's state, when the node asks its router for one.
    pub(crate) fn port_mapping(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::portmap::MapState>> {
        // Its own, or its shared endpoint's.
        self.mapped.clone()
    }

    /// The address peers reach this node at, when it listens.
    pub(crate) fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// This node's id.
    pub(crate) fn peer_id(&self) -> minimodel_wire::PeerId {
        self.identity.peer_id()
    }

    /// A handle that asks this node for its counters while it runs.
    pub(crate) fn metrics(&self) -> MetricsHandle {
        MetricsHandle {
            events: self.sender.clone(),
        }
    }

    /// A handle that changes this node's limits while it runs.
    pub(crate) fn limits(&self) -> LimitsHandle {
        LimitsHandle {
            events: self.sender.clone(),
        }
    }

    /// The core, to feed it peers before the run and read its figures.
    pub(crate) fn core(&mut self) -> &mut NodeCore {
        &mut self.core
    }

    /// Finds peers on the DHT (when the core asks), and announces this node
    /// there when it listens.
    pub(crate) fn use_dht(&mut self, dht: Arc<crate::dht::Discovery>, key: crate::dht::SwarmKey) {
        if let Some(port) = self
            .listen
            .and_then(|listen| std::num::NonZeroU16::new(listen.port()))
        {
            self.announcement = Some(dht.announce(key, port));
        }
        self.dht = Some((dht, key));
    }

    /// Starts the trailing whole-file hasher of a download.
    pub(crate) fn start_hash(&mut self) {
        self.jobs.start_hash(&self.sender);
    }

    /// How the node ended, once it has.
    pub(crate) fn outcome(&self) -> Option<&End> {
        self.outcome.as_ref()
    }

    /// Runs until the core ends the node's work ([`Action::End`]). When
    /// `stop` resolves the core is told ([`NodeCore::stop`]) and decides
    /// how to end: Goodbyes, a download's final checks or last checkpoint.
    pub(crate) async fn run(&mut self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        // On a shared endpoint its accept loop takes every connection and
        // routes this swarm's here.
        let listening = self.listen.is_some() && self.registration.is_none();
        let mut stopped = false;
        self.carry_out();
        self.share_slots();
        while self.outcome.is_none() {
            let now = Instant::now();
            // No deadline: the core waits for an input alone.
            let deadline = self
                .core
                .poll_timeout(now)
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = &mut stop, if !stopped => {
                    stopped = true;
                    self.core.stop(Instant::now());
                }
                // Rare, and every Hello after it names the mapping: before
                // the steady stream of link events.
                Some(Ok(())) = changed(&mut self.mapped) => {
                    let state = self.mapped.as_mut().map(|state| *state.borrow_and_update());
                    self.core.set_mapping(state, Instant::now());
                }
                Some(event) = self.events.recv() => self.on_event(event),
                Some(event) = self.relay_events.recv() => self.on_relay_event(event),
                Some((link, event)) = self.link_events.recv() => {
                    self.on_event(Event::Link(link, event));
                }
                Some(incoming) = self.endpoint.accept(), if listening && !stopped => {
                    self.on_incoming(incoming)
                }
                Some(event) = mirror_event(&mut self.mirror_events) => self.on_mirror(event),
                Some(Ok(())) = changed(&mut self.grants) => {
                    let newest = self.grants.as_mut().map(|grants| *grants.borrow_and_update());
                    if let Some((generation, share)) = newest {
                        self.core.take_grant(generation, share, Instant::now());
                    }
                }
                () = sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
            self.carry_out();
            self.share_slots();
            self.release_hellos();
        }
    }

    /// Answers the dialed links' requests for our Hello that the core
    /// held, once it holds them no longer.
    fn release_hellos(&mut self) {
        if self.held_hellos.is_empty() || self.core.hello_held(Instant::now()) {
            return;
        }
        for (remote, reply) in std::mem::take(&mut self.held_hellos) {
            let _ = reply.send(self.core.hello_to(remote));
        }
    }

    /// On a shared endpoint: tells its gate what this swarm wants when
    /// that changed (the core's news), and takes the share back to the core.
    fn share_slots(&mut self) {
        let (Some(registration), Some(news)) = (&self.registration, self.core.poll_gate_news())
        else {
            return;
        };
        let (generation, share) = registration.tell_news(news);
        if self.core.take_grant(generation, share, Instant::now()) {
            self.carry_out();
        }
    }

    /// Closes what is left (the core said goodbye to every peer before it
    /// ended) and the endpoint.
    pub(crate) async fn shutdown(&mut self) {
        // Nothing is routed here any more, and this swarm's upload slots go
        // to the others now.
        let shared = self.registration.take().is_some();
        let closing = crate::transport::Closing::close(
            self.links.values().filter_map(|link| match link {
                DriverLink::Up(handle, _) => Some(handle.connection.clone()),
                DriverLink::Closing(connection) => Some(connection.clone()),
                DriverLink::Attempt(_) => None,
            }),
            b"bye",
        );
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        links.into_iter().for_each(|link| self.drop_link(link));
        if let Some(announcement) = self.announcement.take() {
            announcement.stop().await;
        }
        // Neighbours stop dialing here.
        if let Some(lan) = self.lan.take() {
            lan.stop().await;
        }
        if let Some(mirrors) = &mut self.mirrors {
            mirrors.shutdown();
        }
        // Nobody is let in any more: the router's mapping goes, and the
        // relays forget us.
        if let Some(port_map) = self.port_map.take() {
            port_map.stop().await;
        }
        self.relay_links.clear();
        if shared {
            // The endpoint serves other swarms: this node's connections
            // went with their links.
            return;
        }
        // Until the CONNECTION_CLOSE packets left; not the whole draining
        // period, which only answers stray packets and would hold up a
        // finished command.
        let flush = self.config.tuning.close_flush;
        closing.flush(&self.endpoint, b"shutdown", flush).await;
    }

    /// Waits for the jobs that hold the partial download (chunk checks,
    /// a checkpoint) to end, so that its lock is free for the next run
    /// once the download's owner lets it go. Their late results are
    /// dropped: the core has ended. At most `limit` (a disk that hangs).
    pub(crate) async fn settle_jobs(&mut self, limit: std::time::Duration) {
        let mut settled = self.jobs.stop_running();
        let wait = async {
            loop {
                tokio::select! {
                    // `None`: every job's token is dropped.
                    None = settled.recv() => return,
                    Some(_) = self.events.recv() => {}
                }
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    fn on_incoming(&mut self, incoming: quinn::Incoming) {
        // A listener on [::] sees IPv4 peers as ::ffff:a.b.c.d.
        let remote = crate::transport::canonical_addr(incoming.remote_address());
        let validated = incoming.remote_address_validated();
        match self.core.handle_incoming(remote, validated, Instant::now()) {
            minimodel_node::node::Incoming::Accept { link, deadline } => {
                let task = connect::accept(self, link, incoming, deadline);
                self.links.insert(link, DriverLink::Attempt(task));
            }
            minimodel_node::node::Incoming::Retry => {
                if incoming.retry().is_err() {
                    // Validated after all (a race): nothing to retry.
                }
            }
            // The core reported it, in order with its other reports.
            minimodel_node::node::Incoming::Refuse { .. } => incoming.refuse(),
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Metrics(reply) => {
                let _ = reply.send(self.core.metrics());
            }
            Event::Limits(limits, reply) => {
                let _ = reply.send(self.core.set_limits(limits, now));
            }
            Event::Up(link, session, remote) => self.on_link_up(link, *session, remote),
            Event::OurHello { remote, reply } => {
                if self.core.hello_held(now) {
                    self.held_hellos.push((remote, reply));
                } else {
                    let _ = reply.send(self.core.hello_to(remote));
                }
            }
            Event::Failed(link, end) => {
                self.links.remove(&link);
                self.core.handle_attempt_ended(link, end, now);
            }
            Event::First {
                link,
                peer,
                first,
                reply,
            } => {
                let _ = reply.send(self.core.handle_first(link, peer, &first, now));
            }
            Event::Answered(link) => {
                self.links.remove(&link);
                self.core.handle_closed(link, LinkEnd::ClosedByPeer, now);
            }
            Event::Link(link, event) => self.on_link_event(link, event, now),
            Event::Job(done) => jobs::on_done(self, done, now),
            Event::Discovered(addrs) => self.core.handle_discovered(&addrs, now),
            Event::LookupDone => self.core.handle_lookup_done(now),
            Event::Neighbour(peer, addrs) => self.core.handle_neighbour(peer, &addrs, now),
            Event::Opened(routed) => self.on_opened(*routed, now),
            Event::Shed { keep } => {
                self.core.shed_idle_incoming(keep, now);
            }
        }
    }

    /// A handshake the shared endpoint routed here: the core admits it as
    /// it admits a connection to its own endpoint (the endpoint's gate let
    /// its first packet in already), then answers its first message.
    fn on_opened(&mut self, routed: shared::RoutedOpening, now: Instant) {
        // This node's own receive window (a share's is small), not the
        // endpoint's, for what the peer may send before we read it.
        routed
            .opening
            .set_receive_window(self.config.tuning.connection_receive_window);
        match (self.core).handle_routed(routed.remote, routed.room, routed.deadline, now) {
            Ok(link) => {
                let task = connect::answer_routed(self, link, routed);
                self.links.insert(link, DriverLink::Attempt(task));
            }
            Err(rejection) => connect::refuse_routed(routed, rejection),
        }
    }

    fn on_link_up(&mut self, link: LinkId, session: Session, remote: SocketAddr) {
        let up = LinkUp {
            peer: session.peer_id,
            remote,
            hello: session.hello.clone(),
            bitfield: session.bitfield.clone(),
            control: session.control.clone(),
            congestion: crate::transport::CongestionControl::in_use(&session.connection)
                .map(crate::transport::CongestionControl::name),
        };
        let rtt = session.connection.rtt();
        let outbox = self.config.core.max_outbox;
        let handle = link::spawn(
            session,
            link,
            self.swarm.params().clone(),
            outbox,
            self.link_sender.clone(),
        );
        self.links
            .insert(link, DriverLink::Up(handle, BTreeMap::new()));
        let now = Instant::now();
        self.core.handle_link_up(link, up, now);
        self.core.handle_rtt(link, rtt);
    }

    fn on_link_event(&mut self, link: LinkId, event: LinkEvent, now: Instant) {
        match (self.links.get(&link), &event) {
            (Some(DriverLink::Up(..)), _) => {}
            // A closing link's end: its Goodbye was acknowledged.
            (Some(DriverLink::Closing(_)), LinkEvent::Closed(end)) => {
                self.links.remove(&link);
                self.core.handle_closed(link, end.clone(), now);
                return;
            }
            _ => return,
        }
        match event {
            LinkEvent::Message(message) => {
                if let Some(DriverLink::Up(handle, _)) = self.links.get(&link) {
                    self.core.handle_rtt(link, handle.connection.rtt());
                }
                let request = match &message {
                    minimodel_wire::Message::Request { chunk } => Some(chunk.0),
                    _ => None,
                };
                self.core.handle_message(link, message, now);
                if let Some(chunk) = request
                    && crate::transport::pathtrace::enabled()
                {
                    let state = self.core.upload_state(now);
                    tracing::debug!(
                        target: "minimodel_swarm::pathtrace",
                        at_ms = crate::transport::pathtrace::ms(),
                        chunk,
                        under_way = state.under_way,
                        holding = state.holding,
                        slots = state.slots,
                        queued = state.queued,
                        "request-in"
                    );
                }
            }
            LinkEvent::PieceHeader {
                chunk,
                from,
                quiet,
                reply,
            } => {
                let verdict = self.core.handle_piece_header(link, chunk, from, quiet, now);
                let _ = reply.send(verdict);
            }
            LinkEvent::PieceArrived(piece) => {
                let chunk = piece.chunk;
                match self.core.handle_piece_arrived(link, chunk, now) {
                    minimodel_node::node::PieceVerdict::Accept => {
                        jobs::verify(self, link, piece);
                    }
                    minimodel_node::node::PieceVerdict::Stop => {}
                }
            }
            LinkEvent::PieceFailed { chunk, end } => {
                self.core.handle_piece_failed(link, chunk, end, now);
            }
            // The core answers with Close (a Goodbye first) or Abort.
            LinkEvent::Closed(end) => self.core.handle_closed(link, end, now),
        }
    }

    /// What a mirror's driver reported: to the core, and a chunk that
    /// arrived to its check.
    fn on_mirror(&mut self, event: crate::mirror::MirrorEvent) {
        use crate::mirror::MirrorEvent;
        use minimodel_node::node::PieceVerdict;
        let now = Instant::now();
        match event {
            MirrorEvent::Up { mirror, validators } => {
                self.core.handle_mirror_up(mirror, validators, now);
            }
            MirrorEvent::Failed {
                mirror,
                chunk,
                failure,
            } => {
                if let (Some(chunk), Some(mirrors)) = (chunk, &mut self.mirrors) {
                    mirrors.ended(mirror, chunk);
                }
                self.core.handle_mirror_failed(mirror, chunk, failure, now);
            }
            MirrorEvent::Started {
                mirror,
                chunk,
                validators,
            } => {
                let verdict = self
                    .core
                    .handle_mirror_started(mirror, chunk, &validators, now);
                if verdict == PieceVerdict::Stop
                    && let Some(mirrors) = &mut self.mirrors
                {
                    mirrors.cancel(mirror, chunk);
                }
            }
            MirrorEvent::Progress { mirror } => self.core.handle_mirror_progress(mirror, now),
            MirrorEvent::Arrived {
                mirror,
                chunk,
                data,
            } => {
                let tree = self.mirrors.as_mut().and_then(|mirrors| {
                    mirrors.ended(mirror, chunk);
                    mirrors.tree()
                });
                let verdict = self.core.handle_mirror_arrived(mirror, chunk, now);
                if let (PieceVerdict::Accept, Some(tree)) = (verdict, tree) {
                    jobs::verify_mirror(self, mirror, chunk, data, tree);
                }
            }
        }
    }

    /// Runs a DHT lookup, passing on what it finds as it comes.
    fn lookup(&mut self) {
        let events = self.sender.clone();
        let Some((dht, key)) = self.dht.clone() else {
            tokio::spawn(async move {
                let _ = events.send(Event::LookupDone).await;
            });
            return;
        };
        tokio::spawn(async move {
            let mut lookup = dht.start_lookup(key);
            while let Some(addrs) = lookup.next().await {
                if events.send(Event::Discovered(addrs)).await.is_err() {
                    return;
                }
            }
            let _ = events.send(Event::LookupDone).await;
        });
    }

    /// Forgets the driver's side of a link: its uploads stop, its
    /// connection or attempt ends.
    fn drop_link(&mut self, link: LinkId) {
        match self.links.remove(&link) {
            Some(DriverLink::Up(handle, uploads)) => {
                uploads.values().for_each(AbortHandle::abort);
                handle.abort();
            }
            Some(DriverLink::Closing(connection)) => connection.close(0u32.into(), b"bye"),
            Some(DriverLink::Attempt(task)) => task.abort(),
            None => {}
        }
    }

    /// Carries out everything the core decided, and passes its reports on.
    fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.act(action);
        }
        while let Some(report) = self.core.poll_report() {
            let _ = self.reports.send(report);
        }
    }

    fn act(&mut self, action: Action) {
        let now = Instant::now();
        match action {
            Action::Dial {
                link,
                addr,
                peer,
                have,
                deadline,
            } => {
                let task = connect::dial(self, link, addr, peer, have, deadline);
                self.links.insert(link, DriverLink::Attempt(task));
            }
            Action::Open { addrs } => self.paths.open(&addrs),
            Action::RelayIntroduce { relay, peer } => self.relay_links.introduce(relay, peer),
            Action::Abort { link } => self.drop_link(link),
            Action::Send { link, message } => {
                let sent = match self.links.get(&link) {
                    Some(DriverLink::Up(handle, _)) => handle.send(message),
                    _ => true,
                };
                if !sent {
                    // (A Goodbye it sent, held for its uploads, comes first
                    // in the core: it left, it did not stop reading.)
                    self.drop_link(link);
                    self.core.handle_closed(link, LinkEnd::NotReading, now);
                }
            }
            Action::Close { link, reason } => {
                if let Some(DriverLink::Up(handle, uploads)) = self.links.remove(&link) {
                    uploads.values().for_each(AbortHandle::abort);
                    handle.close(reason);
                    self.links
                        .insert(link, DriverLink::Closing(handle.connection));
                }
            }
            Action::Upload {
                link,
                chunk,
                from,
                pace,
            } => jobs::upload(self, link, chunk, from, pace),
            Action::ReceiveWindow { link, bytes } => {
                if let Some(DriverLink::Up(handle, _)) = self.links.get(&link) {
                    // Never below the configured window, and within what
                    // QUIC can say.
                    let bytes = bytes
                        .max(self.config.tuning.connection_receive_window)
                        .min(quinn::VarInt::MAX.into_inner());
                    if let Ok(window) = quinn::VarInt::from_u64(bytes) {
                        handle.connection.set_receive_window(window);
                    }
                }
            }
            Action::CancelUpload { link, chunk } => {
                if let Some(DriverLink::Up(_, uploads)) = self.links.get_mut(&link)
                    && let Some(task) = uploads.remove(&chunk.0)
                {
                    task.abort();
                }
            }
            Action::MeasureSent { link } => {
                if let Some(DriverLink::Up(handle, _)) = self.links.get(&link) {
                    let sent = handle.connection.stats().udp_tx.bytes;
                    self.core.handle_sent(link, sent, now);
                }
            }
            Action::HashStored { chunk } => self.jobs.hash_stored(chunk),
            Action::RestartHash => self.jobs.restart_hash(&self.sender),
            Action::Checkpoint {
                release_from,
                release_below,
            } => jobs::checkpoint(self, release_from..release_below),
            Action::Deliver => jobs::deliver(self),
            Action::Lookup => self.lookup(),
            Action::MirrorFetch {
                mirror,
                chunk,
                range,
            } => {
                if let Some(mirrors) = &mut self.mirrors {
                    mirrors.fetch(mirror, chunk, range);
                }
            }
            Action::MirrorCancel { mirror, chunk } => {
                if let Some(mirrors) = &mut self.mirrors {
                    mirrors.cancel(mirror, chunk);
                }
            }
            Action::MirrorClose { mirror } => {
                if let Some(mirrors) = &mut self.mirrors {
                    mirrors.close(mirror);
                }
            }
            Action::End(outcome) => self.outcome = Some(outcome),
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("listen", &self.listen)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}
