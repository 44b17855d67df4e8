//! The companion reaches across homes through relays a person names: its
//! one endpoint registers with `--relay` for every item, its shares'
//! offers and tickets name the relay once registered, its items say who
//! can reach them, and a download of a ticket that names a relay
//! registers there too and names it in the consent it asks (on loopback:
//! the paths across routers are the lab's, `docs/lab.md`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::relay::{RelayAddr, RelayConfig, RelayCounter, RelayServer};
use minimodel_swarm::ticket::Ticket;
use minimodel_swarm::transport::{Identity, TransportTuning};
use minimodel_verifier::Sha256Digest;
use serde_json::json;
use support::{config, fixture, start, try_start};

const CHUNK: u32 = 256 * 1024;

/// A relay on loopback, on a runtime of its own for the test's life.
fn relay() -> (tokio::runtime::Runtime, RelayAddr, RelayCounter) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (addr, counter) = runtime.block_on(async {
        let identity = Arc::new(Identity::generate().unwrap());
        let server = RelayServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            identity,
            RelayConfig::default(),
            TransportTuning::default(),
        )
        .unwrap();
        let addr = RelayAddr {
            id: Some(server.peer_id()),
            addr: server.local_addr(),
        };
        let counter = server.counter();
        let (reports, mut inbox) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move { while inbox.recv().await.is_some() {} });
        tokio::spawn(server.run(std::future::pending(), reports));
        (addr, counter)
    });
    (runtime, addr, counter)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what} in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_companion_registers_with_its_relay_names_it_in_tickets_and_a_download_uses_the_tickets_relay()
{
    let temp = tempfile::tempdir().unwrap();
    let (_relay_runtime, relay, counter) = relay();
    let art = fixture(&temp.path().join("files"), "over-homes", 1 << 20, CHUNK);
    let mut seeder_config = config(&temp.path().join("seeder"));
    seeder_config.relays = vec![relay];
    let seeder = try_start(seeder_config).expect("the seeder starts");
    wait_for("the seeder's endpoint registers", || {
        counter.counts().registrations == 1
    });

    // A share's consent names the relay; its ticket and offer name it,
    // with the key it proved, once registered.
    let (status, preview) = seeder.send(
        "POST",
        "/api/v1/shares/preview",
        &json!({"manifest_path": art.manifest_path, "file": art.slm}),
    );
    assert_eq!(status, 200, "{preview}");
    let serve_words = preview["asks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ask| ask["consent"] == "serve")
        .expect("a serve consent")["words"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        serve_words.contains(&relay.addr.to_string()),
        "{serve_words}"
    );
    let share_id = seeder.share(&art)["id"].as_str().unwrap().to_owned();
    let serving = seeder.wait_item(&share_id, Duration::from_secs(30), |item| {
        item["serving"]["ticket"].is_string() && item["reach"]["verdict"].is_string()
    });
    let text = serving["serving"]["ticket"].as_str().unwrap().to_owned();
    let ticket: Ticket = text.parse().unwrap();
    assert_eq!(ticket.relays.len(), 1, "{ticket:?}");
    assert_eq!(ticket.relays[0].relays, [relay], "{ticket:?}");
    assert_eq!(
        serving["serving"]["offer"]["relays"],
        json!([relay.to_string()])
    );
    // Listening on loopback, nobody elsewhere reaches it, and it says so.
    assert_eq!(serving["reach"]["verdict"], "host-only", "{serving:#}");
    assert_eq!(serving["reach"]["unreachable"], true);
    assert!(
        serving["reach"]["advice"]
            .as_str()
            .unwrap()
            .contains("--serve-ip"),
        "{serving:#}"
    );

    // A companion with no relay of its own fetches the ticket: its
    // consent names the ticket's relay, its endpoint registers there, and
    // the download is verified.
    let fetcher = start(&temp.path().join("fetcher"));
    let mut request = json!({"ticket": text});
    let (status, preview) = fetcher.send("POST", "/api/v1/downloads/preview", &request);
    assert_eq!(status, 200, "{preview}");
    let fetch_words = preview["asks"][0]["words"].as_str().unwrap();
    assert!(
        fetch_words.contains(&relay.addr.to_string()),
        "{fetch_words}"
    );
    request["consent"] = json!({"fetch": true});
    let (status, added) = fetcher.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let done = fetcher.wait_item(&id, Duration::from_secs(60), |item| item["state"] == "done");
    assert_eq!(
        Sha256Digest::of(&std::fs::read(done["file"].as_str().unwrap()).unwrap()),
        art.manifest.artifact_sha256
    );
    wait_for(
        "the fetcher's endpoint registers with the ticket's relay",
        || counter.counts().registrations == 2,
    );
    // The download's record keeps the relay its peer names, for its next
    // runs after a restart.
    let state = std::fs::read_to_string(temp.path().join("fetcher").join("library.json")).unwrap();
    assert!(state.contains(&relay.addr.to_string()), "{state}");
    drop(fetcher);
    drop(seeder);
}
