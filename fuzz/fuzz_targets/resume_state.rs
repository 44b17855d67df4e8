//! The partial download state loader on arbitrary bytes: it must return,
//! never panic, and whatever it accepts must re-encode to a state that
//! loads to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::resume::parse_state;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = parse_state(data) {
        assert_eq!(parse_state(&state.to_bytes()).as_ref(), Ok(&state));
    }
});
