//! A node's link to a relay it names (`--relay`, or a ticket's): a QUIC
//! connection from the node's own endpoint (so the relay sees the mapping
//! peers punch to), registered, kept up, carrying the node's Introduce
//! requests and the relay's answers as [`RelayEvent`]s for the node's
//! core. When to connect again, what a refusal means and what may be sent
//! when are [`RelayLinkCore`]'s decisions (`minimodel_node::relay::link`,
//! sans-IO, tested on a virtual clock); this only carries them out. A
//! Connect's channel becomes a relay path of the endpoint's socket
//! ([`crate::transport::Paths::add_relay_path`]) before the core hears of
//! it, so that a dial of the path, or what comes through it, works at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use minimodel_node::relay::link::{
    LinkAction, LinkConfig, LinkEvent, LinkRegistration, RelayLinkCore,
};
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
        let driver = Driver {
            endpoint,
            paths,
            relay,
            identity,
            tuning,
        };
        let task = tokio::spawn(driver.keep_up(registration, events, inbox, state)).abort_handle();
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

/// A session with the relay: its connection and control stream.
struct Session {
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Bytes read and not yet a whole frame.
    buffer: Vec<u8>,
}

/// What a dial ended with: the session and the key the relay proved, or
/// why not.
type Dialed = Result<(Session, PeerId), String>;

/// Where a link dials, from where, and as whom.
struct Driver {
    endpoint: quinn::Endpoint,
    /// The endpoint socket's relay paths.
    paths: Paths,
    relay: RelayAddr,
    identity: Arc<Identity>,
    tuning: TransportTuning,
}

async fn dial(
    endpoint: quinn::Endpoint,
    relay: RelayAddr,
    identity: Arc<Identity>,
    tuning: TransportTuning,
) -> Dialed {
    let (connection, id) =
        transport::connect_relay(&endpoint, relay.addr, relay.id, &identity, &tuning)
            .await
            .map_err(|error| error.to_string())?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|error| error.to_string())?;
    Ok((
        Session {
            connection,
            send,
            recv,
            buffer: Vec::new(),
        },
        id,
    ))
}

fn link_registration(registration: &Registration) -> LinkRegistration {
    LinkRegistration {
        agent: registration.agent.clone(),
        addrs: registration.addrs.clone(),
        mapping: registration.mapping,
    }
}

/// The driver of one link: it carries out what [`RelayLinkCore`] decides
/// (dial, write a message, close), hands it what happens (the dial's end,
/// each message read, a loss, the node's commands, the time), and passes
/// its events to the node, a Connect's channel made a relay path of the
/// endpoint's socket first. It decides nothing.
impl Driver {
    async fn keep_up(
        self,
        registration: Registration,
        events: mpsc::Sender<RelayEvent>,
        mut commands: mpsc::Receiver<Command>,
        state: tokio::sync::watch::Sender<Option<PeerId>>,
    ) {
        let Driver {
            endpoint,
            paths,
            relay,
            identity,
            tuning,
        } = self;
        let mut core = RelayLinkCore::new(
            LinkConfig::default(),
            link_registration(&registration),
            Instant::now(),
        );
        let mut session: Option<Session> = None;
        let mut dialing: Option<tokio::task::JoinHandle<Dialed>> = None;
        let mut chunk = [0u8; 1024];
        loop {
            // What the core decided.
            while let Some(action) = core.poll_action() {
                match action {
                    LinkAction::Connect => {
                        dialing = Some(tokio::spawn(dial(
                            endpoint.clone(),
                            relay,
                            Arc::clone(&identity),
                            tuning.clone(),
                        )));
                    }
                    LinkAction::Send(message) => {
                        let Some(open) = session.as_mut() else {
                            continue;
                        };
                        let written = match message.encode() {
                            Ok(frame) => {
                                open.send.write_all(&frame).await.map_err(|e| e.to_string())
                            }
                            Err(error) => Err(format!("our message does not encode: {error}")),
                        };
                        if let Err(reason) = written {
                            if let Some(gone) = session.take() {
                                gone.connection.close(0u32.into(), b"bye");
                            }
                            core.handle_lost(reason, Instant::now());
                        }
                    }
                    LinkAction::Close => {
                        if let Some(gone) = session.take() {
                            gone.connection.close(0u32.into(), b"bye");
                        }
                    }
                }
            }
            // What the node hears.
            while let Some(event) = core.poll_event() {
                let (event, done) = match event {
                    LinkEvent::Registered {
                        id,
                        observed,
                        limits,
                    } => {
                        state.send_replace(Some(id));
                        (
                            RelayEvent::Registered {
                                relay: relay.addr,
                                id,
                                observed,
                                limits,
                            },
                            false,
                        )
                    }
                    LinkEvent::Refused { reason, again_at } => {
                        state.send_replace(None);
                        (
                            RelayEvent::Refused {
                                relay: relay.addr,
                                reason,
                            },
                            again_at.is_none(),
                        )
                    }
                    LinkEvent::Lost { reason, .. } => {
                        state.send_replace(None);
                        (
                            RelayEvent::Lost {
                                relay: relay.addr,
                                reason,
                            },
                            false,
                        )
                    }
                    LinkEvent::Connect {
                        peer,
                        addrs,
                        channel,
                        role,
                    } => (
                        RelayEvent::Connect {
                            relay: relay.addr,
                            peer,
                            addrs,
                            path: paths.add_relay_path(RelayPath {
                                relay: relay.addr,
                                channel,
                            }),
                            role,
                        },
                        false,
                    ),
                    LinkEvent::IntroduceFailed { peer, reason } => (
                        RelayEvent::IntroduceFailed {
                            relay: relay.addr,
                            peer,
                            reason,
                        },
                        false,
                    ),
                    LinkEvent::ChannelClosed { channel, reason } => (
                        RelayEvent::ChannelClosed {
                            relay: relay.addr,
                            path: paths.remove_relay_channel(relay.addr, channel),
                            reason,
                        },
                        false,
                    ),
                };
                if events.send(event).await.is_err() || done {
                    if let Some(gone) = session.take() {
                        gone.connection.close(0u32.into(), b"bye");
                    }
                    return;
                }
            }
            let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                // What the relay sent before it closed (a refusal) comes
                // first; a connection that ends ends the read too.
                biased;
                read = async {
                    match session.as_mut() {
                        Some(open) => open.recv.read(&mut chunk).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    let n = match read {
                        Ok(Some(n)) => n,
                        Ok(None) => {
                            session = None;
                            core.handle_lost("the relay ended the stream".into(), now);
                            continue;
                        }
                        Err(error) => {
                            session = None;
                            core.handle_lost(error.to_string(), now);
                            continue;
                        }
                    };
                    let Some(open) = session.as_mut() else { continue };
                    open.buffer.extend_from_slice(&chunk[..n]);
                    while let Some(open) = session.as_mut() {
                        match RelayMessage::decode(&open.buffer) {
                            Ok(Some((message, used))) => {
                                open.buffer.drain(..used);
                                core.handle_message(message, now);
                            }
                            Ok(None) => break,
                            Err(error) => {
                                if let Some(gone) = session.take() {
                                    gone.connection.close(0u32.into(), b"malformed");
                                }
                                core.handle_lost(
                                    format!("the relay sent a malformed frame: {error}"),
                                    now,
                                );
                                break;
                            }
                        }
                    }
                }
                dialed = async {
                    match dialing.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                } => {
                    dialing = None;
                    let now = Instant::now();
                    match dialed {
                        Ok(Ok((open, id))) => {
                            session = Some(open);
                            core.handle_connected(id, now);
                        }
                        Ok(Err(reason)) => core.handle_lost(reason, now),
                        Err(_) => core.handle_lost("the dial's task ended".into(), now),
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Introduce(peer)) => {
                        core.introduce(peer);
                    }
                    Some(Command::Update(update)) => core.update(link_registration(&update)),
                    None => {
                        if let Some(gone) = session.take() {
                            gone.connection.close(0u32.into(), b"bye");
                        }
                        return;
                    }
                },
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => core.handle_timeout(Instant::now()),
            }
        }
    }
}
