//! Wire codec throughput: encode and decode of every message kind, a
//! full-size bitfield, the piece header, and the incremental decoder over a
//! mixed control stream. Figures: `docs/performance.md`, section "Wire codec".
//!
//! Run: `cargo bench -p minimodel-benches --bench codec`.

use std::hint::black_box;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use minimodel_wire::{
    ChunkIndex, FrameDecoder, GoodbyeReason, HaveBitfield, Hello, HelloRejectReason,
    MAX_CHUNK_COUNT, MAX_PEERS_PER_MESSAGE, Message, PROTOCOL_VERSION, PeerEntry, PeerFlags,
    PeerId, PieceHeader, RejectReason,
};

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        model_id: "tiny-slm-64m".to_owned(),
        merkle_root: [0x5a; 32],
        artifact_bytes: 10_000_000,
        chunk_size: 1 << 20,
        chunk_count: 10,
        serving: true,
        listen: Some("192.0.2.7:4433".parse().unwrap()),
        agent: "minimodel/0.1.0".to_owned(),
        observed: None,
        lan: Vec::new(),
    }
}

/// One representative message of every kind, by name.
fn messages() -> Vec<(&'static str, Message)> {
    let mut bitfield = HaveBitfield::new(1024);
    for i in (0..1024).step_by(3) {
        bitfield.set(ChunkIndex(i), true).unwrap();
    }
    let entries = (0..MAX_PEERS_PER_MESSAGE as u16)
        .map(|i| PeerEntry {
            id: PeerId([i as u8; 32]),
            addr: if i % 2 == 0 {
                SocketAddr::from(([192, 0, 2, i as u8], 4433 + i))
            } else {
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i),
                    4433 + i,
                    0,
                    0,
                ))
            },
            flags: PeerFlags::default(),
        })
        .collect();
    vec![
        ("hello", Message::Hello(hello())),
        (
            "hello_reject",
            Message::HelloReject {
                reason: HelloRejectReason::WrongSwarm,
                detail: "Hello is for model \"other\"; this swarm is \"tiny-slm-64m\"".to_owned(),
                peers: Vec::new(),
            },
        ),
        ("have_bitfield_1024", Message::HaveBitfield(bitfield)),
        (
            "have_bitfield_full",
            Message::HaveBitfield(HaveBitfield::full(MAX_CHUNK_COUNT)),
        ),
        (
            "have",
            Message::Have {
                chunk: ChunkIndex(7),
            },
        ),
        (
            "request",
            Message::Request {
                chunk: ChunkIndex(3),
            },
        ),
        (
            "cancel",
            Message::Cancel {
                chunk: ChunkIndex(3),
            },
        ),
        (
            "reject",
            Message::Reject {
                chunk: ChunkIndex(3),
                reason: RejectReason::Busy,
            },
        ),
        ("peers_32", Message::Peers { entries }),
        ("keep_alive", Message::KeepAlive),
        (
            "goodbye",
            Message::Goodbye {
                reason: GoodbyeReason::Done,
            },
        ),
    ]
}

fn piece_header() -> PieceHeader {
    PieceHeader {
        chunk: ChunkIndex(12345),
        from: 0,
        chunk_len: 1 << 20,
        proof: vec![[0xab; 32]; 17],
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire_encode");
    let mut buf: Vec<u8> = Vec::with_capacity(70_000);
    for (name, message) in messages() {
        let len = message.to_frame().unwrap().len();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &message, |b, message| {
            b.iter(|| {
                buf.clear();
                black_box(message).encode(&mut buf).unwrap();
                black_box(buf.len())
            })
        });
    }
    let header = piece_header();
    let mut frame = Vec::new();
    header.encode(&mut frame).unwrap();
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("piece_header_17", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&header).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire_decode");
    for (name, message) in messages() {
        let frame = message.to_frame().unwrap();
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| Message::decode(&mut black_box(&frame[..])).unwrap())
        });
    }
    let mut frame = Vec::new();
    piece_header().encode(&mut frame).unwrap();
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("piece_header_17", |b| {
        b.iter(|| PieceHeader::decode(&mut black_box(&frame[..])).unwrap())
    });
    group.finish();
}

/// A control stream of small messages fed in 1200-byte reads, as they come
/// off QUIC.
fn frame_decoder(c: &mut Criterion) {
    let mut stream = Vec::new();
    let mut count = 0;
    for i in 0..4000u32 {
        let message = match i % 4 {
            0 => Message::Have {
                chunk: ChunkIndex(i),
            },
            1 => Message::Request {
                chunk: ChunkIndex(i),
            },
            2 => Message::Cancel {
                chunk: ChunkIndex(i),
            },
            _ => Message::KeepAlive,
        };
        message.encode(&mut stream).unwrap();
        count += 1;
    }
    let mut group = c.benchmark_group("wire_frame_decoder");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("small_messages_1200_byte_reads", |b| {
        b.iter(|| {
            let mut decoder = FrameDecoder::new();
            let mut decoded = 0;
            for read in stream.chunks(1200) {
                decoder.feed(read).unwrap();
                while let Some(message) = decoder.next_message().unwrap() {
                    black_box(message);
                    decoded += 1;
                }
            }
            assert_eq!(decoded, count);
        })
    });
    group.finish();
}

criterion_group!(benches, encode, decode, frame_decoder);
criterion_main!(benches);
