//! [`RelayLinkCore`]: every decision of a node's link to one relay
//! (`docs/relay.md`, section 6), sans-IO, as [`super::RelayCore`] is the
//! relay's. The driver (`swarm/src/relay/client.rs`) dials when told,
//! writes the messages it is given on the control stream, hands every
//! message it reads and every loss in, and wakes at
//! [`RelayLinkCore::poll_timeout`]; it decides nothing.
//!
//! What is decided here:
//! - **when to connect**: at once, then after every loss or refusal that
//!   leaves room for another try, after a back-off of
//!   [`LinkConfig::first_backoff`] doubling to [`LinkConfig::most_backoff`];
//!   a registration starts the back-off over;
//! - **what a refusal means**: `NotAllowed` (the operator lets only some
//!   peers register) ends the link for good; `Full` and `NetworkFull` (no
//!   room now) wait at least [`LinkConfig::full_wait`] before the next try;
//!   `TooOften` waits the back-off;
//! - **what goes on the control stream**: the Register first (again with
//!   what changed when the node's addresses change), then the
//!   introductions the node asks for while registered (one asked before
//!   is sent once registered; at most [`MAX_PENDING`] wait);
//! - **what a relay's message is**: a node's message from the relay, or
//!   Registered twice, breaks the protocol and ends the session (the
//!   link tries again later).
//!
//! Invariants: at most one connection at a time (a Connect is asked only
//! from Waiting); nothing is sent but Register before Registered; what it
//! holds is bounded (the pending introductions, the queued actions and
//! events, one per input at most).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;
use minimodel_wire::relay::{
    ChannelEnd, ConnectRole, IntroduceRefusal, MappingKind, RegisterRefusal, RelayLimits,
    RelayMessage,
};

/// Introductions asked before the link is registered, at most.
pub const MAX_PENDING: usize = 64;

/// Timers of a relay link. [`Default`] holds the product's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// The first wait after a loss. Default 1 s.
    pub first_backoff: Duration,
    /// The longest wait between tries. Default 60 s.
    pub most_backoff: Duration,
    /// The least wait after a refusal for want of room (`Full`,
    /// `NetworkFull`). Default 30 s.
    pub full_wait: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_secs(1),
            most_backoff: Duration::from_secs(60),
            full_wait: Duration::from_secs(30),
        }
    }
}

/// What a node registers with (its Register message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRegistration {
    /// Program name and version.
    pub agent: String,
    /// Where it listens that peers may reach without its router, at most
    /// 4.
    pub addrs: Vec<SocketAddr>,
    /// How its router maps its socket, as it knows it.
    pub mapping: MappingKind,
}

impl LinkRegistration {
    fn message(&self) -> RelayMessage {
        RelayMessage::Register {
            agent: self.agent.clone(),
            addrs: self.addrs.clone(),
            mapping: self.mapping,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Dial the relay (its id pinned when known) and open the control
    /// stream; then [`RelayLinkCore::handle_connected`] or
    /// [`RelayLinkCore::handle_lost`].
    Connect,
    /// Write this message on the control stream.
    Send(RelayMessage),
    /// Close the connection (the session ended here).
    Close,
}

/// What the link tells its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Registered with the relay.
    Registered {
        /// The key the relay proved.
        id: PeerId,
        /// Where it sees us.
        observed: SocketAddr,
        /// What it allows a pair.
        limits: RelayLimits,
    },
    /// The relay refused the registration.
    Refused {
        /// Why.
        reason: RegisterRefusal,
        /// When the link tries again (`None`: never).
        again_at: Option<Instant>,
    },
    /// The session ended (or was never made).
    Lost {
        /// Why, in words.
        reason: String,
        /// When the link tries again.
        again_at: Instant,
    },
    /// An introduction: `peer` at `addrs`, on `channel`.
    Connect {
        /// The other node.
        peer: PeerId,
        /// Where to reach it (`RelayMessage::Connect`): its LAN
        /// addresses for a node of our home, its global IPv6 addresses,
        /// then where the relay sees it.
        addrs: Vec<SocketAddr>,
        /// The pair's channel.
        channel: u64,
        /// Dial (we asked) or open (it asked).
        role: ConnectRole,
    },
    /// No introduction to `peer`.
    IntroduceFailed {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: IntroduceRefusal,
    },
    /// A channel ended.
    ChannelClosed {
        /// Which.
        channel: u64,
        /// Why.
        reason: ChannelEnd,
    },
}

/// Where the link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting to connect, at this time.
    Waiting(Instant),
    /// Dialing the relay.
    Connecting,
    /// Connected, the Register sent, not answered yet.
    Registering,
    /// Registered, with the relay's key.
    Registered(PeerId),
    /// Ended for good (the operator does not let us register).
    Done,
}

/// A node's link to one relay. See the module docs.
#[derive(Debug)]
pub struct RelayLinkCore {
    config: LinkConfig,
    registration: LinkRegistration,
    state: LinkState,
    backoff: Duration,
    /// The key the relay proved in this session's handshake.
    relay_id: Option<PeerId>,
    /// Introductions asked while not registered, sent once it is.
    pending: VecDeque<PeerId>,
    actions: VecDeque<LinkAction>,
    events: VecDeque<LinkEvent>,
}

impl RelayLinkCore {
    /// A link that connects at once, at `now`.
    pub fn new(config: LinkConfig, registration: LinkRegistration, now: Instant) -> Self {
        Self {
            config,
            registration,
            state: LinkState::Waiting(now),
            backoff: config.first_backoff,
            relay_id: None,
            pending: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Where it is.
    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// The relay's key while registered.
    pub fn registered(&self) -> Option<PeerId> {
        match self.state {
            LinkState::Registered(id) => Some(id),
            _ => None,
        }
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<LinkAction> {
        self.actions.pop_front()
    }

    /// The next thing the node hears.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            LinkState::Waiting(at) => Some(at),
            _ => None,
        }
    }

    /// Time passed: a wait that is over connects.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let LinkState::Waiting(at) = self.state
            && at <= now
        {
            self.state = LinkState::Connecting;
            self.actions.push_back(LinkAction::Connect);
        }
    }

    /// The connection and its control stream are up, the relay having
    /// proved `relay_id`: the Register goes.
    pub fn handle_connected(&mut self, relay_id: PeerId, _now: Instant) {
        if self.state != LinkState::Connecting {
            return;
        }
        self.relay_id = Some(relay_id);
        self.state = LinkState::Registering;
        self.actions
            .push_back(LinkAction::Send(self.registration.message()));
    }

    /// The connection failed or ended (`reason` in words): the link waits
    /// its back-off, then connects again.
    pub fn handle_lost(&mut self, reason: String, now: Instant) {
        if matches!(self.state, LinkState::Done | LinkState::Waiting(_)) {
            return;
        }
        let again_at = now + self.next_backoff();
        self.state = LinkState::Waiting(again_at);
        self.events.push_back(LinkEvent::Lost { reason, again_at });
    }

    /// A message the relay sent on the control stream.
    pub fn handle_message(&mut self, message: RelayMessage, now: Instant) {
        let registering = self.state == LinkState::Registering;
        let registered = matches!(self.state, LinkState::Registered(_));
        match message {
            RelayMessage::Registered { observed, limits } if registering => {
                let Some(id) = self.relay_id else {
                    return;
                };
                self.state = LinkState::Registered(id);
                self.backoff = self.config.first_backoff;
                self.events.push_back(LinkEvent::Registered {
                    id,
                    observed,
                    limits,
                });
                while let Some(peer) = self.pending.pop_front() {
                    self.actions
                        .push_back(LinkAction::Send(RelayMessage::Introduce { peer }));
                }
            }
            RelayMessage::RegisterRefused { reason } if registering || registered => {
                self.actions.push_back(LinkAction::Close);
                let again_at = match reason {
                    RegisterRefusal::NotAllowed => None,
                    RegisterRefusal::Full | RegisterRefusal::NetworkFull => {
                        Some(now + self.next_backoff().max(self.config.full_wait))
                    }
                    RegisterRefusal::TooOften => Some(now + self.next_backoff()),
                };
                self.state = again_at.map_or(LinkState::Done, LinkState::Waiting);
                self.pending.clear();
                self.events
                    .push_back(LinkEvent::Refused { reason, again_at });
            }
            RelayMessage::Connect {
                peer,
                addrs,
                channel,
                role,
            } if registered => self.events.push_back(LinkEvent::Connect {
                peer,
                addrs,
                channel,
                role,
            }),
            RelayMessage::IntroduceFailed { peer, reason } if registered => self
                .events
                .push_back(LinkEvent::IntroduceFailed { peer, reason }),
            RelayMessage::ChannelClosed { channel, reason } if registered => self
                .events
                .push_back(LinkEvent::ChannelClosed { channel, reason }),
            other => self.broken(&format!("the relay sent {} out of turn", name(&other)), now),
        }
    }

    /// The node asks to be introduced to `peer`: sent now when registered,
    /// else once it is (false when too many wait, or the link ended).
    pub fn introduce(&mut self, peer: PeerId) -> bool {
        match self.state {
            LinkState::Registered(_) => {
                self.actions
                    .push_back(LinkAction::Send(RelayMessage::Introduce { peer }));
                true
            }
            LinkState::Done => false,
            _ if self.pending.len() >= MAX_PENDING => false,
            _ => {
                if !self.pending.contains(&peer) {
                    self.pending.push_back(peer);
                }
                true
            }
        }
    }

    /// What the node registers with now: sent again when registered or
    /// registering (the relay updates what it knows), kept for the next
    /// session otherwise.
    pub fn update(&mut self, registration: LinkRegistration) {
        if registration == self.registration {
            return;
        }
        self.registration = registration;
        if matches!(
            self.state,
            LinkState::Registered(_) | LinkState::Registering
        ) {
            self.actions
                .push_back(LinkAction::Send(self.registration.message()));
        }
    }

    /// The relay broke the protocol: the session ends, the link tries
    /// again after its back-off.
    fn broken(&mut self, reason: &str, now: Instant) {
        self.actions.push_back(LinkAction::Close);
        self.handle_lost(reason.to_owned(), now);
    }

    /// The wait before the next try, doubling for the one after.
    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.most_backoff);
        wait
    }
}

fn name(message: &RelayMessage) -> &'static str {
    match message {
        RelayMessage::Register { .. } => "a Register (a node's message)",
        RelayMessage::Introduce { .. } => "an Introduce (a node's message)",
        RelayMessage::Registered { .. } => "a Registered",
        RelayMessage::RegisterRefused { .. } => "a RegisterRefused",
        RelayMessage::Connect { .. } => "a Connect",
        RelayMessage::IntroduceFailed { .. } => "an IntroduceFailed",
        RelayMessage::ChannelClosed { .. } => "a ChannelClosed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(addrs: &[&str]) -> LinkRegistration {
        LinkRegistration {
            agent: "test/1".into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            mapping: MappingKind::Unknown,
        }
    }

    fn relay() -> PeerId {
        PeerId([9; 32])
    }

    fn registered() -> RelayMessage {
        RelayMessage::Registered {
            observed: "81.2.69.9:5000".parse().unwrap(),
            limits: RelayLimits {
                pair_rate: 0,
                pair_bytes_per_hour: 0,
                channel_idle_secs: 60,
            },
        }
    }

    /// A link on a virtual clock, with what it asked and said.
    struct Link {
        core: RelayLinkCore,
        base: Instant,
        now: Instant,
    }

    impl Link {
        fn new() -> Self {
            let base = Instant::now();
            Link {
                core: RelayLinkCore::new(LinkConfig::default(), registration(&[]), base),
                base,
                now: base,
            }
        }

        fn actions(&mut self) -> Vec<LinkAction> {
            std::iter::from_fn(|| self.core.poll_action()).collect()
        }

        fn events(&mut self) -> Vec<LinkEvent> {
            std::iter::from_fn(|| self.core.poll_event()).collect()
        }

        /// Runs the clock to its next deadline; the seconds since the
        /// start.
        fn wake(&mut self) -> f64 {
            let at = self.core.poll_timeout().expect("a deadline");
            self.now = at.max(self.now);
            self.core.handle_timeout(self.now);
            (self.now - self.base).as_secs_f64()
        }

        /// Connects and registers.
        fn register(&mut self) {
            self.wake();
            assert_eq!(self.actions(), [LinkAction::Connect]);
            self.core.handle_connected(relay(), self.now);
            assert!(matches!(
                self.actions().as_slice(),
                [LinkAction::Send(RelayMessage::Register { .. })]
            ));
            self.core.handle_message(registered(), self.now);
        }
    }

    #[test]
    fn it_connects_at_once_registers_and_sends_what_was_asked_before() {
        let mut link = Link::new();
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        assert!(link.core.introduce(a));
        assert!(link.core.introduce(a), "asked twice, sent once");
        link.register();
        assert_eq!(link.core.registered(), Some(relay()));
        assert!(matches!(
            link.events().as_slice(),
            [LinkEvent::Registered { id, .. }] if *id == relay()
        ));
        assert_eq!(
            link.actions(),
            [LinkAction::Send(RelayMessage::Introduce { peer: a })]
        );
        assert!(link.core.introduce(b));
        assert_eq!(
            link.actions(),
            [LinkAction::Send(RelayMessage::Introduce { peer: b })]
        );
        // What the relay says for us goes to the node.
        link.core.handle_message(
            RelayMessage::IntroduceFailed {
                peer: b,
                reason: IntroduceRefusal::NotRegistered,
            },
            link.now,
        );
        assert_eq!(
            link.events(),
            [LinkEvent::IntroduceFailed {
                peer: b,
                reason: IntroduceRefusal::NotRegistered
            }]
        );
        assert_eq!(link.core.poll_timeout(), None, "nothing to wait for");
    }

    #[test]
    fn losses_back_off_from_one_second_doubling_to_a_minute_and_a_registration_starts_over() {
        let mut link = Link::new();
        let mut tries = Vec::new();
        for _ in 0..9 {
            tries.push(link.wake());
            assert_eq!(link.actions(), [LinkAction::Connect]);
            link.core.handle_lost("no answer".into(), link.now);
            assert!(matches!(link.events().as_slice(), [LinkEvent::Lost { .. }]));
        }
        let waits: Vec<f64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(waits, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]);
        link.register();
        link.core.handle_lost("gone".into(), link.now);
        let lost_at = link.now;
        assert_eq!(
            link.core.poll_timeout(),
            Some(lost_at + Duration::from_secs(1)),
            "a registration starts the back-off over"
        );
    }

    #[test]
    fn a_refusal_ends_the_link_only_when_the_operator_does_not_allow_it() {
        // Not allowed: never again.
        let mut link = Link::new();
        link.wake();
        link.actions();
        link.core.handle_connected(relay(), link.now);
        link.actions();
        assert!(link.core.introduce(PeerId([1; 32])));
        link.core.handle_message(
            RelayMessage::RegisterRefused {
                reason: RegisterRefusal::NotAllowed,
            },
            link.now,
        );
        assert_eq!(link.actions(), [LinkAction::Close]);
        assert_eq!(
            link.events(),
            [LinkEvent::Refused {
                reason: RegisterRefusal::NotAllowed,
                again_at: None
            }]
        );
        assert_eq!(link.core.state(), &LinkState::Done);
        assert_eq!(link.core.poll_timeout(), None);
        assert!(!link.core.introduce(PeerId([2; 32])));
        link.core.handle_lost("closed".into(), link.now);
        assert!(link.events().is_empty(), "its close is no loss");

        // No room now: a try again after at least 30 s; too often: the
        // back-off.
        for (reason, wait) in [
            (RegisterRefusal::Full, 30),
            (RegisterRefusal::NetworkFull, 30),
            (RegisterRefusal::TooOften, 1),
        ] {
            let mut link = Link::new();
            link.wake();
            link.actions();
            link.core.handle_connected(relay(), link.now);
            link.actions();
            link.core
                .handle_message(RelayMessage::RegisterRefused { reason }, link.now);
            assert_eq!(link.actions(), [LinkAction::Close]);
            let again = link.now + Duration::from_secs(wait);
            assert_eq!(
                link.events(),
                [LinkEvent::Refused {
                    reason,
                    again_at: Some(again)
                }]
            );
            assert_eq!(link.core.poll_timeout(), Some(again), "{reason:?}");
        }
    }

    #[test]
    fn a_relay_that_speaks_out_of_turn_ends_the_session_and_the_link_tries_again() {
        for wrong in [
            RelayMessage::Introduce {
                peer: PeerId([1; 32]),
            },
            registered(),
            RelayMessage::Register {
                agent: "x".into(),
                addrs: Vec::new(),
                mapping: MappingKind::Unknown,
            },
        ] {
            let mut link = Link::new();
            link.register();
            link.events();
            link.core.handle_message(wrong.clone(), link.now);
            assert_eq!(link.actions(), [LinkAction::Close], "{wrong:?}");
            assert!(matches!(link.events().as_slice(), [LinkEvent::Lost { .. }]));
            assert_eq!(
                link.core.poll_timeout(),
                Some(link.now + Duration::from_secs(1))
            );
        }
        // A Connect before Registered is out of turn too.
        let mut link = Link::new();
        link.wake();
        link.actions();
        link.core.handle_connected(relay(), link.now);
        link.actions();
        link.core.handle_message(
            RelayMessage::Connect {
                peer: PeerId([1; 32]),
                addrs: Vec::new(),
                channel: 7,
                role: ConnectRole::Dial,
            },
            link.now,
        );
        assert_eq!(link.actions(), [LinkAction::Close]);
        assert!(link.core.registered().is_none());
    }

    #[test]
    fn new_addresses_are_registered_again_while_registered_and_kept_for_later_otherwise() {
        let mut link = Link::new();
        link.core.update(registration(&["192.168.1.5:4433"]));
        assert!(link.actions().is_empty(), "not connected: kept");
        link.wake();
        link.actions();
        link.core.handle_connected(relay(), link.now);
        assert_eq!(
            link.actions(),
            [LinkAction::Send(
                registration(&["192.168.1.5:4433"]).message()
            )]
        );
        link.core.handle_message(registered(), link.now);
        link.core.update(registration(&["192.168.1.5:4433"]));
        assert!(link.actions().is_empty(), "nothing changed");
        link.core.update(registration(&["192.168.1.6:4433"]));
        assert_eq!(
            link.actions(),
            [LinkAction::Send(
                registration(&["192.168.1.6:4433"]).message()
            )]
        );
    }

    #[test]
    fn introductions_asked_before_registering_are_bounded() {
        let mut link = Link::new();
        for n in 0..MAX_PENDING {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(n as u64).to_be_bytes());
            assert!(link.core.introduce(PeerId(id)));
        }
        assert!(!link.core.introduce(PeerId([0xff; 32])));
        link.register();
        let sent = link
            .actions()
            .into_iter()
            .filter(|a| matches!(a, LinkAction::Send(RelayMessage::Introduce { .. })))
            .count();
        assert_eq!(sent, MAX_PENDING);
    }
}
