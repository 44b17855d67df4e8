//! The downloading side: piece streams, verification, checkpoints, the
//! trailing hasher, delivery, repair and seeding after.

use super::*;
use crate::node::fetching::{Finish, PieceEnd};
use crate::report::{Blame, Departure, Failure};
use minimodel_wire::RejectReason;

fn checkpoints(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Checkpoint { release_below, .. } => Some(*release_below),
            _ => None,
        })
        .collect()
}

fn disconnects(reports: &[NodeReport]) -> Vec<(PeerId, Departure, Blame)> {
    reports
        .iter()
        .filter_map(|report| match report {
            NodeReport::PeerDisconnected {
                peer,
                reason,
                blame,
                ..
            } => Some((*peer, reason.clone(), *blame)),
            _ => None,
        })
        .collect()
}

/// Chunks `0..n` are verified: the length of the verified prefix.
fn verified_prefix(h: &Harness) -> u32 {
    (0..h.core.have().chunk_count())
        .take_while(|c| h.core.have().get(ChunkIndex(*c)))
        .count() as u32
}

/// A piece arrives, is verified and stored, and the trailing hasher keeps
/// up with it.
fn deliver_hashed(h: &mut Harness, link: LinkId, chunk: u32) {
    h.deliver(link, chunk);
    let prefix = verified_prefix(h);
    h.core.handle_trailing(prefix, h.now);
}

/// A fetch with two seeders connected; returns their links and the
/// requests sent to each.
fn two_seeders(h: &mut Harness, chunks: u32) -> ([LinkId; 2], Vec<(LinkId, u32)>) {
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", chunks));
    let b = h.connect_out(&Remote::seeder(2, "62.2.2.2:4433", chunks));
    h.take_reports();
    ([a, b], requests(&h.take()))
}

#[test]
fn an_unrequested_piece_is_a_violation_closed_without_a_ban() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, _], sent) = two_seeders(&mut h, 16);
    let asked: Vec<u32> = sent
        .iter()
        .filter(|(l, _)| *l == a)
        .map(|(_, c)| *c)
        .collect();
    let never = (0..16).find(|c| !asked.contains(c)).unwrap();
    assert_eq!(
        h.core
            .handle_piece_header(a, ChunkIndex(never), 0, Duration::ZERO, h.now),
        PieceVerdict::Stop
    );
    assert_eq!(closes(&h.take()), [(a, GoodbyeReason::ProtocolViolation)]);
    let gone = disconnects(&h.take_reports());
    assert!(
        matches!(gone.as_slice(), [(id, Departure::Violation(_), Blame::Peer)] if *id == testing::peer_id(1))
    );
    assert_eq!(h.core.book.banned_count(), 0, "dropped, not banned");
}

#[test]
fn a_piece_from_an_offset_this_node_never_asks_for_is_a_violation() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, _], sent) = two_seeders(&mut h, 16);
    // A chunk asked for whole, answered with its bytes from an offset on.
    let (_, chunk) = *sent.iter().find(|(l, _)| *l == a).unwrap();
    assert_eq!(
        h.core
            .handle_piece_header(a, ChunkIndex(chunk), 100, Duration::ZERO, h.now),
        PieceVerdict::Stop
    );
    assert_eq!(closes(&h.take()), [(a, GoodbyeReason::ProtocolViolation)]);
    let gone = disconnects(&h.take_reports());
    assert!(
        matches!(gone.as_slice(), [(_, Departure::Violation(_), Blame::Peer)]),
        "{gone:?}"
    );
}

/// A fetch that holds the first 1000 bytes of chunk 5.
fn holding_the_start_of_chunk_5() -> Harness {
    Harness::with_edited_start(
        Kind::Fetch,
        16,
        NodeConfig::default(),
        HaveBitfield::new(16),
        false,
        Vec::new(),
        |start| {
            start.prefixes.insert(5, 1000);
        },
    )
}

#[test]
fn a_start_held_here_is_asked_for_from_its_offset_of_v3_peers_and_whole_of_v2_ones() {
    let mut h = holding_the_start_of_chunk_5();
    let old = h.connect_out(
        &Remote::seeder(1, "62.1.1.1:4433", 16)
            .with_chunks(&[5])
            .speaking_v2(),
    );
    let actions = h.take();
    assert_eq!(requests(&actions), [(old, 5)]);
    assert!(requests_from(&actions).is_empty());

    let mut h = holding_the_start_of_chunk_5();
    let new = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 16).with_chunks(&[5, 6]));
    let actions = h.take();
    assert_eq!(requests_from(&actions), [(new, 5, 1000)]);
    assert_eq!(requests(&actions), [(new, 6)]);
    // Its rest is read; a whole piece of it is not what was asked.
    assert_eq!(
        h.core
            .handle_piece_header(new, ChunkIndex(5), 0, Duration::ZERO, h.now),
        PieceVerdict::Stop
    );
    assert_eq!(
        h.core
            .handle_piece_header(new, ChunkIndex(5), 1000, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    assert!(closes(&h.take()).is_empty());
}

#[test]
fn a_chunk_joined_from_a_start_held_here_that_fails_blames_nobody_and_is_asked_whole() {
    let mut h = holding_the_start_of_chunk_5();
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 16).with_chunks(&[5]));
    assert_eq!(requests_from(&h.take()), [(a, 5, 1000)]);
    let chunk = ChunkIndex(5);
    assert_eq!(
        h.core
            .handle_piece_header(a, chunk, 1000, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    assert_eq!(
        h.core.handle_piece_arrived(a, chunk, h.now),
        PieceVerdict::Accept
    );
    h.core.handle_verified_from(
        a,
        chunk,
        1000,
        VerifyOutcome::Bad(minimodel_verifier::chunk::ChunkError::Proof(
            minimodel_verifier::merkle::ProofError::RootMismatch { index: 5 },
        )),
        h.now,
    );
    let actions = h.take();
    assert!(closes(&actions).is_empty(), "nobody is blamed");
    assert!(h.is_connected(a));
    assert_eq!(h.core.book.banned_count(), 0);
    assert_eq!(requests(&actions), [(a, 5)], "asked for whole now");
    // A rest sent before the whole chunk was asked for (it crossed) is
    // stopped, not a violation.
    assert_eq!(
        h.core
            .handle_piece_header(a, chunk, 1000, Duration::ZERO, h.now),
        PieceVerdict::Stop
    );
    assert!(closes(&h.take()).is_empty());
    assert!(h.is_connected(a));
    // Whole, and bad: that is the peer's.
    h.deliver_bad(a, 5);
    assert_eq!(h.core.book.banned_count(), 1);
}

#[test]
fn a_reset_piece_blames_nobody_and_its_chunk_is_asked_for_again() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, b], sent) = two_seeders(&mut h, 16);
    let (_, chunk) = *sent.iter().find(|(l, _)| *l == a).unwrap();
    h.advance(100);
    assert_eq!(
        h.core
            .handle_piece_header(a, ChunkIndex(chunk), 0, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    h.core
        .handle_piece_failed(a, Some(ChunkIndex(chunk)), PieceEnd::Reset, h.now);
    let actions = h.take();
    assert!(closes(&actions).is_empty() && aborts(&actions).is_empty());
    assert!(h.is_connected(a) && h.is_connected(b));
    let reports = h.take_reports();
    assert!(reports.is_empty(), "{reports:?}");
    let again = requests(&actions);
    assert!(
        again.iter().any(|(_, c)| *c == chunk),
        "chunk {chunk} asked for again: {again:?}"
    );
    // And it arrives from whoever was asked.
    let (from, _) = *again.iter().find(|(_, c)| *c == chunk).unwrap();
    h.deliver(from, chunk);
    assert!(h.core.have().get(ChunkIndex(chunk)));
}

#[test]
fn a_second_stream_for_the_same_chunk_is_stopped() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, _], sent) = two_seeders(&mut h, 16);
    let (_, chunk) = *sent.iter().find(|(l, _)| *l == a).unwrap();
    let chunk = ChunkIndex(chunk);
    assert_eq!(
        h.core
            .handle_piece_header(a, chunk, 0, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    assert_eq!(
        h.core
            .handle_piece_header(a, chunk, 0, Duration::ZERO, h.now),
        PieceVerdict::Stop
    );
    assert!(closes(&h.take()).is_empty());
    assert!(h.is_connected(a));
    // The first stream still counts.
    assert_eq!(
        h.core.handle_piece_arrived(a, chunk, h.now),
        PieceVerdict::Accept
    );
    h.core
        .handle_verified(a, chunk, VerifyOutcome::Stored, h.now);
    assert!(h.core.have().get(chunk));
}

#[test]
fn a_piece_cancelled_in_endgame_is_stopped_without_blame() {
    // Four chunks: the first seeder is asked for all of them, the second
    // for duplicates (endgame).
    let mut h = Harness::new(Kind::Fetch, 4, NodeConfig::default());
    let ([a, b], sent) = two_seeders(&mut h, 4);
    let from_a: Vec<u32> = sent
        .iter()
        .filter(|(l, _)| *l == a)
        .map(|(_, c)| *c)
        .collect();
    let from_b: Vec<u32> = sent
        .iter()
        .filter(|(l, _)| *l == b)
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(from_a.len(), 4);
    assert!(from_b.len() >= 2, "endgame duplicates: {from_b:?}");
    let (first, second) = (from_b[0], from_b[1]);
    // B's stream for `second` is under way when A delivers it.
    assert_eq!(
        h.core
            .handle_piece_header(b, ChunkIndex(second), 0, Duration::ZERO, h.now),
        PieceVerdict::Accept
    );
    h.deliver(a, first);
    h.deliver(a, second);
    let cancels: Vec<Message> = messages_to(&h.take(), b);
    assert!(cancels.contains(&Message::Cancel {
        chunk: ChunkIndex(first)
    }));
    assert!(cancels.contains(&Message::Cancel {
        chunk: ChunkIndex(second)
    }));
    // A piece of `first` that crossed the Cancel is stopped at its header,
    // the one of `second` at its end; nobody is blamed.
    assert_eq!(
        h.core
            .handle_piece_header(b, ChunkIndex(first), 0, Duration::ZERO, h.now),
        PieceVerdict::Stop
    );
    assert_eq!(
        h.core.handle_piece_arrived(b, ChunkIndex(second), h.now),
        PieceVerdict::Stop
    );
    assert!(closes(&h.take()).is_empty());
    assert!(h.is_connected(b));
    assert!(disconnects(&h.take_reports()).is_empty());
}

#[test]
fn a_bad_chunk_bans_its_sender_and_comes_from_another_peer() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, b], sent) = two_seeders(&mut h, 16);
    let (_, chunk) = *sent.iter().find(|(l, _)| *l == a).unwrap();
    h.deliver_bad(a, chunk);
    assert_eq!(closes(&h.take()), [(a, GoodbyeReason::BadData)]);
    // B's pipeline is full; its next free slot goes to the chunk that
    // was started and handed back.
    let (_, of_b) = *sent.iter().find(|(l, _)| *l == b).unwrap();
    h.deliver(b, of_b);
    assert_eq!(requests_to(&h.take(), b), [chunk]);
    h.deliver(b, chunk);
    assert!(h.core.have().get(ChunkIndex(chunk)));
    assert!(h.core.book.is_banned(&testing::peer_id(1)));
    let reports = h.take_reports();
    assert!(
        reports
            .iter()
            .any(|report| matches!(report, NodeReport::Banned { chunk: c, .. } if *c == chunk))
    );
    let gone = disconnects(&reports);
    assert!(
        matches!(
            gone.as_slice(),
            [(_, Departure::BadData { .. }, Blame::Peer)]
        ),
        "{gone:?}"
    );
    // Never dialed again.
    h.advance(120_000);
    assert!(
        dials(&h.take())
            .iter()
            .all(|dial| dial.addr != sa("62.1.1.1:4433"))
    );
    let stats = h.core.transfer().unwrap();
    let liar = stats
        .peers
        .iter()
        .find(|p| p.id == testing::peer_id(1))
        .unwrap();
    assert_eq!((liar.download.bad_chunks, liar.banned), (1, true));
}

#[test]
fn a_failed_write_ends_the_node_with_a_storage_failure() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, _], sent) = two_seeders(&mut h, 16);
    let (_, chunk) = *sent.iter().find(|(l, _)| *l == a).unwrap();
    h.core
        .handle_piece_header(a, ChunkIndex(chunk), 0, Duration::ZERO, h.now);
    h.core.handle_piece_arrived(a, ChunkIndex(chunk), h.now);
    h.core.handle_verified(
        a,
        ChunkIndex(chunk),
        VerifyOutcome::StoreFailed(disk_full()),
        h.now,
    );
    let actions = h.take();
    assert_eq!(
        ends_after_saving(&mut h, &actions),
        [End::Failed(Failure::Storage(disk_full()))]
    );
    assert_eq!(closes(&actions).len(), 2, "Goodbye to both peers");
    assert!(
        ends(&actions).is_empty(),
        "the end waits for the Goodbyes to be acknowledged"
    );
    assert_eq!(h.core.book.banned_count(), 0, "our disk is nobody's fault");
    assert_eq!(h.core.poll_timeout(h.now), None);
}

#[test]
fn a_busy_reject_backs_off_without_a_busy_loop() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 16));
    let asked = requests_to(&h.take(), a);
    for chunk in &asked {
        h.core.handle_message(
            a,
            Message::Reject {
                chunk: ChunkIndex(*chunk),
                reason: RejectReason::Busy,
            },
            h.now,
        );
    }
    assert!(requests_to(&h.take(), a).is_empty(), "it said busy");
    h.advance(499);
    assert!(requests_to(&h.take(), a).is_empty());
    h.advance(500);
    assert!(
        !requests_to(&h.take(), a).is_empty(),
        "asked again after the back-off"
    );
    // Long after the back-off, the node still sleeps between deadlines.
    h.advance(5_000);
}

/// Delivers, from `link`, every chunk requested of it in `actions` and
/// whatever is requested in turn; returns the actions seen after the last
/// delivery.
fn serve_all(h: &mut Harness, link: LinkId, mut actions: Vec<Action>) -> Vec<Action> {
    loop {
        let asked = requests_to(&actions, link);
        if asked.is_empty() {
            return actions;
        }
        for chunk in asked {
            deliver_hashed(h, link, chunk);
        }
        actions = h.take();
        // Checkpoints end at once (the delivery waits for one running).
        if !checkpoints(&actions).is_empty() {
            h.core.handle_checkpointed(Ok(()), h.now);
            actions.extend(h.take());
        }
    }
}

#[test]
fn checkpoints_are_paced_one_at_a_time_and_release_only_what_is_hashed() {
    let config = NodeConfig::default();
    let every = config.checkpoint_every.as_millis() as u64;
    let mut h = Harness::new(Kind::Fetch, 128, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 128));
    let mut queue: std::collections::VecDeque<u32> = requests_to(&h.take(), a).into();
    let mut hashed = 0u32;
    let mut running_since: Option<u64> = None;
    let mut finished = 0;
    // One chunk every 100 ms; the trailing hasher stays three chunks
    // behind; the first checkpoint takes 3 s to finish, later ones 10 ms.
    for step in 1..=100u64 {
        h.advance(step * 100);
        if let Some(chunk) = queue.pop_front() {
            h.deliver(a, chunk);
            hashed = hashed.max(verified_prefix(&h).saturating_sub(3));
            h.core.handle_trailing(hashed, h.now);
        }
        let actions = h.take();
        queue.extend(requests_to(&actions, a));
        for release in checkpoints(&actions) {
            assert!(
                running_since.is_none(),
                "a second checkpoint while one runs"
            );
            assert!(
                release <= u64::from(hashed) * u64::from(CHUNK),
                "released unhashed bytes"
            );
            running_since = Some(h.elapsed(h.now));
        }
        if let Some(since) = running_since {
            let takes = if finished == 0 { 3_000 } else { 10 };
            if h.elapsed(h.now) >= since + takes {
                h.core.handle_checkpointed(Ok(()), h.now);
                running_since = None;
                finished += 1;
            }
        }
    }
    let seen: Vec<(u64, u64, u64)> = h
        .history
        .iter()
        .filter_map(|(at, action)| match action {
            Action::Checkpoint {
                release_from,
                release_below,
            } => Some((h.elapsed(*at), *release_from, *release_below)),
            _ => None,
        })
        .collect();
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(seen[0].0, every, "the first one after checkpoint_every");
    assert!(seen[1].0 >= seen[0].0 + 3_000, "not while the first ran");
    assert_eq!(seen[0].1, 0, "the first release starts at the file's start");
    for pair in seen.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= every, "{seen:?}");
        assert!(pair[1].2 >= pair[0].2, "release_below never goes back");
        assert_eq!(
            pair[1].1, pair[0].2,
            "each release starts where the one before ended"
        );
    }
}

/// Chunks of a fetch that ask for checkpoints every four chunks and never
/// on the clock; returns the harness and the seeder's link.
fn fast_fetch(chunks: u32) -> (Harness, LinkId) {
    let config = NodeConfig {
        checkpoint_bytes: 4 * u64::from(CHUNK),
        checkpoint_every: Duration::from_secs(3600),
        ..NodeConfig::default()
    };
    let mut h = Harness::new(Kind::Fetch, chunks, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", chunks));
    (h, a)
}

fn delivers(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|action| matches!(action, Action::Deliver))
        .count()
}

#[test]
fn a_checkpoint_starts_as_the_chunk_that_fills_checkpoint_bytes_is_stored() {
    let (mut h, a) = fast_fetch(16);
    let mut queue: std::collections::VecDeque<u32> = requests_to(&h.take(), a).into();
    let mut at = Vec::new();
    let mut stored = 0;
    // No time passes: only the bytes can start a checkpoint.
    while let Some(chunk) = queue.pop_front() {
        deliver_hashed(&mut h, a, chunk);
        stored += 1;
        let actions = h.take();
        queue.extend(requests_to(&actions, a));
        if !checkpoints(&actions).is_empty() {
            at.push(stored);
            h.core.handle_checkpointed(Ok(()), h.now);
        }
        if stored == 16 {
            assert_eq!(delivers(&actions), 1, "the last chunk starts the delivery");
        }
    }
    assert_eq!(stored, 16);
    // After 4, 8 and 12 chunks; the 16th is left to the final sync.
    assert_eq!(at, [4, 8, 12]);
}

#[test]
fn the_delivery_waits_for_a_checkpoint_still_running() {
    let (mut h, a) = fast_fetch(8);
    let mut queue: std::collections::VecDeque<u32> = requests_to(&h.take(), a).into();
    let mut running = false;
    let mut stored = 0;
    while let Some(chunk) = queue.pop_front() {
        deliver_hashed(&mut h, a, chunk);
        stored += 1;
        let actions = h.take();
        queue.extend(requests_to(&actions, a));
        running |= !checkpoints(&actions).is_empty();
        if stored < 8 {
            assert_eq!(delivers(&actions), 0);
        } else {
            // The checkpoint started at chunk 4 never reported back.
            assert!(running);
            assert_eq!(delivers(&actions), 0, "not while the checkpoint runs");
        }
    }
    assert_eq!(stored, 8);
    assert!(h.core.is_finishing(), "a stop now waits");
    // A checkpoint slower than give_up_after does not fail the download.
    let give_up = NodeConfig::default().give_up_after.as_millis() as u64;
    h.advance(give_up + 1_000);
    assert!(ends(&h.take()).is_empty(), "no give-up while it syncs");
    h.core.handle_checkpointed(Ok(()), h.now);
    let actions = h.take();
    assert_eq!(delivers(&actions), 1, "once it has ended");
    assert!(checkpoints(&actions).is_empty());
    assert!(h.core.is_finishing());
}

#[test]
fn bytes_that_arrived_during_a_checkpoint_start_the_next_when_it_ends() {
    let (mut h, a) = fast_fetch(16);
    let mut queue: std::collections::VecDeque<u32> = requests_to(&h.take(), a).into();
    let mut started = 0;
    let mut stored = 0;
    // The first checkpoint runs while chunks 5 to 9 arrive.
    while stored < 9 {
        let chunk = queue.pop_front().expect("a chunk is asked for");
        deliver_hashed(&mut h, a, chunk);
        stored += 1;
        let actions = h.take();
        queue.extend(requests_to(&actions, a));
        started += checkpoints(&actions).len();
    }
    assert_eq!(started, 1, "one at a time");
    h.core.handle_checkpointed(Ok(()), h.now);
    assert_eq!(checkpoints(&h.take()).len(), 1, "five chunks were due");
}

#[test]
fn no_checkpoint_without_new_bytes() {
    let mut h = Harness::new(Kind::Fetch, 64, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 64));
    let asked = requests_to(&h.take(), a);
    h.deliver(a, asked[0]);
    h.advance(2_000);
    assert_eq!(checkpoints(&h.take()).len(), 1);
    h.core.handle_checkpointed(Ok(()), h.now);
    // Quiet (less than a request timeout): nothing new to save.
    h.advance(12_000);
    assert!(checkpoints(&h.take()).is_empty(), "nothing new to save");
    // New bytes after a long pause are saved at once.
    h.deliver(a, asked[1]);
    h.advance(12_001);
    assert_eq!(checkpoints(&h.take()).len(), 1);
    h.core.handle_checkpointed(Err(disk_full()), h.now);
    let actions = h.take();
    assert_eq!(
        ends_after_saving(&mut h, &actions),
        [End::Failed(Failure::Storage(disk_full()))]
    );
}

#[test]
fn a_chunk_s_check_time_runs_from_its_arrival_to_its_verdict() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    let asked = requests_to(&h.take(), a);
    h.advance(1_000);
    let chunk = h.arrive(a, asked[0]);
    h.advance(1_003);
    h.core
        .handle_verified(a, chunk, VerifyOutcome::Stored, h.now);
    let download = h.core.download.as_ref().expect("a download");
    let session = download.downloader.peer(a).expect("the seeder's session");
    assert_eq!(session.check_time(), Duration::from_millis(3));
}

#[test]
fn requests_wait_while_the_trailing_hasher_lags() {
    let config = NodeConfig::default();
    let lag_chunks = (config.trailing_lag / u64::from(CHUNK)) as u32;
    let mut h = Harness::new(Kind::Fetch, 32, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 32));
    let mut asked: std::collections::VecDeque<u32> = requests_to(&h.take(), a).into();
    assert_eq!(Vec::from(asked.clone()), [0, 1, 2, 3], "front to back");
    // The hasher never reports: once the verified prefix is more than the
    // lag ahead of it, nothing new is asked for.
    let mut delivered = 0;
    while let Some(chunk) = asked.pop_front() {
        h.deliver(a, chunk);
        delivered += 1;
        let more = requests_to(&h.take(), a);
        if delivered > lag_chunks {
            assert!(
                more.is_empty(),
                "asked for {more:?} with {delivered} chunks unhashed"
            );
        }
        asked.extend(more);
    }
    assert!(delivered > lag_chunks);
    h.advance(5_000);
    assert!(requests_to(&h.take(), a).is_empty(), "still held");
    // It catches up: requests resume.
    h.core.handle_trailing(delivered, h.now);
    assert!(!requests_to(&h.take(), a).is_empty());
}

#[test]
fn delivery_is_asked_for_once_and_ends_the_node() {
    let mut h = Harness::new(Kind::Fetch, 8, NodeConfig::default());
    let ([a, b], sent) = two_seeders(&mut h, 8);
    let mut all = Vec::new();
    for chunk in 0..8 {
        let (owner, _) = *sent
            .iter()
            .find(|(_, c)| *c == chunk)
            .expect("every chunk asked for");
        h.deliver(owner, chunk);
        all.extend(h.take());
    }
    assert_eq!(all.iter().filter(|a| **a == Action::Deliver).count(), 1);
    let stored: Vec<u32> = all
        .iter()
        .filter_map(|action| match action {
            Action::HashStored { chunk } => Some(chunk.0),
            _ => None,
        })
        .collect();
    assert_eq!(stored.len(), 8, "each chunk goes to the hasher once");
    h.core.handle_finished(delivered(), h.now);
    let actions = h.take();
    assert_eq!(
        closes(&actions),
        [(a, GoodbyeReason::Done), (b, GoodbyeReason::Done)]
    );
    assert_eq!(ends_after_saving(&mut h, &actions), [End::Done]);
    assert_eq!(h.core.poll_timeout(h.now), None);
}

#[test]
fn chunks_damaged_on_disk_are_fetched_again_up_to_a_limit() {
    let config = NodeConfig::default();
    let max = config.max_repairs_per_chunk;
    let mut h = Harness::new(Kind::Fetch, 8, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    let actions = h.take();
    let actions = serve_all(&mut h, a, actions);
    assert!(actions.contains(&Action::Deliver));
    for round in 1..=max {
        h.advance(u64::from(round) * 1_000);
        h.core
            .handle_finished(Finish::Damaged(vec![ChunkIndex(2), ChunkIndex(5)]), h.now);
        let actions = h.take();
        assert!(actions.contains(&Action::RestartHash), "round {round}");
        let mut asked = requests_to(&actions, a);
        asked.sort();
        assert_eq!(asked, [2, 5], "round {round}");
        assert!(!h.core.have().get(ChunkIndex(2)));
        let after = serve_all(&mut h, a, actions);
        assert!(
            after.contains(&Action::Deliver),
            "delivered again in round {round}"
        );
    }
    h.core
        .handle_finished(Finish::Damaged(vec![ChunkIndex(2)]), h.now);
    let actions = h.take();
    match ends_after_saving(&mut h, &actions).as_slice() {
        [End::Failed(Failure::Damaged { bad: 1, cause })] => {
            assert_eq!(
                *cause,
                crate::report::DamageCause::Repeated {
                    chunk: 2,
                    times: max + 1
                }
            );
        }
        other => panic!("{other:?}"),
    }
    let stats = h.core.transfer().unwrap();
    assert_eq!(stats.chunks_refetched, u64::from(max) * 2);
}

#[test]
fn seeding_after_delivery_goes_on_serving_and_stops_dialing() {
    let mut h = Harness::with_start(
        Kind::ServingFetch,
        8,
        NodeConfig::default(),
        HaveBitfield::new(8),
        true,
    );
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 8));
    let actions = h.take();
    assert!(serve_all(&mut h, a, actions).contains(&Action::Deliver));
    h.core.handle_finished(delivered(), h.now);
    assert!(ends(&h.take()).is_empty(), "it seeds on");
    let fetcher = h.connect_in(&Remote::fetcher(2, "62.2.2.2:5000", 8));
    h.core.handle_message(
        fetcher,
        Message::Request {
            chunk: ChunkIndex(3),
        },
        h.now,
    );
    assert_eq!(uploads(&h.take()), [(fetcher, 3)]);
    h.core.add_peer(
        KnownPeer {
            id: Some(testing::peer_id(3)),
            addrs: vec![sa("62.3.3.3:4433")],
            source: Source::Offer,
        },
        h.now,
    );
    h.advance(10_000);
    assert!(dials(&h.take()).is_empty(), "nothing left to fetch");
}

#[test]
fn metrics_count_verified_and_bad_chunks_per_peer_and_what_is_in_flight() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let ([a, b], sent) = two_seeders(&mut h, 16);
    let before = h.core.metrics();
    assert_eq!(before.peers_connected, 2);
    assert_eq!(before.artifact_bytes, 16 * u64::from(CHUNK));
    assert_eq!(before.in_flight_bytes, sent.len() as u64 * u64::from(CHUNK));
    assert!(before.in_flight_bytes > 0);

    let from_a: Vec<u32> = sent
        .iter()
        .filter(|(l, _)| *l == a)
        .map(|(_, c)| *c)
        .collect();
    let (_, from_b) = *sent.iter().find(|(l, _)| *l == b).unwrap();
    h.deliver(a, from_a[0]);
    h.deliver(a, from_a[1]);
    h.deliver_bad(b, from_b);
    let after = h.core.metrics();
    assert_eq!(after.chunks_verified, 2);
    assert_eq!(after.verified_bytes, 2 * u64::from(CHUNK));
    assert_eq!(after.bad_chunks, 1);
    assert_eq!(after.peers_banned, 1);
    assert_eq!(after.peers_connected, 1, "the liar is gone");
    let of = |n: u8| {
        after
            .peers
            .iter()
            .find(|p| p.id == testing::peer_id(n))
            .cloned()
    };
    assert_eq!(of(1).unwrap().downloaded_bytes(), 2 * u64::from(CHUNK));
    assert_eq!(of(2).map(|p| p.downloaded_bytes()), Some(0));
}

/// A full disk, as the storage would report it.
/// The final checks passed.
fn delivered() -> Finish {
    Finish::Delivered {
        path: "out/test-model.slm".into(),
        receipt: "out/test-model.receipt.json".into(),
    }
}

#[test]
fn the_first_progress_report_names_the_rate_since_the_start() {
    let config = NodeConfig::default();
    let every = config.progress_every.as_millis() as u64;
    let mut h = Harness::new(Kind::Fetch, 16, config);
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 16));
    let asked = requests_to(&h.take(), a);
    h.deliver(a, asked[0]);
    h.deliver(a, asked[1]);
    h.take_reports();
    h.advance(every);
    let rates: Vec<f64> = h
        .take_reports()
        .into_iter()
        .filter_map(|report| match report {
            NodeReport::Progress {
                verified_bytes,
                rate,
                ..
            } => Some(rate / verified_bytes as f64),
            _ => None,
        })
        .collect();
    // Two chunks in the first `progress_every`: their bytes over that time.
    let expected = 1_000.0 / every as f64;
    assert_eq!(rates.len(), 1, "{rates:?}");
    assert!((rates[0] - expected).abs() < 1e-9, "{rates:?}");
}

#[test]
fn the_receive_window_covers_what_is_asked_of_a_peer() {
    // The bytes behind a lost packet wait unread for its repair: a
    // connection window smaller than the chunks asked of the peer would
    // hold it back. It grows with what is asked, in steps of a quarter at
    // least, and never shrinks.
    let mut h = Harness::new(Kind::Fetch, 64, NodeConfig::default());
    let a = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 64));
    let actions = h.take();
    let asked = requests(&actions).len() as u64;
    assert!(asked >= 2, "{actions:?}");
    let windows: Vec<u64> = actions
        .iter()
        .filter_map(|action| match action {
            Action::ReceiveWindow { link, bytes } if *link == a => Some(*bytes),
            _ => None,
        })
        .collect();
    assert!(
        windows.windows(2).all(|w| w[1] >= w[0] + w[0] / 4),
        "{windows:?}"
    );
    let last = *windows.last().expect("a window");
    assert!(last >= (asked + 1) * u64::from(CHUNK), "{last} for {asked}");
    // A chunk in and one more asked in its place: no new window.
    let (_, chunk) = requests(&actions)[0];
    h.deliver(a, chunk);
    let more = h.take();
    assert_eq!(requests(&more).len(), 1, "{more:?}");
    assert!(
        !more
            .iter()
            .any(|action| matches!(action, Action::ReceiveWindow { .. })),
        "{more:?}"
    );
}
