//! The mirrors a person gives (`fetch --mirror`, the companion's
//! `mirrors`): parsed strictly, at most [`MAX_MIRRORS`], each once, and
//! shown in messages without what may hold a credential.

use minimodel_node::node::MAX_MIRRORS;
use minimodel_verifier::mirror_url::{MirrorUrl, MirrorUrlError, Plain};

use super::{MirrorSet, MirrorTokens, TOKENS_VAR, TokenError};

/// Why the mirrors given cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GivenMirrorsError {
    /// More than [`MAX_MIRRORS`].
    #[error("{given} mirrors given; at most {most}")]
    TooMany {
        /// How many were given.
        given: usize,
        /// The limit.
        most: usize,
    },
    /// One is not a mirror URL.
    #[error("mirror {shown}: {error}")]
    Bad {
        /// The URL as a message shows it ([`shown_url`]).
        shown: String,
        /// Why.
        #[source]
        error: MirrorUrlError,
    },
    /// The same mirror twice.
    #[error("mirror {label} is given twice")]
    Twice {
        /// The mirror, without its query.
        label: String,
    },
    /// The tokens' variable is malformed.
    #[error(transparent)]
    Tokens(#[from] TokenError),
}

impl GivenMirrorsError {
    /// Whether the URL is one of the project's own routes (a person meant
    /// a copy of the file on a web server).
    pub fn is_project_route(&self) -> bool {
        matches!(
            self,
            GivenMirrorsError::Bad {
                error: MirrorUrlError::ProjectRoute { .. },
                ..
            }
        )
    }
}

/// Whether plain `http://` mirrors are allowed, by the person's say-so
/// (`--allow-plain-http-mirror`, `allow_plain_http_mirror`).
pub fn plain_if(allowed: bool) -> Plain {
    if allowed {
        Plain::Allowed
    } else {
        Plain::Refused
    }
}

/// Parses the mirror URLs `texts` (plain `http://` only when `plain`
/// allows it): none is `Ok(empty)`.
pub fn parse_given(texts: &[String], plain: Plain) -> Result<Vec<MirrorUrl>, GivenMirrorsError> {
    if texts.len() > MAX_MIRRORS {
        return Err(GivenMirrorsError::TooMany {
            given: texts.len(),
            most: MAX_MIRRORS,
        });
    }
    let mut urls: Vec<MirrorUrl> = Vec::with_capacity(texts.len());
    for text in texts {
        let url = MirrorUrl::parse(text, plain).map_err(|error| GivenMirrorsError::Bad {
            shown: shown_url(text),
            error,
        })?;
        if urls.iter().any(|known| known.label() == url.label()) {
            return Err(GivenMirrorsError::Twice { label: url.label() });
        }
        urls.push(url);
    }
    Ok(urls)
}

/// The set a download uses for `texts`: `None` when none is given; the
/// tokens from [`TOKENS_VAR`] in this process's environment.
pub fn given_set(texts: &[String], plain: Plain) -> Result<Option<MirrorSet>, GivenMirrorsError> {
    let urls = parse_given(texts, plain)?;
    if urls.is_empty() {
        return Ok(None);
    }
    let tokens = match std::env::var(TOKENS_VAR) {
        Ok(text) => MirrorTokens::parse(&text)?,
        Err(_) => MirrorTokens::default(),
    };
    let mut set = MirrorSet::new(urls);
    set.plain = plain;
    set.tokens = tokens;
    Ok(Some(set))
}

/// A URL as a message shows it: without its query and any user
/// information, which may hold a credential.
pub fn shown_url(text: &str) -> String {
    let text = text.split(['?', '#']).next().unwrap_or(text);
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(all: &[&str]) -> Vec<String> {
        all.iter().map(|text| (*text).to_owned()).collect()
    }

    #[test]
    fn good_mirrors_parse_in_order() {
        let urls = parse_given(
            &texts(&["https://a.example/m.slm", "https://b.example/m.slm?x=1"]),
            Plain::Refused,
        )
        .unwrap();
        let labels: Vec<String> = urls.iter().map(MirrorUrl::label).collect();
        assert_eq!(
            labels,
            ["https://a.example/m.slm", "https://b.example/m.slm"]
        );
    }

    #[test]
    fn a_bad_mirror_is_named_without_its_credentials() {
        let error = parse_given(
            &texts(&["ftp://user:secret@a.example/m.slm?token=hidden"]),
            Plain::Refused,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, GivenMirrorsError::Bad { .. }), "{error:?}");
        assert!(
            !text.contains("secret") && !text.contains("hidden"),
            "{text}"
        );
        assert!(text.contains("a.example/m.slm"), "{text}");
    }

    #[test]
    fn plain_http_needs_its_flag_and_a_mirror_twice_is_refused() {
        let plain = texts(&["http://a.example/m.slm"]);
        assert!(parse_given(&plain, Plain::Refused).is_err());
        assert_eq!(parse_given(&plain, Plain::Allowed).unwrap().len(), 1);
        let twice = texts(&["https://a.example/m.slm", "https://a.example/m.slm?t=2"]);
        assert!(matches!(
            parse_given(&twice, Plain::Refused),
            Err(GivenMirrorsError::Twice { .. })
        ));
    }

    #[test]
    fn more_than_the_limit_is_refused() {
        let many: Vec<String> = (0..=MAX_MIRRORS)
            .map(|index| format!("https://m{index}.example/m.slm"))
            .collect();
        assert!(matches!(
            parse_given(&many, Plain::Refused),
            Err(GivenMirrorsError::TooMany { given, .. }) if given == MAX_MIRRORS + 1
        ));
        assert!(parse_given(&[], Plain::Refused).unwrap().is_empty());
    }
}
