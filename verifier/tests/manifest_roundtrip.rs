//! Property tests of manifest v0: every valid manifest survives the
//! canonical round trip, and mangled manifests are refused without a panic,
//! with a line number inside the text.

use minimodel_verifier::manifest::{
    ChunkListRoute, ChunkScheme, ChunkSection, EvidenceStatus, MAX_CHUNK_COUNT, Manifest,
    PeerHintStatus, Signature, chunk_count_for,
};
use minimodel_verifier::route::Route;
use minimodel_verifier::{KeyId, ModelId, ModelShape, PublisherId, Quantization, Sha256Digest};
use proptest::prelude::*;
use proptest::sample::select;

const ID: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,40}";

fn digest() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(Sha256Digest)
}

fn route() -> impl Strategy<Value = Route> {
    let host = "[a-z][a-z0-9-]{0,10}[a-z0-9]\\.(org|com|io|example)";
    let segments = prop::collection::vec("[A-Za-z0-9._~-]{1,12}", 0..5);
    let query = prop::option::of("[a-z]{1,8}=[a-z0-9]{1,8}");
    let fragment = prop::option::of("[a-z0-9-]{1,10}");
    (host, segments, any::<bool>(), query, fragment).prop_filter_map(
        "route safety refused a generated route",
        |(host, segments, trailing_slash, query, fragment)| {
            let mut text = format!("https://{host}");
            for segment in &segments {
                text.push('/');
                text.push_str(segment);
            }
            if trailing_slash {
                text.push('/');
            }
            if let Some(query) = query {
                text.push('?');
                text.push_str(&query);
            }
            if let Some(fragment) = fragment {
                text.push('#');
                text.push_str(&fragment);
            }
            Route::parse(&text).ok()
        },
    )
}

fn model_shape() -> impl Strategy<Value = ModelShape> {
    (
        1..=u32::MAX,
        1u32..=1024,
        1u32..=4_000_000,
        1..=u32::MAX,
        1..=u32::MAX,
    )
        .prop_map(|(layers, heads, per_head, vocab, context)| ModelShape {
            layers,
            hidden: heads * per_head,
            heads,
            vocab,
            context,
        })
}

/// A scheme, a chunk size, an artifact size whose geometry fits, and the
/// chunk count: the fixed one, or in a listed scheme any from the fewest
/// to the most its lengths allow.
fn geometry() -> impl Strategy<Value = (ChunkScheme, u32, u64, u64)> {
    (14u32..=24, any::<bool>(), any::<u64>()).prop_flat_map(|(exponent, listed, pick)| {
        let chunk_size = 1u32 << exponent;
        let largest = MAX_CHUNK_COUNT * u64::from(chunk_size);
        prop_oneof![1..=4 * u64::from(chunk_size), 1..=largest].prop_map(move |artifact_bytes| {
            let fewest = chunk_count_for(artifact_bytes, chunk_size);
            if listed {
                let most = artifact_bytes.min(MAX_CHUNK_COUNT);
                let count = fewest + pick % (most - fewest + 1);
                (ChunkScheme::SlmParts, chunk_size, artifact_bytes, count)
            } else {
                (ChunkScheme::FixedSize, chunk_size, artifact_bytes, fewest)
            }
        })
    })
}

prop_compose! {
    fn identity()(
        model_id in ID.prop_filter_map("unsafe id", |t| ModelId::new(t).ok()),
        publisher_id in ID.prop_filter_map("unsafe id", |t| PublisherId::new(t).ok()),
        key_id in ID.prop_filter_map("unsafe id", |t| KeyId::new(t).ok()),
        display_name in "\\PC{1,128}",
        source_identity in "\\PC{1,256}",
    ) -> (ModelId, PublisherId, KeyId, String, String) {
        (model_id, publisher_id, key_id, display_name, source_identity)
    }
}

prop_compose! {
    fn routes()(
        manifest_route in prop::option::of(route()),
        model_card_route in prop::option::of(route()),
        license_route in route(),
        evidence_route in route(),
        takedown_route in prop::option::of(route()),
        chunk_list in prop::option::of((route(), digest())),
    ) -> (Option<Route>, Option<Route>, Route, Route, Option<Route>, Option<(Route, Sha256Digest)>) {
        (manifest_route, model_card_route, license_route, evidence_route, takedown_route, chunk_list)
    }
}

prop_compose! {
    fn valid_manifest()(
        (model_id, publisher_id, key_id, display_name, source_identity) in identity(),
        (manifest_route, model_card_route, license_route, evidence_route, takedown_route, chunk_list) in routes(),
        (scheme, chunk_size, artifact_bytes, chunk_count) in geometry(),
        list_without_route in digest(),
        digests in prop::array::uniform4(digest()),
        quantization in select(Quantization::ALL.to_vec()),
        model_shape in model_shape(),
        evidence_status in select(EvidenceStatus::ALL.to_vec()),
        peer_hint_status in select(PeerHintStatus::ALL.to_vec()),
    ) -> Manifest {
        Manifest {
            model_id,
            display_name,
            publisher_id,
            key_id,
            manifest_route,
            model_card_route,
            license_route,
            evidence_route,
            source_identity,
            takedown_route,
            artifact_bytes,
            artifact_sha256: digests[0],
            quantization,
            model_shape,
            tokenizer_sha256: digests[1],
            tensor_layout_sha256: digests[2],
            evidence_status,
            peer_hint_status,
            signature: Signature::UnsignedPlaceholderV0,
            chunks: ChunkSection {
                scheme,
                chunk_size,
                chunk_count,
                merkle_root: digests[3],
                chunk_list: match (chunk_list, scheme.is_listed()) {
                    (Some((route, sha256)), _) => Some(ChunkListRoute {
                        route: Some(route),
                        sha256,
                    }),
                    // A listed scheme names its list, with or without a route.
                    (None, true) => Some(ChunkListRoute {
                        route: None,
                        sha256: list_without_route,
                    }),
                    (None, false) => None,
                },
            },
        }
    }
}

/// Manifests that pass `validate` (free text can start or end with
/// whitespace or hold a separator character; those are filtered out).
fn manifest() -> impl Strategy<Value = Manifest> {
    valid_manifest().prop_filter("invalid text field", |m| m.validate().is_ok())
}

/// A change to the lines of a manifest.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    FlipByte(usize, usize, u8),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<usize>(), any::<usize>(), any::<u8>())
            .prop_map(|(line, at, byte)| LineEdit::FlipByte(line, at, byte)),
    ]
}

fn apply(lines: &mut Vec<Vec<u8>>, edit: &LineEdit) {
    if lines.is_empty() {
        return;
    }
    let n = lines.len();
    match *edit {
        LineEdit::Delete(i) => {
            lines.remove(i % n);
        }
        LineEdit::Duplicate(i) => {
            let line = lines[i % n].clone();
            lines.insert(i % n, line);
        }
        LineEdit::Swap(a, b) => lines.swap(a % n, b % n),
        LineEdit::FlipByte(i, at, byte) => {
            let line = &mut lines[i % n];
            if !line.is_empty() {
                let at = at % line.len();
                line[at] ^= byte;
            }
        }
    }
}

proptest! {
    #[test]
    fn canonical_text_round_trips(m in manifest()) {
        let text = m.to_text();
        let parsed = Manifest::parse(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&m), "{}", text);
        let again = parsed.map(|p| p.to_text());
        prop_assert_eq!(again.as_deref(), Ok(text.as_str()));
    }

    #[test]
    fn key_order_and_comments_do_not_change_the_meaning(
        m in manifest(),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
    ) {
        let text = m.to_text();
        let mut lines: Vec<&str> = text.lines().collect();
        let body = &mut lines[1..];
        // A deterministic shuffle driven by `order`.
        let mut state = order | 1;
        for i in (1..body.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            body.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let shuffled = lines.join("\n# comment\n\n");
        prop_assert_eq!(Manifest::parse(&shuffled), Ok(m));
    }

    #[test]
    fn mangled_manifests_fail_with_a_line_in_range(
        m in manifest(),
        edits in prop::collection::vec(line_edit(), 1..6),
    ) {
        let mut lines: Vec<Vec<u8>> =
            m.to_text().lines().map(|l| l.as_bytes().to_vec()).collect();
        for edit in &edits {
            apply(&mut lines, edit);
        }
        let bytes = lines.join(&b'\n');
        // A flipped byte can add line breaks: count lines as the reader does.
        let line_count = bytes.split(|b| *b == b'\n').count();
        match Manifest::parse_bytes(&bytes) {
            Ok(parsed) => {
                let text = parsed.to_text();
                prop_assert_eq!(Manifest::parse(&text), Ok(parsed));
            }
            Err(error) => {
                if let Some(line) = error.line {
                    prop_assert!((1..=line_count).contains(&line), "{} of {}", error, line_count);
                }
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }
}
