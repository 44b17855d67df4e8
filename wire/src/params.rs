//! [`SwarmParams`]: the chunk geometry every context check is made against,
//! and [`SwarmIdentity`]: what a Hello must agree with.

use crate::PROTOCOL_VERSION;
use crate::bitfield::{ChunkOutOfRange, bitfield_len};
use crate::error::{FieldError, SwarmMismatch};
use crate::frame::MAX_CONTROL_FRAME;
use crate::types::{ChunkIndex, Hello, validate_agent, validate_model_id};
use std::net::SocketAddr;

/// Most chunks a swarm may have: the largest count whose HaveBitfield fits a
/// control frame (65536 bytes minus 1 type byte, 4 bytes of chunk count and 8
/// bytes of length prefix, times 8 bits).
pub const MAX_CHUNK_COUNT: u32 = (MAX_CONTROL_FRAME - 13) * 8;

/// An artifact's chunk geometry, consistent by construction: chunks of
/// `chunk_size` (the last shorter), or, listed (`slm-parts-merkle-v0`),
/// chunks of 1 to `chunk_size` bytes each, of the lengths the chunk list
/// gives. Cloning shares a listed geometry's table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SwarmParams {
    artifact_bytes: u64,
    chunk_size: u32,
    chunk_count: u32,
    /// Listed: every chunk's end offset, ascending, the last
    /// `artifact_bytes`.
    ends: Option<std::sync::Arc<[u64]>>,
}

/// Why three numbers are not a chunk geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmParamsError {
    /// A chunk size of 0.
    #[error("chunk size is 0")]
    ZeroChunkSize,
    /// An artifact of 0 bytes has no chunks to swap.
    #[error("artifact is 0 bytes; there is nothing to swap")]
    EmptyArtifact,
    /// The chunk count is not `ceil(artifact_bytes / chunk_size)`.
    #[error(
        "{artifact_bytes} bytes in chunks of {chunk_size} make {expected} chunks, not {chunk_count}"
    )]
    ChunkCount {
        /// Artifact size.
        artifact_bytes: u64,
        /// Chunk size.
        chunk_size: u32,
        /// Chunk count given.
        chunk_count: u32,
        /// `ceil(artifact_bytes / chunk_size)`.
        expected: u64,
    },
    /// More chunks than a HaveBitfield frame can describe.
    #[error(
        "{chunk_count} chunks is more than the {MAX_CHUNK_COUNT} a HaveBitfield frame can carry; use larger chunks"
    )]
    TooManyChunks {
        /// Chunk count given.
        chunk_count: u32,
    },
    /// Listed lengths that are not 1 to `chunk_size` bytes each, together
    /// `artifact_bytes`.
    #[error(
        "the listed chunk lengths do not cut {artifact_bytes} bytes into chunks of 1 to {chunk_size}"
    )]
    ListedLengths {
        /// Artifact size.
        artifact_bytes: u64,
        /// The longest a chunk may be.
        chunk_size: u32,
    },
}

impl SwarmParams {
    /// Checks that `chunk_count == ceil(artifact_bytes / chunk_size)`, that
    /// there is at least one chunk and at most [`MAX_CHUNK_COUNT`].
    pub fn new(
        artifact_bytes: u64,
        chunk_size: u32,
        chunk_count: u32,
    ) -> Result<Self, SwarmParamsError> {
        if chunk_size == 0 {
            return Err(SwarmParamsError::ZeroChunkSize);
        }
        if artifact_bytes == 0 {
            return Err(SwarmParamsError::EmptyArtifact);
        }
        let expected = artifact_bytes.div_ceil(u64::from(chunk_size));
        if expected != u64::from(chunk_count) {
            return Err(SwarmParamsError::ChunkCount {
                artifact_bytes,
                chunk_size,
                chunk_count,
                expected,
            });
        }
        if chunk_count > MAX_CHUNK_COUNT {
            return Err(SwarmParamsError::TooManyChunks { chunk_count });
        }
        Ok(SwarmParams {
            artifact_bytes,
            chunk_size,
            chunk_count,
            ends: None,
        })
    }

    /// A listed geometry: chunks of the given lengths, each 1 to
    /// `chunk_size` bytes, together `artifact_bytes`, at most
    /// [`MAX_CHUNK_COUNT`] of them.
    pub fn listed(
        artifact_bytes: u64,
        chunk_size: u32,
        lengths: impl IntoIterator<Item = u32>,
    ) -> Result<Self, SwarmParamsError> {
        if chunk_size == 0 {
            return Err(SwarmParamsError::ZeroChunkSize);
        }
        if artifact_bytes == 0 {
            return Err(SwarmParamsError::EmptyArtifact);
        }
        let wrong = SwarmParamsError::ListedLengths {
            artifact_bytes,
            chunk_size,
        };
        let mut ends = Vec::new();
        let mut total = 0u64;
        for len in lengths {
            if len == 0 || len > chunk_size || ends.len() >= MAX_CHUNK_COUNT as usize {
                return Err(if ends.len() >= MAX_CHUNK_COUNT as usize {
                    SwarmParamsError::TooManyChunks {
                        chunk_count: MAX_CHUNK_COUNT + 1,
                    }
                } else {
                    wrong
                });
            }
            total += u64::from(len);
            if total > artifact_bytes {
                return Err(wrong);
            }
            ends.push(total);
        }
        if total != artifact_bytes {
            return Err(wrong);
        }
        Ok(SwarmParams {
            artifact_bytes,
            chunk_size,
            chunk_count: ends.len() as u32,
            ends: Some(ends.into()),
        })
    }

    /// Bytes of the first `chunks` chunks (all of them past the count).
    pub fn prefix_bytes(&self, chunks: u32) -> u64 {
        self.chunk_offset(ChunkIndex(chunks))
            .unwrap_or(self.artifact_bytes)
    }

    /// Whether the chunks have lengths of their own.
    pub fn is_listed(&self) -> bool {
        self.ends.is_some()
    }

    /// Artifact size in bytes.
    pub fn artifact_bytes(&self) -> u64 {
        self.artifact_bytes
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// Checks that `chunk` is below the chunk count.
    pub fn check_index(&self, chunk: ChunkIndex) -> Result<(), ChunkOutOfRange> {
        if chunk.0 < self.chunk_count {
            Ok(())
        } else {
            Err(ChunkOutOfRange {
                chunk,
                chunk_count: self.chunk_count,
            })
        }
    }

    /// Byte offset of `chunk` in the artifact.
    pub fn chunk_offset(&self, chunk: ChunkIndex) -> Result<u64, ChunkOutOfRange> {
        self.check_index(chunk)?;
        Ok(match &self.ends {
            Some(ends) => chunk
                .0
                .checked_sub(1)
                .map_or(0, |before| ends[before as usize]),
            None => u64::from(chunk.0) * u64::from(self.chunk_size),
        })
    }

    /// Real length of `chunk`: the chunk size, except for a short last
    /// chunk; listed, its own.
    pub fn chunk_len(&self, chunk: ChunkIndex) -> Result<u32, ChunkOutOfRange> {
        let offset = self.chunk_offset(chunk)?;
        Ok(match &self.ends {
            Some(ends) => (ends[chunk.0 as usize] - offset) as u32,
            None => (self.artifact_bytes - offset).min(u64::from(self.chunk_size)) as u32,
        })
    }

    /// Bytes of a HaveBitfield for this swarm: `ceil(chunk_count / 8)`.
    pub fn bitfield_len(&self) -> usize {
        bitfield_len(self.chunk_count)
    }

    /// Number of hashes in the Merkle proof of `chunk`.
    pub fn proof_len(&self, chunk: ChunkIndex) -> Result<u32, ChunkOutOfRange> {
        self.check_index(chunk)?;
        Ok(audit_path_len(chunk.0, self.chunk_count))
    }
}

/// Length of the audit path of leaf `index` in an RFC 6962-shaped Merkle tree
/// of `leaves` leaves (RFC 6962 section 2.1.1): a tree of `n > 1` leaves
/// splits into a left subtree of `k` leaves, `k` the largest power of two
/// below `n`, and a right subtree of `n - k`; each level adds one hash.
/// Returns 0 for a one-leaf tree and for an `index` outside the tree.
pub fn audit_path_len(index: u32, leaves: u32) -> u32 {
    if index >= leaves {
        return 0;
    }
    let (mut index, mut leaves) = (index, leaves);
    let mut len = 0;
    while leaves > 1 {
        // Largest power of two strictly below `leaves` (leaves >= 2).
        let split = 1u32 << (31 - (leaves - 1).leading_zeros());
        if index < split {
            leaves = split;
        } else {
            index -= split;
            leaves -= split;
        }
        len += 1;
    }
    len
}

/// The swarm a control stream belongs to: what every Hello must agree with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmIdentity {
    model_id: String,
    merkle_root: [u8; 32],
    params: SwarmParams,
    /// The protocol version of the connection: what Hellos carry, and
    /// whether RequestFrom and PieceFrom are legal.
    version: u16,
}

impl SwarmIdentity {
    /// Checks the model id and binds it to the root and geometry.
    pub fn new(
        model_id: impl Into<String>,
        merkle_root: [u8; 32],
        params: SwarmParams,
    ) -> Result<Self, FieldError> {
        let model_id = model_id.into();
        validate_model_id(&model_id)?;
        Ok(SwarmIdentity {
            model_id,
            merkle_root,
            params,
            version: PROTOCOL_VERSION,
        })
    }

    /// The same swarm over a connection that negotiated `version` (2 or
    /// 3; [`crate::protocol_version_of`]). A new identity speaks the
    /// latest version.
    pub fn with_version(mut self, version: u16) -> Self {
        self.version = version;
        self
    }

    /// The protocol version its Hellos carry.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The model id.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The Merkle root.
    pub fn merkle_root(&self) -> &[u8; 32] {
        &self.merkle_root
    }

    /// The chunk geometry.
    pub fn params(&self) -> &SwarmParams {
        &self.params
    }

    /// Our Hello for this swarm, without an observed address or LAN
    /// addresses (add them with [`Hello::with_observed`] and
    /// [`Hello::with_lan`]).
    pub fn hello(
        &self,
        serving: bool,
        listen: Option<SocketAddr>,
        agent: impl Into<String>,
    ) -> Result<Hello, FieldError> {
        let agent = agent.into();
        validate_agent(&agent)?;
        Ok(Hello {
            protocol_version: self.version,
            model_id: self.model_id.clone(),
            merkle_root: self.merkle_root,
            artifact_bytes: self.params.artifact_bytes,
            chunk_size: self.params.chunk_size,
            chunk_count: self.params.chunk_count,
            serving,
            listen,
            agent,
            observed: None,
            lan: Vec::new(),
        })
    }

    /// Checks that `hello` describes this swarm, field by field in wire
    /// order; the first difference is reported.
    pub fn check_hello(&self, hello: &Hello) -> Result<(), SwarmMismatch> {
        if hello.protocol_version != self.version {
            return Err(SwarmMismatch::ProtocolVersion {
                found: hello.protocol_version,
                expected: self.version,
            });
        }
        if hello.model_id != self.model_id {
            return Err(SwarmMismatch::ModelId {
                found: hello.model_id.clone(),
                expected: self.model_id.clone(),
            });
        }
        if hello.merkle_root != self.merkle_root {
            return Err(SwarmMismatch::MerkleRoot {
                found: hello.merkle_root,
                expected: self.merkle_root,
            });
        }
        if hello.artifact_bytes != self.params.artifact_bytes {
            return Err(SwarmMismatch::ArtifactBytes {
                found: hello.artifact_bytes,
                expected: self.params.artifact_bytes,
            });
        }
        if hello.chunk_size != self.params.chunk_size {
            return Err(SwarmMismatch::ChunkSize {
                found: hello.chunk_size,
                expected: self.params.chunk_size,
            });
        }
        if hello.chunk_count != self.params.chunk_count {
            return Err(SwarmMismatch::ChunkCount {
                found: hello.chunk_count,
                expected: self.params.chunk_count,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit path length by the recursive definition of RFC 6962 2.1.1.
    fn reference_path_len(index: u32, leaves: u32) -> u32 {
        if leaves <= 1 {
            return 0;
        }
        let mut split = 1;
        while split * 2 < leaves {
            split *= 2;
        }
        if index < split {
            1 + reference_path_len(index, split)
        } else {
            1 + reference_path_len(index - split, leaves - split)
        }
    }

    #[test]
    fn audit_path_len_matches_the_recursive_definition() {
        for leaves in 1..=70 {
            for index in 0..leaves {
                assert_eq!(
                    audit_path_len(index, leaves),
                    reference_path_len(index, leaves),
                    "leaf {index} of {leaves}"
                );
            }
        }
    }

    #[test]
    fn audit_path_len_known_values() {
        // RFC 6962 2.1.3, the tree of 7 leaves: the audit path of d0 is
        // [b, h, l] and that of d6 is [i, k].
        assert_eq!(audit_path_len(0, 7), 3);
        assert_eq!(audit_path_len(6, 7), 2);
        assert_eq!(audit_path_len(0, 1), 0);
        assert_eq!(audit_path_len(1, 2), 1);
        assert_eq!(audit_path_len(4, 5), 1);
        assert_eq!(audit_path_len(0, u32::MAX), 32);
        assert_eq!(audit_path_len(u32::MAX - 1, u32::MAX), 31);
        assert_eq!(audit_path_len(5, 5), 0);
    }

    #[test]
    fn a_listed_geometry_has_its_own_lengths() {
        let params = SwarmParams::listed(5000, 4096, [256, 4096, 648]).unwrap();
        assert!(params.is_listed());
        assert_eq!(params.chunk_count(), 3);
        assert_eq!(params.chunk_offset(ChunkIndex(2)), Ok(4352));
        assert_eq!(params.chunk_len(ChunkIndex(0)), Ok(256));
        assert_eq!(params.chunk_len(ChunkIndex(2)), Ok(648));
        assert!(params.chunk_len(ChunkIndex(3)).is_err());
        assert_eq!(params.prefix_bytes(2), 4352);
        assert_eq!(params.prefix_bytes(3), 5000);
        assert_eq!(params.prefix_bytes(u32::MAX), 5000);
        let wrong = |lengths: &[u32]| SwarmParams::listed(5000, 4096, lengths.iter().copied());
        for lengths in [
            &[5000][..],
            &[256, 0, 4096, 648],
            &[256, 4096],
            &[256, 4096, 649],
        ] {
            assert_eq!(
                wrong(lengths),
                Err(SwarmParamsError::ListedLengths {
                    artifact_bytes: 5000,
                    chunk_size: 4096
                }),
                "{lengths:?}"
            );
        }
        // The same cuts as the fixed geometry, but listed: not equal.
        let fixed = SwarmParams::new(8192, 4096, 2).unwrap();
        assert_ne!(
            SwarmParams::listed(8192, 4096, [4096, 4096]).unwrap(),
            fixed
        );
    }

    #[test]
    fn chunk_geometry() {
        let params = SwarmParams::new(10 * 1024 + 5, 1024, 11).unwrap();
        assert_eq!(params.chunk_len(ChunkIndex(0)), Ok(1024));
        assert_eq!(params.chunk_len(ChunkIndex(9)), Ok(1024));
        assert_eq!(params.chunk_len(ChunkIndex(10)), Ok(5));
        assert_eq!(params.chunk_offset(ChunkIndex(10)), Ok(10 * 1024));
        assert_eq!(
            params.chunk_len(ChunkIndex(11)),
            Err(ChunkOutOfRange {
                chunk: ChunkIndex(11),
                chunk_count: 11
            })
        );
        assert_eq!(params.bitfield_len(), 2);
        assert_eq!(params.proof_len(ChunkIndex(0)), Ok(4));
        assert_eq!(params.proof_len(ChunkIndex(10)), Ok(2));
        // The example of the spec (section 8.1): 10 chunks.
        let ten = SwarmParams::new(10, 1, 10).unwrap();
        let lens: Vec<u32> = (0..10)
            .map(|i| ten.proof_len(ChunkIndex(i)).unwrap())
            .collect();
        assert_eq!(lens, [4, 4, 4, 4, 4, 4, 4, 4, 2, 2]);
        let exact = SwarmParams::new(4096, 1024, 4).unwrap();
        assert_eq!(exact.chunk_len(ChunkIndex(3)), Ok(1024));
    }

    #[test]
    fn inconsistent_geometry_is_refused() {
        assert_eq!(
            SwarmParams::new(100, 0, 1),
            Err(SwarmParamsError::ZeroChunkSize)
        );
        assert_eq!(
            SwarmParams::new(0, 1024, 0),
            Err(SwarmParamsError::EmptyArtifact)
        );
        assert_eq!(
            SwarmParams::new(2049, 1024, 2),
            Err(SwarmParamsError::ChunkCount {
                artifact_bytes: 2049,
                chunk_size: 1024,
                chunk_count: 2,
                expected: 3
            })
        );
        let too_many = u64::from(MAX_CHUNK_COUNT) + 1;
        assert_eq!(
            SwarmParams::new(too_many, 1, MAX_CHUNK_COUNT + 1),
            Err(SwarmParamsError::TooManyChunks {
                chunk_count: MAX_CHUNK_COUNT + 1
            })
        );
        assert!(SwarmParams::new(u64::from(MAX_CHUNK_COUNT), 1, MAX_CHUNK_COUNT).is_ok());
    }
}
