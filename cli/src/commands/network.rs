//! What the networked commands share: peer addresses, identities, the
//! runtime. (How a node's reports are shown is in `crate::reports`.)

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use minimodel_swarm::addrs::{advertised_addrs, listener_addrs, resolve_host_port};
use minimodel_swarm::peers::{PeerAddrs, parse_peer_arg};
use minimodel_swarm::transport::{CongestionControl, Identity, TransportTuning};

use crate::exit::{Exit, Failure, OrExit};
use crate::output::Output;

/// The congestion controller for the data this node sends (`--congestion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Congestion {
    /// Delay-based (the default): keeps the queue this node's uploads
    /// cause at its uplink short, so its downloads are not slowed by them,
    /// and rides out random loss; see docs/transport.md.
    Delay,
    /// CUBIC: loss-based; fills the uplink's queue.
    Cubic,
    /// BBR: far faster where packets are lost at random (a lossy radio
    /// link, say), slower on a clean one; see docs/transport.md.
    Bbr,
    /// NewReno.
    NewReno,
}

impl Congestion {
    /// The transport tuning with this controller.
    pub fn tuning(self) -> TransportTuning {
        TransportTuning {
            congestion_control: match self {
                Congestion::Delay => CongestionControl::Delay,
                Congestion::Cubic => CongestionControl::Cubic,
                Congestion::Bbr => CongestionControl::Bbr,
                Congestion::NewReno => CongestionControl::NewReno,
            },
            ..TransportTuning::default()
        }
    }
}

/// Parses `--peer`: `PEER_ID@IP:PORT`, `PEER_ID@[IPv6]:PORT` or
/// `PEER_ID@NAME:PORT`, the name resolved now to all its addresses.
pub fn parse_peer(text: &str) -> Result<PeerAddrs, String> {
    // clap already echoes the whole value; the message says what is wrong.
    parse_peer_arg(text).map_err(|e| e.to_string())
}

/// One `--public-addr HOST:PORT`: every address it names.
#[derive(Debug, Clone)]
pub struct PublicAddr(pub Vec<SocketAddr>);

/// Parses `--public-addr`: `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`, the
/// name resolved now to all its addresses.
pub fn parse_public_addr(text: &str) -> Result<PublicAddr, String> {
    resolve_host_port(text)
        .map(PublicAddr)
        .map_err(|e| e.to_string())
}

/// How long a command that serves waits for its router's first answer
/// about a port mapping before it gives out its addresses (a router
/// answers in milliseconds; no router costs the searches' deadlines).
pub const MAPPING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a node listening at `listen` is reached, for the consent words:
/// this host's addresses for a wildcard, and whether the router is asked
/// to map the port (`port_mapping`).
pub fn reach(listen: SocketAddr, port_mapping: bool) -> minimodel_swarm::app::consent::Reach {
    let interfaces = if listen.ip().is_unspecified() {
        listener_addrs(SocketAddr::new(listen.ip(), 1), &[])
            .map(|addrs| addrs.iter().map(SocketAddr::ip).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    minimodel_swarm::app::consent::Reach {
        listen,
        interfaces,
        shared_port: false,
        port_mapping,
    }
}

/// The addresses a listener bound at `bound` advertises: the outside
/// address its router maps to it (`mapped`), the `--public-addr` values,
/// then itself, or for a wildcard the host's usable interface addresses
/// (`minimodel_swarm::addrs`). When the interfaces cannot be read, the
/// loopback address (and a warning).
pub fn advertised(
    bound: SocketAddr,
    mapped: Option<SocketAddr>,
    public: &[PublicAddr],
    out: Output,
) -> Vec<SocketAddr> {
    let public: Vec<SocketAddr> = mapped
        .into_iter()
        .chain(public.iter().flat_map(|p| p.0.iter().copied()))
        .collect();
    match listener_addrs(bound, &public) {
        Ok(addrs) => addrs,
        Err(error) => {
            out.say(format!(
                "cannot list this host's addresses ({error}); advertising only the loopback address and --public-addr"
            ));
            advertised_addrs(bound, &[], &public)
        }
    }
}

/// `ID at ADDR, ADDR` for people.
pub fn describe_peer(peer: &PeerAddrs) -> String {
    let addrs: Vec<String> = peer.addrs.iter().map(ToString::to_string).collect();
    format!("{} at {}", peer.id, addrs.join(", "))
}

/// The node's identity: kept in `dir` across runs, or a fresh one.
pub fn identity(dir: Option<&Path>) -> Result<Arc<Identity>, Failure> {
    let identity = match dir {
        Some(dir) => Identity::load_or_generate(dir)
            .with_context(|| format!("cannot use the identity in {}", dir.display()))
            .or_exit(Exit::InvalidInput)?,
        None => Identity::generate().context("cannot create an identity")?,
    };
    Ok(Arc::new(identity))
}

/// The tokio runtime of a command that runs one node (`fetch`, `seed`,
/// `dht-node`): one thread carries the node, its links and QUIC, while
/// hashing and disk I/O run on blocking threads beside it. Nothing then
/// hands a packet or an event from one runtime thread to another: a
/// 1 GiB fetch takes 5 to 11 % less CPU at both ends, and a fetch from
/// four seeders 6 to 8 MiB less memory, than on two worker threads
/// (`docs/performance.md`, "One runtime thread").
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    build(tokio::runtime::Builder::new_current_thread())
}

/// The tokio runtime of a process that runs many nodes at once (the
/// companion, the demo swarm): a worker thread per core, so that the
/// nodes encrypt and send side by side.
pub fn many_nodes_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    build(tokio::runtime::Builder::new_multi_thread())
}

fn build(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, Failure> {
    Ok(builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?)
}
