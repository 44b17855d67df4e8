//! The keyring, as the companion sees it: a port its front end fills.
//!
//! Every manifest is judged against the user's pinned publisher keys
//! before a share or a download is added (and again each time the item
//! starts), exactly as the CLI's commands judge theirs
//! (`docs/signing.md`, section 6). Where the pins live, and how their
//! file is protected, is the front end's business: the `minimodel`
//! binary gives the companion its keyring file; tests give it a keyring
//! in memory ([`MemoryTrust`]).

use std::sync::Mutex;

use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::keyring::Keyring;
use minimodel_verifier::signing::trust::{
    KeyTrust, SignatureCheck, TrustAnchors, TrustError, judge,
};

/// Why a manifest's signature could not be judged or its key pinned.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// The manifest is refused: a bad signature, a key other than the one
    /// pinned or named, an unsigned manifest where a signature is
    /// required. The caller's fault, or the manifest's.
    #[error(transparent)]
    Refused(#[from] TrustError),
    /// The keyring cannot be read or written (local).
    #[error("the keyring cannot be used: {0}")]
    Keyring(String),
}

impl TrustStoreError {
    /// What to do about it.
    pub fn advice(&self) -> String {
        match self {
            TrustStoreError::Refused(error) => error.advice(),
            TrustStoreError::Keyring(_) => "check the keyring file's owner and mode".to_owned(),
        }
    }
}

/// The pins and how to add one.
pub trait TrustStore: Send + Sync + 'static {
    /// Judges `manifest` against the pins, a key the user named for it,
    /// and whether a signature is required.
    fn judge(
        &self,
        manifest: &Manifest,
        named: Option<&PublicKey>,
        require_signature: bool,
    ) -> Result<SignatureCheck, TrustStoreError>;

    /// Pins the key `check` saw for the first time (the user consented)
    /// or that was named; returns the check as the receipt records it.
    fn pin(&self, check: SignatureCheck) -> Result<SignatureCheck, TrustStoreError>;

    /// Where the pins are, for the consent words.
    fn describe(&self) -> String;
}

/// Whether the user must consent to trusting `check`'s key (seen for the
/// first time).
pub fn is_first_use(check: &SignatureCheck) -> bool {
    check.trust() == Some(KeyTrust::NotPinned)
}

/// A keyring in memory (tests, and programs that keep none).
#[derive(Debug, Default)]
pub struct MemoryTrust {
    keyring: Mutex<Keyring>,
}

impl MemoryTrust {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pins now.
    pub fn keyring(&self) -> Keyring {
        self.keyring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl TrustStore for MemoryTrust {
    fn judge(
        &self,
        manifest: &Manifest,
        named: Option<&PublicKey>,
        require_signature: bool,
    ) -> Result<SignatureCheck, TrustStoreError> {
        let keyring = self.keyring.lock().unwrap_or_else(|e| e.into_inner());
        Ok(judge(
            manifest,
            &TrustAnchors {
                keyring: &keyring,
                named_key: named,
                require_signature,
            },
        )?)
    }

    fn pin(&self, check: SignatureCheck) -> Result<SignatureCheck, TrustStoreError> {
        let first_use = is_first_use(&check);
        let Some(pin) = check.pin_to_add(&now_rfc3339()) else {
            return Ok(check);
        };
        self.keyring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(pin)
            .map_err(|full| TrustStoreError::Keyring(full.to_string()))?;
        Ok(if first_use {
            check.pinned_at_first_use()
        } else {
            check
        })
    }

    fn describe(&self) -> String {
        "the companion's keyring in memory".to_owned()
    }
}
