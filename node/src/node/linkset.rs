//! The node's links by id, with what the node reads of all of them after
//! every event (how many are up and dialing, the earliest of their
//! deadlines) kept until they change.
//!
//! A node asks for its next deadline after every event, and most events
//! (a Have, a piece) change no link's state. The counts are kept exactly;
//! the deadline is kept as a lower bound: a link's deadline that moves
//! later (a message sent puts its keep-alive off) leaves the kept one
//! early, which costs one wake-up that finds nothing due, at the end of
//! which [`super::NodeCore::handle_timeout`] forgets it (at its end: a
//! step may keep it, and a later step put a deadline off). What can move a
//! deadline earlier (a link added or changed, an upload watch that
//! starts counting) forgets it: every `&mut` accessor but
//! [`Links::peer_mut`] does, and a caller that starts an upload watch
//! through it calls [`Links::changed`]. In tests every 32nd answer is
//! checked against a fresh walk.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Instant;

use super::{Link, Peer};
use crate::config::NodeConfig;
use crate::ids::LinkId;

/// Links up and dialing (those dialing an address learned from peers
/// among them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LinkCounts {
    pub up: usize,
    pub dialing: usize,
    pub exchange_dialing: usize,
}

/// What [`Links::summary`] keeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Summary {
    pub counts: LinkCounts,
    /// The earliest deadline of any link (a lower bound, see the module
    /// docs).
    pub deadline: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Links {
    map: BTreeMap<LinkId, Link>,
    kept: Cell<Option<Summary>>,
    #[cfg(test)]
    asked: Cell<u64>,
}

impl Links {
    /// Forgets the kept summary.
    pub fn changed(&self) {
        self.kept.set(None);
    }

    /// The counts and the earliest deadline, kept until the links change.
    pub fn summary(&self, config: &NodeConfig) -> Summary {
        let Some(kept) = self.kept.get() else {
            let fresh = self.walk(config);
            self.kept.set(Some(fresh));
            return fresh;
        };
        #[cfg(test)]
        {
            self.asked.set(self.asked.get() + 1);
            if self.asked.get().is_multiple_of(32) {
                let fresh = self.walk(config);
                assert_eq!(kept.counts, fresh.counts, "kept link counts went stale");
                assert!(
                    kept.deadline
                        .is_none_or(|kept| fresh.deadline.is_some_and(|f| kept <= f))
                        && (fresh.deadline.is_none() || kept.deadline.is_some()),
                    "a link's deadline moved earlier than the kept one: {:?} > {:?}",
                    kept.deadline,
                    fresh.deadline
                );
            }
        }
        kept
    }

    fn walk(&self, config: &NodeConfig) -> Summary {
        let mut counts = LinkCounts::default();
        let mut deadline: Option<Instant> = None;
        for link in self.map.values() {
            let at = match link {
                Link::Dialing {
                    deadline, exchange, ..
                } => {
                    counts.dialing += 1;
                    counts.exchange_dialing += usize::from(*exchange);
                    *deadline
                }
                Link::Handshaking { deadline, .. } | Link::Closing { deadline, .. } => *deadline,
                Link::Up(peer) => {
                    counts.up += 1;
                    let keep_alive = peer.last_sent + config.keep_alive_after;
                    let stall = peer
                        .upload_watch
                        .as_ref()
                        .and_then(|watch| watch.deadline(config));
                    stall.map_or(keep_alive, |stall| stall.min(keep_alive))
                }
            };
            deadline = Some(deadline.map_or(at, |min| min.min(at)));
        }
        Summary { counts, deadline }
    }

    pub fn get(&self, link: &LinkId) -> Option<&Link> {
        self.map.get(link)
    }

    pub fn get_mut(&mut self, link: &LinkId) -> Option<&mut Link> {
        self.changed();
        self.map.get_mut(link)
    }

    /// A connected peer, to change it: its deadlines only move later this
    /// way (see the module docs), so the kept summary stays.
    pub fn peer_mut(&mut self, link: LinkId) -> Option<&mut Peer> {
        match self.map.get_mut(&link) {
            Some(Link::Up(peer)) => Some(peer),
            _ => None,
        }
    }

    pub fn insert(&mut self, id: LinkId, link: Link) -> Option<Link> {
        self.changed();
        self.map.insert(id, link)
    }

    pub fn remove(&mut self, link: &LinkId) -> Option<Link> {
        self.changed();
        self.map.remove(link)
    }

    pub fn retain(&mut self, keep: impl FnMut(&LinkId, &mut Link) -> bool) {
        self.changed();
        self.map.retain(keep);
    }

    pub fn values(&self) -> impl Iterator<Item = &Link> {
        self.map.values()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Link> {
        self.changed();
        self.map.values_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&LinkId, &Link)> {
        self.map.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &LinkId> {
        self.map.keys()
    }
}
