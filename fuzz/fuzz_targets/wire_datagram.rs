//! A peer's delay datagrams (QUIC DATAGRAM frames): any bytes through the
//! decoder; what decodes must encode to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = minimodel_wire::fuzzing::wire_datagram(data);
});
