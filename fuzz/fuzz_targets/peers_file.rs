//! The remembered-peers file of a download (`minimodel-peers-v0`,
//! `minimodel_swarm::resume::parse_peers_file`) on arbitrary bytes: it must
//! return, never panic; a list it accepts is within its bounds and is
//! written back to text that reads as the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::remembered::{MAX_REMEMBERED, MAX_REMEMBERED_ADDRS};
use minimodel_swarm::resume::{parse_peers_file, peers_file_text};

fuzz_target!(|data: &[u8]| {
    if let Ok(peers) = parse_peers_file(data) {
        assert!(peers.len() <= MAX_REMEMBERED);
        for peer in &peers {
            assert!(!peer.addrs.is_empty() && peer.addrs.len() <= MAX_REMEMBERED_ADDRS);
        }
        let text = peers_file_text(&peers);
        assert_eq!(parse_peers_file(text.as_bytes()).as_ref(), Ok(&peers));
    }
});
