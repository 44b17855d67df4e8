//! One fetch from several seeders: the download's own scheduling seen from
//! the fetcher (pipeline depth, sharing, rescues from slow peers, rarest
//! first, peers that leave, stall or lie, a peer that arrives late), with
//! every seeder a whole node on the simulated network. (Loss and latency
//! on every path: `scenarios::loss_and_latency_cost_time_not_chunks_or_blame`.)
//!
//! `cargo test -p minimodel-node netsim::fetch -- --nocapture` prints the
//! figures.

use super::*;
use crate::report::{Departure, PeerFigures};

const MIB: u32 = 1 << 20;
/// A megabyte per second, in bytes per second.
const MBPS: f64 = 1_000_000.0;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A seeder, node `index`, at `mbps` megabytes per second and `one_way`
/// from the fetcher.
fn seeder(index: usize, chunks: u32, mbps: f64, one_way: Duration) -> NodeSpec {
    NodeSpec {
        latency: one_way,
        ..NodeSpec::seeder(index, chunks, mbps * MBPS)
    }
}

/// What one fetch gave.
struct Fetched {
    sim: Sim,
    /// The fetcher's node index.
    fetcher: usize,
}

impl Fetched {
    /// Seconds until the fetch was delivered.
    fn finished(&self) -> f64 {
        self.sim
            .record(self.fetcher)
            .delivered_at
            .unwrap_or_else(|| {
                panic!(
                    "the fetch did not complete: {:?}",
                    self.sim.record(self.fetcher).ended
                )
            })
            .as_secs_f64()
    }

    /// What seeder `index` did for the fetch.
    fn from(&self, index: usize) -> PeerFigures {
        self.sim
            .core(self.fetcher)
            .transfer()
            .expect("a download")
            .peers
            .into_iter()
            .find(|peer| peer.id == id_of(index))
            .unwrap_or_else(|| PeerFigures::of(id_of(index)))
    }

    /// Verified bytes every seeder delivered first, together.
    fn total(&self) -> u64 {
        (0..self.fetcher)
            .map(|index| self.from(index).download.bytes)
            .sum()
    }

    /// Why the fetcher dropped seeder `index`, each time it did.
    fn departures(&self, index: usize) -> Vec<Departure> {
        self.sim
            .record(self.fetcher)
            .reports
            .iter()
            .filter_map(|(_, report)| match report {
                NodeReport::PeerDisconnected { peer, reason, .. } if *peer == id_of(index) => {
                    Some(reason.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// `seeders` and one fetch (the next node, 1 ms from the network, not
/// serving) given every seeder's offer, `chunks` chunks of 1 MiB; runs
/// until the fetch is delivered, or for `limit`.
fn fetch(chunks: u32, seeders: Vec<NodeSpec>, limit: Duration) -> Fetched {
    fetch_with(chunks, seeders, limit, false)
}

/// [`fetch`], with uploads as the transport runs them
/// ([`Sim::transport_uploads`]) when `transport`.
fn fetch_with(chunks: u32, seeders: Vec<NodeSpec>, limit: Duration, transport: bool) -> Fetched {
    let fetcher = seeders.len();
    let offers: Vec<usize> = (0..fetcher).collect();
    let mut specs = seeders;
    specs.push(NodeSpec::fetcher(
        fetcher,
        chunks,
        100.0 * MBPS,
        false,
        &offers,
    ));
    let mut sim = Sim::new(MIB, chunks, specs);
    if transport {
        sim.transport_uploads();
    }
    sim.run(limit, Sim::downloads_over);
    let fetched = Fetched { sim, fetcher };
    println!(
        "{fetcher} seeders, {chunks} MiB: {:.2} s; delivered {:?} MiB",
        fetched.finished(),
        (0..fetcher)
            .map(|index| fetched.from(index).download.bytes / u64::from(MIB))
            .collect::<Vec<_>>()
    );
    fetched
}

#[test]
fn one_fast_far_peer_is_used_at_most_of_its_rate() {
    // 100 MB/s at 50 ms one way: the pipeline must grow to the path (it
    // holds 10 MB, and a chunk is in flight from its request until it is
    // verified), within the download's budget (`max_in_flight_bytes`, and
    // as much again of a far peer's requests not begun), or the seeder
    // idles every round trip; 4 requests would give 0.3 of its rate. Uploads
    // as the transport runs them (one stream of a connection at a time).
    let chunks = 400;
    let fetched = fetch_with(
        chunks,
        vec![seeder(0, chunks, 100.0, ms(50))],
        Duration::from_secs(60),
        true,
    );
    let ideal = f64::from(chunks) * f64::from(MIB) / (100.0 * MBPS);
    let finished = fetched.finished();
    assert!(
        finished < ideal / 0.75,
        "took {finished:.2} s, {:.2} of the seeder's rate",
        ideal / finished
    );
    assert_eq!(fetched.total(), u64::from(chunks) * u64::from(MIB));
    scenarios::nobody_blamed_but(&fetched.sim, &[]);
}

#[test]
fn equal_peers_share_the_load() {
    let seeders = (0..4).map(|i| seeder(i, 400, 40.0, ms(5))).collect();
    let fetched = fetch(400, seeders, Duration::from_secs(60));
    let share = u64::from(MIB) * 100;
    for index in 0..4 {
        let delivered = fetched.from(index).download.bytes;
        assert!(
            delivered > share * 8 / 10 && delivered < share * 12 / 10,
            "seeder {index} delivered {delivered} of an even share of {share}"
        );
    }
    scenarios::nobody_blamed_but(&fetched.sim, &[]);
}

#[test]
fn a_slow_peer_does_not_hold_up_the_end() {
    let fast = || {
        (0..3)
            .map(|i| seeder(i, 300, 50.0, ms(5)))
            .collect::<Vec<_>>()
    };
    let alone = fetch(300, fast(), Duration::from_secs(120)).finished();
    let mut with_slow = fast();
    with_slow.push(seeder(3, 300, 0.5, ms(5)));
    let fetched = fetch(300, with_slow, Duration::from_secs(120));
    let finished = fetched.finished();
    assert!(
        !fetched.sim.record(3).uploads.is_empty(),
        "the slow seeder was asked for chunks"
    );
    // The slow seeder's last chunk alone would take 2 s; the fast ones
    // rescue its chunks instead.
    assert!(
        finished < alone * 1.1 + 0.2,
        "with a slow seeder {finished:.2} s, without {alone:.2} s"
    );
    scenarios::nobody_blamed_but(&fetched.sim, &[]);
}

#[test]
fn chunks_held_by_a_much_slower_peer_are_fetched_elsewhere() {
    // A seeder 100 times slower than the others takes 2 s a chunk. The
    // fast ones take its chunks over long before endgame, so the front of
    // the file does not wait for it.
    let mut seeders: Vec<NodeSpec> = (0..3).map(|i| seeder(i, 1000, 50.0, ms(5))).collect();
    seeders.push(seeder(3, 1000, 0.5, ms(5)));
    let fetched = fetch(1000, seeders, Duration::from_secs(120));
    fetched.finished();
    assert!(
        !fetched.sim.record(3).uploads.is_empty(),
        "the slow seeder was asked for chunks"
    );
    let verified_at = &fetched.sim.record(fetched.fetcher).verified_at;
    let front_done = verified_at[..100]
        .iter()
        .map(|at| at.expect("verified"))
        .max()
        .expect("chunks");
    // 100 MiB at 150 MB/s is 0.7 s.
    assert!(
        front_done < ms(1200),
        "the first 100 chunks took {front_done:?}"
    );
}

#[test]
fn rarest_chunks_go_first_when_holders_differ() {
    // Chunks 0..50 are held by three seeders and by a fourth, which alone
    // also holds 50..100 and vanishes after about the time it needs to send
    // 55 chunks. The download completes only if that seeder spent its time
    // on the chunks nobody else has.
    let mut common = HaveBitfield::new(100);
    for chunk in 0..50 {
        common.set(ChunkIndex(chunk), true).expect("in range");
    }
    let mut seeders: Vec<NodeSpec> = (0..3)
        .map(|i| NodeSpec {
            have: common.clone(),
            ..seeder(i, 100, 10.0, ms(5))
        })
        .collect();
    seeders.push(NodeSpec {
        killed_at: Some(Duration::from_secs_f64(
            55.0 * f64::from(MIB) / (10.0 * MBPS),
        )),
        ..seeder(3, 100, 10.0, ms(5))
    });
    let fetched = fetch(100, seeders, Duration::from_secs(120));
    fetched.finished();
    let rare = fetched.from(3).download;
    assert_eq!(
        rare.bytes,
        50 * u64::from(MIB),
        "the rare holder sent only rare chunks: {rare:?}"
    );
    scenarios::nobody_blamed_but(&fetched.sim, &[]);
}

#[test]
fn a_peer_that_leaves_mid_chunk_costs_only_time() {
    let mut seeders: Vec<NodeSpec> = (0..3).map(|i| seeder(i, 200, 20.0, ms(10))).collect();
    seeders[0].killed_at = Some(ms(1_234));
    let fetched = fetch(200, seeders, Duration::from_secs(60));
    fetched.finished();
    assert_eq!(
        fetched.total(),
        200 * u64::from(MIB),
        "every chunk counted exactly once"
    );
    let gone = fetched.from(0).download.bytes;
    assert!(gone > 0 && gone < 30 * u64::from(MIB), "{gone}");
    scenarios::nobody_blamed_but(&fetched.sim, &[]);
}

#[test]
fn a_lying_peer_is_banned_and_its_chunks_come_from_others() {
    let mut seeders: Vec<NodeSpec> = (0..3).map(|i| seeder(i, 100, 20.0, ms(5))).collect();
    seeders[1].behaviour = Behaviour::Liar;
    let fetched = fetch(100, seeders, Duration::from_secs(60));
    fetched.finished();
    let liar = fetched.from(1);
    assert!(liar.banned);
    assert_eq!(liar.download.bad_chunks, 1, "banned at the first bad chunk");
    assert_eq!(liar.download.bytes, 0);
    assert!(
        fetched
            .departures(1)
            .iter()
            .any(|reason| matches!(reason, Departure::BadData { .. })),
        "{:?}",
        fetched.departures(1)
    );
    assert_eq!(fetched.total(), 100 * u64::from(MIB));
    scenarios::nobody_blamed_but(&fetched.sim, &[1]);
}

#[test]
fn a_stalling_peer_is_dropped_and_its_chunks_reassigned() {
    // 800 MiB at 20 MB/s from the honest seeder alone takes 42 s, longer
    // than the download's silence timeout.
    let mut seeders: Vec<NodeSpec> = (0..2).map(|i| seeder(i, 800, 20.0, ms(5))).collect();
    seeders[0].behaviour = Behaviour::Staller(ms(500));
    let fetched = fetch(800, seeders, Duration::from_secs(120));
    let finished = fetched.finished();
    let alone = 800.0 * f64::from(MIB) / (20.0 * MBPS);
    assert!(
        finished < alone + 1.0,
        "took {finished:.2} s, the honest seeder alone {alone:.2} s"
    );
    assert_eq!(fetched.total(), 800 * u64::from(MIB));
    assert!(
        fetched
            .departures(0)
            .iter()
            .any(|reason| matches!(reason, Departure::Silent | Departure::TooManyTimeouts)),
        "{:?}",
        fetched.departures(0)
    );
    scenarios::nobody_blamed_but(&fetched.sim, &[0]);
}

#[test]
fn a_late_joiner_takes_a_share() {
    // The second seeder starts listening 5 s in: the fetch's first dial to
    // it goes unanswered until its deadline, and it is dialed again.
    let mut seeders: Vec<NodeSpec> = (0..2).map(|i| seeder(i, 400, 10.0, ms(5))).collect();
    seeders[1].starts_at = Duration::from_secs(5);
    let fetched = fetch(400, seeders, Duration::from_secs(120));
    fetched.finished();
    let late = fetched.from(1).download.bytes;
    assert!(
        late > 80 * u64::from(MIB),
        "the late seeder delivered {late}"
    );
    scenarios::nobody_blamed_but(&fetched.sim, &[]);
}

/// One seeder with an uplink of `rate` MB/s and one fetch over a far path,
/// uploads as the transport runs them (each whole only once acknowledged),
/// in 512 KiB chunks (the default of a 64 MiB artifact), with and without
/// loss: the lab's `far-*` scenarios without a transport. Returns the
/// fetch's seconds for each loss in `losses`.
fn one_far_seeder(rate: f64, one_way: Duration, losses: &[f64]) -> Vec<f64> {
    let chunk = 512 * 1024;
    let chunks = 128;
    losses
        .iter()
        .map(|&loss| {
            let specs = vec![
                NodeSpec {
                    latency: one_way,
                    loss,
                    ..NodeSpec::seeder(0, chunks, rate * MBPS)
                },
                NodeSpec {
                    loss,
                    ..NodeSpec::fetcher(1, chunks, 100.0 * MBPS, false, &[0])
                },
            ];
            let mut sim = Sim::new(chunk, chunks, specs);
            sim.transport_uploads();
            sim.run(Duration::from_secs(600), Sim::downloads_over);
            let done = sim
                .record(1)
                .delivered_at
                .expect("the fetch completes")
                .as_secs_f64();
            println!(
                "one seeder at {rate} MB/s, {} ms round trips, {:.1} % loss: {done:.2} s, peak uploads {}",
                2 * (one_way.as_millis() + 1),
                loss * 100.0,
                sim.record(0).peak_uploads
            );
            done
        })
        .collect()
}

#[test]
fn one_far_lossy_seeder_keeps_most_of_its_rate() {
    // 50 ms round trips, 1 % loss each way: nearly every 512 KiB chunk has
    // a packet sent again, whole a round trip later than the rest.
    let times = one_far_seeder(12.0, ms(24), &[0.0, 0.01]);
    let kept = times[0] / times[1];
    println!("50 ms, 1 % loss: {kept:.3} of the rate without loss");
    assert!(kept >= 0.8, "{times:?}");
}

#[test]
fn one_fast_far_lossy_seeder_keeps_most_of_its_rate() {
    // The lab's uncapped `far-64-50ms-1pct`: 100 ms round trips, 1 % loss
    // each way, a seeder whose uplink carries 40 MB/s.
    let times = one_far_seeder(40.0, ms(49), &[0.0, 0.01]);
    let kept = times[0] / times[1];
    println!("100 ms, 1 % loss, 40 MB/s: {kept:.3} of the rate without loss");
    assert!(kept >= 0.8, "{times:?}");
}
