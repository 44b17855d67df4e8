//! Publisher signatures through the binary (`docs/signing.md`): a manifest
//! signed by another key than the one pinned for its publisher, or changed
//! by one byte after signing, is refused by every command that reads a
//! manifest (verify, catalog-entry, fetch, seed, import-peer-request) with
//! exit 4, before anything is read or written; a partial download in DIR
//! survives such a manifest untouched; a key seen for the first time is
//! pinned with consent (`--yes`, or the prompt on a terminal, which says
//! it is the first time), and held to after; a rotation moves the pin.
//! Every command here is given its own keyring (`--keyring`), or its own
//! home: none touches the user's.

mod resume_support;

use std::path::{Path, PathBuf};

use resume_support::{Artifact, Proc, ok, run, snapshot};
use serde_json::Value;

/// A peer that is never dialed: every refusal comes first.
const NOBODY: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:9";

/// An artifact, its unsigned manifest, two publisher keys (A and B), the
/// manifest signed by each, and a keyring that pins publisher `acme` to A.
struct Signed {
    _dir: tempfile::TempDir,
    root: PathBuf,
    artifact: Artifact,
    key_a: String,
    key_b: String,
    keyring: PathBuf,
}

impl Signed {
    fn make() -> Signed {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let artifact = Artifact::make(&root, "art", "sig", "3MiB", "256KiB", 5);
        let key_id = |name: &str| {
            let events = json(&ok(&root, &["key", "new", name, "--json"]));
            assert_eq!(events[0]["event"], "key-created", "{events:?}");
            events[0]["key_id"].as_str().unwrap().to_owned()
        };
        let key_a = key_id("a.key");
        let key_b = key_id("b.key");
        let manifest = artifact.manifest_path.to_str().unwrap().to_owned();
        for (key, out) in [
            ("a.key", "signed-a.manifest"),
            ("b.key", "signed-b.manifest"),
        ] {
            ok(&root, &["sign", &manifest, "--key", key, "-o", out]);
        }
        let keyring = root.join("keyring");
        ok(
            &root,
            &[
                "key",
                "pin",
                "acme",
                "a.key.pub",
                "--keyring",
                keyring.to_str().unwrap(),
            ],
        );
        Signed {
            _dir: dir,
            root,
            artifact,
            key_a,
            key_b,
            keyring,
        }
    }

    fn keyring(&self) -> &str {
        self.keyring.to_str().unwrap()
    }

    /// A request for the artifact from a peer that never answers, for
    /// `import-peer-request`.
    fn request(&self) -> String {
        let manifest = &self.artifact.manifest;
        let offer = serde_json::json!({
            "format": "minimodel-peer-offer-v1",
            "model_id": manifest.model_id.to_string(),
            "artifact_bytes": manifest.artifact_bytes,
            "artifact_sha256": manifest.artifact_sha256.to_hex(),
            "merkle_root": manifest.chunks.merkle_root.to_hex(),
            "peer_id": NOBODY.split('@').next().unwrap(),
            "addrs": ["127.0.0.1:9"],
        });
        std::fs::write(self.root.join("nobody.offer.json"), offer.to_string()).unwrap();
        ok(
            &self.root,
            &["request", "nobody.offer.json", "-o", "nobody.request.json"],
        );
        "nobody.request.json".to_owned()
    }

    /// Every command that reads a manifest, on `manifest`, with the
    /// keyring and `extra` (consent given where it is asked).
    fn every_command(&self, manifest: &str, extra: &[&str]) -> Vec<(&'static str, Vec<String>)> {
        let request = self.request();
        let with = |args: &[&str]| -> Vec<String> {
            args.iter()
                .chain(["--keyring", self.keyring()].iter())
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect()
        };
        vec![
            ("verify", with(&["verify", manifest, "art.slm"])),
            ("catalog-entry", with(&["catalog-entry", manifest])),
            (
                "fetch",
                with(&["fetch", manifest, "--peer", NOBODY, "-o", "out", "--yes"]),
            ),
            (
                "seed",
                with(&[
                    "seed",
                    manifest,
                    "art.slm",
                    "--listen",
                    "127.0.0.1:0",
                    "--offer",
                    "seed.offer.json",
                    "--yes",
                ]),
            ),
            (
                "import-peer-request",
                with(&["import-peer-request", &request, manifest, "out", "--yes"]),
            ),
        ]
    }

    /// Asserts that nothing was written: no receipt, no DIR, no offer, the
    /// keyring as it was.
    fn nothing_written(&self, command: &str, keyring_before: &[u8]) {
        for name in ["sig.receipt.json", "out", "seed.offer.json"] {
            assert!(
                !self.root.join(name).exists(),
                "{command} wrote {name} for a refused manifest"
            );
        }
        assert_eq!(
            std::fs::read(&self.keyring).unwrap(),
            keyring_before,
            "{command} changed the keyring"
        );
    }
}

fn json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

#[test]
fn every_command_refuses_a_manifest_signed_by_another_key_than_the_pinned_one() {
    let s = Signed::make();
    let keyring_before = std::fs::read(&s.keyring).unwrap();
    for (command, args) in s.every_command("signed-b.manifest", &[]) {
        let (code, stdout, stderr) = run(&s.root, &args);
        assert_eq!(code, 4, "{command}: stdout {stdout:?}; stderr {stderr}");
        assert!(
            stderr.contains(&format!(
                "publisher acme is pinned to key {} (pinned with minimodel key pin",
                s.key_a
            )) && stderr.contains(&format!("signed by key {}", s.key_b)),
            "{command} must name the publisher and both keys: {stderr}"
        );
        assert!(
            stderr.contains("hint:") && stderr.contains("key accept-rotation"),
            "{command} must say what to do: {stderr}"
        );
        s.nothing_written(command, &keyring_before);
    }
    // The same refusal as a JSON error event.
    let (code, stdout, _) = run(
        &s.root,
        &[
            "verify",
            "signed-b.manifest",
            "art.slm",
            "--keyring",
            s.keyring(),
            "--json",
        ],
    );
    assert_eq!(code, 4);
    let events = json(&stdout);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "error");
    assert_eq!(events[0]["exit_code"], 4);
    assert!(events[0]["hint"].as_str().unwrap().contains("key pin acme"));
    // Signed by the pinned key, every local command passes.
    ok(
        &s.root,
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--keyring",
            s.keyring(),
        ],
    );
}

#[test]
fn every_command_refuses_a_manifest_changed_by_one_byte_after_signing() {
    let s = Signed::make();
    let signed = std::fs::read_to_string(s.root.join("signed-a.manifest")).unwrap();
    // One byte of a field (still a valid manifest), and one bit of the
    // signature itself.
    let renamed = signed.replace("display-name: sig\n", "display-name: sih\n");
    assert_ne!(renamed, signed);
    std::fs::write(s.root.join("renamed.manifest"), &renamed).unwrap();
    let line = signed
        .lines()
        .find(|l| l.starts_with("signature: "))
        .unwrap();
    let last = line.chars().last().unwrap();
    let flipped_line = format!(
        "{}{}",
        &line[..line.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    std::fs::write(
        s.root.join("flipped.manifest"),
        signed.replace(line, &flipped_line),
    )
    .unwrap();
    let keyring_before = std::fs::read(&s.keyring).unwrap();
    for manifest in ["renamed.manifest", "flipped.manifest"] {
        for (command, args) in s.every_command(manifest, &[]) {
            let (code, _, stderr) = run(&s.root, &args);
            assert_eq!(code, 4, "{command} {manifest}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "the signature of this manifest (publisher acme, key {}) does not verify",
                    s.key_a
                )),
                "{command} {manifest}: {stderr}"
            );
            s.nothing_written(command, &keyring_before);
        }
    }
    // Named as the publisher's key, or not pinned at all: refused the same.
    for extra in [
        &["--publisher-key", "a.key.pub"][..],
        &["--keyring", "empty.keyring"][..],
    ] {
        let mut args = vec!["verify", "renamed.manifest", "art.slm"];
        args.extend(extra);
        let (code, _, stderr) = run(&s.root, &args);
        assert_eq!(code, 4, "{extra:?}: {stderr}");
    }
    assert!(!s.root.join("empty.keyring").exists());
}

/// The modification time of every file in `dir`, with its name.
fn mtimes(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_partial_download_survives_a_refused_manifest_untouched() {
    let s = Signed::make();
    let out = s.root.join("partial");
    s.artifact.partial(&out, &[0, 2, 5], 2);
    let bytes_before = snapshot(&out);
    let times_before = mtimes(&out);
    assert!(bytes_before.len() >= 3, "{:?}", bytes_before.keys());
    let out_arg = out.to_str().unwrap();
    let refusals: [&[&str]; 4] = [
        // Signed by B, A pinned.
        &["signed-b.manifest", "--keyring", s.keyring()],
        // Changed after signing.
        &["tampered.manifest", "--keyring", "fresh.keyring"],
        // Unsigned, signatures required.
        &[
            "art.manifest",
            "--keyring",
            "fresh.keyring",
            "--require-signature",
        ],
        // Unsigned in the name of a publisher whose key is pinned.
        &["art.manifest", "--keyring", s.keyring()],
    ];
    let signed = std::fs::read_to_string(s.root.join("signed-a.manifest")).unwrap();
    std::fs::write(
        s.root.join("tampered.manifest"),
        signed.replace("display-name: sig\n", "display-name: sif\n"),
    )
    .unwrap();
    for refusal in refusals {
        let mut args = vec![
            "fetch", refusal[0], "--peer", NOBODY, "-o", out_arg, "--yes",
        ];
        args.extend(&refusal[1..]);
        let (code, _, stderr) = run(&s.root, &args);
        assert_eq!(code, 4, "{refusal:?}: {stderr}");
        assert_eq!(snapshot(&out), bytes_before, "{refusal:?} changed a file");
        assert_eq!(mtimes(&out), times_before, "{refusal:?} touched a file");
    }
    // Still the same partial download, three chunks verified.
    let status = json(&ok(&s.root, &["status", out_arg, "--json"]));
    assert_eq!(status[0]["kind"], "partial", "{status:?}");
    assert_eq!(status[0]["chunks_verified"], 3, "{status:?}");
}

/// Starts a seeder of `manifest` with its own keyring; waits for its offer.
fn seeder(s: &Signed, manifest: &str, offer: &str) -> Proc {
    let mut proc = Proc::spawn(
        &s.root,
        &[
            "seed",
            manifest,
            "art.slm",
            "--listen",
            "127.0.0.1:0",
            "--offer",
            offer,
            "--keyring",
            "seeder.keyring",
            "--yes",
            "--json",
        ],
    );
    let path = s.root.join(offer);
    assert!(
        proc.wait_for("the seeder's offer", |_| path.exists()),
        "the seeder ended: {}",
        proc.stderr()
    );
    proc
}

fn fetch(s: &Signed, manifest: &str, offer: &str, out: &str, keyring: &str) -> Vec<String> {
    vec![
        "fetch".into(),
        manifest.into(),
        "--offer".into(),
        offer.into(),
        "-o".into(),
        out.into(),
        "--keyring".into(),
        s.root.join(keyring).to_str().unwrap().into(),
        "--json".into(),
    ]
}

#[test]
fn a_key_seen_first_is_pinned_with_yes_then_held_to_until_a_rotation_moves_it() {
    let s = Signed::make();
    let seeding = seeder(&s, "signed-a.manifest", "a.offer.json");
    // The seeder, too, checked the manifest first and pinned its key.
    let said = seeding.events();
    assert_eq!(said[0]["event"], "key-pinned", "{said:?}");
    assert_eq!(said[1]["event"], "signature");
    assert_eq!(said[1]["trust"], "first-use");

    // Without consent nothing is pinned (and nothing fetched).
    let args = fetch(
        &s,
        "signed-a.manifest",
        "a.offer.json",
        "out1",
        "fetch.keyring",
    );
    let (code, _, stderr) = run(&s.root, &args);
    assert_eq!(code, 5, "{stderr}");
    assert!(!s.root.join("fetch.keyring").exists());
    assert!(!s.root.join("out1").exists());

    // --yes pins it, says so, and the receipt records it.
    let mut args_yes = args.clone();
    args_yes.push("--yes".into());
    let events = json(&ok(&s.root, &args_yes));
    let pinned = events.iter().find(|e| e["event"] == "key-pinned").unwrap();
    assert_eq!(pinned["pinned_by"], "first-use");
    assert_eq!(pinned["key_id"], s.key_a);
    let signature = events.iter().find(|e| e["event"] == "signature").unwrap();
    assert_eq!(signature["trust"], "first-use");
    let first_signature = events.iter().position(|e| e["event"] == "signature");
    let first_opened = events.iter().position(|e| e["event"] == "opened");
    assert!(
        first_signature < first_opened,
        "checked before DIR: {events:?}"
    );
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(s.root.join("out1/sig.receipt.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["signature"]["status"], "signed");
    assert_eq!(receipt["signature"]["trust"], "first-use");
    assert_eq!(receipt["signature"]["key_id"], s.key_a);
    let keyring = std::fs::read_to_string(s.root.join("fetch.keyring")).unwrap();
    assert!(keyring.contains("pin: acme mmpk1") && keyring.contains(" first-use "));
    // People are told it was the first time, and how it was accepted.
    let mut people = args_yes.clone();
    people.retain(|a| a != "--json");
    people[5] = "out-people".into();
    let mut people_keyring = people.clone();
    people_keyring[7] = s.root.join("people.keyring").to_str().unwrap().into();
    let text = ok(&s.root, &people_keyring).join("\n");
    assert!(
        text.contains(&format!("pinned key {} for publisher acme", s.key_a))
            && text.contains("first seen now; accepted by --yes"),
        "{text}"
    );

    // From now on: the same key passes as pinned, another is refused, an
    // unsigned manifest in acme's name is refused.
    let again = json(&ok(&s.root, &{
        let mut a = fetch(
            &s,
            "signed-a.manifest",
            "a.offer.json",
            "out2",
            "fetch.keyring",
        );
        a.push("--yes".into());
        a
    }));
    let signature = again.iter().find(|e| e["event"] == "signature").unwrap();
    assert_eq!(signature["trust"], "pinned");
    assert!(!again.iter().any(|e| e["event"] == "key-pinned"));
    for manifest in ["signed-b.manifest", "art.manifest"] {
        let mut args = fetch(&s, manifest, "a.offer.json", "out3", "fetch.keyring");
        args.push("--yes".into());
        let (code, _, stderr) = run(&s.root, &args);
        assert_eq!(code, 4, "{manifest}: {stderr}");
        assert!(!s.root.join("out3").exists());
    }

    // A rotation signed by A moves the pin to B.
    ok(
        &s.root,
        &[
            "key",
            "rotate",
            "--old",
            "a.key",
            "--new",
            "b.key.pub",
            "-o",
            "a-to-b.rotation",
        ],
    );
    let accepted = json(&ok(
        &s.root,
        &[
            "key",
            "accept-rotation",
            "a-to-b.rotation",
            "--keyring",
            s.root.join("fetch.keyring").to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(accepted[0]["publishers"], serde_json::json!(["acme"]));
    let mut args = fetch(
        &s,
        "signed-b.manifest",
        "a.offer.json",
        "out4",
        "fetch.keyring",
    );
    args.push("--yes".into());
    let events = json(&ok(&s.root, &args));
    let signature = events.iter().find(|e| e["event"] == "signature").unwrap();
    assert_eq!(signature["key_id"], s.key_b);
    assert_eq!(signature["trust"], "pinned");
    // A statement signed by another key than its old one moves nothing:
    // B's statement handing over to A, with the two keys swapped, claims
    // that A hands over to B.
    ok(
        &s.root,
        &[
            "key",
            "rotate",
            "--old",
            "b.key",
            "--new",
            "a.key.pub",
            "-o",
            "b-to-a.rotation",
        ],
    );
    let text = std::fs::read_to_string(s.root.join("b-to-a.rotation")).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap()
            .to_owned()
    };
    let (old, new) = (value("old-key"), value("new-key"));
    let swapped = text
        .replace(&format!("old-key: {old}"), &format!("old-key: {new}"))
        .replace(&format!("new-key: {new}"), &format!("new-key: {old}"));
    std::fs::write(s.root.join("forged.rotation"), swapped).unwrap();
    ok(
        &s.root,
        &[
            "key",
            "pin",
            "acme",
            "a.key.pub",
            "--keyring",
            s.root.join("fetch.keyring").to_str().unwrap(),
        ],
    );
    let before = std::fs::read(s.root.join("fetch.keyring")).unwrap();
    let (code, _, stderr) = run(
        &s.root,
        &[
            "key",
            "accept-rotation",
            "forged.rotation",
            "--keyring",
            s.root.join("fetch.keyring").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert_eq!(std::fs::read(s.root.join("fetch.keyring")).unwrap(), before);
    drop(seeding);
}

#[test]
fn a_named_key_must_sign_and_unsigned_manifests_can_be_refused() {
    let s = Signed::make();
    let fresh = s.root.join("named.keyring");
    let fresh = fresh.to_str().unwrap();
    let events = json(&ok(
        &s.root,
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--publisher-key",
            "a.key.pub",
            "--keyring",
            fresh,
            "--json",
        ],
    ));
    assert_eq!(events[0]["event"], "key-pinned");
    assert_eq!(events[0]["pinned_by"], "publisher-key");
    assert_eq!(events[1]["trust"], "publisher-key");
    // A key named by its text works the same; another key is refused.
    let b_key = std::fs::read_to_string(s.root.join("b.key.pub")).unwrap();
    let b_key = b_key
        .lines()
        .find_map(|l| l.strip_prefix("public-key: "))
        .unwrap();
    let (code, _, stderr) = run(
        &s.root,
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--publisher-key",
            b_key,
            "--keyring",
            "other.keyring",
        ],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(&format!("--publisher-key names key {}", s.key_b))
            && stderr.contains(&format!("signed by key {}", s.key_a)),
        "{stderr}"
    );
    // A secret key file is not read where a public key will do.
    let (code, _, stderr) = run(
        &s.root,
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--publisher-key",
            "a.key",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("is a secret key file"), "{stderr}");
    // A key file that is not there is invalid input too (exit 3), as for
    // every command that takes one.
    for args in [
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--publisher-key",
            "missing.pub",
        ][..],
        &["key", "pin", "somebody", "missing.pub"][..],
    ] {
        let (code, _, stderr) = run(&s.root, args);
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stderr.contains("missing.pub is neither"), "{stderr}");
    }
    // An empty file: the error names the public key file's format, not
    // only the secret one's.
    std::fs::write(s.root.join("empty.pub"), b"").unwrap();
    let (code, _, stderr) = run(
        &s.root,
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--publisher-key",
            "empty.pub",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("empty.pub is not a key file")
            && stderr.contains("format: minimodel-public-key-v1"),
        "{stderr}"
    );
    // So is a secret key file that is not there.
    let (code, _, stderr) = run(
        &s.root,
        &[
            "sign",
            "art.manifest",
            "--key",
            "missing.key",
            "-o",
            "never.manifest",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("missing.key: no such key file"), "{stderr}");
    assert!(!s.root.join("never.manifest").exists());

    // Unsigned: works and says so, unless signatures are required.
    let said = ok(
        &s.root,
        &[
            "verify",
            "art.manifest",
            "art.slm",
            "--keyring",
            "other.keyring",
        ],
    )
    .join("\n");
    assert!(said.contains("manifest unsigned"), "{said}");
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(s.root.join("sig.receipt.json")).unwrap()).unwrap();
    assert_eq!(
        receipt["signature"],
        serde_json::json!({"status": "unsigned"})
    );
    let entry: Value = serde_json::from_str(
        &ok(
            &s.root,
            &[
                "catalog-entry",
                "art.manifest",
                "--keyring",
                "other.keyring",
            ],
        )
        .join("\n"),
    )
    .unwrap();
    assert_eq!(
        entry["signature"],
        serde_json::json!({"status": "unsigned"})
    );
    let entry: Value = serde_json::from_str(
        &ok(
            &s.root,
            &[
                "catalog-entry",
                "signed-b.manifest",
                "--keyring",
                "other.keyring",
            ],
        )
        .join("\n"),
    )
    .unwrap();
    assert_eq!(entry["signature"]["status"], "signed");
    assert_eq!(entry["signature"]["key_id"], s.key_b);
    assert!(entry["signature"].get("trust").is_none(), "{entry}");
    for command in [
        &["verify", "art.manifest", "art.slm"][..],
        &[
            "fetch",
            "art.manifest",
            "--peer",
            NOBODY,
            "-o",
            "out",
            "--yes",
        ][..],
    ] {
        let mut args = command.to_vec();
        args.extend(["--require-signature", "--keyring", "other.keyring"]);
        let (code, _, stderr) = run(&s.root, &args);
        assert_eq!(code, 4, "{command:?}: {stderr}");
        assert!(
            stderr.contains("unsigned, and --require-signature refuses"),
            "{stderr}"
        );
    }
    assert!(!s.root.join("out").exists());
    assert!(!s.root.join("other.keyring").exists(), "nothing to pin");
}

// Unix modes (scripts/windows-tests): the ACL check is
// swarm's platform::tests::a_file_open_to_others_is_refused.
#[cfg(unix)]
#[test]
fn key_files_are_never_replaced_and_read_only_when_protected() {
    let s = Signed::make();
    let before = std::fs::read(s.root.join("a.key")).unwrap();
    let (code, _, stderr) = run(&s.root, &["key", "new", "a.key"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("never replaced"), "{stderr}");
    assert_eq!(std::fs::read(s.root.join("a.key")).unwrap(), before);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.root.join("a.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = run(&s.root, &["sign", "art.manifest", "--key", "a.key"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    // Nothing was signed in place.
    assert!(
        std::fs::read_to_string(&s.artifact.manifest_path)
            .unwrap()
            .starts_with("format: minimodel-manifest-v0\n")
    );
    let (code, _, stderr) = run(&s.root, &["key", "show", "a.key"]);
    assert_eq!(code, 3, "{stderr}");
    std::fs::set_permissions(s.root.join("a.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let shown = ok(&s.root, &["key", "show", "a.key"]).join("\n");
    assert!(shown.contains(&s.key_a), "{shown}");
    // A keyring that others may write is not trusted.
    std::fs::set_permissions(&s.keyring, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, stderr) = run(
        &s.root,
        &[
            "verify",
            "signed-a.manifest",
            "art.slm",
            "--keyring",
            s.keyring(),
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("chmod 644"), "{stderr}");
}

// Linux's places (scripts/windows-tests); every system's are
// swarm's platform::places::tests.
#[cfg(target_os = "linux")]
#[test]
fn the_keyring_lives_in_the_users_data_directory_by_default() {
    use resume_support::bin;
    use std::process::Command;
    let s = Signed::make();
    let home = s.root.join("home");
    let data = s.root.join("data");
    for (vars, expected) in [
        (
            vec![("HOME", home.clone())],
            home.join(".local/share/minimodel/keyring"),
        ),
        (
            vec![("HOME", home.clone()), ("XDG_DATA_HOME", data.clone())],
            data.join("minimodel/keyring"),
        ),
    ] {
        let mut command = Command::new(bin());
        command
            .current_dir(&s.root)
            .args(["key", "pin", "acme", "a.key.pub"])
            .env_remove("XDG_DATA_HOME");
        for (name, value) in &vars {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(expected.to_str().unwrap()),
            "the message names the keyring"
        );
        let text = std::fs::read_to_string(&expected).unwrap();
        assert!(text.contains("pin: acme mmpk1"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(expected.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    // With no home at all there is no keyring: nothing to pin into.
    let output = Command::new(bin())
        .current_dir(&s.root)
        .args(["key", "pin", "acme", "a.key.pub"])
        .env_remove("HOME")
        .env_remove("XDG_DATA_HOME")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--keyring"));
}

/// The prompt on a terminal: a pseudo-terminal, Unix's own
/// (scripts/windows-tests).
#[cfg(unix)]
mod at_prompt {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;
    use resume_support::{HANG, bin};

    /// A `minimodel` whose stdin and stderr are a pseudo-terminal (a person
    /// at the prompt); stdout is piped.
    struct AtPrompt {
        child: std::process::Child,
        master: File,
        screen: Arc<Mutex<Vec<u8>>>,
    }

    impl AtPrompt {
        fn spawn(dir: &Path, args: &[&str]) -> AtPrompt {
            use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
            let master =
                openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("a pseudo-terminal");
            // Not in the flags: macOS has no O_CLOEXEC for posix_openpt.
            rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC).unwrap();
            grantpt(&master).unwrap();
            unlockpt(&master).unwrap();
            let name = ptsname(&master, Vec::new()).unwrap();
            let slave = || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(name.to_str().unwrap())
                    .expect("the pty's slave side")
            };
            let child = Command::new(bin())
                .current_dir(dir)
                .args(args)
                .stdin(Stdio::from(slave()))
                .stdout(Stdio::piped())
                .stderr(Stdio::from(slave()))
                .spawn()
                .expect("the binary starts");
            let master = File::from(master);
            let screen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&screen);
            let mut reader = master.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            AtPrompt {
                child,
                master,
                screen,
            }
        }

        fn screen(&self) -> String {
            String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
        }

        /// Waits for the question, answers it, and returns the exit code and
        /// what the terminal showed.
        fn answer(mut self, answer: &str) -> (i32, String, String) {
            let started = Instant::now();
            while !self.screen().contains("[y/N]") {
                assert!(started.elapsed() < HANG, "no prompt: {}", self.screen());
                assert!(
                    self.child.try_wait().unwrap().is_none(),
                    "ended without asking: {}",
                    self.screen()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            self.master.write_all(answer.as_bytes()).unwrap();
            let status = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status;
                }
                assert!(started.elapsed() < HANG, "still running: {}", self.screen());
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut stdout = String::new();
            if let Some(mut pipe) = self.child.stdout.take() {
                pipe.read_to_string(&mut stdout).unwrap();
            }
            (status.code().unwrap(), self.screen(), stdout)
        }
    }

    #[test]
    fn at_the_prompt_a_first_seen_key_is_named_as_such_and_pinned_only_on_yes() {
        let s = Signed::make();
        let keyring = s.root.join("prompt.keyring");
        let args = [
            "fetch",
            "signed-a.manifest",
            "--peer",
            NOBODY,
            "-o",
            "out",
            "--give-up-after",
            "1s",
            "--keyring",
            keyring.to_str().unwrap(),
        ];
        let (code, screen, _) = AtPrompt::spawn(&s.root, &args).answer("n\n");
        assert_eq!(code, 5, "{screen}");
        assert!(
            screen.contains(&format!("Trust key {} (mmpk1", s.key_a))
                && screen.contains("as publisher acme's, seen for the first time, and pin it in"),
            "the prompt says it is the first time: {screen}"
        );
        assert!(!keyring.exists(), "no means nothing pinned");
        assert!(!s.root.join("out").exists());

        let (code, screen, stdout) = AtPrompt::spawn(&s.root, &args).answer("y\n");
        // The peer never answers: the fetch gives up (exit 1), after the pin.
        assert_eq!(code, 1, "{screen}\n{stdout}");
        assert!(
            stdout.contains("first seen now; accepted at the prompt"),
            "{stdout}"
        );
        let text = std::fs::read_to_string(&keyring).unwrap();
        assert!(text.contains(" first-use "), "{text}");
    }
}
