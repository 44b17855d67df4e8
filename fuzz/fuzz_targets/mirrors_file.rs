//! The remembered-mirrors file (`minimodel_swarm::resume::parse_mirrors_file`)
//! on arbitrary bytes: never a panic; a list it reads is written back to
//! text that reads as the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::resume::{mirrors_file_text, parse_mirrors_file};

fuzz_target!(|data: &[u8]| {
    if let Ok(mirrors) = parse_mirrors_file(data) {
        let again = parse_mirrors_file(mirrors_file_text(&mirrors).as_bytes())
            .expect("a list read is written back readable");
        assert_eq!(again, mirrors);
    }
});
