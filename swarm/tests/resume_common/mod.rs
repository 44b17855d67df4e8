//! Shared by the `resume_*` tests: a synthetic artifact with its manifest,
//! verified chunks, and shortcuts to open a download directory.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use minimodel_swarm::resume::{
    OpenedDownload, PartialDownload, ResumeError, ResumeOptions, ResumeReport,
};
use minimodel_verifier::chunk::{
    ChunkData, ChunkGeometry, ChunkIndex, ChunkVerifier, VerifiedChunk,
};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::receipt::{
    CheckName, ImportReceipt, RECEIPT_FORMAT, ReceiptSource, SignatureRecord, now_rfc3339,
};
use minimodel_verifier::{Manifest, ModelId, Sha256Digest};

/// Chunk size of the test artifacts (the smallest a manifest allows).
pub const CHUNK: u32 = 16 * 1024;

/// An artifact, its manifest and its tree.
pub struct Artifact {
    pub bytes: Vec<u8>,
    pub manifest: Manifest,
    pub manifest_sha256: Sha256Digest,
    pub tree: MerkleTree,
    pub geometry: ChunkGeometry,
}

impl Artifact {
    /// `len` pseudo-random bytes from `seed`, as model `model_id`.
    pub fn new(model_id: &str, len: usize, seed: u64) -> Self {
        let mut state = seed | 1;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let geometry = ChunkGeometry::new(len as u64, CHUNK).unwrap();
        let hashes = geometry
            .indices()
            .map(|index| {
                let range = geometry.byte_range(index).unwrap();
                Sha256Digest::of(&bytes[range.start as usize..range.end as usize])
            })
            .collect();
        let tree = MerkleTree::from_chunk_hashes(hashes).unwrap();
        let mut manifest = Manifest::parse(include_str!(
            "../../../fixtures/manifest/good-canonical.manifest"
        ))
        .unwrap();
        manifest.model_id = ModelId::new(model_id).unwrap();
        manifest.artifact_bytes = len as u64;
        manifest.artifact_sha256 = Sha256Digest::of(&bytes);
        manifest.chunks.chunk_size = CHUNK;
        manifest.chunks.chunk_count = u64::from(geometry.chunk_count());
        manifest.chunks.merkle_root = tree.root();
        manifest.chunks.chunk_list = None;
        manifest.validate().unwrap();
        let manifest_sha256 = Sha256Digest::of(manifest.to_text().as_bytes());
        Self {
            bytes,
            manifest,
            manifest_sha256,
            tree,
            geometry,
        }
    }

    /// 21 chunks, the last one short.
    pub fn small(model_id: &str) -> Self {
        Self::new(model_id, 20 * CHUNK as usize + 1000, 7)
    }

    pub fn chunk_count(&self) -> u32 {
        self.geometry.chunk_count()
    }

    pub fn chunk_bytes(&self, index: u32) -> &[u8] {
        let range = self.geometry.byte_range(ChunkIndex(index)).unwrap();
        &self.bytes[range.start as usize..range.end as usize]
    }

    /// Chunk `index`, verified, and its proof.
    pub fn verified(&self, index: u32) -> (VerifiedChunk, Vec<Sha256Digest>) {
        let proof = self.tree.proof(index).unwrap();
        let verifier = ChunkVerifier::new(self.geometry.clone(), self.tree.root());
        let data = ChunkData::from(self.chunk_bytes(index).to_vec());
        (
            verifier.verify(ChunkIndex(index), data, &proof).unwrap(),
            proof,
        )
    }

    /// Writes and records chunk `index`.
    pub fn store(&self, download: &PartialDownload, index: u32) {
        let (chunk, proof) = self.verified(index);
        download.store_verified(&chunk, &proof).unwrap();
    }

    /// The receipt a driver would write after the full check.
    pub fn receipt(&self) -> ImportReceipt {
        ImportReceipt {
            format: RECEIPT_FORMAT.to_owned(),
            model_id: self.manifest.model_id.clone(),
            artifact_bytes: self.manifest.artifact_bytes,
            artifact_sha256: self.manifest.artifact_sha256,
            manifest_sha256: self.manifest_sha256,
            merkle_root: self.tree.root(),
            chunk_size: CHUNK,
            chunk_count: self.chunk_count(),
            license_route: self.manifest.license_route.clone(),
            evidence_route: self.manifest.evidence_route.clone(),
            checks: vec![CheckName::MerkleRoot, CheckName::ArtifactSha256],
            signature: Some(SignatureRecord::Unsigned),
            source: ReceiptSource::LocalFile,
            verified_at: now_rfc3339(),
            tool: "minimodel-test".to_owned(),
            last_verified_at: None,
            file: None,
        }
    }
}

/// Options with a fixed sample seed.
pub fn options(sample: usize) -> ResumeOptions {
    ResumeOptions {
        recheck: false,
        sample,
        sample_seed: Some(1),
        listed: None,
    }
}

/// Opens `dir` for `artifact`, whatever it holds.
pub fn try_open(
    dir: &Path,
    artifact: &Artifact,
    options: &ResumeOptions,
) -> Result<OpenedDownload, ResumeError> {
    PartialDownload::open(
        dir,
        &artifact.manifest,
        artifact.manifest_sha256,
        options,
        &|_| {},
    )
}

/// Opens `dir`, which must hold a partial download.
pub fn open(
    dir: &Path,
    artifact: &Artifact,
    options: &ResumeOptions,
) -> (PartialDownload, ResumeReport) {
    match try_open(dir, artifact, options).unwrap() {
        OpenedDownload::Partial(download, report) => (download, report),
        OpenedDownload::Complete(_) => panic!("expected a partial download"),
    }
}

/// The chunk indices set in a download's verified bitfield.
pub fn verified_set(download: &PartialDownload) -> Vec<u32> {
    download
        .verified()
        .iter_ones()
        .map(|index| index.0)
        .collect()
}

/// Every file in `dir` with its bytes (for "nothing was written").
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap_or_default(),
            )
        })
        .collect()
}

/// Overwrites `len` bytes of a file at `offset` with `byte`.
pub fn scribble(path: &Path, offset: u64, len: usize, byte: u8) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    minimodel_swarm::platform::write_all_at(&file, &vec![byte; len], offset).unwrap();
}
