//! A download the companion fetches from a mirror alone, through its API:
//! the consent names the mirror's host, a URL that cannot be a mirror is
//! refused before anything is added, the file is delivered and verified,
//! the receipt and the transfer log name the mirror without its query, and
//! the mirror is kept with the item (a restart fetches from it again).
//!
//! The companion trusts the test authority of the mirror the way a user
//! trusts an extra one: `SSL_CERT_FILE` names its PEM file. The test runs
//! itself again as a child process with that environment.

mod support;

use std::time::Duration;

use minimodel_swarm::mirror::test_server::TestMirror;
use minimodel_verifier::Sha256Digest;
use serde_json::json;
use support::{ApiSchema, fixture, start, with_test_roots};

const TEST: &str = "a_download_from_a_mirror_alone_is_delivered_and_names_the_mirror";
/// Set in the child: the directory it works in, the authority in it.
const CHILD: &str = "MINIMODEL_TEST_MIRROR_DOWNLOAD_DIR";

#[test]
fn a_download_from_a_mirror_alone_is_delivered_and_names_the_mirror() {
    if let Some(dir) = with_test_roots(TEST, CHILD) {
        download_from_a_mirror(&dir);
    }
}

fn download_from_a_mirror(root: &std::path::Path) {
    let art = fixture(&root.join("files"), "mirrored", 2 << 20, 64 << 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let file = std::fs::read(&art.slm).unwrap();
    let mirror = runtime
        .block_on(TestMirror::start(
            file.into(),
            Some(art.chunk_list.clone().into_bytes().into()),
        ))
        .expect("the test mirror starts");
    let url = format!("{}?token=secret", mirror.url());
    let mut schema = ApiSchema::load();
    let companion = start(&root.join("library"));

    // URLs that cannot be mirrors: refused before anything is added, the
    // query never quoted back.
    for bad in [
        "ftp://127.0.0.1/mirrored.slm?token=secret".to_owned(),
        format!("http://{}/mirrored.slm", mirror.addr()),
        "https://user:secret@/nohost".to_owned(),
    ] {
        let request = json!({
            "manifest_path": art.manifest_path,
            "mirrors": [bad],
            "consent": {"fetch": true},
        });
        let (status, body) = companion.send("POST", "/api/v1/downloads", &request);
        assert_eq!(status, 422, "{bad}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with("mirror "), "{bad}: {body}");
        assert!(!error.contains("secret"), "{bad}: {body}");
    }
    assert_eq!(companion.get("/api/v1/library").1["items"], json!([]));

    // The consent names the mirror's host; then the download runs from
    // it alone.
    let request = json!({
        "manifest_path": art.manifest_path,
        "mirrors": [url],
    });
    let (status, preview) = companion.send("POST", "/api/v1/downloads/preview", &request);
    assert_eq!(status, 200, "{preview}");
    schema.check("Preview", &preview);
    let words = preview["asks"].to_string();
    assert!(words.contains("127.0.0.1"), "{words}");
    assert!(!words.contains("secret"), "{words}");
    let mut request = request;
    request["consent"] = json!({"fetch": true});
    let (status, added) = companion.send("POST", "/api/v1/downloads", &request);
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let done = companion.wait_item(&id, Duration::from_secs(60), |item| item["state"] == "done");
    schema.check("ItemView", &done);
    let path = done["file"].as_str().unwrap();
    assert_eq!(
        Sha256Digest::of(&std::fs::read(path).unwrap()),
        art.manifest.artifact_sha256
    );
    assert!(mirror.body_bytes() >= art.manifest.artifact_bytes);

    let (status, receipt) = companion.get(&format!("/api/v1/items/{id}/receipt"));
    assert_eq!(status, 200, "{receipt}");
    let mirrors = receipt["source"]["mirrors"].as_array().unwrap();
    assert_eq!(mirrors.len(), 1, "{receipt:#}");
    assert_eq!(mirrors[0]["url"], mirror.url());
    assert_eq!(
        mirrors[0]["bytes"], art.manifest.artifact_bytes,
        "{receipt:#}"
    );
    let (_, log) = companion.get("/api/v1/log");
    let from_mirror: Vec<_> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["mirror"] == mirror.url())
        .collect();
    assert_eq!(from_mirror.len(), 1, "{log:#}");
    assert_eq!(from_mirror[0]["bytes"], art.manifest.artifact_bytes);
    assert!(!log.to_string().contains("secret"), "{log:#}");

    // The library keeps the mirror with the item, as given.
    let state = std::fs::read_to_string(root.join("library/library.json")).unwrap();
    assert!(state.contains(&url), "{state}");
    companion.stop();
}
