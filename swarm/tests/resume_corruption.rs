//! Damaged state files and changed chunk bytes: fall back, recheck, refuse
//! or start over, never panic and never trust what does not hash right.

mod resume_common;

use std::fs;
use std::path::Path;

use minimodel_swarm::resume::{
    DownloadPaths, PartialDownload, RecheckReason, RestartReason, ResumeError, ResumeOptions,
    ResumeOutcome, StateError, parse_state, sample_chunks,
};
use minimodel_verifier::chunk::ChunkIndex;
use resume_common::{Artifact, CHUNK, open, options, scribble, snapshot, verified_set};

/// A download with generation 1 listing {0, 1} (now `.prev`) and
/// generation 2 listing {0, 1, 2, 3} (current).
fn two_generations(dir: &Path, artifact: &Artifact) -> DownloadPaths {
    let (download, _) = open(dir, artifact, &options(4));
    artifact.store(&download, 0);
    artifact.store(&download, 1);
    download.checkpoint().unwrap();
    artifact.store(&download, 2);
    artifact.store(&download, 3);
    download.checkpoint().unwrap();
    download.paths().clone()
}

fn damage_kinds(state: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut wrong_checksum = String::from_utf8(state.to_vec()).unwrap();
    wrong_checksum = wrong_checksum.replacen("\"runs\":1", "\"runs\":9", 1);
    vec![
        ("garbage", b"\x00\xffnot json at all\x13".to_vec()),
        ("truncated", state[..state.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("wrong checksum", wrong_checksum.into_bytes()),
    ]
}

#[test]
fn a_damaged_state_falls_back_to_the_previous_generation() {
    let artifact = Artifact::small("m");
    let template = {
        let dir = tempfile::tempdir().unwrap();
        let paths = two_generations(dir.path(), &artifact);
        fs::read(&paths.state).unwrap()
    };
    for (kind, damaged) in damage_kinds(&template) {
        let dir = tempfile::tempdir().unwrap();
        let paths = two_generations(dir.path(), &artifact);
        fs::write(&paths.state, &damaged).unwrap();
        let (download, report) = open(dir.path(), &artifact, &options(4));
        assert_eq!(
            report.outcome,
            ResumeOutcome::FellBack {
                generation: 1,
                good: 2,
                dropped: 0
            },
            "{kind}"
        );
        assert!(report.current_problem.is_some(), "{kind}");
        assert_eq!(verified_set(&download), vec![0, 1], "{kind}");
        // The good previous generation is kept; the damaged one is gone.
        let previous = parse_state(&fs::read(&paths.previous).unwrap()).unwrap();
        assert_eq!(previous.generation, 1, "{kind}");
        let current = parse_state(&fs::read(&paths.state).unwrap()).unwrap();
        assert_eq!(
            (current.generation, current.chunks_verified()),
            (2, 2),
            "{kind}"
        );
    }
}

#[test]
fn the_fallback_rechecks_the_chunks_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let paths = two_generations(dir.path(), &artifact);
    fs::write(&paths.state, b"{").unwrap();
    scribble(&paths.part, u64::from(CHUNK) + 10, 1, 0xAA);
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(
        report.outcome,
        ResumeOutcome::FellBack {
            generation: 1,
            good: 1,
            dropped: 1
        }
    );
    assert_eq!(verified_set(&download), vec![0]);
    assert_eq!(download.counters().chunks_dropped, 1);
}

#[test]
fn a_missing_current_state_falls_back_to_prev() {
    // A crash between "current -> .prev" and "temporary -> current".
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let paths = two_generations(dir.path(), &artifact);
    fs::rename(&paths.state, &paths.previous).unwrap();
    let temp = dir.path().join(".m.slm.state.0123456789abcdef.tmp");
    fs::write(&temp, b"half a state").unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert!(matches!(
        report.outcome,
        ResumeOutcome::FellBack {
            generation: 2,
            good: 4,
            ..
        }
    ));
    assert_eq!(report.current_problem, None);
    assert_eq!(verified_set(&download), vec![0, 1, 2, 3]);
    assert!(
        !temp.exists(),
        "a stale temporary state is removed, never read"
    );
}

#[test]
fn with_both_states_damaged_the_whole_part_is_rechecked() {
    let artifact = Artifact::small("m");
    for complete in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let paths = two_generations(dir.path(), &artifact);
        if complete {
            fs::write(&paths.part, &artifact.bytes).unwrap();
        }
        fs::write(&paths.state, b"garbage").unwrap();
        fs::write(&paths.previous, b"").unwrap();
        let (download, report) = open(dir.path(), &artifact, &options(4));
        assert!(matches!(
            report.current_problem,
            Some(StateError::Syntax(_))
        ));
        assert_eq!(report.previous_problem, Some(StateError::Empty));
        if complete {
            assert_eq!(report.outcome, ResumeOutcome::RecoveredWhole { chunks: 21 });
            assert!(download.is_complete());
        } else {
            assert_eq!(
                report.outcome,
                ResumeOutcome::Restarted {
                    reason: RestartReason::PartUnverified
                }
            );
            assert_eq!(download.chunks_verified(), 0);
        }
    }
}

#[test]
fn an_unknown_state_version_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let paths = two_generations(dir.path(), &artifact);
    let newer = fs::read_to_string(&paths.state)
        .unwrap()
        .replace("minimodel-partial-v0", "minimodel-partial-v7");
    fs::write(&paths.state, newer).unwrap();
    let before = snapshot(dir.path());
    let error = PartialDownload::open(
        dir.path(),
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, ResumeError::UnsupportedState { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("minimodel-partial-v7"),
        "{error}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_state_of_another_artifact_is_refused_naming_both_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Artifact::small("m");
    let theirs = Artifact::new("m", 30 * CHUNK as usize, 99);
    two_generations(dir.path(), &theirs);
    let before = snapshot(dir.path());
    let error = PartialDownload::open(
        dir.path(),
        &ours.manifest,
        ours.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap_err();
    let ResumeError::ForeignState {
        found, expected, ..
    } = &error
    else {
        panic!("expected ForeignState, got {error}");
    };
    assert_eq!(found.merkle_root, theirs.tree.root());
    assert_eq!(expected.merkle_root, ours.tree.root());
    let text = error.to_string();
    assert!(text.contains(&theirs.tree.root().to_hex()), "{text}");
    assert!(text.contains(&ours.tree.root().to_hex()), "{text}");
    assert_eq!(snapshot(dir.path()), before, "nothing written");
}

#[test]
fn a_foreign_previous_state_is_refused_when_it_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Artifact::small("m");
    let theirs = Artifact::new("m", 21 * CHUNK as usize, 5);
    let paths = two_generations(dir.path(), &theirs);
    fs::write(&paths.state, b"damaged").unwrap();
    let before = snapshot(dir.path());
    let error = PartialDownload::open(
        dir.path(),
        &ours.manifest,
        ours.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(error, ResumeError::ForeignState { ref path, .. } if *path == paths.previous));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_state_under_another_model_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Artifact::small("model-a");
    let b = Artifact::small("model-b");
    let paths_a = two_generations(dir.path(), &a);
    let paths_b = DownloadPaths::new(dir.path(), &b.manifest.model_id);
    fs::copy(&paths_a.state, &paths_b.state).unwrap();
    let error = PartialDownload::open(
        dir.path(),
        &b.manifest,
        b.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap_err();
    assert!(error.to_string().contains("model model-a"), "{error}");
    assert!(error.to_string().contains("model model-b"), "{error}");
}

/// Ten chunks checkpointed, then chunk 4 changed on disk while stopped.
fn corrupted_while_stopped(dir: &Path, artifact: &Artifact) {
    let (download, _) = open(dir, artifact, &options(4));
    for index in 0..10 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    scribble(&download.paths().part, 4 * u64::from(CHUNK) + 77, 3, 0);
}

#[test]
fn recheck_finds_chunks_changed_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    corrupted_while_stopped(dir.path(), &artifact);
    let recheck = ResumeOptions {
        recheck: true,
        ..options(4)
    };
    let (download, report) = open(dir.path(), &artifact, &recheck);
    assert_eq!(
        report.outcome,
        ResumeOutcome::Rechecked {
            reason: RecheckReason::Requested,
            good: 9,
            dropped: 1
        }
    );
    assert_eq!(report.bytes_rechecked, 10 * u64::from(CHUNK));
    assert!(!download.is_verified(ChunkIndex(4)));
    let state = parse_state(&fs::read(&download.paths().state).unwrap()).unwrap();
    assert_eq!(state.chunks_verified(), 9, "the drop is on disk at once");
}

#[test]
fn a_sample_that_hits_a_changed_chunk_turns_into_a_full_recheck() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    corrupted_while_stopped(dir.path(), &artifact);
    // A sample as large as the state: it sees chunk 4.
    let (download, report) = open(dir.path(), &artifact, &options(100));
    assert_eq!(
        report.outcome,
        ResumeOutcome::Rechecked {
            reason: RecheckReason::SampleMismatch { chunk: 4 },
            good: 9,
            dropped: 1
        }
    );
    assert!(!download.is_verified(ChunkIndex(4)));
}

#[test]
fn the_sample_is_deterministic_under_a_seed() {
    let artifact = Artifact::small("m");
    let mut listed = minimodel_wire::HaveBitfield::new(21);
    for index in 0..10 {
        listed.set(minimodel_wire::ChunkIndex(index), true).unwrap();
    }
    let hits = (0..1000u64)
        .find(|&seed| sample_chunks(&listed, 4, seed).contains(&4))
        .unwrap();
    let misses = (0..1000u64)
        .find(|&seed| !sample_chunks(&listed, 4, seed).contains(&4))
        .unwrap();
    for (seed, caught) in [(hits, true), (misses, false)] {
        let dir = tempfile::tempdir().unwrap();
        corrupted_while_stopped(dir.path(), &artifact);
        let seeded = ResumeOptions {
            sample_seed: Some(seed),
            ..options(4)
        };
        let (download, report) = open(dir.path(), &artifact, &seeded);
        assert_eq!(
            matches!(report.outcome, ResumeOutcome::Rechecked { .. }),
            caught,
            "seed {seed}: {:?}",
            report.outcome
        );
        // What the sample misses, the final check finds.
        if !caught {
            let bad = download.find_bad_chunks(&|_| {}).unwrap();
            assert_eq!(bad, vec![ChunkIndex(4)]);
        }
    }
}

#[test]
fn find_bad_chunks_finds_a_flipped_chunk_and_it_can_be_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    scribble(
        &download.paths().part,
        13 * u64::from(CHUNK),
        1,
        !artifact.bytes[13 * CHUNK as usize],
    );
    let progress = std::cell::Cell::new(0);
    let bad = download
        .find_bad_chunks(&|seen| progress.set(seen.chunks_done))
        .unwrap();
    assert_eq!(bad, vec![ChunkIndex(13)]);
    assert_eq!(progress.get(), 21);
    assert!(download.drop_chunk(ChunkIndex(13)).unwrap());
    let report = download.checkpoint().unwrap();
    assert_eq!((report.chunks, report.removed_chunks), (20, 1));
    assert_eq!(
        download.proof(ChunkIndex(13)),
        None,
        "a dropped chunk is not served"
    );
    artifact.store(&download, 13);
    assert!(download.find_bad_chunks(&|_| {}).unwrap().is_empty());
    assert!(download.is_complete());
    assert!(matches!(
        download.drop_chunk(ChunkIndex(21)),
        Err(ResumeError::ChunkOutOfRange {
            index: 21,
            count: 21
        })
    ));
}

#[test]
fn a_resized_part_is_rechecked() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in [0, 1, 19, 20] {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let part = download.paths().part.clone();
    drop(download);
    let cut = 19 * u64::from(CHUNK) + 5;
    fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(
        report.outcome,
        ResumeOutcome::Rechecked {
            reason: RecheckReason::PartResized { found: cut },
            good: 2,
            dropped: 2
        }
    );
    assert_eq!(verified_set(&download), vec![0, 1]);
}
