//! The `wire_decode` fuzz target's seed corpus runs through the same entry
//! point as the fuzzer, and reaches what it is meant to reach.

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
fn the_rejected_dialer_seed_ends_cleanly() {
    let outcome = wire_decode(&seed("dialer-rejected"));
    assert_eq!(outcome.events, 1);
    assert_eq!(outcome.error, None);
}

#[test]
fn piece_seeds_deliver_a_whole_piece() {
    for name in ["piece-last", "piece-first"] {
        let outcome = wire_decode(&seed(name));
        assert!(outcome.piece_received, "{name}: {outcome:?}");
        assert_eq!(outcome.error, None, "{name}");
    }
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
    assert!(count >= 10, "only {count} seeds");
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
