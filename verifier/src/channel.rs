//! A publisher's channel (`docs/channel.md`): the record a publisher keeps
//! on the Mainline DHT as a BEP 44 mutable item under its publisher key,
//! saying per model id which manifest is the latest (and a few peers that
//! serve it), and which manifests are withdrawn, with a reason route.
//!
//! What it is:
//! - [`Channel`], its bencoded value ([`Channel::encode`],
//!   [`Channel::decode`]: canonical bencode only, at most
//!   [`MAX_VALUE_BYTES`], every field within its limit);
//! - [`sign_channel`]: the item a publisher puts, signed by the key that
//!   signs its manifests, over BEP 44's `4:salt..3:seqi..e1:v..` bytes;
//! - [`check_item`]: the one way to make a [`VerifiedChannel`]: the key is
//!   the pinned one, the salt is the channel's, the signature holds, the
//!   sequence is not below the last one seen, the value decodes.
//!
//! What it is not: it sends and stores nothing, and knows no DHT, clock or
//! peer. The DHT target (`SHA-1(key || salt)`) is the DHT client's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::digest::Sha256Digest;
use crate::ids::ModelId;
use crate::route::Route;
use crate::signing::{Ed25519Signature, PublicKey, SecretKey};

/// The BEP 44 salt of every channel item: it names the record (the DHT
/// target is `SHA-1(key || salt)`) and starts every message the publisher
/// key signs for a channel, so that such a signature never verifies as a
/// manifest's or a rotation's (those start `minimodel-signature-v1:`).
pub const CHANNEL_SALT: &[u8] = b"minimodel-channel-v1";
/// The `f` field of the value.
pub const CHANNEL_FORMAT: i64 = 1;
/// The longest value. BEP 44 limits the bencoded `v` to 1,000 bytes, and
/// `v` is a byte string holding the value: `996:` and 996 bytes make
/// 1,000 (libtorrent's nodes refuse a put of a 997-byte value;
/// `cli/tests/channel_libtorrent.rs`).
pub const MAX_VALUE_BYTES: usize = 996;
/// Peers named per model.
pub const MAX_PEERS: usize = 4;
/// Addresses per peer.
pub const MAX_ADDRS: usize = 2;
/// Nesting of the value: dict, dict of models, model, list of peers,
/// peer, list of addresses.
const MAX_DEPTH: usize = 6;

/// What a publisher's channel says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    /// Per model id, its latest version.
    pub models: BTreeMap<ModelId, Latest>,
    /// Manifests withdrawn, in the publisher's order.
    pub withdrawn: Vec<Withdrawal>,
}

/// The latest version of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    /// SHA-256 of its manifest file (as a ticket names it).
    pub manifest_sha256: Sha256Digest,
    /// Peers that serve it (a ticket's content), at most [`MAX_PEERS`].
    pub peers: Vec<ChannelPeer>,
}

/// A peer that serves a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPeer {
    /// Its peer id: the 32 bytes of its Ed25519 public key.
    pub id: [u8; 32],
    /// Where to dial it, 1 to [`MAX_ADDRS`].
    pub addrs: Vec<SocketAddr>,
}

/// A withdrawn manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// SHA-256 of the manifest file.
    pub manifest_sha256: Sha256Digest,
    /// Where the reason is said (a takedown notice).
    pub reason_route: Route,
}

/// Why a channel value was refused: malformed bytes, or a well-formed
/// value that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Longer than BEP 44 allows.
    #[error("the value is {len} bytes; BEP 44 allows {MAX_VALUE_BYTES} (1,000 bencoded)")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not canonical bencode, or not the value's shape.
    #[error("malformed value at byte {at}: {what}")]
    Malformed {
        /// Offset in the value.
        at: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A format this version does not read.
    #[error("channel format {found} is not supported (this version reads {CHANNEL_FORMAT})")]
    UnsupportedFormat {
        /// The `f` field.
        found: i64,
    },
    /// A field breaks its rule.
    #[error("{field}: {why}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        why: String,
    },
}

/// Why a channel item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelItemError {
    /// Signed by another key than the pinned one.
    #[error("the item is under key {found}, not the pinned {expected}")]
    WrongKey {
        /// The pinned key.
        expected: PublicKey,
        /// The item's.
        found: PublicKey,
    },
    /// The item's key is not a usable Ed25519 key.
    #[error("the item's key is not a valid Ed25519 public key")]
    BadKey,
    /// Not a channel's salt.
    #[error("the item's salt is not {:?}", String::from_utf8_lossy(CHANNEL_SALT))]
    WrongSalt,
    /// A negative sequence number (BEP 44 numbers are at least 0 here).
    #[error("sequence number {seq} is negative")]
    NegativeSequence {
        /// The item's.
        seq: i64,
    },
    /// The value is longer than BEP 44 allows (checked before the
    /// signature).
    #[error("the value is {len} bytes; BEP 44 allows {MAX_VALUE_BYTES} (1,000 bencoded)")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The signature does not hold.
    #[error("the signature does not verify with the item's key")]
    BadSignature,
    /// Older than an item already seen (a replay).
    #[error("sequence number {seq} is below {last_seen}, already seen: a stale or replayed item")]
    Replayed {
        /// The item's.
        seq: i64,
        /// The highest seen.
        last_seen: i64,
    },
    /// The same sequence number as an item seen with another value.
    #[error("sequence number {seq} was already seen with another value")]
    SequenceReused {
        /// The item's.
        seq: i64,
    },
    /// The value is not a channel.
    #[error(transparent)]
    Value(#[from] ChannelError),
}

/// A channel item as the DHT carries it (BEP 44 `k`, `seq`, `v`, `sig`,
/// `salt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelItem {
    /// The publisher key's 32 bytes (`k`).
    pub key: [u8; 32],
    /// The sequence number (`seq`).
    pub seq: i64,
    /// The bencoded value (`v`).
    pub value: Vec<u8>,
    /// The signature (`sig`).
    pub signature: [u8; 64],
    /// The salt (`salt`; empty when absent).
    pub salt: Vec<u8>,
}

/// The last item seen of a channel: its sequence number and the SHA-256
/// of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSeen {
    /// Its sequence number.
    pub seq: i64,
    /// SHA-256 of its value.
    pub value_sha256: Sha256Digest,
}

/// A channel item that passed [`check_item`]: only it makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChannel {
    seq: i64,
    value_sha256: Sha256Digest,
    channel: Channel,
}

impl VerifiedChannel {
    /// Its sequence number.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// What it says.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// What to remember of it, to refuse older items later.
    pub fn last_seen(&self) -> LastSeen {
        LastSeen {
            seq: self.seq,
            value_sha256: self.value_sha256,
        }
    }
}

/// The bytes BEP 44 signs: `4:salt<len>:<salt>3:seqi<seq>e1:v<len>:<value>`.
pub fn signable(salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + salt.len() + 48);
    if !salt.is_empty() {
        out.extend_from_slice(format!("4:salt{}:", salt.len()).as_bytes());
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v{}:", value.len()).as_bytes());
    out.extend_from_slice(value);
    out
}

/// The item that puts `channel` at sequence number `seq` under `secret`'s
/// public key. Refuses a value over [`MAX_VALUE_BYTES`], a channel that
/// breaks a limit, and a negative `seq`.
pub fn sign_channel(
    secret: &SecretKey,
    seq: i64,
    channel: &Channel,
) -> Result<ChannelItem, ChannelError> {
    if seq < 0 {
        return Err(ChannelError::Invalid {
            field: "seq",
            why: format!("{seq} is negative"),
        });
    }
    let value = channel.encode()?;
    let signature = secret.sign_raw(&signable(CHANNEL_SALT, seq, &value));
    Ok(ChannelItem {
        key: *secret.public_key().as_bytes(),
        seq,
        value,
        signature: signature.0,
        salt: CHANNEL_SALT.to_vec(),
    })
}

/// Checks `item` against the `pinned` key and the `last` item seen of this
/// channel, in this order: the key, the salt, the sequence number's sign,
/// the value's length, the signature, the sequence number against `last`,
/// then the value. An item equal to `last` passes (a refresh).
pub fn check_item(
    item: &ChannelItem,
    pinned: &PublicKey,
    last: Option<LastSeen>,
) -> Result<VerifiedChannel, ChannelItemError> {
    if item.key != *pinned.as_bytes() {
        let found = PublicKey::from_bytes(&item.key).map_err(|_| ChannelItemError::BadKey)?;
        return Err(ChannelItemError::WrongKey {
            expected: *pinned,
            found,
        });
    }
    if item.salt != CHANNEL_SALT {
        return Err(ChannelItemError::WrongSalt);
    }
    if item.seq < 0 {
        return Err(ChannelItemError::NegativeSequence { seq: item.seq });
    }
    if item.value.len() > MAX_VALUE_BYTES {
        return Err(ChannelItemError::TooLarge {
            len: item.value.len(),
        });
    }
    pinned
        .verify_raw(
            &signable(&item.salt, item.seq, &item.value),
            &Ed25519Signature(item.signature),
        )
        .map_err(|_| ChannelItemError::BadSignature)?;
    let value_sha256 = Sha256Digest::of(&item.value);
    if let Some(last) = last {
        if item.seq < last.seq {
            return Err(ChannelItemError::Replayed {
                seq: item.seq,
                last_seen: last.seq,
            });
        }
        if item.seq == last.seq && value_sha256 != last.value_sha256 {
            return Err(ChannelItemError::SequenceReused { seq: item.seq });
        }
    }
    let channel = Channel::decode(&item.value)?;
    Ok(VerifiedChannel {
        seq: item.seq,
        value_sha256,
        channel,
    })
}

impl Channel {
    /// The bencoded value: a dictionary, keys in byte order,
    /// `f` the format, `m` the models (id to `d` manifest digest and `p`
    /// peers, each `a` addresses in BEP 5 compact form and `i` its id),
    /// `w` the withdrawn (`d` digest, `r` reason route). See
    /// `docs/channel.md`.
    pub fn encode(&self) -> Result<Vec<u8>, ChannelError> {
        self.check_limits()?;
        let mut out = Vec::with_capacity(256);
        out.push(b'd');
        bytes(&mut out, b"f");
        int(&mut out, CHANNEL_FORMAT);
        bytes(&mut out, b"m");
        out.push(b'd');
        for (id, latest) in &self.models {
            bytes(&mut out, id.as_str().as_bytes());
            out.push(b'd');
            bytes(&mut out, b"d");
            bytes(&mut out, &latest.manifest_sha256.0);
            bytes(&mut out, b"p");
            out.push(b'l');
            for peer in &latest.peers {
                out.push(b'd');
                bytes(&mut out, b"a");
                out.push(b'l');
                for addr in &peer.addrs {
                    bytes(&mut out, &compact(addr));
                }
                out.push(b'e');
                bytes(&mut out, b"i");
                bytes(&mut out, &peer.id);
                out.push(b'e');
            }
            out.push(b'e');
            out.push(b'e');
        }
        out.push(b'e');
        bytes(&mut out, b"w");
        out.push(b'l');
        for withdrawal in &self.withdrawn {
            out.push(b'd');
            bytes(&mut out, b"d");
            bytes(&mut out, &withdrawal.manifest_sha256.0);
            bytes(&mut out, b"r");
            bytes(&mut out, withdrawal.reason_route.as_str().as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
        out.push(b'e');
        if out.len() > MAX_VALUE_BYTES {
            return Err(ChannelError::TooLarge { len: out.len() });
        }
        Ok(out)
    }

    fn check_limits(&self) -> Result<(), ChannelError> {
        for latest in self.models.values() {
            if latest.peers.len() > MAX_PEERS {
                return Err(ChannelError::Invalid {
                    field: "peers",
                    why: format!("{} peers; at most {MAX_PEERS}", latest.peers.len()),
                });
            }
            for peer in &latest.peers {
                if peer.addrs.is_empty() || peer.addrs.len() > MAX_ADDRS {
                    return Err(ChannelError::Invalid {
                        field: "addresses",
                        why: format!("{} addresses; 1 to {MAX_ADDRS}", peer.addrs.len()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads a value [`Self::encode`] writes, and nothing else: canonical
    /// bencode (keys sorted and unique, no leading zeros, no trailing
    /// bytes), every key known, every field within its limit.
    pub fn decode(value: &[u8]) -> Result<Channel, ChannelError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(ChannelError::TooLarge { len: value.len() });
        }
        let mut reader = Reader {
            bytes: value,
            at: 0,
        };
        let root = reader.value(0)?;
        if reader.at != value.len() {
            return Err(reader.error("trailing bytes after the value"));
        }
        let mut top = Fields::of(root, &["f", "m", "w"])?;
        let format = top.int("f")?;
        if format != CHANNEL_FORMAT {
            return Err(ChannelError::UnsupportedFormat { found: format });
        }
        let mut models = BTreeMap::new();
        for (id, entry) in top.dict("m")? {
            let id = std::str::from_utf8(id.0)
                .ok()
                .and_then(|text| ModelId::new(text).ok())
                .ok_or_else(|| ChannelError::Invalid {
                    field: "model id",
                    why: format!("{:?} is not a model id", String::from_utf8_lossy(id.0)),
                })?;
            let mut fields = Fields::of(entry, &["d", "p"])?;
            let manifest_sha256 = fields.digest("d")?;
            let list = fields.list("p")?;
            if list.len() > MAX_PEERS {
                return Err(ChannelError::Invalid {
                    field: "peers",
                    why: format!("{} peers; at most {MAX_PEERS}", list.len()),
                });
            }
            let mut peers = Vec::new();
            for peer in list {
                let mut fields = Fields::of(peer, &["a", "i"])?;
                let addrs = fields
                    .list("a")?
                    .into_iter()
                    .map(|addr| match addr {
                        Value::Bytes(bytes, at) => {
                            from_compact(bytes).ok_or(ChannelError::Malformed {
                                at,
                                what: "an address is 6 (IPv4) or 18 (IPv6) bytes",
                            })
                        }
                        other => Err(ChannelError::Malformed {
                            at: other.at(),
                            what: "an address must be a byte string",
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if addrs.is_empty() || addrs.len() > MAX_ADDRS {
                    return Err(ChannelError::Invalid {
                        field: "addresses",
                        why: format!("{} addresses; 1 to {MAX_ADDRS}", addrs.len()),
                    });
                }
                let id = fields.fixed::<32>("i", "a peer id is 32 bytes")?;
                peers.push(ChannelPeer { id, addrs });
            }
            models.insert(
                id,
                Latest {
                    manifest_sha256,
                    peers,
                },
            );
        }
        let mut withdrawn = Vec::new();
        for entry in top.list("w")? {
            let mut fields = Fields::of(entry, &["d", "r"])?;
            let manifest_sha256 = fields.digest("d")?;
            let (route, _) = fields.bytes("r")?;
            let reason_route = std::str::from_utf8(route)
                .ok()
                .ok_or(ChannelError::Invalid {
                    field: "reason route",
                    why: "not UTF-8".into(),
                })
                .and_then(|text| {
                    Route::parse(text).map_err(|error| ChannelError::Invalid {
                        field: "reason route",
                        why: error.to_string(),
                    })
                })?;
            withdrawn.push(Withdrawal {
                manifest_sha256,
                reason_route,
            });
        }
        Ok(Channel { models, withdrawn })
    }
}

fn bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn int(out: &mut Vec<u8>, value: i64) {
    out.push(b'i');
    out.extend_from_slice(value.to_string().as_bytes());
    out.push(b'e');
}

/// BEP 5's compact form: the address's bytes, then the port, big-endian.
fn compact(addr: &SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

fn from_compact(bytes: &[u8]) -> Option<SocketAddr> {
    match bytes.len() {
        6 => {
            let ip: [u8; 4] = bytes[..4].try_into().ok()?;
            let port = u16::from_be_bytes([bytes[4], bytes[5]]);
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        18 => {
            let ip: [u8; 16] = bytes[..16].try_into().ok()?;
            let port = u16::from_be_bytes([bytes[16], bytes[17]]);
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => None,
    }
}

/// A bencoded value, borrowing its bytes, with where it starts.
#[derive(Debug)]
enum Value<'a> {
    Int(i64, usize),
    Bytes(&'a [u8], usize),
    List(Vec<Value<'a>>, usize),
    Dict(Vec<(Key<'a>, Value<'a>)>, usize),
}

#[derive(Debug)]
struct Key<'a>(&'a [u8]);

impl Value<'_> {
    fn at(&self) -> usize {
        match self {
            Value::Int(_, at) | Value::Bytes(_, at) | Value::List(_, at) | Value::Dict(_, at) => {
                *at
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> ChannelError {
        ChannelError::Malformed { at: self.at, what }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, ChannelError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        let start = self.at;
        match self.bytes.get(self.at) {
            Some(b'i') => {
                self.at += 1;
                let digits = self.digits(b'e', true)?;
                Ok(Value::Int(digits, start))
            }
            Some(b'l') => {
                self.at += 1;
                let mut items = Vec::new();
                while self.bytes.get(self.at) != Some(&b'e') {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items, start))
            }
            Some(b'd') => {
                self.at += 1;
                let mut entries: Vec<(Key<'a>, Value<'a>)> = Vec::new();
                while self.bytes.get(self.at) != Some(&b'e') {
                    let key = self.string()?;
                    if let Some((last, _)) = entries.last()
                        && last.0 >= key
                    {
                        return Err(ChannelError::Malformed {
                            at: self.at,
                            what: "dictionary keys must be unique and in byte order",
                        });
                    }
                    let value = self.value(depth + 1)?;
                    entries.push((Key(key), value));
                }
                self.at += 1;
                Ok(Value::Dict(entries, start))
            }
            Some(b'0'..=b'9') => Ok(Value::Bytes(self.string()?, start)),
            Some(_) => Err(self.error("not a bencode value")),
            None => Err(self.error("the value ends too early")),
        }
    }

    fn string(&mut self) -> Result<&'a [u8], ChannelError> {
        let len = self.digits(b':', false)?;
        let len = usize::try_from(len).map_err(|_| self.error("length out of range"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error("a string runs past the end"))?;
        let text = &self.bytes[self.at..end];
        self.at = end;
        Ok(text)
    }

    /// Decimal digits up to `end` (an optional `-` when `signed`), in
    /// canonical form: no leading zero, no `-0`, no empty number.
    fn digits(&mut self, end: u8, signed: bool) -> Result<i64, ChannelError> {
        let start = self.at;
        let stop = self.bytes[start..]
            .iter()
            .position(|b| *b == end)
            .map(|n| start + n)
            .ok_or_else(|| self.error("a number has no end"))?;
        let text = &self.bytes[start..stop];
        let digits = match text {
            [b'-', rest @ ..] if signed => rest,
            _ => text,
        };
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && !(text.first() == Some(&b'-') && digits == b"0");
        if !canonical {
            return Err(self.error("not a canonical number"));
        }
        let value = std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| self.error("number out of range"))?;
        self.at = stop + 1;
        Ok(value)
    }
}

/// The fields of a dictionary with exactly the keys `known`.
struct Fields<'a> {
    entries: Vec<(Key<'a>, Value<'a>)>,
    at: usize,
}

impl<'a> Fields<'a> {
    fn of(value: Value<'a>, known: &[&str]) -> Result<Self, ChannelError> {
        let Value::Dict(entries, at) = value else {
            return Err(ChannelError::Malformed {
                at: value.at(),
                what: "expected a dictionary",
            });
        };
        let keys: Vec<&[u8]> = entries.iter().map(|(key, _)| key.0).collect();
        let expected: Vec<&[u8]> = known.iter().map(|key| key.as_bytes()).collect();
        if keys != expected {
            return Err(ChannelError::Malformed {
                at,
                what: "a dictionary with other keys than the format's",
            });
        }
        Ok(Self { entries, at })
    }

    fn take(&mut self, key: &str) -> Result<Value<'a>, ChannelError> {
        let position = self
            .entries
            .iter()
            .position(|(k, _)| k.0 == key.as_bytes())
            .ok_or(ChannelError::Malformed {
                at: self.at,
                what: "a key is missing",
            })?;
        Ok(self.entries.remove(position).1)
    }

    fn int(&mut self, key: &str) -> Result<i64, ChannelError> {
        match self.take(key)? {
            Value::Int(value, _) => Ok(value),
            other => Err(ChannelError::Malformed {
                at: other.at(),
                what: "expected an integer",
            }),
        }
    }

    fn bytes(&mut self, key: &str) -> Result<(&'a [u8], usize), ChannelError> {
        match self.take(key)? {
            Value::Bytes(bytes, at) => Ok((bytes, at)),
            other => Err(ChannelError::Malformed {
                at: other.at(),
                what: "expected a byte string",
            }),
        }
    }

    fn fixed<const N: usize>(
        &mut self,
        key: &str,
        what: &'static str,
    ) -> Result<[u8; N], ChannelError> {
        let (bytes, at) = self.bytes(key)?;
        bytes
            .try_into()
            .map_err(|_| ChannelError::Malformed { at, what })
    }

    fn digest(&mut self, key: &str) -> Result<Sha256Digest, ChannelError> {
        Ok(Sha256Digest(
            self.fixed::<32>(key, "a manifest digest is 32 bytes")?,
        ))
    }

    fn list(&mut self, key: &str) -> Result<Vec<Value<'a>>, ChannelError> {
        match self.take(key)? {
            Value::List(items, _) => Ok(items),
            other => Err(ChannelError::Malformed {
                at: other.at(),
                what: "expected a list",
            }),
        }
    }

    fn dict(&mut self, key: &str) -> Result<Vec<(Key<'a>, Value<'a>)>, ChannelError> {
        match self.take(key)? {
            Value::Dict(entries, _) => Ok(entries),
            other => Err(ChannelError::Malformed {
                at: other.at(),
                what: "expected a dictionary",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn route(text: &str) -> Route {
        Route::parse(text).unwrap()
    }

    fn channel() -> Channel {
        let mut models = BTreeMap::new();
        models.insert(
            ModelId::new("tiny-2").unwrap(),
            Latest {
                manifest_sha256: Sha256Digest::of(b"v2"),
                peers: vec![ChannelPeer {
                    id: [7; 32],
                    addrs: vec![
                        "198.51.100.7:4433".parse().unwrap(),
                        "[2001:db8::7]:4433".parse().unwrap(),
                    ],
                }],
            },
        );
        Channel {
            models,
            withdrawn: vec![Withdrawal {
                manifest_sha256: Sha256Digest::of(b"v1"),
                reason_route: route("https://example.org/takedown/1"),
            }],
        }
    }

    #[test]
    fn a_channel_round_trips_through_its_value() {
        let value = channel().encode().unwrap();
        assert_eq!(Channel::decode(&value).unwrap(), channel());
        assert!(value.starts_with(b"d1:fi1e1:md6:tiny-2d1:d32:"));
    }

    #[test]
    fn a_signed_item_passes_and_its_refresh_too() {
        let secret = key(1);
        let item = sign_channel(&secret, 5, &channel()).unwrap();
        let verified = check_item(&item, &secret.public_key(), None).unwrap();
        assert_eq!(verified.channel(), &channel());
        assert_eq!(verified.seq(), 5);
        // The same item again, and a newer one, after it.
        let last = Some(verified.last_seen());
        assert!(check_item(&item, &secret.public_key(), last).is_ok());
        let newer = sign_channel(&secret, 6, &Channel::default()).unwrap();
        assert!(check_item(&newer, &secret.public_key(), last).is_ok());
    }

    #[test]
    fn an_older_item_is_refused_as_a_replay() {
        let secret = key(1);
        let old = sign_channel(&secret, 4, &channel()).unwrap();
        let new = sign_channel(&secret, 5, &Channel::default()).unwrap();
        let last = check_item(&new, &secret.public_key(), None)
            .unwrap()
            .last_seen();
        assert_eq!(
            check_item(&old, &secret.public_key(), Some(last)).unwrap_err(),
            ChannelItemError::Replayed {
                seq: 4,
                last_seen: 5
            }
        );
        let other_value = sign_channel(&secret, 5, &channel()).unwrap();
        assert_eq!(
            check_item(&other_value, &secret.public_key(), Some(last)).unwrap_err(),
            ChannelItemError::SequenceReused { seq: 5 }
        );
    }

    #[test]
    fn an_item_of_another_key_is_refused() {
        let item = sign_channel(&key(2), 1, &channel()).unwrap();
        assert_eq!(
            check_item(&item, &key(1).public_key(), None).unwrap_err(),
            ChannelItemError::WrongKey {
                expected: key(1).public_key(),
                found: key(2).public_key()
            }
        );
    }

    #[test]
    fn a_changed_value_seq_salt_or_signature_is_refused() {
        let secret = key(1);
        let pinned = secret.public_key();
        let item = sign_channel(&secret, 3, &channel()).unwrap();
        let mut changed = item.clone();
        changed.value[10] ^= 1;
        assert_eq!(
            check_item(&changed, &pinned, None).unwrap_err(),
            ChannelItemError::BadSignature
        );
        let mut changed = item.clone();
        changed.seq = 4;
        assert_eq!(
            check_item(&changed, &pinned, None).unwrap_err(),
            ChannelItemError::BadSignature
        );
        let mut changed = item.clone();
        changed.signature[0] ^= 1;
        assert_eq!(
            check_item(&changed, &pinned, None).unwrap_err(),
            ChannelItemError::BadSignature
        );
        let mut changed = item.clone();
        changed.salt = b"other".to_vec();
        assert_eq!(
            check_item(&changed, &pinned, None).unwrap_err(),
            ChannelItemError::WrongSalt
        );
        let mut changed = item;
        changed.seq = -1;
        assert_eq!(
            check_item(&changed, &pinned, None).unwrap_err(),
            ChannelItemError::NegativeSequence { seq: -1 }
        );
    }

    #[test]
    fn an_oversize_value_is_refused_before_its_signature() {
        let secret = key(1);
        let mut item = sign_channel(&secret, 1, &channel()).unwrap();
        item.value = vec![b'x'; MAX_VALUE_BYTES + 1];
        assert_eq!(
            check_item(&item, &secret.public_key(), None).unwrap_err(),
            ChannelItemError::TooLarge {
                len: MAX_VALUE_BYTES + 1
            }
        );
        // And a channel too big to put is refused when signed.
        let mut big = Channel::default();
        for n in 0..20 {
            big.models.insert(
                ModelId::new(format!("model-{n}")).unwrap(),
                channel().models.into_values().next().unwrap(),
            );
        }
        assert!(matches!(
            sign_channel(&secret, 1, &big),
            Err(ChannelError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_signed_but_malformed_value_is_refused_with_its_reason() {
        let secret = key(1);
        let cases: &[(&[u8], &str)] = &[
            (b"", "the value ends too early"),
            (b"d1:fi1e1:mde1:wlee", ""),
            (b"d1:fi1e1:mde1:wleex", "trailing bytes after the value"),
            (b"d1:fi01e1:mde1:wlee", "not a canonical number"),
            (b"d1:fi-0e1:mde1:wlee", "not a canonical number"),
            (
                b"d1:mde1:fi1e1:wlee",
                "dictionary keys must be unique and in byte order",
            ),
            (
                b"d1:fi1e1:mde1:wle1:xi0ee",
                "a dictionary with other keys than the format's",
            ),
            (
                b"d1:fi1e1:md6:tiny-2d1:d3:abc1:pleee1:wlee",
                "a manifest digest is 32 bytes",
            ),
            (b"d1:fi1e1:mde1:wl9999:ee", "a string runs past the end"),
            (b"llllllllllee", "nested too deep"),
        ];
        for (value, reason) in cases {
            let item = ChannelItem {
                key: *secret.public_key().as_bytes(),
                seq: 1,
                value: value.to_vec(),
                signature: secret.sign_raw(&signable(CHANNEL_SALT, 1, value)).0,
                salt: CHANNEL_SALT.to_vec(),
            };
            let result = check_item(&item, &secret.public_key(), None);
            if reason.is_empty() {
                assert!(result.is_ok(), "{result:?}");
                continue;
            }
            match result {
                Err(ChannelItemError::Value(ChannelError::Malformed { what, .. })) => {
                    assert_eq!(what, *reason, "{}", String::from_utf8_lossy(value))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(value)),
            }
        }
        let format_2 = b"d1:fi2e1:mde1:wlee";
        assert_eq!(
            Channel::decode(format_2).unwrap_err(),
            ChannelError::UnsupportedFormat { found: 2 }
        );
        let bad_route = b"d1:fi1e1:mde1:wld1:d32:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1:r9:http://x/eee";
        assert!(matches!(
            Channel::decode(bad_route).unwrap_err(),
            ChannelError::Invalid {
                field: "reason route",
                ..
            }
        ));
    }
}
