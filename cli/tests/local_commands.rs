//! The local commands through the binary: fixture, manifest, verify,
//! catalog-entry, with their exit codes and JSON output.

use std::path::Path;
use std::process::{Command, Output};

/// How long a step may take before the test gives up on it: a guard
/// against a hang, not a figure under test (used by the Unix-only test).
#[cfg(unix)]
const HANG: std::time::Duration = std::time::Duration::from_secs(300);

fn minimodel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minimodel"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect()
}

const ROUTES: [&str; 4] = [
    "--license-route",
    "https://example.org/license",
    "--evidence-route",
    "https://example.org/evidence",
];

/// A fixture and its manifest in a fresh directory.
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = minimodel(
        dir.path(),
        &["fixture", "m.slm", "--size", "3MiB", "--seed", "5"],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let out = minimodel(dir.path(), &manifest_args("m.manifest"));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

#[test]
fn fixture_manifest_verify_and_catalog_entry_work_together() {
    let dir = prepared();
    assert_eq!(
        std::fs::metadata(dir.path().join("m.slm")).unwrap().len(),
        3 << 20
    );
    let manifest = std::fs::read_to_string(dir.path().join("m.manifest")).unwrap();
    assert!(
        manifest
            .contains("chunk-scheme: slm-parts-merkle-v0\nchunk-size: 262144\nchunk-count: 19\n"),
        "{manifest}"
    );

    let out = minimodel(dir.path(), &["verify", "m.manifest", "m.slm", "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let events = json_lines(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "signature");
    assert_eq!(events[0]["status"], "unsigned");
    assert_eq!(events[1]["event"], "verified");
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tiny.receipt.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["format"], "minimodel-receipt-v0");
    assert_eq!(receipt["chunk_count"], 19);
    assert_eq!(receipt["license_route"], "https://example.org/license");
    assert_eq!(
        receipt["signature"],
        serde_json::json!({"status": "unsigned"})
    );

    let out = minimodel(dir.path(), &["catalog-entry", "m.manifest", "--json"]);
    assert_eq!(code(&out), 0);
    let entry = &json_lines(&out)[0];
    assert_eq!(entry["format"], "minimodel-catalog-entry-v1");
    assert_eq!(
        entry["signature"],
        serde_json::json!({"status": "unsigned"})
    );
    assert_eq!(entry["routes"]["license"], "https://example.org/license");
    let text = entry.to_string();
    assert!(
        !text.contains("m.slm") && !text.contains("url"),
        "no byte route: {text}"
    );
}

#[test]
fn the_same_seed_gives_the_same_manifest() {
    let a = prepared();
    let b = prepared();
    let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join("m.manifest")).unwrap();
    assert_eq!(read(&a), read(&b));
}

#[test]
fn a_corrupted_file_fails_with_exit_4_and_no_receipt() {
    let dir = prepared();
    let path = dir.path().join("m.slm");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2_000_000] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let out = minimodel(dir.path(), &["verify", "m.manifest", "m.slm"]);
    assert_eq!(code(&out), 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("merkle-root differs"), "{stderr}");
    assert!(!dir.path().join("tiny.receipt.json").exists());
}

#[test]
fn a_malformed_manifest_is_exit_3_and_names_the_line() {
    let dir = prepared();
    let text = std::fs::read_to_string(dir.path().join("m.manifest")).unwrap();
    std::fs::write(
        dir.path().join("bad.manifest"),
        // Cut at its parts (the default), 19 chunks; fewer than 3 MiB in
        // chunks of 256 KiB at most can be is no geometry.
        text.replace("chunk-count: 19", "chunk-count: 11"),
    )
    .unwrap();
    let out = minimodel(dir.path(), &["verify", "bad.manifest", "m.slm", "--json"]);
    assert_eq!(code(&out), 3);
    let error = &json_lines(&out)[0];
    assert_eq!(error["event"], "error");
    assert_eq!(error["exit_code"], 3);
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("line ") && message.contains("chunk-count"),
        "{message}"
    );
}

#[test]
fn fixture_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.slm");
    std::fs::write(&path, "keep me").unwrap();
    let out = minimodel(dir.path(), &["fixture", "x.slm", "--size", "64KiB"]);
    assert_eq!(code(&out), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("x.slm already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    assert!(!dir.path().join("x.slm.partial").exists());

    let out = minimodel(
        dir.path(),
        &["fixture", "x.slm", "--size", "64KiB", "--force"],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 << 10);
}

#[test]
fn a_too_small_fixture_size_is_echoed_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = minimodel(dir.path(), &["fixture", "x.slm", "--size", "1KiB"]);
    assert_eq!(code(&out), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--size 1 KiB is too small: a fixture needs at least 16 KiB"),
        "{stderr}"
    );
}

#[test]
fn sizes_take_any_case_and_an_optional_space() {
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [
        ("a.slm", "64kib"),
        ("b.slm", "64 KiB"),
        ("c.slm", "0.0625MiB"),
    ] {
        let out = minimodel(dir.path(), &["fixture", name, "--size", size]);
        assert_eq!(
            code(&out),
            0,
            "{size}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(name)).unwrap().len(),
            64 << 10,
            "{size}"
        );
    }
}

#[test]
fn a_mistyped_peer_id_is_a_usage_error_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let typo = format!("{}b@127.0.0.1:4433", "a".repeat(51));
    let out = minimodel(
        dir.path(),
        &["fetch", "m.manifest", "--peer", &typo, "-o", "d", "--yes"],
    );
    assert_eq!(code(&out), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--peer <PEER_ID@HOST:PORT>': not a peer id: it ends in 'b', but every peer id ends in 'a' or 'q'"),
        "{stderr}"
    );
    let out = minimodel(
        dir.path(),
        &[
            "fetch",
            "m.manifest",
            "--peer",
            "abc@127.0.0.1:4433",
            "-o",
            "d",
        ],
    );
    assert_eq!(code(&out), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "not a peer id: expected 52 base32 characters (a-z, 2-7), found 3 characters"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("d").exists());
}

#[test]
fn usage_errors_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        code(&minimodel(
            dir.path(),
            &["fixture", "x.slm", "--size", "12 bananas"]
        )),
        2
    );
    assert_eq!(
        code(&minimodel(
            dir.path(),
            &["fixture", "x.slm", "--size", "100"]
        )),
        2
    );
    assert_eq!(code(&minimodel(dir.path(), &["no-such-command"])), 2);
    assert_eq!(code(&minimodel(dir.path(), &["--help"])), 0);
}

/// What `args` print on standard output, asserting they succeed.
fn printed_by(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = minimodel(dir.path(), args);
    assert_eq!(code(&output), 0, "{args:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_says_what_the_program_does_and_its_exit_codes() {
    let printed = printed_by(&["--help"]);
    assert!(
        printed.starts_with("Move MiniModel .slm artifacts between consenting peers"),
        "{printed}"
    );
    assert!(printed.contains("Exit codes: 0 success"), "{printed}");
    assert!(printed.contains("130 interrupted"), "{printed}");
}

#[test]
fn the_version_says_which_build_it_is() {
    let printed = printed_by(&["--version"]);
    let expected = format!("minimodel {}", env!("CARGO_PKG_VERSION"));
    // The binary is built in the profile this test is: with debug
    // assertions in the dev and test profiles, without in release.
    let build = if cfg!(debug_assertions) {
        " (debug build)"
    } else {
        ""
    };
    assert_eq!(
        printed.trim_end(),
        format!("{expected}{build}"),
        "{printed}"
    );
}

#[test]
fn byte_routes_and_plain_http_are_refused() {
    let dir = prepared();
    let byte_route = [
        "manifest",
        "m.slm",
        "--model-id",
        "tiny",
        "--publisher-id",
        "acme",
        "--license-route",
        "https://huggingface.co/org/model/resolve/main/model.slm",
        "--evidence-route",
        "https://example.org/evidence",
    ];
    let out = minimodel(dir.path(), &byte_route);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("seeding"));
    let mut http = byte_route;
    http[7] = "http://example.org/license";
    assert_eq!(code(&minimodel(dir.path(), &http)), 2);
}

/// A file named on the command line that is not there is input that
/// cannot be used, the `.slm` as the manifest: exit 3, not the I/O
/// failure (1) of a disk that fails while a file is read.
#[test]
fn a_missing_input_file_is_invalid_input() {
    let dir = prepared();
    let out = minimodel(dir.path(), &["verify", "m.manifest", "absent.slm"]);
    assert_eq!(code(&out), 3);
    let out = minimodel(dir.path(), &["verify", "absent.manifest", "m.slm"]);
    assert_eq!(code(&out), 3);
}

/// `path`'s bytes, to show a refused command left them as they were.
fn bytes(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// `manifest m.slm` as `prepared` runs it, written to `output`.
fn manifest_args(output: &str) -> Vec<&str> {
    let mut args = vec![
        "manifest",
        "m.slm",
        "--model-id",
        "tiny",
        "--publisher-id",
        "acme",
    ];
    args.extend(ROUTES);
    args.extend(["--chunk-size", "256KiB", "-o", output]);
    args
}

/// Exit 3, the file named as in the way, and the file unchanged.
fn refused(dir: &Path, args: &[&str], name: &str) {
    let before = bytes(dir, name);
    let out = minimodel(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 3, "{args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("{name} holds")) && stderr.contains("same kind of document"),
        "{args:?}: {stderr}"
    );
    assert_eq!(bytes(dir, name), before, "{args:?} changed {name}");
}

#[test]
fn an_output_never_replaces_a_file_of_another_kind() {
    let dir = prepared();
    let d = dir.path();
    let out = minimodel(d, &["key", "new", "acme.key"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(d.join("notes.txt"), "my notes\n").unwrap();

    // The model, the manifest, the secret key and a file of the user's.
    refused(d, &manifest_args("m.slm"), "m.slm");
    refused(d, &manifest_args("notes.txt"), "notes.txt");
    refused(
        d,
        &["sign", "m.manifest", "--key", "acme.key", "-o", "acme.key"],
        "acme.key",
    );
    refused(
        d,
        &["verify", "m.manifest", "m.slm", "--receipt", "m.manifest"],
        "m.manifest",
    );
    refused(
        d,
        &["verify", "m.manifest", "m.slm", "--receipt", "m.slm"],
        "m.slm",
    );
    refused(
        d,
        &[
            "seed",
            "m.manifest",
            "m.slm",
            "--listen",
            "127.0.0.1:0",
            "--no-port-mapping",
            "--offer",
            "m.slm",
            "--yes",
        ],
        "m.slm",
    );

    // The same kind is replaced, as a command run again does.
    let out = minimodel(d, &manifest_args("m.manifest"));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    for _ in 0..2 {
        let out = minimodel(d, &["verify", "m.manifest", "m.slm", "--receipt", "r.json"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = minimodel(
        d,
        &[
            "sign",
            "m.manifest",
            "--key",
            "acme.key",
            "-o",
            "m.manifest",
        ],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&bytes(d, "m.manifest")).contains("minimodel-manifest-v1"));
    // An unsigned manifest never replaces a signed one.
    refused(d, &manifest_args("m.manifest"), "m.manifest");
    // Nor is the chunk list written when the manifest's path is refused.
    let mut args = manifest_args("m.slm");
    args.extend([
        "--chunk-list-out",
        "m.chunks",
        "--chunk-list-route",
        "https://example.org/m.chunks",
    ]);
    refused(d, &args, "m.slm");
    assert!(!d.join("m.chunks").exists());
}

/// A fixture larger than the free space is refused before a byte is
/// written: the disk would fill up minutes later with the same error.
#[test]
fn a_fixture_larger_than_the_free_space_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Larger than any disk this runs on: 1 PiB.
    let out = minimodel(dir.path(), &["fixture", "huge.slm", "--size", "1024TiB"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("huge.slm needs 1024.0 TiB"), "{stderr}");
    assert!(stderr.contains("free"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// SIGSTOP, SIGINT and SIGCONT in a row: Unix's own (scripts/windows-tests).
#[cfg(unix)]
#[test]
fn a_fixture_stopped_half_way_leaves_nothing() {
    // A new file, then --force over a file already there: the old one is
    // kept as it was, and the message says so.
    for replacing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let old = b"the file that was there";
        // 2 GiB: seconds of writing on a disk, and free space on most.
        let mut args = vec!["fixture", "big.slm", "--size", "2GiB"];
        if replacing {
            std::fs::write(dir.path().join("big.slm"), old).unwrap();
            args.push("--force");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_minimodel"))
            .current_dir(dir.path())
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // Until its temporary file is there, growing.
        let started = std::time::Instant::now();
        loop {
            let growing = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .any(|entry| {
                    entry.file_name() != "big.slm"
                        && entry.metadata().is_ok_and(|meta| meta.len() > 0)
                });
            if growing {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
                    .unwrap();
                panic!("the fixture ended before it wrote anything ({status}): {stderr}");
            }
            assert!(started.elapsed() < HANG, "the fixture never began writing");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Stopped at once (it cannot finish meanwhile, however busy the
        // machine), given its SIGINT, and let go: it takes the signal
        // half way.
        let pid = rustix::process::Pid::from_child(&child);
        use rustix::process::{Signal, kill_process};
        kill_process(pid, Signal::STOP).unwrap();
        kill_process(pid, Signal::INT).unwrap();
        kill_process(pid, Signal::CONT).unwrap();
        // A stop that did not take would write on: it is killed after
        // the hang guard.
        let stopping = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if stopping.elapsed() > HANG {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the fixture went on writing after SIGINT");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        if replacing {
            assert!(
                stderr.contains("the file that was there is kept as it was"),
                "{stderr}"
            );
            assert_eq!(left, ["big.slm"]);
            assert_eq!(std::fs::read(dir.path().join("big.slm")).unwrap(), old);
        } else {
            assert!(stderr.contains("nothing is left of it"), "{stderr}");
            assert!(left.is_empty(), "{left:?}");
        }
    }
}

#[test]
fn a_full_stdout_or_stderr_loses_lines_but_never_panics() {
    let dir = prepared();
    let full = || {
        std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for args in [
        &["catalog-entry", "m.manifest"][..],
        &["verify", "m.manifest", "m.slm"][..],
        &[
            "manifest",
            "m.slm",
            "--model-id",
            "m",
            "--publisher-id",
            "p",
            ROUTES[0],
            ROUTES[1],
            ROUTES[2],
            ROUTES[3],
        ][..],
    ] {
        for on_stdout in [true, false] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_minimodel"));
            command.current_dir(dir.path()).args(args);
            if on_stdout {
                command.stdout(full());
            } else {
                command.stderr(full());
            }
            let status = command.status().unwrap();
            // 101 is Rust's exit code for a panic.
            assert_eq!(status.code(), Some(0), "{args:?}, stdout full: {on_stdout}");
        }
    }
}
