//! Whom a chunk-list read-ahead asks beyond the peers it is given, sans-IO:
//! the neighbours of the swarm heard on the local network ([`Hearing`])
//! and the addresses the DHT names for it ([`dht_targets`]). The driver
//! (`chunk_list_from_peers` in `swarm/src/app/fetch.rs`) listens, looks
//! up and dials; what it hears and finds goes in here, and it asks only
//! what comes out, when it is told.
//!
//! What is decided here:
//! - **which neighbours are asked**: at most [`BeyondConfig::neighbours`],
//!   none a named peer, each once, with at most
//!   [`BeyondConfig::addresses_each`] of its addresses (each once), only
//!   those inside the /24 or /64 of one of our own LAN addresses
//!   ([`crate::address::within_lan`]);
//! - **how long the local network is listened to**: from the listener's
//!   start, up to [`BeyondConfig::listen`] for a first neighbour, then
//!   [`BeyondConfig::more`] after the first is handed in for others; never
//!   past the round's end; at once over when the most are heard;
//! - **which addresses of the DHT's are asked**: at most
//!   [`BeyondConfig::dht_addresses`], at most [`BeyondConfig::dht_per_ip`]
//!   of one IP address before every other IP address found had its places
//!   (one host announcing many ports takes two places from others, two
//!   peers behind one router still both get one), then that IP address's
//!   further ones while places are left (a seeder restarted on another
//!   port is still asked), none a named peer's.
//!
//! Invariant: what is held is bounded by [`BeyondConfig::neighbours`] ×
//! [`BeyondConfig::addresses_each`] addresses, whatever is heard.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;

/// The limits and windows of asking beyond the named peers. [`Default`]
/// holds the product's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeyondConfig {
    /// How long the local network is listened to for a first neighbour,
    /// from the listener's start. Default 3 s.
    pub listen: Duration,
    /// How long more, once a first is heard, for others. Default 0.5 s.
    pub more: Duration,
    /// Most neighbours asked. Default 8.
    pub neighbours: usize,
    /// Most addresses of one neighbour asked. Default 2.
    pub addresses_each: usize,
    /// Most addresses of the DHT's asked. Default 8.
    pub dht_addresses: usize,
    /// Most addresses of one IP address among the DHT's. Default 2.
    pub dht_per_ip: usize,
}

impl Default for BeyondConfig {
    fn default() -> Self {
        Self {
            listen: Duration::from_secs(3),
            more: Duration::from_millis(500),
            neighbours: 8,
            addresses_each: 2,
            dht_addresses: 8,
            dht_per_ip: 2,
        }
    }
}

/// What became of a neighbour handed in ([`Hearing::hear`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It is asked.
    Kept,
    /// None of its addresses is inside our own networks.
    Outside,
    /// A named peer: it was asked, or passed over, already.
    Named,
    /// Heard before.
    Again,
    /// The most are heard already.
    Full,
}

/// The neighbours of one round's listening, and when it ends.
#[derive(Debug, Clone)]
pub struct Hearing {
    config: BeyondConfig,
    own: Vec<SocketAddr>,
    named: Vec<PeerId>,
    /// The end of the round: no listening past it.
    until: Instant,
    /// When listening ends, as things stand.
    ends: Instant,
    heard: Vec<(PeerId, Vec<SocketAddr>)>,
}

impl Hearing {
    /// Listening that starts at `started`, for a round that ends at
    /// `until`: `own` are our own LAN addresses
    /// ([`crate::address::own_lan`]), `named` the peers the plan names.
    pub fn new(
        config: BeyondConfig,
        own: Vec<SocketAddr>,
        named: Vec<PeerId>,
        started: Instant,
        until: Instant,
    ) -> Self {
        Self {
            ends: (started + config.listen).min(until),
            config,
            own,
            named,
            until,
            heard: Vec::new(),
        }
    }

    /// A neighbour announced `peer` at `addrs`, handed in at `now`.
    pub fn hear(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Heard {
        if self.is_full() {
            return Heard::Full;
        }
        if self.named.contains(&peer) {
            return Heard::Named;
        }
        if self.heard.iter().any(|(seen, _)| *seen == peer) {
            return Heard::Again;
        }
        let mut kept: Vec<SocketAddr> = Vec::new();
        for addr in addrs {
            if kept.len() == self.config.addresses_each {
                break;
            }
            if crate::address::within_lan(&self.own, addr) && !kept.contains(&addr) {
                kept.push(addr);
            }
        }
        let addrs = kept;
        if addrs.is_empty() {
            return Heard::Outside;
        }
        if self.heard.is_empty() {
            self.ends = (now + self.config.more).min(self.until);
        }
        self.heard.push((peer, addrs));
        Heard::Kept
    }

    /// When listening ends; `None` once the most are heard (it is over).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_full()).then_some(self.ends)
    }

    /// Whether listening is over at `now`.
    pub fn is_over(&self, now: Instant) -> bool {
        self.is_full() || now >= self.ends
    }

    /// The neighbours to ask, in the order heard, each with its addresses.
    pub fn into_asked(self) -> Vec<(PeerId, Vec<SocketAddr>)> {
        self.heard
    }

    /// How long a first neighbour is waited for.
    pub fn listen(&self) -> Duration {
        self.config.listen
    }

    fn is_full(&self) -> bool {
        self.heard.len() >= self.config.neighbours
    }
}

/// Of the addresses a DHT lookup `found`, in its order, those asked: none
/// `named` (a named peer's address), at most [`BeyondConfig::dht_addresses`],
/// each once; at most [`BeyondConfig::dht_per_ip`] of one IP address
/// first, then, while places are left, that IP address's further ones in
/// the order found. A host whose seeder restarted on another port leaves
/// its old ports announced for as long as DHT nodes keep them: with room
/// to spare, its current port is asked too, and the cap still keeps one
/// host that announces many ports from taking a place another host's
/// address would have.
pub fn dht_targets(
    config: &BeyondConfig,
    found: impl IntoIterator<Item = SocketAddr>,
    named: &[SocketAddr],
) -> Vec<SocketAddr> {
    let mut per_ip: Vec<(IpAddr, usize)> = Vec::new();
    let mut asked: Vec<SocketAddr> = Vec::new();
    // Those the cap held back, in order, at most as many as may be asked.
    let mut held: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if asked.len() == config.dht_addresses {
            break;
        }
        if named.contains(&addr) || asked.contains(&addr) || held.contains(&addr) {
            continue;
        }
        let ip = crate::address::canonical(addr.ip());
        match per_ip.iter_mut().find(|(seen, _)| *seen == ip) {
            Some((_, count)) if *count >= config.dht_per_ip => {
                if held.len() < config.dht_addresses {
                    held.push(addr);
                }
                continue;
            }
            Some((_, count)) => *count += 1,
            None => per_ip.push((ip, 1)),
        }
        asked.push(addr);
    }
    let room = config.dht_addresses - asked.len();
    asked.extend(held.into_iter().take(room));
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn hearing(named: Vec<PeerId>, start: Instant, until: Instant) -> Hearing {
        Hearing::new(
            BeyondConfig::default(),
            vec![addr("192.168.1.10:0")],
            named,
            start,
            until,
        )
    }

    #[test]
    fn a_first_neighbour_is_waited_for_three_seconds_then_others_half_a_second() {
        let start = Instant::now();
        let mut hearing = hearing(Vec::new(), start, start + Duration::from_secs(60));
        assert_eq!(hearing.poll_timeout(), Some(start + Duration::from_secs(3)));
        assert!(!hearing.is_over(start + Duration::from_millis(2999)));
        assert!(hearing.is_over(start + Duration::from_secs(3)));
        let first = start + Duration::from_secs(1);
        let heard = hearing.hear(first, peer(1), [addr("192.168.1.20:4000")]);
        assert_eq!(heard, Heard::Kept);
        assert_eq!(
            hearing.poll_timeout(),
            Some(first + Duration::from_millis(500))
        );
        // A second one does not move the end again.
        let second = first + Duration::from_millis(400);
        assert_eq!(
            hearing.hear(second, peer(2), [addr("192.168.1.21:4000")]),
            Heard::Kept
        );
        assert_eq!(
            hearing.poll_timeout(),
            Some(first + Duration::from_millis(500))
        );
        assert!(hearing.is_over(first + Duration::from_millis(500)));
        let asked = hearing.into_asked();
        assert_eq!(
            asked,
            vec![
                (peer(1), vec![addr("192.168.1.20:4000")]),
                (peer(2), vec![addr("192.168.1.21:4000")])
            ]
        );
    }

    #[test]
    fn listening_never_outlasts_the_round() {
        let start = Instant::now();
        let until = start + Duration::from_secs(1);
        let mut hearing = hearing(Vec::new(), start, until);
        assert_eq!(hearing.poll_timeout(), Some(until));
        let late = start + Duration::from_millis(900);
        hearing.hear(late, peer(1), [addr("192.168.1.20:4000")]);
        assert_eq!(hearing.poll_timeout(), Some(until));
    }

    #[test]
    fn neighbours_outside_our_network_named_or_heard_again_are_not_asked_twice() {
        let start = Instant::now();
        let named = vec![peer(9)];
        let mut hearing = hearing(named, start, start + Duration::from_secs(60));
        // The internet, loopback, another /24: none is dialed.
        let outside = [
            addr("8.8.8.8:4000"),
            addr("127.0.0.1:4000"),
            addr("192.168.2.20:4000"),
        ];
        assert_eq!(hearing.hear(start, peer(1), outside), Heard::Outside);
        // Listening still waits the whole window for a first.
        assert_eq!(hearing.poll_timeout(), Some(start + Duration::from_secs(3)));
        assert_eq!(
            hearing.hear(start, peer(9), [addr("192.168.1.30:4000")]),
            Heard::Named
        );
        // Of its addresses, those inside our /24, two at most.
        let many = [
            addr("10.0.0.1:1"),
            addr("192.168.1.20:4000"),
            addr("192.168.1.20:4001"),
            addr("192.168.1.20:4002"),
        ];
        assert_eq!(hearing.hear(start, peer(2), many), Heard::Kept);
        assert_eq!(
            hearing.hear(start, peer(2), [addr("192.168.1.99:1")]),
            Heard::Again
        );
        assert_eq!(
            hearing.into_asked(),
            vec![(
                peer(2),
                vec![addr("192.168.1.20:4000"), addr("192.168.1.20:4001")]
            )]
        );
    }

    #[test]
    fn a_flood_of_announcements_holds_eight_neighbours_and_ends_the_listening() {
        let start = Instant::now();
        let mut hearing = hearing(Vec::new(), start, start + Duration::from_secs(60));
        let mut kept = 0;
        for n in 0..200u8 {
            let at = addr(&format!("192.168.1.{}:4000", n.max(1)));
            if hearing.hear(start, peer(n), [at, at, at]) == Heard::Kept {
                kept += 1;
            }
        }
        assert_eq!(kept, 8);
        assert_eq!(hearing.poll_timeout(), None);
        assert!(hearing.is_over(start));
        assert_eq!(
            hearing.hear(start, peer(250), [addr("192.168.1.250:1")]),
            Heard::Full
        );
        let asked = hearing.into_asked();
        assert_eq!(asked.len(), 8);
        assert!(asked.iter().all(|(_, addrs)| addrs.len() == 1));
    }

    #[test]
    fn the_dht_s_addresses_are_asked_two_per_ip_eight_at_most_none_named() {
        let config = BeyondConfig::default();
        let named = [addr("203.0.113.9:4000")];
        let mut found = vec![
            addr("203.0.113.9:4000"),
            addr("198.51.100.1:1"),
            addr("198.51.100.1:2"),
            addr("198.51.100.1:3"),
            addr("198.51.100.1:2"),
            // The same IPv4 address, written as IPv6, is the same host.
            addr("[::ffff:198.51.100.1]:4"),
        ];
        found.extend((1..=20).map(|n| addr(&format!("192.0.2.{n}:4000"))));
        let asked = dht_targets(&config, found, &named);
        assert_eq!(asked.len(), 8);
        assert_eq!(asked[..2], [addr("198.51.100.1:1"), addr("198.51.100.1:2")]);
        assert_eq!(asked[2], addr("192.0.2.1:4000"));
        assert_eq!(asked[7], addr("192.0.2.6:4000"));
        assert!(!asked.contains(&named[0]));
    }

    #[test]
    fn with_places_left_a_host_s_further_ports_are_asked_after_every_other_host() {
        // A seeder restarted twice on one host: its two old ports come
        // first in the lookup, its current one third.
        let found = [
            addr("198.51.100.1:1"),
            addr("198.51.100.1:2"),
            addr("198.51.100.1:3"),
            addr("192.0.2.1:4000"),
            addr("198.51.100.1:1"),
            addr("[::ffff:198.51.100.1]:4"),
        ];
        let asked = dht_targets(&BeyondConfig::default(), found, &[]);
        assert_eq!(
            asked,
            [
                addr("198.51.100.1:1"),
                addr("198.51.100.1:2"),
                addr("192.0.2.1:4000"),
                addr("198.51.100.1:3"),
                addr("[::ffff:198.51.100.1]:4"),
            ]
        );
        // Held back ones never push out another host's address.
        let mut crowded: Vec<_> = (1..=10)
            .map(|n| addr(&format!("198.51.100.1:{n}")))
            .collect();
        crowded.extend((1..=6).map(|n| addr(&format!("192.0.2.{n}:4000"))));
        let asked = dht_targets(&BeyondConfig::default(), crowded, &[]);
        assert_eq!(asked.len(), 8);
        assert!((1..=6).all(|n| asked.contains(&addr(&format!("192.0.2.{n}:4000")))));
        let one_host = asked.iter().filter(|a| a.port() < 100).count();
        assert_eq!(one_host, 2);
    }

    #[test]
    fn an_address_the_dht_names_twice_is_asked_once() {
        let found = [
            addr("192.0.2.1:1"),
            addr("192.0.2.1:1"),
            addr("192.0.2.1:2"),
        ];
        let asked = dht_targets(&BeyondConfig::default(), found, &[]);
        assert_eq!(asked, [addr("192.0.2.1:1"), addr("192.0.2.1:2")]);
    }

    #[test]
    fn nothing_found_asks_nothing() {
        let asked = dht_targets(
            &BeyondConfig::default(),
            [addr("192.0.2.1:1")],
            &[addr("192.0.2.1:1")],
        );
        assert!(asked.is_empty());
    }
}
