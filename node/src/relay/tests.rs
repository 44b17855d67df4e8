//! The relay's decisions, driven by hand on a virtual clock: who may
//! register, introductions and their limits, what a datagram may do, and
//! that what it holds stays bounded under 1,000 registrations and a flood
//! of introductions.

use super::*;

fn peer(n: u32) -> PeerId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[31] = 1;
    PeerId(id)
}

/// Node `n`'s address: a /24 of its own for each.
fn addr_of(n: u32) -> SocketAddr {
    let [_, a, b, c] = n.to_be_bytes();
    SocketAddr::from(([20 + a, b, c, 2], 4433))
}

struct Relay {
    core: RelayCore,
    now: Instant,
    sent: Vec<(ConnId, RelayMessage)>,
    closed: Vec<(ConnId, &'static str)>,
    aborted: Vec<(ConnId, &'static str)>,
    /// Connections whose node reads nothing: the driver writes none of
    /// their frames, and their closes do not end.
    not_reading: BTreeSet<ConnId>,
}

impl Relay {
    fn new(config: RelayConfig) -> Self {
        Self {
            core: RelayCore::new(config, 7).unwrap(),
            now: Instant::now(),
            sent: Vec::new(),
            closed: Vec::new(),
            aborted: Vec::new(),
            not_reading: BTreeSet::new(),
        }
    }

    /// Carries out what the relay decided, as a driver would: a frame to
    /// a node that reads is written at once, a closed connection ends at
    /// once (one whose node reads nothing: neither).
    fn drain(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                RelayAction::Send { conn, message } => {
                    self.sent.push((conn, message));
                    if !self.not_reading.contains(&conn) {
                        self.core.handle_written(conn, self.now);
                    }
                }
                RelayAction::Close { conn, reason } => {
                    self.closed.push((conn, reason));
                    if !self.not_reading.contains(&conn) {
                        self.core.handle_closed(conn, self.now);
                    }
                }
                RelayAction::Abort { conn, reason } => {
                    self.aborted.push((conn, reason));
                    self.core.handle_closed(conn, self.now);
                }
            }
        }
    }

    /// Node `n` connects (its handshake done); its connection.
    fn connect(&mut self, n: u32) -> ConnId {
        self.connect_from(n, addr_of(n))
    }

    /// Node `n` connects from `from` (its handshake done); its connection.
    fn connect_from(&mut self, n: u32, from: SocketAddr) -> ConnId {
        let conn = match self.core.handle_incoming(from, true, self.now) {
            RelayIncoming::Accept(conn) => conn,
            other => panic!("node {n} not let in: {other:?}"),
        };
        self.core
            .handle_handshake(conn, Some((peer(n), from)), self.now);
        self.core.check_held();
        conn
    }

    /// Node `n` connects and registers; its connection.
    fn register(&mut self, n: u32) -> ConnId {
        let conn = self.connect(n);
        self.register_conn(conn)
    }

    /// Node `n` connects from `from` and registers; its connection.
    fn register_from(&mut self, n: u32, from: SocketAddr) -> ConnId {
        let conn = self.connect_from(n, from);
        self.register_conn(conn)
    }

    /// What `conn`'s Register was answered with.
    fn registered(&mut self, conn: ConnId) -> Option<RegisterRefusal> {
        match self.to(conn).as_slice() {
            [RelayMessage::Registered { .. }] => None,
            [RelayMessage::RegisterRefused { reason }] => Some(*reason),
            other => panic!("{conn:?} heard {other:?}"),
        }
    }

    fn register_conn(&mut self, conn: ConnId) -> ConnId {
        self.core.handle_message(
            conn,
            RelayMessage::Register {
                agent: "test/1".into(),
                addrs: vec![],
                mapping: MappingKind::Unknown,
            },
            self.now,
        );
        self.drain();
        self.core.check_held();
        conn
    }

    fn introduce(&mut self, conn: ConnId, target: u32) {
        self.core.handle_message(
            conn,
            RelayMessage::Introduce { peer: peer(target) },
            self.now,
        );
        self.drain();
    }

    /// The messages sent to `conn` since the last call.
    fn to(&mut self, conn: ConnId) -> Vec<RelayMessage> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(c, _)| *c == conn);
        self.sent = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        while let Some(at) = self.core.poll_timeout() {
            if at > self.now {
                break;
            }
            self.core.handle_timeout(at.max(self.now));
        }
        self.drain();
    }
}

fn channel_of(messages: &[RelayMessage]) -> Option<u64> {
    messages.iter().find_map(|m| match m {
        RelayMessage::Connect { channel, .. } => Some(*channel),
        _ => None,
    })
}

#[test]
fn a_node_registers_and_learns_where_it_is_seen_and_the_limits() {
    let mut relay = Relay::new(RelayConfig::default());
    let conn = relay.register(1);
    assert_eq!(
        relay.to(conn),
        [RelayMessage::Registered {
            observed: addr_of(1),
            limits: RelayConfig::default().limits()
        }]
    );
    assert_eq!(relay.core.counts().registrations, 1);
}

#[test]
fn only_allowed_peers_register_and_a_full_relay_refuses() {
    let config = RelayConfig {
        allow: Some([peer(1), peer(2), peer(3)].into_iter().collect()),
        max_registrations: 2,
        ..RelayConfig::default()
    };
    let mut relay = Relay::new(config);
    let stranger = relay.register(9);
    assert_eq!(
        relay.to(stranger),
        [RelayMessage::RegisterRefused {
            reason: RegisterRefusal::NotAllowed
        }]
    );
    assert_eq!(relay.closed, [(stranger, "registration refused")]);
    relay.register(1);
    relay.register(2);
    let third = relay.register(3);
    assert_eq!(
        relay.to(third),
        [RelayMessage::RegisterRefused {
            reason: RegisterRefusal::Full
        }]
    );
    assert_eq!(relay.core.counts().registrations, 2);
    assert_eq!(
        relay.core.counts().refused,
        [
            (RelayRefusal::NotAllowed, 1),
            (RelayRefusal::Registrations, 1)
        ]
        .into_iter()
        .collect()
    );
}

#[test]
fn two_registered_nodes_are_introduced_on_one_channel_and_a_datagram_goes_only_between_them() {
    let mut relay = Relay::new(RelayConfig::default());
    let a = relay.register(1);
    let b = relay.register(2);
    relay.sent.clear();
    relay.introduce(a, 2);
    let to_a = relay.to(a);
    let to_b = relay.to(b);
    assert!(matches!(
        &to_a[..],
        [RelayMessage::Connect { peer: p, addrs, role: ConnectRole::Dial, .. }]
            if *p == peer(2) && addrs == &[addr_of(2)]
    ));
    assert!(matches!(
        &to_b[..],
        [RelayMessage::Connect { peer: p, addrs, role: ConnectRole::Open, .. }]
            if *p == peer(1) && addrs == &[addr_of(1)]
    ));
    let channel = channel_of(&to_a).unwrap();
    assert_eq!(channel_of(&to_b), Some(channel));
    let now = relay.now;
    assert_eq!(
        relay.core.handle_datagram(addr_of(1), channel, 1200, now),
        Forward::To(addr_of(2))
    );
    assert_eq!(
        relay.core.handle_datagram(addr_of(2), channel, 1200, now),
        Forward::To(addr_of(1))
    );
    // Another address, or another channel: nothing goes on.
    assert_eq!(
        relay.core.handle_datagram(addr_of(3), channel, 1200, now),
        Forward::Drop(DropReason::NotAnEnd)
    );
    assert_eq!(
        relay
            .core
            .handle_datagram(addr_of(1), channel ^ 1, 1200, now),
        Forward::Drop(DropReason::UnknownChannel)
    );
    // Asked again (a punch tried again): the same channel.
    relay.introduce(a, 2);
    assert_eq!(channel_of(&relay.to(a)), Some(channel));
    assert_eq!(relay.core.counts().channels, 1);
}

#[test]
fn an_unregistered_target_gets_nothing_relayed() {
    let mut relay = Relay::new(RelayConfig::default());
    let a = relay.register(1);
    // Node 2 is connected but never registered; node 3 not even that.
    let b = relay.connect(2);
    relay.sent.clear();
    relay.introduce(a, 2);
    assert_eq!(
        relay.to(a),
        [RelayMessage::IntroduceFailed {
            peer: peer(2),
            reason: IntroduceRefusal::NotRegistered
        }]
    );
    relay.introduce(a, 3);
    assert_eq!(
        relay.to(a),
        [RelayMessage::IntroduceFailed {
            peer: peer(3),
            reason: IntroduceRefusal::NotRegistered
        }]
    );
    assert!(
        relay.to(b).is_empty(),
        "the unregistered node hears nothing"
    );
    assert_eq!(relay.core.counts().channels, 0);
    // With no channel, any datagram on any number is dropped: a guess
    // reaches nobody.
    let now = relay.now;
    for channel in [0, 1, u64::MAX, 0x1234_5678] {
        for from in [addr_of(1), addr_of(2), addr_of(3)] {
            assert_eq!(
                relay.core.handle_datagram(from, channel, 1200, now),
                Forward::Drop(DropReason::UnknownChannel)
            );
        }
    }
    assert_eq!(relay.core.counts().forwarded, 0);
    // An unregistered node that asks for an introduction is closed.
    relay.introduce(b, 1);
    assert!(
        relay
            .closed
            .contains(&(b, "introduction asked before registering"))
    );
    // And one that never registers is closed in time.
    let late = relay.connect(4);
    relay.advance(RelayConfig::default().register_within);
    assert!(relay.closed.contains(&(late, "did not register in time")));
}

#[test]
fn a_pair_is_held_to_its_rate_and_its_bytes_for_the_hour() {
    let config = RelayConfig {
        pair_rate: 1_000_000,
        pair_bytes_per_hour: 10_000_000,
        ..RelayConfig::default()
    };
    let mut relay = Relay::new(config);
    let a = relay.register(1);
    relay.register(2);
    relay.introduce(a, 2);
    let channel = channel_of(&relay.to(a)).unwrap();
    // Over 10 s at full tilt: about 10 s of the rate (and the burst) go on.
    let mut forwarded = 0u64;
    let start = relay.now;
    for ms in 0..9_000u64 {
        let now = start + Duration::from_millis(ms);
        for _ in 0..10 {
            if let Forward::To(_) = relay.core.handle_datagram(addr_of(1), channel, 1200, now) {
                forwarded += 1200;
            }
        }
    }
    assert!(
        (9_000_000..=9_300_000).contains(&forwarded),
        "{forwarded} bytes in 9 s at 1 MB/s"
    );
    assert!(relay.core.counts().dropped[&DropReason::RateLimited] > 0);
    // The hour's 10 MB run out: the channel ends, both ends are told,
    // and the pair is not introduced again this hour.
    let mut later = start + Duration::from_secs(20);
    let mut ended = false;
    for _ in 0..10_000 {
        later += Duration::from_millis(1);
        if relay.core.handle_datagram(addr_of(1), channel, 1200, later)
            == Forward::Drop(DropReason::HourUsed)
        {
            ended = true;
            break;
        }
    }
    assert!(ended);
    assert_eq!(
        relay.core.handle_datagram(addr_of(1), channel, 1200, later),
        Forward::Drop(DropReason::UnknownChannel),
        "the channel is gone"
    );
    relay.now = later;
    relay.drain();
    assert_eq!(
        relay.to(a),
        [RelayMessage::ChannelClosed {
            channel,
            reason: ChannelEnd::HourUsed
        }]
    );
    relay.introduce(a, 2);
    assert_eq!(
        relay.to(a),
        [RelayMessage::IntroduceFailed {
            peer: peer(2),
            reason: IntroduceRefusal::HourUsed
        }]
    );
    // An hour on, it may be again.
    relay.now = start + Duration::from_secs(3_700);
    relay.introduce(a, 2);
    assert!(channel_of(&relay.to(a)).is_some());
}

#[test]
fn an_idle_channel_ends_and_a_node_that_leaves_ends_its_channels() {
    let mut relay = Relay::new(RelayConfig::default());
    let a = relay.register(1);
    let b = relay.register(2);
    let c = relay.register(3);
    relay.introduce(a, 2);
    relay.introduce(a, 3);
    relay.sent.clear();
    assert_eq!(relay.core.counts().channels, 2);
    relay.advance(Duration::from_secs(30));
    relay.core.handle_closed(c, relay.now);
    relay.drain();
    assert!(matches!(
        &relay.to(a)[..],
        [RelayMessage::ChannelClosed {
            reason: ChannelEnd::PeerGone,
            ..
        }]
    ));
    relay.advance(Duration::from_secs(30));
    assert!(matches!(
        &relay.to(b)[..],
        [RelayMessage::ChannelClosed {
            reason: ChannelEnd::Idle,
            ..
        }]
    ));
    assert_eq!(relay.core.counts().channels, 0);
}

#[test]
fn handshakes_are_limited_per_prefix_and_in_all_with_a_retry_first() {
    let config = RelayConfig {
        max_handshakes: 8,
        max_handshakes_per_network: 2,
        ..RelayConfig::default()
    };
    let mut relay = Relay::new(config);
    let now = relay.now;
    let same = |n: u8| SocketAddr::from(([30, 0, 0, n], 5000));
    assert!(matches!(
        relay.core.handle_incoming(same(1), false, now),
        RelayIncoming::Accept(_)
    ));
    assert!(matches!(
        relay.core.handle_incoming(same(2), false, now),
        RelayIncoming::Accept(_)
    ));
    assert_eq!(
        relay.core.handle_incoming(same(3), true, now),
        RelayIncoming::Refuse
    );
    for n in 0..2u32 {
        assert!(matches!(
            relay.core.handle_incoming(addr_of(n), false, now),
            RelayIncoming::Accept(_)
        ));
    }
    // Half the places taken: an unproven source is asked to prove itself.
    assert_eq!(
        relay.core.handle_incoming(addr_of(9), false, now),
        RelayIncoming::Retry
    );
    for n in 10..14u32 {
        assert!(matches!(
            relay.core.handle_incoming(addr_of(n), true, now),
            RelayIncoming::Accept(_)
        ));
    }
    assert_eq!(
        relay.core.handle_incoming(addr_of(20), true, now),
        RelayIncoming::Refuse
    );
}

/// A relay under 1,000 registrations whose nodes flood it with
/// introductions: what it holds stays within its caps (registrations,
/// channels, channels per node, the pairs' hourly counts, queued
/// messages), every node is answered at most once per second beyond its
/// rate, and the datagrams of every channel stay within its pair's rate.
#[test]
fn a_thousand_registrations_and_a_flood_of_introductions_keep_the_relay_within_its_caps() {
    let config = RelayConfig {
        max_registrations: 1000,
        max_pairs: 256,
        max_pairs_per_node: 8,
        introductions_per_minute: 60,
        pair_rate: 100_000,
        ..RelayConfig::default()
    };
    let mut relay = Relay::new(config.clone());
    let conns: Vec<ConnId> = (0..1000).map(|n| relay.register(n)).collect();
    // One more is refused: full.
    let extra = relay.register(5000);
    assert!(relay.closed.contains(&(extra, "registration refused")));
    relay.sent.clear();
    let start = relay.now;
    let mut most_queued = 0;
    let mut answers_per_node = vec![0u32; conns.len()];
    for second in 0..30u64 {
        relay.now = start + Duration::from_secs(second);
        for (n, &conn) in conns.iter().enumerate() {
            // Each node asks for 50 introductions a second, to anyone.
            for k in 0..50u32 {
                let target = (n as u32 * 7 + k * 13 + second as u32) % 1000;
                relay.core.handle_message(
                    conn,
                    RelayMessage::Introduce { peer: peer(target) },
                    relay.now,
                );
            }
            let queued = relay.core.actions.len();
            most_queued = most_queued.max(queued);
            relay.drain();
            for (to, _) in relay.sent.drain(..) {
                if let Some(index) = conns.iter().position(|c| *c == to) {
                    answers_per_node[index] += 1;
                }
            }
        }
        let counts = relay.core.counts();
        assert!(counts.registrations <= config.max_registrations);
        assert!(counts.channels <= config.max_pairs, "{counts:?}");
        assert!(relay.core.hours.len() <= HOURS_PER_PAIR * config.max_pairs);
        for conn in relay.core.conns.values() {
            let channels = conn.registration.as_ref().map_or(0, |r| r.channels.len());
            assert!(channels <= config.max_pairs_per_node);
        }
    }
    assert!(
        most_queued <= 200,
        "at most one answer per message: {most_queued}"
    );
    // 50 a second asked; 60 a minute (and 60 at once) allowed, plus one
    // RateLimited a second, plus the Connects of being asked for by others
    // (bounded by the pairs a node may be in, re-sent as those are asked
    // again): far fewer answers than requests.
    let most = *answers_per_node.iter().max().unwrap();
    assert!(
        most < 30 * 50 / 4,
        "a node got {most} answers to 1,500 requests"
    );
    // Datagrams on every channel stay within the pair's rate.
    let channels: Vec<(u64, SocketAddr)> = relay
        .core
        .channels
        .iter()
        .map(|(id, channel)| (*id, channel.ends[0].1))
        .collect();
    assert!(!channels.is_empty());
    let at = relay.now + Duration::from_secs(1);
    for (channel, from) in channels {
        let mut passed = 0u64;
        for ms in 0..1000u64 {
            let now = at + Duration::from_millis(ms);
            if let Forward::To(_) = relay.core.handle_datagram(from, channel, 1000, now) {
                passed += 1000;
            }
        }
        // One second at 100 kB/s, with a burst of 64 KiB at most.
        assert!(passed <= 100_000 + 65_536 + 1000, "{passed}");
    }
}

#[test]
fn a_settings_that_cannot_work_are_refused() {
    for (config, setting) in [
        (
            RelayConfig {
                max_registrations: 1,
                ..RelayConfig::default()
            },
            "max_registrations",
        ),
        (
            RelayConfig {
                pair_rate: 100,
                ..RelayConfig::default()
            },
            "pair_rate",
        ),
        (
            RelayConfig {
                channel_idle: Duration::from_secs(1),
                ..RelayConfig::default()
            },
            "channel_idle",
        ),
    ] {
        assert_eq!(RelayCore::new(config, 1).unwrap_err().setting, setting);
    }
}

/// Host `h`'s address in network `net` (an IPv4 /24 each), port `port`.
fn host(net: u8, h: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([100, 64, net, h], port))
}

/// One host with a fresh peer id for every connection (ids cost nothing)
/// takes only its network's share of the registrations: nodes from other
/// networks still register, up to the relay's total, and the refusals
/// are counted by the limit that made them.
#[test]
fn one_host_with_fresh_ids_takes_only_its_networks_share_of_the_registrations() {
    let config = RelayConfig {
        max_registrations: 64,
        ..RelayConfig::default()
    };
    let per_network = config.max_registrations_per_network;
    let mut relay = Relay::new(config.clone());
    let mut flooded = 0;
    for n in 0..1000u32 {
        let conn = relay.register_from(10_000 + n, host(1, 1, 1024 + n as u16));
        match relay.registered(conn) {
            None => flooded += 1,
            Some(reason) => {
                assert_eq!(reason, RegisterRefusal::NetworkFull);
                assert!(relay.closed.contains(&(conn, "registration refused")));
            }
        }
    }
    assert_eq!(flooded, per_network);
    // Another host of the same /24 is the same network.
    let neighbour = relay.register_from(20_000, host(1, 200, 4433));
    assert_eq!(
        relay.registered(neighbour),
        Some(RegisterRefusal::NetworkFull)
    );
    // Twenty hosts on twenty other networks all get in.
    for h in 0..20u8 {
        let conn = relay.register_from(30_000 + u32::from(h), host(10 + h, 7, 4433));
        assert_eq!(relay.registered(conn), None, "host {h}");
    }
    let counts = relay.core.counts();
    assert_eq!(counts.registrations, per_network + 20);
    assert_eq!(
        counts.refused,
        [(
            RelayRefusal::NetworkRegistrations,
            1000 - per_network as u64 + 1
        )]
        .into_iter()
        .collect()
    );
    // The relay's total still binds: networks fill it, and then a new one
    // is told it is full, not that its network is.
    let mut net = 100u8;
    while relay.core.counts().registrations < config.max_registrations {
        let conn = relay.register_from(40_000 + u32::from(net), host(net, 1, 4433));
        assert_eq!(relay.registered(conn), None);
        net += 1;
    }
    let late = relay.register_from(50_000, host(250, 1, 4433));
    assert_eq!(relay.registered(late), Some(RegisterRefusal::Full));
    // A node of the flooding network that registers again (a restart, the
    // same id) takes its own place, and is not refused for its network.
    let again = relay.register_from(10_000, host(1, 1, 9999));
    assert_eq!(relay.registered(again), None);
    assert_eq!(relay.core.counts().registrations, config.max_registrations);
}

/// Connections that finish their handshake and never register hold at
/// most their network's share, and the relay's, at once: once a network
/// holds its share, its next connections are refused at their first
/// packet (no state at all); one whose handshake ends beyond it is closed
/// at once; the rest at `register_within`. A node from elsewhere still
/// connects and registers.
#[test]
fn connections_that_never_register_are_capped_per_network_and_in_all() {
    let config = RelayConfig {
        max_unregistered: 40,
        ..RelayConfig::default()
    };
    let per_network = config.max_unregistered_per_network;
    let mut relay = Relay::new(config.clone());
    let now = relay.now;
    let from = |n: u32| host(1, 1, 1024 + n as u16);
    // Half the network's share comes up.
    for n in 0..4u32 {
        relay.connect_from(10_000 + n, from(n));
    }
    // Then as many handshakes as the network may have in progress, all
    // let in (the network holds less than its share), and one more
    // refused for its handshakes.
    let started: Vec<(u32, ConnId)> = (4..12u32)
        .map(|n| match relay.core.handle_incoming(from(n), true, now) {
            RelayIncoming::Accept(conn) => (n, conn),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        relay.core.handle_incoming(from(99), true, now),
        RelayIncoming::Refuse
    );
    // They end together: those beyond the share are closed at once.
    for (n, conn) in started {
        relay
            .core
            .handle_handshake(conn, Some((peer(10_000 + n), from(n))), now);
    }
    relay.drain();
    relay.core.check_held();
    assert_eq!(relay.core.counts().unregistered, per_network);
    assert_eq!(relay.closed.len(), 12 - per_network);
    assert!(
        relay
            .closed
            .iter()
            .all(|(_, reason)| *reason == "too many connections that have not registered")
    );
    // 2,000 more from the network: each refused at its first packet.
    for n in 0..2000u32 {
        assert_eq!(
            relay.core.handle_incoming(from(1000 + n), true, now),
            RelayIncoming::Refuse
        );
    }
    assert_eq!(relay.core.counts().unregistered, per_network);
    let counts = relay.core.counts();
    assert_eq!(
        counts.refused[&RelayRefusal::NetworkUnregistered],
        2000 + (12 - per_network) as u64
    );
    assert_eq!(counts.refused[&RelayRefusal::NetworkHandshakes], 1);
    // Other networks, up to the relay's own cap; then anyone's next one
    // is refused for the relay's.
    let mut held = per_network;
    for net in 2..=10u8 {
        for h in 0..per_network as u8 {
            let addr = host(net, h, 4433);
            if held < config.max_unregistered {
                relay.connect_from(20_000 + u32::from(net) * 100 + u32::from(h), addr);
                held += 1;
            } else {
                assert_eq!(
                    relay.core.handle_incoming(addr, true, now),
                    RelayIncoming::Refuse
                );
            }
        }
        assert_eq!(relay.core.counts().unregistered, held);
    }
    assert_eq!(held, config.max_unregistered);
    assert!(relay.core.counts().refused[&RelayRefusal::Unregistered] > 0);
    // They time out; a registering node from elsewhere then gets in.
    relay.advance(config.register_within);
    assert_eq!(relay.core.counts().unregistered, 0);
    let node = relay.register_from(1, host(50, 1, 4433));
    assert_eq!(relay.registered(node), None);
    relay.core.check_held();
}

/// Pairs with a node of one network are capped, whatever its ids: one
/// host's nodes introduced to each other, or to anyone, hold at most its
/// share, and two nodes elsewhere are still introduced.
#[test]
fn one_networks_nodes_hold_at_most_its_share_of_the_pairs() {
    let config = RelayConfig {
        max_pairs_per_node: 64,
        introductions_per_minute: 600,
        ..RelayConfig::default()
    };
    let per_network = config.max_pairs_per_network;
    let mut relay = Relay::new(config);
    let flood: Vec<ConnId> = (0..16u32)
        .map(|n| relay.register_from(100 + n, host(1, n as u8 + 1, 4433)))
        .collect();
    // Honest nodes elsewhere, each on a network of its own.
    let honest: Vec<ConnId> = (0..40u32)
        .map(|n| relay.register_from(1000 + n, host(20 + n as u8, 1, 4433)))
        .collect();
    relay.sent.clear();
    for (i, &conn) in flood.iter().enumerate() {
        for target in 0..40u32 {
            relay.introduce(conn, 1000 + target);
        }
        for other in 0..16u32 {
            if other as usize != i {
                relay.introduce(conn, 100 + other);
            }
        }
    }
    relay.core.check_held();
    let flood_network = Prefix::site(host(1, 1, 1).ip());
    assert_eq!(relay.core.held(flood_network).pairs, per_network);
    let counts = relay.core.counts();
    assert_eq!(counts.channels, per_network);
    assert!(
        counts.refused[&RelayRefusal::NetworkPairs] > 0,
        "{counts:?}"
    );
    // Two honest nodes are still introduced.
    relay.sent.clear();
    relay.introduce(honest[0], 1001);
    assert!(channel_of(&relay.to(honest[0])).is_some());
    // A pair that ends gives its network's place back.
    relay.advance(Duration::from_secs(61));
    assert_eq!(relay.core.held(flood_network).pairs, 0);
    relay.core.check_held();
}

/// A node connected, then made to read nothing: the driver writes none of
/// its frames.
fn connect_not_reading(relay: &mut Relay, n: u32) -> ConnId {
    let conn = relay.connect(n);
    relay.not_reading.insert(conn);
    conn
}

#[test]
fn a_node_whose_frame_waits_the_write_stall_is_aborted_and_forgotten() {
    let mut relay = Relay::new(RelayConfig::default());
    let conn = connect_not_reading(&mut relay, 1);
    let registered_at = relay.now;
    relay.register_conn(conn);
    assert_eq!(relay.registered(conn), None);
    assert_eq!(relay.core.counts().registrations, 1);
    // Its Registered waits; the relay wakes when it has waited too long.
    assert_eq!(relay.core.poll_timeout(), Some(registered_at + WRITE_STALL));
    relay.advance(WRITE_STALL - Duration::from_millis(1));
    assert!(relay.aborted.is_empty(), "{:?}", relay.aborted);
    relay.advance(Duration::from_millis(1));
    assert_eq!(relay.aborted, [(conn, "not reading")]);
    assert!(relay.closed.is_empty(), "{:?}", relay.closed);
    // Gone: its registration too, and another node may take its place.
    assert_eq!(relay.core.counts().registrations, 0);
    relay.core.check_held();
    let again = relay.register(1);
    assert_eq!(relay.registered(again), None);
}

#[test]
fn a_node_that_reads_slowly_is_kept_while_each_frame_waits_less_than_the_stall() {
    let mut relay = Relay::new(RelayConfig::default());
    let slow = connect_not_reading(&mut relay, 1);
    relay.register_conn(slow);
    relay.register(2);
    relay.register(3);
    // Two introductions: two Connects wait behind its Registered.
    relay.introduce(slow, 2);
    relay.introduce(slow, 3);
    assert_eq!(relay.to(slow).len(), 3);
    // One frame written every 4 s: each next one has waited 4 s, less
    // than the stall, although the first waited 12 s in all.
    for _ in 0..3 {
        relay.advance(Duration::from_secs(4));
        relay.core.handle_written(slow, relay.now);
    }
    relay.advance(WRITE_STALL * 4);
    assert!(relay.aborted.is_empty(), "{:?}", relay.aborted);
    assert_eq!(relay.core.counts().registrations, 3);
    // Nothing waits: nothing to wake for but the channels' idle time.
    let channel_idle = RelayConfig::default().channel_idle;
    assert!(
        relay
            .core
            .poll_timeout()
            .is_some_and(|at| at > relay.now + WRITE_STALL)
    );
    relay.advance(channel_idle);
    // The channels' ends are two more frames for it, and they wait.
    assert_eq!(relay.to(slow).len(), 2);
    relay.advance(WRITE_STALL);
    assert_eq!(relay.aborted, [(slow, "not reading")]);
}

#[test]
fn a_node_that_reads_nothing_is_aborted_rather_than_sent_more_than_the_outbox() {
    let mut relay = Relay::new(RelayConfig::default());
    let conn = connect_not_reading(&mut relay, 1);
    relay.register_conn(conn);
    // Introductions to nodes that are not registered: each answered, at
    // once, with a frame it does not read.
    for target in 0..(OUTBOX_FRAMES as u32 + 8) {
        relay.introduce(conn, 1000 + target);
    }
    assert_eq!(relay.to(conn).len(), OUTBOX_FRAMES);
    assert_eq!(relay.aborted, [(conn, "not reading")]);
    assert_eq!(relay.core.counts().registrations, 0);
    relay.core.check_held();
    // What it asks after that is not its own any more.
    relay.introduce(conn, 2000);
    assert!(relay.to(conn).is_empty());
}

#[test]
fn a_closed_connection_that_does_not_end_within_the_grace_is_aborted() {
    let mut relay = Relay::new(RelayConfig::default());
    let stuck = connect_not_reading(&mut relay, 1);
    let ends = relay.connect(2);
    // Neither registers: both are closed in time.
    relay.advance(RelayConfig::default().register_within);
    assert_eq!(relay.closed.len(), 2, "{:?}", relay.closed);
    assert!(relay.closed.contains(&(stuck, "did not register in time")));
    assert!(relay.closed.contains(&(ends, "did not register in time")));
    // The one whose close ends is forgotten; the other is aborted once
    // its grace is over, with the same reason.
    relay.advance(CLOSE_GRACE - Duration::from_millis(1));
    assert!(relay.aborted.is_empty(), "{:?}", relay.aborted);
    relay.advance(Duration::from_millis(1));
    assert_eq!(relay.aborted, [(stuck, "did not register in time")]);
    assert_eq!(relay.core.poll_timeout(), None);
    relay.core.check_held();
}

#[test]
fn an_introduction_of_a_node_found_not_reading_tells_the_other_of_the_channel_then_of_its_end() {
    let mut relay = Relay::new(RelayConfig::default());
    let deaf = connect_not_reading(&mut relay, 1);
    relay.register_conn(deaf);
    let other = relay.register(2);
    // Its Registered and 63 refusals wait: the outbox is full.
    for target in 0..(OUTBOX_FRAMES as u32 - 1) {
        relay.introduce(deaf, 1000 + target);
    }
    assert_eq!(relay.to(deaf).len(), OUTBOX_FRAMES);
    assert!(relay.aborted.is_empty(), "{:?}", relay.aborted);
    relay.to(other);
    // Its Connect would be one more: it is aborted, after the other node
    // was told of the channel, and then of its end.
    relay.introduce(deaf, 2);
    assert!(relay.to(deaf).is_empty());
    assert_eq!(relay.aborted, [(deaf, "not reading")]);
    let told = relay.to(other);
    let channel = channel_of(&told).expect("a Connect");
    assert_eq!(
        told[1..],
        [RelayMessage::ChannelClosed {
            channel,
            reason: ChannelEnd::PeerGone
        }]
    );
    assert_eq!(relay.core.counts().channels, 0);
    relay.core.check_held();
}
