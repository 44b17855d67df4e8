//! The receipt reader (`follow`'s DIR, the companion's items: read through
//! the bounded reader, then parsed as JSON) on arbitrary bytes: it must
//! return, never panic; a receipt it accepts is written back and read
//! again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::receipt::ImportReceipt;

fuzz_target!(|data: &[u8]| {
    if let Ok(receipt) = serde_json::from_slice::<ImportReceipt>(data) {
        let text = serde_json::to_vec(&receipt).expect("a receipt serializes");
        let again: ImportReceipt = serde_json::from_slice(&text).expect("its JSON parses");
        assert_eq!(again, receipt);
    }
});
