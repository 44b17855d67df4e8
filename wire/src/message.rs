//! [`Message`]: the control-stream messages, their bodies and their codec.
//!
//! A body is the bincode 2 encoding (fixed options, see the spec) of the
//! message's fields in the order they are declared here. Sequences are a
//! `u64` count followed by their elements; reasons are a `u32` code.

use bincode::enc::write::Writer;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::bitfield::HaveBitfield;
use crate::codec::{BodyDecoder, BodyEncoder, EncodeBody, encode_frame, frame_len, put};
use crate::error::{DecodeError, FieldError, LocalMisuse};
use crate::frame::{MAX_CONTROL_FRAME, take_frame};
use crate::peer_id::PeerId;
use crate::types::{
    ChunkIndex, GoodbyeReason, Hello, HelloRejectReason, MessageType, PeerEntry, RejectReason,
    validate_peer_count, validate_reject_detail,
};

/// A message of the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `0x01`: the first message in each direction.
    Hello(Hello),
    /// `0x02`: the listener refuses the dialer's Hello; the session ends.
    HelloReject {
        /// Why.
        reason: HelloRejectReason,
        /// Human-readable detail, at most 256 bytes, no control characters.
        detail: String,
    },
    /// `0x03`: every chunk the sender has; its first message after Hello.
    HaveBitfield(HaveBitfield),
    /// `0x04`: the sender now has (and has verified) `chunk`.
    Have {
        /// The chunk.
        chunk: ChunkIndex,
    },
    /// `0x05`: please send the whole of `chunk` on a piece stream.
    Request {
        /// The chunk.
        chunk: ChunkIndex,
    },
    /// `0x06`: the Request for `chunk` is withdrawn.
    Cancel {
        /// The chunk.
        chunk: ChunkIndex,
    },
    /// `0x07`: the Request for `chunk` will not be served.
    Reject {
        /// The chunk.
        chunk: ChunkIndex,
        /// Why.
        reason: RejectReason,
    },
    /// `0x08`: other peers of this swarm (peer exchange), at most 32.
    Peers {
        /// The peers.
        entries: Vec<PeerEntry>,
    },
    /// `0x09`: nothing; keeps an idle session alive.
    KeepAlive,
    /// `0x0A`: the sender ends the session; nothing follows it.
    Goodbye {
        /// Why.
        reason: GoodbyeReason,
    },
}

impl Message {
    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::HelloReject { .. } => MessageType::HelloReject,
            Message::HaveBitfield(_) => MessageType::HaveBitfield,
            Message::Have { .. } => MessageType::Have,
            Message::Request { .. } => MessageType::Request,
            Message::Cancel { .. } => MessageType::Cancel,
            Message::Reject { .. } => MessageType::Reject,
            Message::Peers { .. } => MessageType::Peers,
            Message::KeepAlive => MessageType::KeepAlive,
            Message::Goodbye { .. } => MessageType::Goodbye,
        }
    }

    /// The chunk a Have, Request, Cancel or Reject names.
    pub fn chunk(&self) -> Option<ChunkIndex> {
        match self {
            Message::Have { chunk }
            | Message::Request { chunk }
            | Message::Cancel { chunk }
            | Message::Reject { chunk, .. } => Some(*chunk),
            _ => None,
        }
    }

    /// Checks the rules a message must meet whatever the swarm (string
    /// lengths and characters, entry counts).
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Message::Hello(hello) => hello.validate(),
            Message::HelloReject { detail, .. } => validate_reject_detail(detail),
            Message::Peers { entries } => validate_peer_count(entries.len() as u64),
            _ => Ok(()),
        }
    }

    /// Writes the message as one frame into `buf` and returns the number of
    /// bytes written. Nothing is written if the message breaks a field rule,
    /// its frame would exceed [`MAX_CONTROL_FRAME`], or `buf` has no room.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, LocalMisuse> {
        let message_type = self.message_type();
        self.validate().map_err(|error| LocalMisuse::Field {
            message_type,
            error,
        })?;
        encode_frame(self, message_type, MAX_CONTROL_FRAME, buf)
    }

    /// The message as one frame in a fresh buffer.
    pub fn to_frame(&self) -> Result<Bytes, LocalMisuse> {
        let mut buf = BytesMut::with_capacity(self.frame_len() + 4);
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Length of the message's frame (type byte and body, not the prefix).
    pub fn frame_len(&self) -> usize {
        frame_len(self)
    }

    /// Reads one whole frame from `buf` and decodes it. Bytes after the
    /// frame are left in `buf`. On error the stream is unusable; how much of
    /// `buf` was consumed is then unspecified.
    pub fn decode(buf: &mut impl Buf) -> Result<Message, DecodeError> {
        take_frame(buf, MAX_CONTROL_FRAME, Message::decode_body)
    }

    /// Decodes a body of the given type.
    pub(crate) fn decode_body(type_byte: u8, body: &[u8]) -> Result<Message, DecodeError> {
        let message_type = match MessageType::from_byte(type_byte) {
            Some(MessageType::PieceHeader) => return Err(DecodeError::PieceHeaderOnControlStream),
            Some(message_type) => message_type,
            None => return Err(DecodeError::UnknownType { type_byte }),
        };
        let mut body = BodyDecoder::new(body, message_type);
        let message = match message_type {
            MessageType::Hello => Message::Hello(decode_hello(&mut body)?),
            MessageType::HelloReject => {
                let reason = reason(&mut body, HelloRejectReason::from_code)?;
                let detail: String = body.field()?;
                validate_reject_detail(&detail).map_err(|e| field_error(message_type, e))?;
                Message::HelloReject { reason, detail }
            }
            MessageType::HaveBitfield => {
                let chunk_count: u32 = body.field()?;
                let bytes: Vec<u8> = body.field()?;
                let bitfield = HaveBitfield::from_bytes(bytes, chunk_count)
                    .map_err(|e| field_error(message_type, e))?;
                Message::HaveBitfield(bitfield)
            }
            MessageType::Have => Message::Have {
                chunk: ChunkIndex(body.field()?),
            },
            MessageType::Request => Message::Request {
                chunk: ChunkIndex(body.field()?),
            },
            MessageType::Cancel => Message::Cancel {
                chunk: ChunkIndex(body.field()?),
            },
            MessageType::Reject => Message::Reject {
                chunk: ChunkIndex(body.field()?),
                reason: reason(&mut body, RejectReason::from_code)?,
            },
            MessageType::Peers => {
                let count: u64 = body.field()?;
                validate_peer_count(count).map_err(|e| field_error(message_type, e))?;
                let mut entries = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let id = PeerId(body.array()?);
                    let addr = body.field()?;
                    entries.push(PeerEntry { id, addr });
                }
                Message::Peers { entries }
            }
            MessageType::KeepAlive => Message::KeepAlive,
            MessageType::Goodbye => Message::Goodbye {
                reason: reason(&mut body, GoodbyeReason::from_code)?,
            },
            MessageType::PieceHeader => return Err(DecodeError::PieceHeaderOnControlStream),
        };
        body.finish()?;
        Ok(message)
    }
}

fn field_error(message_type: MessageType, error: FieldError) -> DecodeError {
    DecodeError::Field {
        message_type,
        error,
    }
}

fn reason<R>(
    body: &mut BodyDecoder<'_>,
    from_code: fn(u32) -> Option<R>,
) -> Result<R, DecodeError> {
    let code: u32 = body.field()?;
    from_code(code).ok_or(DecodeError::UnknownReason {
        message_type: body.message_type(),
        code,
    })
}

fn decode_hello(body: &mut BodyDecoder<'_>) -> Result<Hello, DecodeError> {
    let hello = Hello {
        protocol_version: body.field()?,
        model_id: body.field()?,
        merkle_root: body.array()?,
        artifact_bytes: body.field()?,
        chunk_size: body.field()?,
        chunk_count: body.field()?,
        serving: body.field()?,
        listen: body.field()?,
        agent: body.field()?,
    };
    hello
        .validate()
        .map_err(|e| field_error(MessageType::Hello, e))?;
    Ok(hello)
}

impl EncodeBody for Message {
    fn encode_body<W: Writer>(
        &self,
        encoder: &mut BodyEncoder<W>,
    ) -> Result<(), bincode::error::EncodeError> {
        match self {
            Message::Hello(hello) => {
                put(encoder, &hello.protocol_version)?;
                put(encoder, hello.model_id.as_str())?;
                put(encoder, &hello.merkle_root)?;
                put(encoder, &hello.artifact_bytes)?;
                put(encoder, &hello.chunk_size)?;
                put(encoder, &hello.chunk_count)?;
                put(encoder, &hello.serving)?;
                put(encoder, &hello.listen)?;
                put(encoder, hello.agent.as_str())
            }
            Message::HelloReject { reason, detail } => {
                put(encoder, &reason.code())?;
                put(encoder, detail.as_str())
            }
            Message::HaveBitfield(bitfield) => {
                put(encoder, &bitfield.chunk_count())?;
                put(encoder, bitfield.as_bytes())
            }
            Message::Have { chunk } | Message::Request { chunk } | Message::Cancel { chunk } => {
                put(encoder, &chunk.0)
            }
            Message::Reject { chunk, reason } => {
                put(encoder, &chunk.0)?;
                put(encoder, &reason.code())
            }
            Message::Peers { entries } => {
                put(encoder, &(entries.len() as u64))?;
                for entry in entries {
                    put(encoder, entry.id.as_bytes())?;
                    put(encoder, &entry.addr)?;
                }
                Ok(())
            }
            Message::KeepAlive => Ok(()),
            Message::Goodbye { reason } => put(encoder, &reason.code()),
        }
    }
}
