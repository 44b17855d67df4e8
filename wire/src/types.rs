//! The typed values messages carry: chunk indices, message types, reasons,
//! peer entries and their flags, and the Hello, with their context-free
//! field rules.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::{BitOr, BitOrAssign};

use crate::error::FieldError;
use crate::peer_id::PeerId;

/// Longest model id in a Hello, in bytes.
pub const MAX_MODEL_ID_LEN: usize = 128;
/// Longest agent string in a Hello, in bytes.
pub const MAX_AGENT_LEN: usize = 64;
/// Longest detail text in a HelloReject, in bytes.
pub const MAX_REJECT_DETAIL_LEN: usize = 256;
/// Most peer entries one Peers or HelloReject message may carry.
pub const MAX_PEERS_PER_MESSAGE: usize = 32;
/// Most local-network addresses one Hello may list.
pub const MAX_LAN_ADDRS: usize = 4;
/// Most addresses one Connect may carry (and it carries at least one).
pub const MAX_CONNECT_ADDRS: usize = 4;
/// Largest manifest a Manifest message may carry, in bytes: with its count
/// and type byte it fits a control frame with room to spare.
pub const MAX_MANIFEST_BYTES: usize = 60_000;
/// Most chunk hashes one ChunkHashes message may carry: with its counts
/// and type byte, 2,000 hashes of 32 bytes fit a control frame.
pub const MAX_CHUNK_HASHES_PER_MESSAGE: usize = 2_000;
/// Most chunks one ListedChunks message may carry: with its counts and
/// type byte, 1,800 entries of a 32-byte hash and a 4-byte length fit a
/// control frame.
pub const MAX_LISTED_CHUNKS_PER_MESSAGE: usize = 1_800;
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
    /// `0x0B` Rendezvous.
    Rendezvous,
    /// `0x0C` Connect.
    Connect,
    /// `0x0D` RendezvousFailed.
    RendezvousFailed,
    /// `0x0E` ManifestRequest.
    ManifestRequest,
    /// `0x0F` Manifest.
    Manifest,
    /// `0x10` ChunkListRequest.
    ChunkListRequest,
    /// `0x11` ChunkHashes.
    ChunkHashes,
    /// `0x12` ListedChunks.
    ListedChunks,
    /// `0x13` RequestFrom (v3 sessions only).
    RequestFrom,
    /// `0x20` PieceHeader (piece streams only).
    PieceHeader,
    /// `0x21` PieceFrom: the header of a piece stream that carries a
    /// chunk's bytes from an offset on (v3 sessions only).
    PieceFrom,
}

impl MessageType {
    /// Every message type, in type-byte order.
    pub const ALL: [MessageType; 21] = [
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
        MessageType::Rendezvous,
        MessageType::Connect,
        MessageType::RendezvousFailed,
        MessageType::ManifestRequest,
        MessageType::Manifest,
        MessageType::ChunkListRequest,
        MessageType::ChunkHashes,
        MessageType::ListedChunks,
        MessageType::RequestFrom,
        MessageType::PieceHeader,
        MessageType::PieceFrom,
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
            MessageType::Rendezvous => 0x0B,
            MessageType::Connect => 0x0C,
            MessageType::RendezvousFailed => 0x0D,
            MessageType::ManifestRequest => 0x0E,
            MessageType::Manifest => 0x0F,
            MessageType::ChunkListRequest => 0x10,
            MessageType::ChunkHashes => 0x11,
            MessageType::ListedChunks => 0x12,
            MessageType::RequestFrom => 0x13,
            MessageType::PieceHeader => 0x20,
            MessageType::PieceFrom => 0x21,
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
            MessageType::Rendezvous => "Rendezvous",
            MessageType::Connect => "Connect",
            MessageType::RendezvousFailed => "RendezvousFailed",
            MessageType::ManifestRequest => "ManifestRequest",
            MessageType::Manifest => "Manifest",
            MessageType::ChunkListRequest => "ChunkListRequest",
            MessageType::ChunkHashes => "ChunkHashes",
            MessageType::ListedChunks => "ListedChunks",
            MessageType::RequestFrom => "RequestFrom",
            MessageType::PieceHeader => "PieceHeader",
            MessageType::PieceFrom => "PieceFrom",
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
        /// The listener serves no swarm with the Hello's model id and root
        /// (a listener of many swarms on one port).
        UnknownSwarm = 5,
        /// The listener has no manifest with the requested SHA-256.
        UnknownManifest = 6,
        /// The listener serves that manifest's swarm but does not hold its
        /// whole chunk list (it is still downloading).
        NoChunkList = 7,
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

wire_reason! {
    /// Why an introducer will not introduce the sender of a Rendezvous.
    RendezvousFailedReason {
        /// The introducer has no link to the named peer.
        NotConnected = 0,
        /// The Rendezvous named its sender or the introducer itself.
        NoSelf = 1,
        /// The sender asked for too many introductions; ask again later.
        RateLimited = 2,
        /// The addresses of one side fail the introducer's filters.
        NotAllowed = 3,
        /// The introducer does not introduce peers.
        NoSupport = 4,
    }
}

/// How to reach the peer of a [`PeerEntry`]: a set of the defined bits
/// (spec 7.8). Reserved bits cannot be set: [`PeerFlags::from_bits`]
/// refuses them, and a decoder refuses an entry that carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerFlags(u8);

impl PeerFlags {
    /// Bit 0: the address is one of the peer's LAN addresses, usable only
    /// on its network. It is sent only to a receiver that shares the public
    /// address the entry was learned with (both behind one NAT).
    pub const LAN: PeerFlags = PeerFlags(0x01);
    /// Bit 1: the peer accepts no unsolicited connections; ask the sender
    /// of the entry for a Rendezvous with it.
    pub const VIA_RENDEZVOUS: PeerFlags = PeerFlags(0x02);
    /// Every defined bit.
    pub const ALL: PeerFlags = PeerFlags(0x03);

    /// No flag: an address that accepts connections from anyone.
    pub const fn empty() -> PeerFlags {
        PeerFlags(0)
    }

    /// The byte on the wire.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The flags of a byte, or `None` if it sets a reserved bit.
    pub const fn from_bits(bits: u8) -> Option<PeerFlags> {
        if bits & !PeerFlags::ALL.0 == 0 {
            Some(PeerFlags(bits))
        } else {
            None
        }
    }

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: PeerFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for PeerFlags {
    type Output = PeerFlags;

    fn bitor(self, other: PeerFlags) -> PeerFlags {
        PeerFlags(self.0 | other.0)
    }
}

impl BitOrAssign for PeerFlags {
    fn bitor_assign(&mut self, other: PeerFlags) {
        self.0 |= other.0;
    }
}

impl fmt::Display for PeerFlags {
    /// `none`, `LAN`, `VIA_RENDEZVOUS` or `LAN|VIA_RENDEZVOUS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (PeerFlags::LAN, "LAN"),
            (PeerFlags::VIA_RENDEZVOUS, "VIA_RENDEZVOUS"),
        ]
        .into_iter()
        .filter(|(flag, _)| self.contains(*flag))
        .map(|(_, name)| name)
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

/// One peer in a Peers or HelloReject message: who it is, where it listens
/// and how to reach it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerEntry {
    /// The key the peer proves in its handshake.
    pub id: PeerId,
    /// Where to reach it, as `flags` say. IPv6 flow info and scope id are
    /// not carried.
    pub addr: SocketAddr,
    /// Whether `addr` is a LAN address and whether the peer must be
    /// reached through a Rendezvous; empty: it accepts connections there
    /// from anyone.
    pub flags: PeerFlags,
}

impl PeerEntry {
    /// An entry without flags: `addr` accepts connections from anyone.
    pub fn new(id: PeerId, addr: SocketAddr) -> PeerEntry {
        PeerEntry {
            id,
            addr,
            flags: PeerFlags::empty(),
        }
    }
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
    /// The address the sender sees the receiver at: the dialer writes the
    /// address it dialed, the listener the connection's source address. An
    /// IPv4 address is written as IPv4, never IPv4-mapped IPv6.
    /// Informational: the receiver decides what to believe.
    pub observed: Option<SocketAddr>,
    /// Where the sender listens on its own local network(s), at most
    /// [`MAX_LAN_ADDRS`], each one passing [`is_lan_addr`]. Passed on only
    /// to peers that share the sender's public address.
    pub lan: Vec<SocketAddr>,
}

impl Hello {
    /// Checks the context-free field rules, in wire order.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_model_id(&self.model_id)?;
        validate_agent(&self.agent)?;
        validate_observed(self.observed)?;
        validate_lan_count(self.lan.len() as u64)?;
        for (index, addr) in self.lan.iter().enumerate() {
            validate_lan_addr(index, *addr)?;
        }
        Ok(())
    }

    /// This Hello with `observed` set: an IPv4-mapped IPv6 address (as a
    /// dual-stack socket reports an IPv4 peer) is written as IPv4.
    pub fn with_observed(mut self, observed: Option<SocketAddr>) -> Hello {
        self.observed = observed.map(canonical_addr);
        self
    }

    /// This Hello with `lan` set, if the list meets its rules (at most
    /// [`MAX_LAN_ADDRS`], each passing [`is_lan_addr`]).
    pub fn with_lan(mut self, lan: Vec<SocketAddr>) -> Result<Hello, FieldError> {
        validate_lan_count(lan.len() as u64)?;
        for (index, addr) in lan.iter().enumerate() {
            validate_lan_addr(index, *addr)?;
        }
        self.lan = lan;
        Ok(self)
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 address
/// (flow info and scope id dropped: the wire does not carry them).
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether `addr` may stand in a Hello's `lan` list: a private IPv4
/// address (10/8, 172.16/12, 192.168/16), an IPv4 link-local one
/// (169.254/16), an IPv6 unique-local (fc00::/7) or link-local (fe80::/10)
/// one, with a port other than 0.
pub fn is_lan_addr(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_private() || ip.is_link_local(),
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
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

/// Checks the number of entries of a Peers or HelloReject message.
pub(crate) fn validate_peer_count(count: u64) -> Result<(), FieldError> {
    if count > MAX_PEERS_PER_MESSAGE as u64 {
        return Err(FieldError::TooManyPeers { count });
    }
    Ok(())
}

/// Checks a Hello's observed address: not IPv4-mapped IPv6.
pub(crate) fn validate_observed(observed: Option<SocketAddr>) -> Result<(), FieldError> {
    match observed {
        Some(addr) if canonical_addr(addr).is_ipv4() && addr.is_ipv6() => {
            Err(FieldError::ObservedMapped { addr })
        }
        _ => Ok(()),
    }
}

/// Checks the number of a Hello's local-network addresses.
pub(crate) fn validate_lan_count(count: u64) -> Result<(), FieldError> {
    if count > MAX_LAN_ADDRS as u64 {
        return Err(FieldError::TooManyLanAddrs { count });
    }
    Ok(())
}

/// Checks one of a Hello's local-network addresses.
pub(crate) fn validate_lan_addr(index: usize, addr: SocketAddr) -> Result<(), FieldError> {
    if is_lan_addr(addr) {
        Ok(())
    } else {
        Err(FieldError::NotLanAddr { index, addr })
    }
}

/// Checks the number of a Connect's addresses: 1 to [`MAX_CONNECT_ADDRS`].
pub(crate) fn validate_connect_count(count: u64) -> Result<(), FieldError> {
    if count == 0 || count > MAX_CONNECT_ADDRS as u64 {
        return Err(FieldError::ConnectAddrCount { count });
    }
    Ok(())
}

/// Checks the length of a Manifest's bytes.
pub(crate) fn validate_manifest_len(len: u64) -> Result<(), FieldError> {
    if len > MAX_MANIFEST_BYTES as u64 {
        return Err(FieldError::ManifestTooLong { len });
    }
    Ok(())
}

/// Checks a ChunkHashes message's counts: `count` hashes (1 to
/// [`MAX_CHUNK_HASHES_PER_MESSAGE`]) from chunk `first` of a list of
/// `total` (1 to [`crate::MAX_CHUNK_COUNT`]) that they do not run past.
pub(crate) fn validate_chunk_hashes(total: u32, first: u32, count: u64) -> Result<(), FieldError> {
    validate_list_part(total, first, count, MAX_CHUNK_HASHES_PER_MESSAGE, |count| {
        FieldError::ChunkHashesCount { count }
    })
}

/// Checks a ListedChunks message's counts as [`validate_chunk_hashes`]
/// does, with at most [`MAX_LISTED_CHUNKS_PER_MESSAGE`] chunks.
pub(crate) fn validate_listed_chunks(total: u32, first: u32, count: u64) -> Result<(), FieldError> {
    validate_list_part(
        total,
        first,
        count,
        MAX_LISTED_CHUNKS_PER_MESSAGE,
        |count| FieldError::ListedChunksCount { count },
    )
}

/// A part of a chunk list query's answer, in wire order: the total, then
/// `count` entries (1 to `max`, else `too_many`), then the end.
fn validate_list_part(
    total: u32,
    first: u32,
    count: u64,
    max: usize,
    too_many: fn(u64) -> FieldError,
) -> Result<(), FieldError> {
    if total == 0 || total > crate::params::MAX_CHUNK_COUNT {
        return Err(FieldError::ChunkListTotal { total });
    }
    if count == 0 || count > max as u64 {
        return Err(too_many(count));
    }
    if u64::from(first) + count > u64::from(total) {
        return Err(FieldError::ChunkHashesPastTotal {
            first,
            count,
            total,
        });
    }
    Ok(())
}

/// Checks a ListedChunks entry's length: a chunk has at least one byte.
pub(crate) fn validate_listed_length(chunk: u32, len: u32) -> Result<(), FieldError> {
    if len == 0 {
        return Err(FieldError::ListedChunkEmpty { chunk });
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
        assert_eq!(MessageType::from_byte(0x0B), Some(MessageType::Rendezvous));
        assert_eq!(MessageType::from_byte(0x0F), Some(MessageType::Manifest));
        assert_eq!(
            MessageType::from_byte(0x10),
            Some(MessageType::ChunkListRequest)
        );
        assert_eq!(MessageType::from_byte(0x11), Some(MessageType::ChunkHashes));
        assert_eq!(
            MessageType::from_byte(0x12),
            Some(MessageType::ListedChunks)
        );
        assert_eq!(MessageType::from_byte(0x13), Some(MessageType::RequestFrom));
        assert_eq!(MessageType::from_byte(0x14), None);
        assert_eq!(MessageType::from_byte(0x1f), None);
        assert_eq!(MessageType::from_byte(0x21), Some(MessageType::PieceFrom));
        assert_eq!(MessageType::from_byte(0x22), None);
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
        for r in RendezvousFailedReason::ALL {
            assert_eq!(RendezvousFailedReason::from_code(r.code()), Some(*r));
        }
        assert_eq!(GoodbyeReason::from_code(7), None);
        assert_eq!(RejectReason::from_code(4), None);
        assert_eq!(HelloRejectReason::from_code(8), None);
        assert_eq!(HelloRejectReason::NoChunkList.code(), 7);
        assert_eq!(RendezvousFailedReason::from_code(5), None);
        assert_eq!(HelloRejectReason::UnknownSwarm.code(), 5);
        assert_eq!(HelloRejectReason::UnknownManifest.code(), 6);
        assert_eq!(RendezvousFailedReason::NoSupport.code(), 4);
    }

    #[test]
    fn chunk_hashes_counts_are_checked_total_then_count_then_their_end() {
        let max = crate::params::MAX_CHUNK_COUNT;
        let per = MAX_CHUNK_HASHES_PER_MESSAGE as u64;
        assert_eq!(validate_chunk_hashes(1, 0, 1), Ok(()));
        assert_eq!(validate_chunk_hashes(max, max - per as u32, per), Ok(()));
        assert_eq!(
            validate_chunk_hashes(u32::MAX, u32::MAX, u64::MAX),
            Err(FieldError::ChunkListTotal { total: u32::MAX })
        );
        assert_eq!(
            validate_chunk_hashes(10, u32::MAX, u64::MAX),
            Err(FieldError::ChunkHashesCount { count: u64::MAX })
        );
        // first + count is summed without overflow.
        assert_eq!(
            validate_chunk_hashes(max, u32::MAX, per),
            Err(FieldError::ChunkHashesPastTotal {
                first: u32::MAX,
                count: per,
                total: max
            })
        );
        assert_eq!(
            validate_chunk_hashes(10, 10, 1),
            Err(FieldError::ChunkHashesPastTotal {
                first: 10,
                count: 1,
                total: 10
            })
        );
    }

    #[test]
    fn peer_flags_refuse_reserved_bits() {
        assert_eq!(PeerFlags::from_bits(0), Some(PeerFlags::empty()));
        assert_eq!(PeerFlags::from_bits(1), Some(PeerFlags::LAN));
        assert_eq!(PeerFlags::from_bits(2), Some(PeerFlags::VIA_RENDEZVOUS));
        assert_eq!(PeerFlags::from_bits(3), Some(PeerFlags::ALL));
        for bits in 4..=u8::MAX {
            assert_eq!(PeerFlags::from_bits(bits), None, "{bits:#04x}");
        }
        let both = PeerFlags::LAN | PeerFlags::VIA_RENDEZVOUS;
        assert_eq!(both, PeerFlags::ALL);
        assert!(both.contains(PeerFlags::LAN) && both.contains(PeerFlags::VIA_RENDEZVOUS));
        assert!(!PeerFlags::LAN.contains(PeerFlags::VIA_RENDEZVOUS));
        assert!(PeerFlags::LAN.contains(PeerFlags::empty()));
        assert!(PeerFlags::empty().is_empty() && !PeerFlags::LAN.is_empty());
        let mut flags = PeerFlags::empty();
        flags |= PeerFlags::VIA_RENDEZVOUS;
        assert_eq!(flags.bits(), 2);
        assert_eq!(PeerFlags::empty().to_string(), "none");
        assert_eq!(PeerFlags::ALL.to_string(), "LAN|VIA_RENDEZVOUS");
    }

    #[test]
    fn lan_addresses_are_private_unique_local_or_link_local() {
        let lan = |text: &str| is_lan_addr(text.parse().unwrap());
        for good in [
            "10.0.0.1:1",
            "10.255.255.255:65535",
            "172.16.0.1:4433",
            "172.31.255.254:4433",
            "192.168.1.20:4433",
            "169.254.3.4:4433",
            "[fc00::1]:4433",
            "[fd12:3456::1]:4433",
            "[fe80::1]:4433",
            "[febf::1]:4433",
        ] {
            assert!(lan(good), "{good}");
        }
        for bad in [
            "192.168.1.20:0",
            "8.8.8.8:4433",
            "172.15.255.255:4433",
            "172.32.0.0:4433",
            "192.0.2.7:4433",
            "127.0.0.1:4433",
            "0.0.0.0:4433",
            "255.255.255.255:4433",
            "100.64.0.1:4433",
            "[2001:db8::1]:4433",
            "[::1]:4433",
            "[::]:4433",
            "[fec0::1]:4433",
            "[fbff::1]:4433",
            "[::ffff:192.168.1.20]:4433",
            "[ff02::1]:4433",
        ] {
            assert!(!lan(bad), "{bad}");
        }
    }

    #[test]
    fn observed_addresses_are_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:198.51.100.9]:50000".parse().unwrap();
        let plain: SocketAddr = "198.51.100.9:50000".parse().unwrap();
        assert_eq!(canonical_addr(mapped), plain);
        assert_eq!(
            validate_observed(Some(mapped)),
            Err(FieldError::ObservedMapped { addr: mapped })
        );
        assert_eq!(validate_observed(Some(plain)), Ok(()));
        assert_eq!(
            validate_observed(Some("[2001:db8::9]:1".parse().unwrap())),
            Ok(())
        );
        assert_eq!(validate_observed(None), Ok(()));
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
