//! Shared by the `resume_*` tests: the `minimodel` binary as child
//! processes that die with the test (a guard kills them on drop, also when
//! an assertion fails), a fixture with its manifest, rate-limited seeders,
//! a seeded random number generator, and readers for the files a download
//! leaves behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use minimodel_swarm::platform::{self, StopRequest};
use minimodel_swarm::resume::{
    OpenedDownload, PartialDownload, PartialState, ResumeOptions, parse_state,
};
use minimodel_verifier::chunk::{ChunkData, ChunkIndex};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::{Manifest, Sha256Digest};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_minimodel");

/// The binary under test, through a link with another name: the tests
/// start seeders and fetches that must live until the test ends them,
/// and a `pkill minimodel` run meanwhile on a shared machine (to stop
/// some other seeder) would otherwise stop them too.
pub fn bin() -> &'static Path {
    static LINK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LINK.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resume-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join(format!("mm-under-test{}", std::env::consts::EXE_SUFFIX));
        if !links_to_bin(&link) {
            // Through a rename, so that test binaries running at once
            // never see a half-made link.
            let temp = dir.join(format!(".link-{}", std::process::id()));
            let _ = std::fs::remove_file(&temp);
            platform::link_program(Path::new(BIN), &temp).unwrap();
            std::fs::rename(&temp, &link).unwrap();
        }
        link
    })
}

/// Whether `link` is [`BIN`] under another name (a symbolic link to it, or
/// a hard link where symbolic links need a privilege).
fn links_to_bin(link: &Path) -> bool {
    if std::fs::read_link(link).ok().as_deref() == Some(Path::new(BIN)) {
        return true;
    }
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        a.len() == b.len() && a.modified().ok() == b.modified().ok()
    };
    match (std::fs::symlink_metadata(link), std::fs::metadata(BIN)) {
        (Ok(link), Ok(bin)) => !link.is_symlink() && same(&link, &bin),
        _ => false,
    }
}

/// The data directory of the commands a test runs in `dir`.
pub fn data_home(dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    // Absolute on this system: a Windows build gets the Unix path cargo
    // names (no drive), which `data_home` would not take as a place.
    std::path::absolute(
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("data-home")
            .join(format!("{:016x}", hasher.finish())),
    )
    .unwrap()
}

/// How long a step may take before the test gives up on it. Not a figure
/// under test: only a guard against a hang, generous for a loaded machine.
pub const HANG: Duration = Duration::from_secs(300);

/// A running `minimodel`, killed (SIGKILL) and reaped when dropped. Its
/// standard output and error are collected line by line as they come.
pub struct Proc {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// Started in a process group of its own ([`Proc::spawn_group`]).
    own_group: bool,
}

impl Proc {
    /// Starts `minimodel ARGS` in `dir`.
    /// Its data directory (`XDG_DATA_HOME`, `LOCALAPPDATA` on Windows: the
    /// default keyring) is one of the test's own, outside `dir`: a pin
    /// made at first use never reaches the user's keyring or another
    /// test's.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Proc {
        Self::spawn_command(
            Command::new(bin())
                .current_dir(dir)
                .env("XDG_DATA_HOME", data_home(dir))
                .env("LOCALAPPDATA", data_home(dir))
                .args(args),
        )
    }

    /// Starts `command` (a script, say) in a process group of its own, so
    /// that whatever it starts is killed with it. (The binary itself runs
    /// in the test's group on Unix: a Ctrl-C on the tests reaches it too.)
    pub fn spawn_group(command: &mut Command) -> Proc {
        let mut proc = Self::spawn_command(platform::own_group(command));
        proc.own_group = true;
        proc
    }

    fn spawn_command(command: &mut Command) -> Proc {
        let mut child = platform::stoppable(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the program starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let err_pipe = child.stderr.take().expect("stderr is piped");
        let lines = Arc::clone(&stdout);
        let text = Arc::clone(&stderr);
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out_pipe).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                let mut pipe = err_pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }),
        ];
        Proc {
            child,
            stdout,
            stderr,
            readers,
            status: None,
            own_group: false,
        }
    }

    /// The lines of standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The JSON objects on standard output so far (`--json`).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<Value> {
        self.events().into_iter().find(|e| e["event"] == name)
    }

    /// Asks it to stop as a user would: Ctrl-C (SIGINT) or a service
    /// manager's stop (SIGTERM); on Windows a Ctrl-Break event for both.
    /// The process may have ended already: nothing is sent then.
    pub fn stop(&self, how: StopRequest) {
        platform::request_stop(&self.child, how);
    }

    /// Sends a signal (Unix's own: SIGSTOP and SIGCONT have no Windows
    /// counterpart; a stop as a user asks for it is [`Proc::stop`]).
    #[cfg(unix)]
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        // The process may have ended already: nothing to signal then.
        let _ = rustix::process::kill_process(pid, signal);
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("the child can be polled");
        }
        self.status
    }

    /// Waits until `ready` holds for the events so far (true) or the
    /// process ends (false). Panics after [`HANG`].
    pub fn wait_for(&mut self, what: &str, mut ready: impl FnMut(&[Value]) -> bool) -> bool {
        let started = Instant::now();
        loop {
            if ready(&self.events()) {
                return true;
            }
            if self.try_exit().is_some() {
                self.join_readers();
                return ready(&self.events());
            }
            if started.elapsed() > HANG {
                panic!(
                    "waited {HANG:?} for {what}; stdout: {:?}; stderr: {}",
                    self.log(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sleeps `pause`, or less if the process ends first; whether it still
    /// runs.
    pub fn sleep_while_running(&mut self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if self.try_exit().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2).min(pause));
        }
        self.try_exit().is_none()
    }

    /// Kills it with SIGKILL and reaps it; its exit status (which says
    /// whether it had ended by itself first).
    pub fn kill9(&mut self) -> ExitStatus {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
        }
        self.wait()
    }

    /// Waits for it to end by itself; kills it and panics after [`HANG`].
    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.try_exit() {
                break status;
            }
            if started.elapsed() > HANG {
                let _ = self.child.kill();
                panic!(
                    "still running after {HANG:?}; stdout: {:?}; stderr: {}",
                    self.log(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.join_readers();
        status
    }

    /// Waits for it to end and checks its exit code; returns stdout.
    pub fn expect_exit(&mut self, code: i32) -> Vec<String> {
        let status = self.wait();
        assert_eq!(
            status.code(),
            Some(code),
            "{status}; stdout: {:?}; stderr: {}",
            self.log(),
            self.stderr()
        );
        self.stdout()
    }

    /// Standard output without the progress reports but the last one.
    pub fn log(&self) -> Vec<String> {
        let lines = self.stdout();
        let last_progress = lines
            .iter()
            .rposition(|l| l.contains("\"event\":\"progress\""));
        lines
            .into_iter()
            .enumerate()
            .filter(|(n, l)| !l.contains("\"event\":\"progress\"") || Some(*n) == last_progress)
            .map(|(_, l)| l)
            .collect()
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.own_group {
            // The whole group: a script's children too.
            platform::kill_group(&mut self.child);
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Seeders {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // A failed test: what the seeders said helps to find out why (a
        // seeder stopped from outside says goodbye to its peers and ends
        // within a second or two: give it the time to show).
        std::thread::sleep(Duration::from_secs(2));
        for (n, proc) in self.procs.iter_mut().enumerate() {
            let status = proc.try_exit();
            let lines = proc.stdout();
            let last_serving = lines
                .iter()
                .rposition(|l| l.contains("\"event\":\"serving\""));
            let said: Vec<String> = lines
                .into_iter()
                .enumerate()
                .filter(|(n, l)| !l.contains("\"event\":\"serving\"") || Some(*n) == last_serving)
                .map(|(_, l)| l)
                .collect();
            eprintln!(
                "seeder {n} ({status:?}): {said:?}; stderr: {}",
                proc.stderr()
            );
        }
    }
}

/// Runs `minimodel ARGS` in `dir` to its end.
pub fn run<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> (i32, Vec<String>, String) {
    let mut proc = Proc::spawn(dir, args);
    let status = proc.wait();
    (
        status.code().expect("ended by itself, not by a signal"),
        proc.stdout(),
        proc.stderr(),
    )
}

/// Runs `minimodel ARGS` in `dir` and expects exit 0; returns stdout.
pub fn ok<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Vec<String> {
    let (code, stdout, stderr) = run(dir, args);
    assert_eq!(code, 0, "stdout: {stdout:?}; stderr: {stderr}");
    stdout
}

/// A fixture `.slm`, its manifest, and its bytes.
pub struct Artifact {
    pub model_id: String,
    pub slm: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub chunk_size: u64,
}

impl Artifact {
    /// Writes `NAME.slm` (`size` like `48MiB`, from `seed`) and
    /// `NAME.manifest` for model `model_id` in chunks of `chunk` into
    /// `dir`, through the binary.
    pub fn make(
        dir: &Path,
        name: &str,
        model_id: &str,
        size: &str,
        chunk: &str,
        seed: u64,
    ) -> Self {
        // Fixed-size chunks: the tests open, damage and count chunks at
        // multiples of the chunk size.
        let fixed = ["--chunk-scheme", "fixed-size-merkle-v0"];
        Self::make_with(dir, name, model_id, size, chunk, seed, &fixed)
    }

    /// [`Self::make`], with `extra` arguments to `manifest` (such as
    /// `--chunk-scheme slm-parts-merkle-v0`) instead of its fixed-size
    /// chunks.
    pub fn make_with(
        dir: &Path,
        name: &str,
        model_id: &str,
        size: &str,
        chunk: &str,
        seed: u64,
        extra: &[&str],
    ) -> Self {
        let slm = dir.join(format!("{name}.slm"));
        let manifest_path = dir.join(format!("{name}.manifest"));
        let seed = seed.to_string();
        ok(
            dir,
            &[
                "fixture",
                slm.to_str().unwrap(),
                "--size",
                size,
                "--seed",
                &seed,
            ],
        );
        ok(
            dir,
            &[
                "manifest",
                slm.to_str().unwrap(),
                "--model-id",
                model_id,
                "--publisher-id",
                "acme",
                "--license-route",
                "https://example.org/license",
                "--evidence-route",
                "https://example.org/evidence",
                "--chunk-size",
                chunk,
                "-o",
                manifest_path.to_str().unwrap(),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        let manifest = Manifest::parse_bytes(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let bytes = std::fs::read(&slm).unwrap();
        Self {
            model_id: model_id.to_owned(),
            slm,
            manifest_path,
            chunk_size: u64::from(manifest.chunks.chunk_size),
            manifest,
            bytes,
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn chunk_count(&self) -> u32 {
        self.manifest.chunks.chunk_count as u32
    }

    /// The byte range of chunk `index`.
    pub fn range(&self, index: u32) -> std::ops::Range<usize> {
        let start = index as usize * self.chunk_size as usize;
        start..(start + self.chunk_size as usize).min(self.bytes.len())
    }

    /// SHA-256 of the manifest file.
    pub fn manifest_sha256(&self) -> Sha256Digest {
        Sha256Digest::of(&std::fs::read(&self.manifest_path).unwrap())
    }

    /// A partial download in `dir` made through the library: the chunks
    /// `chunks` written and recorded, a checkpoint after each of
    /// `checkpoints` groups of them (so the state has a previous
    /// generation from the second group on).
    pub fn partial(&self, dir: &Path, chunks: &[u32], checkpoints: usize) {
        let opened = PartialDownload::open(
            dir,
            &self.manifest,
            self.manifest_sha256(),
            &ResumeOptions::default(),
            &|_| {},
        )
        .unwrap();
        let OpenedDownload::Partial(download, _) = opened else {
            panic!("{} holds a complete download", dir.display());
        };
        let hashes = (0..self.chunk_count())
            .map(|i| Sha256Digest::of(&self.bytes[self.range(i)]))
            .collect();
        let tree = MerkleTree::from_chunk_hashes(hashes).unwrap();
        let verifier = download.verifier();
        let group = chunks.len().div_ceil(checkpoints.max(1)).max(1);
        for part in chunks.chunks(group) {
            for &index in part {
                let proof = tree.proof(index).unwrap();
                let data = ChunkData::from(self.bytes[self.range(index)].to_vec());
                let chunk = verifier.verify(ChunkIndex(index), data, &proof).unwrap();
                download.store_verified(&chunk, &proof).unwrap();
            }
            download.checkpoint().unwrap();
        }
    }

    /// Bytes of the chunks `chunks`.
    pub fn bytes_of<'a>(&self, chunks: impl IntoIterator<Item = &'a u32>) -> u64 {
        chunks
            .into_iter()
            .map(|&chunk| self.range(chunk).len() as u64)
            .sum()
    }

    /// The files of its download in `dir`.
    pub fn files(&self, dir: &Path) -> DownloadFiles {
        let id = &self.model_id;
        DownloadFiles {
            part: dir.join(format!("{id}.slm.part")),
            state: dir.join(format!("{id}.slm.state")),
            previous: dir.join(format!("{id}.slm.state.prev")),
            artifact: dir.join(format!("{id}.slm")),
            receipt: dir.join(format!("{id}.receipt.json")),
        }
    }

    /// Chunks whose bytes in `file` equal the artifact's.
    pub fn good_chunks(&self, file: &Path) -> Vec<u32> {
        let bytes = std::fs::read(file).unwrap();
        (0..self.chunk_count())
            .filter(|&i| bytes.get(self.range(i)) == Some(&self.bytes[self.range(i)]))
            .collect()
    }

    /// `minimodel verify` of `file` against this manifest passes (the
    /// receipt goes to a scratch place, not next to the file).
    pub fn verify(&self, dir: &Path, file: &Path) {
        let receipt = dir.join("verify-check.receipt.json");
        ok(
            dir,
            &[
                "verify",
                self.manifest_path.to_str().unwrap(),
                file.to_str().unwrap(),
                "--receipt",
                receipt.to_str().unwrap(),
            ],
        );
        std::fs::remove_file(receipt).unwrap();
    }
}

/// Where a download's files are.
pub struct DownloadFiles {
    pub part: PathBuf,
    pub state: PathBuf,
    pub previous: PathBuf,
    pub artifact: PathBuf,
    pub receipt: PathBuf,
}

impl DownloadFiles {
    /// The state a resume would start from: the current one if usable,
    /// else the previous generation.
    pub fn usable_state(&self) -> Option<PartialState> {
        [&self.state, &self.previous]
            .into_iter()
            .find_map(|path| parse_state(&std::fs::read(path).ok()?).ok())
    }

    /// The chunks the usable state lists.
    pub fn persisted(&self) -> Vec<u32> {
        self.usable_state()
            .map(|state| {
                state
                    .knowledge
                    .verified()
                    .iter_ones()
                    .map(|c| c.0)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Seeders of one artifact, each rate-limited, killed with the test.
pub struct Seeders {
    pub procs: Vec<Proc>,
    pub offers: Vec<PathBuf>,
}

impl Seeders {
    /// Starts `count` seeders of `artifact` on 127.0.0.1, each capped at
    /// `rate` (like `4MiB`), and waits for their offers.
    pub fn start(dir: &Path, artifact: &Artifact, count: usize, rate: &str) -> Self {
        let mut procs = Vec::new();
        let mut offers = Vec::new();
        for n in 0..count {
            let offer = dir.join(format!("{}-seeder-{n}.offer.json", artifact.model_id));
            // An earlier seeder's offer of the same name is not this one's.
            let _ = std::fs::remove_file(&offer);
            procs.push(Proc::spawn(
                dir,
                &[
                    "seed",
                    artifact.manifest_path.to_str().unwrap(),
                    artifact.slm.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                    "--max-upload",
                    rate,
                    "--yes",
                    "--json",
                    "--offer",
                    offer.to_str().unwrap(),
                ],
            ));
            offers.push(offer);
        }
        for (proc, offer) in procs.iter_mut().zip(&offers) {
            let written = proc.wait_for("the seeder's offer", |_| offer.exists());
            assert!(written, "the seeder ended: {}", proc.stderr());
        }
        Self { procs, offers }
    }

    /// `--offer FILE` for each seeder.
    pub fn offer_args(&self) -> Vec<String> {
        self.offers
            .iter()
            .flat_map(|offer| ["--offer".to_owned(), offer.to_str().unwrap().to_owned()])
            .collect()
    }

    /// Bytes the seeders uploaded over their connections to each of
    /// `peers`, once every seeder that a peer connected to has seen it
    /// leave (a killed peer leaves at the idle timeout).
    pub fn uploaded_to(&mut self, peers: &[String]) -> Vec<u64> {
        let mut totals = vec![0; peers.len()];
        for proc in &mut self.procs {
            proc.wait_for("every connection to end", |events| {
                let named = |kind: &str, peer: &str| {
                    events
                        .iter()
                        .any(|e| e["event"] == kind && e["peer"].as_str() == Some(peer))
                };
                peers
                    .iter()
                    .all(|p| !named("peer-connected", p) || named("peer-disconnected", p))
            });
            for event in proc.events() {
                if event["event"] != "peer-disconnected" {
                    continue;
                }
                let Some(index) = peers.iter().position(|p| event["peer"].as_str() == Some(p))
                else {
                    continue;
                };
                totals[index] += event["uploaded_bytes"].as_u64().unwrap_or(0);
            }
        }
        totals
    }
}

/// A fresh peer identity in `dir`, for `--identity dir`; its peer id.
pub fn identity(dir: &Path) -> String {
    minimodel_swarm::transport::Identity::load_or_generate(dir)
        .unwrap()
        .peer_id()
        .to_string()
}

/// The arguments of `minimodel fetch` from `seeders` into `out`, with
/// `--json` and consent, plus `extra`.
pub fn fetch_args(
    artifact: &Artifact,
    seeders: &Seeders,
    out: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "fetch".to_owned(),
        artifact.manifest_path.to_str().unwrap().to_owned(),
    ];
    args.extend(seeders.offer_args());
    args.extend([
        "-o".to_owned(),
        out.to_str().unwrap().to_owned(),
        "--yes".to_owned(),
    ]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// The verified bytes of the newest progress event.
pub fn progress_bytes(events: &[Value]) -> Option<u64> {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "progress")
        .and_then(|e| e["verified_bytes"].as_u64())
}

/// SplitMix64: a small seeded generator, so a failing run can be repeated.
pub use minimodel_swarm::picker::SplitMix64 as Rng;

/// A pause of up to `max`.
pub fn random_pause(rng: &mut Rng, max: Duration) -> Duration {
    Duration::from_micros(rng.below(max.as_micros() as u64 + 1))
}

/// Overwrites `len` bytes of `path` at `offset` with `byte`.
pub fn scribble(path: &Path, offset: u64, len: usize, byte: u8) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    platform::write_all_at(&file, &vec![byte; len], offset).unwrap();
}

/// Every file in `dir` with its bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// Reads a number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
