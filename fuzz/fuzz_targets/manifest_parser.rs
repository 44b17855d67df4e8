//! The manifest reader (v0 and v1) on arbitrary bytes: it must never
//! panic, whatever it accepts must survive the canonical round trip, and
//! checking its signature (and judging it with no pins) never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::signing::manifest::check_manifest_signature;
use minimodel_verifier::signing::trust::judge_without_pins;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse_bytes(data) {
        assert_eq!(manifest.validate(), Ok(()));
        let text = manifest.to_text();
        let again = Manifest::parse(&text).expect("canonical text parses");
        assert_eq!(again, manifest);
        assert_eq!(again.to_text(), text);
        let signed = check_manifest_signature(&manifest);
        assert_eq!(judge_without_pins(&manifest).is_ok(), signed.is_ok());
    }
});
