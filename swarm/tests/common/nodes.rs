//! Honest seeders and fetchers in the test process, and what they report.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::download::DownloadConfig;
use minimodel_swarm::fetch::{DownloadPlan, FetchError, FetchOutcome, Fetcher};
use minimodel_swarm::node::{NodeReport, NodeSettings};
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_swarm::resume::{OpenedDownload, PartialDownload, ResumeOptions};
use minimodel_swarm::seed::Seeder;
use minimodel_swarm::transport::Identity;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::receipt::{ReceiptSource, TransferSummary};
use minimodel_verifier::signing::trust::judge_without_pins;
use minimodel_wire::PeerAddr;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Artifact;

/// A node config that listens on 127.0.0.1, port picked by the system.
pub fn listen_config() -> NodeSettings {
    NodeSettings {
        listen: Some("127.0.0.1:0".parse().expect("an address")),
        ..NodeSettings::default()
    }
}

/// A seeder running in the background; stopped when dropped.
pub struct RunningSeeder {
    pub peer: PeerAddr,
    reports: mpsc::UnboundedReceiver<NodeReport>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), FetchError>>>,
}

impl RunningSeeder {
    pub fn start(artifact: &Artifact, config: NodeSettings) -> Self {
        let (reports, inbox) = mpsc::unbounded_channel();
        let seeder = Seeder::start(
            &artifact.verified,
            &artifact.path,
            config,
            Arc::new(Identity::generate().expect("a key")),
            reports,
        )
        .expect("the seeder starts");
        let peer = seeder.peer_addr().expect("it listens");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(seeder.run(async move {
            let _ = stopped.await;
        }));
        Self {
            peer,
            reports: inbox,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether the seeder task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Takes its reports for a task of its own: `reports` and `wait_for`
    /// see none after.
    pub fn take_reports(&mut self) -> mpsc::UnboundedReceiver<NodeReport> {
        std::mem::replace(&mut self.reports, mpsc::unbounded_channel().1)
    }

    /// What it reported so far.
    pub fn reports(&mut self) -> Vec<NodeReport> {
        let mut all = Vec::new();
        while let Ok(report) = self.reports.try_recv() {
            all.push(report);
        }
        all
    }

    /// Waits up to `wait` for a report that `matches`; returns it.
    pub async fn wait_for(
        &mut self,
        wait: Duration,
        mut matches: impl FnMut(&NodeReport) -> bool,
    ) -> Option<NodeReport> {
        tokio::time::timeout(wait, async {
            while let Some(report) = self.reports.recv().await {
                if matches(&report) {
                    return Some(report);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Stops it and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for RunningSeeder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Opens (or resumes) the partial download of `artifact` in `out`.
pub fn open_partial(artifact: &Artifact, out: &Path) -> Arc<PartialDownload> {
    let opened = PartialDownload::open(
        out,
        &artifact.manifest,
        Sha256Digest::of(b"manifest"),
        &ResumeOptions::default(),
        &|_| {},
    )
    .expect("open the partial download");
    let OpenedDownload::Partial(partial, _) = opened else {
        panic!("the download is not complete yet");
    };
    Arc::new(partial)
}

/// A download of `artifact` into `out` from `peers` with short timeouts,
/// so a test that has to wait for one ends in seconds.
pub fn fetch_plan(artifact: &Artifact, out: &Path, peers: Vec<PeerAddr>) -> DownloadPlan {
    let mut plan = DownloadPlan::new(
        artifact.manifest.clone(),
        Sha256Digest::of(b"manifest"),
        judge_without_pins(&artifact.manifest).unwrap(),
        out,
    );
    plan.peers = peers_of(peers);
    plan.core = minimodel_swarm::node::CoreConfig {
        handshake_timeout: Duration::from_secs(3),
        download: DownloadConfig {
            min_request_timeout: Duration::from_secs(2),
            silence_timeout: Duration::from_secs(3),
            ..DownloadConfig::default()
        },
        give_up_after: Duration::from_secs(10),
        ..minimodel_swarm::node::CoreConfig::default()
    };
    plan
}

/// `peers` as a plan names them: one entry per peer id, with every
/// address given for it.
pub fn peers_of(peers: Vec<PeerAddr>) -> Vec<PeerAddrs> {
    merge_peers(peers.into_iter().map(PeerAddrs::from))
}

/// What a finished fetch gave.
pub struct FetchRun {
    pub result: Result<FetchOutcome, FetchError>,
    pub reports: Vec<NodeReport>,
}

impl FetchRun {
    /// The outcome; panics with the reports if the fetch failed.
    pub fn outcome(&self) -> &FetchOutcome {
        match &self.result {
            Ok(outcome) => outcome,
            Err(error) => panic!("fetch failed: {error}\nreports: {:#?}", self.reports),
        }
    }

    /// The receipt's transfer summary.
    pub fn summary(&self) -> &TransferSummary {
        match &self.outcome().receipt.source {
            ReceiptSource::Peers(summary) => summary,
            other => panic!("a download receipt names its peers, not {other:?}"),
        }
    }

    /// Whether any report says `peer` was banned.
    pub fn banned(&self, peer: &PeerAddr) -> bool {
        self.reports
            .iter()
            .any(|r| matches!(r, NodeReport::Banned { peer: id, .. } if *id == peer.id))
    }

    /// Why `peer` disconnected, as reported.
    pub fn disconnects(&self, peer: &PeerAddr) -> Vec<String> {
        self.reports
            .iter()
            .filter_map(|r| match r {
                NodeReport::PeerDisconnected {
                    peer: id, reason, ..
                } if *id == peer.id => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Why connecting to `peer` failed, as reported.
    pub fn refusals(&self, peer: &PeerAddr) -> Vec<String> {
        self.reports
            .iter()
            .filter_map(|r| match r {
                NodeReport::Refused { addr, reason } if *addr == peer.addr => {
                    Some(reason.to_string())
                }
                _ => None,
            })
            .collect()
    }
}

/// Runs a fetch to its end (a hang fails after [`super::HANG`]).
pub async fn fetch(plan: DownloadPlan, partial: Arc<PartialDownload>) -> FetchRun {
    fetch_until(plan, partial, std::future::pending()).await
}

/// Runs a fetch until it ends or `stop` resolves (a hang fails after
/// [`super::HANG`]).
pub async fn fetch_until(
    plan: DownloadPlan,
    partial: Arc<PartialDownload>,
    stop: impl std::future::Future<Output = ()>,
) -> FetchRun {
    let (reports, mut inbox) = mpsc::unbounded_channel();
    let fetcher = Fetcher::start(
        plan,
        partial,
        Arc::new(Identity::generate().expect("a key")),
        reports,
    )
    .expect("the fetcher starts");
    let result = tokio::time::timeout(super::HANG, fetcher.run(stop))
        .await
        .expect("the fetch ends");
    let mut all = Vec::new();
    while let Ok(report) = inbox.try_recv() {
        all.push(report);
    }
    FetchRun {
        result,
        reports: all,
    }
}

/// Fetches `artifact` from `peers` into a fresh `out` and checks the result
/// against the manifest.
pub async fn fetch_and_verify(
    artifact: &Artifact,
    out: &Path,
    peers: Vec<PeerAddr>,
    tweak: impl FnOnce(&mut DownloadPlan),
) -> FetchRun {
    let mut plan = fetch_plan(artifact, out, peers);
    tweak(&mut plan);
    let run = fetch(plan, open_partial(artifact, out)).await;
    let bytes = std::fs::read(&run.outcome().artifact_path).expect("read the result");
    assert_eq!(
        Sha256Digest::of(&bytes),
        artifact.manifest.artifact_sha256,
        "the delivered file is the artifact"
    );
    run
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
pub fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the field is there")
}
