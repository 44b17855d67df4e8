//! Following a publisher through the companion's API, on a loopback DHT
//! of one in-process node: a share whose manifest the followed channel
//! lists as withdrawn stops being served (a peer asking for its manifest
//! by ticket is no longer answered), says why with the reason route, keeps
//! its file, and stays stopped through a resume; a lookup on demand
//! within a minute of the last is refused (429); a new version is offered
//! with a ticket under the `ask` policy, and fetched by itself under
//! `auto`; a channel is looked up again by itself (every second here) and
//! a withdrawal published later stops the share with no request.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use minimodel_swarm::ticket::Ticket;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{Channel, ChannelPeer, Latest, Withdrawal, sign_channel};
use minimodel_verifier::route::Route;
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::manifest::sign_manifest;
use serde_json::{Value, json};
use support::{ApiSchema, Running, config, fixture, loopback_dht, try_start};

const REASON: &str = "https://example.org/takedown/tiny-v1";

fn companion(library: &std::path::Path, node: SocketAddrV4) -> Running {
    let mut config = config(library);
    config.dht_bootstrap = vec![node];
    try_start(config).expect("the companion starts")
}

#[test]
fn a_share_the_followed_channel_withdraws_is_no_longer_served_and_its_file_stays() {
    let temp = tempfile::tempdir().unwrap();
    let mut schema = ApiSchema::load();
    let secret = SecretKey::from_seed(&[5; 32]);
    let publisher = secret.public_key();
    let art = fixture(&temp.path().join("files"), "tiny", 256 * 1024, 64 * 1024);
    let signed = sign_manifest(&art.manifest, &secret);
    std::fs::write(&art.manifest_path, signed.to_text()).unwrap();
    let manifest_sha256 = Sha256Digest::of(&std::fs::read(&art.manifest_path).unwrap());

    // The DHT: one node in this process, and a client that puts the
    // channel item.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, client) = loopback_dht(&runtime);
    let node_addr = node.local_addr();

    // The seeder shares version 1 (its key pinned with consent); another
    // companion can read its manifest by ticket.
    let seeder = companion(&temp.path().join("seeder"), node_addr);
    let (status, share) = seeder.send(
        "POST",
        "/api/v1/shares",
        &json!({
            "manifest_path": art.manifest_path,
            "file": art.slm,
            "consent": {"serve": true, "trust_key": true},
        }),
    );
    assert_eq!(status, 201, "{share}");
    let id = share["id"].as_str().unwrap().to_owned();
    let serving = seeder.wait_item(&id, Duration::from_secs(60), |item| {
        item["state"] == "serving" && item["serving"]["ticket"].is_string()
    });
    let ticket_text = serving["serving"]["ticket"].as_str().unwrap().to_owned();
    let ticket: Ticket = ticket_text.parse().unwrap();
    assert_eq!(ticket.manifest_sha256, manifest_sha256);
    let fetcher = companion(&temp.path().join("fetcher"), node_addr);
    let preview = json!({"ticket": ticket_text});
    let (status, body) = fetcher.send("POST", "/api/v1/downloads/preview", &preview);
    assert_eq!(status, 200, "served before the withdrawal: {body}");

    // The publisher's channel: version 1 is the latest, and withdrawn.
    let mut channel = Channel::default();
    channel.models.insert(
        "tiny".parse().unwrap(),
        Latest {
            manifest_sha256,
            peers: vec![ChannelPeer {
                id: *ticket.peers[0].id.as_bytes(),
                addrs: ticket.peers[0].addrs.clone(),
            }],
        },
    );
    channel.withdrawn.push(Withdrawal {
        manifest_sha256,
        reason_route: Route::parse(REASON).unwrap(),
    });
    let item = sign_channel(&secret, 1, &channel).unwrap();
    let stored = runtime.block_on(client.put_channel(&item, None)).unwrap();
    assert!(stored >= 1);

    // The seeder follows the publisher: looked up at once.
    let followed_at = std::time::Instant::now();
    let (status, follow) = seeder.send(
        "POST",
        "/api/v1/follows",
        &json!({
            "publisher_key": publisher.to_string(),
            "model_id": "tiny",
            "policy": "ask",
        }),
    );
    assert_eq!(status, 201, "{follow}");
    schema.check("FollowView", &follow);
    let withdrawn = seeder.wait_item(&id, Duration::from_secs(60), |item| {
        item["state"] == "withdrawn"
    });
    eprintln!(
        "withdrawn {:.2} s after the follow was added (loopback DHT)",
        followed_at.elapsed().as_secs_f64()
    );
    schema.check("ItemView", &withdrawn);
    assert_eq!(
        withdrawn["withdrawn"]["reason_route"], REASON,
        "{withdrawn:#}"
    );
    assert_eq!(
        withdrawn["withdrawn"]["publisher_key"],
        publisher.to_string()
    );
    assert_eq!(withdrawn["problem"]["kind"], "withdrawn");
    assert!(
        withdrawn["problem"]["text"]
            .as_str()
            .unwrap()
            .contains(REASON),
        "{withdrawn:#}"
    );
    assert!(withdrawn["serving"].is_null(), "{withdrawn:#}");
    // Nothing deleted.
    assert_eq!(
        Sha256Digest::of(&std::fs::read(&art.slm).unwrap()),
        art.manifest.artifact_sha256
    );

    // A peer asking the seeder for it now is not answered (another
    // companion: the first keeps the manifests it fetched for tickets).
    drop(fetcher);
    let fetcher = companion(&temp.path().join("fetcher-after"), node_addr);
    let (status, body) = fetcher.send("POST", "/api/v1/downloads/preview", &preview);
    assert_eq!(status, 502, "still served after the withdrawal: {body}");
    assert_eq!(body["kind"], "unreachable");

    // The follow says what it read.
    let (status, follows) = seeder.get("/api/v1/follows");
    assert_eq!(status, 200);
    schema.check("FollowsView", &follows);
    let seen = &follows["follows"][0];
    assert_eq!(seen["seq"], 1, "{follows:#}");
    assert_eq!(seen["last_lookup"]["ok"], true, "{follows:#}");
    let text = seen["last_lookup"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("item {id} is withdrawn")), "{text}");
    assert!(text.contains("is withdrawn (reason at"), "{text}");
    assert!(seen["offer"].is_null());

    // A resume does not serve it again.
    let (status, resumed) = seeder.send("POST", &format!("/api/v1/items/{id}/resume"), &json!({}));
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "withdrawn");

    // Another lookup now is refused: one a minute per follow.
    let lookup = format!("/api/v1/follows/{publisher}/tiny/lookup");
    let (status, body) = seeder.send("POST", &lookup, &json!({}));
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["kind"], "too-many");
    schema.check("ErrorBody", &body);

    // After a restart it is still withdrawn, and the follow is kept.
    seeder.stop();
    let seeder = companion(&temp.path().join("seeder"), node_addr);
    let again = seeder.item(&id);
    assert_eq!(again["state"], "withdrawn", "{again:#}");
    let (_, follows) = seeder.get("/api/v1/follows");
    assert_eq!(follows["follows"][0]["seq"], 1, "{follows:#}");
    drop((node, client));
}

#[test]
fn a_new_version_is_offered_with_a_ticket_and_follows_are_refused_as_they_should() {
    let temp = tempfile::tempdir().unwrap();
    let mut schema = ApiSchema::load();
    let secret = SecretKey::from_seed(&[6; 32]);
    let publisher = secret.public_key();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, client) = loopback_dht(&runtime);
    let new_version = Sha256Digest::of(b"tiny version 2");
    let peer = ChannelPeer {
        id: [3; 32],
        addrs: vec!["127.0.0.1:4433".parse().unwrap()],
    };
    let channel = Channel {
        models: BTreeMap::from([(
            "tiny".parse().unwrap(),
            Latest {
                manifest_sha256: new_version,
                peers: vec![peer],
            },
        )]),
        withdrawn: Vec::new(),
    };
    let item = sign_channel(&secret, 4, &channel).unwrap();
    runtime.block_on(client.put_channel(&item, None)).unwrap();
    let companion = companion(&temp.path().join("library"), node.local_addr());

    let add = |body: Value| companion.send("POST", "/api/v1/follows", &body);
    let follow = json!({
        "publisher_key": publisher.to_string(),
        "model_id": "tiny",
        "policy": "ask",
    });
    // Refused: a key that is not one, auto without consent, an unknown
    // field, a mirror that cannot be one.
    let (status, body) =
        add(json!({"publisher_key": "mmpk1nope", "model_id": "tiny", "policy": "ask"}));
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        add(json!({"publisher_key": publisher.to_string(), "model_id": "tiny", "policy": "auto"}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["kind"], "consent-needed");
    let (status, _) = add(
        json!({"publisher_key": publisher.to_string(), "model_id": "tiny", "policy": "ask", "extra": 1}),
    );
    assert_eq!(status, 422);
    // A mirror that is not `https://` (a follow's mirrors have no
    // plain-HTTP escape), and one with a user and password.
    for bad in [
        "http://mirror.example/tiny.slm",
        "https://user:pw@mirror.example/tiny.slm",
    ] {
        let (status, body) = add(
            json!({"publisher_key": publisher.to_string(), "model_id": "tiny", "policy": "ask", "mirrors": [bad]}),
        );
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body.to_string().contains("mirrors"), "{body}");
    }
    let (status, body) = add(follow.clone());
    assert_eq!(status, 201, "{body}");
    let (status, body) = add(follow);
    assert_eq!(status, 409, "followed twice: {body}");

    // Looked up at once: version 2 offered, with a ticket naming it, the
    // key and the channel's peer.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let offered = loop {
        let (_, follows) = companion.get("/api/v1/follows");
        if follows["follows"][0]["offer"].is_object() {
            break follows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no offer: {follows:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    schema.check("FollowsView", &offered);
    let follow = &offered["follows"][0];
    assert_eq!(follow["seq"], 4);
    assert_eq!(follow["offer"]["manifest_sha256"], new_version.to_hex());
    let ticket: Ticket = follow["offer"]["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(ticket.manifest_sha256, new_version);
    assert_eq!(ticket.key_id, Some(publisher.key_id()));
    assert_eq!(
        ticket.peers[0].addrs,
        vec!["127.0.0.1:4433".parse().unwrap()]
    );
    // Nothing was added without consent.
    assert_eq!(companion.get("/api/v1/library").1["items"], json!([]));

    // Removed: gone from the list, and a lookup of it is not found.
    let path = format!("/api/v1/follows/{publisher}/tiny");
    let (status, _) = companion.send("DELETE", &path, &json!({}));
    assert_eq!(status, 200);
    assert_eq!(companion.get("/api/v1/follows").1["follows"], json!([]));
    let (status, _) = companion.send("POST", &format!("{path}/lookup"), &json!({}));
    assert_eq!(status, 404);
    drop((node, client));
}

#[test]
fn an_auto_follow_fetches_the_new_version_by_itself_with_the_consent_given() {
    let temp = tempfile::tempdir().unwrap();
    let secret = SecretKey::from_seed(&[8; 32]);
    let publisher = secret.public_key();
    let art = fixture(&temp.path().join("files"), "tiny", 256 * 1024, 64 * 1024);
    let signed = sign_manifest(&art.manifest, &secret);
    std::fs::write(&art.manifest_path, signed.to_text()).unwrap();
    let manifest_sha256 = Sha256Digest::of(&std::fs::read(&art.manifest_path).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, client) = loopback_dht(&runtime);
    let seeder = companion(&temp.path().join("seeder"), node.local_addr());
    let (status, share) = seeder.send(
        "POST",
        "/api/v1/shares",
        &json!({
            "manifest_path": art.manifest_path,
            "file": art.slm,
            "consent": {"serve": true, "trust_key": true},
        }),
    );
    assert_eq!(status, 201, "{share}");
    let serving = seeder.wait_item(
        share["id"].as_str().unwrap(),
        Duration::from_secs(60),
        |item| item["state"] == "serving" && item["serving"]["ticket"].is_string(),
    );
    let ticket: Ticket = serving["serving"]["ticket"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut channel = Channel::default();
    channel.models.insert(
        "tiny".parse().unwrap(),
        Latest {
            manifest_sha256,
            peers: vec![ChannelPeer {
                id: *ticket.peers[0].id.as_bytes(),
                addrs: ticket.peers[0].addrs.clone(),
            }],
        },
    );
    let item = sign_channel(&secret, 1, &channel).unwrap();
    runtime.block_on(client.put_channel(&item, None)).unwrap();

    // The follower follows with `auto` and the consent to fetch and to
    // pin the key: the version is fetched without another request.
    let follower = companion(&temp.path().join("follower"), node.local_addr());
    let (status, body) = follower.send(
        "POST",
        "/api/v1/follows",
        &json!({
            "publisher_key": publisher.to_string(),
            "model_id": "tiny",
            "policy": "auto",
            "consent": {"fetch": true, "trust_key": true},
        }),
    );
    assert_eq!(status, 201, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (_, library) = follower.get("/api/v1/library");
        if let Some(id) = library["items"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing added: {library:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let done = follower.wait_item(&id, Duration::from_secs(60), |item| item["state"] == "done");
    assert_eq!(done["kind"], "download");
    assert_eq!(
        Sha256Digest::of(&std::fs::read(done["file"].as_str().unwrap()).unwrap()),
        art.manifest.artifact_sha256
    );
    let (_, follows) = follower.get("/api/v1/follows");
    let text = follows["follows"][0]["last_lookup"]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("fetched beside the versions here"), "{text}");
    drop((node, client));
}

#[test]
fn a_followed_channel_is_looked_up_again_by_itself_and_a_later_withdrawal_stops_the_share() {
    let temp = tempfile::tempdir().unwrap();
    let secret = SecretKey::from_seed(&[11; 32]);
    let publisher = secret.public_key();
    let art = fixture(&temp.path().join("files"), "tiny", 256 * 1024, 64 * 1024);
    let signed = sign_manifest(&art.manifest, &secret);
    std::fs::write(&art.manifest_path, signed.to_text()).unwrap();
    let manifest_sha256 = Sha256Digest::of(&std::fs::read(&art.manifest_path).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, client) = loopback_dht(&runtime);
    // Lookups every second here (hourly in the product).
    let mut config = config(&temp.path().join("seeder"));
    config.dht_bootstrap = vec![node.local_addr()];
    config.follow_cadence = minimodel_companion::follow::Cadence {
        period: Duration::from_secs(1),
        min_interval: Duration::from_secs(1),
    };
    let seeder = try_start(config).expect("the companion starts");
    let (status, share) = seeder.send(
        "POST",
        "/api/v1/shares",
        &json!({
            "manifest_path": art.manifest_path,
            "file": art.slm,
            "consent": {"serve": true, "trust_key": true},
        }),
    );
    assert_eq!(status, 201, "{share}");
    let id = share["id"].as_str().unwrap().to_owned();
    seeder.wait_item(&id, Duration::from_secs(60), |item| {
        item["state"] == "serving"
    });

    // Version 1 is the latest: nothing withdrawn.
    let mut channel = Channel::default();
    channel.models.insert(
        "tiny".parse().unwrap(),
        Latest {
            manifest_sha256,
            peers: Vec::new(),
        },
    );
    let first = sign_channel(&secret, 1, &channel).unwrap();
    runtime.block_on(client.put_channel(&first, None)).unwrap();
    let (status, body) = seeder.send(
        "POST",
        "/api/v1/follows",
        &json!({"publisher_key": publisher.to_string(), "model_id": "tiny", "policy": "ask"}),
    );
    assert_eq!(status, 201, "{body}");
    let wait_seq = |seq: i64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, follows) = seeder.get("/api/v1/follows");
            if follows["follows"][0]["seq"] == seq {
                return follows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never read {seq}: {follows:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let follows = wait_seq(1);
    let text = follows["follows"][0]["last_lookup"]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("up to date"), "{text}");
    assert_eq!(seeder.item(&id)["state"], "serving");

    // Then the publisher withdraws it; no request to the companion: its
    // next lookup by itself reads it.
    channel.withdrawn.push(Withdrawal {
        manifest_sha256,
        reason_route: Route::parse(REASON).unwrap(),
    });
    let second = sign_channel(&secret, 2, &channel).unwrap();
    runtime
        .block_on(client.put_channel(&second, Some(1)))
        .unwrap();
    let withdrawn = seeder.wait_item(&id, Duration::from_secs(60), |item| {
        item["state"] == "withdrawn"
    });
    assert_eq!(withdrawn["withdrawn"]["reason_route"], REASON);
    wait_seq(2);
    drop((node, client));
}
