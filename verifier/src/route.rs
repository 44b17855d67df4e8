//! Route safety (`docs/manifest-v0.md`, section Routes).
//!
//! A route is a metadata link: a license, a model card, evidence, a takedown
//! contact, a chunk hash list. It never carries model bytes (product rule 2):
//! the bytes travel between consenting peers and are verified on arrival.
//! [`Route::parse`] is a strict parser written for this one job, not a
//! general URL parser: a WHATWG parser such as the `url` crate normalises
//! (case, `..`, escapes), so the text checked would not be the text kept,
//! and it refuses too little. Only percent-decoding comes from a crate,
//! `percent-encoding`. It accepts
//!
//! ```text
//! route     = "https://" host [ ":" port ] path [ "?" query ] [ "#" fragment ]
//! ```
//!
//! with a lowercase DNS host, a restricted ASCII charset and at most
//! [`MAX_ROUTE_LEN`] bytes, and then refuses routes that carry credentials or
//! point at bytes (byte hosts, byte path segments, artifact file extensions,
//! download parameters). A [`Route`] value exists only if it passed all of
//! this, including when it is deserialized from JSON.

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest route accepted, in bytes.
pub const MAX_ROUTE_LEN: usize = 512;

/// Longest host accepted, in bytes (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// Longest DNS label accepted, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// Hosts that serve repository files as raw bytes. A route on one of them,
/// or on any subdomain of one, is refused.
pub const BYTE_HOSTS: [&str; 6] = [
    "raw.githubusercontent.com",
    "objects.githubusercontent.com",
    "media.githubusercontent.com",
    "cdn-lfs.huggingface.co",
    "cdn-lfs.hf.co",
    "cas-bridge.xethub.hf.co",
];

/// The project's own byte routes: path segments reserved for them, which
/// metadata never points at and no mirror may be
/// ([`crate::mirror_url`]): the rule that keeps a route off a project
/// server keeps a mirror off one too.
pub const PROJECT_BYTE_SEGMENTS: [&str; 3] = ["artifacts", "chunks", "bytes"];

/// Path segments that name a byte download (compared without case, after
/// percent-decoding): download paths, and the project's own byte routes
/// ([`PROJECT_BYTE_SEGMENTS`]).
pub const BYTE_PATH_SEGMENTS: [&str; 7] = [
    "resolve",
    "raw",
    "download",
    "downloads",
    "artifacts",
    "chunks",
    "bytes",
];

/// File extensions of artifacts, weights and archives (compared without
/// case, on every path segment and every query value).
pub const ARTIFACT_EXTENSIONS: [&str; 19] = [
    ".slm",
    ".gguf",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".onnx",
    ".h5",
    ".tflite",
    ".npz",
    ".tar",
    ".tgz",
    ".zip",
    ".gz",
    ".zst",
    ".xz",
    ".7z",
    ".part",
];

/// Query parameter names that carry credentials (compared without case).
pub const CREDENTIAL_PARAMETERS: [&str; 24] = [
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "authorization",
    "key",
    "api_key",
    "apikey",
    "api-key",
    "sig",
    "signature",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "credential",
    "credentials",
    "key-pair-id",
    "policy",
    // Azure shared access signature fields.
    "sv",
    "se",
    "sp",
    "skoid",
];

/// Query parameter name prefixes that carry credentials (signed cloud
/// storage URLs), compared without case.
pub const CREDENTIAL_PARAMETER_PREFIXES: [&str; 2] = ["x-amz-", "x-goog-"];

/// Query parameter name suffixes that carry credentials (`hf_token`,
/// `github-token`), compared without case.
pub const CREDENTIAL_PARAMETER_SUFFIXES: [&str; 2] = ["_token", "-token"];

/// Query parameter names that ask for a download (compared without case).
pub const DOWNLOAD_PARAMETERS: [&str; 4] =
    ["download", "dl", "raw", "response-content-disposition"];

/// The advice every byte-route refusal ends with.
const BYTE_ADVICE: &str = "routes are metadata links; publish the bytes through seeding instead";

/// The advice every credential refusal ends with.
const CREDENTIAL_ADVICE: &str =
    "routes are public metadata links; remove the credential and link a public page instead";

/// A validated metadata route. Only [`Route::parse`] (also behind
/// [`FromStr`] and serde) makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route(String);

/// Why a text is not an acceptable route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Empty text.
    #[error("route is empty; give a https:// link to a metadata page")]
    Empty,
    /// Longer than [`MAX_ROUTE_LEN`].
    #[error("route is {len} bytes long; the limit is {MAX_ROUTE_LEN}")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// Whitespace, a control character or a non-ASCII character.
    #[error(
        "route has {found:?} at byte {position}; routes are ASCII without whitespace or control characters (percent-encode other characters)"
    )]
    ForbiddenCharacter {
        /// Zero-based byte position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// Does not start with `https://`.
    #[error("route must start with https:// (lowercase); plain http and other schemes are refused")]
    NotHttps,
    /// Userinfo (`user:pass@`) or any `@` in the authority.
    #[error("route has user information (\"@\") before the host; {CREDENTIAL_ADVICE}")]
    Credentials,
    /// A query parameter that carries a credential or signature.
    #[error("route has the credential query parameter {name:?}; {CREDENTIAL_ADVICE}")]
    CredentialParameter {
        /// The parameter name as written.
        name: String,
    },
    /// The host serves raw repository bytes.
    #[error("route host {host} serves raw file bytes; {BYTE_ADVICE}")]
    ByteHost {
        /// The host.
        host: String,
    },
    /// A path segment that names a byte download.
    #[error("route path segment {segment:?} points at model bytes; {BYTE_ADVICE}")]
    BytePathSegment {
        /// The segment as written.
        segment: String,
    },
    /// A path segment or query value with an artifact file extension.
    #[error("route names a file ending in {extension} (an artifact or archive); {BYTE_ADVICE}")]
    ArtifactExtension {
        /// The extension, lowercase with its dot.
        extension: &'static str,
    },
    /// A query parameter that asks for a download.
    #[error("route has the download query parameter {name:?}; {BYTE_ADVICE}")]
    DownloadParameter {
        /// The parameter name as written.
        name: String,
    },
    /// A character outside the charset of one part of the route.
    #[error(
        "route {part} has {found:?} at byte {position}; allowed are A-Z a-z 0-9 - . _ ~ + , ; = : ! * ( ) and %XX escapes"
    )]
    CharacterNotAllowed {
        /// Which part: `path`, `query` or `fragment`.
        part: &'static str,
        /// Zero-based byte position in the route.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// Any other break of the route grammar.
    #[error("route is malformed: {0}")]
    Malformed(&'static str),
}

impl Route {
    /// Parses and checks `text` as a metadata route.
    pub fn parse(text: &str) -> Result<Route, RouteError> {
        check_route(text)?;
        Ok(Route(text.to_owned()))
    }

    /// The route text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (lowercase DNS name, without port).
    pub fn host(&self) -> &str {
        let rest = &self.0[SCHEME.len()..];
        let end = rest.find(['/', '?', '#', ':']).unwrap_or(rest.len());
        &rest[..end]
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Route {
    type Err = RouteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Route::parse(text)
    }
}

impl Serialize for Route {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Route::parse(&text).map_err(serde::de::Error::custom)
    }
}

const SCHEME: &str = "https://";

/// The whole check: syntax first, then credentials, then byte routes.
fn check_route(text: &str) -> Result<(), RouteError> {
    if text.is_empty() {
        return Err(RouteError::Empty);
    }
    if text.len() > MAX_ROUTE_LEN {
        return Err(RouteError::TooLong { len: text.len() });
    }
    if let Some((position, found)) = text
        .char_indices()
        .find(|(_, c)| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(RouteError::ForbiddenCharacter { position, found });
    }
    let rest = text.strip_prefix(SCHEME).ok_or(RouteError::NotHttps)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(RouteError::Credentials);
    }
    let host = check_authority(authority)?;

    let after_authority = &rest[authority_end..];
    let base = SCHEME.len() + authority_end;
    let (before_fragment, fragment) = match after_authority.split_once('#') {
        Some((head, fragment)) => (head, Some(fragment)),
        None => (after_authority, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };
    let segments = check_path(path, base)?;
    let parameters = match query {
        Some(query) => check_query(query, base + path.len() + 1)?,
        None => Vec::new(),
    };
    if let Some(fragment) = fragment {
        let start = base + before_fragment.len() + 1;
        if fragment.is_empty() {
            return Err(RouteError::Malformed("empty fragment after '#'"));
        }
        check_charset(fragment, "fragment", start, |c| {
            is_path_char(c) || matches!(c, '/' | '?')
        })?;
        decode_percent(fragment)?;
    }

    for parameter in &parameters {
        if is_credential_parameter(&parameter.decoded_name) {
            return Err(RouteError::CredentialParameter {
                name: parameter.name.to_owned(),
            });
        }
    }
    if let Some(byte_host) = BYTE_HOSTS
        .iter()
        .find(|byte_host| host_is_or_under(host, byte_host))
    {
        return Err(RouteError::ByteHost {
            host: (*byte_host).to_owned(),
        });
    }
    for (written, decoded) in &segments {
        if BYTE_PATH_SEGMENTS.contains(&decoded.as_str()) {
            return Err(RouteError::BytePathSegment {
                segment: (*written).to_owned(),
            });
        }
        if let Some(extension) = artifact_extension(decoded) {
            return Err(RouteError::ArtifactExtension { extension });
        }
    }
    for parameter in &parameters {
        if DOWNLOAD_PARAMETERS.contains(&parameter.decoded_name.as_str())
            || (parameter.decoded_name == "alt" && parameter.decoded_value == "media")
        {
            return Err(RouteError::DownloadParameter {
                name: parameter.name.to_owned(),
            });
        }
        if let Some(extension) = artifact_extension(&parameter.decoded_value) {
            return Err(RouteError::ArtifactExtension { extension });
        }
    }
    Ok(())
}

/// Checks `host[:port]` and returns the host.
fn check_authority(authority: &str) -> Result<&str, RouteError> {
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    check_host(host)?;
    if let Some(port) = port {
        let canonical = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.len() <= 5;
        if !canonical || port.parse::<u32>().map_or(true, |p| p > 65_535) {
            return Err(RouteError::Malformed(
                "port must be a decimal number from 1 to 65535 without leading zeros",
            ));
        }
    }
    Ok(host)
}

/// A lowercase DNS name of at least two labels whose last label starts with
/// a letter (so IP literals are refused).
fn check_host(host: &str) -> Result<(), RouteError> {
    if host.is_empty() {
        return Err(RouteError::Malformed("host is empty"));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(RouteError::Malformed("host is longer than 253 bytes"));
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(RouteError::Malformed("host must be written in lowercase"));
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in host.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(RouteError::Malformed(
                "host labels must be 1 to 63 characters (no empty label, no trailing dot)",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(RouteError::Malformed(
                "host may only hold a-z 0-9 - and dots (IP literals and ports in brackets are refused)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(RouteError::Malformed(
                "host labels must not start or end with '-'",
            ));
        }
        labels += 1;
        last = label;
    }
    if labels < 2 || !last.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(RouteError::Malformed(
            "host must be a DNS name with a top-level domain (IP addresses are refused)",
        ));
    }
    Ok(())
}

/// Unreserved characters and the sub-delimiters the route grammar keeps.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '_' | '~' | '+' | ',' | ';' | '=' | ':' | '!' | '*' | '(' | ')' | '%'
        )
}

fn check_charset(
    text: &str,
    part: &'static str,
    start: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), RouteError> {
    match text.char_indices().find(|(_, c)| !allowed(*c)) {
        Some((offset, found)) => Err(RouteError::CharacterNotAllowed {
            part,
            position: start + offset,
            found,
        }),
        None => Ok(()),
    }
}

/// Checks the path and returns its segments, as written and decoded
/// (lowercase).
fn check_path(path: &str, start: usize) -> Result<Vec<(&str, String)>, RouteError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    check_charset(path, "path", start, |c| is_path_char(c) || c == '/')?;
    // The authority ends at '/', '?' or '#', so a non-empty path starts with '/'.
    let mut segments = Vec::new();
    let pieces: Vec<&str> = path[1..].split('/').collect();
    let last_index = pieces.len() - 1;
    for (index, written) in pieces.into_iter().enumerate() {
        if written.is_empty() {
            if index == last_index {
                break;
            }
            return Err(RouteError::Malformed("path has an empty segment (\"//\")"));
        }
        let decoded = decode_percent(written)?;
        if decoded.bytes().any(|b| b == b'/' || b == b'\\') {
            return Err(RouteError::Malformed(
                "path segment has an encoded '/' or '\\'",
            ));
        }
        if decoded == "." || decoded == ".." {
            return Err(RouteError::Malformed(
                "path has a '.' or '..' segment; write the path without them",
            ));
        }
        segments.push((written, decoded));
    }
    Ok(segments)
}

/// One query parameter, as written and decoded (lowercase).
struct QueryParameter<'a> {
    name: &'a str,
    decoded_name: String,
    decoded_value: String,
}

fn check_query(query: &str, start: usize) -> Result<Vec<QueryParameter<'_>>, RouteError> {
    if query.is_empty() {
        return Err(RouteError::Malformed("empty query after '?'"));
    }
    check_charset(query, "query", start, |c| {
        is_path_char(c) || matches!(c, '/' | '?' | '&')
    })?;
    let mut parameters = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.is_empty() {
            return Err(RouteError::Malformed(
                "query has an empty parameter or a parameter without a name",
            ));
        }
        parameters.push(QueryParameter {
            name,
            decoded_name: decode_percent(name)?,
            decoded_value: decode_percent(value)?,
        });
    }
    Ok(parameters)
}

/// Decodes `%XX` escapes and lowercases the result. Escapes of control
/// characters are refused; escapes that are not valid UTF-8 are decoded
/// lossily (the result is only compared, never stored).
///
/// `percent-encoding` does the decoding. It is lenient by design (a `%`
/// without two hex digits passes through as written), so every escape is
/// first checked here, left to right, and the first fault is reported.
fn decode_percent(text: &str) -> Result<String, RouteError> {
    for (index, _) in text.match_indices('%') {
        let escape = text
            .get(index..index + 3)
            .filter(|escape| escape[1..].bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(RouteError::Malformed(
                "'%' must be followed by two hex digits",
            ))?;
        if percent_decode_str(escape).any(|byte| byte.is_ascii_control()) {
            return Err(RouteError::Malformed(
                "percent-escape encodes a control character",
            ));
        }
    }
    Ok(percent_decode_str(text).decode_utf8_lossy().to_lowercase())
}

fn is_credential_parameter(decoded_name: &str) -> bool {
    CREDENTIAL_PARAMETERS.contains(&decoded_name)
        || CREDENTIAL_PARAMETER_PREFIXES
            .iter()
            .any(|prefix| decoded_name.starts_with(prefix))
        || CREDENTIAL_PARAMETER_SUFFIXES
            .iter()
            .any(|suffix| decoded_name.ends_with(suffix))
}

fn host_is_or_under(host: &str, byte_host: &str) -> bool {
    host == byte_host
        || host
            .strip_suffix(byte_host)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

fn artifact_extension(decoded: &str) -> Option<&'static str> {
    ARTIFACT_EXTENSIONS
        .iter()
        .find(|extension| decoded.ends_with(*extension))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_byte_routes_are_byte_segments() {
        for segment in PROJECT_BYTE_SEGMENTS {
            assert!(BYTE_PATH_SEGMENTS.contains(&segment), "{segment}");
        }
    }

    const BAD_ESCAPE: RouteError = RouteError::Malformed("'%' must be followed by two hex digits");
    const CONTROL: RouteError = RouteError::Malformed("percent-escape encodes a control character");

    #[test]
    fn escapes_decode_and_lowercase() {
        assert_eq!(decode_percent("Re%73OLVE"), Ok("resolve".to_owned()));
        assert_eq!(decode_percent("a%2Fb%2fc"), Ok("a/b/c".to_owned()));
        assert_eq!(decode_percent("%25"), Ok("%".to_owned()));
        assert_eq!(decode_percent("%2525"), Ok("%25".to_owned()));
        assert_eq!(decode_percent("%C3%A9"), Ok("\u{e9}".to_owned()));
        assert_eq!(decode_percent(""), Ok(String::new()));
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        assert_eq!(decode_percent("a%ffb"), Ok("a\u{fffd}b".to_owned()));
    }

    #[test]
    fn every_percent_must_start_an_escape() {
        for text in ["%", "a%", "a%4", "%zz", "%4g", "%%41", "%2%41", "%41%"] {
            assert_eq!(decode_percent(text), Err(BAD_ESCAPE), "{text}");
        }
    }

    #[test]
    fn control_escapes_are_refused() {
        for text in ["%00", "%0a", "%1F", "%7f", "%7F", "a%09b"] {
            assert_eq!(decode_percent(text), Err(CONTROL), "{text}");
        }
        assert_eq!(decode_percent("%20%7e"), Ok(" ~".to_owned()));
    }

    #[test]
    fn the_first_bad_escape_is_reported() {
        assert_eq!(decode_percent("%00%zz"), Err(CONTROL));
        assert_eq!(decode_percent("%zz%00"), Err(BAD_ESCAPE));
    }
}
