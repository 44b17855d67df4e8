//! The `.slm` v0 container (`docs/slm-format.md`).
//!
//! SKELETON: the types are the agreed interface; reader and generator are
//! filled in by the `.slm` work.

use crate::digest::Sha256Digest;
use crate::model::{ModelShape, Quantization};

/// What a successful read of a `.slm` file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlmInfo {
    /// Container version (0).
    pub version: u16,
    /// Total file length in bytes.
    pub file_len: u64,
    /// Quantization of the weights.
    pub quantization: Quantization,
    /// Model shape.
    pub shape: ModelShape,
    /// SHA-256 of the tokenizer section.
    pub tokenizer_sha256: Sha256Digest,
    /// SHA-256 of the tensor layout table.
    pub tensor_layout_sha256: Sha256Digest,
    /// Number of tensors in the layout table.
    pub tensor_count: u32,
}
