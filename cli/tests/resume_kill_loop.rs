//! `kill -9` through the binary: a download from two rate-limited seeders
//! is killed at random moments 0.2 to 1.5 s after it starts (a seeded
//! generator), run again, killed again, and so on; then it runs to the end
//! and the file verifies.
//!
//! After every kill, with the process gone, the test reads what it left and
//! what the next run starts from:
//! - every chunk the state lists holds the artifact's bytes;
//! - the next run resumes every chunk the killed run had reported verified
//!   (its last progress event), and every chunk it resumed itself: nothing
//!   verified and on disk is lost but what the kill cut off between writing
//!   a chunk and journaling it (at most one per verification worker);
//! - what a run was sent beyond what the next run kept was in flight when
//!   it was killed: at most the download's request budget (16 MiB), plus
//!   those unjournaled chunks.
//!
//! Every run has its own peer identity, so the seeders' reports say how
//! many bytes each run was sent.
//!
//! `MINIMODEL_KILLS` (default 10) and `MINIMODEL_KILL_SEED` change the
//! number of kills and their moments (`scripts/kill-loop.sh` runs 100).

mod resume_support;

use std::time::Duration;

use resume_support::{
    Artifact, Proc, Rng, Seeders, env_or, fetch_args, identity, progress_bytes, random_pause,
};

/// The download's request budget (`DownloadConfig::max_in_flight_bytes`).
const BUDGET: u64 = 16 << 20;
/// Verification workers (the CLI runs the default): chunks that may be
/// written and not journaled yet at the moment of a kill.
fn verify_jobs() -> u64 {
    minimodel_swarm::node::CoreConfig::default().verify_jobs as u64
}

/// What one run did.
#[derive(Debug)]
struct Run {
    peer_id: String,
    killed: bool,
    /// Chunks it started from.
    resumed: u64,
    /// Chunks its last progress report said were verified.
    reported: u64,
    /// Chunks the next run started from (every chunk if it completed).
    kept: u64,
    /// Chunks whose bytes were right on disk after it ended.
    on_disk: u64,
}

#[test]
fn a_download_killed_at_random_moments_keeps_every_verified_chunk() {
    let kills_wanted = env_or("MINIMODEL_KILLS", 10) as usize;
    let seed = env_or("MINIMODEL_KILL_SEED", 0x6b69_6c6c);
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // 48 MiB from two seeders at 8 MiB/s each: about 3 s per download.
    let artifact = Artifact::make(root, "art", "killed", "48MiB", "256KiB", 11);
    let mut seeders = Seeders::start(root, &artifact, 2, "8MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let all = u64::from(artifact.chunk_count());

    let mut runs: Vec<Run> = Vec::new();
    let mut rounds = 0;
    loop {
        let kills = runs.iter().filter(|r| r.killed).count();
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
        let killed = !last
            && fetch.sleep_while_running(
                Duration::from_millis(200) + random_pause(&mut rng, Duration::from_millis(1300)),
            )
            && fetch.kill9().code().is_none();
        if !killed {
            fetch.expect_exit(0);
        }
        let events = fetch.events();
        let opened = events.iter().find(|e| e["event"] == "opened");
        let resumed = opened.map_or(0, |e| e["chunks_verified"].as_u64().unwrap());
        let number = runs.len() + 1;
        if let (Some(previous), Some(opened)) = (runs.last_mut().filter(|r| r.killed), opened) {
            previous.kept = resumed;
            assert!(
                resumed >= previous.reported && resumed >= previous.resumed,
                "run {} resumed {resumed} chunks, but run {} had reported {} verified \
                 (and started from {}): {opened}",
                number,
                number - 1,
                previous.reported,
                previous.resumed
            );
        }
        let reported = events
            .iter()
            .rev()
            .find(|e| e["event"] == "progress")
            .and_then(|e| e["verified_chunks"].as_u64())
            .unwrap_or(resumed);
        let on_disk = if files.part.exists() {
            let good = artifact.good_chunks(&files.part);
            for chunk in files.persisted() {
                assert!(
                    good.binary_search(&chunk).is_ok(),
                    "run {}: chunk {chunk} is listed but its bytes are not on disk",
                    runs.len() + 1
                );
            }
            good.len() as u64
        } else {
            all
        };
        runs.push(Run {
            peer_id,
            killed,
            resumed,
            reported,
            kept: all,
            on_disk,
        });
        if killed {
            continue;
        }
        artifact.verify(root, &files.artifact);
        rounds += 1;
        if last {
            break;
        }
        // More kills to go: the same download again from nothing.
        std::fs::remove_dir_all(&out).unwrap();
    }

    let peers: Vec<String> = runs.iter().map(|r| r.peer_id.clone()).collect();
    let sent = seeders.uploaded_to(&peers);
    report(seed, &artifact, &runs, &sent, rounds);
    let chunk = artifact.chunk_size;
    for (n, (run, &sent)) in runs.iter().zip(&sent).enumerate() {
        if !run.killed {
            continue;
        }
        let lost_on_disk = run.on_disk.saturating_sub(run.kept);
        assert!(
            lost_on_disk <= verify_jobs(),
            "run {}: {} chunks were right on disk and the next run did not keep them",
            n + 1,
            lost_on_disk
        );
        let kept_bytes = (run.kept - run.resumed) * chunk;
        assert!(
            sent.saturating_sub(kept_bytes) <= BUDGET + verify_jobs() * chunk,
            "run {}: sent {sent} bytes and {kept_bytes} of them were kept: more lost than a \
             fetch has in flight",
            n + 1
        );
    }
}

fn report(seed: u64, artifact: &Artifact, runs: &[Run], sent: &[u64], rounds: usize) {
    let kills = runs.iter().filter(|r| r.killed).count();
    let chunk = artifact.chunk_size;
    let again: Vec<u64> = runs
        .iter()
        .zip(sent)
        .filter(|(run, _)| run.killed)
        .map(|(run, &sent)| sent.saturating_sub((run.kept - run.resumed) * chunk))
        .collect();
    let lost_on_disk: u64 = runs
        .iter()
        .filter(|r| r.killed)
        .map(|r| r.on_disk.saturating_sub(r.kept))
        .sum();
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let total: u64 = again.iter().sum();
    println!(
        "kill loop, seed {seed:#x}: {kills} kills, {} runs, {rounds} complete downloads of {:.0} MiB",
        runs.len(),
        mib(artifact.size())
    );
    println!(
        "fetched again: {:.1} MiB in all, {:.2} MiB per kill (at most {:.2} MiB in one kill); \
         chunks verified on disk and not kept: {lost_on_disk}",
        mib(total),
        mib(total) / kills.max(1) as f64,
        mib(again.iter().copied().max().unwrap_or(0)),
    );
    for (n, (run, sent)) in runs.iter().zip(sent).enumerate() {
        println!(
            "  run {:>3} {:<6} resumed {:>3}, reported {:>3}, on disk {:>3}, kept {:>3} chunks, \
             sent {:>6.2} MiB",
            n + 1,
            if run.killed { "killed" } else { "done" },
            run.resumed,
            run.reported,
            run.on_disk,
            run.kept,
            mib(*sent)
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
