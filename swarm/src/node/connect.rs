//! Dials and incoming handshakes as tasks: QUIC, then the Hello exchange;
//! the outcome goes back to the node as an event. An incoming handshake
//! asks the core about the peer's Hello through the node task. The core
//! keeps each attempt's deadline and aborts the task when it passes.

use std::net::SocketAddr;
use std::time::Instant;

use minimodel_node::LinkId;
use minimodel_node::report::{LinkEnd, LocalError, Violation};
use minimodel_wire::{HaveBitfield, PeerAddr, PeerId, SwarmIdentity};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::{Event, Node};
use crate::link::handshake::{self, Listened};
use crate::transport::{self, AcceptError, ConnectError};
use minimodel_node::node::Rejection;

/// How the core sees a failed QUIC dial.
fn connect_end(error: ConnectError) -> LinkEnd {
    match error {
        ConnectError::Timeout { .. } => LinkEnd::TimedOut,
        ConnectError::PeerIdMismatch { .. } => LinkEnd::WrongPeer,
        ConnectError::PeerMisbehaved { addr, source } => {
            LinkEnd::Violation(Violation::Handshake(format!("{addr}: {source}")))
        }
        other => LinkEnd::Lost(other.to_string()),
    }
}

fn accept_end(error: AcceptError) -> LinkEnd {
    match error {
        AcceptError::Timeout { .. } => LinkEnd::TimedOut,
        error if error.is_peer_misbehaviour() => {
            LinkEnd::Violation(Violation::Handshake(error.to_string()))
        }
        other => LinkEnd::Lost(other.to_string()),
    }
}

/// The transport's tuning for one attempt: its handshake may take until
/// the core's deadline for the whole attempt, no more, no less.
pub(super) fn within(
    tuning: &crate::transport::TransportTuning,
    deadline: Instant,
) -> crate::transport::TransportTuning {
    let mut tuning = tuning.clone();
    let left = deadline.saturating_duration_since(Instant::now());
    tuning.handshake_timeout = left.max(std::time::Duration::from_millis(1));
    tuning
}

/// Dials `addr` as link `link`; its QUIC handshake gives up at `deadline`.
pub(super) fn dial(
    node: &Node,
    link: LinkId,
    addr: SocketAddr,
    peer: Option<PeerId>,
    have: HaveBitfield,
    deadline: Instant,
) -> AbortHandle {
    let endpoint = node.endpoint.clone();
    let identity = std::sync::Arc::clone(&node.identity);
    let tuning = within(&node.config.tuning, deadline);
    let swarm = node.swarm.clone();
    let events = node.sender.clone();
    let task = tokio::spawn(async move {
        let attempt = async {
            // A peer found on a DHT has no id yet: its handshake proves one.
            let failed = |error| Event::Failed(link, Ok(connect_end(error)));
            let (connection, id) = match peer {
                Some(id) => {
                    let peer = PeerAddr { id, addr };
                    let connection = transport::connect(&endpoint, &peer, &identity, &tuning)
                        .await
                        .map_err(failed)?;
                    (connection, id)
                }
                None => transport::connect_any(&endpoint, addr, &identity, &tuning)
                    .await
                    .map_err(failed)?,
            };
            let remote = transport::canonical_addr(connection.remote_address());
            // Our Hello as the core writes it now (a port mapping may have
            // come since the dial was decided).
            let (reply, answer) = oneshot::channel();
            let gone = || Event::Failed(link, Ok(LinkEnd::Local(LocalError::Gone)));
            let asked = events.send(Event::OurHello { remote, reply }).await;
            let hello = match asked {
                Ok(()) => answer.await.map_err(|_| gone())?,
                Err(_) => return Err(gone()),
            };
            let session = handshake::dial(connection, id, &swarm, hello, have)
                .await
                .map_err(|end| Event::Failed(link, end))?;
            Ok((session, remote))
        };
        let event = match attempt.await {
            Ok((session, remote)) => Event::Up(link, Box::new(session), remote),
            Err(event) => event,
        };
        let _ = events.send(event).await;
    });
    task.abort_handle()
}

/// Runs an accepted incoming connection's handshake as link `link`.
pub(super) fn accept(
    node: &Node,
    link: LinkId,
    incoming: quinn::Incoming,
    deadline: Instant,
) -> AbortHandle {
    let identity = std::sync::Arc::clone(&node.identity);
    let tuning = within(&node.config.tuning, deadline);
    let swarm = node.swarm.clone();
    let events = node.sender.clone();
    let remote = incoming.remote_address();
    let attempt = async move {
        let (connection, peer) = transport::accept(incoming, &identity, &tuning)
            .await
            .map_err(accept_end)?;
        let opening = handshake::open(connection, peer).await?;
        answer(opening, link, &swarm, events).await
    };
    finish(node, link, remote, attempt)
}

/// Answers, as link `link`, a handshake the shared endpoint routed to this
/// node with its first message read.
pub(super) fn answer_routed(
    node: &Node,
    link: LinkId,
    routed: super::shared::RoutedOpening,
) -> AbortHandle {
    let swarm = node.swarm.clone();
    let events = node.sender.clone();
    let remote = routed.remote;
    let attempt = async move {
        let place = routed.guard;
        match answer(routed.opening, link, &swarm, events).await? {
            // The place goes with the link, for as long as it lives.
            Listened::Session(mut session) => {
                place.link_up();
                session.place = Some(Box::new(place));
                Ok(Listened::Session(session))
            }
            other => Ok(other),
        }
    };
    finish(node, link, remote, attempt)
}

/// Refuses a routed handshake the core would not take (the HelloReject
/// goes out within the endpoint's deadline; nothing is reported back).
pub(super) fn refuse_routed(routed: super::shared::RoutedOpening, rejection: Rejection) {
    let deadline = tokio::time::Instant::from_std(routed.deadline);
    tokio::spawn(async move {
        let _place = routed.guard;
        let _ = tokio::time::timeout_at(deadline, routed.opening.refuse(rejection)).await;
    });
}

/// Answers the dialer's first message: the core decides on a Hello or a
/// manifest query through the node task.
async fn answer(
    opening: handshake::Opening,
    link: LinkId,
    swarm: &SwarmIdentity,
    events: tokio::sync::mpsc::Sender<Event>,
) -> Result<Listened, LinkEnd> {
    let peer = opening.peer_id();
    // The node task is gone (it is shutting down): no answer.
    opening
        .answer(swarm, |first| async move {
            let (reply, answer) = oneshot::channel();
            let question = Event::First {
                link,
                peer,
                first,
                reply,
            };
            events.send(question).await.ok()?;
            answer.await.ok()
        })
        .await
}

/// Runs a listener's `attempt` as link `link`; its outcome goes back to
/// the node.
fn finish(
    node: &Node,
    link: LinkId,
    remote: SocketAddr,
    attempt: impl std::future::Future<Output = Result<Listened, LinkEnd>> + Send + 'static,
) -> AbortHandle {
    let events = node.sender.clone();
    let task = tokio::spawn(async move {
        let event = match attempt.await {
            Ok(Listened::Session(session)) => Event::Up(link, session, remote),
            // The core ended the link when it answered.
            Ok(Listened::ManifestServed | Listened::ChunkListServed) => Event::Answered(link),
            Err(end) => Event::Failed(link, Ok(end)),
        };
        let _ = events.send(event).await;
    });
    task.abort_handle()
}
