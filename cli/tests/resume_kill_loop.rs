//! `kill -9` through the binary: a download from two rate-limited seeders
//! is killed at random moments (a seeded generator), run again, killed
//! again, and so on; then it runs to the end and the file verifies.
//!
//! After every kill, with the process gone, the test reads what it left:
//! - every chunk the state lists holds the artifact's bytes (a chunk is
//!   listed only after its bytes were written), and no chunk listed
//!   before the run is missing;
//! - the chunks written but not listed are what the kill lost: they
//!   arrived after the last checkpoint. The test counts them and zeroes
//!   them, so that each is counted once;
//! - the next run starts from exactly the listed chunks.
//!
//! Every run has its own peer identity, so the seeders' reports say how
//! many bytes each run was sent. What a run was sent beyond what it wrote
//! was in flight when it was killed (or fetched twice in the endgame); it
//! must stay within the requests a fetcher keeps in flight.
//!
//! `MINIMODEL_KILLS` (default 10) and `MINIMODEL_KILL_SEED` change the
//! number of kills and their moments (`scripts/kill-loop.sh` runs 100).

mod resume_support;

use std::time::Duration;

use resume_support::{
    Artifact, DownloadFiles, Proc, Rng, Seeders, env_or, fetch_args, identity, progress_bytes,
};

/// Chunks one seeder may have been asked for and not delivered yet when a
/// run ends. The pipeline follows rate times round trip (about 3 chunks
/// here on loopback); this leaves room for a slow, loaded machine.
const IN_FLIGHT_PER_SEEDER: u64 = 24;

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Killed before it could report progress, or while transferring.
    KilledInStartUp,
    KilledInTransfer,
    /// Ran to the end (or found the download complete).
    Completed,
}

/// What one run did.
#[derive(Debug)]
struct Run {
    peer_id: String,
    end: End,
    /// Chunks the state listed when the run started and when it ended.
    listed_before: usize,
    listed_after: usize,
    /// Bytes of chunks it wrote.
    written: u64,
    /// Bytes of chunks it wrote that the state did not list when it was
    /// killed: lost, fetched again by a later run.
    lost: u64,
}

#[test]
fn a_download_killed_at_random_moments_completes_and_refetches_only_what_it_lost() {
    let kills_wanted = env_or("MINIMODEL_KILLS", 10) as usize;
    let seed = env_or("MINIMODEL_KILL_SEED", 0x6b69_6c6c);
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // 48 MiB from two seeders at 4 MiB/s each: about 6 s per download.
    let artifact = Artifact::make(root, "art", "killed", "48MiB", "256KiB", 11);
    let mut seeders = Seeders::start(root, &artifact, 2, "4MiB");
    let out = root.join("out");
    let files = artifact.files(&out);

    let mut runs: Vec<Run> = Vec::new();
    // Chunks the state lists now: where the next run must start.
    let mut listed: Vec<u32> = Vec::new();
    loop {
        let kills = runs.iter().filter(|r| r.end != End::Completed).count();
        let last = kills >= kills_wanted;
        let identity_dir = root.join(format!("identity-{}", runs.len()));
        let peer_id = identity(&identity_dir);
        let args = fetch_args(
            &artifact,
            &seeders,
            &out,
            &["--json", "--identity", identity_dir.to_str().unwrap()],
        );
        let mut fetch = Proc::spawn(root, &args);
        let mut end = End::Completed;
        if !last {
            end = kill_at_random(
                &mut fetch,
                &mut rng,
                listed.len() as u64 * artifact.chunk_size,
            );
        }
        if let Some(opened) = fetch.event("opened") {
            assert_eq!(
                opened["chunks_verified"].as_u64(),
                Some(listed.len() as u64),
                "run {} starts from the listed chunks: {opened}",
                runs.len() + 1
            );
        }
        let listed_before = listed.len();
        if end == End::Completed {
            fetch.expect_exit(0);
            let written = match fetch.event("fetched") {
                Some(fetched) => {
                    assert_eq!(
                        fetched["chunks_resumed"].as_u64(),
                        Some(listed.len() as u64)
                    );
                    assert_eq!(
                        fetched["chunks_resumed"].as_u64().unwrap()
                            + fetched["chunks_fetched"].as_u64().unwrap(),
                        u64::from(artifact.chunk_count()),
                        "every chunk fetched once in the last run: {fetched}"
                    );
                    artifact.size() - artifact.bytes_of(&listed)
                }
                // An earlier run was killed after the rename.
                None => {
                    assert!(fetch.event("already-complete").is_some());
                    0
                }
            };
            artifact.verify(root, &files.artifact);
            runs.push(Run {
                peer_id,
                end,
                listed_before,
                listed_after: artifact.chunk_count() as usize,
                written,
                lost: 0,
            });
            if last {
                break;
            }
            // More kills to go: the same download again from nothing.
            std::fs::remove_dir_all(&out).unwrap();
            listed.clear();
            continue;
        }
        let (now_listed, written, lost) =
            inspect_after_kill(&artifact, &files, &listed, runs.len());
        runs.push(Run {
            peer_id,
            end,
            listed_before,
            listed_after: now_listed.len(),
            written,
            lost,
        });
        listed = now_listed;
    }

    // What each run was sent, from the seeders' reports.
    let peers: Vec<String> = runs.iter().map(|r| r.peer_id.clone()).collect();
    let sent = seeders.uploaded_to(&peers);
    report(seed, &artifact, &runs, &sent);
    let cap = 2 * IN_FLIGHT_PER_SEEDER * artifact.chunk_size;
    for (n, (run, &sent)) in runs.iter().zip(&sent).enumerate() {
        assert!(
            sent >= run.written,
            "run {}: wrote {} bytes but was sent {sent}",
            n + 1,
            run.written
        );
        assert!(
            sent - run.written <= cap,
            "run {} ({:?}): sent {sent} bytes, wrote {}: more in flight than a fetcher asks for \
             ({cap})",
            n + 1,
            run.end,
            run.written
        );
    }
    let rounds = runs.iter().filter(|r| r.end == End::Completed).count() as u64;
    let lost: u64 = runs.iter().map(|r| r.lost).sum();
    assert_eq!(
        runs.iter().map(|r| r.written).sum::<u64>(),
        rounds * artifact.size() + lost,
        "every byte was written once per download, and the lost ones once more"
    );
}

/// Kills `fetch` at a random moment: a quarter of the time in its start-up
/// (opening the directory, dialing), otherwise after a random amount of
/// new bytes (`listed` were there at the start) and a random pause.
/// Returns how it ended: it may finish first.
fn kill_at_random(fetch: &mut Proc, rng: &mut Rng, listed: u64) -> End {
    let moment = if rng.below(4) == 0 {
        fetch.sleep_while_running(rng.pause(Duration::from_millis(700)));
        End::KilledInStartUp
    } else {
        let target = listed + rng.below(24 << 20);
        let reached = fetch.wait_for("progress", |events| {
            progress_bytes(events).is_some_and(|bytes| bytes >= target)
        });
        if reached {
            fetch.sleep_while_running(rng.pause(Duration::from_secs(1)));
        }
        End::KilledInTransfer
    };
    if fetch.kill9().code().is_some() {
        End::Completed
    } else {
        moment
    }
}

/// After a kill: the chunks the state lists now, the bytes the run wrote,
/// and the bytes it wrote that are not listed (zeroed, so that each is
/// counted once). Checks that every listed chunk is on disk and that no
/// chunk listed before the run (`before`) went missing.
fn inspect_after_kill(
    artifact: &Artifact,
    files: &DownloadFiles,
    before: &[u32],
    run: usize,
) -> (Vec<u32>, u64, u64) {
    let all: Vec<u32> = (0..artifact.chunk_count()).collect();
    if files.artifact.exists() {
        // Killed while finishing, after the rename: nothing lost.
        let written = artifact.size() - artifact.bytes_of(before);
        return (all, written, 0);
    }
    let listed = files.persisted();
    let good = if files.part.exists() {
        artifact.good_chunks(&files.part)
    } else {
        Vec::new()
    };
    for chunk in &listed {
        assert!(
            good.binary_search(chunk).is_ok(),
            "run {}: chunk {chunk} is listed but its bytes are not on disk",
            run + 1
        );
    }
    for chunk in before {
        assert!(
            listed.binary_search(chunk).is_ok(),
            "run {}: chunk {chunk} was listed before the run and is not any more",
            run + 1
        );
    }
    let new: Vec<u32> = good
        .iter()
        .copied()
        .filter(|c| before.binary_search(c).is_err())
        .collect();
    let mut lost = 0;
    for &chunk in new.iter().filter(|c| listed.binary_search(c).is_err()) {
        let range = artifact.range(chunk);
        lost += range.len() as u64;
        resume_support::scribble(&files.part, range.start as u64, range.len(), 0);
    }
    (listed, artifact.bytes_of(&new), lost)
}

fn report(seed: u64, artifact: &Artifact, runs: &[Run], sent: &[u64]) {
    let size = artifact.size();
    let kills = runs.iter().filter(|r| r.end != End::Completed).count();
    let rounds = runs.len() - kills;
    let total_sent: u64 = sent.iter().sum();
    let again = total_sent - rounds as u64 * size;
    let lost: u64 = runs.iter().map(|r| r.lost).sum();
    let in_flight: u64 = runs.iter().zip(sent).map(|(r, s)| s - r.written).sum();
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!(
        "kill loop, seed {seed:#x}: {kills} kills ({} in start-up), {} runs, {rounds} complete \
         downloads of {:.0} MiB",
        runs.iter()
            .filter(|r| r.end == End::KilledInStartUp)
            .count(),
        runs.len(),
        mib(size)
    );
    println!(
        "fetched again: {:.1} MiB = {:.1}% of the artifact ({:.2} MiB per kill): {:.1} MiB \
         written but not checkpointed yet (at most {:.1} MiB in one kill) + {:.1} MiB in flight \
         or endgame duplicates",
        mib(again),
        100.0 * again as f64 / size as f64,
        mib(again) / kills.max(1) as f64,
        mib(lost),
        mib(runs.iter().map(|r| r.lost).max().unwrap_or(0)),
        mib(in_flight),
    );
    for (n, (run, sent)) in runs.iter().zip(sent).enumerate() {
        println!(
            "  run {:>3} {:<16} listed {:>3} -> {:>3} chunks, sent {:>6.2} MiB, wrote {:>6.2} MiB, \
             lost {:>6.2} MiB",
            n + 1,
            format!("{:?}", run.end),
            run.listed_before,
            run.listed_after,
            mib(*sent),
            mib(run.written),
            mib(run.lost)
        );
    }
}

#[test]
fn a_download_killed_and_run_again_with_its_identity_resumes_at_once() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "same-id", "16MiB", "256KiB", 12);
    let seeders = Seeders::start(root, &artifact, 1, "4MiB");
    let out = root.join("out");
    let identity_dir = root.join("identity");
    let args = fetch_args(
        &artifact,
        &seeders,
        &out,
        &["--json", "--identity", identity_dir.to_str().unwrap()],
    );
    let mut fetch = Proc::spawn(root, &args);
    let started = fetch.wait_for("progress", |events| {
        progress_bytes(events).is_some_and(|bytes| bytes > 0)
    });
    assert!(started, "{}", fetch.stderr());
    assert!(fetch.kill9().code().is_none(), "killed before the end");
    // The seeder still holds the dead connection (until its idle timeout):
    // the same peer dialing again replaces it.
    let mut again = Proc::spawn(root, &args);
    again.expect_exit(0);
    assert!(again.event("fetched").is_some(), "{:?}", again.stdout());
    artifact.verify(root, &artifact.files(&out).artifact);
}
