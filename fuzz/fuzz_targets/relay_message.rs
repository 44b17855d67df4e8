//! A node's or a relay's control stream of the relay protocol
//! (`docs/relay.md`), and relay datagrams: any bytes through the decoders;
//! what decodes must encode to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = minimodel_wire::fuzzing::relay_message(data);
});
