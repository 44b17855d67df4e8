//! Discovery on a real Mainline DHT of a few nodes on loopback (the
//! `mainline` crate's own nodes), no other network: announcers are found,
//! lookups are filtered and bounded, and a stopped announcement sends
//! nothing more.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{HANG, eventually};

mod common;

use mainline::{Dht, Id, RequestFilter, RequestSpecific, ServerSettings, Testnet};
use minimodel_swarm::dht::{Bootstrap, Discovery, DiscoveryConfig, SwarmKey};
use minimodel_verifier::Sha256Digest;

fn key(n: u8) -> SwarmKey {
    SwarmKey::of(&Sha256Digest([n; 32]))
}

fn port(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A node on loopback that joins the DHT through `bootstrap`.
fn config(bootstrap: &[SocketAddrV4]) -> DiscoveryConfig {
    DiscoveryConfig {
        bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        bootstrap: Bootstrap::Nodes(bootstrap.to_vec()),
        lookup_timeout: Duration::from_secs(2),
        ..DiscoveryConfig::default()
    }
}

/// A testnet of `count` server nodes on 127.0.0.1 and its addresses.
async fn testnet(count: usize) -> (Testnet, Vec<SocketAddrV4>) {
    let testnet = tokio::task::spawn_blocking(move || Testnet::builder(count).build().unwrap())
        .await
        .unwrap();
    let addrs = testnet
        .bootstrap
        .iter()
        .map(|addr| addr.parse().unwrap())
        .collect();
    (testnet, addrs)
}

/// Looks `key` up, again and again, until the answers hold `expected`
/// (or [`HANG`] passes); a lookup is left as soon as they do.
async fn lookup_until(
    looker: &Discovery,
    key: SwarmKey,
    expected: &BTreeSet<SocketAddr>,
) -> BTreeSet<SocketAddr> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let mut found = BTreeSet::new();
        let mut lookup = looker.start_lookup(key);
        while let Some(addrs) = lookup.next().await {
            found.extend(addrs);
            if found.is_superset(expected) {
                // Whatever else this answer held is in `found` too.
                return found;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_announcers_are_all_found_and_a_lookup_keeps_to_its_limit() {
    let (_testnet, bootstrap) = testnet(4).await;
    let swarm = key(1);
    let mut announcers = Vec::new();
    let mut announcements = Vec::new();
    for p in [41001, 41002, 41003] {
        let node = Discovery::start(config(&bootstrap)).await.unwrap();
        announcements.push(node.announce(swarm, port(p)));
        announcers.push(node);
    }
    // Another swarm on the same DHT is not mixed in.
    let other = Discovery::start(config(&bootstrap)).await.unwrap();
    let _other = other.announce(key(2), port(42000));

    let looker = Discovery::start(config(&bootstrap)).await.unwrap();
    let expected: BTreeSet<_> = [41001, 41002, 41003].map(loopback).into();
    let found = lookup_until(&looker, swarm, &expected).await;
    assert_eq!(found, expected);
    // A lookup can find an announcement before its announcer has counted
    // the answers to it: each counts one.
    for announcement in &announcements {
        eventually("an announcement counted", || {
            announcement.status().announced >= 1
        })
        .await;
    }

    let bounded = Discovery::start(DiscoveryConfig {
        max_lookup_peers: 2,
        ..config(&bootstrap)
    })
    .await
    .unwrap();
    let some = bounded.lookup(swarm).await;
    assert_eq!(some.len(), 2, "{some:?}");
    assert!(some.iter().all(|addr| expected.contains(addr)), "{some:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_stored_on_the_dht_is_not_returned() {
    let (_testnet, bootstrap) = testnet(3).await;
    let swarm = key(3);
    let good = Discovery::start(config(&bootstrap)).await.unwrap();
    let _announced = good.announce(swarm, port(43001));
    // A node that announces port 0, straight through the crate.
    let liar = Dht::builder()
        .bootstrap(&bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .port(0)
        .build()
        .unwrap()
        .as_async();
    liar.announce_peer(Id::from(*swarm.as_bytes()), Some(0))
        .await
        .unwrap();

    // The DHT does hand out the junk...
    let raw = Dht::builder()
        .bootstrap(&bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .port(0)
        .build()
        .unwrap()
        .as_async();
    let junk = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let deadline = tokio::time::Instant::now() + HANG;
    let mut raw_answer = BTreeSet::new();
    while !(raw_answer.contains(&junk) && raw_answer.len() == 2)
        && tokio::time::Instant::now() < deadline
    {
        let mut answers = raw.get_peers(Id::from(*swarm.as_bytes()));
        while let Some(answer) = futures_lite::StreamExt::next(&mut answers).await {
            raw_answer.extend(answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(raw_answer.contains(&junk), "{raw_answer:?}");

    // ...and a lookup drops it.
    let looker = Discovery::start(config(&bootstrap)).await.unwrap();
    let expected: BTreeSet<_> = [loopback(43001)].into();
    assert_eq!(lookup_until(&looker, swarm, &expected).await, expected);
}

/// Counts the `announce_peer` requests for each of some ports that DHT
/// nodes get.
#[derive(Debug, Clone)]
struct CountAnnounces {
    ports: Vec<(u16, Arc<AtomicU64>)>,
}

impl RequestFilter for CountAnnounces {
    fn allow_request(&self, request: &RequestSpecific, _from: SocketAddrV4) -> bool {
        // The request types are not exported by the crate; their Debug
        // form names them.
        let text = format!("{:?}", request.request_type);
        for (port, count) in &self.ports {
            if text.contains("AnnouncePeer(") && text.contains(&format!("port: {port},")) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_announcement_sends_nothing_more_but_the_dht_still_remembers() {
    let (announced_port, marker_port) = (44001, 44002);
    let count = Arc::new(AtomicU64::new(0));
    let marker = Arc::new(AtomicU64::new(0));
    let counting = ServerSettings {
        filter: Box::new(CountAnnounces {
            ports: vec![
                (announced_port, Arc::clone(&count)),
                (marker_port, Arc::clone(&marker)),
            ],
        }),
        ..ServerSettings::default()
    };
    let nodes: Vec<Dht> = tokio::task::spawn_blocking(move || {
        let first = Dht::builder()
            .server_mode()
            .server_settings(counting.clone())
            .no_bootstrap()
            .bind_address(Ipv4Addr::LOCALHOST)
            .port(0)
            .build()
            .unwrap();
        #[allow(deprecated)]
        let first_addr = first.info().local_addr();
        let mut nodes = vec![first];
        for _ in 0..2 {
            nodes.push(
                Dht::builder()
                    .server_mode()
                    .server_settings(counting.clone())
                    .bootstrap(&[first_addr])
                    .bind_address(Ipv4Addr::LOCALHOST)
                    .port(0)
                    .build()
                    .unwrap(),
            );
        }
        nodes
    })
    .await
    .unwrap();
    let mut bootstrap = Vec::new();
    for node in &nodes {
        bootstrap.push(node.clone().as_async().info().await.local_addr());
    }

    let interval = Duration::from_millis(200);
    let announcer = Discovery::start(DiscoveryConfig {
        reannounce_interval: interval,
        first_retry: Duration::from_millis(50),
        ..config(&bootstrap)
    })
    .await
    .unwrap();
    let swarm = key(4);
    let announcement = announcer.announce(swarm, port(announced_port));

    // Re-announced: several rounds reach the DHT nodes.
    eventually("three rounds of announces", || {
        announcement.status().announced >= 3 && count.load(Ordering::SeqCst) >= 3
    })
    .await;

    let last = announcement.stop().await;
    assert!(last.stopped, "{last:?}");
    let at_stop = count.load(Ordering::SeqCst);
    // While another announcement of the same node, on the same schedule,
    // goes three rounds (two intervals at least), no DHT node hears
    // another announce of the stopped one.
    let other = announcer.announce(key(5), port(marker_port));
    eventually("three rounds of the other announcement", || {
        other.status().announced >= 3 && marker.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(count.load(Ordering::SeqCst), at_stop);
    drop(other);

    // What the DHT stored stays: stopping ends our announcing, nothing
    // more (docs/swarm.md, "The DHT"); a fetch must cope with stale
    // addresses.
    let looker = Discovery::start(config(&bootstrap)).await.unwrap();
    let expected: BTreeSet<_> = [loopback(announced_port)].into();
    assert_eq!(lookup_until(&looker, swarm, &expected).await, expected);
    drop(nodes);
}

/// On tokio's paused clock: the runtime, idle while the silent node says
/// nothing, moves the clock to the next timer, so the lookup's own
/// deadline ends it at exactly its timeout, not the crate's 2 s request
/// timeout (which runs on the crate's thread, on the real clock).
#[tokio::test(start_paused = true)]
async fn a_lookup_on_a_dht_that_never_answers_ends_at_its_timeout() {
    // A "bootstrap node" that reads nothing: the query itself would give
    // up on it only after the crate's 2 s request timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(silent_addr) = silent.local_addr().unwrap() else {
        unreachable!("bound to IPv4");
    };
    let looker = Discovery::start(DiscoveryConfig {
        lookup_timeout: Duration::from_millis(300),
        ..config(&[silent_addr])
    })
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    assert!(looker.lookup(key(5)).await.is_empty());
    // (The paused clock moves to the timer's millisecond tick.)
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(302),
        "{took:?}"
    );
    // The looker did send to the silent node: there was a DHT to wait for.
    let mut buf = [0u8; 2048];
    silent.set_read_timeout(Some(HANG)).unwrap();
    assert!(
        silent.recv_from(&mut buf).is_ok(),
        "a query reached the bootstrap node"
    );
}
