//! The keys of manifests v0 and v1, in canonical order.

use std::fmt;

/// One key of a manifest. The declaration order is the canonical order the
/// writer uses; [`ManifestKey::Format`] always comes first.
/// [`ManifestKey::PublisherKey`] belongs to v1 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManifestKey {
    /// `format`.
    Format,
    /// `model-id`.
    ModelId,
    /// `display-name`.
    DisplayName,
    /// `publisher-id`.
    PublisherId,
    /// `key-id`.
    KeyId,
    /// `publisher-key` (v1 only, where it is required).
    PublisherKey,
    /// `manifest-route`.
    ManifestRoute,
    /// `model-card-route`.
    ModelCardRoute,
    /// `license-route`.
    LicenseRoute,
    /// `evidence-route`.
    EvidenceRoute,
    /// `source-identity`.
    SourceIdentity,
    /// `takedown-route`.
    TakedownRoute,
    /// `artifact-bytes`.
    ArtifactBytes,
    /// `artifact-sha256`.
    ArtifactSha256,
    /// `quantization`.
    Quantization,
    /// `model-shape`.
    ModelShape,
    /// `tokenizer-sha256`.
    TokenizerSha256,
    /// `tensor-layout-sha256`.
    TensorLayoutSha256,
    /// `evidence-status`.
    EvidenceStatus,
    /// `peer-hint-status`.
    PeerHintStatus,
    /// `signature`.
    Signature,
    /// `chunk-scheme`.
    ChunkScheme,
    /// `chunk-size`.
    ChunkSize,
    /// `chunk-count`.
    ChunkCount,
    /// `merkle-root`.
    MerkleRoot,
    /// `chunk-list-route` (optional, with `chunk-list-sha256`).
    ChunkListRoute,
    /// `chunk-list-sha256` (optional, with `chunk-list-route`).
    ChunkListSha256,
}

/// How many keys manifests have (v0 and v1 together).
pub(crate) const KEY_COUNT: usize = 27;

impl ManifestKey {
    /// Every key, in canonical order.
    pub const ALL: [ManifestKey; KEY_COUNT] = [
        ManifestKey::Format,
        ManifestKey::ModelId,
        ManifestKey::DisplayName,
        ManifestKey::PublisherId,
        ManifestKey::KeyId,
        ManifestKey::PublisherKey,
        ManifestKey::ManifestRoute,
        ManifestKey::ModelCardRoute,
        ManifestKey::LicenseRoute,
        ManifestKey::EvidenceRoute,
        ManifestKey::SourceIdentity,
        ManifestKey::TakedownRoute,
        ManifestKey::ArtifactBytes,
        ManifestKey::ArtifactSha256,
        ManifestKey::Quantization,
        ManifestKey::ModelShape,
        ManifestKey::TokenizerSha256,
        ManifestKey::TensorLayoutSha256,
        ManifestKey::EvidenceStatus,
        ManifestKey::PeerHintStatus,
        ManifestKey::Signature,
        ManifestKey::ChunkScheme,
        ManifestKey::ChunkSize,
        ManifestKey::ChunkCount,
        ManifestKey::MerkleRoot,
        ManifestKey::ChunkListRoute,
        ManifestKey::ChunkListSha256,
    ];

    /// The key as written in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            ManifestKey::Format => "format",
            ManifestKey::ModelId => "model-id",
            ManifestKey::DisplayName => "display-name",
            ManifestKey::PublisherId => "publisher-id",
            ManifestKey::KeyId => "key-id",
            ManifestKey::PublisherKey => "publisher-key",
            ManifestKey::ManifestRoute => "manifest-route",
            ManifestKey::ModelCardRoute => "model-card-route",
            ManifestKey::LicenseRoute => "license-route",
            ManifestKey::EvidenceRoute => "evidence-route",
            ManifestKey::SourceIdentity => "source-identity",
            ManifestKey::TakedownRoute => "takedown-route",
            ManifestKey::ArtifactBytes => "artifact-bytes",
            ManifestKey::ArtifactSha256 => "artifact-sha256",
            ManifestKey::Quantization => "quantization",
            ManifestKey::ModelShape => "model-shape",
            ManifestKey::TokenizerSha256 => "tokenizer-sha256",
            ManifestKey::TensorLayoutSha256 => "tensor-layout-sha256",
            ManifestKey::EvidenceStatus => "evidence-status",
            ManifestKey::PeerHintStatus => "peer-hint-status",
            ManifestKey::Signature => "signature",
            ManifestKey::ChunkScheme => "chunk-scheme",
            ManifestKey::ChunkSize => "chunk-size",
            ManifestKey::ChunkCount => "chunk-count",
            ManifestKey::MerkleRoot => "merkle-root",
            ManifestKey::ChunkListRoute => "chunk-list-route",
            ManifestKey::ChunkListSha256 => "chunk-list-sha256",
        }
    }

    /// The key with this name, if any.
    pub fn from_name(name: &str) -> Option<ManifestKey> {
        Self::ALL.into_iter().find(|key| key.name() == name)
    }

    /// Whether every manifest must have this key: all but the chunk list
    /// pair and `publisher-key` (required in v1, refused in v0).
    pub fn is_required(self) -> bool {
        !matches!(
            self,
            ManifestKey::ChunkListRoute | ManifestKey::ChunkListSha256 | ManifestKey::PublisherKey
        )
    }

    /// Position in canonical order.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ManifestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
