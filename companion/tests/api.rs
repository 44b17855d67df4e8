//! The companion's API over real HTTP on loopback: who may use it (the
//! token, Host and Origin checks), shares and downloads added through it
//! with their consent, progress as server-sent events, receipts, the
//! transfer log, the quota, and every answer checked against
//! `docs/schemas/companion-api.schema.json`.

mod support;

use std::time::{Duration, Instant};

use minimodel_companion::CompanionError;
use minimodel_companion::library::LibraryError;
use minimodel_swarm::ticket::Ticket;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::signing::SecretKey;
use serde_json::{Value, json};
use support::{ApiSchema, Running, fixture, start};

const CHUNK: u32 = 64 * 1024;

fn download_request(fixture: &support::Fixture, offer: &Value) -> Value {
    json!({
        "manifest_path": fixture.manifest_path,
        "offers": [offer],
    })
}

#[test]
fn requests_without_the_token_or_from_a_foreign_origin_or_host_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let companion = start(&temp.path().join("library"));
    let mut schema = ApiSchema::load();
    let host = companion.host();
    let bearer = format!("Bearer {}", companion.token());
    let library = "/api/v1/library";

    let refused = |reply: &minimodel_companion::client::Reply, status: u16, kind: &str| {
        assert_eq!(
            reply.status,
            status,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["kind"], kind, "{}", reply.json());
    };

    // No token, and a wrong one.
    let reply = companion.raw("GET", library, &[("Host", host.clone())]);
    refused(&reply, 401, "unauthorized");
    schema.check("ErrorBody", &reply.json());
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "a 401 names the scheme"
    );
    let mut wrong = companion.token().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = format!("Bearer {}", String::from_utf8(wrong).unwrap());
    let reply = companion.raw(
        "GET",
        library,
        &[("Host", host.clone()), ("Authorization", wrong)],
    );
    refused(&reply, 401, "unauthorized");
    // Nothing is done for a request without the token, a stop included.
    let reply = companion.raw("POST", "/api/v1/shutdown", &[("Host", host.clone())]);
    refused(&reply, 401, "unauthorized");

    // The token, sent by another site's page (CSRF).
    let reply = companion.raw(
        "GET",
        library,
        &[
            ("Host", host.clone()),
            ("Authorization", bearer.clone()),
            ("Origin", "http://evil.example".to_owned()),
        ],
    );
    refused(&reply, 403, "forbidden");
    schema.check("ErrorBody", &reply.json());
    let reply = companion.raw(
        "POST",
        "/api/v1/shutdown",
        &[
            ("Host", host.clone()),
            ("Authorization", bearer.clone()),
            ("Origin", "null".to_owned()),
        ],
    );
    refused(&reply, 403, "forbidden");
    let reply = companion.raw(
        "GET",
        library,
        &[
            ("Host", host.clone()),
            ("Authorization", bearer.clone()),
            ("Sec-Fetch-Site", "cross-site".to_owned()),
        ],
    );
    refused(&reply, 403, "forbidden");

    // A name of another site resolved to 127.0.0.1 (DNS rebinding).
    let port = companion.addr.port();
    for foreign in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        let reply = companion.raw(
            "GET",
            library,
            &[("Host", foreign.clone()), ("Authorization", bearer.clone())],
        );
        refused(&reply, 421, "wrong-host");
    }
    // A second Host (or Origin, Sec-Fetch-Site, Authorization) after a
    // good one is not left unread: the request is refused.
    for (name, good, evil) in [
        (
            "Host",
            format!("127.0.0.1:{port}"),
            format!("evil.example:{port}"),
        ),
        (
            "Origin",
            format!("http://127.0.0.1:{port}"),
            "https://evil.example".to_owned(),
        ),
        (
            "Sec-Fetch-Site",
            "same-origin".to_owned(),
            "cross-site".to_owned(),
        ),
    ] {
        let mut headers = vec![(name, good), (name, evil)];
        if name != "Host" {
            headers.push(("Host", format!("127.0.0.1:{port}")));
        }
        headers.push(("Authorization", bearer.clone()));
        let reply = companion.raw("GET", library, &headers);
        assert_eq!(reply.status, 400, "{name}: {}", reply.json());
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .contains("more than one")
        );
    }
    // The page itself, from a foreign name, is refused as well.
    let reply = companion.raw("GET", "/", &[("Host", format!("evil.example:{port}"))]);
    assert_eq!(reply.status, 421);

    // The companion's own page and requests pass.
    let reply = companion.raw(
        "GET",
        library,
        &[
            ("Host", format!("localhost:{port}")),
            ("Authorization", bearer.clone()),
            ("Origin", format!("http://localhost:{port}")),
            ("Sec-Fetch-Site", "same-origin".to_owned()),
        ],
    );
    assert_eq!(reply.status, 200);
    schema.check("LibraryView", &reply.json());
    let page = companion.raw("GET", "/", &[("Host", host.clone())]);
    assert_eq!(
        page.status, 200,
        "the page holds no data and needs no token"
    );
    assert!(String::from_utf8_lossy(&page.body).contains("minimodel companion"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|v| v.contains("frame-ancestors 'none'"))
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));

    // The guard runs before routing: an unknown path, and another site's
    // preflight, are refused as well.
    let reply = companion.raw("GET", "/api/v1/nothing-here", &[("Host", host.clone())]);
    refused(&reply, 401, "unauthorized");
    let reply = companion.raw(
        "OPTIONS",
        "/api/v1/shares",
        &[
            ("Host", host.clone()),
            ("Origin", "http://evil.example".to_owned()),
            ("Access-Control-Request-Method", "POST".to_owned()),
        ],
    );
    refused(&reply, 403, "forbidden");
    assert!(
        reply.header("access-control-allow-origin").is_none(),
        "no site is allowed to read answers"
    );

    // Still running: none of the refused stops stopped it.
    let (status, _) = companion.get(library);
    assert_eq!(status, 200);
}

#[test]
fn a_share_and_a_download_through_the_api_end_in_a_receipt_and_log_lines() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "tiny-share", 1 << 20, CHUNK);
    let seeder = start(&temp.path().join("seeder"));
    let fetcher = start(&temp.path().join("fetcher"));
    let mut schema = ApiSchema::load();
    let events = fetcher.client.events().unwrap();

    // A share without consent is refused, and says what it would do.
    let share_request = json!({"manifest_path": art.manifest_path, "file": art.slm});
    let (status, body) = seeder.send("POST", "/api/v1/shares", &share_request);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["kind"], "consent-needed");
    schema.check("ErrorBody", &body);
    assert_eq!(body["needs"][0]["consent"], "serve");
    let (status, preview) = seeder.send("POST", "/api/v1/shares/preview", &share_request);
    assert_eq!(status, 200, "{preview}");
    schema.check("Preview", &preview);
    let words = preview["asks"][0]["words"].as_str().unwrap();
    assert!(
        words.contains("Serve tiny-share") && words.contains("127.0.0.1"),
        "{words}"
    );
    assert_eq!(preview["signature"]["status"], "unsigned");
    let (_, library) = seeder.get("/api/v1/library");
    assert_eq!(
        library["items"],
        json!([]),
        "a refusal and a preview add nothing"
    );

    let share = seeder.share(&art);
    schema.check("ItemView", &share);
    let share_id = share["id"].as_str().unwrap().to_owned();
    let offer = seeder.offer_of(&share_id);
    let seeder_peer = seeder.get("/api/v1/library").1["companion"]["peer_id"].clone();
    assert_eq!(offer["peer_id"], seeder_peer, "one identity for every item");

    // The download: consent to fetch first.
    let request = download_request(&art, &offer);
    let (status, body) = fetcher.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["needs"][0]["consent"], "fetch");
    let (status, preview) = fetcher.send("POST", "/api/v1/downloads/preview", &request);
    assert_eq!(status, 200, "{preview}");
    schema.check("Preview", &preview);
    assert_eq!(preview["quota"]["used_bytes"], 0);
    let mut request = request;
    request["consent"] = json!({"fetch": true});
    let (status, added) = fetcher.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    schema.check("ItemView", &added);
    let id = added["id"].as_str().unwrap().to_owned();

    let done = fetcher.wait_item(&id, Duration::from_secs(60), |item| item["state"] == "done");
    schema.check("ItemView", &done);
    assert_eq!(done["verified_bytes"], art.manifest.artifact_bytes);
    let file = done["file"].as_str().unwrap();
    assert_eq!(
        Sha256Digest::of(&std::fs::read(file).unwrap()),
        art.manifest.artifact_sha256,
        "the delivered file is the artifact"
    );
    let handoff = done["handoff"]["text"].as_str().unwrap();
    assert!(
        handoff.contains("TinyRustLM") && handoff.contains(file),
        "{handoff}"
    );
    assert!(
        handoff.contains("Nothing here opens or runs it"),
        "{handoff}"
    );
    let (status, receipt) = fetcher.get(&format!("/api/v1/items/{id}/receipt"));
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["model_id"], "tiny-share");
    assert_eq!(receipt["source"]["peers"][0]["peer_id"], seeder_peer);

    // The fetcher's log: what came from whom, with the receipt.
    let (status, log) = fetcher.get("/api/v1/log");
    assert_eq!(status, 200);
    schema.check("LogPage", &log);
    let entries = log["entries"].as_array().unwrap();
    let downloads: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["direction"] == "download")
        .collect();
    assert_eq!(downloads.len(), 1, "{log:#}");
    assert_eq!(downloads[0]["peer_id"], seeder_peer);
    assert_eq!(downloads[0]["bytes"], art.manifest.artifact_bytes);
    assert_eq!(downloads[0]["ended"], "delivered");
    assert_eq!(downloads[0]["item"], id.as_str());
    let receipt_path = downloads[0]["receipt"]["path"].as_str().unwrap();
    assert_eq!(
        downloads[0]["receipt"]["sha256"],
        Sha256Digest::of(&std::fs::read(receipt_path).unwrap()).to_hex()
    );
    // The seeder's log: what it served to whom, once the fetcher left.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let uploads = loop {
        let (_, log) = seeder.get("/api/v1/log");
        let uploads: Vec<Value> = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["direction"] == "upload")
            .cloned()
            .collect();
        if !uploads.is_empty() || std::time::Instant::now() > deadline {
            break uploads;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(uploads.len(), 1, "one upload line: {uploads:#?}");
    let fetcher_peer = fetcher.get("/api/v1/library").1["companion"]["peer_id"].clone();
    assert_eq!(uploads[0]["peer_id"], fetcher_peer);
    assert_eq!(uploads[0]["bytes"], art.manifest.artifact_bytes);
    assert_eq!(uploads[0]["item"], share_id.as_str());
    // The same lines are in the file, one JSON object each.
    let on_disk = std::fs::read_to_string(seeder.library.join("log/transfers.jsonl")).unwrap();
    let lines: Vec<Value> = on_disk
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, uploads);

    // The progress came as server-sent events, each an ApiEvent.
    let mut events = events;
    let mut states = Vec::new();
    while let Some((name, data)) = events.next_event() {
        let data: Value = serde_json::from_str(&data).unwrap();
        schema.check("ApiEvent", &json!({"event": name, "data": data}));
        if name == "item" && data["id"] == id.as_str() {
            states.push(data["state"].as_str().unwrap().to_owned());
            if data["state"] == "done" {
                break;
            }
        }
    }
    assert_eq!(
        states.last().map(String::as_str),
        Some("done"),
        "{states:?}"
    );
    assert!(
        states.len() >= 2,
        "the stream told of the way there: {states:?}"
    );
}

#[test]
fn a_shares_mirrors_are_named_in_its_ticket_and_a_mirror_no_ticket_carries_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "tiny-mirrored", 1 << 20, CHUNK);
    let seeder = start(&temp.path().join("seeder"));
    let mut schema = ApiSchema::load();
    let request = |mirrors: Value| {
        json!({
            "manifest_path": art.manifest_path,
            "file": art.slm,
            "consent": {"serve": true},
            "mirrors": mirrors,
        })
    };
    // Refused before anything is added: a query (never shown), plain
    // HTTP, three mirrors.
    for (mirrors, says) in [
        (
            json!(["https://models.example.org/t.slm?sig=secret"]),
            "carries no query",
        ),
        (json!(["http://models.example.org/t.slm"]), "http://"),
        (
            json!([
                "https://a.example.org/t.slm",
                "https://b.example.org/t.slm",
                "https://c.example.org/t.slm"
            ]),
            "at most 2",
        ),
    ] {
        for path in ["/api/v1/shares/preview", "/api/v1/shares"] {
            let (status, body) = seeder.send("POST", path, &request(mirrors.clone()));
            assert_eq!(status, 422, "{body}");
            schema.check("ErrorBody", &body);
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(says) && !error.contains("secret"), "{error}");
        }
    }
    assert_eq!(seeder.get("/api/v1/library").1["items"], json!([]));

    let mirror = "https://models.example.org/tiny-mirrored.slm";
    let (status, share) = seeder.send("POST", "/api/v1/shares", &request(json!([mirror])));
    assert_eq!(status, 201, "{share}");
    let id = share["id"].as_str().unwrap().to_owned();
    let serving = seeder.wait_item(&id, Duration::from_secs(30), |item| {
        item["serving"]["ticket"].is_string()
    });
    schema.check("ItemView", &serving);
    let ticket: Ticket = serving["serving"]["ticket"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ticket.peers.len(), 1, "the share itself");
    let named: Vec<String> = ticket.mirrors.iter().map(|url| url.label()).collect();
    assert_eq!(named, [mirror]);
}

#[test]
fn a_ticket_alone_adds_a_download_and_a_ticket_that_lies_adds_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "tiny-ticket", 1 << 20, CHUNK);
    let seeder = start(&temp.path().join("seeder"));
    let fetcher = start(&temp.path().join("fetcher"));
    let mut schema = ApiSchema::load();
    let share_id = seeder.share(&art)["id"].as_str().unwrap().to_owned();
    let serving = seeder.wait_item(&share_id, Duration::from_secs(30), |item| {
        item["serving"]["ticket"].is_string()
    });
    let text = serving["serving"]["ticket"].as_str().unwrap().to_owned();
    let ticket: Ticket = text.parse().unwrap();
    let seeder_peer = seeder.get("/api/v1/library").1["companion"]["peer_id"].clone();

    // Refused, and nothing added: a ticket beside a manifest, a ticket
    // that is none, one for a manifest its peer does not serve, and one
    // naming a key that did not sign the manifest.
    let refuse = |request: Value, status: u16, kind: &str, says: &str| {
        for path in ["/api/v1/downloads/preview", "/api/v1/downloads"] {
            let (got, body) = fetcher.send("POST", path, &request);
            assert_eq!((got, body["kind"].as_str()), (status, Some(kind)), "{body}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(says), "{error}");
        }
    };
    refuse(
        json!({"ticket": text, "manifest_path": art.manifest_path}),
        422,
        "invalid-input",
        "exactly one of manifest_path, manifest and ticket",
    );
    refuse(
        json!({"ticket": "mm1notaticket"}),
        422,
        "invalid-input",
        "the ticket is not valid",
    );
    let elsewhere = Ticket::new(
        Sha256Digest::of(b"another manifest"),
        None,
        ticket.peers.clone(),
    )
    .unwrap();
    refuse(
        json!({"ticket": elsewhere.to_string()}),
        502,
        "unreachable",
        "no peer of the ticket sent its manifest",
    );
    let key_id = SecretKey::from_seed(&[7; 32]).public_key().key_id();
    let forged = Ticket::new(ticket.manifest_sha256, Some(key_id), ticket.peers.clone()).unwrap();
    let (status, body) = fetcher.send(
        "POST",
        "/api/v1/downloads/preview",
        &json!({"ticket": forged.to_string()}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["kind"], "verification-failed");
    schema.check("ErrorBody", &body);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&key_id.to_string()),
        "{body}"
    );
    assert_eq!(fetcher.get("/api/v1/library").1["items"], json!([]));

    // The ticket alone: the preview shows the manifest it named, and the
    // ticket's peer is fetched from.
    let mut request = json!({"ticket": format!("  {text}\n")});
    let (status, preview) = fetcher.send("POST", "/api/v1/downloads/preview", &request);
    assert_eq!(status, 200, "{preview}");
    schema.check("Preview", &preview);
    assert_eq!(preview["model_id"], "tiny-ticket");
    assert_eq!(preview["artifact_bytes"], art.manifest.artifact_bytes);
    let fetch_words = preview["asks"][0]["words"].as_str().unwrap();
    assert!(fetch_words.contains("from 1 named peer,"), "{fetch_words}");
    request["consent"] = json!({"fetch": true});
    let (status, added) = fetcher.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let done = fetcher.wait_item(&id, Duration::from_secs(60), |item| item["state"] == "done");
    let file = done["file"].as_str().unwrap();
    assert_eq!(
        Sha256Digest::of(&std::fs::read(file).unwrap()),
        art.manifest.artifact_sha256
    );
    let (_, receipt) = fetcher.get(&format!("/api/v1/items/{id}/receipt"));
    assert_eq!(receipt["source"]["peers"][0]["peer_id"], seeder_peer);
}

#[test]
fn a_download_over_the_quota_is_refused_before_any_byte() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "too-big", 1 << 20, CHUNK);
    let seeder = start(&temp.path().join("seeder"));
    let fetcher = start(&temp.path().join("fetcher"));
    let mut schema = ApiSchema::load();
    let share = seeder.share(&art);
    let offer = seeder.offer_of(share["id"].as_str().unwrap());

    let quota = art.manifest.artifact_bytes - 1;
    let (status, limits) = fetcher.send("PUT", "/api/v1/limits", &json!({"quota_bytes": quota}));
    assert_eq!(status, 200, "{limits}");
    schema.check("LimitsView", &limits);
    let mut request = download_request(&art, &offer);
    request["consent"] = json!({"fetch": true});
    let (status, body) = fetcher.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 507, "{body}");
    schema.check("ErrorBody", &body);
    assert_eq!(body["kind"], "over-quota");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&art.manifest.artifact_bytes.to_string())
            && error.contains(&quota.to_string()),
        "the refusal gives the numbers: {error}"
    );
    // Nothing was written and nobody was dialed.
    let downloads = std::fs::read_dir(fetcher.library.join("downloads"))
        .unwrap()
        .count();
    assert_eq!(downloads, 0, "no file in downloads/");
    assert_eq!(fetcher.get("/api/v1/library").1["items"], json!([]));
    assert_eq!(seeder.item(share["id"].as_str().unwrap())["peers"], 0);
    // Without consent the quota still speaks first: nobody is asked for
    // what cannot fit.
    request["consent"] = json!({});
    assert_eq!(fetcher.send("POST", "/api/v1/downloads", &request).0, 507);

    // Exactly the artifact's size fits.
    fetcher.send("PUT", "/api/v1/limits", &json!({"quota_bytes": quota + 1}));
    request["consent"] = json!({"fetch": true});
    let (status, added) = fetcher.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
}

/// A body of another JSON type than an object is refused (422) on every
/// route that takes a body, as an unknown field is, and changes nothing:
/// `[]` on the limits once read as "no cap and no quota" and cleared them.
#[test]
fn a_body_that_is_not_a_json_object_is_refused_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let companion = start(&temp.path().join("library"));
    let (status, set) = companion.send(
        "PUT",
        "/api/v1/limits",
        &json!({"quota_bytes": 1u64 << 30, "caps": {"max_upload": 1_000_000}}),
    );
    assert_eq!(status, 200, "{set}");
    let before = companion.get("/api/v1/library").1["limits"].clone();
    assert_eq!(before["quota"]["quota_bytes"], 1u64 << 30, "{before}");
    let routes = [
        ("PUT", "/api/v1/limits"),
        ("POST", "/api/v1/shares"),
        ("POST", "/api/v1/shares/preview"),
        ("POST", "/api/v1/downloads"),
        ("POST", "/api/v1/downloads/preview"),
        ("POST", "/api/v1/follows"),
    ];
    for body in [
        json!([]),
        json!([{"quota_bytes": 1}]),
        json!(null),
        json!(0),
        json!("caps"),
        json!(true),
    ] {
        for (method, path) in routes {
            let (status, reply) = companion.send(method, path, &body);
            assert_eq!(status, 422, "{method} {path} {body}: {reply}");
            assert_eq!(
                reply["kind"], "invalid-input",
                "{method} {path} {body}: {reply}"
            );
        }
    }
    // The same one level down: caps or consent that are not objects.
    for body in [
        json!({"caps": []}),
        json!({"caps": [1_000_000, 1_000_000]}),
        json!({"caps": null}),
    ] {
        let (status, reply) = companion.send("PUT", "/api/v1/limits", &body);
        assert_eq!(status, 422, "{body}: {reply}");
    }
    let (status, reply) = companion.send(
        "POST",
        "/api/v1/downloads/preview",
        &json!({"ticket": "mm1x", "consent": [true]}),
    );
    assert_eq!(status, 422, "consent as an array: {reply}");
    let (status, reply) = companion.send("PUT", "/api/v1/limits", &json!({"quota": 1}));
    assert_eq!(status, 422, "an unknown field: {reply}");
    // The free bytes of the disk move with everything else on it.
    let after = companion.get("/api/v1/library").1["limits"].clone();
    assert_eq!(after["caps"], before["caps"]);
    assert_eq!(
        after["quota"]["quota_bytes"],
        before["quota"]["quota_bytes"]
    );
    assert!(
        companion.get("/api/v1/library").1["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[test]
fn an_endpoint_called_with_a_method_it_does_not_take_answers_an_error_body() {
    let temp = tempfile::tempdir().unwrap();
    let companion = start(&temp.path().join("library"));
    for (method, path) in [
        ("GET", "/api/v1/shares"),
        ("DELETE", "/api/v1/library"),
        ("POST", "/api/v1/log"),
        ("PUT", "/api/v1/items/0123456789abcdef"),
    ] {
        let (status, reply) = companion.send(method, path, &json!({}));
        assert_eq!(status, 405, "{method} {path}: {reply}");
        assert_eq!(reply["kind"], "not-found", "{method} {path}: {reply}");
    }
    // A path that is no endpoint at all stays 404.
    let (status, reply) = companion.get("/api/v1/nothing");
    assert_eq!(
        (status, &reply["kind"]),
        (404, &json!("not-found")),
        "{reply}"
    );
}

#[test]
fn a_second_companion_on_one_library_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let library = temp.path().join("library");
    let first = start(&library);
    let second = support::try_start(support::config(&library));
    match second {
        Err(CompanionError::Library(LibraryError::Locked { pid, .. })) => {
            assert_eq!(
                pid,
                Some(std::process::id()),
                "the refusal names the holder"
            );
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a second companion started on a locked library"),
    }
    first.stop();
    // Once the first stopped, the library is free again.
    let again = start(&library);
    again.stop();
}

#[test]
fn pause_resume_caps_and_remove_act_on_items() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "acted-on", 512 * 1024, CHUNK);
    let companion = start(&temp.path().join("library"));
    let mut schema = ApiSchema::load();
    let share = companion.share(&art);
    let id = share["id"].as_str().unwrap().to_owned();
    companion.offer_of(&id);

    let (status, paused) = companion.send("POST", &format!("/api/v1/items/{id}/pause"), &json!({}));
    assert_eq!(status, 200, "{paused}");
    schema.check("ItemView", &paused);
    companion.wait_item(&id, Duration::from_secs(10), |item| {
        item["state"] == "paused" && item["serving"].is_null()
    });
    let (status, _) = companion.send("POST", &format!("/api/v1/items/{id}/resume"), &json!({}));
    assert_eq!(status, 200);
    companion.offer_of(&id);

    let (status, capped) = companion.send(
        "PUT",
        &format!("/api/v1/items/{id}/caps"),
        &json!({"max_upload": 1000000, "max_download": null}),
    );
    assert_eq!(status, 200, "{capped}");
    companion.wait_item(&id, Duration::from_secs(10), |item| {
        item["effective_caps"]["max_upload"] == 1000000
    });
    // The library's cap is split among the items that upload.
    companion.send(
        "PUT",
        "/api/v1/limits",
        &json!({"caps": {"max_upload": 500000, "max_download": null}}),
    );
    companion.wait_item(&id, Duration::from_secs(10), |item| {
        item["effective_caps"]["max_upload"] == 500000
    });
    // A cap of nothing, or of a few bytes a second, is refused, and the
    // caps in force stay.
    for caps in [
        json!({"max_upload": 0, "max_download": null}),
        json!({"max_upload": null, "max_download": 1023}),
    ] {
        let (status, body) = companion.send("PUT", "/api/v1/limits", &json!({"caps": caps}));
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("at least 1024"),
            "{body}"
        );
        let (status, body) = companion.send("PUT", &format!("/api/v1/items/{id}/caps"), &caps);
        assert_eq!(status, 422, "{body}");
    }
    let (_, view) = companion.get(&format!("/api/v1/items/{id}"));
    assert_eq!(view["caps"]["max_upload"], 1000000, "{view}");
    assert_eq!(view["effective_caps"]["max_upload"], 500000, "{view}");

    // A share's file is the user's: never deleted.
    let reply = companion
        .client
        .call(
            "DELETE",
            &format!("/api/v1/items/{id}?delete_files=true"),
            None,
        )
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.json());
    assert!(art.slm.exists());
    let reply = companion
        .client
        .call("DELETE", &format!("/api/v1/items/{id}"), None)
        .unwrap();
    assert_eq!(reply.status, 200);
    schema.check("Removed", &reply.json());
    assert!(art.slm.exists(), "removing a share leaves its file");
    let (status, body) = companion.get(&format!("/api/v1/items/{id}"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(companion.get("/api/v1/library").1["items"], json!([]));

    // A file that is no manifest is not quoted back.
    let secret = temp.path().join("secret.txt");
    std::fs::write(&secret, "hunter2: the password\n").unwrap();
    let (status, body) = companion.send(
        "POST",
        "/api/v1/shares/preview",
        &json!({"manifest_path": secret, "file": art.slm}),
    );
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("is not a minimodel manifest"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    // A FIFO named as the manifest is refused at once: opening it to read
    // used to wait for a writer, and hold the companion's thread. (Unix
    // only: Windows has no FIFOs in its file system; scripts/windows-tests.)
    #[cfg(unix)]
    {
        let fifo = temp.path().join("manifest.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let (status, body) = companion.send(
            "POST",
            "/api/v1/shares/preview",
            &json!({"manifest_path": fifo, "file": art.slm}),
        );
        assert_eq!(status, 422, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("is not a regular file"), "{error}");
    }

    // Malformed requests: 422 with the reason, nothing added.
    for bad in [
        json!({"file": art.slm}),
        json!({"manifest_path": art.manifest_path, "file": "relative.slm", "consent": {"serve": true}}),
        json!({"manifest_path": art.manifest_path, "file": art.slm, "bogus": true}),
    ] {
        let (status, body) = companion.send("POST", "/api/v1/shares", &bad);
        assert_eq!(status, 422, "{bad} -> {body}");
        schema.check("ErrorBody", &body);
    }
    let (status, _) = companion.get("/api/v1/items/not-an-id");
    assert_eq!(status, 404);
}

fn running_item_states(companion: &Running) -> Vec<(String, String)> {
    companion.get("/api/v1/library").1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_owned(),
                item["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_item_serves_on_the_companions_one_port_and_fetches_from_it_run_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let files = temp.path().join("files");
    let arts: Vec<_> = (0..3u64)
        .map(|i| fixture(&files, &format!("item-{i}"), (2 + i) * 128 * 1024, CHUNK))
        .collect();
    let library = temp.path().join("seeder");
    let seeder = start(&library);
    let fetcher = start(&temp.path().join("fetcher"));
    let port = seeder.get("/api/v1/library").1["companion"]["port"]
        .as_u64()
        .expect("the library view names the items' port");
    let offers: Vec<Value> = arts
        .iter()
        .map(|art| {
            let id = seeder.share(art)["id"].as_str().unwrap().to_owned();
            seeder.offer_of(&id)
        })
        .collect();
    for offer in &offers {
        let addrs = offer["addrs"].as_array().unwrap();
        assert!(!addrs.is_empty());
        for addr in addrs {
            let addr: std::net::SocketAddr = addr.as_str().unwrap().parse().unwrap();
            assert_eq!(
                u64::from(addr.port()),
                port,
                "one port for every item: {offer}"
            );
        }
    }
    let ids: Vec<String> = arts
        .iter()
        .zip(&offers)
        .map(|(art, offer)| {
            let mut request = download_request(art, offer);
            request["consent"] = json!({"fetch": true});
            let (status, added) = fetcher.send("POST", "/api/v1/downloads", &request);
            assert_eq!(status, 201, "{added}");
            added["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // The library's upload cap is the endpoint's, shared by the items
    // that upload as they upload: no item is held to a third of it.
    let (status, _) = seeder.send(
        "PUT",
        "/api/v1/limits",
        &json!({"caps": {"max_upload": 3_000_000, "max_download": null}}),
    );
    assert_eq!(status, 200);
    // One item per artifact: a download of what is shared is refused.
    let mut again = download_request(&arts[0], &offers[0]);
    again["consent"] = json!({"fetch": true});
    let (status, body) = seeder.send("POST", "/api/v1/downloads", &again);
    assert_eq!(status, 409, "{body}");
    for (art, id) in arts.iter().zip(&ids) {
        let done = fetcher.wait_item(id, Duration::from_secs(60), |item| item["state"] == "done");
        let file = done["file"].as_str().unwrap();
        assert_eq!(
            Sha256Digest::of(&std::fs::read(file).unwrap()),
            art.manifest.artifact_sha256
        );
    }
    // The caps shown are those the endpoint's gate grants each item now:
    // with nobody uploading, each may take the whole of the library's
    // cap as the next to start, not a third of it.
    for share in seeder.get("/api/v1/library").1["items"].as_array().unwrap() {
        let id = share["id"].as_str().unwrap();
        seeder.wait_item(id, Duration::from_secs(10), |item| {
            item["effective_caps"]["max_upload"] == 3_000_000
        });
    }
    // Started again, the companion serves on the same port.
    seeder.stop();
    let again = start(&library);
    assert_eq!(
        again.get("/api/v1/library").1["companion"]["port"].as_u64(),
        Some(port),
        "the port the items listened on is taken again"
    );
}

#[test]
fn the_library_survives_a_clean_stop_and_a_crash() {
    let temp = tempfile::tempdir().unwrap();
    let files = temp.path().join("files");
    let served = fixture(&files, "served", 512 * 1024, CHUNK);
    let paused = fixture(&files, "paused", 256 * 1024, CHUNK);
    let fetched = fixture(&files, "fetched", 512 * 1024, CHUNK);
    let peer = start(&temp.path().join("peer"));
    let peer_share = peer.share(&fetched);
    let offer = peer.offer_of(peer_share["id"].as_str().unwrap());

    let library = temp.path().join("library");
    let companion = start(&library);
    let share = companion.share(&served);
    let share_id = share["id"].as_str().unwrap().to_owned();
    let port = companion.offer_of(&share_id)["addrs"][0].clone();
    let second = companion.share(&paused);
    let paused_id = second["id"].as_str().unwrap().to_owned();
    companion.send(
        "POST",
        &format!("/api/v1/items/{paused_id}/pause"),
        &json!({}),
    );
    let mut request = download_request(&fetched, &offer);
    request["consent"] = json!({"fetch": true});
    let (status, added) = companion.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let download_id = added["id"].as_str().unwrap().to_owned();
    companion.wait_item(&download_id, Duration::from_secs(60), |item| {
        item["state"] == "done"
    });
    companion.send("PUT", "/api/v1/limits", &json!({"quota_bytes": 1u64 << 30}));
    let before = running_item_states(&companion);
    companion.stop();
    assert!(
        !library.join("api.json").exists(),
        "a clean stop removes api.json"
    );

    for (round, how) in ["after a clean stop", "after a crash"].iter().enumerate() {
        let companion = start(&library);
        assert_eq!(
            running_item_states(&companion)
                .iter()
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>(),
            before.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
            "every item is back, in order, {how}"
        );
        // The share serves again on its port, so its offer stays good.
        assert_eq!(companion.offer_of(&share_id)["addrs"][0], port, "{how}");
        assert_eq!(companion.item(&paused_id)["state"], "paused", "{how}");
        let done = companion.wait_item(&download_id, Duration::from_secs(20), |item| {
            item["state"] == "done"
        });
        assert!(done["receipt"].is_string(), "{how}: {done}");
        assert_eq!(
            companion.get("/api/v1/library").1["limits"]["quota"]["quota_bytes"],
            1u64 << 30,
            "{how}"
        );
        if round == 0 {
            companion.crash();
        } else {
            companion.stop();
        }
    }
}

#[test]
fn a_download_stopped_or_crashed_midway_resumes_without_fetching_a_verified_chunk_again() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "midway", 2 << 20, CHUNK);
    let peer = start(&temp.path().join("peer"));
    // Slow enough to be caught halfway.
    let offer = peer.share_capped(&art, 512 * 1024);

    let library = temp.path().join("library");
    let companion = start(&library);
    let mut request = download_request(&art, &offer);
    request["consent"] = json!({"fetch": true});
    let (status, added) = companion.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let total = art.manifest.artifact_bytes;
    let midway = |companion: &Running, from: u64| {
        companion.wait_item(&id, Duration::from_secs(30), |item| {
            item["verified_bytes"].as_u64().unwrap() >= from + total / 8
        })
    };
    midway(&companion, 0);
    companion.stop();

    let companion = start(&library);
    let resumed = companion.wait_item(&id, Duration::from_secs(20), |item| {
        item["state"] == "fetching"
    });
    let at_restart = resumed["verified_bytes"].as_u64().unwrap();
    assert!(at_restart > 0 && at_restart < total, "{resumed}");
    midway(&companion, at_restart);
    companion.crash();

    let companion = start(&library);
    let done = companion.wait_item(&id, Duration::from_secs(60), |item| item["state"] == "done");
    let (_, receipt) = companion.get(&format!("/api/v1/items/{id}/receipt"));
    let source = &receipt["source"];
    let count = art.manifest.chunks.chunk_count;
    assert!(
        source["chunks_resumed"].as_u64().unwrap() > 0,
        "{receipt:#}"
    );
    assert_eq!(
        source["chunks_resumed"].as_u64().unwrap() + source["chunks_fetched"].as_u64().unwrap(),
        count,
        "no verified chunk was fetched again: {receipt:#}"
    );
    assert_eq!(source["chunks_refetched"], 0);
    assert_eq!(
        Sha256Digest::of(&std::fs::read(done["file"].as_str().unwrap()).unwrap()),
        art.manifest.artifact_sha256
    );
}

/// Sends every request to `POST /api/v1/downloads` at once, one thread
/// each, released together; the answers in the requests' order.
fn post_together(companion: &Running, requests: &[Value]) -> Vec<(u16, Value)> {
    let barrier = std::sync::Barrier::new(requests.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    companion.send("POST", "/api/v1/downloads", request)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    })
}

#[test]
fn two_versions_of_one_model_id_sent_together_are_both_added_in_two_directories() {
    let temp = tempfile::tempdir().unwrap();
    let companion = start(&temp.path().join("library"));
    let nobody = format!("{}@127.0.0.1:9", "a".repeat(52));
    for round in 0..4 {
        let name = format!("dup{round}");
        // One model id, two artifacts (two sizes: two Merkle roots).
        let requests: Vec<Value> = [256u64 << 10, 320 << 10]
            .iter()
            .enumerate()
            .map(|(variant, size)| {
                let art = fixture(
                    &temp.path().join(format!("v{round}-{variant}")),
                    &name,
                    *size,
                    64 << 10,
                );
                json!({
                    "manifest_path": art.manifest_path,
                    "peers": [nobody],
                    "consent": {"fetch": true},
                })
            })
            .collect();
        let statuses = post_together(&companion, &requests);
        let codes: Vec<u16> = statuses.iter().map(|(status, _)| *status).collect();
        assert_eq!(codes, vec![201, 201], "round {round}: {statuses:?}");
        // Whichever came first has downloads/; the other has the
        // directory of its own manifest, so their files never meet.
        let state: Value = serde_json::from_slice(
            &std::fs::read(temp.path().join("library/library.json")).unwrap(),
        )
        .unwrap();
        let dirs: Vec<Value> = state["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["model_id"] == name.as_str())
            .map(|item| {
                let dir = &item["work"]["download"]["version_dir"];
                if !dir.is_null() {
                    assert_eq!(dir, &item["manifest_sha256"], "{item}");
                }
                dir.clone()
            })
            .collect();
        assert_eq!(dirs.len(), 2, "round {round}: {state:#}");
        assert_eq!(
            dirs.iter().filter(|dir| dir.is_null()).count(),
            1,
            "round {round}: {state:#}"
        );
    }
    let (_, library) = companion.get("/api/v1/library");
    assert_eq!(library["items"].as_array().unwrap().len(), 8, "{library}");
}

/// The quota's check and the add are one step of the one task that owns
/// the library: two downloads sent together that fit only one at a time
/// never both pass it.
#[test]
fn two_downloads_sent_together_where_the_quota_fits_one_add_exactly_one() {
    let temp = tempfile::tempdir().unwrap();
    let companion = start(&temp.path().join("library"));
    let nobody = format!("{}@127.0.0.1:9", "a".repeat(52));
    let size = 256u64 << 10;
    for round in 0..4u64 {
        // Room for what is in and one more, not two.
        let quota = round * size + size + size / 2;
        let (status, limits) =
            companion.send("PUT", "/api/v1/limits", &json!({"quota_bytes": quota}));
        assert_eq!(status, 200, "{limits}");
        let requests: Vec<Value> = (0..2)
            .map(|variant| {
                let art = fixture(
                    &temp.path().join(format!("q{round}-{variant}")),
                    &format!("quota{round}x{variant}"),
                    size,
                    64 << 10,
                );
                json!({
                    "manifest_path": art.manifest_path,
                    "peers": [nobody],
                    "consent": {"fetch": true},
                })
            })
            .collect();
        let answers = post_together(&companion, &requests);
        let mut codes: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
        codes.sort_unstable();
        assert_eq!(codes, vec![201, 507], "round {round}: {answers:?}");
        let refused = answers.iter().find(|(status, _)| *status == 507).unwrap();
        assert_eq!(
            refused.1["kind"], "over-quota",
            "round {round}: {answers:?}"
        );
    }
    let (_, library) = companion.get("/api/v1/library");
    assert_eq!(library["items"].as_array().unwrap().len(), 4, "{library}");
}

#[test]
fn removing_a_download_another_process_has_open_keeps_its_files_and_says_why() {
    let temp = tempfile::tempdir().unwrap();
    let library = temp.path().join("library");
    let companion = start(&library);
    let art = fixture(&temp.path().join("files"), "held", 256 << 10, 64 << 10);
    let nobody = format!("{}@127.0.0.1:9", "a".repeat(52));
    let request = json!({
        "manifest_path": art.manifest_path,
        "peers": [nobody],
        "consent": {"fetch": true},
    });
    let (status, added) = companion.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let downloads = library.join("downloads");
    let part = downloads.join("held.slm.part");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !part.exists() {
        assert!(Instant::now() < deadline, "the download never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    companion.send("POST", &format!("/api/v1/items/{id}/pause"), &json!({}));
    companion.wait_item(&id, Duration::from_secs(10), |item| {
        item["state"] == "paused"
    });
    // Another process takes the download (as a CLI fetch into the same
    // directory would), once the paused run has let it go.
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(downloads.join(".held.slm.lock"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock.try_lock().is_err() {
        assert!(Instant::now() < deadline, "the paused run kept the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = companion
        .client
        .call(
            "DELETE",
            &format!("/api/v1/items/{id}?delete_files=true"),
            None,
        )
        .unwrap();
    assert_eq!(reply.status, 200);
    let removed = reply.json();
    assert_eq!(removed["files_removed"], json!([]), "{removed}");
    let why = removed["files_kept"].as_str().unwrap();
    assert!(why.contains("in use"), "{why}");
    assert!(part.exists(), "the other process's download stays");
    assert_eq!(companion.get(&format!("/api/v1/items/{id}")).0, 404);
    drop(lock);
}

#[test]
fn a_download_naming_a_peer_nobody_can_dial_is_refused_before_anything_is_added() {
    let temp = tempfile::tempdir().unwrap();
    let companion = start(&temp.path().join("library"));
    let art = fixture(&temp.path().join("files"), "nowhere", 256 << 10, 64 << 10);
    let id = "a".repeat(52);
    for peer in [
        "not a peer".to_owned(),
        format!("{id}@0.0.0.0:4433"),
        format!("{id}@[::]:4433"),
        format!("{id}@255.255.255.255:4433"),
        format!("{id}@224.0.0.1:4433"),
        format!("{id}@127.0.0.1:0"),
    ] {
        let request = json!({
            "manifest_path": art.manifest_path,
            "peers": [peer],
            "consent": {"fetch": true},
        });
        let (status, body) = companion.send("POST", "/api/v1/downloads", &request);
        assert_eq!(status, 422, "{peer}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("peer"),
            "{peer}: {body}"
        );
    }
    assert_eq!(companion.get("/api/v1/library").1["items"], json!([]));
}

#[test]
fn a_download_removed_while_it_runs_is_logged_with_its_model_id() {
    let temp = tempfile::tempdir().unwrap();
    let art = fixture(&temp.path().join("files"), "gone", 2 << 20, CHUNK);
    let peer = start(&temp.path().join("peer"));
    // Slow enough to be caught while it runs.
    let offer = peer.share_capped(&art, 256 * 1024);
    let companion = start(&temp.path().join("library"));
    let mut request = download_request(&art, &offer);
    request["consent"] = json!({"fetch": true});
    let (status, added) = companion.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    companion.wait_item(&id, Duration::from_secs(30), |item| {
        item["verified_bytes"].as_u64().unwrap() > 0
    });
    let reply = companion
        .client
        .call("DELETE", &format!("/api/v1/items/{id}"), None)
        .unwrap();
    assert_eq!(reply.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, log) = companion.get("/api/v1/log");
        let entries = log["entries"].as_array().unwrap().clone();
        if let Some(entry) = entries.iter().find(|entry| entry["item"] == id.as_str()) {
            assert_eq!(entry["model_id"], "gone", "{entry}");
            break;
        }
        assert!(Instant::now() < deadline, "no log line: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
