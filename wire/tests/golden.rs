//! Golden vectors: every file in `fixtures/wire/` decodes to the expected
//! message and that message encodes to the same bytes; the spec shows each
//! vector verbatim.

mod common;

use bytes::Buf;
use common::*;
use minimodel_wire::{FrameDecoder, Message, PieceHeader};

#[test]
fn every_control_vector_decodes_and_re_encodes_to_the_same_bytes() {
    for (name, expected) in golden_messages() {
        let bytes = fixture_bytes(name);
        let mut input = bytes.as_slice();
        let decoded = Message::decode(&mut input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
        assert!(!input.has_remaining(), "{name}: bytes left over");
        assert_eq!(frame(&expected), bytes, "{name}: encoding differs");
        assert_eq!(expected.frame_len() + 4, bytes.len(), "{name}: frame_len");
    }
}

#[test]
fn piece_header_vector_decodes_and_re_encodes_to_the_same_bytes() {
    let bytes = fixture_bytes("piece_header.hex");
    let mut input = bytes.as_slice();
    let decoded = PieceHeader::decode(&mut input).unwrap();
    assert_eq!(decoded, golden_piece_header());
    assert!(input.is_empty());
    let mut encoded = Vec::new();
    golden_piece_header()
        .encode_checked(&params(), &mut encoded)
        .unwrap();
    assert_eq!(encoded, bytes);
}

#[test]
fn every_message_kind_has_a_vector() {
    let mut kinds: Vec<_> = golden_messages()
        .iter()
        .map(|(_, m)| m.message_type())
        .collect();
    kinds.push(minimodel_wire::MessageType::PieceHeader);
    for kind in minimodel_wire::MessageType::ALL {
        assert!(kinds.contains(&kind), "no golden vector for {kind}");
    }
}

#[test]
fn the_vectors_as_one_stream_decode_one_byte_at_a_time() {
    let messages = golden_messages();
    let stream: Vec<u8> = messages
        .iter()
        .flat_map(|(name, _)| fixture_bytes(name))
        .collect();
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    for byte in &stream {
        decoder.feed(std::slice::from_ref(byte)).unwrap();
        while let Some(message) = decoder.next_message().unwrap() {
            decoded.push(message);
        }
    }
    decoder.finish().unwrap();
    let expected: Vec<_> = messages.into_iter().map(|(_, m)| m).collect();
    assert_eq!(decoded, expected);
}

#[test]
fn the_spec_shows_every_vector_verbatim() {
    let spec_path = fixtures_dir().join("../../docs/wire-protocol.md");
    let spec = std::fs::read_to_string(spec_path).unwrap();
    let mut names: Vec<_> = golden_messages().iter().map(|(n, _)| *n).collect();
    names.push("piece_header.hex");
    names.push("handshake.hex");
    names.extend(golden_datagrams().iter().map(|(n, _)| *n));
    for name in names {
        let text = fixture_text(name);
        assert!(
            spec.contains(&text),
            "docs/wire-protocol.md does not show fixtures/wire/{name} verbatim"
        );
    }
}

#[test]
fn annotated_hex_parser_ignores_comments() {
    assert_eq!(
        parse_annotated_hex("# a 12 comment\n01 0a # ff\nFF\n"),
        vec![0x01, 0x0a, 0xff]
    );
}

#[test]
fn every_vector_file_is_checked() {
    // Each file in fixtures/wire/ is a golden message above, the piece
    // header above, the transcript that `handshakes.rs` replays, or a
    // delay datagram (in `datagrams/`); the relay protocol's vectors (in
    // `relay/`) are `relay_vectors.rs`'s, written by `relay/vectors.py`.
    let mut checked: Vec<_> = golden_messages().iter().map(|(n, _)| *n).collect();
    checked.extend(["piece_header.hex", "handshake.hex"]);
    checked.extend(golden_datagrams().iter().map(|(n, _)| *n));
    let relay = [
        "relay/register.hex",
        "relay/introduce.hex",
        "relay/registered.hex",
        "relay/register_refused.hex",
        "relay/register_refused_network.hex",
        "relay/connect.hex",
        "relay/introduce_failed.hex",
        "relay/channel_closed.hex",
        "relay/datagram.hex",
        "relay/vectors.py",
    ];
    checked.extend(relay);
    let mut files = 0;
    for dir in ["", "datagrams/", "relay/"] {
        for entry in std::fs::read_dir(fixtures_dir().join(dir)).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{dir}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                assert!(
                    ["datagrams", "relay"].contains(&name.as_str()),
                    "fixtures/wire/{name}: unknown folder"
                );
                continue;
            }
            assert!(
                checked.contains(&name.as_str()),
                "fixtures/wire/{name} is checked by no test"
            );
            files += 1;
        }
    }
    assert_eq!(files, checked.len());
}

#[test]
fn the_delay_datagram_vectors_decode_and_re_encode_to_the_same_bytes() {
    use minimodel_wire::Datagram;
    for (name, expected) in golden_datagrams() {
        let bytes = fixture_bytes(name);
        assert_eq!(Datagram::decode(&bytes), Ok(expected), "{name}");
        assert_eq!(expected.encode(), bytes, "{name}");
        let seed = name.replace("datagrams/", "seed-").replace(".hex", "");
        let corpus = fixtures_dir()
            .join("../../fuzz/corpus/wire_datagram")
            .join(seed);
        assert_eq!(std::fs::read(&corpus).unwrap(), bytes, "{name}: fuzz seed");
    }
}
