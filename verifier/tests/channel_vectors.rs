//! The channel item vectors of `fixtures/channel/vectors.txt`, written by an
//! independent implementation (`fixtures/channel/vectors.py`: its own
//! bencode, OpenSSL's Ed25519): the Rust code encodes the same channels to
//! the same values, signs them to the same signatures over the same BEP 44
//! bytes, and accepts every item.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{
    CHANNEL_SALT, Channel, ChannelItem, ChannelPeer, Latest, Withdrawal, check_item, sign_channel,
    signable,
};
use minimodel_verifier::ids::ModelId;
use minimodel_verifier::route::Route;
use minimodel_verifier::signing::SecretKey;

const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn hex(text: &str) -> Vec<u8> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).unwrap()
}

fn key_a() -> SecretKey {
    SecretKey::from_seed(&hex(SEED_A).try_into().unwrap())
}

fn id(text: &str) -> ModelId {
    ModelId::new(text).unwrap()
}

fn peer(id: [u8; 32], addrs: &[&str]) -> ChannelPeer {
    ChannelPeer {
        id,
        addrs: addrs.iter().map(|addr| addr.parse().unwrap()).collect(),
    }
}

/// The channels `vectors.py` describes, by name.
fn channels() -> Vec<(&'static str, Channel)> {
    let counting: [u8; 32] = std::array::from_fn(|n| n as u8);
    let mut one = BTreeMap::new();
    one.insert(
        id("tiny-1"),
        Latest {
            manifest_sha256: Sha256Digest::of(b"manifest of tiny-1 v1"),
            peers: vec![peer(counting, &["198.51.100.7:4433"])],
        },
    );
    let mut two = BTreeMap::new();
    two.insert(
        id("tiny-1"),
        Latest {
            manifest_sha256: Sha256Digest::of(b"manifest of tiny-1 v2"),
            peers: vec![
                peer(counting, &["198.51.100.7:4433", "[2001:db8::7]:4433"]),
                peer([0xab; 32], &["203.0.113.9:50000"]),
            ],
        },
    );
    two.insert(
        id("tiny-chat.q8"),
        Latest {
            manifest_sha256: Sha256Digest::of(b"manifest of tiny-chat"),
            peers: Vec::new(),
        },
    );
    vec![
        ("empty", Channel::default()),
        (
            "one-model",
            Channel {
                models: one,
                withdrawn: Vec::new(),
            },
        ),
        (
            "two-models-one-withdrawn",
            Channel {
                models: two,
                withdrawn: vec![Withdrawal {
                    manifest_sha256: Sha256Digest::of(b"manifest of tiny-1 v1"),
                    reason_route: Route::parse("https://example.org/takedown/2026-11-27").unwrap(),
                }],
            },
        ),
    ]
}

struct Vector {
    name: String,
    seq: i64,
    value: Vec<u8>,
    signable: Vec<u8>,
    signature: Vec<u8>,
}

fn vectors() -> (Vec<u8>, Vec<Vector>) {
    let text = std::fs::read_to_string(fixtures().join("channel/vectors.txt")).unwrap();
    let mut public = Vec::new();
    let mut found = Vec::new();
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines().chain([""]) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(key) = line.strip_prefix("public-key: ") {
            public = hex(key);
            continue;
        }
        if line.is_empty() {
            if fields.contains_key("name") {
                found.push(Vector {
                    name: fields["name"].to_owned(),
                    seq: fields["seq"].parse().unwrap(),
                    value: hex(fields["value"]),
                    signable: hex(fields["signable"]),
                    signature: hex(fields["signature"]),
                });
            }
            fields.clear();
            continue;
        }
        if let Some((key, value)) = line.split_once(": ") {
            fields.insert(key, value);
        }
    }
    (public, found)
}

#[test]
fn the_rust_code_writes_and_accepts_every_vector() {
    let (public, vectors) = vectors();
    let secret = key_a();
    assert_eq!(secret.public_key().as_bytes().as_slice(), public.as_slice());
    let channels = channels();
    assert_eq!(vectors.len(), channels.len());
    for (vector, (name, channel)) in vectors.iter().zip(&channels) {
        assert_eq!(vector.name, *name);
        assert_eq!(channel.encode().unwrap(), vector.value, "{name}");
        assert_eq!(Channel::decode(&vector.value).unwrap(), *channel, "{name}");
        assert_eq!(
            signable(CHANNEL_SALT, vector.seq, &vector.value),
            vector.signable,
            "{name}"
        );
        let item = sign_channel(&secret, vector.seq, channel).unwrap();
        assert_eq!(
            item.signature.as_slice(),
            vector.signature.as_slice(),
            "{name}"
        );
        let from_vector = ChannelItem {
            key: public.clone().try_into().unwrap(),
            seq: vector.seq,
            value: vector.value.clone(),
            signature: vector.signature.clone().try_into().unwrap(),
            salt: CHANNEL_SALT.to_vec(),
        };
        let verified = check_item(&from_vector, &secret.public_key(), None).unwrap();
        assert_eq!(verified.channel(), channel);
        assert_eq!(verified.seq(), vector.seq);
    }
}

#[test]
fn an_independent_implementation_verifies_the_vectors() {
    let script = fixtures().join("channel/vectors.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg("check")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "python3 is needed to check the vectors independently and could not run: {error}"
            )
        });
    assert!(
        output.status.success(),
        "{} check failed ({}):\n{}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
