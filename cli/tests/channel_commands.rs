//! `publish` and `channel` through the binary, on a loopback DHT of
//! `dht-node` processes: versions and a withdrawal published in turn are
//! read back in order; an older item replayed on another DHT is refused;
//! an item forged under the key is never shown, and the publisher's own
//! item that is not a channel is refused by both commands; a manifest the
//! key did not sign is refused before the DHT is asked; every argument
//! parser refuses what it should.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use minimodel_swarm::dht::{Bootstrap, Discovery, DiscoveryConfig};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{CHANNEL_SALT, ChannelItem, signable};
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::keyfile::read_secret_key_file;
use serde_json::Value;
use support::*;

const MODEL: &str = "tiny";
const PEER: &str = "7jbgqo6i2fdzqpihyjyzcrpyr47wzrkv5ru3yfdbhtrbbqrx5wsa@127.0.0.1:4433";

/// Starts `dht-node --listen 127.0.0.1:0 --json` (a DHT of its own) and
/// returns it with its address.
fn dht_node(dir: &Path) -> (Running, String) {
    let (node, mut stdout) =
        spawn_with_stdout(dir, &["dht-node", "--listen", "127.0.0.1:0", "--json"]);
    let events = read_until(&mut stdout, |e| e["event"] == "dht-node");
    let addr = events
        .last()
        .and_then(|e| e["addr"].as_str())
        .unwrap_or_else(|| panic!("a dht-node event: {events:?}"))
        .to_owned();
    (node, addr)
}

fn sha256_hex(path: &Path) -> String {
    Sha256Digest::of(&std::fs::read(path).unwrap()).to_hex()
}

/// A key pair `NAME.key`, `NAME.key.pub`.
fn key(dir: &Path, name: &str) {
    ok(&minimodel(dir, &["key", "new", &format!("{name}.key")]));
}

/// `tiny.manifest` (unsigned), `v1.manifest` and `v2.manifest` signed by
/// `pub.key` (two manifests of one model: other chunk sizes), and
/// `foreign.manifest` signed by `other.key`.
fn prepare_versions(dir: &Path) {
    prepare(dir, MODEL, "256KiB", "64KiB");
    key(dir, "pub");
    key(dir, "other");
    let sign = |from: &str, key: &str, to: &str| {
        ok(&minimodel(dir, &["sign", from, "--key", key, "-o", to]));
    };
    sign("tiny.manifest", "pub.key", "v1.manifest");
    sign("tiny.manifest", "other.key", "foreign.manifest");
    ok(&minimodel(
        dir,
        &[
            "manifest",
            "tiny.slm",
            "--model-id",
            MODEL,
            "--publisher-id",
            "acme",
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            "32KiB",
            "-o",
            "tiny2.manifest",
        ],
    ));
    sign("tiny2.manifest", "pub.key", "v2.manifest");
}

/// Runs `cmd args... --json --dht-bootstrap NODE --channels DIR` and
/// returns its output.
fn run(dir: &Path, node: &str, channels: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--json", "--dht-bootstrap", node, "--channels", channels]);
    minimodel(dir, &all)
}

/// The one event named `name` of a successful run.
fn event(output: &std::process::Output, name: &str) -> Value {
    ok(output);
    let events = json_lines(output);
    let found: Vec<&Value> = events.iter().filter(|e| e["event"] == name).collect();
    assert_eq!(found.len(), 1, "{events:?}");
    found[0].clone()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `error` event of a failed `--json` run, as text.
fn error_text(output: &std::process::Output) -> String {
    let events = json_lines(output);
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "error", "{events:?} {}", stderr(output));
    format!("{} {}", last["error"], last["hint"])
}

#[test]
fn versions_and_a_withdrawal_are_read_in_order_and_an_older_item_is_refused_after() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare_versions(root);
    let (_node, node) = dht_node(root);
    let v1 = sha256_hex(&root.join("v1.manifest"));
    let v2 = sha256_hex(&root.join("v2.manifest"));
    let publish = |manifest: &str, extra: &[&str]| {
        let mut args = vec!["publish", manifest, "--key", "pub.key", "--peer", PEER];
        args.extend_from_slice(extra);
        event(&run(root, &node, "publisher", &args), "channel-published")
    };
    let read = || {
        event(
            &run(root, &node, "reader", &["channel", "pub.key.pub"]),
            "channel",
        )
    };

    let put = publish("v1.manifest", &[]);
    assert_eq!(put["seq"], 1);
    assert_eq!(put["cas"], Value::Null);
    assert!(put["stored_at"].as_u64().unwrap() >= 1, "{put}");
    let seen = read();
    assert_eq!(seen["seq"], 1);
    assert_eq!(seen["last_seen_seq"], Value::Null);
    assert_eq!(seen["target"], put["target"]);
    assert_eq!(seen["models"][0]["model_id"], MODEL);
    assert_eq!(seen["models"][0]["manifest_sha256"], v1);
    assert_eq!(seen["models"][0]["peers"][0], PEER);
    assert_eq!(seen["withdrawn"], serde_json::json!([]));

    let put = publish("v2.manifest", &[]);
    assert_eq!(
        (put["seq"].clone(), put["cas"].clone()),
        (2.into(), 1.into())
    );
    let seen = read();
    assert_eq!(seen["seq"], 2);
    assert_eq!(seen["last_seen_seq"], 1);
    assert_eq!(seen["models"][0]["manifest_sha256"], v2);

    let reason = "https://example.org/takedown/1";
    let put = publish(
        "v2.manifest",
        &["--withdraw", &v1, "--reason-route", reason],
    );
    assert_eq!(put["seq"], 3);
    let seen = read();
    assert_eq!(seen["seq"], 3);
    assert_eq!(seen["models"][0]["manifest_sha256"], v2);
    assert_eq!(
        seen["withdrawn"],
        serde_json::json!([{ "manifest_sha256": v1, "reason_route": reason }])
    );
    // Said in words too.
    let words = ok(&minimodel(
        root,
        &[
            "channel",
            "pub.key.pub",
            "--model-id",
            MODEL,
            "--dht-bootstrap",
            &node,
            "--channels",
            "reader",
        ],
    ));
    assert!(
        words.contains("sequence number 3 (as seen before)"),
        "{words}"
    );
    assert!(words.contains(&format!(
        "withdrawn manifest sha256 {v1}: reason at {reason}"
    )));
    // Publishing a withdrawn manifest again is refused.
    let again = run(
        root,
        &node,
        "publisher",
        &["publish", "v1.manifest", "--key", "pub.key"],
    );
    assert_eq!(code(&again), 3, "{}", stderr(&again));
    assert!(error_text(&again).contains("withdrawn"));

    // The first item, as someone stored it again on another DHT (the
    // publisher's first publish, where nothing newer was ever put): the
    // reader saw sequence number 3, and refuses it.
    let (_other, other) = dht_node(root);
    let replayed = event(
        &run(
            root,
            &other,
            "elsewhere",
            &["publish", "v1.manifest", "--key", "pub.key", "--peer", PEER],
        ),
        "channel-published",
    );
    assert_eq!(replayed["seq"], 1);
    let refused = run(root, &other, "reader", &["channel", "pub.key.pub"]);
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    let text = error_text(&refused);
    assert!(text.contains("sequence number 1 is below 3"), "{text}");
    assert!(text.contains("replayed"), "{text}");
    // The publisher, whose machine keeps its newest item, goes on from it
    // on that DHT: sequence number 4, without CAS on the older item there.
    let put = event(
        &run(
            root,
            &other,
            "publisher",
            &["publish", "v2.manifest", "--key", "pub.key"],
        ),
        "channel-published",
    );
    assert_eq!(
        (put["seq"].clone(), put["cas"].clone()),
        (4.into(), Value::Null)
    );
    let seen = event(
        &run(root, &other, "reader", &["channel", "pub.key.pub"]),
        "channel",
    );
    assert_eq!(
        (seen["seq"].clone(), seen["last_seen_seq"].clone()),
        (4.into(), 3.into())
    );
    assert_eq!(seen["withdrawn"][0]["manifest_sha256"], v1);
}

/// Signs `message` with `key` as Ed25519 does (RFC 8032), through `ring`
/// from the key's seed: any bytes, which the verifier's own API never
/// signs raw.
fn sign(key: &SecretKey, message: &[u8]) -> [u8; 64] {
    let text = key.to_text();
    let base32 = text.strip_prefix("mmsk1").unwrap();
    let mut bits = 0u64;
    let mut count = 0;
    let mut seed = Vec::new();
    for c in base32.bytes() {
        let value = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {c}"),
        };
        bits = (bits << 5) | u64::from(value);
        count += 5;
        if count >= 8 {
            count -= 8;
            seed.push((bits >> count) as u8);
        }
    }
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed[..32]).unwrap();
    pair.sign(message).as_ref().try_into().unwrap()
}

/// Puts `item` on the DHT of `node` straight through the swarm library.
fn put(node: &str, item: &ChannelItem) -> bool {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dht = Discovery::start(DiscoveryConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            bootstrap: Bootstrap::Nodes(vec![node.parse().unwrap()]),
            lookup_timeout: Duration::from_secs(5),
            ..DiscoveryConfig::default()
        })
        .await
        .unwrap();
        dht.put_channel(item, None).await.is_ok()
    })
}

#[test]
fn a_forged_item_is_never_shown_and_the_publishers_junk_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare_versions(root);
    let (_node, node) = dht_node(root);
    let secret = read_secret_key_file(&std::fs::read(root.join("pub.key")).unwrap()).unwrap();
    let other = read_secret_key_file(&std::fs::read(root.join("other.key")).unwrap()).unwrap();
    let value = b"d1:fi1e1:mde1:wlee".to_vec();

    // Under the publisher's key, signed by another key: no DHT node
    // stores it, and `channel` finds nothing to show.
    let forged = ChannelItem {
        key: *secret.public_key().as_bytes(),
        seq: 7,
        value: value.clone(),
        signature: sign(&other, &signable(CHANNEL_SALT, 7, &value)),
        salt: CHANNEL_SALT.to_vec(),
    };
    assert!(!put(&node, &forged), "a DHT node stored a forged item");
    let nothing = run(root, &node, "reader", &["channel", "pub.key.pub"]);
    assert_eq!(code(&nothing), 1, "{}", stderr(&nothing));
    assert!(error_text(&nothing).contains("no item of the channel"));

    // Signed by the publisher, but not a channel: both commands name why.
    let junk_value = b"5:hello".to_vec();
    let junk = ChannelItem {
        key: *secret.public_key().as_bytes(),
        seq: 7,
        signature: sign(&secret, &signable(CHANNEL_SALT, 7, &junk_value)),
        value: junk_value,
        salt: CHANNEL_SALT.to_vec(),
    };
    assert!(put(&node, &junk));
    let refused = run(root, &node, "reader", &["channel", "pub.key.pub"]);
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    assert!(
        error_text(&refused).contains("malformed value"),
        "{}",
        error_text(&refused)
    );
    let refused = run(
        root,
        &node,
        "publisher",
        &["publish", "v1.manifest", "--key", "pub.key"],
    );
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    assert!(error_text(&refused).contains("malformed value"));
    assert!(
        !root.join("publisher").exists(),
        "nothing is kept of a refused item"
    );
}

#[test]
fn publish_refuses_a_manifest_its_key_did_not_sign_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare_versions(root);
    // No DHT is needed: every one of these stops before it is asked (the
    // address is one nobody answers on).
    let node = "127.0.0.1:9";
    let refused = run(
        root,
        node,
        "p",
        &["publish", "tiny.manifest", "--key", "pub.key"],
    );
    assert_eq!(code(&refused), 4);
    let text = error_text(&refused);
    assert!(text.contains("unsigned"), "{text}");
    assert!(text.contains("minimodel sign"), "{text}");
    let refused = run(
        root,
        node,
        "p",
        &["publish", "foreign.manifest", "--key", "pub.key"],
    );
    assert_eq!(code(&refused), 4);
    assert!(
        error_text(&refused).contains("signed by key"),
        "{}",
        error_text(&refused)
    );
    // A manifest whose signature fails.
    let text = std::fs::read_to_string(root.join("v1.manifest")).unwrap();
    let tampered = text.replace("display-name: ", "display-name: x");
    assert_ne!(tampered, text);
    std::fs::write(root.join("tampered.manifest"), tampered).unwrap();
    let refused = run(
        root,
        node,
        "p",
        &["publish", "tampered.manifest", "--key", "pub.key"],
    );
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    assert!(!root.join("p").exists());

    let sha = "ab".repeat(32);
    let usage: &[&[&str]] = &[
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--withdraw",
            "abc",
            "--reason-route",
            "https://example.org/x",
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--withdraw",
            &sha,
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--reason-route",
            "https://example.org/x",
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--withdraw",
            &sha,
            "--reason-route",
            "not a route",
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--withdraw",
            &sha,
            "--withdraw",
            &"cd".repeat(32),
            "--reason-route",
            "https://example.org/x",
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--peer",
            "nobody@127.0.0.1:1",
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--peer",
            &format!(
                "{}@127.0.0.1:1,127.0.0.2:1,127.0.0.3:1",
                PEER.split('@').next().unwrap()
            ),
        ],
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--dht-bootstrap",
            "127.0.0.1:0",
        ],
        &["publish", "v1.manifest"],
        &["channel", "pub.key.pub", "--model-id", "has space"],
        &["channel"],
    ];
    for args in usage {
        let output = minimodel(root, args);
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
    }
    let five: Vec<String> = (1..=5)
        .map(|n| format!("{}@127.0.0.{n}:1", PEER.split('@').next().unwrap()))
        .collect();
    let mut args = vec!["publish", "v1.manifest", "--key", "pub.key"];
    for peer in &five {
        args.extend(["--peer", peer.as_str()]);
    }
    assert_eq!(code(&minimodel(root, &args)), 2);
    // Keys that are no keys are invalid input.
    let output = run(root, node, "r", &["channel", "mmpk1nope"]);
    assert_eq!(code(&output), 3, "{}", stderr(&output));
    let output = run(root, node, "r", &["channel", "pub.key"]);
    assert_eq!(code(&output), 3, "a secret key where a public key will do");
    // A kept item that is damaged is named, and left in place.
    std::fs::create_dir_all(root.join("r")).unwrap();
    let public = minimodel_verifier::signing::keyfile::read_public_key_file(
        &std::fs::read(root.join("pub.key.pub")).unwrap(),
    )
    .unwrap();
    let kept = root.join("r").join(format!("{public}.item"));
    std::fs::write(&kept, "format: minimodel-channel-item-v1\nseq: -1\n").unwrap();
    let output = run(root, node, "r", &["channel", "pub.key.pub"]);
    assert_eq!(code(&output), 3, "{}", stderr(&output));
    assert!(
        error_text(&output).contains("delete it"),
        "{}",
        error_text(&output)
    );
    assert!(kept.exists());
}
