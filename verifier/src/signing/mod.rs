//! Publisher signatures (`docs/signing.md`): who vouches for a manifest.
//!
//! What it is:
//! - [`keys`]: Ed25519 publisher keys, key ids and signatures, and their
//!   text forms;
//! - [`keyfile`]: the secret and public key files;
//! - [`manifest`]: signing a manifest (it becomes `minimodel-manifest-v1`)
//!   and checking its signature against the key it names;
//! - [`keyring`]: the pins, one publisher key per publisher id;
//! - [`rotation`]: a new key signed by the old one;
//! - [`trust`]: the one decision every command makes with a manifest
//!   before anything else: [`trust::judge`], whose
//!   [`trust::SignatureCheck`] only it can make.
//!
//! What it is not: it reads no files and asks nobody. Where the keyring
//! lives, how its file is protected and how the user is asked to trust a
//! key seen for the first time is the binary's business.
//!
//! Every signature is over a domain and the signed bytes
//! ([`Purpose::message`]): a signature made for one purpose never verifies
//! for another.

pub mod keyfile;
pub mod keyring;
pub mod keys;
pub(crate) mod lines;
pub mod manifest;
pub mod rotation;
pub mod trust;

pub use keys::{
    BadSignature, Ed25519Signature, KeyTextError, PublicKey, PublisherKeyId, SecretKey,
};
pub use lines::{TextFileError, TextFileErrorKind};

/// What a signature is for. Its domain goes in front of the signed bytes,
/// so a signature made for one purpose (or by another protocol with the
/// same key: TLS 1.3 signs 64 spaces first) never verifies for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A manifest: `docs/manifest-v1.md`.
    Manifest,
    /// A key rotation statement.
    KeyRotation,
    /// A key revocation statement (specified, not built yet).
    KeyRevocation,
}

impl Purpose {
    /// The domain: `minimodel-signature-v1:<purpose>` and LF. No domain is
    /// a prefix of another, and none can start a manifest or any other
    /// signed text (those start with `format: `).
    pub fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Manifest => b"minimodel-signature-v1:manifest\n",
            Purpose::KeyRotation => b"minimodel-signature-v1:key-rotation\n",
            Purpose::KeyRevocation => b"minimodel-signature-v1:key-revocation\n",
        }
    }

    /// The bytes Ed25519 signs: the domain, then `body`.
    pub fn message(self, body: &[u8]) -> Vec<u8> {
        let domain = self.domain();
        let mut message = Vec::with_capacity(domain.len() + body.len());
        message.extend_from_slice(domain);
        message.extend_from_slice(body);
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_domain_is_a_prefix_of_another() {
        let all = [
            Purpose::Manifest,
            Purpose::KeyRotation,
            Purpose::KeyRevocation,
        ];
        for a in all {
            assert!(a.domain().ends_with(b"\n"));
            assert_eq!(a.domain().iter().filter(|b| **b == b'\n').count(), 1);
            for b in all {
                if a != b {
                    assert!(!b.domain().starts_with(a.domain()), "{a:?} {b:?}");
                }
            }
        }
        assert_eq!(
            Purpose::Manifest.message(b"format: x\n"),
            b"minimodel-signature-v1:manifest\nformat: x\n"
        );
    }
}
