//! The `minimodel-partial-v0` test vector, written by an independent
//! implementation (`fixtures/resume/make_vectors.py`), against this one.

use std::fs;
use std::path::Path;

use minimodel_swarm::resume::{
    ChunkKnowledge, OpenedDownload, PartialDownload, ResumeOptions, ResumeOutcome, StateBinding,
    parse_state,
};
use minimodel_swarm::store::{FileStorage, Storage};
use minimodel_verifier::chunk::{ChunkData, ChunkGeometry, ChunkIndex, ChunkVerifier};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::{Manifest, Sha256Digest};

const CHUNK: u32 = 16384;
const LENGTH: usize = 4 * CHUNK as usize + 1000;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/resume")
        .join(name);
    fs::read(path).unwrap()
}

/// The artifact the script describes.
fn artifact() -> Vec<u8> {
    (0..LENGTH)
        .map(|i| ((i * 7 + i / 251) % 256) as u8)
        .collect()
}

fn tree(bytes: &[u8]) -> MerkleTree {
    MerkleTree::from_chunk_hashes(bytes.chunks(CHUNK as usize).map(Sha256Digest::of).collect())
        .unwrap()
}

#[test]
fn the_vector_parses_and_reencodes_byte_for_byte() {
    let bytes = fixture("state-v0.json");
    let state = parse_state(&bytes).unwrap();
    assert_eq!(state.to_bytes(), bytes);
    assert_eq!(state.generation, 3);
    assert_eq!(state.checkpoint_at, "2026-01-02T03:04:05Z");
    assert_eq!(state.counters.chunks_dropped, 1);
    let ones: Vec<u32> = state
        .knowledge
        .verified()
        .iter_ones()
        .map(|i| i.0)
        .collect();
    assert_eq!(ones, vec![0, 3]);
}

#[test]
fn the_fresh_and_complete_vectors_parse_and_reencode() {
    let fresh = fixture("state-v0-fresh.json");
    let state = parse_state(&fresh).unwrap();
    assert_eq!(state.to_bytes(), fresh);
    assert_eq!((state.generation, state.chunks_verified()), (0, 0));
    assert!(state.knowledge.extra_nodes().is_empty());

    let complete = fixture("state-v0-complete.json");
    let state = parse_state(&complete).unwrap();
    assert_eq!(state.to_bytes(), complete);
    assert_eq!(state.chunks_verified(), 5);
    assert_eq!(state.bytes_verified(), LENGTH as u64);
    assert!(
        state.knowledge.extra_nodes().is_empty(),
        "a full tree follows from its leaves"
    );
    let tree = tree(&artifact());
    for index in 0..5 {
        assert_eq!(state.knowledge.proof(ChunkIndex(index)), tree.proof(index));
    }
}

#[test]
fn the_vector_is_bound_to_its_manifest() {
    let manifest_bytes = fixture("vector.manifest");
    let manifest = Manifest::parse_bytes(&manifest_bytes).unwrap();
    let state = parse_state(&fixture("state-v0.json")).unwrap();
    assert_eq!(state.binding, StateBinding::of_manifest(&manifest).unwrap());
    assert_eq!(state.manifest_sha256, Sha256Digest::of(&manifest_bytes));
    assert_eq!(state.binding.merkle_root, tree(&artifact()).root());
    assert_eq!(state.binding.artifact_sha256, Sha256Digest::of(&artifact()));
}

#[test]
fn the_vector_holds_what_this_implementation_learns_from_the_same_proofs() {
    let tree = tree(&artifact());
    let mut learned = ChunkKnowledge::new(tree.root(), 5);
    for index in [0, 3] {
        let proof = tree.proof(index).unwrap();
        learned
            .insert(
                ChunkIndex(index),
                tree.chunk_hashes()[index as usize],
                &proof,
            )
            .unwrap();
    }
    let state = parse_state(&fixture("state-v0.json")).unwrap();
    assert_eq!(state.knowledge.extra_nodes(), learned.extra_nodes());
    assert_eq!(state.knowledge, learned);
    let positions: Vec<(u32, u32)> = learned.extra_nodes().iter().map(|n| (n.0, n.1)).collect();
    assert_eq!(positions, vec![(0, 1), (0, 2), (2, 1)]);
}

#[test]
fn a_directory_with_the_vector_resumes_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest_bytes = fixture("vector.manifest");
    let manifest = Manifest::parse_bytes(&manifest_bytes).unwrap();
    let bytes = artifact();
    let geometry = ChunkGeometry::new(LENGTH as u64, CHUNK).unwrap();
    let part =
        FileStorage::open_sized(&dir.path().join("resume-vector.slm.part"), LENGTH as u64).unwrap();
    for index in [0, 3] {
        let range = geometry.byte_range(ChunkIndex(index)).unwrap();
        part.write_all_at(
            range.start,
            &bytes[range.start as usize..range.end as usize],
        )
        .unwrap();
    }
    fs::write(
        dir.path().join("resume-vector.slm.state"),
        fixture("state-v0.json"),
    )
    .unwrap();
    let options = ResumeOptions {
        sample: 2,
        ..ResumeOptions::default()
    };
    let opened = PartialDownload::open(
        dir.path(),
        &manifest,
        Sha256Digest::of(&manifest_bytes),
        &options,
        &|_| {},
    )
    .unwrap();
    let OpenedDownload::Partial(download, report) = opened else {
        panic!("expected a partial download");
    };
    assert_eq!(
        report.outcome,
        ResumeOutcome::Resumed {
            chunks: 2,
            sampled: 2
        }
    );
    assert_eq!(download.counters().runs, 3);
    let tree = tree(&bytes);
    let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
    for index in [1, 2, 4] {
        let range = geometry.byte_range(ChunkIndex(index)).unwrap();
        let data = ChunkData::from(bytes[range.start as usize..range.end as usize].to_vec());
        let proof = tree.proof(index).unwrap();
        let chunk = verifier.verify(ChunkIndex(index), data, &proof).unwrap();
        download.store_verified(&chunk, &proof).unwrap();
    }
    assert!(download.is_complete());
    let report = download.checkpoint().unwrap();
    assert_eq!(report.generation, 4);
    assert!(download.find_bad_chunks(&|_| {}).unwrap().is_empty());
    assert_eq!(fs::read(&download.paths().part).unwrap(), bytes);
}

#[test]
fn the_journal_vector_parses_to_its_records_and_encodes_byte_for_byte() {
    use minimodel_swarm::resume::journal::{encode_header, encode_record, parse_journal};
    let bytes = fixture("journal-v0.bin");
    let tree = tree(&artifact());
    let parsed = parse_journal(&bytes, &tree.root()).unwrap();
    let indices: Vec<u32> = parsed.records.iter().map(|r| r.index).collect();
    assert_eq!(indices, [1, 4]);
    assert_eq!(parsed.ignored_bytes, 20, "the torn record at the end");
    for record in &parsed.records {
        assert_eq!(
            record.chunk_hash,
            tree.chunk_hashes()[record.index as usize]
        );
        assert_eq!(Some(record.proof.clone()), tree.proof(record.index));
    }
    let mut encoded = encode_header(&tree.root());
    for record in &parsed.records {
        encoded.extend(encode_record(
            record.index,
            &record.chunk_hash,
            &record.proof,
        ));
    }
    assert_eq!(encoded, bytes[..bytes.len() - 20]);
}
