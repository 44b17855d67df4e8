//! The fetch driver in process, where the storage under the partial
//! download can be swapped: a disk that fills up in the middle of a fetch,
//! and a chunk that changes on disk after it was verified (the start-up
//! sample turned off, so only the whole-file check can find it), and a
//! disk that records when the download releases its cached pages.

mod resume_support;

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use minimodel_swarm::fetch::{DownloadPlan, FetchError, FetchOutcome, Fetcher};
use minimodel_swarm::node::{DamageCause, NodeFailure, NodeSettings};
use minimodel_swarm::resume::{
    OpenedDownload, PartialDownload, ResumeOptions, ResumeReport, parse_state,
};
use minimodel_swarm::seed::Seeder;
use minimodel_swarm::store::{FaultyStorage, FileStorage, Storage};
use minimodel_swarm::transport::Identity;
use minimodel_verifier::check::verify_local_file;
use minimodel_verifier::receipt::ReceiptSource;
use minimodel_verifier::signing::trust::judge_without_pins;
use minimodel_wire::PeerAddr;
use tokio::sync::{mpsc, oneshot};

use resume_support::Artifact;

/// A seeder in this process, stopped when dropped.
struct InProcessSeeder {
    peer: PeerAddr,
    _stop: oneshot::Sender<()>,
}

fn seeder(artifact: &Artifact, rate: u64) -> InProcessSeeder {
    seeder_with(
        artifact,
        NodeSettings {
            core: minimodel_swarm::node::CoreConfig {
                max_upload: Some(rate),
                ..minimodel_swarm::node::CoreConfig::default()
            },
            ..NodeSettings::default()
        },
    )
}

fn seeder_with(artifact: &Artifact, config: NodeSettings) -> InProcessSeeder {
    let verified = verify_local_file(&artifact.manifest, &artifact.slm, &|_| {}).unwrap();
    let (reports, _) = mpsc::unbounded_channel();
    let seeder = Seeder::start(
        &verified,
        &artifact.slm,
        NodeSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..config
        },
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    let peer = seeder.peer_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(seeder.run(async move {
        let _ = stopped.await;
    }));
    InProcessSeeder { peer, _stop: stop }
}

/// Opens `dir` with the `.part` behind `wrap`.
fn open(
    artifact: &Artifact,
    dir: &Path,
    options: &ResumeOptions,
    wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
) -> (PartialDownload, ResumeReport) {
    let opened = PartialDownload::open_with_storage(
        dir,
        &artifact.manifest,
        artifact.manifest_sha256(),
        options,
        &|_| {},
        wrap,
    )
    .unwrap();
    match opened {
        OpenedDownload::Partial(download, report) => (download, report),
        OpenedDownload::Complete(_) => panic!("expected a partial download"),
    }
}

/// Fetches into the opened download from `seeder`.
async fn fetch(
    artifact: &Artifact,
    dir: &Path,
    download: PartialDownload,
    seeder: &InProcessSeeder,
) -> Result<FetchOutcome, FetchError> {
    let (reports, _keep) = mpsc::unbounded_channel();
    let fetcher = Fetcher::start(
        plan_giving_up_after(artifact, dir, seeder, Duration::from_secs(10)),
        Arc::new(download),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    tokio::time::timeout(resume_support::HANG, fetcher.run(std::future::pending()))
        .await
        .expect("the fetch ends")
}

fn plain(file: FileStorage) -> Arc<dyn Storage> {
    Arc::new(file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_fetch_and_the_same_fetch_resumes_once_there_is_room() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "full-disk", "8MiB", "64KiB", 51);
    let seeder = seeder(&artifact, 8 << 20);
    let dir = root.path().join("out");

    // Room for 40 chunks of the 128.
    let room = 40 * artifact.chunk_size;
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), |file| {
        Arc::new(FaultyStorage::new(file, room))
    });
    let error = fetch(&artifact, &dir, download, &seeder)
        .await
        .expect_err("the disk fills up");
    let Some(cause) = error.resume_error() else {
        panic!("not a disk error: {error:?}");
    };
    assert!(cause.is_disk_full(), "{cause}");
    assert!(
        error.to_string().contains("could not be written"),
        "{error}"
    );

    // The state on disk lists only chunks whose bytes are there, and the
    // final checkpoint kept every chunk that was written.
    let files = artifact.files(&dir);
    let state = parse_state(&std::fs::read(&files.state).unwrap()).unwrap();
    let listed: Vec<u32> = state
        .knowledge
        .verified()
        .iter_ones()
        .map(|c| c.0)
        .collect();
    let good = artifact.good_chunks(&files.part);
    assert!(!listed.is_empty() && listed.len() <= 40, "{}", listed.len());
    assert_eq!(listed, good, "listed exactly what was written");

    // Space freed: the same fetch resumes from the checkpoint.
    let (download, report) = open(&artifact, &dir, &ResumeOptions::default(), plain);
    assert_eq!(report.chunks_verified, listed.len() as u32);
    let outcome = fetch(&artifact, &dir, download, &seeder).await.unwrap();
    let ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a fetch receipt");
    };
    assert_eq!(summary.chunks_resumed, listed.len() as u64);
    assert_eq!(summary.chunks_fetched, 128 - listed.len() as u64);
    artifact.verify(root.path(), &outcome.artifact_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_changed_on_disk_is_found_by_the_whole_file_check_and_fetched_again() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "changed", "8MiB", "64KiB", 52);
    let seeder = seeder(&artifact, 64 << 20);
    let dir = root.path().join("out");
    // Half of it downloaded, then chunk 5 changes while stopped.
    artifact.partial(&dir, &(0..64).collect::<Vec<_>>(), 1);
    let files = artifact.files(&dir);
    let offset = 5 * artifact.chunk_size + 17;
    resume_support::scribble(&files.part, offset, 1, !artifact.bytes[offset as usize]);

    // No sample at start-up: chunk 5 is trusted until the end.
    let options = ResumeOptions {
        sample: 0,
        ..ResumeOptions::default()
    };
    let (download, report) = open(&artifact, &dir, &options, plain);
    assert_eq!(report.chunks_verified, 64);
    let outcome = fetch(&artifact, &dir, download, &seeder).await.unwrap();
    let ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a fetch receipt");
    };
    // The 64 missing chunks, then chunk 5 once more.
    assert_eq!(summary.chunks_fetched, 65);
    artifact.verify(root.path(), &outcome.artifact_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_that_refuses_the_session_says_why() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "refused", "1MiB", "64KiB", 53);
    let seeder = seeder_with(
        &artifact,
        NodeSettings {
            core: minimodel_swarm::node::CoreConfig {
                max_peers: 0,
                ..minimodel_swarm::node::CoreConfig::default()
            },
            ..NodeSettings::default()
        },
    );
    let dir = root.path().join("out");
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), plain);
    let error = fetch(&artifact, &dir, download, &seeder)
        .await
        .expect_err("nobody to fetch from");
    // Not "connection lost": the rejection arrives before the connection
    // closes.
    assert!(
        error
            .to_string()
            .contains("refused us (too many peers): serving the maximum of 0 peers"),
        "{error}"
    );
}

/// What the download did to its `.part`, in order.
#[derive(Debug, Clone, PartialEq)]
enum Disk {
    /// A write that has completed.
    Wrote(Range<u64>),
    /// A read about to start.
    Read(Range<u64>),
    /// A sync about to start.
    Sync,
    Release(Range<u64>),
}

/// A file that records every write, read, sync and release.
struct Recording {
    inner: FileStorage,
    log: Mutex<Vec<Disk>>,
}

impl Recording {
    fn note(&self, event: Disk) {
        self.log.lock().unwrap().push(event);
    }
}

impl Storage for Recording {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all_at(offset, bytes)?;
        self.note(Disk::Wrote(offset..offset + bytes.len() as u64));
        Ok(())
    }

    fn write_parts_at(&self, offset: u64, parts: &[Bytes]) -> io::Result<()> {
        self.inner.write_parts_at(offset, parts)?;
        let len: usize = parts.iter().map(Bytes::len).sum();
        self.note(Disk::Wrote(offset..offset + len as u64));
        Ok(())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.note(Disk::Read(offset..offset + buf.len() as u64));
        self.inner.read_exact_at(offset, buf)
    }

    fn read_bytes_at(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        self.note(Disk::Read(offset..offset + len as u64));
        self.inner.read_bytes_at(offset, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.note(Disk::Sync);
        self.inner.sync_data()
    }

    fn release_cached(&self, offset: u64, len: u64) -> io::Result<()> {
        self.note(Disk::Release(offset..offset + len));
        self.inner.release_cached(offset, len)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_pages_are_released_behind_the_hash_once_synced_and_never_read_again() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "release", "8MiB", "64KiB", 54);
    // About four seconds: the two-second checkpoint comes mid-download.
    let seeder = seeder(&artifact, 2 << 20);
    let dir = root.path().join("out");
    let recording = Arc::new(Mutex::new(None::<Arc<Recording>>));
    let keep = Arc::clone(&recording);
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), move |file| {
        let storage = Arc::new(Recording {
            inner: file,
            log: Mutex::new(Vec::new()),
        });
        *keep.lock().unwrap() = Some(Arc::clone(&storage));
        storage
    });
    let outcome = fetch(&artifact, &dir, download, &seeder).await.unwrap();
    artifact.verify(root.path(), &outcome.artifact_path);

    let storage = recording.lock().unwrap().take().unwrap();
    let log = storage.log.lock().unwrap().clone();
    let last_write = log
        .iter()
        .rposition(|event| matches!(event, Disk::Wrote(_)))
        .unwrap();
    let mut released_to = 0;
    let mut releases_before_the_end = 0;
    for (at, event) in log.iter().enumerate() {
        let Disk::Release(range) = event else {
            continue;
        };
        // The released ranges follow one another from the start, in whole
        // chunks (the file's end aside).
        assert_eq!(range.start, released_to, "{log:?}");
        assert!(
            range.end % artifact.chunk_size == 0 || range.end == artifact.bytes.len() as u64,
            "{range:?}"
        );
        released_to = range.end;
        if at < last_write {
            releases_before_the_end += 1;
        }
        // Every byte released was written before a sync that started
        // before the release.
        let last_sync = log[..at]
            .iter()
            .rposition(|event| *event == Disk::Sync)
            .expect("a sync before any release");
        let mut covered = range.start;
        while covered < range.end {
            let written = log[..last_sync].iter().any(
                |event| matches!(event, Disk::Wrote(w) if w.start <= covered && covered < w.end),
            );
            assert!(written, "byte {covered} released before it was synced");
            covered += artifact.chunk_size.min(range.end - covered);
        }
        // Nothing reads it back afterwards.
        for later in &log[at..] {
            if let Disk::Read(read) = later {
                assert!(
                    read.end <= range.start || read.start >= range.end,
                    "{read:?} read after {range:?} was released"
                );
            }
        }
    }
    assert!(
        releases_before_the_end >= 1 && released_to > 0,
        "the download released nothing while it ran: {log:?}"
    );
}

/// A `.part` that misbehaves on the writes of one chunk: writes it one
/// chunk too early (over the chunk before it) the first `misplace` times,
/// or flips a byte of it on disk right after the write the first `flip`
/// times, as a faulty disk or another program writing to the file would.
struct Treacherous {
    inner: FileStorage,
    chunk_size: u64,
    target: u64,
    misplace: std::sync::atomic::AtomicU32,
    flip: std::sync::atomic::AtomicU32,
    /// Offsets written so far, to tell whether a misplaced write landed on
    /// a chunk already written (then both are bad) or not (the victim's own
    /// write repairs it later).
    written: Mutex<std::collections::BTreeSet<u64>>,
    victim_written: Arc<std::sync::atomic::AtomicBool>,
}

impl Treacherous {
    fn new(inner: FileStorage, chunk_size: u64, target: u32, misplace: u32, flip: u32) -> Self {
        Self {
            inner,
            chunk_size,
            target: u64::from(target),
            misplace: misplace.into(),
            flip: flip.into(),
            written: Mutex::new(Default::default()),
            victim_written: Arc::default(),
        }
    }

    fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
        counter
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |left| left.checked_sub(1),
            )
            .is_ok()
    }
}

impl Storage for Treacherous {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.write_parts_at(offset, &[Bytes::copy_from_slice(bytes)])
    }

    fn write_parts_at(&self, offset: u64, parts: &[Bytes]) -> io::Result<()> {
        let ours = offset == self.target * self.chunk_size;
        if ours && Self::take(&self.misplace) {
            let victim = offset - self.chunk_size;
            let mut written = self.written.lock().unwrap();
            self.victim_written.store(
                written.contains(&victim),
                std::sync::atomic::Ordering::SeqCst,
            );
            written.insert(victim);
            return self.inner.write_parts_at(victim, parts);
        }
        self.written.lock().unwrap().insert(offset);
        self.inner.write_parts_at(offset, parts)?;
        if ours && Self::take(&self.flip) {
            let mut byte = [0u8];
            self.inner.read_exact_at(offset + 100, &mut byte)?;
            self.inner.write_all_at(offset + 100, &[!byte[0]])?;
        }
        Ok(())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

fn summary(outcome: &FetchOutcome) -> &minimodel_verifier::receipt::TransferSummary {
    let ReceiptSource::Peers(summary) = &outcome.receipt.source else {
        panic!("a fetch receipt");
    };
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_written_at_the_wrong_place_is_found_on_disk_and_fetched_again() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "misplaced", "4MiB", "64KiB", 55);
    let seeder = seeder(&artifact, 64 << 20);
    let dir = root.path().join("out");
    let chunk = artifact.chunk_size;
    // Chunk 20 lands on chunk 19's place: chunk 20 is bad on disk, and so
    // is 19 if it was written before (else its own write repairs it),
    // though each passed its proof in memory.
    let victim_written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::clone(&victim_written);
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), move |file| {
        let storage = Treacherous::new(file, chunk, 20, 1, 0);
        let storage = Treacherous {
            victim_written: seen,
            ..storage
        };
        Arc::new(storage)
    });
    let outcome = fetch(&artifact, &dir, download, &seeder).await.unwrap();
    let summary = summary(&outcome);
    let bad = 1 + u64::from(victim_written.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(summary.chunks_refetched, bad, "{summary:?}");
    assert_eq!(summary.chunks_fetched, 64 + bad);
    artifact.verify(root.path(), &outcome.artifact_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_changed_on_disk_after_its_chunk_was_verified_is_repaired_before_delivery() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "flipped", "4MiB", "64KiB", 56);
    let seeder = seeder(&artifact, 64 << 20);
    let dir = root.path().join("out");
    let chunk = artifact.chunk_size;
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), |file| {
        Arc::new(Treacherous::new(file, chunk, 33, 0, 1))
    });
    let outcome = fetch(&artifact, &dir, download, &seeder).await.unwrap();
    let summary = summary(&outcome);
    assert_eq!(summary.chunks_refetched, 1, "{summary:?}");
    assert_eq!(summary.chunks_fetched, 64 + 1);
    artifact.verify(root.path(), &outcome.artifact_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_keeps_damaging_a_chunk_ends_the_fetch_undelivered() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "rotten", "4MiB", "64KiB", 57);
    let seeder = seeder(&artifact, 64 << 20);
    let dir = root.path().join("out");
    let chunk = artifact.chunk_size;
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), |file| {
        Arc::new(Treacherous::new(file, chunk, 7, 0, u32::MAX))
    });
    let error = fetch(&artifact, &dir, download, &seeder)
        .await
        .expect_err("chunk 7 is damaged every time it is written");
    let FetchError::Failed(NodeFailure::Damaged { bad, cause }) = &error else {
        panic!("not a damage error: {error:?}");
    };
    assert_eq!(*bad, 1);
    assert!(
        matches!(cause, DamageCause::Repeated { chunk: 7, .. }),
        "{cause}"
    );
    let files = artifact.files(&dir);
    assert!(!files.artifact.exists(), "nothing is delivered");
    assert!(!files.receipt.exists());
    // Every other chunk is kept for the next run.
    let mut listed = files.persisted();
    listed.sort_unstable();
    let expected: Vec<u32> = (0..64).filter(|&c| c != 7).collect();
    assert_eq!(listed, expected);
}

/// A `.part` that flips a byte of the last chunk written right after it is
/// written (before the trailing hasher reads it), and holds the hasher's
/// first read of the file's last chunk until the test says go: by then every
/// chunk is verified, and the test can take the only seeder away before the
/// damage is found.
struct LateDamage {
    inner: FileStorage,
    chunk_size: u64,
    flipped: Arc<std::sync::atomic::AtomicU64>,
    last: u64,
    writes_left: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicBool,
    reading_last: std::sync::mpsc::Sender<()>,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Storage for LateDamage {
    fn write_all_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all_at(offset, bytes)
    }

    fn write_parts_at(&self, offset: u64, parts: &[Bytes]) -> io::Result<()> {
        self.inner.write_parts_at(offset, parts)?;
        let left = self
            .writes_left
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if left == 1 {
            self.flipped.store(
                offset / self.chunk_size,
                std::sync::atomic::Ordering::SeqCst,
            );
            let at = offset + 100;
            let mut byte = [0u8];
            self.inner.read_exact_at(at, &mut byte)?;
            self.inner.write_all_at(at, &[!byte[0]])?;
        }
        Ok(())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset == self.last * self.chunk_size
            && !self.held.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let _ = self.reading_last.send(());
            let _ = self.go.lock().unwrap().recv();
        }
        self.inner.read_exact_at(offset, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_peer_is_left_to_repair_a_damaged_chunk_the_fetch_says_so() {
    let root = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(root.path(), "art", "orphan", "4MiB", "64KiB", 58);
    let dir = root.path().join("out");
    let chunk = artifact.chunk_size;
    let (reading_last, last_read) = std::sync::mpsc::channel();
    let (go, wait_go) = std::sync::mpsc::channel();
    let flipped = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let flipped_by = Arc::clone(&flipped);
    let (download, _) = open(&artifact, &dir, &ResumeOptions::default(), move |file| {
        Arc::new(LateDamage {
            inner: file,
            chunk_size: chunk,
            flipped: flipped_by,
            last: 63,
            writes_left: 64.into(),
            held: false.into(),
            reading_last,
            go: Mutex::new(wait_go),
        })
    });
    let seeder = seeder(&artifact, 64 << 20);
    let seeder_port = seeder.peer.addr.port();
    let (reports, _keep) = mpsc::unbounded_channel();
    let fetcher = Fetcher::start(
        plan_giving_up_after(&artifact, &dir, &seeder, Duration::from_secs(2)),
        Arc::new(download),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    let run = tokio::spawn(fetcher.run(std::future::pending()));
    // Every chunk is verified and the last one written was damaged: take the
    // only seeder away (its port is free once it is gone), then let the
    // whole-file hash go on.
    tokio::task::spawn_blocking(move || last_read.recv_timeout(resume_support::HANG))
        .await
        .unwrap()
        .expect("the last chunk is read back");
    drop(seeder);
    let deadline = std::time::Instant::now() + resume_support::HANG;
    while std::net::UdpSocket::bind(("127.0.0.1", seeder_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the seeder does not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    go.send(()).unwrap();
    let error = tokio::time::timeout(resume_support::HANG, run)
        .await
        .expect("the fetch ends")
        .unwrap()
        .expect_err("nobody can repair the damaged chunk");
    assert!(
        matches!(
            error,
            FetchError::Failed(NodeFailure::Damaged { bad: 1, .. })
        ),
        "{error:?}"
    );
    let files = artifact.files(&dir);
    assert!(!files.artifact.exists(), "nothing is delivered");
    let mut listed = files.persisted();
    listed.sort_unstable();
    let flipped = flipped.load(std::sync::atomic::Ordering::SeqCst) as u32;
    let expected: Vec<u32> = (0..64).filter(|&c| c != flipped).collect();
    assert_eq!(listed, expected, "the good chunks are kept");
}

/// A download of `artifact` into `dir` from `seeder` with default
/// settings but for how long it goes on without progress.
fn plan_giving_up_after(
    artifact: &Artifact,
    dir: &Path,
    seeder: &InProcessSeeder,
    limit: Duration,
) -> DownloadPlan {
    let mut plan = DownloadPlan::new(
        artifact.manifest.clone(),
        artifact.manifest_sha256(),
        judge_without_pins(&artifact.manifest).unwrap(),
        dir,
    );
    plan.peers = vec![seeder.peer.into()];
    plan.core.give_up_after = limit;
    plan
}
