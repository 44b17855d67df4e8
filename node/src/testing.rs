//! Test support shared by the [`NodeCore`](crate::NodeCore) unit tests and
//! the whole-node simulator: a swarm, peer ids, and handshakes run through
//! two real [`ControlStream`]s so that a [`LinkUp`] carries the state the
//! wire crate's rules leave it in.

use std::net::SocketAddr;

use minimodel_wire::{
    ControlStream, HaveBitfield, Hello, Message, PeerId, Role, SwarmIdentity, SwarmParams,
};

use crate::node::LinkUp;

/// A swarm of `chunks` chunks of `chunk_size` bytes (the last one full).
pub(crate) fn swarm(chunk_size: u32, chunks: u32) -> SwarmIdentity {
    let params = SwarmParams::new(
        u64::from(chunk_size) * u64::from(chunks),
        chunk_size,
        chunks,
    )
    .expect("a valid geometry");
    SwarmIdentity::new("test-model", [7; 32], params).expect("a valid model id")
}

/// Peer `n`'s id.
pub(crate) fn peer_id(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// A Hello for `swarm`.
pub(crate) fn hello(swarm: &SwarmIdentity, serving: bool, listen: Option<SocketAddr>) -> Hello {
    swarm
        .hello(serving, listen, "netsim/1")
        .expect("a valid agent")
}

/// One side of a finished handshake: the Hello and bitfield it sent.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    /// Its id.
    pub id: PeerId,
    /// Where the other side sees it.
    pub addr: SocketAddr,
    /// Its Hello.
    pub hello: Hello,
    /// Its bitfield.
    pub have: HaveBitfield,
}

/// Runs the Hello and bitfield exchange between `dialer` and `listener`
/// through two control streams and returns each side's [`LinkUp`]:
/// `(dialer's, listener's)`. Panics if the wire rules refuse a step.
pub(crate) fn handshake(swarm: &SwarmIdentity, dialer: &Side, listener: &Side) -> (LinkUp, LinkUp) {
    let mut d = ControlStream::new(Role::Dialer, swarm.clone());
    let mut l = ControlStream::new(Role::Listener, swarm.clone());
    let steps = [
        (true, Message::Hello(dialer.hello.clone())),
        (false, Message::Hello(listener.hello.clone())),
        (true, Message::HaveBitfield(dialer.have.clone())),
        (false, Message::HaveBitfield(listener.have.clone())),
    ];
    for (from_dialer, message) in steps {
        let (sender, receiver) = if from_dialer {
            (&mut d, &mut l)
        } else {
            (&mut l, &mut d)
        };
        sender.check_send(&message).expect("ours to send");
        receiver.on_receive(&message).expect("theirs to accept");
    }
    assert!(d.is_established() && l.is_established());
    let up = |control: ControlStream, them: &Side| LinkUp {
        peer: them.id,
        remote: them.addr,
        hello: them.hello.clone(),
        bitfield: them.have.clone(),
        control,
        congestion: None,
    };
    (up(d, listener), up(l, dialer))
}
