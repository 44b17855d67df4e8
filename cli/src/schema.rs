//! The JSON schemas in `docs/schemas/`, generated from the types with
//! `schemars` (a dev-dependency: none of this is in the binary).
//!
//! The CLI's own events derive their schema ([`crate::events::Event`]).
//! Receipts and import requests are types of `minimodel-verifier` and
//! `minimodel-swarm`, which stay free of schema code: they are described
//! here by mirrors, `#[serde(remote = ..)]` copies whose derived code reads
//! every field of the real type by name (a renamed or removed field does
//! not compile), with an exhaustive destructuring of each real struct (an
//! added field does not compile) and a match over each real enum. A test
//! also serializes real values through both and compares.
//!
//! `MINIMODEL_WRITE_SCHEMAS=1 cargo test -p minimodel --bin minimodel schema`
//! rewrites the files; without it the test fails when they differ.
//!
//! The peer offer has no schema yet (its format is changing to carry
//! several addresses): offers appear as objects without constraints.

// The mirrors exist for their derived code; not every generated function
// is called.
#![allow(dead_code)]

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use minimodel_swarm::offer::{ImportRequest, MAX_OFFERS, PeerOffer, REQUEST_FORMAT};
use minimodel_swarm::resume::{BytesCheck, DownloadStatus, StatusKind};
use minimodel_verifier::receipt::{
    CheckName, FileStamp, ImportReceipt, MirrorContribution, NsTime, PeerContribution,
    RECEIPT_FORMAT, ReceiptSource, SignatureRecord, TransferSummary,
};
use minimodel_verifier::route::Route;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::trust::KeyTrust;
use minimodel_verifier::{KeyId, ModelId, PublisherId, Sha256Digest};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::events::Event;

/// A lowercase hex SHA-256.
pub struct Sha256Hex;

impl JsonSchema for Sha256Hex {
    fn schema_name() -> Cow<'static, str> {
        "Sha256Hex".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A SHA-256 digest, 64 lowercase hex digits.",
            "type": "string",
            "pattern": "^[0-9a-f]{64}$"
        })
    }
}

/// A model id.
pub struct ModelIdText;

impl JsonSchema for ModelIdText {
    fn schema_name() -> Cow<'static, str> {
        "ModelId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A model id: 1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, without '..'.",
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
        })
    }
}

/// A peer id: the base32 (lowercase, unpadded) of a 32-byte key.
pub struct PeerIdText;

impl JsonSchema for PeerIdText {
    fn schema_name() -> Cow<'static, str> {
        "PeerId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A peer id: the 32-byte public key in lowercase base32 without padding.",
            "type": "string",
            "pattern": "^[a-z2-7]{51}[aq]$"
        })
    }
}

/// A publisher key's id.
pub struct KeyIdText;

impl JsonSchema for KeyIdText {
    fn schema_name() -> Cow<'static, str> {
        "KeyId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A publisher key id: mmk1 and 80 bits of the key's SHA-256 in lowercase base32 (docs/signing.md).",
            "type": "string",
            "pattern": "^mmk1[a-z2-7]{16}$"
        })
    }
}

/// A publisher public key.
pub struct PublicKeyText;

impl JsonSchema for PublicKeyText {
    fn schema_name() -> Cow<'static, str> {
        "PublicKey".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A publisher's Ed25519 public key: mmpk1 and its 32 bytes in lowercase base32 without padding (docs/signing.md).",
            "type": "string",
            "pattern": "^mmpk1[a-z2-7]{51}[aq]$"
        })
    }
}

/// `signed` or `unsigned`.
pub struct SignatureStatusText;

impl JsonSchema for SignatureStatusText {
    fn schema_name() -> Cow<'static, str> {
        "SignatureStatus".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Whether the manifest is signed (and its signature verified) or unsigned.",
            "type": "string",
            "enum": ["signed", "unsigned"]
        })
    }
}

/// Why a publisher key is trusted.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "KeyTrust", rename_all = "kebab-case")]
#[schemars(rename = "KeyTrust")]
pub enum KeyTrustDef {
    /// The keyring pinned this key for the publisher before.
    Pinned,
    /// Named with --publisher-key, and nothing pinned another.
    #[serde(rename = "publisher-key")]
    Named,
    /// Seen for the first time, pinned with the user's consent.
    FirstUse,
    /// Seen for the first time and not pinned (nobody was asked).
    NotPinned,
}

/// The manifest's signature as checked before the import.
#[derive(Serialize, JsonSchema)]
#[serde(
    remote = "SignatureRecord",
    tag = "status",
    rename_all = "kebab-case",
    deny_unknown_fields
)]
#[schemars(rename = "SignatureRecord")]
pub enum SignatureRecordDef {
    /// The manifest was unsigned (v0).
    Unsigned,
    /// The manifest's signature verified with `publisher_key`.
    Signed {
        /// The manifest's publisher id.
        #[schemars(with = "ModelIdText")]
        publisher_id: PublisherId,
        /// The key's id.
        #[schemars(with = "KeyIdText")]
        key_id: KeyId,
        /// The key that signed.
        #[schemars(with = "PublicKeyText")]
        publisher_key: PublicKey,
        /// Why the key was trusted.
        #[serde(with = "KeyTrustDef")]
        trust: KeyTrust,
    },
}

/// An https route (metadata only).
pub struct RouteText;

impl JsonSchema for RouteText {
    fn schema_name() -> Cow<'static, str> {
        "Route".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An https route to metadata (never to the model bytes).",
            "type": "string",
            "pattern": "^https://"
        })
    }
}

/// Any JSON object (a peer offer, until its schema is published).
pub struct AnyObject;

impl JsonSchema for AnyObject {
    fn schema_name() -> Cow<'static, str> {
        "PeerOffer".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A peer offer (docs/formats.md); its schema is not published yet.",
            "type": "object"
        })
    }
}

/// A body of the companion's API, described in its own schema file
/// (`companion-api.schema.json`, beside this one).
macro_rules! companion_body {
    ($name:ident, $def:literal) => {
        #[doc = concat!("The companion API's `", $def, "`.")]
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "$ref": concat!("companion-api.schema.json#/$defs/", $def)
                })
            }
        }
    };
}

companion_body!(CompanionItemView, "ItemView");
companion_body!(CompanionFollowView, "FollowView");
companion_body!(CompanionLimitsView, "LimitsView");
companion_body!(CompanionLogEntry, "LogEntry");

/// A string that must equal `value`.
fn constant(description: &str, value: &str) -> Schema {
    json_schema!({ "description": description, "type": "string", "const": value })
}

/// The `format` of an import request.
pub struct RequestFormat;

impl JsonSchema for RequestFormat {
    fn schema_name() -> Cow<'static, str> {
        "RequestFormat".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        constant("The version of the format.", REQUEST_FORMAT)
    }
}

/// The `format` of a receipt.
pub struct ReceiptFormat;

impl JsonSchema for ReceiptFormat {
    fn schema_name() -> Cow<'static, str> {
        "ReceiptFormat".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        constant("The version of the format.", RECEIPT_FORMAT)
    }
}

/// A request to import an artifact from the offered peers
/// (`minimodel-import-request-v0`, docs/formats.md).
#[derive(Serialize, JsonSchema)]
#[serde(remote = "ImportRequest", deny_unknown_fields)]
#[schemars(rename = "ImportRequest")]
pub struct ImportRequestDef {
    /// Always `minimodel-import-request-v0`.
    #[schemars(with = "RequestFormat")]
    pub format: String,
    /// The model.
    #[schemars(with = "ModelIdText")]
    pub model_id: ModelId,
    /// Size of the artifact in bytes.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    #[schemars(with = "Sha256Hex")]
    pub artifact_sha256: Sha256Digest,
    /// Where it is offered: peer offers that agree with the request on
    /// model id, size and SHA-256.
    #[schemars(with = "Vec<AnyObject>", length(min = 1, max = MAX_OFFERS))]
    pub offers: Vec<PeerOffer>,
}

/// The receipt of one import (`minimodel-receipt-v0`, docs/formats.md).
#[derive(Serialize, JsonSchema)]
#[serde(remote = "ImportReceipt", deny_unknown_fields)]
#[schemars(rename = "ImportReceipt")]
pub struct ImportReceiptDef {
    /// Always `minimodel-receipt-v0`.
    #[schemars(with = "ReceiptFormat")]
    pub format: String,
    /// The model.
    #[schemars(with = "ModelIdText")]
    pub model_id: ModelId,
    /// Size of the artifact in bytes.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    #[schemars(with = "Sha256Hex")]
    pub artifact_sha256: Sha256Digest,
    /// SHA-256 of the manifest file's bytes.
    #[schemars(with = "Sha256Hex")]
    pub manifest_sha256: Sha256Digest,
    /// Merkle root of the chunks.
    #[schemars(with = "Sha256Hex")]
    pub merkle_root: Sha256Digest,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Chunk count.
    pub chunk_count: u32,
    /// The license route that travels with the artifact.
    #[schemars(with = "RouteText")]
    pub license_route: Route,
    /// The evidence route that travels with the artifact.
    #[schemars(with = "RouteText")]
    pub evidence_route: Route,
    /// The checks passed, in order.
    #[schemars(with = "Vec<CheckNameDef>")]
    pub checks: Vec<CheckName>,
    /// The manifest's signature as checked before the import; absent in
    /// receipts written before signatures existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SignatureRecordDef>")]
    pub signature: Option<SignatureRecord>,
    /// Where the bytes came from.
    #[serde(with = "ReceiptSourceDef")]
    pub source: ReceiptSource,
    /// When the checks finished, RFC 3339 UTC.
    pub verified_at: String,
    /// The program that wrote the receipt.
    pub tool: String,
    /// When every check was last run again on the file on disk, RFC 3339
    /// UTC; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_at: Option<String>,
    /// The file as its last check left it; absent in older receipts (the
    /// file then counts as changed since).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "OptionFileStamp"
    )]
    #[schemars(with = "Option<FileStampDef>")]
    pub file: Option<FileStamp>,
}

/// What a finished file looked like when its check ended.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "FileStamp", deny_unknown_fields)]
pub struct FileStampDef {
    /// Its length in bytes.
    pub bytes: u64,
    /// The device it is on.
    pub device: u64,
    /// Its inode number.
    pub inode: u64,
    /// Its modification time.
    #[schemars(with = "NsTimeText")]
    pub modified: NsTime,
    /// Its status-change time.
    #[schemars(with = "NsTimeText")]
    pub changed: NsTime,
    /// When the stamp was taken, after the check read the file.
    #[schemars(with = "NsTimeText")]
    pub stamped: NsTime,
}

/// `Option<FileStamp>` through its mirror.
struct OptionFileStamp;

impl OptionFileStamp {
    fn serialize<S: serde::Serializer>(
        value: &Option<FileStamp>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wrap<'a>(#[serde(with = "FileStampDef")] &'a FileStamp);
        value.as_ref().map(Wrap).serialize(serializer)
    }
}

/// A time to the nanosecond since the Unix epoch.
pub struct NsTimeText;

impl JsonSchema for NsTimeText {
    fn schema_name() -> Cow<'static, str> {
        "NsTime".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Nanoseconds since the Unix epoch, written SECONDS.NNNNNNNNN.",
            "type": "string",
            "pattern": "^-?[0-9]+\\.[0-9]{9}$"
        })
    }
}

/// A named check that an import passed.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "CheckName", rename_all = "kebab-case")]
#[schemars(rename = "CheckName")]
pub enum CheckNameDef {
    /// The manifest parsed and passed every rule.
    Manifest,
    /// The `.slm` container passed every structural check.
    SlmContainer,
    /// Header fields agree with the manifest.
    HeaderDrift,
    /// Every chunk hashed to the Merkle root.
    MerkleRoot,
    /// The chunk list hashed to the manifest's `chunk-list-sha256`.
    ChunkList,
    /// The whole file hashed to `artifact-sha256`.
    ArtifactSha256,
}

/// Where the bytes came from.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "ReceiptSource", tag = "kind", rename_all = "kebab-case")]
#[schemars(rename = "ReceiptSource")]
pub enum ReceiptSourceDef {
    /// A file already on this machine.
    LocalFile,
    /// Downloaded from peers.
    Peers(#[serde(with = "TransferSummaryDef")] TransferSummary),
}

/// What a download did, per peer and in total.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "TransferSummary", deny_unknown_fields)]
#[schemars(rename = "TransferSummary")]
pub struct TransferSummaryDef {
    /// Verified chunks taken over from an earlier, interrupted run.
    pub chunks_resumed: u64,
    /// Chunks fetched and verified in this run.
    pub chunks_fetched: u64,
    /// Of those, chunks fetched again because their bytes on disk failed
    /// the read-back check.
    #[serde(default)]
    pub chunks_refetched: u64,
    /// Chunks copied in this run from versions already on this machine
    /// (`fetch --reuse`), each checked with its Merkle proof like a
    /// peer's; not counted in `chunks_resumed` or `chunks_fetched`.
    #[serde(default)]
    pub chunks_reused: u64,
    /// Bytes received that did not count.
    pub bytes_wasted: u64,
    /// Wall time of this run in milliseconds, until every check passed.
    pub duration_ms: u64,
    /// Milliseconds from the last verified chunk until the receipt was made.
    #[serde(default)]
    pub finish_ms: u64,
    /// One entry per peer that took part.
    #[schemars(with = "Vec<PeerContributionDef>")]
    pub peers: Vec<PeerContribution>,
    /// One entry per mirror that took part or was found unusable; absent
    /// when the download had none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<MirrorContributionDef>")]
    pub mirrors: Vec<MirrorContribution>,
}

/// One mirror's part in a download.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "MirrorContribution", deny_unknown_fields)]
#[schemars(rename = "MirrorContribution")]
pub struct MirrorContributionDef {
    /// The mirror as given, without its query: `https://host/path`.
    pub url: String,
    /// Verified chunks it delivered first.
    pub chunks: u64,
    /// Verified bytes it delivered first.
    pub bytes: u64,
    /// Chunks from it that failed the Merkle check.
    pub bad_chunks: u64,
    /// Whether it was dropped for a lie.
    pub blamed: bool,
    /// Why it left the download, in words, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
}

/// One peer's part in a download.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "PeerContribution", deny_unknown_fields)]
#[schemars(rename = "PeerContribution")]
pub struct PeerContributionDef {
    /// Its peer id.
    #[schemars(with = "PeerIdText")]
    pub peer_id: String,
    /// Where it was reached.
    pub address: String,
    /// Verified chunks it delivered.
    pub chunks: u64,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Chunks from it that failed their proof.
    pub bad_chunks: u64,
    /// Whether it was banned for sending bad data.
    pub banned: bool,
    /// How it was found: offer, remembered, peer-exchange, dht, lan or
    /// incoming.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub found_by: String,
}

/// One download in a directory (`status`).
#[derive(Serialize, JsonSchema)]
#[serde(remote = "DownloadStatus", deny_unknown_fields)]
#[schemars(rename = "DownloadStatus")]
pub struct DownloadStatusDef {
    /// The model id (from the file names).
    pub model_id: String,
    /// What it is.
    #[serde(with = "StatusKindDef")]
    pub kind: StatusKind,
    /// Verified chunks, when known.
    pub chunks_verified: Option<u32>,
    /// Chunks in the artifact, when known.
    pub chunk_count: Option<u32>,
    /// Verified bytes, when known.
    pub bytes_verified: Option<u64>,
    /// Bytes in the artifact, when known.
    pub artifact_bytes: Option<u64>,
    /// `bytes_verified / artifact_bytes` in percent, when known.
    pub percent: Option<f64>,
    /// Time of the last checkpoint (of the receipt, when complete).
    pub last_checkpoint: Option<String>,
    /// Generation of the state the figures come from.
    pub generation: Option<u64>,
    /// What is wrong or notable, in words.
    pub note: Option<String>,
    /// What reading the bytes found (`status --verify` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BytesCheckDef>")]
    pub check: Option<BytesCheck>,
}

/// What a download is.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "StatusKind", rename_all = "kebab-case")]
#[schemars(rename = "StatusKind")]
pub enum StatusKindDef {
    /// Some chunks verified, more to fetch.
    Partial,
    /// The artifact with its receipt.
    Complete,
    /// A state file that cannot be read.
    Corrupt,
    /// A state of a format this version does not read.
    Unsupported,
    /// An artifact without a usable receipt.
    Unverified,
}

/// What `status --verify` found when it read a download's bytes.
#[derive(Serialize, JsonSchema)]
#[serde(remote = "BytesCheck", deny_unknown_fields)]
#[schemars(rename = "BytesCheck")]
pub struct BytesCheckDef {
    /// When, RFC 3339 UTC.
    pub checked_at: String,
    /// Whether every byte that should be good is.
    pub ok: bool,
    /// Chunks checked.
    pub chunks_checked: u32,
    /// Of those, chunks that are bad; null when no chunk list tells which.
    pub bad_chunks: Option<u32>,
    /// Bytes read.
    pub bytes_read: u64,
}

/// Fails to compile when a mirrored struct gains a field: every field of
/// each real type is named here.
fn mirrors_name_every_field(
    request: ImportRequest,
    receipt: ImportReceipt,
    summary: TransferSummary,
    peer: PeerContribution,
    mirror: MirrorContribution,
    status: DownloadStatus,
    check: BytesCheck,
) {
    let ImportRequest {
        format: _,
        model_id: _,
        artifact_bytes: _,
        artifact_sha256: _,
        offers: _,
    } = request;
    let ImportReceipt {
        format: _,
        model_id: _,
        artifact_bytes: _,
        artifact_sha256: _,
        manifest_sha256: _,
        merkle_root: _,
        chunk_size: _,
        chunk_count: _,
        license_route: _,
        evidence_route: _,
        checks: _,
        signature: _,
        source: _,
        verified_at: _,
        tool: _,
        last_verified_at: _,
        file: _,
    } = receipt;
    let TransferSummary {
        chunks_resumed: _,
        chunks_fetched: _,
        chunks_refetched: _,
        chunks_reused: _,
        bytes_wasted: _,
        duration_ms: _,
        finish_ms: _,
        peers: _,
        mirrors: _,
    } = summary;
    let MirrorContribution {
        url: _,
        chunks: _,
        bytes: _,
        bad_chunks: _,
        blamed: _,
        left: _,
    } = mirror;
    let PeerContribution {
        peer_id: _,
        address: _,
        chunks: _,
        bytes: _,
        bad_chunks: _,
        banned: _,
        found_by: _,
    } = peer;
    let DownloadStatus {
        model_id: _,
        kind: _,
        chunks_verified: _,
        chunk_count: _,
        bytes_verified: _,
        artifact_bytes: _,
        percent: _,
        last_checkpoint: _,
        generation: _,
        note: _,
        check: _,
    } = status;
    let BytesCheck {
        checked_at: _,
        ok: _,
        chunks_checked: _,
        bad_chunks: _,
        bytes_read: _,
    } = check;
}

/// Makes every event's schema closed (no field beyond those listed), but
/// the offer's, whose fields are the offer's own and not published yet.
pub fn close_events(schema: &mut Schema) {
    let Some(variants) = schema
        .get_mut("oneOf")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for variant in variants {
        let open = variant["properties"]["event"]["const"] == "offer";
        if let Some(object) = variant.as_object_mut() {
            object.insert("additionalProperties".to_owned(), (open).into());
        }
    }
}

/// Where the schemas live, from the repository root.
pub const SCHEMA_DIR: &str = "docs/schemas";

/// Every schema file with its freshly generated text.
pub fn generate() -> Vec<(&'static str, String)> {
    fn text<T: JsonSchema>() -> String {
        let generator = SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator();
        let schema = generator.into_root_schema_for::<T>();
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    }
    vec![
        ("import-request.schema.json", text::<ImportRequestDef>()),
        ("receipt.schema.json", text::<ImportReceiptDef>()),
        ("events.schema.json", text::<Event>()),
    ]
}

/// `docs/schemas/` of this repository.
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SCHEMA_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schemas_equal_generated_ones() {
        let dir = schema_dir();
        let write = std::env::var_os("MINIMODEL_WRITE_SCHEMAS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for (name, text) in generate() {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != text {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:?} in {SCHEMA_DIR} differ from the types; run \
             MINIMODEL_WRITE_SCHEMAS=1 cargo test -p minimodel --bin minimodel schema \
             and check the diff in"
        );
    }

    #[test]
    fn every_event_schema_names_its_event() {
        let events: serde_json::Value = serde_json::from_str(&generate().pop().unwrap().1).unwrap();
        let variants = events["oneOf"].as_array().expect("one schema per event");
        assert!(variants.len() > 20, "{}", variants.len());
        for variant in variants {
            let name = &variant["properties"]["event"]["const"];
            assert!(name.is_string(), "{variant}");
            let open = name == "offer";
            assert_eq!(variant["additionalProperties"], open, "{variant}");
        }
    }

    #[test]
    fn mirrors_serialize_real_values_like_the_real_types() {
        let receipt_text = r#"{
            "format": "minimodel-receipt-v0",
            "model_id": "tiny",
            "artifact_bytes": 100,
            "artifact_sha256": "0000000000000000000000000000000000000000000000000000000000000000",
            "manifest_sha256": "1111111111111111111111111111111111111111111111111111111111111111",
            "merkle_root": "2222222222222222222222222222222222222222222222222222222222222222",
            "chunk_size": 16384,
            "chunk_count": 1,
            "license_route": "https://example.org/license",
            "evidence_route": "https://example.org/evidence",
            "checks": ["manifest", "slm-container", "header-drift", "merkle-root", "chunk-list", "artifact-sha256"],
            "signature": {"status": "signed", "publisher_id": "example-lab",
                "key_id": "mmk1eh7ddx5bksrgcytl",
                "publisher_key": "mmpk125njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena",
                "trust": "first-use"},
            "source": {"kind": "peers", "chunks_resumed": 1, "chunks_fetched": 2,
                "chunks_refetched": 0, "bytes_wasted": 3, "duration_ms": 4, "finish_ms": 5,
                "peers": [{"peer_id": "p", "address": "127.0.0.1:1", "chunks": 2, "bytes": 7,
                    "bad_chunks": 0, "banned": false}],
                "mirrors": [{"url": "https://mirror.example.org/tiny.slm", "chunks": 1,
                    "bytes": 3, "bad_chunks": 0, "blamed": false},
                    {"url": "https://liar.example.org/tiny.slm", "chunks": 0, "bytes": 0,
                    "bad_chunks": 1, "blamed": true, "left": "dropped: chunk 0 failed"}]},
            "verified_at": "2025-01-01T00:00:00Z",
            "tool": "minimodel 0.1.0",
            "last_verified_at": "2025-01-02T00:00:00Z",
            "file": {
                "bytes": 10,
                "device": 2049,
                "inode": 131075,
                "modified": "1735689600.123456789",
                "changed": "1735689600.123456789",
                "stamped": "1735689601.000000001"
            }
        }"#;
        let receipt: ImportReceipt = serde_json::from_str(receipt_text).unwrap();
        let mut through_mirror = Vec::new();
        ImportReceiptDef::serialize(
            &receipt,
            &mut serde_json::Serializer::new(&mut through_mirror),
        )
        .unwrap();
        let mirrored: serde_json::Value = serde_json::from_slice(&through_mirror).unwrap();
        assert_eq!(mirrored, serde_json::to_value(&receipt).unwrap());
        let local = ImportReceipt {
            source: ReceiptSource::LocalFile,
            last_verified_at: None,
            signature: Some(SignatureRecord::Unsigned),
            file: None,
            ..receipt
        };
        let mut through_mirror = Vec::new();
        ImportReceiptDef::serialize(
            &local,
            &mut serde_json::Serializer::new(&mut through_mirror),
        )
        .unwrap();
        let mirrored: serde_json::Value = serde_json::from_slice(&through_mirror).unwrap();
        assert_eq!(mirrored, serde_json::to_value(&local).unwrap());
    }
}
