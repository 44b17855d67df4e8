//! Identity persistence: the key survives a reload, is private, and a key
//! file that is exposed, corrupt or not Ed25519 is refused.
//!
//! Unix only: it sets and reads modes (`scripts/windows-tests`); the
//! platform's own tests check the same refusals through Windows' ACLs.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use minimodel_swarm::transport::{Identity, IdentityError, KEY_FILE_NAME};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn same_id_after_reload() {
    let dir = tempfile::tempdir().unwrap();
    let identity_dir = dir.path().join("identity");
    let first = Identity::load_or_generate(&identity_dir).unwrap();
    let second = Identity::load_or_generate(&identity_dir).unwrap();
    assert_eq!(first.peer_id(), second.peer_id());
    // And it is not just any key: a fresh one differs.
    assert_ne!(first.peer_id(), Identity::generate().unwrap().peer_id());
}

#[test]
fn directory_is_0700_and_key_file_is_0600() {
    let dir = tempfile::tempdir().unwrap();
    let identity_dir = dir.path().join("nested").join("identity");
    Identity::load_or_generate(&identity_dir).unwrap();
    assert_eq!(mode(&identity_dir), 0o700);
    assert_eq!(mode(&identity_dir.join(KEY_FILE_NAME)), 0o600);
    // Only the key file is left behind: no temporary files.
    let names: Vec<_> = fs::read_dir(&identity_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE_NAME)]);
}

#[test]
fn group_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_generate(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    match Identity::load_or_generate(dir.path()) {
        Err(IdentityError::Permissions { path, access }) => {
            assert_eq!(path, key);
            assert_eq!(access.mode, 0o640);
        }
        other => panic!("expected a permissions error, got {other:?}"),
    }
    // The key was not replaced.
    assert_eq!(mode(&key), 0o640);
}

#[test]
fn world_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_generate(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o604)).unwrap();
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::Permissions {
            access: minimodel_swarm::platform::Access { mode: 0o604 },
            ..
        })
    ));
}

#[test]
fn refused_key_message_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_generate(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let message = Identity::load_or_generate(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("chmod 600"), "{message}");
}

fn write_private(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn corrupt_key_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    write_private(&key, b"this is not a PKCS#8 document");
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::Corrupt { .. })
    ));
    // Never overwritten: the user decides.
    assert_eq!(fs::read(&key).unwrap(), b"this is not a PKCS#8 document");
}

#[test]
fn truncated_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_generate(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    let bytes = fs::read(&key).unwrap();
    write_private(&key, &bytes[..bytes.len() - 1]);
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::Corrupt { .. })
    ));
}

#[test]
fn key_with_a_flipped_public_half_is_refused() {
    // PKCS#8 v2 carries the public key; it must match the private key.
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_generate(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    let mut bytes = fs::read(&key).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    write_private(&key, &bytes);
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::Corrupt { .. })
    ));
}

#[test]
fn empty_and_oversized_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(KEY_FILE_NAME);
    write_private(&key, b"");
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::Corrupt { .. })
    ));
    write_private(&key, &vec![0x30; 8192]);
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::Corrupt { .. })
    ));
}

#[test]
fn ecdsa_key_is_refused_as_not_ed25519() {
    let rng = ring::rand::SystemRandom::new();
    let ecdsa = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join(KEY_FILE_NAME), ecdsa.as_ref());
    assert!(matches!(
        Identity::load_or_generate(dir.path()),
        Err(IdentityError::NotEd25519 { .. })
    ));
}

#[test]
fn a_directory_in_place_of_the_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(KEY_FILE_NAME)).unwrap();
    fs::set_permissions(
        dir.path().join(KEY_FILE_NAME),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    assert!(Identity::load_or_generate(dir.path()).is_err());
}

#[test]
fn identity_dir_that_is_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Identity::load_or_generate(&file),
        Err(IdentityError::Io { .. })
    ));
}

#[test]
fn concurrent_first_runs_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity");
    let ids: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Identity::load_or_generate(&path).unwrap().peer_id()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    assert_eq!(Identity::load_or_generate(&path).unwrap().peer_id(), ids[0]);
}
