//! Addresses through the binary on loopback: the offer of a listener on a
//! wildcard names the host's reachable addresses (never loopback when the
//! host has another) after every `--public-addr`; a seeder listening on
//! `[::1]` only serves a fetch that does not serve (its dial-only endpoint
//! is dual-stack); a peer id given several times (an IP, a name, an offer)
//! is one peer.
//!
//! The IPv6 test needs an IPv6 loopback (`::1`); without one it fails and
//! says so.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use minimodel_swarm::addrs::{advertised_addrs, interface_ips, is_usable};
use support::*;

const MODEL: &str = "addr1m";

/// Starts `minimodel seed` with `args` after the manifest and file, and
/// waits for its offer.
fn seed(dir: &Path, offer: &str, args: &[&str]) -> (Running, PathBuf) {
    let offer_path = dir.join(offer);
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let mut all = vec!["seed", &manifest, &slm, "--yes", "--offer", offer];
    all.extend_from_slice(args);
    let child = Command::new(env!("CARGO_BIN_EXE_minimodel"))
        .current_dir(dir)
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the seeder starts");
    let mut running = Running {
        child,
        name: offer.to_owned(),
    };
    let deadline = Instant::now() + HANG;
    while !offer_path.exists() {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("seeder {offer} exited early: {status}");
        }
        assert!(Instant::now() < deadline, "seeder {offer} wrote no offer");
        std::thread::sleep(Duration::from_millis(50));
    }
    (running, offer_path)
}

fn read_offer(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn offer_addrs(offer: &serde_json::Value) -> Vec<SocketAddr> {
    offer["addrs"]
        .as_array()
        .expect("a v1 offer lists addresses")
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_wildcard_listener_offers_its_reachable_addresses_after_the_public_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let public = "203.0.113.9:4433";
    let (_seeder, offer_path) = seed(
        root,
        "wild.json",
        &[
            "--listen",
            "[::]:0",
            // A test asks no router of the host's network for anything.
            "--no-port-mapping",
            "--public-addr",
            public,
            "--public-addr",
            "[2001:db8::9]:4433",
        ],
    );
    let offer = read_offer(&offer_path);
    assert_eq!(offer["format"], "minimodel-peer-offer-v1");
    let addrs = offer_addrs(&offer);
    assert_eq!(addrs[0], public.parse::<SocketAddr>().unwrap(), "{addrs:?}");
    assert_eq!(
        addrs[1],
        "[2001:db8::9]:4433".parse::<SocketAddr>().unwrap()
    );
    let port = addrs[2..]
        .first()
        .expect("interface addresses follow")
        .port();
    let interfaces = interface_ips().unwrap();
    let expected = advertised_addrs(
        SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED), port),
        &interfaces,
        &addrs[..2],
    );
    assert_eq!(addrs, expected);
    if interfaces.iter().any(|ip| is_usable(*ip)) {
        assert!(
            addrs.iter().all(|a| !a.ip().is_loopback()),
            "no loopback address when the host has another: {addrs:?}"
        );
    }

    // A specific address offers itself.
    let (_seeder, offer_path) = seed(root, "specific.json", &["--listen", "127.0.0.1:0"]);
    let addrs = offer_addrs(&read_offer(&offer_path));
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].ip(), IpAddr::from([127, 0, 0, 1]));
}

#[test]
fn an_ipv6_only_seeder_serves_a_fetch_that_does_not_serve() {
    if let Err(error) = std::net::UdpSocket::bind("[::1]:0") {
        panic!("this test needs an IPv6 loopback address (::1), and binding it failed: {error}");
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let (_seeder, offer_path) = seed(root, "v6.json", &["--listen", "[::1]:0"]);
    let offer = read_offer(&offer_path);
    let addrs = offer_addrs(&offer);
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].ip(), IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    let manifest = format!("{MODEL}.manifest");
    let offer_arg = offer_path.display().to_string();
    ok(&minimodel(
        root,
        &[
            "fetch", &manifest, "--offer", &offer_arg, "-o", "out", "--yes", "--json",
        ],
    ));
    let receipt = receipt(&root.join("out"), MODEL);
    let peers = receipt["source"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["peer_id"], offer["peer_id"]);
    assert_eq!(peers[0]["address"], addrs[0].to_string());
}

#[test]
fn a_peer_named_at_several_addresses_is_one_peer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let (_seeder, offer_path) = seed(root, "live.json", &["--listen", "127.0.0.1:0"]);
    let offer = read_offer(&offer_path);
    let id = offer["peer_id"].as_str().unwrap();
    let live = offer_addrs(&offer)[0];
    let manifest = format!("{MODEL}.manifest");
    // The same id through --peer twice (once as a name) and the offer.
    let by_ip = format!("{id}@{live}");
    let by_name = format!("{id}@localhost:{}", live.port());
    let offer_arg = offer_path.display().to_string();
    let output = minimodel(
        root,
        &[
            "fetch", &manifest, "--peer", &by_ip, "--peer", &by_name, "--offer", &offer_arg, "-o",
            "out", "--yes",
        ],
    );
    ok(&output);
    let receipt = receipt(&root.join("out"), MODEL);
    let peers = receipt["source"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["peer_id"], id);
}
