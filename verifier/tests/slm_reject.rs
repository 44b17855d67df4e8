//! One test per rule of `docs/slm-format.md`: build a valid fixture, break
//! exactly one field, and check that the reader names that rule and place.
//! Offsets are the spec's, written out here on purpose.

use std::io::{self, Cursor, Read, Seek, SeekFrom};

use minimodel_verifier::digest::Sha256Digest;
use minimodel_verifier::model::ModelShapeError;
use minimodel_verifier::slm::{
    FixtureSpec, MAX_TENSORS, MIN_FIXTURE_SIZE, SlmError, SlmInfo, SlmSection, TensorNameProblem,
    read_slm, write_fixture,
};

const SEED: u64 = 5;

fn valid() -> Vec<u8> {
    let mut bytes = Vec::new();
    write_fixture(&mut bytes, &FixtureSpec::new(MIN_FIXTURE_SIZE, SEED)).expect("fixture");
    bytes
}

fn read(bytes: &[u8]) -> Result<SlmInfo, SlmError> {
    read_slm(&mut Cursor::new(bytes))
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn tokenizer_end(bytes: &[u8]) -> u64 {
    get_u64(bytes, 0x30) + get_u64(bytes, 0x38)
}

fn table_offset(bytes: &[u8]) -> u64 {
    get_u64(bytes, 0x60)
}

/// Absolute offset of tensor entry `index`.
fn entry(bytes: &[u8], index: usize) -> usize {
    table_offset(bytes) as usize + 128 * index
}

/// Rewrites the table SHA-256 in the header after a deliberate table edit.
fn reseal_table(bytes: &mut [u8]) {
    let start = table_offset(bytes) as usize;
    let len = get_u64(bytes, 0x68) as usize;
    let digest = Sha256Digest::of(&bytes[start..start + len]);
    bytes[0x70..0x90].copy_from_slice(digest.as_bytes());
}

#[test]
fn the_unbroken_fixture_is_valid() {
    let info = read(&valid()).expect("valid");
    assert_eq!(info.file_len, MIN_FIXTURE_SIZE);
    assert_eq!(info.tensor_count, 8);
}

#[test]
fn bad_magic() {
    let mut bytes = valid();
    bytes[3] = b'X';
    let found = *b"\x7fMIXISLM";
    assert!(matches!(read(&bytes), Err(SlmError::BadMagic { found: f }) if f == found));
    // A short file that is not .slm at all is a bad magic, not a truncation.
    assert!(matches!(
        read(b"hello"),
        Err(SlmError::BadMagic { found: f }) if f == *b"hello\0\0\0"
    ));
    // The message shows the bytes as text, as a person would read them.
    let message = read(b"format: minimodel-manifest-v0\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "not a .slm file: it begins \"format: \" where a .slm begins \"\\x7fMINISLM\""
    );
}

#[test]
fn truncated_header() {
    let bytes = valid();
    assert!(matches!(
        read(&bytes[..200]),
        Err(SlmError::Truncated { at: 200 })
    ));
    assert!(matches!(
        read(&bytes[..3]),
        Err(SlmError::Truncated { at: 3 })
    ));
    assert!(matches!(read(&[]), Err(SlmError::Truncated { at: 0 })));
}

#[test]
fn unsupported_version() {
    let mut bytes = valid();
    bytes[0x08] = 1;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::UnsupportedVersion { found: 1 })
    ));
}

#[test]
fn non_zero_flags() {
    let mut bytes = valid();
    put_u32(&mut bytes, 0x0C, 0x0100);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::NonZeroFlags { flags: 0x0100 })
    ));
}

#[test]
fn reserved_header_bytes() {
    for at in [0x0B, 0xA0, 0xFF] {
        let mut bytes = valid();
        bytes[at] = 0x80;
        assert!(
            matches!(read(&bytes), Err(SlmError::ReservedNotZero { at: a }) if a == at as u64),
            "{at:#x}"
        );
    }
}

#[test]
fn unknown_quantization() {
    let mut bytes = valid();
    bytes[0x0A] = 3;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::UnknownQuantization { code: 3 })
    ));
}

#[test]
fn invalid_shape() {
    let mut bytes = valid();
    put_u32(&mut bytes, 0x18, 3); // heads = 3 does not divide hidden = 256
    assert!(matches!(
        read(&bytes),
        Err(SlmError::InvalidShape(
            ModelShapeError::HeadsDoNotDivideHidden {
                hidden: 256,
                heads: 3
            }
        ))
    ));
    let mut bytes = valid();
    put_u32(&mut bytes, 0x20, 0); // context = 0
    assert!(matches!(
        read(&bytes),
        Err(SlmError::InvalidShape(ModelShapeError::Number("context")))
    ));
}

#[test]
fn file_length_mismatch() {
    let mut longer = valid();
    longer.push(0);
    assert!(matches!(
        read(&longer),
        Err(SlmError::FileLengthMismatch { header: MIN_FIXTURE_SIZE, actual }) if actual == MIN_FIXTURE_SIZE + 1
    ));
    let bytes = valid();
    let shorter = &bytes[..bytes.len() - 1];
    assert!(matches!(
        read(shorter),
        Err(SlmError::FileLengthMismatch { header: MIN_FIXTURE_SIZE, actual }) if actual == MIN_FIXTURE_SIZE - 1
    ));
}

#[test]
fn no_tensors() {
    let mut bytes = valid();
    put_u32(&mut bytes, 0x24, 0);
    assert!(matches!(read(&bytes), Err(SlmError::NoTensors)));
}

#[test]
fn too_many_tensors() {
    let mut bytes = valid();
    put_u32(&mut bytes, 0x24, MAX_TENSORS + 1);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TooManyTensors { count, max: MAX_TENSORS }) if count == MAX_TENSORS + 1
    ));
}

#[test]
fn table_length_mismatch() {
    let mut bytes = valid();
    put_u32(&mut bytes, 0x24, 9);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TableLengthMismatch {
            count: 9,
            len: 1024,
            expected: 1152
        })
    ));
}

#[test]
fn a_huge_table_claim_is_refused_without_allocating_it() {
    let mut bytes = valid();
    put_u32(&mut bytes, 0x24, MAX_TENSORS);
    put_u64(&mut bytes, 0x68, u64::from(MAX_TENSORS) * 128);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::SectionOutOfBounds {
            section: SlmSection::TensorTable,
            ..
        })
    ));
}

#[test]
fn section_out_of_bounds() {
    let mut bytes = valid();
    let data_len = get_u64(&bytes, 0x98);
    put_u64(&mut bytes, 0x98, data_len + 1);
    let data_offset = get_u64(&bytes, 0x90);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::SectionOutOfBounds {
            section: SlmSection::TensorData,
            offset,
            len,
            file_len: MIN_FIXTURE_SIZE
        }) if offset == data_offset && len == data_len + 1
    ));
    // offset + len overflows u64
    let mut bytes = valid();
    put_u64(&mut bytes, 0x30, u64::MAX - 63);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::SectionOutOfBounds {
            section: SlmSection::Tokenizer,
            ..
        })
    ));
}

#[test]
fn misaligned_section() {
    let mut bytes = valid();
    put_u64(&mut bytes, 0x30, 257);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::Misaligned {
            section: SlmSection::Tokenizer,
            offset: 257,
            alignment: 64
        })
    ));
}

#[test]
fn sections_overlap() {
    let mut bytes = valid();
    // The table may not start inside the tokenizer.
    let inside_tokenizer = (tokenizer_end(&bytes) - 1) / 64 * 64;
    put_u64(&mut bytes, 0x60, inside_tokenizer);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::SectionsOverlap {
            first: SlmSection::Tokenizer,
            second: SlmSection::TensorTable
        })
    ));
    // Nor the tokenizer inside the header.
    let mut bytes = valid();
    put_u64(&mut bytes, 0x30, 192);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::SectionsOverlap {
            first: SlmSection::Header,
            second: SlmSection::Tokenizer
        })
    ));
}

#[test]
fn section_gap() {
    let mut bytes = valid();
    let table = table_offset(&bytes);
    put_u64(&mut bytes, 0x60, table + 64);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::SectionGap {
            section: SlmSection::TensorTable,
            expected,
            found
        }) if expected == table && found == table + 64
    ));
}

#[test]
fn trailing_bytes_after_the_data_section() {
    let mut bytes = valid();
    let data_len = get_u64(&bytes, 0x98);
    put_u64(&mut bytes, 0x98, data_len - 64);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TrailingBytes { data_end, file_len: MIN_FIXTURE_SIZE })
            if data_end == MIN_FIXTURE_SIZE - 64
    ));
}

#[test]
fn padding_between_sections_must_be_zero() {
    let mut bytes = valid();
    let end = tokenizer_end(&bytes);
    assert!(
        end < table_offset(&bytes),
        "the fixture has tokenizer padding"
    );
    bytes[end as usize + 1] = 7;
    assert!(matches!(read(&bytes), Err(SlmError::PaddingNotZero { at }) if at == end + 1));
}

#[test]
fn tensor_name_empty_too_long_or_bad_byte() {
    let mut bytes = valid();
    let e = entry(&bytes, 2);
    bytes[e] = 0;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::InvalidTensorName {
            index: 2,
            problem: TensorNameProblem::Empty
        })
    ));
    bytes[e] = 64;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::InvalidTensorName {
            index: 2,
            problem: TensorNameProblem::TooLong { len: 64 }
        })
    ));
    let mut bytes = valid();
    bytes[e + 1 + 3] = b'/';
    assert!(matches!(
        read(&bytes),
        Err(SlmError::InvalidTensorName {
            index: 2,
            problem: TensorNameProblem::BadByte {
                position: 3,
                byte: b'/'
            }
        })
    ));
}

#[test]
fn tensor_name_padding_must_be_zero() {
    let mut bytes = valid();
    let e = entry(&bytes, 0);
    let name_len = usize::from(bytes[e]);
    bytes[e + 1 + name_len + 2] = b'x';
    let at = (e + 1 + name_len + 2) as u64;
    assert!(matches!(read(&bytes), Err(SlmError::ReservedNotZero { at: a }) if a == at));
}

#[test]
fn tensor_entry_reserved_bytes() {
    for field in [0x42, 0x47, 0x78, 0x7F] {
        let mut bytes = valid();
        let e = entry(&bytes, 1);
        bytes[e + field] = 1;
        let at = (e + field) as u64;
        assert!(
            matches!(read(&bytes), Err(SlmError::ReservedNotZero { at: a }) if a == at),
            "{field:#x}"
        );
    }
}

#[test]
fn dimensions_beyond_the_rank_must_be_zero() {
    let mut bytes = valid();
    let e = entry(&bytes, 1);
    // Rank is 2: dims[2] (0x58..0x60) is unused.
    bytes[e + 0x59] = 1;
    let at = (e + 0x59) as u64;
    assert!(matches!(read(&bytes), Err(SlmError::ReservedNotZero { at: a }) if a == at));
}

#[test]
fn duplicate_tensor_name() {
    let mut bytes = valid();
    let (first, second) = (entry(&bytes, 1), entry(&bytes, 4));
    let name_field: Vec<u8> = bytes[first..first + 0x40].to_vec();
    bytes[second..second + 0x40].copy_from_slice(&name_field);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::DuplicateTensorName { first: 1, second: 4, name }) if name == "blk.0.attn.weight"
    ));
}

#[test]
fn unknown_tensor_dtype() {
    let mut bytes = valid();
    let e = entry(&bytes, 3);
    bytes[e + 0x40] = 200;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::UnknownTensorDtype { index: 3, code: 200, name }) if name == "blk.1.attn.weight"
    ));
}

#[test]
fn tensor_rank_out_of_range() {
    for rank in [0u8, 5, 255] {
        let mut bytes = valid();
        let e = entry(&bytes, 0);
        bytes[e + 0x41] = rank;
        assert!(
            matches!(read(&bytes), Err(SlmError::InvalidTensorRank { index: 0, rank: r, .. }) if r == rank),
            "{rank}"
        );
    }
}

#[test]
fn zero_dimension() {
    let mut bytes = valid();
    let e = entry(&bytes, 5);
    put_u64(&mut bytes, e + 0x48, 0);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::ZeroDimension {
            index: 5,
            axis: 0,
            ..
        })
    ));
    // Raising the rank brings the (zero) third dimension into use.
    let mut bytes = valid();
    bytes[e + 0x41] = 3;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::ZeroDimension {
            index: 5,
            axis: 2,
            ..
        })
    ));
}

#[test]
fn tensor_size_invalid() {
    // Element count overflows u64.
    let mut bytes = valid();
    let e = entry(&bytes, 0);
    put_u64(&mut bytes, e + 0x48, u64::MAX);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorSizeInvalid { index: 0, .. })
    ));
    // q8_0 needs whole blocks of 32 elements.
    let mut bytes = valid();
    put_u64(&mut bytes, e + 0x50, 33);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorSizeInvalid { index: 0, .. })
    ));
}

#[test]
fn tensor_size_mismatch() {
    let mut bytes = valid();
    let e = entry(&bytes, 6);
    let len = get_u64(&bytes, e + 0x70);
    put_u64(&mut bytes, e + 0x70, len + 34);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorSizeMismatch { index: 6, expected, found, .. })
            if expected == len && found == len + 34
    ));
}

#[test]
fn tensor_misaligned() {
    let mut bytes = valid();
    let e = entry(&bytes, 1);
    let offset = get_u64(&bytes, e + 0x68);
    put_u64(&mut bytes, e + 0x68, offset + 32);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorMisaligned { index: 1, offset: o, alignment: 64, .. }) if o == offset + 32
    ));
}

#[test]
fn tensor_out_of_bounds() {
    let mut bytes = valid();
    let data_len = get_u64(&bytes, 0x98);
    let e = entry(&bytes, 7);
    let len = get_u64(&bytes, e + 0x70);
    let past_end = data_len.div_ceil(64) * 64;
    put_u64(&mut bytes, e + 0x68, past_end);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorOutOfBounds { index: 7, offset, len: l, data_len: d, .. })
            if offset == past_end && l == len && d == data_len
    ));
    // offset + len overflows u64
    put_u64(&mut bytes, e + 0x68, u64::MAX / 64 * 64);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorOutOfBounds { index: 7, .. })
    ));
}

#[test]
fn tensors_overlap() {
    let mut bytes = valid();
    let (one, two) = (entry(&bytes, 1), entry(&bytes, 2));
    let offset = get_u64(&bytes, one + 0x68);
    put_u64(&mut bytes, two + 0x68, offset + 64);
    assert!(matches!(
        read(&bytes),
        Err(SlmError::TensorsOverlap {
            first: 1,
            second: 2
        })
    ));
}

#[test]
fn table_checksum_mismatch() {
    let mut bytes = valid();
    let good = read(&bytes).expect("valid").tensor_layout_sha256;
    bytes[0x70] ^= 1;
    let mut claimed = good;
    claimed.0[0] ^= 1;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::ChecksumMismatch {
            section: SlmSection::TensorTable,
            expected,
            actual
        }) if expected == claimed && actual == good
    ));
}

#[test]
fn tokenizer_checksum_mismatch() {
    let mut bytes = valid();
    let good = read(&bytes).expect("valid").tokenizer_sha256;
    bytes[300] ^= 0x20;
    assert!(matches!(
        read(&bytes),
        Err(SlmError::ChecksumMismatch {
            section: SlmSection::Tokenizer,
            expected,
            ..
        }) if expected == good
    ));
}

#[test]
fn storage_errors_are_io_not_format_errors() {
    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk gone"))
        }
    }
    impl Seek for FailingReader {
        fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
            Ok(4096)
        }
    }
    let error = read_slm(&mut FailingReader).expect_err("fails");
    assert!(error.is_io(), "{error}");
    assert!(!SlmError::NoTensors.is_io());
}

#[test]
fn table_order_is_free_when_the_checksum_matches() {
    let mut bytes = valid();
    let (first, last) = (entry(&bytes, 0), entry(&bytes, 7));
    let saved: Vec<u8> = bytes[first..first + 128].to_vec();
    bytes.copy_within(last..last + 128, first);
    bytes[last..last + 128].copy_from_slice(&saved);
    reseal_table(&mut bytes);
    assert_eq!(read(&bytes).expect("valid").tensor_count, 8);
}

/// Records every byte range read, to show the reader skips tensor data.
struct ReadLog {
    inner: Cursor<Vec<u8>>,
    ranges: Vec<(u64, u64)>,
}

impl Read for ReadLog {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = self.inner.position();
        let got = self.inner.read(buf)?;
        self.ranges.push((start, start + got as u64));
        Ok(got)
    }
}

impl Seek for ReadLog {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

#[test]
fn the_reader_never_reads_tensor_data() {
    let bytes = valid();
    let data_offset = get_u64(&bytes, 0x90);
    let mut log = ReadLog {
        inner: Cursor::new(bytes),
        ranges: Vec::new(),
    };
    read_slm(&mut log).expect("valid");
    assert!(!log.ranges.is_empty());
    for (start, end) in log.ranges {
        assert!(
            end <= data_offset,
            "read {start}..{end} reaches data at {data_offset}"
        );
    }
}
