//! A small blocking HTTP/1.1 client for the API of a companion on this
//! host: what the CLI's thin commands and the tests use. It finds the
//! companion through the library's `api.json` and `token`, speaks only
//! plain HTTP to the address written there, and reads at most
//! [`MAX_REPLY_BYTES`] of an answer. Its calls send and read the API's
//! own types ([`crate::view`]); a refusal comes back as the API's
//! [`ErrorBody`], typed ([`ClientError::Refused`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::library::{Caps, Endpoint, LibraryDir, LibraryError};
use crate::token::Token;
use crate::view::{
    AddDownload, AddShare, ErrorBody, ItemView, LibraryView, LimitsView, LogPage, Preview, Removed,
    SetLimits,
};

/// The largest answer read.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// Why a request could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The library's files cannot be read.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// No companion runs on the library.
    #[error("no companion runs on {0} (no api.json); start one with `minimodel companion run`")]
    NotRunning(String),
    /// The library has no token.
    #[error("the library {0} has no API token; `minimodel companion token` makes one")]
    NoToken(String),
    /// The URL is not `http://HOST:PORT`.
    #[error("not an http://HOST:PORT URL: {0}")]
    Url(String),
    /// Connecting, writing or reading failed.
    #[error("the companion at {addr} cannot be reached: {source}")]
    Io {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not HTTP as expected, or not the body expected.
    #[error("the companion's answer is malformed: {0}")]
    Malformed(String),
    /// The companion refused the request or failed it: its status and
    /// its body (a kind for programs, words and a hint for people).
    #[error("{}", body.error)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error body.
        body: ErrorBody,
    },
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client of one companion.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    token: Option<Token>,
    timeout: Duration,
}

impl Client {
    /// The client of the companion running on `library`.
    pub fn for_library(library: &Path) -> Result<Client, ClientError> {
        let dir = LibraryDir::open(library)?;
        let endpoint = Endpoint::read(&dir)?
            .ok_or_else(|| ClientError::NotRunning(library.display().to_string()))?;
        let token = Token::read(&dir)?
            .ok_or_else(|| ClientError::NoToken(library.display().to_string()))?;
        Client::new(&endpoint.url, Some(token))
    }

    /// The client of the companion at `url` (`http://HOST:PORT`).
    pub fn new(url: &str, token: Option<Token>) -> Result<Client, ClientError> {
        let host = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|host| !host.is_empty() && !host.contains('/'))
            .ok_or_else(|| ClientError::Url(url.to_owned()))?;
        let addr = host
            .to_socket_addrs()
            .map_err(|_| ClientError::Url(url.to_owned()))?
            .next()
            .ok_or_else(|| ClientError::Url(url.to_owned()))?;
        Ok(Client {
            addr,
            host: host.to_owned(),
            token,
            timeout: Duration::from_secs(120),
        })
    }

    /// The address it connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same client, giving up on a connection that stays silent for
    /// `timeout` (120 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client with another token (or none).
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// `METHOD path` with a JSON body, the token, and the companion's own
    /// Host.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        let bytes = body.map(|value| serde_json::to_vec(value).unwrap_or_default());
        let mut headers = vec![("Host".to_owned(), self.host.clone())];
        if let Some(token) = &self.token {
            headers.push((
                "Authorization".to_owned(),
                format!("Bearer {}", token.expose()),
            ));
        }
        if bytes.is_some() {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        self.raw(method, path, &headers, bytes.as_deref())
    }

    /// `METHOD path` with `body`, its answer read as a `T`: a refusal is
    /// [`ClientError::Refused`].
    pub fn typed<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|error| ClientError::Malformed(error.to_string()))?;
        let reply = self.call(method, path, body.as_ref())?;
        if !(200..300).contains(&reply.status) {
            let body =
                serde_json::from_slice::<ErrorBody>(&reply.body).unwrap_or_else(|_| ErrorBody {
                    kind: "io".to_owned(),
                    error: format!("the companion answered {}", reply.status),
                    hint: None,
                    needs: Vec::new(),
                });
            return Err(ClientError::Refused {
                status: reply.status,
                body,
            });
        }
        serde_json::from_slice(&reply.body)
            .map_err(|error| ClientError::Malformed(format!("{method} {path}: {error}")))
    }

    /// `GET /api/v1/library`.
    pub fn library(&self) -> Result<LibraryView, ClientError> {
        self.typed("GET", "/api/v1/library", None::<&()>)
    }

    /// `GET /api/v1/items/{id}`.
    pub fn item(&self, id: &str) -> Result<ItemView, ClientError> {
        self.typed("GET", &format!("/api/v1/items/{id}"), None::<&()>)
    }

    /// `POST /api/v1/shares/preview`.
    pub fn preview_share(&self, request: &AddShare) -> Result<Preview, ClientError> {
        self.typed("POST", "/api/v1/shares/preview", Some(request))
    }

    /// `POST /api/v1/shares`.
    pub fn add_share(&self, request: &AddShare) -> Result<ItemView, ClientError> {
        self.typed("POST", "/api/v1/shares", Some(request))
    }

    /// `POST /api/v1/downloads/preview`.
    pub fn preview_download(&self, request: &AddDownload) -> Result<Preview, ClientError> {
        self.typed("POST", "/api/v1/downloads/preview", Some(request))
    }

    /// `POST /api/v1/downloads`.
    pub fn add_download(&self, request: &AddDownload) -> Result<ItemView, ClientError> {
        self.typed("POST", "/api/v1/downloads", Some(request))
    }

    /// `POST /api/v1/items/{id}/pause` (`paused`) or `/resume`.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<ItemView, ClientError> {
        let what = if paused { "pause" } else { "resume" };
        self.typed("POST", &format!("/api/v1/items/{id}/{what}"), None::<&()>)
    }

    /// `PUT /api/v1/items/{id}/caps`.
    pub fn set_caps(&self, id: &str, caps: &Caps) -> Result<ItemView, ClientError> {
        self.typed("PUT", &format!("/api/v1/items/{id}/caps"), Some(caps))
    }

    /// `DELETE /api/v1/items/{id}`, with its files when `delete_files`.
    pub fn remove(&self, id: &str, delete_files: bool) -> Result<Removed, ClientError> {
        let query = if delete_files {
            "?delete_files=true"
        } else {
            ""
        };
        self.typed("DELETE", &format!("/api/v1/items/{id}{query}"), None::<&()>)
    }

    /// `GET /api/v1/follows`.
    pub fn follows(&self) -> Result<crate::view::FollowsView, ClientError> {
        self.typed("GET", "/api/v1/follows", None::<&()>)
    }

    /// `POST /api/v1/follows`.
    pub fn add_follow(
        &self,
        request: &crate::view::AddFollow,
    ) -> Result<crate::view::FollowView, ClientError> {
        self.typed("POST", "/api/v1/follows", Some(request))
    }

    /// `DELETE /api/v1/follows/{key}/{model}`.
    pub fn remove_follow(
        &self,
        key: &str,
        model: &str,
    ) -> Result<crate::view::FollowView, ClientError> {
        self.typed(
            "DELETE",
            &format!("/api/v1/follows/{key}/{model}"),
            None::<&()>,
        )
    }

    /// `POST /api/v1/follows/{key}/{model}/lookup`.
    pub fn look_up(&self, key: &str, model: &str) -> Result<crate::view::FollowView, ClientError> {
        self.typed(
            "POST",
            &format!("/api/v1/follows/{key}/{model}/lookup"),
            None::<&()>,
        )
    }

    /// `GET /api/v1/items/{id}/receipt`.
    pub fn receipt(
        &self,
        id: &str,
    ) -> Result<minimodel_verifier::receipt::ImportReceipt, ClientError> {
        self.typed("GET", &format!("/api/v1/items/{id}/receipt"), None::<&()>)
    }

    /// `PUT /api/v1/limits`.
    pub fn set_limits(&self, limits: &SetLimits) -> Result<LimitsView, ClientError> {
        self.typed("PUT", "/api/v1/limits", Some(limits))
    }

    /// `GET /api/v1/log?limit=N`.
    pub fn log(&self, limit: usize) -> Result<LogPage, ClientError> {
        self.typed("GET", &format!("/api/v1/log?limit={limit}"), None::<&()>)
    }

    /// `POST /api/v1/shutdown`.
    pub fn shutdown(&self) -> Result<(), ClientError> {
        self.typed::<serde_json::Value>("POST", "/api/v1/shutdown", None::<&()>)
            .map(|_| ())
    }

    /// A request with exactly these headers (tests send foreign ones).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, ClientError> {
        let mut stream = self.connect()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\n\r\n",
            body.map_or(0, <[u8]>::len)
        ));
        let io = |source| ClientError::Io {
            addr: self.addr.to_string(),
            source,
        };
        stream.write_all(head.as_bytes()).map_err(io)?;
        if let Some(body) = body {
            stream.write_all(body).map_err(io)?;
        }
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).map_err(|e| self.io_or_malformed(e))?;
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>())
            .transpose()
            .map_err(|_| ClientError::Malformed("a bad Content-Length".to_owned()))?;
        let body = if chunked {
            read_chunked(&mut reader).map_err(|e| self.io_or_malformed(e))?
        } else if let Some(length) = length {
            // Read what it says, not until the server closes (a server
            // may keep the connection open despite `Connection: close`).
            if length > MAX_REPLY_BYTES {
                return Err(ClientError::Malformed(format!(
                    "an answer of {length} bytes; at most {MAX_REPLY_BYTES} are read"
                )));
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).map_err(io)?;
            body
        } else {
            let mut body = Vec::new();
            reader
                .take(MAX_REPLY_BYTES as u64)
                .read_to_end(&mut body)
                .map_err(io)?;
            body
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr.to_string(),
            source,
        };
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10)).map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        Ok(stream)
    }

    fn io_or_malformed(&self, error: std::io::Error) -> ClientError {
        if error.kind() == std::io::ErrorKind::InvalidData {
            ClientError::Malformed(error.to_string())
        } else {
            ClientError::Io {
                addr: self.addr.to_string(),
                source: error,
            }
        }
    }

    /// Opens `GET /api/v1/events`; read events with
    /// [`EventStream::next_event`].
    pub fn events(&self) -> Result<EventStream, ClientError> {
        let mut stream = self.connect()?;
        let mut head = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            self.host
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {}\r\n", token.expose()));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .map_err(|source| ClientError::Io {
                addr: self.addr.to_string(),
                source,
            })?;
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader).map_err(|e| self.io_or_malformed(e))?;
        if status != 200 {
            return Err(ClientError::Malformed(format!(
                "the event stream answered {status}"
            )));
        }
        Ok(EventStream {
            reader,
            pending: Vec::new(),
        })
    }
}

/// Server-sent events, read from a chunked answer.
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl EventStream {
    /// The next event's name and data; `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = find(&self.pending, b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut name = String::from("message");
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, data));
            }
            let chunk = read_one_chunk(&mut self.reader).ok()??;
            self.pending.extend_from_slice(&chunk);
            if self.pending.len() > MAX_REPLY_BYTES {
                return None;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn malformed(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(malformed("the head ended early"));
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return Ok((status, headers));
        }
        if headers.len() > 100 {
            return Err(malformed("too many headers"));
        }
        let (name, value) = trimmed
            .split_once(':')
            .ok_or_else(|| malformed("a header without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// One chunk of a chunked body; `None` at the last chunk.
fn read_one_chunk(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| malformed("a bad chunk size"))?;
    if size > MAX_REPLY_BYTES {
        return Err(malformed("a chunk too large"));
    }
    if size == 0 {
        return Ok(None);
    }
    let mut chunk = vec![0u8; size];
    reader.read_exact(&mut chunk)?;
    let mut end = [0u8; 2];
    reader.read_exact(&mut end)?;
    Ok(Some(chunk))
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = read_one_chunk(reader)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_REPLY_BYTES {
            return Err(malformed("the answer is too large"));
        }
    }
    Ok(body)
}
