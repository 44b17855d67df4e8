//! The `.slm` v0 reader on arbitrary bytes: it must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = minimodel_verifier::slm::read_slm(&mut std::io::Cursor::new(data));
});
