//! A relay on loopback (`docs/relay.md`): two nodes register, one asks
//! for the other, and their QUIC connection runs through the relay's
//! channel: TLS end to end (the dialer pins the far end's key, and another
//! key fails), the bytes as they are, counted at the relay. A stranger's
//! datagrams reach nobody, whatever channel they name; a node the relay
//! does not know is not introduced; and under 200 registrations and a flood
//! of introductions the relay keeps its caps.

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
        let identity = Arc::new(Identity::generate().unwrap());
        let tuning = TransportTuning::default();
        let (endpoint, paths) = bind_endpoint_with_paths(loopback(), &identity, &tuning).unwrap();
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
    for _ in 0..200 {
        let identity = Arc::new(Identity::generate().unwrap());
        let tuning = TransportTuning::default();
        let (endpoint, paths) = bind_endpoint_with_paths(loopback(), &identity, &tuning).unwrap();
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
