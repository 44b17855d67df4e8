//! Which addresses from a DHT answer are worth a dial, and how many.
//!
//! A `get_peers` answer is a list of addresses that any node on the DHT
//! may have made up. Nothing in it is trusted: an address is dialed only if
//! it could be a peer at all (a real port, a unicast address), loopback
//! only on a DHT that is itself on this machine, each address once, and at
//! most a fixed number per lookup. What is dialed then has to prove itself
//! in the handshake and every chunk against the Merkle root.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// Why an address from a DHT answer is not dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Port 0: nothing listens there.
    PortZero,
    /// `0.0.0.0/8` or `::`: "this host" or "this network", not a
    /// destination.
    Unspecified,
    /// `255.255.255.255` and the rest of `240.0.0.0/4` (reserved).
    Broadcast,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `127.0.0.0/8` or `::1` while the DHT reaches beyond this machine:
    /// a stranger's answer must not make us dial our own services.
    Loopback,
}

/// Why `addr` must not be dialed, or `None` if it may be. Loopback
/// addresses are fit only with `allow_loopback` (see
/// [`allows_loopback`]). An IPv4-mapped IPv6 address is judged as the
/// IPv4 address it maps.
pub fn unfit(addr: SocketAddr, allow_loopback: bool) -> Option<Unfit> {
    if addr.port() == 0 {
        return Some(Unfit::PortZero);
    }
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            if ip.octets()[0] == 0 {
                Some(Unfit::Unspecified)
            } else if ip.octets()[0] >= 240 {
                Some(Unfit::Broadcast)
            } else if ip.is_multicast() {
                Some(Unfit::Multicast)
            } else if ip.is_loopback() && !allow_loopback {
                Some(Unfit::Loopback)
            } else {
                None
            }
        }
        IpAddr::V6(ip) => {
            if ip.is_unspecified() {
                Some(Unfit::Unspecified)
            } else if ip.is_multicast() {
                Some(Unfit::Multicast)
            } else if ip.is_loopback() && !allow_loopback {
                Some(Unfit::Loopback)
            } else {
                None
            }
        }
    }
}

/// Whether loopback answers may be dialed on a DHT joined through
/// `bootstrap`: only when there is a bootstrap list and every node in it
/// is on this machine (a test, or a private DHT on one host). On the
/// public DHT (`None`), a loopback answer is someone else's lie.
pub fn allows_loopback(bootstrap: Option<&[std::net::SocketAddrV4]>) -> bool {
    match bootstrap {
        Some(nodes) => !nodes.is_empty() && nodes.iter().all(|node| node.ip().is_loopback()),
        None => false,
    }
}

/// Collects the dialable addresses of one lookup: fit ones only, each
/// once, in the order first seen, at most `limit`.
#[derive(Debug)]
pub struct PeerFilter {
    limit: usize,
    allow_loopback: bool,
    seen: HashSet<SocketAddr>,
    peers: Vec<SocketAddr>,
    unfit: u64,
    duplicates: u64,
}

impl PeerFilter {
    /// An empty filter that keeps at most `limit` addresses.
    pub fn new(limit: usize, allow_loopback: bool) -> Self {
        Self {
            limit,
            allow_loopback,
            seen: HashSet::new(),
            peers: Vec::new(),
            unfit: 0,
            duplicates: 0,
        }
    }

    /// Takes the addresses of one answer and returns the ones kept from it
    /// (fit and not seen before). Once the filter is full the rest of an
    /// answer is not looked at.
    pub fn offer(&mut self, answer: impl IntoIterator<Item = SocketAddr>) -> &[SocketAddr] {
        let before = self.peers.len();
        for addr in answer {
            if self.is_full() {
                break;
            }
            if unfit(addr, self.allow_loopback).is_some() {
                self.unfit += 1;
                continue;
            }
            let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
            if self.seen.insert(addr) {
                self.peers.push(addr);
            } else {
                self.duplicates += 1;
            }
        }
        &self.peers[before..]
    }

    /// Whether `limit` addresses are kept.
    pub fn is_full(&self) -> bool {
        self.peers.len() >= self.limit
    }

    /// Addresses refused so far as [`unfit`].
    pub fn unfit_count(&self) -> u64 {
        self.unfit
    }

    /// Addresses seen again so far.
    pub fn duplicate_count(&self) -> u64 {
        self.duplicates
    }

    /// The kept addresses, in the order first seen.
    pub fn into_peers(self) -> Vec<SocketAddr> {
        self.peers
    }
}

/// [`PeerFilter`] over one whole answer.
pub fn filter_peers(
    answer: impl IntoIterator<Item = SocketAddr>,
    limit: usize,
    allow_loopback: bool,
) -> Vec<SocketAddr> {
    let mut filter = PeerFilter::new(limit, allow_loopback);
    filter.offer(answer);
    filter.into_peers()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(a, b, c, d), port))
    }

    fn v6(ip: Ipv6Addr, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
    }

    #[test]
    fn each_kind_of_junk_is_named() {
        let cases = [
            (v4(203, 0, 113, 7, 0), Some(Unfit::PortZero)),
            (v4(0, 0, 0, 0, 4433), Some(Unfit::Unspecified)),
            (v4(0, 1, 2, 3, 4433), Some(Unfit::Unspecified)),
            (v4(255, 255, 255, 255, 4433), Some(Unfit::Broadcast)),
            (v4(240, 0, 0, 1, 4433), Some(Unfit::Broadcast)),
            (v4(224, 0, 0, 1, 4433), Some(Unfit::Multicast)),
            (v4(239, 255, 255, 250, 1900), Some(Unfit::Multicast)),
            (v4(127, 0, 0, 1, 4433), Some(Unfit::Loopback)),
            (v4(127, 9, 9, 9, 4433), Some(Unfit::Loopback)),
            (v6(Ipv6Addr::UNSPECIFIED, 4433), Some(Unfit::Unspecified)),
            (v6(Ipv6Addr::LOCALHOST, 4433), Some(Unfit::Loopback)),
            (v6("ff02::1".parse().unwrap(), 4433), Some(Unfit::Multicast)),
            (
                v6("::ffff:127.0.0.1".parse().unwrap(), 4433),
                Some(Unfit::Loopback),
            ),
            (
                v6("::ffff:0.0.0.0".parse().unwrap(), 4433),
                Some(Unfit::Unspecified),
            ),
            (
                v6("::ffff:224.0.0.1".parse().unwrap(), 4433),
                Some(Unfit::Multicast),
            ),
            (v4(203, 0, 113, 7, 4433), None),
            (v4(10, 1, 2, 3, 1), None),
            (v4(192, 168, 1, 2, 65535), None),
            (v6("2001:db8::1".parse().unwrap(), 4433), None),
        ];
        for (addr, expected) in cases {
            assert_eq!(unfit(addr, false), expected, "{addr}");
        }
    }

    #[test]
    fn loopback_is_fit_only_when_allowed() {
        assert_eq!(unfit(v4(127, 0, 0, 1, 4433), true), None);
        assert_eq!(unfit(v6(Ipv6Addr::LOCALHOST, 4433), true), None);
        // Allowing loopback allows nothing else.
        assert_eq!(unfit(v4(127, 0, 0, 1, 0), true), Some(Unfit::PortZero));
        assert_eq!(unfit(v4(0, 0, 0, 0, 1), true), Some(Unfit::Unspecified));
    }

    #[test]
    fn loopback_is_allowed_only_on_a_dht_wholly_on_this_machine() {
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6881);
        let other_local = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 6881);
        let remote = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 6881);
        assert!(allows_loopback(Some(&[local])));
        assert!(allows_loopback(Some(&[local, other_local])));
        assert!(!allows_loopback(Some(&[local, remote])));
        assert!(!allows_loopback(Some(&[remote])));
        assert!(!allows_loopback(Some(&[])));
        assert!(!allows_loopback(None));
    }

    #[test]
    fn an_answer_full_of_junk_keeps_only_fit_addresses_once_in_order() {
        let good_a = v4(203, 0, 113, 1, 4433);
        let good_b = v4(198, 51, 100, 2, 5000);
        let answer = vec![
            v4(0, 0, 0, 0, 4433),
            good_a,
            v4(203, 0, 113, 1, 0),
            v4(255, 255, 255, 255, 4433),
            good_a,
            v4(224, 0, 0, 251, 5353),
            v4(127, 0, 0, 1, 4433),
            // The same peer as an IPv4-mapped IPv6 address is a duplicate.
            v6("::ffff:203.0.113.1".parse().unwrap(), 4433),
            good_b,
            v6(Ipv6Addr::UNSPECIFIED, 4433),
            good_a,
        ];
        let mut filter = PeerFilter::new(64, false);
        assert_eq!(filter.offer(answer), [good_a, good_b]);
        assert!(!filter.is_full());
        assert_eq!(filter.unfit_count(), 6);
        assert_eq!(filter.duplicate_count(), 3);
        assert_eq!(filter.into_peers(), vec![good_a, good_b]);
    }

    #[test]
    fn a_flood_is_cut_at_the_limit_across_answers() {
        // A thousand distinct fit addresses, each twice, behind junk.
        let flood: Vec<SocketAddr> = (0..1000u32)
            .flat_map(|i| {
                let addr = v4(100, 64, (i >> 8) as u8, i as u8, 4433);
                [v4(0, 0, 0, 0, 1), addr, addr]
            })
            .collect();
        let mut filter = PeerFilter::new(32, false);
        assert_eq!(filter.offer(flood[..30].iter().copied()).len(), 10);
        assert!(!filter.is_full());
        assert_eq!(filter.offer(flood[30..].iter().copied()).len(), 22);
        assert!(filter.is_full());
        assert!(
            filter.offer([v4(198, 51, 100, 9, 1)]).is_empty(),
            "still full"
        );
        let peers = filter.into_peers();
        assert_eq!(peers.len(), 32);
        let expected: Vec<SocketAddr> = (0..32u32).map(|i| v4(100, 64, 0, i as u8, 4433)).collect();
        assert_eq!(peers, expected);
        assert_eq!(filter_peers(flood, 5, false).len(), 5);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        assert!(filter_peers([v4(203, 0, 113, 1, 4433)], 0, false).is_empty());
    }
}
