//! Negative tests of the decoders: one per reject rule (`DecodeError`).

mod common;

use common::*;
use minimodel_wire::{
    ChunkIndex, DecodeError, FieldError, FrameDecoder, Message, MessageType, PieceHeader,
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

/// A Hello body with the given model id and agent, raw.
fn hello_body(model_id: &[u8], agent: &[u8]) -> Vec<u8> {
    let mut body = 1u16.to_le_bytes().to_vec();
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
    body
}

#[test]
fn hello_body_helper_matches_the_golden_vector() {
    assert_eq!(
        raw_frame(0x01, &hello_body(b"tiny-slm-64m", b"minimodel/0.1.0")),
        fixture_bytes("hello-no-listen.hex")
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
    for type_byte in [0x00, 0x0b, 0x1f, 0x21, 0x80, 0xff] {
        let error = decode(&raw_frame(type_byte, &[])).unwrap_err();
        assert_eq!(error, DecodeError::UnknownType { type_byte });
        assert!(error.to_string().contains(&format!("{type_byte:#04x}")));
    }
}

#[test]
fn a_piece_header_on_the_control_stream_is_refused() {
    let bytes = fixture_bytes("piece_header.hex");
    assert_eq!(decode(&bytes), Err(DecodeError::PieceHeaderOnControlStream));
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
    let cases = [
        (0x02, MessageType::HelloReject, {
            let mut body = 5u32.to_le_bytes().to_vec();
            body.extend_from_slice(&0u64.to_le_bytes());
            body
        }),
        (0x07, MessageType::Reject, {
            let mut body = 3u32.to_le_bytes().to_vec();
            body.extend_from_slice(&4u32.to_le_bytes());
            body
        }),
        (0x0a, MessageType::Goodbye, 7u32.to_le_bytes().to_vec()),
    ];
    for (type_byte, message_type, body) in cases {
        let code = u32::from_le_bytes(
            body[if type_byte == 0x07 { 4 } else { 0 }..][..4]
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            decode(&raw_frame(type_byte, &body)),
            Err(DecodeError::UnknownReason { message_type, code })
        );
    }
}

#[test]
fn too_many_peers_are_refused_before_reading_them() {
    let entry = &golden_body("peers.hex")[8..8 + 32 + 10];
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
