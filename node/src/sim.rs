//! A simulated swarm for scheduler tests: a virtual clock, remote peers with
//! given upload rates, latency, delivery loss, departures and lies, all
//! driving the real [`Downloader`]. A scenario of thousands of chunks runs
//! in milliseconds.
//!
//! Model: a remote peer serves requests one at a time in arrival order at
//! its upload rate; a request reaches it one latency after it was sent and
//! its chunk reaches the downloader one latency after the peer finished
//! sending. QUIC is reliable, so a lost packet costs time, not data: with
//! probability `loss` a delivery is late by one extra round trip. A cancel
//! removes a queued request, or cuts the one in service short. Verification
//! is instantaneous; a lying peer's chunks fail it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, HaveBitfield, PeerId};

use crate::download::{Action, DisconnectReason, DownloadConfig, Downloader};
use crate::picker::{LinkId, SplitMix64};

/// One remote peer of a scenario.
#[derive(Debug, Clone)]
pub struct SimPeer {
    /// Upload rate in bytes per second.
    pub rate: f64,
    /// One-way latency.
    pub latency: Duration,
    /// Chance that a delivery is late by one extra round trip.
    pub loss: f64,
    /// The chunks it has; `None` means all.
    pub has: Option<Vec<u32>>,
    /// When it joins the download.
    pub joins_at: Duration,
    /// When it vanishes (connection lost), if ever.
    pub leaves_at: Option<Duration>,
    /// From when on it accepts requests but never answers, if ever.
    pub stalls_at: Option<Duration>,
    /// Whether every chunk it sends fails its proof.
    pub lies: bool,
}

impl SimPeer {
    /// A peer with every chunk, at `rate` bytes/s and `latency` one way.
    pub fn seeder(rate: f64, latency: Duration) -> Self {
        Self {
            rate,
            latency,
            loss: 0.0,
            has: None,
            joins_at: Duration::ZERO,
            leaves_at: None,
            stalls_at: None,
            lies: false,
        }
    }
}

/// What a scenario produced.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Virtual time until every chunk was verified, `None` if it never was.
    pub finished_at: Option<Duration>,
    /// Per peer (in scenario order): verified bytes delivered first.
    pub delivered: Vec<u64>,
    /// Per peer: bytes of duplicates that arrived after another copy.
    pub wasted: Vec<u64>,
    /// Per peer: chunks that failed their proof.
    pub bad_chunks: Vec<u64>,
    /// Per peer: whether it ended banned.
    pub banned: Vec<bool>,
    /// Chunks in the order they were verified.
    pub verified_order: Vec<u32>,
    /// When each chunk was verified, by chunk index.
    pub verified_at: Vec<Option<Duration>>,
    /// Why peers were dropped, in order.
    pub disconnects: Vec<(usize, DisconnectReason)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Join(usize),
    Leave(usize),
    RequestArrives(usize, u32),
    CancelArrives(usize, u32),
    ServiceDone(usize, u32, u64),
    ChunkArrives(usize, u32),
    Tick,
}

struct RemoteState {
    key: Option<LinkId>,
    queue: VecDeque<u32>,
    serving: Option<(u32, u64)>,
    busy_until: Duration,
    service_counter: u64,
    gone: bool,
    /// It sent a chunk that failed its proof: banned, as its driver
    /// (`NodeCore`) would, and never let in again.
    banned: bool,
}

/// Runs a download of `chunk_count` chunks of `chunk_size` bytes from the
/// given peers, for at most `limit` of virtual time.
pub fn run(
    chunk_size: u32,
    chunk_count: u32,
    peers: &[SimPeer],
    config: DownloadConfig,
    limit: Duration,
) -> SimReport {
    let base = Instant::now();
    let at = |t: Duration| base + t;
    let mut core = Downloader::new(chunk_size, &HaveBitfield::new(chunk_count), config);
    let mut rng = SplitMix64(42);
    let mut events: BinaryHeap<Reverse<(Duration, u64, Event)>> = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, time: Duration, event: Event| {
        sequence += 1;
        events.push(Reverse((time, sequence, event)));
    };
    let mut remotes: Vec<RemoteState> = peers
        .iter()
        .map(|_| RemoteState {
            key: None,
            queue: VecDeque::new(),
            serving: None,
            busy_until: Duration::ZERO,
            service_counter: 0,
            gone: false,
            banned: false,
        })
        .collect();
    for (index, peer) in peers.iter().enumerate() {
        push(&mut events, peer.joins_at, Event::Join(index));
        if let Some(leaves) = peer.leaves_at {
            push(&mut events, leaves, Event::Leave(index));
        }
    }
    push(&mut events, Duration::ZERO, Event::Tick);
    // Every simulated chunk is full-sized.
    let chunk_len = |_chunk: u32| -> u64 { u64::from(chunk_size) };
    let mut report = SimReport {
        finished_at: None,
        delivered: vec![0; peers.len()],
        wasted: vec![0; peers.len()],
        bad_chunks: vec![0; peers.len()],
        banned: vec![false; peers.len()],
        verified_order: Vec::new(),
        verified_at: vec![None; chunk_count as usize],
        disconnects: Vec::new(),
    };
    let peer_id = |index: usize| PeerId([index as u8 + 1; 32]);
    let index_of =
        |remotes: &[RemoteState], key: LinkId| remotes.iter().position(|r| r.key == Some(key));

    while let Some(Reverse((now, _, event))) = events.pop() {
        if now > limit || core.is_complete() {
            break;
        }
        match event {
            Event::Tick => {
                core.tick(at(now));
                push(&mut events, now + Duration::from_millis(100), Event::Tick);
            }
            Event::Join(index) => {
                let peer = &peers[index];
                let mut has = HaveBitfield::new(chunk_count);
                for chunk in 0..chunk_count {
                    if peer.has.as_ref().is_none_or(|held| held.contains(&chunk)) {
                        let _ = has.set(ChunkIndex(chunk), true);
                    }
                }
                let key = LinkId(index as u64);
                if remotes[index].banned {
                    continue;
                }
                if core.add_peer(key, peer_id(index), has, at(now)).is_ok() {
                    core.set_rtt(key, peer.latency * 2);
                    remotes[index].key = Some(key);
                }
            }
            Event::Leave(index) => {
                if let Some(key) = remotes[index].key.take() {
                    remotes[index].gone = true;
                    core.remove_peer(key, at(now));
                }
            }
            Event::RequestArrives(index, chunk) => {
                let remote = &mut remotes[index];
                if remote.gone {
                    continue;
                }
                remote.queue.push_back(chunk);
                start_service(
                    index,
                    now,
                    &peers[index],
                    remote,
                    &chunk_len,
                    &mut |t, e| push(&mut events, t, e),
                );
            }
            Event::CancelArrives(index, chunk) => {
                let remote = &mut remotes[index];
                remote.queue.retain(|&queued| queued != chunk);
                if remote.serving.is_some_and(|(serving, _)| serving == chunk) {
                    remote.serving = None;
                    remote.busy_until = now;
                    start_service(
                        index,
                        now,
                        &peers[index],
                        remote,
                        &chunk_len,
                        &mut |t, e| push(&mut events, t, e),
                    );
                }
            }
            Event::ServiceDone(index, chunk, counter) => {
                let remote = &mut remotes[index];
                if remote.gone || remote.serving != Some((chunk, counter)) {
                    continue;
                }
                remote.serving = None;
                let peer = &peers[index];
                let mut delay = peer.latency;
                if peer.loss > 0.0 && (rng.below(1_000_000) as f64) < peer.loss * 1_000_000.0 {
                    delay += peer.latency * 2;
                }
                push(&mut events, now + delay, Event::ChunkArrives(index, chunk));
                start_service(index, now, peer, remote, &chunk_len, &mut |t, e| {
                    push(&mut events, t, e)
                });
            }
            Event::ChunkArrives(index, chunk) => {
                let Some(key) = remotes[index].key else {
                    continue;
                };
                if !core.peer(key).is_some_and(|s| s.is_requested(chunk)) {
                    continue;
                }
                if peers[index].lies {
                    remotes[index].banned = true;
                    core.on_chunk_bad(key, chunk, at(now));
                } else {
                    let was_verified = core.is_verified(chunk);
                    core.on_chunk_verified(key, chunk, chunk_len(chunk), at(now));
                    if !was_verified {
                        report.verified_order.push(chunk);
                        report.verified_at[chunk as usize] = Some(now);
                    }
                }
                if core.is_complete() {
                    report.finished_at = Some(now);
                }
            }
        }
        while let Some(action) = core.poll_action() {
            match action {
                Action::Request { peer, chunk } => {
                    if let Some(index) = index_of(&remotes, peer) {
                        push(
                            &mut events,
                            now + peers[index].latency,
                            Event::RequestArrives(index, chunk),
                        );
                    }
                }
                Action::Cancel { peer, chunk } => {
                    if let Some(index) = index_of(&remotes, peer) {
                        push(
                            &mut events,
                            now + peers[index].latency,
                            Event::CancelArrives(index, chunk),
                        );
                    }
                }
                Action::Disconnect { peer, reason } => {
                    if let Some(index) = index_of(&remotes, peer) {
                        report.disconnects.push((index, reason));
                        remotes[index].key = None;
                        remotes[index].gone = true;
                    }
                }
            }
        }
    }
    for (id, stats) in core.all_peer_stats() {
        let index = usize::from(id.0[0]) - 1;
        report.delivered[index] += stats.bytes;
        report.wasted[index] += stats.wasted_bytes;
        report.bad_chunks[index] += stats.bad_chunks;
        report.banned[index] = remotes[index].banned;
    }
    report
}

fn start_service(
    index: usize,
    now: Duration,
    peer: &SimPeer,
    remote: &mut RemoteState,
    chunk_len: &dyn Fn(u32) -> u64,
    push: &mut dyn FnMut(Duration, Event),
) {
    if remote.serving.is_some() || peer.stalls_at.is_some_and(|t| now >= t) {
        return;
    }
    let Some(chunk) = remote.queue.pop_front() else {
        return;
    };
    let start = now.max(remote.busy_until);
    let done = start + Duration::from_secs_f64(chunk_len(chunk) as f64 / peer.rate);
    remote.busy_until = done;
    remote.service_counter += 1;
    remote.serving = Some((chunk, remote.service_counter));
    push(
        done,
        Event::ServiceDone(index, chunk, remote.service_counter),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;
    const MBPS: f64 = 1_000_000.0;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn total(report: &SimReport) -> u64 {
        report.delivered.iter().sum()
    }

    #[test]
    fn one_fast_far_peer_is_used_at_its_full_rate() {
        // 100 MB/s at 50 ms one way: the pipeline must grow to about 2 * rate
        // * rtt = 20 chunks or the peer idles every round trip.
        let peers = [SimPeer::seeder(100.0 * MBPS, ms(50))];
        let report = run(
            MIB,
            400,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(60),
        );
        let finished = report.finished_at.expect("finishes").as_secs_f64();
        let ideal = 400.0 * f64::from(MIB) / (100.0 * MBPS);
        assert!(
            finished < ideal * 1.15 + 0.3,
            "took {finished:.2} s, ideal {ideal:.2} s"
        );
        assert_eq!(total(&report), 400 * u64::from(MIB));
    }

    #[test]
    fn equal_peers_share_the_load() {
        let peers = vec![SimPeer::seeder(40.0 * MBPS, ms(5)); 4];
        let report = run(
            MIB,
            400,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(60),
        );
        assert!(report.finished_at.is_some());
        let share = u64::from(MIB) * 100;
        for (peer, delivered) in report.delivered.iter().enumerate() {
            assert!(
                *delivered > share * 8 / 10 && *delivered < share * 12 / 10,
                "peer {peer} delivered {delivered} of an even share of {share}"
            );
        }
    }

    #[test]
    fn a_slow_peer_does_not_hold_up_the_end() {
        let fast = vec![SimPeer::seeder(50.0 * MBPS, ms(5)); 3];
        let alone = run(
            MIB,
            300,
            &fast,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        let mut with_slow = fast.clone();
        with_slow.push(SimPeer::seeder(0.5 * MBPS, ms(5)));
        let report = run(
            MIB,
            300,
            &with_slow,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        let alone = alone.finished_at.unwrap().as_secs_f64();
        let finished = report.finished_at.unwrap().as_secs_f64();
        // The slow peer's last chunk alone would take 2 s; its chunks are
        // rescued by the fast peers instead.
        assert!(
            finished < alone * 1.1 + 0.2,
            "with a slow peer {finished:.2} s, without {alone:.2} s"
        );
    }

    #[test]
    fn chunks_held_by_a_much_slower_peer_are_fetched_elsewhere() {
        // A peer 100 times slower than the others takes 2 s per chunk. Its
        // chunks are taken over by the fast peers long before endgame, so
        // the front of the file does not wait for it.
        let mut peers = vec![SimPeer::seeder(50.0 * MBPS, ms(5)); 3];
        peers.push(SimPeer::seeder(0.5 * MBPS, ms(5)));
        let report = run(
            MIB,
            1000,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        assert!(report.finished_at.is_some());
        let front_done = report.verified_at[..100]
            .iter()
            .map(|t| t.unwrap())
            .max()
            .unwrap();
        // 100 MiB at 150 MB/s is 0.7 s.
        assert!(
            front_done < Duration::from_millis(1200),
            "the first 100 chunks took {front_done:?}"
        );
    }

    #[test]
    fn rarest_chunks_go_first_when_holders_differ() {
        // Chunks 0..50 are held by three peers and by a fourth, which alone
        // also holds 50..100 and leaves after about the time it needs to
        // send 55 chunks. The download completes only if that peer spent
        // its time on the chunks nobody else has.
        let common: Vec<u32> = (0..50).collect();
        let mut peers: Vec<SimPeer> = (0..3)
            .map(|_| SimPeer {
                has: Some(common.clone()),
                ..SimPeer::seeder(10.0 * MBPS, ms(5))
            })
            .collect();
        peers.push(SimPeer {
            leaves_at: Some(Duration::from_secs_f64(
                55.0 * f64::from(MIB) / (10.0 * MBPS),
            )),
            ..SimPeer::seeder(10.0 * MBPS, ms(5))
        });
        let report = run(
            MIB,
            100,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        assert!(
            report.finished_at.is_some(),
            "every rare chunk was fetched before its holder left"
        );
        assert_eq!(
            report.delivered[3],
            50 * u64::from(MIB),
            "the rare holder sent only rare chunks"
        );
    }

    #[test]
    fn a_peer_that_leaves_mid_chunk_costs_only_time() {
        let mut peers = vec![SimPeer::seeder(20.0 * MBPS, ms(10)); 3];
        peers[0].leaves_at = Some(ms(1_234));
        let report = run(
            MIB,
            200,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(60),
        );
        assert!(
            report.finished_at.is_some(),
            "the others finish the download"
        );
        assert_eq!(
            total(&report),
            200 * u64::from(MIB),
            "every chunk counted exactly once"
        );
        assert!(report.delivered[0] > 0 && report.delivered[0] < 30 * u64::from(MIB));
    }

    #[test]
    fn a_lying_peer_is_banned_and_its_chunks_come_from_others() {
        let mut peers = vec![SimPeer::seeder(20.0 * MBPS, ms(5)); 3];
        peers[1].lies = true;
        let report = run(
            MIB,
            100,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(60),
        );
        assert!(report.finished_at.is_some());
        assert!(report.banned[1]);
        assert_eq!(report.bad_chunks[1], 1, "banned at the first bad chunk");
        assert_eq!(report.delivered[1], 0);
        assert!(report.disconnects.contains(&(1, DisconnectReason::BadData)));
        assert_eq!(total(&report), 100 * u64::from(MIB));
    }

    #[test]
    fn a_stalling_peer_is_dropped_and_its_chunks_reassigned() {
        // 800 MiB at 20 MB/s from the honest peer alone takes 42 s, longer
        // than the stall timeout.
        let mut peers = vec![SimPeer::seeder(20.0 * MBPS, ms(5)); 2];
        peers[0].stalls_at = Some(ms(500));
        let report = run(
            MIB,
            800,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        let finished = report.finished_at.expect("finishes").as_secs_f64();
        let alone = 800.0 * f64::from(MIB) / (20.0 * MBPS);
        assert!(
            finished < alone + 1.0,
            "took {finished:.2} s, the honest peer alone {alone:.2} s"
        );
        assert_eq!(total(&report), 800 * u64::from(MIB));
        assert!(report.disconnects.iter().any(|(peer, reason)| *peer == 0
            && matches!(
                reason,
                DisconnectReason::Silent | DisconnectReason::TooManyTimeouts
            )));
    }

    #[test]
    fn loss_and_latency_cost_time_not_chunks() {
        let peers = vec![
            SimPeer {
                loss: 0.05,
                ..SimPeer::seeder(30.0 * MBPS, ms(50))
            };
            2
        ];
        let report = run(
            MIB,
            200,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        let finished = report.finished_at.expect("finishes").as_secs_f64();
        let ideal = 200.0 * f64::from(MIB) / (60.0 * MBPS);
        assert!(
            finished < ideal * 1.3 + 0.5,
            "took {finished:.2} s, ideal {ideal:.2} s"
        );
        assert_eq!(total(&report), 200 * u64::from(MIB));
    }

    #[test]
    fn a_late_joiner_takes_a_share() {
        let mut peers = vec![SimPeer::seeder(10.0 * MBPS, ms(5)); 2];
        peers[1].joins_at = Duration::from_secs(5);
        let report = run(
            MIB,
            200,
            &peers,
            DownloadConfig::default(),
            Duration::from_secs(120),
        );
        assert!(report.finished_at.is_some());
        assert!(
            report.delivered[1] > 40 * u64::from(MIB),
            "late joiner delivered {}",
            report.delivered[1]
        );
    }
}
