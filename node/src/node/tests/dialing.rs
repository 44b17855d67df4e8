//! Dialing: several addresses of one peer, back-off, redials of useful
//! peers, a restarted seeder, and giving up.

use super::*;
use crate::book::Source;
use crate::report::{Failure, LinkEnd, Problem, Tried};
use minimodel_wire::HelloRejectReason;

fn offer(id: PeerId, addrs: &[SocketAddr]) -> KnownPeer {
    KnownPeer {
        id: Some(id),
        addrs: addrs.to_vec(),
        source: Source::Offer,
    }
}

fn redialing(reports: &[NodeReport]) -> Vec<(SocketAddr, u32, u64)> {
    reports
        .iter()
        .filter_map(|report| match report {
            NodeReport::Redialing {
                addr,
                failures,
                in_ms,
            } => Some((*addr, *failures, *in_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_peers_named_at_the_start_are_dialed_at_once_one_entry_per_id() {
    let seeder = testing::peer_id(1);
    let named = |addr| minimodel_wire::PeerAddr {
        id: seeder,
        addr: sa(addr),
    };
    let swarm = testing::swarm(CHUNK, 8);
    let mut start = NodeStart::new(
        swarm,
        testing::peer_id(200),
        "t".into(),
        HaveBitfield::new(8),
    );
    start.download = true;
    start.peers = vec![named("62.1.1.1:4433"), named("62.1.1.2:4433")];
    let now = Instant::now();
    let mut core = NodeCore::new(NodeConfig::default(), start, now);
    core.handle_timeout(now);
    let actions: Vec<Action> = std::iter::from_fn(|| core.poll_action()).collect();
    let first: Vec<_> = dials(&actions).iter().map(|d| (d.addr, d.peer)).collect();
    // The second address waits its stagger behind the first.
    assert_eq!(first, [(sa("62.1.1.1:4433"), Some(seeder))]);
}

#[test]
fn addresses_of_one_peer_are_staggered_and_the_first_handshake_wins() {
    let config = NodeConfig::default();
    let stagger = config.dial_stagger.as_millis() as u64;
    let mut h = Harness::new(Kind::Fetch, 8, config);
    let addrs = [
        sa("62.1.1.1:4433"),
        sa("62.1.1.2:4433"),
        sa("[2a01:4f8::5]:4433"),
    ];
    let id = testing::peer_id(1);
    h.core.add_peer(offer(id, &addrs), h.now);
    let first = dials(&h.take());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].addr, addrs[0]);
    assert_eq!(first[0].deadline, h.at(10_000));
    h.advance(stagger - 1);
    assert!(dials(&h.take()).is_empty());
    h.advance(stagger);
    let second = dials(&h.take());
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].addr, addrs[1]);
    h.advance(2 * stagger);
    let third = dials(&h.take());
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].addr, addrs[2]);
    // The second address answers first: the other attempts are aborted.
    h.advance(2 * stagger + 100);
    let remote = Remote::seeder(1, "62.1.1.2:4433", 8);
    h.dial_up(second[0].link, &remote);
    let actions = h.take();
    let mut aborted = aborts(&actions);
    aborted.sort();
    assert_eq!(aborted, [first[0].link, third[0].link]);
    assert!(!requests_to(&actions, second[0].link).is_empty());
    // A handshake that completes afterwards on a losing attempt is dropped.
    let late = Remote::seeder(1, "[2a01:4f8::5]:4433", 8);
    h.dial_up(third[0].link, &late);
    assert_eq!(aborts(&h.take()), [third[0].link]);
    assert_eq!(h.core.connected_count(), 1);
    // (Within the first request timeout: a peer dropped for timeouts is
    // dialed again, `a_peer_dropped_for_timeouts_is_dialed_again`.)
    h.advance(10_000);
    assert!(dials(&h.take()).is_empty(), "connected: no more dials");
}

#[test]
fn a_dead_and_a_live_address_reach_the_peer() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let dead = sa("62.1.1.1:4433");
    let live = sa("62.1.1.2:4433");
    h.core
        .add_peer(offer(testing::peer_id(1), &[dead, live]), h.now);
    let first = dials(&h.take());
    assert_eq!(first[0].addr, dead);
    // The dead address fails fast: the next one is dialed at once, not
    // after the stagger.
    h.advance(40);
    h.core.handle_link_failed(
        first[0].link,
        LinkEnd::Lost("no route to host".into()),
        h.now,
    );
    let second = dials(&h.take());
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].addr, live);
    h.dial_up(second[0].link, &Remote::seeder(1, "62.1.1.2:4433", 8));
    assert!(!requests_to(&h.take(), second[0].link).is_empty());
    // The address that answered comes first from now on: the receipt,
    // the remembered peers and the next dial name it.
    let first_addr = |h: &Harness| {
        let book = &h.core.book;
        book.find_id(&testing::peer_id(1))
            .and_then(|entry| book.get(entry))
            .map(|entry| entry.addrs.clone())
    };
    assert_eq!(first_addr(&h), Some(vec![live, dead]));

    // The same when the dead address never answers at all.
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    h.core
        .add_peer(offer(testing::peer_id(1), &[dead, live]), h.now);
    let first = dials(&h.take());
    h.advance(250);
    let second = dials(&h.take());
    assert_eq!(second[0].addr, live);
    h.advance(300);
    h.dial_up(second[0].link, &Remote::seeder(1, "62.1.1.2:4433", 8));
    assert_eq!(aborts(&h.take()), [first[0].link]);
    assert_eq!(h.core.connected_count(), 1);
    assert_eq!(first_addr(&h), Some(vec![live, dead]));
    // Once it delivered, it is remembered at both, the live one first (the
    // other may be the one that answers from another network).
    h.core.remember_peers_from(Vec::new(), 1_800_000_000, h.now);
    h.take();
    h.deliver(second[0].link, 0);
    let list = h.core.peers_to_remember(1_800_000_000).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].addrs, [live, dead]);
}

#[test]
fn failed_dials_back_off_from_one_second_doubling_to_thirty_with_jitter() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let addr = sa("62.1.1.1:4433");
    h.core.add_peer(offer(testing::peer_id(1), &[addr]), h.now);
    let mut dial = dials(&h.take())[0];
    let mut waits = Vec::new();
    for (failures, base_s) in [1, 2, 4, 8, 16, 30, 30, 30].into_iter().enumerate() {
        let failed_at = h.elapsed(h.now);
        h.core
            .handle_link_failed(dial.link, LinkEnd::Lost("connection refused".into()), h.now);
        let [(at, count, in_ms)] = redialing(&h.take_reports())[..] else {
            panic!("one Redialing report after failure {}", failures + 1);
        };
        assert_eq!((at, count), (addr, failures as u32 + 1));
        let base = base_s * 1_000;
        assert!(
            in_ms * 5 >= base * 4 && in_ms * 5 <= base * 6,
            "after {} failures: {in_ms} ms, base {base} ms",
            failures + 1
        );
        waits.push(in_ms);
        h.advance(failed_at + in_ms - 1);
        assert!(dials(&h.take()).is_empty(), "not before the back-off");
        h.advance(failed_at + in_ms);
        let next = dials(&h.take());
        assert_eq!(next.len(), 1, "dialed again after {in_ms} ms");
        dial = next[0];
    }
    let exact = [1, 2, 4, 8, 16, 30, 30, 30].map(|s| s * 1_000);
    assert_ne!(waits, exact, "jittered");
}

/// Turned away for lack of room again and again (by refusals that name
/// nobody): a node linked to nobody asks again within about 4 s, one
/// linked to another peer backs off as from any failure; both count
/// every refusal.
#[test]
fn a_node_linked_to_nobody_turned_away_for_room_asks_again_within_seconds() {
    for linked in [false, true] {
        let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
        if linked {
            // One with nothing we need: nothing asked, nothing to time out.
            h.connect_out(&Remote::seeder(2, "62.2.2.2:4433", 8).with_chunks(&[]));
        }
        let full = sa("62.1.1.1:4433");
        h.core.add_peer(offer(testing::peer_id(1), &[full]), h.now);
        let mut dial = dials(&h.take())[0];
        h.take_reports();
        let bases = if linked {
            [1, 2, 4, 8, 16, 30, 30]
        } else {
            [1, 2, 4, 4, 4, 4, 4]
        };
        for (failures, base_s) in bases.into_iter().enumerate() {
            let failed_at = h.elapsed(h.now);
            let rejection = crate::node::Rejection {
                reason: HelloRejectReason::TooManyPeers,
                detail: "serving the maximum of 32 peers".into(),
                peers: Vec::new(),
            };
            h.core.handle_hello_rejected(dial.link, rejection, h.now);
            let [(at, count, in_ms)] = redialing(&h.take_reports())[..] else {
                panic!(
                    "linked {linked}: one Redialing report after refusal {}",
                    failures + 1
                );
            };
            // Every refusal counts (an address from a stranger still
            // retires); only the wait stays short.
            assert_eq!((at, count), (full, failures as u32 + 1));
            assert_eq!(h.core.connected_count(), usize::from(linked));
            let base = base_s * 1_000;
            assert!(
                in_ms * 5 >= base * 4 && in_ms * 5 <= base * 6,
                "linked {linked}, after {} refusals: {in_ms} ms, base {base} ms",
                failures + 1
            );
            h.advance(failed_at + in_ms);
            let next: Vec<_> = dials(&h.take())
                .into_iter()
                .filter(|d| d.addr == full)
                .collect();
            assert_eq!(next.len(), 1, "dialed again after {in_ms} ms");
            dial = next[0];
        }
    }
}

#[test]
fn a_peer_that_drops_with_chunks_we_need_is_redialed_and_one_without_is_not() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "62.1.1.1:4433", 8);
    let empty = Remote::seeder(2, "62.2.2.2:4433", 8).with_chunks(&[]);
    let s = h.connect_out(&seeder);
    let e = h.connect_out(&empty);
    h.take();
    h.take_reports();
    h.advance(1_000);
    h.core.handle_closed(e, LinkEnd::ClosedByPeer, h.now);
    assert!(redialing(&h.take_reports()).is_empty());
    h.core.handle_closed(s, LinkEnd::ClosedByPeer, h.now);
    let redials = redialing(&h.take_reports());
    assert_eq!(redials.len(), 1);
    assert_eq!(redials[0].0, seeder.addr);
    h.advance(60_000);
    let addrs: Vec<SocketAddr> = dials(&h.take()).iter().map(|dial| dial.addr).collect();
    assert!(addrs.contains(&seeder.addr));
    assert!(!addrs.contains(&empty.addr), "it had nothing we need");
}

/// The only seeder delivers a chunk and then nothing (a path that went
/// bad): its requests time out, the download drops it (too many timeouts),
/// and it is dialed again after a back-off rather than forgotten, since it
/// still has chunks we need.
#[test]
fn a_peer_dropped_for_timeouts_is_dialed_again() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "62.1.1.1:4433", 8);
    let link = h.connect_out(&seeder);
    let asked = requests_to(&h.take(), link);
    // One chunk arrives (its rate is known), then nothing: its requests
    // time out until it is dropped.
    h.advance(100);
    h.deliver(link, asked[0]);
    h.take();
    h.take_reports();
    let mut dropped = false;
    for _ in 0..200 {
        h.advance(h.elapsed(h.now) + 1_000);
        let reports = h.take_reports();
        if reports.iter().any(|report| {
            matches!(
                report,
                NodeReport::PeerDisconnected {
                    reason: crate::report::Departure::TooManyTimeouts,
                    ..
                }
            )
        }) {
            dropped = true;
            assert_eq!(redialing(&reports).len(), 1, "{reports:?}");
            break;
        }
    }
    assert!(
        dropped,
        "the seeder that delivers nothing is dropped: {:?}",
        h.take_reports()
    );
    let start = h.elapsed(h.now);
    let redial = loop {
        h.advance(h.elapsed(h.now) + 100);
        if let Some(dial) = dials(&h.take()).first().copied() {
            break dial;
        }
        assert!(
            h.elapsed(h.now) < start + 5_000,
            "dialed again within the back-off"
        );
    };
    assert_eq!(redial.addr, seeder.addr);
}

#[test]
fn a_restarted_seeder_is_picked_up_again() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let seeder = Remote::seeder(1, "62.1.1.1:4433", 8);
    let old = h.connect_out(&seeder);
    let asked = requests_to(&h.take(), old);
    h.deliver(old, asked[0]);
    h.deliver(old, asked[1]);
    h.take();
    // It is killed; while it is down, a dial is refused.
    h.advance(1_000);
    h.core.handle_closed(old, LinkEnd::ClosedByPeer, h.now);
    let mut back = None;
    for attempt in 0..3 {
        let start = h.elapsed(h.now);
        let dial = loop {
            h.advance(h.elapsed(h.now) + 100);
            if let Some(dial) = dials(&h.take()).first().copied() {
                break dial;
            }
            assert!(h.elapsed(h.now) < start + 10_000, "redialed in time");
        };
        if attempt < 2 {
            h.core
                .handle_link_failed(dial.link, LinkEnd::Lost("connection refused".into()), h.now);
        } else {
            h.dial_up(dial.link, &seeder);
            back = Some(dial.link);
        }
    }
    let new = back.expect("reconnected");
    // A checkpoint started on the clock while the seeder was down (one at
    // a time, and this test answered none): it ends now.
    if h.history
        .iter()
        .any(|(_, action)| matches!(action, Action::Checkpoint { .. }))
    {
        h.core.handle_checkpointed(Ok(()), h.now);
    }
    let mut asked = requests_to(&h.take(), new);
    assert!(!asked.is_empty(), "the download goes on over the new link");
    loop {
        for chunk in asked {
            h.deliver(new, chunk);
        }
        let mut actions = h.take();
        // Checkpoints end at once (the delivery waits for one running).
        if actions
            .iter()
            .any(|action| matches!(action, Action::Checkpoint { .. }))
        {
            h.core.handle_checkpointed(Ok(()), h.now);
            actions.extend(h.take());
        }
        if actions.contains(&Action::Deliver) {
            break;
        }
        asked = requests_to(&actions, new);
        assert!(!asked.is_empty(), "every missing chunk is asked for");
    }
    assert_eq!(h.core.have().count_ones(), 8);
}

#[test]
fn giving_up_while_a_dial_is_still_unanswered_says_so() {
    let config = NodeConfig {
        give_up_after: Duration::from_secs(5),
        ..NodeConfig::default()
    };
    let silent = sa("62.3.3.3:4433");
    let mut h = Harness::new(Kind::Fetch, 8, config);
    h.core
        .add_peer(offer(testing::peer_id(3), &[silent]), h.now);
    assert_eq!(dials(&h.take()).len(), 1);
    // The dial is never answered (handshake_timeout is 10 s).
    h.advance(5_000);
    let actions = h.take();
    let Some(End::Failed(Failure::NoPeers { tried, .. })) =
        ends_after_saving(&mut h, &actions).pop()
    else {
        panic!("gave up after 5 s: {actions:?}");
    };
    assert_eq!(
        tried,
        [Tried {
            addr: silent,
            source: Source::Offer,
            problem: Problem::NoAnswerYet,
        }]
    );
    assert_eq!(
        tried[0].to_string(),
        format!("{silent} (given): dialed, no answer yet")
    );
}

#[test]
fn giving_up_names_every_peer_tried_and_why() {
    let config = NodeConfig {
        give_up_after: Duration::from_secs(60),
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Fetch, 8, config);
    let full = sa("62.1.1.1:4433");
    let down = sa("62.2.2.2:4433");
    h.core.add_peer(offer(testing::peer_id(1), &[full]), h.now);
    h.core.add_peer(offer(testing::peer_id(2), &[down]), h.now);
    let mut ended = None;
    for step in 0..=700u64 {
        h.advance(step * 100);
        let actions = h.take();
        for dial in dials(&actions) {
            let end = if dial.addr == full {
                LinkEnd::Refused {
                    reason: HelloRejectReason::TooManyPeers,
                    detail: "serving the maximum of 32 peers".into(),
                }
            } else {
                LinkEnd::Lost("connection refused".into())
            };
            h.core.handle_link_failed(dial.link, end, h.now);
        }
        let mut actions = actions;
        actions.extend(h.take());
        if let Some(end) = ends_after_saving(&mut h, &actions).pop() {
            ended = Some((h.elapsed(h.now), end));
            break;
        }
    }
    let (at, outcome) = ended.expect("gave up");
    assert_eq!(at, 60_000, "after give_up_after without progress");
    let End::Failed(Failure::NoPeers {
        missing,
        total,
        tried,
        mirrors,
    }) = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!((missing, total), (8, 8));
    assert_eq!(tried.len(), 2, "{tried:?}");
    let about = |addr: SocketAddr| {
        tried
            .iter()
            .find(|peer| peer.addr == addr)
            .unwrap_or_else(|| panic!("{addr} in {tried:?}"))
            .to_string()
    };
    assert!(about(full).contains("too many peers"), "{tried:?}");
    assert!(about(down).contains("connection refused"), "{tried:?}");
    assert!(mirrors.is_empty(), "{mirrors:?}");
    let text = Failure::NoPeers {
        missing,
        total,
        tried: tried.clone(),
        mirrors,
    }
    .to_string();
    assert!(text.contains("no peer could deliver"), "{text}");
    assert!(text.contains("8 of 8 missing"), "{text}");
    assert_eq!(h.core.poll_timeout(h.now), None);
}

/// We dial `remote` (an offer names it) and, before that dial is up, its
/// own dial of us comes up: the harness, our dial and its link.
fn crossed_dials(remote: &Remote) -> (Harness, Dial, LinkId) {
    let mut h = Harness::new(Kind::ServingFetch, 8, NodeConfig::default());
    h.core.add_peer(offer(remote.id, &[remote.addr]), h.now);
    let ours = dials(&h.take());
    assert_eq!(ours.len(), 1);
    let theirs = h.connect_in(remote);
    (h, ours[0], theirs)
}

/// Two peers introduced to each other dial each other at once; both keep
/// the link the lower id dialed. Here that is ours, and the peer's own link
/// comes up first: our dial goes on, and the link stays whole whether the
/// peer drops its link before ours arrives or after.
#[test]
fn peers_that_dial_each_other_keep_the_lower_ids_dial_whichever_comes_up_first() {
    for peer_drops_first in [true, false] {
        let higher = Remote::seeder(201, "62.1.1.1:4433", 8);
        let (mut h, ours, theirs) = crossed_dials(&higher);
        assert!(h.core.local_id() < higher.id);
        assert!(
            !aborts(&h.take()).contains(&ours.link),
            "our dial is the one both keep"
        );
        assert!(h.is_connected(theirs));
        h.advance(50);
        if peer_drops_first {
            // Our dial reached the peer: it drops its own link.
            h.core.handle_message(
                theirs,
                Message::Goodbye {
                    reason: GoodbyeReason::Done,
                },
                h.now,
            );
            h.core.handle_closed(theirs, LinkEnd::ClosedByPeer, h.now);
            assert!(dials(&h.take()).is_empty(), "our dial is still under way");
            h.dial_up(ours.link, &higher);
        } else {
            h.take_reports();
            h.dial_up(ours.link, &higher);
            assert_eq!(closes(&h.take()), [(theirs, GoodbyeReason::Done)]);
            // Replaced, not lost: no redial, no back-off counted.
            assert!(redialing(&h.take_reports()).is_empty());
        }
        assert!(h.is_connected(ours.link) && !h.is_connected(theirs));
        assert_eq!(h.core.connected_count(), 1);
        h.advance(10_000);
        assert!(dials(&h.take()).is_empty(), "connected: no more dials");
    }
}

/// The other side of the same race: the peer has the lower id, so its
/// link is the one kept and our dial is aborted; its failure neither ends
/// the link nor starts a redial.
#[test]
fn the_higher_id_keeps_the_peers_dial_and_drops_its_own() {
    let lower = Remote::seeder(1, "62.1.1.1:4433", 8);
    let (mut h, ours, theirs) = crossed_dials(&lower);
    assert!(h.core.local_id() > lower.id);
    assert_eq!(aborts(&h.take()), [ours.link]);
    h.core
        .handle_link_failed(ours.link, LinkEnd::ClosedByPeer, h.now);
    h.advance(10_000);
    assert!(dials(&h.take()).is_empty());
    assert!(h.is_connected(theirs));
    assert_eq!(h.core.connected_count(), 1);
}

/// The peer's link breaks the protocol while our kept dial is under way:
/// the dial ends with it, and its handshake, should it still complete, is
/// dropped rather than linking us again to the peer we just closed.
#[test]
fn a_kept_dial_ends_with_a_peer_closed_for_a_violation() {
    let higher = Remote::seeder(201, "62.1.1.1:4433", 8);
    let (mut h, ours, theirs) = crossed_dials(&higher);
    h.take();
    h.core.handle_closed(
        theirs,
        LinkEnd::Violation(crate::report::Violation::SecondControlStream),
        h.now,
    );
    assert!(aborts(&h.take()).contains(&ours.link));
    h.dial_up(ours.link, &higher);
    assert!(!h.is_connected(ours.link));
    assert_eq!(h.core.connected_count(), 0);
}

/// A dial that expires while the node is full looks at the links in the
/// middle of a wake-up (for a dial it cannot start), and the same
/// wake-up then sends a keep-alive: what the links' deadline was then
/// must not outlive the wake-up, or the next deadline is the one just
/// handled (a busy loop, which the harness refuses).
#[test]
fn a_dial_that_expires_with_a_keep_alive_due_is_no_busy_loop() {
    let config = NodeConfig {
        max_peers: 2,
        keep_alive_after: Duration::from_secs(10),
        ..NodeConfig::default()
    };
    assert_eq!(config.handshake_timeout, Duration::from_secs(10));
    let mut h = Harness::new(Kind::ServingFetch, 8, config);
    let p = h.connect_out(&Remote::fetcher(1, "62.1.1.1:4433", 8));
    let two = [sa("62.2.2.1:4433"), sa("62.2.2.2:4433")];
    h.core.add_peer(offer(testing::peer_id(2), &two), h.now);
    assert_eq!(dials(&h.take()).len(), 1);
    // The node is full now; the dial expires with the keep-alive due.
    let r = h.connect_in(&Remote::fetcher(3, "63.3.3.3:4433", 8));
    assert!(h.is_connected(p) && h.is_connected(r));
    h.take();
    h.advance(11_000);
}

#[test]
fn offers_naming_one_peer_twice_give_one_entry_with_every_address_in_order() {
    let a = minimodel_wire::PeerId([1; 32]);
    let b = minimodel_wire::PeerId([2; 32]);
    let at = |id, addr: &str| minimodel_wire::PeerAddr { id, addr: sa(addr) };
    let known = KnownPeer::offered(&[
        at(a, "10.0.0.1:1"),
        at(b, "10.0.0.2:1"),
        at(a, "10.0.0.3:1"),
        at(a, "10.0.0.1:1"),
    ]);
    assert_eq!(
        known,
        [
            KnownPeer {
                id: Some(a),
                addrs: vec![sa("10.0.0.1:1"), sa("10.0.0.3:1")],
                source: Source::Offer,
            },
            KnownPeer {
                id: Some(b),
                addrs: vec![sa("10.0.0.2:1")],
                source: Source::Offer,
            },
        ]
    );
}

#[test]
fn a_failed_handshake_is_blamed_on_the_peer_only_when_it_broke_the_protocol_and_on_us_for_our_bugs()
{
    use crate::node::handshake_end;
    use crate::report::Blame;
    use minimodel_wire::{DecodeError, HandshakeFailure, PeerError};
    let blame = |failure| handshake_end(failure).map(|end: LinkEnd| end.blame());
    let garbage = HandshakeFailure::Peer(PeerError::Decode(DecodeError::EmptyFrame));
    assert_eq!(blame(garbage), Ok(Blame::Peer));
    for innocent in [
        HandshakeFailure::Ended,
        HandshakeFailure::Goodbye(minimodel_wire::GoodbyeReason::Shutdown),
        HandshakeFailure::Refused {
            reason: HelloRejectReason::TooManyPeers,
            detail: "full".into(),
        },
    ] {
        assert_eq!(
            blame(innocent.clone()),
            Ok(Blame::Environment),
            "{innocent:?}"
        );
    }
    // Our own bug is ours, and keeps its type.
    let misuse = minimodel_wire::LocalMisuse::HandshakeOutOfTurn {
        call: "accept",
        expected: "a Hello to answer",
    };
    let end = handshake_end(HandshakeFailure::Local(misuse.clone())).expect("no refusal");
    assert_eq!(end, LinkEnd::Local(misuse.into()));
    assert_eq!(end.blame(), Blame::Local);
    // A refusal of our Hello keeps the peers it names, to be dialed.
    let others = vec![minimodel_wire::PeerEntry {
        id: PeerId([0x44; 32]),
        addr: "198.51.100.4:4433".parse().unwrap(),
        flags: minimodel_wire::PeerFlags::empty(),
    }];
    let rejection = handshake_end(HandshakeFailure::Rejected {
        reason: HelloRejectReason::TooManyPeers,
        detail: "full".into(),
        peers: others.clone(),
    })
    .unwrap_err();
    assert_eq!(rejection.peers, others);
    assert_eq!(
        rejection.into_end(),
        LinkEnd::Refused {
            reason: HelloRejectReason::TooManyPeers,
            detail: "full".into()
        }
    );
}

#[test]
fn remembered_peers_are_dialed_while_fresh_and_kept_across_runs() {
    use crate::remembered::{REMEMBER_FOR_SECS, RememberedPeer};
    let unix_now = 1_800_000_000;
    let remembered = |n: u8, addr: &str, seen_at| RememberedPeer {
        id: testing::peer_id(n),
        addrs: vec![sa(addr)],
        found_by: Source::Offer,
        bytes: 1 << 20,
        seen_at,
    };
    let fresh = remembered(1, "82.0.0.1:4433", unix_now - 60);
    let stale = remembered(2, "82.0.0.2:4433", unix_now - REMEMBER_FOR_SECS - 1);
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    assert_eq!(
        h.core.peers_to_remember(unix_now),
        None,
        "nothing to remember yet"
    );
    h.core
        .remember_peers_from(vec![fresh.clone(), stale.clone()], unix_now, h.now);
    let dialed: Vec<_> = dials(&h.take())
        .into_iter()
        .map(|d| (d.addr, d.peer))
        .collect();
    assert_eq!(
        dialed,
        [(fresh.addrs[0], Some(fresh.id))],
        "only the fresh one"
    );
    // Nobody delivered in this run: the list written is the one read, less
    // what went stale.
    let list = h
        .core
        .peers_to_remember(unix_now)
        .expect("a download remembers");
    assert!(list.contains(&fresh), "{list:?}");
    assert!(!list.contains(&stale), "{list:?}");
}

#[test]
fn a_download_that_never_gives_up_keeps_dialing_its_peer_for_an_hour() {
    let config = NodeConfig {
        give_up_after: Duration::MAX,
        ..NodeConfig::default()
    };
    let silent = sa("62.3.3.3:4433");
    let mut h = Harness::new(Kind::Fetch, 8, config);
    h.core
        .add_peer(offer(testing::peer_id(3), &[silent]), h.now);
    let mut dialed = 0;
    for minute in 1..=60u64 {
        h.advance(minute * 60_000);
        let actions = h.take();
        for dial in dials(&actions) {
            dialed += 1;
            h.core
                .handle_link_failed(dial.link, LinkEnd::Lost("no answer".into()), h.now);
        }
        assert!(ends(&actions).is_empty(), "ended at minute {minute}");
    }
    // Each failure told at the next minute, the next dial at most
    // redial_max (30 s) after it: at least one a minute.
    assert!(dialed >= 60, "dialed {dialed} times in an hour");
    assert!(!h.core.is_ended());
}
