//! Opening a download directory: fresh, resumed, complete, recovered from
//! a bare `.part`, restarted.

mod resume_common;

use std::fs;

use minimodel_swarm::resume::{
    CompleteCheck, OpenedDownload, PartialDownload, RestartReason, ResumeError, ResumeOutcome,
    parse_state,
};
use minimodel_verifier::chunk::ChunkIndex;
use minimodel_verifier::receipt::{ImportReceipt, NsTime};
use resume_common::{Artifact, CHUNK, open, options, snapshot, try_open, verified_set};

#[test]
fn a_fresh_directory_gets_a_part_and_a_state_of_generation_0() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("downloads");
    let artifact = Artifact::small("fresh-model");
    let (download, report) = open(&target, &artifact, &options(4));
    assert_eq!(report.outcome, ResumeOutcome::Fresh);
    assert_eq!((report.chunks_verified, report.chunk_count), (0, 21));
    assert_eq!(download.generation(), Some(0));
    let paths = download.paths().clone();
    assert_eq!(
        fs::metadata(&paths.part).unwrap().len(),
        artifact.bytes.len() as u64
    );
    let state = parse_state(&fs::read(&paths.state).unwrap()).unwrap();
    assert_eq!(state.generation, 0);
    assert_eq!(state.chunks_verified(), 0);
    assert_eq!(state.counters.runs, 1);
    assert_eq!(state.binding.merkle_root, artifact.tree.root());
    assert_eq!(state.manifest_sha256, artifact.manifest_sha256);
    assert!(!paths.previous.exists());
}

#[test]
fn a_checkpoint_is_resumed_with_the_same_chunks_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in [0, 3, 4, 17, 20] {
        artifact.store(&download, index);
    }
    let checkpoint = download.checkpoint().unwrap();
    assert_eq!(
        (
            checkpoint.generation,
            checkpoint.chunks,
            checkpoint.new_chunks
        ),
        (1, 5, 5)
    );
    assert_eq!(download.persisted(), download.verified());
    drop(download);

    let (resumed, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(
        report.outcome,
        ResumeOutcome::Resumed {
            chunks: 5,
            sampled: 4
        }
    );
    assert_eq!(verified_set(&resumed), vec![0, 3, 4, 17, 20]);
    assert_eq!(resumed.generation(), Some(1));
    for index in [0, 3, 4, 17, 20] {
        assert_eq!(resumed.proof(ChunkIndex(index)), artifact.tree.proof(index));
        assert_eq!(
            resumed.chunk_hash(ChunkIndex(index)),
            Some(artifact.tree.chunk_hashes()[index as usize])
        );
    }
    assert_eq!(
        resumed.proof(ChunkIndex(1)),
        None,
        "not verified, not served"
    );
    let counters = resumed.counters();
    assert_eq!((counters.runs, counters.chunks_fetched), (2, 5));
    assert_eq!(counters.bytes_fetched, 4 * u64::from(CHUNK) + 1000);
}

#[test]
fn without_its_journal_only_the_checkpointed_chunks_are_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    artifact.store(&download, 1);
    artifact.store(&download, 2);
    download.checkpoint().unwrap();
    artifact.store(&download, 5);
    artifact.store(&download, 6);
    assert_eq!(verified_set(&download), vec![1, 2, 5, 6]);
    drop(download); // killed: no checkpoint
    // A power loss took the journal's unsynced records with it.
    std::fs::remove_file(dir.path().join("m.slm.journal")).unwrap();

    let (resumed, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(verified_set(&resumed), vec![1, 2]);
    assert_eq!(report.chunks_from_journal, 0);
}

#[test]
fn each_checkpoint_keeps_the_one_before_as_prev() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    artifact.store(&download, 0);
    download.checkpoint().unwrap();
    artifact.store(&download, 1);
    let report = download.checkpoint().unwrap();
    assert_eq!((report.generation, report.new_chunks), (2, 1));
    let paths = download.paths();
    let current = parse_state(&fs::read(&paths.state).unwrap()).unwrap();
    let previous = parse_state(&fs::read(&paths.previous).unwrap()).unwrap();
    assert_eq!((current.generation, current.chunks_verified()), (2, 2));
    assert_eq!((previous.generation, previous.chunks_verified()), (1, 1));
}

#[test]
fn a_bare_complete_part_is_recognised_by_the_full_recheck() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let paths =
        minimodel_swarm::resume::DownloadPaths::new(dir.path(), &artifact.manifest.model_id);
    fs::write(&paths.part, &artifact.bytes).unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(report.outcome, ResumeOutcome::RecoveredWhole { chunks: 21 });
    assert_eq!(report.bytes_rechecked, artifact.bytes.len() as u64);
    assert!(download.is_complete());
    for index in 0..21 {
        assert_eq!(
            download.proof(ChunkIndex(index)),
            artifact.tree.proof(index)
        );
    }
    // The decision is on disk at once.
    let state = parse_state(&fs::read(&paths.state).unwrap()).unwrap();
    assert_eq!(state.chunks_verified(), 21);
    assert!(state.knowledge.extra_nodes().is_empty());
}

#[test]
fn a_bare_part_that_is_not_the_artifact_starts_over_but_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let paths =
        minimodel_swarm::resume::DownloadPaths::new(dir.path(), &artifact.manifest.model_id);
    let mut almost = artifact.bytes.clone();
    almost[5 * CHUNK as usize] ^= 1;
    fs::write(&paths.part, &almost).unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(
        report.outcome,
        ResumeOutcome::Restarted {
            reason: RestartReason::PartUnverified
        }
    );
    assert_eq!(download.chunks_verified(), 0);
    assert_eq!(fs::read(&paths.part).unwrap(), almost, "the file is kept");
}

#[test]
fn a_state_without_its_part_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    artifact.store(&download, 3);
    download.checkpoint().unwrap();
    let part = download.paths().part.clone();
    drop(download);
    fs::remove_file(&part).unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(
        report.outcome,
        ResumeOutcome::Restarted {
            reason: RestartReason::PartMissing
        }
    );
    assert_eq!(download.chunks_verified(), 0);
    assert_eq!(download.generation(), Some(2), "generations go on");
    assert!(part.exists());
}

/// Rewrites the stamp in a finished download's receipt as a check that
/// ended `after` the file's last write would have left it (a real check
/// taken that long after the download).
fn stamp_later(dir: &std::path::Path, model_id: &str, after: std::time::Duration) {
    let path = dir.join(format!("{model_id}.receipt.json"));
    let mut receipt: ImportReceipt = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let stamp = receipt
        .file
        .as_mut()
        .expect("a delivered receipt has a stamp");
    let later = stamp.modified.as_nanos().max(stamp.changed.as_nanos()) + after.as_nanos() as i128;
    stamp.stamped = NsTime {
        secs: (later / 1_000_000_000) as i64,
        nanos: (later % 1_000_000_000) as u32,
    };
    fs::write(&path, serde_json::to_vec_pretty(&receipt).unwrap()).unwrap();
}

fn reopen(dir: &std::path::Path, artifact: &Artifact) -> minimodel_swarm::resume::CompleteDownload {
    let opened = PartialDownload::open(
        dir,
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
    );
    match opened {
        Ok(OpenedDownload::Complete(complete)) => complete,
        Ok(_) => panic!("expected complete"),
        Err(error) => panic!("open failed: {error}"),
    }
}

#[test]
fn a_finished_download_is_complete_and_reopening_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let finished = download.finish(&artifact.receipt()).unwrap();
    assert_eq!(fs::read(&finished.artifact).unwrap(), artifact.bytes);
    stamp_later(dir.path(), "m", std::time::Duration::from_secs(3));
    let before = snapshot(dir.path());
    let complete = reopen(dir.path(), &artifact);
    assert_eq!(complete.check, CompleteCheck::Unchanged);
    assert_eq!(
        complete.receipt.artifact_sha256,
        artifact.manifest.artifact_sha256
    );
    assert_eq!(snapshot(dir.path()), before, "nothing written");
}

#[test]
fn a_finished_file_replaced_within_the_second_of_its_check_is_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    let finished = download.finish(&artifact.receipt()).unwrap();
    // As a script that copies over the file right after the check: same
    // size, same second, other bytes.
    let mut other = artifact.bytes.clone();
    other[5] ^= 0xff;
    fs::write(&finished.artifact, &other).unwrap();
    let opened = PartialDownload::open(
        dir.path(),
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap();
    let OpenedDownload::Partial(partial, _) = opened else {
        panic!("the changed file must be checked again and found damaged");
    };
    assert!(!verified_set(&partial).contains(&0), "chunk 0 is bad now");
}

#[test]
fn an_untouched_file_whose_check_ended_right_after_its_last_write_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    download.finish(&artifact.receipt()).unwrap();
    // The stamp was taken within the same instant as the last write: a
    // write in that clock tick would leave no trace, so it vouches for
    // nothing and the whole file is read again. (These test bytes are no
    // `.slm`, so the full check then fails its container check and the
    // file goes back to being a partial download: what matters here is
    // that it was read.)
    let opened = PartialDownload::open(
        dir.path(),
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap();
    let OpenedDownload::Partial(_, report) = opened else {
        panic!("a racy stamp must not let the file count as unchanged");
    };
    assert_eq!(report.bytes_rechecked, artifact.bytes.len() as u64);
}

#[test]
fn a_final_file_without_a_receipt_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let paths =
        minimodel_swarm::resume::DownloadPaths::new(dir.path(), &artifact.manifest.model_id);
    fs::write(&paths.artifact, b"somebody's file").unwrap();
    let error = PartialDownload::open(
        dir.path(),
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, ResumeError::UnverifiedFinal { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("m.receipt.json is missing"),
        "{error}"
    );
    assert!(!paths.part.exists());
}

#[test]
fn a_finished_other_artifact_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = Artifact::new("m", 5 * CHUNK as usize, 1);
    let (download, _) = open(dir.path(), &old, &options(4));
    for index in 0..5 {
        old.store(&download, index);
    }
    download.finish(&old.receipt()).unwrap();
    let new = Artifact::new("m", 5 * CHUNK as usize, 2);
    let error = PartialDownload::open(
        dir.path(),
        &new.manifest,
        new.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, ResumeError::ForeignComplete { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains(&old.tree.root().to_hex()) && text.contains(&new.tree.root().to_hex()));
}

#[test]
fn another_manifest_file_for_the_same_artifact_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    artifact.store(&download, 9);
    download.checkpoint().unwrap();
    drop(download);
    let mut renamed = Artifact::small("m");
    renamed.manifest.display_name = "Another name".to_owned();
    renamed.manifest_sha256 =
        minimodel_verifier::Sha256Digest::of(renamed.manifest.to_text().as_bytes());
    let (download, report) = open(dir.path(), &renamed, &options(4));
    assert!(report.manifest_changed);
    assert_eq!(verified_set(&download), vec![9]);
    download.checkpoint().unwrap();
    let state = parse_state(&fs::read(&download.paths().state).unwrap()).unwrap();
    assert_eq!(state.manifest_sha256, renamed.manifest_sha256);
}

#[test]
fn threads_can_store_while_another_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    std::thread::scope(|scope| {
        for start in 0..3u32 {
            let (download, artifact) = (&download, &artifact);
            scope.spawn(move || {
                for index in (start..21).step_by(3) {
                    artifact.store(download, index);
                }
            });
        }
        let download = &download;
        scope.spawn(move || {
            for _ in 0..5 {
                let report = download.checkpoint().unwrap();
                assert!(report.chunks <= 21);
            }
        });
    });
    download.checkpoint().unwrap();
    drop(download);
    let (download, _) = open(dir.path(), &artifact, &options(21));
    assert!(download.is_complete());
}

#[test]
fn states_left_by_a_crash_at_the_end_of_finish_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let paths = download.paths().clone();
    let state = fs::read(&paths.state).unwrap();
    download.finish(&artifact.receipt()).unwrap();
    // The crash: the final file and receipt are there, the state was not
    // removed yet.
    fs::write(&paths.state, &state).unwrap();
    stamp_later(dir.path(), "m", std::time::Duration::from_secs(3));
    let opened = PartialDownload::open(
        dir.path(),
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
    )
    .unwrap();
    assert!(matches!(opened, OpenedDownload::Complete(_)));
    assert!(!paths.state.exists());
}

#[test]
fn a_download_open_in_one_process_is_refused_to_another_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("busy");
    let (first, _) = open(dir.path(), &artifact, &options(4));
    artifact.store(&first, 2);
    first.checkpoint().unwrap();
    let before = snapshot(dir.path());
    // A second open (another process, or the same one: the lock is the
    // open file's) is refused before it changes anything.
    let second = try_open(dir.path(), &artifact, &options(4));
    match second {
        Err(ResumeError::InUse { path, model_id }) => {
            assert_eq!(path, first.paths().lock);
            assert_eq!(model_id, "busy");
        }
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("a second open of a download in use was allowed"),
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the refused open wrote nothing"
    );
    // Once the first ends, the next resumes what it verified.
    drop(first);
    let (resumed, _) = open(dir.path(), &artifact, &options(4));
    assert_eq!(verified_set(&resumed), vec![2]);
    // Delivered while another open waits to lock: that one, reading again
    // under the lock, finds the finished file.
    for index in 0..artifact.chunk_count() {
        if index != 2 {
            artifact.store(&resumed, index);
        }
    }
    resumed.finish(&artifact.receipt()).unwrap();
    drop(resumed);
    let again = try_open(dir.path(), &artifact, &options(4)).unwrap();
    match again {
        OpenedDownload::Complete(_) => {}
        // Checked again when the delivery ended within the second of the
        // file's last change: every chunk is found good.
        OpenedDownload::Partial(download, _) => {
            assert_eq!(download.chunks_verified(), artifact.chunk_count());
        }
    }
}

#[test]
fn a_file_of_the_user_under_a_receipt_chunk_list_or_peer_list_name_is_not_overwritten() {
    let artifact = Artifact::small("notes");
    for (name, what) in [
        ("notes.receipt.json", "receipt"),
        ("notes.chunk-list", "chunk list"),
        ("notes.slm.peers", "peer list"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(name), "my own notes\n").unwrap();
        let before = snapshot(dir.path());
        match try_open(dir.path(), &artifact, &options(4)) {
            Err(error @ ResumeError::NotOurs { .. }) => {
                let text = error.to_string();
                assert!(text.contains(name) && text.contains(what), "{text}");
            }
            Err(other) => panic!("{name}: expected NotOurs, got {other}"),
            Ok(_) => panic!("{name}: a file of the user's was taken for ours"),
        }
        assert_eq!(snapshot(dir.path()), before, "{name}: nothing written");
    }
}
