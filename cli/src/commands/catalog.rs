//! `minimodel catalog-entry MANIFEST`: the metadata-only catalog entry.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_verifier::catalog::CatalogEntry;

use super::load_manifest;
use crate::exit::Failure;
use crate::output::Output;

/// Arguments of `minimodel catalog-entry`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The manifest to describe.
    pub manifest: PathBuf,
}

pub fn run(args: CatalogArgs, out: Output) -> Result<(), Failure> {
    let loaded = load_manifest(&args.manifest)?;
    let entry = CatalogEntry::from_manifest(&loaded.manifest);
    let text = if out.json {
        serde_json::to_string(&entry)
    } else {
        serde_json::to_string_pretty(&entry)
    }
    .context("cannot encode the catalog entry")?;
    println!("{text}");
    Ok(())
}
