//! `--metrics ADDR` through the binary: a scrape during a fetch returns the
//! documented series, and the byte counters grow between two scrapes.

mod resume_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use resume_support::{Artifact, Proc, Seeders, fetch_args};

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap()
}

/// `GET path` on `addr`: the status line and the body; `None` while
/// nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// The value of the sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn a_scrape_during_a_fetch_shows_the_documented_series_and_growing_counters() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = Artifact::make(dir.path(), "m", "metrics-model", "8MiB", "256KiB", 3);
    // Slow enough (about 4 s) to be scraped twice while it runs.
    let seeders = Seeders::start(dir.path(), &artifact, 1, "2MiB");
    let addr = free_port();
    let out = dir.path().join("out");
    let mut fetch = Proc::spawn(
        dir.path(),
        &fetch_args(&artifact, &seeders, &out, &["--metrics", &addr.to_string()]),
    );

    let started = Instant::now();
    let mut first = None;
    while first.is_none() && started.elapsed() < Duration::from_secs(30) {
        if let Some((status, body)) = get(addr, "/metrics")
            && sample(&body, "minimodel_verified_bytes{").is_some_and(|bytes| bytes > 0)
        {
            assert_eq!(status, "HTTP/1.1 200 OK");
            first = Some(body);
        } else {
            assert!(
                fetch.try_exit().is_none(),
                "the fetch ended: {}",
                fetch.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let first = first.unwrap_or_else(|| panic!("no scrape showed progress: {}", fetch.stderr()));
    let model = "{model=\"metrics-model\"}";
    for series in [
        "minimodel_peers",
        "minimodel_peers_banned_total",
        "minimodel_chunks_verified_total",
        "minimodel_bad_chunks_total",
        "minimodel_verified_bytes",
        "minimodel_artifact_bytes",
        "minimodel_in_flight_bytes",
        "minimodel_uploaded_bytes_total",
    ] {
        assert!(
            sample(&first, &format!("{series}{model}")).is_some(),
            "{series} missing:\n{first}"
        );
    }
    assert_eq!(sample(&first, &format!("minimodel_peers{model}")), Some(1));
    assert_eq!(
        sample(&first, &format!("minimodel_artifact_bytes{model}")),
        Some(8 << 20)
    );
    let per_peer = "minimodel_peer_downloaded_bytes_total{model=\"metrics-model\",peer=\"";
    let before = sample(&first, per_peer).unwrap_or_else(|| panic!("no per-peer series:\n{first}"));

    std::thread::sleep(Duration::from_millis(1500));
    let (_, second) = get(addr, "/metrics").expect("a second scrape while the fetch runs");
    let after = sample(&second, per_peer).unwrap();
    assert!(
        after > before,
        "bytes from the peer grew: {before} then {after}"
    );
    assert!(
        sample(&second, &format!("minimodel_chunks_verified_total{model}"))
            > sample(&first, &format!("minimodel_chunks_verified_total{model}"))
    );

    let (status, _) = get(addr, "/other").expect("an answer for another path");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    fetch.expect_exit(0);
    artifact.verify(&out, &out.join("metrics-model.slm"));
}
