//! The text forms of publisher keys, key ids and signatures, and the key
//! files, on arbitrary bytes: they must return, never panic; whatever they
//! accept prints back to the same text (one spelling each), and a key file
//! that is accepted holds a key whose id and public key agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::signing::keyfile::{
    KeyFile, public_key_file, read_key_file, secret_key_file,
};
use minimodel_verifier::signing::{
    Ed25519Signature, PublicKey, PublisherKeyId, Purpose, SecretKey,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = text.parse::<PublicKey>() {
            assert_eq!(key.to_string(), text);
            // Any bytes as a signature: refused or not, never a panic.
            let mut signature = [0u8; 64];
            for (i, byte) in data.iter().take(64).enumerate() {
                signature[i] = *byte;
            }
            let _ = key.verify(Purpose::Manifest, data, &Ed25519Signature(signature));
        }
        if let Ok(id) = text.parse::<PublisherKeyId>() {
            assert_eq!(id.to_string(), text);
        }
        if let Ok(signature) = text.parse::<Ed25519Signature>() {
            assert_eq!(signature.to_string(), text);
        }
        if let Ok(secret) = SecretKey::from_text(text) {
            assert_eq!(secret.to_text(), text);
        }
    }
    match read_key_file(data) {
        Ok(KeyFile::Secret(secret)) => {
            let again = read_key_file(secret_key_file(&secret).as_bytes()).expect("written back");
            assert!(matches!(again, KeyFile::Secret(s) if s.public_key() == secret.public_key()));
        }
        Ok(KeyFile::Public(public)) => {
            let again = read_key_file(public_key_file(&public).as_bytes()).expect("written back");
            assert!(matches!(again, KeyFile::Public(p) if p == public));
        }
        Err(_) => {}
    }
});
