//! `minimodel companion` as a user runs it: `run` on a library, the thin
//! commands that talk to it (their `--json` lines checked against
//! `docs/schemas/events.schema.json`), consent, a second `run` on the same
//! library refused, SIGTERM, and a `kill -9` in the middle of three
//! downloads and two shares, after which every download resumes without
//! fetching a verified chunk again and every share serves again.

mod resume_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minimodel_companion::client::Client;
use resume_support::{Artifact, HANG, Proc, StopRequest, run};
use serde_json::Value;

/// `docs/schemas/events.schema.json` (which refers to the companion API's
/// schema beside it).
struct Events {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Events {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/schemas/events.schema.json")
            .canonicalize()
            .unwrap();
        let mut schemas = boon::Schemas::new();
        let index = boon::Compiler::new()
            .compile(path.to_str().unwrap(), &mut schemas)
            .unwrap();
        Self { schemas, index }
    }

    /// Every stdout line is JSON and an event of the schema.
    fn check(&self, lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|line| {
                let value: Value =
                    serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if let Err(error) = self.schemas.validate(&value, self.index) {
                    panic!("{value}\ndoes not match events.schema.json: {error:#}");
                }
                value
            })
            .collect()
    }
}

fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// `companion run` on `library`, API and items on loopback; returns once
/// it said it is up.
fn run_companion(dir: &Path, library: &Path) -> Proc {
    let mut proc = Proc::spawn(
        dir,
        &[
            "companion",
            "run",
            "--library",
            &arg(library),
            "--api",
            "127.0.0.1:0",
            "--serve-ip",
            "127.0.0.1",
            "--keyring",
            &arg(&dir.join("keyring")),
            "--json",
        ],
    );
    let up = proc.wait_for("the companion to start", |events| {
        events.iter().any(|event| event["event"] == "companion")
    });
    assert!(up, "stdout: {:?}; stderr: {}", proc.stdout(), proc.stderr());
    proc
}

/// `minimodel companion ARGS --library LIBRARY --json`: exit code and
/// stdout lines.
fn companion(dir: &Path, library: &Path, args: &[&str]) -> (i32, Vec<String>, String) {
    let mut all: Vec<String> = vec!["companion".to_owned()];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    all.extend(["--library".to_owned(), arg(library), "--json".to_owned()]);
    run(dir, &all)
}

fn items(library: &Path) -> Vec<Value> {
    let client = Client::for_library(library).unwrap();
    let reply = client.call("GET", "/api/v1/library", None).unwrap();
    assert_eq!(reply.status, 200);
    reply.json()["items"].as_array().unwrap().clone()
}

/// Waits until every item of `library` satisfies `done`.
fn wait_items(library: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let items = items(library);
        if done(&items) {
            return items;
        }
        assert!(started.elapsed() < HANG, "waited for {what}: {items:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn share(dir: &Path, library: &Path, artifact: &Artifact, extra: &[&str]) -> Value {
    let mut args = vec![
        "share",
        artifact.manifest_path.to_str().unwrap(),
        artifact.slm.to_str().unwrap(),
        "--yes",
    ];
    args.extend_from_slice(extra);
    let (code, lines, stderr) = companion(dir, library, &args);
    assert_eq!(code, 0, "{lines:?} {stderr}");
    let item = Events::load()
        .check(&lines)
        .into_iter()
        .find(|event| event["event"] == "companion-item")
        .expect("a companion-item line");
    item["item"].clone()
}

/// The offer of share `id`, written to `dir/<id>.offer.json`, once it
/// serves.
fn offer_file(dir: &Path, library: &Path, id: &str) -> PathBuf {
    let items = wait_items(library, "the share to serve", |items| {
        items
            .iter()
            .any(|item| item["id"] == id && item["state"] == "serving")
    });
    let item = items.iter().find(|item| item["id"] == id).unwrap();
    let path = dir.join(format!("{id}.offer.json"));
    std::fs::write(&path, item["serving"]["offer"].to_string()).unwrap();
    path
}

#[test]
fn the_companion_commands_share_fetch_log_and_stop_and_a_second_run_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let schema = Events::load();
    let artifact = Artifact::make(dir, "tiny", "tiny", "512KiB", "64KiB", 3);
    let seeder_library = dir.join("seeder");
    let mut seeder = run_companion(dir, &seeder_library);
    schema.check(&seeder.stdout());

    // One companion per library.
    let mut second = Proc::spawn(
        dir,
        &[
            "companion",
            "run",
            "--library",
            &arg(&seeder_library),
            "--api",
            "127.0.0.1:0",
        ],
    );
    second.expect_exit(3);
    assert!(
        second
            .stderr()
            .contains("another companion runs on the library"),
        "{}",
        second.stderr()
    );
    // As a launchd agent runs it: the same refusal exits 0, so that the
    // agent does not start it again, and says why.
    let mut agent = Proc::spawn(
        dir,
        &[
            "companion",
            "run",
            "--refusal-exits-zero",
            "--library",
            &arg(&seeder_library),
            "--api",
            "127.0.0.1:0",
        ],
    );
    agent.expect_exit(0);
    assert!(
        agent
            .stderr()
            .contains("another companion runs on the library")
            && agent.stderr().contains("not started, exit 0"),
        "{}",
        agent.stderr()
    );

    // No consent, no share (stdin is no terminal).
    let (code, _, stderr) = companion(
        dir,
        &seeder_library,
        &[
            "share",
            artifact.manifest_path.to_str().unwrap(),
            artifact.slm.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 5, "{stderr}");
    assert!(items(&seeder_library).is_empty());
    let shared = share(dir, &seeder_library, &artifact, &[]);
    let share_id = shared["id"].as_str().unwrap().to_owned();
    let offer = offer_file(dir, &seeder_library, &share_id);

    let fetcher_library = dir.join("fetcher");
    let _fetcher = run_companion(dir, &fetcher_library);
    let (code, lines, stderr) = companion(
        dir,
        &fetcher_library,
        &[
            "fetch",
            artifact.manifest_path.to_str().unwrap(),
            "--offer",
            offer.to_str().unwrap(),
            "--yes",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{lines:?} {stderr}");
    let events = schema.check(&lines);
    let last = &events.last().unwrap()["item"];
    assert_eq!(last["state"], "done", "{events:#?}");
    let file = last["file"].as_str().unwrap();
    assert_eq!(std::fs::read(file).unwrap(), artifact.bytes);
    assert!(
        last["handoff"]["text"]
            .as_str()
            .unwrap()
            .contains("TinyRustLM"),
        "{last}"
    );

    let (code, lines, _) = companion(dir, &fetcher_library, &["log"]);
    assert_eq!(code, 0);
    let log = schema.check(&lines);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["entry"]["direction"], "download");
    assert_eq!(log[0]["entry"]["ended"], "delivered");
    assert_eq!(log[0]["entry"]["bytes"], artifact.size());

    let (code, lines, _) = companion(dir, &fetcher_library, &["limits", "--quota", "1KiB"]);
    assert_eq!(code, 0);
    let limits = schema.check(&lines);
    assert_eq!(limits[0]["limits"]["quota"]["quota_bytes"], 1024);

    let (code, lines, stderr) =
        companion(dir, &fetcher_library, &["remove", "tiny", "--delete-files"]);
    assert_eq!(code, 0, "{stderr}");
    let removed = schema.check(&lines);
    assert!(
        removed[0]["files_removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|path| path == file),
        "{removed:#?}"
    );
    assert!(!Path::new(file).exists());

    let (code, lines, _) = run(
        dir,
        &[
            "companion",
            "token",
            "--library",
            seeder_library.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        [std::fs::read_to_string(seeder_library.join("token"))
            .unwrap()
            .trim()]
    );
    let (code, lines, _) = run(
        dir,
        &[
            "companion",
            "install-unit",
            "--print",
            "--library",
            seeder_library.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    let unit = lines.join("\n");
    assert!(
        unit.contains(&format!(
            "companion run \"--library\" \"{}\"",
            seeder_library.display()
        )),
        "{unit}"
    );
    assert!(unit.contains("SuccessExitStatus=130"), "{unit}");

    // SIGTERM: a clean stop, the state saved, api.json gone.
    seeder.stop(StopRequest::Terminate);
    seeder.expect_exit(130);
    assert!(!seeder_library.join("api.json").exists());
    let state = std::fs::read_to_string(seeder_library.join("library.json")).unwrap();
    assert!(state.contains(&share_id), "{state}");
    // `companion stop` stops the other the same way.
    let (code, _, stderr) = companion(dir, &fetcher_library, &["stop"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn after_a_kill_9_every_download_resumes_without_fetching_a_verified_chunk_again_and_every_share_serves_again()
 {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let fetched: Vec<Artifact> = (0..3)
        .map(|n| {
            let name = format!("fetched-{n}");
            Artifact::make(dir, &name, &name, "1MiB", "64KiB", 10 + n)
        })
        .collect();
    let shared: Vec<Artifact> = (0..2)
        .map(|n| {
            let name = format!("shared-{n}");
            Artifact::make(dir, &name, &name, "256KiB", "64KiB", 20 + n)
        })
        .collect();

    // A peer that shares the three artifacts, slowly.
    let peer_library = dir.join("peer");
    let _peer = run_companion(dir, &peer_library);
    let offers: Vec<PathBuf> = fetched
        .iter()
        .map(|artifact| {
            let item = share(dir, &peer_library, artifact, &["--max-upload", "128KiB"]);
            offer_file(dir, &peer_library, item["id"].as_str().unwrap())
        })
        .collect();

    // The companion under test: two shares and three downloads.
    let library = dir.join("library");
    let mut companion_proc = run_companion(dir, &library);
    let share_ids: Vec<String> = shared
        .iter()
        .map(|artifact| {
            share(dir, &library, artifact, &[])["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for (artifact, offer) in fetched.iter().zip(&offers) {
        let (code, lines, stderr) = companion(
            dir,
            &library,
            &[
                "fetch",
                artifact.manifest_path.to_str().unwrap(),
                "--offer",
                offer.to_str().unwrap(),
                "--yes",
            ],
        );
        assert_eq!(code, 0, "{lines:?} {stderr}");
    }
    let ports_before: Vec<Value> = share_ids
        .iter()
        .map(|id| {
            let offer: Value =
                serde_json::from_slice(&std::fs::read(offer_file(dir, &library, id)).unwrap())
                    .unwrap();
            offer["addrs"].clone()
        })
        .collect();
    let size = fetched[0].size();
    wait_items(&library, "every download to be on its way", |items| {
        items
            .iter()
            .filter(|item| item["kind"] == "download")
            .all(|item| {
                let verified = item["verified_bytes"].as_u64().unwrap();
                verified >= size / 8
            })
    });
    let status = companion_proc.kill9();
    assert_eq!(status.code(), None, "killed by a signal, not ended");
    let midway: Vec<u64> = {
        // What the killed companion had verified, as its downloads' own
        // state says (the API is gone with it).
        fetched
            .iter()
            .map(|artifact| {
                let verified = artifact.files(&library.join("downloads")).persisted().len() as u64;
                assert!(
                    verified < u64::from(artifact.chunk_count()),
                    "{} was not finished when killed",
                    artifact.model_id
                );
                verified
            })
            .collect()
    };

    let _restarted = run_companion(dir, &library);
    let items = wait_items(&library, "every download to be verified", |items| {
        items
            .iter()
            .filter(|item| item["kind"] == "download")
            .all(|item| item["state"] == "done")
    });
    for (artifact, persisted) in fetched.iter().zip(&midway) {
        let item = items
            .iter()
            .find(|item| item["model_id"] == artifact.model_id.as_str())
            .unwrap();
        let receipt: Value =
            serde_json::from_slice(&std::fs::read(item["receipt"].as_str().unwrap()).unwrap())
                .unwrap();
        let source = &receipt["source"];
        let resumed = source["chunks_resumed"].as_u64().unwrap();
        assert!(
            resumed >= *persisted && resumed > 0,
            "{}: {resumed} chunks resumed, {persisted} were saved: {receipt:#}",
            artifact.model_id
        );
        assert_eq!(
            resumed + source["chunks_fetched"].as_u64().unwrap(),
            u64::from(artifact.chunk_count()),
            "{}: no verified chunk was fetched again: {receipt:#}",
            artifact.model_id
        );
        assert_eq!(
            std::fs::read(item["file"].as_str().unwrap()).unwrap(),
            artifact.bytes
        );
    }
    // Every share serves again, where its offer says.
    for (id, before) in share_ids.iter().zip(&ports_before) {
        let offer: Value =
            serde_json::from_slice(&std::fs::read(offer_file(dir, &library, id)).unwrap()).unwrap();
        assert_eq!(&offer["addrs"], before, "share {id} keeps its address");
    }
    // And a one-shot fetch from one of them gets the artifact.
    let out = dir.join("check");
    let offer = dir.join(format!("{}.offer.json", share_ids[0]));
    let (code, lines, stderr) = run(
        dir,
        &[
            "fetch",
            shared[0].manifest_path.to_str().unwrap(),
            "--offer",
            offer.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{lines:?} {stderr}");
    assert_eq!(
        std::fs::read(out.join("shared-0.slm")).unwrap(),
        shared[0].bytes
    );
}

#[test]
fn a_share_gives_a_ticket_that_fetches_it_with_nothing_else() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let artifact = Artifact::make(dir, "tiny", "tiny", "512KiB", "64KiB", 4);
    // The publisher's file as it is, a comment the canonical text lacks:
    // the ticket names these bytes, so these bytes must be what is served.
    let mut text = std::fs::read(&artifact.manifest_path).unwrap();
    text.extend_from_slice(b"# published by acme\n");
    std::fs::write(&artifact.manifest_path, &text).unwrap();
    let library = dir.join("seeder");
    let _seeder = run_companion(dir, &library);
    let shared = share(dir, &library, &artifact, &[]);
    let id = shared["id"].as_str().unwrap().to_owned();
    let items = wait_items(&library, "the share's ticket", |items| {
        items
            .iter()
            .any(|item| item["id"] == id && item["serving"]["ticket"].is_string())
    });
    let item = items.iter().find(|item| item["id"] == id).unwrap();
    let ticket = item["serving"]["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("mm1"), "{ticket}");

    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("out");
    let mut fetch = Proc::spawn(
        elsewhere.path(),
        &[
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--json",
        ],
    );
    fetch.expect_exit(0);
    artifact.verify(&out, &out.join("tiny.slm"));

    // The same string given to another companion.
    let fetcher_library = dir.join("fetcher");
    let _fetcher = run_companion(dir, &fetcher_library);
    let (code, lines, stderr) = companion(
        dir,
        &fetcher_library,
        &["fetch", &ticket, "--yes", "--wait"],
    );
    assert_eq!(code, 0, "{lines:?} {stderr}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["item"]["state"], "done", "{lines:#?}");
    let file = last["item"]["file"].as_str().unwrap();
    assert_eq!(std::fs::read(file).unwrap(), artifact.bytes);
}

/// The message of the JSON `error` event that `lines` must end with.
fn error_at_the_end(lines: &[String]) -> String {
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["event"], "error", "{lines:?}");
    last["error"].as_str().unwrap_or_default().to_owned()
}

/// Ctrl-C on `companion fetch --wait` stops the waiting, says the
/// companion goes on, and leaves the download in the library.
#[test]
fn interrupting_a_wait_leaves_the_download_with_the_companion() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let artifact = Artifact::make(dir, "waited", "waited", "512KiB", "64KiB", 7);
    let library = dir.join("library");
    let _companion = run_companion(dir, &library);
    // A peer that never answers: the download cannot end by itself.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = format!("{}a@{}", "b".repeat(51), silent.local_addr().unwrap());
    let mut wait = Proc::spawn(
        dir,
        &[
            "companion",
            "fetch",
            artifact.manifest_path.to_str().unwrap(),
            "--peer",
            &peer,
            "--yes",
            "--wait",
            "--library",
            &arg(&library),
            "--json",
        ],
    );
    // The item is shown once the waiting's own stop is in place.
    let shown = wait.wait_for("the added item", |events| {
        events
            .iter()
            .any(|event| event["event"] == "companion-item")
    });
    assert!(
        shown,
        "stdout: {:?}; stderr: {}",
        wait.stdout(),
        wait.stderr()
    );
    wait.stop(StopRequest::Interrupt);
    let error = error_at_the_end(&wait.expect_exit(130));
    assert!(error.contains("the companion goes on"), "{error}");
    let items = items(&library);
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0]["model_id"], "waited");
    assert_ne!(items[0]["state"], "done");
    drop(silent);
}

/// A second signal while the companion stops (its API drains a ticket's
/// lookup, up to 5 s) ends it at once and says so ("interrupted again":
/// a stop that had ended first would say nothing of the kind); the
/// library stays usable, as after a kill.
#[test]
fn a_second_signal_during_the_stop_ends_the_companion_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let artifact = Artifact::make(dir, "drained", "drained", "512KiB", "64KiB", 9);
    let library = dir.join("library");
    let mut first = run_companion(dir, &library);
    // A ticket whose one peer never answers: its lookup takes 10 s.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (code, lines, stderr) = run(
        dir,
        &[
            "ticket",
            "new",
            artifact.manifest_path.to_str().unwrap(),
            "--peer",
            &format!("{}a@{}", "c".repeat(51), silent.local_addr().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let ticket = lines[0].clone();
    let client = Client::for_library(&library).unwrap();
    let lookup = std::thread::spawn(move || {
        let _ = client.call(
            "POST",
            "/api/v1/downloads/preview",
            Some(&serde_json::json!({ "ticket": ticket })),
        );
    });
    // The lookup under way (its first packet reached the silent peer),
    // then a stop: the API drains it.
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut packet = [0u8; 2048];
    silent
        .recv_from(&mut packet)
        .expect("the companion dials the ticket's peer");
    let client = Client::for_library(&library).unwrap();
    first.stop(StopRequest::Terminate);
    // The stop has begun once the API takes no new connection (it drains
    // the lookup meanwhile). Signals 200 ms apart or closer are one press
    // (`SAME_PRESS` in cli/src/stop.rs): the second comes after that.
    let started = Instant::now();
    while client.call("GET", "/api/v1/library", None).is_ok() {
        assert!(started.elapsed() < HANG, "the API still answers");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    first.stop(StopRequest::Terminate);
    let error = error_at_the_end(&first.expect_exit(130));
    assert!(error.starts_with("interrupted again"), "{error}");
    let _ = lookup.join();
    drop(silent);
    // The next run takes the library over.
    let _second = run_companion(dir, &library);
    assert!(items(&library).is_empty());
}

/// `companion follow` on a loopback DHT of `dht-node`: the running
/// companion reads the channel `publish` put, and the share of the
/// version it withdraws stops being served (`companion list` says
/// `withdrawn` with the reason route); `--auto` without `--yes` adds
/// nothing (exit 5); `follows` lists the follow, `unfollow` removes it.
#[test]
fn companion_follow_stops_serving_a_version_the_publisher_withdraws() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let library = dir.join("library");
    let events = Events::load();
    let reason = "https://example.org/takedown/tiny-v1";
    // Two versions of tiny signed by pub.key (other chunk sizes).
    assert_eq!(run(dir, &["key", "new", "pub.key"]).0, 0);
    let v1 = Artifact::make(dir, "v1", "tiny", "256KiB", "64KiB", 3);
    let v2 = Artifact::make(dir, "v2", "tiny", "256KiB", "32KiB", 3);
    for version in [&v1, &v2] {
        let path = arg(&version.manifest_path);
        let (code, _, stderr) = run(dir, &["sign", &path, "--key", "pub.key", "-o", &path]);
        assert_eq!(code, 0, "{stderr}");
    }
    let v1_sha256 =
        minimodel_verifier::Sha256Digest::of(&std::fs::read(&v1.manifest_path).unwrap());
    let mut node = Proc::spawn(dir, &["dht-node", "--listen", "127.0.0.1:0", "--json"]);
    assert!(node.wait_for("the dht-node event", |events| {
        events.iter().any(|e| e["event"] == "dht-node")
    }));
    let node_addr = node.event("dht-node").unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut proc = Proc::spawn(
        dir,
        &[
            "companion",
            "run",
            "--library",
            &arg(&library),
            "--api",
            "127.0.0.1:0",
            "--serve-ip",
            "127.0.0.1",
            "--keyring",
            &arg(&dir.join("keyring")),
            "--dht-bootstrap",
            &node_addr,
            "--json",
        ],
    );
    assert!(proc.wait_for("the companion to start", |events| {
        events.iter().any(|event| event["event"] == "companion")
    }));
    let item = share(dir, &library, &v1, &[]);
    let id = item["id"].as_str().unwrap().to_owned();
    offer_file(dir, &library, &id);

    // The publisher names version 2 and withdraws version 1.
    let (code, _, stderr) = run(
        dir,
        &[
            "publish",
            &arg(&v2.manifest_path),
            "--key",
            "pub.key",
            "--peer",
            "7jbgqo6i2fdzqpihyjyzcrpyr47wzrkv5ru3yfdbhtrbbqrx5wsa@127.0.0.1:4433",
            "--withdraw",
            &v1_sha256.to_hex(),
            "--reason-route",
            reason,
            "--dht-bootstrap",
            &node_addr,
            "--channels",
            "publisher",
        ],
    );
    assert_eq!(code, 0, "{stderr}");

    // --auto asks consent first: none given, nothing added.
    let (code, _, _) = companion(
        dir,
        &library,
        &["follow", "pub.key.pub", "--model-id", "tiny", "--auto"],
    );
    assert_eq!(code, 5);
    let (code, lines, stderr) = companion(dir, &library, &["follows"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        events
            .check(&lines)
            .iter()
            .all(|e| e["event"] != "companion-follow"),
        "{lines:?}"
    );

    let (code, lines, stderr) = companion(
        dir,
        &library,
        &["follow", "pub.key.pub", "--model-id", "tiny"],
    );
    assert_eq!(code, 0, "{lines:?} {stderr}");
    let follow = events
        .check(&lines)
        .into_iter()
        .find(|e| e["event"] == "companion-follow")
        .expect("a companion-follow line");
    assert_eq!(follow["follow"]["policy"], "ask");
    let items = wait_items(&library, "the share to be withdrawn", |items| {
        items
            .iter()
            .any(|item| item["id"] == id && item["state"] == "withdrawn")
    });
    let withdrawn = items.iter().find(|item| item["id"] == id).unwrap();
    assert_eq!(
        withdrawn["withdrawn"]["reason_route"], reason,
        "{withdrawn:#}"
    );
    assert!(withdrawn["serving"].is_null());
    assert!(v1.slm.exists(), "nothing deleted");
    // The follow offers version 2 with a ticket.
    let (code, lines, stderr) = companion(dir, &library, &["follows"]);
    assert_eq!(code, 0, "{stderr}");
    let listed = events
        .check(&lines)
        .into_iter()
        .find(|e| e["event"] == "companion-follow")
        .expect("the follow listed");
    assert_eq!(listed["follow"]["seq"], 1, "{listed:#}");
    let v2_sha256 =
        minimodel_verifier::Sha256Digest::of(&std::fs::read(&v2.manifest_path).unwrap());
    assert_eq!(
        listed["follow"]["offer"]["manifest_sha256"],
        v2_sha256.to_hex(),
        "{listed:#}"
    );

    let (code, _, stderr) = companion(
        dir,
        &library,
        &["unfollow", "pub.key.pub", "--model-id", "tiny"],
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, lines, _) = companion(dir, &library, &["follows"]);
    assert!(
        events
            .check(&lines)
            .iter()
            .all(|e| e["event"] != "companion-follow")
    );
    // Still withdrawn: removing the follow does not serve it again.
    assert_eq!(items_of(&library, &id)["state"], "withdrawn");
    drop((proc, node));
}

fn items_of(library: &Path, id: &str) -> Value {
    items(library)
        .into_iter()
        .find(|item| item["id"] == id)
        .unwrap()
}
