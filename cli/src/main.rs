//! `minimodel`: move MiniModel `.slm` artifacts between consenting peers,
//! verified chunk by chunk. See `minimodel --help` and the README.

mod commands;
mod consent;
mod exit;
mod output;
mod stop;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::{Exit, Failure};
use crate::output::Output;

/// Move MiniModel .slm artifacts between consenting peers, verified chunk by
/// chunk against the manifest's Merkle root and the whole-file SHA-256.
///
/// Exit codes: 0 success, 1 transfer or I/O failure, 2 usage, 3 invalid input
/// (manifest, request, offer, route, .slm), 4 verification failed, 5 consent
/// not given.
#[derive(Debug, Parser)]
#[command(name = "minimodel", version, max_term_width = 100)]
struct Cli {
    /// Machine-readable output: one JSON object per line on standard output.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a valid synthetic .slm file, deterministic from a seed.
    Fixture(commands::fixture::FixtureArgs),
    /// Hash a .slm file and write its manifest v0.
    Manifest(Box<commands::manifest::ManifestArgs>),
    /// Check a .slm file against its manifest and write a receipt.
    Verify(commands::verify::VerifyArgs),
    /// Print the metadata-only catalog entry of a manifest (JSON).
    CatalogEntry(commands::catalog::CatalogArgs),
    /// Verify a local .slm file, then serve it to other peers until stopped.
    Seed(commands::seed::SeedArgs),
    /// Download an artifact from several peers at once, verified chunk by chunk.
    Fetch(commands::fetch::FetchArgs),
    /// Fetch what an import request offers, after checking it against the manifest.
    ImportPeerRequest(commands::import::ImportArgs),
    /// The main job on an embedded default: a seeder and downloading peers
    /// that serve each other, on loopback, with a summary.
    Demo(commands::demo::DemoArgs),
    /// List the downloads in a directory: partial, complete, how much.
    Status(commands::status::StatusArgs),
    /// Run a plain Mainline DHT node (routing data only, no swarm) to
    /// bootstrap a private DHT or a test, until stopped.
    DhtNode(commands::dht::DhtNodeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are not failures; everything else is usage.
            let code = if error.use_stderr() {
                Exit::Usage as u8
            } else {
                0
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let out = Output { json: cli.json };
    let result: Result<(), Failure> = match cli.command {
        Command::Fixture(args) => commands::fixture::run(args, out),
        Command::Manifest(args) => commands::manifest::run(*args, out),
        Command::Verify(args) => commands::verify::run(args, out),
        Command::CatalogEntry(args) => commands::catalog::run(args, out),
        Command::Seed(args) => commands::seed::run(args, out),
        Command::Fetch(args) => commands::fetch::run(args, out),
        Command::ImportPeerRequest(args) => commands::import::run(args, out),
        Command::Status(args) => commands::status::run(args, out),
        Command::Demo(args) => commands::demo::run(args, out),
        Command::DhtNode(args) => commands::dht::run(args, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.exit as u8)
        }
    }
}
