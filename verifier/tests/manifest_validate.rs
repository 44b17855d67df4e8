//! `Manifest::validate` on manifests built in code, the chunk geometry
//! helpers and the text names of the status types.

use std::path::Path;

use minimodel_verifier::manifest::{
    DEFAULT_CHUNK_SIZE, EvidenceStatus, FEWEST_DEFAULT_CHUNKS, MAX_CHUNK_COUNT, MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE, Manifest, ManifestErrorKind, PeerHintStatus, SMALLEST_DEFAULT_CHUNK_SIZE,
    Signature, chunk_count_for, default_chunk_size,
};

fn good() -> Manifest {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/manifest/good-canonical.manifest");
    let bytes = std::fs::read(path).expect("fixture");
    Manifest::parse_bytes(&bytes).expect("good fixture parses")
}

#[test]
fn validate_checks_manifests_built_in_code() {
    let on = |manifest: Manifest, field: &str, code: &str| {
        let error = manifest.validate().expect_err("invalid");
        assert_eq!((error.line, error.field.as_deref()), (None, Some(field)));
        assert_eq!(error.kind.code(), code);
    };
    let mut m = good();
    m.display_name = "two\nlines".into();
    on(m, "display-name", "bad-text");
    let mut m = good();
    m.display_name = String::new();
    on(m, "display-name", "bad-text");
    let mut m = good();
    m.source_identity = " padded".into();
    on(m, "source-identity", "bad-text");
    let mut m = good();
    m.artifact_bytes = 0;
    m.chunks.chunk_count = 0;
    on(m, "artifact-bytes", "empty-artifact");
    let mut m = good();
    m.model_shape.heads = 0;
    on(m, "model-shape", "bad-model-shape");
    let mut m = good();
    m.chunks.chunk_size = 3000;
    on(m, "chunk-size", "chunk-size-invalid");
    let mut m = good();
    m.chunks.chunk_count = MAX_CHUNK_COUNT + 1;
    on(m, "chunk-count", "too-many-chunks");
    let mut m = good();
    m.chunks.chunk_count = 4;
    on(m, "chunk-count", "chunk-count-mismatch");
}

#[test]
fn chunk_geometry_helpers() {
    assert_eq!(chunk_count_for(1, MIN_CHUNK_SIZE), 1);
    assert_eq!(chunk_count_for(3_000_000, DEFAULT_CHUNK_SIZE), 3);
    assert_eq!(chunk_count_for(2 * 1024 * 1024, DEFAULT_CHUNK_SIZE), 2);
    assert_eq!(chunk_count_for(u64::MAX, MAX_CHUNK_SIZE), 1 << 40);
    assert_eq!(chunk_count_for(10, 0), 0);
    // Small artifacts get smaller chunks, at least 128 of them, down to
    // 64 KiB.
    assert_eq!(default_chunk_size(1), SMALLEST_DEFAULT_CHUNK_SIZE);
    assert_eq!(default_chunk_size(8 << 20), 64 * 1024);
    assert_eq!(default_chunk_size(16 << 20), 128 * 1024);
    assert_eq!(default_chunk_size((16 << 20) - (128 << 10)), 64 * 1024);
    assert_eq!(default_chunk_size(32 << 20), 256 * 1024);
    assert_eq!(default_chunk_size((64 << 20) - 1), 512 * 1024);
    assert_eq!(default_chunk_size(128 << 20), DEFAULT_CHUNK_SIZE);
    assert_eq!(
        chunk_count_for(128 << 20, default_chunk_size(128 << 20)),
        FEWEST_DEFAULT_CHUNKS
    );
    assert_eq!(default_chunk_size(127 << 20), 512 * 1024);
    // 128 chunks of 1 MiB once the last one is partly filled.
    assert_eq!(default_chunk_size((127 << 20) + 1), DEFAULT_CHUNK_SIZE);
    assert_eq!(default_chunk_size(0), SMALLEST_DEFAULT_CHUNK_SIZE);
    let limit = MAX_CHUNK_COUNT * u64::from(DEFAULT_CHUNK_SIZE);
    assert_eq!(default_chunk_size(limit), DEFAULT_CHUNK_SIZE);
    assert_eq!(default_chunk_size(limit + 1), 2 * DEFAULT_CHUNK_SIZE);
    assert_eq!(default_chunk_size(u64::MAX), MAX_CHUNK_SIZE);
}

#[test]
fn status_names_round_trip() {
    for status in EvidenceStatus::ALL {
        assert_eq!(status.to_string().parse(), Ok(status));
    }
    for status in PeerHintStatus::ALL {
        assert_eq!(status.to_string().parse(), Ok(status));
    }
    let placeholder = Signature::UnsignedPlaceholderV0;
    assert_eq!(placeholder.to_string().parse(), Ok(placeholder));
    assert!("Unreviewed".parse::<EvidenceStatus>().is_err());
}

#[test]
fn error_codes_are_distinct() {
    let sample = [
        ManifestErrorKind::TooLarge { len: 0 },
        ManifestErrorKind::LineTooLong { len: 0 },
        ManifestErrorKind::ByteOrderMark,
        ManifestErrorKind::CarriageReturn,
        ManifestErrorKind::InvalidUtf8 { column: 1 },
        ManifestErrorKind::MalformedLine { reason: "" },
        ManifestErrorKind::MissingFormatLine,
        ManifestErrorKind::UnknownKey,
        ManifestErrorKind::DuplicateKey { first_line: 1 },
        ManifestErrorKind::MissingKey,
        ManifestErrorKind::EmptyArtifact,
        ManifestErrorKind::RouteRequired,
        ManifestErrorKind::ChunkListIncomplete,
    ];
    let mut codes: Vec<&str> = sample.iter().map(ManifestErrorKind::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), sample.len());
}
