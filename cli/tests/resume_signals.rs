//! SIGINT and SIGTERM during a fetch (a Ctrl-Break event on Windows),
//! through the binary: the process ends by itself (exit 130, one "run the
//! same command again to resume") after a final checkpoint, and the same
//! command resumes from it. `minimodel status` on the partial, complete and
//! corrupt downloads along the way.

mod resume_support;

use serde_json::Value;

use resume_support::{Artifact, Proc, Seeders, StopRequest, fetch_args, ok, progress_bytes, run};

/// Starts a fetch, waits until some chunks are verified, asks it to stop
/// and waits for the process to end by itself; returns the fetch (ended)
/// and the verified chunks of its last progress report before the stop.
fn interrupted(root: &std::path::Path, args: &[String], how: StopRequest) -> (Proc, u64) {
    let mut fetch = Proc::spawn(root, args);
    let started = fetch.wait_for("progress", |events| {
        progress_bytes(events).is_some_and(|bytes| bytes > 0)
    });
    assert!(started, "{:?} {}", fetch.stdout(), fetch.stderr());
    let verified = last_progress_chunks(&fetch.events());
    fetch.stop(how);
    let status = fetch.wait();
    assert_eq!(
        status.code(),
        Some(130),
        "ends by itself with exit 130: {status}; {}",
        fetch.stderr()
    );
    (fetch, verified)
}

fn last_progress_chunks(events: &[Value]) -> u64 {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "progress")
        .and_then(|e| e["verified_chunks"].as_u64())
        .unwrap_or(0)
}

fn status_json(root: &std::path::Path, dir: &std::path::Path) -> Vec<Value> {
    ok(root, &["status", dir.to_str().unwrap(), "--json"])
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn sigint_checkpoints_and_the_same_command_resumes() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "sigint", "24MiB", "256KiB", 21);
    let seeders = Seeders::start(root, &artifact, 1, "4MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let args = fetch_args(&artifact, &seeders, &out, &["--json"]);

    let (fetch, reported) = interrupted(root, &args, StopRequest::Interrupt);
    let error = fetch.event("error").expect("an error event");
    assert_eq!(error["exit_code"], 130);
    let message = error["error"].as_str().unwrap();
    assert_eq!(
        message,
        "stopped before the download finished; every verified chunk is saved"
    );
    assert_eq!(error["hint"], "run the same command again to resume");
    // The final checkpoint lists at least every chunk reported verified,
    // and only chunks whose bytes are on disk.
    let listed = files.persisted();
    assert!(
        listed.len() as u64 >= reported,
        "listed {} < reported {reported}",
        listed.len()
    );
    let good = artifact.good_chunks(&files.part);
    assert!(listed.iter().all(|c| good.binary_search(c).is_ok()));
    println!(
        "SIGINT: {} chunks listed, {} written but not listed",
        listed.len(),
        good.len() - listed.len()
    );

    // `status` says partial, in words and in JSON.
    let (code, lines, _) = run(root, &["status", out.to_str().unwrap()]);
    assert_eq!(code, 0);
    let expected = format!(
        "sigint: partial, {}/{} chunks",
        listed.len(),
        artifact.chunk_count()
    );
    assert!(lines[0].starts_with(&expected), "{lines:?}");
    let entries = status_json(root, &out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "partial");
    assert_eq!(entries[0]["chunks_verified"], listed.len() as u64);
    assert_eq!(
        entries[0]["bytes_verified"],
        artifact.bytes_of(&listed),
        "{}",
        entries[0]
    );

    // The same command resumes from the checkpoint and completes.
    let mut again = Proc::spawn(root, &args);
    again.expect_exit(0);
    let opened = again.event("opened").unwrap();
    // A chunk stored after the last checkpoint (its verification outlasted
    // `verify_wait_at_end`) comes back from the journal, checked again.
    let from_journal = opened["chunks_from_journal"].as_u64().unwrap();
    assert!(
        from_journal <= (good.len() - listed.len()) as u64,
        "{opened}"
    );
    let resumed = listed.len() as u64 + from_journal;
    assert_eq!(opened["chunks_verified"], resumed, "{opened}");
    assert!(
        opened["outcome"].as_str().unwrap().starts_with("resumed"),
        "{opened}"
    );
    let fetched = again.event("fetched").unwrap();
    assert_eq!(fetched["chunks_resumed"], resumed);
    assert_eq!(
        fetched["chunks_fetched"],
        u64::from(artifact.chunk_count()) - resumed
    );
    artifact.verify(root, &files.artifact);

    let entries = status_json(root, &out);
    assert_eq!(entries[0]["kind"], "complete");
    assert_eq!(entries[0]["percent"], 100.0);
    let (_, lines, _) = run(root, &["status", out.to_str().unwrap()]);
    assert!(
        lines[0].starts_with("sigint: complete, 96/96 chunks, 24.0 MiB of 24.0 MiB (100.0%)"),
        "{lines:?}"
    );
}

#[test]
fn sigterm_stops_with_the_hint_and_a_damaged_state_shows_as_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "sigterm", "24MiB", "256KiB", 22);
    let seeders = Seeders::start(root, &artifact, 1, "4MiB");
    let out = root.join("out");
    let files = artifact.files(&out);
    let mut args = fetch_args(&artifact, &seeders, &out, &[]);

    // Without --json the process speaks to people: wait for the first
    // checkpoint by looking at the state file.
    let mut fetch = Proc::spawn(root, &args);
    let checkpointed = fetch.wait_for("a checkpoint", |_| !files.persisted().is_empty());
    assert!(checkpointed, "{}", fetch.stderr());
    fetch.stop(StopRequest::Terminate);
    assert_eq!(fetch.wait().code(), Some(130), "{}", fetch.stderr());
    let stderr = fetch.stderr();
    assert!(
        stderr.contains(
            "error: stopped before the download finished; every verified chunk is saved\nhint: run the same command again to resume\n"
        ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("run the same command").count(),
        1,
        "{stderr}"
    );
    let listed = files.persisted();
    assert!(!listed.is_empty());

    // Damage the state (the `.prev` is still good): status says corrupt,
    // with the figures of the previous generation.
    std::fs::write(
        &files.state,
        b"{\"format\": \"minimodel-partial-v0\", trunc",
    )
    .unwrap();
    let entries = status_json(root, &out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "corrupt", "{}", entries[0]);
    assert!(entries[0]["chunks_verified"].is_u64(), "{}", entries[0]);
    assert!(entries[0]["note"].is_string(), "{}", entries[0]);
    let (_, lines, _) = run(root, &["status", out.to_str().unwrap()]);
    assert!(lines[0].starts_with("sigterm: corrupt"), "{lines:?}");

    // The fetch falls back to the previous generation and completes.
    args.push("--json".into());
    let mut again = Proc::spawn(root, &args);
    again.expect_exit(0);
    let opened = again.event("opened").unwrap();
    assert!(
        opened["outcome"]
            .as_str()
            .unwrap()
            .starts_with("state unusable, fell back to generation"),
        "{opened}"
    );
    artifact.verify(root, &files.artifact);
}

#[test]
fn a_resumed_fetch_with_no_offer_dials_the_peers_of_its_last_run() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "remember", "8MiB", "256KiB", 22);
    let seeders = Seeders::start(root, &artifact, 1, "2MiB");
    let seeder_id = {
        let offer: Value =
            serde_json::from_slice(&std::fs::read(&seeders.offers[0]).unwrap()).unwrap();
        offer["peer_id"].as_str().unwrap().to_owned()
    };
    let out = root.join("out");
    let files = artifact.files(&out);
    let args = fetch_args(&artifact, &seeders, &out, &["--json"]);
    interrupted(root, &args, StopRequest::Terminate);

    // The run's peers are written beside its state, with how each was found.
    let remembered: Value =
        serde_json::from_slice(&std::fs::read(out.join("remember.slm.peers")).unwrap()).unwrap();
    assert_eq!(remembered["format"], "minimodel-peers-v0");
    let peers = remembered["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{remembered:#}");
    assert_eq!(peers[0]["peer_id"], seeder_id.as_str());
    assert_eq!(peers[0]["found_by"], "offer");
    assert!(peers[0]["bytes"].as_u64().unwrap() > 0, "{remembered:#}");

    // No offer, no peer, no DHT, no LAN: the download resumes from the peer
    // it remembers, and says so before it asks.
    let manifest = artifact.manifest_path.to_str().unwrap();
    let mut again = Proc::spawn(
        root,
        &[
            "fetch",
            manifest,
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--json",
        ],
    );
    again.expect_exit(0);
    artifact.verify(root, &files.artifact);
    let receipt: Value = serde_json::from_slice(&std::fs::read(&files.receipt).unwrap()).unwrap();
    let sources = receipt["source"]["peers"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{receipt:#}");
    assert_eq!(sources[0]["peer_id"], seeder_id.as_str());
    assert_eq!(sources[0]["found_by"], "remembered");

    // A directory that remembers nothing (or a damaged list): no peers.
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("remember.slm.peers"), b"{\"format\": 1}").unwrap();
    let (code, _, stderr) = run(
        root,
        &["fetch", manifest, "-o", empty.to_str().unwrap(), "--yes"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no peers to fetch from"), "{stderr}");
}

/// A ticket of `manifest` naming one peer on each of `ports` of
/// 127.0.0.1, where nothing answers.
fn ticket_of_silent_peers(root: &std::path::Path, manifest: &str, ports: &[u16]) -> String {
    let mut args = vec!["ticket".to_owned(), "new".to_owned(), manifest.to_owned()];
    for (index, port) in ports.iter().enumerate() {
        // Distinct peer ids (every one ends in 'a').
        let letter = char::from(b'a' + index as u8);
        args.push("--peer".to_owned());
        args.push(format!(
            "{}a@127.0.0.1:{port}",
            letter.to_string().repeat(51)
        ));
    }
    ok(root, &args).remove(0)
}

/// Whether process `pid` has a handler installed for signal number
/// `signal` (the kernel's `SigCgt` mask in `/proc/PID/status`).
#[cfg(target_os = "linux")]
fn catches(pid: u32, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

// Linux only: it waits for the handlers through /proc (scripts/windows-tests).
#[cfg(target_os = "linux")]
#[test]
fn a_signal_before_the_transfer_ends_with_exit_130_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "early", "1MiB", "256KiB", 5);
    let manifest = artifact.manifest_path.to_str().unwrap();
    // A ticket whose one peer never answers: the fetch asks it for the
    // manifest for 10 s, with no stop of its own yet.
    let ticket = ticket_of_silent_peers(root, manifest, &[9]);
    for (how, json) in [
        (StopRequest::Interrupt, true),
        (StopRequest::Terminate, false),
    ] {
        let out = root.join(format!("out-{json}"));
        let mut args = vec![
            "fetch",
            ticket.as_str(),
            "-o",
            out.to_str().unwrap(),
            "--yes",
        ];
        if json {
            args.push("--json");
        }
        let mut fetch = Proc::spawn(root, &args);
        let deadline = std::time::Instant::now() + resume_support::HANG;
        // Once SIGINT (2) and SIGTERM (15) are caught, before the lookup
        // that follows.
        while !(catches(fetch.id(), 2) && catches(fetch.id(), 15)) {
            assert!(
                std::time::Instant::now() < deadline && fetch.try_exit().is_none(),
                "signals never caught: {}",
                fetch.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        fetch.stop(how);
        let stdout = fetch.expect_exit(130);
        if json {
            let last: Value = serde_json::from_str(stdout.last().unwrap()).unwrap();
            assert_eq!(last["event"], "error", "{stdout:?}");
            assert_eq!(last["exit_code"], 130, "{stdout:?}");
        } else {
            assert!(
                fetch.stderr().contains("error: interrupted"),
                "{}",
                fetch.stderr()
            );
        }
        assert!(!out.exists(), "nothing written");
    }
}

#[test]
fn give_up_after_bounds_asking_a_tickets_peers_for_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "late", "1MiB", "256KiB", 6);
    let manifest = artifact.manifest_path.to_str().unwrap();
    // Four peers that never answer: 11.5 s without the bound (10 s each,
    // the last asked at 1.5 s). Each is asked half a second after the one
    // before, with what is left of the 1.2 s: the first gets it all, the
    // fourth's turn (1.5 s) comes after.
    let ticket = ticket_of_silent_peers(root, manifest, &[9, 7, 13, 17]);
    let out = root.join("out");
    // As pasted from a chat: blanks around it, upper case.
    let pasted = format!(" {}\n", ticket.to_uppercase());
    let (code, _, stderr) = run(
        root,
        &[
            "fetch",
            pasted.as_str(),
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--give-up-after",
            "1200ms",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no peer of the ticket sent its manifest")
            && stderr.contains("127.0.0.1:9: no answer in 1.")
            && stderr.contains("127.0.0.1:7: no answer in")
            && stderr.contains("127.0.0.1:13: ")
            && stderr.contains("127.0.0.1:17: not asked: the time to give up came first"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");

    // A key file that cannot be read is refused before anyone is asked.
    let (code, _, stderr) = run(
        root,
        &[
            "fetch",
            ticket.as_str(),
            "-o",
            out.to_str().unwrap(),
            "--publisher-key",
            "missing.pub",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(!stderr.contains("asking"), "{stderr}");
    // So is a DIR that is a file.
    let (code, _, stderr) = run(root, &["fetch", ticket.as_str(), "-o", manifest, "--yes"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("is not a directory") && !stderr.contains("asking"),
        "{stderr}"
    );

    // A ticket that names another publisher key than --publisher-key can
    // only end in a refusal (a manifest has one signature): refused before
    // anyone is asked, as the wrong bytes would be (exit 4).
    ok(root, &["key", "new", "a.key"]);
    ok(root, &["key", "new", "b.key"]);
    ok(
        root,
        &["sign", manifest, "--key", "a.key", "-o", "signed.manifest"],
    );
    let signed = ticket_of_silent_peers(root, "signed.manifest", &[9]);
    let (code, _, stderr) = run(
        root,
        &[
            "fetch",
            signed.as_str(),
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--publisher-key",
            "b.key.pub",
        ],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("not the --publisher-key given") && !stderr.contains("asking"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}
