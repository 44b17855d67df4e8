//! Through NAT routers: LAN addresses passed on only between peers behind
//! one public address, introductions (Rendezvous, Connect) after a dial
//! that does not get through, and what an introducer refuses.

use minimodel_wire::{PeerEntry, PeerFlags, RendezvousFailedReason};

use crate::portmap::MapState;

use super::*;

/// A serving peer seen at `addr` (behind a router when `lan` is given),
/// bound to the wildcard address: its Hello names `0.0.0.0` and its port.
fn home_peer(n: u8, addr: &str, lan: &[&str]) -> Remote {
    let seen = sa(addr);
    Remote {
        lan: lan.iter().map(|a| sa(a)).collect(),
        listen: Some(SocketAddr::from(([0, 0, 0, 0], seen.port()))),
        ..Remote::seeder(n, addr, 8).lacking_last()
    }
}

fn entry(id: PeerId, addr: &str, flags: PeerFlags) -> PeerEntry {
    PeerEntry {
        id,
        addr: sa(addr),
        flags,
    }
}

fn connects_to(actions: &[Action], to: LinkId) -> Vec<(PeerId, Vec<SocketAddr>)> {
    messages_to(actions, to)
        .into_iter()
        .filter_map(|message| match message {
            Message::Connect { peer, addrs } => Some((peer, addrs)),
            _ => None,
        })
        .collect()
}

fn failures_to(actions: &[Action], to: LinkId) -> Vec<RendezvousFailedReason> {
    messages_to(actions, to)
        .into_iter()
        .filter_map(|message| match message {
            Message::RendezvousFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// The introducer on `link` sends a Connect naming `peer` at `addrs`:
/// the dials that starts, with the id each must prove. Our router is
/// opened toward the peer at once ([`Action::Open`]), and the dials
/// start `punch_delay` later, not before.
fn connect(
    h: &mut Harness,
    link: LinkId,
    peer: PeerId,
    addrs: &[&str],
) -> Vec<(SocketAddr, Option<PeerId>)> {
    h.core.handle_message(
        link,
        Message::Connect {
            peer,
            addrs: addrs.iter().map(|a| sa(a)).collect(),
        },
        h.now,
    );
    let at_once = h.take();
    let opened: Vec<SocketAddr> = at_once
        .iter()
        .filter_map(|action| match action {
            Action::Open { addrs } => Some(addrs.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        dials(&at_once).is_empty(),
        "dialed before the routers were opened"
    );
    let after = h.elapsed(h.now) + NodeConfig::default().punch_delay.as_millis() as u64;
    h.advance(after);
    // (Other entries' dials of the meantime are not this Connect's.)
    let dialed: Vec<(SocketAddr, Option<PeerId>)> = dials(&h.take())
        .into_iter()
        .filter(|dial| dial.peer == Some(peer))
        .map(|dial| (dial.addr, dial.peer))
        .collect();
    for (addr, _) in &dialed {
        assert!(
            opened.contains(addr),
            "{addr} dialed but not opened: {opened:?}"
        );
    }
    dialed
}

#[test]
fn peers_behind_one_router_hear_of_each_others_lan_addresses_and_nobody_else_does() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    // Two peers in one home (one public address, two ports), one in
    // another home with the same private addresses inside, one with no
    // LAN addresses.
    let a = home_peer(1, "81.1.1.1:5001", &["192.168.1.2:5001"]);
    let b = home_peer(2, "81.1.1.1:5002", &["192.168.1.3:5002", "[fd00::3]:5002"]);
    let c = home_peer(3, "82.2.2.2:4433", &["192.168.1.2:4433"]);
    let d = home_peer(4, "83.3.3.3:4433", &[]);
    let links: Vec<LinkId> = [&a, &b, &c, &d].iter().map(|r| h.connect_in(r)).collect();
    h.take();
    h.advance(250);
    let actions = h.take();
    // A peer behind a router is named where its connection comes from,
    // to be reached through an introduction; one that listens where it
    // is seen, plainly.
    let behind = |r: &Remote| entry(r.id, &r.addr.to_string(), PeerFlags::VIA_RENDEZVOUS);
    let public = |r: &Remote| entry(r.id, &r.addr.to_string(), PeerFlags::default());
    let lan = |r: &Remote, addr: &str| entry(r.id, addr, PeerFlags::LAN);
    assert_eq!(
        told(&actions, links[0]),
        [
            lan(&b, "192.168.1.3:5002"),
            lan(&b, "[fd00::3]:5002"),
            behind(&b),
            behind(&c),
            public(&d)
        ]
    );
    assert_eq!(
        told(&actions, links[1]),
        [
            lan(&a, "192.168.1.2:5001"),
            behind(&a),
            behind(&c),
            public(&d)
        ]
    );
    // Another home hears only public addresses: 192.168.1.2 there is
    // another host.
    assert_eq!(
        told(&actions, links[2]),
        [behind(&a), behind(&b), public(&d)]
    );
    assert_eq!(
        told(&actions, links[3]),
        [behind(&a), behind(&b), behind(&c)]
    );
}

#[test]
fn a_peer_whose_router_maps_its_port_is_named_plainly_where_it_is_seen() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    // Its Hello names its router's outside address and the mapped port
    // (UPnP, NAT-PMP or PCP): reachable there, no introduction needed.
    let mapped = Remote {
        listen: Some(sa("81.1.1.1:4433")),
        ..home_peer(1, "81.1.1.1:4433", &["192.168.1.2:4433"])
    };
    // One whose Hello names an address it is not seen at is not believed
    // reachable: still behind its router.
    let claims = Remote {
        listen: Some(sa("203.0.113.9:4433")),
        ..home_peer(2, "82.2.2.2:4433", &["192.168.1.3:4433"])
    };
    let other = Remote::seeder(3, "83.3.3.3:4433", 8).lacking_last();
    let links: Vec<LinkId> = [&mapped, &claims, &other]
        .iter()
        .map(|r| h.connect_in(r))
        .collect();
    h.take();
    h.advance(250);
    let actions = h.take();
    assert_eq!(
        told(&actions, links[2]),
        [
            entry(mapped.id, "81.1.1.1:4433", PeerFlags::default()),
            entry(claims.id, "82.2.2.2:4433", PeerFlags::VIA_RENDEZVOUS),
        ]
    );
}

#[test]
fn a_lan_address_is_dialed_only_inside_our_own_network() {
    // Our LAN address is 192.168.7.2 (OUR_LAN_ADDR).
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "81.0.0.9:4433", 8);
    let link = h.connect_out(&seeder);
    h.take();
    let neighbour = testing::peer_id(2);
    let elsewhere = testing::peer_id(3);
    h.core.handle_message(
        link,
        Message::Peers {
            entries: vec![
                entry(neighbour, "192.168.7.5:4433", PeerFlags::LAN),
                entry(elsewhere, "10.1.1.5:4433", PeerFlags::LAN),
                entry(testing::peer_id(4), "192.168.4.5:4433", PeerFlags::LAN),
            ],
        },
        h.now,
    );
    let dialed: Vec<(SocketAddr, Option<PeerId>)> = dials(&h.take())
        .into_iter()
        .map(|dial| (dial.addr, dial.peer))
        .collect();
    assert_eq!(dialed, [(sa("192.168.7.5:4433"), Some(neighbour))]);
}

#[test]
fn a_dial_that_does_not_get_through_asks_for_an_introduction_and_a_connect_dials() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "81.0.0.9:4433", 8);
    let introducer = h.connect_out(&seeder);
    h.take();
    let home = testing::peer_id(2);
    h.core.handle_message(
        introducer,
        Message::Peers {
            entries: vec![entry(home, "82.2.2.2:4433", PeerFlags::default())],
        },
        h.now,
    );
    let cold = dials(&h.take());
    assert_eq!(cold.len(), 1);
    assert_eq!(cold[0].peer, Some(home));
    // Its router drops our packets: the dial times out.
    h.advance(h.elapsed(cold[0].deadline));
    let asked = messages_to(&h.take(), introducer);
    assert!(
        asked.contains(&Message::Rendezvous { peer: home }),
        "{asked:?}"
    );
    // The introducer's Connect: dial at once where it sees the peer.
    assert_eq!(
        connect(&mut h, introducer, home, &["82.2.2.2:61000"]),
        [(sa("82.2.2.2:61000"), Some(home))]
    );
    // A Connect naming ourselves, the introducer or an address outside
    // its scope dials nothing.
    for (peer, addr) in [
        (h.core.local_id(), "83.3.3.3:1000"),
        (seeder.id, "81.0.0.9:4433"),
        (testing::peer_id(4), "127.0.0.1:1000"),
        (testing::peer_id(5), "10.9.9.9:1000"),
    ] {
        assert!(
            connect(&mut h, introducer, peer, &[addr]).is_empty(),
            "{peer:?} at {addr}"
        );
    }
}

#[test]
fn an_introducer_sends_each_side_a_connect_or_says_why_not() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let a = home_peer(1, "81.1.1.1:5001", &["192.168.1.2:5001"]);
    let b = home_peer(2, "82.2.2.2:6001", &["192.168.1.2:6001"]);
    let c = home_peer(3, "81.1.1.1:5002", &["192.168.1.3:5002"]);
    let (la, lb, lc) = (h.connect_in(&a), h.connect_in(&b), h.connect_in(&c));
    h.take();
    let rendezvous = |h: &mut Harness, from: LinkId, peer: PeerId| {
        h.core
            .handle_message(from, Message::Rendezvous { peer }, h.now);
        h.take()
    };
    // Two homes: each side hears where the other's connection comes from.
    let actions = rendezvous(&mut h, la, b.id);
    assert_eq!(connects_to(&actions, la), [(b.id, vec![b.addr])]);
    assert_eq!(connects_to(&actions, lb), [(a.id, vec![a.addr])]);
    // One home: LAN addresses first, then the public one.
    let actions = rendezvous(&mut h, la, c.id);
    assert_eq!(
        connects_to(&actions, la),
        [(c.id, vec![sa("192.168.1.3:5002"), c.addr])]
    );
    assert_eq!(
        connects_to(&actions, lc),
        [(a.id, vec![sa("192.168.1.2:5001"), a.addr])]
    );
    // Itself, us, or a peer we have no link to: refused, nothing sent on.
    for (peer, reason) in [
        (a.id, RendezvousFailedReason::NoSelf),
        (h.core.local_id(), RendezvousFailedReason::NoSelf),
        (testing::peer_id(9), RendezvousFailedReason::NotConnected),
    ] {
        let actions = rendezvous(&mut h, la, peer);
        assert_eq!(failures_to(&actions, la), [reason]);
        assert!(connects_to(&actions, lb).is_empty());
    }
    // A flood of introductions is cut off by its budget.
    let mut limited = 0;
    let mut sent = 0;
    for _ in 0..100 {
        let actions = rendezvous(&mut h, lc, b.id);
        sent += connects_to(&actions, lb).len();
        limited += failures_to(&actions, lc)
            .iter()
            .filter(|reason| **reason == RendezvousFailedReason::RateLimited)
            .count();
    }
    assert!(sent <= minimodel_wire::MAX_PEERS_PER_MESSAGE, "{sent}");
    assert_eq!(sent + limited, 100);
}

#[test]
fn a_seeder_told_to_connect_dials_though_it_wants_no_peers() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let introducer = h.connect_in(&home_peer(1, "81.1.1.1:5001", &[]));
    h.take();
    let asker = testing::peer_id(2);
    assert_eq!(
        connect(&mut h, introducer, asker, &["83.3.3.3:7000"]),
        [(sa("83.3.3.3:7000"), Some(asker))]
    );
    // The same Connect again while that dial runs: nothing more.
    assert!(connect(&mut h, introducer, asker, &["83.3.3.3:7000"]).is_empty());
}

#[test]
fn a_peer_named_via_rendezvous_is_dialed_and_introduced_at_once() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "81.0.0.9:4433", 8);
    let introducer = h.connect_out(&seeder);
    h.take();
    let home = testing::peer_id(2);
    h.core.handle_message(
        introducer,
        Message::Peers {
            entries: vec![entry(home, "82.2.2.2:61000", PeerFlags::VIA_RENDEZVOUS)],
        },
        h.now,
    );
    let actions = h.take();
    // Not dialed cold: the introduction makes both sides dial at once.
    assert!(dials(&actions).is_empty(), "{actions:?}");
    assert!(
        messages_to(&actions, introducer).contains(&Message::Rendezvous { peer: home }),
        "{actions:?}"
    );
    h.advance(20);
    assert_eq!(
        connect(&mut h, introducer, home, &["82.2.2.2:61000"]),
        [(sa("82.2.2.2:61000"), Some(home))]
    );
    // The same Connect again while that dial runs: nothing more.
    assert!(connect(&mut h, introducer, home, &["82.2.2.2:61000"]).is_empty());
}

#[test]
fn peers_in_two_networks_agreeing_on_where_they_see_us_make_our_public_address() {
    let mut h = Harness::new(Kind::ServingFetch, 8, NodeConfig::default());
    let seeing = |n: u8, addr: &str, observed: &str| Remote {
        observed: Some(sa(observed)),
        ..Remote::seeder(n, addr, 8).lacking_last()
    };
    let public = |h: &mut Harness| {
        h.take_reports()
            .into_iter()
            .filter_map(|report| match report {
                NodeReport::PublicAddress { ip, port, prefixes } => Some((ip, port, prefixes)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // One that dialed us names the address it dialed: not counted.
    h.connect_in(&seeing(5, "84.4.4.4:5001", "203.0.113.9:4433"));
    h.connect_in(&seeing(6, "85.5.5.5:5001", "203.0.113.9:4433"));
    assert!(public(&mut h).is_empty(), "peers that dialed us");
    h.connect_out(&seeing(1, "81.1.1.1:5001", "203.0.113.5:4433"));
    h.connect_out(&seeing(2, "81.1.1.2:5001", "203.0.113.5:4433"));
    assert!(public(&mut h).is_empty(), "one network is one voice");
    assert_eq!(h.core.public_address(), None);
    h.connect_out(&seeing(3, "82.2.2.2:5001", "203.0.113.5:4433"));
    let ip: std::net::IpAddr = "203.0.113.5".parse().unwrap();
    assert_eq!(public(&mut h), [(ip, Some(4433), 2)]);
    // Another network sees another port: a port per peer.
    h.connect_out(&seeing(4, "83.3.3.3:5001", "203.0.113.5:61000"));
    assert_eq!(public(&mut h), [(ip, None, 3)]);
}

/// The addresses a Connect from `introducer` naming peer `n` at `addrs`
/// makes us dial.
fn connect_to(h: &mut Harness, introducer: LinkId, n: u8, addrs: &[&str]) -> Vec<SocketAddr> {
    connect(h, introducer, testing::peer_id(n), addrs)
        .into_iter()
        .map(|(addr, _)| addr)
        .collect()
}

#[test]
fn lan_addresses_in_a_connect_are_dialed_only_for_a_peer_behind_our_own_router() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    // The introducer sees us at our router's address.
    let seeder = Remote {
        observed: Some(sa(OUR_ADDR)),
        ..Remote::seeder(1, "81.0.0.9:4433", 8)
    };
    let introducer = h.connect_out(&seeder);
    h.take();
    // A LAN address alone, or beside a public address that is not ours:
    // a peer behind another router, whose LAN means nothing here.
    assert!(connect_to(&mut h, introducer, 2, &["192.168.7.9:5000"]).is_empty());
    assert_eq!(
        connect_to(
            &mut h,
            introducer,
            3,
            &["192.168.7.9:5000", "82.2.2.2:5000"]
        ),
        [sa("82.2.2.2:5000")]
    );
    // Beside our own public address: a neighbour, dialed on the LAN first.
    assert_eq!(
        connect_to(
            &mut h,
            introducer,
            4,
            &["192.168.7.9:5000", "81.0.0.1:5000"]
        ),
        [sa("192.168.7.9:5000")]
    );
}

/// Where the "internet" is a private network (a lab, a campus, a
/// carrier's network), a peer's router is seen at a private address
/// outside our LAN: a Connect naming it is dialed, as peer exchange would
/// dial it; a private address of another block is not, nor an address on
/// our own LAN without our public address beside it.
#[test]
fn a_connect_to_a_router_on_a_private_network_is_dialed_as_peer_exchange_would() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote {
        observed: Some(sa("10.250.1.1:4433")),
        ..Remote::seeder(1, "10.0.1.1:4433", 8)
    };
    let introducer = h.connect_out(&seeder);
    h.take();
    assert_eq!(
        connect_to(&mut h, introducer, 2, &["10.250.2.1:4433"]),
        [sa("10.250.2.1:4433")]
    );
    assert!(connect_to(&mut h, introducer, 3, &["172.16.2.1:4433"]).is_empty());
    assert_eq!(
        connect_to(
            &mut h,
            introducer,
            4,
            &["192.168.7.9:4433", "10.250.3.1:4433"]
        ),
        [sa("10.250.3.1:4433")]
    );
    // Beside our router's address: a neighbour, dialed on the LAN first.
    assert_eq!(
        connect_to(
            &mut h,
            introducer,
            5,
            &["192.168.7.9:4433", "10.250.1.1:4434"]
        ),
        [sa("192.168.7.9:4433")]
    );
}

#[test]
fn every_step_of_an_introduction_is_reported() {
    let steps = |h: &mut Harness| {
        h.take_reports()
            .into_iter()
            .filter_map(|report| match report {
                NodeReport::Introduction { peer, via, step } => Some((peer, via, step)),
                NodeReport::Introduced { asker, target } => {
                    Some((asker, target, "introduced".to_owned()))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Asking, the Connect, a refusal.
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "81.0.0.9:4433", 8);
    let introducer = h.connect_out(&seeder);
    h.take();
    h.take_reports();
    let (home, other) = (testing::peer_id(2), testing::peer_id(3));
    h.core.handle_message(
        introducer,
        Message::Peers {
            entries: vec![
                entry(home, "82.2.2.2:61000", PeerFlags::VIA_RENDEZVOUS),
                entry(other, "83.3.3.3:61000", PeerFlags::VIA_RENDEZVOUS),
            ],
        },
        h.now,
    );
    connect(&mut h, introducer, home, &["82.2.2.2:61000"]);
    h.core.handle_message(
        introducer,
        Message::RendezvousFailed {
            peer: other,
            reason: RendezvousFailedReason::NotConnected,
        },
        h.now,
    );
    assert_eq!(
        steps(&mut h),
        [
            (home, seeder.id, "asked".to_owned()),
            (other, seeder.id, "asked".to_owned()),
            (home, seeder.id, "dialing".to_owned()),
            (other, seeder.id, "NotConnected".to_owned()),
        ]
    );
    let counts = h.core.metrics().introductions;
    assert_eq!(
        (
            counts.asked,
            counts.dialing,
            counts.refused,
            counts.introduced
        ),
        (2, 1, 1, 0)
    );
    // The introducer's side.
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let a = home_peer(1, "81.1.1.1:5001", &[]);
    let b = home_peer(2, "82.2.2.2:6001", &[]);
    let la = h.connect_in(&a);
    h.connect_in(&b);
    h.take();
    h.take_reports();
    h.core
        .handle_message(la, Message::Rendezvous { peer: b.id }, h.now);
    assert_eq!(steps(&mut h), [(a.id, b.id, "introduced".to_owned())]);
    assert_eq!(h.core.metrics().introductions.introduced, 1);
}

#[test]
fn a_neighbour_heard_on_the_lan_is_dialed_inside_our_network_only_and_within_the_limit() {
    // Our LAN address is 192.168.7.2 (OUR_LAN_ADDR).
    let config = NodeConfig {
        max_neighbours: 2,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Fetch, 8, config);
    h.take();
    let us = h.core.local_id();
    // Ourselves, and addresses outside our /24, on the internet or on
    // loopback: nothing is dialed.
    h.core
        .handle_neighbour(us, &[sa("192.168.7.9:4433")], h.now);
    h.core.handle_neighbour(
        testing::peer_id(2),
        &[
            sa("192.168.4.5:4433"),
            sa("10.1.1.5:4433"),
            sa("81.0.0.9:4433"),
            sa("127.0.0.1:4433"),
        ],
        h.now,
    );
    assert_eq!(dials(&h.take()), []);
    // A neighbour: dialed at its address inside our network, id pinned,
    // with the short deadline of an unverified address.
    let neighbour = testing::peer_id(3);
    h.core.handle_neighbour(
        neighbour,
        &[sa("81.0.0.10:4433"), sa("192.168.7.5:4433")],
        h.now,
    );
    let dialed = dials(&h.take());
    assert_eq!(dialed.len(), 1, "{dialed:?}");
    assert_eq!(
        (dialed[0].addr, dialed[0].peer),
        (sa("192.168.7.5:4433"), Some(neighbour))
    );
    assert_eq!(
        dialed[0].deadline,
        h.now + NodeConfig::default().unverified_dial_timeout
    );
    // At most `max_neighbours` peers heard this way; one heard again is
    // not a new one.
    h.core
        .handle_neighbour(neighbour, &[sa("192.168.7.6:4433")], h.now);
    h.core
        .handle_neighbour(testing::peer_id(4), &[sa("192.168.7.7:4433")], h.now);
    h.core
        .handle_neighbour(testing::peer_id(5), &[sa("192.168.7.8:4433")], h.now);
    let more = dials(&h.take());
    let more_peers: Vec<Option<PeerId>> = more.iter().map(|dial| dial.peer).collect();
    assert_eq!(more_peers, [Some(testing::peer_id(4))]);
    // Neither answers. Once their dials time out, the first is dialed at
    // its second address, while the other has none left: a new neighbour
    // takes its place (never reached, not being dialed).
    h.advance(h.elapsed(more[0].deadline));
    h.take();
    h.core
        .handle_neighbour(testing::peer_id(6), &[sa("192.168.7.10:4433")], h.now);
    let replaced: Vec<Option<PeerId>> = dials(&h.take()).iter().map(|dial| dial.peer).collect();
    assert!(
        replaced.contains(&Some(testing::peer_id(6))),
        "{replaced:?}"
    );
    assert!(
        h.core.book.find_id(&testing::peer_id(4)).is_none(),
        "replaced"
    );
    assert!(
        h.core.book.find_id(&neighbour).is_some(),
        "still being dialed"
    );
}

#[test]
fn our_hello_names_the_mapped_address_while_the_router_holds_one() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let remote = sa("198.51.100.9:4433");
    let hello = h.core.hello_to(remote);
    assert_eq!(hello.listen, Some(sa(OUR_ADDR)));
    assert_eq!(hello.observed, Some(remote));
    assert_eq!(hello.lan, [sa(OUR_LAN_ADDR)]);
    let mapped = sa("203.0.113.5:4433");
    h.core.set_mapping(
        Some(MapState {
            settled: true,
            external: Some(mapped),
        }),
        h.now,
    );
    let hello = h.core.hello_to(remote);
    assert_eq!(hello.listen, Some(mapped));
    assert_eq!(hello.lan, [sa(OUR_LAN_ADDR)]);
    // The Hello we answer an incoming peer with is the same.
    let peer = Remote::seeder(1, "198.51.100.7:4433", 8).lacking_last();
    let link = match h.core.handle_incoming(peer.addr, true, h.now) {
        Incoming::Accept { link, .. } => link,
        other => panic!("not accepted: {other:?}"),
    };
    let (answer, _) = h
        .core
        .handle_hello(link, peer.id, &peer.side(&h.swarm).hello, h.now)
        .expect("admitted");
    assert_eq!(answer.listen, Some(mapped));
    assert_eq!(answer.observed, Some(peer.addr));
    // Lost: back to the bound address.
    h.core.set_mapping(
        Some(MapState {
            settled: true,
            external: None,
        }),
        h.now,
    );
    assert_eq!(h.core.hello_to(remote).listen, Some(sa(OUR_ADDR)));
}

#[test]
fn a_dialed_links_hello_waits_for_the_routers_first_answer_so_long() {
    let wait = NodeConfig::default().mapping_wait;
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let start = h.now;
    let asking = MapState::default();
    // No mapping asked for: nothing waits.
    assert!(!h.core.hello_held(start));
    assert_eq!(h.core.poll_timeout(start), None);
    // Asked: held, and the core wakes the driver when the wait is over.
    h.core.set_mapping(Some(asking), start);
    assert!(h.core.hello_held(start));
    assert_eq!(h.core.poll_timeout(start), Some(start + wait));
    // Another report while the router is still asked keeps the deadline.
    let later = start + wait / 2;
    h.core.set_mapping(Some(asking), later);
    assert!(h.core.hello_held(start + wait - Duration::from_millis(1)));
    assert!(!h.core.hello_held(start + wait), "held past mapping_wait");
    // What is left is the verdict on who reaches us, which waits longer
    // for the router.
    let reach_wait = NodeConfig::default().reach_wait;
    assert_eq!(h.core.poll_timeout(start + wait), Some(start + reach_wait));
    // The router answers within the wait: released at once, naming it.
    let mapped = sa("203.0.113.5:4433");
    h.core.set_mapping(
        Some(MapState {
            settled: true,
            external: Some(mapped),
        }),
        later,
    );
    assert!(!h.core.hello_held(later));
    assert_eq!(
        h.core.hello_to(sa("198.51.100.9:4433")).listen,
        Some(mapped)
    );
    // Asked again later (a renewal that failed): nothing waits any more.
    h.core.set_mapping(Some(asking), later);
    assert!(!h.core.hello_held(later));
    // The router never answers: released at the deadline, naming the
    // bound address.
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    h.core.set_mapping(Some(asking), h.now);
    assert!(!h.core.hello_held(h.now + wait));
    assert_eq!(
        h.core.hello_to(sa("198.51.100.9:4433")).listen,
        Some(sa(OUR_ADDR))
    );
}

#[test]
fn a_node_that_does_not_listen_names_no_address_and_no_lan() {
    let h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let hello = h.core.hello_to(sa("198.51.100.9:4433"));
    assert_eq!(hello.listen, None);
    assert!(hello.lan.is_empty(), "{:?}", hello.lan);
    assert!(!hello.serving);
}
