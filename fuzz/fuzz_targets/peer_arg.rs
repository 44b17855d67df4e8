//! The `--peer` reader (`PEER_ID@HOST:PORT[,HOST:PORT]...`) on arbitrary
//! text: it must return, never panic; what it splits holds 1 to
//! `MAX_PEER_ARG_ADDRS` parts; where every part is an address literal (so
//! that no name is looked up here), what it accepts holds only those
//! addresses as the reader keeps them (an IPv4-mapped IPv6 address as
//! IPv4, without an IPv6 scope or flow label), each once, and reads back
//! from its own written form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::peers::{MAX_PEER_ARG_ADDRS, parse_peer_arg, split_peer_arg};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((id, hosts)) = split_peer_arg(text) else {
        return;
    };
    assert!(!hosts.is_empty() && hosts.len() <= MAX_PEER_ARG_ADDRS);
    let Ok(literals) = hosts
        .iter()
        .map(|host| {
            host.parse::<std::net::SocketAddr>()
                .map(|addr| std::net::SocketAddr::new(addr.ip().to_canonical(), addr.port()))
        })
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    if let Ok(peer) = parse_peer_arg(text) {
        assert_eq!(peer.id, id);
        assert!(!peer.addrs.is_empty());
        for (i, addr) in peer.addrs.iter().enumerate() {
            assert!(literals.contains(addr));
            assert!(!peer.addrs[..i].contains(addr));
        }
        assert_eq!(parse_peer_arg(&peer.to_string()).as_ref(), Ok(&peer));
    }
});
