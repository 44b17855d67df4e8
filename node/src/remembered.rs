//! The peers a download remembers between runs (`docs/resume.md`,
//! "Remembered peers"): who served it, where, how it was found, how much,
//! and when last. A resumed fetch dials them first, with no offer needed.
//!
//! Decided here, with no I/O and no clock of its own (times are Unix
//! seconds the caller reads): which peers of a run are worth remembering
//! ([`from_transfers`]), how a run's list merges with the earlier ones
//! ([`merge`]), and which remembered peers are still fresh ([`fresh`]).
//! The driver reads and writes the list (`swarm/src/resume/peers.rs`).

use std::net::SocketAddr;

use minimodel_wire::PeerId;

use crate::address::{Scope, scope};
use crate::book::Source;
use crate::report::TransferStats;

/// Peers remembered per download, at most.
pub const MAX_REMEMBERED: usize = 32;
/// Addresses remembered per peer, at most.
pub const MAX_REMEMBERED_ADDRS: usize = 4;
/// How long a peer is remembered after it last served: 30 days.
pub const REMEMBER_FOR_SECS: u64 = 30 * 24 * 3600;
/// How far in the future a remembered time may lie (a clock set back
/// since): one day; beyond, the entry is not believed.
const CLOCK_SLACK_SECS: u64 = 24 * 3600;

/// One remembered peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedPeer {
    /// Its id (pinned when dialed).
    pub id: PeerId,
    /// Where it was reached, newest first (1 to
    /// [`MAX_REMEMBERED_ADDRS`]).
    pub addrs: Vec<SocketAddr>,
    /// How it was first found ([`Source::Remembered`] only when the run
    /// that found it is forgotten).
    pub found_by: Source,
    /// Verified bytes it delivered first, over every run.
    pub bytes: u64,
    /// When it last delivered, in Unix seconds.
    pub seen_at: u64,
}

/// The peers banned in this run, by the figures of [`from_transfers`]'s
/// input: never remembered, and forgotten if an earlier run remembered
/// them.
pub fn banned_in(stats: &TransferStats) -> Vec<PeerId> {
    stats
        .peers
        .iter()
        .filter(|peer| peer.banned)
        .map(|peer| peer.id)
        .collect()
}

/// The peers of this run worth remembering at `now`: those that delivered
/// verified bytes, were not banned, and were reached at an address
/// worth dialing again.
pub fn from_transfers(stats: &TransferStats, now: u64) -> Vec<RememberedPeer> {
    stats
        .peers
        .iter()
        .filter(|peer| peer.download.bytes > 0 && !peer.banned)
        .filter_map(|peer| {
            let addr = peer.address?;
            (scope(addr) != Scope::Unusable).then(|| RememberedPeer {
                id: peer.id,
                addrs: vec![addr],
                found_by: peer.source.unwrap_or(Source::Incoming),
                bytes: peer.download.bytes,
                seen_at: now,
            })
        })
        .collect()
}

/// The list to keep: `before` (what earlier runs remembered, as read when
/// this run began) with `this_run` (this run's peers so far, from
/// [`from_transfers`]), without the peers `banned` in this run. A peer in
/// both keeps its first way of being found (unless that was only the
/// memory itself), adds the bytes, takes the newer time, and lists this
/// run's address first. Stale entries go; then the most recently seen are
/// kept (more bytes first among equals), at most [`MAX_REMEMBERED`].
pub fn merge(
    before: &[RememberedPeer],
    this_run: &[RememberedPeer],
    banned: &[PeerId],
    now: u64,
) -> Vec<RememberedPeer> {
    let mut list: Vec<RememberedPeer> = fresh(before, now);
    list.retain(|peer| !banned.contains(&peer.id));
    for peer in this_run.iter().filter(|peer| !banned.contains(&peer.id)) {
        match list.iter_mut().find(|old| old.id == peer.id) {
            Some(old) => {
                if old.found_by == Source::Remembered {
                    old.found_by = peer.found_by;
                }
                old.bytes = old.bytes.saturating_add(peer.bytes);
                old.seen_at = old.seen_at.max(peer.seen_at);
                let mut addrs = peer.addrs.clone();
                addrs.extend(old.addrs.iter().filter(|a| !peer.addrs.contains(a)));
                addrs.truncate(MAX_REMEMBERED_ADDRS);
                old.addrs = addrs;
            }
            None => list.push(peer.clone()),
        }
    }
    list.sort_by(|a, b| b.seen_at.cmp(&a.seen_at).then(b.bytes.cmp(&a.bytes)));
    list.truncate(MAX_REMEMBERED);
    list
}

/// The entries of `list` still worth dialing at `now`: seen within
/// [`REMEMBER_FOR_SECS`], not more than a day in the future, with at least
/// one address.
pub fn fresh(list: &[RememberedPeer], now: u64) -> Vec<RememberedPeer> {
    list.iter()
        .filter(|peer| {
            !peer.addrs.is_empty()
                && peer.seen_at <= now.saturating_add(CLOCK_SLACK_SECS)
                && now.saturating_sub(peer.seen_at) <= REMEMBER_FOR_SECS
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PeerFigures;
    use crate::session::PeerStats;
    use crate::testing::peer_id;

    const NOW: u64 = 1_800_000_000;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn peer(n: u8, addr: &str, bytes: u64, seen_at: u64) -> RememberedPeer {
        RememberedPeer {
            id: peer_id(n),
            addrs: vec![sa(addr)],
            found_by: Source::Offer,
            bytes,
            seen_at,
        }
    }

    fn transfer(n: u8, addr: Option<&str>, bytes: u64, banned: bool) -> PeerFigures {
        PeerFigures {
            address: addr.map(sa),
            source: Some(Source::Exchange),
            banned,
            download: PeerStats {
                chunks: bytes / 1024,
                bytes,
                bad_chunks: u64::from(banned),
                ..PeerStats::default()
            },
            ..PeerFigures::of(peer_id(n))
        }
    }

    #[test]
    fn only_peers_that_served_unbanned_at_a_usable_address_are_remembered() {
        let stats = TransferStats {
            chunks_resumed: 0,
            chunks_fetched: 4,
            chunks_refetched: 0,
            bytes_wasted: 0,
            peers: vec![
                transfer(1, Some("81.0.0.9:4433"), 4096, false),
                transfer(2, Some("82.0.0.7:4433"), 0, false),
                transfer(3, Some("82.0.0.8:4433"), 2048, true),
                transfer(4, None, 2048, false),
                transfer(5, Some("0.0.0.0:4433"), 2048, false),
            ],
            mirrors: Vec::new(),
            completed_at: None,
        };
        let kept = from_transfers(&stats, NOW);
        assert_eq!(
            kept,
            [RememberedPeer {
                id: peer_id(1),
                addrs: vec![sa("81.0.0.9:4433")],
                found_by: Source::Exchange,
                bytes: 4096,
                seen_at: NOW,
            }]
        );
    }

    #[test]
    fn a_run_merges_into_what_was_remembered_newest_first_and_bounded() {
        let before = vec![
            peer(1, "10.0.0.1:1", 100, NOW - 3600),
            RememberedPeer {
                found_by: Source::Dht,
                ..peer(2, "10.0.0.2:1", 50, NOW - 7200)
            },
            // Stale, and from a clock far ahead: gone.
            peer(3, "10.0.0.3:1", 10, NOW - REMEMBER_FOR_SECS - 1),
            peer(4, "10.0.0.4:1", 10, NOW + 2 * CLOCK_SLACK_SECS),
        ];
        let this_run = vec![
            RememberedPeer {
                found_by: Source::Remembered,
                ..peer(2, "10.0.0.22:1", 30, NOW)
            },
            peer(5, "10.0.0.5:1", 5, NOW),
        ];
        let merged = merge(&before, &this_run, &[], NOW);
        let ids: Vec<PeerId> = merged.iter().map(|p| p.id).collect();
        assert_eq!(ids, [peer_id(2), peer_id(5), peer_id(1)]);
        assert_eq!(
            merged[0],
            RememberedPeer {
                id: peer_id(2),
                addrs: vec![sa("10.0.0.22:1"), sa("10.0.0.2:1")],
                found_by: Source::Dht,
                bytes: 80,
                seen_at: NOW,
            }
        );
        // At most MAX_REMEMBERED, the most recent kept.
        let many: Vec<RememberedPeer> = (0..40u8)
            .map(|n| peer(n, "10.0.0.9:1", 1, NOW - u64::from(n)))
            .collect();
        let kept = merge(&many, &[], &[], NOW);
        // A peer banned in this run is forgotten, whatever it did before.
        let forgotten = merge(&before, &this_run, &[peer_id(1), peer_id(5)], NOW);
        let ids: Vec<PeerId> = forgotten.iter().map(|p| p.id).collect();
        assert_eq!(ids, [peer_id(2)]);
        assert_eq!(kept.len(), MAX_REMEMBERED);
        assert_eq!(kept.last().unwrap().id, peer_id(MAX_REMEMBERED as u8 - 1));
        // An address list stays bounded.
        let grown = (0..6u16).fold(vec![peer(1, "10.0.0.1:1", 1, NOW)], |list, port| {
            merge(
                &list,
                &[peer(1, &format!("10.0.0.1:{}", port + 2), 1, NOW)],
                &[],
                NOW,
            )
        });
        assert_eq!(grown[0].addrs.len(), MAX_REMEMBERED_ADDRS);
        assert_eq!(grown[0].addrs[0], sa("10.0.0.1:7"));
    }

    #[test]
    fn fresh_drops_old_future_and_addressless_entries() {
        let list = vec![
            peer(1, "10.0.0.1:1", 1, NOW - REMEMBER_FOR_SECS),
            peer(2, "10.0.0.2:1", 1, NOW - REMEMBER_FOR_SECS - 1),
            peer(3, "10.0.0.3:1", 1, NOW + CLOCK_SLACK_SECS),
            peer(4, "10.0.0.4:1", 1, NOW + CLOCK_SLACK_SECS + 1),
            RememberedPeer {
                addrs: Vec::new(),
                ..peer(5, "10.0.0.5:1", 1, NOW)
            },
        ];
        let ids: Vec<PeerId> = fresh(&list, NOW).iter().map(|p| p.id).collect();
        assert_eq!(ids, [peer_id(1), peer_id(3)]);
    }
}
