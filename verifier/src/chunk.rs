//! Chunks: their geometry, their bytes, and the [`VerifiedChunk`] proof type.
//!
//! A [`VerifiedChunk`] can only be made by [`ChunkVerifier::verify`], which
//! checks the length, hashes the bytes and checks the Merkle proof against
//! the manifest's root. Code that stores or serves chunks takes a
//! `VerifiedChunk`, so skipping the check does not compile.

use std::ops::Range;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;
use crate::manifest::Manifest;
use crate::merkle::{self, ProofError};

/// Index of a chunk in an artifact (zero-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkIndex(pub u32);

impl std::fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How an artifact is cut into chunks: every chunk is `chunk_size` bytes
/// except the last, which holds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkGeometry {
    artifact_bytes: u64,
    chunk_size: u32,
    chunk_count: u32,
}

/// An impossible geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Zero bytes or a zero chunk size.
    #[error("an artifact needs at least one byte and a chunk size of at least one byte")]
    Empty,
    /// More chunks than a `u32` index can name.
    #[error("{artifact_bytes} bytes in chunks of {chunk_size} makes more than 2^32 chunks")]
    TooManyChunks {
        /// Artifact size.
        artifact_bytes: u64,
        /// Chunk size.
        chunk_size: u32,
    },
}

impl ChunkGeometry {
    /// The geometry of `artifact_bytes` cut into chunks of `chunk_size`.
    pub fn new(artifact_bytes: u64, chunk_size: u32) -> Result<Self, GeometryError> {
        if artifact_bytes == 0 || chunk_size == 0 {
            return Err(GeometryError::Empty);
        }
        let chunk_count =
            u32::try_from(artifact_bytes.div_ceil(u64::from(chunk_size))).map_err(|_| {
                GeometryError::TooManyChunks {
                    artifact_bytes,
                    chunk_size,
                }
            })?;
        Ok(Self {
            artifact_bytes,
            chunk_size,
            chunk_count,
        })
    }

    /// The geometry a manifest declares. The manifest parser has already
    /// checked that its chunk count agrees.
    pub fn of_manifest(manifest: &Manifest) -> Result<Self, GeometryError> {
        Self::new(manifest.artifact_bytes, manifest.chunks.chunk_size)
    }

    /// Total bytes.
    pub fn artifact_bytes(&self) -> u64 {
        self.artifact_bytes
    }

    /// Bytes in every chunk but the last.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// Whether `index` names a chunk.
    pub fn contains(&self, index: ChunkIndex) -> bool {
        index.0 < self.chunk_count
    }

    /// Byte range of chunk `index` in the artifact, `None` when out of range.
    pub fn byte_range(&self, index: ChunkIndex) -> Option<Range<u64>> {
        if !self.contains(index) {
            return None;
        }
        let start = u64::from(index.0) * u64::from(self.chunk_size);
        let end = (start + u64::from(self.chunk_size)).min(self.artifact_bytes);
        Some(start..end)
    }

    /// Length of chunk `index`, `None` when out of range.
    pub fn chunk_len(&self, index: ChunkIndex) -> Option<u32> {
        self.byte_range(index)
            .map(|range| (range.end - range.start) as u32)
    }

    /// All chunk indices in order.
    pub fn indices(&self) -> impl Iterator<Item = ChunkIndex> + use<> {
        (0..self.chunk_count).map(ChunkIndex)
    }
}

/// The bytes of one chunk, possibly in several pieces as they came off the
/// network, so that nothing has to copy them into one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkData {
    parts: Vec<Bytes>,
    len: usize,
}

impl ChunkData {
    /// No bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a piece.
    pub fn push(&mut self, part: Bytes) {
        self.len += part.len();
        if !part.is_empty() {
            self.parts.push(part);
        }
    }

    /// Total length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// `SHA-256` of all pieces in order.
    pub fn sha256(&self) -> Sha256Digest {
        let mut hasher = Sha256::new();
        for part in &self.parts {
            hasher.update(part);
        }
        Sha256Digest(hasher.finalize().into())
    }

    /// One contiguous buffer (free when there is a single piece).
    pub fn to_contiguous(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [single] => single.clone(),
            parts => Bytes::from(parts.concat()),
        }
    }
}

impl From<Bytes> for ChunkData {
    fn from(bytes: Bytes) -> Self {
        let mut data = Self::new();
        data.push(bytes);
        data
    }
}

impl From<Vec<u8>> for ChunkData {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

/// Why a chunk was refused. Each variant names the chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The index is not a chunk of this artifact.
    #[error("chunk {index} is out of range: the artifact has {count} chunks")]
    IndexOutOfRange {
        /// The claimed index.
        index: u32,
        /// Chunks in the artifact.
        count: u32,
    },
    /// The bytes are not as long as this chunk is.
    #[error("chunk {index} has {found} bytes; it must have {expected}")]
    WrongLength {
        /// The chunk.
        index: u32,
        /// Its length.
        expected: u32,
        /// Bytes given.
        found: usize,
    },
    /// The proof does not lead from these bytes to the root.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Checks chunks against one artifact's Merkle root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkVerifier {
    geometry: ChunkGeometry,
    root: Sha256Digest,
}

impl ChunkVerifier {
    /// A verifier for chunks of `geometry` under `root`.
    pub fn new(geometry: ChunkGeometry, root: Sha256Digest) -> Self {
        Self { geometry, root }
    }

    /// The verifier for a manifest's artifact.
    pub fn for_manifest(manifest: &Manifest) -> Result<Self, GeometryError> {
        Ok(Self::new(
            ChunkGeometry::of_manifest(manifest)?,
            manifest.chunks.merkle_root,
        ))
    }

    /// The geometry chunks are checked against.
    pub fn geometry(&self) -> &ChunkGeometry {
        &self.geometry
    }

    /// The root chunks are checked against.
    pub fn root(&self) -> &Sha256Digest {
        &self.root
    }

    /// Checks length, hash and proof of chunk `index`. With
    /// [`ChunkVerifier::verify_with`], the only way to make a
    /// [`VerifiedChunk`].
    pub fn verify(
        &self,
        index: ChunkIndex,
        data: ChunkData,
        proof: &[Sha256Digest],
    ) -> Result<VerifiedChunk, ChunkError> {
        self.verify_with(index, data, proof, ChunkData::sha256)
    }

    /// [`ChunkVerifier::verify`], with the chunk's SHA-256 computed by
    /// `sha256` (called once, after the length and the proof's shape
    /// passed), e.g. side by side with another hash. A `sha256` that
    /// returns anything but the SHA-256 of the bytes it is given makes
    /// good chunks fail their proof.
    pub fn verify_with(
        &self,
        index: ChunkIndex,
        data: ChunkData,
        proof: &[Sha256Digest],
        sha256: impl FnOnce(&ChunkData) -> Sha256Digest,
    ) -> Result<VerifiedChunk, ChunkError> {
        let count = self.geometry.chunk_count();
        let expected = self
            .geometry
            .chunk_len(index)
            .ok_or(ChunkError::IndexOutOfRange {
                index: index.0,
                count,
            })?;
        if data.len() != expected as usize {
            return Err(ChunkError::WrongLength {
                index: index.0,
                expected,
                found: data.len(),
            });
        }
        // Check the proof's shape before spending a hash pass on the bytes.
        let needed = merkle::proof_len(index.0, count).unwrap_or(0);
        if proof.len() != needed {
            return Err(ProofError::WrongLength {
                index: index.0,
                expected: needed,
                found: proof.len(),
            }
            .into());
        }
        let chunk_hash = sha256(&data);
        merkle::verify_proof(&self.root, count, index.0, &chunk_hash, proof)?;
        Ok(VerifiedChunk {
            index,
            data,
            chunk_hash,
        })
    }
}

/// A chunk whose bytes were checked against the Merkle root. Only
/// [`ChunkVerifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChunk {
    index: ChunkIndex,
    data: ChunkData,
    chunk_hash: Sha256Digest,
}

impl VerifiedChunk {
    /// Which chunk.
    pub fn index(&self) -> ChunkIndex {
        self.index
    }

    /// Its bytes.
    pub fn data(&self) -> &ChunkData {
        &self.data
    }

    /// `SHA-256` of its bytes (its entry in the chunk list).
    pub fn chunk_hash(&self) -> Sha256Digest {
        self.chunk_hash
    }

    /// Gives up the proof and keeps the bytes.
    pub fn into_data(self) -> ChunkData {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;

    fn artifact(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn setup(len: usize, chunk_size: u32) -> (Vec<u8>, ChunkGeometry, MerkleTree) {
        let bytes = artifact(len);
        let geometry = ChunkGeometry::new(len as u64, chunk_size).unwrap();
        let hashes = geometry
            .indices()
            .map(|i| {
                let range = geometry.byte_range(i).unwrap();
                Sha256Digest::of(&bytes[range.start as usize..range.end as usize])
            })
            .collect();
        (
            bytes,
            geometry,
            MerkleTree::from_chunk_hashes(hashes).unwrap(),
        )
    }

    fn chunk_of(bytes: &[u8], geometry: &ChunkGeometry, index: u32) -> ChunkData {
        let range = geometry.byte_range(ChunkIndex(index)).unwrap();
        ChunkData::from(bytes[range.start as usize..range.end as usize].to_vec())
    }

    #[test]
    fn geometry_cuts_a_short_last_chunk() {
        let geometry = ChunkGeometry::new(10_000, 4096).unwrap();
        assert_eq!(geometry.chunk_count(), 3);
        assert_eq!(geometry.chunk_len(ChunkIndex(2)), Some(10_000 - 8192));
        assert_eq!(geometry.byte_range(ChunkIndex(1)), Some(4096..8192));
        assert_eq!(geometry.chunk_len(ChunkIndex(3)), None);
    }

    #[test]
    fn geometry_refuses_empty_and_huge() {
        assert_eq!(ChunkGeometry::new(0, 16), Err(GeometryError::Empty));
        assert_eq!(ChunkGeometry::new(16, 0), Err(GeometryError::Empty));
        assert!(matches!(
            ChunkGeometry::new(u64::MAX, 1),
            Err(GeometryError::TooManyChunks { .. })
        ));
    }

    #[test]
    fn every_chunk_verifies_also_in_pieces() {
        let (bytes, geometry, tree) = setup(10_000, 4096);
        let verifier = ChunkVerifier::new(geometry, tree.root());
        for index in 0..geometry.chunk_count() {
            let whole = chunk_of(&bytes, &geometry, index);
            let contiguous = whole.to_contiguous();
            let mut pieces = ChunkData::new();
            pieces.push(contiguous.slice(..100));
            pieces.push(contiguous.slice(100..));
            let proof = tree.proof(index).unwrap();
            let verified = verifier.verify(ChunkIndex(index), pieces, &proof).unwrap();
            assert_eq!(verified.index(), ChunkIndex(index));
            assert_eq!(verified.chunk_hash(), tree.chunk_hashes()[index as usize]);
            assert_eq!(verified.data().to_contiguous(), contiguous);
        }
    }

    #[test]
    fn a_hash_computed_elsewhere_counts_only_when_it_is_the_chunks() {
        let (bytes, geometry, tree) = setup(10_000, 4096);
        let verifier = ChunkVerifier::new(geometry, tree.root());
        let proof = tree.proof(1).unwrap();
        let chunk = chunk_of(&bytes, &geometry, 1);
        let mut calls = 0;
        let verified = verifier
            .verify_with(ChunkIndex(1), chunk.clone(), &proof, |data| {
                calls += 1;
                data.sha256()
            })
            .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(verified.chunk_hash(), tree.chunk_hashes()[1]);
        // Another chunk's hash: the proof fails, nothing is verified.
        let wrong = tree.chunk_hashes()[0];
        assert_eq!(
            verifier.verify_with(ChunkIndex(1), chunk.clone(), &proof, |_| wrong),
            Err(ChunkError::Proof(ProofError::RootMismatch { index: 1 }))
        );
        // A proof of the wrong shape is refused before any hashing.
        let mut hashed = false;
        assert!(
            verifier
                .verify_with(ChunkIndex(1), chunk, &proof[1..], |data| {
                    hashed = true;
                    data.sha256()
                })
                .is_err()
        );
        assert!(!hashed);
    }

    #[test]
    fn a_flipped_byte_is_refused_naming_the_chunk() {
        let (bytes, geometry, tree) = setup(10_000, 4096);
        let verifier = ChunkVerifier::new(geometry, tree.root());
        let mut chunk = chunk_of(&bytes, &geometry, 1).to_contiguous().to_vec();
        chunk[17] ^= 0x40;
        let result = verifier.verify(ChunkIndex(1), chunk.into(), &tree.proof(1).unwrap());
        assert_eq!(
            result,
            Err(ChunkError::Proof(ProofError::RootMismatch { index: 1 }))
        );
    }

    #[test]
    fn wrong_length_and_range_are_refused() {
        let (bytes, geometry, tree) = setup(10_000, 4096);
        let verifier = ChunkVerifier::new(geometry, tree.root());
        let short = ChunkData::from(bytes[..4095].to_vec());
        assert_eq!(
            verifier.verify(ChunkIndex(0), short, &tree.proof(0).unwrap()),
            Err(ChunkError::WrongLength {
                index: 0,
                expected: 4096,
                found: 4095
            })
        );
        assert_eq!(
            verifier.verify(ChunkIndex(3), ChunkData::new(), &[]),
            Err(ChunkError::IndexOutOfRange { index: 3, count: 3 })
        );
    }

    #[test]
    fn a_proof_of_wrong_length_is_refused() {
        let (bytes, geometry, tree) = setup(10_000, 4096);
        let verifier = ChunkVerifier::new(geometry, tree.root());
        let result = verifier.verify(ChunkIndex(0), chunk_of(&bytes, &geometry, 0), &[]);
        assert!(matches!(
            result,
            Err(ChunkError::Proof(ProofError::WrongLength {
                index: 0,
                found: 0,
                ..
            }))
        ));
    }
}
