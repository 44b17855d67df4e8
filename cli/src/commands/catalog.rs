//! `minimodel catalog-entry MANIFEST`: the metadata-only catalog entry,
//! after the manifest's signature is checked (`crate::trust`): it says
//! whether the manifest is signed, and by which key.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_verifier::catalog::CatalogEntry;

use super::load_manifest;
use crate::exit::{Exit, Failure};
use crate::output::Output;
use crate::trust::{FirstUse, TrustArgs};

/// Arguments of `minimodel catalog-entry`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The manifest to describe.
    pub manifest: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub fn run(args: CatalogArgs, out: Output) -> Result<(), Failure> {
    let loaded = load_manifest(&args.manifest)?;
    let judged = crate::trust::check(&loaded, &args.manifest, &args.trust)?;
    // The entry is the output: the check is reported on stderr.
    let check = judged.settle(
        FirstUse::Leave,
        Output {
            json: false,
            quiet: true,
        },
    )?;
    if out.for_people() {
        crate::output::say_err!("{check}");
    }
    // Checked again by the entry itself, which says "signed" only then.
    let entry = CatalogEntry::from_manifest(&loaded.manifest)
        .map_err(|error| Failure::new(Exit::VerificationFailed, error))?;
    let text = if out.json {
        serde_json::to_string(&entry)
    } else {
        serde_json::to_string_pretty(&entry)
    }
    .context("cannot encode the catalog entry")?;
    crate::output::say_out!("{text}");
    Ok(())
}
