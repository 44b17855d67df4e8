//! What a person sees, through the binary: under a pseudo-terminal (stderr
//! on a pty 120 columns wide) the progress line after a resume shows the
//! resumed bytes and a finite ETA and fits 80 columns; Ctrl-C (SIGINT)
//! exits 130 with exactly one resume hint; `-q` draws nothing. With stderr
//! piped, a status line every 5 s; `-q` prints nothing but errors.

mod resume_support;

use std::time::Instant;

use resume_support::{Artifact, Proc, Seeders, fetch_args};

/// On a terminal: a pseudo-terminal, Unix's own (scripts/windows-tests).
#[cfg(unix)]
mod on_terminal {
    use std::fs::File;
    use std::io::Read;
    use std::path::Path;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use super::resume_support::{Artifact, HANG, Seeders, StopRequest, bin, fetch_args, platform};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{Winsize, tcsetwinsize};

    /// A `minimodel` whose stderr is a pseudo-terminal of `columns` columns
    /// (stdout is piped): what it draws is collected from the pty's master.
    struct OnTerminal {
        child: Child,
        screen: Arc<Mutex<Vec<u8>>>,
        reader: Option<JoinHandle<()>>,
        stdout: Arc<Mutex<Vec<u8>>>,
        stdout_reader: Option<JoinHandle<()>>,
    }

    impl OnTerminal {
        fn spawn(dir: &Path, args: &[String], columns: u16) -> Self {
            let master =
                openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("a pseudo-terminal");
            // Not in the flags: macOS has no O_CLOEXEC for posix_openpt.
            rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC).unwrap();
            grantpt(&master).unwrap();
            unlockpt(&master).unwrap();
            let name = ptsname(&master, Vec::new()).unwrap();
            tcsetwinsize(
                &master,
                Winsize {
                    ws_row: 40,
                    ws_col: columns,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                },
            )
            .unwrap();
            let slave = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(name.to_str().unwrap())
                .expect("the pty's slave side");
            let mut child = Command::new(bin())
                .current_dir(dir)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(slave))
                .spawn()
                .expect("the binary starts");
            // The child holds the only slave now: its exit ends the reads.
            let screen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&screen);
            let mut master = File::from(master);
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // EIO once the last slave is closed.
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            let stdout = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&stdout);
            let mut pipe = child.stdout.take().unwrap();
            let stdout_reader = std::thread::spawn(move || {
                let _ = pipe.read_to_end(&mut sink.lock().unwrap());
            });
            Self {
                child,
                screen,
                reader: Some(reader),
                stdout,
                stdout_reader: Some(stdout_reader),
            }
        }

        /// What reached the terminal so far, as the lines a person saw: each
        /// redraw (after a carriage return) is a line of its own, escape
        /// sequences removed.
        fn seen(&self) -> Vec<String> {
            visible_lines(&self.screen.lock().unwrap())
        }

        /// Waits until `ready` holds for the lines seen; false if the process
        /// ended first.
        fn wait_for(&mut self, what: &str, ready: impl Fn(&[String]) -> bool) -> bool {
            let started = Instant::now();
            loop {
                if ready(&self.seen()) {
                    return true;
                }
                if self.child.try_wait().unwrap().is_some() {
                    self.join();
                    return ready(&self.seen());
                }
                assert!(
                    started.elapsed() < HANG,
                    "waited for {what}: {:?}",
                    self.seen()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn stop(&self, how: StopRequest) {
            platform::request_stop(&self.child, how);
        }

        fn wait(&mut self) -> ExitStatus {
            let started = Instant::now();
            let status = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status;
                }
                assert!(started.elapsed() < HANG, "still running: {:?}", self.seen());
                std::thread::sleep(Duration::from_millis(20));
            };
            self.join();
            status
        }

        fn join(&mut self) {
            for reader in [self.reader.take(), self.stdout_reader.take()]
                .into_iter()
                .flatten()
            {
                let _ = reader.join();
            }
        }

        fn stdout(&self) -> String {
            String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
        }
    }

    impl Drop for OnTerminal {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Text as a terminal shows it, one entry per redraw: split at carriage
    /// returns and newlines, CSI and other escape sequences removed, empty
    /// pieces dropped.
    fn visible_lines(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(bytes);
        let mut plain = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\u{1b}' {
                plain.push(c);
                continue;
            }
            // ESC [ params final, or ESC and one more character.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        }
        plain
            .split(['\r', '\n'])
            .map(|line| line.trim_end().to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// Lines that are fetch progress lines (`[===>  ]  42% ... eta ...`).
    fn progress_lines(lines: &[String]) -> Vec<&String> {
        lines
            .iter()
            .filter(|line| line.contains('%') && line.contains(" eta "))
            .collect()
    }

    /// The number before `/` in `... 9.8 MiB/24.0 MiB ...`, in MiB.
    fn verified_mib(line: &str) -> Option<f64> {
        let slash = line.find(" MiB/")?;
        let number = line[..slash].rsplit(' ').next()?;
        number.parse().ok()
    }

    #[test]
    fn after_a_resume_the_line_shows_the_resumed_bytes_a_finite_eta_and_fits_80_columns() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        // 24 MiB in 256 KiB chunks, 35 of them (8.75 MiB) verified before:
        // the rest at 2 MiB/s takes about 8 s.
        let artifact = Artifact::make(root, "art", "pty-resume", "24MiB", "256KiB", 31);
        let out = root.join("out");
        let resumed: Vec<u32> = (0..35).collect();
        artifact.partial(&out, &resumed, 1);
        let seeders = Seeders::start(root, &artifact, 1, "2MiB");
        let args = fetch_args(&artifact, &seeders, &out, &[]);

        let mut fetch = OnTerminal::spawn(root, &args, 120);
        let status = fetch.wait();
        let seen = fetch.seen();
        assert_eq!(
            status.code(),
            Some(0),
            "{seen:?}; stdout: {}",
            fetch.stdout()
        );
        let progress = progress_lines(&seen);
        assert!(progress.len() >= 3, "progress drawn: {seen:?}");
        for line in &seen {
            let columns = line.chars().count();
            assert!(columns <= 80, "{columns} columns: {line:?}");
        }
        // From the first line on, the resumed bytes count: never below them.
        for line in &progress {
            let verified = verified_mib(line).unwrap_or_else(|| panic!("{line}"));
            assert!(verified >= 8.7, "{line}");
            assert!(line.contains("this run"), "{line}");
            assert!(line.contains("1 peer"), "{line}");
            assert_eq!(line.matches("/s").count(), 1, "one rate: {line}");
        }
        // A finite ETA once a rate is known: seconds, not "--", not stuck at 0.
        let finite: Vec<&&String> = progress
            .iter()
            .filter(|line| {
                line.split(" eta ").nth(1).is_some_and(|eta| {
                    eta.starts_with(|c: char| c.is_ascii_digit()) && !eta.starts_with("0s")
                })
            })
            .collect();
        assert!(!finite.is_empty(), "a finite ETA: {progress:?}");
        // The summary has the average rate of this run.
        let stdout = fetch.stdout();
        assert!(stdout.contains("resumed 35 verified chunks"), "{stdout}");
        assert!(
            stdout.contains(" MiB at ") && stdout.contains("/s on average"),
            "{stdout}"
        );
    }

    #[test]
    fn ctrl_c_on_a_terminal_exits_130_with_one_resume_hint() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let artifact = Artifact::make(root, "art", "pty-sigint", "16MiB", "256KiB", 32);
        let seeders = Seeders::start(root, &artifact, 1, "1MiB");
        let out = root.join("out");
        let args = fetch_args(&artifact, &seeders, &out, &[]);
        let mut fetch = OnTerminal::spawn(root, &args, 100);
        let drawing = fetch.wait_for("the progress line", |seen| {
            progress_lines(seen)
                .iter()
                .any(|line| verified_mib(line).is_some_and(|mib| mib > 0.0))
        });
        assert!(drawing, "{:?}", fetch.seen());
        fetch.stop(StopRequest::Interrupt);
        let status = fetch.wait();
        let seen = fetch.seen();
        assert_eq!(status.code(), Some(130), "{seen:?}");
        let text = seen.join("\n");
        assert_eq!(text.matches("run the same command").count(), 1, "{text}");
        assert!(
            text.contains(
                "error: stopped before the download finished; every verified chunk is saved\nhint: run the same command again to resume"
            ),
            "{text}"
        );
        // Saved indeed: the state lists chunks.
        assert!(!artifact.files(&out).persisted().is_empty());
    }

    #[test]
    fn quiet_draws_nothing_on_a_terminal() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let artifact = Artifact::make(root, "art", "pty-quiet", "8MiB", "256KiB", 33);
        let seeders = Seeders::start(root, &artifact, 1, "4MiB");
        let out = root.join("out");
        let args = fetch_args(&artifact, &seeders, &out, &["-q"]);
        let mut fetch = OnTerminal::spawn(root, &args, 100);
        let status = fetch.wait();
        assert_eq!(status.code(), Some(0), "{:?}", fetch.seen());
        assert_eq!(
            fetch.seen(),
            Vec::<String>::new(),
            "nothing on the terminal"
        );
        assert_eq!(fetch.stdout(), "", "nothing on stdout");
        artifact.verify(root, &artifact.files(&out).artifact);
    }
}

#[test]
fn off_a_terminal_a_status_line_every_5_s_and_quiet_prints_only_errors() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // 12 MiB at 1 MiB/s: about 11 s, room for three status lines.
    let artifact = Artifact::make(root, "art", "piped", "12MiB", "256KiB", 34);
    let seeders = Seeders::start(root, &artifact, 1, "1MiB");
    let out = root.join("out");
    let started = Instant::now();
    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &out, &[]));
    let stdout = fetch.expect_exit(0);
    let elapsed = started.elapsed();
    let stderr = fetch.stderr();
    let status: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("progress: "))
        .collect();
    assert!(status.len() >= 2, "{stderr}");
    // Every 5 s, not at every report (twice a second).
    let most = elapsed.as_secs() / 5 + 1;
    assert!(
        status.len() as u64 <= most,
        "{} in {elapsed:?}: {stderr}",
        status.len()
    );
    for line in &status {
        assert!(line.contains(" eta ") && line.contains("1 peer"), "{line}");
    }
    // The first line waits until it can name a rate: in a log, where a
    // short fetch may write only this one, `-- B/s, eta --` says nothing.
    assert!(
        !status[0].contains("-- B/s") && !status[0].contains("eta --"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "plain text: {stderr:?}"
    );
    assert!(
        stdout.iter().any(|l| l.contains("/s on average")),
        "{stdout:?}"
    );

    // -q: a successful fetch prints nothing at all...
    let quiet_out = root.join("quiet");
    let mut quiet = Proc::spawn(root, &fetch_args(&artifact, &seeders, &quiet_out, &["-q"]));
    let stdout = quiet.expect_exit(0);
    assert_eq!(stdout, Vec::<String>::new());
    assert_eq!(quiet.stderr(), "");
    // ... and a failing one only the error and its hint.
    let bad = root.join("bad.slm");
    let mut bytes = artifact.bytes.clone();
    bytes[1 << 20] ^= 1;
    std::fs::write(&bad, bytes).unwrap();
    let mut verify = Proc::spawn(
        root,
        &[
            "verify",
            artifact.manifest_path.to_str().unwrap(),
            bad.to_str().unwrap(),
            "-q",
        ],
    );
    assert_eq!(verify.expect_exit(4), Vec::<String>::new());
    let stderr = verify.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
        "{stderr}"
    );
}
