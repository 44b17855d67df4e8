//! The verified-chunk journal reader on arbitrary bytes: it must return,
//! never panic, and the records it accepts must encode back to exactly the
//! bytes they were read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::resume::journal::{
    JOURNAL_HEADER_LEN, encode_header, encode_record, parse_journal,
};
use minimodel_verifier::Sha256Digest;

fuzz_target!(|data: &[u8]| {
    // The root the header must name: taken from the input when it has one,
    // so that the fuzzer reaches the records.
    let mut root = [0u8; 32];
    if let Some(named) = data.get(20..52) {
        root.copy_from_slice(named);
    }
    let root = Sha256Digest(root);
    if let Ok(journal) = parse_journal(data, &root) {
        let mut encoded = encode_header(&root);
        for record in &journal.records {
            encoded.extend(encode_record(
                record.index,
                &record.chunk_hash,
                &record.proof,
            ));
        }
        assert!(encoded.len() >= JOURNAL_HEADER_LEN);
        assert_eq!(encoded.len() + journal.ignored_bytes, data.len());
        assert_eq!(&encoded[..], &data[..encoded.len()]);
    }
});
