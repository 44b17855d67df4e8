//! Whole-swarm scenarios on the simulated network: distribution near the
//! bound, a liar, a seeder that comes back, a peer-exchange flood, a
//! damaged disk, endgame, loss.
//!
//! `cargo test -p minimodel-node netsim -- --nocapture` prints the
//! figures; with `NETSIM_TRACE=1` the distribution runs also list every
//! upload of the seeder (which chunk, to whom, which copy).

use super::*;
use crate::address::{Scope, reachable_from, scope};
use crate::report::Blame;

const MIB: u32 = 1 << 20;
/// A megabit per second, in bytes per second.
const MBIT: f64 = 1_000_000.0 / 8.0;

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Panics if any node blamed a peer other than those in `guilty`.
pub(super) fn nobody_blamed_but(sim: &Sim, guilty: &[usize]) {
    let guilty: Vec<PeerId> = guilty.iter().map(|&i| id_of(i)).collect();
    for index in 0..sim.specs().len() {
        for (at, report) in &sim.record(index).reports {
            match report {
                NodeReport::Banned { peer, .. } => {
                    assert!(
                        guilty.contains(peer),
                        "node {index} banned {peer:?} at {at:?}"
                    );
                }
                NodeReport::PeerDisconnected {
                    peer,
                    blame: Blame::Peer,
                    reason,
                    ..
                } => assert!(
                    guilty.contains(peer),
                    "node {index} blamed {peer:?} at {at:?}: {reason}"
                ),
                _ => {}
            }
        }
    }
}

/// Distribution figures of one run.
#[derive(Debug)]
struct Figures {
    /// Until every peer held a verified file, seconds.
    time: f64,
    /// max(F/u_s, N*F/(u_s + sum of peer uplinks)), seconds.
    bound: f64,
    /// Bytes the seeder sent, in copies of the file.
    seeder_copies: f64,
}

/// One seeder at 100 Mbit and `peers` serving fetchers at 1 Gbit.
fn distribution(peers: usize, chunks: u32) -> Figures {
    let (seeder_up, peer_up) = (100.0 * MBIT, 1_000.0 * MBIT);
    let mut specs = vec![NodeSpec::seeder(0, chunks, seeder_up)];
    for index in 1..=peers {
        specs.push(NodeSpec::fetcher(index, chunks, peer_up, true, &[0]));
    }
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(600), Sim::downloads_over);
    let mut time: f64 = 0.0;
    for index in 1..=peers {
        let record = sim.record(index);
        assert!(
            record.ended.is_none(),
            "peer {index} ended: {:?}",
            record.ended
        );
        let at = record
            .delivered_at
            .unwrap_or_else(|| panic!("peer {index} did not complete"));
        time = time.max(secs(at));
    }
    nobody_blamed_but(&sim, &[]);
    let every = NodeConfig::default().checkpoint_every;
    for index in 1..=peers {
        let checkpoints = &sim.record(index).checkpoints;
        assert!(!checkpoints.is_empty(), "peer {index} saved its progress");
        for (at, release_below, hashed) in checkpoints {
            assert!(release_below <= hashed, "peer {index} at {at:?}");
        }
        for pair in checkpoints.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= every,
                "peer {index}: {checkpoints:?}"
            );
        }
    }
    let file = f64::from(chunks) * f64::from(MIB);
    let n = peers as f64;
    let bound = (file / seeder_up).max(n * file / (seeder_up + n * peer_up));
    if std::env::var_os("NETSIM_TRACE").is_some() {
        let seeder = sim.record(0);
        let mut times = vec![0; chunks as usize];
        for (at, to, chunk) in &seeder.uploads {
            times[*chunk as usize] += 1;
            println!(
                "{:8.3} seeder -> {to} chunk {chunk} (copy {})",
                secs(*at),
                times[*chunk as usize]
            );
        }
        println!("cancelled {}", seeder.uploads_cancelled);
        for index in 1..=peers {
            let r = sim.record(index);
            println!(
                "peer {index}: uploads {} cancelled {} cancels sent {} delivered {:?}",
                r.uploads.len(),
                r.uploads_cancelled,
                r.cancels_sent,
                r.delivered_at
            );
        }
    }
    let figures = Figures {
        time,
        bound,
        seeder_copies: sim.record(0).uploaded_bytes / file,
    };
    println!(
        "{peers} peers, {} MiB: {:.2} s, bound {:.2} s, ratio {:.3}; seeder sent {:.3} copies; {} events",
        chunks,
        figures.time,
        figures.bound,
        figures.time / figures.bound,
        figures.seeder_copies,
        sim.events_handled
    );
    figures
}

#[test]
fn one_seeder_and_four_serving_peers_finish_near_the_bound() {
    let figures = distribution(4, 256);
    assert!(figures.time / figures.bound <= 1.5, "{figures:?}");
    assert!(figures.seeder_copies <= 1.3, "{figures:?}");
}

#[test]
fn one_seeder_and_eight_serving_peers_finish_near_the_bound() {
    let figures = distribution(8, 256);
    assert!(figures.time / figures.bound <= 1.5, "{figures:?}");
    assert!(figures.seeder_copies <= 1.3, "{figures:?}");
}

#[test]
fn forty_eight_mib_start_up_stays_within_half_again_the_bound() {
    for peers in [4, 8] {
        let figures = distribution(peers, 48);
        assert!(
            figures.time / figures.bound <= 1.5,
            "{peers} peers: {figures:?}"
        );
    }
}

#[test]
fn four_seeders_fill_one_fetchers_download() {
    let chunks = 256;
    let cap = 100.0 * MBIT;
    let mut specs: Vec<NodeSpec> = (0..4).map(|i| NodeSpec::seeder(i, chunks, cap)).collect();
    specs.push(NodeSpec::fetcher(
        4,
        chunks,
        1_000.0 * MBIT,
        false,
        &[0, 1, 2, 3],
    ));
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(600), Sim::downloads_over);
    let at = sim.record(4).delivered_at.expect("delivered");
    let share = f64::from(chunks) * f64::from(MIB) / secs(at) / (4.0 * cap);
    println!(
        "four seeders: {:.2} s, {share:.3} of the sum of the caps",
        secs(at)
    );
    assert!(share >= 0.9, "{share}");
    nobody_blamed_but(&sim, &[]);
}

#[test]
fn a_liar_among_seeders_is_banned_and_the_download_completes() {
    let chunks = 32;
    let mut specs: Vec<NodeSpec> = (0..3)
        .map(|i| NodeSpec::seeder(i, chunks, 50.0 * MBIT))
        .collect();
    specs[1].behaviour = Behaviour::Liar;
    specs.push(NodeSpec::fetcher(
        3,
        chunks,
        1_000.0 * MBIT,
        false,
        &[0, 1, 2],
    ));
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(120), Sim::downloads_over);
    assert!(
        sim.record(3).delivered_at.is_some(),
        "{:?}",
        sim.record(3).ended
    );
    nobody_blamed_but(&sim, &[1]);
    let banned = sim
        .record(3)
        .reports
        .iter()
        .filter(
            |(_, report)| matches!(report, NodeReport::Banned { peer, .. } if *peer == id_of(1)),
        )
        .count();
    assert_eq!(banned, 1, "banned once, never dialed again");
    let stats = sim.core(3).transfer().expect("a download");
    for peer in &stats.peers {
        let liar = peer.id == id_of(1);
        assert_eq!(peer.banned, liar, "{peer:?}");
        assert_eq!(peer.download.bad_chunks > 0, liar, "{peer:?}");
        if liar {
            assert_eq!(peer.download.chunks, 0);
        }
    }
    let liar_dials = sim
        .record(3)
        .dials
        .iter()
        .filter(|(_, addr)| *addr == NodeSpec::addr_of(1))
        .count();
    assert_eq!(liar_dials, 1);
}

#[test]
fn a_seeder_that_leaves_and_comes_back_is_redialed() {
    let chunks = 64;
    let mut specs = vec![NodeSpec::seeder(0, chunks, 100.0 * MBIT)];
    specs[0].killed_at = Some(Duration::from_secs(2));
    specs[0].restarts_at = Some(Duration::from_secs(4));
    specs.push(NodeSpec::fetcher(1, chunks, 1_000.0 * MBIT, false, &[0]));
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(300), Sim::downloads_over);
    let record = sim.record(1);
    let at = record
        .delivered_at
        .unwrap_or_else(|| panic!("{:?}", record.ended));
    let redials: Vec<Duration> = record
        .dials
        .iter()
        .filter(|(when, addr)| *addr == NodeSpec::addr_of(0) && *when > Duration::from_secs(2))
        .map(|(when, _)| *when)
        .collect();
    assert!(!redials.is_empty(), "redialed");
    let alone = f64::from(chunks) * f64::from(MIB) / (100.0 * MBIT);
    println!(
        "seeder away 2 s..4 s: delivered at {:.2} s (uninterrupted {alone:.2} s), redials at {redials:?}",
        secs(at)
    );
    // Away for 2 s, noticed after the idle timeout, back within a back-off.
    assert!(secs(at) < alone + 3.0 + 2.0 + 1.5, "{at:?}");
    assert!(
        record
            .reports
            .iter()
            .any(|(_, r)| matches!(r, NodeReport::Redialing { .. }))
    );
    nobody_blamed_but(&sim, &[]);
    let stats = sim.core(1).transfer().expect("a download");
    assert_eq!(
        stats.chunks_fetched,
        u64::from(chunks),
        "nothing fetched twice"
    );
}

/// 10,000 entries: one in eight an ordinary public address where nobody
/// listens, the others special.
fn junk() -> Vec<PeerEntry> {
    (0..10_000u32)
        .map(|i| {
            let [_, b, c, d] = i.to_be_bytes();
            let mut id = [0xaa; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let text = match i % 8 {
                0 => format!("127.0.{c}.{d}:4433"),
                1 => format!("10.{b}.{c}.{d}:4433"),
                2 => format!("224.0.{c}.{d}:4433"),
                3 => "255.255.255.255:4433".to_owned(),
                4 => format!("5.{b}.{c}.{d}:0"),
                5 => format!("[fe80::{c:x}:{d:x}]:4433"),
                6 => format!("192.168.{c}.{d}:4433"),
                _ => format!("5.{b}.{c}.{d}:4433"),
            };
            PeerEntry {
                id: PeerId(id),
                addr: text.parse().expect("an address"),
                flags: minimodel_wire::PeerFlags::default(),
            }
        })
        .collect()
}

#[test]
fn a_peer_exchange_flood_causes_bounded_dials_to_allowed_addresses_only() {
    let chunks = 64;
    let mut specs = vec![NodeSpec::seeder(0, chunks, 100.0 * MBIT)];
    // The flooder is on the internet and serves nothing.
    let mut flooder = NodeSpec::seeder(1, chunks, 100.0 * MBIT);
    flooder.addr = "81.2.3.4:4433".parse().unwrap();
    flooder.have = HaveBitfield::new(chunks);
    flooder.behaviour = Behaviour::Flooder(junk());
    specs.push(flooder);
    specs.push(NodeSpec::fetcher(2, chunks, 1_000.0 * MBIT, false, &[0, 1]));
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(120), Sim::downloads_over);
    let record = sim.record(2);
    let at = record.delivered_at.expect("delivered despite the flood");
    let nodes: Vec<SocketAddr> = sim.specs().iter().map(|spec| spec.addr).collect();
    let junk_dials: BTreeSet<SocketAddr> = record
        .dials
        .iter()
        .map(|(_, addr)| *addr)
        .filter(|addr| !nodes.contains(addr))
        .collect();
    println!(
        "flood: delivered at {:.2} s, {} junk addresses dialed",
        secs(at),
        junk_dials.len()
    );
    assert!(!junk_dials.is_empty(), "the public ones are candidates");
    assert!(junk_dials.len() <= MAX_PEERS_PER_MESSAGE, "{junk_dials:?}");
    let flooder_ip = "81.2.3.4".parse().unwrap();
    for addr in &junk_dials {
        assert_eq!(scope(*addr), Scope::Global, "{addr}");
        assert!(reachable_from(*addr, flooder_ip));
    }
    let alone = f64::from(chunks) * f64::from(MIB) / (100.0 * MBIT);
    assert!(
        secs(at) < alone * 1.1 + 0.5,
        "the flood did not slow it down: {at:?}"
    );
}

#[test]
fn a_chunk_damaged_on_disk_is_fetched_again() {
    let chunks = 32;
    let mut specs = vec![
        NodeSpec::seeder(0, chunks, 100.0 * MBIT),
        NodeSpec::fetcher(1, chunks, 1_000.0 * MBIT, false, &[0]),
    ];
    specs[1].damage.insert(3, 1);
    specs[1].damage.insert(17, 2);
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(120), Sim::downloads_over);
    let record = sim.record(1);
    assert!(record.delivered_at.is_some(), "{:?}", record.ended);
    assert_eq!(record.hash_restarts, 2);
    let stats = sim.core(1).transfer().expect("a download");
    assert_eq!(stats.chunks_refetched, 3);
    nobody_blamed_but(&sim, &[]);
}

#[test]
fn a_disk_that_keeps_damaging_a_chunk_ends_the_download() {
    let chunks = 16;
    let mut specs = vec![
        NodeSpec::seeder(0, chunks, 100.0 * MBIT),
        NodeSpec::fetcher(1, chunks, 1_000.0 * MBIT, false, &[0]),
    ];
    specs[1].damage.insert(5, 100);
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(120), Sim::downloads_over);
    let record = sim.record(1);
    assert!(record.delivered_at.is_none());
    match &record.ended {
        Some((_, End::Failed(Failure::Damaged { bad: 1, .. }))) => {}
        other => panic!("{other:?}"),
    }
    let max = NodeConfig::default().max_repairs_per_chunk;
    assert_eq!(record.hash_restarts, max);
    nobody_blamed_but(&sim, &[]);
}

#[test]
fn endgame_duplicates_are_cancelled_without_blame() {
    let chunks = 24;
    let specs = vec![
        NodeSpec::seeder(0, chunks, 1_000.0 * MBIT),
        NodeSpec::seeder(1, chunks, 20.0 * MBIT),
        NodeSpec::fetcher(2, chunks, 1_000.0 * MBIT, false, &[0, 1]),
    ];
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(120), Sim::downloads_over);
    let record = sim.record(2);
    let at = record.delivered_at.expect("delivered");
    assert!(record.cancels_sent > 0, "endgame asked twice and cancelled");
    nobody_blamed_but(&sim, &[]);
    let stats = sim.core(2).transfer().expect("a download");
    let fast_alone = f64::from(chunks) * f64::from(MIB) / (1_000.0 * MBIT);
    println!(
        "endgame: {:.3} s (fast seeder alone {fast_alone:.3} s), {} cancels, {} bytes wasted",
        secs(at),
        record.cancels_sent,
        stats.bytes_wasted
    );
    assert!(
        secs(at) < fast_alone * 1.5 + 0.1,
        "the slow seeder did not hold up the end"
    );
    assert!(
        stats.bytes_wasted <= 2 * u64::from(MIB),
        "{}",
        stats.bytes_wasted
    );
}

#[test]
fn loss_and_latency_cost_time_not_chunks_or_blame() {
    let chunks = 64;
    let mut specs: Vec<NodeSpec> = (0..2)
        .map(|i| NodeSpec::seeder(i, chunks, 100.0 * MBIT))
        .collect();
    specs.push(NodeSpec::fetcher(2, chunks, 1_000.0 * MBIT, true, &[0, 1]));
    specs.push(NodeSpec::fetcher(3, chunks, 1_000.0 * MBIT, true, &[0, 1]));
    for spec in &mut specs {
        spec.latency = Duration::from_millis(25);
        spec.loss = 0.01;
    }
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(300), Sim::downloads_over);
    for index in [2, 3] {
        let record = sim.record(index);
        let at = record
            .delivered_at
            .unwrap_or_else(|| panic!("{:?}", record.ended));
        println!("lossy: node {index} delivered at {:.2} s", secs(at));
        let stats = sim.core(index).transfer().expect("a download");
        assert_eq!(stats.chunks_fetched, u64::from(chunks));
    }
    nobody_blamed_but(&sim, &[]);
}

/// A seeder at 100 Mbit and `peers` serving peers at 1 Gbit on one LAN,
/// nobody given an offer: every peer must hear the others announced and
/// complete, nobody blamed. Returns the last peer's time over one copy
/// (F/u_s) and the seeder's copies.
fn lan_by_discovery(peers: usize, chunks: u32) -> (f64, f64) {
    let (seeder_up, peer_up) = (100.0 * MBIT, 1_000.0 * MBIT);
    let mut specs = vec![NodeSpec::seeder(0, chunks, seeder_up).on_lan(0)];
    for index in 1..=peers {
        specs.push(NodeSpec::fetcher(index, chunks, peer_up, true, &[]).on_lan(index));
    }
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.run(Duration::from_secs(600), Sim::downloads_over);
    let mut last: f64 = 0.0;
    for index in 1..=peers {
        let at = sim
            .record(index)
            .delivered_at
            .unwrap_or_else(|| panic!("peer {index} did not complete"));
        last = last.max(secs(at));
        let heard = sim
            .record(index)
            .reports
            .iter()
            .filter(|(_, report)| matches!(report, NodeReport::Lan { .. }))
            .count();
        assert!(heard >= 1, "peer {index} heard no neighbour");
    }
    nobody_blamed_but(&sim, &[]);
    let file = f64::from(chunks) * f64::from(MIB);
    let copies = sim.record(0).uploaded_bytes / file;
    let over_one_copy = last / (file / seeder_up);
    println!(
        "LAN, {peers} peers by local discovery alone, {chunks} MiB: last done {last:.2} s = {over_one_copy:.3} of one copy; seeder {copies:.3} copies"
    );
    (over_one_copy, copies)
}

#[test]
fn neighbours_on_one_lan_find_each_other_by_local_discovery_alone() {
    let (_, copies) = lan_by_discovery(7, 32);
    assert!(copies <= 1.2, "the seeder sent {copies:.3} copies");
}

#[test]
fn thirty_neighbours_on_one_lan_take_about_one_copy_from_the_seeder() {
    let (_, copies) = lan_by_discovery(30, 64);
    assert!(copies <= 1.2, "the seeder sent {copies:.3} copies");
}
