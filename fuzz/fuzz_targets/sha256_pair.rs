//! Two SHA-256 computations side by side (`minimodel-sha256x2`, the
//! chunk hash beside the whole-file hash in a fetch) on arbitrary messages
//! cut at arbitrary places: each digest must be `sha2`'s of its message,
//! whatever the cuts, the bytes hashed alone first, and whether this CPU
//! pairs side by side.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_sha256x2::{Sha256, update_pair};
use sha2::Digest;

/// The message's parts: cut after each of `cuts`' bytes (as lengths).
fn parts<'a>(mut message: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for &cut in cuts {
        let at = (cut as usize * 3).min(message.len());
        let (part, rest) = message.split_at(at);
        out.push(part);
        message = rest;
    }
    out.push(message);
    out
}

fuzz_target!(|data: &[u8]| {
    // Layout: a_len (2 bytes), a_alone, b_alone, cut counts, cuts, then
    // the two messages.
    if data.len() < 6 {
        return;
    }
    let a_len = u16::from_le_bytes([data[0], data[1]]) as usize;
    let (a_alone, b_alone) = (data[2] as usize, data[3] as usize);
    let (a_cuts, b_cuts) = ((data[4] % 16) as usize, (data[5] % 16) as usize);
    let rest = &data[6..];
    if rest.len() < a_cuts + b_cuts {
        return;
    }
    let (a_cut, rest) = rest.split_at(a_cuts);
    let (b_cut, rest) = rest.split_at(b_cuts);
    let (a_message, b_message) = rest.split_at(a_len.min(rest.len()));
    let (mut a, mut b) = (Sha256::new(), Sha256::new());
    let (a_first, a_rest) = a_message.split_at(a_alone.min(a_message.len()));
    let (b_first, b_rest) = b_message.split_at(b_alone.min(b_message.len()));
    a.update(a_first);
    b.update(b_first);
    update_pair(&mut a, parts(a_rest, a_cut), &mut b, parts(b_rest, b_cut));
    assert_eq!(a.len(), a_message.len() as u64);
    assert_eq!(b.len(), b_message.len() as u64);
    assert_eq!(
        a.finalize(),
        <[u8; 32]>::from(sha2::Sha256::digest(a_message))
    );
    assert_eq!(
        b.finalize(),
        <[u8; 32]>::from(sha2::Sha256::digest(b_message))
    );
});
