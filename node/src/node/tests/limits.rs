//! Limits changed while the node runs ([`NodeCore::set_limits`]): caps
//! and the peer budget take effect at once, with no restart, and the gate
//! of a shared endpoint hears of the caps.

use super::uploads::{fetcher, request, sent, share};
use super::*;
use crate::config::{MIN_RATE_CAP, NodeLimits};
use crate::gate::OwnCaps;

fn limits(max_peers: usize, max_upload: Option<u64>, max_download: Option<u64>) -> NodeLimits {
    NodeLimits {
        max_peers,
        max_upload,
        max_download,
    }
}

fn fixed_slots() -> NodeConfig {
    NodeConfig {
        upload_slot_time: None,
        upload_overdue: None,
        ..NodeConfig::default()
    }
}

/// The start times (ms) of uploads over `steps` of 100 ms, each upload
/// sent at once.
fn upload_starts(h: &mut Harness, from: u64, steps: u64) -> Vec<(u64, Option<u64>)> {
    let mut starts = Vec::new();
    for step in 0..=steps {
        h.advance(from + step * 100);
        for action in h.take() {
            if let Action::Upload {
                link, chunk, pace, ..
            } = action
            {
                starts.push((h.elapsed(h.now), pace));
                sent(h, link, chunk.0);
            }
        }
    }
    starts
}

#[test]
fn an_upload_cap_raised_while_serving_paces_the_next_uploads_faster() {
    let slow = u64::from(CHUNK);
    let config = NodeConfig {
        max_upload: Some(slow),
        ..fixed_slots()
    };
    let mut h = Harness::new(Kind::Seeder, 16, config);
    let a = h.connect_in(&fetcher(1, 16));
    request(&mut h, a, &(0..12).collect::<Vec<u32>>());
    let before = upload_starts(&mut h, 0, 30);
    assert!(
        before.iter().all(|(_, pace)| *pace == Some(slow)),
        "{before:?}"
    );
    // One chunk a second, after the burst: about four in three seconds.
    assert!((3..=5).contains(&before.len()), "{before:?}");
    assert_eq!(h.core.metrics().upload_cap, Some(slow));

    let fast = 8 * slow;
    h.core
        .set_limits(limits(32, Some(fast), None), h.now)
        .unwrap();
    assert_eq!(h.core.limits().max_upload, Some(fast));
    assert_eq!(h.core.metrics().upload_cap, Some(fast));
    let after = upload_starts(&mut h, 3_100, 10);
    assert!(
        after.iter().all(|(_, pace)| *pace == Some(fast)),
        "every upload started from now on carries the new pace: {after:?}"
    );
    // Eight a second now, not one: in the next second as many as in the
    // three before.
    assert!(after.len() >= 4, "{after:?}");
}

#[test]
fn an_upload_cap_set_while_serving_holds_the_next_upload_and_one_removed_lets_it_go() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    let a = h.connect_in(&fetcher(1, 16));
    assert_eq!(h.core.metrics().upload_cap, None);
    let cap = u64::from(CHUNK);
    h.core
        .set_limits(limits(32, Some(cap), None), h.now)
        .unwrap();
    request(&mut h, a, &(0..6).collect::<Vec<u32>>());
    let capped = upload_starts(&mut h, 0, 15);
    assert!(
        capped.iter().all(|(_, pace)| *pace == Some(cap)),
        "{capped:?}"
    );
    assert!(capped.len() < 6, "held by the cap: {capped:?}");
    h.core.set_limits(limits(32, None, None), h.now).unwrap();
    assert_eq!(h.core.metrics().upload_cap, None);
    let free = upload_starts(&mut h, 1_600, 1);
    assert_eq!(capped.len() + free.len(), 6, "{capped:?} {free:?}");
    assert!(free.iter().all(|(_, pace)| pace.is_none()), "{free:?}");
}

#[test]
fn a_download_cap_changed_while_fetching_is_the_cap_in_force() {
    let mut h = Harness::new(Kind::Fetch, 64, NodeConfig::default());
    let seeder = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 64));
    let first = requests_to(&h.take(), seeder);
    assert!(!first.is_empty());
    assert_eq!(h.core.metrics().download_cap, None);
    let cap = u64::from(CHUNK);
    h.core
        .set_limits(limits(32, None, Some(cap)), h.now)
        .unwrap();
    assert_eq!(h.core.metrics().download_cap, Some(cap));
    // The endpoint's part below the own cap is the one in force.
    h.core.set_share(
        Some(crate::gate::Share {
            slots: 1,
            rate: None,
            download: Some(cap / 2),
        }),
        h.now,
    );
    assert_eq!(h.core.metrics().download_cap, Some(cap / 2));
    h.core.set_share(None, h.now);
    h.core.set_limits(limits(32, None, None), h.now).unwrap();
    assert_eq!(h.core.metrics().download_cap, None);
}

#[test]
fn a_download_cap_lowered_while_fetching_spaces_the_next_requests() {
    let mut h = Harness::new(Kind::Fetch, 64, NodeConfig::default());
    let seeder = h.connect_out(&Remote::seeder(1, "62.1.1.1:4433", 64));
    let asked = requests_to(&h.take(), seeder);
    // Capped at one chunk a second: once what was asked before arrived,
    // about one request a second follows (after the burst), not a
    // pipeline's worth.
    let cap = u64::from(CHUNK);
    h.core
        .set_limits(limits(32, None, Some(cap)), h.now)
        .unwrap();
    for &chunk in &asked {
        h.deliver(seeder, chunk);
    }
    let mut later = Vec::new();
    for step in 1..=30u64 {
        h.advance(step * 100);
        for chunk in requests_to(&h.take(), seeder) {
            later.push(chunk);
            h.deliver(seeder, chunk);
        }
    }
    assert!(
        (2..=6).contains(&later.len()),
        "about one a second over three seconds: {later:?} (asked {} before)",
        asked.len()
    );
}

#[test]
fn a_cap_below_the_floor_is_refused_and_changes_nothing() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    let before = h.core.limits();
    let error = h
        .core
        .set_limits(limits(3, Some(MIN_RATE_CAP - 1), None), h.now)
        .unwrap_err();
    assert_eq!(error.setting, "max_upload and max_download");
    assert_eq!(h.core.limits(), before);
    let error = h
        .core
        .set_limits(limits(3, None, Some(0)), h.now)
        .unwrap_err();
    assert_eq!(error.setting, "max_upload and max_download");
    assert_eq!(h.core.limits(), before);
}

#[test]
fn a_lower_peer_budget_turns_the_next_peer_away_and_a_higher_one_lets_it_in() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    let a = h.connect_in(&fetcher(1, 16));
    assert!(h.is_connected(a));
    h.core.set_limits(limits(1, None, None), h.now).unwrap();
    assert!(h.is_connected(a), "a peer already in stays");
    let b = fetcher(2, 16);
    let link = match h.core.handle_incoming(b.addr, true, h.now) {
        Incoming::Accept { link, .. } => link,
        other => panic!("{other:?}"),
    };
    let refused = h.hello_in(link, &b).unwrap_err();
    assert!(refused.detail.contains("maximum of 1 peers"), "{refused:?}");
    h.take();
    h.core.set_limits(limits(2, None, None), h.now).unwrap();
    let c = h.connect_in(&fetcher(3, 16));
    assert!(h.is_connected(c));
}

#[test]
fn the_gate_hears_of_caps_changed_while_running_and_of_nothing_else() {
    let mut h = Harness::new(Kind::Seeder, 16, fixed_slots());
    h.core.set_share(share(1, None), h.now);
    let first = h.core.poll_gate_news().unwrap();
    assert_eq!(first.caps, Some(OwnCaps::default()), "the first news tells");
    assert_eq!(h.core.poll_gate_news(), None);
    h.core
        .set_limits(limits(32, Some(5 << 20), Some(7 << 20)), h.now)
        .unwrap();
    let news = h.core.poll_gate_news().unwrap();
    assert_eq!(
        news.caps,
        Some(OwnCaps {
            upload: Some(5 << 20),
            download: Some(7 << 20),
        })
    );
    assert_eq!((news.upload, news.download), (None, None));
    // The same caps again: nothing new.
    h.core
        .set_limits(limits(8, Some(5 << 20), Some(7 << 20)), h.now)
        .unwrap();
    assert_eq!(h.core.poll_gate_news(), None);
}

#[test]
fn the_counters_name_each_connected_peers_link_and_map_the_chunks() {
    let mut h = Harness::new(Kind::Fetch, 16, NodeConfig::default());
    let seeder = Remote::seeder(1, "62.1.1.1:4433", 16);
    let link = h.connect_out(&seeder);
    let asked = requests_to(&h.take(), link);
    assert!(!asked.is_empty());
    h.advance(1_000);
    let metrics = h.core.metrics();
    let peer = metrics
        .peers
        .iter()
        .find(|peer| peer.id == seeder.id)
        .expect("the seeder's figures");
    let figures = peer.link.expect("connected");
    assert!(figures.dialed);
    assert_eq!(figures.remote, seeder.addr);
    assert_eq!(figures.since, h.at(0));
    // Nothing verified yet; what was asked is in flight; the seeder holds
    // every chunk.
    let map = &metrics.chunk_map;
    assert_eq!(map.chunks, 16);
    assert_eq!(map.verified(), 0);
    let in_flight: u32 = map.cells.iter().map(|cell| cell.in_flight).sum();
    assert_eq!(in_flight as usize, asked.len());
    assert!(map.cells.iter().all(|cell| cell.holders == 1));
    h.deliver(link, asked[0]);
    assert_eq!(h.core.metrics().chunk_map.verified(), 1);
}
