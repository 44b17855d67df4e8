//! The relay (`docs/relay.md`): the role a consenting host runs
//! ([`server::RelayServer`], `minimodel relay`), and a node's link to a
//! relay it names ([`client::RelayLink`]).
//!
//! What it is: the drivers. Every decision is a core's: the relay's in
//! `minimodel_node::relay::RelayCore` (who registers, which pairs, which
//! datagram goes where, the limits), a node's in its `NodeCore` (when to
//! ask for an introduction, when to punch, when to fall back to the
//! relay's channel and when to leave it). The drivers keep the QUIC
//! connections and move the datagrams.

pub mod client;
pub mod hub;
pub mod server;
mod socket;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use minimodel_wire::PeerId;

pub use client::{Registration, RelayEvent, RelayLink};
pub use minimodel_node::relay::{DropReason, RelayConfig, RelayCounts, RelayRefusal, RelayReport};
pub use server::{RelayCounter, RelayError, RelayServer};

/// A relay as a person names it: `HOST:PORT`, or `PEER_ID@HOST:PORT` to
/// pin its key (a ticket or an offer names it that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayAddr {
    /// The key it must prove, when known.
    pub id: Option<PeerId>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl fmt::Display for RelayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Why text is not a relay address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayAddrError {
    /// The peer id before `@` is not one.
    #[error("'{0}' is not a relay's peer id")]
    Id(String),
    /// Not `IP:PORT` (IPv6 in brackets), or a port of 0, or an address
    /// nobody can dial.
    #[error("'{0}' is not a relay address: write IP:PORT (IPv6 in brackets), port 1 to 65535")]
    Address(String),
}

impl FromStr for RelayAddr {
    type Err = RelayAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (id, addr) = match text.split_once('@') {
            Some((id, addr)) => (
                Some(
                    id.parse::<PeerId>()
                        .map_err(|_| RelayAddrError::Id(id.to_owned()))?,
                ),
                addr,
            ),
            None => (None, text),
        };
        let parsed: SocketAddr = addr
            .parse()
            .map_err(|_| RelayAddrError::Address(addr.to_owned()))?;
        let parsed = SocketAddr::new(parsed.ip().to_canonical(), parsed.port());
        if parsed.port() == 0 || parsed.ip().is_unspecified() || parsed.ip().is_multicast() {
            return Err(RelayAddrError::Address(addr.to_owned()));
        }
        Ok(RelayAddr { id, addr: parsed })
    }
}

/// Most relays a node of its own keeps links to.
pub const MAX_NODE_RELAYS: usize = 4;

/// The relays a node uses, decided here once for every front end (its
/// consent words, its node's links): its own (`--relay`) first, then
/// those its peers name, each once by address, at most `most`
/// ([`MAX_NODE_RELAYS`] for a node of its own,
/// [`hub::MAX_HUB_LINKS`] for a shared endpoint's).
pub fn relays_used(
    own: &[RelayAddr],
    peer_relays: &[(PeerId, Vec<RelayAddr>)],
    most: usize,
) -> Vec<RelayAddr> {
    let mut used: Vec<RelayAddr> = Vec::new();
    let named = peer_relays.iter().flat_map(|(_, relays)| relays);
    for relay in own.iter().chain(named) {
        if used.len() == most {
            break;
        }
        if !used.iter().any(|known| known.addr == relay.addr) {
            used.push(*relay);
        }
    }
    used
}

/// A relay link's registration, to watch ([`RelayLink::registered`]).
pub type RegisteredWatch = (RelayAddr, tokio::sync::watch::Receiver<Option<PeerId>>);

/// The relays a node is registered with once each of its links has
/// registered, or `wait` passed: what its offer and ticket name, each with
/// the key it proved.
pub async fn settled_relays(
    links: Vec<RegisteredWatch>,
    _wanted: usize,
    wait: std::time::Duration,
) -> Vec<RelayAddr> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut registered = Vec::new();
    for (relay, mut state) in links {
        let _ = tokio::time::timeout_at(deadline, state.wait_for(Option::is_some)).await;
        if let Some(id) = *state.borrow() {
            registered.push(RelayAddr {
                id: Some(id),
                addr: relay.addr,
            });
        }
    }
    registered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relays_used_are_ones_own_then_the_peers_each_once_and_at_most_so_many() {
        let relay = |n: u8| RelayAddr {
            id: None,
            addr: SocketAddr::from(([81, 2, 69, n], 4434)),
        };
        let peers = vec![
            (PeerId([1; 32]), vec![relay(2), relay(1)]),
            (
                PeerId([2; 32]),
                vec![relay(3), relay(2), relay(4), relay(5)],
            ),
        ];
        assert_eq!(
            relays_used(&[relay(1)], &peers, MAX_NODE_RELAYS),
            [relay(1), relay(2), relay(3), relay(4)]
        );
        assert_eq!(relays_used(&[], &peers, 8).len(), 5);
        assert!(relays_used(&[], &[], MAX_NODE_RELAYS).is_empty());
    }

    #[test]
    fn a_relay_is_named_by_its_address_with_its_id_or_without() {
        let id = PeerId([3; 32]);
        let pinned: RelayAddr = format!("{id}@81.2.69.9:4434").parse().unwrap();
        assert_eq!(pinned.id, Some(id));
        assert_eq!(pinned.to_string(), format!("{id}@81.2.69.9:4434"));
        let bare: RelayAddr = " [2a01:4f8::9]:4434 ".parse().unwrap();
        assert_eq!(bare.id, None);
        assert_eq!(bare.to_string(), "[2a01:4f8::9]:4434");
        for bad in [
            "81.2.69.9",
            "81.2.69.9:0",
            "0.0.0.0:4434",
            "x@81.2.69.9:4434",
            "host:4434",
        ] {
            assert!(bad.parse::<RelayAddr>().is_err(), "{bad}");
        }
    }
}
