//! `minimodel`: move MiniModel `.slm` artifacts between consenting peers,
//! verified chunk by chunk. See `minimodel --help` and the README.

mod commands;
mod consent;
mod events;
mod exit;
mod keystore;
mod logging;
mod metrics;
mod output;
mod progress;
mod reports;
#[cfg(test)]
mod schema;
mod stop;
mod trust;
mod units;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};

use crate::events::Event;
use crate::exit::{Exit, Failure};
use crate::output::Output;

/// What `--version` prints after the name: the version, and for a build
/// with debug assertions (Cargo's dev and test profiles) that it is one,
/// so that a figure measured through it says which build it came from
/// (the lab names it before its first scenario, `docs/lab.md`).
#[cfg(not(debug_assertions))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(debug_assertions)]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (debug build)");

/// Move MiniModel .slm artifacts between consenting peers, verified chunk by
/// chunk against the manifest's Merkle root and the whole-file SHA-256.
///
/// Exit codes: 0 success, 1 transfer or I/O failure, 2 usage, 3 invalid input
/// (manifest, request, offer, route, .slm, key file, keyring, a file in the
/// way), 4 verification
/// failed (the bytes, or a manifest's signature or publisher key), 5 consent
/// not given, 130 interrupted (state saved).
#[derive(Debug, Parser)]
#[command(name = "minimodel", version = VERSION, max_term_width = 100)]
struct Cli {
    /// Machine-readable output: one JSON object per line on standard output.
    #[arg(long, global = true)]
    json: bool,

    /// More diagnostics on stderr: -v what peers do, -vv debug (quinn's
    /// too). RUST_LOG, when set, decides instead.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    /// Print nothing but errors: no progress, no status lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a valid synthetic .slm file, deterministic from a seed.
    Fixture(commands::fixture::FixtureArgs),
    /// Hash a .slm file and write its manifest (v0, or v1 signed with
    /// --sign).
    Manifest(Box<commands::manifest::ManifestArgs>),
    /// Sign a manifest with a publisher's secret key (it becomes v1).
    Sign(commands::sign::SignArgs),
    /// Publisher keys and the keyring: new, show, rotate,
    /// accept-rotation, pin, forget, list.
    Key(commands::key::KeyArgs),
    /// Check a manifest's signature, then a .slm file against it, and write
    /// a receipt.
    Verify(commands::verify::VerifyArgs),
    /// Print the metadata-only catalog entry of a manifest (JSON), saying
    /// whether it is signed and by which key.
    CatalogEntry(commands::catalog::CatalogArgs),
    /// Name a signed manifest as its model's latest in the publisher's
    /// channel on the Mainline DHT (and list withdrawn manifests).
    Publish(Box<commands::channel::PublishArgs>),
    /// Read a publisher's channel from the Mainline DHT, checked against
    /// its key and the newest item seen here: each model's latest
    /// manifest and peers, and the withdrawn manifests.
    Channel(commands::channel::ChannelArgs),
    /// One round of following a publisher's channel: fetch the model's
    /// latest version when it is new, say which versions here are
    /// withdrawn. Only what changed moves when the new version's chunk
    /// list can be read (at its manifest's chunk-list-route, beside a
    /// --mirror, or from the publisher's peers); else every chunk comes
    /// from peers. Run it on a schedule (cron, a timer).
    Follow(Box<commands::follow::FollowArgs>),
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
    /// Write the import request that import-peer-request reads, from peer offers.
    Request(commands::request::RequestArgs),
    /// The one string to share instead of a manifest and an offer: new,
    /// show.
    Ticket(commands::ticket::TicketArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::docs::CompletionsArgs),
    /// Print the manual page (roff), or write every page into a directory.
    Man(commands::docs::ManArgs),
    /// One long-running node over a library of artifacts, with a local
    /// API and a web page: run, token, install-unit, and list, share,
    /// fetch, pause, resume, remove, limits, log, stop to talk to it.
    Companion(commands::companion::CompanionArgs),
    /// Run a plain Mainline DHT node (routing data only, no swarm) to
    /// bootstrap a private DHT or a test, until stopped.
    DhtNode(commands::dht::DhtNodeArgs),
    /// Run a rendezvous and relay for peers behind home routers (they
    /// name it with --relay), within limits this host's operator sets,
    /// until stopped.
    Relay(commands::relay::RelayArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error, wants_json(std::env::args_os())),
    };
    logging::init(cli.verbose, cli.quiet);
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    stop::end_unhandled_signals(out);
    let result: Result<(), Failure> = match cli.command {
        Command::Fixture(args) => commands::fixture::run(args, out),
        Command::Manifest(args) => commands::manifest::run(*args, out),
        Command::Sign(args) => commands::sign::run(args, out),
        Command::Key(args) => commands::key::run(args, out),
        Command::Verify(args) => commands::verify::run(args, out),
        Command::CatalogEntry(args) => commands::catalog::run(args, out),
        Command::Publish(args) => commands::channel::publish(*args, out),
        Command::Channel(args) => commands::channel::show(args, out),
        Command::Follow(args) => commands::follow::run(*args, out),
        Command::Seed(args) => commands::seed::run(args, out),
        Command::Fetch(args) => commands::fetch::run(args, out),
        Command::ImportPeerRequest(args) => commands::import::run(args, out),
        Command::Status(args) => commands::status::run(args, out),
        Command::Demo(args) => commands::demo::run(args, out),
        Command::Request(args) => commands::request::run(args, out),
        Command::Ticket(args) => commands::ticket::run(args, out),
        Command::Completions(args) => commands::docs::completions(args, Cli::command()),
        Command::Man(args) => commands::docs::man(args, Cli::command()),
        Command::DhtNode(args) => commands::dht::run(args, out),
        Command::Relay(args) => commands::relay::run(args, out),
        Command::Companion(args) => commands::companion::run(args, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.exit as u8)
        }
    }
}

/// Whether the command line asks for `--json` (before a `--`), told
/// without parsing it: a command line that does not parse gets its usage
/// error as JSON too.
fn wants_json(args: impl IntoIterator<Item = OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// A command line that does not parse: exit 2, with the error as text on
/// stderr, or as a JSON `error` event on stdout under `--json`. `--help`
/// and `--version` are no failures: exit 0.
fn usage_error(error: &clap::Error, json: bool) -> ExitCode {
    if !error.use_stderr() || !json {
        let _ = error.print();
        let code = if error.use_stderr() {
            Exit::Usage as u8
        } else {
            0
        };
        return ExitCode::from(code);
    }
    let (message, hint) = split_usage(&error.render().to_string());
    Output {
        json: true,
        quiet: false,
    }
    .event(&Event::Error {
        exit_code: Exit::Usage as i32,
        error: message,
        hint,
    });
    ExitCode::from(Exit::Usage as u8)
}

/// Splits clap's rendered error into the message (without its `error: `)
/// and the rest (tips, usage, where to read more) on one line.
fn split_usage(text: &str) -> (String, Option<String>) {
    let mut paragraphs = text
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| !paragraph.is_empty());
    let message = paragraphs.next().unwrap_or_default();
    let message = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned();
    let rest: Vec<String> = paragraphs.collect();
    (message, (!rest.is_empty()).then(|| rest.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_seen_before_a_double_dash_only() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(args(&[
            "minimodel",
            "fetch",
            "--json",
            "--bogus"
        ])));
        assert!(!wants_json(args(&["minimodel", "fetch", "--bogus"])));
        assert!(
            !wants_json(args(&["--json", "fetch"])),
            "argv[0] is the program"
        );
        assert!(!wants_json(args(&["minimodel", "verify", "--", "--json"])));
    }

    #[test]
    fn usage_errors_split_into_message_and_hint() {
        let error = Cli::try_parse_from(["minimodel", "verify", "--bogus"]).unwrap_err();
        let (message, hint) = split_usage(&error.render().to_string());
        assert_eq!(message, "unexpected argument '--bogus' found");
        let hint = hint.unwrap();
        assert!(hint.contains("Usage: minimodel verify"), "{hint}");
        assert!(!hint.contains('\n'), "{hint}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
