//! Only what changed moves, through the binary: a version 2 that shares
//! most of its chunks with a version 1 on this machine is fetched with
//! `--reuse v1.slm --chunk-list v2.chunk-list`, and peers are asked only
//! for the chunks that changed; an older file whose bytes changed since
//! its chunk list was written loses those chunks to their proof, and they
//! come from peers instead.

mod resume_support;

use std::path::{Path, PathBuf};

use minimodel_verifier::Manifest;
use serde_json::Value;

use resume_support::{Artifact, Proc, Seeders, fetch_args, ok};

const CHUNK: &str = "64KiB";
const CHUNK_BYTES: usize = 64 * 1024;

/// Writes the manifest of `slm` for `model_id` (and its chunk list, named
/// by the manifest, to `<name>.chunk-list`) and returns it as an
/// [`Artifact`].
fn describe(dir: &Path, slm: &Path, name: &str, model_id: &str) -> Artifact {
    describe_with(dir, slm, name, model_id, true)
}

/// [`describe`], cut at a fixed size; without `route`, the manifest names
/// no chunk list (a publisher with no web server).
fn describe_with(dir: &Path, slm: &Path, name: &str, model_id: &str, route: bool) -> Artifact {
    let list = dir.join(format!("{name}.chunk-list"));
    // Fixed-size chunks: a new version changes bytes in place, chunk by
    // chunk (cut at parts: `describe_parts`).
    let route: &[&str] = if route {
        &[
            "--chunk-scheme",
            "fixed-size-merkle-v0",
            "--chunk-list-route",
            "https://example.org/chunk-list",
            "--chunk-list-out",
            list.to_str().unwrap(),
        ]
    } else {
        &["--chunk-scheme", "fixed-size-merkle-v0"]
    };
    manifest_of(dir, slm, name, model_id, route)
}

/// Writes the manifest of `slm` for `model_id` with `extra` arguments to
/// `<name>.manifest` and returns it as an [`Artifact`].
fn manifest_of(dir: &Path, slm: &Path, name: &str, model_id: &str, extra: &[&str]) -> Artifact {
    let manifest_path = dir.join(format!("{name}.manifest"));
    ok(
        dir,
        &[
            &[
                "manifest",
                slm.to_str().unwrap(),
                "--model-id",
                model_id,
                "--publisher-id",
                "acme",
                "--license-route",
                "https://example.org/license",
                "--evidence-route",
                "https://example.org/evidence",
                "--chunk-size",
                CHUNK,
                "-o",
                manifest_path.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat(),
    );
    let manifest = Manifest::parse_bytes(&std::fs::read(&manifest_path).unwrap()).unwrap();
    Artifact {
        model_id: model_id.to_owned(),
        slm: slm.to_owned(),
        manifest_path,
        chunk_size: u64::from(manifest.chunks.chunk_size),
        manifest,
        bytes: std::fs::read(slm).unwrap(),
    }
}

/// Version 1 (4 MiB, 64 chunks) and a version 2 whose tensor data differs
/// in every tenth chunk from chunk 5 on (6 chunks of 64 changed), with
/// their manifests and chunk lists; returns them and the changed chunks.
fn two_versions(root: &Path) -> (Artifact, Artifact, Vec<u32>) {
    two_versions_with(root, true)
}

/// [`two_versions`]; without `route`, version 2's manifest names no chunk
/// list.
fn two_versions_with(root: &Path, route: bool) -> (Artifact, Artifact, Vec<u32>) {
    let v1 = Artifact::make(root, "v1", "tiny-v1", "4MiB", CHUNK, 71);
    let v1 = describe(root, &v1.slm, "v1", "tiny-v1");
    let changed: Vec<u32> = (5..v1.chunk_count()).step_by(10).collect();
    let mut bytes = v1.bytes.clone();
    for &chunk in &changed {
        // The middle of the chunk: tensor data, which the container does
        // not checksum, so the file stays a valid `.slm`.
        let at = chunk as usize * CHUNK_BYTES + CHUNK_BYTES / 2;
        for byte in &mut bytes[at..at + 100] {
            *byte ^= 0x5a;
        }
    }
    let slm = root.join("v2.slm");
    std::fs::write(&slm, &bytes).unwrap();
    let v2 = describe_with(root, &slm, "v2", "tiny-v2", route);
    (v1, v2, changed)
}

fn receipt(out: &Path, artifact: &Artifact) -> Value {
    let path = artifact.files(out).receipt;
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Bytes the receipt says peers delivered.
fn bytes_from_peers(receipt: &Value) -> u64 {
    receipt["source"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|peer| peer["bytes"].as_u64().unwrap())
        .sum()
}

fn fetch_v2(root: &Path, v2: &Artifact, out: &Path, extra: &[String]) -> (Value, Vec<String>) {
    let (receipt, lines, _) = fetch_v2_said(root, v2, out, extra);
    (receipt, lines)
}

/// [`fetch_v2`], with what the fetch said on standard error.
fn fetch_v2_said(
    root: &Path,
    v2: &Artifact,
    out: &Path,
    extra: &[String],
) -> (Value, Vec<String>, String) {
    let seeders = Seeders::start(root, v2, 1, "64MiB");
    let mut args = fetch_args(v2, &seeders, out, &[]);
    args.extend(extra.iter().cloned());
    let mut fetch = Proc::spawn(root, &args);
    let lines = fetch.expect_exit(0);
    v2.verify(root, &v2.files(out).artifact);
    (receipt(out, v2), lines, fetch.stderr())
}

fn reuse_args(old: &Path, v2_list: &Path) -> Vec<String> {
    vec![
        "--reuse".into(),
        old.to_str().unwrap().into(),
        "--chunk-list".into(),
        v2_list.to_str().unwrap().into(),
    ]
}

#[test]
fn a_new_version_asks_peers_only_for_the_chunks_that_changed() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (v1, v2, changed) = two_versions(root);
    let out = root.join("out");
    let (receipt, lines) = fetch_v2(
        root,
        &v2,
        &out,
        &reuse_args(&v1.slm, &root.join("v2.chunk-list")),
    );
    let source = &receipt["source"];
    let kept = u64::from(v2.chunk_count()) - changed.len() as u64;
    assert_eq!(source["chunks_reused"], kept, "{receipt}");
    assert_eq!(source["chunks_fetched"], changed.len() as u64, "{receipt}");
    assert_eq!(source["chunks_resumed"], 0, "{receipt}");
    assert_eq!(bytes_from_peers(&receipt), v2.bytes_of(&changed));
    assert!(
        lines
            .iter()
            .any(|line| line.contains(&format!("{kept} chunks")) && line.contains("copied from")),
        "{lines:?}"
    );
}

#[test]
fn a_chunk_of_an_older_file_that_fails_its_proof_comes_from_peers() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (v1, v2, changed) = two_versions(root);
    // An older file changed after its chunk list was written: the list
    // still names chunk 20's old hash, its bytes no longer have it.
    let stale = root.join("stale.slm");
    std::fs::copy(&v1.slm, &stale).unwrap();
    std::fs::copy(root.join("v1.chunk-list"), root.join("stale.chunk-list")).unwrap();
    let mut bytes = std::fs::read(&stale).unwrap();
    bytes[20 * CHUNK_BYTES + 7] ^= 1;
    std::fs::write(&stale, &bytes).unwrap();

    let out = root.join("out");
    let (receipt, lines) = fetch_v2(
        root,
        &v2,
        &out,
        &reuse_args(&stale, &root.join("v2.chunk-list")),
    );
    let source = &receipt["source"];
    let kept = u64::from(v2.chunk_count()) - changed.len() as u64;
    assert_eq!(source["chunks_reused"], kept - 1, "{receipt}");
    assert_eq!(source["chunks_fetched"], changed.len() as u64 + 1);
    let mut from_peers = changed.clone();
    from_peers.push(20);
    assert_eq!(bytes_from_peers(&receipt), v2.bytes_of(&from_peers));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("1 chunk failed it and will come from peers")),
        "{lines:?}"
    );
}

#[test]
fn a_finished_download_of_an_older_version_in_dir_is_reused_unnamed() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (v1, v2, changed) = two_versions(root);
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    // As a delivered download leaves it: `<id>.slm` and `<id>.chunk-list`.
    std::fs::copy(&v1.slm, out.join("tiny-v1.slm")).unwrap();
    std::fs::copy(root.join("v1.chunk-list"), out.join("tiny-v1.chunk-list")).unwrap();
    let list: PathBuf = root.join("v2.chunk-list");
    let (receipt, _) = fetch_v2(
        root,
        &v2,
        &out,
        &["--chunk-list".into(), list.to_str().unwrap().into()],
    );
    let kept = u64::from(v2.chunk_count()) - changed.len() as u64;
    assert_eq!(receipt["source"]["chunks_reused"], kept, "{receipt}");
    // The older version is left as it was.
    assert_eq!(std::fs::read(out.join("tiny-v1.slm")).unwrap(), v1.bytes);
}

#[test]
fn a_chunk_list_that_is_not_the_new_artifacts_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (v1, v2, _) = two_versions(root);
    let out = root.join("out");
    let peer = resume_support::identity(&root.join("nobody"));
    let mut args = vec![
        "fetch".to_owned(),
        v2.manifest_path.to_str().unwrap().to_owned(),
        "--peer".to_owned(),
        // Never dialed: the list is refused first.
        format!("{peer}@127.0.0.1:9"),
        "-o".to_owned(),
        out.to_str().unwrap().to_owned(),
        "--yes".to_owned(),
    ];
    args.extend(reuse_args(&v1.slm, &root.join("v1.chunk-list")));
    let (code, _, stderr) = resume_support::run(root, &args);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("is not this artifact's chunk list"),
        "{stderr}"
    );
    assert!(!out.join("tiny-v2.slm.part").exists());
}

#[test]
fn with_no_web_server_the_new_chunk_list_comes_from_the_seeder_and_only_what_changed_moves() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (v1, v2, changed) = two_versions_with(root, false);
    assert!(v2.manifest.chunks.chunk_list.is_none());
    let out = root.join("out");
    let (receipt, _, said) = fetch_v2_said(
        root,
        &v2,
        &out,
        &["--reuse".into(), v1.slm.to_str().unwrap().into()],
    );
    let source = &receipt["source"];
    let kept = u64::from(v2.chunk_count()) - changed.len() as u64;
    assert_eq!(source["chunks_reused"], kept, "{receipt}");
    assert_eq!(source["chunks_fetched"], changed.len() as u64, "{receipt}");
    assert_eq!(bytes_from_peers(&receipt), v2.bytes_of(&changed));
    assert!(
        said.contains("the new version's chunk list is read from peer "),
        "{said}"
    );
}

/// `slm` with `extra` bytes more tokenizer (`docs/slm-format.md`: the
/// tokenizer is opaque bytes checked by its SHA-256 in the header): the
/// tensor table and the data move by as much, rounded up to 64, and their
/// bytes stay as they were.
fn tokenizer_grown(slm: &[u8], extra: usize) -> Vec<u8> {
    let u64_at = |at: usize| u64::from_le_bytes(slm[at..at + 8].try_into().unwrap()) as usize;
    let align = |n: usize| n.div_ceil(64) * 64;
    let (tok, tok_len) = (u64_at(0x30), u64_at(0x38));
    let (tab, tab_len) = (u64_at(0x60), u64_at(0x68));
    let (data, data_len) = (u64_at(0x90), u64_at(0x98));
    let mut tokenizer = slm[tok..tok + tok_len].to_vec();
    tokenizer.extend(std::iter::repeat_n(b' ', extra));
    let new_tab = align(tok + tokenizer.len());
    let new_data = align(new_tab + tab_len);
    let mut header = slm[..256].to_vec();
    let mut put = |at: usize, value: usize| {
        header[at..at + 8].copy_from_slice(&(value as u64).to_le_bytes());
    };
    put(0x28, new_data + data_len);
    put(0x38, tokenizer.len());
    put(0x60, new_tab);
    put(0x90, new_data);
    header[0x40..0x60].copy_from_slice(&minimodel_verifier::Sha256Digest::of(&tokenizer).0);
    let mut out = header;
    out.extend(&tokenizer);
    out.resize(new_tab, 0);
    out.extend(&slm[tab..tab + tab_len]);
    out.resize(new_data, 0);
    out.extend(&slm[data..data + data_len]);
    out
}

/// `slm` with `extra` bytes appended to its tensor data (`docs/slm-format.md`:
/// the data section's length and the file's grow by as much; the container
/// does not checksum tensor data): what a model whose last tensor grew by
/// rows looks like.
fn data_appended(slm: &[u8], extra: usize) -> Vec<u8> {
    let u64_at = |at: usize| u64::from_le_bytes(slm[at..at + 8].try_into().unwrap());
    let mut out = slm.to_vec();
    out.extend((0..extra).map(|i| (i * 7 % 251) as u8));
    let grown = extra as u64;
    out[0x28..0x30].copy_from_slice(&(u64_at(0x28) + grown).to_le_bytes());
    out[0x98..0xa0].copy_from_slice(&(u64_at(0x98) + grown).to_le_bytes());
    out
}

#[test]
fn a_part_that_grew_moves_only_its_new_bytes_from_a_peer_that_speaks_v3() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let made = Artifact::make(root, "v1", "tiny-v1", "4MiB", CHUNK, 73);
    let v1 = describe_parts(root, &made.slm, "v1", "tiny-v1");
    let extra = 100_000;
    let slm = root.join("v2.slm");
    std::fs::write(&slm, data_appended(&v1.bytes, extra)).unwrap();
    let v2 = describe_parts(root, &slm, "v2", "tiny-v2");
    let list = std::fs::read_to_string(root.join("v1.chunk-list")).unwrap();
    let old_last = list
        .lines()
        .last()
        .and_then(|line| line.split(' ').nth(1))
        .map(|len| len.parse::<u64>().unwrap())
        .unwrap();
    assert!(
        old_last < CHUNK_BYTES as u64,
        "version 1's last part ends inside a chunk ({old_last} bytes)"
    );
    let out = root.join("out");
    let (receipt, _) = fetch_v2(
        root,
        &v2,
        &out,
        &reuse_args(&v1.slm, &root.join("v2.chunk-list")),
    );
    // The header (its lengths changed) and the appended bytes: the start
    // of the chunk where version 1 ended is read here, not sent.
    assert_eq!(bytes_from_peers(&receipt), 256 + extra as u64, "{receipt}");
}

/// Writes the `slm-parts-merkle-v0` manifest of `slm` and its chunk list
/// (`<name>.chunk-list`), and returns the manifest.
fn describe_parts(dir: &Path, slm: &Path, name: &str, model_id: &str) -> Artifact {
    let list = dir.join(format!("{name}.chunk-list"));
    manifest_of(
        dir,
        slm,
        name,
        model_id,
        &[
            "--chunk-scheme",
            "slm-parts-merkle-v0",
            "--chunk-list-out",
            list.to_str().unwrap(),
        ],
    )
}

#[test]
fn bytes_inserted_in_the_tokenizer_move_only_its_part_when_chunks_are_cut_at_parts() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let made = Artifact::make(root, "v1", "tiny-v1", "4MiB", CHUNK, 71);
    let v1 = describe_parts(root, &made.slm, "v1", "tiny-v1");
    let slm = root.join("v2.slm");
    std::fs::write(&slm, tokenizer_grown(&v1.bytes, 1000)).unwrap();
    let v2 = describe_parts(root, &slm, "v2", "tiny-v2");
    let manifest = &v2.manifest;
    assert_eq!(
        manifest.chunks.scheme,
        minimodel_verifier::manifest::ChunkScheme::SlmParts
    );
    assert_eq!(
        manifest
            .chunks
            .chunk_list
            .as_ref()
            .map(|list| list.route.is_none()),
        Some(true),
        "no route given: the list is named, published nowhere"
    );
    // `verify` cuts the file's own parts and checks them.
    ok(
        root,
        &[
            "verify",
            v2.manifest_path.to_str().unwrap(),
            slm.to_str().unwrap(),
        ],
    );

    // Without its chunk list, and no peer that answers within
    // --give-up-after, a fetch cannot know the chunks' lengths: it asked
    // again until then, and ends as a fetch that reached nobody does.
    let out = root.join("out-no-list");
    let peer = resume_support::identity(&root.join("nobody"));
    let (code, _, stderr) = resume_support::run(
        root,
        &[
            "fetch".to_owned(),
            v2.manifest_path.to_str().unwrap().to_owned(),
            "--peer".to_owned(),
            format!("{peer}@127.0.0.1:9"),
            "-o".to_owned(),
            out.to_str().unwrap().to_owned(),
            "--give-up-after".to_owned(),
            "2s".to_owned(),
            "--yes".to_owned(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was verified"), "{stderr}");
    assert!(stderr.contains("--chunk-list FILE"), "{stderr}");
    assert!(!out.join("tiny-v2.slm.part").exists());

    // With it, and version 1 to copy from: every part but the header and
    // the tokenizer is found in version 1.
    let out = root.join("out");
    let (receipt, _) = fetch_v2(
        root,
        &v2,
        &out,
        &reuse_args(&v1.slm, &root.join("v2.chunk-list")),
    );
    let list = std::fs::read_to_string(root.join("v2.chunk-list")).unwrap();
    let lengths: Vec<u64> = list
        .lines()
        .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lengths.iter().sum::<u64>(), v2.bytes.len() as u64);
    // Chunk 0 is the 256-byte header, then the tokenizer's chunks up to
    // the table: what changed.
    assert_eq!(lengths[0], 256);
    let tok_len = u64::from_le_bytes(v2.bytes[0x38..0x40].try_into().unwrap());
    // The tokenizer's part runs to the table, at the next multiple of 64.
    let tokenizer_part = tok_len.div_ceil(64) * 64;
    let moved = 1 + tokenizer_part.div_ceil(CHUNK_BYTES as u64);
    let source = &receipt["source"];
    assert_eq!(
        source["chunks_reused"].as_u64().unwrap(),
        lengths.len() as u64 - moved,
        "{receipt}"
    );
    assert!(
        bytes_from_peers(&receipt) <= 256 + tokenizer_part,
        "{receipt}"
    );
    // The delivered download keeps its list, lengths and all.
    assert_eq!(
        std::fs::read_to_string(out.join("tiny-v2.chunk-list")).unwrap(),
        list
    );

    // No web server, no list given: the seeding peer serves the list with
    // each chunk's length (ListedChunks), checked against the manifest's
    // chunk-list-sha256, and the same chunks are copied from version 1.
    let out = root.join("out-from-peer");
    let reuse = ["--reuse".to_owned(), v1.slm.to_str().unwrap().to_owned()];
    let (from_peer, _, said) = fetch_v2_said(root, &v2, &out, &reuse);
    assert_eq!(
        from_peer["source"]["chunks_reused"], source["chunks_reused"],
        "{from_peer}"
    );
    assert!(
        bytes_from_peers(&from_peer) <= 256 + tokenizer_part,
        "{from_peer}"
    );
    assert!(said.contains("chunk list is read from peer "), "{said}");
    assert_eq!(
        std::fs::read_to_string(out.join("tiny-v2.chunk-list")).unwrap(),
        list
    );
    // And with nothing to reuse, a listed download opens on the peer's
    // list all the same.
    let out = root.join("out-whole");
    let (whole, _, _) = fetch_v2_said(root, &v2, &out, &[]);
    assert_eq!(whole["source"]["chunks_reused"], 0, "{whole}");
    assert_eq!(bytes_from_peers(&whole), v2.bytes.len() as u64, "{whole}");
}

#[test]
fn a_listed_download_keeps_its_list_while_partial_and_status_checks_its_bytes() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let made = Artifact::make(root, "v1", "tiny-v1", "4MiB", CHUNK, 73);
    let v1 = describe_parts(root, &made.slm, "v1", "tiny-v1");
    let list = std::fs::read_to_string(root.join("v1.chunk-list")).unwrap();
    // A seeder slow enough to stop the fetch half-way (4 MiB at 256 KiB/s).
    let seeders = Seeders::start(root, &v1, 1, "256KiB");
    let out = root.join("out");
    let mut fetch = Proc::spawn(root, &fetch_args(&v1, &seeders, &out, &["--json"]));
    let part_way = fetch.wait_for("1 MiB verified", |events| {
        resume_support::progress_bytes(events).is_some_and(|bytes| bytes >= 1 << 20)
    });
    assert!(part_way, "{}", fetch.stderr());
    fetch.kill9();
    drop(seeders);
    assert!(out.join("tiny-v1.slm.part").exists());
    assert!(!out.join("tiny-v1.slm").exists());
    // The list the peer gave, kept while partial: a resumed run and
    // `status` find the chunks' lengths here.
    assert_eq!(
        std::fs::read_to_string(out.join("tiny-v1.chunk-list")).unwrap(),
        list
    );
    let status = |expect: i32| {
        let (code, stdout, stderr) = resume_support::run(
            root,
            &[
                "status".to_owned(),
                "--verify".to_owned(),
                "--json".to_owned(),
                out.to_str().unwrap().to_owned(),
            ],
        );
        assert_eq!(code, expect, "{stdout:?}{stderr}");
        let event: Value = stdout
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["event"] == "download")
            .unwrap_or_else(|| panic!("no download event: {stdout:?}"));
        event
    };
    let before = status(0);
    let verified = before["chunks_verified"].as_u64().unwrap();
    assert!(verified > 0, "{before}");
    assert_eq!(before["kind"], "partial", "{before}");
    assert_eq!(before["check"]["ok"], true, "{before}");
    assert_eq!(before["check"]["chunks_checked"], verified, "{before}");
    assert_eq!(before["check"]["bad_chunks"], 0, "{before}");
    // The verified bytes are counted with the listed lengths: those the
    // check read (a fixed cut of 64 KiB would count other bytes).
    let counted = before["bytes_verified"].as_u64().unwrap();
    assert!(counted > 0, "{before}");
    assert_eq!(before["check"]["bytes_read"], counted, "{before}");
    // Every chunk's first byte changed, at the offsets its lengths give:
    // each verified chunk is now bad, and `status` says so (exit 4).
    let lengths: Vec<u64> = list
        .lines()
        .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    let part = out.join("tiny-v1.slm.part");
    let mut bytes = std::fs::read(&part).unwrap();
    let mut offset = 0usize;
    for len in &lengths {
        bytes[offset] ^= 0x5a;
        offset += *len as usize;
    }
    std::fs::write(&part, &bytes).unwrap();
    let after = status(4);
    assert_eq!(after["check"]["ok"], false, "{after}");
    assert_eq!(after["check"]["bad_chunks"], verified, "{after}");
}
