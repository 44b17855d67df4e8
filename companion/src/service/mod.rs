//! The service: it carries out what the supervisor
//! ([`crate::supervisor`]) decides, and decides nothing of its own.
//!
//! One task owns the supervisor and everything kept per item ([`Owner`]:
//! the manifests, what the views show, the running items, the transfer
//! log); nothing of it is shared behind a lock. The API's handlers, the
//! follows' lookups and the disk's measurement send it commands
//! ([`Shared::with`]) and get back what a command returns (a view, a
//! refusal); the runs' reports, the supervisor's deadlines, the follows'
//! schedule and the rates' tick reach it in its own loop.
//!
//! - The API's requests ([`adding`]: previews and adds; here: pause,
//!   caps, limits, remove) read what they need from the disk and the
//!   keyring (a manifest, a signature, the free space), hand the change
//!   to the supervisor and carry out its actions.
//! - [`Action::Start`] builds the run's job from the item's record and
//!   kept manifest and starts it through [`crate::runner`];
//!   [`Action::Stop`], [`Action::SetCaps`] and [`Action::LibraryCaps`]
//!   reach the running nodes and their endpoint; [`Action::MeasureDisk`]
//!   measures; [`Action::Save`] writes `library.json`;
//!   [`Action::Changed`] tells the API's event stream.
//! - The runs' reports come back to the owner, which passes what the
//!   supervisor needs to it (phases, counters, deliveries, ends, typed),
//!   keeps what the views show beside ([`views`]), and writes the
//!   transfer log.
//! - The owner calls the supervisor when it asks
//!   ([`Supervisor::poll_timeout`]).
//! - [`following`]: the owner starts the followed channels' lookups when
//!   [`crate::follow::Schedule`] says, each in a task of its own that
//!   sends back what it found; what a checked channel means
//!   ([`crate::follow::decide`]) is carried out by the owner.

mod adding;
mod following;
mod views;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Instant;

use minimodel_swarm::app::fetch::{ChunkListAhead, DownloadPlan};
use minimodel_swarm::app::share::VerifiedShare;
use minimodel_swarm::dht::DiscoveryConfig;
use minimodel_swarm::node::{NodeMetrics, NodeReport};
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_swarm::resume::DownloadPaths;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::{ImportReceipt, ReceiptSource, now_rfc3339};
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::{ModelId, Sha256Digest};
use minimodel_wire::{PeerAddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::errors::ApiError;
use crate::library::{
    Caps, DownloadRecord, ItemId, ItemKind, ItemRecord, LibraryDir, LibraryState, Work,
};
use crate::runner::{DownloadJob, Ending, Job, RunEvent, Runner, RunningItem, ShareJob};
use crate::supervisor::{Action, Counters, Failure, Patience, RunEnd, RunId, RunInput, Supervisor};
use crate::translog::{Direction, Ended, LogEntry, ReceiptRef, TransferLog};
use crate::trust::TrustStore;
use crate::view::{
    ApiEvent, LimitsView, LogPage, ProblemKind, ReachView, Removed, SetLimits, SignatureView,
    SourceView,
};

pub(crate) use views::signature_view;

/// A manifest as kept: its text's digest and the parsed manifest.
#[derive(Debug, Clone)]
struct Kept {
    manifest: Manifest,
    sha256: Sha256Digest,
    /// The manifest file's bytes: what a manifest query (a ticket) gets.
    bytes: Arc<[u8]>,
}

/// What the views show of an item beyond its record and its status: the
/// figures of its last run.
#[derive(Debug, Default)]
struct Live {
    /// The run these figures are of.
    run: Option<RunId>,
    verified_bytes: u64,
    peers: u64,
    uploaded_bytes: u64,
    sources: Vec<SourceView>,
    signature: Option<SignatureView>,
    /// Where its node listens, and the mirrors its ticket names: its
    /// serving view is made when it is shown, with the relays the
    /// endpoint is registered with then.
    serving: Option<views::ServingAt>,
    /// Who can reach its node, as the node judged last.
    reach: Option<ReachView>,
    file: Option<PathBuf>,
    receipt: Option<PathBuf>,
    /// What its last run's reading of the new chunk list gave.
    reuse: Option<String>,
}

/// What one run of an item has seen, for the transfer log.
#[derive(Debug, Default)]
struct RunData {
    /// The item's model id, kept for the log lines of a run whose item
    /// was removed while it stopped.
    model_id: String,
    connected: BTreeMap<PeerId, SocketAddr>,
    last_metrics: Option<NodeMetrics>,
    delivered_logged: bool,
}

/// What the owner task holds: the supervisor and everything kept per
/// item beside it.
struct Inner {
    supervisor: Supervisor,
    manifests: BTreeMap<ItemId, Kept>,
    live: BTreeMap<ItemId, Live>,
    running: BTreeMap<ItemId, (RunId, RunningItem)>,
    runs: BTreeMap<(ItemId, RunId), RunData>,
    verified: BTreeMap<ItemId, Arc<VerifiedShare>>,
    /// What the page draws: chunks, peers, rates.
    activity: crate::activity::Activity,
    /// The followed channels' schedule and what their views show.
    following: following::Following,
    log: TransferLog,
    /// Manifests fetched for tickets, newest last.
    ticket_manifests: std::collections::VecDeque<(Sha256Digest, Vec<u8>)>,
}

/// A command to the owner: runs on its task with the service's shared
/// parts and the state it owns.
type Command = Box<dyn FnOnce(&Shared, &mut Inner) + Send>;

/// The owner's side: the state, and the commands sent to it, until it
/// runs ([`Owner::run`]).
pub(crate) struct Owner {
    inner: Inner,
    commands: mpsc::UnboundedReceiver<Command>,
}

/// What carrying out actions left to the caller: stops under way (a
/// removal waits for its item's), and a state that could not be written.
#[derive(Default)]
struct Carried {
    stops: Vec<tokio::task::JoinHandle<()>>,
    save_failed: Option<String>,
}

/// What the API's handlers, the lookups and the owner share: what never
/// changes after the start, and the way to the owner.
pub(crate) struct Shared {
    /// Itself, for the tasks its actions spawn.
    this: Weak<Shared>,
    library: LibraryDir,
    runner: Runner,
    trust: Arc<dyn TrustStore>,
    /// Commands to the owner task.
    owner: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<ApiEvent>,
    started_at: String,
    dht_bootstrap: Vec<std::net::SocketAddrV4>,
    /// Ticket queries under way.
    ticket_queries: tokio::sync::Semaphore,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// What [`Shared::new`] needs.
pub(crate) struct Parts {
    pub(crate) library: LibraryDir,
    pub(crate) state: LibraryState,
    pub(crate) runner: Runner,
    pub(crate) trust: Arc<dyn TrustStore>,
    pub(crate) log: TransferLog,
    pub(crate) dht_bootstrap: Vec<std::net::SocketAddrV4>,
    pub(crate) patience: Patience,
    pub(crate) follow_cadence: crate::follow::Cadence,
}

impl Shared {
    /// The service over `parts`: every item's manifest read and checked
    /// (and a delivered download's file and receipt looked for), the
    /// supervisor made. Nothing runs before [`Owner::run`] and
    /// [`Self::start`].
    pub(crate) fn new(parts: Parts) -> (Arc<Self>, Owner) {
        let Parts {
            library,
            state,
            runner,
            trust,
            log,
            dht_bootstrap,
            patience,
            follow_cadence,
        } = parts;
        let mut manifests = BTreeMap::new();
        let mut live = BTreeMap::new();
        let mut loaded = BTreeMap::new();
        for item in &state.items {
            let mut entry = Live::default();
            let result = match load_kept(&library, item) {
                Ok(kept) => {
                    let bytes = kept.manifest.artifact_bytes;
                    let found = match item.download().filter(|d| d.delivered) {
                        Some(download) => {
                            delivered_files(&library.download_dir(download), &kept, &mut entry)
                        }
                        None => Ok(()),
                    };
                    manifests.insert(item.id.clone(), kept);
                    found.map(|()| bytes)
                }
                Err(failure) => Err(failure),
            };
            loaded.insert(item.id.clone(), result);
            live.insert(item.id.clone(), entry);
        }
        let mut following = following::Following {
            schedule: crate::follow::Schedule::with_cadence(follow_cadence),
            ..following::Following::default()
        };
        for record in &state.follows {
            if let Ok((key, model)) = record.key() {
                following
                    .schedule
                    .add(crate::follow::FollowKey::new(&key, model), Instant::now());
            }
        }
        let supervisor = Supervisor::new(state, loaded, patience, Instant::now());
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let (owner, commands) = mpsc::unbounded_channel();
        let shared = Arc::new_cyclic(|this| Shared {
            this: this.clone(),
            library,
            runner,
            trust,
            owner,
            events,
            started_at: now_rfc3339(),
            dht_bootstrap,
            ticket_queries: tokio::sync::Semaphore::new(adding::TICKET_QUERIES),
            shutdown,
        });
        let inner = Inner {
            supervisor,
            manifests,
            live,
            running: BTreeMap::new(),
            runs: BTreeMap::new(),
            verified: BTreeMap::new(),
            activity: crate::activity::Activity::new(),
            following,
            log,
            ticket_manifests: std::collections::VecDeque::new(),
        };
        (shared, Owner { inner, commands })
    }

    /// Runs `command` on the owner's task and returns what it returns;
    /// `None` once the owner has ended (the companion stopped).
    async fn with<R: Send + 'static>(
        &self,
        command: impl FnOnce(&Shared, &mut Inner) -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let command: Command = Box::new(move |shared, inner| {
            let _ = reply.send(command(shared, inner));
        });
        self.owner.send(command).ok()?;
        answer.await.ok()
    }

    /// [`Self::with`] for an API request: the owner's end is a refusal.
    async fn asked<R: Send + 'static>(
        &self,
        command: impl FnOnce(&Shared, &mut Inner) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.with(command).await.unwrap_or_else(|| Err(stopped()))
    }

    /// The runner every item runs through.
    pub(crate) fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The library directory.
    pub(crate) fn library(&self) -> &LibraryDir {
        &self.library
    }

    /// Subscribes to the API's events.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }

    fn publish(&self, event: ApiEvent) {
        let _ = self.events.send(event);
    }

    /// Starts every item that should run.
    pub(crate) async fn start(&self) {
        self.with(|shared, inner| {
            inner.supervisor.start(Instant::now());
            shared.carry_out(inner);
        })
        .await;
    }

    /// `GET /api/v1/rates`.
    pub(crate) async fn rates(&self) -> Result<crate::view::RatesView, ApiError> {
        self.asked(|_, inner| Ok(inner.activity.rates())).await
    }

    /// `GET /api/v1/items/{id}/activity`.
    pub(crate) async fn activity(
        &self,
        id: &ItemId,
    ) -> Result<crate::view::ActivityView, ApiError> {
        let id = id.clone();
        self.asked(move |_, inner| {
            inner
                .supervisor
                .record(&id)
                .ok_or_else(|| ApiError::not_found(id.as_str()))?;
            inner.activity.view(&id).cloned().ok_or_else(|| {
                ApiError::new(404, "not-found", format!("item {id} has not run yet"))
            })
        })
        .await
    }

    /// Stops every item (each download checkpoints) and waits until every
    /// run has ended and been logged, for at most `wait`.
    pub(crate) async fn stop_all(&self, wait: std::time::Duration) {
        let stops = self
            .with(|shared, inner| {
                inner.supervisor.shut_down();
                shared.carry_out(inner).stops
            })
            .await
            .unwrap_or_default();
        for stop in stops {
            let _ = stop.await;
        }
        let _ = tokio::time::timeout(wait, async {
            loop {
                match self.with(|_, inner| inner.supervisor.is_idle()).await {
                    Some(false) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    _ => return,
                }
            }
        })
        .await;
    }

    /// Writes the state as it is now.
    pub(crate) async fn save(&self) -> Result<(), crate::library::LibraryError> {
        self.with(|shared, inner| shared.library.save_state(inner.supervisor.state()))
            .await
            .unwrap_or_else(|| {
                Err(crate::library::LibraryError::Io {
                    path: self.library.state_path(),
                    source: std::io::Error::other("the library's owner task has ended"),
                })
            })
    }

    /// Carries out every action the supervisor queued.
    fn carry_out(&self, inner: &mut Inner) -> Carried {
        let mut carried = Carried::default();
        let mut changed = BTreeSet::new();
        while let Some(action) = inner.supervisor.poll_action() {
            match action {
                Action::Start {
                    item,
                    run,
                    caps,
                    dial_only,
                } => match self.job_for(inner, &item, dial_only) {
                    Ok(job) => {
                        let running = self.runner.start(item.clone(), run, job, caps);
                        inner.running.insert(item.clone(), (run, running));
                        let model_id = inner
                            .supervisor
                            .record(&item)
                            .map(|record| record.model_id.clone())
                            .unwrap_or_default();
                        inner.runs.insert(
                            (item.clone(), run),
                            RunData {
                                model_id,
                                ..RunData::default()
                            },
                        );
                        let live = inner.live.entry(item.clone()).or_default();
                        live.run = Some(run);
                        live.serving = None;
                        live.reach = None;
                        live.peers = 0;
                        live.uploaded_bytes = 0;
                        live.sources.clear();
                    }
                    Err(failure) => inner.supervisor.handle_run(
                        &item,
                        run,
                        RunInput::Ended(RunEnd::Failed(failure)),
                        Instant::now(),
                    ),
                },
                Action::Stop { item, run } => {
                    if inner.running.get(&item).is_some_and(|(r, _)| *r == run)
                        && let Some((_, running)) = inner.running.remove(&item)
                    {
                        carried.stops.push(tokio::spawn(running.stop()));
                    }
                }
                Action::SetCaps { item, run, caps } => {
                    if let Some((r, running)) = inner.running.get(&item)
                        && *r == run
                    {
                        running.set_caps(caps);
                    }
                }
                Action::LibraryCaps(caps) => {
                    let endpoint = self.runner.endpoint();
                    endpoint.set_upload_cap(caps.max_upload);
                    endpoint.set_download_cap(caps.max_download);
                }
                Action::MeasureDisk => self.measure_disk(),
                Action::Save => {
                    if let Err(error) = self.library.save_state(inner.supervisor.state()) {
                        tracing::error!("cannot write the library's state: {error}");
                        carried.save_failed = Some(error.to_string());
                    }
                }
                Action::Changed(id) => {
                    changed.insert(id);
                }
            }
        }
        let now = Instant::now();
        for id in changed {
            if let Some(view) = self.view(inner, &id, now) {
                self.publish(ApiEvent::Item(Box::new(view)));
            }
        }
        carried
    }

    /// Measures the downloads' disk on a blocking thread and tells the
    /// supervisor.
    fn measure_disk(&self) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let dir = this.library.downloads_dir();
            let free = tokio::task::spawn_blocking(move || crate::quota::free_bytes(&dir))
                .await
                .ok()
                .flatten();
            if let Some(free) = free {
                this.with(move |shared, inner| {
                    inner.supervisor.handle_disk(free, Instant::now());
                    shared.carry_out(inner);
                })
                .await;
            }
        });
    }

    /// The job of item `id`'s next run, or why it cannot run: its manifest
    /// is judged again (as a rerun of a command would be).
    /// The job of a run of item `id`; `dial_only`: a waiting download's
    /// dial of the addresses it knows, with no DHT.
    fn job_for(&self, inner: &mut Inner, id: &ItemId, dial_only: bool) -> Result<Job, Failure> {
        let missing = || Failure::new(ProblemKind::ManifestChanged, "its manifest is not loaded");
        let record = inner.supervisor.record(id).ok_or_else(missing)?.clone();
        let kept = inner.manifests.get(id).ok_or_else(missing)?.clone();
        let check = self
            .trust
            .judge(
                &kept.manifest,
                record
                    .publisher_key
                    .as_deref()
                    .and_then(|key| key.parse::<PublicKey>().ok())
                    .as_ref(),
                record.require_signature,
            )
            .map_err(|error| {
                let kind = match error {
                    crate::trust::TrustStoreError::Refused(_) => ProblemKind::RefusedSignature,
                    crate::trust::TrustStoreError::Keyring(_) => ProblemKind::Storage,
                };
                Failure::new(kind, format!("the manifest is refused now: {error}"))
            })?;
        inner.live.entry(id.clone()).or_default().signature = Some(signature_view(&check));
        Ok(match &record.work {
            Work::Share(share) => Job::Share(Box::new(ShareJob {
                manifest: kept.manifest.clone(),
                manifest_file: Arc::clone(&kept.bytes),
                file: share.file.clone(),
                verified: inner.verified.get(id).cloned(),
            })),
            Work::Download(download) => {
                let mut plan = DownloadPlan::new(
                    kept.manifest.clone(),
                    kept.sha256,
                    check,
                    self.library.download_dir(download),
                );
                plan.manifest_file = Some(Arc::clone(&kept.bytes));
                plan.peers = merge_peers(
                    download
                        .peers
                        .iter()
                        .filter_map(|text| text.parse::<PeerAddr>().ok())
                        .map(|peer| PeerAddrs {
                            id: peer.id,
                            addrs: vec![peer.addr],
                        }),
                );
                // Its peers' relays: the endpoint keeps links to them.
                plan.peer_relays = (download.peer_relays.iter())
                    .filter_map(crate::library::PeerRelaysRecord::parsed)
                    .collect();
                let plain =
                    minimodel_swarm::mirror::given::plain_if(download.allow_plain_http_mirror);
                plan.mirrors = minimodel_swarm::mirror::given::given_set(&download.mirrors, plain)
                    .map_err(|error| {
                        Failure::new(
                            ProblemKind::Internal,
                            format!("the download's mirrors are refused now: {error}"),
                        )
                    })?;
                // The other versions of the model here, delivered
                // downloads and shares: their chunks that the new chunk
                // list names are copied, each checked, before peers are
                // asked.
                plan.reuse = inner
                    .supervisor
                    .state()
                    .items
                    .iter()
                    .filter(|item| &item.id != id && item.model_id == record.model_id)
                    .filter_map(|item| match &item.work {
                        Work::Share(share) => Some(share.file.clone()),
                        Work::Download(other) if other.delivered => Some(
                            DownloadPaths::new(
                                &self.library.download_dir(other),
                                &kept.manifest.model_id,
                            )
                            .artifact,
                        ),
                        Work::Download(_) => None,
                    })
                    .collect();
                Job::Download(Box::new(DownloadJob {
                    plan,
                    serve: download.serve,
                    seed_after: download.seed_after,
                    dht: if dial_only {
                        None
                    } else {
                        self.dht_config(download)
                    },
                    verified: if download.delivered {
                        inner.verified.get(id).cloned()
                    } else {
                        None
                    },
                }))
            }
        })
    }

    /// The DHT client's settings of a download that asked for the DHT:
    /// its own bootstrap nodes, else the companion's, else the public
    /// DHT; on `--serve-ip` when it is IPv4.
    fn dht_config(&self, download: &DownloadRecord) -> Option<DiscoveryConfig> {
        download.dht.then(|| {
            let nodes = if download.dht_bootstrap.is_empty() {
                &self.dht_bootstrap
            } else {
                &download.dht_bootstrap
            };
            let bind = match self.runner.serve_ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            };
            minimodel_swarm::app::fetch::dht_config(bind, nodes)
        })
    }

    /// `POST /api/v1/items/{id}/pause` and `/resume`: a resume reads a
    /// manifest that could not be read again, and tries at once whatever
    /// held the item.
    pub(crate) async fn set_paused(
        &self,
        id: &ItemId,
        paused: bool,
    ) -> Result<crate::view::ItemView, ApiError> {
        let id = id.clone();
        self.asked(move |shared, inner| {
            let record = inner
                .supervisor
                .record(&id)
                .cloned()
                .ok_or_else(|| ApiError::not_found(id.as_str()))?;
            let reloaded = (!paused).then(|| match load_kept(&shared.library, &record) {
                Ok(kept) => {
                    let bytes = kept.manifest.artifact_bytes;
                    inner.manifests.insert(id.clone(), kept);
                    Ok(bytes)
                }
                Err(failure) => Err(failure),
            });
            inner
                .supervisor
                .set_paused(&id, paused, reloaded, Instant::now())?;
            shared.carried_view(inner, &id)
        })
        .await
    }

    /// After a change asked by the API: carries out the supervisor's
    /// actions and returns the item's view, or why the state could not
    /// be written.
    fn carried_view(
        &self,
        inner: &mut Inner,
        id: &ItemId,
    ) -> Result<crate::view::ItemView, ApiError> {
        let carried = self.carry_out(inner);
        if let Some(error) = carried.save_failed {
            return Err(ApiError::io(error));
        }
        self.view(inner, id, Instant::now())
            .ok_or_else(|| ApiError::not_found(id.as_str()))
    }

    /// `PUT /api/v1/items/{id}/caps`: in force at once, nothing restarts.
    pub(crate) async fn set_caps(
        &self,
        id: &ItemId,
        caps: Caps,
    ) -> Result<crate::view::ItemView, ApiError> {
        caps.check().map_err(ApiError::invalid)?;
        let id = id.clone();
        self.asked(move |shared, inner| {
            inner.supervisor.set_caps(&id, caps)?;
            shared.carried_view(inner, &id)
        })
        .await
    }

    /// `PUT /api/v1/limits`: the caps in force at once, nothing restarts;
    /// the quota holds back or lets go the newest downloads.
    pub(crate) async fn set_limits(&self, limits: SetLimits) -> Result<LimitsView, ApiError> {
        limits.caps.check().map_err(ApiError::invalid)?;
        self.asked(move |shared, inner| {
            inner.supervisor.set_limits(
                crate::library::Limits {
                    caps: limits.caps,
                    quota_bytes: limits.quota_bytes,
                },
                Instant::now(),
            );
            let carried = shared.carry_out(inner);
            if let Some(error) = carried.save_failed {
                return Err(ApiError::io(error));
            }
            let view = shared.limits_view(inner);
            shared.publish(ApiEvent::Limits(view));
            Ok(view)
        })
        .await
    }

    /// `DELETE /api/v1/items/{id}`: stops it, forgets it, and with
    /// `delete_files` removes a download's files.
    pub(crate) async fn remove(
        &self,
        id: &ItemId,
        delete_files: bool,
    ) -> Result<Removed, ApiError> {
        let taken = id.clone();
        let (record, stops) = self
            .asked(move |shared, inner| {
                let id = &taken;
                let record = inner
                    .supervisor
                    .record(id)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(id.as_str()))?;
                if delete_files && record.kind() == ItemKind::Share {
                    return Err(ApiError::invalid(
                        "a share's file is the user's own: the companion removes only files it wrote (a download's)",
                    ));
                }
                let now = Instant::now();
                inner.supervisor.remove(id, now)?;
                let carried = shared.carry_out(inner);
                if let Some(error) = carried.save_failed {
                    let bytes = inner
                        .manifests
                        .get(id)
                        .map_or(0, |kept| kept.manifest.artifact_bytes);
                    inner.supervisor.unremove(record, bytes, now);
                    shared.carry_out(inner);
                    return Err(ApiError::io(error));
                }
                inner.manifests.remove(id);
                inner.live.remove(id);
                inner.verified.remove(id);
                inner.activity.forget(id);
                Ok((record, carried.stops))
            })
            .await?;
        for stop in stops {
            let _ = stop.await;
        }
        let (files_removed, files_kept) = match record.model_id.parse::<ModelId>() {
            Ok(model) if delete_files => {
                let dir = record.download().map_or_else(
                    || self.library.downloads_dir(),
                    |d| self.library.download_dir(d),
                );
                tokio::task::spawn_blocking(move || remove_download_files(&dir, &model))
                    .await
                    .unwrap_or_else(|_| (Vec::new(), Some("the removal failed".to_owned())))
            }
            _ => (Vec::new(), None),
        };
        let _ = std::fs::remove_file(self.library.manifest_path(id));
        let removed = Removed {
            id: id.to_string(),
            files_removed,
            files_kept,
        };
        self.publish(ApiEvent::Removed(removed.clone()));
        Ok(removed)
    }

    /// `GET /api/v1/items/{id}/receipt`: the receipt, read as one.
    pub(crate) async fn receipt(&self, id: &ItemId) -> Result<ImportReceipt, ApiError> {
        let asked = id.clone();
        let path = self
            .asked(move |_, inner| {
                inner
                    .supervisor
                    .record(&asked)
                    .ok_or_else(|| ApiError::not_found(asked.as_str()))?;
                Ok(inner.live.get(&asked).and_then(|live| live.receipt.clone()))
            })
            .await?;
        let path = path.ok_or_else(|| {
            ApiError::new(404, "not-found", format!("item {id} has no receipt yet"))
        })?;
        read_receipt(&path).map(|(receipt, _)| receipt)
    }

    /// `GET /api/v1/log`.
    pub(crate) async fn log_page(&self, limit: usize) -> Result<LogPage, ApiError> {
        self.asked(move |_, inner| {
            let entries = (inner.log.read_last(limit)).map_err(|e| ApiError::io(e.to_string()))?;
            Ok(LogPage { entries })
        })
        .await
    }

    fn append_log(&self, log: &mut TransferLog, entry: LogEntry) {
        let written = log.append(&entry);
        if let Err(error) = written {
            tracing::error!("cannot write the transfer log: {error}");
        }
        self.publish(ApiEvent::Log(entry));
    }

    /// One report of a run.
    fn handle(&self, inner: &mut Inner, id: ItemId, run: RunId, event: RunEvent) {
        let now = Instant::now();
        // From the run when the item is gone (removed while it stopped).
        let model_id = inner
            .supervisor
            .record(&id)
            .map(|record| record.model_id.clone())
            .or_else(|| {
                inner
                    .runs
                    .get(&(id.clone(), run))
                    .map(|data| data.model_id.clone())
            })
            .unwrap_or_default();
        // The figures shown are the last run's.
        let shown = inner
            .live
            .get(&id)
            .is_some_and(|live| live.run == Some(run));
        let artifact_bytes = inner
            .manifests
            .get(&id)
            .map_or(0, |kept| kept.manifest.artifact_bytes);
        let mut changed = shown;
        match event {
            RunEvent::Phase(phase) => {
                inner
                    .supervisor
                    .handle_run(&id, run, RunInput::Phase(phase), now);
                changed = false;
            }
            RunEvent::Verifying(bytes) => {
                if shown && let Some(live) = inner.live.get_mut(&id) {
                    live.verified_bytes = bytes;
                }
            }
            RunEvent::Verified(verified) => {
                if inner.supervisor.record(&id).is_some() {
                    inner.verified.insert(id.clone(), verified);
                }
                if shown && let Some(live) = inner.live.get_mut(&id) {
                    live.verified_bytes = artifact_bytes;
                }
            }
            RunEvent::Opened { resumed_bytes } => {
                if shown && let Some(live) = inner.live.get_mut(&id) {
                    live.verified_bytes = resumed_bytes;
                }
            }
            RunEvent::Listening { addr, peer_id } => {
                if shown {
                    let mirrors = match inner.supervisor.record(&id).map(|r| &r.work) {
                        Some(crate::library::Work::Share(share)) => share.mirrors.clone(),
                        _ => Vec::new(),
                    };
                    if let Some(live) = inner.live.get_mut(&id) {
                        live.serving = Some(views::ServingAt {
                            addr,
                            peer_id,
                            mirrors,
                        });
                    }
                    inner.supervisor.note_port(&id, addr.port());
                }
            }
            RunEvent::AlreadyComplete {
                file,
                receipt,
                seeding,
            } => {
                if let Some(live) = inner.live.get_mut(&id) {
                    live.file = Some(file);
                    live.receipt = Some(receipt);
                    live.verified_bytes = artifact_bytes;
                }
                inner
                    .supervisor
                    .handle_run(&id, run, RunInput::Delivered { seeding }, now);
            }
            RunEvent::Reuse(ahead) => {
                if let Some(live) = inner.live.get_mut(&id) {
                    live.reuse = (ahead != ChunkListAhead::NotNeeded).then(|| ahead.to_string());
                }
            }
            RunEvent::Report(report) => {
                self.note_report(inner, &id, run, &model_id, report, shown, now);
            }
            RunEvent::Metrics(metrics) => {
                if let Some(data) = inner.runs.get_mut(&(id.clone(), run)) {
                    data.last_metrics = Some(metrics.clone());
                }
                if shown && let Some(live) = inner.live.get_mut(&id) {
                    live.sources = metrics
                        .peers
                        .iter()
                        .map(|peer| SourceView {
                            peer_id: peer.id.to_string(),
                            downloaded_bytes: peer.downloaded_bytes(),
                            uploaded_bytes: peer.uploaded_bytes,
                        })
                        .collect();
                    live.peers = metrics.peers_connected;
                    live.uploaded_bytes = metrics.uploaded_bytes;
                }
                if shown && inner.supervisor.record(&id).is_some() {
                    let view = inner.activity.record(&id, run, &metrics, now, unix_now());
                    self.publish(ApiEvent::Activity(Box::new(view)));
                }
                let counters = Counters {
                    verified_bytes: metrics.verified_bytes,
                    in_flight_bytes: metrics.in_flight_bytes,
                    peers: metrics.peers_connected,
                    addresses_known: metrics.addresses_known,
                    caps: Caps {
                        max_upload: metrics.upload_cap,
                        max_download: metrics.download_cap,
                    },
                };
                inner
                    .supervisor
                    .handle_run(&id, run, RunInput::Counters(counters), now);
            }
            RunEvent::Ended(ending) => {
                self.log_ending(inner, &id, run, &model_id, &ending);
                inner.runs.remove(&(id.clone(), run));
                if inner.running.get(&id).is_some_and(|(r, _)| *r == run) {
                    inner.running.remove(&id);
                }
                if shown && let Some(live) = inner.live.get_mut(&id) {
                    live.peers = 0;
                    live.serving = None;
                    live.reach = None;
                }
                if let Some(view) = inner.activity.ended(&id, run) {
                    self.publish(ApiEvent::Activity(Box::new(view)));
                }
                let end = match ending {
                    Ending::Stopped(_) => RunEnd::Stopped,
                    Ending::Finished => RunEnd::Finished,
                    Ending::Failed { failure, .. } => RunEnd::Failed(failure),
                };
                inner
                    .supervisor
                    .handle_run(&id, run, RunInput::Ended(end), now);
            }
        }
        self.carry_out(inner);
        if changed && let Some(view) = self.view(inner, &id, now) {
            self.publish(ApiEvent::Item(Box::new(view)));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn note_report(
        &self,
        inner: &mut Inner,
        id: &ItemId,
        run: RunId,
        model_id: &str,
        report: NodeReport,
        shown: bool,
        now: Instant,
    ) {
        let data = inner.runs.entry((id.clone(), run)).or_default();
        match report {
            NodeReport::Reach { reach } if shown => {
                let view = ReachView::of(&reach);
                let changed = inner
                    .live
                    .get_mut(id)
                    .is_some_and(|live| live.reach.replace(view.clone()) != Some(view));
                if changed && let Some(view) = self.view(inner, id, now) {
                    self.publish(ApiEvent::Item(Box::new(view)));
                }
            }
            NodeReport::PeerConnected { peer, addr, .. } => {
                data.connected.insert(peer, addr);
            }
            NodeReport::PeerDisconnected {
                peer,
                addr,
                uploaded_chunks,
                uploaded_bytes,
                ..
            } => {
                data.connected.remove(&peer);
                if uploaded_bytes > 0 {
                    let mut entry = LogEntry::new(
                        id,
                        model_id,
                        Direction::Upload,
                        peer.to_string(),
                        uploaded_bytes,
                        Ended::Disconnected,
                    );
                    entry.address = Some(addr.to_string());
                    entry.chunks = Some(uploaded_chunks);
                    self.append_log(&mut inner.log, entry);
                }
            }
            NodeReport::Progress {
                verified_bytes,
                peers,
                ..
            } if shown => {
                if let Some(live) = inner.live.get_mut(id) {
                    live.verified_bytes = verified_bytes;
                    live.peers = peers as u64;
                }
            }
            NodeReport::Delivered {
                path,
                receipt,
                seeding,
            } => {
                data.delivered_logged = true;
                self.log_delivery(&mut inner.log, id, model_id, &receipt);
                let artifact_bytes = inner
                    .manifests
                    .get(id)
                    .map_or(0, |kept| kept.manifest.artifact_bytes);
                if let Some(live) = inner.live.get_mut(id) {
                    live.file = Some(path);
                    live.receipt = Some(receipt);
                    live.verified_bytes = artifact_bytes;
                }
                if let Some(view) = inner.activity.delivered(id) {
                    self.publish(ApiEvent::Activity(Box::new(view)));
                }
                inner
                    .supervisor
                    .handle_run(id, run, RunInput::Delivered { seeding }, now);
            }
            _ => {}
        }
    }

    /// Logs, from a delivered download's receipt, what each peer sent.
    fn log_delivery(&self, log: &mut TransferLog, id: &ItemId, model_id: &str, receipt: &Path) {
        let (receipt_value, sha256) = match read_receipt(receipt) {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(
                    "cannot read the receipt {}: {}",
                    receipt.display(),
                    error.body.error
                );
                return;
            }
        };
        let ReceiptSource::Peers(summary) = &receipt_value.source else {
            return;
        };
        for peer in &summary.peers {
            let mut entry = LogEntry::new(
                id,
                model_id,
                Direction::Download,
                peer.peer_id.clone(),
                peer.bytes,
                Ended::Delivered,
            );
            entry.address = Some(peer.address.clone()).filter(|a| !a.is_empty());
            entry.chunks = Some(peer.chunks);
            entry.receipt = Some(ReceiptRef {
                path: receipt.to_owned(),
                sha256: sha256.to_hex(),
            });
            self.append_log(log, entry);
        }
        for mirror in &summary.mirrors {
            let mut entry = LogEntry::from_mirror(
                id,
                model_id,
                &mirror.url,
                mirror.bytes,
                mirror.chunks,
                Ended::Delivered,
            );
            entry.receipt = Some(ReceiptRef {
                path: receipt.to_owned(),
                sha256: sha256.to_hex(),
            });
            self.append_log(log, entry);
        }
    }

    /// Logs what a run moved and had not logged yet when it ended: bytes
    /// fetched by a download that was not delivered, bytes served to the
    /// peers still connected.
    fn log_ending(
        &self,
        inner: &mut Inner,
        id: &ItemId,
        run: RunId,
        model_id: &str,
        ending: &Ending,
    ) {
        let Some(data) = inner.runs.get(&(id.clone(), run)) else {
            return;
        };
        let (last, ended) = match ending {
            Ending::Stopped(last) => (last.as_ref(), Ended::Stopped),
            Ending::Failed { last, .. } => (last.as_ref(), Ended::Failed),
            Ending::Finished => (None, Ended::Stopped),
        };
        let Some(metrics) = last.or(data.last_metrics.as_ref()) else {
            return;
        };
        for mirror in &metrics.mirrors {
            if !data.delivered_logged && mirror.download.bytes > 0 {
                self.append_log(
                    &mut inner.log,
                    LogEntry::from_mirror(
                        id,
                        model_id,
                        &mirror.label,
                        mirror.download.bytes,
                        mirror.download.chunks,
                        ended,
                    ),
                );
            }
        }
        for peer in &metrics.peers {
            if !data.delivered_logged && peer.downloaded_bytes() > 0 {
                let entry = LogEntry::new(
                    id,
                    model_id,
                    Direction::Download,
                    peer.id.to_string(),
                    peer.downloaded_bytes(),
                    ended,
                );
                self.append_log(&mut inner.log, entry);
            }
            if let Some(addr) = data.connected.get(&peer.id)
                && peer.uploaded_bytes > 0
            {
                let mut entry = LogEntry::new(
                    id,
                    model_id,
                    Direction::Upload,
                    peer.id.to_string(),
                    peer.uploaded_bytes,
                    ended,
                );
                entry.address = Some(addr.to_string());
                self.append_log(&mut inner.log, entry);
            }
        }
    }
}

impl Owner {
    /// The owner's loop, until the companion ends it: the commands sent
    /// to it, the runs' reports, the supervisor's deadlines, the follows'
    /// lookups when the schedule says (not once the companion stops), and
    /// a sample of the rates every [`crate::activity::RATE_EVERY`].
    pub(crate) async fn run(
        self,
        shared: Arc<Shared>,
        mut reports: mpsc::UnboundedReceiver<(ItemId, RunId, RunEvent)>,
    ) {
        let Owner {
            mut inner,
            mut commands,
        } = self;
        let mut tick = tokio::time::interval(crate::activity::RATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reports_open = true;
        loop {
            let stopping = *shared.shutdown.borrow();
            let follow_due = if stopping {
                None
            } else {
                for lookup in inner.following.schedule.poll_due(Instant::now()) {
                    shared.look_up_later(lookup);
                }
                inner.following.schedule.poll_timeout()
            };
            let due = inner.supervisor.poll_timeout();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command(&shared, &mut inner),
                    None => return,
                },
                report = reports.recv(), if reports_open => match report {
                    Some((id, run, event)) => shared.handle(&mut inner, id, run, event),
                    None => reports_open = false,
                },
                () = sleep_until(due) => {
                    inner.supervisor.handle_timeout(Instant::now());
                    shared.carry_out(&mut inner);
                }
                () = sleep_until(follow_due) => {}
                _ = tick.tick(), if !stopping => {
                    let sample = inner.activity.sample(Instant::now(), unix_now());
                    shared.publish(ApiEvent::Rates(sample));
                }
            }
        }
    }
}

/// Sleeps until `due`, or for ever.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
        None => std::future::pending().await,
    }
}

/// The refusal of a request the owner can no longer answer.
fn stopped() -> ApiError {
    ApiError::io("the companion is stopping")
}

/// Seconds since the Unix epoch now, by the wall clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A receipt of ours, read as one, with the SHA-256 of its bytes.
fn read_receipt(path: &Path) -> Result<(ImportReceipt, Sha256Digest), ApiError> {
    let bytes = crate::library::read_own_file(path, 1 << 20)
        .map_err(|e| ApiError::io(e.to_string()))?
        .ok_or_else(|| ApiError::new(404, "not-found", format!("{} is gone", path.display())))?;
    let receipt = serde_json::from_slice::<ImportReceipt>(&bytes)
        .map_err(|e| ApiError::io(format!("{} is not a receipt: {e}", path.display())))?;
    Ok((receipt, Sha256Digest::of(&bytes)))
}

/// Looks for a delivered download's file and receipt (the views show
/// them); why it cannot run when either is gone.
fn delivered_files(dir: &Path, kept: &Kept, live: &mut Live) -> Result<(), Failure> {
    let paths = DownloadPaths::new(dir, &kept.manifest.model_id);
    let present = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
    if present(&paths.artifact) && present(&paths.receipt) {
        live.file = Some(paths.artifact);
        live.receipt = Some(paths.receipt);
        live.verified_bytes = kept.manifest.artifact_bytes;
        Ok(())
    } else {
        Err(Failure::new(
            ProblemKind::FileGone,
            format!(
                "the delivered file {} or its receipt is gone; remove the item and add the download again to fetch it again",
                paths.artifact.display()
            ),
        ))
    }
}

/// Reads and checks item `item`'s kept manifest.
fn load_kept(library: &LibraryDir, item: &ItemRecord) -> Result<Kept, Failure> {
    let failed = |text: String| Failure::new(ProblemKind::ManifestChanged, text);
    let bytes = library
        .read_manifest(&item.id)
        .map_err(|error| failed(format!("its manifest cannot be read: {error}")))?;
    let sha256 = Sha256Digest::of(&bytes);
    if sha256.to_hex() != item.manifest_sha256 {
        return Err(failed(format!(
            "its manifest {} changed since it was added",
            library.manifest_path(&item.id).display()
        )));
    }
    let manifest = Manifest::parse_bytes(&bytes)
        .map_err(|error| failed(format!("its manifest is invalid: {error}")))?;
    Ok(Kept {
        manifest,
        sha256,
        bytes: Arc::from(bytes),
    })
}

/// Removes a removed item's download files, waiting up to 5 s for its
/// stopped run to let the download go: those removed, and why the others
/// stay (another process has the download open, or the disk refused).
fn remove_download_files(dir: &Path, model: &ModelId) -> (Vec<PathBuf>, Option<String>) {
    let until = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let done = minimodel_swarm::resume::remove_download(dir, model);
        match &done.error {
            Some(minimodel_swarm::resume::ResumeError::InUse { .. }) if Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            error => {
                let why = error.as_ref().map(|error| crate::runner::chain(error));
                return (done.removed, why);
            }
        }
    }
}
