//! The door of one endpoint that serves many swarms on one port
//! (`docs/wire-protocol.md` section 8.5, `docs/swarm.md` "One endpoint,
//! many swarms").
//!
//! Before a connection's first message arrives nobody knows which swarm
//! it is for, so the first-packet admission of every swarm's
//! [`NodeCore`](crate::NodeCore) (handshakes in progress, over all sources
//! and per prefix, and the QUIC Retry above a threshold) is taken here,
//! once for the whole endpoint, with the same rule and the same numbers.
//! When the first message arrives the gate routes it: a Hello to the swarm
//! its model id and Merkle root name, a manifest query to the swarm whose
//! manifest has the asked SHA-256, or a refusal (UnknownSwarm,
//! UnknownManifest). From then on the handshake is that swarm's: its core
//! admits the Hello as it admits any other (`handle_incoming`, then
//! `handle_hello`).
//!
//! The gate also shares the endpoint's upload slots
//! ([`NodeConfig::upload_slots`]) among its swarms: every swarm may always
//! run one upload, and the rest go to the swarms that want more, evenly
//! (max-min fair, ties by swarm name), each node reporting what it wants
//! and what it runs ([`Gate::set_upload_demand`]) and starting uploads
//! only while it runs fewer than it is granted (`NodeCore::set_share`). A
//! grant that shrinks lets the uploads under way finish, so another
//! swarm's grant grows only as they end. So twenty shares hold at most
//! `max(upload_slots, swarms uploading)` chunks in flight (or what runs
//! already, at least one each, when that is more), not twenty times the
//! slots of one. An upload cap for the whole endpoint
//! ([`Gate::set_upload_cap`]) is shared the same way: the swarms that
//! upload divide it in proportion to their slots, and one that does not
//! yet gets what it would as the next one to start. A download cap for
//! the whole endpoint ([`Gate::set_download_cap`]) goes evenly to the
//! swarms that would download now ([`Gate::set_download_demand`]).
//!
//! The endpoint's incoming links (`ENDPOINT_PEER_BUDGETS` node budgets)
//! are shared too: every serving swarm may hold its fair part of them
//! however busy the others are, and takes more only from what no swarm's
//! fair part keeps ([`Gate::route_hello`] says whether there is room).
//!
//! Sans-IO like the rest of the crate: `T` is whatever the program uses to
//! reach a swarm (a channel to its node), kept and handed back unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use minimodel_wire::{Hello, HelloRejectReason};

use crate::address::Prefix;
use crate::config::NodeConfig;
use crate::ends::Rejection;
use crate::report::Refusal;

/// An endpoint of many swarms holds at most this many nodes' peer budgets
/// (`max_peers`, 32) of incoming links, over every swarm: 256 by default,
/// of which one prefix at most this many times a node's
/// `max_links_per_prefix` (16): 128. Each swarm still holds at most its
/// own budget and its own 16 per prefix, and may always hold its fair
/// part of the endpoint's, `min(max_peers, 256 / swarms)`, however busy
/// the others are ([`Gate::route_hello`]).
pub const ENDPOINT_PEER_BUDGETS: usize = 8;

/// A swarm as a Hello names it: model id and Merkle root.
pub type SwarmName = (String, [u8; 32]);

/// A handshake the gate let in, until it ends (answered, refused or
/// failed: [`Gate::handle_ended`]) or its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// What to do with an incoming connection before its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Door {
    /// Run the handshake within `deadline`: route its first message
    /// ([`Gate::route_hello`], [`Gate::route_manifest`]) and report its
    /// end, whatever it was ([`Gate::handle_ended`]).
    Accept {
        /// The handshake's ticket.
        ticket: Ticket,
        /// Its deadline (TLS and the first message).
        deadline: Instant,
    },
    /// Answer with a QUIC Retry: the source must prove its address first.
    Retry,
    /// Refuse it at once.
    Refuse {
        /// Why.
        reason: Refusal,
    },
}

/// A Hello or a manifest query routed to its swarm's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<T> {
    /// The swarm's route.
    pub route: T,
    /// Whether the endpoint has room for one more of this swarm's links.
    /// Without it the node refuses the Hello as a full node does (naming
    /// other peers of the swarm), whatever room it has of its own.
    pub room: bool,
    /// No room although this swarm holds less than its fair part: the
    /// swarm that holds the most beyond its own, and that part, which it
    /// should shed down to by closing idle incoming peers
    /// (`NodeCore::shed_idle_incoming`) so that a later Hello finds room.
    pub shed: Option<(T, usize)>,
}

/// A handshake under way: its source, its deadline, and once its Hello
/// was routed, the swarm whose link it may become and whether it was
/// routed with room (only then does it hold a place of that swarm's).
struct Handshake {
    prefix: Prefix,
    deadline: Instant,
    swarm: Option<SwarmName>,
    room: bool,
}

/// Why a swarm cannot be served through the gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Another node serves this swarm through the gate already.
    #[error("the swarm {0} is served on this endpoint already")]
    Taken(String),
}

struct Registered<T> {
    route: T,
    manifest: Option<[u8; 32]>,
    /// Its node takes peers.
    serving: bool,
    /// Uploads it would run now, and those under way.
    demand: UploadDemand,
    /// Uploads it may run.
    grant: usize,
    /// Its part of the endpoint's upload cap.
    rate: Option<u64>,
    /// Its own upload cap: a part above it would go unused.
    own_cap: Option<u64>,
    /// It would download now (`NodeCore::download_demand`).
    downloading: bool,
    /// Its part of the endpoint's download cap.
    down_rate: Option<u64>,
    /// Its own download cap.
    own_down_cap: Option<u64>,
}

/// What one swarm's uploads want, as its node reports it
/// (`NodeCore::upload_demand`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadDemand {
    /// Uploads it would run now: those under way and those waiting, at
    /// most its own slots.
    pub wanted: usize,
    /// Uploads under way. A node whose grant shrinks lets these finish,
    /// so the slots they hold go to another swarm only as they end.
    pub running: usize,
}

/// A swarm's own caps, bytes per second (`None`: none), as its node
/// reports them ([`crate::node::GateNews::caps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnCaps {
    /// Its `max_upload`.
    pub upload: Option<u64>,
    /// Its `max_download`.
    pub download: Option<u64>,
}

/// What one swarm may upload: uploads at once and, under an endpoint
/// cap, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Uploads at once.
    pub slots: usize,
    /// Its part of the endpoint's upload cap (`None`: no cap).
    pub rate: Option<u64>,
    /// Its part of the endpoint's download cap (`None`: no cap).
    pub download: Option<u64>,
}

/// Shares that changed: each swarm's route and its new share, with the
/// generation they were decided in (a node keeps the newest it hears).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants<T> {
    /// The generation of this decision (grows with every decision).
    pub generation: u64,
    /// The swarm that reported, its share now.
    pub own: Share,
    /// Other swarms whose share changed: route and share.
    pub changed: Vec<(T, Share)>,
}

/// The door of an endpoint shared by many swarms.
pub struct Gate<T> {
    config: NodeConfig,
    open: bool,
    /// Handshakes under way.
    handshakes: BTreeMap<Ticket, Handshake>,
    /// Incoming links the handshakes became, over every swarm: their
    /// prefix and swarm.
    links: BTreeMap<Ticket, (Prefix, Option<SwarmName>)>,
    next: u64,
    swarms: BTreeMap<SwarmName, Registered<T>>,
    generation: u64,
    /// The endpoint's upload cap, bytes per second.
    upload_cap: Option<u64>,
    /// The endpoint's download cap, bytes per second.
    download_cap: Option<u64>,
}

impl<T: Clone> Gate<T> {
    /// A gate with no swarm yet, admitting with `config`'s first-packet
    /// limits (`max_handshakes`, `max_handshakes_per_prefix`,
    /// `retry_above`, `handshake_timeout`).
    pub fn new(config: NodeConfig) -> Self {
        Self {
            config,
            open: true,
            handshakes: BTreeMap::new(),
            links: BTreeMap::new(),
            next: 0,
            swarms: BTreeMap::new(),
            generation: 0,
            upload_cap: None,
            download_cap: None,
        }
    }

    /// Serves `swarm` through the gate: Hellos naming it, and manifest
    /// queries for `manifest` (its SHA-256) when given, go to `route`.
    /// `serving`: its node takes peers (one that does not keeps no part
    /// of the endpoint's peer budget).
    pub fn register(
        &mut self,
        swarm: SwarmName,
        manifest: Option<[u8; 32]>,
        serving: bool,
        route: T,
    ) -> Result<(), RegisterError> {
        if self.swarms.contains_key(&swarm) {
            return Err(RegisterError::Taken(swarm.0));
        }
        // An idle swarm's one slot takes nothing from the others.
        let rate = self.idle_rate();
        let down_rate = self.idle_down_rate();
        self.swarms.insert(
            swarm,
            Registered {
                route,
                manifest,
                serving,
                demand: UploadDemand::default(),
                grant: 1,
                rate,
                own_cap: None,
                downloading: false,
                down_rate,
                own_down_cap: None,
            },
        );
        Ok(())
    }

    /// Caps the upload of the whole endpoint at `cap` bytes per second
    /// (`None`: no cap); every swarm's share that changed.
    pub fn set_upload_cap(&mut self, cap: Option<u64>) -> Grants<T> {
        self.upload_cap = cap;
        self.regrant(None)
    }

    /// Caps the download of the whole endpoint at `cap` bytes per second
    /// (`None`: no cap); every swarm's share that changed.
    pub fn set_download_cap(&mut self, cap: Option<u64>) -> Grants<T> {
        self.download_cap = cap;
        self.regrant(None)
    }

    /// What a swarm that downloads nothing may download at: its part as
    /// the next one to start.
    fn idle_down_rate(&self) -> Option<u64> {
        let downloading = self.swarms.values().filter(|r| r.downloading).count();
        self.download_cap
            .map(|cap| part(cap, 1, downloading as u64 + 1))
    }

    /// What a swarm that uploads nothing may upload at: its part as the
    /// next one to start, with one slot.
    fn idle_rate(&self) -> Option<u64> {
        let held: usize = self
            .swarms
            .values()
            .filter(|r| r.demand.wanted > 0)
            .map(|r| r.grant)
            .sum();
        self.upload_cap.map(|cap| part(cap, 1, held as u64 + 1))
    }

    /// Stops routing to `swarm` (its node ends); handshakes routed to it
    /// before are its node's. Its upload slots go to the others: the
    /// grants that changed.
    pub fn deregister(&mut self, swarm: &SwarmName) -> Grants<T> {
        self.swarms.remove(swarm);
        self.regrant(None)
    }

    /// What `swarm`'s uploads want now and how many are under way: its
    /// grant, and the other swarms' grants that changed.
    pub fn set_upload_demand(&mut self, swarm: &SwarmName, demand: UploadDemand) -> Grants<T> {
        self.update(swarm, |registered| registered.demand = demand)
    }

    /// What `swarm`'s node says changed ([`crate::node::NodeCore::poll_gate_news`]):
    /// one decision on all of it, its share and the other swarms' shares
    /// that changed.
    pub fn handle_news(&mut self, swarm: &SwarmName, news: GateNews) -> Grants<T> {
        self.update(swarm, |registered| {
            if let Some(demand) = news.upload {
                registered.demand = demand;
            }
            if let Some(downloading) = news.download {
                registered.downloading = downloading;
            }
            if let Some(caps) = news.caps {
                registered.own_cap = caps.upload;
                registered.own_down_cap = caps.download;
            }
        })
    }

    /// `swarm`'s own upload cap (its `max_upload`): of the endpoint's cap
    /// it never gets more, and what it cannot use goes to the others.
    pub fn set_own_cap(&mut self, swarm: &SwarmName, cap: Option<u64>) -> Grants<T> {
        self.update(swarm, |registered| registered.own_cap = cap)
    }

    /// `swarm` would download now (it lacks chunks that a peer of its
    /// has, or has requests under way), or not: its share, and the other
    /// swarms' shares that changed.
    pub fn set_download_demand(&mut self, swarm: &SwarmName, downloading: bool) -> Grants<T> {
        self.update(swarm, |registered| registered.downloading = downloading)
    }

    /// `swarm`'s own download cap (its `max_download`): of the endpoint's
    /// cap it never gets more, and what it cannot use goes to the others.
    pub fn set_own_download_cap(&mut self, swarm: &SwarmName, cap: Option<u64>) -> Grants<T> {
        self.update(swarm, |registered| registered.own_down_cap = cap)
    }

    /// Changes what `swarm` reported and decides again: its share, and
    /// the other swarms' shares that changed.
    fn update(&mut self, swarm: &SwarmName, change: impl FnOnce(&mut Registered<T>)) -> Grants<T> {
        if let Some(registered) = self.swarms.get_mut(swarm) {
            change(registered);
        }
        self.regrant(Some(swarm))
    }

    /// The generation of the newest decision.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What `swarm` may upload now.
    pub fn upload_share(&self, swarm: &SwarmName) -> Share {
        self.swarms.get(swarm).map_or(
            Share {
                slots: 1,
                rate: self.upload_cap,
                download: self.download_cap,
            },
            |registered| registered.share(),
        )
    }

    /// The uploads `swarm` may run now.
    pub fn upload_grant(&self, swarm: &SwarmName) -> usize {
        self.upload_share(swarm).slots
    }

    /// Shares the slots again: one for every swarm, the rest one at a time
    /// to the swarm that wants more and holds fewest (ties: the first by
    /// name); then the cap, in proportion to the slots of the swarms that
    /// upload. Returns the reporter's share and the others that changed.
    fn regrant(&mut self, reporter: Option<&SwarmName>) -> Grants<T> {
        let before: Vec<Share> = self.swarms.values().map(Registered::share).collect();
        let wanting = self.swarms.values().filter(|r| r.demand.wanted > 0).count();
        let mut extra = self.config.upload_slots.saturating_sub(wanting);
        for registered in self.swarms.values_mut() {
            registered.grant = 1;
        }
        while extra > 0 {
            let next = self
                .swarms
                .values_mut()
                .filter(|r| r.demand.wanted > r.grant)
                .min_by_key(|r| r.grant);
            let Some(registered) = next else { break };
            registered.grant += 1;
            extra -= 1;
        }
        // Uploads under way beyond a grant that shrank run to their end,
        // so they hold their slots until then: a grant grows only into
        // slots nobody holds. Taken back one at a time from the swarm with
        // the most granted and not yet started (the last by name among
        // equals), never below one. (An idle swarm's one slot holds
        // nothing until it uploads.)
        let bound = self.config.upload_slots.max(wanting);
        let held: usize = self.swarms.values().map(Registered::held).sum();
        let mut over = held.saturating_sub(bound);
        while over > 0 {
            let next = self
                .swarms
                .values_mut()
                .filter(|r| r.grant > r.demand.running.max(1))
                .max_by_key(|r| r.grant - r.demand.running);
            let Some(registered) = next else { break };
            registered.grant -= 1;
            over -= 1;
        }
        let idle = self.idle_rate();
        let idle_down = self.idle_down_rate();
        for registered in self.swarms.values_mut() {
            registered.rate = idle;
            registered.down_rate = idle_down;
        }
        if let Some(cap) = self.upload_cap {
            // In proportion to the slots.
            let uploading = self.swarms.values_mut().filter(|r| r.demand.wanted > 0);
            water_fill(
                cap,
                uploading
                    .map(|r| (r.grant as u64, r.own_cap, &mut r.rate))
                    .collect(),
            );
        }
        if let Some(cap) = self.download_cap {
            // Evenly.
            let downloading = self.swarms.values_mut().filter(|r| r.downloading);
            water_fill(
                cap,
                downloading
                    .map(|r| (1, r.own_down_cap, &mut r.down_rate))
                    .collect(),
            );
        }
        self.generation += 1;
        let mut own = Share {
            slots: 1,
            rate: idle,
            download: idle_down,
        };
        let mut changed = Vec::new();
        for ((name, registered), old) in self.swarms.iter().zip(before) {
            let share = registered.share();
            if Some(name) == reporter {
                own = share;
            } else if share != old {
                changed.push((registered.route.clone(), share));
            }
        }
        Grants {
            generation: self.generation,
            own,
            changed,
        }
    }

    /// How many swarms are served.
    pub fn swarms(&self) -> usize {
        self.swarms.len()
    }

    /// How many handshakes are under way (ended ones and those past
    /// their deadline are forgotten at the next first packet).
    pub fn handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Refuses every connection from now on (the endpoint is closing).
    pub fn close(&mut self) {
        self.open = false;
    }

    /// The first packet of a connection from `remote` (`validated`: QUIC
    /// validated its address with a Retry).
    pub fn handle_incoming(&mut self, remote: SocketAddr, validated: bool, now: Instant) -> Door {
        // A ticket whose handshake never reported its end stops counting
        // at its deadline: its task gives up by then.
        self.handshakes
            .retain(|_, handshake| handshake.deadline > now);
        let prefix = Prefix::of(remote.ip());
        let from_prefix = self
            .handshakes
            .values()
            .filter(|handshake| handshake.prefix == prefix)
            .count();
        // A swarm that serves nobody takes no connection: a library of
        // downloads alone listens to nobody.
        let listening = self.open && self.swarms.values().any(|r| r.serving);
        // Links count with handshakes, over every swarm: the endpoint holds
        // `ENDPOINT_PEER_BUDGETS` node budgets in all, and one network at
        // most the part of it one network may hold of a node's.
        let linked = self.links.values().filter(|(p, _)| *p == prefix).count();
        let per_prefix = self.config.max_links_per_prefix * ENDPOINT_PEER_BUDGETS;
        if listening && linked + from_prefix >= per_prefix {
            return Door::Refuse {
                reason: Refusal::PrefixLinks {
                    prefix,
                    limit: per_prefix,
                },
            };
        }
        // Full when every place is held by a link or a handshake routed
        // with room, unless a swarm is below its fair part while another
        // is above its own: its Hello is let through to ask that one to
        // shed an idle peer (`Self::route_hello`), within the handshake
        // limits below.
        let peers = self.peer_budget();
        if listening && self.held().values().sum::<usize>() >= peers && !self.short_and_over() {
            return Door::Refuse {
                reason: Refusal::Peers { limit: peers },
            };
        }
        match admit_first_packet(
            &self.config,
            listening,
            self.handshakes.len(),
            from_prefix,
            prefix,
            validated,
        ) {
            Ok(()) => {}
            Err(None) => return Door::Retry,
            Err(Some(reason)) => return Door::Refuse { reason },
        }
        let ticket = Ticket(self.next);
        self.next += 1;
        let deadline = now + self.config.handshake_timeout;
        self.handshakes.insert(
            ticket,
            Handshake {
                prefix,
                deadline,
                swarm: None,
                room: false,
            },
        );
        Door::Accept { ticket, deadline }
    }

    /// The endpoint's budget of incoming links, over every swarm.
    fn peer_budget(&self) -> usize {
        self.config.max_peers * ENDPOINT_PEER_BUDGETS
    }

    /// The places each swarm holds: its links and its handshakes routed
    /// with room (`None`: links of no known swarm).
    fn held(&self) -> BTreeMap<Option<&SwarmName>, usize> {
        let mut held = BTreeMap::new();
        let routed = self
            .handshakes
            .values()
            .filter(|handshake| handshake.room)
            .map(|handshake| handshake.swarm.as_ref());
        let linked = self.links.values().map(|(_, swarm)| swarm.as_ref());
        for swarm in routed.chain(linked) {
            *held.entry(swarm).or_insert(0) += 1;
        }
        held
    }

    /// Whether `swarm` may take one more link. Every serving swarm may
    /// hold its fair part of the budget, `min(max_peers, budget / serving
    /// swarms)`; beyond it a swarm takes from what no swarm's fair part
    /// keeps. So the places held, and the places each serving swarm's
    /// fair part still keeps for it, stay within the budget: a swarm with
    /// no peer finds its part free however busy the others are (unless it
    /// came when the others held more than their new parts: then as
    /// their links end or are shed, see [`Routed::shed`]), and one busy
    /// swarm among idle ones holds the rest. A swarm that does not serve
    /// takes no link and keeps no part.
    fn has_room(&self, swarm: &SwarmName) -> bool {
        if !self.is_serving(swarm) {
            return false;
        }
        let fair = self.fair_part();
        let held = self.held();
        let total: usize = held.values().sum();
        let kept: usize = self
            .serving()
            .map(|name| fair.saturating_sub(held_by(&held, name)))
            .sum();
        // One more link of `swarm` takes a place its part keeps, if any.
        let kept_after = kept - usize::from(held_by(&held, swarm) < fair);
        total + 1 + kept_after <= self.peer_budget()
    }

    /// The swarms whose node serves.
    fn serving(&self) -> impl Iterator<Item = &SwarmName> {
        self.swarms
            .iter()
            .filter(|(_, r)| r.serving)
            .map(|(name, _)| name)
    }

    fn is_serving(&self, swarm: &SwarmName) -> bool {
        self.swarms.get(swarm).is_some_and(|r| r.serving)
    }

    /// Each serving swarm's fair part of the peer budget.
    fn fair_part(&self) -> usize {
        self.config
            .max_peers
            .min(self.peer_budget() / self.serving().count().max(1))
    }

    /// Whether a serving swarm holds less than its fair part while
    /// another holds more than its own.
    fn short_and_over(&self) -> bool {
        let fair = self.fair_part();
        let held = self.held();
        self.serving().any(|name| held_by(&held, name) < fair)
            && self.serving().any(|name| held_by(&held, name) > fair)
    }

    /// When serving swarm `swarm` holds less than its fair part: the route
    /// of the serving swarm that holds the most beyond its own part (ties:
    /// the first by name), if any does, and that part.
    fn over_part(&self, swarm: &SwarmName) -> Option<(T, usize)> {
        let fair = self.fair_part();
        let held = self.held();
        if !self.is_serving(swarm) || held_by(&held, swarm) >= fair {
            return None;
        }
        self.serving()
            .filter(|name| held_by(&held, name) > fair)
            .max_by_key(|name| (held_by(&held, name), std::cmp::Reverse(*name)))
            .map(|name| (self.swarms[name].route.clone(), fair))
    }

    /// The first message of handshake `ticket` is a Hello: the route of
    /// the swarm it names and whether the endpoint has room for its link
    /// (then the handshake holds a place of that swarm's), or the refusal
    /// to send (UnknownSwarm). The handshake counts on until it ends,
    /// answered or refused ([`Self::handle_ended`]), so that a dialer that
    /// stalls after its first message holds a place here as it would at a
    /// node of one swarm.
    pub fn route_hello(&mut self, ticket: Ticket, hello: &Hello) -> Result<Routed<T>, Rejection> {
        let name = (hello.model_id.clone(), hello.merkle_root);
        // A swarm whose node serves nobody is not told apart from one
        // not here: what a library downloads stays its own.
        match self.swarms.get(&name) {
            Some(registered) if self.open && registered.serving => {
                let route = registered.route.clone();
                // A handshake already forgotten (past its deadline) gets
                // no place.
                let room = self.handshakes.contains_key(&ticket) && self.has_room(&name);
                let shed = if room { None } else { self.over_part(&name) };
                if let Some(handshake) = self.handshakes.get_mut(&ticket) {
                    handshake.swarm = Some(name);
                    handshake.room = room;
                }
                Ok(Routed { route, room, shed })
            }
            _ => Err(Rejection {
                reason: HelloRejectReason::UnknownSwarm,
                detail: format!("no swarm {} with this root here", hello.model_id),
                peers: Vec::new(),
            }),
        }
    }

    /// The handshake's first message is a manifest query for `digest`:
    /// the route of the swarm with that manifest, or the refusal to send
    /// (UnknownManifest). The handshake counts on until it ends.
    pub fn route_manifest(&self, digest: &[u8; 32]) -> Result<Routed<T>, Rejection> {
        let found = self
            .swarms
            .values()
            .find(|registered| registered.manifest.as_ref() == Some(digest));
        match found {
            // Answered and closed: it never becomes a link, so it needs no
            // room and makes none.
            Some(registered) if self.open => Ok(Routed {
                route: registered.route.clone(),
                room: true,
                shed: None,
            }),
            _ => Err(Rejection {
                reason: HelloRejectReason::UnknownManifest,
                detail: "no manifest with this SHA-256 here".into(),
                peers: Vec::new(),
            }),
        }
    }

    /// The handshake became a link: it holds its place as a link (per
    /// prefix and in the endpoint's peer budget) until it ends.
    pub fn handle_link_up(&mut self, ticket: Ticket) {
        if let Some(handshake) = self.handshakes.remove(&ticket) {
            self.links
                .insert(ticket, (handshake.prefix, handshake.swarm));
        }
    }

    /// The handshake or the link it became ended (refused, answered, failed,
    /// closed). Its place is free.
    pub fn handle_ended(&mut self, ticket: Ticket) {
        self.handshakes.remove(&ticket);
        self.links.remove(&ticket);
    }

    /// Incoming links held now, over every swarm.
    pub fn links(&self) -> usize {
        self.links.len()
    }
}

impl<T> Registered<T> {
    /// Upload slots it holds: its grant up to what it wants (an idle
    /// swarm's one slot holds none), or what it runs if that is more.
    fn held(&self) -> usize {
        self.grant.min(self.demand.wanted).max(self.demand.running)
    }

    fn share(&self) -> Share {
        Share {
            slots: self.grant,
            rate: self.rate,
            download: self.down_rate,
        }
    }
}

/// Shares `cap` among `open` (weight, own cap, the part to set) in
/// proportion to their weights, but one whose own cap is below its part
/// gets its own cap, and the rest is shared again among the others.
fn water_fill(cap: u64, mut open: Vec<(u64, Option<u64>, &mut Option<u64>)>) {
    let mut left = cap;
    while !open.is_empty() {
        let weight: u64 = open.iter().map(|(w, _, _)| *w).sum();
        let (capped, free): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|(w, own, _)| own.is_some_and(|own| own < part(left, *w, weight)));
        if capped.is_empty() {
            for (w, _, rate) in free {
                *rate = Some(part(left, w, weight));
            }
            return;
        }
        for (_, own, rate) in capped {
            let own = own.unwrap_or(left);
            *rate = Some(own.max(1));
            left = left.saturating_sub(own);
        }
        open = free;
    }
}

/// The places `swarm` holds, in [`Gate::held`]'s count.
fn held_by(held: &BTreeMap<Option<&SwarmName>, usize>, swarm: &SwarmName) -> usize {
    held.get(&Some(swarm)).copied().unwrap_or(0)
}

/// `cap x of / out_of`, at least 1 byte per second, without overflow.
fn part(cap: u64, of: u64, out_of: u64) -> u64 {
    let part = u128::from(cap) * u128::from(of) / u128::from(out_of.max(1));
    u64::try_from(part).unwrap_or(u64::MAX).max(1)
}

/// Whether a first packet from `prefix` may start a handshake, with
/// `handshaking` handshakes in progress of which `from_prefix` from that
/// prefix: `Ok`, a Retry first (`Err(None)`), or a refusal. One rule for a
/// node of one swarm and for the gate of many.
pub(crate) fn admit_first_packet(
    config: &NodeConfig,
    listening: bool,
    handshaking: usize,
    from_prefix: usize,
    prefix: Prefix,
    validated: bool,
) -> Result<(), Option<Refusal>> {
    if !listening {
        return Err(Some(Refusal::NotAccepting));
    }
    if from_prefix >= config.max_handshakes_per_prefix {
        return Err(Some(Refusal::PrefixHandshakes {
            prefix,
            limit: config.max_handshakes_per_prefix,
        }));
    }
    if !validated && handshaking >= config.retry_above {
        return Err(None);
    }
    if handshaking >= config.max_handshakes {
        return Err(Some(Refusal::Handshakes {
            limit: config.max_handshakes,
        }));
    }
    Ok(())
}

/// What a swarm's node tells the gate of the endpoint it shares with other
/// swarms ([`crate::node::NodeCore::poll_gate_news`]): what changed since it was told
/// last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateNews {
    /// The uploads it would run now ([`Gate::set_upload_demand`]).
    pub upload: Option<UploadDemand>,
    /// Whether it would download ([`Gate::set_download_demand`]).
    pub download: Option<bool>,
    /// Its own caps ([`Gate::set_own_cap`],
    /// [`Gate::set_own_download_cap`]): of the endpoint's it
    /// never gets more, and what it cannot use goes to the others.
    pub caps: Option<OwnCaps>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hello(model: &str, root: u8) -> Hello {
        Hello {
            protocol_version: minimodel_wire::PROTOCOL_VERSION,
            model_id: model.into(),
            merkle_root: [root; 32],
            artifact_bytes: 1 << 20,
            chunk_size: 1 << 18,
            chunk_count: 4,
            serving: false,
            listen: None,
            agent: "test".into(),
            observed: None,
            lan: Vec::new(),
        }
    }

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, last], port))
    }

    fn accepted(door: Door) -> Ticket {
        match door {
            Door::Accept { ticket, .. } => ticket,
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    /// A gate with swarms "s0", "s1", ... routed to their index; those
    /// `serves` names take peers.
    fn gate_of(config: &NodeConfig, swarms: usize, serves: impl Fn(usize) -> bool) -> Gate<usize> {
        let mut gate = Gate::new(config.clone());
        for i in 0..swarms {
            gate.register((format!("s{i}"), [i as u8; 32]), None, serves(i), i)
                .unwrap();
        }
        gate
    }

    /// The `n`-th network of its own (10.x.y.0/24).
    fn network(n: u32) -> SocketAddr {
        SocketAddr::from(([10, (n >> 8) as u8, n as u8, 1], 1))
    }

    /// A Hello for swarm "s`i`" from the `n`-th network: its ticket and
    /// where the gate routed it.
    fn hello_for(
        gate: &mut Gate<usize>,
        n: u32,
        i: usize,
        now: Instant,
    ) -> (Ticket, Routed<usize>) {
        let ticket = accepted(gate.handle_incoming(network(n), true, now));
        let routed = gate
            .route_hello(ticket, &hello(&format!("s{i}"), i as u8))
            .unwrap();
        (ticket, routed)
    }

    fn room(route: &'static str) -> Routed<&'static str> {
        Routed {
            route,
            room: true,
            shed: None,
        }
    }

    fn gate() -> Gate<&'static str> {
        let mut gate = Gate::new(NodeConfig::default());
        gate.register(("a".into(), [1; 32]), Some([0xa; 32]), true, "swarm a")
            .unwrap();
        gate.register(("b".into(), [2; 32]), None, true, "swarm b")
            .unwrap();
        gate
    }

    #[test]
    fn a_hello_goes_to_the_swarm_its_model_id_and_root_name() {
        let mut gate = gate();
        let now = Instant::now();
        let first = accepted(gate.handle_incoming(addr(1, 1), true, now));
        let second = accepted(gate.handle_incoming(addr(2, 1), true, now));
        assert_eq!(gate.route_hello(first, &hello("b", 2)), Ok(room("swarm b")));
        assert_eq!(
            gate.route_hello(second, &hello("a", 1)),
            Ok(room("swarm a"))
        );
        assert_eq!(
            gate.handshakes(),
            2,
            "a routed handshake counts until it ends"
        );
        gate.handle_ended(first);
        gate.handle_ended(second);
        assert_eq!(gate.handshakes(), 0);
    }

    #[test]
    fn a_hello_for_a_swarm_not_served_here_is_refused_as_unknown() {
        let mut gate = gate();
        let now = Instant::now();
        for wrong in [hello("a", 2), hello("c", 1), hello("b", 1)] {
            let ticket = accepted(gate.handle_incoming(addr(1, 1), true, now));
            let refusal = gate.route_hello(ticket, &wrong).unwrap_err();
            assert_eq!(refusal.reason, HelloRejectReason::UnknownSwarm);
            assert!(refusal.peers.is_empty());
            gate.handle_ended(ticket);
        }
        assert_eq!(gate.handshakes(), 0);
    }

    #[test]
    fn a_manifest_query_goes_to_the_swarm_with_that_manifest() {
        let gate = gate();
        assert_eq!(
            gate.route_manifest(&[0xa; 32]),
            Ok(Routed {
                route: "swarm a",
                room: true,
                shed: None
            }),
            "answered and closed: it needs no room and makes none"
        );
        let refusal = gate.route_manifest(&[0xb; 32]).unwrap_err();
        assert_eq!(refusal.reason, HelloRejectReason::UnknownManifest);
    }

    #[test]
    fn a_swarm_served_twice_is_refused_and_one_that_ended_is_unknown() {
        let mut gate = gate();
        assert_eq!(
            gate.register(("a".into(), [1; 32]), None, true, "again"),
            Err(RegisterError::Taken("a".into()))
        );
        gate.deregister(&("a".into(), [1; 32]));
        assert_eq!(gate.swarms(), 1);
        let refusal = gate.route_hello(Ticket(0), &hello("a", 1)).unwrap_err();
        assert_eq!(refusal.reason, HelloRejectReason::UnknownSwarm);
        let refusal = gate.route_manifest(&[0xa; 32]).unwrap_err();
        assert_eq!(refusal.reason, HelloRejectReason::UnknownManifest);
    }

    #[test]
    fn the_first_packet_limits_count_over_every_swarm_of_the_endpoint() {
        let config = NodeConfig::default();
        let mut gate = gate();
        let now = Instant::now();
        // One prefix: its limit, then a refusal naming it.
        let tickets: Vec<_> = (0..config.max_handshakes_per_prefix)
            .map(|i| accepted(gate.handle_incoming(addr(1, i as u16), true, now)))
            .collect();
        assert!(matches!(
            gate.handle_incoming(addr(9, 1), true, now),
            Door::Refuse {
                reason: Refusal::PrefixHandshakes { .. }
            }
        ));
        // Unvalidated sources get a Retry above the threshold.
        assert_eq!(
            gate.handle_incoming(SocketAddr::from(([203, 0, 113, 1], 1)), false, now),
            Door::Retry
        );
        // Routed, a handshake still holds its place; ended, it frees it.
        assert_eq!(
            gate.route_hello(tickets[0], &hello("a", 1)),
            Ok(room("swarm a"))
        );
        assert!(matches!(
            gate.handle_incoming(addr(9, 1), true, now),
            Door::Refuse { .. }
        ));
        gate.handle_ended(tickets[0]);
        accepted(gate.handle_incoming(addr(9, 1), true, now));
        // Over all sources: the total limit.
        let mut last = 3;
        while gate.handshakes() < config.max_handshakes {
            last += 1;
            accepted(gate.handle_incoming(SocketAddr::from(([10, last, 0, 1], 1)), true, now));
        }
        assert_eq!(
            gate.handle_incoming(SocketAddr::from(([10, 200, 0, 1], 1)), true, now),
            Door::Refuse {
                reason: Refusal::Handshakes {
                    limit: config.max_handshakes
                }
            }
        );
    }

    #[test]
    fn incoming_links_count_per_prefix_and_in_the_endpoints_peer_budget_over_every_swarm() {
        let config = NodeConfig::default();
        let mut gate = gate();
        let now = Instant::now();
        // Links from one /24, routed to either swarm: half the endpoint's
        // budget, as a prefix holds half of a node's.
        let per_prefix = config.max_links_per_prefix * ENDPOINT_PEER_BUDGETS;
        for i in 0..per_prefix {
            let ticket = accepted(gate.handle_incoming(addr(1, i as u16), true, now));
            gate.handle_link_up(ticket);
        }
        assert_eq!(gate.links(), per_prefix);
        assert_eq!(gate.handshakes(), 0);
        assert_eq!(
            gate.handle_incoming(addr(2, 1), true, now),
            Door::Refuse {
                reason: Refusal::PrefixLinks {
                    prefix: Prefix::of(addr(2, 1).ip()),
                    limit: per_prefix
                }
            }
        );
        // Links live past any handshake deadline.
        let later = now + config.handshake_timeout * 10;
        assert!(matches!(
            gate.handle_incoming(addr(2, 1), true, later),
            Door::Refuse {
                reason: Refusal::PrefixLinks { .. }
            }
        ));
        // Every other network up to the endpoint's budget.
        let budget = config.max_peers * ENDPOINT_PEER_BUDGETS;
        let mut n = 0u32;
        while gate.links() < budget {
            n += 1;
            let ticket = accepted(gate.handle_incoming(network(n), true, later));
            gate.handle_link_up(ticket);
        }
        assert_eq!(
            gate.handle_incoming(SocketAddr::from(([172, 16, 0, 1], 1)), true, later),
            Door::Refuse {
                reason: Refusal::Peers { limit: budget }
            }
        );
    }

    #[test]
    fn every_swarm_may_hold_its_fair_part_of_the_peer_budget_however_busy_the_others_are() {
        let config = NodeConfig::default();
        let budget = config.max_peers * ENDPOINT_PEER_BUDGETS;
        let swarms = 20;
        let mut gate = gate_of(&config, swarms, |_| true);
        let fair = config.max_peers.min(budget / swarms);
        let now = Instant::now();
        let mut n = 0u32;
        // One link of swarm `i` from a network of its own: whether the
        // endpoint had room for it.
        let mut link = |gate: &mut Gate<usize>, i: usize| {
            n += 1;
            let (ticket, routed) = hello_for(gate, n, i, now);
            assert_eq!(routed.route, i);
            if routed.room {
                gate.handle_link_up(ticket);
            } else {
                gate.handle_ended(ticket);
            }
            routed.room
        };
        // A busy swarm among idle ones takes all but the others' parts.
        let mut busy = 0;
        while link(&mut gate, 0) {
            busy += 1;
        }
        assert_eq!(busy, budget - (swarms - 1) * fair);
        // A swarm with no peer still finds its whole part free, then no
        // more.
        for _ in 0..fair {
            assert!(link(&mut gate, 7), "swarm 7 is below its fair part");
        }
        assert!(!link(&mut gate, 7), "swarm 7 holds its fair part");
        // Each of the rest likewise: the budget is then held in full, and
        // the door refuses at the first packet.
        for i in (1..swarms).filter(|i| *i != 7) {
            for _ in 0..fair {
                assert!(link(&mut gate, i), "swarm {i} is below its fair part");
            }
        }
        assert_eq!(gate.links(), budget);
        assert_eq!(
            gate.handle_incoming(SocketAddr::from(([172, 16, 0, 1], 1)), true, now),
            Door::Refuse {
                reason: Refusal::Peers { limit: budget }
            }
        );
    }

    #[test]
    fn swarms_that_take_no_peers_keep_no_part_and_a_routed_place_is_held_until_it_ends() {
        let config = NodeConfig::default();
        let budget = config.max_peers * ENDPOINT_PEER_BUDGETS;
        // Nine serving swarms and eleven downloads that serve nobody: the
        // budget is shared among the nine.
        let mut gate = gate_of(&config, 20, |i| i < 9);
        let fair = config.max_peers.min(budget / 9);
        assert_eq!(fair, 28);
        let now = Instant::now();
        let mut n = 0u32;
        let mut open = |gate: &mut Gate<usize>, i: usize| {
            n += 1;
            let (ticket, routed) = hello_for(gate, n, i, now);
            (ticket, routed.room)
        };
        let mut held = 0;
        loop {
            let (ticket, room) = open(&mut gate, 0);
            if !room {
                gate.handle_ended(ticket);
                break;
            }
            gate.handle_link_up(ticket);
            held += 1;
        }
        assert_eq!(held, budget - 8 * fair);
        // A handshake routed with room holds its place before it is up...
        for _ in 0..fair - 1 {
            let (ticket, room) = open(&mut gate, 1);
            assert!(room);
            gate.handle_link_up(ticket);
        }
        let (pending, room) = open(&mut gate, 1);
        assert!(room, "the last place of swarm 1's part");
        let (refused, room) = open(&mut gate, 1);
        assert!(!room, "its part is held, the pending handshake included");
        gate.handle_ended(refused);
        // ...and frees it when it ends without a link.
        gate.handle_ended(pending);
        let (again, room) = open(&mut gate, 1);
        assert!(room);
        gate.handle_ended(again);
        // A swarm added when the others hold more than their new parts
        // finds no room until their links end.
        gate.register(("late".into(), [99; 32]), None, true, 99)
            .unwrap();
        let ticket = accepted(gate.handle_incoming(addr(7, 1), true, now));
        let late = gate.route_hello(ticket, &hello("late", 99)).unwrap();
        assert!(!late.room);
        // The swarm that holds the most beyond its part is asked to shed
        // an idle peer; one at or below its part is not.
        assert_eq!(late.shed, Some((0, 25)));
        gate.handle_ended(ticket);
        let ticket = accepted(gate.handle_incoming(addr(7, 2), true, now));
        let busy = gate.route_hello(ticket, &hello("s0", 0)).unwrap();
        assert_eq!((busy.room, busy.shed), (false, None));
    }

    #[test]
    fn a_share_added_to_a_full_endpoint_gets_through_the_door_and_asks_for_room() {
        let config = NodeConfig::default();
        let budget = config.max_peers * ENDPOINT_PEER_BUDGETS;
        let mut gate = gate_of(&config, 8, |_| true);
        let now = Instant::now();
        let mut n = 0u32;
        let mut links: Vec<Vec<Ticket>> = vec![Vec::new(); 8];
        let mut open = |gate: &mut Gate<usize>, i: usize| {
            n += 1;
            hello_for(gate, n, i, now)
        };
        for (i, held) in links.iter_mut().enumerate() {
            for _ in 0..config.max_peers {
                let (ticket, routed) = open(&mut gate, i);
                assert!(routed.room);
                gate.handle_link_up(ticket);
                held.push(ticket);
            }
        }
        assert_eq!(gate.links(), budget);
        let full = SocketAddr::from(([172, 16, 0, 1], 1));
        assert!(matches!(
            gate.handle_incoming(full, true, now),
            Door::Refuse {
                reason: Refusal::Peers { .. }
            }
        ));
        // A ninth share: its part is 28, the others hold 32 each. Its
        // Hello gets through the door, finds no room, and names the first
        // of the busiest to shed down to 28.
        gate.register(("s8".into(), [8; 32]), None, true, 8)
            .unwrap();
        let (ticket, routed) = open(&mut gate, 8);
        assert_eq!((routed.room, routed.shed), (false, Some((0, 28))));
        gate.handle_ended(ticket);
        // As the others shed down to their parts, it gets in.
        for held in &mut links {
            for ticket in held.drain(..4) {
                gate.handle_ended(ticket);
            }
        }
        let (_, routed) = open(&mut gate, 8);
        assert!(routed.room);
        assert_eq!(routed.shed, None);
    }

    #[test]
    fn a_download_that_serves_nobody_is_not_told_apart_from_a_swarm_not_here() {
        let mut gate: Gate<usize> = Gate::new(NodeConfig::default());
        gate.register(("fetching".into(), [1; 32]), None, false, 0)
            .unwrap();
        let now = Instant::now();
        // Only downloads: nobody is let in.
        assert_eq!(
            gate.handle_incoming(addr(1, 1), true, now),
            Door::Refuse {
                reason: Refusal::NotAccepting
            }
        );
        gate.register(("shared".into(), [2; 32]), None, true, 1)
            .unwrap();
        let ticket = accepted(gate.handle_incoming(addr(1, 1), true, now));
        let refused = gate.route_hello(ticket, &hello("fetching", 1)).unwrap_err();
        let absent = gate.route_hello(ticket, &hello("absent", 3)).unwrap_err();
        assert_eq!(refused.reason, HelloRejectReason::UnknownSwarm);
        assert_eq!(refused.reason, absent.reason);
        assert_eq!(
            gate.route_hello(ticket, &hello("shared", 2)).unwrap().route,
            1
        );
    }

    #[test]
    fn a_link_that_ends_frees_its_place() {
        let config = NodeConfig::default();
        let mut gate = gate();
        let now = Instant::now();
        let tickets: Vec<Ticket> = (0..config.max_links_per_prefix * ENDPOINT_PEER_BUDGETS)
            .map(|i| {
                let ticket = accepted(gate.handle_incoming(addr(1, i as u16), true, now));
                gate.handle_link_up(ticket);
                ticket
            })
            .collect();
        assert!(matches!(
            gate.handle_incoming(addr(1, 99), true, now),
            Door::Refuse { .. }
        ));
        gate.handle_ended(tickets[3]);
        accepted(gate.handle_incoming(addr(1, 99), true, now));
    }

    #[test]
    fn a_handshake_that_never_reports_back_stops_counting_at_its_deadline() {
        let config = NodeConfig::default();
        let mut gate = gate();
        let now = Instant::now();
        for i in 0..config.max_handshakes_per_prefix {
            accepted(gate.handle_incoming(addr(1, i as u16), true, now));
        }
        assert!(matches!(
            gate.handle_incoming(addr(1, 99), true, now),
            Door::Refuse { .. }
        ));
        let later = now + config.handshake_timeout + Duration::from_millis(1);
        accepted(gate.handle_incoming(addr(1, 99), true, later));
        assert_eq!(gate.handshakes(), 1);
    }

    fn name(text: &str) -> SwarmName {
        (text.into(), [0; 32])
    }

    /// A demand of `wanted` uploads with none under way.
    fn want(wanted: usize) -> UploadDemand {
        UploadDemand { wanted, running: 0 }
    }

    /// `wanted` uploads, `running` of them under way.
    fn running(wanted: usize, running: usize) -> UploadDemand {
        UploadDemand { wanted, running }
    }

    fn many(count: usize) -> Gate<usize> {
        let mut gate = Gate::new(NodeConfig::default());
        for i in 0..count {
            gate.register(name(&format!("s{i:02}")), None, true, i)
                .unwrap();
        }
        gate
    }

    #[test]
    fn one_busy_swarm_among_idle_ones_gets_every_slot_but_theirs() {
        let slots = NodeConfig::default().upload_slots;
        let mut gate = many(20);
        let grants = gate.set_upload_demand(&name("s07"), want(slots));
        // Every idle swarm keeps its one slot; the busy one gets the rest
        // of the endpoint's slots, since the idle ones use none.
        assert_eq!(grants.own.slots, slots);
        assert!(grants.changed.is_empty(), "{:?}", grants.changed);
        assert_eq!(gate.upload_grant(&name("s00")), 1);
    }

    #[test]
    fn busy_swarms_share_the_slots_evenly_and_a_modest_one_gets_what_it_asks() {
        let mut gate = many(3);
        assert_eq!(gate.set_upload_demand(&name("s00"), want(8)).own.slots, 8);
        let grants = gate.set_upload_demand(&name("s01"), want(8));
        assert_eq!(grants.own.slots, 4);
        let changed: Vec<(usize, usize)> =
            grants.changed.iter().map(|(r, s)| (*r, s.slots)).collect();
        assert_eq!(changed, vec![(0, 4)], "the first one gives up half");
        let grants = gate.set_upload_demand(&name("s02"), want(8));
        assert_eq!(
            (
                gate.upload_grant(&name("s00")),
                gate.upload_grant(&name("s01")),
                grants.own.slots
            ),
            (3, 3, 2),
            "8 over three: the spare slot goes to the first by name"
        );
        // One that wants only 2 gets 2; the other two share the rest.
        gate.set_upload_demand(&name("s02"), want(2));
        assert_eq!(
            (
                gate.upload_grant(&name("s00")),
                gate.upload_grant(&name("s01"))
            ),
            (3, 3)
        );
        gate.set_upload_demand(&name("s01"), want(1));
        assert_eq!(gate.upload_grant(&name("s00")), 5);
        assert_eq!(gate.upload_grant(&name("s01")), 1);
        assert_eq!(gate.upload_grant(&name("s02")), 2);
    }

    #[test]
    fn a_grant_grows_only_into_slots_the_uploads_under_way_let_go() {
        let mut gate = many(3);
        // s00 runs all 8; s01 comes: its fair half is held by s00's
        // uploads under way, so it may start one (every swarm may).
        gate.set_upload_demand(&name("s00"), running(8, 8));
        let grants = gate.set_upload_demand(&name("s01"), want(8));
        assert_eq!(grants.own.slots, 1);
        assert_eq!(gate.upload_grant(&name("s00")), 4, "told to shrink");
        // As s00's uploads end, s01 gets what they held, up to its half
        // (s02 uploads nothing: its one slot holds none).
        let grants = gate.set_upload_demand(&name("s00"), running(8, 6));
        let changed: Vec<(usize, usize)> =
            grants.changed.iter().map(|(r, s)| (*r, s.slots)).collect();
        assert_eq!(changed, vec![(1, 2)], "6 + 2 = 8");
        let grants = gate.set_upload_demand(&name("s00"), running(8, 4));
        let changed: Vec<(usize, usize)> =
            grants.changed.iter().map(|(r, s)| (*r, s.slots)).collect();
        assert_eq!(changed, vec![(1, 4)]);
        // Whatever is reported, the slots held stay within the endpoint's,
        // or within what runs already (at least one each) when that is more.
        for (a, b, c) in [(8, 1, 0), (3, 3, 3), (0, 8, 1), (2, 2, 0), (8, 8, 8)] {
            gate.set_upload_demand(&name("s00"), running(8, a));
            gate.set_upload_demand(&name("s01"), running(8, b));
            gate.set_upload_demand(&name("s02"), running(8, c));
            let under_way = [("s00", a), ("s01", b), ("s02", c)];
            let held: usize = under_way
                .iter()
                .map(|(swarm, n)| gate.upload_grant(&name(swarm)).max(*n))
                .sum();
            let floor: usize = under_way.iter().map(|(_, n)| (*n).max(1)).sum();
            assert!(held <= floor.max(8), "{a} {b} {c}: {held}");
        }
    }

    #[test]
    fn more_busy_swarms_than_slots_run_one_upload_each_and_a_departure_frees_slots() {
        let mut gate = many(20);
        for i in 0..20 {
            gate.set_upload_demand(&name(&format!("s{i:02}")), want(4));
        }
        let granted: usize = (0..20)
            .map(|i| gate.upload_grant(&name(&format!("s{i:02}"))))
            .sum();
        assert_eq!(granted, 20, "one each, never none");
        for i in 0..17 {
            gate.deregister(&name(&format!("s{i:02}")));
        }
        let grants = gate.deregister(&name("s17"));
        // Two left, 8 slots: 4 each, both told.
        assert_eq!(grants.changed.len(), 2, "{:?}", grants.changed);
        assert!(grants.changed.iter().all(|(_, share)| share.slots == 4));
        let later = gate.set_upload_demand(&name("s18"), want(4));
        assert!(later.generation > grants.generation);
    }

    #[test]
    fn the_endpoints_download_cap_goes_evenly_to_the_swarms_that_would_download() {
        let mut gate = many(4);
        let cap = 9_000_000;
        let down = |gate: &Gate<usize>, swarm: &str| gate.upload_share(&name(swarm)).download;
        let grants = gate.set_download_cap(Some(cap));
        assert_eq!(grants.changed.len(), 4, "every idle swarm hears the cap");
        // One downloads: all of it; the others hold what the next would get.
        let one = gate.set_download_demand(&name("s00"), true);
        assert_eq!(one.own.download, Some(cap));
        assert_eq!(down(&gate, "s01"), Some(cap / 2));
        // Three: a third each, whatever their upload slots.
        gate.set_upload_demand(&name("s01"), want(8));
        gate.set_download_demand(&name("s01"), true);
        gate.set_download_demand(&name("s02"), true);
        for swarm in ["s00", "s01", "s02"] {
            assert_eq!(down(&gate, swarm), Some(cap / 3), "{swarm}");
        }
        assert_eq!(down(&gate, "s03"), Some(cap / 4));
        // One capped below its part: the rest goes to the others.
        gate.set_own_download_cap(&name("s02"), Some(1_000_000));
        assert_eq!(down(&gate, "s02"), Some(1_000_000));
        assert_eq!(down(&gate, "s00"), Some(4_000_000));
        assert_eq!(down(&gate, "s01"), Some(4_000_000));
        // One that has nothing to fetch now (done, or its peers have
        // nothing it lacks) gives its part back at once.
        let stalled = gate.set_download_demand(&name("s00"), false);
        assert_eq!(stalled.own.download, Some(cap / 3));
        assert!(
            stalled
                .changed
                .iter()
                .any(|(route, share)| *route == 1 && share.download == Some(8_000_000)),
            "{:?}",
            stalled.changed
        );
        // No cap: no part.
        gate.set_download_cap(None);
        assert_eq!(down(&gate, "s01"), None);
    }

    #[test]
    fn own_caps_in_a_nodes_news_change_the_parts_of_the_others_at_once() {
        let mut gate = many(3);
        let cap = 9_000_000;
        let down = |gate: &Gate<usize>, swarm: &str| gate.upload_share(&name(swarm)).download;
        gate.set_download_cap(Some(cap));
        for swarm in ["s00", "s01", "s02"] {
            gate.set_download_demand(&name(swarm), true);
        }
        assert_eq!(down(&gate, "s00"), Some(cap / 3));
        // s00's node lowers its own cap while it runs: its news says so,
        // and the other two share what it cannot use.
        let news = GateNews {
            upload: None,
            download: None,
            caps: Some(OwnCaps {
                upload: None,
                download: Some(1_000_000),
            }),
        };
        let grants = gate.handle_news(&name("s00"), news);
        assert_eq!(grants.own.download, Some(1_000_000));
        assert_eq!(grants.changed.len(), 2, "{:?}", grants.changed);
        assert!(
            grants
                .changed
                .iter()
                .all(|(_, share)| share.download == Some(4_000_000)),
            "{:?}",
            grants.changed
        );
        // And raises it again: an even part each.
        let news = GateNews {
            caps: Some(OwnCaps::default()),
            ..news
        };
        let grants = gate.handle_news(&name("s00"), news);
        assert_eq!(grants.own.download, Some(cap / 3));
        assert_eq!(down(&gate, "s02"), Some(cap / 3));
    }

    #[test]
    fn the_endpoints_upload_cap_goes_to_the_swarms_that_upload_in_proportion_to_their_slots() {
        let mut gate = many(4);
        let cap = 8_000_000;
        let grants = gate.set_upload_cap(Some(cap));
        assert_eq!(grants.changed.len(), 4, "every idle swarm hears the cap");
        assert!(
            grants
                .changed
                .iter()
                .all(|(_, share)| share.rate == Some(cap))
        );
        // One uploads: all of it; the idle ones, what the next one would get.
        let busy = gate.set_upload_demand(&name("s00"), want(8));
        assert_eq!(
            busy.own,
            Share {
                slots: 8,
                rate: Some(cap),
                download: None,
            }
        );
        assert_eq!(gate.upload_share(&name("s01")).rate, Some(cap / 9));
        // Two upload with 6 and 2 slots: 3/4 and 1/4 of it.
        gate.set_upload_demand(&name("s01"), want(2));
        assert_eq!(
            gate.upload_share(&name("s00")),
            Share {
                slots: 6,
                rate: Some(cap * 6 / 8),
                download: None,
            }
        );
        assert_eq!(
            gate.upload_share(&name("s01")),
            Share {
                slots: 2,
                rate: Some(cap * 2 / 8),
                download: None,
            }
        );
        // A part above a swarm's own cap goes to the others.
        gate.set_own_cap(&name("s01"), Some(100_000));
        assert_eq!(gate.upload_share(&name("s01")).rate, Some(100_000));
        assert_eq!(gate.upload_share(&name("s00")).rate, Some(cap - 100_000));
        gate.set_own_cap(&name("s01"), None);
        // One that stops uploading holds the idle part again.
        gate.set_upload_demand(&name("s01"), want(0));
        assert_eq!(gate.upload_share(&name("s01")).rate, Some(cap / 9));
        assert_eq!(gate.upload_share(&name("s00")).rate, Some(cap));
        // A cap as large as a u64 holds: parts, not an overflow.
        gate.set_upload_cap(Some(u64::MAX));
        gate.set_upload_demand(&name("s01"), want(8));
        assert_eq!(gate.upload_share(&name("s00")).rate, Some(u64::MAX / 2));
        // Removed, the cap no longer limits anyone.
        let freed = gate.set_upload_cap(None);
        assert!(freed.changed.iter().all(|(_, share)| share.rate.is_none()));
    }

    #[test]
    fn a_closed_gate_or_one_without_swarms_refuses_everything() {
        let mut empty: Gate<()> = Gate::new(NodeConfig::default());
        let now = Instant::now();
        assert_eq!(
            empty.handle_incoming(addr(1, 1), true, now),
            Door::Refuse {
                reason: Refusal::NotAccepting
            }
        );
        let mut gate = gate();
        accepted(gate.handle_incoming(addr(1, 1), true, now));
        gate.close();
        assert_eq!(
            gate.handle_incoming(addr(2, 1), true, now),
            Door::Refuse {
                reason: Refusal::NotAccepting
            }
        );
        let refusal = gate.route_hello(Ticket(0), &hello("a", 1)).unwrap_err();
        assert_eq!(refusal.reason, HelloRejectReason::UnknownSwarm);
    }
}
