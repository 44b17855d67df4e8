//! Unit tests of [`NodeCore`]: every decision, driven by hand on a virtual
//! clock (a base [`Instant`] plus offsets; nothing sleeps). Handshakes run
//! through two real control streams ([`crate::testing::handshake`]).
//!
//! The [`Harness`] only moves time through [`Harness::advance`], which calls
//! `handle_timeout` exactly at each `poll_timeout` and checks, every time,
//! that the deadline is not in the past and that the call made progress
//! (the next deadline is later): a busy loop fails every test.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, GoodbyeReason, HaveBitfield, Message, PeerId, SwarmIdentity};

use super::{Action, End, Incoming, KnownPeer, NodeCore, NodeStart};
use crate::book::Source;
use crate::config::NodeConfig;
use crate::ids::LinkId;
use crate::node::fetching::{PieceVerdict, VerifyOutcome};
use crate::report::NodeReport;
use crate::testing::{self, Side};

mod admission;
mod dialing;
mod downloading;
mod ending;
mod exchange;
mod limits;
mod slots;
mod standing;
mod traversal;
mod uploads;

/// Chunk size of every test swarm.
const CHUNK: u32 = 1 << 20;
/// Where peers see the node under test.
const OUR_ADDR: &str = "81.0.0.1:4433";
/// Where the node under test listens on its own LAN (behind its router at
/// `OUR_ADDR`).
const OUR_LAN_ADDR: &str = "192.168.7.2:4433";
/// SHA-256 of the manifest the node under test hands out.
/// The manifest a serving test node hands to manifest queries.
const MANIFEST: &[u8] = b"a manifest's bytes";

fn manifest_sha256() -> [u8; 32] {
    minimodel_verifier::Sha256Digest::of(MANIFEST).0
}

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// What the node under test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Serves every chunk, downloads nothing, listens.
    Seeder,
    /// Downloads, does not serve or listen (a plain `fetch`).
    Fetch,
    /// Downloads and serves, listens (`fetch --serve`).
    ServingFetch,
}

/// A remote peer, as the tests describe it.
#[derive(Debug, Clone)]
struct Remote {
    id: PeerId,
    addr: SocketAddr,
    has: HaveBitfield,
    serving: bool,
    /// Where its Hello says it listens, if it does.
    listen: Option<SocketAddr>,
    /// The LAN addresses its Hello lists.
    lan: Vec<SocketAddr>,
    /// Where its Hello says it sees us.
    observed: Option<SocketAddr>,
    /// The wire protocol version its connection speaks.
    version: u16,
}

impl Remote {
    /// A seeder: every chunk, serving, listening at its port.
    fn seeder(n: u8, addr: &str, chunks: u32) -> Self {
        let addr = sa(addr);
        Self {
            id: testing::peer_id(n),
            addr,
            has: HaveBitfield::full(chunks),
            serving: true,
            listen: Some(addr),
            lan: Vec::new(),
            observed: None,
            version: minimodel_wire::PROTOCOL_VERSION,
        }
    }

    /// A plain fetcher: nothing, not serving, not listening.
    fn fetcher(n: u8, addr: &str, chunks: u32) -> Self {
        Self {
            id: testing::peer_id(n),
            addr: sa(addr),
            has: HaveBitfield::new(chunks),
            serving: false,
            listen: None,
            lan: Vec::new(),
            observed: None,
            version: minimodel_wire::PROTOCOL_VERSION,
        }
    }

    /// The same peer, of a build that speaks protocol v2 only.
    fn speaking_v2(mut self) -> Self {
        self.version = 2;
        self
    }

    /// A serving peer that lacks the last chunk (a seeder closes its links
    /// to seeds).
    fn lacking_last(mut self) -> Self {
        let last = self.has.chunk_count() - 1;
        self.has.set(ChunkIndex(last), false).expect("in range");
        self
    }

    fn with_chunks(mut self, chunks: &[u32]) -> Self {
        let mut has = HaveBitfield::new(self.has.chunk_count());
        for &chunk in chunks {
            has.set(ChunkIndex(chunk), true).expect("in range");
        }
        self.has = has;
        self
    }

    fn side(&self, swarm: &SwarmIdentity) -> Side {
        let swarm = swarm.clone().with_version(self.version);
        let mut hello = testing::hello(&swarm, self.serving, self.listen);
        hello.lan = self.lan.clone();
        hello.observed = self.observed;
        Side {
            id: self.id,
            addr: self.addr,
            hello,
            have: self.has.clone(),
        }
    }
}

/// A node under test and its clock.
struct Harness {
    core: NodeCore,
    swarm: SwarmIdentity,
    base: Instant,
    now: Instant,
    /// Actions taken out of the core and not yet handed to the test.
    pending: Vec<Action>,
    /// Every action, with the time it was taken out of the core.
    history: Vec<(Instant, Action)>,
    reports: Vec<NodeReport>,
}

impl Harness {
    fn new(kind: Kind, chunks: u32, config: NodeConfig) -> Self {
        let have = match kind {
            Kind::Seeder => HaveBitfield::full(chunks),
            _ => HaveBitfield::new(chunks),
        };
        Self::with_start(kind, chunks, config, have, false)
    }

    fn with_start(
        kind: Kind,
        chunks: u32,
        config: NodeConfig,
        have: HaveBitfield,
        seed_after: bool,
    ) -> Self {
        Self::with_mirrors(kind, chunks, config, have, seed_after, Vec::new())
    }

    fn with_mirrors(
        kind: Kind,
        chunks: u32,
        config: NodeConfig,
        have: HaveBitfield,
        seed_after: bool,
        mirrors: Vec<String>,
    ) -> Self {
        Self::with_edited_start(kind, chunks, config, have, seed_after, mirrors, |_| {})
    }

    /// [`Self::with_mirrors`], its start changed by `edit` first.
    fn with_edited_start(
        kind: Kind,
        chunks: u32,
        config: NodeConfig,
        have: HaveBitfield,
        seed_after: bool,
        mirrors: Vec<String>,
        edit: impl FnOnce(&mut NodeStart),
    ) -> Self {
        config.validate().expect("a valid test config");
        let swarm = testing::swarm(CHUNK, chunks);
        let base = Instant::now();
        let mut start = NodeStart {
            discovery: false,
            neighbours: false,
            swarm: swarm.clone(),
            local_id: testing::peer_id(200),
            serve: kind != Kind::Fetch,
            listen: (kind != Kind::Fetch).then(|| sa(OUR_ADDR)),
            agent: "netsim/1".into(),
            have,
            download: kind != Kind::Seeder,
            seed_after,
            seed: 1,
            manifest: Some(std::sync::Arc::from(MANIFEST)),
            chunk_list: None,
            lan: vec![sa(OUR_LAN_ADDR)],
            peers: Vec::new(),
            mirrors,
            prefixes: Default::default(),
        };
        edit(&mut start);
        Self {
            core: NodeCore::new(config, start, base),
            swarm,
            base,
            now: base,
            pending: Vec::new(),
            history: Vec::new(),
            reports: Vec::new(),
        }
    }

    /// `millis` after the start.
    fn at(&self, millis: u64) -> Instant {
        self.base + ms(millis)
    }

    /// Milliseconds since the start.
    fn elapsed(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    fn collect(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.history.push((self.now, action.clone()));
            self.pending.push(action);
        }
        while let Some(report) = self.core.poll_report() {
            self.reports.push(report);
        }
    }

    /// The actions since the last call.
    fn take(&mut self) -> Vec<Action> {
        self.collect();
        std::mem::take(&mut self.pending)
    }

    /// The reports since the last call.
    fn take_reports(&mut self) -> Vec<NodeReport> {
        self.collect();
        std::mem::take(&mut self.reports)
    }

    /// Moves the clock to `millis`, calling `handle_timeout` at every
    /// deadline on the way (see the module docs for what is checked).
    fn advance(&mut self, millis: u64) {
        let to = self.at(millis);
        assert!(to >= self.now, "time runs forward");
        // What the test's own inputs produced happened now.
        self.collect();
        let mut calls = 0;
        while let Some(deadline) = self.core.poll_timeout(self.now) {
            assert!(
                deadline >= self.now,
                "poll_timeout is {} ms in the past at {} ms",
                self.elapsed(self.now) - self.elapsed(deadline),
                self.elapsed(self.now)
            );
            if deadline > to {
                break;
            }
            self.now = deadline;
            self.core.handle_timeout(deadline);
            self.collect();
            if let Some(next) = self.core.poll_timeout(deadline) {
                assert!(
                    next > deadline,
                    "handle_timeout at {} ms left its deadline where it was: a busy loop",
                    self.elapsed(deadline)
                );
            }
            calls += 1;
            assert!(calls < 1_000_000, "too many wake-ups");
        }
        self.now = to;
    }

    /// Our Hello and bitfield, as a peer at `remote` sees them.
    fn our_side(&self, remote: SocketAddr) -> Side {
        Side {
            id: self.core.local_id(),
            addr: sa(OUR_ADDR),
            hello: self.core.hello_to(remote),
            have: self.core.advertised_have(),
        }
    }

    /// An incoming connection from `remote`, accepted, admitted and up.
    fn connect_in(&mut self, remote: &Remote) -> LinkId {
        let link = match self.core.handle_incoming(remote.addr, true, self.now) {
            Incoming::Accept { link, .. } => link,
            other => panic!("{} was not accepted: {other:?}", remote.addr),
        };
        self.hello_in(link, remote).expect("admitted");
        link
    }

    /// The Hello of an accepted incoming link; when admitted, the link
    /// comes up.
    fn hello_in(&mut self, link: LinkId, remote: &Remote) -> Result<(), super::Rejection> {
        let theirs = remote.side(&self.swarm);
        // As the driver asks: the dialer's first message.
        let first = super::First::Hello(theirs.hello.clone());
        let (hello, have) = match self.core.handle_first(link, remote.id, &first, self.now) {
            super::Answer::Admit(hello, have) => (hello, have),
            super::Answer::Refuse(rejection) => return Err(rejection),
            other => panic!("a Hello answered with {other:?}"),
        };
        let mut ours = self.our_side(remote.addr);
        ours.hello = hello;
        // As the driver writes it: the connection's version.
        ours.hello.protocol_version = remote.version;
        ours.have = have;
        let swarm = self.swarm.clone().with_version(remote.version);
        let (_, up) = testing::handshake(&swarm, &theirs, &ours);
        self.core.handle_link_up(link, up, self.now);
        Ok(())
    }

    /// A dial of ours (`link`) reached `remote`: the link comes up.
    fn dial_up(&mut self, link: LinkId, remote: &Remote) {
        let mut ours = self.our_side(remote.addr);
        ours.hello.protocol_version = remote.version;
        let swarm = self.swarm.clone().with_version(remote.version);
        let (up, _) = testing::handshake(&swarm, &ours, &remote.side(&self.swarm));
        self.core.handle_link_up(link, up, self.now);
    }

    /// Tells the node of `remote` (an offer) and brings up the dial it
    /// starts at once.
    fn connect_out(&mut self, remote: &Remote) -> LinkId {
        self.core.add_peer(
            KnownPeer {
                id: Some(remote.id),
                addrs: vec![remote.addr],
                source: Source::Offer,
            },
            self.now,
        );
        let actions = self.take();
        let link = dials(&actions)
            .into_iter()
            .find(|dial| dial.addr == remote.addr)
            .map(|dial| dial.link)
            .expect("a dial to the new peer");
        self.pending = actions;
        self.pending
            .retain(|action| !matches!(action, Action::Dial { link: l, .. } if *l == link));
        self.dial_up(link, remote);
        link
    }

    /// A piece from `link` arrives whole and is handed to verification.
    fn arrive(&mut self, link: LinkId, chunk: u32) -> ChunkIndex {
        let chunk = ChunkIndex(chunk);
        assert_eq!(
            self.core
                .handle_piece_header(link, chunk, 0, Duration::ZERO, self.now),
            PieceVerdict::Accept,
            "header of chunk {}",
            chunk.0
        );
        assert_eq!(
            self.core.handle_piece_arrived(link, chunk, self.now),
            PieceVerdict::Accept,
            "end of chunk {}",
            chunk.0
        );
        chunk
    }

    /// A piece from `link` arrives whole and is verified and stored.
    fn deliver(&mut self, link: LinkId, chunk: u32) {
        let chunk = self.arrive(link, chunk);
        self.core
            .handle_verified(link, chunk, VerifyOutcome::Stored, self.now);
    }

    /// A piece from `link` arrives whole and fails its proof.
    fn deliver_bad(&mut self, link: LinkId, chunk: u32) {
        let chunk = self.arrive(link, chunk);
        self.core.handle_verified(
            link,
            chunk,
            VerifyOutcome::Bad(minimodel_verifier::chunk::ChunkError::Proof(
                minimodel_verifier::merkle::ProofError::RootMismatch { index: 0 },
            )),
            self.now,
        );
    }

    fn is_connected(&self, link: LinkId) -> bool {
        self.core.peer(link).is_some()
    }
}

/// A Dial action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dial {
    link: LinkId,
    addr: SocketAddr,
    /// The id the dial must prove, if known.
    peer: Option<PeerId>,
    deadline: Instant,
}

fn dials(actions: &[Action]) -> Vec<Dial> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Dial {
                link,
                addr,
                peer,
                deadline,
                ..
            } => Some(Dial {
                link: *link,
                addr: *addr,
                peer: *peer,
                deadline: *deadline,
            }),
            _ => None,
        })
        .collect()
}

/// The peers told to `to` in Peers messages, in order.
fn told(actions: &[Action], to: LinkId) -> Vec<minimodel_wire::PeerEntry> {
    messages_to(actions, to)
        .into_iter()
        .flat_map(|message| match message {
            Message::Peers { entries } => entries,
            _ => Vec::new(),
        })
        .collect()
}

fn messages_to(actions: &[Action], to: LinkId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { link, message } if *link == to => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Requests sent, in order: (link, chunk).
fn requests(actions: &[Action]) -> Vec<(LinkId, u32)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send {
                link,
                message: Message::Request { chunk },
            } => Some((*link, chunk.0)),
            _ => None,
        })
        .collect()
}

/// The RequestFroms sent among `actions`: to whom, which chunk, from where.
fn requests_from(actions: &[Action]) -> Vec<(LinkId, u32, u32)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send {
                link,
                message: Message::RequestFrom { chunk, from },
            } => Some((*link, chunk.0, *from)),
            _ => None,
        })
        .collect()
}

fn requests_to(actions: &[Action], to: LinkId) -> Vec<u32> {
    requests(actions)
        .into_iter()
        .filter(|(link, _)| *link == to)
        .map(|(_, chunk)| chunk)
        .collect()
}

fn closes(actions: &[Action]) -> Vec<(LinkId, GoodbyeReason)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Close { link, reason } => Some((*link, *reason)),
            _ => None,
        })
        .collect()
}

fn aborts(actions: &[Action]) -> Vec<LinkId> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Abort { link } => Some(*link),
            _ => None,
        })
        .collect()
}

fn uploads(actions: &[Action]) -> Vec<(LinkId, u32)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Upload { link, chunk, .. } => Some((*link, chunk.0)),
            _ => None,
        })
        .collect()
}

fn ends(actions: &[Action]) -> Vec<super::End> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::End(outcome) => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

/// The ends among `actions`, after the driver's part: a download that
/// ends asks for its last checkpoint first, and the end waits for the
/// Goodbyes, which are answered here (the checkpoint written, every
/// Goodbye acknowledged).
/// What a write to a full disk reports.
fn disk_full() -> crate::report::Fault {
    crate::report::Fault::new(std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        "no space left on device",
    ))
}

fn ends_after_saving(h: &mut Harness, actions: &[Action]) -> Vec<End> {
    let mut ended = ends(actions);
    if actions
        .iter()
        .any(|action| matches!(action, Action::Checkpoint { .. }))
    {
        h.core.handle_checkpointed(Ok(()), h.now);
    }
    for (link, _) in closes(actions) {
        h.core
            .handle_closed(link, crate::report::LinkEnd::ClosedByPeer, h.now);
    }
    ended.extend(ends(&h.take()));
    ended
}

/// The IP of a socket address.
fn ip(addr: &str) -> IpAddr {
    sa(addr).ip()
}

#[test]
fn an_idle_seeder_without_peers_asks_for_no_wake_up() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    assert_eq!(h.core.poll_timeout(h.now), None);
    h.advance(60_000);
    assert_eq!(h.core.poll_timeout(h.now), None);
    assert!(h.take().is_empty());
}

#[test]
fn a_fetch_without_peers_wakes_only_to_report_and_to_give_up() {
    let config = NodeConfig {
        give_up_after: Duration::from_secs(10),
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Fetch, 8, config);
    let first = h
        .core
        .poll_timeout(h.now)
        .expect("progress reports are due");
    assert!(first > h.now);
    h.advance(10_000);
    let actions = h.take();
    match ends_after_saving(&mut h, &actions).as_slice() {
        [
            super::End::Failed(crate::report::Failure::NoPeers {
                missing: 8,
                total: 8,
                tried,
                mirrors,
            }),
        ] => {
            assert!(tried.is_empty(), "{tried:?}");
            assert!(mirrors.is_empty(), "{mirrors:?}");
        }
        other => panic!("ended with {other:?}"),
    }
    assert_eq!(h.core.poll_timeout(h.now), None, "an ended node sleeps");
}

/// A fetch whose only mirror has left: with `edit` applied to its start.
/// Returns how it ended by `millis` after the mirror left, if it did.
fn mirror_gone(millis: u64, edit: impl FnOnce(&mut NodeStart)) -> Vec<super::End> {
    let config = NodeConfig::default();
    let mirrors = vec!["https://mirror.example/m.slm".to_owned()];
    let mut h = Harness::with_edited_start(
        Kind::Fetch,
        8,
        config,
        HaveBitfield::new(8),
        false,
        mirrors,
        edit,
    );
    h.core.handle_mirror_failed(
        crate::mirror::MirrorId(0),
        None,
        crate::mirror::MirrorFailure::Unusable(crate::mirror::MirrorUnusable::NoChunkList {
            reason: "the mirror answered 404".into(),
        }),
        h.now,
    );
    h.advance(millis);
    let actions = h.take();
    ends_after_saving(&mut h, &actions)
}

#[test]
fn a_fetch_whose_only_source_was_a_mirror_ends_once_the_mirror_has_left() {
    let progress_every = NodeConfig::default().progress_every.as_millis() as u64;
    let ended = mirror_gone(progress_every, |_| {});
    let [super::End::Failed(failure)] = ended.as_slice() else {
        panic!("ended with {ended:?}, not at the first tick after its only mirror left");
    };
    let text = failure.to_string();
    assert!(
        text.contains("mirror https://mirror.example/m.slm: not used"),
        "{text}"
    );
    assert!(text.contains("404"), "{text}");
}

#[test]
fn a_fetch_that_may_still_hear_of_peers_waits_for_them_when_its_mirror_has_left() {
    let give_up = NodeConfig::default().give_up_after.as_millis() as u64;
    type Edit = Box<dyn FnOnce(&mut NodeStart)>;
    let cases: [(&str, Edit); 4] = [
        (
            "a peer named",
            Box::new(|start| {
                start.peers = vec![minimodel_wire::PeerAddr {
                    id: testing::peer_id(1),
                    addr: sa("62.1.1.1:4433"),
                }]
            }),
        ),
        ("DHT lookups", Box::new(|start| start.discovery = true)),
        (
            "neighbours on the LAN",
            Box::new(|start| start.neighbours = true),
        ),
        (
            "listening",
            Box::new(|start| start.listen = Some(sa(OUR_ADDR))),
        ),
    ];
    for (what, edit) in cases {
        let ended = mirror_gone(give_up - 1_000, edit);
        assert!(
            ended.is_empty(),
            "with {what}: ended with {ended:?} before give_up_after"
        );
    }
}

#[test]
fn a_fetch_whose_only_mirror_was_not_usable_gives_up_naming_the_mirror() {
    let config = NodeConfig {
        give_up_after: Duration::from_secs(10),
        ..NodeConfig::default()
    };
    let mirrors = vec!["https://mirror.example/m.slm".to_owned()];
    let mut h = Harness::with_mirrors(Kind::Fetch, 8, config, HaveBitfield::new(8), false, mirrors);
    h.core.handle_mirror_failed(
        crate::mirror::MirrorId(0),
        None,
        crate::mirror::MirrorFailure::Unusable(crate::mirror::MirrorUnusable::NoChunkList {
            reason: "the mirror answered 403".into(),
        }),
        h.now,
    );
    h.advance(10_000);
    let actions = h.take();
    let ended = ends_after_saving(&mut h, &actions);
    let [super::End::Failed(failure)] = ended.as_slice() else {
        panic!("ended with {ended:?}");
    };
    let text = failure.to_string();
    assert!(
        text.starts_with("no peer or mirror could deliver the missing chunks (8 of 8 missing)"),
        "{text}"
    );
    assert!(
        text.contains("mirror https://mirror.example/m.slm: not used: no chunk list"),
        "{text}"
    );
    assert!(text.contains("403"), "{text}");
}
