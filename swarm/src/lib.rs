//! `minimodel-swarm`: QUIC peers, the piece picker, the partial-file store,
//! seeding and fetching.
//!
//! The protocol logic is sans-IO: [`picker`] and the download and upload
//! state machines take inputs with the time as an argument and return
//! actions; a thin tokio + quinn driver pumps them. That is what lets hostile
//! peers, loss and resume be tested in milliseconds without sockets.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub use minimodel_node::{download, picker, remembered, session, upload};
mod api;
pub use api::{Fetch, Fetched, Seed, fetch, seed};
pub mod addrs;
pub mod app;
pub mod dht;
pub mod fetch;
mod first;
pub mod input;
pub mod lan;
/// The QUIC link: handshake, control stream and piece streams. Public with
/// the `testing` feature, for the tests that drive piece streams directly.
#[cfg(feature = "testing")]
pub mod link;
#[cfg(not(feature = "testing"))]
pub(crate) mod link;
pub mod mirror;
pub mod node;
pub mod offer;
pub mod peers;
pub mod platform;
pub mod portmap;
pub mod relay;
pub mod resume;
pub mod seed;
pub mod store;
pub mod ticket;
pub(crate) mod trailing;
pub mod transport;
