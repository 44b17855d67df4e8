//! `slm-parts-merkle-v0` against `fixtures/merkle/slm-parts-vectors.txt`,
//! written with `fixtures/merkle/slm-parts.slm` by an independent
//! implementation (`fixtures/merkle/make_slm_parts_vectors.py`): the
//! parts the reader finds, the chunks the geometry cuts, the chunk list,
//! the root, and a manifest described and verified with the scheme.

use std::path::{Path, PathBuf};

use minimodel_verifier::chunk_list::{ChunkList, ListShape, list_text};
use minimodel_verifier::describe::{PublisherFields, describe_file};
use minimodel_verifier::hashing::hash_reader_in;
use minimodel_verifier::manifest::ChunkScheme;
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::slm::read_slm_file;
use minimodel_verifier::{ChunkGeometry, ChunkIndex, Manifest, Sha256Digest};

struct Vectors {
    file_bytes: u64,
    file_sha256: Sha256Digest,
    chunk_size: u32,
    part_starts: Vec<u64>,
    chunks: Vec<(u64, u32, Sha256Digest)>,
    list_sha256: Sha256Digest,
    root: Sha256Digest,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/merkle/slm-parts.slm")
}

fn vectors() -> Vectors {
    let text = include_str!("../../fixtures/merkle/slm-parts-vectors.txt");
    let mut v = Vectors {
        file_bytes: 0,
        file_sha256: Sha256Digest::default(),
        chunk_size: 0,
        part_starts: vec![],
        chunks: vec![],
        list_sha256: Sha256Digest::default(),
        root: Sha256Digest::default(),
    };
    let digest = |s: &str| s.parse::<Sha256Digest>().expect("vector hex");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["file-bytes", n] => v.file_bytes = n.parse().unwrap(),
            ["file-sha256", h] => v.file_sha256 = digest(h),
            ["chunk-size", n] => v.chunk_size = n.parse().unwrap(),
            ["part-starts", list] => {
                v.part_starts = list.split(',').map(|s| s.parse().unwrap()).collect()
            }
            ["chunk-count", _] => {}
            ["chunk", _, at, n, h] => {
                v.chunks
                    .push((at.parse().unwrap(), n.parse().unwrap(), digest(h)))
            }
            ["chunk-list-sha256", h] => v.list_sha256 = digest(h),
            ["merkle-root", h] => v.root = digest(h),
            other => panic!("unknown vector line {other:?}"),
        }
    }
    assert!(v.chunks.len() > 4, "the vectors hold chunks");
    v
}

#[test]
fn the_reader_finds_the_parts_and_the_geometry_cuts_the_vectors_chunks() {
    let v = vectors();
    let slm = read_slm_file(&fixture()).unwrap();
    assert_eq!(slm.file_len, v.file_bytes);
    assert_eq!(slm.part_starts, v.part_starts);
    let geometry = ChunkGeometry::slm_parts(v.file_bytes, v.chunk_size, &slm.part_starts).unwrap();
    assert!(geometry.is_listed());
    assert_eq!(geometry.chunk_count() as usize, v.chunks.len());
    for (index, (at, len, _)) in (0u32..).zip(&v.chunks) {
        let range = geometry.byte_range(ChunkIndex(index)).unwrap();
        assert_eq!(
            (range.start, range.end),
            (*at, at + u64::from(*len)),
            "chunk {index}"
        );
        assert_eq!(geometry.chunk_at(*at), Some(ChunkIndex(index)));
    }
}

#[test]
fn the_hashes_list_and_root_are_the_vectors() {
    let v = vectors();
    let slm = read_slm_file(&fixture()).unwrap();
    let geometry = ChunkGeometry::slm_parts(v.file_bytes, v.chunk_size, &slm.part_starts).unwrap();
    let hashes =
        hash_reader_in(std::fs::File::open(fixture()).unwrap(), &geometry, &|_| {}).unwrap();
    assert_eq!(hashes.sha256, v.file_sha256);
    let expected: Vec<Sha256Digest> = v.chunks.iter().map(|c| c.2).collect();
    assert_eq!(hashes.chunk_hashes, expected);
    let text = list_text(&hashes.chunk_hashes, &geometry);
    assert_eq!(Sha256Digest::of(text.as_bytes()), v.list_sha256);
    assert_eq!(
        MerkleTree::from_chunk_hashes(expected).unwrap().root(),
        v.root
    );
    // The list reads back as the same geometry from its text alone.
    let shape = ListShape {
        scheme: ChunkScheme::SlmParts,
        artifact_bytes: v.file_bytes,
        chunk_size: v.chunk_size,
        chunk_count: v.chunks.len() as u32,
    };
    let list = ChunkList::parse(text.as_bytes(), shape).unwrap();
    assert_eq!(list.geometry(), &geometry);
    assert_eq!(list.hashes(), hashes.chunk_hashes.as_slice());
}

#[test]
fn a_manifest_described_with_the_scheme_carries_the_vectors_and_verifies() {
    let v = vectors();
    let mut fields = PublisherFields::new(
        "parts".parse().unwrap(),
        "vectors".parse().unwrap(),
        "https://example.org/license".parse().unwrap(),
        "https://example.org/evidence".parse().unwrap(),
    );
    fields.chunk_scheme = ChunkScheme::SlmParts;
    let described = describe_file(&fixture(), fields, Some(v.chunk_size), &|_| {}).unwrap();
    let manifest = &described.manifest;
    assert_eq!(manifest.chunks.scheme, ChunkScheme::SlmParts);
    assert_eq!(manifest.chunks.merkle_root, v.root);
    assert_eq!(manifest.chunks.chunk_count, v.chunks.len() as u64);
    let list = manifest
        .chunks
        .chunk_list
        .as_ref()
        .expect("a listed scheme names its list");
    assert_eq!(list.route, None);
    assert_eq!(list.sha256, v.list_sha256);
    assert_eq!(
        Sha256Digest::of(described.chunk_list.as_bytes()),
        v.list_sha256
    );

    // It writes and reads back, `chunk-list-route: none` and all.
    let text = manifest.to_text();
    assert!(
        text.contains("chunk-scheme: slm-parts-merkle-v0\n"),
        "{text}"
    );
    assert!(text.contains("chunk-list-route: none\n"), "{text}");
    assert_eq!(&Manifest::parse(&text).unwrap(), manifest);

    // `verify` reads the file's parts and confirms the list, lengths and all.
    let verified =
        minimodel_verifier::check::verify_local_file(manifest, &fixture(), &|_| {}).unwrap();
    assert_eq!(verified.tree().root(), v.root);

    // A geometry that cut the same file fixed-size does not pass as it.
    let mut fixed = manifest.clone();
    fixed.chunks.scheme = ChunkScheme::FixedSize;
    fixed.chunks.chunk_count = v.file_bytes.div_ceil(u64::from(v.chunk_size));
    assert!(minimodel_verifier::check::verify_local_file(&fixed, &fixture(), &|_| {}).is_err());
}

#[test]
fn the_independent_manifest_and_list_verify() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/merkle");
    let text = std::fs::read_to_string(dir.join("slm-parts.manifest")).unwrap();
    let manifest = Manifest::parse(&text).unwrap();
    assert_eq!(
        manifest.to_text(),
        text,
        "the independent writer's form is canonical"
    );
    minimodel_verifier::check::verify_local_file(&manifest, &fixture(), &|_| {}).unwrap();
    let bytes = std::fs::read(dir.join("slm-parts.chunk-list")).unwrap();
    let list = manifest.chunks.chunk_list.as_ref().unwrap();
    assert_eq!(Sha256Digest::of(&bytes), list.sha256);
    let parsed = ChunkList::parse(&bytes, ListShape::of_manifest(&manifest)).unwrap();
    assert_eq!(
        MerkleTree::from_chunk_hashes(parsed.hashes().to_vec())
            .unwrap()
            .root(),
        manifest.chunks.merkle_root
    );
    // What `describe_file` writes for the same file and fields.
    let mut fields = PublisherFields::new(
        manifest.model_id.clone(),
        manifest.publisher_id.clone(),
        manifest.license_route.clone(),
        manifest.evidence_route.clone(),
    );
    fields.display_name = manifest.display_name.clone();
    fields.chunk_scheme = ChunkScheme::SlmParts;
    let described = describe_file(&fixture(), fields, Some(16384), &|_| {}).unwrap();
    assert_eq!(described.manifest.to_text(), text);
    assert_eq!(described.chunk_list.as_bytes(), bytes.as_slice());
}
