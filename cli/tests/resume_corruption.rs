//! Chunks of the `.part` changed while the download was stopped, through
//! the binary: `--recheck` finds them before the download goes on; without
//! it, the random sample at start-up may find them, and if it misses, the
//! whole-file SHA-256 at the end disagrees, the bad chunks are found by
//! their chunk hashes and fetched again. Either way the file verifies.

mod resume_support;

use std::path::Path;

use resume_support::{Artifact, Proc, Seeders, StopRequest, fetch_args, scribble};

/// Fetches until the state lists at least `chunks` chunks, then stops the
/// fetch as Ctrl-C does; returns the chunks listed.
fn partial_download(root: &Path, artifact: &Artifact, args: &[String], chunks: usize) -> Vec<u32> {
    let files = artifact.files(&root.join("out"));
    let mut fetch = Proc::spawn(root, args);
    let enough = fetch.wait_for("a checkpoint", |_| files.persisted().len() >= chunks);
    assert!(enough, "{:?} {}", fetch.stdout(), fetch.stderr());
    fetch.stop(StopRequest::Interrupt);
    assert_eq!(fetch.wait().code(), Some(130), "{}", fetch.stderr());
    let listed = files.persisted();
    assert!(
        listed.len() < artifact.chunk_count() as usize,
        "not complete"
    );
    listed
}

/// Chunks an `opened` event says came back from the journal: stored after
/// the last checkpoint, when their verification outlasted the stop's wait.
fn journaled(opened: &serde_json::Value) -> usize {
    opened["chunks_from_journal"]
        .as_u64()
        .expect("chunks_from_journal") as usize
}

/// Flips a few bytes in the middle of chunk `index` of the `.part`.
fn damage(artifact: &Artifact, part: &Path, index: u32) {
    let range = artifact.range(index);
    let offset = (range.start + range.len() / 2) as u64;
    let original = artifact.bytes[range.start + range.len() / 2];
    scribble(part, offset, 1, !original);
}

#[test]
fn recheck_drops_chunks_changed_while_stopped_and_fetches_them_again() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "rechecked", "16MiB", "256KiB", 31);
    let seeders = Seeders::start(root, &artifact, 1, "4MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let args = fetch_args(&artifact, &seeders, &out, &["--json"]);
    let listed = partial_download(root, &artifact, &args, 8);
    let damaged = [
        listed[0],
        listed[listed.len() / 2],
        listed[listed.len() - 1],
    ];
    for &chunk in &damaged {
        damage(&artifact, &files.part, chunk);
    }

    let mut recheck_args = args.clone();
    recheck_args.push("--recheck".into());
    let mut fetch = Proc::spawn(root, &recheck_args);
    fetch.expect_exit(0);
    let opened = fetch.event("opened").unwrap();
    let good = listed.len() - damaged.len();
    assert_eq!(
        opened["outcome"],
        format!("rechecked every chunk as asked: {good} good, 3 dropped"),
        "{opened}"
    );
    // Chunks stored after the last checkpoint come back from the journal.
    let good = good + journaled(&opened);
    assert_eq!(opened["chunks_verified"], good as u64);
    let fetched = fetch.event("fetched").unwrap();
    assert_eq!(fetched["chunks_resumed"], good as u64);
    assert_eq!(
        fetched["chunks_fetched"],
        u64::from(artifact.chunk_count()) - good as u64
    );
    artifact.verify(root, &files.artifact);
}

#[test]
fn a_chunk_changed_while_stopped_is_found_and_fetched_again_without_recheck() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // Small chunks, so that many are listed and the start-up sample of 4
    // almost always misses the damaged one: then only the whole-file check
    // at the end can find it.
    let artifact = Artifact::make(root, "art", "unchecked", "16MiB", "64KiB", 32);
    let seeders = Seeders::start(root, &artifact, 1, "4MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let args = fetch_args(&artifact, &seeders, &out, &["--json"]);
    let listed = partial_download(root, &artifact, &args, 96);
    let bad = listed[listed.len() / 3];
    damage(&artifact, &files.part, bad);

    let mut fetch = Proc::spawn(root, &args);
    fetch.expect_exit(0);
    let opened = fetch.event("opened").unwrap();
    let outcome = opened["outcome"].as_str().unwrap().to_owned();
    let fetched = fetch.event("fetched").unwrap();
    let (resumed, new) = (
        fetched["chunks_resumed"].as_u64().unwrap(),
        fetched["chunks_fetched"].as_u64().unwrap(),
    );
    let count = u64::from(artifact.chunk_count());
    let listed = (listed.len() + journaled(&opened)) as u64;
    if outcome.starts_with("resumed") {
        // The sample missed: every listed chunk was trusted, the whole-file
        // check failed, the bad chunk was found and fetched a second time.
        assert_eq!(opened["chunks_verified"], listed);
        assert_eq!(resumed, listed);
        assert_eq!(new, count - listed + 1, "{fetched}");
        println!("the whole-file check found chunk {bad}");
    } else {
        // The sample hit it (a few percent of runs): a full recheck.
        assert!(outcome.contains("1 dropped"), "{outcome}");
        assert_eq!(resumed, listed - 1);
        assert_eq!(new, count - listed + 1, "{fetched}");
        println!("the start-up sample found chunk {bad}");
    }
    artifact.verify(root, &files.artifact);
}

#[test]
fn a_damaged_finished_file_is_reported_by_status_verify_and_repaired_by_recheck() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // 256 chunks: a chunk list of more than 65 lines was once read cut
    // short, and a repair fetched every chunk.
    let artifact = Artifact::make(root, "art", "finished", "4MiB", "16KiB", 34);
    let seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let args = fetch_args(&artifact, &seeders, &out, &["--json"]);
    Proc::spawn(root, &args).expect_exit(0);
    let status = |extra: &[&str]| {
        let mut args = vec!["status", out.to_str().unwrap(), "--json"];
        args.extend(extra);
        Proc::spawn(root, &args)
    };
    let mut verified = status(&["--verify"]);
    verified.expect_exit(0);
    let entry = verified.event("download").unwrap();
    assert_eq!(entry["check"]["ok"], true, "{entry}");
    assert_eq!(entry["check"]["bytes_read"], artifact.size());

    // Run again: the delivery's stamp was taken milliseconds after the
    // file's last write (racy: a write in the same clock tick would not
    // show), so the first run after it reads the file once more; past the
    // racy window, that check's stamp vouches for the file, and the run
    // after it does not read it again, and says so.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut again = Proc::spawn(root, &args);
    again.expect_exit(0);
    let complete = again.event("already-complete").unwrap();
    assert_eq!(complete["rechecked_now"], true, "{complete}");
    let mut again = Proc::spawn(root, &args);
    again.expect_exit(0);
    let complete = again.event("already-complete").unwrap();
    assert_eq!(complete["rechecked_now"], false, "{complete}");
    // Asked to seed after a download that had nothing left to do: it says
    // that nothing is served, and which command would.
    let seed_after = fetch_args(
        &artifact,
        &seeders,
        &out,
        &["--serve", "--seed-after", "--listen", "127.0.0.1:0"],
    );
    let (code, _, stderr) = resume_support::run(root, &seed_after);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("nothing is served") && stderr.contains("minimodel seed"),
        "{stderr}"
    );

    // One byte of chunk 9 changes.
    damage(&artifact, &files.artifact, 9);
    let mut verified = status(&["--verify"]);
    verified.expect_exit(4);
    let entry = verified.event("download").unwrap();
    assert_eq!(entry["check"]["ok"], false, "{entry}");
    assert_eq!(entry["check"]["bad_chunks"], 1, "{entry}");
    let error = verified.event("error").expect("an error event");
    assert_eq!(error["error"], "damaged on disk: finished", "{error}");
    // Plain status reads nothing and still says complete.
    let mut plain = status(&[]);
    plain.expect_exit(0);
    assert!(plain.event("download").unwrap().get("check").is_none());

    // --recheck reads it, finds chunk 9, fetches only that chunk.
    let mut recheck_args = args.clone();
    recheck_args.push("--recheck".into());
    let mut fetch = Proc::spawn(root, &recheck_args);
    fetch.expect_exit(0);
    let opened = fetch.event("opened").unwrap();
    assert_eq!(
        opened["outcome"],
        "the finished file failed its check: 1 damaged chunk is fetched again, the rest is kept",
        "{opened}"
    );
    let fetched = fetch.event("fetched").unwrap();
    assert_eq!(fetched["chunks_fetched"], 1, "{fetched}");
    assert_eq!(
        fetched["chunks_resumed"],
        u64::from(artifact.chunk_count()) - 1
    );
    artifact.verify(root, &files.artifact);
    let mut verified = status(&["--verify"]);
    verified.expect_exit(0);

    // A good file read again by --recheck records when.
    let mut fetch = Proc::spawn(root, &recheck_args);
    fetch.expect_exit(0);
    let complete = fetch.event("already-complete").unwrap();
    assert_eq!(complete["rechecked_now"], true, "{complete}");
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files.receipt).unwrap()).unwrap();
    assert_eq!(receipt["last_verified_at"], complete["verified_at"]);
}

#[test]
fn a_finished_file_changed_since_its_receipt_is_read_again_without_being_asked() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "touched", "2MiB", "64KiB", 35);
    let seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let args = fetch_args(&artifact, &seeders, &out, &["--json"]);
    Proc::spawn(root, &args).expect_exit(0);
    // The whole file replaced with other bytes, a second after the receipt.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let junk: Vec<u8> = (0..artifact.size()).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&files.artifact, junk).unwrap();
    let mut fetch = Proc::spawn(root, &args);
    fetch.expect_exit(0);
    let opened = fetch.event("opened").unwrap();
    assert!(
        opened["outcome"]
            .as_str()
            .unwrap()
            .starts_with("the finished file failed its check"),
        "{opened}"
    );
    artifact.verify(root, &files.artifact);
}
