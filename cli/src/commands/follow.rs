//! `minimodel follow PUBLISHER-KEY --model-id ID -o DIR [--yes]`: one
//! round of following a publisher's channel (`docs/channel.md`,
//! "Following"). A scheduler (cron, a systemd timer, the companion) runs
//! the rounds.
//!
//! A round reads the channel exactly as `minimodel channel` does
//! ([`super::channel::read_channel`]), decides in [`plan_round`] what to
//! do given what DIR holds, and, when the model's latest version is not
//! here yet, fetches it as a ticket is fetched: the manifest from the
//! peers the channel names, its SHA-256 and its signature by the followed
//! key checked before anything else, then the artifact, the chunks the
//! versions already in DIR share copied locally first.
//!
//! Layout: each version in its own directory, `DIR/<manifest sha256>/`,
//! holding `<model-id>.slm` and its receipt as `fetch` leaves them. An
//! older version stays where it is; nothing is ever deleted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::ticket::Ticket;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{ChannelPeer, Withdrawal};
pub use minimodel_verifier::follow::{Held, Next, plan_round};
use minimodel_verifier::ids::ModelId;
use minimodel_verifier::receipt::{ImportReceipt, RECEIPT_FORMAT};
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::manifest::check_manifest_signature;
use minimodel_wire::PeerId;

use super::channel::{ChannelPlaceArgs, ReadChannel, parse_model_id, read_channel, seen_before};
use super::fetch::{TransferArgs, manifest_from_ticket, transfer};
use super::network::Congestion;
use crate::events::Event;
use crate::exit::{Exit, Failure};
use crate::keystore::PublicKeyArg;
use crate::output::Output;
use crate::trust::TrustArgs;
use crate::units::{parse_duration, parse_peer_count};

/// Arguments of `minimodel follow`.
#[derive(Debug, Args)]
#[command(
    after_help = "One run is one round; run it from cron or a timer. Exit codes: 0 up to \
date, or the new version fetched and verified; 1 no channel item found, no such model, no peer \
named, or a transfer failure; 3 the latest version is withdrawn (its reason route said), or \
invalid input; 4 a refused channel item (another key, a replay) or a manifest the followed key \
did not sign; 5 consent not given."
)]
pub struct FollowArgs {
    /// The publisher's key, mmpk1... or its public key file: the channel
    /// item and every manifest fetched must be signed by it.
    pub publisher_key: PublicKeyArg,
    /// The model to follow.
    #[arg(long, value_name = "ID", value_parser = parse_model_id)]
    pub model_id: ModelId,
    /// Directory of the followed versions: each in DIR/<manifest sha256>/.
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Serve verified chunks of the new version to other peers while
    /// downloading it.
    #[arg(long)]
    pub serve: bool,
    /// With --serve: where to listen. `[::]:PORT` serves IPv4 and IPv6.
    #[arg(long, default_value = "0.0.0.0:0", requires = "serve")]
    pub listen: SocketAddr,
    /// With --serve: do not ask this network's router to open the
    /// listening port.
    #[arg(long)]
    pub no_port_mapping: bool,
    /// Directory that keeps this peer's key, so it keeps its id across runs.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Most peers connected at once.
    #[arg(long, default_value_t = minimodel_swarm::node::CoreConfig::default().max_peers, value_parser = parse_peer_count)]
    pub max_peers: usize,
    /// Give up after this long with nothing verified, like 30s, 5min.
    /// Default 5min.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub give_up_after: Option<Duration>,
    /// The keyring of pinned publisher keys [default:
    /// $XDG_DATA_HOME/minimodel/keyring, else
    /// ~/.local/share/minimodel/keyring].
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// A copy of the model's latest version on a web server
    /// (repeatable; `fetch --mirror`): chunks from it are checked like a
    /// peer's, and its chunk list (`URL.chunk-list`) is read for reusing
    /// the versions here when the manifest names no chunk-list-route or
    /// it cannot be read there (without either, the chunk list is asked
    /// of the publisher's peers).
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Consent to fetching a new version (and, with --serve, to serving
    /// it while fetching; and to pinning the key seen for the first time).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub place: ChannelPlaceArgs,
}

/// The directory of the version whose manifest hashes to `digest`.
pub fn version_dir(out: &Path, digest: &Sha256Digest) -> PathBuf {
    out.join(digest.to_hex())
}

/// The most version directories looked at in DIR.
const MAX_VERSIONS: usize = 1024;

/// The versions of `model` in `out`: directories (not links) named by a
/// manifest SHA-256. A receipt of that manifest and model beside a
/// `<model-id>.slm` regular file makes one delivered.
fn held_versions(out: &Path, model: &ModelId) -> Result<Vec<Held>, Failure> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            let exit = if out.exists() && !out.is_dir() {
                Exit::InvalidInput
            } else {
                Exit::Transfer
            };
            return Err(Failure::new(
                exit,
                anyhow::Error::new(error).context(format!("cannot read {}", out.display())),
            ));
        }
    };
    let mut held = Vec::new();
    for entry in entries.flatten().take(MAX_VERSIONS) {
        let Ok(digest) = entry.file_name().to_string_lossy().parse::<Sha256Digest>() else {
            continue;
        };
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        held.push(Held {
            manifest_sha256: digest,
            delivered: delivered(&entry.path(), model, &digest)?,
        });
    }
    held.sort_by_key(|h| h.manifest_sha256.to_hex());
    Ok(held)
}

/// Whether `dir` holds `model` delivered from the manifest `digest`. A
/// receipt that cannot be one (over a receipt's limit, a FIFO, a device)
/// is refused unread, as any named file is: whoever can write into DIR
/// may have planted it (exit 3).
fn delivered(dir: &Path, model: &ModelId, digest: &Sha256Digest) -> Result<bool, Failure> {
    let regular = |path: PathBuf| {
        std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file())
    };
    let receipt_path = dir.join(format!("{model}.receipt.json"));
    if !regular(dir.join(format!("{model}.slm"))) || !regular(receipt_path.clone()) {
        return Ok(false);
    }
    let Some(bytes) =
        super::read_input_if_present(&receipt_path, minimodel_swarm::input::Input::RECEIPT)?
    else {
        return Ok(false);
    };
    Ok(
        serde_json::from_slice::<ImportReceipt>(&bytes).is_ok_and(|receipt| {
            receipt.format == RECEIPT_FORMAT
                && receipt.manifest_sha256 == *digest
                && receipt.model_id == *model
        }),
    )
}

/// Says each withdrawn version here, with where its reason is.
fn say_withdrawn(out: Output, dir: &Path, withdrawn: &[Withdrawal]) {
    for w in withdrawn {
        let here = version_dir(dir, &w.manifest_sha256);
        out.say(format!(
            "version {} in {} is withdrawn by its publisher: reason at {}; follow does not serve it, and nothing was deleted",
            w.manifest_sha256.to_hex(),
            here.display(),
            w.reason_route
        ));
        out.event(&Event::WithdrawnHere {
            manifest_sha256: w.manifest_sha256.to_hex(),
            dir: here,
            reason_route: w.reason_route.to_string(),
        });
    }
}

/// Runs one round of `minimodel follow`.
pub fn run(args: FollowArgs, out: Output) -> Result<(), Failure> {
    let key = args.publisher_key.read()?;
    // What this machine holds is read before any lookup: a keyring or a
    // receipt in DIR that cannot be one is said at once (exit 3).
    crate::keystore::KeyringFile::load(args.keyring.as_deref())
        .map_err(crate::trust::key_file_failure)?;
    let held = held_versions(&args.out, &args.model_id)?;
    let ReadChannel {
        channel,
        last,
        target,
    } = read_channel(&key, &args.place)?;
    out.say(format!(
        "channel of key {} (target {target}): sequence number {}{}",
        key.key_id(),
        channel.seq(),
        seen_before(last, channel.seq())
    ));
    out.event(&Event::Channel {
        publisher_key: key.to_string(),
        key_id: key.key_id().to_string(),
        target,
        seq: channel.seq(),
        last_seen_seq: last.map(|last| last.seq),
        models: super::channel::models_of(channel.channel(), Some(&args.model_id)),
        withdrawn: super::channel::withdrawn_of(channel.channel()),
    });
    let round = plan_round(channel.channel(), &args.model_id, &held);
    say_withdrawn(out, &args.out, &round.withdrawn_here);
    match round.next {
        Next::NoSuchModel => Err(Failure::new(
            Exit::Transfer,
            anyhow::anyhow!(
                "the channel of key {} (sequence number {}) names no model {}",
                key.key_id(),
                channel.seq(),
                args.model_id
            ),
        )),
        Next::LatestWithdrawn(w) => Err(Failure::new(
            Exit::InvalidInput,
            anyhow::anyhow!(
                "the latest version of {} (manifest sha256 {}) is withdrawn by its publisher: reason at {}; nothing was fetched",
                args.model_id,
                w.manifest_sha256.to_hex(),
                w.reason_route
            ),
        )),
        Next::UpToDate(digest) => {
            let dir = version_dir(&args.out, &digest);
            out.say(format!(
                "up to date: {} holds the latest version of {} (manifest sha256 {}), delivered and verified (its receipt says when)",
                dir.display(),
                args.model_id,
                digest.to_hex()
            ));
            out.event(&Event::UpToDate {
                model_id: args.model_id.to_string(),
                manifest_sha256: digest.to_hex(),
                dir,
            });
            Ok(())
        }
        Next::NoPeers(digest) => Err(Failure::new(
            Exit::Transfer,
            anyhow::anyhow!(
                "the channel names the latest version of {} (manifest sha256 {}) but no peer that serves it",
                args.model_id,
                digest.to_hex()
            ),
        )
        .with_hint("try again later: the publisher names its peers when it publishes")),
        Next::Fetch {
            manifest_sha256,
            peers,
            reuse,
        } => fetch_version(&args, &key, manifest_sha256, &peers, &reuse, out),
    }
}

/// Fetches the version `digest` from `peers` into its directory, as a
/// ticket that names `key` is fetched, reusing the versions `reuse` here.
fn fetch_version(
    args: &FollowArgs,
    key: &PublicKey,
    digest: Sha256Digest,
    peers: &[ChannelPeer],
    reuse: &[Sha256Digest],
    out: Output,
) -> Result<(), Failure> {
    let peers: Vec<PeerAddrs> = peers
        .iter()
        .map(|peer| PeerAddrs {
            id: PeerId(peer.id),
            addrs: peer.addrs.clone(),
        })
        .collect();
    let ticket = Ticket {
        manifest_sha256: digest,
        key_id: Some(key.key_id()),
        peers: peers.clone(),
        relays: Vec::new(),
        mirrors: Vec::new(),
    };
    let mut transfer_args = transfer_args(args, key);
    // The manifest from the channel's peers, its SHA-256 checked, then its
    // signature: by this very key, before anything else.
    let loaded = manifest_from_ticket(&ticket, &transfer_args, out)?;
    match check_manifest_signature(&loaded.manifest) {
        Ok(Some(signer)) if signer == *key => {}
        Ok(Some(signer)) => {
            return Err(not_signed(format!(
                "it is signed by key {}, not by the followed key {}",
                signer.key_id(),
                key.key_id()
            )));
        }
        Ok(None) => return Err(not_signed("it is unsigned".to_owned())),
        Err(bad) => return Err(not_signed(bad.to_string())),
    }
    if loaded.manifest.model_id != args.model_id {
        return Err(Failure::new(
            Exit::InvalidInput,
            anyhow::anyhow!(
                "the manifest the channel names for {} is of model {}; nothing was fetched",
                args.model_id,
                loaded.manifest.model_id
            ),
        ));
    }
    let judged = crate::trust::check(
        &loaded,
        Path::new("(from the channel)"),
        &transfer_args.trust,
    )?;
    // Only what changed moves: the download reads the new chunk list
    // ahead (`DownloadPlan::read_chunk_list_ahead`), which says which
    // chunks of the older versions here to copy.
    transfer_args.reuse = reuse
        .iter()
        .map(|d| version_dir(&args.out, d).join(format!("{}.slm", args.model_id)))
        .collect();
    std::fs::create_dir_all(&args.out).map_err(|e| {
        Failure::new(
            Exit::Transfer,
            anyhow::Error::new(e).context(format!("cannot make {}", args.out.display())),
        )
    })?;
    out.say(format!(
        "new version of {}: manifest sha256 {}, into {}",
        args.model_id,
        digest.to_hex(),
        version_dir(&args.out, &digest).display()
    ));
    transfer(
        &loaded,
        judged,
        peers,
        Vec::new(),
        version_dir(&args.out, &digest),
        &transfer_args,
        out,
    )
}

fn not_signed(why: String) -> Failure {
    Failure::new(
        Exit::VerificationFailed,
        anyhow::anyhow!(
            "the manifest the channel names is refused: {why}; a follow fetches only what the followed key signed, and nothing was fetched"
        ),
    )
}

/// What `fetch` would be given for this round.
fn transfer_args(args: &FollowArgs, key: &PublicKey) -> TransferArgs {
    TransferArgs {
        serve: args.serve,
        listen: args.listen,
        public_addrs: Vec::new(),
        seed_after: false,
        no_port_mapping: args.no_port_mapping,
        lan: false,
        identity: args.identity.clone(),
        max_peers: args.max_peers,
        max_upload: None,
        congestion: Congestion::Delay,
        dht: false,
        dht_bootstrap: Vec::new(),
        give_up_after: args.give_up_after,
        max_download: None,
        metrics: None,
        recheck: false,
        relays: Vec::new(),
        mirrors: args.mirrors.clone(),
        allow_plain_http_mirror: false,
        reuse: Vec::new(),
        chunk_list: None,
        yes: args.yes,
        trust: TrustArgs {
            publisher_key: Some(
                key.to_string()
                    .parse()
                    .unwrap_or_else(|never| match never {}),
            ),
            require_signature: true,
            keyring: args.keyring.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Sha256Digest {
        Sha256Digest([n; 32])
    }

    fn model() -> ModelId {
        ModelId::new("tiny").unwrap()
    }

    fn held(n: u8, delivered: bool) -> Held {
        Held {
            manifest_sha256: digest(n),
            delivered,
        }
    }

    #[test]
    fn a_version_is_delivered_only_with_a_receipt_of_its_own_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert!(
            held_versions(&out.join("missing"), &model())
                .unwrap()
                .is_empty()
        );
        std::fs::create_dir(version_dir(out, &digest(1))).unwrap();
        std::fs::create_dir(out.join("not-a-digest")).unwrap();
        std::fs::write(out.join(digest(2).to_hex()), b"a file").unwrap();
        let found = held_versions(out, &model()).unwrap();
        assert_eq!(found, vec![held(1, false)]);
        // A .slm with a receipt that is not a receipt is not delivered.
        let v1 = version_dir(out, &digest(1));
        std::fs::write(v1.join("tiny.slm"), b"x").unwrap();
        std::fs::write(v1.join("tiny.receipt.json"), b"{}").unwrap();
        assert!(!delivered(&v1, &model(), &digest(1)).unwrap());
        // A planted sparse file of gigabytes under the receipt's name is
        // refused by its size, unread (exit 3).
        let planted = std::fs::File::create(v1.join("tiny.receipt.json")).unwrap();
        planted.set_len(3 << 30).unwrap();
        let refused = delivered(&v1, &model(), &digest(1)).unwrap_err();
        assert_eq!(refused.exit, Exit::InvalidInput, "{refused:?}");
        assert!(
            format!("{:#}", refused.error).contains("larger than"),
            "{refused:?}"
        );
    }
}
