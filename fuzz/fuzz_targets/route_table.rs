//! The routing-table reader behind port mapping (Linux `/proc/net/route`,
//! `minimodel_swarm::portmap::default_gateway`) on arbitrary text: it must
//! return, never panic; a gateway it names is never 0.0.0.0 and appears in
//! the text as a route's gateway field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::portmap::default_gateway;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(gateway) = default_gateway(text) {
        assert!(!gateway.is_unspecified());
        let field = format!("{:08X}", u32::from_ne_bytes(gateway.octets()));
        assert!(
            text.to_ascii_uppercase().contains(&field),
            "{gateway} ({field}) is not in the text"
        );
    }
});
