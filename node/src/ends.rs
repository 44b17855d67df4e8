//! Why things end: a link, a peer's session, a job outside the core, and
//! who is to blame. The vocabulary the domain modules record and the
//! reports ([`crate::report`]) carry; it depends on no module above it.

use std::fmt;
use std::sync::Arc;

use minimodel_wire::{GoodbyeReason, HelloRejectReason, PeerError};
use serde::Serialize;

/// Who a problem is the fault of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blame {
    /// The peer broke the protocol or sent bad data.
    Peer,
    /// This node (a bug, or a decision of ours).
    Local,
    /// The network, the disk, or nobody in particular.
    Environment,
}

/// How a link ended, as the driver saw it (before or after its handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// No answer within its deadline (the handshake's, or QUIC's idle
    /// timeout).
    TimedOut,
    /// The peer closed the connection without a Goodbye.
    ClosedByPeer,
    /// The peer refused our Hello.
    Refused {
        /// Its reason.
        reason: HelloRejectReason,
        /// Its detail text.
        detail: String,
    },
    /// The peer proved another id than the one we dialed.
    WrongPeer,
    /// The peer's Hello names another swarm.
    WrongSwarm,
    /// The connection failed (unreachable, reset, a TLS failure). The
    /// transport's words: its errors are not types this crate knows, and no
    /// decision depends on more than "the connection is gone".
    Lost(String),
    /// The peer broke the protocol (typed: what it did).
    Violation(Violation),
    /// The peer does not read its control stream: our queue for it is full.
    NotReading,
    /// An upload to it took less than `upload_stall_bytes` in
    /// `upload_stall_timeout`: it does not read its piece streams.
    UploadStalled,
    /// Our own side ended it: a bug, or this node going away; never the
    /// peer's fault.
    Local(LocalError),
}

/// How our own side ended a link ([`LinkEnd::Local`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// We broke a rule of the wire crate (a message we could not encode, a
    /// handshake step out of turn): a bug.
    #[error(transparent)]
    Wire(#[from] minimodel_wire::LocalMisuse),
    /// A handshake machine asked the driver what it does not ask: a bug.
    #[error("{0}")]
    Driver(&'static str),
    /// The node stopped while the handshake waited for it.
    #[error("this node is gone")]
    Gone,
}

/// How a peer broke the protocol, as observed on its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Malformed bytes or an illegal message on its control stream or a
    /// piece stream: the wire crate's own error, which names the rule.
    #[error(transparent)]
    Wire(#[from] PeerError),
    /// It opened a second bidirectional stream (only the control stream is
    /// allowed).
    #[error("it opened a second bidirectional stream (only the control stream is allowed)")]
    SecondControlStream,
    /// It sent a piece of a chunk never requested from it.
    #[error("it sent chunk {chunk}, which was never requested from it")]
    Unrequested {
        /// The chunk.
        chunk: u32,
    },
    /// Its bitfield cannot join the download.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// It broke the QUIC or TLS handshake: the transport's words (its
    /// errors are not types this crate knows).
    #[error("it broke the QUIC handshake: {0}")]
    Handshake(String),
}

impl LinkEnd {
    /// How a link whose peer broke the wire protocol ends: a Hello for
    /// another swarm is [`LinkEnd::WrongSwarm`] (a peer that dialed the
    /// wrong address, as the reports tell it), anything else a
    /// [`Violation`].
    pub fn of_peer_error(error: PeerError) -> LinkEnd {
        match error {
            PeerError::Violation(minimodel_wire::ProtocolViolation::Swarm(_)) => {
                LinkEnd::WrongSwarm
            }
            error => LinkEnd::Violation(Violation::Wire(error)),
        }
    }

    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        match self {
            LinkEnd::Violation(_) | LinkEnd::WrongPeer | LinkEnd::WrongSwarm => Blame::Peer,
            LinkEnd::Local(_) => Blame::Local,
            _ => Blame::Environment,
        }
    }
}

impl fmt::Display for LinkEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkEnd::TimedOut => write!(f, "no answer in time"),
            LinkEnd::ClosedByPeer => write!(f, "closed the connection"),
            LinkEnd::Refused { reason, detail } => {
                write!(f, "refused us ({}): {detail}", hello_reject_words(*reason))
            }
            LinkEnd::WrongPeer => write!(f, "proved another peer id than the one dialed"),
            LinkEnd::WrongSwarm => write!(f, "is in another swarm"),
            LinkEnd::Lost(text) => write!(f, "connection failed: {text}"),
            LinkEnd::Violation(violation) => write!(f, "broke the protocol: {violation}"),
            LinkEnd::NotReading => write!(f, "does not read its control stream"),
            LinkEnd::UploadStalled => write!(f, "took no bytes of an upload for too long"),
            LinkEnd::Local(error) => write!(f, "local error: {error}"),
        }
    }
}

/// Words for a HelloReject reason.
pub fn hello_reject_words(reason: HelloRejectReason) -> &'static str {
    match reason {
        HelloRejectReason::UnsupportedVersion => "unsupported protocol version",
        HelloRejectReason::WrongSwarm => "another swarm",
        HelloRejectReason::TooManyPeers => "too many peers",
        HelloRejectReason::Banned => "banned",
        HelloRejectReason::NotServing => "not serving",
        HelloRejectReason::UnknownSwarm => "no such swarm here",
        HelloRejectReason::UnknownManifest => "no such manifest here",
        HelloRejectReason::NoChunkList => "not the whole chunk list here",
    }
}

/// Words for a Goodbye reason.
pub fn goodbye_words(reason: GoodbyeReason) -> &'static str {
    match reason {
        GoodbyeReason::Done => "done",
        GoodbyeReason::Shutdown => "shutting down",
        GoodbyeReason::TooManyPeers => "too many peers",
        GoodbyeReason::Idle => "idle",
        GoodbyeReason::ProtocolViolation => "we broke the protocol, it says",
        GoodbyeReason::BadData => "we sent bad data, it says",
        GoodbyeReason::WrongSwarm => "another swarm",
    }
}

/// Why a connected peer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// It said goodbye.
    Goodbye(GoodbyeReason),
    /// The link ended.
    Ended(LinkEnd),
    /// It broke the protocol; dropped (not banned).
    Violation(Violation),
    /// It sent a chunk that failed its proof; banned.
    BadData {
        /// The chunk.
        chunk: u32,
    },
    /// It had requests and delivered nothing for the download's
    /// `silence_timeout`.
    Silent,
    /// Too many of its requests timed out.
    TooManyTimeouts,
    /// Closed to make room for a new peer after being idle.
    Evicted,
    /// A newer connection of the same peer replaced it.
    Replaced,
    /// This node stopped.
    Shutdown,
    /// This node's work is done (its download delivered).
    Done,
}

impl fmt::Display for Departure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Departure::Goodbye(reason) => write!(f, "said goodbye: {}", goodbye_words(*reason)),
            Departure::Ended(end) => write!(f, "{end}"),
            Departure::Violation(violation) => write!(f, "broke the protocol: {violation}"),
            Departure::BadData { chunk } => {
                write!(f, "sent chunk {chunk}, which failed its proof; banned")
            }
            Departure::Silent => write!(f, "delivered nothing for too long"),
            Departure::TooManyTimeouts => write!(f, "too many of its requests timed out"),
            Departure::Evicted => write!(f, "idle, closed to make room for another peer"),
            Departure::Replaced => write!(f, "replaced by a newer connection of the same peer"),
            Departure::Shutdown => write!(f, "we stopped"),
            Departure::Done => write!(f, "we are done"),
        }
    }
}

impl Departure {
    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        match self {
            Departure::Violation(_) | Departure::BadData { .. } => Blame::Peer,
            Departure::Ended(end) => end.blame(),
            Departure::Evicted | Departure::Replaced | Departure::Shutdown | Departure::Done => {
                Blame::Local
            }
            _ => Blame::Environment,
        }
    }
}

/// An error from outside the core (the disk, the final checks), kept
/// typed for the program that ran the job: it can downcast it back. Two
/// faults are equal when they say the same.
#[derive(Clone)]
pub struct Fault(Arc<dyn std::error::Error + Send + Sync>);

impl Fault {
    /// Wraps an error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The error, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Display for Fault {
    /// The error and its causes, in one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fault({self})")
    }
}

impl PartialEq for Fault {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Fault {}

/// What became of a peer a download tried, for a give-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Never dialed.
    NotTried,
    /// A dial is under way with no answer yet.
    NoAnswerYet,
    /// The last attempt failed.
    Failed(LinkEnd),
    /// The last session ended.
    Left(Departure),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotTried => write!(f, "not tried yet"),
            Problem::NoAnswerYet => write!(f, "dialed, no answer yet"),
            Problem::Failed(end) => write!(f, "{end}"),
            Problem::Left(departure) => write!(f, "{departure}"),
        }
    }
}

/// Why a peer could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// It is connected already.
    #[error("peer is connected already")]
    AlreadyConnected,
    /// Its bitfield covers another chunk count.
    #[error("peer's bitfield covers {found} chunks, the artifact has {expected}")]
    WrongBitfield {
        /// Chunks in the artifact.
        expected: u32,
        /// Chunks in the bitfield.
        found: u32,
    },
}

/// Why a listener refuses a Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The wire reason.
    pub reason: HelloRejectReason,
    /// Detail for the peer.
    pub detail: String,
    /// Other peers the refused dialer may try (a refusal for lack of room
    /// only; filtered like peer exchange, and none once
    /// [`NodeConfig::refusal_peers_per_second`](crate::config::NodeConfig)
    /// is spent).
    pub peers: Vec<minimodel_wire::PeerEntry>,
}

impl Rejection {
    /// How a link that was refused ends when the peers the refusal names
    /// are not kept (a listener's handshake, a manifest query).
    pub fn into_end(self) -> LinkEnd {
        LinkEnd::Refused {
            reason: self.reason,
            detail: self.detail,
        }
    }
}
