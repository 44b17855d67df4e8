//! fixed-size-merkle-v0 (`docs/merkle.md`): the chunk hash list, the tree
//! over it, and proofs that check one chunk against the root alone.
//!
//! - The ordered chunk list holds plain `SHA-256(chunk bytes)` values, so
//!   anyone can check a chunk with `sha256sum`.
//! - The tree is domain-separated: `leaf = SHA-256(0x00 || chunk hash)`,
//!   `node = SHA-256(0x01 || left || right)`.
//! - Its shape is RFC 6962's: for `n > 1` leaves, the left subtree holds the
//!   largest power of two smaller than `n`. Built level by level, this is the
//!   same as pairing neighbours and carrying an unpaired last node up
//!   unchanged, which is how [`MerkleTree`] builds it.
//! - A proof for chunk `i` is the list of sibling hashes from the leaf up; a
//!   level where `i`'s node is the unpaired last one contributes nothing, so
//!   the proof length depends on `i` and `n` ([`proof_len`]), and a proof of
//!   any other length is refused.

use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;

/// Prefix byte of a leaf hash.
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix byte of an inner node hash.
pub const NODE_PREFIX: u8 = 0x01;
/// Longest proof any tree can have: chunk counts fit in `u32`.
pub const MAX_PROOF_LEN: usize = 32;

/// `SHA-256(0x00 || chunk_hash)`.
pub fn leaf_hash(chunk_hash: &Sha256Digest) -> Sha256Digest {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(chunk_hash.as_bytes());
    Sha256Digest(hasher.finalize().into())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Sha256Digest, right: &Sha256Digest) -> Sha256Digest {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    Sha256Digest(hasher.finalize().into())
}

/// The number of sibling hashes in the proof of leaf `index` in a tree of
/// `count` leaves, or `None` when `index >= count`.
pub fn proof_len(index: u32, count: u32) -> Option<usize> {
    if index >= count {
        return None;
    }
    let mut len = 0;
    for_each_level(index, count, |_, has_sibling| {
        len += usize::from(has_sibling)
    });
    Some(len)
}

/// Walks the levels of the path of leaf `index` in a tree of `count` leaves,
/// calling `visit(position_at_level, has_sibling)` for each level below the
/// root.
fn for_each_level(index: u32, count: u32, mut visit: impl FnMut(u64, bool)) {
    let mut position = u64::from(index);
    let mut width = u64::from(count);
    while width > 1 {
        let has_sibling = position % 2 == 1 || position + 1 < width;
        visit(position, has_sibling);
        position /= 2;
        width = width.div_ceil(2);
    }
}

/// Why a chunk did not check out against the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not a chunk of this artifact.
    #[error("chunk {index} is out of range: the artifact has {count} chunks")]
    IndexOutOfRange {
        /// The claimed index.
        index: u32,
        /// Chunks in the artifact.
        count: u32,
    },
    /// The proof has the wrong number of hashes for this leaf.
    #[error("proof for chunk {index} has {found} hashes; this tree needs exactly {expected}")]
    WrongLength {
        /// The chunk.
        index: u32,
        /// Hashes required.
        expected: usize,
        /// Hashes given.
        found: usize,
    },
    /// The proof leads to another root.
    #[error("chunk {index} does not hash to the Merkle root (leaf hash mismatch)")]
    RootMismatch {
        /// The chunk.
        index: u32,
    },
}

/// Checks that `chunk_hash` is leaf `index` of the tree with `count` leaves
/// and root `root`, using `proof` (sibling hashes from the leaf up).
pub fn verify_proof(
    root: &Sha256Digest,
    count: u32,
    index: u32,
    chunk_hash: &Sha256Digest,
    proof: &[Sha256Digest],
) -> Result<(), ProofError> {
    let expected = proof_len(index, count).ok_or(ProofError::IndexOutOfRange { index, count })?;
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            index,
            expected,
            found: proof.len(),
        });
    }
    let mut node = leaf_hash(chunk_hash);
    let mut siblings = proof.iter();
    for_each_level(index, count, |position, has_sibling| {
        if !has_sibling {
            return;
        }
        // The length check above guarantees one sibling per such level.
        if let Some(sibling) = siblings.next() {
            node = if position % 2 == 1 {
                node_hash(sibling, &node)
            } else {
                node_hash(&node, sibling)
            };
        }
    });
    if node == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch { index })
    }
}

/// A whole tree, every level kept so any proof is a lookup. Memory: about
/// `2 * count * 32` bytes (256 KiB for 4096 chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaf hashes, the last level is `[root]`.
    levels: Vec<Vec<Sha256Digest>>,
    chunk_hashes: Vec<Sha256Digest>,
}

/// A tree needs at least one chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// No chunks.
    #[error("a Merkle tree needs at least one chunk")]
    Empty,
    /// More chunks than a `u32` index can name.
    #[error("{0} chunks is more than a chunk index can address")]
    TooManyChunks(usize),
}

impl MerkleTree {
    /// Builds the tree over the ordered chunk hashes.
    pub fn from_chunk_hashes(chunk_hashes: Vec<Sha256Digest>) -> Result<Self, TreeError> {
        if chunk_hashes.is_empty() {
            return Err(TreeError::Empty);
        }
        if u32::try_from(chunk_hashes.len()).is_err() {
            return Err(TreeError::TooManyChunks(chunk_hashes.len()));
        }
        let mut levels = vec![chunk_hashes.iter().map(leaf_hash).collect::<Vec<_>>()];
        while let Some(level) = levels.last().filter(|level| level.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(next);
        }
        Ok(Self {
            levels,
            chunk_hashes,
        })
    }

    /// The root.
    pub fn root(&self) -> Sha256Digest {
        self.levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or_default()
    }

    /// Number of chunks (leaves).
    pub fn chunk_count(&self) -> u32 {
        self.chunk_hashes.len() as u32
    }

    /// The ordered `SHA-256(chunk)` list.
    pub fn chunk_hashes(&self) -> &[Sha256Digest] {
        &self.chunk_hashes
    }

    /// The proof of chunk `index`, or `None` when out of range.
    pub fn proof(&self, index: u32) -> Option<Vec<Sha256Digest>> {
        let count = self.chunk_count();
        if index >= count {
            return None;
        }
        let mut proof = Vec::with_capacity(proof_len(index, count).unwrap_or(0));
        let mut level = 0;
        for_each_level(index, count, |position, has_sibling| {
            if has_sibling {
                proof.push(self.levels[level][(position ^ 1) as usize]);
            }
            level += 1;
        });
        Some(proof)
    }
}

/// The chunk list file format (`docs/merkle.md`): one lowercase hex chunk
/// hash per line, each line ending in LF. Its SHA-256 is the manifest's
/// `chunk-list-sha256`.
pub fn chunk_list_text(chunk_hashes: &[Sha256Digest]) -> String {
    let mut text = String::with_capacity(chunk_hashes.len() * 65);
    for hash in chunk_hashes {
        text.push_str(&hash.to_hex());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(count: u32) -> Vec<Sha256Digest> {
        (0..count)
            .map(|i| Sha256Digest::of(&i.to_le_bytes()))
            .collect()
    }

    /// RFC 6962 section 2.1, written as recursively as the RFC says it.
    fn rfc6962_root(leaves: &[Sha256Digest]) -> Sha256Digest {
        if leaves.len() == 1 {
            return leaf_hash(&leaves[0]);
        }
        // The largest power of two strictly smaller than n.
        let k = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
        node_hash(&rfc6962_root(&leaves[..k]), &rfc6962_root(&leaves[k..]))
    }

    #[test]
    fn level_construction_matches_the_rfc_recursion() {
        for count in 1..=70 {
            let leaves = hashes(count);
            let tree = MerkleTree::from_chunk_hashes(leaves.clone()).unwrap();
            assert_eq!(tree.root(), rfc6962_root(&leaves), "count {count}");
        }
    }

    #[test]
    fn every_proof_verifies_and_has_the_predicted_length() {
        for count in [1, 2, 3, 5, 7, 8, 9, 31, 33, 100] {
            let tree = MerkleTree::from_chunk_hashes(hashes(count)).unwrap();
            for index in 0..count {
                let proof = tree.proof(index).unwrap();
                assert_eq!(Some(proof.len()), proof_len(index, count));
                let chunk = tree.chunk_hashes()[index as usize];
                assert_eq!(
                    verify_proof(&tree.root(), count, index, &chunk, &proof),
                    Ok(())
                );
            }
        }
    }

    #[test]
    fn single_chunk_tree_has_an_empty_proof() {
        let tree = MerkleTree::from_chunk_hashes(hashes(1)).unwrap();
        assert_eq!(tree.root(), leaf_hash(&hashes(1)[0]));
        assert_eq!(tree.proof(0), Some(vec![]));
    }

    #[test]
    fn proof_for_another_index_fails() {
        let tree = MerkleTree::from_chunk_hashes(hashes(8)).unwrap();
        let proof = tree.proof(2).unwrap();
        let chunk = tree.chunk_hashes()[2];
        assert_eq!(
            verify_proof(&tree.root(), 8, 3, &chunk, &proof),
            Err(ProofError::RootMismatch { index: 3 })
        );
    }

    #[test]
    fn wrong_proof_length_is_refused_before_hashing() {
        let tree = MerkleTree::from_chunk_hashes(hashes(5)).unwrap();
        let mut proof = tree.proof(4).unwrap();
        assert_eq!(
            proof.len(),
            1,
            "the unpaired last leaf of 5 has one sibling"
        );
        proof.push(Sha256Digest::default());
        let chunk = tree.chunk_hashes()[4];
        assert_eq!(
            verify_proof(&tree.root(), 5, 4, &chunk, &proof),
            Err(ProofError::WrongLength {
                index: 4,
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn out_of_range_index_is_refused() {
        let tree = MerkleTree::from_chunk_hashes(hashes(4)).unwrap();
        assert_eq!(tree.proof(4), None);
        assert_eq!(proof_len(4, 4), None);
        assert_eq!(
            verify_proof(&tree.root(), 4, 4, &Sha256Digest::default(), &[]),
            Err(ProofError::IndexOutOfRange { index: 4, count: 4 })
        );
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        // A node over two leaves must not equal the leaf hash of anything
        // built from the same bytes: the prefixes differ.
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");
        let mut joined = Vec::new();
        joined.extend_from_slice(a.as_bytes());
        joined.extend_from_slice(b.as_bytes());
        assert_ne!(
            node_hash(&a, &b),
            Sha256Digest::of(&[&[LEAF_PREFIX][..], &joined].concat())
        );
        assert_ne!(leaf_hash(&a), Sha256Digest::of(a.as_bytes()));
    }

    #[test]
    fn empty_tree_is_refused() {
        assert_eq!(MerkleTree::from_chunk_hashes(vec![]), Err(TreeError::Empty));
    }

    #[test]
    fn chunk_list_is_sha256sum_style_hex_lines() {
        let list = chunk_list_text(&hashes(2));
        let lines: Vec<_> = list.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], hashes(2)[0].to_hex());
        assert!(list.ends_with('\n'));
    }
}
