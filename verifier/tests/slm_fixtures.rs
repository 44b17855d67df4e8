//! The checked-in `.slm` test vectors under `fixtures/slm/`: the golden file
//! the generator must reproduce byte for byte, and the bad files, each of
//! which must fail the check `fixtures/slm/bad/README.md` names.
//!
//! `MINIMODEL_BLESS=1 cargo test --test slm_fixtures` rewrites the files
//! after a deliberate format change; the diff then shows what moved.

use std::fs;
use std::path::PathBuf;

use minimodel_verifier::digest::Sha256Digest;
use minimodel_verifier::slm::{
    FixtureSpec, MIN_FIXTURE_SIZE, SlmError, SlmSection, read_slm_file, write_fixture,
};

const GOLDEN_NAME: &str = "tiny-seed1.slm";

fn golden_spec() -> FixtureSpec {
    FixtureSpec::new(64 * 1024, 1)
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/slm")
}

fn blessing() -> bool {
    std::env::var_os("MINIMODEL_BLESS").is_some_and(|v| v == "1")
}

fn generate(spec: &FixtureSpec) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_fixture(&mut bytes, spec).expect("fixture");
    bytes
}

/// Compares `bytes` with the checked-in file, or writes it when blessing.
fn check_or_bless(path: &PathBuf, bytes: &[u8]) {
    if blessing() {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write fixture");
    }
    let stored = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        stored == bytes,
        "{} differs from what the code produces",
        path.display()
    );
}

#[test]
fn generator_reproduces_the_golden_file_byte_for_byte() {
    let dir = fixtures_dir();
    let bytes = generate(&golden_spec());
    check_or_bless(&dir.join(GOLDEN_NAME), &bytes);
    let sha_line = format!("{}  {GOLDEN_NAME}\n", Sha256Digest::of(&bytes));
    let sha_path = dir.join("tiny-seed1.sha256");
    if blessing() {
        fs::write(&sha_path, &sha_line).expect("write sha256");
    }
    assert_eq!(
        fs::read_to_string(&sha_path).expect("sha256 file"),
        sha_line
    );
}

#[test]
fn golden_file_reads_back_as_its_spec() {
    let path = fixtures_dir().join(GOLDEN_NAME);
    let info = read_slm_file(&path).expect("golden file is valid");
    let mut sink = Vec::new();
    let expected = write_fixture(&mut sink, &golden_spec()).expect("fixture");
    assert_eq!(info, expected);
    assert_eq!(info.file_len, 65536);
    assert_eq!(
        info.shape.to_string(),
        "layers=3,hidden=256,heads=4,vocab=256,context=512"
    );
}

/// A bad file: its name in `fixtures/slm/bad/`, how it is made from a valid
/// fixture, and the check it must trip.
struct BadFile {
    name: &'static str,
    corrupt: fn(&mut Vec<u8>),
    trips: fn(&SlmError) -> bool,
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn entry(bytes: &[u8], index: usize) -> usize {
    get_u64(bytes, 0x60) as usize + 128 * index
}

const BAD_FILES: [BadFile; 8] = [
    BadFile {
        name: "bad-magic.slm",
        corrupt: |b| b[1] = b'm',
        trips: |e| matches!(e, SlmError::BadMagic { .. }),
    },
    BadFile {
        name: "truncated-header.slm",
        corrupt: |b| b.truncate(128),
        trips: |e| matches!(e, SlmError::Truncated { at: 128 }),
    },
    BadFile {
        name: "version-1.slm",
        corrupt: |b| b[0x08] = 1,
        trips: |e| matches!(e, SlmError::UnsupportedVersion { found: 1 }),
    },
    BadFile {
        name: "file-length.slm",
        corrupt: |b| b.truncate(b.len() - 4096),
        trips: |e| matches!(e, SlmError::FileLengthMismatch { .. }),
    },
    BadFile {
        name: "sections-overlap.slm",
        corrupt: |b| put_u64(b, 0x60, 1024),
        trips: |e| {
            matches!(
                e,
                SlmError::SectionsOverlap {
                    first: SlmSection::Tokenizer,
                    second: SlmSection::TensorTable
                }
            )
        },
    },
    BadFile {
        name: "tokenizer-checksum.slm",
        corrupt: |b| b[0x100 + 40] ^= 1,
        trips: |e| {
            matches!(
                e,
                SlmError::ChecksumMismatch {
                    section: SlmSection::Tokenizer,
                    ..
                }
            )
        },
    },
    BadFile {
        name: "tensors-overlap.slm",
        corrupt: |b| {
            let offset = get_u64(b, entry(b, 3) + 0x68);
            let fourth = entry(b, 4);
            put_u64(b, fourth + 0x68, offset);
        },
        trips: |e| {
            matches!(
                e,
                SlmError::TensorsOverlap {
                    first: 3,
                    second: 4
                }
            )
        },
    },
    BadFile {
        name: "tensor-size.slm",
        corrupt: |b| {
            let at = entry(b, 0) + 0x70;
            let len = get_u64(b, at);
            put_u64(b, at, len - 34);
        },
        trips: |e| matches!(e, SlmError::TensorSizeMismatch { index: 0, .. }),
    },
];

#[test]
fn each_bad_file_fails_its_check() {
    let dir = fixtures_dir().join("bad");
    let readme = fs::read_to_string(dir.join("README.md")).expect("bad/README.md");
    let valid = generate(&FixtureSpec::new(MIN_FIXTURE_SIZE, 2));
    for bad in &BAD_FILES {
        let mut bytes = valid.clone();
        (bad.corrupt)(&mut bytes);
        let path = dir.join(bad.name);
        check_or_bless(&path, &bytes);
        let error = read_slm_file(&path).expect_err(bad.name);
        assert!((bad.trips)(&error), "{}: wrong error {error:?}", bad.name);
        assert!(
            readme.contains(&format!("`{}`", bad.name)),
            "{} is not described in bad/README.md",
            bad.name
        );
    }
    let listed = fs::read_dir(&dir)
        .expect("bad dir")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "slm"))
        })
        .count();
    assert_eq!(listed, BAD_FILES.len(), "every bad file is tested");
}
