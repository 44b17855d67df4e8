//! Helpers for tests that drive the `minimodel` binary: running commands,
//! preparing a fixture with its manifest, and seeders as child processes
//! that are killed when the test ends, passed or failed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use minimodel_swarm::platform;

/// How long a step may take before the test gives up on it: a guard
/// against a hang, not a figure under test, generous for a loaded machine.
pub const HANG: Duration = Duration::from_secs(300);

/// Runs the binary in `dir` and waits for it.
pub fn minimodel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minimodel"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// The exit code (a killed process fails the test).
pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

/// Asserts exit 0 and returns stdout.
pub fn ok(output: &Output) -> String {
    assert_eq!(
        code(output),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every stdout line parsed as JSON.
pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect()
}

/// Writes `NAME.slm` of `size` and its manifest `NAME.manifest` in `dir`.
pub fn prepare(dir: &Path, name: &str, size: &str, chunk_size: &str) {
    let slm = format!("{name}.slm");
    ok(&minimodel(
        dir,
        &["fixture", &slm, "--size", size, "--seed", "7"],
    ));
    let manifest = format!("{name}.manifest");
    ok(&minimodel(
        dir,
        &[
            "manifest",
            &slm,
            "--model-id",
            name,
            "--publisher-id",
            "acme",
            "--license-route",
            "https://example.org/license",
            "--evidence-route",
            "https://example.org/evidence",
            "--chunk-size",
            chunk_size,
            "-o",
            &manifest,
        ],
    ));
}

/// The `chunk-count` of manifest `NAME.manifest` in `dir`: cut at its
/// parts (the default), a fixture has a few more chunks than its size
/// over the chunk size.
pub fn chunk_count(dir: &Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join(format!("{name}.manifest"))).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("chunk-count: "))
        .expect("a manifest names its chunk count")
        .parse()
        .unwrap()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Running {
    pub child: Child,
    pub name: String,
}

impl Running {
    /// Kills it now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop as Ctrl-C does (SIGINT; a Ctrl-Break event on
    /// Windows).
    pub fn interrupt(&self) {
        platform::request_stop(&self.child, platform::StopRequest::Interrupt);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `minimodel seed MANIFEST FILE --listen 127.0.0.1:0 --yes --offer
/// OFFER extra...` in `dir` and waits for its offer file. Returns the
/// process and the offer's path.
pub fn seeder(
    dir: &Path,
    manifest: &str,
    file: &str,
    offer: &str,
    extra: &[&str],
) -> (Running, PathBuf) {
    let offer_path = dir.join(offer);
    let _ = std::fs::remove_file(&offer_path);
    let mut args = vec![
        "seed",
        manifest,
        file,
        "--listen",
        "127.0.0.1:0",
        "--yes",
        "--offer",
        offer,
    ];
    args.extend_from_slice(extra);
    // What it prints goes to OFFER.stdout beside the offer.
    let stdout = std::fs::File::create(dir.join(format!("{offer}.stdout")))
        .expect("a file for the seeder's output");
    let child = platform::stoppable(&mut Command::new(env!("CARGO_BIN_EXE_minimodel")))
        .current_dir(dir)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("the seeder starts");
    let mut running = Running {
        child,
        name: offer.to_owned(),
    };
    let deadline = Instant::now() + HANG;
    while !offer_path.exists() {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("seeder {offer} exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "seeder {offer} did not write its offer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.name = offer.to_owned();
    (running, offer_path)
}

/// Starts a command with piped stdout and returns it with a line reader.
pub fn spawn_with_stdout(
    dir: &Path,
    args: &[&str],
) -> (Running, BufReader<std::process::ChildStdout>) {
    let mut child = platform::stoppable(&mut Command::new(env!("CARGO_BIN_EXE_minimodel")))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the command starts");
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    (
        Running {
            child,
            name: args.first().copied().unwrap_or_default().to_owned(),
        },
        stdout,
    )
}

/// Reads JSON lines until one satisfies `found`; the lines read so far.
pub fn read_until(
    lines: &mut impl BufRead,
    mut found: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return seen;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let done = found(&value);
        seen.push(value);
        if done {
            return seen;
        }
    }
}

/// The receipt written for `model` in `dir`.
pub fn receipt(dir: &Path, model: &str) -> serde_json::Value {
    let bytes = std::fs::read(dir.join(format!("{model}.receipt.json"))).expect("a receipt");
    serde_json::from_slice(&bytes).expect("the receipt is JSON")
}
