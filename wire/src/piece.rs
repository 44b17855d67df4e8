//! Piece streams: one unidirectional QUIC stream per served chunk, opened by
//! the peer that serves it. The stream holds one [`PieceHeader`] frame (type
//! `0x20`, at most [`MAX_PIECE_HEADER_FRAME`] bytes), then exactly
//! `chunk_len` raw chunk bytes, then FIN. [`PieceStreamReader`] is the
//! receiving side: it refuses a header that does not fit the swarm and a
//! stream with extra or missing bytes.

use bincode::enc::write::Writer;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{BodyDecoder, BodyEncoder, EncodeBody, encode_frame, frame_len, put};
use crate::error::{
    ContextError, DecodeError, FieldError, LocalMisuse, PeerError, ProtocolViolation,
};
use crate::frame::{
    FRAME_PREFIX_LEN as FRAME_PREFIX, MAX_PIECE_HEADER_FRAME, complete_frame_len, take_frame,
};
use crate::params::SwarmParams;
use crate::types::{ChunkIndex, MessageType, validate_proof_count};

/// The frame that opens a piece stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceHeader {
    /// The chunk that follows.
    pub chunk: ChunkIndex,
    /// Its length in bytes: the chunk size, or less for the last chunk.
    pub chunk_len: u32,
    /// The chunk's Merkle audit path, leaf level first (at most 32 hashes).
    /// The verifier checks the hashes; this crate checks only their number.
    pub proof: Vec<[u8; 32]>,
}

impl PieceHeader {
    /// Checks the proof's size cap (the only context-free rule).
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_proof_count(self.proof.len() as u64)
    }

    /// Checks the header against the swarm: the chunk exists, `chunk_len` is
    /// its real length and the proof has the length of its audit path.
    pub fn check_context(&self, params: &SwarmParams) -> Result<(), ContextError> {
        let chunk = self.chunk;
        let out_of_range = |_| ContextError::ChunkOutOfRange {
            message_type: MessageType::PieceHeader,
            chunk,
            chunk_count: params.chunk_count(),
        };
        let expected_len = params.chunk_len(chunk).map_err(out_of_range)?;
        if self.chunk_len != expected_len {
            return Err(ContextError::PieceLength {
                chunk,
                found: self.chunk_len,
                expected: expected_len,
            });
        }
        let expected_proof = params.proof_len(chunk).map_err(out_of_range)?;
        if self.proof.len() != expected_proof as usize {
            return Err(ContextError::ProofLength {
                chunk,
                found: self.proof.len(),
                expected: expected_proof,
            });
        }
        Ok(())
    }

    /// Writes the header as one frame into `buf`; returns the bytes written.
    /// The chunk's bytes follow it on the stream, then FIN.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, LocalMisuse> {
        self.validate().map_err(|error| LocalMisuse::Field {
            message_type: MessageType::PieceHeader,
            error,
        })?;
        encode_frame(self, MessageType::PieceHeader, MAX_PIECE_HEADER_FRAME, buf)
    }

    /// Checks the header against the swarm, then writes it: what a serving
    /// peer calls before it streams the chunk.
    pub fn encode_checked(
        &self,
        params: &SwarmParams,
        buf: &mut impl BufMut,
    ) -> Result<usize, LocalMisuse> {
        self.check_context(params)?;
        self.encode(buf)
    }

    /// Length of the header's frame (type byte and body, not the prefix).
    pub fn frame_len(&self) -> usize {
        frame_len(self)
    }

    /// Reads one whole PieceHeader frame from `buf` (the chunk's bytes stay
    /// in `buf`). Context-free rules only; see [`PieceHeader::check_context`].
    pub fn decode(buf: &mut impl Buf) -> Result<PieceHeader, DecodeError> {
        take_frame(buf, MAX_PIECE_HEADER_FRAME, PieceHeader::decode_body)
    }

    fn decode_body(type_byte: u8, body: &[u8]) -> Result<PieceHeader, DecodeError> {
        if type_byte != MessageType::PieceHeader.as_byte() {
            return Err(DecodeError::ExpectedPieceHeader { type_byte });
        }
        let mut body = BodyDecoder::new(body, MessageType::PieceHeader);
        let chunk = ChunkIndex(body.field()?);
        let chunk_len: u32 = body.field()?;
        let count: u64 = body.field()?;
        validate_proof_count(count).map_err(|error| DecodeError::Field {
            message_type: MessageType::PieceHeader,
            error,
        })?;
        let mut proof = Vec::with_capacity(count as usize);
        for _ in 0..count {
            proof.push(body.array()?);
        }
        body.finish()?;
        Ok(PieceHeader {
            chunk,
            chunk_len,
            proof,
        })
    }
}

impl EncodeBody for PieceHeader {
    fn encode_body<W: Writer>(
        &self,
        encoder: &mut BodyEncoder<W>,
    ) -> Result<(), bincode::error::EncodeError> {
        put(encoder, &self.chunk.0)?;
        put(encoder, &self.chunk_len)?;
        put(encoder, &(self.proof.len() as u64))?;
        for hash in &self.proof {
            put(encoder, hash)?;
        }
        Ok(())
    }
}

/// Which part of a piece stream its sender finished (FIN) early.
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

/// A whole piece stream as received: its header, checked against the swarm,
/// and exactly `chunk_len` bytes, in the pieces they arrived in (nothing is
/// copied). The bytes are not verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPiece {
    /// The header.
    pub header: PieceHeader,
    /// The chunk's bytes (unverified), in arrival order.
    pub data: Vec<Bytes>,
}

impl ReceivedPiece {
    /// The chunk's bytes in one buffer (a copy; for tests and fuzzing).
    pub fn to_vec(&self) -> Vec<u8> {
        self.data
            .iter()
            .flat_map(|piece| piece.iter().copied())
            .collect()
    }
}

/// The receiving side of one piece stream, fed bytes as they arrive
/// (`docs/wire-protocol.md`, section 9).
///
/// Memory: at most one header frame plus the chunk's length; the chunk's
/// bytes are kept in the [`Bytes`] they were fed in, never copied. After an
/// error every call returns that error again.
#[derive(Debug)]
pub struct PieceStreamReader {
    params: SwarmParams,
    /// The header frame so far, until it is whole.
    frame: BytesMut,
    header: Option<PieceHeader>,
    body: Vec<Bytes>,
    body_len: usize,
    failed: Option<PeerError>,
}

impl PieceStreamReader {
    /// A reader for a piece stream of this swarm.
    pub fn new(params: SwarmParams) -> Self {
        PieceStreamReader {
            params,
            frame: BytesMut::new(),
            header: None,
            body: Vec::new(),
            body_len: 0,
            failed: None,
        }
    }

    /// The header, once it has arrived and passed the context checks (so the
    /// caller can check it asked for that chunk).
    pub fn header(&self) -> Option<&PieceHeader> {
        self.header.as_ref()
    }

    /// Chunk bytes received so far.
    pub fn received_len(&self) -> usize {
        self.body_len
    }

    /// Bytes of the chunk still to come (0 until the header is known).
    pub fn remaining(&self) -> usize {
        self.header.as_ref().map_or(0, |header| {
            (header.chunk_len as usize).saturating_sub(self.body_len)
        })
    }

    /// Feeds the next bytes of the stream. Bytes past the header are kept
    /// as they are.
    pub fn feed(&mut self, bytes: Bytes) -> Result<(), PeerError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.absorb(bytes);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn absorb(&mut self, mut bytes: Bytes) -> Result<(), PeerError> {
        // Only as much as the header frame needs goes into its buffer; its
        // length prefix is checked as soon as its 4 bytes are there.
        while self.header.is_none() {
            let need = match self.frame.first_chunk::<FRAME_PREFIX>() {
                None => FRAME_PREFIX - self.frame.len(),
                Some(prefix) => match complete_frame_len(&self.frame, MAX_PIECE_HEADER_FRAME)? {
                    Some(_) => 0,
                    None => FRAME_PREFIX + u32::from_le_bytes(*prefix) as usize - self.frame.len(),
                },
            };
            if need == 0 {
                let header = PieceHeader::decode(&mut self.frame)?;
                header
                    .check_context(&self.params)
                    .map_err(ProtocolViolation::from)?;
                self.frame = BytesMut::new();
                self.header = Some(header);
                break;
            }
            if bytes.is_empty() {
                return Ok(());
            }
            let take = need.min(bytes.len());
            self.frame.extend_from_slice(&bytes.split_to(take));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let Some(header) = &self.header else {
            return Ok(());
        };
        if self.body_len + bytes.len() > header.chunk_len as usize {
            return Err(ProtocolViolation::PieceTooLong {
                chunk: header.chunk,
                expected: header.chunk_len,
            }
            .into());
        }
        self.body_len += bytes.len();
        self.body.push(bytes);
        Ok(())
    }

    /// The stream ended (FIN): the piece, if it is whole. A stream its
    /// sender finished inside its header or its body is a violation.
    pub fn finish(self) -> Result<ReceivedPiece, PeerError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let Some(header) = self.header else {
            let expected = match self.frame.first_chunk::<4>() {
                Some(prefix) => 4 + u32::from_le_bytes(*prefix) as u64,
                None => 4,
            };
            return Err(ProtocolViolation::PieceFinishedShort {
                chunk: None,
                part: PiecePart::Header,
                received: self.frame.len() as u64,
                expected,
            }
            .into());
        };
        if self.body_len != header.chunk_len as usize {
            return Err(ProtocolViolation::PieceFinishedShort {
                chunk: Some(header.chunk),
                part: PiecePart::Body,
                received: self.body_len as u64,
                expected: u64::from(header.chunk_len),
            }
            .into());
        }
        Ok(ReceivedPiece {
            header,
            data: self.body,
        })
    }
}
