//! `minimodel fixture OUT.slm --size 64MiB [--seed N] [--force]`: a valid
//! synthetic `.slm`, deterministic from the seed, written in a streaming
//! pass. An existing OUT is left alone (exit 3) unless `--force`. Ctrl-C
//! or SIGTERM ends it with nothing written, its temporary file removed
//! (exit 130).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use minimodel_swarm::resume::NewFile;
use minimodel_verifier::slm::{FixtureSpec, MIN_FIXTURE_SIZE, write_fixture};

use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::Output;
use crate::units::{exact_bytes, human_bytes, parse_size};

/// Arguments of `minimodel fixture`.
#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// Where to write the `.slm` file.
    pub out: PathBuf,
    /// Size of the file, like 64MiB or 1GiB.
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// Seed of the synthetic content; the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replace OUT if it already exists.
    #[arg(long)]
    pub force: bool,
}

/// Counts bytes on their way to the file, for the progress bar.
struct Counting<W> {
    inner: W,
    written: u64,
    bar: indicatif::ProgressBar,
    /// Ends the writing at the next write once it fires.
    stop: crate::stop::Stop,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stop.fired() {
            // Not `Interrupted`: `write_all` would try again.
            return Err(std::io::Error::other("stopped by a signal"));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        if self.written % (8 << 20) < n as u64 {
            self.bar.set_position(self.written);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Refuses, before a byte is written, a fixture larger than the space
/// free to this user on OUT's file system (exit 1, as a disk that fills
/// up while writing would end it, minutes later). When the space cannot
/// be read the write goes ahead and meets the disk as it is.
fn check_free_space(out: &std::path::Path, size: u64) -> Result<(), Failure> {
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let Some(free) = minimodel_swarm::platform::free_space(dir) else {
        return Ok(());
    };
    if free >= size {
        return Ok(());
    }
    Err(Failure::new(
        Exit::Transfer,
        anyhow::anyhow!(
            "{} needs {}; {} has {} free",
            out.display(),
            human_bytes(size),
            dir.display(),
            human_bytes(free)
        ),
    )
    .with_hint("free space, or write a smaller fixture (--size) or one elsewhere"))
}

pub fn run(args: FixtureArgs, out: Output) -> Result<(), Failure> {
    if args.size < MIN_FIXTURE_SIZE {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--size {} is too small: a fixture needs at least {}",
                exact_bytes(args.size),
                exact_bytes(MIN_FIXTURE_SIZE)
            ),
        ));
    }
    // symlink_metadata: a link at OUT is something in the way too, even
    // one that points nowhere.
    if !args.force && fs::symlink_metadata(&args.out).is_ok() {
        return Err(Failure::new(
            Exit::InvalidInput,
            anyhow::anyhow!(
                "{} already exists; fixture does not overwrite it",
                args.out.display()
            ),
        )
        .with_hint("pass --force to replace it, or name another OUT file"));
    }
    // With --force, what is there stays until the new file is whole.
    let replacing = fs::symlink_metadata(&args.out).is_ok();
    check_free_space(&args.out, args.size)?;
    let spec = FixtureSpec::new(args.size, args.seed);
    // Ctrl-C or SIGTERM ends the writing and removes the temporary file
    // (exit 130) instead of leaving it behind.
    let stop = crate::stop::Stop::on_signal_thread();
    let bar = out.byte_progress(args.size, "fixture");
    let result = (|| -> Result<_, Failure> {
        let file = NewFile::create(&args.out).map_err(|error| {
            let exit = if error.is_invalid_input() {
                Exit::InvalidInput
            } else {
                Exit::Transfer
            };
            Failure::new(exit, error)
        })?;
        let mut writer = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            written: 0,
            bar: bar.clone(),
            stop: stop.clone(),
        };
        let written = write_fixture(&mut writer, &spec);
        if stop.fired() {
            // The temporary file goes with `writer`.
            return Err(Failure::new(
                Exit::Interrupted,
                anyhow::anyhow!(
                    "stopped before {} was written; {}",
                    args.out.display(),
                    if replacing {
                        "the file that was there is kept as it was"
                    } else {
                        "nothing is left of it"
                    }
                ),
            ));
        }
        let info = written
            .with_context(|| format!("cannot write {}", args.out.display()))
            .or_exit(Exit::Transfer)?;
        let file = writer
            .inner
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", args.out.display()))
            .or_exit(Exit::Transfer)?;
        file.commit().or_exit(Exit::Transfer)?;
        Ok(info)
    })();
    bar.finish_and_clear();
    let info = result?;
    out.say(format!(
        "wrote {} ({}, seed {}, {}, {})",
        args.out.display(),
        human_bytes(info.file_len),
        args.seed,
        info.quantization,
        info.shape
    ));
    out.event(&Event::Fixture {
        path: args.out.clone(),
        bytes: info.file_len,
        seed: args.seed,
        quantization: info.quantization.to_string(),
        model_shape: info.shape.to_string(),
        tokenizer_sha256: info.tokenizer_sha256.to_hex(),
        tensor_layout_sha256: info.tensor_layout_sha256.to_hex(),
    });
    Ok(())
}
