//! Why a `.slm` file was refused, and why a fixture could not be written.
//!
//! Every [`SlmError`] variant but [`SlmError::Io`] blames the file: it names
//! the rule of `docs/slm-format.md` that failed and where (a byte offset, a
//! section or a tensor index). [`SlmError::Io`] blames the storage.

use crate::digest::Sha256Digest;
use crate::model::ModelShapeError;

use super::format::SlmSection;

/// Why a `.slm` file is not a valid `.slm` v0 container.
#[derive(Debug, thiserror::Error)]
pub enum SlmError {
    /// Reading failed for a reason other than the file's content.
    #[error("I/O error while reading the .slm file: {0}")]
    Io(#[from] std::io::Error),
    /// The file ended before a part it must contain.
    #[error("the .slm file ends at byte {at}, before the data it must hold there")]
    Truncated {
        /// Offset at which the bytes ran out (the file length as read).
        at: u64,
    },
    /// The first eight bytes are not `7f 4d 49 4e 49 53 4c 4d`.
    #[error(
        "not a .slm file: it begins \"{}\" where a .slm begins \"\\x7fMINISLM\"",
        found.escape_ascii()
    )]
    BadMagic {
        /// The first eight bytes (zero-padded if the file is shorter).
        found: [u8; 8],
    },
    /// The version is not 0.
    #[error("unsupported .slm version {found} (this reader knows version 0)")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
    },
    /// The header flags are not 0.
    #[error("header flags are {flags:#010x}; version 0 defines none, so they must be 0")]
    NonZeroFlags {
        /// The flags word.
        flags: u32,
    },
    /// A reserved byte of the header or of a tensor entry is not zero.
    #[error("reserved byte at offset {at} is not zero")]
    ReservedNotZero {
        /// Absolute file offset of the first non-zero reserved byte.
        at: u64,
    },
    /// A padding byte between two sections is not zero.
    #[error("padding byte at offset {at} is not zero")]
    PaddingNotZero {
        /// Absolute file offset of the first non-zero padding byte.
        at: u64,
    },
    /// The header's quantization code is not a known one.
    #[error("unknown quantization code {code} in the header")]
    UnknownQuantization {
        /// The code found.
        code: u8,
    },
    /// The header's model shape breaks a shape rule.
    #[error("invalid model shape in the header: {0}")]
    InvalidShape(#[source] ModelShapeError),
    /// The header's file length is not the real length.
    #[error("header says the file is {header} bytes, but it is {actual}")]
    FileLengthMismatch {
        /// Length written in the header.
        header: u64,
        /// Length of the file as read.
        actual: u64,
    },
    /// The header lists zero tensors.
    #[error("the tensor table lists no tensor")]
    NoTensors,
    /// The header lists more tensors than a v0 file may hold.
    #[error("the tensor table lists {count} tensors; at most {max} are allowed")]
    TooManyTensors {
        /// Count in the header.
        count: u32,
        /// The cap, [`super::MAX_TENSORS`].
        max: u32,
    },
    /// The table length is not entry count times entry size.
    #[error("tensor table is {len} bytes, but {count} entries take {expected}")]
    TableLengthMismatch {
        /// Entry count in the header.
        count: u32,
        /// Table length in the header.
        len: u64,
        /// `count * 128`.
        expected: u64,
    },
    /// A section offset is not a multiple of the alignment.
    #[error("{section} starts at offset {offset}, not a multiple of {alignment}")]
    Misaligned {
        /// The section.
        section: SlmSection,
        /// Its offset.
        offset: u64,
        /// The required alignment.
        alignment: u64,
    },
    /// A section does not lie within the file.
    #[error(
        "{section} at offset {offset} with length {len} does not fit in a file of {file_len} bytes"
    )]
    SectionOutOfBounds {
        /// The section.
        section: SlmSection,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// The file length.
        file_len: u64,
    },
    /// A section starts before the one it must follow has ended.
    #[error("{second} overlaps the {first} before it")]
    SectionsOverlap {
        /// The earlier section.
        first: SlmSection,
        /// The section that starts too early.
        second: SlmSection,
    },
    /// A section does not start at the first aligned offset after the
    /// section it follows.
    #[error("{section} starts at offset {found}, but must start at {expected}")]
    SectionGap {
        /// The section.
        section: SlmSection,
        /// Where it must start.
        expected: u64,
        /// Where the header says it starts.
        found: u64,
    },
    /// The tensor data section does not end at the end of the file.
    #[error("tensor data section ends at {data_end}, but the file goes on to {file_len}")]
    TrailingBytes {
        /// End offset of the data section.
        data_end: u64,
        /// File length.
        file_len: u64,
    },
    /// A section's SHA-256 is not the one in the header.
    #[error("{section} SHA-256 is {actual}, but the header says {expected}")]
    ChecksumMismatch {
        /// The section.
        section: SlmSection,
        /// Digest in the header.
        expected: Sha256Digest,
        /// Digest of the bytes.
        actual: Sha256Digest,
    },
    /// A tensor name is empty, too long or has a byte outside the charset.
    #[error("tensor {index} has an invalid name: {problem}")]
    InvalidTensorName {
        /// Index of the entry in the table.
        index: u32,
        /// What is wrong with it.
        problem: TensorNameProblem,
    },
    /// Two entries have the same name.
    #[error("tensors {first} and {second} are both named {name:?}")]
    DuplicateTensorName {
        /// Index of the first entry with the name.
        first: u32,
        /// Index of the later one.
        second: u32,
        /// The name.
        name: String,
    },
    /// A tensor's dtype is not a known quantization code.
    #[error("tensor {index} ({name}) has unknown dtype code {code}")]
    UnknownTensorDtype {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
        /// The code found.
        code: u8,
    },
    /// A tensor's rank is not 1 to 4.
    #[error("tensor {index} ({name}) has rank {rank}; it must be 1 to 4")]
    InvalidTensorRank {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
        /// The rank found.
        rank: u8,
    },
    /// A tensor dimension within its rank is zero.
    #[error("tensor {index} ({name}) has a zero dimension on axis {axis}")]
    ZeroDimension {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
        /// The axis (0-based).
        axis: u8,
    },
    /// A tensor's element count overflows, or does not fill whole blocks
    /// of its dtype, so it has no valid byte size.
    #[error("tensor {index} ({name}): its dimensions give no valid byte size for its dtype")]
    TensorSizeInvalid {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
    },
    /// A tensor's byte length is not what its dtype and dims need.
    #[error("tensor {index} ({name}) is {found} bytes, but its dtype and dims need {expected}")]
    TensorSizeMismatch {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
        /// Bytes the dims need.
        expected: u64,
        /// Byte length in the entry.
        found: u64,
    },
    /// A tensor offset is not a multiple of the alignment.
    #[error(
        "tensor {index} ({name}) starts at data offset {offset}, not a multiple of {alignment}"
    )]
    TensorMisaligned {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// The required alignment.
        alignment: u64,
    },
    /// A tensor does not lie within the data section.
    #[error(
        "tensor {index} ({name}) at data offset {offset} with length {len} does not fit in a data section of {data_len} bytes"
    )]
    TensorOutOfBounds {
        /// Index of the entry.
        index: u32,
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Byte length.
        len: u64,
        /// Length of the data section.
        data_len: u64,
    },
    /// Two tensors share bytes.
    #[error("tensors {first} and {second} overlap")]
    TensorsOverlap {
        /// Index of the tensor that starts first.
        first: u32,
        /// Index of the tensor that starts inside it.
        second: u32,
    },
}

impl SlmError {
    /// True when the storage failed, false when the file's content is at
    /// fault (the caller maps these to different exit codes).
    pub fn is_io(&self) -> bool {
        matches!(self, SlmError::Io(_))
    }
}

/// What is wrong with a tensor name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorNameProblem {
    /// Length byte 0.
    #[error("it is empty")]
    Empty,
    /// Length byte above 63.
    #[error("its length {len} is above 63")]
    TooLong {
        /// The length byte.
        len: u8,
    },
    /// A byte outside `A-Z a-z 0-9 . _ -`.
    #[error("byte {byte:#04x} at position {position} is not one of A-Z a-z 0-9 . _ -")]
    BadByte {
        /// Position within the name (0-based).
        position: u8,
        /// The byte.
        byte: u8,
    },
}

/// Why a fixture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The requested size cannot hold the header, tokenizer, table and one
    /// row per tensor.
    #[error("fixture size {size} is too small: at least {min} bytes are needed")]
    TooSmall {
        /// The requested size.
        size: u64,
        /// The least size that works for this spec.
        min: u64,
    },
    /// The requested size is above [`super::MAX_FIXTURE_SIZE`].
    #[error("fixture size {size} is too large: at most {max} bytes")]
    TooLarge {
        /// The requested size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The model shape breaks a shape rule.
    #[error("invalid model shape for the fixture: {0}")]
    InvalidShape(#[source] ModelShapeError),
    /// Writing failed.
    #[error("I/O error while writing the fixture: {0}")]
    Io(#[from] std::io::Error),
}
