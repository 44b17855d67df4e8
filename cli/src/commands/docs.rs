//! `minimodel completions SHELL` and `minimodel man [--dir DIR]`: shell
//! completions and manual pages, generated from the command line itself
//! (`clap_complete`, `clap_mangen`), so they always match the binary that
//! prints them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;

use crate::exit::{Exit, Failure, OrExit};

/// Arguments of `minimodel completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, elvish, fish, powershell or zsh.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Arguments of `minimodel man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write minimodel.1 and one page per command (minimodel-fetch.1, ...)
    /// into this directory instead of printing minimodel.1.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<(), Failure> {
    // Into memory first: the generator panics when a write fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "minimodel", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error)
                .context("cannot write the completions")
                .into())
        }
        _ => Ok(()),
    }
}

/// Prints the manual page, or writes every page into `args.dir`.
pub fn man(args: ManArgs, command: clap::Command) -> Result<(), Failure> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))
                .or_exit(Exit::Transfer)
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            match clap_mangen::Man::new(command).render(&mut stdout) {
                // `minimodel man | head` is no failure.
                Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(error)
                        .context("cannot write the manual page")
                        .into())
                }
                _ => Ok(()),
            }
        }
    }
}
