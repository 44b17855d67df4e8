//! `minimodel request` (through `import-peer-request`, which must read what
//! it writes), `minimodel completions` and `minimodel man`, through the
//! binary.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{code, json_lines, minimodel, ok, prepare, seeder};

/// The subcommands `minimodel --help` lists.
fn subcommands(dir: &Path) -> Vec<String> {
    let help = ok(&minimodel(dir, &["--help"]));
    let listed: Vec<String> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        // A name at two spaces; wrapped descriptions are indented more.
        .filter(|line| !line[2..].starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for expected in [
        "fixture",
        "manifest",
        "verify",
        "catalog-entry",
        "seed",
        "fetch",
        "import-peer-request",
        "demo",
        "status",
        "request",
        "completions",
        "man",
    ] {
        assert!(listed.iter().any(|n| n == expected), "{expected}: {help}");
    }
    listed
}

#[test]
fn a_request_from_two_offers_is_what_import_peer_request_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, "art", "3MiB", "256KiB");
    let (_a, offer_a) = seeder(root, "art.manifest", "art.slm", "a.offer.json", &[]);
    let (_b, offer_b) = seeder(root, "art.manifest", "art.slm", "b.offer.json", &[]);
    let written = ok(&minimodel(
        root,
        &[
            "request",
            offer_a.to_str().unwrap(),
            offer_b.to_str().unwrap(),
            // The same offer twice counts once.
            offer_b.to_str().unwrap(),
            "-o",
            "art.request.json",
        ],
    ));
    assert!(
        written.contains("wrote art.request.json: import request for art (3.0 MiB) from 2 offers"),
        "{written}"
    );
    let request: Value =
        serde_json::from_slice(&std::fs::read(root.join("art.request.json")).unwrap()).unwrap();
    assert_eq!(request["format"], "minimodel-import-request-v0");
    assert_eq!(request["model_id"], "art");
    assert_eq!(request["artifact_bytes"], 3 << 20);
    assert_eq!(request["offers"].as_array().unwrap().len(), 2);

    let import = minimodel(
        root,
        &[
            "import-peer-request",
            "art.request.json",
            "art.manifest",
            "out",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(
        code(&import),
        0,
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let events = json_lines(&import);
    assert!(events.iter().any(|e| e["event"] == "fetched"), "{events:?}");
    assert_eq!(
        std::fs::read(root.join("out/art.slm")).unwrap(),
        std::fs::read(root.join("art.slm")).unwrap()
    );
}

#[test]
fn offers_that_disagree_make_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    prepare(root, "art", "1MiB", "64KiB");
    let (_seeder, offer) = seeder(root, "art.manifest", "art.slm", "a.offer.json", &[]);
    let text = std::fs::read_to_string(&offer).unwrap();
    let original: Value = serde_json::from_str(&text).unwrap();
    let changes = [
        ("model_id", Value::from("other")),
        ("artifact_bytes", Value::from(12345)),
        ("artifact_sha256", Value::from("ab".repeat(32))),
        ("merkle_root", Value::from("cd".repeat(32))),
    ];
    for (field, value) in changes {
        let mut changed = original.clone();
        changed[field] = value;
        std::fs::write(
            root.join("b.offer.json"),
            serde_json::to_vec(&changed).unwrap(),
        )
        .unwrap();
        let out = minimodel(
            root,
            &["request", "a.offer.json", "b.offer.json", "-o", "r.json"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 3, "{field}: {stderr}");
        let words = field.replace('_', " ");
        assert!(
            stderr.contains(&format!("error: {words} disagrees: a.offer.json says")),
            "{field}: {stderr}"
        );
        assert!(stderr.contains("no request was written"), "{stderr}");
        assert!(!root.join("r.json").exists(), "{field}: nothing written");
    }
    // Not an offer at all: invalid input too, and with --json an event.
    std::fs::write(root.join("junk.json"), "{").unwrap();
    let out = minimodel(root, &["request", "junk.json", "--json"]);
    assert_eq!(code(&out), 3);
    assert_eq!(json_lines(&out)[0]["event"], "error");
    // No offer named: usage.
    assert_eq!(code(&minimodel(root, &["request"])), 2);
}

#[test]
fn bash_completion_knows_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let names = subcommands(dir.path());
    let bash = ok(&minimodel(dir.path(), &["completions", "bash"]));
    assert!(bash.contains("complete -F"), "a bash completion script");
    for name in &names {
        // The case that completes after `minimodel NAME`.
        let case = format!("minimodel,{name})");
        assert!(bash.contains(&case), "{case} in the bash completion");
    }
    assert!(
        bash.contains("--json") && bash.contains("--quiet"),
        "options too"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = ok(&minimodel(dir.path(), &["completions", shell]));
        assert!(script.contains("import-peer-request"), "{shell}");
    }
    assert_eq!(code(&minimodel(dir.path(), &["completions", "tcsh"])), 2);
}

#[test]
fn the_man_page_names_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let names = subcommands(dir.path());
    let page = ok(&minimodel(dir.path(), &["man"]));
    assert!(page.contains(".TH minimodel 1"), "{page}");
    for name in &names {
        // roff escapes the hyphens.
        let roff = name.replace('-', "\\-");
        assert!(page.contains(&roff), "{roff} in the man page");
    }
    ok(&minimodel(dir.path(), &["man", "--dir", "pages"]));
    for name in &names {
        let page = dir.path().join(format!("pages/minimodel-{name}.1"));
        assert!(page.exists(), "{}", page.display());
    }
    let fetch = std::fs::read_to_string(dir.path().join("pages/minimodel-fetch.1")).unwrap();
    assert!(fetch.contains("\\-\\-offer"), "{fetch}");
}
