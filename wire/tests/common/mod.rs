//! Shared fixtures of the integration tests: the swarm of the golden vectors
//! and the messages they hold.

#![allow(dead_code)]

pub mod control;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;

use minimodel_wire::{
    ChunkIndex, GoodbyeReason, HaveBitfield, Hello, HelloRejectReason, Message, PeerEntry,
    PeerFlags, PeerId, PieceHeader, RejectReason, RendezvousFailedReason, SwarmIdentity,
    SwarmParams,
};

/// Merkle root of the golden vectors: bytes 0x00..=0x1f.
pub fn root() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

/// 10 000 000 bytes in chunks of 1 MiB: 10 chunks, the last 562 816 bytes.
pub fn params() -> SwarmParams {
    SwarmParams::new(10_000_000, 1 << 20, 10).unwrap()
}

pub fn swarm() -> SwarmIdentity {
    SwarmIdentity::new("tiny-slm-64m", root(), params()).unwrap()
}

pub fn hello(serving: bool, listen: Option<SocketAddr>) -> Hello {
    swarm().hello(serving, listen, "minimodel/0.1.0").unwrap()
}

pub fn v6(text: &str, port: u16) -> SocketAddr {
    let ip: Ipv6Addr = text.parse().unwrap();
    SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
}

pub fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The Hello of `hello-observed-lan.hex`, which the listener of the
/// handshake transcript sends too.
pub fn nat_listener_hello() -> Hello {
    hello(true, Some(addr("203.0.113.5:4433")))
        .with_observed(Some(addr("198.51.100.9:50000")))
        .with_lan(vec![addr("192.168.1.20:4433"), v6("fd00::20", 4433)])
        .unwrap()
}

/// The dialer's Hello of the handshake transcript.
pub fn transcript_dialer_hello() -> Hello {
    hello(false, None).with_observed(Some(addr("203.0.113.5:4433")))
}

/// The bitfield of `have_bitfield.hex`: chunks 0, 2, 5, 7 and 9 of 10.
pub fn golden_bitfield() -> HaveBitfield {
    let mut bitfield = HaveBitfield::new(10);
    for chunk in [0, 2, 5, 7, 9] {
        bitfield.set(ChunkIndex(chunk), true).unwrap();
    }
    bitfield
}

/// The bytes of `manifest.hex`: a stand-in for a manifest file.
pub const GOLDEN_MANIFEST: &[u8] = b"model_id: tiny-slm-64m\n";

fn entry(id: u8, addr: SocketAddr, flags: PeerFlags) -> PeerEntry {
    PeerEntry {
        id: PeerId([id; 32]),
        addr,
        flags,
    }
}

/// Every golden vector: file name and the message it holds.
pub fn golden_messages() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello.hex",
            Message::Hello(hello(true, Some(addr("192.0.2.7:4433")))),
        ),
        (
            "hello-ipv6.hex",
            Message::Hello(hello(false, Some(v6("2001:db8::1", 4433)))),
        ),
        ("hello-no-listen.hex", Message::Hello(hello(false, None))),
        (
            "hello-observed-lan.hex",
            Message::Hello(nat_listener_hello()),
        ),
        (
            "hello_reject.hex",
            Message::HelloReject {
                reason: HelloRejectReason::WrongSwarm,
                detail: "model id differs".to_owned(),
                peers: vec![],
            },
        ),
        (
            "hello_reject-peers.hex",
            Message::HelloReject {
                reason: HelloRejectReason::TooManyPeers,
                detail: "full".to_owned(),
                peers: vec![
                    entry(0x11, addr("192.0.2.1:4433"), PeerFlags::empty()),
                    entry(0x44, addr("198.51.100.4:4433"), PeerFlags::VIA_RENDEZVOUS),
                ],
            },
        ),
        (
            "have_bitfield.hex",
            Message::HaveBitfield(golden_bitfield()),
        ),
        (
            "have.hex",
            Message::Have {
                chunk: ChunkIndex(7),
            },
        ),
        (
            "request.hex",
            Message::Request {
                chunk: ChunkIndex(3),
            },
        ),
        (
            "request_from.hex",
            Message::RequestFrom {
                chunk: ChunkIndex(3),
                from: 262_144,
            },
        ),
        (
            "cancel.hex",
            Message::Cancel {
                chunk: ChunkIndex(3),
            },
        ),
        (
            "reject.hex",
            Message::Reject {
                chunk: ChunkIndex(3),
                reason: RejectReason::Busy,
            },
        ),
        (
            "peers.hex",
            Message::Peers {
                entries: vec![
                    entry(0x11, addr("192.0.2.1:4433"), PeerFlags::empty()),
                    entry(0x22, v6("2001:db8::2", 7000), PeerFlags::VIA_RENDEZVOUS),
                    entry(0x33, addr("192.168.1.30:4433"), PeerFlags::LAN),
                ],
            },
        ),
        ("keep_alive.hex", Message::KeepAlive),
        (
            "goodbye.hex",
            Message::Goodbye {
                reason: GoodbyeReason::Done,
            },
        ),
        (
            "rendezvous.hex",
            Message::Rendezvous {
                peer: PeerId([0x22; 32]),
            },
        ),
        (
            "connect.hex",
            Message::Connect {
                peer: PeerId([0x33; 32]),
                addrs: vec![addr("198.51.100.23:61000"), v6("2001:db8::23", 61000)],
            },
        ),
        (
            "rendezvous_failed.hex",
            Message::RendezvousFailed {
                peer: PeerId([0x22; 32]),
                reason: RendezvousFailedReason::NotConnected,
            },
        ),
        (
            "manifest_request.hex",
            Message::ManifestRequest {
                manifest_sha256: sha256(GOLDEN_MANIFEST),
            },
        ),
        (
            "manifest.hex",
            Message::Manifest {
                bytes: GOLDEN_MANIFEST.to_vec(),
            },
        ),
        (
            "chunk_list_request.hex",
            Message::ChunkListRequest {
                manifest_sha256: sha256(GOLDEN_MANIFEST),
            },
        ),
        (
            "chunk_hashes.hex",
            Message::ChunkHashes {
                total: 3,
                first: 0,
                hashes: (0..3).map(chunk_hash).collect(),
            },
        ),
        (
            "chunk_hashes-part.hex",
            Message::ChunkHashes {
                total: 13,
                first: 8,
                hashes: (8..13).map(chunk_hash).collect(),
            },
        ),
        (
            "listed_chunks.hex",
            Message::ListedChunks {
                total: 10,
                first: 0,
                chunks: slm_parts_chunk_list(),
            },
        ),
    ]
}

/// The chunk list of `fixtures/merkle/slm-parts.*` (`slm-parts-merkle-v0`,
/// `docs/merkle.md`), read from its file form: each line a hash in hex, a
/// space and the chunk's length.
pub fn slm_parts_chunk_list() -> Vec<([u8; 32], u32)> {
    let text = std::fs::read_to_string(fixtures_dir().join("../merkle/slm-parts.chunk-list"))
        .expect("fixtures/merkle/slm-parts.chunk-list");
    text.lines()
        .map(|line| {
            let (hash, len) = line.split_once(' ').expect("hash, space, length");
            let hash: Vec<u8> = (0..64)
                .step_by(2)
                .map(|i| u8::from_str_radix(&hash[i..i + 2], 16).expect("hex"))
                .collect();
            (
                hash.try_into().expect("32 bytes"),
                len.parse().expect("a length"),
            )
        })
        .collect()
}

/// `H[i]` of the Merkle vectors (`docs/merkle.md`,
/// `fixtures/merkle/vectors.txt`): the SHA-256 of chunk `i`, the ASCII
/// text `minimodel chunk <i>`.
pub fn chunk_hash(i: u32) -> [u8; 32] {
    sha256(format!("minimodel chunk {i}").as_bytes())
}

/// Every delay datagram vector (`fixtures/wire/datagrams/`) and what it
/// decodes to.
pub fn golden_datagrams() -> Vec<(&'static str, minimodel_wire::Datagram)> {
    use minimodel_wire::Datagram;
    vec![
        ("datagrams/stamp.hex", Datagram::Stamp { sent: 1_500_000 }),
        (
            "datagrams/echo.hex",
            Datagram::Echo {
                sent: 1_500_000,
                received: 987_654_321,
            },
        ),
    ]
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The golden piece header: chunk 9 of 10, the short last one.
pub fn golden_piece_header() -> PieceHeader {
    PieceHeader {
        chunk: ChunkIndex(9),
        from: 0,
        chunk_len: 562_816,
        proof: vec![[0xaa; 32], [0xbb; 32]],
    }
}

/// The PieceFrom of `piece_from.hex`: chunk 9 from byte 262,144.
pub fn golden_piece_from() -> PieceHeader {
    PieceHeader {
        chunk: ChunkIndex(9),
        from: 262_144,
        chunk_len: 562_816,
        proof: vec![[0xaa; 32], [0xbb; 32]],
    }
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wire")
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(name)).unwrap()
}

/// Bytes of an annotated hex file: `#` starts a comment to the end of the
/// line; whitespace separates nothing.
pub fn parse_annotated_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    parse_annotated_hex(&fixture_text(name))
}

/// Which stream a transcript's bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    DialerToListener,
    ListenerToDialer,
}

/// A transcript (`handshake.hex`): annotated hex in which the lines
/// `## dialer -> listener` and `## listener -> dialer` say which stream the
/// bytes after them belong to. Returns the bytes of each stream, and the
/// order of the direction switches.
pub fn parse_transcript(text: &str) -> (Vec<u8>, Vec<u8>, Vec<Direction>) {
    let mut to_listener = String::new();
    let mut to_dialer = String::new();
    let mut order = Vec::new();
    let mut current = None;
    for line in text.lines() {
        match line.trim_end() {
            "## dialer -> listener" => {
                current = Some(Direction::DialerToListener);
                order.push(Direction::DialerToListener);
                continue;
            }
            "## listener -> dialer" => {
                current = Some(Direction::ListenerToDialer);
                order.push(Direction::ListenerToDialer);
                continue;
            }
            _ => {}
        }
        let hex = line.split('#').next().unwrap_or("");
        if hex.trim().is_empty() {
            continue;
        }
        match current {
            Some(Direction::DialerToListener) => to_listener.push_str(hex),
            Some(Direction::ListenerToDialer) => to_dialer.push_str(hex),
            None => panic!("transcript bytes before a direction line: {line}"),
        }
        to_listener.push('\n');
        to_dialer.push('\n');
    }
    (
        parse_annotated_hex(&to_listener),
        parse_annotated_hex(&to_dialer),
        order,
    )
}

/// Encodes a message to a fresh buffer.
pub fn frame(message: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    message.encode(&mut buf).unwrap();
    buf
}
