//! Getting and losing peers: incoming connections and their admission,
//! dials (several addresses staggered, first handshake wins), reconnects
//! with back-off, eviction, and the end of a link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_wire::{
    ChunkIndex, ControlStream, GoodbyeReason, HandshakeFailure, HaveBitfield, Hello,
    HelloRejectReason, Message, PeerEntry, PeerFlags, PeerId,
};

use super::{Action, KnownPeer, Link, NodeCore, Peer};
use crate::address::{Prefix, canonical, reachable_from, scope};
use crate::book::{AddressBook, EntryId, EntryState, Source};
use crate::ends::Rejection;
use crate::ids::LinkId;
use crate::portmap::MapState;
use crate::report::{Departure, LinkEnd, NodeReport, Problem, Refusal, Tried};
use crate::upload::TokenBucket;

/// The back-off step a node linked to nobody stays at while it is turned
/// away for lack of room: about 4 s (`redial_initial` doubled twice).
const STRANDED_FAILURES: u32 = 3;

/// What to do with an incoming connection before its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Run the handshake as `link`, within `deadline`.
    Accept {
        /// Its link.
        link: LinkId,
        /// Its deadline (TLS and Hello together).
        deadline: Instant,
    },
    /// Answer with a QUIC Retry: the source must prove its address first.
    Retry,
    /// Refuse it at once (a [`NodeReport::Turned`] says so).
    Refuse {
        /// Why.
        reason: Refusal,
    },
}

/// The dialer's first message on an incoming link
/// (`docs/wire-protocol.md` 8.5 and 8.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    /// A Hello (when the core answers it, the handshake has bound it to
    /// this node's swarm; a shared endpoint routes it by its model id and
    /// root first).
    Hello(Hello),
    /// A manifest query for the manifest with this SHA-256.
    Manifest([u8; 32]),
    /// A chunk list query for the chunk list of the manifest with this
    /// SHA-256.
    ChunkList([u8; 32]),
}

impl First {
    /// The manifest a query names (`None` for a Hello): the one the
    /// gate routes it by.
    pub fn query_digest(&self) -> Option<&[u8; 32]> {
        match self {
            First::Hello(_) => None,
            First::Manifest(digest) | First::ChunkList(digest) => Some(digest),
        }
    }
}

/// How this node answers the dialer's first message
/// ([`NodeCore::handle_first`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Admitted: our Hello and bitfield go back.
    Admit(Hello, HaveBitfield),
    /// A manifest query answered with these bytes.
    Serve(Arc<[u8]>),
    /// A chunk list query answered with this list: its hashes, and each
    /// chunk's length when the swarm's chunks are listed
    /// (`slm-parts-merkle-v0`, sent as ListedChunks).
    ServeChunkList {
        /// `H[0]` to `H[count - 1]`.
        hashes: Arc<[[u8; 32]]>,
        /// The chunks' lengths, for a swarm whose chunks are listed.
        lengths: Option<Arc<[u32]>>,
    },
    /// Refused: the HelloReject goes back.
    Refuse(Rejection),
}

/// How a handshake that gave no session ends, as the core takes it: a
/// refusal of our Hello keeps the peers it names (to be handed to
/// [`NodeCore::handle_hello_rejected`]), anything else is the link's end,
/// the peer's fault only when it broke the protocol.
pub fn handshake_end(failure: HandshakeFailure) -> Result<LinkEnd, Rejection> {
    match failure {
        HandshakeFailure::Peer(error) => Ok(LinkEnd::of_peer_error(error)),
        HandshakeFailure::Rejected {
            reason,
            detail,
            peers,
        } => Err(Rejection {
            reason,
            detail,
            peers,
        }),
        HandshakeFailure::Refused { reason, detail } => Ok(LinkEnd::Refused { reason, detail }),
        HandshakeFailure::Goodbye(_) | HandshakeFailure::Ended => Ok(LinkEnd::ClosedByPeer),
        HandshakeFailure::Local(error) => Ok(LinkEnd::Local(error.into())),
    }
}

/// A finished handshake.
#[derive(Debug, Clone)]
pub struct LinkUp {
    /// The id the peer proved.
    pub peer: PeerId,
    /// Where it is.
    pub remote: SocketAddr,
    /// Its Hello.
    pub hello: Hello,
    /// Its bitfield.
    pub bitfield: HaveBitfield,
    /// The control stream's state after the handshake.
    pub control: ControlStream,
    /// The congestion controller that paces what we send it, as the
    /// transport names it (`None` where there is no transport to ask).
    pub congestion: Option<&'static str>,
}

impl NodeCore {
    /// Peers to reach (offers, `--peer`, a DHT): kept in the address book
    /// and dialed when there is room and a reason.
    pub fn add_peer(&mut self, peer: KnownPeer, now: Instant) {
        if peer
            .id
            .is_some_and(|id| id == self.local_id || self.book.is_banned(&id))
        {
            return;
        }
        let addrs: Vec<SocketAddr> = peer
            .addrs
            .iter()
            .copied()
            .filter(|addr| {
                peer.source == Source::Offer || scope(*addr) != crate::address::Scope::Unusable
            })
            .collect();
        if addrs.is_empty() {
            return;
        }
        self.book.learn(peer.id, &addrs, peer.source, now);
        self.dial_due(now);
    }

    /// An incoming connection's first packet: accept, ask for a Retry, or
    /// refuse (`validated`: QUIC has proven the source address).
    pub fn handle_incoming(
        &mut self,
        remote: SocketAddr,
        validated: bool,
        now: Instant,
    ) -> Incoming {
        let prefix = Prefix::of(remote.ip());
        match self.admit_first_packet(prefix, validated) {
            Ok(()) => {}
            Err(None) => return Incoming::Retry,
            Err(Some(reason)) => {
                self.reports.push_back(NodeReport::Turned {
                    addr: remote,
                    reason,
                });
                return Incoming::Refuse { reason };
            }
        }
        let link = self.new_link();
        let deadline = now + self.config.handshake_timeout;
        self.links.insert(
            link,
            Link::Handshaking {
                remote,
                prefix,
                deadline,
                admitted: None,
                crowded: false,
            },
        );
        Incoming::Accept { link, deadline }
    }

    /// A connection an endpoint shared with other swarms let in and
    /// routed here by its first message (`crate::gate`): admitted as
    /// [`Self::handle_incoming`] admits a validated one, as link `link`
    /// that ends at its own deadline or at the endpoint's `deadline`,
    /// whichever comes first (its place at the gate counts until then), or
    /// refused with the HelloReject to send
    /// (NotServing when this node takes no connection now, TooManyPeers
    /// when its own handshakes are full; a [`NodeReport::Turned`] says so).
    /// Without `room` at the endpoint (`crate::gate::Routed::room`), its
    /// Hello is refused as a full node refuses one, naming other peers.
    pub fn handle_routed(
        &mut self,
        remote: SocketAddr,
        room: bool,
        deadline: Instant,
        now: Instant,
    ) -> Result<LinkId, Rejection> {
        match self.handle_incoming(remote, true, now) {
            Incoming::Accept { link, .. } => {
                if let Some(Link::Handshaking {
                    crowded,
                    deadline: own,
                    ..
                }) = self.links.get_mut(&link)
                {
                    *crowded = !room;
                    *own = deadline.min(*own);
                }
                Ok(link)
            }
            Incoming::Refuse { reason } => Err(Rejection {
                reason: match reason {
                    Refusal::NotAccepting => HelloRejectReason::NotServing,
                    Refusal::PrefixHandshakes { .. }
                    | Refusal::Handshakes { .. }
                    | Refusal::PrefixLinks { .. }
                    | Refusal::Peers { .. } => HelloRejectReason::TooManyPeers,
                },
                detail: reason.to_string(),
                peers: Vec::new(),
            }),
            // A validated address is never sent a Retry.
            Incoming::Retry => Err(Rejection {
                reason: HelloRejectReason::TooManyPeers,
                detail: "busy".into(),
                peers: Vec::new(),
            }),
        }
    }

    /// Whether a first packet from `prefix` may start a handshake: `Ok`,
    /// a Retry first (`Err(None)`), or a refusal.
    fn admit_first_packet(&self, prefix: Prefix, validated: bool) -> Result<(), Option<Refusal>> {
        let handshakes = self.links.values().filter_map(|link| match link {
            Link::Handshaking { prefix, .. } => Some(*prefix),
            _ => None,
        });
        let (mut handshaking, mut from_prefix) = (0, 0);
        for p in handshakes {
            handshaking += 1;
            from_prefix += usize::from(p == prefix);
        }
        crate::gate::admit_first_packet(
            &self.config,
            self.listen.is_some() && !self.winding_down(),
            handshaking,
            from_prefix,
            prefix,
            validated,
        )
    }

    /// The dialer's first message on incoming link `link` from `peer`: its
    /// Hello ([`NodeCore::handle_hello`]), a manifest query
    /// ([`NodeCore::handle_manifest_request`]) or a chunk list query
    /// ([`NodeCore::handle_chunk_list_request`]), answered.
    pub fn handle_first(
        &mut self,
        link: LinkId,
        peer: PeerId,
        first: &First,
        now: Instant,
    ) -> Answer {
        let answer = match first {
            First::Hello(hello) => self
                .handle_hello(link, peer, hello, now)
                .map(|(hello, have)| Answer::Admit(hello, have)),
            First::Manifest(digest) => self
                .handle_manifest_request(link, peer, *digest, now)
                .map(Answer::Serve),
            First::ChunkList(digest) => self
                .handle_chunk_list_request(link, peer, *digest, now)
                .map(|hashes| Answer::ServeChunkList {
                    lengths: self.chunk_lengths.clone(),
                    hashes,
                }),
        };
        answer.unwrap_or_else(Answer::Refuse)
    }

    /// The Hello of an incoming link: admit it (our Hello and bitfield to
    /// send back) or refuse it. An admitted peer holds a slot until its link is up or
    /// fails. When every slot is taken, a peer idle for
    /// `evict_idle_after` makes room, or for `evict_for_refused_after`
    /// when the newcomer was turned away for lack of room before.
    pub fn handle_hello(
        &mut self,
        link: LinkId,
        peer: PeerId,
        hello: &Hello,
        now: Instant,
    ) -> Result<(Hello, HaveBitfield), Rejection> {
        let reject = |reason, detail: &str| Rejection {
            reason,
            detail: detail.to_owned(),
            peers: Vec::new(),
        };
        let Some(&Link::Handshaking {
            remote,
            prefix,
            crowded,
            ..
        }) = self.links.get(&link)
        else {
            return Err(reject(HelloRejectReason::TooManyPeers, "too late"));
        };
        // The version is the connection's (the wire's handshake checked
        // it against the ALPN); the rest must be our swarm's.
        let versioned = self.swarm.clone().with_version(hello.protocol_version);
        if versioned.check_hello(hello).is_err() {
            return Err(reject(HelloRejectReason::WrongSwarm, "another swarm"));
        }
        if !self.serve {
            return Err(reject(
                HelloRejectReason::NotServing,
                "this peer does not serve",
            ));
        }
        if self.book.is_banned(&peer) {
            return Err(reject(
                HelloRejectReason::Banned,
                "banned for sending bad data",
            ));
        }
        if peer == self.local_id {
            return Err(reject(HelloRejectReason::TooManyPeers, "that is us"));
        }
        // A peer of this swarm, let in or not: it counts toward the
        // swarm's size a sparing seed estimates.
        if let Some(sparing) = &mut self.sparing {
            sparing.saw(peer, remote.ip(), now);
        }
        let existing = self
            .peers()
            .find(|(_, p)| p.id == peer)
            .map(|(l, p)| (l, p.dialed, super::is_relay_path(p.remote)));
        match existing {
            // It dialed us before and dials again: restarted (killed before
            // its old connection timed out). The new link replaces the old.
            Some((_, false, _)) => {}
            // A direct link to a peer we reach through a relay only: it
            // takes the relayed link's place (`handle_link_up`).
            Some((_, true, true)) if !super::is_relay_path(remote) => {}
            Some(_) => {
                return Err(reject(HelloRejectReason::TooManyPeers, "already connected"));
            }
            None => {
                // A peer turned away for lack of room before and back
                // again has found no room anywhere it heard of: an idle
                // link of a few seconds makes room for it.
                let patience = if self.refused.contains(&peer) {
                    self.config
                        .evict_for_refused_after
                        .min(self.config.evict_idle_after)
                } else {
                    self.config.evict_idle_after
                };
                // A prefix at its limit makes room only in place of one
                // of its own idle incoming peers (whose place at a shared
                // endpoint's gate then goes to this one too).
                let limit = self.config.max_links_per_prefix;
                let mut made_room = false;
                if self.links_from(prefix) >= limit {
                    if !self.evict_one(true, Some(prefix), patience, now) {
                        return Err(self.full(
                            peer,
                            hello,
                            remote,
                            format!("serving the maximum of {limit} peers from {prefix}"),
                            now,
                        ));
                    }
                    made_room = true;
                }
                // No room at the shared endpoint: only in place of an idle
                // peer of this swarm (its place at the gate goes to this one).
                if crowded && !made_room && !self.evict_one(true, None, patience, now) {
                    let detail = "the endpoint serves its maximum of peers over its swarms";
                    return Err(self.full(peer, hello, remote, detail.into(), now));
                }
                let taken = self.connected_count() + self.admitted_count();
                if taken >= self.config.max_peers && !self.evict_one(false, None, patience, now) {
                    let detail = format!("serving the maximum of {} peers", self.config.max_peers);
                    return Err(self.full(peer, hello, remote, detail, now));
                }
            }
        }
        self.refused.retain(|id| *id != peer);
        let have = self.advertised_have();
        if let Some(Link::Handshaking { admitted, .. }) = self.links.get_mut(&link) {
            *admitted = Some((peer, have.clone()));
        }
        Ok((self.hello_to(remote), have))
    }

    /// Our Hello to a peer we see at `remote`: it names that address
    /// (`observed`, which tells a peer behind a NAT its public address),
    /// where we listen (the router's outside address while it maps a port
    /// for us, else the bound one) and our LAN addresses when we listen.
    pub fn hello_to(&self, remote: SocketAddr) -> Hello {
        let mut hello = self.hello.clone();
        hello.listen = self.listen.map(|bound| self.mapped.unwrap_or(bound));
        hello.observed = Some(minimodel_wire::canonical_addr(remote));
        hello
    }

    /// SHA-256 of the manifest this node hands to manifest queries, if
    /// any ([`NodeStart::manifest`](super::NodeStart::manifest)).
    pub fn manifest_sha256(&self) -> Option<[u8; 32]> {
        self.manifest.as_ref().map(|(sha256, _)| *sha256)
    }

    /// Our port mapping as the mapper reports it, at the start and on every
    /// change (`None`: this node asks for none). While a mapping is held,
    /// our Hellos name its outside address as where we listen. While the
    /// router's first answer is awaited, at most
    /// [`NodeConfig::mapping_wait`](crate::config::NodeConfig::mapping_wait)
    /// from the first report, the Hellos of links we dialed wait
    /// ([`NodeCore::hello_held`]).
    pub fn set_mapping(&mut self, state: Option<MapState>, now: Instant) {
        self.mapped = state.and_then(|state| state.external);
        let asking = state.is_some_and(|state| !state.settled);
        self.mapping_settled |= state.is_some_and(|state| state.settled);
        self.hellos_wait_until = if asking && !self.mapping_settled {
            Some(
                self.hellos_wait_until
                    .unwrap_or(now + self.config.mapping_wait),
            )
        } else {
            None
        };
        self.standing_mapping(state.is_some(), now);
    }

    /// Whether the Hello of a link we dialed waits now (for our router's
    /// first answer about a port mapping, [`NodeCore::set_mapping`]): the
    /// driver sends it once this is false, which [`NodeCore::poll_timeout`]
    /// wakes it for. An incoming peer's Hello is answered at once, with
    /// what is known then.
    pub fn hello_held(&self, now: Instant) -> bool {
        self.hellos_wait_until.is_some_and(|until| now < until)
    }

    /// Incoming links from `prefix`: connected, or admitted at their Hello.
    fn links_from(&self, prefix: Prefix) -> usize {
        self.links
            .values()
            .filter(|link| match link {
                Link::Handshaking {
                    prefix: p,
                    admitted: Some(_),
                    ..
                } => *p == prefix,
                Link::Up(peer) => !peer.dialed && peer.prefix == prefix,
                _ => false,
            })
            .count()
    }

    /// The refusal of a Hello for lack of room: it names other peers the
    /// dialer may try, while the refusals' budget lasts, so that a peer
    /// turned away at the door still finds the swarm: first the serving
    /// peers turned away just before it (newest first, at most half of the
    /// names: latecomers find each other, not only peers as full as this
    /// one), then connected serving peers (as peer exchange would tell
    /// it); only addresses it can reach, at most 32. A serving dialer is
    /// then remembered as turned away itself, at the IP address it was
    /// seen at and the port its Hello names, unless it is behind a NAT
    /// router.
    fn full(
        &mut self,
        peer: PeerId,
        hello: &Hello,
        remote: SocketAddr,
        detail: String,
        now: Instant,
    ) -> Rejection {
        self.refused.retain(|id| *id != peer);
        if self.refused.len() >= super::TURNED_AWAY {
            self.refused.pop_front();
        }
        self.refused.push_back(peer);
        let at = canonical(remote.ip());
        let mut peers: Vec<PeerEntry> = Vec::new();
        // The rate follows the measured uplink (never below the fixed one).
        let rate = crate::config::refusal_rate(
            self.config.refusal_peers_per_second,
            self.uploads.meter.rate(),
            self.config.refusal_uplink_share,
        );
        self.refusal_budget.set_rate(rate, 2 * rate, now);
        if self.refusal_budget.try_take(1, now) {
            let reachable =
                |entry: &PeerEntry| entry.id != peer && reachable_from(entry.addr, remote.ip());
            // Not one seen at the dialer's own address (itself under
            // another id, or behind its router), nor one banned since.
            peers.extend(
                self.turned_away
                    .iter()
                    .rev()
                    .filter(|entry| {
                        reachable(entry)
                            && canonical(entry.addr.ip()) != at
                            && !self.book.is_banned(&entry.id)
                    })
                    .take(minimodel_wire::MAX_PEERS_PER_MESSAGE / 2)
                    .copied(),
            );
            let mut serving: Vec<PeerEntry> = self
                .serving_peers()
                .filter(|entry| reachable(entry) && !peers.iter().any(|p| p.id == entry.id))
                .collect();
            // Each refused peer hears of another part of a large swarm.
            if !serving.is_empty() {
                let start = (self.rng.next_u64() % serving.len() as u64) as usize;
                serving.rotate_left(start);
            }
            peers.extend(serving);
            peers.truncate(minimodel_wire::MAX_PEERS_PER_MESSAGE);
        }
        // One behind a NAT router (its Hello lists LAN addresses and it is
        // seen at another IP address) cannot be dialed at the address it is
        // seen at, and we are not linked to introduce it.
        let lan = hello
            .lan
            .iter()
            .filter(|addr| minimodel_wire::is_lan_addr(**addr));
        let behind_nat = lan.clone().next().is_some()
            && hello
                .listen
                .is_none_or(|listen| canonical(listen.ip()) != at)
            && !lan.clone().any(|addr| canonical(addr.ip()) == at);
        if let (true, Some(listen), false) = (hello.serving, hello.listen, behind_nat) {
            // One entry per host: per IPv4 address, per IPv6 /64 (one
            // host may hold a whole /64).
            let host = |ip: std::net::IpAddr| match canonical(ip) {
                v4 @ std::net::IpAddr::V4(_) => Ok(v4),
                v6 => Err(Prefix::of(v6)),
            };
            self.turned_away
                .retain(|entry| entry.id != peer && host(entry.addr.ip()) != host(at));
            if self.turned_away.len() >= super::TURNED_AWAY {
                self.turned_away.pop_front();
            }
            self.turned_away.push_back(PeerEntry {
                id: peer,
                addr: SocketAddr::new(at, listen.port()),
                flags: minimodel_wire::PeerFlags::default(),
            });
        }
        Rejection {
            reason: HelloRejectReason::TooManyPeers,
            detail,
            peers,
        }
    }

    /// An incoming connection asks for the manifest whose SHA-256 is
    /// `digest` instead of sending a Hello (a manifest query,
    /// `docs/wire-protocol.md` 8.6). It is answered with the manifest only
    /// when this node serves and that is its swarm's manifest, and never to
    /// a banned peer; the link ends either way (one answer per connection,
    /// reported as [`NodeReport::ManifestQuery`]): it closes once the
    /// driver says the answer went out, or at the latest `goodbye_wait`
    /// from `now` (within its handshake's deadline), when it is aborted.
    /// `Ok`: the bytes to send.
    pub fn handle_manifest_request(
        &mut self,
        link: LinkId,
        peer: PeerId,
        digest: [u8; 32],
        now: Instant,
    ) -> Result<Arc<[u8]>, Rejection> {
        self.handle_query(link, peer, digest, false, now, |core| {
            core.manifest.as_ref().map(|(_, bytes)| Arc::clone(bytes))
        })
    }

    /// An incoming connection asks for the chunk list of the manifest
    /// whose SHA-256 is `digest` (a chunk list query,
    /// `docs/wire-protocol.md`): answered as a manifest query is
    /// ([`Self::handle_manifest_request`]), with the whole list when this
    /// node holds it ([`NodeStart::chunk_list`](super::NodeStart::chunk_list),
    /// [`Self::set_chunk_list`]), refused with `NoChunkList` while it does
    /// not (a download not yet delivered).
    pub fn handle_chunk_list_request(
        &mut self,
        link: LinkId,
        peer: PeerId,
        digest: [u8; 32],
        now: Instant,
    ) -> Result<Arc<[[u8; 32]]>, Rejection> {
        self.handle_query(link, peer, digest, true, now, |core| {
            core.chunk_list.clone()
        })
    }

    /// The chunk list a chunk list query is answered with from now on:
    /// a download's, once delivered.
    pub fn set_chunk_list(&mut self, hashes: Arc<[[u8; 32]]>) {
        if hashes.len() == self.params.chunk_count() as usize {
            self.chunk_list = Some(hashes);
        }
    }

    /// A manifest or chunk list query (`chunk_list`) for `digest`: never
    /// to a node that does not serve or a banned peer, only for this
    /// node's manifest, then `what` this node holds (`None`: a chunk list
    /// it does not hold whole). The link ends either way.
    fn handle_query<T>(
        &mut self,
        link: LinkId,
        peer: PeerId,
        digest: [u8; 32],
        chunk_list: bool,
        now: Instant,
        what: impl FnOnce(&Self) -> Option<T>,
    ) -> Result<T, Rejection> {
        let reject = |reason, detail: &str| Rejection {
            reason,
            detail: detail.to_owned(),
            peers: Vec::new(),
        };
        let Some(&Link::Handshaking {
            remote,
            prefix,
            deadline,
            ..
        }) = self.links.get(&link)
        else {
            return Err(reject(HelloRejectReason::TooManyPeers, "too late"));
        };
        // Chunk list answers being sent, in all and to this prefix.
        let (answering, from_prefix) = self
            .links
            .values()
            .filter_map(|link| match link {
                Link::Closing {
                    answering: Some(to),
                    ..
                } => Some(*to),
                _ => None,
            })
            .fold((0, 0), |(all, here), to| {
                (all + 1, here + usize::from(to == prefix))
            });
        let answer = if !self.serve {
            Err(reject(
                HelloRejectReason::NotServing,
                "this peer does not serve",
            ))
        } else if self.book.is_banned(&peer) {
            Err(reject(
                HelloRejectReason::Banned,
                "banned for sending bad data",
            ))
        } else if self.manifest_sha256() != Some(digest) {
            Err(reject(
                HelloRejectReason::UnknownManifest,
                "no manifest with that SHA-256 here",
            ))
        } else if chunk_list
            && (answering >= self.config.max_chunk_list_answers
                || from_prefix >= self.config.max_chunk_list_answers_per_prefix)
        {
            Err(reject(
                HelloRejectReason::TooManyPeers,
                "sending as many chunk lists as it may; ask again later",
            ))
        } else {
            what(self).ok_or_else(|| {
                reject(
                    HelloRejectReason::NoChunkList,
                    "not the whole chunk list yet",
                )
            })
        };
        // The answer goes out within `goodbye_wait` (and the handshake's
        // deadline); a chunk list's, within that and its length at the
        // slowest rate it is given time for, and it counts as an answer
        // being sent until then.
        let closing = match (&answer, chunk_list) {
            (Ok(_), true) => {
                let entry = if self.params.is_listed() { 36 } else { 32 };
                let bytes = entry * self.chunk_list.as_ref().map_or(0, |list| list.len() as u64);
                let rate = self.config.chunk_list_answer_rate.max(1);
                let sending = Duration::from_secs_f64(bytes as f64 / rate as f64);
                Link::Closing {
                    deadline: now + self.config.goodbye_wait + sending,
                    answering: Some(prefix),
                }
            }
            _ => Link::Closing {
                deadline: deadline.min(now + self.config.goodbye_wait),
                answering: None,
            },
        };
        self.links.insert(link, closing);
        self.reports.push_back(NodeReport::ManifestQuery {
            peer,
            addr: remote,
            chunk_list,
            refused: answer.as_ref().err().map(|rejection| rejection.reason),
        });
        answer
    }

    /// A peer we dialed refused our Hello: what it said ends the link, and
    /// the peers it named are learned like peer exchange (at most 32,
    /// filtered by scope and bans, dialed with the short deadline of an
    /// unverified address). The refuser waits for its back-off.
    pub fn handle_hello_rejected(&mut self, link: LinkId, rejection: Rejection, now: Instant) {
        let refuser = match self.links.get(&link) {
            Some(Link::Dialing { addr, .. }) => Some(*addr),
            _ => None,
        };
        let Rejection {
            reason,
            detail,
            peers,
        } = rejection;
        self.handle_link_failed(link, LinkEnd::Refused { reason, detail }, now);
        let Some(refuser) = refuser else {
            return;
        };
        if !self.wants_peers() {
            return;
        }
        for entry in peers
            .into_iter()
            .take(minimodel_wire::MAX_PEERS_PER_MESSAGE)
        {
            if entry.id == self.local_id
                || self.book.is_banned(&entry.id)
                || !reachable_from(entry.addr, refuser.ip())
                || self.book.find_id(&entry.id).is_some()
            {
                continue;
            }
            self.book
                .learn(Some(entry.id), &[entry.addr], Source::Exchange, now);
        }
        self.dial_due(now);
    }

    fn admitted_count(&self) -> usize {
        self.links
            .values()
            .filter(|link| {
                matches!(
                    link,
                    Link::Handshaking {
                        admitted: Some(_),
                        ..
                    }
                )
            })
            .count()
    }

    /// The endpoint this swarm shares holds more of its incoming peers
    /// than its fair part `keep` while another swarm is below its own
    /// (`crate::gate::Routed::shed`): while this swarm holds more than
    /// `keep` incoming peers not already leaving, closes the one idle
    /// longest, if one has been idle for `evict_idle_after`, so that the
    /// other swarm's next Hello finds room. Never below `keep`, never a
    /// peer we dialed or one busy. Whether one was closed.
    pub fn shed_idle_incoming(&mut self, keep: usize, now: Instant) -> bool {
        let incoming = self
            .peers()
            .filter(|(_, peer)| !peer.dialed && !peer.leaving)
            .count();
        let limit = self.config.evict_idle_after;
        incoming > keep && self.evict_one(true, None, limit, now)
    }

    /// Closes the peer that has been idle longest, if one has been idle
    /// for `limit` (`incoming`: only one that dialed us, whose place at a
    /// shared endpoint's gate a new one takes; `from`: only one of that
    /// prefix). Whether one was.
    fn evict_one(
        &mut self,
        incoming: bool,
        from: Option<Prefix>,
        limit: Duration,
        now: Instant,
    ) -> bool {
        let idle = self
            .peers()
            .filter(|(link, peer)| {
                !peer.leaving
                    && (!incoming || !peer.dialed)
                    && from.is_none_or(|prefix| peer.prefix == prefix)
                    && now.saturating_duration_since(peer.last_useful) >= limit
                    && !self.uploads.is_busy(*link)
                    && self
                        .download
                        .as_ref()
                        .is_none_or(|d| !d.is_busy_with(*link))
            })
            .min_by_key(|(_, peer)| peer.last_useful)
            .map(|(link, _)| link);
        match idle {
            Some(link) => {
                self.close_peer(link, GoodbyeReason::TooManyPeers, Departure::Evicted, now);
                true
            }
            None => false,
        }
    }

    /// What we tell a peer we have: nothing unless we serve.
    pub(super) fn advertised_have(&self) -> HaveBitfield {
        if self.serve {
            self.have.clone()
        } else {
            HaveBitfield::new(self.params.chunk_count())
        }
    }

    /// A handshake finished: the link is up.
    pub fn handle_link_up(&mut self, link: LinkId, up: LinkUp, now: Instant) {
        let Some(state) = self.links.remove(&link) else {
            self.actions.push_back(Action::Abort { link });
            return;
        };
        let (dialed, entry, sent_have, dialed_addr) = match state {
            Link::Dialing {
                entry, sent, addr, ..
            } => (true, Some(entry), sent, Some(addr)),
            Link::Handshaking { admitted, .. } => match admitted {
                Some((id, sent)) if id == up.peer => (false, None, sent, None),
                _ => {
                    self.actions.push_back(Action::Abort { link });
                    return;
                }
            },
            state @ (Link::Up(_) | Link::Closing { .. }) => {
                self.links.insert(link, state);
                return;
            }
        };
        let id = up.peer;
        if self.book.is_banned(&id) || id == self.local_id || self.ended {
            self.actions.push_back(Action::Close {
                link,
                reason: GoodbyeReason::Done,
            });
            if let Some(entry) = self.book.get_mut_opt(entry) {
                entry.state = EntryState::Retired;
            }
            return;
        }
        // The same peer twice (both dialed at once, or it restarted): keep
        // one. Two peers that dial each other keep the link the lower id
        // dialed; a peer that dials us again was restarted.
        let existing = self
            .peers()
            .find(|(_, p)| p.id == id)
            .map(|(l, p)| (l, p.dialed, super::is_relay_path(p.remote)));
        if let Some((old, old_dialed, old_relayed)) = existing {
            let me = self.local_id;
            let preferred = |we_dialed: bool| (me < id) == we_dialed;
            let redialed = !old_dialed && !dialed;
            let new_relayed = super::is_relay_path(up.remote);
            // A direct link takes a relayed one's place, and a relayed one
            // never takes a direct one's; otherwise the tie rule.
            let keep_old = match (old_relayed, new_relayed) {
                (true, false) => false,
                (false, true) => true,
                _ => !redialed && (preferred(old_dialed) || !preferred(dialed)),
            };
            if keep_old {
                self.actions.push_back(Action::Close {
                    link,
                    reason: GoodbyeReason::Done,
                });
                return;
            }
            self.close_peer(old, GoodbyeReason::Done, Departure::Replaced, now);
        }
        let entry = match entry {
            Some(entry) => Some(self.book.identify(entry, id)),
            None => self
                .book
                .learn(Some(id), &[], Source::Incoming, now)
                .or_else(|| self.book.find_id(&id)),
        };
        // Two peers that dial each other at once (an introduction makes
        // both dial) keep the link the lower id dialed. When that is our
        // dial and the peer's link came up first, our dial goes on: the
        // peer drops its own link once ours reaches it, and ours replaces
        // it here when it comes up. Aborting it would leave no link at all.
        // A link through a relay keeps the direct dials going too: one
        // that gets through takes its place.
        let keep_dials = (!dialed && self.local_id < id) || super::is_relay_path(up.remote);
        if let Some(entry) = entry.and_then(|entry| self.book.get_mut(entry)) {
            // Other dials to the same peer are not needed any more.
            if let EntryState::Dialing { links, .. } = &entry.state {
                for (other, _) in links {
                    if *other != link && !keep_dials {
                        self.actions.push_back(Action::Abort { link: *other });
                    }
                }
            }
            entry.state = EntryState::Connected(link);
            entry.ever_connected = true;
            entry.failures = 0;
        }
        // The address that answered goes first: the next dial, the
        // receipt and the remembered peers name it, not a dead one
        // listed before it (a relay path is no address of the peer's).
        if let (Some(entry), Some(addr)) = (entry, dialed_addr)
            && !super::is_relay_path(addr)
        {
            self.book.prefer(entry, &[addr]);
        }
        let remote = up.remote;
        let listen = up
            .hello
            .listen
            .map(|listen| SocketAddr::new(canonical(remote.ip()), listen.port()));
        let count = self.params.chunk_count();
        let peer = Peer {
            id,
            remote,
            prefix: Prefix::of(remote.ip()),
            dialed,
            entry,
            control: up.control,
            serving: up.hello.serving,
            listen,
            listens_where_seen: up
                .hello
                .listen
                .is_some_and(|claimed| canonical(claimed.ip()) == canonical(remote.ip())),
            downloading_from: false,
            has: up.bitfield.clone(),
            arriving: Default::default(),
            ever_requested: HaveBitfield::new(count),
            asked_from: std::collections::BTreeMap::new(),
            ever_asked_from: Default::default(),
            receive_window: 0,
            told: Default::default(),
            exchange_budget: exchange_budget(&self.config, now),
            uploaded_chunks: 0,
            uploaded_bytes: 0,
            last_useful: now,
            connected_at: now,
            // Its handshake just carried our Hello and bitfield.
            last_sent: now,
            upload_watch: None,
            leaving: false,
            goodbye: None,
            lan: up
                .hello
                .lan
                .iter()
                .copied()
                .filter(|addr| minimodel_wire::is_lan_addr(*addr))
                .take(minimodel_wire::MAX_LAN_ADDRS)
                .collect(),
            introductions: exchange_budget(&self.config, now),
            observed_us: up.hello.observed.map(minimodel_wire::canonical_addr),
            sent_to: None,
            spared: None,
        };
        if !keep_dials {
            self.links.retain(|other, state| {
                // Dials to this peer's other addresses lose.
                !(matches!(state, Link::Dialing { entry: e, .. } if Some(*e) == entry)
                    && *other != link)
            });
        }
        self.links.insert(link, Link::Up(Box::new(peer)));
        self.exchange_due = true;
        // Only a peer we dialed sees our outgoing mapping (one that dialed
        // us names the address it dialed); one through a relay sees a
        // relay path.
        if let Some(observed) = up
            .hello
            .observed
            .filter(|_| dialed && !super::is_relay_path(remote))
        {
            let before = self.observed.public();
            self.observed.record(id, remote, observed);
            let now_seen = self.observed.public();
            if let Some(public) = now_seen.filter(|_| now_seen != before) {
                self.reports.push_back(NodeReport::PublicAddress {
                    ip: public.ip,
                    port: match public.mapping {
                        crate::observed::Mapping::OnePort(port) => Some(port),
                        crate::observed::Mapping::PortPerPeer => None,
                    },
                    prefixes: public.prefixes,
                });
            }
        }
        let dialed_us = up.hello.observed.filter(|_| !dialed);
        self.standing_link_up(id, remote, dialed, dialed_us, now);
        self.relayed_link_up(id, remote, now);
        self.reports.push_back(NodeReport::PeerConnected {
            peer: id,
            addr: remote,
            dialed,
            serving: up.hello.serving,
            agent: up.hello.agent.clone(),
            congestion: up.congestion,
        });
        // Chunks verified while the handshake ran go as Have.
        if self.serve {
            let newer: Vec<ChunkIndex> = self
                .have
                .iter_ones()
                .filter(|chunk| !sent_have.get(*chunk))
                .collect();
            for chunk in newer {
                self.send(link, Message::Have { chunk }, now);
            }
        }
        self.uploads
            .add_peer(link, up.bitfield.clone(), up.hello.serving);
        if up.hello.serving {
            self.join_download(link, id, up.bitfield, now);
        }
        self.start_uploads(now);
        self.close_seed_links(now);
    }

    /// Whether this node needs nothing more: it holds every chunk and its
    /// download, if any, is delivered.
    fn is_seed(&self) -> bool {
        self.have.is_full() && self.download.as_ref().is_none_or(|d| d.is_delivered())
    }

    /// Two peers that both hold the whole file have nothing to trade: a
    /// seed closes its links to other seeds (Goodbye Done), so their slots
    /// go to peers that need them.
    pub(super) fn close_seed_links(&mut self, now: Instant) {
        if !self.is_seed() {
            return;
        }
        let full: Vec<LinkId> = self
            .peers()
            .filter(|(_, peer)| !peer.leaving && peer.has.is_full())
            .map(|(link, _)| link)
            .collect();
        for link in full {
            self.close_peer(link, GoodbyeReason::Done, Departure::Done, now);
        }
    }

    /// [`Self::close_seed_links`] after a Have from `link`: only that
    /// peer can have become a seed (a check per Have, not per link).
    pub(super) fn close_seed_link(&mut self, link: LinkId, now: Instant) {
        let full = self
            .peer(link)
            .is_some_and(|peer| !peer.leaving && peer.has.is_full());
        if full && self.is_seed() {
            self.close_peer(link, GoodbyeReason::Done, Departure::Done, now);
        }
    }

    /// A dial or an incoming handshake ended before its link was up: as
    /// [`handshake_end`] sees it, a refusal of our Hello
    /// ([`NodeCore::handle_hello_rejected`]) or another end
    /// ([`NodeCore::handle_link_failed`]).
    pub fn handle_attempt_ended(
        &mut self,
        link: LinkId,
        end: Result<LinkEnd, Rejection>,
        now: Instant,
    ) {
        match end {
            Ok(end) => self.handle_link_failed(link, end, now),
            Err(rejection) => self.handle_hello_rejected(link, rejection, now),
        }
    }

    /// A dial or an incoming handshake failed before its link was up.
    pub fn handle_link_failed(&mut self, link: LinkId, end: LinkEnd, now: Instant) {
        match self.links.remove(&link) {
            Some(Link::Dialing { entry, addr, .. }) => {
                self.reports.push_back(NodeReport::Refused {
                    addr,
                    reason: end.clone(),
                });
                self.dial_failed(entry, link, addr, &end, now);
            }
            Some(Link::Handshaking { remote, .. }) => {
                self.reports.push_back(NodeReport::Refused {
                    addr: remote,
                    reason: end,
                });
            }
            Some(up @ Link::Up(_)) => {
                // Not a handshake failure: the link was up already.
                self.links.insert(link, up);
                self.handle_closed(link, end, now);
            }
            // An answered manifest query whose answer did not get out.
            Some(Link::Closing { .. }) => self.try_finish_end(),
            None => {}
        }
    }

    /// A connected link ended (the peer left, the connection was lost, or
    /// it ended after our Goodbye). A peer that broke the protocol below the
    /// control stream is told so; one whose Goodbye was held for its
    /// uploads left by that Goodbye, whatever the end.
    pub fn handle_closed(&mut self, link: LinkId, end: LinkEnd, now: Instant) {
        // A Goodbye it sent comes first: it left, it did not fail.
        let held = self.peer(link).and_then(|peer| peer.goodbye.as_ref());
        if let Some(&(reason, _)) = held {
            self.take_goodbye(link, reason, now);
            return;
        }
        match self.links.get(&link) {
            Some(Link::Closing { .. }) => {
                self.links.remove(&link);
                self.try_finish_end();
            }
            Some(Link::Up(_)) => match end {
                LinkEnd::Violation(violation) => self.close_peer(
                    link,
                    GoodbyeReason::ProtocolViolation,
                    Departure::Violation(violation),
                    now,
                ),
                end => {
                    self.actions.push_back(Action::Abort { link });
                    self.remove_peer(link, Departure::Ended(end), now);
                }
            },
            Some(_) => self.handle_link_failed(link, end, now),
            None => {}
        }
    }

    /// Sends Goodbye and forgets the peer: its requests go back, its
    /// uploads stop. The driver closes the connection once the Goodbye is
    /// acknowledged; the link waits for that for `goodbye_wait`, and is
    /// aborted then.
    pub(super) fn close_peer(
        &mut self,
        link: LinkId,
        reason: GoodbyeReason,
        departure: Departure,
        now: Instant,
    ) {
        let Some(peer) = self.peer_mut(link) else {
            return;
        };
        if peer.leaving {
            return;
        }
        let goodbye = peer
            .control
            .check_send(&Message::Goodbye { reason })
            .is_ok();
        self.remove_peer(link, departure, now);
        if goodbye {
            self.actions.push_back(Action::Close { link, reason });
            let deadline = now + self.config.goodbye_wait;
            self.links.insert(
                link,
                Link::Closing {
                    deadline,
                    answering: None,
                },
            );
        } else {
            self.actions.push_back(Action::Abort { link });
        }
    }

    /// Forgets a connected peer.
    pub(super) fn remove_peer(&mut self, link: LinkId, departure: Departure, now: Instant) {
        let Some(super::Link::Up(peer)) = self.links.remove(&link) else {
            return;
        };
        self.uploads.remove_peer(link, &mut self.actions, now);
        self.leave_download(link, now);
        // Worth dialing again: it serves chunks this download still lacks
        // (the download may have let it go already, for timeouts or a stall).
        let useful = peer.serving
            && self.download.as_ref().is_some_and(|d| !d.is_complete())
            && peer.has.iter_ones().any(|chunk| !self.have.get(chunk));
        let blame = departure.blame();
        let replaced = matches!(departure, Departure::Replaced);
        let may_dial_again = blame != crate::report::Blame::Peer && !self.winding_down();
        // Our dial of the same peer that is still under way (see
        // `handle_link_up`): the entry is dialing again, and not redialed.
        let mut dialing: Vec<(LinkId, SocketAddr)> = match peer.entry {
            Some(key) => self
                .links
                .iter()
                .filter_map(|(l, state)| match state {
                    Link::Dialing { entry, addr, .. } if *entry == key => Some((*l, *addr)),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        if let Some(entry) = peer.entry.and_then(|entry| self.book.get_mut(entry)) {
            entry.last_problem = Some(Problem::Left(departure.clone()));
            if matches!(entry.state, EntryState::Connected(l) if l == link) {
                entry.state = EntryState::Waiting { next_attempt: now };
            }
        }
        if let Some(entry) = peer.entry {
            if self.book.is_banned(&peer.id) {
                if let Some(entry) = self.book.get_mut(entry) {
                    entry.state = EntryState::Banned;
                }
            } else if !dialing.is_empty() && may_dial_again {
                if let Some(entry) = self.book.get_mut(entry) {
                    entry.state = EntryState::Dialing {
                        links: std::mem::take(&mut dialing),
                        next_addr: entry.addrs.len(),
                        next_at: now,
                    };
                }
            } else if replaced {
                // The newer link of the same peer takes the entry over
                // (`handle_link_up`): nothing to redial, nobody to ask.
            } else if useful && may_dial_again {
                self.schedule_redial(entry, now);
            } else if let Some(entry) = self.book.get_mut(entry) {
                entry.state = EntryState::Retired;
            }
        }
        // Not kept (banned, blamed, stopping or ending): the dial ends,
        // and a handshake that completes on it afterwards is dropped.
        for (other, _) in dialing {
            self.links.remove(&other);
            self.actions.push_back(Action::Abort { link: other });
        }
        self.reports.push_back(NodeReport::PeerDisconnected {
            peer: peer.id,
            addr: peer.remote,
            reason: departure,
            blame,
            uploaded_chunks: peer.uploaded_chunks,
            uploaded_bytes: peer.uploaded_bytes,
        });
        self.start_uploads(now);
    }

    /// Bans `id` for the rest of this node's life (in the address book,
    /// the one record of bans).
    pub(super) fn ban(&mut self, id: PeerId) {
        self.book.ban(id);
    }

    /// Whether this node should be dialing peers now: it downloads and is
    /// not done.
    pub(super) fn wants_peers(&self) -> bool {
        !self.winding_down() && self.download.as_ref().is_some_and(|d| d.wants_peers())
    }

    /// When the next dial is due, if this node dials at all. A dial that
    /// waits for room (every peer slot taken, or every dial to an address
    /// from peer exchange in use) is not due: the link that frees the room
    /// ends at a deadline of its own or through an event.
    pub(super) fn next_dial_time(&self) -> Option<Instant> {
        let counts = self.links.summary(&self.config).counts;
        if !self.wants_peers() || counts.up + counts.dialing >= self.config.max_peers {
            return None;
        }
        let exchange_full = counts.exchange_dialing >= self.config.max_exchange_dials;
        self.book.next_dial(!exchange_full)
    }

    /// Starts the dials that are due, while there is room.
    pub(super) fn dial_due(&mut self, now: Instant) {
        // Nothing to do unless a dial is due that there is room for (a
        // full node or full exchange dials leave due entries waiting).
        if self.next_dial_time().is_none_or(|at| at > now) {
            return;
        }
        let due: Vec<EntryId> = self
            .book
            .iter()
            .filter(|(_, entry)| entry.next_dial().is_some_and(|at| at <= now))
            .map(|(key, _)| key)
            .collect();
        for key in due {
            let counts = self.links.summary(&self.config).counts;
            if counts.up + counts.dialing >= self.config.max_peers {
                return;
            }
            self.dial_next_address(key, now);
        }
    }

    /// Dials the entry's next address (its first one when it was
    /// waiting); [`crate::book::Entry::next_dial`] says when.
    pub(super) fn dial_next_address(&mut self, key: EntryId, now: Instant) {
        let exchange_dials = self.links.summary(&self.config).counts.exchange_dialing;
        let Some(entry) = self.book.get(key) else {
            return;
        };
        let exchange = entry.source.is_unverified();
        if exchange && exchange_dials >= self.config.max_exchange_dials {
            return;
        }
        let (index, mut links) = match &entry.state {
            EntryState::Waiting { .. } => (0, Vec::new()),
            EntryState::Dialing {
                links, next_addr, ..
            } => (*next_addr, links.clone()),
            _ => return,
        };
        let Some(&addr) = entry.addrs.get(index) else {
            return;
        };
        let peer = entry.id;
        let link = self.new_link();
        let timeout = if exchange {
            self.config.unverified_dial_timeout
        } else {
            self.config.handshake_timeout
        };
        let deadline = now + timeout;
        links.push((link, addr));
        let next_at = now + self.config.dial_stagger;
        if let Some(entry) = self.book.get_mut(key) {
            entry.state = EntryState::Dialing {
                links,
                next_addr: index + 1,
                next_at,
            };
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
        self.actions.push_back(Action::Dial {
            link,
            addr,
            peer,
            have,
            deadline,
        });
    }

    /// A dial of `entry` failed; when none of its dials is left and every
    /// address was tried, it waits for its back-off. A peer that proved to
    /// be in another swarm or broke the protocol is not dialed again; an
    /// address where another peer answered is dropped from the entry.
    fn dial_failed(
        &mut self,
        key: EntryId,
        link: LinkId,
        addr: SocketAddr,
        end: &LinkEnd,
        now: Instant,
    ) {
        let Some(entry) = self.book.get_mut(key) else {
            return;
        };
        if matches!(entry.state, EntryState::Connected(_)) {
            // A dial kept while the peer's own link was up (see
            // `handle_link_up`): that link stands.
            return;
        }
        entry.last_problem = Some(Problem::Failed(end.clone()));
        match end {
            LinkEnd::WrongSwarm | LinkEnd::Violation(_) => {
                entry.state = EntryState::Retired;
                return;
            }
            LinkEnd::WrongPeer if entry.addrs.len() > 1 => {
                if let EntryState::Dialing { next_addr, .. } = &mut entry.state
                    && let Some(position) = entry.addrs.iter().position(|a| *a == addr)
                {
                    entry.addrs.remove(position);
                    if position < *next_addr {
                        *next_addr -= 1;
                    }
                }
            }
            _ => {}
        }
        let EntryState::Dialing {
            links, next_addr, ..
        } = &mut entry.state
        else {
            return;
        };
        links.retain(|(l, _)| *l != link);
        let exhausted = *next_addr >= entry.addrs.len();
        if links.is_empty() && exhausted {
            self.schedule_redial_after_failure(key, now);
        } else if links.is_empty() {
            // Try the next address now rather than after the stagger.
            if let EntryState::Dialing { next_at, .. } = &mut entry.state {
                *next_at = now;
            }
            self.dial_due(now);
        }
    }

    fn schedule_redial_after_failure(&mut self, key: EntryId, now: Instant) {
        let Some(entry) = self.book.get_mut(key) else {
            return;
        };
        entry.failures += 1;
        let failures = entry.failures;
        if entry.source.is_unverified() && failures >= self.config.max_unverified_failures {
            // An address someone else gave us that keeps failing is not
            // dialed forever.
            entry.state = EntryState::Retired;
            return;
        }
        // A node linked to nobody that was turned away for lack of room
        // (the refusal may have named nobody: the refuser's budget for
        // names is shared by every dialer) asks again within a few
        // seconds: a slot or the budget frees up soon in a crowd, and it
        // has nothing else. The failures still count in full (an address
        // from a stranger retires as before). A stateless refusal beyond
        // the refuser's handshake limit is not told apart from a lost
        // connection, and counts as any failure.
        let for_room = matches!(
            entry.last_problem,
            Some(Problem::Failed(LinkEnd::Refused {
                reason: HelloRejectReason::TooManyPeers,
                ..
            }))
        );
        let step = if for_room && self.links.summary(&self.config).counts.up == 0 {
            failures.min(STRANDED_FAILURES)
        } else {
            failures
        };
        let wait = AddressBook::backoff(
            step,
            self.config.redial_initial,
            self.config.redial_max,
            &mut self.rng,
        );
        let addr = entry.addrs.first().copied();
        entry.state = EntryState::Waiting {
            next_attempt: now + wait,
        };
        // Every address failed: the peer that told us of it may introduce
        // us (both sides dial at once, which opens both NATs).
        self.ask_introduction(key, now);
        if let Some(addr) = addr.filter(|_| self.wants_peers()) {
            self.reports.push_back(NodeReport::Redialing {
                addr,
                failures,
                in_ms: wait.as_millis() as u64,
            });
        }
    }

    /// A peer that dropped while it had chunks we need is dialed again
    /// after the first back-off step.
    fn schedule_redial(&mut self, key: EntryId, now: Instant) {
        let Some(entry) = self.book.get(key) else {
            return;
        };
        if entry.addrs.is_empty() {
            if let Some(entry) = self.book.get_mut(key) {
                entry.state = EntryState::Retired;
            }
            return;
        }
        self.schedule_redial_after_failure(key, now);
    }

    /// Attempts past their deadline fail.
    pub(super) fn expire_links(&mut self, now: Instant) {
        let expired: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, link)| match link {
                Link::Dialing { deadline, .. }
                | Link::Handshaking { deadline, .. }
                | Link::Closing { deadline, .. } => *deadline <= now,
                Link::Up(_) => false,
            })
            .map(|(link, _)| *link)
            .collect();
        for link in expired {
            self.actions.push_back(Action::Abort { link });
            if matches!(self.links.get(&link), Some(Link::Closing { .. })) {
                // Its Goodbye was not acknowledged in time.
                self.links.remove(&link);
                self.try_finish_end();
            } else {
                self.handle_link_failed(link, LinkEnd::TimedOut, now);
            }
        }
    }

    /// What each peer tried and why it failed, for a give-up message.
    pub(super) fn tried(&self) -> Vec<Tried> {
        self.book
            .iter()
            .filter(|(_, entry)| entry.source != Source::Incoming)
            .filter_map(|(id, entry)| {
                let dialing = self.links.values().find_map(|link| match link {
                    Link::Dialing {
                        entry: dialed,
                        addr,
                        ..
                    } if *dialed == id => Some(*addr),
                    _ => None,
                });
                let problem = match (&entry.last_problem, dialing) {
                    (Some(problem), _) => problem.clone(),
                    (None, Some(_)) => Problem::NoAnswerYet,
                    (None, None) => Problem::NotTried,
                };
                let addr = dialing.or_else(|| entry.addrs.first().copied())?;
                Some(Tried {
                    addr,
                    source: entry.source,
                    problem,
                })
            })
            .collect()
    }

    /// When the next DHT lookup is due, if one will be: while the download
    /// wants peers, every `dht_lookup_every`, or after `dht_lookup_retry`
    /// when no peer that serves is connected.
    pub(super) fn next_lookup_time(&self) -> Option<Instant> {
        if !self.discovery || self.lookup_running || !self.wants_peers() {
            return None;
        }
        let Some(last) = self.last_lookup else {
            return Some(self.started_at);
        };
        let serving = self.peers().filter(|(_, p)| p.downloading_from).count();
        let wait = if serving == 0 {
            self.config.dht_lookup_retry
        } else if serving < self.config.dht_enough_peers {
            self.config.dht_lookup_every
        } else {
            return None;
        };
        Some(last + wait)
    }

    /// Starts a DHT lookup when one is due.
    pub(super) fn lookup_due(&mut self, now: Instant) {
        if self.next_lookup_time().is_some_and(|at| at <= now) {
            self.lookup_running = true;
            self.last_lookup = Some(now);
            self.actions.push_back(Action::Lookup);
        }
    }

    /// Addresses a DHT lookup found (no ids: the handshake learns them).
    /// Each is dialed like an address from peer exchange: a short deadline,
    /// at most `max_exchange_dials` at once.
    pub fn handle_discovered(&mut self, addrs: &[SocketAddr], now: Instant) {
        for addr in addrs {
            if scope(*addr) == crate::address::Scope::Unusable {
                continue;
            }
            self.book.learn(None, &[*addr], Source::Dht, now);
        }
        self.dial_due(now);
    }

    /// A neighbour heard on the local network (`--lan`, mDNS): its id and
    /// the addresses it announced. Only addresses inside the network (/24,
    /// /64) of one of our own LAN addresses are kept, at most
    /// [`minimodel_wire::MAX_LAN_ADDRS`]; it is dialed like an address
    /// from peer exchange (a short deadline, within the exchange dials'
    /// limit). Not ourselves, and at most `max_neighbours` peers heard
    /// this way in the book: at the limit a new one takes the place of one
    /// that was never reached and is not being dialed (the oldest), so
    /// announcements of peers that are not there cannot keep real
    /// neighbours out.
    pub fn handle_neighbour(&mut self, id: PeerId, addrs: &[SocketAddr], now: Instant) {
        if id == self.local_id {
            return;
        }
        let addrs: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|&addr| self.within_our_lan(addr))
            .take(minimodel_wire::MAX_LAN_ADDRS)
            .collect();
        if addrs.is_empty() {
            return;
        }
        let heard = self
            .book
            .iter()
            .filter(|(_, entry)| entry.source == Source::Lan)
            .count();
        let new = self.book.find_id(&id).is_none();
        if new
            && heard >= self.config.max_neighbours
            && !self
                .book
                .drop_oldest_unreached(|entry| entry.source == Source::Lan)
        {
            return;
        }
        if self
            .book
            .learn(Some(id), &addrs, Source::Lan, now)
            .is_some()
            && new
        {
            self.reports.push_back(NodeReport::Lan {
                step: crate::report::LanStep::Heard { peer: id, addrs },
            });
        }
        self.dial_due(now);
    }

    /// The DHT lookup ended.
    pub fn handle_lookup_done(&mut self, now: Instant) {
        self.lookup_running = false;
        self.last_lookup = Some(now);
    }

    /// Addresses a peer told us of (peer exchange): dialed while the
    /// sender's budget lasts, filtered by scope.
    pub(super) fn learn_from_exchange(
        &mut self,
        from: LinkId,
        entries: Vec<minimodel_wire::PeerEntry>,
        now: Instant,
    ) {
        if !self.wants_peers() {
            return;
        }
        let Some(peer) = self.peer(from) else {
            return;
        };
        let seen_from = self.seen_ip(peer.remote);
        let introducer = peer.id;
        let mut introductions = Vec::new();
        for entry in entries
            .into_iter()
            .take(minimodel_wire::MAX_PEERS_PER_MESSAGE)
        {
            // A LAN address is usable only inside our own network; any
            // other address only within the scope of the peer that sent it.
            let in_scope = if entry.flags.contains(PeerFlags::LAN) {
                self.within_our_lan(entry.addr)
            } else {
                reachable_from(entry.addr, seen_from)
            };
            let known = self.book.find_id(&entry.id);
            // A second address of a peer just learned from the same
            // message (its LAN addresses) joins its entry.
            let joins = known.is_some_and(|key| {
                self.book.get(key).is_some_and(|known| {
                    known.introducer == Some(introducer)
                        && known.source == Source::Exchange
                        && !known.ever_connected
                        && matches!(known.state, EntryState::Waiting { .. })
                })
            });
            if entry.id == self.local_id
                || self.book.is_banned(&entry.id)
                || !in_scope
                || (known.is_some() && !joins)
            {
                continue;
            }
            let Some(peer) = self.peer_mut(from) else {
                return;
            };
            if !peer.exchange_budget.try_take(1, now) {
                break;
            }
            let Some(key) = self
                .book
                .learn(Some(entry.id), &[entry.addr], Source::Exchange, now)
            else {
                continue;
            };
            let via = entry.flags.contains(PeerFlags::VIA_RENDEZVOUS);
            if let Some(learned) = self.book.get_mut(key) {
                learned.introducer.get_or_insert(introducer);
                // It takes no connection it did not ask for: not dialed
                // cold (its introduction makes both sides dial), unless no
                // introduction comes within a dial's deadline.
                if via && learned.addrs.len() == 1 {
                    learned.state = EntryState::Waiting {
                        next_attempt: now + self.config.unverified_dial_timeout,
                    };
                }
            }
            if via && !introductions.contains(&key) {
                introductions.push(key);
            }
        }
        self.dial_due(now);
        for key in introductions {
            self.ask_introduction(key, now);
        }
    }
}

fn exchange_budget(config: &crate::config::NodeConfig, now: Instant) -> TokenBucket {
    let burst = minimodel_wire::MAX_PEERS_PER_MESSAGE as u64;
    let interval = config.peer_exchange_min_interval.as_secs_f64().max(1e-3);
    TokenBucket::new((burst as f64 / interval).round() as u64, burst, now)
}
