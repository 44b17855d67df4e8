//! The verified-chunk journal (`docs/resume.md`, "The journal"): a process
//! that dies between two checkpoints keeps every chunk it had verified and
//! written, and nothing in a journal is trusted without the bytes on disk
//! and a proof to the root.

mod resume_common;

use std::fs;

use minimodel_swarm::resume::ResumeOutcome;
use minimodel_swarm::resume::journal::{encode_header, encode_record};
use minimodel_verifier::Sha256Digest;
use resume_common::{Artifact, CHUNK, open, options, scribble, verified_set};

/// A download of `artifact` in `dir` with chunks `checkpointed` persisted
/// by a checkpoint and `journaled` verified after it, then dropped without
/// another checkpoint (as a killed process would leave it).
fn die_between_checkpoints(
    dir: &std::path::Path,
    artifact: &Artifact,
    checkpointed: impl IntoIterator<Item = u32>,
    journaled: impl IntoIterator<Item = u32>,
) {
    let (download, _) = open(dir, artifact, &options(0));
    for index in checkpointed {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    for index in journaled {
        artifact.store(&download, index);
    }
    drop(download);
}

#[test]
fn chunks_verified_after_the_last_checkpoint_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    die_between_checkpoints(dir.path(), &artifact, 0..5, 5..12);
    let (download, report) = open(dir.path(), &artifact, &options(4));
    assert_eq!(report.chunks_from_journal, 7);
    assert!(matches!(
        report.outcome,
        ResumeOutcome::Resumed { chunks: 5, .. }
    ));
    assert_eq!(verified_set(&download), (0..12).collect::<Vec<_>>());
    assert_eq!(
        report.bytes_rechecked,
        7 * u64::from(CHUNK) + 4 * u64::from(CHUNK)
    );
    // They are persisted now, and the journal starts over.
    assert_eq!(download.persisted().count_ones(), 12);
    drop(download);
    let (download, report) = open(dir.path(), &artifact, &options(0));
    assert_eq!(report.chunks_from_journal, 0);
    assert_eq!(verified_set(&download), (0..12).collect::<Vec<_>>());
}

#[test]
fn a_journaled_chunk_whose_bytes_changed_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    die_between_checkpoints(dir.path(), &artifact, 0..2, 2..6);
    let part = dir.path().join("m.slm.part");
    scribble(
        &part,
        4 * u64::from(CHUNK) + 9,
        1,
        !artifact.chunk_bytes(4)[9],
    );
    let (download, report) = open(dir.path(), &artifact, &options(0));
    assert_eq!(report.chunks_from_journal, 3);
    assert_eq!(verified_set(&download), vec![0, 1, 2, 3, 5]);
}

#[test]
fn a_torn_journal_keeps_its_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    die_between_checkpoints(dir.path(), &artifact, 0..1, 1..5);
    let journal = dir.path().join("m.slm.journal");
    let len = fs::metadata(&journal).unwrap().len();
    // Cut into the last record, as a crash mid-append would.
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(0));
    assert_eq!(report.chunks_from_journal, 3);
    assert_eq!(verified_set(&download), vec![0, 1, 2, 3]);
}

#[test]
fn records_that_do_not_prove_their_chunk_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    die_between_checkpoints(dir.path(), &artifact, 0..1, []);
    // The bytes of chunk 3 are on disk, but the records lie about them.
    let (chunk, proof) = artifact.verified(3);
    let part = dir.path().join("m.slm.part");
    {
        let file = fs::OpenOptions::new().write(true).open(&part).unwrap();
        minimodel_swarm::platform::write_all_at(
            &file,
            chunk.data().to_contiguous().as_ref(),
            3 * u64::from(CHUNK),
        )
        .unwrap();
    }
    let root = artifact.tree.root();
    let mut bytes = encode_header(&root);
    // A proof of another chunk, a short proof, a wrong hash, an index
    // beyond the artifact.
    bytes.extend(encode_record(
        3,
        &chunk.chunk_hash(),
        &artifact.tree.proof(4).unwrap(),
    ));
    bytes.extend(encode_record(3, &chunk.chunk_hash(), &proof[1..]));
    bytes.extend(encode_record(3, &Sha256Digest([7; 32]), &proof));
    bytes.extend(encode_record(99, &chunk.chunk_hash(), &proof));
    fs::write(dir.path().join("m.slm.journal"), &bytes).unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(0));
    assert_eq!(report.chunks_from_journal, 0);
    assert_eq!(verified_set(&download), vec![0]);
    drop(download);
    // The same records for another artifact's root are not read at all;
    // an honest record is.
    let mut bytes = encode_header(&Sha256Digest([1; 32]));
    bytes.extend(encode_record(3, &chunk.chunk_hash(), &proof));
    fs::write(dir.path().join("m.slm.journal"), &bytes).unwrap();
    assert_eq!(
        open(dir.path(), &artifact, &options(0))
            .1
            .chunks_from_journal,
        0
    );
    let mut bytes = encode_header(&root);
    bytes.extend(encode_record(3, &chunk.chunk_hash(), &proof));
    fs::write(dir.path().join("m.slm.journal"), &bytes).unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(0));
    assert_eq!(report.chunks_from_journal, 1);
    assert_eq!(verified_set(&download), vec![0, 3]);
}

#[test]
fn after_a_failed_checkpoint_the_older_journal_is_kept_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(0));
    for index in 0..3 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    for index in 3..5 {
        artifact.store(&download, index);
    }
    // A directory in the way of `.prev`: this checkpoint fails after its
    // journal was set aside.
    let previous = dir.path().join("m.slm.state.prev");
    fs::remove_file(&previous).unwrap();
    fs::create_dir(&previous).unwrap();
    download.checkpoint().unwrap_err();
    assert!(dir.path().join("m.slm.journal.prev").exists());
    for index in 5..7 {
        artifact.store(&download, index);
    }
    // Another failure: nothing is set aside twice.
    download.checkpoint().unwrap_err();
    artifact.store(&download, 7);
    drop(download);
    fs::remove_dir(&previous).unwrap();
    let (download, report) = open(dir.path(), &artifact, &options(0));
    assert_eq!(report.chunks_from_journal, 5);
    assert_eq!(verified_set(&download), (0..8).collect::<Vec<_>>());
}

#[test]
fn a_checkpoint_empties_the_journal_it_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(0));
    let journal = dir.path().join("m.slm.journal");
    let header = fs::metadata(&journal).unwrap().len();
    for index in 0..4 {
        artifact.store(&download, index);
    }
    assert!(fs::metadata(&journal).unwrap().len() > header);
    download.checkpoint().unwrap();
    assert_eq!(fs::metadata(&journal).unwrap().len(), header);
    assert!(!dir.path().join("m.slm.journal.prev").exists());
}
