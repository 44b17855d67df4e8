//! The manifest a ticket names, from the ticket's peers: a manifest query
//! (`docs/wire-protocol.md` 8.6) to its addresses, one after another but
//! without waiting for each to fail ([`NEXT_ADDRESS_DELAY`]), until one
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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use minimodel_wire::PeerAddr;

use crate::link::handshake::query_manifest;
use crate::peers::PeerAddrs;
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

/// `10 s`, `2.5 s`, or `300 ms` under a second.
fn seconds(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

/// A connection to `peer` through `relay` (see the module docs): the
/// punch's, or the relay's channel's, whichever is up first.
async fn through_relay(
    endpoint: &quinn::Endpoint,
    paths: &transport::Paths,
    peer: minimodel_wire::PeerId,
    relay: crate::relay::RelayAddr,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Connection, Option<crate::relay::RelayLink>), String> {
    use crate::relay::{Registration, RelayEvent, RelayLink};
    use minimodel_wire::relay::{ConnectRole, MappingKind};
    let timing = minimodel_node::NodeConfig::default();
    let (events, mut inbox) = tokio::sync::mpsc::channel(16);
    let link = RelayLink::start(
        endpoint.clone(),
        paths.clone(),
        relay,
        Arc::new(identity.clone()),
        tuning,
        Registration {
            agent: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
            addrs: Vec::new(),
            mapping: MappingKind::Unknown,
        },
        events,
    );
    let mut lost = None;
    let (addrs, path) = loop {
        match inbox.recv().await {
            Some(RelayEvent::Registered { .. }) => {
                link.introduce(peer);
            }
            Some(RelayEvent::Refused { reason, .. }) => {
                return Err(format!("relay {}: not registered: {reason}", relay.addr));
            }
            Some(RelayEvent::Lost { reason, .. }) => lost = Some(reason),
            Some(RelayEvent::IntroduceFailed {
                peer: p, reason, ..
            }) if p == peer => {
                return Err(format!("relay {}: no introduction: {reason}", relay.addr));
            }
            Some(RelayEvent::Connect {
                peer: p,
                addrs,
                path,
                role: ConnectRole::Dial,
                ..
            }) if p == peer => break (addrs, path),
            Some(_) => {}
            None => {
                return Err(format!(
                    "relay {}: {}",
                    relay.addr,
                    lost.unwrap_or_else(|| "the link ended".into())
                ));
            }
        }
    };
    // The punch: our router opened toward the peer, our dials after the
    // peer opened its own; the relay's channel from the fallback on.
    paths.open(&addrs);
    tokio::time::sleep(timing.punch_delay).await;
    let mut dials = tokio::task::JoinSet::new();
    for addr in addrs
        .into_iter()
        .filter(|addr| !transport::is_relay_path(*addr))
    {
        let (endpoint, identity, tuning) = (endpoint.clone(), identity.clone(), tuning.clone());
        dials.spawn(async move {
            transport::connect(&endpoint, &PeerAddr { id: peer, addr }, &identity, &tuning).await
        });
    }
    {
        let (endpoint, identity, tuning) = (endpoint.clone(), identity.clone(), tuning.clone());
        let fallback = timing.relay_fallback_after;
        dials.spawn(async move {
            tokio::time::sleep(fallback).await;
            let peer = PeerAddr {
                id: peer,
                addr: path,
            };
            transport::connect(&endpoint, &peer, &identity, &tuning).await
        });
    }
    let mut last = None;
    while let Some(done) = dials.join_next().await {
        match done {
            // The relay keeps the channel while we are registered: the
            // link goes with the connection.
            Ok(Ok(connection)) => return Ok((connection, Some(link))),
            Ok(Err(error)) => last = Some(error.to_string()),
            Err(_) => {}
        }
    }
    Err(format!(
        "through relay {}: {}",
        relay.addr,
        last.unwrap_or_else(|| "no answer".into())
    ))
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

/// A peer that refuses the connection at its first packet is asked again
/// this many times, after this pause, doubled each time (0.1 + 0.2 + 0.4 +
/// 0.8 + 1.6 s): a peer that is only busy lets us in within 3.1 s.
const REFUSED_ATTEMPTS: u32 = 5;
const REFUSED_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// When no answer has come, the next address is asked this long after the
/// one before it, without waiting for that one to fail (as a browser tries
/// the addresses of a name: RFC 8305's "connection attempt delay", here
/// wider for the query that follows the handshake). A ticket's first
/// address may be a publisher's home-network address, dead from elsewhere:
/// the live one behind it is asked half a second later, not after a whole
/// [`QUERY_TIMEOUT`].
pub const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(500);

/// An address whose turn leaves it less than this before the time to
/// give up is not asked.
const MIN_ASK: Duration = Duration::from_millis(100);

/// Fetches the manifest `ticket` names from its peers, the addresses in
/// the ticket's order, each started [`NEXT_ADDRESS_DELAY`] after the one
/// before or as soon as every earlier one has failed, `timeout` for each
/// (a peer that refuses the connection at once is asked again within it,
/// [`REFUSED_ATTEMPTS`] times); the first right answer wins. With
/// `identity` on a client endpoint of its own (closed before it returns).
pub async fn manifest_of(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
) -> Result<TicketManifest, TicketManifestError> {
    manifest_of_within(ticket, identity, tuning, timeout, None).await
}

/// What one address answered, or why not.
type Answer = Result<Vec<u8>, String>;
/// An address being asked: its place in the ticket, and the asking.
type Asking<'a> = (usize, Pin<Box<dyn Future<Output = Answer> + Send + 'a>>);

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

/// [`manifest_of_within`], the ticket's mirrors asked with `access`.
pub async fn manifest_of_sources(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
    within: Option<Duration>,
    access: &MirrorAccess,
) -> Result<TicketManifest, TicketManifestError> {
    let mirror_urls: Vec<String> = (ticket.mirrors.iter())
        .map(|url| url.manifest_url().label())
        .collect();
    let mut peers = PeerAddrs::flatten(&ticket.peers);
    // Each relay a peer names, after the peer's first address: asked
    // through the relay (its address stands for the attempt).
    let mut through: Vec<Option<crate::relay::RelayAddr>> = vec![None; peers.len()];
    for entry in &ticket.relays {
        let at = peers
            .iter()
            .position(|peer| peer.id == entry.peer)
            .map_or(peers.len(), |first| first + 1);
        for relay in entry.relays.iter().rev() {
            peers.insert(
                at,
                PeerAddr {
                    id: entry.peer,
                    addr: relay.addr,
                },
            );
            through.insert(at, Some(*relay));
        }
    }
    let through = &through;
    let wrong_bytes = AtomicBool::new(false);
    // The peers' endpoint; without one (none can be bound), only the
    // mirrors are asked, and each peer says why not.
    let bound = match peers.is_empty() {
        true => Err("the ticket names no peer".to_owned()),
        false => transport::bind_client_endpoint_with_paths(tuning).map_err(|e| e.to_string()),
    };
    if let (Err(error), true) = (&bound, ticket.mirrors.is_empty()) {
        let tried = peers
            .into_iter()
            .map(|peer| (peer, format!("no QUIC endpoint: {error}")))
            .collect();
        return Err(TicketManifestError {
            tried,
            mirrors_tried: Vec::new(),
            wrong_bytes: false,
        });
    }
    let bound_ref = &bound;
    let mut tuning = tuning.clone();
    tuning.handshake_timeout = timeout;
    let tuning = &tuning;
    let digest = ticket.manifest_sha256.0;
    let opened = Mutex::new(Vec::new());
    let (opened_ref, wrong_ref) = (&opened, &wrong_bytes);

    let ask = move |peer: PeerAddr, relay: Option<crate::relay::RelayAddr>, wait: Duration| async move {
        let attempt = async {
            let (endpoint_ref, paths_ref) = match bound_ref {
                Ok((endpoint, paths)) => (endpoint, paths),
                Err(error) => return Err(format!("no QUIC endpoint: {error}")),
            };
            let (connection, _link) = match relay {
                Some(relay) => {
                    through_relay(endpoint_ref, paths_ref, peer.id, relay, identity, tuning).await?
                }
                None => {
                    // A peer busy with other handshakes refuses the first
                    // packet (its limits per prefix and overall): asked
                    // again a little later, it lets us in.
                    let mut pause = REFUSED_FIRST_PAUSE;
                    let mut refusals = 0;
                    let connection = loop {
                        match transport::connect(endpoint_ref, &peer, identity, tuning).await {
                            Ok(connection) => break connection,
                            Err(transport::ConnectError::Refused { .. })
                                if refusals < REFUSED_ATTEMPTS =>
                            {
                                refusals += 1;
                                tokio::time::sleep(pause).await;
                                pause *= 2;
                            }
                            Err(error) => return Err(error.to_string()),
                        }
                    };
                    (connection, None)
                }
            };
            opened_ref
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(connection.clone());
            query_manifest(&connection, digest).await.map_err(|error| {
                if matches!(
                    error,
                    crate::link::handshake::QueryError::WrongDigest { .. }
                ) {
                    wrong_ref.store(true, Ordering::Relaxed);
                }
                error.to_string()
            })
        };
        match tokio::time::timeout(wait, attempt).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer in {}", seconds(wait))),
        }
    };

    // A ticket's mirror, asked for the manifest beside it.
    let ask_mirror = move |url: &'_ minimodel_verifier::mirror_url::MirrorUrl, wait: Duration| {
        let url = url.clone();
        async move {
            let limit = minimodel_verifier::manifest::MAX_MANIFEST_LEN as u64;
            let read = crate::mirror::read_manifest_beside(
                &url,
                crate::mirror::MirrorTokens::default(),
                &access.trust,
                &access.agent,
                limit,
            );
            let bytes = match tokio::time::timeout(wait, read).await {
                Ok(answer) => answer?,
                Err(_) => return Err(format!("no answer in {}", seconds(wait))),
            };
            let got = minimodel_verifier::Sha256Digest::of(&bytes);
            if got.0 != digest {
                wrong_ref.store(true, Ordering::Relaxed);
                return Err(format!(
                    "serves another manifest ({} bytes, SHA-256 {got})",
                    bytes.len()
                ));
            }
            Ok(bytes)
        }
    };

    let until = within.map(|within| tokio::time::Instant::now() + within);
    // The addresses, then the mirrors: sources in the order asked.
    let sources = peers.len() + ticket.mirrors.len();
    // Why each source failed, in that order.
    let mut why: Vec<Option<String>> = vec![None; sources];
    let mut running: Vec<Asking<'_>> = Vec::new();
    let mut next = 0;
    let mut next_at = tokio::time::Instant::now();
    let mut found = None;
    while found.is_none() && (next < sources || !running.is_empty()) {
        let now = tokio::time::Instant::now();
        if next < sources && (running.is_empty() || now >= next_at) {
            let wait = match until {
                Some(until) => timeout.min(until.saturating_duration_since(now)),
                None => timeout,
            };
            // Too little left to reach anyone: not worth showing this
            // host to the address.
            if wait < MIN_ASK.min(timeout) {
                for slot in &mut why[next..] {
                    *slot = Some("not asked: the time to give up came first".to_owned());
                }
                next = sources;
                continue;
            }
            let asking: Pin<Box<dyn Future<Output = Answer> + Send + '_>> = match peers.get(next) {
                Some(peer) => Box::pin(ask(*peer, through[next], wait)),
                None => Box::pin(ask_mirror(&ticket.mirrors[next - peers.len()], wait)),
            };
            running.push((next, asking));
            next += 1;
            next_at = now + NEXT_ADDRESS_DELAY;
            continue;
        }
        let answered = std::future::poll_fn(|cx| {
            for (at, (index, attempt)) in running.iter_mut().enumerate() {
                if let Poll::Ready(answer) = attempt.as_mut().poll(cx) {
                    return Poll::Ready(Some((at, *index, answer)));
                }
            }
            Poll::Pending
        });
        let starts = async {
            if next < sources {
                tokio::time::sleep_until(next_at).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let answered = tokio::select! {
            // An answer that came with the next start ends the lookup.
            biased;
            answered = answered => answered,
            () = starts => None,
        };
        let Some((at, index, answer)) = answered else {
            continue;
        };
        drop(running.swap_remove(at));
        match answer {
            Ok(bytes) => {
                let from = match peers.get(index) {
                    Some(peer) => ManifestSource::Peer(*peer),
                    None => ManifestSource::Mirror(mirror_urls[index - peers.len()].clone()),
                };
                found = Some(TicketManifest {
                    bytes: bytes.into(),
                    from,
                });
            }
            Err(error) => why[index] = Some(error),
        }
    }
    // The attempts still under way (a slower address when one answered)
    // end here; their connections close with the rest.
    drop(running);
    let opened = opened
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Ok((endpoint, _)) = &bound {
        transport::Closing::close(opened, b"done")
            .flush(endpoint, b"done", tuning.close_flush)
            .await;
    }
    let mut why = why
        .into_iter()
        .map(|why| why.unwrap_or_else(|| "not asked".to_owned()));
    found.ok_or_else(|| TicketManifestError {
        tried: peers
            .iter()
            .map(|peer| (*peer, why.next().unwrap_or_default()))
            .collect(),
        mirrors_tried: (mirror_urls.into_iter())
            .map(|url| (url, why.next().unwrap_or_default()))
            .collect(),
        wrong_bytes: wrong_bytes.into_inner(),
    })
}
