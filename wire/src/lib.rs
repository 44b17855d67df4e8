//! `minimodel-wire`: the piece protocol v1 (`docs/wire-protocol.md`).
//!
//! SKELETON: filled in by the wire protocol work.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
