//! The opening of a control stream, as sans-IO state machines that every
//! driver runs the same way: [`DialHandshake`] (a dialer of one swarm),
//! [`ListenHandshake`] (a listener of any swarm, or of a manifest),
//! [`ManifestQuery`] (a dialer that knows only a manifest's SHA-256) and
//! [`ChunkListQuery`] (a dialer that asks for a manifest's chunk list).
//!
//! Each one wraps a [`ControlStream`], so every message in and out passes
//! its checks. The owner loops on `poll()` (which, like quinn-proto's
//! `poll_*`, only says what to do; it never blocks):
//!
//! - [`HandshakeStep::Send`]: write the message (it has passed the control
//!   stream's checks already);
//! - [`HandshakeStep::Read`]: read the next message and hand it over with
//!   `handle_message`, malformed bytes with `handle_decode_error`, the end
//!   of the peer's direction (FIN) with `handle_end`;
//! - [`HandshakeStep::AnswerHello`] (listener): the dialer's Hello,
//!   unchecked. [`ListenHandshake::bind`] it to the swarm it names, then
//!   [`ListenHandshake::accept`] with our Hello and bitfield, or
//!   [`ListenHandshake::reject`] it;
//! - [`HandshakeStep::AnswerManifest`] (listener): the dialer asks for a
//!   manifest; [`ListenHandshake::serve_manifest`] or reject;
//! - [`HandshakeStep::AnswerChunkList`] (listener): the dialer asks for a
//!   manifest's chunk list; [`ListenHandshake::serve_chunk_list`] (its
//!   ChunkHashes are then given one frame at a time) or reject;
//! - [`HandshakeStep::Done`]: everything to send has been given; `finish`
//!   says how it ended. After a failure, finish the stream and close the
//!   connection: a farewell (HelloReject or Goodbye, spec 8.4) was the last
//!   message `poll` gave, if the spec asks for one.
//!
//! The order is that of `docs/wire-protocol.md` section 8.3: the dialer's
//! Hello; the listener's Hello and HaveBitfield together; the dialer's
//! HaveBitfield once it has the listener's Hello. The fixture
//! `fixtures/wire/handshake.hex` is a transcript of both streams.
//!
//! ```
//! use minimodel_wire::{
//!     DialHandshake, HandshakeMachine, HandshakeStep, HaveBitfield, ListenHandshake, Listened,
//!     SwarmIdentity, SwarmParams,
//! };
//!
//! let swarm = SwarmIdentity::new("demo", [7; 32], SwarmParams::new(100, 10, 10).unwrap()).unwrap();
//! let hello = swarm.hello(true, None, "example/1").unwrap();
//! let mut dialer = DialHandshake::new(swarm.clone(), hello.clone(), HaveBitfield::new(10)).unwrap();
//! let mut listener = ListenHandshake::new();
//! // Both ends in one loop: what one sends, the other reads.
//! loop {
//!     let mut idle = true;
//!     while let HandshakeStep::Send(message) = dialer.poll() {
//!         listener.handle_message(&message).unwrap();
//!         idle = false;
//!     }
//!     match listener.poll() {
//!         HandshakeStep::Send(message) => {
//!             dialer.handle_message(&message).unwrap();
//!             idle = false;
//!         }
//!         HandshakeStep::AnswerHello(_their_hello) => {
//!             listener.bind(swarm.clone()).unwrap();
//!             listener.accept(hello.clone(), HaveBitfield::full(10)).unwrap();
//!             idle = false;
//!         }
//!         _ => {}
//!     }
//!     if idle {
//!         break;
//!     }
//! }
//! assert_eq!(dialer.poll(), HandshakeStep::Done);
//! assert_eq!(listener.poll(), HandshakeStep::Done);
//! let at_dialer = dialer.finish().unwrap();
//! assert_eq!(at_dialer.bitfield, HaveBitfield::full(10));
//! assert!(at_dialer.control.is_established());
//! assert!(matches!(listener.finish(), Ok(Listened::Session(_))));
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bitfield::HaveBitfield;
use crate::control::{ControlEvent, ControlStream, Role};
use crate::error::{BindError, ContextError, DecodeError, LocalMisuse, PeerError};
use crate::message::Message;
use crate::params::SwarmIdentity;
use crate::types::{
    GoodbyeReason, Hello, HelloRejectReason, MAX_CHUNK_HASHES_PER_MESSAGE,
    MAX_LISTED_CHUNKS_PER_MESSAGE, PeerEntry,
};

/// What the owner of a handshake does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Write this message on the control stream, then ask again.
    Send(Message),
    /// Read the next message from the peer and hand it over.
    Read,
    /// Listener: the dialer's Hello, checked against no swarm yet. Bind the
    /// handshake to the swarm it names and accept, or reject it.
    AnswerHello(Hello),
    /// Listener: the dialer asks for the manifest with this SHA-256. Serve
    /// it or reject.
    AnswerManifest([u8; 32]),
    /// Listener: the dialer asks for the chunk list of the manifest with
    /// this SHA-256. Serve it or reject.
    AnswerChunkList([u8; 32]),
    /// Over: call `finish`.
    Done,
}

/// A swarm session past its handshake: both Hellos and both bitfields are
/// exchanged, and the control stream is established both ways.
#[derive(Debug, Clone)]
pub struct Established {
    /// The control stream, for the rest of the session.
    pub control: ControlStream,
    /// The peer's Hello.
    pub hello: Hello,
    /// The peer's bitfield, sized to the swarm's chunk count.
    pub bitfield: HaveBitfield,
}

/// How a listener's handshake ended well.
#[derive(Debug, Clone)]
pub enum Listened {
    /// A swarm session.
    Session(Box<Established>),
    /// We sent the manifest the dialer asked for; the session is over.
    ManifestServed,
    /// We sent the chunk list the dialer asked for; the session is over.
    ChunkListServed,
}

/// Why a handshake did not end in a session (or a manifest, or a chunk
/// list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    /// The peer sent malformed bytes or an illegal message (a Hello for
    /// another swarm included). The farewell the spec asks for, if any,
    /// was the last message `poll` gave.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The listener refused our Hello, ManifestRequest or
    /// ChunkListRequest.
    #[error("the listener refused: {reason} ({detail:?})")]
    Rejected {
        /// Why.
        reason: HelloRejectReason,
        /// Its detail text.
        detail: String,
        /// Other peers of the swarm it suggests.
        peers: Vec<PeerEntry>,
    },
    /// We refused the dialer; our HelloReject was the last message sent.
    #[error("we refused the dialer: {reason} ({detail:?})")]
    Refused {
        /// Why.
        reason: HelloRejectReason,
        /// The detail text we sent.
        detail: String,
    },
    /// The peer said Goodbye before the handshake was over.
    #[error("the peer said goodbye during the handshake: {0}")]
    Goodbye(GoodbyeReason),
    /// The peer finished its direction of the stream before the handshake
    /// was over.
    #[error("the peer finished the control stream during the handshake")]
    Ended,
    /// Our own side broke a rule: a bug.
    #[error(transparent)]
    Local(#[from] LocalMisuse),
}

impl HandshakeFailure {
    /// Whether the last message the machine gave is a farewell the spec
    /// asks to reach the peer before the connection goes: our refusal of
    /// its Hello, or the violation we saw. Nothing else is sent on.
    pub fn farewell(&self) -> bool {
        matches!(
            self,
            HandshakeFailure::Peer(_) | HandshakeFailure::Refused { .. }
        )
    }
}

/// Where a handshake stands.
#[derive(Debug, Clone)]
enum State {
    Reading,
    AnswerHello(Hello),
    AnswerManifest([u8; 32]),
    AnswerChunkList([u8; 32]),
    /// A listener sends the chunk list, a frame each time `poll` asks.
    ServingChunkList {
        hashes: Arc<[[u8; 32]]>,
        /// A listed list's lengths (ListedChunks), one per hash.
        lengths: Option<Arc<[u32]>>,
        next: usize,
    },
    Done(Outcome),
}

/// How a handshake ended, kept until `finish`.
#[derive(Debug, Clone)]
enum Outcome {
    Established {
        hello: Hello,
        bitfield: HaveBitfield,
    },
    Manifest(Vec<u8>),
    ManifestServed,
    ChunkList(ReceivedChunkList),
    ChunkListServed,
    Failed(HandshakeFailure),
}

/// The machinery the handshakes share.
#[derive(Debug, Clone)]
struct Engine {
    control: ControlStream,
    outbox: VecDeque<Message>,
    state: State,
    /// A dialer's bitfield, sent once the listener's Hello is in.
    our_bitfield: Option<HaveBitfield>,
    /// A chunk list query's hashes as they arrive.
    hashes: Vec<[u8; 32]>,
    /// A listed chunk list query's lengths as they arrive.
    lengths: Vec<u32>,
}

impl Engine {
    fn new(control: ControlStream) -> Engine {
        Engine {
            control,
            outbox: VecDeque::new(),
            state: State::Reading,
            our_bitfield: None,
            hashes: Vec::new(),
            lengths: Vec::new(),
        }
    }

    fn queue(&mut self, message: Message) -> Result<(), LocalMisuse> {
        self.control.check_send(&message)?;
        self.outbox.push_back(message);
        Ok(())
    }

    fn poll(&mut self) -> HandshakeStep {
        if let Some(message) = self.outbox.pop_front() {
            return HandshakeStep::Send(message);
        }
        match &self.state {
            State::Reading => HandshakeStep::Read,
            State::AnswerHello(hello) => HandshakeStep::AnswerHello(hello.clone()),
            State::AnswerManifest(digest) => HandshakeStep::AnswerManifest(*digest),
            State::AnswerChunkList(digest) => HandshakeStep::AnswerChunkList(*digest),
            State::ServingChunkList {
                hashes,
                lengths,
                next,
            } => {
                let (hashes, lengths, first) = (Arc::clone(hashes), lengths.clone(), *next);
                self.next_chunk_hashes(&hashes, lengths, first)
            }
            State::Done(_) => HandshakeStep::Done,
        }
    }

    /// The ChunkHashes from chunk `first` of `hashes` (as many as one
    /// message carries), checked like every message sent; the last one
    /// ends the handshake. Only one frame is held at a time, whatever the
    /// list's length.
    fn next_chunk_hashes(
        &mut self,
        hashes: &Arc<[[u8; 32]]>,
        lengths: Option<Arc<[u32]>>,
        first: usize,
    ) -> HandshakeStep {
        // serve_chunk_list checked that the length fits a u32.
        let total = hashes.len() as u32;
        let (end, message) = match &lengths {
            None => {
                let end = hashes.len().min(first + MAX_CHUNK_HASHES_PER_MESSAGE);
                let message = Message::ChunkHashes {
                    total,
                    first: first as u32,
                    hashes: hashes[first..end].to_vec(),
                };
                (end, message)
            }
            Some(lengths) => {
                let end = hashes.len().min(first + MAX_LISTED_CHUNKS_PER_MESSAGE);
                let message = Message::ListedChunks {
                    total,
                    first: first as u32,
                    chunks: hashes[first..end]
                        .iter()
                        .copied()
                        .zip(lengths[first..end].iter().copied())
                        .collect(),
                };
                (end, message)
            }
        };
        if let Err(misuse) = self.control.check_send(&message) {
            self.end(Outcome::Failed(misuse.into()));
            return HandshakeStep::Done;
        }
        self.state = if end == hashes.len() {
            State::Done(Outcome::ChunkListServed)
        } else {
            State::ServingChunkList {
                hashes: Arc::clone(hashes),
                lengths,
                next: end,
            }
        };
        HandshakeStep::Send(message)
    }

    fn expecting(&self) -> &'static str {
        match self.state {
            State::Reading => "a message from the peer",
            State::AnswerHello(_) => "an answer to the dialer's Hello",
            State::AnswerManifest(_) => "an answer to the dialer's ManifestRequest",
            State::AnswerChunkList(_) => "an answer to the dialer's ChunkListRequest",
            State::ServingChunkList { .. } => "the chunk list to be sent (poll)",
            State::Done(_) => "nothing more (call finish)",
        }
    }

    fn out_of_turn(&self, call: &'static str) -> LocalMisuse {
        LocalMisuse::HandshakeOutOfTurn {
            call,
            expected: self.expecting(),
        }
    }

    fn check_reading(&self, call: &'static str) -> Result<(), LocalMisuse> {
        match self.state {
            State::Reading => Ok(()),
            _ => Err(self.out_of_turn(call)),
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.state = State::Done(outcome);
    }

    /// Ends the handshake with the peer to blame, its farewell queued.
    fn fail_peer(&mut self, error: PeerError) {
        if let Some(farewell) = self.control.farewell(&error) {
            // The farewell is legal by construction; if it were not,
            // closing without it is all that is left.
            let _ = self.queue(farewell);
        }
        self.end(Outcome::Failed(HandshakeFailure::Peer(error)));
    }

    fn handle_message(&mut self, message: &Message) -> Result<(), LocalMisuse> {
        self.check_reading("handle_message")?;
        let event = match self.control.on_receive(message) {
            Ok(event) => event,
            Err(violation) => {
                self.fail_peer(violation.into());
                return Ok(());
            }
        };
        match event {
            ControlEvent::PeerHello(hello) => match self.control.role() {
                Role::Listener => self.state = State::AnswerHello(hello),
                Role::Dialer => {
                    if let Some(bitfield) = self.our_bitfield.take()
                        && let Err(misuse) = self.queue(Message::HaveBitfield(bitfield))
                    {
                        self.end(Outcome::Failed(misuse.into()));
                    }
                }
            },
            ControlEvent::ManifestRequested(digest) => self.state = State::AnswerManifest(digest),
            ControlEvent::ChunkListRequested(digest) => {
                self.state = State::AnswerChunkList(digest);
            }
            ControlEvent::ChunkHashes {
                hashes,
                lengths,
                complete,
                ..
            } => {
                // The control stream checked the order, the total and
                // that a listed query gets lengths and another none.
                self.hashes.extend(hashes);
                let listed = lengths.is_some();
                self.lengths.extend(lengths.into_iter().flatten());
                if complete {
                    let hashes = std::mem::take(&mut self.hashes);
                    let lengths = std::mem::take(&mut self.lengths);
                    self.end(Outcome::ChunkList(ReceivedChunkList {
                        hashes,
                        lengths: listed.then_some(lengths),
                    }));
                }
            }
            ControlEvent::Bitfield(bitfield) => match self.control.peer_hello() {
                Some(hello) => {
                    let hello = hello.clone();
                    self.end(Outcome::Established { hello, bitfield });
                }
                // The control stream takes a bitfield only after an
                // accepted Hello.
                None => self.end(Outcome::Failed(self.out_of_turn("handle_message").into())),
            },
            ControlEvent::HelloRejected {
                reason,
                detail,
                peers,
            } => self.end(Outcome::Failed(HandshakeFailure::Rejected {
                reason,
                detail,
                peers,
            })),
            ControlEvent::Manifest(bytes) => self.end(Outcome::Manifest(bytes)),
            ControlEvent::Goodbye(reason) => {
                self.end(Outcome::Failed(HandshakeFailure::Goodbye(reason)));
            }
            // The control stream allows every other message only once the
            // peer's direction is established, which ends the handshake.
            _ => {}
        }
        Ok(())
    }

    fn handle_decode_error(&mut self, error: DecodeError) -> Result<(), LocalMisuse> {
        self.check_reading("handle_decode_error")?;
        self.fail_peer(error.into());
        Ok(())
    }

    fn handle_end(&mut self) -> Result<(), LocalMisuse> {
        self.check_reading("handle_end")?;
        self.end(Outcome::Failed(HandshakeFailure::Ended));
        Ok(())
    }

    /// The outcome, once `poll` says Done and nothing is left to send.
    fn outcome(self) -> Result<(ControlStream, Outcome), HandshakeFailure> {
        let unfinished = self.out_of_turn("finish");
        match self.state {
            State::Done(outcome) if self.outbox.is_empty() => Ok((self.control, outcome)),
            State::Done(_) => Err(LocalMisuse::HandshakeOutOfTurn {
                call: "finish",
                expected: "the queued messages to be sent first",
            }
            .into()),
            _ => Err(unfinished.into()),
        }
    }
}

/// The inputs and output every handshake machine has: what a driver
/// needs to carry any of them over a stream (send what [`Self::poll`]
/// gives, read when it says [`HandshakeStep::Read`], stop at any other
/// step), with one loop for all of them. The other side is the listener
/// for [`DialHandshake`], [`ManifestQuery`] and [`ChunkListQuery`], the
/// dialer for
/// [`ListenHandshake`]; only the listener stops to ask its owner
/// ([`HandshakeStep::AnswerHello`], [`HandshakeStep::AnswerManifest`],
/// [`HandshakeStep::AnswerChunkList`]).
pub trait HandshakeMachine {
    /// What to do next.
    fn poll(&mut self) -> HandshakeStep;
    /// A message from the other side (as [`Message::decode`] gives it).
    /// Errors only if the machine is not reading.
    fn handle_message(&mut self, message: &Message) -> Result<(), LocalMisuse>;
    /// Malformed bytes from the other side.
    fn handle_decode_error(&mut self, error: DecodeError) -> Result<(), LocalMisuse>;
    /// The other side finished its direction of the stream.
    fn handle_end(&mut self) -> Result<(), LocalMisuse>;
}

/// The inputs and outputs every handshake machine shares, forwarded to
/// its [`Engine`]; `$peer` names the other side in the docs.
macro_rules! engine_io {
    ($machine:ident, $peer:literal) => {
        #[doc = concat!("Its other side is the ", $peer, ".")]
        impl HandshakeMachine for $machine {
            fn poll(&mut self) -> HandshakeStep {
                self.0.poll()
            }
            fn handle_message(&mut self, message: &Message) -> Result<(), LocalMisuse> {
                self.0.handle_message(message)
            }
            fn handle_decode_error(&mut self, error: DecodeError) -> Result<(), LocalMisuse> {
                self.0.handle_decode_error(error)
            }
            fn handle_end(&mut self) -> Result<(), LocalMisuse> {
                self.0.handle_end()
            }
        }

        impl $machine {
            /// The control stream as it stands.
            pub fn control(&self) -> &ControlStream {
                &self.0.control
            }
        }
    };
}

engine_io!(DialHandshake, "listener");
engine_io!(ListenHandshake, "dialer");
engine_io!(ManifestQuery, "listener");
engine_io!(ChunkListQuery, "listener");

/// The dialer's handshake of a swarm session: our Hello, the listener's
/// Hello (or HelloReject), our HaveBitfield, the listener's HaveBitfield.
#[derive(Debug, Clone)]
pub struct DialHandshake(Engine);

impl DialHandshake {
    /// Starts a handshake in `swarm`: `hello` is queued at once, `bitfield`
    /// once the listener's Hello is in. Both are checked against `swarm`.
    pub fn new(
        swarm: SwarmIdentity,
        hello: Hello,
        bitfield: HaveBitfield,
    ) -> Result<DialHandshake, LocalMisuse> {
        let expected = swarm.params().chunk_count();
        if bitfield.chunk_count() != expected {
            return Err(ContextError::BitfieldChunkCount {
                found: bitfield.chunk_count(),
                expected,
            }
            .into());
        }
        let mut engine = Engine::new(ControlStream::new(Role::Dialer, swarm));
        engine.queue(Message::Hello(hello))?;
        engine.our_bitfield = Some(bitfield);
        Ok(DialHandshake(engine))
    }

    /// How the handshake ended, once [`Self::poll`] said
    /// [`HandshakeStep::Done`].
    pub fn finish(self) -> Result<Established, HandshakeFailure> {
        match self.0.outcome()? {
            (control, Outcome::Established { hello, bitfield }) => Ok(Established {
                control,
                hello,
                bitfield,
            }),
            (_, Outcome::Failed(failure)) => Err(failure),
            (_, _) => Err(LocalMisuse::HandshakeOutOfTurn {
                call: "finish",
                expected: "a swarm session, not a manifest or a chunk list",
            }
            .into()),
        }
    }
}

/// The listener's handshake: the dialer's first message decides between a
/// swarm session (Hello: [`HandshakeStep::AnswerHello`]) and a manifest
/// query (ManifestRequest: [`HandshakeStep::AnswerManifest`]). No swarm is
/// chosen beforehand: one port may serve many.
#[derive(Debug, Clone)]
pub struct ListenHandshake(Engine);

impl Default for ListenHandshake {
    fn default() -> Self {
        ListenHandshake::new()
    }
}

impl ListenHandshake {
    /// A listener's handshake, bound to no swarm.
    pub fn new() -> ListenHandshake {
        ListenHandshake(Engine::new(ControlStream::listener()))
    }

    /// Binds the handshake to the swarm the dialer's Hello names, checking
    /// the Hello against it ([`ControlStream::bind`]). On a mismatch
    /// ([`BindError::Peer`]) the handshake has failed and `poll` gives the
    /// HelloReject the spec asks for; otherwise answer with
    /// [`Self::accept`] or [`Self::reject`].
    pub fn bind(&mut self, swarm: SwarmIdentity) -> Result<(), BindError> {
        if !matches!(self.0.state, State::AnswerHello(_)) {
            return Err(self.0.out_of_turn("bind").into());
        }
        match self.0.control.bind(swarm) {
            Err(BindError::Peer(violation)) => {
                self.0.fail_peer(violation.clone().into());
                Err(BindError::Peer(violation))
            }
            other => other,
        }
    }

    /// Takes the dialer in: queues our Hello and bitfield. The handshake
    /// must be bound ([`Self::bind`]); both are checked against its swarm,
    /// and nothing is queued if one fails.
    pub fn accept(&mut self, hello: Hello, bitfield: HaveBitfield) -> Result<(), LocalMisuse> {
        if !matches!(self.0.state, State::AnswerHello(_)) {
            return Err(self.0.out_of_turn("accept"));
        }
        let mut control = self.0.control.clone();
        let hello = Message::Hello(hello);
        let bitfield = Message::HaveBitfield(bitfield);
        control.check_send(&hello)?;
        control.check_send(&bitfield)?;
        self.0.control = control;
        self.0.outbox.extend([hello, bitfield]);
        self.0.state = State::Reading;
        Ok(())
    }

    /// Refuses the dialer's Hello or ManifestRequest: queues a HelloReject
    /// with `peers` for the dialer to try instead (at most 32).
    pub fn reject(
        &mut self,
        reason: HelloRejectReason,
        detail: impl Into<String>,
        peers: Vec<PeerEntry>,
    ) -> Result<(), LocalMisuse> {
        if !matches!(
            self.0.state,
            State::AnswerHello(_) | State::AnswerManifest(_) | State::AnswerChunkList(_)
        ) {
            return Err(self.0.out_of_turn("reject"));
        }
        let detail = detail.into();
        self.0.queue(Message::HelloReject {
            reason,
            detail: detail.clone(),
            peers,
        })?;
        self.0.end(Outcome::Failed(HandshakeFailure::Refused {
            reason,
            detail,
        }));
        Ok(())
    }

    /// Answers a ManifestRequest with the manifest file's bytes (at most
    /// [`crate::MAX_MANIFEST_BYTES`]). This crate does not hash: the bytes
    /// are the caller's, and so is the check that they match the digest.
    pub fn serve_manifest(&mut self, bytes: Vec<u8>) -> Result<(), LocalMisuse> {
        if !matches!(self.0.state, State::AnswerManifest(_)) {
            return Err(self.0.out_of_turn("serve_manifest"));
        }
        self.0.queue(Message::Manifest { bytes })?;
        self.0.end(Outcome::ManifestServed);
        Ok(())
    }

    /// Answers a ChunkListRequest with `hashes`, the whole chunk list
    /// (1 to [`crate::MAX_CHUNK_COUNT`] hashes): [`Self::poll`] then gives
    /// its ChunkHashes one at a time, so that a driver holds one frame of
    /// it, not the list again. This crate does not hash: the caller
    /// answers only with the list of the manifest asked for.
    pub fn serve_chunk_list(&mut self, hashes: Arc<[[u8; 32]]>) -> Result<(), LocalMisuse> {
        self.serve_list(hashes, None)
    }

    /// [`Self::serve_chunk_list`] for a manifest whose chunks are listed
    /// (`slm-parts-merkle-v0`): each hash goes with its chunk's length
    /// (`lengths`, as many, each 1 or more), in ListedChunks.
    pub fn serve_listed_chunk_list(
        &mut self,
        hashes: Arc<[[u8; 32]]>,
        lengths: Arc<[u32]>,
    ) -> Result<(), LocalMisuse> {
        if !matches!(self.0.state, State::AnswerChunkList(_)) {
            return Err(self.0.out_of_turn("serve_listed_chunk_list"));
        }
        if lengths.len() != hashes.len() {
            return Err(LocalMisuse::ListedLengths {
                hashes: hashes.len(),
                lengths: lengths.len(),
            });
        }
        if let Some(chunk) = lengths.iter().position(|len| *len == 0) {
            return Err(LocalMisuse::Field {
                message_type: crate::types::MessageType::ListedChunks,
                error: crate::error::FieldError::ListedChunkEmpty {
                    chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
                },
            });
        }
        self.serve_list(hashes, Some(lengths))
    }

    fn serve_list(
        &mut self,
        hashes: Arc<[[u8; 32]]>,
        lengths: Option<Arc<[u32]>>,
    ) -> Result<(), LocalMisuse> {
        if !matches!(self.0.state, State::AnswerChunkList(_)) {
            return Err(self.0.out_of_turn("serve_chunk_list"));
        }
        let total = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
        crate::types::validate_chunk_hashes(total, 0, hashes.len().min(1) as u64).map_err(
            |error| LocalMisuse::Field {
                message_type: crate::types::MessageType::ChunkHashes,
                error,
            },
        )?;
        self.0.state = State::ServingChunkList {
            hashes,
            lengths,
            next: 0,
        };
        Ok(())
    }

    /// How the handshake ended, once [`Self::poll`] said
    /// [`HandshakeStep::Done`].
    pub fn finish(self) -> Result<Listened, HandshakeFailure> {
        match self.0.outcome()? {
            (control, Outcome::Established { hello, bitfield }) => {
                Ok(Listened::Session(Box::new(Established {
                    control,
                    hello,
                    bitfield,
                })))
            }
            (_, Outcome::ManifestServed) => Ok(Listened::ManifestServed),
            (_, Outcome::ChunkListServed) => Ok(Listened::ChunkListServed),
            (_, Outcome::Failed(failure)) => Err(failure),
            (_, Outcome::Manifest(_) | Outcome::ChunkList(_)) => {
                Err(LocalMisuse::HandshakeOutOfTurn {
                    call: "finish",
                    expected: "a listener's outcome",
                }
                .into())
            }
        }
    }
}

/// A dialer's manifest query: our ManifestRequest, then the listener's
/// Manifest or HelloReject. The bytes come back unchecked: hash them.
#[derive(Debug, Clone)]
pub struct ManifestQuery(Engine);

impl ManifestQuery {
    /// A query for the manifest whose SHA-256 is `manifest_sha256`; the
    /// request is queued at once.
    pub fn new(manifest_sha256: [u8; 32]) -> ManifestQuery {
        let mut engine = Engine::new(ControlStream::manifest_query(manifest_sha256));
        if let Err(misuse) = engine.queue(Message::ManifestRequest { manifest_sha256 }) {
            // A fresh query always takes its own request.
            engine.end(Outcome::Failed(misuse.into()));
        }
        ManifestQuery(engine)
    }

    /// The manifest's bytes, unchecked, once [`Self::poll`] said
    /// [`HandshakeStep::Done`].
    pub fn finish(self) -> Result<Vec<u8>, HandshakeFailure> {
        match self.0.outcome()? {
            (_, Outcome::Manifest(bytes)) => Ok(bytes),
            (_, Outcome::Failed(failure)) => Err(failure),
            (_, _) => Err(LocalMisuse::HandshakeOutOfTurn {
                call: "finish",
                expected: "a manifest",
            }
            .into()),
        }
    }
}

/// A chunk list as a chunk list query received it, unchecked: check it
/// against the manifest before any of it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedChunkList {
    /// `H[0]` to `H[total - 1]`.
    pub hashes: Vec<[u8; 32]>,
    /// Each chunk's length when the query was listed (ListedChunks), as
    /// many as the hashes; `None` from ChunkHashes.
    pub lengths: Option<Vec<u32>>,
}

/// A dialer's chunk list query: our ChunkListRequest, then the listener's
/// ChunkHashes in chunk order until the list is whole, or HelloReject. The
/// hashes come back unchecked: check them against the manifest's Merkle
/// root.
#[derive(Debug, Clone)]
pub struct ChunkListQuery(Engine);

impl ChunkListQuery {
    /// A query for the chunk list of the manifest whose SHA-256 is
    /// `manifest_sha256`, `chunk_count` hashes long (its chunk count); the
    /// request is queued at once. A list of another length, or out of
    /// order, is the listener's violation.
    pub fn new(manifest_sha256: [u8; 32], chunk_count: u32) -> ChunkListQuery {
        Self::with(
            ControlStream::chunk_list_query(manifest_sha256, chunk_count),
            manifest_sha256,
            chunk_count,
        )
    }

    /// [`Self::new`] for a manifest whose chunks are listed
    /// (`slm-parts-merkle-v0`): the answer is ListedChunks, each hash with
    /// its chunk's length.
    pub fn listed(manifest_sha256: [u8; 32], chunk_count: u32) -> ChunkListQuery {
        let control = ControlStream::listed_chunk_list_query(manifest_sha256, chunk_count);
        Self::with(control, manifest_sha256, chunk_count)
    }

    fn with(control: ControlStream, manifest_sha256: [u8; 32], chunk_count: u32) -> ChunkListQuery {
        let mut engine = Engine::new(control);
        // A count no list can have fails here, ours, not as the
        // listener's violation.
        if let Err(error) = crate::types::validate_chunk_hashes(chunk_count, 0, 1) {
            engine.end(Outcome::Failed(
                LocalMisuse::Field {
                    message_type: crate::types::MessageType::ChunkHashes,
                    error,
                }
                .into(),
            ));
        } else if let Err(misuse) = engine.queue(Message::ChunkListRequest { manifest_sha256 }) {
            // A fresh query always takes its own request.
            engine.end(Outcome::Failed(misuse.into()));
        }
        ChunkListQuery(engine)
    }

    /// The chunk hashes (and a listed list's lengths), unchecked, once
    /// [`Self::poll`] said [`HandshakeStep::Done`].
    pub fn finish(self) -> Result<ReceivedChunkList, HandshakeFailure> {
        match self.0.outcome()? {
            (_, Outcome::ChunkList(list)) => Ok(list),
            (_, Outcome::Failed(failure)) => Err(failure),
            (_, _) => Err(LocalMisuse::HandshakeOutOfTurn {
                call: "finish",
                expected: "a chunk list",
            }
            .into()),
        }
    }
}
