//! Why a manifest is refused: the line, the key and the rule it broke.

use std::fmt;

use super::limits::{
    MAX_CHUNK_COUNT, MAX_CHUNK_SIZE, MAX_LINE_LEN, MAX_MANIFEST_LEN, MIN_CHUNK_SIZE,
};
use super::{ManifestKey, UnknownValue, UnsupportedSignature};
use crate::digest::HexDigestError;
use crate::ids::IdError;
use crate::model::{ModelShapeError, UnknownQuantization};
use crate::route::RouteError;
use crate::signing::{KeyTextError, PublisherKeyId};

/// A refused manifest. Displays as
/// `line 12, field chunk-size: 3000 is not a power of two between 16384 and 16777216`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// 1-based line number, when the error belongs to a line (a missing key,
    /// an oversized file and errors from [`super::Manifest::validate`] have
    /// none).
    pub line: Option<usize>,
    /// The key concerned, as written (for an unknown key, the unknown name).
    pub field: Option<String>,
    /// The rule that was broken.
    pub kind: ManifestErrorKind,
}

impl ManifestError {
    /// An error on `line` (if any) about `key` (if any).
    pub(crate) fn new(
        line: Option<usize>,
        key: Option<ManifestKey>,
        kind: ManifestErrorKind,
    ) -> Self {
        ManifestError {
            line,
            field: key.map(|key| key.name().to_owned()),
            kind,
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.field) {
            (Some(line), Some(field)) => write!(f, "line {line}, field {field}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            (None, Some(field)) => write!(f, "field {field}: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.kind)
    }
}

/// The kind is part of the message, so it is not repeated as a source.
impl std::error::Error for ManifestError {}

/// The rule a manifest broke. Each has a stable [`ManifestErrorKind::code`]
/// (the tables in `docs/manifest-v0.md` and `docs/manifest-v1.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestErrorKind {
    /// The file is larger than [`MAX_MANIFEST_LEN`].
    #[error("manifest is {len} bytes; the limit is {MAX_MANIFEST_LEN}")]
    TooLarge {
        /// Size in bytes.
        len: usize,
    },
    /// A line is longer than [`MAX_LINE_LEN`].
    #[error("line is {len} bytes long; the limit is {MAX_LINE_LEN}")]
    LineTooLong {
        /// Length in bytes, without the LF.
        len: usize,
    },
    /// The file starts with a UTF-8 byte order mark.
    #[error("manifest starts with a byte order mark; save it as UTF-8 without BOM")]
    ByteOrderMark,
    /// A line holds a carriage return.
    #[error("line holds a carriage return (CR); manifests use LF line endings only")]
    CarriageReturn,
    /// A line is not valid UTF-8.
    #[error("line is not valid UTF-8 (bad byte at column {column})")]
    InvalidUtf8 {
        /// 1-based byte column of the first bad byte.
        column: usize,
    },
    /// A line holds a control, bidirectional-formatting or line-separator
    /// character.
    #[error(
        "line holds the character {found:?} at column {column}; control, bidirectional-formatting and separator characters are refused"
    )]
    ForbiddenCharacter {
        /// 1-based character column.
        column: usize,
        /// The offending character.
        found: char,
    },
    /// The line is not a comment, a blank line or `key: value`.
    #[error("malformed line: {reason}")]
    MalformedLine {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The first entry is not the `format` line.
    #[error(
        "the first entry must be `format: minimodel-manifest-v0` (or `format: minimodel-manifest-v1`, signed)"
    )]
    MissingFormatLine,
    /// The `format` line names another format.
    #[error(
        "format {found:?} is not supported; this reader knows minimodel-manifest-v0 and minimodel-manifest-v1"
    )]
    UnsupportedFormat {
        /// The value as written.
        found: String,
    },
    /// A key that no manifest format defines.
    #[error("unknown key; manifests v0 and v1 do not define it")]
    UnknownKey,
    /// A v1 key (`publisher-key`) in a v0 manifest.
    #[error(
        "publisher-key belongs to signed manifests (minimodel-manifest-v1); a minimodel-manifest-v0 manifest is unsigned"
    )]
    KeyNotInFormat,
    /// A key given twice.
    #[error("key given twice (first on line {first_line})")]
    DuplicateKey {
        /// Where it was given first.
        first_line: usize,
    },
    /// A required key is absent.
    #[error("required key is missing")]
    MissingKey,
    /// A SHA-256 value that is not 64 lowercase hex digits.
    #[error("{0}")]
    BadHex(HexDigestError),
    /// A number that is not canonical decimal or does not fit 64 bits.
    #[error(
        "{value:?} is not a decimal number from 0 to 18446744073709551615 written without sign, spaces or leading zeros"
    )]
    BadNumber {
        /// The value as written.
        value: String,
    },
    /// `artifact-bytes` is zero.
    #[error("artifact-bytes must be at least 1")]
    EmptyArtifact,
    /// `chunk-size` is not a power of two in range.
    #[error("{size} is not a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")]
    ChunkSizeInvalid {
        /// The chunk size given.
        size: u64,
    },
    /// `chunk-count` is above [`MAX_CHUNK_COUNT`].
    #[error(
        "{count} chunks is above the limit of {MAX_CHUNK_COUNT} (the have-bitfield must fit one 64 KiB frame); use a larger chunk size"
    )]
    TooManyChunks {
        /// The chunk count given.
        count: u64,
    },
    /// `chunk-count` is not `ceil(artifact-bytes / chunk-size)`.
    #[error(
        "chunk-count is {found} but ceil(artifact-bytes {artifact_bytes} / chunk-size {chunk_size}) is {expected}"
    )]
    ChunkCountMismatch {
        /// The chunk count given.
        found: u64,
        /// The chunk count the geometry implies.
        expected: u64,
        /// `artifact-bytes`.
        artifact_bytes: u64,
        /// `chunk-size`.
        chunk_size: u32,
    },
    /// A listed scheme's chunk count outside what its lengths allow.
    #[error(
        "chunk-count is {found}; chunks of 1 byte up to chunk-size make {fewest} to {most} of this artifact"
    )]
    ListedChunkCount {
        /// The chunk count given.
        found: u64,
        /// `ceil(artifact-bytes / chunk-size)`.
        fewest: u64,
        /// `artifact-bytes`, at most the chunk count limit.
        most: u64,
    },
    /// An id outside the safe charset.
    #[error("{0}")]
    BadId(IdError),
    /// A route refused by route safety.
    #[error("{0}")]
    BadRoute(RouteError),
    /// `none` given for a route that is required.
    #[error(
        "`none` is not allowed here; give a https:// metadata route (chunk-list-route is left out together with chunk-list-sha256 instead)"
    )]
    RouteRequired,
    /// `display-name` or `source-identity` breaks the text rule.
    #[error("{reason}")]
    BadText {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `display-name` or `source-identity` is longer than its limit.
    #[error("text is {chars} characters long; the limit is {max}")]
    TextTooLong {
        /// Length in characters.
        chars: usize,
        /// The limit for this key.
        max: usize,
    },
    /// A value that is not one of the accepted names.
    #[error("{0}")]
    UnknownValue(UnknownValue),
    /// An unknown `quantization`.
    #[error("{0}")]
    BadQuantization(UnknownQuantization),
    /// A `model-shape` that does not parse or breaks the shape rules.
    #[error("{0}")]
    BadModelShape(ModelShapeError),
    /// A v0 `signature` other than the placeholder.
    #[error("{0}")]
    UnsupportedSignature(UnsupportedSignature),
    /// A v1 `signature` that is not `ed25519:` and 128 lowercase hex
    /// digits.
    #[error(
        "{0}; a minimodel-manifest-v1 manifest is signed: its signature is ed25519: and 128 lowercase hex digits"
    )]
    BadSignature(KeyTextError),
    /// A `publisher-key` that is not a usable public key.
    #[error("{0}")]
    BadPublicKey(KeyTextError),
    /// A v1 `key-id` other than the id of its `publisher-key`.
    #[error("key-id must be {expected}, the id of publisher-key")]
    KeyIdMismatch {
        /// The id of `publisher-key`.
        expected: PublisherKeyId,
    },
    /// A `chunk-scheme` other than `fixed-size-merkle-v0`.
    #[error("chunk scheme {found:?} is not supported; manifest v0 knows fixed-size-merkle-v0")]
    UnsupportedChunkScheme {
        /// The value as written.
        found: String,
    },
    /// One of `chunk-list-route` and `chunk-list-sha256` without the other.
    #[error(
        "chunk-list-route and chunk-list-sha256 come together; add the missing one or remove both"
    )]
    ChunkListIncomplete,
    /// A listed scheme without `chunk-list-sha256`: nothing would say how
    /// long each chunk is.
    #[error(
        "`{scheme}` lists each chunk's length in the chunk list: add chunk-list-sha256 (and chunk-list-route, `none` when only peers serve it)"
    )]
    ListedChunksNeedTheirList {
        /// The scheme.
        scheme: &'static str,
    },
}

impl ManifestErrorKind {
    /// A stable kebab-case name for the kind, used in fixtures and in
    /// machine-readable output.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestErrorKind::TooLarge { .. } => "too-large",
            ManifestErrorKind::LineTooLong { .. } => "line-too-long",
            ManifestErrorKind::ByteOrderMark => "byte-order-mark",
            ManifestErrorKind::CarriageReturn => "carriage-return",
            ManifestErrorKind::InvalidUtf8 { .. } => "invalid-utf8",
            ManifestErrorKind::ForbiddenCharacter { .. } => "forbidden-character",
            ManifestErrorKind::MalformedLine { .. } => "malformed-line",
            ManifestErrorKind::MissingFormatLine => "missing-format-line",
            ManifestErrorKind::UnsupportedFormat { .. } => "unsupported-format",
            ManifestErrorKind::UnknownKey => "unknown-key",
            ManifestErrorKind::KeyNotInFormat => "key-not-in-format",
            ManifestErrorKind::DuplicateKey { .. } => "duplicate-key",
            ManifestErrorKind::MissingKey => "missing-key",
            ManifestErrorKind::BadHex(_) => "bad-hex",
            ManifestErrorKind::BadNumber { .. } => "bad-number",
            ManifestErrorKind::EmptyArtifact => "empty-artifact",
            ManifestErrorKind::ChunkSizeInvalid { .. } => "chunk-size-invalid",
            ManifestErrorKind::TooManyChunks { .. } => "too-many-chunks",
            ManifestErrorKind::ChunkCountMismatch { .. } => "chunk-count-mismatch",
            ManifestErrorKind::ListedChunkCount { .. } => "listed-chunk-count",
            ManifestErrorKind::BadId(_) => "bad-id",
            ManifestErrorKind::BadRoute(_) => "bad-route",
            ManifestErrorKind::RouteRequired => "route-required",
            ManifestErrorKind::BadText { .. } => "bad-text",
            ManifestErrorKind::TextTooLong { .. } => "text-too-long",
            ManifestErrorKind::UnknownValue(_) => "unknown-value",
            ManifestErrorKind::BadQuantization(_) => "bad-quantization",
            ManifestErrorKind::BadModelShape(_) => "bad-model-shape",
            ManifestErrorKind::UnsupportedSignature(_) => "unsupported-signature",
            ManifestErrorKind::BadSignature(_) => "bad-signature",
            ManifestErrorKind::BadPublicKey(_) => "bad-public-key",
            ManifestErrorKind::KeyIdMismatch { .. } => "key-id-mismatch",
            ManifestErrorKind::UnsupportedChunkScheme { .. } => "unsupported-chunk-scheme",
            ManifestErrorKind::ChunkListIncomplete => "chunk-list-incomplete",
            ManifestErrorKind::ListedChunksNeedTheirList { .. } => "listed-chunks-need-their-list",
        }
    }
}
