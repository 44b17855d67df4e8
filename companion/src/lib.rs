//! `minimodel-companion`: one long-running node over a library of
//! artifacts, the Peer Companion of the product's design. It shares
//! verified local `.slm` files and fetches artifacts from consenting
//! peers, remembers both across restarts, keeps downloads within a quota,
//! writes a transfer log, and is driven through a local HTTP API and the
//! web page it serves. Spec: `docs/companion.md`; threat model of the
//! API: `docs/security.md`, "The companion's API".
//!
//! What it is:
//! - [`library`]: the library directory, its lock (one companion per
//!   library) and its state file, written crash-safely;
//! - [`supervisor`]: every decision of the library (which items run,
//!   their states, tries and their back-off, caps, quota, a full disk),
//!   sans-IO: events and the time in, actions out;
//! - `service`: carries out the supervisor's actions (starts and stops
//!   runs, writes the state, measures the disk, tells the event stream)
//!   and reads what it needs for them;
//! - [`runner`]: the one seam between the companion and the swarm: run
//!   this share or this download, report its progress, stop it;
//! - [`translog`]: the append-only transfer log, rotated by size;
//! - [`quota`]: whether a download fits, decided before its first byte;
//! - [`follow`]: when followed channels are looked up and what a checked
//!   channel means for the library (withdrawn items, a new version),
//!   sans-IO;
//! - [`api`]: the HTTP API and the page, behind the token, Host and
//!   Origin checks of [`guard`];
//! - [`client`]: a small HTTP client for the CLI's thin commands;
//! - [`unit`]: the systemd user unit.
//!
//! What it is not: it makes no decision a peer makes (the swarm's node
//! core does), asks no one for consent (the API's caller carries it, in
//! explicit fields), and never opens or runs a model.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activity;
pub mod api;
pub mod client;
mod companion;
pub mod errors;
pub mod follow;
pub mod guard;
pub mod library;
pub mod quota;
pub mod runner;
#[cfg(feature = "schema")]
pub mod schema;
mod service;
pub mod supervisor;
pub mod token;
pub mod translog;
pub mod trust;
pub mod unit;
pub mod view;

pub use companion::{Companion, CompanionConfig, CompanionError, DEFAULT_API_PORT};
