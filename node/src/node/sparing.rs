//! A seed that spares its uplink once the swarm can carry the file without
//! it (`docs/swarm.md`, "A sparing seed"): the estimate of its share and
//! the decision. What the seed then holds back is `serving`'s.
//!
//! A node that seeds from its start (a publisher's `seed`) and carries a
//! small share of what the swarm delivers sends each chunk once, and again
//! only when no peer linked to it that serves others holds that chunk, or
//! to a peer that gets too few chunks elsewhere. What it saves is the
//! publisher's bytes: in the simulator's flash crowd of 1000 home peers
//! its uplink was 0.3 % of the swarm's and it sent 3.7 copies of the file,
//! all but the first of them bytes the swarm could carry. What it can cost
//! is about its share of the swarm's capacity, at most
//! [`NodeConfig::sparing_share`] while the estimate is honest.
//!
//! The share is estimated, never known: the seed's own upload rate over
//! what the swarm delivers, taken as the peers seen lately (distinct ids
//! that said Hello in the last [`SEEN_WINDOW`], at most
//! `max_links_per_prefix` of them per IPv4 /24 or IPv6 /48) times the rate
//! its linked peers announce chunks new to them (their `Have`s) per link.
//! Strangers can make the swarm look larger with ids of their own (each a
//! TLS handshake, and no more than a network's share): `docs/security.md`
//! says what that gets them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;

use crate::address::Prefix;
use crate::config::NodeConfig;

/// How long a peer's Hello counts toward the swarm's size.
pub(super) const SEEN_WINDOW: Duration = Duration::from_secs(300);
/// The most peers remembered for the estimate (a larger swarm counts as
/// this large).
const MAX_SEEN: usize = 4096;
/// How often the decision is taken again, at most.
const REVIEW: Duration = Duration::from_secs(1);
/// The weight of a new sample of the Have rate.
const WEIGHT: f64 = 0.3;

/// The network an estimate counts a peer by: the /24 of an IPv4 address,
/// the /48 of an IPv6 one (a home is often given a /56 or a /48, so its
/// /64s would count as many sites).
fn site_of(ip: IpAddr) -> Prefix {
    Prefix::within(ip, 24, 48)
}

/// What the estimate needs from the node at a review.
pub(super) struct Inputs {
    /// This node's measured upload rate, bytes per second.
    pub(super) own_rate: Option<f64>,
    /// Peers linked now.
    pub(super) links: usize,
    /// Bytes of a chunk.
    pub(super) chunk_size: u32,
}

/// The estimate and the decision.
#[derive(Debug, Default)]
pub(super) struct Sparing {
    /// Peers that said Hello lately: id -> its prefix, when last.
    seen: HashMap<PeerId, (Prefix, Instant)>,
    /// Haves received since the current sample began.
    haves: u64,
    sample_start: Option<Instant>,
    /// Haves received per second, averaged.
    have_rate: Option<f64>,
    reviewed: Option<Instant>,
    on: bool,
    /// When `seen` was last cleared of old entries because it was full.
    pruned: Option<Instant>,
}

impl Sparing {
    /// `peer` said Hello from `ip`.
    pub(super) fn saw(&mut self, peer: PeerId, ip: IpAddr, now: Instant) {
        let prefix = site_of(ip);
        if self.seen.len() >= MAX_SEEN && !self.seen.contains_key(&peer) {
            // At most once a review: a full map is not walked per Hello.
            if self
                .pruned
                .is_none_or(|at| now.saturating_duration_since(at) >= REVIEW)
            {
                self.pruned = Some(now);
                self.forget_old(now);
            }
            if self.seen.len() >= MAX_SEEN {
                return;
            }
        }
        self.seen.insert(peer, (prefix, now));
    }

    /// A linked peer announced a chunk.
    pub(super) fn have(&mut self, now: Instant) {
        self.haves += 1;
        self.sample_start.get_or_insert(now);
    }

    fn forget_old(&mut self, now: Instant) {
        self.seen
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < SEEN_WINDOW);
    }

    /// Peers seen lately, at most `per_prefix` of each prefix.
    fn swarm_size(&mut self, per_prefix: usize, now: Instant) -> usize {
        self.forget_old(now);
        let mut by_prefix: HashMap<Prefix, usize> = HashMap::new();
        for (prefix, _) in self.seen.values() {
            *by_prefix.entry(*prefix).or_default() += 1;
        }
        by_prefix.values().map(|&n| n.min(per_prefix)).sum()
    }

    /// Whether to spare the uplink now: reviewed at most every
    /// [`REVIEW`], off while any input is unknown.
    pub(super) fn is_on(&mut self, config: &NodeConfig, inputs: Inputs, now: Instant) -> bool {
        let Some(limit) = config.sparing_share else {
            return false;
        };
        if self
            .reviewed
            .is_some_and(|at| now.saturating_duration_since(at) < REVIEW)
        {
            return self.on;
        }
        self.reviewed = Some(now);
        if let Some(start) = self.sample_start {
            let elapsed = now.saturating_duration_since(start);
            if elapsed >= REVIEW {
                let sample = self.haves as f64 / elapsed.as_secs_f64();
                self.have_rate = Some(match self.have_rate {
                    Some(rate) => rate + WEIGHT * (sample - rate),
                    None => sample,
                });
                self.haves = 0;
                self.sample_start = Some(now);
            }
        }
        let peers = self.swarm_size(config.max_links_per_prefix, now);
        self.on = match (inputs.own_rate, self.have_rate) {
            (Some(own), Some(haves)) if inputs.links > 0 && haves > 0.0 => {
                let per_peer = haves / inputs.links as f64 * f64::from(inputs.chunk_size);
                let swarm = per_peer * peers.max(inputs.links) as f64;
                own < limit * swarm
            }
            _ => false,
        };
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(n: u8) -> IpAddr {
        IpAddr::from([10, 0, n, 1])
    }

    fn id(n: u32) -> PeerId {
        let mut id = [0; 32];
        id[..4].copy_from_slice(&n.to_le_bytes());
        PeerId(id)
    }

    /// A seed at `own` bytes a second, linked to `links` peers that
    /// announce `haves_per_link` chunks of 1 MiB a second, having seen
    /// `seen` peers, one per prefix.
    fn decide(own: f64, links: usize, haves_per_link: f64, seen: u32) -> bool {
        let config = NodeConfig::default();
        let t0 = Instant::now();
        let mut sparing = Sparing::default();
        for n in 0..seen {
            sparing.saw(id(n), prefix(n as u8), t0);
        }
        let inputs = || Inputs {
            own_rate: Some(own),
            links,
            chunk_size: 1 << 20,
        };
        assert!(!sparing.is_on(&config, inputs(), t0), "no Have rate yet");
        let announced = (haves_per_link * links as f64 * 2.0) as u64;
        for _ in 0..announced {
            sparing.have(t0);
        }
        sparing.is_on(&config, inputs(), t0 + Duration::from_secs(2))
    }

    #[test]
    fn a_seed_spares_only_where_its_share_is_small() {
        let mbit = 1e6 / 8.0;
        // A 100 Mbit seed among 200 peers that each get 4 MiB a second:
        // 1.5 % of the swarm.
        assert!(decide(100.0 * mbit, 32, 4.0, 200));
        // A 40 Mbit seed among 24 home peers that each get 1.3 MiB a
        // second: 15 %.
        assert!(!decide(40.0 * mbit, 24, 1.3, 24));
        // The same seed among 200 such peers: 1.8 %.
        assert!(decide(40.0 * mbit, 24, 1.3, 200));
    }

    #[test]
    fn ids_from_one_site_count_no_more_than_its_links_may() {
        let config = NodeConfig::default();
        let t0 = Instant::now();
        let mut sparing = Sparing::default();
        for n in 0..1000 {
            sparing.saw(id(n), prefix(1), t0);
        }
        assert_eq!(
            sparing.swarm_size(config.max_links_per_prefix, t0),
            config.max_links_per_prefix
        );
        // So do ids from the /64s of one IPv6 /48.
        let mut v6 = Sparing::default();
        for n in 0..1000u32 {
            let ip = IpAddr::from([0x2001, 0xdb8, 7, n as u16, 0, 0, 0, 1]);
            v6.saw(id(n), ip, t0);
        }
        assert_eq!(
            v6.swarm_size(config.max_links_per_prefix, t0),
            config.max_links_per_prefix
        );
        // Forgotten after the window.
        assert_eq!(
            sparing.swarm_size(config.max_links_per_prefix, t0 + SEEN_WINDOW),
            0
        );
    }

    #[test]
    fn no_estimate_no_sparing() {
        let config = NodeConfig::default();
        let t0 = Instant::now();
        let mut sparing = Sparing::default();
        for n in 0..1000 {
            sparing.saw(id(n), prefix(n as u8), t0);
        }
        // Haves, but the uplink not measured yet.
        for _ in 0..100 {
            sparing.have(t0);
        }
        let inputs = Inputs {
            own_rate: None,
            links: 32,
            chunk_size: 1 << 20,
        };
        assert!(!sparing.is_on(&config, inputs, t0 + Duration::from_secs(2)));
        let off = NodeConfig {
            sparing_share: None,
            ..NodeConfig::default()
        };
        let inputs = Inputs {
            own_rate: Some(1.0),
            links: 32,
            chunk_size: 1 << 20,
        };
        assert!(!sparing.is_on(&off, inputs, t0 + Duration::from_secs(4)));
    }
}
