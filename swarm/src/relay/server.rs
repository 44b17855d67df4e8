//! The relay role: a QUIC endpoint that registers nodes, introduces them
//! and passes their relay datagrams on (`docs/relay.md`). The decisions
//! are [`RelayCore`]'s; this keeps the connections and moves the bytes.
//!
//! One task owns the core's control side: it lets connections in (the
//! core's handshake limits), hands each to a task of its own (TLS, the
//! node's control stream, its frames in and out) and routes what the core
//! says to the connections. Each task tells the core when it has written
//! a frame; the core decides when a node that does not read goes, and
//! when a close has taken too long (`RelayAction::Abort`), and this task
//! carries it out. The relay datagrams never reach quinn: the
//! socket under the endpoint asks the core where each goes and sends it
//! there ([`super::socket::RelaySocket`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use minimodel_node::relay::{
    ConnId, OUTBOX_FRAMES, RelayAction, RelayConfig, RelayConfigError, RelayCore, RelayCounts,
    RelayIncoming, RelayReport,
};
use minimodel_wire::PeerId;
use minimodel_wire::relay::{MAX_RELAY_FRAME, RELAY_FRAME_PREFIX, RelayMessage};
use tokio::sync::mpsc;

use super::socket::RelaySocket;
use crate::transport::{self, Identity, TransportError, TransportTuning};

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] RelayConfigError),
    /// The endpoint could not be made.
    #[error("cannot open the relay's QUIC endpoint")]
    Transport(#[from] TransportError),
}

/// What a connection's task tells the relay.
enum ConnEvent {
    /// The handshake ended: up, with the node's proven id and address,
    /// and where to send its frames; or failed.
    Handshake(ConnId, Option<(PeerId, SocketAddr, Outbox)>),
    /// A message from the node.
    Message(ConnId, RelayMessage),
    /// One more frame for the node was written to its control stream.
    Written(ConnId),
    /// The connection ended.
    Closed(ConnId),
}

/// What the relay sends a connection.
enum Outgoing {
    Frame(Vec<u8>),
    Close(&'static str),
}

/// Room for what a connection's task may be handed and has not written:
/// the core sends at most [`OUTBOX_FRAMES`] frames that are not written
/// ([`ConnEvent::Written`]), and then a Close; it aborts a node that does
/// not read ([`RelayAction::Abort`]).
const OUTBOX: usize = OUTBOX_FRAMES + 1;

/// Where the relay's frames for one connection go, and the connection
/// itself: closed from here when its task cannot be reached.
struct Outbox {
    frames: mpsc::Sender<Outgoing>,
    connection: quinn::Connection,
}

/// The QUIC tuning of a connection to the relay: one control stream of
/// small frames, so small windows (what a node can make the relay buffer).
pub fn relay_tuning(base: &TransportTuning) -> TransportTuning {
    TransportTuning {
        stream_receive_window: 16 * 1024,
        connection_receive_window: 64 * 1024,
        send_window: 128 * 1024,
        max_concurrent_uni_streams: 0,
        max_concurrent_bidi_streams: 1,
        ..base.clone()
    }
}

/// A running relay.
pub struct RelayServer {
    endpoint: quinn::Endpoint,
    core: Arc<Mutex<RelayCore>>,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    listen: SocketAddr,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

fn lock(core: &Mutex<RelayCore>) -> MutexGuard<'_, RelayCore> {
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RelayServer {
    /// Listens at `listen` (port 0 picks one) as `identity`, with the
    /// operator's `config`. Must run inside a tokio runtime.
    pub fn bind(
        listen: SocketAddr,
        identity: Arc<Identity>,
        config: RelayConfig,
        tuning: TransportTuning,
    ) -> Result<Self, RelayError> {
        let tuning = relay_tuning(&tuning);
        tuning.validate().map_err(TransportError::from)?;
        let seed = u64::from_le_bytes(
            identity.peer_id().0[..8]
                .try_into()
                .expect("8 bytes of the key"),
        ) ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let core = Arc::new(Mutex::new(RelayCore::new(config, seed)?));
        let runtime = quinn::default_runtime().ok_or(TransportError::NoRuntime)?;
        let socket = transport::bind_udp_socket(listen, &tuning)?;
        let fail = |action| {
            move |source| TransportError::Socket {
                addr: listen,
                action,
                source,
            }
        };
        let ipv6 = socket
            .local_addr()
            .map_err(fail("read the bound address"))?
            .is_ipv6();
        let inner = transport::wrap_udp_socket(runtime.as_ref(), socket)
            .map_err(fail("register with the runtime"))?;
        let socket = Arc::new(RelaySocket {
            inner,
            core: Arc::clone(&core),
            ipv6,
            send_failed: AtomicU64::new(0),
        });
        let crypto = transport::relay_server_crypto(&identity).map_err(TransportError::from)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(tuning.transport_config(listen.ip().is_loopback())));
        // What waits to be let in is bounded too (the core lets in at most
        // its handshake limit at once).
        server.max_incoming(256);
        server.incoming_buffer_size(64 * 1024);
        server.incoming_buffer_size_total(4 * 1024 * 1024);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            transport::endpoint_config(listen, &tuning)?,
            Some(server),
            socket,
            runtime,
        )
        .map_err(fail("register with the runtime"))?;
        let listen = endpoint
            .local_addr()
            .map_err(fail("read the bound address"))?;
        Ok(Self {
            endpoint,
            core,
            identity,
            tuning,
            listen,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Its id (the key nodes pin).
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// What it has done, and holds now.
    pub fn counts(&self) -> RelayCounts {
        lock(&self.core).counts()
    }

    /// A handle that reads [`RelayServer::counts`] while it runs.
    pub fn counter(&self) -> RelayCounter {
        RelayCounter {
            core: Arc::clone(&self.core),
            endpoint: self.endpoint.clone(),
        }
    }

    /// Serves until `stop` resolves, passing what the core reports to
    /// `reports`; then closes every connection.
    pub async fn run(
        self,
        stop: impl Future<Output = ()>,
        reports: mpsc::UnboundedSender<RelayReport>,
    ) {
        let mut stop = std::pin::pin!(stop);
        let (events_tx, mut events) = mpsc::channel::<ConnEvent>(1024);
        let mut outboxes: HashMap<ConnId, Outbox> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let deadline = lock(&self.core)
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                () = &mut stop => break,
                // The core's deadlines before new input: a flood of
                // messages does not hold back the aborts it decides.
                () = sleep_until(deadline) => lock(&self.core).handle_timeout(Instant::now()),
                Some(incoming) = self.endpoint.accept() => {
                    let remote = transport::canonical_addr(incoming.remote_address());
                    let validated = incoming.remote_address_validated();
                    let decision = lock(&self.core).handle_incoming(remote, validated, Instant::now());
                    match decision {
                        RelayIncoming::Accept(conn) => {
                            tasks.spawn(serve(
                                conn,
                                incoming,
                                Arc::clone(&self.identity),
                                self.tuning.clone(),
                                events_tx.clone(),
                            ));
                        }
                        RelayIncoming::Retry => {
                            let _ = incoming.retry();
                        }
                        RelayIncoming::Refuse => incoming.refuse(),
                    }
                }
                Some(event) = events.recv() => {
                    let now = Instant::now();
                    let mut core = lock(&self.core);
                    match event {
                        ConnEvent::Handshake(conn, Some((peer, remote, outbox))) => {
                            outboxes.insert(conn, outbox);
                            core.handle_handshake(conn, Some((peer, remote)), now);
                        }
                        ConnEvent::Handshake(conn, None) => core.handle_handshake(conn, None, now),
                        ConnEvent::Message(conn, message) => core.handle_message(conn, message, now),
                        ConnEvent::Written(conn) => core.handle_written(conn, now),
                        ConnEvent::Closed(conn) => {
                            outboxes.remove(&conn);
                            core.handle_closed(conn, now);
                        }
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            self.carry_out(&mut outboxes, &reports);
        }
        drop(outboxes);
        self.endpoint.close(0u32.into(), b"relay stopped");
        tasks.abort_all();
        let _ = tokio::time::timeout(self.tuning.close_flush, self.endpoint.wait_idle()).await;
    }

    /// Sends what the core decided, and passes its reports on.
    fn carry_out(
        &self,
        outboxes: &mut HashMap<ConnId, Outbox>,
        reports: &mpsc::UnboundedSender<RelayReport>,
    ) {
        let mut core = lock(&self.core);
        while let Some(action) = core.poll_action() {
            match action {
                RelayAction::Send { conn, message } => {
                    let Some(outbox) = outboxes.get(&conn) else {
                        continue;
                    };
                    let Ok(frame) = message.encode() else {
                        // Not to be written: it does not wait either.
                        core.handle_written(conn, Instant::now());
                        continue;
                    };
                    if outbox.frames.try_send(Outgoing::Frame(frame)).is_err() {
                        // Its task ended, or has more than the core
                        // sends: it goes.
                        outbox.connection.close(3u32.into(), b"not reading");
                        outboxes.remove(&conn);
                        core.handle_closed(conn, Instant::now());
                    }
                }
                RelayAction::Close { conn, reason } => {
                    // Its task writes what waits and closes it; the core
                    // aborts one that has not ended within its grace.
                    if let Some(outbox) = outboxes.get(&conn)
                        && outbox.frames.try_send(Outgoing::Close(reason)).is_err()
                    {
                        outbox.connection.close(1u32.into(), reason.as_bytes());
                    }
                }
                RelayAction::Abort { conn, reason } => {
                    // Whatever its task waits for: the node does not read,
                    // or its close took too long.
                    if let Some(outbox) = outboxes.remove(&conn) {
                        outbox.connection.close(3u32.into(), reason.as_bytes());
                    }
                }
            }
        }
        while let Some(report) = core.poll_report() {
            let _ = reports.send(report);
        }
    }
}

/// Reads a running relay's counts.
#[derive(Debug, Clone)]
pub struct RelayCounter {
    core: Arc<Mutex<RelayCore>>,
    endpoint: quinn::Endpoint,
}

impl RelayCounter {
    /// What the relay has done, and holds now.
    pub fn counts(&self) -> RelayCounts {
        lock(&self.core).counts()
    }

    /// QUIC connections its endpoint holds now, whatever their state
    /// (handshakes, registered, closing): what its memory grows with.
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One node's connection: its handshake, then its control stream's
/// frames both ways, until either side ends it.
async fn serve(
    conn: ConnId,
    incoming: quinn::Incoming,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    events: mpsc::Sender<ConnEvent>,
) {
    let connection = match transport::accept_relay(incoming, &identity, &tuning).await {
        Ok((connection, peer)) => {
            let remote = transport::canonical_addr(connection.remote_address());
            let (frames, outgoing) = mpsc::channel(OUTBOX);
            let outbox = Outbox {
                frames,
                connection: connection.clone(),
            };
            if events
                .send(ConnEvent::Handshake(conn, Some((peer, remote, outbox))))
                .await
                .is_err()
            {
                return;
            }
            (connection, outgoing)
        }
        Err(_) => {
            let _ = events.send(ConnEvent::Handshake(conn, None)).await;
            return;
        }
    };
    let (connection, outgoing) = connection;
    control(conn, &connection, outgoing, &events).await;
    let _ = events.send(ConnEvent::Closed(conn)).await;
}

/// The control stream of an up connection.
async fn control(
    conn: ConnId,
    connection: &quinn::Connection,
    mut outgoing: mpsc::Receiver<Outgoing>,
    events: &mpsc::Sender<ConnEvent>,
) {
    // The node opens the stream; the core closes a connection that does
    // not register in time, which ends this wait too.
    let (mut send, mut recv) = tokio::select! {
        stream = connection.accept_bi() => match stream {
            Ok(stream) => stream,
            Err(_) => return,
        },
        Some(Outgoing::Close(reason)) = outgoing.recv() => {
            connection.close(1u32.into(), reason.as_bytes());
            return;
        }
    };
    let mut buffer: Vec<u8> = Vec::with_capacity(RELAY_FRAME_PREFIX + MAX_RELAY_FRAME as usize);
    let mut chunk = [0u8; 1024];
    loop {
        tokio::select! {
            read = recv.read(&mut chunk) => {
                let Ok(Some(n)) = read else { break };
                buffer.extend_from_slice(&chunk[..n]);
                loop {
                    match RelayMessage::decode(&buffer) {
                        Ok(Some((message, used))) => {
                            buffer.drain(..used);
                            if !message.from_node() {
                                connection.close(2u32.into(), b"a relay's message from a node");
                                return;
                            }
                            if events.send(ConnEvent::Message(conn, message)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            connection.close(2u32.into(), b"malformed frame");
                            return;
                        }
                    }
                }
            }
            out = outgoing.recv() => match out {
                Some(Outgoing::Frame(frame)) => {
                    // A node that gives no credit for it is aborted by
                    // the core (`WRITE_STALL`), which ends this write.
                    if send.write_all(&frame).await.is_err() {
                        break;
                    }
                    if events.send(ConnEvent::Written(conn)).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Close(reason)) => {
                    // What was written (a refusal, say) reaches the node
                    // first, unless the core aborts it (`CLOSE_GRACE`).
                    let _ = send.finish();
                    let _ = send.stopped().await;
                    connection.close(1u32.into(), reason.as_bytes());
                    return;
                }
                None => break,
            }
        }
    }
    let _ = send.finish();
    connection.close(0u32.into(), b"bye");
}
