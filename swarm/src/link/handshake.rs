//! The start of a session on a fresh QUIC connection: the control stream,
//! Hello both ways, HaveBitfield both ways (`docs/wire-protocol.md`).
//!
//! Every message goes through the wire crate's [`ControlStream`] state
//! machine in both directions, so an illegal message is refused here
//! exactly as the spec says, and a mismatched swarm gets a HelloReject.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use minimodel_wire::{
    ControlEvent, ControlStream, FrameDecoder, HaveBitfield, Hello, HelloRejectReason, Message,
    PeerError, PeerId, Role, SwarmIdentity,
};

use super::LinkError;

/// How long a farewell (HelloReject or Goodbye) may take to be acknowledged
/// before the connection is dropped: dropping it at once would discard the
/// farewell with it.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

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
    /// The state machine both directions go through.
    pub control: Arc<Mutex<ControlStream>>,
    /// The peer's Hello.
    pub hello: Hello,
    /// The peer's bitfield.
    pub bitfield: HaveBitfield,
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
            Err(quinn::ReadError::ConnectionLost(error)) => {
                return Err(LinkError::Connection(error.to_string()));
            }
            Err(error) => return Err(LinkError::Connection(error.to_string())),
        }
    }
}

/// Checks `message` against the state machine and writes it.
pub(crate) async fn send_message(
    send: &mut quinn::SendStream,
    control: &Mutex<ControlStream>,
    message: &Message,
) -> Result<(), LinkError> {
    let mut frame = BytesMut::with_capacity(message.frame_len() + 4);
    {
        let mut control = control
            .lock()
            .map_err(|_| LinkError::Local("control state poisoned".into()))?;
        control
            .check_send(message)
            .map_err(|e| LinkError::Local(e.to_string()))?;
    }
    message
        .encode(&mut frame)
        .map_err(|e| LinkError::Local(e.to_string()))?;
    send.write_chunk(frame.freeze()).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => LinkError::Connection(e.to_string()),
        e => LinkError::Connection(e.to_string()),
    })
}

fn receive(control: &Mutex<ControlStream>, message: &Message) -> Result<ControlEvent, LinkError> {
    let mut control = control
        .lock()
        .map_err(|_| LinkError::Local("control state poisoned".into()))?;
    control
        .on_receive(message)
        .map_err(|violation| LinkError::Peer(PeerError::Violation(violation)))
}

async fn expect_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    control: &Mutex<ControlStream>,
) -> Result<ControlEvent, LinkError> {
    match next_message(recv, decoder).await? {
        Some(message) => receive(control, &message),
        None => Err(LinkError::Connection(
            "control stream closed during the handshake".into(),
        )),
    }
}

/// Sends the farewell the spec asks for after `error` (a HelloReject or a
/// Goodbye), best effort.
async fn farewell(send: &mut quinn::SendStream, control: &Mutex<ControlStream>, error: &LinkError) {
    let LinkError::Peer(peer_error) = error else {
        return;
    };
    let message = control.lock().ok().and_then(|c| c.farewell(peer_error));
    if let Some(message) = message {
        let _ = send_message(send, control, &message).await;
        flush(send).await;
    }
}

/// Finishes the stream and waits, briefly, until the peer has all of it.
async fn flush(send: &mut quinn::SendStream) {
    let _ = send.finish();
    let _ = tokio::time::timeout(FAREWELL_WAIT, send.stopped()).await;
}

/// The dialer's side: open the control stream, send Hello, read the
/// answer, exchange bitfields.
pub async fn dial(
    connection: quinn::Connection,
    peer_id: PeerId,
    local: &LocalHello,
    our_bitfield: HaveBitfield,
    timeout: Duration,
) -> Result<Session, LinkError> {
    tokio::time::timeout(
        timeout,
        dial_inner(connection, peer_id, local, our_bitfield),
    )
    .await
    .map_err(|_| LinkError::Timeout("handshake"))?
}

async fn dial_inner(
    connection: quinn::Connection,
    peer_id: PeerId,
    local: &LocalHello,
    our_bitfield: HaveBitfield,
) -> Result<Session, LinkError> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| LinkError::Connection(e.to_string()))?;
    let control = Arc::new(Mutex::new(ControlStream::new(
        Role::Dialer,
        local.swarm.clone(),
    )));
    let mut decoder = FrameDecoder::new();
    let hello = local
        .swarm
        .hello(local.serving, local.listen, &local.agent)
        .map_err(|e| LinkError::Local(e.to_string()))?;
    send_message(&mut send, &control, &Message::Hello(hello)).await?;
    let result = async {
        let peer_hello = match expect_message(&mut recv, &mut decoder, &control).await? {
            ControlEvent::PeerHello(hello) => hello,
            ControlEvent::HelloRejected { reason, detail } => {
                return Err(LinkError::Rejected { reason, detail });
            }
            other => return Err(unexpected(other)),
        };
        send_message(&mut send, &control, &Message::HaveBitfield(our_bitfield)).await?;
        let bitfield = expect_bitfield(&mut recv, &mut decoder, &control).await?;
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
    control: Arc<Mutex<ControlStream>>,
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
            farewell(&mut opened.send, &opened.control, &error).await;
            Err(error)
        }
    }
}

/// The peer's HaveBitfield, which ends both sides' handshake.
async fn expect_bitfield(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    control: &Mutex<ControlStream>,
) -> Result<HaveBitfield, LinkError> {
    match expect_message(recv, decoder, control).await? {
        ControlEvent::Bitfield(bitfield) => Ok(bitfield),
        other => Err(unexpected(other)),
    }
}

fn unexpected(event: ControlEvent) -> LinkError {
    LinkError::Local(format!("unexpected {event:?} in handshake"))
}

/// The listener's side: accept the control stream, read the dialer's
/// Hello, ask `admit` whether to take the peer (it returns our bitfield or
/// a reason to refuse), answer, exchange bitfields.
pub async fn listen(
    connection: quinn::Connection,
    peer_id: PeerId,
    local: &LocalHello,
    admit: impl FnOnce(&Hello) -> Result<HaveBitfield, (HelloRejectReason, String)>,
    timeout: Duration,
) -> Result<Session, LinkError> {
    tokio::time::timeout(timeout, listen_inner(connection, peer_id, local, admit))
        .await
        .map_err(|_| LinkError::Timeout("handshake"))?
}

async fn listen_inner(
    connection: quinn::Connection,
    peer_id: PeerId,
    local: &LocalHello,
    admit: impl FnOnce(&Hello) -> Result<HaveBitfield, (HelloRejectReason, String)>,
) -> Result<Session, LinkError> {
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| LinkError::Connection(e.to_string()))?;
    let control = Arc::new(Mutex::new(ControlStream::new(
        Role::Listener,
        local.swarm.clone(),
    )));
    let mut decoder = FrameDecoder::new();
    let result = async {
        let peer_hello = match expect_message(&mut recv, &mut decoder, &control).await? {
            ControlEvent::PeerHello(hello) => hello,
            other => return Err(unexpected(other)),
        };
        let our_bitfield = match admit(&peer_hello) {
            Ok(bitfield) => bitfield,
            Err((reason, detail)) => {
                let reject = Message::HelloReject {
                    reason,
                    detail: detail.clone(),
                };
                send_message(&mut send, &control, &reject).await?;
                flush(&mut send).await;
                return Err(LinkError::Refused { reason, detail });
            }
        };
        let hello = local
            .swarm
            .hello(local.serving, local.listen, &local.agent)
            .map_err(|e| LinkError::Local(e.to_string()))?;
        send_message(&mut send, &control, &Message::Hello(hello)).await?;
        send_message(&mut send, &control, &Message::HaveBitfield(our_bitfield)).await?;
        let bitfield = expect_bitfield(&mut recv, &mut decoder, &control).await?;
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
