//! `minimodel status DIR`: what is partial, what is complete, how much.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_swarm::resume::{DownloadStatus, StatusKind, status};

use crate::exit::Failure;
use crate::output::Output;
use crate::units::human_bytes;

/// Arguments of `minimodel status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The download directory (`fetch -o DIR`).
    pub dir: PathBuf,
}

pub fn run(args: StatusArgs, out: Output) -> Result<(), Failure> {
    let list = status(&args.dir)
        .with_context(|| format!("cannot read the downloads in {}", args.dir.display()))?;
    if list.is_empty() {
        out.say(format!("no downloads in {}", args.dir.display()));
    }
    for entry in &list {
        out.say(describe(entry));
        out.event(
            "download",
            serde_json::to_value(entry).context("cannot encode the status")?,
        );
    }
    Ok(())
}

/// One line for people.
fn describe(entry: &DownloadStatus) -> String {
    let kind = match entry.kind {
        StatusKind::Partial => "partial",
        StatusKind::Complete => "complete",
        StatusKind::Corrupt => "corrupt",
        StatusKind::Unsupported => "unsupported",
        StatusKind::Unverified => "unverified",
    };
    let mut line = format!("{}: {kind}", entry.model_id);
    if let (Some(done), Some(total)) = (entry.chunks_verified, entry.chunk_count) {
        line.push_str(&format!(", {done}/{total} chunks"));
    }
    if let (Some(done), Some(total)) = (entry.bytes_verified, entry.artifact_bytes) {
        line.push_str(&format!(
            ", {} of {}",
            human_bytes(done),
            human_bytes(total)
        ));
    }
    if let Some(percent) = entry.percent {
        line.push_str(&format!(" ({percent:.1}%)"));
    }
    if let Some(at) = &entry.last_checkpoint {
        let what = if entry.kind == StatusKind::Complete {
            "verified"
        } else {
            "last checkpoint"
        };
        line.push_str(&format!(", {what} {at}"));
    }
    if let Some(generation) = entry.generation {
        line.push_str(&format!(" (generation {generation})"));
    }
    if let Some(note) = &entry.note {
        line.push_str(&format!("; {note}"));
    }
    line
}
