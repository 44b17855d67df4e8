//! The companion: the library's items, run through [`crate::runner`],
//! changed through the API, remembered in the state file.
//!
//! - Adding an item reads its manifest, judges its signature against the
//!   keyring, checks the consent the request carries (and, for a
//!   download, the quota) before anything is written; then the manifest
//!   is kept in the library, the item is written to the state file, and
//!   it starts.
//! - [`Companion::reconcile`] makes what runs match what the state says:
//!   items paused, removed or failed stop; items that should run start,
//!   each with its caps (its own, and its part of the library's).
//! - The runs' reports come back to one task that keeps each item's live
//!   view, writes the transfer log, records deliveries in the state file
//!   and tells the API's event stream.
//! - On stop (SIGTERM, or `POST /api/v1/shutdown`) every item stops (a
//!   download checkpoints), the last transfers are logged, and the state
//!   is written; after a `kill -9` the next start finds the state as last
//!   written and every download's own resume state (`docs/resume.md`).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minimodel_swarm::app::Limits as RunLimits;
use minimodel_swarm::app::fetch::DownloadPlan;
use minimodel_swarm::app::peers::{from_offers, from_request};
use minimodel_swarm::app::share::VerifiedShare;
use minimodel_swarm::app::ticket::{QUERY_TIMEOUT, manifest_of};
use minimodel_swarm::dht::{Bootstrap, DiscoveryConfig};
use minimodel_swarm::node::{NodeMetrics, NodeReport};
use minimodel_swarm::offer::{ImportRequest, PeerOffer};
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_swarm::resume::DownloadPaths;
use minimodel_swarm::ticket::Ticket;
use minimodel_swarm::transport::{Identity, TransportTuning};
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::trust::SignatureCheck;
use minimodel_verifier::{ModelId, Sha256Digest};
use minimodel_wire::{PeerAddr, PeerId};
use tokio::sync::{Mutex, broadcast, mpsc, watch};

use crate::library::{
    Caps, ConsentRecord, DownloadRecord, ENDPOINT_FORMAT, Endpoint, ItemId, ItemKind, ItemRecord,
    LibraryDir, LibraryError, LibraryLock, LibraryState, MAX_ITEMS, MAX_MANIFEST_BYTES, MAX_PEERS,
    ShareRecord, Work,
};
use crate::quota::{self, QuotaRefusal};
use crate::runner::{DownloadJob, Ending, Job, RunEvent, Runner, RunningItem, ShareJob};
use crate::token::Token;
use crate::translog::{Direction, Ended, LogEntry, ReceiptRef, TransferLog};
use crate::trust::{TrustStore, TrustStoreError, is_first_use};
use crate::view::{
    AddDownload, AddShare, ApiEvent, Ask, CompanionView, Consent, ErrorBody, Handoff, ItemState,
    ItemView, LibraryView, LimitsView, LogPage, Preview, QuotaView, Removed, ServingView,
    SetLimits, SignatureView, SourceView, VIEW_FORMAT,
};

/// How a companion runs.
#[derive(Debug, Clone)]
pub struct CompanionConfig {
    /// The library directory.
    pub library: PathBuf,
    /// Where the API listens (loopback unless the user says otherwise).
    pub api: SocketAddr,
    /// More host names the API answers to (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// The address items serve on (`0.0.0.0`: every interface).
    pub serve_ip: IpAddr,
    /// Size at which the transfer log rotates.
    pub rotate_log_bytes: u64,
    /// DHT nodes to join instead of the public ones, for downloads that
    /// ask for the DHT without naming any.
    pub dht_bootstrap: Vec<std::net::SocketAddrV4>,
    /// Ask this network's router to map each serving item's port (UPnP
    /// IGD, NAT-PMP, PCP); off unless the user turns it on when starting
    /// the companion (an item's consent words do not mention it).
    pub port_mapping: bool,
    /// Announce each serving item on the local network and look for each
    /// download's peers there (mDNS); off unless the user turns it on
    /// when starting the companion.
    pub lan: bool,
}

impl CompanionConfig {
    /// The defaults for `library`: the API on `127.0.0.1:7434`, items on
    /// every interface, the log rotating at 8 MiB.
    pub fn new(library: impl Into<PathBuf>) -> Self {
        Self {
            library: library.into(),
            api: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
            allow_hosts: Vec::new(),
            serve_ip: IpAddr::from([0, 0, 0, 0]),
            rotate_log_bytes: crate::translog::DEFAULT_ROTATE_BYTES,
            dht_bootstrap: Vec::new(),
            port_mapping: false,
            lan: false,
        }
    }
}

/// The API's default port.
pub const DEFAULT_API_PORT: u16 = 7434;

/// Opens the one QUIC endpoint every item serves on, on `--serve-ip` at the
/// port the items listened on before when it is free (the first item's
/// first: after an upgrade from a port per item, that item's offers stay
/// good), else at a new one. What concerns the endpoint rather than an
/// item (connections turned away at its door, its port mapping) is
/// logged.
fn open_endpoint(
    config: &CompanionConfig,
    state: &crate::library::LibraryState,
    identity: Arc<Identity>,
) -> Result<minimodel_swarm::node::SharedEndpoint, CompanionError> {
    use minimodel_swarm::node::{CoreConfig, SharedEndpoint};
    let (reports, mut inbox) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(report) = inbox.recv().await {
            match report {
                NodeReport::Turned { addr, reason } => {
                    tracing::debug!(%addr, %reason, "turned away at the endpoint");
                }
                other => tracing::info!(?other, "the items' endpoint"),
            }
        }
    });
    let mut ports: Vec<u16> = Vec::new();
    for port in state.items.iter().filter_map(|item| item.port).chain([0]) {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    let mut last = None;
    for port in ports {
        let bound = SharedEndpoint::bind(
            SocketAddr::new(config.serve_ip, port),
            Arc::clone(&identity),
            TransportTuning::default(),
            &CoreConfig::default(),
            config.port_mapping,
            reports.clone(),
        );
        match bound {
            Ok(endpoint) => return Ok(endpoint),
            Err(error) => {
                if port != 0 {
                    tracing::warn!("cannot serve on port {port} ({error}); trying another");
                }
                last = Some(error);
            }
        }
    }
    Err(CompanionError::Endpoint {
        ip: config.serve_ip,
        source: last.expect("port 0 was tried"),
    })
}

/// Why a companion cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum CompanionError {
    /// The library cannot be used (locked, unsafe, damaged state).
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// The node's identity cannot be read or made.
    #[error("cannot use the identity in the library")]
    Identity(#[source] minimodel_swarm::transport::IdentityError),
    /// The API's address cannot be bound.
    #[error("cannot listen for the API on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The items' QUIC endpoint cannot be opened.
    #[error("cannot open the QUIC endpoint the items serve on ({ip})")]
    Endpoint {
        /// The address asked for (`--serve-ip`).
        ip: IpAddr,
        /// Why.
        #[source]
        source: minimodel_swarm::transport::TransportError,
    },
    /// The transfer log cannot be opened.
    #[error("cannot open the transfer log")]
    Log(#[source] std::io::Error),
    /// The API server failed.
    #[error("the API server failed")]
    Serve(#[source] std::io::Error),
}

/// An API request that is refused or failed: its HTTP status and body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    pub(crate) fn new(status: u16, kind: &str, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                kind: kind.to_owned(),
                error: error.into(),
                hint: None,
                needs: Vec::new(),
            },
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    /// 422: the request's content is refused.
    pub fn invalid(error: impl Into<String>) -> Self {
        Self::new(422, "invalid-input", error)
    }

    /// 404.
    pub fn not_found(id: &str) -> Self {
        Self::new(404, "not-found", format!("no item {id} in the library"))
    }

    fn conflict(error: impl Into<String>) -> Self {
        Self::new(409, "conflict", error)
    }

    fn io(error: impl Into<String>) -> Self {
        Self::new(500, "io", error)
    }

    fn trust(error: TrustStoreError) -> Self {
        let advice = error.advice();
        match error {
            TrustStoreError::Refused(refused) => Self::new(
                422,
                "verification-failed",
                format!("the manifest is refused: {refused}"),
            )
            .hint(advice),
            TrustStoreError::Keyring(problem) => Self::io(problem).hint(advice),
        }
    }
}

/// A manifest as kept: its text's digest and the parsed manifest.
#[derive(Debug, Clone)]
struct Kept {
    manifest: Manifest,
    sha256: Sha256Digest,
    /// The manifest file's bytes: what a manifest query (a ticket) gets.
    bytes: Arc<[u8]>,
}

/// What the API shows of an item beyond its record.
#[derive(Debug, Default)]
struct Live {
    generation: u64,
    state: Option<ItemState>,
    verified_bytes: u64,
    rate: f64,
    peers: u64,
    uploaded_bytes: u64,
    upload_rate: f64,
    last_upload: Option<(std::time::Instant, u64)>,
    sources: Vec<SourceView>,
    signature: Option<SignatureView>,
    effective: Caps,
    serving: Option<ServingView>,
    file: Option<PathBuf>,
    receipt: Option<PathBuf>,
    error: Option<String>,
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

struct Inner {
    state: LibraryState,
    manifests: BTreeMap<ItemId, Kept>,
    live: BTreeMap<ItemId, Live>,
    running: BTreeMap<ItemId, (RunningItem, u64, Caps)>,
    runs: BTreeMap<(ItemId, u64), RunData>,
    verified: BTreeMap<ItemId, Arc<VerifiedShare>>,
    next_generation: u64,
}

pub(crate) struct Shared {
    library: LibraryDir,
    runner: Runner,
    trust: Arc<dyn TrustStore>,
    inner: Mutex<Inner>,
    reconciling: Mutex<()>,
    /// Held by an add from its checks (one item per artifact, one
    /// download per model id, the quota, the item limit) until its item is
    /// in the library: two adds at once would each pass the checks the
    /// other's item fails.
    admission: Mutex<()>,
    log: std::sync::Mutex<TransferLog>,
    events: broadcast::Sender<ApiEvent>,
    started_at: String,
    dht_bootstrap: Vec<std::net::SocketAddrV4>,
    /// Manifests fetched for tickets, newest last (at most
    /// [`TICKET_MANIFESTS_KEPT`]): a preview's answer, so that the add
    /// after it does not ask the peers again. Kept by SHA-256, so a
    /// manifest found here is the one the ticket names.
    ticket_manifests: std::sync::Mutex<std::collections::VecDeque<(Sha256Digest, Vec<u8>)>>,
    /// Ticket queries under way (at most [`TICKET_QUERIES`]; more wait).
    ticket_queries: tokio::sync::Semaphore,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) gate: crate::guard::Gate,
}

/// How many manifests fetched for tickets are kept for the add that
/// follows a preview.
const TICKET_MANIFESTS_KEPT: usize = 8;
/// How many ticket queries (each a QUIC endpoint dialing the ticket's
/// addresses, half a second apart) run at once.
const TICKET_QUERIES: usize = 2;
/// How long a ticket query waits for its turn before it is refused (429).
const TICKET_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A companion, started; [`Companion::run`] serves it until stopped.
pub struct Companion {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    run_events: mpsc::UnboundedReceiver<(ItemId, u64, RunEvent)>,
    token_made: bool,
    _lock: LibraryLock,
}

impl Companion {
    /// Takes the library (refused when another companion holds it),
    /// reads its state, its token (made now when missing) and its
    /// identity, opens the transfer log and binds the API. Nothing runs
    /// until [`Companion::run`].
    pub async fn start(
        config: CompanionConfig,
        trust: Arc<dyn TrustStore>,
    ) -> Result<Companion, CompanionError> {
        let library = LibraryDir::open(&config.library)?;
        let lock = library.lock()?;
        // An `api.json` left by a companion that did not stop cleanly
        // names an address nobody serves now: gone until this one listens.
        match std::fs::remove_file(library.endpoint_path()) {
            Ok(()) => {
                tracing::info!("removed the api.json of a companion that did not stop cleanly")
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(LibraryError::Io {
                    path: library.endpoint_path(),
                    source: error,
                }
                .into());
            }
        }
        let state = library.load_state()?;
        let (token, token_made) = Token::read_or_create(&library)?;
        let identity = Identity::load_or_generate(&library.identity_dir())
            .map_err(CompanionError::Identity)?;
        let log = TransferLog::open(&library.log_dir(), config.rotate_log_bytes)
            .map_err(CompanionError::Log)?;
        let listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|source| CompanionError::Bind {
                addr: config.api,
                source,
            })?;
        let bound = listener
            .local_addr()
            .map_err(|source| CompanionError::Bind {
                addr: config.api,
                source,
            })?;
        let gate = crate::guard::Gate::new(bound, &config.allow_hosts, token.clone());
        let (run_events_tx, run_events) = mpsc::unbounded_channel();
        let endpoint = open_endpoint(&config, &state, Arc::new(identity))?;
        let runner = Runner::new(endpoint, run_events_tx).with_lan(config.lan);
        let mut manifests = BTreeMap::new();
        let mut live = BTreeMap::new();
        for item in &state.items {
            let mut entry = Live::default();
            match load_kept(&library, item) {
                Ok(kept) => {
                    if let Some(download) = item.download().filter(|d| d.delivered) {
                        delivered_view(&library, &kept, download, &mut entry);
                    }
                    manifests.insert(item.id.clone(), kept);
                }
                Err(error) => {
                    entry.state = Some(ItemState::Failed);
                    entry.error = Some(error);
                }
            }
            live.insert(item.id.clone(), entry);
        }
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            library,
            runner,
            trust,
            inner: Mutex::new(Inner {
                state,
                manifests,
                live,
                running: BTreeMap::new(),
                runs: BTreeMap::new(),
                verified: BTreeMap::new(),
                next_generation: 1,
            }),
            reconciling: Mutex::new(()),
            admission: Mutex::new(()),
            log: std::sync::Mutex::new(log),
            events,
            started_at: now_rfc3339(),
            dht_bootstrap: config.dht_bootstrap,
            ticket_manifests: std::sync::Mutex::new(std::collections::VecDeque::new()),
            ticket_queries: tokio::sync::Semaphore::new(TICKET_QUERIES),
            shutdown,
            gate,
        });
        Ok(Companion {
            shared,
            listener,
            run_events,
            token_made,
            _lock: lock,
        })
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The API's URL (`http://127.0.0.1:PORT` for a loopback or wildcard
    /// bind).
    pub fn url(&self) -> String {
        let addr = self.api_addr();
        if addr.ip().is_unspecified() || addr.ip().is_loopback() {
            format!("http://127.0.0.1:{}", addr.port())
        } else {
            format!("http://{addr}")
        }
    }

    /// Whether the token was made by this start.
    pub fn token_made(&self) -> bool {
        self.token_made
    }

    /// The companion's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.runner.peer_id()
    }

    /// Runs every item that should run and serves the API until `stop`
    /// resolves or the API is asked to shut down; then stops every item,
    /// logs their last transfers and writes the state.
    pub async fn run(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CompanionError> {
        self.run_then(stop, |_| {}).await
    }

    /// [`Companion::run`], calling `ready` with the API's URL once every
    /// item that should run was started and `api.json` is written (from
    /// then on the thin commands find it).
    pub async fn run_then(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
        ready: impl FnOnce(&str),
    ) -> Result<(), CompanionError> {
        let Companion {
            shared,
            listener,
            mut run_events,
            _lock,
            ..
        } = self;
        let url = {
            let addr = listener.local_addr().map_err(CompanionError::Serve)?;
            if addr.ip().is_unspecified() || addr.ip().is_loopback() {
                format!("http://127.0.0.1:{}", addr.port())
            } else {
                format!("http://{addr}")
            }
        };
        let supervisor = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                while let Some((id, generation, event)) = run_events.recv().await {
                    shared.handle(id, generation, event).await;
                }
            })
        };
        shared.reconcile().await;
        let endpoint = Endpoint {
            format: ENDPOINT_FORMAT.to_owned(),
            url,
            pid: std::process::id(),
        };
        let mut text = serde_json::to_vec_pretty(&endpoint).unwrap_or_default();
        text.push(b'\n');
        shared
            .library
            .write_whole(&shared.library.endpoint_path(), &text)?;
        ready(&endpoint.url);
        let mut shutdown = shared.shutdown.subscribe();
        let signal = {
            let shared = Arc::clone(&shared);
            async move {
                tokio::select! {
                    _ = stop => {}
                    _ = shutdown.wait_for(|stop| *stop) => {}
                }
                let _ = shared.shutdown.send(true);
            }
        };
        // On a stop the items stop at once, beside the API's drain, which
        // gets at most `API_DRAIN` (a client holding a connection open, or
        // a ticket lookup under way, cannot hold the stop).
        let mut stopping = shared.shutdown.subscribe();
        let serving = crate::api::serve(listener, Arc::clone(&shared), signal);
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            () = async {
                // The guard it answers with is let go at once.
                let _ = stopping.wait_for(|stop| *stop).await;
            } => {
                let drained = async {
                    tokio::time::timeout(API_DRAIN, &mut serving)
                        .await
                        .unwrap_or(Ok(()))
                };
                let (served, ()) = tokio::join!(drained, shared.stop_all());
                served
            }
        };
        shared.stop_all().await;
        shared.runner.endpoint().close().await;
        // Every run has ended and sent its last report: let the
        // supervisor log them.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if shared.inner.lock().await.runs.is_empty() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        supervisor.abort();
        {
            let inner = shared.inner.lock().await;
            shared.library.save_state(&inner.state)?;
        }
        let _ = std::fs::remove_file(shared.library.endpoint_path());
        served.map_err(CompanionError::Serve)
    }
}

/// How long the API may take, once the companion stops, to finish what
/// it answers.
const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What a delivered download shows before anything runs: its file and
/// receipt, or why it cannot be used.
fn delivered_view(library: &LibraryDir, kept: &Kept, download: &DownloadRecord, live: &mut Live) {
    let paths = DownloadPaths::new(&library.downloads_dir(), &kept.manifest.model_id);
    let present = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
    if present(&paths.artifact) && present(&paths.receipt) {
        // Verified as its receipt records (`verified_at`); a seeding
        // download reads it again before it serves.
        if !(download.serve && download.seed_after) {
            live.state = Some(ItemState::Done);
        }
        live.file = Some(paths.artifact);
        live.receipt = Some(paths.receipt);
        live.verified_bytes = kept.manifest.artifact_bytes;
    } else {
        live.state = Some(ItemState::Failed);
        live.error = Some(format!(
            "the delivered file {} or its receipt is gone; remove the item and add the download again to fetch it again",
            paths.artifact.display()
        ));
    }
}

/// Reads and checks item `item`'s kept manifest.
fn load_kept(library: &LibraryDir, item: &ItemRecord) -> Result<Kept, String> {
    let bytes = library
        .read_manifest(&item.id)
        .map_err(|error| format!("its manifest cannot be read: {error}"))?;
    let sha256 = Sha256Digest::of(&bytes);
    if sha256.to_hex() != item.manifest_sha256 {
        return Err(format!(
            "its manifest {} changed since it was added",
            library.manifest_path(&item.id).display()
        ));
    }
    let manifest = Manifest::parse_bytes(&bytes)
        .map_err(|error| format!("its manifest is invalid: {error}"))?;
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
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let done = minimodel_swarm::resume::remove_download(dir, model);
        match &done.error {
            Some(minimodel_swarm::resume::ResumeError::InUse { .. })
                if std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            error => {
                let why = error.as_ref().map(|error| crate::runner::chain(error));
                return (done.removed, why);
            }
        }
    }
}

/// The smaller of two caps (`None` is no cap).
fn min_cap(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Whether a record should run now, and in which directions it moves
/// bytes (upload, download).
fn should_run(record: &ItemRecord, live: Option<&Live>) -> Option<(bool, bool)> {
    if record.paused || live.is_some_and(|live| live.state == Some(ItemState::Failed)) {
        return None;
    }
    match &record.work {
        Work::Share(_) => Some((true, false)),
        Work::Download(download) if download.delivered => {
            (download.serve && download.seed_after).then_some((true, false))
        }
        Work::Download(download) => Some((download.serve, true)),
    }
}

/// Each runnable item's caps as its node holds them: its own. The
/// library's caps are the items' endpoint's, shared by the gate's rule
/// (`docs/swarm.md`): the upload cap among the items that upload, the
/// download cap among those that would download now; a change of either
/// restarts nothing.
fn effective_caps(inner: &Inner) -> BTreeMap<ItemId, Caps> {
    let wanted: Vec<(&ItemRecord, (bool, bool))> = inner
        .state
        .items
        .iter()
        .filter(|record| inner.manifests.contains_key(&record.id))
        .filter_map(|record| should_run(record, inner.live.get(&record.id)).map(|d| (record, d)))
        .collect();
    wanted
        .into_iter()
        .map(|(record, (up, down))| {
            let caps = Caps {
                max_upload: if up { record.caps.max_upload } else { None },
                max_download: if down { record.caps.max_download } else { None },
            };
            (record.id.clone(), caps)
        })
        .collect()
}

fn signature_view(check: &SignatureCheck) -> SignatureView {
    let key = check.publisher_key();
    SignatureView {
        status: if check.is_signed() {
            "signed"
        } else {
            "unsigned"
        }
        .to_owned(),
        publisher_id: check.publisher_id().to_string(),
        key_id: key.map(|key| key.key_id().to_string()),
        trust: check.trust().map(|trust| {
            serde_json::to_value(trust)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        }),
        text: check.to_string(),
    }
}

/// A readable size.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The ticket of a serving item: the manifest file's digest, its
/// publisher key id when signed, this node at its first addresses (the
/// ones a ticket carries). `None` when they make no ticket (none a peer
/// can dial).
fn ticket_of(kept: &Kept, mut peer: PeerAddrs) -> Option<String> {
    let key_id = minimodel_verifier::signing::manifest::check_manifest_signature(&kept.manifest)
        .ok()
        .flatten()
        .map(|key| key.key_id());
    peer.addrs
        .truncate(minimodel_swarm::ticket::MAX_TICKET_ADDRS);
    minimodel_swarm::ticket::Ticket::new(kept.sha256, key_id, vec![peer])
        .ok()
        .map(|ticket| ticket.to_string())
}

/// A manifest read from a request.
struct Loaded {
    manifest: Manifest,
    bytes: Vec<u8>,
    sha256: Sha256Digest,
}

fn load_manifest(path: Option<&Path>, text: Option<&str>) -> Result<Loaded, ApiError> {
    let bytes = match (path, text) {
        (Some(path), None) => {
            // Opened without waiting (a FIFO would block the handler's
            // thread until someone writes to it) and read only when it is
            // a regular file: not a FIFO, a device or a directory.
            let file = minimodel_swarm::platform::open_nonblocking(path).map_err(|error| {
                ApiError::invalid(format!("cannot read manifest {}: {error}", path.display()))
            })?;
            if !file.metadata().is_ok_and(|meta| meta.is_file()) {
                return Err(ApiError::invalid(format!(
                    "manifest {} is not a regular file",
                    path.display()
                )));
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_MANIFEST_BYTES + 1),
                &mut bytes,
            )
            .map_err(|error| {
                ApiError::invalid(format!("cannot read manifest {}: {error}", path.display()))
            })?;
            bytes
        }
        (None, Some(text)) => text.as_bytes().to_vec(),
        _ => {
            return Err(ApiError::invalid(
                "name the manifest with exactly one of manifest_path and manifest",
            ));
        }
    };
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ApiError::invalid(format!(
            "the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let manifest = Manifest::parse_bytes(&bytes).map_err(|error| match path {
        // A file that is no manifest at all: its content is not quoted
        // back (the API must not become a way to read the user's files).
        Some(path) if !looks_like_manifest(&bytes) => ApiError::invalid(format!(
            "{} is not a minimodel manifest (it has no `format: minimodel-manifest-v0` or `-v1` line)",
            path.display()
        )),
        _ => ApiError::invalid(format!("the manifest is invalid: {error}")),
    })?;
    let sha256 = Sha256Digest::of(&bytes);
    Ok(Loaded {
        manifest,
        bytes,
        sha256,
    })
}

/// Whether `bytes` has a manifest's `format:` line (a manifest's errors
/// may be quoted back; another file's are not).
fn looks_like_manifest(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line == b"format: minimodel-manifest-v0" || line == b"format: minimodel-manifest-v1"
    })
}

fn parse_key(text: Option<&str>) -> Result<Option<PublicKey>, ApiError> {
    text.map(|text| {
        text.trim()
            .parse::<PublicKey>()
            .map_err(|error| ApiError::invalid(format!("publisher_key: {error}")))
    })
    .transpose()
}

/// The peers of a download request, checked against the manifest.
fn download_peers(
    request: &AddDownload,
    manifest: &Manifest,
    ticket_peers: Vec<PeerAddrs>,
) -> Result<Vec<PeerAddrs>, ApiError> {
    let mut named = ticket_peers;
    for text in &request.peers {
        let peer: PeerAddr = text.trim().parse().map_err(|error| {
            ApiError::invalid(format!(
                "peer {text:?}: {error} (PEER_ID@IP:PORT, an IP address)"
            ))
        })?;
        // What an offer or a ticket may not name, a request may not either.
        minimodel_swarm::offer::check_offer_addr(peer.addr)
            .map_err(|error| ApiError::invalid(format!("peer {text:?}: {error}")))?;
        named.push(PeerAddrs {
            id: peer.id,
            addrs: vec![peer.addr],
        });
    }
    let mut offers = Vec::new();
    for (index, value) in request.offers.iter().enumerate() {
        let name = format!("offer {}", index + 1);
        let bytes = serde_json::to_vec(value).map_err(|e| ApiError::invalid(e.to_string()))?;
        let offer =
            PeerOffer::parse(&bytes, &name).map_err(|e| ApiError::invalid(e.to_string()))?;
        offers.push((offer, name));
    }
    let mut peers = from_offers(
        manifest,
        named,
        offers.iter().map(|(offer, name)| (offer, name.as_str())),
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(value) = &request.request {
        let bytes = serde_json::to_vec(value).map_err(|e| ApiError::invalid(e.to_string()))?;
        let import = ImportRequest::parse(&bytes, "the request")
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let more = from_request(&import, manifest).map_err(|e| ApiError::invalid(e.to_string()))?;
        peers = merge_peers(peers.into_iter().chain(more));
    }
    if peers.len() > MAX_PEERS {
        return Err(ApiError::invalid(format!(
            "{} peers; at most {MAX_PEERS}",
            peers.len()
        )));
    }
    if peers.is_empty() && !request.dht {
        return Err(ApiError::invalid("no peers to fetch from")
            .hint("name peers, give offers, a request or a ticket, or set dht"));
    }
    Ok(peers)
}

impl Shared {
    fn publish(&self, event: ApiEvent) {
        let _ = self.events.send(event);
    }

    /// Subscribes to the API's events.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }

    fn append_log(&self, entry: LogEntry) {
        let written = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&entry);
        if let Err(error) = written {
            tracing::error!("cannot write the transfer log: {error}");
        }
        self.publish(ApiEvent::Log(entry));
    }

    /// Where items serve, in words, for the consent question.
    fn serving_words(&self) -> String {
        let ip = self.runner.serve_ip();
        let port_text = format!(
            "UDP port {} (the port every item shares)",
            self.runner.port()
        );
        if ip.is_unspecified() {
            let addrs = minimodel_swarm::addrs::listener_addrs(SocketAddr::new(ip, 1), &[])
                .map(|addrs| {
                    addrs
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!(
                "on {port_text} of every interface of this host ({ip}{})",
                if addrs.is_empty() {
                    String::new()
                } else {
                    format!(": {addrs}")
                }
            )
        } else {
            format!("on {ip}, {port_text}")
        }
    }

    fn trust_words(&self, check: &SignatureCheck) -> Option<Ask> {
        if !is_first_use(check) {
            return None;
        }
        let key = check.publisher_key()?;
        Some(Ask {
            consent: "trust_key".to_owned(),
            words: format!(
                "Trust key {} ({key}) as publisher {}'s, seen for the first time, and pin it in {}. Later manifests of {} must be signed by it.",
                key.key_id(),
                check.publisher_id(),
                self.trust.describe(),
                check.publisher_id()
            ),
        })
    }

    fn share_asks(&self, manifest: &Manifest, check: &SignatureCheck) -> Vec<Ask> {
        let mut asks = Vec::new();
        asks.extend(self.trust_words(check));
        asks.push(Ask {
            consent: "serve".to_owned(),
            words: format!(
                "Serve {} ({}) to any peer that connects, {}, until you pause or remove it. Peers learn this host's address and that it has this artifact. The companion never opens or runs the model.",
                manifest.model_id,
                human(manifest.artifact_bytes),
                self.serving_words()
            ),
        });
        asks
    }

    fn download_asks(
        &self,
        manifest: &Manifest,
        check: &SignatureCheck,
        request: &AddDownload,
        peers: usize,
    ) -> Vec<Ask> {
        let mut asks = Vec::new();
        asks.extend(self.trust_words(check));
        let dht_scope = if request.dht_bootstrap.is_empty() && self.dht_bootstrap.is_empty() {
            "the public BitTorrent DHT"
        } else {
            "the DHT of the configured bootstrap nodes"
        };
        let mut from = Vec::new();
        if peers > 0 {
            from.push(format!(
                "{peers} named peer{}",
                if peers == 1 { "" } else { "s" }
            ));
        }
        from.push("peers they tell of (peer exchange)".to_owned());
        if request.dht {
            from.push(format!("peers found on {dht_scope}"));
        }
        asks.push(Ask {
            consent: "fetch".to_owned(),
            words: format!(
                "Fetch {} ({}) into {} from {}. Every chunk is checked against the manifest before it is kept; the file is delivered only once the whole of it passes. The companion never opens or runs the model.",
                manifest.model_id,
                human(manifest.artifact_bytes),
                self.library.downloads_dir().display(),
                from.join(", ")
            ),
        });
        if request.serve {
            asks.push(Ask {
                consent: "serve".to_owned(),
                words: format!(
                    "While fetching, serve the verified chunks of {} to any peer that connects, {}.",
                    manifest.model_id,
                    self.serving_words()
                ),
            });
        }
        if request.seed_after {
            asks.push(Ask {
                consent: "seed_after".to_owned(),
                words: format!(
                    "Once {} is verified, keep serving it to any peer that connects until you pause or remove it.",
                    manifest.model_id
                ),
            });
        }
        if request.dht {
            asks.push(Ask {
                consent: "dht".to_owned(),
                words: format!(
                    "Look {} up on {dht_scope}: its nodes learn that this address wants it{}.",
                    manifest.model_id,
                    if request.serve {
                        ", and the address is announced there as serving it (anyone can look that up)"
                    } else {
                        ""
                    }
                ),
            });
        }
        asks
    }

    /// The consent missing from `given` among `asks`.
    fn missing(asks: &[Ask], given: &Consent) -> Vec<Ask> {
        asks.iter()
            .filter(|ask| !match ask.consent.as_str() {
                "serve" => given.serve,
                "fetch" => given.fetch,
                "seed_after" => given.seed_after,
                "dht" => given.dht,
                "trust_key" => given.trust_key,
                _ => false,
            })
            .cloned()
            .collect()
    }

    fn consent_error(missing: Vec<Ask>) -> ApiError {
        let names: Vec<&str> = missing.iter().map(|ask| ask.consent.as_str()).collect();
        let mut error = ApiError::new(
            403,
            "consent-needed",
            format!("consent needed: {}", names.join(", ")),
        )
        .hint("show the user each ask's words, and set its consent field only on a yes");
        error.body.needs = missing;
        error
    }

    fn judge(
        &self,
        manifest: &Manifest,
        key: Option<&str>,
        require: bool,
    ) -> Result<SignatureCheck, ApiError> {
        let key = parse_key(key)?;
        self.trust
            .judge(manifest, key.as_ref(), require)
            .map_err(ApiError::trust)
    }

    async fn quota_view(&self, inner: &Inner) -> QuotaView {
        QuotaView {
            quota_bytes: inner.state.limits.quota_bytes,
            used_bytes: used_bytes(inner),
            free_bytes: quota::free_bytes(&self.library.downloads_dir()),
        }
    }

    /// `POST /api/v1/shares/preview`.
    pub(crate) async fn preview_share(&self, request: &AddShare) -> Result<Preview, ApiError> {
        let loaded = load_manifest(
            request.manifest_path.as_deref(),
            request.manifest.as_deref(),
        )?;
        let check = self.judge(
            &loaded.manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        let id = ItemId::of(
            ItemKind::Share,
            &loaded.manifest.model_id,
            &loaded.manifest.chunks.merkle_root,
        );
        Ok(Preview {
            id: id.to_string(),
            kind: ItemKind::Share,
            model_id: loaded.manifest.model_id.to_string(),
            artifact_bytes: loaded.manifest.artifact_bytes,
            signature: signature_view(&check),
            asks: self.share_asks(&loaded.manifest, &check),
            quota: None,
        })
    }

    /// `POST /api/v1/shares`.
    pub(crate) async fn add_share(&self, request: AddShare) -> Result<ItemView, ApiError> {
        request.caps.check().map_err(ApiError::invalid)?;
        let loaded = load_manifest(
            request.manifest_path.as_deref(),
            request.manifest.as_deref(),
        )?;
        let manifest = &loaded.manifest;
        let check = self.judge(
            manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        if !request.file.is_absolute() {
            return Err(ApiError::invalid(format!(
                "file {} must be an absolute path",
                request.file.display()
            )));
        }
        let meta = std::fs::metadata(&request.file).map_err(|error| {
            ApiError::invalid(format!("cannot use {}: {error}", request.file.display()))
        })?;
        if !meta.is_file() || meta.len() != manifest.artifact_bytes {
            return Err(ApiError::new(
                422,
                "verification-failed",
                format!(
                    "{} is not the artifact: {} bytes, the manifest says {}",
                    request.file.display(),
                    meta.len(),
                    manifest.artifact_bytes
                ),
            ));
        }
        let id = ItemId::of(
            ItemKind::Share,
            &manifest.model_id,
            &manifest.chunks.merkle_root,
        );
        let admission = self.admission.lock().await;
        {
            let inner = self.inner.lock().await;
            if inner.state.item(&id).is_some() {
                return Err(ApiError::conflict(format!(
                    "{} is shared already (item {id})",
                    manifest.model_id
                )));
            }
            // One item per artifact: its swarm is served once on the
            // companion's port.
            let download = ItemId::of(
                ItemKind::Download,
                &manifest.model_id,
                &manifest.chunks.merkle_root,
            );
            if inner.state.item(&download).is_some() {
                return Err(ApiError::conflict(format!(
                    "{} is in the library as a download already (item {download}); it serves from there",
                    manifest.model_id
                )));
            }
            if inner.state.items.len() >= MAX_ITEMS {
                return Err(ApiError::new(
                    429,
                    "too-many",
                    format!("the library holds {MAX_ITEMS} items already"),
                ));
            }
        }
        let missing = Self::missing(&self.share_asks(manifest, &check), &request.consent);
        if !missing.is_empty() {
            return Err(Self::consent_error(missing));
        }
        let check = self.settle(check, request.consent.trust_key)?;
        let record = ItemRecord {
            id: id.clone(),
            model_id: manifest.model_id.to_string(),
            manifest_sha256: loaded.sha256.to_hex(),
            added_at: now_rfc3339(),
            paused: false,
            caps: request.caps,
            port: None,
            consent: ConsentRecord {
                serve: true,
                at: now_rfc3339(),
                ..ConsentRecord::default()
            },
            publisher_key: request.publisher_key.clone(),
            require_signature: request.require_signature,
            work: Work::Share(ShareRecord {
                file: request.file.clone(),
            }),
        };
        self.insert(record, &loaded, check, admission).await
    }

    fn settle(&self, check: SignatureCheck, trust_key: bool) -> Result<SignatureCheck, ApiError> {
        let named = check.trust() == Some(minimodel_verifier::signing::trust::KeyTrust::Named);
        if (trust_key && is_first_use(&check)) || named {
            self.trust.pin(check).map_err(ApiError::trust)
        } else {
            Ok(check)
        }
    }

    async fn insert(
        &self,
        record: ItemRecord,
        loaded: &Loaded,
        check: SignatureCheck,
        admission: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<ItemView, ApiError> {
        let id = record.id.clone();
        self.library
            .write_whole(&self.library.manifest_path(&id), &loaded.bytes)
            .map_err(|e| ApiError::io(e.to_string()))?;
        {
            let mut inner = self.inner.lock().await;
            if inner.state.item(&id).is_some() {
                return Err(ApiError::conflict(format!("item {id} exists already")));
            }
            inner.state.items.push(record);
            if let Err(error) = self.library.save_state(&inner.state) {
                inner.state.items.retain(|item| item.id != id);
                return Err(ApiError::io(error.to_string()));
            }
            inner.manifests.insert(
                id.clone(),
                Kept {
                    manifest: loaded.manifest.clone(),
                    sha256: loaded.sha256,
                    bytes: Arc::from(loaded.bytes.as_slice()),
                },
            );
            inner.live.insert(
                id.clone(),
                Live {
                    signature: Some(signature_view(&check)),
                    state: Some(ItemState::Starting),
                    ..Live::default()
                },
            );
        }
        // The item is in: the next add's checks see it. Starting it (which
        // may wait for other items to stop) holds up no other add.
        drop(admission);
        self.reconcile().await;
        self.item_view(&id)
            .await
            .ok_or_else(|| ApiError::not_found(id.as_str()))
    }

    /// The manifest a download request names (a file, its text, or a
    /// ticket whose peers are asked for it), and the peers a ticket names.
    async fn download_manifest(
        &self,
        request: &AddDownload,
    ) -> Result<(Loaded, Vec<PeerAddrs>), ApiError> {
        let Some(text) = request.ticket.as_deref() else {
            let loaded = load_manifest(
                request.manifest_path.as_deref(),
                request.manifest.as_deref(),
            )?;
            return Ok((loaded, Vec::new()));
        };
        if request.manifest_path.is_some() || request.manifest.is_some() {
            return Err(ApiError::invalid(
                "name the manifest with exactly one of manifest_path, manifest and ticket",
            ));
        }
        let ticket: Ticket = text
            .trim()
            .parse()
            .map_err(|error| ApiError::invalid(format!("the ticket is not valid: {error}")))?;
        let sha256 = ticket.manifest_sha256;
        let kept = || {
            self.ticket_manifests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(digest, _)| *digest == sha256)
                .map(|(_, bytes)| bytes.clone())
        };
        let mut bytes = kept();
        let _permit = match bytes {
            Some(_) => None,
            None => {
                let permit = tokio::time::timeout(TICKET_QUEUE_WAIT, self.ticket_queries.acquire())
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            429,
                            "too-many",
                            format!(
                                "{TICKET_QUERIES} ticket queries are under way; none ended within {} s",
                                TICKET_QUEUE_WAIT.as_secs()
                            ),
                        )
                        .hint("try again in a moment")
                    })?
                    .map_err(|_| ApiError::io("the companion is stopping"))?;
                // Another request may have fetched it while this one waited.
                bytes = kept();
                Some(permit)
            }
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                let fetched = manifest_of(
                    &ticket,
                    self.runner.identity(),
                    &TransportTuning::default(),
                    QUERY_TIMEOUT,
                )
                .await
                .map_err(|error| {
                    let refusal = if error.wrong_bytes {
                        ApiError::new(422, "verification-failed", error.to_string())
                    } else {
                        ApiError::new(502, "unreachable", error.to_string())
                    };
                    refusal.hint(
                        "a peer of the ticket must be serving it (a share, seed, or fetch --serve) and reachable from this host",
                    )
                })?;
                fetched.bytes.to_vec()
            }
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ApiError::invalid(format!(
                "the manifest the ticket names is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let manifest = Manifest::parse_bytes(&bytes).map_err(|error| {
            ApiError::invalid(format!("the manifest the ticket names is invalid: {error}"))
        })?;
        if let (false, Some(key_id)) = (ticket.signed_as_named(&manifest), ticket.key_id) {
            return Err(ApiError::new(
                422,
                "verification-failed",
                format!(
                    "the manifest the ticket names is not signed by the key the ticket names ({key_id}); nothing was added"
                ),
            ));
        }
        {
            let mut kept = self
                .ticket_manifests
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !kept.iter().any(|(digest, _)| *digest == sha256) {
                if kept.len() == TICKET_MANIFESTS_KEPT {
                    kept.pop_front();
                }
                kept.push_back((sha256, bytes.clone()));
            }
        }
        let loaded = Loaded {
            manifest,
            bytes,
            sha256,
        };
        Ok((loaded, ticket.peers))
    }

    /// `POST /api/v1/downloads/preview`.
    pub(crate) async fn preview_download(
        &self,
        request: &AddDownload,
    ) -> Result<Preview, ApiError> {
        let (loaded, ticket_peers) = self.download_manifest(request).await?;
        let check = self.judge(
            &loaded.manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        let peers = download_peers(request, &loaded.manifest, ticket_peers)?;
        let id = ItemId::of(
            ItemKind::Download,
            &loaded.manifest.model_id,
            &loaded.manifest.chunks.merkle_root,
        );
        let quota = {
            let inner = self.inner.lock().await;
            self.quota_view(&inner).await
        };
        Ok(Preview {
            id: id.to_string(),
            kind: ItemKind::Download,
            model_id: loaded.manifest.model_id.to_string(),
            artifact_bytes: loaded.manifest.artifact_bytes,
            signature: signature_view(&check),
            asks: self.download_asks(&loaded.manifest, &check, request, peers.len()),
            quota: Some(quota),
        })
    }

    /// `POST /api/v1/downloads`.
    pub(crate) async fn add_download(&self, request: AddDownload) -> Result<ItemView, ApiError> {
        request.caps.check().map_err(ApiError::invalid)?;
        let (loaded, ticket_peers) = self.download_manifest(&request).await?;
        let manifest = &loaded.manifest;
        let check = self.judge(
            manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        let peers = download_peers(&request, manifest, ticket_peers)?;
        if request.seed_after && !request.serve {
            return Err(ApiError::invalid("seed_after needs serve"));
        }
        let mut bootstrap = Vec::new();
        for text in &request.dht_bootstrap {
            bootstrap.push(text.parse::<std::net::SocketAddrV4>().map_err(|_| {
                ApiError::invalid(format!("dht_bootstrap {text:?} is not IPv4:PORT"))
            })?);
        }
        if !bootstrap.is_empty() && !request.dht {
            return Err(ApiError::invalid("dht_bootstrap needs dht"));
        }
        let id = ItemId::of(
            ItemKind::Download,
            &manifest.model_id,
            &manifest.chunks.merkle_root,
        );
        let admission = self.admission.lock().await;
        {
            let inner = self.inner.lock().await;
            if inner.state.item(&id).is_some() {
                return Err(ApiError::conflict(format!(
                    "{} is in the library already (item {id})",
                    manifest.model_id
                )));
            }
            let share = ItemId::of(
                ItemKind::Share,
                &manifest.model_id,
                &manifest.chunks.merkle_root,
            );
            if inner.state.item(&share).is_some() {
                return Err(ApiError::conflict(format!(
                    "{} is shared from this library already (item {share}): the file is here",
                    manifest.model_id
                )));
            }
            if let Some(other) = inner.state.items.iter().find(|item| {
                item.kind() == ItemKind::Download && item.model_id == manifest.model_id.as_str()
            }) {
                return Err(ApiError::conflict(format!(
                    "another artifact named {} is downloaded into the library already (item {}); remove it first",
                    manifest.model_id, other.id
                )));
            }
            if inner.state.items.len() >= MAX_ITEMS {
                return Err(ApiError::new(
                    429,
                    "too-many",
                    format!("the library holds {MAX_ITEMS} items already"),
                ));
            }
            // Before the first byte, and before anyone is asked.
            let view = self.quota_view(&inner).await;
            if let Err(refusal) = quota::check(
                manifest.artifact_bytes,
                view.used_bytes,
                view.quota_bytes,
                view.free_bytes,
            ) {
                let hint = match refusal {
                    QuotaRefusal::OverQuota { .. } => {
                        "raise the quota (`minimodel companion limits --quota SIZE`, or PUT /api/v1/limits) or remove a download"
                    }
                    QuotaRefusal::DiskFull { .. } => "free space on the disk of the library",
                };
                return Err(ApiError::new(
                    507,
                    "over-quota",
                    format!("{} does not fit: {refusal}", manifest.model_id),
                )
                .hint(hint));
            }
        }
        let missing = Self::missing(
            &self.download_asks(manifest, &check, &request, peers.len()),
            &request.consent,
        );
        if !missing.is_empty() {
            return Err(Self::consent_error(missing));
        }
        let check = self.settle(check, request.consent.trust_key)?;
        let record = ItemRecord {
            id: id.clone(),
            model_id: manifest.model_id.to_string(),
            manifest_sha256: loaded.sha256.to_hex(),
            added_at: now_rfc3339(),
            paused: false,
            caps: request.caps,
            port: None,
            consent: ConsentRecord {
                serve: request.serve,
                fetch: true,
                seed_after: request.seed_after,
                dht: request.dht,
                at: now_rfc3339(),
            },
            publisher_key: request.publisher_key.clone(),
            require_signature: request.require_signature,
            work: Work::Download(DownloadRecord {
                peers: PeerAddrs::flatten(&peers)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                serve: request.serve,
                seed_after: request.seed_after,
                dht: request.dht,
                dht_bootstrap: bootstrap,
                delivered: false,
            }),
        };
        self.insert(record, &loaded, check, admission).await
    }

    /// `POST /api/v1/items/{id}/pause` and `/resume`.
    pub(crate) async fn set_paused(&self, id: &ItemId, paused: bool) -> Result<ItemView, ApiError> {
        {
            let mut inner = self.inner.lock().await;
            let record = inner
                .state
                .item_mut(id)
                .ok_or_else(|| ApiError::not_found(id.as_str()))?;
            record.paused = paused;
            if let Err(error) = self.library.save_state(&inner.state) {
                return Err(ApiError::io(error.to_string()));
            }
            if let Some(live) = inner.live.get_mut(id) {
                if paused {
                    live.state = Some(ItemState::Paused);
                } else if live.state == Some(ItemState::Failed)
                    || live.state == Some(ItemState::Paused)
                {
                    // A resume tries a failed item again.
                    live.state = Some(ItemState::Starting);
                    live.error = None;
                }
            }
            if !paused && !inner.manifests.contains_key(id) {
                let record = inner.state.item(id).cloned();
                if let Some(record) = record {
                    match load_kept(&self.library, &record) {
                        Ok(kept) => {
                            inner.manifests.insert(id.clone(), kept);
                        }
                        Err(error) => {
                            if let Some(live) = inner.live.get_mut(id) {
                                live.state = Some(ItemState::Failed);
                                live.error = Some(error);
                            }
                        }
                    }
                }
            }
        }
        self.reconcile().await;
        self.item_view(id)
            .await
            .ok_or_else(|| ApiError::not_found(id.as_str()))
    }

    /// `PUT /api/v1/items/{id}/caps`.
    pub(crate) async fn set_caps(&self, id: &ItemId, caps: Caps) -> Result<ItemView, ApiError> {
        caps.check().map_err(ApiError::invalid)?;
        {
            let mut inner = self.inner.lock().await;
            let record = inner
                .state
                .item_mut(id)
                .ok_or_else(|| ApiError::not_found(id.as_str()))?;
            record.caps = caps;
            self.library
                .save_state(&inner.state)
                .map_err(|e| ApiError::io(e.to_string()))?;
        }
        self.reconcile().await;
        self.item_view(id)
            .await
            .ok_or_else(|| ApiError::not_found(id.as_str()))
    }

    /// `PUT /api/v1/limits`.
    pub(crate) async fn set_limits(&self, limits: SetLimits) -> Result<LimitsView, ApiError> {
        limits.caps.check().map_err(ApiError::invalid)?;
        let view = {
            let mut inner = self.inner.lock().await;
            inner.state.limits.caps = limits.caps;
            inner.state.limits.quota_bytes = limits.quota_bytes;
            self.library
                .save_state(&inner.state)
                .map_err(|e| ApiError::io(e.to_string()))?;
            LimitsView {
                caps: inner.state.limits.caps,
                quota: self.quota_view(&inner).await,
            }
        };
        self.publish(ApiEvent::Limits(view));
        self.reconcile().await;
        Ok(view)
    }

    /// `DELETE /api/v1/items/{id}`: stops it, forgets it, and with
    /// `delete_files` removes a download's files.
    pub(crate) async fn remove(
        &self,
        id: &ItemId,
        delete_files: bool,
    ) -> Result<Removed, ApiError> {
        let (record, running) = {
            let mut inner = self.inner.lock().await;
            let record = inner
                .state
                .item(id)
                .cloned()
                .ok_or_else(|| ApiError::not_found(id.as_str()))?;
            if delete_files && record.kind() == ItemKind::Share {
                return Err(ApiError::invalid(
                    "a share's file is the user's own: the companion removes only files it wrote (a download's)",
                ));
            }
            inner.state.items.retain(|item| &item.id != id);
            if let Err(error) = self.library.save_state(&inner.state) {
                inner.state.items.push(record);
                return Err(ApiError::io(error.to_string()));
            }
            inner.manifests.remove(id);
            inner.live.remove(id);
            inner.verified.remove(id);
            (record, inner.running.remove(id))
        };
        if let Some((running, _, _)) = running {
            running.stop().await;
        }
        let (files_removed, files_kept) = match record.model_id.parse::<ModelId>() {
            Ok(model) if delete_files => {
                let dir = self.library.downloads_dir();
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
        self.reconcile().await;
        Ok(removed)
    }

    /// `GET /api/v1/items/{id}/receipt`.
    pub(crate) async fn receipt(&self, id: &ItemId) -> Result<serde_json::Value, ApiError> {
        let path = {
            let inner = self.inner.lock().await;
            inner
                .state
                .item(id)
                .ok_or_else(|| ApiError::not_found(id.as_str()))?;
            inner.live.get(id).and_then(|live| live.receipt.clone())
        };
        let path = path.ok_or_else(|| {
            ApiError::new(404, "not-found", format!("item {id} has no receipt yet"))
        })?;
        let bytes = crate::library::read_own_file(&path, 1 << 20)
            .map_err(|e| ApiError::io(e.to_string()))?
            .ok_or_else(|| {
                ApiError::new(404, "not-found", format!("{} is gone", path.display()))
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::io(e.to_string()))
    }

    /// `GET /api/v1/log`.
    pub(crate) fn log_page(&self, limit: usize) -> Result<LogPage, ApiError> {
        let entries = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_last(limit)
            .map_err(|e| ApiError::io(e.to_string()))?;
        Ok(LogPage { entries })
    }

    /// `GET /api/v1/library`.
    pub(crate) async fn library_view(&self) -> LibraryView {
        let inner = self.inner.lock().await;
        let items = inner
            .state
            .items
            .iter()
            .map(|record| self.view_of(&inner, record))
            .collect();
        LibraryView {
            format: VIEW_FORMAT.to_owned(),
            companion: CompanionView {
                peer_id: self.runner.peer_id().to_string(),
                version: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
                library: self.library.root().to_owned(),
                serve_ip: self.runner.serve_ip().to_string(),
                port: self.runner.port(),
                started_at: self.started_at.clone(),
            },
            limits: LimitsView {
                caps: inner.state.limits.caps,
                quota: self.quota_view(&inner).await,
            },
            items,
        }
    }

    /// `GET /api/v1/items/{id}`.
    pub(crate) async fn item_view(&self, id: &ItemId) -> Option<ItemView> {
        let inner = self.inner.lock().await;
        let record = inner.state.item(id)?;
        Some(self.view_of(&inner, record))
    }

    fn view_of(&self, inner: &Inner, record: &ItemRecord) -> ItemView {
        let empty = Live::default();
        let live = inner.live.get(&record.id).unwrap_or(&empty);
        let artifact_bytes = inner
            .manifests
            .get(&record.id)
            .map_or(0, |kept| kept.manifest.artifact_bytes);
        let download = record.download();
        let state = if record.paused {
            ItemState::Paused
        } else {
            live.state.unwrap_or(ItemState::Starting)
        };
        let file = match &record.work {
            Work::Share(share) => Some(share.file.clone()),
            Work::Download(_) => live.file.clone(),
        };
        let handoff = match (&live.file, &live.receipt, download) {
            (Some(file), Some(receipt), Some(_)) => {
                let manifest = self.library.manifest_path(&record.id);
                Some(Handoff {
                    file: file.clone(),
                    manifest: manifest.clone(),
                    receipt: receipt.clone(),
                    text: format!(
                        "Verified. To use it, open {} in TinyRustLM, with its manifest {} and its receipt {}. Nothing here opens or runs it.",
                        file.display(),
                        manifest.display(),
                        receipt.display()
                    ),
                })
            }
            _ => None,
        };
        ItemView {
            id: record.id.to_string(),
            kind: record.kind(),
            model_id: record.model_id.clone(),
            state,
            paused: record.paused,
            added_at: record.added_at.clone(),
            artifact_bytes,
            verified_bytes: live.verified_bytes,
            rate_bytes_per_second: live.rate,
            upload_rate_bytes_per_second: live.upload_rate,
            peers: live.peers,
            uploaded_bytes: live.uploaded_bytes,
            sources: live.sources.clone(),
            signature: live.signature.clone(),
            caps: record.caps,
            // The library's caps bound every item (the endpoint shares
            // them), though the item's node only holds its own.
            effective_caps: {
                let (up, down) = should_run(record, Some(live)).unwrap_or((false, false));
                let library = inner.state.limits.caps;
                Caps {
                    max_upload: if up {
                        min_cap(live.effective.max_upload, library.max_upload)
                    } else {
                        live.effective.max_upload
                    },
                    max_download: if down {
                        min_cap(live.effective.max_download, library.max_download)
                    } else {
                        live.effective.max_download
                    },
                }
            },
            serving: live.serving.clone(),
            file,
            receipt: live.receipt.clone(),
            handoff,
            error: live.error.clone(),
            consent: Consent {
                serve: record.consent.serve,
                fetch: record.consent.fetch,
                seed_after: record.consent.seed_after,
                dht: record.consent.dht,
                trust_key: false,
            },
            peers_named: download.map(|d| d.peers.clone()).unwrap_or_default(),
            serve: download.is_some_and(|d| d.serve),
            seed_after: download.is_some_and(|d| d.seed_after),
            dht: download.is_some_and(|d| d.dht),
        }
    }

    async fn publish_item(&self, id: &ItemId) {
        if let Some(view) = self.item_view(id).await {
            self.publish(ApiEvent::Item(Box::new(view)));
        }
    }

    /// Makes what runs match the state: stops what should not run (or
    /// runs with other caps), starts what should.
    pub(crate) async fn reconcile(&self) {
        let _one_at_a_time = self.reconciling.lock().await;
        // Stopping: nothing starts again (a request answered while the
        // API drains would otherwise start an item after `stop_all`).
        if *self.shutdown.borrow() {
            return;
        }
        let stopping: Vec<(ItemId, RunningItem)> = {
            let mut inner = self.inner.lock().await;
            // The library's caps are the endpoint's, over every item.
            let endpoint = self.runner.endpoint();
            endpoint.set_upload_cap(inner.state.limits.caps.max_upload);
            endpoint.set_download_cap(inner.state.limits.caps.max_download);
            let caps = effective_caps(&inner);
            let stale: Vec<ItemId> = inner
                .running
                .iter()
                .filter(|(id, (running, _, running_caps))| {
                    running.is_finished() || caps.get(*id) != Some(running_caps)
                })
                .map(|(id, _)| id.clone())
                .collect();
            stale
                .into_iter()
                .filter_map(|id| inner.running.remove(&id).map(|(run, _, _)| (id, run)))
                .collect()
        };
        for (_, running) in stopping {
            running.stop().await;
        }
        let started: Vec<ItemId> = {
            let mut inner = self.inner.lock().await;
            let caps = effective_caps(&inner);
            let mut started = Vec::new();
            for (id, caps) in caps {
                if inner.running.contains_key(&id) {
                    continue;
                }
                if let Some(generation) = self.start_item(&mut inner, &id, caps) {
                    started.push(id.clone());
                    let model_id = inner
                        .state
                        .item(&id)
                        .map(|record| record.model_id.clone())
                        .unwrap_or_default();
                    inner.runs.insert(
                        (id, generation),
                        RunData {
                            model_id,
                            ..RunData::default()
                        },
                    );
                }
            }
            started
        };
        for id in started {
            self.publish_item(&id).await;
        }
    }

    /// Starts item `id` with `caps`; the run's generation, or `None` when
    /// it cannot start (it is marked failed).
    fn start_item(&self, inner: &mut Inner, id: &ItemId, caps: Caps) -> Option<u64> {
        let record = inner.state.item(id)?.clone();
        let kept = inner.manifests.get(id)?.clone();
        let fail = |inner: &mut Inner, error: String| {
            let live = inner.live.entry(id.clone()).or_default();
            live.state = Some(ItemState::Failed);
            live.error = Some(error);
            None
        };
        // Judged again at every start, as a rerun of a command would be.
        let check = match self.trust.judge(
            &kept.manifest,
            record
                .publisher_key
                .as_deref()
                .and_then(|key| key.parse::<PublicKey>().ok())
                .as_ref(),
            record.require_signature,
        ) {
            Ok(check) => check,
            Err(error) => return fail(inner, format!("the manifest is refused now: {error}")),
        };
        let limits = RunLimits {
            max_upload: caps.max_upload,
            max_download: caps.max_download,
            ..RunLimits::default()
        };
        let job = match &record.work {
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
                    check.clone(),
                    self.library.downloads_dir(),
                );
                plan.manifest_file = Some(Arc::clone(&kept.bytes));
                let peers: Vec<PeerAddrs> = download
                    .peers
                    .iter()
                    .filter_map(|text| text.parse::<PeerAddr>().ok())
                    .map(|peer| PeerAddrs {
                        id: peer.id,
                        addrs: vec![peer.addr],
                    })
                    .collect();
                plan.peers = merge_peers(peers);
                let dht = download.dht.then(|| {
                    let nodes = if download.dht_bootstrap.is_empty() {
                        self.dht_bootstrap.clone()
                    } else {
                        download.dht_bootstrap.clone()
                    };
                    let bind_ip = match self.runner.serve_ip() {
                        IpAddr::V4(ip) => ip,
                        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
                    };
                    DiscoveryConfig {
                        bind: std::net::SocketAddrV4::new(bind_ip, 0),
                        bootstrap: if nodes.is_empty() {
                            Bootstrap::Public
                        } else {
                            Bootstrap::Nodes(nodes)
                        },
                        ..DiscoveryConfig::default()
                    }
                });
                Job::Download(Box::new(DownloadJob {
                    plan,
                    serve: download.serve,
                    seed_after: download.seed_after,
                    dht,
                    verified: if download.delivered {
                        inner.verified.get(id).cloned()
                    } else {
                        None
                    },
                }))
            }
        };
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let running = self.runner.start(id.clone(), generation, job, limits);
        inner
            .running
            .insert(id.clone(), (running, generation, caps));
        let live = inner.live.entry(id.clone()).or_default();
        live.generation = generation;
        live.state = Some(ItemState::Starting);
        live.error = None;
        live.effective = caps;
        live.signature = Some(signature_view(&check));
        live.serving = None;
        live.peers = 0;
        live.rate = 0.0;
        live.upload_rate = 0.0;
        live.last_upload = None;
        live.uploaded_bytes = 0;
        live.sources.clear();
        Some(generation)
    }

    /// Stops every running item (each waits for its checkpoint).
    async fn stop_all(&self) {
        let _one_at_a_time = self.reconciling.lock().await;
        let running: Vec<RunningItem> = {
            let mut inner = self.inner.lock().await;
            std::mem::take(&mut inner.running)
                .into_values()
                .map(|(running, _, _)| running)
                .collect()
        };
        let stops: Vec<_> = running
            .into_iter()
            .map(|running| tokio::spawn(running.stop()))
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
    }

    /// One report of a run.
    async fn handle(self: &Arc<Self>, id: ItemId, generation: u64, event: RunEvent) {
        let mut restart = false;
        {
            let mut inner = self.inner.lock().await;
            let inner = &mut *inner;
            // From the run when the item is gone (removed while it stopped).
            let model_id = inner
                .state
                .item(&id)
                .map(|record| record.model_id.clone())
                .or_else(|| {
                    inner
                        .runs
                        .get(&(id.clone(), generation))
                        .map(|run| run.model_id.clone())
                })
                .unwrap_or_default();
            // The item's last run (a run being stopped was taken out of
            // `running` first, but it is still the one the view shows).
            let last_run = inner
                .live
                .get(&id)
                .is_some_and(|live| live.generation == generation);
            let current = last_run
                && inner
                    .running
                    .get(&id)
                    .is_some_and(|(_, g, _)| *g == generation);
            let artifact_bytes = inner
                .manifests
                .get(&id)
                .map_or(0, |kept| kept.manifest.artifact_bytes);
            match event {
                RunEvent::Verified(verified) => {
                    if inner.state.item(&id).is_some() {
                        inner.verified.insert(id.clone(), verified);
                    }
                    if current && let Some(live) = inner.live.get_mut(&id) {
                        live.verified_bytes = artifact_bytes;
                    }
                }
                RunEvent::Ended(ending) => {
                    self.log_ending(inner, &id, generation, &model_id, &ending);
                    inner.runs.remove(&(id.clone(), generation));
                    if current {
                        inner.running.remove(&id);
                    }
                    if last_run {
                        let paused = inner.state.item(&id).is_some_and(|r| r.paused);
                        if let Some(live) = inner.live.get_mut(&id) {
                            live.peers = 0;
                            live.rate = 0.0;
                            live.upload_rate = 0.0;
                            live.serving = None;
                            match ending {
                                Ending::Failed { error, .. } => {
                                    live.state = Some(ItemState::Failed);
                                    live.error = Some(error);
                                }
                                Ending::Finished => live.state = Some(ItemState::Done),
                                Ending::Stopped(_) if paused => {
                                    live.state = Some(ItemState::Paused)
                                }
                                Ending::Stopped(_) => {}
                            }
                        }
                        // A run that ended by itself (finished, or a
                        // delivered file to serve on) may call for a start.
                        restart = current;
                    }
                }
                RunEvent::Report(report) => {
                    self.note_report(inner, &id, generation, &model_id, report, current)
                }
                RunEvent::Metrics(metrics) => {
                    if let Some(run) = inner.runs.get_mut(&(id.clone(), generation)) {
                        run.last_metrics = Some(metrics.clone());
                    }
                    if current && let Some(live) = inner.live.get_mut(&id) {
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
                    }
                }
                other if current => self.note_progress(inner, &id, other),
                _ => {}
            }
        }
        if restart {
            self.reconcile_soon();
        }
        self.publish_item(&id).await;
    }

    fn reconcile_soon(self: &Arc<Self>) {
        // The supervisor must not wait for a reconcile (which waits for
        // runs that report to it): run it on its own.
        let shared = Arc::clone(self);
        tokio::spawn(async move { shared.reconcile().await });
    }

    fn note_progress(&self, inner: &mut Inner, id: &ItemId, event: RunEvent) {
        let mut save = false;
        {
            let Some(live) = inner.live.get_mut(id) else {
                return;
            };
            match event {
                RunEvent::Verifying(bytes) => {
                    live.state = Some(ItemState::Verifying);
                    live.verified_bytes = bytes;
                }
                RunEvent::Opening => live.state = Some(ItemState::Opening),
                RunEvent::Opened { resumed_bytes } => {
                    live.state = Some(ItemState::Fetching);
                    live.verified_bytes = resumed_bytes;
                }
                RunEvent::Listening { addr, peer_id } => {
                    let offer = inner.manifests.get(id).map(|kept| {
                        let addrs = minimodel_swarm::addrs::listener_addrs(addr, &[])
                            .unwrap_or_else(|_| vec![addr]);
                        let peer = PeerAddrs { id: peer_id, addrs };
                        (
                            PeerOffer::for_manifest(&kept.manifest, peer.clone()),
                            ticket_of(kept, peer),
                        )
                    });
                    live.serving = offer.map(|(offer, ticket)| ServingView {
                        listen: addr.to_string(),
                        offer: serde_json::to_value(&offer).unwrap_or_default(),
                        ticket,
                    });
                    if live.state != Some(ItemState::Fetching) {
                        let delivered = inner
                            .state
                            .item(id)
                            .and_then(ItemRecord::download)
                            .is_some_and(|d| d.delivered);
                        live.state = Some(if delivered {
                            ItemState::Seeding
                        } else if inner
                            .state
                            .item(id)
                            .is_some_and(|r| r.kind() == ItemKind::Share)
                        {
                            ItemState::Serving
                        } else {
                            ItemState::Fetching
                        });
                    }
                    if let Some(record) = inner.state.item_mut(id)
                        && record.port != Some(addr.port())
                    {
                        record.port = Some(addr.port());
                        save = true;
                    }
                }
                RunEvent::AlreadyComplete { file, receipt } => {
                    live.state = Some(ItemState::Done);
                    live.file = Some(file);
                    live.receipt = Some(receipt);
                    live.verified_bytes = inner
                        .manifests
                        .get(id)
                        .map_or(0, |kept| kept.manifest.artifact_bytes);
                    if let Some(Work::Download(download)) =
                        inner.state.item_mut(id).map(|record| &mut record.work)
                        && !download.delivered
                    {
                        download.delivered = true;
                        save = true;
                    }
                }
                _ => {}
            }
        }
        if save && let Err(error) = self.library.save_state(&inner.state) {
            tracing::error!("cannot write the library's state: {error}");
        }
    }

    fn note_report(
        &self,
        inner: &mut Inner,
        id: &ItemId,
        generation: u64,
        model_id: &str,
        report: NodeReport,
        current: bool,
    ) {
        let run = inner.runs.entry((id.clone(), generation)).or_default();
        match report {
            NodeReport::PeerConnected { peer, addr, .. } => {
                run.connected.insert(peer, addr);
            }
            NodeReport::PeerDisconnected {
                peer,
                addr,
                uploaded_chunks,
                uploaded_bytes,
                ..
            } => {
                run.connected.remove(&peer);
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
                    self.append_log(entry);
                }
            }
            NodeReport::Progress {
                verified_bytes,
                peers,
                rate,
                ..
            } if current => {
                if let Some(live) = inner.live.get_mut(id) {
                    live.state = Some(ItemState::Fetching);
                    live.verified_bytes = verified_bytes;
                    live.peers = peers as u64;
                    live.rate = rate;
                }
            }
            NodeReport::Serving {
                peers,
                uploaded_bytes,
            } if current => {
                if let Some(live) = inner.live.get_mut(id) {
                    let now = std::time::Instant::now();
                    if let Some((then, before)) = live.last_upload {
                        let seconds = now.duration_since(then).as_secs_f64();
                        if seconds > 0.0 {
                            live.upload_rate =
                                uploaded_bytes.saturating_sub(before) as f64 / seconds;
                        }
                    }
                    live.last_upload = Some((now, uploaded_bytes));
                    live.uploaded_bytes = uploaded_bytes;
                    live.peers = peers as u64;
                }
            }
            NodeReport::Delivered {
                path,
                receipt,
                seeding,
            } => {
                run.delivered_logged = true;
                self.log_delivery(id, model_id, &receipt);
                if let Some(Work::Download(download)) =
                    inner.state.item_mut(id).map(|record| &mut record.work)
                {
                    download.delivered = true;
                }
                if let Err(error) = self.library.save_state(&inner.state) {
                    tracing::error!("cannot write the library's state: {error}");
                }
                let artifact_bytes = inner
                    .manifests
                    .get(id)
                    .map_or(0, |kept| kept.manifest.artifact_bytes);
                if let Some(live) = inner.live.get_mut(id) {
                    live.file = Some(path);
                    live.receipt = Some(receipt);
                    live.rate = 0.0;
                    live.verified_bytes = artifact_bytes;
                    if current {
                        live.state = Some(if seeding {
                            ItemState::Seeding
                        } else {
                            ItemState::Done
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Logs, from a delivered download's receipt, what each peer sent.
    fn log_delivery(&self, id: &ItemId, model_id: &str, receipt: &Path) {
        let Ok(Some(bytes)) = crate::library::read_own_file(receipt, 1 << 20) else {
            tracing::error!("cannot read the receipt {}", receipt.display());
            return;
        };
        let sha256 = Sha256Digest::of(&bytes).to_hex();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let peers = value["source"]["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for peer in peers {
            let mut entry = LogEntry::new(
                id,
                model_id,
                Direction::Download,
                peer["peer_id"].as_str().unwrap_or_default().to_owned(),
                peer["bytes"].as_u64().unwrap_or(0),
                Ended::Delivered,
            );
            entry.address = peer["address"].as_str().map(str::to_owned);
            entry.chunks = peer["chunks"].as_u64();
            entry.receipt = Some(ReceiptRef {
                path: receipt.to_owned(),
                sha256: sha256.clone(),
            });
            self.append_log(entry);
        }
        let mirrors = value["source"]["mirrors"].as_array().cloned();
        for mirror in mirrors.unwrap_or_default() {
            let mut entry = LogEntry::from_mirror(
                id,
                model_id,
                mirror["url"].as_str().unwrap_or_default(),
                mirror["bytes"].as_u64().unwrap_or(0),
                mirror["chunks"].as_u64().unwrap_or(0),
                Ended::Delivered,
            );
            entry.receipt = Some(ReceiptRef {
                path: receipt.to_owned(),
                sha256: sha256.clone(),
            });
            self.append_log(entry);
        }
    }

    /// Logs what a run moved and had not logged yet when it ended: bytes
    /// fetched by a download that was not delivered, bytes served to the
    /// peers still connected.
    fn log_ending(
        &self,
        inner: &mut Inner,
        id: &ItemId,
        generation: u64,
        model_id: &str,
        ending: &Ending,
    ) {
        let Some(run) = inner.runs.get(&(id.clone(), generation)) else {
            return;
        };
        let (last, ended) = match ending {
            Ending::Stopped(last) => (last.as_ref(), Ended::Stopped),
            Ending::Failed { last, .. } => (last.as_ref(), Ended::Failed),
            Ending::Finished => (None, Ended::Stopped),
        };
        let Some(metrics) = last.or(run.last_metrics.as_ref()) else {
            return;
        };
        for mirror in &metrics.mirrors {
            if !run.delivered_logged && mirror.download.bytes > 0 {
                self.append_log(LogEntry::from_mirror(
                    id,
                    model_id,
                    &mirror.label,
                    mirror.download.bytes,
                    mirror.download.chunks,
                    ended,
                ));
            }
        }
        for peer in &metrics.peers {
            if !run.delivered_logged && peer.downloaded_bytes() > 0 {
                let entry = LogEntry::new(
                    id,
                    model_id,
                    Direction::Download,
                    peer.id.to_string(),
                    peer.downloaded_bytes(),
                    ended,
                );
                self.append_log(entry);
            }
            if let Some(addr) = run.connected.get(&peer.id)
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
                self.append_log(entry);
            }
        }
    }
}

/// Bytes the library's downloads take: each one's whole artifact (a
/// download reserves its size at once).
fn used_bytes(inner: &Inner) -> u64 {
    inner
        .state
        .items
        .iter()
        .filter(|record| record.kind() == ItemKind::Download)
        .filter_map(|record| inner.manifests.get(&record.id))
        .map(|kept| kept.manifest.artifact_bytes)
        .sum()
}
