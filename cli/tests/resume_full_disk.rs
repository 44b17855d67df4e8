//! A real full disk, through the binary: the download directory is a
//! small tmpfs in a private mount namespace (`unshare`), filled up while
//! the download is stopped. The next run stops with a clear error (exit 1,
//! "the disk is full") and leaves the last checkpoint intact; once space
//! is freed the same command resumes and completes.
//!
//! Mounting needs a mount namespace, which Linux gives an ordinary user
//! inside a user namespace of its own (`unshare --user --map-root-user
//! --mount`); root may also use a plain mount namespace. Where neither
//! works the test fails and says what would make it run. The same failure
//! injected through the storage layer runs in `resume_fetcher.rs`.

// A tmpfs in a mount namespace: Linux's own (scripts/windows-tests).
#![cfg(target_os = "linux")]

mod resume_support;

use std::path::Path;
use std::process::Command;

use resume_support::{Artifact, Seeders, fetch_args};

/// `unshare` with a user namespace (so it works without root) and a
/// mount namespace; for root, a mount namespace alone (where user
/// namespaces are turned off).
const NAMESPACES: [&[&str]; 2] = [&["--user", "--map-root-user", "--mount"], &["--mount"]];

/// The `unshare` arguments under which a tmpfs mounts here, tried in
/// [`NAMESPACES`]' order; what each one answered otherwise.
fn tmpfs_namespace(scratch: &Path) -> Result<&'static [&'static str], String> {
    let dir = scratch.join("probe");
    std::fs::create_dir_all(&dir).unwrap();
    let mut answers = Vec::new();
    for args in NAMESPACES {
        let output = Command::new("unshare")
            .args(args)
            .args(["sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$1\"", "sh"])
            .arg(&dir)
            .output();
        match output {
            Ok(output) if output.status.success() => return Ok(args),
            Ok(output) => answers.push(format!(
                "unshare {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => answers.push(format!("cannot run unshare: {error}")),
        }
    }
    Err(answers.join("; "))
}

/// Runs inside the namespace, with the tmpfs at `$OUT`. Phase A fetches
/// until the first checkpoint and stops (SIGTERM); B fills the disk; C
/// fetches again (must fail: no room for a checkpoint); its state files
/// and `.part` are copied to `$KEEP`; D frees the space and fetches to the
/// end; E verifies. Exit codes go to `$KEEP/codes`.
const SCRIPT: &str = r#"
set -u
OUT=$1; KEEP=$2; SIZE=$3; ID=$4; BIN=$5; MANIFEST=$6; shift 6
mount -t tmpfs -o "size=$SIZE" tmpfs "$OUT" || exit 90
"$BIN" fetch "$MANIFEST" "$@" -o "$OUT" --yes --json > "$KEEP/a.log" 2>&1 &
pid=$!
tries=0
while [ ! -e "$OUT/$ID.slm.state.prev" ] && [ $tries -lt 6000 ]; do
  sleep 0.05; tries=$((tries + 1))
done
kill -TERM $pid; wait $pid; echo "a $?" >> "$KEEP/codes"
cp "$OUT/$ID.slm.state" "$KEEP/a.state"
cat /dev/zero > "$OUT/filler" 2>/dev/null
df -k "$OUT" > "$KEEP/df"
"$BIN" fetch "$MANIFEST" "$@" -o "$OUT" --yes --json > "$KEEP/c.log" 2>&1
echo "c $?" >> "$KEEP/codes"
cp "$OUT/$ID.slm.state" "$KEEP/c.state"
cp "$OUT/$ID.slm.part" "$KEEP/c.part"
rm "$OUT/filler"
"$BIN" fetch "$MANIFEST" "$@" -o "$OUT" --yes --json > "$KEEP/d.log" 2>&1
echo "d $?" >> "$KEEP/codes"
"$BIN" verify "$MANIFEST" "$OUT/$ID.slm" --receipt "$KEEP/verify.json" > "$KEEP/e.log" 2>&1
echo "e $?" >> "$KEEP/codes"
"#;

fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn a_full_tmpfs_stops_the_fetch_and_the_same_command_resumes_after_space_is_freed() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let namespace = tmpfs_namespace(root).unwrap_or_else(|why| {
        panic!(
            "no tmpfs can be mounted in a private mount namespace here ({why}). This test \
             needs `unshare` (Debian: apt-get install util-linux) and user namespaces for \
             ordinary users (sysctl kernel.unprivileged_userns_clone=1, and on Ubuntu \
             kernel.apparmor_restrict_unprivileged_userns=0), or root; in a container, one \
             that allows unshare(2) (docker run --security-opt seccomp=unconfined, or \
             --privileged)"
        )
    });
    // 24 MiB at 4 MiB/s: phase A stops after its first checkpoint (2 s),
    // phase C has more than 2 s of chunks to fetch, so it must checkpoint.
    let artifact = Artifact::make(root, "art", "tmpfs", "24MiB", "256KiB", 61);
    let seeders = Seeders::start(root, &artifact, 1, "4MiB");
    let out = root.join("out");
    let keep = root.join("keep");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&keep).unwrap();
    let fetch = fetch_args(&artifact, &seeders, &out, &[]);
    let offers = &fetch[2..fetch.len() - 3];
    // Room for the artifact and a little more.
    let size = format!("{}k", artifact.size() / 1024 + 256);
    let mut guard = resume_support::Proc::spawn_group(
        Command::new("unshare")
            .args(namespace)
            .args(["sh", "-c", SCRIPT, "sh"])
            .arg(&out)
            .arg(&keep)
            .arg(&size)
            .arg(&artifact.model_id)
            .arg(resume_support::bin())
            .arg(&artifact.manifest_path)
            .args(offers),
    );
    let status = guard.wait();
    let codes = std::fs::read_to_string(keep.join("codes")).unwrap_or_default();
    let log = |name: &str| std::fs::read_to_string(keep.join(name)).unwrap_or_default();
    assert!(
        status.success(),
        "{status}; codes {codes:?}; {}; a: {}; c: {}; d: {}",
        guard.stderr(),
        log("a.log"),
        log("c.log"),
        log("d.log")
    );
    assert_eq!(
        codes,
        "a 130\nc 1\nd 0\ne 0\n",
        "a: {}\nc: {}\nd: {}\ne: {}\ndf: {}",
        log("a.log"),
        log("c.log"),
        log("d.log"),
        log("e.log"),
        log("df")
    );

    // C stopped with a clear error.
    let c = events(&keep.join("c.log"));
    let error = c.iter().find(|e| e["event"] == "error").unwrap();
    assert_eq!(error["exit_code"], 1);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{error}"
    );
    assert_eq!(
        error["hint"],
        "the disk is full; free space and run the same command again to resume"
    );
    // Its state is a good state that lists at least what A left, and only
    // chunks whose bytes are on disk.
    let read_state = |name: &str| {
        minimodel_swarm::resume::parse_state(&std::fs::read(keep.join(name)).unwrap()).unwrap()
    };
    let chunks = |state: &minimodel_swarm::resume::PartialState| -> Vec<u32> {
        state
            .knowledge
            .verified()
            .iter_ones()
            .map(|c| c.0)
            .collect()
    };
    let after_a = chunks(&read_state("a.state"));
    let after_c = chunks(&read_state("c.state"));
    assert!(!after_a.is_empty());
    assert!(after_a.iter().all(|c| after_c.binary_search(c).is_ok()));
    let good = artifact.good_chunks(&keep.join("c.part"));
    assert!(after_c.iter().all(|c| good.binary_search(c).is_ok()));
    // C stopped at the first checkpoint it could not write (2 s in), not
    // at the end: what it fetched meanwhile cannot be saved.
    assert!(
        good.len() < artifact.chunk_count() as usize,
        "C went on with a disk that could not take its checkpoints"
    );
    println!(
        "full tmpfs: A left {} chunks; C wrote {} more and listed {} of them before the disk \
         was full",
        after_a.len(),
        good.len() - after_a.len(),
        after_c.len() - after_a.len()
    );

    // D resumed from C's state, and from C's journal every chunk C had
    // written whole before the disk was full, and completed.
    let d = events(&keep.join("d.log"));
    let opened = d.iter().find(|e| e["event"] == "opened").unwrap();
    let from_journal = opened["chunks_from_journal"].as_u64().unwrap();
    assert_eq!(
        opened["chunks_verified"].as_u64().unwrap(),
        after_c.len() as u64 + from_journal,
        "{opened}"
    );
    assert!(after_c.len() as u64 + from_journal <= good.len() as u64);
    assert!(d.iter().any(|e| e["event"] == "fetched"));
}
