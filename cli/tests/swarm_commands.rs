//! seed, fetch and import-peer-request through the binary on loopback:
//! several seeders share the work, a lying seeder is banned, a dying seeder
//! costs only time, consent and mismatched requests stop everything before
//! a byte moves.

mod support;

use std::path::Path;

use support::*;

const MODEL: &str = "swarm64";

fn fetch_args<'a>(offers: &'a [std::path::PathBuf], out: &'a str) -> Vec<String> {
    let mut args = vec!["fetch".to_owned(), format!("{MODEL}.manifest")];
    for offer in offers {
        args.push("--offer".to_owned());
        args.push(offer.display().to_string());
    }
    args.extend(["-o", out, "--yes", "--json"].map(str::to_owned));
    args
}

fn run_fetch(dir: &Path, offers: &[std::path::PathBuf], out: &str) -> std::process::Output {
    let args = fetch_args(offers, out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    minimodel(dir, &args)
}

fn peers_of(receipt: &serde_json::Value) -> Vec<serde_json::Value> {
    receipt["source"]["peers"]
        .as_array()
        .expect("peers in the receipt")
        .clone()
}

fn verify_output(dir: &Path, out: &str) {
    let file = format!("{out}/{MODEL}.slm");
    let receipt = format!("{out}/check.receipt.json");
    ok(&minimodel(
        dir,
        &[
            "verify",
            &format!("{MODEL}.manifest"),
            &file,
            "--receipt",
            &receipt,
        ],
    ));
}

#[test]
fn three_seeders_each_deliver_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "64MiB", "256KiB");
    let slm = format!("{MODEL}.slm");
    let manifest = format!("{MODEL}.manifest");
    // Capped so that the download lasts long enough for all three to join.
    let seeders: Vec<_> = (0..3)
        .map(|i| {
            seeder(
                root,
                &manifest,
                &slm,
                &format!("offer{i}.json"),
                &["--max-upload", "16MiB"],
            )
        })
        .collect();
    let offers: Vec<_> = seeders.iter().map(|(_, offer)| offer.clone()).collect();
    let output = run_fetch(root, &offers, "out");
    ok(&output);
    let events = json_lines(&output);
    assert!(events.iter().any(|e| e["event"] == "fetched"), "{events:?}");
    let delivered = events.iter().find(|e| e["event"] == "delivered");
    assert_eq!(
        delivered.map(|e| &e["seeding"]),
        Some(&serde_json::Value::Bool(false)),
        "a plain fetch delivers and stops: {events:?}"
    );
    let receipt = receipt(&root.join("out"), MODEL);
    assert_eq!(
        receipt["source"]["chunks_fetched"],
        chunk_count(root, MODEL)
    );
    let peers = peers_of(&receipt);
    assert_eq!(peers.len(), 3);
    for peer in &peers {
        assert!(
            peer["chunks"].as_u64().unwrap() > 0,
            "every seeder delivers a share: {peers:?}"
        );
        assert_eq!(peer["banned"], false);
    }
    verify_output(root, "out");
}

#[test]
fn a_seeder_whose_file_goes_bad_is_banned_and_the_download_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "64MiB", "256KiB");
    let manifest = format!("{MODEL}.manifest");
    std::fs::copy(root.join(format!("{MODEL}.slm")), root.join("liar.slm")).unwrap();
    let slm = format!("{MODEL}.slm");
    let (_good_a, offer_a) = seeder(root, &manifest, &slm, "a.json", &["--max-upload", "24MiB"]);
    let (_good_b, offer_b) = seeder(root, &manifest, &slm, "b.json", &["--max-upload", "24MiB"]);
    // The liar verified its file at start; now every chunk of it changes.
    let (_liar, offer_liar) = seeder(root, &manifest, "liar.slm", "liar.json", &[]);
    let mut bytes = std::fs::read(root.join("liar.slm")).unwrap();
    // Every byte: chunks cut at parts are not where 256 KiB blocks are,
    // and some are short.
    for byte in bytes.iter_mut() {
        *byte ^= 0x5a;
    }
    std::fs::write(root.join("liar.slm"), &bytes).unwrap();

    let output = run_fetch(root, &[offer_liar.clone(), offer_a, offer_b], "out");
    ok(&output);
    let liar_id = {
        let offer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&offer_liar).unwrap()).unwrap();
        offer["peer_id"].as_str().unwrap().to_owned()
    };
    let receipt = receipt(&root.join("out"), MODEL);
    let peers = peers_of(&receipt);
    let liar = peers
        .iter()
        .find(|p| p["peer_id"] == liar_id.as_str())
        .expect("the liar is named in the receipt");
    assert_eq!(liar["banned"], true, "{liar}");
    assert!(liar["bad_chunks"].as_u64().unwrap() >= 1);
    assert_eq!(liar["chunks"], 0, "none of its chunks counted");
    let events = json_lines(&output);
    assert!(
        events.iter().any(|e| e["event"] == "banned"),
        "the ban is reported"
    );
    verify_output(root, "out");
}

#[test]
fn a_seeder_killed_mid_transfer_costs_only_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "64MiB", "256KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let mut seeders: Vec<_> = (0..3)
        .map(|i| {
            seeder(
                root,
                &manifest,
                &slm,
                &format!("o{i}.json"),
                &["--max-upload", "8MiB"],
            )
        })
        .collect();
    let offers: Vec<_> = seeders.iter().map(|(_, offer)| offer.clone()).collect();
    let args = fetch_args(&offers, "out");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut fetch, mut lines) = spawn_with_stdout(root, &args);
    // Once a fifth of the file is in, one seeder dies.
    read_until(&mut lines, |event| {
        event["event"] == "progress"
            && event["verified_bytes"].as_u64().unwrap_or(0) > (64 << 20) / 5
    });
    seeders[0].0.kill();
    let rest = read_until(&mut lines, |event| {
        event["event"] == "fetched" || event["event"] == "error"
    });
    let status = fetch.child.wait().unwrap();
    assert!(status.success(), "fetch failed: {:?}", rest.last());
    let receipt = receipt(&root.join("out"), MODEL);
    assert_eq!(
        receipt["source"]["chunks_fetched"],
        chunk_count(root, MODEL)
    );
    verify_output(root, "out");
}

#[test]
fn without_consent_nothing_is_served_or_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let output = minimodel(root, &["seed", &manifest, &slm, "--listen", "127.0.0.1:0"]);
    assert_eq!(code(&output), 5);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--yes"));

    let (_seeder, offer) = seeder(root, &manifest, &slm, "offer.json", &[]);
    let offer = offer.display().to_string();
    let output = minimodel(root, &["fetch", &manifest, "--offer", &offer, "-o", "out"]);
    assert_eq!(code(&output), 5);
    assert!(!root.join("out").exists(), "nothing was written");
    let output = minimodel(
        root,
        &["fetch", &manifest, "--offer", &offer, "-o", "out", "--json"],
    );
    assert_eq!(code(&output), 5);
    assert_eq!(json_lines(&output)[0]["exit_code"], 5);
}

#[test]
fn the_consent_prompt_says_when_a_port_will_be_opened_on_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    // Refused for want of consent (exit 5) before any socket is opened:
    // what the question asked is in the refusal.
    let asked = |extra: &[&str]| {
        let mut args = vec!["seed", manifest.as_str(), slm.as_str()];
        args.extend_from_slice(extra);
        let output = minimodel(root, &args);
        assert_eq!(code(&output), 5);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let behind_router = asked(&["--listen", "0.0.0.0:4433"]);
    assert!(
        behind_router
            .contains("ask this network's router (UPnP, NAT-PMP or PCP) to open UDP port 4433"),
        "{behind_router}"
    );
    let private = asked(&["--listen", "192.168.1.2:0"]);
    assert!(
        private.contains("to open the UDP port it listens on"),
        "{private}"
    );
    for extra in [
        &["--listen", "0.0.0.0:4433", "--no-port-mapping"][..],
        &["--listen", "127.0.0.1:0"][..],
    ] {
        let words = asked(extra);
        assert!(!words.contains("router"), "{extra:?}: {words}");
    }
}

#[test]
fn a_request_that_disagrees_with_the_manifest_moves_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let (_seeder, offer_path) = seeder(root, &manifest, &slm, "offer.json", &[]);
    let offer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&offer_path).unwrap()).unwrap();
    let request = |sha: &str, bytes: u64, offer: &serde_json::Value| {
        serde_json::json!({
            "format": "minimodel-import-request-v0",
            "model_id": MODEL,
            "artifact_bytes": bytes,
            "artifact_sha256": sha,
            "offers": [offer],
        })
    };
    let sha = offer["artifact_sha256"].as_str().unwrap().to_owned();
    let wrong_sha = format!(
        "{}{}",
        &sha[..63],
        if sha.ends_with('0') { "1" } else { "0" }
    );
    let cases = [
        (
            "sha.json",
            request(&wrong_sha, 1 << 20, &offer),
            "artifact sha256",
        ),
        (
            "bytes.json",
            request(&sha, (1 << 20) + 1, &offer),
            "artifact bytes",
        ),
        (
            "offer.json.bad",
            {
                let mut other = offer.clone();
                other["model_id"] = "another-model".into();
                request(&sha, 1 << 20, &other)
            },
            "model id",
        ),
    ];
    for (name, body, field) in cases {
        std::fs::write(root.join(name), serde_json::to_vec(&body).unwrap()).unwrap();
        let output = minimodel(
            root,
            &["import-peer-request", name, &manifest, "out", "--yes"],
        );
        assert_eq!(code(&output), 3, "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(field) && stderr.contains("nothing was fetched"),
            "{stderr}"
        );
        assert!(!root.join("out").exists(), "{name}: nothing was written");
    }
    // The good request goes through.
    std::fs::write(
        root.join("good.json"),
        serde_json::to_vec(&request(&sha, 1 << 20, &offer)).unwrap(),
    )
    .unwrap();
    ok(&minimodel(
        root,
        &[
            "import-peer-request",
            "good.json",
            &manifest,
            "out",
            "--yes",
        ],
    ));
    verify_output(root, "out");
}

#[test]
fn an_invalid_file_is_refused_before_anything_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let mut bytes = std::fs::read(root.join(format!("{MODEL}.slm"))).unwrap();
    bytes[500_000] ^= 1;
    std::fs::write(root.join("bad.slm"), &bytes).unwrap();
    let output = minimodel(
        root,
        &[
            "seed",
            &format!("{MODEL}.manifest"),
            "bad.slm",
            "--listen",
            "127.0.0.1:0",
            "--yes",
        ],
    );
    assert_eq!(code(&output), 4);
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to seed"));
}

#[test]
fn a_bbr_seeder_serves_and_an_unknown_controller_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let output = minimodel(
        root,
        &["seed", &manifest, &slm, "--yes", "--congestion", "vegas"],
    );
    assert_eq!(code(&output), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("vegas") && stderr.contains("bbr"),
        "{stderr}"
    );

    let (mut seeder, offer) = seeder(
        root,
        &manifest,
        &slm,
        "offer.json",
        &["--congestion", "bbr", "--json"],
    );
    let output = run_fetch(root, &[offer], "out");
    ok(&output);
    verify_output(root, "out");
    // The seeder's connection to the fetch was paced by BBR, as read from
    // the connection (its peer-connected event); all it printed is in once
    // it has stopped.
    seeder.interrupt();
    assert_eq!(seeder.child.wait().unwrap().code(), Some(0));
    let printed = std::fs::read_to_string(root.join("offer.json.stdout")).unwrap();
    let connected: Vec<serde_json::Value> = printed
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "peer-connected")
        .collect();
    assert!(!connected.is_empty(), "{printed}");
    for event in &connected {
        assert_eq!(event["congestion"], "bbr", "{event}");
    }
}

/// `fetch tiny.manifest -o OUT` from one peer at a port nobody serves
/// (the discard port), with `extra` arguments.
fn fetch_from_nobody(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let peer = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:9";
    let mut args = vec!["fetch", "tiny.manifest", "--peer", peer, "-o", out, "--yes"];
    args.extend_from_slice(extra);
    minimodel(dir, &args)
}

#[test]
fn a_fetch_that_reaches_nobody_says_nothing_was_verified() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), "tiny", "1MiB", "64KiB");
    let out = fetch_from_nobody(dir.path(), "out", &["--give-up-after", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(
        stderr.contains("nothing was verified") && !stderr.contains("the verified part is kept"),
        "{stderr}"
    );
    // The .part reserved at the artifact's size, and the state that goes
    // with it, are given back (or, cut at parts, never made: the chunk
    // list came first): a rerun starts over as fast. (The empty lock file
    // stays: it is never removed.)
    let left: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .into_iter()
        .flatten()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".part") || name.contains(".state"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_missing_slm_or_a_file_for_the_download_directory_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), "tiny", "1MiB", "64KiB");
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    // The .slm a command reads: missing, or a directory. Exit 3 as for a
    // missing manifest, before consent is asked or anything is written.
    let manifest_args = [
        "manifest",
        "--model-id",
        "other",
        "--publisher-id",
        "acme",
        "--license-route",
        "https://example.org/l",
        "--evidence-route",
        "https://example.org/e",
        "-o",
        "other.manifest",
    ];
    for file in ["missing.slm", "a-directory"] {
        for args in [
            vec!["verify", "tiny.manifest", file],
            vec!["seed", "tiny.manifest", file, "--listen", "127.0.0.1:0"],
            manifest_args.iter().copied().chain([file]).collect(),
        ] {
            let out = minimodel(dir.path(), &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(code(&out), 3, "{args:?}: {stderr}");
            assert!(stderr.contains(&format!("cannot read {file}")), "{stderr}");
            assert!(!stderr.contains("consent"), "{stderr}");
        }
    }
    assert!(!dir.path().join("other.manifest").exists());
    assert!(!dir.path().join("a-directory/tiny.receipt.json").exists());
    // A file where fetch's download directory belongs is left as it is.
    let before = std::fs::read(dir.path().join("tiny.slm")).unwrap();
    let out = fetch_from_nobody(dir.path(), "tiny.slm", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 3, "{stderr}");
    assert!(stderr.contains("tiny.slm is not a directory"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("tiny.slm")).unwrap(), before);
}
