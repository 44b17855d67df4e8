//! `--metrics ADDR` through the binary: a scrape during a fetch returns
//! every series the README documents, and the counters grow between two
//! scrapes.
//!
//! The seeder is stopped (SIGSTOP) and let go (SIGCONT) so that each
//! scrape sees the state the test set: before any chunk could come, and
//! in the middle of the fetch with the seeder connected.

// SIGSTOP and SIGCONT: Unix's own (scripts/windows-tests).
#![cfg(unix)]

mod resume_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use resume_support::{Artifact, HANG, Proc, Seeders, fetch_args};
use rustix::process::Signal;

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap()
}

/// `GET path` on `addr`: the status line and the body; `None` while
/// nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(HANG)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// Scrapes `/metrics` until `ready` holds for the body (the fetch must
/// run meanwhile); the body.
fn scrape_until(fetch: &mut Proc, addr: SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        if let Some((status, body)) = get(addr, "/metrics") {
            assert_eq!(status, "HTTP/1.1 200 OK");
            if ready(&body) {
                return body;
            }
        }
        assert!(
            fetch.try_exit().is_none(),
            "the fetch ended: {}",
            fetch.stderr()
        );
        assert!(
            started.elapsed() < HANG,
            "no such scrape: {}",
            fetch.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The series the README names in its paragraph on `--metrics`: a series
/// added there is checked here without another word.
fn documented_series() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("with `--metrics ADDR`")
        .expect("the README's paragraph on --metrics");
    let paragraph = &readme[start..];
    let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
    let mut series: Vec<String> = paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.starts_with("minimodel_"))
        .map(str::to_owned)
        .collect();
    series.dedup();
    series
}

#[test]
fn the_readme_documents_the_series_this_test_checks() {
    let series = documented_series();
    for name in [
        "minimodel_peers",
        "minimodel_uploaded_bytes_total",
        "minimodel_peer_downloaded_bytes_total",
        "minimodel_peer_uploaded_bytes_total",
    ] {
        assert!(series.iter().any(|s| s == name), "{name}: {series:?}");
    }
    assert!(series.len() >= 11, "{series:?}");
}

#[test]
fn a_scrape_during_a_fetch_shows_the_documented_series_and_growing_counters() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(dir.path(), "m", "metrics-model", "8MiB", "256KiB", 3);
    let seeders = Seeders::start(dir.path(), &artifact, 1, "1MiB");
    let seeder = &seeders.procs[0];
    seeder.signal(Signal::STOP);
    let addr = free_port();
    let out = dir.path().join("out");
    // Serving as it fetches, and after (`--seed-after`): the endpoint
    // stays up when the fetch is done, until it is stopped.
    let mut fetch = Proc::spawn(
        dir.path(),
        &fetch_args(
            &artifact,
            &seeders,
            &out,
            &[
                "--metrics",
                &addr.to_string(),
                "--serve",
                "--listen",
                "127.0.0.1:0",
                "--seed-after",
                "--json",
            ],
        ),
    );
    let model = "{model=\"metrics-model\"}";
    let per_peer = "minimodel_peer_downloaded_bytes_total{model=\"metrics-model\",peer=\"";

    // The seeder stopped: nothing can have arrived yet.
    let first = scrape_until(&mut fetch, addr, |_| true);
    assert_eq!(
        sample(&first, &format!("minimodel_verified_bytes{model}")),
        Some(0)
    );
    assert_eq!(
        sample(&first, &format!("minimodel_artifact_bytes{model}")),
        Some(8 << 20)
    );
    assert_eq!(sample(&first, per_peer), None, "no peer delivered yet");

    // Let go until a chunk came, then stopped again: the fetch is in its
    // middle, connected to the seeder, while it is scraped.
    seeder.signal(Signal::CONT);
    scrape_until(&mut fetch, addr, |body| {
        sample(body, per_peer).is_some_and(|bytes| bytes > 0)
    });
    seeder.signal(Signal::STOP);
    let (status, second) = get(addr, "/metrics").expect("a scrape while the fetch runs");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let verified = sample(&second, &format!("minimodel_verified_bytes{model}")).unwrap();
    assert!(
        verified > 0 && verified < 8 << 20,
        "in the middle of the fetch: {verified} bytes verified"
    );
    for series in documented_series() {
        assert!(
            second
                .lines()
                .any(|line| line.starts_with(&format!("{series}{{model=\"metrics-model\""))),
            "{series} missing:\n{second}"
        );
    }
    assert_eq!(sample(&second, &format!("minimodel_peers{model}")), Some(1));
    assert!(sample(&second, per_peer).unwrap() > 0);
    assert!(
        sample(&second, &format!("minimodel_chunks_verified_total{model}"))
            > sample(&first, &format!("minimodel_chunks_verified_total{model}"))
    );

    let (status, _) = get(addr, "/other").expect("an answer for another path");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    seeder.signal(Signal::CONT);
    assert!(
        fetch.wait_for("the fetch to finish", |events| events
            .iter()
            .any(|e| e["event"] == "delivered")),
        "{}",
        fetch.stderr()
    );
    let (_, last) = get(addr, "/metrics").expect("a scrape while it seeds");
    assert_eq!(
        sample(&last, &format!("minimodel_verified_bytes{model}")),
        Some(8 << 20)
    );
    fetch.signal(Signal::TERM);
    fetch.expect_exit(0);
    artifact.verify(&out, &out.join("metrics-model.slm"));
}
