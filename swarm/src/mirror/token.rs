//! Tokens for mirrors that need one, from the environment
//! (`MINIMODEL_MIRROR_TOKENS`): `ORIGIN=TOKEN`, several separated by commas
//! or blanks, where the origin is `HOST` (https, port 443), `HOST:PORT`
//! (https) or `http[s]://HOST[:PORT]`. A token is bound to its origin:
//! sent as `Authorization: Bearer TOKEN` only in requests to exactly its
//! scheme, host and port (a redirect to another host, another port of the
//! same host, or plain http carries none), and never logged: it has no
//! `Display`, its `Debug` hides it, and the header is marked sensitive.

use std::collections::BTreeMap;
use std::fmt;

use minimodel_verifier::mirror_url::{MirrorUrlError, UrlOrigin};

/// The environment variable read for tokens.
pub const TOKENS_VAR: &str = "MINIMODEL_MIRROR_TOKENS";

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// At most this many hosts with tokens.
pub const MAX_TOKENS: usize = 64;

/// One token. Shown nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorToken(String);

impl MirrorToken {
    /// The `Authorization` header's value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for MirrorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MirrorToken(…)")
    }
}

/// The tokens, by origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorTokens(BTreeMap<UrlOrigin, MirrorToken>);

/// Why the token list cannot be read. Never names a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// An entry without `=`.
    #[error("entry {entry} of {TOKENS_VAR} is not HOST[:PORT]=TOKEN")]
    NotAPair {
        /// Which, from 1.
        entry: usize,
    },
    /// An origin that is not one.
    #[error(
        "entry {entry} of {TOKENS_VAR} names no origin (HOST, HOST:PORT or https://HOST:PORT): {error}"
    )]
    Host {
        /// Which, from 1.
        entry: usize,
        /// Why.
        error: MirrorUrlError,
    },
    /// A token that cannot go in a header.
    #[error(
        "the token of entry {entry} of {TOKENS_VAR} is empty, longer than {MAX_TOKEN_LEN} bytes, or has a character other than visible ASCII"
    )]
    Token {
        /// Which, from 1.
        entry: usize,
    },
    /// An origin named twice.
    #[error("{TOKENS_VAR} names the origin {host} twice")]
    Twice {
        /// The host.
        host: String,
    },
    /// Too many.
    #[error("{TOKENS_VAR} names more than {MAX_TOKENS} hosts")]
    TooMany,
}

impl MirrorTokens {
    /// Reads `ORIGIN=TOKEN` entries separated by commas or blanks.
    pub fn parse(text: &str) -> Result<MirrorTokens, TokenError> {
        let mut tokens = BTreeMap::new();
        let entries = text
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let entry_number = index + 1;
            if tokens.len() == MAX_TOKENS {
                return Err(TokenError::TooMany);
            }
            let (host, token) = entry.split_once('=').ok_or(TokenError::NotAPair {
                entry: entry_number,
            })?;
            let host = UrlOrigin::parse(host).map_err(|error| TokenError::Host {
                entry: entry_number,
                error,
            })?;
            let fits = !token.is_empty()
                && token.len() <= MAX_TOKEN_LEN
                && token.bytes().all(|b| (0x21..0x7f).contains(&b));
            if !fits {
                return Err(TokenError::Token {
                    entry: entry_number,
                });
            }
            if tokens.contains_key(&host) {
                return Err(TokenError::Twice {
                    host: host.to_string(),
                });
            }
            tokens.insert(host, MirrorToken(token.to_owned()));
        }
        Ok(MirrorTokens(tokens))
    }

    /// The token for exactly `origin` (scheme, host and port), if any.
    pub fn for_origin(&self, origin: &UrlOrigin) -> Option<&MirrorToken> {
        self.0.get(origin)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The origins with a token (for the consent prompt: never the
    /// tokens).
    pub fn origins(&self) -> impl Iterator<Item = &UrlOrigin> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> UrlOrigin {
        UrlOrigin::parse(text).unwrap()
    }

    #[test]
    fn tokens_go_to_their_origin_only_and_are_never_shown() {
        let tokens = MirrorTokens::parse(
            " huggingface.co=hf_secret,Mirror.Example.org:8443=t2\t[::1]=t3,http://10.0.0.5:8080=t4 ",
        )
        .unwrap();
        let hub = origin("https://huggingface.co");
        assert_eq!(
            tokens.for_origin(&hub).unwrap().bearer(),
            "Bearer hf_secret"
        );
        assert!(tokens.for_origin(&origin("huggingface.co:443")).is_some());
        assert!(
            tokens
                .for_origin(&origin("mirror.example.org:8443"))
                .is_some()
        );
        assert!(tokens.for_origin(&origin("[::1]")).is_some());
        assert!(tokens.for_origin(&origin("http://10.0.0.5:8080")).is_some());
        // Not a subdomain, not another host, not another port of the same
        // host, not plain http to a host named without a scheme.
        for elsewhere in [
            "cdn.huggingface.co",
            "huggingface.co:8443",
            "http://huggingface.co",
            "http://huggingface.co:443",
            "mirror.example.org",
            "mirror.example.org:8444",
            "[::1]:8443",
            "https://10.0.0.5:8080",
            "http://10.0.0.5",
        ] {
            assert!(
                tokens.for_origin(&origin(elsewhere)).is_none(),
                "{elsewhere}"
            );
        }
        assert!(!format!("{tokens:?}").contains("secret"));
        assert_eq!(MirrorTokens::parse("").unwrap(), MirrorTokens::default());
    }

    #[test]
    fn a_bad_list_is_refused_without_naming_a_token() {
        let cases = [
            ("example.org", TokenError::NotAPair { entry: 1 }),
            (
                "a.org=x,=y",
                TokenError::Host {
                    entry: 2,
                    error: MirrorUrlError::Malformed("the host is empty"),
                },
            ),
            ("a.org=", TokenError::Token { entry: 1 }),
            ("a.org=é", TokenError::Token { entry: 1 }),
            (
                "a.org=x,https://A.org:443=y",
                TokenError::Twice {
                    host: "https://a.org".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(MirrorTokens::parse(text), Err(expected.clone()), "{text}");
            assert!(!expected.to_string().contains("secret"));
        }
        for bad in [
            "a.org/x=t",
            "ftp://a.org=t",
            "a.org:0=t",
            "https://a.org/m.slm=t",
        ] {
            assert!(
                matches!(
                    MirrorTokens::parse(bad),
                    Err(TokenError::Host { entry: 1, .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            MirrorTokens::parse(&format!("a.org={}", "x".repeat(MAX_TOKEN_LEN + 1))),
            Err(TokenError::Token { entry: 1 })
        ));
        let many: Vec<String> = (0..=MAX_TOKENS).map(|i| format!("h{i}.org=t")).collect();
        assert_eq!(
            MirrorTokens::parse(&many.join(",")),
            Err(TokenError::TooMany)
        );
        let error = MirrorTokens::parse("a.org=secret,b.org=").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
