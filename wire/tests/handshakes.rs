//! The handshake machines (`DialHandshake`, `ListenHandshake`,
//! `ManifestQuery`, `ChunkListQuery`): the transcript vector
//! `handshake.hex`, refusals, failures and calls out of turn.

mod common;

use std::sync::Arc;

use common::control::{chunk_list_request, digest, manifest_request};
use common::*;
use minimodel_wire::{
    BindError, ChunkListQuery, DecodeError, DialHandshake, FieldError, GoodbyeReason,
    HandshakeFailure, HandshakeMachine, HandshakeStep, HaveBitfield, HelloRejectReason,
    ListenHandshake, Listened, LocalMisuse, MAX_CHUNK_HASHES_PER_MESSAGE,
    MAX_LISTED_CHUNKS_PER_MESSAGE, ManifestQuery, Message, MessageType, PeerEntry, PeerError,
    PeerFlags, PeerId, ProtocolViolation, ReceivedChunkList, SwarmIdentity, SwarmMismatch,
};

/// Drains every `Send` of a handshake into frames.
fn sent(mut poll: impl FnMut() -> HandshakeStep) -> (Vec<Message>, HandshakeStep) {
    let mut messages = Vec::new();
    loop {
        match poll() {
            HandshakeStep::Send(message) => messages.push(message),
            other => return (messages, other),
        }
    }
}

fn encode_all(messages: &[Message]) -> Vec<u8> {
    messages.iter().flat_map(frame).collect()
}

/// Decodes a whole stream into its messages.
fn decode_all(mut bytes: &[u8]) -> Vec<Message> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        messages.push(Message::decode(&mut bytes).unwrap());
    }
    messages
}

#[test]
fn the_handshake_machines_write_the_transcript_vector() {
    let (to_listener, to_dialer, order) = parse_transcript(&fixture_text("handshake.hex"));
    assert_eq!(
        order,
        [
            Direction::DialerToListener,
            Direction::ListenerToDialer,
            Direction::DialerToListener
        ]
    );

    let mut dialer =
        DialHandshake::new(swarm(), transcript_dialer_hello(), HaveBitfield::new(10)).unwrap();
    let mut listener = ListenHandshake::new();

    // The dialer's Hello, and nothing else until the listener answers.
    let (first, step) = sent(|| dialer.poll());
    assert_eq!(step, HandshakeStep::Read);
    for message in &first {
        listener.handle_message(message).unwrap();
    }
    let HandshakeStep::AnswerHello(their_hello) = listener.poll() else {
        panic!("the listener does not ask to answer the Hello");
    };
    assert_eq!(their_hello, transcript_dialer_hello());
    listener.bind(swarm()).unwrap();
    listener
        .accept(nat_listener_hello(), golden_bitfield())
        .unwrap();

    // The listener's Hello and bitfield together.
    let (answer, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Read);
    for message in &answer {
        dialer.handle_message(message).unwrap();
    }
    // The dialer's bitfield, once the listener's Hello is in.
    let (last, step) = sent(|| dialer.poll());
    assert_eq!(step, HandshakeStep::Done);
    for message in &last {
        listener.handle_message(message).unwrap();
    }
    assert_eq!(listener.poll(), HandshakeStep::Done);

    let mut dialer_stream = first.clone();
    dialer_stream.extend(last.iter().cloned());
    assert_eq!(
        encode_all(&dialer_stream),
        to_listener,
        "dialer -> listener"
    );
    assert_eq!(encode_all(&answer), to_dialer, "listener -> dialer");
    // And the vector decodes to the same messages, one per frame.
    assert_eq!(decode_all(&to_listener), dialer_stream);
    assert_eq!(decode_all(&to_dialer), answer);
    assert_eq!(first.len(), 1);
    assert_eq!(last.len(), 1);

    let at_dialer = dialer.finish().unwrap();
    assert_eq!(at_dialer.hello, nat_listener_hello());
    assert_eq!(at_dialer.bitfield, golden_bitfield());
    assert!(at_dialer.control.is_established());
    let Listened::Session(at_listener) = listener.finish().unwrap() else {
        panic!("the listener did not end in a session");
    };
    assert_eq!(at_listener.hello, transcript_dialer_hello());
    assert_eq!(at_listener.bitfield, HaveBitfield::new(10));
    assert!(at_listener.control.is_established());
}

fn other_swarm() -> SwarmIdentity {
    SwarmIdentity::new("other-model", root(), params()).unwrap()
}

#[test]
fn a_listener_that_serves_another_swarm_answers_hello_reject() {
    let mut dialer = DialHandshake::new(
        other_swarm(),
        other_swarm().hello(false, None, "t").unwrap(),
        HaveBitfield::new(10),
    )
    .unwrap();
    let mut listener = ListenHandshake::new();
    let (hello, _) = sent(|| dialer.poll());
    listener.handle_message(&hello[0]).unwrap();
    assert!(matches!(listener.poll(), HandshakeStep::AnswerHello(_)));
    // Bound to the swarm it serves under that model id, the Hello fails.
    let error = listener.bind(swarm()).unwrap_err();
    assert!(matches!(
        error,
        BindError::Peer(ProtocolViolation::Swarm(SwarmMismatch::ModelId { .. }))
    ));
    let (farewell, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    let [Message::HelloReject { reason, peers, .. }] = &farewell[..] else {
        panic!("no HelloReject: {farewell:?}");
    };
    assert_eq!(*reason, HelloRejectReason::WrongSwarm);
    assert!(peers.is_empty());
    assert!(matches!(
        listener.finish(),
        Err(HandshakeFailure::Peer(PeerError::Violation(
            ProtocolViolation::Swarm(_)
        )))
    ));
    dialer.handle_message(&farewell[0]).unwrap();
    assert_eq!(dialer.poll(), HandshakeStep::Done);
    assert!(matches!(
        dialer.finish(),
        Err(HandshakeFailure::Rejected {
            reason: HelloRejectReason::WrongSwarm,
            ..
        })
    ));
}

#[test]
fn a_refused_dialer_learns_the_peers_to_try() {
    let mut dialer =
        DialHandshake::new(swarm(), hello(false, None), HaveBitfield::new(10)).unwrap();
    let mut listener = ListenHandshake::new();
    let (hello, _) = sent(|| dialer.poll());
    listener.handle_message(&hello[0]).unwrap();
    let others = vec![PeerEntry {
        id: PeerId([0x44; 32]),
        addr: addr("198.51.100.4:4433"),
        flags: PeerFlags::VIA_RENDEZVOUS,
    }];
    // A full listener need not bind to refuse.
    listener
        .reject(HelloRejectReason::TooManyPeers, "full", others.clone())
        .unwrap();
    let (reject, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    let refused = listener.finish().unwrap_err();
    assert_eq!(
        refused,
        HandshakeFailure::Refused {
            reason: HelloRejectReason::TooManyPeers,
            detail: "full".to_owned()
        }
    );
    // Our HelloReject must reach the dialer; its receipt ends the dialer's
    // side without a word back.
    assert!(refused.farewell());
    dialer.handle_message(&reject[0]).unwrap();
    let rejected = dialer.finish().unwrap_err();
    assert!(!rejected.farewell());
    assert_eq!(
        rejected,
        HandshakeFailure::Rejected {
            reason: HelloRejectReason::TooManyPeers,
            detail: "full".to_owned(),
            peers: others
        }
    );
}

#[test]
fn a_manifest_query_through_the_machines() {
    let mut query = ManifestQuery::new(digest());
    let mut listener = ListenHandshake::new();
    let (request, step) = sent(|| query.poll());
    assert_eq!(step, HandshakeStep::Read);
    assert_eq!(request, [manifest_request()]);
    assert_eq!(frame(&request[0]), fixture_bytes("manifest_request.hex"));
    listener.handle_message(&request[0]).unwrap();
    assert_eq!(listener.poll(), HandshakeStep::AnswerManifest(digest()));
    // A manifest request is not bound to a swarm, nor accepted as one.
    assert!(listener.bind(swarm()).is_err());
    assert!(
        listener
            .accept(hello(true, None), HaveBitfield::full(10))
            .is_err()
    );
    listener.serve_manifest(GOLDEN_MANIFEST.to_vec()).unwrap();
    let (answer, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    assert_eq!(frame(&answer[0]), fixture_bytes("manifest.hex"));
    assert!(matches!(listener.finish(), Ok(Listened::ManifestServed)));
    query.handle_message(&answer[0]).unwrap();
    assert_eq!(query.poll(), HandshakeStep::Done);
    let bytes = query.finish().unwrap();
    assert_eq!(sha256(&bytes), digest());
}

#[test]
fn a_manifest_query_may_be_refused() {
    let mut query = ManifestQuery::new([0xee; 32]);
    let mut listener = ListenHandshake::new();
    let (request, _) = sent(|| query.poll());
    listener.handle_message(&request[0]).unwrap();
    listener
        .reject(HelloRejectReason::UnknownManifest, "", vec![])
        .unwrap();
    let (reject, _) = sent(|| listener.poll());
    query.handle_message(&reject[0]).unwrap();
    assert!(matches!(
        query.finish(),
        Err(HandshakeFailure::Rejected {
            reason: HelloRejectReason::UnknownManifest,
            ..
        })
    ));
}

#[test]
fn a_manifest_over_its_cap_is_not_served() {
    let mut listener = ListenHandshake::new();
    listener.handle_message(&manifest_request()).unwrap();
    let error = listener
        .serve_manifest(vec![0; minimodel_wire::MAX_MANIFEST_BYTES + 1])
        .unwrap_err();
    assert!(matches!(error, LocalMisuse::Field { .. }), "{error:?}");
    // Nothing was queued; the listener may still refuse.
    assert_eq!(listener.poll(), HandshakeStep::AnswerManifest(digest()));
    listener
        .reject(HelloRejectReason::NotServing, "", vec![])
        .unwrap();
}

#[test]
fn a_hello_answering_a_manifest_request_fails_the_query_without_a_word() {
    let mut query = ManifestQuery::new(digest());
    let _ = sent(|| query.poll());
    query
        .handle_message(&Message::Hello(hello(true, None)))
        .unwrap();
    let (farewell, step) = sent(|| query.poll());
    assert!(farewell.is_empty());
    assert_eq!(step, HandshakeStep::Done);
    assert!(matches!(
        query.finish(),
        Err(HandshakeFailure::Peer(PeerError::Violation(
            ProtocolViolation::NotAnAnswer { .. }
        )))
    ));
}

#[test]
fn malformed_bytes_after_our_hello_end_with_goodbye() {
    let mut dialer =
        DialHandshake::new(swarm(), hello(false, None), HaveBitfield::new(10)).unwrap();
    let mut listener = ListenHandshake::new();
    let (hello_out, _) = sent(|| dialer.poll());
    listener.handle_message(&hello_out[0]).unwrap();
    listener.bind(swarm()).unwrap();
    listener
        .accept(hello(true, None), HaveBitfield::full(10))
        .unwrap();
    let _ = sent(|| listener.poll());
    listener
        .handle_decode_error(DecodeError::EmptyFrame)
        .unwrap();
    let (farewell, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    assert_eq!(
        farewell,
        [Message::Goodbye {
            reason: GoodbyeReason::ProtocolViolation
        }]
    );
    let failure = listener.finish().unwrap_err();
    assert!(failure.farewell(), "the Goodbye is flushed to the peer");
    assert_eq!(
        failure,
        HandshakeFailure::Peer(PeerError::Decode(DecodeError::EmptyFrame))
    );
}

#[test]
fn the_end_of_the_stream_or_a_goodbye_during_the_handshake_fail_it() {
    let mut dialer =
        DialHandshake::new(swarm(), hello(false, None), HaveBitfield::new(10)).unwrap();
    let _ = sent(|| dialer.poll());
    dialer.handle_end().unwrap();
    assert_eq!(dialer.poll(), HandshakeStep::Done);
    let ended = dialer.finish().unwrap_err();
    assert_eq!(ended, HandshakeFailure::Ended);
    assert!(
        !ended.farewell(),
        "nothing is left to say to a peer that left"
    );

    let mut dialer =
        DialHandshake::new(swarm(), hello(false, None), HaveBitfield::new(10)).unwrap();
    let _ = sent(|| dialer.poll());
    dialer
        .handle_message(&Message::Hello(hello(true, None)))
        .unwrap();
    let _ = sent(|| dialer.poll());
    dialer
        .handle_message(&Message::Goodbye {
            reason: GoodbyeReason::Shutdown,
        })
        .unwrap();
    let goodbye = dialer.finish().unwrap_err();
    assert!(!goodbye.farewell());
    assert_eq!(goodbye, HandshakeFailure::Goodbye(GoodbyeReason::Shutdown));
}

#[test]
fn calls_out_of_turn_are_local_misuse() {
    let mut listener = ListenHandshake::new();
    // Nothing to answer yet.
    assert!(matches!(
        listener.accept(hello(true, None), HaveBitfield::full(10)),
        Err(LocalMisuse::HandshakeOutOfTurn { call: "accept", .. })
    ));
    assert!(matches!(
        listener.serve_manifest(vec![]),
        Err(LocalMisuse::HandshakeOutOfTurn { .. })
    ));
    assert!(matches!(
        listener.reject(HelloRejectReason::Banned, "", vec![]),
        Err(LocalMisuse::HandshakeOutOfTurn { .. })
    ));
    assert!(matches!(
        listener.bind(swarm()),
        Err(BindError::Local(LocalMisuse::HandshakeOutOfTurn { .. }))
    ));
    // Accepting before binding sends nothing.
    listener
        .handle_message(&Message::Hello(hello(false, None)))
        .unwrap();
    assert_eq!(
        listener.accept(hello(true, None), HaveBitfield::full(10)),
        Err(LocalMisuse::HelloBeforeBind)
    );
    // While an answer is due, the listener reads nothing.
    assert!(matches!(
        listener.handle_message(&Message::KeepAlive),
        Err(LocalMisuse::HandshakeOutOfTurn { .. })
    ));
    // finish before Done.
    assert!(matches!(
        listener.clone().finish(),
        Err(HandshakeFailure::Local(
            LocalMisuse::HandshakeOutOfTurn { .. }
        ))
    ));
    // A dialer whose bitfield is not the swarm's does not start.
    assert!(DialHandshake::new(swarm(), hello(false, None), HaveBitfield::new(9)).is_err());
    // finish while a message waits to be sent.
    let mut dialer =
        DialHandshake::new(swarm(), hello(false, None), HaveBitfield::new(10)).unwrap();
    dialer.handle_end().unwrap();
    assert!(matches!(
        dialer.finish(),
        Err(HandshakeFailure::Local(LocalMisuse::HandshakeOutOfTurn {
            call: "finish",
            ..
        }))
    ));
}

/// A chunk list of `n` hashes, each different: hash `i` holds `i` in its
/// first four bytes.
fn chunk_list(n: u32) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            let mut hash = [0xc7; 32];
            hash[..4].copy_from_slice(&i.to_le_bytes());
            hash
        })
        .collect()
}

/// A listener asked for the chunk list of `digest()` by a query of
/// `chunk_count` chunks: both machines, the request delivered.
fn asked_for_chunk_list(chunk_count: u32) -> (ChunkListQuery, ListenHandshake) {
    asked_with(ChunkListQuery::new(digest(), chunk_count))
}

fn asked_with(mut query: ChunkListQuery) -> (ChunkListQuery, ListenHandshake) {
    let mut listener = ListenHandshake::new();
    let (request, step) = sent(|| query.poll());
    assert_eq!(step, HandshakeStep::Read);
    assert_eq!(request, [chunk_list_request()]);
    listener.handle_message(&request[0]).unwrap();
    assert_eq!(listener.poll(), HandshakeStep::AnswerChunkList(digest()));
    (query, listener)
}

#[test]
fn a_chunk_list_query_through_the_machines() {
    let list = chunk_list(4500);
    let (mut query, mut listener) = asked_for_chunk_list(4500);
    // A chunk list request is not bound to a swarm, nor accepted as one,
    // nor answered with a manifest.
    assert!(listener.bind(swarm()).is_err());
    assert!(
        listener
            .accept(hello(true, None), HaveBitfield::full(10))
            .is_err()
    );
    assert!(matches!(
        listener.serve_manifest(GOLDEN_MANIFEST.to_vec()),
        Err(LocalMisuse::HandshakeOutOfTurn {
            call: "serve_manifest",
            ..
        })
    ));
    listener.serve_chunk_list(Arc::from(list.clone())).unwrap();
    // The list goes out one frame at a time, 2000 hashes a frame.
    let (answer, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    let parts: Vec<_> = answer
        .iter()
        .map(|message| match message {
            Message::ChunkHashes {
                total,
                first,
                hashes,
            } => (*total, *first, hashes.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        parts,
        [(4500, 0, 2000), (4500, 2000, 2000), (4500, 4000, 500)]
    );
    assert!(
        answer
            .iter()
            .all(|m| m.to_frame().unwrap().len() <= 4 + 65536)
    );
    assert!(listener.control().is_closed());
    assert!(matches!(listener.finish(), Ok(Listened::ChunkListServed)));
    // The query reads until the list is whole.
    for (i, message) in answer.iter().enumerate() {
        let frame = frame(message);
        let decoded = Message::decode(&mut frame.as_slice()).unwrap();
        query.handle_message(&decoded).unwrap();
        let expected = if i + 1 < answer.len() {
            HandshakeStep::Read
        } else {
            HandshakeStep::Done
        };
        assert_eq!(query.poll(), expected, "after part {i}");
    }
    assert!(query.control().is_closed());
    assert_eq!(
        query.finish().unwrap(),
        ReceivedChunkList {
            hashes: list,
            lengths: None
        }
    );
}

#[test]
fn a_chunk_list_takes_as_many_frames_as_it_needs() {
    let max = MAX_CHUNK_HASHES_PER_MESSAGE as u32;
    for (len, frames) in [(1, 1), (max, 1), (max + 1, 2), (3 * max, 3)] {
        let (mut query, mut listener) = asked_for_chunk_list(len);
        listener
            .serve_chunk_list(Arc::from(chunk_list(len)))
            .unwrap();
        let (answer, step) = sent(|| listener.poll());
        assert_eq!(step, HandshakeStep::Done);
        assert_eq!(answer.len(), frames, "{len}");
        for message in &answer {
            query.handle_message(message).unwrap();
        }
        assert_eq!(query.poll(), HandshakeStep::Done);
        assert_eq!(query.finish().unwrap().hashes, chunk_list(len), "{len}");
    }
}

#[test]
fn a_listed_chunk_list_goes_with_its_lengths_1800_chunks_a_frame() {
    let max = MAX_LISTED_CHUNKS_PER_MESSAGE as u32;
    for (len, frames) in [(1, 1), (max, 1), (max + 1, 2), (4500, 3)] {
        let (mut query, mut listener) = asked_with(ChunkListQuery::listed(digest(), len));
        let lengths: Vec<u32> = (0..len).map(|i| 1 + i % 7).collect();
        listener
            .serve_listed_chunk_list(Arc::from(chunk_list(len)), Arc::from(lengths.clone()))
            .unwrap();
        let (answer, step) = sent(|| listener.poll());
        assert_eq!(step, HandshakeStep::Done);
        assert_eq!(answer.len(), frames, "{len}");
        for message in &answer {
            assert!(matches!(message, Message::ListedChunks { .. }));
            assert!(message.to_frame().unwrap().len() <= 4 + 65536);
            query.handle_message(message).unwrap();
        }
        assert_eq!(query.poll(), HandshakeStep::Done);
        assert_eq!(
            query.finish().unwrap(),
            ReceivedChunkList {
                hashes: chunk_list(len),
                lengths: Some(lengths)
            },
            "{len}"
        );
    }
}

#[test]
fn a_listed_chunk_list_needs_a_length_of_1_or_more_for_every_hash() {
    let (_, mut listener) = asked_for_chunk_list(10);
    assert_eq!(
        listener.serve_listed_chunk_list(Arc::from(chunk_list(10)), Arc::from(vec![5; 9])),
        Err(LocalMisuse::ListedLengths {
            hashes: 10,
            lengths: 9
        })
    );
    assert_eq!(
        listener.serve_listed_chunk_list(
            Arc::from(chunk_list(10)),
            Arc::from(vec![5, 5, 5, 0, 5, 5, 5, 5, 5, 5])
        ),
        Err(LocalMisuse::Field {
            message_type: MessageType::ListedChunks,
            error: FieldError::ListedChunkEmpty { chunk: 3 }
        })
    );
    // Nothing was queued; the listener may still refuse.
    assert_eq!(listener.poll(), HandshakeStep::AnswerChunkList(digest()));
    listener
        .reject(HelloRejectReason::NoChunkList, "", vec![])
        .unwrap();
}

#[test]
fn a_listed_query_answered_with_plain_hashes_fails_as_the_listeners_violation() {
    let (mut query, mut listener) = asked_with(ChunkListQuery::listed(digest(), 10));
    listener
        .serve_chunk_list(Arc::from(chunk_list(10)))
        .unwrap();
    let (answer, _) = sent(|| listener.poll());
    let _ = query.handle_message(&answer[0]);
    let (_, step) = sent(|| query.poll());
    assert_eq!(step, HandshakeStep::Done);
    let failure = query.finish().unwrap_err();
    assert!(
        matches!(
            &failure,
            HandshakeFailure::Peer(PeerError::Violation(ProtocolViolation::NotAnAnswer {
                found: MessageType::ChunkHashes,
                ..
            }))
        ),
        "{failure:?}"
    );
}

#[test]
fn a_chunk_list_query_may_be_refused_with_no_chunk_list() {
    let (mut query, mut listener) = asked_for_chunk_list(10);
    listener
        .reject(HelloRejectReason::NoChunkList, "still downloading", vec![])
        .unwrap();
    let (reject, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    assert_eq!(
        listener.finish().unwrap_err(),
        HandshakeFailure::Refused {
            reason: HelloRejectReason::NoChunkList,
            detail: "still downloading".to_owned()
        }
    );
    query.handle_message(&reject[0]).unwrap();
    assert_eq!(query.poll(), HandshakeStep::Done);
    let rejected = query.finish().unwrap_err();
    assert!(!rejected.farewell());
    assert!(matches!(
        rejected,
        HandshakeFailure::Rejected {
            reason: HelloRejectReason::NoChunkList,
            ..
        }
    ));
}

#[test]
fn an_empty_chunk_list_is_not_served() {
    let (_, mut listener) = asked_for_chunk_list(10);
    assert_eq!(
        listener.serve_chunk_list(Arc::from(Vec::new())),
        Err(LocalMisuse::Field {
            message_type: MessageType::ChunkHashes,
            error: FieldError::ChunkListTotal { total: 0 }
        })
    );
    // Nothing was queued; the listener may still refuse.
    assert_eq!(listener.poll(), HandshakeStep::AnswerChunkList(digest()));
    listener
        .reject(HelloRejectReason::NoChunkList, "", vec![])
        .unwrap();
}

#[test]
fn a_listener_serving_its_chunk_list_may_not_refuse_or_read() {
    let (_, mut listener) = asked_for_chunk_list(4500);
    listener
        .serve_chunk_list(Arc::from(chunk_list(4500)))
        .unwrap();
    let HandshakeStep::Send(first) = listener.poll() else {
        panic!("no first part");
    };
    assert!(matches!(first, Message::ChunkHashes { first: 0, .. }));
    // Halfway through the list: no refusal, no second answer, no reading.
    assert!(matches!(
        listener.reject(HelloRejectReason::NoChunkList, "", vec![]),
        Err(LocalMisuse::HandshakeOutOfTurn { call: "reject", .. })
    ));
    assert!(matches!(
        listener.serve_chunk_list(Arc::from(chunk_list(4500))),
        Err(LocalMisuse::HandshakeOutOfTurn {
            call: "serve_chunk_list",
            ..
        })
    ));
    assert!(matches!(
        listener.handle_message(&Message::KeepAlive),
        Err(LocalMisuse::HandshakeOutOfTurn { .. })
    ));
    assert!(matches!(
        listener.handle_end(),
        Err(LocalMisuse::HandshakeOutOfTurn { .. })
    ));
    assert!(matches!(
        listener.clone().finish(),
        Err(HandshakeFailure::Local(
            LocalMisuse::HandshakeOutOfTurn { .. }
        ))
    ));
    // The rest of the list still goes out.
    let (rest, step) = sent(|| listener.poll());
    assert_eq!(step, HandshakeStep::Done);
    assert_eq!(rest.len(), 2);
    assert!(matches!(listener.finish(), Ok(Listened::ChunkListServed)));
}

#[test]
fn serve_chunk_list_answers_only_a_chunk_list_request() {
    // Nothing asked yet.
    let mut listener = ListenHandshake::new();
    assert!(matches!(
        listener.serve_chunk_list(Arc::from(chunk_list(10))),
        Err(LocalMisuse::HandshakeOutOfTurn { .. })
    ));
    // A ManifestRequest, or a Hello.
    for question in [manifest_request(), Message::Hello(hello(false, None))] {
        let mut listener = ListenHandshake::new();
        listener.handle_message(&question).unwrap();
        assert!(
            matches!(
                listener.serve_chunk_list(Arc::from(chunk_list(10))),
                Err(LocalMisuse::HandshakeOutOfTurn {
                    call: "serve_chunk_list",
                    ..
                })
            ),
            "{question:?}"
        );
    }
}

#[test]
fn a_chunk_list_of_another_length_fails_the_query_without_a_word() {
    let (mut query, mut listener) = asked_for_chunk_list(10);
    // The listener serves a list of 9 for the manifest of 10 chunks.
    listener.serve_chunk_list(Arc::from(chunk_list(9))).unwrap();
    let (answer, _) = sent(|| listener.poll());
    query.handle_message(&answer[0]).unwrap();
    let (farewell, step) = sent(|| query.poll());
    assert!(farewell.is_empty());
    assert_eq!(step, HandshakeStep::Done);
    assert_eq!(
        query.finish(),
        Err(HandshakeFailure::Peer(PeerError::Violation(
            ProtocolViolation::ChunkHashesOutOfOrder {
                first: 0,
                total: 9,
                expected_first: 0,
                expected_total: 10
            }
        )))
    );
}

#[test]
fn a_manifest_or_a_hello_answering_a_chunk_list_request_fails_the_query() {
    for answer in [
        Message::Manifest {
            bytes: GOLDEN_MANIFEST.to_vec(),
        },
        Message::Hello(hello(true, None)),
    ] {
        let (mut query, _) = asked_for_chunk_list(10);
        query.handle_message(&answer).unwrap();
        let (farewell, step) = sent(|| query.poll());
        assert!(farewell.is_empty());
        assert_eq!(step, HandshakeStep::Done);
        assert!(
            matches!(
                query.finish(),
                Err(HandshakeFailure::Peer(PeerError::Violation(
                    ProtocolViolation::NotAnAnswer {
                        to: MessageType::ChunkListRequest,
                        ..
                    }
                )))
            ),
            "{answer:?}"
        );
    }
}

#[test]
fn chunk_hashes_answering_a_manifest_request_fail_the_query() {
    let mut query = ManifestQuery::new(digest());
    let _ = sent(|| query.poll());
    query
        .handle_message(&Message::ChunkHashes {
            total: 10,
            first: 0,
            hashes: chunk_list(10),
        })
        .unwrap();
    assert_eq!(query.poll(), HandshakeStep::Done);
    assert!(matches!(
        query.finish(),
        Err(HandshakeFailure::Peer(PeerError::Violation(
            ProtocolViolation::NotAnAnswer {
                found: MessageType::ChunkHashes,
                to: MessageType::ManifestRequest
            }
        )))
    ));
}

#[test]
fn a_listener_that_stops_halfway_through_the_list_fails_the_query() {
    let (mut query, mut listener) = asked_for_chunk_list(4500);
    listener
        .serve_chunk_list(Arc::from(chunk_list(4500)))
        .unwrap();
    let HandshakeStep::Send(first) = listener.poll() else {
        panic!("no first part");
    };
    query.handle_message(&first).unwrap();
    assert_eq!(query.poll(), HandshakeStep::Read);
    query.handle_end().unwrap();
    assert_eq!(query.poll(), HandshakeStep::Done);
    assert_eq!(query.finish(), Err(HandshakeFailure::Ended));
}
