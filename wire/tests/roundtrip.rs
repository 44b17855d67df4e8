//! proptest round trips: every message kind encodes and decodes to itself,
//! through `Message::decode` and through a `FrameDecoder` fed in arbitrary
//! pieces.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use minimodel_wire::{
    ChunkIndex, FrameDecoder, GoodbyeReason, HaveBitfield, Hello, HelloRejectReason, Message,
    PeerEntry, PeerId, PieceHeader, RejectReason,
};
use proptest::prelude::*;

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        // Flow info and scope id are not carried on the wire.
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
        }),
    ]
}

fn chunk() -> impl Strategy<Value = ChunkIndex> {
    any::<u32>().prop_map(ChunkIndex)
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u16>(),
        "[A-Za-z0-9._-]{1,128}",
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        proptest::option::of(socket_addr()),
        "[ -~]{0,64}",
    )
        .prop_map(
            |(
                protocol_version,
                model_id,
                merkle_root,
                artifact_bytes,
                chunk_size,
                chunk_count,
                serving,
                listen,
                agent,
            )| Hello {
                protocol_version,
                model_id,
                merkle_root,
                artifact_bytes,
                chunk_size,
                chunk_count,
                serving,
                listen,
                agent,
            },
        )
}

fn bitfield() -> impl Strategy<Value = HaveBitfield> {
    (0u32..3000).prop_flat_map(|count| {
        proptest::collection::vec(any::<bool>(), count as usize).prop_map(move |bits| {
            let mut bitfield = HaveBitfield::new(count);
            for (i, have) in bits.into_iter().enumerate() {
                bitfield.set(ChunkIndex(i as u32), have).unwrap();
            }
            bitfield
        })
    })
}

fn detail() -> impl Strategy<Value = String> {
    "\\PC{0,80}".prop_filter("at most 256 bytes", |d| d.len() <= 256)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        (proptest::sample::select(HelloRejectReason::ALL), detail())
            .prop_map(|(reason, detail)| Message::HelloReject { reason, detail }),
        bitfield().prop_map(Message::HaveBitfield),
        chunk().prop_map(|chunk| Message::Have { chunk }),
        chunk().prop_map(|chunk| Message::Request { chunk }),
        chunk().prop_map(|chunk| Message::Cancel { chunk }),
        (chunk(), proptest::sample::select(RejectReason::ALL))
            .prop_map(|(chunk, reason)| Message::Reject { chunk, reason }),
        proptest::collection::vec(
            (any::<[u8; 32]>(), socket_addr()).prop_map(|(id, addr)| PeerEntry {
                id: PeerId(id),
                addr
            }),
            0..=32
        )
        .prop_map(|entries| Message::Peers { entries }),
        Just(Message::KeepAlive),
        proptest::sample::select(GoodbyeReason::ALL).prop_map(|reason| Message::Goodbye { reason }),
    ]
}

fn piece_header() -> impl Strategy<Value = PieceHeader> {
    (
        chunk(),
        any::<u32>(),
        proptest::collection::vec(any::<[u8; 32]>(), 0..=32),
    )
        .prop_map(|(chunk, chunk_len, proof)| PieceHeader {
            chunk,
            chunk_len,
            proof,
        })
}

proptest! {
    #[test]
    fn every_message_round_trips(message in message()) {
        let mut bytes = Vec::new();
        let written = message.encode(&mut bytes).unwrap();
        prop_assert_eq!(written, bytes.len());
        prop_assert_eq!(message.frame_len() + 4, bytes.len());
        let mut input = bytes.as_slice();
        let decoded = Message::decode(&mut input).unwrap();
        prop_assert!(input.is_empty());
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn piece_header_round_trips(header in piece_header()) {
        let mut bytes = Vec::new();
        header.encode(&mut bytes).unwrap();
        prop_assert!(bytes.len() <= 4 + 2048);
        let mut input = bytes.as_slice();
        prop_assert_eq!(PieceHeader::decode(&mut input).unwrap(), header);
        prop_assert!(input.is_empty());
    }

    #[test]
    fn frame_decoder_gives_the_same_messages_whatever_the_split(
        messages in proptest::collection::vec(message(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            message.encode(&mut stream).unwrap();
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cut_points.push(0);
        cut_points.push(stream.len());
        cut_points.sort_unstable();
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for window in cut_points.windows(2) {
            decoder.feed(&stream[window[0]..window[1]]).unwrap();
            while let Some(message) = decoder.next_message().unwrap() {
                decoded.push(message);
            }
        }
        decoder.finish().unwrap();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::decode(&mut bytes.as_slice());
        let _ = PieceHeader::decode(&mut bytes.as_slice());
    }
}
