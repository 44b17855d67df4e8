//! Delay stamps: the QUIC DATAGRAM frames with which a sender measures
//! the one-way delay of its path to a peer (`docs/wire-protocol.md`,
//! section 14).
//!
//! A sender that is uploading stamps the time it sends ([`Datagram::Stamp`]);
//! the receiver answers with the stamp and the time it arrived by its own
//! clock ([`Datagram::Echo`]). The difference is the one-way delay plus the
//! constant offset between the two clocks, so its rise over its least
//! value is the queuing on the way there alone: unlike the round trip, it
//! leaves out the wait of the acknowledgements behind the receiver's own
//! uploads.
//!
//! Datagrams are advisory: one that does not decode is dropped, never
//! blamed (a peer of a version without them sends none, and one that
//! receives them reads none).

use std::fmt;

/// The type byte of a [`Datagram::Stamp`].
pub const STAMP_TYPE: u8 = 0x01;
/// The type byte of a [`Datagram::Echo`].
pub const ECHO_TYPE: u8 = 0x02;
/// Bytes of an encoded [`Datagram::Stamp`].
pub const STAMP_LEN: usize = 9;
/// Bytes of an encoded [`Datagram::Echo`].
pub const ECHO_LEN: usize = 17;

/// One delay datagram. Times are microseconds of the sender's own clock
/// (any origin, counting up; it is compared only with itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// Sent while uploading: when it left, by the sender's clock.
    Stamp {
        /// Microseconds by the stamping side's clock.
        sent: u64,
    },
    /// The answer to a stamp.
    Echo {
        /// The stamp's `sent`, as received.
        sent: u64,
        /// When the stamp arrived, microseconds by the echoing side's
        /// clock.
        received: u64,
    },
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramError {
    /// No bytes at all.
    Empty,
    /// A type byte this version does not define.
    UnknownType(u8),
    /// A defined type with the wrong number of bytes.
    Length {
        /// The type byte.
        kind: u8,
        /// Bytes received.
        len: usize,
        /// Bytes the type has.
        expected: usize,
    },
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty datagram"),
            Self::UnknownType(kind) => write!(f, "unknown datagram type {kind:#04x}"),
            Self::Length {
                kind,
                len,
                expected,
            } => write!(
                f,
                "datagram type {kind:#04x} is {expected} bytes, got {len}"
            ),
        }
    }
}

impl std::error::Error for DatagramError {}

impl Datagram {
    /// The datagram's bytes: the type, then each time as a `u64`
    /// little-endian.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::Stamp { sent } => {
                let mut out = Vec::with_capacity(STAMP_LEN);
                out.push(STAMP_TYPE);
                out.extend_from_slice(&sent.to_le_bytes());
                out
            }
            Self::Echo { sent, received } => {
                let mut out = Vec::with_capacity(ECHO_LEN);
                out.push(ECHO_TYPE);
                out.extend_from_slice(&sent.to_le_bytes());
                out.extend_from_slice(&received.to_le_bytes());
                out
            }
        }
    }

    /// Decodes one datagram: exactly its type's length, no more.
    pub fn decode(bytes: &[u8]) -> Result<Self, DatagramError> {
        let (&kind, body) = bytes.split_first().ok_or(DatagramError::Empty)?;
        let expected = match kind {
            STAMP_TYPE => STAMP_LEN,
            ECHO_TYPE => ECHO_LEN,
            other => return Err(DatagramError::UnknownType(other)),
        };
        if bytes.len() != expected {
            return Err(DatagramError::Length {
                kind,
                len: bytes.len(),
                expected,
            });
        }
        let time = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(word)
        };
        Ok(match kind {
            STAMP_TYPE => Self::Stamp { sent: time(0) },
            _ => Self::Echo {
                sent: time(0),
                received: time(8),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_round_trip() {
        for datagram in [
            Datagram::Stamp { sent: 0 },
            Datagram::Stamp { sent: u64::MAX },
            Datagram::Echo {
                sent: 1_234_567,
                received: 89,
            },
        ] {
            assert_eq!(Datagram::decode(&datagram.encode()), Ok(datagram));
        }
    }

    #[test]
    fn bad_datagrams_are_refused_with_the_reason() {
        assert_eq!(Datagram::decode(&[]), Err(DatagramError::Empty));
        assert_eq!(
            Datagram::decode(&[0x00]),
            Err(DatagramError::UnknownType(0))
        );
        assert_eq!(
            Datagram::decode(&[0x03; 9]),
            Err(DatagramError::UnknownType(3))
        );
        // One byte short, one too many.
        let stamp = Datagram::Stamp { sent: 7 }.encode();
        assert_eq!(
            Datagram::decode(&stamp[..8]),
            Err(DatagramError::Length {
                kind: STAMP_TYPE,
                len: 8,
                expected: STAMP_LEN
            })
        );
        let mut long = Datagram::Echo {
            sent: 1,
            received: 2,
        }
        .encode();
        long.push(0);
        assert_eq!(
            Datagram::decode(&long),
            Err(DatagramError::Length {
                kind: ECHO_TYPE,
                len: 18,
                expected: ECHO_LEN
            })
        );
        assert!(
            DatagramError::UnknownType(0xff)
                .to_string()
                .contains("0xff")
        );
    }
}
