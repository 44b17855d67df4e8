//! fixed-size-merkle-v0 next to raw SHA-256: what the tree and the proofs
//! cost beyond hashing the bytes once.
//!
//! `cargo bench -p minimodel-benches --bench merkle`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkData, ChunkGeometry, ChunkIndex, ChunkVerifier};
use minimodel_verifier::hashing::{ChunkHasher, hash_reader};
use minimodel_verifier::merkle::MerkleTree;
use sha2::{Digest, Sha256};

const CHUNK: u32 = 1 << 20;
const ARTIFACT: usize = 64 << 20;

fn artifact() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..ARTIFACT / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

fn hashing(c: &mut Criterion) {
    let bytes = artifact();
    let mut group = c.benchmark_group("hashing");
    group.throughput(Throughput::Bytes(ARTIFACT as u64));
    group.sample_size(10);
    group.bench_function("raw-sha256", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&bytes))))
    });
    group.bench_function("chunk-hashes", |b| {
        b.iter(|| {
            let mut hasher = ChunkHasher::new(CHUNK as usize);
            hasher.update(black_box(&bytes));
            black_box(hasher.finish())
        })
    });
    group.bench_function("chunk-hashes+full-sha256 (two threads)", |b| {
        b.iter(|| black_box(hash_reader(&bytes[..], CHUNK, &|_| {}).unwrap()))
    });
    group.finish();
}

fn tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle-tree");
    for count in [1024u32, 65536] {
        let hashes: Vec<_> = (0..count)
            .map(|i| Sha256Digest::of(&i.to_le_bytes()))
            .collect();
        group.throughput(Throughput::Elements(u64::from(count)));
        group.bench_with_input(BenchmarkId::new("build", count), &hashes, |b, hashes| {
            b.iter(|| black_box(MerkleTree::from_chunk_hashes(hashes.clone()).unwrap()))
        });
    }
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let bytes = artifact();
    let geometry = ChunkGeometry::new(ARTIFACT as u64, CHUNK).unwrap();
    let hashes = bytes.chunks(CHUNK as usize).map(Sha256Digest::of).collect();
    let tree = MerkleTree::from_chunk_hashes(hashes).unwrap();
    let verifier = ChunkVerifier::new(geometry, tree.root());
    let chunk = ChunkData::from(bytes[..CHUNK as usize].to_vec());
    let proof = tree.proof(0).unwrap();
    let mut group = c.benchmark_group("proof");
    group.throughput(Throughput::Bytes(u64::from(CHUNK)));
    group.bench_function("verify 1 MiB chunk", |b| {
        b.iter(|| {
            black_box(
                verifier
                    .verify(ChunkIndex(0), chunk.clone(), &proof)
                    .unwrap(),
            )
        })
    });
    group.bench_function("raw-sha256 1 MiB", |b| {
        b.iter(|| black_box(Sha256::digest(&bytes[..CHUNK as usize])))
    });
    group.finish();
}

criterion_group!(benches, hashing, tree, proofs);
criterion_main!(benches);
