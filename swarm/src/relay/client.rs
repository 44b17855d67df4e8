//! A node's link to a relay it names (`--relay`, or a ticket's): a QUIC
//! connection from the node's own endpoint (so the relay sees the mapping
//! peers punch to), registered, kept up (and made again after a loss, 1 s
//! doubling to 60 s), carrying the node's Introduce requests and the
//! relay's answers as [`RelayEvent`]s for the node's core. A Connect's
//! channel becomes a relay path of the endpoint's socket
//! ([`crate::transport::Paths::add_relay_path`]) before the core hears of
//! it, so that a dial of the path, or what comes through it, works at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minimodel_wire::PeerId;
use minimodel_wire::relay::{
    ChannelEnd, ConnectRole, IntroduceRefusal, MappingKind, RegisterRefusal, RelayLimits,
    RelayMessage,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::RelayAddr;
use super::server::relay_tuning;
use crate::transport::{self, Identity, Paths, RelayPath, TransportTuning};

/// What a node registers with (its Register message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Program name and version.
    pub agent: String,
    /// Where it listens that peers may reach without its router (global
    /// IPv6 addresses, LAN addresses), at most 4.
    pub addrs: Vec<SocketAddr>,
    /// How its router maps its socket, as it knows it.
    pub mapping: MappingKind,
}

/// What a relay link tells its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Registered with the relay.
    Registered {
        /// The relay.
        relay: SocketAddr,
        /// The key it proved.
        id: PeerId,
        /// Where it sees us.
        observed: SocketAddr,
        /// What it allows a pair.
        limits: RelayLimits,
    },
    /// The relay refused the registration.
    Refused {
        /// The relay.
        relay: SocketAddr,
        /// Why.
        reason: RegisterRefusal,
    },
    /// The link went down (it is made again after a while).
    Lost {
        /// The relay.
        relay: SocketAddr,
        /// Why, in words.
        reason: String,
    },
    /// An introduction: `peer` at `addrs`, and through the relay at `path`.
    Connect {
        /// The relay.
        relay: SocketAddr,
        /// The other node.
        peer: PeerId,
        /// Where the relay sees it, and what it registered.
        addrs: Vec<SocketAddr>,
        /// The channel's relay path (`240.x.y.1`).
        path: SocketAddr,
        /// Dial (we asked) or open (it asked).
        role: ConnectRole,
    },
    /// No introduction to `peer`.
    IntroduceFailed {
        /// The relay.
        relay: SocketAddr,
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: IntroduceRefusal,
    },
    /// A channel ended: its path is gone.
    ChannelClosed {
        /// The relay.
        relay: SocketAddr,
        /// The path, when it was known.
        path: Option<SocketAddr>,
        /// Why.
        reason: ChannelEnd,
    },
}

enum Command {
    Introduce(PeerId),
    Update(Registration),
}

/// A running link to one relay; dropping it ends the link.
#[derive(Debug)]
pub struct RelayLink {
    relay: RelayAddr,
    commands: mpsc::Sender<Command>,
    task: AbortHandle,
    /// The relay's key while registered, `None` otherwise.
    registered: tokio::sync::watch::Receiver<Option<PeerId>>,
}

impl Drop for RelayLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The longest wait before the link is made again.
const MOST_BACKOFF: Duration = Duration::from_secs(60);

impl RelayLink {
    /// Starts the link to `relay` from `endpoint` (whose socket's
    /// `paths` carry the channels) as `identity`, registering with
    /// `registration`; what happens goes to `events`.
    pub fn start(
        endpoint: quinn::Endpoint,
        paths: Paths,
        relay: RelayAddr,
        identity: Arc<Identity>,
        tuning: &TransportTuning,
        registration: Registration,
        events: mpsc::Sender<RelayEvent>,
    ) -> Self {
        let (commands, inbox) = mpsc::channel(256);
        let tuning = relay_tuning(tuning);
        let (state, registered) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(keep_up(
            endpoint,
            paths,
            relay,
            identity,
            tuning,
            registration,
            events,
            inbox,
            state,
        ))
        .abort_handle();
        Self {
            relay,
            commands,
            task,
            registered,
        }
    }

    /// The relay's key while the node is registered with it (`None`
    /// otherwise), as it changes: independent of whoever reads the
    /// link's events.
    pub fn registered(&self) -> tokio::sync::watch::Receiver<Option<PeerId>> {
        self.registered.clone()
    }

    /// The relay.
    pub fn relay(&self) -> RelayAddr {
        self.relay
    }

    /// Asks the relay to introduce us to `peer`; false when the link
    /// cannot take it now (a full queue).
    pub fn introduce(&self, peer: PeerId) -> bool {
        self.commands.try_send(Command::Introduce(peer)).is_ok()
    }

    /// Tells the relay what we register with now.
    pub fn update(&self, registration: Registration) {
        let _ = self.commands.try_send(Command::Update(registration));
    }
}

/// How a session with the relay ended.
enum Ended {
    /// Refused: NotAllowed ends the link for good.
    Refused(RegisterRefusal),
    /// Lost, or never made: try again later.
    Lost(String),
    /// The node is gone.
    NodeGone,
}

#[allow(clippy::too_many_arguments)]
async fn keep_up(
    endpoint: quinn::Endpoint,
    paths: Paths,
    relay: RelayAddr,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    mut registration: Registration,
    events: mpsc::Sender<RelayEvent>,
    mut commands: mpsc::Receiver<Command>,
    state: tokio::sync::watch::Sender<Option<PeerId>>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut registered = false;
        let ended = session(
            &endpoint,
            &paths,
            relay,
            &identity,
            &tuning,
            &mut registration,
            &events,
            &mut commands,
            &mut registered,
            &state,
        )
        .await;
        state.send_replace(None);
        if registered {
            backoff = Duration::from_secs(1);
        }
        let done = matches!(ended, Ended::Refused(RegisterRefusal::NotAllowed));
        let event = match ended {
            Ended::NodeGone => return,
            Ended::Refused(reason) => RelayEvent::Refused {
                relay: relay.addr,
                reason,
            },
            Ended::Lost(reason) => RelayEvent::Lost {
                relay: relay.addr,
                reason,
            },
        };
        if events.send(event).await.is_err() || done {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MOST_BACKOFF);
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    endpoint: &quinn::Endpoint,
    paths: &Paths,
    relay: RelayAddr,
    identity: &Identity,
    tuning: &TransportTuning,
    registration: &mut Registration,
    events: &mpsc::Sender<RelayEvent>,
    commands: &mut mpsc::Receiver<Command>,
    registered: &mut bool,
    state: &tokio::sync::watch::Sender<Option<PeerId>>,
) -> Ended {
    let (connection, id) =
        match transport::connect_relay(endpoint, relay.addr, relay.id, identity, tuning).await {
            Ok(up) => up,
            Err(error) => return Ended::Lost(error.to_string()),
        };
    let ended = control(
        &connection,
        paths,
        relay,
        id,
        registration,
        events,
        commands,
        registered,
        state,
    )
    .await;
    connection.close(0u32.into(), b"bye");
    ended
}

fn frame(message: &RelayMessage) -> Option<Vec<u8>> {
    message.encode().ok()
}

#[allow(clippy::too_many_arguments)]
async fn control(
    connection: &quinn::Connection,
    paths: &Paths,
    relay: RelayAddr,
    id: PeerId,
    registration: &mut Registration,
    events: &mpsc::Sender<RelayEvent>,
    commands: &mut mpsc::Receiver<Command>,
    registered: &mut bool,
    state: &tokio::sync::watch::Sender<Option<PeerId>>,
) -> Ended {
    let lost = |error: &dyn std::fmt::Display| Ended::Lost(error.to_string());
    let (mut send, mut recv) = match connection.open_bi().await {
        Ok(stream) => stream,
        Err(error) => return lost(&error),
    };
    let register = |registration: &Registration| {
        frame(&RelayMessage::Register {
            agent: registration.agent.clone(),
            addrs: registration.addrs.clone(),
            mapping: registration.mapping,
        })
    };
    let Some(first) = register(registration) else {
        return Ended::Lost("our Register does not encode".into());
    };
    if let Err(error) = send.write_all(&first).await {
        return lost(&error);
    }
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        tokio::select! {
            // What the relay sent before it closed (a refusal) comes first.
            biased;
            read = recv.read(&mut chunk) => {
                let n = match read {
                    Ok(Some(n)) => n,
                    Ok(None) => return Ended::Lost("the relay ended the stream".into()),
                    Err(error) => return lost(&error),
                };
                buffer.extend_from_slice(&chunk[..n]);
                loop {
                    let (message, used) = match RelayMessage::decode(&buffer) {
                        Ok(Some(decoded)) => decoded,
                        Ok(None) => break,
                        Err(error) => return lost(&format!("the relay sent a malformed frame: {error}")),
                    };
                    buffer.drain(..used);
                    let event = match message {
                        RelayMessage::Registered { observed, limits } => {
                            *registered = true;
                            state.send_replace(Some(id));
                            RelayEvent::Registered { relay: relay.addr, id, observed, limits }
                        }
                        RelayMessage::RegisterRefused { reason } => return Ended::Refused(reason),
                        RelayMessage::Connect { peer, addrs, channel, role } => {
                            let path = paths.add_relay_path(RelayPath { relay: relay.addr, channel });
                            RelayEvent::Connect { relay: relay.addr, peer, addrs, path, role }
                        }
                        RelayMessage::IntroduceFailed { peer, reason } => {
                            RelayEvent::IntroduceFailed { relay: relay.addr, peer, reason }
                        }
                        RelayMessage::ChannelClosed { channel, reason } => RelayEvent::ChannelClosed {
                            relay: relay.addr,
                            path: paths.remove_relay_channel(relay.addr, channel),
                            reason,
                        },
                        RelayMessage::Register { .. } | RelayMessage::Introduce { .. } => {
                            return Ended::Lost("the relay sent a node's message".into());
                        }
                    };
                    if events.send(event).await.is_err() {
                        return Ended::NodeGone;
                    }
                }
            }
            command = commands.recv() => {
                let message = match command {
                    Some(Command::Introduce(peer)) => frame(&RelayMessage::Introduce { peer }),
                    Some(Command::Update(update)) => {
                        *registration = update;
                        register(registration)
                    }
                    None => return Ended::NodeGone,
                };
                if let Some(message) = message
                    && let Err(error) = send.write_all(&message).await
                {
                    return lost(&error);
                }
            }
            closed = connection.closed() => return lost(&closed),
        }
    }
}
