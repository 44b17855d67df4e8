//! Negative tests of the decoders: one per reject rule (`DecodeError`).

mod common;

use common::*;
use std::net::SocketAddr;

use minimodel_wire::{
    ChunkIndex, DecodeError, FieldError, FrameDecoder, MAX_CHUNK_COUNT,
    MAX_CHUNK_HASHES_PER_MESSAGE, MAX_MANIFEST_BYTES, Message, MessageType, PieceHeader,
};

/// A frame with the given type byte and body.
fn raw_frame(type_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = ((body.len() + 1) as u32).to_le_bytes().to_vec();
    bytes.push(type_byte);
    bytes.extend_from_slice(body);
    bytes
}

/// The body of a golden vector (after prefix and type byte).
fn golden_body(name: &str) -> Vec<u8> {
    fixture_bytes(name)[5..].to_vec()
}

fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    Message::decode(&mut &bytes[..])
}

fn field_error(message_type: MessageType, error: FieldError) -> DecodeError {
    DecodeError::Field {
        message_type,
        error,
    }
}

// Offsets in the Hello body of hello.hex.
const MODEL_ID_LEN_AT: usize = 2;
const MODEL_ID_AT: usize = 10;
const SERVING_AT: usize = MODEL_ID_AT + 12 + 32 + 8 + 4 + 4;
const LISTEN_TAG_AT: usize = SERVING_AT + 1;

/// A Hello body with the given model id and agent, raw, without an
/// observed address or LAN addresses.
fn hello_body(model_id: &[u8], agent: &[u8]) -> Vec<u8> {
    hello_body_with(model_id, agent, &[0], &0u64.to_le_bytes())
}

/// A Hello body whose `observed` and `lan` fields are the raw bytes given
/// (an Option tag and its address; a count and its addresses).
fn hello_body_with(model_id: &[u8], agent: &[u8], observed: &[u8], lan: &[u8]) -> Vec<u8> {
    let mut body = minimodel_wire::PROTOCOL_VERSION.to_le_bytes().to_vec();
    body.extend_from_slice(&(model_id.len() as u64).to_le_bytes());
    body.extend_from_slice(model_id);
    body.extend_from_slice(&root());
    body.extend_from_slice(&10_000_000u64.to_le_bytes());
    body.extend_from_slice(&(1u32 << 20).to_le_bytes());
    body.extend_from_slice(&10u32.to_le_bytes());
    body.push(0); // serving
    body.push(0); // listen: None
    body.extend_from_slice(&(agent.len() as u64).to_le_bytes());
    body.extend_from_slice(agent);
    body.extend_from_slice(observed);
    body.extend_from_slice(lan);
    body
}

/// A `SocketAddr` as the wire encodes it: `u32` variant, octets, `u16` port.
fn raw_addr(addr: SocketAddr) -> Vec<u8> {
    let mut bytes = Vec::new();
    match addr {
        SocketAddr::V4(v4) => {
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&v6.ip().octets());
        }
    }
    bytes.extend_from_slice(&addr.port().to_le_bytes());
    bytes
}

/// A `Vec<SocketAddr>` as the wire encodes it, with the count given apart
/// (so that it may lie).
fn raw_addrs(count: u64, addrs: &[&str]) -> Vec<u8> {
    let mut bytes = count.to_le_bytes().to_vec();
    for text in addrs {
        bytes.extend_from_slice(&raw_addr(addr(text)));
    }
    bytes
}

/// One peer entry as the wire encodes it.
fn raw_entry(id: u8, addr_text: &str, flags: u8) -> Vec<u8> {
    let mut bytes = vec![id; 32];
    bytes.extend_from_slice(&raw_addr(addr(addr_text)));
    bytes.push(flags);
    bytes
}

/// A HelloReject body: reason code, detail, then the raw peer entries
/// behind a count that may lie.
fn hello_reject_body(code: u32, detail: &[u8], count: u64, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = code.to_le_bytes().to_vec();
    body.extend_from_slice(&(detail.len() as u64).to_le_bytes());
    body.extend_from_slice(detail);
    body.extend_from_slice(&count.to_le_bytes());
    for entry in entries {
        body.extend_from_slice(entry);
    }
    body
}

#[test]
fn the_raw_helpers_match_the_golden_vectors() {
    assert_eq!(
        raw_frame(0x01, &hello_body(b"tiny-slm-64m", b"minimodel/0.1.0")),
        fixture_bytes("hello-no-listen.hex")
    );
    let mut observed = vec![1];
    observed.extend_from_slice(&raw_addr(addr("198.51.100.9:50000")));
    let lan = raw_addrs(2, &["192.168.1.20:4433", "[fd00::20]:4433"]);
    let mut body = hello_body_with(b"tiny-slm-64m", b"minimodel/0.1.0", &observed, &lan);
    // hello-observed-lan.hex: serving, listening on 203.0.113.5:4433.
    body[SERVING_AT] = 1;
    let mut listen = vec![1];
    listen.extend_from_slice(&raw_addr(addr("203.0.113.5:4433")));
    body.splice(LISTEN_TAG_AT..=LISTEN_TAG_AT, listen);
    assert_eq!(
        raw_frame(0x01, &body),
        fixture_bytes("hello-observed-lan.hex")
    );
    let entries = [
        raw_entry(0x11, "192.0.2.1:4433", 0x00),
        raw_entry(0x44, "198.51.100.4:4433", 0x02),
    ];
    assert_eq!(
        raw_frame(0x02, &hello_reject_body(2, b"full", 2, &entries)),
        fixture_bytes("hello_reject-peers.hex")
    );
}

#[test]
fn frame_length_zero_is_refused() {
    assert_eq!(decode(&[0, 0, 0, 0, 9]), Err(DecodeError::EmptyFrame));
    let mut decoder = FrameDecoder::new();
    assert_eq!(decoder.feed(&[0, 0, 0, 0]), Err(DecodeError::EmptyFrame));
}

#[test]
fn frame_length_65537_is_refused() {
    let mut bytes = 65537u32.to_le_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(0x09, 65537));
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::FrameTooLong {
            length: 65537,
            max: 65536
        })
    );
}

#[test]
fn frame_length_65536_is_the_cap_not_over_it() {
    // A KeepAlive padded to the cap gets past the length check and fails
    // only on its trailing bytes.
    let mut bytes = 65536u32.to_le_bytes().to_vec();
    bytes.push(0x09);
    bytes.extend(std::iter::repeat_n(0, 65535));
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::TrailingBytes {
            message_type: MessageType::KeepAlive,
            trailing: 65535
        })
    );
}

#[test]
fn a_4_gib_prefix_is_refused_on_its_four_bytes() {
    let four_gib = [0xff, 0xff, 0xff, 0xff];
    let expected = DecodeError::FrameTooLong {
        length: u32::MAX,
        max: 65536,
    };
    assert_eq!(decode(&four_gib), Err(expected.clone()));
    let mut decoder = FrameDecoder::new();
    decoder.feed(&four_gib[..3]).unwrap();
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.feed(&four_gib[3..]), Err(expected.clone()));
    // The decoder stays failed and holds nothing.
    assert_eq!(decoder.buffered_len(), 0);
    assert_eq!(decoder.next_message(), Err(expected.clone()));
    assert_eq!(decoder.feed(&[1, 0, 0, 0, 9]), Err(expected));
}

#[test]
fn a_bad_prefix_after_a_good_frame_loses_nothing_before_it() {
    let mut bytes = frame(&Message::KeepAlive);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let mut decoder = FrameDecoder::new();
    decoder.feed(&bytes).unwrap();
    assert_eq!(decoder.next_message(), Ok(Some(Message::KeepAlive)));
    assert!(matches!(
        decoder.next_message(),
        Err(DecodeError::FrameTooLong { .. })
    ));
}

#[test]
fn a_stream_ending_inside_a_frame_is_incomplete() {
    let bytes = frame(&Message::Have {
        chunk: ChunkIndex(1),
    });
    assert_eq!(
        decode(&bytes[..6]),
        Err(DecodeError::Incomplete {
            needed: 9,
            available: 6
        })
    );
    let mut decoder = FrameDecoder::new();
    decoder.feed(&bytes[..6]).unwrap();
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(
        decoder.finish(),
        Err(DecodeError::Incomplete {
            needed: 9,
            available: 6
        })
    );
    let mut short = FrameDecoder::new();
    short.feed(&bytes[..2]).unwrap();
    assert_eq!(
        short.finish(),
        Err(DecodeError::Incomplete {
            needed: 4,
            available: 2
        })
    );
}

#[test]
fn unknown_types_are_refused_by_their_byte() {
    // 0x0b to 0x12 are the messages v2 added, 0x13 (and the piece
    // stream's 0x21) v3's; 0x14 is the first unknown.
    for type_byte in [0x00, 0x14, 0x1f, 0x22, 0x80, 0xff] {
        let error = decode(&raw_frame(type_byte, &[])).unwrap_err();
        assert_eq!(error, DecodeError::UnknownType { type_byte });
        assert!(error.to_string().contains(&format!("{type_byte:#04x}")));
    }
    // The v2 type bytes are known: an empty body fails on its first field
    // (or, for none of them, decodes), never as an unknown type.
    for type_byte in 0x0b..=0x13 {
        let error = decode(&raw_frame(type_byte, &[])).unwrap_err();
        assert!(
            matches!(&error, DecodeError::Body { detail, .. } if detail.contains("UnexpectedEnd")),
            "{type_byte:#04x}: {error:?}"
        );
    }
}

#[test]
fn a_piece_header_on_the_control_stream_is_refused() {
    for name in ["piece_header.hex", "piece_from.hex"] {
        let bytes = fixture_bytes(name);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::PieceHeaderOnControlStream),
            "{name}"
        );
    }
}

#[test]
fn an_offset_of_zero_is_refused_in_a_request_from_and_a_piece_from() {
    // RequestFrom for chunk 3 from byte 0.
    let mut body = 3u32.to_le_bytes().to_vec();
    body.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        decode(&raw_frame(0x13, &body)),
        Err(field_error(
            MessageType::RequestFrom,
            FieldError::ZeroOffset
        ))
    );
    // The vector's PieceFrom with its offset zeroed (bytes 9 to 12).
    let mut bytes = fixture_bytes("piece_from.hex");
    bytes[9..13].copy_from_slice(&[0; 4]);
    assert_eq!(
        PieceHeader::decode(&mut bytes.as_slice()),
        Err(field_error(MessageType::PieceFrom, FieldError::ZeroOffset))
    );
    // And one is not sent: RequestFrom from 0 breaks a field rule.
    let request = Message::RequestFrom {
        chunk: ChunkIndex(3),
        from: 0,
    };
    assert_eq!(request.validate(), Err(FieldError::ZeroOffset));
}

#[test]
fn a_piece_stream_must_start_with_a_piece_header() {
    let bytes = fixture_bytes("have.hex");
    assert_eq!(
        PieceHeader::decode(&mut bytes.as_slice()),
        Err(DecodeError::ExpectedPieceHeader { type_byte: 0x04 })
    );
}

#[test]
fn a_piece_header_frame_over_2_kib_is_refused() {
    let mut bytes = 2049u32.to_le_bytes().to_vec();
    bytes.push(0x20);
    assert_eq!(
        PieceHeader::decode(&mut bytes.as_slice()),
        Err(DecodeError::FrameTooLong {
            length: 2049,
            max: 2048
        })
    );
}

#[test]
fn a_short_body_is_malformed() {
    let error = decode(&raw_frame(0x04, &[7, 0])).unwrap_err();
    assert!(
        matches!(
            &error,
            DecodeError::Body {
                message_type: MessageType::Have,
                detail
            } if detail.contains("UnexpectedEnd")
        ),
        "{error:?}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    assert_eq!(
        decode(&raw_frame(0x04, &[7, 0, 0, 0, 0])),
        Err(DecodeError::TrailingBytes {
            message_type: MessageType::Have,
            trailing: 1
        })
    );
    assert_eq!(
        decode(&raw_frame(0x09, &[0, 0])),
        Err(DecodeError::TrailingBytes {
            message_type: MessageType::KeepAlive,
            trailing: 2
        })
    );
    let mut hello = golden_body("hello.hex");
    hello.push(0);
    assert_eq!(
        decode(&raw_frame(0x01, &hello)),
        Err(DecodeError::TrailingBytes {
            message_type: MessageType::Hello,
            trailing: 1
        })
    );
    let mut piece = golden_body("piece_header.hex");
    piece.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        PieceHeader::decode(&mut raw_frame(0x20, &piece).as_slice()),
        Err(DecodeError::TrailingBytes {
            message_type: MessageType::PieceHeader,
            trailing: 3
        })
    );
}

#[test]
fn model_id_too_long_is_refused() {
    let body = hello_body(&[b'a'; 129], b"");
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::ModelIdLength { len: 129 }
        ))
    );
}

#[test]
fn empty_model_id_is_refused() {
    let body = hello_body(b"", b"");
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::ModelIdLength { len: 0 }
        ))
    );
}

#[test]
fn model_id_outside_its_charset_is_refused() {
    let body = hello_body(b"../etc", b"");
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::ModelIdCharacter {
                position: 2,
                byte: b'/'
            }
        ))
    );
}

#[test]
fn model_id_that_is_not_utf8_is_malformed() {
    let body = hello_body(&[b'a', 0xff, b'b'], b"");
    let error = decode(&raw_frame(0x01, &body)).unwrap_err();
    assert!(
        matches!(&error, DecodeError::Body { message_type: MessageType::Hello, detail } if detail.contains("Utf8")),
        "{error:?}"
    );
}

#[test]
fn agent_too_long_is_refused() {
    let body = hello_body(b"m", &[b'x'; 65]);
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::AgentTooLong { len: 65 }
        ))
    );
}

#[test]
fn agent_with_a_control_byte_is_refused() {
    let body = hello_body(b"m", b"ok\x07");
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::AgentCharacter {
                position: 2,
                byte: 7
            }
        ))
    );
}

#[test]
fn a_model_id_length_past_the_body_is_malformed() {
    let mut body = golden_body("hello.hex");
    body[MODEL_ID_LEN_AT..MODEL_ID_LEN_AT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode(&raw_frame(0x01, &body)),
        Err(DecodeError::Body {
            message_type: MessageType::Hello,
            ..
        })
    ));
}

#[test]
fn a_bool_other_than_0_or_1_is_malformed() {
    let mut body = golden_body("hello.hex");
    assert_eq!(body[SERVING_AT], 1);
    body[SERVING_AT] = 2;
    let error = decode(&raw_frame(0x01, &body)).unwrap_err();
    assert!(
        matches!(&error, DecodeError::Body { detail, .. } if detail.contains("InvalidBooleanValue")),
        "{error:?}"
    );
}

#[test]
fn an_option_tag_other_than_0_or_1_is_malformed() {
    let mut body = golden_body("hello.hex");
    assert_eq!(body[LISTEN_TAG_AT], 1);
    body[LISTEN_TAG_AT] = 2;
    assert!(matches!(
        decode(&raw_frame(0x01, &body)),
        Err(DecodeError::Body { .. })
    ));
}

#[test]
fn a_socket_address_variant_other_than_0_or_1_is_malformed() {
    let mut body = golden_body("hello.hex");
    body[LISTEN_TAG_AT + 1] = 2;
    let error = decode(&raw_frame(0x01, &body)).unwrap_err();
    assert!(
        matches!(&error, DecodeError::Body { detail, .. } if detail.contains("UnexpectedVariant")),
        "{error:?}"
    );
}

#[test]
fn reject_detail_too_long_is_refused() {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&257u64.to_le_bytes());
    body.extend_from_slice(&[b'd'; 257]);
    assert_eq!(
        decode(&raw_frame(0x02, &body)),
        Err(field_error(
            MessageType::HelloReject,
            FieldError::DetailTooLong { len: 257 }
        ))
    );
}

#[test]
fn reject_detail_with_a_control_character_is_refused() {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&3u64.to_le_bytes());
    body.extend_from_slice(b"a\rb");
    assert_eq!(
        decode(&raw_frame(0x02, &body)),
        Err(field_error(
            MessageType::HelloReject,
            FieldError::DetailCharacter {
                position: 1,
                found: '\r'
            }
        ))
    );
}

#[test]
fn unknown_reason_codes_are_refused() {
    // Each body is complete but for its reason code, the first code past
    // the last defined one (and the largest) of its table.
    let reject = |code: u32| {
        let mut body = 3u32.to_le_bytes().to_vec();
        body.extend_from_slice(&code.to_le_bytes());
        body
    };
    let rendezvous_failed = |code: u32| {
        let mut body = vec![0x22; 32];
        body.extend_from_slice(&code.to_le_bytes());
        body
    };
    let cases: [(u8, MessageType, u32, Vec<u8>); 8] = [
        (
            0x02,
            MessageType::HelloReject,
            8,
            hello_reject_body(8, b"", 0, &[]),
        ),
        (
            0x02,
            MessageType::HelloReject,
            u32::MAX,
            hello_reject_body(u32::MAX, b"", 0, &[]),
        ),
        (0x07, MessageType::Reject, 4, reject(4)),
        (0x07, MessageType::Reject, u32::MAX, reject(u32::MAX)),
        (0x0a, MessageType::Goodbye, 7, 7u32.to_le_bytes().to_vec()),
        (
            0x0a,
            MessageType::Goodbye,
            u32::MAX,
            u32::MAX.to_le_bytes().to_vec(),
        ),
        (0x0d, MessageType::RendezvousFailed, 5, rendezvous_failed(5)),
        (
            0x0d,
            MessageType::RendezvousFailed,
            u32::MAX,
            rendezvous_failed(u32::MAX),
        ),
    ];
    for (type_byte, message_type, code, body) in cases {
        assert_eq!(
            decode(&raw_frame(type_byte, &body)),
            Err(DecodeError::UnknownReason { message_type, code }),
            "{message_type} code {code}"
        );
    }
    // The last defined codes of the tables v2 extended decode.
    assert!(decode(&raw_frame(0x02, &hello_reject_body(7, b"", 0, &[]))).is_ok());
    assert!(decode(&raw_frame(0x0d, &rendezvous_failed(4))).is_ok());
}

#[test]
fn too_many_peers_are_refused_before_reading_them() {
    let entry = &golden_body("peers.hex")[8..8 + 32 + 10 + 1];
    let mut body = 33u64.to_le_bytes().to_vec();
    for _ in 0..33 {
        body.extend_from_slice(entry);
    }
    assert_eq!(
        decode(&raw_frame(0x08, &body)),
        Err(field_error(
            MessageType::Peers,
            FieldError::TooManyPeers { count: 33 }
        ))
    );
    // A huge count is refused on the count alone.
    let huge = (1u64 << 60).to_le_bytes();
    assert_eq!(
        decode(&raw_frame(0x08, &huge)),
        Err(field_error(
            MessageType::Peers,
            FieldError::TooManyPeers { count: 1 << 60 }
        ))
    );
}

#[test]
fn proof_too_long_is_refused() {
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&1024u32.to_le_bytes());
    body.extend_from_slice(&33u64.to_le_bytes());
    body.extend(std::iter::repeat_n(0xcc, 33 * 32));
    assert_eq!(
        PieceHeader::decode(&mut raw_frame(0x20, &body).as_slice()),
        Err(field_error(
            MessageType::PieceHeader,
            FieldError::ProofTooLong { count: 33 }
        ))
    );
}

#[test]
fn bitfield_of_the_wrong_length_is_refused() {
    let mut body = 10u32.to_le_bytes().to_vec();
    body.extend_from_slice(&3u64.to_le_bytes());
    body.extend_from_slice(&[0xff, 0xc0, 0x00]);
    assert_eq!(
        decode(&raw_frame(0x03, &body)),
        Err(field_error(
            MessageType::HaveBitfield,
            FieldError::BitfieldLength {
                chunk_count: 10,
                expected: 2,
                found: 3
            }
        ))
    );
}

#[test]
fn bitfield_with_spare_bits_set_is_refused() {
    let mut body = golden_body("have_bitfield.hex");
    let last = body.len() - 1;
    body[last] |= 0x01;
    assert_eq!(
        decode(&raw_frame(0x03, &body)),
        Err(field_error(
            MessageType::HaveBitfield,
            FieldError::BitfieldSpareBits {
                chunk_count: 10,
                last_byte: 0x41
            }
        ))
    );
}

#[test]
fn errors_name_the_numbers() {
    let error = decode(&[0x01, 0x00, 0x01, 0x00]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "frame length 65537 exceeds this stream's limit of 65536 bytes"
    );
    let error = decode(&raw_frame(0x0a, &9u32.to_le_bytes())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Goodbye (0x0a) carries reason code 9, which is not defined"
    );
}

// Rules of protocol v2.

/// The `observed` field of a Hello: `Some` and the address.
fn observed(text: &str) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend_from_slice(&raw_addr(addr(text)));
    bytes
}

#[test]
fn more_than_four_lan_addresses_are_refused_before_reading_them() {
    let five = [
        "192.168.1.1:1",
        "192.168.1.2:1",
        "192.168.1.3:1",
        "192.168.1.4:1",
        "192.168.1.5:1",
    ];
    let expected = |count| {
        Err(field_error(
            MessageType::Hello,
            FieldError::TooManyLanAddrs { count },
        ))
    };
    let body = hello_body_with(b"m", b"", &[0], &raw_addrs(5, &five));
    assert_eq!(decode(&raw_frame(0x01, &body)), expected(5));
    // Refused on the count alone: no address follows it here.
    let body = hello_body_with(b"m", b"", &[0], &raw_addrs(5, &[]));
    assert_eq!(decode(&raw_frame(0x01, &body)), expected(5));
    let body = hello_body_with(b"m", b"", &[0], &raw_addrs(u64::MAX, &[]));
    assert_eq!(decode(&raw_frame(0x01, &body)), expected(u64::MAX));
    // Four is the limit, not over it.
    let body = hello_body_with(b"m", b"", &[0], &raw_addrs(4, &five[..4]));
    let Ok(Message::Hello(hello)) = decode(&raw_frame(0x01, &body)) else {
        panic!("four LAN addresses are refused");
    };
    assert_eq!(hello.lan.len(), 4);
}

#[test]
fn a_lan_address_off_the_local_network_is_refused_by_its_position() {
    for (bad, why) in [
        ("8.8.8.8:4433", "public IPv4"),
        ("[2001:db8::1]:4433", "global IPv6"),
        ("127.0.0.1:4433", "loopback"),
        ("[::1]:4433", "IPv6 loopback"),
        ("0.0.0.0:4433", "unspecified"),
        ("100.64.0.1:4433", "carrier-grade NAT"),
        ("[::ffff:192.168.1.20]:4433", "IPv4-mapped IPv6"),
        ("[ff02::1]:4433", "multicast"),
        ("192.168.1.20:0", "port 0"),
    ] {
        let lan = raw_addrs(2, &["10.0.0.2:4433", bad]);
        let body = hello_body_with(b"m", b"", &[0], &lan);
        assert_eq!(
            decode(&raw_frame(0x01, &body)),
            Err(field_error(
                MessageType::Hello,
                FieldError::NotLanAddr {
                    index: 1,
                    addr: addr(bad)
                }
            )),
            "{why}"
        );
    }
    // The bad address is refused as soon as it is read: the count after it
    // promised a third address that never comes.
    let lan = raw_addrs(3, &["8.8.8.8:4433"]);
    let body = hello_body_with(b"m", b"", &[0], &lan);
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::NotLanAddr {
                index: 0,
                addr: addr("8.8.8.8:4433")
            }
        ))
    );
}

#[test]
fn an_ipv4_mapped_observed_address_is_refused() {
    let mapped = "[::ffff:198.51.100.9]:50000";
    let body = hello_body_with(b"m", b"", &observed(mapped), &raw_addrs(0, &[]));
    assert_eq!(
        decode(&raw_frame(0x01, &body)),
        Err(field_error(
            MessageType::Hello,
            FieldError::ObservedMapped { addr: addr(mapped) }
        ))
    );
    // Written as IPv4, the same address is fine; so is any IPv6 one.
    for good in ["198.51.100.9:50000", "[2001:db8::9]:50000"] {
        let body = hello_body_with(b"m", b"", &observed(good), &raw_addrs(0, &[]));
        let Ok(Message::Hello(hello)) = decode(&raw_frame(0x01, &body)) else {
            panic!("{good} refused");
        };
        assert_eq!(hello.observed, Some(addr(good)));
    }
}

#[test]
fn hello_rules_are_checked_in_wire_order() {
    // A bad agent is reported before a bad observed address, which is
    // reported before a bad LAN list.
    let mapped = observed("[::ffff:198.51.100.9]:50000");
    let public_lan = raw_addrs(1, &["8.8.8.8:1"]);
    let body = hello_body_with(b"m", b"\x07", &mapped, &public_lan);
    assert!(matches!(
        decode(&raw_frame(0x01, &body)),
        Err(DecodeError::Field {
            error: FieldError::AgentCharacter { .. },
            ..
        })
    ));
    let body = hello_body_with(b"m", b"", &mapped, &public_lan);
    assert!(matches!(
        decode(&raw_frame(0x01, &body)),
        Err(DecodeError::Field {
            error: FieldError::ObservedMapped { .. },
            ..
        })
    ));
}

#[test]
fn reserved_peer_flags_are_refused_in_peers_and_hello_reject() {
    for bits in [0x04, 0x07, 0x80, 0xff] {
        let mut body = 2u64.to_le_bytes().to_vec();
        body.extend_from_slice(&raw_entry(0x11, "192.0.2.1:4433", 0x01));
        body.extend_from_slice(&raw_entry(0x22, "192.0.2.2:4433", bits));
        assert_eq!(
            decode(&raw_frame(0x08, &body)),
            Err(field_error(
                MessageType::Peers,
                FieldError::ReservedPeerFlags { index: 1, bits }
            )),
            "Peers {bits:#04x}"
        );
        let entries = [raw_entry(0x11, "192.0.2.1:4433", bits)];
        assert_eq!(
            decode(&raw_frame(0x02, &hello_reject_body(2, b"", 1, &entries))),
            Err(field_error(
                MessageType::HelloReject,
                FieldError::ReservedPeerFlags { index: 0, bits }
            )),
            "HelloReject {bits:#04x}"
        );
    }
    // Every defined combination decodes.
    for bits in 0..=3 {
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend_from_slice(&raw_entry(0x11, "192.0.2.1:4433", bits));
        let Ok(Message::Peers { entries }) = decode(&raw_frame(0x08, &body)) else {
            panic!("flags {bits:#04x} refused");
        };
        assert_eq!(entries[0].flags.bits(), bits);
    }
}

#[test]
fn a_hello_reject_with_33_peers_is_refused_before_reading_them() {
    let entries: Vec<_> = (0..33).map(|i| raw_entry(i, "192.0.2.1:4433", 0)).collect();
    let expected = |count| {
        Err(field_error(
            MessageType::HelloReject,
            FieldError::TooManyPeers { count },
        ))
    };
    let body = hello_reject_body(2, b"full", 33, &entries);
    assert_eq!(decode(&raw_frame(0x02, &body)), expected(33));
    assert_eq!(
        decode(&raw_frame(
            0x02,
            &hello_reject_body(2, b"full", 1 << 60, &[])
        )),
        expected(1 << 60)
    );
    // 32 is the limit, not over it.
    let body = hello_reject_body(2, b"full", 32, &entries[..32]);
    let Ok(Message::HelloReject { peers, .. }) = decode(&raw_frame(0x02, &body)) else {
        panic!("32 peers refused");
    };
    assert_eq!(peers.len(), 32);
}

#[test]
fn a_connect_carries_one_to_four_addresses() {
    let connect_body = |count: u64, addrs: &[&str]| {
        let mut body = vec![0x33; 32];
        body.extend_from_slice(&raw_addrs(count, addrs));
        body
    };
    let five = [
        "198.51.100.1:1",
        "198.51.100.2:1",
        "198.51.100.3:1",
        "198.51.100.4:1",
        "198.51.100.5:1",
    ];
    for (count, addrs) in [
        (0, &five[..0]),
        (5, &five[..]),
        (5, &five[..0]),
        (u64::MAX, &five[..0]),
    ] {
        assert_eq!(
            decode(&raw_frame(0x0c, &connect_body(count, addrs))),
            Err(field_error(
                MessageType::Connect,
                FieldError::ConnectAddrCount { count }
            )),
            "count {count}"
        );
    }
    for count in 1..=4 {
        let Ok(Message::Connect { addrs, .. }) = decode(&raw_frame(
            0x0c,
            &connect_body(count, &five[..count as usize]),
        )) else {
            panic!("{count} addresses refused");
        };
        assert_eq!(addrs.len(), count as usize);
    }
}

#[test]
fn a_manifest_over_its_cap_is_refused_before_reading_it() {
    let manifest_body = |len: u64, bytes: usize| {
        let mut body = len.to_le_bytes().to_vec();
        body.extend(std::iter::repeat_n(b'm', bytes));
        body
    };
    let over = MAX_MANIFEST_BYTES as u64 + 1;
    let expected = |len| {
        Err(field_error(
            MessageType::Manifest,
            FieldError::ManifestTooLong { len },
        ))
    };
    // The bytes are there (the frame is under its own cap): the length
    // alone is refused.
    assert_eq!(
        decode(&raw_frame(0x0f, &manifest_body(over, over as usize))),
        expected(over)
    );
    assert_eq!(
        decode(&raw_frame(0x0f, &manifest_body(over, 0))),
        expected(over)
    );
    assert_eq!(
        decode(&raw_frame(0x0f, &manifest_body(u64::MAX, 0))),
        expected(u64::MAX)
    );
    // The cap itself is allowed.
    let max = MAX_MANIFEST_BYTES;
    let Ok(Message::Manifest { bytes }) = decode(&raw_frame(0x0f, &manifest_body(max as u64, max)))
    else {
        panic!("a manifest of {max} bytes is refused");
    };
    assert_eq!(bytes.len(), max);
}

#[test]
fn a_manifest_shorter_than_its_length_is_malformed() {
    let mut body = 10u64.to_le_bytes().to_vec();
    body.extend_from_slice(b"short");
    assert_eq!(
        decode(&raw_frame(0x0f, &body)),
        Err(DecodeError::Body {
            message_type: MessageType::Manifest,
            detail: "UnexpectedEnd { additional: 5 }".to_owned()
        })
    );
}

#[test]
fn every_truncation_of_a_v2_vector_is_malformed() {
    for name in [
        "hello-observed-lan.hex",
        "hello_reject-peers.hex",
        "peers.hex",
        "rendezvous.hex",
        "connect.hex",
        "rendezvous_failed.hex",
        "manifest_request.hex",
        "manifest.hex",
        "chunk_list_request.hex",
        "chunk_hashes.hex",
        "chunk_hashes-part.hex",
        "listed_chunks.hex",
    ] {
        let bytes = fixture_bytes(name);
        let type_byte = bytes[4];
        let body = &bytes[5..];
        for cut in 0..body.len() {
            let error = decode(&raw_frame(type_byte, &body[..cut])).unwrap_err();
            assert!(
                matches!(&error, DecodeError::Body { detail, .. } if detail.contains("UnexpectedEnd")),
                "{name} cut to {cut} of {} body bytes: {error:?}",
                body.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_after_a_v2_message_are_refused() {
    for (name, message_type) in [
        ("hello-observed-lan.hex", MessageType::Hello),
        ("hello_reject-peers.hex", MessageType::HelloReject),
        ("rendezvous.hex", MessageType::Rendezvous),
        ("connect.hex", MessageType::Connect),
        ("rendezvous_failed.hex", MessageType::RendezvousFailed),
        ("manifest_request.hex", MessageType::ManifestRequest),
        ("manifest.hex", MessageType::Manifest),
        ("chunk_list_request.hex", MessageType::ChunkListRequest),
        ("chunk_hashes.hex", MessageType::ChunkHashes),
        ("chunk_hashes-part.hex", MessageType::ChunkHashes),
        ("listed_chunks.hex", MessageType::ListedChunks),
    ] {
        let bytes = fixture_bytes(name);
        let mut body = bytes[5..].to_vec();
        body.push(0);
        assert_eq!(
            decode(&raw_frame(bytes[4], &body)),
            Err(DecodeError::TrailingBytes {
                message_type,
                trailing: 1
            }),
            "{name}"
        );
    }
}

// The chunk list query.

/// A ChunkHashes body: `total`, `first`, a `count` that may lie, then
/// `hashes` hashes of 32 bytes (hash `i` is 32 bytes of `i`).
fn chunk_hashes_body(total: u32, first: u32, count: u64, hashes: usize) -> Vec<u8> {
    let mut body = total.to_le_bytes().to_vec();
    body.extend_from_slice(&first.to_le_bytes());
    body.extend_from_slice(&count.to_le_bytes());
    for i in 0..hashes {
        body.extend_from_slice(&[i as u8; 32]);
    }
    body
}

fn chunk_hashes_error(error: FieldError) -> Result<Message, DecodeError> {
    Err(field_error(MessageType::ChunkHashes, error))
}

#[test]
fn the_chunk_hashes_helper_matches_the_golden_vector() {
    let mut body = chunk_hashes_body(3, 0, 3, 0);
    for i in 0..3 {
        body.extend_from_slice(&chunk_hash(i));
    }
    assert_eq!(raw_frame(0x11, &body), fixture_bytes("chunk_hashes.hex"));
}

#[test]
fn chunk_hashes_with_no_hash_are_refused() {
    assert_eq!(
        decode(&raw_frame(0x11, &chunk_hashes_body(10, 0, 0, 0))),
        chunk_hashes_error(FieldError::ChunkHashesCount { count: 0 })
    );
}

#[test]
fn more_than_2000_chunk_hashes_are_refused_before_reading_them() {
    let over = MAX_CHUNK_HASHES_PER_MESSAGE as u64 + 1;
    let expected = |count| chunk_hashes_error(FieldError::ChunkHashesCount { count });
    // 2001 hashes do not fit a control frame: a frame that declares them
    // holds fewer, and it is the count that is refused, not a short body.
    for hashes in [0, 1, 2000] {
        let body = chunk_hashes_body(524_184, 0, over, hashes);
        assert_eq!(decode(&raw_frame(0x11, &body)), expected(over), "{hashes}");
    }
    let body = chunk_hashes_body(524_184, 0, u64::MAX, 0);
    assert_eq!(decode(&raw_frame(0x11, &body)), expected(u64::MAX));
    // 2000 is the limit, not over it, and fits a frame.
    let body = chunk_hashes_body(524_184, 0, 2000, 2000);
    assert!(body.len() < 65536);
    let Ok(Message::ChunkHashes { hashes, .. }) = decode(&raw_frame(0x11, &body)) else {
        panic!("2000 hashes refused");
    };
    assert_eq!(hashes.len(), 2000);
    assert_eq!(hashes[1999], [(1999 % 256) as u8; 32]);
}

#[test]
fn a_chunk_list_of_no_chunks_or_over_the_chunk_count_cap_is_refused() {
    for total in [0, MAX_CHUNK_COUNT + 1, u32::MAX] {
        assert_eq!(
            decode(&raw_frame(0x11, &chunk_hashes_body(total, 0, 1, 1))),
            chunk_hashes_error(FieldError::ChunkListTotal { total }),
            "{total}"
        );
    }
    // The cap itself is allowed, to its last chunk.
    let last = MAX_CHUNK_COUNT - 1;
    let body = chunk_hashes_body(MAX_CHUNK_COUNT, last, 1, 1);
    assert_eq!(
        decode(&raw_frame(0x11, &body)),
        Ok(Message::ChunkHashes {
            total: MAX_CHUNK_COUNT,
            first: last,
            hashes: vec![[0; 32]],
        })
    );
}

#[test]
fn chunk_hashes_that_run_past_the_list_are_refused() {
    for (total, first, count) in [(10, 8, 3), (10, 10, 1), (1, 0, 2), (10, u32::MAX, 1)] {
        let body = chunk_hashes_body(total, first, count, count as usize);
        assert_eq!(
            decode(&raw_frame(0x11, &body)),
            chunk_hashes_error(FieldError::ChunkHashesPastTotal {
                first,
                count,
                total
            }),
            "{first}+{count} of {total}"
        );
    }
    // Refused on the numbers alone, before any hash is read.
    assert_eq!(
        decode(&raw_frame(0x11, &chunk_hashes_body(10, 8, 3, 0))),
        chunk_hashes_error(FieldError::ChunkHashesPastTotal {
            first: 8,
            count: 3,
            total: 10
        })
    );
    // Up to the end of the list is fine.
    assert!(decode(&raw_frame(0x11, &chunk_hashes_body(10, 8, 2, 2))).is_ok());
}

#[test]
fn chunk_hashes_rules_are_checked_in_wire_order() {
    // total before count, count before first + count.
    assert_eq!(
        decode(&raw_frame(0x11, &chunk_hashes_body(0, 5, 0, 0))),
        chunk_hashes_error(FieldError::ChunkListTotal { total: 0 })
    );
    assert_eq!(
        decode(&raw_frame(0x11, &chunk_hashes_body(10, 9, 2001, 0))),
        chunk_hashes_error(FieldError::ChunkHashesCount { count: 2001 })
    );
}

#[test]
fn chunk_hashes_shorter_than_their_count_are_malformed() {
    let error = decode(&raw_frame(0x11, &chunk_hashes_body(10, 0, 3, 2))).unwrap_err();
    assert!(
        matches!(
            &error,
            DecodeError::Body {
                message_type: MessageType::ChunkHashes,
                detail
            } if detail.contains("UnexpectedEnd")
        ),
        "{error:?}"
    );
}

#[test]
fn the_chunk_hashes_errors_name_the_numbers() {
    let error = decode(&raw_frame(0x11, &chunk_hashes_body(10, 0, 2001, 0))).unwrap_err();
    assert!(error.to_string().contains("2001"), "{error}");
    assert!(error.to_string().contains("2000"), "{error}");
    let error = decode(&raw_frame(0x11, &chunk_hashes_body(10, 8, 3, 3))).unwrap_err();
    for number in ["8", "3", "10"] {
        assert!(error.to_string().contains(number), "{error}");
    }
    let error = decode(&raw_frame(0x11, &chunk_hashes_body(0, 0, 1, 1))).unwrap_err();
    assert!(error.to_string().contains("524184"), "{error}");
}

// The listed chunk list query's answer.

/// A ListedChunks body: `total`, `first`, a `count` that may lie, then
/// `lengths.len()` entries (hash `i` is 32 bytes of `i`, then its length).
fn listed_chunks_body(total: u32, first: u32, count: u64, lengths: &[u32]) -> Vec<u8> {
    let mut body = total.to_le_bytes().to_vec();
    body.extend_from_slice(&first.to_le_bytes());
    body.extend_from_slice(&count.to_le_bytes());
    for (i, len) in lengths.iter().enumerate() {
        body.extend_from_slice(&[i as u8; 32]);
        body.extend_from_slice(&len.to_le_bytes());
    }
    body
}

fn listed_chunks_error(error: FieldError) -> Result<Message, DecodeError> {
    Err(field_error(MessageType::ListedChunks, error))
}

#[test]
fn more_than_1800_listed_chunks_are_refused_before_reading_them() {
    for count in [0, 1801, 2000, u64::MAX] {
        assert_eq!(
            decode(&raw_frame(
                0x12,
                &listed_chunks_body(524_184, 0, count, &[])
            )),
            listed_chunks_error(FieldError::ListedChunksCount { count }),
            "{count}"
        );
    }
    let body = listed_chunks_body(524_184, 0, 1800, &[7; 1800]);
    assert!(body.len() + 5 <= 4 + 65536);
    let Ok(Message::ListedChunks { chunks, .. }) = decode(&raw_frame(0x12, &body)) else {
        panic!("1800 listed chunks refused");
    };
    assert_eq!(chunks.len(), 1800);
}

#[test]
fn a_listed_chunk_of_length_0_is_refused_and_named() {
    let error = decode(&raw_frame(0x12, &listed_chunks_body(10, 4, 3, &[9, 0, 9])));
    assert_eq!(
        error,
        listed_chunks_error(FieldError::ListedChunkEmpty { chunk: 5 })
    );
    assert!(
        error
            .unwrap_err()
            .to_string()
            .contains("chunk 5 of a listed chunk list has length 0")
    );
}

#[test]
fn listed_chunks_past_the_list_or_of_no_list_are_refused() {
    assert_eq!(
        decode(&raw_frame(0x12, &listed_chunks_body(10, 8, 3, &[1, 1, 1]))),
        listed_chunks_error(FieldError::ChunkHashesPastTotal {
            first: 8,
            count: 3,
            total: 10
        })
    );
    assert_eq!(
        decode(&raw_frame(0x12, &listed_chunks_body(0, 0, 1, &[1]))),
        listed_chunks_error(FieldError::ChunkListTotal { total: 0 })
    );
    assert!(decode(&raw_frame(0x12, &listed_chunks_body(10, 8, 2, &[1, 1]))).is_ok());
}

#[test]
fn listed_chunks_rules_are_checked_in_wire_order() {
    // The total before the count, the count before the end.
    assert_eq!(
        decode(&raw_frame(0x12, &listed_chunks_body(0, 5, 1801, &[]))),
        listed_chunks_error(FieldError::ChunkListTotal { total: 0 })
    );
    assert_eq!(
        decode(&raw_frame(0x12, &listed_chunks_body(10, 9, 1801, &[]))),
        listed_chunks_error(FieldError::ListedChunksCount { count: 1801 })
    );
}

#[test]
fn listed_chunks_shorter_than_their_count_are_malformed() {
    // The length of the last entry is cut off.
    let mut body = listed_chunks_body(10, 0, 2, &[5, 5]);
    body.truncate(body.len() - 2);
    let error = decode(&raw_frame(0x12, &body)).unwrap_err();
    assert!(
        matches!(&error, DecodeError::Body { message_type: MessageType::ListedChunks, detail } if detail.contains("UnexpectedEnd")),
        "{error:?}"
    );
}
