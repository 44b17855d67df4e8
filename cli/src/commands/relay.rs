//! `minimodel relay [--listen ADDR] [--identity DIR] [--pair-rate RATE]
//! [--pair-bytes-per-hour SIZE] [--max-pairs N] [--max-pairs-per-peer N]
//! [--max-pairs-per-network N] [--max-registrations N]
//! [--max-registrations-per-network N] [--max-unregistered N]
//! [--max-unregistered-per-network N] [--allow PEER_ID]... [--yes]`: a rendezvous and relay that this host's
//! operator consents to run (`docs/relay.md`): it registers nodes that name
//! it, introduces them to each other so that they punch through their
//! routers, and carries their QUIC packets, as they are, where the punch
//! fails, within the limits given here. Also `--relay`, which `seed`,
//! `fetch` and `ticket new` share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use minimodel_swarm::relay::{RelayAddr, RelayConfig, RelayCounts, RelayReport, RelayServer};
use minimodel_swarm::transport::TransportTuning;
use minimodel_wire::PeerId;
use tokio::sync::mpsc;

use super::network::{identity, runtime};
use crate::consent;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::Output;
use crate::units::{human_bytes, parse_rate, parse_size};

/// How often a running relay says what it carries.
const STATS_EVERY: Duration = Duration::from_secs(10);

/// Arguments of `minimodel relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on (UDP). `[::]:PORT` serves IPv4 and IPv6. Run it
    /// on a host that peers on other networks reach at this address (a
    /// public address, or a port forwarded to it).
    #[arg(long, default_value = "[::]:4434")]
    pub listen: SocketAddr,
    /// Directory that keeps the relay's key, so it keeps its id (which
    /// tickets and offers pin) across runs.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Bytes per second one pair of peers may send through the relay, both
    /// ways together, like 2500KiB (0: no cap).
    #[arg(long, value_name = "RATE", default_value = "2500000", value_parser = parse_cap)]
    pub pair_rate: u64,
    /// Bytes one pair may send through the relay in an hour, like 4GiB (0:
    /// no cap); the pair's channel ends when they are used.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    pub pair_bytes_per_hour: u64,
    /// Pairs it carries at once.
    #[arg(long, default_value_t = RelayConfig::default().max_pairs)]
    pub max_pairs: usize,
    /// Pairs one peer may be in at once.
    #[arg(long, default_value_t = RelayConfig::default().max_pairs_per_node)]
    pub max_pairs_per_peer: usize,
    /// Pairs with a peer of one network (an IPv4 /24, an IPv6 /56) at
    /// once, whatever their peer ids.
    #[arg(long, default_value_t = RelayConfig::default().max_pairs_per_network)]
    pub max_pairs_per_network: usize,
    /// Peers registered at once.
    #[arg(long, default_value_t = RelayConfig::default().max_registrations)]
    pub max_registrations: usize,
    /// Peers registered at once from one network (an IPv4 /24, an IPv6
    /// /56), whatever their peer ids: a household of a few peers gets in,
    /// one host cannot take every place.
    #[arg(long, default_value_t = RelayConfig::default().max_registrations_per_network)]
    pub max_registrations_per_network: usize,
    /// Connections up but not registered yet, from all sources (each is
    /// closed unless it registers within 10 s).
    #[arg(long, default_value_t = RelayConfig::default().max_unregistered)]
    pub max_unregistered: usize,
    /// Connections up but not registered yet from one network.
    #[arg(long, default_value_t = RelayConfig::default().max_unregistered_per_network)]
    pub max_unregistered_per_network: usize,
    /// Let only this peer register (repeatable); without it, any peer
    /// may, within the limits.
    #[arg(long = "allow", value_name = "PEER_ID")]
    pub allow: Vec<PeerId>,
    /// Consent to relaying other peers' connections through this host
    /// (their bytes pass through it, encrypted end to end, within the
    /// limits above).
    #[arg(long)]
    pub yes: bool,
}

/// A rate cap for the relay: 0 (none), or at least 16 KiB a second.
fn parse_cap(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    let rate = parse_rate(text)?;
    if rate < 16 * 1024 {
        return Err("a relay's pair rate is 0 (no cap) or at least 16KiB".into());
    }
    Ok(rate)
}

/// Parses `--relay`: `[PEER_ID@]IP:PORT`.
pub fn parse_relay(text: &str) -> Result<RelayAddr, String> {
    text.parse::<RelayAddr>().map_err(|error| error.to_string())
}

/// ` via relay R` for a peer that names relays.
pub fn via_text(relays: &[RelayAddr]) -> String {
    if relays.is_empty() {
        return String::new();
    }
    let list: Vec<String> = relays.iter().map(ToString::to_string).collect();
    format!(", via relay {}", list.join(", "))
}

/// Says which relays given with `--relay` did not register in time
/// (the offer and ticket do not name them; the node goes on trying).
pub fn say_unregistered(wanted: &[RelayAddr], registered: &[RelayAddr], out: Output) {
    for relay in wanted {
        if !registered.iter().any(|known| known.addr == relay.addr) {
            out.status(format!(
                "warning: relay {relay} did not register this node yet; the offer and ticket leave it out (it is tried again)"
            ));
        }
    }
}

/// `RATE/s` or "no cap".
fn cap_text(rate: u64) -> String {
    match rate {
        0 => "no cap".into(),
        rate => format!("{}/s", human_bytes(rate)),
    }
}

pub fn run(args: RelayArgs, out: Output) -> Result<(), Failure> {
    let config = RelayConfig {
        pair_rate: args.pair_rate,
        pair_bytes_per_hour: args.pair_bytes_per_hour,
        max_pairs: args.max_pairs,
        max_pairs_per_node: args.max_pairs_per_peer,
        max_pairs_per_network: args.max_pairs_per_network,
        max_registrations: args.max_registrations,
        max_registrations_per_network: args.max_registrations_per_network,
        max_unregistered: args.max_unregistered,
        max_unregistered_per_network: args.max_unregistered_per_network,
        allow: (!args.allow.is_empty()).then(|| args.allow.iter().copied().collect()),
        ..RelayConfig::default()
    };
    config
        .validate()
        .map_err(|error| Failure::new(Exit::Usage, anyhow::anyhow!("{error}")))?;
    let who = if args.allow.is_empty() {
        "any peer that names this host".to_owned()
    } else {
        format!("the {} peers given with --allow", args.allow.len())
    };
    // Relaying is serving: other hosts' connections, not an artifact.
    let disclosure = minimodel_swarm::app::consent::Disclosure {
        consent: minimodel_swarm::app::consent::ConsentKind::Serve,
        words: format!(
            "Relay the connections of {who} through this host at {} (their bytes pass through it, encrypted end to end; at most {} a pair, {} a pair an hour, {} pairs at once).",
            args.listen,
            cap_text(config.pair_rate),
            if config.pair_bytes_per_hour == 0 {
                "no cap".into()
            } else {
                human_bytes(config.pair_bytes_per_hour)
            },
            config.max_pairs,
        ),
    };
    consent::ask_all(&[disclosure], args.yes, out.json)?;
    let identity = identity(args.identity.as_deref())?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let relay = RelayServer::bind(args.listen, identity, config, TransportTuning::default())
            .with_context(|| format!("cannot listen at {}", args.listen))
            .or_exit(Exit::Transfer)?;
        let stop = crate::stop::signal();
        let addr = relay.local_addr();
        let id = relay.peer_id();
        out.say(format!("relay listening at {addr} as {id}"));
        out.say(format!(
            "peers name it with --relay {id}@HOST:{} (HOST: this host's address as they reach it)",
            addr.port()
        ));
        out.say("stop with Ctrl-C");
        out.event(&Event::Relay {
            addr,
            peer_id: id.to_string(),
        });
        let counter = relay.counter();
        let (reports, mut inbox) = mpsc::unbounded_channel();
        let shown = tokio::spawn(async move {
            while let Some(report) = inbox.recv().await {
                say_report(report, out);
            }
        });
        let stats = tokio::spawn({
            let counter = counter.clone();
            async move {
                let mut every = tokio::time::interval(STATS_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    say_counts(&counter.counts(), out, false);
                }
            }
        });
        relay.run(stop, reports).await;
        stats.abort();
        let _ = shown.await;
        say_counts(&counter.counts(), out, true);
        out.say("stopped");
        out.event(&Event::Stopped {});
        Ok(())
    })
}

fn say_report(report: RelayReport, out: Output) {
    let line = match &report {
        RelayReport::Registered { peer, addr } => {
            format!("{} registered from {addr}", peer.short())
        }
        RelayReport::RegisterRefused { peer, addr, reason } => {
            format!("{} at {addr} not registered: {reason}", peer.short())
        }
        RelayReport::Left { peer } => format!("{} left", peer.short()),
        RelayReport::Introduced {
            asker,
            target,
            channel,
        } => format!(
            "introduced {} to {} (channel {channel:016x})",
            asker.short(),
            target.short()
        ),
        RelayReport::ChannelClosed {
            channel,
            reason,
            bytes,
        } => format!(
            "channel {channel:016x} closed ({reason}) after {}",
            human_bytes(*bytes)
        ),
    };
    tracing::info!("{line}");
    let event = match report {
        RelayReport::Registered { peer, addr } => Event::RelayStep {
            step: "registered".into(),
            peer: Some(peer.to_string()),
            target: None,
            addr: Some(addr),
            channel: None,
            reason: None,
            bytes: None,
        },
        RelayReport::RegisterRefused { peer, addr, reason } => Event::RelayStep {
            step: "register-refused".into(),
            peer: Some(peer.to_string()),
            target: None,
            addr: Some(addr),
            channel: None,
            reason: Some(reason),
            bytes: None,
        },
        RelayReport::Left { peer } => Event::RelayStep {
            step: "left".into(),
            peer: Some(peer.to_string()),
            target: None,
            addr: None,
            channel: None,
            reason: None,
            bytes: None,
        },
        RelayReport::Introduced {
            asker,
            target,
            channel,
        } => Event::RelayStep {
            step: "introduced".into(),
            peer: Some(asker.to_string()),
            target: Some(target.to_string()),
            addr: None,
            channel: Some(format!("{channel:016x}")),
            reason: None,
            bytes: None,
        },
        RelayReport::ChannelClosed {
            channel,
            reason,
            bytes,
        } => Event::RelayStep {
            step: "channel-closed".into(),
            peer: None,
            target: None,
            addr: None,
            channel: Some(format!("{channel:016x}")),
            reason: Some(reason),
            bytes: Some(bytes),
        },
    };
    out.event(&event);
}

/// The kebab-case name a count is keyed by in `--json`.
fn key_of(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn say_counts(counts: &RelayCounts, out: Output, last: bool) {
    let dropped: u64 = counts.dropped.values().sum();
    let refused: u64 = counts.refused.values().sum();
    let mut line = format!(
        "{} registered, {} not yet, {} channels; carried {} in {} datagrams, dropped {}",
        counts.registrations,
        counts.unregistered,
        counts.channels,
        human_bytes(counts.forwarded_bytes),
        counts.forwarded,
        dropped
    );
    if refused > 0 {
        let by_limit: Vec<String> = counts
            .refused
            .iter()
            .map(|(limit, n)| format!("{n} {}", key_of(limit)))
            .collect();
        line.push_str(&format!("; refused {}", by_limit.join(", ")));
    }
    if last {
        out.say(line);
    } else {
        out.status(line);
    }
    out.event(&Event::RelayStats {
        registrations: counts.registrations,
        unregistered: counts.unregistered,
        channels: counts.channels,
        introduced: counts.introduced,
        forwarded: counts.forwarded,
        forwarded_bytes: counts.forwarded_bytes,
        dropped: counts
            .dropped
            .iter()
            .map(|(reason, n)| (key_of(reason), *n))
            .collect(),
        refused: counts
            .refused
            .iter()
            .map(|(limit, n)| (key_of(limit), *n))
            .collect(),
        last,
    });
}
