//! The serving side: upload slots, the order requests are served in, the
//! rate cap, Cancel, and a peer that stops reading.

use super::*;
use crate::node::UploadOutcome;
use crate::report::{Departure, LinkEnd};
use minimodel_wire::RejectReason;

pub(super) fn request(h: &mut Harness, link: LinkId, chunks: &[u32]) {
    for &chunk in chunks {
        h.core.handle_message(
            link,
            Message::Request {
                chunk: ChunkIndex(chunk),
            },
            h.now,
        );
    }
}

pub(super) fn sent(h: &mut Harness, link: LinkId, chunk: u32) {
    h.core.handle_upload_done(
        link,
        ChunkIndex(chunk),
        UploadOutcome::Sent {
            bytes: u64::from(CHUNK),
        },
        h.now,
    );
}

/// Upload slots and the queue as configured, not sized from the measured
/// uplink (which `the_uplink_meter_sizes_the_slots_and_the_queue` tests).
fn fixed_slots() -> NodeConfig {
    NodeConfig {
        upload_slot_time: None,
        upload_queue_time: None,
        ..NodeConfig::default()
    }
}

/// Two upload slots in all, so that a third request stays queued.
fn two_slots() -> NodeConfig {
    NodeConfig {
        upload_slots: 2,
        ..fixed_slots()
    }
}

/// A share of an endpoint's gate: `slots` uploads and a part `rate` of
/// its upload cap.
pub(super) fn share(slots: usize, rate: Option<u64>) -> Option<crate::gate::Share> {
    Some(crate::gate::Share {
        slots,
        rate,
        download: None,
    })
}

/// The paces of the uploads started among `actions`.
fn paces(actions: &[Action]) -> Vec<Option<u64>> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Upload { pace, .. } => Some(*pace),
            _ => None,
        })
        .collect()
}

pub(super) fn fetcher(n: u8, chunks: u32) -> Remote {
    Remote::fetcher(n, &format!("62.{n}.0.1:5000"), chunks)
}

/// A fetch that serves (`fetch --serve`): what it gets, it passes on.
fn serving_fetcher(n: u8, chunks: u32) -> Remote {
    Remote {
        serving: true,
        ..fetcher(n, chunks)
    }
}

#[test]
fn uploads_fill_the_slots_and_a_peer_beyond_its_share_only_gets_what_nobody_else_wants() {
    let config = fixed_slots();
    let (slots, per_peer) = (config.upload_slots, config.upload_slots_per_peer);
    assert_eq!((slots, per_peer), (8, 2), "the numbers below assume these");
    let mut h = Harness::new(Kind::Seeder, 16, config);
    let peers: Vec<LinkId> = (1..=5).map(|n| h.connect_in(&fetcher(n, 16))).collect();
    h.take();
    // Alone, one peer gets more than its share rather than idle slots.
    request(&mut h, peers[0], &[0, 1, 2, 3, 4, 5]);
    let first = uploads(&h.take());
    assert_eq!(first.len(), 6, "{first:?}");
    assert!(first.iter().all(|(link, _)| *link == peers[0]));
    // Its uploads past its share wait behind the first two on its own
    // connection and take no slot from others: six free slots go to peers
    // below their share, the last peer's two requests wait.
    for (i, &link) in peers[1..].iter().enumerate() {
        let base = 6 + 2 * i as u32;
        request(&mut h, link, &[base, base + 1]);
    }
    let started = uploads(&h.take());
    assert_eq!(started.len(), 6, "{started:?}");
    assert!(started.iter().all(|(link, _)| *link != peers[0]));
    assert!(started.iter().all(|(link, _)| *link != peers[4]));
    // Its uploads ending free no slot while it still has two under way.
    for chunk in 0..4 {
        sent(&mut h, peers[0], chunk);
        assert!(uploads(&h.take()).is_empty());
    }
    // Then each that ends frees one, for a peer below its share.
    sent(&mut h, peers[0], 4);
    let next = uploads(&h.take());
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, peers[4], "{next:?}");
}

#[test]
fn one_peer_alone_gets_uploads_up_to_four_times_what_may_run() {
    // On a long lossy path an upload holds its slot for a few round trips
    // until every byte is acknowledged: one peer alone (near or far: the
    // seeder does not know) gets more than the slots, its uploads past its share waiting behind the others on its
    // connection, but at most four times the eight that may run, so that
    // a peer that stops reading leaves others theirs.
    let mut h = Harness::new(Kind::Seeder, 64, fixed_slots());
    let far = h.connect_in(&fetcher(1, 64));
    let near = h.connect_in(&fetcher(2, 64));
    h.take();
    request(&mut h, far, &(0..40).collect::<Vec<u32>>());
    let started = uploads(&h.take());
    assert_eq!(started.len(), 32, "{started:?}");
    // Another peer still gets its share at once.
    request(&mut h, near, &[40, 41]);
    assert_eq!(uploads(&h.take()), [(near, 40), (near, 41)]);
    // And the far peer's next upload waits for one of its own to end.
    sent(&mut h, near, 40);
    assert!(uploads(&h.take()).is_empty());
    sent(&mut h, far, 0);
    assert_eq!(uploads(&h.take()), [(far, 32)]);
}

#[test]
fn uploads_past_the_slots_stay_within_their_bytes_for_large_chunks() {
    // Each upload reads its chunk whole: past what may run (8 here), one
    // link's uploads stay within 32 MiB of chunks and all within 40 MiB.
    let config = fixed_slots();
    let queue = crate::upload::UploadQueue::new(64, config.upload.clone());
    let uploads = super::super::upload_slots::Uploads::new(queue, None, Instant::now());
    let limits = |chunk: u32| {
        (
            uploads.most_per_link(&config, chunk),
            uploads.most_under_way_for_tests(&config, chunk),
        )
    };
    assert_eq!(limits(1 << 20), (32, 40));
    assert_eq!(limits(4 << 20), (8, 16));
    assert_eq!(limits(16 << 20), (8, 16));
    assert_eq!(limits(256 << 10), (32, 40));
}

#[test]
fn a_gate_decision_older_than_the_one_taken_is_ignored() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    let granted = |slots| share(slots, None).expect("a share");
    assert!(h.core.take_grant(2, granted(1), h.now));
    let a = h.connect_in(&fetcher(1, 16));
    h.take();
    request(&mut h, a, &[0, 1]);
    assert_eq!(uploads(&h.take()).len(), 1, "one upload on a grant of one");
    // Decided before the one taken (told after the gate's lock went):
    // nothing changes, and the same generation twice counts once.
    assert!(!h.core.take_grant(1, granted(3), h.now));
    assert!(!h.core.take_grant(2, granted(3), h.now));
    assert!(uploads(&h.take()).is_empty());
    // A newer one is taken.
    assert!(h.core.take_grant(3, granted(3), h.now));
    assert_eq!(uploads(&h.take()).len(), 1, "the second request starts");
}

#[test]
fn a_swarm_on_a_shared_endpoint_runs_what_its_gate_grants_and_reports_what_it_wants() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    h.core.set_share(share(1, None), h.now);
    let a = h.connect_in(&fetcher(1, 16));
    let b = h.connect_in(&fetcher(2, 16));
    h.take();
    let demand = |wanted, running| crate::gate::UploadDemand { wanted, running };
    assert_eq!(h.core.upload_demand(), demand(0, 0));
    request(&mut h, a, &[0, 1]);
    request(&mut h, b, &[2, 3]);
    let mut running = uploads(&h.take());
    assert_eq!(running.len(), 1, "one upload on a grant of one");
    assert_eq!(
        h.core.upload_demand(),
        demand(4, 1),
        "one under way, three waiting"
    );
    // A larger grant starts waiting uploads at once.
    h.core.set_share(share(3, None), h.now);
    let more = uploads(&h.take());
    assert_eq!(more.len(), 2);
    running.extend(more);
    // A smaller one lets those under way finish and starts nothing new
    // until they are below it.
    h.core.set_share(share(1, None), h.now);
    assert!(uploads(&h.take()).is_empty());
    for &(link, chunk) in &running[..2] {
        sent(&mut h, link, chunk);
        assert!(uploads(&h.take()).is_empty(), "still at or above the grant");
    }
    assert_eq!(
        h.core.upload_demand(),
        demand(2, 1),
        "one under way, one waiting"
    );
    sent(&mut h, running[2].0, running[2].1);
    assert_eq!(
        uploads(&h.take()).len(),
        1,
        "below the grant: the last one starts"
    );
}

#[test]
fn the_rarest_requested_chunk_over_all_peers_goes_first() {
    let config = NodeConfig {
        upload_slots: 1,
        ..fixed_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let a = h.connect_in(&fetcher(1, 8));
    h.connect_in(&fetcher(2, 8).with_chunks(&[0, 1, 2, 3, 4, 5]));
    h.connect_in(&fetcher(3, 8).with_chunks(&[0, 1, 2]));
    let d = h.connect_in(&fetcher(4, 8));
    h.take();
    request(&mut h, a, &[0]);
    assert_eq!(uploads(&h.take()), [(a, 0)]);
    // Held by: 3 by one peer, 1 by two, 6 and 7 by none.
    request(&mut h, a, &[3, 7]);
    request(&mut h, d, &[1, 6]);
    let mut order = Vec::new();
    let mut current = (a, 0);
    for _ in 0..4 {
        sent(&mut h, current.0, current.1);
        let next = uploads(&h.take());
        assert_eq!(next.len(), 1);
        current = next[0];
        order.push(current);
    }
    assert_eq!(order, [(d, 6), (a, 7), (a, 3), (d, 1)]);
}

#[test]
fn a_part_of_the_endpoints_cap_paces_uploads_under_the_swarms_own_cap() {
    let own = 4 * u64::from(CHUNK);
    let config = NodeConfig {
        max_upload: Some(own),
        ..fixed_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 16, config);
    let part = u64::from(CHUNK);
    h.core.set_share(share(8, Some(part)), h.now);
    let a = h.connect_in(&fetcher(1, 16));
    h.take();
    request(&mut h, a, &[0, 1, 2, 3]);
    let first = h.take();
    // The lower of the two caps paces them; the bucket lets its burst
    // (one chunk, then one into debt) through, the rest wait.
    assert_eq!(paces(&first), [Some(part), Some(part)], "{first:?}");
    // The endpoint's cap goes (the other swarms went idle): the swarm's
    // own cap, four times faster, pays the debt off in a quarter second,
    // then paces what starts.
    h.core.set_share(share(8, None), h.now);
    assert!(paces(&h.take()).is_empty(), "the debt is kept");
    h.advance(240);
    assert!(paces(&h.take()).is_empty(), "the debt is kept");
    h.advance(260);
    assert_eq!(paces(&h.take()), [Some(own)]);
}

#[test]
fn an_endpoint_cap_that_goes_and_comes_back_keeps_its_debt() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    let part = u64::from(CHUNK);
    h.core.set_share(share(8, Some(part)), h.now);
    let a = h.connect_in(&fetcher(1, 16));
    h.take();
    request(&mut h, a, &[0, 1]);
    let started = uploads(&h.take());
    assert_eq!(started.len(), 2, "the burst, then one into debt");
    for (link, chunk) in started {
        sent(&mut h, link, chunk);
    }
    // No cap for a moment (nothing waits), then the cap again: the debt
    // of a second is still owed.
    h.core.set_share(share(8, None), h.now);
    h.core.set_share(share(8, Some(part)), h.now);
    request(&mut h, a, &[2]);
    assert!(
        uploads(&h.take()).is_empty(),
        "no burst from a fresh bucket"
    );
    h.advance(1_100);
    assert_eq!(uploads(&h.take()).len(), 1);
}

#[test]
fn uploads_wait_for_the_rate_cap_and_carry_their_pace() {
    let rate = u64::from(CHUNK);
    let config = NodeConfig {
        max_upload: Some(rate),
        ..fixed_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 16, config);
    let a = h.connect_in(&fetcher(1, 16));
    request(&mut h, a, &(0..12).collect::<Vec<u32>>());
    for step in 0..=120u64 {
        h.advance(step * 100);
        for action in h.take() {
            if let Action::Upload {
                link, chunk, pace, ..
            } = action
            {
                assert_eq!(pace, Some(rate));
                sent(&mut h, link, chunk.0);
            }
        }
    }
    let starts: Vec<u64> = h
        .history
        .iter()
        .filter(|(_, action)| matches!(action, Action::Upload { .. }))
        .map(|(at, _)| h.elapsed(*at))
        .collect();
    assert_eq!(starts.len(), 12);
    // A burst of one chunk, then one chunk per second.
    for (k, at) in starts.iter().enumerate().skip(1) {
        assert!(
            *at >= (k as u64 - 1) * 1_000,
            "upload {k} started at {at} ms: {starts:?}"
        );
    }
    assert!(starts[11] <= 10_000 + 100, "and not much later: {starts:?}");
}

#[test]
fn a_cancel_drops_a_queued_request_and_stops_an_active_upload() {
    let mut h = Harness::new(Kind::Seeder, 8, two_slots());
    let a = h.connect_in(&fetcher(1, 8));
    request(&mut h, a, &[0, 1, 2]);
    assert_eq!(uploads(&h.take()), [(a, 0), (a, 1)]);
    h.core.handle_message(
        a,
        Message::Cancel {
            chunk: ChunkIndex(2),
        },
        h.now,
    );
    assert!(h.take().is_empty(), "a queued request is simply dropped");
    sent(&mut h, a, 0);
    assert!(uploads(&h.take()).is_empty(), "chunk 2 is not sent");
    h.core.handle_message(
        a,
        Message::Cancel {
            chunk: ChunkIndex(1),
        },
        h.now,
    );
    assert_eq!(
        h.take(),
        [Action::CancelUpload {
            link: a,
            chunk: ChunkIndex(1)
        }]
    );
    h.core
        .handle_upload_done(a, ChunkIndex(1), UploadOutcome::Stopped, h.now);
    assert!(h.take().is_empty());
    assert!(h.is_connected(a));
}

#[test]
fn a_peer_that_stops_reading_an_upload_is_dropped() {
    a_peer_that_stops_reading_is_dropped_after(NodeConfig::default().upload_stall_timeout);
}

/// A watch due before the link's keep-alive (a stall limit shorter than
/// `keep_alive_after`) is the node's earliest deadline: the kept link
/// deadline must not hide it.
#[test]
fn a_stall_limit_shorter_than_the_keep_alive_is_kept() {
    let timeout = Duration::from_secs(5);
    assert!(timeout < NodeConfig::default().keep_alive_after);
    a_peer_that_stops_reading_is_dropped_after(timeout);
}

fn a_peer_that_stops_reading_is_dropped_after(timeout: Duration) {
    let config = NodeConfig {
        upload_stall_timeout: timeout,
        // No other wake-up in between that would look at the links afresh.
        serving_report_every: Duration::from_secs(3600),
        ..two_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let a = h.connect_in(&fetcher(1, 8));
    request(&mut h, a, &[0, 1, 2]);
    let started = h.take();
    assert_eq!(uploads(&started).len(), 2);
    assert_eq!(measures(&started), [a], "the watch takes its baseline");
    // A driver asks for the deadline after every event: the node keeps
    // its answer about the links from here.
    h.core.poll_timeout(h.now);
    h.core.handle_sent(a, 10_000, h.now);
    h.take_reports();
    // `timeout` on, the connection sent 10 KiB more: less than 64 KiB.
    h.advance(timeout.as_millis() as u64);
    let asked = h.take();
    assert_eq!(measures(&asked), [a], "{asked:?}");
    h.core.handle_sent(a, 20_240, h.now);
    let actions = h.take();
    assert_eq!(closes(&actions), [(a, GoodbyeReason::Idle)]);
    assert!(
        actions.contains(&Action::CancelUpload {
            link: a,
            chunk: ChunkIndex(1)
        }),
        "its other upload is reset: {actions:?}"
    );
    let reports = h.take_reports();
    assert!(reports.iter().any(|report| matches!(
        report,
        NodeReport::PeerDisconnected {
            reason: Departure::Ended(LinkEnd::UploadStalled),
            ..
        }
    )));
}

#[test]
fn requests_for_missing_chunks_or_beyond_the_queue_are_rejected() {
    let config = NodeConfig {
        upload: crate::config::UploadConfig {
            max_queued_per_peer: 4,
        },
        upload_slots: 1,
        ..fixed_slots()
    };
    let mut have = HaveBitfield::new(16);
    for chunk in 0..8 {
        have.set(ChunkIndex(chunk), true).unwrap();
    }
    let mut h = Harness::with_start(Kind::ServingFetch, 16, config, have, false);
    let a = h.connect_in(&fetcher(1, 16));
    h.take();
    request(&mut h, a, &[9]);
    assert_eq!(
        messages_to(&h.take(), a),
        [Message::Reject {
            chunk: ChunkIndex(9),
            reason: RejectReason::NotHave
        }]
    );
    // One being sent, four queued, the sixth is told busy.
    request(&mut h, a, &[0, 1, 2, 3, 4, 5]);
    let actions = h.take();
    assert_eq!(uploads(&actions).len(), 1);
    assert_eq!(
        messages_to(&actions, a),
        [Message::Reject {
            chunk: ChunkIndex(5),
            reason: RejectReason::Busy
        }]
    );
}

#[test]
fn a_second_copy_waits_while_first_copies_fill_the_uplink() {
    let mut h = Harness::new(Kind::Seeder, 8, fixed_slots());
    let a = h.connect_in(&serving_fetcher(1, 8));
    let b = h.connect_in(&serving_fetcher(2, 8));
    let c = h.connect_in(&serving_fetcher(3, 8));
    h.take();
    request(&mut h, a, &[0]);
    request(&mut h, b, &[0]);
    assert_eq!(uploads(&h.take()), [(a, 0)], "one copy at a time");
    request(&mut h, c, &[5]);
    assert_eq!(uploads(&h.take()), [(c, 5)], "first copies go on");
    sent(&mut h, a, 0);
    assert!(uploads(&h.take()).is_empty(), "5 is still on its way");
    // B got chunk 0 from A meanwhile and withdraws its request: nothing
    // was spent on a second copy.
    h.core.handle_message(
        b,
        Message::Cancel {
            chunk: ChunkIndex(0),
        },
        h.now,
    );
    sent(&mut h, c, 5);
    assert!(uploads(&h.take()).is_empty());
    // Asked again with the uplink idle, it goes out.
    request(&mut h, b, &[5]);
    assert_eq!(uploads(&h.take()), [(b, 5)]);
}

#[test]
fn a_second_copy_goes_once_the_uploads_under_way_have_left_the_uplink() {
    // An upload holds its slot until its last byte is acknowledged: a
    // round trip through the peer's uplink, which a home peer's own
    // uploads fill. The uplink carries nothing meanwhile; a second copy
    // waiting for it goes when the bytes under way have left at the
    // measured rate, not at their acknowledgement.
    let mut h = Harness::new(Kind::Seeder, 8, fixed_slots());
    let a = h.connect_in(&serving_fetcher(1, 8));
    let b = h.connect_in(&serving_fetcher(2, 8));
    h.take();
    // The meter learns the uplink: 1 MiB in 700 ms (times off the grid
    // of the node's other wake-ups, so that only this one can start it).
    request(&mut h, a, &[0]);
    assert_eq!(uploads(&h.take()), [(a, 0)]);
    h.advance(700);
    sent(&mut h, a, 0);
    // Chunk 1 to A: on the uplink for 700 ms at that rate.
    request(&mut h, a, &[1]);
    assert_eq!(uploads(&h.take()), [(a, 1)]);
    request(&mut h, b, &[1]);
    assert!(uploads(&h.take()).is_empty(), "1 is still on its way");
    h.advance(1399);
    assert!(uploads(&h.take()).is_empty(), "its bytes still leave");
    h.advance(1401);
    let started: Vec<_> = h
        .history
        .iter()
        .filter(|(_, action)| matches!(action, Action::Upload { link, .. } if *link == b))
        .map(|(at, _)| h.elapsed(*at))
        .collect();
    assert!(
        matches!(started[..], [at] if (1399..=1400).contains(&at)),
        "woken when the uplink empties, at 1400 ms: {started:?}"
    );
    assert_eq!(
        uploads(&h.take()),
        [(b, 1)],
        "the uplink is empty: the second copy goes before A acknowledges"
    );
}

#[test]
fn a_cancelled_upload_frees_its_slot_at_once() {
    let config = NodeConfig {
        upload_slots: 1,
        ..fixed_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 8, config);
    let a = h.connect_in(&fetcher(1, 8));
    let b = h.connect_in(&fetcher(2, 8));
    h.take();
    request(&mut h, a, &[0]);
    request(&mut h, b, &[1]);
    assert_eq!(uploads(&h.take()), [(a, 0)]);
    h.core.handle_message(
        a,
        Message::Cancel {
            chunk: ChunkIndex(0),
        },
        h.now,
    );
    let actions = h.take();
    assert!(actions.contains(&Action::CancelUpload {
        link: a,
        chunk: ChunkIndex(0)
    }));
    assert_eq!(uploads(&actions), [(b, 1)], "the freed slot is used");
}

/// The links asked to measure what their connection sent.
fn measures(actions: &[Action]) -> Vec<LinkId> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::MeasureSent { link } => Some(*link),
            _ => None,
        })
        .collect()
}

#[test]
fn a_slow_link_that_keeps_draining_its_uploads_is_not_a_stall() {
    let mut h = Harness::new(Kind::Seeder, 8, two_slots());
    let a = h.connect_in(&fetcher(1, 8));
    request(&mut h, a, &[0, 1]);
    assert_eq!(measures(&h.take()), [a]);
    let mut sent = 0;
    h.core.handle_sent(a, sent, h.now);
    let timeout = NodeConfig::default().upload_stall_timeout;
    for round in 1..=10 {
        // 64 KiB per 20 s: 3.2 KiB/s, the least that is not a stall.
        h.advance(round * timeout.as_millis() as u64);
        assert_eq!(measures(&h.take()), [a]);
        sent += 64 << 10;
        h.core.handle_sent(a, sent, h.now);
        assert!(closes(&h.take()).is_empty());
        assert!(h.is_connected(a));
    }
    // Its uploads end: the watch ends with them, nothing more is asked.
    h.core.handle_upload_done(
        a,
        ChunkIndex(0),
        UploadOutcome::Sent {
            bytes: u64::from(CHUNK),
        },
        h.now,
    );
    h.core.handle_upload_done(
        a,
        ChunkIndex(1),
        UploadOutcome::Sent {
            bytes: u64::from(CHUNK),
        },
        h.now,
    );
    h.advance(13 * timeout.as_millis() as u64);
    assert!(measures(&h.take()).is_empty());
}

#[test]
fn a_seed_closes_its_links_to_other_seeds_and_keeps_those_that_lack_chunks() {
    let mut h = Harness::new(Kind::Seeder, 4, NodeConfig::default());
    let seed = h.connect_in(&Remote::seeder(1, "62.1.0.1:4433", 4));
    let fetching = h.connect_in(&fetcher(2, 4).with_chunks(&[0, 1, 2]));
    assert_eq!(closes(&h.take()), [(seed, GoodbyeReason::Done)]);
    assert!(h.is_connected(fetching));
    // The fetcher's last chunk makes it a seed too.
    h.core.handle_message(
        fetching,
        Message::Have {
            chunk: ChunkIndex(3),
        },
        h.now,
    );
    assert_eq!(closes(&h.take()), [(fetching, GoodbyeReason::Done)]);
}

/// A peer acknowledges what it received before it says goodbye, so the
/// ends of its uploads come after its Goodbye: the Goodbye waits for the
/// uploads under way when it came, which count as sent; nothing more
/// starts for the peer meanwhile.
#[test]
fn a_goodbye_waits_for_the_uploads_under_way_when_it_came() {
    let mut h = Harness::new(Kind::Seeder, 8, two_slots());
    let a = h.connect_in(&fetcher(1, 8));
    request(&mut h, a, &[0, 1, 2]);
    assert_eq!(uploads(&h.take()), [(a, 0), (a, 1)]);
    h.take_reports();
    let bye = Message::Goodbye {
        reason: GoodbyeReason::Done,
    };
    h.core.handle_message(a, bye, h.now);
    let held = h.take();
    assert!(!held.contains(&Action::Abort { link: a }), "{held:?}");
    assert!(h.take_reports().is_empty(), "it has not left yet");
    sent(&mut h, a, 0);
    // The freed slot stays free: chunk 2 would never be read.
    assert!(uploads(&h.take()).is_empty());
    assert!(h.take_reports().is_empty(), "chunk 1 is still waited for");
    sent(&mut h, a, 1);
    let actions = h.take();
    assert!(actions.contains(&Action::Abort { link: a }), "{actions:?}");
    assert!(uploads(&actions).is_empty(), "{actions:?}");
    let reports = h.take_reports();
    assert!(
        reports.iter().any(|report| matches!(
            report,
            NodeReport::PeerDisconnected {
                reason: Departure::Goodbye(GoodbyeReason::Done),
                ..
            }
        )),
        "{reports:?}"
    );
    assert_eq!(h.core.metrics().uploaded_bytes, 2 * u64::from(CHUNK));
}

/// A link that ends while a Goodbye waits for uploads ended by that
/// Goodbye: the peer left, it did not stop reading.
#[test]
fn a_link_that_ends_under_a_held_goodbye_ends_by_the_goodbye() {
    let mut h = Harness::new(Kind::Seeder, 8, two_slots());
    let a = h.connect_in(&fetcher(1, 8));
    request(&mut h, a, &[0]);
    h.take();
    h.take_reports();
    let bye = Message::Goodbye {
        reason: GoodbyeReason::Done,
    };
    h.core.handle_message(a, bye, h.now);
    h.core.handle_closed(a, LinkEnd::NotReading, h.now);
    let reports = h.take_reports();
    assert!(
        matches!(
            reports.as_slice(),
            [NodeReport::PeerDisconnected {
                reason: Departure::Goodbye(GoodbyeReason::Done),
                ..
            }]
        ),
        "{reports:?}"
    );
}

/// A seed linked to 40 peers, 38 of which announce 250 chunks a second
/// between them, its own uplink measured at one chunk a second: its share
/// of what the swarm delivers is far below `sparing_share`. When the
/// announcing peers serve others, the peer that asks then for chunk 0
/// (sent once, held by them) hears Busy, until it has waited 10 s with no
/// chunk from another peer. When they are plain fetches (they give nobody what they hold), or with
/// `sparing_share` off, chunk 0 goes out again.
#[test]
fn a_seed_with_a_small_share_of_the_swarm_sends_a_chunk_held_by_servers_only_once() {
    for (sparing_share, holders_serve, spared) in [
        (NodeConfig::default().sparing_share, true, true),
        (NodeConfig::default().sparing_share, false, false),
        (None, true, false),
    ] {
        let config = NodeConfig {
            max_peers: 64,
            sparing_share,
            ..NodeConfig::default()
        };
        let mut h = Harness::new(Kind::Seeder, 256, config);
        let peers: Vec<LinkId> = (1..=40)
            .map(|n| {
                let mut peer = fetcher(n, 256);
                if holders_serve {
                    peer.serving = true;
                    peer.listen = Some(peer.addr);
                }
                h.connect_in(&peer)
            })
            .collect();
        h.take();
        // The uplink is measured: one chunk in a second.
        request(&mut h, peers[0], &[0]);
        assert_eq!(uploads(&h.take()), vec![(peers[0], 0)]);
        h.advance(1000);
        sent(&mut h, peers[0], 0);
        // 38 peers announce 10 chunks each, chunk 0 among them.
        for &link in &peers[1..39] {
            announce(&mut h, link, 0..10);
        }
        h.take();
        h.advance(2500);
        let last = peers[39];
        request(&mut h, last, &[0]);
        let actions = h.take();
        if spared {
            assert!(uploads(&actions).is_empty(), "{actions:?}");
            assert!(
                messages_to(&actions, last).contains(&Message::Reject {
                    chunk: ChunkIndex(0),
                    reason: RejectReason::Busy,
                }),
                "{actions:?}"
            );
            // Still turned away while the others keep announcing, until
            // it has waited `SPARING_PATIENCE` with nothing sent to it.
            let patience = crate::node::serving::SPARING_PATIENCE.as_millis() as u64;
            for second in 1..=patience / 1000 {
                for &link in &peers[1..39] {
                    let first = 10 * second as u32;
                    announce(&mut h, link, first..first + 10);
                }
                h.take();
                h.advance(2500 + second * 1000);
                request(&mut h, last, &[0]);
                let started = uploads(&h.take());
                if second * 1000 < patience {
                    assert!(started.is_empty(), "at {second} s: {started:?}");
                } else {
                    assert_eq!(started, vec![(last, 0)], "at {second} s");
                }
            }
            // A chunk never sent goes out at once.
            sent(&mut h, last, 0);
            h.take();
            request(&mut h, last, &[200]);
            assert_eq!(uploads(&h.take()), vec![(last, 200)]);
        } else {
            assert_eq!(
                uploads(&actions),
                vec![(last, 0)],
                "{sparing_share:?} {holders_serve}"
            );
        }
    }
}

/// A seed of 256 chunks linked to 40 serving peers, its uplink measured at
/// a chunk a second (chunks 0 and 1, to the first peer) and 38 of the
/// peers announcing 10 chunks each (0 to 9): a sparing seed from 3.5 s in.
/// Returns the harness and the peers' links.
fn sparing_seed() -> (Harness, Vec<LinkId>) {
    let config = NodeConfig {
        max_peers: 64,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Seeder, 256, config);
    let peers: Vec<LinkId> = (1..=40)
        .map(|n| {
            let mut peer = fetcher(n, 256);
            peer.serving = true;
            peer.listen = Some(peer.addr);
            h.connect_in(&peer)
        })
        .collect();
    h.take();
    request(&mut h, peers[0], &[0, 1]);
    assert_eq!(uploads(&h.take()), vec![(peers[0], 0)]);
    h.advance(1000);
    sent(&mut h, peers[0], 0);
    assert_eq!(uploads(&h.take()), vec![(peers[0], 1)]);
    h.advance(2000);
    sent(&mut h, peers[0], 1);
    for &link in &peers[1..39] {
        announce(&mut h, link, 0..10);
    }
    h.take();
    h.advance(3500);
    (h, peers)
}

fn announce(h: &mut Harness, link: LinkId, chunks: std::ops::Range<u32>) {
    for chunk in chunks {
        h.core.handle_message(
            link,
            Message::Have {
                chunk: ChunkIndex(chunk),
            },
            h.now,
        );
    }
}

fn busy(actions: &[Action], to: LinkId, chunk: u32) -> bool {
    messages_to(actions, to).contains(&Message::Reject {
        chunk: ChunkIndex(chunk),
        reason: RejectReason::Busy,
    })
}

/// A peer the sparing seed turned away that then gets four chunks from
/// other peers is not stranded: its 10 s start again. Fewer, or the same
/// chunk announced again, leave it stranded at 10 s, and served.
#[test]
fn a_peer_that_gets_chunks_elsewhere_stays_spared() {
    for (chunks, spared) in [
        (&[100, 101, 102, 103][..], true),
        (&[100, 101, 102, 100, 102][..], false),
    ] {
        let (mut h, peers) = sparing_seed();
        let last = peers[39];
        request(&mut h, last, &[0]);
        assert!(busy(&h.take(), last, 0));
        // At 9 s it announces chunks it got elsewhere.
        h.advance(12_500);
        for &chunk in chunks {
            announce(&mut h, last, chunk..chunk + 1);
        }
        // The others go on announcing, so that the seed still spares.
        for &link in &peers[1..39] {
            announce(&mut h, link, 10..20);
        }
        h.take();
        // 11 s after it was first turned away.
        h.advance(14_500);
        request(&mut h, last, &[1]);
        let actions = h.take();
        if spared {
            assert!(busy(&actions, last, 1), "{actions:?}");
            assert!(uploads(&actions).is_empty(), "{actions:?}");
        } else {
            assert_eq!(uploads(&actions), vec![(last, 1)], "{chunks:?}");
        }
    }
}

/// A request queued while no linked server held its chunk (the seed sent
/// it once) is answered Busy at a timeout of the seed once a server
/// announces the chunk and it has waited 2 s, as it would have been at its
/// arrival: it does not wait unanswered behind the rule.
#[test]
fn a_request_queued_before_its_chunk_was_held_is_turned_away_once_it_is() {
    let (mut h, peers) = sparing_seed();
    let last = peers[39];
    // Chunk 200 once, to peer 0, which does not announce it.
    request(&mut h, peers[0], &[200]);
    assert_eq!(uploads(&h.take()), vec![(peers[0], 200)]);
    h.advance(4500);
    sent(&mut h, peers[0], 200);
    // A request for its second copy is queued (no server holds it) while
    // peer 1's chunk 10 goes out.
    request(&mut h, peers[1], &[10]);
    request(&mut h, last, &[200]);
    let actions = h.take();
    assert_eq!(uploads(&actions), vec![(peers[1], 10)], "{actions:?}");
    assert!(!busy(&actions, last, 200), "{actions:?}");
    // A server announces chunk 200: the queued request, once it has
    // waited the grace, is answered Busy at the next timeout.
    announce(&mut h, peers[2], 200..201);
    h.advance(6000);
    let actions = h.take();
    assert!(!busy(&actions, last, 200), "{actions:?}");
    h.advance(7500);
    let actions = h.take();
    assert!(busy(&actions, last, 200), "{actions:?}");
    sent(&mut h, peers[1], 10);
    assert!(!uploads(&h.take()).contains(&(last, 200)));
}

/// A capped seed whose first peer stops reading (its process frozen: its
/// connection sends nothing more) goes on serving the next peer at its
/// cap: the frozen peer's uploads give their slots back once its
/// connection shows no progress, long before the stall rule closes it.
#[test]
fn a_peer_that_stops_reading_does_not_hold_a_capped_uplink() {
    let config = NodeConfig {
        max_upload: Some(8 * u64::from(CHUNK)),
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Seeder, 256, config);
    let a = h.connect_in(&fetcher(1, 256));
    // A asks for more than the queue holds while the uplink is unmeasured.
    request(&mut h, a, &(0..128).collect::<Vec<u32>>());
    // A reads at the cap of eight chunks a second, each upload half a
    // second long, then freezes at 4 s: its uploads under way never end
    // and its connection's count of bytes sent stops.
    let frozen_at = 4_000;
    let mut a_sent = 0u64;
    let mut a_running: Vec<(u32, u64)> = Vec::new();
    let mut b = None;
    let mut b_started = Vec::new();
    let mut busy_for_a = Vec::new();
    let mut busy_for_b = Vec::new();
    for step in 1..=150u64 {
        let t = step * 100;
        h.advance(t);
        if t == 6_000 {
            let link = h.connect_in(&fetcher(2, 256));
            // The chunks A was sent, and more: a second copy is not held
            // back behind uploads that go nowhere.
            request(&mut h, link, &(0..64).collect::<Vec<u32>>());
            b = Some(link);
        }
        // A's uploads that have run a second end while it reads.
        if t <= frozen_at {
            a_sent = t * 8 * u64::from(CHUNK) / 1_000;
            let done: Vec<u32> = a_running
                .iter()
                .filter(|(_, at)| t >= at + 500)
                .map(|(chunk, _)| *chunk)
                .collect();
            a_running.retain(|(chunk, _)| !done.contains(chunk));
            for chunk in done {
                sent(&mut h, a, chunk);
            }
        }
        // Each asks again for what was answered Busy, as a downloader with
        // no other source does after its back-off (`busy_backoff`): A
        // until it freezes, B from when it comes.
        for (link, busy) in [(Some(a), &mut busy_for_a), (b, &mut busy_for_b)] {
            let due: Vec<u32> = busy
                .iter()
                .filter(|(_, at)| t >= at + 500)
                .map(|(chunk, _)| *chunk)
                .collect();
            busy.retain(|(_, at)| t < at + 500);
            if let Some(link) = link.filter(|&link| link != a || t <= frozen_at) {
                request(&mut h, link, &due);
            }
        }
        for action in h.take() {
            match action {
                Action::Send {
                    link,
                    message:
                        Message::Reject {
                            chunk,
                            reason: RejectReason::Busy,
                        },
                } => match link == a {
                    true => busy_for_a.push((chunk.0, t)),
                    false => busy_for_b.push((chunk.0, t)),
                },
                Action::Upload { link, chunk, .. } if link == a => a_running.push((chunk.0, t)),
                Action::Upload { link, chunk, .. } => {
                    b_started.push(t);
                    sent(&mut h, link, chunk.0);
                }
                Action::MeasureSent { link } if link == a => h.core.handle_sent(a, a_sent, h.now),
                Action::MeasureSent { link } => {
                    h.core
                        .handle_sent(link, t * u64::from(CHUNK) / 1_000, h.now)
                }
                _ => {}
            }
        }
    }
    assert!(b.is_some_and(|b| h.is_connected(b)));
    // B asked at 6 s: at the cap of eight chunks a second it has most of
    // its 64 chunks by 15 s, not the nothing it got while A held the
    // slots, nor a chunk now and then while A's queued requests filled the
    // queue.
    assert!(
        b_started.len() >= 48,
        "B's uploads started at {b_started:?} ms"
    );
}

/// A link marked as making no progress that cancels its uploads (a slow
/// peer's endgame) is served again when it asks: a cancelled upload never
/// reports its end, so the cancel itself ends the link's watch.
#[test]
fn a_stuck_link_that_cancels_its_uploads_is_served_again() {
    let mut h = Harness::new(Kind::Seeder, 16, two_slots());
    let a = h.connect_in(&fetcher(1, 16));
    request(&mut h, a, &[0, 1]);
    let started = h.take();
    assert_eq!(uploads(&started), [(a, 0), (a, 1)]);
    h.core.handle_sent(a, 1_000, h.now);
    h.advance(2_000);
    assert_eq!(measures(&h.take()), [a]);
    // Nothing sent in 2 s: no progress.
    h.core.handle_sent(a, 1_000, h.now);
    assert!(h.core.uploads.is_stuck(a));
    // Its uploads claim no part of a shared endpoint's slots.
    assert_eq!(
        h.core.upload_demand(),
        crate::gate::UploadDemand {
            wanted: 0,
            running: 0
        }
    );
    for chunk in [0, 1] {
        h.core.handle_message(
            a,
            Message::Cancel {
                chunk: ChunkIndex(chunk),
            },
            h.now,
        );
    }
    assert!(!h.core.uploads.is_stuck(a));
    h.take();
    request(&mut h, a, &[5, 6]);
    assert_eq!(uploads(&h.take()), [(a, 5), (a, 6)]);
    // And it is not closed for the silence of the uploads it cancelled.
    h.advance(25_000);
    assert!(h.is_connected(a));
}

/// The uplink meter counts neither the time nor the bytes of uploads to a
/// link that makes no progress: a peer that drains one chunk over a
/// minute does not make the uplink look fast.
#[test]
fn uploads_that_make_no_progress_do_not_inflate_the_uplink_meter() {
    let mut h = Harness::new(Kind::Seeder, 16, two_slots());
    let a = h.connect_in(&fetcher(1, 16));
    request(&mut h, a, &[0]);
    assert_eq!(uploads(&h.take()), [(a, 0)]);
    let mut bytes = 0;
    h.core.handle_sent(a, bytes, h.now);
    // 6 KiB/s: above the stall rule's floor, under the progress rule's.
    for second in (2..=60).step_by(2) {
        h.advance(second * 1_000);
        h.take();
        bytes += 12 << 10;
        h.core.handle_sent(a, bytes, h.now);
    }
    assert!(h.is_connected(a));
    assert!(h.core.uploads.is_stuck(a));
    sent(&mut h, a, 0);
    let rate = h.core.uploads.meter.rate();
    assert!(
        rate.is_none_or(|rate| rate < 64.0 * 1024.0),
        "a chunk drained over a minute measured as {rate:?} B/s"
    );
}

#[test]
fn the_gate_hears_what_a_swarm_wants_once_per_change() {
    use crate::node::GateNews;
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    h.core.set_share(share(1, None), h.now);
    let demand = |wanted, running| crate::gate::UploadDemand { wanted, running };
    // The first call tells both; a seeder would not download.
    assert_eq!(
        h.core.poll_gate_news(),
        Some(GateNews {
            upload: Some(demand(0, 0)),
            download: Some(false),
            caps: Some(crate::gate::OwnCaps::default()),
        })
    );
    assert_eq!(h.core.poll_gate_news(), None, "nothing changed");
    let a = h.connect_in(&fetcher(1, 16));
    h.take();
    assert_eq!(
        h.core.poll_gate_news(),
        None,
        "a peer that asks for nothing"
    );
    request(&mut h, a, &[0, 1]);
    h.take();
    assert_eq!(
        h.core.poll_gate_news(),
        Some(GateNews {
            upload: Some(demand(2, 1)),
            download: None,
            caps: None,
        }),
        "only what changed"
    );
    assert_eq!(h.core.poll_gate_news(), None);
}

#[test]
fn a_seeder_that_served_one_plain_fetch_serves_the_next_at_full_width() {
    // A plain fetch passes nothing on: the next fetch's requests for the
    // same chunks are first copies, and as many run at once as the slots
    // allow, not one at a time behind "second copies" nobody else holds.
    let mut h = Harness::new(Kind::Seeder, 8, fixed_slots());
    let first = h.connect_in(&fetcher(1, 8));
    h.take();
    request(&mut h, first, &[0, 1]);
    assert_eq!(uploads(&h.take()), [(first, 0), (first, 1)]);
    sent(&mut h, first, 0);
    sent(&mut h, first, 1);
    h.take();
    let next = h.connect_in(&fetcher(2, 8));
    h.take();
    request(&mut h, next, &[0, 1]);
    assert_eq!(
        uploads(&h.take()),
        [(next, 0), (next, 1)],
        "both at once, while the first fetch is still linked"
    );
}

/// The uploads started among `actions`: chunk and first byte.
fn started_from(actions: &[Action]) -> Vec<(u32, u32)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Upload { chunk, from, .. } => Some((chunk.0, *from)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_from_an_offset_is_served_from_there_and_forgotten_with_its_request() {
    let mut h = Harness::new(Kind::Seeder, 16, two_slots());
    let a = h.connect_in(&fetcher(1, 16));
    let from = |chunk, from| Message::RequestFrom {
        chunk: ChunkIndex(chunk),
        from,
    };
    // Two slots: chunks 0 and 1 start, chunk 2 from byte 1000 and chunk 3
    // from byte 7 wait.
    request(&mut h, a, &[0, 1]);
    h.core.handle_message(a, from(2, 1000), h.now);
    h.core.handle_message(a, from(3, 7), h.now);
    assert_eq!(started_from(&h.take()), [(0, 0), (1, 0)]);
    // Chunk 3's RequestFrom is withdrawn and asked for whole instead.
    h.core.handle_message(
        a,
        Message::Cancel {
            chunk: ChunkIndex(3),
        },
        h.now,
    );
    request(&mut h, a, &[3]);
    sent(&mut h, a, 0);
    sent(&mut h, a, 1);
    assert_eq!(started_from(&h.take()), [(2, 1000), (3, 0)]);
    // Sent once from an offset, asked for whole later: whole.
    sent(&mut h, a, 2);
    request(&mut h, a, &[2]);
    sent(&mut h, a, 3);
    assert_eq!(started_from(&h.take()), [(2, 0)]);
}

#[test]
fn a_chunk_asked_for_again_while_it_is_sent_to_that_peer_is_sent_again_once_after() {
    let mut h = Harness::new(Kind::Seeder, 16, two_slots());
    let a = h.connect_in(&fetcher(1, 16));
    request(&mut h, a, &[0]);
    assert_eq!(started_from(&h.take()), [(0, 0)]);
    // Asked for again, whole and from an offset, while it is being sent:
    // nothing more starts (each would read the chunk and hold it, counted
    // by no limit), and nothing is refused.
    for _ in 0..100 {
        request(&mut h, a, &[0]);
        h.core.handle_message(
            a,
            Message::RequestFrom {
                chunk: ChunkIndex(0),
                from: 5,
            },
            h.now,
        );
    }
    let actions = h.take();
    assert!(started_from(&actions).is_empty(), "{actions:?}");
    assert!(
        !actions.iter().any(|action| matches!(
            action,
            Action::Send {
                message: Message::Reject { .. },
                ..
            }
        )),
        "{actions:?}"
    );
    // Once sent, the last asking is served, once: a peer that found the
    // chunk damaged on its disk asks for it again as soon as it stored
    // it, which can be before its last bytes were acknowledged here.
    sent(&mut h, a, 0);
    assert_eq!(started_from(&h.take()), [(0, 5)]);
    sent(&mut h, a, 0);
    assert!(started_from(&h.take()).is_empty());
    // Asked again and withdrawn: the upload under way runs on, and
    // nothing starts after it.
    request(&mut h, a, &[0]);
    assert_eq!(started_from(&h.take()), [(0, 0)]);
    request(&mut h, a, &[0]);
    h.core.handle_message(
        a,
        Message::Cancel {
            chunk: ChunkIndex(0),
        },
        h.now,
    );
    assert!(h.take().is_empty(), "the upload under way is not stopped");
    sent(&mut h, a, 0);
    assert!(started_from(&h.take()).is_empty());
    // Asked again by a link that then goes: forgotten with it.
    let b = h.connect_in(&fetcher(2, 16));
    request(&mut h, b, &[1]);
    assert_eq!(started_from(&h.take()), [(1, 0)]);
    request(&mut h, b, &[1]);
    assert_eq!(h.core.uploads.again.len(), 1);
    h.core.handle_message(
        b,
        Message::Goodbye {
            reason: GoodbyeReason::Done,
        },
        h.now,
    );
    assert!(h.core.uploads.again.is_empty(), "a Goodbye forgets it");
    h.core.handle_upload_done(
        b,
        ChunkIndex(1),
        UploadOutcome::Sent {
            bytes: u64::from(CHUNK),
        },
        h.now,
    );
    assert!(started_from(&h.take()).is_empty());
}

#[test]
fn a_slot_freed_under_an_asking_again_that_is_refused_goes_to_the_next_request() {
    let config = NodeConfig {
        upload: crate::config::UploadConfig {
            max_queued_per_peer: 1,
        },
        upload_slots: 1,
        ..fixed_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 16, config);
    let a = h.connect_in(&fetcher(1, 16));
    let b = h.connect_in(&fetcher(2, 16));
    h.take();
    // Chunk 0 is sent to a; a's queue is full with chunk 1, b waits for 2.
    request(&mut h, a, &[0, 1]);
    request(&mut h, b, &[2]);
    assert_eq!(uploads(&h.take()), [(a, 0)]);
    request(&mut h, a, &[0]);
    assert!(h.take().is_empty(), "kept for when chunk 0 is sent");
    // Sent: asked again, a's full queue turns it away, and the slot goes
    // on to a request that waits.
    sent(&mut h, a, 0);
    let actions = h.take();
    assert_eq!(
        messages_to(&actions, a),
        [Message::Reject {
            chunk: ChunkIndex(0),
            reason: RejectReason::Busy
        }]
    );
    assert_eq!(uploads(&actions).len(), 1, "{actions:?}");
}
