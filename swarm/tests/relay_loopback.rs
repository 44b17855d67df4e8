//! A relay on loopback (`docs/relay.md`): two nodes register, one asks
//! for the other, and their QUIC connection runs through the relay's
//! channel: TLS end to end (the dialer pins the far end's key, and another
//! key fails), the bytes as they are, counted at the relay. A stranger's
//! datagrams reach nobody, whatever channel they name; a node the relay
//! does not know is not introduced; and under 200 registrations and a flood
//! of introductions the relay keeps its caps. The relay is shared among
//! hosts, not ids: one host flooding it with fresh ids, or with handshakes
//! that never register, leaves room for nodes on other networks (the tests
//! that say so bind their hosts to loopback addresses in distinct /24s of
//! 127.0.0.0/8, and say how many).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::relay::{
    Registration, RelayAddr, RelayConfig, RelayEvent, RelayLink, RelayServer,
};
use minimodel_swarm::transport::{
    self, Identity, Paths, TransportTuning, bind_endpoint_with_paths,
};
use minimodel_wire::relay::{ConnectRole, IntroduceRefusal, MappingKind};
use minimodel_wire::{PeerAddr, PeerId};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(30);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Node {
    identity: Arc<Identity>,
    endpoint: quinn::Endpoint,
    paths: Paths,
    link: RelayLink,
    events: mpsc::Receiver<RelayEvent>,
}

impl Node {
    async fn start(relay: RelayAddr) -> Node {
        Self::start_at(relay, loopback()).await
    }

    /// A node whose socket is bound at `bind` (a host of its own network).
    async fn start_at(relay: RelayAddr, bind: SocketAddr) -> Node {
        let identity = Arc::new(Identity::generate().unwrap());
        let tuning = TransportTuning::default();
        let (endpoint, paths) = bind_endpoint_with_paths(bind, &identity, &tuning).unwrap();
        let (sender, events) = mpsc::channel(64);
        let link = RelayLink::start(
            endpoint.clone(),
            paths.clone(),
            relay,
            Arc::clone(&identity),
            &tuning,
            Registration {
                agent: "test/1".into(),
                addrs: Vec::new(),
                mapping: MappingKind::Unknown,
            },
            sender,
        );
        let mut node = Node {
            identity,
            endpoint,
            paths,
            link,
            events,
        };
        match node.next().await {
            RelayEvent::Registered { .. } => {}
            other => panic!("not registered: {other:?}"),
        }
        node
    }

    async fn next(&mut self) -> RelayEvent {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the link runs")
    }

    fn id(&self) -> PeerId {
        self.identity.peer_id()
    }
}

/// Host `h` of network `net`: `127.0.net.h`, port 0 (a /24 of its own for
/// each `net`; loopback answers at every address of 127.0.0.0/8).
fn host(net: u8, h: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, net, h], 0))
}

/// Sends `len` bytes from `a` to `b` over a QUIC connection on the
/// relay's channel (`path_at_a`: `b` as `a` dials it) and checks they
/// arrive as they were.
async fn send_through_relay(a: &Node, b: &Node, path_at_a: SocketAddr, len: usize) {
    let tuning = TransportTuning::default();
    let listener = {
        let (endpoint, identity, tuning) =
            (b.endpoint.clone(), Arc::clone(&b.identity), tuning.clone());
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.unwrap();
            let (connection, _) = transport::accept(incoming, &identity, &tuning)
                .await
                .unwrap();
            let mut stream = connection.accept_uni().await.unwrap();
            stream.read_to_end(8 << 20).await.unwrap()
        })
    };
    let peer = PeerAddr {
        id: b.id(),
        addr: path_at_a,
    };
    let connection = tokio::time::timeout(
        DEADLINE,
        transport::connect(&a.endpoint, &peer, &a.identity, &tuning),
    )
    .await
    .unwrap()
    .unwrap();
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut stream = connection.open_uni().await.unwrap();
    stream.write_all(&payload).await.unwrap();
    stream.finish().unwrap();
    let received = tokio::time::timeout(DEADLINE, listener)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, payload);
}

async fn relay(config: RelayConfig) -> (RelayAddr, minimodel_swarm::relay::RelayCounter) {
    let identity = Arc::new(Identity::generate().unwrap());
    let server =
        RelayServer::bind(loopback(), identity, config, TransportTuning::default()).unwrap();
    let addr = RelayAddr {
        id: Some(server.peer_id()),
        addr: server.local_addr(),
    };
    let counter = server.counter();
    let (reports, mut inbox) = mpsc::unbounded_channel();
    tokio::spawn(async move { while inbox.recv().await.is_some() {} });
    tokio::spawn(server.run(std::future::pending(), reports));
    (addr, counter)
}

/// Both Connects of an introduction: the asker's path, the other's path.
async fn introduce(asker: &mut Node, other: &mut Node) -> (SocketAddr, SocketAddr) {
    assert!(asker.link.introduce(other.id()));
    let dial = match asker.next().await {
        RelayEvent::Connect {
            peer,
            path,
            role: ConnectRole::Dial,
            ..
        } if peer == other.id() => path,
        event => panic!("the asker heard {event:?}"),
    };
    let open = match other.next().await {
        RelayEvent::Connect {
            peer,
            path,
            role: ConnectRole::Open,
            ..
        } if peer == asker.id() => path,
        event => panic!("the other heard {event:?}"),
    };
    (dial, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_through_the_relay_runs_tls_end_to_end_and_its_bytes_are_counted() {
    let (relay, counter) = relay(RelayConfig::default()).await;
    let mut a = Node::start(relay).await;
    let mut b = Node::start(relay).await;
    let (path_at_a, path_at_b) = introduce(&mut a, &mut b).await;
    assert!(transport::is_relay_path(path_at_a) && transport::is_relay_path(path_at_b));
    let tuning = TransportTuning::default();

    // A wrong key at the far end fails: the relay cannot stand in for it.
    let stranger = PeerAddr {
        id: PeerId([9; 32]),
        addr: path_at_a,
    };
    let refused = {
        let accept = {
            let (endpoint, identity, tuning) =
                (b.endpoint.clone(), Arc::clone(&b.identity), tuning.clone());
            tokio::spawn(async move {
                let incoming = endpoint.accept().await.unwrap();
                let _ = transport::accept(incoming, &identity, &tuning).await;
            })
        };
        let refused = transport::connect(&a.endpoint, &stranger, &a.identity, &tuning).await;
        let _ = accept.await;
        refused
    };
    assert!(
        matches!(refused, Err(transport::ConnectError::PeerIdMismatch { .. })),
        "{refused:?}"
    );

    // The right key: the bytes go through, as they are.
    let listener = {
        let (endpoint, identity, tuning) =
            (b.endpoint.clone(), Arc::clone(&b.identity), tuning.clone());
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.unwrap();
            let (connection, dialer) = transport::accept(incoming, &identity, &tuning)
                .await
                .unwrap();
            let mut stream = connection.accept_uni().await.unwrap();
            let bytes = stream.read_to_end(8 << 20).await.unwrap();
            (
                dialer,
                transport::canonical_addr(connection.remote_address()),
                bytes,
            )
        })
    };
    let peer = PeerAddr {
        id: b.id(),
        addr: path_at_a,
    };
    let connection = tokio::time::timeout(
        DEADLINE,
        transport::connect(&a.endpoint, &peer, &a.identity, &tuning),
    )
    .await
    .unwrap()
    .unwrap();
    let payload: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let mut stream = connection.open_uni().await.unwrap();
    stream.write_all(&payload).await.unwrap();
    stream.finish().unwrap();
    let (dialer, seen_at, received) = tokio::time::timeout(DEADLINE, listener)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dialer, a.id(), "the listener learns the dialer's own key");
    assert_eq!(seen_at, path_at_b, "the listener sees it at its relay path");
    assert_eq!(received, payload);
    let counts = counter.counts();
    assert!(counts.forwarded_bytes >= payload.len() as u64, "{counts:?}");
    assert!(a.paths.counts().relayed_out >= payload.len() as u64);
    assert!(b.paths.counts().relayed_in >= payload.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_nothing_relayed_and_an_unknown_peer_is_not_introduced() {
    let (relay, counter) = relay(RelayConfig::default()).await;
    let mut a = Node::start(relay).await;
    let mut b = Node::start(relay).await;
    let (_, _) = introduce(&mut a, &mut b).await;
    let before = b.paths.counts();
    // A socket that never registered sends relay datagrams on every
    // channel it can think of.
    let stranger = std::net::UdpSocket::bind(loopback()).unwrap();
    let mut datagram = Vec::new();
    for channel in [0u64, 1, 2, u64::MAX, 0x0102_0304_0506_0708] {
        datagram.clear();
        minimodel_wire::relay::write_relay_datagram(channel, &[0x40; 100], &mut datagram);
        stranger.send_to(&datagram, relay.addr).unwrap();
    }
    // A peer that is not registered is not introduced.
    assert!(a.link.introduce(PeerId([7; 32])));
    match a.next().await {
        RelayEvent::IntroduceFailed { reason, .. } => {
            assert_eq!(reason, IntroduceRefusal::NotRegistered)
        }
        other => panic!("{other:?}"),
    }
    let counts = counter.counts();
    assert_eq!(counts.forwarded, 0, "{counts:?}");
    assert_eq!(counts.dropped.values().sum::<u64>(), 5, "{counts:?}");
    assert_eq!(b.paths.counts().relayed_in, before.relayed_in);
}

/// 200 nodes on 20 /24s register with a relay that takes 150, then each
/// asks for 40 introductions as fast as it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_registrations_and_a_flood_of_introductions_stay_within_the_caps() {
    let config = RelayConfig {
        max_registrations: 150,
        max_pairs: 64,
        max_pairs_per_node: 4,
        introductions_per_minute: 30,
        ..RelayConfig::default()
    };
    let (relay, counter) = relay(config.clone()).await;
    let mut nodes = Vec::new();
    let mut refused = 0;
    // Ten nodes on each of 20 /24s of loopback: within each network's
    // share of the registrations, so the relay's own total binds.
    for n in 0..200u8 {
        let identity = Arc::new(Identity::generate().unwrap());
        let tuning = TransportTuning::default();
        let (endpoint, paths) =
            bind_endpoint_with_paths(host(n / 10 + 1, n % 10 + 1), &identity, &tuning).unwrap();
        let (sender, mut events) = mpsc::channel(256);
        let link = RelayLink::start(
            endpoint.clone(),
            paths,
            relay,
            Arc::clone(&identity),
            &tuning,
            Registration {
                agent: "test/1".into(),
                addrs: Vec::new(),
                mapping: MappingKind::Unknown,
            },
            sender,
        );
        match tokio::time::timeout(DEADLINE, events.recv()).await.unwrap() {
            Some(RelayEvent::Registered { .. }) => nodes.push((identity, endpoint, link, events)),
            Some(RelayEvent::Refused { .. }) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(nodes.len(), config.max_registrations);
    assert_eq!(refused, 200 - config.max_registrations);
    // Every node asks for 40 others, as fast as it can.
    let ids: Vec<PeerId> = nodes.iter().map(|(id, ..)| id.peer_id()).collect();
    for (n, (_, _, link, _)) in nodes.iter().enumerate() {
        for k in 1..=40 {
            link.introduce(ids[(n + k * 7) % ids.len()]);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = counter.counts();
    assert_eq!(counts.registrations, config.max_registrations, "{counts:?}");
    assert!(counts.channels <= config.max_pairs, "{counts:?}");
    assert!(counts.introduced > 0, "{counts:?}");
    // The relay still answers: one more introduction between two nodes.
    let (_, _, link, events) = &mut nodes[0];
    link.introduce(ids[1]);
    let answered = tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Some(RelayEvent::Connect { peer, .. }) if peer == ids[1] => return true,
                Some(RelayEvent::IntroduceFailed { peer, .. }) if peer == ids[1] => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(answered);
}

/// A node that never reads what the relay sends, and the stream it writes
/// its messages on.
struct NotReading {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    /// The receiving half, kept and never read.
    _unread: quinn::RecvStream,
}

/// A node connected to `relay` with receive windows of about three of the
/// relay's answers, its Register written, that reads nothing.
async fn register_not_reading(relay: &RelayAddr) -> NotReading {
    use minimodel_wire::relay::RelayMessage;
    let identity = Arc::new(Identity::generate().unwrap());
    let tuning = TransportTuning {
        stream_receive_window: 128,
        connection_receive_window: 256,
        ..TransportTuning::default()
    };
    let (endpoint, _paths) = bind_endpoint_with_paths(loopback(), &identity, &tuning).unwrap();
    let (connection, _) =
        transport::connect_relay(&endpoint, relay.addr, relay.id, &identity, &tuning)
            .await
            .unwrap();
    let (mut send, unread) = connection.open_bi().await.unwrap();
    let register = RelayMessage::Register {
        agent: "test/1".into(),
        addrs: Vec::new(),
        mapping: MappingKind::Unknown,
    };
    send.write_all(&register.encode().unwrap()).await.unwrap();
    NotReading {
        _endpoint: endpoint,
        connection,
        send,
        _unread: unread,
    }
}

/// A node that registers, then asks for introductions and never reads
/// the answers: once 64 wait behind its shut flow control window the relay
/// gives it up, and closes its QUIC connection too. Left open, its task
/// waited for credit the node never gave, the connection counted against
/// no limit, and one host could pile such connections up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_read_what_the_relay_sends_is_closed_whole() {
    use minimodel_wire::relay::RelayMessage;
    let config = RelayConfig {
        introductions_per_minute: 100_000,
        ..RelayConfig::default()
    };
    let (relay, counter) = relay(config).await;
    // The relay's writes wait at once, and 64 more are queued from the
    // first 68 it reads.
    let unread = register_not_reading(&relay).await;
    let (connection, mut send) = (&unread.connection, unread.send);
    // Peers nobody registered: each introduction is answered, refused.
    for n in 0..400u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_le_bytes());
        let introduce = RelayMessage::Introduce { peer: PeerId(key) };
        if send.write_all(&introduce.encode().unwrap()).await.is_err() {
            break;
        }
    }
    // Well before its idle timeout (15 s, and it sends keep-alives).
    let closed = tokio::time::timeout(Duration::from_secs(8), connection.closed()).await;
    assert!(
        closed.is_ok(),
        "the relay left open the connection of a node that does not read"
    );
    let until = tokio::time::Instant::now() + DEADLINE;
    while counter.open_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the relay still holds {} connections",
            counter.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter.counts().registrations, 0);
}

/// A node that reads nothing and asks little: the relay's answers fill
/// its window, one waits for credit, and nothing more piles up behind it.
/// It is closed all the same, by the write that waits, long before its
/// idle timeout (it sends keep-alives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_reads_nothing_is_closed_when_one_answer_waits_too_long() {
    use minimodel_wire::relay::RelayMessage;
    let (relay, counter) = relay(RelayConfig::default()).await;
    let unread = register_not_reading(&relay).await;
    let (connection, mut send) = (&unread.connection, unread.send);
    // Eight introductions of nobody: eight refusals and the registration's
    // answer, far fewer than the 64 the relay would queue.
    for n in 0..8u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_le_bytes());
        let introduce = RelayMessage::Introduce { peer: PeerId(key) };
        send.write_all(&introduce.encode().unwrap()).await.unwrap();
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
    assert!(
        closed.is_ok(),
        "the relay left open the connection of a node that reads nothing"
    );
    let until = tokio::time::Instant::now() + DEADLINE;
    while counter.open_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the relay still holds {} connections",
            counter.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One host (127.0.0.1) registers fresh ids as fast as it can, for as long
/// as the test runs, while twenty hosts on twenty other /24s register: all
/// twenty get in, and two of them are introduced and relayed. 21 distinct
/// /24s in all. Counted only per id, as before, the flood took every place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_flooding_registrations_leaves_room_for_twenty_hosts_elsewhere() {
    let config = RelayConfig {
        max_registrations: 48,
        ..RelayConfig::default()
    };
    let (relay, counter) = relay(config.clone()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let (mut registered, mut refused) = (Vec::new(), 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let identity = Arc::new(Identity::generate().unwrap());
                let tuning = TransportTuning::default();
                let (endpoint, paths) =
                    bind_endpoint_with_paths(host(0, 1), &identity, &tuning).unwrap();
                let (sender, mut events) = mpsc::channel(16);
                let link = RelayLink::start(
                    endpoint.clone(),
                    paths,
                    relay,
                    identity,
                    &tuning,
                    Registration {
                        agent: "flood/1".into(),
                        addrs: Vec::new(),
                        mapping: MappingKind::Unknown,
                    },
                    sender,
                );
                match tokio::time::timeout(DEADLINE, events.recv()).await {
                    Ok(Some(RelayEvent::Registered { .. })) => {
                        registered.push((endpoint, link, events))
                    }
                    Ok(Some(RelayEvent::Refused { reason, .. })) => {
                        assert_eq!(reason, minimodel_wire::relay::RegisterRefusal::NetworkFull);
                        refused += 1;
                    }
                    other => panic!("the flood heard {other:?}"),
                }
            }
            (registered.len(), refused)
        })
    };
    // The flood takes its network's share first.
    let per_network = config.max_registrations_per_network;
    tokio::time::timeout(DEADLINE, async {
        while !counter
            .counts()
            .refused
            .contains_key(&minimodel_swarm::relay::RelayRefusal::NetworkRegistrations)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the flood reaches its network's cap");
    let mut nodes = Vec::new();
    for net in 1..=20u8 {
        nodes.push(Node::start_at(relay, host(net, 1)).await);
    }
    let counts = counter.counts();
    assert_eq!(counts.registrations, per_network + 20, "{counts:?}");
    // Two of them trade through the relay.
    let (mut a, mut b) = (nodes.remove(0), nodes.remove(0));
    let (path_at_a, _) = introduce(&mut a, &mut b).await;
    send_through_relay(&a, &b, path_at_a, 256 << 10).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (flooded, refused) = flood.await.unwrap();
    assert_eq!(flooded, per_network);
    assert!(refused > 0);
    let counts = counter.counts();
    assert!(counts.forwarded_bytes >= 256 << 10, "{counts:?}");
}

/// One host opens 2,000 connections that would finish their handshake and
/// never register: the relay holds at most its network's share of them at
/// once (8 up; then each next one is refused at its first packet, before
/// it holds any state), so what it holds stays under a bound (asserted:
/// at most 64 QUIC connections open on its endpoint at any moment, about
/// 57 KB each, under 4 MB), and a node on another /24 registers in the
/// middle of it. 2 distinct /24s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_handshakes_that_never_register_hold_little_and_keep_nobody_out() {
    const MOST_OPEN: usize = 64;
    let config = RelayConfig::default();
    let (relay, counter) = relay(config.clone()).await;
    let identity = Arc::new(Identity::generate().unwrap());
    let tuning = TransportTuning::default();
    let (endpoint, _paths) = bind_endpoint_with_paths(host(0, 1), &identity, &tuning).unwrap();
    let most_open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most_unregistered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watching = {
        let (counter, most_open, most_unregistered) = (
            counter.clone(),
            Arc::clone(&most_open),
            Arc::clone(&most_unregistered),
        );
        tokio::spawn(async move {
            loop {
                most_open.fetch_max(
                    counter.open_connections(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                most_unregistered.fetch_max(
                    counter.counts().unregistered,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut held = Vec::new();
    let mut up = 0usize;
    let mut newcomer = None;
    for round in 0..250usize {
        // Eight at a time, each kept open by the attacker.
        let dials: Vec<_> = (0..8)
            .map(|_| {
                let (endpoint, identity, tuning) =
                    (endpoint.clone(), Arc::clone(&identity), tuning.clone());
                tokio::spawn(async move {
                    transport::connect_relay(&endpoint, relay.addr, relay.id, &identity, &tuning)
                        .await
                })
            })
            .collect();
        for dial in dials {
            if let Ok(Ok((connection, _))) = dial.await {
                up += 1;
                held.push(connection);
            }
        }
        held.retain(|connection| connection.close_reason().is_none());
        if round == 125 {
            newcomer = Some(Node::start_at(relay, host(7, 1)).await);
        }
    }
    watching.abort();
    let counts = counter.counts();
    let most_open = most_open.load(std::sync::atomic::Ordering::Relaxed);
    let most_unregistered = most_unregistered.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{up} of 2,000 came up; at most {most_open} connections open and {most_unregistered} not registered at once; {counts:?}"
    );
    assert!(up > 0, "no handshake finished");
    assert!(
        most_unregistered
            <= config.max_handshakes_per_network + config.max_unregistered_per_network + 1,
        "{most_unregistered} {counts:?}"
    );
    assert!(
        most_open <= MOST_OPEN,
        "{most_open} connections open at once"
    );
    assert!(
        counts.refused.values().sum::<u64>() > 0,
        "nothing was turned away: {counts:?}"
    );
    assert!(newcomer.is_some());
    assert_eq!(counts.registrations, 1, "{counts:?}");
}
