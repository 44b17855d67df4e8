//! SHA-256 digests as a type, with the lowercase hex form used in every text
//! and JSON format of the project.
//!
//! Hex goes through `data-encoding`'s `HEXLOWER`, whose decoder is
//! case-sensitive: uppercase digits are refused, so a digest has one
//! spelling.

use std::fmt;
use std::str::FromStr;

use data_encoding::HEXLOWER;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest. Displays and parses as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Hashes `bytes` in one call.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        HEXLOWER.encode(&self.0)
    }
}

/// Why a hex digest did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexDigestError {
    /// Not exactly 64 characters.
    #[error("expected 64 hex digits, found {0} characters")]
    Length(usize),
    /// A character outside `0-9a-f` (uppercase is refused so that every
    /// digest has one spelling).
    #[error("character {found:?} at position {position} is not a lowercase hex digit")]
    NotHex {
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
}

impl FromStr for Sha256Digest {
    type Err = HexDigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let count = text.chars().count();
        if text.len() != 64 || count != 64 {
            return Err(HexDigestError::Length(count));
        }
        // 64 bytes and 64 characters: all ASCII, so a byte position is a
        // character position. 64 digits decode to exactly 32 bytes, so the
        // only error left is a symbol outside 0-9a-f (the first one).
        let mut out = [0u8; 32];
        HEXLOWER
            .decode_mut(text.as_bytes(), &mut out)
            .map_err(|partial| {
                let position = partial.error.position;
                HexDigestError::NotHex {
                    position,
                    found: char::from(text.as_bytes()[position]),
                }
            })?;
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", HEXLOWER.encode_display(&self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", HEXLOWER.encode_display(&self.0))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_matches_the_published_digest() {
        assert_eq!(
            Sha256Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips() {
        let digest = Sha256Digest::of(b"abc");
        assert_eq!(digest.to_hex().parse::<Sha256Digest>(), Ok(digest));
    }

    #[test]
    fn uppercase_hex_is_refused() {
        let text = Sha256Digest::of(b"abc").to_hex().to_uppercase();
        assert!(matches!(
            text.parse::<Sha256Digest>(),
            Err(HexDigestError::NotHex { position: 0, .. })
        ));
    }

    #[test]
    fn the_first_bad_character_is_named() {
        let mut text = Sha256Digest::of(b"abc").to_hex().into_bytes();
        text[5] = b'g';
        text[10] = b'G';
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text.parse::<Sha256Digest>(),
            Err(HexDigestError::NotHex {
                position: 5,
                found: 'g'
            })
        );
        let last = format!("{}F", "0".repeat(63));
        assert_eq!(
            last.parse::<Sha256Digest>(),
            Err(HexDigestError::NotHex {
                position: 63,
                found: 'F'
            })
        );
    }

    #[test]
    fn known_bytes_decode_in_order() {
        let text = format!("00ff10a5{}", "0".repeat(56));
        let digest: Sha256Digest = text.parse().unwrap();
        assert_eq!(&digest.0[..4], &[0x00, 0xff, 0x10, 0xa5]);
        assert_eq!(digest.to_string(), text);
        assert_eq!(format!("{digest:?}"), format!("Sha256Digest({text})"));
    }

    #[test]
    fn wrong_length_is_refused() {
        assert_eq!(
            "abcd".parse::<Sha256Digest>(),
            Err(HexDigestError::Length(4))
        );
        let long = "a".repeat(65);
        assert_eq!(
            long.parse::<Sha256Digest>(),
            Err(HexDigestError::Length(65))
        );
    }

    #[test]
    fn non_ascii_of_right_byte_length_is_refused() {
        // 62 ASCII digits and one two-byte character: 64 bytes, 63 characters.
        let text = format!("{}é", "0".repeat(62));
        assert_eq!(text.len(), 64);
        assert!(text.parse::<Sha256Digest>().is_err());
    }
}
