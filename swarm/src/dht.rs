//! Finding peers without an offer: the BitTorrent Mainline DHT (BEP 5),
//! spoken by the `mainline` crate.
//!
//! A serving node announces its QUIC port under the [`SwarmKey`] of the
//! artifact it serves (`announce_peer`), again every
//! [`REANNOUNCE_INTERVAL`] so the DHT does not forget it; a node that needs
//! peers looks the key up (`get_peers`) and gets addresses, without peer
//! ids: the QUIC handshake and the `Hello` learn who is there and whether
//! it serves this swarm, and every chunk is still proven against the
//! Merkle root. The key is specified in `docs/transport.md` (section 6);
//! how the DHT, offers and peer exchange combine in `docs/swarm.md`; what
//! the DHT adds to the threat model in `docs/security.md`.
//!
//! The parts that decide things are sans-IO and tested without a network:
//! [`SwarmKey`] (the key), [`PeerFilter`] (which answers may be dialed, how
//! many) and [`AnnounceSchedule`] (when to announce again). [`Discovery`]
//! is the thin part that runs them against the `mainline` crate.
//!
//! The DHT has its own UDP socket, IPv4 only (the crate does not speak BEP
//! 32), apart from the QUIC endpoint: the crate binds and reads its socket
//! in a thread of its own and takes no socket from outside, and a shared
//! socket could not be split by the first byte anyway, since a bencoded
//! KRPC message starts with `d` (0x64), which is also a valid first byte of
//! a QUIC short-header packet.
//!
//! [`Discovery`] is used from tokio without blocking it: the node is built
//! on a blocking thread ([`tokio::task::spawn_blocking`]; binding and
//! resolving the public bootstrap names block), everything after goes
//! through the crate's async API.

mod channel;
mod filter;
mod key;
mod schedule;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU16;
use std::time::Duration;

use futures_lite::StreamExt;
use mainline::async_dht::{AsyncDht, GetStream};
use mainline::errors::PutQueryError;
use mainline::{Dht, Id};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use channel::{ChannelPutFailure, channel_target};
pub use filter::{PeerFilter, Unfit, allows_loopback, filter_peers, unfit};
pub use key::{SWARM_KEY_LABEL, SwarmKey};
pub use schedule::AnnounceSchedule;

/// How often a serving node announces itself again. DHT nodes forget an
/// announced peer that has not announced again for about 30 minutes
/// (`docs/swarm.md`, "The DHT"); 15 minutes, libtorrent's default too,
/// leaves room for one lost announce and reaches nodes that joined near
/// the key since the last one.
pub const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The first retry after a failed announce; it doubles with each failure
/// in a row, up to the re-announce interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Addresses one lookup returns at most.
pub const MAX_LOOKUP_PEERS: usize = 64;
/// How long one lookup may take. A `get_peers` query on the public DHT
/// usually ends by itself within a few seconds (the crate gives up on a
/// silent node after 2 s).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Announcement::stop`] lets an announce already under way
/// finish, so that nothing is announced after it returns.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest re-announce interval accepted: past it, DHT nodes may
/// forget the peer between two announces.
pub const MAX_REANNOUNCE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Most error text kept from a DHT node's refusal.
const MAX_REFUSAL_TEXT: usize = 128;

/// Which DHT to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The public Mainline DHT, through the crate's bootstrap nodes
    /// (`mainline::DEFAULT_BOOTSTRAP_NODES`, resolved when the node starts).
    Public,
    /// The DHT these nodes are part of (`--dht-bootstrap`): a private
    /// network, a test, or a way into the public DHT.
    Nodes(Vec<SocketAddrV4>),
    /// None: this node starts a DHT of its own, for others to join
    /// (`minimodel dht-node` without `--dht-bootstrap`).
    NewNetwork,
}

/// How a [`Discovery`] node runs. Every field has a default
/// ([`DiscoveryConfig::default`]).
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Where the DHT's UDP socket listens. Default `0.0.0.0:0`: every
    /// interface, a free port (never the crate's habit of taking 6881).
    pub bind: SocketAddrV4,
    /// Which DHT to join. Default [`Bootstrap::Public`].
    pub bootstrap: Bootstrap,
    /// Answer other nodes' queries and store their announcements from the
    /// start (a DHT server). Default `false`: a client, which the crate
    /// promotes to a server after 15 minutes if it is reachable from
    /// outside.
    pub server_mode: bool,
    /// Default [`REANNOUNCE_INTERVAL`]; at most [`MAX_REANNOUNCE_INTERVAL`].
    pub reannounce_interval: Duration,
    /// Default [`FIRST_RETRY`]; at most `reannounce_interval`.
    pub first_retry: Duration,
    /// Default [`MAX_LOOKUP_PEERS`]; from 1 to 1024.
    pub max_lookup_peers: usize,
    /// Default [`LOOKUP_TIMEOUT`]; from 1 ms to 5 minutes.
    pub lookup_timeout: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            bootstrap: Bootstrap::Public,
            server_mode: false,
            reannounce_interval: REANNOUNCE_INTERVAL,
            first_retry: FIRST_RETRY,
            max_lookup_peers: MAX_LOOKUP_PEERS,
            lookup_timeout: LOOKUP_TIMEOUT,
        }
    }
}

/// A [`DiscoveryConfig`] value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryConfigError {
    /// `reannounce_interval` is zero or longer than
    /// [`MAX_REANNOUNCE_INTERVAL`].
    #[error("the DHT re-announce interval must be between 1 ms and 30 minutes, not {0:?}")]
    ReannounceInterval(Duration),
    /// `first_retry` is zero or longer than the re-announce interval.
    #[error(
        "the first DHT announce retry must be between 1 ms and the re-announce interval, not {0:?}"
    )]
    FirstRetry(Duration),
    /// `max_lookup_peers` is 0 or over 1024.
    #[error("a DHT lookup must keep between 1 and 1024 addresses, not {0}")]
    MaxLookupPeers(usize),
    /// `lookup_timeout` is zero or over 5 minutes.
    #[error("the DHT lookup timeout must be between 1 ms and 5 minutes, not {0:?}")]
    LookupTimeout(Duration),
    /// [`Bootstrap::Nodes`] with no node.
    #[error("an empty DHT bootstrap list")]
    NoBootstrapNodes,
}

impl DiscoveryConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), DiscoveryConfigError> {
        let millisecond = Duration::from_millis(1);
        if self.reannounce_interval < millisecond
            || self.reannounce_interval > MAX_REANNOUNCE_INTERVAL
        {
            return Err(DiscoveryConfigError::ReannounceInterval(
                self.reannounce_interval,
            ));
        }
        if self.first_retry < millisecond || self.first_retry > self.reannounce_interval {
            return Err(DiscoveryConfigError::FirstRetry(self.first_retry));
        }
        if !(1..=1024).contains(&self.max_lookup_peers) {
            return Err(DiscoveryConfigError::MaxLookupPeers(self.max_lookup_peers));
        }
        if self.lookup_timeout < millisecond || self.lookup_timeout > Duration::from_secs(300) {
            return Err(DiscoveryConfigError::LookupTimeout(self.lookup_timeout));
        }
        if self.bootstrap == Bootstrap::Nodes(Vec::new()) {
            return Err(DiscoveryConfigError::NoBootstrapNodes);
        }
        Ok(())
    }

    /// Whether lookups may return loopback addresses: only on a DHT joined
    /// through loopback nodes alone ([`allows_loopback`]).
    pub fn allows_loopback(&self) -> bool {
        match &self.bootstrap {
            Bootstrap::Nodes(nodes) => allows_loopback(Some(nodes)),
            Bootstrap::Public | Bootstrap::NewNetwork => false,
        }
    }
}

/// Why a [`Discovery`] node could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A configuration value is out of range (local misuse).
    #[error(transparent)]
    Config(#[from] DiscoveryConfigError),
    /// Not called from within a tokio runtime (local misuse).
    #[error("the DHT node needs a tokio runtime")]
    NoRuntime,
    /// The UDP socket could not be bound (the port is taken, or the
    /// address is not this host's).
    #[error("cannot listen for the DHT on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddrV4,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Why one announce reached no DHT node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceFailure {
    /// No DHT node is known near the key: the bootstrap nodes did not
    /// answer (yet), or the DHT is empty.
    #[error("no DHT node answered near the swarm key")]
    NoNodes,
    /// Nodes were found but none answered the announce in time.
    #[error("the DHT nodes near the swarm key did not answer the announce")]
    Timeout,
    /// The nodes refused it; the most common refusal, its text cut to 128
    /// characters without control characters.
    #[error("DHT nodes refused the announce: {code} {message}")]
    Refused {
        /// KRPC error code (203: bad token, for instance).
        code: i32,
        /// KRPC error text, as far as it is shown.
        message: String,
    },
}

impl From<PutQueryError> for AnnounceFailure {
    fn from(error: PutQueryError) -> Self {
        match error {
            PutQueryError::NoClosestNodes => Self::NoNodes,
            PutQueryError::Timeout => Self::Timeout,
            PutQueryError::ErrorResponse(refusal) => Self::Refused {
                code: refusal.code,
                message: refusal
                    .description
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_REFUSAL_TEXT)
                    .collect(),
            },
        }
    }
}

/// How an [`Announcement`] is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceStatus {
    /// Announces started.
    pub attempts: u64,
    /// Announces that at least one DHT node stored.
    pub announced: u64,
    /// Why the last announce failed, if it did.
    pub last_failure: Option<AnnounceFailure>,
    /// When the next announce is due, counted from the end of the last.
    pub next_in: Option<Duration>,
    /// Re-announcing has ended: nothing more is announced.
    pub stopped: bool,
}

/// A node on the Mainline DHT: announces swarms and looks them up.
///
/// Dropping it, and every [`Announcement`] made from it, closes the DHT
/// socket (the crate's thread notices within 50 ms).
#[derive(Debug)]
pub struct Discovery {
    dht: AsyncDht,
    local_addr: SocketAddrV4,
    config: DiscoveryConfig,
}

impl Discovery {
    /// Binds the DHT socket and joins the DHT of `config.bootstrap`. Must
    /// be called within a tokio runtime; the blocking part runs on a
    /// blocking thread.
    pub async fn start(config: DiscoveryConfig) -> Result<Self, DiscoveryError> {
        config.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        let built = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || build(&config)).await
        };
        let dht = match built {
            Ok(result) => result?,
            // The crate panics when its thread fails to bind before it was
            // asked whether it did (a race inside `Dht::new`).
            Err(join) => {
                return Err(DiscoveryError::Bind {
                    addr: config.bind,
                    source: std::io::Error::other(join.to_string()),
                });
            }
        };
        let dht = dht.as_async();
        let local_addr = dht.info().await.local_addr();
        Ok(Self {
            dht,
            local_addr,
            config,
        })
    }

    /// The DHT socket's address (the port chosen if `bind` asked for 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    /// Starts announcing that this host serves the swarm `key` on QUIC
    /// port `port`, now and every `reannounce_interval` until the
    /// [`Announcement`] is stopped or dropped. The announced IP address is
    /// the one DHT nodes see this node's UDP packets come from.
    ///
    /// One node announces one port per key: DHT nodes keep one address
    /// per announcing node and key, so a second announcement of the same
    /// key from the same `Discovery` replaces the first one's address.
    pub fn announce(&self, key: SwarmKey, port: NonZeroU16) -> Announcement {
        let (status_tx, status) = watch::channel(AnnounceStatus::default());
        let (stop, stop_rx) = oneshot::channel();
        let dht = self.dht.clone();
        let info_hash = Id::from(*key.as_bytes());
        let announce_once = move || {
            let dht = dht.clone();
            async move {
                dht.announce_peer(info_hash, Some(port.get()))
                    .await
                    .map(|_| ())
                    .map_err(AnnounceFailure::from)
            }
        };
        let schedule =
            AnnounceSchedule::new(self.config.reannounce_interval, self.config.first_retry);
        let task = tokio::spawn(keep_announced(
            announce_once,
            schedule,
            stop_rx,
            status_tx,
            STOP_GRACE,
        ));
        Announcement {
            key,
            port,
            stop: Some(stop),
            task: Some(task),
            status,
        }
    }

    /// Looks `key` up: the addresses DHT nodes know for it, filtered
    /// ([`PeerFilter`]: no port 0, no unspecified, broadcast, reserved or
    /// multicast address, loopback only on a loopback DHT), each once, at
    /// most `max_lookup_peers`, within `lookup_timeout`. An empty list
    /// means nobody is known to serve the swarm, or the DHT did not answer.
    ///
    /// It returns when the query is over; [`Discovery::start_lookup`] gives
    /// the addresses as they arrive.
    pub async fn lookup(&self, key: SwarmKey) -> Vec<SocketAddr> {
        let mut lookup = self.start_lookup(key);
        while lookup.next().await.is_some() {}
        lookup.into_peers()
    }

    /// Starts looking `key` up; [`Lookup::next`] gives the addresses as DHT
    /// nodes answer, with the same filter and bounds as [`Discovery::lookup`].
    pub fn start_lookup(&self, key: SwarmKey) -> Lookup {
        Lookup {
            answers: Some(self.dht.get_peers(Id::from(*key.as_bytes()))),
            filter: PeerFilter::new(self.config.max_lookup_peers, self.config.allows_loopback()),
            deadline: tokio::time::Instant::now() + self.config.lookup_timeout,
        }
    }
}

/// A lookup under way ([`Discovery::start_lookup`]).
pub struct Lookup {
    answers: Option<GetStream<Vec<SocketAddrV4>>>,
    filter: PeerFilter,
    deadline: tokio::time::Instant,
}

impl Lookup {
    /// The addresses of the next answer that passed the filter and were not
    /// given before (never empty), or `None` once the lookup is over: the
    /// query ended, `max_lookup_peers` were given, or `lookup_timeout`
    /// passed.
    pub async fn next(&mut self) -> Option<Vec<SocketAddr>> {
        loop {
            let answers = self.answers.as_mut()?;
            if self.filter.is_full() {
                self.answers = None;
                return None;
            }
            // The query ends by itself once the nodes near the key answered
            // or timed out; the deadline bounds a DHT that keeps it going.
            match tokio::time::timeout_at(self.deadline, answers.next()).await {
                Ok(Some(answer)) => {
                    let kept = self.filter.offer(answer.into_iter().map(SocketAddr::V4));
                    if !kept.is_empty() {
                        return Some(kept.to_vec());
                    }
                }
                Ok(None) | Err(_) => {
                    self.answers = None;
                    return None;
                }
            }
        }
    }

    /// Addresses refused so far as [`unfit`].
    pub fn unfit_count(&self) -> u64 {
        self.filter.unfit_count()
    }

    /// Every address given so far, in order.
    pub fn into_peers(self) -> Vec<SocketAddr> {
        self.filter.into_peers()
    }
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("filter", &self.filter)
            .field("over", &self.answers.is_none())
            .finish()
    }
}

fn build(config: &DiscoveryConfig) -> Result<Dht, DiscoveryError> {
    let bind_error = |source| DiscoveryError::Bind {
        addr: config.bind,
        source,
    };
    // A clean error for a taken port in the common case; the crate's own
    // bind failure can race (see `Discovery::start`).
    if config.bind.port() != 0 {
        drop(std::net::UdpSocket::bind(config.bind).map_err(bind_error)?);
    }
    let mut builder = Dht::builder();
    builder
        .bind_address(*config.bind.ip())
        .port(config.bind.port());
    match &config.bootstrap {
        Bootstrap::Public => {}
        Bootstrap::Nodes(nodes) => {
            builder.bootstrap(nodes);
        }
        Bootstrap::NewNetwork => {
            builder.no_bootstrap();
        }
    }
    if config.server_mode {
        builder.server_mode();
    }
    builder.build().map_err(bind_error)
}

/// A swarm being announced. Stopping it, or dropping it, ends the
/// re-announcing; what DHT nodes already stored stays until they forget it
/// (`docs/swarm.md`, "The DHT").
#[derive(Debug)]
pub struct Announcement {
    key: SwarmKey,
    port: NonZeroU16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    status: watch::Receiver<AnnounceStatus>,
}

impl Announcement {
    /// The swarm announced.
    pub fn key(&self) -> SwarmKey {
        self.key
    }

    /// The QUIC port announced.
    pub fn port(&self) -> NonZeroU16 {
        self.port
    }

    /// How it is doing now.
    pub fn status(&self) -> AnnounceStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of the status, for reporting.
    pub fn watch(&self) -> watch::Receiver<AnnounceStatus> {
        self.status.clone()
    }

    /// Stops re-announcing. An announce under way is let finish (at most
    /// [`STOP_GRACE`]), so once this returns nothing more is announced
    /// for this key from this node. Returns the final status.
    pub async fn stop(mut self) -> AnnounceStatus {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.status()
    }
}

/// Announces with `announce_once` until `stop` fires (or its sender is
/// dropped), waiting between announces as `schedule` says, and publishes
/// each outcome on `status`. A stop during an announce lets it finish, for
/// at most `grace`.
async fn keep_announced<F, A>(
    mut announce_once: F,
    mut schedule: AnnounceSchedule,
    mut stop: oneshot::Receiver<()>,
    status: watch::Sender<AnnounceStatus>,
    grace: Duration,
) where
    F: FnMut() -> A,
    A: Future<Output = Result<(), AnnounceFailure>>,
{
    loop {
        status.send_modify(|s| {
            s.attempts += 1;
            s.next_in = None;
        });
        let attempt = announce_once();
        tokio::pin!(attempt);
        let (outcome, stopping) = tokio::select! {
            outcome = &mut attempt => (Some(outcome), false),
            _ = &mut stop => (tokio::time::timeout(grace, &mut attempt).await.ok(), true),
        };
        let wait = match outcome {
            Some(Ok(())) => {
                let wait = schedule.after_success();
                status.send_modify(|s| {
                    s.announced += 1;
                    s.last_failure = None;
                });
                wait
            }
            Some(Err(failure)) => {
                let wait = schedule.after_failure();
                status.send_modify(|s| s.last_failure = Some(failure));
                wait
            }
            None => break,
        };
        if stopping {
            break;
        }
        status.send_modify(|s| s.next_in = Some(wait));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => break,
        }
    }
    status.send_modify(|s| {
        s.stopped = true;
        s.next_in = None;
    });
}

#[cfg(test)]
mod tests;
