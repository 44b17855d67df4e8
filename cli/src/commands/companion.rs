//! `minimodel companion`: one long-running node over a library of
//! artifacts, with a local HTTP API and a web page (`docs/companion.md`),
//! and the thin commands that talk to a running one.
//!
//! `run` serves a library until SIGINT or SIGTERM; `token` makes (once)
//! and prints the API token; `install-unit` writes a systemd user unit.
//! The others (`list`, `share`, `fetch`, `pause`, `resume`, `remove`,
//! `limits`, `log`, `stop`) find the running companion through the
//! library's `api.json` and `token` and call its API; `share` and `fetch`
//! show the words of every consent the companion asks for and send a yes
//! only with `--yes` or a yes at the prompt.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use minimodel_companion::client::{Client, ClientError};
use minimodel_companion::library::Caps;
use minimodel_companion::library::FollowPolicy;
use minimodel_companion::library::{Endpoint, LibraryDir, LibraryError};
use minimodel_companion::token::Token;
use minimodel_companion::trust::{TrustStore, TrustStoreError};
use minimodel_companion::view::{
    AddDownload, AddFollow, AddShare, Consent, ErrorBody, FollowView, ItemState, ItemView, Preview,
    SetLimits,
};
use minimodel_companion::{Companion, CompanionConfig, CompanionError};
use minimodel_swarm::app::consent::{ConsentKind, Disclosure};
use minimodel_swarm::input::Input;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::trust::{SignatureCheck, TrustAnchors, judge};
use serde_json::Value;

use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::keystore::{KeyringFile, PublicKeyArg};
use crate::output::{Output, counted};
use crate::stop::Stop;
use crate::units::{human_bytes, parse_rate, parse_size};

/// `minimodel companion ...`.
#[derive(Debug, Args)]
pub struct CompanionArgs {
    #[command(subcommand)]
    pub command: CompanionCommand,
}

/// What to do with the companion.
#[derive(Debug, Subcommand)]
pub enum CompanionCommand {
    /// Run the companion on a library until SIGINT or SIGTERM: serve its
    /// shares, fetch its downloads, answer its API and page.
    Run(RunArgs),
    /// Print the API's address and token (made now, mode 0600, when the
    /// library has none): paste the token into the page.
    Token(LibraryArgs),
    /// Write the systemd user unit that runs the companion at login
    /// (enable it with systemctl --user).
    InstallUnit(InstallUnitArgs),
    /// List the running companion's items.
    List(LibraryArgs),
    /// Share a verified local .slm through the running companion.
    Share(ShareArgs),
    /// Fetch an artifact through the running companion.
    Fetch(Box<FetchArgs>),
    /// Pause an item (it stops moving bytes until resumed).
    Pause(ItemArgs),
    /// Resume a paused or failed item.
    Resume(ItemArgs),
    /// Remove an item from the library (with --delete-files, a
    /// download's files too).
    Remove(RemoveArgs),
    /// Show or change the library's caps and quota.
    Limits(LimitsArgs),
    /// Print the transfer log's last entries.
    Log(LogArgs),
    /// Stop the running companion (as SIGTERM does: every state saved).
    Stop(LibraryArgs),
    /// Follow a publisher's channel for one model: the running companion
    /// looks it up now and hourly, stops serving what it withdraws, and
    /// offers (or with --auto fetches) each new version.
    Follow(FollowArgs),
    /// List the followed channels: the newest sequence number read, the
    /// last lookup, a version offered with its ticket.
    Follows(LibraryArgs),
    /// Stop following a publisher's channel for a model (what it withdrew
    /// stays withdrawn, what it fetched stays).
    Unfollow(UnfollowArgs),
}

/// `companion follow`.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The publisher's key, mmpk1... or its public key file.
    pub publisher_key: PublicKeyArg,
    /// The model to follow.
    #[arg(long, value_name = "ID", value_parser = super::channel::parse_model_id)]
    pub model_id: minimodel_verifier::ids::ModelId,
    /// Fetch each new version by itself, beside the old one (asks consent
    /// now, for every new version); without it each is offered.
    #[arg(long)]
    pub auto: bool,
    /// Consent to what --auto does (fetching each new version, and
    /// pinning the key at the first one).
    #[arg(long, requires = "auto")]
    pub yes: bool,
    /// A copy of the model's latest version on a web server (https://,
    /// repeatable; `fetch --mirror`): each new version is fetched from it
    /// beside the peers, every chunk checked, and its chunk list
    /// (`URL.chunk-list`) read to copy the chunks the versions in the
    /// library share with it.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    #[command(flatten)]
    pub library: LibraryArgs,
}

/// `companion unfollow`.
#[derive(Debug, Args)]
pub struct UnfollowArgs {
    /// The publisher's key, mmpk1... or its public key file.
    pub publisher_key: PublicKeyArg,
    /// The model followed.
    #[arg(long, value_name = "ID", value_parser = super::channel::parse_model_id)]
    pub model_id: minimodel_verifier::ids::ModelId,
    #[command(flatten)]
    pub library: LibraryArgs,
}

/// The library a command works on.
#[derive(Debug, Clone, Args)]
pub struct LibraryArgs {
    /// The library directory [default: $XDG_DATA_HOME/minimodel/library,
    /// else ~/.local/share/minimodel/library].
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
}

/// `companion run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Where the API and the page listen. Another address than loopback
    /// lets other hosts reach them (the token still guards every request,
    /// sent in clear over HTTP): say which names they use with
    /// --allow-host.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7434")]
    pub api: SocketAddr,
    /// Another host name the API answers to (NAME or NAME:PORT), besides
    /// 127.0.0.1, localhost and [::1]. Repeatable.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// The address items serve on: every share and serving download
    /// listens on one UDP port there, kept across restarts once an item
    /// has served.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub serve_ip: IpAddr,
    /// Ask this network's router (UPnP IGD, NAT-PMP or PCP) to open the
    /// items' UDP port to the internet while the companion runs; the
    /// mapping is removed when it stops.
    #[arg(long)]
    pub port_mapping: bool,
    /// Announce each serving item on the local network (mDNS: its swarm
    /// key, this node's id, port and local addresses; everyone on the
    /// network hears it) and look for each download's peers there.
    #[arg(long)]
    pub lan: bool,
    /// DHT nodes to join (IPv4:PORT) instead of the public ones, for
    /// downloads that look peers up on the DHT. Repeatable.
    #[arg(long = "dht-bootstrap", value_name = "ADDR")]
    pub dht_bootstrap: Vec<SocketAddrV4>,
    /// A relay every item registers with, `[RELAY_ID@]IP:PORT` (a host
    /// with a public address that runs `minimodel relay`): peers behind
    /// other home routers reach the items through it (a punch it
    /// introduces, or its relaying), and the shares' offers and tickets
    /// name it. Repeatable; the relays that downloads' peers name are used
    /// too.
    #[arg(long = "relay", value_name = "[RELAY_ID@]IP:PORT", value_parser = super::relay::parse_relay)]
    pub relays: Vec<minimodel_swarm::relay::RelayAddr>,
    /// The keyring of pinned publisher keys [default:
    /// $XDG_DATA_HOME/minimodel/keyring, else
    /// ~/.local/share/minimodel/keyring].
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Size at which the transfer log rotates (three older files are
    /// kept).
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub rotate_log: u64,
    /// How long a download's try for its peers lasts with nothing
    /// verified and nothing in flight before the download waits (it
    /// never gives up for want of peers).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::units::parse_duration)]
    pub peer_try: Duration,
    /// The longest wait between a download's tries for its peers (the
    /// first is 15 s, or this when shorter, doubling per try that
    /// verified nothing).
    #[arg(long, value_name = "DURATION", default_value = "5min", value_parser = crate::units::parse_duration)]
    pub peer_wait_max: Duration,
    /// How often a waiting download dials the addresses it knows,
    /// whatever its wait (a seeder that comes back is found within this).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::units::parse_duration)]
    pub peer_dial_every: Duration,
    /// Exit 0, not 3, when the library cannot be used (another companion
    /// holds it, its permissions are unsafe, or its state file is
    /// refused), after saying why: for a launchd agent, which can keep
    /// from starting a job again only after a clean exit (install-unit
    /// writes it there).
    #[arg(long)]
    pub refusal_exits_zero: bool,
}

/// `companion install-unit`.
#[derive(Debug, Args)]
pub struct InstallUnitArgs {
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Print the unit instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// More options for `companion run` in the unit (after --).
    #[arg(last = true, value_name = "RUN_OPTIONS")]
    pub run_options: Vec<String>,
}

/// Consent and trust for `share` and `fetch`.
#[derive(Debug, Clone, Args)]
pub struct AskArgs {
    /// Consent to everything the companion asks (serving, fetching,
    /// seeding after, the DHT, trusting a publisher key seen for the
    /// first time).
    #[arg(long)]
    pub yes: bool,
    /// The publisher's key (mmpk1... or a public key file): the manifest
    /// must be signed by it.
    #[arg(long, value_name = "KEY")]
    pub publisher_key: Option<PublicKeyArg>,
    /// Refuse an unsigned manifest.
    #[arg(long)]
    pub require_signature: bool,
}

/// `companion share`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The artifact's manifest.
    pub manifest: PathBuf,
    /// The .slm file (verified before it is served).
    pub file: PathBuf,
    #[command(flatten)]
    pub library: LibraryArgs,
    #[command(flatten)]
    pub ask: AskArgs,
    /// This share's upload cap, like 8MiB (per second).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload: Option<u64>,
    /// An https:// URL of a copy of the artifact (repeatable, at most 2;
    /// no query), named in the share's ticket: whoever fetches with it
    /// fetches from the mirror too, and finds the manifest beside it
    /// (URL.manifest) when this share is offline.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
}

/// `companion fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The artifact's manifest, or a ticket (mm1...): the companion asks
    /// the ticket's peers for the manifest and fetches from them.
    #[arg(value_name = "MANIFEST|TICKET")]
    pub manifest: PathBuf,
    /// A peer to fetch from, PEER_ID@IP:PORT. Repeatable.
    #[arg(long = "peer", value_name = "PEER_ID@IP:PORT")]
    pub peers: Vec<String>,
    /// A peer offer file. Repeatable.
    #[arg(long = "offer", value_name = "FILE")]
    pub offers: Vec<PathBuf>,
    /// An import request file: its offers are fetched from.
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// Find peers on the DHT too (and announce there with --serve).
    #[arg(long)]
    pub dht: bool,
    /// DHT nodes to join (IPv4:PORT) instead of the public ones.
    #[arg(long = "dht-bootstrap", value_name = "ADDR", requires = "dht")]
    pub dht_bootstrap: Vec<String>,
    /// An HTTPS copy of the artifact (repeatable, at most 16), its chunk
    /// list beside it at `URL.chunk-list`; every chunk from it is checked
    /// like a peer's. The companion reads tokens for mirrors from its own
    /// MINIMODEL_MIRROR_TOKENS.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Allow `http://` mirrors: the bytes are still checked, but anyone
    /// on the way sees what is fetched.
    #[arg(long)]
    pub allow_plain_http_mirror: bool,
    /// Serve verified chunks while fetching.
    #[arg(long)]
    pub serve: bool,
    /// Keep serving the file once it is verified.
    #[arg(long, requires = "serve")]
    pub seed_after: bool,
    /// This download's cap, like 8MiB (per second).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download: Option<u64>,
    /// This download's upload cap while it serves, like 8MiB (per
    /// second).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload: Option<u64>,
    /// Wait until the download is verified (showing its progress), then
    /// say how to open it.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub library: LibraryArgs,
    #[command(flatten)]
    pub ask: AskArgs,
}

/// An item, by its id or its model id.
#[derive(Debug, Args)]
pub struct ItemArgs {
    /// The item's id (16 hex digits) or its model id.
    pub item: String,
    #[command(flatten)]
    pub library: LibraryArgs,
}

/// `companion remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub item: ItemArgs,
    /// Delete a download's files too (a share's file is never deleted).
    #[arg(long)]
    pub delete_files: bool,
}

/// `companion limits`.
#[derive(Debug, Args)]
pub struct LimitsArgs {
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Upload cap over all items, like 8MiB (per second), or `none`.
    #[arg(long, value_name = "RATE", value_parser = parse_rate_limit)]
    pub max_upload: Option<Limit>,
    /// Download cap over all items, like 8MiB (per second), or `none`.
    #[arg(long, value_name = "RATE", value_parser = parse_rate_limit)]
    pub max_download: Option<Limit>,
    /// The most bytes the library's downloads may take, like 20GiB, or
    /// `none`.
    #[arg(long, value_name = "SIZE", value_parser = parse_limit)]
    pub quota: Option<Limit>,
}

/// A limit's new value: a number, or none.
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<u64>);

fn parse_rate_limit(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("none") {
        Ok(Limit(None))
    } else {
        parse_rate(text).map(|value| Limit(Some(value)))
    }
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("none") {
        Ok(Limit(None))
    } else {
        parse_size(text).map(|value| Limit(Some(value)))
    }
}

/// `companion log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub library: LibraryArgs,
    /// How many of the last entries (at most 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Runs `minimodel companion ...`.
pub fn run(args: CompanionArgs, out: Output) -> Result<(), Failure> {
    match args.command {
        CompanionCommand::Run(args) => {
            let refusal_exits_zero = args.refusal_exits_zero;
            match serve(args, out) {
                Err(failure) if refusal_exits_zero && failure.exit == Exit::InvalidInput => {
                    let not_again = "not started, exit 0 (--refusal-exits-zero): started again, it would be refused again";
                    let hint = match &failure.hint {
                        Some(hint) => format!("{hint}; {not_again}"),
                        None => not_again.to_owned(),
                    };
                    out.failure_exiting(&failure.with_hint(hint), 0);
                    Ok(())
                }
                result => result,
            }
        }
        CompanionCommand::Token(args) => token(&args, out),
        CompanionCommand::InstallUnit(args) => install_unit(args, out),
        CompanionCommand::List(args) => list(&args, out),
        CompanionCommand::Share(args) => share(args, out),
        CompanionCommand::Fetch(args) => fetch(*args, out),
        CompanionCommand::Pause(args) => set_paused(&args, true, out),
        CompanionCommand::Resume(args) => set_paused(&args, false, out),
        CompanionCommand::Remove(args) => remove(&args, out),
        CompanionCommand::Limits(args) => limits(&args, out),
        CompanionCommand::Log(args) => log(&args, out),
        CompanionCommand::Stop(args) => stop(&args, out),
        CompanionCommand::Follow(args) => follow(&args, out),
        CompanionCommand::Follows(args) => follows(&args, out),
        CompanionCommand::Unfollow(args) => unfollow(&args, out),
    }
}

/// The library directory: `--library`, else the default place.
fn library_path(args: &LibraryArgs) -> Result<PathBuf, Failure> {
    if let Some(path) = &args.library {
        return Ok(path.clone());
    }
    use minimodel_swarm::platform::{self, System, places};
    platform::data_home()
        .map(|data| data.join("minimodel").join("library"))
        .ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                anyhow::anyhow!(
                    "no place for the library: {}",
                    places::data_home_variables(System::CURRENT)
                ),
            )
            .with_hint("pass --library DIR")
        })
}

fn library_failure(error: LibraryError) -> Failure {
    let exit = match &error {
        LibraryError::Io { .. } | LibraryError::Write { .. } => Exit::Transfer,
        LibraryError::Locked { .. } | LibraryError::Unsafe { .. } | LibraryError::State { .. } => {
            Exit::InvalidInput
        }
    };
    let hint = match &error {
        LibraryError::Locked { .. } => Some(
            "talk to the running one (minimodel companion list), or stop it first (minimodel companion stop)",
        ),
        LibraryError::State { .. } => Some(
            "the file is left as it is: restore it from a backup, or move it away to start an empty library",
        ),
        _ => None,
    };
    let failure = Failure::new(exit, error);
    match hint {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

/// The keyring file as the companion's trust store: read again for every
/// judgement (pins made meanwhile by `minimodel key` count), written
/// whole for every pin.
struct KeyringTrust {
    path: Option<PathBuf>,
    writing: Mutex<()>,
}

impl KeyringTrust {
    fn load(&self) -> Result<KeyringFile, TrustStoreError> {
        KeyringFile::load(self.path.as_deref())
            .map_err(|error| TrustStoreError::Keyring(error.to_string()))
    }
}

impl TrustStore for KeyringTrust {
    fn judge(
        &self,
        manifest: &Manifest,
        named: Option<&PublicKey>,
        require_signature: bool,
    ) -> Result<SignatureCheck, TrustStoreError> {
        let keyring = self.load()?;
        Ok(judge(
            manifest,
            &TrustAnchors {
                keyring: &keyring.keyring,
                named_key: named,
                require_signature,
            },
        )?)
    }

    fn pin(&self, check: SignatureCheck) -> Result<SignatureCheck, TrustStoreError> {
        let _one_writer = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let first_use = minimodel_companion::trust::is_first_use(&check);
        let Some(pin) = check.pin_to_add(&now_rfc3339()) else {
            return Ok(check);
        };
        let mut keyring = self.load()?;
        keyring
            .keyring
            .set(pin)
            .map_err(|full| TrustStoreError::Keyring(full.to_string()))?;
        keyring
            .save()
            .map_err(|error| TrustStoreError::Keyring(error.to_string()))?;
        Ok(if first_use {
            check.pinned_at_first_use()
        } else {
            check
        })
    }

    fn describe(&self) -> String {
        self.load()
            .map(|keyring| keyring.describe())
            .unwrap_or_else(|_| "the keyring".to_owned())
    }
}

/// `companion run`.
fn serve(args: RunArgs, out: Output) -> Result<(), Failure> {
    let library = library_path(&args.library)?;
    let mut config = CompanionConfig::new(&library);
    config.api = args.api;
    config.allow_hosts = args.allow_hosts;
    config.serve_ip = args.serve_ip;
    config.port_mapping = args.port_mapping;
    config.lan = args.lan;
    config.relays = args.relays;
    config.dht_bootstrap = args.dht_bootstrap;
    config.rotate_log_bytes = args.rotate_log;
    let defaults = minimodel_companion::supervisor::Patience::default();
    config.patience = minimodel_companion::supervisor::Patience {
        try_for: args.peer_try,
        first_wait: defaults.first_wait.min(args.peer_wait_max),
        longest_wait: args.peer_wait_max,
        dial_every: args.peer_dial_every,
        ..defaults
    };
    let trust = Arc::new(KeyringTrust {
        path: args.keyring,
        writing: Mutex::new(()),
    });
    let runtime = super::network::many_nodes_runtime()?;
    let stop = Stop::default();
    runtime.block_on(async {
        // Before anything is ready: a SIGTERM from now on stops cleanly.
        let signalled = stop.signal();
        let companion = Companion::start(config, trust)
            .await
            .map_err(companion_failure)?;
        let library = LibraryDir::open(&library).map_err(library_failure)?;
        if !args.api.ip().is_loopback() {
            out.status(format!(
                "warning: the API listens on {}, where other hosts can reach it; every request still needs the token, which travels in clear over HTTP",
                companion.api_addr()
            ));
        }
        if companion.token_made() {
            out.say(format!(
                "made the API token {} (mode 0600)",
                library.token_path().display()
            ));
        }
        let peer_id = companion.peer_id().to_string();
        // Said once the items started and api.json is written: the thin
        // commands work from then on.
        let ready = move |url: &str| {
            out.say(format!(
                "companion on {}: page and API at {url} (token in {}); peer {peer_id}",
                library.root().display(),
                library.token_path().display(),
            ));
            out.event(&Event::Companion {
                url: url.to_owned(),
                library: library.root().to_owned(),
                token_path: library.token_path(),
                peer_id,
            });
        };
        companion
            .run_then(signalled, ready)
            .await
            .map_err(companion_failure)
    })?;
    out.say("stopped; every item's state is saved");
    out.event(&Event::Stopped {});
    if stop.fired() {
        // SIGINT or SIGTERM: the product's "interrupted, state saved"
        // (the unit counts it as a clean stop).
        Err(Failure::new(
            Exit::Interrupted,
            anyhow::anyhow!("stopped by a signal; every item's state is saved"),
        ))
    } else {
        Ok(())
    }
}

fn companion_failure(error: CompanionError) -> Failure {
    match error {
        CompanionError::Library(error) => library_failure(error),
        other => Failure::new(Exit::Transfer, other),
    }
}

/// `companion token`.
fn token(args: &LibraryArgs, out: Output) -> Result<(), Failure> {
    let library = LibraryDir::open(&library_path(args)?).map_err(library_failure)?;
    let (token, made) = Token::read_or_create(&library).map_err(library_failure)?;
    let url = Endpoint::read(&library)
        .map_err(library_failure)?
        .map(|endpoint| endpoint.url);
    if out.for_people() {
        if made {
            crate::output::say_err!(
                "made the API token {} (mode 0600)",
                library.token_path().display()
            );
        }
        match &url {
            Some(url) => crate::output::say_err!("the companion's page: {url}"),
            None => crate::output::say_err!("no companion runs on this library now"),
        }
    }
    if out.json {
        out.event(&Event::CompanionToken {
            token: token.expose().to_owned(),
            token_path: library.token_path(),
            url,
        });
    } else {
        // The token alone on stdout, for scripts; even with -q.
        crate::output::say_out!("{}", token.expose());
    }
    Ok(())
}

/// `companion install-unit`.
fn install_unit(args: InstallUnitArgs, out: Output) -> Result<(), Failure> {
    let library = library_path(&args.library)?;
    let library = if library.is_absolute() {
        library
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")
            .or_exit(Exit::Transfer)?
            .join(library)
    };
    let program = std::env::current_exe()
        .context("cannot tell where this program is")
        .or_exit(Exit::Transfer)?;
    let mut run_args = vec!["--library".to_owned(), library.display().to_string()];
    run_args.extend(args.run_options);
    use minimodel_companion::unit::LoginStart;
    let start = LoginStart::of(minimodel_swarm::platform::System::CURRENT);
    let log = start.log_file(&|name| std::env::var_os(name));
    let text = start.text(&program, &run_args, log.as_deref());
    if args.print {
        crate::output::put_out!("{text}");
        return Ok(());
    }
    let dir = start.dir(&|name| std::env::var_os(name)).ok_or_else(|| {
        Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "no place for {}: the environment names none (HOME, XDG_CONFIG_HOME, LOCALAPPDATA)",
                start.file_name()
            ),
        )
        .with_hint("pass --print and put the file where the system looks for it")
    })?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .or_exit(Exit::Transfer)?;
    let path = dir.join(start.file_name());
    super::write_atomically(&path, &start.file_bytes(&text))?;
    let enable = start.enable_command(&path);
    let linger = if start == LoginStart::SystemdUser {
        " (and at boot, before login: loginctl enable-linger $USER)"
    } else {
        ""
    };
    out.say(format!(
        "wrote {}; start it now and at every login with: {enable}{linger}",
        path.display()
    ));
    out.event(&Event::CompanionUnit { path, enable });
    Ok(())
}

/// The client of the companion running on the library.
fn client(args: &LibraryArgs) -> Result<Client, Failure> {
    let library = library_path(args)?;
    Client::for_library(&library).map_err(client_failure)
}

fn client_failure(error: ClientError) -> Failure {
    match error {
        ClientError::Library(error) => library_failure(error),
        ClientError::NotRunning(_) => Failure::new(Exit::Transfer, error)
            .with_hint("start it with `minimodel companion run` (or its unit)"),
        other => Failure::new(Exit::Transfer, other),
    }
}

/// A refusal of the API: the failure its kind says.
fn refused(status: u16, body: ErrorBody) -> Failure {
    let exit = match body.kind.as_str() {
        "invalid-input" => Exit::InvalidInput,
        "verification-failed" => Exit::VerificationFailed,
        "consent-needed" => Exit::NoConsent,
        "not-found" | "conflict" | "too-many" => Exit::Usage,
        _ => Exit::Transfer,
    };
    let error = if body.error.is_empty() {
        format!("the companion answered {status}")
    } else {
        body.error
    };
    let failure = Failure::new(exit, anyhow::anyhow!(error));
    match body.hint {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

/// What the API answered, or the failure it says.
fn answer<T>(result: Result<T, ClientError>) -> Result<T, Failure> {
    result.map_err(|error| match error {
        ClientError::Refused { status, body } => refused(status, body),
        other => client_failure(other),
    })
}

/// One line about an item.
fn item_line(item: &ItemView) -> String {
    let percent = (item.verified_bytes * 100)
        .checked_div(item.artifact_bytes)
        .unwrap_or(0);
    let state = serde_json::to_value(item.state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut line = format!(
        "{}  {:<8}  {}  {}  {} of {} ({percent}%), {}",
        item.id,
        item.kind.name(),
        item.model_id,
        state,
        human_bytes(item.verified_bytes),
        human_bytes(item.artifact_bytes),
        counted(item.peers, "peer"),
    );
    if let Some(serving) = &item.serving {
        line.push_str(&format!(", serving on {}", serving.listen));
    }
    if let Some(problem) = &item.problem {
        line.push_str(&format!("; {}", problem.text));
    }
    line
}

fn show_item(item: &ItemView, out: Output) {
    out.say(item_line(item));
    if let Some(reach) = &item.reach
        && reach.verdict != "not-listening"
    {
        let warning = if reach.unreachable { "warning: " } else { "" };
        out.say(format!("  {warning}reachability: {}", reach.text));
        if let Some(advice) = &reach.advice {
            out.say(format!("  {advice}"));
        }
    }
    if let Some(reuse) = &item.reuse {
        out.say(format!("  {reuse}"));
    }
    if let Some(handoff) = &item.handoff {
        out.say(format!("  {}", handoff.text));
    }
    out.event(&Event::CompanionItem {
        item: Box::new(item.clone()),
    });
}

fn show_follow(follow: &FollowView, out: Output) {
    let policy = match follow.policy {
        FollowPolicy::Ask => "ask",
        FollowPolicy::Auto => "auto",
    };
    let seq = follow.seq.map_or_else(
        || "no item read yet".to_owned(),
        |seq| format!("sequence number {seq}"),
    );
    out.say(format!(
        "{} of {} ({policy}): {seq}",
        follow.model_id, follow.publisher_key
    ));
    if let Some(lookup) = &follow.last_lookup {
        out.say(format!("  last lookup {}: {}", lookup.at, lookup.text));
    }
    if let Some(offer) = &follow.offer {
        out.say(format!(
            "  new version {} offered: minimodel companion fetch {}",
            offer.manifest_sha256, offer.ticket
        ));
    }
    out.event(&Event::CompanionFollow {
        follow: Box::new(follow.clone()),
    });
}

/// `companion follow`.
fn follow(args: &FollowArgs, out: Output) -> Result<(), Failure> {
    let client = client(&args.library)?;
    let key = args.publisher_key.read()?;
    let mut consent = Consent::default();
    if args.auto {
        let asks = [
            Disclosure {
                consent: ConsentKind::Fetch,
                words: format!(
                    "Fetch each new version of {} that the channel of key {} names, from the peers it names{}, into the library, beside the versions there; each manifest must be signed by that key, and every chunk is checked against it. Nothing here opens or runs the model.",
                    args.model_id,
                    key.key_id(),
                    if args.mirrors.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " and from {}",
                            args.mirrors
                                .iter()
                                .map(|url| minimodel_swarm::mirror::given::shown_url(url))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            },
            Disclosure {
                consent: ConsentKind::TrustKey,
                words: format!(
                    "Trust key {} ({key}) and pin it in the companion's keyring at the first version fetched, if it is not pinned yet.",
                    key.key_id()
                ),
            },
        ];
        if args.yes {
            for ask in &asks {
                out.say(format!("- {}", ask.words));
            }
        }
        crate::consent::ask_all(&asks, args.yes, out.json)?;
        consent.fetch = true;
        consent.trust_key = true;
    }
    let request = AddFollow {
        publisher_key: key.to_string(),
        model_id: args.model_id.to_string(),
        policy: if args.auto {
            FollowPolicy::Auto
        } else {
            FollowPolicy::Ask
        },
        consent,
        mirrors: args.mirrors.clone(),
    };
    let view = answer(client.add_follow(&request))?;
    show_follow(&view, out);
    Ok(())
}

/// `companion follows`.
fn follows(args: &LibraryArgs, out: Output) -> Result<(), Failure> {
    let client = client(args)?;
    let follows = answer(client.follows())?;
    if follows.follows.is_empty() {
        out.say("no channel is followed");
    }
    for follow in &follows.follows {
        show_follow(follow, out);
    }
    Ok(())
}

/// `companion unfollow`.
fn unfollow(args: &UnfollowArgs, out: Output) -> Result<(), Failure> {
    let client = client(&args.library)?;
    let key = args.publisher_key.read()?;
    let view = answer(client.remove_follow(&key.to_string(), args.model_id.as_str()))?;
    out.say(format!(
        "no longer following {} of {}",
        view.model_id, view.publisher_key
    ));
    Ok(())
}

/// `companion list`.
fn list(args: &LibraryArgs, out: Output) -> Result<(), Failure> {
    let client = client(args)?;
    let library = answer(client.library())?;
    if library.items.is_empty() {
        out.say("the library is empty");
    }
    for item in &library.items {
        show_item(item, out);
    }
    Ok(())
}

/// Shows the preview's signature and the words of every consent it
/// needs, asks the user once, and returns the consent to send.
fn consent_for(preview: &Preview, ask: &AskArgs, out: Output) -> Result<Consent, Failure> {
    out.say(&preview.signature.text);
    let mut given = Consent::default();
    let mut asks = Vec::new();
    for item in &preview.asks {
        let Some(kind) = ConsentKind::parse(&item.consent) else {
            return Err(Failure::new(
                Exit::Transfer,
                anyhow::anyhow!(
                    "the companion asks for a consent unknown here: {}",
                    item.consent
                ),
            )
            .with_hint("use a minimodel of the companion's version"));
        };
        match kind {
            ConsentKind::Serve => given.serve = true,
            ConsentKind::Fetch => given.fetch = true,
            ConsentKind::SeedAfter => given.seed_after = true,
            ConsentKind::Dht => given.dht = true,
            ConsentKind::TrustKey => given.trust_key = true,
        }
        asks.push(Disclosure {
            consent: kind,
            words: item.words.clone(),
        });
    }
    if ask.yes {
        for disclosure in &asks {
            out.say(format!("- {}", disclosure.words));
        }
    }
    crate::consent::ask_all(&asks, ask.yes, out.json)?;
    Ok(given)
}

fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path)
        .with_context(|| format!("cannot use {}", path.display()))
        .or_exit(Exit::InvalidInput)
}

/// The `--publisher-key` given, read, as the API takes it.
fn publisher_key(ask: &AskArgs) -> Result<Option<String>, Failure> {
    Ok(ask
        .publisher_key
        .as_ref()
        .map(PublicKeyArg::read)
        .transpose()?
        .map(|key| key.to_string()))
}

/// `companion share`.
fn share(args: ShareArgs, out: Output) -> Result<(), Failure> {
    let client = client(&args.library)?;
    let mut request = AddShare {
        manifest_path: Some(absolute(&args.manifest)?),
        file: absolute(&args.file)?,
        caps: Caps {
            max_upload: args.max_upload,
            max_download: None,
        },
        publisher_key: publisher_key(&args.ask)?,
        require_signature: args.ask.require_signature,
        mirrors: args.mirrors.clone(),
        ..AddShare::default()
    };
    let preview = answer(client.preview_share(&request))?;
    request.consent = consent_for(&preview, &args.ask, out)?;
    let item = answer(client.add_share(&request))?;
    show_item(&item, out);
    Ok(())
}

fn read_json_file(path: &Path, input: Input) -> Result<Value, Failure> {
    let bytes = super::read_input(path, input)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))
        .or_exit(Exit::InvalidInput)
}

/// `arg` as a ticket's text, when it is one: it starts with `mm1` and
/// names no file (the companion checks the rest).
fn ticket_text(arg: &Path) -> Option<&str> {
    minimodel_swarm::ticket::ticket_like(arg.to_str()?).filter(|_| !arg.exists())
}

/// `companion fetch`.
fn fetch(args: FetchArgs, out: Output) -> Result<(), Failure> {
    // The files named are read first: one that cannot be an offer or a
    // request is said before the companion is asked anything.
    let offers = args
        .offers
        .iter()
        .map(|path| read_json_file(path, Input::OFFER))
        .collect::<Result<Vec<_>, _>>()?;
    let mut request = AddDownload {
        peers: args.peers.clone(),
        offers,
        request: args
            .request
            .as_deref()
            .map(|path| read_json_file(path, Input::REQUEST))
            .transpose()?,
        dht: args.dht,
        dht_bootstrap: args.dht_bootstrap.clone(),
        mirrors: args.mirrors.clone(),
        allow_plain_http_mirror: args.allow_plain_http_mirror,
        serve: args.serve,
        seed_after: args.seed_after,
        caps: Caps {
            max_upload: args.max_upload,
            max_download: args.max_download,
        },
        publisher_key: publisher_key(&args.ask)?,
        require_signature: args.ask.require_signature,
        ..AddDownload::default()
    };
    let client = client(&args.library)?;
    match ticket_text(&args.manifest) {
        Some(ticket) => {
            // The companion asks the ticket's peers first: seconds, when
            // some are silent.
            out.status("the companion asks the ticket's peers for its manifest");
            request.ticket = Some(ticket.to_owned());
        }
        None => request.manifest_path = Some(absolute(&args.manifest)?),
    }
    let preview = answer(client.preview_download(&request))?;
    request.consent = consent_for(&preview, &args.ask, out)?;
    // With --wait, Ctrl-C from the add on stops the waiting, not the
    // download: the companion has it. One during the add itself is
    // answered when the add returns (a second one ends it at once).
    let stop = args.wait.then(crate::stop::Stop::on_signal_thread);
    let item = answer(client.add_download(&request))?;
    show_item(&item, out);
    let Some(stop) = stop else {
        return Ok(());
    };
    // A companion that stops answering does not hold the waiting (and
    // its Ctrl-C) for the client's two minutes.
    let client = client.with_timeout(Duration::from_secs(10));
    let library_arg = args
        .library
        .library
        .as_ref()
        .map(|library| format!(" --library {}", library.display()))
        .unwrap_or_default();
    let id = item.id.clone();
    let bar = out.byte_progress(item.artifact_bytes, "fetching");
    let mut last_line = Instant::now();
    loop {
        if stop.fired() {
            bar.finish_and_clear();
            return Err(Failure::new(
                Exit::Interrupted,
                anyhow::anyhow!("interrupted: stopped waiting; the companion goes on with download {id}"),
            )
            .with_hint(format!("`minimodel companion list{library_arg}` shows it; `minimodel companion pause {id}{library_arg}` or `remove` stops it")));
        }
        let item = answer(client.item(&id)).map_err(|failure| {
            bar.finish_and_clear();
            failure.with_hint(format!(
                "the companion may still have download {id}: `minimodel companion list{library_arg}` says"
            ))
        })?;
        bar.set_position(item.verified_bytes);
        match (item.state, &item.problem) {
            (ItemState::Done | ItemState::Seeding, _) => {
                bar.finish_and_clear();
                show_item(&item, out);
                return Ok(());
            }
            // What a person must fix ends the waiting; what goes on by
            // itself (peers, space, the quota) is waited for.
            (ItemState::Failed, Some(problem)) if !problem.goes_on_by_itself => {
                bar.finish_and_clear();
                let failure = Failure::new(Exit::Transfer, anyhow::anyhow!("{}", problem.text));
                return Err(match &problem.hint {
                    Some(hint) => failure.with_hint(hint.clone()),
                    None => failure.with_hint(
                        "what was verified is kept: `minimodel companion resume` tries again",
                    ),
                });
            }
            _ => {}
        }
        if !out.draws_progress() && last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            show_item(&item, out);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The id of the item `name` names: its id, or its model id when one
/// item has it.
fn resolve(client: &Client, name: &str) -> Result<String, Failure> {
    let library = answer(client.library())?;
    if library.items.iter().any(|item| item.id == name) {
        return Ok(name.to_owned());
    }
    let matching: Vec<&ItemView> = library
        .items
        .iter()
        .filter(|item| item.model_id == name)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!("no item {name} in the library"),
        )
        .with_hint("`minimodel companion list` shows the items")),
        several => Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "{name} names {} items ({}); give the id",
                several.len(),
                several
                    .iter()
                    .map(|item| format!("{} {}", item.id, item.kind.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `companion pause` and `resume`.
fn set_paused(args: &ItemArgs, paused: bool, out: Output) -> Result<(), Failure> {
    let client = client(&args.library)?;
    let id = resolve(&client, &args.item)?;
    let item = answer(client.set_paused(&id, paused))?;
    show_item(&item, out);
    Ok(())
}

/// `companion remove`.
fn remove(args: &RemoveArgs, out: Output) -> Result<(), Failure> {
    let client = client(&args.item.library)?;
    let id = resolve(&client, &args.item.item)?;
    let removed = answer(client.remove(&id, args.delete_files))?;
    out.say(format!("removed {id}"));
    for file in &removed.files_removed {
        out.say(format!("  deleted {}", file.display()));
    }
    out.event(&Event::CompanionRemoved {
        id: id.clone(),
        files_removed: removed.files_removed,
        files_kept: removed.files_kept.clone(),
    });
    // Asked to delete the files and did not: a failure, though the item
    // is gone from the library.
    match removed.files_kept {
        Some(why) => Err(Failure::new(
            Exit::Transfer,
            anyhow::anyhow!("{id} is removed from the library, but its files stay: {why}"),
        )
        .with_hint("delete them by hand once nothing uses them")),
        None => Ok(()),
    }
}

/// `companion limits`.
fn limits(args: &LimitsArgs, out: Output) -> Result<(), Failure> {
    let client = client(&args.library)?;
    let mut view = answer(client.library())?.limits;
    if args.max_upload.is_some() || args.max_download.is_some() || args.quota.is_some() {
        let pick = |given: Option<Limit>, now: Option<u64>| given.map_or(now, |Limit(value)| value);
        let limits = SetLimits {
            caps: Caps {
                max_upload: pick(args.max_upload, view.caps.max_upload),
                max_download: pick(args.max_download, view.caps.max_download),
            },
            quota_bytes: pick(args.quota, view.quota.quota_bytes),
        };
        view = answer(client.set_limits(&limits))?;
    }
    let rate = |value: Option<u64>| {
        value.map_or_else(|| "none".to_owned(), |v| format!("{}/s", human_bytes(v)))
    };
    out.say(format!(
        "upload cap {}, download cap {}, quota {}; downloads take {}{}",
        rate(view.caps.max_upload),
        rate(view.caps.max_download),
        view.quota
            .quota_bytes
            .map_or_else(|| "none".to_owned(), human_bytes),
        human_bytes(view.quota.used_bytes),
        view.quota
            .free_bytes
            .map(|free| format!(", {} free on the disk", human_bytes(free)))
            .unwrap_or_default()
    ));
    out.event(&Event::CompanionLimits { limits: view });
    Ok(())
}

/// `companion log`.
fn log(args: &LogArgs, out: Output) -> Result<(), Failure> {
    let client = client(&args.library)?;
    let page = answer(client.log(args.limit))?;
    for entry in page.entries {
        let direction = serde_json::to_value(entry.direction)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let ended = serde_json::to_value(entry.ended)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.say(format!(
            "{}  {}  {}  {} {}  {}  {}{}",
            entry.at,
            entry.model_id,
            direction,
            if direction == "upload" { "to" } else { "from" },
            entry.peer_id,
            human_bytes(entry.bytes),
            ended,
            entry
                .receipt
                .as_ref()
                .map(|receipt| format!(", receipt {}", receipt.path.display()))
                .unwrap_or_default()
        ));
        out.event(&Event::CompanionLog { entry });
    }
    Ok(())
}

/// `companion stop`.
fn stop(args: &LibraryArgs, out: Output) -> Result<(), Failure> {
    let library = library_path(args)?;
    let client = Client::for_library(&library).map_err(client_failure)?;
    answer(client.shutdown())?;
    let dir = LibraryDir::open(&library).map_err(library_failure)?;
    // It removes api.json once every item stopped and the state is saved.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Endpoint::read(&dir).ok().flatten().is_some() {
        if Instant::now() > deadline {
            return Err(Failure::new(
                Exit::Transfer,
                anyhow::anyhow!("the companion did not stop within two minutes"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    out.say("the companion stopped; every item's state is saved");
    out.event(&Event::Stopped {});
    Ok(())
}
