//! Admission: handshake and link caps per prefix, Retry, the handshake
//! deadline, and who gets a peer slot at Hello time (bans, a full node, a
//! restarted peer, eviction of idle peers).

use super::*;
use crate::node::{Answer, First};
use crate::report::{Blame, Departure, LinkEnd};
use minimodel_wire::{HelloRejectReason, PeerEntry, SwarmIdentity, SwarmParams};

/// Tallies of `handle_incoming` answers.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    accepted: Vec<LinkId>,
    retried: usize,
    refused: usize,
}

fn knock(h: &mut Harness, addrs: &[SocketAddr], validated: bool) -> Tally {
    let mut tally = Tally::default();
    for &addr in addrs {
        match h.core.handle_incoming(addr, validated, h.now) {
            Incoming::Accept { link, .. } => tally.accepted.push(link),
            Incoming::Retry => tally.retried += 1,
            Incoming::Refuse { .. } => tally.refused += 1,
        }
    }
    tally
}

fn from_slash_24(prefix: &str, count: u8) -> Vec<SocketAddr> {
    (1..=count)
        .map(|host| sa(&format!("{prefix}.{host}:{}", 40_000 + u16::from(host))))
        .collect()
}

#[test]
fn stalled_handshakes_from_one_slash_24_do_not_keep_another_prefix_out() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    // 16 handshakes from one /24 that never finish: a quarter of the
    // handshake slots at most, the rest refused at once.
    let flood = knock(&mut h, &from_slash_24("81.2.3", 16), true);
    assert_eq!(flood.accepted.len(), 4, "{flood:?}");
    assert_eq!(flood.refused, 12, "{flood:?}");
    // An honest peer from another prefix gets in at once (after a Retry if
    // its address is not validated yet: the node is busy), and is up
    // within a round trip.
    h.advance(1);
    let honest = Remote::seeder(1, "62.1.1.1:4433", 8).lacking_last();
    assert_eq!(
        h.core.handle_incoming(honest.addr, false, h.now),
        Incoming::Retry
    );
    h.advance(50);
    let link = h.connect_in(&honest);
    assert!(h.is_connected(link));
    // The stalled ones end at their deadline, each with a report.
    h.advance(9_999);
    assert!(aborts(&h.take()).is_empty(), "not before the deadline");
    h.advance(10_000);
    let mut aborted = aborts(&h.take());
    aborted.sort();
    assert_eq!(aborted, flood.accepted);
    let timed_out = h
        .take_reports()
        .into_iter()
        .filter(|report| {
            matches!(report, NodeReport::Refused { reason: LinkEnd::TimedOut, addr } if addr.ip().to_string().starts_with("81.2.3."))
        })
        .count();
    assert_eq!(timed_out, 4);
    // Their slots are free again.
    let again = knock(&mut h, &from_slash_24("81.2.3", 4), true);
    assert_eq!(again.accepted.len(), 4);
}

/// An endpoint's deadline for a routed handshake, later than the node's.
const ROUTED_WAIT: Duration = Duration::from_secs(3600);

#[test]
fn a_connection_routed_by_a_shared_endpoint_is_admitted_as_a_validated_one_or_refused_with_a_reason()
 {
    let config = NodeConfig::default();
    let mut h = Harness::new(Kind::Seeder, 4, config.clone());
    let addrs = from_slash_24("198.51.100", 8);
    let mut taken = Vec::new();
    // The endpoint's deadline, sooner than the node's own.
    let endpoints = h.now + Duration::from_secs(1);
    for &addr in &addrs[..config.max_handshakes_per_prefix] {
        taken.push(h.core.handle_routed(addr, true, endpoints, h.now).unwrap());
    }
    // The node's own handshake limit per prefix still holds.
    let refusal = h
        .core
        .handle_routed(addrs[7], true, endpoints, h.now)
        .unwrap_err();
    assert_eq!(refusal.reason, HelloRejectReason::TooManyPeers);
    // The handshakes end at the endpoint's deadline.
    h.advance(999);
    assert!(
        aborts(&h.take()).is_empty(),
        "not before the endpoint's deadline"
    );
    h.advance(1_000);
    assert_eq!(aborts(&h.take()), taken);
    // A stopping node serves nobody new.
    h.core.stop(h.now);
    let other = "203.0.113.9:4000".parse().unwrap();
    let refusal = h
        .core
        .handle_routed(other, true, endpoints, h.now)
        .unwrap_err();
    assert_eq!(refusal.reason, HelloRejectReason::NotServing);
}

#[test]
fn a_hello_routed_without_room_at_the_endpoint_is_refused_as_full_naming_other_peers() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let idle = h.connect_in(&Remote::seeder(150, "62.7.0.1:4433", 8).lacking_last());
    // The node has room of its own; the endpoint it shares has none.
    let crowded = Remote::fetcher(100, "81.2.3.200:5000", 8);
    let link = h
        .core
        .handle_routed(crowded.addr, false, h.now + ROUTED_WAIT, h.now)
        .unwrap();
    let rejection = h.hello_in(link, &crowded).expect_err("no room");
    assert_eq!(rejection.reason, HelloRejectReason::TooManyPeers);
    let named: Vec<SocketAddr> = rejection.peers.iter().map(|entry| entry.addr).collect();
    assert_eq!(named, [sa("62.7.0.1:4433")]);
    let end = LinkEnd::Refused {
        reason: rejection.reason,
        detail: rejection.detail,
    };
    h.core.handle_link_failed(link, end, h.now);
    // With room, the next one is taken.
    let next = Remote::fetcher(101, "81.2.4.200:5000", 8);
    let link = h
        .core
        .handle_routed(next.addr, true, h.now + ROUTED_WAIT, h.now)
        .unwrap();
    h.hello_in(link, &next).expect("room");
    // Without room, a peer of this swarm idle long enough gives up its
    // place to the newcomer.
    h.advance(NodeConfig::default().evict_idle_after.as_millis() as u64 + 1_000);
    h.take();
    let late = Remote::fetcher(102, "81.2.5.200:5000", 8);
    let link = h
        .core
        .handle_routed(late.addr, false, h.now + ROUTED_WAIT, h.now)
        .unwrap();
    h.hello_in(link, &late).expect("in place of an idle peer");
    assert_eq!(closes(&h.take()), [(idle, GoodbyeReason::TooManyPeers)]);
}

#[test]
fn a_routed_hello_from_a_full_prefix_closes_one_idle_peer_of_that_prefix_and_no_other() {
    let config = NodeConfig {
        max_links_per_prefix: 1,
        ..NodeConfig::default()
    };
    let evict_after = config.evict_idle_after.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let elsewhere = h.connect_in(&Remote::fetcher(1, "62.7.0.1:5000", 8));
    let same = h.connect_in(&Remote::fetcher(2, "81.2.3.1:5000", 8));
    h.advance(evict_after + 1_000);
    h.take();
    // The endpoint has no room and the /24 is at its limit: the /24's idle
    // peer gives up both its place here and its place at the gate.
    let newcomer = Remote::fetcher(3, "81.2.3.2:5000", 8);
    let link = h
        .core
        .handle_routed(newcomer.addr, false, h.now + ROUTED_WAIT, h.now)
        .unwrap();
    h.hello_in(link, &newcomer)
        .expect("in place of its own idle peer");
    assert_eq!(closes(&h.take()), [(same, GoodbyeReason::TooManyPeers)]);
    assert!(h.is_connected(elsewhere));
}

#[test]
fn a_swarm_over_its_part_of_a_shared_endpoint_sheds_only_an_idle_incoming_peer() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let first = h.connect_in(&Remote::fetcher(1, "62.1.1.1:5000", 8));
    h.advance(1_000);
    let second = h.connect_in(&Remote::fetcher(2, "62.2.2.2:5000", 8));
    h.take();
    assert!(!h.core.shed_idle_incoming(0, h.now), "not idle long enough");
    assert!(closes(&h.take()).is_empty());
    h.advance(NodeConfig::default().evict_idle_after.as_millis() as u64 + 1_000);
    // Two incoming peers, a part of two: nothing to shed.
    assert!(!h.core.shed_idle_incoming(2, h.now));
    // A part of one: the one idle longest goes, and asked again (its
    // Goodbye not through yet), nothing more.
    assert!(h.core.shed_idle_incoming(1, h.now));
    assert_eq!(closes(&h.take()), [(first, GoodbyeReason::TooManyPeers)]);
    assert!(!h.core.shed_idle_incoming(1, h.now));
    assert!(h.is_connected(second));
}

#[test]
fn unvalidated_sources_get_a_retry_once_handshakes_are_busy() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let quiet: Vec<SocketAddr> = (1..=4u8).map(|n| sa(&format!("62.{n}.0.1:4433"))).collect();
    let first = knock(&mut h, &quiet, false);
    assert_eq!(first.accepted.len(), 4, "not busy yet: no Retry");
    let busy = knock(&mut h, &[sa("62.9.0.1:4433")], false);
    assert_eq!(busy.retried, 1);
    assert!(busy.accepted.is_empty(), "a spoofed source holds nothing");
    // A validated source is accepted while there is room...
    let more: Vec<SocketAddr> = (10..=21u8)
        .map(|n| sa(&format!("62.{n}.0.1:4433")))
        .collect();
    let validated = knock(&mut h, &more, true);
    assert_eq!(validated.accepted.len(), 12);
    // ...and refused once every handshake slot (16) is taken.
    let full = knock(&mut h, &[sa("62.30.0.1:4433")], true);
    assert_eq!(full.refused, 1);
}

#[test]
fn links_per_prefix_are_capped_at_the_hello_and_the_refused_hear_of_other_peers() {
    let config = NodeConfig::default();
    let cap = config.max_links_per_prefix;
    let evict_after = config.evict_idle_after.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, config);
    // Two serving peers elsewhere, and one /24 that fills its share.
    let others = [
        h.connect_in(&Remote::seeder(150, "62.7.0.1:4433", 8).lacking_last()),
        h.connect_in(&Remote::seeder(151, "62.8.0.1:4433", 8).lacking_last()),
    ];
    for n in 0..cap {
        let remote = Remote::fetcher(n as u8 + 1, &format!("81.2.3.{}:5000", n + 1), 8);
        h.connect_in(&remote);
    }
    assert_eq!(h.core.connected_count(), cap + others.len());
    // The next one from that /24 gets as far as its Hello (a handshake
    // slot of its prefix), and is refused there with the serving peers.
    let same = Remote::fetcher(100, "81.2.3.200:5000", 8);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(same.addr, true, h.now) else {
        panic!("a handshake slot of its prefix is free");
    };
    let rejection = h.hello_in(link, &same).expect_err("its /24 is full");
    assert_eq!(rejection.reason, HelloRejectReason::TooManyPeers);
    let mut named: Vec<SocketAddr> = rejection.peers.iter().map(|entry| entry.addr).collect();
    named.sort();
    assert_eq!(named, [sa("62.7.0.1:4433"), sa("62.8.0.1:4433")]);
    // Another network is not affected.
    let other = Remote::fetcher(101, "81.2.4.200:5000", 8);
    h.connect_in(&other);
    // Once a peer of the full /24 has been idle long enough, a newcomer
    // from it takes its place; never one of another network's, idle too.
    h.take();
    h.advance(evict_after);
    let later = Remote::fetcher(102, "81.2.3.201:5000", 8);
    h.connect_in(&later);
    let evicted = closes(&h.take());
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    let (link, reason) = evicted[0];
    assert_eq!(reason, GoodbyeReason::TooManyPeers);
    assert!(!others.contains(&link), "a peer of another network went");
    assert_eq!(h.core.connected_count(), cap + others.len() + 1);
}

/// A seeder with room for one peer, taken by a serving peer at `at`.
fn full_seeder(at: &str) -> Harness {
    let config = NodeConfig {
        max_peers: 1,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Seeder, 8, config);
    h.connect_in(&Remote::seeder(150, at, 8).lacking_last());
    h
}

/// `remote` dials the full node and is refused at its Hello; the
/// addresses the refusal names.
fn refused(h: &mut Harness, remote: &Remote) -> Vec<SocketAddr> {
    let Incoming::Accept { link, .. } = h.core.handle_incoming(remote.addr, true, h.now) else {
        panic!("accepted");
    };
    let rejection = h.hello_in(link, remote).expect_err("full");
    let end = LinkEnd::Refused {
        reason: rejection.reason,
        detail: rejection.detail,
    };
    h.core.handle_link_failed(link, end, h.now);
    rejection.peers.iter().map(|entry| entry.addr).collect()
}

#[test]
fn refusals_name_peers_only_while_their_budget_lasts() {
    let budget = 2 * NodeConfig::default().refusal_peers_per_second as usize;
    let mut h = full_seeder("62.7.0.1:4433");
    let mut named = Vec::new();
    for n in 0..budget + 4 {
        let remote = Remote::fetcher(n as u8 + 1, &format!("81.{n}.3.1:5000"), 8);
        named.push(refused(&mut h, &remote).len());
    }
    assert_eq!(named[..budget], vec![1; budget][..], "{named:?}");
    assert_eq!(named[budget..], [0; 4], "{named:?}");
    // The budget refills with time.
    h.advance(1_000);
    let late = Remote::fetcher(99, "81.99.3.1:5000", 8);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(late.addr, true, h.now) else {
        panic!("accepted");
    };
    assert_eq!(h.hello_in(link, &late).expect_err("full").peers.len(), 1);
}

#[test]
fn a_fast_uplink_names_peers_in_more_refusals_and_a_slow_one_in_no_fewer() {
    // Refusals that name a peer within a second, after a first one that
    // takes the rate, on a full node whose uplink carried `rate` bytes a
    // second in one upload (none: not measured).
    let named_in_a_second = |rate: Option<u64>| {
        let config = NodeConfig {
            max_peers: 1,
            ..NodeConfig::default()
        };
        let mut h = Harness::new(Kind::Seeder, 8, config);
        let peer = h.connect_in(&Remote::seeder(150, "62.7.0.1:4433", 8).lacking_last());
        let mut at = 0;
        if let Some(bytes) = rate {
            h.core.handle_message(
                peer,
                Message::Request {
                    chunk: ChunkIndex(7),
                },
                h.now,
            );
            assert_eq!(uploads(&h.take()), [(peer, 7)]);
            at += 1_000;
            h.advance(at);
            let sent = super::super::UploadOutcome::Sent { bytes };
            h.core.handle_upload_done(peer, ChunkIndex(7), sent, h.now);
        }
        let first = Remote::fetcher(1, "81.1.3.1:5000", 8);
        assert_eq!(refused(&mut h, &first).len(), 1);
        h.advance(at + 1_000);
        (2..=60u8)
            .filter(|&n| {
                let remote = Remote::fetcher(n, &format!("81.{n}.3.1:5000"), 8);
                refused(&mut h, &remote).len() == 1
            })
            .count()
    };
    // The fixed rate: 16 at once, 8 a second; what is left of the burst.
    assert_eq!(named_in_a_second(None), 16);
    // 2 Mbit: 2 % of it is less than the fixed rate, which stays.
    assert_eq!(named_in_a_second(Some(250_000)), 16);
    // 100 Mbit: 64 a second, so every one of the 59.
    assert_eq!(named_in_a_second(Some(12_500_000)), 59);
}

#[test]
fn latecomers_turned_away_are_named_to_each_other_newest_first() {
    let mut h = full_seeder("62.7.0.1:4433");
    // Serving latecomers, each seen at the port it dialed from and
    // listening at another (its Hello's port is the one named).
    let late = |n: u8| {
        let mut remote = Remote::seeder(n, &format!("81.{n}.0.1:5000"), 8).lacking_last();
        remote.listen = Some(sa(&format!("10.9.9.9:{}", 6000 + u16::from(n))));
        remote
    };
    assert_eq!(refused(&mut h, &late(1)), [sa("62.7.0.1:4433")]);
    assert_eq!(
        refused(&mut h, &late(2)),
        [sa("81.1.0.1:6001"), sa("62.7.0.1:4433")]
    );
    // A plain fetcher hears of them, newest first, and is not named
    // itself: nobody can dial it.
    let plain = Remote::fetcher(3, "81.3.0.1:5000", 8);
    assert_eq!(
        refused(&mut h, &plain),
        [
            sa("81.2.0.1:6002"),
            sa("81.1.0.1:6001"),
            sa("62.7.0.1:4433")
        ]
    );
    // One entry per address: the same host dialing again under another id
    // replaces its entry, and is never named to itself.
    let mut again = late(4);
    again.addr = sa("81.1.0.1:5001");
    assert_eq!(
        refused(&mut h, &again),
        [sa("81.2.0.1:6002"), sa("62.7.0.1:4433")]
    );
    assert_eq!(
        refused(&mut h, &late(5)),
        [
            sa("81.1.0.1:6004"),
            sa("81.2.0.1:6002"),
            sa("62.7.0.1:4433")
        ]
    );
    // One behind a NAT router (LAN addresses, seen elsewhere) is not
    // remembered: nobody could dial it at the address it is seen at.
    let mut natted = late(6);
    natted.lan = vec![sa("192.168.1.20:6006")];
    natted.listen = Some(sa("192.168.1.20:6006"));
    refused(&mut h, &natted);
    assert_eq!(
        refused(&mut h, &late(7)),
        [
            sa("81.5.0.1:6005"),
            sa("81.1.0.1:6004"),
            sa("81.2.0.1:6002"),
            sa("62.7.0.1:4433")
        ]
    );
}

#[test]
fn a_refusal_names_connected_peers_at_the_dialers_own_address_and_one_latecomer_per_ipv6_64() {
    // Everyone on one machine: a connected peer at the dialer's own IP is
    // still named (peer exchange names it too).
    let mut h = full_seeder("127.0.0.1:4433");
    let local = Remote::fetcher(1, "127.0.0.1:5000", 8);
    assert_eq!(refused(&mut h, &local), [sa("127.0.0.1:4433")]);
    // Two latecomers from one IPv6 /64 (one host can hold all of it):
    // only the newer is remembered.
    let mut h = full_seeder("[2a01:4f8:9::1]:4433");
    for (n, addr) in [(2, "[2a01:4f8:1::2]:6002"), (3, "[2a01:4f8:1::3]:6003")] {
        refused(&mut h, &Remote::seeder(n, addr, 8).lacking_last());
    }
    let named = refused(&mut h, &Remote::fetcher(4, "[2a01:4f8:2::4]:5000", 8));
    assert_eq!(
        named,
        [sa("[2a01:4f8:1::3]:6003"), sa("[2a01:4f8:9::1]:4433")]
    );
}

#[test]
fn a_refused_dialer_learns_the_named_peers_and_dials_them() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let full = Remote::seeder(1, "62.1.0.1:4433", 8);
    h.core.add_peer(
        KnownPeer {
            id: Some(full.id),
            addrs: vec![full.addr],
            source: Source::Offer,
        },
        h.now,
    );
    let link = dials(&h.take())[0].link;
    let named = |n: u8, addr: &str| PeerEntry {
        id: Remote::seeder(n, addr, 8).id,
        addr: sa(addr),
        flags: Default::default(),
    };
    let rejection = crate::node::Rejection {
        reason: HelloRejectReason::TooManyPeers,
        detail: "serving the maximum of 32 peers".into(),
        peers: vec![
            named(2, "62.2.0.1:4433"),
            // Not reachable from where the refuser is: dropped.
            named(3, "127.0.0.1:4433"),
            // Ourselves: dropped.
            PeerEntry {
                id: h.core.local_id(),
                addr: sa("62.4.0.1:4433"),
                flags: Default::default(),
            },
        ],
    };
    h.core.handle_hello_rejected(link, rejection, h.now);
    let dialed: Vec<SocketAddr> = dials(&h.take()).iter().map(|dial| dial.addr).collect();
    assert_eq!(dialed, [sa("62.2.0.1:4433")]);
    let reports = h.take_reports();
    assert!(
        reports
            .iter()
            .any(|r| matches!(r, NodeReport::Redialing { addr, .. } if *addr == full.addr)),
        "the refuser waits for its back-off: {reports:?}"
    );
}

#[test]
fn ipv6_limits_count_by_slash_64_and_mapped_ipv4_by_its_slash_24() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let one_64: Vec<SocketAddr> = (1..=4u16)
        .map(|n| sa(&format!("[2a01:4f8:1:2::{n:x}]:4433")))
        .collect();
    assert_eq!(knock(&mut h, &one_64, true).accepted.len(), 4);
    let same_64 = knock(&mut h, &[sa("[2a01:4f8:1:2:ffff:ffff:ffff:1]:4433")], true);
    assert_eq!(same_64.refused, 1, "another address of the same /64");
    let next_64 = knock(&mut h, &[sa("[2a01:4f8:1:3::1]:4433")], true);
    assert_eq!(next_64.accepted.len(), 1);
    // An IPv4 address written as IPv6 counts with its /24.
    assert_eq!(
        knock(&mut h, &from_slash_24("81.2.3", 4), true)
            .accepted
            .len(),
        4
    );
    let mapped = knock(&mut h, &[sa("[::ffff:81.2.3.99]:4433")], true);
    assert_eq!(mapped.refused, 1);
}

#[test]
fn a_handshake_ends_at_its_deadline_with_an_abort_and_a_report() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    h.advance(1_000);
    let remote = sa("62.1.1.1:4433");
    let Incoming::Accept { link, deadline } = h.core.handle_incoming(remote, true, h.now) else {
        panic!("accepted");
    };
    assert_eq!(deadline, h.at(11_000), "TLS and Hello share one deadline");
    assert_eq!(h.core.poll_timeout(h.now), Some(deadline));
    h.advance(10_999);
    assert!(h.take().is_empty());
    h.advance(11_000);
    assert_eq!(h.take(), [Action::Abort { link }]);
    let reports = h.take_reports();
    let refused: Vec<&NodeReport> = reports
        .iter()
        .filter(|report| matches!(report, NodeReport::Refused { .. }))
        .collect();
    assert!(
        matches!(refused.as_slice(), [NodeReport::Refused { addr, reason: LinkEnd::TimedOut }] if *addr == remote),
        "{reports:?}"
    );
    // A Hello after the deadline is turned away; nothing is pending.
    let theirs = testing::hello(&h.swarm, false, None);
    assert!(
        h.core
            .handle_hello(link, testing::peer_id(1), &theirs, h.now)
            .is_err()
    );
    assert_eq!(h.core.poll_timeout(h.now), None);
}

#[test]
fn a_banned_peer_is_refused_at_its_hello() {
    let mut h = Harness::new(Kind::ServingFetch, 8, NodeConfig::default());
    let liar = Remote::seeder(1, "62.1.1.1:4433", 8);
    let link = h.connect_in(&liar);
    let chunk = requests_to(&h.take(), link)[0];
    assert_eq!(
        h.core
            .handle_piece_header(link, ChunkIndex(chunk), 0, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    h.core.handle_piece_arrived(link, ChunkIndex(chunk), h.now);
    h.core.handle_verified(
        link,
        ChunkIndex(chunk),
        VerifyOutcome::Bad(minimodel_verifier::chunk::ChunkError::Proof(
            minimodel_verifier::merkle::ProofError::RootMismatch { index: 0 },
        )),
        h.now,
    );
    assert_eq!(closes(&h.take()), [(link, GoodbyeReason::BadData)]);
    h.advance(1_000);
    let Incoming::Accept { link: again, .. } = h.core.handle_incoming(liar.addr, true, h.now)
    else {
        panic!("a connection attempt is accepted before its Hello names the peer");
    };
    let refusal = h.hello_in(again, &liar).expect_err("banned");
    assert_eq!(refusal.reason, HelloRejectReason::Banned);
    // An offer naming it is ignored too.
    h.core.add_peer(
        KnownPeer {
            id: Some(liar.id),
            addrs: vec![liar.addr],
            source: Source::Offer,
        },
        h.now,
    );
    assert!(dials(&h.take()).is_empty());
}

#[test]
fn a_full_node_refuses_new_peers_and_admitted_handshakes_hold_their_slot() {
    let config = NodeConfig {
        max_peers: 2,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Seeder, 8, config);
    h.connect_in(&Remote::fetcher(1, "62.1.1.1:5000", 8));
    // The second one is admitted at its Hello but not up yet.
    let second = Remote::fetcher(2, "62.2.2.2:5000", 8);
    let Incoming::Accept { link: pending, .. } = h.core.handle_incoming(second.addr, true, h.now)
    else {
        panic!("accepted");
    };
    let theirs = second.side(&h.swarm);
    h.core
        .handle_hello(pending, second.id, &theirs.hello, h.now)
        .expect("a free slot");
    let third = Remote::fetcher(3, "62.3.3.3:5000", 8);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(third.addr, true, h.now) else {
        panic!("accepted");
    };
    let refusal = h.hello_in(link, &third).expect_err("full");
    assert_eq!(refusal.reason, HelloRejectReason::TooManyPeers);
    // A handshake that fails gives its slot back.
    h.core
        .handle_link_failed(pending, LinkEnd::ClosedByPeer, h.now);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(third.addr, true, h.now) else {
        panic!("accepted");
    };
    h.hello_in(link, &third).expect("the slot is free again");
}

#[test]
fn a_restarted_peer_replaces_its_old_link_even_when_full() {
    let config = NodeConfig {
        max_peers: 1,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let peer = Remote::fetcher(1, "62.1.1.1:5000", 8);
    let old = h.connect_in(&peer);
    h.take_reports();
    h.advance(2_000);
    // Killed and started again before its old connection timed out.
    let restarted = Remote {
        addr: sa("62.1.1.1:5001"),
        ..peer
    };
    let new = h.connect_in(&restarted);
    assert_ne!(old, new);
    assert_eq!(closes(&h.take()), [(old, GoodbyeReason::Done)]);
    assert!(h.is_connected(new) && !h.is_connected(old));
    assert_eq!(h.core.connected_count(), 1);
    let replaced = h.take_reports().into_iter().any(|report| {
        matches!(
            report,
            NodeReport::PeerDisconnected {
                reason: Departure::Replaced,
                blame: Blame::Local,
                ..
            }
        )
    });
    assert!(replaced);
}

#[test]
fn an_idle_peer_is_evicted_for_a_new_one_and_a_busy_one_is_not() {
    let config = NodeConfig {
        max_peers: 2,
        ..NodeConfig::default()
    };
    let evict_after = config.evict_idle_after.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let idle = h.connect_in(&Remote::fetcher(1, "62.1.1.1:5000", 8));
    let busy = h.connect_in(&Remote::fetcher(2, "62.2.2.2:5000", 8));
    // The busy one asks for a chunk; its upload never ends.
    h.core.handle_message(
        busy,
        Message::Request {
            chunk: ChunkIndex(0),
        },
        h.now,
    );
    assert_eq!(uploads(&h.take()), [(busy, 0)]);
    let newcomer = |n: u8| Remote::fetcher(n, &format!("62.{n}.{n}.{n}:5000"), 8);
    // Not idle for long enough yet.
    h.advance(evict_after - 1);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(newcomer(3).addr, true, h.now)
    else {
        panic!("accepted");
    };
    assert!(h.hello_in(link, &newcomer(3)).is_err());
    // Now the idle one makes room.
    h.advance(evict_after);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(newcomer(4).addr, true, h.now)
    else {
        panic!("accepted");
    };
    h.hello_in(link, &newcomer(4)).expect("room was made");
    assert_eq!(closes(&h.take()), [(idle, GoodbyeReason::TooManyPeers)]);
    assert!(h.is_connected(busy));
    let evicted = h.take_reports().into_iter().any(|report| {
        matches!(
            report,
            NodeReport::PeerDisconnected {
                reason: Departure::Evicted,
                ..
            }
        )
    });
    assert!(evicted);
    // The busy one has been quiet for longer than the limit but is
    // uploading: it stays, and so does the newcomer (idle only half the
    // limit).
    h.advance(evict_after + evict_after / 2);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(newcomer(5).addr, true, h.now)
    else {
        panic!("accepted");
    };
    assert!(h.hello_in(link, &newcomer(5)).is_err());
    assert!(h.is_connected(busy));
    assert!(closes(&h.take()).is_empty());
}

#[test]
fn a_peer_turned_away_before_finds_room_in_place_of_a_link_idle_a_few_seconds() {
    let config = NodeConfig {
        max_peers: 2,
        ..NodeConfig::default()
    };
    let soon = config.evict_for_refused_after.as_millis() as u64;
    assert!(soon < config.evict_idle_after.as_millis() as u64);
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let older = h.connect_in(&Remote::fetcher(1, "62.1.1.1:5000", 8));
    h.advance(1_000);
    let newer = h.connect_in(&Remote::fetcher(2, "62.2.2.2:5000", 8));
    let newcomer = |n: u8| Remote::fetcher(n, &format!("62.{n}.{n}.{n}:5000"), 8);
    let hello = |h: &mut Harness, remote: &Remote| {
        let Incoming::Accept { link, .. } = h.core.handle_incoming(remote.addr, true, h.now) else {
            panic!("accepted");
        };
        let result = h.hello_in(link, remote);
        if let Err(rejection) = &result {
            let end = LinkEnd::Refused {
                reason: rejection.reason,
                detail: rejection.detail.clone(),
            };
            h.core.handle_link_failed(link, end, h.now);
        }
        result
    };
    // Turned away, then back while the links have been idle for less than
    // the short limit: turned away again.
    assert!(hello(&mut h, &newcomer(3)).is_err());
    h.advance(soon - 1);
    assert!(hello(&mut h, &newcomer(3)).is_err());
    h.take();
    // Back once the older link has been idle that long: it makes room.
    h.advance(soon);
    hello(&mut h, &newcomer(3)).expect("in place of the link idle longest");
    assert_eq!(closes(&h.take()), [(older, GoodbyeReason::TooManyPeers)]);
    assert!(h.is_connected(newer));
    // A peer turned away for the first time waits for the long limit,
    // though the newer link has now been idle three times the short one.
    h.advance(1_000 + 3 * soon);
    assert!(hello(&mut h, &newcomer(4)).is_err());
    assert!(h.is_connected(newer));
    assert!(closes(&h.take()).is_empty());
}

#[test]
fn two_addresses_holding_every_slot_with_idle_links_lose_them_to_honest_peers() {
    let config = NodeConfig::default();
    let (max_peers, per_prefix) = (config.max_peers, config.max_links_per_prefix);
    let evict_after = config.evict_idle_after.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, config);
    // Two addresses, each with as many connections as its prefix may hold,
    // fill every slot and never ask for anything.
    let mut attackers = Vec::new();
    for n in 0..max_peers {
        let host = if n < per_prefix {
            "81.2.3.4"
        } else {
            "91.5.6.7"
        };
        let remote = Remote::fetcher(n as u8 + 1, &format!("{host}:{}", 10_000 + n), 8);
        attackers.push(h.connect_in(&remote));
    }
    assert_eq!(h.core.connected_count(), max_peers);
    let honest = |n: u8| Remote::fetcher(100 + n, &format!("62.{n}.0.1:5000"), 8);
    // Early on, an honest peer is refused: nobody is idle long enough.
    h.advance(1_000);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(honest(0).addr, true, h.now) else {
        panic!("accepted");
    };
    assert!(h.hello_in(link, &honest(0)).is_err());
    // Once they have been idle for the limit, each honest peer takes a
    // slot of theirs.
    h.advance(1_000 + evict_after);
    let mut admitted = Vec::new();
    for n in 1..=4 {
        admitted.push(h.connect_in(&honest(n)));
    }
    let evicted = closes(&h.take());
    assert_eq!(evicted.len(), 4);
    assert!(
        evicted.iter().all(
            |(link, reason)| attackers.contains(link) && *reason == GoodbyeReason::TooManyPeers
        )
    );
    // The honest peers use their links; new connections from the
    // attackers' addresses push out only their own idle links.
    for step in 1..=10u64 {
        h.advance(1_000 + evict_after + step * 1_000);
        for (i, &link) in admitted.iter().enumerate() {
            h.core.handle_message(
                link,
                Message::Request {
                    chunk: ChunkIndex((step as u32 + i as u32) % 8),
                },
                h.now,
            );
        }
        for (link, chunk) in uploads(&h.take()) {
            h.core.handle_upload_done(
                link,
                ChunkIndex(chunk),
                super::super::UploadOutcome::Sent {
                    bytes: u64::from(CHUNK),
                },
                h.now,
            );
        }
        let attacker = Remote::fetcher(60 + step as u8, &format!("81.2.3.4:{}", 20_000 + step), 8);
        if let Incoming::Accept { link, .. } = h.core.handle_incoming(attacker.addr, true, h.now) {
            let _ = h.hello_in(link, &attacker);
        }
        for (link, _) in closes(&h.take()) {
            assert!(!admitted.contains(&link), "an honest peer was evicted");
        }
    }
    assert!(admitted.iter().all(|link| h.is_connected(*link)));
}

/// A manifest query on an accepted connection, and the report it left.
fn ask_manifest(
    h: &mut Harness,
    remote: &Remote,
    digest: [u8; 32],
) -> (
    Result<std::sync::Arc<[u8]>, super::super::Rejection>,
    Vec<NodeReport>,
) {
    let Incoming::Accept { link, .. } = h.core.handle_incoming(remote.addr, true, h.now) else {
        panic!("{} was not accepted", remote.addr);
    };
    // As the driver asks: the dialer's first message.
    let mut ask = || match h
        .core
        .handle_first(link, remote.id, &First::Manifest(digest), h.now)
    {
        Answer::Serve(bytes) => Ok(bytes),
        Answer::Refuse(rejection) => Err(rejection),
        other => panic!("a manifest query answered with {other:?}"),
    };
    let answer = ask();
    // One answer per connection: the link is gone either way, and a second
    // question on it is too late.
    let again = ask().expect_err("a second question on one connection");
    assert_eq!(again.detail, "too late");
    assert!(!h.is_connected(link));
    (answer, h.take_reports())
}

fn query_reports(reports: &[NodeReport]) -> Vec<(PeerId, Option<HelloRejectReason>)> {
    reports
        .iter()
        .filter_map(|report| match report {
            NodeReport::ManifestQuery { peer, refused, .. } => Some((*peer, *refused)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_manifest_query_gets_the_manifest_of_the_swarm_served_and_nothing_else() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let holder = Remote::fetcher(1, "62.1.1.1:4433", 8);
    let (answer, reports) = ask_manifest(&mut h, &holder, manifest_sha256());
    assert_eq!(answer.as_deref(), Ok(MANIFEST));
    assert_eq!(query_reports(&reports), [(holder.id, None)]);
    // Another digest: refused with the reason the spec names, no peers.
    let mut other = manifest_sha256();
    other[31] ^= 1;
    let (answer, reports) = ask_manifest(&mut h, &holder, other);
    let refusal = answer.expect_err("another manifest");
    assert_eq!(refusal.reason, HelloRejectReason::UnknownManifest);
    assert!(refusal.peers.is_empty());
    assert_eq!(
        query_reports(&reports),
        [(holder.id, Some(HelloRejectReason::UnknownManifest))]
    );
    // A query takes no peer slot: a swarm session still gets in.
    let link = h.connect_in(&holder);
    assert!(h.is_connected(link));
}

#[test]
fn a_chunk_list_query_is_answered_only_with_the_whole_list_of_this_manifest() {
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let holder = Remote::fetcher(1, "62.1.1.1:4433", 8);
    let ask = |h: &mut Harness, digest: [u8; 32]| {
        let Incoming::Accept { link, .. } = h.core.handle_incoming(holder.addr, true, h.now) else {
            panic!("{} was not accepted", holder.addr);
        };
        let answer = h
            .core
            .handle_first(link, holder.id, &First::ChunkList(digest), h.now);
        assert!(!h.is_connected(link), "one answer per connection");
        let reports: Vec<_> = h
            .take_reports()
            .into_iter()
            .filter_map(|report| match report {
                NodeReport::ManifestQuery {
                    chunk_list,
                    refused,
                    ..
                } => Some((chunk_list, refused)),
                _ => None,
            })
            .collect();
        (answer, reports)
    };
    // Serving, but the list is not whole here yet.
    let (answer, reports) = ask(&mut h, manifest_sha256());
    let Answer::Refuse(refusal) = answer else {
        panic!("no list to give: {answer:?}");
    };
    assert_eq!(refusal.reason, HelloRejectReason::NoChunkList);
    assert_eq!(reports, [(true, Some(HelloRejectReason::NoChunkList))]);
    // A list of another length is not taken.
    h.core
        .set_chunk_list(std::sync::Arc::from(vec![[1u8; 32]; 7]));
    assert!(matches!(
        ask(&mut h, manifest_sha256()).0,
        Answer::Refuse(_)
    ));
    // The whole list: served, for this manifest only.
    let list: std::sync::Arc<[[u8; 32]]> = (0..8u8).map(|i| [i; 32]).collect();
    h.core.set_chunk_list(std::sync::Arc::clone(&list));
    let (answer, reports) = ask(&mut h, manifest_sha256());
    assert_eq!(
        answer,
        Answer::ServeChunkList {
            hashes: list,
            lengths: None
        }
    );
    assert_eq!(reports, [(true, None)]);
    let mut other = manifest_sha256();
    other[0] ^= 1;
    let Answer::Refuse(refusal) = ask(&mut h, other).0 else {
        panic!("another manifest's list");
    };
    assert_eq!(refusal.reason, HelloRejectReason::UnknownManifest);
}

#[test]
fn a_listed_swarms_chunk_list_is_answered_with_each_chunks_length() {
    // Chunks cut at parts (slm-parts-merkle-v0): 8 chunks of these
    // lengths, at most the chunk size each.
    let lengths = [256u32, 4480, 512, 1 << 20, 1 << 20, 77, 1 << 20, 9];
    let bytes: u64 = lengths.iter().map(|len| u64::from(*len)).sum();
    let params = SwarmParams::listed(bytes, 1 << 20, lengths).unwrap();
    let swarm = SwarmIdentity::new("test-model", [7; 32], params).unwrap();
    let mut h = Harness::with_edited_start(
        Kind::Seeder,
        8,
        NodeConfig::default(),
        HaveBitfield::full(8),
        false,
        Vec::new(),
        |start| start.swarm = swarm,
    );
    let list: std::sync::Arc<[[u8; 32]]> = (0..8u8).map(|i| [i; 32]).collect();
    h.core.set_chunk_list(std::sync::Arc::clone(&list));
    let holder = Remote::fetcher(1, "62.1.1.1:4433", 8);
    let Incoming::Accept { link, .. } = h.core.handle_incoming(holder.addr, true, h.now) else {
        panic!("{} was not accepted", holder.addr);
    };
    let answer = h
        .core
        .handle_first(link, holder.id, &First::ChunkList(manifest_sha256()), h.now);
    assert_eq!(
        answer,
        Answer::ServeChunkList {
            hashes: list,
            lengths: Some(std::sync::Arc::from(lengths))
        }
    );
}

#[test]
fn chunk_list_answers_are_bounded_at_once_and_in_time() {
    // 8 chunks: 256 bytes of list, 8 s at 32 bytes a second.
    let config = NodeConfig {
        chunk_list_answer_rate: 32,
        ..NodeConfig::default()
    };
    let wait = config.goodbye_wait.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, config);
    h.core.set_chunk_list(
        (0..8u8)
            .map(|i| [i; 32])
            .collect::<std::sync::Arc<[[u8; 32]]>>(),
    );
    let first = First::ChunkList(manifest_sha256());
    let ask = |h: &mut Harness, remote: &Remote| {
        let Incoming::Accept { link, .. } = h.core.handle_incoming(remote.addr, true, h.now) else {
            panic!("{} was not accepted", remote.addr);
        };
        (link, h.core.handle_first(link, remote.id, &first, h.now))
    };
    let served = |answer: &Answer| matches!(answer, Answer::ServeChunkList { .. });
    // Two to one /24, the third refused for now.
    let (a, answer) = ask(&mut h, &Remote::fetcher(1, "62.1.1.1:4433", 8));
    assert!(served(&answer), "{answer:?}");
    let (_, answer) = ask(&mut h, &Remote::fetcher(2, "62.1.1.2:4433", 8));
    assert!(served(&answer), "{answer:?}");
    let (_, answer) = ask(&mut h, &Remote::fetcher(3, "62.1.1.3:4433", 8));
    let Answer::Refuse(refusal) = answer else {
        panic!("a third answer to one /24: {answer:?}");
    };
    assert_eq!(refusal.reason, HelloRejectReason::TooManyPeers);
    // Four in all, from anywhere.
    let (_, answer) = ask(&mut h, &Remote::fetcher(4, "62.2.2.2:4433", 8));
    assert!(served(&answer), "{answer:?}");
    let (_, answer) = ask(&mut h, &Remote::fetcher(5, "62.3.3.3:4433", 8));
    assert!(served(&answer), "{answer:?}");
    let (_, answer) = ask(&mut h, &Remote::fetcher(6, "62.4.4.4:4433", 8));
    assert!(matches!(answer, Answer::Refuse(_)), "a fifth: {answer:?}");
    // One that got its answer frees its place.
    h.core.handle_closed(a, LinkEnd::ClosedByPeer, h.now);
    let (_, answer) = ask(&mut h, &Remote::fetcher(7, "62.1.1.7:4433", 8));
    assert!(served(&answer), "{answer:?}");
    // The refused go within goodbye_wait; the answers are given that and
    // 8 s for their 256 bytes, then aborted.
    h.take();
    h.advance(wait);
    assert_eq!(aborts(&h.take()).len(), 2, "the two refused");
    h.advance(wait + 8_000 - 1);
    assert!(aborts(&h.take()).is_empty(), "not before their time");
    h.advance(wait + 8_001);
    assert_eq!(aborts(&h.take()).len(), 4);
}

#[test]
fn an_answered_manifest_query_whose_answer_does_not_get_out_is_aborted_in_goodbye_wait() {
    let wait = NodeConfig::default().goodbye_wait.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, NodeConfig::default());
    let first = First::Manifest(manifest_sha256());
    let answer = |h: &mut Harness, remote: &Remote| {
        let Incoming::Accept { link, .. } = h.core.handle_incoming(remote.addr, true, h.now) else {
            panic!("{} was not accepted", remote.addr);
        };
        let served = h.core.handle_first(link, remote.id, &first, h.now);
        assert!(matches!(served, Answer::Serve(_)), "{served:?}");
        link
    };
    // A peer that never reads the answer: its connection goes at the
    // deadline, not when the transport gives up.
    let stalled = answer(&mut h, &Remote::fetcher(1, "62.1.1.1:4433", 8));
    h.take();
    h.advance(wait - 1);
    assert!(aborts(&h.take()).is_empty(), "not before goodbye_wait");
    h.advance(wait);
    assert_eq!(aborts(&h.take()), [stalled]);
    // One whose answer went out is closed, and nothing is left to abort.
    let read = answer(&mut h, &Remote::fetcher(2, "62.2.2.2:4433", 8));
    h.core.handle_closed(read, LinkEnd::ClosedByPeer, h.now);
    h.advance(3 * wait);
    assert!(aborts(&h.take()).is_empty());
}

#[test]
fn a_banned_peer_gets_no_manifest() {
    let mut h = Harness::new(Kind::ServingFetch, 8, NodeConfig::default());
    let liar = Remote::seeder(2, "62.1.1.2:4433", 8);
    let link = h.connect_in(&liar);
    let chunk = requests_to(&h.take(), link)[0];
    assert_eq!(
        h.core
            .handle_piece_header(link, ChunkIndex(chunk), 0, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    h.core.handle_piece_arrived(link, ChunkIndex(chunk), h.now);
    h.core.handle_verified(
        link,
        ChunkIndex(chunk),
        VerifyOutcome::Bad(minimodel_verifier::chunk::ChunkError::Proof(
            minimodel_verifier::merkle::ProofError::RootMismatch { index: 0 },
        )),
        h.now,
    );
    h.advance(1_000);
    h.take();
    let (answer, reports) = ask_manifest(&mut h, &liar, manifest_sha256());
    assert_eq!(
        answer.expect_err("banned").reason,
        HelloRejectReason::Banned
    );
    assert_eq!(
        query_reports(&reports),
        [(liar.id, Some(HelloRejectReason::Banned))]
    );
}
