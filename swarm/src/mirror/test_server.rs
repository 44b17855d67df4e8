//! A mirror for tests (the `testing` feature only, never in a release
//! build): an HTTPS server on loopback with the test-only certificates of
//! `fixtures/mirror/` (their authority is trusted only by a client told to:
//! [`TestMirror::roots`], or `SSL_CERT_FILE` for the binary), serving one
//! artifact at `/model.slm` with `Range` and an `ETag`, its chunk list
//! beside it, and any of the lies the mirror rules name ([`Lie`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// The test authority's certificate (PEM): what a test tells a fetch to
/// trust.
pub const TEST_CA_PEM: &str = include_str!("../../../fixtures/mirror/test-ca.pem");
const SERVER_PEM: &str = include_str!("../../../fixtures/mirror/localhost.pem");
const SERVER_KEY: &str = include_str!("../../../fixtures/mirror/localhost.key");

/// The artifact's path on the test mirror.
pub const ARTIFACT_PATH: &str = "/model.slm";

/// What the test mirror does wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lie {
    /// Nothing.
    None,
    /// The range that starts at this byte has other bytes (the first one
    /// flipped).
    WrongRange {
        /// Its first byte.
        start: u64,
    },
    /// Every range has other bytes (its first one flipped).
    WrongRanges,
    /// Every range request gets the whole file (200).
    IgnoresRange,
    /// The artifact redirects to the same path over plain HTTP.
    RedirectsToHttp,
    /// The artifact's range requests name another range than asked.
    UnaskedRange,
}

struct State {
    file: Mutex<Bytes>,
    chunk_list: Mutex<Option<Bytes>>,
    /// The manifest served at `ARTIFACT_PATH.manifest`, if any.
    manifest: Mutex<Option<Bytes>>,
    etag: Mutex<String>,
    lie: Mutex<Lie>,
    /// The artifact is served at `/moved/model.slm`, which `/model.slm`
    /// redirects to (302), at this location.
    redirect: Mutex<Option<String>>,
    requests: AtomicU64,
    body_bytes: AtomicU64,
    /// The `Host` and `Authorization` headers of every request, as
    /// received.
    authorizations: Mutex<Vec<(String, Option<String>)>>,
    /// While true, a range of more than one byte is answered only once it
    /// turns false: a mirror that is slow to send.
    held: tokio::sync::watch::Sender<bool>,
}

/// A running test mirror; it stops when dropped.
pub struct TestMirror {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestMirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestMirror {
    /// Serves `file` (and its chunk list `chunk_list`, if given) on
    /// 127.0.0.1.
    pub async fn start(file: Bytes, chunk_list: Option<Bytes>) -> std::io::Result<TestMirror> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(SERVER_PEM.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(std::io::Error::other)?;
        let key =
            PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).map_err(std::io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(std::io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            file: Mutex::new(file),
            chunk_list: Mutex::new(chunk_list),
            manifest: Mutex::new(None),
            etag: Mutex::new("\"v1\"".into()),
            lie: Mutex::new(Lie::None),
            redirect: Mutex::new(None),
            requests: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            authorizations: Mutex::new(Vec::new()),
            held: tokio::sync::watch::Sender::new(false),
        });
        let served = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&served));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move {
                            if holds(&request) {
                                let mut held = state.held.subscribe();
                                let _ = held.wait_for(|held| !*held).await;
                            }
                            Ok::<_, Infallible>(answer(&state, addr, request))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(TestMirror { addr, state, task })
    }

    /// The artifact's URL.
    pub fn url(&self) -> String {
        format!("https://{}{ARTIFACT_PATH}", self.addr)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test authority, as roots a client may be given.
    pub fn roots() -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(TEST_CA_PEM.as_bytes())
            .filter_map(Result::ok)
            .collect()
    }

    /// From now on, lies so.
    pub fn lie(&self, lie: Lie) {
        *self.state.lie.lock().unwrap_or_else(|e| e.into_inner()) = lie;
    }

    /// From now on, serves `file` (with `chunk_list`) under a new ETag:
    /// the file changed.
    pub fn replace(&self, file: Bytes, chunk_list: Option<Bytes>, etag: &str) {
        *self.state.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        *self
            .state
            .chunk_list
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = chunk_list;
        self.set_etag(etag);
    }

    /// Serves `manifest` at `ARTIFACT_PATH.manifest` (where a ticket's
    /// reader looks for it) from now on.
    pub fn set_manifest(&self, manifest: Bytes) {
        *self
            .state
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(manifest);
    }

    /// From now on, answers with this ETag.
    pub fn set_etag(&self, etag: &str) {
        *self.state.etag.lock().unwrap_or_else(|e| e.into_inner()) = etag.into();
    }

    /// Whether `/model.slm` redirects to `/moved/model.slm` (on the same
    /// server).
    pub fn redirect(&self, redirect: bool) {
        let location = redirect.then(|| "/moved/model.slm".to_owned());
        *self
            .state
            .redirect
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = location;
    }

    /// `/model.slm` redirects to this location, which should name this
    /// server's `/moved/model.slm` (under another host name, say).
    pub fn redirect_to(&self, location: &str) {
        *self
            .state
            .redirect
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(location.into());
    }

    /// Whether ranges of more than one byte wait (until this is called
    /// with false): a mirror that answers its probe at once and sends its
    /// chunks only later.
    pub fn hold(&self, held: bool) {
        self.state.held.send_replace(held);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// The `Host` and `Authorization` headers of every request so far.
    pub fn authorizations(&self) -> Vec<(String, Option<String>)> {
        lock(&self.state.authorizations)
    }

    /// Body bytes sent so far (of the artifact: chunk lists not counted).
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::Relaxed)
    }
}

/// Whether `request` asks for a range of more than one byte (a chunk, not
/// a probe).
fn holds(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("bytes="))
        .is_some_and(|range| range != "0-0")
}

fn answer(state: &State, addr: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let text = |name| {
        request
            .headers()
            .get(name)
            .map(|value: &HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let seen = (
        text(header::HOST).unwrap_or_default(),
        text(header::AUTHORIZATION),
    );
    state
        .authorizations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(seen);
    let path = request.uri().path().to_owned();
    let redirect: Option<String> = lock(&state.redirect);
    let lie: Lie = lock(&state.lie);
    let chunk_list = format!("{ARTIFACT_PATH}.chunk-list");
    let beside = if path == chunk_list {
        Some(lock(&state.chunk_list))
    } else if path == format!("{ARTIFACT_PATH}.manifest") {
        Some(lock(&state.manifest))
    } else {
        None
    };
    if let Some(list) = beside {
        let list: Option<Bytes> = list;
        return match list {
            Some(list) => respond(StatusCode::OK, list, &[]),
            None => respond(StatusCode::NOT_FOUND, Bytes::new(), &[]),
        };
    }
    let served = if redirect.is_some() {
        "/moved/model.slm"
    } else {
        ARTIFACT_PATH
    };
    if let Some(location) = redirect
        && path == ARTIFACT_PATH
    {
        return respond(StatusCode::FOUND, Bytes::new(), &[("location", location)]);
    }
    if path != served {
        return respond(StatusCode::NOT_FOUND, Bytes::new(), &[]);
    }
    if lie == Lie::RedirectsToHttp {
        let location = format!("http://{addr}{ARTIFACT_PATH}");
        return respond(StatusCode::FOUND, Bytes::new(), &[("location", location)]);
    }
    let file: Bytes = lock(&state.file);
    let etag: String = lock(&state.etag);
    let total = file.len() as u64;
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("bytes="))
        .and_then(|value| value.split_once('-'))
        .and_then(|(first, last)| Some((first.parse::<u64>().ok()?, last.parse::<u64>().ok()?)));
    let Some((first, last)) = range.filter(|_| lie != Lie::IgnoresRange) else {
        state.body_bytes.fetch_add(total, Ordering::Relaxed);
        return respond(StatusCode::OK, file, &[("etag", etag)]);
    };
    if first > last || first >= total {
        let range = format!("bytes */{total}");
        return respond(
            StatusCode::RANGE_NOT_SATISFIABLE,
            Bytes::new(),
            &[("content-range", range)],
        );
    }
    let last = last.min(total - 1);
    let (first_sent, last_sent) = match lie {
        Lie::UnaskedRange => (0, last - first),
        _ => (first, last),
    };
    let mut body = file.slice(first_sent as usize..=last_sent as usize);
    if lie == (Lie::WrongRange { start: first }) || lie == Lie::WrongRanges {
        let mut bytes = body.to_vec();
        bytes[0] ^= 0xFF;
        body = Bytes::from(bytes);
    }
    state
        .body_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let range = format!("bytes {first_sent}-{last_sent}/{total}");
    respond(
        StatusCode::PARTIAL_CONTENT,
        body,
        &[("content-range", range), ("etag", etag)],
    )
}

/// A copy of what `m` holds.
fn lock<T: Clone>(m: &Mutex<T>) -> T {
    m.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn respond(status: StatusCode, body: Bytes, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
