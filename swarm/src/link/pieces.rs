//! Piece streams on QUIC: one unidirectional stream per chunk, a header
//! frame with the chunk's index, length and Merkle proof, then exactly the
//! chunk's bytes, then FIN (`docs/wire-protocol.md`, section 9).
//!
//! Receiving keeps the bytes in the pieces quinn hands out
//! ([`quinn::RecvStream::read_chunk`]), so nothing copies them; sending
//! writes the chunk as `Bytes` slices, each one after the upload rate limit
//! allows it.
//!
//! Blame, precisely: quinn *finishes* a `SendStream` that is dropped, so an
//! upload given up half way (Cancel, stall, peer removed, task aborted,
//! shutdown) would look like a stream the sender cut short on purpose.
//! Every piece stream is therefore sent through a [`PieceSendStream`], which
//! resets the stream ([`PIECE_ABANDONED`]) on every path that does not
//! finish it, the task being aborted included. The receiver discards a
//! stream that was reset or lost with its connection, blaming nobody; only
//! a stream its sender *finished* (FIN) short, inside its header or its
//! body, is a violation ([`PieceStreamError::FinishedShort`]).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::ChunkData;
use minimodel_wire::{
    ChunkIndex, FRAME_PREFIX_LEN, MAX_PIECE_HEADER_FRAME, PieceHeader, SwarmParams,
};

use minimodel_node::upload::TokenBucket;

/// Bytes written to a piece stream between two rate-limit checks.
const SEND_SLICE: usize = 64 * 1024;

/// The application error code of the RESET_STREAM a sender sends for a
/// piece stream it does not complete (`docs/wire-protocol.md`, section 9).
/// Receivers discard a reset piece stream whatever its code.
pub const PIECE_ABANDONED: u32 = 0;

/// Which part of a piece stream a sender finished early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiecePart {
    /// The header frame (its length prefix included).
    Header,
    /// The chunk's bytes after the header.
    Body,
}

impl std::fmt::Display for PiecePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PiecePart::Header => "header",
            PiecePart::Body => "body",
        })
    }
}

/// Why a piece stream did not deliver a chunk.
#[derive(Debug, thiserror::Error)]
pub enum PieceStreamError {
    /// The sender reset the stream (it gave the upload up: a Cancel, a
    /// stall, shutting down): nothing the peer can be blamed for.
    #[error("the peer reset the piece stream (code {code}); the chunk was not delivered")]
    Reset {
        /// The RESET_STREAM's application error code.
        code: u64,
    },
    /// The connection went away while the stream was open: nobody to
    /// blame for the stream itself (why the connection ended is reported
    /// by the link).
    #[error("the connection was lost during the piece stream: {0}")]
    ConnectionLost(#[source] quinn::ConnectionError),
    /// The stream ended on our side (we stopped it, or a local error):
    /// nothing the peer can be blamed for.
    #[error("piece stream ended early: {0}")]
    Interrupted(String),
    /// The sender finished (FIN) the stream before the whole piece: a
    /// violation (`docs/wire-protocol.md`, section 9).
    #[error(
        "peer broke the piece stream rules: it finished the stream inside its {part}, \
         after {received} of {expected} bytes{}",
        chunk.map(|c| format!(" of {c}")).unwrap_or_default()
    )]
    FinishedShort {
        /// The chunk, once the header was read.
        chunk: Option<ChunkIndex>,
        /// Header or body.
        part: PiecePart,
        /// Bytes of that part that arrived.
        received: u64,
        /// Bytes that part has (for the header: as far as it was known,
        /// the length prefix or the whole frame).
        expected: u64,
    },
    /// The peer broke the rules: a malformed header, a header that does not
    /// fit the swarm, or more bytes than the chunk has.
    #[error("peer broke the piece stream rules: {0}")]
    Violation(String),
    /// Sending: the peer took none of the next slice of the piece for this
    /// long (its flow control stayed shut: it does not read).
    #[error("upload stalled: the peer took no bytes for {}", crate::transport::error::seconds(*.0))]
    Stalled(Duration),
}

impl PieceStreamError {
    /// Whether the peer is to blame: a stream it finished short, broke or
    /// sent unasked. A reset stream, a lost connection or our own stop are
    /// not.
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(
            self,
            PieceStreamError::FinishedShort { .. } | PieceStreamError::Violation(_)
        )
    }

    /// What a failed read means, when the stream did not end with FIN.
    fn from_read(error: quinn::ReadError) -> Self {
        match error {
            quinn::ReadError::Reset(code) => PieceStreamError::Reset {
                code: code.into_inner(),
            },
            quinn::ReadError::ConnectionLost(error) => PieceStreamError::ConnectionLost(error),
            other @ (quinn::ReadError::ClosedStream
            | quinn::ReadError::IllegalOrderedRead
            | quinn::ReadError::ZeroRttRejected) => {
                PieceStreamError::Interrupted(other.to_string())
            }
        }
    }
}

/// A chunk as it came off a piece stream: not verified yet.
#[derive(Debug)]
pub struct ArrivedPiece {
    /// Which chunk the peer says it is.
    pub chunk: ChunkIndex,
    /// Its bytes, in the pieces they arrived in.
    pub data: ChunkData,
    /// The Merkle proof the peer sent with it.
    pub proof: Vec<Sha256Digest>,
}

/// Reads the header frame of a piece stream: exactly its bytes, so the
/// chunk bytes stay in the stream.
pub async fn receive_header(
    stream: &mut quinn::RecvStream,
    params: &SwarmParams,
) -> Result<PieceHeader, PieceStreamError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    read_header_part(stream, &mut prefix, 0).await?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 || len > MAX_PIECE_HEADER_FRAME as usize {
        return Err(PieceStreamError::Violation(format!(
            "piece header frame of {len} bytes (1 to {MAX_PIECE_HEADER_FRAME} allowed)"
        )));
    }
    let mut frame = vec![0u8; FRAME_PREFIX_LEN + len];
    frame[..FRAME_PREFIX_LEN].copy_from_slice(&prefix);
    read_header_part(stream, &mut frame[FRAME_PREFIX_LEN..], FRAME_PREFIX_LEN).await?;
    let header = PieceHeader::decode(&mut &frame[..])
        .map_err(|error| PieceStreamError::Violation(error.to_string()))?;
    header
        .check_context(params)
        .map_err(|error| PieceStreamError::Violation(error.to_string()))?;
    Ok(header)
}

/// Reads the chunk bytes that follow `header`, then the end of the stream.
/// `on_progress` is called as bytes arrive.
pub async fn receive_body(
    stream: &mut quinn::RecvStream,
    header: PieceHeader,
    mut on_progress: impl FnMut(usize),
) -> Result<ArrivedPiece, PieceStreamError> {
    let mut data = ChunkData::new();
    let expected = header.chunk_len as usize;
    let mut remaining = expected;
    while remaining > 0 {
        match stream.read_chunk(remaining, true).await {
            Ok(Some(chunk)) => {
                remaining -= chunk.bytes.len();
                on_progress(chunk.bytes.len());
                data.push(chunk.bytes);
            }
            Ok(None) => {
                return Err(PieceStreamError::FinishedShort {
                    chunk: Some(header.chunk),
                    part: PiecePart::Body,
                    received: (expected - remaining) as u64,
                    expected: expected as u64,
                });
            }
            Err(error) => return Err(PieceStreamError::from_read(error)),
        }
    }
    match stream.read_chunk(1, true).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(PieceStreamError::Violation(format!(
                "more bytes after the {} bytes of {}",
                header.chunk_len, header.chunk
            )));
        }
        Err(error) => return Err(PieceStreamError::from_read(error)),
    }
    Ok(ArrivedPiece {
        chunk: header.chunk,
        data,
        proof: header.proof.into_iter().map(Sha256Digest).collect(),
    })
}

/// Reads `buf.len()` bytes of the header frame, `before` bytes of which
/// were read already. FIN before they are all there is the sender's doing.
async fn read_header_part(
    stream: &mut quinn::RecvStream,
    buf: &mut [u8],
    before: usize,
) -> Result<(), PieceStreamError> {
    stream.read_exact(buf).await.map_err(|error| match error {
        quinn::ReadExactError::FinishedEarly(read) => PieceStreamError::FinishedShort {
            chunk: None,
            part: PiecePart::Header,
            received: (before + read) as u64,
            expected: (before + buf.len()) as u64,
        },
        quinn::ReadExactError::ReadError(error) => PieceStreamError::from_read(error),
    })
}

/// A piece stream being sent. It resets the stream ([`PIECE_ABANDONED`])
/// when dropped unless [`PieceSendStream::finish_acknowledged`] completed: every error,
/// a dropped future and an aborted task alike. (quinn itself finishes a
/// dropped stream, which the receiver could not tell from a sender that
/// cut the piece short.)
#[derive(Debug)]
pub struct PieceSendStream {
    stream: Option<quinn::SendStream>,
}

impl PieceSendStream {
    /// Opens a unidirectional stream on `connection` for one piece.
    pub async fn open(connection: &quinn::Connection) -> Result<Self, PieceStreamError> {
        let stream = connection.open_uni().await.map_err(|error| match error {
            quinn::ConnectionError::LocallyClosed => interrupted(&error),
            error => PieceStreamError::ConnectionLost(error),
        })?;
        Ok(Self {
            stream: Some(stream),
        })
    }

    /// Writes all of `bytes`.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), PieceStreamError> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| PieceStreamError::Interrupted("the stream was finished".into()))?;
        stream.write_chunk(bytes).await.map_err(|e| interrupted(&e))
    }

    /// Ends the stream with FIN and waits until the peer has acknowledged
    /// every byte of it. Until then the piece is still being sent: quinn's
    /// `write` returns once bytes are buffered (up to the peer's whole
    /// receive window), so an upload that counted as done at its last
    /// write would let a serving node believe its uplink idle while
    /// megabytes wait in buffers, and decide the next uploads on that.
    ///
    /// The wait is held to the same rule as the writes: the connection must
    /// send at least one slice ([`SEND_SLICE`]) every `stall`, or the
    /// upload is given up with [`PieceStreamError::Stalled`]. A slow
    /// uplink that drains buffered pieces for minutes is not a stall; a
    /// peer that stops reading is (its flow control stops the bytes).
    ///
    /// Dropped while waiting (the upload was cancelled), the stream is reset
    /// like any other abandoned piece: the receiver discards it without
    /// blame.
    pub async fn finish_acknowledged(
        mut self,
        connection: &quinn::Connection,
        stall: Duration,
    ) -> Result<(), PieceStreamError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut acknowledged = std::pin::pin!(stream.stopped());
        stream.finish().map_err(|e| interrupted(&e))?;
        let mut sent = connection.stats().udp_tx.bytes;
        let outcome = loop {
            match tokio::time::timeout(stall, &mut acknowledged).await {
                Ok(outcome) => break Ok(outcome),
                Err(_) => {
                    let now_sent = connection.stats().udp_tx.bytes;
                    if now_sent.saturating_sub(sent) < SEND_SLICE as u64 {
                        break Err(());
                    }
                    sent = now_sent;
                }
            }
        };
        // Acknowledged, stopped or gone; or stalled, and the peer is
        // dropped: nothing left to reset.
        let _ = self.stream.take();
        match outcome {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(code))) => Err(PieceStreamError::Interrupted(format!(
                "the peer stopped the stream (code {code})"
            ))),
            Ok(Err(error)) => Err(interrupted(&error)),
            Err(()) => Err(PieceStreamError::Stalled(stall)),
        }
    }
}

impl Drop for PieceSendStream {
    fn drop(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            // Fails only when the stream is already closed (stopped by the
            // peer, or the connection is gone): nothing left to tell.
            let _ = stream.reset(PIECE_ABANDONED.into());
        }
    }
}

/// Sends one chunk on a new piece stream: header, bytes, FIN, and returns
/// once the peer has acknowledged all of it. With a pace
/// (bytes per second), each slice waits for its tokens in a bucket of this
/// upload's own. Opening the stream, each write and the wait for the
/// acknowledgements must make progress within `stall`, or the upload is
/// given up with [`PieceStreamError::Stalled`].
pub async fn send_piece(
    connection: &quinn::Connection,
    header: &PieceHeader,
    params: &SwarmParams,
    bytes: Bytes,
    pace: Option<u64>,
    stall: Duration,
) -> Result<(), PieceStreamError> {
    let mut limit = pace.map(|rate| TokenBucket::new(rate, SEND_SLICE as u64, Instant::now()));
    let mut frame = BytesMut::with_capacity(FRAME_PREFIX_LEN + header.frame_len());
    header
        .encode_checked(params, &mut frame)
        .map_err(|error| PieceStreamError::Violation(format!("refusing to send: {error}")))?;
    let mut stream = tokio::time::timeout(stall, PieceSendStream::open(connection))
        .await
        .map_err(|_| PieceStreamError::Stalled(stall))??;
    write_within(&mut stream, frame.freeze(), stall).await?;
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + SEND_SLICE).min(bytes.len());
        if let Some(limit) = &mut limit {
            let wait = limit.reserve((end - offset) as u64, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        write_within(&mut stream, bytes.slice(offset..end), stall).await?;
        offset = end;
    }
    stream.finish_acknowledged(connection, stall).await
}

fn interrupted(error: &dyn std::fmt::Display) -> PieceStreamError {
    PieceStreamError::Interrupted(error.to_string())
}

/// Writes `bytes`, or fails if the peer's flow control lets none of them
/// through within `stall`.
async fn write_within(
    stream: &mut PieceSendStream,
    bytes: Bytes,
    stall: Duration,
) -> Result<(), PieceStreamError> {
    tokio::time::timeout(stall, stream.write(bytes))
        .await
        .map_err(|_| PieceStreamError::Stalled(stall))?
}
