//! What a channel's reader keeps and what its publisher puts next
//! (`docs/channel.md`, "Publishing" and "Reading"), without a network:
//!
//! - [`choose_item`]: of the items a DHT lookup found (and the one this
//!   machine kept), the one that counts, or the reason none does;
//! - [`next_item`]: the channel a publisher puts next, from the one that
//!   counts and this publish's change, with its sequence number and the
//!   CAS to put it with;
//! - the file that keeps the newest item seen of a channel
//!   ([`item_file`], [`read_item_file`]), so that an older one is refused
//!   later (`LastSeen`) and a publisher whose item the DHT forgot goes on
//!   from it.

use crate::channel::{
    CHANNEL_SALT, Channel, ChannelError, ChannelItem, ChannelItemError, ChannelPeer, LastSeen,
    Latest, VerifiedChannel, Withdrawal, check_item,
};
use crate::digest::Sha256Digest;
use crate::ids::ModelId;
use crate::signing::PublicKey;
use crate::signing::lines::{Line, TextFileError, bad_value, fixed_fields, read_lines};

/// Items of one lookup considered at most; the rest is not read.
pub const MAX_ITEMS_CONSIDERED: usize = 64;

/// Whether `error` says the item is not the publisher's (a forgery, a
/// foreign or broken item) rather than the publisher's own item refused
/// for what it says or when it comes.
fn not_the_publishers(error: &ChannelItemError) -> bool {
    !matches!(
        error,
        ChannelItemError::Value(_)
            | ChannelItemError::Replayed { .. }
            | ChannelItemError::SequenceReused { .. }
    )
}

/// The item that counts among `items` (a lookup's answers and, for a
/// publisher, the item it kept), for the channel of `pinned` after `last`:
///
/// - no item: `Ok(None)`;
/// - items not signed by `pinned` over the channel's salt are left out;
///   when nothing else is left, the first one's reason is the error;
/// - of the publisher's own items, the one with the highest sequence
///   number counts (lower ones are stale copies the DHT still holds), and
///   it must then pass [`check_item`] against `last` whole: a replay, a
///   sequence number reused, or a value that is not a channel is the
///   error, naming it. Two different values at that highest number are
///   [`ChannelItemError::SequenceReused`].
///
/// Only the first [`MAX_ITEMS_CONSIDERED`] items are read.
pub fn choose_item(
    items: &[ChannelItem],
    pinned: &PublicKey,
    last: Option<LastSeen>,
) -> Result<Option<VerifiedChannel>, ChannelItemError> {
    let items = &items[..items.len().min(MAX_ITEMS_CONSIDERED)];
    let mut first_refusal = None;
    let mut newest: Option<&ChannelItem> = None;
    for item in items {
        match check_item(item, pinned, None) {
            Err(error) if not_the_publishers(&error) => {
                first_refusal.get_or_insert(error);
            }
            _ => match newest {
                Some(known) if known.seq > item.seq => {}
                Some(known) if known.seq == item.seq && known.value != item.value => {
                    return Err(ChannelItemError::SequenceReused { seq: item.seq });
                }
                _ => newest = Some(item),
            },
        }
    }
    match (newest, first_refusal) {
        (Some(item), _) => check_item(item, pinned, last).map(Some),
        (None, Some(error)) => Err(error),
        (None, None) => Ok(None),
    }
}

/// What one `publish` changes: the model's latest manifest and its peers,
/// and manifests to list as withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The model published.
    pub model_id: ModelId,
    /// SHA-256 of its manifest file.
    pub manifest_sha256: Sha256Digest,
    /// The peers that serve it (they replace the model's peers). None
    /// given for the manifest the model already names: its peers are
    /// kept (a withdrawal alone changes nothing else); none at all is
    /// refused ([`UpdateError::NoPeers`]).
    pub peers: Vec<ChannelPeer>,
    /// Manifests to withdraw; one already listed keeps its place and takes
    /// the new reason route.
    pub withdraw: Vec<Withdrawal>,
}

/// The next item's content: the channel, its sequence number and the CAS
/// to put it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    /// The channel to sign.
    pub channel: Channel,
    /// Its sequence number: one above the current one (1 for a new
    /// channel).
    pub seq: i64,
    /// The sequence number the DHT nodes must hold for the put to replace
    /// it (BEP 44 `cas`): the current one when it came from the DHT; none
    /// for a new channel or one the DHT no longer holds.
    pub cas: Option<i64>,
}

/// Why the next channel cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The manifest published is among the withdrawn ones (listed before,
    /// or withdrawn by this very update).
    #[error(
        "manifest {0} is withdrawn in this channel; a withdrawn manifest is not published again"
    )]
    PublishingWithdrawn(Sha256Digest),
    /// The manifest published is the one this very update withdraws (it
    /// was not withdrawn before): the latest version is withdrawn by
    /// publishing the one that replaces it.
    #[error(
        "manifest {0} is both published and withdrawn by this update; to withdraw the latest version, publish the version that replaces it (the one before, or a new one) with --withdraw {0}"
    )]
    WithdrawingPublished(Sha256Digest),
    /// The model would be named with no peer: followers fetch a version
    /// only from the peers the channel names.
    #[error(
        "the channel would name no peer for {0}: followers fetch a version only from the peers the channel names; name at least one with --peer ID@ADDR"
    )]
    NoPeers(ModelId),
    /// The sequence number cannot go higher.
    #[error("the channel's sequence number is at its maximum")]
    SequenceExhausted,
    /// The new channel breaks a limit (too many peers, over 996 bytes).
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// The channel a publisher puts next: `current` (the item that counts,
/// [`choose_item`]; `None` for a new channel, an empty one at sequence
/// number 0) with `update` applied, at the next sequence number.
/// `current_on_dht` says whether the DHT holds `current` (it then is the
/// put's CAS). The new channel is encoded once here, so one over the
/// limits is refused before anything is signed or sent.
pub fn next_item(
    current: Option<&VerifiedChannel>,
    current_on_dht: bool,
    update: &Update,
) -> Result<Next, UpdateError> {
    let mut channel = current.map(|c| c.channel().clone()).unwrap_or_default();
    if (channel.withdrawn.iter()).any(|w| w.manifest_sha256 == update.manifest_sha256) {
        return Err(UpdateError::PublishingWithdrawn(update.manifest_sha256));
    }
    for withdrawal in &update.withdraw {
        match channel
            .withdrawn
            .iter_mut()
            .find(|w| w.manifest_sha256 == withdrawal.manifest_sha256)
        {
            Some(listed) => listed.reason_route = withdrawal.reason_route.clone(),
            None => channel.withdrawn.push(withdrawal.clone()),
        }
    }
    if channel
        .withdrawn
        .iter()
        .any(|w| w.manifest_sha256 == update.manifest_sha256)
    {
        return Err(UpdateError::WithdrawingPublished(update.manifest_sha256));
    }
    // No peer named for the version the model names already: its peers
    // stay (a withdrawal alone must not leave new followers with none).
    let peers = match channel.models.get(&update.model_id) {
        Some(latest)
            if update.peers.is_empty() && latest.manifest_sha256 == update.manifest_sha256 =>
        {
            latest.peers.clone()
        }
        _ => update.peers.clone(),
    };
    if peers.is_empty() {
        return Err(UpdateError::NoPeers(update.model_id.clone()));
    }
    channel.models.insert(
        update.model_id.clone(),
        Latest {
            manifest_sha256: update.manifest_sha256,
            peers,
        },
    );
    channel.encode()?;
    let current_seq = current.map_or(0, VerifiedChannel::seq);
    let seq = current_seq
        .checked_add(1)
        .ok_or(UpdateError::SequenceExhausted)?;
    Ok(Next {
        channel,
        seq,
        cas: current.filter(|_| current_on_dht).map(VerifiedChannel::seq),
    })
}

/// The `format` of the file that keeps a channel's newest item seen.
pub const ITEM_FILE_FORMAT: &str = "minimodel-channel-item-v1";
/// Largest item file read: a 1,000-byte value is 2,000 hex digits, the
/// rest is room for the other lines and comments.
pub const MAX_ITEM_FILE_LEN: usize = 4096;

/// The text of the file that keeps `item` (the channel's salt implied).
pub fn item_file(item: &ChannelItem, key: &PublicKey) -> String {
    format!(
        "# minimodel: the newest item of this publisher's channel seen here (docs/channel.md).\n\
         # An older item is refused after it; delete this file to forget it.\n\
         format: {ITEM_FILE_FORMAT}\n\
         public-key: {key}\n\
         seq: {}\n\
         value: {}\n\
         signature: {}\n",
        item.seq,
        hex(&item.value),
        hex(&item.signature),
    )
}

/// Reads an item file ([`item_file`]). The item it gives is as trusted as
/// any found on the DHT: it goes through [`check_item`] before use.
pub fn read_item_file(bytes: &[u8]) -> Result<ChannelItem, TextFileError> {
    let lines: Vec<Line<'_>> = read_lines(bytes, MAX_ITEM_FILE_LEN, ITEM_FILE_FORMAT)?;
    let [
        (key_line, key),
        (seq_line, seq),
        (value_line, value),
        (signature_line, signature),
    ] = fixed_fields(
        &lines,
        ITEM_FILE_FORMAT,
        ["public-key", "seq", "value", "signature"],
    )?;
    let key: PublicKey = key
        .parse()
        .map_err(|e| bad_value(key_line, "public-key", e))?;
    let seq: i64 = (seq.bytes().all(|b| b.is_ascii_digit())
        && (seq == "0" || !seq.starts_with('0')))
    .then(|| seq.parse().ok())
    .flatten()
    .ok_or_else(|| {
        bad_value(
            seq_line,
            "seq",
            "a sequence number is 0 or more, in decimal, without leading zeros",
        )
    })?;
    let value = unhex(value).ok_or_else(|| bad_value(value_line, "value", "not lowercase hex"))?;
    if value.len() > crate::channel::MAX_VALUE_BYTES {
        return Err(bad_value(
            value_line,
            "value",
            format!(
                "{} bytes; BEP 44 allows {}",
                value.len(),
                crate::channel::MAX_VALUE_BYTES
            ),
        ));
    }
    let signature: [u8; 64] = unhex(signature)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            bad_value(
                signature_line,
                "signature",
                "a signature is 64 bytes in lowercase hex",
            )
        })?;
    Ok(ChannelItem {
        key: *key.as_bytes(),
        seq,
        value,
        signature,
        salt: CHANNEL_SALT.to_vec(),
    })
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{ChannelItemError, sign_channel};
    use crate::route::Route;
    use crate::signing::SecretKey;

    fn secret(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn digest(n: u8) -> Sha256Digest {
        Sha256Digest([n; 32])
    }

    fn model(id: &str) -> ModelId {
        ModelId::new(id).unwrap()
    }

    fn peer(n: u8) -> ChannelPeer {
        ChannelPeer {
            id: [n; 32],
            addrs: vec![format!("192.0.2.{n}:4433").parse().unwrap()],
        }
    }

    fn withdrawal(n: u8) -> Withdrawal {
        Withdrawal {
            manifest_sha256: digest(n),
            reason_route: Route::parse(&format!("https://example.org/takedown/{n}")).unwrap(),
        }
    }

    fn update(id: &str, n: u8) -> Update {
        Update {
            model_id: model(id),
            manifest_sha256: digest(n),
            peers: vec![peer(n)],
            withdraw: Vec::new(),
        }
    }

    fn item(key: &SecretKey, seq: i64, models: &[(&str, u8)]) -> ChannelItem {
        let mut channel = Channel::default();
        for (id, n) in models {
            channel.models.insert(
                model(id),
                Latest {
                    manifest_sha256: digest(*n),
                    peers: Vec::new(),
                },
            );
        }
        sign_channel(key, seq, &channel).unwrap()
    }

    #[test]
    fn the_newest_of_the_publishers_items_counts() {
        let key = secret(1);
        let pinned = key.public_key();
        assert_eq!(choose_item(&[], &pinned, None), Ok(None));
        let old = item(&key, 1, &[("tiny", 1)]);
        let new = item(&key, 2, &[("tiny", 2)]);
        for items in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
            let chosen = choose_item(&items, &pinned, None).unwrap().unwrap();
            assert_eq!(chosen.seq(), 2);
            assert_eq!(
                chosen.channel().models[&model("tiny")].manifest_sha256,
                digest(2)
            );
        }
        // The same item twice (two DHT nodes) is one item.
        let chosen = choose_item(&[new.clone(), new.clone()], &pinned, None).unwrap();
        assert_eq!(chosen.unwrap().seq(), 2);
    }

    #[test]
    fn forged_items_are_left_out_and_named_when_nothing_else_is_found() {
        let key = secret(1);
        let pinned = key.public_key();
        let other = item(&secret(2), 9, &[("tiny", 9)]);
        let mut forged = item(&key, 9, &[("tiny", 9)]);
        forged.signature = other.signature;
        let good = item(&key, 1, &[("tiny", 1)]);
        // A forgery with a higher sequence number does not hide the
        // publisher's item.
        let chosen = choose_item(&[forged.clone(), other.clone(), good], &pinned, None);
        assert_eq!(chosen.unwrap().unwrap().seq(), 1);
        assert!(matches!(
            choose_item(std::slice::from_ref(&other), &pinned, None),
            Err(ChannelItemError::WrongKey { .. })
        ));
        assert_eq!(
            choose_item(&[forged], &pinned, None),
            Err(ChannelItemError::BadSignature)
        );
    }

    #[test]
    fn an_older_item_after_a_newer_one_is_a_replay() {
        let key = secret(1);
        let pinned = key.public_key();
        let new = check_item(&item(&key, 3, &[("tiny", 3)]), &pinned, None).unwrap();
        let old = item(&key, 1, &[("tiny", 1)]);
        assert_eq!(
            choose_item(&[old], &pinned, Some(new.last_seen())),
            Err(ChannelItemError::Replayed {
                seq: 1,
                last_seen: 3
            })
        );
        let reused = item(&key, 3, &[("tiny", 4)]);
        assert_eq!(
            choose_item(&[reused], &pinned, Some(new.last_seen())),
            Err(ChannelItemError::SequenceReused { seq: 3 })
        );
        // Two values at the highest sequence number: the publisher reused it.
        let a = item(&key, 5, &[("tiny", 5)]);
        let b = item(&key, 5, &[("tiny", 6)]);
        assert_eq!(
            choose_item(&[a, b], &pinned, None),
            Err(ChannelItemError::SequenceReused { seq: 5 })
        );
    }

    #[test]
    fn the_publishers_item_that_is_not_a_channel_is_named() {
        let key = secret(1);
        let pinned = key.public_key();
        let signature = key.sign_raw(&crate::channel::signable(CHANNEL_SALT, 4, b"5:hello"));
        let junk = ChannelItem {
            key: *pinned.as_bytes(),
            seq: 4,
            value: b"5:hello".to_vec(),
            signature: signature.0,
            salt: CHANNEL_SALT.to_vec(),
        };
        let good = item(&key, 1, &[("tiny", 1)]);
        assert!(matches!(
            choose_item(&[good, junk], &pinned, None),
            Err(ChannelItemError::Value(ChannelError::Malformed { .. }))
        ));
    }

    #[test]
    fn only_the_first_items_of_a_flood_are_read() {
        let key = secret(1);
        let pinned = key.public_key();
        let forged = item(&secret(2), 1, &[]);
        let mut items = vec![forged; MAX_ITEMS_CONSIDERED];
        items.push(item(&key, 1, &[]));
        assert!(matches!(
            choose_item(&items, &pinned, None),
            Err(ChannelItemError::WrongKey { .. })
        ));
    }

    #[test]
    fn a_new_channel_starts_at_one_without_cas() {
        let next = next_item(None, false, &update("tiny", 1)).unwrap();
        assert_eq!(next.seq, 1);
        assert_eq!(next.cas, None);
        assert_eq!(next.channel.models.len(), 1);
        assert_eq!(next.channel.models[&model("tiny")].peers, vec![peer(1)]);
        assert!(next.channel.withdrawn.is_empty());
    }

    #[test]
    fn publishing_replaces_the_models_latest_and_keeps_the_others() {
        let key = secret(1);
        let pinned = key.public_key();
        let current =
            check_item(&item(&key, 6, &[("tiny", 1), ("other", 7)]), &pinned, None).unwrap();
        let next = next_item(Some(&current), true, &update("tiny", 2)).unwrap();
        assert_eq!(next.seq, 7);
        assert_eq!(next.cas, Some(6));
        let tiny = &next.channel.models[&model("tiny")];
        assert_eq!(tiny.manifest_sha256, digest(2));
        assert_eq!(tiny.peers, vec![peer(2)]);
        assert_eq!(
            next.channel.models[&model("other")].manifest_sha256,
            digest(7)
        );
        // Kept on this machine only: no CAS, the DHT holds something else.
        let next = next_item(Some(&current), false, &update("tiny", 2)).unwrap();
        assert_eq!((next.seq, next.cas), (7, None));
    }

    #[test]
    fn withdrawals_are_added_once_and_a_withdrawn_manifest_is_not_published() {
        let mut first = update("tiny", 2);
        first.withdraw = vec![withdrawal(1)];
        let next = next_item(None, false, &first).unwrap();
        assert_eq!(next.channel.withdrawn, vec![withdrawal(1)]);
        let current = check_item(
            &sign_channel(&secret(1), next.seq, &next.channel).unwrap(),
            &secret(1).public_key(),
            None,
        )
        .unwrap();
        let mut again = update("tiny", 2);
        let mut new_reason = withdrawal(1);
        new_reason.reason_route = Route::parse("https://example.org/notice").unwrap();
        again.withdraw = vec![new_reason.clone(), withdrawal(3)];
        let next = next_item(Some(&current), true, &again).unwrap();
        assert_eq!(next.channel.withdrawn, vec![new_reason, withdrawal(3)]);

        assert_eq!(
            next_item(Some(&current), true, &update("tiny", 1)),
            Err(UpdateError::PublishingWithdrawn(digest(1)))
        );
        let mut itself = update("tiny", 4);
        itself.withdraw = vec![withdrawal(4)];
        let refused = next_item(None, false, &itself);
        assert_eq!(refused, Err(UpdateError::WithdrawingPublished(digest(4))));
        // Its words do not call it withdrawn already, and say what to do.
        let words = refused.unwrap_err().to_string();
        assert!(
            words.contains("both published and withdrawn by this update")
                && words.contains("publish the version that replaces it"),
            "{words}"
        );
    }

    #[test]
    fn a_withdrawal_without_peers_keeps_the_peers_of_the_version_named() {
        let next = next_item(None, false, &update("tiny", 2)).unwrap();
        let current = check_item(
            &sign_channel(&secret(1), next.seq, &next.channel).unwrap(),
            &secret(1).public_key(),
            None,
        )
        .unwrap();
        // The same version, no --peer, one withdrawal: the peers stay.
        let mut withdraw_only = update("tiny", 2);
        withdraw_only.peers.clear();
        withdraw_only.withdraw = vec![withdrawal(1)];
        let next = next_item(Some(&current), true, &withdraw_only).unwrap();
        assert_eq!(next.channel.models[&model("tiny")].peers, vec![peer(2)]);
        // A new version's peers are the ones given: none is refused, as
        // no follower could fetch it.
        let mut new_version = update("tiny", 3);
        new_version.peers.clear();
        assert_eq!(
            next_item(Some(&current), true, &new_version),
            Err(UpdateError::NoPeers(model("tiny")))
        );
    }

    #[test]
    fn a_channel_over_its_limits_is_refused_before_signing() {
        let mut crowded = update("tiny", 1);
        crowded.peers = (1..=5).map(peer).collect();
        assert!(matches!(
            next_item(None, false, &crowded),
            Err(UpdateError::Channel(ChannelError::Invalid {
                field: "peers",
                ..
            }))
        ));
        let mut current = None;
        let mut last = Err(UpdateError::SequenceExhausted);
        for n in 0..40u8 {
            last = next_item(current.as_ref(), false, &update(&format!("model{n:02}"), n));
            match &last {
                Ok(next) => {
                    let signed = sign_channel(&secret(1), next.seq, &next.channel).unwrap();
                    current = Some(check_item(&signed, &secret(1).public_key(), None).unwrap());
                }
                Err(_) => break,
            }
        }
        assert!(
            matches!(
                last,
                Err(UpdateError::Channel(ChannelError::TooLarge { .. }))
            ),
            "{last:?}"
        );
    }

    #[test]
    fn the_sequence_number_does_not_wrap() {
        let key = secret(1);
        let current = check_item(&item(&key, i64::MAX, &[]), &key.public_key(), None).unwrap();
        assert_eq!(
            next_item(Some(&current), true, &update("tiny", 1)),
            Err(UpdateError::SequenceExhausted)
        );
    }

    #[test]
    fn an_item_file_reads_back_the_item_it_keeps() {
        let key = secret(1);
        let kept = item(&key, 12, &[("tiny", 1)]);
        let text = item_file(&kept, &key.public_key());
        assert_eq!(read_item_file(text.as_bytes()), Ok(kept));
    }

    #[test]
    fn a_damaged_item_file_is_refused_naming_its_line() {
        let key = secret(1);
        let text = item_file(&item(&key, 12, &[("tiny", 1)]), &key.public_key());
        let refused = |text: String| read_item_file(text.as_bytes()).unwrap_err().to_string();
        let line_of = |key: &str| {
            text.lines()
                .find(|line| line.starts_with(key))
                .unwrap()
                .to_owned()
        };
        for (from, to, says) in [
            ("seq: 12", "seq: 012", "seq"),
            ("seq: 12", "seq: -1", "seq"),
            ("seq: 12", "seq: 99999999999999999999", "seq"),
            (line_of("value: ").as_str(), "value: 6g", "value"),
            (line_of("value: ").as_str(), "value: ABCD", "value"),
            (
                line_of("signature: ").as_str(),
                "signature: 00",
                "signature",
            ),
            (
                line_of("public-key: ").as_str(),
                "public-key: mmpk1",
                "public-key",
            ),
        ] {
            let error = refused(text.replace(from, to));
            assert!(error.contains(says), "{to}: {error}");
            assert!(error.starts_with("line "), "{to}: {error}");
        }
        let long = format!("value: {}", "00".repeat(1001));
        assert!(refused(text.replace(&line_of("value: "), &long)).contains("1001 bytes"));
        assert!(refused(text.replace("seq: 12\n", "")).contains("seq"));
        assert!(refused(text.replace("seq: 12", "seq: 12\nseq: 13")).contains("seq"));
        assert!(refused(text.replace("seq: 12", "extra: 1")).contains("extra"));
        assert!(
            refused(text.replace(ITEM_FILE_FORMAT, "minimodel-channel-item-v2")).contains("v2")
        );
        assert!(refused(String::new()).contains("format"));
        assert!(refused("x".repeat(MAX_ITEM_FILE_LEN + 1)).contains("larger"));
    }
}
