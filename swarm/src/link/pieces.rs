//! Piece streams on QUIC: one unidirectional stream per chunk, a header
//! frame with the chunk's index, length and Merkle proof, then exactly the
//! chunk's bytes, then FIN (`docs/wire-protocol.md`).
//!
//! Receiving keeps the bytes in the pieces quinn hands out
//! ([`quinn::RecvStream::read_chunk`]), so nothing copies them; sending
//! writes the chunk as `Bytes` slices, each one after the upload rate limit
//! allows it.

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

/// Why a piece stream did not deliver a chunk.
#[derive(Debug, thiserror::Error)]
pub enum PieceStreamError {
    /// The stream ended or was reset before the whole chunk arrived, or the
    /// connection went away: nothing the peer can be blamed for.
    #[error("piece stream ended early: {0}")]
    Interrupted(String),
    /// The peer broke the rules: a malformed header, a header that does not
    /// fit the swarm, or more bytes than the chunk has.
    #[error("peer broke the piece stream rules: {0}")]
    Violation(String),
    /// The peer sent a chunk that was never requested from it.
    #[error("peer sent {0}, which was never requested from it")]
    Unrequested(ChunkIndex),
    /// The chunk was requested but is no longer wanted from this peer
    /// (cancelled, or delivered by another peer first).
    #[error("{0} is no longer wanted from this peer")]
    NoLongerWanted(ChunkIndex),
    /// Sending: the peer took none of the next slice of the piece for this
    /// long (its flow control stayed shut: it does not read).
    #[error("upload stalled: the peer took no bytes for {0:?}")]
    Stalled(Duration),
}

impl PieceStreamError {
    /// Whether the peer is to blame.
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(
            self,
            PieceStreamError::Violation(_) | PieceStreamError::Unrequested(_)
        )
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
    read_exact(stream, &mut prefix).await?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 || len > MAX_PIECE_HEADER_FRAME as usize {
        return Err(PieceStreamError::Violation(format!(
            "piece header frame of {len} bytes (1 to {MAX_PIECE_HEADER_FRAME} allowed)"
        )));
    }
    let mut frame = vec![0u8; FRAME_PREFIX_LEN + len];
    frame[..FRAME_PREFIX_LEN].copy_from_slice(&prefix);
    read_exact(stream, &mut frame[FRAME_PREFIX_LEN..]).await?;
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
) -> Result<ArrivedPiece, PieceStreamError> {
    let mut data = ChunkData::new();
    let mut remaining = header.chunk_len as usize;
    while remaining > 0 {
        match stream.read_chunk(remaining, true).await {
            Ok(Some(chunk)) => {
                remaining -= chunk.bytes.len();
                data.push(chunk.bytes);
            }
            Ok(None) => {
                return Err(PieceStreamError::Interrupted(format!(
                    "{} ended {remaining} bytes short",
                    header.chunk
                )));
            }
            Err(error) => return Err(PieceStreamError::Interrupted(error.to_string())),
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
        Err(error) => return Err(PieceStreamError::Interrupted(error.to_string())),
    }
    Ok(ArrivedPiece {
        chunk: header.chunk,
        data,
        proof: header.proof.into_iter().map(Sha256Digest).collect(),
    })
}

async fn read_exact(
    stream: &mut quinn::RecvStream,
    buf: &mut [u8],
) -> Result<(), PieceStreamError> {
    stream.read_exact(buf).await.map_err(|error| match error {
        quinn::ReadExactError::FinishedEarly(_) => {
            PieceStreamError::Violation("piece stream ended inside its header".to_owned())
        }
        quinn::ReadExactError::ReadError(error) => PieceStreamError::Interrupted(error.to_string()),
    })
}

/// Sends one chunk on a new piece stream: header, bytes, FIN. With a pace
/// (bytes per second), each slice waits for its tokens in a bucket of this
/// upload's own. Opening the stream and each write must make progress
/// within `stall`, or the upload is given up with
/// [`PieceStreamError::Stalled`].
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
    let mut stream = tokio::time::timeout(stall, connection.open_uni())
        .await
        .map_err(|_| PieceStreamError::Stalled(stall))?
        .map_err(|e| interrupted(&e))?;
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
    stream.finish().map_err(|e| interrupted(&e))
}

fn interrupted(error: &dyn std::fmt::Display) -> PieceStreamError {
    PieceStreamError::Interrupted(error.to_string())
}

/// Writes `bytes`, or fails if the peer's flow control lets none of them
/// through within `stall`.
async fn write_within(
    stream: &mut quinn::SendStream,
    bytes: Bytes,
    stall: Duration,
) -> Result<(), PieceStreamError> {
    tokio::time::timeout(stall, stream.write_chunk(bytes))
        .await
        .map_err(|_| PieceStreamError::Stalled(stall))?
        .map_err(|e| interrupted(&e))
}
