//! One QUIC endpoint, one port and one identity for many swarms
//! (`docs/swarm.md`, "One endpoint, many swarms"; the wire protocol's
//! unbound listener, section 8.5).
//!
//! The endpoint's accept loop asks the gate
//! ([`minimodel_node::gate::Gate`]) whether to let a connection in, runs
//! TLS and reads the dialer's first message, then asks the gate where it
//! goes: to the node of the swarm a Hello names, or of the manifest a query
//! asks for, or back with the refusal the gate gives. From then on the
//! handshake is that node's, exactly as if its own endpoint had accepted
//! it. Every node dials from the same endpoint, and asks through the same
//! relay links ([`crate::relay::hub`]): a relay knows the endpoint as one
//! node. Nothing here decides: the gate and each node's core do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use minimodel_node::gate::{Door, Gate, Grants, RegisterError, Routed, Share, SwarmName, Ticket};
use minimodel_node::node::GateNews;
use tokio::sync::{mpsc, watch};

use super::{CoreConfig, Event, NodeReport};
use crate::link::handshake::{self, First, Opening};
use crate::transport::{self, Identity, TransportError, TransportTuning};

/// How the gate reaches a swarm's node: its events, and the uploads it
/// may run (the newest grant and the gate's generation it came from;
/// a watch, so that the newest is never lost behind a full queue).
#[derive(Clone)]
pub(crate) struct Route {
    events: mpsc::Sender<Event>,
    grant: watch::Sender<(u64, Share)>,
}

type Routes = Gate<Route>;

/// One endpoint that serves every swarm registered on it. Cheap to clone;
/// the endpoint closes when [`SharedEndpoint::close`] is called or the
/// last clone is dropped.
#[derive(Clone)]
pub struct SharedEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    paths: transport::Paths,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    listen: SocketAddr,
    gate: Arc<Mutex<Routes>>,
    accept: tokio::task::AbortHandle,
    port_map: Mutex<Option<crate::portmap::PortMapTask>>,
    mapped: Option<tokio::sync::watch::Receiver<crate::portmap::MapState>>,
    relays: crate::relay::hub::RelayHub,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.accept.abort();
        self.endpoint.close(0u32.into(), b"shutdown");
    }
}

impl std::fmt::Debug for SharedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEndpoint")
            .field("listen", &self.inner.listen)
            .field("swarms", &self.swarms())
            .finish_non_exhaustive()
    }
}

fn lock(gate: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SharedEndpoint {
    /// Listens at `listen` (port 0 picks one) as `identity`, with
    /// `core`'s first-packet limits for the whole endpoint, and asks the
    /// home router to map the port when `port_mapping` and the address
    /// needs it. `reports` hears what concerns the endpoint rather than a
    /// swarm: connections turned away before their first message
    /// ([`NodeReport::Turned`]) and the port mapping's steps. Must run
    /// inside a tokio runtime.
    pub fn bind(
        listen: SocketAddr,
        identity: Arc<Identity>,
        tuning: TransportTuning,
        core: &CoreConfig,
        port_mapping: bool,
        reports: mpsc::UnboundedSender<NodeReport>,
    ) -> Result<Self, TransportError> {
        let (endpoint, paths) = transport::bind_endpoint_with_paths(listen, &identity, &tuning)?;
        let listen = endpoint
            .local_addr()
            .map_err(|source| TransportError::Socket {
                addr: listen,
                action: "read the bound address",
                source,
            })?;
        let gate = Arc::new(Mutex::new(Gate::new(core.clone())));
        let accept = tokio::spawn(accept_loop(
            endpoint.clone(),
            Arc::clone(&identity),
            tuning.clone(),
            Arc::clone(&gate),
            reports.clone(),
        ))
        .abort_handle();
        let port_map =
            (port_mapping && minimodel_node::portmap::wants_mapping(listen)).then(|| {
                crate::portmap::PortMapTask::start(
                    listen.port(),
                    minimodel_node::portmap::PortMapConfig::default(),
                    reports,
                )
            });
        let mapped = port_map.as_ref().map(crate::portmap::PortMapTask::state);
        // What it registers with at relays: where it listens that peers
        // may reach without its router (global IPv6, LAN addresses).
        let own: Vec<SocketAddr> = crate::addrs::listener_addrs(listen, &[])
            .unwrap_or_default()
            .into_iter()
            .filter(|addr| {
                use minimodel_node::address::{Scope, scope};
                minimodel_wire::is_lan_addr(*addr)
                    || (addr.is_ipv6() && scope(*addr) == Scope::Global)
            })
            .take(minimodel_wire::relay::MAX_REGISTER_ADDRS)
            .collect();
        let relays = crate::relay::hub::RelayHub::new(
            endpoint.clone(),
            paths.clone(),
            Arc::clone(&identity),
            tuning.clone(),
            crate::relay::Registration {
                agent: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
                addrs: own,
                mapping: minimodel_wire::relay::MappingKind::Unknown,
            },
        );
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                paths,
                identity,
                tuning,
                listen,
                gate,
                accept,
                port_map: Mutex::new(port_map),
                mapped,
                relays,
            }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The handle on its socket's opening packets and relay paths.
    pub fn paths(&self) -> &transport::Paths {
        &self.inner.paths
    }

    /// The identity every swarm on it uses.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    /// How many swarms it serves now.
    pub fn swarms(&self) -> usize {
        lock(&self.inner.gate).swarms()
    }

    /// How many incoming handshakes hold a place at its gate now.
    pub fn handshakes(&self) -> usize {
        lock(&self.inner.gate).handshakes()
    }

    /// How many incoming links hold a place at its gate now.
    pub fn links(&self) -> usize {
        lock(&self.inner.gate).links()
    }

    /// Caps the upload of every swarm on it together at `cap` bytes per
    /// second (`None`: no cap), shared among the swarms that upload by the
    /// gate's rule; each swarm's own `max_upload` still holds.
    pub fn set_upload_cap(&self, cap: Option<u64>) {
        let grants = lock(&self.inner.gate).set_upload_cap(cap);
        tell(&grants);
    }

    /// Caps the download of every swarm on it together at `cap` bytes per
    /// second (`None`: no cap), shared evenly among the swarms that would
    /// download now by the gate's rule; each swarm's own `max_download`
    /// still holds.
    pub fn set_download_cap(&self, cap: Option<u64>) {
        let grants = lock(&self.inner.gate).set_download_cap(cap);
        tell(&grants);
    }

    /// Keeps a link to each of `relays` (`--relay`: at most
    /// [`crate::relay::hub::MAX_HUB_LINKS`] in all, with those the peers
    /// of its swarms name), registered as this endpoint, for every swarm
    /// on it.
    pub fn use_relays(&self, relays: &[crate::relay::RelayAddr]) {
        self.inner.relays.use_relays(relays);
    }

    /// The relays it keeps links to.
    pub fn relays(&self) -> Vec<crate::relay::RelayAddr> {
        self.inner.relays.relays()
    }

    /// Each relay link's registration, to watch (what offers and tickets
    /// name once registered: [`crate::relay::settled_relays`]).
    pub fn registered_relays(&self) -> Vec<crate::relay::RegisteredWatch> {
        self.inner.relays.registered()
    }

    pub(crate) fn relay_hub(&self) -> &crate::relay::hub::RelayHub {
        &self.inner.relays
    }

    /// The router's mapping of its port, when one was asked for.
    pub fn port_mapping(&self) -> Option<tokio::sync::watch::Receiver<crate::portmap::MapState>> {
        self.inner.mapped.clone()
    }

    /// Refuses every new connection, removes the port mapping, closes the
    /// endpoint and waits a moment for the closing packets to leave. The
    /// nodes on it should have stopped first (their Goodbyes sent).
    pub async fn close(&self) {
        lock(&self.inner.gate).close();
        self.inner.accept.abort();
        let port_map = self
            .inner
            .port_map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(port_map) = port_map {
            port_map.stop().await;
        }
        // The relays forget it.
        self.inner.relays.stop();
        self.inner.endpoint.close(0u32.into(), b"shutdown");
        let flush = self.inner.tuning.close_flush;
        let _ = tokio::time::timeout(flush, self.inner.endpoint.wait_idle()).await;
    }

    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.inner.endpoint
    }

    /// Routes the swarm `name` (and manifest queries for `manifest`) to
    /// `events` until the registration is dropped; the grants the gate
    /// decides for it come on the watch returned. `serving`: its node
    /// takes peers. Its own caps come with its node's first news
    /// ([`Registration::tell_news`]), and again whenever they change.
    pub(crate) fn register(
        &self,
        name: SwarmName,
        manifest: Option<[u8; 32]>,
        serving: bool,
        events: mpsc::Sender<Event>,
    ) -> Result<(Registration, watch::Receiver<(u64, Share)>), RegisterError> {
        let first = Share {
            slots: 1,
            rate: None,
            download: None,
        };
        let (grant, grants) = watch::channel((0, first));
        let route = Route { events, grant };
        lock(&self.inner.gate).register(name.clone(), manifest, serving, route)?;
        let registration = Registration {
            shared: self.clone(),
            name,
        };
        Ok((registration, grants))
    }
}

/// A swarm served on a shared endpoint; dropped, the endpoint stops
/// routing to it and its upload slots go to the others.
pub(crate) struct Registration {
    shared: SharedEndpoint,
    name: SwarmName,
}

impl Registration {
    /// What this swarm may upload now, with the gate's generation.
    pub(crate) fn share(&self) -> (u64, Share) {
        let gate = lock(&self.shared.inner.gate);
        (gate.generation(), gate.upload_share(&self.name))
    }

    /// Tells the gate what changed in this swarm's node; returns its
    /// share, after telling the other swarms whose share changed.
    pub(crate) fn tell_news(&self, news: GateNews) -> (u64, Share) {
        let grants = lock(&self.shared.inner.gate).handle_news(&self.name, news);
        tell(&grants);
        (grants.generation, grants.own)
    }
}

/// Hands the shares that changed to their nodes. Decisions are told after
/// the gate's lock is let go, so two can arrive out of order: a watch
/// keeps the newer.
fn tell(grants: &Grants<Route>) {
    for (route, share) in &grants.changed {
        route.grant.send_if_modified(|current| {
            let newer = grants.generation > current.0;
            if newer {
                *current = (grants.generation, *share);
            }
            newer
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let grants = lock(&self.shared.inner.gate).deregister(&self.name);
        tell(&grants);
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    gate: Arc<Mutex<Routes>>,
    reports: mpsc::UnboundedSender<NodeReport>,
) {
    while let Some(incoming) = endpoint.accept().await {
        // A listener on [::] sees IPv4 peers as ::ffff:a.b.c.d.
        let remote = transport::canonical_addr(incoming.remote_address());
        let validated = incoming.remote_address_validated();
        let door = lock(&gate).handle_incoming(remote, validated, Instant::now());
        match door {
            Door::Accept { ticket, deadline } => {
                let attempt = Attempt {
                    identity: Arc::clone(&identity),
                    tuning: super::connect::within(&tuning, deadline),
                    guard: TicketGuard {
                        gate: Arc::clone(&gate),
                        ticket,
                    },
                };
                tokio::spawn(attempt.run(incoming, remote, deadline));
            }
            Door::Retry => {
                // Validated after all (a race): nothing to retry.
                let _ = incoming.retry();
            }
            Door::Refuse { reason } => {
                let _ = reports.send(NodeReport::Turned {
                    addr: remote,
                    reason,
                });
                incoming.refuse();
            }
        }
    }
}

/// A handshake's place at the gate: free again when dropped, however the
/// handshake ends (up, answered, refused, failed, its task aborted).
pub(crate) struct TicketGuard {
    gate: Arc<Mutex<Routes>>,
    ticket: Ticket,
}

impl TicketGuard {
    /// The handshake became a link: the place is held as a link's (per
    /// prefix and in the endpoint's peer budget) until dropped.
    pub(crate) fn link_up(&self) {
        lock(&self.gate).handle_link_up(self.ticket);
    }
}

impl Drop for TicketGuard {
    fn drop(&mut self) {
        lock(&self.gate).handle_ended(self.ticket);
    }
}

/// One incoming handshake up to its first message.
struct Attempt {
    identity: Arc<Identity>,
    tuning: TransportTuning,
    guard: TicketGuard,
}

impl Attempt {
    async fn run(self, incoming: quinn::Incoming, remote: SocketAddr, deadline: Instant) {
        let until = tokio::time::Instant::from_std(deadline);
        let opened = tokio::time::timeout_at(until, async {
            let (connection, peer) = transport::accept(incoming, &self.identity, &self.tuning)
                .await
                .ok()?;
            handshake::open(connection, peer).await.ok()
        })
        .await;
        // Failed: the guard frees its place.
        let Ok(Some(opening)) = opened else {
            return;
        };
        let route = {
            let mut gate = lock(&self.guard.gate);
            match opening.first() {
                First::Hello(hello) => gate.route_hello(self.guard.ticket, hello),
                First::Manifest(digest) | First::ChunkList(digest) => gate.route_manifest(digest),
            }
        };
        match route {
            // The node answers, within the same deadline; a node that does
            // not take it in time (its queue full, or it is stopping) drops
            // it, and the connection with it.
            Ok(Routed {
                route: node,
                room,
                shed,
            }) => {
                // A swarm over its part is asked to make room for the next
                // one (never waited for: a full queue skips it).
                if let Some((over, keep)) = shed {
                    let _ = over.events.try_send(Event::Shed { keep });
                }
                let routed = RoutedOpening {
                    opening,
                    remote,
                    room,
                    deadline,
                    guard: self.guard,
                };
                let handover = node.events.send(Event::Opened(Box::new(routed)));
                let _ = tokio::time::timeout_at(until, handover).await;
            }
            Err(rejection) => {
                let _ = tokio::time::timeout_at(until, opening.refuse(rejection)).await;
            }
        }
    }
}

/// A handshake the shared endpoint routed to a node, its first message
/// read; it holds its place at the gate until it ends, by `deadline`.
pub(crate) struct RoutedOpening {
    pub(crate) opening: Opening,
    pub(crate) remote: SocketAddr,
    /// Whether the endpoint has room for its link (`Routed::room`).
    pub(crate) room: bool,
    pub(crate) deadline: Instant,
    pub(crate) guard: TicketGuard,
}
