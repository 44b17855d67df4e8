//! `minimodel fetch (MANIFEST | TICKET) (--peer PEER_ID@HOST:PORT | --offer FILE)...
//! -o DIR [--serve [--listen ADDR] [--public-addr HOST:PORT]...]
//! [--seed-after] [--identity DIR] [--max-peers N] [--yes]`: download from
//! several peers at once. A peer named several times (several `--peer`
//! values, offers listing several addresses) is one peer with several
//! addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use minimodel_swarm::app::Limits;
use minimodel_swarm::app::fetch::{DownloadPlan, Opened, ReadyDownload, Serving};
use minimodel_swarm::app::ticket::{QUERY_TIMEOUT, manifest_of_within};
use minimodel_swarm::fetch::FetchError;
use minimodel_swarm::node::NodeFailure;
use minimodel_swarm::offer::PeerOffer;
use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::resume::{CompleteCheck, ResumeError};
use minimodel_swarm::ticket::{Ticket, ticket_like};
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::ReceiptSource;
use tokio::sync::mpsc;

use super::network::{
    Congestion, MAPPING_WAIT, PublicAddr, advertised, describe_peer, identity, parse_peer,
    parse_public_addr, runtime,
};
use super::{LoadedManifest, load_manifest};
use crate::consent;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::{Output, counted};
use crate::progress::average_rate;
use crate::reports::{FetchProgress, show_reports};
use crate::stop::Stop;
use crate::trust::{FirstUse, Judged, TrustArgs};
use crate::units::{human_bytes, parse_peer_count, parse_rate};

/// Arguments of `minimodel fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The manifest of the artifact to fetch, or a ticket (mm1...): the
    /// manifest is then fetched from the ticket's peers and checked against
    /// the ticket's digest and publisher key first.
    #[arg(value_name = "MANIFEST|TICKET")]
    pub manifest: PathBuf,
    /// A peer to fetch from, PEER_ID@HOST:PORT (any number). HOST is an
    /// IP address ([IPv6] in brackets) or a name, resolved now to all its
    /// addresses; the same id given again adds addresses to that peer, as
    /// does PEER_ID@HOST:PORT,HOST:PORT (the form `ticket show` prints).
    #[arg(long = "peer", value_name = "PEER_ID@HOST:PORT", value_parser = parse_peer)]
    pub peers: Vec<PeerAddrs>,
    /// A peer offer file to fetch from (any number).
    #[arg(long = "offer")]
    pub offers: Vec<PathBuf>,
    /// Directory for the download; it resumes a partial download there.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// What fetching commands share.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Serve verified chunks to other peers while downloading.
    #[arg(long)]
    pub serve: bool,
    /// With --serve: where to listen. `[::]:PORT` serves IPv4 and IPv6.
    #[arg(long, default_value = "0.0.0.0:0", requires = "serve")]
    pub listen: SocketAddr,
    /// With --serve: an address peers on other machines reach this node at
    /// (a NAT's public address, a port forward); listed first in its offer.
    /// Any number.
    #[arg(
        long = "public-addr",
        value_name = "HOST:PORT",
        value_parser = parse_public_addr,
        requires = "serve"
    )]
    pub public_addrs: Vec<PublicAddr>,
    /// With --serve: keep serving the finished file until stopped.
    #[arg(long, requires = "serve")]
    pub seed_after: bool,
    /// With --serve: do not ask this network's router to open the
    /// listening port (by default a node listening behind one asks it
    /// through UPnP IGD, NAT-PMP or PCP, and removes the mapping when it
    /// stops).
    #[arg(long)]
    pub no_port_mapping: bool,
    /// Look for peers on the local network (mDNS) that announce this
    /// artifact, and with --serve announce there that this host serves it
    /// (its peer id, port and local addresses: everyone on the network
    /// hears it). Never implied; covered by the consent prompt or --yes.
    #[arg(long)]
    pub lan: bool,
    /// Directory that keeps this peer's key, so it keeps its id across runs.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Most peers connected at once.
    #[arg(long, default_value_t = minimodel_swarm::node::CoreConfig::default().max_peers, value_parser = parse_peer_count)]
    pub max_peers: usize,
    /// With --serve: upload cap per second, like 8MiB (at least 1KiB). Up
    /// to a second's worth (at most 1 MiB) may go at once at the start.
    #[arg(long, value_parser = parse_rate, requires = "serve")]
    pub max_upload: Option<u64>,
    /// With --serve: congestion controller for what this node sends.
    #[arg(long, value_enum, default_value_t = Congestion::Delay)]
    pub congestion: Congestion,
    /// Find peers on the BitTorrent Mainline DHT too (no offer needed), and
    /// with --serve announce there that this address serves the artifact.
    /// A lookup tells the DHT nodes near the swarm's key that this address
    /// wants it. Never implied; covered by the consent prompt or --yes.
    #[arg(long)]
    pub dht: bool,
    /// A DHT node to join through instead of the public bootstrap nodes
    /// (repeatable; a private DHT, or `minimodel dht-node`).
    #[arg(
        long = "dht-bootstrap",
        value_name = "HOST:PORT",
        value_parser = super::dht::parse_bootstrap,
        requires = "dht"
    )]
    pub dht_bootstrap: Vec<std::net::SocketAddrV4>,
    /// Give up after this long with nothing verified, whatever the peers do
    /// (they are dialed again with back-off meanwhile), like 30s, 5min, 1h.
    /// Default 5min. Given, it also bounds asking a ticket's peers for
    /// its manifest (each address 10 s at most, with or without it).
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub give_up_after: Option<Duration>,
    /// Download cap per second, like 8MiB (at least 1KiB): requests are
    /// spaced so that the requested bytes stay within it, after a first
    /// burst of one chunk (at least 1 MiB) asked at once.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download: Option<u64>,
    /// Serve the node's counters as Prometheus text at
    /// http://ADDR/metrics while it runs (bytes per peer, chunks verified,
    /// bad chunks, bans, peers, bytes in flight), like 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Rehash every chunk a partial download says it has before resuming;
    /// read a finished file whole again, and repair it from peers if it is
    /// damaged.
    #[arg(long)]
    pub recheck: bool,
    /// A relay to keep a link to ([PEER_ID@]IP:PORT, a host that runs
    /// `minimodel relay`; repeatable): peers behind other routers are
    /// reached through it (a punch it introduces, or its relaying), and
    /// with --serve they reach this node through it. The relays a ticket
    /// or an offer names are used too.
    #[arg(long = "relay", value_name = "[PEER_ID@]IP:PORT", value_parser = super::relay::parse_relay)]
    pub relays: Vec<minimodel_swarm::relay::RelayAddr>,
    /// A copy of the artifact on a web server to fetch from beside the
    /// peers (repeatable): the `https://` URL of the `.slm` file, its
    /// chunk list beside it at `URL.chunk-list`. Every chunk from it is
    /// checked like a peer's; a mirror that lies is dropped with its
    /// reason. A token for a mirror that needs one is read from
    /// MINIMODEL_MIRROR_TOKENS (`HOST[:PORT]=TOKEN,...`, port 443 when
    /// none is given) and sent to that host and port only.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Allow `http://` mirrors (and redirects to plain HTTP from them):
    /// the bytes are still checked, but anyone on the way sees what is
    /// fetched, and a token would travel in the clear.
    #[arg(long)]
    pub allow_plain_http_mirror: bool,
    /// An older version of the artifact on this machine (an `.slm` file;
    /// repeatable): chunks whose hash the new chunk list names are copied
    /// from it before peers are asked for chunks, each checked with its
    /// Merkle proof as a peer's chunk is. The list is --chunk-list, else
    /// read at the manifest's chunk-list-route, beside a --mirror, or from
    /// the first peer that holds it (named, directly or through its
    /// relays; with --lan a neighbour; with --dht one the DHT knows), and
    /// used only if it leads to the manifest's Merkle root. A manifest cut
    /// at its parts (the default) needs the list first, for its chunks'
    /// lengths: asked the same way, again until --give-up-after. Finished
    /// downloads of other
    /// models in DIR (with their chunk list) are looked at too. Only files
    /// cut with the same chunk size share chunks.
    #[arg(long = "reuse", value_name = "FILE.slm")]
    pub reuse: Vec<PathBuf>,
    /// The new artifact's chunk list (the file published at the manifest's
    /// chunk-list-route; `docs/merkle.md`): it must hash to the manifest's
    /// Merkle root (and chunk-list-sha256). With it, chunks are copied from
    /// --reuse files and finished downloads in DIR before peers are asked.
    #[arg(long = "chunk-list", value_name = "FILE")]
    pub chunk_list: Option<PathBuf>,
    /// Consent to fetching (and, with --serve, to serving; and to pinning
    /// a publisher key seen for the first time).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub fn run(mut args: FetchArgs, out: Output) -> Result<(), Failure> {
    // A mirror URL that cannot be one is a usage error before anything
    // else is read or asked.
    mirror_set(&args.transfer)?;
    // A key file that cannot be read is refused before a ticket's peers
    // are asked for anything.
    let named_key = args.transfer.trust.named_key()?;
    let (loaded, source, mut named, mut relays) = match ticket_in(&args.manifest)? {
        Some(ticket) => {
            // A DIR that cannot be one is said before anyone is asked (the
            // download's own check says the same, later, for a manifest).
            if std::fs::metadata(&args.out).is_ok_and(|meta| !meta.is_dir()) {
                let error = ResumeError::NotADirectory {
                    path: args.out.clone(),
                };
                return Err(dir_failure(&args.out, error));
            }
            // A manifest carries one signature: a ticket that names
            // another key than --publisher-key can only end in a refusal,
            // so nobody is asked.
            if let (Some(key), Some(key_id)) = (&named_key, ticket.key_id)
                && key.key_id() != key_id
            {
                return Err(Failure::new(
                    Exit::VerificationFailed,
                    anyhow::anyhow!(
                        "the ticket names publisher key {key_id}, not the --publisher-key given ({}); nothing was fetched",
                        key.key_id()
                    ),
                )
                .with_hint("ask whoever shared the ticket which key signs it"));
            }
            let loaded = manifest_from_ticket(&ticket, &args.transfer, out)?;
            // The ticket's mirrors are sources as a --mirror is (after
            // those given, each once).
            ticket.add_mirrors_to(&mut args.transfer.mirrors);
            let relays: Vec<_> = (ticket.relays.iter())
                .map(|entry| (entry.peer, entry.relays.clone()))
                .collect();
            (
                loaded,
                PathBuf::from("(from the ticket)"),
                ticket.peers,
                relays,
            )
        }
        None => (
            load_manifest(&args.manifest)?,
            args.manifest.clone(),
            Vec::new(),
            Vec::new(),
        ),
    };
    let judged = crate::trust::check(&loaded, &source, &args.transfer.trust)?;
    warn_if_withdrawn(&loaded, out);
    let mut offers = Vec::new();
    for path in &args.offers {
        let offer = PeerOffer::read(path).or_exit(Exit::InvalidInput)?;
        offers.push((offer, path.display().to_string()));
    }
    named.extend(args.peers.iter().cloned());
    relays.extend(minimodel_swarm::app::peers::relays_of_offers(
        offers.iter().map(|(offer, _)| offer),
    ));
    let peers = minimodel_swarm::app::peers::from_offers(
        &loaded.manifest,
        named,
        offers.iter().map(|(offer, name)| (offer, name.as_str())),
    )
    .or_exit(Exit::InvalidInput)?;
    let remembered = minimodel_swarm::app::peers::remembered_count(&args.out, &loaded.manifest);
    if !minimodel_swarm::app::peers::has_sources(
        peers.len() + args.transfer.mirrors.len(),
        remembered,
        args.transfer.dht,
        args.transfer.lan,
    ) {
        return Err(
            Failure::new(Exit::Usage, anyhow::anyhow!("no peers to fetch from")).with_hint(
                "name peers with --peer PEER_ID@HOST:PORT or --offer FILE, a web copy with --mirror URL, or find peers with --dht or --lan (a download resumed in DIR also dials the peers that served it before)",
            ),
        );
    }
    transfer(
        &loaded,
        judged,
        peers,
        relays,
        args.out,
        &args.transfer,
        out,
    )
}

/// Warns, before consent is asked, when the channel of the key that
/// signed `loaded` (the newest item kept here, `docs/channel.md`) lists
/// it as withdrawn, with where the reason is said. The DHT is not asked.
fn warn_if_withdrawn(loaded: &LoadedManifest, out: Output) {
    let Ok(Some(key)) =
        minimodel_verifier::signing::manifest::check_manifest_signature(&loaded.manifest)
    else {
        return;
    };
    let place = super::channel::ChannelPlaceArgs {
        channels: None,
        dht_bootstrap: Vec::new(),
    };
    let Some(channel) = super::channel::kept_channel(&place, &key) else {
        return;
    };
    if let Some(w) =
        (channel.channel().withdrawn.iter()).find(|w| w.manifest_sha256 == loaded.sha256)
    {
        out.status(format!(
            "warning: the publisher (key {}) withdrew this manifest (sha256 {}): reason at {}",
            key.key_id(),
            loaded.sha256.to_hex(),
            w.reason_route
        ));
    }
}

/// The mirrors `args` name (`--mirror`), each URL parsed by the strict
/// mirror URL rules (`docs/swarm.md`, "Mirrors": no project-server route,
/// `http://` only with --allow-plain-http-mirror), with the tokens of
/// MINIMODEL_MIRROR_TOKENS; `None` without any. A URL or a token list
/// that cannot be used is a usage error (exit 2).
fn mirror_set(args: &TransferArgs) -> Result<Option<minimodel_swarm::mirror::MirrorSet>, Failure> {
    use minimodel_swarm::mirror::TOKENS_VAR;
    use minimodel_swarm::mirror::given::{GivenMirrorsError, given_set, plain_if};
    given_set(&args.mirrors, plain_if(args.allow_plain_http_mirror)).map_err(|error| {
        let hint = match &error {
            GivenMirrorsError::Tokens(_) => Some(format!(
                "{TOKENS_VAR} holds HOST[:PORT]=TOKEN entries (https; port 443 when none is given), separated by commas"
            )),
            _ if error.is_project_route() => Some(
                "give the URL of a copy of the .slm file on a web server you trust, the one the chunk list sits beside"
                    .to_owned(),
            ),
            _ => None,
        };
        let text = match &error {
            GivenMirrorsError::Bad { .. } | GivenMirrorsError::Twice { .. } => format!("--{error}"),
            _ => error.to_string(),
        };
        let failure = Failure::new(Exit::Usage, anyhow::anyhow!(text));
        match hint {
            Some(hint) => failure.with_hint(hint),
            None => failure,
        }
    })
}

/// The ticket `arg` is, when it is one: it starts with `mm1` and names no
/// file. A malformed one is invalid input (exit 3).
fn ticket_in(arg: &std::path::Path) -> Result<Option<Ticket>, Failure> {
    let Some(text) = arg.to_str() else {
        return Ok(None);
    };
    let Some(text) = ticket_like(text).filter(|_| !arg.exists()) else {
        return Ok(None);
    };
    let ticket = text
        .parse::<Ticket>()
        .context("the ticket is not valid")
        .or_exit(Exit::InvalidInput)?;
    Ok(Some(ticket))
}

/// Fetches the manifest `ticket` names from its peers (its SHA-256 checked
/// against the ticket's) and, when the ticket names a publisher key, checks
/// that the manifest's signature verifies with that key: all before the
/// keyring's judgement and the consent prompt, which then show it.
pub(crate) fn manifest_from_ticket(
    ticket: &Ticket,
    args: &TransferArgs,
    out: Output,
) -> Result<LoadedManifest, Failure> {
    let asked = match ticket.mirrors.len() {
        0 => counted(ticket.peers.len() as u64, "peer"),
        mirrors => format!(
            "{} and {}",
            counted(ticket.peers.len() as u64, "peer"),
            counted(mirrors as u64, "mirror")
        ),
    };
    out.status(format!(
        "asking {asked} for the manifest {}",
        ticket.manifest_sha256.to_hex()
    ));
    let identity = identity(args.identity.as_deref())?;
    let tuning = args.congestion.tuning();
    // `--give-up-after` bounds this phase too, each address within it.
    let fetched = runtime()?
        .block_on(manifest_of_within(
            ticket,
            &identity,
            &tuning,
            QUERY_TIMEOUT,
            args.give_up_after,
        ))
        .map_err(|error| {
            let exit = if error.wrong_bytes {
                Exit::VerificationFailed
            } else {
                Exit::Transfer
            };
            Failure::new(exit, anyhow::Error::new(error)).with_hint(
                "a peer of the ticket must be serving this very manifest (seed, or fetch --serve) and be reachable, or a mirror of it must have it at URL.manifest",
            )
        })?;
    let manifest = Manifest::parse_bytes(&fetched.bytes)
        .with_context(|| {
            format!(
                "the manifest the ticket names (sent by {}) is invalid",
                fetched.from
            )
        })
        .or_exit(Exit::InvalidInput)?;
    if let (false, Some(key_id)) = (ticket.signed_as_named(&manifest), ticket.key_id) {
        return Err(Failure::new(
            Exit::VerificationFailed,
            anyhow::anyhow!(
                "the manifest the ticket names is not signed by the key the ticket names ({key_id}); nothing was fetched"
            ),
        ));
    }
    out.say(format!(
        "manifest of {} ({}) from {}: {} bytes, publisher {}, license {}, evidence {}",
        manifest.model_id,
        human_bytes(manifest.artifact_bytes),
        fetched.from,
        fetched.bytes.len(),
        manifest.publisher_id,
        manifest.license_route,
        manifest.evidence_route,
    ));
    Ok(LoadedManifest {
        manifest,
        sha256: ticket.manifest_sha256,
        bytes: fetched.bytes,
    })
}

/// Fetches `loaded`'s artifact, whose signature `judged` checked, from
/// `peers` (one entry per peer id) into `dir`. A key seen for the first
/// time is pinned once the user consents, before anything is opened.
#[allow(clippy::too_many_arguments)]
pub fn transfer(
    loaded: &LoadedManifest,
    judged: Judged,
    peers: Vec<PeerAddrs>,
    peer_relays: Vec<(
        minimodel_wire::PeerId,
        Vec<minimodel_swarm::relay::RelayAddr>,
    )>,
    dir: PathBuf,
    args: &TransferArgs,
    out: Output,
) -> Result<(), Failure> {
    let manifest = &loaded.manifest;
    use minimodel_swarm::app::consent::{self as disclose, DhtScope, FetchConsent, Until};
    // The relays its node registers with (decided where the node's are).
    let relays = minimodel_swarm::relay::relays_used(
        &args.relays,
        &peer_relays,
        minimodel_swarm::relay::MAX_NODE_RELAYS,
    );
    let mirrors = mirror_set(args)?;
    let plan = FetchConsent {
        artifact: disclose::Artifact::of(manifest),
        into: dir.clone(),
        named: peers.len(),
        remembered: minimodel_swarm::app::peers::remembered_count(&dir, manifest),
        dht: args
            .dht
            .then(|| DhtScope::of(&args.dht_bootstrap, "the --dht-bootstrap nodes")),
        lan: args.lan,
        serving: args.serve.then(|| disclose::Serving {
            reach: super::network::reach(args.listen, !args.no_port_mapping),
            seed_after: args.seed_after,
            until: Until::Stopped,
        }),
        relays: relays.iter().map(|relay| relay.addr).collect(),
        mirrors: mirrors
            .as_ref()
            .map(|set| set.urls.clone())
            .unwrap_or_default(),
    };
    let asks: Vec<_> = judged
        .trust_disclosure()
        .into_iter()
        .chain(disclose::fetch(&plan))
        .collect();
    consent::ask_all(&asks, args.yes, out.json)?;
    let signature = judged.settle(FirstUse::Pin { yes: args.yes }, out)?;
    let signature_for_ticket = signature.clone();
    // Before the download is opened (a recheck reads the whole file): a
    // taken port fails at once.
    let metrics = crate::metrics::bind(args.metrics)?;
    let mut plan = DownloadPlan::new(manifest.clone(), loaded.sha256, signature, dir.clone());
    plan.peers = peers;
    plan.serving = args.serve.then_some(Serving {
        listen: args.listen,
        seed_after: args.seed_after,
        port_mapping: !args.no_port_mapping,
    });
    Limits {
        max_peers: Some(args.max_peers),
        max_upload: args.max_upload,
        max_download: args.max_download,
        give_up_after: args.give_up_after,
    }
    .apply(&mut plan.core);
    plan.tuning = args.congestion.tuning();
    plan.recheck = args.recheck;
    if let Some(path) = &args.chunk_list {
        plan.chunk_list = Some(read_chunk_list(path, manifest)?);
        plan.reuse = args.reuse.clone();
    }
    plan.manifest_file = Some(std::sync::Arc::clone(&loaded.bytes));
    plan.lan = args.lan;
    plan.relays = args.relays.clone();
    plan.peer_relays = peer_relays;
    plan.mirrors = mirrors;
    plan.public_addrs = args
        .public_addrs
        .iter()
        .flat_map(|named| named.0.iter().copied())
        .collect();
    // Older versions and no chunk list given (`follow`), or chunks whose
    // lengths are in the list: the plan reads it ahead, and says what it
    // found.
    let dht_config = args.dht.then(|| {
        minimodel_swarm::app::fetch::dht_config(
            std::net::Ipv4Addr::UNSPECIFIED,
            &args.dht_bootstrap,
        )
    });
    // Every file named is read before anything is asked of the network:
    // one that is a trap is refused at once, not after the read-ahead.
    let identity = identity(args.identity.as_deref())?;
    // One runtime for the read-ahead and the download: a DHT client the
    // read-ahead started goes on in the node.
    let runtime = runtime()?;
    if plan.chunk_list.is_none() && (!args.reuse.is_empty() || manifest.chunks.scheme.is_listed()) {
        plan.reuse = args.reuse.clone();
        plan.check_out_dir()
            .map_err(|error| dir_failure(&dir, error))?;
        // A listed download waits for its list as long as a download
        // waits for its first chunk.
        let patience = match manifest.chunks.scheme.is_listed() {
            true => plan.core.give_up_after,
            false => std::time::Duration::ZERO,
        };
        let ahead = plan.read_chunk_list_ahead_within(dht_config.as_ref(), patience);
        let ahead = runtime.block_on(ahead);
        if let minimodel_swarm::app::fetch::ChunkListAhead::Missing { .. } = ahead {
            return Err(Failure::new(
                Exit::Transfer,
                anyhow::anyhow!("nothing was verified: {ahead}"),
            ));
        }
        out.status(ahead.to_string());
    }
    let Some(ready) = open_download(plan, &dir, out)? else {
        return Ok(());
    };
    let resumed_bytes = ready.resumed_bytes;
    let reused_bytes = ready
        .reused
        .as_ref()
        .map_or(0, |reused| reused.bytes_reused);
    let stop = Stop::default();
    runtime.block_on(async {
        let (reports, report_inbox) = mpsc::unbounded_channel();
        let mut ready = ready;
        if let Some(config) = dht_config
            && !ready.has_dht()
        {
            ready.set_dht(std::sync::Arc::new(super::dht::start(config).await?));
        }
        let fetcher = ready
            .start(identity, reports)
            .map_err(|error| classify(error, &stop))?;
        let _metrics = crate::metrics::start(
            metrics,
            fetcher.metrics(),
            manifest.model_id.to_string(),
            out,
        );
        // The addresses this node serves at are said once its router has
        // answered about a port mapping, while the download already runs.
        let listening = fetcher
            .listen_addr()
            .map(|bound| (bound, fetcher.peer_id(), fetcher.port_mapping()));
        let relays_watch = fetcher.registered_relays();
        let say_addresses = async {
            let Some((bound, id, mapping)) = listening else {
                return;
            };
            let (mapped, registered) = tokio::join!(
                minimodel_swarm::portmap::settled_external(mapping, MAPPING_WAIT),
                minimodel_swarm::relay::settled_relays(relays_watch, relays.len(), MAPPING_WAIT),
            );
            let peer = PeerAddrs {
                id,
                addrs: advertised(bound, mapped, &args.public_addrs, out),
            };
            super::relay::say_unregistered(&relays, &registered, out);
            out.say(format!(
                "serving verified chunks as {}{}",
                describe_peer(&peer),
                super::relay::via_text(&registered)
            ));
            out.event(&Event::Offer {
                offer: PeerOffer::for_manifest(manifest, peer.clone()).with_relays(&registered),
            });
            super::ticket::say_ticket(
                loaded,
                &signature_for_ticket,
                &peer,
                &registered,
                &[],
                out,
            );
        };
        let progress = FetchProgress::new(out, resumed_bytes + reused_bytes);
        let line = progress.line();
        let shown = show_reports(report_inbox, out, Some(progress));
        let (result, ()) = tokio::join!(fetcher.run(stop.signal()), say_addresses);
        let _ = tokio::time::timeout(Duration::from_secs(1), shown).await;
        if let Some(line) = line {
            line.finish_and_clear();
        }
        let outcome = result.map_err(|error| classify(error, &stop))?;
        let ReceiptSource::Peers(summary) = &outcome.receipt.source else {
            return Ok(());
        };
        let elapsed = Duration::from_millis(summary.duration_ms.max(1));
        let fetched_bytes = manifest
            .artifact_bytes
            .saturating_sub(resumed_bytes + reused_bytes);
        let average = average_rate(fetched_bytes, elapsed);
        out.say(format!(
            "fetched {} ({}) in {:.1} s from {}, {} at {}/s on average; {} fetched, {} resumed, {} reused locally",
            outcome.artifact_path.display(),
            human_bytes(manifest.artifact_bytes),
            elapsed.as_secs_f64(),
            match summary.mirrors.len() {
                0 => counted(summary.peers.len() as u64, "peer"),
                mirrors => format!(
                    "{} and {}",
                    counted(summary.peers.len() as u64, "peer"),
                    counted(mirrors as u64, "mirror")
                ),
            },
            human_bytes(fetched_bytes),
            human_bytes(average as u64),
            counted(summary.chunks_fetched, "chunk"),
            summary.chunks_resumed,
            summary.chunks_reused,
        ));
        for peer in &summary.peers {
            out.say(format!(
                "  {} at {}: {}, {}{}",
                peer.peer_id.get(..10).unwrap_or(&peer.peer_id),
                peer.address,
                counted(peer.chunks, "chunk"),
                human_bytes(peer.bytes),
                if peer.banned {
                    format!(", banned after {}", counted(peer.bad_chunks, "bad chunk"))
                } else {
                    String::new()
                }
            ));
        }
        for mirror in &summary.mirrors {
            out.say(format!(
                "  mirror {}: {}, {}{}",
                mirror.url,
                counted(mirror.chunks, "chunk"),
                human_bytes(mirror.bytes),
                match &mirror.left {
                    Some(why) => format!(", {why}"),
                    None => String::new(),
                }
            ));
        }
        out.say(format!("receipt {}", outcome.receipt_path.display()));
        out.event(&Event::Fetched {
            path: outcome.artifact_path.clone(),
            receipt: outcome.receipt_path.clone(),
            duration_ms: summary.duration_ms,
            chunks_fetched: summary.chunks_fetched,
            chunks_resumed: summary.chunks_resumed,
            fetched_bytes,
            resumed_bytes,
            average_rate_bytes_per_second: average,
            peers: summary.peers.clone(),
            mirrors: summary.mirrors.clone(),
        });
        Ok(())
    })
}

/// Why `dir` cannot hold the download: invalid input when it is the
/// user's to fix, else a transfer failure.
fn dir_failure(dir: &std::path::Path, error: ResumeError) -> Failure {
    let exit = if error.is_invalid_input() {
        Exit::InvalidInput
    } else {
        Exit::Transfer
    };
    Failure::new(
        exit,
        anyhow::Error::new(error).context(format!("cannot use {}", dir.display())),
    )
}

/// Opens the download `plan` describes in `dir` (resuming, rechecking or
/// refusing as the directory says); `None` when the artifact is already
/// there.
fn open_download(
    plan: DownloadPlan,
    dir: &std::path::Path,
    out: Output,
) -> Result<Option<ReadyDownload>, Failure> {
    let seed_after = plan
        .serving
        .as_ref()
        .is_some_and(|serving| serving.seed_after);
    let bar = out.byte_progress(plan.manifest.artifact_bytes, "checking");
    let opened = plan.open(&|progress| {
        bar.set_length(progress.bytes_total.max(1));
        bar.set_position(progress.bytes_done);
    });
    bar.finish_and_clear();
    let opened = opened.map_err(|error| dir_failure(dir, error))?;
    match opened {
        Opened::Complete(done) => {
            let rechecked = done.check == CompleteCheck::RecheckedNow;
            if rechecked {
                out.say(format!(
                    "{} is complete: read again just now, and every check passed (receipt {})",
                    done.paths.artifact.display(),
                    done.paths.receipt.display()
                ));
            } else {
                out.say(format!(
                    "{} is present, verified at {} (receipt {}); not read again now: --recheck reads it and repairs it if it is damaged",
                    done.paths.artifact.display(),
                    done.verified_at,
                    done.paths.receipt.display()
                ));
            }
            if seed_after {
                out.status(format!(
                    "--seed-after: {} was whole before this run, so nothing is fetched and nothing is served; `minimodel seed` serves a finished file",
                    done.paths.artifact.display()
                ));
            }
            out.event(&Event::AlreadyComplete {
                path: done.paths.artifact.clone(),
                receipt: done.paths.receipt.clone(),
                verified_at: done.verified_at.clone(),
                rechecked_now: rechecked,
            });
            Ok(None)
        }
        Opened::Partial(ready) => {
            let report = &ready.report;
            out.say(format!("{}", report.outcome));
            if report.chunks_from_journal > 0 {
                out.say(format!(
                    "{} chunks verified after the last checkpoint were found on disk and kept",
                    report.chunks_from_journal
                ));
            }
            if let Some(reused) = &ready.reused {
                for (path, why) in &reused.sources_skipped {
                    out.status(format!("not reusing {}: {why}", path.display()));
                }
                out.say(format!(
                    "{} ({}) copied from {} on this machine, each checked with its proof{}",
                    counted(reused.chunks_reused, "chunk"),
                    human_bytes(reused.bytes_reused),
                    counted(u64::from(reused.sources_used), "older file"),
                    if reused.chunks_failed > 0 {
                        format!(
                            "; {} failed it and will come from peers",
                            counted(reused.chunks_failed, "chunk")
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            out.event(&Event::Opened {
                outcome: report.outcome.to_string(),
                chunks_verified: report.chunks_verified,
                chunk_count: report.chunk_count,
                chunks_from_journal: report.chunks_from_journal,
                resumed_bytes: ready.resumed_bytes,
                elapsed_ms: report.elapsed.as_millis() as u64,
            });
            Ok(Some(*ready))
        }
    }
}

/// The new artifact's chunk list from `path`, checked against `manifest`
/// (invalid input when it does not hash to its Merkle root).
fn read_chunk_list(
    path: &std::path::Path,
    manifest: &minimodel_verifier::Manifest,
) -> Result<minimodel_swarm::resume::reuse::NewChunkList, Failure> {
    use anyhow::Context as _;
    let bytes = super::read_input(
        path,
        minimodel_swarm::input::Input::chunk_list(manifest.chunks.chunk_count),
    )?;
    minimodel_swarm::resume::reuse::NewChunkList::check(manifest, &bytes)
        .with_context(|| format!("{} is not this artifact's chunk list", path.display()))
        .or_exit(Exit::InvalidInput)
}

/// What the hint says where running the same command again helps.
pub const RESUME_HINT: &str = "run the same command again to resume";

/// Exit codes, messages and hints for fetch failures. The resume hint is
/// given only where a rerun can help: not for input a rerun reads the
/// same, nor for a file that failed its check.
fn classify(error: FetchError, stop: &Stop) -> Failure {
    if let FetchError::Interrupted = error {
        // Said in our words: the library's message carries its own hint.
        let exit = if stop.fired() {
            Exit::Interrupted
        } else {
            Exit::Transfer
        };
        return Failure::new(
            exit,
            anyhow::anyhow!("stopped before the download finished; every verified chunk is saved"),
        )
        .with_hint(RESUME_HINT);
    }
    let exit = match &error {
        FetchError::Unfetchable(_) => Exit::InvalidInput,
        FetchError::Failed(NodeFailure::Verification(_) | NodeFailure::Damaged { .. })
        | FetchError::Signature(_) => Exit::VerificationFailed,
        FetchError::Node(_)
        | FetchError::Identity(_)
        | FetchError::Failed(NodeFailure::Storage(_) | NodeFailure::NoPeers { .. })
        | FetchError::Disk(_)
        | FetchError::Interrupted => Exit::Transfer,
    };
    let hint = match &error {
        error if error.resume_error().is_some_and(|e| e.is_disk_full()) => Some(
            "the disk is full; free space and run the same command again to resume".to_owned(),
        ),
        FetchError::Failed(NodeFailure::NoPeers {
            missing,
            total,
            mirrors,
            ..
        }) if missing == total => Some(format!(
            "nothing was verified (the space reserved for the file is given back); check that the {} running, reachable and serving this manifest's artifact, then run the same command again",
            sources_are(mirrors)
        )),
        FetchError::Failed(NodeFailure::NoPeers { mirrors, .. }) => Some(format!(
            "the verified part is kept; check that the {} running and reachable, then {RESUME_HINT}",
            sources_are(mirrors)
        )),
        FetchError::Failed(NodeFailure::Storage(_)) | FetchError::Disk(_) => {
            Some(format!("the verified part is kept; {RESUME_HINT}"))
        }
        FetchError::Failed(NodeFailure::Damaged { .. }) => Some(
            "the good part is kept; run the same command again when a peer that has the damaged chunks is reachable".to_owned(),
        ),
        _ => None,
    };
    let failure = Failure::new(exit, anyhow::Error::new(error).context("fetch failed"));
    match hint {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

/// What a fetch that got nothing asks the person to check: the peers, or
/// the peers and mirrors when it had mirrors.
fn sources_are(mirrors: &[minimodel_swarm::mirror::MirrorFigures]) -> &'static str {
    if mirrors.is_empty() {
        "peers are"
    } else {
        "peers and mirrors are"
    }
}
