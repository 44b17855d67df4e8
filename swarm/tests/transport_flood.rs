//! A dial-only endpoint holds no memory for anyone who floods it with
//! connection attempts.
//!
//! The endpoint under attack runs in a child process (this test binary run
//! again with `MINIMODEL_FLOOD_TARGET` set), which reports its own resident
//! memory (`VmRSS`). The parent measures it quiet, then sends 4,000 real
//! QUIC connection attempts (quinn clients, each a ClientHello in a
//! 1200-byte Initial, retransmitted until its handshake gives up), and
//! measures again: the dial-only endpoint must stay within 8 MiB of the
//! quiet figure. The same flood at an endpoint that has a server config and
//! no accept loop (what a non-serving fetch used to have) must grow by more
//! than that, which shows the measurement can see the leak.
//!
//! Its own harness (`harness = false` in `Cargo.toml`): the child must not
//! be a test of its own.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use minimodel_swarm::transport::{
    Identity, TransportTuning, bind_client_endpoint, bind_endpoint, connect_any,
};

const TARGET_ENV: &str = "MINIMODEL_FLOOD_TARGET";
const ATTEMPTS: usize = 4000;
/// Attempts in flight at once.
const CONCURRENT: usize = 1000;
/// How much the target's resident memory may grow.
const ALLOWED_KIB: u64 = 8 << 10;
/// The whole test, both floods included.
const DEADLINE: Duration = Duration::from_secs(180);

/// One check: `Err` says what went wrong.
type Test = fn() -> Result<(), String>;

#[derive(Clone, Copy, Debug)]
enum Target {
    /// `bind_client_endpoint`: what a node that does not listen has.
    DialOnly,
    /// `bind_endpoint` with nobody calling `accept`.
    ServerConfigNoAccept,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::DialOnly => "dial-only",
            Target::ServerConfigNoAccept => "server-config-no-accept",
        }
    }

    fn from_name(name: &str) -> Target {
        match name {
            "dial-only" => Target::DialOnly,
            "server-config-no-accept" => Target::ServerConfigNoAccept,
            other => panic!("unknown flood target {other:?}"),
        }
    }
}

fn main() {
    if let Ok(target) = std::env::var(TARGET_ENV) {
        run_target(Target::from_name(&target));
        return;
    }
    let tests: [(&str, Test); 2] = [
        (
            "a_dial_only_endpoint_holds_no_memory_for_a_flood",
            a_dial_only_endpoint_holds_no_memory_for_a_flood,
        ),
        (
            "an_endpoint_that_never_accepts_grows_under_the_same_flood",
            an_endpoint_that_never_accepts_grows_under_the_same_flood,
        ),
    ];
    // libtest's `--skip NAME` (with `--exact`, as scripts/wine-tests
    // passes it) leaves a test out; its summary line says how many ran.
    let args: Vec<String> = std::env::args().collect();
    let skipped: Vec<&str> = args
        .windows(2)
        .filter(|pair| pair[0] == "--skip")
        .map(|pair| pair[1].as_str())
        .collect();
    let started = std::time::Instant::now();
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    for (name, test) in tests {
        if skipped.contains(&name) {
            filtered += 1;
            continue;
        }
        let result = std::panic::catch_unwind(test)
            .unwrap_or_else(|panic| Err(format!("panicked: {panic:?}")));
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(error) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {error}");
            }
        }
    }
    println!(
        "test result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s",
        if failed == 0 { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn a_dial_only_endpoint_holds_no_memory_for_a_flood() -> Result<(), String> {
    let (quiet, flooded) = flood(Target::DialOnly)?;
    if flooded > quiet + ALLOWED_KIB {
        return Err(format!(
            "the dial-only endpoint grew from {quiet} KiB to {flooded} KiB under {ATTEMPTS} attempts (at most {ALLOWED_KIB} KiB allowed)"
        ));
    }
    Ok(())
}

fn an_endpoint_that_never_accepts_grows_under_the_same_flood() -> Result<(), String> {
    let (quiet, flooded) = flood(Target::ServerConfigNoAccept)?;
    if flooded <= quiet + ALLOWED_KIB {
        return Err(format!(
            "an endpoint with a server config and no accept loop grew only from {quiet} KiB to {flooded} KiB: the flood does not measure what it should"
        ));
    }
    Ok(())
}

/// Starts the target, measures it quiet, floods it, measures it again:
/// (quiet, flooded) VmRSS in KiB.
fn flood(target: Target) -> Result<(u64, u64), String> {
    let mut child = Target::spawn(target)?;
    let result = (|| {
        let port = child
            .read_line()?
            .parse::<u16>()
            .map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // One datagram, read once the endpoint's driver runs (and has its
        // buffers): the quiet figure is taken after that.
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.send_to(&[0], addr))
            .map_err(|e| e.to_string())?;
        drained(port)?;
        let quiet = child.rss()?;
        let started = Instant::now();
        let outcome = send_attempts(addr)?;
        // The target has taken in everything still on its way.
        drained(port)?;
        let flooded = child.rss()?;
        eprintln!(
            "{}: VmRSS {:.1} MiB quiet, {:.1} MiB after {ATTEMPTS} attempts in {:.1} s ({} connected)",
            target.name(),
            quiet as f64 / 1024.0,
            flooded as f64 / 1024.0,
            started.elapsed().as_secs_f64(),
            outcome,
        );
        if outcome > 0 {
            return Err(format!("{outcome} attempts completed a handshake"));
        }
        Ok((quiet, flooded))
    })();
    child.quit();
    result
}

/// Waits until the socket bound to `port` has read every datagram queued
/// for it (its receive queue in `/proc/net/udp` or `udp6` is empty, and
/// was seen empty twice in a row, a millisecond apart).
fn drained(port: u16) -> Result<(), String> {
    let started = Instant::now();
    let mut empty_before = false;
    loop {
        let queued = socket_queue(port)?;
        if queued == 0 && empty_before {
            return Ok(());
        }
        empty_before = queued == 0;
        if started.elapsed() > DEADLINE {
            return Err(format!(
                "the target's socket still holds {queued} bytes after {DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The bytes waiting in the receive queue of the UDP socket bound to
/// `port` on this host.
fn socket_queue(port: u16) -> Result<u64, String> {
    let wanted = format!(":{port:04X}");
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).map_err(|e| format!("{table}: {e}"))?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1).is_some_and(|local| local.ends_with(&wanted)) {
                let queues = fields.get(4).ok_or("no queues in the socket table")?;
                let (_, rx) = queues.split_once(':').ok_or("no receive queue")?;
                return u64::from_str_radix(rx, 16).map_err(|e| e.to_string());
            }
        }
    }
    Err(format!("no UDP socket on port {port}"))
}

/// Sends [`ATTEMPTS`] connection attempts from a few quinn clients, each
/// given up after a short handshake timeout. Returns how many connected.
fn send_attempts(target: SocketAddr) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            let tuning = TransportTuning {
                handshake_timeout: Duration::from_millis(1500),
                ..TransportTuning::default()
            };
            let identity = std::sync::Arc::new(Identity::generate().unwrap());
            let clients: Vec<quinn::Endpoint> = (0..8)
                .map(|_| bind_client_endpoint(&tuning).unwrap())
                .collect();
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
            let mut attempts = Vec::with_capacity(ATTEMPTS);
            for attempt in 0..ATTEMPTS {
                let permit = std::sync::Arc::clone(&slots).acquire_owned().await.unwrap();
                let client = clients[attempt % clients.len()].clone();
                let identity = std::sync::Arc::clone(&identity);
                let tuning = tuning.clone();
                attempts.push(tokio::spawn(async move {
                    let connected = connect_any(&client, target, &identity, &tuning)
                        .await
                        .is_ok();
                    drop(permit);
                    connected
                }));
            }
            let mut connected = 0;
            for attempt in attempts {
                connected += usize::from(attempt.await.unwrap());
            }
            for client in &clients {
                client.close(0u32.into(), b"done");
            }
            connected
        })
        .await
        .map_err(|_| format!("the flood took longer than {DEADLINE:?}"))
    })
}

/// The target's side: bind, print the port, then answer `rss` with VmRSS
/// in KiB until `quit` or the end of stdin.
fn run_target(target: Target) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tuning = TransportTuning::default();
    let endpoint = runtime.block_on(async {
        match target {
            Target::DialOnly => bind_client_endpoint(&tuning).unwrap(),
            Target::ServerConfigNoAccept => {
                let identity = Identity::generate().unwrap();
                bind_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), &identity, &tuning).unwrap()
            }
        }
    });
    let mut out = std::io::stdout();
    writeln!(out, "{}", endpoint.local_addr().unwrap().port()).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        match line.unwrap().trim() {
            "rss" => {
                writeln!(out, "{}", vm_rss_kib()).unwrap();
                out.flush().unwrap();
            }
            _ => break,
        }
    }
    drop(endpoint);
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

struct TargetProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Target {
    fn spawn(self) -> Result<TargetProcess, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(TARGET_ENV, self.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the target: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Ok(TargetProcess {
            child,
            stdin,
            stdout,
        })
    }
}

impl TargetProcess {
    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the target exited".to_owned()),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(error) => Err(error.to_string()),
        }
    }

    fn rss(&mut self) -> Result<u64, String> {
        writeln!(self.stdin, "rss").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.read_line()?.parse().map_err(|e| format!("VmRSS: {e}"))
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
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
