//! Blame on piece streams, over real QUIC on 127.0.0.1: an upload that does
//! not complete (its task aborted, its future dropped, a stall, the
//! connection closed) reaches the receiver as a reset or a lost
//! connection, which blames nobody; a stream its sender *finished* short,
//! inside its header or its body, is a violation.
//!
//! The receiver's stream window is kept small and the receiver stops
//! reading, so the sender is provably in the middle of the header or of the
//! body when its upload is given up.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use minimodel_swarm::link::pieces::{
    PIECE_ABANDONED, PieceStreamError, receive_body, receive_header, send_piece,
};
use minimodel_swarm::transport::{Identity, TransportTuning, accept, bind_endpoint, connect};
use minimodel_wire::{
    ChunkIndex, FRAME_PREFIX_LEN, PeerAddr, PeerError, PieceHeader, PiecePart, ProtocolViolation,
    SwarmParams,
};

const DEADLINE: Duration = Duration::from_secs(60);
/// Four chunks of 1 MiB: every proof has two hashes, so a header frame is
/// 4 + 81 bytes.
const CHUNK: u32 = 1 << 20;
const HEADER_FRAME: u64 = 85;

fn params() -> SwarmParams {
    SwarmParams::new(4 * u64::from(CHUNK), CHUNK, 4).unwrap()
}

fn header(chunk: u32) -> PieceHeader {
    PieceHeader {
        chunk: ChunkIndex(chunk),
        from: 0,
        chunk_len: CHUNK,
        proof: vec![[0xaa; 32], [0xbb; 32]],
    }
}

fn header_frame(chunk: u32) -> Bytes {
    let header = header(chunk);
    let mut frame = BytesMut::with_capacity(FRAME_PREFIX_LEN + header.frame_len());
    header.encode_checked(&params(), &mut frame).unwrap();
    assert_eq!(frame.len() as u64, HEADER_FRAME);
    frame.freeze()
}

fn body() -> Bytes {
    Bytes::from(vec![0x5a; CHUNK as usize])
}

/// A connection pair on loopback: `sender` serves pieces to `receiver`,
/// whose per-stream receive window is `receive_window` bytes.
struct Pair {
    sender: quinn::Connection,
    receiver: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
}

async fn pair(receive_window: u64) -> Pair {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let sender_tuning = TransportTuning::default();
    let receiver_tuning = TransportTuning {
        stream_receive_window: receive_window,
        ..TransportTuning::default()
    };
    let sender_identity = Identity::generate().unwrap();
    let receiver_identity = Identity::generate().unwrap();
    let sender_endpoint = bind_endpoint(loopback, &sender_identity, &sender_tuning).unwrap();
    let receiver_endpoint = bind_endpoint(loopback, &receiver_identity, &receiver_tuning).unwrap();
    let peer = PeerAddr {
        id: sender_identity.peer_id(),
        addr: sender_endpoint.local_addr().unwrap(),
    };
    let accepting = {
        let endpoint = sender_endpoint.clone();
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.unwrap();
            accept(incoming, &sender_identity, &sender_tuning)
                .await
                .unwrap()
                .0
        })
    };
    let receiver = connect(
        &receiver_endpoint,
        &peer,
        &receiver_identity,
        &receiver_tuning,
    )
    .await
    .unwrap();
    let sender = accepting.await.unwrap();
    Pair {
        sender,
        receiver,
        _endpoints: (sender_endpoint, receiver_endpoint),
    }
}

/// Waits until `sender` has told its peer a stream of it is blocked by the
/// peer's flow control (a STREAM_DATA_BLOCKED frame): an upload on it
/// cannot finish until the receiver reads more.
async fn blocked(sender: &quinn::Connection) {
    while sender.stats().frame_tx.stream_data_blocked == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The upload of chunk 1 on `connection`, as the node runs it.
fn upload(
    connection: &quinn::Connection,
) -> impl std::future::Future<Output = Result<(), PieceStreamError>> + use<> {
    let connection = connection.clone();
    async move { send_piece(&connection, &header(1), &params(), body(), None).await }
}

fn is_peer_misbehaviour(error: &PieceStreamError) -> bool {
    matches!(error, PieceStreamError::Violation(_))
}

fn assert_reset_without_blame(error: &PieceStreamError) {
    assert!(
        matches!(error, PieceStreamError::Reset { code } if *code == u64::from(PIECE_ABANDONED)),
        "expected a reset, got {error:?}"
    );
    assert!(!is_peer_misbehaviour(error), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_aborted_inside_its_header_arrives_reset_and_blames_nobody() {
    tokio::time::timeout(DEADLINE, async {
        // 16 bytes of window: the 85-byte header cannot all leave.
        let pair = pair(16).await;
        let task = tokio::spawn(upload(&pair.sender));
        let mut stream = pair.receiver.accept_uni().await.unwrap();
        blocked(&pair.sender).await;
        assert!(
            !task.is_finished(),
            "the upload must be stuck in its header"
        );
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let error = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
            .await
            .unwrap_err();
        assert_reset_without_blame(&error);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_inside_its_body_arrives_reset_and_blames_nobody() {
    tokio::time::timeout(DEADLINE, async {
        // 64 KiB of window and a receiver that reads only the header: the
        // sender is stuck in the body until its future is dropped.
        let pair = pair(64 << 10).await;
        let (drop_it, dropped) = tokio::sync::oneshot::channel::<()>();
        let sending = {
            let upload = upload(&pair.sender);
            tokio::spawn(async move {
                tokio::select! {
                    done = upload => Some(done),
                    _ = dropped => None,
                }
            })
        };
        let mut stream = pair.receiver.accept_uni().await.unwrap();
        let header = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
            .await
            .unwrap();
        assert_eq!(header.header().chunk, ChunkIndex(1));
        blocked(&pair.sender).await;
        drop_it.send(()).unwrap();
        assert!(
            sending.await.unwrap().is_none(),
            "the upload future must still be running when dropped"
        );
        let mut received = 0;
        let error = receive_body(&mut stream, header, |n| received += n)
            .await
            .unwrap_err();
        assert_reset_without_blame(&error);
        assert!(received < CHUNK as usize, "{received} bytes arrived");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_peer_does_not_read_is_reset_when_given_up_not_finished() {
    tokio::time::timeout(DEADLINE, async {
        // A 64 KiB window the reader does not open: the upload cannot
        // finish. The core gives such an upload up (the peer reads nothing:
        // a stall) by closing its link or cancelling it; here it is
        // aborted.
        let pair = pair(64 << 10).await;
        let sending = tokio::spawn(upload(&pair.sender));
        let mut stream = pair.receiver.accept_uni().await.unwrap();
        let header = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
            .await
            .unwrap();
        blocked(&pair.sender).await;
        assert!(!sending.is_finished(), "held by the peer's flow control");
        sending.abort();
        assert!(sending.await.unwrap_err().is_cancelled());
        let error = receive_body(&mut stream, header, |_| {}).await.unwrap_err();
        assert_reset_without_blame(&error);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_piece_blames_nobody() {
    tokio::time::timeout(DEADLINE, async {
        let pair = pair(64 << 10).await;
        let sending = tokio::spawn(upload(&pair.sender));
        let mut stream = pair.receiver.accept_uni().await.unwrap();
        let header = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
            .await
            .unwrap();
        pair.sender.close(0u32.into(), b"shutdown");
        assert!(sending.await.unwrap().is_err());
        let error = receive_body(&mut stream, header, |_| {}).await.unwrap_err();
        assert!(
            matches!(error, PieceStreamError::ConnectionLost(_)),
            "{error:?}"
        );
        assert!(!is_peer_misbehaviour(&error), "{error}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_finished_inside_its_header_is_a_violation() {
    tokio::time::timeout(DEADLINE, async {
        let pair = pair(12 << 20).await;
        let frame = header_frame(1);
        for cut in [2usize, 40] {
            let mut send = pair.sender.open_uni().await.unwrap();
            send.write_all(&frame[..cut]).await.unwrap();
            send.finish().unwrap();
            let mut stream = pair.receiver.accept_uni().await.unwrap();
            let error = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
                .await
                .unwrap_err();
            let expected = if cut < FRAME_PREFIX_LEN {
                FRAME_PREFIX_LEN as u64
            } else {
                HEADER_FRAME
            };
            match &error {
                PieceStreamError::Violation(PeerError::Violation(
                    ProtocolViolation::PieceFinishedShort {
                        chunk: None,
                        part: PiecePart::Header,
                        received,
                        expected: wanted,
                    },
                )) => {
                    assert_eq!(*received, cut as u64);
                    assert_eq!(*wanted, expected);
                }
                other => panic!("cut at {cut}: expected FinishedShort, got {other:?}"),
            }
            assert!(is_peer_misbehaviour(&error));
            assert!(error.to_string().contains("inside its header"), "{error}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_finished_inside_its_body_is_a_violation() {
    tokio::time::timeout(DEADLINE, async {
        let pair = pair(12 << 20).await;
        let mut send = pair.sender.open_uni().await.unwrap();
        send.write_all(&header_frame(2)).await.unwrap();
        send.write_all(&body()[..1000]).await.unwrap();
        send.finish().unwrap();
        let mut stream = pair.receiver.accept_uni().await.unwrap();
        let header = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
            .await
            .unwrap();
        let error = receive_body(&mut stream, header, |_| {}).await.unwrap_err();
        match &error {
            PieceStreamError::Violation(PeerError::Violation(
                ProtocolViolation::PieceFinishedShort {
                    chunk: Some(ChunkIndex(2)),
                    part: PiecePart::Body,
                    received: 1000,
                    expected,
                },
            )) => assert_eq!(*expected, u64::from(CHUNK)),
            other => panic!("expected FinishedShort in the body, got {other:?}"),
        }
        assert!(is_peer_misbehaviour(&error));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_upload_still_arrives_whole() {
    tokio::time::timeout(DEADLINE, async {
        let pair = pair(12 << 20).await;
        let sending = tokio::spawn(upload(&pair.sender));
        let mut stream = pair.receiver.accept_uni().await.unwrap();
        let header = receive_header(&mut stream, &params(), minimodel_wire::PROTOCOL_VERSION)
            .await
            .unwrap();
        let piece = receive_body(&mut stream, header, |_| {}).await.unwrap();
        sending.await.unwrap().unwrap();
        assert_eq!(piece.chunk, ChunkIndex(1));
        assert_eq!(piece.data.len(), CHUNK as usize);
        assert_eq!(piece.proof.len(), 2);
    })
    .await
    .unwrap();
}
