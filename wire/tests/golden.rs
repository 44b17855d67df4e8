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
fn piece_from_vector_decodes_and_re_encodes_to_the_same_bytes() {
    let bytes = fixture_bytes("piece_from.hex");
    let mut input = bytes.as_slice();
    let decoded = PieceHeader::decode(&mut input).unwrap();
    assert_eq!(decoded, golden_piece_from());
    assert!(input.is_empty());
    let mut encoded = Vec::new();
    golden_piece_from()
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
    kinds.push(minimodel_wire::MessageType::PieceFrom);
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
    names.push("piece_from.hex");
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
    // The chunk list query's vectors are golden messages written by
    // `chunk_list_vectors.py`.
    let mut checked: Vec<_> = golden_messages().iter().map(|(n, _)| *n).collect();
    checked.extend([
        "piece_header.hex",
        "piece_from.hex",
        "handshake.hex",
        "chunk_list_vectors.py",
    ]);
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

/// The Merkle vectors of `fixtures/merkle/vectors.txt` for a tree of `n`
/// chunks: its chunk hashes `H[i]` in order, and its root.
fn merkle_vectors(n: usize) -> (Vec<[u8; 32]>, [u8; 32]) {
    let path = fixtures_dir().join("../merkle/vectors.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let from_hex = |hex: &str| -> [u8; 32] {
        let bytes = parse_annotated_hex(hex);
        bytes.try_into().unwrap()
    };
    let mut lines = text
        .lines()
        .skip_while(|line| *line != format!("tree {n}"))
        .skip(1)
        .take_while(|line| !line.is_empty());
    let mut hashes = Vec::new();
    for line in lines.by_ref() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["chunk", i, hash, _leaf] => {
                assert_eq!(i.parse::<usize>().unwrap(), hashes.len());
                hashes.push(from_hex(hash));
            }
            ["root", root] => {
                assert_eq!(hashes.len(), n, "tree {n}");
                return (hashes, from_hex(root));
            }
            _ => panic!("tree {n}: unexpected line {line}"),
        }
    }
    panic!("no tree {n} in fixtures/merkle/vectors.txt");
}

/// The fixed-size-merkle-v0 root of a chunk list (`docs/merkle.md`),
/// built here with SHA-256 alone so that the vectors are checked against
/// the Merkle vectors without the verifier crate.
fn merkle_root(hashes: &[[u8; 32]]) -> [u8; 32] {
    if let [only] = hashes {
        return sha256(&[&[0u8][..], only].concat());
    }
    let mut k = 1;
    while k * 2 < hashes.len() {
        k *= 2;
    }
    let left = merkle_root(&hashes[..k]);
    let right = merkle_root(&hashes[k..]);
    sha256(&[&[1u8][..], &left, &right].concat())
}

#[test]
fn the_chunk_hashes_vectors_are_the_chunk_lists_of_the_merkle_vectors() {
    let hashes_of = |name: &str| match Message::decode(&mut fixture_bytes(name).as_slice()) {
        Ok(Message::ChunkHashes {
            total,
            first,
            hashes,
        }) => (total, first, hashes),
        other => panic!("{name}: {other:?}"),
    };
    // The whole list of the 3-chunk tree, in one frame: its root is the
    // tree's.
    let (hashes, root) = merkle_vectors(3);
    let (total, first, list) = hashes_of("chunk_hashes.hex");
    assert_eq!((total, first), (3, 0));
    assert_eq!(list, hashes);
    assert_eq!(merkle_root(&list), root);
    for (i, hash) in list.iter().enumerate() {
        assert_eq!(*hash, chunk_hash(i as u32), "H[{i}]");
    }
    // The last part of the 13-chunk tree's list: with the first part, the
    // tree's root.
    let (hashes, root) = merkle_vectors(13);
    let (total, first, part) = hashes_of("chunk_hashes-part.hex");
    assert_eq!((total, first, part.len()), (13, 8, 5));
    assert_eq!(part[..], hashes[8..]);
    let whole: Vec<_> = hashes[..8].iter().chain(&part).copied().collect();
    assert_eq!(merkle_root(&whole), root);
    // A part alone is no list: its root is not the tree's.
    assert_ne!(merkle_root(&part), root);
}

#[test]
fn the_listed_chunks_vector_is_the_slm_parts_list_its_manifest_commits() {
    let Ok(Message::ListedChunks {
        total,
        first,
        chunks,
    }) = Message::decode(&mut fixture_bytes("listed_chunks.hex").as_slice())
    else {
        panic!("listed_chunks.hex is no ListedChunks");
    };
    assert_eq!((total, first, chunks.len()), (10, 0, 10));
    let manifest =
        std::fs::read_to_string(fixtures_dir().join("../merkle/slm-parts.manifest")).unwrap();
    let field = |key: &str| {
        manifest
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {key} in slm-parts.manifest"))
            .to_owned()
    };
    // The file form of the list (hash, space, length, newline) is what
    // the manifest's chunk-list-sha256 commits: hashes and lengths.
    let text: String = chunks
        .iter()
        .map(|(hash, len)| format!("{} {len}\n", hex(hash)))
        .collect();
    assert_eq!(hex(&sha256(text.as_bytes())), field("chunk-list-sha256"));
    let hashes: Vec<_> = chunks.iter().map(|(hash, _)| *hash).collect();
    assert_eq!(hex(&merkle_root(&hashes)), field("merkle-root"));
    let bytes: u64 = chunks.iter().map(|(_, len)| u64::from(*len)).sum();
    assert_eq!(bytes.to_string(), field("artifact-bytes"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_chunk_list_request_vector_asks_for_the_manifest_vector() {
    let Ok(Message::ChunkListRequest { manifest_sha256 }) =
        Message::decode(&mut fixture_bytes("chunk_list_request.hex").as_slice())
    else {
        panic!("chunk_list_request.hex is no ChunkListRequest");
    };
    assert_eq!(
        manifest_sha256,
        sha256(&fixture_bytes("manifest.hex")[13..])
    );
    // The same question as the manifest query's, the other type byte.
    let mut request = fixture_bytes("manifest_request.hex");
    request[4] = 0x10;
    assert_eq!(request, fixture_bytes("chunk_list_request.hex"));
}
