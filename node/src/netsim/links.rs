//! Connections: dials, the handshake, control messages and hang-ups.

use super::*;

/// The payload of one datagram on a real path (1452 bytes: Ethernet's
/// 1500 less IPv6 and UDP headers), for [`Sim::piece_delay`].
const PACKET: u64 = 1452;

/// One connection (or attempt): side 0 dialed, side 1 listened.
pub(super) struct Conn {
    pub(super) nodes: [usize; 2],
    pub(super) generations: [u32; 2],
    pub(super) links: [Option<LinkId>; 2],
    pub(super) open: [bool; 2],
    /// How each side is seen by the other.
    pub(super) addrs: [SocketAddr; 2],
    pub(super) dialer_have: HaveBitfield,
    pub(super) ups: [Option<LinkUp>; 2],
    /// The last control delivery towards each side (streams are ordered).
    pub(super) last: [Duration; 2],
    /// Bytes each side's uplink carried on this connection.
    pub(super) sent: [f64; 2],
    /// The dial went to the listener's router at this outside port: its
    /// packets get in only through a pinhole.
    pub(super) through: Option<u16>,
    /// The path's one-way latency and loss (its two ends' specs, kept here
    /// beside what every delivery reads).
    pub(super) latency: Duration,
    pub(super) loss: f64,
    /// It runs through this relay (a channel), not directly.
    pub(super) via: Option<usize>,
    /// When the last piece bytes each side sent so far reach the other
    /// side (a header's receiver measures from them how long its link
    /// idled, `NodeCore::handle_piece_header`).
    pub(super) pieces_until: [Option<Duration>; 2],
}

impl Sim {
    pub(super) fn latency(&self, conn: usize) -> Duration {
        self.conns[conn].latency
    }

    /// One latency, or with the path's loss one more round trip (a
    /// message in one packet).
    pub(super) fn delay(&mut self, conn: usize) -> Duration {
        let Conn { latency, loss, .. } = self.conns[conn];
        if loss > 0.0 && (self.rng.below(1_000_000) as f64) < loss * 1_000_000.0 {
            latency * 3
        } else {
            latency
        }
    }

    /// When the last of `bytes` of a piece stream arrives after its last
    /// byte left: one latency, or one round trip more when a packet of it
    /// was lost (each of its packets of [`PACKET`] bytes with the path's
    /// loss), as QUIC finds and sends it again about a round trip later.
    /// A 512 KiB chunk at 1 % loss is then late in 97 of 100 uploads, not
    /// in 1 as with [`Self::delay`]'s one draw per message; only with
    /// [`Sim::transport_uploads`].
    pub(super) fn piece_delay(&mut self, conn: usize, bytes: u64) -> Duration {
        let Conn { latency, loss, .. } = self.conns[conn];
        if !self.acked_uploads || loss <= 0.0 {
            return self.delay(conn);
        }
        let packets = bytes.div_ceil(PACKET).max(1);
        let whole = (1.0 - loss).powf(packets as f64);
        if (self.rng.below(1_000_000) as f64) < (1.0 - whole) * 1_000_000.0 {
            latency * 3
        } else {
            latency
        }
    }

    /// The node and link of a side, if that side is still there.
    pub(super) fn endpoint(&self, conn: usize, side: usize) -> Option<(usize, LinkId)> {
        let c = &self.conns[conn];
        let node = c.nodes[side];
        let n = &self.nodes[node];
        if c.open[side] && n.alive && n.generation == c.generations[side] {
            c.links[side].map(|link| (node, link))
        } else {
            None
        }
    }

    /// The home router in front of `node`, if it translates addresses.
    fn home_of(&self, node: usize) -> Option<IpAddr> {
        self.specs[node]
            .nat
            .filter(|nat| nat.translate)
            .map(|nat| nat.public)
    }

    /// Where node `node`'s packets to `to` come from, as `to` sees them;
    /// through a router, the mapping is made (and the router lets `to` in
    /// through it from now on).
    pub(super) fn seen_as(&mut self, node: usize, to: SocketAddr) -> SocketAddr {
        let spec = &self.specs[node];
        // A serving node dials from its listening socket.
        let port = if spec.serve {
            spec.addr.port()
        } else {
            50_000u16.wrapping_add(node as u16)
        };
        let inside = SocketAddr::new(spec.addr.ip(), port);
        let Some(nat) = spec.nat else {
            return inside;
        };
        if !nat.translate {
            // A firewall: it lets in what answers what we sent.
            self.pinholes.insert((node, port, to));
            return inside;
        }
        if self
            .listeners
            .get(&(to, spec.swarm))
            .is_some_and(|&t| self.home_of(t) == Some(nat.public))
        {
            return inside;
        }
        // A symmetric router, or a cone whose port toward `to` is taken by
        // a packet it kept as its own: a port of its own for `to`.
        let poisoned = self.poisoned.contains(&(nat.public, nat.port, to));
        let port = if nat.symmetric || poisoned {
            match self.ports.get(&(node, to)) {
                Some(&port) => port,
                None => {
                    let port = self.next_port;
                    self.next_port = self.next_port.checked_add(1).expect("outside ports");
                    self.ports.insert((node, to), port);
                    self.mappings
                        .insert(SocketAddr::new(nat.public, port), node);
                    port
                }
            }
        } else {
            nat.port
        };
        self.pinholes.insert((node, port, to));
        SocketAddr::new(nat.public, port)
    }

    /// Node `node` sends opening packets to `to` with a small TTL: they
    /// make its router's mapping toward `to` (and the way in for `to`'s
    /// answers) and die before anything else sees them. Behind a carrier's
    /// NAT they die there, before the way is open.
    pub(super) fn open(&mut self, node: usize, to: SocketAddr) {
        if self.specs[node].nat.is_some_and(|nat| !nat.carrier) {
            self.seen_as(node, to);
        }
    }

    /// The port of `node`'s router that a packet to `addr` must get in
    /// through: the mapping's, or its own behind a firewall that does not
    /// translate.
    fn filtered_at(&self, node: usize, addr: SocketAddr) -> Option<u16> {
        self.specs[node]
            .nat
            .filter(|nat| !nat.translate)
            .map(|_| addr.port())
    }

    pub(super) fn dial(
        &mut self,
        node: usize,
        link: LinkId,
        addr: SocketAddr,
        peer: Option<PeerId>,
        have: HaveBitfield,
    ) {
        if let Some(&(relay, channel)) = self.paths.get(&(node, addr)) {
            self.dial_through_relay(node, link, addr, peer, have, relay, channel);
            return;
        }
        let home = self.home_of(node);
        let (target, through) = match self.listeners.get(&(addr, self.specs[node].swarm)) {
            // A LAN address is reached from its own home only.
            Some(&t) if self.home_of(t).is_none() || self.home_of(t) == home => {
                (Some(t), self.filtered_at(t, addr))
            }
            Some(_) => (None, None),
            // A router's outside address (not our own: no hairpin).
            None => match self.mappings.get(&addr) {
                Some(&t) if self.home_of(t) != home => (Some(t), Some(addr.port())),
                _ => (None, None),
            },
        };
        let seen_as = self.seen_as(node, addr);
        let Some(target) = target.filter(|&t| self.nodes[t].alive) else {
            // Nobody there: the dial runs into its deadline.
            return;
        };
        let conn = self.conns.len();
        let generation = self.nodes[node].generation;
        self.conns.push(Conn {
            nodes: [node, target],
            generations: [generation, self.nodes[target].generation],
            links: [Some(link), None],
            open: [true, true],
            addrs: [seen_as, addr],
            dialer_have: have,
            ups: [None, None],
            last: [Duration::ZERO; 2],
            sent: [0.0; 2],
            through,
            latency: self.specs[node].latency + self.specs[target].latency,
            loss: self.specs[node].loss.max(self.specs[target].loss),
            via: None,
            pieces_until: [None; 2],
        });
        self.nodes[node].links.insert((generation, link), (conn, 0));
        let latency = self.latency(conn);
        if peer.is_some_and(|peer| peer != id_of(target)) {
            let end = LinkEnd::WrongPeer;
            self.push(self.now + 2 * latency, Event::Failed(conn, 0, end));
        } else {
            let event = Event::Incoming(conn, false);
            self.push(self.now + latency, event);
        }
    }

    pub(super) fn incoming(&mut self, conn: usize, validated: bool) {
        let listener = self.conns[conn].nodes[1];
        let c = &self.conns[conn];
        let n = &self.nodes[listener];
        if !c.open[0] || !n.alive || n.generation != c.generations[1] {
            return;
        }
        let from = c.addrs[0];
        if let Some(port) = c.through
            && !self.pinholes.contains(&(listener, port, from))
        {
            // The router drops it; the dialer sends it again. A router
            // with no input firewall keeps it as its own first.
            if let Some(nat) = self.specs[listener].nat
                && nat.translate
                && !nat.firewall
                && !nat.carrier
                && self.poisoned.insert((nat.public, port, from))
            {
                self.poisonings += 1;
            }
            self.push(self.now + RESEND, Event::Incoming(conn, validated));
            return;
        }
        let now = self.instant();
        let latency = self.latency(conn);
        match self
            .core_mut(listener)
            .handle_incoming(from, validated, now)
        {
            Incoming::Accept { link, .. } => {
                self.conns[conn].links[1] = Some(link);
                let generation = self.conns[conn].generations[1];
                self.nodes[listener]
                    .links
                    .insert((generation, link), (conn, 1));
                self.push(self.now + 2 * latency, Event::Hello(conn));
            }
            Incoming::Retry => {
                let event = Event::Incoming(conn, true);
                self.push(self.now + 2 * latency, event);
            }
            Incoming::Refuse { reason } => {
                self.conns[conn].open[1] = false;
                let end = LinkEnd::Lost(format!("refused: {reason}"));
                self.push(self.now + latency, Event::Failed(conn, 0, end));
            }
        }
        self.pump(listener, false);
    }

    pub(super) fn hello(&mut self, conn: usize) {
        let Some((listener, link)) = self.endpoint(conn, 1) else {
            return;
        };
        if !self.conns[conn].open[0] {
            return;
        }
        let now = self.instant();
        let dialer = self.conns[conn].nodes[0];
        // The dialer's Hello as its core writes it now, on a connection up.
        let Some(hello) =
            (self.nodes[dialer].core.as_ref()).map(|core| core.hello_to(self.conns[conn].addrs[1]))
        else {
            return;
        };
        let dialer_side = Side {
            id: id_of(dialer),
            addr: self.conns[conn].addrs[0],
            hello,
            have: self.conns[conn].dialer_have.clone(),
        };
        let latency = self.latency(conn);
        match self
            .core_mut(listener)
            .handle_hello(link, dialer_side.id, &dialer_side.hello, now)
        {
            Ok((hello, have)) => {
                let listener_side = Side {
                    id: id_of(listener),
                    addr: self.conns[conn].addrs[1],
                    hello,
                    have,
                };
                let swarm = &self.swarms[self.specs[listener].swarm];
                let (dialer_up, listener_up) =
                    testing::handshake(swarm, &dialer_side, &listener_side);
                self.conns[conn].ups = [Some(dialer_up), Some(listener_up)];
                self.push(self.now + latency, Event::Up(conn, 0));
                self.push(self.now + 2 * latency, Event::Up(conn, 1));
            }
            Err(rejection) => {
                // The listener sends its HelloReject and forgets the
                // attempt; the dialer hears the reason.
                self.conns[conn].open[1] = false;
                let end = LinkEnd::Refused {
                    reason: rejection.reason,
                    detail: rejection.detail.clone(),
                };
                self.core_mut(listener).handle_link_failed(link, end, now);
                self.push(self.now + latency, Event::Rejected(conn, rejection));
            }
        }
        self.pump(listener, false);
    }

    /// Side `side` of `conn` hangs up: with a Goodbye (`Close`) or without
    /// (`Abort`); the other side hears of it one latency later.
    pub(super) fn hang_up(&mut self, conn: usize, side: usize, goodbye: Option<GoodbyeReason>) {
        if !self.conns[conn].open[side] {
            return;
        }
        self.conns[conn].open[side] = false;
        self.drop_transfers(conn);
        let other = 1 - side;
        if !self.conns[conn].open[other] {
            return;
        }
        if let Some(reason) = goodbye {
            self.send(conn, other, Message::Goodbye { reason });
            // The Goodbye is acknowledged a round trip later: the closing
            // side's connection ends then.
            let at = self.now.max(self.conns[conn].last[other]) + self.latency(conn) * 2;
            self.push(at, Event::Farewelled(conn, side));
        }
        let at = self.now.max(self.conns[conn].last[other]) + self.latency(conn);
        let end = LinkEnd::ClosedByPeer;
        self.push(at, Event::Closed(conn, other, end));
    }

    /// The closing side's Goodbye was acknowledged: its link ends.
    pub(super) fn farewelled(&mut self, conn: usize, side: usize) {
        let c = &self.conns[conn];
        let node = c.nodes[side];
        let n = &self.nodes[node];
        let (Some(link), true) = (
            c.links[side],
            n.alive && n.generation == c.generations[side],
        ) else {
            return;
        };
        let now = self.instant();
        self.core_mut(node)
            .handle_closed(link, LinkEnd::ClosedByPeer, now);
        self.pump(node, false);
    }

    pub(super) fn send(&mut self, conn: usize, to: usize, message: Message) {
        let at = (self.now + self.delay(conn)).max(self.conns[conn].last[to]);
        self.conns[conn].last[to] = at;
        // A busy receiver acts on an introduction late (the stream's order
        // holds for what follows it).
        let at = match message {
            Message::Connect { .. } => {
                let lag = self.specs[self.conns[conn].nodes[to]].connect_lag;
                self.conns[conn].last[to] = at + lag;
                at + lag
            }
            _ => at,
        };
        // The traced peer's refusals, beside its requests.
        if let Message::Reject { chunk, reason } = &message {
            let (node, from) = (self.conns[conn].nodes[to], self.conns[conn].nodes[1 - to]);
            if self.trace_peer == Some(node) {
                let at = self.now.as_secs_f64();
                println!(
                    "{at:7.3} peer {node}: reject of chunk {} from {from}: {reason:?}",
                    chunk.0
                );
            }
        }
        self.push(at, Event::Control(conn, to, message));
    }

    pub(super) fn flood(&mut self, conn: usize, to: usize, entries: Vec<PeerEntry>) {
        for batch in entries.chunks(MAX_PEERS_PER_MESSAGE) {
            let message = Message::Peers {
                entries: batch.to_vec(),
            };
            self.send(conn, to, message);
        }
    }

    pub(super) fn up(&mut self, conn: usize, side: usize) {
        let Some((node, link)) = self.endpoint(conn, side) else {
            return;
        };
        let now = self.instant();
        let up = self.conns[conn].ups[side].take().expect("a handshake");
        self.core_mut(node).handle_link_up(link, up, now);
        // The path's round trip, as QUIC measures it when the handshake ends.
        let rtt = 2 * self.latency(conn);
        self.core_mut(node).handle_rtt(link, rtt);
        self.pump(node, false);
        if let Behaviour::Flooder(entries) = &self.specs[node].behaviour {
            let entries = entries.clone();
            self.flood(conn, 1 - side, entries);
        }
    }

    pub(super) fn failed(&mut self, conn: usize, to: usize, end: LinkEnd) {
        if let Some((node, link)) = self.endpoint(conn, to) {
            self.conns[conn].open[to] = false;
            let now = self.instant();
            self.core_mut(node).handle_link_failed(link, end, now);
            self.pump(node, false);
        }
    }

    /// The dialer of `conn` hears the listener's HelloReject.
    pub(super) fn rejected(&mut self, conn: usize, rejection: crate::node::Rejection) {
        if let Some((node, link)) = self.endpoint(conn, 0) {
            self.conns[conn].open[0] = false;
            let now = self.instant();
            self.core_mut(node)
                .handle_hello_rejected(link, rejection, now);
            self.pump(node, false);
        }
    }

    pub(super) fn control(&mut self, conn: usize, to: usize, message: Message) {
        if let Some((node, link)) = self.endpoint(conn, to) {
            let now = self.instant();
            self.core_mut(node).handle_message(link, message, now);
            self.pump(node, false);
        }
    }

    pub(super) fn closed(&mut self, conn: usize, to: usize, end: LinkEnd) {
        if let Some((node, link)) = self.endpoint(conn, to) {
            self.conns[conn].open[to] = false;
            self.drop_transfers(conn);
            let now = self.instant();
            self.core_mut(node).handle_closed(link, end, now);
            self.pump(node, false);
        }
    }
}
