//! `minimodel import-peer-request REQUEST.json MANIFEST OUTPUT_DIR [--yes]`:
//! the receiver's command. Model id, byte count and artifact SHA-256 must
//! agree across the request, every offer and the manifest before any byte
//! moves; any disagreement is invalid input (exit 3) and nothing is written.

use std::path::PathBuf;

use clap::Args;
use minimodel_swarm::offer::ImportRequest;

use super::fetch::{TransferArgs, transfer};
use super::load_manifest;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::Output;

/// Arguments of `minimodel import-peer-request`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The import request (JSON) with the peer offers.
    pub request: PathBuf,
    /// The manifest the artifact must match.
    pub manifest: PathBuf,
    /// Directory for the download.
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

pub fn run(args: ImportArgs, out: Output) -> Result<(), Failure> {
    let loaded = load_manifest(&args.manifest)?;
    // The manifest's signature before anything else, the request included.
    let judged = crate::trust::check(&loaded, &args.manifest, &args.transfer.trust)?;
    let request = ImportRequest::read(&args.request).or_exit(Exit::InvalidInput)?;
    let peers = minimodel_swarm::app::peers::from_request(&request, &loaded.manifest)
        .or_exit(Exit::InvalidInput)?;
    let relays = minimodel_swarm::app::peers::relays_of_offers(&request.offers);
    transfer(
        &loaded,
        judged,
        peers,
        relays,
        args.output_dir,
        &args.transfer,
        out,
    )
}
