//! The `.slm` v0 reader: every rule of `docs/slm-format.md`, checked in the
//! order the spec lists them, in bounded memory and without reading tensor
//! data.
//!
//! Memory: the 256-byte header, at most 63 bytes of padding at a time, the
//! tensor table (at most [`MAX_TENSORS`] entries, 2 MiB, allocated only
//! after its length was checked against the cap and the file length), one
//! range and one name per tensor, and a 64 KiB buffer to stream-hash the
//! tokenizer section.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;
use crate::model::{ModelShape, Quantization};

use super::SlmInfo;
use super::error::{SlmError, TensorNameProblem};
use super::format::{
    ALIGNMENT, ENTRY_OFF_DIMS, ENTRY_OFF_NAME, HEADER_LEN, MAGIC, MAX_TENSOR_NAME_LEN,
    MAX_TENSOR_RANK, MAX_TENSORS, RawHeader, RawTensorEntry, SectionSpan, SlmSection,
    TENSOR_ENTRY_LEN, VERSION, align_up, is_tensor_name_byte,
};

/// Buffer used to stream-hash the tokenizer section.
const HASH_BUFFER_LEN: usize = 64 * 1024;

/// Checks a `.slm` v0 file read from `reader` and says what it holds.
///
/// Reads from offset 0 whatever the reader's position, and leaves the
/// position unspecified. Never reads the tensor data section (the artifact
/// SHA-256 covers it). Never panics, whatever the bytes.
pub fn read_slm<R: Read + Seek>(reader: &mut R) -> Result<SlmInfo, SlmError> {
    let actual_len = reader.seek(SeekFrom::End(0))?;
    let header = read_header(reader, actual_len)?;
    let (quantization, shape) = check_header_fields(&header, actual_len)?;
    let padding = check_layout(&header, actual_len)?;
    for gap in padding {
        check_padding_is_zero(reader, gap)?;
    }

    // Bounded: the table length is tensor_count * 128 <= 2 MiB (checked
    // against MAX_TENSORS above) and the table lies within the file.
    let mut table = vec![0u8; header.table.len as usize];
    read_at(reader, header.table.offset, &mut table)?;
    let tensor_offsets = check_tensor_table(&table, &header)?;
    let tensor_layout_sha256 = Sha256Digest::of(&table);
    expect_digest(
        SlmSection::TensorTable,
        header.table_sha256,
        tensor_layout_sha256,
    )?;

    let tokenizer_sha256 = hash_section(reader, header.tokenizer)?;
    expect_digest(
        SlmSection::Tokenizer,
        header.tokenizer_sha256,
        tokenizer_sha256,
    )?;

    Ok(SlmInfo {
        version: header.version,
        file_len: actual_len,
        quantization,
        shape,
        tokenizer_sha256,
        tensor_layout_sha256,
        tensor_count: header.tensor_count,
        part_starts: super::part_starts(
            actual_len,
            [
                header.tokenizer.offset,
                header.table.offset,
                header.data.offset,
            ],
            header.data.offset,
            tensor_offsets,
        ),
    })
}

/// Opens `path` and checks it with [`read_slm`].
pub fn read_slm_file(path: &Path) -> Result<SlmInfo, SlmError> {
    let mut file = File::open(path)?;
    read_slm(&mut file)
}

/// Reads the header, telling a file that is not `.slm` at all (bad magic)
/// from one that is cut short.
fn read_header<R: Read + Seek>(reader: &mut R, actual_len: u64) -> Result<RawHeader, SlmError> {
    let mut bytes = [0u8; HEADER_LEN as usize];
    let available = actual_len.min(HEADER_LEN) as usize;
    read_at(reader, 0, &mut bytes[..available])?;
    let magic_len = available.min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        let mut found = [0u8; 8];
        found[..magic_len].copy_from_slice(&bytes[..magic_len]);
        return Err(SlmError::BadMagic { found });
    }
    if available < HEADER_LEN as usize {
        return Err(SlmError::Truncated { at: actual_len });
    }
    Ok(RawHeader::decode(&bytes))
}

fn check_header_fields(
    header: &RawHeader,
    actual_len: u64,
) -> Result<(Quantization, ModelShape), SlmError> {
    if header.version != VERSION {
        return Err(SlmError::UnsupportedVersion {
            found: header.version,
        });
    }
    if header.flags != 0 {
        return Err(SlmError::NonZeroFlags {
            flags: header.flags,
        });
    }
    if let Some(at) = header.first_nonzero_reserved {
        return Err(SlmError::ReservedNotZero { at: at as u64 });
    }
    let quantization =
        Quantization::from_code(header.quantization).ok_or(SlmError::UnknownQuantization {
            code: header.quantization,
        })?;
    let [layers, hidden, heads, vocab, context] = header.shape;
    let shape = ModelShape {
        layers,
        hidden,
        heads,
        vocab,
        context,
    };
    shape.validate().map_err(SlmError::InvalidShape)?;
    if header.file_len != actual_len {
        return Err(SlmError::FileLengthMismatch {
            header: header.file_len,
            actual: actual_len,
        });
    }
    if header.tensor_count == 0 {
        return Err(SlmError::NoTensors);
    }
    if header.tensor_count > MAX_TENSORS {
        return Err(SlmError::TooManyTensors {
            count: header.tensor_count,
            max: MAX_TENSORS,
        });
    }
    let expected = u64::from(header.tensor_count) * TENSOR_ENTRY_LEN;
    if header.table.len != expected {
        return Err(SlmError::TableLengthMismatch {
            count: header.tensor_count,
            len: header.table.len,
            expected,
        });
    }
    Ok((quantization, shape))
}

/// Checks that header, tokenizer, table and data follow each other in this
/// order, each at the first aligned offset after the one before, and that
/// the data section ends the file. Returns the padding gaps between them.
fn check_layout(header: &RawHeader, file_len: u64) -> Result<Vec<SectionSpan>, SlmError> {
    let sections = [
        (SlmSection::Tokenizer, header.tokenizer),
        (SlmSection::TensorTable, header.table),
        (SlmSection::TensorData, header.data),
    ];
    let mut gaps = Vec::with_capacity(sections.len());
    let mut previous = SlmSection::Header;
    let mut previous_end = HEADER_LEN;
    for (section, span) in sections {
        let end = span
            .offset
            .checked_add(span.len)
            .filter(|&end| end <= file_len)
            .ok_or(SlmError::SectionOutOfBounds {
                section,
                offset: span.offset,
                len: span.len,
                file_len,
            })?;
        if span.offset % ALIGNMENT != 0 {
            return Err(SlmError::Misaligned {
                section,
                offset: span.offset,
                alignment: ALIGNMENT,
            });
        }
        if span.offset < previous_end {
            return Err(SlmError::SectionsOverlap {
                first: previous,
                second: section,
            });
        }
        // previous_end <= file_len, so this cannot overflow.
        let expected = align_up(previous_end).unwrap_or(u64::MAX);
        if span.offset != expected {
            return Err(SlmError::SectionGap {
                section,
                expected,
                found: span.offset,
            });
        }
        gaps.push(SectionSpan {
            offset: previous_end,
            len: span.offset - previous_end,
        });
        previous = section;
        previous_end = end;
    }
    if previous_end != file_len {
        return Err(SlmError::TrailingBytes {
            data_end: previous_end,
            file_len,
        });
    }
    Ok(gaps)
}

fn check_padding_is_zero<R: Read + Seek>(reader: &mut R, gap: SectionSpan) -> Result<(), SlmError> {
    // A gap is shorter than ALIGNMENT by the layout rules.
    let mut bytes = [0u8; ALIGNMENT as usize];
    let len = (gap.len as usize).min(bytes.len());
    let bytes = &mut bytes[..len];
    read_at(reader, gap.offset, bytes)?;
    match bytes.iter().position(|&b| b != 0) {
        Some(position) => Err(SlmError::PaddingNotZero {
            at: gap.offset + position as u64,
        }),
        None => Ok(()),
    }
}

/// A tensor's place in the data section, for the overlap check.
struct TensorRange {
    offset: u64,
    end: u64,
    index: u32,
}

/// Checks the table and returns the tensors' offsets (relative to the data
/// section), in table order.
fn check_tensor_table(table: &[u8], header: &RawHeader) -> Result<Vec<u64>, SlmError> {
    let data_len = header.data.len;
    let mut names: HashMap<String, u32> = HashMap::new();
    let mut ranges = Vec::new();
    let mut offsets = Vec::new();
    let mut entry_bytes = [0u8; TENSOR_ENTRY_LEN as usize];
    for (index, chunk) in (0u32..).zip(table.chunks_exact(TENSOR_ENTRY_LEN as usize)) {
        entry_bytes.copy_from_slice(chunk);
        let entry = RawTensorEntry::decode(&entry_bytes);
        let entry_offset = header.table.offset + u64::from(index) * TENSOR_ENTRY_LEN;
        let name = check_entry(&entry, index, entry_offset)?;
        let len = entry.len;
        if !entry.offset.is_multiple_of(ALIGNMENT) {
            return Err(SlmError::TensorMisaligned {
                index,
                name,
                offset: entry.offset,
                alignment: ALIGNMENT,
            });
        }
        let end = entry
            .offset
            .checked_add(len)
            .filter(|&end| end <= data_len)
            .ok_or_else(|| SlmError::TensorOutOfBounds {
                index,
                name: name.clone(),
                offset: entry.offset,
                len,
                data_len,
            })?;
        if let Some(&first) = names.get(&name) {
            return Err(SlmError::DuplicateTensorName {
                first,
                second: index,
                name,
            });
        }
        names.insert(name, index);
        offsets.push(entry.offset);
        ranges.push(TensorRange {
            offset: entry.offset,
            end,
            index,
        });
    }
    ranges.sort_unstable_by_key(|range| (range.offset, range.index));
    // Sorted by start, and no neighbour overlaps: then ends rise too, so
    // no pair overlaps.
    for pair in ranges.windows(2) {
        if pair[1].offset < pair[0].end {
            return Err(SlmError::TensorsOverlap {
                first: pair[0].index,
                second: pair[1].index,
            });
        }
    }
    Ok(offsets)
}

/// Checks one entry on its own (name, reserved bytes, dtype, rank, dims,
/// size) and returns its name.
fn check_entry(entry: &RawTensorEntry, index: u32, entry_offset: u64) -> Result<String, SlmError> {
    let name = check_name(entry, index, entry_offset)?;
    if let Some(at) = entry.first_nonzero_reserved {
        return Err(SlmError::ReservedNotZero {
            at: entry_offset + at as u64,
        });
    }
    let Some(dtype) = Quantization::from_code(entry.dtype) else {
        return Err(SlmError::UnknownTensorDtype {
            index,
            name,
            code: entry.dtype,
        });
    };
    if !(1..=MAX_TENSOR_RANK).contains(&entry.rank) {
        return Err(SlmError::InvalidTensorRank {
            index,
            name,
            rank: entry.rank,
        });
    }
    let mut elements: Option<u64> = Some(1);
    for (axis, &dim) in (0u8..).zip(entry.dims.iter()) {
        if axis < entry.rank {
            if dim == 0 {
                return Err(SlmError::ZeroDimension { index, name, axis });
            }
            elements = elements.and_then(|e| e.checked_mul(dim));
        } else if let Some(byte) = dim.to_le_bytes().iter().position(|&b| b != 0) {
            let field = ENTRY_OFF_DIMS as u64 + 8 * u64::from(axis);
            return Err(SlmError::ReservedNotZero {
                at: entry_offset + field + byte as u64,
            });
        }
    }
    let Some(expected) = elements.and_then(|e| dtype.tensor_bytes(e)) else {
        return Err(SlmError::TensorSizeInvalid { index, name });
    };
    if entry.len != expected {
        return Err(SlmError::TensorSizeMismatch {
            index,
            name,
            expected,
            found: entry.len,
        });
    }
    Ok(name)
}

fn check_name(entry: &RawTensorEntry, index: u32, entry_offset: u64) -> Result<String, SlmError> {
    let problem = |problem| SlmError::InvalidTensorName { index, problem };
    let len = entry.name_len;
    if len == 0 {
        return Err(problem(TensorNameProblem::Empty));
    }
    if usize::from(len) > MAX_TENSOR_NAME_LEN {
        return Err(problem(TensorNameProblem::TooLong { len }));
    }
    let (name, padding) = entry.name_field.split_at(usize::from(len));
    if let Some((position, &byte)) = (0u8..)
        .zip(name)
        .find(|(_, byte)| !is_tensor_name_byte(**byte))
    {
        return Err(problem(TensorNameProblem::BadByte { position, byte }));
    }
    if let Some(position) = padding.iter().position(|&b| b != 0) {
        return Err(SlmError::ReservedNotZero {
            at: entry_offset + (ENTRY_OFF_NAME + usize::from(len) + position) as u64,
        });
    }
    // Every byte is ASCII, so each maps to one char.
    Ok(name.iter().map(|&b| char::from(b)).collect())
}

fn hash_section<R: Read + Seek>(
    reader: &mut R,
    span: SectionSpan,
) -> Result<Sha256Digest, SlmError> {
    reader.seek(SeekFrom::Start(span.offset))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; span.len.min(HASH_BUFFER_LEN as u64) as usize];
    let mut remaining = span.len;
    while remaining > 0 {
        let want = remaining.min(buffer.len() as u64) as usize;
        let got = match reader.read(&mut buffer[..want]) {
            Ok(0) => {
                return Err(SlmError::Truncated {
                    at: span.offset + (span.len - remaining),
                });
            }
            Ok(got) => got,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        };
        hasher.update(&buffer[..got]);
        remaining -= got as u64;
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}

fn expect_digest(
    section: SlmSection,
    expected: [u8; 32],
    actual: Sha256Digest,
) -> Result<(), SlmError> {
    if actual.0 == expected {
        Ok(())
    } else {
        Err(SlmError::ChecksumMismatch {
            section,
            expected: Sha256Digest(expected),
            actual,
        })
    }
}

/// Fills `buf` from `offset`, reporting a short file as [`SlmError::Truncated`].
fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, buf: &mut [u8]) -> Result<(), SlmError> {
    reader.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(SlmError::Truncated {
                    at: offset.saturating_add(filled as u64),
                });
            }
            Ok(got) => filled += got,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
