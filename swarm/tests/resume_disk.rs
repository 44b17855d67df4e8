//! A full disk, a state that cannot be written, and delivering the
//! finished file.

mod resume_common;

use std::fs;
use std::sync::Arc;

use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeError, parse_state};
use minimodel_swarm::store::{FaultyStorage, FileStorage, Storage, read_chunk};
use minimodel_verifier::chunk::ChunkIndex;
use resume_common::{Artifact, CHUNK, open, options, verified_set};

/// Opens with the `.part` behind a disk that takes `budget` more bytes.
fn open_faulty(
    dir: &std::path::Path,
    artifact: &Artifact,
    budget: u64,
) -> (PartialDownload, Arc<FaultyStorage<FileStorage>>) {
    let mut handle = None;
    let opened = PartialDownload::open_with_storage(
        dir,
        &artifact.manifest,
        artifact.manifest_sha256,
        &options(4),
        &|_| {},
        |file| {
            let faulty = Arc::new(FaultyStorage::new(file, budget));
            handle = Some(Arc::clone(&faulty));
            faulty
        },
    )
    .unwrap();
    let OpenedDownload::Partial(download, _) = opened else {
        panic!("expected a partial download");
    };
    (download, handle.unwrap())
}

#[test]
fn a_full_disk_stops_with_an_error_and_the_last_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, disk) = open_faulty(dir.path(), &artifact, 5 * u64::from(CHUNK));
    for index in 0..5 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let (chunk, proof) = artifact.verified(5);
    let error = download.store_verified(&chunk, &proof).unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert!(
        !download.is_verified(ChunkIndex(5)),
        "a chunk not written is not recorded"
    );
    // The driver stops: a last checkpoint lists only what was written.
    let report = download.checkpoint().unwrap();
    assert_eq!((report.chunks, report.new_chunks), (5, 0));
    let on_disk = parse_state(&fs::read(&download.paths().state).unwrap()).unwrap();
    assert_eq!(on_disk.chunks_verified(), 5);

    // Space is freed: the same run can go on...
    disk.grant(u64::from(CHUNK));
    download.store_verified(&chunk, &proof).unwrap();
    download.checkpoint().unwrap();
    drop(download);
    // ...and a new run resumes from there.
    let (download, _) = open(dir.path(), &artifact, &options(4));
    assert_eq!(verified_set(&download), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_full_disk_without_a_final_checkpoint_still_resumes_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _disk) = open_faulty(dir.path(), &artifact, 3 * u64::from(CHUNK));
    for index in 0..3 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let (chunk, proof) = artifact.verified(3);
    assert!(
        download
            .store_verified(&chunk, &proof)
            .unwrap_err()
            .is_disk_full()
    );
    drop(download); // killed
    let (download, _) = open(dir.path(), &artifact, &options(4));
    assert_eq!(verified_set(&download), vec![0, 1, 2]);
    for index in 3..21 {
        artifact.store(&download, index);
    }
    assert!(download.is_complete());
}

#[test]
fn a_state_that_cannot_be_written_leaves_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    artifact.store(&download, 0);
    download.checkpoint().unwrap();
    let before = fs::read(&download.paths().state).unwrap();
    // Something in the way of `.prev`: keeping the current state fails.
    fs::remove_file(&download.paths().previous).unwrap();
    fs::create_dir(&download.paths().previous).unwrap();
    artifact.store(&download, 1);
    let error = download.checkpoint().unwrap_err();
    assert!(matches!(error, ResumeError::UnsafeEntry { .. }), "{error}");
    assert!(error.to_string().contains("m.slm.state.prev"), "{error}");
    assert_eq!(fs::read(&download.paths().state).unwrap(), before);
    assert_eq!(download.persisted().count_ones(), 1);
    assert_eq!(download.generation(), Some(1));
    let temps = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(temps, 0, "the new state's temporary file is removed");
    // Once the way is clear the next checkpoint takes both chunks.
    fs::remove_dir(&download.paths().previous).unwrap();
    let report = download.checkpoint().unwrap();
    assert_eq!(
        (report.generation, report.chunks, report.new_chunks),
        (2, 2, 1)
    );
}

#[test]
fn a_proof_that_does_not_match_the_chunk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    let (chunk, _) = artifact.verified(2);
    let other_proof = artifact.tree.proof(3).unwrap();
    let error = download.record_verified(&chunk, &other_proof).unwrap_err();
    assert!(matches!(error, ResumeError::Proof(_)), "{error}");
    assert_eq!(download.chunks_verified(), 0);
}

#[test]
fn finish_delivers_the_file_with_its_receipt_and_removes_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in (0..21).rev() {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let paths = download.paths().clone();
    assert!(paths.previous.exists());
    let finished = download.finish(&artifact.receipt()).unwrap();
    assert_eq!(finished.artifact, paths.artifact);
    assert_eq!(fs::read(&paths.artifact).unwrap(), artifact.bytes);
    let receipt: minimodel_verifier::receipt::ImportReceipt =
        serde_json::from_slice(&fs::read(&paths.receipt).unwrap()).unwrap();
    assert_eq!(receipt.artifact_sha256, artifact.manifest.artifact_sha256);
    for gone in [
        &paths.part,
        &paths.state,
        &paths.previous,
        &paths.journal,
        &paths.journal_prev,
    ] {
        assert!(!gone.exists(), "{} is left", gone.display());
    }
    // The storage handle still reads the file under its new name.
    let geometry = artifact.geometry.clone();
    let storage: &dyn Storage = finished.storage.as_ref();
    assert_eq!(
        read_chunk(storage, &geometry, ChunkIndex(20)).unwrap(),
        artifact.chunk_bytes(20)
    );
}

#[test]
fn finish_refuses_an_incomplete_download_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..20 {
        artifact.store(&download, index);
    }
    download.checkpoint().unwrap();
    let paths = download.paths().clone();
    let error = download.finish(&artifact.receipt()).unwrap_err();
    assert!(
        matches!(
            error,
            ResumeError::Incomplete {
                missing: 1,
                count: 21
            }
        ),
        "{error}"
    );
    assert!(paths.part.exists() && paths.state.exists() && !paths.artifact.exists());
    // The refused handle still holds the download: it ends first.
    drop(download);
    let (download, _) = open(dir.path(), &artifact, &options(4));
    assert_eq!(download.chunks_verified(), 20);
}

#[test]
fn finish_refuses_a_receipt_for_another_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    let mut receipt = artifact.receipt();
    receipt.artifact_sha256 = minimodel_verifier::Sha256Digest::of(b"other");
    let paths = download.paths().clone();
    let error = download.finish(&receipt).unwrap_err();
    assert!(
        matches!(
            error,
            ResumeError::ReceiptMismatch {
                field: "artifact_sha256"
            }
        ),
        "{error}"
    );
    assert!(!paths.artifact.exists() && !paths.receipt.exists());
}

#[test]
fn finish_does_not_overwrite_a_file_that_appeared() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::small("m");
    let (download, _) = open(dir.path(), &artifact, &options(4));
    for index in 0..21 {
        artifact.store(&download, index);
    }
    let paths = download.paths().clone();
    fs::write(&paths.artifact, b"mine").unwrap();
    let error = download.finish(&artifact.receipt()).unwrap_err();
    assert!(
        matches!(error, ResumeError::ArtifactInTheWay { .. }),
        "{error}"
    );
    assert_eq!(fs::read(&paths.artifact).unwrap(), b"mine");
}
