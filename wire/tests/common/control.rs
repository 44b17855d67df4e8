//! Control-stream helpers: sample messages and streams driven into a given
//! phase with every cross-direction rule satisfied.

use minimodel_wire::{
    ChunkIndex, ControlEvent, ControlStream, GoodbyeReason, HaveBitfield, HelloRejectReason,
    Message, PeerEntry, PeerId, Phase, RejectReason, RendezvousFailedReason, Role,
};

use super::{GOLDEN_MANIFEST, addr, hello, sha256, swarm};

pub fn our_hello() -> Message {
    Message::Hello(hello(true, Some("192.0.2.7:4433".parse().unwrap())))
}

pub fn bitfield() -> Message {
    Message::HaveBitfield(HaveBitfield::full(10))
}

pub fn goodbye() -> Message {
    Message::Goodbye {
        reason: GoodbyeReason::Done,
    }
}

pub fn digest() -> [u8; 32] {
    sha256(GOLDEN_MANIFEST)
}

pub fn manifest_request() -> Message {
    Message::ManifestRequest {
        manifest_sha256: digest(),
    }
}

pub fn manifest() -> Message {
    Message::Manifest {
        bytes: GOLDEN_MANIFEST.to_vec(),
    }
}

pub fn chunk_list_request() -> Message {
    Message::ChunkListRequest {
        manifest_sha256: digest(),
    }
}

/// A ChunkHashes of `count` hashes from chunk `first` of a list of
/// `total`; hash `i` of the list is 32 bytes of `i`.
pub fn chunk_hashes(total: u32, first: u32, count: u32) -> Message {
    Message::ChunkHashes {
        total,
        first,
        hashes: (first..first + count).map(|i| [i as u8; 32]).collect(),
    }
}

/// A ListedChunks of chunks `first..first + count` of `total`: `H[i]` is
/// 32 bytes of `i`, its length `1000 + i`.
pub fn listed_chunks(total: u32, first: u32, count: u32) -> Message {
    Message::ListedChunks {
        total,
        first,
        chunks: (first..first + count)
            .map(|i| ([i as u8; 32], 1000 + i))
            .collect(),
    }
}

pub fn hello_reject(reason: HelloRejectReason) -> Message {
    Message::HelloReject {
        reason,
        detail: String::new(),
        peers: vec![PeerEntry::new(PeerId([9; 32]), addr("192.0.2.9:4433"))],
    }
}

/// One well-formed, in-range sample of every control message type.
pub fn samples() -> Vec<Message> {
    vec![
        our_hello(),
        hello_reject(HelloRejectReason::TooManyPeers),
        bitfield(),
        Message::Have {
            chunk: ChunkIndex(9),
        },
        Message::Request {
            chunk: ChunkIndex(0),
        },
        Message::RequestFrom {
            chunk: ChunkIndex(9),
            from: 1,
        },
        Message::Cancel {
            chunk: ChunkIndex(0),
        },
        Message::Reject {
            chunk: ChunkIndex(0),
            reason: RejectReason::NotHave,
        },
        Message::Peers {
            entries: vec![PeerEntry::new(PeerId([3; 32]), addr("192.0.2.3:4433"))],
        },
        Message::KeepAlive,
        goodbye(),
        Message::Rendezvous {
            peer: PeerId([3; 32]),
        },
        Message::Connect {
            peer: PeerId([4; 32]),
            addrs: vec![addr("198.51.100.4:6000")],
        },
        Message::RendezvousFailed {
            peer: PeerId([3; 32]),
            reason: RendezvousFailedReason::RateLimited,
        },
        manifest_request(),
        manifest(),
        chunk_list_request(),
        chunk_hashes(10, 0, 10),
        listed_chunks(10, 0, 10),
    ]
}

pub fn send(stream: &mut ControlStream, message: &Message) {
    stream
        .check_send(message)
        .unwrap_or_else(|e| panic!("send {:?}: {e}", message.message_type()));
}

pub fn receive(stream: &mut ControlStream, message: &Message) -> ControlEvent {
    stream
        .on_receive(message)
        .unwrap_or_else(|e| panic!("receive {:?}: {e}", message.message_type()))
}

/// How a listener learns its swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Created unbound, bound when the dialer's Hello is in (the primary
    /// path).
    OnHello,
    /// Created bound ([`ControlStream::new`]).
    AtStart,
}

pub const BINDINGS: [Binding; 2] = [Binding::OnHello, Binding::AtStart];

/// A fresh stream of a swarm session.
pub fn fresh(role: Role, binding: Binding) -> ControlStream {
    match (role, binding) {
        (Role::Listener, Binding::OnHello) => ControlStream::listener(),
        _ => ControlStream::new(role, swarm()),
    }
}

/// The listener receives the dialer's Hello and binds if it must.
pub fn listener_takes_hello(stream: &mut ControlStream) {
    receive(stream, &our_hello());
    if stream.swarm().is_none() {
        stream.bind(swarm()).unwrap();
    }
}

fn wanted(phase: Phase) -> usize {
    match phase {
        Phase::AwaitingHello => 0,
        Phase::AwaitingBitfield => 1,
        Phase::Established => 2,
        Phase::Closed => 3,
    }
}

/// A receiver whose peer's direction is in `phase`, with every rule tying
/// the directions together satisfied; a listener bound on the Hello.
pub fn receiver_in(role: Role, phase: Phase) -> ControlStream {
    receiver_in_with(role, phase, Binding::OnHello)
}

/// [`receiver_in`] with a choice of binding.
pub fn receiver_in_with(role: Role, phase: Phase, binding: Binding) -> ControlStream {
    let mut stream = fresh(role, binding);
    let steps: &[Message] = &[our_hello(), bitfield(), goodbye()];
    if role == Role::Dialer {
        send(&mut stream, &our_hello());
    }
    for (i, step) in steps.iter().take(wanted(phase)).enumerate() {
        if i == 0 && role == Role::Listener {
            listener_takes_hello(&mut stream);
            send(&mut stream, &our_hello());
        } else {
            receive(&mut stream, step);
        }
    }
    assert_eq!(stream.received_phase(), phase);
    stream
}

/// A sender in `phase`, with every rule tying the directions together
/// satisfied; a listener bound on the Hello.
pub fn sender_in(role: Role, phase: Phase) -> ControlStream {
    sender_in_with(role, phase, Binding::OnHello)
}

/// [`sender_in`] with a choice of binding.
pub fn sender_in_with(role: Role, phase: Phase, binding: Binding) -> ControlStream {
    let mut stream = fresh(role, binding);
    if role == Role::Listener {
        listener_takes_hello(&mut stream);
    }
    let steps: &[Message] = &[our_hello(), bitfield(), goodbye()];
    for (i, step) in steps.iter().take(wanted(phase)).enumerate() {
        send(&mut stream, step);
        if i == 0 && role == Role::Dialer {
            receive(&mut stream, &our_hello());
        }
    }
    assert_eq!(stream.sent_phase(), phase);
    stream
}

pub const PHASES: [Phase; 4] = [
    Phase::AwaitingHello,
    Phase::AwaitingBitfield,
    Phase::Established,
    Phase::Closed,
];
