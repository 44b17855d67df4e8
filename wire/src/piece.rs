//! Piece streams: one unidirectional QUIC stream per served chunk, opened by
//! the peer that serves it. The stream holds one [`PieceHeader`] frame (type
//! `0x20`, or in v3 `0x21` PieceFrom for a chunk's bytes from an offset on;
//! at most [`MAX_PIECE_HEADER_FRAME`] bytes), then exactly `chunk_len`
//! raw chunk bytes (`chunk_len - from` after a PieceFrom), then FIN.
//! [`PieceStreamReader`] is the receiving side: it refuses a header that
//! does not fit the swarm or the session's version and a stream with extra
//! or missing bytes.

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
use crate::{FROM_VERSION, PROTOCOL_VERSION};

/// The frame that opens a piece stream: a PieceHeader (`0x20`) for a
/// whole chunk, a PieceFrom (`0x21`, v3) for its bytes from `from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceHeader {
    /// The chunk that follows.
    pub chunk: ChunkIndex,
    /// The first of the chunk's bytes the stream carries: 0 for the whole
    /// chunk (a PieceHeader), else 1 to `chunk_len - 1` (a PieceFrom).
    pub from: u32,
    /// The whole chunk's length in bytes (also after a PieceFrom): the
    /// chunk size, or less for the last chunk.
    pub chunk_len: u32,
    /// The chunk's Merkle audit path, leaf level first (at most 32 hashes).
    /// The verifier checks the hashes; this crate checks only their number.
    pub proof: Vec<[u8; 32]>,
}

impl PieceHeader {
    /// Checks the proof's size cap (the only context-free rule; a
    /// PieceFrom's offset is 1 or more by its type).
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_proof_count(self.proof.len() as u64)
    }

    /// Checks the header against the swarm: the chunk exists, `chunk_len` is
    /// its real length and the proof has the length of its audit path.
    pub fn check_context(&self, params: &SwarmParams) -> Result<(), ContextError> {
        let chunk = self.chunk;
        let out_of_range = |_| ContextError::ChunkOutOfRange {
            message_type: self.message_type(),
            chunk,
            chunk_count: params.chunk_count(),
        };
        let expected_len = params.chunk_len(chunk).map_err(out_of_range)?;
        if self.from > 0 && self.from >= expected_len {
            return Err(ContextError::Offset {
                message_type: self.message_type(),
                chunk,
                from: self.from,
                chunk_len: expected_len,
            });
        }
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

    /// PieceHeader for a whole chunk, PieceFrom for its bytes from an
    /// offset on.
    pub fn message_type(&self) -> MessageType {
        if self.from == 0 {
            MessageType::PieceHeader
        } else {
            MessageType::PieceFrom
        }
    }

    /// How many of the chunk's bytes follow the header on the stream.
    pub fn body_len(&self) -> u32 {
        self.chunk_len.saturating_sub(self.from)
    }

    /// Writes the header as one frame into `buf`; returns the bytes written.
    /// The chunk's bytes follow it on the stream, then FIN.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, LocalMisuse> {
        let message_type = self.message_type();
        self.validate().map_err(|error| LocalMisuse::Field {
            message_type,
            error,
        })?;
        encode_frame(self, message_type, MAX_PIECE_HEADER_FRAME, buf)
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
        let message_type = match MessageType::from_byte(type_byte) {
            Some(t @ (MessageType::PieceHeader | MessageType::PieceFrom)) => t,
            _ => return Err(DecodeError::ExpectedPieceHeader { type_byte }),
        };
        let mut body = BodyDecoder::new(body, message_type);
        let chunk = ChunkIndex(body.field()?);
        let from: u32 = if message_type == MessageType::PieceFrom {
            body.field()?
        } else {
            0
        };
        if message_type == MessageType::PieceFrom && from == 0 {
            return Err(DecodeError::Field {
                message_type,
                error: FieldError::ZeroOffset,
            });
        }
        let chunk_len: u32 = body.field()?;
        let count: u64 = body.field()?;
        validate_proof_count(count).map_err(|error| DecodeError::Field {
            message_type,
            error,
        })?;
        let mut proof = Vec::with_capacity(count as usize);
        for _ in 0..count {
            proof.push(body.array()?);
        }
        body.finish()?;
        Ok(PieceHeader {
            chunk,
            from,
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
        if self.from > 0 {
            put(encoder, &self.from)?;
        }
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
/// and exactly `chunk_len - from` bytes, in the pieces they arrived in
/// (nothing is copied). The bytes are not verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPiece {
    /// The header.
    pub header: PieceHeader,
    /// The chunk's bytes from `header.from` on (unverified), in arrival
    /// order.
    pub data: Vec<Bytes>,
}

impl ReceivedPiece {
    /// The bytes the stream carried in one buffer (a copy; for tests and
    /// fuzzing).
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
    /// The session's protocol version: a PieceFrom is refused before v3.
    version: u16,
    /// The header frame so far, until it is whole.
    frame: BytesMut,
    header: Option<PieceHeader>,
    body: Vec<Bytes>,
    body_len: usize,
    failed: Option<PeerError>,
}

impl PieceStreamReader {
    /// A reader for a piece stream of this swarm, in a session of the
    /// latest version.
    pub fn new(params: SwarmParams) -> Self {
        PieceStreamReader::for_version(params, PROTOCOL_VERSION)
    }

    /// A reader for a piece stream of this swarm, in a session that
    /// negotiated `version`.
    pub fn for_version(params: SwarmParams, version: u16) -> Self {
        PieceStreamReader {
            params,
            version,
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

    /// Bytes of the stream's body still to come (0 until the header is
    /// known).
    pub fn remaining(&self) -> usize {
        self.header.as_ref().map_or(0, |header| {
            (header.body_len() as usize).saturating_sub(self.body_len)
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
                if header.from > 0 && self.version < FROM_VERSION {
                    return Err(ProtocolViolation::NotInVersion {
                        found: MessageType::PieceFrom,
                        version: self.version,
                    }
                    .into());
                }
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
        if self.body_len + bytes.len() > header.body_len() as usize {
            return Err(ProtocolViolation::PieceTooLong {
                chunk: header.chunk,
                expected: header.body_len(),
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
        if self.body_len != header.body_len() as usize {
            return Err(ProtocolViolation::PieceFinishedShort {
                chunk: Some(header.chunk),
                part: PiecePart::Body,
                received: self.body_len as u64,
                expected: u64::from(header.body_len()),
            }
            .into());
        }
        Ok(ReceivedPiece {
            header,
            data: self.body,
        })
    }
}
