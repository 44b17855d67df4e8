//! What a local-discovery announcement heard on the network is read as
//! (`minimodel_swarm::lan::neighbour_of`), on arbitrary TXT records,
//! ports and addresses: it must return, never panic; a neighbour it names
//! has at least one and at most `MAX_HEARD_ADDRS` distinct addresses, all
//! at the announced port, which is not 0.
//!
//! Input: two bytes of port, then TXT entries (`key=value`, or `key` with
//! no value) separated by NUL up to a 0xFF byte, then IPv4 addresses of
//! four bytes each.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::dht::SwarmKey;
use minimodel_swarm::lan::{MAX_HEARD_ADDRS, announcement_txt, neighbour_of};
use minimodel_verifier::Sha256Digest;
use minimodel_wire::PeerId;

fuzz_target!(|data: &[u8]| {
    let Some((port, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let port = u16::from_be_bytes(*port);
    let (txt, ips) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let key = SwarmKey::of(&Sha256Digest([7; 32]));
    // Half the inputs start from a real announcement, so that the
    // addresses and the port are reached.
    let real: Vec<(String, Vec<u8>)> = if port % 2 == 0 {
        announcement_txt(&key, &PeerId([3; 32]))
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    } else {
        Vec::new()
    };
    let mut pairs: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for entry in txt.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let Ok(text) = std::str::from_utf8(entry) else {
            continue;
        };
        match text.split_once('=') {
            Some((k, v)) => pairs.push((k.to_owned(), Some(v.as_bytes().to_vec()))),
            None => pairs.push((text.to_owned(), None)),
        }
    }
    pairs.extend(real.into_iter().map(|(k, v)| (k, Some(v))));
    let ips: Vec<IpAddr> = ips
        .chunks_exact(4)
        .map(|b| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        .collect();
    let heard = neighbour_of(
        &key,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        port,
        ips,
    );
    if let Ok((_, addrs)) = heard {
        assert!(port != 0);
        assert!(!addrs.is_empty() && addrs.len() <= MAX_HEARD_ADDRS);
        for (i, addr) in addrs.iter().enumerate() {
            assert_eq!(addr.port(), port);
            assert!(!addrs[..i].contains(addr));
        }
    }
});
