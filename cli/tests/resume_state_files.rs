//! Damaged, foreign and unknown state files met by `minimodel fetch`: a
//! damaged state means a recheck (or a fall back to the previous
//! generation) and the download completes; another artifact's state, an
//! unknown format or another artifact's final file is refused with exit 3,
//! naming what was found, and nothing in the directory is touched. Never a
//! crash.

mod resume_support;

use std::path::Path;

use resume_support::{Artifact, Proc, Seeders, fetch_args, snapshot};

/// A directory for each case, a seeder for all of them.
struct Bench {
    root: tempfile::TempDir,
    artifact: Artifact,
    seeders: Seeders,
}

impl Bench {
    fn new(seed: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let artifact = Artifact::make(root.path(), "art", "files", "8MiB", "256KiB", seed);
        let seeders = Seeders::start(root.path(), &artifact, 1, "64MiB");
        Self {
            root,
            artifact,
            seeders,
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// A partial download in `name/`: chunks 0..12 in two checkpoints (so
    /// with a `.prev`, listing 0..6).
    fn partial(&self, name: &str) -> std::path::PathBuf {
        let dir = self.root().join(name);
        self.artifact.partial(&dir, &(0..12).collect::<Vec<_>>(), 2);
        dir
    }

    /// Runs the fetch into `dir`; returns it when it ended.
    fn fetch(&self, dir: &Path) -> Proc {
        let args = fetch_args(&self.artifact, &self.seeders, dir, &["--json"]);
        let mut fetch = Proc::spawn(self.root(), &args);
        fetch.wait();
        fetch
    }

    /// The fetch completes and the file verifies; returns the outcome of
    /// opening and the chunks it started from.
    fn completes(&self, dir: &Path) -> (String, u64) {
        let mut fetch = self.fetch(dir);
        fetch.expect_exit(0);
        let opened = fetch.event("opened").expect("an opened event");
        self.artifact
            .verify(self.root(), &self.artifact.files(dir).artifact);
        (
            opened["outcome"].as_str().unwrap().to_owned(),
            opened["chunks_verified"].as_u64().unwrap(),
        )
    }

    /// The fetch is refused with exit 3 and leaves `dir` as it was;
    /// returns the error message.
    fn refused(&self, dir: &Path) -> String {
        let before = snapshot(dir);
        let mut fetch = self.fetch(dir);
        fetch.expect_exit(3);
        assert_eq!(
            snapshot(dir),
            before,
            "nothing in {} changed",
            dir.display()
        );
        let error = fetch.event("error").unwrap();
        assert_eq!(error["exit_code"], 3);
        error["error"].as_str().unwrap().to_owned()
    }
}

#[test]
fn damaged_state_files_are_rechecked_or_fallen_back_from_and_the_download_completes() {
    let bench = Bench::new(41);
    let files = |dir: &Path| bench.artifact.files(dir);

    // Garbage in the current state: the previous generation (6 chunks).
    let dir = bench.partial("garbage");
    let mut garbage = vec![0u8; 700];
    let mut rng = resume_support::Rng(7);
    garbage.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
    std::fs::write(files(&dir).state, garbage).unwrap();
    let (outcome, chunks) = bench.completes(&dir);
    assert_eq!(
        outcome,
        "state unusable, fell back to generation 1: 6 chunks good, 0 dropped"
    );
    assert_eq!(chunks, 6);

    // Cut in half, no previous generation: the whole `.part` is hashed, it
    // does not give the root (it is partial), so the download starts over.
    let dir = bench.partial("truncated");
    let state = std::fs::read(files(&dir).state).unwrap();
    std::fs::write(files(&dir).state, &state[..state.len() / 2]).unwrap();
    std::fs::remove_file(files(&dir).previous).unwrap();
    let (outcome, chunks) = bench.completes(&dir);
    assert_eq!(
        outcome,
        "no usable state and the .part does not hash to the Merkle root: starting over"
    );
    assert_eq!(chunks, 0);

    // Both empty.
    let dir = bench.partial("empty");
    std::fs::write(files(&dir).state, b"").unwrap();
    std::fs::write(files(&dir).previous, b"").unwrap();
    let (outcome, _) = bench.completes(&dir);
    assert!(outcome.contains("starting over"), "{outcome}");

    // A good state but a `.part` cut short: every listed chunk is rehashed.
    let dir = bench.partial("short-part");
    let part = std::fs::OpenOptions::new()
        .write(true)
        .open(files(&dir).part)
        .unwrap();
    part.set_len(7 * bench.artifact.chunk_size + 100).unwrap();
    drop(part);
    let (outcome, chunks) = bench.completes(&dir);
    assert_eq!(
        outcome,
        format!(
            "rechecked every chunk because the .part was {} bytes: 7 good, 5 dropped",
            7 * bench.artifact.chunk_size + 100
        )
    );
    assert_eq!(chunks, 7);

    // A complete `.part` without any state: recovered whole.
    let dir = bench.root().join("bare-part");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&bench.artifact.slm, files(&dir).part).unwrap();
    let (outcome, chunks) = bench.completes(&dir);
    assert_eq!(
        outcome,
        "no state, but the whole .part hashes to the Merkle root: 32 chunks verified"
    );
    assert_eq!(chunks, 32);
}

#[test]
fn foreign_and_unknown_state_files_are_refused_and_left_alone() {
    let bench = Bench::new(42);
    // Another artifact under the same model id (other bytes).
    let other = Artifact::make(bench.root(), "other", "files", "8MiB", "256KiB", 43);
    let dir = bench.root().join("foreign");
    other.partial(&dir, &[1, 2, 3], 1);
    let message = bench.refused(&dir);
    assert!(message.contains("belongs to another download"), "{message}");
    for sha in [
        other.manifest.artifact_sha256.to_string(),
        bench.artifact.manifest.artifact_sha256.to_string(),
    ] {
        assert!(message.contains(&sha), "names both artifacts: {message}");
    }

    // The same when only the previous generation is foreign and needed.
    let files = bench.artifact.files(&dir);
    std::fs::rename(&files.state, &files.previous).unwrap();
    std::fs::write(&files.state, b"not json").unwrap();
    let message = bench.refused(&dir);
    assert!(
        message.contains(".slm.state.prev belongs to another download"),
        "{message}"
    );

    // A state of a format this version does not read.
    let dir = bench.partial("unknown-format");
    std::fs::write(
        bench.artifact.files(&dir).state,
        br#"{"format": "minimodel-partial-v9", "anything": 1}"#,
    )
    .unwrap();
    let message = bench.refused(&dir);
    assert!(message.contains("minimodel-partial-v9"), "{message}");

    // A final file with the receipt of another artifact.
    let dir = bench.root().join("foreign-final");
    std::fs::create_dir(&dir).unwrap();
    let theirs = bench.root().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let final_path = theirs.join("files.slm");
    std::fs::copy(&other.slm, &final_path).unwrap();
    resume_support::ok(
        bench.root(),
        &[
            "verify",
            other.manifest_path.to_str().unwrap(),
            final_path.to_str().unwrap(),
        ],
    );
    for name in ["files.slm", "files.receipt.json"] {
        std::fs::copy(theirs.join(name), dir.join(name)).unwrap();
    }
    let message = bench.refused(&dir);
    assert!(message.contains("files.slm"), "{message}");

    // And a final file without a receipt is not overwritten either.
    std::fs::remove_file(dir.join("files.receipt.json")).unwrap();
    let message = bench.refused(&dir);
    assert!(message.contains("receipt"), "{message}");
}
