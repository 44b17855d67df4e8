//! `minimodel-node`: the decisions of a swarm peer, as sans-IO state
//! machines. Inputs carry the time; decisions come out as actions. No
//! sockets, no files, no clock, no async runtime: the crate does not depend
//! on tokio or quinn, so the compiler keeps it that way.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod book;
pub mod config;
pub mod download;
pub mod ends;
pub mod gate;
pub mod ids;
pub mod mirror;
#[cfg(test)]
pub(crate) mod netsim;
pub mod node;
pub mod observed;
pub mod picker;
pub mod portmap;
pub mod query;
pub mod reach;
pub mod relay;
pub mod remembered;
pub mod report;
pub mod rng;
pub mod session;
#[cfg(test)]
pub(crate) mod testing;
pub mod upload;

pub use config::NodeConfig;
pub use ids::LinkId;
pub use node::{Action, NodeCore, NodeStart, UploadState};
pub use report::NodeReport;
