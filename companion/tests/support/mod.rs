//! What the companion's tests share: fixture artifacts with their
//! manifests, and a companion running in the test process on its own
//! runtime, driven through the blocking client as the CLI drives it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minimodel_companion::client::{Client, Reply};
use minimodel_companion::trust::MemoryTrust;
use minimodel_companion::{Companion, CompanionConfig, CompanionError};
use minimodel_verifier::describe::{PublisherFields, describe_file};
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::slm::{FixtureSpec, write_fixture};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A fixture `.slm` and its manifest, written side by side.
pub struct Fixture {
    pub slm: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    /// Its chunk list file (`docs/merkle.md`), as a mirror serves it.
    pub chunk_list: String,
}

/// Writes `dir/<name>.slm` of `size` bytes (chunks of `chunk` bytes) and
/// `dir/<name>.manifest`.
pub fn fixture(dir: &Path, name: &str, size: u64, chunk: u32) -> Fixture {
    std::fs::create_dir_all(dir).unwrap();
    let slm = dir.join(format!("{name}.slm"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&slm).unwrap());
    write_fixture(&mut file, &FixtureSpec::new(size, 7)).unwrap();
    drop(file);
    let fields = PublisherFields::new(
        name.parse().unwrap(),
        "acme".parse().unwrap(),
        "https://example.org/license".parse().unwrap(),
        "https://example.org/evidence".parse().unwrap(),
    );
    let described = describe_file(&slm, fields, Some(chunk), &|_| {}).unwrap();
    let (manifest, chunk_list) = (described.manifest, described.chunk_list);
    let manifest_path = dir.join(format!("{name}.manifest"));
    std::fs::write(&manifest_path, manifest.to_text()).unwrap();
    Fixture {
        slm,
        manifest_path,
        manifest,
        chunk_list,
    }
}

/// The test configuration of a companion on `library`: the API and the
/// items on loopback, ports picked by the system.
pub fn config(library: &Path) -> CompanionConfig {
    let mut config = CompanionConfig::new(library);
    config.api = "127.0.0.1:0".parse().unwrap();
    config.serve_ip = "127.0.0.1".parse().unwrap();
    config
}

/// A companion running on a runtime of its own until stopped or dropped.
pub struct Running {
    pub library: PathBuf,
    pub addr: SocketAddr,
    pub client: Client,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), CompanionError>>>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a companion with `config`; the error when it cannot start.
pub fn try_start(config: CompanionConfig) -> Result<Running, CompanionError> {
    let runtime = runtime();
    let library = config.library.clone();
    let companion =
        runtime.block_on(async { Companion::start(config, Arc::new(MemoryTrust::new())).await })?;
    let addr = companion.api_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = runtime.spawn(companion.run(async move {
        let _ = stopped.await;
    }));
    let client = wait_for_client(&library);
    Ok(Running {
        library,
        addr,
        client,
        runtime: Some(runtime),
        stop: Some(stop),
        task: Some(task),
    })
}

/// Starts a companion on `library` with the test configuration.
pub fn start(library: &Path) -> Running {
    try_start(config(library)).expect("the companion starts")
}

/// The client of the companion on `library`, once its `api.json` is
/// written (the companion writes it once its items were started).
fn wait_for_client(library: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::for_library(library) {
            Ok(client) => return client,
            Err(error) if Instant::now() > deadline => {
                panic!("no client for {}: {error}", library.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Running {
    /// `GET path`, the answer's status and JSON.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let reply = self.client.call("GET", path, None).unwrap();
        (reply.status, reply.json())
    }

    /// `METHOD path` with `body`.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let reply = self.client.call(method, path, Some(body)).unwrap();
        (reply.status, reply.json())
    }

    /// A request with exactly `headers`.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, String)]) -> Reply {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        self.client.raw(method, path, &headers, None).unwrap()
    }

    /// The library's token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.library.join("token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The companion's own `Host` value.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Adds a share of `fixture` with consent to serve; its item view.
    pub fn share(&self, fixture: &Fixture) -> Value {
        let (status, body) = self.send(
            "POST",
            "/api/v1/shares",
            &json!({
                "manifest_path": fixture.manifest_path,
                "file": fixture.slm,
                "consent": {"serve": true},
            }),
        );
        assert_eq!(status, 201, "{body}");
        body
    }

    /// The item `id` now.
    pub fn item(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/items/{id}"));
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits up to `wait` for item `id` to satisfy `done`; its view.
    pub fn wait_item(&self, id: &str, wait: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let item = self.item(id);
            if done(&item) {
                return item;
            }
            assert!(
                Instant::now() < deadline,
                "item {id} did not get there in {wait:?}: {item:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A share's peer offer, once it serves.
    /// Shares `fixture` with its upload capped at `max_upload` bytes a
    /// second (slow enough to watch a download of it), once the cap is
    /// in force: its offer.
    pub fn share_capped(&self, fixture: &Fixture, max_upload: u64) -> Value {
        let share = self.share(fixture);
        let id = share["id"].as_str().unwrap();
        self.send(
            "PUT",
            &format!("/api/v1/items/{id}/caps"),
            &json!({"max_upload": max_upload, "max_download": null}),
        );
        self.wait_item(id, Duration::from_secs(10), |item| {
            item["effective_caps"]["max_upload"] == max_upload && item["state"] == "serving"
        });
        self.offer_of(id)
    }

    pub fn offer_of(&self, id: &str) -> Value {
        let item = self.wait_item(id, Duration::from_secs(30), |item| {
            item["state"] == "serving" && item["serving"].is_object()
        });
        item["serving"]["offer"].clone()
    }

    /// Stops it as SIGTERM would, and waits until every state is saved.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(task), Some(runtime)) = (self.task.take(), self.runtime.as_ref()) {
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
                .expect("the companion stops within 30 s")
                .expect("the companion's task")
                .expect("the companion stops cleanly");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Ends it without a clean stop, as a crash would: every task dropped
    /// where it is, nothing saved on the way out. (The state written
    /// before stays; the library's lock goes with the companion.)
    pub fn crash(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            // Every task is dropped where it stands (its sockets and the
            // library's lock closed) before this returns.
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.runtime.is_some() && !std::thread::panicking() {
            self.shut_down();
        } else if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `docs/schemas/companion-api.schema.json`, compiled body by body.
pub struct ApiSchema {
    path: String,
    compiler: boon::Compiler,
    schemas: boon::Schemas,
    compiled: std::collections::BTreeMap<String, boon::SchemaIndex>,
}

impl ApiSchema {
    pub fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/schemas/companion-api.schema.json")
            .canonicalize()
            .expect("docs/schemas/companion-api.schema.json exists");
        Self {
            path: path.to_str().unwrap().to_owned(),
            compiler: boon::Compiler::new(),
            schemas: boon::Schemas::new(),
            compiled: Default::default(),
        }
    }

    /// Panics, with the validator's reasons, unless `value` is a `def`.
    pub fn check(&mut self, def: &str, value: &Value) {
        let index = match self.compiled.get(def) {
            Some(index) => *index,
            None => {
                let loc = format!("{}#/$defs/{def}", self.path);
                let index = self
                    .compiler
                    .compile(&loc, &mut self.schemas)
                    .unwrap_or_else(|error| panic!("{def} does not compile: {error}"));
                self.compiled.insert(def.to_owned(), index);
                index
            }
        };
        if let Err(error) = self.schemas.validate(value, index) {
            panic!("{value:#}\ndoes not match {def}: {error:#}");
        }
    }
}

/// A loopback DHT of one node on `runtime`, and a client joined to it
/// (lookups of 5 s): the node first, the client second.
pub fn loopback_dht(
    runtime: &tokio::runtime::Runtime,
) -> (
    minimodel_swarm::dht::Discovery,
    minimodel_swarm::dht::Discovery,
) {
    use minimodel_swarm::dht::{Bootstrap, Discovery, DiscoveryConfig};
    use std::net::{Ipv4Addr, SocketAddrV4};
    runtime.block_on(async {
        let node = Discovery::start(DiscoveryConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            bootstrap: Bootstrap::NewNetwork,
            server_mode: true,
            ..DiscoveryConfig::default()
        })
        .await
        .expect("the loopback DHT node starts");
        let client = Discovery::start(DiscoveryConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            bootstrap: Bootstrap::Nodes(vec![node.local_addr()]),
            lookup_timeout: Duration::from_secs(5),
            ..DiscoveryConfig::default()
        })
        .await
        .expect("the loopback DHT client starts");
        (node, client)
    })
}

/// For a test whose companion must trust the test mirror's authority the
/// way a user trusts an extra one (`SSL_CERT_FILE`, read once per
/// process): in the test process, runs test `test` again as a child with
/// that environment and `child_var` naming a fresh directory, asserts it
/// passed, and returns `None`; in the child, returns that directory.
pub fn with_test_roots(test: &str, child_var: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(child_var) {
        return Some(PathBuf::from(dir));
    }
    let temp = tempfile::tempdir().unwrap();
    let roots = temp.path().join("test-ca.pem");
    std::fs::write(&roots, minimodel_swarm::mirror::test_server::TEST_CA_PEM).unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(child_var, temp.path())
        .env("SSL_CERT_FILE", &roots)
        .env_remove("SSL_CERT_DIR")
        .env_remove("MINIMODEL_MIRROR_TOKENS")
        .output()
        .expect("the test runs itself again");
    let said = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && said.contains("1 passed"),
        "the child failed: {said}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    None
}
