//! The control-stream handshake end to end: a full session through the
//! codec, swarm mismatches, HelloReject, Goodbye and the farewell message
//! after a violation.

mod common;

use common::control::*;
use common::*;
use minimodel_wire::{
    BindError, ChunkIndex, ControlEvent, ControlStream, DecodeError, FieldError, GoodbyeReason,
    HaveBitfield, Hello, HelloRejectReason, LocalMisuse, Message, MessageType, PeerError, Phase,
    ProtocolViolation, Role, SwarmIdentity, SwarmMismatch, SwarmParams,
};

#[test]
fn a_full_session_through_the_codec() {
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    let mut listener = ControlStream::listener();
    let mut to_listener = minimodel_wire::FrameDecoder::new();
    let mut to_dialer = minimodel_wire::FrameDecoder::new();
    let transfer = |from: &mut ControlStream,
                    to: &mut ControlStream,
                    wire: &mut minimodel_wire::FrameDecoder,
                    message: Message|
     -> ControlEvent {
        from.check_send(&message).unwrap();
        wire.feed(&frame(&message)).unwrap();
        let received = wire.next_message().unwrap().unwrap();
        to.on_receive(&received).unwrap()
    };

    let dialer_hello = Message::Hello(hello(false, None));
    let event = transfer(&mut dialer, &mut listener, &mut to_listener, dialer_hello);
    assert_eq!(event, ControlEvent::PeerHello(hello(false, None)));
    assert_eq!(listener.peer_hello(), None, "unchecked until bound");
    listener.bind(swarm()).unwrap();
    assert_eq!(listener.peer_hello(), Some(&hello(false, None)));
    let event = transfer(&mut listener, &mut dialer, &mut to_dialer, our_hello());
    assert!(matches!(event, ControlEvent::PeerHello(h) if h.serving));
    assert_eq!(
        dialer.peer_hello().map(|h| h.listen),
        Some(Some("192.0.2.7:4433".parse().unwrap()))
    );
    let event = transfer(&mut listener, &mut dialer, &mut to_dialer, bitfield());
    assert_eq!(event, ControlEvent::Bitfield(HaveBitfield::full(10)));
    let empty = Message::HaveBitfield(HaveBitfield::new(10));
    let event = transfer(&mut dialer, &mut listener, &mut to_listener, empty);
    assert_eq!(event, ControlEvent::Bitfield(HaveBitfield::new(10)));
    assert!(dialer.is_established() && listener.is_established());

    let request = Message::Request {
        chunk: ChunkIndex(4),
    };
    let event = transfer(&mut dialer, &mut listener, &mut to_listener, request);
    assert_eq!(event, ControlEvent::Request(ChunkIndex(4)));
    let have = Message::Have {
        chunk: ChunkIndex(4),
    };
    let event = transfer(&mut dialer, &mut listener, &mut to_listener, have);
    assert_eq!(event, ControlEvent::Have(ChunkIndex(4)));
    let event = transfer(&mut listener, &mut dialer, &mut to_dialer, goodbye());
    assert_eq!(event, ControlEvent::Goodbye(GoodbyeReason::Done));
    let event = transfer(&mut dialer, &mut listener, &mut to_listener, goodbye());
    assert_eq!(event, ControlEvent::Goodbye(GoodbyeReason::Done));
    assert!(dialer.is_closed() && listener.is_closed());
}

fn mismatched_hellos() -> Vec<(Hello, SwarmMismatch)> {
    let base = hello(true, None);
    let mut cases = Vec::new();
    let mut h = base.clone();
    h.protocol_version = 1;
    cases.push((
        h,
        SwarmMismatch::ProtocolVersion {
            found: 1,
            expected: minimodel_wire::PROTOCOL_VERSION,
        },
    ));
    let mut h = base.clone();
    h.model_id = "other-model".to_owned();
    cases.push((
        h,
        SwarmMismatch::ModelId {
            found: "other-model".to_owned(),
            expected: "tiny-slm-64m".to_owned(),
        },
    ));
    let mut h = base.clone();
    h.merkle_root[31] ^= 1;
    let found = h.merkle_root;
    cases.push((
        h,
        SwarmMismatch::MerkleRoot {
            found,
            expected: root(),
        },
    ));
    let mut h = base.clone();
    h.artifact_bytes += 1;
    cases.push((
        h,
        SwarmMismatch::ArtifactBytes {
            found: 10_000_001,
            expected: 10_000_000,
        },
    ));
    let mut h = base.clone();
    h.chunk_size = 1 << 19;
    cases.push((
        h,
        SwarmMismatch::ChunkSize {
            found: 1 << 19,
            expected: 1 << 20,
        },
    ));
    let mut h = base;
    h.chunk_count = 11;
    cases.push((
        h,
        SwarmMismatch::ChunkCount {
            found: 11,
            expected: 10,
        },
    ));
    cases
}

/// The error a listener meets on a Hello for another swarm: from `bind`
/// when unbound (the Hello itself is accepted unchecked), from
/// `on_receive` when bound at the start.
fn refuse(binding: Binding, hello: Hello) -> (ControlStream, ProtocolViolation) {
    let mut listener = fresh(Role::Listener, binding);
    let error = match binding {
        Binding::OnHello => {
            let event = listener.on_receive(&Message::Hello(hello.clone())).unwrap();
            assert_eq!(event, ControlEvent::PeerHello(hello.clone()));
            assert_eq!(listener.unchecked_hello(), Some(&hello));
            match listener.bind(swarm()) {
                Err(BindError::Peer(violation)) => violation,
                other => panic!("{other:?}"),
            }
        }
        Binding::AtStart => listener.on_receive(&Message::Hello(hello)).unwrap_err(),
    };
    assert_eq!(listener.received_phase(), Phase::Closed);
    assert_eq!(listener.peer_hello(), None);
    assert_eq!(listener.unchecked_hello(), None);
    (listener, error)
}

#[test]
fn a_hello_for_another_swarm_is_answered_with_hello_reject() {
    for ((hello, mismatch), binding) in mismatched_hellos()
        .into_iter()
        .flat_map(|case| BINDINGS.map(|b| (case.clone(), b)))
    {
        let (mut listener, error) = refuse(binding, hello);
        assert_eq!(error, ProtocolViolation::Swarm(mismatch.clone()));
        assert_eq!(error.goodbye_reason(), GoodbyeReason::WrongSwarm);
        let farewell = listener.farewell(&PeerError::Violation(error)).unwrap();
        let expected_reason = match mismatch {
            SwarmMismatch::ProtocolVersion { .. } => HelloRejectReason::UnsupportedVersion,
            _ => HelloRejectReason::WrongSwarm,
        };
        assert!(
            matches!(&farewell, Message::HelloReject { reason, detail, peers }
                if *reason == expected_reason && detail.starts_with("Hello ") && peers.is_empty()),
            "{farewell:?}"
        );
        // The farewell is legal to send and encodes; Hello no longer is.
        assert_eq!(
            listener.clone().check_send(&our_hello()),
            Err(LocalMisuse::HelloAfterRefusedHello)
        );
        listener.check_send(&farewell).unwrap();
        farewell.to_frame().unwrap();
        assert_eq!(listener.sent_phase(), Phase::Closed);
    }
}

#[test]
fn a_listener_hello_for_another_swarm_is_answered_with_goodbye() {
    let (hello, mismatch) = mismatched_hellos().remove(1);
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    send(&mut dialer, &our_hello());
    let error = dialer.on_receive(&Message::Hello(hello)).unwrap_err();
    assert_eq!(error, ProtocolViolation::Swarm(mismatch));
    let farewell = dialer.farewell(&error.into()).unwrap();
    assert_eq!(
        farewell,
        Message::Goodbye {
            reason: GoodbyeReason::WrongSwarm
        }
    );
    dialer.check_send(&farewell).unwrap();
}

#[test]
fn our_own_hello_must_describe_our_swarm() {
    for (hello, mismatch) in mismatched_hellos() {
        let mut dialer = ControlStream::new(Role::Dialer, swarm());
        assert_eq!(
            dialer.check_send(&Message::Hello(hello)),
            Err(LocalMisuse::Swarm(mismatch))
        );
        assert_eq!(dialer.sent_phase(), Phase::AwaitingHello);
    }
    let mut bad = hello(true, None);
    bad.agent = "\n".to_owned();
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    assert_eq!(
        dialer.check_send(&Message::Hello(bad)),
        Err(LocalMisuse::Field {
            message_type: MessageType::Hello,
            error: FieldError::AgentCharacter {
                position: 0,
                byte: b'\n'
            }
        })
    );
}

#[test]
fn a_hello_reject_ends_the_session_for_both_sides() {
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    let mut listener = ControlStream::listener();
    send(&mut dialer, &our_hello());
    receive(&mut listener, &our_hello());
    // A listener refuses without binding: a Hello it will not take needs
    // no swarm.
    let peers = vec![minimodel_wire::PeerEntry::new(
        minimodel_wire::PeerId([5; 32]),
        addr("192.0.2.5:4433"),
    )];
    let reject = Message::HelloReject {
        reason: HelloRejectReason::TooManyPeers,
        detail: "32 peers already".to_owned(),
        peers: peers.clone(),
    };
    send(&mut listener, &reject);
    assert_eq!(listener.sent_phase(), Phase::Closed);
    assert_eq!(
        receive(&mut dialer, &reject),
        ControlEvent::HelloRejected {
            reason: HelloRejectReason::TooManyPeers,
            detail: "32 peers already".to_owned(),
            peers
        }
    );
    assert!(dialer.is_closed());
    assert!(matches!(
        dialer.check_send(&goodbye()),
        Err(LocalMisuse::WrongState {
            phase: Phase::Closed,
            ..
        })
    ));
    // A Goodbye the dialer sent before it saw the reject is still legal...
    assert_eq!(
        listener.clone().on_receive(&goodbye()),
        Ok(ControlEvent::Goodbye(GoodbyeReason::Done))
    );
    // ...but a bitfield is not: the listener never sent its Hello.
    assert_eq!(
        listener.on_receive(&bitfield()),
        Err(ProtocolViolation::BitfieldBeforeHelloAnswer)
    );
}

#[test]
fn goodbye_may_come_before_the_bitfield() {
    let mut listener = receiver_in(Role::Listener, Phase::AwaitingBitfield);
    assert_eq!(
        listener.on_receive(&Message::Goodbye {
            reason: GoodbyeReason::Shutdown
        }),
        Ok(ControlEvent::Goodbye(GoodbyeReason::Shutdown))
    );
    let mut dialer = sender_in(Role::Dialer, Phase::AwaitingBitfield);
    dialer.check_send(&goodbye()).unwrap();
}

#[test]
fn messages_in_flight_after_our_goodbye_are_still_legal() {
    let mut listener = sender_in(Role::Listener, Phase::Closed);
    receive(&mut listener, &bitfield());
    assert_eq!(
        listener.on_receive(&Message::Request {
            chunk: ChunkIndex(2)
        }),
        Ok(ControlEvent::Request(ChunkIndex(2)))
    );
    // But we may send nothing more.
    assert!(listener.check_send(&Message::KeepAlive).is_err());
}

#[test]
fn after_a_decode_error_the_farewell_is_a_goodbye_once_hello_is_out() {
    let error = PeerError::Decode(DecodeError::UnknownType { type_byte: 0x42 });
    let established = sender_in(Role::Dialer, Phase::Established);
    assert_eq!(
        established.farewell(&error),
        Some(Message::Goodbye {
            reason: GoodbyeReason::ProtocolViolation
        })
    );
    // Before our Hello there is nothing to say: just close.
    let new = ControlStream::new(Role::Dialer, swarm());
    assert_eq!(new.farewell(&error), None);
    let listener = sender_in(Role::Listener, Phase::AwaitingHello);
    assert_eq!(listener.farewell(&error), None);
    // After our Goodbye neither.
    let closed = sender_in(Role::Listener, Phase::Closed);
    assert_eq!(closed.farewell(&error), None);
}

#[test]
fn a_swarm_of_one_chunk_works() {
    let params = SwarmParams::new(5, 1 << 20, 1).unwrap();
    let swarm = SwarmIdentity::new("one", [0; 32], params).unwrap();
    let mut dialer = ControlStream::new(Role::Dialer, swarm.clone());
    let hello = Message::Hello(swarm.hello(true, None, "").unwrap());
    dialer.check_send(&hello).unwrap();
    dialer.on_receive(&hello).unwrap();
    dialer
        .check_send(&Message::HaveBitfield(HaveBitfield::new(1)))
        .unwrap();
    assert_eq!(
        dialer.on_receive(&Message::HaveBitfield(HaveBitfield::full(1))),
        Ok(ControlEvent::Bitfield(HaveBitfield::full(1)))
    );
    assert!(dialer.is_established());
}
