//! The generator and the reader agree: every fixture has exactly the size
//! asked for, reads back as the `SlmInfo` the generator returned, and
//! depends on its spec alone.

use std::io::{self, Cursor, Write};

use minimodel_verifier::model::{ModelShape, ModelShapeError, Quantization};
use minimodel_verifier::slm::{
    FixtureError, FixtureSpec, MAX_FIXTURE_SIZE, MIN_FIXTURE_SIZE, SlmInfo, read_slm,
    read_slm_file, write_fixture,
};
use proptest::prelude::*;

fn generate(spec: &FixtureSpec) -> (Vec<u8>, SlmInfo) {
    let mut bytes = Vec::new();
    let info = write_fixture(&mut bytes, spec).expect("fixture");
    (bytes, info)
}

fn assert_round_trip(spec: &FixtureSpec) {
    let (bytes, written) = generate(spec);
    assert_eq!(bytes.len() as u64, spec.size, "{spec:?}");
    let read = read_slm(&mut Cursor::new(&bytes)).expect("generated fixture is valid");
    assert_eq!(read, written);
    assert_eq!(read.quantization, spec.quantization);
    assert_eq!(read.shape, spec.shape);
    assert_eq!(read.file_len, spec.size);
}

#[test]
fn every_quantization_round_trips_at_the_minimum_size_and_above() {
    for quantization in Quantization::ALL {
        for size in [
            MIN_FIXTURE_SIZE,
            MIN_FIXTURE_SIZE + 1,
            MIN_FIXTURE_SIZE + 63,
            3 * 16 * 1024,
            1024 * 1024 + 7,
        ] {
            let mut spec = FixtureSpec::new(size, 9);
            spec.quantization = quantization;
            assert_round_trip(&spec);
        }
    }
}

#[test]
fn the_defaults_are_q8_0_and_a_small_valid_shape() {
    let spec = FixtureSpec::new(MIN_FIXTURE_SIZE, 0);
    assert_eq!(spec.quantization, Quantization::Q8_0);
    assert_eq!(spec.shape.validate(), Ok(()));
    assert!(spec.min_size() <= MIN_FIXTURE_SIZE);
}

#[test]
fn same_spec_same_bytes_and_seeds_change_the_data() {
    let spec = FixtureSpec::new(100_000, 42);
    let (first, _) = generate(&spec);
    let (again, _) = generate(&spec);
    assert!(first == again, "deterministic");

    let (other, other_info) = generate(&FixtureSpec::new(100_000, 43));
    assert!(first != other);
    // The seed reaches the tensor bytes, not only the tokenizer line.
    let data_offset = u64::from_le_bytes(first[0x90..0x98].try_into().expect("8")) as usize;
    let other_data_offset = u64::from_le_bytes(other[0x90..0x98].try_into().expect("8")) as usize;
    assert_eq!(data_offset, other_data_offset);
    assert!(first[data_offset..data_offset + 4096] != other[data_offset..data_offset + 4096]);
    assert_eq!(other_info.tensor_count, 8);
}

#[test]
fn tensor_bytes_are_not_compressible_filler() {
    let (bytes, _) = generate(&FixtureSpec::new(256 * 1024, 7));
    let data_offset = u64::from_le_bytes(bytes[0x90..0x98].try_into().expect("8")) as usize;
    let sample = &bytes[data_offset..data_offset + 64 * 1024];
    let mut counts = [0u32; 256];
    for &byte in sample {
        counts[usize::from(byte)] += 1;
    }
    // Uniform bytes give 256 per value on average; a repeating or mostly
    // zero pattern is far off.
    assert!(
        counts.iter().all(|&c| (128..=400).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn refuses_sizes_and_shapes_it_cannot_write() {
    let mut sink = Vec::new();
    let spec = FixtureSpec::new(1000, 1);
    match write_fixture(&mut sink, &spec) {
        Err(FixtureError::TooSmall { size: 1000, min }) => assert_eq!(min, spec.min_size()),
        other => panic!("expected TooSmall, got {other:?}"),
    }
    let just_below = FixtureSpec::new(spec.min_size() - 1, 1);
    assert!(matches!(
        write_fixture(&mut sink, &just_below),
        Err(FixtureError::TooSmall { .. })
    ));
    assert_round_trip(&FixtureSpec::new(spec.min_size(), 1));

    assert!(matches!(
        write_fixture(&mut sink, &FixtureSpec::new(MAX_FIXTURE_SIZE + 1, 1)),
        Err(FixtureError::TooLarge { .. })
    ));
    let mut bad_shape = FixtureSpec::new(MIN_FIXTURE_SIZE, 1);
    bad_shape.shape = ModelShape {
        heads: 3,
        ..bad_shape.shape
    };
    assert!(matches!(
        write_fixture(&mut sink, &bad_shape),
        Err(FixtureError::InvalidShape(
            ModelShapeError::HeadsDoNotDivideHidden { .. }
        ))
    ));
}

#[test]
fn write_errors_are_reported() {
    struct FullDisk;
    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(
        write_fixture(&mut FullDisk, &FixtureSpec::new(MIN_FIXTURE_SIZE, 1)),
        Err(FixtureError::Io(_))
    ));
}

/// Counts bytes and remembers the largest single write.
#[derive(Default)]
struct CountingSink {
    total: u64,
    largest_write: usize,
}

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.total += buf.len() as u64;
        self.largest_write = self.largest_write.max(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_fixtures_stream_through_a_small_buffer() {
    let size = 48 * 1024 * 1024 + 5;
    let mut sink = CountingSink::default();
    let info = write_fixture(&mut sink, &FixtureSpec::new(size, 11)).expect("fixture");
    assert_eq!(sink.total, size);
    assert_eq!(info.file_len, size);
    assert!(
        sink.largest_write <= 4 * 1024 * 1024,
        "{}",
        sink.largest_write
    );
}

#[test]
fn a_fixture_on_disk_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.slm");
    let spec = FixtureSpec::new(5 * 1024 * 1024 + 3, 77);
    let mut file = io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let written = write_fixture(&mut file, &spec).expect("fixture");
    file.flush().expect("flush");
    drop(file);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), spec.size);
    assert_eq!(read_slm_file(&path).expect("valid"), written);
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = read_slm_file(&dir.path().join("absent.slm")).expect_err("missing");
    assert!(error.is_io());
}

fn quantizations() -> impl Strategy<Value = Quantization> {
    prop::sample::select(Quantization::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_size_and_seed_round_trips(
        size in MIN_FIXTURE_SIZE..MIN_FIXTURE_SIZE + 256 * 1024,
        seed in any::<u64>(),
        quantization in quantizations(),
        layers in 1u32..=64,
        vocab in 1u32..,
    ) {
        let spec = FixtureSpec {
            size,
            seed,
            quantization,
            shape: ModelShape { layers, vocab, ..FixtureSpec::default_shape() },
        };
        let (bytes, written) = generate(&spec);
        prop_assert_eq!(bytes.len() as u64, size);
        let read = read_slm(&mut Cursor::new(&bytes));
        prop_assert!(read.is_ok(), "{:?}", read);
        prop_assert_eq!(read.ok(), Some(written));
    }

    #[test]
    fn different_seeds_give_different_files(
        size in MIN_FIXTURE_SIZE..MIN_FIXTURE_SIZE + 64 * 1024,
        seed in any::<u64>(),
    ) {
        let (first, _) = generate(&FixtureSpec::new(size, seed));
        let (second, _) = generate(&FixtureSpec::new(size, seed.wrapping_add(1)));
        prop_assert!(first != second);
    }
}
