//! `status(DIR)` over a mix of partial, complete, damaged and foreign
//! entries.

mod resume_common;

use std::fs;

use minimodel_swarm::resume::{DownloadPaths, StatusKind, status};
use resume_common::{Artifact, CHUNK, open, options};

#[test]
fn status_lists_every_download_and_never_fails_on_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let alpha = Artifact::small("alpha");
    let (download, _) = open(root, &alpha, &options(4));
    for index in 0..5 {
        alpha.store(&download, index);
    }
    download.checkpoint().unwrap();
    drop(download);

    let beta = Artifact::new("beta", 3 * CHUNK as usize, 3);
    let (download, _) = open(root, &beta, &options(4));
    for index in 0..3 {
        beta.store(&download, index);
    }
    download.finish(&beta.receipt()).unwrap();

    let gamma = Artifact::small("gamma");
    let (download, _) = open(root, &gamma, &options(4));
    gamma.store(&download, 0);
    download.checkpoint().unwrap();
    gamma.store(&download, 1);
    download.checkpoint().unwrap();
    fs::write(
        &download.paths().state,
        b"{\"format\": \"minimodel-partial-v0\"",
    )
    .unwrap();
    drop(download);

    let delta = DownloadPaths::new(root, &"delta".parse().unwrap());
    fs::write(&delta.state, b"\x00garbage").unwrap();
    fs::write(&delta.part, b"").unwrap();

    let epsilon = DownloadPaths::new(root, &"epsilon".parse().unwrap());
    fs::write(&epsilon.state, br#"{"format": "minimodel-partial-v9"}"#).unwrap();

    let zeta = DownloadPaths::new(root, &"zeta".parse().unwrap());
    fs::write(&zeta.artifact, b"not verified").unwrap();

    fs::write(root.join("notes.txt"), b"").unwrap();
    fs::write(root.join("..odd.slm.state"), b"").unwrap();

    let list = status(root).unwrap();
    let names: Vec<&str> = list.iter().map(|entry| entry.model_id.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "beta", "delta", "epsilon", "gamma", "zeta"]
    );
    let by_name = |name: &str| list.iter().find(|entry| entry.model_id == name).unwrap();

    let alpha = by_name("alpha");
    assert_eq!(alpha.kind, StatusKind::Partial);
    assert_eq!(
        (alpha.chunks_verified, alpha.chunk_count),
        (Some(5), Some(21))
    );
    assert_eq!(alpha.bytes_verified, Some(5 * u64::from(CHUNK)));
    assert_eq!(alpha.percent, Some(24.9));
    assert_eq!(alpha.generation, Some(1));
    assert!(
        alpha
            .last_checkpoint
            .as_deref()
            .is_some_and(|at| at.ends_with('Z'))
    );

    let beta = by_name("beta");
    assert_eq!(beta.kind, StatusKind::Complete);
    assert_eq!(beta.percent, Some(100.0));
    assert_eq!(beta.artifact_bytes, Some(3 * u64::from(CHUNK)));

    let gamma = by_name("gamma");
    assert_eq!(gamma.kind, StatusKind::Corrupt);
    assert_eq!(
        gamma.generation,
        Some(1),
        "figures from the previous generation"
    );
    assert_eq!(gamma.chunks_verified, Some(1));
    assert!(
        gamma.note.as_deref().unwrap().contains("falls back"),
        "{gamma:?}"
    );

    let delta = by_name("delta");
    assert_eq!(delta.kind, StatusKind::Corrupt);
    assert_eq!(delta.chunks_verified, None);
    assert!(
        delta
            .note
            .as_deref()
            .unwrap()
            .contains("rechecks the whole .part")
    );

    assert_eq!(by_name("epsilon").kind, StatusKind::Unsupported);
    assert_eq!(by_name("zeta").kind, StatusKind::Unverified);

    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(json[0]["kind"], "partial");
    assert_eq!(json[0]["chunks_verified"], 5);
    assert_eq!(json[5]["kind"], "unverified");
}

#[test]
fn status_of_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = status(&dir.path().join("nowhere")).unwrap_err();
    assert!(error.is_io());
}

#[test]
fn status_of_an_empty_directory_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert!(status(dir.path()).unwrap().is_empty());
}
