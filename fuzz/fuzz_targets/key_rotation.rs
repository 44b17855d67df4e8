//! The key rotation statement reader on arbitrary bytes: it must return,
//! never panic; whatever it accepts writes back to a statement that reads
//! the same, and checking its signature never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::signing::rotation::KeyRotation;

fuzz_target!(|data: &[u8]| {
    if let Ok(rotation) = KeyRotation::parse(data) {
        assert_ne!(rotation.old_key, rotation.new_key);
        let again = KeyRotation::parse(rotation.to_text().as_bytes()).expect("written back");
        assert_eq!(again, rotation);
        let _ = rotation.check();
    }
});
