//! proptest round trips: every message kind encodes and decodes to itself,
//! through `Message::decode` and through a `FrameDecoder` fed in arbitrary
//! pieces.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use minimodel_wire::{
    ChunkIndex, FrameDecoder, GoodbyeReason, HaveBitfield, Hello, HelloRejectReason,
    MAX_CHUNK_COUNT, MAX_CHUNK_HASHES_PER_MESSAGE, MAX_LAN_ADDRS, MAX_LISTED_CHUNKS_PER_MESSAGE,
    MAX_MANIFEST_BYTES, Message, PeerEntry, PeerFlags, PeerId, PieceHeader, RejectReason,
    RendezvousFailedReason,
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

/// An address that passes `is_lan_addr`: private or link-local IPv4,
/// unique-local or link-local IPv6, port not 0.
fn lan_addr() -> impl Strategy<Value = SocketAddr> {
    let port = 1..=u16::MAX;
    prop_oneof![
        (any::<[u8; 3]>(), port.clone())
            .prop_map(|([b, c, d], port)| { SocketAddr::from((Ipv4Addr::new(10, b, c, d), port)) }),
        (16u8..32, any::<[u8; 2]>(), port.clone()).prop_map(|(b, [c, d], port)| {
            SocketAddr::from((Ipv4Addr::new(172, b, c, d), port))
        }),
        (any::<[u8; 2]>(), port.clone())
            .prop_map(|([c, d], port)| { SocketAddr::from((Ipv4Addr::new(192, 168, c, d), port)) }),
        (any::<[u8; 2]>(), port.clone())
            .prop_map(|([c, d], port)| { SocketAddr::from((Ipv4Addr::new(169, 254, c, d), port)) }),
        (
            any::<[u16; 8]>(),
            prop_oneof![Just(0xfc00u16), Just(0xfe80u16)],
            port
        )
            .prop_map(|(mut segments, prefix, port)| {
                segments[0] =
                    prefix | (segments[0] & if prefix == 0xfc00 { 0x01ff } else { 0x003f });
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(segments), port, 0, 0))
            }),
    ]
}

/// An observed address: never IPv4-mapped IPv6.
fn observed_addr() -> impl Strategy<Value = SocketAddr> {
    socket_addr().prop_map(minimodel_wire::canonical_addr)
}

fn peer_entry() -> impl Strategy<Value = PeerEntry> {
    (any::<[u8; 32]>(), socket_addr(), 0u8..4).prop_map(|(id, addr, bits)| PeerEntry {
        id: PeerId(id),
        addr,
        flags: PeerFlags::from_bits(bits).unwrap(),
    })
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
        proptest::option::of(observed_addr()),
        proptest::collection::vec(lan_addr(), 0..=MAX_LAN_ADDRS),
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
                observed,
                lan,
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
                observed,
                lan,
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

/// A ListedChunks within its rules: 1 to 1800 chunks of any length of 1
/// or more, from any `first` of any `total` they fit in.
fn listed_chunks() -> impl Strategy<Value = Message> {
    let max = MAX_LISTED_CHUNKS_PER_MESSAGE;
    prop_oneof![1usize..=40, max - 4..=max]
        .prop_flat_map(|count| {
            (
                proptest::collection::vec((any::<[u8; 32]>(), 1..=u32::MAX), count),
                count as u32..=MAX_CHUNK_COUNT,
                any::<prop::sample::Index>(),
            )
        })
        .prop_map(|(chunks, total, at)| {
            let first = at.index((total - chunks.len() as u32) as usize + 1) as u32;
            Message::ListedChunks {
                total,
                first,
                chunks,
            }
        })
}

/// A ChunkHashes within its rules: 1 to 2000 hashes (mostly a few, some
/// at the cap) from any `first` of any `total` they fit in.
fn chunk_hashes() -> impl Strategy<Value = Message> {
    let max = MAX_CHUNK_HASHES_PER_MESSAGE;
    prop_oneof![1usize..=40, max - 4..=max]
        .prop_flat_map(|count| {
            (
                proptest::collection::vec(any::<[u8; 32]>(), count),
                count as u32..=MAX_CHUNK_COUNT,
                any::<prop::sample::Index>(),
            )
        })
        .prop_map(|(hashes, total, at)| {
            let first = at.index((total - hashes.len() as u32) as usize + 1) as u32;
            Message::ChunkHashes {
                total,
                first,
                hashes,
            }
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        (
            proptest::sample::select(HelloRejectReason::ALL),
            detail(),
            proptest::collection::vec(peer_entry(), 0..=32)
        )
            .prop_map(|(reason, detail, peers)| Message::HelloReject {
                reason,
                detail,
                peers
            }),
        bitfield().prop_map(Message::HaveBitfield),
        chunk().prop_map(|chunk| Message::Have { chunk }),
        chunk().prop_map(|chunk| Message::Request { chunk }),
        (chunk(), 1..=u32::MAX).prop_map(|(chunk, from)| Message::RequestFrom { chunk, from }),
        chunk().prop_map(|chunk| Message::Cancel { chunk }),
        (chunk(), proptest::sample::select(RejectReason::ALL))
            .prop_map(|(chunk, reason)| Message::Reject { chunk, reason }),
        proptest::collection::vec(peer_entry(), 0..=32)
            .prop_map(|entries| Message::Peers { entries }),
        Just(Message::KeepAlive),
        proptest::sample::select(GoodbyeReason::ALL).prop_map(|reason| Message::Goodbye { reason }),
        any::<[u8; 32]>().prop_map(|peer| Message::Rendezvous { peer: PeerId(peer) }),
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(socket_addr(), 1..=4)
        )
            .prop_map(|(peer, addrs)| Message::Connect {
                peer: PeerId(peer),
                addrs
            }),
        (
            any::<[u8; 32]>(),
            proptest::sample::select(RendezvousFailedReason::ALL)
        )
            .prop_map(|(peer, reason)| Message::RendezvousFailed {
                peer: PeerId(peer),
                reason
            }),
        any::<[u8; 32]>().prop_map(|manifest_sha256| Message::ManifestRequest { manifest_sha256 }),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000),
            proptest::collection::vec(any::<u8>(), MAX_MANIFEST_BYTES - 16..=MAX_MANIFEST_BYTES),
        ]
        .prop_map(|bytes| Message::Manifest { bytes }),
        any::<[u8; 32]>().prop_map(|manifest_sha256| Message::ChunkListRequest { manifest_sha256 }),
        chunk_hashes(),
        listed_chunks(),
    ]
}

fn piece_header() -> impl Strategy<Value = PieceHeader> {
    (
        chunk(),
        prop_oneof![Just(0u32), 1..=u32::MAX],
        any::<u32>(),
        proptest::collection::vec(any::<[u8; 32]>(), 0..=32),
    )
        .prop_map(|(chunk, from, chunk_len, proof)| PieceHeader {
            chunk,
            from,
            chunk_len,
            proof,
        })
}

proptest! {
    #[test]
    fn every_message_round_trips(message in message()) {
        prop_assert_eq!(message.validate(), Ok(()));
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

#[test]
fn the_message_strategy_covers_every_control_message_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let message = message().new_tree(&mut runner).unwrap().current();
        seen.insert(message.message_type());
    }
    for kind in minimodel_wire::MessageType::ALL {
        if !matches!(
            kind,
            minimodel_wire::MessageType::PieceHeader | minimodel_wire::MessageType::PieceFrom
        ) {
            assert!(seen.contains(&kind), "no {kind} generated");
        }
    }
}
