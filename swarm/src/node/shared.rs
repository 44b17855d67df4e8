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
//! it. Every node dials from the same endpoint. Nothing here decides: the
//! gate and each node's core do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use minimodel_node::gate::{Door, Gate, Grants, RegisterError, SwarmName, Ticket};
use tokio::sync::mpsc;

use super::{CoreConfig, Event, NodeReport};
use crate::link::handshake::{self, First, Opening};
use crate::transport::{self, Identity, TransportError, TransportTuning};

type Routes = Gate<mpsc::Sender<Event>>;

/// One endpoint that serves every swarm registered on it. Cheap to clone;
/// the endpoint closes when [`SharedEndpoint::close`] is called or the
/// last clone is dropped.
#[derive(Clone)]
pub struct SharedEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    listen: SocketAddr,
    gate: Arc<Mutex<Routes>>,
    accept: tokio::task::AbortHandle,
    port_map: Mutex<Option<crate::portmap::PortMapTask>>,
    mapped: Option<tokio::sync::watch::Receiver<crate::portmap::MapState>>,
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
        let endpoint = transport::bind_endpoint(listen, &identity, &tuning)?;
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
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                identity,
                tuning,
                listen,
                gate,
                accept,
                port_map: Mutex::new(port_map),
                mapped,
            }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The identity every swarm on it uses.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    /// How many swarms it serves now.
    pub fn swarms(&self) -> usize {
        lock(&self.inner.gate).swarms()
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
        self.inner.endpoint.close(0u32.into(), b"shutdown");
        let flush = self.inner.tuning.close_flush;
        let _ = tokio::time::timeout(flush, self.inner.endpoint.wait_idle()).await;
    }

    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.inner.endpoint
    }

    /// Routes the swarm `name` (and manifest queries for `manifest`) to
    /// `events` until the registration is dropped.
    pub(crate) fn register(
        &self,
        name: SwarmName,
        manifest: Option<[u8; 32]>,
        events: mpsc::Sender<Event>,
    ) -> Result<Registration, RegisterError> {
        lock(&self.inner.gate).register(name.clone(), manifest, events)?;
        Ok(Registration {
            shared: self.clone(),
            name,
        })
    }
}

/// A swarm served on a shared endpoint; dropped, the endpoint stops
/// routing to it and its upload slots go to the others.
pub(crate) struct Registration {
    shared: SharedEndpoint,
    name: SwarmName,
}

impl Registration {
    /// The uploads this swarm may run now.
    pub(crate) fn grant(&self) -> usize {
        lock(&self.shared.inner.gate).upload_grant(&self.name)
    }

    /// Tells the gate the uploads this swarm would run now; returns its
    /// grant, after telling the other swarms whose grant changed.
    pub(crate) fn set_demand(&self, demand: usize) -> (u64, usize) {
        let grants = lock(&self.shared.inner.gate).set_upload_demand(&self.name, demand);
        tell(&grants);
        (grants.generation, grants.own)
    }
}

/// Sends the grants that changed to their nodes. A node whose queue is
/// full misses it and hears its grant again when its own demand changes.
fn tell(grants: &Grants<mpsc::Sender<Event>>) {
    for (node, grant) in &grants.changed {
        let _ = node.try_send(Event::Grant {
            generation: grants.generation,
            grant: *grant,
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
                    gate: Arc::clone(&gate),
                    ticket,
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

/// One incoming handshake up to its first message.
struct Attempt {
    identity: Arc<Identity>,
    tuning: TransportTuning,
    gate: Arc<Mutex<Routes>>,
    ticket: Ticket,
}

impl Attempt {
    async fn run(self, incoming: quinn::Incoming, remote: SocketAddr, deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        let opened = tokio::time::timeout_at(deadline, async {
            let (connection, peer) = transport::accept(incoming, &self.identity, &self.tuning)
                .await
                .ok()?;
            handshake::open(connection, peer).await.ok()
        })
        .await;
        let Ok(Some(opening)) = opened else {
            lock(&self.gate).handle_failed(self.ticket);
            return;
        };
        let route = {
            let mut gate = lock(&self.gate);
            match opening.first() {
                First::Hello(hello) => gate.route_hello(self.ticket, hello),
                First::Manifest(digest) => gate.route_manifest(self.ticket, digest),
            }
        };
        match route {
            // The node answers; when it is gone the connection goes with
            // the event.
            Ok(node) => {
                let _ = node
                    .send(Event::Opened(Box::new(RoutedOpening { opening, remote })))
                    .await;
            }
            Err(rejection) => {
                let _ = tokio::time::timeout_at(deadline, opening.refuse(rejection)).await;
            }
        }
    }
}

/// A handshake the shared endpoint routed to a node, its first message
/// read.
pub(crate) struct RoutedOpening {
    pub(crate) opening: Opening,
    pub(crate) remote: SocketAddr,
}
