//! The typed values messages carry: chunk indices, message types, reasons,
//! peer entries and the Hello, with their context-free field rules.

use std::fmt;
use std::net::SocketAddr;

use crate::error::FieldError;
use crate::peer_id::PeerId;

/// Longest model id in a Hello, in bytes.
pub const MAX_MODEL_ID_LEN: usize = 128;
/// Longest agent string in a Hello, in bytes.
pub const MAX_AGENT_LEN: usize = 64;
/// Longest detail text in a HelloReject, in bytes.
pub const MAX_REJECT_DETAIL_LEN: usize = 256;
/// Most entries one Peers message may carry.
pub const MAX_PEERS_PER_MESSAGE: usize = 32;
/// Most hashes a piece header's Merkle proof may carry (a tree of `u32`
/// leaves is at most 32 levels deep).
pub const MAX_PROOF_HASHES: usize = 32;

/// Index of a chunk in the artifact, from 0 to `chunk_count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkIndex(pub u32);

impl fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chunk {}", self.0)
    }
}

/// The type byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `0x01` Hello.
    Hello,
    /// `0x02` HelloReject.
    HelloReject,
    /// `0x03` HaveBitfield.
    HaveBitfield,
    /// `0x04` Have.
    Have,
    /// `0x05` Request.
    Request,
    /// `0x06` Cancel.
    Cancel,
    /// `0x07` Reject.
    Reject,
    /// `0x08` Peers.
    Peers,
    /// `0x09` KeepAlive.
    KeepAlive,
    /// `0x0A` Goodbye.
    Goodbye,
    /// `0x20` PieceHeader (piece streams only).
    PieceHeader,
}

impl MessageType {
    /// Every message type, in type-byte order.
    pub const ALL: [MessageType; 11] = [
        MessageType::Hello,
        MessageType::HelloReject,
        MessageType::HaveBitfield,
        MessageType::Have,
        MessageType::Request,
        MessageType::Cancel,
        MessageType::Reject,
        MessageType::Peers,
        MessageType::KeepAlive,
        MessageType::Goodbye,
        MessageType::PieceHeader,
    ];

    /// The type byte on the wire.
    pub const fn as_byte(self) -> u8 {
        match self {
            MessageType::Hello => 0x01,
            MessageType::HelloReject => 0x02,
            MessageType::HaveBitfield => 0x03,
            MessageType::Have => 0x04,
            MessageType::Request => 0x05,
            MessageType::Cancel => 0x06,
            MessageType::Reject => 0x07,
            MessageType::Peers => 0x08,
            MessageType::KeepAlive => 0x09,
            MessageType::Goodbye => 0x0A,
            MessageType::PieceHeader => 0x20,
        }
    }

    /// The message type of a type byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_byte() == byte)
    }

    /// The name used in the spec.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Hello => "Hello",
            MessageType::HelloReject => "HelloReject",
            MessageType::HaveBitfield => "HaveBitfield",
            MessageType::Have => "Have",
            MessageType::Request => "Request",
            MessageType::Cancel => "Cancel",
            MessageType::Reject => "Reject",
            MessageType::Peers => "Peers",
            MessageType::KeepAlive => "KeepAlive",
            MessageType::Goodbye => "Goodbye",
            MessageType::PieceHeader => "PieceHeader",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.as_byte())
    }
}

/// Declares a reason enum carried on the wire as a `u32` code (the bincode
/// encoding of an enum variant index under fixed-int encoding).
macro_rules! wire_reason {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $code:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every reason, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code on the wire.
            pub const fn code(self) -> u32 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The reason of a code, if it is one.
            pub fn from_code(code: u32) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The name used in the spec.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant),)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_reason! {
    /// Why a listener refuses a dialer's Hello.
    HelloRejectReason {
        /// The Hello's protocol version is not the one negotiated by ALPN.
        UnsupportedVersion = 0,
        /// The Hello names another model, root or chunk geometry.
        WrongSwarm = 1,
        /// The listener has as many peers as it accepts.
        TooManyPeers = 2,
        /// The listener refuses this peer id.
        Banned = 3,
        /// The listener does not serve this swarm (any more).
        NotServing = 4,
    }
}

wire_reason! {
    /// Why a peer will not serve a requested chunk.
    RejectReason {
        /// It does not have the chunk (verified).
        NotHave = 0,
        /// Too many requests in flight; ask again later.
        Busy = 1,
        /// The upload rate limit is reached; ask again later.
        RateLimited = 2,
        /// The peer is shutting down.
        ShuttingDown = 3,
    }
}

wire_reason! {
    /// Why a peer ends the session.
    GoodbyeReason {
        /// Nothing left to exchange (both sides complete, or not needed).
        Done = 0,
        /// The process is shutting down.
        Shutdown = 1,
        /// Dropped to make room for other peers.
        TooManyPeers = 2,
        /// No useful traffic for too long.
        Idle = 3,
        /// The other side broke the protocol.
        ProtocolViolation = 4,
        /// The other side served a chunk that failed verification.
        BadData = 5,
        /// The other side's Hello names another swarm.
        WrongSwarm = 6,
    }
}

/// One peer in a Peers message: who it is and where it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerEntry {
    /// The key the peer proves in its handshake.
    pub id: PeerId,
    /// Where it accepts connections. IPv6 flow info and scope id are not
    /// carried.
    pub addr: SocketAddr,
}

/// The first message in each direction: which swarm the sender is in and
/// what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Must equal the version negotiated by ALPN ([`crate::PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The manifest's model id: 1 to 128 bytes of `A-Z a-z 0-9 . _ -`.
    pub model_id: String,
    /// The manifest's Merkle root over the chunk hashes.
    pub merkle_root: [u8; 32],
    /// Artifact size in bytes.
    pub artifact_bytes: u64,
    /// Chunk size in bytes (every chunk but the last has this size).
    pub chunk_size: u32,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Whether the sender answers Requests.
    pub serving: bool,
    /// Where the sender accepts connections, if it does (for peer exchange).
    pub listen: Option<SocketAddr>,
    /// Free-form software name and version: at most 64 bytes of printable
    /// ASCII (`0x20..=0x7e`).
    pub agent: String,
}

impl Hello {
    /// Checks the context-free field rules.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_model_id(&self.model_id)?;
        validate_agent(&self.agent)
    }
}

/// Checks a model id: 1 to [`MAX_MODEL_ID_LEN`] bytes of `A-Z a-z 0-9 . _ -`.
pub fn validate_model_id(model_id: &str) -> Result<(), FieldError> {
    let len = model_id.len();
    if len == 0 || len > MAX_MODEL_ID_LEN {
        return Err(FieldError::ModelIdLength { len });
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    match model_id.bytes().position(|b| !allowed(b)) {
        Some(position) => Err(FieldError::ModelIdCharacter {
            position,
            byte: model_id.as_bytes()[position],
        }),
        None => Ok(()),
    }
}

/// Checks an agent string: at most [`MAX_AGENT_LEN`] bytes of printable ASCII.
pub fn validate_agent(agent: &str) -> Result<(), FieldError> {
    let len = agent.len();
    if len > MAX_AGENT_LEN {
        return Err(FieldError::AgentTooLong { len });
    }
    match agent.bytes().position(|b| !(0x20..=0x7e).contains(&b)) {
        Some(position) => Err(FieldError::AgentCharacter {
            position,
            byte: agent.as_bytes()[position],
        }),
        None => Ok(()),
    }
}

/// Checks a HelloReject detail: at most [`MAX_REJECT_DETAIL_LEN`] bytes of
/// UTF-8 without control characters (it ends up in log lines).
pub fn validate_reject_detail(detail: &str) -> Result<(), FieldError> {
    let len = detail.len();
    if len > MAX_REJECT_DETAIL_LEN {
        return Err(FieldError::DetailTooLong { len });
    }
    match detail.char_indices().find(|(_, c)| c.is_control()) {
        Some((position, found)) => Err(FieldError::DetailCharacter { position, found }),
        None => Ok(()),
    }
}

/// Checks the number of entries of a Peers message.
pub(crate) fn validate_peer_count(count: u64) -> Result<(), FieldError> {
    if count > MAX_PEERS_PER_MESSAGE as u64 {
        return Err(FieldError::TooManyPeers { count });
    }
    Ok(())
}

/// Checks the number of hashes of a piece header's proof.
pub(crate) fn validate_proof_count(count: u64) -> Result<(), FieldError> {
    if count > MAX_PROOF_HASHES as u64 {
        return Err(FieldError::ProofTooLong { count });
    }
    Ok(())
}

/// Lowercase hex of a byte string, for error messages and logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bytes_round_trip_and_are_distinct() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::from_byte(t.as_byte()), Some(t));
        }
        assert_eq!(MessageType::from_byte(0x00), None);
        assert_eq!(MessageType::from_byte(0x0B), None);
        assert_eq!(MessageType::from_byte(0xff), None);
        assert_eq!(MessageType::Goodbye.to_string(), "Goodbye (0x0a)");
    }

    #[test]
    fn reason_codes_round_trip() {
        for r in GoodbyeReason::ALL {
            assert_eq!(GoodbyeReason::from_code(r.code()), Some(*r));
        }
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::from_code(r.code()), Some(*r));
        }
        for r in HelloRejectReason::ALL {
            assert_eq!(HelloRejectReason::from_code(r.code()), Some(*r));
        }
        assert_eq!(GoodbyeReason::from_code(7), None);
        assert_eq!(RejectReason::from_code(4), None);
        assert_eq!(HelloRejectReason::from_code(5), None);
    }

    #[test]
    fn model_id_rules() {
        assert_eq!(validate_model_id("tiny-llama_1.1b"), Ok(()));
        assert_eq!(validate_model_id(&"a".repeat(128)), Ok(()));
        assert_eq!(
            validate_model_id(""),
            Err(FieldError::ModelIdLength { len: 0 })
        );
        assert_eq!(
            validate_model_id(&"a".repeat(129)),
            Err(FieldError::ModelIdLength { len: 129 })
        );
        assert_eq!(
            validate_model_id("ab/c"),
            Err(FieldError::ModelIdCharacter {
                position: 2,
                byte: b'/'
            })
        );
        assert_eq!(
            validate_model_id("é"),
            Err(FieldError::ModelIdCharacter {
                position: 0,
                byte: 0xc3
            })
        );
    }

    #[test]
    fn agent_rules() {
        assert_eq!(validate_agent(""), Ok(()));
        assert_eq!(validate_agent("minimodel/0.1.0 (linux)"), Ok(()));
        assert_eq!(validate_agent(&"x".repeat(64)), Ok(()));
        assert_eq!(
            validate_agent(&"x".repeat(65)),
            Err(FieldError::AgentTooLong { len: 65 })
        );
        assert_eq!(
            validate_agent("a\nb"),
            Err(FieldError::AgentCharacter {
                position: 1,
                byte: b'\n'
            })
        );
        assert_eq!(
            validate_agent("\u{7f}"),
            Err(FieldError::AgentCharacter {
                position: 0,
                byte: 0x7f
            })
        );
    }

    #[test]
    fn detail_rules() {
        assert_eq!(validate_reject_detail("model id differs: «x»"), Ok(()));
        assert_eq!(validate_reject_detail(&"d".repeat(256)), Ok(()));
        assert_eq!(
            validate_reject_detail(&"d".repeat(257)),
            Err(FieldError::DetailTooLong { len: 257 })
        );
        assert_eq!(
            validate_reject_detail("a\u{1b}[31m"),
            Err(FieldError::DetailCharacter {
                position: 1,
                found: '\u{1b}'
            })
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_to("abc", 5), "abc");
        assert_eq!(truncate_to("abcdef", 3), "abc");
        assert_eq!(truncate_to("aé", 2), "a");
    }
}
