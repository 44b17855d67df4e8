//! [`NodeCore`]: one peer of one swarm, every decision it makes, sans-IO.
//!
//! The driver feeds it what happened (`handle_*`, each with the time) and
//! carries out what it decides ([`NodeCore::poll_action`]); it asks
//! [`NodeCore::poll_timeout`] when to call [`NodeCore::handle_timeout`]
//! next, and passes [`NodeCore::poll_report`]'s reports on to people. The
//! driver moves bytes, runs blocking jobs (hashing, disk) and keeps the
//! sockets; it decides nothing.
//!
//! One fact, one place:
//! - what this node has: [`NodeCore::have`] (verified chunks; the download's
//!   picker agrees, the upload queue asks here);
//! - each request to a peer: its [`crate::session::PeerDownload`];
//! - each link: `Link`, from the first packet or the dial to the close;
//! - each known peer, and the bans: the [`AddressBook`].
//!
//! A node seeds (every chunk, no download), fetches (a download, no
//! serving) or both (`fetch --serve`); uploads and downloads share this one
//! machine. The normative description is `docs/swarm.md`.

pub mod fetching;
mod links;
mod linkset;
mod messages;
mod mirrors;
mod relayed;
mod serving;
mod sparing;
mod standing;
#[cfg(test)]
mod tests;
mod traversal;
mod upload_slots;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use minimodel_wire::{
    ChunkIndex, ControlStream, GoodbyeReason, HaveBitfield, Hello, MAX_LAN_ADDRS, Message, PeerId,
    SwarmIdentity, SwarmParams,
};

use crate::address::Prefix;
use crate::book::{AddressBook, EntryId, Source};
use crate::config::NodeConfig;
use crate::ids::LinkId;
use crate::report::{Departure, Failure, LinkEnd, NodeMetrics, NodeReport, PeerFigures};
use crate::rng::SplitMix64;
use crate::upload::{TokenBucket, UploadQueue};

pub use crate::ends::Rejection;
pub use crate::gate::GateNews;
pub use crate::report::TransferStats;
pub use fetching::{Finish, PieceEnd, PieceVerdict, VerifyOutcome};
pub use links::{Answer, First, Incoming, LinkUp, handshake_end};
pub use mirrors::{MAX_MIRRORS, RememberedMirror};
pub use relayed::is_relay_path;
pub use serving::UploadOutcome;

/// At most this many peers turned away for lack of room are remembered
/// to be named in later refusals.
const TURNED_AWAY: usize = 32;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Dial `addr` (a new link): QUIC, then the Hello exchange, sending our
    /// Hello as it stands once the connection is up and
    /// [`NodeCore::hello_held`] no longer holds it ([`NodeCore::hello_to`]:
    /// a port mapping may arrive in between) and
    /// `have` as our bitfield, within `deadline`. `peer` is the id the peer
    /// must prove, when known (not for an address from a DHT).
    Dial {
        /// The new link.
        link: LinkId,
        /// Where.
        addr: SocketAddr,
        /// Whom, if known.
        peer: Option<PeerId>,
        /// The bitfield to send.
        have: HaveBitfield,
        /// Give up at.
        deadline: Instant,
    },
    /// Open our router toward each of `addrs` without reaching the peers'
    /// routers: a few datagrams from the listening socket with a small
    /// TTL (`docs/swarm.md`, "Through NAT routers"), so that what the peer
    /// sends us next finds a mapping of ours waiting for it. The dial
    /// follows.
    Open {
        /// Where the peer's packets will come from.
        addrs: Vec<SocketAddr>,
    },
    /// Ask `relay` (one this node is registered with) to introduce it to
    /// `peer` (`docs/relay.md`): the answer comes back as
    /// [`NodeCore::handle_relay_connect`] or
    /// [`NodeCore::handle_relay_introduce_failed`].
    RelayIntroduce {
        /// The relay.
        relay: SocketAddr,
        /// The peer.
        peer: PeerId,
    },
    /// Drop a link or an attempt at once, without a Goodbye.
    Abort {
        /// Which.
        link: LinkId,
    },
    /// Send a control message (already checked against the control
    /// stream's rules).
    Send {
        /// To whom.
        link: LinkId,
        /// What.
        message: Message,
    },
    /// Send Goodbye, then close the connection once it is delivered (or
    /// after a short wait).
    Close {
        /// Which.
        link: LinkId,
        /// Why.
        reason: GoodbyeReason,
    },
    /// Let the peer send at least `bytes` on the connection beyond what we
    /// have read (the transport's connection receive window, if it is
    /// smaller now): what we asked of it and have not received. On a
    /// lossy path the bytes behind a lost packet wait for its repair
    /// unread, so a window smaller than the pipeline holds the peer back
    /// (`docs/swarm.md`, "Pipelines"). It only grows, and the requests it
    /// covers are bounded by the download's budget.
    ReceiveWindow {
        /// Which.
        link: LinkId,
        /// Bytes.
        bytes: u64,
    },
    /// Read `chunk`, take its proof, and send it on a new piece stream,
    /// paced at `pace` bytes per second if set.
    Upload {
        /// To whom.
        link: LinkId,
        /// Which chunk.
        chunk: ChunkIndex,
        /// Its first byte to send: 0 for the whole chunk, more for a
        /// RequestFrom's (a PieceFrom).
        from: u32,
        /// Bytes per second, if capped.
        pace: Option<u64>,
    },
    /// Stop an upload: reset its piece stream.
    CancelUpload {
        /// To whom.
        link: LinkId,
        /// Which chunk.
        chunk: ChunkIndex,
    },
    /// `chunk` is verified and written: the trailing whole-file hasher may
    /// read it back.
    HashStored {
        /// Which chunk.
        chunk: ChunkIndex,
    },
    /// Start the whole-file hash again from the first chunk, with the
    /// chunks verified now (after chunks were found bad on disk).
    RestartHash,
    /// Write a checkpoint of the partial download; afterwards the `.part`'s
    /// cached pages from `release_from` to `release_below` may be dropped
    /// (they were written before this checkpoint's sync and are hashed
    /// already; those below `release_from` were released before).
    Checkpoint {
        /// Where the previous release ended, in bytes from the start.
        release_from: u64,
        /// Bytes from the start of the file.
        release_below: u64,
    },
    /// Every chunk is verified: run the final checks and deliver (answer
    /// with [`NodeCore::handle_finished`]).
    Deliver,
    /// Look the swarm up on the DHT: pass what it finds to
    /// [`NodeCore::handle_discovered`] as it comes, then call
    /// [`NodeCore::handle_lookup_done`].
    Lookup,
    /// Say how many bytes the link's connection has sent in all (UDP
    /// payload, retransmissions included), with
    /// [`NodeCore::handle_sent`]: uploads to a peer that takes nothing
    /// are noticed this way.
    MeasureSent {
        /// Which.
        link: LinkId,
    },
    /// Ask a mirror for the bytes `range` (whole chunk `chunk`, end
    /// exclusive) with an HTTP range request; report with
    /// [`NodeCore::handle_mirror_started`], `_progress`, `_arrived` (then
    /// check it and say `_verified`) or `_failed`.
    MirrorFetch {
        /// Which mirror.
        mirror: crate::mirror::MirrorId,
        /// Which chunk.
        chunk: ChunkIndex,
        /// Its bytes in the artifact.
        range: std::ops::Range<u64>,
    },
    /// Stop asking a mirror for a chunk (abandon its response).
    MirrorCancel {
        /// Which mirror.
        mirror: crate::mirror::MirrorId,
        /// Which chunk.
        chunk: ChunkIndex,
    },
    /// The mirror left the download: abandon its responses, close its
    /// connections, ask it nothing more.
    MirrorClose {
        /// Which mirror.
        mirror: crate::mirror::MirrorId,
    },
    /// The node's work is over: stop the driver. Goodbyes were queued
    /// before this, and a download's last checkpoint was written.
    End(End),
}

/// How a node's work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Its download was delivered (and it does not seed on).
    Done,
    /// It was stopped ([`NodeCore::stop`]); a download's verified part is
    /// saved.
    Stopped,
    /// It failed; a download's verified part is saved.
    Failed(Failure),
}

/// One link: an attempt (dial or incoming handshake) or a connected peer.
#[derive(Debug)]
enum Link {
    Dialing {
        entry: EntryId,
        addr: SocketAddr,
        deadline: Instant,
        exchange: bool,
        /// The bitfield the dial sends.
        sent: HaveBitfield,
    },
    Handshaking {
        remote: SocketAddr,
        prefix: Prefix,
        deadline: Instant,
        /// The id admitted at its Hello (it holds a peer slot), with the
        /// bitfield we answered.
        admitted: Option<(PeerId, HaveBitfield)>,
        /// The shared endpoint it came through has no room for one more
        /// of this swarm's links (`crate::gate::Routed::room`).
        crowded: bool,
    },
    Up(Box<Peer>),
    /// Our Goodbye (or a query's answer) is on its way: the connection is
    /// closed once the driver says it ended, or at `deadline`.
    Closing {
        deadline: Instant,
        /// A chunk list answer going to a peer of this prefix (counted
        /// against `max_chunk_list_answers`).
        answering: Option<Prefix>,
    },
}

/// A connected peer.
#[derive(Debug)]
struct Peer {
    id: PeerId,
    remote: SocketAddr,
    prefix: Prefix,
    dialed: bool,
    entry: Option<EntryId>,
    control: ControlStream,
    /// It serves, and where it listens: the address it was seen at, with
    /// the port its Hello names.
    serving: bool,
    listen: Option<SocketAddr>,
    /// Its Hello names the IP address it is seen at as where it listens:
    /// it says it is reachable there (a public address, or a port its
    /// router maps for it), so it is named there plainly, never only
    /// through an introduction.
    listens_where_seen: bool,
    /// It is part of our download.
    downloading_from: bool,
    /// The chunks it has (its bitfield, then its `Have`s): whether it is
    /// worth dialing again after it leaves does not depend on whether the
    /// download still counts it.
    has: HaveBitfield,
    /// Piece streams from it being read, by chunk.
    arriving: BTreeSet<u32>,
    /// Chunks ever requested from it (a piece it sends for any other is a
    /// violation).
    ever_requested: HaveBitfield,
    /// The chunks last requested from it from an offset on (RequestFrom,
    /// v3), with the offset: a chunk not here was asked for whole.
    asked_from: BTreeMap<u32, u32>,
    /// Chunks ever requested from it from an offset (a PieceFrom for any
    /// other is a violation); at most the download's held starts.
    ever_asked_from: BTreeSet<u32>,
    /// The most bytes of ours it may send before we read them that we
    /// asked the transport for ([`Action::ReceiveWindow`]); 0: none asked.
    receive_window: u64,
    /// Peers it was told of (peer exchange).
    told: BTreeSet<PeerId>,
    /// Addresses from its Peers messages we may still dial.
    exchange_budget: TokenBucket,
    uploaded_chunks: u64,
    uploaded_bytes: u64,
    /// Last time it asked us for something or gave us something.
    last_useful: Instant,
    /// When its link came up.
    connected_at: Instant,
    /// Last time we sent it a control message (a KeepAlive follows
    /// `keep_alive_after` of silence).
    last_sent: Instant,
    /// While uploads to it are under way: whether its connection takes
    /// bytes (see [`NodeCore::handle_sent`]).
    upload_watch: Option<serving::UploadWatch>,
    /// A Goodbye is queued: nothing more is sent, it is gone soon.
    leaving: bool,
    /// Its Goodbye, held while uploads to it that were under way when it
    /// came still wait for their acknowledgement: it acknowledged them
    /// before it said goodbye, so their ends come first, and they are
    /// counted as sent (see [`NodeCore::release_goodbye`]). With the
    /// chunks still waited for; uploads started meanwhile do not hold it.
    goodbye: Option<(GoodbyeReason, BTreeSet<u32>)>,
    /// The addresses its Hello says it listens at on its own local
    /// network (at most 4, each a LAN address): passed on only to peers
    /// behind the same public address.
    lan: Vec<SocketAddr>,
    /// Introductions it may still ask of us (Rendezvous).
    introductions: TokenBucket,
    /// Where its Hello says it sees our connection come from.
    observed_us: Option<SocketAddr>,
    /// A sparing seed's uploads to it (kept only by a sparing seed): a
    /// Have of any other chunk is one it got from another peer.
    sent_to: Option<HaveBitfield>,
    /// A sparing seed first answered it Busy then, and how many chunks it
    /// got from other peers since (`serving::SPARING_PATIENCE`).
    spared: Option<(Instant, u32)>,
}

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeStart {
    /// The swarm: model id, root, geometry.
    pub swarm: SwarmIdentity,
    /// This node's id.
    pub local_id: PeerId,
    /// Whether it serves chunks (a seeder, `fetch --serve`).
    pub serve: bool,
    /// Where it accepts incoming connections, as its Hello names it when
    /// no router maps a port for it ([`NodeCore::set_mapping`]); `None`:
    /// it has no listener.
    pub listen: Option<SocketAddr>,
    /// Program name and version, sent in Hello (at most 64 printable
    /// ASCII characters, `minimodel_wire::validate_agent`; another is
    /// sent as `minimodel`).
    pub agent: String,
    /// The chunks verified at start: all for a seeder, those of an earlier
    /// run for a download.
    pub have: HaveBitfield,
    /// Whether it downloads (the chunks it lacks).
    pub download: bool,
    /// With `serve`: keep serving the whole file once delivered.
    pub seed_after: bool,
    /// Whether peers can be looked up on a DHT ([`Action::Lookup`]).
    pub discovery: bool,
    /// Whether neighbours heard on the local network are handed to it
    /// (`--lan`, [`NodeCore::handle_neighbour`]).
    pub neighbours: bool,
    /// Seed of every random choice (tie-breaks, jitter).
    pub seed: u64,
    /// The manifest file's bytes this node hands out to a manifest query
    /// (a ticket's holder names their SHA-256), when it has them.
    pub manifest: Option<Arc<[u8]>>,
    /// The artifact's whole chunk list (`H[i]` of every chunk, checked
    /// against the Merkle root), handed to a chunk list query for the
    /// manifest above; a download that has none yet gets it when it is
    /// delivered ([`NodeCore::set_chunk_list`]).
    pub chunk_list: Option<Arc<[[u8; 32]]>>,
    /// Its own LAN addresses (its Hello lists them when it listens; port
    /// 0 when it does not): a LAN address a peer passes on is dialed
    /// only within the network (/24, /64) of one of these.
    pub lan: Vec<SocketAddr>,
    /// Peers named to it (an offer, a ticket, `--peer`), dialed from the
    /// start ([`KnownPeer::offered`]).
    pub peers: Vec<minimodel_wire::PeerAddr>,
    /// The mirrors the person named, by label (`https://host/path`), in
    /// the order of their [`crate::mirror::MirrorId`]s (at most
    /// [`MAX_MIRRORS`]); each joins the download when its driver reports
    /// it usable ([`NodeCore::handle_mirror_up`]).
    pub mirrors: Vec<String>,
    /// The chunks a download may ask for from an offset on, with the
    /// bytes of their start it holds already (an older version's part
    /// that ended inside the chunk): asked so of peers that speak v3
    /// (RequestFrom), whole of others. The driver joins the start it
    /// holds to the rest before the chunk is checked.
    pub prefixes: BTreeMap<u32, u32>,
}

impl NodeStart {
    /// A node of `swarm` as `local_id`, with `have` verified at start and
    /// its random choices seeded from its id ([`crate::rng::seed_of`]):
    /// it neither serves nor downloads, listens nowhere, looks nothing up
    /// and has no manifest to hand out until the caller says otherwise.
    pub fn new(swarm: SwarmIdentity, local_id: PeerId, agent: String, have: HaveBitfield) -> Self {
        Self {
            swarm,
            seed: crate::rng::seed_of(&local_id),
            local_id,
            serve: false,
            listen: None,
            agent,
            have,
            download: false,
            seed_after: false,
            discovery: false,
            neighbours: false,
            manifest: None,
            chunk_list: None,
            lan: Vec::new(),
            peers: Vec::new(),
            mirrors: Vec::new(),
            prefixes: BTreeMap::new(),
        }
    }
}

/// The upload side of a node at one moment ([`NodeCore::upload_state`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadState {
    /// Uploads under way, overdue and stuck ones included.
    pub under_way: usize,
    /// Of those, the ones that hold a slot.
    pub holding: usize,
    /// Slots: uploads that may hold one at once.
    pub slots: usize,
    /// Requests waiting for a slot.
    pub queued: usize,
    /// The uplink's measured rate, bytes per second; `None` until measured.
    pub uplink_rate: Option<f64>,
}

/// One peer of one swarm. See the module docs.
#[derive(Debug)]
pub struct NodeCore {
    config: NodeConfig,
    swarm: SwarmIdentity,
    params: SwarmParams,
    local_id: PeerId,
    serve: bool,
    /// What every Hello of ours says (`observed` is set per link).
    hello: Hello,
    /// Where we listen, when we do; and the outside address our router
    /// maps to it, while it holds a mapping.
    listen: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    /// While the router's first answer about a port mapping is awaited:
    /// until when dialed links' Hellos wait for it.
    hellos_wait_until: Option<Instant>,
    /// The mapper's first round of asking has ended once.
    mapping_settled: bool,
    seed_after: bool,
    /// The generation of the newest gate decision taken ([`NodeCore::take_grant`]).
    grant_generation: Option<u64>,
    /// The manifest handed to manifest queries: its SHA-256 and bytes.
    manifest: Option<([u8; 32], Arc<[u8]>)>,
    /// The chunk list handed to chunk list queries, once whole.
    chunk_list: Option<Arc<[[u8; 32]]>>,
    /// Each chunk's length when the swarm's chunks are listed
    /// (`slm-parts-merkle-v0`): a chunk list query's answer carries them.
    /// Made once from the geometry, shared by every answer.
    chunk_lengths: Option<Arc<[u32]>>,
    lan: Vec<SocketAddr>,
    /// Where peers see our connections come from.
    observed: crate::observed::Observations,
    /// Introductions, by step, for the metrics.
    introductions: crate::report::IntroductionCounts,
    rng: SplitMix64,
    next_link: u64,
    /// What this node has verified: the one record of it.
    have: HaveBitfield,
    links: linkset::Links,
    book: AddressBook,
    uploads: upload_slots::Uploads,
    download: Option<fetching::Fetching>,
    actions: VecDeque<Action>,
    reports: VecDeque<NodeReport>,
    last_exchange: Instant,
    /// A link came up since the last exchange round, or that round left
    /// entries for the next one: the round has something to send.
    exchange_due: bool,
    /// Refusals that name other peers ([`crate::config::refusal_rate`]).
    refusal_budget: crate::upload::TokenBucket,
    /// Serving peers recently turned away for lack of room, newest last
    /// (one per IP address, at most [`TURNED_AWAY`]): named to the next
    /// ones turned away, so that latecomers find each other.
    turned_away: std::collections::VecDeque<minimodel_wire::PeerEntry>,
    /// Peers turned away for lack of room since they last got in, newest
    /// last, at most [`TURNED_AWAY`]: back again, they find room sooner
    /// ([`NodeConfig::evict_for_refused_after`]).
    refused: std::collections::VecDeque<PeerId>,
    last_serving_report: Instant,
    ended: bool,
    stopping: bool,
    /// Stopped while the download's final checks run: they may take until
    /// then.
    stop_deadline: Option<Instant>,
    /// The end, waiting for the download's last checkpoint.
    ending: Option<End>,
    discovery: bool,
    /// Neighbours on the local network may be handed to it.
    neighbours: bool,
    /// A lookup is running; when the last one started.
    lookup_running: bool,
    last_lookup: Option<Instant>,
    /// When the node started (the first lookup is due then).
    started_at: Instant,
    /// The peers earlier runs of this download remembered
    /// ([`Self::remember_peers_from`]); `None`: it remembers nothing.
    remembered: Option<Vec<crate::remembered::RememberedPeer>>,
    /// What the shared endpoint's gate was told last ([`Self::poll_gate_news`]).
    gate_told: (
        Option<crate::gate::UploadDemand>,
        Option<bool>,
        Option<crate::gate::OwnCaps>,
    ),
    /// A node that seeds from its start: whether it spares its uplink in
    /// a large swarm (`sparing`). `None` for every other node.
    sparing: Option<sparing::Sparing>,
    /// The mirrors of the download, by [`crate::mirror::MirrorId`].
    mirrors: Vec<mirrors::Mirror>,
    /// What earlier runs saw of the mirrors ([`Self::remember_mirrors_from`]);
    /// `None`: it remembers nothing.
    remembered_mirrors: Option<Vec<RememberedMirror>>,
    /// Who can reach this node, and what it said about it
    /// ([`crate::reach`]).
    standing: standing::Standing,
    /// Dials an introduction asked for, when they are due (after our
    /// router was opened toward the peer): when, the entry, and the
    /// addresses to dial when not the entry's own (a punch beside a link
    /// through a relay).
    punches: Vec<(Instant, EntryId, Option<Vec<SocketAddr>>)>,
    /// The relays this node uses and the peers behind them.
    relays: relayed::Relays,
}

/// Our Hello as `start` describes the node, without `observed`.
fn our_hello(start: &NodeStart) -> Hello {
    let agent = match minimodel_wire::validate_agent(&start.agent) {
        Ok(()) => start.agent.clone(),
        Err(_) => "minimodel".to_owned(),
    };
    // Only the agent is checked, and it passed.
    let mut hello = (start.swarm)
        .hello(start.serve, start.listen, agent)
        .expect("a valid agent");
    if start.listen.is_some() {
        hello.lan = start.lan.iter().copied().take(MAX_LAN_ADDRS).collect();
    }
    hello
}

impl NodeCore {
    /// A node at `now`.
    pub fn new(config: NodeConfig, start: NodeStart, now: Instant) -> Self {
        let params = start.swarm.params().clone();
        let count = params.chunk_count();
        let mut download_config = config.download.clone();
        download_config.seed ^= start.seed;
        download_config.max_rate = config.max_download;
        download_config.spread_from_start |= start.serve;
        let download = start.download.then(|| {
            let mut download =
                fetching::Fetching::new(&config, download_config, &start.have, params.clone(), now);
            download.downloader.set_local_id(start.local_id);
            download.prefixes = start.prefixes.clone();
            download
        });
        let upload_queue = UploadQueue::new(count, config.upload.clone());
        let uploads = upload_slots::Uploads::new(upload_queue, config.max_upload, now);
        let refusals = config.refusal_peers_per_second;
        let hello = our_hello(&start);
        let standing = standing::Standing::new(
            start.listen.is_some(),
            (start.listen.into_iter())
                .chain(start.lan.iter().copied())
                .filter(|addr| !addr.ip().is_unspecified() && addr.port() != 0)
                .collect(),
            config.reach_wait,
        );
        let mut node = Self {
            book: AddressBook::new(config.max_known_peers),
            config,
            swarm: start.swarm,
            params: params.clone(),
            local_id: start.local_id,
            serve: start.serve,
            hello,
            listen: start.listen,
            mapped: None,
            hellos_wait_until: None,
            grant_generation: None,
            mapping_settled: false,
            seed_after: start.seed_after,
            manifest: start
                .manifest
                .map(|bytes| (minimodel_verifier::Sha256Digest::of(&bytes).0, bytes)),
            // A list of another length is not this swarm's: never served.
            chunk_list: (start.chunk_list)
                .filter(|list| list.len() == params.chunk_count() as usize),
            chunk_lengths: params.is_listed().then(|| {
                (0..params.chunk_count())
                    .filter_map(|chunk| params.chunk_len(ChunkIndex(chunk)).ok())
                    .collect()
            }),
            lan: start.lan,
            observed: crate::observed::Observations::new(),
            introductions: crate::report::IntroductionCounts::default(),
            rng: SplitMix64(start.seed ^ 0x6e6f_6465),
            next_link: 0,
            have: start.have,
            links: linkset::Links::default(),
            uploads,
            download,
            actions: VecDeque::new(),
            reports: VecDeque::new(),
            last_exchange: now,
            exchange_due: false,
            refusal_budget: crate::upload::TokenBucket::new(refusals, 2 * refusals, now),
            turned_away: std::collections::VecDeque::new(),
            refused: std::collections::VecDeque::new(),
            last_serving_report: now,
            ended: false,
            stopping: false,
            stop_deadline: None,
            ending: None,
            discovery: start.discovery,
            neighbours: start.neighbours,
            lookup_running: false,
            last_lookup: None,
            started_at: now,
            sparing: (start.serve && !start.download).then(sparing::Sparing::default),
            gate_told: (None, None, None),
            remembered: None,
            mirrors: Self::mirrors_from(&start.mirrors),
            remembered_mirrors: None,
            standing,
            punches: Vec::new(),
            relays: relayed::Relays::default(),
        };
        for peer in KnownPeer::offered(&start.peers) {
            node.add_peer(peer, now);
        }
        // A download whose every chunk was verified in an earlier run goes
        // straight to its final checks.
        node.check_complete(now);
        node
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next report for people.
    pub fn poll_report(&mut self) -> Option<NodeReport> {
        self.reports.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next, if ever: never
    /// before `now` (work that became due while the node waited on
    /// something else, such as a checkpoint that finished late, is due
    /// `now`).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.ended {
            return None;
        }
        if self.ending.is_some() {
            // Only the last checkpoint is awaited; Goodbyes and attempts
            // may time out, and so may its wait for chunks being verified.
            return self
                .links
                .values()
                .filter_map(|link| match link {
                    Link::Closing { deadline, .. }
                    | Link::Dialing { deadline, .. }
                    | Link::Handshaking { deadline, .. } => Some(*deadline),
                    Link::Up(_) => None,
                })
                .chain(
                    self.download
                        .as_ref()
                        .and_then(fetching::Fetching::verify_wait_deadline),
                )
                .min()
                .map(|deadline| deadline.max(now));
        }
        let config = &self.config;
        let linkset::Summary {
            counts,
            deadline: links,
        } = self.links.summary(config);
        let dials = self.next_dial_time();
        let lookup = self.next_lookup_time();
        let download = self
            .download
            .as_ref()
            .and_then(|download| download.next_deadline(&self.config, now));
        let chunk_size = self.params.chunk_size();
        let slot_free = self.uploads.slot_free(config, chunk_size, now);
        let uploads = self
            .uploads
            .next_deadline()
            .into_iter()
            .chain(
                // Second copies that wait behind first ones while a slot is
                // free.
                (self.uploads.running() > 0 && slot_free)
                    .then(|| self.uploads.next_starving(config.resend_after, now))
                    .flatten(),
            )
            .chain(
                // Second copies that wait for the uplink to empty while a
                // slot is free.
                (self.uploads.has_queued() && slot_free)
                    .then(|| self.uploads.next_wire_idle(now))
                    .flatten(),
            )
            .chain(
                // A slot freed by an overdue upload, for a request waiting.
                (self.uploads.has_queued() && !slot_free)
                    .then(|| self.uploads.next_slot_free(config, chunk_size, now))
                    .flatten(),
            );
        let exchange = self
            .has_exchange_work()
            .then(|| self.last_exchange + self.config.peer_exchange_every);
        // Upload progress is worth a wake-up only while someone is there
        // to upload to: an idle seeder sleeps until a peer arrives.
        let serving_report = (self.serve && self.download.is_none() && counts.up > 0)
            .then(|| self.last_serving_report + self.config.serving_report_every);
        links
            .into_iter()
            .chain(self.stop_deadline)
            .chain(dials)
            .chain(lookup)
            .chain(download)
            .chain(uploads)
            .chain(exchange)
            .chain(serving_report)
            .chain(self.hellos_wait_until.filter(|until| *until > now))
            .chain(self.standing.deadline())
            .chain(self.punches.iter().map(|(at, _, _)| *at).min())
            .chain(self.relays.deadline(self.config.relay_ask_again))
            .min()
            .map(|deadline| deadline.max(now))
    }

    /// The upload side now, for a driver's diagnostics (the path trace,
    /// `docs/transport.md`): uploads under way, those holding a slot, the
    /// slots, the requests queued, and the measured uplink rate.
    pub fn upload_state(&self, now: Instant) -> UploadState {
        UploadState {
            under_way: self.uploads.active.len(),
            holding: self.uploads.holding(now),
            slots: self.uploads.slots(&self.config, self.params.chunk_size()),
            queued: self.uploads.queued(),
            uplink_rate: self.uploads.meter_rate(),
        }
    }

    /// (missing, requests in flight, uploads under way, uploads queued,
    /// upload slots): for the simulator's traces.
    #[cfg(test)]
    pub(crate) fn load(&self) -> (u32, usize, usize, usize, usize) {
        let missing = self.params.chunk_count() - self.have.count_ones();
        let in_flight = self
            .download
            .as_ref()
            .map_or(0, |download| download.requests_in_flight());
        (
            missing,
            in_flight,
            self.uploads.active.len(),
            self.uploads.queued(),
            self.uploads.slots(&self.config, self.params.chunk_size()),
        )
    }

    /// (links dialing, entries in the address book): for the simulator's
    /// traces.
    #[cfg(test)]
    pub(crate) fn dial_load(&self) -> (usize, usize) {
        let dialing = self
            .links
            .values()
            .filter(|link| matches!(link, Link::Dialing { .. }))
            .count();
        (dialing, self.book.len())
    }

    /// Every deadline the node has, in words: for the simulator's message
    /// when a wake-up does not move them.
    #[cfg(test)]
    pub(crate) fn debug_deadlines(&self, now: Instant) -> String {
        let config = &self.config;
        let links: Vec<String> = self
            .links
            .iter()
            .map(|(id, link)| match link {
                Link::Dialing { deadline, .. } => format!(
                    "{id:?} dialing {:?}",
                    deadline.saturating_duration_since(now)
                ),
                Link::Handshaking { deadline, .. } => {
                    format!("{id:?} hs {:?}", deadline.saturating_duration_since(now))
                }
                Link::Closing { deadline, .. } => format!(
                    "{id:?} closing {:?}",
                    deadline.saturating_duration_since(now)
                ),
                Link::Up(peer) => format!(
                    "{id:?} up ka {:?} watch {:?}",
                    (peer.last_sent + config.keep_alive_after).saturating_duration_since(now),
                    peer.upload_watch
                ),
            })
            .collect();
        format!(
            "links {links:?} ending {:?} connected {} wants {} dials {:?} book {:?} lookup {:?} download {:?} uploads {:?} starving {:?} wire {:?} overdue {:?} stop {:?}",
            self.ending,
            self.connected_count(),
            self.wants_peers(),
            self.next_dial_time()
                .map(|t| t.saturating_duration_since(now)),
            self.book
                .iter()
                .map(|(_, entry)| format!("{:?} {:?} {:?}", entry.source, entry.addrs, entry.state))
                .collect::<Vec<_>>(),
            self.next_lookup_time()
                .map(|t| t.saturating_duration_since(now)),
            self.download
                .as_ref()
                .map(|d| d.debug_deadlines(config, now)),
            self.uploads
                .next_deadline()
                .map(|t| t.saturating_duration_since(now)),
            self.uploads
                .next_starving(config.resend_after, now)
                .map(|t| t.saturating_duration_since(now)),
            self.uploads
                .next_wire_idle(now)
                .map(|t| t.saturating_duration_since(now)),
            self.uploads
                .next_overdue(now)
                .map(|t| t.saturating_duration_since(now)),
            self.stop_deadline
        )
    }

    /// Time passed: deadlines are checked, pipelines refilled, dials
    /// started, checkpoints and reports made when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timeout_steps(now);
        // A kept link deadline may be early (see `linkset`), and may have
        // been kept in the middle of the steps (a dial looked at the
        // links) before a step put one off: the next answer looks afresh,
        // so that it moves past `now`.
        self.links.changed();
    }

    fn timeout_steps(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.ending.is_some() {
            self.expire_links(now);
            if self
                .download
                .as_ref()
                .and_then(fetching::Fetching::verify_wait_deadline)
                .is_some_and(|until| until <= now)
            {
                self.last_checkpoint(now);
            }
            return;
        }
        if self.stop_deadline.is_some_and(|at| at <= now) {
            // The final checks did not end in time: stop without them (the
            // verified chunks are saved; the next run delivers).
            self.stop_deadline = None;
            self.end(End::Stopped, now);
            return;
        }
        self.expire_links(now);
        self.standing_timeout(now);
        self.punch_due(now);
        self.relay_timeout(now);
        self.keep_links_alive(now);
        self.watch_uploads(now);
        if self.sparing.is_some() {
            self.turn_away_held_back(now);
        }
        self.lookup_due(now);
        self.download_tick(now);
        self.start_uploads(now);
        self.exchange_peers(now);
        // Last: the steps above may have closed a link and made room.
        self.dial_due(now);
        if self.serve
            && self.download.is_none()
            && now.saturating_duration_since(self.last_serving_report)
                >= self.config.serving_report_every
        {
            self.last_serving_report = now;
            self.reports.push_back(NodeReport::Serving {
                peers: self.connected_count(),
                uploaded_bytes: self.uploads.uploaded_bytes,
            });
        }
    }

    /// The uploads this swarm would run now (under way and waiting, at
    /// most its own slots) and those under way: what it reports to the
    /// gate of an endpoint it shares with other swarms
    /// ([`crate::gate::Gate::set_upload_demand`]) whenever it changes.
    pub fn upload_demand(&self) -> crate::gate::UploadDemand {
        crate::gate::UploadDemand {
            wanted: self.uploads.demand(&self.config, self.params.chunk_size()),
            running: self.uploads.running(),
        }
    }

    /// Whether this swarm's download would fetch now: what it reports to
    /// the gate of an endpoint it shares with other swarms
    /// ([`crate::gate::Gate::set_download_demand`]).
    pub fn download_demand(&self) -> bool {
        self.download
            .as_ref()
            .is_some_and(fetching::Fetching::wants_bytes)
    }

    /// What the gate of an endpoint this swarm shares with others has not
    /// been told yet of its wants ([`Self::upload_demand`],
    /// [`Self::download_demand`]); `None` when nothing changed since the
    /// last call. The first call tells both.
    pub fn poll_gate_news(&mut self) -> Option<GateNews> {
        let upload = Some(self.upload_demand()).filter(|d| self.gate_told.0 != Some(*d));
        let download = Some(self.download_demand()).filter(|d| self.gate_told.1 != Some(*d));
        let own = crate::gate::OwnCaps {
            upload: self.config.max_upload,
            download: self.config.max_download,
        };
        let caps = Some(own).filter(|caps| self.gate_told.2 != Some(*caps));
        if upload.is_none() && download.is_none() && caps.is_none() {
            return None;
        }
        self.gate_told = (
            upload.or(self.gate_told.0),
            download.or(self.gate_told.1),
            caps.or(self.gate_told.2),
        );
        Some(GateNews {
            upload,
            download,
            caps,
        })
    }

    /// The limits it runs with now: its peer budget and its own caps.
    pub fn limits(&self) -> crate::config::NodeLimits {
        self.config.limits()
    }

    /// Changes its peer budget and its own caps while it runs, as
    /// quinn-proto's `Connection` changes its stream limits: a higher cap
    /// starts what waited for it at once, a lower one holds the next
    /// request or upload (those under way keep their pace); a lower peer
    /// budget lets no new peer in until fewer are connected (none is
    /// closed for it), a higher one dials and admits again. The gate of an
    /// endpoint it shares hears of its caps with its next news
    /// ([`Self::poll_gate_news`]). Refused, changing nothing, when a cap
    /// is below [`crate::config::MIN_RATE_CAP`].
    pub fn set_limits(
        &mut self,
        limits: crate::config::NodeLimits,
        now: Instant,
    ) -> Result<(), crate::config::ConfigError> {
        limits.validate()?;
        self.config.max_peers = limits.max_peers;
        self.config.max_upload = limits.max_upload;
        self.config.max_download = limits.max_download;
        if let Some(download) = &mut self.download {
            download.set_max_rate(limits.max_download, now);
        }
        self.drain_download(now);
        let faster = self.uploads.set_own_rate(limits.max_upload, now);
        if faster && self.serve && !self.winding_down() {
            self.start_uploads(now);
        }
        // The link summary's kept deadline counts dials against the budget.
        self.links.changed();
        Ok(())
    }

    /// What the endpoint's gate lets this swarm move (`None`: its own
    /// slots and caps alone decide): uploads at once, and its parts of the
    /// endpoint's upload and download caps, under its own `max_upload` and
    /// `max_download`. More slots start waiting uploads at once; fewer let
    /// those under way finish and start no new one until they are below
    /// them.
    pub fn set_share(&mut self, share: Option<crate::gate::Share>, now: Instant) {
        if let Some(fetching) = &mut self.download {
            fetching.set_shared_rate(share.and_then(|share| share.download), now);
        }
        self.drain_download(now);
        let grant = share.map(|share| share.slots);
        let more_slots = match (self.uploads.grant, grant) {
            (Some(old), Some(new)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.uploads.grant = grant;
        let faster = self
            .uploads
            .set_shared_rate(share.and_then(|share| share.rate), now);
        if (more_slots || faster) && self.serve && !self.ended {
            self.start_uploads(now);
        }
    }

    /// The share an endpoint's gate decided for this swarm in decision
    /// `generation` ([`crate::gate::Grants`]), taken unless a newer one was
    /// (decisions may reach a node out of order); whether it was taken.
    pub fn take_grant(&mut self, generation: u64, share: crate::gate::Share, now: Instant) -> bool {
        if self
            .grant_generation
            .is_some_and(|taken| generation <= taken)
        {
            return false;
        }
        self.grant_generation = Some(generation);
        self.set_share(Some(share), now);
        true
    }

    /// The node's work is over, or ends once its Goodbyes and last
    /// checkpoint are done (a stop, a failure, a delivery): it starts no
    /// new link, dialed or let in.
    fn winding_down(&self) -> bool {
        self.ended || self.stopping || self.ending.is_some()
    }

    /// The user stopped the node: Goodbye to every peer, a download's last
    /// checkpoint, then [`Action::End`] with [`End::Stopped`]. A download
    /// whose final checks run (or wait for a checkpoint) is let finish
    /// first, for at most `stop_wait`: it ends delivered, not interrupted.
    pub fn stop(&mut self, now: Instant) {
        if self.ended || self.stopping {
            return;
        }
        self.stopping = true;
        if self.is_finishing() {
            self.stop_deadline = Some(now + self.config.stop_wait);
            return;
        }
        self.end(End::Stopped, now);
    }

    /// The public address peers agree they see this node at, if they do
    /// (`crate::observed`).
    pub fn public_address(&self) -> Option<crate::observed::PublicAddress> {
        self.observed.public()
    }

    /// This node's id.
    pub fn local_id(&self) -> PeerId {
        self.local_id
    }

    /// The chunks this node has verified.
    pub fn have(&self) -> &HaveBitfield {
        &self.have
    }

    /// Connected peers.
    pub fn connected_count(&self) -> usize {
        self.links.summary(&self.config).counts.up
    }

    /// A snapshot of the node's counters (see [`NodeMetrics`]).
    pub fn metrics(&self) -> NodeMetrics {
        let mut metrics = NodeMetrics {
            peers_connected: self.connected_count() as u64,
            peers_banned: self.book.banned_count() as u64,
            addresses_known: self.book.address_count() as u64,
            artifact_bytes: self.params.artifact_bytes(),
            uploaded_bytes: self.uploads.uploaded_bytes,
            introductions: self.introductions,
            upload_cap: self.serve.then(|| self.uploads.rate_cap()).flatten(),
            download_cap: self.download.as_ref().and_then(|d| d.rate_cap()),
            ..NodeMetrics::default()
        };
        match &self.download {
            Some(download) => download.metrics(&mut metrics),
            None => {
                metrics.verified_bytes = self
                    .have
                    .iter_ones()
                    .filter_map(|chunk| self.params.chunk_len(chunk).ok())
                    .map(u64::from)
                    .sum();
            }
        }
        for (_, peer) in self.peers() {
            let link = Some(crate::report::LinkFigures {
                remote: peer.remote,
                dialed: peer.dialed,
                since: peer.connected_at,
            });
            match metrics.peers.iter_mut().find(|entry| entry.id == peer.id) {
                Some(entry) => {
                    entry.uploaded_bytes += peer.uploaded_bytes;
                    entry.link = entry.link.or(link);
                }
                None => metrics.peers.push(PeerFigures {
                    uploaded_bytes: peer.uploaded_bytes,
                    link,
                    ..PeerFigures::of(peer.id)
                }),
            }
        }
        metrics.chunk_map = self.chunk_map(crate::report::CHUNK_MAP_CELLS);
        metrics
            .peers
            .iter_mut()
            .for_each(|peer| self.describe(peer));
        metrics.mirrors = self.mirror_figures();
        metrics
    }

    /// Its chunks in at most `max_cells` cells: verified here, in
    /// flight, and how many connected peers hold each.
    pub fn chunk_map(&self, max_cells: usize) -> crate::report::ChunkMap {
        let mut holders = vec![0u32; self.params.chunk_count() as usize];
        for (_, peer) in self.peers() {
            for chunk in peer.has.iter_ones() {
                if let Some(count) = holders.get_mut(chunk.0 as usize) {
                    *count += 1;
                }
            }
        }
        let in_flight: Vec<u32> = self
            .download
            .as_ref()
            .map(|download| download.in_flight_chunks())
            .unwrap_or_default();
        crate::report::ChunkMap::of(&self.have, in_flight, &holders, max_cells)
    }

    /// Whether the node's work is over.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Remembers this download's peers across runs, starting from
    /// `before` (what earlier runs remembered, as read at the start): the
    /// fresh ones at `unix_now` (seconds since the Unix epoch) are dialed
    /// like offered peers, and [`Self::peers_to_remember`] merges this run's
    /// peers with the list.
    pub fn remember_peers_from(
        &mut self,
        before: Vec<crate::remembered::RememberedPeer>,
        unix_now: u64,
        now: Instant,
    ) {
        for peer in crate::remembered::fresh(&before, unix_now) {
            let known = KnownPeer {
                id: Some(peer.id),
                addrs: peer.addrs,
                source: Source::Remembered,
            };
            self.add_peer(known, now);
        }
        self.remembered = Some(before);
    }

    /// The list of peers to write now (at a checkpoint, at the delivery):
    /// what earlier runs remembered merged with this run's peers at
    /// `unix_now`; `None` when the node remembers nothing (a seeder).
    pub fn peers_to_remember(
        &self,
        unix_now: u64,
    ) -> Option<Vec<crate::remembered::RememberedPeer>> {
        use crate::remembered::{banned_in, from_transfers, merge};
        let before = self.remembered.as_ref()?;
        let (mut this_run, banned) = self
            .transfer()
            .map(|stats| (from_transfers(&stats, unix_now), banned_in(&stats)))
            .unwrap_or_default();
        // The address that answered first, then the peer's others: a LAN
        // address that answered this time is no use from elsewhere.
        for peer in &mut this_run {
            let Some(entry) = self
                .book
                .find_id(&peer.id)
                .and_then(|entry| self.book.get(entry))
            else {
                continue;
            };
            for addr in &entry.addrs {
                if !peer.addrs.contains(addr)
                    && crate::address::scope(*addr) != crate::address::Scope::Unusable
                {
                    peer.addrs.push(*addr);
                }
            }
            peer.addrs.truncate(crate::remembered::MAX_REMEMBERED_ADDRS);
        }
        Some(merge(before, &this_run, &banned, unix_now))
    }

    /// The download's statistics for a receipt: per peer id, what it
    /// delivered; `None` when the node does not download.
    pub fn transfer(&self) -> Option<TransferStats> {
        self.download.as_ref().map(|download| {
            let mut stats = download.stats();
            stats.peers.iter_mut().for_each(|peer| self.describe(peer));
            stats.mirrors = self.mirror_figures();
            stats
        })
    }

    /// Fills in what the address book knows of `peer`: where it was
    /// reached, how it became known, whether it is banned.
    fn describe(&self, peer: &mut PeerFigures) {
        let entry = self
            .book
            .find_id(&peer.id)
            .and_then(|entry| self.book.get(entry));
        peer.address = entry.and_then(|entry| entry.addrs.first().copied());
        peer.source = entry.map(|entry| entry.source);
        peer.banned = self.book.is_banned(&peer.id);
    }

    fn new_link(&mut self) -> LinkId {
        self.next_link += 1;
        LinkId(self.next_link)
    }

    fn peer(&self, link: LinkId) -> Option<&Peer> {
        match self.links.get(&link) {
            Some(Link::Up(peer)) => Some(peer),
            _ => None,
        }
    }

    fn peer_mut(&mut self, link: LinkId) -> Option<&mut Peer> {
        self.links.peer_mut(link)
    }

    fn peers(&self) -> impl Iterator<Item = (LinkId, &Peer)> {
        self.links.iter().filter_map(|(link, state)| match state {
            Link::Up(peer) => Some((*link, peer.as_ref())),
            _ => None,
        })
    }

    /// Queues a control message for a connected peer, after the control
    /// stream's rules (a message they forbid is a bug of ours: dropped).
    fn send(&mut self, link: LinkId, message: Message, now: Instant) {
        let Some(peer) = self.peer_mut(link) else {
            return;
        };
        if peer.leaving || peer.control.check_send(&message).is_err() {
            return;
        }
        peer.last_sent = now;
        self.actions.push_back(Action::Send { link, message });
    }

    /// A KeepAlive to every peer we said nothing to for
    /// `keep_alive_after`, so that neither side takes the other for gone.
    fn keep_links_alive(&mut self, now: Instant) {
        let quiet: Vec<LinkId> = self
            .peers()
            .filter(|(_, peer)| peer.last_sent + self.config.keep_alive_after <= now)
            .map(|(link, _)| link)
            .collect();
        for link in quiet {
            self.send(link, Message::KeepAlive, now);
        }
    }

    /// Ends the node's work: Goodbye to every peer (Done when the download
    /// is complete or there is none, Shutdown otherwise), the download's
    /// last checkpoint if it is not delivered, then [`Action::End`].
    fn end(&mut self, end: End, now: Instant) {
        if self.ended || self.ending.is_some() {
            return;
        }
        let done = match &end {
            End::Done => true,
            End::Stopped => self.download.as_ref().is_none_or(|d| d.is_complete()),
            End::Failed(_) => false,
        };
        let (reason, departure) = if done {
            (GoodbyeReason::Done, Departure::Done)
        } else {
            (GoodbyeReason::Shutdown, Departure::Shutdown)
        };
        let keys: Vec<LinkId> = self.links.keys().copied().collect();
        for link in keys {
            match self.links.get(&link) {
                Some(Link::Up(_)) => self.close_peer(link, reason, departure.clone(), now),
                Some(Link::Closing { .. }) => {}
                Some(_) => {
                    self.links.remove(&link);
                    self.actions.push_back(Action::Abort { link });
                }
                None => {}
            }
        }
        // Goodbyes get a shorter wait now: nothing else holds the node.
        let cap = now + self.config.goodbye_wait_at_end;
        for link in self.links.values_mut() {
            if let Link::Closing { deadline, .. } = link {
                *deadline = (*deadline).min(cap);
            }
        }
        // A download that is not delivered keeps what it verified: one last
        // checkpoint, then the end. Tried even after a storage failure: a
        // full disk that refused a chunk may still take the small state
        // file, which then lists every chunk that was written.
        let save = !matches!(end, End::Done)
            && self
                .download
                .as_ref()
                .is_some_and(|d| d.needs_last_checkpoint());
        self.ending = Some(end);
        if save {
            self.last_checkpoint(now);
        } else {
            self.try_finish_end();
        }
    }

    /// The end, once nothing more is to be saved and every Goodbye was
    /// acknowledged or given up on.
    pub(super) fn try_finish_end(&mut self) {
        if self.ending.is_none() {
            return;
        }
        let saving = self
            .download
            .as_ref()
            .is_some_and(|download| download.is_checkpointing());
        let closing = self
            .links
            .values()
            .any(|link| matches!(link, Link::Closing { .. }));
        if saving || closing {
            return;
        }
        if let Some(end) = self.ending.take() {
            self.ended = true;
            self.stop_deadline = None;
            self.actions.push_back(Action::End(end));
        }
    }
}

/// The end of a link, for [`NodeCore::handle_closed`].
pub type Ended = LinkEnd;

/// A known peer, for [`NodeCore::add_peer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// Its id, if known.
    pub id: Option<PeerId>,
    /// Where it may be reached.
    pub addrs: Vec<SocketAddr>,
    /// How it became known.
    pub source: Source,
}

impl KnownPeer {
    /// The peers offers name, one entry per id with all its addresses in
    /// the order given (so that the first dial may choose among them).
    pub fn offered(peers: &[minimodel_wire::PeerAddr]) -> Vec<KnownPeer> {
        let mut known: Vec<KnownPeer> = Vec::new();
        for peer in peers {
            match known.iter_mut().find(|k| k.id == Some(peer.id)) {
                Some(entry) if !entry.addrs.contains(&peer.addr) => entry.addrs.push(peer.addr),
                Some(_) => {}
                None => known.push(KnownPeer {
                    id: Some(peer.id),
                    addrs: vec![peer.addr],
                    source: Source::Offer,
                }),
            }
        }
        known
    }
}

/// Why a manifest does not define a swarm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmOfError {
    /// More chunks than the protocol counts.
    #[error("the chunk count does not fit the protocol")]
    ChunkCount,
    /// The geometry given is not the manifest's.
    #[error("the chunk geometry is not the manifest's")]
    Geometry,
    /// The geometry is not one the wire protocol carries.
    #[error(transparent)]
    Params(#[from] minimodel_wire::SwarmParamsError),
    /// The model id or root cannot be a swarm's.
    #[error(transparent)]
    Identity(#[from] minimodel_wire::FieldError),
}

/// The swarm a manifest defines: its model id, Merkle root and chunk
/// geometry, `geometry` (the manifest's own, or the lengths of its chunk
/// list when its scheme lists them: [`minimodel_verifier::ChunkGeometry`]).
pub fn swarm_of(
    manifest: &minimodel_verifier::manifest::Manifest,
    geometry: &minimodel_verifier::ChunkGeometry,
) -> Result<SwarmIdentity, SwarmOfError> {
    let chunk_count =
        u32::try_from(manifest.chunks.chunk_count).map_err(|_| SwarmOfError::ChunkCount)?;
    if geometry.chunk_count() != chunk_count
        || geometry.artifact_bytes() != manifest.artifact_bytes
        || geometry.chunk_size() != manifest.chunks.chunk_size
        || geometry.is_listed() != manifest.chunks.scheme.is_listed()
    {
        return Err(SwarmOfError::Geometry);
    }
    let params = if geometry.is_listed() {
        minimodel_wire::SwarmParams::listed(
            manifest.artifact_bytes,
            manifest.chunks.chunk_size,
            geometry.lengths(),
        )?
    } else {
        minimodel_wire::SwarmParams::new(
            manifest.artifact_bytes,
            manifest.chunks.chunk_size,
            chunk_count,
        )?
    };
    Ok(SwarmIdentity::new(
        manifest.model_id.as_str(),
        manifest.chunks.merkle_root.0,
        params,
    )?)
}
