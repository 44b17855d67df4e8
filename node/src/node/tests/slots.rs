//! Upload slots sized from the measured uplink, and overdue uploads that
//! give theirs to the next one.

use super::uploads::{fetcher, request, sent, share};
use super::*;
use minimodel_wire::RejectReason;

/// Runs uploads to `peers`, each keeping two requests of its own chunks
/// (16 apart) in the queue, every upload finishing `upload_ms` after it
/// started, until `until_ms`; returns the most uploads under way at once
/// from `settle_ms` on.
fn run_uploads(
    h: &mut Harness,
    peers: &[LinkId],
    upload_ms: u64,
    until_ms: u64,
    settle_ms: u64,
) -> usize {
    let mut next: Vec<u32> = (0..peers.len() as u32).map(|i| 16 * i).collect();
    for (i, &link) in peers.iter().enumerate() {
        request(h, link, &[next[i], next[i] + 1]);
        next[i] += 2;
    }
    let mut active: Vec<(LinkId, u32, u64)> = Vec::new();
    let mut most = 0;
    let mut now = 0;
    while now <= until_ms {
        h.advance(now);
        let done: Vec<(LinkId, u32)> = active
            .iter()
            .filter(|(_, _, at)| now >= at + upload_ms)
            .map(|(link, chunk, _)| (*link, *chunk))
            .collect();
        active.retain(|(_, _, at)| now < at + upload_ms);
        for (link, chunk) in done {
            sent(h, link, chunk);
            let i = peers.iter().position(|p| *p == link).expect("a peer");
            request(h, link, &[next[i]]);
            next[i] += 1;
        }
        for (link, chunk) in uploads(&h.take()) {
            active.push((link, chunk, now));
        }
        assert!(!active.is_empty(), "the uplink idled at {now} ms");
        if now >= settle_ms {
            most = most.max(active.len());
        }
        now += 5;
    }
    most
}

#[test]
fn the_uplink_meter_sizes_the_slots_and_the_queue() {
    let config = NodeConfig::default();
    assert_eq!(
        (config.upload_slot_time, config.upload_queue_time),
        (
            Some(Duration::from_millis(750)),
            Some(Duration::from_secs(10))
        ),
        "the numbers below assume these"
    );
    // Unmeasured: one upload at a time, `upload_slots` requests queued.
    let mut h = Harness::new(Kind::Seeder, 64, config.clone());
    let peers: Vec<LinkId> = (1..=4).map(|n| h.connect_in(&fetcher(n, 64))).collect();
    h.take();
    for (i, &link) in peers.iter().enumerate() {
        let base = 16 * i as u32;
        request(&mut h, link, &(base..base + 2).collect::<Vec<u32>>());
    }
    let actions = h.take();
    assert_eq!(uploads(&actions).len(), 1, "{actions:?}");
    request(&mut h, peers[0], &[2, 3]);
    assert_eq!(
        messages_to(&h.take(), peers[0]),
        [Message::Reject {
            chunk: ChunkIndex(3),
            reason: RejectReason::Busy
        }],
        "1 under way, and 8 queued fill the unmeasured queue"
    );
    // A fast uplink (1 MiB in 25 ms, 42 MB/s) earns every slot, once
    // half a second of uploads measured it.
    let mut fast = Harness::new(Kind::Seeder, 64, config.clone());
    let peers: Vec<LinkId> = (1..=4).map(|n| fast.connect_in(&fetcher(n, 64))).collect();
    fast.take();
    let most = run_uploads(&mut fast, &peers, 25, 700, 600);
    assert!(
        most > 1,
        "a measured fast uplink uploads more at once: {most}"
    );
    // A slow one (1 MiB in 2 s) keeps one at a time and queues what it
    // sends in 10 s: 5 chunks.
    let mut slow = Harness::new(Kind::Seeder, 64, config);
    let peers: Vec<LinkId> = (1..=4).map(|n| slow.connect_in(&fetcher(n, 64))).collect();
    slow.take();
    let most = run_uploads(&mut slow, &peers, 2_000, 4_000, 0);
    assert_eq!(most, 1, "a slow uplink sends one chunk after another");
    let queued = slow.core.uploads.queued();
    assert!(queued <= 5, "{queued} queued");
    request(&mut slow, peers[3], &[60]);
    let busy = messages_to(&slow.take(), peers[3]);
    assert_eq!(
        busy,
        [Message::Reject {
            chunk: ChunkIndex(60),
            reason: RejectReason::Busy
        }],
        "{queued} queued: the measured queue of 5 is full"
    );
}

#[test]
fn at_a_full_queue_a_rarer_chunk_takes_the_place_of_a_commoner_one() {
    let mut h = Harness::new(Kind::Seeder, 64, NodeConfig::default());
    let peers: Vec<LinkId> = (1..=4).map(|n| h.connect_in(&fetcher(n, 64))).collect();
    // Two peers hold chunk 40.
    for &link in &peers[1..3] {
        h.core.handle_message(
            link,
            Message::Have {
                chunk: ChunkIndex(40),
            },
            h.now,
        );
    }
    h.take();
    // One upload under way, then the unmeasured queue of 8 filled, one of
    // them for chunk 40.
    request(&mut h, peers[0], &[10]);
    assert_eq!(uploads(&h.take()).len(), 1);
    request(&mut h, peers[0], &[40, 11, 12, 13]);
    request(&mut h, peers[3], &[20, 21, 22, 23]);
    assert!(h.take().is_empty());
    // Chunk 30 is only here: it is queued, and chunk 40's request gives
    // its place up (busy: its peer asks one of the two that hold it).
    request(&mut h, peers[3], &[30]);
    let actions = h.take();
    assert_eq!(
        messages_to(&actions, peers[0]),
        [Message::Reject {
            chunk: ChunkIndex(40),
            reason: RejectReason::Busy
        }]
    );
    assert_eq!(messages_to(&actions, peers[3]), []);
    // Nothing queued is commoner than chunk 31: busy.
    request(&mut h, peers[3], &[31]);
    assert_eq!(
        messages_to(&h.take(), peers[3]),
        [Message::Reject {
            chunk: ChunkIndex(31),
            reason: RejectReason::Busy
        }]
    );
    assert_eq!(h.core.uploads.queued(), 8);
}

/// Measures a slow uplink (1 MiB in 2 s, one upload at a time) with
/// `config`, then lets the upload under way at 4 s run on without end;
/// returns when each later upload started (ms) up to 12 s.
fn starts_beside_an_upload_that_never_ends(config: NodeConfig, grant: Option<usize>) -> Vec<u64> {
    // No serving report wakes the node on whole seconds: the overdue
    // upload's own deadline must.
    let config = NodeConfig {
        serving_report_every: Duration::from_secs(3600),
        ..config
    };
    let mut h = Harness::new(Kind::Seeder, 64, config);
    if let Some(slots) = grant {
        h.core.set_share(share(slots, None), h.now);
    }
    let peers: Vec<LinkId> = (1..=4).map(|n| h.connect_in(&fetcher(n, 64))).collect();
    h.take();
    assert_eq!(run_uploads(&mut h, &peers, 2_000, 4_000, 0), 1);
    assert_eq!(h.core.uploads.active.len(), 1, "one under way at 4 s");
    let mut starts = Vec::new();
    let mut next = 40;
    for now in (4_005..=12_000).step_by(5) {
        h.advance(now);
        let actions = h.take();
        assert!(
            !actions
                .iter()
                .any(|action| matches!(action, Action::CancelUpload { .. })),
            "the overdue upload goes on: {actions:?}"
        );
        for (link, _) in uploads(&actions) {
            starts.push(now);
            request(&mut h, link, &[next]);
            next += 1;
        }
    }
    assert_eq!(h.core.uploads.active.len(), 1 + starts.len());
    starts
}

#[test]
fn an_overdue_upload_gives_its_slot_to_the_next_one_and_goes_on() {
    let config = NodeConfig::default();
    assert_eq!(
        config.upload_overdue,
        Some(1.5),
        "the times below assume it"
    );
    // The upload started at 4 s takes 2 s at the measured rate: at 7 s it
    // is overdue and the next starts beside it. A third never does: one
    // slot lets two run at once, overdue ones included.
    let starts = starts_beside_an_upload_that_never_ends(config.clone(), None);
    assert_eq!(starts, [7_000], "{starts:?}");
    // Never more than `upload_slots` at once, overdue or not.
    let starts = starts_beside_an_upload_that_never_ends(
        NodeConfig {
            upload_slots: 1,
            ..config.clone()
        },
        None,
    );
    assert!(starts.is_empty(), "{starts:?}");
    // On a shared endpoint, never more than the gate grants: a grant of
    // one keeps one at a time; a grant of four lets the next start.
    let starts = starts_beside_an_upload_that_never_ends(config.clone(), Some(1));
    assert!(starts.is_empty(), "{starts:?}");
    let starts = starts_beside_an_upload_that_never_ends(config.clone(), Some(4));
    assert_eq!(starts, [7_000], "{starts:?}");
    // Off: the upload holds its slot until it ends.
    let starts = starts_beside_an_upload_that_never_ends(
        NodeConfig {
            upload_overdue: None,
            ..config
        },
        None,
    );
    assert!(starts.is_empty(), "{starts:?}");
}
