//! One peer connection speaking the piece protocol: the handshake, then
//! small tasks that turn bytes into events for the node and the node's
//! messages into bytes. They decide nothing: every message and every piece
//! header goes to the node's core, which answers.
//!
//! - the control reader decodes frames and passes each message on (the
//!   core runs it through the control stream's rules);
//! - the control writer sends what the node queues, a Goodbye last (the
//!   core sends KeepAlives and decides how long a Goodbye may take);
//! - the piece acceptor reads each incoming piece stream's header, asks the
//!   core whether to read on, and reports the chunk's bytes, unverified,
//!   when they are complete;
//! - a watcher ends the link if the peer opens a second bidirectional
//!   stream (the spec allows only the control stream);
//! - the delay stamper (`transport::oneway::run`) sends the connection's
//!   delay stamps while it uploads and echoes the peer's, for the
//!   congestion controller.
//!
//! Nothing here hashes or writes to disk.

pub mod handshake;
pub mod pieces;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use minimodel_node::LinkId;
use minimodel_node::node::fetching::{PieceEnd, PieceVerdict};
use minimodel_node::report::{LinkEnd, Violation};
use minimodel_wire::{ChunkIndex, FrameDecoder, GoodbyeReason, Message, SwarmParams};
use tokio::sync::{mpsc, oneshot};

pub use handshake::Session;
pub use pieces::{ArrivedPiece, PieceStreamError};

/// What a running link reports to the node.
#[derive(Debug)]
pub enum LinkEvent {
    /// A control message (not checked yet: the core does that).
    Message(Message),
    /// A piece stream's header names `chunk`: answer whether to read on.
    PieceHeader {
        /// The chunk.
        chunk: ChunkIndex,
        /// Its first byte the stream carries (0: the whole chunk; more:
        /// a PieceFrom, v3).
        from: u32,
        /// How long the link carried no piece bytes before this header
        /// (zero for the first header).
        quiet: Duration,
        /// Where the verdict goes.
        reply: oneshot::Sender<PieceVerdict>,
    },
    /// All bytes of a piece arrived (not verified yet).
    PieceArrived(ArrivedPiece),
    /// A piece stream did not deliver its chunk.
    PieceFailed {
        /// The chunk, if its header was read.
        chunk: Option<ChunkIndex>,
        /// How it ended.
        end: PieceEnd,
    },
    /// The link is over.
    Closed(LinkEnd),
}

enum Outgoing {
    Message(Message),
    Goodbye(GoodbyeReason),
}

/// The node's handle on a running link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    /// The connection, for piece streams and closing.
    pub connection: quinn::Connection,
    outbox: mpsc::Sender<Outgoing>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::Message(message) => write!(f, "{message:?}"),
            Outgoing::Goodbye(reason) => write!(f, "Goodbye({reason:?})"),
        }
    }
}

impl LinkHandle {
    /// Queues a message. False when the peer does not read its control
    /// stream (the queue is full) or the link is gone.
    pub fn send(&self, message: Message) -> bool {
        self.outbox.try_send(Outgoing::Message(message)).is_ok()
    }

    /// Sends Goodbye, then closes the connection once it is acknowledged
    /// (the core aborts the link if that takes too long); at once if it
    /// cannot be queued.
    pub fn close(&self, reason: GoodbyeReason) {
        if self.outbox.try_send(Outgoing::Goodbye(reason)).is_err() {
            self.connection.close(0u32.into(), b"goodbye");
        }
    }

    /// Closes the connection now.
    pub fn abort(&self) {
        self.connection.close(0u32.into(), b"bye");
    }
}

/// Starts the tasks of a link after its handshake. Events go to `events`
/// tagged with `link`; the link ends with a [`LinkEvent::Closed`]. At most
/// `outbox` messages wait for the peer (the core's `max_outbox`).
pub fn spawn(
    session: Session,
    link: LinkId,
    params: SwarmParams,
    outbox: usize,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) -> LinkHandle {
    let version = session.control.version();
    let Session {
        connection,
        send,
        recv,
        decoder,
        place,
        ..
    } = session;
    let (outbox, inbox) = mpsc::channel(outbox.max(1));
    tokio::spawn(write_control(send, inbox, connection.clone()));
    tokio::spawn(read_control(recv, decoder, link, events.clone(), place));
    tokio::spawn(accept_pieces(
        connection.clone(),
        params,
        version,
        link,
        events.clone(),
    ));
    tokio::spawn(refuse_control_streams(connection.clone(), link, events));
    tokio::spawn(crate::transport::oneway::run(connection.clone()));
    if crate::transport::pathtrace::enabled() {
        tokio::spawn(crate::transport::pathtrace::run(connection.clone()));
    }
    LinkHandle { connection, outbox }
}

async fn write_control(
    mut send: quinn::SendStream,
    mut inbox: mpsc::Receiver<Outgoing>,
    connection: quinn::Connection,
) {
    while let Some(outgoing) = inbox.recv().await {
        let (message, goodbye) = match outgoing {
            Outgoing::Message(message) => (message, false),
            Outgoing::Goodbye(reason) => (Message::Goodbye { reason }, true),
        };
        if let Message::Request { chunk, .. } = &message {
            tracing::debug!(target: "minimodel_swarm::pathtrace", at_ms = crate::transport::pathtrace::ms(), chunk = chunk.0, "request");
        }
        if handshake::write_message(&mut send, &message).await.is_err() {
            break;
        }
        if goodbye {
            // The Goodbye leaves before the connection goes.
            handshake::flush(&mut send).await;
            connection.close(0u32.into(), b"goodbye");
            break;
        }
    }
}

async fn read_control(
    mut recv: quinn::RecvStream,
    mut decoder: FrameDecoder,
    link: LinkId,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
    // Let go when the control stream ends: the link is over.
    _place: Option<Box<dyn std::any::Any + Send>>,
) {
    let end = loop {
        match handshake::next_message(&mut recv, &mut decoder).await {
            Ok(Some(message)) => {
                let goodbye = matches!(message, Message::Goodbye { .. });
                if events
                    .send((link, LinkEvent::Message(message)))
                    .await
                    .is_err()
                    || goodbye
                {
                    return;
                }
            }
            Ok(None) => break LinkEnd::ClosedByPeer,
            Err(end) => break end,
        }
    };
    let _ = events.send((link, LinkEvent::Closed(end))).await;
}

/// The control stream is the only bidirectional stream: another one is a
/// violation (left unread, each could hold a stream window of our memory).
async fn refuse_control_streams(
    connection: quinn::Connection,
    link: LinkId,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) {
    if let Ok((_send, mut recv)) = connection.accept_bi().await {
        let _ = recv.stop(0u32.into());
        let end = LinkEnd::Violation(Violation::SecondControlStream);
        let _ = events.send((link, LinkEvent::Closed(end))).await;
    }
}

/// A piece stream whose reads paused this long was waiting for a repair
/// ([`StallFilter`]).
const PIECE_STALL: Duration = Duration::from_millis(10);
/// The reads within this long after such a pause are what the repair
/// released.
const PIECE_RELEASE: Duration = Duration::from_millis(2);

/// When a link last received piece bytes: microseconds after `epoch`,
/// 0 before the first. Shared by the tasks reading its piece streams.
struct PieceClock {
    epoch: Instant,
    last: AtomicU64,
}

impl PieceClock {
    fn new() -> Self {
        Self::starting(Instant::now())
    }

    fn starting(epoch: Instant) -> Self {
        Self {
            epoch,
            last: AtomicU64::new(0),
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_micros().max(1);
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    /// Piece bytes arrived at `now`.
    fn tick(&self, now: Instant) {
        self.last.store(self.micros(now), Ordering::Relaxed);
    }

    /// What one piece stream's reads tell the clock, read by read.
    fn reads(&self) -> impl FnMut(usize) + '_ {
        let mut filter = StallFilter::new(Instant::now());
        move |_| self.read(&mut filter, Instant::now())
    }

    /// A read of a stream (whose reads `filter` follows) at `now`: the
    /// clock moves on when it counts ([`StallFilter`]).
    fn read(&self, filter: &mut StallFilter, now: Instant) {
        if filter.counts(now) {
            self.tick(now);
        }
    }

    /// A header arrived at `now`: how long the link carried no piece
    /// bytes before it (zero for the first), and the clock moves on.
    fn quiet_before_header(&self, now: Instant) -> Duration {
        let now = self.micros(now);
        match self.last.swap(now, Ordering::Relaxed) {
            0 => Duration::ZERO,
            last => Duration::from_micros(now.saturating_sub(last)),
        }
    }
}

/// Which reads of one piece stream show the link carrying bytes now. A
/// stream whose reads stalled ([`PIECE_STALL`]) waited for a lost
/// packet's repair: the repair, and the bytes behind it that it releases
/// at once (the reads within [`PIECE_RELEASE`] after the stall), are no
/// sign that the link carries anything now, and would hide its idling.
struct StallFilter {
    last: Instant,
    released_until: Option<Instant>,
}

impl StallFilter {
    fn new(now: Instant) -> Self {
        Self {
            last: now,
            released_until: None,
        }
    }

    /// A read at `now`: whether it counts.
    fn counts(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) >= PIECE_STALL {
            self.released_until = Some(now + PIECE_RELEASE);
        }
        self.last = now;
        !matches!(self.released_until, Some(until) if now < until)
    }
}

async fn accept_pieces(
    connection: quinn::Connection,
    params: SwarmParams,
    version: u16,
    link: LinkId,
    events: mpsc::Sender<(LinkId, LinkEvent)>,
) {
    let clock = Arc::new(PieceClock::new());
    while let Ok(mut stream) = connection.accept_uni().await {
        let events = events.clone();
        let clock = Arc::clone(&clock);
        let params = params.clone();
        tokio::spawn(async move {
            let event = match pieces::receive_header(&mut stream, &params, version).await {
                Err(error) => LinkEvent::PieceFailed {
                    chunk: None,
                    end: error.into_end(),
                },
                Ok(header) => {
                    let quiet = clock.quiet_before_header(Instant::now());
                    let chunk = header.header().chunk;
                    let from = header.header().from;
                    let header_ms = crate::transport::pathtrace::ms();
                    let (reply, verdict) = oneshot::channel();
                    let asked = LinkEvent::PieceHeader {
                        chunk,
                        from,
                        quiet,
                        reply,
                    };
                    if events.send((link, asked)).await.is_err() {
                        return;
                    }
                    match verdict.await {
                        Ok(PieceVerdict::Accept) => {
                            match pieces::receive_body(&mut stream, header, clock.reads()).await {
                                Ok(piece) => {
                                    tracing::debug!(
                                        target: "minimodel_swarm::pathtrace",
                                        at_ms = crate::transport::pathtrace::ms(),
                                        chunk = chunk.0,
                                        header_ms,
                                        quiet_us = quiet.as_micros() as u64,
                                        "piece"
                                    );
                                    LinkEvent::PieceArrived(piece)
                                }
                                Err(error) => LinkEvent::PieceFailed {
                                    chunk: Some(chunk),
                                    end: error.into_end(),
                                },
                            }
                        }
                        _ => {
                            let _ = stream.stop(0u32.into());
                            return;
                        }
                    }
                }
            };
            let _ = events.send((link, event)).await;
        });
    }
}

impl PieceStreamError {
    /// How the core sees it: a reset or a lost connection blames nobody;
    /// a stream the sender finished short, or malformed, is a violation.
    pub fn into_end(self) -> PieceEnd {
        match self {
            PieceStreamError::Violation(error) => PieceEnd::Violation(Violation::Wire(error)),
            _ => PieceEnd::Reset,
        }
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_quiet_before_a_header_is_the_time_since_the_last_piece_bytes() {
        let start = Instant::now();
        let clock = PieceClock::starting(start);
        assert_eq!(clock.quiet_before_header(start + ms(5)), Duration::ZERO);
        clock.tick(start + ms(10));
        assert_eq!(clock.quiet_before_header(start + ms(45)), ms(35));
        // The header moved the clock on: the next one counts from it.
        assert_eq!(clock.quiet_before_header(start + ms(50)), ms(5));
    }

    #[test]
    fn reads_a_repair_releases_after_a_stall_do_not_count_as_the_link_carrying_bytes() {
        let start = Instant::now();
        let mut filter = StallFilter::new(start);
        // Reads that follow each other count.
        assert!(filter.counts(start + ms(1)));
        assert!(filter.counts(start + ms(2)));
        // A stall of PIECE_STALL, then the repair and what it releases at
        // once: none of them counts ...
        let repaired = start + ms(2) + PIECE_STALL;
        assert!(!filter.counts(repaired));
        assert!(!filter.counts(repaired + PIECE_RELEASE / 2));
        // ... until PIECE_RELEASE has passed.
        assert!(filter.counts(repaired + PIECE_RELEASE));
        assert!(filter.counts(repaired + PIECE_RELEASE + ms(1)));
        // A pause just short of a stall is no stall.
        let paused = repaired + PIECE_RELEASE + ms(1) + PIECE_STALL - Duration::from_micros(1);
        assert!(filter.counts(paused));
    }

    #[test]
    fn a_link_whose_only_reads_were_released_by_a_repair_shows_its_quiet() {
        // One stream stalls for 30 ms and its repair releases a burst:
        // the header that follows sees the link quiet since the reads
        // before the stall, not since the burst.
        let start = Instant::now();
        let clock = PieceClock::starting(start);
        let mut filter = StallFilter::new(start);
        for read in [start + ms(1), start + ms(2)] {
            clock.read(&mut filter, read);
        }
        let repaired = start + ms(32);
        for read in [repaired, repaired + Duration::from_micros(500)] {
            clock.read(&mut filter, read);
        }
        assert_eq!(clock.quiet_before_header(start + ms(40)), ms(38));
    }
}
