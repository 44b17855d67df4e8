//! The signing vectors of `fixtures/signing/` (`docs/signing.md`,
//! `docs/manifest-v1.md`): this implementation writes every file byte for
//! byte from the RFC 8032 test keys, and judges every signed manifest as
//! the README there says; and an independent implementation (Python's
//! `cryptography`, OpenSSL's Ed25519: `fixtures/signing/vectors.py check`)
//! verifies the same files. That one must run: a missing Python or
//! package fails this test with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::signing::keyfile::{
    public_key_file, read_public_key_file, read_secret_key_file, secret_key_file,
};
use minimodel_verifier::signing::keyring::{Keyring, Pin, PinnedBy};
use minimodel_verifier::signing::manifest::sign_manifest;
use minimodel_verifier::signing::rotation::KeyRotation;
use minimodel_verifier::signing::trust::{KeyTrust, TrustAnchors, TrustError, judge};
use minimodel_verifier::signing::{Purpose, SecretKey};

/// RFC 8032, section 7.1, TEST 1 and TEST 2 secret keys.
const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const SEED_B: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
/// Their public keys as the RFC gives them.
const PUBLIC_A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const PUBLIC_B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn read(name: &str) -> String {
    let path = fixtures().join("signing").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn seed(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unsigned() -> Manifest {
    let text =
        std::fs::read_to_string(fixtures().join("manifest/good-canonical.manifest")).unwrap();
    Manifest::parse(&text).unwrap()
}

#[test]
fn this_implementation_writes_every_vector_byte_for_byte() {
    let a = SecretKey::from_seed(&seed(SEED_A));
    let b = SecretKey::from_seed(&seed(SEED_B));
    assert_eq!(hex(a.public_key().as_bytes()), PUBLIC_A);
    assert_eq!(hex(b.public_key().as_bytes()), PUBLIC_B);
    assert_eq!(secret_key_file(&a), read("a.key"));
    assert_eq!(public_key_file(&a.public_key()), read("a.pub"));
    assert_eq!(secret_key_file(&b), read("b.key"));
    assert_eq!(public_key_file(&b.public_key()), read("b.pub"));
    let signed_a = sign_manifest(&unsigned(), &a);
    assert_eq!(signed_a.to_text(), read("signed-a.manifest"));
    assert_eq!(
        sign_manifest(&unsigned(), &b).to_text(),
        read("signed-b.manifest")
    );
    let message = std::fs::read(fixtures().join("signing/signed-a.message")).unwrap();
    assert_eq!(
        Purpose::Manifest.message(signed_a.signing_text().as_bytes()),
        message
    );
    assert_eq!(
        KeyRotation::sign(&a, &b.public_key()).to_text(),
        read("rotation-a-to-b.rotation")
    );
    let mut keyring = Keyring::new();
    keyring
        .set(Pin {
            publisher_id: "example-lab".parse().unwrap(),
            key: a.public_key(),
            pinned_by: PinnedBy::FirstUse,
            pinned_at: "2026-11-23T10:15:00Z".to_owned(),
        })
        .unwrap();
    assert_eq!(keyring.to_text(), read("keyring-a.keyring"));
    assert_eq!(
        std::fs::read_to_string(fixtures().join("manifest/good-signed-v1.manifest")).unwrap(),
        read("signed-a.manifest")
    );
}

#[test]
fn the_vectors_read_back_and_are_judged_as_the_readme_says() {
    let a = read_secret_key_file(read("a.key").as_bytes()).unwrap();
    assert_eq!(hex(a.public_key().as_bytes()), PUBLIC_A);
    let b = read_public_key_file(read("b.pub").as_bytes()).unwrap();
    assert_eq!(hex(b.as_bytes()), PUBLIC_B);
    let keyring = Keyring::parse(read("keyring-a.keyring").as_bytes()).unwrap();
    let empty = Keyring::new();
    let anchors = |keyring| TrustAnchors {
        keyring,
        named_key: None,
        require_signature: true,
    };
    let manifest = |name: &str| Manifest::parse(&read(name)).unwrap();

    let check = judge(&manifest("signed-a.manifest"), &anchors(&keyring)).unwrap();
    assert_eq!(check.trust(), Some(KeyTrust::Pinned));
    let commented = manifest("signed-a-commented.manifest");
    assert_eq!(commented, manifest("signed-a.manifest"));
    assert_eq!(
        judge(&commented, &anchors(&keyring)).unwrap().trust(),
        Some(KeyTrust::Pinned)
    );
    assert_eq!(
        judge(&manifest("signed-b.manifest"), &anchors(&empty))
            .unwrap()
            .trust(),
        Some(KeyTrust::NotPinned)
    );
    assert!(matches!(
        judge(&manifest("signed-b.manifest"), &anchors(&keyring)),
        Err(TrustError::PinnedToAnother { .. })
    ));
    for tampered in ["tampered-a.manifest", "flipped-a.manifest"] {
        assert!(
            matches!(
                judge(&manifest(tampered), &anchors(&empty)),
                Err(TrustError::BadSignature { .. })
            ),
            "{tampered}"
        );
    }
    let rotation = KeyRotation::parse(read("rotation-a-to-b.rotation").as_bytes())
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(rotation.old_key(), a.public_key());
    assert_eq!(rotation.new_key(), b);
}

#[test]
fn an_independent_implementation_verifies_the_vectors() {
    let script = fixtures().join("signing/vectors.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg("check")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "python3 is needed to check the vectors independently and could not run: {error}"
            )
        });
    assert!(
        output.status.success(),
        "{} check failed ({}):\n{}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
