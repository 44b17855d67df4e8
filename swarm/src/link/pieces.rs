//! Piece streams on QUIC: one unidirectional stream per chunk, a header
//! frame with the chunk's index, length and Merkle proof, then exactly the
//! chunk's bytes, then FIN (`docs/wire-protocol.md`, section 9).
//!
//! Receiving feeds the pieces quinn hands out
//! ([`quinn::RecvStream::read_chunk`]) to the wire crate's
//! [`PieceStreamReader`], which holds the protocol's rules and keeps the
//! bytes as they came (nothing is copied); sending writes the chunk as
//! `Bytes` slices, each one after the upload rate limit allows it.
//!
//! Blame, precisely: quinn *finishes* a `SendStream` that is dropped, so an
//! upload given up half way (Cancel, stall, peer removed, task aborted,
//! shutdown) would look like a stream the sender cut short on purpose.
//! Every piece stream is therefore sent through a [`PieceSendStream`], which
//! resets the stream ([`PIECE_ABANDONED`]) on every path that does not
//! finish it, the task being aborted included. The receiver discards a
//! stream that was reset or lost with its connection, blaming nobody; only
//! a stream its sender *finished* (FIN) short, inside its header or its
//! body, is a violation (the wire crate's
//! [`ProtocolViolation::PieceFinishedShort`]).
//!
//! Nothing here waits on a clock: an upload the peer does not read is
//! noticed by the node's core (its `upload_stall_timeout`), which closes
//! the link, and the upload ends with it.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::ChunkData;
use minimodel_wire::{
    ChunkIndex, FRAME_PREFIX_LEN, PeerError, PieceHeader, PieceStreamReader, SwarmParams,
};

use minimodel_node::upload::TokenBucket;

#[cfg(doc)]
use minimodel_wire::ProtocolViolation;

/// Bytes written to a piece stream between two rate-limit checks.
const SEND_SLICE: usize = 64 * 1024;

/// The application error code of the RESET_STREAM a sender sends for a
/// piece stream it does not complete (`docs/wire-protocol.md`, section 9).
/// Receivers discard a reset piece stream whatever its code.
pub const PIECE_ABANDONED: u32 = 0;

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
    /// The peer broke the piece stream's rules (a malformed or misfitting
    /// header, more bytes than the chunk, a stream finished short): the
    /// wire crate's typed error.
    #[error("peer broke the piece stream rules: {0}")]
    Violation(#[from] PeerError),
}

impl PieceStreamError {
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
    /// Its first byte the stream carried: 0 for the whole chunk, more
    /// after a PieceFrom (the start is held here).
    pub from: u32,
    /// Its bytes from `from` on, in the pieces they arrived in.
    pub data: ChunkData,
    /// The Merkle proof the peer sent with it.
    pub proof: Vec<Sha256Digest>,
}

/// A piece stream whose header has arrived and passed the wire's checks;
/// its body may have begun.
#[derive(Debug)]
pub struct IncomingPiece {
    reader: PieceStreamReader,
    header: PieceHeader,
}

impl IncomingPiece {
    /// The header.
    pub fn header(&self) -> &PieceHeader {
        &self.header
    }
}

/// Reads a piece stream until its header frame is whole and checked
/// against the swarm.
pub async fn receive_header(
    stream: &mut quinn::RecvStream,
    params: &SwarmParams,
    version: u16,
) -> Result<IncomingPiece, PieceStreamError> {
    let mut reader = PieceStreamReader::for_version(params.clone(), version);
    loop {
        if let Some(header) = reader.header() {
            let header = header.clone();
            return Ok(IncomingPiece { reader, header });
        }
        match stream.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => reader.feed(chunk.bytes)?,
            // FIN inside the header: the reader says how far it got.
            Ok(None) => {
                return Err(reader.finish().err().map_or_else(
                    || PieceStreamError::Interrupted("no header".into()),
                    Into::into,
                ));
            }
            Err(error) => return Err(PieceStreamError::from_read(error)),
        }
    }
}

/// Reads the rest of the piece, then the end of the stream. `on_progress`
/// is called as chunk bytes arrive.
pub async fn receive_body(
    stream: &mut quinn::RecvStream,
    incoming: IncomingPiece,
    mut on_progress: impl FnMut(usize),
) -> Result<ArrivedPiece, PieceStreamError> {
    let IncomingPiece { mut reader, header } = incoming;
    on_progress(reader.received_len());
    loop {
        // One byte past the chunk is read too, so a stream that carries
        // more is refused as it arrives.
        match stream.read_chunk(reader.remaining() + 1, true).await {
            Ok(Some(chunk)) => {
                let len = chunk.bytes.len();
                reader.feed(chunk.bytes)?;
                on_progress(len);
            }
            Ok(None) => break,
            Err(error) => return Err(PieceStreamError::from_read(error)),
        }
    }
    let piece = reader.finish()?;
    let mut data = ChunkData::new();
    for bytes in piece.data {
        data.push(bytes);
    }
    Ok(ArrivedPiece {
        chunk: header.chunk,
        from: header.from,
        data,
        proof: header.proof.into_iter().map(Sha256Digest).collect(),
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
    ///
    /// Each stream ranks below the ones opened before it on the same
    /// connection, so a peer's pieces go out one after another, each
    /// whole soon, rather than side by side, all whole at once: over a
    /// long path the peer then asks for the next piece while this side
    /// still sends the others, instead of asking for several after all of
    /// them arrived while this side idles for a round trip.
    pub async fn open(connection: &quinn::Connection) -> Result<Self, PieceStreamError> {
        let stream = connection.open_uni().await.map_err(|error| match error {
            quinn::ConnectionError::LocallyClosed => interrupted(&error),
            error => PieceStreamError::ConnectionLost(error),
        })?;
        let _ = stream.set_priority(stream_rank(stream.id().index()));
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
    /// A peer that stops reading holds this wait (and the writes before it)
    /// open: the node's core measures what the connection sends and closes
    /// a link that takes too little (`upload_stall_timeout`), which ends
    /// the wait. Dropped while waiting (the upload was cancelled), the
    /// stream is reset like any other abandoned piece: the receiver
    /// discards it without blame.
    pub async fn finish_acknowledged(mut self) -> Result<(), PieceStreamError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let acknowledged = stream.stopped();
        let finished = stream.finish();
        let outcome = match finished {
            Ok(()) => acknowledged.await,
            Err(error) => return Err(interrupted(&error)),
        };
        // Acknowledged, stopped or gone: nothing left to reset.
        let _ = self.stream.take();
        match outcome {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(PieceStreamError::Interrupted(format!(
                "the peer stopped the stream (code {code})"
            ))),
            Err(error) => Err(interrupted(&error)),
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
/// once the peer has acknowledged all of it. With a pace (bytes per
/// second), each slice waits for its tokens in a bucket of this upload's
/// own. Nothing here times out: a peer that reads nothing is the core's to
/// judge (see [`PieceSendStream::finish_acknowledged`]).
pub async fn send_piece(
    connection: &quinn::Connection,
    header: &PieceHeader,
    params: &SwarmParams,
    bytes: Bytes,
    pace: Option<u64>,
) -> Result<(), PieceStreamError> {
    let started_ms = crate::transport::pathtrace::ms();
    let mut limit = pace.map(|rate| TokenBucket::new(rate, SEND_SLICE as u64, Instant::now()));
    let mut frame = BytesMut::with_capacity(FRAME_PREFIX_LEN + header.frame_len());
    header
        .encode_checked(params, &mut frame)
        .map_err(|error| PieceStreamError::Interrupted(format!("refusing to send: {error}")))?;
    let mut stream = PieceSendStream::open(connection).await?;
    stream.write(frame.freeze()).await?;
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + SEND_SLICE).min(bytes.len());
        if let Some(limit) = &mut limit {
            let wait = limit.reserve((end - offset) as u64, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        stream.write(bytes.slice(offset..end)).await?;
        offset = end;
    }
    let written_ms = crate::transport::pathtrace::ms();
    let outcome = stream.finish_acknowledged().await;
    tracing::debug!(
        target: "minimodel_swarm::pathtrace",
        at_ms = crate::transport::pathtrace::ms(),
        chunk = header.chunk.0,
        started_ms,
        written_ms,
        ok = outcome.is_ok(),
        "upload"
    );
    outcome
}

/// The send priority of the `index`-th stream a side opens on a
/// connection: lower for each later one (quinn sends a higher priority
/// first).
fn stream_rank(index: u64) -> i32 {
    i32::try_from(index).map_or(i32::MIN, |index| -index)
}

fn interrupted(error: &dyn std::fmt::Display) -> PieceStreamError {
    PieceStreamError::Interrupted(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::stream_rank;

    #[test]
    fn each_stream_ranks_below_the_ones_before_it() {
        assert!(stream_rank(0) > stream_rank(1));
        assert!(stream_rank(1) > stream_rank(1000));
        assert_eq!(stream_rank(u64::from(u32::MAX)), i32::MIN);
    }
}
