//! The core's own clock: KeepAlives, the wait for a Goodbye's
//! acknowledgement, and how a node ends (a stop, a stop during the final
//! checks, the last checkpoint). The driver keeps no timer of its own.

use super::*;
use crate::node::fetching::Finish;

fn keep_alives(actions: &[Action]) -> Vec<LinkId> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send {
                link,
                message: Message::KeepAlive,
            } => Some(*link),
            _ => None,
        })
        .collect()
}

fn has_checkpoint(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|action| matches!(action, Action::Checkpoint { .. }))
}

#[test]
fn a_quiet_link_gets_a_keep_alive_after_keep_alive_after_and_a_busy_one_does_not() {
    let config = NodeConfig::default();
    let every = config.keep_alive_after.as_millis() as u64;
    // A serving fetch with nothing verified yet: a request is answered
    // with a Reject, a control message of ours.
    let mut h = Harness::new(Kind::ServingFetch, 8, config);
    let quiet = h.connect_in(&Remote::fetcher(1, "62.1.1.1:5000", 8));
    let busy = h.connect_in(&Remote::fetcher(2, "62.2.2.2:5000", 8));
    h.take();
    let mut sent = Vec::new();
    for second in 1..=40u64 {
        h.advance(second * 1_000);
        sent.extend(
            keep_alives(&h.take())
                .into_iter()
                .map(|link| (second, link)),
        );
        if second % 5 == 0 {
            // `busy` asks for a chunk every 5 s and hears a Reject.
            h.core.handle_message(
                busy,
                Message::Request {
                    chunk: ChunkIndex(0),
                },
                h.now,
            );
            let rejected = h.take().iter().any(|action| {
                matches!(action, Action::Send { link, message: Message::Reject { .. } } if *link == busy)
            });
            assert!(rejected);
        }
    }
    let at = |peer: LinkId| -> Vec<u64> {
        sent.iter()
            .filter(|(_, link)| *link == peer)
            .map(|(at, _)| *at)
            .collect()
    };
    assert_eq!(at(quiet), [every / 1_000, 2 * every / 1_000], "{sent:?}");
    assert!(at(busy).is_empty(), "{sent:?}");
}

#[test]
fn a_goodbye_not_acknowledged_in_goodbye_wait_is_aborted_and_an_acknowledged_one_is_not() {
    let config = NodeConfig::default();
    let wait = config.goodbye_wait.as_millis() as u64;
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let a = h.connect_in(&Remote::fetcher(1, "62.1.1.1:5000", 8));
    let b = h.connect_in(&Remote::fetcher(2, "62.2.2.2:5000", 8));
    h.take();
    h.core.stop(h.now);
    let actions = h.take();
    assert_eq!(
        closes(&actions),
        [(a, GoodbyeReason::Done), (b, GoodbyeReason::Done)]
    );
    assert!(aborts(&actions).is_empty());
    // A seeder has nothing to save: it ends once its Goodbyes are
    // acknowledged (a's) or given up on after `goodbye_wait_at_end` (b's).
    assert!(ends(&actions).is_empty());
    h.core
        .handle_closed(a, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert!(h.take().is_empty());
    let at_end = NodeConfig::default().goodbye_wait_at_end.as_millis() as u64;
    h.advance(at_end);
    let actions = h.take();
    assert_eq!(aborts(&actions), [b]);
    assert_eq!(ends(&actions), [End::Stopped]);
    assert_eq!(h.core.poll_timeout(h.now), None);

    // A fetch that closes one peer while it runs on.
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    let b = h.connect_out(&Remote::seeder(2, "62.2.2.2:4433", 8));
    h.take();
    h.core.handle_message(
        a,
        Message::Have {
            chunk: ChunkIndex(99),
        },
        h.now,
    );
    let closed = h.take();
    assert_eq!(closes(&closed), [(a, GoodbyeReason::ProtocolViolation)]);
    let start = h.elapsed(h.now);
    h.core.handle_message(
        b,
        Message::Have {
            chunk: ChunkIndex(99),
        },
        h.now,
    );
    assert_eq!(closes(&h.take()), [(b, GoodbyeReason::ProtocolViolation)]);
    // b's Goodbye is acknowledged and its connection ends; a's is not.
    h.core
        .handle_closed(b, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert!(h.take().is_empty(), "nothing more for b");
    h.advance(start + wait - 1);
    assert!(aborts(&h.take()).is_empty());
    h.advance(start + wait);
    assert_eq!(aborts(&h.take()), [a]);
}

#[test]
fn a_stopped_download_saves_its_last_checkpoint_then_ends() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    h.take();
    h.deliver(a, 0);
    h.take();
    h.core.stop(h.now);
    let actions = h.take();
    assert_eq!(closes(&actions), [(a, GoodbyeReason::Shutdown)]);
    assert!(has_checkpoint(&actions), "{actions:?}");
    assert!(ends(&actions).is_empty(), "not before the checkpoint");
    assert_eq!(
        h.core.poll_timeout(h.now),
        Some(h.now + NodeConfig::default().goodbye_wait_at_end),
        "only the Goodbye's wait is left"
    );
    h.core
        .handle_closed(a, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert!(ends(&h.take()).is_empty(), "not before the checkpoint");
    h.core.handle_checkpointed(Ok(()), h.now);
    assert_eq!(ends(&h.take()), [End::Stopped]);
    assert_eq!(h.core.poll_timeout(h.now), None);
}

#[test]
fn the_last_checkpoint_waits_for_chunks_being_verified_at_most_verify_wait_at_end() {
    let config = NodeConfig::default();
    let wait = config.verify_wait_at_end.as_millis() as u64;

    // Both chunks come back stored: the checkpoint starts with the last,
    // and lists it.
    let mut h = Harness::new(Kind::Fetch, 8, config.clone());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    h.take();
    h.arrive(a, 0);
    h.arrive(a, 1);
    h.take();
    h.core.stop(h.now);
    let actions = h.take();
    assert_eq!(closes(&actions), [(a, GoodbyeReason::Shutdown)]);
    assert!(
        !has_checkpoint(&actions),
        "not while chunks are being verified"
    );
    assert_eq!(
        h.core.poll_timeout(h.now),
        Some(h.now + config.goodbye_wait_at_end),
        "the Goodbye's wait comes first"
    );
    h.core
        .handle_closed(a, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert_eq!(h.core.poll_timeout(h.now), Some(h.now + ms(wait)));
    let t = h.elapsed(h.now);
    h.advance(t + 10);
    h.core
        .handle_verified(a, ChunkIndex(0), VerifyOutcome::Stored, h.now);
    let actions = h.take();
    assert!(
        !has_checkpoint(&actions),
        "one chunk is still being verified"
    );
    assert!(ends(&actions).is_empty());
    h.core
        .handle_verified(a, ChunkIndex(1), VerifyOutcome::Stored, h.now);
    let actions = h.take();
    assert!(has_checkpoint(&actions), "{actions:?}");
    assert_eq!(h.core.have().count_ones(), 2, "the checkpoint lists both");
    assert!(ends(&actions).is_empty(), "not before the checkpoint");
    h.core.handle_checkpointed(Ok(()), h.now);
    assert_eq!(ends(&h.take()), [End::Stopped]);

    // One never comes back: the checkpoint starts after the wait.
    let mut h = Harness::new(Kind::Fetch, 8, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    h.take();
    h.deliver(a, 2);
    h.arrive(a, 3);
    h.take();
    h.core.stop(h.now);
    let start = h.elapsed(h.now);
    h.core
        .handle_closed(a, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert!(!has_checkpoint(&h.take()));
    h.advance(start + wait - 1);
    assert!(!has_checkpoint(&h.take()));
    h.advance(start + wait);
    let actions = h.take();
    assert!(has_checkpoint(&actions), "{actions:?}");
    h.core.handle_checkpointed(Ok(()), h.now);
    assert_eq!(ends(&h.take()), [End::Stopped]);
    assert_eq!(h.core.poll_timeout(h.now), None);
    // The chunk stored after the checkpoint changes nothing.
    h.core
        .handle_verified(a, ChunkIndex(3), VerifyOutcome::Stored, h.now);
    assert!(h.take().is_empty());
}

#[test]
fn a_stop_during_the_final_checks_waits_for_them_at_most_stop_wait() {
    let config = NodeConfig::default();
    let stop_wait = config.stop_wait.as_millis() as u64;
    // The final checks pass within the wait: delivered, not interrupted.
    let mut h = Harness::new(Kind::Fetch, 2, config.clone());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 2));
    h.take();
    h.deliver(a, 0);
    h.deliver(a, 1);
    assert!(h.take().contains(&Action::Deliver));
    h.core.stop(h.now);
    assert!(h.take().is_empty(), "the delivery goes on");
    h.advance(1_000);
    h.core.handle_finished(
        Finish::Delivered {
            path: "out/m.slm".into(),
            receipt: "out/m.receipt.json".into(),
        },
        h.now,
    );
    let actions = h.take();
    assert_eq!(closes(&actions), [(a, GoodbyeReason::Done)]);
    assert!(!has_checkpoint(&actions), "a delivered file needs none");
    h.core
        .handle_closed(a, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert_eq!(ends(&h.take()), [End::Done]);
    let delivered = h
        .take_reports()
        .into_iter()
        .any(|report| matches!(report, NodeReport::Delivered { seeding: false, .. }));
    assert!(delivered);

    // They do not end in time: stopped, with the chunks saved.
    let mut h = Harness::new(Kind::Fetch, 2, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 2));
    h.take();
    h.deliver(a, 0);
    h.deliver(a, 1);
    h.take();
    h.core.stop(h.now);
    h.advance(stop_wait - 1);
    assert!(ends(&h.take()).is_empty());
    h.advance(stop_wait);
    let actions = h.take();
    assert!(has_checkpoint(&actions), "{actions:?}");
    assert_eq!(closes(&actions), [(a, GoodbyeReason::Done)]);
    h.core.handle_checkpointed(Ok(()), h.now);
    h.core
        .handle_closed(a, crate::report::LinkEnd::ClosedByPeer, h.now);
    assert_eq!(ends(&h.take()), [End::Stopped]);
}

#[test]
fn a_node_ending_after_a_failure_starts_no_link_while_it_saves() {
    let mut h = Harness::new(Kind::ServingFetch, 8, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    let asked = requests_to(&h.take(), a)[0];
    let chunk = h.arrive(a, asked);
    h.core
        .handle_verified(a, chunk, VerifyOutcome::StoreFailed(disk_full()), h.now);
    let actions = h.take();
    assert!(has_checkpoint(&actions), "{actions:?}");
    assert!(ends(&actions).is_empty(), "the checkpoint is still written");

    // A seeder offered now is not dialed, and a dialer is not let in.
    h.core.add_peer(
        KnownPeer {
            id: Some(testing::peer_id(2)),
            addrs: vec!["62.2.2.2:4433".parse().unwrap()],
            source: crate::book::Source::Offer,
        },
        h.now,
    );
    let dials = h
        .take()
        .into_iter()
        .filter(|action| matches!(action, Action::Dial { .. }))
        .count();
    assert_eq!(dials, 0);
    let incoming = h
        .core
        .handle_incoming("62.3.3.3:5000".parse().unwrap(), true, h.now);
    assert!(matches!(incoming, Incoming::Refuse { .. }), "{incoming:?}");
}
