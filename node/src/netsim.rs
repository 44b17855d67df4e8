//! A whole-node simulator: N [`NodeCore`]s on a virtual clock, carrying out
//! every [`Action`] the way a driver would, with no socket and no sleep.
//!
//! Model:
//! - each node has an uplink (bytes per second, shared fairly by its piece
//!   streams: processor sharing, each stream capped at its `pace`) and a
//!   one-way access latency; a path's latency is the sum of its two ends'.
//!   Downlinks are not limited;
//! - a dial reaches the node listening at its address (none: the dial goes
//!   unanswered and runs into its deadline); the first packet is
//!   `handle_incoming` one latency later (unvalidated; a Retry costs a
//!   round trip), the dialer's Hello arrives one round trip after that, the
//!   dialer's link is up one latency after the listener admitted it and the
//!   listener's one latency later, as with the real control stream (the
//!   Hello exchange runs through two wire [`ControlStream`]s);
//! - a control message arrives one latency after it was sent, in order per
//!   direction; with probability `loss` it is late by one more round trip
//!   (QUIC is reliable: loss costs time, not data);
//! - an upload's header arrives one latency after it starts, its end one
//!   latency after its last byte left the sender's uplink; the receiver
//!   stopping it reaches the sender one latency later; a cancelled upload
//!   resets its stream;
//! - verification, the trailing hasher and the final checks are jobs that
//!   end at once (checkpoints and deliveries after `job_time`); a lying
//!   node's chunks fail verification, a stalling node's uploads never
//!   leave it; a damaged disk makes the final check
//!   find a chunk bad, a given number of times;
//! - a node can be killed (its peers notice after `idle_timeout`) and
//!   started again with the same id, address and verified chunks;
//! - a node can sit at home behind a NAT router ([`Nat`], as nft
//!   `masquerade` behaves): it listens at a LAN address only the nodes of
//!   its home reach, its connections out leave from the router's public
//!   address, and a packet to that address gets in only from an address
//!   the node sent to from that mapping. A dial that the router drops is
//!   sent again every [`RESEND`] until the dialer gives up, as a QUIC
//!   Initial is.
//!
//! - several nodes can share one host (`NodeSpec::host`): one address,
//!   one uplink, each node in a swarm of its own (`NodeSpec::swarm`), a
//!   dial routed to the node of the dialer's swarm, and the host's upload
//!   slots shared by the gate's rule (`crate::gate`) as a shared endpoint
//!   shares them (each node admits its own connections, as a node of a
//!   shared endpoint does past the gate's first-packet limits).
//!
//! `handle_timeout` is called exactly at `poll_timeout`; a deadline in the
//! past, or one that `handle_timeout` leaves where it was, fails the run.
//!
//! [`ControlStream`]: minimodel_wire::ControlStream

#[cfg(test)]
mod crowds;
#[cfg(test)]
mod fetch;
#[cfg(test)]
mod homes;
#[cfg(test)]
mod library;
mod links;
mod mirrors;
mod relayed;
#[cfg(test)]
mod relays;
#[cfg(test)]
mod routers;
#[cfg(test)]
mod scale;
#[cfg(test)]
mod scenarios;
mod uplink;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use minimodel_wire::{
    ChunkIndex, GoodbyeReason, HaveBitfield, MAX_PEERS_PER_MESSAGE, Message, PeerEntry, PeerId,
    SwarmIdentity,
};

use crate::book::Source;
use crate::config::NodeConfig;
use crate::ids::LinkId;
use crate::node::{
    Action, End, Finish, Incoming, KnownPeer, LinkUp, NodeCore, NodeStart, PieceEnd, PieceVerdict,
    UploadOutcome, VerifyOutcome,
};
use crate::report::{Failure, LinkEnd, NodeReport};
use crate::rng::SplitMix64;
use crate::testing::{self, Side};
use links::Conn;
use mirrors::SimMirror;
use uplink::Uplink;

/// How a simulated node behaves beyond its core.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Behaviour {
    /// As its core decides.
    Honest,
    /// Every chunk it uploads fails verification at the receiver.
    Liar,
    /// Sends these entries in Peers messages to every peer it connects to.
    Flooder(Vec<PeerEntry>),
    /// From this moment on, accepts every request and sends nothing: an
    /// upload its core starts never leaves it, and its core never learns
    /// that (it is not told how many bytes its connections sent), so it
    /// keeps the link.
    Staller(Duration),
}

/// Uploads whose path is slower than the sender's uplink, as the lab's
/// traces show them (`docs/performance.md`, Home uplinks): one in ten
/// uploads between capped homes took 1.5 to 3.5 times its uplink's time
/// (a receiver whose acknowledgements wait behind its own full uplink, a
/// congestion window still small), the rest ran at the uplink's rate.
/// The simulator has no transport, so it draws them: a `share` of the
/// uploads is paced at a fraction of the sender's uplink drawn evenly
/// from `fastest` down to `slowest`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlowPaths {
    pub share: f64,
    pub slowest: f64,
    pub fastest: f64,
}

impl SlowPaths {
    /// What the lab's 24-peer crowd showed.
    pub(crate) const HOMES: SlowPaths = SlowPaths {
        share: 0.12,
        slowest: 0.28,
        fastest: 0.67,
    };
}

/// One node of a scenario.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Where it listens (and the IP it dials from).
    pub addr: SocketAddr,
    /// Uplink in bytes per second.
    pub uplink: f64,
    /// One-way access latency.
    pub latency: Duration,
    /// Chance that a delivery from or to it is late by one more round trip.
    pub loss: f64,
    /// It serves (and listens).
    pub serve: bool,
    /// It downloads what it lacks.
    pub download: bool,
    /// It goes on serving once delivered.
    pub seed_after: bool,
    /// Its chunks at the start.
    pub have: HaveBitfield,
    /// Its policy.
    pub config: NodeConfig,
    /// What it does beyond its core.
    pub behaviour: Behaviour,
    /// The nodes it is told of (offers).
    pub offers: Vec<usize>,
    /// When it starts.
    pub starts_at: Duration,
    /// When it is killed, if ever.
    pub killed_at: Option<Duration>,
    /// When it starts again after being killed.
    pub restarts_at: Option<Duration>,
    /// Chunk -> how many final checks find it damaged on disk.
    pub damage: BTreeMap<u32, u32>,
    /// It vanishes (killed, no Goodbye, never back) once it has verified
    /// this many chunks.
    pub vanish_after: Option<u32>,
    /// It looks peers up on the DHT ([`Sim::dht_time`] to an answer) and,
    /// when it serves, is found there while it runs.
    pub dht: bool,
    /// On the one LAN with local discovery (`--lan`): its address is its
    /// LAN address, a serving node is announced to every other LAN node
    /// while it runs, and it hears those announced.
    pub lan: bool,
    /// The router in front of it, if it sits at home behind one.
    pub nat: Option<Nat>,
    /// Its swarm: 0, or another of the same geometry (model id `sim-N`).
    pub swarm: usize,
    /// The node whose host it shares (its address, uplink and upload
    /// slots), if not its own.
    pub host: Option<usize>,
    /// The mirrors it is given ([`Sim::add_mirror`]'s indices).
    pub mirrors: Vec<usize>,
    /// How long it takes to act on a Connect (a busy process): the
    /// introduction reaches its core this much later than the wire
    /// brings it.
    pub connect_lag: Duration,
    /// The relays it registers with at its start (their nodes).
    pub relays: Vec<usize>,
    /// It is a relay (`minimodel relay`) with these settings, not a peer.
    pub relay: Option<crate::relay::RelayConfig>,
}

/// A home router that translates addresses, or only filters them (see
/// the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Nat {
    /// The router's public address (the node's own, when it does not
    /// translate).
    pub public: IpAddr,
    /// The outside port of the node's socket; a symmetric router takes a
    /// new one for every destination instead (`masquerade random`).
    pub port: u16,
    /// One outside port per destination, not one per socket.
    pub symmetric: bool,
    /// It drops what comes in unasked and keeps no state of it (an input
    /// firewall). Without one (a Linux box whose input chain accepts),
    /// its connection tracking keeps a peer's packet that came before
    /// ours as its own, and our packets to that peer then leave from
    /// another outside port.
    pub firewall: bool,
    /// A carrier's NAT in front of it (two layers): what comes in unasked
    /// stops there, and our opening packets (a small TTL) die there too,
    /// so only a real dial opens the way.
    pub carrier: bool,
    /// It translates nothing (a global IPv6 address behind a stateful
    /// firewall): the node is seen at its own address, and gets only
    /// what answers what it sent.
    pub translate: bool,
}

impl Nat {
    /// A home router with an input firewall: a cone (`masquerade`), or
    /// symmetric (`masquerade random`).
    pub fn home(public: IpAddr, port: u16, symmetric: bool) -> Self {
        Self {
            public,
            port,
            symmetric,
            firewall: true,
            carrier: false,
            translate: true,
        }
    }
}

/// How long a dialer waits before it sends its dropped first packet again.
const RESEND: Duration = Duration::from_secs(1);

impl NodeSpec {
    /// Node `index`'s address: each in a /24 of its own in 10/8
    /// (10.0.1.1, 10.0.2.1, ..., 10.1.0.1, ...).
    pub fn addr_of(index: usize) -> SocketAddr {
        let n = u16::try_from(index + 1).expect("at most 65,535 nodes");
        let [high, low] = n.to_be_bytes();
        SocketAddr::from(([10, high, low, 1], 4433))
    }

    /// Node `index`'s address on the one LAN (192.168.1.0/24).
    pub fn lan_addr_of(index: usize) -> SocketAddr {
        SocketAddr::from(([192, 168, 1, index as u8 + 1], 4433))
    }

    /// The same node at home number `home` (its LAN 192.168.`home`.0/24,
    /// the router's public address 10.250.`home`.1), in slot `slot` of
    /// that home, behind a router of that kind.
    pub fn at_home(self, home: u8, slot: u8, symmetric: bool) -> Self {
        Self {
            addr: SocketAddr::from(([192, 168, home, slot + 2], 4433)),
            nat: Some(Nat::home(
                IpAddr::from([10, 250, home, 1]),
                4433 + u16::from(slot),
                symmetric,
            )),
            ..self
        }
    }

    /// The same node on the one LAN, with local discovery.
    pub fn on_lan(self, index: usize) -> Self {
        Self {
            addr: Self::lan_addr_of(index),
            lan: true,
            ..self
        }
    }

    /// A seeder with every chunk.
    pub fn seeder(index: usize, chunks: u32, uplink: f64) -> Self {
        Self {
            addr: Self::addr_of(index),
            uplink,
            latency: Duration::from_millis(1),
            loss: 0.0,
            serve: true,
            download: false,
            seed_after: false,
            have: HaveBitfield::full(chunks),
            config: NodeConfig::default(),
            behaviour: Behaviour::Honest,
            offers: Vec::new(),
            starts_at: Duration::ZERO,
            killed_at: None,
            restarts_at: None,
            damage: BTreeMap::new(),
            vanish_after: None,
            dht: false,
            lan: false,
            nat: None,
            swarm: 0,
            host: None,
            mirrors: Vec::new(),
            connect_lag: Duration::ZERO,
            relays: Vec::new(),
            relay: None,
        }
    }

    /// A relay on the internet with `config`: it registers nodes,
    /// introduces them and carries their channels
    /// ([`crate::relay::RelayCore`]), paced at its pair rate.
    pub fn relay_host(index: usize, config: crate::relay::RelayConfig) -> Self {
        Self {
            serve: false,
            relay: Some(config),
            ..Self::seeder(index, 1, f64::INFINITY)
        }
    }

    /// A fetch of every chunk from the nodes `offers` names, serving what
    /// it has if `serve` (and seeding on once delivered).
    pub fn fetcher(index: usize, chunks: u32, uplink: f64, serve: bool, offers: &[usize]) -> Self {
        Self {
            serve,
            download: true,
            seed_after: serve,
            have: HaveBitfield::new(chunks),
            offers: offers.to_vec(),
            ..Self::seeder(index, chunks, uplink)
        }
    }
}

/// What happened to one node.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// When its download passed the final checks.
    pub delivered_at: Option<Duration>,
    /// When and how its core ended.
    pub ended: Option<(Duration, End)>,
    /// Bytes its uplink carried, cancelled uploads included.
    pub uploaded_bytes: f64,
    /// How long its uplink carried at least one upload.
    pub busy: Duration,
    /// Its reports.
    pub reports: Vec<(Duration, NodeReport)>,
    /// Checkpoints: when, `release_below`, bytes hashed then.
    pub checkpoints: Vec<(Duration, u64, u64)>,
    /// Dials: when, where.
    pub dials: Vec<(Duration, SocketAddr)>,
    /// Uploads it started: when, to which node, which chunk.
    pub uploads: Vec<(Duration, usize, u32)>,
    /// Uploads it cancelled (their streams reset).
    pub uploads_cancelled: u64,
    /// Cancel messages it sent.
    pub cancels_sent: u64,
    /// Times its hasher was restarted.
    pub hash_restarts: u32,
    /// `handle_timeout` calls.
    pub wakeups: u64,
    /// The most uploads its uplink carried at once (on a shared host: the
    /// host's, recorded on the host's node).
    pub peak_uploads: usize,
    /// Chunks it verified from the network.
    pub verified: u32,
    /// When each chunk it verified from the network was verified, by chunk
    /// (kept for fetches of at most [`VERIFIED_AT_CHUNKS`] chunks).
    pub verified_at: Vec<Option<Duration>>,
}

/// The largest artifact, in chunks, whose verification times a
/// [`Record`] keeps.
pub(crate) const VERIFIED_AT_CHUNKS: u32 = 4096;

#[derive(Debug, Default)]
struct Disk {
    /// Chunks verified and written.
    stored: BTreeSet<u32>,
    /// The trailing hasher has hashed chunks `0..hashed`.
    hashed: u32,
    /// Chunk -> final checks that will still find it damaged.
    damage: BTreeMap<u32, u32>,
    /// What its core remembered of its mirrors at its last checkpoint.
    mirrors: mirrors::SavedMirrors,
}

struct Node {
    core: Option<NodeCore>,
    /// A relay's core, for a relay's node.
    relay: Option<crate::relay::RelayCore>,
    generation: u32,
    alive: bool,
    timer: u64,
    /// Where its live timer event sits in the queue: one at a time (a
    /// replaced one stays queued until its time and is dropped then).
    timer_at: Option<(Duration, u64)>,
    /// Its links' connections and sides, by incarnation and link.
    links: HashMap<(u32, LinkId), (usize, usize)>,
    uplink: Uplink,
    disk: Disk,
    record: Record,
}

/// An event in the queue, ordered by its time and then by when it was
/// pushed.
#[derive(Debug)]
struct Queued {
    at: Duration,
    sequence: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

/// A piece stream event: `to` is the side it happens to.
#[derive(Debug, Clone, Copy)]
struct Stream {
    conn: usize,
    to: usize,
    chunk: u32,
    transfer: u64,
}

#[derive(Debug)]
enum Event {
    Start(usize),
    Kill(usize),
    /// The user stops the node (Goodbyes, then the end).
    Stop(usize),
    Timer(usize, u32, u64),
    Uplink(usize, u32, u64),
    Incoming(usize, bool),
    Hello(usize),
    Up(usize, usize),
    Failed(usize, usize, LinkEnd),
    /// The listener refused the dialer's Hello.
    Rejected(usize, crate::node::Rejection),
    Control(usize, usize, Message),
    Closed(usize, usize, LinkEnd),
    Farewelled(usize, usize),
    /// A piece stream's header, after its link carried no piece bytes for
    /// this long.
    Header(Stream, Duration),
    PieceDone(Stream),
    /// The acknowledgement of an upload's last bytes reaches its sender
    /// (`to` is the sender's side here), with [`Sim::acked_uploads`].
    Acked(Stream),
    Reset(Stream),
    StopSending(Stream),
    Checkpointed(usize, u32),
    Checked(usize, u32),
    /// A DHT lookup answers.
    Found(usize, u32),
    /// A node's mirror (its number) is found usable.
    MirrorUp(usize, u32, u16),
    /// A range request reaches its mirror.
    MirrorAsked(mirrors::MirrorRequest),
    /// A response's headers reach the node (sent then).
    MirrorHeader(mirrors::MirrorRequest, Duration),
    /// A response's end reaches the node.
    MirrorDone(mirrors::MirrorRequest),
    /// A whole-file answer to a range request reaches the node.
    MirrorIgnored(mirrors::MirrorRequest),
    /// A mirror's responses move on.
    MirrorUplink(usize, u64),
    /// A cancelled range stops at its mirror.
    MirrorGone(usize, u64),
    /// A node's message reaches a relay: (relay, node, message).
    ToRelay(usize, usize, minimodel_wire::relay::RelayMessage),
    /// A relay's message reaches a node: (node, relay, message).
    FromRelay(usize, usize, minimodel_wire::relay::RelayMessage),
}

/// The simulated network. See the module docs.
pub(crate) struct Sim {
    swarm: SwarmIdentity,
    /// Every swarm of the run (`swarm` is the first).
    swarms: Vec<SwarmIdentity>,
    specs: Vec<NodeSpec>,
    nodes: Vec<Node>,
    conns: Vec<Conn>,
    /// The queue, earliest first (ties in the order pushed). A node's
    /// timer that was replaced stays queued and is dropped when it comes
    /// up: only the one at its node's `timer_at` is live.
    events: BinaryHeap<Reverse<Queued>>,
    sequence: u64,
    now: Duration,
    base: Instant,
    rng: SplitMix64,
    next_transfer: u64,
    /// Streams the receiver stopped: their end and reset are not delivered.
    stopped: BTreeSet<u64>,
    /// How long a killed node's peers take to notice.
    pub idle_timeout: Duration,
    /// How long a checkpoint or the final checks take.
    pub job_time: Duration,
    /// How long a DHT lookup takes.
    pub dht_time: Duration,
    /// Mixed into every node's seed (its picker's tie-breaks): 0 in the
    /// scenarios; other values run the same scenario with other draws.
    pub seed_offset: u64,
    /// Uploads as the transport runs them (see [`Sim::transport_uploads`]).
    acked_uploads: bool,
    /// Some uploads run slower than their sender's uplink (see
    /// [`SlowPaths`]); `None`: every path is as fast as the uplink.
    pub slow_paths: Option<SlowPaths>,
    /// Draws which uploads are slow, apart from `rng`.
    path_rng: SplitMix64,
    /// Events handled.
    pub events_handled: u64,
    /// Events handled by kind (traced runs only).
    pub event_kinds: BTreeMap<String, u64>,
    /// A run that handles this many events fails (it ran away).
    pub max_events: u64,
    /// Serving nodes by address and swarm (the first one listed at each).
    listeners: HashMap<(SocketAddr, usize), usize>,
    /// Each shared host's gate, which shares its upload slots and its
    /// download cap.
    gates: BTreeMap<usize, crate::gate::Gate<usize>>,
    /// Every shared host's download cap, bytes per second, shared among
    /// its nodes by its gate.
    pub host_download_cap: Option<u64>,
    /// Shared hosts share their upload slots (off: each node keeps its
    /// own, to compare).
    pub share_slots: bool,
    /// This node's Requests and Cancels are printed as it sends them
    /// (`NETSIM_TRACE_PEER=N`, with the crowds' `NETSIM_TRACE=1` trace).
    trace_peer: Option<usize>,
    /// This node stops once the running nodes that stay (they seed on once
    /// done and do not vanish) together hold every chunk: a seeder that
    /// leaves when one copy is out in the swarm.
    pub leave_when_copied: Option<usize>,
    /// Chunk -> running nodes that stay, other than `leave_when_copied`,
    /// that hold it.
    holders: Vec<u32>,
    /// Chunks held by at least one of those.
    held: u32,
    /// The routers' outside addresses in use -> the node behind them.
    mappings: HashMap<SocketAddr, usize>,
    /// A symmetric router's outside port for (node, destination).
    ports: HashMap<(usize, SocketAddr), u16>,
    /// The next outside port a symmetric router hands out.
    next_port: u16,
    /// (node, its outside port, a remote it sent to from there): what its
    /// router lets in.
    pinholes: HashSet<(usize, u16, SocketAddr)>,
    /// The mirrors.
    mirrors: Vec<SimMirror>,
    /// Range requests nodes wait for, by id.
    mirror_requests: BTreeMap<u64, mirrors::MirrorRequest>,
    /// (router's public address, outside port, remote): a packet from the
    /// remote that a router with no input firewall took as its own, and
    /// keeps: its node's packets to that remote leave from another port.
    poisoned: HashSet<(IpAddr, u16, SocketAddr)>,
    /// Routers that took a packet as their own, in all.
    pub poisonings: u64,
    /// Relay paths: (node, path address) -> (relay, channel).
    paths: HashMap<(usize, SocketAddr), (usize, u64)>,
    /// (node, relay, channel) -> the node's path address.
    path_of: HashMap<(usize, usize, u64), SocketAddr>,
    /// (relay, channel) -> the nodes its Connects went to.
    channel_ends: HashMap<(usize, u64), Vec<usize>>,
    /// (relay, its connection) -> the node; and back.
    relay_conns: HashMap<(usize, crate::relay::ConnId), usize>,
    relay_conn_of: HashMap<(usize, usize), crate::relay::ConnId>,
    next_path: u32,
}

/// At most this many peers in a DHT lookup's answer (about what a
/// mainline `get_peers` walk gathers).
const DHT_ANSWER: usize = 50;

/// Node `index`'s peer id.
pub(crate) fn id_of(index: usize) -> PeerId {
    match u8::try_from(index + 1) {
        Ok(n) if n < u8::MAX => PeerId([n; 32]),
        _ => {
            let mut id = [0xEE; 32];
            id[..8].copy_from_slice(&(index as u64).to_le_bytes());
            PeerId(id)
        }
    }
}

impl Sim {
    /// A network of `specs` in a swarm of `chunks` chunks of `chunk_size`.
    pub fn new(chunk_size: u32, chunks: u32, specs: Vec<NodeSpec>) -> Self {
        let swarm = testing::swarm(chunk_size, chunks);
        let count = specs.iter().map(|spec| spec.swarm + 1).max().unwrap_or(1);
        let swarms = (0..count)
            .map(|i| match i {
                0 => swarm.clone(),
                _ => SwarmIdentity::new(format!("sim-{i}"), [7; 32], swarm.params().clone())
                    .expect("a valid model id"),
            })
            .collect();
        let nodes = specs
            .iter()
            .map(|spec| Node {
                core: None,
                relay: None,
                generation: 0,
                alive: false,
                timer: 0,
                timer_at: None,
                links: HashMap::new(),
                uplink: Uplink {
                    rate: spec.uplink,
                    transfers: Vec::new(),
                    last: Duration::ZERO,
                    version: 0,
                    one_per_conn: false,
                },
                disk: Disk {
                    damage: spec.damage.clone(),
                    ..Disk::default()
                },
                record: Record {
                    verified_at: match spec.download && chunks <= VERIFIED_AT_CHUNKS {
                        true => vec![None; chunks as usize],
                        false => Vec::new(),
                    },
                    ..Record::default()
                },
            })
            .collect();
        let mut listeners = HashMap::new();
        let mut mappings = HashMap::new();
        for (index, spec) in specs.iter().enumerate() {
            if spec.serve {
                listeners.entry((spec.addr, spec.swarm)).or_insert(index);
            }
            if let Some(nat) = spec.nat.filter(|nat| !nat.symmetric && nat.translate) {
                mappings.insert(SocketAddr::new(nat.public, nat.port), index);
            }
        }
        let mut sim = Self {
            swarm,
            swarms,
            gates: BTreeMap::new(),
            host_download_cap: None,
            share_slots: true,
            trace_peer: std::env::var("NETSIM_TRACE_PEER")
                .ok()
                .and_then(|peer| peer.parse().ok()),
            specs,
            nodes,
            conns: Vec::new(),
            events: BinaryHeap::new(),
            sequence: 0,
            now: Duration::ZERO,
            base: Instant::now(),
            rng: SplitMix64(42),
            next_transfer: 0,
            stopped: BTreeSet::new(),
            idle_timeout: Duration::from_secs(3),
            job_time: Duration::from_millis(5),
            dht_time: Duration::from_secs(2),
            seed_offset: 0,
            acked_uploads: false,
            slow_paths: None,
            path_rng: SplitMix64(7),
            events_handled: 0,
            event_kinds: BTreeMap::new(),
            max_events: 50_000_000,
            listeners,
            leave_when_copied: None,
            holders: vec![0; chunks as usize],
            held: 0,
            mappings,
            ports: HashMap::new(),
            next_port: 20_000,
            pinholes: HashSet::new(),
            mirrors: Vec::new(),
            mirror_requests: BTreeMap::new(),
            poisoned: HashSet::new(),
            poisonings: 0,
            paths: HashMap::new(),
            path_of: HashMap::new(),
            channel_ends: HashMap::new(),
            relay_conns: HashMap::new(),
            relay_conn_of: HashMap::new(),
            next_path: 0,
        };
        for index in 0..sim.specs.len() {
            let spec = &sim.specs[index];
            let (start, kill, restart) = (spec.starts_at, spec.killed_at, spec.restarts_at);
            sim.push(start, Event::Start(index));
            if let Some(at) = kill {
                sim.push(at, Event::Kill(index));
            }
            if let Some(at) = restart {
                sim.push(at, Event::Start(index));
            }
        }
        sim
    }

    /// Runs until `done` holds or the clock passes `limit`; the time it
    /// stopped at.
    pub fn run(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> Duration {
        let snapshots = std::env::var_os("NETSIM_LOAD").is_some();
        let tally = snapshots || std::env::var_os("NETSIM_TRACE").is_some();
        let mut next_snapshot = Duration::ZERO;
        while let Some(Reverse(first)) = self.events.peek() {
            let at = first.at;
            if let Event::Timer(node, ..) = first.event
                && self.nodes[node].timer_at != Some((at, first.sequence))
            {
                // Replaced: as if it had left the queue then.
                self.events.pop();
                continue;
            }
            if at > limit || done(self) {
                break;
            }
            if snapshots && at >= next_snapshot {
                next_snapshot += Duration::from_secs(4);
                let line: Vec<String> = (0..self.nodes.len())
                    .filter_map(|i| {
                        let core = self.nodes[i].core.as_ref()?;
                        let (missing, flight, active, queued, slots) = core.load();
                        Some(format!("{i}:{missing}/{flight}/{active}of{slots}+{queued}"))
                    })
                    .collect();
                println!("t={:5.1} {}", at.as_secs_f64(), line.join(" "));
            }
            let Reverse(Queued { event, .. }) = self.events.pop().expect("an event");
            if tally {
                let name = format!("{event:?}");
                let name = name.split(['(', ' ']).next().unwrap_or("").to_string();
                *self.event_kinds.entry(name).or_default() += 1;
            }
            self.now = at;
            self.events_handled += 1;
            assert!(
                self.events_handled < self.max_events,
                "the simulation runs away"
            );
            self.handle(event);
        }
        self.now
    }

    /// Uploads as QUIC runs them: a connection's piece streams leave one
    /// after another, and an upload ends when the acknowledgement of its
    /// last bytes comes back (a round trip after they leave, longer when a
    /// packet either way is lost), not when they leave the uplink, so its
    /// slot stays taken meanwhile. Off in the scenarios whose figures were
    /// recorded before it.
    pub fn transport_uploads(&mut self) {
        self.acked_uploads = true;
        for node in &mut self.nodes {
            node.uplink.one_per_conn = true;
        }
    }

    /// Whether every downloading node has delivered or ended.
    pub fn downloads_over(&self) -> bool {
        self.specs
            .iter()
            .zip(&self.nodes)
            .filter(|(spec, _)| spec.download)
            .all(|(_, node)| node.record.delivered_at.is_some() || node.record.ended.is_some())
    }

    /// What happened to node `index`.
    pub fn record(&self, index: usize) -> &Record {
        &self.nodes[index].record
    }

    /// Prints a Request or a Cancel `node` sends on `conn` (its `side`).
    fn trace_request(&self, node: usize, conn: usize, side: usize, message: &Message) {
        let (what, chunk) = match message {
            Message::Request { chunk } => ("request", chunk),
            Message::Cancel { chunk } => ("cancel", chunk),
            _ => return,
        };
        println!(
            "{:7.3} peer {node}: {what} chunk {} to {}",
            self.now.as_secs_f64(),
            chunk.0,
            self.conns[conn].nodes[1 - side]
        );
    }

    /// Node `index`'s core (its last incarnation).
    pub fn core(&self, index: usize) -> &NodeCore {
        self.nodes[index].core.as_ref().expect("started")
    }

    /// The specs.
    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn push(&mut self, at: Duration, event: Event) {
        self.sequence += 1;
        let sequence = self.sequence;
        self.events.push(Reverse(Queued {
            at,
            sequence,
            event,
        }));
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn core_mut(&mut self, node: usize) -> &mut NodeCore {
        self.nodes[node].core.as_mut().expect("started")
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Start(node) => self.start(node),
            Event::Kill(node) => self.kill(node),
            Event::Stop(node) => {
                if self.nodes[node].alive {
                    let now = self.instant();
                    self.core_mut(node).stop(now);
                    self.pump(node, false);
                }
            }
            Event::Timer(node, generation, token) => {
                if self.nodes[node].timer == token {
                    self.nodes[node].timer_at = None;
                }
                if self.is_current(node, generation) && self.nodes[node].timer == token {
                    self.nodes[node].record.wakeups += 1;
                    let now = self.instant();
                    self.core_mut(node).handle_timeout(now);
                    self.pump(node, true);
                }
            }
            Event::Uplink(node, generation, version) => {
                if self.is_current(node, generation) && self.nodes[node].uplink.version == version {
                    self.uplink_due(node);
                }
            }
            Event::Incoming(conn, validated) => self.incoming(conn, validated),
            Event::Hello(conn) => self.hello(conn),
            Event::Up(conn, side) => self.up(conn, side),
            Event::Failed(conn, to, end) => self.failed(conn, to, end),
            Event::Rejected(conn, rejection) => self.rejected(conn, rejection),
            Event::Control(conn, to, message) => self.control(conn, to, message),
            Event::Closed(conn, to, end) => self.closed(conn, to, end),
            Event::Farewelled(conn, side) => self.farewelled(conn, side),
            Event::Header(stream, quiet) => self.header(stream, quiet),
            Event::PieceDone(stream) => self.piece_done(stream),
            Event::Acked(stream) => self.upload_acked(stream),
            Event::Reset(stream) => self.reset(stream),
            Event::StopSending(stream) => self.stop_sending(stream),
            Event::Checkpointed(node, generation) => {
                if self.is_current(node, generation) {
                    let now = self.instant();
                    self.core_mut(node).handle_checkpointed(Ok(()), now);
                    self.pump(node, false);
                }
            }
            Event::Checked(node, generation) => {
                if self.is_current(node, generation) {
                    self.final_check(node);
                }
            }
            Event::Found(node, generation) => {
                if self.is_current(node, generation) {
                    self.found(node);
                }
            }
            Event::MirrorUp(node, generation, local) => self.mirror_up(node, generation, local),
            Event::MirrorAsked(request) => self.mirror_asked(request),
            Event::MirrorHeader(request, sent) => self.mirror_header(request, sent),
            Event::MirrorDone(request) => self.mirror_done(request),
            Event::MirrorIgnored(request) => self.mirror_ignored(request),
            Event::MirrorUplink(mirror, version) => self.mirror_uplink_due(mirror, version),
            Event::MirrorGone(mirror, id) => self.mirror_gone(mirror, id),
            Event::ToRelay(relay, node, message) => self.deliver_to_relay(relay, node, message),
            Event::FromRelay(node, relay, message) => self.deliver_from_relay(node, relay, message),
        }
    }

    /// Whether `generation` is node `node`'s running incarnation.
    fn is_current(&self, node: usize, generation: u32) -> bool {
        self.nodes[node].alive && self.nodes[node].generation == generation
    }

    fn start(&mut self, node: usize) {
        if let Some(config) = self.specs[node].relay.clone() {
            let n = &mut self.nodes[node];
            n.generation += 1;
            n.alive = true;
            n.relay = Some(crate::relay::RelayCore::new(config, node as u64).expect("valid"));
            return;
        }
        let spec = &self.specs[node];
        let n = &mut self.nodes[node];
        let first = n.generation == 0;
        n.generation += 1;
        n.alive = true;
        // The last incarnation's timer, if still queued, is not this one's
        // (it is dropped when it comes up).
        n.timer_at = None;
        let have = if first || !spec.download {
            spec.have.clone()
        } else {
            // Started again: what it verified and wrote survives.
            let mut have = spec.have.clone();
            for &chunk in &n.disk.stored {
                let _ = have.set(ChunkIndex(chunk), true);
            }
            have
        };
        n.disk.stored.extend(have.iter_ones().map(|chunk| chunk.0));
        n.disk.hashed = 0;
        let stored: Vec<u32> = n.disk.stored.iter().copied().collect();
        for chunk in stored {
            self.count_holder(node, chunk, true);
        }
        let spec = &self.specs[node];
        let n = &mut self.nodes[node];
        let start = NodeStart {
            discovery: spec.dht,
            neighbours: false,
            swarm: self.swarms[spec.swarm].clone(),
            local_id: id_of(node),
            serve: spec.serve,
            listen: spec.serve.then_some(spec.addr),
            agent: "netsim/1".into(),
            download: spec.download && !have.is_full(),
            have,
            seed_after: spec.seed_after,
            seed: (node as u64 + 1) ^ self.seed_offset.rotate_left(32),
            manifest: None,
            chunk_list: None,
            lan: if spec.lan || spec.nat.is_some_and(|nat| nat.translate) {
                vec![spec.addr]
            } else {
                Vec::new()
            },
            peers: Vec::new(),
            mirrors: mirrors::labels(&spec.mirrors),
            prefixes: Default::default(),
        };
        n.core = Some(NodeCore::new(
            spec.config.clone(),
            start,
            self.base + self.now,
        ));
        n.uplink.transfers.clear();
        n.uplink.last = self.now;
        if let Some(host) = spec.host.filter(|_| self.share_slots) {
            // Its host's gate grants it one upload until it wants more.
            let cap = self.host_download_cap;
            let gate = self.gates.entry(host).or_insert_with(|| {
                let mut gate = crate::gate::Gate::new(NodeConfig::default());
                let _ = gate.set_download_cap(cap);
                gate
            });
            let name = Self::gate_name(node);
            let _ = gate.register(name.clone(), None, spec.serve, node);
            let share = gate.upload_share(&name);
            let now = self.instant();
            self.core_mut(node).set_share(Some(share), now);
        }
        let spec = &self.specs[node];
        let offers: Vec<KnownPeer> = spec
            .offers
            .iter()
            .map(|&other| KnownPeer {
                id: Some(id_of(other)),
                addrs: vec![self.specs[other].addr],
                source: Source::Offer,
            })
            .collect();
        let now = self.instant();
        // The hasher reads back the chunks of an earlier run first.
        self.hash_on(node);
        // The relays it registers with are the ones its offers name.
        let relays: Vec<SocketAddr> = (self.specs[node].relays.iter())
            .map(|&relay| self.specs[relay].addr)
            .collect();
        for offer in offers {
            let id = offer.id;
            self.core_mut(node).add_peer(offer, now);
            if let Some(id) = id {
                self.core_mut(node).add_peer_relays(id, &relays, now);
            }
        }
        self.start_mirrors(node);
        self.pump(node, false);
        if self.specs[node].lan {
            self.announce_on_lan(node);
        }
        for relay in self.specs[node].relays.clone() {
            self.register_with(node, relay);
        }
    }

    /// Local discovery as mDNS gives it: node `node` hears every running
    /// serving node of the LAN, and, when it serves, every running LAN node
    /// hears it.
    fn announce_on_lan(&mut self, node: usize) {
        let now = self.instant();
        let others: Vec<usize> = (0..self.specs.len())
            .filter(|&other| other != node && self.specs[other].lan && self.nodes[other].alive)
            .collect();
        for &other in &others {
            if self.specs[other].serve {
                let addr = self.specs[other].addr;
                self.core_mut(node)
                    .handle_neighbour(id_of(other), &[addr], now);
            }
        }
        self.pump(node, false);
        if self.specs[node].serve {
            let addr = self.specs[node].addr;
            for other in others {
                self.core_mut(other)
                    .handle_neighbour(id_of(node), &[addr], now);
                self.pump(other, false);
            }
        }
    }

    /// Node `node` is gone (killed or ended): its chunks leave the swarm.
    fn gone(&mut self, node: usize) {
        if !self.nodes[node].alive {
            return;
        }
        self.nodes[node].alive = false;
        let stored: Vec<u32> = self.nodes[node].disk.stored.iter().copied().collect();
        for chunk in stored {
            self.count_holder(node, chunk, false);
        }
    }

    /// A running node gained (or lost) `chunk`: counted towards
    /// `leave_when_copied`, whose node is stopped once the others hold
    /// every chunk.
    pub(super) fn count_holder(&mut self, node: usize, chunk: u32, gained: bool) {
        let Some(leaver) = self.leave_when_copied else {
            return;
        };
        let spec = &self.specs[node];
        if node == leaver || !spec.seed_after || spec.vanish_after.is_some() {
            return;
        }
        let holders = &mut self.holders[chunk as usize];
        if gained {
            *holders += 1;
            if *holders == 1 {
                self.held += 1;
                if self.held as usize == self.holders.len() {
                    self.leave_when_copied = None;
                    self.push(self.now, Event::Stop(leaver));
                }
            }
        } else {
            *holders -= 1;
            if *holders == 0 {
                self.held -= 1;
            }
        }
    }

    fn kill(&mut self, node: usize) {
        self.mirrors_forget(node);
        // Its uploads stop; on a shared host the others' go on.
        let conns: Vec<[usize; 2]> = self.conns.iter().map(|c| c.nodes).collect();
        let owner = self.uplink_of(node);
        self.uplink_change(owner, |uplink| {
            uplink.transfers.retain(|t| conns[t.conn][t.from] != node);
        });
        if let Some(gate) = self.specs[node]
            .host
            .and_then(|host| self.gates.get_mut(&host))
        {
            let grants = gate.deregister(&Self::gate_name(node));
            self.hand_out(grants.changed);
        }
        self.gone(node);
        let generation = self.nodes[node].generation;
        for conn in 0..self.conns.len() {
            for side in 0..2 {
                let c = &self.conns[conn];
                if c.nodes[side] == node && c.generations[side] == generation && c.open[side] {
                    self.conns[conn].open[side] = false;
                    let at = self.now + self.idle_timeout;
                    self.push(at, Event::Closed(conn, 1 - side, LinkEnd::TimedOut));
                }
            }
        }
    }

    /// Carries out a node's actions, passes its reports on, and sets its
    /// timer. After `handle_timeout`, the next deadline must be later.
    fn pump(&mut self, node: usize, after_timeout: bool) {
        let now = self.instant();
        loop {
            while let Some(action) = self.core_mut(node).poll_action() {
                self.carry_out(node, action);
            }
            if !self.nodes[node].alive || !self.share_host_slots(node) {
                break;
            }
        }
        while let Some(report) = self.core_mut(node).poll_report() {
            self.nodes[node].record.reports.push((self.now, report));
        }
        let n = &self.nodes[node];
        if !n.alive {
            return;
        }
        let deadline = n.core.as_ref().expect("started").poll_timeout(now);
        if let Some(deadline) = deadline {
            assert!(deadline >= now, "node {node}: poll_timeout in the past");
            assert!(
                !after_timeout || deadline > now,
                "node {node}: handle_timeout at {:?} left its deadline where it was: {}",
                self.now,
                self.nodes[node]
                    .core
                    .as_ref()
                    .expect("started")
                    .debug_deadlines(now)
            );
            let at = deadline - self.base;
            let n = &mut self.nodes[node];
            if n.timer_at.is_some_and(|(pending, _)| pending == at) {
                return;
            }
            n.timer += 1;
            let event = Event::Timer(node, n.generation, n.timer);
            self.push(at, event);
            self.nodes[node].timer_at = Some((at, self.sequence));
        }
    }

    fn gate_name(node: usize) -> crate::gate::SwarmName {
        (format!("node-{node}"), [0; 32])
    }

    /// The node whose uplink `node` uses.
    pub(super) fn uplink_of(&self, node: usize) -> usize {
        self.specs[node].host.unwrap_or(node)
    }

    /// On a shared host: tells the host's gate what `node`'s uploads want
    /// when that changed and hands every changed grant to its core (the
    /// others are pumped); whether `node`'s own grant changed.
    fn share_host_slots(&mut self, node: usize) -> bool {
        let Some(host) = self.specs[node].host.filter(|_| self.share_slots) else {
            return false;
        };
        let Some(news) = self.core_mut(node).poll_gate_news() else {
            return false;
        };
        let gate = self.gates.get_mut(&host).expect("registered at its start");
        let name = Self::gate_name(node);
        let grants = gate.handle_news(&name, news);
        let now = self.instant();
        self.core_mut(node).set_share(Some(grants.own), now);
        self.hand_out(grants.changed);
        true
    }

    /// Gives the running nodes of a host the shares its gate changed.
    fn hand_out(&mut self, changed: Vec<(usize, crate::gate::Share)>) {
        let now = self.instant();
        for (other, share) in changed {
            if self.nodes[other].alive {
                self.core_mut(other).set_share(Some(share), now);
                self.pump(other, false);
            }
        }
    }

    fn carry_out(&mut self, node: usize, action: Action) {
        let generation = self.nodes[node].generation;
        let side_of =
            |sim: &Sim, link: LinkId| sim.nodes[node].links.get(&(generation, link)).copied();
        match action {
            Action::Dial {
                link,
                addr,
                peer,
                have,
                ..
            } => {
                self.nodes[node].record.dials.push((self.now, addr));
                self.dial(node, link, addr, peer, have);
            }
            Action::Open { addrs } => {
                for addr in addrs {
                    self.open(node, addr);
                }
            }
            Action::RelayIntroduce { relay, peer } => self.ask_relay(node, relay, peer),
            Action::Abort { link } => {
                if let Some((conn, side)) = side_of(self, link) {
                    self.hang_up(conn, side, None);
                }
            }
            Action::Close { link, reason } => {
                if let Some((conn, side)) = side_of(self, link) {
                    self.hang_up(conn, side, Some(reason));
                }
            }
            Action::Send { link, message } => {
                if let Some((conn, side)) = side_of(self, link) {
                    if matches!(message, Message::Cancel { .. }) {
                        self.nodes[node].record.cancels_sent += 1;
                    }
                    if self.trace_peer == Some(node) {
                        self.trace_request(node, conn, side, &message);
                    }
                    self.send(conn, 1 - side, message);
                }
            }
            Action::Upload {
                link, chunk, pace, ..
            } => {
                if let Some((conn, side)) = side_of(self, link) {
                    self.upload(node, conn, side, chunk.0, pace);
                }
            }
            Action::CancelUpload { link, chunk } => {
                if let Some((conn, side)) = side_of(self, link) {
                    self.cancel_upload(node, conn, side, chunk.0);
                }
            }
            Action::HashStored { .. } => self.hash_on(node),
            // The simulator's paths have no flow control.
            Action::ReceiveWindow { .. } => {}
            Action::Lookup => {
                let at = self.now + self.dht_time;
                self.push(at, Event::Found(node, generation));
            }
            Action::RestartHash => {
                self.nodes[node].record.hash_restarts += 1;
                self.nodes[node].disk.hashed = 0;
                self.hash_on(node);
            }
            Action::MirrorFetch { mirror, chunk, .. } => self.mirror_fetch(node, mirror, chunk.0),
            Action::MirrorCancel { mirror, chunk } => {
                self.mirror_cancel(node, mirror, Some(chunk.0));
            }
            Action::MirrorClose { mirror } => self.mirror_cancel(node, mirror, None),
            Action::Checkpoint { release_below, .. } => {
                self.save_mirrors(node);
                let hashed = u64::from(self.nodes[node].disk.hashed)
                    * u64::from(self.swarm.params().chunk_size());
                let record = &mut self.nodes[node].record;
                record.checkpoints.push((self.now, release_below, hashed));
                let at = self.now + self.job_time;
                self.push(at, Event::Checkpointed(node, generation));
            }
            Action::Deliver => {
                let at = self.now + self.job_time;
                self.push(at, Event::Checked(node, generation));
            }
            Action::End(outcome) => {
                self.nodes[node].record.ended = Some((self.now, outcome));
                self.gone(node);
            }
            Action::MeasureSent { link } => {
                // A staller's driver never answers: it holds the link open
                // and keeps its requests (as a hostile peer would).
                let stalling = matches!(
                    self.specs[node].behaviour,
                    Behaviour::Staller(from) if self.now >= from
                );
                if stalling {
                    return;
                }
                if let Some((conn, side)) = side_of(self, link) {
                    // The bytes its uploads carried up to now, as a
                    // connection's counter has them.
                    let owner = self.uplink_of(node);
                    if !self.nodes[owner].uplink.transfers.is_empty() {
                        self.uplink_change(owner, |_| {});
                    }
                    let sent = self.conns[conn].sent[side] as u64;
                    let now = self.instant();
                    self.core_mut(node).handle_sent(link, sent, now);
                }
            }
        }
    }

    /// The trailing hasher reads on over the chunks written in order.
    fn hash_on(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let before = n.disk.hashed;
        while n.disk.stored.contains(&n.disk.hashed) {
            n.disk.hashed += 1;
        }
        let hashed = n.disk.hashed;
        if hashed != before {
            let now = self.instant();
            self.core_mut(node).handle_trailing(hashed, now);
        }
    }

    /// A DHT lookup's answer: up to [`DHT_ANSWER`] running serving nodes
    /// on the DHT, drawn at random (not the asker).
    fn found(&mut self, node: usize) {
        let announced: Vec<SocketAddr> = (0..self.specs.len())
            .filter(|&other| {
                let spec = &self.specs[other];
                other != node && spec.dht && spec.serve && self.nodes[other].alive
            })
            .map(|other| self.specs[other].addr)
            .collect();
        let mut answer = Vec::new();
        let mut left = announced;
        while answer.len() < DHT_ANSWER && !left.is_empty() {
            let pick = self.rng.below(left.len() as u64) as usize;
            answer.push(left.swap_remove(pick));
        }
        let now = self.instant();
        let core = self.core_mut(node);
        core.handle_discovered(&answer, now);
        core.handle_lookup_done(now);
        self.pump(node, false);
    }

    fn final_check(&mut self, node: usize) {
        let now = self.instant();
        let disk = &mut self.nodes[node].disk;
        let mut damaged = Vec::new();
        for (&chunk, times) in disk.damage.iter_mut() {
            if *times > 0 && disk.stored.contains(&chunk) {
                *times -= 1;
                damaged.push(ChunkIndex(chunk));
            }
        }
        let finish = if damaged.is_empty() {
            self.nodes[node].record.delivered_at = Some(self.now);
            Finish::Delivered {
                path: "delivered.slm".into(),
                receipt: "delivered.receipt.json".into(),
            }
        } else {
            for chunk in &damaged {
                disk.stored.remove(&chunk.0);
            }
            for chunk in &damaged {
                self.count_holder(node, chunk.0, false);
            }
            Finish::Damaged(damaged)
        };
        self.core_mut(node).handle_finished(finish, now);
        self.pump(node, false);
    }
}
