//! The swarm at internet scale: a flash crowd and a churning crowd of home
//! peers on paths of 10 to 300 ms with some loss, every host in a /24 of
//! its own. Reported against the bound for heterogeneous peers,
//! T* = max(F/u_s, N*F/(u_s + sum of u_i)) (downloads are not capped).
//!
//! The tests run at a size CI holds; the same scenarios at full size are
//! the figures command (`docs/performance.md`, "A thousand peers"):
//!
//! ```text
//! NETSIM_PEERS=1000 NETSIM_CHUNKS=1024 cargo test --release -p minimodel-node \
//!     netsim::scale -- --nocapture --test-threads 1
//! ```

use super::crowds::{MBIT, MIB};
use super::*;
use crate::report::Blame;

/// One scale scenario.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// Peers besides the seeder.
    pub peers: usize,
    /// Chunks of 1 MiB.
    pub chunks: u32,
    /// The seeder's uplink, Mbit.
    pub seeder_mbit: f64,
    /// Peers arrive uniformly within this long from the start, for 1,024
    /// chunks (scaled with the file, so that a smaller run keeps the
    /// shape).
    pub arrivals: Duration,
    /// A third of the peers leave as soon as they are done, one in fifteen
    /// vanish half way (no Goodbye: every tenth peer not among those
    /// leaving, 67 of 1,000), and the seeder stops once the running peers
    /// hold one full copy between them. Peers look each other up on the
    /// DHT (without churn they have only the seeder's offer, and the peers
    /// it turns away hear of others from its refusal).
    pub churn: bool,
    /// Draws uplinks, latencies, losses and arrivals.
    pub seed: u64,
}

impl Scenario {
    /// The flash crowd: `peers` peers arriving within 60 s.
    pub fn flash_crowd(peers: usize, chunks: u32) -> Self {
        Self {
            peers,
            chunks,
            seeder_mbit: 100.0,
            arrivals: Duration::from_secs(60),
            churn: false,
            seed: 1,
        }
    }

    /// The churn scenario: `peers` peers arriving over 300 s.
    pub fn churn(peers: usize, chunks: u32) -> Self {
        Self {
            arrivals: Duration::from_secs(300),
            churn: true,
            seed: 2,
            ..Self::flash_crowd(peers, chunks)
        }
    }

    /// The size from `NETSIM_PEERS` and `NETSIM_CHUNKS` where set (the
    /// figures command).
    pub fn sized(self) -> Self {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
        Self {
            peers: env("NETSIM_PEERS").map_or(self.peers, |peers| peers as usize),
            chunks: env("NETSIM_CHUNKS").unwrap_or(self.chunks),
            ..self
        }
    }
}

/// What one scale run gave.
#[derive(Debug)]
pub(crate) struct ScaleFigures {
    /// Peers that were to finish (all but the vanishing ones).
    pub staying: usize,
    /// Of those, how many finished verified.
    pub finished: usize,
    /// Finish times (since the start of the run) at the 50th, 90th, 99th
    /// percentile and the last, seconds.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub last: f64,
    /// T*, seconds.
    pub bound: f64,
    /// Bytes the seeder sent, in copies of the file.
    pub seeder_copies: f64,
    /// Bytes every uplink carried beyond the verified chunks they
    /// delivered (cancelled and duplicate uploads, uploads to peers that
    /// vanished), in copies of the file.
    pub wasted_copies: f64,
    /// What every uplink carried over what it could have carried from its
    /// node's start to the last finish.
    pub uplink_use: f64,
    /// Peers blamed or banned by anyone.
    pub blamed: usize,
    /// When the seeder stopped, if it did, seconds.
    pub seeder_left: Option<f64>,
    /// Simulator events handled per verified chunk delivery.
    pub events_per_chunk: f64,
    /// Wall time of the simulation per verified chunk delivery, in
    /// microseconds (a figure, never asserted).
    pub micros_per_chunk: f64,
}

impl ScaleFigures {
    pub fn ratio(&self) -> f64 {
        self.last / self.bound
    }
}

/// Runs `scenario` and checks what holds at any size: every staying peer
/// finished verified.
pub(crate) fn run(scenario: &Scenario) -> ScaleFigures {
    let Scenario {
        peers,
        chunks,
        seeder_mbit,
        arrivals,
        churn,
        seed,
    } = *scenario;
    let mut rng = SplitMix64(seed);
    let seeder_up = seeder_mbit * MBIT;
    let mut seeder = NodeSpec::seeder(0, chunks, seeder_up);
    seeder.latency = Duration::from_millis(5);
    seeder.dht = churn;
    let mut specs = vec![seeder];
    let mut uplinks = Vec::new();
    for index in 1..=peers {
        // 20% at 100 Mbit, 60% at 20, 20% at 5.
        let draw = rng.below(10);
        let mbit = match draw {
            0 | 1 => 100.0,
            2 | 3 => 5.0,
            _ => 20.0,
        };
        uplinks.push(mbit * MBIT);
        let mut spec = NodeSpec::fetcher(index, chunks, mbit * MBIT, true, &[0]);
        // One-way access latency 2.5 to 75 ms: paths of 10 to 300 ms.
        spec.latency = Duration::from_micros(2_500 + rng.below(72_500));
        spec.loss = 0.001 + 0.009 * rng.unit();
        let window = arrivals.as_secs_f64() * f64::from(chunks) / 1024.0;
        spec.starts_at = Duration::from_secs_f64(window * rng.unit());
        spec.dht = churn;
        if churn {
            if index % 3 == 0 {
                spec.seed_after = false;
            } else if index % 10 == 5 {
                spec.vanish_after = Some(chunks / 2);
            }
        }
        specs.push(spec);
    }
    let vanishing: Vec<bool> = specs.iter().map(|s| s.vanish_after.is_some()).collect();
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.max_events = 2_000_000_000;
    if churn {
        sim.leave_when_copied = Some(0);
    }
    let started = Instant::now();
    let done = |sim: &Sim| {
        (1..=peers).all(|i| {
            let record = sim.record(i);
            record.delivered_at.is_some() || record.ended.is_some() || vanishing[i]
        })
    };
    if std::env::var_os("NETSIM_STEPS").is_some() {
        let mut t = 0;
        while !done(&sim) && t < 7200 {
            t += 5;
            sim.run(Duration::from_secs(t), done);
            let mut line = [0usize; 8];
            let mut hist = [0usize; 5];
            let (mut unlinked, mut unlinked_dialing) = (0, 0);
            let mut unlinked_books = [0usize; 3];
            let (mut dials, mut books) = (0, 0);
            for i in 1..=peers {
                let Some(core) = sim.nodes[i].core.as_ref() else {
                    continue;
                };
                if !sim.nodes[i].alive {
                    line[1] += 1;
                    continue;
                }
                line[0] += 1;
                let (missing, flight, active, queued, _) = core.load();
                line[2] += usize::from(missing == chunks);
                let links = core.connected_count();
                line[3] += links;
                line[4] += flight;
                line[5] += active;
                line[6] += queued;
                line[7] += usize::from(!sim.nodes[i].uplink.transfers.is_empty());
                let (dialing, book) = core.dial_load();
                if links == 0 {
                    unlinked += 1;
                    unlinked_dialing += usize::from(dialing > 0);
                    unlinked_books[match book {
                        0..=1 => 0,
                        2..=10 => 1,
                        _ => 2,
                    }] += 1;
                }
                hist[match links {
                    0 => 0,
                    1..=3 => 1,
                    4..=15 => 2,
                    16..=31 => 3,
                    _ => 4,
                }] += 1;
                dials += dialing;
                books += book;
            }
            // Idle uplinks: could they serve anyone? (a linked peer that
            // downloads and lacks one of their chunks), and was that peer's
            // request budget spent?
            let (mut idle, mut useful, mut budget_spent) = (0, 0, 0);
            for u in 1..=peers {
                if !sim.nodes[u].alive || !sim.nodes[u].uplink.transfers.is_empty() {
                    continue;
                }
                idle += 1;
                let mut could = false;
                let mut spent = true;
                for c in &sim.conns {
                    for side in 0..2 {
                        let linked = c.open == [true, true] && c.ups.iter().any(Option::is_some);
                        if c.nodes[side] != u || !linked {
                            continue;
                        }
                        let d = c.nodes[1 - side];
                        let Some(core) = sim.nodes[d].core.as_ref() else {
                            continue;
                        };
                        if !sim.nodes[d].alive || sim.nodes[d].record.delivered_at.is_some() {
                            continue;
                        }
                        if sim.nodes[u]
                            .disk
                            .stored
                            .iter()
                            .any(|chunk| !sim.nodes[d].disk.stored.contains(chunk))
                        {
                            could = true;
                            let (_, flight, _, _, _) = core.load();
                            if flight < 16 {
                                spent = false;
                            }
                        }
                    }
                }
                if could {
                    useful += 1;
                    if spent {
                        budget_spent += 1;
                    }
                }
            }
            println!(
                "       idle uplinks {idle}: with a linked downloader lacking their chunks {useful}, all of those with their budget spent {budget_spent}"
            );
            let running = line[0].max(1);
            println!(
                "t={t:4} running {:4} gone {:4} empty {:4} links {:5.1} in flight {:5.1} uploading {:4.1} queued {:5.1} uplink busy {:3.0}% seeder uploads {}",
                line[0],
                line[1],
                line[2],
                line[3] as f64 / running as f64,
                line[4] as f64 / running as f64,
                line[5] as f64 / running as f64,
                line[6] as f64 / running as f64,
                100.0 * line[7] as f64 / running as f64,
                sim.nodes[0].uplink.transfers.len(),
            );
            println!(
                "       links 0/1-3/4-15/16-31/32: {hist:?} dialing {:.1} book {:.0}",
                dials as f64 / running as f64,
                books as f64 / running as f64
            );
            println!(
                "       with no link {unlinked}, of them dialing {unlinked_dialing}, \
                 knowing 0-1/2-10/11+ addresses {unlinked_books:?}"
            );
        }
    }
    sim.run(Duration::from_secs(7200), done);
    let wall = started.elapsed();

    let mut times = Vec::new();
    let mut staying = 0;
    for (index, &vanished) in vanishing.iter().enumerate().skip(1) {
        if vanished {
            continue;
        }
        staying += 1;
        if let Some(at) = sim.record(index).delivered_at {
            times.push(at.as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        if times.is_empty() {
            return f64::NAN;
        }
        times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1]
    };
    let mut blamed = BTreeSet::new();
    for index in 0..sim.specs().len() {
        for (_, report) in &sim.record(index).reports {
            match report {
                NodeReport::PeerDisconnected {
                    blame: Blame::Peer,
                    peer,
                    ..
                } => {
                    blamed.insert(*peer);
                }
                NodeReport::Banned { peer, .. } => {
                    blamed.insert(*peer);
                }
                _ => {}
            }
        }
    }
    let file = f64::from(chunks) * f64::from(MIB);
    let verified: u64 = (0..sim.specs().len())
        .map(|i| u64::from(sim.record(i).verified))
        .sum();
    let uploaded: f64 = (0..sim.specs().len())
        .map(|i| sim.record(i).uploaded_bytes)
        .sum();
    if std::env::var_os("NETSIM_TRACE").is_some() {
        let all = 0..sim.specs().len();
        let started: usize = all.clone().map(|i| sim.record(i).uploads.len()).sum();
        let cancelled: u64 = all.clone().map(|i| sim.record(i).uploads_cancelled).sum();
        let cancels: u64 = all.clone().map(|i| sim.record(i).cancels_sent).sum();
        println!(
            "uploads started {started}, verified {verified}, cancelled {cancelled}, cancels sent {cancels}, stopped {}",
            sim.stopped.len()
        );
        println!("events: {:?}", sim.event_kinds);
        for i in 1..=peers {
            let record = sim.record(i);
            if record.delivered_at.is_none() {
                println!(
                    "peer {i} start {:?} ended {:?} verified {}",
                    sim.specs()[i].starts_at,
                    record.ended,
                    record.verified
                );
            }
        }
        let wakeups: u64 = all.clone().map(|i| sim.record(i).wakeups).sum();
        println!("wakeups {wakeups}");
    }
    let last = times.last().copied().unwrap_or(f64::NAN);
    // A node counts from its start to its end (leaving when done, the
    // seeder stopping) or the last finish.
    let capacity: f64 = (0..sim.specs().len())
        .map(|i| {
            let spec = &sim.specs()[i];
            let end = sim
                .record(i)
                .ended
                .as_ref()
                .map_or(last, |(at, _)| at.as_secs_f64().min(last));
            spec.uplink * (end - spec.starts_at.as_secs_f64()).max(0.0)
        })
        .sum();
    let n = peers as f64;
    let bound = (file / seeder_up).max(n * file / (seeder_up + uplinks.iter().sum::<f64>()));
    let figures = ScaleFigures {
        staying,
        finished: times.len(),
        p50: percentile(0.5),
        p90: percentile(0.9),
        p99: percentile(0.99),
        last,
        uplink_use: uploaded / capacity,
        bound,
        seeder_copies: sim.record(0).uploaded_bytes / file,
        wasted_copies: (uploaded - verified as f64 * f64::from(MIB)) / file,
        blamed: blamed.len(),
        seeder_left: sim.record(0).ended.as_ref().map(|(at, _)| at.as_secs_f64()),
        events_per_chunk: sim.events_handled as f64 / verified.max(1) as f64,
        micros_per_chunk: wall.as_secs_f64() * 1e6 / verified.max(1) as f64,
    };
    println!(
        "{} {peers} peers, {chunks} MiB: finished {}/{}; p50 {:.1} s, p90 {:.1} s, p99 {:.1} s, \
         last {:.1} s; T* {:.1} s: {:.2}x; seeder {:.2} copies{}; wasted {:.2} copies; uplinks used {:.0}%; \
         blamed {}; {:.1} events and {:.1} us per chunk delivered ({:.1} s)",
        if churn { "churn" } else { "flash crowd" },
        figures.finished,
        figures.staying,
        figures.p50,
        figures.p90,
        figures.p99,
        figures.last,
        figures.bound,
        figures.ratio(),
        figures.seeder_copies,
        figures
            .seeder_left
            .map_or(String::new(), |at| format!(", left at {at:.1} s")),
        figures.wasted_copies,
        100.0 * figures.uplink_use,
        figures.blamed,
        figures.events_per_chunk,
        figures.micros_per_chunk,
        wall.as_secs_f64(),
    );
    assert_eq!(figures.finished, figures.staying, "{figures:?}");
    figures
}

// The figures command runs these at 1,000 peers and 1,024 chunks; CI runs
// them at 100 peers and 64 chunks. The guards below are today's figures
// with a margin (the goal is 1.25 T* and 1.2 seeder copies:
// `docs/performance.md`, "A thousand peers"): the time, the copies wasted
// and the seeder's copies, so that a change that spends the crowd's
// uplinks on duplicates fails where it is made. At this size, with far
// peers' requests not begun all outside the budget (2026-11-28 to
// 2026-11-29), the flash crowd wasted 13.45 copies and the churn 12.71;
// then 8.69 and 9.15; with no endgame duplicate of a chunk a peer as fast
// is sending already (`DownloadConfig::endgame_duplicate_factor`), 7.90
// and 8.30. The runs are deterministic: a bound moves only with the code. With `NETSIM_PEERS` or `NETSIM_CHUNKS` set (the figures
// command) only what holds at any size is asserted.

/// Whether the run is CI's size (the bounds below are for it).
fn ci_size() -> bool {
    std::env::var_os("NETSIM_PEERS").is_none() && std::env::var_os("NETSIM_CHUNKS").is_none()
}

#[test]
fn a_flash_crowd_of_home_peers_all_finish_and_nobody_is_blamed() {
    let figures = run(&Scenario::flash_crowd(100, 64).sized());
    assert_eq!(figures.blamed, 0, "{figures:?}");
    assert!(figures.ratio() <= 2.3, "{figures:?}");
    if ci_size() {
        // 1.48 T*, 7.90 wasted, the seeder 3.83 copies.
        assert!(figures.ratio() <= 1.65, "{figures:?}");
        assert!(figures.wasted_copies <= 9.5, "{figures:?}");
        assert!(figures.seeder_copies <= 4.5, "{figures:?}");
    }
}

#[test]
fn a_churning_crowd_finishes_after_the_seeder_left() {
    let figures = run(&Scenario::churn(100, 64).sized());
    assert_eq!(figures.blamed, 0, "{figures:?}");
    let left = figures.seeder_left.expect("the seeder left");
    assert!(figures.last > left, "{figures:?}");
    if ci_size() {
        // 2.02 T*, 8.30 wasted, the seeder 2.74 copies.
        assert!(figures.ratio() <= 2.35, "{figures:?}");
        assert!(figures.wasted_copies <= 10.0, "{figures:?}");
        assert!(figures.seeder_copies <= 3.2, "{figures:?}");
    }
}
