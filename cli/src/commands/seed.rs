//! `minimodel seed MANIFEST FILE.slm [--listen ADDR] [--public-addr
//! HOST:PORT]... [--identity DIR] [--offer FILE] [--max-upload RATE]
//! [--max-peers N] [--dht [--dht-bootstrap HOST:PORT]...] [--yes]`: verify
//! the file first, then serve it until SIGINT or SIGTERM, announcing it on
//! the DHT with `--dht`. The offer lists the addresses peers on other
//! machines can reach (`minimodel_swarm::addrs`).

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_swarm::app::Limits;
use minimodel_swarm::app::share::SharePlan;
use minimodel_swarm::dht::SwarmKey;
use minimodel_swarm::offer::PeerOffer;
use minimodel_swarm::peers::PeerAddrs;
use tokio::sync::mpsc;

use super::dht::{DhtArgs, show_announcement};
use super::load_manifest;
use super::network::{
    Congestion, MAPPING_WAIT, PublicAddr, advertised, describe_peer, identity, parse_public_addr,
    runtime,
};
use super::ticket::say_ticket;
use crate::consent;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::Output;
use crate::reports::show_reports;
use crate::trust::{FirstUse, TrustArgs};
use crate::units::{parse_peer_count, parse_rate};

/// Arguments of `minimodel seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The manifest of the artifact.
    pub manifest: PathBuf,
    /// The verified local `.slm` file to serve.
    pub file: PathBuf,
    /// Address to listen on (port 0 picks a free one). `[::]:PORT` serves
    /// IPv4 and IPv6.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    /// An address peers on other machines reach this seeder at (a NAT's
    /// public address, a port forward); listed first in the offer. A name
    /// is resolved now. Any number.
    #[arg(long = "public-addr", value_name = "HOST:PORT", value_parser = parse_public_addr)]
    pub public_addrs: Vec<PublicAddr>,
    /// Do not ask this network's router to open the listening port (by
    /// default a seeder listening behind one asks it through UPnP IGD,
    /// NAT-PMP or PCP, and removes the mapping when it stops).
    #[arg(long)]
    pub no_port_mapping: bool,
    /// Announce on the local network (mDNS) that this host serves the
    /// artifact (its peer id, port and local addresses: everyone on the
    /// network hears it), so that neighbours find it with `fetch --lan`.
    #[arg(long)]
    pub lan: bool,
    /// Directory that keeps this peer's key, so it keeps its id across runs.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Also write the peer offer (JSON) to this file.
    #[arg(long)]
    pub offer: Option<PathBuf>,
    /// Upload cap per second, like 8MiB (at least 1KiB). Up to a second's
    /// worth (at most 1 MiB) may go at once at the start.
    #[arg(long, value_parser = parse_rate)]
    pub max_upload: Option<u64>,
    /// Most peers served at once.
    #[arg(long, default_value_t = minimodel_swarm::node::CoreConfig::default().max_peers, value_parser = parse_peer_count)]
    pub max_peers: usize,
    /// Congestion controller for what this seeder sends.
    #[arg(long, value_enum, default_value_t = Congestion::Delay)]
    pub congestion: Congestion,
    /// Serve the seeder's counters as Prometheus text at
    /// http://ADDR/metrics while it runs, like 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub dht: DhtArgs,
    /// A relay to keep a link to ([PEER_ID@]IP:PORT, a host that runs
    /// `minimodel relay`; repeatable): peers behind other routers reach
    /// this seeder through it (a punch it introduces, or its relaying),
    /// and the offer and ticket name it.
    #[arg(long = "relay", value_name = "[PEER_ID@]IP:PORT", value_parser = super::relay::parse_relay)]
    pub relays: Vec<minimodel_swarm::relay::RelayAddr>,
    /// An https:// URL of a copy of the artifact (repeatable, at most 2;
    /// no query), named in the ticket this seeder prints: whoever fetches
    /// with it fetches from the mirror beside this seeder, and finds the
    /// manifest there (URL.manifest) when this seeder is offline. This
    /// seeder itself never reads it.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Consent to serving the file to other peers (and, with --dht, to
    /// announcing that on the DHT; and to pinning a publisher key seen for
    /// the first time).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub fn run(args: SeedArgs, out: Output) -> Result<(), Failure> {
    // A mirror a ticket cannot carry is a usage error before anything.
    let mirrors = super::ticket::ticket_mirrors(&args.mirrors)?;
    let loaded = load_manifest(&args.manifest)?;
    // Before consent is asked: a file that is not there is not served.
    super::check_slm_input(&args.file)?;
    let judged = crate::trust::check(&loaded, &args.manifest, &args.trust)?;
    // Before the seeder's whole-file check (and again when it is written).
    if let Some(path) = &args.offer {
        super::check_replaceable(
            path,
            &minimodel_verifier::document::Document::Format(
                minimodel_swarm::offer::OFFER_FORMAT.into(),
            ),
        )?;
    }
    let manifest = &loaded.manifest;
    // Checked before consent is asked: a --listen that --dht cannot
    // announce is a usage error.
    let dht_config = args
        .dht
        .dht
        .then(|| args.dht.config(args.listen))
        .transpose()?;
    let serving = minimodel_swarm::app::consent::ServeConsent {
        artifact: minimodel_swarm::app::consent::Artifact::of(manifest),
        reach: super::network::reach(args.listen, !args.no_port_mapping),
        until: minimodel_swarm::app::consent::Until::Stopped,
        dht: args.dht.scope(),
        lan: args.lan,
        relays: args.relays.iter().map(|relay| relay.addr).collect(),
    };
    let asks: Vec<_> = judged
        .trust_disclosure()
        .into_iter()
        .chain(minimodel_swarm::app::consent::serve(&serving))
        .collect();
    consent::ask_all(&asks, args.yes, out.json)?;
    let signature = judged.settle(FirstUse::Pin { yes: args.yes }, out)?;
    // Before the verification pass: a taken port fails at once.
    let metrics = crate::metrics::bind(args.metrics)?;
    let mut plan = SharePlan::new(manifest.clone(), &args.file, args.listen);
    plan.limits = Limits {
        max_peers: Some(args.max_peers),
        max_upload: args.max_upload,
        ..Limits::default()
    };
    plan.tuning = args.congestion.tuning();
    plan.manifest_file = Some(std::sync::Arc::clone(&loaded.bytes));
    plan.port_mapping = !args.no_port_mapping;
    plan.lan = args.lan;
    plan.relays = args.relays.clone();
    plan.public_addrs = args
        .public_addrs
        .iter()
        .flat_map(|named| named.0.iter().copied())
        .collect();
    let bar = out.byte_progress(manifest.artifact_bytes, "verifying");
    let verified = plan.verify(&|n| bar.set_position(n));
    bar.finish_and_clear();
    let share = verified.map_err(|error| {
        let exit = if error.is_io() {
            Exit::Transfer
        } else if error.is_invalid_input() {
            Exit::InvalidInput
        } else {
            Exit::VerificationFailed
        };
        Failure::new(
            exit,
            anyhow::Error::new(error).context(format!("refusing to seed {}", args.file.display())),
        )
        .with_hint("only a file that passes every check against its manifest is served")
    })?;
    let identity = identity(args.identity.as_deref())?;
    let runtime = runtime()?;
    runtime.block_on(async {
        // The DHT node first: if it cannot start, nothing was served.
        let dht = match dht_config {
            Some(config) => Some(super::dht::start(config).await?),
            None => None,
        };
        let (reports, report_inbox) = mpsc::unbounded_channel();
        let seeder = share
            .start(identity, reports)
            .context("cannot start serving")
            .or_exit(Exit::Transfer)?;
        // From the moment it serves (and asks the router for a mapping),
        // before the offer is out: a stop while the router is asked, or
        // as soon as the offer is read, removes the mapping as any other.
        let stop = crate::stop::signal();
        let _metrics = crate::metrics::start(
            metrics,
            seeder.metrics(),
            manifest.model_id.to_string(),
            out,
        );
        let bound = seeder
            .listen_addr()
            .context("the seeder has no listening address")?;
        let (mapped, relays) = tokio::join!(
            minimodel_swarm::portmap::settled_external(seeder.port_mapping(), MAPPING_WAIT),
            minimodel_swarm::relay::settled_relays(
                seeder.registered_relays(),
                args.relays.len(),
                MAPPING_WAIT
            ),
        );
        let peer = PeerAddrs {
            id: seeder.peer_id(),
            addrs: advertised(bound, mapped, &args.public_addrs, out),
        };
        super::relay::say_unregistered(&args.relays, &relays, out);
        let offer = PeerOffer::for_manifest(manifest, peer.clone()).with_relays(&relays);
        if let Some(path) = &args.offer {
            super::write_json_document(path, &offer)?;
        }
        out.say(format!(
            "seeding {} as {}{}",
            manifest.model_id,
            describe_peer(&peer),
            super::relay::via_text(&relays)
        ));
        out.event(&Event::Offer { offer });
        say_ticket(&loaded, &signature, &peer, &relays, &mirrors, out);
        out.say("stop with Ctrl-C");
        let announcing = match dht {
            Some(dht) => {
                // The DHT sees our router's address; the port is the one it
                // maps to us, when it does.
                let port = mapped.map_or(bound.port(), |mapped| mapped.port());
                let port = NonZeroU16::new(port).context("the seeder listens on port 0")?;
                let key = SwarmKey::of(&manifest.chunks.merkle_root);
                let announcement = dht.announce(key, port);
                out.say(format!(
                    "announcing on the DHT under {key} (QUIC port {port}, DHT node {})",
                    dht.local_addr()
                ));
                out.event(&Event::DhtAnnouncing {
                    key: key.to_string(),
                    port: port.get(),
                    dht_addr: dht.local_addr().to_string(),
                });
                let shown = show_announcement(&announcement, out);
                Some((dht, announcement, shown))
            }
            None => None,
        };
        let shown = show_reports(report_inbox, out, None);
        let served = seeder.run(stop).await;
        if let Some((dht, announcement, shown)) = announcing {
            let last = announcement.stop().await;
            let _ = shown.await;
            drop(dht);
            out.say("stopped announcing on the DHT");
            out.event(&Event::DhtStopped {
                announced: last.announced as u64,
            });
        }
        served.context("seeding failed")?;
        let _ = shown.await;
        out.say("stopped; said goodbye to every peer");
        out.event(&Event::Stopped {});
        Ok(())
    })
}
