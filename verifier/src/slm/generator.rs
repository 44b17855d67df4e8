//! Synthetic `.slm` v0 fixtures: valid containers of an exact size, with
//! incompressible pseudo-random tensor bytes, for tests, benchmarks and the
//! demo.
//!
//! Deterministic: the bytes depend only on the [`FixtureSpec`]. Streaming:
//! the header, tokenizer and table (a few KiB) are built in memory, then the
//! tensor data is generated through one 1 MiB buffer whatever the size.
//! The recipe is written down in `docs/slm-format.md`, "Synthetic
//! fixtures"; `fixtures/slm/tiny-seed1.slm` pins it.

use std::io::Write;

use crate::digest::Sha256Digest;
use crate::model::{ModelShape, Quantization};

use super::SlmInfo;
use super::error::FixtureError;
use super::format::{
    ALIGNMENT, HEADER_LEN, MAGIC, RawHeader, RawTensorEntry, SectionSpan, TENSOR_ENTRY_LEN,
    VERSION, align_up,
};

/// The least `size` that [`write_fixture`] accepts for every quantization,
/// shape and seed.
pub const MIN_FIXTURE_SIZE: u64 = 16 * 1024;

/// The largest `size` that [`write_fixture`] accepts (1 EiB): above it the
/// element count of a tensor could overflow a `u64`.
pub const MAX_FIXTURE_SIZE: u64 = 1 << 60;

/// Elements in one row of every fixture tensor: a whole number of blocks
/// of every quantization.
const FIXTURE_COLUMNS: u64 = 256;

/// The tensors of every fixture, in table and data order.
const FIXTURE_TENSOR_NAMES: [&str; 8] = [
    "token_embd.weight",
    "blk.0.attn.weight",
    "blk.0.ffn.weight",
    "blk.1.attn.weight",
    "blk.1.ffn.weight",
    "blk.2.attn.weight",
    "blk.2.ffn.weight",
    "output.weight",
];

const TENSOR_COUNT: u64 = FIXTURE_TENSOR_NAMES.len() as u64;

/// The most alignment padding the tensors can need between them.
const MAX_TENSOR_PADDING: u64 = (TENSOR_COUNT - 1) * (ALIGNMENT - 1);

/// Size of the buffer tensor bytes are generated into (a multiple of 8).
const WRITE_BUFFER_LEN: usize = 1 << 20;

/// What fixture to write. Equal specs give identical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureSpec {
    /// Exact file size in bytes, from [`MIN_FIXTURE_SIZE`] to
    /// [`MAX_FIXTURE_SIZE`].
    pub size: u64,
    /// Seed of the tensor bytes (and written into the tokenizer).
    pub seed: u64,
    /// Quantization in the header, and dtype of every tensor.
    pub quantization: Quantization,
    /// Model shape in the header.
    pub shape: ModelShape,
}

impl FixtureSpec {
    /// A `q8_0` fixture with the small [`FixtureSpec::default_shape`].
    pub fn new(size: u64, seed: u64) -> Self {
        FixtureSpec {
            size,
            seed,
            quantization: Quantization::Q8_0,
            shape: Self::default_shape(),
        }
    }

    /// `layers=3,hidden=256,heads=4,vocab=256,context=512`: three blocks,
    /// as many as the fixture's tensor names, and the byte-level vocabulary
    /// its tokenizer lists.
    pub fn default_shape() -> ModelShape {
        ModelShape {
            layers: 3,
            hidden: 256,
            heads: 4,
            vocab: 256,
            context: 512,
        }
    }

    /// The least size this spec can be written at (at most
    /// [`MIN_FIXTURE_SIZE`]).
    pub fn min_size(&self) -> u64 {
        let (_, _, data_offset) = self.front_layout();
        data_offset + MAX_TENSOR_PADDING + TENSOR_COUNT * row_bytes(self.quantization)
    }

    /// Tokenizer bytes, table offset and data offset.
    fn front_layout(&self) -> (Vec<u8>, u64, u64) {
        let tokenizer = tokenizer_bytes(self.seed, self.shape.vocab);
        let table_offset = aligned(HEADER_LEN + tokenizer.len() as u64);
        let data_offset = aligned(table_offset + TENSOR_COUNT * TENSOR_ENTRY_LEN);
        (tokenizer, table_offset, data_offset)
    }
}

/// Writes the fixture `spec` describes to `out`: exactly `spec.size` bytes
/// of valid `.slm` v0, and returns what [`super::read_slm`] will say of it.
///
/// Memory is a 1 MiB buffer plus a few KiB, whatever the size.
pub fn write_fixture<W: Write>(out: &mut W, spec: &FixtureSpec) -> Result<SlmInfo, FixtureError> {
    spec.shape.validate().map_err(FixtureError::InvalidShape)?;
    if spec.size > MAX_FIXTURE_SIZE {
        return Err(FixtureError::TooLarge {
            size: spec.size,
            max: MAX_FIXTURE_SIZE,
        });
    }
    let min = spec.min_size();
    if spec.size < min {
        return Err(FixtureError::TooSmall {
            size: spec.size,
            min,
        });
    }
    let (tokenizer, table_offset, data_offset) = spec.front_layout();
    let tensors = tensor_layout(spec, spec.size - data_offset);
    let mut table = Vec::with_capacity((TENSOR_COUNT * TENSOR_ENTRY_LEN) as usize);
    for tensor in &tensors {
        table.extend_from_slice(&tensor.encode());
    }
    let info = SlmInfo {
        version: VERSION,
        file_len: spec.size,
        quantization: spec.quantization,
        shape: spec.shape,
        tokenizer_sha256: Sha256Digest::of(&tokenizer),
        tensor_layout_sha256: Sha256Digest::of(&table),
        tensor_count: TENSOR_COUNT as u32,
        part_starts: super::part_starts(
            spec.size,
            [HEADER_LEN, table_offset, data_offset],
            data_offset,
            tensors.iter().map(|tensor| tensor.offset),
        ),
    };
    let header = RawHeader {
        magic: MAGIC,
        version: VERSION,
        quantization: spec.quantization.code(),
        flags: 0,
        shape: [
            spec.shape.layers,
            spec.shape.hidden,
            spec.shape.heads,
            spec.shape.vocab,
            spec.shape.context,
        ],
        tensor_count: info.tensor_count,
        file_len: spec.size,
        tokenizer: SectionSpan {
            offset: HEADER_LEN,
            len: tokenizer.len() as u64,
        },
        tokenizer_sha256: info.tokenizer_sha256.0,
        table: SectionSpan {
            offset: table_offset,
            len: table.len() as u64,
        },
        table_sha256: info.tensor_layout_sha256.0,
        data: SectionSpan {
            offset: data_offset,
            len: spec.size - data_offset,
        },
        first_nonzero_reserved: None,
    };

    let mut written = 0u64;
    let mut put = |out: &mut W, bytes: &[u8]| -> std::io::Result<()> {
        out.write_all(bytes)?;
        written += bytes.len() as u64;
        Ok(())
    };
    put(out, &header.encode())?;
    put(out, &tokenizer)?;
    write_zeros(out, table_offset - (HEADER_LEN + tokenizer.len() as u64))?;
    put(out, &table)?;
    let mut buffer = vec![0u8; WRITE_BUFFER_LEN];
    let mut data_position = 0u64;
    for (index, tensor) in (0u64..).zip(&tensors) {
        write_zeros(out, tensor.offset - data_position)?;
        let mut rng = Xoshiro256PlusPlus::for_tensor(spec.seed, index);
        let mut remaining = tensor.len;
        while remaining > 0 {
            let step = remaining.min(WRITE_BUFFER_LEN as u64) as usize;
            rng.fill(&mut buffer[..step]);
            out.write_all(&buffer[..step])?;
            remaining -= step as u64;
        }
        data_position = tensor.offset + tensor.len;
    }
    write_zeros(out, header.data.len - data_position)?;
    Ok(info)
}

/// Splits the data section among the tensors: rows of [`FIXTURE_COLUMNS`]
/// elements, as evenly as possible (the first tensors take one more row),
/// each tensor at the next aligned offset; what is left is zero padding
/// at the end of the data section.
fn tensor_layout(spec: &FixtureSpec, data_len: u64) -> Vec<RawTensorEntry> {
    let row = row_bytes(spec.quantization);
    let total_rows = (data_len - MAX_TENSOR_PADDING) / row;
    let mut offset = 0u64;
    let mut entries = Vec::with_capacity(FIXTURE_TENSOR_NAMES.len());
    for (index, name) in (0u64..).zip(FIXTURE_TENSOR_NAMES) {
        let rows = total_rows / TENSOR_COUNT + u64::from(index < total_rows % TENSOR_COUNT);
        let len = rows * row;
        entries.push(RawTensorEntry::new(
            name,
            spec.quantization.code(),
            &[rows, FIXTURE_COLUMNS],
            offset,
            len,
        ));
        offset = aligned(offset + len);
    }
    entries
}

/// Bytes of one row of [`FIXTURE_COLUMNS`] elements.
fn row_bytes(quantization: Quantization) -> u64 {
    quantization
        .tensor_bytes(FIXTURE_COLUMNS)
        .expect("256 elements are whole blocks of every quantization")
}

/// The synthetic tokenizer: a header line, the seed and the vocabulary
/// size, then the 256 byte tokens `<0x00>` to `<0xFF>`, one per line.
fn tokenizer_bytes(seed: u64, vocab: u32) -> Vec<u8> {
    let mut text = format!("minimodel synthetic tokenizer v0\nseed {seed}\nvocab {vocab}\n");
    for byte in 0..=255u8 {
        text.push_str(&format!("<0x{byte:02X}>\n"));
    }
    text.into_bytes()
}

/// Values here stay far below `u64::MAX`: sizes are capped at
/// [`MAX_FIXTURE_SIZE`].
fn aligned(value: u64) -> u64 {
    align_up(value).unwrap_or(u64::MAX)
}

fn write_zeros<W: Write>(out: &mut W, mut count: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while count > 0 {
        let step = count.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..step])?;
        count -= step as u64;
    }
    Ok(())
}

/// splitmix64 (Steele, Lea, Flood), used to seed xoshiro.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman, Vigna): fast, good enough for filler bytes, not
/// for anything secret.
struct Xoshiro256PlusPlus {
    s: [u64; 4],
}

impl Xoshiro256PlusPlus {
    /// The generator of tensor `index` of a fixture with `seed`.
    fn for_tensor(seed: u64, index: u64) -> Self {
        let mut state = seed ^ (index + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        Xoshiro256PlusPlus { s }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Fills `bytes` with successive outputs, little-endian; a last partial
    /// word uses its low bytes. Buffers that are multiples of 8 long thus
    /// continue one stream.
    fn fill(&mut self, bytes: &mut [u8]) {
        let mut words = bytes.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let last = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&last[..tail.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_the_reference_sequence() {
        // Reference implementation seeded with s = [1, 2, 3, 4].
        let mut rng = Xoshiro256PlusPlus { s: [1, 2, 3, 4] };
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(first, [41943041, 58720359, 3588806011781223]);
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        let mut state = 0u64;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn fill_continues_the_stream_across_buffers() {
        let mut whole = [0u8; 40];
        Xoshiro256PlusPlus::for_tensor(7, 0).fill(&mut whole);
        let mut rng = Xoshiro256PlusPlus::for_tensor(7, 0);
        let mut parts = [0u8; 40];
        rng.fill(&mut parts[..16]);
        rng.fill(&mut parts[16..]);
        assert_eq!(whole, parts);
    }

    #[test]
    fn min_fixture_size_covers_every_spec() {
        for quantization in Quantization::ALL {
            let mut spec = FixtureSpec::new(0, u64::MAX);
            spec.quantization = quantization;
            spec.shape.vocab = u32::MAX;
            assert!(spec.min_size() <= MIN_FIXTURE_SIZE, "{quantization}");
        }
    }

    #[test]
    fn tensors_fill_the_data_section_to_within_padding() {
        let spec = FixtureSpec::new(1 << 20, 3);
        let (_, _, data_offset) = spec.front_layout();
        let data_len = spec.size - data_offset;
        let tensors = tensor_layout(&spec, data_len);
        let last = &tensors[tensors.len() - 1];
        let end = last.offset + last.len;
        assert!(end <= data_len);
        assert!(data_len - end < MAX_TENSOR_PADDING + 2 * row_bytes(spec.quantization));
    }
}
