//! `minimodel-verifier`: everything that decides whether bytes are the
//! artifact a MiniModel manifest describes.
//!
//! What it is: the three formats of the project and their checks.
//! - [`manifest`]: manifests v0 and v1 (signed), the line-oriented text
//!   that binds an artifact to its license and evidence routes
//!   (`docs/manifest-v0.md`, `docs/manifest-v1.md`);
//! - [`slm`]: the `.slm` v0 container and a generator of synthetic ones
//!   (`docs/slm-format.md`);
//! - [`merkle`]: fixed-size-merkle-v0 chunk hashes, tree and proofs
//!   (`docs/merkle.md`);
//! - [`chunk`]: the [`chunk::VerifiedChunk`] proof type, the only way a chunk
//!   of bytes can count as checked;
//! - [`check`]: the full local check of a file against its manifest, with
//!   drift checks, and the [`receipt`] and [`catalog`] JSON it produces
//!   (`docs/formats.md`);
//! - [`route`]: route safety (https only, no credentials, no byte routes);
//! - [`mirror_url`]: the URLs of mirrors a person names (https, no
//!   credentials, never the project's byte routes);
//! - [`signing`]: publisher keys, manifest signatures, the keyring and the
//!   trust decision every command makes first (`docs/signing.md`).
//!
//! And [`aligned`]: read buffers on a cache line, which the kernel fills
//! several times faster.
//!
//! What it is not: it knows nothing of networks, peers or partial downloads.
//! The swarm feeds it bytes; it answers yes or no and says exactly why.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aligned;
pub mod catalog;
pub mod channel;
pub mod channel_state;
pub mod check;
pub mod chunk;
pub mod chunk_list;
pub mod describe;
pub mod digest;
pub mod document;
pub mod follow;
pub mod hashing;
pub mod ids;
pub mod manifest;
pub mod merkle;
pub mod mirror_url;
pub mod model;
pub mod receipt;
pub mod route;
pub mod signing;
pub mod slm;

pub use chunk::{ChunkGeometry, ChunkIndex, ChunkVerifier, VerifiedChunk};
pub use digest::Sha256Digest;
pub use ids::{KeyId, ModelId, PublisherId};
pub use manifest::Manifest;
pub use model::{ModelShape, Quantization};
