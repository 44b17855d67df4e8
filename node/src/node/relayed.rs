//! Peers through a relay (`docs/relay.md`): the node's side.
//!
//! A node registered with a relay (its driver keeps the link and says what
//! happens on it: [`NodeCore::handle_relay_registered`] and the other
//! `handle_relay_*` inputs) decides here:
//!
//! - **whom to ask for**: a peer its offer or ticket names "via" a relay
//!   it is registered with, at once (beside the peer's own addresses); a
//!   peer from peer exchange whose every address failed, of any relay it
//!   is registered with; never one it has a link to, and one peer at most
//!   every [`NodeConfig::relay_ask_again`];
//! - **the punch**: the relay's Connect (we asked: [`ConnectRole::Dial`])
//!   opens our router toward the peer's addresses at once and dials them
//!   `punch_delay` later, global IPv6 first (no NAT in the way); a Connect
//!   the peer asked for ([`ConnectRole::Open`]) only opens: the peer's
//!   dial gets through;
//! - **the fallback**: when no link to the peer is up
//!   [`NodeConfig::relay_fallback_after`] after the Connect, the node dials
//!   the channel's relay path: QUIC as ever, through the relay, the peer's
//!   key pinned;
//! - **the way back**: while a peer is linked through a relay only, the
//!   node asks for a new introduction every
//!   [`NodeConfig::relay_upgrade_every`], doubling up to
//!   [`NodeConfig::relay_upgrade_max`]; when a direct link comes up it
//!   takes the relayed link's place (`handle_link_up`).
//!
//! A relay path is an address in `240.0.0.0/8` ([`is_relay_path`]): never
//! passed on, never remembered, never a sign of who can reach us.
//!
//! [`NodeConfig::relay_ask_again`]: crate::config::NodeConfig::relay_ask_again
//! [`NodeConfig::relay_fallback_after`]: crate::config::NodeConfig::relay_fallback_after
//! [`NodeConfig::relay_upgrade_every`]: crate::config::NodeConfig::relay_upgrade_every
//! [`NodeConfig::relay_upgrade_max`]: crate::config::NodeConfig::relay_upgrade_max

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;
use minimodel_wire::relay::{ConnectRole, IntroduceRefusal, RelayLimits};

use super::{Action, Link, NodeCore};
use crate::address::{Scope, canonical, reachable_from, scope};
use crate::book::{EntryId, EntryState, Source};
use crate::report::NodeReport;

/// Whether `addr` is a relay path's address (`240.0.0.0/8`): what a node's
/// socket makes of a relay's channel.
pub fn is_relay_path(addr: SocketAddr) -> bool {
    matches!(canonical(addr.ip()), IpAddr::V4(v4) if v4.octets()[0] == 240)
}

/// A relay path the node knows.
#[derive(Debug, Clone)]
struct RelayedPath {
    relay: SocketAddr,
    peer: PeerId,
    /// When to dial it (we asked, and no link is up by then).
    fallback_at: Option<Instant>,
}

/// The node's relays and the peers behind them.
#[derive(Debug, Default)]
pub(super) struct Relays {
    /// Registered: relay -> its id and what it allows.
    registered: BTreeMap<SocketAddr, (PeerId, RelayLimits)>,
    /// Peers reached through relays (offers, tickets): id -> relays.
    via: BTreeMap<PeerId, Vec<SocketAddr>>,
    /// Introductions asked: peer -> (relay, when).
    asked: BTreeMap<PeerId, (SocketAddr, Instant)>,
    /// Relay paths: path address -> what it is.
    paths: BTreeMap<SocketAddr, RelayedPath>,
    /// Peers linked through a relay only: the next try for a direct
    /// link, the wait after it, and the relay.
    upgrades: BTreeMap<PeerId, (Instant, Duration, SocketAddr)>,
}

/// Most peers and paths kept (the oldest go first).
const MAX_RELAYED: usize = 1024;

impl Relays {
    /// The next time something is due.
    pub(super) fn deadline(&self, ask_again: Duration) -> Option<Instant> {
        let fallbacks = self.paths.values().filter_map(|path| path.fallback_at);
        let upgrades = self.upgrades.values().map(|(at, _, _)| *at);
        let asked = self.asked.values().map(|(_, at)| *at + ask_again);
        fallbacks.chain(upgrades).chain(asked).min()
    }

    /// The relay path `addr`'s relay, when it is one we know.
    pub(super) fn relay_of(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.paths.get(&addr).map(|path| path.relay)
    }
}

impl NodeCore {
    /// Peer `peer` may be reached through `relays` (its offer or ticket
    /// names them): asked for at once where this node is registered.
    pub fn add_peer_relays(&mut self, peer: PeerId, relays: &[SocketAddr], now: Instant) {
        if peer == self.local_id || relays.is_empty() {
            return;
        }
        let known = self.relays.via.entry(peer).or_default();
        for relay in relays {
            if !known.contains(relay) && known.len() < 4 {
                known.push(*relay);
            }
        }
        if self.relays.via.len() > MAX_RELAYED
            && let Some(oldest) = self.relays.via.keys().next().copied()
        {
            self.relays.via.remove(&oldest);
        }
        self.ask_relay(peer, now);
    }

    /// Where a peer at `remote` is on the network, to judge which
    /// addresses it may reach and name: its address, or for one linked
    /// through a relay, the relay's (it is somewhere the relay reaches).
    pub(super) fn seen_ip(&self, remote: SocketAddr) -> IpAddr {
        match self.relays.relay_of(remote) {
            Some(relay) => canonical(relay.ip()),
            None => canonical(remote.ip()),
        }
    }

    /// The relays this node is registered with now.
    pub fn registered_relays(&self) -> Vec<SocketAddr> {
        self.relays.registered.keys().copied().collect()
    }

    /// Registered with `relay` (whose key is `id`), which sees our
    /// connection come from `observed`.
    pub fn handle_relay_registered(
        &mut self,
        relay: SocketAddr,
        id: PeerId,
        observed: SocketAddr,
        limits: RelayLimits,
        now: Instant,
    ) {
        self.relays.registered.insert(relay, (id, limits));
        // A relay is one more peer that says where it sees us.
        self.observed.record(id, relay, observed);
        self.standing.evidence.public = self.observed.public();
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: None,
            step: format!("registered; it sees this node at {observed}"),
        });
        self.set_relays(self.registered_relays(), now);
        let waiting: Vec<PeerId> = self.relays.via.keys().copied().collect();
        for peer in waiting {
            self.ask_relay(peer, now);
        }
    }

    /// The link to `relay` is down (it is made again), or it refused us.
    pub fn handle_relay_lost(&mut self, relay: SocketAddr, reason: String, now: Instant) {
        self.relays.registered.remove(&relay);
        self.relays.asked.retain(|_, (asked, _)| *asked != relay);
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: None,
            step: format!("lost: {reason}"),
        });
        self.set_relays(self.registered_relays(), now);
    }

    /// Asks a relay we are registered with to introduce us to `peer`, when
    /// we have no link to it and did not ask lately.
    pub(super) fn ask_relay(&mut self, peer: PeerId, now: Instant) {
        if self.ended || self.stopping || self.relays.registered.is_empty() {
            return;
        }
        if self.link_to(&peer).is_some() {
            return;
        }
        let again = self.config.relay_ask_again;
        if self
            .relays
            .asked
            .get(&peer)
            .is_some_and(|(_, at)| now < *at + again)
        {
            return;
        }
        // One of its own relays first, else any of ours.
        let relay = (self.relays.via.get(&peer))
            .and_then(|via| {
                via.iter()
                    .find(|relay| self.relays.registered.contains_key(relay))
            })
            .or_else(|| self.relays.registered.keys().next())
            .copied();
        let Some(relay) = relay else {
            return;
        };
        self.relays.asked.insert(peer, (relay, now));
        self.actions
            .push_back(Action::RelayIntroduce { relay, peer });
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: Some(peer),
            step: "asked for an introduction".into(),
        });
    }

    /// Our link to `peer`, and whether it goes through a relay.
    fn link_to(&self, peer: &PeerId) -> Option<(crate::ids::LinkId, bool)> {
        self.peers()
            .find(|(_, p)| p.id == *peer && !p.leaving)
            .map(|(link, p)| (link, is_relay_path(p.remote)))
    }

    /// The relay introduces us to `peer`: where to find it, and its
    /// channel's relay path (`path`). See the module docs.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_relay_connect(
        &mut self,
        relay: SocketAddr,
        peer: PeerId,
        addrs: Vec<SocketAddr>,
        path: SocketAddr,
        role: ConnectRole,
        now: Instant,
    ) {
        if peer == self.local_id || self.book.is_banned(&peer) || self.ended || self.stopping {
            return;
        }
        // What a punch may aim at: an address inside one of our own
        // networks (the relay names LAN addresses only for a peer behind
        // our router), and any other that passes the peer-exchange filter
        // as seen from the relay (a private address outside our LAN can
        // be another site's public one, in a lab or a carrier's network).
        let usable: Vec<SocketAddr> = addrs
            .into_iter()
            .map(|addr| SocketAddr::new(canonical(addr.ip()), addr.port()))
            .filter(|addr| {
                !is_relay_path(*addr)
                    && scope(*addr) != Scope::Loopback
                    && (self.within_our_lan(*addr) || reachable_from(*addr, relay.ip()))
            })
            .take(minimodel_wire::relay::MAX_RELAY_CONNECT_ADDRS)
            .collect();
        if self.relays.paths.len() >= MAX_RELAYED
            && let Some(oldest) = self.relays.paths.keys().next().copied()
        {
            self.relays.paths.remove(&oldest);
        }
        self.relays.asked.remove(&peer);
        let linked = self.link_to(&peer);
        let fallback_at = (role == ConnectRole::Dial && linked.is_none())
            .then(|| now + self.config.relay_fallback_after);
        self.relays.paths.insert(
            path,
            RelayedPath {
                relay,
                peer,
                fallback_at,
            },
        );
        self.expect_punch(peer, now);
        if usable.is_empty() {
            return;
        }
        match (role, linked) {
            // The peer dials: our packets toward it open our router for
            // its.
            (ConnectRole::Open, _) => {
                self.actions.push_back(Action::Open { addrs: usable });
            }
            // Linked directly already: nothing to do.
            (ConnectRole::Dial, Some((_, false))) => {}
            // Linked through a relay: a punch, which takes that link's
            // place if it gets through.
            (ConnectRole::Dial, Some((_, true))) => {
                let Some(key) = self.book.find_id(&peer) else {
                    return;
                };
                self.actions.push_back(Action::Open {
                    addrs: usable.clone(),
                });
                self.punches.retain(|(_, entry, _)| *entry != key);
                self.punches
                    .push((now + self.config.punch_delay, key, Some(usable)));
            }
            (ConnectRole::Dial, None) => {
                let Some(key) = self.book.learn(Some(peer), &usable, Source::Offer, now) else {
                    return;
                };
                self.book.prefer(key, &usable);
                // Dialed by the punch queue at the Connect's own addresses,
                // whatever the entry is dialing now.
                self.actions.push_back(Action::Open {
                    addrs: usable.clone(),
                });
                self.punches.retain(|(_, entry, _)| *entry != key);
                self.punches
                    .push((now + self.config.punch_delay, key, Some(usable)));
            }
        }
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: Some(peer),
            step: match role {
                ConnectRole::Dial => "introduced: punching".into(),
                ConnectRole::Open => "introduced to a peer that asked: opening".into(),
            },
        });
    }

    /// The relay would not introduce us to `peer`.
    pub fn handle_relay_introduce_failed(
        &mut self,
        relay: SocketAddr,
        peer: PeerId,
        reason: IntroduceRefusal,
        _now: Instant,
    ) {
        // Asked again after `relay_ask_again`, as after no answer.
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: Some(peer),
            step: format!("no introduction: {reason}"),
        });
    }

    /// The relay ended the channel of path `path`: a link through it ends.
    pub fn handle_relay_channel_closed(
        &mut self,
        relay: SocketAddr,
        path: SocketAddr,
        now: Instant,
    ) {
        let Some(gone) = self.relays.paths.remove(&path) else {
            return;
        };
        let through: Vec<crate::ids::LinkId> = self
            .links
            .iter()
            .filter_map(|(link, state)| match state {
                Link::Up(peer) if peer.remote == path => Some(*link),
                Link::Dialing { addr, .. } | Link::Handshaking { remote: addr, .. }
                    if *addr == path =>
                {
                    Some(*link)
                }
                _ => None,
            })
            .collect();
        for link in through {
            self.actions.push_back(Action::Abort { link });
            self.handle_link_failed(
                link,
                crate::report::LinkEnd::Lost("the relay ended the channel".into()),
                now,
            );
        }
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: Some(gone.peer),
            step: "channel closed".into(),
        });
    }

    /// Fallbacks, upgrades and introductions asked that went unanswered.
    pub(super) fn relay_timeout(&mut self, now: Instant) {
        let again = self.config.relay_ask_again;
        self.relays.asked.retain(|_, (_, at)| now < *at + again);
        let due: Vec<SocketAddr> = self
            .relays
            .paths
            .iter()
            .filter(|(_, path)| path.fallback_at.is_some_and(|at| at <= now))
            .map(|(addr, _)| *addr)
            .collect();
        for path in due {
            let Some(state) = self.relays.paths.get_mut(&path) else {
                continue;
            };
            state.fallback_at = None;
            let (peer, relay) = (state.peer, state.relay);
            if self.link_to(&peer).is_some() {
                continue;
            }
            self.dial_relay_path(peer, relay, path, now);
        }
        let upgrades: Vec<PeerId> = self
            .relays
            .upgrades
            .iter()
            .filter(|(_, (at, _, _))| *at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in upgrades {
            match self.link_to(&peer) {
                Some((_, true)) => {
                    let max = self.config.relay_upgrade_max;
                    if let Some((at, wait, _)) = self.relays.upgrades.get_mut(&peer) {
                        *at = now + *wait;
                        *wait = (*wait * 2).min(max);
                    }
                    // A new introduction: a punch, through whichever relay.
                    self.relays.asked.remove(&peer);
                    self.ask_relay_for_upgrade(peer, now);
                }
                _ => {
                    self.relays.upgrades.remove(&peer);
                }
            }
        }
    }

    /// [`Self::ask_relay`] for a peer we are linked to through a relay.
    fn ask_relay_for_upgrade(&mut self, peer: PeerId, now: Instant) {
        let relay = self
            .links
            .values()
            .find_map(|state| match state {
                Link::Up(p) if p.id == peer && is_relay_path(p.remote) => {
                    self.relays.relay_of(p.remote)
                }
                _ => None,
            })
            .filter(|relay| self.relays.registered.contains_key(relay));
        let Some(relay) = relay else {
            return;
        };
        self.relays.asked.insert(peer, (relay, now));
        self.actions
            .push_back(Action::RelayIntroduce { relay, peer });
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: Some(peer),
            step: "asked for an introduction to leave the relay".into(),
        });
    }

    /// Dials `peer` through the relay path `path`.
    fn dial_relay_path(&mut self, peer: PeerId, relay: SocketAddr, path: SocketAddr, now: Instant) {
        let Some(key) = self.book.learn(Some(peer), &[], Source::Offer, now) else {
            return;
        };
        let deadline = now + self.config.handshake_timeout;
        self.dial_addr(key, path, deadline, false, now);
        self.reports.push_back(NodeReport::Relay {
            relay,
            peer: Some(peer),
            step: "the punch did not get through: dialing through the relay".into(),
        });
    }

    /// Dials `addr` for entry `key` outside the entry's own list of
    /// addresses (a relay path, or a punch while a relayed link is up).
    pub(super) fn dial_addr(
        &mut self,
        key: EntryId,
        addr: SocketAddr,
        deadline: Instant,
        exchange: bool,
        now: Instant,
    ) {
        let Some(entry) = self.book.get(key) else {
            return;
        };
        let peer = entry.id;
        let link = self.new_link();
        if let Some(entry) = self.book.get_mut(key) {
            match &mut entry.state {
                EntryState::Dialing { links, .. } => links.push((link, addr)),
                EntryState::Waiting { .. } => {
                    entry.state = EntryState::Dialing {
                        links: vec![(link, addr)],
                        next_addr: entry.addrs.len(),
                        next_at: deadline,
                    };
                }
                // Connected (a punch beside a relayed link): the entry stays
                // as it is; the new link takes its place when it comes up.
                _ => {}
            }
        }
        let have = self.advertised_have();
        self.links.insert(
            link,
            Link::Dialing {
                entry: key,
                addr,
                deadline,
                exchange,
                sent: have.clone(),
            },
        );
        let _ = now;
        self.actions.push_back(Action::Dial {
            link,
            addr,
            peer,
            have,
            deadline,
        });
    }

    /// A link to `peer` came up: through a relay, it starts the tries for a
    /// direct one; a direct one ends them.
    pub(super) fn relayed_link_up(&mut self, peer: PeerId, remote: SocketAddr, now: Instant) {
        if is_relay_path(remote) {
            let Some(relay) = self.relays.relay_of(remote) else {
                return;
            };
            let every = self.config.relay_upgrade_every;
            self.relays
                .upgrades
                .entry(peer)
                .or_insert((now + every, every, relay));
            self.reports.push_back(NodeReport::Relay {
                relay,
                peer: Some(peer),
                step: "linked through the relay".into(),
            });
        } else if let Some((_, _, relay)) = self.relays.upgrades.remove(&peer) {
            self.reports.push_back(NodeReport::Relay {
                relay,
                peer: Some(peer),
                step: format!("direct at {remote}: the relay carries this peer no more"),
            });
        }
    }
}
