//! Shared fixtures of the integration tests: the swarm of the golden vectors
//! and the messages they hold.

#![allow(dead_code)]

pub mod control;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;

use minimodel_wire::{
    ChunkIndex, GoodbyeReason, HaveBitfield, Hello, HelloRejectReason, Message, PeerEntry, PeerId,
    PieceHeader, RejectReason, SwarmIdentity, SwarmParams,
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

/// Every golden vector: file name and the message it holds.
pub fn golden_messages() -> Vec<(&'static str, Message)> {
    let mut bitfield = HaveBitfield::new(10);
    for chunk in [0, 2, 5, 7, 9] {
        bitfield.set(ChunkIndex(chunk), true).unwrap();
    }
    vec![
        (
            "hello.hex",
            Message::Hello(hello(true, Some("192.0.2.7:4433".parse().unwrap()))),
        ),
        (
            "hello-ipv6.hex",
            Message::Hello(hello(false, Some(v6("2001:db8::1", 4433)))),
        ),
        ("hello-no-listen.hex", Message::Hello(hello(false, None))),
        (
            "hello_reject.hex",
            Message::HelloReject {
                reason: HelloRejectReason::WrongSwarm,
                detail: "model id differs".to_owned(),
            },
        ),
        ("have_bitfield.hex", Message::HaveBitfield(bitfield)),
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
                    PeerEntry {
                        id: PeerId([0x11; 32]),
                        addr: "192.0.2.1:4433".parse().unwrap(),
                    },
                    PeerEntry {
                        id: PeerId([0x22; 32]),
                        addr: v6("2001:db8::2", 7000),
                    },
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
    ]
}

/// The golden piece header: chunk 9 of 10, the short last one.
pub fn golden_piece_header() -> PieceHeader {
    PieceHeader {
        chunk: ChunkIndex(9),
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
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    parse_annotated_hex(&fixture_text(name))
}

/// Encodes a message to a fresh buffer.
pub fn frame(message: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    message.encode(&mut buf).unwrap();
    buf
}
