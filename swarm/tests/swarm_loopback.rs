//! Seeders and a fetcher in one process on loopback, through real QUIC.

mod common;

use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::fetch::{DownloadPlan, Fetcher};
use minimodel_swarm::node::{MetricsHandle, NodeReport, NodeSettings};
use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions};
use minimodel_swarm::transport::Identity;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::signing::trust::judge_without_pins;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use minimodel_swarm::store::Storage;
use tokio::sync::mpsc;

fn listen_config() -> NodeSettings {
    NodeSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeSettings::default()
    }
}

/// A `.part` whose chunk writes wait until `open` is set: the fetch
/// receives and holds its chunks meanwhile (up to its in-flight cap) but
/// can store, and so finish, none.
struct GatedWrites {
    inner: Arc<dyn Storage>,
    open: Arc<AtomicBool>,
}

impl GatedWrites {
    fn gated<T>(&self, write: impl FnOnce() -> T) -> T {
        common::eventually_blocking("the gate to open", || self.open.load(Ordering::SeqCst));
        write()
    }
}

impl Storage for GatedWrites {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.gated(|| self.inner.write_all_at(offset, bytes))
    }
    fn write_parts_at(&self, offset: u64, parts: &[bytes::Bytes]) -> std::io::Result<()> {
        self.gated(|| self.inner.write_parts_at(offset, parts))
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
}

/// Three seeders, and a fetch that stores nothing until all three are
/// connected: it holds at most its in-flight cap (16 MiB of the 64) from
/// whichever came first, so every seeder is asked for a share, however
/// late a loaded machine brings its link up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_seeders_each_deliver_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), "three-seeders", 64 << 20, 256 << 10);
    let mut seeders = Vec::new();
    for _ in 0..3 {
        seeders.push(common::nodes::RunningSeeder::start(
            &artifact,
            listen_config(),
        ));
    }
    let peers = seeders.iter().map(|seeder| seeder.peer).collect();
    let out = dir.path().join("out");
    let open = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&open);
    let manifest_sha256 = Sha256Digest::of(b"manifest");
    let opened = PartialDownload::open_with_storage(
        &out,
        &artifact.manifest,
        manifest_sha256,
        &ResumeOptions::default(),
        &|_| {},
        |file| {
            Arc::new(GatedWrites {
                inner: Arc::new(file),
                open: gate,
            })
        },
    )
    .unwrap();
    let OpenedDownload::Partial(partial, _) = opened else {
        panic!("nothing was downloaded yet");
    };
    let (reports, mut inbox) = mpsc::unbounded_channel();
    let fetcher = Fetcher::start(
        {
            let mut plan = DownloadPlan::new(
                artifact.manifest.clone(),
                manifest_sha256,
                judge_without_pins(&artifact.manifest).unwrap(),
                &out,
            );
            plan.peers = common::nodes::peers_of(peers);
            plan.core.give_up_after = common::HANG;
            plan
        },
        Arc::new(partial),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    // The gate opens once the fetch reports every seeder connected.
    let watcher = tokio::spawn(async move {
        let mut connected = std::collections::BTreeSet::new();
        while let Some(report) = inbox.recv().await {
            if let NodeReport::PeerConnected { peer, .. } = report {
                connected.insert(peer);
                if connected.len() == 3 {
                    open.store(true, Ordering::SeqCst);
                }
            }
        }
    });
    let outcome = tokio::time::timeout(common::HANG, fetcher.run(std::future::pending()))
        .await
        .expect("the fetch ends")
        .expect("fetch succeeds");
    watcher.abort();
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
}

/// Fetches `size` bytes in `chunk`-byte chunks from a local seeder into a
/// `.part` on the storage `wrap` makes of the file, with `tweak` applied to
/// the fetch's config, until the future `stop` makes of the fetch's
/// metrics ends. Returns what the fetch reported (with the directory,
/// kept alive).
async fn fetch_through<F: std::future::Future<Output = ()>>(
    name: &str,
    (size, chunk): (u64, u32),
    wrap: impl FnOnce(minimodel_swarm::store::FileStorage) -> Arc<dyn Storage>,
    tweak: impl FnOnce(&mut DownloadPlan),
    stop: impl FnOnce(MetricsHandle, mpsc::UnboundedReceiver<NodeReport>) -> F,
) -> (
    Result<minimodel_swarm::fetch::FetchOutcome, minimodel_swarm::fetch::FetchError>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), name, size, chunk);
    let mut seeder = common::nodes::RunningSeeder::start(&artifact, common::nodes::listen_config());
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
    let mut plan = common::nodes::fetch_plan(&artifact, &out, vec![seeder.peer]);
    tweak(&mut plan);
    let (reports, _inbox) = mpsc::unbounded_channel();
    let fetcher = Fetcher::start(
        plan,
        Arc::new(partial),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    let stop = stop(fetcher.metrics(), seeder.take_reports());
    let outcome = tokio::time::timeout(common::HANG, fetcher.run(stop))
        .await
        .expect("the fetch ends");
    drop(seeder);
    (outcome, dir)
}

/// A `.part` whose syncs wait for the test: it sees each sync begin and
/// lets it go on (all of them, from then on) when it chooses.
#[derive(Default)]
struct HeldSyncs {
    /// Set once the download is open: syncs before are not held.
    armed: AtomicBool,
    begun: AtomicUsize,
    released: AtomicBool,
}

struct HoldingSyncs {
    inner: minimodel_swarm::store::FileStorage,
    held: Arc<HeldSyncs>,
}

impl Storage for HoldingSyncs {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all_at(offset, bytes)
    }
    fn write_parts_at(&self, offset: u64, parts: &[bytes::Bytes]) -> std::io::Result<()> {
        self.inner.write_parts_at(offset, parts)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if !self.held.armed.load(Ordering::SeqCst) {
            return self.inner.sync_data();
        }
        self.held.begun.fetch_add(1, Ordering::SeqCst);
        common::eventually_blocking("the test to let the sync go", || {
            self.held.released.load(Ordering::SeqCst)
        });
        self.inner.sync_data()
    }
}

/// Fetches a 1 MiB artifact (256 KiB chunks) from a local seeder into a
/// `.part` whose syncs wait for the test, with `checkpoint_bytes` when
/// given (and no checkpoint by the clock), and stops the fetch once a sync
/// waits and the node has verified every chunk (its metrics answer after
/// the verifications reported before the question). The sync is held
/// `HOLD` more, then let go in the same step as the stop: the node takes
/// the stop while the sync still runs. Returns what the fetch reported and
/// how long the sync was held after the last chunk was verified at least
/// (with the directory, kept alive).
async fn stopped_while_a_sync_waits(
    name: &str,
    checkpoint_bytes: Option<u64>,
) -> (
    Result<minimodel_swarm::fetch::FetchOutcome, minimodel_swarm::fetch::FetchError>,
    Duration,
    tempfile::TempDir,
) {
    const HOLD: Duration = Duration::from_millis(200);
    let held = Arc::new(HeldSyncs::default());
    let holding = Arc::clone(&held);
    let watched = Arc::clone(&held);
    let arming = Arc::clone(&held);
    let waited = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let noted = Arc::clone(&waited);
    let (outcome, dir) = fetch_through(
        name,
        (1 << 20, 256 << 10),
        move |file| {
            Arc::new(HoldingSyncs {
                inner: file,
                held: holding,
            })
        },
        move |plan| {
            arming.armed.store(true, Ordering::SeqCst);
            plan.core.checkpoint_every = Duration::from_secs(3600);
            if let Some(bytes) = checkpoint_bytes {
                plan.core.checkpoint_bytes = bytes;
            }
        },
        move |metrics, _| async move {
            common::eventually("a sync", || watched.begun.load(Ordering::SeqCst) > 0).await;
            loop {
                let now = metrics.snapshot().await.expect("the fetch runs");
                if now.verified_bytes == now.artifact_bytes {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let all_verified = std::time::Instant::now();
            tokio::time::sleep(HOLD).await;
            *noted.lock().unwrap() = all_verified.elapsed();
            watched.released.store(true, Ordering::SeqCst);
        },
    )
    .await;
    let waited = *waited.lock().unwrap();
    assert!(waited >= HOLD, "the stop came");
    assert!(held.begun.load(Ordering::SeqCst) >= 1, "a sync was held");
    (outcome, waited, dir)
}

/// A stop that comes while the last checkpoint runs, before the final
/// checks (the first chunk starts a checkpoint whose sync is held; the
/// other three are verified while it waits, so the delivery waits for it),
/// waits for the delivery too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_last_checkpoint_runs_reports_the_delivery() {
    let (outcome, held, _dir) = stopped_while_a_sync_waits("synced", Some(256 << 10)).await;
    let outcome = outcome.expect("the delivered download, not an interruption");
    assert!(outcome.artifact_path.exists() && outcome.receipt_path.exists());
    // The receipt counts the wait for the checkpoint and the final sync:
    // at least what the test held it after the last chunk was verified.
    let minimodel_verifier::receipt::ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a download receipt");
    };
    assert!(
        summary.finish_ms >= held.as_millis() as u64,
        "finish_ms {} while the checkpoint was held {held:?}",
        summary.finish_ms
    );
}

/// A stop that comes while the final checks run (here: the last sync of
/// the `.part`, the only one, since no checkpoint is due) waits for them:
/// the fetch reports the delivered file that is on disk, not an
/// interruption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_final_checks_reports_the_delivery() {
    let (outcome, held, _dir) = stopped_while_a_sync_waits("last", None).await;
    let outcome = outcome.expect("the delivered download, not an interruption");
    assert!(outcome.artifact_path.exists() && outcome.receipt_path.exists());
    let minimodel_verifier::receipt::ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a download receipt");
    };
    assert!(summary.finish_ms >= held.as_millis() as u64);
}

/// A storage that counts how many chunk writes run at once. Each write
/// waits until `jobs` of them ran at once (so the count reaches what the
/// node should allow, however the chunks arrive), then until the test
/// lets them all go: it does once the seeder has sent more chunks than
/// `jobs`, which then wait at the fetch for a verification slot, so a
/// node that ran more verifications at once would have begun one more
/// write.
struct CountingWrites {
    inner: Arc<dyn Storage>,
    jobs: usize,
    now: AtomicUsize,
    most: Arc<AtomicUsize>,
    go: Arc<AtomicBool>,
}

impl CountingWrites {
    fn counted<T>(&self, write: impl FnOnce() -> T) -> T {
        let at_once = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(at_once, Ordering::SeqCst);
        common::eventually_blocking("as many writes at once as the node runs jobs", || {
            self.most.load(Ordering::SeqCst) >= self.jobs || self.go.load(Ordering::SeqCst)
        });
        common::eventually_blocking("the test to let the writes go", || {
            self.go.load(Ordering::SeqCst)
        });
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
/// writes that ran at once.
async fn writes_at_once(name: &str, verify_jobs: usize) -> usize {
    const CHUNK: u32 = 64 << 10;
    let most = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let (counting, going) = (Arc::clone(&most), Arc::clone(&go));
    let (watched, letting) = (Arc::clone(&most), Arc::clone(&go));
    let (outcome, _dir) = fetch_through(
        name,
        (2 << 20, CHUNK),
        move |file| {
            Arc::new(CountingWrites {
                inner: Arc::new(file),
                jobs: verify_jobs,
                now: AtomicUsize::new(0),
                most: counting,
                go: going,
            })
        },
        |plan| {
            plan.core.verify_jobs = verify_jobs;
            let download = &mut plan.core.download;
            download.initial_pipeline = 8;
            download.min_pipeline = 8;
        },
        move |_, mut seeder_reports| async move {
            common::eventually("the first writes", || {
                watched.load(Ordering::SeqCst) >= verify_jobs
            })
            .await;
            let more = (verify_jobs as u64 + 1) * u64::from(CHUNK);
            while let Some(report) = seeder_reports.recv().await {
                if matches!(report, NodeReport::Serving { uploaded_bytes, .. } if uploaded_bytes >= more)
                {
                    break;
                }
            }
            letting.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        },
    )
    .await;
    assert!(go.load(Ordering::SeqCst));
    assert!(outcome.expect("delivered").artifact_path.exists());
    most.load(Ordering::SeqCst)
}

/// The node runs as many verifications (each ending in its chunk's write)
/// at once as its config's `verify_jobs` says: with 1, never two writes at
/// once while more chunks wait; with 3, three, and never four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_at_once_follow_the_config() {
    assert_eq!(writes_at_once("one-job", 1).await, 1);
    assert_eq!(writes_at_once("three-jobs", 3).await, 3);
}
