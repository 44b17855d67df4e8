//! Errors by blame.
//!
//! - [`DecodeError`]: the peer sent malformed bytes (frame over its cap,
//!   unknown type, bincode failure, trailing bytes, a field breaking a
//!   context-free rule).
//! - [`ProtocolViolation`]: the peer sent a well-formed message that is illegal
//!   here (wrong state, index out of range, wrong bitfield or proof length,
//!   another swarm).
//! - [`LocalMisuse`]: our own code tried to send something illegal.
//!
//! [`FieldError`] (rules a message breaks on its own), [`ContextError`] (rules
//! relative to the swarm's [`crate::SwarmParams`]) and [`SwarmMismatch`] (a
//! Hello for another swarm) are shared by the blame types, which say who is
//! at fault. [`PeerError`] is either of the peer's faults.

use std::net::SocketAddr;

use crate::control::{Phase, Role};
use crate::params::MAX_CHUNK_COUNT;
use crate::piece::PiecePart;
use crate::types::{
    ChunkIndex, GoodbyeReason, HelloRejectReason, MAX_AGENT_LEN, MAX_CHUNK_HASHES_PER_MESSAGE,
    MAX_CONNECT_ADDRS, MAX_LAN_ADDRS, MAX_LISTED_CHUNKS_PER_MESSAGE, MAX_MANIFEST_BYTES,
    MAX_MODEL_ID_LEN, MAX_PEERS_PER_MESSAGE, MAX_PROOF_HASHES, MAX_REJECT_DETAIL_LEN, MessageType,
    hex,
};

/// A field breaks a rule that holds whatever the swarm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A RequestFrom or PieceFrom from byte 0: the whole chunk is a
    /// Request, or a PieceHeader.
    #[error(
        "an offset of 0 names the whole chunk; RequestFrom and PieceFrom start at byte 1 or later"
    )]
    ZeroOffset,
    /// Model id empty or too long.
    #[error("model id is {len} bytes long; it must be 1 to {MAX_MODEL_ID_LEN}")]
    ModelIdLength {
        /// Its length in bytes.
        len: usize,
    },
    /// Model id byte outside `A-Z a-z 0-9 . _ -`.
    #[error("model id has byte {byte:#04x} at position {position}; allowed are A-Z a-z 0-9 . _ -")]
    ModelIdCharacter {
        /// Zero-based byte position.
        position: usize,
        /// The offending byte.
        byte: u8,
    },
    /// Agent too long.
    #[error("agent is {len} bytes long; the limit is {MAX_AGENT_LEN}")]
    AgentTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Agent byte outside printable ASCII.
    #[error(
        "agent has byte {byte:#04x} at position {position}; only printable ASCII (0x20..=0x7e) is allowed"
    )]
    AgentCharacter {
        /// Zero-based byte position.
        position: usize,
        /// The offending byte.
        byte: u8,
    },
    /// HelloReject detail too long.
    #[error("reject detail is {len} bytes long; the limit is {MAX_REJECT_DETAIL_LEN}")]
    DetailTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// HelloReject detail with a control character.
    #[error("reject detail has control character {found:?} at byte {position}")]
    DetailCharacter {
        /// Zero-based byte position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// Peers or HelloReject with too many peer entries.
    #[error("{count} peer entries; the limit is {MAX_PEERS_PER_MESSAGE}")]
    TooManyPeers {
        /// Declared number of entries.
        count: u64,
    },
    /// A peer entry with a reserved flag bit set.
    #[error(
        "peer entry {index} has flags {bits:#04x}; only bits 0 (LAN) and 1 (VIA_RENDEZVOUS) are defined"
    )]
    ReservedPeerFlags {
        /// Zero-based position of the entry.
        index: usize,
        /// The flags byte as received.
        bits: u8,
    },
    /// A Hello's observed address written as IPv4-mapped IPv6.
    #[error("observed address {addr} is IPv4-mapped IPv6; an IPv4 address is written as IPv4")]
    ObservedMapped {
        /// The address as received.
        addr: SocketAddr,
    },
    /// A Hello with too many local-network addresses.
    #[error("Hello lists {count} LAN addresses; the limit is {MAX_LAN_ADDRS}")]
    TooManyLanAddrs {
        /// Declared number of addresses.
        count: u64,
    },
    /// A Hello's LAN address that is not on a local network or has port 0.
    #[error(
        "lan[{index}] is {addr}: not a private IPv4, IPv6 unique-local or link-local address with a non-zero port"
    )]
    NotLanAddr {
        /// Zero-based position in the list.
        index: usize,
        /// The address.
        addr: SocketAddr,
    },
    /// A Connect with no address or too many.
    #[error("Connect carries {count} addresses; it must carry 1 to {MAX_CONNECT_ADDRS}")]
    ConnectAddrCount {
        /// Declared number of addresses.
        count: u64,
    },
    /// A Manifest over its cap.
    #[error("manifest is {len} bytes long; the limit is {MAX_MANIFEST_BYTES}")]
    ManifestTooLong {
        /// Declared length in bytes.
        len: u64,
    },
    /// A ChunkHashes whose list total is 0 or over the chunk count cap.
    #[error("a chunk list of {total} chunks; it must have 1 to {MAX_CHUNK_COUNT}")]
    ChunkListTotal {
        /// The declared total.
        total: u32,
    },
    /// A ChunkHashes with no hash or too many.
    #[error(
        "ChunkHashes carries {count} hashes; it must carry 1 to {MAX_CHUNK_HASHES_PER_MESSAGE}"
    )]
    ChunkHashesCount {
        /// Declared number of hashes.
        count: u64,
    },
    /// A ListedChunks with no chunk or too many.
    #[error(
        "ListedChunks carries {count} chunks; it must carry 1 to {MAX_LISTED_CHUNKS_PER_MESSAGE}"
    )]
    ListedChunksCount {
        /// Declared number of chunks.
        count: u64,
    },
    /// A ListedChunks entry of length 0.
    #[error("chunk {chunk} of a listed chunk list has length 0; a chunk has 1 byte or more")]
    ListedChunkEmpty {
        /// The chunk.
        chunk: u32,
    },
    /// A ChunkHashes that runs past the end of its list.
    #[error("{count} hashes from chunk {first} run past the list's {total} chunks")]
    ChunkHashesPastTotal {
        /// Its first chunk.
        first: u32,
        /// Its number of hashes.
        count: u64,
        /// The list's total.
        total: u32,
    },
    /// Piece header with too many proof hashes.
    #[error("piece proof has {count} hashes; the limit is {MAX_PROOF_HASHES}")]
    ProofTooLong {
        /// Declared number of hashes.
        count: u64,
    },
    /// Bitfield byte count does not match its chunk count.
    #[error("a bitfield of {chunk_count} chunks has {expected} bytes, this one has {found}")]
    BitfieldLength {
        /// Declared chunk count.
        chunk_count: u32,
        /// `ceil(chunk_count / 8)`.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bits past the last chunk are set.
    #[error(
        "a bitfield of {chunk_count} chunks must leave the spare bits of its last byte clear; that byte is {last_byte:#04x}"
    )]
    BitfieldSpareBits {
        /// Declared chunk count.
        chunk_count: u32,
        /// The last byte as received.
        last_byte: u8,
    },
}

/// A message breaks a rule relative to the swarm's chunk geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// A chunk index at or past the chunk count.
    #[error("{message_type} names {chunk}, but the swarm has {chunk_count} chunks")]
    ChunkOutOfRange {
        /// The message that carried it.
        message_type: MessageType,
        /// The index.
        chunk: ChunkIndex,
        /// The swarm's chunk count.
        chunk_count: u32,
    },
    /// A bitfield for another chunk count.
    #[error("bitfield covers {found} chunks, but the swarm has {expected}")]
    BitfieldChunkCount {
        /// The bitfield's chunk count.
        found: u32,
        /// The swarm's chunk count.
        expected: u32,
    },
    /// A piece header whose `chunk_len` is not the chunk's real length.
    #[error("piece header says {chunk} is {found} bytes long; it is {expected}")]
    PieceLength {
        /// The chunk.
        chunk: ChunkIndex,
        /// Length in the header.
        found: u32,
        /// Real length.
        expected: u32,
    },
    /// A RequestFrom or PieceFrom whose offset is not inside the chunk:
    /// it must be at least 1 and below the chunk's length.
    #[error(
        "{message_type} asks for {chunk} from byte {from}; it is {chunk_len} bytes long, so the offset must be 1 to {last}",
        last = .chunk_len.saturating_sub(1)
    )]
    Offset {
        /// The message.
        message_type: MessageType,
        /// The chunk.
        chunk: ChunkIndex,
        /// The offset it names.
        from: u32,
        /// The chunk's real length.
        chunk_len: u32,
    },
    /// A piece header whose proof is not the leaf's audit path length.
    #[error("piece header for {chunk} carries {found} proof hashes; its audit path has {expected}")]
    ProofLength {
        /// The chunk.
        chunk: ChunkIndex,
        /// Hashes in the header.
        found: usize,
        /// Audit path length of that leaf.
        expected: u32,
    },
}

/// A Hello that describes another swarm (or another protocol version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmMismatch {
    /// The version in the Hello is not the ALPN-negotiated one.
    #[error("Hello says protocol version {found}; the connection negotiated {expected}")]
    ProtocolVersion {
        /// In the Hello.
        found: u16,
        /// Ours.
        expected: u16,
    },
    /// Another model.
    #[error("Hello is for model {found:?}; this swarm is {expected:?}")]
    ModelId {
        /// In the Hello.
        found: String,
        /// Ours.
        expected: String,
    },
    /// Another Merkle root.
    #[error("Hello has Merkle root {}; this swarm's is {}", hex(.found), hex(.expected))]
    MerkleRoot {
        /// In the Hello.
        found: [u8; 32],
        /// Ours.
        expected: [u8; 32],
    },
    /// Another artifact size.
    #[error("Hello says the artifact is {found} bytes; this swarm's is {expected}")]
    ArtifactBytes {
        /// In the Hello.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// Another chunk size.
    #[error("Hello says chunks are {found} bytes; this swarm's are {expected}")]
    ChunkSize {
        /// In the Hello.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// Another chunk count.
    #[error("Hello says there are {found} chunks; this swarm has {expected}")]
    ChunkCount {
        /// In the Hello.
        found: u32,
        /// Ours.
        expected: u32,
    },
}

impl SwarmMismatch {
    /// The HelloReject reason a listener answers this mismatch with.
    pub fn hello_reject_reason(&self) -> HelloRejectReason {
        match self {
            SwarmMismatch::ProtocolVersion { .. } => HelloRejectReason::UnsupportedVersion,
            _ => HelloRejectReason::WrongSwarm,
        }
    }
}

/// Malformed bytes from the peer. The stream they came from is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length prefix of 0: every frame has at least its type byte.
    #[error("frame length is 0; a frame holds at least its type byte")]
    EmptyFrame,
    /// A length prefix over the stream's cap (rejected before buffering).
    #[error("frame length {length} exceeds this stream's limit of {max} bytes")]
    FrameTooLong {
        /// The length prefix.
        length: u32,
        /// The cap.
        max: u32,
    },
    /// The bytes end inside a frame (at the end of a stream, or given to a
    /// one-shot decode).
    #[error("the bytes end inside a frame: {needed} bytes needed, {available} present")]
    Incomplete {
        /// Bytes the frame needs (prefix included).
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// A type byte that is no message of protocol v2.
    #[error("unknown frame type {type_byte:#04x}")]
    UnknownType {
        /// The type byte.
        type_byte: u8,
    },
    /// A PieceHeader on the control stream.
    #[error(
        "frame types 0x20 (PieceHeader) and 0x21 (PieceFrom) belong at the start of a piece stream, not on the control stream"
    )]
    PieceHeaderOnControlStream,
    /// A piece stream that does not start with a PieceHeader.
    #[error(
        "a piece stream starts with a PieceHeader (0x20) or PieceFrom (0x21) frame; this one starts with type {type_byte:#04x}"
    )]
    ExpectedPieceHeader {
        /// The type byte found.
        type_byte: u8,
    },
    /// The body is not the bincode encoding of the message's fields.
    #[error("{message_type} body is malformed: {detail}")]
    Body {
        /// The message.
        message_type: MessageType,
        /// What bincode reported.
        detail: String,
    },
    /// A reason code that is not defined.
    #[error("{message_type} carries reason code {code}, which is not defined")]
    UnknownReason {
        /// The message.
        message_type: MessageType,
        /// The code.
        code: u32,
    },
    /// Bytes left over after the last field.
    #[error("{message_type} body has {trailing} trailing bytes after its last field")]
    TrailingBytes {
        /// The message.
        message_type: MessageType,
        /// How many bytes were left.
        trailing: usize,
    },
    /// A field breaks a context-free rule.
    #[error("{message_type}: {error}")]
    Field {
        /// The message.
        message_type: MessageType,
        /// The rule broken.
        #[source]
        error: FieldError,
    },
}

/// A well-formed message that the peer was not allowed to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// Not legal in the peer's current phase (see the table in the spec).
    #[error("{found} from the {sender} is not legal {phase}; legal there: {legal}",
        sender = .sender.name(), phase = .phase.describe(), legal = Phase::legal_list(*.sender, *.phase))]
    WrongState {
        /// Who sent it.
        sender: Role,
        /// The sender's phase when it arrived.
        phase: Phase,
        /// What arrived.
        found: MessageType,
    },
    /// A message of a later protocol version than the session's.
    #[error("{found} is not part of protocol v{version}, which this session speaks")]
    NotInVersion {
        /// What arrived.
        found: MessageType,
        /// The session's version.
        version: u16,
    },
    /// The listener spoke before the dialer's Hello.
    #[error("the listener sent {found} before the dialer's Hello; the dialer speaks first")]
    ListenerSpokeFirst {
        /// What arrived.
        found: MessageType,
    },
    /// The dialer sent its HaveBitfield before the listener's Hello.
    #[error("the dialer sent its HaveBitfield before the listener answered its Hello")]
    BitfieldBeforeHelloAnswer,
    /// The listener's answer does not fit the dialer's first message: a
    /// Hello answers a Hello, a Manifest a ManifestRequest, ChunkHashes a
    /// ChunkListRequest.
    #[error(
        "the listener answered the dialer's {to} with {found}; a Hello is answered with Hello or HelloReject, a ManifestRequest with Manifest or HelloReject, a ChunkListRequest with ChunkHashes or HelloReject"
    )]
    NotAnAnswer {
        /// What the listener sent.
        found: MessageType,
        /// The dialer's first message.
        to: MessageType,
    },
    /// A ChunkHashes that does not continue the list where the last one
    /// ended, or names another total than the list has.
    #[error(
        "ChunkHashes from chunk {first} of {total}; the list goes on at chunk {expected_first} of {expected_total}"
    )]
    ChunkHashesOutOfOrder {
        /// Its first chunk.
        first: u32,
        /// Its total.
        total: u32,
        /// Where the list goes on.
        expected_first: u32,
        /// The list's total (the chunk count of the manifest asked for).
        expected_total: u32,
    },
    /// The peer's Hello describes another swarm.
    #[error("the peer's Hello is for another swarm: {0}")]
    Swarm(#[from] SwarmMismatch),
    /// A message that breaks a rule of the swarm's chunk geometry.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A piece stream with more bytes than its chunk (than its chunk's
    /// bytes from the offset on, after a PieceFrom).
    #[error("piece stream for {chunk} carries more than its {expected} bytes")]
    PieceTooLong {
        /// The chunk.
        chunk: ChunkIndex,
        /// The bytes the stream should carry.
        expected: u32,
    },
    /// A piece stream its sender finished (FIN) before the whole piece:
    /// inside its header frame, or before all of its chunk's bytes.
    #[error(
        "the peer finished the piece stream{} inside its {part}, after {received} of {expected} bytes",
        chunk.map(|c| format!(" for {c}")).unwrap_or_default()
    )]
    PieceFinishedShort {
        /// The chunk, once the header was read.
        chunk: Option<ChunkIndex>,
        /// Header or body.
        part: PiecePart,
        /// Bytes of that part that arrived.
        received: u64,
        /// Bytes that part has (for the header: as far as it was known, the
        /// length prefix or the whole frame).
        expected: u64,
    },
}

impl ProtocolViolation {
    /// The Goodbye reason to send after this violation.
    pub fn goodbye_reason(&self) -> GoodbyeReason {
        match self {
            ProtocolViolation::Swarm(_) => GoodbyeReason::WrongSwarm,
            _ => GoodbyeReason::ProtocolViolation,
        }
    }
}

/// Something the peer did wrong: malformed bytes or an illegal message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Malformed bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A well-formed but illegal message.
    #[error(transparent)]
    Violation(#[from] ProtocolViolation),
}

impl PeerError {
    /// The Goodbye reason to send after this error.
    pub fn goodbye_reason(&self) -> GoodbyeReason {
        match self {
            PeerError::Decode(_) => GoodbyeReason::ProtocolViolation,
            PeerError::Violation(violation) => violation.goodbye_reason(),
        }
    }
}

/// Our own code tried to send something the protocol forbids. A bug on this
/// side, never the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalMisuse {
    /// A message of a later protocol version than the session's.
    #[error("{found} is not part of protocol v{version}, which this session speaks")]
    NotInVersion {
        /// What we tried to send.
        found: MessageType,
        /// The session's version.
        version: u16,
    },
    /// Not legal in our current phase (see the table in the spec).
    #[error("the {sender} may not send {found} {phase}; legal there: {legal}",
        sender = .sender.name(), phase = .phase.describe(), legal = Phase::legal_list(*.sender, *.phase))]
    WrongState {
        /// Our role.
        sender: Role,
        /// Our phase.
        phase: Phase,
        /// What we tried to send.
        found: MessageType,
    },
    /// The listener answers only after the dialer's Hello.
    #[error("the listener may send {found} only after the dialer's Hello")]
    BeforePeerHello {
        /// What we tried to send.
        found: MessageType,
    },
    /// The listener may not accept a Hello that was a violation.
    #[error("the dialer's Hello was refused; answer it with HelloReject, not Hello")]
    HelloAfterRefusedHello,
    /// The dialer sends its HaveBitfield only after the listener's Hello.
    #[error("the dialer may send its HaveBitfield only after the listener's Hello")]
    BitfieldBeforeHelloAnswer,
    /// The listener sends its Hello only once bound to the swarm the
    /// dialer's Hello names.
    #[error(
        "the listener may send its Hello only once bound to the swarm the dialer's Hello names (ControlStream::bind)"
    )]
    HelloBeforeBind,
    /// An answer that does not fit the dialer's first message.
    #[error(
        "the listener may not answer the dialer's {to} with {found}; a Hello is answered with Hello or HelloReject, a ManifestRequest with Manifest or HelloReject, a ChunkListRequest with ChunkHashes or HelloReject"
    )]
    NotAnAnswer {
        /// What we tried to send.
        found: MessageType,
        /// The dialer's first message.
        to: MessageType,
    },
    /// The dialer's opening message does not fit the stream it made: a
    /// swarm session opens with Hello, a manifest query with
    /// ManifestRequest, a chunk list query with ChunkListRequest.
    #[error(
        "{found} does not open this session: a swarm session's dialer opens with Hello, a manifest query's with ManifestRequest, a chunk list query's with ChunkListRequest"
    )]
    WrongOpening {
        /// What we tried to send.
        found: MessageType,
    },
    /// A ManifestRequest for another digest than the query was made for.
    #[error(
        "this manifest query is for {}; the ManifestRequest names {}",
        hex(.query),
        hex(.found)
    )]
    OtherManifest {
        /// The digest in the message.
        found: [u8; 32],
        /// The digest the query was made for.
        query: [u8; 32],
    },
    /// Our ChunkHashes do not continue the list where the last one ended.
    #[error(
        "ChunkHashes from chunk {first} of {total}; the list goes on at chunk {expected_first} of {expected_total}"
    )]
    ChunkHashesOutOfOrder {
        /// Its first chunk.
        first: u32,
        /// Its total.
        total: u32,
        /// Where the list goes on.
        expected_first: u32,
        /// The list's total as sent so far.
        expected_total: u32,
    },
    /// Our list would mix ChunkHashes and ListedChunks: one list is of
    /// one kind.
    #[error(
        "{found} in a list begun with the other kind; one list is all ChunkHashes or all ListedChunks"
    )]
    MixedChunkList {
        /// The message that would mix them.
        found: MessageType,
    },
    /// A listed chunk list served with another number of lengths than
    /// hashes.
    #[error(
        "a listed chunk list of {hashes} hashes and {lengths} lengths; each hash needs its chunk's length"
    )]
    ListedLengths {
        /// Its hashes.
        hashes: usize,
        /// Its lengths.
        lengths: usize,
    },
    /// [`crate::ControlStream::bind`] on a stream that cannot be bound.
    #[error("the control stream cannot be bound to a swarm: {why}")]
    CannotBind {
        /// Why not.
        why: &'static str,
    },
    /// A handshake call out of turn (see [`crate::HandshakeStep`]).
    #[error("handshake: {call} is not possible now; the handshake expects {expected}")]
    HandshakeOutOfTurn {
        /// The call.
        call: &'static str,
        /// What the handshake expects instead.
        expected: &'static str,
    },
    /// A field breaks a context-free rule.
    #[error("{message_type}: {error}")]
    Field {
        /// The message.
        message_type: MessageType,
        /// The rule broken.
        #[source]
        error: FieldError,
    },
    /// A message that breaks a rule of the swarm's chunk geometry.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// Our Hello does not describe our own swarm.
    #[error("our Hello does not describe our swarm: {0}")]
    Swarm(#[from] SwarmMismatch),
    /// The encoded frame would exceed its cap.
    #[error("{message_type} would be a frame of {length} bytes; the limit is {max}")]
    FrameTooLong {
        /// The message.
        message_type: MessageType,
        /// Its frame length (type byte and body).
        length: usize,
        /// The cap.
        max: u32,
    },
    /// The output buffer cannot take the whole frame (nothing was written).
    #[error("the output buffer has room for {available} bytes; the frame needs {needed}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Room left.
        available: usize,
    },
    /// bincode refused to encode a field (not expected with the in-memory
    /// writers used here).
    #[error("{message_type} could not be encoded: {detail}")]
    Encoding {
        /// The message.
        message_type: MessageType,
        /// What bincode reported.
        detail: String,
    },
}

/// Why [`crate::ControlStream::bind`] failed: the peer's fault or ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The dialer's Hello names another swarm or version: the peer's
    /// direction is closed, and [`crate::ControlStream::farewell`] gives the
    /// HelloReject to answer with.
    #[error(transparent)]
    Peer(#[from] ProtocolViolation),
    /// The stream cannot be bound (a bug on our side).
    #[error(transparent)]
    Local(#[from] LocalMisuse),
}
