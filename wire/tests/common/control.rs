//! Control-stream helpers: sample messages and streams driven into a given
//! phase with every cross-direction rule satisfied.

use minimodel_wire::{
    ChunkIndex, ControlEvent, ControlStream, GoodbyeReason, HaveBitfield, HelloRejectReason,
    Message, PeerEntry, PeerId, Phase, RejectReason, Role,
};

use super::{hello, swarm};

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

/// One well-formed, in-range sample of every control message type.
pub fn samples() -> Vec<Message> {
    vec![
        our_hello(),
        Message::HelloReject {
            reason: HelloRejectReason::TooManyPeers,
            detail: String::new(),
        },
        bitfield(),
        Message::Have {
            chunk: ChunkIndex(9),
        },
        Message::Request {
            chunk: ChunkIndex(0),
        },
        Message::Cancel {
            chunk: ChunkIndex(0),
        },
        Message::Reject {
            chunk: ChunkIndex(0),
            reason: RejectReason::NotHave,
        },
        Message::Peers {
            entries: vec![PeerEntry {
                id: PeerId([3; 32]),
                addr: "192.0.2.3:4433".parse().unwrap(),
            }],
        },
        Message::KeepAlive,
        goodbye(),
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

/// A receiver whose peer's direction is in `phase`, with every rule tying
/// the directions together satisfied.
pub fn receiver_in(role: Role, phase: Phase) -> ControlStream {
    let mut stream = ControlStream::new(role, swarm());
    let steps: &[Message] = &[our_hello(), bitfield(), goodbye()];
    let wanted = match phase {
        Phase::AwaitingHello => 0,
        Phase::AwaitingBitfield => 1,
        Phase::Established => 2,
        Phase::Closed => 3,
    };
    if role == Role::Dialer {
        send(&mut stream, &our_hello());
    }
    for (i, step) in steps.iter().take(wanted).enumerate() {
        receive(&mut stream, step);
        if i == 0 && role == Role::Listener {
            send(&mut stream, &our_hello());
        }
    }
    assert_eq!(stream.received_phase(), phase);
    stream
}

/// A sender in `phase`, with every rule tying the directions together
/// satisfied.
pub fn sender_in(role: Role, phase: Phase) -> ControlStream {
    let mut stream = ControlStream::new(role, swarm());
    if role == Role::Listener {
        receive(&mut stream, &our_hello());
    }
    let steps: &[Message] = &[our_hello(), bitfield(), goodbye()];
    let wanted = match phase {
        Phase::AwaitingHello => 0,
        Phase::AwaitingBitfield => 1,
        Phase::Established => 2,
        Phase::Closed => 3,
    };
    for (i, step) in steps.iter().take(wanted).enumerate() {
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
