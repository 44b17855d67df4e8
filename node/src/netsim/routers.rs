//! The routers homes sit behind, as the lab builds them (`docs/lab.md`,
//! "Home routers"): a cone with and without an input firewall, a
//! carrier's NAT in front of a home router, a global IPv6 address behind a
//! stateful firewall. Two peers at home are introduced by a seeder on the
//! internet and punch through to each other.
//!
//! A router with no input firewall (a Linux box whose input chain
//! accepts) keeps a peer's packet that came before ours as its own; our
//! packets to that peer then leave from another outside port, and the
//! punch fails. A node opens its router toward the peer first (packets
//! with a small TTL, [`crate::node::Action::Open`]) and dials
//! `punch_delay` later: then every packet of the peer finds our mapping.

use std::net::Ipv6Addr;

use super::crowds::{MBIT, MIB};
use super::scenarios::nobody_blamed_but;
use super::*;

/// What the two homes did.
#[derive(Debug)]
struct Punched {
    /// Bytes the two homes sent each other, in copies of the file.
    between_homes: f64,
    /// Packets the routers kept as their own.
    poisonings: u64,
    /// When the later home had its file.
    last_done: Duration,
}

/// A seeder at 100 Mbit on the internet and two homes at 20 Mbit behind
/// routers of the kind `router` makes for each (the home number, the
/// peer's spec), every peer told only of the seeder. The second home's
/// process acts on a Connect 60 ms late, so that the first home's packets
/// reach its router before it has sent anything.
fn two_homes(
    chunks: u32,
    punch_delay: Duration,
    router: impl Fn(u8, NodeSpec) -> NodeSpec,
) -> Punched {
    let mut seeder = NodeSpec::seeder(0, chunks, 100.0 * MBIT);
    seeder.latency = Duration::from_millis(5);
    let mut specs = vec![seeder];
    for home in 1..=2u8 {
        let mut peer = NodeSpec::fetcher(specs.len(), chunks, 20.0 * MBIT, true, &[0]);
        peer.latency = Duration::from_millis(2);
        peer.config.punch_delay = punch_delay;
        if home == 2 {
            peer.connect_lag = Duration::from_millis(60);
        }
        specs.push(router(home, peer));
    }
    let mut sim = Sim::new(MIB, chunks, specs);
    let end = sim.run(Duration::from_secs(300), Sim::downloads_over);
    nobody_blamed_but(&sim, &[]);
    let mut last_done = Duration::ZERO;
    for index in 1..=2 {
        let at = sim.record(index).delivered_at;
        last_done = last_done.max(at.unwrap_or_else(|| panic!("peer {index} not done by {end:?}")));
    }
    let between: f64 = sim
        .conns
        .iter()
        .filter(|conn| conn.nodes.iter().all(|&node| node != 0))
        .map(|conn| conn.sent[0] + conn.sent[1])
        .sum();
    let punched = Punched {
        between_homes: between / (f64::from(chunks) * f64::from(MIB)),
        poisonings: sim.poisonings,
        last_done,
    };
    println!("{punched:?}");
    punched
}

/// A cone router at `home` with or without an input firewall.
fn cone(firewall: bool) -> impl Fn(u8, NodeSpec) -> NodeSpec {
    move |home, peer| {
        let mut peer = peer.at_home(home, 0, false);
        if let Some(nat) = &mut peer.nat {
            nat.firewall = firewall;
        }
        peer
    }
}

#[test]
fn routers_without_an_input_firewall_keep_a_punch_that_comes_first_unless_we_open_them() {
    let delay = NodeConfig::default().punch_delay;
    // Opened first: the late home's router has our mapping waiting.
    let opened = two_homes(32, delay, cone(false));
    assert_eq!(opened.poisonings, 0, "{opened:?}");
    assert!(opened.between_homes >= 0.3, "{opened:?}");
    // Dialed at once, as before: the late home's router keeps the first
    // home's packet, and the two never meet.
    let at_once = two_homes(32, Duration::ZERO, cone(false));
    assert!(at_once.poisonings >= 1, "{at_once:?}");
    assert_eq!(at_once.between_homes, 0.0, "{at_once:?}");
    // A router with a firewall drops the early packet and keeps nothing:
    // the resent one gets in.
    let firewalled = two_homes(32, Duration::ZERO, cone(true));
    assert_eq!(firewalled.poisonings, 0, "{firewalled:?}");
    assert!(firewalled.between_homes >= 0.3, "{firewalled:?}");
}

#[test]
fn a_carrier_nat_in_front_of_a_home_router_lets_the_punch_through_on_a_resend() {
    // The opening packets die at the carrier; the peer's first packets
    // are dropped there (a carrier's NAT keeps nothing it did not ask
    // for) and the next one, a second later, finds our dial's mapping.
    let punched = two_homes(32, NodeConfig::default().punch_delay, |home, peer| {
        let mut peer = cone(false)(home, peer);
        if let Some(nat) = &mut peer.nat {
            nat.carrier = true;
        }
        peer
    });
    assert_eq!(punched.poisonings, 0, "{punched:?}");
    assert!(punched.between_homes >= 0.3, "{punched:?}");
}

#[test]
fn homes_with_global_ipv6_addresses_behind_stateful_firewalls_punch_directly() {
    let punched = two_homes(32, NodeConfig::default().punch_delay, |home, peer| {
        let ip = IpAddr::V6(Ipv6Addr::new(0x2a01, 0x4f8, u16::from(home), 0, 0, 0, 0, 2));
        let addr = SocketAddr::new(ip, 4433);
        NodeSpec {
            addr,
            nat: Some(Nat {
                translate: false,
                ..Nat::home(ip, 4433, false)
            }),
            ..peer
        }
    });
    assert!(punched.between_homes >= 0.3, "{punched:?}");
    assert!(punched.last_done < Duration::from_secs(20), "{punched:?}");
}
