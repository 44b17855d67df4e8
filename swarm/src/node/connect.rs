//! Getting peers: dialing them, accepting them, admitting them, and
//! turning a finished handshake into a running link.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use minimodel_wire::{GoodbyeReason, HaveBitfield, Hello, HelloRejectReason, PeerAddr, PeerId};

use super::{Internal, Node, NodeReport, Peer};
use crate::link::{self, Session};
use crate::picker::PeerKey;
use crate::transport;

/// What a listener checks before it answers a Hello. Shared with the
/// accept tasks, updated by the node.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) max_peers: usize,
    pub(crate) connected: BTreeSet<PeerId>,
    /// The connected peers that dialed us. Such a peer dialing again was
    /// restarted (killed, say, before its old connection timed out): the
    /// new connection replaces the old one.
    pub(crate) dialed_us: BTreeSet<PeerId>,
    /// Peers admitted by a listener whose link the node has not taken yet:
    /// they hold a peer slot, so that handshakes finishing together cannot
    /// all be admitted past `max_peers`.
    pub(crate) admitting: BTreeSet<PeerId>,
    pub(crate) banned: BTreeSet<PeerId>,
    pub(crate) serving: bool,
    pub(crate) have: HaveBitfield,
}

impl Admission {
    /// Decides on a listener's Hello; an admitted peer holds a slot until
    /// [`Admission::settle`].
    fn admit(&mut self, peer: PeerId) -> Result<HaveBitfield, (HelloRejectReason, String)> {
        let decision = self.decide(peer);
        if decision.is_ok() {
            self.admitting.insert(peer);
        }
        decision
    }

    /// The node took the admitted peer's link (it is in `connected` now) or
    /// its handshake failed: either way it no longer holds a pending slot.
    pub(crate) fn settle(&mut self, peer: &PeerId) {
        self.admitting.remove(peer);
    }

    fn decide(&self, peer: PeerId) -> Result<HaveBitfield, (HelloRejectReason, String)> {
        if !self.serving {
            return Err((
                HelloRejectReason::NotServing,
                "this peer does not serve".into(),
            ));
        }
        if self.banned.contains(&peer) {
            return Err((
                HelloRejectReason::Banned,
                "banned for sending bad data".into(),
            ));
        }
        if self.connected.contains(&peer) {
            if self.dialed_us.contains(&peer) {
                return Ok(self.have.clone());
            }
            return Err((HelloRejectReason::TooManyPeers, "already connected".into()));
        }
        if self.connected.union(&self.admitting).count() >= self.max_peers {
            return Err((
                HelloRejectReason::TooManyPeers,
                format!("serving the maximum of {} peers", self.max_peers),
            ));
        }
        Ok(self.have.clone())
    }
}

/// Incoming connections per IP address, from the first packet to the end
/// of the link, shared by the accept loop and the peers.
#[derive(Debug, Default)]
pub(crate) struct ConnectionsPerIp(Mutex<BTreeMap<IpAddr, usize>>);

impl ConnectionsPerIp {
    /// A place for one more connection from `ip`, unless it has `max`.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut counts = self.0.lock().ok()?;
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            book: Arc::clone(self),
            ip,
        })
    }
}

/// One incoming connection's place in [`ConnectionsPerIp`], given back
/// when dropped (with the handshake that failed or the peer that left).
#[derive(Debug)]
pub(crate) struct IpSlot {
    book: Arc<ConnectionsPerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.book.0.lock() {
            if let Some(count) = counts.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// A finished handshake.
pub(crate) struct LinkUp {
    pub(crate) session: Session,
    pub(crate) addr: SocketAddr,
    /// The bitfield we sent in the handshake (newer chunks go as Have).
    pub(crate) sent_have: HaveBitfield,
    pub(crate) dialed: bool,
    /// Its place among the connections from its address (incoming only).
    pub(crate) ip_slot: Option<IpSlot>,
}

impl Node {
    /// Dials `peer` unless it is us, connected, being dialed or banned.
    pub(crate) fn dial(&mut self, peer: PeerAddr) {
        if self.is_known(&peer.id) {
            return;
        }
        self.dialing.insert(peer.id);
        let endpoint = self.endpoint.clone();
        let identity = Arc::clone(&self.identity);
        let tuning = self.config.tuning.clone();
        let local = self.local_hello.clone();
        let have = self.advertised_have();
        let timeout = self.config.handshake_timeout;
        let internal = self.internal_sender.clone();
        tokio::spawn(async move {
            let result = async {
                let connection = transport::connect(&endpoint, &peer, &identity, &tuning)
                    .await
                    .map_err(|e| e.to_string())?;
                link::handshake::dial(connection, peer.id, &local, have.clone(), timeout)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            let event = match result {
                Ok(session) => Internal::LinkUp(Box::new(LinkUp {
                    session,
                    addr: peer.addr,
                    sent_have: have,
                    dialed: true,
                    ip_slot: None,
                })),
                Err(error) => Internal::DialFailed { peer, error },
            };
            let _ = internal.send(event);
        });
    }

    /// What we tell peers we have: nothing unless we serve.
    pub(crate) fn advertised_have(&self) -> HaveBitfield {
        if self.serving {
            self.local_have.clone()
        } else {
            HaveBitfield::new(self.params.chunk_count())
        }
    }

    /// Ourselves, or a peer we are connected to, dialing, or banned: never
    /// dialed (again).
    pub(crate) fn is_known(&self, id: &PeerId) -> bool {
        *id == self.peer_id()
            || self.dialing.contains(id)
            || self.banned.contains(id)
            || self.peers.values().any(|p| p.id == *id)
    }

    /// Accepts incoming connections until the endpoint closes (once per
    /// node). A connection from an address that has
    /// `max_connections_per_ip` already, or one beyond `max_handshakes`
    /// handshakes in progress, is refused before its TLS handshake.
    pub(crate) fn spawn_acceptor(&mut self) {
        if self.acceptor_started {
            return;
        }
        self.acceptor_started = true;
        let endpoint = self.endpoint.clone();
        let identity = Arc::clone(&self.identity);
        let tuning = self.config.tuning.clone();
        let local = self.local_hello.clone();
        let timeout = self.config.handshake_timeout;
        let admission = Arc::clone(&self.admission);
        let internal = self.internal_sender.clone();
        let reports = self.reports.clone();
        let per_ip = Arc::new(ConnectionsPerIp::default());
        let max_per_ip = self.config.max_connections_per_ip;
        let max_handshakes = self.config.max_handshakes;
        let handshakes = Arc::new(tokio::sync::Semaphore::new(max_handshakes));
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                // A dual-stack listener sees IPv4 peers as mapped addresses.
                let addr = transport::canonical_addr(incoming.remote_address());
                let Some(ip_slot) = per_ip.take(addr.ip(), max_per_ip) else {
                    incoming.refuse();
                    let _ = reports.send(NodeReport::Refused {
                        addr,
                        reason: format!(
                            "{} has {max_per_ip} connections already (the most from one address)",
                            addr.ip()
                        ),
                    });
                    continue;
                };
                let Ok(handshake) = Arc::clone(&handshakes).try_acquire_owned() else {
                    incoming.refuse();
                    let _ = reports.send(NodeReport::Refused {
                        addr,
                        reason: format!("{max_handshakes} handshakes in progress already"),
                    });
                    continue;
                };
                let identity = Arc::clone(&identity);
                let tuning = tuning.clone();
                let local = local.clone();
                let admission = Arc::clone(&admission);
                let internal = internal.clone();
                let reports = reports.clone();
                tokio::spawn(async move {
                    let (connection, peer_id) =
                        match transport::accept(incoming, &identity, &tuning).await {
                            Ok(accepted) => accepted,
                            Err(error) => {
                                let _ = reports.send(NodeReport::Refused {
                                    addr,
                                    reason: error.to_string(),
                                });
                                return;
                            }
                        };
                    let mut sent_have = None;
                    let admit = |_hello: &Hello| {
                        let decision = admission
                            .lock()
                            .map_err(|_| (HelloRejectReason::TooManyPeers, "busy".to_owned()))?
                            .admit(peer_id);
                        if let Ok(have) = &decision {
                            sent_have = Some(have.clone());
                        }
                        decision
                    };
                    let linked =
                        link::handshake::listen(connection, peer_id, &local, admit, timeout).await;
                    drop(handshake);
                    if linked.is_err()
                        && let Ok(mut admission) = admission.lock()
                    {
                        admission.settle(&peer_id);
                    }
                    match linked {
                        Ok(session) => {
                            let Some(sent_have) = sent_have else { return };
                            let _ = internal.send(Internal::LinkUp(Box::new(LinkUp {
                                session,
                                addr,
                                sent_have,
                                dialed: false,
                                ip_slot: Some(ip_slot),
                            })));
                        }
                        Err(error) => {
                            let _ = reports.send(NodeReport::Refused {
                                addr,
                                reason: error.to_string(),
                            });
                        }
                    }
                });
            }
        });
    }

    /// A handshake finished: the peer becomes a running link. A peer a
    /// listener admitted gives up its pending slot only now, once it is
    /// counted as connected (or turned away).
    pub(crate) fn on_link_up(&mut self, up: LinkUp) {
        let incoming = (!up.dialed).then_some(up.session.peer_id);
        self.take_link(up);
        if let Some(id) = incoming
            && let Ok(mut admission) = self.admission.lock()
        {
            admission.settle(&id);
        }
    }

    fn take_link(&mut self, up: LinkUp) {
        let LinkUp {
            session,
            addr,
            sent_have,
            dialed,
            ip_slot,
        } = up;
        let id = session.peer_id;
        self.dialing.remove(&id);
        self.addresses.insert(id, addr);
        if self.banned.contains(&id) {
            session.connection.close(0u32.into(), b"banned");
            return;
        }
        // Two peers that dial each other at once end up with two
        // connections; both keep the one the lower id dialed. A peer that
        // dials us again while the connection it dialed before is still
        // here was restarted (killed, say): that old connection is stale.
        let me = self.peer_id();
        let preferred = |we_dialed: bool| (me < id) == we_dialed;
        if let Some((&existing, peer)) = self.peers.iter().find(|(_, p)| p.id == id) {
            let redialed = !peer.dialed && !dialed;
            if !redialed && (preferred(peer.dialed) || !preferred(dialed)) {
                session.connection.close(0u32.into(), b"duplicate");
                return;
            }
            let reason = if redialed {
                "replaced by a new connection from the same peer"
            } else {
                "replaced by the connection both sides keep"
            };
            self.remove_peer(existing, reason.into());
        }
        if self.peers.len() >= self.config.max_peers {
            session.connection.close(0u32.into(), b"full");
            return;
        }
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let hello = session.hello.clone();
        let bitfield = session.bitfield.clone();
        let handle = link::spawn(session, key, self.params, self.link_sender.clone());
        // Chunks verified while the handshake ran go as Have.
        if self.serving {
            for chunk in self.local_have.iter_ones() {
                if !sent_have.get(chunk) {
                    handle.send(minimodel_wire::Message::Have { chunk });
                }
            }
        }
        let listen = hello.listen.map(|listen| {
            if listen.ip().is_unspecified() {
                SocketAddr::new(addr.ip(), listen.port())
            } else {
                listen
            }
        });
        let mut peer = Peer {
            id,
            addr,
            link: handle,
            dialed,
            told: BTreeSet::new(),
            serving: hello.serving,
            listen,
            downloading_from: false,
            uploaded_chunks: 0,
            uploaded_bytes: 0,
            peer_exchange_budget: super::peer_exchange_budget(
                self.config.peer_exchange_min_interval,
                std::time::Instant::now(),
            ),
            _ip_slot: ip_slot,
        };
        self.uploads.queue.add_peer(key);
        self.uploads.queue.set_peer_bitfield(key, bitfield.clone());
        if let Some(download) = &mut self.download {
            if hello.serving {
                match download
                    .core
                    .add_peer(key, id, bitfield, std::time::Instant::now())
                {
                    Ok(()) => {
                        peer.downloading_from = true;
                        // The handshake measured the round trip: without it
                        // the first rate sample (a burst) met the 50 ms
                        // default and asked for up to 64 chunks at once.
                        download.core.set_rtt(key, peer.link.connection.rtt());
                    }
                    Err(error) => {
                        peer.link.close(GoodbyeReason::BadData);
                        let _ = self.reports.send(NodeReport::Refused {
                            addr,
                            reason: error.to_string(),
                        });
                        return;
                    }
                }
            }
        }
        if let Ok(mut admission) = self.admission.lock() {
            admission.connected.insert(id);
            if !dialed {
                admission.dialed_us.insert(id);
            }
        }
        self.report(NodeReport::PeerConnected {
            peer: id,
            addr,
            dialed,
            serving: hello.serving,
            agent: hello.agent.clone(),
        });
        self.peers.insert(key, peer);
        self.drain_download_actions();
    }

    /// Forgets a peer: its requests go back, its uploads stop.
    pub(crate) fn remove_peer(&mut self, key: PeerKey, reason: String) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        peer.link.drop_connection();
        if let Some(download) = &mut self.download {
            download.core.remove_peer(key, std::time::Instant::now());
        }
        self.uploads.remove_peer(key);
        if let Ok(mut admission) = self.admission.lock() {
            admission.connected.remove(&peer.id);
            admission.dialed_us.remove(&peer.id);
        }
        self.report(NodeReport::PeerDisconnected {
            peer: peer.id,
            addr: peer.addr,
            reason,
            uploaded_chunks: peer.uploaded_chunks,
            uploaded_bytes: peer.uploaded_bytes,
        });
        self.drain_download_actions();
        self.start_uploads();
    }

    /// Bans a peer by key for the rest of this node's life.
    pub(crate) fn ban(&mut self, id: PeerId) {
        self.banned.insert(id);
        if let Ok(mut admission) = self.admission.lock() {
            admission.banned.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_peers: usize) -> Admission {
        Admission {
            max_peers,
            connected: BTreeSet::new(),
            dialed_us: BTreeSet::new(),
            admitting: BTreeSet::new(),
            banned: BTreeSet::new(),
            serving: true,
            have: HaveBitfield::new(8),
        }
    }

    #[test]
    fn an_admitted_handshake_holds_its_slot_until_settled() {
        let mut admission = admission(1);
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        assert!(admission.admit(a).is_ok());
        // A's link is not up yet, but its slot is taken.
        let refused = admission.admit(b).unwrap_err();
        assert_eq!(refused.0, HelloRejectReason::TooManyPeers);
        // A's handshake failed: the slot is free again.
        admission.settle(&a);
        assert!(admission.admit(b).is_ok());
        // B is up: counted once, as connected.
        admission.connected.insert(b);
        admission.settle(&b);
        assert_eq!(
            admission.admit(a).unwrap_err().0,
            HelloRejectReason::TooManyPeers
        );
    }
}
