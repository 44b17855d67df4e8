//! What a running node reports, shown the way the output asks: JSON events
//! with `--json`; otherwise log lines through `tracing` (peers at `-v`,
//! refusals and bans as warnings) and, while fetching, the progress line on
//! a terminal or a status line every few seconds off one.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use minimodel_swarm::node::{Blame, NodeReport};
use tokio::sync::mpsc;

use crate::events::Event;
use crate::output::{Output, terminal_width};
use crate::progress::{ProgressView, RateWindow, status_due, status_line, terminal_line};
use crate::units::human_bytes;

/// How often the status line is printed off a terminal.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The progress of one fetch, from the node's reports.
pub struct FetchProgress {
    out: Output,
    /// Bytes verified before this run (what opening took over).
    resumed_bytes: u64,
    started: Instant,
    window: RateWindow,
    /// The live line on a terminal.
    line: Option<ProgressBar>,
    /// When the last status line was printed off a terminal, since
    /// `started`.
    last_status: Option<Duration>,
}

impl FetchProgress {
    /// Progress of a fetch that took over `resumed_bytes` verified bytes.
    pub fn new(out: Output, resumed_bytes: u64) -> Self {
        Self {
            out,
            resumed_bytes,
            started: Instant::now(),
            window: RateWindow::starting_with(resumed_bytes),
            line: out.live_line(),
            last_status: None,
        }
    }

    /// Takes one progress report.
    fn update(&mut self, verified_bytes: u64, total_bytes: u64, peers: usize) -> ProgressView {
        let now = Instant::now();
        self.window
            .record(now.duration_since(self.started), verified_bytes);
        ProgressView {
            verified_bytes,
            total_bytes,
            resumed_bytes: self.resumed_bytes.min(verified_bytes),
            rate: self.window.rate(),
            peers,
        }
    }

    /// Shows a view: the live line, or a status line when one is due.
    fn show(&mut self, view: &ProgressView) {
        if let Some(line) = &self.line {
            let width = terminal_width().unwrap_or(crate::progress::MAX_WIDTH);
            // One column spare: a line that fills the last column makes
            // some terminals wrap before the cursor returns.
            line.set_message(terminal_line(view, width.saturating_sub(1)));
            return;
        }
        let since_start = self.started.elapsed();
        if status_due(
            self.last_status,
            since_start,
            view.rate.is_some(),
            STATUS_EVERY,
        ) {
            self.last_status = Some(since_start);
            self.out.status(status_line(view));
        }
    }

    /// The live line on a terminal, to clear when the fetch ends.
    pub fn line(&self) -> Option<ProgressBar> {
        self.line.clone()
    }
}

/// Says who can reach the node (`NodeReport::Reach`): a line on
/// stderr (a warning when nobody outside its network can), with what to
/// do, and the `reachability` event.
pub fn say_reach(reach: &minimodel_swarm::node::Reach, out: Output) -> Event {
    use minimodel_swarm::node::Reach;
    let warning = if reach.is_unreachable() {
        "warning: "
    } else {
        ""
    };
    // A node that does not listen has nothing to say about it but its
    // event.
    if !matches!(reach, Reach::NotListening) {
        out.status(format!("{warning}reachability: {reach}"));
        if let Some(advice) = reach.advice() {
            out.status(format!("  {advice}"));
        }
    }
    let (addr, confirmed, addrs, via) = match reach {
        Reach::NotListening => (None, None, Vec::new(), Vec::new()),
        Reach::HostOnly { addrs } | Reach::LanOnly { addrs } => {
            (None, None, addrs.clone(), Vec::new())
        }
        Reach::Direct {
            addr,
            confirmed,
            via,
        } => (Some(*addr), Some(*confirmed), Vec::new(), via.clone()),
        Reach::Mapped { addr } => (Some(*addr), None, Vec::new(), Vec::new()),
        Reach::Punch { public, via } => (*public, None, Vec::new(), via.clone()),
        Reach::Relayed { via } => (None, None, Vec::new(), via.clone()),
    };
    Event::Reachability {
        verdict: reach.name().to_owned(),
        detail: reach.to_string(),
        addr,
        confirmed,
        addrs,
        via,
        advice: reach.advice().map(str::to_owned),
    }
}

/// Shows a node's reports until the node is gone; `progress` for a
/// download. The task hands `progress` back at the end.
pub fn show_reports(
    mut reports: mpsc::UnboundedReceiver<NodeReport>,
    out: Output,
    mut progress: Option<FetchProgress>,
) -> tokio::task::JoinHandle<Option<FetchProgress>> {
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            show(report, out, progress.as_mut());
        }
        progress
    })
}

fn show(report: NodeReport, out: Output, progress: Option<&mut FetchProgress>) {
    let event = match report {
        NodeReport::PeerConnected {
            peer,
            addr,
            dialed,
            serving,
            agent,
            congestion,
        } => {
            tracing::info!(
                "peer {} at {addr} connected ({}{})",
                peer.short(),
                if dialed { "dialed" } else { "incoming" },
                if serving { ", serving" } else { "" }
            );
            Event::PeerConnected {
                peer: peer.to_string(),
                addr,
                dialed,
                serving,
                agent,
                congestion: congestion.map(str::to_owned),
            }
        }
        NodeReport::PeerDisconnected {
            peer,
            addr,
            reason,
            blame,
            uploaded_chunks,
            uploaded_bytes,
        } => {
            tracing::info!(
                "peer {} at {addr} left: {reason} (served it {})",
                peer.short(),
                human_bytes(uploaded_bytes)
            );
            Event::PeerDisconnected {
                peer: peer.to_string(),
                addr,
                reason: reason.to_string(),
                blame: match blame {
                    Blame::Peer => "peer",
                    Blame::Local => "local",
                    Blame::Environment => "environment",
                }
                .to_owned(),
                uploaded_chunks,
                uploaded_bytes,
            }
        }
        NodeReport::MirrorUp { mirror, label } => {
            tracing::info!("mirror {label} joined the download");
            Event::Mirror {
                step: "up".into(),
                mirror: mirror.0,
                url: label,
                reason: None,
                chunk: None,
                expected_sha256: None,
                got_sha256: None,
                retry_in_ms: None,
            }
        }
        NodeReport::MirrorTrouble {
            mirror,
            label,
            trouble,
            retry_in_ms,
        } => {
            match retry_in_ms {
                Some(ms) => tracing::info!("mirror {label}: {trouble}; asked again in {ms} ms"),
                None => tracing::info!("mirror {label}: {trouble}"),
            }
            Event::Mirror {
                step: "trouble".into(),
                mirror: mirror.0,
                url: label,
                reason: Some(trouble.to_string()),
                chunk: None,
                expected_sha256: None,
                got_sha256: None,
                retry_in_ms,
            }
        }
        NodeReport::MirrorEnded { mirror, label, end } => {
            use minimodel_swarm::mirror::{MirrorEnd, MirrorFault};
            tracing::warn!("mirror {label} {end}");
            let (step, reason, chunk, hashes) = match end {
                MirrorEnd::Dropped { fault } => {
                    let hashes = match &fault {
                        MirrorFault::BadChunk { expected, got, .. } => {
                            Some((expected.to_string(), got.to_string()))
                        }
                        _ => None,
                    };
                    ("dropped", fault.to_string(), fault.chunk(), hashes)
                }
                MirrorEnd::Unusable { reason } => ("unusable", reason.to_string(), None, None),
            };
            let (expected_sha256, got_sha256) = hashes.unzip();
            Event::Mirror {
                step: step.into(),
                mirror: mirror.0,
                url: label,
                reason: Some(reason),
                chunk,
                expected_sha256,
                got_sha256,
                retry_in_ms: None,
            }
        }
        NodeReport::Refused { addr, reason } => {
            let reason = reason.to_string();
            // The reason often names the address already.
            if reason.contains(&addr.to_string()) {
                tracing::warn!("{reason}");
            } else {
                tracing::warn!("{addr}: {reason}");
            }
            Event::Refused { addr, reason }
        }
        NodeReport::Lan { step } => {
            use minimodel_swarm::lan::LanStep;
            match &step {
                LanStep::Unavailable { .. } => tracing::warn!("{step}"),
                _ => tracing::info!("{step}"),
            }
            match step {
                LanStep::Started { announced } => Event::Lan {
                    step: "started".into(),
                    port: announced,
                    peer: None,
                    addrs: Vec::new(),
                    reason: None,
                },
                LanStep::Unavailable { reason } => Event::Lan {
                    step: "unavailable".into(),
                    port: None,
                    peer: None,
                    addrs: Vec::new(),
                    reason: Some(reason),
                },
                LanStep::Heard { peer, addrs } => Event::Lan {
                    step: "heard".into(),
                    port: None,
                    peer: Some(peer.to_string()),
                    addrs,
                    reason: None,
                },
            }
        }
        NodeReport::PortMapping { step } => {
            use minimodel_swarm::portmap::PortMapEvent;
            match &step {
                PortMapEvent::Lost { .. } => tracing::warn!("port mapping: {step}"),
                _ => tracing::info!("port mapping: {step}"),
            }
            let reason = Some(step.to_string());
            match step {
                PortMapEvent::Mapped {
                    protocol,
                    external,
                    lease,
                } => Event::PortMapping {
                    step: "mapped".into(),
                    protocol: Some(protocol.name().into()),
                    external: Some(external),
                    lease_seconds: Some(lease.as_secs()),
                    reason: None,
                },
                PortMapEvent::Unavailable { .. } => Event::PortMapping {
                    step: "unavailable".into(),
                    protocol: None,
                    external: None,
                    lease_seconds: None,
                    reason,
                },
                PortMapEvent::Lost { protocol, .. } => Event::PortMapping {
                    step: "lost".into(),
                    protocol: Some(protocol.name().into()),
                    external: None,
                    lease_seconds: None,
                    reason,
                },
                PortMapEvent::Removed {
                    protocol,
                    confirmed,
                    ..
                } => Event::PortMapping {
                    step: if confirmed { "removed" } else { "not-removed" }.into(),
                    protocol: Some(protocol.name().into()),
                    external: None,
                    lease_seconds: None,
                    reason: (!confirmed).then_some(reason).flatten(),
                },
            }
        }
        NodeReport::Reach { reach } => say_reach(&reach, out),
        NodeReport::Relay { relay, peer, step } => {
            match peer {
                Some(peer) => tracing::info!("relay {relay}: {}: {step}", peer.short()),
                None => tracing::info!("relay {relay}: {step}"),
            }
            Event::RelayLink {
                relay,
                peer: peer.map(|peer| peer.to_string()),
                step,
            }
        }
        NodeReport::PublicAddress { ip, port, prefixes } => {
            match port {
                Some(port) => tracing::info!(
                    "peers in {prefixes} networks see this node at {}",
                    std::net::SocketAddr::new(ip, port)
                ),
                None => tracing::info!(
                    "peers in {prefixes} networks see this node at {ip}, each at another port (a symmetric NAT: peers behind other routers cannot get through to it)"
                ),
            }
            Event::PublicAddress {
                ip: ip.to_string(),
                port,
                prefixes,
            }
        }
        NodeReport::Introduction { peer, via, step } => {
            let short =
                |id: &minimodel_wire::PeerId| id.to_string().chars().take(10).collect::<String>();
            tracing::info!(
                "getting through to {} via {}: {step}",
                short(&peer),
                short(&via)
            );
            Event::Introduction {
                peer: peer.to_string(),
                via: via.to_string(),
                step,
            }
        }
        NodeReport::Introduced { asker, target } => {
            let short =
                |id: &minimodel_wire::PeerId| id.to_string().chars().take(10).collect::<String>();
            tracing::info!("introduced {} to {}", short(&asker), short(&target));
            Event::Introduced {
                asker: asker.to_string(),
                target: target.to_string(),
            }
        }
        NodeReport::ManifestQuery {
            peer,
            addr,
            chunk_list,
            refused,
        } => {
            let asked = if chunk_list { "chunk list" } else { "manifest" };
            match refused {
                None => tracing::info!("{addr} asked for the {asked} and was sent it"),
                Some(reason) => tracing::info!("{addr} asked for the {asked}: refused, {reason}"),
            }
            Event::ManifestQuery {
                peer: peer.to_string(),
                addr,
                asked: asked.replace(' ', "-"),
                refused: refused.map(|reason| reason.to_string()),
            }
        }
        NodeReport::Turned { addr, reason } => {
            tracing::info!("{addr} turned away: {reason}");
            Event::Turned {
                addr,
                reason: reason.to_string(),
            }
        }
        NodeReport::Redialing {
            addr,
            failures,
            in_ms,
        } => {
            tracing::info!(
                "{addr}: trying again in {:.1} s ({failures} failed {})",
                in_ms as f64 / 1000.0,
                if failures == 1 { "attempt" } else { "attempts" }
            );
            Event::Redialing {
                addr,
                failures,
                in_ms,
            }
        }
        NodeReport::Banned {
            peer,
            addr,
            chunk,
            error,
        } => {
            tracing::warn!(
                "peer {} at {addr} banned: chunk {chunk} failed its proof ({error})",
                peer.short()
            );
            Event::Banned {
                peer: peer.to_string(),
                addr,
                chunk,
                error: error.to_string(),
            }
        }
        NodeReport::Progress {
            verified_bytes,
            total_bytes,
            verified_chunks,
            total_chunks,
            peers,
            rate: _,
            waiting_for_peers,
        } => {
            // The node's own rate is left aside: the line and the event
            // tell one rate, measured here over the same reports.
            let Some(progress) = progress else {
                return;
            };
            let view = progress.update(verified_bytes, total_bytes, peers);
            tracing::debug!("{}", status_line(&view));
            if !out.json {
                progress.show(&view);
                return;
            }
            Event::Progress {
                verified_bytes,
                total_bytes,
                resumed_bytes: view.resumed_bytes,
                verified_chunks,
                total_chunks,
                peers,
                rate_bytes_per_second: view.rate,
                eta_seconds: view.eta().map(|eta| eta.as_secs()),
                waiting_for_peers,
            }
        }
        NodeReport::Delivered {
            path,
            receipt,
            seeding,
        } => {
            if seeding {
                out.status(format!(
                    "{} is complete and verified; serving it until stopped",
                    path.display()
                ));
            } else {
                tracing::info!("{} is complete and verified", path.display());
            }
            Event::Delivered {
                path,
                receipt,
                seeding,
            }
        }
        NodeReport::Serving {
            peers,
            uploaded_bytes,
        } => Event::Serving {
            peers,
            uploaded_bytes,
        },
    };
    out.event(&event);
}
