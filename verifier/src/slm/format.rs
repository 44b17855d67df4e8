//! The byte layout of `.slm` v0: constants, the header and the tensor table
//! entry, each with an encoder and a decoder that checks nothing beyond the
//! byte count. Validation lives in the reader; the generator and the tests
//! share these encoders so that every writer spells the format one way.
//!
//! Every offset here is the one in the tables of `docs/slm-format.md`.

use std::fmt;

/// The eight bytes every `.slm` file starts with: `7f 'M' 'I' 'N' 'I' 'S' 'L' 'M'`.
pub const MAGIC: [u8; 8] = *b"\x7fMINISLM";

/// The only container version this crate reads and writes.
pub const VERSION: u16 = 0;

/// Size of the fixed header at offset 0.
pub const HEADER_LEN: u64 = 256;

/// Every section and every tensor starts at a multiple of this.
pub const ALIGNMENT: u64 = 64;

/// Size of one tensor table entry.
pub const TENSOR_ENTRY_LEN: u64 = 128;

/// Most tensors a v0 file may list. Caps the table at 2 MiB, which is what
/// the reader holds in memory at most.
pub const MAX_TENSORS: u32 = 16_384;

/// Longest tensor name in bytes.
pub const MAX_TENSOR_NAME_LEN: usize = 63;

/// Most dimensions a tensor may have.
pub const MAX_TENSOR_RANK: u8 = 4;

// Header field offsets (docs/slm-format.md, "Header").
pub(crate) const OFF_VERSION: usize = 0x08;
pub(crate) const OFF_QUANTIZATION: usize = 0x0A;
pub(crate) const OFF_RESERVED_0B: usize = 0x0B;
pub(crate) const OFF_FLAGS: usize = 0x0C;
pub(crate) const OFF_SHAPE: usize = 0x10;
pub(crate) const OFF_TENSOR_COUNT: usize = 0x24;
pub(crate) const OFF_FILE_LEN: usize = 0x28;
pub(crate) const OFF_TOKENIZER: usize = 0x30;
pub(crate) const OFF_TABLE: usize = 0x60;
pub(crate) const OFF_DATA: usize = 0x90;
pub(crate) const OFF_RESERVED_TAIL: usize = 0xA0;

// Tensor entry field offsets (docs/slm-format.md, "Tensor table entry").
pub(crate) const ENTRY_OFF_NAME: usize = 0x01;
pub(crate) const ENTRY_OFF_DTYPE: usize = 0x40;
pub(crate) const ENTRY_OFF_RANK: usize = 0x41;
pub(crate) const ENTRY_OFF_RESERVED_42: usize = 0x42;
pub(crate) const ENTRY_OFF_DIMS: usize = 0x48;
pub(crate) const ENTRY_OFF_OFFSET: usize = 0x68;
pub(crate) const ENTRY_OFF_LEN: usize = 0x70;
pub(crate) const ENTRY_OFF_RESERVED_78: usize = 0x78;

/// The four regions of a `.slm` file, in the order they appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlmSection {
    /// The fixed 256-byte header at offset 0.
    Header,
    /// The tokenizer bytes, opaque to the container.
    Tokenizer,
    /// The tensor layout table.
    TensorTable,
    /// The tensor data.
    TensorData,
}

impl fmt::Display for SlmSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlmSection::Header => "header",
            SlmSection::Tokenizer => "tokenizer section",
            SlmSection::TensorTable => "tensor table",
            SlmSection::TensorData => "tensor data section",
        })
    }
}

/// Where a section lies: absolute byte offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SectionSpan {
    pub offset: u64,
    pub len: u64,
}

/// The header fields as they are on disk, before any check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub magic: [u8; 8],
    pub version: u16,
    pub quantization: u8,
    pub flags: u32,
    /// layers, hidden, heads, vocab, context.
    pub shape: [u32; 5],
    pub tensor_count: u32,
    pub file_len: u64,
    pub tokenizer: SectionSpan,
    pub tokenizer_sha256: [u8; 32],
    pub table: SectionSpan,
    pub table_sha256: [u8; 32],
    pub data: SectionSpan,
    /// Offset of the first non-zero reserved byte, if any.
    pub first_nonzero_reserved: Option<usize>,
}

impl RawHeader {
    pub fn decode(bytes: &[u8; HEADER_LEN as usize]) -> Self {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        let mut shape = [0u32; 5];
        for (i, value) in shape.iter_mut().enumerate() {
            *value = le_u32(bytes, OFF_SHAPE + 4 * i);
        }
        let reserved = std::iter::once(OFF_RESERVED_0B).chain(OFF_RESERVED_TAIL..bytes.len());
        let first_nonzero_reserved = reserved.into_iter().find(|&at| bytes[at] != 0);
        RawHeader {
            magic,
            version: le_u16(bytes, OFF_VERSION),
            quantization: bytes[OFF_QUANTIZATION],
            flags: le_u32(bytes, OFF_FLAGS),
            shape,
            tensor_count: le_u32(bytes, OFF_TENSOR_COUNT),
            file_len: le_u64(bytes, OFF_FILE_LEN),
            tokenizer: span(bytes, OFF_TOKENIZER),
            tokenizer_sha256: digest(bytes, OFF_TOKENIZER + 16),
            table: span(bytes, OFF_TABLE),
            table_sha256: digest(bytes, OFF_TABLE + 16),
            data: span(bytes, OFF_DATA),
            first_nonzero_reserved,
        }
    }

    /// Encodes the header; reserved bytes are written as zero whatever
    /// `first_nonzero_reserved` says.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[..8].copy_from_slice(&self.magic);
        put(&mut out, OFF_VERSION, &self.version.to_le_bytes());
        out[OFF_QUANTIZATION] = self.quantization;
        put(&mut out, OFF_FLAGS, &self.flags.to_le_bytes());
        for (i, value) in self.shape.iter().enumerate() {
            put(&mut out, OFF_SHAPE + 4 * i, &value.to_le_bytes());
        }
        put(&mut out, OFF_TENSOR_COUNT, &self.tensor_count.to_le_bytes());
        put(&mut out, OFF_FILE_LEN, &self.file_len.to_le_bytes());
        put_span(&mut out, OFF_TOKENIZER, self.tokenizer);
        put(&mut out, OFF_TOKENIZER + 16, &self.tokenizer_sha256);
        put_span(&mut out, OFF_TABLE, self.table);
        put(&mut out, OFF_TABLE + 16, &self.table_sha256);
        put_span(&mut out, OFF_DATA, self.data);
        out
    }
}

/// One tensor table entry as it is on disk, before any check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawTensorEntry {
    pub name_len: u8,
    /// The 63-byte name field: the name, then zero padding.
    pub name_field: [u8; MAX_TENSOR_NAME_LEN],
    pub dtype: u8,
    pub rank: u8,
    pub dims: [u64; MAX_TENSOR_RANK as usize],
    pub offset: u64,
    pub len: u64,
    /// Offset within the entry of the first non-zero reserved byte
    /// (0x42..0x48 and 0x78..0x80), if any.
    pub first_nonzero_reserved: Option<usize>,
}

impl RawTensorEntry {
    pub fn decode(bytes: &[u8; TENSOR_ENTRY_LEN as usize]) -> Self {
        let mut name_field = [0u8; MAX_TENSOR_NAME_LEN];
        name_field.copy_from_slice(&bytes[ENTRY_OFF_NAME..ENTRY_OFF_DTYPE]);
        let mut dims = [0u64; MAX_TENSOR_RANK as usize];
        for (i, dim) in dims.iter_mut().enumerate() {
            *dim = le_u64(bytes, ENTRY_OFF_DIMS + 8 * i);
        }
        let reserved =
            (ENTRY_OFF_RESERVED_42..ENTRY_OFF_DIMS).chain(ENTRY_OFF_RESERVED_78..bytes.len());
        let first_nonzero_reserved = reserved.into_iter().find(|&at| bytes[at] != 0);
        RawTensorEntry {
            name_len: bytes[0],
            name_field,
            dtype: bytes[ENTRY_OFF_DTYPE],
            rank: bytes[ENTRY_OFF_RANK],
            dims,
            offset: le_u64(bytes, ENTRY_OFF_OFFSET),
            len: le_u64(bytes, ENTRY_OFF_LEN),
            first_nonzero_reserved,
        }
    }

    /// Builds an entry for `name`; the caller guarantees the name is at most
    /// [`MAX_TENSOR_NAME_LEN`] bytes (longer names are cut).
    pub fn new(name: &str, dtype: u8, dims: &[u64], offset: u64, len: u64) -> Self {
        let bytes = name.as_bytes();
        let name_len = bytes.len().min(MAX_TENSOR_NAME_LEN);
        let mut name_field = [0u8; MAX_TENSOR_NAME_LEN];
        name_field[..name_len].copy_from_slice(&bytes[..name_len]);
        let rank = dims.len().min(MAX_TENSOR_RANK as usize);
        let mut all_dims = [0u64; MAX_TENSOR_RANK as usize];
        all_dims[..rank].copy_from_slice(&dims[..rank]);
        RawTensorEntry {
            name_len: name_len as u8,
            name_field,
            dtype,
            rank: rank as u8,
            dims: all_dims,
            offset,
            len,
            first_nonzero_reserved: None,
        }
    }

    pub fn encode(&self) -> [u8; TENSOR_ENTRY_LEN as usize] {
        let mut out = [0u8; TENSOR_ENTRY_LEN as usize];
        out[0] = self.name_len;
        out[ENTRY_OFF_NAME..ENTRY_OFF_DTYPE].copy_from_slice(&self.name_field);
        out[ENTRY_OFF_DTYPE] = self.dtype;
        out[ENTRY_OFF_RANK] = self.rank;
        for (i, dim) in self.dims.iter().enumerate() {
            put(&mut out, ENTRY_OFF_DIMS + 8 * i, &dim.to_le_bytes());
        }
        put(&mut out, ENTRY_OFF_OFFSET, &self.offset.to_le_bytes());
        put(&mut out, ENTRY_OFF_LEN, &self.len.to_le_bytes());
        out
    }
}

/// True for the bytes a tensor name may hold: `A-Z a-z 0-9 . _ -`.
pub(crate) fn is_tensor_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

/// `value` rounded up to a multiple of [`ALIGNMENT`], or `None` on overflow.
pub(crate) fn align_up(value: u64) -> Option<u64> {
    value
        .checked_add(ALIGNMENT - 1)
        .map(|v| v / ALIGNMENT * ALIGNMENT)
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn digest(bytes: &[u8], at: usize) -> [u8; 32] {
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&bytes[at..at + 32]);
    raw
}

fn span(bytes: &[u8], at: usize) -> SectionSpan {
    SectionSpan {
        offset: le_u64(bytes, at),
        len: le_u64(bytes, at + 8),
    }
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_span(out: &mut [u8], at: usize, span: SectionSpan) {
    put(out, at, &span.offset.to_le_bytes());
    put(out, at + 8, &span.len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> RawHeader {
        RawHeader {
            magic: MAGIC,
            version: VERSION,
            quantization: 8,
            flags: 0,
            shape: [3, 256, 4, 256, 512],
            tensor_count: 8,
            file_len: 65536,
            tokenizer: SectionSpan {
                offset: 256,
                len: 1850,
            },
            tokenizer_sha256: [0x11; 32],
            table: SectionSpan {
                offset: 2112,
                len: 1024,
            },
            table_sha256: [0x22; 32],
            data: SectionSpan {
                offset: 3136,
                len: 62400,
            },
            first_nonzero_reserved: None,
        }
    }

    #[test]
    fn header_round_trips() {
        let header = sample_header();
        assert_eq!(RawHeader::decode(&header.encode()), header);
    }

    #[test]
    fn header_fields_sit_at_documented_offsets() {
        let bytes = sample_header().encode();
        assert_eq!(&bytes[..8], b"\x7fMINISLM");
        assert_eq!(bytes[0x0A], 8);
        assert_eq!(&bytes[0x10..0x14], &3u32.to_le_bytes());
        assert_eq!(&bytes[0x20..0x24], &512u32.to_le_bytes());
        assert_eq!(&bytes[0x24..0x28], &8u32.to_le_bytes());
        assert_eq!(&bytes[0x28..0x30], &65536u64.to_le_bytes());
        assert_eq!(&bytes[0x30..0x38], &256u64.to_le_bytes());
        assert_eq!(&bytes[0x40..0x60], &[0x11; 32]);
        assert_eq!(&bytes[0x70..0x90], &[0x22; 32]);
        assert_eq!(&bytes[0x98..0xA0], &62400u64.to_le_bytes());
        assert!(bytes[0xA0..].iter().all(|&b| b == 0));
    }

    #[test]
    fn reserved_header_bytes_are_found() {
        let mut bytes = sample_header().encode();
        bytes[0xC3] = 1;
        assert_eq!(RawHeader::decode(&bytes).first_nonzero_reserved, Some(0xC3));
        bytes[0x0B] = 1;
        assert_eq!(RawHeader::decode(&bytes).first_nonzero_reserved, Some(0x0B));
    }

    #[test]
    fn entry_round_trips_and_finds_reserved_bytes() {
        let entry = RawTensorEntry::new("blk.0.attn.weight", 8, &[4, 256], 128, 1088);
        let mut bytes = entry.encode();
        assert_eq!(RawTensorEntry::decode(&bytes), entry);
        assert_eq!(bytes[0], 17);
        assert_eq!(&bytes[1..18], b"blk.0.attn.weight");
        assert_eq!(bytes[0x41], 2);
        bytes[0x7F] = 9;
        assert_eq!(
            RawTensorEntry::decode(&bytes).first_nonzero_reserved,
            Some(0x7F)
        );
    }

    #[test]
    fn align_up_rounds_and_refuses_overflow() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(64));
        assert_eq!(align_up(64), Some(64));
        assert_eq!(align_up(u64::MAX), None);
    }

    #[test]
    fn name_charset_is_the_documented_one() {
        for byte in b"azAZ09._-" {
            assert!(is_tensor_name_byte(*byte));
        }
        for byte in b" /\\\0:\x7f\xc3" {
            assert!(!is_tensor_name_byte(*byte));
        }
    }
}
