//! Peer identities as people paste them: `PEER_ID@HOST:PORT`.
//!
//! A [`PeerId`] is the peer's Ed25519 public key (32 bytes). Its text form is
//! the key in lowercase RFC 4648 base32 without padding: 52 characters from
//! `a-z2-7`, safe in a shell, a URL or a file name, and case-insensitive on
//! input. Nothing is hashed: the id *is* the key, so pinning an id pins a key.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Length of a peer id in text form.
pub const PEER_ID_TEXT_LEN: usize = 52;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

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
        // 256 bits = 51 groups of 5 bits plus one bit, padded with zeros.
        let mut text = String::with_capacity(PEER_ID_TEXT_LEN);
        let mut acc: u16 = 0;
        let mut bits = 0;
        for byte in self.0 {
            acc = (acc << 8) | u16::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                text.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            text.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Why a text is not a peer id or a peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdError {
    /// Not 52 characters.
    #[error("a peer id has {PEER_ID_TEXT_LEN} characters, this one has {0}")]
    Length(usize),
    /// A character outside base32.
    #[error("a peer id uses only a-z and 2-7; found {0:?}")]
    Character(char),
    /// The last character carries bits that must be zero.
    #[error("a peer id's last character must encode zero padding bits")]
    Padding,
    /// `PEER_ID@HOST:PORT` without the `@`.
    #[error("a peer address reads PEER_ID@HOST:PORT")]
    MissingAt,
    /// The part after `@` is not `IP:PORT`.
    #[error("{0:?} is not an IP address with a port (like 127.0.0.1:4433 or [::1]:4433)")]
    Address(String),
}

impl FromStr for PeerId {
    type Err = PeerIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let count = text.chars().count();
        if count != PEER_ID_TEXT_LEN {
            return Err(PeerIdError::Length(count));
        }
        let mut out = [0u8; 32];
        let mut acc: u16 = 0;
        let mut bits = 0;
        let mut written = 0;
        for c in text.chars() {
            let lower = c.to_ascii_lowercase();
            let value = ALPHABET
                .iter()
                .position(|&a| a as char == lower)
                .ok_or(PeerIdError::Character(c))?;
            acc = (acc << 5) | value as u16;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out[written] = (acc >> bits) as u8;
                written += 1;
                acc &= (1 << bits) - 1;
            }
        }
        if acc != 0 {
            return Err(PeerIdError::Padding);
        }
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
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!("abc".parse::<PeerId>(), Err(PeerIdError::Length(3)));
        let bad_char = format!("{}1", "a".repeat(51));
        assert_eq!(bad_char.parse::<PeerId>(), Err(PeerIdError::Character('1')));
        let bad_padding = format!("{}b", "a".repeat(51));
        assert_eq!(bad_padding.parse::<PeerId>(), Err(PeerIdError::Padding));
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
