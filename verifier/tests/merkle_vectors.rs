//! The Merkle code against `fixtures/merkle/vectors.txt`, written by an
//! independent implementation (`fixtures/merkle/make_vectors.py`).

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::merkle::{MerkleTree, leaf_hash, verify_proof};

struct Tree {
    count: u32,
    chunks: Vec<(Sha256Digest, Sha256Digest)>,
    root: Sha256Digest,
    proofs: Vec<Vec<Sha256Digest>>,
}

fn parse_vectors() -> Vec<Tree> {
    let text = include_str!("../../fixtures/merkle/vectors.txt");
    let mut trees: Vec<Tree> = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split(' ').collect();
        let digest = |s: &str| s.parse::<Sha256Digest>().expect("vector hex");
        match words.as_slice() {
            ["tree", count] => trees.push(Tree {
                count: count.parse().unwrap(),
                chunks: vec![],
                root: Sha256Digest::default(),
                proofs: vec![],
            }),
            ["chunk", _, hash, leaf] => trees
                .last_mut()
                .unwrap()
                .chunks
                .push((digest(hash), digest(leaf))),
            ["root", root] => trees.last_mut().unwrap().root = digest(root),
            ["proof", _, "-"] => trees.last_mut().unwrap().proofs.push(vec![]),
            ["proof", _, list] => trees
                .last_mut()
                .unwrap()
                .proofs
                .push(list.split(',').map(digest).collect()),
            _ => panic!("unexpected vector line {line:?}"),
        }
    }
    trees
}

#[test]
fn vectors_cover_several_shapes() {
    let counts: Vec<u32> = parse_vectors().iter().map(|t| t.count).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5, 7, 8, 13]);
}

#[test]
fn chunk_hashes_are_plain_sha256_of_the_chunk() {
    for tree in parse_vectors() {
        for (i, (hash, leaf)) in tree.chunks.iter().enumerate() {
            let chunk = format!("minimodel chunk {i}");
            assert_eq!(*hash, Sha256Digest::of(chunk.as_bytes()));
            assert_eq!(*leaf, leaf_hash(hash));
        }
    }
}

#[test]
fn roots_and_proofs_match_the_vectors() {
    for tree in parse_vectors() {
        let hashes: Vec<_> = tree.chunks.iter().map(|(hash, _)| *hash).collect();
        let built = MerkleTree::from_chunk_hashes(hashes.clone()).unwrap();
        assert_eq!(built.root(), tree.root, "root of {} chunks", tree.count);
        for index in 0..tree.count {
            let expected = &tree.proofs[index as usize];
            assert_eq!(
                built.proof(index).as_ref(),
                Some(expected),
                "proof {index}/{}",
                tree.count
            );
            let chunk = &hashes[index as usize];
            assert_eq!(
                verify_proof(&tree.root, tree.count, index, chunk, expected),
                Ok(())
            );
        }
    }
}
