//! Getting through NAT routers: introductions between peers that cannot
//! dial each other cold (Rendezvous and Connect, `docs/wire-protocol.md`
//! 7.11 to 7.13), and the LAN addresses of peers behind one router.
//!
//! A peer behind a NAT router has a mapping for its socket (the address
//! its connections come from) that takes packets only from addresses it
//! sent to first. Two such peers both connected to a third one (the
//! introducer) get through when both dial at once: each one's first
//! packets open its own router for the other's. So a dial that fails to a
//! peer learned from peer exchange asks the peer that named it for an
//! introduction, and the introducer sends each side a Connect naming the
//! other and the address it sees the other's connection come from.

use std::net::SocketAddr;
use std::time::Instant;

use minimodel_wire::{Message, PeerId, RendezvousFailedReason};

use super::{Action, NodeCore};
use crate::address::{canonical, reachable_from};
use crate::book::{EntryId, EntryState, Source};
use crate::ids::LinkId;
use crate::report::NodeReport;

impl NodeCore {
    /// Whether `addr`, a LAN address another peer passed on, lies in the
    /// network (the /24, or the /64) of one of our own LAN addresses.
    pub(super) fn within_our_lan(&self, addr: SocketAddr) -> bool {
        crate::address::within_lan(&self.lan, addr)
    }

    /// Asks the peer that told us of entry `key` to introduce us, when it
    /// is still connected and the entry still wants a connection.
    pub(super) fn ask_introduction(&mut self, key: EntryId, now: Instant) {
        let Some(entry) = self.book.get(key) else {
            return;
        };
        // A relay we are registered with may know it too: asked when no
        // peer of the swarm can introduce us (none named it, or ours is
        // linked to us through a relay itself), when our router gives
        // every destination another port (the swarm's introduction cannot
        // get through it), or once that introduction failed. A relay's
        // channel is a place of its own, and it has a few hundred.
        if let Some(target) = entry.id
            && !matches!(
                entry.state,
                EntryState::Connected(_) | EntryState::Banned | EntryState::Retired
            )
        {
            let introducer_relayed = entry
                .introducer
                .and_then(|id| self.link_of(&id))
                .is_none_or(|link| {
                    self.peer(link)
                        .is_some_and(|peer| super::is_relay_path(peer.remote))
                });
            let symmetric = self
                .observed
                .public()
                .is_some_and(|public| public.mapping == crate::observed::Mapping::PortPerPeer);
            if introducer_relayed || symmetric || entry.failures >= 2 {
                self.ask_relay(target, now);
            }
        }
        let Some(entry) = self.book.get(key) else {
            return;
        };
        let (Some(target), Some(introducer)) = (entry.id, entry.introducer) else {
            return;
        };
        if entry.source != Source::Exchange
            || matches!(
                entry.state,
                EntryState::Connected(_) | EntryState::Banned | EntryState::Retired
            )
        {
            return;
        }
        let Some(link) = self.link_of(&introducer) else {
            return;
        };
        self.send(link, Message::Rendezvous { peer: target }, now);
        self.introductions.asked += 1;
        self.reports.push_back(NodeReport::Introduction {
            peer: target,
            via: introducer,
            step: "asked".into(),
        });
    }

    /// The link to connected peer `id`, unless it is leaving.
    fn link_of(&self, id: &PeerId) -> Option<LinkId> {
        self.peers()
            .find(|(_, peer)| peer.id == *id && !peer.leaving)
            .map(|(link, _)| link)
    }

    /// A connected peer asks us to introduce it to `target`: a Connect to
    /// each side (each naming the other and where we see the other's
    /// connection come from, and its LAN addresses when both sides share
    /// a public address), or a RendezvousFailed to the asker.
    pub(super) fn handle_rendezvous(&mut self, from: LinkId, target: PeerId, now: Instant) {
        let Some(asker) = self.peer(from) else {
            return;
        };
        let asker_id = asker.id;
        let failed = |reason| Message::RendezvousFailed {
            peer: target,
            reason,
        };
        if target == asker_id || target == self.local_id {
            self.send(from, failed(RendezvousFailedReason::NoSelf), now);
            return;
        }
        let Some(to) = self.link_of(&target) else {
            self.send(from, failed(RendezvousFailedReason::NotConnected), now);
            return;
        };
        let within_budget = self
            .peer_mut(from)
            .is_some_and(|asker| asker.introductions.try_take(1, now));
        if !within_budget {
            self.send(from, failed(RendezvousFailedReason::RateLimited), now);
            return;
        }
        let (Some(asker), Some(other)) = (self.peer(from), self.peer(to)) else {
            return;
        };
        let (to_asker, to_other) = (addresses_for(other, asker), addresses_for(asker, other));
        if to_asker.is_empty() || to_other.is_empty() {
            self.send(from, failed(RendezvousFailedReason::NotAllowed), now);
            return;
        }
        self.send(
            from,
            Message::Connect {
                peer: target,
                addrs: to_asker,
            },
            now,
        );
        self.send(
            to,
            Message::Connect {
                peer: asker_id,
                addrs: to_other,
            },
            now,
        );
        self.introductions.introduced += 1;
        self.reports.push_back(NodeReport::Introduced {
            asker: asker_id,
            target,
        });
    }

    /// The peer on `from` will not introduce us to `peer`: said, for the
    /// log (the entry waits for its back-off as after any failed dial).
    pub(super) fn handle_rendezvous_failed(
        &mut self,
        from: LinkId,
        peer: PeerId,
        reason: RendezvousFailedReason,
    ) {
        if let Some(via) = self.peer(from).map(|introducer| introducer.id) {
            self.introductions.refused += 1;
            self.reports.push_back(NodeReport::Introduction {
                peer,
                via,
                step: reason.to_string(),
            });
        }
    }

    /// The introducer on `from` says `peer` is dialing us from `addrs`:
    /// dial it there now (whether or not we want more peers: our packets
    /// are what opens our router for its), even with every peer slot taken
    /// (the link may then take one more: the exchange dials' limit bounds
    /// how many). Ignored for ourselves, a banned or connected peer, for
    /// addresses outside the introducer's scope (an address inside our own
    /// LAN counts only for a neighbour behind our router), and beyond the
    /// introducer's budget.
    pub(super) fn handle_connect(
        &mut self,
        from: LinkId,
        peer: PeerId,
        addrs: Vec<SocketAddr>,
        now: Instant,
    ) {
        let Some(introducer) = self.peer(from) else {
            return;
        };
        let seen_from = introducer.remote.ip();
        // Where the introducer sees us: LAN addresses are for a peer behind
        // that same public address, and only a Connect that also names
        // one there says it is.
        let our_public = introducer.observed_us.map(|addr| canonical(addr.ip()));
        let introducer = introducer.id;
        if peer == self.local_id
            || peer == introducer
            || self.book.is_banned(&peer)
            || self.link_of(&peer).is_some()
            || self.ended
            || self.stopping
        {
            return;
        }
        // An address inside our own LAN is one only a neighbour behind our
        // router has; any other is filtered as peer exchange filters it (a
        // private address outside our LAN can be another site's public one,
        // as in a lab or a carrier's network).
        let neighbour = our_public.is_some_and(|ours| {
            addrs
                .iter()
                .any(|addr| !self.within_our_lan(*addr) && canonical(addr.ip()) == ours)
        });
        let usable: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|&addr| {
                if self.within_our_lan(addr) {
                    neighbour
                } else {
                    reachable_from(addr, seen_from)
                }
            })
            .take(minimodel_wire::MAX_CONNECT_ADDRS)
            .collect();
        if usable.is_empty() {
            return;
        }
        // A peer we know otherwise (the user named it, or it is being
        // dialed, retired or banned) keeps its entry as it is.
        if let Some(known) = self.book.find_id(&peer).and_then(|key| self.book.get(key))
            && (known.source != Source::Exchange
                || !matches!(known.state, EntryState::Waiting { .. }))
        {
            return;
        }
        let within_budget = self.peer_mut(from).is_some_and(|introducer| {
            introducer
                .exchange_budget
                .try_take(usable.len() as u64, now)
        });
        if !within_budget {
            return;
        }
        let Some(key) = self.book.learn(Some(peer), &usable, Source::Exchange, now) else {
            return;
        };
        self.book.prefer(key, &usable);
        let Some(entry) = self.book.get_mut(key) else {
            return;
        };
        entry.introducer.get_or_insert(introducer);
        // Dialed by the punch queue, not the dialing loop: a node that
        // wants no more peers dials on a Connect too.
        entry.state = EntryState::Waiting {
            next_attempt: now + self.config.punch_delay + self.config.handshake_timeout,
        };
        self.expect_punch(peer, now);
        self.open_then_dial(key, usable, now);
        self.introductions.dialing += 1;
        self.reports.push_back(NodeReport::Introduction {
            peer,
            via: introducer,
            step: "dialing".into(),
        });
    }
}

impl NodeCore {
    /// Opens our router toward `addrs` at once and dials entry `key`
    /// [`NodeConfig::punch_delay`](crate::config::NodeConfig::punch_delay)
    /// later, when both sides' routers have a mapping waiting for the
    /// other's packets.
    pub(super) fn open_then_dial(&mut self, key: EntryId, addrs: Vec<SocketAddr>, now: Instant) {
        self.actions.push_back(Action::Open { addrs });
        self.punches.retain(|(_, entry, _)| *entry != key);
        self.punches
            .push((now + self.config.punch_delay, key, None));
    }

    /// Dials the introductions whose time has come: an entry that waits
    /// at its own addresses, or, beside a link through a relay, the
    /// addresses the introduction named.
    pub(super) fn punch_due(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.punches)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.punches = later;
        if self.ended || self.stopping {
            return;
        }
        for (_, key, addrs) in due {
            match addrs {
                None => {
                    let waiting = self
                        .book
                        .get(key)
                        .is_some_and(|entry| matches!(entry.state, EntryState::Waiting { .. }));
                    if waiting {
                        self.dial_next_address(key, now);
                    }
                }
                Some(addrs) => {
                    // A punch through a relay's introduction: the other
                    // side may open late, and the relay carries the link
                    // meanwhile.
                    let deadline = now + self.config.handshake_timeout;
                    let connected = self.book.get(key).and_then(|entry| match entry.state {
                        EntryState::Connected(link) => Some(link),
                        _ => None,
                    });
                    let direct = connected.is_some_and(|link| {
                        self.peer(link)
                            .is_some_and(|peer| !super::is_relay_path(peer.remote))
                    });
                    if direct {
                        continue;
                    }
                    for addr in addrs {
                        self.dial_addr(key, addr, deadline, false, now);
                    }
                }
            }
        }
    }
}

/// Where `asker` is told to dial `target`: the address its connection to
/// us comes from (its router's mapping, which its dials reuse), and its
/// LAN addresses first when both share that public IP address; only
/// addresses within the asker's scope; at most 4.
fn addresses_for(target: &super::Peer, asker: &super::Peer) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    let asker_ip = canonical(asker.remote.ip());
    let target_ip = canonical(target.remote.ip());
    if asker_ip == target_ip {
        // One slot stays for the public address, which tells the asker
        // that the LAN ones are behind its own router.
        let room = minimodel_wire::MAX_CONNECT_ADDRS - 1;
        addrs.extend(target.lan.iter().copied().take(room));
    }
    let seen = SocketAddr::new(target_ip, target.remote.port());
    if reachable_from(seen, asker_ip) && !addrs.contains(&seen) {
        addrs.push(seen);
    }
    addrs.truncate(minimodel_wire::MAX_CONNECT_ADDRS);
    addrs
}
