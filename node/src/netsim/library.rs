//! A library on one host: several seeders, each of its own swarm, share
//! one address, one uplink and the upload slots of one endpoint (the
//! gate's rule, `crate::gate`), while a crowd fetches from each swarm.
//! The companion's lab run is `library-20x8`.

use super::crowds::{MBIT, MIB};
use super::scenarios::nobody_blamed_but;
use super::*;

/// What one library run did.
#[derive(Debug)]
struct Library {
    /// Each swarm's last verified file, over the bound for all of them
    /// (every file leaves the host once through its uplink).
    over_bound: Vec<f64>,
    /// Each swarm's seeder's chunk uploads, in copies of the file.
    copies: Vec<f64>,
    /// The most uploads the host's uplink carried at once.
    peak_uploads: usize,
}

/// `swarms` seeders on one host with an uplink of `host_mbit`, each with
/// `crowd` `fetch --serve` peers at 1 Gbit told only of it, `chunks`
/// chunks of 1 MiB.
fn library(swarms: usize, crowd: usize, chunks: u32, host_mbit: f64, share_slots: bool) -> Library {
    let host_up = host_mbit * MBIT;
    let mut specs = Vec::new();
    for swarm in 0..swarms {
        let mut seeder = NodeSpec::seeder(0, chunks, host_up);
        seeder.latency = Duration::from_millis(5);
        seeder.swarm = swarm;
        seeder.host = Some(0);
        specs.push(seeder);
    }
    for swarm in 0..swarms {
        for _ in 0..crowd {
            let index = specs.len();
            let mut peer = NodeSpec::fetcher(index, chunks, 1000.0 * MBIT, true, &[swarm]);
            peer.latency = Duration::from_millis(10);
            peer.swarm = swarm;
            specs.push(peer);
        }
    }
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.share_slots = share_slots;
    sim.run(Duration::from_secs(600), Sim::downloads_over);
    nobody_blamed_but(&sim, &[]);
    let file = f64::from(chunks) * f64::from(MIB);
    let bound = swarms as f64 * file / host_up;
    let mut over_bound = Vec::new();
    let mut copies = Vec::new();
    for swarm in 0..swarms {
        let last = (swarms + swarm * crowd..swarms + (swarm + 1) * crowd)
            .map(|peer| {
                sim.record(peer)
                    .delivered_at
                    .unwrap_or_else(|| panic!("peer {peer} of swarm {swarm} did not complete"))
                    .as_secs_f64()
            })
            .fold(0.0, f64::max);
        over_bound.push(last / bound);
        copies.push(sim.record(swarm).uploads.len() as f64 / f64::from(chunks));
    }
    let figures = Library {
        over_bound,
        copies,
        peak_uploads: sim.record(0).peak_uploads,
    };
    eprintln!(
        "{swarms} swarms x {crowd} peers, host {host_mbit} Mbit, shared slots {share_slots}: \
         {figures:?}"
    );
    figures
}

#[test]
fn seeders_on_one_host_share_its_upload_slots_and_every_swarm_finishes_near_the_bound() {
    let slots = NodeConfig::default().upload_slots;
    let shared = library(4, 6, 48, 400.0, true);
    let separate = library(4, 6, 48, 400.0, false);
    assert!(
        shared.peak_uploads <= slots,
        "the host's uplink carried {} uploads at once, over its {slots} slots",
        shared.peak_uploads
    );
    for (swarm, over) in shared.over_bound.iter().enumerate() {
        assert!(*over <= 1.25, "swarm {swarm} took {over:.3} of the bound");
    }
    for (swarm, copies) in shared.copies.iter().enumerate() {
        assert!(
            (0.9..=1.6).contains(copies),
            "swarm {swarm}'s seeder sent {copies:.2} copies"
        );
    }
    // Each seeder with slots of its own: the host carries up to four
    // times as many chunks at once, for no gain in time.
    assert!(
        separate.peak_uploads > slots,
        "{} uploads at once without sharing",
        separate.peak_uploads
    );
}

/// Two downloads of two swarms on one host whose download cap is
/// `cap_mbit`, each from a seeder of its own at 400 Mbit, the second
/// seeder arriving at `second_at`: when each download was verified.
fn two_downloads_under_one_cap(cap_mbit: f64, chunks: u32, second_at: Duration) -> [f64; 2] {
    let mut specs = Vec::new();
    for swarm in 0..2 {
        let mut seeder = NodeSpec::seeder(swarm, chunks, 400.0 * MBIT);
        seeder.swarm = swarm;
        seeder.latency = Duration::from_millis(10);
        specs.push(seeder);
    }
    specs[1].starts_at = second_at;
    let host = specs.len();
    // The second also knows a peer of its swarm that has nothing yet: a
    // link, but nothing to fetch over it.
    let empty = host + 2;
    for (swarm, offers) in [(0, vec![0]), (1, vec![1, empty])] {
        let mut fetcher = NodeSpec::fetcher(host, chunks, 20.0 * MBIT, false, &offers);
        fetcher.swarm = swarm;
        fetcher.host = Some(host);
        fetcher.latency = Duration::from_millis(10);
        specs.push(fetcher);
    }
    let mut other = NodeSpec::fetcher(empty, chunks, 20.0 * MBIT, true, &[1]);
    other.swarm = 1;
    other.latency = Duration::from_millis(10);
    specs.push(other);
    let mut sim = Sim::new(MIB, chunks, specs);
    sim.host_download_cap = Some((cap_mbit * MBIT) as u64);
    sim.run(Duration::from_secs(600), Sim::downloads_over);
    nobody_blamed_but(&sim, &[]);
    [host, host + 1].map(|fetcher| {
        sim.record(fetcher)
            .delivered_at
            .unwrap_or_else(|| panic!("download {fetcher} did not complete"))
            .as_secs_f64()
    })
}

#[test]
fn a_hosts_download_cap_goes_to_the_downloads_that_can_use_it() {
    let (cap_mbit, chunks) = (40.0, 32);
    let alone = f64::from(chunks) * f64::from(MIB) / (cap_mbit * MBIT);
    // Both fetch at once: they share the cap, and together stay under it.
    let both = two_downloads_under_one_cap(cap_mbit, chunks, Duration::ZERO);
    eprintln!("both at once: {both:?} s, one alone at the cap {alone:.2} s");
    for done in both {
        assert!(
            (1.8 * alone..=2.5 * alone).contains(&done),
            "{done:.2} s for a download sharing the cap, alone {alone:.2} s"
        );
    }
    // The second has no peer with anything yet (one linked, empty): the
    // first gets all of it, not an even half.
    let later = Duration::from_secs(60);
    let staggered = two_downloads_under_one_cap(cap_mbit, chunks, later);
    eprintln!("the second's seeder at 60 s: {staggered:?} s");
    assert!(
        staggered[0] <= 1.25 * alone,
        "{:.2} s for the only download that could fetch, alone {alone:.2} s",
        staggered[0]
    );
    // The second still completes once its seeder is there (when it is
    // dialed again is the address book's business, not the cap's).
    assert!(staggered[1] > later.as_secs_f64());
}
