//! The companion's page in a real browser: headless Chromium (Debian's
//! `chromium`) driven through `chromedriver` (Debian's `chromium-driver`)
//! by plain WebDriver calls. The test pastes the token, adds a share and
//! a download through the page's forms and consent dialog, sees the
//! download's progress bar move, its chunk map fill and its peer table
//! list the peer it fetches from, the rate graph draw what moved, the caps
//! in force change when a cap does, and its receipt appear; and finds the
//! transfer in the page's log.
//!
//! A missing browser fails the test with what to install; it never
//! skips. `scripts/test` installs both packages. To run it alone:
//! `cargo test -p minimodel-companion --test browser`
//! (`MINIMODEL_CHROMEDRIVER` and `MINIMODEL_CHROMIUM` name other
//! binaries).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minimodel_companion::client::Client;
use serde_json::{Value, json};
use support::{fixture, start};

/// The WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// `chromedriver`, killed when dropped.
struct Driver {
    child: Child,
    client: Client,
    session: Option<String>,
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        let driver =
            find_program("MINIMODEL_CHROMEDRIVER", &["chromedriver"]).unwrap_or_else(|| {
                panic!(
                    "chromedriver is not installed: the page's browser test needs Debian's \
                 chromium and chromium-driver (apt-get install chromium chromium-driver; \
                 scripts/test installs them), or MINIMODEL_CHROMEDRIVER naming a chromedriver"
                )
            });
        let browser = find_program("MINIMODEL_CHROMIUM", &["chromium", "chromium-browser"])
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: apt-get install chromium chromium-driver \
                     (scripts/test installs them), or MINIMODEL_CHROMIUM naming the browser"
                )
            });
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", driver.display()));
        let client = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let mut driver = Driver {
            child,
            client,
            session: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = driver.client.call("GET", "/status", None)
                && reply.json()["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let created = driver.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser,
                    "args": [
                        "--headless=new",
                        // Root in a container has no user namespaces.
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--no-first-run",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }}}),
        );
        driver.session = Some(
            created["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no session: {created}"))
                .to_owned(),
        );
        driver
    }

    /// A WebDriver call; its `value`.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method != "GET").then_some(body);
        let reply = self
            .client
            .call(method, path, body.as_ref())
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let value = reply.json();
        assert_eq!(reply.status, 200, "{method} {path}: {value}");
        value["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        let session = self.session.as_deref().unwrap();
        self.call(method, &format!("/session/{session}{path}"), body)
    }

    fn open(&self, url: &str) {
        self.session("POST", "/url", json!({"url": url}));
    }

    fn element(&self, css: &str) -> String {
        let found = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.session(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.session("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Runs `script` in the page (a function body) and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Waits up to `wait` for `script` to return something truthy.
    fn wait_until(&self, what: &str, wait: Duration, script: &str) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let value = self.eval(script);
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} in {wait:?}; it says: {}",
                self.eval("return document.body.innerText;")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self
                .client
                .call("DELETE", &format!("/session/{session}"), None);
        }
        // chromedriver's own shutdown waits for its browser's processes;
        // a kill is the fallback.
        let _ = self.client.call("GET", "/shutdown", None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The card of the first item of list `list` (`shared-list`,
/// `fetching-list`, `done-list`), as a script expression.
fn card(list: &str) -> String {
    format!("document.querySelector('#{list} li.item')")
}

#[test]
fn the_page_adds_a_share_and_a_download_and_shows_progress_and_the_receipt() {
    let temp = tempfile::tempdir().unwrap();
    let files = temp.path().join("files");
    let shared = fixture(&files, "page-share", 256 * 1024, 64 * 1024);
    let fetched = fixture(&files, "page-fetch", 2 << 20, 64 * 1024);

    // A peer serves the artifact to fetch, slowly enough to watch.
    let peer = start(&temp.path().join("peer"));
    let offer = peer.share_capped(&fetched, 256 * 1024);

    // Its DHT a dead loopback port: a follow's lookup stays on this host.
    let mut config = support::config(&temp.path().join("library"));
    config.dht_bootstrap = vec!["127.0.0.1:9".parse().unwrap()];
    let companion = support::try_start(config).expect("the companion starts");
    let driver = Driver::start(&temp.path().join("profile"));
    driver.open(&format!("http://127.0.0.1:{}/", companion.addr.port()));
    driver.wait_until(
        "the connect form",
        Duration::from_secs(10),
        "return !document.getElementById('connect-section').hidden;",
    );
    driver.type_into("#token", &companion.token());
    driver.click("#connect");
    driver.wait_until(
        "the library",
        Duration::from_secs(10),
        "return !document.getElementById('app').hidden && document.getElementById('who').textContent;",
    );

    // A share: the consent dialog says what will happen; yes adds it.
    driver.type_into("#share-manifest", shared.manifest_path.to_str().unwrap());
    driver.type_into("#share-file", shared.slm.to_str().unwrap());
    driver.click("#share-button");
    let asks = driver.wait_until(
        "the consent dialog",
        Duration::from_secs(10),
        "const d = document.getElementById('consent-dialog'); return d.open && document.getElementById('consent-asks').innerText;",
    );
    let asks = asks.as_str().unwrap();
    assert!(
        asks.contains("Serve page-share") && asks.contains("127.0.0.1"),
        "{asks}"
    );
    driver.click("#consent-yes");
    driver.wait_until(
        "the share serving",
        Duration::from_secs(30),
        &format!(
            "const c = {}; return c && c.dataset.state === 'serving';",
            card("shared-list")
        ),
    );
    let listed = companion.get("/api/v1/library").1;
    assert_eq!(listed["items"][0]["model_id"], "page-share", "{listed}");
    assert_eq!(listed["items"][0]["state"], "serving");
    // The signature line says "unsigned" once.
    let signature = driver.eval(&format!(
        "return {}.querySelector('.signature').textContent;",
        card("shared-list")
    ));
    let signature = signature.as_str().unwrap();
    assert_eq!(signature.matches("unsigned").count(), 1, "{signature}");

    // The caps shown are those in force: a cap set through the API shows
    // on the page once the share's node holds it, no restart.
    let share_id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = companion.send(
        "PUT",
        &format!("/api/v1/items/{share_id}/caps"),
        &json!({"max_upload": 65536, "max_download": null}),
    );
    assert_eq!(status, 200);
    driver.wait_until(
        "the share's cap in force",
        Duration::from_secs(10),
        &format!(
            "const c = {}; return c && c.querySelector('.caps').textContent.includes('Caps in force: up 64.0 KiB/s');",
            card("shared-list")
        ),
    );
    // A share's chunk map says how many peers hold its chunks: nobody yet.
    let held = driver.wait_until(
        "the share's chunk map",
        Duration::from_secs(10),
        &format!(
            "const s = {}.querySelector('svg.chunk-map'); const cells = s.querySelectorAll('rect.cell');              return cells.length > 0 && Array.from(cells).every((r) => r.classList.contains('held-0')) ? cells.length : null;",
            card("shared-list")
        ),
    );
    assert_eq!(
        held.as_u64(),
        Some(4),
        "256 KiB in 64 KiB chunks: a cell each"
    );

    // A download from the peer's offer, pasted as JSON.
    driver.type_into("#fetch-manifest", fetched.manifest_path.to_str().unwrap());
    driver.type_into("#fetch-offers", &offer.to_string());
    driver.click("#fetch-button");
    let asks = driver.wait_until(
        "the consent dialog of the download",
        Duration::from_secs(10),
        "const d = document.getElementById('consent-dialog'); return d.open && document.getElementById('consent-asks').innerText;",
    );
    assert!(
        asks.as_str().unwrap().contains("Fetch page-fetch"),
        "{asks}"
    );
    driver.click("#consent-yes");

    // The progress bar moves: seen part way, then the file is done.
    let part_way = driver.wait_until(
        "the download part way",
        Duration::from_secs(30),
        &format!(
            "const c = {}; if (!c) return null; const p = c.querySelector('progress'); \
             return p.value > 0 && p.value < p.max ? p.value : null;",
            card("fetching-list")
        ),
    );
    assert!(part_way.as_f64().unwrap() > 0.0);
    // Part way, the chunk map shows some chunks verified and not all, its
    // cells adding up to its count, and the peer table lists the peer it
    // fetches from: where, found how, dialed, since when.
    let map = driver.wait_until(
        "the chunk map part way",
        Duration::from_secs(30),
        &format!(
            "const c = {}; if (!c) return null; const s = c.querySelector('svg.chunk-map'); \
             const cells = Array.from(s.querySelectorAll('rect.cell')); \
             const sum = cells.reduce((n, r) => n + Number(r.dataset.verified), 0); \
             return sum > 0 && sum < Number(s.dataset.chunks) && sum === Number(s.dataset.verified) \
               ? [cells.length, sum, Number(s.dataset.chunks)] : null;",
            card("fetching-list")
        ),
    );
    assert_eq!(map[0], 32, "2 MiB in 64 KiB chunks: a cell each: {map}");
    assert_eq!(map[2], 32);
    let peer_id = peer.get("/api/v1/library").1["companion"]["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = driver.wait_until(
        "the peer table",
        Duration::from_secs(30),
        &format!(
            "const c = {}; if (!c) return null; \
             const r = c.querySelector('table.peers tbody tr[data-peer=\"{peer_id}\"]'); \
             return r && Array.from(r.cells).map((d) => d.textContent);",
            card("fetching-list")
        ),
    );
    let row: Vec<&str> = row
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| cell.as_str().unwrap())
        .collect();
    let offer_addr = offer["addrs"][0].as_str().unwrap();
    assert_eq!(row[0], &peer_id[..10], "{row:?}");
    assert_eq!(row[1], offer_addr, "{row:?}");
    assert_eq!(&row[2..4], ["given", "dialed"], "{row:?}");
    assert!(!row[8].is_empty(), "since when: {row:?}");
    driver.wait_until(
        "the download done",
        Duration::from_secs(60),
        &format!(
            "const c = {}; return c && c.dataset.state === 'done' && c.querySelector('progress').value === c.querySelector('progress').max;",
            card("done-list")
        ),
    );
    // Done: every cell of the map verified, as many chunks as the item
    // has verified bytes; the rate graphs drew what came down.
    let done_map = driver.wait_until(
        "the chunk map complete",
        Duration::from_secs(10),
        &format!(
            "const s = {}.querySelector('svg.chunk-map'); \
             const cells = Array.from(s.querySelectorAll('rect.cell')); \
             return cells.length > 0 && cells.every((r) => r.classList.contains('verified')) \
               ? Number(s.dataset.verified) : null;",
            card("done-list")
        ),
    );
    let done_id = companion.get("/api/v1/library").1["items"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done_item = companion.item(&done_id);
    assert_eq!(
        done_map.as_u64().unwrap() * 64 * 1024,
        done_item["verified_bytes"].as_u64().unwrap(),
        "the map's cells match the item's verified count"
    );
    let peak = driver.wait_until(
        "the library's rate graph",
        Duration::from_secs(10),
        "const s = document.getElementById('library-rates'); \
         return s.querySelectorAll('polyline.rate-down').length === 1 && Number(s.dataset.peak) > 1024 \
           ? Number(s.dataset.peak) : null;",
    );
    assert!(peak.as_f64().unwrap() > 1024.0, "{peak}");
    let item_peak = driver.eval(&format!(
        "const s = {}.querySelector('svg.rate-graph'); return Number(s.dataset.peak);",
        card("done-list")
    ));
    assert!(item_peak.as_f64().unwrap() > 1024.0, "{item_peak}");

    let handoff = driver.eval(&format!(
        "return {}.querySelector('.handoff').textContent;",
        card("done-list")
    ));
    assert!(
        handoff.as_str().unwrap().contains("TinyRustLM"),
        "{handoff}"
    );

    // The receipt, as the page shows it.
    driver.eval(&format!(
        "{}.querySelector('.buttons button').click(); return null;",
        card("done-list")
    ));
    let receipt = driver.wait_until(
        "the receipt",
        Duration::from_secs(10),
        "const d = document.getElementById('receipt-dialog'); return d.open && document.getElementById('receipt-text').textContent;",
    );
    let receipt: Value = serde_json::from_str(receipt.as_str().unwrap()).unwrap();
    assert_eq!(receipt["model_id"], "page-fetch");
    assert_eq!(receipt["format"], "minimodel-receipt-v0");
    driver.click("#receipt-close");

    // The transfer log's row came in as an event.
    let row = driver.wait_until(
        "the log row",
        Duration::from_secs(10),
        "const r = document.querySelector('#log-rows tr'); return r && r.innerText;",
    );
    let row = row.as_str().unwrap();
    assert!(
        row.contains("page-fetch") && row.contains("download") && row.contains("delivered"),
        "{row}"
    );
    // A publisher followed through the page: listed from the API, its
    // lookup said; unfollowed, gone.
    let publisher = minimodel_verifier::signing::SecretKey::from_seed(&[9; 32])
        .public_key()
        .to_string();
    driver.type_into("#follow-key", &publisher);
    driver.type_into("#follow-model", "page-share");
    driver.click("#follow-button");
    let follow = driver.wait_until(
        "the follow",
        Duration::from_secs(10),
        "const r = document.querySelector('#follows-list li.follow'); return r && r.innerText;",
    );
    let follow = follow.as_str().unwrap();
    assert!(
        follow.contains(&format!("page-share of {publisher} (offered)")),
        "{follow}"
    );
    assert_eq!(
        companion.get("/api/v1/follows").1["follows"][0]["publisher_key"],
        publisher.as_str()
    );
    driver.wait_until(
        "the follow's lookup",
        Duration::from_secs(60),
        "const r = document.querySelector('#follows-list li.follow .follow-lookup'); return r && r.innerText;",
    );
    driver.eval(
        "const b = [...document.querySelectorAll('#follows-list li.follow button')].find((b) => b.textContent === 'Unfollow'); b.click(); return null;",
    );
    driver.wait_until(
        "no follow",
        Duration::from_secs(10),
        "return document.querySelectorAll('#follows-list li.follow').length === 0 && !document.getElementById('follows-empty').hidden;",
    );
    assert_eq!(companion.get("/api/v1/follows").1["follows"], json!([]));

    // To look at the page: MINIMODEL_PAGE_SCREENSHOT=FILE keeps what the
    // browser drew (a PNG, base64).
    if let Some(path) = std::env::var_os("MINIMODEL_PAGE_SCREENSHOT") {
        driver.session(
            "POST",
            "/window/rect",
            json!({"width": 1200, "height": 2400}),
        );
        let png = driver.session("GET", "/screenshot", json!({}));
        std::fs::write(path, png.as_str().unwrap()).unwrap();
    }
}
