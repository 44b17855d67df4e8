//! Home uplinks: one seeder and a crowd of serving peers whose uplinks are
//! slower than the seeder's (2 to 20 Mbit), every host in its own /24, the
//! lab's `uplinks-*` scenarios (`docs/lab.md`). Reported against the bound
//! for heterogeneous peers, T* = max(F/u_s, N*F/(u_s + sum of u_i)).
//!
//! `cargo test -p minimodel-node crowds -- --nocapture` prints the figures.
//! With `NETSIM_TRACE=1` each crowd also prints the chunks verified over
//! the crowd every 2 s, the seeder's first uploads and every peer's
//! uplink use; `NETSIM_TRACE_PEER=N` adds peer N's uploads received,
//! progress, reports, and the Requests and Cancels it sends.

// The thread locals below are `const` already: clippy 1.96 says otherwise
// on targets without native thread locals (x86_64-pc-windows-gnu;
// rust-clippy issue 17566).
#![allow(clippy::missing_const_for_thread_local)]

use super::*;
use crate::report::Blame;

pub(super) const MIB: u32 = 1 << 20;
/// A megabit per second, in bytes per second.
pub(super) const MBIT: f64 = 1_000_000.0 / 8.0;

thread_local! {
    /// Mixed into every node's seed by [`crowd_with`] on this thread (0 in
    /// the named tests; [`crowds_over_seeds`] sets others on its own
    /// thread, one run at a time).
    static SEED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The slow paths [`crowd_with`] draws on this thread (none in the
    /// named tests).
    static SLOW_PATHS: std::cell::Cell<Option<SlowPaths>> = const { std::cell::Cell::new(None) };
}

/// What one crowd run gave.
#[derive(Debug)]
pub(crate) struct CrowdFigures {
    /// Until the last peer held a verified file, seconds.
    pub last: f64,
    /// The median peer's finish, seconds.
    pub median: f64,
    /// T*, seconds.
    pub bound: f64,
    /// Bytes the seeder sent, in copies of the file.
    pub seeder_copies: f64,
    /// When each peer verified its first chunk, seconds.
    pub first_chunk: Vec<f64>,
    /// Bytes every uplink carried, seeder's included, over the bytes the
    /// peers needed (1: nothing sent twice or cut off).
    pub sent_over_needed: f64,
}

impl CrowdFigures {
    pub fn ratio(&self) -> f64 {
        self.last / self.bound
    }
}

/// Uplinks of `peers` peers: 2, 5, 10, 20 Mbit in turn.
pub(crate) fn mixed(peers: usize) -> Vec<f64> {
    (0..peers)
        .map(|i| [2.0, 5.0, 10.0, 20.0][i % 4] * MBIT)
        .collect()
}

/// One seeder at `seeder_mbit` and one serving peer per uplink in
/// `uplinks`, all started at once, given only the seeder's offer, trading
/// an artifact of `mib` MiB in the chunks `minimodel manifest` gives it
/// by default (as in the lab).
pub(crate) fn crowd(seeder_mbit: f64, uplinks: &[f64], mib: u32) -> CrowdFigures {
    crowd_with(seeder_mbit, uplinks, mib, |_, _| {})
}

/// The default geometry of an artifact of `mib` MiB: its chunk count and
/// chunk size.
pub(crate) fn geometry(mib: u32) -> (u32, u32) {
    let bytes = u64::from(mib) * u64::from(MIB);
    let size = minimodel_verifier::manifest::default_chunk_size(bytes);
    let count = minimodel_verifier::manifest::chunk_count_for(bytes, size);
    (u32::try_from(count).expect("a small artifact"), size)
}

/// [`crowd`] with every node changed by `tune` (its index, its spec).
pub(crate) fn crowd_with(
    seeder_mbit: f64,
    uplinks: &[f64],
    mib: u32,
    tune: impl Fn(usize, &mut NodeSpec),
) -> CrowdFigures {
    let (chunks, chunk_size) = geometry(mib);
    crowd_in(seeder_mbit, uplinks, chunks, chunk_size, tune)
}

/// [`crowd_with`] in `chunks` chunks of `chunk_size` bytes.
pub(crate) fn crowd_in(
    seeder_mbit: f64,
    uplinks: &[f64],
    chunks: u32,
    chunk_size: u32,
    tune: impl Fn(usize, &mut NodeSpec),
) -> CrowdFigures {
    let seeder_up = seeder_mbit * MBIT;
    let mut specs = vec![NodeSpec::seeder(0, chunks, seeder_up)];
    for (index, &uplink) in uplinks.iter().enumerate() {
        specs.push(NodeSpec::fetcher(index + 1, chunks, uplink, true, &[0]));
    }
    for (index, spec) in specs.iter_mut().enumerate() {
        tune(index, spec);
    }
    let mut sim = Sim::new(chunk_size, chunks, specs);
    sim.seed_offset = SEED.get();
    sim.slow_paths = SLOW_PATHS.get();
    sim.path_rng = crate::rng::SplitMix64(SEED.get() ^ 0x5105_9a75);
    sim.run(Duration::from_secs(3600), Sim::downloads_over);
    let peers = uplinks.len();
    let mut done = Vec::new();
    let mut first_chunk = Vec::new();
    for index in 1..=peers {
        let record = sim.record(index);
        let at = record
            .delivered_at
            .unwrap_or_else(|| panic!("peer {index} did not complete: {:?}", record.ended));
        done.push(at.as_secs_f64());
        let first = record
            .reports
            .iter()
            .find_map(|(at, report)| match report {
                NodeReport::Progress {
                    verified_chunks, ..
                } if *verified_chunks > 0 => Some(*at),
                _ => None,
            })
            .unwrap_or(at);
        first_chunk.push(first.as_secs_f64());
    }
    for index in 0..sim.specs().len() {
        for (at, report) in &sim.record(index).reports {
            if let NodeReport::PeerDisconnected {
                blame: Blame::Peer,
                peer,
                reason,
                ..
            } = report
            {
                panic!("node {index} blamed {peer:?} at {at:?}: {reason}");
            }
            assert!(!matches!(report, NodeReport::Banned { .. }), "{report:?}");
        }
    }
    if std::env::var_os("NETSIM_TRACE").is_some() {
        // Chunks verified over the whole crowd, second by second.
        let mut line = String::new();
        for second in (0..60).step_by(2) {
            let t = Duration::from_secs(second);
            let total: u32 = (1..=peers)
                .map(|index| {
                    sim.record(index)
                        .reports
                        .iter()
                        .filter(|(at, _)| *at <= t)
                        .filter_map(|(_, report)| match report {
                            NodeReport::Progress {
                                verified_chunks, ..
                            } => Some(*verified_chunks),
                            NodeReport::Delivered { .. } => Some(chunks),
                            _ => None,
                        })
                        .next_back()
                        .unwrap_or(0)
                })
                .sum();
            line.push_str(&format!(" {second}s:{total}"));
        }
        println!("verified over time:{line}");
        if let Some(peer) = std::env::var("NETSIM_TRACE_PEER")
            .ok()
            .and_then(|p| p.parse::<usize>().ok())
        {
            let mut to_peer: Vec<(Duration, usize, u32)> = (0..sim.specs().len())
                .flat_map(|from| {
                    sim.record(from)
                        .uploads
                        .iter()
                        .filter(|(_, to, _)| *to == peer)
                        .map(move |(at, _, chunk)| (*at, from, *chunk))
                })
                .collect();
            to_peer.sort();
            for (at, from, chunk) in to_peer {
                println!(
                    "{:7.3} peer {peer}: upload of chunk {chunk} started by {from}",
                    at.as_secs_f64()
                );
            }
            let mut verified = 0;
            for (at, report) in &sim.record(peer).reports {
                match report {
                    NodeReport::Progress {
                        verified_chunks, ..
                    } => {
                        if *verified_chunks != verified {
                            verified = *verified_chunks;
                            println!("{:7.3} peer {peer}: {verified} verified", at.as_secs_f64());
                        }
                    }
                    _ => println!("{:7.3} peer {peer}: {report:?}", at.as_secs_f64()),
                }
            }
        }
        let mut copies = vec![0; chunks as usize];
        for (at, to, chunk) in sim.record(0).uploads.iter().take(80) {
            copies[*chunk as usize] += 1;
            println!(
                "{:7.3} seeder -> {to} chunk {chunk} (copy {})",
                at.as_secs_f64(),
                copies[*chunk as usize]
            );
        }
        for (index, uplink) in uplinks.iter().enumerate() {
            let record = sim.record(index + 1);
            let at = record.delivered_at.map_or(0.0, |at| at.as_secs_f64());
            let from_seeder = sim
                .record(0)
                .uploads
                .iter()
                .filter(|(_, to, _)| *to == index + 1)
                .count();
            println!(
                "peer {:2} {:4.0} Mbit: done {at:5.1} s, uploaded {:5.1} MiB in the run ({:3.0}% of its uplink's bytes until it was done), uplink busy {:3.0}% of that time, {} uploads from the seeder",
                index + 1,
                uplink / MBIT,
                record.uploaded_bytes / f64::from(MIB),
                100.0 * record.uploaded_bytes / (uplink * at),
                100.0 * record.busy.as_secs_f64() / at,
                from_seeder,
            );
        }
    }
    done.sort_by(f64::total_cmp);
    first_chunk.sort_by(f64::total_cmp);
    let file = f64::from(chunks) * f64::from(chunk_size);
    let n = peers as f64;
    let bound = (file / seeder_up).max(n * file / (seeder_up + uplinks.iter().sum::<f64>()));
    let figures = CrowdFigures {
        last: *done.last().expect("peers"),
        median: done[done.len() / 2],
        bound,
        seeder_copies: sim.record(0).uploaded_bytes / file,
        first_chunk,
        sent_over_needed: (0..=peers)
            .map(|index| sim.record(index).uploaded_bytes)
            .sum::<f64>()
            / (n * file),
    };
    println!(
        "{peers} peers, {} MiB in {chunks} chunks: last {:.1} s, median {:.1} s, T* {:.1} s: {:.2}x (median {:.2}x); \\
         seeder {:.2} copies; first chunk median {:.1} s, last {:.1} s; {} events",
        file / f64::from(MIB),
        figures.last,
        figures.median,
        figures.bound,
        figures.ratio(),
        figures.median / figures.bound,
        figures.seeder_copies,
        figures.first_chunk[peers / 2],
        figures.first_chunk[peers - 1],
        sim.events_handled,
    );
    figures
}

#[test]
fn twenty_four_mixed_home_uplinks_32_mib() {
    let figures = crowd(40.0, &mixed(24), 32);
    // 1.12 T* in 256 KiB chunks (the lab: 1.17 to 1.19).
    assert!(figures.ratio() <= 1.2, "{figures:?}");
}

#[test]
fn twenty_four_home_uplinks_at_10_mbit_32_mib() {
    let figures = crowd(40.0, &[10.0 * MBIT; 24], 32);
    // 1.14 T* (the lab: 1.16 to 1.17).
    assert!(figures.ratio() <= 1.2, "{figures:?}");
}

#[test]
fn forty_mixed_home_uplinks_32_mib() {
    let figures = crowd(40.0, &mixed(40), 32);
    // The seeder serves 32 peers; the 8 it turns away hear of others.
    // 1.28 to 1.36 T* as small changes move the order of events, the
    // latecomers' tail (see `crowds_over_seeds`; the lab: 1.24 to 1.25 on
    // saturated cores, 1.18 at half rates).
    assert!(figures.ratio() <= 1.42, "{figures:?}");
}

/// The same crowd in chunks of 1 MiB, 512 KiB and 256 KiB (the default for
/// 32 MiB): a peer passes a chunk on only once all of it is verified, so
/// fewer, larger chunks hold each slow uplink longer per chunk and the
/// crowd finishes later (1.24, 1.19 and 1.12 T* today; the lab: 1.35 at
/// 1 MiB, 1.18 at 256 KiB).
#[test]
fn twenty_four_mixed_home_uplinks_32_mib_by_chunk_size() {
    let ratios: Vec<f64> = [MIB, MIB / 2, MIB / 4]
        .into_iter()
        .map(|size| crowd_in(40.0, &mixed(24), 32 * (MIB / size), size, |_, _| {}).ratio())
        .collect();
    assert_eq!(geometry(32), (128, MIB / 4));
    assert!(ratios[2] < ratios[0], "{ratios:?}");
    assert!(ratios[0] <= 1.3, "{ratios:?}");
    assert!(ratios[2] <= 1.16, "{ratios:?}");
}

#[test]
fn forty_home_uplinks_on_one_slash_24_all_finish() {
    // A campus, an office, a dormitory: every peer behind one prefix, so
    // the seeder admits 16 of them (`max_links_per_prefix`) and names
    // other peers to the rest. (1.16 T* in 256 KiB chunks, 1.18 to 1.22
    // over other draws; the lab: 1.33, every peer done.)
    let figures = crowd_with(40.0, &mixed(40), 32, |index, spec| {
        if index > 0 {
            spec.addr = SocketAddr::from(([10, 1, 0, index as u8], 4433));
        }
    });
    assert!(figures.ratio() <= 1.3, "{figures:?}");
}

#[test]
fn eight_mixed_home_uplinks_16_mib() {
    // The lab's CI scenario `uplinks-8x16-mixed`, for its figure beside
    // the lab's: 1.13 T* in 128 KiB chunks (1.85 in 1 MiB chunks, when the
    // lab gave 1.81 and the last peer waited 4 s for its last chunk from
    // a 2 Mbit uplink).
    let figures = crowd(40.0, &mixed(8), 16);
    assert!(figures.ratio() <= 1.25, "{figures:?}");
}

/// Four seeders at 100 Mbit and one fetcher, near (4 ms round trips) and
/// far (100 ms), the lab's `seeders-4x256` and `seeders-4x256-delay`
/// without a transport: what the scheduling alone costs on a long path.
#[test]
fn four_seeders_near_and_far() {
    let chunks = 256;
    let uplink = 12.0e6;
    let bound = f64::from(chunks) * f64::from(MIB) / (4.0 * uplink);
    let mut fractions = Vec::new();
    for (one_way, transport) in [
        (Duration::from_millis(1), false),
        (Duration::from_millis(25), false),
        (Duration::from_millis(25), true),
    ] {
        let mut specs: Vec<NodeSpec> = (0..4)
            .map(|index| NodeSpec {
                latency: one_way,
                ..NodeSpec::seeder(index, chunks, uplink)
            })
            .collect();
        specs.push(NodeSpec {
            latency: one_way,
            ..NodeSpec::fetcher(4, chunks, 100.0 * MBIT, false, &[0, 1, 2, 3])
        });
        let mut sim = Sim::new(MIB, chunks, specs);
        if transport {
            sim.transport_uploads();
        }
        sim.run(Duration::from_secs(600), Sim::downloads_over);
        let done = sim
            .record(4)
            .delivered_at
            .expect("the fetch completes")
            .as_secs_f64();
        println!(
            "four seeders, round trips of {} ms{}: {done:.2} s, {:.3} of the caps",
            4 * one_way.as_millis(),
            if transport {
                ", uploads as the transport runs them"
            } else {
                ""
            },
            bound / done
        );
        fractions.push(bound / done);
    }
    assert!(fractions[0] >= 0.95, "{fractions:?}");
    // A far peer's requests start at once at its seeder, end together,
    // and the seeder idles a round trip until the next ones arrive: 0.75
    // today (the lab: 0.69), to be raised.
    assert!(fractions[1] >= 0.7, "{fractions:?}");
    // A seeder's streams to the fetch go one after another and hold
    // their slots a round trip longer: 0.879 today (the lab, with the
    // window's start-up too: 0.72); 8 uploads at once give 0.928 here
    // and 0.79 in the lab.
    assert!(fractions[2] >= 0.85, "{fractions:?}");
}

/// How many draws of each crowd: `NETSIM_SEEDS`, default 3.
fn draws() -> u64 {
    std::env::var("NETSIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// The crowds above with other draws of every node's tie-breaks: each
/// finishes, nobody is blamed, and the mean over the draws stays within
/// the limits below, a few hundredths above today's means (the means move
/// by that much when events of one instant are taken in another order;
/// 8 mixed went 1.284 -> 1.330 with upload slots sized for 750 ms).
/// `NETSIM_SEEDS=N` (default 3, from seed 1) prints the table for N
/// draws. 40 mixed is the exception, in the default 256 KiB chunks: its
/// third draw (1.48 to 1.53 T*, median 1.14) leaves six peers that every full node
/// turned away linked mostly to each other, their uplinks busy a third of
/// the time, until 9 s after the median (`docs/performance.md`, "Chunk
/// size"); in 1 MiB chunks the same crowd's mean was 1.29.
#[test]
fn crowds_over_seeds() {
    let seeds = draws();
    let one24 = |index: usize, spec: &mut NodeSpec| {
        if index > 0 {
            spec.addr = SocketAddr::from(([10, 1, 0, index as u8], 4433));
        }
    };
    type Run = Box<dyn Fn() -> CrowdFigures>;
    let cases: Vec<(&str, f64, Run)> = vec![
        (
            "8 mixed, 16 MiB",
            1.18,
            Box::new(|| crowd(40.0, &mixed(8), 16)),
        ),
        (
            "24 mixed, 32 MiB",
            1.16,
            Box::new(|| crowd(40.0, &mixed(24), 32)),
        ),
        (
            "24 at 10 Mbit, 32 MiB",
            1.19,
            Box::new(|| crowd(40.0, &[10.0 * MBIT; 24], 32)),
        ),
        (
            "40 mixed, 32 MiB",
            1.42,
            Box::new(|| crowd(40.0, &mixed(40), 32)),
        ),
        (
            "40 mixed on one /24, 32 MiB",
            1.25,
            Box::new(move || crowd_with(40.0, &mixed(40), 32, one24)),
        ),
        (
            "24 mixed, 128 MiB",
            1.1,
            Box::new(|| crowd(40.0, &mixed(24), 128)),
        ),
    ];
    println!("{seeds} draws");
    for (name, within, run) in &cases {
        let mut last = Vec::new();
        let mut median = Vec::new();
        let mut sent = Vec::new();
        for seed in 1..=seeds {
            SEED.set(seed);
            let figures = run();
            last.push(figures.ratio());
            median.push(figures.median / figures.bound);
            sent.push(figures.sent_over_needed);
        }
        SEED.set(0);
        let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
        let worst = last.iter().copied().fold(0.0, f64::max);
        println!(
            "{name}: last peer mean {:.3} T*, worst {worst:.3}; median peer mean {:.3}; sent {:.3} of what was needed; {last:.2?}",
            mean(&last),
            mean(&median),
            mean(&sent)
        );
        assert!(mean(&last) <= *within, "{name}: {last:?}");
    }
}

/// The lab's 24-peer crowd with its slow paths ([`SlowPaths::HOMES`]), in
/// 1 MiB chunks: with one upload slot, an upload on a slow path holds the
/// uplink at that path's rate; an overdue upload (`upload_overdue`) lets
/// the next start beside it. The lab measured the rule's gain (1.38 to
/// 1.42 T* against 1.44 to 1.62); here, since the fetchers know each
/// path's round trip (as the driver tells its core), the two are within a
/// few thousandths (1.318 without, 1.321 with): the rule must not cost.
/// Three draws each, as the lab alternated the two builds.
/// `NETSIM_SEEDS=N` draws N.
#[test]
fn overdue_uploads_cost_nothing_on_slow_paths() {
    let seeds = draws();
    SLOW_PATHS.set(Some(SlowPaths::HOMES));
    let mut means = Vec::new();
    for overdue in [None, NodeConfig::default().upload_overdue] {
        let mut last = Vec::new();
        for seed in 1..=seeds {
            SEED.set(seed);
            // In 1 MiB chunks, where one upload holds a 2 Mbit uplink
            // for 4 s (in the default 256 KiB chunks both give 1.14 T*).
            let figures = crowd_in(40.0, &mixed(24), 32, MIB, |_, spec| {
                spec.config.upload_overdue = overdue;
            });
            last.push(figures.ratio());
        }
        let mean = last.iter().sum::<f64>() / last.len() as f64;
        println!(
            "24 mixed, slow paths, upload_overdue {overdue:?}: last peer mean {mean:.3} T*; {last:.2?}"
        );
        means.push(mean);
    }
    SEED.set(0);
    SLOW_PATHS.set(None);
    assert!(means[1] <= means[0] + 0.02, "{means:?}");
    assert!(means[1] <= 1.36, "{means:?}");
}
