//! Property tests of fixed-size-merkle-v0: a valid proof verifies, and any
//! flipped bit in the chunk, the proof or the root makes it fail.

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkData, ChunkError, ChunkGeometry, ChunkIndex, ChunkVerifier};
use minimodel_verifier::merkle::MerkleTree;
use proptest::prelude::*;

const CHUNK: u32 = 64;

struct Artifact {
    bytes: Vec<u8>,
    geometry: ChunkGeometry,
    tree: MerkleTree,
}

fn artifact(len: usize, seed: u8) -> Artifact {
    // Distinct content for every 32-byte block, so no two chunks are equal.
    let bytes: Vec<u8> = (0..len.div_ceil(32))
        .flat_map(|block| Sha256Digest::of(&[&[seed][..], &block.to_le_bytes()].concat()).0)
        .take(len)
        .collect();
    let geometry = ChunkGeometry::new(len as u64, CHUNK).unwrap();
    let hashes = bytes.chunks(CHUNK as usize).map(Sha256Digest::of).collect();
    let tree = MerkleTree::from_chunk_hashes(hashes).unwrap();
    Artifact {
        bytes,
        geometry,
        tree,
    }
}

fn chunk(artifact: &Artifact, index: u32) -> Vec<u8> {
    let range = artifact.geometry.byte_range(ChunkIndex(index)).unwrap();
    artifact.bytes[range.start as usize..range.end as usize].to_vec()
}

fn flip(bytes: &mut [u8], bit: usize) {
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// An artifact of 1..=40 chunks (last one possibly short) and a chunk in it.
fn artifact_and_index() -> impl Strategy<Value = (usize, u8, u32)> {
    (1usize..=40 * CHUNK as usize, any::<u8>()).prop_flat_map(|(len, seed)| {
        let count = len.div_ceil(CHUNK as usize) as u32;
        (Just(len), Just(seed), 0..count)
    })
}

proptest! {
    #[test]
    fn a_valid_proof_verifies((len, seed, index) in artifact_and_index()) {
        let a = artifact(len, seed);
        let verifier = ChunkVerifier::new(a.geometry.clone(), a.tree.root());
        let proof = a.tree.proof(index).unwrap();
        let verified = verifier.verify(ChunkIndex(index), ChunkData::from(chunk(&a, index)), &proof);
        prop_assert!(verified.is_ok());
    }

    #[test]
    fn a_flipped_chunk_bit_fails((len, seed, index) in artifact_and_index(), bit in any::<usize>()) {
        let a = artifact(len, seed);
        let verifier = ChunkVerifier::new(a.geometry.clone(), a.tree.root());
        let mut bytes = chunk(&a, index);
        flip(&mut bytes, bit);
        let result = verifier.verify(ChunkIndex(index), bytes.into(), &a.tree.proof(index).unwrap());
        prop_assert!(matches!(result, Err(ChunkError::Proof(_))));
    }

    #[test]
    fn a_flipped_proof_bit_fails((len, seed, index) in artifact_and_index(), which in any::<usize>(), bit in 0usize..256) {
        let a = artifact(len, seed);
        let mut proof = a.tree.proof(index).unwrap();
        prop_assume!(!proof.is_empty());
        let slot = which % proof.len();
        flip(&mut proof[slot].0, bit);
        let verifier = ChunkVerifier::new(a.geometry.clone(), a.tree.root());
        let result = verifier.verify(ChunkIndex(index), chunk(&a, index).into(), &proof);
        prop_assert!(matches!(result, Err(ChunkError::Proof(_))));
    }

    #[test]
    fn a_flipped_root_bit_fails((len, seed, index) in artifact_and_index(), bit in 0usize..256) {
        let a = artifact(len, seed);
        let mut root = a.tree.root();
        flip(&mut root.0, bit);
        let verifier = ChunkVerifier::new(a.geometry.clone(), root);
        let result = verifier.verify(ChunkIndex(index), chunk(&a, index).into(), &a.tree.proof(index).unwrap());
        prop_assert!(matches!(result, Err(ChunkError::Proof(_))));
    }

    #[test]
    fn a_proof_for_another_chunk_fails((len, seed, index) in artifact_and_index(), other in any::<u32>()) {
        let a = artifact(len, seed);
        let count = a.geometry.chunk_count();
        prop_assume!(count > 1);
        let other = other % count;
        prop_assume!(other != index);
        let verifier = ChunkVerifier::new(a.geometry.clone(), a.tree.root());
        let result = verifier.verify(ChunkIndex(index), chunk(&a, other).into(), &a.tree.proof(other).unwrap());
        prop_assert!(result.is_err());
    }
}
