//! `minimodel-wire`: the piece protocol v1 (`docs/wire-protocol.md`).
//!
//! SKELETON: messages and codec are filled in by the wire protocol work;
//! [`PeerId`] and [`PeerAddr`] are the agreed interface.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod peer_id;

pub use peer_id::{PEER_ID_TEXT_LEN, PeerAddr, PeerId, PeerIdError};
