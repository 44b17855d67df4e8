//! The manifest a ticket names, from the ticket's peers: a manifest query
//! (`docs/wire-protocol.md` 8.6) to its addresses, one after another but
//! without waiting for each to fail, until one
//! answers with bytes whose SHA-256 is the ticket's. A peer that names
//! relays is also asked through each (after its first address): the
//! query's endpoint registers with the relay, asks it to introduce the
//! peer, punches (opening its router, then dialing the addresses the
//! relay names) and, where no connection is up
//! `relay_fallback_after` later, dials the relay's channel (`docs/relay.md`),
//! as a node does.
//!
//! A ticket's mirrors are asked after its addresses, on the same
//! schedule, for the manifest file beside the artifact (`URL.manifest`,
//! one HTTPS `GET`, following at most 5 redirects within HTTPS, with no
//! token: this comes before the person's consent): a ticket of mirrors
//! only needs no peer online.
//!
//! What it does not do: parse the manifest, check its signature against
//! the ticket's key id or a keyring, or ask for consent. The front end
//! does, before anything else moves, as for a manifest read from a file.
//!
//! Every decision (the order, the schedule, a busy peer dialed again, the
//! punch and the fallback, the time to give up, what an answer is) is
//! [`ManifestQuery`]'s, sans-IO and tested on a virtual clock;
//! `super::query` carries them out, and this module says what is asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minimodel_node::query::{Answer, ManifestQuery, QueryConfig, QueryOutcome, QuerySource};
use minimodel_wire::{PeerAddr, PeerId};

use super::query::Asking;
use crate::link::handshake::{QueryError, query_manifest};
use crate::relay::RelayAddr;
use crate::ticket::Ticket;
use crate::transport::{self, Identity, TransportTuning};

/// How long one address may take to answer (its QUIC handshake and the
/// query), by default.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A manifest fetched for a ticket: the file's bytes, their SHA-256 being
/// the ticket's, and the peer or mirror that sent them.
#[derive(Debug, Clone)]
pub struct TicketManifest {
    /// The manifest file's bytes.
    pub bytes: Arc<[u8]>,
    /// Who sent them.
    pub from: ManifestSource,
}

/// Where a ticket's manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// A peer, at this address.
    Peer(PeerAddr),
    /// Beside a mirror: the manifest's URL, shown without any query.
    Mirror(String),
}

impl std::fmt::Display for ManifestSource {
    /// The peer's address, or the manifest's URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestSource::Peer(peer) => write!(f, "{}", peer.addr),
            ManifestSource::Mirror(url) => f.write_str(url),
        }
    }
}

/// How a ticket's mirrors are asked for the manifest: the TLS roots
/// trusted and the `User-Agent`. No token is sent: the lookup comes
/// before the person's consent, and the ticket's writer chose the URL.
#[derive(Debug, Clone)]
pub struct MirrorAccess {
    /// The roots a mirror's certificate must chain to.
    pub trust: crate::mirror::Trust,
    /// The `User-Agent` sent.
    pub agent: String,
}

impl Default for MirrorAccess {
    /// The system's roots.
    fn default() -> MirrorAccess {
        MirrorAccess {
            trust: crate::mirror::Trust::System,
            agent: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Neither a peer nor a mirror of the ticket gave the manifest: what each
/// said.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_all(.tried, .mirrors_tried))]
pub struct TicketManifestError {
    /// Every address tried, with what went wrong there.
    pub tried: Vec<(PeerAddr, String)>,
    /// Every mirror tried (its manifest's URL), with what went wrong there.
    pub mirrors_tried: Vec<(String, String)>,
    /// Whether some peer or mirror sent bytes whose SHA-256 is not the
    /// ticket's (one that lies, or a ticket for another manifest).
    pub wrong_bytes: bool,
}

/// The error's words: the peers', then the mirrors'.
fn describe_all(tried: &[(PeerAddr, String)], mirrors: &[(String, String)]) -> String {
    let mirrors_said = || {
        mirrors
            .iter()
            .map(|(url, why)| format!("{url}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (tried.is_empty(), mirrors.is_empty()) {
        (_, true) => format!(
            "no peer of the ticket sent its manifest ({})",
            describe(tried)
        ),
        (true, false) => format!(
            "no mirror of the ticket had its manifest ({})",
            mirrors_said()
        ),
        (false, false) => format!(
            "neither a peer nor a mirror of the ticket sent its manifest ({}; {})",
            describe(tried),
            mirrors_said()
        ),
    }
}

fn describe(tried: &[(PeerAddr, String)]) -> String {
    tried
        .iter()
        .map(|(peer, why)| {
            // A dial's own error names the address already.
            let addr = peer.addr.to_string();
            if why.contains(&addr) {
                why.clone()
            } else {
                format!("{addr}: {why}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Fetches the manifest `ticket` names from its peers, the addresses in
/// the ticket's order, each started half a second after the one before or
/// as soon as every earlier one has failed, `timeout` for each (a peer
/// that refuses the connection at once is asked again within it), as
/// [`ManifestQuery`] decides; the first right answer wins. With
/// `identity` on a client endpoint of its own (closed before it returns).
pub async fn manifest_of(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
) -> Result<TicketManifest, TicketManifestError> {
    manifest_of_within(ticket, identity, tuning, timeout, None).await
}

/// [`manifest_of`], all of it within `within` when given: an address
/// whose turn comes after that is not asked (it says so), and every
/// address asked gets at most what is left of it. Mirrors are asked with
/// the system's roots ([`MirrorAccess::default`]).
pub async fn manifest_of_within(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
    within: Option<Duration>,
) -> Result<TicketManifest, TicketManifestError> {
    let access = MirrorAccess::default();
    manifest_of_sources(ticket, identity, tuning, timeout, within, &access).await
}

/// [`manifest_of_within`], the ticket's mirrors asked with `access`. The
/// decisions are [`ManifestQuery`]'s; this carries them out.
pub async fn manifest_of_sources(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
    within: Option<Duration>,
    access: &MirrorAccess,
) -> Result<TicketManifest, TicketManifestError> {
    let peers: Vec<(PeerId, Vec<SocketAddr>)> = (ticket.peers.iter())
        .map(|peer| (peer.id, peer.addrs.clone()))
        .collect();
    let relays: Vec<(PeerId, Vec<SocketAddr>)> = (ticket.relays.iter())
        .map(|entry| (entry.peer, entry.relays.iter().map(|r| r.addr).collect()))
        .collect();
    let config = QueryConfig {
        timeout,
        within,
        ..QueryConfig::default()
    };
    let digest = ticket.manifest_sha256.0;
    let started = tokio::time::Instant::now();
    let mut query = ManifestQuery::new(
        &peers,
        &relays,
        ticket.mirrors.len(),
        digest,
        config,
        started.into_std(),
    );
    let sources = query.sources().to_vec();
    let peer_sources = sources
        .iter()
        .filter(|source| !matches!(source, QuerySource::Mirror(_)))
        .count();
    // The peers' endpoint; without one (none can be bound), only the
    // mirrors are asked, and each peer says why not.
    let bound = match peer_sources {
        0 => Err("the ticket names no peer".to_owned()),
        _ => transport::bind_client_endpoint_with_paths(tuning).map_err(|e| e.to_string()),
    };
    let mut tuning = tuning.clone();
    tuning.handshake_timeout = timeout;
    let named_relays: Vec<(PeerId, Vec<RelayAddr>)> = (ticket.relays.iter())
        .map(|entry| (entry.peer, entry.relays.clone()))
        .collect();
    let mirrors = ticket.mirrors.clone();
    let access = access.clone();
    let asking = Asking {
        peer: Box::new(move |connection| {
            Box::pin(async move {
                match query_manifest(&connection, digest).await {
                    Ok(bytes) => Answer::Bytes(bytes),
                    Err(error @ QueryError::WrongDigest { .. }) => {
                        Answer::WrongBytes(error.to_string())
                    }
                    Err(error) => Answer::Failed(error.to_string()),
                }
            })
        }),
        mirror: Box::new(move |mirror| {
            let url = mirrors[mirror].clone();
            let access = access.clone();
            Box::pin(async move {
                let limit = minimodel_verifier::manifest::MAX_MANIFEST_LEN as u64;
                let read = crate::mirror::read_manifest_beside(
                    &url,
                    crate::mirror::MirrorTokens::default(),
                    &access.trust,
                    &access.agent,
                    limit,
                );
                match read.await {
                    Ok(bytes) => Answer::Bytes(bytes),
                    Err(error) => Answer::Failed(error),
                }
            })
        }),
    };
    let identity = Arc::new(identity.clone());
    let outcome =
        super::query::run(&mut query, bound, identity, tuning, &named_relays, asking).await;
    let as_peer = |source: &QuerySource| match *source {
        QuerySource::Peer(peer) => Some(peer),
        // The relay's address stands for the attempt.
        QuerySource::Relayed { peer, relay } => Some(PeerAddr {
            id: peer,
            addr: relay,
        }),
        QuerySource::Mirror(_) => None,
    };
    let mirror_label = |mirror: usize| ticket.mirrors[mirror].manifest_url().label();
    match outcome {
        QueryOutcome::Found { source, bytes } => {
            let from = match sources[source] {
                QuerySource::Mirror(mirror) => ManifestSource::Mirror(mirror_label(mirror)),
                ref peer => ManifestSource::Peer(as_peer(peer).expect("a peer source")),
            };
            Ok(TicketManifest {
                bytes: bytes.into(),
                from,
            })
        }
        QueryOutcome::NotFound { why, wrong_bytes } => {
            let mut tried = Vec::new();
            let mut mirrors_tried = Vec::new();
            for (source, why) in sources.iter().zip(why) {
                match (source, as_peer(source)) {
                    (QuerySource::Mirror(mirror), _) => {
                        mirrors_tried.push((mirror_label(*mirror), why));
                    }
                    (_, Some(peer)) => tried.push((peer, why)),
                    (_, None) => {}
                }
            }
            Err(TicketManifestError {
                tried,
                mirrors_tried,
                wrong_bytes,
            })
        }
    }
}
