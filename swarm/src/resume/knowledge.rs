//! What a partial download knows about its chunks: which are verified,
//! their chunk hashes, and the Merkle nodes that prove them.
//!
//! Invariants of [`ChunkKnowledge`], kept by every method and checked when
//! it is restored from a state file:
//! - a chunk is verified iff its chunk hash is known;
//! - every verified chunk has a complete proof in the tree, whose leaf is
//!   `leaf_hash(chunk hash)`, and that proof leads to the root;
//! - every node in the tree agrees with its children where both are known.
//!
//! Only what was checked against the root enters: [`ChunkKnowledge::insert`]
//! checks the proof again, a restored tree is recomputed from its leaves up
//! to the root.

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::ChunkIndex;
use minimodel_verifier::merkle::{
    MerkleTree, PartialTree, ProofError, leaf_hash, node_hash, verify_proof,
};
use minimodel_wire::HaveBitfield;

use super::error::KnowledgeError;

/// A Merkle node as saved: `(level, position, hash)`, level 0 the leaf
/// hashes.
pub type SavedNode = (u32, u32, Sha256Digest);

/// Verified chunks, their hashes and the Merkle nodes that prove them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkKnowledge {
    root: Sha256Digest,
    verified: HaveBitfield,
    chunk_hashes: Vec<Option<Sha256Digest>>,
    tree: PartialTree,
}

fn wire_index(index: u32) -> minimodel_wire::ChunkIndex {
    minimodel_wire::ChunkIndex(index)
}

/// Widths of the tree's levels, leaves first.
fn level_widths(count: u32) -> Vec<u32> {
    let mut widths = vec![count.max(1)];
    while let Some(&width) = widths.last().filter(|&&width| width > 1) {
        widths.push(width.div_ceil(2));
    }
    widths
}

impl ChunkKnowledge {
    /// Nothing verified: only the root of a tree of `count` chunks.
    pub fn new(root: Sha256Digest, count: u32) -> Self {
        Self {
            root,
            verified: HaveBitfield::new(count),
            chunk_hashes: vec![None; count as usize],
            tree: PartialTree::new(root, count),
        }
    }

    /// Every chunk verified: the whole tree, built from the chunk hashes of
    /// a file whose tree has the expected root (the caller checked it).
    pub fn complete(tree: &MerkleTree) -> Self {
        let count = tree.chunk_count();
        let mut knowledge = Self::new(tree.root(), count);
        for (index, hash) in tree.chunk_hashes().iter().enumerate() {
            knowledge.tree.insert_node(0, index as u32, leaf_hash(hash));
            knowledge.chunk_hashes[index] = Some(*hash);
        }
        knowledge.verified = HaveBitfield::full(count);
        // Recomputing the nodes of a tree built from these very leaves
        // cannot conflict; the root was checked by the caller.
        let _ = knowledge.derive_nodes();
        knowledge
    }

    /// Rebuilds saved knowledge: `chunk_hashes` are the hashes of the set
    /// chunks of `verified` in increasing order, `nodes` the extra nodes.
    /// Every node is recomputed from the leaves up and must agree with what
    /// was saved and with the root; every verified chunk must be provable.
    pub fn restore(
        root: Sha256Digest,
        verified: HaveBitfield,
        chunk_hashes: &[Sha256Digest],
        nodes: &[SavedNode],
    ) -> Result<Self, KnowledgeError> {
        let count = verified.chunk_count();
        let expected = verified.count_ones();
        if chunk_hashes.len() != expected as usize {
            return Err(KnowledgeError::HashCount {
                expected,
                found: chunk_hashes.len(),
            });
        }
        let mut knowledge = Self::new(root, count);
        for &(level, position, hash) in nodes {
            if !knowledge.tree.insert_node(level, position, hash) {
                return Err(KnowledgeError::Conflict { level, position });
            }
        }
        for (index, hash) in verified.iter_ones().zip(chunk_hashes) {
            let leaf = leaf_hash(hash);
            match knowledge.tree.node(0, index.0) {
                Some(saved) if saved != leaf => {
                    return Err(KnowledgeError::Conflict {
                        level: 0,
                        position: index.0,
                    });
                }
                _ => {
                    knowledge.tree.insert_node(0, index.0, leaf);
                }
            }
            knowledge.chunk_hashes[index.0 as usize] = Some(*hash);
        }
        knowledge.verified = verified;
        knowledge.derive_nodes()?;
        for index in knowledge.verified.iter_ones() {
            if knowledge.tree.proof(index.0).is_none() {
                return Err(KnowledgeError::MissingProof { index: index.0 });
            }
        }
        Ok(knowledge)
    }

    /// Computes every node whose children are known, bottom up, and checks
    /// nodes that were known already (the root among them).
    fn derive_nodes(&mut self) -> Result<(), KnowledgeError> {
        let widths = level_widths(self.chunk_count());
        for (level, &width) in widths.iter().enumerate().take(widths.len() - 1) {
            let level = level as u32;
            for position in (0..width).step_by(2) {
                let left = self.tree.node(level, position);
                let parent = if position + 1 < width {
                    match (left, self.tree.node(level, position + 1)) {
                        (Some(left), Some(right)) => Some(node_hash(&left, &right)),
                        _ => None,
                    }
                } else {
                    // The unpaired last node moves up unchanged.
                    left
                };
                let Some(parent) = parent else { continue };
                let (up, up_position) = (level + 1, position / 2);
                match self.tree.node(up, up_position) {
                    Some(known) if known != parent => {
                        return Err(KnowledgeError::Conflict {
                            level: up,
                            position: up_position,
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.tree.insert_node(up, up_position, parent);
                    }
                }
            }
        }
        Ok(())
    }

    /// Records chunk `index` with `chunk_hash`, after checking `proof`
    /// against the root. Returns whether it was new.
    pub fn insert(
        &mut self,
        index: ChunkIndex,
        chunk_hash: Sha256Digest,
        proof: &[Sha256Digest],
    ) -> Result<bool, ProofError> {
        verify_proof(&self.root, self.chunk_count(), index.0, &chunk_hash, proof)?;
        self.tree.insert_verified(index.0, &chunk_hash, proof);
        self.chunk_hashes[index.0 as usize] = Some(chunk_hash);
        // In range: verify_proof checked the index.
        let was = self.verified.set(wire_index(index.0), true).unwrap_or(true);
        Ok(!was)
    }

    /// Forgets that chunk `index` is verified (its bytes went bad). The
    /// tree keeps its nodes: they were checked against the root and stay
    /// true. Returns whether it was verified.
    pub fn drop_chunk(&mut self, index: ChunkIndex) -> bool {
        let Some(slot) = self.chunk_hashes.get_mut(index.0 as usize) else {
            return false;
        };
        *slot = None;
        self.verified
            .set(wire_index(index.0), false)
            .unwrap_or(false)
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.verified.chunk_count()
    }

    /// The Merkle root.
    pub fn root(&self) -> Sha256Digest {
        self.root
    }

    /// The verified chunks.
    pub fn verified(&self) -> &HaveBitfield {
        &self.verified
    }

    /// Whether chunk `index` is verified.
    pub fn is_verified(&self, index: ChunkIndex) -> bool {
        self.verified.get(wire_index(index.0))
    }

    /// The chunk hash of a verified chunk.
    pub fn chunk_hash(&self, index: ChunkIndex) -> Option<Sha256Digest> {
        self.chunk_hashes.get(index.0 as usize).copied().flatten()
    }

    /// The chunk hashes of the verified chunks, in increasing chunk order.
    pub fn verified_hashes(&self) -> Vec<Sha256Digest> {
        self.chunk_hashes.iter().flatten().copied().collect()
    }

    /// The proof of a verified chunk, to pass on with it.
    pub fn proof(&self, index: ChunkIndex) -> Option<Vec<Sha256Digest>> {
        if !self.is_verified(index) {
            return None;
        }
        self.tree.proof(index.0)
    }

    /// The tree: every node known.
    pub fn tree(&self) -> &PartialTree {
        &self.tree
    }

    /// The known nodes that cannot be recomputed from the verified chunks'
    /// hashes and the nodes before them (level by level, leaves first):
    /// the least a state file must keep so that [`ChunkKnowledge::restore`]
    /// gets the same tree back. In increasing `(level, position)` order.
    pub fn extra_nodes(&self) -> Vec<SavedNode> {
        let widths = level_widths(self.chunk_count());
        let mut restorable: Vec<Vec<bool>> = widths
            .iter()
            .map(|&width| vec![false; width as usize])
            .collect();
        let mut extra = Vec::new();
        for (level, position, hash) in self.tree.known_nodes() {
            let derivable = if level == 0 {
                self.verified.get(wire_index(position))
            } else {
                let below = &restorable[level as usize - 1];
                let left = 2 * position as usize;
                below[left] && below.get(left + 1).copied().unwrap_or(true)
            };
            restorable[level as usize][position as usize] = true;
            if !derivable {
                extra.push((level, position, hash));
            }
        }
        extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(count: u32) -> MerkleTree {
        MerkleTree::from_chunk_hashes(
            (0..count)
                .map(|i| Sha256Digest::of(&i.to_be_bytes()))
                .collect(),
        )
        .unwrap()
    }

    fn learn(tree: &MerkleTree, chunks: &[u32]) -> ChunkKnowledge {
        let mut knowledge = ChunkKnowledge::new(tree.root(), tree.chunk_count());
        for &index in chunks {
            let hash = tree.chunk_hashes()[index as usize];
            assert_eq!(
                knowledge.insert(ChunkIndex(index), hash, &tree.proof(index).unwrap()),
                Ok(true)
            );
        }
        knowledge
    }

    fn round_trip(knowledge: &ChunkKnowledge) -> ChunkKnowledge {
        ChunkKnowledge::restore(
            knowledge.root(),
            knowledge.verified().clone(),
            &knowledge.verified_hashes(),
            &knowledge.extra_nodes(),
        )
        .unwrap()
    }

    #[test]
    fn saved_knowledge_restores_to_the_same_tree() {
        for count in [1, 2, 3, 5, 8, 13, 100] {
            let tree = tree(count);
            let chunks: Vec<u32> = (0..count).filter(|i| i % 3 != 1).collect();
            let knowledge = learn(&tree, &chunks);
            let restored = round_trip(&knowledge);
            assert_eq!(restored, knowledge, "count {count}");
            for &index in &chunks {
                assert_eq!(
                    restored.proof(ChunkIndex(index)),
                    tree.proof(index),
                    "count {count} chunk {index}"
                );
            }
        }
    }

    #[test]
    fn a_complete_tree_needs_no_extra_nodes() {
        let tree = tree(13);
        let all: Vec<u32> = (0..13).collect();
        let knowledge = learn(&tree, &all);
        assert!(knowledge.extra_nodes().is_empty());
        assert_eq!(ChunkKnowledge::complete(&tree), knowledge);
    }

    #[test]
    fn extra_nodes_are_only_what_the_leaves_cannot_give() {
        // 4 leaves, chunk 0 verified: its sibling leaf 1 and the node over
        // leaves 2-3 are extra; the node over 0-1 follows from them.
        let tree = tree(4);
        let knowledge = learn(&tree, &[0]);
        let extra: Vec<(u32, u32)> = knowledge
            .extra_nodes()
            .iter()
            .map(|&(level, position, _)| (level, position))
            .collect();
        assert_eq!(extra, vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn a_wrong_chunk_hash_is_caught_on_restore() {
        let tree = tree(8);
        let knowledge = learn(&tree, &[1, 2, 6]);
        let mut hashes = knowledge.verified_hashes();
        hashes[1] = Sha256Digest::of(b"not chunk 2");
        let result = ChunkKnowledge::restore(
            tree.root(),
            knowledge.verified().clone(),
            &hashes,
            &knowledge.extra_nodes(),
        );
        assert!(
            matches!(result, Err(KnowledgeError::Conflict { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_missing_sibling_is_caught_on_restore() {
        let tree = tree(8);
        let knowledge = learn(&tree, &[5]);
        let mut nodes = knowledge.extra_nodes();
        nodes.remove(0);
        let result = ChunkKnowledge::restore(
            tree.root(),
            knowledge.verified().clone(),
            &knowledge.verified_hashes(),
            &nodes,
        );
        assert_eq!(result, Err(KnowledgeError::MissingProof { index: 5 }));
    }

    #[test]
    fn a_wrong_root_is_caught_on_restore() {
        let tree = tree(6);
        let knowledge = learn(&tree, &[0, 1, 2, 3, 4, 5]);
        let result = ChunkKnowledge::restore(
            Sha256Digest::of(b"other root"),
            knowledge.verified().clone(),
            &knowledge.verified_hashes(),
            &[],
        );
        assert!(matches!(result, Err(KnowledgeError::Conflict { .. })));
    }

    #[test]
    fn a_proof_for_another_chunk_is_refused() {
        let tree = tree(8);
        let mut knowledge = ChunkKnowledge::new(tree.root(), 8);
        let result = knowledge.insert(
            ChunkIndex(3),
            tree.chunk_hashes()[3],
            &tree.proof(4).unwrap(),
        );
        assert_eq!(result, Err(ProofError::RootMismatch { index: 3 }));
        assert!(!knowledge.is_verified(ChunkIndex(3)));
        assert_eq!(knowledge.tree().known_nodes().count(), 0);
    }

    #[test]
    fn dropped_chunks_lose_their_hash_but_keep_their_nodes() {
        let tree = tree(8);
        let mut knowledge = learn(&tree, &[2, 3]);
        assert!(knowledge.drop_chunk(ChunkIndex(2)));
        assert!(!knowledge.drop_chunk(ChunkIndex(2)));
        assert!(!knowledge.drop_chunk(ChunkIndex(99)));
        assert_eq!(knowledge.chunk_hash(ChunkIndex(2)), None);
        assert_eq!(knowledge.proof(ChunkIndex(2)), None);
        assert_eq!(knowledge.proof(ChunkIndex(3)), tree.proof(3));
        assert_eq!(round_trip(&knowledge), knowledge);
    }
}
