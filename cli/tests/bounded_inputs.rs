//! Every command, given a trap for each file it reads, refuses it at once
//! with a clear error (exit 3), holding little memory: a link to
//! `/dev/zero` (a read to its end never ends), a FIFO nobody writes to (a
//! read waits forever) and a sparse file of 3 GB that takes no disk (a
//! read to its end takes 3 GB). Each command runs as a child of a small
//! Python program that reports the child's peak resident memory as the
//! kernel counted it (`getrusage(RUSAGE_CHILDREN)`) and kills it if it
//! hangs.
//!
//! FIFOs and `/dev/zero` are Unix's: on Windows these names do not exist
//! (scripts/windows-tests).

#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use minimodel_swarm::transport::KEY_FILE_NAME;
use support::{minimodel, ok};

/// Most resident memory a refusing command may take, in KiB.
const MOST_RSS_KIB: u64 = 64 * 1024;

/// A command that has not ended by then hangs: the test fails.
const HANG_SECS: u64 = 20;

/// Runs argv[2:], its stdout discarded and its stderr to argv[1]; prints
/// its exit code (or "hung") and its peak resident memory in KiB.
const MEASURE: &str = r#"
import resource, subprocess, sys
with open(sys.argv[1], "wb") as err:
    try:
        done = subprocess.run(sys.argv[3:], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=err,
                              timeout=float(sys.argv[2]))
        code = str(done.returncode)
    except subprocess.TimeoutExpired:
        code = "hung"
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"#;

/// What a child did: its exit code (`None`: it hung and was killed), its
/// peak memory (KiB), how long it took, what it said on stderr.
struct Ran {
    code: Option<i32>,
    max_rss_kib: u64,
    took: Duration,
    stderr: String,
}

/// Runs the binary in `dir` with `args`, measured.
fn run(dir: &Path, args: &[String]) -> Ran {
    let stderr_path = dir.join(".stderr");
    let started = Instant::now();
    let measured = Command::new(python())
        .current_dir(dir)
        .arg("-c")
        .arg(MEASURE)
        .arg(&stderr_path)
        .arg(HANG_SECS.to_string())
        .arg(env!("CARGO_BIN_EXE_minimodel"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs (scripts/test installs it)");
    let took = started.elapsed();
    let report = String::from_utf8_lossy(&measured.stdout);
    let mut words = report.split_whitespace();
    let (Some(code), Some(rss)) = (words.next(), words.next()) else {
        panic!(
            "the measuring program said nothing: {}",
            String::from_utf8_lossy(&measured.stderr)
        );
    };
    Ran {
        code: code.parse().ok(),
        max_rss_kib: rss.parse().expect("a number of KiB"),
        took,
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

fn python() -> String {
    std::env::var("PYTHON3").unwrap_or_else(|_| "python3".to_owned())
}

/// The three traps, made in `dir`: (name, path).
fn traps(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let zero = dir.join("zero-link");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let sparse = dir.join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    vec![
        ("/dev/zero", zero),
        ("a FIFO", fifo),
        ("3 GB sparse", sparse),
    ]
}

/// A field of a manifest's text.
fn field(manifest: &str, key: &str) -> String {
    manifest
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in the manifest"))
        .to_owned()
}

#[test]
fn every_command_refuses_a_trap_for_every_file_it_reads_at_once_and_in_little_memory() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    support::prepare(dir, "good", "1MiB", "256KiB");
    ok(&minimodel(dir, &["key", "new", "acme.key"]));
    ok(&minimodel(
        dir,
        &[
            "sign",
            "good.manifest",
            "--key",
            "acme.key",
            "-o",
            "signed.manifest",
        ],
    ));
    // An offer of the artifact (a peer that is not there), and a request
    // made of it by the command itself.
    let manifest = std::fs::read_to_string(dir.join("good.manifest")).unwrap();
    let offer = serde_json::json!({
        "format": "minimodel-peer-offer-v1",
        "model_id": "good",
        "artifact_bytes": field(&manifest, "artifact-bytes").parse::<u64>().unwrap(),
        "artifact_sha256": field(&manifest, "artifact-sha256"),
        "merkle_root": field(&manifest, "merkle-root"),
        "peer_id": "eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q",
        "addrs": ["127.0.0.1:9"],
    });
    std::fs::write(dir.join("good.offer.json"), offer.to_string()).unwrap();
    ok(&minimodel(
        dir,
        &["request", "good.offer.json", "-o", "good.request.json"],
    ));
    let public = std::fs::read_to_string(dir.join("acme.key.pub")).unwrap();
    let public_key = public
        .lines()
        .find(|line| line.starts_with("mmpk1"))
        .or_else(|| public.split_whitespace().find(|w| w.starts_with("mmpk1")))
        .expect("the public key file holds mmpk1...")
        .to_owned();
    let nowhere = "127.0.0.1:1";
    let peer_nowhere = "eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q@127.0.0.1:9";

    // Each command with TRAP where a file it reads goes; `slm` marks the
    // artifact itself, which is streamed (its size is the artifact's), so
    // a sparse file is no trap for it.
    let cases: Vec<(bool, Vec<&str>)> = vec![
        (false, vec!["verify", "TRAP", "good.slm"]),
        (true, vec!["verify", "good.manifest", "TRAP"]),
        (
            false,
            vec!["verify", "good.manifest", "good.slm", "--keyring", "TRAP"],
        ),
        (
            false,
            vec![
                "verify",
                "good.manifest",
                "good.slm",
                "--publisher-key",
                "TRAP",
            ],
        ),
        (false, vec!["catalog-entry", "TRAP"]),
        (
            false,
            vec!["catalog-entry", "good.manifest", "--keyring", "TRAP"],
        ),
        (
            true,
            vec![
                "manifest",
                "TRAP",
                "--model-id",
                "m",
                "--publisher-id",
                "p",
                "--license-route",
                "https://example.org/l",
                "--evidence-route",
                "https://example.org/e",
                "-o",
                "out.manifest",
            ],
        ),
        (
            false,
            vec![
                "manifest",
                "good.slm",
                "--model-id",
                "m",
                "--publisher-id",
                "p",
                "--license-route",
                "https://example.org/l",
                "--evidence-route",
                "https://example.org/e",
                "--sign",
                "TRAP",
                "-o",
                "out.manifest",
            ],
        ),
        (
            false,
            vec!["sign", "TRAP", "--key", "acme.key", "-o", "out.manifest"],
        ),
        (
            false,
            vec![
                "sign",
                "good.manifest",
                "--key",
                "TRAP",
                "-o",
                "out.manifest",
            ],
        ),
        (false, vec!["seed", "TRAP", "good.slm", "--yes"]),
        (true, vec!["seed", "good.manifest", "TRAP", "--yes"]),
        (
            false,
            vec![
                "seed",
                "good.manifest",
                "good.slm",
                "--keyring",
                "TRAP",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "seed",
                "good.manifest",
                "good.slm",
                "--identity",
                "IDENTITY",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "fetch",
                "TRAP",
                "--peer",
                peer_nowhere,
                "-o",
                "out",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "fetch",
                "good.manifest",
                "--offer",
                "TRAP",
                "-o",
                "out",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "fetch",
                "good.manifest",
                "--offer",
                "good.offer.json",
                "-o",
                "out",
                "--reuse",
                "good.slm",
                "--chunk-list",
                "TRAP",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "fetch",
                "good.manifest",
                "--offer",
                "good.offer.json",
                "-o",
                "out",
                "--keyring",
                "TRAP",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "fetch",
                "good.manifest",
                "--offer",
                "good.offer.json",
                "-o",
                "out",
                "--publisher-key",
                "TRAP",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "fetch",
                "good.manifest",
                "--offer",
                "good.offer.json",
                "-o",
                "out",
                "--identity",
                "IDENTITY",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "import-peer-request",
                "TRAP",
                "good.manifest",
                "out",
                "--yes",
            ],
        ),
        (
            false,
            vec![
                "import-peer-request",
                "good.request.json",
                "TRAP",
                "out",
                "--yes",
            ],
        ),
        (false, vec!["request", "TRAP"]),
        (false, vec!["ticket", "new", "TRAP", "--peer", peer_nowhere]),
        (
            false,
            vec!["ticket", "new", "good.manifest", "--offer", "TRAP"],
        ),
        (false, vec!["key", "show", "TRAP"]),
        (
            false,
            vec![
                "key",
                "rotate",
                "--old",
                "TRAP",
                "--new",
                &public_key,
                "-o",
                "rot.txt",
            ],
        ),
        (
            false,
            vec!["key", "accept-rotation", "TRAP", "--keyring", "keyring"],
        ),
        (
            false,
            vec!["key", "pin", "acme", "TRAP", "--keyring", "keyring"],
        ),
        (false, vec!["key", "list", "--keyring", "TRAP"]),
        (
            false,
            vec![
                "publish",
                "TRAP",
                "--key",
                "acme.key",
                "--peer",
                "eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q@127.0.0.1:9",
                "--channels",
                "channels",
                "--dht-bootstrap",
                nowhere,
            ],
        ),
        (
            false,
            vec![
                "publish",
                "signed.manifest",
                "--key",
                "TRAP",
                "--peer",
                "eaqseizeeutcokbjfivsyljof4ydcmrtgq2tmnzyhe5dwpb5hy7q@127.0.0.1:9",
                "--channels",
                "channels",
                "--dht-bootstrap",
                nowhere,
            ],
        ),
        (
            false,
            vec![
                "follow",
                "TRAP",
                "--model-id",
                "good",
                "-o",
                "followed",
                "--channels",
                "channels",
                "--dht-bootstrap",
                nowhere,
            ],
        ),
        (
            false,
            vec![
                "follow",
                &public_key,
                "--model-id",
                "good",
                "-o",
                "followed",
                "--keyring",
                "TRAP",
                "--channels",
                "channels",
                "--dht-bootstrap",
                nowhere,
            ],
        ),
        (
            false,
            vec![
                "companion",
                "fetch",
                "good.manifest",
                "--offer",
                "TRAP",
                "--library",
                "library",
            ],
        ),
        (
            false,
            vec![
                "companion",
                "fetch",
                "good.manifest",
                "--request",
                "TRAP",
                "--library",
                "library",
            ],
        ),
    ];

    let mut failures = Vec::new();
    let (mut slowest, mut largest) = (Duration::ZERO, 0u64);
    let mut runs = 0;
    for (n, (artifact, args)) in cases.iter().enumerate() {
        for (trap_name, trap) in traps_in(dir, n) {
            if *artifact && trap_name == "3 GB sparse" {
                continue;
            }
            // A peer's identity directory whose key file is the trap.
            let identity = dir.join(format!("identity-{n}-{}", trap_name.len()));
            std::fs::create_dir_all(&identity).unwrap();
            let trap = if args.contains(&"IDENTITY") {
                let key_file = identity.join(KEY_FILE_NAME);
                std::fs::rename(&trap, &key_file).unwrap();
                key_file
            } else {
                trap
            };
            let args: Vec<String> = args
                .iter()
                .map(|arg| match *arg {
                    "TRAP" => trap.display().to_string(),
                    "IDENTITY" => identity.display().to_string(),
                    other => other.to_owned(),
                })
                .collect();
            let ran = run(dir, &args);
            runs += 1;
            slowest = slowest.max(ran.took);
            largest = largest.max(ran.max_rss_kib);
            let said = ran.stderr.trim();
            if ran.code != Some(3)
                || ran.max_rss_kib > MOST_RSS_KIB
                || said.is_empty()
                || said.contains("panicked")
            {
                failures.push(format!(
                    "{} with {trap_name}: exit {:?}, {} KiB, {:?}: {said}",
                    args.join(" "),
                    ran.code,
                    ran.max_rss_kib,
                    ran.took
                ));
            }
        }
    }
    println!("{runs} runs: the slowest took {slowest:?}, the largest held {largest} KiB");
    assert!(
        failures.is_empty(),
        "{} of {runs} refused badly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Fresh traps for case `n`, in a directory of its own.
fn traps_in(dir: &Path, n: usize) -> Vec<(&'static str, PathBuf)> {
    let own = dir.join(format!("traps-{n}"));
    std::fs::create_dir_all(&own).unwrap();
    traps(&own)
}

/// Whoever can write into `follow`'s DIR may plant a receipt: a sparse
/// file of 3 GB (no disk taken) beside a version's `.slm` is refused by
/// its size, unread, before any lookup.
#[test]
fn follow_refuses_a_planted_sparse_receipt_at_once_and_in_little_memory() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    ok(&minimodel(dir, &["key", "new", "acme.key"]));
    let public = std::fs::read_to_string(dir.join("acme.key.pub")).unwrap();
    let public_key = public
        .split_whitespace()
        .find(|w| w.starts_with("mmpk1"))
        .expect("the public key file holds mmpk1...")
        .to_owned();
    let version = dir.join("followed").join("ab".repeat(32));
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("good.slm"), b"planted").unwrap();
    std::fs::File::create(version.join("good.receipt.json"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let args: Vec<String> = [
        "follow",
        &public_key,
        "--model-id",
        "good",
        "-o",
        "followed",
        "--keyring",
        "keyring",
        "--channels",
        "channels",
        "--dht-bootstrap",
        "127.0.0.1:1",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let ran = run(dir, &args);
    println!(
        "{:?}, {} KiB: {}",
        ran.took,
        ran.max_rss_kib,
        ran.stderr.trim()
    );
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(ran.stderr.contains("larger than"), "{}", ran.stderr);
    assert!(ran.max_rss_kib <= MOST_RSS_KIB, "{} KiB", ran.max_rss_kib);
}
