//! The schemas in `docs/schemas/` describe what the binary really prints
//! and writes: receipts from `verify` and `fetch`, the request from
//! `request`, and the `--json` events of `fixture`, `manifest`, `verify`,
//! `status`, `request`, `fetch`, `seed` and usage errors, validated with a
//! JSON Schema (2020-12) validator. (That the files equal what the types
//! generate is checked by the unit test `schema::tests` in the binary.)

mod resume_support;

use std::path::Path;

use serde_json::{Value, json};

use resume_support::{Artifact, Proc, Seeders, fetch_args, ok, run};

/// One compiled schema file.
struct Schema {
    name: &'static str,
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Schema {
    fn load(name: &'static str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/schemas")
            .join(name);
        assert!(path.exists(), "{} is missing", path.display());
        let mut schemas = boon::Schemas::new();
        let index = boon::Compiler::new()
            .compile(path.to_str().unwrap(), &mut schemas)
            .unwrap_or_else(|error| panic!("{name} does not compile: {error}"));
        Self {
            name,
            schemas,
            index,
        }
    }

    fn accepts(&self, value: &Value) -> bool {
        self.schemas.validate(value, self.index).is_ok()
    }

    /// Panics, with the validator's reasons, unless `value` matches.
    fn check(&self, value: &Value) {
        if let Err(error) = self.schemas.validate(value, self.index) {
            panic!("{value}\ndoes not match {}: {error:#}", self.name);
        }
    }
}

/// Every stdout line as JSON (each must be).
fn lines_as_json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn the_schemas_refuse_what_the_binary_must_not_print() {
    let events = Schema::load("events.schema.json");
    let progress = json!({
        "event": "progress", "verified_bytes": 1, "total_bytes": 2, "resumed_bytes": 0,
        "verified_chunks": 1, "total_chunks": 2, "peers": 1,
        "rate_bytes_per_second": 1.5, "eta_seconds": 1, "waiting_for_peers": false
    });
    events.check(&progress);
    let mut unitless = progress.clone();
    unitless
        .as_object_mut()
        .unwrap()
        .insert("rate".into(), json!(1.5));
    assert!(!events.accepts(&unitless), "a field without its unit");
    let mut missing = progress.clone();
    missing.as_object_mut().unwrap().remove("eta_seconds");
    assert!(!events.accepts(&missing), "a missing field");
    assert!(!events.accepts(&json!({"event": "no-such-event"})));
    assert!(
        !events.accepts(&json!({"event": "error", "exit_code": "2", "error": "x", "hint": null}))
    );

    let receipt = Schema::load("receipt.schema.json");
    assert!(!receipt.accepts(&json!({"format": "minimodel-receipt-v0"})));
    let request = Schema::load("import-request.schema.json");
    let sha = "0".repeat(64);
    let good = json!({
        "format": "minimodel-import-request-v0", "model_id": "tiny", "artifact_bytes": 1,
        "artifact_sha256": sha, "offers": [{}]
    });
    request.check(&good);
    let mut no_offers = good.clone();
    no_offers["offers"] = json!([]);
    assert!(!request.accepts(&no_offers), "a request needs an offer");
    let mut bad_sha = good.clone();
    bad_sha["artifact_sha256"] = json!("ABC");
    assert!(!request.accepts(&bad_sha));
}

#[test]
fn local_commands_print_and_write_what_the_schemas_say() {
    let events = Schema::load("events.schema.json");
    let receipts = Schema::load("receipt.schema.json");
    let root = tempfile::tempdir().unwrap();
    let root = root.path();

    let fixture = lines_as_json(&ok(
        root,
        &[
            "fixture", "a.slm", "--size", "2MiB", "--seed", "3", "--json",
        ],
    ));
    assert_eq!(names(&fixture), ["fixture"]);
    fixture.iter().for_each(|e| events.check(e));

    let common = [
        "manifest",
        "a.slm",
        "--model-id",
        "tiny",
        "--publisher-id",
        "acme",
        "--license-route",
        "https://example.org/license",
        "--evidence-route",
        "https://example.org/evidence",
        "--json",
    ];
    let to_stdout = lines_as_json(&ok(root, &common));
    assert!(to_stdout[0]["manifest"].is_string(), "{}", to_stdout[0]);
    let mut with_file = common.to_vec();
    with_file.extend(["-o", "a.manifest"]);
    let to_file = lines_as_json(&ok(root, &with_file));
    assert!(to_file[0]["manifest"].is_null(), "{}", to_file[0]);
    for event in to_stdout.iter().chain(&to_file) {
        assert_eq!(event["event"], "manifest");
        events.check(event);
    }

    let verified = lines_as_json(&ok(
        root,
        &[
            "verify",
            "a.manifest",
            "a.slm",
            "--receipt",
            "a.receipt.json",
            "--json",
        ],
    ));
    // The manifest's signature is checked first, and said.
    assert_eq!(names(&verified), ["signature", "verified"]);
    assert_eq!(verified[0]["status"], "unsigned");
    verified.iter().for_each(|e| events.check(e));
    receipts.check(&read_json(&root.join("a.receipt.json")));

    // A usage error under --json is an event too (exit 2).
    let (code, stdout, _) = run(root, &["verify", "a.manifest", "--json", "--bogus"]);
    assert_eq!(code, 2);
    let error = lines_as_json(&stdout);
    assert_eq!(names(&error), ["error"]);
    assert_eq!(error[0]["exit_code"], 2);
    events.check(&error[0]);

    // An invalid input error (exit 3).
    std::fs::write(root.join("bad.manifest"), "format: nonsense\n").unwrap();
    let (code, stdout, _) = run(root, &["verify", "bad.manifest", "a.slm", "--json"]);
    assert_eq!(code, 3);
    let error = lines_as_json(&stdout);
    assert_eq!(names(&error), ["error"]);
    events.check(&error[0]);
}

#[test]
fn a_fetch_its_receipt_its_request_and_status_match_the_schemas() {
    let events = Schema::load("events.schema.json");
    let receipts = Schema::load("receipt.schema.json");
    let requests = Schema::load("import-request.schema.json");
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "schemas", "12MiB", "256KiB", 5);
    let seeders = Seeders::start(root, &artifact, 2, "1MiB");

    // The request from both offers, to stdout and as an event.
    let offer_paths: Vec<&str> = seeders.offers.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["request"];
    args.extend(&offer_paths);
    let text = ok(root, &args).join("\n");
    let request: Value = serde_json::from_str(&text).unwrap();
    requests.check(&request);
    assert_eq!(request["offers"].as_array().unwrap().len(), 2);
    args.push("--json");
    let event = lines_as_json(&ok(root, &args));
    assert_eq!(names(&event), ["request"]);
    events.check(&event[0]);
    requests.check(&event[0]["request"]);

    // A partial download first (a third of the chunks, made through the
    // library), then a fetch with --json that resumes it.
    let out = root.join("out");
    let third: Vec<u32> = (0..artifact.chunk_count() / 3).collect();
    artifact.partial(&out, &third, 1);
    let status = lines_as_json(&ok(root, &["status", out.to_str().unwrap(), "--json"]));
    assert_eq!(status[0]["kind"], "partial", "{}", status[0]);
    status.iter().for_each(|e| events.check(e));

    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &out, &["--json"]));
    let stdout = fetch.expect_exit(0);
    let fetched = lines_as_json(&stdout);
    let seen = names(&fetched);
    for expected in [
        "opened",
        "peer-connected",
        "progress",
        "delivered",
        "fetched",
    ] {
        assert!(seen.iter().any(|n| n == expected), "{expected} in {seen:?}");
    }
    fetched.iter().for_each(|e| events.check(e));
    let opened = fetched.iter().find(|e| e["event"] == "opened").unwrap();
    assert_eq!(opened["resumed_bytes"], artifact.bytes_of(&third));
    let done = fetched.iter().find(|e| e["event"] == "fetched").unwrap();
    assert_eq!(done["resumed_bytes"], artifact.bytes_of(&third));
    assert_eq!(
        done["fetched_bytes"],
        artifact.size() - artifact.bytes_of(&third)
    );
    assert!(done["average_rate_bytes_per_second"].as_f64().unwrap() > 0.0);
    receipts.check(&read_json(&artifact.files(&out).receipt));

    for extra in [&[][..], &["--verify"][..]] {
        let mut args = vec!["status", out.to_str().unwrap(), "--json"];
        args.extend(extra);
        let status = lines_as_json(&ok(root, &args));
        assert_eq!(status[0]["kind"], "complete", "{}", status[0]);
        status.iter().for_each(|e| events.check(e));
    }

    // What a seeder prints: its offer, then what it serves.
    let seeder_events: Vec<Value> = seeders.procs[0].events();
    assert_eq!(seeder_events[0]["event"], "signature");
    assert_eq!(seeder_events[1]["event"], "offer");
    seeder_events.iter().for_each(|e| events.check(e));
}

#[test]
fn key_and_signing_commands_print_and_write_what_the_schemas_say() {
    let events = Schema::load("events.schema.json");
    let receipts = Schema::load("receipt.schema.json");
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "keys", "2MiB", "256KiB", 7);
    let manifest = artifact.manifest_path.to_str().unwrap();
    let keyring = root.join("keyring");
    let keyring = keyring.to_str().unwrap();
    let mut seen = Vec::new();
    let mut check = |args: &[&str], expected: &[&str]| {
        let mut args = args.to_vec();
        args.push("--json");
        let printed = lines_as_json(&ok(root, &args));
        assert_eq!(names(&printed), expected, "{args:?}");
        printed.iter().for_each(|e| events.check(e));
        seen.extend(printed.clone());
        printed
    };
    check(&["key", "new", "a.key"], &["key-created"]);
    check(&["key", "new", "b.key"], &["key-created"]);
    check(&["key", "show", "a.key.pub"], &["key"]);
    check(&["key", "show", "a.key"], &["key"]);
    check(
        &["sign", manifest, "--key", "a.key", "-o", "signed.manifest"],
        &["manifest-signed"],
    );
    let made = check(
        &[
            "manifest",
            artifact.slm.to_str().unwrap(),
            "--model-id",
            "keys",
            "--publisher-id",
            "acme",
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            "256KiB",
            // As the artifact's own manifest was made.
            "--chunk-scheme",
            "fixed-size-merkle-v0",
            "--sign",
            "a.key",
            "-o",
            "made.manifest",
        ],
        &["manifest"],
    );
    assert_eq!(made[0]["signed"], true);
    assert_eq!(
        std::fs::read(root.join("made.manifest")).unwrap(),
        std::fs::read(root.join("signed.manifest")).unwrap(),
        "manifest --sign writes what sign writes"
    );
    let verified = check(
        &[
            "verify",
            "signed.manifest",
            artifact.slm.to_str().unwrap(),
            "--receipt",
            "keys.receipt.json",
            "--keyring",
            keyring,
        ],
        &["signature", "verified"],
    );
    assert_eq!(verified[0]["status"], "signed");
    assert_eq!(verified[0]["trust"], "not-pinned");
    receipts.check(&read_json(&root.join("keys.receipt.json")));
    check(
        &["key", "pin", "acme", "a.key.pub", "--keyring", keyring],
        &["key-pinned"],
    );
    check(&["key", "list", "--keyring", keyring], &["key-pin"]);
    check(
        &[
            "key",
            "rotate",
            "--old",
            "a.key",
            "--new",
            "b.key.pub",
            "-o",
            "r.rotation",
        ],
        &["key-rotation"],
    );
    check(
        &["key", "accept-rotation", "r.rotation", "--keyring", keyring],
        &["rotation-accepted"],
    );
    check(
        &["key", "forget", "acme", "--keyring", keyring],
        &["key-forgotten"],
    );
    let forgotten = check(
        &["key", "forget", "acme", "--keyring", keyring],
        &["key-forgotten"],
    );
    assert!(forgotten[0]["key_id"].is_null());
    // A receipt of a pinned key matches too.
    check(
        &["key", "pin", "acme", "a.key.pub", "--keyring", keyring],
        &["key-pinned"],
    );
    let pinned = check(
        &[
            "verify",
            "signed.manifest",
            artifact.slm.to_str().unwrap(),
            "--receipt",
            "pinned.receipt.json",
            "--keyring",
            keyring,
        ],
        &["signature", "verified"],
    );
    assert_eq!(pinned[0]["trust"], "pinned");
    let receipt = read_json(&root.join("pinned.receipt.json"));
    receipts.check(&receipt);
    assert_eq!(receipt["signature"]["trust"], "pinned");
    // The receipt schema refuses a signed record without its key.
    let mut keyless = receipt.clone();
    keyless["signature"]
        .as_object_mut()
        .unwrap()
        .remove("publisher_key");
    assert!(!receipts.accepts(&keyless));
    let peer = format!("{}@127.0.0.1:4433", "a".repeat(52));
    let ticket = check(
        &["ticket", "new", "signed.manifest", "--peer", &peer],
        &["ticket"],
    );
    check(
        &["ticket", "show", ticket[0]["ticket"].as_str().unwrap()],
        &["ticket"],
    );
    assert!(seen.len() >= 16);
}
