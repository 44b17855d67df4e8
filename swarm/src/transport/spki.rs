//! The raw public key as TLS carries it (RFC 7250): a DER
//! `SubjectPublicKeyInfo`. For Ed25519 (RFC 8410) it is always 44 bytes:
//!
//! ```text
//! 30 2a                 SEQUENCE, 42 bytes
//!    30 05              SEQUENCE (AlgorithmIdentifier), 5 bytes
//!       06 03 2b 65 70  OID 1.3.101.112 (id-Ed25519), no parameters
//!    03 21 00           BIT STRING, 33 bytes, 0 unused bits
//!       <32 key bytes>
//! ```
//!
//! Parsing is a comparison against that fixed prefix plus a length check:
//! any other encoding (another algorithm, parameters, a longer length form,
//! trailing bytes) is refused.

use minimodel_wire::PeerId;

/// The 12 bytes every Ed25519 SPKI starts with.
pub(crate) const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Length of an Ed25519 SPKI.
pub(crate) const ED25519_SPKI_LEN: usize = ED25519_SPKI_PREFIX.len() + 32;

/// Why bytes are not an Ed25519 SPKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpkiError {
    /// Not 44 bytes.
    #[error("an Ed25519 public key is {ED25519_SPKI_LEN} bytes of DER, this one is {0}")]
    Length(usize),
    /// The DER prefix is not the Ed25519 one.
    #[error("the public key is not an Ed25519 key in the one DER form RFC 8410 allows")]
    NotEd25519,
}

/// The DER SPKI of `peer`'s key.
pub(crate) fn ed25519_spki(peer: &PeerId) -> [u8; ED25519_SPKI_LEN] {
    let mut out = [0u8; ED25519_SPKI_LEN];
    out[..ED25519_SPKI_PREFIX.len()].copy_from_slice(&ED25519_SPKI_PREFIX);
    out[ED25519_SPKI_PREFIX.len()..].copy_from_slice(peer.as_bytes());
    out
}

/// The peer id inside an Ed25519 SPKI, parsed strictly.
pub(crate) fn parse_ed25519_spki(der: &[u8]) -> Result<PeerId, SpkiError> {
    if der.len() != ED25519_SPKI_LEN {
        return Err(SpkiError::Length(der.len()));
    }
    let (prefix, key) = der.split_at(ED25519_SPKI_PREFIX.len());
    if prefix != ED25519_SPKI_PREFIX {
        return Err(SpkiError::NotEd25519);
    }
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(key);
    Ok(PeerId(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PeerId {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        PeerId(key)
    }

    #[test]
    fn round_trips() {
        let spki = ed25519_spki(&sample());
        assert_eq!(parse_ed25519_spki(&spki), Ok(sample()));
    }

    #[test]
    fn refuses_short_and_long_input() {
        let spki = ed25519_spki(&sample());
        assert_eq!(parse_ed25519_spki(&spki[..43]), Err(SpkiError::Length(43)));
        let mut long = spki.to_vec();
        long.push(0);
        assert_eq!(parse_ed25519_spki(&long), Err(SpkiError::Length(45)));
        assert_eq!(parse_ed25519_spki(&[]), Err(SpkiError::Length(0)));
    }

    #[test]
    fn refuses_every_altered_prefix_byte() {
        let spki = ed25519_spki(&sample());
        for i in 0..ED25519_SPKI_PREFIX.len() {
            let mut bad = spki;
            bad[i] ^= 0x01;
            assert_eq!(
                parse_ed25519_spki(&bad),
                Err(SpkiError::NotEd25519),
                "byte {i}"
            );
        }
    }

    #[test]
    fn refuses_x25519_key_of_the_same_length() {
        // id-X25519 (1.3.101.110) has the same shape: must not pass.
        let mut x25519 = ed25519_spki(&sample());
        x25519[8] = 0x6e;
        assert_eq!(parse_ed25519_spki(&x25519), Err(SpkiError::NotEd25519));
    }
}
