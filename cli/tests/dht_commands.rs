//! `dht-node` and `seed --dht` through the binary, on loopback only: a DHT
//! node prints where it listens, a seeder announces through it so that a
//! lookup finds the seeder's QUIC port, asks consent for the announcement,
//! and stops announcing when it stops.

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use minimodel_swarm::dht::{Bootstrap, Discovery, DiscoveryConfig, SwarmKey};
use minimodel_verifier::Manifest;
use support::*;

const MODEL: &str = "dht1";

/// Starts `dht-node --listen 127.0.0.1:0 --json` and returns it with its
/// address.
fn dht_node(dir: &std::path::Path) -> (Running, SocketAddrV4) {
    let (node, mut stdout) =
        spawn_with_stdout(dir, &["dht-node", "--listen", "127.0.0.1:0", "--json"]);
    let events = read_until(&mut stdout, |e| e["event"] == "dht-node");
    let addr = events
        .last()
        .and_then(|e| e["addr"].as_str())
        .unwrap_or_else(|| panic!("a dht-node event: {events:?}"))
        .parse()
        .unwrap();
    (node, addr)
}

/// What a lookup through `bootstrap` finds for the manifest's swarm, until
/// it holds `expected` or 30 s passed.
fn lookup(
    bootstrap: SocketAddrV4,
    key: SwarmKey,
    expected: &BTreeSet<SocketAddr>,
) -> BTreeSet<SocketAddr> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let looker = Discovery::start(DiscoveryConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            bootstrap: Bootstrap::Nodes(vec![bootstrap]),
            lookup_timeout: Duration::from_secs(3),
            ..DiscoveryConfig::default()
        })
        .await
        .unwrap();
        let deadline = Instant::now() + HANG;
        loop {
            let found: BTreeSet<SocketAddr> = looker.lookup(key).await.into_iter().collect();
            if found.is_superset(expected) || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[test]
fn a_dht_node_prints_its_address_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, mut stdout) =
        spawn_with_stdout(dir.path(), &["dht-node", "--listen", "127.0.0.1:0"]);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("DHT node listening on ")
        .and_then(|rest| rest.strip_suffix(" (UDP)\n"))
        .unwrap_or_else(|| panic!("first line: {line:?}"));
    let addr: SocketAddrV4 = addr.parse().unwrap();
    assert_eq!(*addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0, "the port it got, not the one asked for");
    // The port is taken: it is this node's socket.
    assert!(std::net::UdpSocket::bind(addr).is_err());

    node.interrupt();
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the node stops on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = stdout.lines().map(Result::unwrap).collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
}

#[test]
fn a_seeder_with_dht_is_found_through_a_dht_node_and_stops_announcing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let root_hash = Manifest::parse_bytes(&std::fs::read(root.join(&manifest)).unwrap())
        .unwrap()
        .chunks
        .merkle_root;
    let key = SwarmKey::of(&root_hash);
    let (_node, node_addr) = dht_node(root);
    let bootstrap = node_addr.to_string();

    // Without consent nothing is served, and nothing is announced.
    let refused = minimodel(
        root,
        &[
            "seed",
            &manifest,
            &slm,
            "--listen",
            "127.0.0.1:0",
            "--dht",
            "--dht-bootstrap",
            &bootstrap,
        ],
    );
    assert_eq!(code(&refused), 5);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("announce on the DHT"), "{stderr}");
    assert!(lookup(node_addr, key, &BTreeSet::new()).is_empty());

    let (mut seeder, mut stdout) = spawn_with_stdout(
        root,
        &[
            "seed",
            &manifest,
            &slm,
            "--listen",
            "127.0.0.1:0",
            "--yes",
            "--json",
            "--dht",
            "--dht-bootstrap",
            &bootstrap,
        ],
    );
    let events = read_until(&mut stdout, |e| e["event"] == "dht-announced");
    let offer = events
        .iter()
        .find(|e| e["event"] == "offer")
        .unwrap_or_else(|| panic!("an offer: {events:?}"));
    let peer: SocketAddr = offer["addrs"][0]
        .as_str()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("an address in the offer: {offer}"));
    let announcing = events
        .iter()
        .find(|e| e["event"] == "dht-announcing")
        .unwrap_or_else(|| panic!("dht-announcing: {events:?}"));
    assert_eq!(announcing["key"], key.to_string());
    assert_eq!(announcing["port"], peer.port());
    let announced = events.last().unwrap();
    assert_eq!(announced["port"], peer.port());

    let expected: BTreeSet<SocketAddr> = [peer].into();
    assert_eq!(lookup(node_addr, key, &expected), expected);

    seeder.interrupt();
    let rest = read_until(&mut stdout, |e| e["event"] == "stopped");
    let stopped = rest
        .iter()
        .find(|e| e["event"] == "dht-stopped")
        .unwrap_or_else(|| panic!("dht-stopped: {rest:?}"));
    assert!(stopped["announced"].as_u64().unwrap() >= 1, "{stopped}");
    assert_eq!(rest.last().map(|e| &e["event"]), Some(&"stopped".into()));
    assert_eq!(seeder.child.wait().unwrap().code(), Some(0));
}

#[test]
fn dht_options_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "1MiB", "64KiB");
    let manifest = format!("{MODEL}.manifest");
    let slm = format!("{MODEL}.slm");
    let usage = [
        // --dht is never implied, not even by a bootstrap node.
        vec![
            "seed",
            &manifest,
            &slm,
            "--yes",
            "--dht-bootstrap",
            "127.0.0.1:6881",
        ],
        // The DHT announces an IPv4 address.
        vec![
            "seed", &manifest, &slm, "--yes", "--listen", "[::1]:0", "--dht",
        ],
        vec![
            "seed",
            &manifest,
            &slm,
            "--yes",
            "--dht",
            "--dht-bootstrap",
            "[::1]:6881",
        ],
        vec!["dht-node", "--listen", "[::1]:0"],
        vec!["dht-node"],
    ];
    for args in usage {
        let output = minimodel(root, &args);
        assert_eq!(
            code(&output),
            2,
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_fetch_with_only_the_manifest_finds_three_seeders_on_the_dht_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, "dht3", "4MiB", "64KiB");
    let (mut node, node_addr) = dht_node(root);
    let bootstrap = node_addr.to_string();
    let mut seeders = Vec::new();
    let mut ports = BTreeSet::new();
    for n in 0..3 {
        let (seeder, mut stdout) = spawn_with_stdout(
            root,
            &[
                "seed",
                "dht3.manifest",
                "dht3.slm",
                "--listen",
                "127.0.0.1:0",
                "--max-upload",
                "2MiB",
                "--yes",
                "--json",
                "--identity",
                &format!("id-{n}"),
                "--dht",
                "--dht-bootstrap",
                &bootstrap,
            ],
        );
        let events = read_until(&mut stdout, |e| e["event"] == "dht-announced");
        let port = events
            .iter()
            .find(|e| e["event"] == "dht-announcing")
            .and_then(|e| e["port"].as_u64())
            .unwrap_or_else(|| panic!("dht-announcing: {events:?}"));
        ports.insert(port);
        seeders.push((seeder, stdout));
    }
    // No offer, no --peer: the manifest and the bootstrap node only.
    let (mut fetch, mut stdout) = spawn_with_stdout(
        root,
        &[
            "fetch",
            "dht3.manifest",
            "-o",
            "out",
            "--dht",
            "--dht-bootstrap",
            &bootstrap,
            "--yes",
            "--json",
        ],
    );
    let events = read_until(&mut stdout, |e| e["event"] == "fetched");
    let fetched = events.last().unwrap();
    let found: BTreeSet<u64> = fetched["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|peer| peer["found_by"] == "dht")
        .filter_map(|peer| {
            peer["address"]
                .as_str()
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .map(|a| u64::from(a.port()))
        })
        .collect();
    assert_eq!(found, ports, "every seeder was found on the DHT: {fetched}");
    assert_eq!(fetch.child.wait().unwrap().code(), Some(0));
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("out/dht3.receipt.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["source"]["peers"][0]["found_by"], "dht");
    ok(&minimodel(
        root,
        &[
            "verify",
            "dht3.manifest",
            "out/dht3.slm",
            "--receipt",
            "check.json",
        ],
    ));
    for (mut seeder, _) in seeders {
        seeder.interrupt();
        let _ = seeder.child.wait();
    }
    node.interrupt();
    let _ = node.child.wait();
}

#[test]
fn a_fetch_of_a_manifest_cut_at_parts_reads_its_chunk_list_from_a_peer_found_on_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(&minimodel(
        root,
        &["fixture", "parts.slm", "--size", "4MiB", "--seed", "7"],
    ));
    ok(&minimodel(
        root,
        &[
            "manifest",
            "parts.slm",
            "--model-id",
            "parts",
            "--publisher-id",
            "acme",
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            "64KiB",
            "--chunk-scheme",
            "slm-parts-merkle-v0",
            "-o",
            "parts.manifest",
        ],
    ));
    let (mut node, node_addr) = dht_node(root);
    let bootstrap = node_addr.to_string();
    let (mut seeder, mut seeder_out) = spawn_with_stdout(
        root,
        &[
            "seed",
            "parts.manifest",
            "parts.slm",
            "--listen",
            "127.0.0.1:0",
            "--yes",
            "--json",
            "--dht",
            "--dht-bootstrap",
            &bootstrap,
        ],
    );
    read_until(&mut seeder_out, |e| e["event"] == "dht-announced");
    // No offer, no --peer, no chunk list: its lengths come from the peer
    // the DHT names, before the download can open.
    let (mut fetch, mut stdout) = spawn_with_stdout(
        root,
        &[
            "fetch",
            "parts.manifest",
            "-o",
            "out",
            "--dht",
            "--dht-bootstrap",
            &bootstrap,
            "--yes",
            "--json",
        ],
    );
    let events = read_until(&mut stdout, |e| e["event"] == "fetched");
    // Without the list the download could not open (exit 3).
    assert_eq!(fetch.child.wait().unwrap().code(), Some(0), "{events:?}");
    assert!(
        root.join("out/parts.chunk-list").is_file(),
        "the download keeps the list it read"
    );
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("out/parts.receipt.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["source"]["peers"][0]["found_by"], "dht");
    ok(&minimodel(
        root,
        &[
            "verify",
            "parts.manifest",
            "out/parts.slm",
            "--receipt",
            "check.json",
        ],
    ));
    seeder.interrupt();
    let _ = seeder.child.wait();
    node.interrupt();
    let _ = node.child.wait();
}
