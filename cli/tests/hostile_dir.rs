//! A download directory with traps in it, through the binary: a link, a
//! second hard link or a FIFO planted at any name a fetch writes is refused
//! with exit 3 before a byte moves, and what it points to is left as it was;
//! links at the old fixed temporary names lead nowhere, because temporary
//! files now have unpredictable names.

mod resume_support;

use std::path::Path;

use resume_support::{Artifact, Proc, Seeders, fetch_args, platform};

const VICTIM: &[u8] = b"the user's own file, not to be touched\n";

fn victim(root: &Path) -> std::path::PathBuf {
    let path = root.join("victim.txt");
    std::fs::write(&path, VICTIM).unwrap();
    path
}

#[test]
fn a_link_at_any_name_the_fetch_writes_is_refused_and_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "trap", "1MiB", "64KiB", 81);
    let seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let names = [
        "trap.slm.part",
        "trap.slm.state",
        "trap.slm.state.prev",
        "trap.slm.journal",
        "trap.slm.journal.prev",
        "trap.receipt.json",
        "trap.chunk-list",
        "trap.slm.peers",
        "trap.slm",
    ];
    for (n, name) in names.iter().enumerate() {
        let out = root.join(format!("out-{n}"));
        std::fs::create_dir(&out).unwrap();
        let victim = victim(root);
        platform::plant_link(&victim, &out.join(name)).unwrap();
        let args = fetch_args(&artifact, &seeders, &out, &["--json"]);
        let mut fetch = Proc::spawn(root, &args);
        fetch.expect_exit(3);
        let error = fetch.event("error").expect("an error event");
        let text = error["error"].as_str().unwrap();
        assert!(
            text.contains(name) && text.contains("is a symbolic link"),
            "{name}: {text}"
        );
        assert!(!text.contains("Os {"), "no debug text: {text}");
        assert_eq!(std::fs::read(&victim).unwrap(), VICTIM, "{name}");
        assert!(
            std::fs::symlink_metadata(out.join(name))
                .unwrap()
                .is_symlink(),
            "{name} is left as it was"
        );
        assert!(fetch.event("progress").is_none(), "{name}: nothing moved");
    }
}

#[test]
fn a_second_name_or_a_fifo_where_the_part_goes_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "trap2", "1MiB", "64KiB", 82);
    let seeders = Seeders::start(root, &artifact, 1, "64MiB");

    let out = root.join("hard");
    std::fs::create_dir(&out).unwrap();
    let victim = victim(root);
    std::fs::hard_link(&victim, out.join("trap2.slm.part")).unwrap();
    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &out, &[]));
    fetch.expect_exit(3);
    assert!(fetch.stderr().contains("hard links"), "{}", fetch.stderr());
    assert_eq!(std::fs::read(&victim).unwrap(), VICTIM);

    let out = root.join("fifo");
    std::fs::create_dir(&out).unwrap();
    // A FIFO; on Windows, which has none, a directory.
    platform::plant_fifo(&out.join("trap2.slm.part")).unwrap();
    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &out, &[]));
    fetch.expect_exit(3);
    assert!(
        fetch.stderr().contains("is not a regular file"),
        "{}",
        fetch.stderr()
    );
}

#[test]
fn links_at_the_old_fixed_temporary_names_lead_nowhere() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let artifact = Artifact::make(root, "art", "trap3", "1MiB", "64KiB", 83);
    let seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = victim(root);
    for name in [".trap3.slm.state.tmp", ".trap3.receipt.json.tmp"] {
        platform::plant_link(&victim, &out.join(name)).unwrap();
    }
    let mut fetch = Proc::spawn(root, &fetch_args(&artifact, &seeders, &out, &["--json"]));
    fetch.expect_exit(0);
    assert_eq!(std::fs::read(&victim).unwrap(), VICTIM);
    artifact.verify(root, &artifact.files(&out).artifact);
    let receipt = std::fs::symlink_metadata(out.join("trap3.receipt.json")).unwrap();
    assert!(receipt.is_file(), "the receipt is a file of its own");
}
