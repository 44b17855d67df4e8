//! Manifest v0 (`docs/manifest-v0.md`): the text that binds an artifact's
//! bytes to its identity, license and evidence routes.
//!
//! SKELETON: the struct is the agreed interface; parsing and writing are
//! filled in by the manifest work.

use crate::digest::Sha256Digest;
use crate::ids::{KeyId, ModelId, PublisherId};
use crate::model::{ModelShape, Quantization};
use crate::route::Route;

/// A parsed, validated manifest v0. Every field of `docs/manifest-v0.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `model-id`.
    pub model_id: ModelId,
    /// `display-name`: free text, 1..=128 printable characters.
    pub display_name: String,
    /// `publisher-id`.
    pub publisher_id: PublisherId,
    /// `key-id`: the publisher key that will sign manifests.
    pub key_id: KeyId,
    /// `manifest-route`: where this manifest's metadata lives (`none` allowed).
    pub manifest_route: Option<Route>,
    /// `model-card-route` (`none` allowed).
    pub model_card_route: Option<Route>,
    /// `license-route` (required).
    pub license_route: Route,
    /// `evidence-route` (required).
    pub evidence_route: Route,
    /// `source-identity`: a one-line summary of where the weights come from.
    pub source_identity: String,
    /// `takedown-route`: takedown and contact (`none` allowed).
    pub takedown_route: Option<Route>,
    /// `artifact-bytes`: the exact size of the `.slm` file.
    pub artifact_bytes: u64,
    /// `artifact-sha256`: SHA-256 of the whole `.slm` file.
    pub artifact_sha256: Sha256Digest,
    /// `quantization`.
    pub quantization: Quantization,
    /// `model-shape`.
    pub model_shape: ModelShape,
    /// `tokenizer-sha256`: checksum of the `.slm` tokenizer section.
    pub tokenizer_sha256: Sha256Digest,
    /// `tensor-layout-sha256`: checksum of the `.slm` tensor table.
    pub tensor_layout_sha256: Sha256Digest,
    /// `evidence-status`.
    pub evidence_status: EvidenceStatus,
    /// `peer-hint-status`.
    pub peer_hint_status: PeerHintStatus,
    /// `signature`: only the placeholder until signing exists.
    pub signature: Signature,
    /// The chunk section.
    pub chunks: ChunkSection,
}

/// The chunk section of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSection {
    /// `chunk-size`: a power of two from 16 KiB to 16 MiB.
    pub chunk_size: u32,
    /// `chunk-count`: `ceil(artifact-bytes / chunk-size)`.
    pub chunk_count: u64,
    /// `merkle-root`.
    pub merkle_root: Sha256Digest,
    /// `chunk-list-route` with `chunk-list-sha256`, both or neither.
    pub chunk_list: Option<ChunkListRoute>,
}

/// Where the ordered chunk hash list can be read, and its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkListRoute {
    /// `chunk-list-route`.
    pub route: Route,
    /// `chunk-list-sha256`.
    pub sha256: Sha256Digest,
}

/// `evidence-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceStatus {
    /// `unreviewed`.
    Unreviewed,
    /// `self-attested`.
    SelfAttested,
    /// `independently-reviewed`.
    IndependentlyReviewed,
}

/// `peer-hint-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHintStatus {
    /// `none`.
    None,
    /// `advisory`.
    Advisory,
}

/// `signature`: only the documented placeholder exists in v0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// `unsigned-placeholder-v0`.
    UnsignedPlaceholderV0,
}
