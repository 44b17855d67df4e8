//! Manifests (`docs/manifest-v0.md`, and `docs/manifest-v1.md` for signed
//! ones): the text that binds an artifact's bytes to its identity, license
//! and evidence routes, and (v1) to the publisher key that signed it.
//!
//! What it is: the [`Manifest`] struct, a strict reader
//! ([`Manifest::parse`], [`Manifest::parse_bytes`]), a canonical writer
//! ([`Manifest::to_text`]) and the cross-field rules ([`Manifest::validate`]).
//! Every refusal is a [`ManifestError`] that names the line and the key.
//! A manifest without a signature is written as v0; a signed one as v1.
//!
//! What it is not: it does not read the artifact. Whether the bytes on disk
//! match `artifact-sha256` and `merkle-root` is the job of the full check.
//! Nor does it check signatures: the reader checks a v1 signature's form,
//! `crate::signing::trust::judge` checks what it vouches for.
//!
//! Invariants: a [`Manifest`] returned by the reader passes
//! [`Manifest::validate`], and for every manifest that passes it,
//! `Manifest::parse(&m.to_text()) == Ok(m)`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Sha256Digest;
use crate::ids::{KeyId, ModelId, PublisherId};
use crate::model::{ModelShape, Quantization};
use crate::route::Route;
use crate::signing::{Ed25519Signature, PublicKey};

mod error;
mod key;
mod limits;
mod parse;
mod rules;
mod write;

#[cfg(test)]
mod tests;

pub use error::{ManifestError, ManifestErrorKind};
pub(crate) use rules::is_forbidden_char;

/// Checks a `chunk-size` on its own (a power of two from 16 KiB to 16 MiB),
/// for callers that want to refuse it before hashing a file.
pub fn check_chunk_size_field(chunk_size: u32) -> Result<(), ManifestError> {
    rules::check_chunk_size(u64::from(chunk_size))
        .map(|_| ())
        .map_err(|kind| ManifestError::new(None, Some(ManifestKey::ChunkSize), kind))
}
pub use key::ManifestKey;
pub use limits::{
    DEFAULT_CHUNK_SIZE, FEWEST_DEFAULT_CHUNKS, MAX_CHUNK_COUNT, MAX_CHUNK_SIZE,
    MAX_DISPLAY_NAME_CHARS, MAX_LINE_LEN, MAX_MANIFEST_LEN, MAX_SOURCE_IDENTITY_CHARS,
    MIN_CHUNK_SIZE, SMALLEST_DEFAULT_CHUNK_SIZE, chunk_count_for, default_chunk_size,
};

/// The value of the `format` line that opens every manifest v0 (unsigned).
pub const FORMAT_V0: &str = "minimodel-manifest-v0";

/// The value of the `format` line that opens every manifest v1 (signed).
pub const FORMAT_V1: &str = "minimodel-manifest-v1";

/// The `chunk-scheme` of fixed-size chunks (`docs/merkle.md`).
pub const CHUNK_SCHEME_V0: &str = "fixed-size-merkle-v0";

/// The `chunk-scheme` of chunks cut where a `.slm` file's parts begin, with
/// their lengths in the chunk list (`docs/merkle.md`).
pub const CHUNK_SCHEME_SLM_PARTS: &str = "slm-parts-merkle-v0";

/// How a manifest's artifact is cut into chunks (`chunk-scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChunkScheme {
    /// `fixed-size-merkle-v0`: chunks of `chunk-size`, the last shorter.
    #[default]
    FixedSize,
    /// `slm-parts-merkle-v0`: each part of the `.slm` file (the header, the
    /// tokenizer, the tensor table, every tensor) cut into chunks of at
    /// most `chunk-size` from its own start; the lengths are in the chunk
    /// list, which `chunk-list-sha256` names.
    SlmParts,
}

impl ChunkScheme {
    /// The name a manifest gives it.
    pub fn name(self) -> &'static str {
        match self {
            ChunkScheme::FixedSize => CHUNK_SCHEME_V0,
            ChunkScheme::SlmParts => CHUNK_SCHEME_SLM_PARTS,
        }
    }

    /// Whether the chunks' lengths come from the chunk list.
    pub fn is_listed(self) -> bool {
        matches!(self, ChunkScheme::SlmParts)
    }
}

impl std::fmt::Display for ChunkScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ChunkScheme {
    type Err = ();

    fn from_str(value: &str) -> Result<Self, ()> {
        match value {
            CHUNK_SCHEME_V0 => Ok(ChunkScheme::FixedSize),
            CHUNK_SCHEME_SLM_PARTS => Ok(ChunkScheme::SlmParts),
            _ => Err(()),
        }
    }
}

/// A parsed, validated manifest: every field of `docs/manifest-v0.md`, and
/// in [`Manifest::signature`] the publisher key and signature of a v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `model-id`.
    pub model_id: ModelId,
    /// `display-name`: free text, 1..=128 printable characters.
    pub display_name: String,
    /// `publisher-id`.
    pub publisher_id: PublisherId,
    /// `key-id`: in v0 a name for the publisher key that will sign; in v1
    /// the id of `publisher-key` (`mmk1...`).
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
    /// `signature`, with v1's `publisher-key`: whether the manifest is
    /// signed, and by which key (the reader checks the form only).
    pub signature: Signature,
    /// The chunk section.
    pub chunks: ChunkSection,
}

/// The chunk section of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSection {
    /// `chunk-scheme`.
    pub scheme: ChunkScheme,
    /// `chunk-size`: a power of two from 16 KiB to 16 MiB; in a listed
    /// scheme the longest a chunk may be.
    pub chunk_size: u32,
    /// `chunk-count`: `ceil(artifact-bytes / chunk-size)` in the fixed
    /// scheme; in a listed one from that up to `artifact-bytes`.
    pub chunk_count: u64,
    /// `merkle-root`.
    pub merkle_root: Sha256Digest,
    /// `chunk-list-route` with `chunk-list-sha256`, both or neither.
    pub chunk_list: Option<ChunkListRoute>,
}

/// Where the ordered chunk hash list can be read, and its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkListRoute {
    /// `chunk-list-route`: `none` when no web server publishes it (peers
    /// that hold the artifact serve it).
    pub route: Option<Route>,
    /// `chunk-list-sha256`.
    pub sha256: Sha256Digest,
}

impl Manifest {
    /// Reads manifest text. Same rules as [`Manifest::parse_bytes`].
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        parse::parse_manifest(text.as_bytes())
    }

    /// Reads manifest bytes: the size cap first, then line by line (length,
    /// CR, UTF-8, syntax, value), then missing keys, then cross-field rules.
    /// The first error found is returned.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        parse::parse_manifest(bytes)
    }

    /// The canonical text: the `format` line, then every key in canonical
    /// order, LF line endings, no comments.
    pub fn to_text(&self) -> String {
        write::write_manifest(self)
    }

    /// Checks the rules a manifest built in code can break: text fields,
    /// model shape, artifact size and chunk geometry, and a v1's key id.
    /// Errors carry the key but no line.
    pub fn validate(&self) -> Result<(), ManifestError> {
        rules::validate_manifest(self)
    }

    /// The `format` this manifest is written in: v1 when signed, else v0.
    pub fn format(&self) -> &'static str {
        match self.signature {
            Signature::UnsignedPlaceholderV0 => FORMAT_V0,
            Signature::Ed25519 { .. } => FORMAT_V1,
        }
    }

    /// What a v1 signature covers: the canonical text without the
    /// `signature` line (`docs/manifest-v1.md`, section 3). For a v0
    /// manifest, the same of its v0 text (nothing signs it).
    pub fn signing_text(&self) -> String {
        write::write_signing_text(self)
    }
}

impl fmt::Display for Manifest {
    /// Writes the canonical text ([`Manifest::to_text`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for Manifest {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Manifest::parse(text)
    }
}

/// A value that is not one of the names a key accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not a known {key} (expected one of {expected})")]
pub struct UnknownValue {
    /// The key whose value it is.
    pub key: &'static str,
    /// The value as written.
    pub found: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

/// `evidence-status`: what kind of review the evidence route has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceStatus {
    /// `unreviewed`: nobody vouches for the evidence yet.
    Unreviewed,
    /// `self-attested`: the publisher vouches for its own evidence.
    SelfAttested,
    /// `independently-reviewed`: someone other than the publisher reviewed
    /// the evidence, and the evidence route says who.
    IndependentlyReviewed,
}

impl EvidenceStatus {
    /// Every status, in spec order.
    pub const ALL: [EvidenceStatus; 3] = [
        EvidenceStatus::Unreviewed,
        EvidenceStatus::SelfAttested,
        EvidenceStatus::IndependentlyReviewed,
    ];

    /// The text name.
    pub fn name(self) -> &'static str {
        match self {
            EvidenceStatus::Unreviewed => "unreviewed",
            EvidenceStatus::SelfAttested => "self-attested",
            EvidenceStatus::IndependentlyReviewed => "independently-reviewed",
        }
    }
}

impl fmt::Display for EvidenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EvidenceStatus {
    type Err = UnknownValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.name() == text)
            .ok_or_else(|| UnknownValue {
                key: "evidence-status",
                found: text.to_owned(),
                expected: "unreviewed, self-attested, independently-reviewed",
            })
    }
}

/// `peer-hint-status`: whether the manifest's publisher names peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerHintStatus {
    /// `none`: the publisher gives no peer hints; peers come only from
    /// offers the user supplies.
    None,
    /// `advisory`: peer hints may travel with the manifest (in a catalog
    /// entry or an offer); they are suggestions to try, never trusted: every
    /// byte from a hinted peer is verified like any other.
    Advisory,
}

impl PeerHintStatus {
    /// Every status, in spec order.
    pub const ALL: [PeerHintStatus; 2] = [PeerHintStatus::None, PeerHintStatus::Advisory];

    /// The text name.
    pub fn name(self) -> &'static str {
        match self {
            PeerHintStatus::None => "none",
            PeerHintStatus::Advisory => "advisory",
        }
    }
}

impl fmt::Display for PeerHintStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PeerHintStatus {
    type Err = UnknownValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.name() == text)
            .ok_or_else(|| UnknownValue {
                key: "peer-hint-status",
                found: text.to_owned(),
                expected: "none, advisory",
            })
    }
}

/// `signature`: the placeholder of an unsigned v0 manifest, or a v1's
/// publisher key and Ed25519 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signature {
    /// `unsigned-placeholder-v0` (manifest v0): nobody signed it.
    UnsignedPlaceholderV0,
    /// Manifest v1: `publisher-key` and `signature: ed25519:<hex>`.
    Ed25519 {
        /// `publisher-key`: the key whose signature this is.
        publisher_key: PublicKey,
        /// `signature`: over [`Manifest::signing_text`], in the manifest
        /// domain (`crate::signing::Purpose::Manifest`).
        signature: Ed25519Signature,
    },
}

impl Signature {
    /// The scheme's name: `unsigned-placeholder-v0` or `ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            Signature::UnsignedPlaceholderV0 => "unsigned-placeholder-v0",
            Signature::Ed25519 { .. } => "ed25519",
        }
    }

    /// The publisher key of a signed manifest.
    pub fn publisher_key(&self) -> Option<&PublicKey> {
        match self {
            Signature::UnsignedPlaceholderV0 => None,
            Signature::Ed25519 { publisher_key, .. } => Some(publisher_key),
        }
    }
}

impl fmt::Display for Signature {
    /// The `signature` value as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::UnsignedPlaceholderV0 => f.write_str("unsigned-placeholder-v0"),
            Signature::Ed25519 { signature, .. } => write!(f, "{signature}"),
        }
    }
}

/// A v0 `signature` value other than the placeholder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a minimodel-manifest-v0 manifest is unsigned and its signature is unsigned-placeholder-v0 (found {0:?}); a signed manifest is minimodel-manifest-v1 (minimodel sign)"
)]
pub struct UnsupportedSignature(pub String);

impl FromStr for Signature {
    type Err = UnsupportedSignature;

    /// Reads a v0 `signature` value: the placeholder only. (A v1 value
    /// needs its `publisher-key`; the manifest reader reads both.)
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "unsigned-placeholder-v0" => Ok(Signature::UnsignedPlaceholderV0),
            other => Err(UnsupportedSignature(other.to_owned())),
        }
    }
}
