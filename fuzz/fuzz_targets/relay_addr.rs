//! The `--relay` reader (`[PEER_ID@]IP:PORT`) on arbitrary text: it must
//! return, never panic; what it accepts has a port, an address to dial,
//! written as its own family, and reads back from its own written form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::relay::RelayAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(relay) = text.parse::<RelayAddr>() else {
        return;
    };
    assert_ne!(relay.addr.port(), 0);
    assert!(!relay.addr.ip().is_unspecified() && !relay.addr.ip().is_multicast());
    assert_eq!(relay.addr.ip(), relay.addr.ip().to_canonical());
    assert_eq!(relay.to_string().parse::<RelayAddr>(), Ok(relay));
});
