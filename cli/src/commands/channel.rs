//! A publisher's channel on the Mainline DHT (`docs/channel.md`):
//!
//! - `minimodel publish MANIFEST --key KEY [--peer ID@ADDR]... [--withdraw
//!   SHA256 --reason-route URL]...`: reads the channel's item, names the
//!   manifest (which KEY must have signed) as its model's latest, lists
//!   the withdrawals, and puts the item at the next sequence number;
//! - `minimodel channel PUBLISHER-KEY [--model-id ID]`: reads the item,
//!   checks it against the key and the newest item seen here, and prints
//!   what it says.
//!
//! Which item counts and what to put next are decided in
//! `minimodel_verifier::channel_state`; the DHT is
//! `minimodel_swarm::dht::Discovery`. This module reads the arguments and
//! files, runs the two, and says what happened.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use minimodel_swarm::dht::{Bootstrap, ChannelPutFailure, DiscoveryConfig, channel_target};
use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::platform;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{
    Channel, ChannelItem, ChannelItemError, ChannelPeer, LastSeen, MAX_ADDRS, MAX_PEERS,
    VerifiedChannel, Withdrawal, check_item, sign_channel,
};
use minimodel_verifier::channel_state::{
    Update, UpdateError, choose_item, item_file, next_item, read_item_file,
};
use minimodel_verifier::ids::ModelId;
use minimodel_verifier::route::Route;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::manifest::check_manifest_signature;
use minimodel_wire::PeerId;

use super::dht::parse_bootstrap;
use super::network::{parse_peer, runtime};
use super::{load_manifest, write_atomically};
use crate::events::{ChannelModel, ChannelWithdrawn, Event};
use crate::exit::{Exit, Failure, OrExit};
use crate::keystore::{PublicKeyArg, read_secret_key};
use crate::output::Output;
use crate::trust::key_file_failure;

/// `--channels DIR` and `--dht-bootstrap`, shared by `publish` and
/// `channel`.
#[derive(Debug, Args)]
pub struct ChannelPlaceArgs {
    /// Where the newest item seen of each publisher's channel is kept, so
    /// that an older one is refused later [default:
    /// $XDG_DATA_HOME/minimodel/channels, else
    /// ~/.local/share/minimodel/channels].
    #[arg(long, value_name = "DIR")]
    pub channels: Option<PathBuf>,
    /// A DHT node to join through instead of the public bootstrap nodes
    /// (repeatable; a private DHT, or `minimodel dht-node`).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", value_parser = parse_bootstrap)]
    pub dht_bootstrap: Vec<SocketAddrV4>,
}

/// Arguments of `minimodel publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The manifest to name as its model's latest version; KEY must have
    /// signed it (`minimodel sign`).
    pub manifest: PathBuf,
    /// The publisher's secret key file: it signs the channel item, which
    /// is stored on the DHT under its public key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// A peer that serves this version, PEER_ID@HOST:PORT[,HOST:PORT]
    /// (repeatable, at most 4 peers of 1 or 2 addresses). They replace
    /// the peers the channel named for this model.
    #[arg(long = "peer", value_name = "PEER_ID@HOST:PORT", value_parser = parse_peer)]
    pub peers: Vec<PeerAddrs>,
    /// Withdraw a manifest: the SHA-256 of its file, 64 hex digits
    /// (repeatable; each needs a --reason-route).
    #[arg(long = "withdraw", value_name = "SHA256", value_parser = parse_sha256, requires = "reason_routes")]
    pub withdraw: Vec<Sha256Digest>,
    /// Where the reason for a withdrawal is said (an https route): one
    /// per --withdraw, in the same order.
    #[arg(long = "reason-route", value_name = "URL", value_parser = parse_route, requires = "withdraw")]
    pub reason_routes: Vec<Route>,
    #[command(flatten)]
    pub place: ChannelPlaceArgs,
}

/// Arguments of `minimodel channel`.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// The publisher's key: mmpk1..., or its public key file.
    pub publisher_key: PublicKeyArg,
    /// Show only this model.
    #[arg(long, value_name = "ID", value_parser = parse_model_id)]
    pub model_id: Option<ModelId>,
    #[command(flatten)]
    pub place: ChannelPlaceArgs,
}

/// Parses `--withdraw`: a SHA-256 in 64 lowercase hex digits.
pub fn parse_sha256(text: &str) -> Result<Sha256Digest, String> {
    text.parse()
        .map_err(|e| format!("not a SHA-256 (64 lowercase hex digits): {e}"))
}

/// Parses `--reason-route` by the route rules of manifests.
pub fn parse_route(text: &str) -> Result<Route, String> {
    Route::parse(text).map_err(|e| e.to_string())
}

/// Parses `--model-id` by the rules of manifests.
pub fn parse_model_id(text: &str) -> Result<ModelId, String> {
    ModelId::new(text).map_err(|e| e.to_string())
}

/// Pairs each `--withdraw` with its `--reason-route`, in order.
pub fn withdrawals(digests: &[Sha256Digest], routes: &[Route]) -> Result<Vec<Withdrawal>, String> {
    if digests.len() != routes.len() {
        return Err(format!(
            "{} --withdraw and {} --reason-route: give one --reason-route for each --withdraw, in the same order",
            digests.len(),
            routes.len()
        ));
    }
    Ok(digests
        .iter()
        .zip(routes)
        .map(|(digest, route)| Withdrawal {
            manifest_sha256: *digest,
            reason_route: route.clone(),
        })
        .collect())
}

/// The channel's peers from `--peer`: at most [`MAX_PEERS`], each with 1
/// to [`MAX_ADDRS`] addresses.
pub fn channel_peers(peers: &[PeerAddrs]) -> Result<Vec<ChannelPeer>, String> {
    if peers.len() > MAX_PEERS {
        return Err(format!(
            "{} --peer: a channel names at most {MAX_PEERS} peers a model",
            peers.len()
        ));
    }
    peers
        .iter()
        .map(|peer| {
            if peer.addrs.len() > MAX_ADDRS {
                return Err(format!(
                    "--peer {peer} has {} addresses; a channel gives a peer at most {MAX_ADDRS}",
                    peer.addrs.len()
                ));
            }
            Ok(ChannelPeer {
                id: *peer.id.as_bytes(),
                addrs: peer.addrs.clone(),
            })
        })
        .collect()
}

/// The DHT node of `publish` and `channel`: a client on a free port, on
/// loopback when every bootstrap node is (a test or a DHT of this
/// machine), else on every interface; the public DHT without
/// `--dht-bootstrap`.
pub fn dht_config(bootstrap: &[SocketAddrV4]) -> DiscoveryConfig {
    let all_loopback = !bootstrap.is_empty() && bootstrap.iter().all(|a| a.ip().is_loopback());
    let ip = if all_loopback {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    DiscoveryConfig {
        bind: SocketAddrV4::new(ip, 0),
        bootstrap: if bootstrap.is_empty() {
            Bootstrap::Public
        } else {
            Bootstrap::Nodes(bootstrap.to_vec())
        },
        ..DiscoveryConfig::default()
    }
}

/// The file that keeps the newest item seen of `key`'s channel.
fn item_path(dir: &Path, key: &PublicKey) -> PathBuf {
    dir.join(format!("{key}.item"))
}

/// The directory of kept items: `--channels`, or the default place.
fn channels_dir(args: &ChannelPlaceArgs) -> Result<PathBuf, Failure> {
    args.channels
        .clone()
        .or_else(|| platform::data_home().map(|data| data.join("minimodel").join("channels")))
        .ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                anyhow::anyhow!(
                    "no place to keep the channels seen: {}",
                    platform::places::data_home_variables(platform::System::CURRENT)
                ),
            )
            .with_hint("pass --channels DIR")
        })
}

/// The item kept for `key`, checked as one found on the DHT would be; a
/// file that cannot be read or does not check is invalid input (exit 3),
/// left in place.
fn kept_item(dir: &Path, key: &PublicKey) -> Result<Option<ChannelItem>, Failure> {
    let path = item_path(dir, key);
    let Some(bytes) =
        super::read_input_if_present(&path, minimodel_swarm::input::Input::CHANNEL_ITEM)?
    else {
        return Ok(None);
    };
    let damaged = |error: String| {
        Failure::new(
            Exit::InvalidInput,
            anyhow::anyhow!("{} is refused: {error}", path.display()),
        )
        .with_hint("it keeps the newest channel item seen here; delete it to forget that item")
    };
    let item = read_item_file(&bytes).map_err(|e| damaged(e.to_string()))?;
    check_item(&item, key, None).map_err(|e| damaged(e.to_string()))?;
    Ok(Some(item))
}

/// Keeps `item` as the newest seen of `key`'s channel.
fn keep_item(dir: &Path, key: &PublicKey, item: &ChannelItem) -> Result<(), Failure> {
    platform::create_private_dir(dir)
        .with_context(|| format!("cannot make {}", dir.display()))
        .or_exit(Exit::Transfer)?;
    write_atomically(&item_path(dir, key), item_file(item, key).as_bytes())
}

/// A refused channel item: exit 4, naming why.
fn refused(error: ChannelItemError, key: &PublicKey) -> Failure {
    let hint = match &error {
        ChannelItemError::Replayed { .. } => {
            "the DHT nodes asked hold an older item than one seen here; try again later or through other --dht-bootstrap nodes"
        }
        ChannelItemError::SequenceReused { .. } => {
            "the publisher signed two different items with this sequence number (published from two places, or after losing its channels directory); the one seen here first is kept, and the next item it publishes replaces both. To take the other now, delete the item kept in --channels DIR"
        }
        _ => "the item is not this publisher's channel as docs/channel.md says",
    };
    Failure::new(
        Exit::VerificationFailed,
        anyhow::Error::new(error).context(format!(
            "the channel item of key {} is refused",
            key.key_id()
        )),
    )
    .with_hint(hint)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn models_of(channel: &Channel, only: Option<&ModelId>) -> Vec<ChannelModel> {
    channel
        .models
        .iter()
        .filter(|(id, _)| only.is_none_or(|only| only == *id))
        .map(|(id, latest)| ChannelModel {
            model_id: id.to_string(),
            manifest_sha256: latest.manifest_sha256.to_hex(),
            peers: latest
                .peers
                .iter()
                .map(|peer| {
                    PeerAddrs {
                        id: PeerId(peer.id),
                        addrs: peer.addrs.clone(),
                    }
                    .to_string()
                })
                .collect(),
        })
        .collect()
}

pub fn withdrawn_of(channel: &Channel) -> Vec<ChannelWithdrawn> {
    channel
        .withdrawn
        .iter()
        .map(|w| ChannelWithdrawn {
            manifest_sha256: w.manifest_sha256.to_hex(),
            reason_route: w.reason_route.to_string(),
        })
        .collect()
}

fn say_channel(out: Output, models: &[ChannelModel], withdrawn: &[ChannelWithdrawn]) {
    for model in models {
        out.say(format!(
            "model {}: latest manifest sha256 {}",
            model.model_id, model.manifest_sha256
        ));
        for peer in &model.peers {
            out.say(format!("  peer {peer}"));
        }
    }
    for w in withdrawn {
        out.say(format!(
            "withdrawn manifest sha256 {}: reason at {}",
            w.manifest_sha256, w.reason_route
        ));
    }
}

/// Runs `minimodel publish`.
pub fn publish(args: PublishArgs, out: Output) -> Result<(), Failure> {
    let withdraw = withdrawals(&args.withdraw, &args.reason_routes)
        .map_err(|e| Failure::new(Exit::Usage, anyhow::anyhow!(e)))?;
    let peers =
        channel_peers(&args.peers).map_err(|e| Failure::new(Exit::Usage, anyhow::anyhow!(e)))?;
    let loaded = load_manifest(&args.manifest)?;
    let secret = read_secret_key(&args.key).map_err(key_file_failure)?;
    let key = secret.public_key();
    let manifest_refused = |why: String| {
        Failure::new(
            Exit::VerificationFailed,
            anyhow::anyhow!("manifest {} is refused: {why}", args.manifest.display()),
        )
    };
    match check_manifest_signature(&loaded.manifest) {
        Err(bad) => return Err(manifest_refused(bad.to_string())),
        Ok(None) => {
            return Err(manifest_refused(format!(
                "it is unsigned, and a channel names only manifests its key ({}) signed",
                key.key_id()
            ))
            .with_hint(format!(
                "sign it first: minimodel sign {} --key {}",
                args.manifest.display(),
                args.key.display()
            )));
        }
        Ok(Some(signer)) if signer != key => {
            return Err(manifest_refused(format!(
                "it is signed by key {}, not by --key's {}",
                signer.key_id(),
                key.key_id()
            )));
        }
        Ok(Some(_)) => {}
    }
    let dir = channels_dir(&args.place)?;
    let kept = kept_item(&dir, &key)?;
    let update = Update {
        model_id: loaded.manifest.model_id.clone(),
        manifest_sha256: loaded.sha256,
        peers,
        withdraw,
    };
    let target = hex(&channel_target(key.as_bytes()));
    let runtime = runtime()?;
    runtime.block_on(async {
        let node = super::dht::start(dht_config(&args.place.dht_bootstrap)).await?;
        let found = node.get_channel(key.as_bytes()).await;
        let mut items = found.clone();
        items.extend(kept);
        let current = choose_item(&items, &key, None).map_err(|e| refused(e, &key))?;
        let on_dht = current
            .as_ref()
            .is_some_and(|c| found.iter().any(|item| item.seq == c.seq()));
        let next = next_item(current.as_ref(), on_dht, &update).map_err(|error| {
            let exit = match error {
                UpdateError::SequenceExhausted => Exit::VerificationFailed,
                _ => Exit::InvalidInput,
            };
            Failure::new(exit, error)
        })?;
        let item = sign_channel(&secret, next.seq, &next.channel).or_exit(Exit::InvalidInput)?;
        let stored_at = node
            .put_channel(&item, next.cas)
            .await
            .map_err(|failure| {
                let hint = match failure {
                    ChannelPutFailure::Conflict(_) => "publish again: it reads the newer item first",
                    ChannelPutFailure::Query(_) => "check the network, or name reachable --dht-bootstrap nodes",
                };
                Failure::new(
                    Exit::Transfer,
                    anyhow::Error::new(failure).context("the channel item was not stored"),
                )
                .with_hint(hint)
            })?;
        keep_item(&dir, &key, &item)?;
        let models = models_of(&next.channel, None);
        let withdrawn = withdrawn_of(&next.channel);
        out.say(format!(
            "published the channel of key {} at sequence number {} (target {target}), stored by {stored_at} DHT nodes",
            key.key_id(),
            next.seq
        ));
        say_channel(out, &models, &withdrawn);
        out.event(&Event::ChannelPublished {
            publisher_key: key.to_string(),
            key_id: key.key_id().to_string(),
            target,
            seq: next.seq,
            cas: next.cas,
            stored_at,
            model_id: update.model_id.to_string(),
            models,
            withdrawn,
        });
        Ok(())
    })
}

/// A channel read from the DHT as `channel` reads it: the item that
/// counts, checked against the key and the newest item seen here (which
/// it replaces when newer).
pub struct ReadChannel {
    /// The item that counts, checked.
    pub channel: VerifiedChannel,
    /// The newest item seen here before this read.
    pub last: Option<LastSeen>,
    /// The DHT target, hex.
    pub target: String,
}

/// Reads `key`'s channel through the DHT `place` names, refuses an item
/// that is not the publisher's newest (exit 4, by its reason), and keeps
/// a newer one as the newest seen. `channel` and `follow` both read
/// through it.
pub fn read_channel(key: &PublicKey, place: &ChannelPlaceArgs) -> Result<ReadChannel, Failure> {
    let dir = channels_dir(place)?;
    let kept = kept_item(&dir, key)?;
    let last = kept
        .as_ref()
        .and_then(|item| check_item(item, key, None).ok())
        .map(|seen: VerifiedChannel| seen.last_seen());
    let target = hex(&channel_target(key.as_bytes()));
    let runtime = runtime()?;
    runtime.block_on(async {
        let node = super::dht::start(dht_config(&place.dht_bootstrap)).await?;
        let found = node.get_channel(key.as_bytes()).await;
        let Some(channel) = choose_item(&found, key, last).map_err(|e| refused(e, key))? else {
            return Err(Failure::new(
                Exit::Transfer,
                anyhow::anyhow!(
                    "no item of the channel of key {} was found on the DHT (target {target})",
                    key.key_id()
                ),
            )
            .with_hint("the publisher has not published, or the DHT forgot the item (BEP 44 items last about 2 hours unless stored again)"));
        };
        if last.is_none_or(|last| channel.seq() > last.seq) {
            let item = found
                .iter()
                .find(|item| item.seq == channel.seq())
                .expect("the chosen item is one found");
            keep_item(&dir, key, item)?;
        }
        Ok(ReadChannel {
            channel,
            last,
            target,
        })
    })
}

/// The channel kept here for `key` (the newest item seen, checked), without
/// asking the DHT; `None` when none is kept or it does not check.
pub fn kept_channel(place: &ChannelPlaceArgs, key: &PublicKey) -> Option<VerifiedChannel> {
    let dir = channels_dir(place).ok()?;
    let item = kept_item(&dir, key).ok()??;
    check_item(&item, key, None).ok()
}

/// Runs `minimodel channel`.
pub fn show(args: ChannelArgs, out: Output) -> Result<(), Failure> {
    let key = args.publisher_key.read()?;
    let ReadChannel {
        channel,
        last,
        target,
    } = read_channel(&key, &args.place)?;
    if let Some(model) = &args.model_id
        && !channel.channel().models.contains_key(model)
    {
        return Err(Failure::new(
            Exit::Transfer,
            anyhow::anyhow!(
                "the channel of key {} (sequence number {}) names no model {model}",
                key.key_id(),
                channel.seq()
            ),
        ));
    }
    let models = models_of(channel.channel(), args.model_id.as_ref());
    let withdrawn = withdrawn_of(channel.channel());
    out.say(format!(
        "channel of key {} (target {target}): sequence number {}{}",
        key.key_id(),
        channel.seq(),
        seen_before(last, channel.seq())
    ));
    say_channel(out, &models, &withdrawn);
    out.event(&Event::Channel {
        publisher_key: key.to_string(),
        key_id: key.key_id().to_string(),
        target,
        seq: channel.seq(),
        last_seen_seq: last.map(|last| last.seq),
        models,
        withdrawn,
    });
    Ok(())
}

/// How a read item compares with the newest seen before, in words.
pub fn seen_before(last: Option<LastSeen>, seq: i64) -> String {
    match last {
        Some(last) if last.seq == seq => " (as seen before)".to_owned(),
        Some(last) => format!(" (seen before: {})", last.seq),
        None => " (first seen now)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(n: u8) -> Route {
        Route::parse(&format!("https://example.org/takedown/{n}")).unwrap()
    }

    #[test]
    fn withdraw_takes_a_sha256_and_a_route_each() {
        let digest = "ab".repeat(32);
        assert_eq!(parse_sha256(&digest), Ok(Sha256Digest([0xab; 32])));
        for bad in [
            "",
            "ab",
            &"AB".repeat(32),
            &"ab".repeat(33),
            &"zz".repeat(32),
        ] {
            let error = parse_sha256(bad).unwrap_err();
            assert!(error.contains("not a SHA-256"), "{bad}: {error}");
        }
        assert!(parse_route("https://example.org/why").is_ok());
        for bad in [
            "",
            "not a url",
            "ftp://example.org/x",
            "https://exa mple.org/",
        ] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
        let a = Sha256Digest([1; 32]);
        let b = Sha256Digest([2; 32]);
        let paired = withdrawals(&[a, b], &[route(1), route(2)]).unwrap();
        assert_eq!(paired[1].manifest_sha256, b);
        assert_eq!(paired[1].reason_route, route(2));
        let error = withdrawals(&[a, b], &[route(1)]).unwrap_err();
        assert!(
            error.contains("2 --withdraw and 1 --reason-route"),
            "{error}"
        );
        assert!(withdrawals(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn model_ids_follow_the_manifest_rules() {
        assert!(parse_model_id("tiny").is_ok());
        for bad in ["", "has space", "Ünïcode", &"x".repeat(300)] {
            assert!(parse_model_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_channel_names_four_peers_of_two_addresses_at_most() {
        let peer = |n: u8, addrs: usize| {
            let id = PeerId([n; 32]);
            let list: Vec<String> = (0..addrs)
                .map(|i| format!("192.0.2.{n}:{}", 4000 + i))
                .collect();
            parse_peer(&format!("{id}@{}", list.join(","))).unwrap()
        };
        let four: Vec<PeerAddrs> = (1..=4).map(|n| peer(n, 2)).collect();
        let peers = channel_peers(&four).unwrap();
        assert_eq!(peers.len(), 4);
        assert_eq!(peers[0].id, [1; 32]);
        assert_eq!(peers[0].addrs.len(), 2);
        let five: Vec<PeerAddrs> = (1..=5).map(|n| peer(n, 1)).collect();
        assert!(
            channel_peers(&five)
                .unwrap_err()
                .contains("at most 4 peers")
        );
        assert!(
            channel_peers(&[peer(1, 3)])
                .unwrap_err()
                .contains("3 addresses")
        );
        assert!(parse_peer("not-a-peer").is_err());
    }

    #[test]
    fn the_dht_node_stays_on_loopback_for_a_loopback_dht() {
        let local: SocketAddrV4 = "127.0.0.1:6881".parse().unwrap();
        let remote: SocketAddrV4 = "192.0.2.1:6881".parse().unwrap();
        let config = dht_config(&[local]);
        assert_eq!(config.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.bootstrap, Bootstrap::Nodes(vec![local]));
        let config = dht_config(&[local, remote]);
        assert_eq!(config.bind, "0.0.0.0:0".parse().unwrap());
        let config = dht_config(&[]);
        assert_eq!(config.bind, "0.0.0.0:0".parse().unwrap());
        assert_eq!(config.bootstrap, Bootstrap::Public);
        assert!(config.validate().is_ok());
    }
}
