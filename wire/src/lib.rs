//! `minimodel-wire`: the piece protocol v1 (`docs/wire-protocol.md`).
//!
//! SKELETON: messages and codec are filled in by the wire protocol work;
//! [`PeerId`] and [`PeerAddr`] are the agreed interface.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod peer_id;

pub use peer_id::{PEER_ID_TEXT_LEN, PeerAddr, PeerId, PeerIdError};

/// The ALPN protocol id of piece protocol v1. A future version 2 would be
/// `minimodel/2`; peers offer every version they speak and TLS picks one.
pub const ALPN: &[u8] = b"minimodel/1";
