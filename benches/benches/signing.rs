//! What a publisher signature costs beside the hashing: signing a
//! manifest, checking its signature, the whole decision every command
//! makes with a manifest (`trust::judge`: the canonical text, the
//! signature, the keyring lookup), and reading a signed manifest, next to
//! hashing one 1 MiB chunk and the signing text alone.
//!
//! `cargo bench -p minimodel-benches --bench signing`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::keyring::{Keyring, Pin, PinnedBy};
use minimodel_verifier::signing::manifest::{check_manifest_signature, sign_manifest};
use minimodel_verifier::signing::trust::{TrustAnchors, judge};

const MANIFEST: &str = include_str!("../../fixtures/manifest/good-canonical.manifest");

fn signing(c: &mut Criterion) {
    let unsigned = Manifest::parse(MANIFEST).unwrap();
    let key = SecretKey::from_seed(&[7; 32]);
    let signed = sign_manifest(&unsigned, &key);
    let signed_text = signed.to_text();
    // A keyring of 1000 publishers, this one among them.
    let mut keyring = Keyring::new();
    for n in 0..1000u32 {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        keyring
            .set(Pin {
                publisher_id: format!("publisher-{n}").parse().unwrap(),
                key: SecretKey::from_seed(&seed).public_key(),
                pinned_by: PinnedBy::FirstUse,
                pinned_at: "2026-11-23T10:15:00Z".to_owned(),
            })
            .unwrap();
    }
    keyring
        .set(Pin {
            publisher_id: signed.publisher_id.clone(),
            key: key.public_key(),
            pinned_by: PinnedBy::FirstUse,
            pinned_at: "2026-11-23T10:15:00Z".to_owned(),
        })
        .unwrap();
    let anchors = TrustAnchors {
        keyring: &keyring,
        named_key: None,
        require_signature: true,
    };
    // Checked once before timing: the benches measure what passes.
    assert!(check_manifest_signature(&signed).unwrap().is_some());
    assert!(judge(&signed, &anchors).unwrap().is_signed());
    let chunk = vec![0x5au8; 1 << 20];

    let mut group = c.benchmark_group("signing");
    group.bench_function("sign manifest", |b| {
        b.iter(|| black_box(sign_manifest(black_box(&unsigned), &key)))
    });
    group.bench_function("check manifest signature", |b| {
        b.iter(|| black_box(check_manifest_signature(black_box(&signed)).unwrap()))
    });
    group.bench_function("judge (signature + 1001-pin keyring)", |b| {
        b.iter(|| black_box(judge(black_box(&signed), &anchors).unwrap()))
    });
    group.bench_function("parse signed manifest", |b| {
        b.iter(|| black_box(Manifest::parse(black_box(&signed_text)).unwrap()))
    });
    group.bench_function("signing text alone", |b| {
        b.iter(|| black_box(black_box(&signed).signing_text()))
    });
    group.bench_function("raw-sha256 1 MiB (for scale)", |b| {
        b.iter(|| black_box(Sha256Digest::of(black_box(&chunk))))
    });
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
