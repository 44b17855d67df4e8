//! Handshake refusals and versions that need crate internals: a dialer
//! offering other ALPNs than ours, or only `minimodel/2` as an earlier
//! build does (no public API can build one), and the error
//! classification.

use std::net::SocketAddr;
use std::time::Duration;

use minimodel_wire::PeerAddr;

use super::endpoint::dial;
use super::tls::client_crypto_with_alpn;
use super::*;

const TEST_DEADLINE: Duration = Duration::from_secs(20);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A listening and a dialing endpoint on loopback, their identities, and
/// the listener as a peer to dial.
struct Pair {
    tuning: TransportTuning,
    server_identity: Identity,
    client_identity: Identity,
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    peer: PeerAddr,
}

fn pair() -> Pair {
    let tuning = TransportTuning::default();
    let server_identity = Identity::generate().unwrap();
    let client_identity = Identity::generate().unwrap();
    let server = bind_endpoint(loopback(), &server_identity, &tuning).unwrap();
    let client = bind_endpoint(loopback(), &client_identity, &tuning).unwrap();
    let peer = PeerAddr {
        id: server_identity.peer_id(),
        addr: server.local_addr().unwrap(),
    };
    Pair {
        tuning,
        server_identity,
        client_identity,
        server,
        client,
        peer,
    }
}

/// Dials a fresh listener with `alpn` and returns both sides' results.
async fn dial_with_alpn(
    alpn: Vec<Vec<u8>>,
) -> (
    Result<quinn::Connection, ConnectError>,
    Result<(quinn::Connection, minimodel_wire::PeerId), AcceptError>,
) {
    let Pair {
        tuning,
        server_identity,
        client_identity,
        server,
        client,
        peer,
    } = pair();
    let listener = {
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = server.accept().await.expect("an incoming connection");
            accept(incoming, &server_identity, &tuning).await
        })
    };
    let (crypto, verifier) =
        client_crypto_with_alpn(&client_identity, Some(peer.id), alpn).unwrap();
    let dialed = dial(
        &client,
        peer.addr,
        Some(peer.id),
        &tuning,
        crypto,
        &verifier,
        &minimodel_wire::ALPNS,
    )
    .await
    .map(|(connection, _)| connection);
    let accepted = listener.await.unwrap();
    (dialed, accepted)
}

#[tokio::test]
async fn another_alpn_is_refused_on_both_sides() {
    let (dialed, accepted) = tokio::time::timeout(
        TEST_DEADLINE,
        // Version 1 of the piece protocol is no longer spoken.
        dial_with_alpn(vec![b"minimodel/1".to_vec(), b"h3".to_vec()]),
    )
    .await
    .unwrap();
    assert!(
        matches!(dialed, Err(ConnectError::NoCommonProtocol { .. })),
        "{dialed:?}"
    );
    assert!(
        matches!(accepted, Err(AcceptError::NoCommonProtocol { .. })),
        "{accepted:?}"
    );
}

#[tokio::test]
async fn no_alpn_at_all_is_refused_on_both_sides() {
    let (dialed, accepted) = tokio::time::timeout(TEST_DEADLINE, dial_with_alpn(Vec::new()))
        .await
        .unwrap();
    assert!(
        matches!(dialed, Err(ConnectError::NoCommonProtocol { .. })),
        "{dialed:?}"
    );
    assert!(
        matches!(accepted, Err(AcceptError::NoCommonProtocol { .. })),
        "{accepted:?}"
    );
}

#[tokio::test]
async fn minimodel_alpn_among_others_is_accepted() {
    let (dialed, accepted) = tokio::time::timeout(
        TEST_DEADLINE,
        dial_with_alpn(vec![b"h3".to_vec(), minimodel_wire::ALPN.to_vec()]),
    )
    .await
    .unwrap();
    let connection = dialed.unwrap();
    let (_, dialer_id) = accepted.unwrap();
    assert_ne!(dialer_id, remote_peer_id(&connection).unwrap());
}

#[tokio::test]
async fn two_peers_of_this_build_speak_v3_and_one_offering_only_v2_speaks_v2() {
    // The listener offers minimodel/3 first: a dialer of this build
    // (both, either order) gets v3.
    for offered in [
        vec![
            minimodel_wire::ALPN.to_vec(),
            minimodel_wire::ALPN_V2.to_vec(),
        ],
        vec![
            minimodel_wire::ALPN_V2.to_vec(),
            minimodel_wire::ALPN.to_vec(),
        ],
    ] {
        let (dialed, accepted) = tokio::time::timeout(TEST_DEADLINE, dial_with_alpn(offered))
            .await
            .unwrap();
        assert_eq!(protocol_version(&dialed.unwrap()), 3);
        assert_eq!(protocol_version(&accepted.unwrap().0), 3);
    }
    // A peer of an earlier build offers minimodel/2 alone.
    let (dialed, accepted) = tokio::time::timeout(
        TEST_DEADLINE,
        dial_with_alpn(vec![minimodel_wire::ALPN_V2.to_vec()]),
    )
    .await
    .unwrap();
    assert_eq!(protocol_version(&dialed.unwrap()), 2);
    assert_eq!(protocol_version(&accepted.unwrap().0), 2);
}

#[tokio::test]
async fn nobody_listening_times_out() {
    let tuning = TransportTuning {
        handshake_timeout: Duration::from_millis(300),
        ..TransportTuning::default()
    };
    let identity = Identity::generate().unwrap();
    let client = bind_endpoint(loopback(), &identity, &tuning).unwrap();
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind(loopback()).unwrap();
    let peer = PeerAddr {
        id: Identity::generate().unwrap().peer_id(),
        addr: silent.local_addr().unwrap(),
    };
    let result = tokio::time::timeout(TEST_DEADLINE, connect(&client, &peer, &identity, &tuning))
        .await
        .unwrap();
    match result {
        Err(ConnectError::Timeout { addr, after }) => {
            assert_eq!(addr, peer.addr);
            assert!(after >= tuning.handshake_timeout);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_tuning_is_a_local_error() {
    let tuning = TransportTuning {
        send_window: 0,
        ..TransportTuning::default()
    };
    let identity = Identity::generate().unwrap();
    assert!(matches!(
        bind_endpoint(loopback(), &identity, &tuning),
        Err(TransportError::Tuning(TuningError::Window { .. }))
    ));
    let good = bind_endpoint(loopback(), &identity, &TransportTuning::default()).unwrap();
    let peer = PeerAddr {
        id: identity.peer_id(),
        addr: good.local_addr().unwrap(),
    };
    let result = connect(&good, &peer, &identity, &tuning).await;
    assert!(matches!(result, Err(ConnectError::Tuning(_))));
}

#[test]
fn binding_outside_a_runtime_is_refused() {
    let identity = Identity::generate().unwrap();
    let result = bind_endpoint(loopback(), &identity, &TransportTuning::default());
    assert!(matches!(result, Err(TransportError::NoRuntime)));
}

#[test]
fn dialing_sockets_fall_back_to_ipv4_without_ipv6() {
    // A host with IPv6: the dual-stack address is taken first.
    let mut tried = Vec::new();
    let (addr, ()) = super::endpoint::dual_stack_or_ipv4(|addr| {
        tried.push(addr);
        Ok(())
    })
    .unwrap();
    assert_eq!(addr, "[::]:0".parse().unwrap());
    assert_eq!(tried, vec![addr]);

    // A host without: IPv4, and the IPv4 error when both fail.
    let no_ipv6 = |addr: SocketAddr| {
        if addr.is_ipv6() {
            Err(TransportError::Socket {
                addr,
                action: "create",
                source: std::io::Error::from_raw_os_error(97),
            })
        } else {
            Ok(addr.port())
        }
    };
    let (addr, _) = super::endpoint::dual_stack_or_ipv4(no_ipv6).unwrap();
    assert_eq!(addr, "0.0.0.0:0".parse().unwrap());
    let neither = super::endpoint::dual_stack_or_ipv4(|addr| -> Result<(), _> {
        Err(TransportError::Socket {
            addr,
            action: "bind",
            source: std::io::Error::other("no network"),
        })
    });
    match neither {
        Err(TransportError::Socket { addr, .. }) => assert!(addr.is_ipv4()),
        other => panic!("expected the IPv4 error, got {other:?}"),
    }
}

#[test]
fn mapped_addresses_become_their_own_family() {
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:4433".parse().unwrap();
    assert_eq!(canonical_addr(mapped), "127.0.0.1:4433".parse().unwrap());
    let v6: SocketAddr = "[::1]:4433".parse().unwrap();
    assert_eq!(canonical_addr(v6), v6);
    let v4: SocketAddr = "10.0.0.2:1".parse().unwrap();
    assert_eq!(canonical_addr(v4), v4);
}

/// A closed endpoint's flush returns once the CONNECTION_CLOSE left, and
/// the peer hears our close (not an idle timeout) with our reason.
#[tokio::test]
async fn the_close_flush_ends_once_the_connection_close_left() {
    let Pair {
        tuning,
        server_identity,
        client_identity,
        server,
        client,
        peer,
    } = pair();
    let listener = {
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = server.accept().await.expect("an incoming connection");
            let (connection, _) = accept(incoming, &server_identity, &tuning).await.unwrap();
            connection.closed().await
        })
    };
    let connection = tokio::time::timeout(
        TEST_DEADLINE,
        connect(&client, &peer, &client_identity, &tuning),
    )
    .await
    .unwrap()
    .unwrap();
    let before = connection.stats().udp_tx.datagrams;
    // Closed before the flush: nothing owed.
    let closed_before = Closing::close([connection.clone()], b"done");
    let again = Closing::close([connection.clone()], b"again");
    assert_eq!(format!("{again:?}"), "Closing([])");
    tokio::time::timeout(
        TEST_DEADLINE,
        closed_before.flush(&client, b"done", TEST_DEADLINE),
    )
    .await
    .unwrap();
    assert!(
        connection.stats().udp_tx.datagrams > before,
        "the flush returned before the CONNECTION_CLOSE left"
    );
    let heard = tokio::time::timeout(TEST_DEADLINE, listener)
        .await
        .unwrap()
        .unwrap();
    match heard {
        quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(&close.reason[..], b"done"),
        other => panic!("the peer heard {other:?}"),
    }
}

/// A connection closed in the middle of a bulk send, its congestion window
/// full, still tells the peer (`vendor/quinn-proto/PATCHES.md`): the peer
/// hears the close and its reason, not a stateless reset or its idle
/// timeout.
#[tokio::test]
async fn a_close_with_a_full_window_reaches_the_peer() {
    let Pair {
        tuning,
        server_identity,
        client_identity,
        server,
        client,
        peer,
    } = pair();
    let (enough_tx, mut enough_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = {
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = server.accept().await.expect("an incoming connection");
            let (connection, _) = accept(incoming, &server_identity, &tuning).await.unwrap();
            let mut stream = connection.open_uni().await.unwrap();
            let block = vec![7u8; 1 << 20];
            // Sends until the reader has had enough, then closes at once,
            // with the window full of bytes in flight.
            loop {
                stream.write_all(&block).await.unwrap();
                if enough_rx.try_recv().is_ok() {
                    connection.close(7u32.into(), b"enough");
                    break;
                }
            }
            server
        })
    };
    let connection = tokio::time::timeout(
        TEST_DEADLINE,
        connect(&client, &peer, &client_identity, &tuning),
    )
    .await
    .unwrap()
    .unwrap();
    let mut stream = connection.accept_uni().await.unwrap();
    let mut received = 0;
    let mut enough = Some(enough_tx);
    while let Ok(Some(chunk)) = stream.read_chunk(usize::MAX, true).await {
        received += chunk.bytes.len();
        if received >= 16 << 20
            && let Some(enough) = enough.take()
        {
            enough.send(()).unwrap();
        }
    }
    let _server = sender.await.unwrap();
    let heard = tokio::time::timeout(TEST_DEADLINE, connection.closed())
        .await
        .unwrap();
    match heard {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, 7u32.into());
            assert_eq!(&close.reason[..], b"enough");
        }
        other => panic!("after {received} bytes the peer heard {other:?}"),
    }
}
