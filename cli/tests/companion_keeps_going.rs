//! `minimodel companion` left running, through the binary: a download
//! whose only seeder is offline waits for it (the waiting shortened by
//! `--peer-try` and `--peer-wait-max`) and finishes verified once the
//! seeder starts, untouched; a seeder that comes while the download
//! waits is found at the next dial of the known addresses, before the
//! back-off's next try; a download stopped by a full disk (a small
//! tmpfs under the library's `downloads/`, in a private mount namespace
//! made with `unshare`) goes on by itself once space is freed (Linux
//! only: mount namespaces and tmpfs are Linux's own).

mod resume_support;

use std::path::Path;
use std::time::{Duration, Instant};

use minimodel_companion::client::Client;
use resume_support::{Artifact, HANG, Proc, identity, run};
use serde_json::Value;

fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// The companion on `library` answers: its client.
fn client(library: &Path, proc: &mut Proc) -> Client {
    let started = Instant::now();
    loop {
        if let Ok(client) = Client::for_library(library) {
            return client;
        }
        assert!(
            proc.try_exit().is_none(),
            "the companion ended: {:?} {}",
            proc.stdout(),
            proc.stderr()
        );
        assert!(started.elapsed() < HANG, "the companion did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the one item of the library satisfies `done`; the item.
fn wait_item(client: &Client, proc: &mut Proc, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let reply = client.call("GET", "/api/v1/library", None).unwrap();
        let item = reply.json()["items"][0].clone();
        if done(&item) {
            return item;
        }
        assert!(
            started.elapsed() < HANG,
            "waited for {what}: {item:#}; companion: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UDP port free on loopback now.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A companion on `library`, serving on loopback, its clock set by
/// `clock` (`--peer-try` and the like): the process and its client.
fn start_companion(dir: &Path, library: &Path, clock: &[&str]) -> (Proc, Client) {
    let mut args = vec![
        "companion".to_owned(),
        "run".to_owned(),
        "--library".to_owned(),
        arg(library),
        "--api".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--serve-ip".to_owned(),
        "127.0.0.1".to_owned(),
        "--keyring".to_owned(),
        arg(&dir.join("keyring")),
    ];
    args.extend(clock.iter().map(|a| (*a).to_owned()));
    let mut companion = Proc::spawn(dir, &args);
    let client = client(library, &mut companion);
    (companion, client)
}

/// `companion fetch` of `artifact` into `library`, from the one peer
/// `seeder_id` at `127.0.0.1:port`.
fn companion_fetch(dir: &Path, artifact: &Artifact, library: &Path, seeder_id: &str, port: u16) {
    let (code, lines, stderr) = run(
        dir,
        &[
            "companion",
            "fetch",
            &arg(&artifact.manifest_path),
            "--peer",
            &format!("{seeder_id}@127.0.0.1:{port}"),
            "--yes",
            "--library",
            &arg(library),
        ],
    );
    assert_eq!(code, 0, "{lines:?} {stderr}");
}

/// The seeder of `artifact` with the identity in `identity`, at the
/// address the download names.
fn start_seeder(dir: &Path, artifact: &Artifact, identity: &Path, port: u16) -> Proc {
    Proc::spawn(
        dir,
        &[
            "seed",
            &arg(&artifact.manifest_path),
            &arg(&artifact.slm),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--identity",
            &arg(identity),
            "--yes",
            "--json",
        ],
    )
}

#[test]
fn a_download_whose_only_seeder_starts_later_finishes_verified_without_anyone_touching_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let artifact = Artifact::make(dir, "art", "late", "2MiB", "64KiB", 71);
    let seeder_identity = dir.join("seeder-identity");
    let seeder_id = identity(&seeder_identity);
    let port = free_port();
    let library = dir.join("library");
    let (mut companion, client) = start_companion(
        dir,
        &library,
        &["--peer-try", "1s", "--peer-wait-max", "1s"],
    );
    companion_fetch(dir, &artifact, &library, &seeder_id, port);

    // Nobody serves it: it waits, says so, and tries again and again.
    let waiting = wait_item(&client, &mut companion, "the download waiting", |item| {
        item["state"] == "waiting" && item["problem"]["waiting"]["tries"].as_u64() >= Some(3)
    });
    assert_eq!(waiting["problem"]["kind"], "no-peers-yet", "{waiting:#}");
    // It waits 1 s and tries 1 s in turn: a listing made while it tries
    // shows it fetching, so the list is asked until one lands in a wait
    // (a process start takes seconds under Wine).
    let mut listings = Vec::new();
    let said = (0..30).any(|_| {
        let (code, lines, _) = run(dir, &["companion", "list", "--library", &arg(&library)]);
        assert_eq!(code, 0);
        let listed = lines.join("\n");
        let says = listed.contains("waiting for peers: last tried");
        listings.push(listed);
        says
    });
    assert!(said, "companion list says why: {listings:#?}");

    // The seeder starts, at the address the download names.
    let _seeder = start_seeder(dir, &artifact, &seeder_identity, port);
    let done = wait_item(&client, &mut companion, "the download done", |item| {
        item["state"] == "done"
    });
    assert!(done["runs"].as_u64() >= Some(4), "{done:#}");
    artifact.verify(dir, Path::new(done["file"].as_str().unwrap()));
}

#[test]
fn a_download_cut_at_parts_waits_for_a_peer_to_give_its_chunk_list_then_finishes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    // Chunks cut at parts: the download cannot open before a peer gives
    // the chunk list with its lengths, and no web server has it.
    let artifact = Artifact::make_with(
        dir,
        "art",
        "parts",
        "2MiB",
        "64KiB",
        74,
        &["--chunk-scheme", "slm-parts-merkle-v0"],
    );
    let seeder_identity = dir.join("seeder-identity");
    let seeder_id = identity(&seeder_identity);
    let port = free_port();
    let library = dir.join("library");
    let (mut companion, client) = start_companion(
        dir,
        &library,
        &["--peer-try", "1s", "--peer-wait-max", "1s"],
    );
    companion_fetch(dir, &artifact, &library, &seeder_id, port);
    // Nobody serves it: it waits for peers, saying why, and tries again.
    let waiting = wait_item(&client, &mut companion, "the download waiting", |item| {
        item["state"] == "waiting" && item["problem"]["waiting"]["tries"].as_u64() >= Some(1)
    });
    assert_eq!(waiting["problem"]["kind"], "no-peers-yet", "{waiting:#}");
    let said = waiting["problem"]["text"].as_str().unwrap_or_default();
    assert!(said.contains("cut at its parts"), "{waiting:#}");
    // The seeder starts, at the address the download names: the next try
    // reads the list from it and the download finishes verified.
    let _seeder = start_seeder(dir, &artifact, &seeder_identity, port);
    let done = wait_item(&client, &mut companion, "the download done", |item| {
        item["state"] == "done"
    });
    artifact.verify(dir, Path::new(done["file"].as_str().unwrap()));
}

#[test]
fn a_seeder_that_comes_while_the_download_waits_is_found_at_the_next_dial_not_the_next_try() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let artifact = Artifact::make(dir, "art", "dial", "2MiB", "64KiB", 72);
    let seeder_identity = dir.join("seeder-identity");
    let seeder_id = identity(&seeder_identity);
    let port = free_port();
    let library = dir.join("library");
    // The defaults' shape on a shorter clock: tries that end after 2 s
    // with nothing, waits of 15 s then 30 s, a dial of the known
    // addresses every 5 s (by default 60 s, 15 s doubling to 5 min, and
    // every minute: the supervisor's unit tests hold those).
    let (mut companion, client) = start_companion(
        dir,
        &library,
        &[
            "--peer-try",
            "2s",
            "--peer-wait-max",
            "60s",
            "--peer-dial-every",
            "5s",
        ],
    );
    companion_fetch(dir, &artifact, &library, &seeder_id, port);
    // Two tries with nobody at the address: the download now waits 30 s.
    let waiting = wait_item(&client, &mut companion, "the second wait", |item| {
        item["state"] == "waiting" && item["problem"]["waiting"]["tries"].as_u64() >= Some(2)
    });
    assert_eq!(waiting["problem"]["kind"], "no-peers-yet", "{waiting:#}");
    let next_try_in = waiting["problem"]["waiting"]["next_try_in_seconds"]
        .as_u64()
        .unwrap();
    assert!(next_try_in >= 20, "{waiting:#}");
    let _seeder = start_seeder(dir, &artifact, &seeder_identity, port);
    let came = Instant::now();
    let done = wait_item(&client, &mut companion, "the download done", |item| {
        item["state"] == "done"
    });
    let found = came.elapsed();
    println!("verified {found:?} after the seeder came, {next_try_in} s before the next try");
    // Found by a dial: before the back-off's next try would have begun.
    assert!(
        found < Duration::from_secs(next_try_in),
        "verified {found:?} after the seeder came; the next try was {next_try_in} s away"
    );
    assert!(done["runs"].as_u64() >= Some(3), "{done:#}");
    artifact.verify(dir, Path::new(done["file"].as_str().unwrap()));
}

/// The full disk: a tmpfs in a mount namespace, Linux's own
/// (`scripts/windows-tests`).
#[cfg(target_os = "linux")]
mod full_disk {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// Runs inside the namespace: a tmpfs of `$SIZE` on the library's
    /// `downloads/`, then the companion (the rest of the arguments). The test
    /// asks, through files in `$CTL`, to fill the tmpfs, to free it, and to
    /// verify the delivered file (`$CTL/verify` holds its path and the
    /// manifest's); each answer is a file in `$CTL` too.
    const SCRIPT: &str = r#"
set -u
LIB=$1; SIZE=$2; CTL=$3; BIN=$4; shift 4
mount -t tmpfs -o "size=$SIZE,mode=0700" tmpfs "$LIB/downloads" || exit 90
"$@" &
pid=$!
while kill -0 $pid 2>/dev/null; do
  if [ -e "$CTL/fill" ] && [ ! -e "$CTL/filled" ]; then
    cat /dev/zero > "$LIB/downloads/filler" 2>/dev/null
    df -k "$LIB/downloads" > "$CTL/filled"
  fi
  if [ -e "$CTL/free" ] && [ ! -e "$CTL/freed" ]; then
    rm -f "$LIB/downloads/filler"
    df -k "$LIB/downloads" > "$CTL/freed"
  fi
  if [ -e "$CTL/verify" ] && [ ! -e "$CTL/verified" ]; then
    set -- $(cat "$CTL/verify")
    "$BIN" verify "$2" "$1" > "$CTL/verify.log" 2>&1
    echo $? > "$CTL/verified"
  fi
  sleep 0.05
done
wait $pid
"#;

    /// `unshare` with a user namespace (so it works without root too) and a
    /// mount namespace.
    const UNSHARE: [&str; 3] = ["--user", "--map-root-user", "--mount"];

    /// Waits for the file `name` in `ctl`.
    fn answer(ctl: &Path, name: &str, proc: &mut Proc) -> String {
        let path: PathBuf = ctl.join(name);
        let started = Instant::now();
        while !path.exists() {
            assert!(
                proc.try_exit().is_none(),
                "the namespace ended before {name}: {}",
                proc.stderr()
            );
            assert!(started.elapsed() < HANG, "no {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_download_stopped_by_a_full_disk_goes_on_by_itself_once_space_is_freed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let probe = Command::new("unshare")
            .args(UNSHARE)
            .args(["sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$1\"", "sh"])
            .arg(dir)
            .output();
        match probe {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "this test needs a mount namespace with a tmpfs (`unshare --user --map-root-user --mount`), \
             which failed: {}; run it as root or where user namespaces are allowed",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => {
                panic!(
                    "this test needs `unshare` (util-linux: apt-get install util-linux): {error}"
                )
            }
        }
        // 8 MiB at 1 MiB/s: the disk is filled a chunk in, long before the
        // end; the tmpfs has room for the file and 8 MiB more.
        let artifact = Artifact::make(dir, "art", "diskfull", "8MiB", "64KiB", 72);
        let seeders = resume_support::Seeders::start(dir, &artifact, 1, "1MiB");
        let library = dir.join("library");
        let ctl = dir.join("ctl");
        std::fs::create_dir_all(&ctl).unwrap();
        // The library made first, so that `downloads/` is there to mount on.
        minimodel_companion::library::LibraryDir::open(&library).unwrap();
        let size = format!("{}k", artifact.size() / 1024 + 8 * 1024);
        let bin = resume_support::bin();
        let mut companion = Proc::spawn_group(
            Command::new("unshare")
                .args(UNSHARE)
                .args(["sh", "-c", SCRIPT, "sh"])
                .arg(&library)
                .arg(&size)
                .arg(&ctl)
                .arg(bin)
                .arg(bin)
                .args(["companion", "run", "--library"])
                .arg(&library)
                .args([
                    "--api",
                    "127.0.0.1:0",
                    "--serve-ip",
                    "127.0.0.1",
                    "--keyring",
                    &arg(&dir.join("keyring")),
                ])
                .env("XDG_DATA_HOME", resume_support::data_home(dir))
                .env("LOCALAPPDATA", resume_support::data_home(dir)),
        );
        let client = client(&library, &mut companion);
        let (code, lines, stderr) = run(
            dir,
            &[
                "companion",
                "fetch",
                &arg(&artifact.manifest_path),
                "--offer",
                &arg(&seeders.offers[0]),
                "--yes",
                "--library",
                &arg(&library),
            ],
        );
        assert_eq!(code, 0, "{lines:?} {stderr}");
        wait_item(&client, &mut companion, "a chunk verified", |item| {
            item["state"] == "fetching" && item["verified_bytes"].as_u64() > Some(0)
        });

        // The disk fills: the download stops at its next checkpoint, keeps
        // its verified part, says why, and that it goes on by itself.
        std::fs::write(ctl.join("fill"), b"").unwrap();
        let df = answer(&ctl, "filled", &mut companion);
        let failed = wait_item(&client, &mut companion, "the full disk", |item| {
            item["state"] == "failed"
        });
        let problem = &failed["problem"];
        assert_eq!(problem["kind"], "disk-full", "{failed:#}\n{df}");
        assert_eq!(problem["goes_on_by_itself"], true);
        assert!(problem["needs_free_bytes"].as_u64() > Some(0));
        assert!(
            problem["text"]
                .as_str()
                .unwrap()
                .contains("it goes on by itself once"),
            "{problem}"
        );
        let kept = failed["verified_bytes"].as_u64().unwrap();
        assert!(kept > 0 && kept < artifact.size(), "{failed:#}");
        let runs = failed["runs"].as_u64().unwrap();
        // Still full a while later: it waits, it does not spin.
        std::thread::sleep(Duration::from_secs(3));
        let still = client.call("GET", "/api/v1/library", None).unwrap().json()["items"][0].clone();
        assert_eq!(still["state"], "failed", "{still:#}");
        assert_eq!(still["runs"].as_u64(), Some(runs), "no try while full");

        // Space freed: it goes on by itself, from what it had verified.
        std::fs::write(ctl.join("free"), b"").unwrap();
        answer(&ctl, "freed", &mut companion);
        let done = wait_item(&client, &mut companion, "the download done", |item| {
            item["state"] == "done"
        });
        assert_eq!(done["runs"].as_u64(), Some(runs + 1), "{done:#}");
        let receipt = client
            .call(
                "GET",
                &format!("/api/v1/items/{}/receipt", done["id"].as_str().unwrap()),
                None,
            )
            .unwrap()
            .json();
        assert!(
            receipt["source"]["chunks_resumed"].as_u64() >= Some(kept / (64 * 1024)),
            "{receipt:#}"
        );
        // The file on the tmpfs, read whole by `minimodel verify`.
        std::fs::write(
            ctl.join("verify"),
            format!(
                "{} {}",
                done["file"].as_str().unwrap(),
                arg(&artifact.manifest_path)
            ),
        )
        .unwrap();
        let code = answer(&ctl, "verified", &mut companion);
        assert_eq!(
            code.trim(),
            "0",
            "{}",
            std::fs::read_to_string(ctl.join("verify.log")).unwrap_or_default()
        );
        drop(seeders);
    }
}
