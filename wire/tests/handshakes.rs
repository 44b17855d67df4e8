//! The handshake machines (`DialHandshake`, `ListenHandshake`,
//! `ManifestQuery`): the transcript vector `handshake.hex`, refusals,
//! failures and calls out of turn.

mod common;

use common::control::{digest, manifest_request};
use common::*;
use minimodel_wire::{
    BindError, DecodeError, DialHandshake, GoodbyeReason, HandshakeFailure, HandshakeMachine,
    HandshakeStep, HaveBitfield, HelloRejectReason, ListenHandshake, Listened, LocalMisuse,
    ManifestQuery, Message, PeerEntry, PeerError, PeerFlags, PeerId, ProtocolViolation,
    SwarmIdentity, SwarmMismatch,
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
