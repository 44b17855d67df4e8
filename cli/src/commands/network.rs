//! What the networked commands share: peer addresses, identities, the
//! runtime, and how a node's reports are shown.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use indicatif::ProgressBar;
use minimodel_swarm::node::NodeReport;
use minimodel_swarm::transport::{CongestionControl, Identity, TransportTuning};
use minimodel_wire::{PeerAddr, PeerId, PeerIdError};
use tokio::sync::mpsc;

use crate::exit::{Exit, Failure, OrExit};
use crate::output::{Output, counted};
use crate::units::human_bytes;

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

/// Shows a node's reports until the node is gone: JSON lines, or log
/// lines and a progress bar for people.
pub fn show_reports(
    mut reports: mpsc::UnboundedReceiver<NodeReport>,
    out: Output,
    bar: Option<ProgressBar>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            if out.json {
                out.event_value(serde_json::to_value(&report).unwrap_or_default());
                continue;
            }
            let line = match &report {
                NodeReport::PeerConnected {
                    peer,
                    addr,
                    dialed,
                    serving,
                    ..
                } => Some(format!(
                    "peer {} at {addr} connected ({}{})",
                    peer.short(),
                    if *dialed { "dialed" } else { "incoming" },
                    if *serving { ", serving" } else { "" }
                )),
                NodeReport::PeerDisconnected {
                    peer,
                    addr,
                    reason,
                    uploaded_bytes,
                    ..
                } => Some(format!(
                    "peer {} at {addr} left: {reason} (served it {})",
                    peer.short(),
                    human_bytes(*uploaded_bytes)
                )),
                NodeReport::Refused { addr, reason } => Some(format!("{addr}: {reason}")),
                NodeReport::Turned { addr, reason } => {
                    Some(format!("{addr} turned away: {reason}"))
                }
                NodeReport::Redialing {
                    addr,
                    failures,
                    in_ms,
                } => Some(format!(
                    "{addr}: trying again in {:.1} s ({failures} failed {})",
                    *in_ms as f64 / 1000.0,
                    if *failures == 1 {
                        "attempt"
                    } else {
                        "attempts"
                    }
                )),
                NodeReport::Banned {
                    peer,
                    addr,
                    chunk,
                    error,
                } => Some(format!(
                    "peer {} at {addr} banned: chunk {chunk} failed its proof ({error})",
                    peer.short()
                )),
                NodeReport::Progress {
                    verified_bytes,
                    peers,
                    rate,
                    ..
                } => {
                    if let Some(bar) = &bar {
                        bar.set_position(*verified_bytes);
                        bar.set_message(format!(
                            "{}, {}/s",
                            counted(*peers as u64, "peer"),
                            human_bytes(*rate as u64)
                        ));
                    }
                    None
                }
                NodeReport::Delivered { path, seeding, .. } => Some(format!(
                    "{} is complete and verified{}",
                    path.display(),
                    if *seeding {
                        "; serving it until stopped"
                    } else {
                        ""
                    }
                )),
                NodeReport::Serving { .. } => None,
            };
            if let Some(line) = line {
                match &bar {
                    Some(bar) if !bar.is_hidden() => bar.println(line),
                    _ => eprintln!("{line}"),
                }
            }
        }
    })
}
