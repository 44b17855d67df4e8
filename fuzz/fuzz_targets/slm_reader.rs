//! The `.slm` v0 reader on arbitrary bytes: it must return, never panic;
//! what it accepts is what the header says (`docs/slm-format.md`): the
//! whole file, the header's version, quantization, shape and tensor count,
//! the SHA-256 of the tokenizer section and of the tensor table where the
//! header puts them. It never reads the tensor data (other bytes there read
//! the same), reads from offset 0 wherever the reader stands, and a file cut
//! one byte short is refused.
#![no_main]

use std::io::{Cursor, Seek, SeekFrom};

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::model::Quantization;
use minimodel_verifier::slm::{HEADER_LEN, TENSOR_ENTRY_LEN, read_slm};

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

/// The bytes of a section the header places at `offset_at` (its offset,
/// then its length).
fn section(data: &[u8], offset_at: usize) -> &[u8] {
    let offset = u64_at(data, offset_at) as usize;
    let len = u64_at(data, offset_at + 8) as usize;
    &data[offset..offset + len]
}

fuzz_target!(|data: &[u8]| {
    let Ok(info) = read_slm(&mut Cursor::new(data)) else {
        return;
    };
    assert!(data.len() as u64 >= HEADER_LEN);
    assert_eq!(info.file_len, data.len() as u64);
    assert_eq!(u64_at(data, 0x28), info.file_len);
    assert_eq!(info.version, u16::from_le_bytes([data[8], data[9]]));
    assert_eq!(Quantization::from_code(data[0x0a]), Some(info.quantization));
    let shape = &info.shape;
    assert_eq!(
        [
            shape.layers,
            shape.hidden,
            shape.heads,
            shape.vocab,
            shape.context
        ],
        [0x10, 0x14, 0x18, 0x1c, 0x20].map(|at| u32_at(data, at))
    );
    assert_eq!(info.tensor_count, u32_at(data, 0x24));
    let table = section(data, 0x60);
    assert_eq!(
        table.len() as u64,
        u64::from(info.tensor_count) * TENSOR_ENTRY_LEN
    );
    assert_eq!(info.tensor_layout_sha256, Sha256Digest::of(table));
    assert_eq!(&data[0x70..0x90], &info.tensor_layout_sha256.0[..]);
    let tokenizer = section(data, 0x30);
    assert_eq!(info.tokenizer_sha256, Sha256Digest::of(tokenizer));
    assert_eq!(&data[0x40..0x60], &info.tokenizer_sha256.0[..]);

    // Other tensor data, the same answer.
    let data_offset = u64_at(data, 0x90) as usize;
    assert_eq!(data_offset as u64 + u64_at(data, 0x98), info.file_len);
    if data_offset < data.len() {
        let mut other = data.to_vec();
        other[data_offset..]
            .iter_mut()
            .for_each(|byte| *byte ^= 0xa5);
        assert_eq!(
            read_slm(&mut Cursor::new(&other)).ok().as_ref(),
            Some(&info)
        );
    }
    // From anywhere in the file, the same answer.
    let mut moved = Cursor::new(data);
    moved.seek(SeekFrom::Start(data.len() as u64 / 2)).unwrap();
    assert_eq!(read_slm(&mut moved).ok().as_ref(), Some(&info));
    // One byte short: refused.
    assert!(read_slm(&mut Cursor::new(&data[..data.len() - 1])).is_err());
});
