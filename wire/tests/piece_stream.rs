//! Piece streams: header context checks and the exact-length rule.

mod common;

use bytes::Bytes;
use common::*;
use minimodel_wire::{
    ChunkIndex, ContextError, DecodeError, LocalMisuse, MessageType, PeerError, PieceHeader,
    PiecePart, PieceStreamReader, ProtocolViolation, SwarmParams,
};

/// A whole piece stream for `chunk` of the golden swarm.
fn piece_stream(header: &PieceHeader, data_len: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    header.encode(&mut bytes).unwrap();
    bytes.extend((0..data_len).map(|i| (i % 251) as u8));
    bytes
}

fn header_for(chunk: u32) -> PieceHeader {
    let params = params();
    let chunk = ChunkIndex(chunk);
    PieceHeader {
        chunk,
        from: 0,
        chunk_len: params.chunk_len(chunk).unwrap(),
        proof: vec![[0x5a; 32]; params.proof_len(chunk).unwrap() as usize],
    }
}

#[test]
fn a_whole_piece_stream_is_received_in_any_pieces() {
    for chunk in [0, 9] {
        let header = header_for(chunk);
        let stream = piece_stream(&header, header.chunk_len as usize);
        for step in [1, 7, 4096, stream.len()] {
            let mut reader = PieceStreamReader::new(params());
            for piece in stream.chunks(step.min(stream.len()).max(1)) {
                reader.feed(Bytes::copy_from_slice(piece)).unwrap();
            }
            assert_eq!(reader.header(), Some(&header));
            assert_eq!(reader.received_len(), header.chunk_len as usize);
            let received = reader.finish().unwrap();
            assert_eq!(received.header, header);
            let data = received.to_vec();
            assert_eq!(data.len(), header.chunk_len as usize);
            assert_eq!(data[1], 1);
        }
    }
}

#[test]
fn an_extra_byte_is_refused_as_soon_as_it_arrives() {
    let header = header_for(9);
    let stream = piece_stream(&header, header.chunk_len as usize + 1);
    let mut reader = PieceStreamReader::new(params());
    let (body, extra) = stream.split_at(stream.len() - 1);
    reader.feed(Bytes::copy_from_slice(body)).unwrap();
    let expected = PeerError::Violation(ProtocolViolation::PieceTooLong {
        chunk: ChunkIndex(9),
        expected: 562_816,
    });
    assert_eq!(
        reader.feed(Bytes::copy_from_slice(extra)),
        Err(expected.clone())
    );
    assert_eq!(reader.feed(Bytes::new()), Err(expected.clone()));
    assert_eq!(reader.finish().unwrap_err(), expected);
}

#[test]
fn a_missing_byte_is_refused_at_fin() {
    let header = header_for(3);
    let stream = piece_stream(&header, header.chunk_len as usize - 1);
    let mut reader = PieceStreamReader::new(params());
    reader.feed(Bytes::from(stream)).unwrap();
    assert_eq!(
        reader.finish(),
        Err(PeerError::Violation(
            ProtocolViolation::PieceFinishedShort {
                chunk: Some(ChunkIndex(3)),
                part: PiecePart::Body,
                expected: 1 << 20,
                received: (1 << 20) - 1
            }
        ))
    );
}

#[test]
fn a_stream_finished_inside_its_header_is_a_violation() {
    let header = header_for(3);
    let stream = piece_stream(&header, 0);
    let mut reader = PieceStreamReader::new(params());
    reader.feed(Bytes::copy_from_slice(&stream[..10])).unwrap();
    assert_eq!(reader.header(), None);
    assert_eq!(
        reader.finish(),
        Err(PeerError::Violation(
            ProtocolViolation::PieceFinishedShort {
                chunk: None,
                part: PiecePart::Header,
                received: 10,
                expected: stream.len() as u64,
            }
        ))
    );
    let mut reader = PieceStreamReader::new(params());
    reader.feed(Bytes::copy_from_slice(&stream[..2])).unwrap();
    assert_eq!(
        reader.finish(),
        Err(PeerError::Violation(
            ProtocolViolation::PieceFinishedShort {
                chunk: None,
                part: PiecePart::Header,
                received: 2,
                expected: 4,
            }
        ))
    );
}

#[test]
fn a_4_gib_header_prefix_is_refused_on_its_four_bytes() {
    let mut reader = PieceStreamReader::new(params());
    assert_eq!(
        reader.feed(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])),
        Err(PeerError::Decode(DecodeError::FrameTooLong {
            length: u32::MAX,
            max: 2048
        }))
    );
}

#[test]
fn a_header_with_the_wrong_chunk_len_is_a_violation() {
    // A full-size length for the short last chunk.
    let mut header = header_for(9);
    header.chunk_len = 1 << 20;
    let expected = ContextError::PieceLength {
        chunk: ChunkIndex(9),
        found: 1 << 20,
        expected: 562_816,
    };
    assert_eq!(header.check_context(&params()), Err(expected.clone()));
    let mut reader = PieceStreamReader::new(params());
    assert_eq!(
        reader.feed(Bytes::from(piece_stream(&header, 0))),
        Err(PeerError::Violation(ProtocolViolation::Context(
            expected.clone()
        )))
    );
    assert_eq!(
        header.encode_checked(&params(), &mut Vec::new()),
        Err(LocalMisuse::Context(expected))
    );
}

#[test]
fn a_header_with_the_wrong_proof_length_is_a_violation() {
    for proof_len in [0, 3, 5, 32] {
        let mut header = header_for(0);
        header.proof = vec![[1; 32]; proof_len];
        assert_eq!(
            header.check_context(&params()),
            Err(ContextError::ProofLength {
                chunk: ChunkIndex(0),
                found: proof_len,
                expected: 4
            })
        );
    }
}

#[test]
fn a_header_for_a_chunk_past_the_count_is_a_violation() {
    let header = PieceHeader {
        chunk: ChunkIndex(10),
        from: 0,
        chunk_len: 1,
        proof: vec![],
    };
    let expected = ContextError::ChunkOutOfRange {
        message_type: MessageType::PieceHeader,
        chunk: ChunkIndex(10),
        chunk_count: 10,
    };
    assert_eq!(header.check_context(&params()), Err(expected.clone()));
    let mut reader = PieceStreamReader::new(params());
    assert_eq!(
        reader.feed(Bytes::from(piece_stream(&header, 1))),
        Err(PeerError::Violation(ProtocolViolation::Context(expected)))
    );
}

#[test]
fn a_piece_from_for_a_chunk_past_the_count_is_named_as_what_it_is() {
    let header = PieceHeader {
        chunk: ChunkIndex(10),
        from: 1,
        chunk_len: 2,
        proof: vec![],
    };
    assert_eq!(
        header.check_context(&params()),
        Err(ContextError::ChunkOutOfRange {
            message_type: MessageType::PieceFrom,
            chunk: ChunkIndex(10),
            chunk_count: 10,
        })
    );
}

#[test]
fn the_golden_header_fits_the_golden_swarm() {
    assert_eq!(golden_piece_header().check_context(&params()), Ok(()));
}

#[test]
fn every_chunk_of_several_geometries_has_a_consistent_header() {
    for (bytes, size) in [(1u64, 1u32), (4096, 1024), (4097, 1024), (100_000, 777)] {
        let count = bytes.div_ceil(u64::from(size)) as u32;
        let params = SwarmParams::new(bytes, size, count).unwrap();
        let mut total = 0u64;
        for i in 0..count {
            let chunk = ChunkIndex(i);
            let header = PieceHeader {
                chunk,
                from: 0,
                chunk_len: params.chunk_len(chunk).unwrap(),
                proof: vec![[0; 32]; params.proof_len(chunk).unwrap() as usize],
            };
            assert_eq!(header.check_context(&params), Ok(()));
            total += u64::from(header.chunk_len);
        }
        assert_eq!(total, bytes);
    }
}
