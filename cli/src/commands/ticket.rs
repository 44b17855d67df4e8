//! `minimodel ticket new MANIFEST (--offer FILE | --peer ID@HOST:PORT |
//! --mirror URL)...` and `minimodel ticket show TICKET`: the one string to share instead of a
//! manifest and an offer (`docs/formats.md`, "Ticket"). `seed` and
//! `fetch --serve` print their own ([`ticket_of`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use minimodel_swarm::node::{TicketReach, ticket_reach};
use minimodel_swarm::offer::PeerOffer;
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_swarm::relay::RelayAddr;
use minimodel_swarm::ticket::{
    MAX_TICKET_ADDRS, MAX_TICKET_PEERS, MAX_TICKET_RELAYS, PeerRelays, Ticket,
};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::mirror_url::{Host, MirrorUrl};
use minimodel_verifier::signing::PublisherKeyId;
use minimodel_verifier::signing::manifest::check_manifest_signature;
use minimodel_verifier::signing::trust::SignatureCheck;
use minimodel_wire::PeerAddr;

use super::load_manifest;
use super::network::parse_peer;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::{Output, counted};

/// Arguments of `minimodel ticket`.
#[derive(Debug, Args)]
pub struct TicketArgs {
    #[command(subcommand)]
    pub command: TicketCommand,
}

/// What `minimodel ticket` does.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Write the ticket of a manifest and the peers and mirrors that serve
    /// it: its digest, its publisher key id when signed, up to 4 peers
    /// (the first 4 addresses of each) and up to 2 mirrors, one at least.
    New(NewArgs),
    /// Print what a ticket holds.
    Show(ShowArgs),
}

/// Arguments of `minimodel ticket new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The manifest the ticket names (its file's bytes are hashed).
    pub manifest: PathBuf,
    /// A peer that serves it, PEER_ID@HOST:PORT or
    /// PEER_ID@HOST:PORT,HOST:PORT (a name is resolved now).
    #[arg(long = "peer", value_name = "PEER_ID@HOST:PORT", value_parser = parse_peer)]
    pub peers: Vec<PeerAddrs>,
    /// A peer offer of it (`seed --offer FILE`); the relays a v2 offer
    /// names go into the ticket with its peer.
    #[arg(long = "offer")]
    pub offers: Vec<PathBuf>,
    /// A relay the --peer peers are registered with, RELAY_ID@IP:PORT
    /// (its key pinned; repeatable, at most 2): the ticket names it for
    /// each of them.
    #[arg(long = "relay", value_name = "RELAY_ID@IP:PORT", value_parser = super::relay::parse_relay)]
    pub relays: Vec<RelayAddr>,
    /// An https:// URL of the artifact (repeatable, at most 2; no query):
    /// whoever has the ticket fetches from it beside the peers, and finds
    /// the manifest at URL.manifest and the chunk list at URL.chunk-list
    /// beside it (put them there). A ticket may name mirrors and no peer.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
}

/// Arguments of `minimodel ticket show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The ticket, mm1...
    pub ticket: String,
}

pub fn run(args: TicketArgs, out: Output) -> Result<(), Failure> {
    match args.command {
        TicketCommand::New(args) => new(args, out),
        TicketCommand::Show(args) => show(args, out),
    }
}

/// The ticket of a manifest (digest `manifest_sha256`, signed by the key
/// with `key_id`) served by `peers` and `mirrors`: each peer's first
/// [`MAX_TICKET_ADDRS`] addresses, the first [`MAX_TICKET_PEERS`] peers.
/// The addresses left out are returned for a warning.
pub fn ticket_of(
    manifest_sha256: Sha256Digest,
    key_id: Option<PublisherKeyId>,
    peers: &[PeerAddrs],
    mirrors: Vec<MirrorUrl>,
) -> Result<(Ticket, Vec<PeerAddr>), minimodel_swarm::ticket::TicketError> {
    let mut left_out = Vec::new();
    let kept: Vec<PeerAddrs> = peers
        .iter()
        .map(|peer| {
            left_out.extend(
                peer.addrs
                    .iter()
                    .skip(MAX_TICKET_ADDRS)
                    .map(|&addr| PeerAddr { id: peer.id, addr }),
            );
            PeerAddrs {
                id: peer.id,
                addrs: peer.addrs.iter().take(MAX_TICKET_ADDRS).copied().collect(),
            }
        })
        .collect();
    Ok((
        Ticket::with_sources(manifest_sha256, key_id, kept, mirrors)?,
        left_out,
    ))
}

/// Who can use `ticket`, by the addresses and relays it names
/// (`minimodel_node::reach::ticket_reach`).
/// A mirror named by a public-looking DNS name ([`public_name`]) counts
/// as a global address.
pub fn reach_of(ticket: &Ticket) -> TicketReach {
    if (ticket.mirrors.iter())
        .any(|url| matches!(url.host(), Host::Name(name) if public_name(name)))
    {
        return TicketReach::Anywhere;
    }
    let addrs: Vec<std::net::SocketAddr> = ticket
        .peers
        .iter()
        .flat_map(|peer| peer.addrs.iter().copied())
        .chain(ticket.mirrors.iter().filter_map(|url| match url.host() {
            Host::Ip(ip) => Some(std::net::SocketAddr::new(*ip, url.port())),
            Host::Name(_) => None,
        }))
        .collect();
    ticket_reach(&addrs, ticket.relays.len())
}

/// Whether a mirror's host name looks like one anyone can look up: it has
/// a dot, and its last label is none that names a home or company network
/// (`local`, `lan`, `home`, `home.arpa`, `internal`, `intranet`, `corp`,
/// `localdomain`, `localhost`). A guess from the name alone, for a
/// warning; nothing is looked up.
fn public_name(name: &str) -> bool {
    const PRIVATE: [&str; 9] = [
        "local",
        "lan",
        "home",
        "arpa",
        "internal",
        "intranet",
        "corp",
        "localdomain",
        "localhost",
    ];
    name.rsplit_once('.')
        .is_some_and(|(_, last)| !PRIVATE.contains(&last))
}

/// `lan-only`, `host-only` or `anywhere`.
fn reach_name(reach: TicketReach) -> &'static str {
    match reach {
        TicketReach::Anywhere => "anywhere",
        TicketReach::LanOnly => "lan-only",
        TicketReach::HostOnly => "host-only",
    }
}

/// Warns, on stderr, when `ticket` names only addresses nobody outside
/// the network it was made on can reach: at the moment it is printed.
pub fn warn_reach(ticket: &Ticket, out: Output) {
    let addrs: Vec<String> = ticket
        .peers
        .iter()
        .flat_map(|peer| peer.addrs.iter().map(ToString::to_string))
        .chain(ticket.mirrors.iter().map(MirrorUrl::label))
        .collect();
    let (which, who) = match reach_of(ticket) {
        TicketReach::Anywhere => return,
        TicketReach::LanOnly => ("private", "hosts on the network it was made on"),
        TicketReach::HostOnly => ("loopback", "this host"),
    };
    out.status(format!(
        "warning: this ticket names only {which} addresses ({}) and no relay: only {who} can use it; name a relay (--relay HOST:PORT: a host with a public address that runs `minimodel relay`), let the router map a port, or give --public-addr",
        addrs.join(", ")
    ));
}

/// The `ticket` event of a ticket, with the addresses it left out.
pub fn ticket_event(ticket: &Ticket, left_out: &[PeerAddr]) -> Event {
    Event::Ticket {
        reach: reach_name(reach_of(ticket)).to_owned(),
        ticket: ticket.to_string(),
        manifest_sha256: ticket.manifest_sha256.to_hex(),
        key_id: ticket.key_id.map(|id| id.to_string()),
        peers: ticket.peers.iter().map(ToString::to_string).collect(),
        relays: ticket
            .relays
            .iter()
            .flat_map(|entry| {
                entry
                    .relays
                    .iter()
                    .map(move |relay| format!("{}>{relay}", entry.peer))
            })
            .collect(),
        mirrors: ticket.mirrors.iter().map(MirrorUrl::label).collect(),
        left_out: left_out.iter().map(ToString::to_string).collect(),
    }
}

/// Prints the ticket of a serving node (`seed`, `fetch --serve`): the
/// manifest as loaded, its key id when signed, this peer at its first
/// advertised addresses, and `mirrors` (`seed --mirror`). A node whose
/// addresses make no ticket (none a peer can dial) says so instead.
pub fn say_ticket(
    loaded: &super::LoadedManifest,
    signature: &SignatureCheck,
    peer: &PeerAddrs,
    relays: &[RelayAddr],
    mirrors: &[MirrorUrl],
    out: Output,
) {
    let key_id = signature.publisher_key().map(|key| key.key_id());
    let relays = vec![PeerRelays {
        peer: peer.id,
        relays: relays
            .iter()
            .filter(|relay| relay.id.is_some())
            .take(MAX_TICKET_RELAYS)
            .copied()
            .collect(),
    }];
    let made = ticket_of(
        loaded.sha256,
        key_id,
        std::slice::from_ref(peer),
        mirrors.to_vec(),
    )
    .and_then(|(ticket, left_out)| Ok((ticket.with_relays(relays)?, left_out)));
    match made {
        Ok((ticket, left_out)) => {
            out.say(format!("ticket {ticket}"));
            warn_reach(&ticket, out);
            out.event(&ticket_event(&ticket, &left_out));
        }
        Err(error) => out.status(format!("no ticket for these addresses: {error}")),
    }
}

fn new(args: NewArgs, out: Output) -> Result<(), Failure> {
    let loaded = load_manifest(&args.manifest)?;
    // The key id goes into the ticket only once the signature holds.
    let key = check_manifest_signature(&loaded.manifest).map_err(|_| {
        Failure::new(
            Exit::VerificationFailed,
            anyhow::anyhow!(
                "the signature of {} does not verify; no ticket names it",
                args.manifest.display()
            ),
        )
    })?;
    if let Some(bare) = args.relays.iter().find(|relay| relay.id.is_none()) {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!("--relay {bare}: a ticket pins a relay's key"),
        )
        .with_hint("write RELAY_ID@IP:PORT, as `minimodel relay` prints it"));
    }
    let mut relays: Vec<PeerRelays> = args
        .peers
        .iter()
        .map(|peer| PeerRelays {
            peer: peer.id,
            relays: args.relays.clone(),
        })
        .filter(|entry| !entry.relays.is_empty())
        .collect();
    let mut peers = args.peers;
    for path in &args.offers {
        let offer = PeerOffer::read(path).or_exit(Exit::InvalidInput)?;
        offer
            .check_against(&loaded.manifest, &path.display().to_string())
            .or_exit(Exit::InvalidInput)?;
        if !offer.relays.is_empty() {
            relays.push(PeerRelays {
                peer: offer.peer.id,
                relays: offer
                    .relays
                    .iter()
                    .take(MAX_TICKET_RELAYS)
                    .copied()
                    .collect(),
            });
        }
        peers.push(offer.peer);
    }
    let peers = merge_peers(peers);
    let mirrors = ticket_mirrors(&args.mirrors)?;
    if (peers.is_empty() && mirrors.is_empty()) || peers.len() > MAX_TICKET_PEERS {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "{} peers given; a ticket names 1 to {MAX_TICKET_PEERS}, or none when it names a mirror",
                peers.len()
            ),
        )
        .with_hint(
            "name peers with --peer PEER_ID@HOST:PORT or --offer FILE, or mirrors with --mirror URL",
        ));
    }
    let (ticket, left_out) = ticket_of(loaded.sha256, key.map(|k| k.key_id()), &peers, mirrors)
        .or_exit(Exit::InvalidInput)?;
    let ticket = ticket
        .with_relays(relays)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .or_exit(Exit::Usage)?;
    if !left_out.is_empty() {
        out.status(format!(
            "left out {} (a ticket gives each peer its first {MAX_TICKET_ADDRS} addresses): {}",
            counted(left_out.len() as u64, "address"),
            left_out
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if out.for_people() {
        crate::output::say_out!("{ticket}");
    }
    warn_reach(&ticket, out);
    out.event(&ticket_event(&ticket, &left_out));
    Ok(())
}

/// The mirrors `texts` of `ticket new --mirror` and `seed --mirror`
/// ([`minimodel_swarm::ticket::ticket_mirrors`]); a bad one is a usage
/// error.
pub fn ticket_mirrors(texts: &[String]) -> Result<Vec<MirrorUrl>, Failure> {
    minimodel_swarm::ticket::ticket_mirrors(texts)
        .map_err(|error| Failure::new(Exit::Usage, anyhow::anyhow!("--{error}")))
}

fn show(args: ShowArgs, out: Output) -> Result<(), Failure> {
    // Blanks a paste brought are not part of it.
    let ticket: Ticket = args
        .ticket
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .or_exit(Exit::InvalidInput)?;
    out.say(format!("manifest sha256 {}", ticket.manifest_sha256));
    out.say(match ticket.key_id {
        Some(key_id) => format!("signed by key {key_id}"),
        None => "unsigned".to_owned(),
    });
    for peer in &ticket.peers {
        out.say(format!("peer {peer}"));
        for relay in ticket.relays_of(&peer.id) {
            out.say(format!("  via relay {relay}"));
        }
    }
    for url in &ticket.mirrors {
        out.say(format!("mirror {}", url.label()));
    }
    out.event(&ticket_event(&ticket, &[]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_makes_a_ticket_public_only_by_a_public_looking_name_or_address() {
        let peer = PeerAddrs {
            id: minimodel_wire::PeerId([1; 32]),
            addrs: vec!["192.168.1.2:4433".parse().unwrap()],
        };
        let reach = |mirror: &str| {
            let url =
                MirrorUrl::parse(mirror, minimodel_verifier::mirror_url::Plain::Refused).unwrap();
            let ticket =
                Ticket::with_sources(Sha256Digest::of(b"m"), None, vec![peer.clone()], vec![url])
                    .unwrap();
            reach_of(&ticket)
        };
        assert_eq!(
            reach("https://models.example.org/t.slm"),
            TicketReach::Anywhere
        );
        assert_eq!(reach("https://81.2.69.9/t.slm"), TicketReach::Anywhere);
        for private in [
            "https://nas.local/t.slm",
            "https://files.corp/t.slm",
            "https://nas/t.slm",
            "https://box.home.arpa/t.slm",
            "https://192.168.1.9/t.slm",
        ] {
            assert_eq!(reach(private), TicketReach::LanOnly, "{private}");
        }
    }
}
