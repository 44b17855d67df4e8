//! `minimodel manifest FILE.slm --model-id ID ... [--sign KEY]`: hash a
//! `.slm` file and write its manifest: v0, or v1 signed with `--sign`.

use std::path::PathBuf;

use clap::Args;
use minimodel_verifier::describe::{DescribeError, Description, PublisherFields, describe_file};
use minimodel_verifier::manifest::{EvidenceStatus, PeerHintStatus};
use minimodel_verifier::route::Route;
use minimodel_verifier::{KeyId, ModelId, PublisherId};

use super::{check_replaceable, write_document};
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::keystore::read_secret_key;
use crate::output::{Output, counted};
use crate::trust::key_file_failure;
use crate::units::{exact_bytes, human_bytes, parse_size};
use minimodel_verifier::document::Document;
use minimodel_verifier::signing::manifest::sign_manifest;

/// Arguments of `minimodel manifest`.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The `.slm` file to describe.
    pub file: PathBuf,
    /// Model id: 1-128 of A-Z a-z 0-9 . _ - (also the downloaded file's name).
    #[arg(long)]
    pub model_id: ModelId,
    /// Publisher id (same charset as the model id).
    #[arg(long)]
    pub publisher_id: PublisherId,
    /// https route to the license (metadata only, never the model bytes).
    #[arg(long)]
    pub license_route: Route,
    /// https route to the evidence about the model.
    #[arg(long)]
    pub evidence_route: Route,
    /// Human-readable name [default: the model id].
    #[arg(long)]
    pub display_name: Option<String>,
    /// Id of the publisher key that will sign manifests (with --sign, the
    /// key's own id is written instead).
    #[arg(long, default_value = "unsigned", conflicts_with = "sign")]
    pub key_id: KeyId,
    /// Sign the manifest with this secret key file (minimodel key new):
    /// the manifest is written as v1, signed.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// https route to this manifest's metadata.
    #[arg(long)]
    pub manifest_route: Option<Route>,
    /// https route to the model card.
    #[arg(long)]
    pub model_card_route: Option<Route>,
    /// https route for takedown requests and contact.
    #[arg(long)]
    pub takedown_route: Option<Route>,
    /// One line saying where the weights come from.
    #[arg(long, default_value = "not stated")]
    pub source_identity: String,
    /// unreviewed, self-attested or independently-reviewed.
    #[arg(long, default_value = "unreviewed")]
    pub evidence_status: EvidenceStatus,
    /// none or advisory.
    #[arg(long, default_value = "none")]
    pub peer_hint_status: PeerHintStatus,
    /// Chunk size, a power of two from 16KiB to 16MiB [default: 1MiB; halved below 128MiB, down to 64KiB, aiming for 128 chunks; more for huge files].
    #[arg(long, value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    /// Publish the chunk list: its https route, whose host is a DNS name
    /// with a top-level domain (IP addresses are refused, as in every
    /// route); requires --chunk-list-out.
    #[arg(long, requires = "chunk_list_out")]
    pub chunk_list_route: Option<Route>,
    /// Write the chunk list (one hex SHA-256 per line; with
    /// slm-parts-merkle-v0, each followed by a space and the chunk's
    /// length) to this file: what `fetch --chunk-list` reads, and what
    /// --chunk-list-route names.
    #[arg(long)]
    pub chunk_list_out: Option<PathBuf>,
    /// How the file is cut into chunks: slm-parts-merkle-v0 (the header,
    /// the tokenizer, the tensor table and every tensor each cut from its
    /// own start, so that a new version that changes some parts shares the
    /// chunks of the others; the chunks' lengths are in the chunk list,
    /// which a fetch reads first from a peer, a mirror or the
    /// --chunk-list-route) or fixed-size-merkle-v0 (every chunk-size bytes;
    /// a fetch needs no list first, and an insertion shifts every chunk).
    #[arg(long, default_value = "slm-parts-merkle-v0", value_parser = parse_scheme)]
    pub chunk_scheme: minimodel_verifier::manifest::ChunkScheme,
    /// Write the manifest here instead of standard output.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

fn parse_scheme(value: &str) -> Result<minimodel_verifier::manifest::ChunkScheme, String> {
    value
        .parse()
        .map_err(|()| "fixed-size-merkle-v0 or slm-parts-merkle-v0".to_owned())
}

pub fn run(args: ManifestArgs, out: Output) -> Result<(), Failure> {
    super::check_slm_input(&args.file)?;
    // Before the file is hashed: a key that cannot be used fails at once.
    let key = args
        .sign
        .as_deref()
        .map(read_secret_key)
        .transpose()
        .map_err(key_file_failure)?;
    let chunk_size = match args.chunk_size {
        None => None,
        Some(size) => Some(
            u32::try_from(size)
                .map_err(|_| {
                    anyhow::anyhow!("--chunk-size {} is larger than 16 MiB", exact_bytes(size))
                })
                .or_exit(Exit::Usage)?,
        ),
    };
    let fields = PublisherFields {
        display_name: args
            .display_name
            .clone()
            .unwrap_or_else(|| args.model_id.to_string()),
        model_id: args.model_id,
        publisher_id: args.publisher_id,
        key_id: args.key_id,
        manifest_route: args.manifest_route,
        model_card_route: args.model_card_route,
        license_route: args.license_route,
        evidence_route: args.evidence_route,
        source_identity: args.source_identity,
        takedown_route: args.takedown_route,
        evidence_status: args.evidence_status,
        peer_hint_status: args.peer_hint_status,
        chunk_list_route: args.chunk_list_route,
        chunk_scheme: args.chunk_scheme,
    };
    // Before the file is hashed, and before either output is written: a
    // path that holds another kind of file leaves both unwritten.
    if let Some(path) = &args.chunk_list_out {
        check_replaceable(path, &Document::ChunkList)?;
    }
    if let Some(path) = &args.output {
        let format = match key {
            Some(_) => minimodel_verifier::manifest::FORMAT_V1,
            None => minimodel_verifier::manifest::FORMAT_V0,
        };
        check_replaceable(path, &Document::Format(format.into()))?;
    }
    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    let bar = out.byte_progress(size, "hashing");
    let described = describe_file(&args.file, fields, chunk_size, &|n| bar.set_position(n));
    bar.finish_and_clear();
    let Description {
        manifest,
        chunk_list,
        ..
    } = described.map_err(|error| {
        let exit = match &error {
            DescribeError::Io(_) => Exit::Transfer,
            DescribeError::Slm(e) if e.is_io() => Exit::Transfer,
            DescribeError::Manifest(_) => Exit::Usage,
            DescribeError::Slm(_) | DescribeError::Empty(_) => Exit::InvalidInput,
        };
        Failure::new(
            exit,
            anyhow::Error::new(error).context(format!("cannot describe {}", args.file.display())),
        )
    })?;
    let manifest = match &key {
        Some(key) => sign_manifest(&manifest, key),
        None => manifest,
    };
    let chunk_size = manifest.chunks.chunk_size;
    if let Some(path) = &args.chunk_list_out {
        write_document(path, chunk_list.as_bytes())?;
    }
    let text = manifest.to_text();
    match &args.output {
        Some(path) => {
            write_document(path, text.as_bytes())?;
            out.say(format!(
                "wrote {} for {} ({}, {} of {}, root {}){}",
                path.display(),
                manifest.model_id,
                human_bytes(manifest.artifact_bytes),
                counted(manifest.chunks.chunk_count, "chunk"),
                human_bytes(u64::from(chunk_size)),
                manifest.chunks.merkle_root,
                match manifest.signature.publisher_key() {
                    Some(key) => format!(", signed with key {}", key.key_id()),
                    None => ", unsigned".to_owned(),
                }
            ));
        }
        None if !out.json => crate::output::put_out!("{text}"),
        None => {}
    }
    out.event(&Event::Manifest {
        path: args.output.clone(),
        model_id: manifest.model_id.to_string(),
        artifact_bytes: manifest.artifact_bytes,
        artifact_sha256: manifest.artifact_sha256.to_hex(),
        chunk_size,
        chunk_count: manifest.chunks.chunk_count,
        merkle_root: manifest.chunks.merkle_root.to_hex(),
        signed: key.is_some(),
        key_id: manifest.key_id.to_string(),
        manifest: args.output.is_none().then_some(text),
    });
    Ok(())
}
