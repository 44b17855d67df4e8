//! One negative test per reject rule of `docs/manifest-v0.md`, plus the
//! writer and `validate` for manifests built in code.

use super::*;

const GOOD: &str = "\
format: minimodel-manifest-v0
model-id: tiny-llama-q8
display-name: Tiny Llama (Q8)
publisher-id: example-lab
key-id: example-lab-2025
manifest-route: https://example.org/models/tiny-llama/manifest
model-card-route: https://huggingface.co/example-lab/tiny-llama
license-route: https://huggingface.co/example-lab/tiny-llama/blob/main/LICENSE
evidence-route: https://example.org/evidence/run-1
source-identity: Converted from example-lab/tiny-llama at commit 3f2a9c1
takedown-route: https://example.org/contact/takedown
artifact-bytes: 3000000
artifact-sha256: c7c5c1d70c5dec4416ab6158afd0b223ef40c29b1dc1f97ed9428b94d4cadb1c
quantization: q8_0
model-shape: layers=4,hidden=256,heads=8,vocab=32000,context=2048
tokenizer-sha256: 5f97e3774c51edd1d63706c2ec3826c564a067794770cdab0f8c4797971cacf9
tensor-layout-sha256: 609928a28bcb8f69168f6f7b92f972951bb7540f212ff7c0691a40745e85c2c1
evidence-status: self-attested
peer-hint-status: advisory
signature: unsigned-placeholder-v0
chunk-scheme: fixed-size-merkle-v0
chunk-size: 1048576
chunk-count: 3
merkle-root: 7c60c6565956960d53d9405d9cf80388faba64acca2eefe39195328a3fd49dea
";

const CHUNK_LIST: &str = "\
chunk-list-route: https://example.org/models/tiny-llama/chunk-list
chunk-list-sha256: b9a216dfdc6d816f3cc6ba78e4577f1bddb463a37759fb430cce079dd90e1b61
";

/// `GOOD` with the value of `key` replaced.
fn with_value(key: &str, value: &str) -> String {
    let prefix = format!("{key}: ");
    let mut found = false;
    let mut out = String::new();
    for line in GOOD.lines() {
        if line.starts_with(&prefix) {
            found = true;
            out.push_str(&format!("{prefix}{value}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(found, "no key {key} in GOOD");
    out
}

/// `GOOD` with the line of `key` replaced by `line`.
fn with_line(key: &str, line: &str) -> String {
    let prefix = format!("{key}: ");
    GOOD.lines()
        .map(|l| if l.starts_with(&prefix) { line } else { l })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn without(key: &str) -> String {
    let prefix = format!("{key}: ");
    GOOD.lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[track_caller]
fn refused(text: &str, line: Option<usize>, field: Option<&str>, code: &str) -> ManifestError {
    let error = Manifest::parse(text).expect_err("manifest should be refused");
    assert_eq!(error.kind.code(), code, "{error}");
    assert_eq!(error.line, line, "{error}");
    assert_eq!(error.field.as_deref(), field, "{error}");
    error
}

fn good() -> Manifest {
    Manifest::parse(GOOD).expect("GOOD parses")
}

#[test]
fn good_manifest_parses_and_is_canonical() {
    let manifest = good();
    assert_eq!(manifest.model_id.as_str(), "tiny-llama-q8");
    assert_eq!(manifest.artifact_bytes, 3_000_000);
    assert_eq!(manifest.chunks.chunk_count, 3);
    assert_eq!(manifest.evidence_status, EvidenceStatus::SelfAttested);
    assert_eq!(manifest.peer_hint_status, PeerHintStatus::Advisory);
    assert_eq!(manifest.chunks.chunk_list, None);
    assert_eq!(manifest.to_text(), GOOD);
    assert_eq!(manifest.validate(), Ok(()));
}

#[test]
fn chunk_list_pair_round_trips() {
    let text = format!("{GOOD}{CHUNK_LIST}");
    let manifest = Manifest::parse(&text).expect("parses");
    let chunk_list = manifest.chunks.chunk_list.clone().expect("chunk list");
    assert_eq!(
        chunk_list.route.as_ref().map(|route| route.as_str()),
        Some("https://example.org/models/tiny-llama/chunk-list")
    );
    assert_eq!(manifest.to_text(), text);
}

#[test]
fn any_key_order_comments_and_blank_lines_are_accepted() {
    let mut lines: Vec<&str> = GOOD.lines().collect();
    lines[1..].reverse();
    let text = format!("# a comment\n\n{}\n# trailing comment", lines.join("\n\n"));
    assert_eq!(Manifest::parse(&text), Ok(good()));
    // No final LF is fine too.
    assert_eq!(Manifest::parse(GOOD.trim_end_matches('\n')), Ok(good()));
}

#[test]
fn none_routes_round_trip() {
    let text = with_value("manifest-route", "none");
    let text = text.replace(
        "model-card-route: https://huggingface.co/example-lab/tiny-llama",
        "model-card-route: none",
    );
    let manifest = Manifest::parse(&text).expect("parses");
    assert_eq!(manifest.manifest_route, None);
    assert_eq!(manifest.model_card_route, None);
    assert_eq!(manifest.to_text(), text);
}

#[test]
fn error_display_names_line_and_field() {
    let error = refused(
        &with_value("chunk-size", "3000"),
        Some(22),
        Some("chunk-size"),
        "chunk-size-invalid",
    );
    assert_eq!(
        error.to_string(),
        "line 22, field chunk-size: 3000 is not a power of two between 16384 and 16777216"
    );
}

#[test]
fn file_over_the_size_cap_is_refused_before_decoding() {
    let mut bytes = GOOD.as_bytes().to_vec();
    bytes.resize(MAX_MANIFEST_LEN + 1, 0xff);
    let error = Manifest::parse_bytes(&bytes).expect_err("too large");
    assert_eq!(
        error.kind,
        ManifestErrorKind::TooLarge {
            len: MAX_MANIFEST_LEN + 1
        }
    );
    assert_eq!(error.line, None);
}

#[test]
fn line_over_the_length_cap_is_refused() {
    let text = format!("{GOOD}# {}\n", "x".repeat(MAX_LINE_LEN));
    refused(&text, Some(25), None, "line-too-long");
}

#[test]
fn byte_order_mark_is_refused() {
    refused(&format!("\u{FEFF}{GOOD}"), Some(1), None, "byte-order-mark");
}

#[test]
fn carriage_return_names_its_line() {
    refused(
        &GOOD.replace('\n', "\r\n"),
        Some(1),
        None,
        "carriage-return",
    );
    let text = with_line("quantization", "quantization: q8_0\r");
    refused(&text, Some(14), None, "carriage-return");
}

#[test]
fn invalid_utf8_names_its_line() {
    let mut bytes = GOOD.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    let error = Manifest::parse_bytes(&bytes).expect_err("invalid UTF-8");
    assert_eq!(error.kind, ManifestErrorKind::InvalidUtf8 { column: 6 });
    assert_eq!(error.line, Some(25));
}

#[test]
fn control_and_bidi_characters_are_refused_everywhere() {
    refused(
        &format!("{GOOD}#\tx\n"),
        Some(25),
        None,
        "forbidden-character",
    );
    let text = with_value("display-name", "Tiny \u{202E}Llama");
    refused(&text, Some(3), None, "forbidden-character");
}

#[test]
fn malformed_lines_are_refused() {
    let cases = [
        ("model-id:tiny", Some("model-id")),
        ("model-id:  tiny", Some("model-id")),
        ("model-id:", Some("model-id")),
        ("model-id: ", Some("model-id")),
        ("model-id: tiny ", Some("model-id")),
        ("model-id tiny", None),
        ("Model-Id: tiny", None),
        ("model-id : tiny", None),
        (" model-id: tiny", None),
        ("   ", None),
        (": tiny", None),
    ];
    for (line, field) in cases {
        refused(
            &with_line("model-id", line),
            Some(2),
            field,
            "malformed-line",
        );
    }
}

#[test]
fn format_line_must_come_first() {
    let body: String = GOOD.lines().skip(1).map(|l| format!("{l}\n")).collect();
    refused(&body, Some(1), Some("format"), "missing-format-line");
    let late = format!("{body}format: minimodel-manifest-v0\n");
    refused(&late, Some(1), Some("format"), "missing-format-line");
    refused(
        "# only a comment\n",
        None,
        Some("format"),
        "missing-format-line",
    );
    refused("", None, Some("format"), "missing-format-line");
}

#[test]
fn other_formats_are_refused() {
    let text = GOOD.replace("minimodel-manifest-v0", "minimodel-manifest-v2");
    let error = refused(&text, Some(1), Some("format"), "unsupported-format");
    let message = error.to_string();
    assert!(
        message.contains("minimodel-manifest-v0 and minimodel-manifest-v1"),
        "{message}"
    );
}

#[test]
fn unknown_key_is_refused() {
    let text = format!("{GOOD}license: MIT\n");
    refused(&text, Some(25), Some("license"), "unknown-key");
}

#[test]
fn duplicate_key_is_refused() {
    let text = format!("{GOOD}quantization: q8_0\n");
    let error = refused(&text, Some(25), Some("quantization"), "duplicate-key");
    assert_eq!(
        error.kind,
        ManifestErrorKind::DuplicateKey { first_line: 14 }
    );
    let twice = format!("{GOOD}format: minimodel-manifest-v0\n");
    refused(&twice, Some(25), Some("format"), "duplicate-key");
}

#[test]
fn every_required_key_is_reported_missing() {
    for key in ManifestKey::ALL {
        if !key.is_required() || key == ManifestKey::Format {
            continue;
        }
        refused(&without(key.name()), None, Some(key.name()), "missing-key");
    }
}

#[test]
fn bad_hex_is_refused() {
    let upper = "C7C5C1D70C5DEC4416AB6158AFD0B223EF40C29B1DC1F97ED9428B94D4CADB1C";
    for (key, line) in [
        ("artifact-sha256", 13),
        ("tokenizer-sha256", 16),
        ("tensor-layout-sha256", 17),
        ("merkle-root", 24),
    ] {
        refused(&with_value(key, upper), Some(line), Some(key), "bad-hex");
        refused(&with_value(key, "abcd"), Some(line), Some(key), "bad-hex");
    }
    let text =
        format!("{GOOD}chunk-list-route: https://example.org/list\nchunk-list-sha256: xyz\n");
    refused(&text, Some(26), Some("chunk-list-sha256"), "bad-hex");
}

#[test]
fn non_canonical_numbers_are_refused() {
    for value in [
        "03000000",
        "+3000000",
        "-1",
        "3e6",
        "3_000_000",
        "18446744073709551616",
    ] {
        refused(
            &with_value("artifact-bytes", value),
            Some(12),
            Some("artifact-bytes"),
            "bad-number",
        );
    }
    refused(
        &with_value("chunk-count", "03"),
        Some(23),
        Some("chunk-count"),
        "bad-number",
    );
    refused(
        &with_value("chunk-size", "1 MiB"),
        Some(22),
        Some("chunk-size"),
        "bad-number",
    );
}

#[test]
fn zero_artifact_bytes_is_refused() {
    refused(
        &with_value("artifact-bytes", "0"),
        Some(12),
        Some("artifact-bytes"),
        "empty-artifact",
    );
}

#[test]
fn chunk_size_must_be_a_power_of_two_in_range() {
    for value in ["3000", "8192", "1048577", "33554432", "0", "4294967296"] {
        refused(
            &with_value("chunk-size", value),
            Some(22),
            Some("chunk-size"),
            "chunk-size-invalid",
        );
    }
}

#[test]
fn chunk_count_above_the_limit_is_refused() {
    let text = with_value("chunk-count", "500001");
    refused(&text, Some(23), Some("chunk-count"), "too-many-chunks");
}

#[test]
fn chunk_count_must_match_the_geometry() {
    let error = refused(
        &with_value("chunk-count", "2"),
        Some(23),
        Some("chunk-count"),
        "chunk-count-mismatch",
    );
    assert!(error.to_string().contains("is 3"), "{error}");
    // Bytes that need more chunks than the limit allow no valid count.
    let text = with_value("artifact-bytes", "9000000000000")
        .replace("chunk-size: 1048576", "chunk-size: 16384");
    refused(&text, Some(23), Some("chunk-count"), "chunk-count-mismatch");
}

#[test]
fn ids_outside_the_safe_charset_are_refused() {
    refused(
        &with_value("model-id", "../etc"),
        Some(2),
        Some("model-id"),
        "bad-id",
    );
    refused(
        &with_value("publisher-id", "a b"),
        Some(4),
        Some("publisher-id"),
        "bad-id",
    );
    refused(
        &with_value("publisher-id", "a/b"),
        Some(4),
        Some("publisher-id"),
        "bad-id",
    );
    refused(
        &with_value("key-id", "k..1"),
        Some(5),
        Some("key-id"),
        "bad-id",
    );
}

#[test]
fn unsafe_routes_are_refused() {
    let cases = [
        ("manifest-route", 6, "http://example.org/m"),
        ("model-card-route", 7, "https://user:pass@example.org/card"),
        ("license-route", 8, "https://example.org/license?token=abc"),
        (
            "evidence-route",
            9,
            "https://huggingface.co/o/m/resolve/main/m.slm",
        ),
        ("takedown-route", 11, "https://EXAMPLE.org/contact"),
    ];
    for (key, line, value) in cases {
        refused(&with_value(key, value), Some(line), Some(key), "bad-route");
    }
}

#[test]
fn required_routes_refuse_none() {
    refused(
        &with_value("license-route", "none"),
        Some(8),
        Some("license-route"),
        "route-required",
    );
    refused(
        &with_value("evidence-route", "none"),
        Some(9),
        Some("evidence-route"),
        "route-required",
    );
    let text = format!("{GOOD}chunk-list-route: none\n");
    refused(&text, Some(25), Some("chunk-list-route"), "route-required");
}

#[test]
fn text_fields_have_length_limits() {
    let long_name = "n".repeat(MAX_DISPLAY_NAME_CHARS + 1);
    refused(
        &with_value("display-name", &long_name),
        Some(3),
        Some("display-name"),
        "text-too-long",
    );
    let fits = "é".repeat(MAX_DISPLAY_NAME_CHARS);
    assert!(Manifest::parse(&with_value("display-name", &fits)).is_ok());
    let long_source = "ü".repeat(MAX_SOURCE_IDENTITY_CHARS + 1);
    refused(
        &with_value("source-identity", &long_source),
        Some(10),
        Some("source-identity"),
        "text-too-long",
    );
    let fits = "\u{10348}".repeat(MAX_SOURCE_IDENTITY_CHARS);
    assert!(Manifest::parse(&with_value("source-identity", &fits)).is_ok());
}

#[test]
fn unknown_status_values_are_refused() {
    refused(
        &with_value("evidence-status", "reviewed"),
        Some(18),
        Some("evidence-status"),
        "unknown-value",
    );
    refused(
        &with_value("peer-hint-status", "trusted"),
        Some(19),
        Some("peer-hint-status"),
        "unknown-value",
    );
}

#[test]
fn unknown_quantization_is_refused() {
    refused(
        &with_value("quantization", "q5_k"),
        Some(14),
        Some("quantization"),
        "bad-quantization",
    );
}

#[test]
fn bad_model_shape_is_refused() {
    let shape = "layers=4,hidden=250,heads=8,vocab=32000,context=2048";
    refused(
        &with_value("model-shape", shape),
        Some(15),
        Some("model-shape"),
        "bad-model-shape",
    );
    refused(
        &with_value("model-shape", "4x256"),
        Some(15),
        Some("model-shape"),
        "bad-model-shape",
    );
}

#[test]
fn a_v0_manifest_is_unsigned_and_says_where_signatures_go() {
    let error = refused(
        &with_value("signature", "ed25519:AAAA"),
        Some(20),
        Some("signature"),
        "unsupported-signature",
    );
    assert!(
        error
            .to_string()
            .contains("a signed manifest is minimodel-manifest-v1"),
        "{error}"
    );
    let key = crate::signing::SecretKey::from_seed(&[5; 32]).public_key();
    let text = GOOD.replace(
        "key-id: example-lab-2025\n",
        &format!("key-id: example-lab-2025\npublisher-key: {key}\n"),
    );
    refused(&text, Some(6), Some("publisher-key"), "key-not-in-format");
}

/// `GOOD` signed with a fixed key: a canonical v1.
fn good_v1() -> String {
    let key = crate::signing::SecretKey::from_seed(&[5; 32]);
    crate::signing::manifest::sign_manifest(&Manifest::parse(GOOD).unwrap(), &key).to_text()
}

/// `good_v1()` with the line starting `prefix` replaced (or removed when
/// `line` is `None`).
fn v1_with(prefix: &str, line: Option<&str>) -> String {
    let text = good_v1();
    assert!(text.contains(&format!("\n{prefix}")), "no {prefix} in v1");
    text.lines()
        .filter_map(|l| {
            if l.starts_with(prefix) {
                line.map(|line| format!("{line}\n"))
            } else {
                Some(format!("{l}\n"))
            }
        })
        .collect()
}

#[test]
fn a_signed_manifest_is_v1_with_its_key_and_signature() {
    let text = good_v1();
    let manifest = Manifest::parse(&text).unwrap();
    assert_eq!(manifest.format(), FORMAT_V1);
    assert_eq!(manifest.to_text(), text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "format: minimodel-manifest-v1");
    assert!(lines[4].starts_with("key-id: mmk1"), "{}", lines[4]);
    assert!(lines[5].starts_with("publisher-key: mmpk1"), "{}", lines[5]);
    assert!(
        lines[20].starts_with("signature: ed25519:"),
        "{}",
        lines[20]
    );
    assert_eq!(manifest.validate(), Ok(()));
}

#[test]
fn v1_rules_are_enforced() {
    refused(
        &v1_with("publisher-key: ", None),
        None,
        Some("publisher-key"),
        "missing-key",
    );
    refused(
        &v1_with("signature: ", Some("signature: unsigned-placeholder-v0")),
        Some(21),
        Some("signature"),
        "bad-signature",
    );
    let upper = good_v1()
        .lines()
        .find(|l| l.starts_with("signature: "))
        .unwrap()
        .to_uppercase()
        .replace("SIGNATURE: ED25519:", "signature: ed25519:");
    refused(
        &v1_with("signature: ", Some(&upper)),
        Some(21),
        Some("signature"),
        "bad-signature",
    );
    refused(
        &v1_with("signature: ", Some("signature: ed25519:00")),
        Some(21),
        Some("signature"),
        "bad-signature",
    );
    // y = 2: not a point of the curve.
    let off_curve = format!("publisher-key: mmpk1ai{}", "a".repeat(50));
    let error = refused(
        &v1_with("publisher-key: ", Some(&off_curve)),
        Some(6),
        Some("publisher-key"),
        "bad-public-key",
    );
    assert!(error.to_string().contains("not a point"), "{error}");
    refused(
        &v1_with("publisher-key: ", Some("publisher-key: mmpk1abc")),
        Some(6),
        Some("publisher-key"),
        "bad-public-key",
    );
    let other = crate::signing::SecretKey::from_seed(&[6; 32]).public_key();
    let error = refused(
        &v1_with("key-id: ", Some(&format!("key-id: {}", other.key_id()))),
        Some(5),
        Some("key-id"),
        "key-id-mismatch",
    );
    assert!(
        error.to_string().contains("the id of publisher-key"),
        "{error}"
    );
    refused(
        &v1_with("key-id: ", Some("key-id: example-lab-2025")),
        Some(5),
        Some("key-id"),
        "key-id-mismatch",
    );
    let mut built = Manifest::parse(&good_v1()).unwrap();
    built.key_id = "example-lab-2025".parse().unwrap();
    let error = built.validate().unwrap_err();
    assert_eq!(error.kind.code(), "key-id-mismatch");
    assert_eq!(error.line, None);
}

#[test]
fn other_chunk_schemes_are_refused() {
    refused(
        &with_value("chunk-scheme", "fixed-size-merkle-v1"),
        Some(21),
        Some("chunk-scheme"),
        "unsupported-chunk-scheme",
    );
}

#[test]
fn chunk_list_route_and_checksum_come_together() {
    let mut lines = CHUNK_LIST.lines();
    let route_only = format!("{GOOD}{}\n", lines.next().unwrap_or_default());
    refused(
        &route_only,
        Some(25),
        Some("chunk-list-sha256"),
        "chunk-list-incomplete",
    );
    let sha_only = format!("{GOOD}{}\n", lines.next().unwrap_or_default());
    refused(
        &sha_only,
        Some(25),
        Some("chunk-list-route"),
        "chunk-list-incomplete",
    );
}

/// `GOOD` in `slm-parts-merkle-v0` with `chunk-count` `count` and `tail`
/// after it.
fn listed(count: &str, tail: &str) -> String {
    let text = with_value("chunk-scheme", "slm-parts-merkle-v0");
    let text = text.replace("chunk-count: 3\n", &format!("chunk-count: {count}\n"));
    format!("{text}{tail}")
}

#[test]
fn a_listed_scheme_reads_with_its_list_and_a_route_of_none() {
    let sha =
        "chunk-list-sha256: b9a216dfdc6d816f3cc6ba78e4577f1bddb463a37759fb430cce079dd90e1b61\n";
    let text = listed("40", &format!("chunk-list-route: none\n{sha}"));
    let manifest = Manifest::parse(&text).unwrap();
    assert_eq!(manifest.chunks.scheme, ChunkScheme::SlmParts);
    assert_eq!(manifest.chunks.chunk_count, 40);
    let list = manifest.chunks.chunk_list.as_ref().unwrap();
    assert_eq!(list.route, None);
    assert_eq!(manifest.to_text(), text);
    assert_eq!(manifest.validate(), Ok(()));
    // With a web route as well.
    let routed = listed("3", CHUNK_LIST);
    assert!(
        Manifest::parse(&routed)
            .unwrap()
            .chunks
            .chunk_list
            .unwrap()
            .route
            .is_some()
    );
}

#[test]
fn a_listed_scheme_without_its_list_is_refused() {
    refused(
        &listed("3", ""),
        None,
        Some("chunk-list-sha256"),
        "listed-chunks-need-their-list",
    );
    let mut built = Manifest::parse(&listed("3", CHUNK_LIST)).unwrap();
    built.chunks.chunk_list = None;
    assert_eq!(
        built.validate().unwrap_err().kind.code(),
        "listed-chunks-need-their-list"
    );
}

#[test]
fn a_listed_chunk_count_must_fit_lengths_of_one_byte_to_the_chunk_size() {
    // 3,000,000 bytes in chunks of at most 1 MiB: at least 3 chunks, and
    // never more than 500,000.
    refused(
        &listed("2", CHUNK_LIST),
        Some(23),
        Some("chunk-count"),
        "listed-chunk-count",
    );
    refused(
        &listed("500001", CHUNK_LIST),
        Some(23),
        Some("chunk-count"),
        "too-many-chunks",
    );
    assert!(Manifest::parse(&listed("500000", CHUNK_LIST)).is_ok());
    // 100 bytes: at most 100 chunks of a byte each.
    let small =
        listed("101", CHUNK_LIST).replace("artifact-bytes: 3000000\n", "artifact-bytes: 100\n");
    refused(&small, Some(23), Some("chunk-count"), "listed-chunk-count");
    assert!(Manifest::parse(&small.replace("chunk-count: 101\n", "chunk-count: 100\n")).is_ok());
}

#[test]
fn a_fixed_scheme_keeps_route_required_for_a_list_of_no_route() {
    let sha =
        "chunk-list-sha256: b9a216dfdc6d816f3cc6ba78e4577f1bddb463a37759fb430cce079dd90e1b61\n";
    refused(
        &format!("{GOOD}chunk-list-route: none\n{sha}"),
        Some(25),
        Some("chunk-list-route"),
        "route-required",
    );
    let mut built = Manifest::parse(&format!("{GOOD}{CHUNK_LIST}")).unwrap();
    built.chunks.chunk_list.as_mut().unwrap().route = None;
    assert_eq!(built.validate().unwrap_err().kind.code(), "route-required");
}
