//! The start of a session on a fresh QUIC connection: the control stream,
//! Hello both ways, HaveBitfield both ways; or a manifest query
//! (`docs/wire-protocol.md`, sections 8.3 and 8.6).
//!
//! The order and every check are the wire crate's handshake machines
//! ([`DialHandshake`], [`ListenHandshake`], [`ManifestQuery`]); this module
//! only carries their messages to and from QUIC streams and asks its
//! owner the questions they ask. The control stream's state goes to the
//! node's core with the session: one owner at a time.

use std::future::Future;

use bytes::BytesMut;
use minimodel_node::node::{Rejection, handshake_end};
use minimodel_node::report::{LinkEnd, LocalError, Violation};

use minimodel_wire::{
    BindError, ChunkListQuery, ControlStream, DecodeError, DialHandshake, Established,
    FrameDecoder, HandshakeFailure, HandshakeMachine, HandshakeStep, HaveBitfield, Hello,
    ListenHandshake, Listened as WireListened, LocalMisuse, ManifestQuery, Message, PeerError,
    PeerId, ReceivedChunkList, SwarmIdentity,
};

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
    /// Held while the link lives (its control stream is read): a shared
    /// endpoint's place for it at the gate.
    pub place: Option<Box<dyn std::any::Any + Send>>,
}

/// A transport failure in the transport's words.
fn lost(error: impl std::fmt::Display) -> LinkEnd {
    LinkEnd::Lost(error.to_string())
}

/// How a connection ended, as the core sees it: a close from the peer is
/// a close whichever stream operation met it first (a read, a write, a
/// stream to open), an idle timeout is a timeout, and our own close is
/// ours.
fn connection_end(error: &quinn::ConnectionError) -> LinkEnd {
    match error {
        quinn::ConnectionError::TimedOut => LinkEnd::TimedOut,
        quinn::ConnectionError::LocallyClosed => abandoned(),
        quinn::ConnectionError::ApplicationClosed(_)
        | quinn::ConnectionError::ConnectionClosed(_) => LinkEnd::ClosedByPeer,
        other => lost(other),
    }
}

/// [`connection_end`] for a failed write.
fn write_end(error: quinn::WriteError) -> LinkEnd {
    match error {
        quinn::WriteError::ConnectionLost(error) => connection_end(&error),
        other => lost(other),
    }
}

/// Our own side broke a rule of the wire crate: a bug, never the peer's
/// fault.
fn misuse(error: LocalMisuse) -> LinkEnd {
    LinkEnd::Local(error.into())
}

/// A machine asked what it does not ask: a bug.
fn unexpected(what: &'static str) -> LinkEnd {
    LinkEnd::Local(LocalError::Driver(what))
}

/// This side gave the handshake up (the node is gone).
fn abandoned() -> LinkEnd {
    LinkEnd::Local(LocalError::Gone)
}

/// Reads the next message of the control stream, or `None` at its end.
pub(crate) async fn next_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<Message>, LinkEnd> {
    let malformed = |error: DecodeError| LinkEnd::of_peer_error(error.into());
    loop {
        if let Some(message) = decoder.next_message().map_err(malformed)? {
            return Ok(Some(message));
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => decoder.feed(&chunk.bytes).map_err(malformed)?,
            Ok(None) => {
                decoder.finish().map_err(malformed)?;
                return Ok(None);
            }
            Err(quinn::ReadError::ConnectionLost(error)) => return Err(connection_end(&error)),
            Err(error) => return Err(lost(error)),
        }
    }
}

/// Writes one message (already checked against the control stream's
/// rules by whoever queued it).
pub(crate) async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
) -> Result<(), LinkEnd> {
    let mut frame = BytesMut::with_capacity(message.frame_len() + 4);
    message.encode(&mut frame).map_err(misuse)?;
    send.write_chunk(frame.freeze()).await.map_err(write_end)
}

/// What reading the control stream gave.
enum Read {
    Message(Message),
    /// The peer finished its direction.
    End,
    /// Malformed bytes.
    Malformed(DecodeError),
}

/// Reads the next message, keeping malformed bytes apart from transport
/// failures: the handshake machines judge the first, the transport the
/// second.
async fn read(recv: &mut quinn::RecvStream, decoder: &mut FrameDecoder) -> Result<Read, LinkEnd> {
    match next_message(recv, decoder).await {
        Ok(Some(message)) => Ok(Read::Message(message)),
        Ok(None) => Ok(Read::End),
        Err(LinkEnd::Violation(Violation::Wire(PeerError::Decode(error)))) => {
            Ok(Read::Malformed(error))
        }
        Err(error) => Err(error),
    }
}

/// Carries out what `machine` asks (writes, reads) until it needs an
/// answer from its owner or is done: the step that stopped it.
async fn pump(
    machine: &mut impl HandshakeMachine,
    streams: &mut Streams,
) -> Result<HandshakeStep, LinkEnd> {
    loop {
        let fed = match machine.poll() {
            HandshakeStep::Send(message) => {
                write_message(&mut streams.send, &message).await?;
                continue;
            }
            HandshakeStep::Read => match read(&mut streams.recv, &mut streams.decoder).await? {
                Read::Message(message) => machine.handle_message(&message),
                Read::End => machine.handle_end(),
                Read::Malformed(error) => machine.handle_decode_error(error),
            },
            step => return Ok(step),
        };
        fed.map_err(misuse)?;
    }
}

/// Carries out the listener's answer to the end: it asks nothing more.
async fn to_the_end(machine: &mut ListenHandshake, streams: &mut Streams) -> Result<(), LinkEnd> {
    match pump(machine, streams).await? {
        HandshakeStep::Done => Ok(()),
        _ => Err(unexpected(
            "the listener's handshake asked a second question",
        )),
    }
}

/// A machine's failure as the core takes it (the core's
/// [`handshake_end`]) and whether its last message, a farewell, must reach
/// the peer before the connection goes.
fn failed(failure: HandshakeFailure) -> (Result<LinkEnd, Rejection>, bool) {
    let farewell = failure.farewell();
    (handshake_end(failure), farewell)
}

/// [`failed`] where no refusal of our Hello needs its peers kept.
fn failed_end(failure: HandshakeFailure) -> (LinkEnd, bool) {
    let (end, farewell) = failed(failure);
    (end.unwrap_or_else(Rejection::into_end), farewell)
}

/// Finishes the stream and waits until the peer has all of it (dropping
/// the connection at once would discard the last message with it); the
/// attempt's deadline, the core's, bounds the wait.
pub(crate) async fn flush(send: &mut quinn::SendStream) {
    let _ = send.finish();
    let _ = send.stopped().await;
}

/// A control stream's halves and what was read of it.
struct Streams {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl Streams {
    fn new((send, recv): (quinn::SendStream, quinn::RecvStream)) -> Self {
        let decoder = FrameDecoder::new();
        Self {
            send,
            recv,
            decoder,
        }
    }

    /// The session, once the handshake established it.
    fn into_session(
        self,
        connection: quinn::Connection,
        peer_id: PeerId,
        established: Established,
    ) -> Session {
        Session {
            peer_id,
            connection,
            send: self.send,
            recv: self.recv,
            decoder: self.decoder,
            control: established.control,
            hello: established.hello,
            bitfield: established.bitfield,
            place: None,
        }
    }

    /// After a failure: the last message the machine gave (a farewell,
    /// when the spec asks for one: `farewell`) reaches the peer before the
    /// connection goes.
    async fn fail<E>(mut self, error: E, farewell: bool) -> E {
        if farewell {
            flush(&mut self.send).await;
        }
        error
    }
}

/// The dialer's side: open the control stream, send Hello, read the
/// answer, exchange bitfields (the wire crate's [`DialHandshake`]). Without
/// a session: the peer refused our Hello (`Err(Err)`, naming other peers
/// we may try), or the link ended as the core sees it.
pub async fn dial(
    connection: quinn::Connection,
    peer_id: PeerId,
    swarm: &SwarmIdentity,
    mut hello: Hello,
    our_bitfield: HaveBitfield,
) -> Result<Session, Result<LinkEnd, Rejection>> {
    // Both Hellos carry the version TLS settled on.
    let version = crate::transport::protocol_version(&connection);
    let swarm = swarm.clone().with_version(version);
    hello.protocol_version = version;
    let opened = connection
        .open_bi()
        .await
        .map_err(|e| Ok(connection_end(&e)))?;
    let mut streams = Streams::new(opened);
    let mut machine = DialHandshake::new(swarm, hello, our_bitfield).map_err(|e| Ok(misuse(e)))?;
    let (error, farewell) = match pump(&mut machine, &mut streams).await {
        Ok(HandshakeStep::Done) => match machine.finish() {
            Ok(established) => {
                return Ok(streams.into_session(connection, peer_id, established));
            }
            Err(failure) => failed(failure),
        },
        Ok(_) => (
            Ok(unexpected(
                "the dialer's handshake asked its owner a question",
            )),
            false,
        ),
        Err(end) => (Ok(end), false),
    };
    Err(streams.fail(error, farewell).await)
}

/// How a listener's handshake ended well.
pub enum Listened {
    /// A swarm session.
    Session(Box<Session>),
    /// The dialer asked for our manifest and has it: the connection is
    /// closed.
    ManifestServed,
    /// The dialer asked for our chunk list and has it: the connection is
    /// closed.
    ChunkListServed,
}

pub use minimodel_node::node::{Answer, First};

/// A listener's handshake whose first message has arrived and waits for
/// its answer: from a listener of one swarm at once, from an endpoint of
/// many once the gate has routed it to a swarm's node
/// (`docs/wire-protocol.md` section 8.5).
pub struct Opening {
    connection: quinn::Connection,
    peer_id: PeerId,
    streams: Streams,
    machine: ListenHandshake,
    first: First,
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("peer_id", &self.peer_id)
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

/// The listener's side (the wire crate's [`ListenHandshake`]): accepts the
/// control stream and reads the dialer's first message, to be answered
/// with [`Opening::answer`] or [`Opening::refuse`].
pub async fn open(connection: quinn::Connection, peer_id: PeerId) -> Result<Opening, LinkEnd> {
    let mut streams = Streams::new(
        connection
            .accept_bi()
            .await
            .map_err(|e| connection_end(&e))?,
    );
    let mut machine = ListenHandshake::new();
    let first = match pump(&mut machine, &mut streams).await {
        Ok(HandshakeStep::AnswerHello(hello)) => First::Hello(hello),
        Ok(HandshakeStep::AnswerManifest(digest)) => First::Manifest(digest),
        Ok(HandshakeStep::AnswerChunkList(digest)) => First::ChunkList(digest),
        // The dialer broke the protocol or left before asking anything.
        Ok(HandshakeStep::Done) => {
            let (error, farewell) = match machine.finish() {
                Err(failure) => failed_end(failure),
                Ok(_) => (
                    unexpected("the listener's handshake ended before the dialer asked"),
                    false,
                ),
            };
            return Err(streams.fail(error, farewell).await);
        }
        Ok(_) => {
            return Err(unexpected(
                "the listener's handshake stopped on a step it does not give",
            ));
        }
        Err(error) => return Err(streams.fail(error, false).await),
    };
    Ok(Opening {
        connection,
        peer_id,
        streams,
        machine,
        first,
    })
}

impl Opening {
    /// The dialer's first message.
    pub fn first(&self) -> &First {
        &self.first
    }

    /// The peer's proven key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Sets how many bytes the peer may send on the connection beyond
    /// what we have read (the listener's own window, when the endpoint
    /// that accepted it was set up for another).
    pub fn set_receive_window(&self, bytes: u64) {
        let window = quinn::VarInt::from_u64(bytes).unwrap_or(quinn::VarInt::MAX);
        self.connection.set_receive_window(window);
    }

    /// Answers as a listener of `swarm`. A Hello is bound to it first (a
    /// Hello for another is refused as the spec says); then `decide`
    /// answers the first message (the core's [`Answer`]), or returns
    /// `None` when nobody can answer any more, and the handshake is
    /// abandoned without a word.
    pub async fn answer<F>(
        mut self,
        swarm: &SwarmIdentity,
        decide: impl FnOnce(First) -> F,
    ) -> Result<Listened, LinkEnd>
    where
        F: Future<Output = Option<Answer>>,
    {
        let machine = &mut self.machine;
        // Both Hellos carry the version TLS settled on.
        let version = crate::transport::protocol_version(&self.connection);
        let result = async {
            let bound = match self.first {
                First::Hello(_) => machine.bind(swarm.clone().with_version(version)),
                First::Manifest(_) | First::ChunkList(_) => Ok(()),
            };
            match bound {
                // Refused as the spec says: the HelloReject is queued.
                Err(BindError::Peer(_)) => {}
                Err(BindError::Local(error)) => return Err(misuse(error)),
                Ok(()) => match decide(self.first.clone()).await.ok_or_else(abandoned)? {
                    Answer::Admit(mut ours, bitfield) => {
                        ours.protocol_version = version;
                        machine.accept(ours, bitfield)
                    }
                    Answer::Serve(bytes) => machine.serve_manifest(bytes.to_vec()),
                    Answer::ServeChunkList { hashes, lengths } => match lengths {
                        Some(lengths) => machine.serve_listed_chunk_list(hashes, lengths),
                        None => machine.serve_chunk_list(hashes),
                    },
                    Answer::Refuse(rejection) => {
                        machine.reject(rejection.reason, rejection.detail, rejection.peers)
                    }
                }
                .map_err(misuse)?,
            }
            to_the_end(machine, &mut self.streams).await
        }
        .await;
        self.finish(result).await
    }

    /// Refuses the dialer's first message without binding to any swarm
    /// (an endpoint of many swarms that serves none the dialer names):
    /// the HelloReject reaches the dialer before the connection goes.
    pub async fn refuse(mut self, rejection: Rejection) -> LinkEnd {
        let peers = match self.first {
            First::Hello(_) => rejection.peers,
            First::Manifest(_) | First::ChunkList(_) => Vec::new(),
        };
        let result = async {
            self.machine
                .reject(rejection.reason, rejection.detail, peers)
                .map_err(misuse)?;
            to_the_end(&mut self.machine, &mut self.streams).await
        }
        .await;
        match self.finish(result).await {
            Ok(_) => unexpected("a refused handshake ended well"),
            Err(error) => error,
        }
    }

    async fn finish(mut self, result: Result<(), LinkEnd>) -> Result<Listened, LinkEnd> {
        let finished = match result {
            Ok(()) => self.machine.finish().map_err(failed_end),
            Err(end) => Err((end, false)),
        };
        match finished {
            Ok(WireListened::Session(established)) => Ok(Listened::Session(Box::new(
                self.streams
                    .into_session(self.connection, self.peer_id, *established),
            ))),
            Ok(WireListened::ManifestServed) => {
                flush(&mut self.streams.send).await;
                self.connection.close(0u32.into(), b"manifest served");
                Ok(Listened::ManifestServed)
            }
            Ok(WireListened::ChunkListServed) => {
                flush(&mut self.streams.send).await;
                self.connection.close(0u32.into(), b"chunk list served");
                Ok(Listened::ChunkListServed)
            }
            Err((error, farewell)) => Err(self.streams.fail(error, farewell).await),
        }
    }
}

/// Why a manifest query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The connection failed or the peer broke off.
    #[error("{0}")]
    Link(String),
    /// The peer refused: it does not serve that manifest, or us.
    #[error("refused: {}", minimodel_node::report::hello_reject_words(*.reason))]
    Refused {
        /// Its reason.
        reason: minimodel_wire::HelloRejectReason,
        /// Its words.
        detail: String,
    },
    /// The bytes it sent have another SHA-256 than the one asked for.
    #[error("it sent {len} bytes whose SHA-256 is not the one asked for")]
    WrongDigest {
        /// How many bytes it sent.
        len: usize,
    },
}

/// A manifest query (the wire crate's [`ManifestQuery`]) on `connection`:
/// asks for the manifest whose SHA-256 is `digest` and returns its bytes
/// once their SHA-256 is that digest. The connection is closed after.
pub async fn query_manifest(
    connection: &quinn::Connection,
    digest: [u8; 32],
) -> Result<Vec<u8>, QueryError> {
    let bytes = query(
        connection,
        ManifestQuery::new(digest),
        ManifestQuery::finish,
        "manifest query",
    )
    .await?;
    if minimodel_verifier::Sha256Digest::of(&bytes).0 != digest {
        return Err(QueryError::WrongDigest { len: bytes.len() });
    }
    Ok(bytes)
}

/// A chunk list query (the wire crate's [`ChunkListQuery`]) on
/// `connection`: asks for the chunk list of the manifest whose SHA-256 is
/// `digest`, `chunk_count` hashes long (with each chunk's length when
/// `listed`: the manifest's chunks are listed), and returns it as it came
/// (the caller checks it against the manifest). The connection is closed
/// after.
pub async fn query_chunk_list(
    connection: &quinn::Connection,
    digest: [u8; 32],
    chunk_count: u32,
    listed: bool,
) -> Result<ReceivedChunkList, QueryError> {
    let machine = if listed {
        ChunkListQuery::listed(digest, chunk_count)
    } else {
        ChunkListQuery::new(digest, chunk_count)
    };
    query(
        connection,
        machine,
        ChunkListQuery::finish,
        "chunk list query",
    )
    .await
}

/// Runs a dialer's query `machine` (one question, one answer) on its own
/// control stream of `connection` to its end, then closes the connection:
/// what `finish` makes of it, a refusal, or how the link ended.
async fn query<M: HandshakeMachine, T>(
    connection: &quinn::Connection,
    mut machine: M,
    finish: impl FnOnce(M) -> Result<T, HandshakeFailure>,
    what: &'static str,
) -> Result<T, QueryError> {
    let result = async {
        let opened = connection.open_bi().await;
        let mut streams =
            Streams::new(opened.map_err(|e| QueryError::Link(connection_end(&e).to_string()))?);
        let link = |end: LinkEnd| QueryError::Link(end.to_string());
        match pump(&mut machine, &mut streams).await.map_err(link)? {
            HandshakeStep::Done => finish(machine).map_err(|failure| match failed(failure) {
                (Ok(end), _) => link(end),
                (Err(rejection), _) => QueryError::Refused {
                    reason: rejection.reason,
                    detail: rejection.detail,
                },
            }),
            _ => Err(link(unexpected("a query asked its owner a question"))),
        }
    }
    .await;
    let reason = format!("{what} done");
    connection.close(0u32.into(), reason.as_bytes());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_by_peer() -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(0),
            reason: bytes::Bytes::from_static(b"bye"),
        })
    }

    #[test]
    fn a_connection_end_is_named_the_same_whichever_operation_met_it() {
        assert_eq!(connection_end(&closed_by_peer()), LinkEnd::ClosedByPeer);
        assert_eq!(
            write_end(quinn::WriteError::ConnectionLost(closed_by_peer())),
            LinkEnd::ClosedByPeer
        );
        assert_eq!(
            write_end(quinn::WriteError::ConnectionLost(
                quinn::ConnectionError::TimedOut
            )),
            LinkEnd::TimedOut
        );
        assert_eq!(
            connection_end(&quinn::ConnectionError::LocallyClosed),
            LinkEnd::Local(LocalError::Gone)
        );
        // Anything else in the transport's own words, not "connection
        // lost".
        assert_eq!(
            write_end(quinn::WriteError::ConnectionLost(
                quinn::ConnectionError::Reset
            ))
            .to_string(),
            "connection failed: reset by peer"
        );
        assert_eq!(
            write_end(quinn::WriteError::ClosedStream).to_string(),
            "connection failed: closed stream"
        );
    }
}
