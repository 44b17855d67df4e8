//! The companion put together: the library, its lock and state, the
//! token, the identity, the items' endpoint, the service that carries out
//! the supervisor's decisions, and the HTTP API in front of it. The one
//! place that knows them all; the service knows nothing of HTTP, the API
//! only translates requests into the service's calls.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use minimodel_swarm::node::NodeReport;
use minimodel_swarm::transport::{Identity, TransportTuning};
use minimodel_wire::PeerId;
use tokio::sync::mpsc;

use crate::library::{ENDPOINT_FORMAT, Endpoint, LibraryDir, LibraryError, LibraryLock};
use crate::runner::Runner;
use crate::service::{Owner, Parts, Shared};
use crate::supervisor::Patience;
use crate::token::Token;
use crate::translog::TransferLog;

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
    /// Relays its endpoint registers with, for every item (`--relay`,
    /// `docs/relay.md`): peers behind other routers reach its items
    /// through them, and its shares' offers and tickets name them.
    pub relays: Vec<minimodel_swarm::relay::RelayAddr>,
    /// How long a download tries, and waits between tries, for its
    /// peers ([`Patience`]'s defaults: tries of 60 s, waits from 15 s up
    /// to 5 min).
    pub patience: Patience,
    /// How often followed channels are looked up ([`crate::follow::Cadence`]'s
    /// defaults: hourly, on demand at most once a minute).
    pub follow_cadence: crate::follow::Cadence,
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
            relays: Vec::new(),
            patience: Patience::default(),
            follow_cadence: crate::follow::Cadence::default(),
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

/// A companion, started; [`Companion::run`] serves it until stopped.
pub struct Companion {
    shared: Arc<Shared>,
    /// The state's owner, until it runs.
    owner: Owner,
    listener: tokio::net::TcpListener,
    gate: crate::guard::Gate,
    run_reports: mpsc::UnboundedReceiver<(
        crate::library::ItemId,
        crate::supervisor::RunId,
        crate::runner::RunEvent,
    )>,
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
        trust: Arc<dyn crate::trust::TrustStore>,
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
        let (reports, run_reports) = mpsc::unbounded_channel();
        let endpoint = open_endpoint(&config, &state, Arc::new(identity))?;
        endpoint.use_relays(&config.relays);
        let runner = Runner::new(endpoint, reports).with_lan(config.lan);
        let (shared, owner) = Shared::new(Parts {
            library,
            state,
            runner,
            trust,
            log,
            dht_bootstrap: config.dht_bootstrap,
            patience: config.patience,
            follow_cadence: config.follow_cadence,
        });
        Ok(Companion {
            shared,
            owner,
            listener,
            gate,
            run_reports,
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
        url_of(self.api_addr())
    }

    /// Whether the token was made by this start.
    pub fn token_made(&self) -> bool {
        self.token_made
    }

    /// The companion's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.runner().peer_id()
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
            owner,
            listener,
            gate,
            run_reports,
            _lock,
            ..
        } = self;
        let url = url_of(listener.local_addr().map_err(CompanionError::Serve)?);
        // One task owns the library's state; everything else sends it
        // commands (`service`).
        let owner = tokio::spawn(owner.run(Arc::clone(&shared), run_reports));
        shared.start().await;
        let endpoint = Endpoint {
            format: ENDPOINT_FORMAT.to_owned(),
            url,
            pid: std::process::id(),
        };
        let mut text = serde_json::to_vec_pretty(&endpoint).unwrap_or_default();
        text.push(b'\n');
        let library = shared.library().clone();
        library.write_whole(&library.endpoint_path(), &text)?;
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
        let serving = crate::api::serve(listener, Arc::clone(&shared), gate, signal);
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            () = async {
                let _ = stopping.wait_for(|stop| *stop).await;
            } => {
                let drained = async {
                    tokio::time::timeout(API_DRAIN, &mut serving)
                        .await
                        .unwrap_or(Ok(()))
                };
                let (served, ()) = tokio::join!(drained, shared.stop_all(RUNS_END));
                served
            }
        };
        // Every item stops (a download writes its checkpoint), and every
        // run's last report is logged before the state is written.
        shared.stop_all(RUNS_END).await;
        shared.runner().endpoint().close().await;
        shared.save().await?;
        owner.abort();
        let _ = std::fs::remove_file(library.endpoint_path());
        served.map_err(CompanionError::Serve)
    }
}

/// The API's URL for a listener bound at `addr`.
fn url_of(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// How long the API may take, once the companion stops, to finish what
/// it answers.
const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the runs may take, once stopped, to end and report.
const RUNS_END: std::time::Duration = std::time::Duration::from_secs(5);
