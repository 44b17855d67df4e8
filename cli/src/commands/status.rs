//! `minimodel status DIR`: what is partial, what is complete, how much.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_swarm::app::status::{DownloadStatus, StatusKind, status, verify_status};

use crate::events::Event;
use crate::exit::{Exit, Failure};
use crate::output::Output;
use crate::units::human_bytes;

/// Arguments of `minimodel status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The download directory (`fetch -o DIR`).
    pub dir: PathBuf,
    /// Read every download's bytes and check them now (a finished file
    /// against its receipt, a partial one's verified chunks against their
    /// hashes). Changes nothing; exits 4 when something is damaged.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(args: StatusArgs, out: Output) -> Result<(), Failure> {
    let list = if args.verify {
        let bar = out.byte_progress(0, "checking");
        let result = verify_status(&args.dir, &|_model, progress| {
            bar.set_length(progress.bytes_total.max(1));
            bar.set_position(progress.bytes_done);
        });
        bar.finish_and_clear();
        result
    } else {
        status(&args.dir)
    }
    .with_context(|| format!("cannot read the downloads in {}", args.dir.display()))?;
    if list.is_empty() {
        out.say(format!("no downloads in {}", args.dir.display()));
    }
    for entry in &list {
        out.say(describe(entry));
        out.event(&Event::Download {
            status: entry.clone(),
        });
    }
    let damaged: Vec<&str> = list
        .iter()
        .filter(|entry| entry.check.as_ref().is_some_and(|check| !check.ok))
        .map(|entry| entry.model_id.as_str())
        .collect();
    if !damaged.is_empty() {
        return Err(Failure::new(
            Exit::VerificationFailed,
            anyhow::anyhow!("damaged on disk: {}", damaged.join(", ")),
        )
        .with_hint("run the fetch again with --recheck to repair what is damaged from peers"));
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
    if let Some(check) = &entry.check {
        line.push_str(&match (check.ok, check.bad_chunks) {
            (true, _) => format!(
                "; read just now: all {} checked chunks are good",
                check.chunks_checked
            ),
            (false, Some(bad)) => format!(
                "; read just now: DAMAGED, {bad} of {} chunks are bad",
                check.chunks_checked
            ),
            (false, None) => {
                "; read just now: DAMAGED (no chunk list to tell which chunks)".to_owned()
            }
        });
    }
    line
}
