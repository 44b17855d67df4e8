//! `minimodel-wire`: the piece protocol v3 (and v2), as bytes and rules.
//!
//! What it is: the messages of the protocol ([`Message`], [`PieceHeader`]),
//! their framing and bincode codec with a cap on every length
//! ([`Message::encode`], [`Message::decode`], the incremental
//! [`FrameDecoder`] and [`PieceStreamReader`]), the context checks against a
//! swarm's chunk geometry ([`SwarmParams`]), the sans-IO state machine of
//! the control stream ([`ControlStream`]) and the handshakes every driver
//! runs on it ([`DialHandshake`], [`ListenHandshake`], [`ManifestQuery`],
//! [`ChunkListQuery`]).
//! Errors say who is to blame:
//! [`DecodeError`] (the peer sent malformed bytes), [`ProtocolViolation`]
//! (the peer sent a well-formed but illegal message), [`LocalMisuse`] (our
//! own code tried to send something illegal).
//!
//! What it is not: it opens no socket and no file, keeps no clock, and does
//! not verify hashes (the verifier does; this crate only checks that a proof
//! has the right number of them, and hands a requested manifest over
//! unhashed). The QUIC driver in `minimodel-swarm` moves the bytes.
//!
//! The normative spec, with annotated test vectors, is
//! `docs/wire-protocol.md`; the vectors are in `fixtures/wire/`.
//!
//! ```
//! use minimodel_wire::{
//!     ChunkIndex, ControlEvent, ControlStream, FrameDecoder, HaveBitfield, Message, Role,
//!     SwarmIdentity, SwarmParams,
//! };
//!
//! let params = SwarmParams::new(10_000, 4096, 3).unwrap();
//! let swarm = SwarmIdentity::new("demo-model", [7; 32], params).unwrap();
//! let mut dialer = ControlStream::new(Role::Dialer, swarm.clone());
//! let mut listener = ControlStream::listener();
//!
//! // The dialer speaks first; bytes go through the codec as on a stream.
//! let hello = Message::Hello(swarm.hello(false, None, "example/1").unwrap());
//! dialer.check_send(&hello).unwrap();
//! let mut stream = Vec::new();
//! hello.encode(&mut stream).unwrap();
//!
//! let mut decoder = FrameDecoder::new();
//! decoder.feed(&stream).unwrap();
//! let received = decoder.next_message().unwrap().unwrap();
//! assert!(matches!(listener.on_receive(&received), Ok(ControlEvent::PeerHello(_))));
//! // The listener serves the swarm the Hello names: it binds to it.
//! listener.bind(swarm.clone()).unwrap();
//!
//! // A Request before the bitfields is refused.
//! let early = Message::Request { chunk: ChunkIndex(0) };
//! assert!(listener.on_receive(&early).is_err());
//! # let _ = HaveBitfield::new(3);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bitfield;
mod codec;
mod control;
mod error;
mod frame;
mod frame_decoder;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod message;
mod params;
mod peer_id;
mod piece;
pub mod relay;
mod stamp;
mod types;

pub use bitfield::{ChunkOutOfRange, HaveBitfield};
pub use control::{ControlEvent, ControlStream, Phase, Role};
pub use error::{
    BindError, ContextError, DecodeError, FieldError, LocalMisuse, PeerError, ProtocolViolation,
    SwarmMismatch,
};
pub use frame::{FRAME_PREFIX_LEN, MAX_CONTROL_FRAME, MAX_PIECE_HEADER_FRAME};
pub use frame_decoder::FrameDecoder;
pub use handshake::{
    ChunkListQuery, DialHandshake, Established, HandshakeFailure, HandshakeMachine, HandshakeStep,
    ListenHandshake, Listened, ManifestQuery, ReceivedChunkList,
};
pub use message::Message;
pub use params::{MAX_CHUNK_COUNT, SwarmIdentity, SwarmParams, SwarmParamsError, audit_path_len};
pub use peer_id::{PEER_ID_TEXT_LEN, PeerAddr, PeerId, PeerIdError};
pub use piece::{PieceHeader, PiecePart, PieceStreamReader, ReceivedPiece};
pub use stamp::{Datagram, DatagramError, ECHO_LEN, ECHO_TYPE, STAMP_LEN, STAMP_TYPE};
pub use types::{
    ChunkIndex, GoodbyeReason, Hello, HelloRejectReason, MAX_AGENT_LEN,
    MAX_CHUNK_HASHES_PER_MESSAGE, MAX_CONNECT_ADDRS, MAX_LAN_ADDRS, MAX_LISTED_CHUNKS_PER_MESSAGE,
    MAX_MANIFEST_BYTES, MAX_MODEL_ID_LEN, MAX_PEERS_PER_MESSAGE, MAX_PROOF_HASHES,
    MAX_REJECT_DETAIL_LEN, MessageType, PeerEntry, PeerFlags, RejectReason, RendezvousFailedReason,
    canonical_addr, is_lan_addr, validate_agent, validate_model_id, validate_reject_detail,
};

/// The ALPN protocol id of piece protocol v3, the latest. Peers offer every
/// version they speak ([`ALPNS`]) and TLS picks one.
pub const ALPN: &[u8] = b"minimodel/3";

/// The protocol version of [`ALPN`].
pub const PROTOCOL_VERSION: u16 = 3;

/// The ALPN protocol id of piece protocol v2, still spoken: v3 is v2 with
/// RequestFrom and PieceFrom. Version 1 (`minimodel/1`) is no longer
/// spoken.
pub const ALPN_V2: &[u8] = b"minimodel/2";

/// Every ALPN id of the piece protocol this crate speaks, most preferred
/// first: what a peer offers, and what a listener chooses from.
pub const ALPNS: [&[u8]; 2] = [ALPN, ALPN_V2];

/// The protocol version an ALPN id of [`ALPNS`] names.
pub fn protocol_version_of(alpn: &[u8]) -> Option<u16> {
    match alpn {
        ALPN => Some(PROTOCOL_VERSION),
        ALPN_V2 => Some(2),
        _ => None,
    }
}

/// The first version with RequestFrom and PieceFrom.
pub const FROM_VERSION: u16 = 3;
