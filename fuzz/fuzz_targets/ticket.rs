//! The ticket reader on arbitrary text and on arbitrary binary forms: it
//! must return, never panic; whatever it accepts holds up to 4 distinct
//! peers with 1 to 4 distinct addresses each, relays only for its own
//! peers (1 to 2 distinct ones, each with its key), up to 2 distinct
//! `https://` mirrors without a query (and a peer or a mirror at least),
//! and is written back to the same ticket (text and bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::ticket::{
    MAX_TICKET_ADDRS, MAX_TICKET_LEN, MAX_TICKET_MIRROR_LEN, MAX_TICKET_MIRRORS, MAX_TICKET_PEERS,
    MAX_TICKET_RELAYS, Ticket,
};
use minimodel_verifier::mirror_url::Scheme;

fn check(ticket: &Ticket) {
    let peers = &ticket.peers;
    assert!(peers.len() <= MAX_TICKET_PEERS);
    assert!(!peers.is_empty() || !ticket.mirrors.is_empty());
    assert!(ticket.mirrors.len() <= MAX_TICKET_MIRRORS);
    for (i, url) in ticket.mirrors.iter().enumerate() {
        assert_eq!(url.scheme(), Scheme::Https);
        assert!(!url.has_query());
        assert!(url.expose().len() <= MAX_TICKET_MIRROR_LEN);
        assert!(ticket.mirrors[..i].iter().all(|m| m.label() != url.label()));
    }
    for (i, peer) in peers.iter().enumerate() {
        assert!(peers[..i].iter().all(|p| p.id != peer.id));
        assert!(!peer.addrs.is_empty() && peer.addrs.len() <= MAX_TICKET_ADDRS);
    }
    for entry in &ticket.relays {
        assert!(peers.iter().any(|p| p.id == entry.peer));
        assert!(!entry.relays.is_empty() && entry.relays.len() <= MAX_TICKET_RELAYS);
        for (i, relay) in entry.relays.iter().enumerate() {
            assert!(relay.id.is_some());
            assert!(!entry.relays[..i].contains(relay));
        }
    }
    let text = ticket.to_string();
    assert!(text.len() <= MAX_TICKET_LEN);
    assert_eq!(text.parse::<Ticket>().as_ref(), Ok(ticket));
    assert_eq!(Ticket::from_bytes(&ticket.to_bytes()).as_ref(), Ok(ticket));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ticket) = text.parse::<Ticket>() {
            check(&ticket);
            assert_eq!(ticket.to_string(), text.to_ascii_lowercase());
        }
    }
    if let Ok(ticket) = Ticket::from_bytes(data) {
        check(&ticket);
        assert_eq!(ticket.to_bytes(), data);
    }
});
