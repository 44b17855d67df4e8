//! The control stream's v2 transitions: the unbound listener and its
//! binding, manifest queries, chunk list queries, and the rendezvous
//! messages.

mod common;

use common::control::*;
use common::*;
use minimodel_wire::{
    BindError, ControlEvent, ControlStream, FieldError, GoodbyeReason, HelloRejectReason,
    LocalMisuse, MAX_MANIFEST_BYTES, Message, MessageType, PeerError, PeerId, Phase,
    ProtocolViolation, RendezvousFailedReason, Role, SwarmMismatch,
};

fn other_swarm_hello() -> Message {
    let mut hello = hello(true, None);
    hello.model_id = "another-model".to_owned();
    Message::Hello(hello)
}

#[test]
fn an_unbound_listener_takes_any_hello_unchecked() {
    let mut listener = ControlStream::listener();
    assert_eq!(listener.swarm(), None);
    let event = receive(&mut listener, &other_swarm_hello());
    let Message::Hello(expected) = other_swarm_hello() else {
        unreachable!()
    };
    assert_eq!(event, ControlEvent::PeerHello(expected.clone()));
    assert_eq!(listener.received_phase(), Phase::AwaitingBitfield);
    assert_eq!(listener.unchecked_hello(), Some(&expected));
    assert_eq!(listener.peer_hello(), None);
    // It may not answer with its Hello before it is bound...
    assert_eq!(
        listener.clone().check_send(&our_hello()),
        Err(LocalMisuse::HelloBeforeBind)
    );
    // ...but it may refuse without binding: it serves no such swarm.
    let reject = hello_reject(HelloRejectReason::UnknownSwarm);
    listener.check_send(&reject).unwrap();
    assert_eq!(listener.sent_phase(), Phase::Closed);
    assert_eq!(listener.swarm(), None);
}

#[test]
fn binding_checks_the_hello_that_arrived() {
    let mut listener = ControlStream::listener();
    receive(&mut listener, &our_hello());
    listener.bind(swarm()).unwrap();
    assert_eq!(listener.swarm(), Some(&swarm()));
    assert_eq!(listener.unchecked_hello(), None);
    assert!(listener.peer_hello().is_some());
    send(&mut listener, &our_hello());
    send(&mut listener, &bitfield());
    receive(&mut listener, &bitfield());
    assert!(listener.is_established());
}

#[test]
fn binding_before_the_hello_checks_it_on_arrival() {
    let mut listener = ControlStream::listener();
    listener.bind(swarm()).unwrap();
    assert_eq!(
        listener.on_receive(&other_swarm_hello()),
        Err(ProtocolViolation::Swarm(SwarmMismatch::ModelId {
            found: "another-model".to_owned(),
            expected: "tiny-slm-64m".to_owned()
        }))
    );
}

#[test]
fn a_mismatch_found_by_bind_leaves_hello_reject_the_only_answer() {
    let mut listener = ControlStream::listener();
    receive(&mut listener, &other_swarm_hello());
    let error = match listener.bind(swarm()) {
        Err(BindError::Peer(violation)) => violation,
        other => panic!("{other:?}"),
    };
    assert_eq!(listener.received_phase(), Phase::Closed);
    // Whatever follows from the dialer is refused.
    assert!(listener.clone().on_receive(&bitfield()).is_err());
    for message in [our_hello(), manifest()] {
        assert!(
            listener.clone().check_send(&message).is_err(),
            "{message:?}"
        );
    }
    let farewell = listener.farewell(&PeerError::Violation(error)).unwrap();
    assert!(matches!(
        farewell,
        Message::HelloReject {
            reason: HelloRejectReason::WrongSwarm,
            ..
        }
    ));
    send(&mut listener, &farewell);
}

#[test]
fn bind_is_refused_where_it_makes_no_sense() {
    let cannot = |stream: &mut ControlStream| match stream.bind(swarm()) {
        Err(BindError::Local(LocalMisuse::CannotBind { why })) => why,
        other => panic!("{other:?}"),
    };
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    assert_eq!(
        cannot(&mut dialer),
        "a dialer knows its swarm from the start"
    );
    let mut query = ControlStream::manifest_query(digest());
    assert_eq!(
        cannot(&mut query),
        "a dialer knows its swarm from the start"
    );
    let mut bound = ControlStream::new(Role::Listener, swarm());
    assert_eq!(cannot(&mut bound), "the listener is bound already");
    let mut twice = ControlStream::listener();
    twice.bind(swarm()).unwrap();
    assert_eq!(cannot(&mut twice), "the listener is bound already");
    let mut asked = ControlStream::listener();
    receive(&mut asked, &manifest_request());
    assert_eq!(
        cannot(&mut asked),
        "the dialer asked for a manifest, not a swarm"
    );
    let mut refused = ControlStream::listener();
    receive(&mut refused, &our_hello());
    send(&mut refused, &hello_reject(HelloRejectReason::Banned));
    assert_eq!(
        cannot(&mut refused),
        "the listener has answered the dialer already"
    );
    let mut left = ControlStream::listener();
    receive(&mut left, &our_hello());
    receive(&mut left, &goodbye());
    assert_eq!(cannot(&mut left), "the dialer's direction is closed");
    // A refused bind records nothing.
    assert_eq!(left.swarm(), None);
}

#[test]
fn a_manifest_query_end_to_end() {
    let mut dialer = ControlStream::manifest_query(digest());
    let mut listener = ControlStream::listener();
    assert_eq!(dialer.manifest_sha256(), Some(digest()));
    assert_eq!(dialer.swarm(), None);
    send(&mut dialer, &manifest_request());
    assert_eq!(dialer.sent_phase(), Phase::Closed);
    assert_eq!(
        receive(&mut listener, &manifest_request()),
        ControlEvent::ManifestRequested(digest())
    );
    assert_eq!(listener.received_phase(), Phase::Closed);
    assert_eq!(listener.manifest_sha256(), Some(digest()));
    send(&mut listener, &manifest());
    assert!(listener.is_closed());
    assert_eq!(
        receive(&mut dialer, &manifest()),
        ControlEvent::Manifest(GOLDEN_MANIFEST.to_vec())
    );
    assert!(dialer.is_closed());
    // Nothing more either way.
    assert!(dialer.clone().check_send(&goodbye()).is_err());
    assert!(dialer.on_receive(&manifest()).is_err());
    assert!(listener.check_send(&goodbye()).is_err());
}

#[test]
fn a_manifest_query_may_be_refused_with_peers() {
    for binding in BINDINGS {
        let mut dialer = ControlStream::manifest_query(digest());
        let mut listener = fresh(Role::Listener, binding);
        send(&mut dialer, &manifest_request());
        receive(&mut listener, &manifest_request());
        let reject = hello_reject(HelloRejectReason::UnknownManifest);
        send(&mut listener, &reject);
        assert!(listener.is_closed());
        let Message::HelloReject { peers, .. } = &reject else {
            unreachable!()
        };
        assert_eq!(
            receive(&mut dialer, &reject),
            ControlEvent::HelloRejected {
                reason: HelloRejectReason::UnknownManifest,
                detail: String::new(),
                peers: peers.clone()
            }
        );
        assert!(dialer.is_closed());
    }
}

#[test]
fn a_manifest_request_from_a_listener_is_a_violation() {
    // Before the dialer spoke.
    let mut dialer = ControlStream::manifest_query(digest());
    assert_eq!(
        dialer.on_receive(&manifest_request()),
        Err(ProtocolViolation::ListenerSpokeFirst {
            found: MessageType::ManifestRequest
        })
    );
    // After the dialer's Hello or its own request.
    let mut swarm_dialer = ControlStream::new(Role::Dialer, swarm());
    send(&mut swarm_dialer, &our_hello());
    let mut query = ControlStream::manifest_query(digest());
    send(&mut query, &manifest_request());
    for mut dialer in [swarm_dialer, query] {
        assert_eq!(
            dialer.on_receive(&manifest_request()),
            Err(ProtocolViolation::WrongState {
                sender: Role::Listener,
                phase: Phase::AwaitingHello,
                found: MessageType::ManifestRequest
            })
        );
        assert_eq!(dialer.received_phase(), Phase::Closed);
    }
    // And a listener may not send one.
    let mut listener = ControlStream::listener();
    receive(&mut listener, &our_hello());
    assert_eq!(
        listener.check_send(&manifest_request()),
        Err(LocalMisuse::WrongState {
            sender: Role::Listener,
            phase: Phase::AwaitingHello,
            found: MessageType::ManifestRequest
        })
    );
}

#[test]
fn a_manifest_request_after_a_hello_is_a_violation() {
    let mut listener = receiver_in(Role::Listener, Phase::AwaitingBitfield);
    assert_eq!(
        listener.on_receive(&manifest_request()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingBitfield,
            found: MessageType::ManifestRequest
        })
    );
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    send(&mut dialer, &our_hello());
    assert_eq!(
        dialer.check_send(&manifest_request()),
        Err(LocalMisuse::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingBitfield,
            found: MessageType::ManifestRequest
        })
    );
}

#[test]
fn a_second_manifest_request_is_a_violation() {
    let mut listener = ControlStream::listener();
    receive(&mut listener, &manifest_request());
    assert_eq!(
        listener.on_receive(&manifest_request()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::Closed,
            found: MessageType::ManifestRequest
        })
    );
    let mut dialer = ControlStream::manifest_query(digest());
    send(&mut dialer, &manifest_request());
    assert_eq!(
        dialer.check_send(&manifest_request()),
        Err(LocalMisuse::WrongState {
            sender: Role::Dialer,
            phase: Phase::Closed,
            found: MessageType::ManifestRequest
        })
    );
}

#[test]
fn a_manifest_from_a_dialer_is_a_violation() {
    let mut listener = ControlStream::listener();
    assert_eq!(
        listener.on_receive(&manifest()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingHello,
            found: MessageType::Manifest
        })
    );
    let mut dialer = ControlStream::manifest_query(digest());
    assert_eq!(
        dialer.check_send(&manifest()),
        Err(LocalMisuse::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingHello,
            found: MessageType::Manifest
        })
    );
}

#[test]
fn a_manifest_not_asked_for_is_a_violation() {
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    send(&mut dialer, &our_hello());
    assert_eq!(
        dialer.on_receive(&manifest()),
        Err(ProtocolViolation::NotAnAnswer {
            found: MessageType::Manifest,
            to: MessageType::Hello
        })
    );
    assert_eq!(dialer.received_phase(), Phase::Closed);
    // And the listener may not send one in answer to a Hello.
    let mut listener = ControlStream::listener();
    receive(&mut listener, &our_hello());
    assert_eq!(
        listener.check_send(&manifest()),
        Err(LocalMisuse::NotAnAnswer {
            found: MessageType::Manifest,
            to: MessageType::Hello
        })
    );
}

#[test]
fn a_hello_in_answer_to_a_manifest_request_is_a_violation() {
    let mut dialer = ControlStream::manifest_query(digest());
    send(&mut dialer, &manifest_request());
    assert_eq!(
        dialer.on_receive(&our_hello()),
        Err(ProtocolViolation::NotAnAnswer {
            found: MessageType::Hello,
            to: MessageType::ManifestRequest
        })
    );
    let mut listener = ControlStream::new(Role::Listener, swarm());
    receive(&mut listener, &manifest_request());
    assert_eq!(
        listener.check_send(&our_hello()),
        Err(LocalMisuse::NotAnAnswer {
            found: MessageType::Hello,
            to: MessageType::ManifestRequest
        })
    );
}

#[test]
fn each_dialer_opens_only_its_own_session() {
    let mut query = ControlStream::manifest_query(digest());
    assert_eq!(
        query.check_send(&our_hello()),
        Err(LocalMisuse::WrongOpening {
            found: MessageType::Hello
        })
    );
    let other = Message::ManifestRequest {
        manifest_sha256: [0xee; 32],
    };
    assert_eq!(
        query.check_send(&other),
        Err(LocalMisuse::OtherManifest {
            found: [0xee; 32],
            query: digest()
        })
    );
    assert_eq!(query.sent_phase(), Phase::AwaitingHello);
    let mut dialer = ControlStream::new(Role::Dialer, swarm());
    assert_eq!(
        dialer.check_send(&manifest_request()),
        Err(LocalMisuse::WrongOpening {
            found: MessageType::ManifestRequest
        })
    );
}

#[test]
fn a_manifest_over_its_cap_is_not_sent() {
    let mut listener = ControlStream::listener();
    receive(&mut listener, &manifest_request());
    let too_long = Message::Manifest {
        bytes: vec![b'm'; MAX_MANIFEST_BYTES + 1],
    };
    assert_eq!(
        listener.check_send(&too_long),
        Err(LocalMisuse::Field {
            message_type: MessageType::Manifest,
            error: FieldError::ManifestTooLong {
                len: MAX_MANIFEST_BYTES as u64 + 1
            }
        })
    );
    let at_cap = Message::Manifest {
        bytes: vec![b'm'; MAX_MANIFEST_BYTES],
    };
    listener.check_send(&at_cap).unwrap();
    assert!(at_cap.to_frame().unwrap().len() <= 4 + 65536);
}

#[test]
fn a_violation_in_a_manifest_session_ends_it_without_a_word() {
    // The listener has said nothing yet: its farewell is silence.
    let mut listener = ControlStream::listener();
    receive(&mut listener, &manifest_request());
    let error = listener.on_receive(&goodbye()).unwrap_err();
    assert_eq!(listener.farewell(&error.into()), None);
    // The querying dialer has closed its direction already.
    let mut dialer = ControlStream::manifest_query(digest());
    send(&mut dialer, &manifest_request());
    let error = dialer.on_receive(&bitfield()).unwrap_err();
    assert_eq!(dialer.farewell(&error.into()), None);
}

fn rendezvous_messages() -> Vec<(Message, ControlEvent)> {
    vec![
        (
            Message::Rendezvous {
                peer: PeerId([7; 32]),
            },
            ControlEvent::Rendezvous(PeerId([7; 32])),
        ),
        (
            Message::Connect {
                peer: PeerId([8; 32]),
                addrs: vec![addr("198.51.100.8:6000"), v6("2001:db8::8", 6000)],
            },
            ControlEvent::Connect {
                peer: PeerId([8; 32]),
                addrs: vec![addr("198.51.100.8:6000"), v6("2001:db8::8", 6000)],
            },
        ),
        (
            Message::RendezvousFailed {
                peer: PeerId([7; 32]),
                reason: RendezvousFailedReason::NotAllowed,
            },
            ControlEvent::RendezvousFailed {
                peer: PeerId([7; 32]),
                reason: RendezvousFailedReason::NotAllowed,
            },
        ),
    ]
}

#[test]
fn rendezvous_messages_are_legal_both_ways_once_established() {
    for role in [Role::Dialer, Role::Listener] {
        for (message, event) in rendezvous_messages() {
            let mut receiver = receiver_in(role, Phase::Established);
            assert_eq!(receiver.on_receive(&message), Ok(event));
            assert_eq!(receiver.received_phase(), Phase::Established);
            let mut sender = sender_in(role, Phase::Established);
            sender.check_send(&message).unwrap();
            assert_eq!(sender.sent_phase(), Phase::Established);
        }
    }
}

#[test]
fn rendezvous_messages_before_established_or_after_close_are_violations() {
    for role in [Role::Dialer, Role::Listener] {
        for phase in [Phase::AwaitingHello, Phase::AwaitingBitfield, Phase::Closed] {
            for (message, _) in rendezvous_messages() {
                let found = message.message_type();
                let mut receiver = receiver_in(role, phase);
                assert_eq!(
                    receiver.on_receive(&message),
                    Err(ProtocolViolation::WrongState {
                        sender: role.peer(),
                        phase,
                        found
                    }),
                    "{role} receives {found} in {phase:?}"
                );
                let mut sender = sender_in(role, phase);
                assert_eq!(
                    sender.check_send(&message),
                    Err(LocalMisuse::WrongState {
                        sender: role,
                        phase,
                        found
                    }),
                    "{role} sends {found} in {phase:?}"
                );
            }
        }
    }
    // Not in a manifest session either.
    let mut listener = ControlStream::listener();
    receive(&mut listener, &manifest_request());
    for (message, _) in rendezvous_messages() {
        assert!(listener.clone().on_receive(&message).is_err());
        assert!(listener.clone().check_send(&message).is_err());
    }
}

#[test]
fn a_goodbye_during_a_manifest_query_is_a_violation() {
    let mut dialer = ControlStream::manifest_query(digest());
    send(&mut dialer, &manifest_request());
    assert_eq!(
        dialer.on_receive(&Message::Goodbye {
            reason: GoodbyeReason::Shutdown
        }),
        Err(ProtocolViolation::WrongState {
            sender: Role::Listener,
            phase: Phase::AwaitingHello,
            found: MessageType::Goodbye
        })
    );
}

// The chunk list query.

#[test]
fn a_chunk_list_query_end_to_end() {
    for binding in BINDINGS {
        let mut dialer = ControlStream::chunk_list_query(digest(), 10);
        let mut listener = fresh(Role::Listener, binding);
        assert_eq!(dialer.manifest_sha256(), Some(digest()));
        assert_eq!(dialer.swarm(), None);
        send(&mut dialer, &chunk_list_request());
        assert_eq!(dialer.sent_phase(), Phase::Closed);
        assert_eq!(dialer.received_phase(), Phase::AwaitingHello);
        assert_eq!(
            receive(&mut listener, &chunk_list_request()),
            ControlEvent::ChunkListRequested(digest())
        );
        assert_eq!(listener.received_phase(), Phase::Closed);
        assert_eq!(listener.manifest_sha256(), Some(digest()));
        // The list in three parts, in chunk order.
        for (first, count) in [(0, 4), (4, 4), (8, 2)] {
            let part = chunk_hashes(10, first, count);
            send(&mut listener, &part);
            let complete = first + count == 10;
            assert_eq!(listener.is_closed(), complete);
            let Message::ChunkHashes { hashes, .. } = &part else {
                unreachable!()
            };
            assert_eq!(
                receive(&mut dialer, &part),
                ControlEvent::ChunkHashes {
                    first,
                    hashes: hashes.clone(),
                    lengths: None,
                    complete
                }
            );
            assert_eq!(dialer.is_closed(), complete);
        }
        // Nothing more either way.
        assert_eq!(
            dialer.clone().on_receive(&chunk_hashes(10, 9, 1)),
            Err(ProtocolViolation::WrongState {
                sender: Role::Listener,
                phase: Phase::Closed,
                found: MessageType::ChunkHashes
            })
        );
        assert!(dialer.check_send(&goodbye()).is_err());
        assert_eq!(
            listener.clone().check_send(&chunk_hashes(10, 9, 1)),
            Err(LocalMisuse::WrongState {
                sender: Role::Listener,
                phase: Phase::Closed,
                found: MessageType::ChunkHashes
            })
        );
        assert!(listener.check_send(&goodbye()).is_err());
    }
}

#[test]
fn a_listed_chunk_list_query_end_to_end() {
    for binding in BINDINGS {
        let mut dialer = ControlStream::listed_chunk_list_query(digest(), 10);
        let mut listener = fresh(Role::Listener, binding);
        send(&mut dialer, &chunk_list_request());
        receive(&mut listener, &chunk_list_request());
        for (first, count) in [(0, 6), (6, 4)] {
            let part = listed_chunks(10, first, count);
            send(&mut listener, &part);
            let complete = first + count == 10;
            assert_eq!(listener.is_closed(), complete);
            let Message::ListedChunks { chunks, .. } = &part else {
                unreachable!()
            };
            assert_eq!(
                receive(&mut dialer, &part),
                ControlEvent::ChunkHashes {
                    first,
                    hashes: chunks.iter().map(|(hash, _)| *hash).collect(),
                    lengths: Some(chunks.iter().map(|(_, len)| *len).collect()),
                    complete
                }
            );
            assert_eq!(dialer.is_closed(), complete);
        }
    }
}

#[test]
fn a_listed_query_takes_only_listed_chunks_and_a_plain_one_only_chunk_hashes() {
    // Each query knows from its manifest's scheme which answer it needs:
    // hashes without lengths cannot cut a listed file, and lengths are
    // not a plain list's.
    let mut listed = ControlStream::listed_chunk_list_query(digest(), 10);
    send(&mut listed, &chunk_list_request());
    assert_eq!(
        listed.on_receive(&chunk_hashes(10, 0, 10)),
        Err(ProtocolViolation::NotAnAnswer {
            found: MessageType::ChunkHashes,
            to: MessageType::ChunkListRequest
        })
    );
    assert_eq!(listed.received_phase(), Phase::Closed);
    let mut plain = ControlStream::chunk_list_query(digest(), 10);
    send(&mut plain, &chunk_list_request());
    assert_eq!(
        plain.on_receive(&listed_chunks(10, 0, 10)),
        Err(ProtocolViolation::NotAnAnswer {
            found: MessageType::ListedChunks,
            to: MessageType::ChunkListRequest
        })
    );
}

#[test]
fn a_listener_does_not_mix_chunk_hashes_and_listed_chunks_in_one_list() {
    for (head, tail) in [
        (listed_chunks(10, 0, 5), chunk_hashes(10, 5, 5)),
        (chunk_hashes(10, 0, 5), listed_chunks(10, 5, 5)),
    ] {
        let mut listener = ControlStream::listener();
        receive(&mut listener, &chunk_list_request());
        send(&mut listener, &head);
        assert_eq!(
            listener.check_send(&tail),
            Err(LocalMisuse::MixedChunkList {
                found: tail.message_type()
            })
        );
        // Still open: the right kind goes on.
        assert!(!listener.is_closed());
    }
}

#[test]
fn a_chunk_list_in_one_frame_ends_the_query() {
    let mut dialer = ControlStream::chunk_list_query(digest(), 3);
    send(&mut dialer, &chunk_list_request());
    let whole = chunk_hashes(3, 0, 3);
    assert!(matches!(
        receive(&mut dialer, &whole),
        ControlEvent::ChunkHashes {
            first: 0,
            complete: true,
            ..
        }
    ));
    assert!(dialer.is_closed());
}

#[test]
fn a_chunk_list_query_may_be_refused_with_no_chunk_list() {
    for binding in BINDINGS {
        let mut dialer = ControlStream::chunk_list_query(digest(), 10);
        let mut listener = fresh(Role::Listener, binding);
        send(&mut dialer, &chunk_list_request());
        receive(&mut listener, &chunk_list_request());
        let reject = Message::HelloReject {
            reason: HelloRejectReason::NoChunkList,
            detail: "not the whole chunk list yet".to_owned(),
            peers: vec![],
        };
        send(&mut listener, &reject);
        assert!(listener.is_closed());
        assert_eq!(
            receive(&mut dialer, &reject),
            ControlEvent::HelloRejected {
                reason: HelloRejectReason::NoChunkList,
                detail: "not the whole chunk list yet".to_owned(),
                peers: vec![]
            }
        );
        assert!(dialer.is_closed());
    }
}

#[test]
fn chunk_hashes_that_skip_chunks_are_a_violation() {
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    receive(&mut dialer, &chunk_hashes(10, 0, 5));
    let error = dialer.on_receive(&chunk_hashes(10, 7, 3)).unwrap_err();
    assert_eq!(
        error,
        ProtocolViolation::ChunkHashesOutOfOrder {
            first: 7,
            total: 10,
            expected_first: 5,
            expected_total: 10
        }
    );
    assert_eq!(
        error.to_string(),
        "ChunkHashes from chunk 7 of 10; the list goes on at chunk 5 of 10"
    );
    assert_eq!(dialer.received_phase(), Phase::Closed);
    // The rest of the list is refused too.
    assert!(dialer.on_receive(&chunk_hashes(10, 5, 5)).is_err());
}

#[test]
fn chunk_hashes_that_do_not_start_at_chunk_0_or_repeat_are_a_violation() {
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    assert_eq!(
        dialer.on_receive(&chunk_hashes(10, 5, 5)),
        Err(ProtocolViolation::ChunkHashesOutOfOrder {
            first: 5,
            total: 10,
            expected_first: 0,
            expected_total: 10
        })
    );
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    receive(&mut dialer, &chunk_hashes(10, 0, 5));
    assert_eq!(
        dialer.on_receive(&chunk_hashes(10, 0, 5)),
        Err(ProtocolViolation::ChunkHashesOutOfOrder {
            first: 0,
            total: 10,
            expected_first: 5,
            expected_total: 10
        })
    );
}

#[test]
fn a_chunk_list_of_another_length_than_the_query_is_a_violation() {
    // Shorter than the manifest's chunk count, at once.
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    assert_eq!(
        dialer.on_receive(&chunk_hashes(9, 0, 9)),
        Err(ProtocolViolation::ChunkHashesOutOfOrder {
            first: 0,
            total: 9,
            expected_first: 0,
            expected_total: 10
        })
    );
    assert_eq!(dialer.received_phase(), Phase::Closed);
    // Longer.
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    assert!(matches!(
        dialer.on_receive(&chunk_hashes(11, 0, 5)),
        Err(ProtocolViolation::ChunkHashesOutOfOrder {
            expected_total: 10,
            ..
        })
    ));
    // A total that changes on the way.
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    receive(&mut dialer, &chunk_hashes(10, 0, 5));
    assert_eq!(
        dialer.on_receive(&chunk_hashes(12, 5, 5)),
        Err(ProtocolViolation::ChunkHashesOutOfOrder {
            first: 5,
            total: 12,
            expected_first: 5,
            expected_total: 10
        })
    );
}

#[test]
fn a_hello_reject_after_chunk_hashes_is_a_violation() {
    let reject = hello_reject(HelloRejectReason::NoChunkList);
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    receive(&mut dialer, &chunk_hashes(10, 0, 5));
    assert_eq!(
        dialer.on_receive(&reject),
        Err(ProtocolViolation::WrongState {
            sender: Role::Listener,
            phase: Phase::AwaitingHello,
            found: MessageType::HelloReject
        })
    );
    assert_eq!(dialer.received_phase(), Phase::Closed);
    // And the listener may not send one once it started the list.
    let mut listener = ControlStream::listener();
    receive(&mut listener, &chunk_list_request());
    send(&mut listener, &chunk_hashes(10, 0, 5));
    assert_eq!(
        listener.check_send(&reject),
        Err(LocalMisuse::WrongState {
            sender: Role::Listener,
            phase: Phase::AwaitingHello,
            found: MessageType::HelloReject
        })
    );
    // It may still end the list.
    send(&mut listener, &chunk_hashes(10, 5, 5));
    assert!(listener.is_closed());
}

#[test]
fn a_manifest_or_a_hello_answering_a_chunk_list_request_is_a_violation() {
    for (answer, found) in [
        (manifest(), MessageType::Manifest),
        (our_hello(), MessageType::Hello),
    ] {
        let mut dialer = ControlStream::chunk_list_query(digest(), 10);
        send(&mut dialer, &chunk_list_request());
        assert_eq!(
            dialer.on_receive(&answer),
            Err(ProtocolViolation::NotAnAnswer {
                found,
                to: MessageType::ChunkListRequest
            })
        );
        assert_eq!(dialer.received_phase(), Phase::Closed);
        let mut listener = ControlStream::new(Role::Listener, swarm());
        receive(&mut listener, &chunk_list_request());
        assert_eq!(
            listener.check_send(&answer),
            Err(LocalMisuse::NotAnAnswer {
                found,
                to: MessageType::ChunkListRequest
            })
        );
        assert_eq!(listener.sent_phase(), Phase::AwaitingHello);
    }
}

#[test]
fn chunk_hashes_answering_a_manifest_request_or_a_hello_are_a_violation() {
    let mut query = ControlStream::manifest_query(digest());
    send(&mut query, &manifest_request());
    let mut swarm_dialer = ControlStream::new(Role::Dialer, swarm());
    send(&mut swarm_dialer, &our_hello());
    for (mut dialer, to) in [
        (query, MessageType::ManifestRequest),
        (swarm_dialer, MessageType::Hello),
    ] {
        assert_eq!(
            dialer.on_receive(&chunk_hashes(10, 0, 10)),
            Err(ProtocolViolation::NotAnAnswer {
                found: MessageType::ChunkHashes,
                to
            })
        );
        assert_eq!(dialer.received_phase(), Phase::Closed);
    }
    // And the listener may not send them there.
    let mut asked = ControlStream::listener();
    receive(&mut asked, &manifest_request());
    let mut greeted = ControlStream::listener();
    listener_takes_hello(&mut greeted);
    for (mut listener, to) in [
        (asked, MessageType::ManifestRequest),
        (greeted, MessageType::Hello),
    ] {
        assert_eq!(
            listener.check_send(&chunk_hashes(10, 0, 10)),
            Err(LocalMisuse::NotAnAnswer {
                found: MessageType::ChunkHashes,
                to
            })
        );
    }
}

#[test]
fn chunk_hashes_before_the_dialer_spoke_are_a_violation() {
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    assert_eq!(
        dialer.on_receive(&chunk_hashes(10, 0, 10)),
        Err(ProtocolViolation::ListenerSpokeFirst {
            found: MessageType::ChunkHashes
        })
    );
    // Nor may a listener send them before the dialer's request.
    for binding in BINDINGS {
        let mut listener = fresh(Role::Listener, binding);
        assert_eq!(
            listener.check_send(&chunk_hashes(10, 0, 10)),
            Err(LocalMisuse::BeforePeerHello {
                found: MessageType::ChunkHashes
            })
        );
    }
}

#[test]
fn a_listener_sends_its_chunk_list_in_order_and_whole() {
    let mut listener = ControlStream::listener();
    receive(&mut listener, &chunk_list_request());
    // From chunk 0 on.
    assert_eq!(
        listener.check_send(&chunk_hashes(10, 2, 8)),
        Err(LocalMisuse::ChunkHashesOutOfOrder {
            first: 2,
            total: 10,
            expected_first: 0,
            expected_total: 10
        })
    );
    send(&mut listener, &chunk_hashes(10, 0, 5));
    // No gap, no other total; nothing is recorded on error.
    assert_eq!(
        listener.check_send(&chunk_hashes(10, 7, 3)),
        Err(LocalMisuse::ChunkHashesOutOfOrder {
            first: 7,
            total: 10,
            expected_first: 5,
            expected_total: 10
        })
    );
    assert_eq!(
        listener.check_send(&chunk_hashes(11, 5, 5)),
        Err(LocalMisuse::ChunkHashesOutOfOrder {
            first: 5,
            total: 11,
            expected_first: 5,
            expected_total: 10
        })
    );
    assert_eq!(listener.sent_phase(), Phase::AwaitingHello);
    send(&mut listener, &chunk_hashes(10, 5, 5));
    assert!(listener.is_closed());
}

#[test]
fn each_dialer_opens_only_its_own_query() {
    let mut chunk_query = ControlStream::chunk_list_query(digest(), 10);
    for found in [our_hello(), manifest_request()] {
        assert_eq!(
            chunk_query.check_send(&found),
            Err(LocalMisuse::WrongOpening {
                found: found.message_type()
            })
        );
    }
    let other = Message::ChunkListRequest {
        manifest_sha256: [0xee; 32],
    };
    assert_eq!(
        chunk_query.check_send(&other),
        Err(LocalMisuse::OtherManifest {
            found: [0xee; 32],
            query: digest()
        })
    );
    assert_eq!(chunk_query.sent_phase(), Phase::AwaitingHello);
    let mut manifest_query = ControlStream::manifest_query(digest());
    let mut swarm_dialer = ControlStream::new(Role::Dialer, swarm());
    for dialer in [&mut manifest_query, &mut swarm_dialer] {
        assert_eq!(
            dialer.check_send(&chunk_list_request()),
            Err(LocalMisuse::WrongOpening {
                found: MessageType::ChunkListRequest
            })
        );
    }
}

#[test]
fn a_chunk_list_request_from_a_listener_after_a_hello_or_twice_is_a_violation() {
    // From the listener, before or after the dialer spoke.
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    assert_eq!(
        dialer.on_receive(&chunk_list_request()),
        Err(ProtocolViolation::ListenerSpokeFirst {
            found: MessageType::ChunkListRequest
        })
    );
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    assert_eq!(
        dialer.on_receive(&chunk_list_request()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Listener,
            phase: Phase::AwaitingHello,
            found: MessageType::ChunkListRequest
        })
    );
    // After the dialer's Hello.
    let mut listener = receiver_in(Role::Listener, Phase::AwaitingBitfield);
    assert_eq!(
        listener.on_receive(&chunk_list_request()),
        Err(ProtocolViolation::WrongState {
            sender: Role::Dialer,
            phase: Phase::AwaitingBitfield,
            found: MessageType::ChunkListRequest
        })
    );
    // A second one, or one after a ManifestRequest.
    for first in [chunk_list_request(), manifest_request()] {
        let mut listener = ControlStream::listener();
        receive(&mut listener, &first);
        assert_eq!(
            listener.on_receive(&chunk_list_request()),
            Err(ProtocolViolation::WrongState {
                sender: Role::Dialer,
                phase: Phase::Closed,
                found: MessageType::ChunkListRequest
            })
        );
    }
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    assert_eq!(
        dialer.check_send(&chunk_list_request()),
        Err(LocalMisuse::WrongState {
            sender: Role::Dialer,
            phase: Phase::Closed,
            found: MessageType::ChunkListRequest
        })
    );
}

#[test]
fn binding_a_chunk_list_stream_is_refused() {
    let cannot = |stream: &mut ControlStream| match stream.bind(swarm()) {
        Err(BindError::Local(LocalMisuse::CannotBind { why })) => why,
        other => panic!("{other:?}"),
    };
    let mut asked = ControlStream::listener();
    receive(&mut asked, &chunk_list_request());
    assert_eq!(
        cannot(&mut asked),
        "the dialer asked for a chunk list, not a swarm"
    );
    assert_eq!(asked.swarm(), None);
    let mut query = ControlStream::chunk_list_query(digest(), 10);
    assert_eq!(
        cannot(&mut query),
        "a dialer knows its swarm from the start"
    );
}

#[test]
fn a_violation_in_a_chunk_list_query_ends_it_without_a_word() {
    // The listener has said nothing yet, or only part of the list.
    for parts in [0, 1] {
        let mut listener = ControlStream::listener();
        receive(&mut listener, &chunk_list_request());
        if parts == 1 {
            send(&mut listener, &chunk_hashes(10, 0, 5));
        }
        let error = listener.on_receive(&goodbye()).unwrap_err();
        assert_eq!(listener.farewell(&error.into()), None, "{parts}");
    }
    // The querying dialer has closed its direction already.
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    receive(&mut dialer, &chunk_hashes(10, 0, 5));
    let error = dialer.on_receive(&chunk_hashes(10, 9, 1)).unwrap_err();
    assert_eq!(dialer.farewell(&error.into()), None);
}

#[test]
fn a_goodbye_or_swarm_messages_during_a_chunk_list_query_are_a_violation() {
    let mut dialer = ControlStream::chunk_list_query(digest(), 10);
    send(&mut dialer, &chunk_list_request());
    receive(&mut dialer, &chunk_hashes(10, 0, 5));
    assert_eq!(
        dialer.clone().on_receive(&Message::Goodbye {
            reason: GoodbyeReason::Shutdown
        }),
        Err(ProtocolViolation::WrongState {
            sender: Role::Listener,
            phase: Phase::AwaitingHello,
            found: MessageType::Goodbye
        })
    );
    let mut listener = ControlStream::listener();
    receive(&mut listener, &chunk_list_request());
    for message in [bitfield(), goodbye(), Message::KeepAlive] {
        assert!(dialer.clone().on_receive(&message).is_err(), "{message:?}");
        assert!(
            listener.clone().check_send(&message).is_err(),
            "{message:?}"
        );
    }
}
