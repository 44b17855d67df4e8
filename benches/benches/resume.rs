//! Resume: how long opening a half-complete 4 GiB download takes (state
//! load, Merkle knowledge check, a 4-chunk sample), and how fast a full
//! recheck rehashes a `.part` (figures in `docs/performance.md`, "Resume").
//!
//! `cargo bench -p minimodel-benches --bench resume`
//!
//! The start-up case reserves a 4 GiB `.part` whose chunks are zeros (the
//! file system allocates it without writing it); the recheck cases write a
//! 1 GiB file of pseudo-random bytes (`MINIMODEL_BENCH_RECHECK_MIB` to
//! change the size), read from the page cache after the first pass.

use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions, ResumeOutcome};
use minimodel_swarm::store::{FileStorage, Storage};
use minimodel_verifier::chunk::{ChunkData, ChunkGeometry, ChunkIndex, ChunkVerifier};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::{Manifest, ModelId, Sha256Digest};

const CHUNK: u32 = 1 << 20;
const MANIFEST: &str = include_str!("../../fixtures/manifest/good-canonical.manifest");

/// A manifest for `bytes` bytes whose chunks hash to `chunk_hashes`. The
/// artifact SHA-256 is a stand-in: opening a download does not read it.
fn manifest(bytes: u64, chunk_hashes: Vec<Sha256Digest>) -> (Manifest, MerkleTree) {
    let tree = MerkleTree::from_chunk_hashes(chunk_hashes).unwrap();
    let mut manifest = Manifest::parse(MANIFEST).unwrap();
    manifest.model_id = ModelId::new("bench").unwrap();
    manifest.artifact_bytes = bytes;
    manifest.artifact_sha256 = Sha256Digest::of(b"stand-in");
    manifest.chunks.chunk_size = CHUNK;
    manifest.chunks.chunk_count = u64::from(tree.chunk_count());
    manifest.chunks.merkle_root = tree.root();
    manifest.chunks.chunk_list = None;
    manifest.validate().unwrap();
    (manifest, tree)
}

fn open(
    dir: &Path,
    manifest: &Manifest,
    options: &ResumeOptions,
) -> (PartialDownload, ResumeOutcome) {
    match PartialDownload::open(dir, manifest, Sha256Digest::default(), options, &|_| {}).unwrap() {
        OpenedDownload::Partial(download, report) => (download, report.outcome),
        OpenedDownload::Complete(_) => unreachable!("nothing is finished in these benchmarks"),
    }
}

fn startup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = 4u64 << 30;
    let geometry = ChunkGeometry::new(bytes, CHUNK).unwrap();
    let zeros = ChunkData::from(vec![0u8; CHUNK as usize]);
    let hashes = vec![zeros.sha256(); geometry.chunk_count() as usize];
    let (manifest, tree) = manifest(bytes, hashes);
    let options = ResumeOptions {
        sample_seed: Some(7),
        ..ResumeOptions::default()
    };
    {
        // Every other chunk verified: the most Merkle nodes to keep.
        let (download, _) = open(dir.path(), &manifest, &options);
        let verifier = ChunkVerifier::new(geometry.clone(), tree.root());
        for index in (0..geometry.chunk_count()).step_by(2) {
            let proof = tree.proof(index).unwrap();
            let chunk = verifier
                .verify(ChunkIndex(index), zeros.clone(), &proof)
                .unwrap();
            download.record_verified(&chunk, &proof).unwrap();
        }
        download.checkpoint().unwrap();
    }
    let state_len = fs::metadata(dir.path().join("bench.slm.state"))
        .unwrap()
        .len();
    println!("resume/startup: state file of {state_len} bytes for 2048 of 4096 chunks");
    let mut group = c.benchmark_group("resume");
    group.sample_size(20);
    group.bench_function("startup-4GiB-half (sample 4)", |b| {
        b.iter(|| {
            let (download, outcome) = open(dir.path(), &manifest, &options);
            assert!(matches!(
                outcome,
                ResumeOutcome::Resumed { chunks: 2048, .. }
            ));
            black_box(download)
        })
    });
    group.finish();
}

fn recheck(c: &mut Criterion) {
    let mib: u64 = std::env::var("MINIMODEL_BENCH_RECHECK_MIB")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1024);
    let bytes = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("bench.slm.part");
    let geometry = ChunkGeometry::new(bytes, CHUNK).unwrap();
    let mut hashes = Vec::new();
    {
        let storage = FileStorage::open_sized(&part, bytes).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for index in geometry.indices() {
            let chunk: Vec<u8> = (0..CHUNK / 8)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()
                })
                .collect();
            hashes.push(Sha256Digest::of(&chunk));
            let start = geometry.byte_range(index).unwrap().start;
            storage.write_all_at(start, &chunk).unwrap();
        }
    }
    let (manifest, _) = manifest(bytes, hashes);
    let remove_states = || {
        for name in ["bench.slm.state", "bench.slm.state.prev"] {
            let _ = fs::remove_file(dir.path().join(name));
        }
    };
    let recheck = ResumeOptions {
        recheck: true,
        ..ResumeOptions::default()
    };

    let mut group = c.benchmark_group("resume");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    // No state: every chunk is hashed and the tree built over them.
    group.bench_function(format!("recover-bare-part-{mib}MiB"), |b| {
        b.iter_batched(
            remove_states,
            |()| {
                let (download, outcome) = open(dir.path(), &manifest, &ResumeOptions::default());
                assert!(matches!(outcome, ResumeOutcome::RecoveredWhole { .. }));
                black_box(download)
            },
            BatchSize::PerIteration,
        )
    });
    // A complete state, `--recheck`: every chunk against its chunk hash.
    group.bench_function(format!("recheck-{mib}MiB"), |b| {
        b.iter(|| {
            let (download, outcome) = open(dir.path(), &manifest, &recheck);
            assert!(matches!(
                outcome,
                ResumeOutcome::Rechecked { dropped: 0, .. }
            ));
            black_box(download)
        })
    });
    group.finish();
}

criterion_group!(benches, startup, recheck);
criterion_main!(benches);
