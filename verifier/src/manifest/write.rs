//! The canonical manifest writer: v0 for an unsigned manifest, v1 for a
//! signed one, and the signing text of a v1 (`docs/manifest-v1.md`).

use std::fmt::Write;

use super::{Manifest, ManifestKey, Signature};
use crate::route::Route;

/// Writes `manifest` in canonical form: the `format` line, then every key in
/// canonical order, one `key: value` line each, LF endings, no comments.
pub(crate) fn write_manifest(manifest: &Manifest) -> String {
    write_lines(manifest, true)
}

/// The canonical text without its `signature` line: what a v1 signature
/// covers.
pub(crate) fn write_signing_text(manifest: &Manifest) -> String {
    write_lines(manifest, false)
}

fn write_lines(manifest: &Manifest, with_signature: bool) -> String {
    let mut text = String::with_capacity(2048);
    let mut entry = |key: ManifestKey, value: &dyn std::fmt::Display| {
        // Writing into a String cannot fail.
        let _ = writeln!(text, "{}: {value}", key.name());
    };
    let route_or_none = |route: &Option<Route>| -> String {
        route
            .as_ref()
            .map_or_else(|| "none".to_owned(), |route| route.to_string())
    };
    entry(ManifestKey::Format, &manifest.format());
    entry(ManifestKey::ModelId, &manifest.model_id);
    entry(ManifestKey::DisplayName, &manifest.display_name);
    entry(ManifestKey::PublisherId, &manifest.publisher_id);
    entry(ManifestKey::KeyId, &manifest.key_id);
    if let Signature::Ed25519 { publisher_key, .. } = &manifest.signature {
        entry(ManifestKey::PublisherKey, publisher_key);
    }
    entry(
        ManifestKey::ManifestRoute,
        &route_or_none(&manifest.manifest_route),
    );
    entry(
        ManifestKey::ModelCardRoute,
        &route_or_none(&manifest.model_card_route),
    );
    entry(ManifestKey::LicenseRoute, &manifest.license_route);
    entry(ManifestKey::EvidenceRoute, &manifest.evidence_route);
    entry(ManifestKey::SourceIdentity, &manifest.source_identity);
    entry(
        ManifestKey::TakedownRoute,
        &route_or_none(&manifest.takedown_route),
    );
    entry(ManifestKey::ArtifactBytes, &manifest.artifact_bytes);
    entry(ManifestKey::ArtifactSha256, &manifest.artifact_sha256);
    entry(ManifestKey::Quantization, &manifest.quantization);
    entry(ManifestKey::ModelShape, &manifest.model_shape);
    entry(ManifestKey::TokenizerSha256, &manifest.tokenizer_sha256);
    entry(
        ManifestKey::TensorLayoutSha256,
        &manifest.tensor_layout_sha256,
    );
    entry(ManifestKey::EvidenceStatus, &manifest.evidence_status);
    entry(ManifestKey::PeerHintStatus, &manifest.peer_hint_status);
    if with_signature {
        entry(ManifestKey::Signature, &manifest.signature);
    }
    entry(ManifestKey::ChunkScheme, &manifest.chunks.scheme);
    entry(ManifestKey::ChunkSize, &manifest.chunks.chunk_size);
    entry(ManifestKey::ChunkCount, &manifest.chunks.chunk_count);
    entry(ManifestKey::MerkleRoot, &manifest.chunks.merkle_root);
    if let Some(chunk_list) = &manifest.chunks.chunk_list {
        entry(
            ManifestKey::ChunkListRoute,
            &route_or_none(&chunk_list.route),
        );
        entry(ManifestKey::ChunkListSha256, &chunk_list.sha256);
    }
    text
}
