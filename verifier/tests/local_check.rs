//! The full local check: every drift between manifest, header and bytes is
//! caught and named, and a good file passes every check.

use std::io::Cursor;
use std::path::PathBuf;

use minimodel_verifier::check::{VerifyError, verify_local_file, verify_with_hashes};
use minimodel_verifier::hashing::hash_reader;
use minimodel_verifier::manifest::{
    ChunkListRoute, ChunkSection, EvidenceStatus, Manifest, PeerHintStatus, Signature,
    chunk_count_for,
};
use minimodel_verifier::merkle::{MerkleTree, chunk_list_text};
use minimodel_verifier::receipt::{CheckName, ReceiptSource};
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::keyring::Keyring;
use minimodel_verifier::signing::manifest::sign_manifest;
use minimodel_verifier::signing::trust::{TrustAnchors, judge};
use minimodel_verifier::slm::{FixtureSpec, write_fixture};
use minimodel_verifier::{ModelShape, Quantization, Sha256Digest};

const CHUNK: u32 = 16384;

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    bytes: Vec<u8>,
    manifest: Manifest,
}

fn setup() -> Setup {
    let mut bytes = Vec::new();
    let info = write_fixture(&mut Cursor::new(&mut bytes), &FixtureSpec::new(200_000, 9)).unwrap();
    let hashes = hash_reader(&bytes[..], CHUNK, &|_| {}).unwrap();
    let tree = MerkleTree::from_chunk_hashes(hashes.chunk_hashes.clone()).unwrap();
    let manifest = Manifest {
        model_id: "check-test".parse().unwrap(),
        display_name: "Check test".to_owned(),
        publisher_id: "acme".parse().unwrap(),
        key_id: "unsigned".parse().unwrap(),
        manifest_route: None,
        model_card_route: None,
        license_route: "https://example.org/license".parse().unwrap(),
        evidence_route: "https://example.org/evidence".parse().unwrap(),
        source_identity: "synthetic".to_owned(),
        takedown_route: None,
        artifact_bytes: bytes.len() as u64,
        artifact_sha256: hashes.sha256,
        quantization: info.quantization,
        model_shape: info.shape,
        tokenizer_sha256: info.tokenizer_sha256,
        tensor_layout_sha256: info.tensor_layout_sha256,
        evidence_status: EvidenceStatus::Unreviewed,
        peer_hint_status: PeerHintStatus::None,
        signature: Signature::UnsignedPlaceholderV0,
        chunks: ChunkSection {
            scheme: minimodel_verifier::manifest::ChunkScheme::FixedSize,
            chunk_size: CHUNK,
            chunk_count: chunk_count_for(bytes.len() as u64, CHUNK),
            merkle_root: tree.root(),
            chunk_list: Some(ChunkListRoute {
                route: Some("https://example.org/chunks.txt".parse().unwrap()),
                sha256: Sha256Digest::of(chunk_list_text(tree.chunk_hashes()).as_bytes()),
            }),
        },
    };
    manifest.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.slm");
    std::fs::write(&path, &bytes).unwrap();
    Setup {
        _dir: dir,
        path,
        bytes,
        manifest,
    }
}

fn drift_field(error: VerifyError) -> &'static str {
    match error {
        VerifyError::Drift { field, .. } => field,
        other => panic!("expected drift, got {other:?}"),
    }
}

#[test]
fn a_good_file_passes_every_check_and_gets_a_receipt() {
    let s = setup();
    let artifact = verify_local_file(&s.manifest, &s.path, &|_| {}).unwrap();
    assert_eq!(
        artifact.checks(),
        [
            CheckName::Manifest,
            CheckName::SlmContainer,
            CheckName::HeaderDrift,
            CheckName::MerkleRoot,
            CheckName::ChunkList,
            CheckName::ArtifactSha256
        ]
    );
    assert_eq!(artifact.tree().root(), s.manifest.chunks.merkle_root);
    let keyring = Keyring::new();
    let anchors = TrustAnchors {
        keyring: &keyring,
        named_key: None,
        require_signature: false,
    };
    let check = judge(&s.manifest, &anchors).unwrap();
    let receipt = artifact.receipt(
        Sha256Digest::of(b"manifest"),
        &check,
        ReceiptSource::LocalFile,
    );
    assert_eq!(receipt.model_id, s.manifest.model_id);
    assert_eq!(
        receipt.chunk_count,
        s.bytes.len().div_ceil(CHUNK as usize) as u32
    );
    let json = serde_json::to_value(&receipt).unwrap();
    assert_eq!(json["format"], "minimodel-receipt-v0");
    assert_eq!(json["source"]["kind"], "local-file");
    assert_eq!(json["signature"], serde_json::json!({"status": "unsigned"}));

    // The same file under the manifest signed: the receipt names the key,
    // and a check of the unsigned manifest records nothing for it.
    let key = SecretKey::from_seed(&[4; 32]);
    let signed = sign_manifest(&s.manifest, &key);
    let artifact = verify_local_file(&signed, &s.path, &|_| {}).unwrap();
    let json = serde_json::to_value(artifact.receipt(
        Sha256Digest::of(b"manifest"),
        &check,
        ReceiptSource::LocalFile,
    ))
    .unwrap();
    assert!(json.get("signature").is_none(), "{json}");
    let signed_check = judge(&signed, &anchors).unwrap();
    let json = serde_json::to_value(artifact.receipt(
        Sha256Digest::of(b"manifest"),
        &signed_check,
        ReceiptSource::LocalFile,
    ))
    .unwrap();
    assert_eq!(json["signature"]["status"], "signed");
    assert_eq!(json["signature"]["trust"], "not-pinned");
    assert_eq!(
        json["signature"]["key_id"],
        key.public_key().key_id().to_string()
    );
    assert_eq!(
        json["signature"]["publisher_key"],
        key.public_key().to_string()
    );
}

#[test]
fn header_drift_is_named_field_by_field() {
    let s = setup();
    let mut quantization = s.manifest.clone();
    quantization.quantization = Quantization::F16;
    assert_eq!(
        drift_field(verify_local_file(&quantization, &s.path, &|_| {}).unwrap_err()),
        "quantization"
    );

    let mut shape = s.manifest.clone();
    shape.model_shape = ModelShape {
        layers: 99,
        ..shape.model_shape
    };
    assert_eq!(
        drift_field(verify_local_file(&shape, &s.path, &|_| {}).unwrap_err()),
        "model-shape"
    );

    let mut tokenizer = s.manifest.clone();
    tokenizer.tokenizer_sha256 = Sha256Digest::of(b"other");
    assert_eq!(
        drift_field(verify_local_file(&tokenizer, &s.path, &|_| {}).unwrap_err()),
        "tokenizer-sha256"
    );

    let mut layout = s.manifest.clone();
    layout.tensor_layout_sha256 = Sha256Digest::of(b"other");
    assert_eq!(
        drift_field(verify_local_file(&layout, &s.path, &|_| {}).unwrap_err()),
        "tensor-layout-sha256"
    );

    let mut size = s.manifest.clone();
    size.artifact_bytes += 1;
    assert_eq!(
        drift_field(verify_local_file(&size, &s.path, &|_| {}).unwrap_err()),
        "artifact-bytes"
    );
}

#[test]
fn a_flipped_tensor_byte_fails_the_merkle_root() {
    let s = setup();
    let mut bytes = s.bytes.clone();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    std::fs::write(&s.path, &bytes).unwrap();
    let error = verify_local_file(&s.manifest, &s.path, &|_| {}).unwrap_err();
    assert!(matches!(error, VerifyError::MerkleRoot { .. }), "{error:?}");
    assert!(!error.is_invalid_input() && !error.is_io());
}

#[test]
fn a_wrong_artifact_sha256_is_caught_even_when_the_root_matches() {
    let s = setup();
    let mut manifest = s.manifest.clone();
    manifest.artifact_sha256 = Sha256Digest::of(b"not it");
    let error = verify_local_file(&manifest, &s.path, &|_| {}).unwrap_err();
    assert!(
        matches!(error, VerifyError::ArtifactSha256 { .. }),
        "{error:?}"
    );
}

#[test]
fn a_wrong_chunk_list_checksum_is_caught() {
    let s = setup();
    let mut manifest = s.manifest.clone();
    manifest.chunks.chunk_list.as_mut().unwrap().sha256 = Sha256Digest::of(b"x");
    let error = verify_local_file(&manifest, &s.path, &|_| {}).unwrap_err();
    assert!(matches!(error, VerifyError::ChunkList { .. }), "{error:?}");
}

#[test]
fn a_broken_container_is_invalid_input_and_a_missing_file_is_io() {
    let s = setup();
    let mut bytes = s.bytes.clone();
    bytes[0] ^= 0xff;
    std::fs::write(&s.path, &bytes).unwrap();
    let error = verify_local_file(&s.manifest, &s.path, &|_| {}).unwrap_err();
    assert!(error.is_invalid_input(), "{error:?}");

    let missing = s.path.with_file_name("absent.slm");
    let error = verify_local_file(&s.manifest, &missing, &|_| {}).unwrap_err();
    assert!(error.is_io() && !error.is_invalid_input(), "{error:?}");
}

#[test]
fn hashes_computed_during_a_download_give_the_same_verdicts() {
    let s = setup();
    let hashes = hash_reader(&s.bytes[..], CHUNK, &|_| {}).unwrap();
    let artifact = verify_with_hashes(&s.manifest, &s.path, hashes.clone()).unwrap();
    assert_eq!(artifact.checks().len(), 6);
    let mut wrong = hashes;
    wrong.chunk_hashes[3] = Sha256Digest::of(b"bad chunk");
    let error = verify_with_hashes(&s.manifest, &s.path, wrong).unwrap_err();
    assert!(matches!(error, VerifyError::MerkleRoot { .. }));
}
