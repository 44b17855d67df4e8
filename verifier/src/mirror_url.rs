//! Mirror URLs: where a person says an HTTPS copy of the artifact is
//! (`--mirror URL`, the companion's page, an offer or a ticket they were
//! given). A mirror is never a manifest's or a catalog entry's to name:
//! neither format has a field for one, and a route is refused when it
//! points at bytes ([`crate::route`]).
//!
//! [`MirrorUrl::parse`] is a strict parser for this one job, as
//! [`crate::route::Route::parse`] is for routes (the text checked is the
//! text kept; only the host is lowercased):
//!
//! ```text
//! mirror-url = ("https" | "http") "://" host [ ":" port ] path [ "?" query ]
//! host       = DNS name | IPv4 address | "[" IPv6 address "]"
//! ```
//!
//! at most [`MAX_MIRROR_URL_LEN`] bytes of printable ASCII. It refuses
//! `http` unless the caller allows it ([`Plain`]: the bytes are checked
//! either way, the privacy is not), user information (`user:pass@`: a
//! token goes in the environment, sent only to its host), a fragment, a
//! path that names no file (empty, `/`, or ending in `/`), `.` and `..`
//! segments, and the project's own byte routes: a path with a segment
//! [`crate::route::PROJECT_BYTE_SEGMENTS`] names, the same rule that
//! refuses them as routes. A query is kept (signed object-store URLs carry
//! one) but never shown: [`MirrorUrl::label`] leaves it out, since it may
//! hold a credential.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use percent_encoding::percent_decode_str;

use crate::route::PROJECT_BYTE_SEGMENTS;

/// Longest mirror URL accepted, in bytes (signed URLs run long).
pub const MAX_MIRROR_URL_LEN: usize = 2048;

/// Whether plain `http://` is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// Only `https://` (the default everywhere).
    Refused,
    /// `http://` too: the person said so, knowing that anyone on the path
    /// sees what is fetched (the bytes are still checked).
    Allowed,
}

/// The scheme of a mirror URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// TLS.
    Https,
    /// Plain text (only when allowed).
    Http,
}

impl Scheme {
    /// `https` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }

    /// The port when none is written.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
        }
    }
}

/// The host of a mirror URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A DNS name, lowercase.
    Name(String),
    /// An IP address.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A checked mirror URL. Only [`MirrorUrl::parse`] makes one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MirrorUrl {
    scheme: Scheme,
    host: Host,
    port: Option<u16>,
    /// The path as written (starts with `/`).
    path: String,
    /// The query as written, without its `?`.
    query: Option<String>,
}

/// Why a text is not a mirror URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorUrlError {
    /// Empty text.
    #[error("the mirror URL is empty; give the https:// URL of the artifact")]
    Empty,
    /// Longer than [`MAX_MIRROR_URL_LEN`].
    #[error("the mirror URL is {len} bytes long; the limit is {MAX_MIRROR_URL_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Whitespace, a control character or a non-ASCII character.
    #[error(
        "the mirror URL has {found:?} at byte {position}; write it in ASCII without spaces (percent-encode other characters)"
    )]
    ForbiddenCharacter {
        /// Zero-based byte position.
        position: usize,
        /// The character.
        found: char,
    },
    /// Not `https://` (or `http://` when allowed).
    #[error("the mirror URL must start with https://; other schemes are refused")]
    NotHttps,
    /// `http://` without the person's say.
    #[error(
        "the mirror URL is plain http://: anyone on the path sees what you fetch (the bytes are checked either way); use https://, or allow it with --allow-plain-http-mirror"
    )]
    PlainHttp,
    /// User information before the host.
    #[error(
        "the mirror URL has user information (\"@\") before the host; give a token in MINIMODEL_MIRROR_TOKENS instead (it is sent only to its host)"
    )]
    Credentials,
    /// A `#fragment` (never sent to a server).
    #[error(
        "the mirror URL has a fragment (\"#\"); a fragment is never sent to the server, leave it out"
    )]
    Fragment,
    /// No file named.
    #[error(
        "the mirror URL names no file: give the URL of the artifact itself, not of a site or a directory"
    )]
    NoFile,
    /// A path segment reserved for the project's own byte routes.
    #[error(
        "the mirror URL's path segment {segment:?} is reserved for the project's own byte routes; a mirror is a copy a person runs, never a project server"
    )]
    ProjectRoute {
        /// The segment as written.
        segment: String,
    },
    /// Anything else that breaks the grammar.
    #[error("the mirror URL is malformed: {0}")]
    Malformed(&'static str),
}

impl MirrorUrl {
    /// Parses and checks `text`.
    pub fn parse(text: &str, plain: Plain) -> Result<MirrorUrl, MirrorUrlError> {
        if text.is_empty() {
            return Err(MirrorUrlError::Empty);
        }
        if text.len() > MAX_MIRROR_URL_LEN {
            return Err(MirrorUrlError::TooLong { len: text.len() });
        }
        if let Some((position, found)) = text
            .char_indices()
            .find(|(_, c)| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(MirrorUrlError::ForbiddenCharacter { position, found });
        }
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            if plain == Plain::Refused {
                return Err(MirrorUrlError::PlainHttp);
            }
            (Scheme::Http, rest)
        } else {
            return Err(MirrorUrlError::NotHttps);
        };
        if rest.contains('#') {
            return Err(MirrorUrlError::Fragment);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if authority.contains('@') {
            return Err(MirrorUrlError::Credentials);
        }
        let (host, port) = parse_authority(authority)?;
        let after = &rest[authority_end..];
        let (path, query) = match after.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (after, None),
        };
        check_path(path)?;
        if let Some(query) = query {
            if query.is_empty() {
                return Err(MirrorUrlError::Malformed("empty query after '?'"));
            }
            if !query.chars().all(|c| is_pchar(c) || matches!(c, '/' | '?')) {
                return Err(MirrorUrlError::Malformed(
                    "the query has a character outside the URL charset",
                ));
            }
            check_escapes(query)?;
        }
        Ok(MirrorUrl {
            scheme,
            host,
            port,
            path: path.to_owned(),
            query: query.map(str::to_owned),
        })
    }

    /// Resolves a redirect's `Location` against this URL: an absolute URL
    /// (checked as a mirror URL), a path from the root (`/...`), or a path
    /// relative to this one's directory. The query of this URL is not
    /// carried over.
    pub fn join(&self, location: &str, plain: Plain) -> Result<MirrorUrl, MirrorUrlError> {
        if location.starts_with("https://") || location.starts_with("http://") {
            return MirrorUrl::parse(location, plain);
        }
        if location.starts_with("//") {
            return MirrorUrl::parse(&format!("{}:{location}", self.scheme.as_str()), plain);
        }
        let origin = self.origin();
        if location.starts_with('/') {
            return MirrorUrl::parse(&format!("{origin}{location}"), plain);
        }
        if location.contains("://") || location.starts_with('?') || location.is_empty() {
            return Err(MirrorUrlError::Malformed(
                "a redirect names a location that is not a URL or a path",
            ));
        }
        let directory = &self.path[..=self.path.rfind('/').unwrap_or(0)];
        MirrorUrl::parse(&format!("{origin}{directory}{location}"), plain)
    }

    /// Its origin: scheme, host and the port requests go to.
    pub fn url_origin(&self) -> UrlOrigin {
        UrlOrigin {
            scheme: self.scheme,
            host: self.host.clone(),
            port: self.port(),
        }
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme.as_str(), self.host),
            None => format!("{}://{}", self.scheme.as_str(), self.host),
        }
    }

    /// The URL without its query: what people, logs, events and receipts
    /// are shown (a query may hold a credential).
    pub fn label(&self) -> String {
        format!("{}{}", self.origin(), self.path)
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    /// The path and query, as an HTTP request line names them.
    pub fn request_target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The `Host` header: the host, and the port when one is written.
    pub fn host_header(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.to_string(),
        }
    }

    /// The URL of the chunk list published beside the artifact: the same
    /// origin, the path with `.chunk-list` appended, no query.
    pub fn chunk_list_url(&self) -> MirrorUrl {
        MirrorUrl {
            path: format!("{}.chunk-list", self.path),
            query: None,
            ..self.clone()
        }
    }

    /// The URL of the manifest published beside the artifact (where a
    /// ticket that names this mirror finds it): the same origin, the path
    /// with `.manifest` appended, no query.
    pub fn manifest_url(&self) -> MirrorUrl {
        MirrorUrl {
            path: format!("{}.manifest", self.path),
            query: None,
            ..self.clone()
        }
    }

    /// Whether the URL has a query (which may hold a credential).
    pub fn has_query(&self) -> bool {
        self.query.is_some()
    }

    /// The whole URL, query included: for the request only, never shown.
    pub fn expose(&self) -> String {
        format!("{}{}", self.origin(), self.request_target())
    }
}

impl fmt::Display for MirrorUrl {
    /// The label: the query is never displayed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl fmt::Debug for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = if self.query.is_some() { "?…" } else { "" };
        write!(f, "MirrorUrl({}{query})", self.label())
    }
}

impl FromStr for MirrorUrl {
    type Err = MirrorUrlError;

    /// HTTPS only; [`MirrorUrl::parse`] with [`Plain::Allowed`] for more.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MirrorUrl::parse(text, Plain::Refused)
    }
}

/// Where requests go: a scheme, a host and a port (the scheme's default
/// port when none is written). Two URLs with the same origin are the same
/// server to a browser and to us; a token is bound to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UrlOrigin {
    /// `https` or `http`.
    pub scheme: Scheme,
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl UrlOrigin {
    /// Parses an origin as a person writes one for a token: `HOST`,
    /// `HOST:PORT`, `https://HOST[:PORT]` or `http://HOST[:PORT]`, with
    /// no path; without a scheme, `https`.
    pub fn parse(text: &str) -> Result<UrlOrigin, MirrorUrlError> {
        if let Some((position, found)) = text
            .char_indices()
            .find(|(_, c)| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(MirrorUrlError::ForbiddenCharacter { position, found });
        }
        let (scheme, authority) = if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if text.contains("://") {
            return Err(MirrorUrlError::NotHttps);
        } else {
            (Scheme::Https, text)
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains(['/', '?', '#']) {
            return Err(MirrorUrlError::Malformed(
                "an origin has no path, query or fragment",
            ));
        }
        if authority.contains('@') {
            return Err(MirrorUrlError::Credentials);
        }
        let (host, port) = parse_authority(authority)?;
        Ok(UrlOrigin {
            scheme,
            port: port.unwrap_or(scheme.default_port()),
            host,
        })
    }
}

impl fmt::Display for UrlOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl Host {
    /// A host as written on its own (`example.org`, `192.0.2.7`,
    /// `[2001:db8::1]`), by the rules of a mirror URL's host.
    pub fn parse(text: &str) -> Result<Host, MirrorUrlError> {
        match parse_authority(text)? {
            (host, None) => Ok(host),
            (_, Some(_)) => Err(MirrorUrlError::Malformed("a host alone has no port")),
        }
    }
}

fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), MirrorUrlError> {
    if authority.is_empty() {
        return Err(MirrorUrlError::Malformed("the host is empty"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or(MirrorUrlError::Malformed("an IPv6 address lacks its ']'"))?;
        let ip = Ipv6Addr::from_str(inside)
            .map_err(|_| MirrorUrlError::Malformed("not an IPv6 address inside '[ ]'"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(MirrorUrlError::Malformed(
                "only ':' and a port may follow an IPv6 address",
            ))?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (parse_host(host)?, port)
    };
    let port = match port {
        None => None,
        Some(port) => {
            let canonical = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && !port.starts_with('0');
            match port.parse::<u16>() {
                Ok(port) if canonical => Some(port),
                _ => {
                    return Err(MirrorUrlError::Malformed(
                        "the port must be a decimal number from 1 to 65535 without leading zeros",
                    ));
                }
            }
        }
    };
    Ok((host, port))
}

/// A DNS name (any case, kept lowercase) or a dotted IPv4 address.
fn parse_host(host: &str) -> Result<Host, MirrorUrlError> {
    if host.is_empty() {
        return Err(MirrorUrlError::Malformed("the host is empty"));
    }
    if host.len() > 253 {
        return Err(MirrorUrlError::Malformed(
            "the host is longer than 253 bytes",
        ));
    }
    let last = host.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) {
        // Numbers only in the last label: an IPv4 address, written the
        // usual way (no leading zeros, four parts), or nothing.
        return Ipv4Addr::from_str(host)
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| {
                MirrorUrlError::Malformed(
                    "a host ending in a number must be an IPv4 address like 192.0.2.7",
                )
            });
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(MirrorUrlError::Malformed(
                "host labels must be 1 to 63 characters (no empty label, no trailing dot)",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(MirrorUrlError::Malformed(
                "the host may only hold letters, digits, '-' and dots",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(MirrorUrlError::Malformed(
                "host labels must not start or end with '-'",
            ));
        }
    }
    Ok(Host::Name(host.to_ascii_lowercase()))
}

/// Unreserved characters, sub-delimiters, `:`, `@` and `%` (RFC 3986
/// pchar, escapes checked apart).
fn is_pchar(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '_'
                | '~'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '='
                | ':'
                | '@'
                | '%'
        )
}

fn check_escapes(text: &str) -> Result<(), MirrorUrlError> {
    for (index, _) in text.match_indices('%') {
        let escape = text
            .get(index + 1..index + 3)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if escape.is_none() {
            return Err(MirrorUrlError::Malformed(
                "'%' must be followed by two hex digits",
            ));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), MirrorUrlError> {
    if path.is_empty() || path == "/" || path.ends_with('/') {
        return Err(MirrorUrlError::NoFile);
    }
    if !path.chars().all(|c| is_pchar(c) || c == '/') {
        return Err(MirrorUrlError::Malformed(
            "the path has a character outside the URL charset",
        ));
    }
    check_escapes(path)?;
    for written in path[1..].split('/') {
        if written.is_empty() {
            return Err(MirrorUrlError::Malformed(
                "the path has an empty segment (\"//\")",
            ));
        }
        let decoded = percent_decode_str(written)
            .decode_utf8_lossy()
            .to_ascii_lowercase();
        if decoded == "." || decoded == ".." {
            return Err(MirrorUrlError::Malformed(
                "the path has a '.' or '..' segment; write the path without them",
            ));
        }
        if decoded.contains(['/', '\\']) || decoded.chars().any(|c| c.is_control()) {
            return Err(MirrorUrlError::Malformed(
                "a path segment has an encoded '/', '\\' or control character",
            ));
        }
        if PROJECT_BYTE_SEGMENTS.contains(&decoded.as_str()) {
            return Err(MirrorUrlError::ProjectRoute {
                segment: written.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> MirrorUrl {
        MirrorUrl::parse(text, Plain::Refused).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> MirrorUrlError {
        MirrorUrl::parse(text, Plain::Refused).expect_err(text)
    }

    #[test]
    fn what_hubs_stores_and_hosts_serve_is_accepted() {
        let hub = ok("https://huggingface.co/acme/tiny/resolve/main/tiny.slm");
        assert_eq!(hub.host(), &Host::Name("huggingface.co".into()));
        assert_eq!(hub.port(), 443);
        assert_eq!(hub.request_target(), "/acme/tiny/resolve/main/tiny.slm");
        let signed = ok(
            "https://bucket.s3.amazonaws.com/m/tiny.slm?X-Amz-Signature=abc%2Fdef&X-Amz-Expires=3600",
        );
        assert_eq!(signed.label(), "https://bucket.s3.amazonaws.com/m/tiny.slm");
        assert!(signed.request_target().ends_with("X-Amz-Expires=3600"));
        assert!(!format!("{signed} {signed:?}").contains("Signature"));
        let local = ok("https://127.0.0.1:8443/tiny.slm");
        assert_eq!(local.port(), 8443);
        assert_eq!(local.host_header(), "127.0.0.1:8443");
        let v6 = ok("https://[::1]:8443/x/tiny.slm");
        assert_eq!(v6.host(), &Host::Ip("::1".parse().unwrap()));
        assert_eq!(v6.origin(), "https://[::1]:8443");
        let upper = ok("https://Mirror.Example.ORG/Tiny.slm");
        assert_eq!(upper.label(), "https://mirror.example.org/Tiny.slm");
        assert_eq!(
            ok("https://example.org/m/tiny.slm")
                .chunk_list_url()
                .label(),
            "https://example.org/m/tiny.slm.chunk-list"
        );
        let signed =
            MirrorUrl::parse("https://example.org/m/tiny.slm?sig=abc", Plain::Refused).unwrap();
        assert!(signed.has_query());
        assert_eq!(
            signed.manifest_url().expose(),
            "https://example.org/m/tiny.slm.manifest"
        );
        assert!(!signed.manifest_url().has_query());
    }

    #[test]
    fn plain_http_only_when_allowed() {
        assert_eq!(
            err("http://example.org/tiny.slm"),
            MirrorUrlError::PlainHttp
        );
        let plain = MirrorUrl::parse("http://example.org/tiny.slm", Plain::Allowed).unwrap();
        assert_eq!(plain.scheme(), Scheme::Http);
        assert_eq!(plain.port(), 80);
        for other in [
            "ftp://example.org/x",
            "file:///etc/passwd",
            "HTTPS://example.org/x",
        ] {
            assert_eq!(err(other), MirrorUrlError::NotHttps, "{other}");
        }
    }

    #[test]
    fn bad_urls_are_refused_with_their_reason() {
        assert_eq!(err(""), MirrorUrlError::Empty);
        assert_eq!(
            err(&format!("https://example.org/{}", "a".repeat(2100))),
            MirrorUrlError::TooLong { len: 2120 }
        );
        assert!(matches!(
            err("https://example.org/a b"),
            MirrorUrlError::ForbiddenCharacter { position: 21, .. }
        ));
        assert!(matches!(
            err("https://example.org/é"),
            MirrorUrlError::ForbiddenCharacter { .. }
        ));
        assert_eq!(
            err("https://user:pw@example.org/x.slm"),
            MirrorUrlError::Credentials
        );
        assert_eq!(
            err("https://example.org/x.slm#top"),
            MirrorUrlError::Fragment
        );
        for no_file in [
            "https://example.org",
            "https://example.org/",
            "https://example.org/dir/",
            "https://example.org?x=1",
        ] {
            assert_eq!(err(no_file), MirrorUrlError::NoFile, "{no_file}");
        }
        for malformed in [
            "https:///x.slm",
            "https://exa_mple.org/x",
            "https://-a.org/x",
            "https://a..org/x",
            "https://example.org./x",
            "https://example.org:0/x",
            "https://example.org:08443/x",
            "https://example.org:65536/x",
            "https://example.org:/x",
            "https://999.1.1.1/x",
            "https://1.2.3/x",
            "https://01.2.3.4/x",
            "https://[::1/x",
            "https://[nope]/x",
            "https://[::1]x/x",
            "https://example.org//x",
            "https://example.org/a/../x",
            "https://example.org/%2e%2E/x",
            "https://example.org/a%2Fb/x",
            "https://example.org/a%zz",
            "https://example.org/a%2",
            "https://example.org/x?",
            "https://example.org/x?a=<b>",
            "https://example.org/x<y>",
            "https://example.org/x\\y",
        ] {
            assert!(
                matches!(err(malformed), MirrorUrlError::Malformed(_)),
                "{malformed}: {:?}",
                err(malformed)
            );
        }
    }

    #[test]
    fn the_projects_byte_routes_are_never_mirrors() {
        for segment in ["chunks", "Artifacts", "%62ytes"] {
            let url = format!("https://example.org/{segment}/tiny.slm");
            assert!(
                matches!(err(&url), MirrorUrlError::ProjectRoute { .. }),
                "{url}"
            );
        }
        // A segment that only contains one of those words is no route.
        ok("https://example.org/my-chunks/tiny.slm");
    }

    #[test]
    fn redirects_resolve_against_the_url_and_are_checked_again() {
        let base = ok("https://huggingface.co/acme/tiny/resolve/main/tiny.slm?download=1");
        let cdn = base
            .join("https://cdn-lfs.hf.co/repos/ab/cd?sig=xyz", Plain::Refused)
            .unwrap();
        assert_eq!(cdn.host(), &Host::Name("cdn-lfs.hf.co".into()));
        let rooted = base.join("/other/tiny.slm", Plain::Refused).unwrap();
        assert_eq!(rooted.label(), "https://huggingface.co/other/tiny.slm");
        let relative = base.join("v2.slm", Plain::Refused).unwrap();
        assert_eq!(
            relative.label(),
            "https://huggingface.co/acme/tiny/resolve/main/v2.slm"
        );
        let scheme_relative = base.join("//mirror.example/x.slm", Plain::Refused).unwrap();
        assert_eq!(scheme_relative.label(), "https://mirror.example/x.slm");
        assert_eq!(
            base.join("http://cdn.example/x.slm", Plain::Refused),
            Err(MirrorUrlError::PlainHttp)
        );
        assert!(base.join("", Plain::Refused).is_err());
        assert!(base.join("javascript://x", Plain::Refused).is_err());
        assert!(base.join("?x=1", Plain::Refused).is_err());
        assert!(base.join("/chunks/x.slm", Plain::Refused).is_err());
    }

    #[test]
    fn an_origin_is_scheme_host_and_port_with_the_default_port_filled_in() {
        let origin = |text: &str| UrlOrigin::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let plain = origin("example.org");
        assert_eq!(plain, origin("https://example.org"));
        assert_eq!(plain, origin("example.org:443"));
        assert_eq!(plain, origin("https://Example.org:443/"));
        assert_eq!(plain, ok("https://example.org/m/tiny.slm").url_origin());
        assert_ne!(plain, origin("example.org:8443"));
        assert_ne!(plain, origin("http://example.org:443"));
        assert_ne!(plain, origin("http://example.org"));
        assert_eq!(origin("http://example.org").port, 80);
        assert_eq!(
            origin("127.0.0.1:18443"),
            ok("https://127.0.0.1:18443/x.slm").url_origin()
        );
        assert_ne!(
            origin("127.0.0.1:18443"),
            ok("https://127.0.0.1:18444/x.slm").url_origin()
        );
        assert_eq!(origin("[::1]:8443").host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            origin("https://[::1]:8443").to_string(),
            "https://[::1]:8443"
        );
        assert_eq!(origin("example.org:443").to_string(), "https://example.org");
        for bad in [
            "",
            "example.org/path",
            "https://example.org/x",
            "example.org?q",
            "ftp://example.org",
            "user@example.org",
            "example.org:0",
            "example.org:65536",
            "example.org:",
            "[::1",
            "exa mple.org",
        ] {
            assert!(UrlOrigin::parse(bad).is_err(), "{bad}");
        }
    }
}
