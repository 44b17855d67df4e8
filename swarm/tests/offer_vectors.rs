//! The peer offer vectors of `docs/formats.md` (`fixtures/offer/`): every
//! good file reads to the value the spec gives, a v1 offer is written back
//! byte for byte, a v0 offer reads to the same value as its v1 rewrite, and
//! every bad file is refused with the reason the spec gives. Every file in
//! the directory must be listed here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use minimodel_swarm::offer::{ImportRequest, OFFER_FORMAT, OfferError, PeerOffer};
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_wire::PeerId;

const ID: &str = "eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q";
const ID2: &str = "ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba";

/// Bad files and a phrase their error must contain.
const BAD: &[(&str, &str)] = &[
    (
        "bad-format-v9.json",
        "has format \"minimodel-peer-offer-v9\"",
    ),
    (
        "bad-request-offer-format.json",
        "offer 3 has format \"minimodel-peer-offer-v9\"",
    ),
    ("bad-request-offer-port-zero.json", "offer 2"),
    ("bad-v0-hostname.json", "is not an IP address with a port"),
    (
        "bad-v0-with-addrs.json",
        "field `addrs` is not part of minimodel-peer-offer-v0",
    ),
    ("bad-v1-addrs-not-strings.json", "invalid type: integer"),
    ("bad-v1-broadcast.json", "is not a unicast address"),
    (
        "bad-v1-duplicate-address.json",
        "addrs[2] 10.0.0.2:4433 is listed twice",
    ),
    ("bad-v1-duplicate-key.json", "duplicate field `addrs`"),
    (
        "bad-v1-hostname.json",
        "addrs[0] \"seed.example.org:4433\" is not IP:PORT",
    ),
    ("bad-v1-missing-addrs.json", "missing field `addrs`"),
    ("bad-v1-missing-peer-id.json", "missing field `peer_id`"),
    ("bad-v1-multicast.json", "is not a unicast address"),
    (
        "bad-v1-no-addrs.json",
        "addrs lists 0 addresses; an offer lists 1 to 16",
    ),
    (
        "bad-v1-peer-id-last-char.json",
        "every peer id ends in 'a' or 'q'",
    ),
    ("bad-v1-port-zero.json", "has port 0"),
    ("bad-v1-too-many-addrs.json", "addrs lists 17 addresses"),
    (
        "bad-v1-unbracketed-ipv6.json",
        "is not IP:PORT (IPv6 in brackets)",
    ),
    ("bad-v1-unknown-field.json", "unknown field `port`"),
    ("bad-v1-unspecified.json", "is not a unicast address"),
    (
        "bad-v1-with-v0-peer.json",
        "field `peer` is not part of minimodel-peer-offer-v1",
    ),
    (
        "bad-v1-with-relays.json",
        "field `relays` is not part of minimodel-peer-offer-v1",
    ),
    (
        "bad-v2-duplicate-relay.json",
        "relays[1] ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba@81.2.69.9:4434 is listed twice",
    ),
    (
        "bad-v2-missing-relays.json",
        "missing field `relays` (minimodel-peer-offer-v2)",
    ),
    (
        "bad-v2-no-relays.json",
        "relays lists 0 relays; a v2 offer lists 1 to 4",
    ),
    ("bad-v2-relay-port-zero.json", "is not a relay address"),
    (
        "bad-v2-relay-without-id.json",
        "has no peer id: write RELAY_ID@IP:PORT",
    ),
];

const GOOD: &[&str] = &[
    "good-request-mixed.json",
    "good-v0-ipv6.json",
    "good-v0.json",
    "good-v1-one-address.json",
    "good-v1.json",
    "good-v2.json",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/offer")
}

fn id(text: &str) -> PeerId {
    text.parse().unwrap()
}

fn addrs(texts: &[&str]) -> Vec<SocketAddr> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn offer(name: &str) -> PeerOffer {
    PeerOffer::read(&dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn is_request(name: &str) -> bool {
    name.contains("request")
}

#[test]
fn every_vector_file_is_covered() {
    let mut listed: Vec<&str> = GOOD.to_vec();
    listed.extend(BAD.iter().map(|(name, _)| *name));
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort_unstable();
    assert_eq!(present, listed);
}

#[test]
fn a_v1_offer_reads_to_its_peer_and_addresses_and_is_written_back_byte_for_byte() {
    for (name, expected) in [
        ("good-v1.json", &["10.0.0.2:4433", "[fd00::2]:4433"][..]),
        ("good-v1-one-address.json", &["192.0.2.7:4433"][..]),
    ] {
        let read = offer(name);
        assert_eq!(read.model_id.as_str(), "tiny-slm");
        assert_eq!(read.artifact_bytes, 67_108_864);
        assert_eq!(
            read.peer,
            PeerAddrs {
                id: id(ID),
                addrs: addrs(expected)
            }
        );
        let mut written = serde_json::to_string_pretty(&read).unwrap();
        written.push('\n');
        assert_eq!(
            written,
            std::fs::read_to_string(dir().join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_v2_offer_reads_to_its_relays_and_is_written_back_byte_for_byte() {
    let read = offer("good-v2.json");
    assert_eq!(
        read.peer,
        PeerAddrs {
            id: id(ID),
            addrs: addrs(&["192.168.1.2:4433"])
        }
    );
    assert_eq!(
        read.relays,
        [minimodel_swarm::relay::RelayAddr {
            id: Some(id(ID2)),
            addr: "81.2.69.9:4434".parse().unwrap()
        }]
    );
    let mut written = serde_json::to_string_pretty(&read).unwrap();
    written.push('\n');
    assert_eq!(
        written,
        std::fs::read_to_string(dir().join("good-v2.json")).unwrap()
    );
    // Without its relays it is written as v1.
    let plain = PeerOffer {
        relays: Vec::new(),
        ..read
    };
    assert_eq!(
        serde_json::to_value(&plain).unwrap()["format"],
        OFFER_FORMAT
    );
}

#[test]
fn a_v0_offer_reads_to_one_address_and_is_rewritten_as_v1() {
    for (name, peer, addr) in [
        ("good-v0.json", ID, "127.0.0.1:40123"),
        ("good-v0-ipv6.json", ID2, "[2001:db8::7]:7000"),
    ] {
        let read = offer(name);
        assert_eq!(
            read.peer,
            PeerAddrs {
                id: id(peer),
                addrs: addrs(&[addr])
            }
        );
        let rewritten = serde_json::to_value(&read).unwrap();
        assert_eq!(rewritten["format"], OFFER_FORMAT);
        assert_eq!(rewritten["peer_id"], peer);
        assert_eq!(rewritten["addrs"], serde_json::json!([addr]));
        assert!(rewritten.get("peer").is_none());
        let again = PeerOffer::parse(rewritten.to_string().as_bytes(), "rewritten").unwrap();
        assert_eq!(again, read);
    }
}

#[test]
fn a_request_carries_offers_of_both_versions_and_one_peer_per_id() {
    let request = ImportRequest::read(&dir().join("good-request-mixed.json")).unwrap();
    assert_eq!(request.offers.len(), 3);
    let peers = merge_peers(request.offers.iter().map(|offer| offer.peer.clone()));
    assert_eq!(
        peers,
        vec![
            PeerAddrs {
                id: id(ID),
                addrs: addrs(&["10.0.0.2:4433", "[fd00::2]:4433", "203.0.113.9:4433"]),
            },
            PeerAddrs {
                id: id(ID2),
                addrs: addrs(&["[2001:db8::7]:7000"]),
            },
        ]
    );
    let text = serde_json::to_vec(&request).unwrap();
    assert_eq!(ImportRequest::parse(&text, "again").unwrap(), request);
}

#[test]
fn bad_vectors_are_refused_with_their_reason() {
    for (name, phrase) in BAD {
        let path = dir().join(name);
        let error: OfferError = if is_request(name) {
            ImportRequest::read(&path).unwrap_err()
        } else {
            PeerOffer::read(&path).unwrap_err()
        };
        let message = error.to_string();
        assert!(
            message.contains(phrase),
            "{name}: {message:?} should contain {phrase:?}"
        );
        let expected_kind = if name.contains("format") {
            matches!(error, OfferError::Format { .. })
        } else {
            matches!(error, OfferError::Malformed { .. })
        };
        assert!(expected_kind, "{name}: {error:?}");
    }
}
