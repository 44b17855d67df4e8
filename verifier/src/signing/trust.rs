//! The decision every command makes with a manifest before anything else
//! (`docs/signing.md`, section 6): does its signature verify, and is its
//! key the one the user trusts for its publisher?
//!
//! [`judge`] is the only way to make a [`SignatureCheck`], and a receipt
//! records a signature only from one ([`SignatureCheck::record`]): a
//! receipt never says "signed" for a check that was not made.
//!
//! The rules, in order:
//! 1. A signed manifest whose signature does not verify with its own
//!    `publisher-key` is refused.
//! 2. An unsigned manifest is refused when a key was named for it
//!    (`--publisher-key`), when its publisher id is pinned (the publisher
//!    signs: an unsigned manifest in its name had its signature stripped,
//!    or is not its), or when signatures are required. Otherwise it is
//!    accepted as unsigned.
//! 3. A signed manifest is refused when a key was named and it is another,
//!    or when its publisher id is pinned to another key. Otherwise its key
//!    is pinned, named, or seen for the first time.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::keyring::{Keyring, Pin, PinnedBy};
use super::keys::{PublicKey, PublisherKeyId};
use super::manifest::check_manifest_signature;
use crate::digest::Sha256Digest;
use crate::ids::PublisherId;
use crate::manifest::Manifest;
use crate::receipt::SignatureRecord;

/// What the user trusts: the pins, a key named for this manifest, and
/// whether unsigned manifests are refused.
#[derive(Debug, Clone, Copy)]
pub struct TrustAnchors<'a> {
    /// The keyring's pins.
    pub keyring: &'a Keyring,
    /// The key the user named for the manifest's publisher
    /// (`--publisher-key`), if any.
    pub named_key: Option<&'a PublicKey>,
    /// Refuse unsigned manifests (`--require-signature`).
    pub require_signature: bool,
}

/// Why the key that signed a manifest is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyTrust {
    /// `pinned`: the keyring pinned this key for the publisher before.
    Pinned,
    /// `publisher-key`: the user named it (`--publisher-key`), and nothing
    /// pinned another.
    #[serde(rename = "publisher-key")]
    Named,
    /// `first-use`: seen for the first time, and pinned now with the
    /// user's consent.
    FirstUse,
    /// `not-pinned`: seen for the first time and not pinned (a check that
    /// asks nobody, like `verify`). The signature holds; nothing says the
    /// key is the publisher's.
    NotPinned,
}

impl KeyTrust {
    /// How it reads in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            KeyTrust::Pinned => "pinned",
            KeyTrust::Named => "named with --publisher-key",
            KeyTrust::FirstUse => "seen for the first time, pinned now",
            KeyTrust::NotPinned => "seen for the first time, not pinned",
        }
    }
}

/// A manifest's signature, checked by [`judge`] against what the user
/// trusts. Only `judge` makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// The SHA-256 of the manifest's canonical text: the check is for
    /// that manifest only.
    manifest: Sha256Digest,
    publisher_id: PublisherId,
    signed: Option<(PublicKey, KeyTrust)>,
}

impl SignatureCheck {
    /// The manifest's publisher id.
    pub fn publisher_id(&self) -> &PublisherId {
        &self.publisher_id
    }

    /// The key that signed, when signed.
    pub fn publisher_key(&self) -> Option<PublicKey> {
        self.signed.map(|(key, _)| key)
    }

    /// Why the key is trusted, when signed.
    pub fn trust(&self) -> Option<KeyTrust> {
        self.signed.map(|(_, trust)| trust)
    }

    /// Whether the manifest is signed (and its signature verified).
    pub fn is_signed(&self) -> bool {
        self.signed.is_some()
    }

    /// The pin a command adds for this key: for a key seen for the first
    /// time (`first-use`, only with the user's consent) or named
    /// (`publisher-key`); `None` when the key is pinned already or the
    /// manifest is unsigned.
    pub fn pin_to_add(&self, pinned_at: &str) -> Option<Pin> {
        let (key, trust) = self.signed?;
        let pinned_by = match trust {
            KeyTrust::NotPinned | KeyTrust::FirstUse => PinnedBy::FirstUse,
            KeyTrust::Named => PinnedBy::PublisherKey,
            KeyTrust::Pinned => return None,
        };
        Some(Pin {
            publisher_id: self.publisher_id.clone(),
            key,
            pinned_by,
            pinned_at: pinned_at.to_owned(),
        })
    }

    /// The check once the user consented to pin a key seen for the first
    /// time (and it was pinned): `first-use` instead of `not-pinned`.
    pub fn pinned_at_first_use(mut self) -> SignatureCheck {
        if let Some((key, KeyTrust::NotPinned)) = self.signed {
            self.signed = Some((key, KeyTrust::FirstUse));
        }
        self
    }

    /// What a receipt records of this check, if it was made for
    /// `manifest` (`None` for another manifest: nothing is recorded rather
    /// than a check that was not made).
    pub fn record(&self, manifest: &Manifest) -> Option<SignatureRecord> {
        if Sha256Digest::of(manifest.to_text().as_bytes()) != self.manifest {
            return None;
        }
        Some(match self.signed {
            None => SignatureRecord::Unsigned,
            Some((key, trust)) => SignatureRecord::Signed {
                publisher_id: self.publisher_id.clone(),
                key_id: key.key_id().to_id(),
                publisher_key: key,
                trust,
            },
        })
    }
}

impl fmt::Display for SignatureCheck {
    /// One line for people: `signed by publisher acme with key mmk1...
    /// (pinned)`, or what an unsigned manifest means.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signed {
            Some((key, trust)) => write!(
                f,
                "manifest signed by publisher {} with key {} ({})",
                self.publisher_id,
                key.key_id(),
                trust.describe()
            ),
            None => write!(
                f,
                "manifest unsigned: nothing vouches that publisher {} wrote it",
                self.publisher_id
            ),
        }
    }
}

/// Why a manifest is refused before anything else is done with it. Each
/// names the publisher and the keys; [`TrustError::advice`] says what to
/// do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The signature does not verify with the manifest's own key.
    #[error(
        "the signature of this manifest (publisher {publisher_id}, key {key_id}) does not verify: the manifest was changed after it was signed, or the signature is forged"
    )]
    BadSignature {
        /// The publisher it claims.
        publisher_id: PublisherId,
        /// The key it names.
        key_id: PublisherKeyId,
    },
    /// The publisher id is pinned to another key.
    #[error(
        "publisher {publisher_id} is pinned to key {pinned} ({} on {pinned_at}), but this manifest is signed by key {signed_by}",
        pinned_by.describe()
    )]
    PinnedToAnother {
        /// The publisher.
        publisher_id: PublisherId,
        /// The key pinned for it.
        pinned: PublisherKeyId,
        /// How it was pinned.
        pinned_by: PinnedBy,
        /// When.
        pinned_at: String,
        /// The key that signed the manifest.
        signed_by: PublisherKeyId,
    },
    /// Signed by another key than the one named.
    #[error(
        "--publisher-key names key {named} for publisher {publisher_id}, but this manifest is signed by key {signed_by}"
    )]
    NotTheNamedKey {
        /// The publisher.
        publisher_id: PublisherId,
        /// The key named.
        named: PublisherKeyId,
        /// The key that signed.
        signed_by: PublisherKeyId,
    },
    /// Unsigned, but its publisher id is pinned.
    #[error(
        "publisher {publisher_id} signs its manifests (key {pinned} is pinned, {} on {pinned_at}), but this manifest is unsigned: it is not from {publisher_id}, or its signature was removed",
        pinned_by.describe()
    )]
    UnsignedButPinned {
        /// The publisher.
        publisher_id: PublisherId,
        /// The key pinned for it.
        pinned: PublisherKeyId,
        /// How it was pinned.
        pinned_by: PinnedBy,
        /// When.
        pinned_at: String,
    },
    /// Unsigned, but a key was named.
    #[error(
        "--publisher-key names key {named} for publisher {publisher_id}, but this manifest is unsigned"
    )]
    UnsignedButNamed {
        /// The publisher.
        publisher_id: PublisherId,
        /// The key named.
        named: PublisherKeyId,
    },
    /// Unsigned, and signatures are required.
    #[error(
        "this manifest (publisher {publisher_id}) is unsigned, and --require-signature refuses unsigned manifests"
    )]
    UnsignedRefused {
        /// The publisher.
        publisher_id: PublisherId,
    },
}

impl TrustError {
    /// What the user can do about it.
    pub fn advice(&self) -> String {
        match self {
            TrustError::BadSignature { .. } => {
                "do not use this manifest; get it again from its publisher".to_owned()
            }
            TrustError::PinnedToAnother {
                publisher_id,
                signed_by,
                ..
            } => format!(
                "this manifest may not be from {publisher_id}. If {publisher_id} changed its key, get its rotation statement and run `minimodel key accept-rotation FILE`; if you know that {signed_by} is {publisher_id}'s key, run `minimodel key pin {publisher_id} KEY`; otherwise do not use it"
            ),
            TrustError::NotTheNamedKey { publisher_id, .. } => format!(
                "check that --publisher-key is {publisher_id}'s key and where this manifest came from; nothing was used"
            ),
            TrustError::UnsignedButPinned { publisher_id, .. } => format!(
                "get the signed manifest from {publisher_id}; to accept unsigned manifests in {publisher_id}'s name again, run `minimodel key forget {publisher_id}`"
            ),
            TrustError::UnsignedButNamed { .. } => {
                "get the signed manifest, or leave out --publisher-key".to_owned()
            }
            TrustError::UnsignedRefused { .. } => {
                "ask the publisher for a signed manifest (minimodel sign), or leave out --require-signature to accept it unsigned".to_owned()
            }
        }
    }
}

/// Checks `manifest`'s signature and its key against `anchors` (the rules
/// of the module docs).
pub fn judge(
    manifest: &Manifest,
    anchors: &TrustAnchors<'_>,
) -> Result<SignatureCheck, TrustError> {
    let publisher_id = manifest.publisher_id.clone();
    let signed_by = check_manifest_signature(manifest).map_err(|_| TrustError::BadSignature {
        publisher_id: publisher_id.clone(),
        key_id: manifest
            .signature
            .publisher_key()
            .map(PublicKey::key_id)
            .unwrap_or(PublisherKeyId([0; 10])),
    })?;
    let pin = anchors.keyring.pin_of(&publisher_id);
    let signed = match signed_by {
        None => {
            if let Some(named) = anchors.named_key {
                return Err(TrustError::UnsignedButNamed {
                    publisher_id,
                    named: named.key_id(),
                });
            }
            if let Some(pin) = pin {
                return Err(TrustError::UnsignedButPinned {
                    publisher_id,
                    pinned: pin.key.key_id(),
                    pinned_by: pin.pinned_by,
                    pinned_at: pin.pinned_at.clone(),
                });
            }
            if anchors.require_signature {
                return Err(TrustError::UnsignedRefused { publisher_id });
            }
            None
        }
        Some(key) => {
            if let Some(named) = anchors.named_key.filter(|named| **named != key) {
                return Err(TrustError::NotTheNamedKey {
                    publisher_id,
                    named: named.key_id(),
                    signed_by: key.key_id(),
                });
            }
            let trust = match pin {
                Some(pin) if pin.key != key => {
                    return Err(TrustError::PinnedToAnother {
                        publisher_id,
                        pinned: pin.key.key_id(),
                        pinned_by: pin.pinned_by,
                        pinned_at: pin.pinned_at.clone(),
                        signed_by: key.key_id(),
                    });
                }
                Some(_) => KeyTrust::Pinned,
                None if anchors.named_key.is_some() => KeyTrust::Named,
                None => KeyTrust::NotPinned,
            };
            Some((key, trust))
        }
    };
    Ok(SignatureCheck {
        manifest: Sha256Digest::of(manifest.to_text().as_bytes()),
        publisher_id,
        signed,
    })
}

/// [`judge`] for a caller that brings no pins, names no key and accepts
/// unsigned manifests (a library caller, a test): an unsigned manifest
/// passes as unsigned, a signed one only if its signature verifies, its key
/// then not pinned.
pub fn judge_without_pins(manifest: &Manifest) -> Result<SignatureCheck, TrustError> {
    judge(
        manifest,
        &TrustAnchors {
            keyring: &Keyring::new(),
            named_key: None,
            require_signature: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SecretKey;
    use crate::signing::manifest::sign_manifest;

    fn unsigned() -> Manifest {
        Manifest::parse(include_str!(
            "../../../fixtures/manifest/good-canonical.manifest"
        ))
        .unwrap()
    }

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    fn pinned(seed: u8) -> Keyring {
        let mut keyring = Keyring::new();
        keyring
            .set(Pin {
                publisher_id: "example-lab".parse().unwrap(),
                key: key(seed).public_key(),
                pinned_by: PinnedBy::FirstUse,
                pinned_at: "2026-11-23T10:15:00Z".to_owned(),
            })
            .unwrap();
        keyring
    }

    fn anchors<'a>(
        keyring: &'a Keyring,
        named: Option<&'a PublicKey>,
        require: bool,
    ) -> TrustAnchors<'a> {
        TrustAnchors {
            keyring,
            named_key: named,
            require_signature: require,
        }
    }

    #[test]
    fn an_unsigned_manifest_passes_only_when_nothing_expects_a_signature() {
        let manifest = unsigned();
        let empty = Keyring::new();
        let check = judge(&manifest, &anchors(&empty, None, false)).unwrap();
        assert!(!check.is_signed());
        assert_eq!(check.record(&manifest), Some(SignatureRecord::Unsigned));
        assert!(check.to_string().contains("unsigned"), "{check}");
        assert_eq!(check.pin_to_add("2026-01-01T00:00:00Z"), None);
        assert!(matches!(
            judge(&manifest, &anchors(&empty, None, true)),
            Err(TrustError::UnsignedRefused { .. })
        ));
        let named = key(1).public_key();
        assert!(matches!(
            judge(&manifest, &anchors(&empty, Some(&named), false)),
            Err(TrustError::UnsignedButNamed { .. })
        ));
        let error = judge(&manifest, &anchors(&pinned(1), None, false)).unwrap_err();
        assert!(matches!(error, TrustError::UnsignedButPinned { .. }));
        assert!(error.to_string().contains("example-lab"), "{error}");
        assert!(error.advice().contains("key forget example-lab"));
    }

    #[test]
    fn a_signed_manifest_is_pinned_named_or_seen_first() {
        let manifest = sign_manifest(&unsigned(), &key(1));
        let public = key(1).public_key();
        let trust = |keyring: &Keyring, named: Option<&PublicKey>| {
            judge(&manifest, &anchors(keyring, named, true))
                .unwrap()
                .trust()
                .unwrap()
        };
        assert_eq!(trust(&pinned(1), None), KeyTrust::Pinned);
        assert_eq!(trust(&pinned(1), Some(&public)), KeyTrust::Pinned);
        assert_eq!(trust(&Keyring::new(), Some(&public)), KeyTrust::Named);
        assert_eq!(trust(&Keyring::new(), None), KeyTrust::NotPinned);

        let empty = Keyring::new();
        let first = judge(&manifest, &anchors(&empty, None, false)).unwrap();
        let pin = first.pin_to_add("2026-11-23T10:15:00Z").unwrap();
        assert_eq!(pin.pinned_by, PinnedBy::FirstUse);
        assert_eq!(pin.key, public);
        let first = first.pinned_at_first_use();
        assert_eq!(first.trust(), Some(KeyTrust::FirstUse));
        let Some(SignatureRecord::Signed {
            key_id,
            trust,
            publisher_key,
            ..
        }) = first.record(&manifest)
        else {
            panic!("a signed record");
        };
        assert_eq!(key_id, public.key_id().to_id());
        assert_eq!(publisher_key, public);
        assert_eq!(trust, KeyTrust::FirstUse);
        // A check of one manifest records nothing for another.
        assert_eq!(first.record(&unsigned()), None);
        let named = judge(&manifest, &anchors(&empty, Some(&public), false)).unwrap();
        assert_eq!(
            named.pin_to_add("2026-11-23T10:15:00Z").unwrap().pinned_by,
            PinnedBy::PublisherKey
        );
    }

    #[test]
    fn another_key_than_the_pinned_or_named_one_is_refused_naming_both() {
        let manifest = sign_manifest(&unsigned(), &key(2));
        let error = judge(&manifest, &anchors(&pinned(1), None, false)).unwrap_err();
        let TrustError::PinnedToAnother {
            pinned: pinned_id,
            signed_by,
            ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*pinned_id, key(1).public_key().key_id());
        assert_eq!(*signed_by, key(2).public_key().key_id());
        let text = error.to_string();
        assert!(
            text.contains(&pinned_id.to_string()) && text.contains(&signed_by.to_string()),
            "{text}"
        );
        assert!(
            text.contains("example-lab") && text.contains("pinned at first use"),
            "{text}"
        );
        assert!(error.advice().contains("accept-rotation"));
        let named = key(3).public_key();
        assert!(matches!(
            judge(&manifest, &anchors(&Keyring::new(), Some(&named), false)),
            Err(TrustError::NotTheNamedKey { .. })
        ));
        // Named right, pinned wrong: the pin wins.
        let right = key(2).public_key();
        assert!(matches!(
            judge(&manifest, &anchors(&pinned(1), Some(&right), false)),
            Err(TrustError::PinnedToAnother { .. })
        ));
    }

    #[test]
    fn a_manifest_changed_after_signing_is_refused_whatever_is_trusted() {
        let mut manifest = sign_manifest(&unsigned(), &key(1));
        manifest.display_name = "Tiny Llama (Q9)".to_owned();
        let public = key(1).public_key();
        for keyring in [Keyring::new(), pinned(1)] {
            for named in [None, Some(&public)] {
                assert_eq!(
                    judge(&manifest, &anchors(&keyring, named, false)),
                    Err(TrustError::BadSignature {
                        publisher_id: "example-lab".parse().unwrap(),
                        key_id: public.key_id(),
                    })
                );
            }
        }
    }
}
