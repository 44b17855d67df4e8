//! Relays in the simulator: a relay node runs a [`RelayCore`]; nodes
//! register with theirs at their start, ask it for introductions, hear its
//! Connects with a relay path of their own, and dial that path: a
//! connection through the relay, its uploads paced at the pair's rate.
//! Registration and every message take the path's latency (node to relay
//! and back); a dial of a path gets through when the relay's core lets a
//! datagram from the dialer on that channel go on.
//!
//! [`RelayCore`]: crate::relay::RelayCore

use minimodel_wire::relay::RelayMessage;

use super::links::Conn;
use super::*;

impl Sim {
    fn relay_latency(&self, node: usize, relay: usize) -> Duration {
        self.specs[node].latency + self.specs[relay].latency
    }

    /// Node `node` connects to relay `relay` and registers (its
    /// connection leaves from its listening socket, through its router).
    pub(super) fn register_with(&mut self, node: usize, relay: usize) {
        let at = self.now + self.relay_latency(node, relay);
        let message = RelayMessage::Register {
            agent: "netsim/1".into(),
            addrs: Vec::new(),
            mapping: minimodel_wire::relay::MappingKind::Unknown,
        };
        self.push(at, Event::ToRelay(relay, node, message));
    }

    /// Node `node`'s core asks the relay at `relay` for `peer`.
    pub(super) fn ask_relay(&mut self, node: usize, relay: SocketAddr, peer: PeerId) {
        let Some(index) = (0..self.specs.len())
            .find(|&r| self.specs[r].relay.is_some() && self.specs[r].addr == relay)
        else {
            return;
        };
        let at = self.now + self.relay_latency(node, index);
        self.push(
            at,
            Event::ToRelay(index, node, RelayMessage::Introduce { peer }),
        );
    }

    pub(super) fn deliver_to_relay(&mut self, relay: usize, node: usize, message: RelayMessage) {
        if !self.nodes[node].alive || self.nodes[relay].relay.is_none() {
            return;
        }
        let now = self.instant();
        let relay_addr = self.specs[relay].addr;
        let conn = match self.relay_conn_of.get(&(relay, node)) {
            Some(&conn) => conn,
            None => {
                // The node's QUIC connection to the relay: its handshake.
                let seen = self.seen_as(node, relay_addr);
                let core = self.nodes[relay].relay.as_mut().expect("a relay");
                let crate::relay::RelayIncoming::Accept(conn) =
                    core.handle_incoming(seen, true, now)
                else {
                    return;
                };
                core.handle_handshake(conn, Some((id_of(node), seen)), now);
                self.relay_conns.insert((relay, conn), node);
                self.relay_conn_of.insert((relay, node), conn);
                conn
            }
        };
        let core = self.nodes[relay].relay.as_mut().expect("a relay");
        core.handle_message(conn, message, now);
        self.relay_pump(relay);
    }

    /// Carries out what relay `relay` decided.
    fn relay_pump(&mut self, relay: usize) {
        while let Some(action) = self.nodes[relay]
            .relay
            .as_mut()
            .and_then(|c| c.poll_action())
        {
            let now = self.instant();
            let core = self.nodes[relay].relay.as_mut().expect("a relay");
            match action {
                crate::relay::RelayAction::Send { conn, message } => {
                    // Every simulated node reads its control stream: the
                    // frame is written at once.
                    core.handle_written(conn, now);
                    let Some(&node) = self.relay_conns.get(&(relay, conn)) else {
                        continue;
                    };
                    if let RelayMessage::Connect { channel, .. } = &message {
                        let ends = self.channel_ends.entry((relay, *channel)).or_default();
                        if !ends.contains(&node) {
                            ends.push(node);
                        }
                    }
                    let mut at = self.now + self.relay_latency(node, relay);
                    if matches!(message, RelayMessage::Connect { .. }) {
                        at += self.specs[node].connect_lag;
                    }
                    self.push(at, Event::FromRelay(node, relay, message));
                }
                crate::relay::RelayAction::Close { conn, .. }
                | crate::relay::RelayAction::Abort { conn, .. } => {
                    core.handle_closed(conn, now);
                    if let Some(node) = self.relay_conns.remove(&(relay, conn)) {
                        self.relay_conn_of.remove(&(relay, node));
                    }
                }
            }
        }
        while self.nodes[relay]
            .relay
            .as_mut()
            .and_then(|c| c.poll_report())
            .is_some()
        {}
    }

    /// Node `node`'s path address for `channel` of `relay`.
    fn path_for(&mut self, node: usize, relay: usize, channel: u64) -> SocketAddr {
        if let Some(&path) = self.path_of.get(&(node, relay, channel)) {
            return path;
        }
        self.next_path += 1;
        let [_, _, x, y] = self.next_path.to_be_bytes();
        let path = SocketAddr::from(([240, x, y, 1], 4433));
        self.path_of.insert((node, relay, channel), path);
        self.paths.insert((node, path), (relay, channel));
        path
    }

    pub(super) fn deliver_from_relay(&mut self, node: usize, relay: usize, message: RelayMessage) {
        if !self.nodes[node].alive || self.nodes[node].core.is_none() {
            return;
        }
        let now = self.instant();
        let relay_addr = self.specs[relay].addr;
        match message {
            RelayMessage::Registered { observed, limits } => {
                self.core_mut(node).handle_relay_registered(
                    relay_addr,
                    id_of(relay),
                    observed,
                    limits,
                    now,
                );
            }
            RelayMessage::RegisterRefused { reason } => {
                self.core_mut(node)
                    .handle_relay_lost(relay_addr, reason.to_string(), now);
            }
            RelayMessage::Connect {
                peer,
                addrs,
                channel,
                role,
            } => {
                let path = self.path_for(node, relay, channel);
                self.core_mut(node)
                    .handle_relay_connect(relay_addr, peer, addrs, path, role, now);
            }
            RelayMessage::IntroduceFailed { peer, reason } => {
                self.core_mut(node)
                    .handle_relay_introduce_failed(relay_addr, peer, reason, now);
            }
            RelayMessage::ChannelClosed { channel, .. } => {
                if let Some(path) = self.path_of.remove(&(node, relay, channel)) {
                    self.paths.remove(&(node, path));
                    self.core_mut(node)
                        .handle_relay_channel_closed(relay_addr, path, now);
                }
            }
            RelayMessage::Register { .. } | RelayMessage::Introduce { .. } => {}
        }
        self.pump(node, false);
    }

    /// A dial of a relay path: the other end of the channel, through the
    /// relay, when the relay lets the dialer's datagrams on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dial_through_relay(
        &mut self,
        node: usize,
        link: LinkId,
        path: SocketAddr,
        peer: Option<PeerId>,
        have: HaveBitfield,
        relay: usize,
        channel: u64,
    ) {
        let Some(target) = self
            .channel_ends
            .get(&(relay, channel))
            .and_then(|ends| ends.iter().copied().find(|&end| end != node))
        else {
            return;
        };
        let relay_addr = self.specs[relay].addr;
        let from = self.seen_as(node, relay_addr);
        let now = self.instant();
        let passes = self.nodes[relay]
            .relay
            .as_mut()
            .map(|core| core.handle_datagram(from, channel, 1200, now));
        if !matches!(passes, Some(crate::relay::Forward::To(_))) || !self.nodes[target].alive {
            // Dropped at the relay: the dial runs into its deadline.
            return;
        }
        let seen_at_target = self.path_for(target, relay, channel);
        let conn = self.conns.len();
        let generation = self.nodes[node].generation;
        self.conns.push(Conn {
            nodes: [node, target],
            generations: [generation, self.nodes[target].generation],
            links: [Some(link), None],
            open: [true, true],
            addrs: [seen_at_target, path],
            dialer_have: have,
            ups: [None, None],
            last: [Duration::ZERO; 2],
            sent: [0.0; 2],
            through: None,
            latency: self.specs[node].latency
                + 2 * self.specs[relay].latency
                + self.specs[target].latency,
            loss: self.specs[node].loss.max(self.specs[target].loss),
            via: Some(relay),
            pieces_until: [None; 2],
        });
        self.nodes[node].links.insert((generation, link), (conn, 0));
        let latency = self.latency(conn);
        if peer.is_some_and(|peer| peer != id_of(target)) {
            self.push(
                self.now + 2 * latency,
                Event::Failed(conn, 0, LinkEnd::WrongPeer),
            );
        } else {
            self.push(self.now + latency, Event::Incoming(conn, false));
        }
    }

    /// Bytes that went through relays, in all.
    pub(crate) fn relayed_bytes(&self) -> f64 {
        self.conns
            .iter()
            .filter(|conn| conn.via.is_some())
            .map(|conn| conn.sent[0] + conn.sent[1])
            .sum()
    }
}
