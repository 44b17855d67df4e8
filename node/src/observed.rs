//! Our public address, as peers see it. Each side of a link names in its
//! Hello the address it sees the link come from (`observed`,
//! `docs/wire-protocol.md` 7.1): behind a NAT router, that is the router's
//! outside address and the port it mapped our socket to. One peer can lie,
//! so an address is believed only when peers in at least two different
//! prefixes report it; and whether the router keeps one outside port for
//! every destination (a cone, which introductions get through) or takes a
//! new one for each (symmetric) shows in the ports they report.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use minimodel_wire::PeerId;

use crate::address::{Prefix, canonical};

/// Most peers whose reports are kept (the oldest is forgotten first).
pub const MAX_OBSERVATIONS: usize = 64;

/// Reports from peers in this many different prefixes make an address
/// believed.
pub const AGREEING_PREFIXES: usize = 2;

/// How our router maps our socket, as the reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Peers in different prefixes see one port: the same outside port
    /// for every destination (no NAT, or a cone NAT).
    OnePort(u16),
    /// They see different ports: a new outside port per destination (a
    /// symmetric NAT), which introductions do not get through.
    PortPerPeer,
}

/// The public address peers agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicAddress {
    /// The IP address.
    pub ip: IpAddr,
    /// How the ports they see compare.
    pub mapping: Mapping,
    /// How many different prefixes the reporting peers are in.
    pub prefixes: usize,
}

/// What peers reported, one report per peer (its latest).
#[derive(Debug, Clone, Default)]
pub struct Observations {
    reports: BTreeMap<PeerId, (Prefix, SocketAddr)>,
    order: VecDeque<PeerId>,
}

impl Observations {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Peer `peer`, whose connection comes from `seen_from`, says it sees
    /// ours come from `observed`. Loopback and unspecified addresses say
    /// nothing about a public address and are not kept.
    pub fn record(&mut self, peer: PeerId, seen_from: SocketAddr, observed: SocketAddr) {
        let ip = canonical(observed.ip());
        if ip.is_loopback() || ip.is_unspecified() || observed.port() == 0 {
            return;
        }
        let observed = SocketAddr::new(ip, observed.port());
        let prefix = Prefix::of(seen_from.ip());
        if self.reports.insert(peer, (prefix, observed)).is_none() {
            self.order.push_back(peer);
        }
        while self.order.len() > MAX_OBSERVATIONS {
            if let Some(oldest) = self.order.pop_front() {
                self.reports.remove(&oldest);
            }
        }
    }

    /// The address reported from the most prefixes, when at least
    /// [`AGREEING_PREFIXES`] agree on it (ties go to the lower address).
    pub fn public(&self) -> Option<PublicAddress> {
        let mut by_ip: BTreeMap<IpAddr, BTreeMap<Prefix, BTreeSet<u16>>> = BTreeMap::new();
        for (prefix, observed) in self.reports.values() {
            by_ip
                .entry(observed.ip())
                .or_default()
                .entry(*prefix)
                .or_default()
                .insert(observed.port());
        }
        let (ip, prefixes) = by_ip
            .into_iter()
            .filter(|(_, prefixes)| prefixes.len() >= AGREEING_PREFIXES)
            .max_by(|(a_ip, a), (b_ip, b)| a.len().cmp(&b.len()).then(b_ip.cmp(a_ip)))?;
        let ports: BTreeSet<u16> = prefixes.values().flatten().copied().collect();
        let mapping = match ports.iter().next() {
            Some(&port) if ports.len() == 1 => Mapping::OnePort(port),
            _ => Mapping::PortPerPeer,
        };
        Some(PublicAddress {
            ip,
            mapping,
            prefixes: prefixes.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    #[test]
    fn one_peer_or_one_prefix_is_not_believed() {
        let mut seen = Observations::new();
        seen.record(peer(1), sa("81.0.0.1:4433"), sa("203.0.113.5:4433"));
        assert_eq!(seen.public(), None, "one peer can lie");
        seen.record(peer(2), sa("81.0.0.2:4433"), sa("203.0.113.5:4433"));
        assert_eq!(seen.public(), None, "two peers of one /24 are one voice");
        seen.record(peer(3), sa("82.0.0.3:4433"), sa("203.0.113.5:4433"));
        assert_eq!(
            seen.public(),
            Some(PublicAddress {
                ip: "203.0.113.5".parse().unwrap(),
                mapping: Mapping::OnePort(4433),
                prefixes: 2,
            })
        );
    }

    #[test]
    fn liars_in_one_prefix_do_not_outvote_two_honest_prefixes() {
        let mut seen = Observations::new();
        for n in 1..=20 {
            seen.record(peer(n), sa(&format!("66.6.6.{n}:4433")), sa("6.6.6.6:1"));
        }
        seen.record(peer(50), sa("81.0.0.1:4433"), sa("203.0.113.5:61000"));
        seen.record(peer(51), sa("82.0.0.1:4433"), sa("203.0.113.5:61000"));
        let public = seen.public().expect("two prefixes agree");
        assert_eq!(public.ip, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(public.mapping, Mapping::OnePort(61000));
    }

    #[test]
    fn different_ports_for_different_peers_is_a_symmetric_nat() {
        let mut seen = Observations::new();
        seen.record(peer(1), sa("81.0.0.1:4433"), sa("203.0.113.5:1024"));
        seen.record(peer(2), sa("82.0.0.1:4433"), sa("203.0.113.5:1025"));
        assert_eq!(seen.public().unwrap().mapping, Mapping::PortPerPeer);
        // A peer's later report replaces its earlier one.
        seen.record(peer(2), sa("82.0.0.1:4433"), sa("203.0.113.5:1024"));
        assert_eq!(seen.public().unwrap().mapping, Mapping::OnePort(1024));
    }

    #[test]
    fn loopback_reports_are_ignored_and_old_ones_forgotten() {
        let mut seen = Observations::new();
        seen.record(peer(1), sa("127.0.0.1:1"), sa("127.0.0.1:4433"));
        seen.record(peer(2), sa("81.0.0.1:1"), sa("0.0.0.0:4433"));
        assert!(seen.reports.is_empty());
        for n in 0..=MAX_OBSERVATIONS as u8 {
            seen.record(
                peer(n),
                sa(&format!("{}.0.0.1:1", 20 + n)),
                sa("203.0.113.5:4433"),
            );
        }
        assert_eq!(seen.reports.len(), MAX_OBSERVATIONS);
        assert!(
            !seen.reports.contains_key(&peer(0)),
            "the oldest went first"
        );
    }
}
