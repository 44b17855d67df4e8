//! `minimodel status DIR` through the binary, over a partial download made
//! with the library and a complete one made by `verify`.

use std::path::Path;
use std::process::{Command, Output};

use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions};
use minimodel_verifier::{Manifest, Sha256Digest};

fn minimodel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minimodel"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn status_shows_partial_and_complete_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(&minimodel(
        root,
        &["fixture", "m.slm", "--size", "1MiB", "--seed", "3"],
    ));
    ok(&minimodel(
        root,
        &[
            "manifest",
            "m.slm",
            "--model-id",
            "tiny",
            "--publisher-id",
            "acme",
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            "64KiB",
            // Opened below as a fixed-size download.
            "--chunk-scheme",
            "fixed-size-merkle-v0",
            "-o",
            "m.manifest",
        ],
    ));
    let manifest_bytes = std::fs::read(root.join("m.manifest")).unwrap();
    let manifest = Manifest::parse_bytes(&manifest_bytes).unwrap();

    // A partial download of it in "partial/".
    let opened = PartialDownload::open(
        &root.join("partial"),
        &manifest,
        Sha256Digest::of(&manifest_bytes),
        &ResumeOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert!(matches!(opened, OpenedDownload::Partial(..)));

    // A complete one in "done/".
    std::fs::create_dir(root.join("done")).unwrap();
    std::fs::copy(root.join("m.slm"), root.join("done/tiny.slm")).unwrap();
    ok(&minimodel(root, &["verify", "m.manifest", "done/tiny.slm"]));

    let text = ok(&minimodel(root, &["status", "partial"]));
    assert!(
        text.starts_with("tiny: partial, 0/16 chunks, 0 B of 1.0 MiB (0.0%), last checkpoint "),
        "{text}"
    );
    assert!(text.contains("(generation 0)"), "{text}");

    let text = ok(&minimodel(root, &["status", "done"]));
    assert!(
        text.starts_with("tiny: complete, 16/16 chunks, 1.0 MiB of 1.0 MiB (100.0%), verified "),
        "{text}"
    );

    let text = ok(&minimodel(root, &["status", "--json", "partial"]));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "download");
    assert_eq!(lines[0]["kind"], "partial");
    assert_eq!(lines[0]["chunk_count"], 16);

    // The fixture itself has no receipt: listed, not trusted.
    let text = ok(&minimodel(root, &["status", "."]));
    assert_eq!(
        text.trim(),
        format!(
            "m: unverified; {} is missing",
            Path::new(".").join("m.receipt.json").display()
        )
    );

    std::fs::create_dir(root.join("empty")).unwrap();
    let text = ok(&minimodel(root, &["status", "empty"]));
    assert_eq!(text.trim(), "no downloads in empty");
}

#[test]
fn status_of_a_missing_directory_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = minimodel(dir.path(), &["status", "nowhere"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read the downloads in nowhere")
    );
}
