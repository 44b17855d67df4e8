//! Identifiers that end up in file names, JSON and log lines, restricted to a
//! safe charset so that none of them can traverse a path or break a format.
//!
//! Rule (`docs/manifest-v0.md`): 1 to 128 characters from `A-Z a-z 0-9 . _ -`,
//! the first one a letter or digit, and no `..` anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest identifier accepted.
pub const MAX_ID_LEN: usize = 128;

/// Why a text is not a safe identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty text.
    #[error("{kind} is empty")]
    Empty {
        /// Which identifier.
        kind: &'static str,
    },
    /// Longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside the safe charset, or a bad first character.
    #[error(
        "{kind} has {found:?} at position {position}; allowed are A-Z a-z 0-9 . _ - and the first must be a letter or digit"
    )]
    BadCharacter {
        /// Which identifier.
        kind: &'static str,
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// Contains `..`.
    #[error("{kind} contains \"..\"")]
    DotDot {
        /// Which identifier.
        kind: &'static str,
    },
}

/// Checks `text` against the safe identifier rule; `kind` names it in errors.
pub fn validate_id(kind: &'static str, text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if text.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: text.len(),
        });
    }
    for (position, found) in text.chars().enumerate() {
        let allowed =
            found.is_ascii_alphanumeric() || (position > 0 && matches!(found, '.' | '_' | '-'));
        if !allowed {
            return Err(IdError::BadCharacter {
                kind,
                position,
                found,
            });
        }
    }
    if text.contains("..") {
        return Err(IdError::DotDot { kind });
    }
    Ok(())
}

macro_rules! safe_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `text` as this identifier.
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                validate_id($kind, &text)?;
                Ok(Self(text))
            }

            /// The identifier text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::new(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

safe_id!(
    /// A model id; also the file stem of `DIR/<model-id>.slm`.
    ModelId,
    "model id"
);
safe_id!(
    /// The id of the publisher of a model.
    PublisherId,
    "publisher id"
);
safe_id!(
    /// The id of the publisher key that will sign manifests.
    KeyId,
    "key id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ids_are_accepted() {
        for text in ["tiny-llama", "Qwen2.5-0.5B_q8", "a", "m0"] {
            assert!(ModelId::new(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn path_tricks_are_refused() {
        assert!(matches!(
            ModelId::new("../etc"),
            Err(IdError::BadCharacter { position: 0, .. })
        ));
        assert!(matches!(
            ModelId::new("a/b"),
            Err(IdError::BadCharacter { position: 1, .. })
        ));
        assert_eq!(
            ModelId::new("a..b"),
            Err(IdError::DotDot { kind: "model id" })
        );
        assert!(matches!(
            ModelId::new(".hidden"),
            Err(IdError::BadCharacter { .. })
        ));
    }

    #[test]
    fn empty_long_and_non_ascii_are_refused() {
        assert_eq!(ModelId::new(""), Err(IdError::Empty { kind: "model id" }));
        assert!(matches!(
            ModelId::new("a".repeat(129)),
            Err(IdError::TooLong { len: 129, .. })
        ));
        assert!(ModelId::new("a".repeat(128)).is_ok());
        assert!(matches!(
            PublisherId::new("modèle"),
            Err(IdError::BadCharacter { position: 3, .. })
        ));
        assert!(matches!(
            KeyId::new("key id"),
            Err(IdError::BadCharacter { .. })
        ));
    }

    #[test]
    fn json_refuses_unsafe_ids() {
        assert!(serde_json::from_str::<ModelId>("\"ok-id\"").is_ok());
        assert!(serde_json::from_str::<ModelId>("\"../x\"").is_err());
    }
}
