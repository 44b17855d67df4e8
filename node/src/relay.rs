//! [`RelayCore`]: every decision of a relay (`minimodel relay`,
//! `docs/relay.md`), sans-IO, beside [`crate::NodeCore`].
//!
//! A relay lets in QUIC connections within its handshake limits
//! ([`RelayCore::handle_incoming`]) and keeps those that came up within
//! its limits on connections not registered yet, registers the nodes that
//! may register ([`RelayConfig::allow`], at most
//! [`RelayConfig::max_registrations`]), introduces two registered nodes to
//! each other on a channel ([`RelayMessage::Introduce`], at most
//! [`RelayConfig::max_pairs`] pairs and [`RelayConfig::max_pairs_per_node`]
//! per node, at most [`RelayConfig::introductions_per_minute`] asked by a
//! node), and decides
//! for every relay datagram whether it goes on and where
//! ([`RelayCore::handle_datagram`]): only from one end of a channel to the
//! other, within the pair's rate ([`RelayConfig::pair_rate`]) and its
//! bytes for the hour ([`RelayConfig::pair_bytes_per_hour`]). The driver
//! moves packets and keeps the connections; it decides nothing: not even
//! when a node that does not read its control stream goes
//! ([`RelayCore::handle_written`]), nor when a connection that is being
//! closed has waited long enough ([`CLOSE_GRACE`]).
//!
//! It is shared among hosts, not identities: a peer id costs nothing to
//! make, so every limit on what one source may hold counts by its network
//! ([`Prefix::site`]: an IPv4 /24, an IPv6 /56), whatever ids come from
//! it: handshakes in progress, connections up but not registered,
//! registrations and pairs. One host, or one network, holds at most its
//! share of each, and a node from elsewhere still gets in.
//!
//! Invariants:
//! - a datagram goes on only from the address a registered node's
//!   connection comes from, on a channel the relay opened between it and
//!   another registered node, to that node's address, as it is (one
//!   datagram out per datagram in, the same size): the relay is no open
//!   proxy and no amplifier;
//! - what it holds is bounded whatever arrives: connections (handshakes,
//!   connections not registered yet, registrations), channels, the pairs'
//!   hourly counts, the
//!   messages it queues (at most one answer per message received, and
//!   [`MAX_QUEUED`] in all, besides one close of each connection and the
//!   notices of a channel's end to its two nodes; the driver takes them
//!   after every input), and
//!   the frames waiting to be written to each connection (at most
//!   [`OUTBOX_FRAMES`], none waiting longer than [`WRITE_STALL`]);
//! - no network holds more than its share: at most
//!   [`RelayConfig::max_handshakes_per_network`] handshakes,
//!   [`RelayConfig::max_unregistered_per_network`] connections not
//!   registered, [`RelayConfig::max_registrations_per_network`]
//!   registrations and [`RelayConfig::max_pairs_per_network`] pairs with a
//!   node in it (the counts per network are kept with every change, and
//!   checked against the connections in the tests).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;
use minimodel_wire::relay::{
    ChannelEnd, ConnectRole, IntroduceRefusal, MAX_REGISTER_ADDRS, MAX_RELAY_CONNECT_ADDRS,
    MappingKind, RegisterRefusal, RelayLimits, RelayMessage,
};
use serde::Serialize;

use crate::address::{Prefix, canonical};
use crate::rng::SplitMix64;
use crate::upload::TokenBucket;

/// What the relay's operator allows (`minimodel relay`'s flags). Every
/// default is documented; [`RelayConfig::validate`] refuses what cannot
/// work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Bytes per second one pair may send through the relay, both ways
    /// together (0: no cap). Default 2.5 MB/s (20 Mbit/s).
    pub pair_rate: u64,
    /// Bytes one pair may send through the relay in an hour (0: no cap).
    /// Default 4 GiB.
    pub pair_bytes_per_hour: u64,
    /// Pairs it carries at once. Default 256.
    pub max_pairs: usize,
    /// Pairs one node may be in at once. Default 32.
    pub max_pairs_per_node: usize,
    /// Pairs with a node of one network (an IPv4 /24, an IPv6 /56) at
    /// once. Default 32: an eighth of the pairs, and at the default
    /// `pair_rate` 80 MB/s, more than a home's uplink feeds.
    pub max_pairs_per_network: usize,
    /// Nodes registered at once. Default 1024.
    pub max_registrations: usize,
    /// Nodes registered at once from one network (an IPv4 /24, an IPv6
    /// /56), whatever their ids. Default 16: a household of a few nodes,
    /// or a few behind one carrier-grade NAT, get in; one host holds at
    /// most 1.6 % of the default 1024.
    pub max_registrations_per_network: usize,
    /// Who may register: these peer ids only, or anyone (`None`, the
    /// default).
    pub allow: Option<BTreeSet<PeerId>>,
    /// Introductions one node may ask for a minute (and at once). Default
    /// 120.
    pub introductions_per_minute: u32,
    /// A channel nothing went through for this long ends. Default 60 s.
    pub channel_idle: Duration,
    /// Handshakes in progress at once, over all sources. Default 64.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one network (an IPv4 /24, an
    /// IPv6 /56). Default 8.
    pub max_handshakes_per_network: usize,
    /// Connections up but not registered yet, over all sources. Default
    /// 256 (each holds a QUIC connection's state, about 60 KB: 15 MB in
    /// all).
    pub max_unregistered: usize,
    /// Connections up but not registered yet from one network. Default 8.
    pub max_unregistered_per_network: usize,
    /// A connection that has not registered this long after it came up
    /// is closed. Default 10 s.
    pub register_within: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            pair_rate: 2_500_000,
            pair_bytes_per_hour: 4 << 30,
            max_pairs: 256,
            max_pairs_per_node: 32,
            max_pairs_per_network: 32,
            max_registrations: 1024,
            max_registrations_per_network: 16,
            allow: None,
            introductions_per_minute: 120,
            channel_idle: Duration::from_secs(60),
            max_handshakes: 64,
            max_handshakes_per_network: 8,
            max_unregistered: 256,
            max_unregistered_per_network: 8,
            register_within: Duration::from_secs(10),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relay setting {setting}: {rule}")]
pub struct RelayConfigError {
    /// Which.
    pub setting: &'static str,
    /// What it must be.
    pub rule: &'static str,
}

impl RelayConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), RelayConfigError> {
        let refuse = |setting, rule| Err(RelayConfigError { setting, rule });
        if self.max_registrations < 2 {
            return refuse("max_registrations", "at least 2 (a pair)");
        }
        if self.max_registrations_per_network == 0 {
            return refuse("max_registrations_per_network", "at least 1");
        }
        if self.max_pairs == 0 || self.max_pairs_per_node == 0 || self.max_pairs_per_network == 0 {
            return refuse("max_pairs", "at least 1");
        }
        if self.introductions_per_minute == 0 {
            return refuse("introductions_per_minute", "at least 1");
        }
        if self.max_handshakes == 0 || self.max_handshakes_per_network == 0 {
            return refuse("max_handshakes", "at least 1");
        }
        if self.max_unregistered == 0 || self.max_unregistered_per_network == 0 {
            return refuse("max_unregistered", "at least 1");
        }
        if self.channel_idle < Duration::from_secs(5)
            || self.channel_idle > Duration::from_secs(3600)
        {
            return refuse("channel_idle", "5 s to 1 h");
        }
        if self.pair_rate != 0 && self.pair_rate < 16 * 1024 {
            return refuse("pair_rate", "0 (no cap) or at least 16 KiB/s");
        }
        Ok(())
    }

    /// What [`RelayMessage::Registered`] tells a node.
    pub fn limits(&self) -> RelayLimits {
        RelayLimits {
            pair_rate: self.pair_rate,
            pair_bytes_per_hour: self.pair_bytes_per_hour,
            channel_idle_secs: self.channel_idle.as_secs() as u32,
        }
    }
}

/// Most messages the relay queues before the driver takes them.
pub const MAX_QUEUED: usize = 4096;

/// Frames handed to the driver for one connection and not written yet,
/// at most: a node that does not read its control stream is closed
/// ([`RelayAction::Abort`]) rather than sent one more.
pub const OUTBOX_FRAMES: usize = 64;

/// How long one frame may wait to be written, for the node's flow control
/// credit: a node that gives none for this long does not read, and is
/// closed whether or not frames pile up behind the one that waits (a
/// connection's driver that waits to write reads nothing more from the
/// node, so it may never be sent enough to fill [`OUTBOX_FRAMES`]).
pub const WRITE_STALL: Duration = Duration::from_secs(5);

/// How long a connection the relay closes ([`RelayAction::Close`]) has to
/// write what waits for it (a refusal, say) before it is closed whatever
/// it waits for ([`RelayAction::Abort`]): the driver's writes may wait for
/// flow control credit that a node that does not read never gives.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Pairs whose hourly bytes are remembered, per pair the relay carries.
const HOURS_PER_PAIR: usize = 4;

/// How long an hour is.
const HOUR: Duration = Duration::from_secs(3600);

/// A connection, as the driver numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the first packet of a new connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayIncoming {
    /// Take it: its handshake holds a place until it ends.
    Accept(ConnId),
    /// Ask it to prove its address first (a stateless Retry).
    Retry,
    /// Refuse it.
    Refuse,
}

/// What happens to a relay datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Send it, as it is, to this address.
    To(SocketAddr),
    /// Drop it.
    Drop(DropReason),
}

/// Why a relay datagram is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// No channel by that number.
    UnknownChannel,
    /// It came from neither end of its channel.
    NotAnEnd,
    /// Over the pair's rate.
    RateLimited,
    /// Over the pair's bytes for the hour.
    HourUsed,
}

/// Which limit turned something away: a handshake, a connection that came
/// up, a registration or an introduction (`relay-stats` counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayRefusal {
    /// A handshake beyond [`RelayConfig::max_handshakes`].
    Handshakes,
    /// A handshake beyond [`RelayConfig::max_handshakes_per_network`].
    NetworkHandshakes,
    /// A connection up beyond [`RelayConfig::max_unregistered`].
    Unregistered,
    /// A connection up beyond [`RelayConfig::max_unregistered_per_network`].
    NetworkUnregistered,
    /// A registration of a peer [`RelayConfig::allow`] leaves out.
    NotAllowed,
    /// A registration beyond [`RelayConfig::max_registrations`].
    Registrations,
    /// A registration beyond [`RelayConfig::max_registrations_per_network`].
    NetworkRegistrations,
    /// An introduction beyond [`RelayConfig::introductions_per_minute`].
    IntroductionRate,
    /// An introduction beyond [`RelayConfig::max_pairs`].
    Pairs,
    /// An introduction beyond [`RelayConfig::max_pairs_per_node`].
    NodePairs,
    /// An introduction beyond [`RelayConfig::max_pairs_per_network`].
    NetworkPairs,
    /// An introduction of a pair that used its bytes for the hour.
    PairHour,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Send a message on a connection's control stream.
    Send {
        /// Which connection.
        conn: ConnId,
        /// What.
        message: RelayMessage,
    },
    /// Close a connection (after what was sent on it goes out). Unless
    /// its end is reported ([`RelayCore::handle_closed`]) within
    /// [`CLOSE_GRACE`], an [`RelayAction::Abort`] follows.
    Close {
        /// Which.
        conn: ConnId,
        /// Why, for the close frame and the log.
        reason: &'static str,
    },
    /// Close a connection at once, whatever waits to be written on it: it
    /// does not read what the relay sends, or a close took longer than
    /// [`CLOSE_GRACE`].
    Abort {
        /// Which.
        conn: ConnId,
        /// Why, for the close frame and the log.
        reason: &'static str,
    },
}

/// What a relay tells its operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RelayReport {
    /// A node registered.
    Registered {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Where its connection comes from.
        addr: SocketAddr,
    },
    /// A node could not register.
    RegisterRefused {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Where it came from.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A node's registration ended.
    Left {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
    },
    /// Two nodes were introduced on a channel.
    Introduced {
        /// The asker.
        #[serde(serialize_with = "display")]
        asker: PeerId,
        /// The other.
        #[serde(serialize_with = "display")]
        target: PeerId,
        /// Their channel.
        channel: u64,
    },
    /// A channel ended.
    ChannelClosed {
        /// Which.
        channel: u64,
        /// Why.
        reason: String,
        /// Bytes it carried.
        bytes: u64,
    },
}

fn display<S: serde::Serializer>(value: &PeerId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What the relay has done, in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayCounts {
    /// Nodes registered now.
    pub registrations: usize,
    /// Connections that have not registered yet (handshakes included).
    pub unregistered: usize,
    /// Channels open now.
    pub channels: usize,
    /// What its limits turned away, by limit.
    pub refused: std::collections::BTreeMap<RelayRefusal, u64>,
    /// Introductions made.
    pub introduced: u64,
    /// Introductions refused, for any reason (a limit, or a peer not
    /// registered, or the asker itself).
    pub introductions_refused: u64,
    /// Datagrams passed on, and their bytes.
    pub forwarded: u64,
    /// Bytes passed on.
    pub forwarded_bytes: u64,
    /// Datagrams dropped, by reason.
    pub dropped: std::collections::BTreeMap<DropReason, u64>,
}

/// A connection that came up.
#[derive(Debug)]
struct Conn {
    peer: PeerId,
    remote: SocketAddr,
    /// The network its address is in ([`Prefix::site`]).
    network: Prefix,
    since: Instant,
    registration: Option<Registration>,
    /// Introductions it may still ask for.
    introductions: TokenBucket,
    /// It was last told RateLimited then (it is told once a second at
    /// most; what it asks beyond that is dropped unanswered).
    told_limited: Option<Instant>,
    /// Frames sent to it that the driver has not written yet
    /// ([`RelayCore::handle_written`]).
    unwritten: usize,
    /// Since when the frame written next has waited (sent then, or the
    /// one before it was written then); none while nothing waits.
    waiting_since: Option<Instant>,
}

#[derive(Debug)]
struct Registration {
    addrs: Vec<SocketAddr>,
    #[allow(dead_code)]
    mapping: MappingKind,
    channels: BTreeSet<u64>,
}

/// A pair's channel.
#[derive(Debug)]
struct Channel {
    /// The two nodes: (connection, the address its connection comes from).
    ends: [(ConnId, SocketAddr); 2],
    /// The networks of the two ends: one if they share it.
    networks: Vec<Prefix>,
    peers: [PeerId; 2],
    rate: Option<TokenBucket>,
    last_used: Instant,
    bytes: u64,
}

/// A pair's bytes in its current hour.
#[derive(Debug, Clone, Copy)]
struct Hour {
    start: Instant,
    bytes: u64,
}

/// The relay. See the module docs.
#[derive(Debug)]
pub struct RelayCore {
    config: RelayConfig,
    rng: SplitMix64,
    next_conn: u64,
    /// Handshakes in progress: connection -> its source network.
    handshakes: HashMap<ConnId, Prefix>,
    conns: HashMap<ConnId, Conn>,
    /// What each network holds, kept with every change.
    by_network: HashMap<Prefix, Held>,
    /// Registered nodes by id.
    by_peer: HashMap<PeerId, ConnId>,
    /// Registered nodes by the address their connection comes from.
    by_addr: HashMap<SocketAddr, ConnId>,
    channels: HashMap<u64, Channel>,
    /// Each pair's channel, by the lower id first.
    pairs: HashMap<(PeerId, PeerId), u64>,
    hours: HashMap<(PeerId, PeerId), Hour>,
    actions: VecDeque<RelayAction>,
    reports: VecDeque<RelayReport>,
    counts: RelayCounts,
    /// Connections told to close whose end has not been reported yet:
    /// when each is aborted, and why it was closed.
    closing: HashMap<ConnId, (Instant, &'static str)>,
    /// Connections to abort once the input being dealt with is
    /// ([`Self::settle`]): each had [`OUTBOX_FRAMES`] waiting when one
    /// more was to be sent.
    not_reading: Vec<ConnId>,
}

/// What one network holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Held {
    handshakes: usize,
    unregistered: usize,
    registered: usize,
    pairs: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        *self == Held::default()
    }
}

fn pair_of(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a < b { (a, b) } else { (b, a) }
}

impl RelayCore {
    /// A relay with `config` (validated), its channel numbers drawn from
    /// `seed`.
    pub fn new(config: RelayConfig, seed: u64) -> Result<Self, RelayConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: SplitMix64(seed),
            next_conn: 0,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            by_network: HashMap::new(),
            by_peer: HashMap::new(),
            by_addr: HashMap::new(),
            channels: HashMap::new(),
            pairs: HashMap::new(),
            hours: HashMap::new(),
            actions: VecDeque::new(),
            reports: VecDeque::new(),
            counts: RelayCounts::default(),
            closing: HashMap::new(),
            not_reading: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<RelayAction> {
        self.actions.pop_front()
    }

    /// The next report for the operator.
    pub fn poll_report(&mut self) -> Option<RelayReport> {
        self.reports.pop_front()
    }

    /// What it has done, and holds now.
    pub fn counts(&self) -> RelayCounts {
        let registered = self
            .conns
            .values()
            .filter(|conn| conn.registration.is_some())
            .count();
        RelayCounts {
            registrations: registered,
            unregistered: self.conns.len() - registered + self.handshakes.len(),
            channels: self.channels.len(),
            ..self.counts.clone()
        }
    }

    /// Connections up that have not registered yet.
    fn unregistered(&self) -> usize {
        self.conns.len() - self.by_peer.len()
    }

    /// What `network` holds.
    fn held(&self, network: Prefix) -> Held {
        self.by_network.get(&network).copied().unwrap_or_default()
    }

    /// Changes what `network` holds; a network that holds nothing is
    /// forgotten.
    fn hold(&mut self, network: Prefix, change: impl FnOnce(&mut Held)) {
        let held = self.by_network.entry(network).or_default();
        change(held);
        if held.is_empty() {
            self.by_network.remove(&network);
        }
    }

    fn count_refusal(&mut self, limit: RelayRefusal) {
        *self.counts.refused.entry(limit).or_default() += 1;
    }

    fn report(&mut self, report: RelayReport) {
        if self.reports.len() < MAX_QUEUED {
            self.reports.push_back(report);
        }
    }

    /// Sends `message` to `conn`, if it is up: one frame more waiting to
    /// be written, or, with [`OUTBOX_FRAMES`] waiting already, the end of
    /// a node that does not read.
    fn send(&mut self, conn: ConnId, message: RelayMessage, now: Instant) {
        self.send_frame(conn, message, now, true);
    }

    /// [`Self::send`], within [`MAX_QUEUED`] actions queued when
    /// `bounded`.
    fn send_frame(&mut self, conn: ConnId, message: RelayMessage, now: Instant, bounded: bool) {
        let Some(this) = self.conns.get_mut(&conn) else {
            return;
        };
        if this.unwritten >= OUTBOX_FRAMES {
            // Aborted once the input that sent this is dealt with
            // ([`Self::settle`]): what it sends others comes first (a
            // Connect before the ChannelClosed of the same channel).
            if !self.not_reading.contains(&conn) {
                self.not_reading.push(conn);
            }
            return;
        }
        if bounded && self.actions.len() >= MAX_QUEUED {
            return;
        }
        this.unwritten += 1;
        this.waiting_since.get_or_insert(now);
        self.actions.push_back(RelayAction::Send { conn, message });
    }

    /// The driver wrote one more of the frames sent to `conn` (handed it
    /// to the connection's stream, within the node's flow control
    /// credit). Frames wait in order: the next one's wait starts now.
    pub fn handle_written(&mut self, conn: ConnId, now: Instant) {
        let Some(this) = self.conns.get_mut(&conn) else {
            return;
        };
        this.unwritten = this.unwritten.saturating_sub(1);
        this.waiting_since = (this.unwritten > 0).then_some(now);
    }

    /// Tells the driver to close `conn` once what waits for it is written,
    /// and forgets it; it is aborted if its end is not reported within
    /// [`CLOSE_GRACE`].
    /// Closes and aborts are queued whatever else is ([`MAX_QUEUED`]):
    /// one of each per connection at most, and a connection whose close
    /// went unsaid would be held open by nothing the core counts.
    fn close_conn(&mut self, conn: ConnId, reason: &'static str, now: Instant) {
        self.actions.push_back(RelayAction::Close { conn, reason });
        self.forget(conn, now);
        self.closing.insert(conn, (now + CLOSE_GRACE, reason));
    }

    /// Tells the driver to close `conn` at once, and forgets it.
    fn abort(&mut self, conn: ConnId, reason: &'static str, now: Instant) {
        self.closing.remove(&conn);
        self.actions.push_back(RelayAction::Abort { conn, reason });
        self.forget(conn, now);
    }

    /// Aborts the connections found not reading while an input was dealt
    /// with (an abort ends channels, whose other nodes are told, and may
    /// find more).
    fn settle(&mut self, now: Instant) {
        while let Some(conn) = self.not_reading.pop() {
            if self.conns.contains_key(&conn) {
                self.abort(conn, "not reading", now);
            }
        }
    }

    /// The first packet of a new connection from `from` (`validated`: its
    /// address was proven by a Retry). At most
    /// [`RelayConfig::max_handshakes_per_network`] from one network and
    /// [`RelayConfig::max_handshakes`] in all; an unproven source is asked
    /// to prove its address once half the places are taken. A network (or
    /// the relay) that holds as many connections not registered yet as it
    /// may is refused here, before the connection holds any state: one
    /// that came up now would be closed as its handshake ends.
    pub fn handle_incoming(
        &mut self,
        from: SocketAddr,
        validated: bool,
        _now: Instant,
    ) -> RelayIncoming {
        let network = Prefix::site(from.ip());
        let total = self.handshakes.len();
        let held = self.held(network);
        let refusal = if held.unregistered >= self.config.max_unregistered_per_network {
            Some(RelayRefusal::NetworkUnregistered)
        } else if self.unregistered() >= self.config.max_unregistered {
            Some(RelayRefusal::Unregistered)
        } else if held.handshakes >= self.config.max_handshakes_per_network {
            Some(RelayRefusal::NetworkHandshakes)
        } else if total >= self.config.max_handshakes {
            Some(RelayRefusal::Handshakes)
        } else {
            None
        };
        if let Some(limit) = refusal {
            self.count_refusal(limit);
            return RelayIncoming::Refuse;
        }
        if !validated && total >= self.config.max_handshakes / 2 {
            return RelayIncoming::Retry;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.handshakes.insert(conn, network);
        self.hold(network, |held| held.handshakes += 1);
        RelayIncoming::Accept(conn)
    }

    /// Connection `conn`'s handshake ended: up, as `peer` (the key it
    /// proved) at `remote`, or failed (`None`). An up connection has
    /// [`RelayConfig::register_within`] to register; one beyond the
    /// connections not registered yet that its network, or the relay, may
    /// hold is closed at once.
    pub fn handle_handshake(
        &mut self,
        conn: ConnId,
        up: Option<(PeerId, SocketAddr)>,
        now: Instant,
    ) {
        let Some(network) = self.handshakes.remove(&conn) else {
            return;
        };
        self.hold(network, |held| held.handshakes -= 1);
        let Some((peer, remote)) = up else {
            return;
        };
        let remote = SocketAddr::new(canonical(remote.ip()), remote.port());
        let network = Prefix::site(remote.ip());
        let refusal = if self.held(network).unregistered >= self.config.max_unregistered_per_network
        {
            Some(RelayRefusal::NetworkUnregistered)
        } else if self.unregistered() >= self.config.max_unregistered {
            Some(RelayRefusal::Unregistered)
        } else {
            None
        };
        if let Some(limit) = refusal {
            self.count_refusal(limit);
            self.close_conn(conn, "too many connections that have not registered", now);
            return;
        }
        self.hold(network, |held| held.unregistered += 1);
        let rate = u64::from(self.config.introductions_per_minute);
        self.conns.insert(
            conn,
            Conn {
                peer,
                remote,
                network,
                since: now,
                registration: None,
                introductions: TokenBucket::new(rate.div_ceil(60).max(1), rate, now),
                told_limited: None,
                unwritten: 0,
                waiting_since: None,
            },
        );
    }

    /// A message on `conn`'s control stream. One that a relay does not
    /// take from a node ends the connection.
    pub fn handle_message(&mut self, conn: ConnId, message: RelayMessage, now: Instant) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        match message {
            RelayMessage::Register { addrs, mapping, .. } => {
                self.register(conn, addrs, mapping, now)
            }
            RelayMessage::Introduce { peer } => self.introduce(conn, peer, now),
            other => {
                let _ = other;
                self.close_conn(conn, "a message a node does not send", now);
            }
        }
        self.settle(now);
    }

    /// The connection `conn` ended (either side closed it, or it was lost).
    pub fn handle_closed(&mut self, conn: ConnId, now: Instant) {
        self.closing.remove(&conn);
        self.forget(conn, now);
        self.settle(now);
    }

    /// Forgets `conn`: what it held, its registration and its channels.
    fn forget(&mut self, conn: ConnId, now: Instant) {
        if let Some(network) = self.handshakes.remove(&conn) {
            self.hold(network, |held| held.handshakes -= 1);
        }
        let Some(gone) = self.conns.remove(&conn) else {
            return;
        };
        if gone.registration.is_some() {
            self.hold(gone.network, |held| held.registered -= 1);
        } else {
            self.hold(gone.network, |held| held.unregistered -= 1);
        }
        if let Some(registration) = gone.registration {
            if self.by_peer.get(&gone.peer) == Some(&conn) {
                self.by_peer.remove(&gone.peer);
            }
            if self.by_addr.get(&gone.remote) == Some(&conn) {
                self.by_addr.remove(&gone.remote);
            }
            for channel in registration.channels {
                self.end_channel(channel, ChannelEnd::PeerGone, now);
            }
            self.report(RelayReport::Left { peer: gone.peer });
        }
    }

    fn register(
        &mut self,
        conn: ConnId,
        addrs: Vec<SocketAddr>,
        mapping: MappingKind,
        now: Instant,
    ) {
        let Some(this) = self.conns.get(&conn) else {
            return;
        };
        let (peer, remote, network) = (this.peer, this.remote, this.network);
        let addrs: Vec<SocketAddr> = addrs.into_iter().take(MAX_REGISTER_ADDRS).collect();
        if let Some(registration) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.registration.as_mut())
        {
            // Registered already: what it says of itself is updated.
            registration.addrs = addrs;
            registration.mapping = mapping;
            return;
        }
        // A registration this one takes the place of (the same node
        // again, or another at the same address) does not count against
        // it.
        let replaced: BTreeSet<ConnId> = [self.by_peer.get(&peer), self.by_addr.get(&remote)]
            .into_iter()
            .flatten()
            .copied()
            .filter(|older| *older != conn)
            .collect();
        let replaced_here = replaced
            .iter()
            .filter(|older| self.conns.get(older).is_some_and(|c| c.network == network))
            .count();
        let refusal = if self
            .config
            .allow
            .as_ref()
            .is_some_and(|allow| !allow.contains(&peer))
        {
            Some((RegisterRefusal::NotAllowed, RelayRefusal::NotAllowed))
        } else if self.held(network).registered - replaced_here
            >= self.config.max_registrations_per_network
        {
            Some((
                RegisterRefusal::NetworkFull,
                RelayRefusal::NetworkRegistrations,
            ))
        } else if self.by_peer.len() - replaced.len() >= self.config.max_registrations {
            Some((RegisterRefusal::Full, RelayRefusal::Registrations))
        } else {
            None
        };
        if let Some((reason, limit)) = refusal {
            self.count_refusal(limit);
            self.send(conn, RelayMessage::RegisterRefused { reason }, now);
            self.report(RelayReport::RegisterRefused {
                peer,
                addr: remote,
                reason: reason.to_string(),
            });
            self.close_conn(conn, "registration refused", now);
            return;
        }
        // The same node again (restarted, or from another socket): the
        // newer registration takes the place of the older.
        if let Some(&older) = self.by_peer.get(&peer)
            && older != conn
        {
            self.close_conn(older, "registered again elsewhere", now);
        }
        if let Some(&older) = self.by_addr.get(&remote)
            && older != conn
        {
            self.close_conn(older, "another node at the same address", now);
        }
        if let Some(this) = self.conns.get_mut(&conn) {
            this.registration = Some(Registration {
                addrs,
                mapping,
                channels: BTreeSet::new(),
            });
        }
        self.hold(network, |held| {
            held.unregistered -= 1;
            held.registered += 1;
        });
        self.by_peer.insert(peer, conn);
        self.by_addr.insert(remote, conn);
        let limits = self.config.limits();
        self.send(
            conn,
            RelayMessage::Registered {
                observed: remote,
                limits,
            },
            now,
        );
        self.report(RelayReport::Registered { peer, addr: remote });
    }

    /// Where `target` is named to the node at `asker_remote`: its global
    /// IPv6 addresses first (no NAT in the way: the path a punch prefers),
    /// then where the relay sees it; its LAN addresses first of all when
    /// both come from one public address (one home).
    fn addrs_for(&self, target: ConnId, asker_remote: SocketAddr) -> Vec<SocketAddr> {
        let Some(conn) = self.conns.get(&target) else {
            return Vec::new();
        };
        let registered = conn
            .registration
            .as_ref()
            .map(|r| r.addrs.clone())
            .unwrap_or_default();
        let same_home = conn.remote.ip() == asker_remote.ip();
        let mut addrs = Vec::new();
        if same_home {
            addrs.extend(
                registered
                    .iter()
                    .copied()
                    .filter(|addr| minimodel_wire::is_lan_addr(*addr)),
            );
        }
        addrs.extend(registered.iter().copied().filter(|addr| {
            addr.is_ipv6() && crate::address::scope(*addr) == crate::address::Scope::Global
        }));
        addrs.push(conn.remote);
        addrs.dedup();
        addrs.truncate(MAX_RELAY_CONNECT_ADDRS);
        addrs
    }

    fn introduce(&mut self, conn: ConnId, target: PeerId, now: Instant) {
        let Some(asker) = self.conns.get_mut(&conn) else {
            return;
        };
        if asker.registration.is_none() {
            // Not registered: nothing is introduced to it, or for it.
            self.close_conn(conn, "introduction asked before registering", now);
            return;
        }
        let asker_peer = asker.peer;
        if !asker.introductions.try_take(1, now) {
            let told = asker
                .told_limited
                .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1));
            self.count_refusal(RelayRefusal::IntroductionRate);
            if !told {
                if let Some(asker) = self.conns.get_mut(&conn) {
                    asker.told_limited = Some(now);
                }
                self.refuse_introduction(conn, target, IntroduceRefusal::RateLimited, now);
            }
            return;
        }
        if target == asker_peer {
            self.refuse_introduction(conn, target, IntroduceRefusal::NoSelf, now);
            return;
        }
        let Some(&other) = self.by_peer.get(&target) else {
            self.refuse_introduction(conn, target, IntroduceRefusal::NotRegistered, now);
            return;
        };
        let pair = pair_of(asker_peer, target);
        if self.hour_used(pair, now) {
            self.count_refusal(RelayRefusal::PairHour);
            self.refuse_introduction(conn, target, IntroduceRefusal::HourUsed, now);
            return;
        }
        let channel = match self.pairs.get(&pair).copied() {
            Some(channel) if self.channels.contains_key(&channel) => channel,
            _ => {
                if let Some((reason, limit)) = self.pair_refusal(conn, other) {
                    self.count_refusal(limit);
                    self.refuse_introduction(conn, target, reason, now);
                    return;
                }
                self.open_channel(conn, other, pair, now)
            }
        };
        let (asker_remote, other_remote) = match (self.conns.get(&conn), self.conns.get(&other)) {
            (Some(a), Some(b)) => (a.remote, b.remote),
            _ => return,
        };
        let to_asker = self.addrs_for(other, asker_remote);
        let to_other = self.addrs_for(conn, other_remote);
        self.send(
            conn,
            RelayMessage::Connect {
                peer: target,
                addrs: to_asker,
                channel,
                role: ConnectRole::Dial,
            },
            now,
        );
        self.send(
            other,
            RelayMessage::Connect {
                peer: asker_peer,
                addrs: to_other,
                channel,
                role: ConnectRole::Open,
            },
            now,
        );
        self.counts.introduced += 1;
        self.report(RelayReport::Introduced {
            asker: asker_peer,
            target,
            channel,
        });
    }

    /// Why a new pair of `a` and `b` is not opened, if it is not: the
    /// relay's pairs, either node's, or either network's.
    fn pair_refusal(&self, a: ConnId, b: ConnId) -> Option<(IntroduceRefusal, RelayRefusal)> {
        let ends: Vec<&Conn> = [a, b].iter().filter_map(|c| self.conns.get(c)).collect();
        if self.channels.len() >= self.config.max_pairs {
            return Some((IntroduceRefusal::TooManyPairs, RelayRefusal::Pairs));
        }
        let node_full = ends.iter().any(|end| {
            end.registration
                .as_ref()
                .is_some_and(|r| r.channels.len() >= self.config.max_pairs_per_node)
        });
        if node_full {
            return Some((IntroduceRefusal::TooManyPairs, RelayRefusal::NodePairs));
        }
        let network_full = ends
            .iter()
            .any(|end| self.held(end.network).pairs >= self.config.max_pairs_per_network);
        if network_full {
            return Some((IntroduceRefusal::TooManyPairs, RelayRefusal::NetworkPairs));
        }
        None
    }

    fn refuse_introduction(
        &mut self,
        conn: ConnId,
        peer: PeerId,
        reason: IntroduceRefusal,
        now: Instant,
    ) {
        self.counts.introductions_refused += 1;
        self.send(conn, RelayMessage::IntroduceFailed { peer, reason }, now);
    }

    fn open_channel(&mut self, a: ConnId, b: ConnId, pair: (PeerId, PeerId), now: Instant) -> u64 {
        let channel = loop {
            let id = self.rng.next_u64();
            if id != 0 && !self.channels.contains_key(&id) {
                break id;
            }
        };
        let end = |core: &Self, conn: ConnId| {
            let c = &core.conns[&conn];
            ((conn, c.remote), c.peer, c.network)
        };
        let ((end_a, peer_a, network_a), (end_b, peer_b, network_b)) = (end(self, a), end(self, b));
        let mut networks = vec![network_a, network_b];
        networks.dedup();
        for network in &networks {
            self.hold(*network, |held| held.pairs += 1);
        }
        let rate = (self.config.pair_rate > 0).then(|| {
            // A quarter of a second's worth at once: the pair's queue is
            // its own, never the relay's.
            let rate = self.config.pair_rate;
            TokenBucket::new(rate, (rate / 4).max(64 * 1024), now)
        });
        self.channels.insert(
            channel,
            Channel {
                ends: [end_a, end_b],
                networks,
                peers: [peer_a, peer_b],
                rate,
                last_used: now,
                bytes: 0,
            },
        );
        self.pairs.insert(pair, channel);
        for conn in [a, b] {
            if let Some(registration) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| c.registration.as_mut())
            {
                registration.channels.insert(channel);
            }
        }
        channel
    }

    fn end_channel(&mut self, channel: u64, reason: ChannelEnd, now: Instant) {
        let Some(gone) = self.channels.remove(&channel) else {
            return;
        };
        for network in &gone.networks {
            self.hold(*network, |held| held.pairs -= 1);
        }
        let pair = pair_of(gone.peers[0], gone.peers[1]);
        if self.pairs.get(&pair) == Some(&channel) {
            self.pairs.remove(&pair);
        }
        for (conn, _) in gone.ends {
            if let Some(registration) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| c.registration.as_mut())
            {
                registration.channels.remove(&channel);
                // Told whatever else is queued: a channel's end is one
                // notice to each of its two nodes.
                self.send_frame(
                    conn,
                    RelayMessage::ChannelClosed { channel, reason },
                    now,
                    false,
                );
            }
        }
        self.report(RelayReport::ChannelClosed {
            channel,
            reason: reason.to_string(),
            bytes: gone.bytes,
        });
    }

    /// Whether `pair` used its bytes for the hour.
    fn hour_used(&mut self, pair: (PeerId, PeerId), now: Instant) -> bool {
        let limit = self.config.pair_bytes_per_hour;
        limit > 0
            && self.hours.get(&pair).is_some_and(|hour| {
                now.saturating_duration_since(hour.start) < HOUR && hour.bytes >= limit
            })
    }

    /// A relay datagram of `len` bytes from `from` on `channel`: where it
    /// goes, or why it is dropped (see the module docs).
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        channel: u64,
        len: usize,
        now: Instant,
    ) -> Forward {
        let from = SocketAddr::new(canonical(from.ip()), from.port());
        let decision = self.decide(from, channel, len as u64, now);
        match decision {
            Forward::To(_) => {
                self.counts.forwarded += 1;
                self.counts.forwarded_bytes += len as u64;
            }
            Forward::Drop(reason) => *self.counts.dropped.entry(reason).or_default() += 1,
        }
        decision
    }

    fn decide(&mut self, from: SocketAddr, channel: u64, len: u64, now: Instant) -> Forward {
        let limit = self.config.pair_bytes_per_hour;
        let Some(this) = self.channels.get_mut(&channel) else {
            return Forward::Drop(DropReason::UnknownChannel);
        };
        let to = match this.ends {
            [(_, a), (_, b)] if a == from => b,
            [(_, a), (_, b)] if b == from => a,
            _ => return Forward::Drop(DropReason::NotAnEnd),
        };
        if let Some(rate) = &mut this.rate
            && !rate.try_take(len, now)
        {
            return Forward::Drop(DropReason::RateLimited);
        }
        this.last_used = now;
        this.bytes += len;
        let pair = pair_of(this.peers[0], this.peers[1]);
        let hour = self.hours.entry(pair).or_insert(Hour {
            start: now,
            bytes: 0,
        });
        if now.saturating_duration_since(hour.start) >= HOUR {
            *hour = Hour {
                start: now,
                bytes: 0,
            };
        }
        hour.bytes += len;
        let used = limit > 0 && hour.bytes > limit;
        if self.hours.len() > HOURS_PER_PAIR * self.config.max_pairs {
            self.forget_old_hours(now);
        }
        if used {
            self.end_channel(channel, ChannelEnd::HourUsed, now);
            self.settle(now);
            return Forward::Drop(DropReason::HourUsed);
        }
        Forward::To(to)
    }

    /// Keeps the pairs' hourly counts bounded: those of pairs with no
    /// channel whose hour is over go first, then the oldest.
    fn forget_old_hours(&mut self, now: Instant) {
        let pairs = &self.pairs;
        self.hours.retain(|pair, hour| {
            pairs.contains_key(pair) || now.saturating_duration_since(hour.start) < HOUR
        });
        let cap = HOURS_PER_PAIR * self.config.max_pairs;
        if self.hours.len() > cap {
            let mut by_age: Vec<((PeerId, PeerId), Instant)> = self
                .hours
                .iter()
                .map(|(pair, hour)| (*pair, hour.start))
                .collect();
            by_age.sort_by_key(|(_, start)| *start);
            for (pair, _) in by_age.into_iter().take(self.hours.len() - cap) {
                self.hours.remove(&pair);
            }
        }
    }

    /// Checks what each network is said to hold against the connections,
    /// handshakes and channels themselves (tests only).
    #[cfg(test)]
    fn check_held(&self) {
        assert!(self.not_reading.is_empty(), "aborts left unsettled");
        let mut counted: HashMap<Prefix, Held> = HashMap::new();
        for network in self.handshakes.values() {
            counted.entry(*network).or_default().handshakes += 1;
        }
        for conn in self.conns.values() {
            let held = counted.entry(conn.network).or_default();
            match conn.registration {
                Some(_) => held.registered += 1,
                None => held.unregistered += 1,
            }
        }
        for channel in self.channels.values() {
            for network in &channel.networks {
                counted.entry(*network).or_default().pairs += 1;
            }
        }
        assert_eq!(counted, self.by_network);
    }

    /// When [`RelayCore::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let registering = self
            .conns
            .values()
            .filter(|conn| conn.registration.is_none())
            .map(|conn| conn.since + self.config.register_within);
        let idle = self
            .channels
            .values()
            .map(|channel| channel.last_used + self.config.channel_idle);
        let stalled = self
            .conns
            .values()
            .filter_map(|conn| conn.waiting_since)
            .map(|since| since + WRITE_STALL);
        let closing = self.closing.values().map(|(at, _)| *at);
        registering.chain(idle).chain(stalled).chain(closing).min()
    }

    /// Closes connections that did not register in time, aborts those
    /// whose next frame waited [`WRITE_STALL`] to be written and those
    /// closed [`CLOSE_GRACE`] ago that have not ended, and ends idle
    /// channels.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stalled: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.waiting_since.is_some_and(|at| now >= at + WRITE_STALL))
            .map(|(id, _)| *id)
            .collect();
        for conn in stalled {
            self.abort(conn, "not reading", now);
        }
        let overdue: Vec<(ConnId, &'static str)> = self
            .closing
            .iter()
            .filter(|(_, (at, _))| now >= *at)
            .map(|(conn, (_, reason))| (*conn, *reason))
            .collect();
        for (conn, reason) in overdue {
            self.abort(conn, reason, now);
        }
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| {
                conn.registration.is_none() && now >= conn.since + self.config.register_within
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in late {
            self.close_conn(conn, "did not register in time", now);
        }
        let idle: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, channel)| now >= channel.last_used + self.config.channel_idle)
            .map(|(id, _)| *id)
            .collect();
        for channel in idle {
            self.end_channel(channel, ChannelEnd::Idle, now);
        }
        self.settle(now);
    }
}

pub mod link;

#[cfg(test)]
mod tests;
