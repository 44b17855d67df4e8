//! The ticket vectors of `fixtures/ticket/vectors.txt` (`docs/formats.md`,
//! "Ticket"): every good ticket reads to its fields and is what this
//! codec writes for them, every bad one is refused for its reason; and an
//! independent implementation (`fixtures/ticket/vectors.py check`, Python's
//! standard library) does the same with its own codec. That one must run:
//! a missing Python fails this test with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::ticket::{PeerRelays, Ticket};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::mirror_url::{MirrorUrl, Plain};
use minimodel_verifier::signing::PublisherKeyId;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn vectors() -> Vec<Vec<String>> {
    std::fs::read_to_string(fixtures().join("ticket/vectors.txt"))
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(' ').map(str::to_owned).collect())
        .collect()
}

fn sha256_of(path: &str) -> Sha256Digest {
    Sha256Digest::of(&std::fs::read(fixtures().join(path)).unwrap())
}

#[test]
fn good_tickets_read_to_their_fields_and_are_written_back_byte_for_byte() {
    let mut good = 0;
    let mut relayed = 0;
    let mut mirrored = 0;
    for fields in vectors().into_iter().filter(|f| f[0] == "good") {
        let [_, name, text, digest, key_id, peers, rest @ ..] = &fields[..] else {
            panic!("malformed vector {fields:?}");
        };
        let mirrors: Vec<MirrorUrl> = rest
            .iter()
            .filter_map(|field| field.strip_prefix("mirror="))
            .map(|url| MirrorUrl::parse(url, Plain::Refused).unwrap())
            .collect();
        let relays = rest.iter().find(|field| !field.starts_with("mirror="));
        let peers: Vec<PeerAddrs> = peers
            .split(';')
            .filter(|peer| *peer != "-")
            .map(|peer| {
                let (id, addrs) = peer.split_once('@').unwrap();
                PeerAddrs {
                    id: id.parse().unwrap(),
                    addrs: addrs
                        .split(',')
                        .map(|a| a.parse::<SocketAddr>().unwrap())
                        .collect(),
                }
            })
            .collect();
        if !mirrors.is_empty() {
            mirrored += 1;
        }
        let expected = Ticket::with_sources(
            digest.parse().unwrap(),
            (key_id != "-").then(|| key_id.parse::<PublisherKeyId>().unwrap()),
            peers,
            mirrors,
        )
        .unwrap();
        // PEER_ID>RELAY_ID@ADDR[,RELAY_ID@ADDR][;...]
        let expected = match relays {
            None => expected,
            Some(relays) => {
                relayed += 1;
                let relays = relays
                    .split(';')
                    .map(|entry| {
                        let (peer, named) = entry.split_once('>').unwrap();
                        PeerRelays {
                            peer: peer.parse().unwrap(),
                            relays: named.split(',').map(|r| r.parse().unwrap()).collect(),
                        }
                    })
                    .collect();
                expected.with_relays(relays).unwrap()
            }
        };
        assert_eq!(text.parse::<Ticket>().as_ref(), Ok(&expected), "{name}");
        assert_eq!(&expected.to_string(), text, "{name}");
        good += 1;
    }
    assert!(good >= 9);
    assert!(relayed >= 3);
    assert!(mirrored >= 3);
    // The first vector names the signed manifest of fixtures/signing and
    // its key; the second the unsigned one.
    let all = vectors();
    let signed: Ticket = all[0][2].parse().unwrap();
    assert_eq!(
        signed.manifest_sha256,
        sha256_of("signing/signed-a.manifest")
    );
    assert_eq!(
        signed.key_id.unwrap().to_string(),
        "mmk1eh7ddx5bksrgcytl",
        "the key id of fixtures/signing/a.pub"
    );
    let unsigned: Ticket = all[1][2].parse().unwrap();
    assert_eq!(
        unsigned.manifest_sha256,
        sha256_of("manifest/good-canonical.manifest")
    );
    assert_eq!(unsigned.key_id, None);
}

#[test]
fn bad_tickets_are_refused_for_their_reason() {
    let mut bad = 0;
    for fields in vectors().into_iter().filter(|f| f[0] == "bad") {
        let [_, name, text, code] = &fields[..] else {
            panic!("malformed vector {fields:?}");
        };
        let error = text.parse::<Ticket>().expect_err(name);
        assert_eq!(error.code(), code, "{name}: {error}");
        bad += 1;
    }
    assert!(bad >= 45);
}

#[test]
fn an_independent_implementation_reads_and_writes_the_vectors() {
    let script = fixtures().join("ticket/vectors.py");
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
