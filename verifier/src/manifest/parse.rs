//! The manifest reader (v0 and v1): line syntax, then each value as its
//! line is read, then missing keys, then cross-field rules. The first
//! error wins. The `format` line, always the first entry, decides which
//! keys and `signature` values the rest may hold.

use super::key::KEY_COUNT;
use super::limits::{MAX_LINE_LEN, MAX_MANIFEST_LEN};
use super::rules::{
    check_artifact_bytes, check_chunk_count, check_chunk_size, check_geometry, check_key_id,
    check_text, is_forbidden_char, text_limit,
};
use super::{
    ChunkListRoute, ChunkScheme, ChunkSection, EvidenceStatus, FORMAT_V0, FORMAT_V1, Manifest,
    ManifestError, ManifestErrorKind, ManifestKey, PeerHintStatus, Signature,
};
use crate::digest::Sha256Digest;
use crate::ids::{KeyId, ModelId, PublisherId};
use crate::model::{ModelShape, Quantization};
use crate::route::Route;
use crate::signing::{Ed25519Signature, PublicKey};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads a whole manifest.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_LEN {
        return Err(ManifestError::new(
            None,
            None,
            ManifestErrorKind::TooLarge { len: bytes.len() },
        ));
    }
    if bytes.starts_with(UTF8_BOM) {
        return Err(ManifestError::new(
            Some(1),
            None,
            ManifestErrorKind::ByteOrderMark,
        ));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut draft = Draft::default();
    for (index, raw) in body.split(|byte| *byte == b'\n').enumerate() {
        let line = index + 1;
        let text = decode_line(raw, line)?;
        let Some((name, value)) = split_entry(text).map_err(|(reason, key)| ManifestError {
            line: Some(line),
            field: key.map(str::to_owned),
            kind: ManifestErrorKind::MalformedLine { reason },
        })?
        else {
            continue;
        };
        if draft.lines[ManifestKey::Format.index()].is_none() && name != "format" {
            return Err(ManifestError::new(
                Some(line),
                Some(ManifestKey::Format),
                ManifestErrorKind::MissingFormatLine,
            ));
        }
        let key = ManifestKey::from_name(name).ok_or_else(|| ManifestError {
            line: Some(line),
            field: Some(name.to_owned()),
            kind: ManifestErrorKind::UnknownKey,
        })?;
        draft.accept(line, key, value)?;
    }
    draft.finish()
}

/// Length, CR, UTF-8 and character checks of one line (without its LF).
fn decode_line(raw: &[u8], line: usize) -> Result<&str, ManifestError> {
    let fail = |kind| ManifestError::new(Some(line), None, kind);
    if raw.len() > MAX_LINE_LEN {
        return Err(fail(ManifestErrorKind::LineTooLong { len: raw.len() }));
    }
    if raw.contains(&b'\r') {
        return Err(fail(ManifestErrorKind::CarriageReturn));
    }
    let text = std::str::from_utf8(raw).map_err(|error| {
        fail(ManifestErrorKind::InvalidUtf8 {
            column: error.valid_up_to() + 1,
        })
    })?;
    if let Some((index, found)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_char(*c))
    {
        return Err(fail(ManifestErrorKind::ForbiddenCharacter {
            column: index + 1,
            found,
        }));
    }
    Ok(text)
}

/// A malformed line: the reason, and the key when it was readable.
type LineSyntaxError<'a> = (&'static str, Option<&'a str>);

/// Splits `key: value`; `None` for blank and comment lines.
fn split_entry(text: &str) -> Result<Option<(&str, &str)>, LineSyntaxError<'_>> {
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    if text.chars().all(char::is_whitespace) {
        return Err((
            "line holds only whitespace; a blank line must be empty",
            None,
        ));
    }
    if text.starts_with(char::is_whitespace) {
        return Err((
            "line starts with whitespace; write `key: value` from the first column",
            None,
        ));
    }
    let Some((key, rest)) = text.split_once(':') else {
        return Err((
            "expected `key: value` (a key, a colon, one space, a value)",
            None,
        ));
    };
    let key_ok = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if key.is_empty() || !key_ok {
        return Err((
            "a key is made of lowercase letters a-z, digits and '-', followed directly by ':'",
            None,
        ));
    }
    let value = match rest.strip_prefix(' ') {
        Some(value) => value,
        None if rest.is_empty() => return Err(("value is empty", Some(key))),
        None => return Err(("expected exactly one space after ':'", Some(key))),
    };
    if value.is_empty() {
        return Err(("value is empty", Some(key)));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err((
            "value starts or ends with whitespace (exactly one space follows ':')",
            Some(key),
        ));
    }
    Ok(Some((key, value)))
}

/// A decimal number with no sign, no spaces and no leading zeros.
fn parse_number(value: &str) -> Result<u64, ManifestErrorKind> {
    let canonical =
        value.bytes().all(|b| b.is_ascii_digit()) && !(value.len() > 1 && value.starts_with('0'));
    match value.parse::<u64>() {
        Ok(number) if canonical => Ok(number),
        _ => Err(ManifestErrorKind::BadNumber {
            value: value.to_owned(),
        }),
    }
}

fn parse_route(value: &str) -> Result<Route, ManifestErrorKind> {
    if value == "none" {
        return Err(ManifestErrorKind::RouteRequired);
    }
    Route::parse(value).map_err(ManifestErrorKind::BadRoute)
}

fn parse_optional_route(value: &str) -> Result<Option<Route>, ManifestErrorKind> {
    if value == "none" {
        return Ok(None);
    }
    Route::parse(value)
        .map(Some)
        .map_err(ManifestErrorKind::BadRoute)
}

fn parse_digest(value: &str) -> Result<Sha256Digest, ManifestErrorKind> {
    value.parse().map_err(ManifestErrorKind::BadHex)
}

/// Which format the `format` line named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// `minimodel-manifest-v0`: unsigned.
    V0,
    /// `minimodel-manifest-v1`: signed.
    V1,
}

/// Values read so far, each with the line it came from.
#[derive(Default)]
struct Draft {
    lines: [Option<usize>; KEY_COUNT],
    version: Option<Version>,
    publisher_key: Option<PublicKey>,
    /// A v1 `signature`.
    ed25519: Option<Ed25519Signature>,
    model_id: Option<ModelId>,
    display_name: Option<String>,
    publisher_id: Option<PublisherId>,
    key_id: Option<KeyId>,
    manifest_route: Option<Option<Route>>,
    model_card_route: Option<Option<Route>>,
    license_route: Option<Route>,
    evidence_route: Option<Route>,
    source_identity: Option<String>,
    takedown_route: Option<Option<Route>>,
    artifact_bytes: Option<u64>,
    artifact_sha256: Option<Sha256Digest>,
    quantization: Option<Quantization>,
    model_shape: Option<ModelShape>,
    tokenizer_sha256: Option<Sha256Digest>,
    tensor_layout_sha256: Option<Sha256Digest>,
    evidence_status: Option<EvidenceStatus>,
    peer_hint_status: Option<PeerHintStatus>,
    signature: Option<Signature>,
    chunk_scheme: Option<ChunkScheme>,
    chunk_size: Option<u32>,
    chunk_count: Option<u64>,
    merkle_root: Option<Sha256Digest>,
    chunk_list_route: Option<Option<Route>>,
    chunk_list_sha256: Option<Sha256Digest>,
}

impl Draft {
    /// Records one entry: refuses a duplicate, then reads the value.
    fn accept(&mut self, line: usize, key: ManifestKey, value: &str) -> Result<(), ManifestError> {
        if let Some(first_line) = self.lines[key.index()] {
            return Err(ManifestError::new(
                Some(line),
                Some(key),
                ManifestErrorKind::DuplicateKey { first_line },
            ));
        }
        self.lines[key.index()] = Some(line);
        self.read_value(key, value)
            .map_err(|kind| ManifestError::new(Some(line), Some(key), kind))
    }

    fn read_value(&mut self, key: ManifestKey, value: &str) -> Result<(), ManifestErrorKind> {
        match key {
            ManifestKey::Format => {
                self.version = Some(match value {
                    FORMAT_V0 => Version::V0,
                    FORMAT_V1 => Version::V1,
                    _ => {
                        return Err(ManifestErrorKind::UnsupportedFormat {
                            found: value.to_owned(),
                        });
                    }
                });
            }
            ManifestKey::PublisherKey => {
                if self.version != Some(Version::V1) {
                    return Err(ManifestErrorKind::KeyNotInFormat);
                }
                self.publisher_key = Some(value.parse().map_err(ManifestErrorKind::BadPublicKey)?);
            }
            ManifestKey::ModelId => {
                self.model_id = Some(ModelId::new(value).map_err(ManifestErrorKind::BadId)?);
            }
            ManifestKey::DisplayName => {
                check_text(value, text_limit(key))?;
                self.display_name = Some(value.to_owned());
            }
            ManifestKey::PublisherId => {
                self.publisher_id =
                    Some(PublisherId::new(value).map_err(ManifestErrorKind::BadId)?);
            }
            ManifestKey::KeyId => {
                self.key_id = Some(KeyId::new(value).map_err(ManifestErrorKind::BadId)?);
            }
            ManifestKey::ManifestRoute => self.manifest_route = Some(parse_optional_route(value)?),
            ManifestKey::ModelCardRoute => {
                self.model_card_route = Some(parse_optional_route(value)?);
            }
            ManifestKey::LicenseRoute => self.license_route = Some(parse_route(value)?),
            ManifestKey::EvidenceRoute => self.evidence_route = Some(parse_route(value)?),
            ManifestKey::SourceIdentity => {
                check_text(value, text_limit(key))?;
                self.source_identity = Some(value.to_owned());
            }
            ManifestKey::TakedownRoute => self.takedown_route = Some(parse_optional_route(value)?),
            ManifestKey::ArtifactBytes => {
                let artifact_bytes = parse_number(value)?;
                check_artifact_bytes(artifact_bytes)?;
                self.artifact_bytes = Some(artifact_bytes);
            }
            ManifestKey::ArtifactSha256 => self.artifact_sha256 = Some(parse_digest(value)?),
            ManifestKey::Quantization => {
                self.quantization =
                    Some(value.parse().map_err(ManifestErrorKind::BadQuantization)?);
            }
            ManifestKey::ModelShape => {
                self.model_shape = Some(value.parse().map_err(ManifestErrorKind::BadModelShape)?);
            }
            ManifestKey::TokenizerSha256 => self.tokenizer_sha256 = Some(parse_digest(value)?),
            ManifestKey::TensorLayoutSha256 => {
                self.tensor_layout_sha256 = Some(parse_digest(value)?);
            }
            ManifestKey::EvidenceStatus => {
                self.evidence_status =
                    Some(value.parse().map_err(ManifestErrorKind::UnknownValue)?);
            }
            ManifestKey::PeerHintStatus => {
                self.peer_hint_status =
                    Some(value.parse().map_err(ManifestErrorKind::UnknownValue)?);
            }
            ManifestKey::Signature => match self.version {
                Some(Version::V1) => {
                    self.ed25519 = Some(value.parse().map_err(ManifestErrorKind::BadSignature)?);
                    // The key comes with it in `finish`; a placeholder
                    // marks the line as read.
                    self.signature = Some(Signature::UnsignedPlaceholderV0);
                }
                _ => {
                    self.signature = Some(
                        value
                            .parse()
                            .map_err(ManifestErrorKind::UnsupportedSignature)?,
                    );
                }
            },
            ManifestKey::ChunkScheme => {
                self.chunk_scheme = Some(value.parse().map_err(|()| {
                    ManifestErrorKind::UnsupportedChunkScheme {
                        found: value.to_owned(),
                    }
                })?);
            }
            ManifestKey::ChunkSize => {
                self.chunk_size = Some(check_chunk_size(parse_number(value)?)?);
            }
            ManifestKey::ChunkCount => {
                let chunk_count = parse_number(value)?;
                check_chunk_count(chunk_count)?;
                self.chunk_count = Some(chunk_count);
            }
            ManifestKey::MerkleRoot => self.merkle_root = Some(parse_digest(value)?),
            ManifestKey::ChunkListRoute => {
                self.chunk_list_route = Some(parse_optional_route(value)?)
            }
            ManifestKey::ChunkListSha256 => self.chunk_list_sha256 = Some(parse_digest(value)?),
        }
        Ok(())
    }

    fn line(&self, key: ManifestKey) -> Option<usize> {
        self.lines[key.index()]
    }

    /// Missing keys in canonical order, then the cross-field rules.
    fn finish(self) -> Result<Manifest, ManifestError> {
        if self.line(ManifestKey::Format).is_none() {
            return Err(ManifestError::new(
                None,
                Some(ManifestKey::Format),
                ManifestErrorKind::MissingFormatLine,
            ));
        }
        // Struct fields are evaluated in the order written, which is the
        // canonical key order, so the first missing key is reported.
        let model_id = required(self.model_id, ManifestKey::ModelId)?;
        let display_name = required(self.display_name, ManifestKey::DisplayName)?;
        let publisher_id = required(self.publisher_id, ManifestKey::PublisherId)?;
        let key_id = required(self.key_id, ManifestKey::KeyId)?;
        let publisher_key = match self.version {
            Some(Version::V1) => Some(required(self.publisher_key, ManifestKey::PublisherKey)?),
            _ => None,
        };
        let mut manifest = Manifest {
            model_id,
            display_name,
            publisher_id,
            key_id,
            manifest_route: required(self.manifest_route, ManifestKey::ManifestRoute)?,
            model_card_route: required(self.model_card_route, ManifestKey::ModelCardRoute)?,
            license_route: required(self.license_route, ManifestKey::LicenseRoute)?,
            evidence_route: required(self.evidence_route, ManifestKey::EvidenceRoute)?,
            source_identity: required(self.source_identity, ManifestKey::SourceIdentity)?,
            takedown_route: required(self.takedown_route, ManifestKey::TakedownRoute)?,
            artifact_bytes: required(self.artifact_bytes, ManifestKey::ArtifactBytes)?,
            artifact_sha256: required(self.artifact_sha256, ManifestKey::ArtifactSha256)?,
            quantization: required(self.quantization, ManifestKey::Quantization)?,
            model_shape: required(self.model_shape, ManifestKey::ModelShape)?,
            tokenizer_sha256: required(self.tokenizer_sha256, ManifestKey::TokenizerSha256)?,
            tensor_layout_sha256: required(
                self.tensor_layout_sha256,
                ManifestKey::TensorLayoutSha256,
            )?,
            evidence_status: required(self.evidence_status, ManifestKey::EvidenceStatus)?,
            peer_hint_status: required(self.peer_hint_status, ManifestKey::PeerHintStatus)?,
            signature: {
                let signature = required(self.signature, ManifestKey::Signature)?;
                match (publisher_key, self.ed25519) {
                    (Some(publisher_key), Some(signature)) => Signature::Ed25519 {
                        publisher_key,
                        signature,
                    },
                    _ => signature,
                }
            },
            chunks: ChunkSection {
                scheme: required(self.chunk_scheme, ManifestKey::ChunkScheme)?,
                chunk_size: required(self.chunk_size, ManifestKey::ChunkSize)?,
                chunk_count: required(self.chunk_count, ManifestKey::ChunkCount)?,
                merkle_root: required(self.merkle_root, ManifestKey::MerkleRoot)?,
                chunk_list: None,
            },
        };
        check_geometry(
            manifest.chunks.scheme,
            manifest.artifact_bytes,
            manifest.chunks.chunk_size,
            manifest.chunks.chunk_count,
        )
        .map_err(|kind| {
            ManifestError::new(
                self.lines[ManifestKey::ChunkCount.index()],
                Some(ManifestKey::ChunkCount),
                kind,
            )
        })?;
        if self.chunk_list_route == Some(None) && !manifest.chunks.scheme.is_listed() {
            // Only a listed scheme names a list that no web server has:
            // a fixed one's list is optional, left out when not published.
            return Err(ManifestError::new(
                self.lines[ManifestKey::ChunkListRoute.index()],
                Some(ManifestKey::ChunkListRoute),
                ManifestErrorKind::RouteRequired,
            ));
        }
        manifest.chunks.chunk_list = match (self.chunk_list_route, self.chunk_list_sha256) {
            (Some(route), Some(sha256)) => Some(ChunkListRoute { route, sha256 }),
            (None, None) if manifest.chunks.scheme.is_listed() => {
                return Err(ManifestError::new(
                    None,
                    Some(ManifestKey::ChunkListSha256),
                    ManifestErrorKind::ListedChunksNeedTheirList {
                        scheme: manifest.chunks.scheme.name(),
                    },
                ));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ManifestError::new(
                    self.lines[ManifestKey::ChunkListRoute.index()],
                    Some(ManifestKey::ChunkListSha256),
                    ManifestErrorKind::ChunkListIncomplete,
                ));
            }
            (None, Some(_)) => {
                return Err(ManifestError::new(
                    self.lines[ManifestKey::ChunkListSha256.index()],
                    Some(ManifestKey::ChunkListRoute),
                    ManifestErrorKind::ChunkListIncomplete,
                ));
            }
        };
        check_key_id(&manifest).map_err(|kind| {
            ManifestError::new(
                self.lines[ManifestKey::KeyId.index()],
                Some(ManifestKey::KeyId),
                kind,
            )
        })?;
        Ok(manifest)
    }
}

fn required<T>(slot: Option<T>, key: ManifestKey) -> Result<T, ManifestError> {
    slot.ok_or_else(|| ManifestError::new(None, Some(key), ManifestErrorKind::MissingKey))
}
