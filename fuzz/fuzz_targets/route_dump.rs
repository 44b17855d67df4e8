//! The routing-dump reader behind port mapping on macOS
//! (`minimodel_swarm::platform::route::route_dump_gateway`) on arbitrary
//! bytes: it must return, never panic; a gateway it names is never
//! 0.0.0.0 and its four bytes appear in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::platform::route::route_dump_gateway;

fuzz_target!(|data: &[u8]| {
    if let Some(gateway) = route_dump_gateway(data) {
        assert!(!gateway.is_unspecified());
        assert!(
            data.windows(4).any(|window| window == gateway.octets()),
            "{gateway} is not in the input"
        );
    }
});
