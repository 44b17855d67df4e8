//! `fetch --mirror` through the binary, against loopback HTTPS mirrors
//! (`minimodel_swarm::mirror::test_server`, the `testing` feature of the
//! dev-dependency): one mirror alone delivers a verified file and the
//! receipt names it with its bytes; a lying mirror beside an honest one is
//! dropped with its reason and the download completes; a URL that cannot
//! be a mirror is a usage error before anything is asked; a fetch from a
//! mirror and a seeder killed midway resumes without fetching a verified
//! chunk again and notices that the mirror's file changed.
//!
//! The binary trusts the test authority of `fixtures/mirror/` the way any
//! user trusts an extra authority: `SSL_CERT_FILE` names the PEM file the
//! system's roots are read from (`docs/swarm.md`, "Mirrors"). No hook of
//! the binary is only for tests.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use minimodel_swarm::mirror::test_server::{Lie, TestMirror};
use support::*;

const MODEL: &str = "mirror16";

/// `MODEL.slm` (16 MiB, cut at its parts in chunks of 256 KiB at most),
/// its manifest naming a chunk list,
/// and the chunk list `MODEL.chunk-list` a mirror serves beside the file.
fn prepare_with_chunk_list(root: &Path) -> (Vec<u8>, Vec<u8>) {
    let slm = format!("{MODEL}.slm");
    ok(&minimodel(
        root,
        &["fixture", &slm, "--size", "16MiB", "--seed", "11"],
    ));
    let list = format!("{MODEL}.chunk-list");
    ok(&minimodel(
        root,
        &[
            "manifest",
            &slm,
            "--model-id",
            MODEL,
            "--publisher-id",
            "acme",
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            "256KiB",
            "--chunk-list-route",
            "https://example.org/mirror16.chunk-list",
            "--chunk-list-out",
            &list,
            "-o",
            &format!("{MODEL}.manifest"),
        ],
    ));
    (
        std::fs::read(root.join(&slm)).unwrap(),
        std::fs::read(root.join(&list)).unwrap(),
    )
}

/// The test authority's certificate, written where `SSL_CERT_FILE` can
/// name it.
fn test_roots(root: &Path) -> PathBuf {
    let path = root.join("test-ca.pem");
    std::fs::write(&path, minimodel_swarm::mirror::test_server::TEST_CA_PEM).unwrap();
    path
}

/// A runtime whose workers serve the test mirrors while the test waits
/// for the binary.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `minimodel fetch MODEL.manifest --mirror URL... -o out --json extra...`
/// in `root`, the test authority trusted.
fn fetch(root: &Path, mirrors: &[String], extra: &[&str]) -> Output {
    fetch_command(root, mirrors, extra)
        .output()
        .expect("the binary runs")
}

/// The command of [`fetch`], not started.
fn fetch_command(root: &Path, mirrors: &[String], extra: &[&str]) -> Command {
    let mut command = binary(root);
    command
        .args(["fetch", &format!("{MODEL}.manifest"), "-o", "out", "--json"])
        .args(extra);
    for url in mirrors {
        command.args(["--mirror", url]);
    }
    command
}

fn mirrors_of(receipt: &serde_json::Value) -> Vec<serde_json::Value> {
    receipt["source"]["mirrors"]
        .as_array()
        .expect("mirrors in the receipt")
        .clone()
}

fn verify_output(root: &Path) {
    ok(&minimodel(
        root,
        &[
            "verify",
            &format!("{MODEL}.manifest"),
            &format!("out/{MODEL}.slm"),
            "--receipt",
            "out/check.receipt.json",
        ],
    ));
}

#[test]
fn one_mirror_alone_delivers_a_verified_file_and_the_receipt_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (file, list) = prepare_with_chunk_list(root);
    let runtime = runtime();
    let mirror = runtime
        .block_on(TestMirror::start(file.clone().into(), Some(list.into())))
        .expect("the test mirror starts");
    let url = mirror.url();

    // Without consent nothing is asked; the question names the mirror's
    // host (its port too: not the default one), never the query.
    let asked = fetch(root, &[format!("{url}?token=secret")], &[]);
    assert_eq!(
        code(&asked),
        5,
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    let refusal = String::from_utf8_lossy(&asked.stdout).into_owned()
        + &String::from_utf8_lossy(&asked.stderr);
    let host = format!("mirror {} over HTTPS", mirror.addr());
    assert!(refusal.contains(&host), "{host:?} in {refusal}");
    assert!(!refusal.contains("secret"), "{refusal}");
    assert_eq!(mirror.requests(), 0, "nothing asked before consent");

    let output = fetch(root, std::slice::from_ref(&url), &["--yes"]);
    ok(&output);
    assert_eq!(
        std::fs::read(root.join(format!("out/{MODEL}.slm"))).unwrap(),
        file
    );
    verify_output(root);
    let receipt = receipt(&root.join("out"), MODEL);
    assert_eq!(
        receipt["source"]["peers"],
        serde_json::json!([]),
        "{receipt:#}"
    );
    assert_eq!(
        mirrors_of(&receipt),
        [serde_json::json!({
            "url": url,
            "chunks": chunk_count(root, MODEL),
            "bytes": 16 << 20,
            "bad_chunks": 0,
            "blamed": false,
        })]
    );
    let events = json_lines(&output);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "mirror" && e["step"] == "up" && e["url"] == url.as_str()),
        "the mirror's joining is an event"
    );
    let fetched = events
        .iter()
        .find(|e| e["event"] == "fetched")
        .expect("a fetched event");
    assert_eq!(fetched["mirrors"][0]["bytes"], 16 << 20);
    // Every byte once, and the probe's one byte.
    assert_eq!(mirror.body_bytes(), (16 << 20) + 1);
}

#[test]
fn a_lying_mirror_beside_an_honest_one_is_dropped_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (file, list) = prepare_with_chunk_list(root);
    let runtime = runtime();
    let start = |lie: Lie| {
        let mirror = runtime
            .block_on(TestMirror::start(
                file.clone().into(),
                Some(list.clone().into()),
            ))
            .expect("the test mirror starts");
        mirror.lie(lie);
        mirror
    };
    // Every range of the liar is wrong: whichever chunk it is asked for
    // first fails its check.
    let liar = start(Lie::WrongRanges);
    let honest = start(Lie::None);
    let (liar_url, honest_url) = (liar.url(), honest.url());

    // The honest mirror sends its chunks only once the liar has sent one:
    // a fast honest mirror could deliver the whole file before the liar's
    // probe is answered, and then the liar is never asked.
    honest.hold(true);
    let output = std::thread::scope(|scope| {
        scope.spawn(|| {
            let asked = std::time::Instant::now();
            // More than its probe's one byte.
            while liar.body_bytes() <= 1 && asked.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
            honest.hold(false);
        });
        fetch(root, &[liar_url.clone(), honest_url.clone()], &["--yes"])
    });
    ok(&output);
    assert_eq!(
        std::fs::read(root.join(format!("out/{MODEL}.slm"))).unwrap(),
        file
    );
    verify_output(root);
    let events = json_lines(&output);
    let dropped = events
        .iter()
        .find(|e| e["event"] == "mirror" && e["step"] == "dropped")
        .expect("the liar's drop is an event");
    assert_eq!(dropped["url"], liar_url.as_str());
    assert_eq!(dropped["mirror"], 0);
    assert!(dropped["chunk"].is_u64(), "{dropped}");
    let (expected, got) = (&dropped["expected_sha256"], &dropped["got_sha256"]);
    assert!(
        expected.is_string() && got.is_string() && expected != got,
        "{dropped}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "mirror"
            && e["step"] == "dropped"
            && e["url"] == honest_url.as_str()),
        "the honest mirror stays"
    );

    let receipt = receipt(&root.join("out"), MODEL);
    let listed = mirrors_of(&receipt);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["url"], liar_url.as_str());
    assert_eq!(listed[0]["blamed"], true);
    assert_eq!(listed[0]["chunks"], 0, "none of its chunks counted");
    assert!(listed[0]["bad_chunks"].as_u64().unwrap() >= 1);
    let left = listed[0]["left"].as_str().expect("why it left");
    assert!(left.contains(expected.as_str().unwrap()), "{left}");
    assert_eq!(listed[1]["url"], honest_url.as_str());
    assert_eq!(listed[1]["blamed"], false);
    assert_eq!(listed[1]["chunks"], chunk_count(root, MODEL));
    assert_eq!(listed[1]["bytes"], 16 << 20);
}

#[test]
fn a_url_that_cannot_be_a_mirror_is_a_usage_error_before_anything_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare_with_chunk_list(root);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--mirror", "http://127.0.0.1:1/m.slm"],
            "--allow-plain-http-mirror",
        ),
        (&["--mirror", "ftp://example.org/m.slm"], "https://"),
        (
            &["--mirror", "https://user:pw@example.org/m.slm"],
            "MINIMODEL_MIRROR_TOKENS",
        ),
        (&["--mirror", "https://example.org/"], "names no file"),
        (
            &[
                "--mirror",
                "https://example.org/a.slm",
                "--mirror",
                "https://example.org/a.slm?x=1",
            ],
            "given twice",
        ),
    ];
    for (extra, says) in cases {
        let output = fetch(root, &[], &[&["--yes"][..], extra].concat());
        assert_eq!(code(&output), 2, "{extra:?}");
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(said.contains(says), "{extra:?} should say {says:?}: {said}");
        assert!(!said.contains("pw@"), "{said}");
        assert!(!root.join("out").exists(), "{extra:?}: nothing was written");
    }
    // The say-so makes a plain-HTTP URL a mirror (here one nobody
    // serves: it is tried, for the chunk list with its lengths that a
    // manifest cut at parts needs first, and the fetch gives up, exit 1).
    let output = fetch(
        root,
        &[],
        &[
            "--yes",
            "--allow-plain-http-mirror",
            "--mirror",
            "http://127.0.0.1:1/m.slm",
            "--give-up-after",
            "3s",
        ],
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(code(&output), 1, "{said}");
    assert!(
        said.contains("http://127.0.0.1:1/m.slm.chunk-list: connection failed"),
        "the mirror was tried: {said}"
    );
}

/// A fetch from a mirror and a seeder, killed with SIGKILL midway (after a
/// checkpoint kept the mirror's validators), runs again to the end: no
/// verified chunk is fetched again, and the mirror, whose file changed
/// between the runs (another `ETag`), is dropped as another file while
/// the seeder delivers the rest.
#[test]
fn a_fetch_killed_midway_resumes_without_fetching_a_verified_chunk_again_and_notices_a_changed_mirror()
 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (file, list) = prepare_with_chunk_list(root);
    let runtime = runtime();
    let mirror = runtime
        .block_on(TestMirror::start(file.clone().into(), Some(list.into())))
        .expect("the test mirror starts");
    let url = mirror.url();
    let manifest = format!("{MODEL}.manifest");
    let (_seed, offer) = seeder(
        root,
        &manifest,
        &format!("{MODEL}.slm"),
        "seed.offer.json",
        &["--max-upload", "1MiB"],
    );
    let offer = offer.to_str().unwrap().to_owned();

    // The first run, slow enough to be killed midway.
    let child = fetch_command(
        root,
        std::slice::from_ref(&url),
        &["--yes", "--offer", &offer, "--max-download", "2MiB"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("the fetch starts");
    let mut first = Running {
        child,
        name: "the first fetch".into(),
    };
    let mut lines = std::io::BufReader::new(first.child.stdout.take().unwrap());
    let remembered = root.join(format!("out/{MODEL}.slm.mirrors"));
    let seen = read_until(&mut lines, |event| {
        event["event"] == "progress"
            && event["verified_bytes"].as_u64() >= Some(4 << 20)
            && remembered.exists()
    });
    let last = seen.last().expect("the fetch printed events");
    assert_eq!(last["event"], "progress", "it ended first: {seen:?}");
    first.kill();

    // The mirror's file is another one now.
    mirror.set_etag("\"another-file\"");
    let output = fetch(
        root,
        std::slice::from_ref(&url),
        &["--yes", "--offer", &offer],
    );
    ok(&output);
    assert_eq!(
        std::fs::read(root.join(format!("out/{MODEL}.slm"))).unwrap(),
        file
    );
    verify_output(root);
    let events = json_lines(&output);
    let dropped = events
        .iter()
        .find(|e| e["event"] == "mirror" && e["step"] == "dropped")
        .unwrap_or_else(|| panic!("the changed mirror is dropped: {events:?}"));
    assert!(
        dropped.to_string().contains("another-file"),
        "the reason names the new ETag: {dropped}"
    );
    let receipt = receipt(&root.join("out"), MODEL);
    let source = &receipt["source"];
    let resumed = source["chunks_resumed"].as_u64().unwrap();
    let fetched = source["chunks_fetched"].as_u64().unwrap();
    assert!(resumed >= 16, "{source:#}");
    assert_eq!(
        resumed + fetched,
        chunk_count(root, MODEL),
        "no verified chunk again: {source:#}"
    );
    assert_eq!(source["chunks_refetched"], 0, "{source:#}");
    let listed = mirrors_of(&receipt);
    assert_eq!(listed[0]["chunks"], 0, "{listed:?}");
    assert_eq!(listed[0]["blamed"], true, "{listed:?}");
}

/// The binary in `root`, the test authority trusted, no mirror token.
fn binary(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_minimodel"));
    command
        .current_dir(root)
        .env("SSL_CERT_FILE", test_roots(root))
        .env_remove("SSL_CERT_DIR")
        .env_remove("MINIMODEL_MIRROR_TOKENS")
        .stdin(Stdio::null());
    command
}

/// `minimodel ARGS` in `root`, the test authority trusted.
fn trusting(root: &Path, args: &[&str]) -> Output {
    binary(root).args(args).output().expect("the binary runs")
}

#[test]
fn a_ticket_of_a_mirror_alone_fetches_the_manifest_beside_it_and_the_artifact_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (file, list) = prepare_with_chunk_list(root);
    let manifest = std::fs::read(root.join(format!("{MODEL}.manifest"))).unwrap();
    let runtime = runtime();
    let mirror = runtime
        .block_on(TestMirror::start(file.clone().into(), Some(list.into())))
        .expect("the test mirror starts");
    mirror.set_manifest(manifest.clone().into());
    let url = mirror.url();
    let manifest_name = format!("{MODEL}.manifest");

    // What a ticket cannot carry is a usage error, and no ticket.
    for (mirrors, why) in [
        (vec![format!("{url}?sig=secret")], "a query"),
        (
            vec!["http://127.0.0.1:9/model.slm".to_owned()],
            "plain HTTP",
        ),
        (
            vec![url.clone(), format!("{url}2"), format!("{url}3")],
            "three mirrors",
        ),
        (vec![], "no peer and no mirror"),
    ] {
        let mut args = vec!["ticket", "new", manifest_name.as_str()];
        for mirror in &mirrors {
            args.extend(["--mirror", mirror.as_str()]);
        }
        let refused = trusting(root, &args);
        assert_eq!(code(&refused), 2, "{why}: {refused:?}");
        assert!(refused.stdout.is_empty(), "{why}: no ticket");
        assert!(
            !String::from_utf8_lossy(&refused.stderr).contains("secret"),
            "{why}: the query is never shown"
        );
    }

    let made = trusting(root, &["ticket", "new", &manifest_name, "--mirror", &url]);
    let ticket = ok(&made).trim().to_owned();
    assert!(ticket.starts_with("mm1"), "{ticket}");
    let shown = ok(&trusting(root, &["ticket", "show", &ticket]));
    assert!(shown.contains(&format!("mirror {url}")), "{shown}");
    assert!(!shown.contains("peer "), "no peer: {shown}");
    let event = json_lines(&trusting(root, &["--json", "ticket", "show", &ticket]))
        .into_iter()
        .find(|e| e["event"] == "ticket")
        .expect("a ticket event");
    assert_eq!(event["mirrors"], serde_json::json!([url]));
    assert_eq!(event["peers"], serde_json::json!([]));

    // Before consent the manifest is asked beside the mirror with no
    // token, even one the person gave for its host.
    let asked = binary(root)
        .args(["fetch", &ticket, "-o", "out"])
        .env(
            "MINIMODEL_MIRROR_TOKENS",
            format!("127.0.0.1:{}=secret-token", mirror.addr().port()),
        )
        .output()
        .unwrap();
    assert_eq!(code(&asked), 5, "no consent: {asked:?}");
    let seen = mirror.authorizations();
    assert!(!seen.is_empty(), "the manifest was asked of the mirror");
    assert!(
        seen.iter()
            .all(|(_, authorization)| authorization.is_none()),
        "no token before consent: {seen:?}"
    );

    // No peer online: the manifest comes from beside the mirror, checked
    // against the ticket's digest, and the artifact from the mirror.
    let fetched = trusting(root, &["fetch", &ticket, "-o", "out", "--yes"]);
    ok(&fetched);
    assert_eq!(
        std::fs::read(root.join(format!("out/{MODEL}.slm"))).unwrap(),
        file
    );
    verify_output(root);
    let receipt = receipt(&root.join("out"), MODEL);
    assert_eq!(mirrors_of(&receipt)[0]["url"], url.as_str(), "{receipt:#}");
    assert_eq!(
        mirrors_of(&receipt)[0]["chunks"],
        chunk_count(root, MODEL),
        "{receipt:#}"
    );
    let said = String::from_utf8_lossy(&fetched.stdout).into_owned()
        + &String::from_utf8_lossy(&fetched.stderr);
    assert!(
        said.contains(&format!("from {url}.manifest")),
        "where the manifest came from: {said}"
    );

    // A mirror whose manifest is another one: refused, nothing fetched.
    mirror.set_manifest(b"format: minimodel-manifest-v0\n".to_vec().into());
    let other = trusting(root, &["fetch", &ticket, "-o", "out2", "--yes", "--json"]);
    assert_eq!(code(&other), 4, "{other:?}");
    let said = String::from_utf8_lossy(&other.stdout).into_owned()
        + &String::from_utf8_lossy(&other.stderr);
    assert!(said.contains("serves another manifest"), "{said}");
    assert!(!root.join("out2").join(format!("{MODEL}.slm")).exists());
}
