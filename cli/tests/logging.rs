//! Diagnostics through `tracing`, through the binary: quinn's own events
//! at `-vv` (and through `RUST_LOG`), not by default; what peers do at
//! `-v`, not by default; logs on stderr, never among `--json` events.

mod resume_support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use resume_support::{Artifact, HANG, Proc, Seeders, bin, fetch_args};

/// What quinn logs (at debug) when a datagram of an unknown QUIC version
/// is too short to be answered.
const QUINN_DEBUG: &str = "dropping short packet with unsupported version";

/// Starts `minimodel seed` with `extra` flags and `env`, and waits for its
/// offer; returns it and the address it listens on.
fn seeder(
    root: &Path,
    artifact: &Artifact,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, std::net::SocketAddr) {
    let offer: PathBuf = root.join(format!("{name}.offer.json"));
    let mut command = Command::new(bin());
    command.current_dir(root).env_remove("RUST_LOG").args([
        "seed",
        artifact.manifest_path.to_str().unwrap(),
        artifact.slm.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--yes",
        "--offer",
        offer.to_str().unwrap(),
    ]);
    command.args(extra);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut proc = Proc::spawn_group(&mut command);
    assert!(
        proc.wait_for("the offer", |_| offer.exists()),
        "{}",
        proc.stderr()
    );
    let offer: serde_json::Value = serde_json::from_slice(&std::fs::read(&offer).unwrap()).unwrap();
    let addr = offer["addrs"][0]
        .as_str()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("an address in the offer: {offer}"));
    (proc, addr)
}

/// A 100-byte QUIC long-header datagram of version 0x0a0a0a0a.
fn unknown_version_datagram() -> Vec<u8> {
    let mut packet = vec![0xc0, 0x0a, 0x0a, 0x0a, 0x0a, 8];
    packet.extend([1u8; 8]);
    packet.push(8);
    packet.extend([2u8; 8]);
    packet.resize(100, 0);
    packet
}

/// Sends the datagram, again every second, until `proc`'s stderr says
/// `what`; panics after [`HANG`].
fn poke_until(proc: &Proc, addr: std::net::SocketAddr, what: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    loop {
        socket.send_to(&unknown_version_datagram(), addr).unwrap();
        let resend = Instant::now() + Duration::from_secs(1);
        while Instant::now() < resend {
            if proc.stderr().contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            started.elapsed() < HANG,
            "{what:?} never came: {}",
            proc.stderr()
        );
    }
}

#[test]
fn quinn_speaks_at_vv_and_through_rust_log_but_not_by_default() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "logs", "1MiB", "64KiB", 41);

    let (verbose, addr) = seeder(root, &artifact, "vv", &["-vv"], &[]);
    poke_until(&verbose, addr, QUINN_DEBUG);
    let line = verbose
        .stderr()
        .lines()
        .find(|line| line.contains(QUINN_DEBUG))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("DEBUG") && line.contains("quinn_proto"),
        "{line}"
    );

    let (filtered, addr) = seeder(
        root,
        &artifact,
        "env",
        &[],
        &[("RUST_LOG", "quinn_proto=debug")],
    );
    poke_until(&filtered, addr, QUINN_DEBUG);

    // By default the same datagrams leave no trace. The seeder reads its
    // one socket in order: once a fetch through it has completed, the
    // datagrams sent before were read (and dropped), and once it has
    // stopped, all it wrote is in.
    let (mut quiet, addr) = seeder(root, &artifact, "default", &[], &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        socket.send_to(&unknown_version_datagram(), addr).unwrap();
    }
    let out = root.join("out");
    Proc::spawn(
        root,
        &[
            "fetch",
            artifact.manifest_path.to_str().unwrap(),
            "--offer",
            root.join("default.offer.json").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--yes",
        ],
    )
    .expect_exit(0);
    quiet.stop(resume_support::StopRequest::Terminate);
    quiet.expect_exit(0);
    assert!(!quiet.stderr().contains(QUINN_DEBUG), "{}", quiet.stderr());
    assert!(!quiet.stderr().contains("DEBUG"), "{}", quiet.stderr());
}

#[test]
fn peers_show_at_v_and_logs_never_reach_json_stdout() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "peers", "2MiB", "64KiB", 42);
    let seeders = Seeders::start(root, &artifact, 1, "1MiB");

    let plain = root.join("plain");
    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &plain, &[]));
    fetch.expect_exit(0);
    assert!(!fetch.stderr().contains("connected"), "{}", fetch.stderr());

    let verbose = root.join("verbose");
    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &verbose, &["-v"]));
    fetch.expect_exit(0);
    let stderr = fetch.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("INFO") && l.contains("connected (dialed, serving)")),
        "{stderr}"
    );

    let json = root.join("json");
    let mut fetch = Proc::spawn(
        root,
        &fetch_args(&artifact, &seeders, &json, &["-vv", "--json"]),
    );
    let stdout = fetch.expect_exit(0);
    for line in &stdout {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(value["event"].is_string(), "{line}");
    }
    assert!(fetch.stderr().contains("DEBUG"), "{}", fetch.stderr());
}
