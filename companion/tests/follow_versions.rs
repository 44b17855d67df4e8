//! An `auto` follow in the companion, through its API, on a loopback DHT
//! of one in-process node, moves only what changed: the follower holds
//! version 1 of a model (fetched by the follow); the publisher publishes
//! version 2, which shares 18 of its 20 chunks with version 1, on a peer
//! and on the follow's web mirror, with its chunk list beside it. The
//! companion fetches version 2 by itself into a directory of its own
//! beside version 1, copies the 18 shared chunks from version 1 (each
//! checked with its proof), fetches only the 2 changed ones, and its
//! receipt says so; version 1 stays delivered, in place.
//!
//! The mirror is the test mirror, whose test authority the
//! companion trusts the way a user trusts an extra one: `SSL_CERT_FILE`
//! names its PEM file. The test runs itself again as a child process with
//! that environment.

mod support;

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use minimodel_swarm::mirror::test_server::TestMirror;
use minimodel_swarm::ticket::Ticket;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{Channel, ChannelPeer, Latest, sign_channel};
use minimodel_verifier::describe::{PublisherFields, describe_file};
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::manifest::sign_manifest;
use serde_json::{Value, json};
use support::{Running, config, fixture, loopback_dht, try_start, with_test_roots};

const TEST: &str = "a_followed_version_beside_the_old_one_moves_only_its_changed_chunks";
/// Set in the child: the directory it works in.
const CHILD: &str = "MINIMODEL_TEST_FOLLOW_VERSIONS_DIR";
const CHUNK: usize = 64 * 1024;
/// Version 2's changed chunks, of 20.
const CHANGED: [usize; 2] = [5, 15];

#[test]
fn a_followed_version_beside_the_old_one_moves_only_its_changed_chunks() {
    if let Some(dir) = with_test_roots(TEST, CHILD) {
        follow_two_versions(&dir);
    }
}

/// A companion on `library` joined to the DHT at `node`, looking its
/// follows up every second (hourly in the product).
fn companion(library: &Path, node: SocketAddrV4) -> Running {
    let mut config = config(library);
    config.dht_bootstrap = vec![node];
    config.follow_cadence = minimodel_companion::follow::Cadence {
        period: Duration::from_secs(1),
        min_interval: Duration::from_secs(1),
    };
    try_start(config).expect("the companion starts")
}

/// `running`'s library items, waited for until `done` holds.
fn wait_library(running: &Running, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, library) = running.get("/api/v1/library");
        let items = library["items"].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: never: {library:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn follow_two_versions(root: &Path) {
    let secret = SecretKey::from_seed(&[21; 32]);
    let publisher = secret.public_key();
    let files = root.join("files");
    let v1 = fixture(&files, "tiny", 20 * CHUNK as u64, CHUNK as u32);
    assert_eq!(v1.manifest.chunks.chunk_count, 20);
    std::fs::write(
        &v1.manifest_path,
        sign_manifest(&v1.manifest, &secret).to_text(),
    )
    .unwrap();
    let v1_sha256 = Sha256Digest::of(&std::fs::read(&v1.manifest_path).unwrap());

    // Version 2: two chunks changed in place, in tensor data (which the
    // container does not checksum): still a valid `.slm`.
    let mut bytes = std::fs::read(&v1.slm).unwrap();
    for chunk in CHANGED {
        for byte in &mut bytes[chunk * CHUNK + CHUNK / 2..][..100] {
            *byte ^= 0x5a;
        }
    }
    let v2_dir = root.join("v2");
    std::fs::create_dir_all(&v2_dir).unwrap();
    let v2_slm = v2_dir.join("tiny.slm");
    std::fs::write(&v2_slm, &bytes).unwrap();
    let fields = PublisherFields::new(
        "tiny".parse().unwrap(),
        "acme".parse().unwrap(),
        "https://example.org/license".parse().unwrap(),
        "https://example.org/evidence".parse().unwrap(),
    );
    let described = describe_file(&v2_slm, fields, Some(CHUNK as u32), &|_| {}).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The follow's mirror: version 1 first, then version 2.
    let web = runtime
        .block_on(TestMirror::start(
            std::fs::read(&v1.slm).unwrap().into(),
            Some(v1.chunk_list.clone().into_bytes().into()),
        ))
        .expect("the test mirror starts");
    let v2_manifest = described.manifest;
    let v2_manifest_path = v2_dir.join("tiny.manifest");
    std::fs::write(
        &v2_manifest_path,
        sign_manifest(&v2_manifest, &secret).to_text(),
    )
    .unwrap();
    let v2_sha256 = Sha256Digest::of(&std::fs::read(&v2_manifest_path).unwrap());

    let (node, client) = loopback_dht(&runtime);
    let seeder = companion(&root.join("seeder"), node.local_addr());
    let share = |manifest: &Path, file: &Path| {
        let (status, share) = seeder.send(
            "POST",
            "/api/v1/shares",
            &json!({
                "manifest_path": manifest,
                "file": file,
                "consent": {"serve": true, "trust_key": true},
            }),
        );
        assert_eq!(status, 201, "{share}");
        let serving = seeder.wait_item(
            share["id"].as_str().unwrap(),
            Duration::from_secs(60),
            |item| item["state"] == "serving" && item["serving"]["ticket"].is_string(),
        );
        let ticket: Ticket = serving["serving"]["ticket"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        ChannelPeer {
            id: *ticket.peers[0].id.as_bytes(),
            addrs: ticket.peers[0].addrs.clone(),
        }
    };
    let peer = share(&v1.manifest_path, &v1.slm);
    let mut channel = Channel::default();
    channel.models.insert(
        "tiny".parse().unwrap(),
        Latest {
            manifest_sha256: v1_sha256,
            peers: vec![peer],
        },
    );
    let first = sign_channel(&secret, 1, &channel).unwrap();
    runtime.block_on(client.put_channel(&first, None)).unwrap();

    // The follower follows with `auto`: version 1 is fetched by itself.
    let follower = companion(&root.join("follower"), node.local_addr());
    let (status, body) = follower.send(
        "POST",
        "/api/v1/follows",
        &json!({
            "publisher_key": publisher.to_string(),
            "model_id": "tiny",
            "policy": "auto",
            "consent": {"fetch": true, "trust_key": true},
            "mirrors": [web.url()],
        }),
    );
    assert_eq!(status, 201, "{body}");
    let items = wait_library(&follower, "version 1 delivered", |items| {
        items.len() == 1 && items[0]["state"] == "done"
    });
    let v1_file = items[0]["file"].as_str().unwrap().to_owned();
    let v1_id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        Path::new(&v1_file),
        follower.library.join("downloads").join("tiny.slm")
    );

    // Version 2 is published: on the mirror, and the seeder shares it,
    // and the channel names it.
    web.replace(
        bytes.clone().into(),
        Some(described.chunk_list.clone().into_bytes().into()),
        "\"v2\"",
    );
    let served_before = web.body_bytes();
    let peer = share(&v2_manifest_path, &v2_slm);
    channel.models.insert(
        "tiny".parse().unwrap(),
        Latest {
            manifest_sha256: v2_sha256,
            peers: vec![peer],
        },
    );
    let second = sign_channel(&secret, 2, &channel).unwrap();
    runtime
        .block_on(client.put_channel(&second, Some(1)))
        .unwrap();
    let items = wait_library(&follower, "version 2 delivered", |items| {
        items.len() == 2 && items.iter().all(|item| item["state"] == "done")
    });
    let v2_item = items
        .iter()
        .find(|item| item["id"] != v1_id.as_str())
        .unwrap();
    let v2_file = Path::new(v2_item["file"].as_str().unwrap());
    let v2_home = follower.library.join("downloads").join(v2_sha256.to_hex());
    assert_eq!(v2_file, v2_home.join("tiny.slm"));
    assert_eq!(std::fs::read(v2_file).unwrap(), bytes);
    // Version 1 stays delivered, unchanged, where it was.
    assert_eq!(
        std::fs::read(&v1_file).unwrap(),
        std::fs::read(&v1.slm).unwrap()
    );
    assert_eq!(
        items
            .iter()
            .find(|item| item["id"] == v1_id.as_str())
            .unwrap()["file"],
        v1_file.as_str()
    );

    // The item says where the new chunk list came from, as `follow` does.
    let reuse = v2_item["reuse"].as_str().unwrap_or_default();
    assert!(
        reuse.starts_with("the new version's chunk list is read from https://")
            && reuse.ends_with("the chunks older versions here share are copied first"),
        "{v2_item:#}"
    );
    assert_eq!(
        items
            .iter()
            .find(|item| item["id"] == v1_id.as_str())
            .unwrap()["reuse"],
        Value::Null,
        "version 1 had nothing to reuse"
    );

    // Only what changed moved: the receipt counts 18 chunks reused, and
    // the 2 changed ones verified from the seeder and the mirror.
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(v2_home.join("tiny.receipt.json")).unwrap()).unwrap();
    let source = &receipt["source"];
    assert_eq!(source["chunks_reused"], 18, "{receipt:#}");
    let sum = |what: &str| -> u64 {
        source[what].as_array().map_or(0, |list| {
            list.iter().map(|e| e["bytes"].as_u64().unwrap()).sum()
        })
    };
    assert_eq!(
        sum("peers") + sum("mirrors"),
        (CHANGED.len() * CHUNK) as u64,
        "{receipt:#}"
    );
    // The mirror may also have sent ranges that counted for nothing: one
    // asked beside the peer and cancelled when the peer's copy came
    // first, one asked again after a timeout on a busy machine. Whatever
    // those were, it sent less than half of what was reused.
    let from_mirror = web.body_bytes() - served_before;
    let reused = ((20 - CHANGED.len()) * CHUNK) as u64;
    assert!(
        from_mirror < reused / 2,
        "the mirror sent {from_mirror} bytes"
    );

    // Version 1 withdrawn: its item says so and no longer offers the file
    // for use (version 2's still does).
    channel
        .withdrawn
        .push(minimodel_verifier::channel::Withdrawal {
            manifest_sha256: v1_sha256,
            reason_route: minimodel_verifier::route::Route::parse("https://example.org/why")
                .unwrap(),
        });
    let third = sign_channel(&secret, 3, &channel).unwrap();
    runtime
        .block_on(client.put_channel(&third, Some(2)))
        .unwrap();
    let items = wait_library(&follower, "version 1 withdrawn", |items| {
        items
            .iter()
            .any(|item| item["id"] == v1_id.as_str() && item["state"] == "withdrawn")
    });
    let v1_item = items.iter().find(|i| i["id"] == v1_id.as_str()).unwrap();
    assert!(v1_item["handoff"].is_null(), "{v1_item:#}");
    let v2_item = items.iter().find(|i| i["id"] != v1_id.as_str()).unwrap();
    assert!(
        v2_item["handoff"]["text"]
            .as_str()
            .is_some_and(|text| text.starts_with("Verified. To use it")),
        "{v2_item:#}"
    );
    drop((node, client));
}
