//! Checks every file in `fixtures/manifest/` against the table in its
//! README: good files parse and round-trip, bad files fail with the line,
//! field, kind and message written there.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use minimodel_verifier::manifest::Manifest;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/manifest")
}

/// One row of the README table.
struct Expectation {
    file: String,
    line: Option<usize>,
    field: Option<String>,
    kind: String,
    message: String,
}

fn optional(cell: &str) -> Option<&str> {
    (cell != "-").then_some(cell)
}

fn expectations() -> Vec<Expectation> {
    let readme = fs::read_to_string(fixture_dir().join("README.md")).expect("README.md");
    readme
        .lines()
        .filter(|line| line.starts_with("| ") && line.contains(".manifest"))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 7, "row {row:?}");
            Expectation {
                file: cells[1].to_owned(),
                line: optional(cells[2]).map(|n| n.parse().expect("line number")),
                field: optional(cells[3]).map(str::to_owned),
                kind: cells[4].to_owned(),
                message: cells[5].to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_fixture_is_in_the_table_and_back() {
    let listed: BTreeSet<String> = expectations().into_iter().map(|e| e.file).collect();
    let present: BTreeSet<String> = fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".manifest"))
        .collect();
    assert_eq!(listed, present);
    assert!(present.iter().filter(|n| n.starts_with("good-")).count() >= 3);
    assert!(present.iter().filter(|n| n.starts_with("bad-")).count() >= 30);
}

#[test]
fn every_fixture_gives_its_expected_result() {
    for expected in expectations() {
        let bytes = fs::read(fixture_dir().join(&expected.file)).expect("fixture file");
        let result = Manifest::parse_bytes(&bytes);
        let name = &expected.file;
        if expected.kind == "ok" {
            assert!(name.starts_with("good-"), "{name}");
            let manifest = result.unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(manifest.validate(), Ok(()), "{name}");
            let canonical = manifest.to_text();
            assert_eq!(
                Manifest::parse(&canonical).as_ref(),
                Ok(&manifest),
                "{name}"
            );
            if !name.contains("commented") {
                assert_eq!(canonical.as_bytes(), &bytes[..], "{name} is not canonical");
            }
            continue;
        }
        assert!(name.starts_with("bad-"), "{name}");
        let error = match result {
            Ok(_) => panic!("{name} should be refused"),
            Err(error) => error,
        };
        assert_eq!(error.kind.code(), expected.kind, "{name}: {error}");
        assert_eq!(error.line, expected.line, "{name}: {error}");
        assert_eq!(error.field, expected.field, "{name}: {error}");
        assert!(
            error.to_string().contains(&expected.message),
            "{name}: {error:?} does not contain {:?}",
            expected.message
        );
    }
}

#[test]
fn commented_fixture_means_the_same_as_the_canonical_one() {
    let read = |name: &str| {
        let bytes = fs::read(fixture_dir().join(name)).expect("fixture");
        Manifest::parse_bytes(&bytes).expect("parses")
    };
    let canonical = read("good-canonical.manifest");
    let commented = read("good-commented.manifest");
    assert_eq!(commented.manifest_route, None);
    assert_eq!(commented.takedown_route, None);
    assert!(commented.display_name.ends_with("modèle réduit"));
    assert_eq!(commented.chunks, canonical.chunks);
    assert_eq!(commented.artifact_sha256, canonical.artifact_sha256);
}
