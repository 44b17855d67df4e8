//! The full check of an artifact against its manifest, and the drift checks
//! between the manifest, the `.slm` header and the file's bytes.
//!
//! Every import ends here, whether the bytes came from a local file or from
//! peers: the `.slm` container, the header against the manifest, every chunk
//! against the Merkle root, the chunk list, and the whole file against the
//! artifact SHA-256. What passes becomes a [`VerifiedArtifact`], which is
//! what seeding starts from and what a receipt is written for.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::chunk::{ChunkGeometry, GeometryError};
use crate::chunk_list::list_text;
use crate::digest::Sha256Digest;
use crate::hashing::{FileHashes, hash_reader_in};
use crate::manifest::{ChunkScheme, Manifest};
use crate::merkle::{MerkleTree, TreeError};
use crate::receipt::{CheckName, ImportReceipt, RECEIPT_FORMAT, ReceiptSource, now_rfc3339};
use crate::signing::trust::SignatureCheck;
use crate::slm::{SlmError, SlmInfo, read_slm_file};

/// Why an artifact failed its checks. [`VerifyError::is_invalid_input`]
/// separates a broken container from bytes that disagree with the manifest.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read the artifact")]
    Io(#[from] io::Error),
    /// The `.slm` container is malformed.
    #[error("the .slm container is invalid")]
    Slm(#[from] SlmError),
    /// A header field disagrees with the manifest.
    #[error("{field} differs: manifest says {manifest}, the .slm file says {file}")]
    Drift {
        /// The manifest field.
        field: &'static str,
        /// The manifest's value.
        manifest: String,
        /// The file's value.
        file: String,
    },
    /// The whole-file hash disagrees.
    #[error("artifact-sha256 differs: manifest says {expected}, the file hashes to {actual}")]
    ArtifactSha256 {
        /// From the manifest.
        expected: Sha256Digest,
        /// Computed.
        actual: Sha256Digest,
    },
    /// The chunk hashes lead to another root.
    #[error("merkle-root differs: manifest says {expected}, the file's chunks give {actual}")]
    MerkleRoot {
        /// From the manifest.
        expected: Sha256Digest,
        /// Computed.
        actual: Sha256Digest,
    },
    /// The chunk list hashes to another checksum.
    #[error(
        "chunk-list-sha256 differs: manifest says {expected}, the file's chunk list hashes to {actual}"
    )]
    ChunkList {
        /// From the manifest.
        expected: Sha256Digest,
        /// Computed.
        actual: Sha256Digest,
    },
    /// The file has no bytes.
    #[error("the artifact is empty")]
    Empty(#[from] TreeError),
    /// The file's parts cut at the manifest's chunk size make no valid
    /// geometry (more chunks than an index can name).
    #[error("the file's parts make no chunk geometry: {0}")]
    Geometry(#[from] GeometryError),
}

impl VerifyError {
    /// Whether the input itself is malformed (a broken container) rather
    /// than well-formed bytes that fail the manifest's checks.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, VerifyError::Slm(error) if !error.is_io())
    }

    /// Whether reading failed (a storage problem, not the file's content).
    pub fn is_io(&self) -> bool {
        match self {
            VerifyError::Io(_) => true,
            VerifyError::Slm(error) => error.is_io(),
            _ => false,
        }
    }
}

/// An artifact that passed every check against its manifest.
#[derive(Debug, Clone)]
pub struct VerifiedArtifact {
    manifest: Manifest,
    slm: SlmInfo,
    geometry: ChunkGeometry,
    tree: MerkleTree,
    checks: Vec<CheckName>,
}

impl VerifiedArtifact {
    /// How its chunks were cut: the manifest's fixed geometry, or its
    /// parts (`slm-parts-merkle-v0`).
    pub fn geometry(&self) -> &ChunkGeometry {
        &self.geometry
    }

    /// The manifest it was checked against.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What its `.slm` header says.
    pub fn slm(&self) -> &SlmInfo {
        &self.slm
    }

    /// Its Merkle tree: every proof a seeder can send.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// The checks it passed, in order.
    pub fn checks(&self) -> &[CheckName] {
        &self.checks
    }

    /// The receipt for this artifact. `manifest_sha256` is the SHA-256 of
    /// the manifest file's bytes as read; `signature` the check of its
    /// signature made before the import (recorded only if it was made for
    /// this artifact's manifest).
    pub fn receipt(
        &self,
        manifest_sha256: Sha256Digest,
        signature: &SignatureCheck,
        source: ReceiptSource,
    ) -> ImportReceipt {
        let manifest = &self.manifest;
        ImportReceipt {
            format: RECEIPT_FORMAT.to_owned(),
            model_id: manifest.model_id.clone(),
            artifact_bytes: manifest.artifact_bytes,
            artifact_sha256: manifest.artifact_sha256,
            manifest_sha256,
            merkle_root: manifest.chunks.merkle_root,
            chunk_size: manifest.chunks.chunk_size,
            chunk_count: self.tree.chunk_count(),
            license_route: manifest.license_route.clone(),
            evidence_route: manifest.evidence_route.clone(),
            checks: self.checks.clone(),
            signature: signature.record(manifest),
            source,
            verified_at: now_rfc3339(),
            tool: concat!("minimodel ", env!("CARGO_PKG_VERSION")).to_owned(),
            last_verified_at: None,
            file: None,
        }
    }
}

/// Checks the `.slm` header against the manifest: size, quantization,
/// shape, tokenizer and tensor-layout checksums.
pub fn check_header_drift(manifest: &Manifest, slm: &SlmInfo) -> Result<(), VerifyError> {
    fn drift(field: &'static str, manifest: impl ToString, file: impl ToString) -> VerifyError {
        VerifyError::Drift {
            field,
            manifest: manifest.to_string(),
            file: file.to_string(),
        }
    }
    if manifest.artifact_bytes != slm.file_len {
        return Err(drift(
            "artifact-bytes",
            manifest.artifact_bytes,
            slm.file_len,
        ));
    }
    if manifest.quantization != slm.quantization {
        return Err(drift(
            "quantization",
            manifest.quantization,
            slm.quantization,
        ));
    }
    if manifest.model_shape != slm.shape {
        return Err(drift("model-shape", manifest.model_shape, slm.shape));
    }
    if manifest.tokenizer_sha256 != slm.tokenizer_sha256 {
        return Err(drift(
            "tokenizer-sha256",
            manifest.tokenizer_sha256,
            slm.tokenizer_sha256,
        ));
    }
    if manifest.tensor_layout_sha256 != slm.tensor_layout_sha256 {
        return Err(drift(
            "tensor-layout-sha256",
            manifest.tensor_layout_sha256,
            slm.tensor_layout_sha256,
        ));
    }
    Ok(())
}

/// Checks the hashes of the file's bytes against the manifest: the chunk
/// hashes give the Merkle root, the chunk list gives its checksum, the whole
/// file gives the artifact SHA-256. Returns the tree.
pub fn check_hashes(
    manifest: &Manifest,
    geometry: &ChunkGeometry,
    hashes: FileHashes,
) -> Result<MerkleTree, VerifyError> {
    let tree = MerkleTree::from_chunk_hashes(hashes.chunk_hashes)?;
    if tree.root() != manifest.chunks.merkle_root {
        return Err(VerifyError::MerkleRoot {
            expected: manifest.chunks.merkle_root,
            actual: tree.root(),
        });
    }
    if let Some(list) = &manifest.chunks.chunk_list {
        let actual = Sha256Digest::of(list_text(tree.chunk_hashes(), geometry).as_bytes());
        if actual != list.sha256 {
            return Err(VerifyError::ChunkList {
                expected: list.sha256,
                actual,
            });
        }
    }
    if hashes.sha256 != manifest.artifact_sha256 {
        return Err(VerifyError::ArtifactSha256 {
            expected: manifest.artifact_sha256,
            actual: hashes.sha256,
        });
    }
    Ok(tree)
}

/// The full local check of `path` against `manifest`: container, header
/// drift, then one two-threaded hash pass for chunks, chunk list and whole
/// file. `progress` receives the bytes hashed so far.
pub fn verify_local_file(
    manifest: &Manifest,
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifiedArtifact, VerifyError> {
    let slm = read_container(path)?;
    check_header_drift(manifest, &slm)?;
    let geometry = geometry_of(manifest, &slm)?;
    let hashes = hash_reader_in(File::open(path)?, &geometry, progress)?;
    conclude(manifest, slm, &geometry, hashes)
}

/// The chunks of the file `slm` describes under `manifest`'s scheme: the
/// fixed cut, or its parts cut at the chunk size (`slm-parts-merkle-v0`),
/// which the manifest's `chunk-list-sha256` then confirms, lengths and all.
pub fn geometry_of(manifest: &Manifest, slm: &SlmInfo) -> Result<ChunkGeometry, VerifyError> {
    let chunk_size = manifest.chunks.chunk_size;
    Ok(match manifest.chunks.scheme {
        ChunkScheme::FixedSize => ChunkGeometry::new(slm.file_len, chunk_size)?,
        ChunkScheme::SlmParts => {
            ChunkGeometry::slm_parts(slm.file_len, chunk_size, &slm.part_starts)?
        }
    })
}

/// The same checks for a file whose hashes were computed while it was
/// written (a download: chunk hashes from verified chunks, the full SHA-256
/// from the trailing hasher), so that no second pass over the bytes is
/// needed. The container and header checks read the file itself.
pub fn verify_with_hashes(
    manifest: &Manifest,
    path: &Path,
    hashes: FileHashes,
) -> Result<VerifiedArtifact, VerifyError> {
    let slm = read_container(path)?;
    check_header_drift(manifest, &slm)?;
    let geometry = geometry_of(manifest, &slm)?;
    conclude(manifest, slm, &geometry, hashes)
}

/// Reads the `.slm` header; a failure to read is I/O, not a bad container.
fn read_container(path: &Path) -> Result<SlmInfo, VerifyError> {
    read_slm_file(path).map_err(|error| match error {
        SlmError::Io(io) => VerifyError::Io(io),
        invalid => VerifyError::Slm(invalid),
    })
}

fn conclude(
    manifest: &Manifest,
    slm: SlmInfo,
    geometry: &ChunkGeometry,
    hashes: FileHashes,
) -> Result<VerifiedArtifact, VerifyError> {
    if hashes.bytes != manifest.artifact_bytes {
        // The file changed size between the header check and the hash pass.
        return Err(VerifyError::Drift {
            field: "artifact-bytes",
            manifest: manifest.artifact_bytes.to_string(),
            file: hashes.bytes.to_string(),
        });
    }
    let tree = check_hashes(manifest, geometry, hashes)?;
    let mut checks = vec![
        CheckName::Manifest,
        CheckName::SlmContainer,
        CheckName::HeaderDrift,
        CheckName::MerkleRoot,
    ];
    if manifest.chunks.chunk_list.is_some() {
        checks.push(CheckName::ChunkList);
    }
    checks.push(CheckName::ArtifactSha256);
    Ok(VerifiedArtifact {
        manifest: manifest.clone(),
        slm,
        geometry: geometry.clone(),
        tree,
        checks,
    })
}
