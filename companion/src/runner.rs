//! The seam between the companion and the swarm: run this share or this
//! download, report its progress, stop it. Nothing else in the companion
//! starts a node.
//!
//! Each item runs its own node (a [`minimodel_swarm::seed::Seeder`] or
//! [`minimodel_swarm::fetch::Fetcher`], made by the use cases of
//! [`minimodel_swarm::app`]), every one on the companion's one QUIC
//! endpoint ([`SharedEndpoint`]): one identity, one port, and the
//! endpoint's gate routes each incoming connection to the item whose
//! swarm it names (`docs/companion.md`, "One endpoint, many swarms").
//!
//! A running item reports [`RunEvent`]s, tagged with its id and the run's
//! number (so that reports of a run being stopped are not taken for the
//! next one's), and ends with exactly one [`RunEvent::Ended`]; a failure
//! keeps its kind ([`Failure`]). Its caps change while it runs
//! ([`RunningItem::set_caps`]): nothing restarts for them. A download's
//! node never gives up for want of peers: the supervisor decides when a
//! try ends (`crate::supervisor`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::app::Limits;
use minimodel_swarm::app::fetch::{ChunkListAhead, DownloadPlan, Opened, Serving};
use minimodel_swarm::app::share::{SharePlan, VerifiedShare};
use minimodel_swarm::dht::{Discovery, DiscoveryConfig};
use minimodel_swarm::fetch::FetchError;
use minimodel_swarm::node::{
    LimitsHandle, MetricsHandle, NodeFailure, NodeLimits, NodeMetrics, NodeReport, SharedEndpoint,
};
use minimodel_swarm::transport::Identity;
use minimodel_verifier::manifest::Manifest;
use minimodel_wire::PeerId;
use tokio::sync::{mpsc, oneshot, watch};

use crate::library::{Caps, ItemId};
use crate::supervisor::{Failure, RunId, RunPhase};
use crate::view::ProblemKind;

/// How often a running item's per-peer figures are read.
pub const SOURCES_EVERY: Duration = Duration::from_secs(1);

/// What a running item tells the companion.
#[derive(Debug)]
pub enum RunEvent {
    /// What the run does now.
    Phase(RunPhase),
    /// A share's file is being verified: bytes read so far.
    Verifying(u64),
    /// The share's file passed: kept to start it again without reading
    /// the file.
    Verified(Arc<VerifiedShare>),
    /// Opened: bytes verified by earlier runs.
    Opened {
        /// Those bytes.
        resumed_bytes: u64,
    },
    /// Listening for peers.
    Listening {
        /// Where.
        addr: SocketAddr,
        /// As whom.
        peer_id: PeerId,
    },
    /// The node's own report (peers, progress, delivery, serving).
    Report(NodeReport),
    /// The node's counters, every [`SOURCES_EVERY`].
    Metrics(NodeMetrics),
    /// The artifact was in the directory with its receipt already.
    AlreadyComplete {
        /// The file.
        file: PathBuf,
        /// Its receipt.
        receipt: PathBuf,
        /// Whether the run serves it on ([`DownloadPlan::seeds_after`]).
        seeding: bool,
    },
    /// What reading the new version's chunk list ahead gave (each
    /// download run, before it opens its directory).
    Reuse(ChunkListAhead),
    /// The run ended.
    Ended(Ending),
}

/// How a run ended.
#[derive(Debug)]
pub enum Ending {
    /// Stopped on request; the node's last counters, read just before.
    Stopped(Option<NodeMetrics>),
    /// A download delivered, not serving on.
    Finished,
    /// Failed; the verified part of a download is kept.
    Failed {
        /// What went wrong, of which kind.
        failure: Failure,
        /// The node's last counters read, if it ran.
        last: Option<NodeMetrics>,
    },
}

/// The reports of every running item go here.
pub type Events = mpsc::UnboundedSender<(ItemId, RunId, RunEvent)>;

/// Free bytes a download that found the disk full waits for before it
/// tries again, beyond what it still has to reserve: room for its state
/// file, journal and receipt.
pub const DISK_MARGIN: u64 = 4 << 20;

/// A share to run.
#[derive(Debug)]
pub struct ShareJob {
    /// The artifact's manifest (judged by the companion).
    pub manifest: Manifest,
    /// The manifest file's bytes, handed to manifest queries (a ticket
    /// names their SHA-256).
    pub manifest_file: Arc<[u8]>,
    /// The `.slm` file.
    pub file: PathBuf,
    /// The file, verified by an earlier run of this item.
    pub verified: Option<Arc<VerifiedShare>>,
}

/// A download to run.
#[derive(Debug)]
pub struct DownloadJob {
    /// What, from whom, where to (its serving address is set here).
    pub plan: DownloadPlan,
    /// Serve while fetching.
    pub serve: bool,
    /// Serve the finished file on.
    pub seed_after: bool,
    /// Find peers on the DHT through a client made with this.
    pub dht: Option<DiscoveryConfig>,
    /// A finished file verified by an earlier run, to serve on.
    pub verified: Option<Arc<VerifiedShare>>,
}

/// Share or download (each boxed: both carry a manifest).
#[derive(Debug)]
pub enum Job {
    /// A share.
    Share(Box<ShareJob>),
    /// A download.
    Download(Box<DownloadJob>),
}

/// What every item shares: the one identity and the one endpoint items
/// serve on.
#[derive(Clone)]
pub struct Runner {
    identity: Arc<Identity>,
    endpoint: SharedEndpoint,
    events: Events,
    lan: bool,
}

/// A running item; [`RunningItem::stop`] ends it.
#[derive(Debug)]
pub struct RunningItem {
    stop: Option<oneshot::Sender<()>>,
    caps: watch::Sender<Caps>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningItem {
    /// Puts `caps` (its own) in force in its node, without a restart (a
    /// node not started yet takes them when it starts).
    pub fn set_caps(&self, caps: Caps) {
        self.caps.send_replace(caps);
    }

    /// Asks the item to stop and waits until it has (a download writes
    /// its checkpoint first).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Whether the run has ended by itself.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Runner {
    /// A runner whose items serve on `endpoint` (its identity is theirs),
    /// reporting to `events`.
    pub fn new(endpoint: SharedEndpoint, events: Events) -> Self {
        Self {
            identity: Arc::clone(endpoint.identity()),
            endpoint,
            events,
            lan: false,
        }
    }

    /// The same runner, announcing each serving item on the local network
    /// and looking for each download's peers there (mDNS) when `on`.
    pub fn with_lan(mut self, on: bool) -> Self {
        self.lan = on;
        self
    }

    /// Whether items announce and look for peers on the local network.
    pub fn lan(&self) -> bool {
        self.lan
    }

    /// The identity every item uses.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// The identity itself (a ticket's manifest query dials with it).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The address items serve on.
    pub fn serve_ip(&self) -> IpAddr {
        self.endpoint.local_addr().ip()
    }

    /// The UDP port every item serves on.
    pub fn port(&self) -> u16 {
        self.endpoint.local_addr().port()
    }

    /// The endpoint every item serves on.
    pub fn endpoint(&self) -> &SharedEndpoint {
        &self.endpoint
    }

    /// Starts `job` as run `run` of item `id` with its own `caps`.
    pub fn start(&self, id: ItemId, run: RunId, job: Job, caps: Caps) -> RunningItem {
        let (stop, stopped) = oneshot::channel();
        let (caps_tx, caps_rx) = watch::channel(caps);
        let run = Run {
            id,
            run,
            identity: Arc::clone(&self.identity),
            endpoint: self.endpoint.clone(),
            limits: Limits {
                max_upload: caps.max_upload,
                max_download: caps.max_download,
                // The supervisor ends a try that finds no peer; the node
                // never gives up by itself.
                give_up_after: Some(Duration::MAX),
                ..Limits::default()
            },
            caps: caps_rx,
            events: self.events.clone(),
            lan: self.lan,
        };
        let task = tokio::spawn(async move {
            let ending = match job {
                Job::Share(share) => run.share(*share, stopped).await,
                Job::Download(download) => run.download(*download, stopped).await,
            };
            run.send(RunEvent::Ended(ending));
        });
        RunningItem {
            stop: Some(stop),
            caps: caps_tx,
            task,
        }
    }
}

struct Run {
    id: ItemId,
    run: RunId,
    identity: Arc<Identity>,
    endpoint: SharedEndpoint,
    limits: Limits,
    caps: watch::Receiver<Caps>,
    events: Events,
    lan: bool,
}

impl Run {
    /// A share of `file` on the companion's endpoint.
    fn share_plan(&self, manifest: Manifest, file: PathBuf) -> SharePlan {
        let mut plan = SharePlan::new(manifest, file, self.endpoint.local_addr());
        plan.endpoint = Some(self.endpoint.clone());
        plan.lan = self.lan;
        plan
    }

    fn send(&self, event: RunEvent) {
        let _ = self.events.send((self.id.clone(), self.run, event));
    }

    /// Reads `plan`'s file whole against its manifest.
    async fn verify(&self, plan: SharePlan) -> Result<Arc<VerifiedShare>, Failure> {
        self.send(RunEvent::Phase(RunPhase::Verifying));
        self.send(RunEvent::Verifying(0));
        let events = self.events.clone();
        let (id, run) = (self.id.clone(), self.run);
        let verified = tokio::task::spawn_blocking(move || {
            let last = std::sync::Mutex::new(0u64);
            plan.verify(&|done| {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if done >= *last + (16 << 20) {
                    *last = done;
                    let _ = events.send((id.clone(), run, RunEvent::Verifying(done)));
                }
            })
        })
        .await
        .map_err(|error| {
            Failure::new(
                ProblemKind::Internal,
                format!("the verification stopped: {error}"),
            )
        })?
        .map_err(|error| {
            let kind = match &error {
                minimodel_verifier::check::VerifyError::Io(io)
                    if io.kind() == std::io::ErrorKind::NotFound =>
                {
                    ProblemKind::FileGone
                }
                minimodel_verifier::check::VerifyError::Io(_) => ProblemKind::Storage,
                _ => ProblemKind::VerificationFailed,
            };
            Failure::new(
                kind,
                format!(
                    "the file does not pass its check against the manifest: {}",
                    chain(&error)
                ),
            )
        })?;
        let verified = Arc::new(verified);
        self.send(RunEvent::Verified(Arc::clone(&verified)));
        Ok(verified)
    }

    async fn share(&self, job: ShareJob, stopped: oneshot::Receiver<()>) -> Ending {
        let verified = match job.verified {
            Some(verified) => verified,
            None => {
                let mut plan = self.share_plan(job.manifest, job.file);
                plan.manifest_file = Some(job.manifest_file);
                match self.verify(plan).await {
                    Ok(verified) => verified,
                    Err(failure) => {
                        return Ending::Failed {
                            failure,
                            last: None,
                        };
                    }
                }
            }
        };
        self.serve(&verified, RunPhase::Serving, stopped).await
    }

    /// Serves a verified file until stopped: a share (`Serving`) or a
    /// delivered download (`Seeding`).
    async fn serve(
        &self,
        verified: &VerifiedShare,
        phase: RunPhase,
        stopped: oneshot::Receiver<()>,
    ) -> Ending {
        let (reports, inbox) = mpsc::unbounded_channel();
        let limits = Limits {
            max_upload: self.caps.borrow().max_upload,
            ..self.limits.clone()
        };
        let seeder = match verified.start_with(
            self.endpoint.local_addr(),
            &limits,
            Arc::clone(&self.identity),
            reports,
        ) {
            Ok(seeder) => seeder,
            Err(error) => {
                return Ending::Failed {
                    failure: Failure::new(
                        ProblemKind::Internal,
                        format!("cannot start serving: {}", chain(&error)),
                    ),
                    last: None,
                };
            }
        };
        self.send(RunEvent::Phase(phase));
        if let Some(addr) = seeder.listen_addr() {
            self.send(RunEvent::Listening {
                addr,
                peer_id: seeder.peer_id(),
            });
        }
        let metrics = seeder.metrics();
        let limits = seeder.limits();
        let (node_stop, node_stopped) = oneshot::channel::<()>();
        let node = tokio::spawn(seeder.run(async {
            let _ = node_stopped.await;
        }));
        let last = self.watch(metrics, limits, inbox, stopped, node_stop).await;
        let _ = node.await;
        Ending::Stopped(last)
    }

    /// Passes the node's reports and counters on until `stopped`
    /// resolves (then reads the counters once more and stops the node)
    /// or the node ends by itself. Returns the last counters read when
    /// stopped on request.
    async fn watch(
        &self,
        metrics: MetricsHandle,
        limits: LimitsHandle,
        mut inbox: mpsc::UnboundedReceiver<NodeReport>,
        mut stopped: oneshot::Receiver<()>,
        node_stop: oneshot::Sender<()>,
    ) -> Option<NodeMetrics> {
        let mut tick = tokio::time::interval(SOURCES_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut caps = self.caps.clone();
        // What the node started with counts as seen; a change made while
        // it started is put in force now.
        let started = *caps.borrow_and_update();
        if started.max_upload != self.limits.max_upload
            || started.max_download != self.limits.max_download
        {
            self.put_in_force(&limits, started).await;
        }
        loop {
            tokio::select! {
                Ok(()) = caps.changed() => {
                    let now = *caps.borrow_and_update();
                    self.put_in_force(&limits, now).await;
                }
                report = inbox.recv() => match report {
                    Some(report) => self.send(RunEvent::Report(report)),
                    // The node ended by itself (a download delivered or
                    // failed).
                    None => return None,
                },
                _ = tick.tick() => {
                    if let Some(snapshot) = metrics.snapshot().await {
                        self.send(RunEvent::Metrics(snapshot));
                    }
                }
                _ = &mut stopped => {
                    // Read before the stop: the node's links are closed
                    // without reports when it shuts down.
                    let last = metrics.snapshot().await;
                    let _ = node_stop.send(());
                    while let Some(report) = inbox.recv().await {
                        self.send(RunEvent::Report(report));
                    }
                    return last;
                }
            }
        }
    }

    /// Puts `caps` in force in the running node.
    async fn put_in_force(&self, limits: &LimitsHandle, caps: Caps) {
        let wanted = NodeLimits {
            max_peers: self
                .limits
                .max_peers
                .unwrap_or(minimodel_swarm::node::CoreConfig::default().max_peers),
            max_upload: caps.max_upload,
            max_download: caps.max_download,
        };
        if let Err(error) = limits.set(wanted).await {
            tracing::debug!(item = %self.id, "caps not changed: {error}");
        }
    }

    async fn download(&self, job: DownloadJob, mut stopped: oneshot::Receiver<()>) -> Ending {
        if let Some(verified) = &job.verified {
            return self.serve(verified, RunPhase::Seeding, stopped).await;
        }
        self.send(RunEvent::Phase(RunPhase::Opening));
        let mut plan = job.plan;
        plan.serving = job.serve.then_some(Serving {
            listen: self.endpoint.local_addr(),
            seed_after: job.seed_after,
            // The endpoint's own mapping, when the companion asks for one.
            port_mapping: false,
        });
        plan.endpoint = Some(self.endpoint.clone());
        let caps = *self.caps.borrow();
        Limits {
            max_upload: caps.max_upload,
            max_download: caps.max_download,
            ..self.limits.clone()
        }
        .apply(&mut plan.core);
        plan.lan = self.lan;
        // Older versions of the model here: the plan reads the new chunk
        // list ahead, and the item shows what it found.
        // Asking peers may take a minute: a pause or a removal does not
        // wait for it.
        let ahead = tokio::select! {
            ahead = plan.read_chunk_list_ahead(job.dht.as_ref()) => ahead,
            _ = &mut stopped => return Ending::Stopped(None),
        };
        if ahead != ChunkListAhead::NotNeeded {
            tracing::info!(item = %self.id, "{ahead}");
        }
        // Every download run says it, none to reuse too: the item shows
        // this run's finding, not an earlier one's.
        self.send(RunEvent::Reuse(ahead.clone()));
        // Chunks cut at parts (`slm-parts-merkle-v0`) and no list with
        // their lengths anywhere yet: nothing can be opened, as with no
        // peer at all; the item tries again by itself (a seeder that comes
        // later serves the list).
        if let ChunkListAhead::Missing { why } = ahead {
            return Ending::Failed {
                failure: Failure::new(
                    ProblemKind::NoPeersYet,
                    format!(
                        "its chunks are cut at its parts, and no peer or web server gave their lengths yet: {why}"
                    ),
                ),
                last: None,
            };
        }
        let artifact_bytes = plan.manifest.artifact_bytes;
        let manifest = plan.manifest.clone();
        let manifest_file = plan.manifest_file.clone();
        let seeding = plan.seeds_after();
        // The item's previous run may still be letting its download go.
        let opened = tokio::task::spawn_blocking(move || {
            plan.open_with_patience(&|_| {}, std::time::Duration::from_secs(5))
        })
        .await;
        let ready = match opened {
            Ok(Ok(Opened::Partial(ready))) => *ready,
            Ok(Ok(Opened::Complete(done))) => {
                self.send(RunEvent::AlreadyComplete {
                    file: done.paths.artifact.clone(),
                    receipt: done.paths.receipt.clone(),
                    seeding,
                });
                if !seeding {
                    return Ending::Finished;
                }
                let mut plan = self.share_plan(manifest, done.paths.artifact.clone());
                plan.manifest_file = manifest_file;
                return match self.verify(plan).await {
                    Ok(verified) => self.serve(&verified, RunPhase::Seeding, stopped).await,
                    Err(failure) => Ending::Failed {
                        failure,
                        last: None,
                    },
                };
            }
            Ok(Err(error)) => {
                let text = format!(
                    "cannot use the download's directory: {}",
                    minimodel_swarm::resume::describe(&error)
                );
                let failure = if error.is_disk_full() {
                    // Nothing reserved yet, or part of it: room for the
                    // whole file, to be sure.
                    Failure {
                        needed_bytes: Some(artifact_bytes.saturating_add(DISK_MARGIN)),
                        ..Failure::new(ProblemKind::DiskFull, text)
                    }
                } else {
                    Failure::new(ProblemKind::Storage, text)
                };
                return Ending::Failed {
                    failure,
                    last: None,
                };
            }
            Err(error) => {
                return Ending::Failed {
                    failure: Failure::new(
                        ProblemKind::Internal,
                        format!("opening stopped: {error}"),
                    ),
                    last: None,
                };
            }
        };
        self.send(RunEvent::Opened {
            resumed_bytes: ready.resumed_bytes,
        });
        let mut ready = ready;
        if let Some(config) = job.dht
            && !ready.has_dht()
        {
            match Discovery::start(config).await {
                Ok(dht) => ready.set_dht(Arc::new(dht)),
                Err(error) => {
                    return Ending::Failed {
                        failure: Failure::new(
                            ProblemKind::Network,
                            format!("cannot start the DHT node: {}", chain(&error)),
                        ),
                        last: None,
                    };
                }
            }
        }
        let (reports, inbox) = mpsc::unbounded_channel();
        let fetcher = match ready.start(Arc::clone(&self.identity), reports) {
            Ok(fetcher) => fetcher,
            Err(error) => {
                return Ending::Failed {
                    failure: classify(&error),
                    last: None,
                };
            }
        };
        self.send(RunEvent::Phase(RunPhase::Fetching));
        if let Some(addr) = fetcher.listen_addr() {
            self.send(RunEvent::Listening {
                addr,
                peer_id: fetcher.peer_id(),
            });
        }
        let metrics = fetcher.metrics();
        let limits = fetcher.limits();
        let (node_stop, node_stopped) = oneshot::channel::<()>();
        let node = tokio::spawn(fetcher.run(async {
            let _ = node_stopped.await;
        }));
        let last_on_stop = self.watch(metrics, limits, inbox, stopped, node_stop).await;
        let result = node.await.unwrap_or_else(|error| {
            // The node's task failed (a panic): nothing of this run is
            // known to be delivered.
            let worker = minimodel_swarm::resume::DeliveryError::Worker(error.to_string());
            Err(FetchError::Failed(
                minimodel_swarm::node::NodeFailure::Storage(minimodel_swarm::node::Fault::new(
                    worker,
                )),
            ))
        });
        match result {
            Ok(_) => match last_on_stop {
                // Delivered and served on until stopped.
                Some(last) => Ending::Stopped(Some(last)),
                None => Ending::Finished,
            },
            Err(FetchError::Interrupted) => Ending::Stopped(last_on_stop),
            Err(error) => Ending::Failed {
                failure: classify(&error),
                last: last_on_stop,
            },
        }
    }
}

/// A download's failure, by kind: what a person must fix, what goes on
/// by itself.
pub fn classify(error: &FetchError) -> Failure {
    let text = chain(error);
    if caused_by_full_disk(error) {
        return Failure {
            needed_bytes: Some(DISK_MARGIN),
            ..Failure::new(ProblemKind::DiskFull, text)
        };
    }
    let kind = match error {
        FetchError::Signature(_) => ProblemKind::RefusedSignature,
        FetchError::Unfetchable(_) => ProblemKind::VerificationFailed,
        FetchError::Failed(NodeFailure::NoPeers { .. }) => ProblemKind::NoPeersYet,
        FetchError::Failed(NodeFailure::Damaged { .. }) => ProblemKind::Damaged,
        FetchError::Failed(NodeFailure::Verification(_)) => ProblemKind::VerificationFailed,
        FetchError::Failed(NodeFailure::Storage(_)) | FetchError::Disk(_) => ProblemKind::Storage,
        FetchError::Node(_) | FetchError::Identity(_) | FetchError::Interrupted => {
            ProblemKind::Internal
        }
    };
    Failure::new(kind, text)
}

/// Whether a full disk (`ENOSPC`) is among `error`'s causes.
fn caused_by_full_disk(error: &FetchError) -> bool {
    if error.resume_error().is_some_and(|e| e.is_disk_full()) {
        return true;
    }
    let mut starts: Vec<&dyn std::error::Error> = vec![error];
    if let FetchError::Failed(NodeFailure::Storage(fault)) = error {
        if let Some(delivery) = fault.downcast_ref::<minimodel_swarm::resume::DeliveryError>() {
            starts.push(delivery);
        }
        if let Some(io) = fault.downcast_ref::<std::io::Error>() {
            starts.push(io);
        }
    }
    starts.into_iter().any(|start| {
        let mut cause = Some(start);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && (io.raw_os_error() == Some(28) || io.kind() == std::io::ErrorKind::StorageFull)
            {
                return true;
            }
            cause = error.source();
        }
        false
    })
}

/// An error and its causes in one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
