//! The value rules shared by the reader and [`super::Manifest::validate`].

use super::limits::{
    MAX_CHUNK_COUNT, MAX_DISPLAY_NAME_CHARS, MAX_SOURCE_IDENTITY_CHARS, chunk_count_for,
    is_valid_chunk_size,
};
use super::{ChunkScheme, Manifest, ManifestError, ManifestErrorKind, ManifestKey, Signature};

/// Characters refused on every line and in every text value: controls (C0,
/// DEL, C1, which includes tab), bidirectional formatting characters that
/// can make a line read differently from what it holds, line and paragraph
/// separators, and the byte order mark.
pub(crate) fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{FEFF}'
        )
}

/// The rule for `display-name` and `source-identity`: 1 to `max_chars`
/// characters, no forbidden character, no whitespace at either end.
pub(crate) fn check_text(text: &str, max_chars: usize) -> Result<(), ManifestErrorKind> {
    if text.is_empty() {
        return Err(ManifestErrorKind::BadText {
            reason: "text is empty",
        });
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(ManifestErrorKind::TextTooLong {
            chars,
            max: max_chars,
        });
    }
    if text.chars().any(is_forbidden_char) {
        return Err(ManifestErrorKind::BadText {
            reason: "text holds a control, bidirectional-formatting or separator character",
        });
    }
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return Err(ManifestErrorKind::BadText {
            reason: "text starts or ends with whitespace",
        });
    }
    Ok(())
}

/// The text limit of a text key.
pub(crate) fn text_limit(key: ManifestKey) -> usize {
    if key == ManifestKey::DisplayName {
        MAX_DISPLAY_NAME_CHARS
    } else {
        MAX_SOURCE_IDENTITY_CHARS
    }
}

/// `artifact-bytes` is at least one.
pub(crate) fn check_artifact_bytes(artifact_bytes: u64) -> Result<(), ManifestErrorKind> {
    if artifact_bytes == 0 {
        return Err(ManifestErrorKind::EmptyArtifact);
    }
    Ok(())
}

/// `chunk-size` is a power of two in range; returns it as `u32`.
pub(crate) fn check_chunk_size(chunk_size: u64) -> Result<u32, ManifestErrorKind> {
    match u32::try_from(chunk_size) {
        Ok(size) if is_valid_chunk_size(chunk_size) => Ok(size),
        _ => Err(ManifestErrorKind::ChunkSizeInvalid { size: chunk_size }),
    }
}

/// `chunk-count` is at most [`MAX_CHUNK_COUNT`].
pub(crate) fn check_chunk_count(chunk_count: u64) -> Result<(), ManifestErrorKind> {
    if chunk_count > MAX_CHUNK_COUNT {
        return Err(ManifestErrorKind::TooManyChunks { count: chunk_count });
    }
    Ok(())
}

/// `chunk-count` is `ceil(artifact-bytes / chunk-size)` in the fixed
/// scheme; in a listed one, where a chunk holds 1 to `chunk-size` bytes,
/// from that up to `artifact-bytes`.
pub(crate) fn check_geometry(
    scheme: ChunkScheme,
    artifact_bytes: u64,
    chunk_size: u32,
    chunk_count: u64,
) -> Result<(), ManifestErrorKind> {
    let expected = chunk_count_for(artifact_bytes, chunk_size);
    if scheme.is_listed() {
        if chunk_count < expected || chunk_count > artifact_bytes {
            return Err(ManifestErrorKind::ListedChunkCount {
                found: chunk_count,
                fewest: expected,
                most: artifact_bytes.min(MAX_CHUNK_COUNT),
            });
        }
        return Ok(());
    }
    if chunk_count != expected {
        return Err(ManifestErrorKind::ChunkCountMismatch {
            found: chunk_count,
            expected,
            artifact_bytes,
            chunk_size,
        });
    }
    Ok(())
}

/// Every rule a manifest built in code can break, in canonical key order.
pub(crate) fn validate_manifest(manifest: &Manifest) -> Result<(), ManifestError> {
    let on = |key: ManifestKey| move |kind| ManifestError::new(None, Some(key), kind);
    check_text(&manifest.display_name, MAX_DISPLAY_NAME_CHARS)
        .map_err(on(ManifestKey::DisplayName))?;
    check_text(&manifest.source_identity, MAX_SOURCE_IDENTITY_CHARS)
        .map_err(on(ManifestKey::SourceIdentity))?;
    check_artifact_bytes(manifest.artifact_bytes).map_err(on(ManifestKey::ArtifactBytes))?;
    manifest
        .model_shape
        .validate()
        .map_err(ManifestErrorKind::BadModelShape)
        .map_err(on(ManifestKey::ModelShape))?;
    let chunks = &manifest.chunks;
    check_chunk_size(u64::from(chunks.chunk_size)).map_err(on(ManifestKey::ChunkSize))?;
    check_chunk_count(chunks.chunk_count).map_err(on(ManifestKey::ChunkCount))?;
    check_geometry(
        chunks.scheme,
        manifest.artifact_bytes,
        chunks.chunk_size,
        chunks.chunk_count,
    )
    .map_err(on(ManifestKey::ChunkCount))?;
    if let Some(list) = &chunks.chunk_list
        && list.route.is_none()
        && !chunks.scheme.is_listed()
    {
        return Err(ManifestError::new(
            None,
            Some(ManifestKey::ChunkListRoute),
            ManifestErrorKind::RouteRequired,
        ));
    }
    if chunks.scheme.is_listed() && chunks.chunk_list.is_none() {
        return Err(ManifestError::new(
            None,
            Some(ManifestKey::ChunkListSha256),
            ManifestErrorKind::ListedChunksNeedTheirList {
                scheme: chunks.scheme.name(),
            },
        ));
    }
    check_key_id(manifest).map_err(on(ManifestKey::KeyId))?;
    Ok(())
}

/// A signed manifest's `key-id` is the id of its `publisher-key` (v0's
/// key id is a free name).
pub(crate) fn check_key_id(manifest: &Manifest) -> Result<(), ManifestErrorKind> {
    if let Signature::Ed25519 { publisher_key, .. } = &manifest.signature {
        let expected = publisher_key.key_id();
        if manifest.key_id.as_str() != expected.to_string() {
            return Err(ManifestErrorKind::KeyIdMismatch { expected });
        }
    }
    Ok(())
}
