//! [`Message`]: the control-stream messages, their bodies and their codec.
//!
//! A body is the bincode 2 encoding (fixed options, see the spec) of the
//! message's fields in the order they are declared here. Sequences are a
//! `u64` count followed by their elements; reasons are a `u32` code.

use std::net::SocketAddr;

use bincode::enc::write::Writer;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::bitfield::HaveBitfield;
use crate::codec::{BodyDecoder, BodyEncoder, EncodeBody, encode_frame, frame_len, put};
use crate::error::{DecodeError, FieldError, LocalMisuse};
use crate::frame::{MAX_CONTROL_FRAME, take_frame};
use crate::peer_id::PeerId;
use crate::types::{
    ChunkIndex, GoodbyeReason, Hello, HelloRejectReason, MessageType, PeerEntry, PeerFlags,
    RejectReason, RendezvousFailedReason, validate_agent, validate_chunk_hashes,
    validate_connect_count, validate_lan_addr, validate_lan_count, validate_listed_chunks,
    validate_listed_length, validate_manifest_len, validate_model_id, validate_observed,
    validate_peer_count, validate_reject_detail,
};

/// A message of the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `0x01`: the first message in each direction.
    Hello(Hello),
    /// `0x02`: the listener refuses the dialer's Hello or ManifestRequest;
    /// the session ends.
    HelloReject {
        /// Why.
        reason: HelloRejectReason,
        /// Human-readable detail, at most 256 bytes, no control characters.
        detail: String,
        /// Other peers of the swarm the refused dialer may try, at most 32.
        peers: Vec<PeerEntry>,
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
    /// `0x13` (v3): please send `chunk`'s bytes from offset `from` to its
    /// end on a piece stream (the requester holds the bytes before it).
    RequestFrom {
        /// The chunk.
        chunk: ChunkIndex,
        /// The first byte wanted: at least 1, below the chunk's length.
        from: u32,
    },
    /// `0x06`: the Request or RequestFrom for `chunk` is withdrawn.
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
    /// `0x0B`: "introduce me to `peer`", a peer the sender learned from
    /// the receiver's Peers.
    Rendezvous {
        /// The peer to be introduced to.
        peer: PeerId,
    },
    /// `0x0C`: "`peer` is about to dial you from these addresses; dial it
    /// at them now". The introducer sends one to each side.
    Connect {
        /// The peer that dials the receiver.
        peer: PeerId,
        /// Where it dials from and listens: 1 to 4 addresses.
        addrs: Vec<SocketAddr>,
    },
    /// `0x0D`: the introducer will not introduce the sender to `peer`.
    RendezvousFailed {
        /// The peer the Rendezvous named.
        peer: PeerId,
        /// Why not.
        reason: RendezvousFailedReason,
    },
    /// `0x0E`: the dialer's first message of a manifest query, instead of
    /// a Hello: "send me the manifest whose SHA-256 is this".
    ManifestRequest {
        /// SHA-256 of the manifest file's bytes.
        manifest_sha256: [u8; 32],
    },
    /// `0x0F`: the listener's answer to a ManifestRequest: the manifest
    /// file's bytes, unchecked (the receiver hashes them).
    Manifest {
        /// At most [`crate::MAX_MANIFEST_BYTES`] bytes.
        bytes: Vec<u8>,
    },
    /// `0x10`: the dialer's first and only message of a chunk list query:
    /// "send me the chunk list of the manifest whose SHA-256 is this".
    ChunkListRequest {
        /// SHA-256 of the manifest file's bytes.
        manifest_sha256: [u8; 32],
    },
    /// `0x11`: part of the listener's answer to a ChunkListRequest: the
    /// chunk hashes `H[first..first + hashes.len()]` of a list of `total`,
    /// unchecked (the receiver checks the whole list against the
    /// manifest's Merkle root).
    ChunkHashes {
        /// The list's length: the manifest's chunk count.
        total: u32,
        /// The chunk of the first hash.
        first: u32,
        /// 1 to [`crate::MAX_CHUNK_HASHES_PER_MESSAGE`] hashes, in chunk
        /// order.
        hashes: Vec<[u8; 32]>,
    },
    /// `0x12`: part of the listener's answer to a ChunkListRequest for a
    /// manifest whose chunks are listed (`slm-parts-merkle-v0`): chunk
    /// `first` on, each chunk's hash and length, unchecked (the receiver
    /// checks the whole list against the manifest's `chunk-list-sha256`
    /// and Merkle root).
    ListedChunks {
        /// The list's length: the manifest's chunk count.
        total: u32,
        /// The chunk of the first entry.
        first: u32,
        /// 1 to [`crate::MAX_LISTED_CHUNKS_PER_MESSAGE`] chunks in chunk
        /// order: hash and length in bytes (1 or more).
        chunks: Vec<([u8; 32], u32)>,
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
            Message::Rendezvous { .. } => MessageType::Rendezvous,
            Message::Connect { .. } => MessageType::Connect,
            Message::RendezvousFailed { .. } => MessageType::RendezvousFailed,
            Message::ManifestRequest { .. } => MessageType::ManifestRequest,
            Message::Manifest { .. } => MessageType::Manifest,
            Message::ChunkListRequest { .. } => MessageType::ChunkListRequest,
            Message::ChunkHashes { .. } => MessageType::ChunkHashes,
            Message::ListedChunks { .. } => MessageType::ListedChunks,
            Message::RequestFrom { .. } => MessageType::RequestFrom,
        }
    }

    /// The chunk a Have, Request, RequestFrom, Cancel or Reject names.
    pub fn chunk(&self) -> Option<ChunkIndex> {
        match self {
            Message::Have { chunk }
            | Message::Request { chunk }
            | Message::RequestFrom { chunk, .. }
            | Message::Cancel { chunk }
            | Message::Reject { chunk, .. } => Some(*chunk),
            _ => None,
        }
    }

    /// Checks the rules a message must meet whatever the swarm (string
    /// lengths and characters, counts, address rules), in wire order.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Message::Hello(hello) => hello.validate(),
            Message::HelloReject { detail, peers, .. } => {
                validate_reject_detail(detail)?;
                validate_peer_count(peers.len() as u64)
            }
            Message::Peers { entries } => validate_peer_count(entries.len() as u64),
            Message::Connect { addrs, .. } => validate_connect_count(addrs.len() as u64),
            Message::Manifest { bytes } => validate_manifest_len(bytes.len() as u64),
            Message::RequestFrom { from: 0, .. } => Err(FieldError::ZeroOffset),
            Message::ChunkHashes {
                total,
                first,
                hashes,
            } => validate_chunk_hashes(*total, *first, hashes.len() as u64),
            Message::ListedChunks {
                total,
                first,
                chunks,
            } => {
                validate_listed_chunks(*total, *first, chunks.len() as u64)?;
                (chunks.iter().zip(*first..))
                    .try_for_each(|((_, len), chunk)| validate_listed_length(chunk, *len))
            }
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
            Some(MessageType::PieceHeader | MessageType::PieceFrom) => {
                return Err(DecodeError::PieceHeaderOnControlStream);
            }
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
                let peers = decode_peer_entries(&mut body)?;
                Message::HelloReject {
                    reason,
                    detail,
                    peers,
                }
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
            MessageType::RequestFrom => {
                let chunk = ChunkIndex(body.field()?);
                let from: u32 = body.field()?;
                if from == 0 {
                    return Err(field_error(message_type, FieldError::ZeroOffset));
                }
                Message::RequestFrom { chunk, from }
            }
            MessageType::Reject => Message::Reject {
                chunk: ChunkIndex(body.field()?),
                reason: reason(&mut body, RejectReason::from_code)?,
            },
            MessageType::Peers => Message::Peers {
                entries: decode_peer_entries(&mut body)?,
            },
            MessageType::KeepAlive => Message::KeepAlive,
            MessageType::Goodbye => Message::Goodbye {
                reason: reason(&mut body, GoodbyeReason::from_code)?,
            },
            MessageType::Rendezvous => Message::Rendezvous {
                peer: PeerId(body.array()?),
            },
            MessageType::Connect => {
                let peer = PeerId(body.array()?);
                let count: u64 = body.field()?;
                validate_connect_count(count).map_err(|e| field_error(message_type, e))?;
                let mut addrs = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    addrs.push(body.field()?);
                }
                Message::Connect { peer, addrs }
            }
            MessageType::RendezvousFailed => Message::RendezvousFailed {
                peer: PeerId(body.array()?),
                reason: reason(&mut body, RendezvousFailedReason::from_code)?,
            },
            MessageType::ManifestRequest => Message::ManifestRequest {
                manifest_sha256: body.array()?,
            },
            MessageType::Manifest => {
                let len: u64 = body.field()?;
                validate_manifest_len(len).map_err(|e| field_error(message_type, e))?;
                Message::Manifest {
                    bytes: body.bytes(len as usize)?,
                }
            }
            MessageType::ChunkListRequest => Message::ChunkListRequest {
                manifest_sha256: body.array()?,
            },
            MessageType::ChunkHashes => {
                let total: u32 = body.field()?;
                let first: u32 = body.field()?;
                let count: u64 = body.field()?;
                validate_chunk_hashes(total, first, count)
                    .map_err(|e| field_error(message_type, e))?;
                let mut hashes = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    hashes.push(body.array()?);
                }
                Message::ChunkHashes {
                    total,
                    first,
                    hashes,
                }
            }
            MessageType::ListedChunks => {
                let total: u32 = body.field()?;
                let first: u32 = body.field()?;
                let count: u64 = body.field()?;
                validate_listed_chunks(total, first, count)
                    .map_err(|e| field_error(message_type, e))?;
                let mut chunks = Vec::with_capacity(count as usize);
                // validate_listed_chunks: first + count <= total, a u32.
                for chunk in first..first + count as u32 {
                    let hash = body.array()?;
                    let len: u32 = body.field()?;
                    validate_listed_length(chunk, len).map_err(|e| field_error(message_type, e))?;
                    chunks.push((hash, len));
                }
                Message::ListedChunks {
                    total,
                    first,
                    chunks,
                }
            }
            MessageType::PieceHeader | MessageType::PieceFrom => {
                return Err(DecodeError::PieceHeaderOnControlStream);
            }
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

/// A sequence of peer entries (Peers, HelloReject): the count is checked
/// before any entry is read, each entry's flags as it is read.
fn decode_peer_entries(body: &mut BodyDecoder<'_>) -> Result<Vec<PeerEntry>, DecodeError> {
    let message_type = body.message_type();
    let count: u64 = body.field()?;
    validate_peer_count(count).map_err(|e| field_error(message_type, e))?;
    let mut entries = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let id = PeerId(body.array()?);
        let addr = body.field()?;
        let bits: u8 = body.field()?;
        let flags = PeerFlags::from_bits(bits).ok_or(field_error(
            message_type,
            FieldError::ReservedPeerFlags { index, bits },
        ))?;
        entries.push(PeerEntry { id, addr, flags });
    }
    Ok(entries)
}

/// A Hello, each rule checked as soon as its field is read: the lan count
/// before any address, each address as it is read.
fn decode_hello(body: &mut BodyDecoder<'_>) -> Result<Hello, DecodeError> {
    let invalid = |e| field_error(MessageType::Hello, e);
    let protocol_version = body.field()?;
    let model_id: String = body.field()?;
    validate_model_id(&model_id).map_err(invalid)?;
    let merkle_root = body.array()?;
    let artifact_bytes = body.field()?;
    let chunk_size = body.field()?;
    let chunk_count = body.field()?;
    let serving = body.field()?;
    let listen = body.field()?;
    let agent: String = body.field()?;
    validate_agent(&agent).map_err(invalid)?;
    let observed = body.field()?;
    validate_observed(observed).map_err(invalid)?;
    let count: u64 = body.field()?;
    validate_lan_count(count).map_err(invalid)?;
    let mut lan = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let addr = body.field()?;
        validate_lan_addr(index, addr).map_err(invalid)?;
        lan.push(addr);
    }
    Ok(Hello {
        protocol_version,
        model_id,
        merkle_root,
        artifact_bytes,
        chunk_size,
        chunk_count,
        serving,
        listen,
        agent,
        observed,
        lan,
    })
}

fn put_peer_entries<W: Writer>(
    encoder: &mut BodyEncoder<W>,
    entries: &[PeerEntry],
) -> Result<(), bincode::error::EncodeError> {
    put(encoder, &(entries.len() as u64))?;
    for entry in entries {
        put(encoder, entry.id.as_bytes())?;
        put(encoder, &entry.addr)?;
        put(encoder, &entry.flags.bits())?;
    }
    Ok(())
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
                put(encoder, hello.agent.as_str())?;
                put(encoder, &hello.observed)?;
                put(encoder, hello.lan.as_slice())
            }
            Message::HelloReject {
                reason,
                detail,
                peers,
            } => {
                put(encoder, &reason.code())?;
                put(encoder, detail.as_str())?;
                put_peer_entries(encoder, peers)
            }
            Message::HaveBitfield(bitfield) => {
                put(encoder, &bitfield.chunk_count())?;
                put(encoder, bitfield.as_bytes())
            }
            Message::Have { chunk } | Message::Request { chunk } | Message::Cancel { chunk } => {
                put(encoder, &chunk.0)
            }
            Message::RequestFrom { chunk, from } => {
                put(encoder, &chunk.0)?;
                put(encoder, from)
            }
            Message::Reject { chunk, reason } => {
                put(encoder, &chunk.0)?;
                put(encoder, &reason.code())
            }
            Message::Peers { entries } => put_peer_entries(encoder, entries),
            Message::KeepAlive => Ok(()),
            Message::Goodbye { reason } => put(encoder, &reason.code()),
            Message::Rendezvous { peer } => put(encoder, peer.as_bytes()),
            Message::Connect { peer, addrs } => {
                put(encoder, peer.as_bytes())?;
                put(encoder, addrs.as_slice())
            }
            Message::RendezvousFailed { peer, reason } => {
                put(encoder, peer.as_bytes())?;
                put(encoder, &reason.code())
            }
            Message::ManifestRequest { manifest_sha256 } => put(encoder, manifest_sha256),
            Message::Manifest { bytes } => put(encoder, bytes.as_slice()),
            Message::ChunkListRequest { manifest_sha256 } => put(encoder, manifest_sha256),
            Message::ChunkHashes {
                total,
                first,
                hashes,
            } => {
                put(encoder, total)?;
                put(encoder, first)?;
                put(encoder, &(hashes.len() as u64))?;
                for hash in hashes {
                    put(encoder, hash)?;
                }
                Ok(())
            }
            Message::ListedChunks {
                total,
                first,
                chunks,
            } => {
                put(encoder, total)?;
                put(encoder, first)?;
                put(encoder, &(chunks.len() as u64))?;
                for (hash, len) in chunks {
                    put(encoder, hash)?;
                    put(encoder, len)?;
                }
                Ok(())
            }
        }
    }
}
