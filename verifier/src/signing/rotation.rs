//! Key rotation statements (`docs/signing.md`, section 5): the old key
//! signs that the new key takes its place.
//!
//! ```text
//! format: minimodel-key-rotation-v1
//! old-key: mmpk1...
//! new-key: mmpk1...
//! signature: ed25519:...
//! ```
//!
//! The signature is the old key's, in the rotation domain
//! ([`Purpose::KeyRotation`]), over the three lines before it as written
//! canonically: [`KeyRotation::signed_text`]. A receiver who pinned the old
//! key moves its pins to the new key ([`super::keyring::Keyring::apply_rotation`])
//! once [`KeyRotation::check`] says the old key signed it.

use super::Purpose;
use super::keys::{BadSignature, Ed25519Signature, PublicKey, SecretKey};
use super::lines::{TextFileError, TextFileErrorKind, bad_value, error, fixed_fields, read_lines};

/// The `format` of a rotation statement.
pub const ROTATION_FORMAT: &str = "minimodel-key-rotation-v1";
/// Largest rotation statement read.
pub const MAX_ROTATION_LEN: usize = 4096;

/// A rotation statement as read: its signature not checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRotation {
    /// The key handing over.
    pub old_key: PublicKey,
    /// The key taking over.
    pub new_key: PublicKey,
    /// The old key's signature.
    pub signature: Ed25519Signature,
}

/// A rotation whose signature verified: only [`KeyRotation::check`] makes
/// one, so a keyring moves its pins only on a checked statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedRotation {
    old_key: PublicKey,
    new_key: PublicKey,
}

impl CheckedRotation {
    /// The key handing over.
    pub fn old_key(&self) -> PublicKey {
        self.old_key
    }

    /// The key taking over.
    pub fn new_key(&self) -> PublicKey {
        self.new_key
    }
}

impl KeyRotation {
    /// The statement that `old` hands over to `new`, signed by `old`.
    pub fn sign(old: &SecretKey, new: &PublicKey) -> KeyRotation {
        let old_key = old.public_key();
        let signature = old.sign(
            Purpose::KeyRotation,
            Self::signed_text(&old_key, new).as_bytes(),
        );
        KeyRotation {
            old_key,
            new_key: *new,
            signature,
        }
    }

    /// What the old key signs: the format, old-key and new-key lines.
    pub fn signed_text(old: &PublicKey, new: &PublicKey) -> String {
        format!("format: {ROTATION_FORMAT}\nold-key: {old}\nnew-key: {new}\n")
    }

    /// The statement's file text.
    pub fn to_text(&self) -> String {
        format!(
            "{}signature: {}\n",
            Self::signed_text(&self.old_key, &self.new_key),
            self.signature
        )
    }

    /// Reads a statement (its form only; [`KeyRotation::check`] checks the
    /// signature).
    pub fn parse(bytes: &[u8]) -> Result<KeyRotation, TextFileError> {
        let lines = read_lines(bytes, MAX_ROTATION_LEN, ROTATION_FORMAT)?;
        let [(old_line, old), (new_line, new), (sig_line, signature)] =
            fixed_fields(&lines, ROTATION_FORMAT, ["old-key", "new-key", "signature"])?;
        let old_key: PublicKey = old.parse().map_err(|e| bad_value(old_line, "old-key", e))?;
        let new_key: PublicKey = new.parse().map_err(|e| bad_value(new_line, "new-key", e))?;
        let signature = signature
            .parse()
            .map_err(|e| bad_value(sig_line, "signature", e))?;
        if old_key == new_key {
            return Err(error(
                Some(new_line),
                TextFileErrorKind::Mismatch("new-key is old-key: nothing rotates".to_owned()),
            ));
        }
        Ok(KeyRotation {
            old_key,
            new_key,
            signature,
        })
    }

    /// Checks that the old key signed this statement.
    pub fn check(&self) -> Result<CheckedRotation, BadSignature> {
        self.old_key.verify(
            Purpose::KeyRotation,
            Self::signed_text(&self.old_key, &self.new_key).as_bytes(),
            &self.signature,
        )?;
        Ok(CheckedRotation {
            old_key: self.old_key,
            new_key: self.new_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::signing::manifest::sign_manifest;

    #[test]
    fn a_rotation_round_trips_and_checks() {
        let old = SecretKey::from_seed(&[1; 32]);
        let new = SecretKey::from_seed(&[2; 32]).public_key();
        let rotation = KeyRotation::sign(&old, &new);
        let read = KeyRotation::parse(rotation.to_text().as_bytes()).unwrap();
        assert_eq!(read, rotation);
        let checked = read.check().unwrap();
        assert_eq!(checked.old_key(), old.public_key());
        assert_eq!(checked.new_key(), new);
    }

    #[test]
    fn a_rotation_not_signed_by_the_old_key_is_refused() {
        let old = SecretKey::from_seed(&[1; 32]);
        let new = SecretKey::from_seed(&[2; 32]);
        // The new key cannot hand itself the old one's pins.
        let mut claimed = KeyRotation::sign(&new, &new.public_key());
        claimed.old_key = old.public_key();
        assert_eq!(claimed.check(), Err(BadSignature));
        // A rotation the other way round is another statement.
        let mut reversed = KeyRotation::sign(&old, &new.public_key());
        std::mem::swap(&mut reversed.old_key, &mut reversed.new_key);
        assert_eq!(reversed.check(), Err(BadSignature));
        // A manifest signature is not a rotation signature, even over the
        // same bytes.
        let body = KeyRotation::signed_text(&old.public_key(), &new.public_key());
        let manifest_domain = old.sign(Purpose::Manifest, body.as_bytes());
        let replayed = KeyRotation {
            old_key: old.public_key(),
            new_key: new.public_key(),
            signature: manifest_domain,
        };
        assert_eq!(replayed.check(), Err(BadSignature));
        // Nor does any signature from a signed manifest verify as one.
        let manifest = Manifest::parse(include_str!(
            "../../../fixtures/manifest/good-canonical.manifest"
        ))
        .unwrap();
        let signed = sign_manifest(&manifest, &old);
        let crate::manifest::Signature::Ed25519 { signature, .. } = signed.signature else {
            unreachable!("signed");
        };
        let lifted = KeyRotation {
            signature,
            ..replayed
        };
        assert_eq!(lifted.check(), Err(BadSignature));
    }

    #[test]
    fn malformed_rotations_are_refused() {
        let old = SecretKey::from_seed(&[1; 32]);
        let same = KeyRotation::sign(&old, &old.public_key()).to_text();
        assert!(matches!(
            KeyRotation::parse(same.as_bytes()).unwrap_err().kind,
            TextFileErrorKind::Mismatch(_)
        ));
        let good = KeyRotation::sign(&old, &SecretKey::from_seed(&[2; 32]).public_key()).to_text();
        let no_sig: String = good
            .lines()
            .filter(|l| !l.starts_with("signature"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(
            KeyRotation::parse(no_sig.as_bytes()).unwrap_err().kind,
            TextFileErrorKind::MissingKey { key: "signature" }
        ));
        let bad_sig = good.replace("signature: ed25519:", "signature: ed25519:zz");
        assert!(matches!(
            KeyRotation::parse(bad_sig.as_bytes()).unwrap_err().kind,
            TextFileErrorKind::BadValue {
                key: "signature",
                ..
            }
        ));
    }
}
