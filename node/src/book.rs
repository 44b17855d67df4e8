//! The address book: every peer this node knows of, where it may be
//! reached, how it was learned, and when to dial it (again).
//!
//! # Invariants
//! - An entry is known by its peer id when it has one, else by its first
//!   address (a DHT answer carries no id); a handshake that proves the id
//!   of an address-only entry merges it into the id's entry.
//! - Each entry is in exactly one state: waiting (with the time of its next
//!   attempt), dialing (its links in progress and the next address to try),
//!   connected (one link), banned or retired.
//! - The book holds at most `max_known_peers` entries and 8 addresses per
//!   entry; when full, the oldest entry that was never connected and came
//!   from peer exchange or a DHT makes room. Offers are never dropped.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;

use crate::ids::LinkId;
use crate::rng::SplitMix64;

/// Addresses kept per peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// How a peer became known. Recorded in receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// An offer file or `--peer` (the user named it).
    Offer,
    /// It served an earlier run of this download
    /// ([`crate::remembered`]).
    Remembered,
    /// Another peer told us (peer exchange).
    Exchange,
    /// A DHT lookup.
    Dht,
    /// Announced on the local network (`--lan`: mDNS).
    Lan,
    /// It dialed us.
    Incoming,
}

impl Source {
    /// The word receipts and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Offer => "offer",
            Source::Remembered => "remembered",
            Source::Exchange => "peer-exchange",
            Source::Dht => "dht",
            Source::Lan => "lan",
            Source::Incoming => "incoming",
        }
    }

    /// How a person is told where the peer came from (failure messages):
    /// an offer, a ticket and `--peer` are all peers the user gave.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Offer => "given",
            Source::Remembered => "remembered",
            Source::Exchange => "peer exchange",
            Source::Dht => "DHT",
            Source::Lan => "local network",
            Source::Incoming => "it dialed us",
        }
    }

    /// The source [`Source::as_str`] names.
    pub fn parse(text: &str) -> Option<Source> {
        [
            Source::Offer,
            Source::Remembered,
            Source::Exchange,
            Source::Dht,
            Source::Lan,
            Source::Incoming,
        ]
        .into_iter()
        .find(|source| source.as_str() == text)
    }

    /// Whether its addresses were seen in use by someone we trust less
    /// than the user: such dials get a short deadline.
    pub fn is_unverified(self) -> bool {
        matches!(self, Source::Exchange | Source::Dht | Source::Lan)
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Not connected; dial again at `next_attempt`.
    Waiting {
        /// When.
        next_attempt: Instant,
    },
    /// Dials in progress; the next address is tried at `next_at` unless a
    /// handshake completes first.
    Dialing {
        /// The dials under way, with their addresses.
        links: Vec<(LinkId, SocketAddr)>,
        /// The next address to try.
        next_addr: usize,
        /// When.
        next_at: Instant,
    },
    /// Connected over this link.
    Connected(LinkId),
    /// Banned (its id is in the book's ban set): never dialed or admitted
    /// again.
    Banned,
    /// Not wanted any more (it has nothing we need, or we stopped).
    Retired,
}

/// One known peer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id, once known.
    pub id: Option<PeerId>,
    /// Where it may be reached, in the order to try them.
    pub addrs: Vec<SocketAddr>,
    /// How it became known.
    pub source: Source,
    /// Where it stands.
    pub state: EntryState,
    /// Failed attempts in a row (reset by a good session).
    pub failures: u32,
    /// Why the last attempt or session ended.
    pub last_problem: Option<crate::ends::Problem>,
    /// Whether it was ever connected.
    pub ever_connected: bool,
    /// When it was added.
    pub added: Instant,
    /// The peer that told us of it (peer exchange), which can introduce
    /// us when a dial does not get through (a Rendezvous).
    pub introducer: Option<PeerId>,
}

impl Entry {
    /// When its next address is due to be dialed: its back-off's end while
    /// it waits, the stagger's end while other addresses are dialed; never
    /// once every address was tried (or when it has none: an entry whose
    /// only address proved to be another peer's waits to be told a new one).
    pub fn next_dial(&self) -> Option<Instant> {
        match &self.state {
            EntryState::Waiting { next_attempt } if !self.addrs.is_empty() => Some(*next_attempt),
            EntryState::Dialing {
                next_at, next_addr, ..
            } if *next_addr < self.addrs.len() => Some(*next_at),
            _ => None,
        }
    }
}

/// The earliest [`Entry::next_dial`] of every entry and of those the user
/// or a handshake vouched for (not learned unverified from peers).
#[derive(Debug, Clone, Copy)]
struct NextDials {
    any: Option<Instant>,
    verified: Option<Instant>,
}

/// A handle on an entry (stable while it exists).
pub type EntryId = u64;

/// Every known peer. See the module docs.
#[derive(Debug, Clone)]
pub struct AddressBook {
    entries: BTreeMap<EntryId, Entry>,
    by_id: BTreeMap<PeerId, EntryId>,
    next: EntryId,
    max: usize,
    /// The node's one record of bans: peers that sent a chunk failing its
    /// proof, refused for the rest of the node's life (kept when their
    /// entry is dropped).
    banned: BTreeSet<PeerId>,
    /// The next dials, kept until anything in the book changes: a node
    /// asks for them after every event and most events change nothing
    /// here, while a book holds up to a thousand entries. Every `&mut self`
    /// method clears it (through [`AddressBook::changed`]).
    next_dials: Cell<Option<NextDials>>,
}

impl AddressBook {
    /// An empty book for at most `max` peers.
    pub fn new(max: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            by_id: BTreeMap::new(),
            next: 0,
            max: max.max(1),
            banned: BTreeSet::new(),
            next_dials: Cell::new(None),
        }
    }

    /// Forgets the kept next dials; every method that can change an entry
    /// calls it first.
    fn changed(&mut self) {
        self.next_dials.set(None);
    }

    /// The earliest time an entry is due to be dialed, among every entry
    /// or (`unverified: false`) only those not learned unverified from
    /// peers.
    pub fn next_dial(&self, unverified: bool) -> Option<Instant> {
        let dials = self.next_dials.get().unwrap_or_else(|| {
            let mut dials = NextDials {
                any: None,
                verified: None,
            };
            for entry in self.entries.values() {
                let Some(at) = entry.next_dial() else {
                    continue;
                };
                dials.any = Some(dials.any.map_or(at, |any| any.min(at)));
                if !entry.source.is_unverified() {
                    dials.verified = Some(dials.verified.map_or(at, |v| v.min(at)));
                }
            }
            self.next_dials.set(Some(dials));
            dials
        });
        if unverified {
            dials.any
        } else {
            dials.verified
        }
    }

    /// Bans `id` for the rest of the node's life: its entry is never
    /// dialed again, and nothing learned of it is kept.
    pub fn ban(&mut self, id: PeerId) {
        self.changed();
        self.banned.insert(id);
        if let Some(entry) = self.find_id(&id).and_then(|key| self.entries.get_mut(&key)) {
            entry.state = EntryState::Banned;
        }
    }

    /// Whether `id` is banned.
    pub fn is_banned(&self, id: &PeerId) -> bool {
        self.banned.contains(id)
    }

    /// How many peers are banned.
    pub fn banned_count(&self) -> usize {
        self.banned.len()
    }

    /// Addresses held, over every entry but a banned peer's.
    pub fn address_count(&self) -> usize {
        self.entries
            .values()
            .filter(|entry| entry.id.is_none_or(|id| !self.banned.contains(&id)))
            .map(|entry| entry.addrs.len())
            .sum()
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &Entry)> {
        self.entries.iter().map(|(key, entry)| (*key, entry))
    }

    /// An entry.
    pub fn get(&self, entry: EntryId) -> Option<&Entry> {
        self.entries.get(&entry)
    }

    /// An entry, to change it.
    pub fn get_mut(&mut self, entry: EntryId) -> Option<&mut Entry> {
        self.changed();
        self.entries.get_mut(&entry)
    }

    /// [`Self::get_mut`] for an entry that may be absent.
    pub fn get_mut_opt(&mut self, entry: Option<EntryId>) -> Option<&mut Entry> {
        self.changed();
        entry.and_then(|entry| self.entries.get_mut(&entry))
    }

    /// The entry of `id`.
    pub fn find_id(&self, id: &PeerId) -> Option<EntryId> {
        self.by_id.get(id).copied()
    }

    /// The entry that lists `addr` (and has no id, or `id`).
    pub fn find_addr(&self, addr: SocketAddr) -> Option<EntryId> {
        self.entries
            .iter()
            .find(|(_, entry)| entry.addrs.contains(&addr))
            .map(|(key, _)| *key)
    }

    /// The entry a link belongs to (dialing or connected).
    pub fn find_link(&self, link: LinkId) -> Option<EntryId> {
        self.entries
            .iter()
            .find(|(_, entry)| match &entry.state {
                EntryState::Connected(l) => *l == link,
                EntryState::Dialing { links, .. } => links.iter().any(|(l, _)| *l == link),
                _ => false,
            })
            .map(|(key, _)| *key)
    }

    /// Learns `addrs` for `id` (or for an address-only peer): adds an
    /// entry or merges into one. Returns the entry, or `None` when the book
    /// is full of entries that may not be dropped, or `id` is banned.
    pub fn learn(
        &mut self,
        id: Option<PeerId>,
        addrs: &[SocketAddr],
        source: Source,
        now: Instant,
    ) -> Option<EntryId> {
        self.changed();
        if id.is_some_and(|id| self.banned.contains(&id)) {
            return None;
        }
        let existing = match id {
            Some(id) => self.find_id(&id),
            None => addrs.iter().find_map(|addr| self.find_addr(*addr)),
        };
        if let Some(key) = existing {
            let entry = self.entries.get_mut(&key)?;
            for addr in addrs {
                if !entry.addrs.contains(addr) && entry.addrs.len() < MAX_ADDRS_PER_PEER {
                    entry.addrs.push(*addr);
                }
            }
            // The user's word outranks what peers said.
            entry.source = entry.source.min(source);
            return Some(key);
        }
        if self.entries.len() >= self.max && !self.make_room() {
            return None;
        }
        let key = self.next;
        self.next += 1;
        self.entries.insert(
            key,
            Entry {
                id,
                addrs: addrs.iter().copied().take(MAX_ADDRS_PER_PEER).collect(),
                source,
                state: EntryState::Waiting { next_attempt: now },
                failures: 0,
                last_problem: None,
                ever_connected: false,
                added: now,
                introducer: None,
            },
        );
        if let Some(id) = id {
            self.by_id.insert(id, key);
        }
        Some(key)
    }

    /// Drops the oldest entry learned from peers (or a DHT) that was never
    /// connected and is not being dialed. Whether one was dropped.
    fn make_room(&mut self) -> bool {
        self.drop_oldest_unreached(|entry| entry.source != Source::Offer)
    }

    /// Drops the oldest entry among those `among` picks that was never
    /// connected, is not being dialed and is not banned. Whether one was
    /// dropped.
    pub fn drop_oldest_unreached(&mut self, among: impl Fn(&Entry) -> bool) -> bool {
        self.changed();
        let victim = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                among(entry)
                    && !entry.ever_connected
                    && !matches!(
                        entry.state,
                        EntryState::Dialing { .. } | EntryState::Connected(_) | EntryState::Banned
                    )
            })
            .min_by_key(|(key, entry)| (entry.added, **key))
            .map(|(key, _)| *key);
        match victim {
            Some(key) => {
                self.remove(key);
                true
            }
            None => false,
        }
    }

    /// Puts `addrs` first in the entry's addresses (added if new, at most
    /// [`MAX_ADDRS_PER_PEER`] in all): where it is known to be right now.
    pub fn prefer(&mut self, key: EntryId, addrs: &[SocketAddr]) {
        self.changed();
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let mut ordered: Vec<SocketAddr> = addrs.to_vec();
        ordered.extend(entry.addrs.iter().filter(|addr| !addrs.contains(addr)));
        ordered.truncate(MAX_ADDRS_PER_PEER);
        entry.addrs = ordered;
    }

    /// Forgets an entry.
    pub fn remove(&mut self, key: EntryId) {
        self.changed();
        if let Some(entry) = self.entries.remove(&key)
            && let Some(id) = entry.id
        {
            self.by_id.remove(&id);
        }
    }

    /// A handshake proved that `key` is `id`: the entry takes the id, and
    /// if `id` has an entry of its own, the two become one (the other's
    /// addresses join this one).
    pub fn identify(&mut self, key: EntryId, id: PeerId) -> EntryId {
        self.changed();
        if let Some(other) = self.find_id(&id) {
            if other == key {
                return key;
            }
            let addrs = self
                .entries
                .get(&key)
                .map(|entry| entry.addrs.clone())
                .unwrap_or_default();
            let state = self.entries.get(&key).map(|entry| entry.state.clone());
            self.remove(key);
            if let Some(entry) = self.entries.get_mut(&other) {
                for addr in addrs {
                    if !entry.addrs.contains(&addr) && entry.addrs.len() < MAX_ADDRS_PER_PEER {
                        entry.addrs.push(addr);
                    }
                }
                if let Some(state @ (EntryState::Connected(_) | EntryState::Dialing { .. })) = state
                {
                    entry.state = state;
                }
            }
            return other;
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.id = Some(id);
            self.by_id.insert(id, key);
        }
        key
    }

    /// The wait before the next attempt after `failures` failures in a
    /// row: `initial` doubling up to `max`, with a jitter of up to a fifth
    /// either way so that peers that failed together do not come back
    /// together.
    pub fn backoff(
        failures: u32,
        initial: Duration,
        max: Duration,
        rng: &mut SplitMix64,
    ) -> Duration {
        let base = initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(max);
        let fifth = base.as_millis() as u64 / 5;
        let jitter = rng.below(2 * fifth + 1);
        (base + Duration::from_millis(jitter)).saturating_sub(Duration::from_millis(fifth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`AddressBook::next_dial`] would say from a fresh walk.
    fn walked(book: &AddressBook, unverified: bool) -> Option<Instant> {
        book.iter()
            .filter(|(_, entry)| unverified || !entry.source.is_unverified())
            .filter_map(|(_, entry)| entry.next_dial())
            .min()
    }

    proptest::proptest! {
        /// The kept next dials are the walked ones after any sequence of
        /// changes, each through a different way in.
        #[test]
        fn the_kept_next_dial_is_the_walked_one(
            ops in proptest::collection::vec((0u8..7, 0u8..6, 0u64..50), 1..60)
        ) {
            let t0 = Instant::now();
            let at = |ms: u64| t0 + Duration::from_millis(ms * 100);
            let mut book = AddressBook::new(4);
            for (op, n, ms) in ops {
                let key = book.iter().map(|(key, _)| key).nth(usize::from(n) % book.len().max(1));
                match (op, key) {
                    (0, _) => {
                        let source = if n % 2 == 0 { Source::Exchange } else { Source::Offer };
                        let id = (n % 3 != 0).then_some(PeerId([n; 32]));
                        book.learn(id, &[addr(n)], source, at(ms));
                    }
                    (1, Some(key)) => {
                        book.get_mut(key).unwrap().state = EntryState::Waiting { next_attempt: at(ms) };
                    }
                    (2, Some(key)) => {
                        book.get_mut(key).unwrap().state = EntryState::Dialing {
                            links: vec![(LinkId(u64::from(n)), addr(n))],
                            next_addr: usize::from(n % 3),
                            next_at: at(ms),
                        };
                    }
                    (3, Some(key)) => book.remove(key),
                    (4, _) => book.ban(PeerId([n; 32])),
                    (5, Some(key)) => book.prefer(key, &[addr(n + 10), addr(n + 11)]),
                    (6, Some(key)) => {
                        book.identify(key, PeerId([n; 32]));
                    }
                    _ => {}
                }
                for unverified in [true, false] {
                    proptest::prop_assert_eq!(book.next_dial(unverified), walked(&book, unverified));
                }
            }
        }
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 4433))
    }

    #[test]
    fn a_banned_id_is_never_learned_again_even_once_its_entry_is_gone() {
        let t0 = Instant::now();
        let mut book = AddressBook::new(2);
        let liar = PeerId([9; 32]);
        let key = book
            .learn(Some(liar), &[addr(1)], Source::Exchange, t0)
            .unwrap();
        book.ban(liar);
        assert!(book.is_banned(&liar));
        assert_eq!(book.get(key).unwrap().state, EntryState::Banned);
        assert_eq!(book.learn(Some(liar), &[addr(2)], Source::Offer, t0), None);
        assert_eq!(book.get(key).unwrap().addrs, [addr(1)], "nothing learned");
        // A ban before the peer was ever known holds too.
        let other = PeerId([8; 32]);
        book.ban(other);
        assert_eq!(book.learn(Some(other), &[addr(3)], Source::Lan, t0), None);
        assert_eq!(book.banned_count(), 2);
    }

    #[test]
    fn a_peer_id_learned_twice_is_one_entry_with_both_addresses() {
        let t0 = Instant::now();
        let mut book = AddressBook::new(8);
        let id = PeerId([1; 32]);
        let a = book
            .learn(Some(id), &[addr(1)], Source::Exchange, t0)
            .unwrap();
        let b = book
            .learn(Some(id), &[addr(2), addr(1)], Source::Offer, t0)
            .unwrap();
        assert_eq!(a, b);
        let entry = book.get(a).unwrap();
        assert_eq!(entry.addrs, [addr(1), addr(2)]);
        assert_eq!(entry.source, Source::Offer, "the user's word outranks");
    }

    #[test]
    fn an_address_only_entry_merges_into_the_id_its_handshake_proves() {
        let t0 = Instant::now();
        let mut book = AddressBook::new(8);
        let id = PeerId([1; 32]);
        let known = book.learn(Some(id), &[addr(1)], Source::Offer, t0).unwrap();
        let anonymous = book.learn(None, &[addr(2)], Source::Dht, t0).unwrap();
        assert_ne!(known, anonymous);
        assert_eq!(book.identify(anonymous, id), known);
        assert_eq!(book.len(), 1);
        assert_eq!(book.get(known).unwrap().addrs, [addr(1), addr(2)]);
        // A new id simply names the entry.
        let other = book.learn(None, &[addr(3)], Source::Dht, t0).unwrap();
        assert_eq!(book.identify(other, PeerId([2; 32])), other);
        assert_eq!(book.find_id(&PeerId([2; 32])), Some(other));
    }

    #[test]
    fn a_full_book_drops_the_oldest_entry_learned_from_peers() {
        let t0 = Instant::now();
        let mut book = AddressBook::new(3);
        let offer = book
            .learn(Some(PeerId([9; 32])), &[addr(9)], Source::Offer, t0)
            .unwrap();
        let old = book.learn(None, &[addr(1)], Source::Exchange, t0).unwrap();
        let later = t0 + Duration::from_secs(1);
        book.learn(None, &[addr(2)], Source::Exchange, later)
            .unwrap();
        book.learn(None, &[addr(3)], Source::Dht, later).unwrap();
        assert_eq!(book.len(), 3);
        assert!(book.get(old).is_none(), "the oldest one made room");
        assert!(book.get(offer).is_some(), "offers stay");
        // Full of offers: nothing can be dropped.
        let mut offers = AddressBook::new(1);
        offers.learn(Some(PeerId([1; 32])), &[addr(1)], Source::Offer, t0);
        assert_eq!(offers.learn(None, &[addr(2)], Source::Exchange, t0), None);
    }

    #[test]
    fn addresses_per_peer_are_bounded() {
        let t0 = Instant::now();
        let mut book = AddressBook::new(8);
        let many: Vec<SocketAddr> = (1..=50).map(addr).collect();
        let key = book
            .learn(Some(PeerId([1; 32])), &many, Source::Exchange, t0)
            .unwrap();
        assert_eq!(book.get(key).unwrap().addrs.len(), MAX_ADDRS_PER_PEER);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let mut rng = SplitMix64(7);
        let initial = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        for (failures, base) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (5, 16.0),
            (6, 30.0),
            (40, 30.0),
        ] {
            for _ in 0..50 {
                let wait = AddressBook::backoff(failures, initial, max, &mut rng).as_secs_f64();
                assert!(
                    wait >= base * 0.8 - 0.001 && wait <= base * 1.2 + 0.001,
                    "{failures} failures: {wait} s"
                );
            }
        }
    }
}
