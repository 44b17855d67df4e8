//! The `wire_decode` fuzz target's seed corpus runs through the same entry
//! point as the fuzzer, and reaches what it is meant to reach.

mod common;

use std::path::PathBuf;

use minimodel_wire::fuzzing::{FuzzOutcome, wire_decode};

fn seed(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus/wire_decode")
        .join(format!("seed-{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn session_seeds_reach_the_established_phase_without_error() {
    for name in ["listener-session", "dialer-session"] {
        let outcome = wire_decode(&seed(name));
        assert_eq!(
            outcome,
            FuzzOutcome {
                messages: 9,
                events: 9,
                established: true,
                piece_received: false,
                error: None
            },
            "{name}"
        );
    }
}

#[test]
fn v3_session_seeds_take_a_request_from_and_a_v2_session_refuses_it() {
    // The v2 sessions with the Hello's version 3 and a RequestFrom before
    // the Goodbye: ten messages, all taken.
    for name in ["listener-v3-session", "dialer-v3-session"] {
        let seed = seed(name);
        assert_eq!(seed[0] & 0x20, 0x20, "{name}: a v3 session");
        let outcome = wire_decode(&seed);
        assert_eq!(
            outcome,
            FuzzOutcome {
                messages: 10,
                events: 10,
                established: true,
                piece_received: false,
                error: None
            },
            "{name}"
        );
        // As a v2 session, its v3 Hello names another version.
        let mut v2 = seed.clone();
        v2[0] &= !0x20;
        let outcome = wire_decode(&v2);
        assert!(
            outcome.error.unwrap().contains("protocol version 3"),
            "{name}"
        );
    }
}

#[test]
fn the_unbound_listener_seed_binds_and_takes_the_rendezvous_messages() {
    let outcome = wire_decode(&seed("listener-unbound-session"));
    assert_eq!(
        outcome,
        FuzzOutcome {
            messages: 12,
            events: 12,
            established: true,
            piece_received: false,
            error: None
        }
    );
}

#[test]
fn the_rejected_dialer_seeds_end_cleanly() {
    for name in ["dialer-rejected", "dialer-manifest-rejected"] {
        let outcome = wire_decode(&seed(name));
        assert_eq!(outcome.events, 1, "{name}");
        assert_eq!(outcome.error, None, "{name}");
    }
}

#[test]
fn the_manifest_query_seeds_end_cleanly() {
    for name in ["listener-manifest-request", "dialer-manifest-query"] {
        let outcome = wire_decode(&seed(name));
        assert_eq!(
            outcome,
            FuzzOutcome {
                messages: 1,
                events: 1,
                established: false,
                piece_received: false,
                error: None
            },
            "{name}"
        );
    }
}

#[test]
fn the_chunk_list_query_seeds_end_cleanly() {
    // The dialer takes the list of 10 in two ChunkHashes; the listener
    // takes the request and answers it (its answers are not counted).
    for (name, messages) in [
        ("dialer-chunk-list-query", 2),
        ("listener-chunk-list-request", 1),
        ("dialer-chunk-list-rejected", 1),
        ("dialer-listed-chunk-list-query", 2),
        ("listener-listed-chunk-list-request", 1),
    ] {
        let outcome = wire_decode(&seed(name));
        assert_eq!(
            outcome,
            FuzzOutcome {
                messages,
                events: messages,
                established: false,
                piece_received: false,
                error: None
            },
            "{name}"
        );
    }
}

#[test]
fn a_listed_query_refuses_plain_hashes_and_a_plain_one_listed_chunks() {
    use minimodel_wire::Message;
    let run = |flags: u8, message: Message| {
        let mut input = vec![flags, 0x00];
        input.extend_from_slice(&common::frame(&message));
        wire_decode(&input)
    };
    let plain = Message::ChunkHashes {
        total: 10,
        first: 0,
        hashes: vec![[0x5a; 32]; 10],
    };
    let listed = Message::ListedChunks {
        total: 10,
        first: 0,
        chunks: vec![([0x5a; 32], 100); 10],
    };
    for (flags, message) in [(0x1d, plain.clone()), (0x0d, listed.clone())] {
        let outcome = run(flags, message);
        assert_eq!((outcome.messages, outcome.events), (1, 0), "{flags:#x}");
        assert!(
            outcome
                .error
                .unwrap()
                .contains("answered the dialer's ChunkListRequest")
        );
    }
    for (flags, message) in [(0x0d, plain), (0x1d, listed)] {
        let outcome = run(flags, message);
        assert_eq!((outcome.events, outcome.error), (1, None), "{flags:#x}");
    }
}

#[test]
fn a_chunk_list_query_refuses_a_list_out_of_order_or_of_another_length() {
    use minimodel_wire::Message;
    let query = |frames: &[Message]| {
        let mut input = vec![0x0d, 0x00];
        for message in frames {
            input.extend_from_slice(&common::frame(message));
        }
        wire_decode(&input)
    };
    let part = |total, first, count| Message::ChunkHashes {
        total,
        first,
        hashes: vec![[0x5a; 32]; count],
    };
    // The golden swarm has 10 chunks: a list of 9 is not its list.
    let outcome = query(&[part(9, 0, 9)]);
    assert_eq!((outcome.messages, outcome.events), (1, 0));
    assert!(outcome.error.unwrap().contains("chunk 0 of 10"));
    // The second part skips chunks 5 and 6.
    let outcome = query(&[part(10, 0, 5), part(10, 7, 3)]);
    assert_eq!((outcome.messages, outcome.events), (2, 1));
    assert!(outcome.error.unwrap().contains("chunk 5 of 10"));
    // Nothing is taken after the whole list.
    let outcome = query(&[part(10, 0, 10), part(10, 0, 1)]);
    assert_eq!((outcome.messages, outcome.events), (2, 1));
    assert!(outcome.error.is_some());
}

#[test]
fn every_single_message_seed_is_its_golden_vector() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wire");
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".hex") else {
            continue;
        };
        if ["handshake", "piece_header", "piece_from"].contains(&stem) {
            continue;
        }
        let text = std::fs::read_to_string(fixtures.join(&name)).unwrap();
        let seed = seed(&format!("single-{}", stem.replace('_', "-")));
        assert_eq!(&seed[..2], &[0x00, 0x55], "{name}");
        assert_eq!(seed[2..], common::parse_annotated_hex(&text)[..], "{name}");
    }
}

#[test]
fn piece_seeds_deliver_a_whole_piece() {
    for name in ["piece-last", "piece-first"] {
        let outcome = wire_decode(&seed(name));
        assert!(outcome.piece_received, "{name}: {outcome:?}");
        assert_eq!(outcome.error, None, "{name}");
    }
    // A PieceFrom of chunk 15 (40 bytes) from byte 8, in a v3 session;
    // a v2 session refuses it.
    let piece_from = seed("piece-from-last");
    let outcome = wire_decode(&piece_from);
    assert!(outcome.piece_received, "{outcome:?}");
    assert_eq!(outcome.error, None);
    let mut v2 = piece_from.clone();
    v2[0] &= !0x20;
    let outcome = wire_decode(&v2);
    assert!(!outcome.piece_received);
    assert!(outcome.error.unwrap().contains("not part of protocol v2"));
    // The golden header names chunk 9 of 562816 bytes: not this swarm's.
    let outcome = wire_decode(&seed("piece-golden-header"));
    assert!(!outcome.piece_received);
    assert!(outcome.error.is_some());
}

#[test]
fn every_seed_runs_and_short_inputs_do_nothing() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wire_decode");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("seed-") {
            let _ = wire_decode(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count >= 36, "only {count} seeds");
    assert_eq!(wire_decode(&[]), FuzzOutcome::default());
    assert_eq!(wire_decode(&[1]), FuzzOutcome::default());
}

#[test]
fn garbage_after_a_good_hello_is_reported_not_panicked_on() {
    let mut input = seed("single-hello-no-listen");
    input.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let outcome = wire_decode(&input);
    assert_eq!(outcome.messages, 1);
    assert!(outcome.error.unwrap().contains("4294967295"));
}

#[test]
fn an_unbound_listener_refuses_a_hello_for_another_swarm_at_bind() {
    let other = minimodel_wire::SwarmIdentity::new("other-model", common::root(), common::params())
        .unwrap()
        .hello(false, None, "fuzz")
        .unwrap();
    // A v3 session (0x20), as the Hello is v3's.
    let mut input = vec![0x24, 0x00];
    input.extend_from_slice(&common::frame(&minimodel_wire::Message::Hello(other)));
    let outcome = wire_decode(&input);
    assert_eq!(outcome.events, 1);
    assert!(!outcome.established);
    assert!(outcome.error.unwrap().contains("other-model"));
}
