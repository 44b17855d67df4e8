//! Seeders and a fetcher in one process on loopback, through real QUIC.

mod common;

use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::fetch::{FetchConfig, Fetcher};
use minimodel_swarm::node::NodeSettings;
use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions};
use minimodel_swarm::seed::Seeder;
use minimodel_swarm::transport::Identity;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::signing::trust::judge_without_pins;
use std::sync::atomic::{AtomicUsize, Ordering};

use minimodel_swarm::store::Storage;
use tokio::sync::{mpsc, oneshot};

fn listen_config() -> NodeSettings {
    NodeSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_seeders_each_deliver_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), "three-seeders", 64 << 20, 256 << 10);
    let mut stops = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let (reports, _) = mpsc::unbounded_channel();
        // Capped so that the download takes about a second: every seeder is
        // connected long before it ends, however busy the machine is.
        let config = NodeSettings {
            core: minimodel_swarm::node::CoreConfig {
                max_upload: Some(24 << 20),
                ..minimodel_swarm::node::CoreConfig::default()
            },
            ..listen_config()
        };
        let seeder = Seeder::start(
            &artifact.verified,
            &artifact.path,
            config,
            Arc::new(Identity::generate().unwrap()),
            reports,
        )
        .unwrap();
        peers.push(seeder.peer_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(seeder.run(async move {
            let _ = stopped.await;
        }));
    }
    let out = dir.path().join("out");
    let (reports, _keep) = mpsc::unbounded_channel();
    let manifest_sha256 = Sha256Digest::of(b"manifest");
    let opened = PartialDownload::open(
        &out,
        &artifact.manifest,
        manifest_sha256,
        &ResumeOptions::default(),
        &|_| {},
    )
    .unwrap();
    let OpenedDownload::Partial(partial, _) = opened else {
        panic!("nothing was downloaded yet");
    };
    let fetcher = Fetcher::start(
        FetchConfig {
            manifest: artifact.manifest.clone(),
            manifest_sha256,
            signature: judge_without_pins(&artifact.manifest).unwrap(),
            out_dir: out.clone(),
            peers,
            serve: false,
            seed_after: false,
            node: giving_up_after(Duration::from_secs(10)),
            dht: None,
            mirrors: None,
        },
        Arc::new(partial),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    let outcome =
        tokio::time::timeout(Duration::from_secs(60), fetcher.run(std::future::pending()))
            .await
            .expect("finishes in time")
            .expect("fetch succeeds");
    let fetched = std::fs::read(&outcome.artifact_path).unwrap();
    assert_eq!(
        Sha256Digest::of(&fetched),
        artifact.manifest.artifact_sha256
    );
    let minimodel_verifier::receipt::ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a download receipt names its peers");
    };
    assert_eq!(summary.chunks_fetched, 256);
    assert_eq!(summary.peers.len(), 3);
    for peer in &summary.peers {
        assert!(
            peer.chunks > 0,
            "every seeder delivers a share: {summary:?}"
        );
    }
    assert!(outcome.receipt_path.exists());
    assert!(!out.join("three-seeders.slm.part").exists());
    for stop in stops {
        let _ = stop.send(());
    }
}

/// Fetches `size` bytes in `chunk`-byte chunks from a local seeder into a
/// `.part` on the storage `wrap` makes of the file, with `tweak` applied to
/// the fetch's config, until `stop`. Returns what the fetch reported (with
/// the directory, kept alive).
async fn fetch_through(
    name: &str,
    (size, chunk): (u64, u32),
    wrap: impl FnOnce(minimodel_swarm::store::FileStorage) -> Arc<dyn Storage>,
    tweak: impl FnOnce(&mut FetchConfig),
    stop: impl std::future::Future<Output = ()>,
) -> (
    Result<minimodel_swarm::fetch::FetchOutcome, minimodel_swarm::fetch::FetchError>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), name, size, chunk);
    let seeder = common::nodes::RunningSeeder::start(&artifact, common::nodes::listen_config());
    let out = dir.path().join("out");
    let opened = PartialDownload::open_with_storage(
        &out,
        &artifact.manifest,
        Sha256Digest::of(b"manifest"),
        &ResumeOptions::default(),
        &|_| {},
        wrap,
    )
    .unwrap();
    let OpenedDownload::Partial(partial, _) = opened else {
        panic!("a new download");
    };
    let mut config = common::nodes::fetch_config(&artifact, &out, vec![seeder.peer]);
    tweak(&mut config);
    let (reports, _inbox) = mpsc::unbounded_channel();
    let fetcher = Fetcher::start(
        config,
        Arc::new(partial),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    let outcome = fetcher.run(stop).await;
    drop(seeder);
    (outcome, dir)
}

/// Fetches a 1 MiB artifact (256 KiB chunks) from a local seeder into a
/// `.part` whose every sync takes 2 s, with `checkpoint_bytes` when given,
/// and stops the fetch after 1 s. Returns what the fetch reported and
/// whether the stop had fired by then (with the directory, kept alive).
async fn stopped_after_a_second_with_slow_syncs(
    name: &str,
    checkpoint_bytes: Option<u64>,
) -> (
    Result<minimodel_swarm::fetch::FetchOutcome, minimodel_swarm::fetch::FetchError>,
    bool,
    tempfile::TempDir,
) {
    use minimodel_swarm::store::SlowStorage;
    use std::sync::atomic::{AtomicBool, Ordering};

    let fired = Arc::new(AtomicBool::new(false));
    let stop = {
        let fired = Arc::clone(&fired);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            fired.store(true, Ordering::SeqCst);
        }
    };
    let (outcome, dir) = fetch_through(
        name,
        (1 << 20, 256 << 10),
        |file| {
            Arc::new(SlowStorage::new(file, Duration::ZERO).with_sync_delay(Duration::from_secs(2)))
        },
        |config| {
            if let Some(bytes) = checkpoint_bytes {
                config.node.core.checkpoint_bytes = bytes;
            }
        },
        stop,
    )
    .await;
    (outcome, fired.load(Ordering::SeqCst), dir)
}

/// A stop that comes while the last checkpoint runs, before the final
/// checks (the first chunk starts a checkpoint whose sync takes 2 s; the
/// other three arrive while it runs, so the delivery waits for it), waits
/// for the delivery too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_last_checkpoint_runs_reports_the_delivery() {
    let (outcome, fired, _dir) =
        stopped_after_a_second_with_slow_syncs("synced", Some(256 << 10)).await;
    assert!(fired, "the stop came first");
    let outcome = outcome.expect("the delivered download, not an interruption");
    assert!(outcome.artifact_path.exists() && outcome.receipt_path.exists());
    // The receipt counts the wait for the checkpoint and the final sync.
    let minimodel_verifier::receipt::ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a download receipt");
    };
    assert!(
        summary.finish_ms >= 2_000,
        "finish_ms {}",
        summary.finish_ms
    );
}

/// A stop that comes while the final checks run (here: the last sync of the
/// `.part` takes 2 s) waits for them: the fetch reports the delivered file
/// that is on disk, not an interruption. 1 MiB from a local seeder arrives
/// well within the first second, so the stop lands in the final checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_final_checks_reports_the_delivery() {
    let (outcome, fired, _dir) = stopped_after_a_second_with_slow_syncs("last", None).await;
    assert!(fired, "the stop came first");
    let outcome = outcome.expect("the delivered download, not an interruption");
    assert!(outcome.artifact_path.exists() && outcome.receipt_path.exists());
}

/// Default settings but for how long a fetch goes on without progress.
fn giving_up_after(limit: Duration) -> NodeSettings {
    let mut node = NodeSettings::default();
    node.core.give_up_after = limit;
    node
}

/// A storage that counts how many chunk writes run at once. Until `target`
/// ran at once, and for at most 1 s from the first write, each write waits
/// for the others to come, so that the count reaches what the node allows
/// however the chunks arrive.
struct CountingWrites {
    inner: Arc<dyn Storage>,
    target: usize,
    first: std::sync::OnceLock<std::time::Instant>,
    now: AtomicUsize,
    most: Arc<AtomicUsize>,
}

impl CountingWrites {
    fn counted<T>(&self, write: impl FnOnce() -> T) -> T {
        let at_once = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(at_once, Ordering::SeqCst);
        let deadline = *self.first.get_or_init(std::time::Instant::now) + Duration::from_secs(1);
        while self.most.load(Ordering::SeqCst) < self.target && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let done = write();
        self.now.fetch_sub(1, Ordering::SeqCst);
        done
    }
}

impl Storage for CountingWrites {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.counted(|| self.inner.write_all_at(offset, bytes))
    }
    fn write_parts_at(&self, offset: u64, parts: &[bytes::Bytes]) -> std::io::Result<()> {
        self.counted(|| self.inner.write_parts_at(offset, parts))
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
}

/// Fetches 2 MiB in 64 KiB chunks from a local seeder with `verify_jobs`
/// verifications at once and 8 requests in flight or more; the most chunk
/// writes that ran at once (waiting for `target` of them).
async fn writes_at_once(name: &str, verify_jobs: usize, target: usize) -> usize {
    let most = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&most);
    let (outcome, _dir) = fetch_through(
        name,
        (2 << 20, 64 << 10),
        |file| {
            Arc::new(CountingWrites {
                inner: Arc::new(file),
                target,
                first: std::sync::OnceLock::new(),
                now: AtomicUsize::new(0),
                most: counting,
            })
        },
        |config| {
            config.node.core.verify_jobs = verify_jobs;
            let download = &mut config.node.core.download;
            download.initial_pipeline = 8;
            download.min_pipeline = 8;
        },
        std::future::pending(),
    )
    .await;
    assert!(outcome.expect("delivered").artifact_path.exists());
    most.load(Ordering::SeqCst)
}

/// The node runs as many verifications (each ending in its chunk's write)
/// at once as its config's `verify_jobs` says: with 1, never two writes at
/// once though more were waited for; with 3, three, and never four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_at_once_follow_the_config() {
    assert_eq!(writes_at_once("one-job", 1, 2).await, 1);
    assert_eq!(writes_at_once("three-jobs", 3, 4).await, 3);
}
