//! `minimodel verify MANIFEST FILE.slm [--receipt FILE]`: the manifest's
//! signature first (`crate::trust`), then the full local check, and a
//! receipt that records both.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_verifier::check::verify_local_file;
use minimodel_verifier::receipt::ReceiptSource;

use super::{check_replaceable, load_manifest, write_document};
use crate::events::Event;
use crate::exit::{Exit, Failure};
use crate::output::Output;
use crate::trust::{FirstUse, TrustArgs};
use minimodel_verifier::document::Document;

/// Arguments of `minimodel verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest the file must match.
    pub manifest: PathBuf,
    /// The `.slm` file to check.
    pub file: PathBuf,
    /// Where to write the receipt [default: <model-id>.receipt.json next to the file].
    #[arg(long)]
    pub receipt: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub fn run(args: VerifyArgs, out: Output) -> Result<(), Failure> {
    let loaded = load_manifest(&args.manifest)?;
    super::check_slm_input(&args.file)?;
    // Nobody is asked here: a key seen for the first time stays unpinned
    // (the receipt says so).
    let signature =
        crate::trust::check(&loaded, &args.manifest, &args.trust)?.settle(FirstUse::Leave, out)?;
    let manifest = &loaded.manifest;
    let receipt_path = args.receipt.clone().unwrap_or_else(|| {
        let dir = args.file.parent().map(PathBuf::from).unwrap_or_default();
        dir.join(format!("{}.receipt.json", manifest.model_id))
    });
    // Before the whole-file check: a receipt that could not be written
    // would waste it.
    check_replaceable(
        &receipt_path,
        &Document::Format(minimodel_verifier::receipt::RECEIPT_FORMAT.into()),
    )?;
    let bar = out.byte_progress(manifest.artifact_bytes, "verifying");
    let result = verify_local_file(manifest, &args.file, &|n| bar.set_position(n));
    bar.finish_and_clear();
    let artifact = result.map_err(|error| {
        if error.is_io() {
            return Failure::new(
                Exit::Transfer,
                anyhow::Error::new(error).context(format!("cannot check {}", args.file.display())),
            );
        }
        let exit = if error.is_invalid_input() {
            Exit::InvalidInput
        } else {
            Exit::VerificationFailed
        };
        Failure::new(
            exit,
            anyhow::Error::new(error).context(format!("{} does not verify", args.file.display())),
        )
        .with_hint("the file is not the artifact this manifest describes; no receipt was written")
    })?;
    let receipt = artifact.receipt(loaded.sha256, &signature, ReceiptSource::LocalFile);
    let mut text = serde_json::to_string_pretty(&receipt).context("cannot encode the receipt")?;
    text.push('\n');
    write_document(&receipt_path, text.as_bytes())?;
    out.say(format!(
        "verified {}: {} ({} checks passed), receipt {}",
        args.file.display(),
        manifest.model_id,
        receipt.checks.len(),
        receipt_path.display()
    ));
    out.event(&Event::Verified {
        path: args.file.clone(),
        model_id: manifest.model_id.to_string(),
        checks: receipt.checks.clone(),
        receipt: receipt_path,
    });
    Ok(())
}
