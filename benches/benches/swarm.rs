//! Swarm throughput: whole downloads on loopback through the real QUIC path,
//! piece protocol, per-chunk proofs, the `.part` store and the final checks
//! (figures in `docs/performance.md`, "Swarm throughput").
//!
//! `cargo bench -p minimodel-benches --bench swarm`
//!
//! One 256 MiB fixture (`MINIMODEL_BENCH_SWARM_MIB` to change the size) is
//! written once per run into a temporary directory, described by a manifest
//! with the default chunk size (1 MiB from 128 MiB on, smaller below) and
//! verified into a
//! `VerifiedArtifact`. Seeders start once per case and serve every
//! iteration; each iteration downloads into a fresh directory, removed
//! afterwards (untimed). The time runs from `PartialDownload::open` to the
//! verified, renamed file with its receipt, as `minimodel fetch` does it.
//!
//! Cases:
//! - `one_seeder`: one seeder, one fetcher;
//! - `four_seeders`: four seeders, one fetcher;
//! - `capped_seeder_four_fetchers`: one seeder capped at 64 MiB/s and four
//!   fetchers that serve what they verified; each fetcher dials the seeder
//!   and the fetchers started before it. Timed until all four have the
//!   verified file; the throughput counts the four copies. The seeder alone
//!   would need four times size / 64 MiB/s; sending each chunk once, size /
//!   64 MiB/s.
//!
//! Everything runs in one process on a 2-worker tokio runtime, so the
//! seeders' and the fetchers' hashing, encryption and writes share the
//! machine's cores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use minimodel_swarm::fetch::{DownloadPlan, FetchOutcome, Fetcher, Serving};
use minimodel_swarm::node::NodeSettings;
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions};
use minimodel_swarm::seed::Seeder;
use minimodel_swarm::transport::Identity;
use minimodel_verifier::check::{VerifiedArtifact, verify_local_file};
use minimodel_verifier::hashing::hash_file;
use minimodel_verifier::manifest::{
    ChunkSection, EvidenceStatus, Manifest, PeerHintStatus, Signature, chunk_count_for,
    default_chunk_size,
};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::receipt::ReceiptSource;
use minimodel_verifier::signing::trust::judge_without_pins;
use minimodel_verifier::slm::{FixtureSpec, write_fixture};
use minimodel_verifier::{KeyId, ModelId, PublisherId, Sha256Digest};
use minimodel_wire::PeerAddr;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

/// Upload cap of the seeder in the four-fetcher case.
const CAPPED_UPLOAD: u64 = 64 << 20;
/// Fetchers in the capped case.
const SHARING_FETCHERS: usize = 4;
/// A whole download must end within this, or the benchmark fails.
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(300);

/// The artifact every case downloads.
struct Fixture {
    path: PathBuf,
    manifest: Manifest,
    verified: VerifiedArtifact,
}

fn fixture_bytes() -> u64 {
    let mib = std::env::var("MINIMODEL_BENCH_SWARM_MIB")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(256);
    mib << 20
}

/// Writes the fixture into `dir`, describes it and verifies it.
fn fixture(dir: &Path, size: u64) -> Fixture {
    let path = dir.join("bench-swarm.slm");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let info = write_fixture(&mut file, &FixtureSpec::new(size, 42)).unwrap();
    std::io::Write::flush(&mut file).unwrap();
    drop(file);
    let chunk_size = default_chunk_size(size);
    let hashes = hash_file(&path, chunk_size, &|_| {}).unwrap();
    let tree = MerkleTree::from_chunk_hashes(hashes.chunk_hashes.clone()).unwrap();
    let manifest = Manifest {
        model_id: ModelId::new("bench-swarm").unwrap(),
        display_name: "bench-swarm".to_owned(),
        publisher_id: PublisherId::new("bench").unwrap(),
        key_id: KeyId::new("unsigned").unwrap(),
        manifest_route: None,
        model_card_route: None,
        license_route: "https://example.org/license".parse().unwrap(),
        evidence_route: "https://example.org/evidence".parse().unwrap(),
        source_identity: "synthetic".to_owned(),
        takedown_route: None,
        artifact_bytes: size,
        artifact_sha256: hashes.sha256,
        quantization: info.quantization,
        model_shape: info.shape,
        tokenizer_sha256: info.tokenizer_sha256,
        tensor_layout_sha256: info.tensor_layout_sha256,
        evidence_status: EvidenceStatus::Unreviewed,
        peer_hint_status: PeerHintStatus::None,
        signature: Signature::UnsignedPlaceholderV0,
        chunks: ChunkSection {
            scheme: minimodel_verifier::manifest::ChunkScheme::FixedSize,
            chunk_size,
            chunk_count: chunk_count_for(size, chunk_size),
            merkle_root: tree.root(),
            chunk_list: None,
        },
    };
    manifest.validate().unwrap();
    let verified = verify_local_file(&manifest, &path, &|_| {}).unwrap();
    Fixture {
        path,
        manifest,
        verified,
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Seeders serving the fixture until dropped.
struct Seeders {
    addrs: Vec<PeerAddr>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Seeders {
    /// Starts `count` seeders on `runtime`.
    fn start(runtime: &Runtime, fixture: &Fixture, count: usize, max_upload: Option<u64>) -> Self {
        let _guard = runtime.enter();
        let mut addrs = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..count {
            let (reports, _) = mpsc::unbounded_channel();
            let config = NodeSettings {
                listen: Some(loopback()),
                core: minimodel_swarm::node::CoreConfig {
                    max_upload,
                    ..minimodel_swarm::node::CoreConfig::default()
                },
                ..NodeSettings::default()
            };
            let seeder = Seeder::start(
                &fixture.verified,
                &fixture.path,
                config,
                Arc::new(Identity::generate().unwrap()),
                reports,
            )
            .unwrap();
            addrs.push(seeder.peer_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            runtime.spawn(seeder.run(async move {
                let _ = stopped.await;
            }));
        }
        Self { addrs, stops }
    }
}

impl Drop for Seeders {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// Opens a fresh download in `out` and starts a fetcher on it.
fn start_fetcher(fixture: &Fixture, out: &Path, peers: Vec<PeerAddr>, serve: bool) -> Fetcher {
    let manifest_sha256 = Sha256Digest::of(b"bench manifest");
    let opened = PartialDownload::open(
        out,
        &fixture.manifest,
        manifest_sha256,
        &ResumeOptions::default(),
        &|_| {},
    )
    .unwrap();
    let OpenedDownload::Partial(partial, _) = opened else {
        panic!("a fresh directory holds no finished download");
    };
    let (reports, _) = mpsc::unbounded_channel();
    Fetcher::start(
        {
            let mut plan = DownloadPlan::new(
                fixture.manifest.clone(),
                manifest_sha256,
                judge_without_pins(&fixture.manifest).unwrap(),
                out,
            );
            plan.peers = merge_peers(peers.into_iter().map(PeerAddrs::from));
            plan.serving = serve.then(|| Serving {
                listen: loopback(),
                seed_after: true,
                port_mapping: false,
            });
            plan.core.give_up_after = Duration::from_secs(20);
            plan
        },
        Arc::new(partial),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap()
}

/// A fresh, empty download directory under `root`.
fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(outcome: &FetchOutcome, fixture: &Fixture) {
    let len = std::fs::metadata(&outcome.artifact_path).unwrap().len();
    assert_eq!(len, fixture.manifest.artifact_bytes);
    assert_eq!(
        outcome.receipt.artifact_sha256,
        fixture.manifest.artifact_sha256
    );
}

/// One fetcher downloads from `seeders`; returns the time from opening
/// the download to the delivered file.
fn one_download(runtime: &Runtime, fixture: &Fixture, seeders: &Seeders, root: &Path) -> Duration {
    let out = fresh_dir(root, "out");
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        let fetcher = start_fetcher(fixture, &out, seeders.addrs.clone(), false);
        tokio::time::timeout(DOWNLOAD_DEADLINE, fetcher.run(std::future::pending()))
            .await
            .expect("the download ends in time")
            .expect("the download succeeds")
    });
    let elapsed = started.elapsed();
    check(&outcome, fixture);
    std::fs::remove_dir_all(&out).unwrap();
    elapsed
}

/// Where the chunks of the shared downloads came from.
#[derive(Debug, Default, Clone, Copy)]
struct ChunkSources {
    from_seeder: u64,
    all: u64,
}

impl ChunkSources {
    fn add(&mut self, outcome: &FetchOutcome, seeder: &PeerAddr) {
        let ReceiptSource::Peers(summary) = &outcome.receipt.source else {
            panic!("a download receipt names its peers");
        };
        let seeder = seeder.id.to_string();
        for peer in &summary.peers {
            self.all += peer.chunks;
            if peer.peer_id == seeder {
                self.from_seeder += peer.chunks;
            }
        }
    }
}

/// `SHARING_FETCHERS` serving fetchers download from `seeder` and from
/// each other; returns the time until every one has the delivered file.
fn shared_download(
    runtime: &Runtime,
    fixture: &Fixture,
    seeder: &Seeders,
    root: &Path,
    sources: &mut ChunkSources,
) -> Duration {
    let outs: Vec<PathBuf> = (0..SHARING_FETCHERS)
        .map(|i| fresh_dir(root, &format!("out-{i}")))
        .collect();
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        let mut peers = seeder.addrs.clone();
        let mut running = Vec::new();
        let mut stops = Vec::new();
        for out in &outs {
            let fetcher = start_fetcher(fixture, out, peers.clone(), true);
            let addr = fetcher.listen_addr().expect("a serving fetcher listens");
            peers.push(PeerAddr {
                id: fetcher.peer_id(),
                addr,
            });
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            running.push(tokio::spawn(fetcher.run(async move {
                let _ = stopped.await;
            })));
        }
        // Each fetcher keeps serving after its own download (seed_after), so
        // the slower ones can finish from it; it is done once its receipt
        // and file are in place.
        let delivered: Vec<PathBuf> = outs
            .iter()
            .map(|out| out.join(format!("{}.receipt.json", fixture.manifest.model_id)))
            .collect();
        let deadline = Instant::now() + DOWNLOAD_DEADLINE;
        while !delivered.iter().all(|receipt| receipt.exists()) {
            assert!(Instant::now() < deadline, "the downloads end in time");
            for task in &running {
                assert!(!task.is_finished(), "a fetcher stopped before delivering");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        for stop in stops {
            let _ = stop.send(());
        }
        let mut outcomes = Vec::new();
        for task in running {
            outcomes.push(
                task.await
                    .expect("fetcher task")
                    .expect("download succeeds"),
            );
        }
        (elapsed, outcomes)
    });
    let (elapsed, outcomes) = outcomes;
    for outcome in &outcomes {
        check(outcome, fixture);
        sources.add(outcome, &seeder.addrs[0]);
    }
    for out in &outs {
        std::fs::remove_dir_all(out).unwrap();
    }
    elapsed
}

fn swarm(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let size = fixture_bytes();
    let fixture = fixture(dir.path(), size);
    let downloads = dir.path().join("downloads");

    let mut group = c.benchmark_group(format!("swarm_{}MiB", size >> 20));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));

    group.throughput(Throughput::Bytes(size));
    for (name, count) in [("one_seeder", 1), ("four_seeders", 4)] {
        let seeders = Seeders::start(&runtime, &fixture, count, None);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| one_download(&runtime, &fixture, &seeders, &downloads))
                    .sum()
            })
        });
    }

    group.throughput(Throughput::Bytes(size * SHARING_FETCHERS as u64));
    let seeder = Seeders::start(&runtime, &fixture, 1, Some(CAPPED_UPLOAD));
    let mut sources = ChunkSources::default();
    group.bench_function("capped_seeder_four_fetchers", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| shared_download(&runtime, &fixture, &seeder, &downloads, &mut sources))
                .sum()
        })
    });
    group.finish();
    drop(seeder);
    // How well the fetchers shared: 1.0 means the seeder sent every chunk
    // once, SHARING_FETCHERS means the fetchers took nothing from each other.
    let per_chunk = sources.from_seeder as f64 / (sources.all as f64 / SHARING_FETCHERS as f64);
    println!(
        "swarm/capped_seeder_four_fetchers: {} of {} chunks came from the seeder; \
         it sent each chunk {per_chunk:.2} times",
        sources.from_seeder, sources.all
    );
}

criterion_group!(benches, swarm);
criterion_main!(benches);
