//! `follow` through the binary, on a loopback DHT of `dht-node`: three
//! followers get version 1 from the peer the channel names; version 2,
//! which shares 90% of its chunks with version 1, moves only its changed
//! chunks, the rest copied from version 1 on each follower's disk; a
//! withdrawn version 1 is said with its reason route, left in place, and
//! a fetch of it warns before consent. Refused: a replayed older channel
//! item, and a manifest the followed key did not sign.

mod resume_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use minimodel_swarm::dht::{Bootstrap, Discovery, DiscoveryConfig};
use minimodel_verifier::channel::{Channel, ChannelPeer, Latest, sign_channel};
use minimodel_verifier::ids::ModelId;
use minimodel_verifier::signing::keyfile::read_secret_key_file;
use minimodel_verifier::{Manifest, Sha256Digest};
use serde_json::Value;

use resume_support::{Artifact, Proc, bin, data_home, ok, run};

const MODEL: &str = "tiny";
const CHUNK: &str = "64KiB";
const CHUNK_BYTES: usize = 64 * 1024;
const REASON: &str = "https://example.org/takedown/tiny-v1";

/// Starts `dht-node` on loopback; returns it with its address.
fn dht_node(root: &Path) -> (Proc, String) {
    let mut node = Proc::spawn(root, &["dht-node", "--listen", "127.0.0.1:0", "--json"]);
    assert!(
        node.wait_for("the dht-node event", |events| events
            .iter()
            .any(|e| e["event"] == "dht-node")),
        "{}",
        node.stderr()
    );
    let addr = node.event("dht-node").unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    (node, addr)
}

fn sha256_hex(path: &Path) -> String {
    Sha256Digest::of(&std::fs::read(path).unwrap()).to_hex()
}

/// Writes the manifest of `slm` for MODEL, signed by `key` as
/// `NAME.manifest`.
fn signed_manifest(root: &Path, slm: &Path, name: &str, key: &str, publisher: &str) -> Artifact {
    let unsigned = root.join(format!("{name}.unsigned"));
    let manifest_path = root.join(format!("{name}.manifest"));
    ok(
        root,
        &[
            "manifest",
            slm.to_str().unwrap(),
            "--model-id",
            MODEL,
            "--publisher-id",
            publisher,
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            CHUNK,
            // Fixed-size chunks: version 2 changes bytes in place, chunk by
            // chunk (following a model cut at its parts: the lab's
            // follow-homes, and reuse_versions).
            "--chunk-scheme",
            "fixed-size-merkle-v0",
            "-o",
            unsigned.to_str().unwrap(),
        ],
    );
    ok(
        root,
        &[
            "sign",
            unsigned.to_str().unwrap(),
            "--key",
            key,
            "-o",
            manifest_path.to_str().unwrap(),
        ],
    );
    let manifest = Manifest::parse_bytes(&std::fs::read(&manifest_path).unwrap()).unwrap();
    Artifact {
        model_id: MODEL.to_owned(),
        slm: slm.to_owned(),
        manifest_path,
        chunk_size: u64::from(manifest.chunks.chunk_size),
        manifest,
        bytes: std::fs::read(slm).unwrap(),
    }
}

/// A seeder of `artifact`; returns it with its `PEER_ID@HOST:PORT`.
fn seeder(root: &Path, artifact: &Artifact, name: &str) -> (Proc, String) {
    let offer = root.join(format!("{name}.offer.json"));
    let mut seed = Proc::spawn(
        root,
        &[
            "seed",
            artifact.manifest_path.to_str().unwrap(),
            artifact.slm.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-port-mapping",
            "--yes",
            "--json",
            "--offer",
            offer.to_str().unwrap(),
        ],
    );
    assert!(
        seed.wait_for("the seeder's offer", |_| offer.exists()),
        "{}",
        seed.stderr()
    );
    let offer: Value = serde_json::from_slice(&std::fs::read(&offer).unwrap()).unwrap();
    let peer = format!(
        "{}@{}",
        offer["peer_id"].as_str().unwrap(),
        offer["addrs"][0].as_str().unwrap()
    );
    (seed, peer)
}

/// `publish MANIFEST --key pub.key --peer PEER extra...` on `node`.
fn publish(root: &Path, node: &str, manifest: &Path, peer: &str, extra: &[&str]) {
    let mut args = vec![
        "publish",
        manifest.to_str().unwrap(),
        "--key",
        "pub.key",
        "--peer",
        peer,
        "--dht-bootstrap",
        node,
        "--channels",
        "publisher",
    ];
    args.extend_from_slice(extra);
    ok(root, &args);
}

/// The channels directory of `follower`: the default place of its data
/// directory, so that a `fetch` run by the test finds its kept item.
fn channels(root: &Path) -> PathBuf {
    data_home(root).join("minimodel").join("channels")
}

/// One `follow` round of `follower` (its own DIR `follower`) on `node`,
/// `extra` added, trusting the test mirror's authority; its exit code,
/// stdout and stderr.
fn follow(root: &Path, node: &str, follower: &str, extra: &[&str]) -> (i32, Vec<String>, String) {
    let ca = root.join("test-ca.pem");
    std::fs::write(&ca, minimodel_swarm::mirror::test_server::TEST_CA_PEM).unwrap();
    let mut command = Command::new(bin());
    command
        .current_dir(root)
        .env("XDG_DATA_HOME", data_home(root))
        .env("LOCALAPPDATA", data_home(root))
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .args([
            "follow",
            "pub.key.pub",
            "--model-id",
            MODEL,
            "-o",
            follower,
            "--yes",
            "--dht-bootstrap",
            node,
            "--channels",
        ])
        .arg(channels(root).join(follower))
        .args(extra);
    let mut proc = Proc::spawn_group(&mut command);
    let status = proc.wait();
    (
        status.code().expect("ended by itself"),
        proc.stdout(),
        proc.stderr(),
    )
}

/// The chunk list of `bytes` (`docs/merkle.md`): the SHA-256 of each
/// chunk, a line each.
fn chunk_list(bytes: &[u8]) -> Vec<u8> {
    bytes
        .chunks(CHUNK_BYTES)
        .flat_map(|chunk| format!("{}\n", Sha256Digest::of(chunk).to_hex()).into_bytes())
        .collect()
}

fn receipt(root: &Path, follower: &str, manifest_hex: &str) -> Value {
    let path = root
        .join(follower)
        .join(manifest_hex)
        .join(format!("{MODEL}.receipt.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sum(receipt: &Value, what: &str) -> u64 {
    receipt["source"][what].as_array().map_or(0, |list| {
        list.iter().map(|e| e["bytes"].as_u64().unwrap()).sum()
    })
}

/// Version 1 (5 MiB: 80 chunks of 64 KiB) and version 2, the same size,
/// with 8 of the 80 chunks changed in place (every tenth from chunk 5):
/// 90% of the chunks shared. Both signed by `pub.key`.
fn two_versions(root: &Path) -> (Artifact, Artifact, Vec<u32>) {
    ok(root, &["key", "new", "pub.key"]);
    let made = Artifact::make(root, "v1", MODEL, "5MiB", CHUNK, 71);
    let v1 = signed_manifest(root, &made.slm, "v1", "pub.key", "acme");
    assert_eq!(v1.chunk_count(), 80);
    let changed: Vec<u32> = (5..v1.chunk_count()).step_by(10).collect();
    assert_eq!(changed.len(), 8);
    let mut bytes = v1.bytes.clone();
    for &chunk in &changed {
        // Tensor data, which the container does not checksum: the file
        // stays a valid `.slm`.
        let at = chunk as usize * CHUNK_BYTES + CHUNK_BYTES / 2;
        for byte in &mut bytes[at..at + 100] {
            *byte ^= 0x5a;
        }
    }
    let slm = root.join("v2.slm");
    std::fs::write(&slm, &bytes).unwrap();
    let v2 = signed_manifest(root, &slm, "v2", "pub.key", "acme");
    (v1, v2, changed)
}

#[test]
fn followers_get_each_version_moving_only_what_changed_and_hear_of_a_withdrawal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (v1, v2, changed) = two_versions(root);
    let v1_hex = sha256_hex(&v1.manifest_path);
    let v2_hex = sha256_hex(&v2.manifest_path);
    let (_node, node) = dht_node(root);
    let (_seed1, peer1) = seeder(root, &v1, "v1");
    publish(root, &node, &v1.manifest_path, &peer1, &[]);

    let followers = ["f1", "f2", "f3"];
    for follower in followers {
        let (code, stdout, stderr) = follow(root, &node, follower, &[]);
        assert_eq!(code, 0, "{stdout:?} {stderr}");
        let got = root.join(follower).join(&v1_hex).join("tiny.slm");
        assert_eq!(std::fs::read(&got).unwrap(), v1.bytes, "{follower}");
        assert_eq!(receipt(root, follower, &v1_hex)["manifest_sha256"], v1_hex);
    }
    // A second round has nothing to do.
    let (code, stdout, stderr) = follow(root, &node, "f1", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.iter().any(|line| line.starts_with("up to date")),
        "{stdout:?}"
    );

    // Version 2, seeded, published; its chunk list beside a web copy, and
    // from the seeder.
    let (_seed2, peer2) = seeder(root, &v2, "v2");
    publish(root, &node, &v2.manifest_path, &peer2, &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mirror = runtime
        .block_on(minimodel_swarm::mirror::test_server::TestMirror::start(
            v2.bytes.clone().into(),
            Some(chunk_list(&v2.bytes).into()),
        ))
        .unwrap();
    let kept = u64::from(v2.chunk_count()) - changed.len() as u64;
    assert_eq!(kept, 72);
    let url = mirror.url();
    for follower in followers {
        // The last follower is given no web copy: the chunk list comes
        // from the publisher's peer.
        let web = ["--mirror", url.as_str()];
        let extra: &[&str] = if follower == "f3" { &[] } else { &web };
        let (code, stdout, stderr) = follow(root, &node, follower, extra);
        assert_eq!(code, 0, "{stdout:?} {stderr}");
        let from = if follower == "f3" {
            "the new version's chunk list is read from peer "
        } else {
            "the new version's chunk list is read from https://"
        };
        assert!(stderr.contains(from), "{follower}: {stderr}");
        let got = root.join(follower).join(&v2_hex).join("tiny.slm");
        assert_eq!(std::fs::read(&got).unwrap(), v2.bytes, "{follower}");
        let receipt = receipt(root, follower, &v2_hex);
        let source = &receipt["source"];
        assert_eq!(source["chunks_reused"], kept, "{receipt}");
        assert_eq!(source["chunks_fetched"], changed.len() as u64, "{receipt}");
        // Only the changed chunks came over the network (from the peer
        // and the web copy together).
        let moved = sum(&receipt, "peers") + sum(&receipt, "mirrors");
        assert_eq!(moved, v2.bytes_of(&changed), "{receipt}");
        eprintln!(
            "{follower}: {} chunks reused, {} fetched: {} bytes from peers, {} from the web copy",
            source["chunks_reused"],
            source["chunks_fetched"],
            sum(&receipt, "peers"),
            sum(&receipt, "mirrors")
        );
        // Version 1 stays where it was.
        let old = root.join(follower).join(&v1_hex).join("tiny.slm");
        assert_eq!(std::fs::read(old).unwrap(), v1.bytes);
    }

    // Withdrawing the version just published is refused with what to do
    // instead; nothing is published.
    let (code, _, stderr) = run(
        root,
        &[
            "publish",
            v2.manifest_path.to_str().unwrap(),
            "--key",
            "pub.key",
            "--withdraw",
            &v2_hex,
            "--reason-route",
            REASON,
            "--dht-bootstrap",
            &node,
            "--channels",
            "publisher",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("both published and withdrawn by this update")
            && stderr.contains(&format!("with --withdraw {v2_hex}")),
        "{stderr}"
    );
    // Naming another version with no --peer is refused: no follower
    // could fetch it.
    let (code, _, stderr) = run(
        root,
        &[
            "publish",
            v1.manifest_path.to_str().unwrap(),
            "--key",
            "pub.key",
            "--dht-bootstrap",
            &node,
            "--channels",
            "publisher",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("the channel would name no peer for tiny"),
        "{stderr}"
    );
    // Version 1 withdrawn, with no --peer: version 2 keeps its peer (a
    // new follower still gets it), each follower is told, with the route,
    // and keeps its copy.
    ok(
        root,
        &[
            "publish",
            v2.manifest_path.to_str().unwrap(),
            "--key",
            "pub.key",
            "--withdraw",
            &v1_hex,
            "--reason-route",
            REASON,
            "--dht-bootstrap",
            &node,
            "--channels",
            "publisher",
        ],
    );
    let (code, stdout, stderr) = follow(root, &node, "late", &[]);
    assert_eq!(code, 0, "{stdout:?} {stderr}");
    let got = root.join("late").join(&v2_hex).join("tiny.slm");
    assert_eq!(std::fs::read(&got).unwrap(), v2.bytes);
    // With --json, what was said is in events too.
    let (code, stdout, stderr) = follow(root, &node, "f1", &["--json"]);
    assert_eq!(code, 0, "{stdout:?} {stderr}");
    let events: Vec<Value> = (stdout.iter())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let of = |name: &str| events.iter().find(|e| e["event"] == name).cloned();
    let withdrawn = of("withdrawn-here").expect("a withdrawn-here event");
    assert_eq!(withdrawn["manifest_sha256"], v1_hex.as_str());
    assert_eq!(withdrawn["reason_route"], REASON);
    let up_to_date = of("up-to-date").expect("an up-to-date event");
    assert_eq!(up_to_date["manifest_sha256"], v2_hex.as_str());
    assert_eq!(up_to_date["model_id"], MODEL);
    for follower in followers {
        let (code, stdout, stderr) = follow(root, &node, follower, &[]);
        assert_eq!(code, 0, "{stdout:?} {stderr}");
        assert!(
            stdout.iter().any(|line| line.contains(&format!(
                "version {v1_hex} in {} is withdrawn by its publisher: reason at {REASON}",
                Path::new(follower).join(&v1_hex).display()
            ))),
            "{stdout:?}"
        );
        assert!(stdout.iter().any(|line| line.starts_with("up to date")));
        assert!(root.join(follower).join(&v1_hex).join("tiny.slm").exists());
    }
    // A fetch of version 1 on a machine that keeps the channel warns
    // before consent (none given: exit 5).
    let kept_item = channels(root).join("f1");
    let default_place = channels(root);
    for entry in std::fs::read_dir(&kept_item).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), default_place.join(entry.file_name())).unwrap();
    }
    let (code, _, stderr) = run(
        root,
        &[
            "fetch",
            v1.manifest_path.to_str().unwrap(),
            "--peer",
            &peer1,
            "-o",
            "elsewhere",
        ],
    );
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "withdrew this manifest (sha256 {v1_hex}): reason at {REASON}"
        )),
        "{stderr}"
    );
}

#[test]
fn a_replayed_older_item_and_a_manifest_the_key_did_not_sign_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (v1, v2, _) = two_versions(root);
    let (_node, node) = dht_node(root);
    let (_seed1, peer1) = seeder(root, &v1, "v1");
    publish(root, &node, &v1.manifest_path, &peer1, &[]);
    publish(root, &node, &v2.manifest_path, &peer1, &[]);
    let (code, stdout, stderr) = follow(root, &node, "f1", &["--give-up-after", "2s"]);
    // Sequence number 2 seen (the fetch itself fails: nobody serves v2).
    assert_eq!(code, 1, "{stdout:?} {stderr}");
    assert!(
        stdout.iter().any(|line| line.contains("sequence number 2")),
        "{stdout:?} {stderr}"
    );

    // The first item again, on another DHT: refused by its reason.
    let (_other, other) = dht_node(root);
    ok(
        root,
        &[
            "publish",
            v1.manifest_path.to_str().unwrap(),
            "--key",
            "pub.key",
            "--peer",
            &peer1,
            "--dht-bootstrap",
            &other,
            "--channels",
            "elsewhere",
        ],
    );
    let (code, _, stderr) = follow(root, &other, "f1", &[]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("sequence number 1 is below 2"), "{stderr}");
    assert!(!root.join("f1").join(sha256_hex(&v1.manifest_path)).exists());

    // An item the publisher signed that names a manifest another key
    // signed (served by a peer under its own SHA-256): refused before
    // any artifact byte moves.
    ok(root, &["key", "new", "other.key"]);
    let foreign = signed_manifest(root, &v1.slm, "foreign", "other.key", "someone-else");
    let (_seed3, peer3) = seeder(root, &foreign, "foreign");
    let secret = read_secret_key_file(&std::fs::read(root.join("pub.key")).unwrap()).unwrap();
    let (id, addr) = peer3.split_once('@').unwrap();
    let peer = ChannelPeer {
        id: *id.parse::<minimodel_wire::PeerId>().unwrap().as_bytes(),
        addrs: vec![addr.parse().unwrap()],
    };
    let mut channel = Channel {
        models: Default::default(),
        withdrawn: Vec::new(),
    };
    channel.models.insert(
        ModelId::new(MODEL).unwrap(),
        Latest {
            manifest_sha256: Sha256Digest::of(&std::fs::read(&foreign.manifest_path).unwrap()),
            peers: vec![peer],
        },
    );
    let item = sign_channel(&secret, 3, &channel).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let dht = Discovery::start(DiscoveryConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            bootstrap: Bootstrap::Nodes(vec![node.parse().unwrap()]),
            lookup_timeout: Duration::from_secs(5),
            ..DiscoveryConfig::default()
        })
        .await
        .unwrap();
        dht.put_channel(&item, Some(2)).await.is_ok()
    });
    assert!(stored);
    let (code, _, stderr) = follow(root, &node, "f1", &[]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("not signed by the key"), "{stderr}");
    assert!(
        !root
            .join("f1")
            .join(sha256_hex(&foreign.manifest_path))
            .exists()
    );
}
