//! `minimodel sign MANIFEST --key KEY [-o FILE]`: sign a manifest with a
//! publisher's secret key. The signed manifest is `minimodel-manifest-v1`
//! (`docs/manifest-v1.md`): its `key-id` and `publisher-key` become the
//! key's, every other field stays as it was.

use std::path::PathBuf;

use clap::Args;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::signing::SecretKey;
use minimodel_verifier::signing::manifest::sign_manifest;

use super::{load_manifest, write_document};
use crate::events::Event;
use crate::exit::Failure;
use crate::keystore::read_secret_key;
use crate::output::Output;
use crate::trust::key_file_failure;

/// Arguments of `minimodel sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The manifest to sign (unsigned v0, or v1 to sign again).
    pub manifest: PathBuf,
    /// The publisher's secret key file (from `minimodel key new`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Write the signed manifest here [default: replace MANIFEST].
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: SignArgs, out: Output) -> Result<(), Failure> {
    let loaded = load_manifest(&args.manifest)?;
    let key = read_secret_key(&args.key).map_err(key_file_failure)?;
    let path = args.output.unwrap_or(args.manifest);
    let before = loaded.manifest.key_id.clone();
    let signed = write_signed(&loaded.manifest, &key, &path)?;
    let was = match loaded.manifest.signature.publisher_key() {
        Some(old) if *old == key.public_key() => " (signed again with the same key)".to_owned(),
        Some(old) => format!(" (it was signed by key {})", old.key_id()),
        None if before != signed.key_id => format!(" (key-id was {before})"),
        None => String::new(),
    };
    out.say(format!(
        "signed {} as publisher {} with key {}{was}",
        path.display(),
        signed.publisher_id,
        signed.key_id
    ));
    out.event(&signed_event(Some(path), &signed));
    Ok(())
}

/// Signs `manifest` with `key`, writes it to `path` atomically and reports
/// the `manifest-signed` event.
pub fn write_signed(
    manifest: &Manifest,
    key: &SecretKey,
    path: &std::path::Path,
) -> Result<Manifest, Failure> {
    let signed = sign_manifest(manifest, key);
    write_document(path, signed.to_text().as_bytes())?;
    Ok(signed)
}

/// The `manifest-signed` event.
pub fn signed_event(path: Option<PathBuf>, signed: &Manifest) -> Event {
    Event::ManifestSigned {
        path,
        model_id: signed.model_id.to_string(),
        publisher_id: signed.publisher_id.to_string(),
        key_id: signed.key_id.to_string(),
        publisher_key: signed
            .signature
            .publisher_key()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}
