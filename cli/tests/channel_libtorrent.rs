//! The channel item is BEP 44, not ours: libtorrent, another Mainline DHT
//! implementation, stores it, reads it back and writes one we read
//! (`docs/channel.md`, "Another implementation reads it"). On a loopback
//! DHT of libtorrent's own nodes (`cli/tests/channel_libtorrent.py`,
//! Debian's python3-libtorrent):
//!
//! - a libtorrent node stores what `minimodel publish` puts (it verifies
//!   BEP 44's signature before it stores a put), and refuses the same item
//!   with one bit of its signature flipped;
//! - another libtorrent session's `dht_get_mutable_item` returns it:
//!   the sequence number, key, salt and signature `publish` made, and a
//!   value that libtorrent's own `bdecode` reads as the record of
//!   `docs/channel.md` (latest manifest digest, peer, withdrawal);
//! - an item libtorrent signs and puts (`dht_put_mutable_item`) under the
//!   publisher key, naming a new latest version, passes our checks and is
//!   what `minimodel channel` reads;
//! - a `minimodel dht-node` answers libtorrent's queries: libtorrent reads
//!   and puts the item through it alone;
//! - `follow`, on a DHT of libtorrent's nodes only, reads the item
//!   `publish` stored and fetches the version it names.

mod support;

use std::fs::Permissions;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use minimodel_swarm::dht::{Bootstrap, ChannelPutFailure, Discovery, DiscoveryConfig};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{CHANNEL_SALT, ChannelItem, MAX_VALUE_BYTES, check_item};
use minimodel_verifier::channel_state::read_item_file;
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::keyfile::{public_key_file, secret_key_file};
use serde_json::Value;
use support::*;

const MODEL: &str = "tiny";
const PEER_ID: &str = "7jbgqo6i2fdzqpihyjyzcrpyr47wzrkv5ru3yfdbhtrbbqrx5wsa";
const PEER_ADDR: &str = "127.0.0.1:4433";
const REASON: &str = "https://example.org/takedown/tiny-v0";
/// The publisher key's seed: the test gives the same key to libtorrent.
const SEED: [u8; 32] = [0x4c; 32];

/// The python that imports libtorrent: Debian's python3-libtorrent is
/// built for Debian's own python3 (`MINIMODEL_LT_PYTHON` names another).
fn lt_python() -> PathBuf {
    let python = std::env::var_os("MINIMODEL_LT_PYTHON")
        .map_or_else(|| PathBuf::from("/usr/bin/python3"), PathBuf::from);
    let found = Command::new(&python)
        .args(["-c", "import libtorrent, cryptography"])
        .output();
    match found {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} cannot import libtorrent and cryptography ({}): install Debian's \
             python3-libtorrent and python3-cryptography \
             (apt-get install python3-libtorrent python3-cryptography), \
             or name another python in MINIMODEL_LT_PYTHON",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "{} does not run ({error}): install Debian's python3-libtorrent \
             (apt-get install python3 python3-libtorrent python3-cryptography)",
            python.display()
        ),
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/channel_libtorrent.py")
}

/// A libtorrent DHT node; it ends when its standard input closes, and is
/// killed when dropped.
struct LtNode {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: String,
}

impl LtNode {
    fn start(python: &Path) -> LtNode {
        let mut child = Command::new(python)
            .arg(script())
            .arg("node")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the libtorrent node starts");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the libtorrent node's first line {line:?}: {e}"));
        assert_eq!(event["event"], "node", "{event}");
        let addr = event["addr"].as_str().unwrap().to_owned();
        LtNode { child, stdin, addr }
    }
}

impl Drop for LtNode {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the script once (`get` or `put`) and returns its one JSON line.
fn lt(python: &Path, args: &[&str]) -> Value {
    let output = Command::new(python)
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the libtorrent script runs");
    assert!(
        output.status.success(),
        "channel_libtorrent.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("channel_libtorrent.py {args:?} said {stdout:?}: {e}"))
}

/// The publisher's keys in `root` (`pub.key`, `pub.key.pub`, from
/// [`SEED`]) and `v1.manifest`, the manifest of `tiny.slm` signed with
/// them: the public key and the manifest's SHA-256 in hex.
fn publisher_with_v1(root: &Path) -> (minimodel_verifier::signing::PublicKey, String) {
    let secret = SecretKey::from_seed(&SEED);
    let public = secret.public_key();
    std::fs::write(root.join("pub.key"), secret_key_file(&secret)).unwrap();
    std::fs::set_permissions(root.join("pub.key"), Permissions::from_mode(0o600)).unwrap();
    std::fs::write(root.join("pub.key.pub"), public_key_file(&public)).unwrap();
    prepare(root, MODEL, "256KiB", "64KiB");
    ok(&minimodel(
        root,
        &[
            "sign",
            "tiny.manifest",
            "--key",
            "pub.key",
            "-o",
            "v1.manifest",
        ],
    ));
    let v1_hex = Sha256Digest::of(&std::fs::read(root.join("v1.manifest")).unwrap()).to_hex();
    (public, v1_hex)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn libtorrent_stores_and_reads_the_published_item_and_we_read_what_it_signs() {
    let python = lt_python();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (public, v1_hex) = publisher_with_v1(root);
    // Some earlier version, withdrawn (any SHA-256 may be listed).
    let withdrawn_hex = Sha256Digest::of(b"tiny version 0").to_hex();

    let node = LtNode::start(&python);
    let publish = |extra: &[&str]| {
        let peer = format!("{PEER_ID}@{PEER_ADDR}");
        let mut args = vec![
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--peer",
            &peer,
            "--dht-bootstrap",
            &node.addr,
            "--channels",
            "publisher",
        ];
        args.extend_from_slice(extra);
        ok(&minimodel(root, &args))
    };
    publish(&[]);
    let said = publish(&["--withdraw", &withdrawn_hex, "--reason-route", REASON]);
    assert!(said.contains("at sequence number 2"), "{said}");
    // What `publish` put, as it keeps it.
    let kept = read_item_file(
        &std::fs::read(root.join("publisher").join(format!("{public}.item"))).unwrap(),
    )
    .unwrap();
    assert_eq!(kept.seq, 2);

    // The same item with one bit of its signature flipped, at the next
    // sequence number: libtorrent's node refuses to store it.
    let mut forged = kept.clone();
    forged.seq = 3;
    forged.signature[0] ^= 1;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(async {
        let dht = Discovery::start(DiscoveryConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            bootstrap: Bootstrap::Nodes(vec![node.addr.parse().unwrap()]),
            lookup_timeout: Duration::from_secs(5),
            ..DiscoveryConfig::default()
        })
        .await
        .unwrap();
        dht.put_channel(&forged, Some(2)).await
    });
    eprintln!("a forged signature: {refused:?}");
    assert!(
        matches!(refused, Err(ChannelPutFailure::Query(_))),
        "libtorrent stored an item whose signature fails: {refused:?}"
    );

    // libtorrent reads the channel: the item `publish` put, not the
    // forged one.
    let salt = std::str::from_utf8(CHANNEL_SALT).unwrap();
    let got = lt(&python, &["get", &node.addr, &hex(public.as_bytes()), salt]);
    eprintln!("libtorrent's dht_mutable_item_alert: {got}");
    assert_eq!(got["event"], "item");
    assert_eq!(got["seq"], 2, "{got}");
    assert_eq!(got["authoritative"], true, "{got}");
    assert_eq!(got["key"], hex(public.as_bytes()));
    assert_eq!(got["salt"], salt);
    assert_eq!(got["signature"], hex(&kept.signature));
    let value = unhex(got["value"].as_str().unwrap());
    assert_eq!(value, kept.value);
    // The record, as libtorrent's bdecode reads it.
    let decoded = &got["decoded"];
    assert_eq!(decoded["f"], 1, "{decoded}");
    let model = &decoded["m"][MODEL];
    assert_eq!(model["d"], v1_hex, "{decoded}");
    let peer = &model["p"][0];
    // 127.0.0.1:4433, BEP 5's compact form.
    assert_eq!(peer["a"], serde_json::json!(["7f0000011151"]), "{decoded}");
    let peer_id: minimodel_wire::PeerId = PEER_ID.parse().unwrap();
    assert_eq!(peer["i"], hex(peer_id.as_bytes()));
    assert_eq!(decoded["w"][0]["d"], withdrawn_hex, "{decoded}");
    assert_eq!(
        unhex(decoded["w"][0]["r"].as_str().unwrap()),
        REASON.as_bytes()
    );
    assert_eq!(decoded.as_object().unwrap().len(), 3, "{decoded}");
    // And the item libtorrent handed over passes every check of ours.
    let item = ChannelItem {
        key: *public.as_bytes(),
        seq: 2,
        value,
        signature: unhex(got["signature"].as_str().unwrap())
            .try_into()
            .unwrap(),
        salt: CHANNEL_SALT.to_vec(),
    };
    let verified = check_item(&item, &public, None).unwrap();
    assert_eq!(verified.channel().models.len(), 1);
    assert_eq!(verified.channel().withdrawn.len(), 1);

    // The other way: libtorrent signs and puts the next item under the
    // same key (`dht_put_mutable_item`, the publisher's secret key handed
    // to it), naming a version 2 as the latest; `minimodel channel` finds
    // it, checks it as any item and reads the channel.
    let v2 = Sha256Digest::of(b"tiny version 2");
    let mut next = verified.channel().clone();
    next.models.values_mut().next().unwrap().manifest_sha256 = v2;
    let next_value = next.encode().unwrap();
    let put = lt(
        &python,
        &["put", &node.addr, &hex(&SEED), salt, &hex(&next_value)],
    );
    eprintln!("libtorrent's dht_put_alert: {put}");
    assert_eq!(put["seq"], 3, "{put}");
    assert!(put["stored"].as_u64().unwrap() >= 1, "{put}");
    assert_eq!(put["key"], hex(public.as_bytes()));
    // libtorrent signed BEP 44's bytes as we do.
    let theirs = ChannelItem {
        key: *public.as_bytes(),
        seq: 3,
        value: next_value,
        signature: unhex(put["signature"].as_str().unwrap())
            .try_into()
            .unwrap(),
        salt: CHANNEL_SALT.to_vec(),
    };
    let checked = check_item(&theirs, &public, Some(verified.last_seen())).unwrap();
    assert_eq!(checked.channel(), &next);
    let read = minimodel(
        root,
        &[
            "channel",
            "pub.key.pub",
            "--dht-bootstrap",
            &node.addr,
            "--channels",
            "reader",
            "--json",
        ],
    );
    ok(&read);
    let event = json_lines(&read)
        .into_iter()
        .find(|e| e["event"] == "channel")
        .expect("a channel event");
    assert_eq!(event["seq"], 3, "{event}");
    assert_eq!(event["models"][0]["model_id"], MODEL, "{event}");
    assert_eq!(
        event["models"][0]["manifest_sha256"],
        v2.to_hex(),
        "{event}"
    );
    assert_eq!(
        event["withdrawn"][0]["manifest_sha256"], withdrawn_hex,
        "{event}"
    );
}

/// A `minimodel dht-node` is a node libtorrent can use: it answers
/// libtorrent's queries (2-byte transaction ids, which the Mainline crate
/// as published drops: `vendor/mainline/PATCHES.md`), so that on a DHT
/// whose only node is ours, libtorrent's `dht_get_mutable_item` reads the
/// item `minimodel publish` stored there, and what libtorrent puts there
/// `minimodel channel` reads.
#[test]
fn a_minimodel_dht_node_answers_libtorrent_and_stores_for_both() {
    let python = lt_python();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (public, v1_hex) = publisher_with_v1(root);

    let (_node, mut lines) =
        spawn_with_stdout(root, &["dht-node", "--listen", "127.0.0.1:0", "--json"]);
    let seen = read_until(&mut lines, |event| event["event"] == "dht-node");
    let addr = seen
        .last()
        .filter(|event| event["event"] == "dht-node")
        .and_then(|event| event["addr"].as_str())
        .expect("the dht-node says where it listens")
        .to_owned();
    let peer = format!("{PEER_ID}@{PEER_ADDR}");
    ok(&minimodel(
        root,
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--peer",
            &peer,
            "--dht-bootstrap",
            &addr,
            "--channels",
            "publisher",
        ],
    ));

    // libtorrent, bootstrapped to our node alone, reads what it stores.
    let salt = std::str::from_utf8(CHANNEL_SALT).unwrap();
    let got = lt(&python, &["get", &addr, &hex(public.as_bytes()), salt]);
    eprintln!("libtorrent's dht_mutable_item_alert from our node: {got}");
    assert_eq!(got["event"], "item");
    assert_eq!(got["seq"], 1, "{got}");
    assert_eq!(got["authoritative"], true, "{got}");
    assert_eq!(got["decoded"]["m"][MODEL]["d"], v1_hex, "{got}");

    // And stores there what libtorrent signs and puts.
    let item = ChannelItem {
        key: *public.as_bytes(),
        seq: 1,
        value: unhex(got["value"].as_str().unwrap()),
        signature: unhex(got["signature"].as_str().unwrap())
            .try_into()
            .unwrap(),
        salt: CHANNEL_SALT.to_vec(),
    };
    let verified = check_item(&item, &public, None).unwrap();
    let v2 = Sha256Digest::of(b"tiny version 2");
    let mut next = verified.channel().clone();
    next.models.values_mut().next().unwrap().manifest_sha256 = v2;
    let put = lt(
        &python,
        &[
            "put",
            &addr,
            &hex(&SEED),
            salt,
            &hex(&next.encode().unwrap()),
        ],
    );
    eprintln!("libtorrent's dht_put_alert to our node: {put}");
    assert_eq!(put["seq"], 2, "{put}");
    assert!(put["stored"].as_u64().unwrap() >= 1, "{put}");
    let read = minimodel(
        root,
        &[
            "channel",
            "pub.key.pub",
            "--dht-bootstrap",
            &addr,
            "--channels",
            "reader",
            "--json",
        ],
    );
    ok(&read);
    let event = json_lines(&read)
        .into_iter()
        .find(|e| e["event"] == "channel")
        .expect("a channel event");
    assert_eq!(event["seq"], 2, "{event}");
    assert_eq!(
        event["models"][0]["manifest_sha256"],
        v2.to_hex(),
        "{event}"
    );
}

/// On a DHT of libtorrent's nodes only, `follow` reads the channel item
/// `publish` stored there and fetches the version it names from the
/// seeder it names, verified.
#[test]
fn follow_on_a_dht_of_libtorrent_nodes_gets_the_published_version() {
    let python = lt_python();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, v1_hex) = publisher_with_v1(root);
    let (_seeder, offer) = seeder(
        root,
        "v1.manifest",
        "tiny.slm",
        "v1.offer.json",
        // Its pin of the key stays in the test's directory.
        &["--no-port-mapping", "--keyring", "seeder.keyring"],
    );
    let offer: Value = serde_json::from_slice(&std::fs::read(offer).unwrap()).unwrap();
    let peer = format!(
        "{}@{}",
        offer["peer_id"].as_str().unwrap(),
        offer["addrs"][0].as_str().unwrap()
    );
    let node = LtNode::start(&python);
    ok(&minimodel(
        root,
        &[
            "publish",
            "v1.manifest",
            "--key",
            "pub.key",
            "--peer",
            &peer,
            "--dht-bootstrap",
            &node.addr,
            "--channels",
            "publisher",
        ],
    ));
    let followed = Command::new(env!("CARGO_BIN_EXE_minimodel"))
        .current_dir(root)
        .env("XDG_DATA_HOME", root.join("data"))
        .env("LOCALAPPDATA", root.join("data"))
        .args([
            "follow",
            "pub.key.pub",
            "--model-id",
            MODEL,
            "-o",
            "follower",
            "--yes",
            "--dht-bootstrap",
            &node.addr,
            "--channels",
            "follower-channels",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("follow runs");
    ok(&followed);
    let got = root.join("follower").join(&v1_hex).join("tiny.slm");
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(root.join("tiny.slm")).unwrap(),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
}

/// BEP 44 limits `v` bencoded to 1,000 bytes, and `v` is a byte string:
/// libtorrent's node stores a 996-byte one (`996:` and the bytes) and
/// refuses a 997-byte one, so [`MAX_VALUE_BYTES`] is 996.
#[test]
fn libtorrent_stores_a_value_of_the_largest_length_we_allow_and_no_longer() {
    let python = lt_python();
    let node = LtNode::start(&python);
    let salt = std::str::from_utf8(CHANNEL_SALT).unwrap();
    let stored = |len: usize, seed: u8| {
        let put = lt(
            &python,
            &[
                "put",
                &node.addr,
                &hex(&[seed; 32]),
                salt,
                &hex(&vec![b'x'; len]),
            ],
        );
        eprintln!("a value of {len} bytes: {put}");
        put["stored"].as_u64().unwrap()
    };
    // Two keys, so two targets: both puts at once.
    let (largest, over) = std::thread::scope(|scope| {
        let largest = scope.spawn(|| stored(MAX_VALUE_BYTES, 1));
        let over = scope.spawn(|| stored(MAX_VALUE_BYTES + 1, 2));
        (largest.join().unwrap(), over.join().unwrap())
    });
    assert!(largest >= 1, "no node stored {MAX_VALUE_BYTES} bytes");
    assert_eq!(over, 0, "a node stored {} bytes", MAX_VALUE_BYTES + 1);
}
