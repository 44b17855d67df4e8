//! Fetches from mirrors on loopback: the test HTTPS server of the
//! `testing` feature (`minimodel_swarm::mirror::test_server`), trusted
//! through its own test authority, honest or lying.

mod common;

use std::time::Duration;

use bytes::Bytes;
use minimodel_node::mirror::{MirrorEnd, MirrorFault, MirrorUnusable};
use minimodel_swarm::Fetched;
use minimodel_swarm::mirror::test_server::{Lie, TestMirror};
use minimodel_swarm::mirror::{MirrorSet, MirrorTokens, Trust};
use minimodel_swarm::node::NodeReport;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::merkle::{MerkleTree, chunk_list_text};
use minimodel_verifier::mirror_url::{MirrorUrl, Plain};
use minimodel_verifier::receipt::{MirrorContribution, ReceiptSource, TransferSummary};
use tokio::sync::mpsc;

/// A fixture, its bytes and its chunk list.
struct Served {
    _dir: tempfile::TempDir,
    artifact: common::Artifact,
    bytes: Bytes,
    chunk_list: Bytes,
}

fn served(name: &str, size: u64, chunk: u32) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), name, size, chunk);
    let bytes = Bytes::from(std::fs::read(&artifact.path).unwrap());
    let hashes: Vec<Sha256Digest> = bytes.chunks(chunk as usize).map(Sha256Digest::of).collect();
    let tree = MerkleTree::from_chunk_hashes(hashes).unwrap();
    assert_eq!(tree.root(), artifact.manifest.chunks.merkle_root);
    Served {
        _dir: dir,
        artifact,
        bytes,
        chunk_list: Bytes::from(chunk_list_text(tree.chunk_hashes())),
    }
}

fn set(urls: &[String]) -> MirrorSet {
    MirrorSet {
        trust: Trust::TestRoots(TestMirror::roots()),
        ..MirrorSet::new(
            urls.iter()
                .map(|url| MirrorUrl::parse(url, Plain::Refused).unwrap())
                .collect(),
        )
    }
}

/// Fetches `served` into a new directory from `mirrors` alone; the
/// outcome and every report.
async fn fetch_from(
    served: &Served,
    mirrors: MirrorSet,
) -> (Fetched, Vec<NodeReport>, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let (reports, mut received) = mpsc::unbounded_channel();
    let fetch = minimodel_swarm::fetch(served.artifact.manifest.clone(), out.path())
        .mirrors(mirrors)
        .give_up_after(Duration::from_secs(20))
        .reports(reports)
        .run();
    let fetched = tokio::time::timeout(Duration::from_secs(120), fetch)
        .await
        .expect("the fetch ends in time")
        .expect("the fetch succeeds");
    let mut all = Vec::new();
    while let Ok(report) = received.try_recv() {
        all.push(report);
    }
    (fetched, all, out)
}

fn delivered(fetched: &Fetched) -> &minimodel_swarm::fetch::FetchOutcome {
    match fetched {
        Fetched::Downloaded(outcome) => outcome,
        Fetched::AlreadyComplete(_) => panic!("the directory was empty"),
    }
}

fn ends(reports: &[NodeReport]) -> Vec<(u16, MirrorEnd)> {
    reports
        .iter()
        .filter_map(|report| match report {
            NodeReport::MirrorEnded { mirror, end, .. } => Some((mirror.0, end.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_alone_delivers_the_file_through_ranges_of_whole_chunks() {
    let served = served("mirror-alone", 6 << 20, 256 << 10);
    let mirror = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let (fetched, reports, _out) = fetch_from(&served, set(&[mirror.url()])).await;
    let outcome = delivered(&fetched);
    assert_eq!(std::fs::read(&outcome.artifact_path).unwrap(), served.bytes);
    assert!(ends(&reports).is_empty(), "{:?}", ends(&reports));
    assert!(
        reports.iter().any(
            |report| matches!(report, NodeReport::MirrorUp { label, .. } if *label == mirror.url())
        ),
        "the mirror joined under its label"
    );
    // Every byte once, and the probe's one byte.
    assert_eq!(mirror.body_bytes(), (6 << 20) + 1);
    // The receipt names the mirror as the source of every chunk.
    let summary = summary(outcome);
    assert!(summary.peers.is_empty());
    assert_eq!(
        summary.mirrors,
        [MirrorContribution {
            url: mirror.url(),
            chunks: 24,
            bytes: 6 << 20,
            bad_chunks: 0,
            blamed: false,
            left: None,
        }]
    );
}

fn summary(outcome: &minimodel_swarm::fetch::FetchOutcome) -> &TransferSummary {
    match &outcome.receipt.source {
        ReceiptSource::Peers(summary) => summary,
        other => panic!("a download's receipt: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_https_is_followed_and_remembered() {
    let served = served("mirror-moved", 4 << 20, 256 << 10);
    let mirror = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    mirror.redirect(true);
    let (fetched, reports, _out) = fetch_from(&served, set(&[mirror.url()])).await;
    assert_eq!(
        std::fs::read(&delivered(&fetched).artifact_path).unwrap(),
        served.bytes
    );
    assert!(ends(&reports).is_empty());
    // The chunk list, the probe (redirected, then moved), sixteen ranges
    // asked where the redirect led: no redirect per range.
    assert!(
        mirror.requests() <= 1 + 2 + 16 + 1,
        "{} requests",
        mirror.requests()
    );
}

/// Four mirrors that lie and one that does not: each liar is dropped with
/// its reason, the download completes from the honest one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_mirrors_are_dropped_with_their_reasons_and_the_honest_one_delivers() {
    let chunk = 256 << 10;
    let served = served("mirror-liars", 8 << 20, chunk);
    let start = |lie: Lie| {
        let (bytes, list) = (served.bytes.clone(), served.chunk_list.clone());
        async move {
            let mirror = TestMirror::start(bytes, Some(list)).await.unwrap();
            mirror.lie(lie);
            mirror
        }
    };
    // Every range of the wrong-range liar is wrong: whichever chunk it is
    // asked for first fails its check.
    let wrong = start(Lie::WrongRanges).await;
    let ignores = start(Lie::IgnoresRange).await;
    let insecure = start(Lie::RedirectsToHttp).await;
    // Another file: same chunk list, another length.
    let other = TestMirror::start(
        served.bytes.slice(..(3 << 20)),
        Some(served.chunk_list.clone()),
    )
    .await
    .unwrap();
    // The honest mirror sends its chunks only once every liar is judged:
    // a fast one could deliver the whole file before a liar's probe is
    // answered, and a mirror not yet heard from is not in the receipt.
    let honest = start(Lie::None).await;
    honest.hold(true);
    let mirrors = [&wrong, &ignores, &insecure, &other, &honest];
    let urls: Vec<String> = mirrors.iter().map(|m| m.url()).collect();
    let out = tempfile::tempdir().unwrap();
    let (sent, mut received) = mpsc::unbounded_channel();
    let fetch = tokio::spawn(
        minimodel_swarm::fetch(served.artifact.manifest.clone(), out.path())
            .mirrors(set(&urls))
            .give_up_after(Duration::from_secs(60))
            .reports(sent)
            .run(),
    );
    let mut reports = Vec::new();
    let judged = tokio::time::timeout(Duration::from_secs(60), async {
        while ends(&reports).len() < 4 {
            match received.recv().await {
                Some(report) => reports.push(report),
                None => break,
            }
        }
    })
    .await;
    assert!(
        judged.is_ok() && ends(&reports).len() == 4,
        "the four liars are dropped while the honest mirror holds its chunks: {:?}",
        ends(&reports)
    );
    honest.hold(false);
    let fetched = tokio::time::timeout(Duration::from_secs(120), fetch)
        .await
        .expect("the fetch ends in time")
        .expect("the fetch task runs to its end")
        .expect("the fetch succeeds");
    while let Ok(report) = received.try_recv() {
        reports.push(report);
    }
    assert_eq!(
        std::fs::read(&delivered(&fetched).artifact_path).unwrap(),
        served.bytes
    );
    let ends = ends(&reports);
    let end_of = |id: u16| {
        ends.iter()
            .find(|(mirror, _)| *mirror == id)
            .map(|(_, end)| end.clone())
    };
    match end_of(0) {
        Some(MirrorEnd::Dropped {
            fault: MirrorFault::BadChunk { expected, got, .. },
        }) => assert_ne!(expected, got),
        other => panic!("wrong-range mirror: {other:?} ({ends:?})"),
    }
    assert!(
        matches!(
            end_of(1),
            Some(MirrorEnd::Dropped {
                fault: MirrorFault::IgnoredRange { .. }
            })
        ),
        "{ends:?}"
    );
    match end_of(2) {
        Some(MirrorEnd::Dropped {
            fault: MirrorFault::BadRedirect { to, why },
        }) => {
            assert!(to.starts_with("http://127.0.0.1"), "{to}");
            assert!(why.contains("HTTPS"), "{why}");
        }
        other => panic!("redirect to http: {other:?}"),
    }
    assert!(
        matches!(
            end_of(3),
            Some(MirrorEnd::Dropped {
                fault: MirrorFault::OtherLength { .. }
            })
        ),
        "{ends:?}"
    );
    assert_eq!(end_of(4), None, "the honest mirror stays");
    assert!(honest.body_bytes() > 0);
    // The receipt lists all five, the liars blamed with their reasons.
    let listed = &summary(delivered(&fetched)).mirrors;
    assert_eq!(listed.len(), 5, "{listed:?}");
    for (entry, url) in listed.iter().zip(&urls) {
        assert_eq!(entry.url, *url);
    }
    let blamed: Vec<bool> = listed.iter().map(|entry| entry.blamed).collect();
    assert_eq!(blamed, [true, true, true, true, false]);
    assert_eq!(listed[0].bad_chunks, 1);
    assert!(
        listed[2]
            .left
            .as_deref()
            .is_some_and(|why| why.contains("HTTPS"))
    );
    assert_eq!(
        listed.iter().map(|entry| entry.chunks).sum::<u64>(),
        32,
        "every chunk from one mirror or another"
    );
}

/// Stopped in the middle and run again: no chunk verified in the first
/// run is asked again, and a mirror whose file changed in between
/// (another ETag) is dropped as serving another file; the other mirror
/// finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_fetch_asks_no_verified_chunk_again_and_notices_a_changed_mirror() {
    let chunk = 256u64 << 10;
    let served = served("mirror-resume", 8 << 20, chunk as u32);
    let steady = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let changing = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let urls = [steady.url(), changing.url()];
    let out = tempfile::tempdir().unwrap();
    // The first run, capped so that it takes seconds, is stopped once a
    // quarter of the chunks are verified.
    let (reports, mut received) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn(async move {
        while let Some(report) = received.recv().await {
            if let NodeReport::Progress {
                verified_chunks, ..
            } = report
                && verified_chunks >= 8
            {
                let _ = stop.send(());
                return;
            }
        }
    });
    let first = minimodel_swarm::fetch(served.artifact.manifest.clone(), out.path())
        .mirrors(set(&urls))
        .max_download(2 << 20)
        .reports(reports)
        .run_until(async {
            let _ = stopped.await;
        });
    let first = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("stops in time");
    assert!(
        matches!(first, Err(minimodel_swarm::fetch::FetchError::Interrupted)),
        "{first:?}"
    );
    watch.abort();
    let remembered = std::fs::read(out.path().join("mirror-resume.slm.mirrors"))
        .expect("what the run saw of its mirrors is kept");
    let remembered = minimodel_swarm::resume::parse_mirrors_file(&remembered).unwrap();
    assert!(
        remembered.iter().any(|entry| entry.label == changing.url()
            && entry.validators.etag.as_deref() == Some("\"v1\"")),
        "{remembered:?}"
    );
    let before = steady.body_bytes() + changing.body_bytes();
    // Between the runs, one mirror's file changes.
    changing.set_etag("\"v2\"");
    let (fetched, reports, _) = {
        let (reports, mut received) = mpsc::unbounded_channel();
        // Capped as well: uncapped, the steady mirror can deliver the
        // rest before the changed one's first answer is read, and the
        // change goes unnoticed because nothing more is asked of it.
        let fetched = minimodel_swarm::fetch(served.artifact.manifest.clone(), out.path())
            .mirrors(set(&urls))
            .max_download(2 << 20)
            .give_up_after(Duration::from_secs(20))
            .reports(reports)
            .run();
        let fetched = tokio::time::timeout(Duration::from_secs(120), fetched)
            .await
            .expect("ends in time")
            .expect("the second run delivers");
        let mut all = Vec::new();
        while let Ok(report) = received.try_recv() {
            all.push(report);
        }
        (fetched, all, ())
    };
    let outcome = delivered(&fetched);
    assert_eq!(std::fs::read(&outcome.artifact_path).unwrap(), served.bytes);
    let summary = summary(outcome);
    assert!(summary.chunks_resumed >= 8, "{summary:?}");
    assert_eq!(summary.chunks_resumed + summary.chunks_fetched, 32);
    // The second run asked for exactly the chunks the first had not
    // verified, and each mirror's one-byte probe.
    let after = steady.body_bytes() + changing.body_bytes() - before;
    assert_eq!(
        after,
        summary.chunks_fetched * chunk + 2,
        "no verified chunk asked again"
    );
    let ends = ends(&reports);
    assert!(
        matches!(
            ends.as_slice(),
            [(1, MirrorEnd::Dropped { fault: MirrorFault::Changed { validator: "ETag", before, now } })]
                if before == "\"v1\"" && now == "\"v2\""
        ),
        "{ends:?}"
    );
}

/// A mirror whose every range is wrong, alone: dropped at its first
/// chunk, naming the chunk, what the chunk list expected and what came;
/// with nothing else to fetch from, the fetch gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_range_drops_its_mirror_naming_chunk_expected_and_got() {
    let chunk_size = 256 << 10;
    let served = served("mirror-wrong", 2 << 20, chunk_size);
    let liar = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    liar.lie(Lie::WrongRanges);
    let out = tempfile::tempdir().unwrap();
    let (reports, mut received) = mpsc::unbounded_channel();
    let fetch = minimodel_swarm::fetch(served.artifact.manifest.clone(), out.path())
        .mirrors(set(&[liar.url()]))
        .give_up_after(Duration::from_secs(2))
        .reports(reports)
        .run();
    let result = tokio::time::timeout(Duration::from_secs(60), fetch)
        .await
        .expect("ends in time");
    assert!(result.is_err(), "nothing good to fetch from");
    let mut all = Vec::new();
    while let Ok(report) = received.try_recv() {
        all.push(report);
    }
    let ends = ends(&all);
    let [
        (
            0,
            MirrorEnd::Dropped {
                fault:
                    MirrorFault::BadChunk {
                        chunk,
                        expected,
                        got,
                    },
            },
        ),
    ] = ends.as_slice()
    else {
        panic!("{ends:?}");
    };
    let start = *chunk as usize * chunk_size as usize;
    let mut wrong = served.bytes[start..start + chunk_size as usize].to_vec();
    assert_eq!(*expected, Sha256Digest::of(&wrong), "the chunk list's hash");
    wrong[0] ^= 0xFF;
    assert_eq!(*got, Sha256Digest::of(&wrong), "the hash of what came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_chunk_list_a_mirror_is_not_used() {
    let served = served("mirror-no-list", 2 << 20, 256 << 10);
    let mirror = TestMirror::start(served.bytes.clone(), None).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let (reports, mut received) = mpsc::unbounded_channel();
    let fetch = minimodel_swarm::fetch(served.artifact.manifest.clone(), out.path())
        .mirrors(set(&[mirror.url()]))
        .give_up_after(Duration::from_secs(2))
        .reports(reports)
        .run();
    let result = tokio::time::timeout(Duration::from_secs(60), fetch)
        .await
        .expect("ends in time");
    assert!(result.is_err(), "nothing to fetch from");
    let mut all = Vec::new();
    while let Ok(report) = received.try_recv() {
        all.push(report);
    }
    let ends = ends(&all);
    assert!(
        matches!(
            ends.as_slice(),
            [(
                0,
                MirrorEnd::Unusable {
                    reason: MirrorUnusable::NoChunkList { .. }
                }
            )]
        ),
        "{ends:?}"
    );
    assert_eq!(mirror.body_bytes(), 0, "no byte of the artifact was asked");
}

/// A token goes with requests to its origin and nowhere else: not to the
/// host a redirect leads to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_goes_to_its_host_only() {
    let served = served("mirror-token", 1 << 20, 256 << 10);
    let mirror = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let port = mirror.addr().port();
    // The same server under another name.
    mirror.redirect_to(&format!("https://localhost:{port}/moved/model.slm"));
    let tokens = MirrorTokens::parse(&format!("127.0.0.1:{port}=s3cret")).unwrap();
    let mirrors = MirrorSet {
        tokens,
        ..set(&[mirror.url()])
    };
    let (fetched, _, _out) = fetch_from(&served, mirrors).await;
    delivered(&fetched);
    let seen = mirror.authorizations();
    let here = format!("127.0.0.1:{port}");
    let there = format!("localhost:{port}");
    assert!(seen.iter().any(|(host, _)| *host == here), "{seen:?}");
    assert!(seen.iter().any(|(host, _)| *host == there), "{seen:?}");
    for (host, authorization) in &seen {
        if *host == here {
            assert_eq!(authorization.as_deref(), Some("Bearer s3cret"));
        } else {
            assert_eq!(*authorization, None, "to {host}");
        }
    }
}

/// A token is bound to its origin's port too: a redirect from the token's
/// server to another port of the same host carries none, on any request,
/// and a token named for the host alone (port 443) goes to neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_does_not_follow_a_redirect_to_another_port_of_its_host() {
    let served = served("mirror-token-port", 1 << 20, 256 << 10);
    let first = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let second = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let (port, other_port) = (first.addr().port(), second.addr().port());
    assert_ne!(port, other_port);
    assert!(
        second
            .url()
            .starts_with(&format!("https://127.0.0.1:{other_port}/"))
    );
    first.redirect_to(&second.url());
    let tokens = MirrorTokens::parse(&format!("127.0.0.1:{port}=s3cret")).unwrap();
    let mirrors = MirrorSet {
        tokens,
        ..set(&[first.url()])
    };
    let (fetched, _, _out) = fetch_from(&served, mirrors).await;
    delivered(&fetched);
    let asked_first = first.authorizations();
    let asked_second = second.authorizations();
    assert!(!asked_first.is_empty() && !asked_second.is_empty());
    for (host, authorization) in &asked_first {
        assert_eq!(authorization.as_deref(), Some("Bearer s3cret"), "to {host}");
    }
    for (host, authorization) in &asked_second {
        assert_eq!(*authorization, None, "to {host}");
    }
    // The host alone means port 443: neither server gets it.
    let third = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    let mirrors = MirrorSet {
        tokens: MirrorTokens::parse("127.0.0.1=s3cret").unwrap(),
        ..set(&[third.url()])
    };
    let (fetched, _, _out) = fetch_from(&served, mirrors).await;
    delivered(&fetched);
    let asked = third.authorizations();
    assert!(!asked.is_empty());
    assert!(
        asked
            .iter()
            .all(|(_, authorization)| authorization.is_none()),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tickets_manifest_comes_from_beside_its_mirror_when_its_peer_is_silent() {
    use minimodel_swarm::app::ticket::{ManifestSource, MirrorAccess, manifest_of_sources};
    use minimodel_swarm::peers::PeerAddrs;
    use minimodel_swarm::ticket::Ticket;
    use minimodel_swarm::transport::{Identity, TransportTuning};

    let served = served("ticketed", 1 << 20, 256 << 10);
    let manifest = Bytes::from(served.artifact.manifest.to_text().into_bytes());
    let mirror = TestMirror::start(served.bytes.clone(), Some(served.chunk_list.clone()))
        .await
        .unwrap();
    mirror.set_manifest(manifest.clone());
    let url = MirrorUrl::parse(&mirror.url(), Plain::Refused).unwrap();
    // A publisher's seeder at home, offline: its address never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let identity = Identity::generate().unwrap();
    let ticket = Ticket::with_sources(
        Sha256Digest::of(&manifest),
        None,
        vec![PeerAddrs {
            id: identity.peer_id(),
            addrs: vec![silent.local_addr().unwrap()],
        }],
        vec![url.clone()],
    )
    .unwrap();
    let access = MirrorAccess {
        trust: Trust::TestRoots(TestMirror::roots()),
        ..MirrorAccess::default()
    };
    let tuning = TransportTuning::default();
    let ask = |ticket: Ticket| {
        let (identity, tuning, access) = (&identity, &tuning, &access);
        async move {
            manifest_of_sources(
                &ticket,
                identity,
                tuning,
                Duration::from_secs(30),
                // Bounds the wait for the silent peer when nothing answers.
                Some(Duration::from_secs(6)),
                access,
            )
            .await
        }
    };
    // The mirror is asked half a second after the peer, without waiting
    // for the silent peer to time out.
    let got = ask(ticket.clone()).await.expect("the mirror has it");
    assert_eq!(got.bytes[..], manifest[..]);
    assert_eq!(
        got.from,
        ManifestSource::Mirror(format!("{}.manifest", mirror.url()))
    );

    // Beside a mirror that has another manifest: refused as wrong bytes,
    // the peer's and the mirror's words both said.
    mirror.set_manifest(Bytes::from_static(b"format: minimodel-manifest-v0\n"));
    let error = ask(ticket.clone()).await.expect_err("another manifest");
    assert!(error.wrong_bytes, "{error}");
    assert_eq!(error.tried.len(), 1);
    assert!(
        error.mirrors_tried[0].1.contains("serves another manifest"),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.starts_with("neither a peer nor a mirror"), "{text}");

    // Beside a mirror that has none (404): not wrong bytes, and said.
    let bare = TestMirror::start(served.bytes.clone(), None).await.unwrap();
    let only_bare = Ticket::with_sources(
        Sha256Digest::of(&manifest),
        None,
        Vec::new(),
        vec![MirrorUrl::parse(&bare.url(), Plain::Refused).unwrap()],
    )
    .unwrap();
    let error = ask(only_bare).await.expect_err("no manifest there");
    assert!(!error.wrong_bytes, "{error}");
    assert!(error.tried.is_empty());
    assert!(error.to_string().contains("404"), "{error}");
    drop(silent);
}
