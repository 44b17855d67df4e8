//! Shared helpers of the swarm integration tests: a fixture artifact with
//! its manifest, checked into a VerifiedArtifact.

#![allow(dead_code)]

pub mod hostile;
pub mod nodes;
pub mod relay;

use std::path::{Path, PathBuf};
use std::time::Duration;

use minimodel_verifier::check::{VerifiedArtifact, verify_local_file};
use minimodel_verifier::hashing::hash_file;
use minimodel_verifier::manifest::{
    ChunkSection, EvidenceStatus, Manifest, PeerHintStatus, Signature, chunk_count_for,
};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::slm::{FixtureSpec, write_fixture};

/// How long a test waits for an event before it gives up: a guard
/// against a hang, not a figure under test, and generous for a loaded
/// machine. A test that passes never waits this long.
pub const HANG: Duration = Duration::from_secs(120);

/// Waits until `done` holds, looking every few milliseconds; panics with
/// `what` after [`HANG`].
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(HANG, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "waited {HANG:?} for {what}");
}

/// [`eventually`] for a thread that is not a tokio task.
pub fn eventually_blocking(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < HANG, "waited {HANG:?} for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub struct Artifact {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub verified: VerifiedArtifact,
}

/// Writes a fixture of `size` bytes into `dir` and describes it with
/// chunks of `chunk_size`.
pub fn artifact(dir: &Path, name: &str, size: u64, chunk_size: u32) -> Artifact {
    let path = dir.join(format!("{name}.slm"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let info = write_fixture(&mut file, &FixtureSpec::new(size, 42)).unwrap();
    drop(file);
    let hashes = hash_file(&path, chunk_size, &|_| {}).unwrap();
    let tree = MerkleTree::from_chunk_hashes(hashes.chunk_hashes.clone()).unwrap();
    let manifest = Manifest {
        model_id: name.parse().unwrap(),
        display_name: name.to_owned(),
        publisher_id: "acme".parse().unwrap(),
        key_id: "unsigned".parse().unwrap(),
        manifest_route: None,
        model_card_route: None,
        license_route: "https://example.org/license".parse().unwrap(),
        evidence_route: "https://example.org/evidence".parse().unwrap(),
        source_identity: "synthetic".to_owned(),
        takedown_route: None,
        artifact_bytes: size,
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
            chunk_size,
            chunk_count: chunk_count_for(size, chunk_size),
            merkle_root: tree.root(),
            chunk_list: None,
        },
    };
    manifest.validate().unwrap();
    let verified = verify_local_file(&manifest, &path, &|_| {}).unwrap();
    Artifact {
        path,
        manifest,
        verified,
    }
}
