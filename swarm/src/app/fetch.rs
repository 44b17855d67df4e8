//! Fetch: download an artifact from peers into a directory, resuming what
//! an earlier run left there, and deliver it only once every check passed.
//!
//! Two steps, because front ends show something between them:
//! 1. [`DownloadPlan::open`] looks at the directory (blocking: a recheck
//!    or a bare `.part` reads the whole file) and says whether the
//!    artifact is already there ([`Opened::Complete`]) or what is left to
//!    fetch ([`Opened::Partial`], with how much was resumed).
//! 2. [`ReadyDownload::start`] opens the QUIC endpoint with the caller's
//!    identity; the [`Fetcher`] it returns runs until the download is
//!    delivered, fails, or its stop future resolves (what was verified is
//!    kept in every case).

use std::sync::Arc;

use minimodel_node::query::beyond::{BeyondConfig, Hearing};
use minimodel_node::query::rounds::{AfterRound, ListRounds, RoundsConfig};
use minimodel_verifier::ChunkIndex;
use tokio::sync::mpsc;

use crate::dht::Discovery;
pub use crate::fetch::{DownloadPlan, Serving};
use crate::fetch::{FetchError, Fetcher};
use crate::node::NodeReport;
use crate::resume::reuse::{NewChunkList, ReuseReport, finished_versions_in};
use crate::resume::{
    CompleteDownload, OpenedDownload, PartialDownload, RecheckProgress, ResumeError, ResumeOptions,
    ResumeReport,
};
use crate::transport::Identity;

/// The DHT client of a download: its UDP socket on `bind` (IPv4; the
/// address the node serves on, so DHT nodes see the one QUIC answers on),
/// joining through `bootstrap` nodes a person named, else the public DHT.
pub fn dht_config(
    bind: std::net::Ipv4Addr,
    bootstrap: &[std::net::SocketAddrV4],
) -> crate::dht::DiscoveryConfig {
    crate::dht::DiscoveryConfig {
        bind: std::net::SocketAddrV4::new(bind, 0),
        bootstrap: if bootstrap.is_empty() {
            crate::dht::Bootstrap::Public
        } else {
            crate::dht::Bootstrap::Nodes(bootstrap.to_vec())
        },
        ..crate::dht::DiscoveryConfig::default()
    }
}

/// What the directory holds for this download.
#[derive(Debug)]
pub enum Opened {
    /// The artifact is there with its receipt; nothing to fetch.
    Complete(Box<CompleteDownload>),
    /// What is left to fetch.
    Partial(Box<ReadyDownload>),
}

/// A download opened and ready to start.
#[derive(Debug)]
pub struct ReadyDownload {
    plan: DownloadPlan,
    partial: Arc<PartialDownload>,
    /// What opening found (fresh, resumed, rechecked, ...).
    pub report: ResumeReport,
    /// Bytes verified by earlier runs.
    pub resumed_bytes: u64,
    /// What was copied from older versions on this machine (`None`: no
    /// chunk list, nothing looked at).
    pub reused: Option<ReuseReport>,
}

/// What reading a new version's chunk list ahead gave
/// ([`DownloadPlan::read_chunk_list_ahead`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkListAhead {
    /// Nothing to do: no older version to copy from, or the list given.
    NotNeeded,
    /// Read here (a URL, shown without any query, or a peer), and
    /// checked: the chunks older versions share are copied before any
    /// peer is asked for a chunk.
    Read {
        /// Where.
        from: String,
        /// Older versions are here to copy from (else the list was read
        /// for its lengths alone: a listed manifest).
        for_reuse: bool,
    },
    /// None could be read: every chunk comes from the network. Why, for
    /// each place asked.
    NotReused {
        /// In words.
        why: String,
    },
    /// None could be read, and the manifest's scheme lists its chunks'
    /// lengths in it (`slm-parts-merkle-v0`): the download cannot start.
    /// Why, for each place asked.
    Missing {
        /// In words.
        why: String,
    },
}

impl std::fmt::Display for ChunkListAhead {
    /// The words every front end shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkListAhead::NotNeeded => f.write_str("no older version to reuse"),
            ChunkListAhead::Read {
                from,
                for_reuse: true,
            } => write!(
                f,
                "the new version's chunk list is read from {from}: the chunks older versions here share are copied first"
            ),
            ChunkListAhead::Read {
                from,
                for_reuse: false,
            } => write!(
                f,
                "the chunk list, with each chunk's length, is read from {from}"
            ),
            ChunkListAhead::NotReused { why } => {
                write!(f, "no chunk of the versions here is reused: {why}")
            }
            ChunkListAhead::Missing { why } => write!(
                f,
                "the manifest's chunks are cut at its parts and their lengths are in its chunk list, which none of these had: {why}; give it with --chunk-list FILE"
            ),
        }
    }
}

/// How long one address of a peer has to answer a chunk list query, its
/// connection included.
const PEER_CHUNK_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Most peers asked for a chunk list, in the plan's order (each half a
/// second after the one before, or as soon as every earlier one failed),
/// and most addresses of each.
const PEERS_ASKED_FOR_CHUNK_LIST: usize = 16;
const ADDRESSES_ASKED_FOR_CHUNK_LIST: usize = 4;

/// How long joining the DHT for a chunk list may take (resolving the
/// bootstrap nodes' names included), before the peers' 60 s.
const DHT_JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// What `dialed` gives by `deadline` (a connection, with the key the
/// peer proved when dialed by address alone); `Err` says why not, with
/// `place` (the peer, in words) first.
async fn connected<T>(
    dialed: impl std::future::Future<Output = Result<T, crate::transport::ConnectError>>,
    deadline: tokio::time::Instant,
    place: &str,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, dialed).await {
        Err(_) => Err(format!("{place}: no connection in time")),
        Ok(Err(error)) => Err(format!("{place}: {error}")),
        Ok(Ok(reached)) => Ok(reached),
    }
}

/// Why a peer was not asked: the time for peers is spent.
fn spent() -> String {
    "not asked, the time for asking peers is spent".to_owned()
}

/// Why a peer gave no chunk list that checks.
enum NoList {
    /// None came, or not all of it in time: why.
    Failed(String),
    /// One came that is not the manifest's.
    NotThis(String),
}

impl std::fmt::Display for NoList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoList::Failed(why) => f.write_str(why),
            NoList::NotThis(why) => write!(f, "{NOT_THIS_LIST} ({why})"),
        }
    }
}

/// Asks `connection` for the new version's chunk list by `deadline` and
/// keeps the answer only if it checks against the manifest.
async fn ask_for_chunk_list(
    manifest: &minimodel_verifier::manifest::Manifest,
    manifest_sha256: [u8; 32],
    connection: &quinn::Connection,
    deadline: tokio::time::Instant,
) -> Result<NewChunkList, NoList> {
    use crate::link::handshake::query_chunk_list;
    let count = u32::try_from(manifest.chunks.chunk_count).unwrap_or(u32::MAX);
    let listed = manifest.chunks.scheme.is_listed();
    let asked = tokio::time::timeout_at(
        deadline,
        query_chunk_list(connection, manifest_sha256, count, listed),
    )
    .await;
    match asked {
        Err(_) => {
            connection.close(0u32.into(), b"too slow");
            Err(NoList::Failed("no whole list in time".to_owned()))
        }
        Ok(Err(error)) => Err(NoList::Failed(error.to_string())),
        Ok(Ok(answer)) => {
            NewChunkList::from_peer(manifest, &answer.hashes, answer.lengths.as_deref())
                .map_err(|error| NoList::NotThis(error.to_string()))
        }
    }
}

/// What a list that does not check against the manifest is called.
const NOT_THIS_LIST: &str = "not this version's chunk list";

/// The new version's chunk list from the first of `plan`'s peers that
/// serves it and whose answer checks against the manifest: the named
/// peers first (at most [`PEERS_ASKED_FOR_CHUNK_LIST`], at most
/// [`ADDRESSES_ASKED_FOR_CHUNK_LIST`] addresses and
/// [`RELAYS_ASKED_FOR_CHUNK_LIST`] of the relays each names), as a
/// ticket's manifest is asked for (`minimodel_node::query`: the addresses
/// in turn half a second apart or as each fails, then through each relay
/// by a punch or the relay's channel), `wait` each; then, when `plan` has
/// a DHT client, the addresses the DHT knows for the swarm (at most
/// [`BeyondConfig::dht_addresses`], whatever key each proves); all
/// within `budget` (one round's, [`RoundsConfig::round`] at most), asked
/// from a key made for these queries alone (`docs/wire-protocol.md` 8.7).
/// `Ok`: the list and the peer, in words; `Err`: why each one gave none.
async fn chunk_list_from_peers(
    plan: &DownloadPlan,
    budget: std::time::Duration,
) -> Result<(NewChunkList, String), String> {
    let wait = PEER_CHUNK_LIST_WAIT.min(budget);
    let identity = Identity::generate().map_err(|e| format!("no key to ask peers with: {e}"))?;
    let identity = Arc::new(identity);
    let (endpoint, paths) = crate::transport::bind_client_endpoint_with_paths(&plan.tuning)
        .map_err(|e| format!("no QUIC endpoint to ask peers from: {e}"))?;
    let until = tokio::time::Instant::now() + budget;
    let mut why = Vec::new();
    let mut found = None;
    let beyond = BeyondConfig::default();
    // Neighbours are heard while the named peers are asked.
    let neighbours = plan
        .lan
        .then(|| Neighbours::listen(plan, &identity, beyond, until));
    if !plan.peers.is_empty() {
        match chunk_list_from_named(plan, &endpoint, &paths, &identity, until, wait).await {
            Ok(list) => found = Some(list),
            Err(error) => why.push(error),
        }
    }
    if let Some(neighbours) = neighbours {
        match found {
            None => {
                found = neighbours
                    .ask(plan, &endpoint, &identity, until, wait, &mut why)
                    .await;
            }
            Some(_) => neighbours.stop().await,
        }
    }
    if found.is_none()
        && let Some(dht) = &plan.dht
    {
        let dht = (&**dht, &beyond);
        found = chunk_list_from_dht(plan, dht, &endpoint, &identity, until, wait, &mut why).await;
    }
    // The connections' CONNECTION_CLOSE leaves before the download opens
    // (their drivers get their turns here: a command's runtime may not
    // run again until the download starts, or at all); their draining
    // period (three probe timeouts, about 40 ms even on one machine) is
    // not waited out: waited for here, it was a tenth of a second's copy
    // of 1 GiB.
    crate::transport::Closing::default()
        .flush(&endpoint, b"done", plan.tuning.close_flush)
        .await;
    found.ok_or_else(|| why.join("; "))
}

/// Neighbours of the swarm heard on the local network (`--lan`, mDNS) by
/// a listener that announces nothing: the read-ahead's, for a download
/// whose peers may come from there.
struct Neighbours {
    task: Result<crate::lan::LanTask, String>,
    heard: mpsc::Receiver<(minimodel_wire::PeerId, Vec<std::net::SocketAddr>)>,
    /// Whom to ask, and how long to listen: the decisions.
    hearing: Hearing,
}

impl Neighbours {
    fn listen(
        plan: &DownloadPlan,
        identity: &Identity,
        config: BeyondConfig,
        until: tokio::time::Instant,
    ) -> Neighbours {
        let (sender, heard) = mpsc::channel(config.neighbours * 4);
        let key = crate::dht::SwarmKey::of(&plan.manifest.chunks.merkle_root);
        // A neighbour heard while the queue is full is dropped; it is
        // heard again when it announces again.
        let hear = move |peer, addrs| {
            !matches!(
                sender.try_send((peer, addrs)),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        };
        let task = crate::lan::LanTask::start(key, identity.peer_id(), None, hear)
            .map_err(|error| error.to_string());
        // Only neighbours inside the /24 or /64 of our own LAN addresses
        // are asked, as the node dials only those.
        let own = crate::addrs::interface_ips()
            .unwrap_or_default()
            .into_iter();
        let own = minimodel_node::address::own_lan(own.map(|ip| std::net::SocketAddr::new(ip, 0)));
        let named = plan.peers.iter().map(|peer| peer.id).collect();
        let hearing = Hearing::new(config, own, named, now(), until.into_std());
        Neighbours {
            task,
            heard,
            hearing,
        }
    }

    /// Asks the neighbours [`Hearing`] keeps, all at once, once it says
    /// listening is over.
    async fn ask(
        self,
        plan: &DownloadPlan,
        endpoint: &quinn::Endpoint,
        identity: &Identity,
        until: tokio::time::Instant,
        wait: std::time::Duration,
        why: &mut Vec<String>,
    ) -> Option<(NewChunkList, String)> {
        let Neighbours {
            task,
            mut heard,
            mut hearing,
        } = self;
        let task = match task {
            Ok(task) => task,
            Err(error) => {
                why.push(format!("the local network: cannot listen ({error})"));
                return None;
            }
        };
        while let Some(ends) = hearing.poll_timeout() {
            let ends = tokio::time::Instant::from_std(ends);
            match tokio::time::timeout_at(ends, heard.recv()).await {
                Ok(Some((peer, addrs))) => {
                    hearing.hear(now(), peer, addrs);
                }
                Ok(None) | Err(_) => break,
            }
        }
        task.stop().await;
        let listen = hearing.listen();
        let heard = hearing.into_asked();
        if heard.is_empty() {
            why.push(format!(
                "the local network: no neighbour of the swarm heard in {} s",
                listen.as_secs_f32()
            ));
            return None;
        }
        let deadline = until.min(tokio::time::Instant::now() + wait);
        let targets = (heard.into_iter())
            .flat_map(|(id, addrs)| {
                let short: String = id.to_string().chars().take(10).collect();
                addrs.into_iter().map(move |addr| Target {
                    id: Some(id),
                    addr,
                    place: format!("the neighbour {short} at {addr}"),
                })
            })
            .collect();
        first_list_at_once(plan, endpoint, identity, targets, deadline, why).await
    }

    async fn stop(self) {
        if let Ok(task) = self.task {
            task.stop().await;
        }
    }
}

/// Tokio's clock as a plain instant, for the sans-IO decisions (a test
/// may pause it).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Most relays of one named peer asked for a chunk list.
const RELAYS_ASKED_FOR_CHUNK_LIST: usize = 2;

/// [`chunk_list_from_peers`]'s first part: the plan's named peers, through
/// the relays they name too. The decisions are
/// [`minimodel_node::query::ManifestQuery`]'s; what it asks on a
/// connection is the list, checked against the manifest before it is
/// handed in.
async fn chunk_list_from_named(
    plan: &DownloadPlan,
    endpoint: &quinn::Endpoint,
    paths: &crate::transport::Paths,
    identity: &Arc<Identity>,
    until: tokio::time::Instant,
    wait: std::time::Duration,
) -> Result<(NewChunkList, String), String> {
    use minimodel_node::query::{Answer, ManifestQuery, QueryConfig, QueryOutcome, QuerySource};
    let named = &plan.peers[..plan.peers.len().min(PEERS_ASKED_FOR_CHUNK_LIST)];
    let peers: Vec<_> = (named.iter())
        .map(|peer| {
            let addrs = peer.addrs.iter().take(ADDRESSES_ASKED_FOR_CHUNK_LIST);
            (peer.id, addrs.copied().collect::<Vec<_>>())
        })
        .collect();
    let relays: Vec<(minimodel_wire::PeerId, Vec<crate::relay::RelayAddr>)> = (plan.peer_relays)
        .iter()
        .filter(|(peer, _)| named.iter().any(|named| named.id == *peer))
        .map(|(peer, relays)| {
            let relays = relays.iter().take(RELAYS_ASKED_FOR_CHUNK_LIST);
            (*peer, relays.copied().collect())
        })
        .collect();
    let relay_addrs: Vec<_> = (relays.iter())
        .map(|(peer, relays)| (*peer, relays.iter().map(|relay| relay.addr).collect()))
        .collect();
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    let config = QueryConfig {
        timeout: wait,
        within: Some(left),
        ..QueryConfig::default()
    };
    let now = tokio::time::Instant::now().into_std();
    let mut query = ManifestQuery::checked_by_driver(&peers, &relay_addrs, config, now);
    let sources = query.sources().to_vec();
    let manifest = Arc::new(plan.manifest.clone());
    let digest = plan.manifest_sha256.0;
    let asking = super::query::Asking {
        peer: Box::new(move |connection| {
            let manifest = Arc::clone(&manifest);
            Box::pin(async move {
                let deadline = tokio::time::Instant::now() + wait;
                match ask_for_chunk_list(&manifest, digest, &connection, deadline).await {
                    Ok(list) => Answer::Bytes(list.file_form().into_bytes()),
                    Err(error @ NoList::NotThis(_)) => Answer::WrongBytes(error.to_string()),
                    Err(error @ NoList::Failed(_)) => Answer::Failed(error.to_string()),
                }
            })
        }),
        mirror: Box::new(|_| Box::pin(async { Answer::Failed("no mirror is asked".into()) })),
    };
    let mut tuning = plan.tuning.clone();
    tuning.handshake_timeout = tuning.handshake_timeout.min(wait);
    let bound = Ok((endpoint.clone(), paths.clone()));
    let outcome = super::query::run(
        &mut query,
        bound,
        Arc::clone(identity),
        tuning,
        &relays,
        asking,
    )
    .await;
    let place = |source: &QuerySource| {
        let short =
            |id: &minimodel_wire::PeerId| id.to_string().chars().take(10).collect::<String>();
        match source {
            QuerySource::Peer(peer) => format!("peer {} at {}", short(&peer.id), peer.addr),
            QuerySource::Relayed { peer, relay } => {
                format!("peer {} through the relay at {relay}", short(peer))
            }
            QuerySource::Mirror(n) => format!("mirror {n}"),
        }
    };
    match outcome {
        QueryOutcome::Found { source, bytes } => NewChunkList::check(&plan.manifest, &bytes)
            .map(|list| (list, place(&sources[source])))
            .map_err(|error| format!("{}: {NOT_THIS_LIST} ({error})", place(&sources[source]))),
        QueryOutcome::NotFound { why, .. } => Err((sources.iter().zip(why))
            .map(|(source, why)| format!("{}: {why}", place(source)))
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// [`chunk_list_from_peers`]'s second part: the addresses `dht` knows for
/// the swarm, those [`minimodel_node::query::beyond::dht_targets`] picks
/// (none the plan names by address; one that proves the key of a named
/// peer once reached is not asked either: named peers were asked or
/// passed over already), all asked at once, `wait` each, until
/// `until`; the first list that checks wins and the others are dropped.
/// Asked one at a time, a few addresses that accept and trickle would
/// spend the whole wait before an honest seeder behind them is reached.
async fn chunk_list_from_dht(
    plan: &DownloadPlan,
    (dht, beyond): (&crate::dht::Discovery, &BeyondConfig),
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    until: tokio::time::Instant,
    wait: std::time::Duration,
    why: &mut Vec<String>,
) -> Option<(NewChunkList, String)> {
    if until <= tokio::time::Instant::now() {
        why.push(format!("the DHT: {}", spent()));
        return None;
    }
    let key = crate::dht::SwarmKey::of(&plan.manifest.chunks.merkle_root);
    let Ok(found) = tokio::time::timeout_at(until, dht.lookup(key)).await else {
        why.push("the DHT: no answer in the time for asking peers".to_owned());
        return None;
    };
    let named: Vec<_> = (plan.peers.iter())
        .flat_map(|peer| peer.addrs.iter().copied())
        .collect();
    let addrs = minimodel_node::query::beyond::dht_targets(beyond, found, &named);
    if addrs.is_empty() {
        why.push("the DHT knows no other peer of the swarm".to_owned());
        return None;
    }
    let deadline = until.min(tokio::time::Instant::now() + wait);
    let targets = (addrs.into_iter())
        .map(|addr| Target {
            id: None,
            addr,
            place: format!("the peer the DHT named at {addr}"),
        })
        .collect();
    first_list_at_once(plan, endpoint, identity, targets, deadline, why).await
}

/// An address to ask for a chunk list, and the key it must prove when
/// known.
struct Target {
    id: Option<minimodel_wire::PeerId>,
    addr: std::net::SocketAddr,
    /// The peer, in words.
    place: String,
}

/// Asks every one of `targets` at once, each by `deadline`: the first list
/// that checks wins and the others are dropped; each that gives none says
/// why in `why`. A target that proves the key of a peer the plan names is
/// not asked (it was, or was passed over). Asked one at a time, a few
/// addresses that accept and trickle would spend the whole wait before an
/// honest peer behind them is reached.
async fn first_list_at_once(
    plan: &DownloadPlan,
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    targets: Vec<Target>,
    deadline: tokio::time::Instant,
    why: &mut Vec<String>,
) -> Option<(NewChunkList, String)> {
    let attempts: Vec<crate::first::Attempt<'_, (NewChunkList, String)>> = targets
        .into_iter()
        .map(
            |Target { id, addr, place }| -> crate::first::Attempt<'_, _> {
                Box::pin(async move {
                    let (connection, id) = match id {
                        Some(id) => {
                            let peer = minimodel_wire::PeerAddr { id, addr };
                            let dialed =
                                crate::transport::connect(endpoint, &peer, identity, &plan.tuning);
                            (connected(dialed, deadline, &place).await?, id)
                        }
                        None => {
                            let dialed = crate::transport::connect_any(
                                endpoint,
                                addr,
                                identity,
                                &plan.tuning,
                            );
                            connected(dialed, deadline, &place).await?
                        }
                    };
                    if plan.peers.iter().any(|peer| peer.id == id) {
                        connection.close(0u32.into(), b"done");
                        return Err(format!("{place}: a peer named before, asked there"));
                    }
                    let asked = ask_for_chunk_list(
                        &plan.manifest,
                        plan.manifest_sha256.0,
                        &connection,
                        deadline,
                    );
                    match asked.await {
                        Ok(list) => Ok((list, place)),
                        Err(error) => Err(format!("{place}: {error}")),
                    }
                })
            },
        )
        .collect();
    match crate::first::first_ok(attempts).await {
        Ok(found) => Some(found),
        Err(failed) => {
            why.extend(failed.into_iter().map(|(_, error)| error));
            None
        }
    }
}

impl DownloadPlan {
    /// Only what changed moves: with older versions to copy from
    /// ([`Self::reuse`]), or a manifest whose chunks are listed
    /// (`slm-parts-merkle-v0`, which cannot open without the lengths), and
    /// no chunk list yet, reads the new version's: for a listed one first
    /// the list a download in `out_dir` kept, then at the manifest's
    /// chunk-list-route and beside each of the plan's mirrors, all at
    /// once (the first that checks), else from the first of the plan's
    /// peers that serves it,
    /// reached directly or through a relay it names (a chunk list query,
    /// `docs/wire-protocol.md` 8.7), else, with local discovery, from a
    /// neighbour of the swarm heard on the local network, else, when the
    /// plan has a DHT client, from a peer the DHT knows for the swarm,
    /// and keeps it only if it checks against the manifest (its Merkle
    /// root, and its `chunk-list-sha256` when named). A download that may
    /// use the DHT (`dht`, the client's configuration), has no client
    /// yet and found no list on the web starts one here and keeps it in
    /// the plan, for the node to use. Decided here for every front end (`fetch` and
    /// `follow`, the companion's downloads and follow), which only show
    /// what it says.
    pub async fn read_chunk_list_ahead(
        &mut self,
        dht: Option<&crate::dht::DiscoveryConfig>,
    ) -> ChunkListAhead {
        self.read_chunk_list_ahead_within(dht, std::time::Duration::ZERO)
            .await
    }

    /// [`Self::read_chunk_list_ahead`], asked again while a listed
    /// download's list is [`ChunkListAhead::Missing`], until `patience`
    /// has passed since the start: a seeder that comes up later, or a
    /// peer still starting, gives it, as a fixed-size download's node
    /// dials its peers again until it gives up. When each round starts
    /// and how long it may take are [`ListRounds`]' decisions; this only
    /// asks and waits. `fetch` waits its `--give-up-after`; the companion
    /// asks once, and its item tries again by itself.
    pub async fn read_chunk_list_ahead_within(
        &mut self,
        dht: Option<&crate::dht::DiscoveryConfig>,
        patience: std::time::Duration,
    ) -> ChunkListAhead {
        let mut rounds = ListRounds::new(RoundsConfig::default(), now(), patience);
        loop {
            let ahead = self.read_chunk_list_once(dht, rounds.budget(now())).await;
            if !matches!(ahead, ChunkListAhead::Missing { .. }) {
                return ahead;
            }
            match rounds.missing(now()) {
                AfterRound::Again { at } => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                }
                AfterRound::GiveUp => return ahead,
            }
        }
    }

    /// Whether the download's directory can be one: `Err` when a file (or
    /// anything but a directory) is where it belongs, which the download
    /// leaves as it is. Asked before anything is read ahead, so that such
    /// a mistake is said at once.
    pub fn check_out_dir(&self) -> Result<(), ResumeError> {
        match std::fs::metadata(&self.out_dir) {
            Ok(meta) if !meta.is_dir() => Err(ResumeError::NotADirectory {
                path: self.out_dir.clone(),
            }),
            _ => Ok(()),
        }
    }

    async fn read_chunk_list_once(
        &mut self,
        dht: Option<&crate::dht::DiscoveryConfig>,
        budget: std::time::Duration,
    ) -> ChunkListAhead {
        let listed = self.manifest.chunks.scheme.is_listed();
        let for_reuse = !self.reuse.is_empty();
        if self.chunk_list.is_some() || (!for_reuse && !listed) {
            return ChunkListAhead::NotNeeded;
        }
        if listed {
            // A finished download here keeps the list it was cut by.
            let own = self
                .out_dir
                .join(format!("{}.chunk-list", self.manifest.model_id));
            let limit = crate::input::Input::chunk_list(self.manifest.chunks.chunk_count);
            if let Ok(bytes) = crate::input::read_input(&own, limit)
                && let Ok(list) = NewChunkList::check(&self.manifest, &bytes)
            {
                self.chunk_list = Some(list);
                return ChunkListAhead::Read {
                    from: own.display().to_string(),
                    for_reuse,
                };
            }
        }
        let agent = concat!("minimodel/", env!("CARGO_PKG_VERSION"));
        let mirrors = self.mirrors.as_ref().map_or(&[][..], |set| &set.urls[..]);
        let on_the_web = (self.manifest.chunks.chunk_list.as_ref())
            .is_some_and(|list| list.route.is_some())
            || !mirrors.is_empty();
        let mut why = Vec::new();
        if on_the_web {
            let read =
                crate::mirror::read_new_chunk_list(&self.manifest, self.mirrors.as_ref(), agent);
            match read.await {
                Ok(read) => {
                    self.chunk_list = Some(read.list);
                    return ChunkListAhead::Read {
                        from: read.from,
                        for_reuse,
                    };
                }
                Err(error) => why.push(error),
            }
        }
        // A DHT the download may use is joined now, and its peers are
        // asked too: a listed download cannot open without its list, and
        // one with older versions to copy from moves them whole without
        // it. The node uses the same client once it runs (`fetch --dht`
        // and a companion download with the DHT would join it then anyway).
        if self.dht.is_none()
            && let Some(config) = dht
        {
            let joined =
                tokio::time::timeout(DHT_JOIN_WAIT, crate::dht::Discovery::start(config.clone()))
                    .await;
            match joined {
                Ok(Ok(discovery)) => self.dht = Some(Arc::new(discovery)),
                Ok(Err(error)) => why.push(format!("the DHT could not be joined: {error}")),
                Err(_) => why.push(format!(
                    "the DHT could not be joined in {} s",
                    DHT_JOIN_WAIT.as_secs()
                )),
            }
        }
        if self.peers.is_empty() && self.dht.is_none() && !self.lan {
            why.push(
                if on_the_web {
                    "no peer is named to ask"
                } else {
                    "the manifest names no chunk-list-route, and no mirror or peer is given"
                }
                .to_owned(),
            );
        } else {
            match chunk_list_from_peers(self, budget).await {
                Ok((list, from)) => {
                    self.chunk_list = Some(list);
                    return ChunkListAhead::Read { from, for_reuse };
                }
                Err(error) => why.push(error),
            }
        }
        if listed {
            return ChunkListAhead::Missing {
                why: why.join("; "),
            };
        }
        ChunkListAhead::NotReused {
            why: why.join("; "),
        }
    }

    /// Opens the download in `out_dir`: resumes, rechecks or refuses as
    /// the directory says (`docs/resume.md`). Blocking; `progress` hears
    /// of every chunk read again.
    pub fn open(self, progress: &(dyn Fn(RecheckProgress) + Sync)) -> Result<Opened, ResumeError> {
        self.open_with_patience(progress, std::time::Duration::ZERO)
    }

    /// [`Self::open`], asking again every 100 ms for up to `patience` while
    /// the download is in use ([`ResumeError::InUse`]): a node that runs
    /// it again at once (a restart after a pause) waits for the previous
    /// run's last chunk checks to let it go.
    pub fn open_with_patience(
        self,
        progress: &(dyn Fn(RecheckProgress) + Sync),
        patience: std::time::Duration,
    ) -> Result<Opened, ResumeError> {
        let options = ResumeOptions {
            recheck: self.recheck,
            listed: (self.chunk_list.as_ref()).and_then(|list| list.listed_geometry().cloned()),
            ..ResumeOptions::default()
        };
        let until = std::time::Instant::now() + patience;
        let opened = loop {
            match PartialDownload::open(
                &self.out_dir,
                &self.manifest,
                self.manifest_sha256,
                &options,
                progress,
            ) {
                Err(ResumeError::InUse { .. }) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                opened => break opened?,
            }
        };
        Ok(match opened {
            OpenedDownload::Complete(done) => Opened::Complete(Box::new(done)),
            OpenedDownload::Partial(partial, report) => {
                if let Some(list) = &self.chunk_list {
                    partial.keep_chunk_list(list)?;
                }
                let geometry = partial.geometry();
                let resumed_bytes = partial
                    .verified()
                    .iter_ones()
                    .map(|index| u64::from(geometry.chunk_len(ChunkIndex(index.0)).unwrap_or(0)))
                    .sum();
                let reused = match &self.chunk_list {
                    Some(list) => {
                        let mut sources = self.reuse.clone();
                        for found in
                            finished_versions_in(&self.out_dir, self.manifest.model_id.as_str())
                        {
                            if !sources.contains(&found) {
                                sources.push(found);
                            }
                        }
                        Some(partial.reuse_local(list, &sources)?)
                    }
                    None => None,
                };
                Opened::Partial(Box::new(ReadyDownload {
                    plan: self,
                    partial: Arc::new(partial),
                    report,
                    resumed_bytes,
                    reused,
                }))
            }
        })
    }
}

impl ReadyDownload {
    /// The plan it was opened with.
    pub fn plan(&self) -> &DownloadPlan {
        &self.plan
    }

    /// Finds peers on the Mainline DHT through `dht` too (a client the
    /// caller started once it knew the download was not complete, when
    /// reading the chunk list ahead did not start one: [`Self::has_dht`]).
    pub fn set_dht(&mut self, dht: Arc<Discovery>) {
        self.plan.dht = Some(dht);
    }

    /// Whether the plan has a DHT client already (one that reading the
    /// chunk list ahead started, [`DownloadPlan::read_chunk_list_ahead`]).
    pub fn has_dht(&self) -> bool {
        self.plan.dht.is_some()
    }

    /// Starts the node with `identity` (the peers are dialed when the
    /// fetcher runs); `reports` hears of links, progress and delivery.
    pub fn start(
        self,
        identity: Arc<Identity>,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Fetcher, FetchError> {
        Fetcher::start(self.plan, self.partial, identity, reports)
    }
}
