//! Version 3's RequestFrom and PieceFrom: legal only in a v3 session, the
//! offset inside its chunk, and a piece stream of exactly the chunk's bytes
//! from the offset on. A v2 session refuses both.

mod common;

use bytes::Bytes;
use common::control::*;
use common::*;
use minimodel_wire::{
    ChunkIndex, ContextError, ControlEvent, ControlStream, HaveBitfield, LocalMisuse, Message,
    MessageType, PeerError, PieceHeader, PiecePart, PieceStreamReader, ProtocolViolation, Role,
    SwarmIdentity, SwarmMismatch,
};

/// A dialer and a listener of `swarm`, both directions established.
fn established(swarm: &SwarmIdentity) -> (ControlStream, ControlStream) {
    let mut dialer = ControlStream::new(Role::Dialer, swarm.clone());
    let mut listener = ControlStream::listener();
    let hello = Message::Hello(swarm.hello(false, None, "test/1").unwrap());
    send(&mut dialer, &hello);
    receive(&mut listener, &hello);
    listener.bind(swarm.clone()).unwrap();
    let answer = Message::Hello(swarm.hello(true, None, "test/1").unwrap());
    send(&mut listener, &answer);
    receive(&mut dialer, &answer);
    let full = Message::HaveBitfield(HaveBitfield::full(10));
    send(&mut listener, &full);
    receive(&mut dialer, &full);
    let empty = Message::HaveBitfield(HaveBitfield::new(10));
    send(&mut dialer, &empty);
    receive(&mut listener, &empty);
    (dialer, listener)
}

#[test]
fn a_v3_session_carries_request_from_and_a_v2_session_refuses_it() {
    let request = Message::RequestFrom {
        chunk: ChunkIndex(9),
        from: 262_144,
    };
    let (mut dialer, mut listener) = established(&swarm());
    assert_eq!(swarm().version(), 3);
    dialer.check_send(&request).unwrap();
    assert_eq!(
        listener.on_receive(&request),
        Ok(ControlEvent::RequestFrom {
            chunk: ChunkIndex(9),
            from: 262_144
        })
    );
    // A Cancel withdraws it as it would a Request.
    let cancel = Message::Cancel {
        chunk: ChunkIndex(9),
    };
    dialer.check_send(&cancel).unwrap();
    assert_eq!(
        listener.on_receive(&cancel),
        Ok(ControlEvent::Cancel(ChunkIndex(9)))
    );

    let v2 = swarm().with_version(2);
    let (mut dialer, mut listener) = established(&v2);
    assert_eq!(
        dialer.check_send(&request),
        Err(LocalMisuse::NotInVersion {
            found: MessageType::RequestFrom,
            version: 2
        })
    );
    let refused = listener.on_receive(&request).unwrap_err();
    assert_eq!(
        refused,
        ProtocolViolation::NotInVersion {
            found: MessageType::RequestFrom,
            version: 2
        }
    );
    assert!(refused.to_string().contains("not part of protocol v2"));
    // A Request still works in v2.
    dialer
        .check_send(&Message::Request {
            chunk: ChunkIndex(9),
        })
        .unwrap();
}

#[test]
fn the_offset_must_fall_inside_its_chunk() {
    // Chunk 9 of the golden swarm is 562,816 bytes long; chunk 0 1 MiB.
    for (chunk, from, inside) in [
        (9, 1, true),
        (9, 562_815, true),
        (9, 562_816, false),
        (9, u32::MAX, false),
        (0, 1_048_575, true),
        (0, 1_048_576, false),
    ] {
        let (mut dialer, mut listener) = established(&swarm());
        let request = Message::RequestFrom {
            chunk: ChunkIndex(chunk),
            from,
        };
        let expected = ContextError::Offset {
            message_type: MessageType::RequestFrom,
            chunk: ChunkIndex(chunk),
            from,
            chunk_len: if chunk == 9 { 562_816 } else { 1_048_576 },
        };
        if inside {
            dialer.check_send(&request).unwrap();
            assert!(listener.on_receive(&request).is_ok());
        } else {
            assert_eq!(dialer.check_send(&request), Err(expected.clone().into()));
            assert_eq!(listener.on_receive(&request), Err(expected.into()));
        }
    }
    let (mut dialer, _) = established(&swarm());
    assert_eq!(
        dialer.check_send(&Message::RequestFrom {
            chunk: ChunkIndex(10),
            from: 1
        }),
        Err(ContextError::ChunkOutOfRange {
            message_type: MessageType::RequestFrom,
            chunk: ChunkIndex(10),
            chunk_count: 10
        }
        .into())
    );
}

#[test]
fn a_v2_listener_takes_a_v2_hello_and_refuses_a_v3_one() {
    let v2 = swarm().with_version(2);
    assert_eq!(v2.hello(false, None, "a/1").unwrap().protocol_version, 2);
    let mut listener = ControlStream::listener();
    receive(
        &mut listener,
        &Message::Hello(swarm().hello(false, None, "a/1").unwrap()),
    );
    assert_eq!(
        listener.bind(v2.clone()).unwrap_err().to_string(),
        minimodel_wire::BindError::Peer(
            SwarmMismatch::ProtocolVersion {
                found: 3,
                expected: 2
            }
            .into()
        )
        .to_string()
    );
    let mut listener = ControlStream::listener();
    receive(
        &mut listener,
        &Message::Hello(v2.hello(false, None, "a/1").unwrap()),
    );
    listener.bind(v2).unwrap();
}

/// A PieceFrom stream for chunk 9 from `from`, with `body` bytes after it.
fn piece_from_stream(from: u32, body: usize) -> (PieceHeader, Vec<u8>) {
    let header = PieceHeader {
        from,
        ..golden_piece_from()
    };
    let mut bytes = Vec::new();
    header.encode(&mut bytes).unwrap();
    bytes.extend((0..body).map(|i| (i % 251) as u8));
    (header, bytes)
}

#[test]
fn a_piece_from_stream_carries_exactly_the_chunk_from_its_offset() {
    let (header, stream) = piece_from_stream(262_144, 300_672);
    for step in [1, 4096, stream.len()] {
        let mut reader = PieceStreamReader::for_version(params(), 3);
        for piece in stream.chunks(step) {
            reader.feed(Bytes::copy_from_slice(piece)).unwrap();
        }
        assert_eq!(reader.remaining(), 0);
        let received = reader.finish().unwrap();
        assert_eq!(received.header, header);
        assert_eq!(received.to_vec().len(), 300_672);
    }
    // One byte more is refused as it arrives; one fewer at FIN.
    let (_, long) = piece_from_stream(262_144, 300_673);
    let mut reader = PieceStreamReader::for_version(params(), 3);
    assert_eq!(
        reader.feed(Bytes::from(long)),
        Err(PeerError::Violation(ProtocolViolation::PieceTooLong {
            chunk: ChunkIndex(9),
            expected: 300_672
        }))
    );
    let (_, short) = piece_from_stream(262_144, 300_671);
    let mut reader = PieceStreamReader::for_version(params(), 3);
    reader.feed(Bytes::from(short)).unwrap();
    assert_eq!(
        reader.finish(),
        Err(PeerError::Violation(
            ProtocolViolation::PieceFinishedShort {
                chunk: Some(ChunkIndex(9)),
                part: PiecePart::Body,
                received: 300_671,
                expected: 300_672
            }
        ))
    );
}

#[test]
fn a_piece_from_is_refused_in_a_v2_session_and_past_its_chunk() {
    let (_, stream) = piece_from_stream(262_144, 300_672);
    let mut reader = PieceStreamReader::for_version(params(), 2);
    assert_eq!(
        reader.feed(Bytes::from(stream)),
        Err(PeerError::Violation(ProtocolViolation::NotInVersion {
            found: MessageType::PieceFrom,
            version: 2
        }))
    );
    // A v2 session's whole pieces still pass.
    let mut whole = Vec::new();
    golden_piece_header().encode(&mut whole).unwrap();
    whole.resize(whole.len() + 562_816, 7);
    let mut reader = PieceStreamReader::for_version(params(), 2);
    reader.feed(Bytes::from(whole)).unwrap();
    assert_eq!(reader.finish().unwrap().to_vec().len(), 562_816);

    let (_, past) = piece_from_stream(562_816, 0);
    let mut reader = PieceStreamReader::for_version(params(), 3);
    assert_eq!(
        reader.feed(Bytes::from(past)),
        Err(PeerError::Violation(
            ContextError::Offset {
                message_type: MessageType::PieceFrom,
                chunk: ChunkIndex(9),
                from: 562_816,
                chunk_len: 562_816
            }
            .into()
        ))
    );
}
