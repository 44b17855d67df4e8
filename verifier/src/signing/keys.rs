//! Publisher keys and signatures as people paste them (`docs/signing.md`,
//! section 2).
//!
//! - A public key prints as `mmpk1` and its 32 bytes in lowercase RFC 4648
//!   base32 without padding (57 characters).
//! - Its key id is `mmk1` and the first 10 bytes of the SHA-256 of those
//!   32 bytes, in the same base32 (20 characters): a name for people and
//!   file listings, never a proof: every check compares whole keys.
//! - A secret key (the 32-byte Ed25519 seed of RFC 8032) prints as `mmsk1`
//!   and its base32; it appears only in a secret key file.
//! - A signature prints as `ed25519:` and its 64 bytes in lowercase hex.
//!
//! Each text form has one spelling: lowercase only, and the unused bits of
//! a last base32 character must be zero.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::Purpose;

/// How a public key's text starts.
pub const PUBLIC_KEY_PREFIX: &str = "mmpk1";
/// How a secret key's text starts.
pub const SECRET_KEY_PREFIX: &str = "mmsk1";
/// How a key id starts.
pub const KEY_ID_PREFIX: &str = "mmk1";
/// How a signature's text starts.
pub const SIGNATURE_PREFIX: &str = "ed25519:";

/// Bytes of a key id: 80 bits of the key's SHA-256.
pub const KEY_ID_BYTES: usize = 10;

/// Length of a public or secret key's text: the prefix and 52 base32
/// characters.
pub const KEY_TEXT_LEN: usize = 5 + 52;
/// Length of a key id's text: the prefix and 16 base32 characters.
pub const KEY_ID_TEXT_LEN: usize = 4 + 16;
/// Length of a signature's text: the prefix and 128 hex digits.
pub const SIGNATURE_TEXT_LEN: usize = 8 + 128;

/// RFC 4648 base32, lowercase, no padding, lowercase input only. The
/// decoder checks that the last character's unused bits are zero.
static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.encoding()
        .expect("lowercase RFC 4648 base32 is a valid specification")
});

/// Why a text is not a key, a key id or a signature. The messages are for
/// the person who pasted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    /// It does not start with the prefix of its kind.
    #[error("not a {kind}: it must start with {prefix}")]
    Prefix {
        /// What was expected (`publisher public key`, ...).
        kind: &'static str,
        /// The prefix it must start with.
        prefix: &'static str,
    },
    /// Too short or too long.
    #[error("not a {kind}: expected {expected} characters, found {found}")]
    Length {
        /// What was expected.
        kind: &'static str,
        /// The length of its text form.
        expected: usize,
        /// The length found, in characters.
        found: usize,
    },
    /// A character outside its alphabet (uppercase included).
    #[error("not a {kind}: character {position} is {found:?}; {alphabet}")]
    Character {
        /// What was expected.
        kind: &'static str,
        /// Its position, counted from 1 as a person counts.
        position: usize,
        /// The character.
        found: char,
        /// Which characters are allowed.
        alphabet: &'static str,
    },
    /// The last base32 character carries bits that must be zero: the text
    /// was mistyped or cut.
    #[error(
        "not a {kind}: its last character {found:?} carries bits that must be zero; check it for a typo"
    )]
    LastCharacter {
        /// What was expected.
        kind: &'static str,
        /// The last character.
        found: char,
    },
    /// 32 bytes that are not an Ed25519 public key (not a point of the
    /// curve).
    #[error("not a publisher public key: its 32 bytes are not a point of the Ed25519 curve")]
    NotOnCurve,
    /// A key of small order, for which a signature can be made without
    /// the secret key.
    #[error(
        "not a usable publisher public key: it has small order, and signatures \"by\" it can be made without any secret"
    )]
    WeakKey,
}

const BASE32_ALPHABET: &str = "a key uses only lowercase a-z and 2-7";
const HEX_ALPHABET: &str = "a signature uses only lowercase hex digits 0-9 a-f";

/// Decodes `prefix` + lowercase base32 of exactly `N` bytes.
fn decode_base32<const N: usize>(
    text: &str,
    kind: &'static str,
    prefix: &'static str,
    len: usize,
) -> Result<[u8; N], KeyTextError> {
    let Some(body) = text.strip_prefix(prefix) else {
        return Err(KeyTextError::Prefix { kind, prefix });
    };
    let found = text.chars().count();
    if found != len {
        return Err(KeyTextError::Length {
            kind,
            expected: len,
            found,
        });
    }
    if let Some((index, found)) = body
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, 'a'..='z' | '2'..='7'))
    {
        return Err(KeyTextError::Character {
            kind,
            position: prefix.len() + index + 1,
            found,
            alphabet: BASE32_ALPHABET,
        });
    }
    let mut out = [0u8; N];
    // All ASCII of the alphabet, of the right length: the only error left
    // is a last character whose unused bits are set.
    BASE32
        .decode_mut(body.as_bytes(), &mut out)
        .map_err(|_| KeyTextError::LastCharacter {
            kind,
            found: body.chars().last().unwrap_or('?'),
        })?;
    Ok(out)
}

/// A publisher's Ed25519 public key: a valid point of the curve, not of
/// small order (checked when it is made). Kept as its 32 bytes; the point
/// is decompressed again for each verification.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    /// The key from its 32 bytes (RFC 8032 encoding). Refuses bytes that
    /// are not a point of the curve and keys of small order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyTextError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyTextError::NotOnCurve)?;
        if key.is_weak() {
            return Err(KeyTextError::WeakKey);
        }
        Ok(PublicKey { bytes: *bytes })
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key id: `mmk1` and the first 10 bytes of SHA-256 of the key.
    pub fn key_id(&self) -> PublisherKeyId {
        let digest = Sha256::digest(self.as_bytes());
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        PublisherKeyId(id)
    }

    /// Checks `signature` over `body` signed for `purpose` (the domain is
    /// put in front here): RFC 8032 Ed25519, strict (a signature whose `S`
    /// is not below the group order, or whose `R` has small order, fails).
    pub fn verify(
        &self,
        purpose: Purpose,
        body: &[u8],
        signature: &Ed25519Signature,
    ) -> Result<(), BadSignature> {
        let message = purpose.message(body);
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        // Checked when the key was made, so this does not fail.
        let key = VerifyingKey::from_bytes(&self.bytes).map_err(|_| BadSignature)?;
        key.verify_strict(&message, &signature)
            .map_err(|_| BadSignature)
    }
}

impl PublicKey {
    /// Checks `signature` over `message` as it is, without a domain:
    /// only for BEP 44 channel items (`crate::channel`), whose message
    /// always starts with the channel salt, so that it never equals a
    /// message of a [`Purpose`]. Strict, as [`Self::verify`].
    pub(crate) fn verify_raw(
        &self,
        message: &[u8],
        signature: &Ed25519Signature,
    ) -> Result<(), BadSignature> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        let key = VerifyingKey::from_bytes(&self.bytes).map_err(|_| BadSignature)?;
        key.verify_strict(message, &signature)
            .map_err(|_| BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_KEY_PREFIX}{}",
            BASE32.encode_display(self.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = decode_base32::<32>(
            text,
            "publisher public key",
            PUBLIC_KEY_PREFIX,
            KEY_TEXT_LEN,
        )?;
        PublicKey::from_bytes(&bytes)
    }
}

impl serde::Serialize for PublicKey {
    /// As its text form, `mmpk1...`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A key id: 80 bits of a public key's SHA-256, printed `mmk1...`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherKeyId(pub [u8; KEY_ID_BYTES]);

impl PublisherKeyId {
    /// The key id as a manifest `key-id` (it passes the safe-id rule).
    pub fn to_id(&self) -> crate::ids::KeyId {
        crate::ids::KeyId::new(self.to_string())
            .expect("mmk1 and lowercase base32 pass the safe-id rule")
    }
}

impl fmt::Display for PublisherKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_ID_PREFIX}{}", BASE32.encode_display(&self.0))
    }
}

impl fmt::Debug for PublisherKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherKeyId({self})")
    }
}

impl FromStr for PublisherKeyId {
    type Err = KeyTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode_base32::<KEY_ID_BYTES>(text, "key id", KEY_ID_PREFIX, KEY_ID_TEXT_LEN)
            .map(PublisherKeyId)
    }
}

/// A publisher's secret key: the 32-byte Ed25519 seed. Its memory is wiped
/// when dropped; `Debug` prints only the key id.
#[derive(Clone)]
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// The key of a 32-byte seed (which must come from a cryptographic
    /// random number generator for a new key).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            bytes: self.key.verifying_key().to_bytes(),
        }
    }

    /// Signs `body` for `purpose` (the domain is put in front here).
    pub fn sign(&self, purpose: Purpose, body: &[u8]) -> Ed25519Signature {
        let message = purpose.message(body);
        Ed25519Signature(self.key.sign(&message).to_bytes())
    }

    /// Signs `message` as it is, without a domain: only for BEP 44
    /// channel items (see [`PublicKey::verify_raw`]).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Ed25519Signature {
        Ed25519Signature(self.key.sign(message).to_bytes())
    }

    /// The text form, `mmsk1...`: for the secret key file only.
    pub fn to_text(&self) -> String {
        format!(
            "{SECRET_KEY_PREFIX}{}",
            BASE32.encode_display(self.key.as_bytes())
        )
    }

    /// Reads the text form.
    pub fn from_text(text: &str) -> Result<SecretKey, KeyTextError> {
        let seed = decode_base32::<32>(text, "secret key", SECRET_KEY_PREFIX, KEY_TEXT_LEN)?;
        Ok(SecretKey::from_seed(&seed))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "SecretKey({})", self.public_key().key_id())
    }
}

/// An Ed25519 signature (64 bytes), printed `ed25519:` and lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519Signature(pub [u8; 64]);

impl fmt::Display for Ed25519Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SIGNATURE_PREFIX)?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Ed25519Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Signature({self})")
    }
}

impl FromStr for Ed25519Signature {
    type Err = KeyTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const KIND: &str = "signature";
        let Some(hex) = text.strip_prefix(SIGNATURE_PREFIX) else {
            return Err(KeyTextError::Prefix {
                kind: KIND,
                prefix: SIGNATURE_PREFIX,
            });
        };
        let found = text.chars().count();
        if found != SIGNATURE_TEXT_LEN {
            return Err(KeyTextError::Length {
                kind: KIND,
                expected: SIGNATURE_TEXT_LEN,
                found,
            });
        }
        let digit = |c: char| match c {
            '0'..='9' => Some(c as u8 - b'0'),
            'a'..='f' => Some(c as u8 - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 64];
        let chars: Vec<char> = hex.chars().collect();
        for (index, pair) in chars.chunks(2).enumerate() {
            let mut byte = 0u8;
            for (offset, &c) in pair.iter().enumerate() {
                let value = digit(c).ok_or(KeyTextError::Character {
                    kind: KIND,
                    position: SIGNATURE_PREFIX.len() + 2 * index + offset + 1,
                    found: c,
                    alphabet: HEX_ALPHABET,
                })?;
                byte = byte << 4 | value;
            }
            out[index] = byte;
        }
        Ok(Ed25519Signature(out))
    }
}

/// A signature that does not verify: made by another key, over other
/// bytes, for another purpose, or not a signature at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not verify")]
pub struct BadSignature;

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, TEST 1: secret key and public key.
    const RFC_SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    const RFC_PUBLIC: [u8; 32] = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ];

    #[test]
    fn the_rfc_8032_key_pair_gives_its_public_key() {
        let secret = SecretKey::from_seed(&RFC_SEED);
        assert_eq!(secret.public_key().as_bytes(), &RFC_PUBLIC);
    }

    #[test]
    fn text_forms_round_trip_and_have_their_lengths() {
        let secret = SecretKey::from_seed(&RFC_SEED);
        let public = secret.public_key();
        let text = public.to_string();
        assert_eq!(text.len(), KEY_TEXT_LEN);
        assert!(text.starts_with("mmpk1"), "{text}");
        assert_eq!(text.parse::<PublicKey>(), Ok(public));
        let id = public.key_id().to_string();
        assert_eq!(id.len(), KEY_ID_TEXT_LEN);
        assert_eq!(id.parse::<PublisherKeyId>(), Ok(public.key_id()));
        assert_eq!(public.key_id().to_id().as_str(), id);
        let secret_text = secret.to_text();
        assert_eq!(secret_text.len(), KEY_TEXT_LEN);
        assert_eq!(
            SecretKey::from_text(&secret_text).unwrap().public_key(),
            public
        );
        let signature = secret.sign(Purpose::Manifest, b"body");
        assert_eq!(signature.to_string().len(), SIGNATURE_TEXT_LEN);
        assert_eq!(signature.to_string().parse(), Ok(signature));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = SecretKey::from_seed(&RFC_SEED);
        let text = format!("{secret:?}");
        assert!(text.contains("mmk1"), "{text}");
        assert!(!text.contains(&secret.to_text()[5..]), "{text}");
    }

    #[test]
    fn signatures_are_bound_to_key_body_and_purpose() {
        let secret = SecretKey::from_seed(&RFC_SEED);
        let public = secret.public_key();
        let signature = secret.sign(Purpose::Manifest, b"body");
        assert_eq!(
            public.verify(Purpose::Manifest, b"body", &signature),
            Ok(())
        );
        assert_eq!(
            public.verify(Purpose::Manifest, b"bodY", &signature),
            Err(BadSignature)
        );
        assert_eq!(
            public.verify(Purpose::KeyRotation, b"body", &signature),
            Err(BadSignature),
            "a manifest signature is not a rotation signature"
        );
        let other = SecretKey::from_seed(&[7; 32]).public_key();
        assert_eq!(
            other.verify(Purpose::Manifest, b"body", &signature),
            Err(BadSignature)
        );
        let mut flipped = signature;
        flipped.0[10] ^= 1;
        assert_eq!(
            public.verify(Purpose::Manifest, b"body", &flipped),
            Err(BadSignature)
        );
        // S not below the group order: refused by the strict check.
        let mut high = signature;
        high.0[63] |= 0xf0;
        assert_eq!(
            public.verify(Purpose::Manifest, b"body", &high),
            Err(BadSignature)
        );
    }

    #[test]
    fn bad_key_texts_say_what_is_wrong() {
        let good = SecretKey::from_seed(&RFC_SEED).public_key().to_string();
        let kind = |text: &str| text.parse::<PublicKey>().unwrap_err();
        assert!(matches!(kind("mmsk1abc"), KeyTextError::Prefix { .. }));
        assert!(matches!(
            kind(&good[..good.len() - 1]),
            KeyTextError::Length { found: 56, .. }
        ));
        assert!(matches!(
            kind(&good.to_uppercase()),
            KeyTextError::Prefix { .. }
        ));
        let upper = format!("mmpk1{}", good[5..].to_uppercase());
        let first_letter = good[5..].find(|c: char| c.is_ascii_lowercase()).unwrap() + 6;
        assert!(matches!(
            kind(&upper),
            KeyTextError::Character { position, .. } if position == first_letter
        ));
        let mut last = good.clone();
        last.pop();
        // 'a' is always valid as a last character; 'b' sets an unused bit.
        last.push('b');
        assert!(matches!(kind(&last), KeyTextError::LastCharacter { .. }));
        // The identity point (small order) is a valid encoding, and weak.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity).unwrap_err(),
            KeyTextError::WeakKey
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(
            PublicKey::from_bytes(&off_curve).unwrap_err(),
            KeyTextError::NotOnCurve
        );
        let multibyte = format!("mmpk1{}é", &good[5..good.len() - 1]);
        assert!(matches!(kind(&multibyte), KeyTextError::Character { .. }));
    }

    #[test]
    fn bad_signature_texts_say_what_is_wrong() {
        let kind = |text: &str| text.parse::<Ed25519Signature>().unwrap_err();
        assert!(matches!(kind("ed448:00"), KeyTextError::Prefix { .. }));
        assert!(matches!(
            kind("ed25519:00"),
            KeyTextError::Length { found: 10, .. }
        ));
        let upper = format!("ed25519:{}", "A".repeat(128));
        assert!(matches!(
            kind(&upper),
            KeyTextError::Character { position: 9, .. }
        ));
        let late = format!("ed25519:{}g", "0".repeat(127));
        assert!(matches!(
            kind(&late),
            KeyTextError::Character { position: 136, .. }
        ));
        let multibyte = format!("ed25519:{}é", "0".repeat(127));
        assert!(matches!(kind(&multibyte), KeyTextError::Character { .. }));
    }
}
