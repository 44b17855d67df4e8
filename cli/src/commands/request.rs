//! `minimodel request OFFER... [-o FILE]`: the import request
//! (`minimodel-import-request-v0`, docs/formats.md) that
//! `import-peer-request` reads, from the offers of one or more seeders.
//! The offers must agree on model id, size, artifact SHA-256 and Merkle
//! root; offers that disagree are refused (exit 3) and nothing is written.

use std::path::PathBuf;

use clap::Args;
use minimodel_swarm::offer::{ImportRequest, MAX_OFFERS, PeerOffer, REQUEST_FORMAT};

use super::write_document;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::{Output, counted};
use crate::units::human_bytes;

/// Arguments of `minimodel request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Peer offer files (`seed --offer FILE`) of one artifact.
    #[arg(required = true, value_name = "OFFER")]
    pub offers: Vec<PathBuf>,
    /// Write the request here instead of standard output.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: RequestArgs, out: Output) -> Result<(), Failure> {
    let mut offers: Vec<(String, PeerOffer)> = Vec::new();
    for path in &args.offers {
        let offer = PeerOffer::read(path).or_exit(Exit::InvalidInput)?;
        let name = path.display().to_string();
        if let Some((first_name, first)) = offers.first() {
            agree(first_name, first, &name, &offer)?;
        }
        // The same offer twice (a file named twice, say) is one offer.
        if !offers.iter().any(|(_, known)| known == &offer) {
            offers.push((name, offer));
        }
    }
    if offers.len() > MAX_OFFERS {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "{} offers given; a request carries at most {MAX_OFFERS}",
                offers.len()
            ),
        ));
    }
    let Some((_, first)) = offers.first() else {
        return Err(Failure::new(Exit::Usage, anyhow::anyhow!("no offer given")));
    };
    let request = ImportRequest {
        format: REQUEST_FORMAT.to_owned(),
        model_id: first.model_id.clone(),
        artifact_bytes: first.artifact_bytes,
        artifact_sha256: first.artifact_sha256,
        offers: offers.into_iter().map(|(_, offer)| offer).collect(),
    };
    let mut text = serde_json::to_string_pretty(&request)
        .map_err(anyhow::Error::new)
        .or_exit(Exit::Transfer)?;
    text.push('\n');
    // What is written is what import-peer-request reads.
    ImportRequest::parse(text.as_bytes(), "the request")
        .map_err(anyhow::Error::new)
        .or_exit(Exit::InvalidInput)?;
    let summary = format!(
        "import request for {} ({}) from {}",
        request.model_id,
        human_bytes(request.artifact_bytes),
        counted(request.offers.len() as u64, "offer")
    );
    match &args.output {
        Some(path) => {
            write_document(path, text.as_bytes())?;
            out.say(format!("wrote {}: {summary}", path.display()));
        }
        None if !out.json => crate::output::put_out!("{text}"),
        None => {}
    }
    out.event(&Event::Request {
        path: args.output.clone(),
        model_id: request.model_id.to_string(),
        artifact_bytes: request.artifact_bytes,
        artifact_sha256: request.artifact_sha256.to_hex(),
        offers: request.offers.len(),
        request: match args.output {
            Some(_) => None,
            None => serde_json::to_value(&request).ok(),
        },
    });
    Ok(())
}

/// Refuses two offers that are not for one artifact.
fn agree(
    first_name: &str,
    first: &PeerOffer,
    name: &str,
    offer: &PeerOffer,
) -> Result<(), Failure> {
    let fields = [
        (
            "model id",
            first.model_id.to_string(),
            offer.model_id.to_string(),
        ),
        (
            "artifact bytes",
            first.artifact_bytes.to_string(),
            offer.artifact_bytes.to_string(),
        ),
        (
            "artifact sha256",
            first.artifact_sha256.to_hex(),
            offer.artifact_sha256.to_hex(),
        ),
        (
            "merkle root",
            first.merkle_root.to_hex(),
            offer.merkle_root.to_hex(),
        ),
    ];
    for (field, left, right) in fields {
        if left != right {
            return Err(Failure::new(
                Exit::InvalidInput,
                anyhow::anyhow!(
                    "{field} disagrees: {first_name} says {left}, {name} says {right}; no request was written"
                ),
            )
            .with_hint("a request names one artifact: give only offers of that artifact"));
        }
    }
    Ok(())
}
