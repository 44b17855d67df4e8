//! `minimodel-swarm`: QUIC peers, the piece picker, the partial-file store,
//! seeding and fetching.
//!
//! SKELETON: filled in by the swarm work.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod transport;
