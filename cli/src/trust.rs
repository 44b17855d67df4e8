//! The first thing every command does with a manifest: check its signature
//! against the keyring and `--publisher-key`
//! (`minimodel_verifier::signing::trust::judge`), before any byte moves or
//! any file in DIR is touched. A refusal is exit 4 and names the
//! publisher, the keys and what to do.
//!
//! A key seen for the first time is pinned only with consent: fetching
//! commands put "trust this key" into their consent question, and `--yes`
//! answers it as OpenSSH's `StrictHostKeyChecking=accept-new` does (the
//! key is pinned, and the output says so). Commands that ask nothing
//! (`verify`, `catalog-entry`) pin nothing seen for the first time; a key
//! named with `--publisher-key` is pinned by any command when the
//! publisher has no pin yet.

use std::path::PathBuf;

use clap::Args;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::trust::{KeyTrust, SignatureCheck, TrustAnchors, judge};

use minimodel_verifier::signing::PublicKey;

use crate::commands::LoadedManifest;
use crate::events::Event;
use crate::exit::{Exit, Failure};
use crate::keystore::{KeyFileError, KeyringFile, PublicKeyArg};
use crate::output::Output;

/// How commands that read a manifest decide whether to trust it.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// The publisher's key, as mmpk1... or a public key file: the manifest
    /// must be signed by it. Pinned for the publisher when nothing is
    /// pinned yet.
    #[arg(long, value_name = "KEY")]
    pub publisher_key: Option<PublicKeyArg>,
    /// Refuse an unsigned manifest (exit 4).
    #[arg(long)]
    pub require_signature: bool,
    /// The keyring of pinned publisher keys [default:
    /// $XDG_DATA_HOME/minimodel/keyring, else
    /// ~/.local/share/minimodel/keyring].
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
}

impl TrustArgs {
    /// The key `--publisher-key` names, read (exit 3 when it cannot be).
    pub fn named_key(&self) -> Result<Option<PublicKey>, Failure> {
        self.publisher_key
            .as_ref()
            .map(PublicKeyArg::read)
            .transpose()
    }
}

/// A failure to use a key file or the keyring: invalid input (exit 3)
/// when the file is wrong, else I/O (exit 1).
pub fn key_file_failure(error: KeyFileError) -> Failure {
    let exit = if error.is_invalid_input() {
        Exit::InvalidInput
    } else {
        Exit::Transfer
    };
    Failure::new(exit, error)
}

/// What to do with a key seen for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// The user consented to trusting it (at the prompt, or `--yes` when
    /// `yes`): pin it.
    Pin {
        /// Whether the consent was `--yes`.
        yes: bool,
    },
    /// Nobody was asked: leave it unpinned.
    Leave,
}

/// A manifest whose signature was checked, and the keyring it was checked
/// against.
pub struct Judged {
    check: SignatureCheck,
    keyring: KeyringFile,
}

/// Reads the keyring and judges `loaded`'s manifest; a refusal is exit 4.
pub fn check(
    loaded: &LoadedManifest,
    path: &std::path::Path,
    args: &TrustArgs,
) -> Result<Judged, Failure> {
    let named_key = args.named_key()?;
    let keyring = KeyringFile::load(args.keyring.as_deref()).map_err(key_file_failure)?;
    let anchors = TrustAnchors {
        keyring: &keyring.keyring,
        named_key: named_key.as_ref(),
        require_signature: args.require_signature,
    };
    let check = judge(&loaded.manifest, &anchors).map_err(|error| {
        let advice = error.advice();
        Failure::new(
            Exit::VerificationFailed,
            anyhow::Error::new(error).context(format!("manifest {} refused", path.display())),
        )
        .with_hint(advice)
    })?;
    Ok(Judged { check, keyring })
}

impl Judged {
    /// The consent to trust and pin the key, when it is seen for the
    /// first time.
    pub fn trust_disclosure(&self) -> Option<minimodel_swarm::app::consent::Disclosure> {
        minimodel_swarm::app::consent::trust(&self.check, &self.keyring.describe())
    }

    /// Pins what is to be pinned (a named key when the publisher has no
    /// pin; a key seen for the first time when `first_use` says so),
    /// reports the check, and returns it for the receipt.
    pub fn settle(mut self, first_use: FirstUse, out: Output) -> Result<SignatureCheck, Failure> {
        let mut check = self.check;
        let pin_first =
            matches!(first_use, FirstUse::Pin { .. }) && check.trust() == Some(KeyTrust::NotPinned);
        let pin_named = check.trust() == Some(KeyTrust::Named);
        let pin = (pin_first || pin_named)
            .then(|| check.pin_to_add(&now_rfc3339()))
            .flatten();
        if let Some(pin) = pin {
            self.keyring
                .keyring
                .set(pin.clone())
                .map_err(|full| Failure::new(Exit::Transfer, full))?;
            let path = self.keyring.save().map_err(key_file_failure)?.to_owned();
            if pin_first {
                check = check.pinned_at_first_use();
            }
            let how = match first_use {
                FirstUse::Pin { yes: true } if pin_first => {
                    " (first seen now; accepted by --yes, as ssh's accept-new does)"
                }
                _ if pin_first => " (first seen now; accepted at the prompt)",
                _ => " (the key this command was given)",
            };
            out.say(format!(
                "pinned key {} for publisher {} in {}{how}",
                pin.key.key_id(),
                pin.publisher_id,
                path.display()
            ));
            out.event(&Event::KeyPinned {
                publisher_id: pin.publisher_id.to_string(),
                key_id: pin.key.key_id().to_string(),
                publisher_key: pin.key.to_string(),
                pinned_by: pin.pinned_by.to_string(),
                keyring: path,
            });
        }
        out.say(check.to_string());
        out.event(&signature_event(&check));
        Ok(check)
    }
}

/// The `signature` event of a check.
pub fn signature_event(check: &SignatureCheck) -> Event {
    let key = check.publisher_key();
    Event::Signature {
        status: if check.is_signed() {
            "signed"
        } else {
            "unsigned"
        }
        .to_owned(),
        publisher_id: check.publisher_id().to_string(),
        key_id: key.map(|key| key.key_id().to_string()),
        publisher_key: key.map(|key| key.to_string()),
        trust: check.trust().map(|trust| {
            serde_json::to_value(trust)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default()
        }),
    }
}
