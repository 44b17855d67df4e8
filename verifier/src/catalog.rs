//! Catalog entries (`docs/formats.md`): the metadata-only JSON that a
//! catalog lists for an artifact. It carries routes to metadata and the
//! hashes that identify the bytes, and never a route to the bytes themselves
//! (product rule 2): every route in it has passed route safety when the
//! manifest was parsed. It says whether the manifest is signed, and by
//! which key, only after checking the signature.

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::ids::{KeyId, ModelId, PublisherId};
use crate::manifest::Manifest;
use crate::model::{ModelShape, Quantization};
use crate::route::Route;
use crate::signing::manifest::check_manifest_signature;
use crate::signing::{BadSignature, PublicKey};

/// The `format` value of a catalog entry.
pub const CATALOG_ENTRY_FORMAT: &str = "minimodel-catalog-entry-v1";

/// Whether the manifest is signed, as its catalog entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CatalogSignature {
    /// The manifest is unsigned (v0).
    Unsigned,
    /// The manifest is signed, and its signature verified with this key
    /// when the entry was made. Whether the key is the publisher's is for
    /// each reader's keyring to say.
    Signed {
        /// The key's id.
        key_id: KeyId,
        /// The key.
        publisher_key: PublicKey,
    },
}

/// A catalog entry for one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Always [`CATALOG_ENTRY_FORMAT`].
    pub format: String,
    /// The model.
    pub model_id: ModelId,
    /// Human-readable name.
    pub display_name: String,
    /// Who publishes it.
    pub publisher_id: PublisherId,
    /// The manifest's `key-id`.
    pub key_id: KeyId,
    /// Whether the manifest is signed, and by which key.
    pub signature: CatalogSignature,
    /// Routes to metadata about the artifact; never to its bytes.
    pub routes: CatalogRoutes,
    /// Where the weights come from.
    pub source_identity: String,
    /// Size of the artifact.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Sha256Digest,
    /// Quantization.
    pub quantization: Quantization,
    /// Model shape.
    pub model_shape: ModelShape,
    /// `evidence-status` of the manifest.
    pub evidence_status: String,
    /// `peer-hint-status` of the manifest.
    pub peer_hint_status: String,
    /// How the artifact is chunked.
    pub chunks: CatalogChunks,
}

/// The metadata routes of a catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRoutes {
    /// The manifest's metadata route, if any.
    pub manifest: Option<Route>,
    /// The model card, if any.
    pub model_card: Option<Route>,
    /// The license.
    pub license: Route,
    /// The evidence.
    pub evidence: Route,
    /// Takedown and contact, if any.
    pub takedown: Option<Route>,
    /// The chunk hash list, if published.
    pub chunk_list: Option<Route>,
}

/// The chunk section of a catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogChunks {
    /// The manifest's `chunk-scheme`: `fixed-size-merkle-v0` or
    /// `slm-parts-merkle-v0`.
    pub scheme: String,
    /// Chunk size.
    pub chunk_size: u32,
    /// Chunk count.
    pub chunk_count: u64,
    /// Merkle root.
    pub merkle_root: Sha256Digest,
    /// SHA-256 of the chunk list, when published.
    pub chunk_list_sha256: Option<Sha256Digest>,
}

impl CatalogEntry {
    /// The entry for a manifest, whose signature (if signed) is checked
    /// here: a manifest whose signature does not verify has no entry.
    pub fn from_manifest(manifest: &Manifest) -> Result<Self, BadSignature> {
        let signature = match check_manifest_signature(manifest)? {
            None => CatalogSignature::Unsigned,
            Some(key) => CatalogSignature::Signed {
                key_id: key.key_id().to_id(),
                publisher_key: key,
            },
        };
        let chunk_list = manifest.chunks.chunk_list.as_ref();
        Ok(Self {
            format: CATALOG_ENTRY_FORMAT.to_owned(),
            model_id: manifest.model_id.clone(),
            display_name: manifest.display_name.clone(),
            publisher_id: manifest.publisher_id.clone(),
            key_id: manifest.key_id.clone(),
            signature,
            routes: CatalogRoutes {
                manifest: manifest.manifest_route.clone(),
                model_card: manifest.model_card_route.clone(),
                license: manifest.license_route.clone(),
                evidence: manifest.evidence_route.clone(),
                takedown: manifest.takedown_route.clone(),
                chunk_list: chunk_list.and_then(|list| list.route.clone()),
            },
            source_identity: manifest.source_identity.clone(),
            artifact_bytes: manifest.artifact_bytes,
            artifact_sha256: manifest.artifact_sha256,
            quantization: manifest.quantization,
            model_shape: manifest.model_shape,
            evidence_status: manifest.evidence_status.to_string(),
            peer_hint_status: manifest.peer_hint_status.to_string(),
            chunks: CatalogChunks {
                scheme: manifest.chunks.scheme.name().to_owned(),
                chunk_size: manifest.chunks.chunk_size,
                chunk_count: manifest.chunks.chunk_count,
                merkle_root: manifest.chunks.merkle_root,
                chunk_list_sha256: chunk_list.map(|list| list.sha256),
            },
        })
    }
}
