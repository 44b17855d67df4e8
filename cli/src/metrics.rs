//! `--metrics ADDR`: a running node's counters as Prometheus text, served
//! over HTTP at `GET /metrics` (the README lists the series).
//!
//! The text comes from `prometheus-client` (the Prometheus project's Rust
//! client, OpenMetrics format). The HTTP side answers one fixed request
//! with one fixed response, so it is a few lines on a tokio listener rather
//! than an HTTP server's dependency tree: each connection gets 5 s to send
//! a request head of at most 8 KiB and 10 s in all, at most 8 are answered
//! at once, and the connection is closed after the answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minimodel_swarm::node::{MetricsHandle, NodeMetrics};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::exit::{Exit, Failure};
use crate::output::Output;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may take in all (a client that does not read
/// its answer gives up its slot then).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests answered at once.
const MAX_CLIENTS: usize = 8;

/// Binds the metrics listener of `--metrics ADDR`, when given: before the
/// command does any long work (verifying a file, opening a download), so
/// that a taken port fails it at once.
pub fn bind(addr: Option<SocketAddr>) -> Result<Option<std::net::TcpListener>, Failure> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    std::net::TcpListener::bind(addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map(Some)
        .map_err(|error| {
            Failure::new(
                Exit::Transfer,
                anyhow::Error::new(error).context(format!("cannot serve metrics on {addr}")),
            )
        })
}

/// The metrics endpoint while it serves; stopped when dropped.
pub struct Endpoint(tokio::task::JoinHandle<()>);

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Says where the metrics are and answers scrapes from `node` until the
/// returned endpoint is dropped. Call it inside the runtime.
pub fn start(
    listener: Option<std::net::TcpListener>,
    node: MetricsHandle,
    model: String,
    out: Output,
) -> Option<Endpoint> {
    let listener = TcpListener::from_std(listener?).ok()?;
    if let Ok(addr) = listener.local_addr() {
        out.say(format!("metrics at http://{addr}/metrics"));
    }
    Some(Endpoint(tokio::spawn(serve(listener, node, model))))
}

/// Answers scrapes on `listener` with the node's counters until the task
/// is dropped.
async fn serve(listener: TcpListener, node: MetricsHandle, model: String) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let model: Arc<str> = model.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Busy: the connection is closed unanswered.
            continue;
        };
        let node = node.clone();
        let model = Arc::clone(&model);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &node, &model)).await;
            drop(slot);
        });
    }
}

async fn answer(mut stream: TcpStream, node: &MetricsHandle, model: &str) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let (status, content_type, body) = match request_line(&head) {
        Some(("GET", "/metrics")) => match node.snapshot().await {
            Some(metrics) => ("200 OK", CONTENT_TYPE, render(&metrics, model)),
            None => (
                "503 Service Unavailable",
                "text/plain",
                "the node has stopped\n".to_owned(),
            ),
        },
        Some(("GET", _)) => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        Some(_) => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
        None => ("400 Bad Request", "text/plain", "bad request\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n")
        && !head.windows(2).any(|w| w == b"\n\n")
        && head.len() < MAX_HEAD
    {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    Ok(head)
}

/// The method and the path of a request head's first line (query dropped).
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

/// The counters as OpenMetrics text.
fn render(metrics: &NodeMetrics, model: &str) -> String {
    let mut registry = Registry::with_prefix_and_labels(
        "minimodel",
        [("model".into(), model.to_owned().into())].into_iter(),
    );
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let metric = Gauge::<i64>::default();
        metric.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, metric);
    };
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let metric = Counter::<u64>::default();
        metric.inc_by(value);
        registry.register(name, help, metric);
    };
    gauge(
        &mut registry,
        "peers",
        "Connected peers",
        metrics.peers_connected,
    );
    counter(
        &mut registry,
        "peers_banned",
        "Peers banned for a chunk that failed its proof",
        metrics.peers_banned,
    );
    counter(
        &mut registry,
        "chunks_verified",
        "Chunks fetched and verified by this run",
        metrics.chunks_verified,
    );
    counter(
        &mut registry,
        "bad_chunks",
        "Chunks received that failed their proof",
        metrics.bad_chunks,
    );
    gauge(
        &mut registry,
        "verified_bytes",
        "Bytes of the artifact verified, earlier runs included",
        metrics.verified_bytes,
    );
    gauge(
        &mut registry,
        "artifact_bytes",
        "Size of the artifact",
        metrics.artifact_bytes,
    );
    gauge(
        &mut registry,
        "in_flight_bytes",
        "Bytes requested and not yet received (whole chunks)",
        metrics.in_flight_bytes,
    );
    counter(
        &mut registry,
        "uploaded_bytes",
        "Bytes of verified chunks served to peers",
        metrics.uploaded_bytes,
    );
    let introductions = Family::<Vec<(String, String)>, Counter>::default();
    let counts = &metrics.introductions;
    for (step, value) in [
        ("asked", counts.asked),
        ("dialing", counts.dialing),
        ("refused", counts.refused),
        ("introduced", counts.introduced),
    ] {
        introductions
            .get_or_create(&vec![("step".to_owned(), step.to_owned())])
            .inc_by(value);
    }
    registry.register(
        "introductions",
        "Introductions through NAT routers, by step: asked (of a peer), dialing (its Connect came), refused (by the introducer), introduced (two of our peers to each other)",
        introductions,
    );
    let downloaded = Family::<Vec<(String, String)>, Counter>::default();
    let uploaded = Family::<Vec<(String, String)>, Counter>::default();
    for peer in &metrics.peers {
        let labels = vec![("peer".to_owned(), peer.id.to_string())];
        downloaded
            .get_or_create(&labels)
            .inc_by(peer.downloaded_bytes());
        uploaded.get_or_create(&labels).inc_by(peer.uploaded_bytes);
    }
    registry.register(
        "peer_downloaded_bytes",
        "Verified chunk bytes received from a peer",
        downloaded,
    );
    registry.register(
        "peer_uploaded_bytes",
        "Chunk bytes served to a connected peer",
        uploaded,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use minimodel_swarm::node::PeerFigures;
    use minimodel_wire::PeerId;

    #[test]
    fn request_lines_are_read_strictly() {
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(request_line(b"GET /metrics SPDY/3 extra\r\n"), None);
        assert_eq!(request_line(b"\xff\xfe\r\n"), None);
        assert_eq!(request_line(b""), None);
    }

    #[test]
    fn the_text_names_every_documented_series_with_its_value() {
        let peer = PeerId([7; 32]);
        let text = render(
            &NodeMetrics {
                peers_connected: 2,
                peers_banned: 1,
                chunks_verified: 5,
                bad_chunks: 1,
                verified_bytes: 5 << 20,
                artifact_bytes: 8 << 20,
                in_flight_bytes: 2 << 20,
                uploaded_bytes: 3,
                introductions: minimodel_swarm::node::IntroductionCounts {
                    asked: 4,
                    dialing: 3,
                    refused: 1,
                    introduced: 2,
                },
                peers: vec![PeerFigures {
                    download: minimodel_swarm::session::PeerStats {
                        bytes: 4 << 20,
                        wasted_bytes: 1 << 20,
                        ..Default::default()
                    },
                    uploaded_bytes: 3,
                    ..PeerFigures::of(peer)
                }],
                ..NodeMetrics::default()
            },
            "tiny",
        );
        for line in [
            "minimodel_peers{model=\"tiny\"} 2",
            "minimodel_peers_banned_total{model=\"tiny\"} 1",
            "minimodel_chunks_verified_total{model=\"tiny\"} 5",
            "minimodel_bad_chunks_total{model=\"tiny\"} 1",
            "minimodel_verified_bytes{model=\"tiny\"} 5242880",
            "minimodel_artifact_bytes{model=\"tiny\"} 8388608",
            "minimodel_in_flight_bytes{model=\"tiny\"} 2097152",
            "minimodel_uploaded_bytes_total{model=\"tiny\"} 3",
            "minimodel_introductions_total{model=\"tiny\",step=\"asked\"} 4",
            "minimodel_introductions_total{model=\"tiny\",step=\"dialing\"} 3",
            "minimodel_introductions_total{model=\"tiny\",step=\"refused\"} 1",
            "minimodel_introductions_total{model=\"tiny\",step=\"introduced\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        let per_peer = format!(
            "minimodel_peer_downloaded_bytes_total{{model=\"tiny\",peer=\"{peer}\"}} 5242880"
        );
        assert!(
            text.lines().any(|l| l == per_peer),
            "{per_peer} missing from:\n{text}"
        );
        let uploaded =
            format!("minimodel_peer_uploaded_bytes_total{{model=\"tiny\",peer=\"{peer}\"}} 3");
        assert!(
            text.lines().any(|l| l == uploaded),
            "{uploaded} missing from:\n{text}"
        );
        // Every series the README names in its paragraph on --metrics, so
        // that one documented and not rendered (or renamed) fails here.
        let readme = include_str!("../../README.md");
        let paragraph = &readme[readme.find("with `--metrics ADDR`").expect("the paragraph")..];
        let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
        let documented: Vec<&str> = paragraph
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|quoted| quoted.starts_with("minimodel_"))
            .collect();
        assert!(documented.len() >= 11, "{documented:?}");
        for series in documented {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{series}{{model=\"tiny\""))),
                "{series} missing from:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
