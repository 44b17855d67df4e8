//! Real QUIC on 127.0.0.1 and [::1]: pinned ids, refused ids, the listener
//! learning the dialer's id, a dialer learning an unknown listener's id,
//! dual-stack endpoints that reach both families, a dial-only endpoint that
//! accepts nothing, and a bulk transfer over uni streams with a SHA-256
//! check. Every test runs under a deadline and ends by itself.
//!
//! The IPv6 tests need an IPv6 loopback (`::1`); without one they fail and
//! say so.

use std::net::SocketAddr;
use std::time::Duration;

use minimodel_swarm::transport::{
    AcceptError, ConnectError, Identity, TransportTuning, accept, bind_client_endpoint,
    bind_endpoint, canonical_addr, connect, connect_any, remote_peer_id,
};
use minimodel_wire::{PeerAddr, PeerId};
use sha2::{Digest, Sha256};

const DEADLINE: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn loopback_v6() -> SocketAddr {
    require_ipv6_loopback();
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
}

/// Fails the test, with the reason, on a host without an IPv6 loopback.
fn require_ipv6_loopback() {
    if let Err(error) = std::net::UdpSocket::bind("[::1]:0") {
        panic!("this test needs an IPv6 loopback address (::1), and binding it failed: {error}");
    }
}

struct Listener {
    identity: Identity,
    endpoint: quinn::Endpoint,
}

impl Listener {
    fn new(tuning: &TransportTuning) -> Listener {
        Listener::on(loopback(), tuning)
    }

    fn on(addr: SocketAddr, tuning: &TransportTuning) -> Listener {
        let identity = Identity::generate().unwrap();
        let endpoint = bind_endpoint(addr, &identity, tuning).unwrap();
        Listener { identity, endpoint }
    }

    /// Its id at `ip` and its port.
    fn at(&self, ip: std::net::IpAddr) -> PeerAddr {
        PeerAddr {
            id: self.identity.peer_id(),
            addr: SocketAddr::new(ip, self.endpoint.local_addr().unwrap().port()),
        }
    }

    fn addr_as(&self, id: PeerId) -> PeerAddr {
        PeerAddr {
            id,
            addr: self.endpoint.local_addr().unwrap(),
        }
    }

    /// Accepts one connection in the background.
    fn accept_one(
        &self,
        tuning: &TransportTuning,
    ) -> tokio::task::JoinHandle<Result<(quinn::Connection, PeerId), AcceptError>> {
        let endpoint = self.endpoint.clone();
        let identity = self.identity.clone();
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.expect("an incoming connection");
            accept(incoming, &identity, &tuning).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_peers_exchange_bytes_on_bidi_and_uni_streams() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let listener = Listener::new(&tuning);
        let dialer_identity = Identity::generate().unwrap();
        let dialer = bind_endpoint(loopback(), &dialer_identity, &tuning).unwrap();
        let accepted = listener.accept_one(&tuning);
        let peer = listener.addr_as(listener.identity.peer_id());
        let connection = connect(&dialer, &peer, &dialer_identity, &tuning)
            .await
            .unwrap();
        let (server_side, dialer_id) = accepted.await.unwrap().unwrap();

        // Each side knows the other's verified id.
        assert_eq!(dialer_id, dialer_identity.peer_id());
        assert_eq!(
            remote_peer_id(&server_side).unwrap(),
            dialer_identity.peer_id()
        );
        assert_eq!(
            remote_peer_id(&connection).unwrap(),
            listener.identity.peer_id()
        );

        // Bidi: request and echo with a marker.
        let echo = tokio::spawn({
            let server_side = server_side.clone();
            async move {
                let (mut send, mut recv) = server_side.accept_bi().await.unwrap();
                let request = recv.read_to_end(1024).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&request);
                send.write_all(&reply).await.unwrap();
                send.finish().unwrap();
                // Keep the stream alive until the dialer has read it all.
                let _ = send.stopped().await;
            }
        });
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(b"hello seeder").await.unwrap();
        send.finish().unwrap();
        let reply = recv.read_to_end(1024).await.unwrap();
        assert_eq!(reply, b"echo:hello seeder");
        echo.await.unwrap();

        // Uni, listener to dialer: several streams, each delivered whole.
        let sender = tokio::spawn({
            let server_side = server_side.clone();
            async move {
                for i in 0u8..8 {
                    let mut stream = server_side.open_uni().await.unwrap();
                    stream
                        .write_all(&vec![i; 10_000 + usize::from(i)])
                        .await
                        .unwrap();
                    stream.finish().unwrap();
                }
            }
        });
        let mut seen = Vec::new();
        for _ in 0..8 {
            let mut stream = connection.accept_uni().await.unwrap();
            let body = stream.read_to_end(1 << 20).await.unwrap();
            let tag = body[0];
            assert!(body.iter().all(|&b| b == tag));
            assert_eq!(body.len(), 10_000 + usize::from(tag));
            seen.push(tag);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0u8..8).collect::<Vec<_>>());
        sender.await.unwrap();

        // Uni, dialer to listener.
        let mut stream = connection.open_uni().await.unwrap();
        stream.write_all(b"have 1 2 3").await.unwrap();
        stream.finish().unwrap();
        let mut incoming = server_side.accept_uni().await.unwrap();
        assert_eq!(incoming.read_to_end(1024).await.unwrap(), b"have 1 2 3");

        connection.close(0u32.into(), b"done");
        dialer.wait_idle().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pinned_id_is_refused_before_any_data() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let listener = Listener::new(&tuning);
        let dialer_identity = Identity::generate().unwrap();
        let dialer = bind_endpoint(loopback(), &dialer_identity, &tuning).unwrap();
        let accepted = listener.accept_one(&tuning);
        let expected = Identity::generate().unwrap().peer_id();
        let peer = listener.addr_as(expected);

        let result = connect(&dialer, &peer, &dialer_identity, &tuning).await;
        match &result {
            Err(ConnectError::PeerIdMismatch {
                addr,
                expected: wanted,
                presented,
            }) => {
                assert_eq!(*addr, peer.addr);
                assert_eq!(*wanted, expected);
                assert_eq!(*presented, listener.identity.peer_id());
            }
            other => panic!("expected PeerIdMismatch, got {other:?}"),
        }
        let error = result.unwrap_err();
        assert!(error.is_peer_misbehaviour());
        let message = error.to_string();
        assert!(message.contains(&expected.to_string()), "{message}");
        assert!(
            message.contains(&listener.identity.peer_id().to_string()),
            "{message}"
        );

        // The listener never got an established connection.
        match accepted.await.unwrap() {
            Err(AcceptError::Closed { .. }) => {}
            other => panic!("the listener must see a failed handshake, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_tells_dialers_apart() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let listener = Listener::new(&tuning);
        let peer = listener.addr_as(listener.identity.peer_id());
        let mut dialer_ids = Vec::new();
        let mut learned = Vec::new();
        for _ in 0..3 {
            let identity = Identity::generate().unwrap();
            let endpoint = bind_endpoint(loopback(), &identity, &tuning).unwrap();
            let accepted = listener.accept_one(&tuning);
            let _connection = connect(&endpoint, &peer, &identity, &tuning).await.unwrap();
            let (_, id) = accepted.await.unwrap().unwrap();
            dialer_ids.push(identity.peer_id());
            learned.push(id);
        }
        assert_eq!(learned, dialer_ids);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_both_listens_and_dials() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let a = Listener::new(&tuning);
        let b = Listener::new(&tuning);
        // a dials b while b dials a, each on its single endpoint.
        let b_accepts = b.accept_one(&tuning);
        let a_accepts = a.accept_one(&tuning);
        let (b_addr, a_addr) = (
            b.addr_as(b.identity.peer_id()),
            a.addr_as(a.identity.peer_id()),
        );
        let a_to_b = connect(&a.endpoint, &b_addr, &a.identity, &tuning);
        let b_to_a = connect(&b.endpoint, &a_addr, &b.identity, &tuning);
        let (a_to_b, b_to_a) = tokio::join!(a_to_b, b_to_a);
        a_to_b.unwrap();
        b_to_a.unwrap();
        assert_eq!(b_accepts.await.unwrap().unwrap().1, a.identity.peer_id());
        assert_eq!(a_accepts.await.unwrap().unwrap().1, b.identity.peer_id());
    })
    .await
    .unwrap();
}

/// 32 MiB in 1 MiB uni streams, 8 in flight, from listener to dialer with
/// the tuned transport; the receiver's SHA-256 must equal the sender's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuned_transport_moves_32_mib_intact() {
    const PIECE: usize = 1 << 20;
    const PIECES: usize = 32;
    const IN_FLIGHT: usize = 8;
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let listener = Listener::new(&tuning);
        let dialer_identity = Identity::generate().unwrap();
        let dialer = bind_endpoint(loopback(), &dialer_identity, &tuning).unwrap();
        let accepted = listener.accept_one(&tuning);
        let peer = listener.addr_as(listener.identity.peer_id());
        let connection = connect(&dialer, &peer, &dialer_identity, &tuning)
            .await
            .unwrap();
        let (seeder, _) = accepted.await.unwrap().unwrap();

        // Deterministic, non-repeating content: piece i is SHA-256 chains.
        let piece = |index: usize| -> Vec<u8> {
            let mut out = Vec::with_capacity(PIECE);
            let mut block = Sha256::digest((index as u64).to_le_bytes());
            while out.len() < PIECE {
                out.extend_from_slice(&block);
                block = Sha256::digest(block);
            }
            out
        };
        let mut expected = Sha256::new();
        for index in 0..PIECES {
            expected.update(piece(index));
        }
        let expected = expected.finalize();

        let sender = tokio::spawn(async move {
            let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let mut tasks = Vec::new();
            for index in 0..PIECES {
                let permit = semaphore.clone().acquire_owned().await.unwrap();
                let seeder = seeder.clone();
                let body = piece(index);
                tasks.push(tokio::spawn(async move {
                    let mut stream = seeder.open_uni().await.unwrap();
                    stream
                        .write_all(&(index as u32).to_le_bytes())
                        .await
                        .unwrap();
                    stream.write_all(&body).await.unwrap();
                    stream.finish().unwrap();
                    drop(permit);
                    let _ = stream.stopped().await;
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            seeder
        });

        let mut pieces: Vec<Option<Vec<u8>>> = vec![None; PIECES];
        for _ in 0..PIECES {
            let mut stream = connection.accept_uni().await.unwrap();
            let body = stream.read_to_end(PIECE + 4).await.unwrap();
            let index = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
            assert!(pieces[index].is_none(), "piece {index} twice");
            pieces[index] = Some(body[4..].to_vec());
        }
        let mut received = Sha256::new();
        let mut total = 0;
        for body in pieces.iter().map(|p| p.as_ref().expect("every piece")) {
            total += body.len();
            received.update(body);
        }
        assert_eq!(total, PIECE * PIECES);
        assert_eq!(received.finalize(), expected);
        let _seeder = sender.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_only_endpoint_reaches_ipv4_and_ipv6_peers() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let v4 = Listener::new(&tuning);
        let v6 = Listener::on(loopback_v6(), &tuning);
        let identity = Identity::generate().unwrap();
        let dialer = bind_client_endpoint(&tuning).unwrap();
        assert_eq!(
            dialer.local_addr().unwrap().ip(),
            std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
            "a host with IPv6 gets a dual-stack dialing socket"
        );
        for listener in [&v4, &v6] {
            let accepted = listener.accept_one(&tuning);
            let peer = listener.addr_as(listener.identity.peer_id());
            let connection = connect(&dialer, &peer, &identity, &tuning).await.unwrap();
            assert_eq!(
                remote_peer_id(&connection).unwrap(),
                listener.identity.peer_id()
            );
            let (_, dialer_id) = accepted.await.unwrap().unwrap();
            assert_eq!(dialer_id, identity.peer_id());
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_the_ipv6_wildcard_serves_both_families() {
    tokio::time::timeout(DEADLINE, async {
        require_ipv6_loopback();
        let tuning = TransportTuning::default();
        let listener = Listener::on("[::]:0".parse().unwrap(), &tuning);
        let localhost_v4 = std::net::IpAddr::from([127, 0, 0, 1]);
        let localhost_v6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        for (dialer_addr, ip) in [(loopback(), localhost_v4), (loopback_v6(), localhost_v6)] {
            // Each dialer is single-stack: it can only arrive over its family.
            let identity = Identity::generate().unwrap();
            let dialer = bind_endpoint(dialer_addr, &identity, &tuning).unwrap();
            let accepted = listener.accept_one(&tuning);
            let connection = connect(&dialer, &listener.at(ip), &identity, &tuning)
                .await
                .unwrap();
            let (server_side, dialer_id) = accepted.await.unwrap().unwrap();
            assert_eq!(dialer_id, identity.peer_id());
            assert_eq!(canonical_addr(server_side.remote_address()).ip(), ip);
            assert_eq!(
                remote_peer_id(&connection).unwrap(),
                listener.identity.peer_id()
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_a_specific_address_serves_that_address_only() {
    tokio::time::timeout(DEADLINE, async {
        require_ipv6_loopback();
        let tuning = TransportTuning {
            handshake_timeout: Duration::from_millis(500),
            ..TransportTuning::default()
        };
        let listener = Listener::new(&tuning);
        let identity = Identity::generate().unwrap();
        let dialer = bind_client_endpoint(&tuning).unwrap();
        let over_v6 = listener.at(std::net::Ipv6Addr::LOCALHOST.into());
        let result = connect(&dialer, &over_v6, &identity, &tuning).await;
        assert!(
            matches!(result, Err(ConnectError::Timeout { .. })),
            "{result:?}"
        );
        let accepted = listener.accept_one(&tuning);
        let over_v4 = listener.at(std::net::IpAddr::from([127, 0, 0, 1]));
        connect(&dialer, &over_v4, &identity, &tuning)
            .await
            .unwrap();
        accepted.await.unwrap().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_without_a_peer_id_learns_the_proven_one() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning::default();
        let listener = Listener::new(&tuning);
        let identity = Identity::generate().unwrap();
        let dialer = bind_client_endpoint(&tuning).unwrap();
        let accepted = listener.accept_one(&tuning);
        let addr = listener.endpoint.local_addr().unwrap();
        let (connection, proven) = connect_any(&dialer, addr, &identity, &tuning)
            .await
            .unwrap();
        assert_eq!(proven, listener.identity.peer_id());
        assert_eq!(remote_peer_id(&connection).unwrap(), proven);
        let (server_side, dialer_id) = accepted.await.unwrap().unwrap();
        assert_eq!(dialer_id, identity.peer_id());

        // The connection works like a pinned one.
        let mut stream = server_side.open_uni().await.unwrap();
        stream.write_all(b"piece").await.unwrap();
        stream.finish().unwrap();
        let mut incoming = connection.accept_uni().await.unwrap();
        assert_eq!(incoming.read_to_end(64).await.unwrap(), b"piece");

        // Over IPv6 too, and from the same dialing endpoint.
        let v6 = Listener::on(loopback_v6(), &tuning);
        let accepted = v6.accept_one(&tuning);
        let (_, proven) = connect_any(
            &dialer,
            v6.endpoint.local_addr().unwrap(),
            &identity,
            &tuning,
        )
        .await
        .unwrap();
        assert_eq!(proven, v6.identity.peer_id());
        accepted.await.unwrap().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_only_endpoint_accepts_nothing() {
    tokio::time::timeout(DEADLINE, async {
        let tuning = TransportTuning {
            handshake_timeout: Duration::from_millis(500),
            ..TransportTuning::default()
        };
        let target = bind_client_endpoint(&tuning).unwrap();
        let port = target.local_addr().unwrap().port();
        let identity = Identity::generate().unwrap();
        let dialer = bind_client_endpoint(&tuning).unwrap();
        let result = connect_any(
            &dialer,
            SocketAddr::from(([127, 0, 0, 1], port)),
            &identity,
            &tuning,
        )
        .await;
        // Without a server config quinn cannot refuse (CONNECTION_REFUSED
        // needs Initial keys from one); the dialer gives up at its
        // handshake timeout, and nothing is ever accepted.
        match result {
            Err(ConnectError::Timeout { after, .. }) => {
                assert!(after >= tuning.handshake_timeout, "{after:?}")
            }
            other => panic!("{other:?}"),
        }
        // Closed now, the endpoint hands out what it queued before its
        // end: nothing.
        target.close(0u32.into(), b"");
        assert!(
            target.accept().await.is_none(),
            "a dial-only endpoint yields no incoming connection"
        );
    })
    .await
    .unwrap();
}
