//! The relay protocol v1 (`docs/relay.md`): what a node and a relay it
//! names say on the node's control stream, and the relay datagram that
//! carries a QUIC packet between two of the relay's nodes.
//!
//! A node connects to the relay with QUIC (ALPN [`RELAY_ALPN`], TLS with
//! raw public keys as between peers: each side proves its key), opens one
//! bidirectional stream and sends [`RelayMessage::Register`]; the relay
//! answers [`RelayMessage::Registered`] (or refuses, and closes). Then the
//! node may ask for introductions ([`RelayMessage::Introduce`]); the relay
//! sends both nodes a [`RelayMessage::Connect`] naming the other, its
//! addresses and a channel, or the asker an
//! [`RelayMessage::IntroduceFailed`]. Relay datagrams ([`relay_datagram`])
//! on the channel reach the other node, as they are.
//!
//! Frames are `length: u32 BE` (the bytes that follow, 1 to
//! [`MAX_RELAY_FRAME`]), `type: u8`, then the body: integers big-endian,
//! an address as `family: u8` (4 or 6), the IP (4 or 16 bytes) and
//! `port: u16` (not 0), a list as `count: u8` (checked against its cap
//! before any element is read) and its elements, a text as `length: u8`
//! and its bytes. A body must be consumed exactly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::PeerId;

/// The ALPN protocol id of the relay protocol, version 1.
pub const RELAY_ALPN: &[u8] = b"minimodel-relay/1";

/// Largest frame length (type byte and body).
pub const MAX_RELAY_FRAME: u32 = 512;

/// Bytes of a frame's length prefix.
pub const RELAY_FRAME_PREFIX: usize = 4;

/// Most addresses a Register names.
pub const MAX_REGISTER_ADDRS: usize = 4;

/// Most addresses a Connect names.
pub const MAX_RELAY_CONNECT_ADDRS: usize = 8;

/// Longest agent text in a Register.
pub const MAX_RELAY_AGENT_LEN: usize = 64;

/// The first byte of a relay datagram. No QUIC packet starts with it (a
/// long header has its top bit set, a short header its second, and peers
/// of this protocol do not grease that bit).
pub const RELAYED_TAG: u8 = 0x1e;

/// Bytes of a relay datagram before the QUIC packet: the tag and the
/// channel.
pub const DATAGRAM_HEADER_LEN: usize = 9;

/// How a node's router maps its socket, as the node knows it
/// (`docs/swarm.md`, "Its own public address").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingKind {
    /// Not known yet.
    Unknown,
    /// One outside port for every destination (a cone, or no NAT).
    OnePort,
    /// Another outside port for every destination (a symmetric NAT).
    PortPerPeer,
}

impl MappingKind {
    fn byte(self) -> u8 {
        match self {
            MappingKind::Unknown => 0,
            MappingKind::OnePort => 1,
            MappingKind::PortPerPeer => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => MappingKind::Unknown,
            1 => MappingKind::OnePort,
            2 => MappingKind::PortPerPeer,
            _ => return None,
        })
    }
}

/// Why a relay refuses a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefusal {
    /// Its operator lets only some peers register, and not this one.
    NotAllowed,
    /// It holds as many registrations as it takes.
    Full,
    /// A second Register came before it was answered, or too often.
    TooOften,
    /// It holds as many registrations from the node's network (an IPv4
    /// /24, an IPv6 /56) as it takes from one network.
    NetworkFull,
}

/// Why a relay does not introduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntroduceRefusal {
    /// The peer is not registered with it.
    NotRegistered,
    /// The asker named itself.
    NoSelf,
    /// The asker asked for too many introductions lately.
    RateLimited,
    /// It carries as many pairs as it takes.
    TooManyPairs,
    /// The pair has used its bytes for this hour.
    HourUsed,
}

/// Why a channel ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEnd {
    /// Nothing went through it for a while.
    Idle,
    /// The pair used its bytes for this hour.
    HourUsed,
    /// The other node is gone (its registration ended).
    PeerGone,
    /// A newer introduction of the same pair took its place.
    Replaced,
}

macro_rules! reasons {
    ($ty:ty { $($name:ident = $byte:literal, $text:literal;)* }) => {
        impl $ty {
            /// Its byte on the wire.
            pub fn byte(self) -> u8 {
                match self { $(Self::$name => $byte,)* }
            }

            /// The value of a byte, if it names one.
            pub fn from_byte(byte: u8) -> Option<Self> {
                match byte { $($byte => Some(Self::$name),)* _ => None }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$name => $text,)* })
            }
        }
    };
}

reasons!(RegisterRefusal {
    NotAllowed = 1, "its operator does not let this peer register";
    Full = 2, "it holds as many registrations as it takes";
    TooOften = 3, "registered again too soon";
    NetworkFull = 4, "it holds as many registrations from this network as it takes from one";
});

reasons!(IntroduceRefusal {
    NotRegistered = 1, "the peer is not registered with it";
    NoSelf = 2, "a node cannot be introduced to itself";
    RateLimited = 3, "too many introductions asked lately";
    TooManyPairs = 4, "it carries as many pairs as it takes";
    HourUsed = 5, "the pair used its bytes for this hour";
});

reasons!(ChannelEnd {
    Idle = 1, "nothing went through it for a while";
    HourUsed = 2, "the pair used its bytes for this hour";
    PeerGone = 3, "the other node is gone";
    Replaced = 4, "a newer introduction took its place";
});

/// What the relay's operator allows a pair (in [`RelayMessage::Registered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Bytes per second one pair may send through it, both ways together
    /// (0: no cap).
    pub pair_rate: u64,
    /// Bytes one pair may send through it in an hour (0: no cap).
    pub pair_bytes_per_hour: u64,
    /// Seconds without a datagram after which a channel ends.
    pub channel_idle_secs: u32,
}

/// Which side of an introduction a Connect is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRole {
    /// This node asked: it dials the peer (and, where the punch fails,
    /// the channel).
    Dial,
    /// The peer asked: this node opens its router toward the peer and
    /// takes what comes.
    Open,
}

/// One message of the relay protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// Node to relay, first: register this node (the TLS key it proved).
    Register {
        /// Program name and version, printable ASCII.
        agent: String,
        /// Addresses it listens at that peers may reach without its
        /// router (a global IPv6 address, a LAN address): at most
        /// [`MAX_REGISTER_ADDRS`].
        addrs: Vec<SocketAddr>,
        /// How its router maps its socket, as it knows it.
        mapping: MappingKind,
    },
    /// Node to relay: introduce this node to `peer`.
    Introduce {
        /// Whom.
        peer: PeerId,
    },
    /// Relay to node: registered.
    Registered {
        /// Where the relay sees the node's connection come from.
        observed: SocketAddr,
        /// What it allows a pair.
        limits: RelayLimits,
    },
    /// Relay to node: not registered (the relay closes next).
    RegisterRefused {
        /// Why.
        reason: RegisterRefusal,
    },
    /// Relay to both nodes of an introduction.
    Connect {
        /// The other node.
        peer: PeerId,
        /// Where to reach it: its registered LAN addresses when both
        /// nodes come from one public address, then its registered global
        /// IPv6 addresses, then where the relay sees it; at most
        /// [`MAX_RELAY_CONNECT_ADDRS`].
        addrs: Vec<SocketAddr>,
        /// The channel of the pair, for relay datagrams.
        channel: u64,
        /// Dial, or open and take.
        role: ConnectRole,
    },
    /// Relay to the asker: no introduction.
    IntroduceFailed {
        /// The peer asked for.
        peer: PeerId,
        /// Why.
        reason: IntroduceRefusal,
    },
    /// Relay to both nodes of a channel: it ended.
    ChannelClosed {
        /// Which.
        channel: u64,
        /// Why.
        reason: ChannelEnd,
    },
}

/// Why bytes are not a relay message (the sender is to blame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayDecodeError {
    /// Fewer bytes than the frame says.
    #[error("frame incomplete: {needed} bytes needed, {available} there")]
    Incomplete {
        /// Bytes the frame needs, prefix included.
        needed: usize,
        /// Bytes there.
        available: usize,
    },
    /// A frame of length 0.
    #[error("empty frame")]
    EmptyFrame,
    /// A frame over [`MAX_RELAY_FRAME`].
    #[error("frame of {length} bytes, more than {MAX_RELAY_FRAME}")]
    FrameTooLong {
        /// Its length.
        length: u32,
    },
    /// A type this version does not define.
    #[error("unknown relay message type {0:#04x}")]
    UnknownType(u8),
    /// A body cut short.
    #[error("{message} cut short")]
    Truncated {
        /// The message.
        message: &'static str,
    },
    /// Bytes after the last field.
    #[error("{trailing} bytes after the last field of {message}")]
    TrailingBytes {
        /// The message.
        message: &'static str,
        /// How many.
        trailing: usize,
    },
    /// A field that breaks its rule.
    #[error("{message}: {field} {rule}")]
    Field {
        /// The message.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong.
        rule: &'static str,
    },
}

/// Why a message cannot be sent (our own mistake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {message}: {field} {rule}")]
pub struct RelayEncodeError {
    /// The message.
    pub message: &'static str,
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub rule: &'static str,
}

const REGISTER: u8 = 0x01;
const INTRODUCE: u8 = 0x02;
const REGISTERED: u8 = 0x11;
const REGISTER_REFUSED: u8 = 0x12;
const CONNECT: u8 = 0x13;
const INTRODUCE_FAILED: u8 = 0x14;
const CHANNEL_CLOSED: u8 = 0x15;

impl RelayMessage {
    /// Its name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            RelayMessage::Register { .. } => "Register",
            RelayMessage::Introduce { .. } => "Introduce",
            RelayMessage::Registered { .. } => "Registered",
            RelayMessage::RegisterRefused { .. } => "RegisterRefused",
            RelayMessage::Connect { .. } => "Connect",
            RelayMessage::IntroduceFailed { .. } => "IntroduceFailed",
            RelayMessage::ChannelClosed { .. } => "ChannelClosed",
        }
    }

    /// Whether a node sends it (else a relay does).
    pub fn from_node(&self) -> bool {
        matches!(
            self,
            RelayMessage::Register { .. } | RelayMessage::Introduce { .. }
        )
    }

    /// The whole frame, prefix included. Refuses a message that breaks
    /// a rule (too many addresses, an agent too long, port 0).
    pub fn encode(&self) -> Result<Vec<u8>, RelayEncodeError> {
        let name = self.name();
        let refuse = |field, rule| RelayEncodeError {
            message: name,
            field,
            rule,
        };
        let mut body = Vec::with_capacity(64);
        match self {
            RelayMessage::Register {
                agent,
                addrs,
                mapping,
            } => {
                body.push(REGISTER);
                if !valid_agent(agent) {
                    return Err(refuse("agent", "is not 1 to 64 printable ASCII characters"));
                }
                put_text(&mut body, agent);
                put_addrs(&mut body, addrs, MAX_REGISTER_ADDRS)
                    .map_err(|rule| refuse("addrs", rule))?;
                body.push(mapping.byte());
            }
            RelayMessage::Introduce { peer } => {
                body.push(INTRODUCE);
                body.extend_from_slice(&peer.0);
            }
            RelayMessage::Registered { observed, limits } => {
                body.push(REGISTERED);
                put_addr(&mut body, *observed).map_err(|rule| refuse("observed", rule))?;
                body.extend_from_slice(&limits.pair_rate.to_be_bytes());
                body.extend_from_slice(&limits.pair_bytes_per_hour.to_be_bytes());
                body.extend_from_slice(&limits.channel_idle_secs.to_be_bytes());
            }
            RelayMessage::RegisterRefused { reason } => {
                body.push(REGISTER_REFUSED);
                body.push(reason.byte());
            }
            RelayMessage::Connect {
                peer,
                addrs,
                channel,
                role,
            } => {
                body.push(CONNECT);
                body.extend_from_slice(&peer.0);
                put_addrs(&mut body, addrs, MAX_RELAY_CONNECT_ADDRS)
                    .map_err(|rule| refuse("addrs", rule))?;
                body.extend_from_slice(&channel.to_be_bytes());
                body.push(match role {
                    ConnectRole::Dial => 0,
                    ConnectRole::Open => 1,
                });
            }
            RelayMessage::IntroduceFailed { peer, reason } => {
                body.push(INTRODUCE_FAILED);
                body.extend_from_slice(&peer.0);
                body.push(reason.byte());
            }
            RelayMessage::ChannelClosed { channel, reason } => {
                body.push(CHANNEL_CLOSED);
                body.extend_from_slice(&channel.to_be_bytes());
                body.push(reason.byte());
            }
        }
        // Every message fits: the largest (a Connect of 8 IPv6
        // addresses) is 186 bytes.
        let mut frame = Vec::with_capacity(RELAY_FRAME_PREFIX + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// Reads one whole frame from the start of `bytes`: the message and
    /// the bytes it took. `Ok(None)` while the frame is not all there (its
    /// length prefix is checked as soon as its 4 bytes are).
    pub fn decode(bytes: &[u8]) -> Result<Option<(RelayMessage, usize)>, RelayDecodeError> {
        let Some(prefix) = bytes.first_chunk::<RELAY_FRAME_PREFIX>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*prefix);
        if length == 0 {
            return Err(RelayDecodeError::EmptyFrame);
        }
        if length > MAX_RELAY_FRAME {
            return Err(RelayDecodeError::FrameTooLong { length });
        }
        let total = RELAY_FRAME_PREFIX + length as usize;
        let Some(frame) = bytes.get(RELAY_FRAME_PREFIX..total) else {
            return Ok(None);
        };
        Ok(Some((decode_body(frame)?, total)))
    }

    /// [`RelayMessage::decode`] of bytes that must be exactly one frame.
    pub fn decode_exact(bytes: &[u8]) -> Result<RelayMessage, RelayDecodeError> {
        match RelayMessage::decode(bytes)? {
            Some((message, used)) if used == bytes.len() => Ok(message),
            Some((message, used)) => Err(RelayDecodeError::TrailingBytes {
                message: message.name(),
                trailing: bytes.len() - used,
            }),
            None => Err(RelayDecodeError::Incomplete {
                needed: bytes
                    .first_chunk::<RELAY_FRAME_PREFIX>()
                    .map_or(RELAY_FRAME_PREFIX, |p| {
                        RELAY_FRAME_PREFIX + u32::from_be_bytes(*p) as usize
                    }),
                available: bytes.len(),
            }),
        }
    }
}

fn valid_agent(agent: &str) -> bool {
    (1..=MAX_RELAY_AGENT_LEN).contains(&agent.len())
        && agent.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn put_text(body: &mut Vec<u8>, text: &str) {
    body.push(text.len() as u8);
    body.extend_from_slice(text.as_bytes());
}

fn addr_rule(addr: SocketAddr) -> Result<(), &'static str> {
    if addr.port() == 0 {
        return Err("has port 0");
    }
    if let IpAddr::V6(v6) = addr.ip()
        && v6.to_ipv4_mapped().is_some()
    {
        return Err("is an IPv4-mapped IPv6 address (write it as IPv4)");
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err("is unspecified or multicast");
    }
    Ok(())
}

fn put_addr(body: &mut Vec<u8>, addr: SocketAddr) -> Result<(), &'static str> {
    addr_rule(addr)?;
    match addr.ip() {
        IpAddr::V4(v4) => {
            body.push(4);
            body.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            body.push(6);
            body.extend_from_slice(&v6.octets());
        }
    }
    body.extend_from_slice(&addr.port().to_be_bytes());
    Ok(())
}

fn put_addrs(body: &mut Vec<u8>, addrs: &[SocketAddr], max: usize) -> Result<(), &'static str> {
    if addrs.len() > max {
        return Err("has too many addresses");
    }
    body.push(addrs.len() as u8);
    for &addr in addrs {
        put_addr(body, addr)?;
    }
    Ok(())
}

/// Reads a body's fields in order.
struct Body<'a> {
    rest: &'a [u8],
    message: &'static str,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RelayDecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(n) else {
            return Err(RelayDecodeError::Truncated {
                message: self.message,
            });
        };
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, RelayDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RelayDecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u64(&mut self) -> Result<u64, RelayDecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bad(&self, field: &'static str, rule: &'static str) -> RelayDecodeError {
        RelayDecodeError::Field {
            message: self.message,
            field,
            rule,
        }
    }

    fn addr(&mut self, field: &'static str) -> Result<SocketAddr, RelayDecodeError> {
        let ip = match self.byte()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(self.bad(field, "has a family other than 4 and 6")),
        };
        let port = u16::from_be_bytes(self.array()?);
        let addr = SocketAddr::new(ip, port);
        addr_rule(addr).map_err(|rule| self.bad(field, rule))?;
        Ok(addr)
    }

    fn addrs(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<SocketAddr>, RelayDecodeError> {
        let count = usize::from(self.byte()?);
        if count > max {
            return Err(self.bad(field, "has too many addresses"));
        }
        (0..count).map(|_| self.addr(field)).collect()
    }

    fn peer(&mut self) -> Result<PeerId, RelayDecodeError> {
        Ok(PeerId(self.array()?))
    }

    fn finish(self) -> Result<(), RelayDecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            trailing => Err(RelayDecodeError::TrailingBytes {
                message: self.message,
                trailing,
            }),
        }
    }
}

fn decode_body(frame: &[u8]) -> Result<RelayMessage, RelayDecodeError> {
    let (&kind, rest) = frame.split_first().ok_or(RelayDecodeError::EmptyFrame)?;
    let message = match kind {
        REGISTER => "Register",
        INTRODUCE => "Introduce",
        REGISTERED => "Registered",
        REGISTER_REFUSED => "RegisterRefused",
        CONNECT => "Connect",
        INTRODUCE_FAILED => "IntroduceFailed",
        CHANNEL_CLOSED => "ChannelClosed",
        other => return Err(RelayDecodeError::UnknownType(other)),
    };
    let mut body = Body { rest, message };
    let decoded = match kind {
        REGISTER => {
            let len = usize::from(body.byte()?);
            let text = body.take(len)?;
            let agent = std::str::from_utf8(text)
                .ok()
                .filter(|agent| valid_agent(agent))
                .ok_or_else(|| body.bad("agent", "is not 1 to 64 printable ASCII characters"))?
                .to_owned();
            let addrs = body.addrs("addrs", MAX_REGISTER_ADDRS)?;
            let mapping = MappingKind::from_byte(body.byte()?)
                .ok_or_else(|| body.bad("mapping", "is not 0, 1 or 2"))?;
            RelayMessage::Register {
                agent,
                addrs,
                mapping,
            }
        }
        INTRODUCE => RelayMessage::Introduce { peer: body.peer()? },
        REGISTERED => RelayMessage::Registered {
            observed: body.addr("observed")?,
            limits: RelayLimits {
                pair_rate: body.u64()?,
                pair_bytes_per_hour: body.u64()?,
                channel_idle_secs: u32::from_be_bytes(body.array()?),
            },
        },
        REGISTER_REFUSED => RelayMessage::RegisterRefused {
            reason: RegisterRefusal::from_byte(body.byte()?)
                .ok_or_else(|| body.bad("reason", "is not a known reason"))?,
        },
        CONNECT => {
            let peer = body.peer()?;
            let addrs = body.addrs("addrs", MAX_RELAY_CONNECT_ADDRS)?;
            let channel = body.u64()?;
            let role = match body.byte()? {
                0 => ConnectRole::Dial,
                1 => ConnectRole::Open,
                _ => return Err(body.bad("role", "is not 0 or 1")),
            };
            RelayMessage::Connect {
                peer,
                addrs,
                channel,
                role,
            }
        }
        INTRODUCE_FAILED => RelayMessage::IntroduceFailed {
            peer: body.peer()?,
            reason: IntroduceRefusal::from_byte(body.byte()?)
                .ok_or_else(|| body.bad("reason", "is not a known reason"))?,
        },
        CHANNEL_CLOSED => RelayMessage::ChannelClosed {
            channel: body.u64()?,
            reason: ChannelEnd::from_byte(body.byte()?)
                .ok_or_else(|| body.bad("reason", "is not a known reason"))?,
        },
        _ => unreachable!("the type was matched above"),
    };
    body.finish()?;
    Ok(decoded)
}

/// A relay datagram's channel and QUIC packet, or `None` when `datagram`
/// is not one (another first byte, or no packet after the header).
pub fn relay_datagram(datagram: &[u8]) -> Option<(u64, &[u8])> {
    let (header, packet) = datagram.split_at_checked(DATAGRAM_HEADER_LEN)?;
    if header[0] != RELAYED_TAG || packet.is_empty() {
        return None;
    }
    let channel = u64::from_be_bytes(header[1..].try_into().ok()?);
    Some((channel, packet))
}

/// Writes the relay datagram of `packet` on `channel` into `out`.
pub fn write_relay_datagram(channel: u64, packet: &[u8], out: &mut Vec<u8>) {
    out.push(RELAYED_TAG);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(packet);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn every_kind() -> Vec<RelayMessage> {
        vec![
            RelayMessage::Register {
                agent: "minimodel/0.1.0".into(),
                addrs: vec![sa("[2a01:4f8::2]:4433"), sa("192.168.1.2:4433")],
                mapping: MappingKind::OnePort,
            },
            RelayMessage::Introduce {
                peer: PeerId([7; 32]),
            },
            RelayMessage::Registered {
                observed: sa("81.2.69.30:4433"),
                limits: RelayLimits {
                    pair_rate: 2_500_000,
                    pair_bytes_per_hour: 1 << 30,
                    channel_idle_secs: 60,
                },
            },
            RelayMessage::RegisterRefused {
                reason: RegisterRefusal::Full,
            },
            RelayMessage::Connect {
                peer: PeerId([9; 32]),
                addrs: vec![sa("81.2.69.31:61000")],
                channel: 0x0102_0304_0506_0708,
                role: ConnectRole::Open,
            },
            RelayMessage::IntroduceFailed {
                peer: PeerId([9; 32]),
                reason: IntroduceRefusal::NotRegistered,
            },
            RelayMessage::ChannelClosed {
                channel: 5,
                reason: ChannelEnd::HourUsed,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_a_stream_decodes_frame_by_frame() {
        let mut stream = Vec::new();
        for message in every_kind() {
            let frame = message.encode().unwrap();
            assert_eq!(RelayMessage::decode_exact(&frame).unwrap(), message);
            stream.extend(frame);
        }
        let mut read = 0;
        let mut decoded = Vec::new();
        while let Some((message, used)) = RelayMessage::decode(&stream[read..]).unwrap() {
            decoded.push(message);
            read += used;
        }
        assert_eq!(decoded, every_kind());
        assert_eq!(read, stream.len());
        // Cut anywhere: not yet a frame, never an error.
        let first = every_kind()[0].encode().unwrap();
        for cut in 0..first.len() {
            assert_eq!(
                RelayMessage::decode(&first[..cut]),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn what_breaks_a_rule_is_refused_with_its_field() {
        let frame = |body: &[u8]| {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(body);
            frame
        };
        let cases: Vec<(Vec<u8>, RelayDecodeError)> = vec![
            (vec![0, 0, 0, 0], RelayDecodeError::EmptyFrame),
            (
                vec![0, 0, 2, 1],
                RelayDecodeError::FrameTooLong { length: 513 },
            ),
            (frame(&[0x7f]), RelayDecodeError::UnknownType(0x7f)),
            (
                frame(&[INTRODUCE, 1, 2]),
                RelayDecodeError::Truncated {
                    message: "Introduce",
                },
            ),
            (
                frame(&[REGISTER_REFUSED, 1, 0]),
                RelayDecodeError::TrailingBytes {
                    message: "RegisterRefused",
                    trailing: 1,
                },
            ),
            (
                frame(&[REGISTER_REFUSED, 9]),
                RelayDecodeError::Field {
                    message: "RegisterRefused",
                    field: "reason",
                    rule: "is not a known reason",
                },
            ),
            (
                frame(&[REGISTER, 0, 0, 0]),
                RelayDecodeError::Field {
                    message: "Register",
                    field: "agent",
                    rule: "is not 1 to 64 printable ASCII characters",
                },
            ),
            (
                frame(&[REGISTER, 1, b'a', 5]),
                RelayDecodeError::Field {
                    message: "Register",
                    field: "addrs",
                    rule: "has too many addresses",
                },
            ),
            (
                frame(&[REGISTER, 1, b'a', 1, 5, 1, 2, 3, 4, 0, 1]),
                RelayDecodeError::Field {
                    message: "Register",
                    field: "addrs",
                    rule: "has a family other than 4 and 6",
                },
            ),
            (
                frame(&[REGISTER, 1, b'a', 1, 4, 1, 2, 3, 4, 0, 0, 0]),
                RelayDecodeError::Field {
                    message: "Register",
                    field: "addrs",
                    rule: "has port 0",
                },
            ),
            (
                frame(&[REGISTER, 1, b'a', 0, 3]),
                RelayDecodeError::Field {
                    message: "Register",
                    field: "mapping",
                    rule: "is not 0, 1 or 2",
                },
            ),
        ];
        for (bytes, error) in cases {
            assert_eq!(
                RelayMessage::decode_exact(&bytes),
                Err(error.clone()),
                "{bytes:02x?}"
            );
        }
        // A Connect with a role other than 0 and 1, and one naming an
        // IPv4-mapped IPv6 address.
        let mut connect = RelayMessage::Connect {
            peer: PeerId([1; 32]),
            addrs: vec![],
            channel: 1,
            role: ConnectRole::Dial,
        }
        .encode()
        .unwrap();
        *connect.last_mut().unwrap() = 2;
        assert!(matches!(
            RelayMessage::decode_exact(&connect),
            Err(RelayDecodeError::Field { field: "role", .. })
        ));
        let mapped = RelayMessage::Registered {
            observed: sa("[::ffff:81.2.69.30]:4433"),
            limits: RelayLimits {
                pair_rate: 0,
                pair_bytes_per_hour: 0,
                channel_idle_secs: 60,
            },
        };
        assert_eq!(
            mapped.encode().unwrap_err().field,
            "observed",
            "written as IPv4 only"
        );
        // Too many addresses or a long agent are ours to refuse.
        let long = RelayMessage::Register {
            agent: "a".repeat(65),
            addrs: vec![],
            mapping: MappingKind::Unknown,
        };
        assert_eq!(long.encode().unwrap_err().field, "agent");
        let many = RelayMessage::Register {
            agent: "a".into(),
            addrs: vec![sa("10.0.0.1:1"); 5],
            mapping: MappingKind::Unknown,
        };
        assert_eq!(many.encode().unwrap_err().field, "addrs");
    }

    #[test]
    fn a_relay_datagram_is_its_tag_channel_and_packet() {
        let mut datagram = Vec::new();
        write_relay_datagram(0xabcd, &[0xc0, 1, 2], &mut datagram);
        assert_eq!(datagram.len(), DATAGRAM_HEADER_LEN + 3);
        assert_eq!(relay_datagram(&datagram), Some((0xabcd, &[0xc0, 1, 2][..])));
        assert_eq!(relay_datagram(&datagram[..DATAGRAM_HEADER_LEN]), None);
        datagram[0] = 0xc0;
        assert_eq!(relay_datagram(&datagram), None);
        assert_eq!(relay_datagram(&[]), None);
    }
}
