//! Signing a manifest, and checking a signed manifest's signature against
//! the key it names (`docs/manifest-v1.md`, section 3).
//!
//! A signature covers [`Manifest::signing_text`] (the canonical text of the
//! v1 manifest without its `signature` line) in the manifest domain
//! ([`Purpose::Manifest`]). Whether the key that signed is the publisher's
//! is for [`super::trust::judge`] to say.

use super::Purpose;
use super::keys::{BadSignature, Ed25519Signature, PublicKey, SecretKey};
use crate::manifest::{Manifest, Signature};

/// `manifest` signed with `key`: a v1 manifest whose `key-id` and
/// `publisher-key` are `key`'s, whatever they were (a v0's `key-id` is a
/// name, replaced by the key's id). Every other field is kept.
pub fn sign_manifest(manifest: &Manifest, key: &SecretKey) -> Manifest {
    let publisher_key = key.public_key();
    let mut signed = manifest.clone();
    signed.key_id = publisher_key.key_id().to_id();
    // The signing text leaves out the signature line, so any value does
    // before the real one is in.
    signed.signature = Signature::Ed25519 {
        publisher_key,
        signature: Ed25519Signature([0; 64]),
    };
    let signature = key.sign(Purpose::Manifest, signed.signing_text().as_bytes());
    signed.signature = Signature::Ed25519 {
        publisher_key,
        signature,
    };
    signed
}

/// Checks a signed manifest's signature against its own `publisher-key`:
/// `Ok(None)` for an unsigned (v0) manifest, `Ok(Some(key))` when the
/// signature verifies. This says the manifest is as the holder of that key
/// signed it, not that the key is the publisher's.
pub fn check_manifest_signature(manifest: &Manifest) -> Result<Option<PublicKey>, BadSignature> {
    match &manifest.signature {
        Signature::UnsignedPlaceholderV0 => Ok(None),
        Signature::Ed25519 {
            publisher_key,
            signature,
        } => {
            publisher_key.verify(
                Purpose::Manifest,
                manifest.signing_text().as_bytes(),
                signature,
            )?;
            Ok(Some(*publisher_key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FORMAT_V1;

    const GOOD_V0: &str = include_str!("../../../fixtures/manifest/good-canonical.manifest");

    #[test]
    fn a_signed_manifest_is_v1_and_checks_with_its_key() {
        let unsigned = Manifest::parse(GOOD_V0).unwrap();
        let key = SecretKey::from_seed(&[9; 32]);
        let signed = sign_manifest(&unsigned, &key);
        assert_eq!(signed.format(), FORMAT_V1);
        assert_eq!(signed.key_id, key.public_key().key_id().to_id());
        assert_eq!(signed.validate(), Ok(()));
        let text = signed.to_text();
        assert!(
            text.starts_with("format: minimodel-manifest-v1\n"),
            "{text}"
        );
        let again = Manifest::parse(&text).unwrap();
        assert_eq!(again, signed);
        assert_eq!(check_manifest_signature(&again), Ok(Some(key.public_key())));
        assert_eq!(check_manifest_signature(&unsigned), Ok(None));
        // Signing again with the same key gives the same bytes (Ed25519 is
        // deterministic), with another key another manifest.
        assert_eq!(sign_manifest(&again, &key).to_text(), text);
        let other = sign_manifest(&again, &SecretKey::from_seed(&[8; 32]));
        assert_ne!(other.to_text(), text);
        assert!(check_manifest_signature(&other).is_ok());
    }

    #[test]
    fn any_change_after_signing_breaks_the_signature() {
        let key = SecretKey::from_seed(&[9; 32]);
        let signed = sign_manifest(&Manifest::parse(GOOD_V0).unwrap(), &key);
        let mut renamed = signed.clone();
        renamed.display_name.push('!');
        assert_eq!(check_manifest_signature(&renamed), Err(BadSignature));
        let mut bigger = signed.clone();
        bigger.chunks.merkle_root = crate::Sha256Digest::of(b"other");
        assert_eq!(check_manifest_signature(&bigger), Err(BadSignature));
        // The signing text of the v0 manifest with the same fields is not
        // what was signed: the format line and the key differ.
        let mut as_v0 = signed.clone();
        as_v0.signature = Signature::UnsignedPlaceholderV0;
        assert_ne!(as_v0.signing_text(), signed.signing_text());
        // Another key's signature with this key named: refused.
        let theirs = sign_manifest(&signed, &SecretKey::from_seed(&[1; 32]));
        let Signature::Ed25519 { signature, .. } = theirs.signature else {
            unreachable!("signed");
        };
        let mut forged = signed.clone();
        forged.signature = Signature::Ed25519 {
            publisher_key: key.public_key(),
            signature,
        };
        assert_eq!(check_manifest_signature(&forged), Err(BadSignature));
    }

    #[test]
    fn the_signing_text_is_the_canonical_text_without_the_signature_line() {
        let key = SecretKey::from_seed(&[9; 32]);
        let signed = sign_manifest(&Manifest::parse(GOOD_V0).unwrap(), &key);
        let text = signed.to_text();
        let without: String = text
            .lines()
            .filter(|line| !line.starts_with("signature: "))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(signed.signing_text(), without);
        assert!(without.contains(&format!("publisher-key: {}\n", key.public_key())));
    }
}
