//! The `.slm` v0 container (`docs/slm-format.md`, normative).
//!
//! A `.slm` file is a 256-byte little-endian header followed by three
//! sections in a fixed order: the tokenizer (opaque bytes, checked by
//! SHA-256), the tensor layout table (128-byte entries, checked by SHA-256)
//! and the tensor data. The header also carries the quantization, the model
//! shape and the file length.
//!
//! - [`read_slm`] / [`read_slm_file`] check every rule of the spec and
//!   return an [`SlmInfo`], or an [`SlmError`] that names the rule and the
//!   place. They never read tensor data (the artifact SHA-256 of the
//!   manifest covers it), use bounded memory whatever the file claims, and
//!   never panic.
//! - [`write_fixture`] streams a valid synthetic file of an exact size from
//!   a [`FixtureSpec`], deterministically.
//!
//! ```
//! use std::io::Cursor;
//! use minimodel_verifier::slm::{FixtureSpec, read_slm, write_fixture};
//!
//! let mut bytes = Vec::new();
//! let written = write_fixture(&mut bytes, &FixtureSpec::new(64 * 1024, 1))?;
//! assert_eq!(bytes.len(), 64 * 1024);
//! assert_eq!(read_slm(&mut Cursor::new(&bytes))?, written);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it is not: a model loader. Nothing here interprets tokenizer or
//! tensor bytes, or checks that tensor names and dims match the model shape.

use crate::digest::Sha256Digest;
use crate::model::{ModelShape, Quantization};

mod error;
mod format;
mod generator;
mod reader;

pub use error::{FixtureError, SlmError, TensorNameProblem};
pub use format::{
    ALIGNMENT, HEADER_LEN, MAGIC, MAX_TENSOR_NAME_LEN, MAX_TENSOR_RANK, MAX_TENSORS, SlmSection,
    TENSOR_ENTRY_LEN, VERSION,
};
pub use generator::{FixtureSpec, MAX_FIXTURE_SIZE, MIN_FIXTURE_SIZE, write_fixture};
pub use reader::{read_slm, read_slm_file};

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
    /// Where the file's parts begin, ascending, each once: 0 (the header),
    /// the tokenizer, the tensor table, the data section and every tensor
    /// (absolute offsets). `slm-parts-merkle-v0` starts a chunk at each
    /// (`docs/merkle.md`).
    pub part_starts: Vec<u64>,
}

/// The starts of a file's parts from its sections' offsets and its
/// tensors' (relative to the data section): ascending, each once, all
/// inside the file.
pub(crate) fn part_starts(
    file_len: u64,
    sections: [u64; 3],
    data_offset: u64,
    tensor_offsets: impl IntoIterator<Item = u64>,
) -> Vec<u64> {
    let mut starts: Vec<u64> = std::iter::once(0)
        .chain(sections)
        .chain(
            tensor_offsets
                .into_iter()
                .filter_map(|offset| data_offset.checked_add(offset)),
        )
        .filter(|&start| start < file_len)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}
