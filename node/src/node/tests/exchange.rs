//! Peer exchange: what is passed on (addresses seen in use, within their
//! scope, once), and what a flood of addresses can make us do.

use std::collections::BTreeSet;

use minimodel_wire::{MAX_PEERS_PER_MESSAGE, PeerEntry};

use super::*;
use crate::address::{Scope, scope};

fn entry(remote: &Remote, port: u16) -> PeerEntry {
    PeerEntry {
        id: remote.id,
        addr: SocketAddr::new(remote.addr.ip(), port),
        flags: minimodel_wire::PeerFlags::default(),
    }
}

#[test]
fn only_addresses_seen_in_use_are_passed_on_within_their_scope_once() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    // Claims to listen elsewhere than where it is seen: the IP it is seen
    // at is passed on, with the port its Hello names.
    let lan_server = Remote {
        listen: Some(sa("1.2.3.4:9999")),
        ..Remote::seeder(1, "10.0.0.5:40001", 8).lacking_last()
    };
    let lan_fetcher = Remote::fetcher(2, "10.0.0.6:40002", 8);
    let loopback_server = Remote {
        listen: Some(sa("127.0.0.1:7000")),
        ..Remote::seeder(3, "127.0.0.1:40003", 8).lacking_last()
    };
    let other_lan_fetcher = Remote::fetcher(4, "192.168.1.4:40004", 8);
    let public_server = Remote::seeder(5, "81.2.3.4:4433", 8).lacking_last();
    let silent_server = Remote {
        listen: None,
        ..Remote::seeder(6, "81.9.9.9:4433", 8).lacking_last()
    };
    let remotes = [
        &lan_server,
        &lan_fetcher,
        &loopback_server,
        &other_lan_fetcher,
        &public_server,
        &silent_server,
    ];
    let links: Vec<LinkId> = remotes.iter().map(|remote| h.connect_in(remote)).collect();
    h.take();
    h.advance(250);
    let actions = h.take();
    let lan = entry(&lan_server, 9999);
    let loopback = entry(&loopback_server, 7000);
    let public = entry(&public_server, 4433);
    let expected: [Vec<PeerEntry>; 6] = [
        vec![public],
        vec![lan, public],
        vec![lan, public],
        vec![public],
        vec![],
        vec![public],
    ];
    for ((remote, link), expected) in remotes.iter().zip(&links).zip(expected) {
        assert_eq!(told(&actions, *link), expected, "told {}", remote.addr);
    }
    let everything: Vec<PeerEntry> = links
        .iter()
        .flat_map(|link| told(&actions, *link))
        .collect();
    assert!(everything.iter().all(|e| e.addr.ip() != ip("1.2.3.4:1")));
    assert!(
        !everything.contains(&loopback),
        "loopback is told only to loopback"
    );
    // Told once: nothing more until a new serving peer arrives.
    h.advance(5_000);
    assert!(links.iter().all(|link| told(&h.take(), *link).is_empty()));
    let newcomer = Remote::seeder(7, "91.1.1.1:4433", 8).lacking_last();
    h.connect_in(&newcomer);
    h.take();
    h.advance(5_250);
    let actions = h.take();
    for link in &links[..4] {
        assert_eq!(told(&actions, *link), [entry(&newcomer, 4433)]);
    }
}

/// 10,000 peer entries of every kind of address: one in eight is an
/// ordinary public address, the others are special (loopback, private,
/// multicast, broadcast, port 0, link-local).
fn junk(round: u32) -> Vec<PeerEntry> {
    (0..10_000u32)
        .map(|i| {
            let n = i + round * 10_000;
            let [a, b, c, d] = n.to_be_bytes();
            let mut id = [0xaa; 32];
            id[..4].copy_from_slice(&[a, b, c, d]);
            let addr = match i % 8 {
                0 => format!("127.0.{c}.{d}:4433"),
                1 => format!("10.{b}.{c}.{d}:4433"),
                2 => format!("224.0.{c}.{d}:4433"),
                3 => "255.255.255.255:4433".to_owned(),
                4 => format!("5.{b}.{c}.{d}:0"),
                5 => format!("[fe80::{c:x}:{d:x}]:4433"),
                6 => format!("169.254.{c}.{d}:4433"),
                _ => format!("5.{b}.{c}.{d}:4433"),
            };
            PeerEntry {
                id: PeerId(id),
                addr: sa(&addr),
                flags: minimodel_wire::PeerFlags::default(),
            }
        })
        .collect()
}

fn flood(h: &mut Harness, from: LinkId, entries: Vec<PeerEntry>) {
    for batch in entries.chunks(MAX_PEERS_PER_MESSAGE) {
        h.core.handle_message(
            from,
            Message::Peers {
                entries: batch.to_vec(),
            },
            h.now,
        );
    }
}

fn exchange_dials_in_progress(h: &Harness) -> usize {
    h.core
        .links
        .values()
        .filter(|link| matches!(link, super::super::Link::Dialing { exchange: true, .. }))
        .count()
}

#[test]
fn ten_thousand_announced_addresses_cause_bounded_dials_and_none_to_a_filtered_range() {
    let config = NodeConfig::default();
    let (max_dials, timeout) = (config.max_exchange_dials, config.unverified_dial_timeout);
    let mut h = Harness::new(Kind::Fetch, 8, config);
    // The flooding peer serves but has nothing: the download keeps wanting
    // peers, so every announced address is a candidate.
    let attacker = Remote::seeder(1, "81.2.3.4:4433", 8).with_chunks(&[]);
    let link = h.connect_out(&attacker);
    h.take();
    flood(&mut h, link, junk(0));
    // Nobody answers: every dial runs into its deadline.
    for step in 0..=600u64 {
        h.advance(step * 100);
        assert!(exchange_dials_in_progress(&h) <= max_dials);
    }
    let mut dialed: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut attempts = 0;
    for (at, action) in &h.history {
        if let Action::Dial { addr, deadline, .. } = action {
            if *addr == attacker.addr {
                continue;
            }
            assert_eq!(scope(*addr), Scope::Global, "dialed {addr}");
            assert_eq!(*deadline, *at + timeout, "a short deadline");
            dialed.insert(*addr);
            attempts += 1;
        }
    }
    assert!(
        dialed.len() <= MAX_PEERS_PER_MESSAGE,
        "{} addresses dialed",
        dialed.len()
    );
    assert!(!dialed.is_empty(), "the public ones are tried");
    // Each address is retried with back-off, not hammered: over a minute at
    // most a handful of attempts each.
    assert!(attempts <= dialed.len() * 7, "{attempts} attempts");
    assert!(h.is_connected(link), "the flood itself is not a violation");
}

#[test]
fn a_sustained_flood_keeps_the_address_book_and_the_dials_bounded() {
    let config = NodeConfig {
        max_known_peers: 64,
        ..NodeConfig::default()
    };
    let (max_dials, interval) = (config.max_exchange_dials, config.peer_exchange_min_interval);
    let mut h = Harness::new(Kind::Fetch, 8, config);
    let attacker = Remote::seeder(1, "81.2.3.4:4433", 8).with_chunks(&[]);
    let link = h.connect_out(&attacker);
    h.take();
    let mut dialed: BTreeSet<SocketAddr> = BTreeSet::new();
    let seconds = 60u32;
    for second in 0..seconds {
        flood(&mut h, link, junk(second));
        for tenth in 1..=10u64 {
            for dial in dials(&h.take()) {
                assert_eq!(scope(dial.addr), Scope::Global);
                dialed.insert(dial.addr);
            }
            assert!(exchange_dials_in_progress(&h) <= max_dials);
            assert!(h.core.book.len() <= 64, "{} entries", h.core.book.len());
            h.advance(u64::from(second) * 1_000 + tenth * 100);
        }
    }
    // The budget: a burst of 32, then 32 per `peer_exchange_min_interval`.
    let budget = MAX_PEERS_PER_MESSAGE as u64
        * (1 + u64::from(seconds) * 1_000 / interval.as_millis() as u64);
    assert!(
        (dialed.len() as u64) <= budget,
        "{} addresses dialed, budget {budget}",
        dialed.len()
    );
}

#[test]
fn announced_addresses_are_dialed_only_within_the_announcers_scope() {
    let cases: [(&str, &[(&str, bool)]); 3] = [
        (
            "127.0.0.1:4433",
            &[
                ("127.0.0.2:5000", true),
                ("10.1.2.3:5000", true),
                ("8.8.8.8:5000", true),
                ("224.0.0.1:5000", false),
            ],
        ),
        (
            "10.0.0.9:4433",
            &[
                ("10.1.2.3:5000", true),
                ("192.168.1.1:5000", false),
                ("127.0.0.1:5000", false),
                ("8.8.8.8:5000", true),
            ],
        ),
        (
            "81.2.3.4:4433",
            &[
                ("10.1.2.3:5000", false),
                ("127.0.0.1:5000", false),
                ("[fc00::1]:5000", false),
                ("[2a01:4f8::1]:5000", true),
            ],
        ),
    ];
    for (announcer, addresses) in cases {
        let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
        let link = h.connect_out(&Remote::seeder(1, announcer, 8).with_chunks(&[]));
        h.take();
        let entries: Vec<PeerEntry> = addresses
            .iter()
            .enumerate()
            .map(|(i, (addr, _))| PeerEntry {
                id: testing::peer_id(10 + i as u8),
                addr: sa(addr),
                flags: minimodel_wire::PeerFlags::default(),
            })
            .collect();
        flood(&mut h, link, entries);
        let dialed: BTreeSet<SocketAddr> = dials(&h.take()).iter().map(|d| d.addr).collect();
        for (addr, expected) in addresses {
            assert_eq!(
                dialed.contains(&sa(addr)),
                *expected,
                "{addr} announced by {announcer}"
            );
        }
    }
}
