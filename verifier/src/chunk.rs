//! Chunks: their geometry, their bytes, and the [`VerifiedChunk`] proof type.
//!
//! A [`VerifiedChunk`] can only be made by [`ChunkVerifier::verify`], which
//! checks the length, hashes the bytes and checks the Merkle proof against
//! the manifest's root. Code that stores or serves chunks takes a
//! `VerifiedChunk`, so skipping the check does not compile.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;
use crate::manifest::{ChunkScheme, Manifest};
use crate::merkle::{self, ProofError};

/// Index of a chunk in an artifact (zero-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkIndex(pub u32);

impl std::fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How an artifact is cut into chunks. In the fixed form
/// (`fixed-size-merkle-v0`) every chunk is `chunk_size` bytes except the
/// last, which holds the rest. In the listed form (`slm-parts-merkle-v0`,
/// `docs/merkle.md`) each chunk has a length of its own, from 1 to
/// `chunk_size` bytes, as the artifact's chunk list gives them; the chunks
/// still cover the artifact in order without a gap.
///
/// Cloning is cheap: a listed geometry shares its table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkGeometry {
    artifact_bytes: u64,
    chunk_size: u32,
    chunk_count: u32,
    /// Listed form: the end offset of every chunk, ascending, the last
    /// `artifact_bytes`.
    ends: Option<Arc<[u64]>>,
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
    /// A listed chunk of 0 bytes, or longer than the chunk size.
    #[error("chunk {index} is listed with {len} bytes; a chunk holds 1 to {chunk_size} bytes")]
    ListedLength {
        /// The chunk.
        index: u32,
        /// Its listed length.
        len: u64,
        /// The longest a chunk may be.
        chunk_size: u32,
    },
    /// The listed lengths do not add up to the artifact.
    #[error("the listed chunks hold {listed} bytes; the artifact has {artifact_bytes}")]
    ListedTotal {
        /// Sum of the listed lengths (saturating).
        listed: u64,
        /// Artifact size.
        artifact_bytes: u64,
    },
    /// The manifest's scheme lists its chunks: the geometry comes from its
    /// chunk list, which the caller has not given.
    #[error(
        "the manifest's chunks are listed in its chunk list (`{scheme}`), which is needed first"
    )]
    NeedsChunkList {
        /// The scheme.
        scheme: &'static str,
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
            ends: None,
        })
    }

    /// The listed geometry of chunks of the given lengths, each from 1 to
    /// `chunk_size` bytes, together `artifact_bytes`. Lengths that fit the
    /// fixed form (all `chunk_size` but a shorter last) give a listed
    /// geometry all the same: the form follows the scheme, not the numbers.
    pub fn listed(
        artifact_bytes: u64,
        chunk_size: u32,
        lengths: impl IntoIterator<Item = u64>,
    ) -> Result<Self, GeometryError> {
        if artifact_bytes == 0 || chunk_size == 0 {
            return Err(GeometryError::Empty);
        }
        let mut ends = Vec::new();
        let mut total = 0u64;
        for (index, len) in lengths.into_iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| GeometryError::TooManyChunks {
                artifact_bytes,
                chunk_size,
            })?;
            if len == 0 || len > u64::from(chunk_size) {
                return Err(GeometryError::ListedLength {
                    index,
                    len,
                    chunk_size,
                });
            }
            total = total.saturating_add(len);
            if total > artifact_bytes {
                break;
            }
            ends.push(total);
        }
        if total != artifact_bytes {
            return Err(GeometryError::ListedTotal {
                listed: total,
                artifact_bytes,
            });
        }
        let chunk_count = u32::try_from(ends.len()).map_err(|_| GeometryError::TooManyChunks {
            artifact_bytes,
            chunk_size,
        })?;
        Ok(Self {
            artifact_bytes,
            chunk_size,
            chunk_count,
            ends: Some(ends.into()),
        })
    }

    /// The `slm-parts-merkle-v0` geometry of a `.slm` file of `file_len`
    /// bytes whose parts begin at `part_starts` (ascending, the first 0,
    /// as [`crate::slm::SlmInfo::part_starts`] gives them): each part cut
    /// into chunks of `chunk_size` from its own start, the last of a part
    /// holding its rest.
    pub fn slm_parts(
        file_len: u64,
        chunk_size: u32,
        part_starts: &[u64],
    ) -> Result<Self, GeometryError> {
        if chunk_size == 0 {
            return Err(GeometryError::Empty);
        }
        let size = u64::from(chunk_size);
        let ends = part_starts
            .iter()
            .skip(1)
            .copied()
            .filter(|&start| start < file_len)
            .chain(std::iter::once(file_len));
        let mut lengths = Vec::new();
        let mut start = 0u64;
        for end in ends {
            let mut at = start;
            while at < end {
                let len = (end - at).min(size);
                lengths.push(len);
                at += len;
            }
            start = start.max(end);
        }
        Self::listed(file_len, chunk_size, lengths)
    }

    /// The geometry a manifest declares. The manifest parser has already
    /// checked that its chunk count agrees. A manifest whose scheme lists
    /// its chunks has no geometry without its chunk list
    /// ([`GeometryError::NeedsChunkList`]; [`ChunkGeometry::listed`]).
    pub fn of_manifest(manifest: &Manifest) -> Result<Self, GeometryError> {
        match manifest.chunks.scheme {
            ChunkScheme::FixedSize => {
                Self::new(manifest.artifact_bytes, manifest.chunks.chunk_size)
            }
            scheme @ ChunkScheme::SlmParts => Err(GeometryError::NeedsChunkList {
                scheme: scheme.name(),
            }),
        }
    }

    /// Total bytes.
    pub fn artifact_bytes(&self) -> u64 {
        self.artifact_bytes
    }

    /// The longest a chunk may be: in the fixed form the bytes of every
    /// chunk but the last.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// Whether the chunks have lengths of their own (the listed form).
    pub fn is_listed(&self) -> bool {
        self.ends.is_some()
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
        if let Some(ends) = &self.ends {
            let i = index.0 as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] };
            return Some(start..ends[i]);
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

    /// The chunks' lengths in order.
    pub fn lengths(&self) -> impl Iterator<Item = u32> + '_ {
        self.indices()
            .map(|index| self.chunk_len(index).unwrap_or_default())
    }

    /// The chunk that holds byte `offset`, `None` past the end.
    pub fn chunk_at(&self, offset: u64) -> Option<ChunkIndex> {
        if offset >= self.artifact_bytes {
            return None;
        }
        let index = match &self.ends {
            Some(ends) => ends.partition_point(|&end| end <= offset) as u32,
            None => (offset / u64::from(self.chunk_size)) as u32,
        };
        Some(ChunkIndex(index))
    }

    /// Chunks that lie wholly inside the first `bytes` of the artifact.
    pub fn whole_chunks_in(&self, bytes: u64) -> u32 {
        match &self.ends {
            Some(ends) => ends.partition_point(|&end| end <= bytes) as u32,
            None => (bytes / u64::from(self.chunk_size)).min(u64::from(self.chunk_count)) as u32,
        }
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
    fn slm_parts_cut_each_part_from_its_own_start() {
        // Parts at 0, 256, 300 (empty of a chunk's worth), 70,000.
        let geometry = ChunkGeometry::slm_parts(100_000, 16384, &[0, 256, 300, 70_000]).unwrap();
        let lengths: Vec<u32> = geometry.lengths().collect();
        assert_eq!(
            lengths,
            [256, 44, 16384, 16384, 16384, 16384, 4164, 16384, 13616]
        );
        assert_eq!(geometry.byte_range(ChunkIndex(7)), Some(70_000..86_384));
        assert_eq!(geometry.chunk_at(69_999), Some(ChunkIndex(6)));
        assert_eq!(geometry.chunk_at(70_000), Some(ChunkIndex(7)));
        assert_eq!(geometry.chunk_at(100_000), None);
        assert_eq!(geometry.whole_chunks_in(70_000), 7);
        assert_eq!(geometry.whole_chunks_in(69_999), 6);
        // Starts past the end, repeated or out of order cut nothing more.
        let same = ChunkGeometry::slm_parts(100_000, 16384, &[0, 256, 256, 300, 70_000, 200_000]);
        assert_eq!(same.unwrap(), geometry);
    }

    #[test]
    fn listed_lengths_must_fit_the_chunk_size_and_the_artifact() {
        assert!(matches!(
            ChunkGeometry::listed(10, 16, [5, 0, 5]),
            Err(GeometryError::ListedLength {
                index: 1,
                len: 0,
                ..
            })
        ));
        assert!(matches!(
            ChunkGeometry::listed(40, 16, [17, 23]),
            Err(GeometryError::ListedLength {
                index: 0,
                len: 17,
                ..
            })
        ));
        assert!(matches!(
            ChunkGeometry::listed(40, 16, [16, 16]),
            Err(GeometryError::ListedTotal {
                listed: 32,
                artifact_bytes: 40
            })
        ));
        assert!(matches!(
            ChunkGeometry::listed(40, 16, [16, 16, 16]),
            Err(GeometryError::ListedTotal { .. })
        ));
        let fits = ChunkGeometry::listed(40, 16, [16, 16, 8]).unwrap();
        // A listed geometry is not the fixed one, even with the same cuts.
        assert_ne!(fits, ChunkGeometry::new(40, 16).unwrap());
        assert_eq!(fits.lengths().collect::<Vec<_>>(), [16, 16, 8]);
    }

    #[test]
    fn listed_chunks_verify_with_their_own_lengths() {
        let bytes = artifact(5000);
        let geometry = ChunkGeometry::listed(5000, 4096, [256, 4096, 648]).unwrap();
        let hashes = geometry
            .indices()
            .map(|i| {
                let range = geometry.byte_range(i).unwrap();
                Sha256Digest::of(&bytes[range.start as usize..range.end as usize])
            })
            .collect();
        let tree = MerkleTree::from_chunk_hashes(hashes).unwrap();
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
        for index in 0..3 {
            let chunk = chunk_of(&bytes, &geometry, index);
            let proof = tree.proof(index).unwrap();
            verifier.verify(ChunkIndex(index), chunk, &proof).unwrap();
        }
        // The fixed cut of the same bytes is refused by length.
        let fixed = ChunkGeometry::new(5000, 4096).unwrap();
        let wrong = chunk_of(&bytes, &fixed, 0);
        assert!(matches!(
            verifier.verify(ChunkIndex(0), wrong, &tree.proof(0).unwrap()),
            Err(ChunkError::WrongLength {
                index: 0,
                expected: 256,
                found: 4096
            })
        ));
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
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
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
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
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
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
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
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
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
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
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
