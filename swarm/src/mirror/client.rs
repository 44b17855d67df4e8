//! A lean HTTP/1.1 client for mirrors, on hyper's connection API: one
//! request per connection at a time, connections kept alive per origin
//! and reused, TLS 1.3 through rustls with the system's roots
//! (`rustls-native-certs`: the platform's store, or the file
//! `SSL_CERT_FILE` names), timeouts on every wait. No proxy, no cookies,
//! no compression (a range of compressed bytes is not the range asked:
//! the client sends `Accept-Encoding: identity`), no HTTP/2 (a download
//! asks one mirror for at most four ranges at once, which keep-alive
//! connections carry as well; `docs/swarm.md`, "Mirrors").
//!
//! It decides nothing: the caller reads the status and headers through
//! `super::http::classify`, follows redirects itself, and reads the body
//! with [`Response::read_body`], which hands the connection back for the
//! next request once the body ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use minimodel_node::mirror::{MirrorTrouble, MirrorUnusable};
use minimodel_verifier::chunk::ChunkData;
use minimodel_verifier::mirror_url::{Host, MirrorUrl, Scheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::http::{MAX_HEADER_VALUE, ResponseHeaders};
use super::token::MirrorTokens;

/// Every wait the client does has a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connection and TLS handshake, per address tried. Default 10 s.
    pub connect: Duration,
    /// From the request sent to the response's headers. Default 15 s.
    pub headers: Duration,
    /// Between two pieces of a body. Default 30 s (the download's silence
    /// timeout).
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            headers: Duration::from_secs(15),
            body: Duration::from_secs(30),
        }
    }
}

/// Idle connections kept per origin, at most.
const MAX_IDLE_PER_ORIGIN: usize = 8;

/// A connection's reading and writing halves, whichever transport.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Sender = http1::SendRequest<Empty<Bytes>>;

/// Where connections go: scheme, host, port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    scheme: Scheme,
    host: Host,
    port: u16,
}

impl Origin {
    fn of(url: &MirrorUrl) -> Self {
        Self {
            scheme: url.scheme(),
            host: url.host().clone(),
            port: url.port(),
        }
    }
}

/// Why a request got no response: passing trouble, or a TLS failure that
/// retrying will not mend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Try again later.
    Trouble(MirrorTrouble),
    /// The mirror's certificate is not one the system trusts for its name
    /// (or no roots could be read).
    Unusable(MirrorUnusable),
}

/// Whose certificates a mirror's must chain to.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's roots (`rustls-native-certs`: the platform's store, or
    /// the PEM file `SSL_CERT_FILE` names).
    #[default]
    System,
    /// These roots only (the test authority of `fixtures/mirror/`).
    #[cfg(feature = "testing")]
    TestRoots(Vec<rustls::pki_types::CertificateDer<'static>>),
}

/// The TLS settings with the system's roots, made once.
static SYSTEM_TLS: LazyLock<Result<Arc<rustls::ClientConfig>, String>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    let why = found.errors.first().map(ToString::to_string);
    tls_config(found.certs, why)
});

/// TLS 1.3 only, `ring`, ALPN `http/1.1`, these roots.
fn tls_config(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    why: Option<String>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        let why = why.unwrap_or_else(|| "the store is empty".into());
        return Err(format!(
            "no trusted root certificates could be read ({why})"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client. Cheap to share (`Arc`).
pub struct Client {
    tls: Result<Arc<rustls::ClientConfig>, String>,
    timeouts: Timeouts,
    tokens: MirrorTokens,
    agent: HeaderValue,
    idle: Mutex<HashMap<Origin, Vec<Sender>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// A response whose headers arrived; its body is read with
/// [`Response::read_body`] (or dropped, which closes its connection).
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers that matter.
    pub headers: ResponseHeaders,
    body: Incoming,
    sender: Sender,
    origin: Origin,
    client: Arc<Client>,
}

impl Client {
    /// A client sending `agent` as its `User-Agent`, and `tokens` to their
    /// hosts.
    pub fn new(timeouts: Timeouts, tokens: MirrorTokens, agent: &str, trust: &Trust) -> Arc<Self> {
        let tls = match trust {
            Trust::System => SYSTEM_TLS.clone(),
            #[cfg(feature = "testing")]
            Trust::TestRoots(roots) => tls_config(roots.clone(), None),
        };
        Arc::new(Self {
            tls,
            timeouts,
            tokens,
            agent: HeaderValue::from_str(agent)
                .unwrap_or_else(|_| HeaderValue::from_static("minimodel")),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// The limits of its waits.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// `GET url`, for `range` (end exclusive) when given, on a kept-alive
    /// connection to its origin or a new one; the response once its
    /// headers are in.
    pub async fn get(
        self: &Arc<Self>,
        url: &MirrorUrl,
        range: Option<Range<u64>>,
    ) -> Result<Response, RequestError> {
        let origin = Origin::of(url);
        let mut request = hyper::Request::get(url.request_target())
            .header(header::HOST, url.host_header())
            .header(header::USER_AGENT, self.agent.clone())
            .header(header::ACCEPT_ENCODING, "identity")
            .body(Empty::<Bytes>::new())
            .map_err(|error| trouble(format!("cannot build the request: {error}")))?;
        if let Some(range) = &range {
            let value = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
            request.headers_mut().insert(
                header::RANGE,
                HeaderValue::from_str(&value).map_err(|e| trouble(e.to_string()))?,
            );
        }
        if let Some(token) = self.tokens.for_origin(&url.url_origin()) {
            let mut value = HeaderValue::from_str(&token.bearer())
                .map_err(|_| trouble("a token that cannot be sent".into()))?;
            // Never logged, never compressed into a shared table.
            value.set_sensitive(true);
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let mut sender = match self.take_idle(&origin) {
            Some(sender) => sender,
            None => self.connect(&origin).await?,
        };
        let sent = tokio::time::timeout(self.timeouts.headers, async {
            sender.ready().await?;
            sender.send_request(request).await
        })
        .await;
        let response = match sent {
            Err(_) => return Err(RequestError::Trouble(MirrorTrouble::Timeout)),
            Ok(Err(error)) => return Err(trouble(error.to_string())),
            Ok(Ok(response)) => response,
        };
        let headers = read_headers(response.headers());
        let status = response.status().as_u16();
        Ok(Response {
            status,
            headers,
            body: response.into_body(),
            sender,
            origin,
            client: Arc::clone(self),
        })
    }

    fn take_idle(&self, origin: &Origin) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let senders = idle.get_mut(origin)?;
        while let Some(sender) = senders.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, origin: Origin, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let senders = idle.entry(origin).or_default();
        senders.retain(|sender| !sender.is_closed());
        if senders.len() < MAX_IDLE_PER_ORIGIN {
            senders.push(sender);
        }
    }

    /// Drops the idle connections to every origin (a mirror that left).
    pub fn forget_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// A new connection to `origin`: each address its host resolves to in
    /// turn, TCP then (for HTTPS) TLS, within the connect timeout each.
    async fn connect(&self, origin: &Origin) -> Result<Sender, RequestError> {
        let addrs: Vec<SocketAddr> = match &origin.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, origin.port)],
            Host::Name(name) => {
                let lookup = tokio::time::timeout(
                    self.timeouts.connect,
                    tokio::net::lookup_host((name.as_str(), origin.port)),
                )
                .await;
                match lookup {
                    Err(_) => return Err(RequestError::Trouble(MirrorTrouble::Timeout)),
                    Ok(Err(error)) => {
                        return Err(trouble(format!("cannot resolve {name}: {error}")));
                    }
                    Ok(Ok(addrs)) => addrs.collect(),
                }
            }
        };
        let mut last = trouble(format!("{} resolves to no address", origin.host));
        for addr in addrs {
            match self.connect_to(origin, addr).await {
                Ok(sender) => return Ok(sender),
                Err(error @ RequestError::Unusable(_)) => return Err(error),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn connect_to(&self, origin: &Origin, addr: SocketAddr) -> Result<Sender, RequestError> {
        let deadline = tokio::time::Instant::now() + self.timeouts.connect;
        let tcp = within(deadline, async {
            TcpStream::connect(addr)
                .await
                .map_err(|error| trouble(format!("{addr}: {error}")))
        })
        .await?;
        let _ = tcp.set_nodelay(true);
        let io: Pin<Box<dyn Io>> = match origin.scheme {
            Scheme::Http => Box::pin(tcp),
            Scheme::Https => {
                let config = self.tls.as_ref().map_err(|why| {
                    RequestError::Unusable(MirrorUnusable::Tls {
                        reason: why.clone(),
                    })
                })?;
                let name = match &origin.host {
                    Host::Name(name) => rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|e| trouble(e.to_string()))?,
                    Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
                };
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls = within(deadline, async {
                    connector.connect(name, tcp).await.map_err(tls_error)
                })
                .await?;
                Box::pin(tls)
            }
        };
        let (sender, connection) = within(deadline, async {
            http1::handshake(TokioIo::new(io))
                .await
                .map_err(|error| trouble(error.to_string()))
        })
        .await?;
        // The connection runs until its sender is dropped or it fails.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

impl Response {
    /// Reads the body, at most `limit` bytes (more is a trouble: the
    /// caller checked the length it expects), calling `progress` with the
    /// bytes read so far after each piece; the connection goes back for
    /// the next request once the body ended.
    pub async fn read_body(
        self,
        limit: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<ChunkData, MirrorTrouble> {
        let Response {
            mut body,
            sender,
            origin,
            client,
            ..
        } = self;
        let mut data = ChunkData::new();
        let mut read = 0u64;
        loop {
            let frame = tokio::time::timeout(client.timeouts.body, body.frame()).await;
            let frame = match frame {
                Err(_) => return Err(MirrorTrouble::Timeout),
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    return Err(MirrorTrouble::Connection {
                        reason: error.to_string(),
                    });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(bytes) = frame.into_data() else {
                continue;
            };
            read += bytes.len() as u64;
            if read > limit {
                return Err(MirrorTrouble::Connection {
                    reason: format!("the body runs past the {limit} bytes expected"),
                });
            }
            data.push(bytes);
            progress(read);
        }
        client.put_idle(origin, sender);
        Ok(data)
    }
}

/// `what`, unless `deadline` passes first.
async fn within<T>(
    deadline: tokio::time::Instant,
    what: impl std::future::Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    match tokio::time::timeout_at(deadline, what).await {
        Ok(result) => result,
        Err(_) => Err(RequestError::Trouble(MirrorTrouble::Timeout)),
    }
}

fn trouble(reason: String) -> RequestError {
    RequestError::Trouble(MirrorTrouble::Connection { reason })
}

/// A TLS handshake that failed on the certificate is unusable (retrying
/// will not mend it); any other failure is passing trouble.
fn tls_error(error: std::io::Error) -> RequestError {
    let certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
    if certificate {
        RequestError::Unusable(MirrorUnusable::Tls {
            reason: error.to_string(),
        })
    } else {
        trouble(format!("TLS: {error}"))
    }
}

/// The headers [`ResponseHeaders`] keeps: the first of each, at most
/// [`MAX_HEADER_VALUE`] bytes of visible ASCII (anything else is as if
/// absent).
fn read_headers(headers: &hyper::HeaderMap) -> ResponseHeaders {
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .filter(|value| value.len() <= MAX_HEADER_VALUE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    ResponseHeaders {
        content_range: get(header::CONTENT_RANGE),
        content_length: get(header::CONTENT_LENGTH),
        content_type: get(header::CONTENT_TYPE),
        location: get(header::LOCATION),
        etag: get(header::ETAG),
        last_modified: get(header::LAST_MODIFIED),
    }
}
