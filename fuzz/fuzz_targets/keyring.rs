//! The keyring reader on arbitrary bytes: it must return, never panic;
//! whatever it accepts holds one pin per publisher id and writes back to
//! text that reads to the same keyring, comments included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::signing::keyring::{Keyring, MAX_PINS};

fuzz_target!(|data: &[u8]| {
    if let Ok(keyring) = Keyring::parse(data) {
        let pins: Vec<_> = keyring.pins().collect();
        assert!(pins.len() <= MAX_PINS);
        assert!(
            pins.iter()
                .enumerate()
                .all(|(i, p)| pins[..i].iter().all(|q| q.publisher_id != p.publisher_id))
        );
        let text = keyring.to_text();
        let again = Keyring::parse(text.as_bytes()).expect("a keyring written back reads");
        assert_eq!(again, keyring);
        assert_eq!(again.to_text(), text);
    }
});
