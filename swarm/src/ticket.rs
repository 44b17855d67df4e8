//! Tickets (`docs/formats.md`, "Ticket"): one printable string that a
//! sender shares instead of a manifest and an offer, `mm1...`.
//!
//! A ticket carries the SHA-256 of the manifest file's bytes, the key id
//! of its publisher key when the manifest is signed, up to
//! [`MAX_TICKET_PEERS`] peers with one to [`MAX_TICKET_ADDRS`] addresses
//! each, and up to [`MAX_TICKET_MIRRORS`] mirrors (HTTPS copies of the
//! artifact, with the manifest beside them): at least one peer or mirror.
//! A receiver fetches the manifest from the peers (or beside a mirror), keeps it only if
//! its bytes hash to the ticket's digest (and, when the ticket names a key
//! id, its signature is by that key), and only then trusts anything else
//! in it. What travels in the ticket is a claim until then: the peers are
//! places to ask, never vouched for.
//!
//! Encoding: the binary form below, then its check (the first 4 bytes of
//! its SHA-256), in lowercase RFC 4648 base32 without padding, after the
//! prefix `mm1` (the `1` is the version: `1` is not a base32 symbol, so
//! the prefix never runs into the data). Integers are big-endian.
//!
//! ```text
//! flags            1    bit 0: a key id follows; bit 1: relays follow each
//!                       peer's addresses; the other bits are 0
//! manifest sha256  32
//! key id           10   only with flag bit 0
//! peer count       1    1 to 4
//! per peer:
//!   peer id        32   its Ed25519 key (docs/transport.md)
//!   address count  1    1 to 4
//!   per address:
//!     family       1    4 (then 4 bytes) or 6 (then 16 bytes)
//!     ip           4 or 16
//!     port         2    not 0
//!   relay count    1    only with flag bit 1: 0 to 2
//!   per relay:     a relay the peer is registered with (docs/relay.md)
//!     relay id     32   the key the relay proves
//!     family, ip, port  as an address
//! check            4    first 4 bytes of SHA-256 of everything before
//! ```
//!
//! Flag bit 1 is set only when some peer names a relay; flag bit 2 only
//! when the ticket names a mirror.
//!
//! A reader checks, in order: the prefix, the length (before decoding),
//! the alphabet, the unused bits of the last character, the check, then
//! the fields as above, then that no byte follows. Uppercase reads as
//! lowercase (a ticket read from a QR code); writers write lowercase.
//!
//! With flag bit 2, mirrors follow the peers (`docs/swarm.md`, "Mirrors"),
//! and the peer count may be 0:
//!
//! ```text
//! mirror count     1    1 to 2
//! per mirror:
//!   length         2    1 to 512
//!   url            by length: an https:// mirror URL without a query
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::mirror_url::{MirrorUrl, Plain};
use minimodel_verifier::signing::PublisherKeyId;
use minimodel_verifier::signing::keys::KEY_ID_BYTES;
use minimodel_wire::PeerId;

use crate::offer::check_offer_addr;
use crate::peers::PeerAddrs;
use crate::relay::RelayAddr;

/// How every ticket starts; the `1` is its version.
pub const TICKET_PREFIX: &str = "mm1";
/// `text` as a ticket would be read, when it looks like one: what is
/// left after blanks around it (a paste often brings some) starts with
/// [`TICKET_PREFIX`], in either case. Whether it is a valid ticket is the
/// parser's to say.
pub fn ticket_like(text: &str) -> Option<&str> {
    let text = text.trim();
    text.get(..TICKET_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(TICKET_PREFIX))
        .then_some(text)
}

/// Most peers a ticket names.
pub const MAX_TICKET_PEERS: usize = 4;
/// Most addresses of one peer in a ticket.
pub const MAX_TICKET_ADDRS: usize = 4;
/// Most relays of one peer in a ticket.
pub const MAX_TICKET_RELAYS: usize = 2;
/// Most mirrors a ticket names.
pub const MAX_TICKET_MIRRORS: usize = 2;
/// Longest mirror URL a ticket carries, in bytes (the mirror URL rules
/// allow longer ones, with a query a ticket does not carry).
pub const MAX_TICKET_MIRROR_LEN: usize = 512;
/// Bytes of the check at the end.
const CHECK_LEN: usize = 4;
/// Flag bit 0: a key id follows the digest.
const FLAG_KEY_ID: u8 = 1;
/// Flag bit 1: relays follow each peer's addresses.
const FLAG_RELAYS: u8 = 2;
/// Flag bit 2: mirrors follow the peers.
const FLAG_MIRRORS: u8 = 4;
/// The largest binary form: every peer with every address and relay in
/// IPv6, and every mirror as long as it may be.
const MAX_BINARY_LEN: usize = 1
    + 32
    + KEY_ID_BYTES
    + 1
    + MAX_TICKET_PEERS * (32 + 1 + MAX_TICKET_ADDRS * 19 + 1 + MAX_TICKET_RELAYS * (32 + 19))
    + 1
    + MAX_TICKET_MIRRORS * (2 + MAX_TICKET_MIRROR_LEN)
    + CHECK_LEN;
/// The longest ticket: the prefix and the base32 of the largest binary
/// form (3,083 characters). A typical ticket (signed, one peer, one IPv4
/// and one IPv6 address) is 175; with one relay (IPv4), 239; with a
/// mirror of 40 characters instead, 243.
pub const MAX_TICKET_LEN: usize = TICKET_PREFIX.len() + (MAX_BINARY_LEN * 8).div_ceil(5);

/// RFC 4648 base32, lowercase, no padding; uppercase reads as lowercase.
/// The decoder checks that the last character's unused bits are zero.
static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.encoding()
        .expect("lowercase RFC 4648 base32 is a valid specification")
});

/// One string to share: where to get a manifest and how to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// SHA-256 of the manifest file's bytes.
    pub manifest_sha256: Sha256Digest,
    /// The key id of the publisher key that signed the manifest, when it
    /// is signed.
    pub key_id: Option<PublisherKeyId>,
    /// Peers that serve the manifest and the artifact, each with its
    /// addresses.
    pub peers: Vec<PeerAddrs>,
    /// The relays a peer is registered with ("reach me via"), for the
    /// peers that name any (`docs/relay.md`), in the peers' order.
    pub relays: Vec<PeerRelays>,
    /// HTTPS copies of the artifact (each without a query), with the
    /// manifest at `URL.manifest` beside each: sources as a
    /// `fetch --mirror` is.
    pub mirrors: Vec<MirrorUrl>,
}

/// The relays one peer of a ticket names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRelays {
    /// The peer.
    pub peer: PeerId,
    /// 1 to [`MAX_TICKET_RELAYS`] relays, each with the key it proves.
    pub relays: Vec<RelayAddr>,
}

/// Why a ticket is refused. The messages are for the person who pasted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// It does not start with `mm1`.
    #[error("not a ticket: a minimodel ticket starts with mm1")]
    Prefix,
    /// Longer than any ticket.
    #[error("not a ticket: {len} characters, more than any ticket ({MAX_TICKET_LEN})")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside base32.
    #[error(
        "not a ticket: character {position} is {found:?}; after mm1 a ticket uses only a-z and 2-7"
    )]
    Character {
        /// Its position, counted from 1 as a person counts.
        position: usize,
        /// The character.
        found: char,
    },
    /// The last character carries bits that must be zero, or the length is
    /// one no encoding has: cut or mistyped.
    #[error("the ticket was cut or mistyped: its length or last character cannot end a ticket")]
    Encoding,
    /// The check does not match: mistyped, cut, or changed.
    #[error("the ticket was mistyped, cut or changed: its check does not match")]
    Check,
    /// The binary form ends inside a field.
    #[error("the ticket ends inside its {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("the ticket has {0} bytes after its last field")]
    TrailingBytes(usize),
    /// Flag bits this version does not know.
    #[error("the ticket sets flags {0:#04x} this version does not know (a newer ticket?)")]
    Flags(u8),
    /// No peer (and no mirror), or too many.
    #[error(
        "the ticket names {0} peers; a ticket names 1 to {MAX_TICKET_PEERS}, or none when it names a mirror"
    )]
    PeerCount(usize),
    /// A peer with no address, or too many.
    #[error("peer {peer} has {count} addresses; a ticket gives each peer 1 to {MAX_TICKET_ADDRS}")]
    AddrCount {
        /// The peer's id.
        peer: String,
        /// How many addresses.
        count: usize,
    },
    /// An address family that is neither 4 nor 6.
    #[error("unknown address family {0} (4 or 6)")]
    Family(u8),
    /// An address nobody can dial, or one written in a second way.
    #[error("peer {peer}: {reason}")]
    Addr {
        /// The peer's id.
        peer: String,
        /// What is wrong.
        reason: String,
    },
    /// The same peer twice.
    #[error("peer {0} is named twice")]
    DuplicatePeer(String),
    /// The same address twice for one peer.
    #[error("peer {peer} lists {addr} twice")]
    DuplicateAddr {
        /// The peer's id.
        peer: String,
        /// The address.
        addr: SocketAddr,
    },
    /// A peer with more relays than a ticket carries, or a relay flag
    /// with no relay.
    #[error(
        "the ticket names {count} relays for a peer; a ticket names 0 to {MAX_TICKET_RELAYS} per peer, and at least one in all when its relay flag is set"
    )]
    RelayCount {
        /// How many.
        count: usize,
    },
    /// A relay nobody can dial, one without its key, or one written a
    /// second way.
    #[error("peer {peer}'s relay: {reason}")]
    RelayAddr {
        /// The peer's id.
        peer: String,
        /// What is wrong.
        reason: String,
    },
    /// The same relay twice for one peer.
    #[error("peer {peer} names relay {relay} twice")]
    DuplicateRelay {
        /// The peer's id.
        peer: String,
        /// The relay.
        relay: String,
    },
    /// A mirror flag with no mirror, or more mirrors than a ticket carries.
    #[error(
        "the ticket names {0} mirrors; a ticket names 1 to {MAX_TICKET_MIRRORS} when its mirror flag is set"
    )]
    MirrorCount(usize),
    /// A mirror URL of no length, or longer than a ticket carries.
    #[error(
        "a mirror URL of the ticket is {0} bytes; a ticket carries 1 to {MAX_TICKET_MIRROR_LEN}"
    )]
    MirrorLength(usize),
    /// A mirror that is not an `https://` mirror URL without a query.
    #[error("mirror {shown}: {reason}")]
    Mirror {
        /// The URL as a message shows it (no query, no user information).
        shown: String,
        /// What is wrong.
        reason: String,
    },
    /// The same mirror twice.
    #[error("mirror {0} is named twice")]
    DuplicateMirror(String),
}

impl TicketError {
    /// A stable name for the error (the vectors of `fixtures/ticket/` use
    /// it).
    pub fn code(&self) -> &'static str {
        match self {
            TicketError::Prefix => "prefix",
            TicketError::TooLong { .. } => "too-long",
            TicketError::Character { .. } => "character",
            TicketError::Encoding => "encoding",
            TicketError::Check => "check",
            TicketError::Truncated(_) => "truncated",
            TicketError::TrailingBytes(_) => "trailing-bytes",
            TicketError::Flags(_) => "flags",
            TicketError::PeerCount(_) => "peer-count",
            TicketError::AddrCount { .. } => "address-count",
            TicketError::Family(_) => "family",
            TicketError::Addr { .. } => "address",
            TicketError::DuplicatePeer(_) => "duplicate-peer",
            TicketError::DuplicateAddr { .. } => "duplicate-address",
            TicketError::RelayCount { .. } => "relay-count",
            TicketError::RelayAddr { .. } => "relay-address",
            TicketError::DuplicateRelay { .. } => "duplicate-relay",
            TicketError::MirrorCount(_) => "mirror-count",
            TicketError::MirrorLength(_) => "mirror-length",
            TicketError::Mirror { .. } => "mirror",
            TicketError::DuplicateMirror(_) => "duplicate-mirror",
        }
    }
}

impl Ticket {
    /// Whether `manifest` is one this ticket vouches for by its key: the
    /// ticket names no key, or the manifest's signature verifies with the
    /// key it names. (Its bytes are checked against the ticket's SHA-256
    /// when they are fetched.)
    pub fn signed_as_named(&self, manifest: &minimodel_verifier::manifest::Manifest) -> bool {
        let Some(key_id) = self.key_id else {
            return true;
        };
        minimodel_verifier::signing::manifest::check_manifest_signature(manifest)
            .ok()
            .flatten()
            .is_some_and(|key| key.key_id() == key_id)
    }

    /// A ticket, checked as a reader will check it: 1 to 4 peers, each
    /// named once with 1 to 4 distinct addresses a peer can dial. An IPv6
    /// address that maps an IPv4 one is written as the IPv4 address (one
    /// way to write each); a v6 scope or flow label is not carried.
    pub fn new(
        manifest_sha256: Sha256Digest,
        key_id: Option<PublisherKeyId>,
        peers: Vec<PeerAddrs>,
    ) -> Result<Ticket, TicketError> {
        Ticket::with_sources(manifest_sha256, key_id, peers, Vec::new())
    }

    /// A ticket with mirrors too: as [`Ticket::new`], with 0 to
    /// [`MAX_TICKET_MIRRORS`] mirrors, each an `https://` mirror URL
    /// without a query and named once; no peer is needed when a mirror is
    /// named.
    pub fn with_sources(
        manifest_sha256: Sha256Digest,
        key_id: Option<PublisherKeyId>,
        peers: Vec<PeerAddrs>,
        mirrors: Vec<MirrorUrl>,
    ) -> Result<Ticket, TicketError> {
        let peers = peers
            .into_iter()
            .map(|peer| PeerAddrs {
                id: peer.id,
                addrs: peer
                    .addrs
                    .into_iter()
                    .map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port()))
                    .collect(),
            })
            .collect();
        let ticket = Ticket {
            manifest_sha256,
            key_id,
            peers,
            relays: Vec::new(),
            mirrors,
        };
        ticket.check()?;
        Ok(ticket)
    }

    /// The ticket with `relays` for its peers (each entry's peer one of
    /// its own, each relay with its key), checked as a reader will check
    /// it. An entry with no relay is left out.
    pub fn with_relays(mut self, relays: Vec<PeerRelays>) -> Result<Ticket, TicketError> {
        let canonical = |relay: RelayAddr| RelayAddr {
            addr: SocketAddr::new(relay.addr.ip().to_canonical(), relay.addr.port()),
            ..relay
        };
        self.relays = self
            .peers
            .iter()
            .filter_map(|peer| {
                let named: Vec<RelayAddr> = relays
                    .iter()
                    .filter(|entry| entry.peer == peer.id)
                    .flat_map(|entry| entry.relays.iter().copied().map(canonical))
                    .collect();
                (!named.is_empty()).then_some(PeerRelays {
                    peer: peer.id,
                    relays: named,
                })
            })
            .collect();
        self.check()?;
        Ok(self)
    }

    /// Adds the ticket's mirrors to the mirror URLs `given` (a person's
    /// `--mirror`s, a request's `mirrors`), after them, each not given
    /// already, while they are fewer than a download takes
    /// ([`minimodel_node::node::MAX_MIRRORS`]): the ticket's mirrors are
    /// sources as those are.
    pub fn add_mirrors_to(&self, given: &mut Vec<String>) {
        for url in &self.mirrors {
            if given.len() >= minimodel_node::node::MAX_MIRRORS {
                return;
            }
            let known = given.iter().any(|text| {
                MirrorUrl::parse(text, Plain::Allowed).is_ok_and(|u| u.label() == url.label())
            });
            if !known {
                given.push(url.expose());
            }
        }
    }

    /// The relays peer `peer` names.
    pub fn relays_of(&self, peer: &PeerId) -> &[RelayAddr] {
        self.relays
            .iter()
            .find(|entry| entry.peer == *peer)
            .map_or(&[], |entry| &entry.relays)
    }

    /// The rules a reader applies: the peers' first, then their relays',
    /// then the mirrors'.
    fn check(&self) -> Result<(), TicketError> {
        if (self.peers.is_empty() && self.mirrors.is_empty()) || self.peers.len() > MAX_TICKET_PEERS
        {
            return Err(TicketError::PeerCount(self.peers.len()));
        }
        self.check_peers()?;
        self.check_relays()?;
        self.check_mirrors()
    }

    /// The rules a reader applies to the mirrors: each an `https://`
    /// mirror URL (the `fetch --mirror` rules) without a query, named once.
    fn check_mirrors(&self) -> Result<(), TicketError> {
        if self.mirrors.len() > MAX_TICKET_MIRRORS {
            return Err(TicketError::MirrorCount(self.mirrors.len()));
        }
        for (at, url) in self.mirrors.iter().enumerate() {
            let text = url.expose();
            if text.is_empty() || text.len() > MAX_TICKET_MIRROR_LEN {
                return Err(TicketError::MirrorLength(text.len()));
            }
            check_mirror_text(&text)?;
            if self.mirrors[..at]
                .iter()
                .any(|known| known.label() == url.label())
            {
                return Err(TicketError::DuplicateMirror(url.label()));
            }
        }
        Ok(())
    }

    /// The rules a reader applies to the relays.
    fn check_relays(&self) -> Result<(), TicketError> {
        for entry in &self.relays {
            let peer = || entry.peer.to_string();
            if entry.relays.is_empty() || entry.relays.len() > MAX_TICKET_RELAYS {
                return Err(TicketError::RelayCount {
                    count: entry.relays.len(),
                });
            }
            if !self.peers.iter().any(|p| p.id == entry.peer) {
                return Err(TicketError::RelayAddr {
                    peer: peer(),
                    reason: "names a peer the ticket does not".into(),
                });
            }
            for (at, relay) in entry.relays.iter().enumerate() {
                if relay.id.is_none() {
                    return Err(TicketError::RelayAddr {
                        peer: peer(),
                        reason: format!("{relay} has no key to pin"),
                    });
                }
                check_offer_addr(relay.addr).map_err(|reason| TicketError::RelayAddr {
                    peer: peer(),
                    reason,
                })?;
                if matches!(relay.addr.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
                    return Err(TicketError::RelayAddr {
                        peer: peer(),
                        reason: format!("{} maps an IPv4 address", relay.addr),
                    });
                }
                if entry.relays[..at].contains(relay) {
                    return Err(TicketError::DuplicateRelay {
                        peer: peer(),
                        relay: relay.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The rules a reader applies to the peers, once their count is
    /// checked.
    fn check_peers(&self) -> Result<(), TicketError> {
        for (index, peer) in self.peers.iter().enumerate() {
            let name = || peer.id.to_string();
            if self.peers[..index].iter().any(|other| other.id == peer.id) {
                return Err(TicketError::DuplicatePeer(name()));
            }
            if peer.addrs.is_empty() || peer.addrs.len() > MAX_TICKET_ADDRS {
                return Err(TicketError::AddrCount {
                    peer: name(),
                    count: peer.addrs.len(),
                });
            }
            for (at, addr) in peer.addrs.iter().enumerate() {
                check_offer_addr(*addr).map_err(|reason| TicketError::Addr {
                    peer: name(),
                    reason,
                })?;
                let mapped = match addr.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
                    IpAddr::V4(_) => false,
                };
                if mapped {
                    return Err(TicketError::Addr {
                        peer: name(),
                        reason: format!("{addr} maps an IPv4 address; a ticket writes it as IPv4"),
                    });
                }
                if peer.addrs[..at].contains(addr) {
                    return Err(TicketError::DuplicateAddr {
                        peer: name(),
                        addr: *addr,
                    });
                }
            }
        }
        Ok(())
    }

    /// The binary form with its check.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_BINARY_LEN);
        let relays = !self.relays.is_empty();
        out.push(
            if self.key_id.is_some() {
                FLAG_KEY_ID
            } else {
                0
            } | if relays { FLAG_RELAYS } else { 0 }
                | if self.mirrors.is_empty() {
                    0
                } else {
                    FLAG_MIRRORS
                },
        );
        out.extend_from_slice(self.manifest_sha256.as_bytes());
        if let Some(key_id) = &self.key_id {
            out.extend_from_slice(&key_id.0);
        }
        out.push(self.peers.len() as u8);
        for peer in &self.peers {
            out.extend_from_slice(peer.id.as_bytes());
            out.push(peer.addrs.len() as u8);
            for addr in &peer.addrs {
                put_addr(&mut out, *addr);
            }
            if relays {
                let named = self.relays_of(&peer.id);
                out.push(named.len() as u8);
                for relay in named {
                    out.extend_from_slice(relay.id.unwrap_or(PeerId([0; 32])).as_bytes());
                    put_addr(&mut out, relay.addr);
                }
            }
        }
        if !self.mirrors.is_empty() {
            out.push(self.mirrors.len() as u8);
            for url in &self.mirrors {
                let text = url.expose();
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        let check = Sha256Digest::of(&out);
        out.extend_from_slice(&check.as_bytes()[..CHECK_LEN]);
        out
    }

    /// Reads the binary form with its check (what follows the prefix,
    /// decoded).
    pub fn from_bytes(bytes: &[u8]) -> Result<Ticket, TicketError> {
        if bytes.len() < CHECK_LEN {
            return Err(TicketError::Truncated("check"));
        }
        let (body, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        if Sha256Digest::of(body).as_bytes()[..CHECK_LEN] != *check {
            return Err(TicketError::Check);
        }
        let mut reader = Reader { rest: body };
        let flags = reader.byte("flags")?;
        let known = FLAG_KEY_ID | FLAG_RELAYS | FLAG_MIRRORS;
        if flags & !known != 0 {
            return Err(TicketError::Flags(flags & !known));
        }
        let manifest_sha256 = Sha256Digest(reader.array::<32>("manifest digest")?);
        let key_id = if flags & FLAG_KEY_ID != 0 {
            Some(PublisherKeyId(reader.array::<KEY_ID_BYTES>("key id")?))
        } else {
            None
        };
        let peer_count = usize::from(reader.byte("peer count")?);
        if (peer_count == 0 && flags & FLAG_MIRRORS == 0) || peer_count > MAX_TICKET_PEERS {
            return Err(TicketError::PeerCount(peer_count));
        }
        let mut peers = Vec::with_capacity(peer_count);
        let mut relays = Vec::new();
        for _ in 0..peer_count {
            let id = PeerId(reader.array::<32>("peer id")?);
            let count = usize::from(reader.byte("address count")?);
            if count == 0 || count > MAX_TICKET_ADDRS {
                return Err(TicketError::AddrCount {
                    peer: id.to_string(),
                    count,
                });
            }
            let mut addrs = Vec::with_capacity(count);
            for _ in 0..count {
                addrs.push(reader.addr()?);
            }
            if flags & FLAG_RELAYS != 0 {
                let count = usize::from(reader.byte("relay count")?);
                if count > MAX_TICKET_RELAYS {
                    return Err(TicketError::RelayCount { count });
                }
                let mut named = Vec::with_capacity(count);
                for _ in 0..count {
                    let relay = PeerId(reader.array::<32>("relay id")?);
                    named.push(RelayAddr {
                        id: Some(relay),
                        addr: reader.addr()?,
                    });
                }
                if !named.is_empty() {
                    relays.push(PeerRelays {
                        peer: id,
                        relays: named,
                    });
                }
            }
            peers.push(PeerAddrs { id, addrs });
        }
        let mut mirror_texts = Vec::new();
        if flags & FLAG_MIRRORS != 0 {
            let count = usize::from(reader.byte("mirror count")?);
            if count == 0 || count > MAX_TICKET_MIRRORS {
                return Err(TicketError::MirrorCount(count));
            }
            for _ in 0..count {
                let len = usize::from(u16::from_be_bytes(reader.array::<2>("mirror length")?));
                if len == 0 || len > MAX_TICKET_MIRROR_LEN {
                    return Err(TicketError::MirrorLength(len));
                }
                mirror_texts.push(reader.bytes(len, "mirror URL")?);
            }
        }
        if !reader.rest.is_empty() {
            return Err(TicketError::TrailingBytes(reader.rest.len()));
        }
        if flags & FLAG_RELAYS != 0 && relays.is_empty() {
            // One spelling: the flag says some peer names a relay.
            return Err(TicketError::RelayCount { count: 0 });
        }
        // The peers' and relays' rules come before the mirrors'.
        let mut ticket = Ticket {
            manifest_sha256,
            key_id,
            peers,
            relays,
            mirrors: Vec::new(),
        };
        ticket.check_peers()?;
        ticket.check_relays()?;
        for bytes in mirror_texts {
            let text = String::from_utf8_lossy(bytes);
            ticket.mirrors.push(check_mirror_text(&text)?);
        }
        ticket.check_mirrors()?;
        Ok(ticket)
    }
}

/// Why mirrors a writer names cannot be in a ticket ([`ticket_mirrors`]);
/// its words never show a query.
#[derive(Debug, thiserror::Error)]
pub enum TicketMirrorsError {
    /// More than [`MAX_TICKET_MIRRORS`].
    #[error("{0} mirrors given; a ticket names at most {MAX_TICKET_MIRRORS}")]
    TooMany(usize),
    /// Not a mirror URL by the rules of any mirror a person gives, or one
    /// given twice.
    #[error(transparent)]
    Given(#[from] crate::mirror::given::GivenMirrorsError),
    /// With a query, which a ticket does not carry.
    #[error(
        "mirror {0}: a ticket carries no query (it may hold a credential); a token goes in MINIMODEL_MIRROR_TOKENS of whoever fetches"
    )]
    Query(String),
    /// Longer than [`MAX_TICKET_MIRROR_LEN`] bytes.
    #[error(
        "mirror {label}: {len} bytes; a ticket carries mirror URLs of at most {MAX_TICKET_MIRROR_LEN}"
    )]
    TooLong {
        /// The mirror, without its query.
        label: String,
        /// Its bytes.
        len: usize,
    },
}

/// The mirrors `texts` a writer names in a ticket (`ticket new --mirror`,
/// `seed --mirror`, a companion share's `mirrors`): at most
/// [`MAX_TICKET_MIRRORS`], each an `https://` mirror URL without a query
/// of at most [`MAX_TICKET_MIRROR_LEN`] bytes, none twice.
pub fn ticket_mirrors(texts: &[String]) -> Result<Vec<MirrorUrl>, TicketMirrorsError> {
    if texts.len() > MAX_TICKET_MIRRORS {
        return Err(TicketMirrorsError::TooMany(texts.len()));
    }
    // The rules of any mirror a person gives, each once.
    let urls = crate::mirror::given::parse_given(texts, Plain::Refused)?;
    for url in &urls {
        if url.has_query() {
            return Err(TicketMirrorsError::Query(url.label()));
        }
        let len = url.expose().len();
        if len > MAX_TICKET_MIRROR_LEN {
            return Err(TicketMirrorsError::TooLong {
                label: url.label(),
                len,
            });
        }
    }
    Ok(urls)
}

/// `text` as a ticket's mirror: an `https://` mirror URL by the
/// `fetch --mirror` rules, without a query (a ticket is shown and passed
/// on; a query may hold a credential).
fn check_mirror_text(text: &str) -> Result<MirrorUrl, TicketError> {
    // Shown escaped: a ticket's bytes never reach a terminal as they are.
    let refuse = |reason: String| TicketError::Mirror {
        shown: crate::mirror::given::shown_url(text)
            .escape_debug()
            .to_string(),
        reason,
    };
    let url = MirrorUrl::parse(text, Plain::Refused).map_err(|e| refuse(e.to_string()))?;
    if url.expose() != text {
        // One spelling: the host as the URL rules keep it.
        return Err(refuse(format!(
            "written another way than {}; a ticket writes the host in lowercase",
            url.label()
        )));
    }
    if url.has_query() {
        return Err(refuse(
            "a ticket carries no query (it may hold a credential); give the mirror's URL without one"
                .to_owned(),
        ));
    }
    Ok(url)
}

/// Takes fields off the front of a byte string.
struct Reader<'a> {
    rest: &'a [u8],
}

/// Writes an address: family, IP, port.
fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

impl<'a> Reader<'a> {
    /// An address: family, IP, port.
    fn addr(&mut self) -> Result<SocketAddr, TicketError> {
        let ip = match self.byte("address family")? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("address")?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("address")?)),
            other => return Err(TicketError::Family(other)),
        };
        let port = u16::from_be_bytes(self.array::<2>("port")?);
        Ok(SocketAddr::new(ip, port))
    }

    /// The next `len` bytes.
    fn bytes(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], TicketError> {
        if self.rest.len() < len {
            return Err(TicketError::Truncated(what));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, TicketError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TicketError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }
}

impl fmt::Display for Ticket {
    /// `mm1` and the base32 of the binary form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TICKET_PREFIX}{}",
            BASE32.encode_display(&self.to_bytes())
        )
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let body = match text.get(..TICKET_PREFIX.len()) {
            Some(prefix) if prefix.eq_ignore_ascii_case(TICKET_PREFIX) => {
                &text[TICKET_PREFIX.len()..]
            }
            _ => return Err(TicketError::Prefix),
        };
        if text.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong { len: text.len() });
        }
        if let Some((index, found)) = body
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii() || BASE32.interpret_byte(*c as u8).is_symbol().is_none())
        {
            return Err(TicketError::Character {
                position: TICKET_PREFIX.len() + index + 1,
                found,
            });
        }
        let bytes = BASE32
            .decode(body.as_bytes())
            .map_err(|_| TicketError::Encoding)?;
        Ticket::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: u8, addrs: &[&str]) -> PeerAddrs {
        PeerAddrs {
            id: PeerId([seed; 32]),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn ticket() -> Ticket {
        Ticket::new(
            Sha256Digest::of(b"manifest"),
            Some(PublisherKeyId([7; KEY_ID_BYTES])),
            vec![peer(1, &["192.0.2.7:4433", "[2001:db8::7]:4433"])],
        )
        .unwrap()
    }

    #[test]
    fn a_ticket_round_trips_and_fits_a_chat_line() {
        let ticket = ticket();
        let text = ticket.to_string();
        assert!(text.starts_with("mm1"), "{text}");
        assert_eq!(text.len(), 175, "{text}");
        assert_eq!(text.parse::<Ticket>(), Ok(ticket.clone()));
        assert_eq!(text.to_uppercase().parse::<Ticket>(), Ok(ticket.clone()));
        // As pasted: blanks around it, either case.
        let pasted = format!(" {}\n", text.to_uppercase());
        let like = ticket_like(&pasted).unwrap();
        assert_eq!(like.parse::<Ticket>(), Ok(ticket.clone()));
        assert_eq!(ticket_like("model.manifest"), None);
        assert_eq!(ticket_like(" mm"), None);
        let unsigned = Ticket {
            key_id: None,
            ..ticket
        };
        assert_eq!(unsigned.to_string().parse::<Ticket>(), Ok(unsigned));
        let full = Ticket::new(
            Sha256Digest::of(b"m"),
            Some(PublisherKeyId([1; KEY_ID_BYTES])),
            (0..MAX_TICKET_PEERS as u8)
                .map(|n| {
                    peer(
                        n,
                        &[
                            "[2001:db8::1]:1",
                            "[2001:db8::2]:2",
                            "[2001:db8::3]:3",
                            "[2001:db8::4]:4",
                        ],
                    )
                })
                .collect(),
        )
        .unwrap();
        assert_eq!(full.to_string().len(), 778);
        assert_eq!(full.to_string().parse::<Ticket>(), Ok(full.clone()));
        // Every peer with two relays at IPv6 addresses: the longest.
        let relays = full
            .peers
            .iter()
            .map(|peer| PeerRelays {
                peer: peer.id,
                relays: ["[2a01:4f8::1]:1", "[2a01:4f8::2]:2"]
                    .iter()
                    .map(|addr| RelayAddr {
                        id: Some(PeerId([9; 32])),
                        addr: addr.parse().unwrap(),
                    })
                    .collect(),
            })
            .collect();
        let longest = full.with_relays(relays).unwrap();
        assert_eq!(longest.to_string().len(), 1437);
        assert_eq!(longest.to_string().parse::<Ticket>(), Ok(longest.clone()));
        // The common case: one peer, one relay.
        let one = self::ticket()
            .with_relays(vec![PeerRelays {
                peer: PeerId([1; 32]),
                relays: vec![
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@81.2.69.9:4434"
                        .parse()
                        .unwrap(),
                ],
            }])
            .unwrap();
        assert_eq!(one.to_string().len(), 239);
        assert_eq!(one.relays_of(&PeerId([1; 32])).len(), 1);
        assert_eq!(one.to_string().parse::<Ticket>(), Ok(one));
        // With a mirror of 40 characters instead.
        let url = |text: &str| MirrorUrl::parse(text, Plain::Refused).unwrap();
        let base = self::ticket();
        let mirrored = Ticket::with_sources(
            base.manifest_sha256,
            base.key_id,
            base.peers,
            vec![url("https://models.example.org/m/tiny-10.slm")],
        )
        .unwrap();
        assert_eq!(mirrored.mirrors[0].expose().len(), 40);
        assert_eq!(mirrored.to_string().len(), 243);
        assert_eq!(mirrored.to_string().parse::<Ticket>(), Ok(mirrored));
        // The longest: every peer, address and relay, and two mirrors of
        // the longest length.
        let longest_mirrors = Ticket {
            mirrors: (0..MAX_TICKET_MIRRORS)
                .map(|n| url(&format!("https://example.org/{n}{}", "a".repeat(491))))
                .collect(),
            ..longest
        };
        assert_eq!(
            longest_mirrors.mirrors[0].expose().len(),
            MAX_TICKET_MIRROR_LEN
        );
        assert_eq!(longest_mirrors.to_string().len(), MAX_TICKET_LEN);
        assert_eq!(
            longest_mirrors.to_string().parse::<Ticket>(),
            Ok(longest_mirrors)
        );
    }

    #[test]
    fn relays_are_checked_as_readers_check_them() {
        let relay = |text: &str| -> RelayAddr { text.parse().unwrap() };
        let id = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let named = |relays: Vec<RelayAddr>| {
            ticket().with_relays(vec![PeerRelays {
                peer: PeerId([1; 32]),
                relays,
            }])
        };
        assert!(matches!(
            named(vec![relay("81.2.69.9:4434")]),
            Err(TicketError::RelayAddr { .. })
        ));
        assert!(matches!(
            named(vec![relay(&format!("{id}@81.2.69.9:4434")); 2]),
            Err(TicketError::DuplicateRelay { .. })
        ));
        assert!(matches!(
            named(
                (1..=3)
                    .map(|n| relay(&format!("{id}@81.2.69.9:{n}")))
                    .collect()
            ),
            Err(TicketError::RelayCount { count: 3 })
        ));
        assert!(matches!(
            named(vec![relay(&format!("{id}@240.0.0.1:4434"))]),
            Err(TicketError::RelayAddr { .. })
        ));
        // A relay for a peer the ticket does not name is left out.
        let other = ticket()
            .with_relays(vec![PeerRelays {
                peer: PeerId([9; 32]),
                relays: vec![relay(&format!("{id}@81.2.69.9:4434"))],
            }])
            .unwrap();
        assert!(other.relays.is_empty());
    }

    #[test]
    fn writers_refuse_what_readers_refuse_and_write_mapped_addresses_as_ipv4() {
        let digest = Sha256Digest::of(b"m");
        let new = |peers| Ticket::new(digest, None, peers);
        assert_eq!(new(vec![]), Err(TicketError::PeerCount(0)));
        assert!(matches!(
            new((0..5).map(|n| peer(n, &["10.0.0.1:1"])).collect()),
            Err(TicketError::PeerCount(5))
        ));
        assert!(matches!(
            new(vec![peer(1, &["10.0.0.1:1"]), peer(1, &["10.0.0.2:1"])]),
            Err(TicketError::DuplicatePeer(_))
        ));
        assert!(matches!(
            new(vec![peer(1, &[])]),
            Err(TicketError::AddrCount { count: 0, .. })
        ));
        assert!(matches!(
            new(vec![peer(1, &["10.0.0.1:1", "10.0.0.1:1"])]),
            Err(TicketError::DuplicateAddr { .. })
        ));
        for bad in [
            "10.0.0.1:0",
            "0.0.0.0:1",
            "[::]:1",
            "224.0.0.1:1",
            "255.255.255.255:1",
        ] {
            assert!(
                matches!(new(vec![peer(1, &[bad])]), Err(TicketError::Addr { .. })),
                "{bad}"
            );
        }
        let mapped = new(vec![peer(1, &["[::ffff:10.0.0.1]:7"])]).unwrap();
        assert_eq!(mapped.peers[0].addrs[0], "10.0.0.1:7".parse().unwrap());

        let url = |text: &str| MirrorUrl::parse(text, Plain::Refused).unwrap();
        let mirrors = |urls: Vec<MirrorUrl>| Ticket::with_sources(digest, None, vec![], urls);
        let only = mirrors(vec![url("https://Example.org/tiny.slm")]).unwrap();
        assert_eq!(only.to_string().parse::<Ticket>(), Ok(only.clone()));
        assert_eq!(only.mirrors[0].expose(), "https://example.org/tiny.slm");
        let mut given = vec!["https://EXAMPLE.org/tiny.slm?sig=1".to_owned()];
        only.add_mirrors_to(&mut given);
        assert_eq!(given.len(), 1, "given already: {given:?}");
        let mut given = vec!["https://example.org/other.slm".to_owned()];
        only.add_mirrors_to(&mut given);
        assert_eq!(given[1], "https://example.org/tiny.slm");
        let mut full: Vec<String> = (0..minimodel_node::node::MAX_MIRRORS)
            .map(|n| format!("https://example.org/{n}.slm"))
            .collect();
        only.add_mirrors_to(&mut full);
        assert_eq!(
            full.len(),
            minimodel_node::node::MAX_MIRRORS,
            "no more than a download takes"
        );
        assert!(matches!(
            mirrors(vec![url("https://example.org/tiny.slm?sig=1")]),
            Err(TicketError::Mirror { .. })
        ));
        assert!(matches!(
            mirrors(vec![
                url("https://example.org/tiny.slm"),
                url("https://EXAMPLE.org/tiny.slm")
            ]),
            Err(TicketError::DuplicateMirror(_))
        ));
        assert_eq!(
            mirrors(vec![url("https://example.org/tiny.slm"); 3]),
            Err(TicketError::MirrorCount(3))
        );
        let long = url(&format!("https://example.org/{}", "a".repeat(493)));
        assert_eq!(mirrors(vec![long]), Err(TicketError::MirrorLength(513)));

        // What writers are given, in words.
        let given = |texts: &[&str]| {
            ticket_mirrors(&texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>())
                .map_err(|error| error.to_string())
        };
        assert_eq!(
            given(&["https://example.org/a.slm", "https://example.org/b.slm"]).map(|m| m.len()),
            Ok(2)
        );
        for (bad, why) in [
            (
                vec!["https://example.org/a.slm?sig=secret"],
                "carries no query",
            ),
            (vec!["http://example.org/a.slm"], "plain http://"),
            (
                vec!["https://user:secret@example.org/a.slm"],
                "user information",
            ),
            (
                vec!["https://example.org/a.slm", "https://EXAMPLE.org/a.slm"],
                "given twice",
            ),
            (vec!["https://example.org/a.slm"; 3], "at most 2"),
        ] {
            let error = given(&bad).expect_err(why);
            assert!(error.contains(why), "{why}: {error}");
            assert!(!error.contains("secret"), "{why}: {error}");
        }
        let long = format!("https://example.org/{}", "a".repeat(493));
        assert!(given(&[&long]).unwrap_err().contains("at most 512"));
    }

    /// The base32 text of `body` with its check, as a ticket.
    fn encode(body: &[u8]) -> String {
        let mut bytes = body.to_vec();
        let check = Sha256Digest::of(body);
        bytes.extend_from_slice(&check.as_bytes()[..CHECK_LEN]);
        format!("mm1{}", BASE32.encode(&bytes))
    }

    #[test]
    fn every_malformed_ticket_is_refused_with_its_reason() {
        let good = ticket();
        let text = good.to_string();
        let parse = |text: &str| text.parse::<Ticket>();
        assert_eq!(parse(""), Err(TicketError::Prefix));
        assert_eq!(parse("mm"), Err(TicketError::Prefix));
        assert_eq!(
            parse(&format!("mm2{}", &text[3..])),
            Err(TicketError::Prefix)
        );
        assert_eq!(parse(&format!("é{text}")), Err(TicketError::Prefix));
        let long = format!("mm1{}", "a".repeat(MAX_TICKET_LEN));
        assert!(matches!(parse(&long), Err(TicketError::TooLong { .. })));
        assert!(matches!(
            parse(&format!("{text} ")),
            Err(TicketError::Character { found: ' ', .. })
        ));
        assert!(matches!(
            parse(&format!("{}1{}", &text[..10], &text[11..])),
            Err(TicketError::Character {
                position: 11,
                found: '1'
            })
        ));
        assert!(matches!(
            parse(&format!("{}é", &text[..20])),
            Err(TicketError::Character { found: 'é', .. })
        ));
        // A character changed: the check catches it.
        let mut changed: Vec<char> = text.chars().collect();
        changed[40] = if changed[40] == 'a' { 'b' } else { 'a' };
        let changed: String = changed.into_iter().collect();
        assert_eq!(parse(&changed), Err(TicketError::Check));
        // Cut short: an impossible length, or a check that fails.
        for cut in [1, 2, 8, 100] {
            let result = parse(&text[..text.len() - cut]);
            assert!(
                matches!(result, Err(TicketError::Encoding | TicketError::Check)),
                "cut {cut}: {result:?}"
            );
        }
        assert!(matches!(
            parse("mm1aa"),
            Err(TicketError::Truncated("check"))
        ));

        let body = {
            let bytes = good.to_bytes();
            bytes[..bytes.len() - CHECK_LEN].to_vec()
        };
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut body = body.clone();
            edit(&mut body);
            parse(&encode(&body))
        };
        assert_eq!(with(&|b| b[0] = 0x09), Err(TicketError::Flags(0x08)));
        assert_eq!(
            with(&|b| b.truncate(20)),
            Err(TicketError::Truncated("manifest digest"))
        );
        assert_eq!(
            with(&|b| b.truncate(40)),
            Err(TicketError::Truncated("key id"))
        );
        assert_eq!(
            with(&|b| b.truncate(43)),
            Err(TicketError::Truncated("peer count"))
        );
        assert_eq!(
            with(&|b| b.truncate(60)),
            Err(TicketError::Truncated("peer id"))
        );
        assert_eq!(
            with(&|b| b.truncate(b.len() - 1)),
            Err(TicketError::Truncated("port"))
        );
        assert_eq!(with(&|b| b.push(0)), Err(TicketError::TrailingBytes(1)));
        // Offsets: flags 0, digest 1..33, key id 33..43, peer count 43,
        // peer id 44..76, address count 76, first family 77.
        assert_eq!(with(&|b| b[43] = 0), Err(TicketError::PeerCount(0)));
        assert_eq!(with(&|b| b[43] = 5), Err(TicketError::PeerCount(5)));
        assert!(matches!(
            with(&|b| b[76] = 0),
            Err(TicketError::AddrCount { count: 0, .. })
        ));
        assert!(matches!(
            with(&|b| b[76] = 9),
            Err(TicketError::AddrCount { count: 9, .. })
        ));
        assert_eq!(with(&|b| b[77] = 5), Err(TicketError::Family(5)));
        // Port 0 (the first address's port is at 82..84).
        assert!(matches!(
            with(&|b| {
                b[82] = 0;
                b[83] = 0;
            }),
            Err(TicketError::Addr { .. })
        ));
        // An unsigned ticket whose flag says a key id follows: the digest
        // and the next bytes do not line up, and it ends too soon.
        let unsigned = Ticket {
            key_id: None,
            ..good.clone()
        };
        let mut flagged = unsigned.to_bytes();
        flagged.truncate(flagged.len() - CHECK_LEN);
        flagged[0] = FLAG_KEY_ID;
        assert!(parse(&encode(&flagged)).is_err());
        // Mirrors (flag bit 2) after the peer.
        let mirrored = |count: u8, urls: &[&[u8]]| {
            let mut body = body.clone();
            body[0] |= FLAG_MIRRORS;
            body.push(count);
            for url in urls {
                body.extend_from_slice(&(url.len() as u16).to_be_bytes());
                body.extend_from_slice(url);
            }
            parse(&encode(&body))
        };
        let mirror = b"https://example.org/m/tiny.slm".as_slice();
        assert_eq!(
            mirrored(1, &[mirror]).map(|t| t.mirrors.len()),
            Ok(1),
            "a good one"
        );
        assert_eq!(mirrored(0, &[]), Err(TicketError::MirrorCount(0)));
        assert_eq!(
            mirrored(3, &[mirror, mirror, mirror]),
            Err(TicketError::MirrorCount(3))
        );
        assert_eq!(mirrored(1, &[b""]), Err(TicketError::MirrorLength(0)));
        let long = [b"https://example.org/".as_slice(), &[b'a'; 493]].concat();
        assert_eq!(mirrored(1, &[&long]), Err(TicketError::MirrorLength(513)));
        assert_eq!(
            mirrored(1, &[&long[..512]]).map(|t| t.mirrors[0].expose().len()),
            Ok(512)
        );
        assert_eq!(
            with(&|b| {
                b[0] |= FLAG_MIRRORS;
                b.extend_from_slice(&[1, 0, 30]);
                b.extend_from_slice(&mirror[..10]);
            }),
            Err(TicketError::Truncated("mirror URL"))
        );
        for (bad, why) in [
            (b"http://example.org/m/tiny.slm".as_slice(), "plain"),
            (b"https://example.org/m/tiny.slm?sig=secret", "query"),
            (b"https://Example.org/m/tiny.slm", "uppercase host"),
            (b"https://example.org/", "no file"),
            (b"https://user:pw@example.org/tiny.slm", "credentials"),
            ("https://example.org/é.slm".as_bytes(), "not ASCII"),
            (b"https://example.org/m/\xff.slm", "not UTF-8"),
        ] {
            let refused = mirrored(1, &[bad]);
            assert!(
                matches!(&refused, Err(TicketError::Mirror { .. })),
                "{why}: {refused:?}"
            );
            let text = refused.unwrap_err().to_string();
            assert!(
                !text.contains("secret") && !text.contains("pw@"),
                "{why}: {text}"
            );
        }
        // A terminal's escape in a refused mirror is shown escaped.
        let escaped = mirrored(1, &[b"https://example.org/\x1b[2J.slm"])
            .unwrap_err()
            .to_string();
        assert!(!escaped.contains('\x1b'), "{escaped:?}");
        assert!(escaped.contains("\\u{1b}"), "{escaped}");
        assert!(matches!(
            mirrored(2, &[mirror, b"https://EXAMPLE.org/m/tiny.slm"]),
            Err(TicketError::Mirror { .. })
        ));
        assert!(matches!(
            mirrored(2, &[mirror, mirror]),
            Err(TicketError::DuplicateMirror(_))
        ));
        // No peer: only with a mirror.
        let mut no_peer = body[..44].to_vec();
        no_peer[43] = 0;
        assert_eq!(parse(&encode(&no_peer)), Err(TicketError::PeerCount(0)));
        no_peer[0] |= FLAG_MIRRORS;
        no_peer.extend_from_slice(&[1, 0, mirror.len() as u8]);
        no_peer.extend_from_slice(mirror);
        let only_mirror = parse(&encode(&no_peer)).unwrap();
        assert!(only_mirror.peers.is_empty());
        assert_eq!(
            only_mirror.mirrors[0].label(),
            "https://example.org/m/tiny.slm"
        );
        // The same address written as mapped IPv6: one value, one spelling.
        let mapped = {
            let mut body = Ticket {
                key_id: None,
                peers: vec![peer(1, &["10.0.0.1:7"])],
                ..good.clone()
            }
            .to_bytes();
            body.truncate(body.len() - CHECK_LEN);
            let at = body.len() - 7;
            let mut v6 = vec![6];
            v6.extend_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
            body.splice(at..at + 5, v6);
            body
        };
        assert!(matches!(
            parse(&encode(&mapped)),
            Err(TicketError::Addr { .. })
        ));
    }
}
