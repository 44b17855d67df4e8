//! [`ControlStream`]: the sans-IO state machine of the control stream.
//!
//! Each direction of the stream moves through the same [`Phase`]s:
//! `AwaitingHello -> AwaitingBitfield -> Established -> Closed`. A swarm
//! session's sender sends `Hello` (or, from the listener only, `HelloReject`,
//! which ends the session), then exactly one `HaveBitfield`, then `Have`,
//! `Request`, `Cancel`, `Reject`, `Peers`, `KeepAlive`, `Rendezvous`,
//! `Connect` and `RendezvousFailed` in any order; `Goodbye` may come at any
//! point after `Hello` and ends that direction. A manifest query is shorter:
//! the dialer sends `ManifestRequest` and nothing more, the listener answers
//! with `Manifest` or `HelloReject`, and both directions are closed. A
//! chunk list query is the same with `ChunkListRequest`, answered with
//! `ChunkHashes` in chunk order until the list is whole, or `HelloReject`.
//! Four rules tie the directions together:
//!
//! 1. the dialer speaks first (its Hello, ManifestRequest or
//!    ChunkListRequest is the first message of all);
//! 2. the listener answers a Hello with Hello or HelloReject, a
//!    ManifestRequest with Manifest or HelloReject, a ChunkListRequest with
//!    ChunkHashes or HelloReject, and sends its Hello only
//!    once bound to a swarm the dialer's Hello matched;
//! 3. the dialer sends its HaveBitfield only after the listener's Hello;
//! 4. a HelloReject, a Manifest or the last ChunkHashes closes both
//!    directions for the dialer.
//!
//! A dialer knows its swarm from the start ([`ControlStream::new`]) or asks
//! for a manifest ([`ControlStream::manifest_query`]) or a chunk list
//! ([`ControlStream::chunk_list_query`]). A listener is
//! created without a swarm ([`ControlStream::listener`]): the dialer's Hello
//! arrives unchecked, and its owner binds the stream to the swarm it chose
//! ([`ControlStream::bind`], which checks the Hello as a listener of one
//! swarm would) or refuses it with a HelloReject.
//!
//! [`ControlStream::on_receive`] checks what the peer sends and
//! [`ControlStream::check_send`] what we send; neither does I/O. The table
//! of legal messages is [`Phase::legal_messages`] and is written down in
//! `docs/wire-protocol.md`.

use std::fmt;
use std::net::SocketAddr;

use crate::FROM_VERSION;
use crate::bitfield::HaveBitfield;
use crate::error::{BindError, ContextError, LocalMisuse, PeerError, ProtocolViolation};
use crate::message::Message;
use crate::params::SwarmIdentity;
use crate::peer_id::PeerId;
use crate::types::{
    ChunkIndex, GoodbyeReason, Hello, HelloRejectReason, MAX_REJECT_DETAIL_LEN, MessageType,
    PeerEntry, RejectReason, RendezvousFailedReason,
};

/// Which end of the QUIC connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opened the connection and the control stream; speaks first.
    Dialer,
    /// Accepted the connection; answers the dialer's first message.
    Listener,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Dialer => Role::Listener,
            Role::Listener => Role::Dialer,
        }
    }

    /// `"dialer"` or `"listener"`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Dialer => "dialer",
            Role::Listener => "listener",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far one direction of the control stream has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The sender has sent nothing yet.
    AwaitingHello,
    /// The sender has sent its Hello, not yet its HaveBitfield.
    AwaitingBitfield,
    /// The sender has sent its HaveBitfield.
    Established,
    /// The sender sent Goodbye, HelloReject, ManifestRequest, Manifest,
    /// ChunkListRequest or its last ChunkHashes, received a HelloReject, a
    /// Manifest or the last ChunkHashes, or (for the peer's direction)
    /// broke the protocol. Nothing more is legal.
    Closed,
}

/// What an established direction may send; RequestFrom only in a v3
/// session.
const OPEN_SET: &[MessageType] = &[
    MessageType::Have,
    MessageType::Request,
    MessageType::RequestFrom,
    MessageType::Cancel,
    MessageType::Reject,
    MessageType::Peers,
    MessageType::KeepAlive,
    MessageType::Goodbye,
    MessageType::Rendezvous,
    MessageType::Connect,
    MessageType::RendezvousFailed,
];

impl Phase {
    /// The messages a `sender` may send in `phase` (before the rules that tie
    /// the two directions together).
    pub fn legal_messages(sender: Role, phase: Phase) -> &'static [MessageType] {
        match (phase, sender) {
            (Phase::AwaitingHello, Role::Dialer) => &[
                MessageType::Hello,
                MessageType::ManifestRequest,
                MessageType::ChunkListRequest,
            ],
            (Phase::AwaitingHello, Role::Listener) => &[
                MessageType::Hello,
                MessageType::HelloReject,
                MessageType::Manifest,
                MessageType::ChunkHashes,
                MessageType::ListedChunks,
            ],
            (Phase::AwaitingBitfield, _) => &[MessageType::HaveBitfield, MessageType::Goodbye],
            (Phase::Established, _) => OPEN_SET,
            (Phase::Closed, _) => &[],
        }
    }

    pub(crate) fn legal_list(sender: Role, phase: Phase) -> String {
        let legal = Phase::legal_messages(sender, phase);
        if legal.is_empty() {
            return "nothing".to_owned();
        }
        legal
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where the sender is, in words ("before its Hello", ...).
    pub fn describe(self) -> &'static str {
        match self {
            Phase::AwaitingHello => "before its Hello",
            Phase::AwaitingBitfield => "between its Hello and its HaveBitfield",
            Phase::Established => "after its HaveBitfield",
            Phase::Closed => "after it closed the session",
        }
    }
}

/// What a received message means, once it has passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// The peer's Hello. A dialer, or a listener bound before the Hello
    /// arrived, has checked it against its swarm: the dialer sends its
    /// HaveBitfield next, the listener answers with its Hello or a
    /// HelloReject. An unbound listener has checked nothing: its owner
    /// [binds](ControlStream::bind) it to the swarm the Hello names, or
    /// answers HelloReject.
    PeerHello(Hello),
    /// The listener refused our Hello, ManifestRequest or
    /// ChunkListRequest; the session is over.
    HelloRejected {
        /// Why.
        reason: HelloRejectReason,
        /// Its detail text.
        detail: String,
        /// Other peers of the swarm to try.
        peers: Vec<PeerEntry>,
    },
    /// The peer's bitfield, sized to our chunk count.
    Bitfield(HaveBitfield),
    /// The peer now has `0`.
    Have(ChunkIndex),
    /// The peer asks for `0`.
    Request(ChunkIndex),
    /// The peer asks for `chunk` from byte `from` on (v3).
    RequestFrom {
        /// The chunk.
        chunk: ChunkIndex,
        /// The first byte it wants, inside the chunk.
        from: u32,
    },
    /// The peer withdraws its Request for `0`.
    Cancel(ChunkIndex),
    /// The peer will not serve our Request.
    Rejected {
        /// The chunk.
        chunk: ChunkIndex,
        /// Why.
        reason: RejectReason,
    },
    /// Other peers of the swarm.
    Peers(Vec<PeerEntry>),
    /// Nothing; the peer is alive.
    KeepAlive,
    /// The peer ends the session; it sends nothing more.
    Goodbye(GoodbyeReason),
    /// The peer asks us to introduce it to this peer.
    Rendezvous(PeerId),
    /// `peer` is about to dial us from `addrs`: dial it there now.
    Connect {
        /// The peer that dials us.
        peer: PeerId,
        /// Its addresses, 1 to 4.
        addrs: Vec<SocketAddr>,
    },
    /// The peer will not introduce us to `peer`.
    RendezvousFailed {
        /// The peer our Rendezvous named.
        peer: PeerId,
        /// Why not.
        reason: RendezvousFailedReason,
    },
    /// The dialer asks for the manifest with this SHA-256; answer with
    /// Manifest or HelloReject. Its direction is closed.
    ManifestRequested([u8; 32]),
    /// The listener's answer to our ManifestRequest: the manifest's bytes,
    /// unchecked (hash them against the digest asked for). The session is
    /// over.
    Manifest(Vec<u8>),
    /// The dialer asks for the chunk list of the manifest with this
    /// SHA-256; answer with ChunkHashes or HelloReject. Its direction is
    /// closed.
    ChunkListRequested([u8; 32]),
    /// Part of the listener's answer to our ChunkListRequest: the hashes
    /// from chunk `first` on, unchecked. `complete`: the list is whole
    /// and the session over.
    ChunkHashes {
        /// The chunk of the first hash.
        first: u32,
        /// The hashes.
        hashes: Vec<[u8; 32]>,
        /// The chunks' lengths, one per hash, when the list is listed
        /// (ListedChunks); `None` from ChunkHashes.
        lengths: Option<Vec<u32>>,
        /// These were the last of the list.
        complete: bool,
    },
}

/// What the dialer opened the stream for, as far as this end knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// A listener before the dialer's first message.
    Unknown,
    /// A swarm session: the dialer's first message is (or was) a Hello.
    Swarm,
    /// A manifest query for the manifest with this SHA-256.
    Manifest([u8; 32]),
    /// A chunk list query for the list of the manifest with this SHA-256.
    ChunkList([u8; 32]),
}

/// How far a chunk list query's ChunkHashes have got (sent by a listener,
/// received by a dialer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ListProgress {
    /// The list's length: a dialer's from the start (its manifest's chunk
    /// count), a listener's from its first ChunkHashes.
    total: Option<u32>,
    /// The chunk the next ChunkHashes starts at.
    next: u32,
    /// The list comes in ListedChunks (with lengths), not ChunkHashes: a
    /// dialer's from the start (its manifest's scheme), a listener's from
    /// its first message of the list.
    listed: Option<bool>,
}

impl ListProgress {
    /// Checks that a ChunkHashes from `first` of `total`, `count` hashes,
    /// continues the list; `Ok(true)` when it ends it.
    fn advance(
        &mut self,
        total: u32,
        first: u32,
        count: usize,
        listed: bool,
    ) -> Result<bool, (u32, u32)> {
        let expected_total = self.total.unwrap_or(total);
        if total != expected_total || first != self.next {
            return Err((self.next, expected_total));
        }
        if self.listed.is_some_and(|expected| expected != listed) {
            return Err((self.next, expected_total));
        }
        // The field rules (first + count <= total) hold for a decoded
        // message; one that breaks them is refused here too.
        let next = u32::try_from(count)
            .ok()
            .and_then(|count| first.checked_add(count))
            .filter(|next| *next <= total && count > 0)
            .ok_or((self.next, expected_total))?;
        self.total = Some(total);
        self.next = next;
        self.listed = Some(listed);
        Ok(self.next == total)
    }
}

/// A ChunkHashes' hashes, or a ListedChunks' hashes and lengths.
fn list_entries(message: &Message) -> (Vec<[u8; 32]>, Option<Vec<u32>>) {
    match message {
        Message::ChunkHashes { hashes, .. } => (hashes.clone(), None),
        Message::ListedChunks { chunks, .. } => (
            chunks.iter().map(|(hash, _)| *hash).collect(),
            Some(chunks.iter().map(|(_, len)| *len).collect()),
        ),
        _ => (Vec::new(), None),
    }
}

/// What became of the peer's Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerHello {
    /// None arrived.
    None,
    /// It arrived at an unbound listener: nothing was checked yet.
    Unchecked(Hello),
    /// It matches our swarm.
    Accepted(Hello),
    /// It named another swarm (or version) and was refused.
    Refused,
}

/// The control stream of one connection, seen from one end.
#[derive(Debug, Clone)]
pub struct ControlStream {
    role: Role,
    /// The swarm every context check is made against; `None` for an
    /// unbound listener and a manifest query.
    swarm: Option<SwarmIdentity>,
    sent: Phase,
    received: Phase,
    opening: Opening,
    peer_hello: PeerHello,
    /// We sent our Hello (not a HelloReject).
    local_hello_sent: bool,
    /// A chunk list query's ChunkHashes so far.
    list: ListProgress,
}

impl ControlStream {
    /// A dialer of `swarm` (it sends a Hello first), or with
    /// [`Role::Listener`] a listener already bound to `swarm` (the
    /// dialer's Hello is checked as soon as it arrives, as by a listener
    /// that serves one swarm).
    pub fn new(role: Role, swarm: SwarmIdentity) -> Self {
        ControlStream {
            role,
            swarm: Some(swarm),
            sent: Phase::AwaitingHello,
            received: Phase::AwaitingHello,
            opening: match role {
                Role::Dialer => Opening::Swarm,
                Role::Listener => Opening::Unknown,
            },
            peer_hello: PeerHello::None,
            local_hello_sent: false,
            list: ListProgress::default(),
        }
    }

    /// A listener that serves no swarm in particular yet: the dialer's
    /// Hello arrives unchecked, and the owner [binds](Self::bind) the
    /// stream to the swarm it names or answers HelloReject; a
    /// ManifestRequest is answered with Manifest or HelloReject.
    pub fn listener() -> Self {
        ControlStream {
            role: Role::Listener,
            swarm: None,
            sent: Phase::AwaitingHello,
            received: Phase::AwaitingHello,
            opening: Opening::Unknown,
            peer_hello: PeerHello::None,
            local_hello_sent: false,
            list: ListProgress::default(),
        }
    }

    /// A dialer that asks for the manifest whose SHA-256 is
    /// `manifest_sha256`: it sends only that ManifestRequest and receives a
    /// Manifest or a HelloReject.
    pub fn manifest_query(manifest_sha256: [u8; 32]) -> Self {
        ControlStream {
            role: Role::Dialer,
            swarm: None,
            sent: Phase::AwaitingHello,
            received: Phase::AwaitingHello,
            opening: Opening::Manifest(manifest_sha256),
            peer_hello: PeerHello::None,
            local_hello_sent: false,
            list: ListProgress::default(),
        }
    }

    /// A dialer that asks for the chunk list of the manifest whose SHA-256
    /// is `manifest_sha256`, a list of `chunk_count` hashes (the
    /// manifest's chunk count): it sends only that ChunkListRequest and
    /// receives ChunkHashes in chunk order up to `chunk_count`, or a
    /// HelloReject.
    pub fn chunk_list_query(manifest_sha256: [u8; 32], chunk_count: u32) -> Self {
        Self::list_query(manifest_sha256, chunk_count, false)
    }

    /// [`Self::chunk_list_query`] for a manifest whose chunks are listed
    /// (`slm-parts-merkle-v0`): the answer comes in ListedChunks, each
    /// chunk's hash with its length; ChunkHashes are not an answer.
    pub fn listed_chunk_list_query(manifest_sha256: [u8; 32], chunk_count: u32) -> Self {
        Self::list_query(manifest_sha256, chunk_count, true)
    }

    fn list_query(manifest_sha256: [u8; 32], chunk_count: u32, listed: bool) -> Self {
        ControlStream {
            role: Role::Dialer,
            swarm: None,
            sent: Phase::AwaitingHello,
            received: Phase::AwaitingHello,
            opening: Opening::ChunkList(manifest_sha256),
            peer_hello: PeerHello::None,
            local_hello_sent: false,
            list: ListProgress {
                total: Some(chunk_count),
                next: 0,
                listed: Some(listed),
            },
        }
    }

    /// Binds an unbound listener to `swarm`. If the dialer's Hello has
    /// arrived, it is checked against `swarm` field by field as
    /// [`SwarmIdentity::check_hello`] does; a mismatch closes the peer's
    /// direction, and [`farewell`](Self::farewell) then gives the
    /// HelloReject that is the only legal answer. A Hello that arrives
    /// later is checked on arrival.
    pub fn bind(&mut self, swarm: SwarmIdentity) -> Result<(), BindError> {
        let why = if self.role == Role::Dialer {
            Some("a dialer knows its swarm from the start")
        } else if self.swarm.is_some() {
            Some("the listener is bound already")
        } else if matches!(self.opening, Opening::Manifest(_)) {
            Some("the dialer asked for a manifest, not a swarm")
        } else if matches!(self.opening, Opening::ChunkList(_)) {
            Some("the dialer asked for a chunk list, not a swarm")
        } else if self.sent != Phase::AwaitingHello {
            Some("the listener has answered the dialer already")
        } else if self.received == Phase::Closed {
            Some("the dialer's direction is closed")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(LocalMisuse::CannotBind { why }.into());
        }
        let checked = match &self.peer_hello {
            PeerHello::Unchecked(hello) => Some(swarm.check_hello(hello).map(|()| hello.clone())),
            _ => None,
        };
        self.swarm = Some(swarm);
        match checked {
            None => Ok(()),
            Some(Ok(hello)) => {
                self.peer_hello = PeerHello::Accepted(hello);
                Ok(())
            }
            Some(Err(mismatch)) => {
                self.peer_hello = PeerHello::Refused;
                self.received = Phase::Closed;
                Err(ProtocolViolation::Swarm(mismatch).into())
            }
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our swarm: a dialer's, or a listener's once bound. `None` for an
    /// unbound listener and a manifest query.
    pub fn swarm(&self) -> Option<&SwarmIdentity> {
        self.swarm.as_ref()
    }

    /// How far our direction has got.
    pub fn sent_phase(&self) -> Phase {
        self.sent
    }

    /// How far the peer's direction has got.
    pub fn received_phase(&self) -> Phase {
        self.received
    }

    /// The peer's Hello, once it arrived and matched our swarm.
    pub fn peer_hello(&self) -> Option<&Hello> {
        match &self.peer_hello {
            PeerHello::Accepted(hello) => Some(hello),
            _ => None,
        }
    }

    /// The dialer's Hello at an unbound listener, before [`Self::bind`].
    pub fn unchecked_hello(&self) -> Option<&Hello> {
        match &self.peer_hello {
            PeerHello::Unchecked(hello) => Some(hello),
            _ => None,
        }
    }

    /// The SHA-256 of the manifest this session is about: the one a
    /// manifest or chunk list query asks for, or the one a listener was
    /// asked for.
    pub fn manifest_sha256(&self) -> Option<[u8; 32]> {
        match self.opening {
            Opening::Manifest(digest) | Opening::ChunkList(digest) => Some(digest),
            _ => None,
        }
    }

    /// Both directions are past their HaveBitfield and open.
    pub fn is_established(&self) -> bool {
        self.sent == Phase::Established && self.received == Phase::Established
    }

    /// Both directions are closed.
    pub fn is_closed(&self) -> bool {
        self.sent == Phase::Closed && self.received == Phase::Closed
    }

    /// Checks a message the peer sent and says what it means. On a violation
    /// the peer's direction is closed: every later message is refused too.
    /// Takes messages as [`Message::decode`] returns them (field rules
    /// already checked).
    pub fn on_receive(&mut self, message: &Message) -> Result<ControlEvent, ProtocolViolation> {
        let result = self.receive(message);
        if result.is_err() {
            self.received = Phase::Closed;
        }
        result
    }

    /// The dialer's first message, as the listener's answer must fit it.
    fn opening_type(&self) -> MessageType {
        match self.opening {
            Opening::Manifest(_) => MessageType::ManifestRequest,
            Opening::ChunkList(_) => MessageType::ChunkListRequest,
            _ => MessageType::Hello,
        }
    }

    fn receive(&mut self, message: &Message) -> Result<ControlEvent, ProtocolViolation> {
        let found = message.message_type();
        let wrong_state = ProtocolViolation::WrongState {
            sender: self.role.peer(),
            phase: self.received,
            found,
        };
        if self.role == Role::Dialer && self.sent == Phase::AwaitingHello {
            return Err(ProtocolViolation::ListenerSpokeFirst { found });
        }
        let not_an_answer = ProtocolViolation::NotAnAnswer {
            found,
            to: self.opening_type(),
        };
        match (self.received, message) {
            (Phase::AwaitingHello, Message::Hello(hello)) => {
                if self.role == Role::Dialer && self.opening != Opening::Swarm {
                    return Err(not_an_answer);
                }
                self.opening = Opening::Swarm;
                match &self.swarm {
                    Some(swarm) => {
                        if let Err(mismatch) = swarm.check_hello(hello) {
                            self.peer_hello = PeerHello::Refused;
                            return Err(mismatch.into());
                        }
                        self.peer_hello = PeerHello::Accepted(hello.clone());
                    }
                    None => self.peer_hello = PeerHello::Unchecked(hello.clone()),
                }
                self.received = Phase::AwaitingBitfield;
                Ok(ControlEvent::PeerHello(hello.clone()))
            }
            (
                Phase::AwaitingHello,
                Message::ManifestRequest { manifest_sha256 }
                | Message::ChunkListRequest { manifest_sha256 },
            ) if self.role == Role::Listener => {
                let digest = *manifest_sha256;
                self.received = Phase::Closed;
                Ok(if matches!(message, Message::ManifestRequest { .. }) {
                    self.opening = Opening::Manifest(digest);
                    ControlEvent::ManifestRequested(digest)
                } else {
                    self.opening = Opening::ChunkList(digest);
                    ControlEvent::ChunkListRequested(digest)
                })
            }
            (
                Phase::AwaitingHello,
                Message::HelloReject {
                    reason,
                    detail,
                    peers,
                },
            ) if self.role == Role::Dialer => {
                // A refusal comes instead of the list, not in the middle.
                if self.list.next > 0 {
                    return Err(wrong_state);
                }
                self.received = Phase::Closed;
                self.sent = Phase::Closed;
                Ok(ControlEvent::HelloRejected {
                    reason: *reason,
                    detail: detail.clone(),
                    peers: peers.clone(),
                })
            }
            (Phase::AwaitingHello, Message::Manifest { bytes }) if self.role == Role::Dialer => {
                if !matches!(self.opening, Opening::Manifest(_)) {
                    return Err(not_an_answer);
                }
                self.received = Phase::Closed;
                self.sent = Phase::Closed;
                Ok(ControlEvent::Manifest(bytes.clone()))
            }
            (
                Phase::AwaitingHello,
                Message::ChunkHashes { total, first, .. }
                | Message::ListedChunks { total, first, .. },
            ) if self.role == Role::Dialer => {
                if !matches!(self.opening, Opening::ChunkList(_)) {
                    return Err(not_an_answer);
                }
                let (hashes, lengths) = list_entries(message);
                if self.list.listed != Some(lengths.is_some()) {
                    return Err(not_an_answer);
                }
                let complete = self
                    .list
                    .advance(*total, *first, hashes.len(), lengths.is_some())
                    .map_err(|(expected_first, expected_total)| {
                        ProtocolViolation::ChunkHashesOutOfOrder {
                            first: *first,
                            total: *total,
                            expected_first,
                            expected_total,
                        }
                    })?;
                if complete {
                    self.received = Phase::Closed;
                    self.sent = Phase::Closed;
                }
                Ok(ControlEvent::ChunkHashes {
                    first: *first,
                    hashes,
                    lengths,
                    complete,
                })
            }
            (Phase::AwaitingBitfield, Message::HaveBitfield(bitfield)) => {
                if self.role == Role::Listener && !self.local_hello_sent {
                    return Err(ProtocolViolation::BitfieldBeforeHelloAnswer);
                }
                let Some(swarm) = &self.swarm else {
                    return Err(wrong_state);
                };
                let expected = swarm.params().chunk_count();
                if bitfield.chunk_count() != expected {
                    return Err(ContextError::BitfieldChunkCount {
                        found: bitfield.chunk_count(),
                        expected,
                    }
                    .into());
                }
                self.received = Phase::Established;
                Ok(ControlEvent::Bitfield(bitfield.clone()))
            }
            (Phase::AwaitingBitfield | Phase::Established, Message::Goodbye { reason }) => {
                self.received = Phase::Closed;
                Ok(ControlEvent::Goodbye(*reason))
            }
            (Phase::Established, Message::Have { chunk }) => {
                self.check_chunk(found, *chunk)?;
                Ok(ControlEvent::Have(*chunk))
            }
            (Phase::Established, Message::Request { chunk }) => {
                self.check_chunk(found, *chunk)?;
                Ok(ControlEvent::Request(*chunk))
            }
            (Phase::Established, Message::RequestFrom { chunk, from }) => {
                let version = self.version();
                if version < FROM_VERSION {
                    return Err(ProtocolViolation::NotInVersion { found, version });
                }
                self.check_offset(found, *chunk, *from)?;
                Ok(ControlEvent::RequestFrom {
                    chunk: *chunk,
                    from: *from,
                })
            }
            (Phase::Established, Message::Cancel { chunk }) => {
                self.check_chunk(found, *chunk)?;
                Ok(ControlEvent::Cancel(*chunk))
            }
            (Phase::Established, Message::Reject { chunk, reason }) => {
                self.check_chunk(found, *chunk)?;
                Ok(ControlEvent::Rejected {
                    chunk: *chunk,
                    reason: *reason,
                })
            }
            (Phase::Established, Message::Peers { entries }) => {
                Ok(ControlEvent::Peers(entries.clone()))
            }
            (Phase::Established, Message::KeepAlive) => Ok(ControlEvent::KeepAlive),
            (Phase::Established, Message::Rendezvous { peer }) => {
                Ok(ControlEvent::Rendezvous(*peer))
            }
            (Phase::Established, Message::Connect { peer, addrs }) => Ok(ControlEvent::Connect {
                peer: *peer,
                addrs: addrs.clone(),
            }),
            (Phase::Established, Message::RendezvousFailed { peer, reason }) => {
                Ok(ControlEvent::RendezvousFailed {
                    peer: *peer,
                    reason: *reason,
                })
            }
            _ => Err(wrong_state),
        }
    }

    /// Checks a message we are about to send and records it as sent. Call it
    /// before [`Message::encode`]; on error nothing is recorded.
    pub fn check_send(&mut self, message: &Message) -> Result<(), LocalMisuse> {
        let found = message.message_type();
        message.validate().map_err(|error| LocalMisuse::Field {
            message_type: found,
            error,
        })?;
        let wrong_state = LocalMisuse::WrongState {
            sender: self.role,
            phase: self.sent,
            found,
        };
        let not_an_answer = LocalMisuse::NotAnAnswer {
            found,
            to: self.opening_type(),
        };
        match (self.sent, message) {
            (Phase::AwaitingHello, Message::Hello(hello)) => {
                match (self.role, self.opening, &self.peer_hello) {
                    (Role::Dialer, Opening::Swarm, _) => {}
                    (Role::Dialer, _, _) => return Err(LocalMisuse::WrongOpening { found }),
                    (Role::Listener, Opening::Unknown, _) => {
                        return Err(LocalMisuse::BeforePeerHello { found });
                    }
                    (Role::Listener, Opening::Manifest(_) | Opening::ChunkList(_), _) => {
                        return Err(not_an_answer);
                    }
                    (Role::Listener, Opening::Swarm, PeerHello::Accepted(_)) => {}
                    (Role::Listener, Opening::Swarm, PeerHello::Unchecked(_)) => {
                        return Err(LocalMisuse::HelloBeforeBind);
                    }
                    (Role::Listener, Opening::Swarm, _) => {
                        return Err(LocalMisuse::HelloAfterRefusedHello);
                    }
                }
                let Some(swarm) = &self.swarm else {
                    return Err(LocalMisuse::HelloBeforeBind);
                };
                swarm.check_hello(hello)?;
                self.sent = Phase::AwaitingBitfield;
                self.local_hello_sent = true;
                Ok(())
            }
            (
                Phase::AwaitingHello,
                Message::ManifestRequest { manifest_sha256 }
                | Message::ChunkListRequest { manifest_sha256 },
            ) if self.role == Role::Dialer => {
                // Each query opens with its own request, for its digest.
                let query = match (message, self.opening) {
                    (Message::ManifestRequest { .. }, Opening::Manifest(query))
                    | (Message::ChunkListRequest { .. }, Opening::ChunkList(query)) => query,
                    _ => return Err(LocalMisuse::WrongOpening { found }),
                };
                if *manifest_sha256 != query {
                    return Err(LocalMisuse::OtherManifest {
                        found: *manifest_sha256,
                        query,
                    });
                }
                self.sent = Phase::Closed;
                Ok(())
            }
            (Phase::AwaitingHello, Message::HelloReject { .. }) if self.role == Role::Listener => {
                if self.opening == Opening::Unknown {
                    return Err(LocalMisuse::BeforePeerHello { found });
                }
                // A refusal comes instead of the list, not in the middle.
                if self.list.next > 0 {
                    return Err(wrong_state);
                }
                self.sent = Phase::Closed;
                Ok(())
            }
            (Phase::AwaitingHello, Message::Manifest { .. }) if self.role == Role::Listener => {
                match self.opening {
                    Opening::Unknown => return Err(LocalMisuse::BeforePeerHello { found }),
                    Opening::Swarm | Opening::ChunkList(_) => return Err(not_an_answer),
                    Opening::Manifest(_) => {}
                }
                self.sent = Phase::Closed;
                Ok(())
            }
            (
                Phase::AwaitingHello,
                Message::ChunkHashes { total, first, .. }
                | Message::ListedChunks { total, first, .. },
            ) if self.role == Role::Listener => {
                match self.opening {
                    Opening::Unknown => return Err(LocalMisuse::BeforePeerHello { found }),
                    Opening::Swarm | Opening::Manifest(_) => return Err(not_an_answer),
                    Opening::ChunkList(_) => {}
                }
                let mut list = self.list;
                let (count, listed) = match message {
                    Message::ListedChunks { chunks, .. } => (chunks.len(), true),
                    Message::ChunkHashes { hashes, .. } => (hashes.len(), false),
                    _ => (0, false),
                };
                if list.listed.is_some_and(|begun| begun != listed) {
                    return Err(LocalMisuse::MixedChunkList { found });
                }
                let complete = list.advance(*total, *first, count, listed).map_err(
                    |(expected_first, expected_total)| LocalMisuse::ChunkHashesOutOfOrder {
                        first: *first,
                        total: *total,
                        expected_first,
                        expected_total,
                    },
                )?;
                self.list = list;
                if complete {
                    self.sent = Phase::Closed;
                }
                Ok(())
            }
            (Phase::AwaitingBitfield, Message::HaveBitfield(bitfield)) => {
                if self.role == Role::Dialer && self.peer_hello().is_none() {
                    return Err(LocalMisuse::BitfieldBeforeHelloAnswer);
                }
                let Some(swarm) = &self.swarm else {
                    return Err(wrong_state);
                };
                let expected = swarm.params().chunk_count();
                if bitfield.chunk_count() != expected {
                    return Err(ContextError::BitfieldChunkCount {
                        found: bitfield.chunk_count(),
                        expected,
                    }
                    .into());
                }
                self.sent = Phase::Established;
                Ok(())
            }
            (Phase::AwaitingBitfield | Phase::Established, Message::Goodbye { .. }) => {
                self.sent = Phase::Closed;
                Ok(())
            }
            (
                Phase::Established,
                Message::Have { chunk }
                | Message::Request { chunk }
                | Message::Cancel { chunk }
                | Message::Reject { chunk, .. },
            ) => Ok(self.check_chunk(found, *chunk)?),
            (Phase::Established, Message::RequestFrom { chunk, from }) => {
                let version = self.version();
                if version < FROM_VERSION {
                    return Err(LocalMisuse::NotInVersion { found, version });
                }
                Ok(self.check_offset(found, *chunk, *from)?)
            }
            (
                Phase::Established,
                Message::Peers { .. }
                | Message::KeepAlive
                | Message::Rendezvous { .. }
                | Message::Connect { .. }
                | Message::RendezvousFailed { .. },
            ) => Ok(()),
            _ => Err(wrong_state),
        }
    }

    /// The protocol version of the session: its swarm's, the latest
    /// before there is one (nothing version-bound is legal then).
    pub fn version(&self) -> u16 {
        self.swarm
            .as_ref()
            .map_or(crate::PROTOCOL_VERSION, SwarmIdentity::version)
    }

    /// A RequestFrom's chunk is in range and its offset inside it.
    fn check_offset(
        &self,
        message_type: MessageType,
        chunk: ChunkIndex,
        from: u32,
    ) -> Result<(), ContextError> {
        self.check_chunk(message_type, chunk)?;
        let chunk_len = match &self.swarm {
            Some(swarm) => swarm.params().chunk_len(chunk).unwrap_or(0),
            None => 0,
        };
        if from == 0 || from >= chunk_len {
            return Err(ContextError::Offset {
                message_type,
                chunk,
                from,
                chunk_len,
            });
        }
        Ok(())
    }

    fn check_chunk(
        &self,
        message_type: MessageType,
        chunk: ChunkIndex,
    ) -> Result<(), ContextError> {
        // Established implies a swarm; without one no chunk is in range.
        let chunk_count = self.swarm.as_ref().map_or(0, |s| s.params().chunk_count());
        if chunk.0 < chunk_count {
            Ok(())
        } else {
            Err(ContextError::ChunkOutOfRange {
                message_type,
                chunk,
                chunk_count,
            })
        }
    }

    /// What to send the peer after `error` before closing the connection:
    /// a HelloReject if we are a listener that has not answered the peer's
    /// Hello yet and the Hello named another swarm, a Goodbye if our Hello is
    /// out and our direction still open, otherwise nothing (just close).
    /// Pass the message through [`ControlStream::check_send`] as usual.
    pub fn farewell(&self, error: &PeerError) -> Option<Message> {
        if self.sent == Phase::AwaitingHello {
            if self.role != Role::Listener || self.peer_hello == PeerHello::None {
                return None;
            }
            let PeerError::Violation(ProtocolViolation::Swarm(mismatch)) = error else {
                return None;
            };
            let text: String = mismatch
                .to_string()
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            let detail = crate::types::truncate_to(&text, MAX_REJECT_DETAIL_LEN).to_owned();
            return Some(Message::HelloReject {
                reason: mismatch.hello_reject_reason(),
                detail,
                peers: Vec::new(),
            });
        }
        if self.sent == Phase::Closed {
            return None;
        }
        Some(Message::Goodbye {
            reason: error.goodbye_reason(),
        })
    }
}
