//! One peer connection speaking the piece protocol: the handshake, then
//! four small tasks that turn bytes into events for the node and messages
//! from the node into bytes.
//!
//! - the control reader decodes frames, runs them through the wire state
//!   machine and reports what they mean;
//! - the control writer sends what the node queues (and a KeepAlive when
//!   the stream has been quiet);
//! - the piece acceptor takes each incoming piece stream, refuses a chunk
//!   nobody asked this peer for (or one that is already arriving on another
//!   stream) as soon as its header arrives, and reports the chunk's bytes,
//!   unverified, when they are complete;
//! - a watcher ends the link if the peer opens a second bidirectional
//!   stream (the spec allows only the control stream).
//!
//! Nothing here hashes or writes to disk: verification and storage happen
//! on workers the node owns, so this task never blocks the QUIC driver.

pub mod handshake;
pub mod pieces;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minimodel_wire::{
    ChunkIndex, ControlEvent, ControlStream, GoodbyeReason, HelloRejectReason, Message, PeerError,
    SwarmParams,
};
use tokio::sync::mpsc;

pub use handshake::{LocalHello, Session};
pub use pieces::{ArrivedPiece, PieceStreamError};

use minimodel_node::picker::LinkId;

/// A control stream quiet for this long gets a KeepAlive.
const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(15);
/// Messages queued for one peer; a peer that does not read its control
/// stream while this many wait is dropped.
const OUTBOX_CAPACITY: usize = 4096;
/// The longest a Goodbye may take to be acknowledged before the connection
/// is closed anyway.
pub const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// Why a link ended or could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The connection or a stream failed (closed, reset, lost).
    #[error("connection lost: {0}")]
    Connection(String),
    /// The peer did not answer in time.
    #[error("timed out during the {0}")]
    Timeout(&'static str),
    /// The peer broke the protocol.
    #[error("peer broke the protocol: {0}")]
    Peer(PeerError),
    /// The peer refused our Hello.
    #[error("peer refused the session ({reason:?}): {detail}")]
    Rejected {
        /// Its reason.
        reason: HelloRejectReason,
        /// Its detail text.
        detail: String,
    },
    /// We refused the peer's Hello.
    #[error("refused the peer ({reason:?}): {detail}")]
    Refused {
        /// Our reason.
        reason: HelloRejectReason,
        /// Our detail text.
        detail: String,
    },
    /// Our own code failed.
    #[error("local error: {0}")]
    Local(String),
    /// The peer opened a bidirectional stream besides the control stream.
    #[error(
        "peer broke the protocol: a second bidirectional stream (only the control stream is allowed)"
    )]
    SecondControlStream,
}

impl LinkError {
    /// Whether the peer is to blame (protocol violation or bad bytes).
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(self, LinkError::Peer(_) | LinkError::SecondControlStream)
    }
}

/// What a running link reports to the node.
#[derive(Debug)]
pub enum LinkEvent {
    /// A control message that passed every check.
    Control(ControlEvent),
    /// The header of a requested chunk arrived; its bytes follow.
    PieceStarted(ChunkIndex),
    /// All bytes of a requested chunk arrived (not verified yet).
    PieceArrived(ArrivedPiece),
    /// A piece stream did not deliver its chunk.
    PieceFailed {
        /// The chunk, if its header was read.
        chunk: Option<ChunkIndex>,
        /// Why.
        error: PieceStreamError,
    },
    /// The link is over.
    Closed(LinkError),
}

/// The node's handle on a running link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    /// The connection, for closing and for opening piece streams.
    pub connection: quinn::Connection,
    outbox: mpsc::Sender<Message>,
    requests: Arc<Mutex<RequestBook>>,
    /// A Goodbye is queued: the writer closes the connection once it is
    /// delivered.
    saying_goodbye: Arc<AtomicBool>,
}

/// Which chunks a piece stream from this peer may carry.
#[derive(Debug, Default)]
struct RequestBook {
    /// Requested and still wanted: accepted.
    wanted: BTreeSet<u32>,
    /// Ever requested: a late stream for one of these is dropped quietly;
    /// a stream for any other chunk is a protocol violation.
    ever: BTreeSet<u32>,
    /// A stream for these is being read: another stream for the same
    /// chunk is stopped, so a peer cannot make us buffer one chunk many
    /// times over.
    arriving: BTreeSet<u32>,
}

impl RequestBook {
    /// Decides on a stream whose header names `chunk`: take it (and mark
    /// the chunk arriving) or refuse it, with the reason.
    fn admit(&mut self, chunk: ChunkIndex) -> Result<(), PieceStreamError> {
        if !self.wanted.contains(&chunk.0) {
            return Err(if self.ever.contains(&chunk.0) {
                PieceStreamError::NoLongerWanted(chunk)
            } else {
                PieceStreamError::Unrequested(chunk)
            });
        }
        if !self.arriving.insert(chunk.0) {
            return Err(PieceStreamError::NoLongerWanted(chunk));
        }
        Ok(())
    }
}

impl LinkHandle {
    /// Queues a message for the peer. False when the peer is not reading
    /// its control stream (the queue is full) or the link is gone.
    pub fn send(&self, message: Message) -> bool {
        self.outbox.try_send(message).is_ok()
    }

    /// Notes a request sent to this peer (call before sending it).
    pub fn expect_chunk(&self, chunk: u32) {
        if let Ok(mut book) = self.requests.lock() {
            book.wanted.insert(chunk);
            book.ever.insert(chunk);
        }
    }

    /// Forgets a request (cancelled, delivered or given up).
    pub fn forget_chunk(&self, chunk: u32) {
        if let Ok(mut book) = self.requests.lock() {
            book.wanted.remove(&chunk);
            book.arriving.remove(&chunk);
        }
    }

    /// Sends Goodbye and closes the connection once it is written.
    pub fn close(&self, reason: GoodbyeReason) {
        if self.outbox.try_send(Message::Goodbye { reason }).is_err() {
            self.connection.close(0u32.into(), b"goodbye");
        } else {
            self.saying_goodbye.store(true, Ordering::Relaxed);
        }
    }

    /// Ends the connection: now, or, when a Goodbye is on its way, as soon
    /// as the peer has it (at most [`GOODBYE_WAIT`] later), so the peer
    /// learns why it was dropped.
    pub fn drop_connection(&self) {
        if self.saying_goodbye.load(Ordering::Relaxed) {
            // Meanwhile, take no more chunks from it.
            if let Ok(mut book) = self.requests.lock() {
                book.wanted.clear();
            }
            // A peer whose flow control is shut never takes the Goodbye.
            let connection = self.connection.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GOODBYE_WAIT).await;
                connection.close(0u32.into(), b"goodbye");
            });
        } else {
            self.connection.close(0u32.into(), b"bye");
        }
    }
}

/// Starts the tasks of a link after its handshake. Events go to `events`
/// tagged with `key`; the link ends with a [`LinkEvent::Closed`].
pub fn spawn(
    session: Session,
    key: LinkId,
    params: SwarmParams,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) -> LinkHandle {
    let Session {
        connection,
        send,
        recv,
        decoder,
        control,
        ..
    } = session;
    let (outbox, inbox) = mpsc::channel(OUTBOX_CAPACITY);
    let requests = Arc::new(Mutex::new(RequestBook::default()));
    tokio::spawn(write_control(
        send,
        Arc::clone(&control),
        inbox,
        connection.clone(),
    ));
    tokio::spawn(read_control(recv, decoder, control, key, events.clone()));
    tokio::spawn(accept_pieces(
        connection.clone(),
        Arc::clone(&requests),
        params,
        key,
        events.clone(),
    ));
    tokio::spawn(refuse_control_streams(connection.clone(), key, events));
    LinkHandle {
        connection,
        outbox,
        requests,
        saying_goodbye: Arc::new(AtomicBool::new(false)),
    }
}

async fn write_control(
    mut send: quinn::SendStream,
    control: Arc<Mutex<ControlStream>>,
    mut inbox: mpsc::Receiver<Message>,
    connection: quinn::Connection,
) {
    loop {
        let message = match tokio::time::timeout(KEEP_ALIVE_AFTER, inbox.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_quiet) => Message::KeepAlive,
        };
        let goodbye = matches!(message, Message::Goodbye { .. });
        if handshake::send_message(&mut send, &control, &message)
            .await
            .is_err()
        {
            break;
        }
        if goodbye {
            let _ = send.finish();
            // Give the Goodbye a moment to leave before the connection goes.
            let _ = tokio::time::timeout(GOODBYE_WAIT, send.stopped()).await;
            connection.close(0u32.into(), b"goodbye");
            break;
        }
    }
}

async fn read_control(
    mut recv: quinn::RecvStream,
    mut decoder: minimodel_wire::FrameDecoder,
    control: Arc<Mutex<ControlStream>>,
    key: LinkId,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) {
    let end = loop {
        let message = match handshake::next_message(&mut recv, &mut decoder).await {
            Ok(Some(message)) => message,
            Ok(None) => break LinkError::Connection("the peer closed its control stream".into()),
            Err(error) => break error,
        };
        let event = {
            let Ok(mut control) = control.lock() else {
                break LinkError::Local("control state poisoned".into());
            };
            control.on_receive(&message)
        };
        match event {
            Ok(event) => {
                let goodbye = matches!(event, ControlEvent::Goodbye(_));
                if events.send((key, LinkEvent::Control(event))).await.is_err() || goodbye {
                    return;
                }
            }
            Err(violation) => break LinkError::Peer(PeerError::Violation(violation)),
        }
    };
    let _ = events.send((key, LinkEvent::Closed(end))).await;
}

/// The control stream is the only bidirectional stream: another one is a
/// violation (left unread, each could hold a stream window of our memory).
async fn refuse_control_streams(
    connection: quinn::Connection,
    key: LinkId,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) {
    if let Ok((_send, mut recv)) = connection.accept_bi().await {
        let _ = recv.stop(0u32.into());
        let _ = events
            .send((key, LinkEvent::Closed(LinkError::SecondControlStream)))
            .await;
    }
}

async fn accept_pieces(
    connection: quinn::Connection,
    requests: Arc<Mutex<RequestBook>>,
    params: SwarmParams,
    key: LinkId,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) {
    while let Ok(mut stream) = connection.accept_uni().await {
        let requests = Arc::clone(&requests);
        let events = events.clone();
        tokio::spawn(async move {
            let event = match pieces::receive_header(&mut stream, &params).await {
                Err(error) => LinkEvent::PieceFailed { chunk: None, error },
                Ok(header) => {
                    let chunk = header.chunk;
                    let admitted = requests
                        .lock()
                        .map_or(Err(PieceStreamError::NoLongerWanted(chunk)), |mut book| {
                            book.admit(chunk)
                        });
                    if let Err(error) = admitted {
                        let _ = stream.stop(0u32.into());
                        LinkEvent::PieceFailed {
                            chunk: Some(chunk),
                            error,
                        }
                    } else {
                        let _ = events.send((key, LinkEvent::PieceStarted(chunk))).await;
                        match pieces::receive_body(&mut stream, header, |_| {}).await {
                            // Stays arriving until the node forgets it.
                            Ok(piece) => LinkEvent::PieceArrived(piece),
                            Err(error) => {
                                if let Ok(mut book) = requests.lock() {
                                    book.arriving.remove(&chunk.0);
                                }
                                LinkEvent::PieceFailed {
                                    chunk: Some(chunk),
                                    error,
                                }
                            }
                        }
                    }
                }
            };
            let _ = events.send((key, event)).await;
        });
    }
}
