//! Tickets through the binary (`docs/formats.md`, "Ticket"): a seeder and
//! a serving fetch print theirs, `ticket new` makes the same one from the
//! seeder's offer, `ticket show` reads it back; a signed manifest's ticket
//! names its key, an unsigned one's does not; a mangled ticket is invalid
//! input. `fetch TICKET`, given nothing but the ticket, fetches the
//! manifest from the ticket's peer (the file's own bytes, comments and
//! all), then the artifact, verified; a ticket whose key is not the
//! manifest's, or whose digest nobody serves, fetches nothing.

mod resume_support;

use resume_support::{Artifact, Proc, Seeders, fetch_args, ok, run};
use serde_json::Value;

fn json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn sha256_hex(path: &std::path::Path) -> String {
    minimodel_verifier::Sha256Digest::of(&std::fs::read(path).unwrap()).to_hex()
}

#[test]
fn a_seeders_ticket_names_its_manifest_and_itself_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "tick", "2MiB", "256KiB", 3);
    let mut seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let seeder = &mut seeders.procs[0];
    assert!(seeder.wait_for("the ticket", |events| {
        events.iter().any(|e| e["event"] == "ticket")
    }));
    let event = seeder.event("ticket").unwrap();
    let offer: Value = serde_json::from_slice(&std::fs::read(&seeders.offers[0]).unwrap()).unwrap();
    let ticket = event["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("mm1"), "{ticket}");
    assert_eq!(
        event["manifest_sha256"],
        sha256_hex(&artifact.manifest_path)
    );
    assert!(event["key_id"].is_null(), "unsigned: {event}");
    let peer = event["peers"][0].as_str().unwrap();
    assert!(
        peer.starts_with(&format!("{}@", offer["peer_id"].as_str().unwrap())),
        "{peer}"
    );

    // The same ticket from the offer, and read back.
    let manifest = artifact.manifest_path.to_str().unwrap();
    let offer_path = seeders.offers[0].to_str().unwrap();
    let made = ok(root, &["ticket", "new", manifest, "--offer", offer_path]);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0], ticket);
    let shown = json(&ok(root, &["ticket", "show", &ticket, "--json"]));
    assert_eq!(shown[0]["ticket"], ticket);
    assert_eq!(shown[0]["peers"], event["peers"]);
    // With a mirror beside the peer: both, the mirror after the peers.
    let mirrored = ok(
        root,
        &[
            "ticket",
            "new",
            manifest,
            "--offer",
            offer_path,
            "--mirror",
            "https://models.example.org/tick.slm",
        ],
    );
    let shown = json(&ok(root, &["ticket", "show", &mirrored[0], "--json"]));
    assert_eq!(shown[0]["peers"], event["peers"]);
    assert_eq!(
        shown[0]["mirrors"],
        serde_json::json!(["https://models.example.org/tick.slm"])
    );
    assert_eq!(shown[0]["reach"], "anywhere", "a mirror by name: {shown:?}");
    // A seeder refuses a mirror its ticket could not carry, before
    // anything else.
    let (code, _, stderr) = run(
        root,
        &[
            "seed",
            manifest,
            "nothing-here.slm",
            "--mirror",
            "https://models.example.org/tick.slm?sig=secret",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("carries no query") && !stderr.contains("secret"),
        "{stderr}"
    );
    let upper = ok(root, &["ticket", "show", &ticket.to_uppercase()]).join("\n");
    assert!(
        upper.contains("unsigned") && upper.contains(peer),
        "{upper}"
    );

    // A serving fetch prints its own, naming itself.
    let out = root.join("out");
    let mut fetch = Proc::spawn(
        root,
        &fetch_args(
            &artifact,
            &seeders,
            &out,
            &["--serve", "--listen", "127.0.0.1:0", "--json"],
        ),
    );
    fetch.expect_exit(0);
    let tickets: Vec<Value> = fetch
        .events()
        .into_iter()
        .filter(|e| e["event"] == "ticket")
        .collect();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let offer = fetch.event("offer").unwrap();
    assert!(
        tickets[0]["peers"][0]
            .as_str()
            .unwrap()
            .starts_with(offer["peer_id"].as_str().unwrap()),
        "{tickets:?}"
    );

    // Mangled, or naming more peers than a ticket holds: refused.
    let mut typo: Vec<char> = ticket.chars().collect();
    typo[30] = if typo[30] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let (code, _, stderr) = run(root, &["ticket", "show", &typo]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("mistyped, cut or changed"), "{stderr}");
    let (code, _, stderr) = run(root, &["ticket", "show", "magnet:?xt=urn:btih:00"]);
    assert_eq!(code, 3, "{stderr}");
    let mut five = vec!["ticket", "new", manifest];
    let ids: Vec<String> = (0..5u8)
        .map(|n| {
            format!(
                "{}@127.0.0.1:{}",
                minimodel_wire::PeerId([n; 32]),
                4000 + u16::from(n)
            )
        })
        .collect();
    for id in &ids {
        five.extend(["--peer", id]);
    }
    let (code, _, stderr) = run(root, &five);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a ticket names 1 to 4"), "{stderr}");

    // One peer at six addresses (written as `ticket show` prints a
    // peer): the fifth and sixth are left out, and both outputs name them.
    let id = minimodel_wire::PeerId([9; 32]);
    let addrs: Vec<String> = (1..=6).map(|n| format!("127.0.0.1:{}", 5000 + n)).collect();
    let peer = format!("{id}@{}", addrs.join(","));
    let (code, lines, stderr) = run(root, &["ticket", "new", manifest, "--peer", &peer]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("left out 2 addresses")
            && stderr.contains(&format!("{id}@{}, {id}@{}", addrs[4], addrs[5])),
        "{stderr}"
    );
    let shown = ok(root, &["ticket", "show", &lines[0]]).join("\n");
    assert!(
        shown.contains(&format!("{id}@{}", addrs[..4].join(","))),
        "{shown}"
    );
    let made = json(&ok(
        root,
        &["ticket", "new", manifest, "--peer", &peer, "--json"],
    ));
    assert_eq!(
        made[0]["left_out"],
        serde_json::json!([format!("{id}@{}", addrs[4]), format!("{id}@{}", addrs[5])])
    );
    // Pasted with blanks around it, `ticket show` reads it too.
    let pasted = format!(" {}\n", lines[0]);
    assert!(
        ok(root, &["ticket", "show", &pasted])
            .join("\n")
            .contains(&addrs[0])
    );
}

#[test]
fn a_signed_manifests_ticket_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "tick", "2MiB", "256KiB", 3);
    let key = json(&ok(root, &["key", "new", "p.key", "--json"]));
    let manifest = artifact.manifest_path.to_str().unwrap();
    ok(
        root,
        &["sign", manifest, "--key", "p.key", "-o", "signed.manifest"],
    );
    let peer = format!("{}@127.0.0.1:4433", minimodel_wire::PeerId([9; 32]));
    let event = json(&ok(
        root,
        &[
            "ticket",
            "new",
            "signed.manifest",
            "--peer",
            &peer,
            "--json",
        ],
    ));
    assert_eq!(event[0]["key_id"], key[0]["key_id"]);
    assert_eq!(
        event[0]["manifest_sha256"],
        sha256_hex(&root.join("signed.manifest"))
    );
    // A manifest whose signature fails gets no ticket.
    let signed = std::fs::read_to_string(root.join("signed.manifest")).unwrap();
    std::fs::write(
        root.join("tampered.manifest"),
        signed.replace("display-name: tick\n", "display-name: tock\n"),
    )
    .unwrap();
    let (code, _, stderr) = run(
        root,
        &["ticket", "new", "tampered.manifest", "--peer", &peer],
    );
    assert_eq!(code, 4, "{stderr}");
}

/// A ticket of `seeder` (its ticket event) with another digest or key id.
fn forged(
    ticket: &str,
    digest: Option<minimodel_verifier::Sha256Digest>,
    key_id: Option<minimodel_verifier::signing::PublisherKeyId>,
) -> String {
    let mut ticket: minimodel_swarm::ticket::Ticket = ticket.parse().unwrap();
    if let Some(digest) = digest {
        ticket.manifest_sha256 = digest;
    }
    ticket.key_id = key_id.or(ticket.key_id);
    minimodel_swarm::ticket::Ticket::new(ticket.manifest_sha256, ticket.key_id, ticket.peers)
        .unwrap()
        .to_string()
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn fetch_by_ticket_alone_gets_the_manifest_and_the_artifact_verified() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "tick", "2MiB", "256KiB", 5);
    // The publisher's file as it is: a comment the canonical text lacks.
    // The ticket names these bytes, and these bytes are what is sent.
    let mut text = std::fs::read(&artifact.manifest_path).unwrap();
    text.extend_from_slice(b"# published by acme\n");
    std::fs::write(&artifact.manifest_path, &text).unwrap();
    let mut seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let seeder = &mut seeders.procs[0];
    assert!(seeder.wait_for("the ticket", |events| {
        events.iter().any(|e| e["event"] == "ticket")
    }));
    let ticket = seeder.event("ticket").unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        seeder.event("ticket").unwrap()["manifest_sha256"],
        sha256_hex(&artifact.manifest_path)
    );

    // Elsewhere, with nothing but the ticket.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("out");
    let mut fetch = Proc::spawn(
        elsewhere.path(),
        &[
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--json",
        ],
    );
    fetch.expect_exit(0);
    artifact.verify(&out, &out.join("tick.slm"));
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(out.join("tick.receipt.json")).unwrap()).unwrap();
    assert!(
        receipt
            .to_string()
            .contains(&sha256_hex(&artifact.manifest_path)),
        "the receipt names the manifest the ticket named: {receipt}"
    );
    // The seeder saw the query and answered it.
    assert!(seeder.wait_for("the manifest query", |events| {
        events
            .iter()
            .any(|e| e["event"] == "manifest-query" && e.get("refused").is_none())
    }));

    // A ticket for a manifest the peer does not serve: refused by it, and
    // nothing is written.
    let other = forged(
        &ticket,
        Some(minimodel_verifier::Sha256Digest::of(b"another manifest")),
        None,
    );
    let nothing = elsewhere.path().join("nothing");
    let (code, _, stderr) = run(
        elsewhere.path(),
        &["fetch", &other, "-o", nothing.to_str().unwrap(), "--yes"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refused: no such manifest here"),
        "{stderr}"
    );
    assert!(entries(&nothing).is_empty(), "{:?}", entries(&nothing));
    assert!(seeder.wait_for("the refused query", |events| {
        events
            .iter()
            .any(|e| e["event"] == "manifest-query" && e.get("refused").is_some())
    }));

    // A ticket that says a publisher key signed an unsigned manifest:
    // refused before anything else (exit 4), nothing written.
    let key = json(&ok(root, &["key", "new", "p.key", "--json"]));
    let key_id: minimodel_verifier::signing::PublisherKeyId =
        key[0]["key_id"].as_str().unwrap().parse().unwrap();
    let claimed = forged(&ticket, None, Some(key_id));
    let (code, _, stderr) = run(
        elsewhere.path(),
        &["fetch", &claimed, "-o", nothing.to_str().unwrap(), "--yes"],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("not signed by the key the ticket names"),
        "{stderr}"
    );
    assert!(entries(&nothing).is_empty(), "{:?}", entries(&nothing));

    // A mangled ticket is invalid input; a peer that is not there is a
    // transfer failure that says so.
    let (code, _, stderr) = run(
        elsewhere.path(),
        &[
            "fetch",
            "mm1notaticket",
            "-o",
            nothing.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    drop(seeders);
    let (code, _, stderr) = run(
        elsewhere.path(),
        &["fetch", &ticket, "-o", nothing.to_str().unwrap(), "--yes"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no peer of the ticket sent its manifest"),
        "{stderr}"
    );
}

#[test]
fn fetch_by_ticket_of_a_signed_manifest_checks_the_key_and_pins_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "tick", "1MiB", "256KiB", 6);
    let key = json(&ok(root, &["key", "new", "p.key", "--json"]));
    let manifest = artifact.manifest_path.to_str().unwrap().to_owned();
    ok(
        root,
        &["sign", &manifest, "--key", "p.key", "-o", &manifest],
    );
    let mut seeders = Seeders::start(root, &artifact, 1, "64MiB");
    let seeder = &mut seeders.procs[0];
    assert!(seeder.wait_for("the ticket", |events| {
        events.iter().any(|e| e["event"] == "ticket")
    }));
    let event = seeder.event("ticket").unwrap();
    assert_eq!(event["key_id"], key[0]["key_id"]);
    let ticket = event["ticket"].as_str().unwrap().to_owned();

    let elsewhere = tempfile::tempdir().unwrap();
    let keyring = elsewhere.path().join("keyring");
    let out = elsewhere.path().join("out");
    let keyring_arg = keyring.to_str().unwrap();
    // Another key pinned for this publisher: refused with exit 4.
    let other = json(&ok(
        elsewhere.path(),
        &["key", "new", "other.key", "--json"],
    ));
    let other_public = other[0]["public_key"].as_str().unwrap();
    let (code, _, stderr) = run(
        elsewhere.path(),
        &[
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--publisher-key",
            other_public,
            "--keyring",
            keyring_arg,
        ],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(entries(&out).is_empty(), "{:?}", entries(&out));
    // First use: pinned with --yes, and fetched.
    let mut fetch = Proc::spawn(
        elsewhere.path(),
        &[
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--yes",
            "--json",
            "--keyring",
            keyring_arg,
        ],
    );
    fetch.expect_exit(0);
    artifact.verify(&out, &out.join("tick.slm"));
    let pinned = std::fs::read_to_string(&keyring).unwrap();
    assert!(
        pinned.contains(key[0]["public_key"].as_str().unwrap()),
        "{pinned}"
    );
}

/// A seeder that only this host can reach (it listens on loopback) is told
/// so the moment its ticket is printed, in words and in the events: the
/// ticket names only loopback addresses and no relay, and the node's own
/// verdict says who reaches it and what to do. (The lab's `home-alone`
/// shows the same for a publisher behind a home router: only its LAN.)
#[test]
fn a_ticket_only_this_host_can_use_says_so_when_it_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let artifact = Artifact::make(root, "art", "alone", "1MiB", "256KiB", 5);
    let seed = |json: bool| {
        let mut args = vec![
            "seed",
            artifact.manifest_path.to_str().unwrap(),
            artifact.slm.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--yes",
        ];
        if json {
            args.push("--json");
        }
        Proc::spawn(root, &args)
    };
    let mut seeder = seed(true);
    assert!(seeder.wait_for("the verdict", |events| {
        events.iter().any(|e| e["event"] == "reachability")
    }));
    let ticket = seeder.event("ticket").unwrap();
    assert_eq!(ticket["reach"], "host-only", "{ticket}");
    let reach = seeder.event("reachability").unwrap();
    assert_eq!(reach["verdict"], "host-only", "{reach}");
    assert!(
        reach["advice"].as_str().unwrap().contains("--listen"),
        "{reach}"
    );
    seeder.kill9();

    // In words, on stderr, right after the ticket.
    let mut seeder = seed(false);
    let said = |seeder: &Proc| seeder.stderr().contains("reachability:");
    let started = std::time::Instant::now();
    while !said(&seeder) && seeder.sleep_while_running(std::time::Duration::from_millis(50)) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{}",
            seeder.stderr()
        );
    }
    let stderr = seeder.stderr();
    seeder.kill9();
    assert!(
        stderr.contains("warning: this ticket names only loopback addresses")
            && stderr.contains("only this host can use it")
            && stderr.contains("--relay HOST:PORT"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: reachability: only this host reaches it"),
        "{stderr}"
    );
}
