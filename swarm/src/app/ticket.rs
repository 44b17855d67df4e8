//! The manifest a ticket names, from the ticket's peers: a manifest query
//! (`docs/wire-protocol.md` 8.6) to each of its addresses in turn until
//! one answers with bytes whose SHA-256 is the ticket's.
//!
//! What it does not do: parse the manifest, check its signature against
//! the ticket's key id or a keyring, or ask for consent. The front end
//! does, before anything else moves, as for a manifest read from a file.

use std::sync::Arc;
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
/// the ticket's, and the peer that sent them.
#[derive(Debug, Clone)]
pub struct TicketManifest {
    /// The manifest file's bytes.
    pub bytes: Arc<[u8]>,
    /// Who sent them.
    pub from: PeerAddr,
}

/// No peer of the ticket gave the manifest: what each address said.
#[derive(Debug, thiserror::Error)]
#[error("no peer of the ticket sent its manifest ({})", describe(.tried))]
pub struct TicketManifestError {
    /// Every address tried, with what went wrong there.
    pub tried: Vec<(PeerAddr, String)>,
    /// Whether some peer sent bytes whose SHA-256 is not the ticket's (a
    /// peer that lies, or a ticket for another manifest).
    pub wrong_bytes: bool,
}

/// `10 s`, or `2.5 s` for a part of a second.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

fn describe(tried: &[(PeerAddr, String)]) -> String {
    tried
        .iter()
        .map(|(peer, why)| format!("{}: {why}", peer.addr))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A peer that refuses the connection at its first packet is asked again
/// this many times, after this pause, doubled each time (0.1 + 0.2 + 0.4 +
/// 0.8 + 1.6 s): a peer that is only busy lets us in within 3.1 s.
const REFUSED_ATTEMPTS: u32 = 5;
const REFUSED_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Fetches the manifest `ticket` names from its peers, each address in
/// turn, `timeout` for each (a peer that refuses the connection at once
/// is asked again within it, [`REFUSED_ATTEMPTS`] times), with `identity`
/// on a client endpoint of its own (closed before it returns).
pub async fn manifest_of(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
) -> Result<TicketManifest, TicketManifestError> {
    manifest_of_within(ticket, identity, tuning, timeout, None).await
}

/// [`manifest_of`], all of it within `within` when given: an address
/// whose turn comes after that is not asked (it says so), and the last
/// one asked gets what is left of it.
pub async fn manifest_of_within(
    ticket: &Ticket,
    identity: &Identity,
    tuning: &TransportTuning,
    timeout: Duration,
    within: Option<Duration>,
) -> Result<TicketManifest, TicketManifestError> {
    let until = within.map(|within| tokio::time::Instant::now() + within);
    let mut tried = Vec::new();
    let mut wrong_bytes = false;
    let endpoint = match transport::bind_client_endpoint(tuning) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            let tried = PeerAddrs::flatten(&ticket.peers)
                .into_iter()
                .map(|peer| (peer, format!("no QUIC endpoint: {error}")))
                .collect();
            return Err(TicketManifestError { tried, wrong_bytes });
        }
    };
    let mut tuning = tuning.clone();
    tuning.handshake_timeout = timeout;
    let digest = ticket.manifest_sha256.0;
    let mut found = None;
    let mut opened = Vec::new();
    for peer in PeerAddrs::flatten(&ticket.peers) {
        let wait = match until {
            Some(until) => {
                timeout.min(until.saturating_duration_since(tokio::time::Instant::now()))
            }
            None => timeout,
        };
        if wait.is_zero() {
            tried.push((peer, "not asked: the time to give up came first".to_owned()));
            continue;
        }
        let attempt = async {
            // A peer busy with other handshakes refuses the first packet
            // (its limits per prefix and overall): asked again a little
            // later, it lets us in.
            let mut pause = REFUSED_FIRST_PAUSE;
            let mut refusals = 0;
            let connection = loop {
                match transport::connect(&endpoint, &peer, identity, &tuning).await {
                    Ok(connection) => break connection,
                    Err(transport::ConnectError::Refused { .. }) if refusals < REFUSED_ATTEMPTS => {
                        refusals += 1;
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    Err(error) => return Err(error.to_string()),
                }
            };
            opened.push(connection.clone());
            query_manifest(&connection, digest).await.map_err(|error| {
                if matches!(
                    error,
                    crate::link::handshake::QueryError::WrongDigest { .. }
                ) {
                    wrong_bytes = true;
                }
                error.to_string()
            })
        };
        match tokio::time::timeout(wait, attempt).await {
            Ok(Ok(bytes)) => {
                found = Some(TicketManifest {
                    bytes: bytes.into(),
                    from: peer,
                });
                break;
            }
            Ok(Err(why)) => tried.push((peer, why)),
            Err(_) => tried.push((peer, format!("no answer in {}", seconds(wait)))),
        }
    }
    transport::Closing::close(opened, b"done")
        .flush(&endpoint, b"done", tuning.close_flush)
        .await;
    found.ok_or(TicketManifestError { tried, wrong_bytes })
}
