//! The start of a session on a fresh QUIC connection: the control stream,
//! Hello both ways, HaveBitfield both ways (`docs/wire-protocol.md`).
//!
//! Every message goes through the wire crate's [`ControlStream`] state
//! machine in both directions, so an illegal message is refused here
//! exactly as the spec says, and a mismatched swarm gets a HelloReject. The
//! control stream's state goes to the node's core with the session: one
//! owner at a time.

use std::future::Future;
use std::net::SocketAddr;

use bytes::BytesMut;
use minimodel_node::node::Rejection;
use minimodel_node::report::{LinkEnd, Violation};
use minimodel_wire::{
    ControlEvent, ControlStream, FrameDecoder, HaveBitfield, Hello, Message, PeerError, PeerId,
    ProtocolViolation, Role, SwarmIdentity,
};

/// What this side says about itself in its Hello.
#[derive(Debug, Clone)]
pub struct LocalHello {
    /// The swarm: model id, root and chunk geometry.
    pub swarm: SwarmIdentity,
    /// Whether this side serves chunks to others.
    pub serving: bool,
    /// Where this side listens for other peers, if it serves.
    pub listen: Option<SocketAddr>,
    /// Program name and version.
    pub agent: String,
}

/// A session past its handshake: both Hellos and both bitfields exchanged.
pub struct Session {
    /// The peer's proven key.
    pub peer_id: PeerId,
    /// The connection.
    pub connection: quinn::Connection,
    /// Our half of the control stream.
    pub send: quinn::SendStream,
    /// The peer's half of the control stream.
    pub recv: quinn::RecvStream,
    /// Bytes the peer sent after its bitfield, already read.
    pub decoder: FrameDecoder,
    /// The control stream's state, for the core.
    pub control: ControlStream,
    /// The peer's Hello.
    pub hello: Hello,
    /// The peer's bitfield.
    pub bitfield: HaveBitfield,
}

/// Why a handshake or a control stream failed.
#[derive(Debug)]
pub enum LinkError {
    /// The connection or the stream failed: the transport's words.
    Connection(String),
    /// The peer closed the stream in the middle of the handshake.
    Closed,
    /// No answer in time.
    Timeout,
    /// The peer broke the protocol.
    Peer(PeerError),
    /// The peer refused our Hello.
    Rejected(Rejection),
    /// We refused the peer's Hello.
    Refused(Rejection),
    /// Our own side failed (a message we could not encode): a bug.
    Local(String),
    /// This side gave the handshake up (the node is gone).
    Abandoned,
}

impl LinkError {
    /// How the core sees it.
    pub fn into_end(self) -> LinkEnd {
        match self {
            LinkError::Connection(text) => LinkEnd::Lost(text),
            LinkError::Closed => LinkEnd::ClosedByPeer,
            LinkError::Timeout => LinkEnd::TimedOut,
            LinkError::Peer(PeerError::Violation(ProtocolViolation::Swarm(_))) => {
                LinkEnd::WrongSwarm
            }
            LinkError::Peer(error) => LinkEnd::Violation(Violation::Wire(error)),
            LinkError::Rejected(rejection) | LinkError::Refused(rejection) => LinkEnd::Refused {
                reason: rejection.reason,
                detail: rejection.detail,
            },
            LinkError::Local(text) => LinkEnd::Lost(format!("local error: {text}")),
            LinkError::Abandoned => LinkEnd::Lost("this node is gone".into()),
        }
    }
}

fn lost(error: impl std::fmt::Display) -> LinkError {
    LinkError::Connection(error.to_string())
}

/// Reads the next message of the control stream, or `None` at its end.
pub(crate) async fn next_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<Message>, LinkError> {
    loop {
        if let Some(message) = decoder
            .next_message()
            .map_err(|e| LinkError::Peer(e.into()))?
        {
            return Ok(Some(message));
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => decoder
                .feed(&chunk.bytes)
                .map_err(|e| LinkError::Peer(e.into()))?,
            Ok(None) => {
                decoder.finish().map_err(|e| LinkError::Peer(e.into()))?;
                return Ok(None);
            }
            Err(quinn::ReadError::ConnectionLost(quinn::ConnectionError::TimedOut)) => {
                return Err(LinkError::Timeout);
            }
            Err(quinn::ReadError::ConnectionLost(
                quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::ConnectionClosed(_),
            )) => return Err(LinkError::Closed),
            Err(error) => return Err(lost(error)),
        }
    }
}

/// Writes one message (already checked against the control stream's
/// rules by whoever queued it).
pub(crate) async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
) -> Result<(), LinkError> {
    let mut frame = BytesMut::with_capacity(message.frame_len() + 4);
    message
        .encode(&mut frame)
        .map_err(|e| LinkError::Local(e.to_string()))?;
    send.write_chunk(frame.freeze()).await.map_err(lost)
}

/// Checks `message` against the state machine and writes it.
async fn send_checked(
    send: &mut quinn::SendStream,
    control: &mut ControlStream,
    message: &Message,
) -> Result<(), LinkError> {
    control
        .check_send(message)
        .map_err(|e| LinkError::Local(e.to_string()))?;
    write_message(send, message).await
}

async fn expect_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    control: &mut ControlStream,
) -> Result<ControlEvent, LinkError> {
    match next_message(recv, decoder).await? {
        Some(message) => control
            .on_receive(&message)
            .map_err(|violation| LinkError::Peer(PeerError::Violation(violation))),
        None => Err(LinkError::Closed),
    }
}

/// Sends the farewell the spec asks for after `error` (a HelloReject or a
/// Goodbye), best effort.
async fn farewell(send: &mut quinn::SendStream, control: &mut ControlStream, error: &LinkError) {
    let LinkError::Peer(peer_error) = error else {
        return;
    };
    if let Some(message) = control.farewell(peer_error) {
        let _ = send_checked(send, control, &message).await;
        flush(send).await;
    }
}

/// Finishes the stream and waits until the peer has all of it (dropping
/// the connection at once would discard the farewell with it); the
/// attempt's deadline, the core's, bounds the wait.
async fn flush(send: &mut quinn::SendStream) {
    let _ = send.finish();
    let _ = send.stopped().await;
}

/// The dialer's side: open the control stream, send Hello, read the
/// answer, exchange bitfields.
pub async fn dial(
    connection: quinn::Connection,
    peer_id: PeerId,
    local: &LocalHello,
    our_bitfield: HaveBitfield,
) -> Result<Session, LinkError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(lost)?;
    let mut control = ControlStream::new(Role::Dialer, local.swarm.clone());
    let mut decoder = FrameDecoder::new();
    let hello = local
        .swarm
        .hello(local.serving, local.listen, &local.agent)
        .map_err(|e| LinkError::Local(e.to_string()))?;
    send_checked(&mut send, &mut control, &Message::Hello(hello)).await?;
    let result = async {
        let peer_hello = match expect_message(&mut recv, &mut decoder, &mut control).await? {
            ControlEvent::PeerHello(hello) => hello,
            ControlEvent::HelloRejected {
                reason,
                detail,
                peers,
            } => {
                return Err(LinkError::Rejected(Rejection {
                    reason,
                    detail,
                    peers,
                }));
            }
            other => return Err(unexpected(&other)),
        };
        send_checked(
            &mut send,
            &mut control,
            &Message::HaveBitfield(our_bitfield),
        )
        .await?;
        let bitfield = expect_bitfield(&mut recv, &mut decoder, &mut control).await?;
        Ok((peer_hello, bitfield))
    }
    .await;
    conclude(
        result,
        Opened {
            connection,
            peer_id,
            send,
            recv,
            decoder,
            control,
        },
    )
    .await
}

/// A handshake's streams, kept to become the session or to say goodbye.
struct Opened {
    connection: quinn::Connection,
    peer_id: PeerId,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    control: ControlStream,
}

/// Both sides' last step: the session, or the error once the peer has
/// been told why (HelloReject or Goodbye).
async fn conclude(
    result: Result<(Hello, HaveBitfield), LinkError>,
    mut opened: Opened,
) -> Result<Session, LinkError> {
    match result {
        Ok((hello, bitfield)) => Ok(Session {
            peer_id: opened.peer_id,
            connection: opened.connection,
            send: opened.send,
            recv: opened.recv,
            decoder: opened.decoder,
            control: opened.control,
            hello,
            bitfield,
        }),
        Err(error) => {
            farewell(&mut opened.send, &mut opened.control, &error).await;
            Err(error)
        }
    }
}

/// The peer's HaveBitfield, which ends both sides' handshake.
async fn expect_bitfield(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    control: &mut ControlStream,
) -> Result<HaveBitfield, LinkError> {
    match expect_message(recv, decoder, control).await? {
        ControlEvent::Bitfield(bitfield) => Ok(bitfield),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(event: &ControlEvent) -> LinkError {
    let what = match event {
        ControlEvent::PeerHello(_) => "a Hello",
        ControlEvent::HelloRejected { .. } => "a HelloReject",
        ControlEvent::Bitfield(_) => "a bitfield",
        _ => "a message",
    };
    LinkError::Local(format!("{what} where the handshake expected another"))
}

/// The listener's side: accept the control stream, read the dialer's
/// Hello, ask `admit` whether to take the peer (it returns our bitfield or
/// a reason to refuse; `None` when nobody can answer any more, and the
/// handshake is abandoned without a word), answer, exchange bitfields.
pub async fn listen<F, A>(
    connection: quinn::Connection,
    peer_id: PeerId,
    local: &LocalHello,
    admit: A,
) -> Result<Session, LinkError>
where
    A: FnOnce(Hello) -> F,
    F: Future<Output = Option<Result<HaveBitfield, Rejection>>>,
{
    let (mut send, mut recv) = connection.accept_bi().await.map_err(lost)?;
    let mut control = ControlStream::new(Role::Listener, local.swarm.clone());
    let mut decoder = FrameDecoder::new();
    let result = async {
        let peer_hello = match expect_message(&mut recv, &mut decoder, &mut control).await? {
            ControlEvent::PeerHello(hello) => hello,
            other => return Err(unexpected(&other)),
        };
        let our_bitfield = match admit(peer_hello.clone()).await {
            None => return Err(LinkError::Abandoned),
            Some(Ok(bitfield)) => bitfield,
            Some(Err(rejection)) => {
                let reject = Message::HelloReject {
                    reason: rejection.reason,
                    detail: rejection.detail.clone(),
                    peers: rejection.peers.clone(),
                };
                send_checked(&mut send, &mut control, &reject).await?;
                flush(&mut send).await;
                return Err(LinkError::Refused(rejection));
            }
        };
        let hello = local
            .swarm
            .hello(local.serving, local.listen, &local.agent)
            .map_err(|e| LinkError::Local(e.to_string()))?;
        send_checked(&mut send, &mut control, &Message::Hello(hello)).await?;
        send_checked(
            &mut send,
            &mut control,
            &Message::HaveBitfield(our_bitfield),
        )
        .await?;
        let bitfield = expect_bitfield(&mut recv, &mut decoder, &mut control).await?;
        Ok((peer_hello, bitfield))
    }
    .await;
    conclude(
        result,
        Opened {
            connection,
            peer_id,
            send,
            recv,
            decoder,
            control,
        },
    )
    .await
}
