//! The file that keeps a channel's newest item seen
//! (`minimodel_verifier::channel_state::read_item_file`) on arbitrary
//! bytes: it must return, never panic, and an item it reads writes back to
//! a file that reads as the same item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::channel_state::{item_file, read_item_file};
use minimodel_verifier::signing::PublicKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = read_item_file(data) {
        let key = PublicKey::from_bytes(&item.key).unwrap();
        let again = read_item_file(item_file(&item, &key).as_bytes()).unwrap();
        assert_eq!(again, item);
    }
});
