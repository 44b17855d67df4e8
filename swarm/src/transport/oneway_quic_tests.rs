//! Delay stamps between two real endpoints on loopback: an uploading
//! connection's controller gets a one-way measurement from the peer's
//! echoes; one that only downloads is not sending.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_wire::PeerAddr;

use crate::transport::yielding::YieldingController;
use crate::transport::{Identity, TransportTuning, accept, bind_endpoint, connect};

#[tokio::test]
async fn an_uploading_connection_measures_its_one_way_delay_from_the_peers_echoes() {
    let tuning = TransportTuning::default();
    let server_identity = Identity::generate().unwrap();
    let client_identity = Identity::generate().unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = bind_endpoint(loopback, &server_identity, &tuning).unwrap();
    let client = bind_endpoint(loopback, &client_identity, &tuning).unwrap();
    let peer = PeerAddr {
        id: server_identity.peer_id(),
        addr: server.local_addr().unwrap(),
    };
    let listener = {
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = server.accept().await.expect("an incoming connection");
            let (connection, _) = accept(incoming, &server_identity, &tuning).await.unwrap();
            tokio::spawn(crate::transport::oneway::run(connection.clone()));
            // Read what the dialer uploads, to the end.
            let mut stream = connection.accept_uni().await.unwrap();
            let mut received = 0;
            while let Some(chunk) = stream.read_chunk(usize::MAX, true).await.unwrap() {
                received += chunk.bytes.len();
            }
            (connection, received)
        })
    };
    let connection = connect(&client, &peer, &client_identity, &tuning)
        .await
        .unwrap();
    tokio::spawn(crate::transport::oneway::run(connection.clone()));
    let forward = YieldingController::forward_delay(&connection)
        .expect("the default controller reads delay stamps");
    assert_eq!(forward.fresh(Instant::now()), None, "nothing measured yet");

    // Upload until the controller has a fresh measurement (a hang guard
    // of two minutes).
    let mut stream = connection.open_uni().await.unwrap();
    let block = vec![7u8; 64 << 10];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0;
    while forward.fresh(Instant::now()).is_none() {
        assert!(
            Instant::now() < deadline,
            "no one-way measurement after {sent} bytes uploaded"
        );
        stream.write_all(&block).await.unwrap();
        sent += block.len();
        if sent % (4 << 20) == 0 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    stream.finish().unwrap();
    let (server_side, received) = listener.await.unwrap();
    assert_eq!(received, sent);
    // The listener only downloads: whatever its handshake's acknowledgements
    // started, it goes idle once the upload is over.
    let other = YieldingController::forward_delay(&server_side).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while other.is_active(Instant::now()) {
        assert!(Instant::now() < deadline, "the listener stays active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
