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

/// The part of a tree a downloading peer knows: every node it computed or
/// received while checking proofs. Whatever a proof checked against the root
/// is as trustworthy as the root, so a peer can pass proofs on for chunks it
/// verified without ever seeing the whole chunk list.
///
/// Memory: one optional hash per node of the full tree, about
/// `2 * count * 33` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialTree {
    count: u32,
    /// `levels[0]` holds leaf hashes; the last level holds the root.
    levels: Vec<Vec<Option<Sha256Digest>>>,
}

impl PartialTree {
    /// Knows only the root of a tree of `count` leaves.
    pub fn new(root: Sha256Digest, count: u32) -> Self {
        let mut levels = Vec::new();
        let mut width = count.max(1) as usize;
        loop {
            levels.push(vec![None; width]);
            if width == 1 {
                break;
            }
            width = width.div_ceil(2);
        }
        if let Some(top) = levels.last_mut() {
            top[0] = Some(root);
        }
        Self { count, levels }
    }

    /// Number of leaves.
    pub fn chunk_count(&self) -> u32 {
        self.count
    }

    /// Records the path of a chunk whose proof was checked against the
    /// root: its leaf, every node on the way up and every sibling. Call it
    /// only after [`verify_proof`] succeeded for the same arguments.
    pub fn insert_verified(
        &mut self,
        index: u32,
        chunk_hash: &Sha256Digest,
        proof: &[Sha256Digest],
    ) {
        if index >= self.count {
            return;
        }
        let mut node = leaf_hash(chunk_hash);
        let mut siblings = proof.iter();
        let mut level = 0;
        for_each_level(index, self.count, |position, has_sibling| {
            self.levels[level][position as usize] = Some(node);
            if has_sibling && let Some(sibling) = siblings.next() {
                let sibling_position = (position ^ 1) as usize;
                self.levels[level][sibling_position] = Some(*sibling);
                node = if position % 2 == 1 {
                    node_hash(sibling, &node)
                } else {
                    node_hash(&node, sibling)
                };
            }
            level += 1;
        });
    }

    /// The proof of chunk `index`, if every sibling on its path is known.
    pub fn proof(&self, index: u32) -> Option<Vec<Sha256Digest>> {
        if index >= self.count {
            return None;
        }
        let mut proof = Vec::new();
        let mut level = 0;
        let mut complete = true;
        for_each_level(index, self.count, |position, has_sibling| {
            if has_sibling {
                match self.levels[level][(position ^ 1) as usize] {
                    Some(sibling) => proof.push(sibling),
                    None => complete = false,
                }
            }
            level += 1;
        });
        complete.then_some(proof)
    }

    /// Every known node below the root as `(level, position, hash)`, for
    /// saving; [`PartialTree::insert_node`] puts them back.
    pub fn known_nodes(&self) -> impl Iterator<Item = (u32, u32, Sha256Digest)> + '_ {
        let below_root = self.levels.len().saturating_sub(1);
        self.levels[..below_root]
            .iter()
            .enumerate()
            .flat_map(|(level, nodes)| {
                nodes
                    .iter()
                    .enumerate()
                    .filter_map(move |(position, node)| {
                        node.map(|hash| (level as u32, position as u32, hash))
                    })
            })
    }

    /// Levels from the leaves to the root, both included (1 for a tree of
    /// one leaf).
    pub fn level_count(&self) -> u32 {
        self.levels.len() as u32
    }

    /// The known hash at `level` (0: leaf hashes; [`Self::level_count`]
    /// minus one: the root) and `position`, or `None` when it is unknown or
    /// the position does not exist.
    pub fn node(&self, level: u32, position: u32) -> Option<Sha256Digest> {
        self.levels
            .get(level as usize)
            .and_then(|nodes| nodes.get(position as usize))
            .copied()
            .flatten()
    }

    /// Restores a saved node. Only for nodes that came from
    /// [`PartialTree::known_nodes`] of a tree with the same root; returns
    /// false when the position does not exist.
    pub fn insert_node(&mut self, level: u32, position: u32, hash: Sha256Digest) -> bool {
        let below_root = self.levels.len().saturating_sub(1);
        match self
            .levels
            .get_mut(level as usize)
            .filter(|_| (level as usize) < below_root)
            .and_then(|nodes| nodes.get_mut(position as usize))
        {
            Some(slot) => {
                *slot = Some(hash);
                true
            }
            None => false,
        }
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
    fn a_partial_tree_passes_on_proofs_it_learned() {
        for count in [1, 2, 5, 8, 13] {
            let tree = MerkleTree::from_chunk_hashes(hashes(count)).unwrap();
            let mut partial = PartialTree::new(tree.root(), count);
            for index in 0..count {
                assert_eq!(partial.proof(index).is_some(), count == 1 && index == 0);
            }
            // Learn every other chunk; each learned one can be proven again.
            for index in (0..count).step_by(2) {
                let proof = tree.proof(index).unwrap();
                let chunk = tree.chunk_hashes()[index as usize];
                verify_proof(&tree.root(), count, index, &chunk, &proof).unwrap();
                partial.insert_verified(index, &chunk, &proof);
                assert_eq!(partial.proof(index), Some(proof));
            }
            // Saved and restored, it knows the same.
            let mut restored = PartialTree::new(tree.root(), count);
            for (level, position, hash) in partial.known_nodes() {
                assert!(restored.insert_node(level, position, hash));
            }
            assert_eq!(restored, partial);
        }
    }

    #[test]
    fn a_partial_tree_looks_up_single_nodes() {
        let tree = MerkleTree::from_chunk_hashes(hashes(5)).unwrap();
        let mut partial = PartialTree::new(tree.root(), 5);
        assert_eq!(partial.level_count(), 4, "widths 5, 3, 2, 1");
        assert_eq!(partial.node(3, 0), Some(tree.root()));
        assert_eq!(partial.node(0, 2), None);
        let proof = tree.proof(2).unwrap();
        partial.insert_verified(2, &tree.chunk_hashes()[2], &proof);
        assert_eq!(partial.node(0, 2), Some(leaf_hash(&tree.chunk_hashes()[2])));
        assert_eq!(partial.node(0, 3), Some(proof[0]));
        assert_eq!(partial.node(0, 5), None, "out of range");
        assert_eq!(partial.node(4, 0), None, "above the root");
        assert_eq!(PartialTree::new(tree.root(), 1).level_count(), 1);
    }

    #[test]
    fn a_partial_tree_refuses_positions_that_do_not_exist() {
        let mut partial = PartialTree::new(Sha256Digest::default(), 5);
        assert!(!partial.insert_node(0, 5, Sha256Digest::default()));
        assert!(
            !partial.insert_node(3, 0, Sha256Digest::default()),
            "the root is not restored"
        );
        assert!(!partial.insert_node(9, 0, Sha256Digest::default()));
        assert!(partial.insert_node(0, 4, Sha256Digest::default()));
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
