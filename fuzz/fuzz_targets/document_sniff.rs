//! What a file holds, read from its head, on arbitrary bytes: it must
//! return, never panic; a document is recognised from its first
//! `HEAD_BYTES` alone, and a kind always may be replaced by itself unless
//! it is an artifact or unknown.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::document::{Document, HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let kind = Document::sniff(data);
    assert_eq!(kind, Document::sniff(&data[..data.len().min(HEAD_BYTES)]));
    let replaceable = kind.may_be_replaced_by(&kind);
    assert_eq!(
        replaceable,
        !matches!(kind, Document::Slm | Document::Other),
        "{kind:?}"
    );
    let _ = kind.describe();
});
