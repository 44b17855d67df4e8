//! [`ControlStream`]: the sans-IO state machine of the control stream.
//!
//! Each direction of the stream moves through the same [`Phase`]s:
//! `AwaitingHello -> AwaitingBitfield -> Established -> Closed`. The sender's
//! sequence is `Hello` (or, from the listener only, `HelloReject`, which
//! ends the session), then exactly one `HaveBitfield`, then `Have`,
//! `Request`, `Cancel`, `Reject`, `Peers` and `KeepAlive` in any order;
//! `Goodbye` may come at any point after `Hello` and ends that direction.
//! Three rules tie the directions together:
//!
//! 1. the dialer speaks first (its Hello is the first message of all);
//! 2. the listener sends its Hello or HelloReject only after the dialer's
//!    Hello, and a Hello only if the dialer's Hello matched its swarm;
//! 3. the dialer sends its HaveBitfield only after the listener's Hello.
//!
//! [`ControlStream::on_receive`] checks what the peer sends and
//! [`ControlStream::check_send`] what we send; neither does I/O. The table
//! of legal messages is [`Phase::legal_messages`] and is written down in
//! `docs/wire-protocol.md`.

use std::fmt;

use crate::bitfield::HaveBitfield;
use crate::error::{ContextError, LocalMisuse, PeerError, ProtocolViolation};
use crate::message::Message;
use crate::params::SwarmIdentity;
use crate::types::{
    ChunkIndex, GoodbyeReason, Hello, HelloRejectReason, MAX_REJECT_DETAIL_LEN, MessageType,
    PeerEntry, RejectReason,
};

/// Which end of the QUIC connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opened the connection and the control stream; speaks first.
    Dialer,
    /// Accepted the connection; answers the dialer's Hello.
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
    /// The sender has not sent its Hello yet.
    AwaitingHello,
    /// The sender has sent its Hello, not yet its HaveBitfield.
    AwaitingBitfield,
    /// The sender has sent its HaveBitfield.
    Established,
    /// The sender sent Goodbye or HelloReject, received a HelloReject, or
    /// (for the peer's direction) broke the protocol. Nothing more is legal.
    Closed,
}

const OPEN_SET: &[MessageType] = &[
    MessageType::Have,
    MessageType::Request,
    MessageType::Cancel,
    MessageType::Reject,
    MessageType::Peers,
    MessageType::KeepAlive,
    MessageType::Goodbye,
];

impl Phase {
    /// The messages a `sender` may send in `phase` (before the rules that tie
    /// the two directions together).
    pub fn legal_messages(sender: Role, phase: Phase) -> &'static [MessageType] {
        match (phase, sender) {
            (Phase::AwaitingHello, Role::Dialer) => &[MessageType::Hello],
            (Phase::AwaitingHello, Role::Listener) => {
                &[MessageType::Hello, MessageType::HelloReject]
            }
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
    /// The peer's Hello matches our swarm. The dialer sends its HaveBitfield
    /// next; the listener answers with its Hello (or a HelloReject).
    PeerHello(Hello),
    /// The listener refused our Hello; the session is over.
    HelloRejected {
        /// Why.
        reason: HelloRejectReason,
        /// Its detail text.
        detail: String,
    },
    /// The peer's bitfield, sized to our chunk count.
    Bitfield(HaveBitfield),
    /// The peer now has `0`.
    Have(ChunkIndex),
    /// The peer asks for `0`.
    Request(ChunkIndex),
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
}

/// The control stream of one connection, seen from one end.
#[derive(Debug, Clone)]
pub struct ControlStream {
    role: Role,
    swarm: SwarmIdentity,
    sent: Phase,
    received: Phase,
    /// A Hello arrived from the peer (matching or not).
    peer_hello_seen: bool,
    /// The peer's Hello, if it matched our swarm.
    peer_hello: Option<Hello>,
    /// We sent our Hello (not a HelloReject).
    local_hello_sent: bool,
}

impl ControlStream {
    /// A fresh control stream for `role` in `swarm`.
    pub fn new(role: Role, swarm: SwarmIdentity) -> Self {
        ControlStream {
            role,
            swarm,
            sent: Phase::AwaitingHello,
            received: Phase::AwaitingHello,
            peer_hello_seen: false,
            peer_hello: None,
            local_hello_sent: false,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our swarm.
    pub fn swarm(&self) -> &SwarmIdentity {
        &self.swarm
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
        self.peer_hello.as_ref()
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
        match (self.received, message) {
            (Phase::AwaitingHello, Message::Hello(hello)) => {
                self.peer_hello_seen = true;
                self.swarm.check_hello(hello)?;
                self.peer_hello = Some(hello.clone());
                self.received = Phase::AwaitingBitfield;
                Ok(ControlEvent::PeerHello(hello.clone()))
            }
            (Phase::AwaitingHello, Message::HelloReject { reason, detail })
                if self.role == Role::Dialer =>
            {
                self.received = Phase::Closed;
                self.sent = Phase::Closed;
                Ok(ControlEvent::HelloRejected {
                    reason: *reason,
                    detail: detail.clone(),
                })
            }
            (Phase::AwaitingBitfield, Message::HaveBitfield(bitfield)) => {
                if self.role == Role::Listener && !self.local_hello_sent {
                    return Err(ProtocolViolation::BitfieldBeforeHelloAnswer);
                }
                let expected = self.swarm.params().chunk_count();
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
        match (self.sent, message) {
            (Phase::AwaitingHello, Message::Hello(hello)) => {
                if self.role == Role::Listener {
                    if !self.peer_hello_seen {
                        return Err(LocalMisuse::BeforePeerHello { found });
                    }
                    if self.peer_hello.is_none() {
                        return Err(LocalMisuse::HelloAfterRefusedHello);
                    }
                }
                self.swarm.check_hello(hello)?;
                self.sent = Phase::AwaitingBitfield;
                self.local_hello_sent = true;
                Ok(())
            }
            (Phase::AwaitingHello, Message::HelloReject { .. }) if self.role == Role::Listener => {
                if !self.peer_hello_seen {
                    return Err(LocalMisuse::BeforePeerHello { found });
                }
                self.sent = Phase::Closed;
                Ok(())
            }
            (Phase::AwaitingBitfield, Message::HaveBitfield(bitfield)) => {
                if self.role == Role::Dialer && self.peer_hello.is_none() {
                    return Err(LocalMisuse::BitfieldBeforeHelloAnswer);
                }
                let expected = self.swarm.params().chunk_count();
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
            (Phase::Established, Message::Peers { .. } | Message::KeepAlive) => Ok(()),
            _ => Err(wrong_state),
        }
    }

    fn check_chunk(
        &self,
        message_type: MessageType,
        chunk: ChunkIndex,
    ) -> Result<(), ContextError> {
        let chunk_count = self.swarm.params().chunk_count();
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
            if self.role != Role::Listener || !self.peer_hello_seen {
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
