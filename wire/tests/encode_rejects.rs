//! Negative tests of the encoders: the caps of the decoders, blamed on us
//! (`LocalMisuse`), with nothing written.

mod common;

use common::*;
use minimodel_wire::{
    ChunkIndex, FieldError, GoodbyeReason, HaveBitfield, HelloRejectReason, LocalMisuse,
    MAX_CHUNK_COUNT, MAX_CHUNK_HASHES_PER_MESSAGE, Message, MessageType, PeerEntry, PeerFlags,
    PeerId, PieceHeader,
};

#[test]
fn encode_refuses_a_long_model_id_and_writes_nothing() {
    let mut hello = hello(true, None);
    hello.model_id = "m".repeat(129);
    let mut buf = Vec::new();
    assert_eq!(
        Message::Hello(hello).encode(&mut buf),
        Err(LocalMisuse::Field {
            message_type: MessageType::Hello,
            error: FieldError::ModelIdLength { len: 129 }
        })
    );
    assert!(buf.is_empty());
}

#[test]
fn encode_refuses_a_long_agent() {
    let mut hello = hello(true, None);
    hello.agent = "a".repeat(65);
    assert_eq!(
        Message::Hello(hello).to_frame(),
        Err(LocalMisuse::Field {
            message_type: MessageType::Hello,
            error: FieldError::AgentTooLong { len: 65 }
        })
    );
}

#[test]
fn encode_refuses_a_long_reject_detail() {
    let message = Message::HelloReject {
        reason: HelloRejectReason::Banned,
        detail: "x".repeat(300),
        peers: Vec::new(),
    };
    assert_eq!(
        message.to_frame(),
        Err(LocalMisuse::Field {
            message_type: MessageType::HelloReject,
            error: FieldError::DetailTooLong { len: 300 }
        })
    );
}

#[test]
fn encode_refuses_too_many_peers() {
    let entry = PeerEntry {
        id: PeerId([1; 32]),
        addr: "192.0.2.9:1".parse().unwrap(),
        flags: PeerFlags::default(),
    };
    let message = Message::Peers {
        entries: vec![entry; 33],
    };
    assert_eq!(
        message.to_frame(),
        Err(LocalMisuse::Field {
            message_type: MessageType::Peers,
            error: FieldError::TooManyPeers { count: 33 }
        })
    );
    let full = Message::Peers {
        entries: vec![entry; 32],
    };
    assert!(full.to_frame().is_ok());
}

#[test]
fn encode_refuses_a_long_proof() {
    let header = PieceHeader {
        chunk: ChunkIndex(0),
        from: 0,
        chunk_len: 1,
        proof: vec![[0; 32]; 33],
    };
    assert_eq!(
        header.encode(&mut Vec::new()),
        Err(LocalMisuse::Field {
            message_type: MessageType::PieceHeader,
            error: FieldError::ProofTooLong { count: 33 }
        })
    );
}

#[test]
fn encode_refuses_a_bitfield_larger_than_a_frame() {
    assert!(
        Message::HaveBitfield(HaveBitfield::full(MAX_CHUNK_COUNT))
            .to_frame()
            .is_ok()
    );
    let too_big = Message::HaveBitfield(HaveBitfield::new(MAX_CHUNK_COUNT + 8));
    assert_eq!(
        too_big.to_frame(),
        Err(LocalMisuse::FrameTooLong {
            message_type: MessageType::HaveBitfield,
            length: 65537,
            max: 65536
        })
    );
}

#[test]
fn encode_into_a_full_buffer_writes_nothing() {
    let mut storage = [0u8; 8];
    let mut buf = &mut storage[..];
    assert_eq!(
        Message::Goodbye {
            reason: GoodbyeReason::Idle
        }
        .encode(&mut buf),
        Err(LocalMisuse::BufferTooSmall {
            needed: 9,
            available: 8
        })
    );
    assert_eq!(storage, [0; 8]);
}

#[test]
fn encode_refuses_chunk_hashes_that_break_their_rules() {
    let chunk_hashes = |total, first, count| Message::ChunkHashes {
        total,
        first,
        hashes: vec![[0x5a; 32]; count],
    };
    let over = MAX_CHUNK_HASHES_PER_MESSAGE + 1;
    for (message, error) in [
        (
            chunk_hashes(10, 0, 0),
            FieldError::ChunkHashesCount { count: 0 },
        ),
        (
            chunk_hashes(MAX_CHUNK_COUNT, 0, over),
            FieldError::ChunkHashesCount { count: over as u64 },
        ),
        (
            chunk_hashes(0, 0, 1),
            FieldError::ChunkListTotal { total: 0 },
        ),
        (
            chunk_hashes(MAX_CHUNK_COUNT + 1, 0, 1),
            FieldError::ChunkListTotal {
                total: MAX_CHUNK_COUNT + 1,
            },
        ),
        (
            chunk_hashes(10, 8, 3),
            FieldError::ChunkHashesPastTotal {
                first: 8,
                count: 3,
                total: 10,
            },
        ),
    ] {
        let mut buf = Vec::new();
        assert_eq!(
            message.encode(&mut buf),
            Err(LocalMisuse::Field {
                message_type: MessageType::ChunkHashes,
                error
            })
        );
        assert!(buf.is_empty());
    }
    // 2000 hashes, the most one message carries, fit a control frame.
    let full = chunk_hashes(MAX_CHUNK_COUNT, 0, MAX_CHUNK_HASHES_PER_MESSAGE);
    assert_eq!(full.to_frame().unwrap().len(), 4 + 1 + 16 + 2000 * 32);
}
