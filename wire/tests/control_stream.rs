//! The control-stream state machine: the legal-message table of the spec
//! and every illegal transition with its exact error.

mod common;

use common::control::*;
use common::*;
use minimodel_wire::{
    ChunkIndex, ContextError, ControlStream, HaveBitfield, HelloRejectReason, LocalMisuse, Message,
    MessageType, Phase, ProtocolViolation, RejectReason, Role,
};

/// A message in the sender's row of the table that a cross-direction rule
/// still forbids a swarm session's receiver to take.
fn cross_rule_on_receive(
    receiver: Role,
    phase: Phase,
    found: MessageType,
) -> Option<ProtocolViolation> {
    match (receiver, phase, found) {
        (
            Role::Dialer,
            Phase::AwaitingHello,
            MessageType::Manifest | MessageType::ChunkHashes | MessageType::ListedChunks,
        ) => Some(ProtocolViolation::NotAnAnswer {
            found,
            to: MessageType::Hello,
        }),
        _ => None,
    }
}

/// A message in our row of the table that a cross-direction rule still
/// forbids a swarm session's sender to send.
fn cross_rule_on_send(sender: Role, phase: Phase, found: MessageType) -> Option<LocalMisuse> {
    match (sender, phase, found) {
        (
            Role::Dialer,
            Phase::AwaitingHello,
            MessageType::ManifestRequest | MessageType::ChunkListRequest,
        ) => Some(LocalMisuse::WrongOpening { found }),
        (
            Role::Listener,
            Phase::AwaitingHello,
            MessageType::Manifest | MessageType::ChunkHashes | MessageType::ListedChunks,
        ) => Some(LocalMisuse::NotAnAnswer {
            found,
            to: MessageType::Hello,
        }),
        _ => None,
    }
}

#[test]
fn the_samples_hold_every_control_message_type() {
    let kinds: Vec<MessageType> = samples().iter().map(Message::message_type).collect();
    for kind in MessageType::ALL {
        assert_eq!(
            kinds.contains(&kind),
            !matches!(kind, MessageType::PieceHeader | MessageType::PieceFrom),
            "{kind} in the samples"
        );
    }
}

#[test]
fn received_messages_follow_the_legal_table() {
    for (receiver, binding) in [Role::Dialer, Role::Listener]
        .into_iter()
        .flat_map(|r| BINDINGS.map(|b| (r, b)))
    {
        let sender = receiver.peer();
        for phase in PHASES {
            let legal = Phase::legal_messages(sender, phase);
            for message in samples() {
                let found = message.message_type();
                let mut stream = receiver_in_with(receiver, phase, binding);
                let result = stream.on_receive(&message);
                if let Some(expected) = cross_rule_on_receive(receiver, phase, found) {
                    assert!(legal.contains(&found));
                    assert_eq!(result, Err(expected), "{sender} {phase:?} {found}");
                    assert_eq!(stream.received_phase(), Phase::Closed);
                } else if legal.contains(&found) {
                    assert!(result.is_ok(), "{sender} {phase:?} {found}: {result:?}");
                } else {
                    assert_eq!(
                        result,
                        Err(ProtocolViolation::WrongState {
                            sender,
                            phase,
                            found
                        }),
                        "{sender} {phase:?} {found}"
                    );
                    assert_eq!(stream.received_phase(), Phase::Closed);
                }
            }
        }
    }
}

#[test]
fn sent_messages_follow_the_legal_table() {
    for (sender, binding) in [Role::Dialer, Role::Listener]
        .into_iter()
        .flat_map(|r| BINDINGS.map(|b| (r, b)))
    {
        for phase in PHASES {
            let legal = Phase::legal_messages(sender, phase);
            for message in samples() {
                let found = message.message_type();
                let mut stream = sender_in_with(sender, phase, binding);
                let result = stream.check_send(&message);
                if let Some(expected) = cross_rule_on_send(sender, phase, found) {
                    assert!(legal.contains(&found));
                    assert_eq!(result, Err(expected), "{sender} {phase:?} {found}");
                    assert_eq!(stream.sent_phase(), phase, "nothing recorded on error");
                } else if legal.contains(&found) {
                    assert!(result.is_ok(), "{sender} {phase:?} {found}: {result:?}");
                } else {
                    assert_eq!(
                        result,
                        Err(LocalMisuse::WrongState {
                            sender,
                            phase,
                            found
                        }),
                        "{sender} {phase:?} {found}"
                    );
                    assert_eq!(stream.sent_phase(), phase, "nothing recorded on error");
                }
            }
        }
    }
}

#[test]
fn a_message_before_hello_is_a_violation() {
    let mut listener = ControlStream::listener();
    assert_eq!(
        listener.on_receive(&Message::Request {
            chunk: ChunkIndex(0)
        }),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingHello,
            found: MessageType::Request
        })
    );
    // The peer's direction is now closed: even a Hello is refused.
    assert!(matches!(
        listener.on_receive(&our_hello()),
        Err(ProtocolViolation::WrongState {
            phase: Phase::Closed,
            ..
        })
    ));
}

#[test]
fn a_second_hello_is_a_violation() {
    let mut listener = receiver_in(Role::Listener, Phase::AwaitingBitfield);
    assert_eq!(
        listener.on_receive(&our_hello()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingBitfield,
            found: MessageType::Hello
        })
    );
    let mut dialer = receiver_in(Role::Dialer, Phase::Established);
    assert_eq!(
        dialer.on_receive(&our_hello()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Listener,
            phase: Phase::Established,
            found: MessageType::Hello
        })
    );
}

#[test]
fn a_request_before_the_bitfield_is_a_violation() {
    let mut listener = receiver_in(Role::Listener, Phase::AwaitingBitfield);
    let error = listener
        .on_receive(&Message::Request {
            chunk: ChunkIndex(1),
        })
        .unwrap_err();
    assert_eq!(
        error,
        ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingBitfield,
            found: MessageType::Request
        }
    );
    assert_eq!(
        error.to_string(),
        "Request (0x05) from the dialer is not legal between its Hello and its HaveBitfield; \
         legal there: HaveBitfield, Goodbye"
    );
}

#[test]
fn a_second_bitfield_is_a_violation() {
    let mut dialer = receiver_in(Role::Dialer, Phase::Established);
    assert_eq!(
        dialer.on_receive(&bitfield()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Listener,
            phase: Phase::Established,
            found: MessageType::HaveBitfield
        })
    );
}

#[test]
fn anything_after_goodbye_is_a_violation() {
    for message in samples() {
        let mut listener = receiver_in(Role::Listener, Phase::Closed);
        assert_eq!(
            listener.on_receive(&message),
            Err(ProtocolViolation::WrongState {
                sender: Role::Dialer,
                phase: Phase::Closed,
                found: message.message_type()
            })
        );
    }
}

#[test]
fn a_hello_reject_from_the_dialer_is_a_violation() {
    let mut listener = ControlStream::listener();
    let reject = hello_reject(HelloRejectReason::Banned);
    assert_eq!(
        listener.on_receive(&reject),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingHello,
            found: MessageType::HelloReject
        })
    );
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    assert_eq!(
        dialer.check_send(&reject),
        Err(LocalMisuse::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingHello,
            found: MessageType::HelloReject
        })
    );
}

#[test]
fn chunk_indices_at_or_past_the_count_are_violations() {
    let messages = [
        Message::Have {
            chunk: ChunkIndex(10),
        },
        Message::Request {
            chunk: ChunkIndex(10),
        },
        Message::Cancel {
            chunk: ChunkIndex(11),
        },
        Message::Reject {
            chunk: ChunkIndex(u32::MAX),
            reason: RejectReason::Busy,
        },
    ];
    for message in messages {
        let chunk = message.chunk().unwrap();
        let expected = ContextError::ChunkOutOfRange {
            message_type: message.message_type(),
            chunk,
            chunk_count: 10,
        };
        let mut dialer = receiver_in(Role::Dialer, Phase::Established);
        assert_eq!(
            dialer.on_receive(&message),
            Err(ProtocolViolation::Context(expected.clone()))
        );
        let mut sender = sender_in(Role::Dialer, Phase::Established);
        assert_eq!(
            sender.check_send(&message),
            Err(LocalMisuse::Context(expected))
        );
    }
}

#[test]
fn a_bitfield_of_another_chunk_count_is_a_violation() {
    let wrong = Message::HaveBitfield(HaveBitfield::new(16));
    let mut dialer = receiver_in(Role::Dialer, Phase::AwaitingBitfield);
    assert_eq!(
        dialer.on_receive(&wrong),
        Err(ProtocolViolation::Context(
            ContextError::BitfieldChunkCount {
                found: 16,
                expected: 10
            }
        ))
    );
    let mut sender = sender_in(Role::Listener, Phase::AwaitingBitfield);
    assert_eq!(
        sender.check_send(&wrong),
        Err(LocalMisuse::Context(ContextError::BitfieldChunkCount {
            found: 16,
            expected: 10
        }))
    );
}

#[test]
fn the_listener_speaking_first_is_a_violation() {
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    assert_eq!(
        dialer.on_receive(&our_hello()),
        Err(ProtocolViolation::ListenerSpokeFirst {
            found: MessageType::Hello
        })
    );
}

#[test]
fn the_dialer_bitfield_before_the_listener_hello_is_a_violation() {
    for binding in BINDINGS {
        let mut listener = fresh(Role::Listener, binding);
        listener_takes_hello(&mut listener);
        assert_eq!(
            listener.on_receive(&bitfield()),
            Err(ProtocolViolation::BitfieldBeforeHelloAnswer)
        );
    }
    // Unbound, the bitfield is refused as well, before any swarm is known.
    let mut listener = ControlStream::listener();
    receive(&mut listener, &our_hello());
    assert_eq!(
        listener.on_receive(&bitfield()),
        Err(ProtocolViolation::BitfieldBeforeHelloAnswer)
    );
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    send(&mut dialer, &our_hello());
    assert_eq!(
        dialer.check_send(&bitfield()),
        Err(LocalMisuse::BitfieldBeforeHelloAnswer)
    );
}

#[test]
fn the_listener_answers_only_after_the_dialer_hello() {
    for binding in BINDINGS {
        let mut listener = fresh(Role::Listener, binding);
        for message in [
            our_hello(),
            hello_reject(HelloRejectReason::NotServing),
            manifest(),
            chunk_hashes(10, 0, 10),
        ] {
            assert_eq!(
                listener.check_send(&message),
                Err(LocalMisuse::BeforePeerHello {
                    found: message.message_type()
                })
            );
        }
    }
}
