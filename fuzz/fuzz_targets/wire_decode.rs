//! Control and piece streams from a peer, fed in arbitrary-sized pieces
//! through the decoders and the control-stream state machine. Input layout:
//! see `minimodel_wire::fuzzing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    minimodel_wire::fuzzing::wire_decode(data);
});
