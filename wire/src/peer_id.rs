//! Peer identities as people paste them: `PEER_ID@HOST:PORT`.
//!
//! A [`PeerId`] is the peer's Ed25519 public key (32 bytes). Its text form is
//! the key in lowercase RFC 4648 base32 without padding: 52 characters from
//! `a-z2-7`, safe in a shell, a URL or a file name, and case-insensitive on
//! input. Nothing is hashed: the id *is* the key, so pinning an id pins a key.
//!
//! 256 bits are 51 characters of 5 bits and one last character holding the
//! last bit and four zero bits, so a peer id always ends in `a` or `q`; any
//! other last character is refused, which keeps one text form per key.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};

/// Length of a peer id in text form.
pub const PEER_ID_TEXT_LEN: usize = 52;

/// RFC 4648 base32 in lowercase without padding; uppercase reads as
/// lowercase. The decoder checks that the last character's unused bits are
/// zero (data-encoding's `check_trailing_bits`, on by default).
static BASE32_LOWER: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.encoding()
        .expect("lowercase RFC 4648 base32 is a valid specification")
});

/// A peer's Ed25519 public key, the identity it proves in every handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// The raw public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 10 characters of the text form, for log lines.
    pub fn short(&self) -> String {
        self.to_string()[..10].to_owned()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", BASE32_LOWER.encode_display(&self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Why a text is not a peer id or a peer address. The messages are for the
/// person who typed or pasted the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdError {
    /// Not 52 characters.
    #[error(
        "not a peer id: expected {PEER_ID_TEXT_LEN} base32 characters (a-z, 2-7), found {}",
        characters(*.0)
    )]
    Length(usize),
    /// A character outside base32.
    #[error(
        "not a peer id: character {position} is '{}'; a peer id uses only a-z and 2-7",
        .found.escape_debug()
    )]
    Character {
        /// Its position, counted from 1 as a person counts.
        position: usize,
        /// The character.
        found: char,
    },
    /// The last character carries bits that must be zero: the id was
    /// mistyped or cut.
    #[error(
        "not a peer id: it ends in '{0}', but every peer id ends in 'a' or 'q'; check it for a typo"
    )]
    LastCharacter(char),
    /// `PEER_ID@IP:PORT` without the `@`.
    #[error("not a peer address: expected PEER_ID@IP:PORT")]
    MissingAt,
    /// The part after `@` is not `IP:PORT`.
    #[error(
        "not a peer address: '{}' is not an IP address with a port (like 127.0.0.1:4433 or [::1]:4433)",
        .0.escape_debug()
    )]
    Address(String),
}

fn characters(count: usize) -> String {
    match count {
        1 => "1 character".to_owned(),
        n => format!("{n} characters"),
    }
}

impl FromStr for PeerId {
    type Err = PeerIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let count = text.chars().count();
        if count != PEER_ID_TEXT_LEN {
            return Err(PeerIdError::Length(count));
        }
        let not_base32 =
            |c: char| !c.is_ascii() || BASE32_LOWER.interpret_byte(c as u8).is_symbol().is_none();
        if let Some((index, found)) = text.chars().enumerate().find(|(_, c)| not_base32(*c)) {
            return Err(PeerIdError::Character {
                position: index + 1,
                found,
            });
        }
        // 52 base32 symbols, all ASCII: the only error left is a last
        // character whose unused bits are not zero.
        let mut out = [0u8; 32];
        BASE32_LOWER
            .decode_mut(text.as_bytes(), &mut out)
            .map_err(|_| PeerIdError::LastCharacter(text.chars().last().unwrap_or('?')))?;
        Ok(PeerId(out))
    }
}

/// A peer to dial: its id and where it listens. Text form `PEER_ID@IP:PORT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PeerAddr {
    /// The key the peer must prove.
    pub id: PeerId,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

impl FromStr for PeerAddr {
    type Err = PeerIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (id, addr) = text.split_once('@').ok_or(PeerIdError::MissingAt)?;
        let id = id.parse()?;
        let addr = addr
            .parse()
            .map_err(|_| PeerIdError::Address(addr.to_owned()))?;
        Ok(PeerAddr { id, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PeerId {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        PeerId(key)
    }

    #[test]
    fn text_form_round_trips_and_is_52_chars() {
        for id in [PeerId([0; 32]), PeerId([0xff; 32]), sample()] {
            let text = id.to_string();
            assert_eq!(text.len(), PEER_ID_TEXT_LEN);
            assert_eq!(text.parse(), Ok(id));
            assert_eq!(text.to_uppercase().parse(), Ok(id));
        }
    }

    #[test]
    fn known_vector() {
        // RFC 4648 base32 of 32 zero bytes is 52 'a's (unpadded, lowercase).
        assert_eq!(PeerId([0; 32]).to_string(), "a".repeat(52));
        // 0xff..ff: 51 '7's and a last character holding one bit: 'q' (16).
        assert_eq!(
            PeerId([0xff; 32]).to_string(),
            format!("{}q", "7".repeat(51))
        );
        // Computed independently: Python's
        // base64.b32encode(key).decode().lower().rstrip("=").
        assert_eq!(
            sample().to_string(),
            "bmyfk6u7ytuq4m2ypwrmp3argznybjok54kdsxudvdg7efz4mgda"
        );
        assert_eq!(sample().short(), "bmyfk6u7yt");
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!("abc".parse::<PeerId>(), Err(PeerIdError::Length(3)));
        assert_eq!("".parse::<PeerId>(), Err(PeerIdError::Length(0)));
        let too_long = format!("{}a", sample());
        assert_eq!(too_long.parse::<PeerId>(), Err(PeerIdError::Length(53)));
        let bad_char = format!("{}1", "a".repeat(51));
        assert_eq!(
            bad_char.parse::<PeerId>(),
            Err(PeerIdError::Character {
                position: 52,
                found: '1'
            })
        );
        let bad_padding = format!("{}b", "a".repeat(51));
        assert_eq!(
            bad_padding.parse::<PeerId>(),
            Err(PeerIdError::LastCharacter('b'))
        );
        // Every last character but 'a' and 'q' (either case) leaves a set
        // unused bit.
        for last in "bcdefghijklmnoprstuvwxyz234567".chars() {
            let text = format!("{}{last}", "a".repeat(51));
            assert_eq!(
                text.parse::<PeerId>(),
                Err(PeerIdError::LastCharacter(last)),
                "{text}"
            );
        }
    }

    #[test]
    fn the_first_bad_character_is_named() {
        let mut text: Vec<char> = sample().to_string().chars().collect();
        text[3] = '8';
        text[9] = '=';
        let text: String = text.into_iter().collect();
        assert_eq!(
            text.parse::<PeerId>(),
            Err(PeerIdError::Character {
                position: 4,
                found: '8'
            })
        );
        // A non-ASCII character: 52 characters but more bytes.
        let text = format!("{}é{}", "a".repeat(10), "a".repeat(41));
        assert_eq!(
            text.parse::<PeerId>(),
            Err(PeerIdError::Character {
                position: 11,
                found: 'é'
            })
        );
        let padded = format!("{}=", "a".repeat(51));
        assert!(matches!(
            padded.parse::<PeerId>(),
            Err(PeerIdError::Character { position: 52, .. })
        ));
    }

    #[test]
    fn errors_read_as_plain_words() {
        assert_eq!(
            "abc".parse::<PeerId>().unwrap_err().to_string(),
            "not a peer id: expected 52 base32 characters (a-z, 2-7), found 3 characters"
        );
        assert_eq!(
            "x".parse::<PeerId>().unwrap_err().to_string(),
            "not a peer id: expected 52 base32 characters (a-z, 2-7), found 1 character"
        );
        let bad_char = format!("{}1", "a".repeat(51));
        assert_eq!(
            bad_char.parse::<PeerId>().unwrap_err().to_string(),
            "not a peer id: character 52 is '1'; a peer id uses only a-z and 2-7"
        );
        let bad_padding = format!("{}b", "a".repeat(51));
        assert_eq!(
            bad_padding.parse::<PeerId>().unwrap_err().to_string(),
            "not a peer id: it ends in 'b', but every peer id ends in 'a' or 'q'; check it for a typo"
        );
        let newline = format!("{}\n{}", "a".repeat(20), "a".repeat(31));
        assert_eq!(
            newline.parse::<PeerId>().unwrap_err().to_string(),
            "not a peer id: character 21 is '\\n'; a peer id uses only a-z and 2-7"
        );
        let host = format!("{}@example.org:1", sample());
        assert_eq!(
            host.parse::<PeerAddr>().unwrap_err().to_string(),
            "not a peer address: 'example.org:1' is not an IP address with a port (like 127.0.0.1:4433 or [::1]:4433)"
        );
    }

    #[test]
    fn peer_addr_round_trips() {
        for addr in ["127.0.0.1:4433", "[::1]:9"] {
            let text = format!("{}@{addr}", sample());
            let parsed: PeerAddr = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn peer_addr_errors_say_what_is_wrong() {
        assert_eq!(
            "127.0.0.1:1".parse::<PeerAddr>(),
            Err(PeerIdError::MissingAt)
        );
        let no_port = format!("{}@127.0.0.1", sample());
        assert!(matches!(
            no_port.parse::<PeerAddr>(),
            Err(PeerIdError::Address(_))
        ));
        let host = format!("{}@example.org:1", sample());
        assert!(matches!(
            host.parse::<PeerAddr>(),
            Err(PeerIdError::Address(_))
        ));
    }
}
