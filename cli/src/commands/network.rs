//! What the networked commands share: peer addresses, identities, the
//! runtime. (How a node's reports are shown is in `crate::reports`.)

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use minimodel_swarm::transport::{CongestionControl, Identity, TransportTuning};
use minimodel_wire::{PeerAddr, PeerId, PeerIdError};

use crate::exit::{Exit, Failure, OrExit};

/// The congestion controller for the data this node sends (`--congestion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Congestion {
    /// CUBIC: the fastest on clean paths (the default).
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
                Congestion::Cubic => CongestionControl::Cubic,
                Congestion::Bbr => CongestionControl::Bbr,
                Congestion::NewReno => CongestionControl::NewReno,
            },
            ..TransportTuning::default()
        }
    }
}

/// Parses `PEER_ID@HOST:PORT`; the host may be a name, resolved now.
pub fn parse_peer(text: &str) -> Result<PeerAddr, String> {
    if let Ok(peer) = text.parse::<PeerAddr>() {
        return Ok(peer);
    }
    let (id, host) = text
        .split_once('@')
        .ok_or("not a peer address: expected PEER_ID@HOST:PORT")?;
    // clap already echoes the whole value; the message says what is wrong.
    let id: PeerId = id.parse().map_err(|e: PeerIdError| e.to_string())?;
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{host}' has no address"))?;
    Ok(PeerAddr { id, addr })
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

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?)
}
