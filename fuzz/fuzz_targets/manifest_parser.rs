//! Manifest v0 reader on arbitrary bytes: it must never panic, and whatever
//! it accepts must survive the canonical round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse_bytes(data) {
        assert_eq!(manifest.validate(), Ok(()));
        let text = manifest.to_text();
        let again = Manifest::parse(&text).expect("canonical text parses");
        assert_eq!(again, manifest);
        assert_eq!(again.to_text(), text);
    }
});
