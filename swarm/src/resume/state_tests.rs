//! One test per reject rule of `minimodel-partial-v0`, and round trips.

use minimodel_verifier::merkle::MerkleTree;

use super::*;

const CHUNK: u32 = 16384;

/// A state of 13 chunks (the last one short) with chunks 0, 1, 5 and 12
/// verified.
fn content() -> StateContent {
    let artifact_bytes = 12 * u64::from(CHUNK) + 100;
    let tree = MerkleTree::from_chunk_hashes(
        (0..13u32)
            .map(|i| Sha256Digest::of(&i.to_be_bytes()))
            .collect(),
    )
    .unwrap();
    let mut knowledge = ChunkKnowledge::new(tree.root(), 13);
    for index in [0, 1, 5, 12] {
        knowledge
            .insert(
                ChunkIndex(index),
                tree.chunk_hashes()[index as usize],
                &tree.proof(index).unwrap(),
            )
            .unwrap();
    }
    StateContent {
        binding: StateBinding {
            model_id: ModelId::new("tiny-test").unwrap(),
            artifact_bytes,
            artifact_sha256: Sha256Digest::of(b"artifact"),
            chunk_size: CHUNK,
            chunk_count: 13,
            merkle_root: tree.root(),
            listed: None,
        },
        manifest_sha256: Sha256Digest::of(b"manifest"),
        generation: 7,
        checkpoint_at: "2026-03-01T12:34:56Z".to_owned(),
        counters: ResumeCounters {
            runs: 2,
            chunks_fetched: 5,
            bytes_fetched: 5 * u64::from(CHUNK),
            chunks_dropped: 1,
        },
        verified: knowledge.verified().clone(),
        chunk_hashes: knowledge.verified_hashes(),
        tree_nodes: knowledge.extra_nodes(),
    }
}

fn repr() -> StateRepr {
    serde_json::from_slice(&content().encode()).unwrap()
}

/// Serializes `repr` with a checksum that matches its content.
fn sealed(mut repr: StateRepr) -> Vec<u8> {
    repr.checksum = Some(repr.content_checksum());
    repr.to_json()
}

fn with_json(edit: impl FnOnce(&mut String)) -> Vec<u8> {
    let mut text = String::from_utf8(content().encode()).unwrap();
    edit(&mut text);
    text.into_bytes()
}

#[test]
fn a_state_round_trips_byte_for_byte() {
    let bytes = content().encode();
    let state = parse_state(&bytes).unwrap();
    assert_eq!(state.to_bytes(), bytes);
    assert_eq!(state.generation, 7);
    assert_eq!(state.chunks_verified(), 4);
    assert_eq!(state.bytes_verified(), 3 * u64::from(CHUNK) + 100);
    assert_eq!(state.counters.chunks_dropped, 1);
    assert!(bytes.ends_with(b"}\n"));
}

#[test]
fn whitespace_does_not_count_towards_the_checksum() {
    let value: serde_json::Value = serde_json::from_slice(&content().encode()).unwrap();
    // serde_json::Value sorts keys: order and whitespace differ from the
    // canonical form, the content is the same.
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(parse_state(&pretty).unwrap().to_bytes(), content().encode());
}

#[test]
fn empty_is_refused() {
    assert_eq!(parse_state(b""), Err(StateError::Empty));
}

#[test]
fn oversized_is_refused_before_parsing() {
    let huge = vec![b' '; MAX_STATE_BYTES + 1];
    assert!(matches!(
        parse_state(&huge),
        Err(StateError::TooLarge { .. })
    ));
}

#[test]
fn truncated_is_a_syntax_error() {
    let bytes = content().encode();
    for len in [1, 10, bytes.len() / 2, bytes.len() - 3] {
        assert!(
            matches!(parse_state(&bytes[..len]), Err(StateError::Syntax(_))),
            "cut at {len}"
        );
    }
}

#[test]
fn garbage_is_a_syntax_error() {
    assert!(matches!(
        parse_state(&[0xff, 0x00, 0x13, 0x37]),
        Err(StateError::Syntax(_))
    ));
}

#[test]
fn a_non_object_is_a_schema_error() {
    let error = parse_state(b"[1, 2]");
    assert!(matches!(error, Err(StateError::Schema(_))), "{error:?}");
}

#[test]
fn a_missing_format_is_refused() {
    assert_eq!(
        parse_state(b"{\"generation\": 1}"),
        Err(StateError::MissingFormat)
    );
}

#[test]
fn an_unknown_format_is_unsupported_not_corrupt() {
    let bytes = with_json(|text| *text = text.replace(STATE_FORMAT, "minimodel-partial-v1"));
    let error = parse_state(&bytes).unwrap_err();
    assert_eq!(
        error,
        StateError::UnsupportedFormat {
            found: "minimodel-partial-v1".to_owned()
        }
    );
    assert!(error.is_unsupported());
}

#[test]
fn a_format_that_is_not_a_string_is_a_schema_error() {
    assert!(matches!(
        parse_state(b"{\"format\": 0}"),
        Err(StateError::Schema(_))
    ));
}

#[test]
fn unknown_missing_and_duplicate_fields_are_refused() {
    let unknown = with_json(|text| *text = text.replacen('{', "{\"extra\":1,", 1));
    assert!(matches!(parse_state(&unknown), Err(StateError::Schema(_))));
    let missing = with_json(|text| *text = text.replace("\"runs\":2,", ""));
    assert!(matches!(parse_state(&missing), Err(StateError::Schema(_))));
    let duplicate = with_json(|text| *text = text.replace("\"runs\":2,", "\"runs\":2,\"runs\":2,"));
    assert!(matches!(
        parse_state(&duplicate),
        Err(StateError::Schema(_))
    ));
}

#[test]
fn a_bad_model_id_is_refused() {
    let bytes = with_json(|text| *text = text.replace("tiny-test", "../etc"));
    assert!(matches!(parse_state(&bytes), Err(StateError::Schema(_))));
}

#[test]
fn an_uppercase_digest_is_refused() {
    let root = content().binding.merkle_root.to_hex();
    let bytes = with_json(|text| *text = text.replace(&root, &root.to_uppercase()));
    assert!(matches!(parse_state(&bytes), Err(StateError::Schema(_))));
}

#[test]
fn a_listed_chunk_count_reads_and_its_binding_decides() {
    // slm-parts-merkle-v0: 100,000 bytes in 8 chunks of up to 16 KiB (7
    // would do fixed-size); the state reads, and the binding of the
    // manifest it is opened under says whether it is this download's.
    let mut repr = repr();
    repr.artifact_bytes = 100_000;
    repr.chunk_size = 16384;
    repr.chunk_count = 8;
    repr.verified = "00".to_owned();
    repr.chunk_hashes.clear();
    repr.tree_nodes.clear();
    let state = parse_state(&sealed(repr)).unwrap();
    assert_eq!(state.binding.chunk_count, 8);
    assert_eq!(state.binding.listed, None);
}

#[test]
fn impossible_geometries_are_refused() {
    let cases: [(u64, u32, u32); 5] = [
        (100_000, 10_000, 10),             // not a power of two
        (100_000, 16384, 6),               // fewer than chunks of 16 KiB make
        (100, 16384, 101),                 // more than one a byte
        (0, 16384, 0),                     // no bytes
        (600_000 * 16384, 16384, 600_000), // too many chunks
    ];
    for (artifact_bytes, chunk_size, chunk_count) in cases {
        let mut repr = repr();
        repr.artifact_bytes = artifact_bytes;
        repr.chunk_size = chunk_size;
        repr.chunk_count = chunk_count;
        assert!(
            matches!(parse_state(&sealed(repr)), Err(StateError::Geometry { .. })),
            "{artifact_bytes} / {chunk_size} / {chunk_count}"
        );
    }
}

#[test]
fn a_bad_checkpoint_time_is_refused() {
    for time in [
        "2026-03-01 12:34:56Z",
        "2026-13-01T12:34:56Z",
        "yesterday",
        "",
    ] {
        let mut repr = repr();
        repr.checkpoint_at = time.to_owned();
        assert!(
            matches!(parse_state(&sealed(repr)), Err(StateError::Time(_))),
            "{time:?}"
        );
    }
}

#[test]
fn a_bad_bitfield_is_refused() {
    // 13 chunks: two bytes; chunks 0, 1, 5 and 12 give c4 08.
    assert_eq!(repr().verified, "c408");
    for verified in ["C408", "c4", "c40800", "c40", "c409", "zz08"] {
        let mut repr = repr();
        repr.verified = verified.to_owned();
        assert!(
            matches!(parse_state(&sealed(repr)), Err(StateError::Bitfield(_))),
            "{verified}"
        );
    }
}

#[test]
fn one_chunk_hash_per_verified_chunk() {
    let mut repr = repr();
    repr.chunk_hashes.pop();
    assert_eq!(
        parse_state(&sealed(repr)),
        Err(StateError::ChunkHashCount {
            expected: 4,
            found: 3
        })
    );
}

#[test]
fn tree_nodes_must_be_in_range_and_in_order() {
    let digest = Sha256Digest::of(b"node");
    let cases: [Vec<SavedNode>; 4] = [
        vec![(4, 0, digest)],                 // the root level
        vec![(0, 13, digest)],                // past the last leaf
        vec![(1, 2, digest), (0, 3, digest)], // out of order
        vec![(0, 3, digest), (0, 3, digest)], // twice
    ];
    for nodes in cases {
        let mut repr = repr();
        repr.tree_nodes = nodes.clone();
        assert!(
            matches!(parse_state(&sealed(repr)), Err(StateError::TreeNode { .. })),
            "{nodes:?}"
        );
    }
}

#[test]
fn a_missing_checksum_is_refused() {
    let mut repr = repr();
    repr.checksum = None;
    assert_eq!(
        parse_state(&repr.to_json()),
        Err(StateError::MissingChecksum)
    );
}

#[test]
fn a_changed_field_breaks_the_checksum() {
    let bytes = with_json(|text| *text = text.replace("\"generation\":7", "\"generation\":8"));
    assert!(matches!(
        parse_state(&bytes),
        Err(StateError::Checksum { .. })
    ));
}

#[test]
fn a_chunk_hash_that_does_not_lead_to_the_root_is_refused() {
    let mut repr = repr();
    repr.chunk_hashes[2] = Sha256Digest::of(b"not chunk 5");
    assert!(matches!(
        parse_state(&sealed(repr)),
        Err(StateError::Inconsistent(_))
    ));
}

#[test]
fn a_missing_tree_node_is_refused() {
    let mut repr = repr();
    repr.tree_nodes.pop();
    assert!(matches!(
        parse_state(&sealed(repr)),
        Err(StateError::Inconsistent(_))
    ));
}

#[test]
fn hex_helpers_round_trip_and_refuse_odd_input() {
    assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
    assert_eq!(from_hex("00abff"), Some(vec![0x00, 0xab, 0xff]));
    assert_eq!(from_hex("abc"), None);
    assert_eq!(from_hex("AB"), None);
    assert_eq!(from_hex(""), Some(vec![]));
}
