//! A real swarm through the binary: one seeder with little upload and
//! downloading peers that serve each other (`fetch --serve`). They are given
//! only the seeder's offer and find each other by peer exchange.

mod support;

use std::io::BufRead;
use std::path::Path;
use std::thread;

use support::*;

const MODEL: &str = "swarm32";
const SIZE: u64 = 32 << 20;

/// Starts a downloading peer that serves and keeps serving when done.
fn serving_fetcher(
    root: &Path,
    offer: &Path,
    out: &str,
) -> (Running, std::io::BufReader<std::process::ChildStdout>) {
    let offer = offer.display().to_string();
    let manifest = format!("{MODEL}.manifest");
    spawn_with_stdout(
        root,
        &[
            "fetch",
            &manifest,
            "--offer",
            &offer,
            "-o",
            out,
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--seed-after",
            "--yes",
            "--json",
        ],
    )
}

fn bytes_from(receipt: &serde_json::Value, peer_id: &str) -> u64 {
    receipt["source"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["peer_id"] == peer_id)
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum()
}

fn seeder_id(offer: &Path) -> String {
    let offer: serde_json::Value = serde_json::from_slice(&std::fs::read(offer).unwrap()).unwrap();
    offer["peer_id"].as_str().unwrap().to_owned()
}

/// Waits (on threads) until each reader reports its download delivered.
fn wait_delivered(readers: Vec<std::io::BufReader<std::process::ChildStdout>>) -> Vec<bool> {
    let handles: Vec<_> = readers
        .into_iter()
        .map(|mut reader| {
            thread::spawn(move || {
                let seen = read_until(&mut reader, |e| {
                    e["event"] == "delivered" || e["event"] == "error"
                });
                // Started with --seed-after: they say they go on serving.
                let delivered = seen
                    .last()
                    .is_some_and(|e| e["event"] == "delivered" && e["seeding"] == true);
                // Keep draining so the peer never blocks on a full pipe.
                thread::spawn(move || for _ in reader.lines() {});
                delivered
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn downloading_peers_share_so_the_seeder_sends_little_more_than_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "32MiB", "256KiB");
    let (_seeder, offer) = seeder(
        root,
        &format!("{MODEL}.manifest"),
        &format!("{MODEL}.slm"),
        "seed.json",
        &["--max-upload", "4MiB"],
    );
    let mut peers = Vec::new();
    let mut readers = Vec::new();
    for i in 0..4 {
        let (peer, reader) = serving_fetcher(root, &offer, &format!("out{i}"));
        peers.push(peer);
        readers.push(reader);
    }
    let delivered = wait_delivered(readers);
    assert!(
        delivered.iter().all(|d| *d),
        "every peer completes: {delivered:?}"
    );
    let seeder = seeder_id(&offer);
    let mut from_seeder = 0;
    for i in 0..4 {
        let out = root.join(format!("out{i}"));
        let receipt = receipt(&out, MODEL);
        from_seeder += bytes_from(&receipt, &seeder);
        let others: u64 = receipt["source"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["peer_id"] != seeder.as_str())
            .map(|p| p["bytes"].as_u64().unwrap())
            .sum();
        assert!(
            others > 0,
            "peer {i} got chunks from peers it learned by peer exchange"
        );
        ok(&minimodel(
            root,
            &[
                "verify",
                &format!("{MODEL}.manifest"),
                &format!("out{i}/{MODEL}.slm"),
                "--receipt",
                &format!("out{i}/check.json"),
            ],
        ));
    }
    let copies = from_seeder as f64 / SIZE as f64;
    assert!(copies <= 1.5, "the seeder uploaded {copies:.2} copies");
}

#[test]
fn a_serving_peer_that_is_killed_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, MODEL, "32MiB", "256KiB");
    let (_seeder, offer) = seeder(
        root,
        &format!("{MODEL}.manifest"),
        &format!("{MODEL}.slm"),
        "seed.json",
        &["--max-upload", "4MiB"],
    );
    let mut peers = Vec::new();
    let mut readers = Vec::new();
    for i in 0..3 {
        let (peer, reader) = serving_fetcher(root, &offer, &format!("out{i}"));
        peers.push(peer);
        readers.push(reader);
    }
    // Once the first peer has a quarter of the file (some of it served on),
    // it dies.
    let mut victim = readers.remove(0);
    read_until(&mut victim, |e| {
        e["event"] == "progress" && e["verified_bytes"].as_u64().unwrap_or(0) > SIZE / 4
    });
    peers[0].kill();
    let delivered = wait_delivered(readers);
    assert!(
        delivered.iter().all(|d| *d),
        "the others complete: {delivered:?}"
    );
    for i in 1..3 {
        ok(&minimodel(
            root,
            &[
                "verify",
                &format!("{MODEL}.manifest"),
                &format!("out{i}/{MODEL}.slm"),
                "--receipt",
                &format!("out{i}/check.json"),
            ],
        ));
    }
}
