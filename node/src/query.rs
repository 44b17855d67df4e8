//! [`ManifestQuery`]: every decision of the manifest query a ticket starts
//! (`docs/formats.md`, "Ticket"), sans-IO, as
//! [`crate::relay::link::RelayLinkCore`] is a relay link's. The driver
//! (`swarm/src/app/ticket.rs`) dials, queries, starts relay links and asks
//! mirrors when told, hands every outcome in, and wakes at
//! [`ManifestQuery::poll_timeout`]; it decides nothing.
//!
//! What is decided here:
//! - **the order of the sources**: the ticket's addresses in its order, each
//!   relay a peer names right after that peer's first address, then the
//!   ticket's mirrors;
//! - **when each is asked**: the first at once, each next one
//!   [`QueryConfig::next_source_delay`] after the one before, or as soon as
//!   every source asked so far has failed (as a browser tries the
//!   addresses of a name, RFC 8305); none whose turn leaves it less than
//!   [`QueryConfig::min_ask`] before the time to give up;
//! - **how long each may take**: [`QueryConfig::timeout`], or what is left
//!   of [`QueryConfig::within`] if that is less;
//! - **a refusal at the first packet**: a peer busy with other handshakes
//!   is dialed again [`QueryConfig::refused_attempts`] times, after
//!   [`QueryConfig::refused_first_pause`] doubling each time;
//! - **through a relay**: registered, the peer is asked for by an
//!   introduction; the relay's Connect opens our router toward the
//!   addresses it names, which are dialed [`QueryConfig::punch_delay`]
//!   later, and the relay's channel [`QueryConfig::relay_fallback_after`]
//!   after the Connect; the first connection up is queried; a refusal of
//!   our registration or of the introduction ends the source;
//! - **what an answer is**: bytes whose SHA-256 is the ticket's win;
//!   anything else is that source's failure, and the first right answer
//!   ends the query.
//!
//! Invariants: every source ends once, with bytes or a reason; nothing is
//! asked of a source after it ended ([`QueryAction::Stop`] comes once, as
//! it ends, for each source asked); what it holds is bounded by the
//! ticket's sources (each relay's Connect dials at most
//! [`MAX_PUNCH_ADDRS`] addresses).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_verifier::Sha256Digest;
use minimodel_wire::{PeerAddr, PeerId};

use crate::node::is_relay_path;

/// Addresses of a relay's Connect dialed, at most (a Connect carries what
/// the peer registered, at most 4, and where the relay sees it).
pub const MAX_PUNCH_ADDRS: usize = 8;

/// Timers of a manifest query. [`Default`] holds the product's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryConfig {
    /// How long one source may take (its QUIC handshake and the query, or
    /// a mirror's answer). Default 10 s.
    pub timeout: Duration,
    /// The whole query at most, if set: a source whose turn comes after
    /// it is not asked, and each source asked gets at most what is left.
    pub within: Option<Duration>,
    /// When no answer has come, the next source is asked this long after
    /// the one before it. Default 500 ms: a ticket's first address may be
    /// a home network's, dead from elsewhere.
    pub next_source_delay: Duration,
    /// A source whose turn leaves it less than this is not asked. Default
    /// 100 ms.
    pub min_ask: Duration,
    /// A peer that refuses the connection at its first packet is dialed
    /// again this many times. Default 5.
    pub refused_attempts: u32,
    /// The first pause before dialing a refusing peer again, doubled each
    /// time. Default 100 ms: a peer only busy lets us in within 3.1 s.
    pub refused_first_pause: Duration,
    /// From a relay's Connect to our dials of the addresses it names (our
    /// router opened meanwhile). Default: the node's.
    pub punch_delay: Duration,
    /// From a relay's Connect to our dial of its channel. Default: the
    /// node's.
    pub relay_fallback_after: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let node = crate::NodeConfig::default();
        Self {
            timeout: Duration::from_secs(10),
            within: None,
            next_source_delay: Duration::from_millis(500),
            min_ask: Duration::from_millis(100),
            refused_attempts: 5,
            refused_first_pause: Duration::from_millis(100),
            punch_delay: node.punch_delay,
            relay_fallback_after: node.relay_fallback_after,
        }
    }
}

/// One source of a ticket's manifest, in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuerySource {
    /// A peer at one of its addresses.
    Peer(PeerAddr),
    /// A peer through a relay it names.
    Relayed {
        /// The peer.
        peer: PeerId,
        /// The relay's address.
        relay: SocketAddr,
    },
    /// The ticket's mirror of this index.
    Mirror(usize),
}

/// A dial of a source: its number within the source.
pub type DialId = u32;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryAction {
    /// Dial `addr` for source `source` (a QUIC handshake with
    /// `addr.id`); then [`ManifestQuery::handle_connected`] or
    /// [`ManifestQuery::handle_dial_failed`].
    Dial {
        /// The source.
        source: usize,
        /// The dial's number.
        dial: DialId,
        /// Whom, where.
        addr: PeerAddr,
    },
    /// Ask for the manifest on the connection dial `dial` made; then
    /// [`ManifestQuery::handle_answer`].
    Query {
        /// The source.
        source: usize,
        /// The dial whose connection is asked.
        dial: DialId,
    },
    /// Start a link to the relay of a [`QuerySource::Relayed`] source;
    /// then [`ManifestQuery::handle_relay`] with what it says.
    StartRelay {
        /// The source.
        source: usize,
    },
    /// Ask the relay of `source` to introduce `peer`.
    Introduce {
        /// The source.
        source: usize,
        /// The peer.
        peer: PeerId,
    },
    /// Open our router toward these addresses (a punch's first step).
    OpenPaths {
        /// The addresses.
        addrs: Vec<SocketAddr>,
    },
    /// Read the manifest beside mirror `mirror` of the ticket; then
    /// [`ManifestQuery::handle_answer`].
    FetchMirror {
        /// The source.
        source: usize,
        /// The ticket's mirror.
        mirror: usize,
    },
    /// The source ended: stop everything still under way for it (its
    /// dials, queries, relay link, mirror read). A connection it made may
    /// be kept until the query ends, to be closed with the rest.
    Stop {
        /// The source.
        source: usize,
    },
}

/// What a relay link of a source said ([`ManifestQuery::handle_relay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayNews {
    /// Registered.
    Registered,
    /// The relay refused our registration: why.
    Refused(String),
    /// The link went down (it tries again): why.
    Lost(String),
    /// No introduction to the peer: why.
    IntroduceFailed(String),
    /// The introduction we asked for: the peer at `addrs`, and through
    /// the relay at `path`.
    Connect {
        /// Where the relay sees the peer, and what it registered.
        addrs: Vec<SocketAddr>,
        /// The channel's relay path.
        path: SocketAddr,
    },
    /// The link ended for good.
    Ended,
}

/// What a source answered ([`ManifestQuery::handle_answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Bytes of another manifest, in the driver's words (a peer's own
    /// check of the digest).
    WrongBytes(String),
    /// No bytes: why.
    Failed(String),
}

/// How the query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryOutcome {
    /// A source sent the manifest.
    Found {
        /// The source.
        source: usize,
        /// The manifest file's bytes, their SHA-256 the ticket's.
        bytes: Vec<u8>,
    },
    /// None did: why each source failed, in the sources' order.
    NotFound {
        /// Each source's reason.
        why: Vec<String>,
        /// Whether some source sent bytes of another manifest.
        wrong_bytes: bool,
    },
}

/// Where a relayed source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relaying {
    /// The link is starting or registering.
    Registering,
    /// Introduction asked; waiting for the relay's Connect.
    Introducing,
    /// Connect came: dials at these instants (punch, then the channel).
    Punching,
}

#[derive(Debug, Clone)]
struct Asked {
    /// What it is allowed ([`QueryConfig::timeout`], or less when the
    /// time to give up comes first), and when it must have answered.
    wait: Duration,
    deadline: Instant,
    /// Dials made so far.
    dials: DialId,
    /// Dials under way.
    dialing: usize,
    /// A dial connected and its query runs.
    querying: bool,
    /// A direct peer's refusals so far, and when to dial it again.
    refusals: u32,
    redial_at: Option<Instant>,
    /// A relayed source's state, its punch dials' time and addresses,
    /// and its channel's dial time and path.
    relaying: Option<Relaying>,
    punch: Option<(Instant, Vec<SocketAddr>)>,
    fallback: Option<(Instant, SocketAddr)>,
    /// The last thing that went wrong (a dial's error, a relay's loss).
    last_error: Option<String>,
}

/// A source's state.
#[derive(Debug, Clone)]
enum State {
    NotAsked,
    Asked(Box<Asked>),
    Ended,
}

/// The manifest query of one ticket. See the module docs.
#[derive(Debug)]
pub struct ManifestQuery {
    config: QueryConfig,
    /// The SHA-256 an answer must have; `None`: the driver hands in only
    /// answers it checked itself ([`ManifestQuery::checked_by_driver`]).
    digest: Option<[u8; 32]>,
    sources: Vec<QuerySource>,
    states: Vec<State>,
    why: Vec<Option<String>>,
    /// The next source to ask, and when at the latest.
    next: usize,
    next_at: Instant,
    /// The time to give up, if set.
    until: Option<Instant>,
    wrong_bytes: bool,
    actions: VecDeque<QueryAction>,
    outcome: Option<QueryOutcome>,
    taken: bool,
}

impl ManifestQuery {
    /// The query for a ticket naming `peers` (each with its addresses, in
    /// the ticket's order), `relays` (each peer's relays) and `mirrors`
    /// mirrors, for the manifest whose SHA-256 is `digest`, started at
    /// `now`.
    pub fn new(
        peers: &[(PeerId, Vec<SocketAddr>)],
        relays: &[(PeerId, Vec<SocketAddr>)],
        mirrors: usize,
        digest: [u8; 32],
        config: QueryConfig,
        now: Instant,
    ) -> Self {
        Self::start(peers, relays, mirrors, Some(digest), config, now)
    }

    /// The same query of `peers` and `relays` (no mirror) for bytes with
    /// no digest known ahead, which the driver checks before it hands them
    /// in: a new version's chunk list, checked against the manifest's
    /// Merkle root (a download's read-ahead, `swarm/src/app/fetch.rs`).
    /// Every [`Answer::Bytes`] then wins; the driver says
    /// [`Answer::WrongBytes`] of a list that does not check.
    pub fn checked_by_driver(
        peers: &[(PeerId, Vec<SocketAddr>)],
        relays: &[(PeerId, Vec<SocketAddr>)],
        config: QueryConfig,
        now: Instant,
    ) -> Self {
        Self::start(peers, relays, 0, None, config, now)
    }

    fn start(
        peers: &[(PeerId, Vec<SocketAddr>)],
        relays: &[(PeerId, Vec<SocketAddr>)],
        mirrors: usize,
        digest: Option<[u8; 32]>,
        config: QueryConfig,
        now: Instant,
    ) -> Self {
        let mut sources: Vec<QuerySource> = peers
            .iter()
            .flat_map(|(id, addrs)| {
                addrs
                    .iter()
                    .map(|&addr| QuerySource::Peer(PeerAddr { id: *id, addr }))
            })
            .collect();
        for (peer, through) in relays {
            let at = sources
                .iter()
                .position(|source| matches!(source, QuerySource::Peer(p) if p.id == *peer))
                .map_or(sources.len(), |first| first + 1);
            for relay in through.iter().rev() {
                sources.insert(
                    at,
                    QuerySource::Relayed {
                        peer: *peer,
                        relay: *relay,
                    },
                );
            }
        }
        sources.extend((0..mirrors).map(QuerySource::Mirror));
        let count = sources.len();
        let mut query = Self {
            config,
            digest,
            sources,
            states: vec![State::NotAsked; count],
            why: vec![None; count],
            next: 0,
            next_at: now,
            until: config.within.map(|within| now + within),
            wrong_bytes: false,
            actions: VecDeque::new(),
            outcome: None,
            taken: false,
        };
        query.step(now);
        query
    }

    /// The sources, in the order asked.
    pub fn sources(&self) -> &[QuerySource] {
        &self.sources
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<QueryAction> {
        self.actions.pop_front()
    }

    /// How the query ended, once it has (given once; the driver then
    /// closes what is left).
    pub fn poll_outcome(&mut self) -> Option<QueryOutcome> {
        if self.taken || !self.actions.is_empty() {
            return None;
        }
        let outcome = self.outcome.take()?;
        self.taken = true;
        Some(outcome)
    }

    /// Whether the query has ended.
    pub fn is_done(&self) -> bool {
        self.outcome.is_some() || self.taken
    }

    /// When [`Self::handle_timeout`] is due next, if anything waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_done() {
            return None;
        }
        let asking = self.states.iter().any(|s| matches!(s, State::Asked(_)));
        let next = (self.next < self.sources.len() && asking).then_some(self.next_at);
        self.states
            .iter()
            .filter_map(|state| match state {
                State::Asked(asked) => Some(asked),
                _ => None,
            })
            .flat_map(|asked| {
                [
                    Some(asked.deadline),
                    asked.redial_at,
                    asked.punch.as_ref().map(|(at, _)| *at),
                    asked.fallback.map(|(at, _)| at),
                ]
            })
            .flatten()
            .chain(next)
            .min()
    }

    /// Time passed: deadlines, redials, punches and the next source.
    pub fn handle_timeout(&mut self, now: Instant) {
        for source in 0..self.sources.len() {
            if self.is_done() {
                return;
            }
            let State::Asked(asked) = &mut self.states[source] else {
                continue;
            };
            if now >= asked.deadline {
                let reason = match asked.last_error.take() {
                    Some(last) => format!("no answer in {} (last: {last})", seconds(asked.wait)),
                    None => format!("no answer in {}", seconds(asked.wait)),
                };
                self.end(source, reason);
                continue;
            }
            let peer = match self.sources[source] {
                QuerySource::Peer(peer) => Some(peer),
                _ => None,
            };
            if let (Some(at), Some(peer)) = (asked.redial_at, peer)
                && now >= at
            {
                asked.redial_at = None;
                Self::dial(&mut self.actions, source, asked, peer);
            }
            if let QuerySource::Relayed { peer, .. } = self.sources[source] {
                if asked.punch.as_ref().is_some_and(|(at, _)| now >= *at)
                    && let Some((_, addrs)) = asked.punch.take()
                {
                    for addr in addrs {
                        Self::dial(
                            &mut self.actions,
                            source,
                            asked,
                            PeerAddr { id: peer, addr },
                        );
                    }
                }
                if let Some((at, path)) = asked.fallback
                    && now >= at
                {
                    asked.fallback = None;
                    Self::dial(
                        &mut self.actions,
                        source,
                        asked,
                        PeerAddr {
                            id: peer,
                            addr: path,
                        },
                    );
                }
                self.check_relayed(source);
            }
        }
        self.step(now);
    }

    /// A dial of `source` connected.
    pub fn handle_connected(&mut self, source: usize, dial: DialId) {
        let Some(asked) = self.asked(source) else {
            return;
        };
        asked.dialing = asked.dialing.saturating_sub(1);
        if !asked.querying {
            asked.querying = true;
            // The first connection up is the one asked: a relayed source's
            // dials still to come are not made.
            asked.punch = None;
            asked.fallback = None;
            self.actions.push_back(QueryAction::Query { source, dial });
        }
    }

    /// A dial of `source` failed: at the first packet (`refused`: the
    /// peer is busy), or otherwise (`error`, the dial's own words).
    pub fn handle_dial_failed(
        &mut self,
        source: usize,
        _dial: DialId,
        refused: bool,
        error: String,
        now: Instant,
    ) {
        let (attempts, first_pause) = (
            self.config.refused_attempts,
            self.config.refused_first_pause,
        );
        let relayed = matches!(self.sources.get(source), Some(QuerySource::Relayed { .. }));
        let Some(asked) = self.asked(source) else {
            return;
        };
        asked.dialing = asked.dialing.saturating_sub(1);
        if refused && !relayed && asked.refusals < attempts {
            asked.redial_at = Some(now + first_pause * 2u32.pow(asked.refusals));
            asked.refusals += 1;
            asked.last_error = Some(error);
            return;
        }
        asked.last_error = Some(error.clone());
        if relayed {
            self.check_relayed(source);
        } else if !asked.querying {
            self.end(source, error);
        }
        self.step(now);
    }

    /// What `source` answered: a peer's query on its connection, or a
    /// mirror's read.
    pub fn handle_answer(&mut self, source: usize, answer: Answer, now: Instant) {
        if !matches!(self.states.get(source), Some(State::Asked(_))) {
            return;
        }
        match answer {
            Answer::Bytes(bytes) => {
                let got = Sha256Digest::of(&bytes);
                if self.digest.is_none_or(|digest| got.0 == digest) {
                    self.found(source, bytes);
                    return;
                }
                self.wrong_bytes = true;
                self.end(
                    source,
                    format!(
                        "serves another manifest ({} bytes, SHA-256 {got})",
                        bytes.len()
                    ),
                );
            }
            Answer::WrongBytes(why) => {
                self.wrong_bytes = true;
                self.end(source, why);
            }
            Answer::Failed(why) => self.end(source, why),
        }
        self.step(now);
    }

    /// What the relay link of a relayed `source` said.
    pub fn handle_relay(&mut self, source: usize, news: RelayNews, now: Instant) {
        let Some(QuerySource::Relayed { peer, relay }) = self.sources.get(source).copied() else {
            return;
        };
        let (punch_delay, fallback_after) =
            (self.config.punch_delay, self.config.relay_fallback_after);
        let Some(asked) = self.asked(source) else {
            return;
        };
        // Once the relay introduced the peer, the punch and the channel
        // go on whatever the link says later (a registration lost and
        // refused again, say).
        let punching = asked.relaying == Some(Relaying::Punching);
        match news {
            // Registered, or registered again after a loss before the
            // relay's Connect came: the introduction is asked (again: a
            // link made again does not repeat one it sent).
            RelayNews::Registered if !punching => {
                asked.relaying = Some(Relaying::Introducing);
                self.actions
                    .push_back(QueryAction::Introduce { source, peer });
            }
            RelayNews::Registered => {}
            RelayNews::Refused(_) | RelayNews::IntroduceFailed(_) if punching => {}
            RelayNews::Refused(reason) => {
                self.end(source, format!("relay {relay}: not registered: {reason}"));
            }
            RelayNews::IntroduceFailed(reason) => {
                self.end(source, format!("relay {relay}: no introduction: {reason}"));
            }
            RelayNews::Lost(reason) => asked.last_error = Some(format!("relay {relay}: {reason}")),
            RelayNews::Ended => {
                let reason = asked
                    .last_error
                    .take()
                    .unwrap_or_else(|| format!("relay {relay}: the link ended"));
                if asked.relaying != Some(Relaying::Punching) {
                    self.end(source, reason);
                } else {
                    asked.last_error = Some(reason);
                }
            }
            RelayNews::Connect { addrs, path } => {
                if punching {
                    return;
                }
                asked.relaying = Some(Relaying::Punching);
                let direct: Vec<SocketAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|addr| !is_relay_path(*addr))
                    .take(MAX_PUNCH_ADDRS)
                    .collect();
                asked.punch = Some((now + punch_delay, direct.clone()));
                asked.fallback = Some((now + fallback_after, path));
                self.actions
                    .push_back(QueryAction::OpenPaths { addrs: direct });
            }
        }
        self.step(now);
    }

    /// The source's state while it is asked.
    fn asked(&mut self, source: usize) -> Option<&mut Asked> {
        match self.states.get_mut(source) {
            Some(State::Asked(asked)) if self.outcome.is_none() => Some(asked),
            _ => None,
        }
    }

    fn dial(actions: &mut VecDeque<QueryAction>, source: usize, asked: &mut Asked, addr: PeerAddr) {
        let dial = asked.dials;
        asked.dials += 1;
        asked.dialing += 1;
        actions.push_back(QueryAction::Dial { source, dial, addr });
    }

    /// A relayed source whose dials all failed, with none to come, ends.
    fn check_relayed(&mut self, source: usize) {
        let Some(asked) = self.asked(source) else {
            return;
        };
        let spent = asked.relaying == Some(Relaying::Punching)
            && asked.punch.is_none()
            && asked.fallback.is_none()
            && asked.dialing == 0
            && !asked.querying;
        if spent {
            let last = asked.last_error.take();
            let relay = match self.sources[source] {
                QuerySource::Relayed { relay, .. } => relay,
                _ => return,
            };
            let reason = format!(
                "through relay {relay}: {}",
                last.unwrap_or_else(|| "no answer".to_owned())
            );
            self.end(source, reason);
        }
    }

    fn found(&mut self, source: usize, bytes: Vec<u8>) {
        self.outcome = Some(QueryOutcome::Found { source, bytes });
        // Everything still under way stops.
        for (index, state) in self.states.iter_mut().enumerate() {
            if matches!(state, State::Asked(_)) {
                self.actions.push_back(QueryAction::Stop { source: index });
            }
            *state = State::Ended;
        }
    }

    fn end(&mut self, source: usize, reason: String) {
        if matches!(self.states[source], State::Asked(_)) {
            self.actions.push_back(QueryAction::Stop { source });
        }
        self.states[source] = State::Ended;
        self.why[source] = Some(reason);
    }

    /// Asks the next sources that are due, and ends the query when nothing
    /// is left.
    fn step(&mut self, now: Instant) {
        if self.is_done() {
            return;
        }
        let count = self.sources.len();
        loop {
            let asking = self.states.iter().any(|s| matches!(s, State::Asked(_)));
            if self.next >= count || (asking && now < self.next_at) {
                break;
            }
            let wait = match self.until {
                Some(until) => self
                    .config
                    .timeout
                    .min(until.saturating_duration_since(now)),
                None => self.config.timeout,
            };
            if wait < self.config.min_ask.min(self.config.timeout) {
                // Too little left to reach anyone: not worth showing this
                // host to the rest.
                for slot in &mut self.why[self.next..] {
                    *slot = Some("not asked: the time to give up came first".to_owned());
                }
                for state in &mut self.states[self.next..] {
                    *state = State::Ended;
                }
                self.next = count;
                break;
            }
            let source = self.next;
            self.next += 1;
            self.next_at = now + self.config.next_source_delay;
            let mut asked = Asked {
                wait,
                deadline: now + wait,
                dials: 0,
                dialing: 0,
                querying: false,
                refusals: 0,
                redial_at: None,
                relaying: None,
                punch: None,
                fallback: None,
                last_error: None,
            };
            match self.sources[source] {
                QuerySource::Peer(peer) => Self::dial(&mut self.actions, source, &mut asked, peer),
                QuerySource::Relayed { .. } => {
                    asked.relaying = Some(Relaying::Registering);
                    self.actions.push_back(QueryAction::StartRelay { source });
                }
                QuerySource::Mirror(mirror) => {
                    asked.querying = true;
                    self.actions
                        .push_back(QueryAction::FetchMirror { source, mirror });
                }
            }
            self.states[source] = State::Asked(Box::new(asked));
        }
        let asking = self.states.iter().any(|s| matches!(s, State::Asked(_)));
        if !asking && self.next >= count && self.outcome.is_none() {
            let why = self
                .why
                .iter()
                .map(|why| why.clone().unwrap_or_else(|| "not asked".to_owned()))
                .collect();
            self.outcome = Some(QueryOutcome::NotFound {
                why,
                wrong_bytes: self.wrong_bytes,
            });
        }
    }
}

/// `10 s`, `2.5 s`, or `300 ms` under a second.
pub fn seconds(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

pub mod beyond;
pub mod rounds;

#[cfg(test)]
mod tests;
