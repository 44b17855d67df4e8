//! A publisher's channel on the DHT (`docs/channel.md`): the thin part
//! that gets and puts its BEP 44 mutable item through the `mainline`
//! crate. Which item counts, and what to put next, is decided in
//! `minimodel_verifier::channel_state`, without a network.

use futures_lite::StreamExt;
use mainline::MutableItem;
use mainline::errors::{ConcurrencyError, PutMutableError};
use minimodel_verifier::channel::{CHANNEL_SALT, ChannelItem};
use minimodel_verifier::channel_state::MAX_ITEMS_CONSIDERED;

use super::{AnnounceFailure, Discovery};

/// The DHT target of a publisher key's channel: `SHA-1(key || salt)`
/// (BEP 44).
pub fn channel_target(key: &[u8; 32]) -> [u8; 20] {
    *MutableItem::target_from_key(key, Some(CHANNEL_SALT)).as_bytes()
}

/// Why a channel item was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelPutFailure {
    /// No node stored it: none was found, none answered, or they refused
    /// it (their most common refusal, shown short).
    #[error(transparent)]
    Query(#[from] AnnounceFailure),
    /// The nodes hold another item than the one read before: someone put
    /// a newer one meanwhile (BEP 44 CAS or sequence refusal).
    #[error("the DHT holds a newer item than the one read ({0}); publish again to build on it")]
    Conflict(String),
}

impl Discovery {
    /// Looks the channel of `key` up: every item DHT nodes answer with,
    /// each once, at most [`MAX_ITEMS_CONSIDERED`], within
    /// `lookup_timeout`. The crate keeps only items whose signature holds
    /// under their key and whose key and salt hash to the target; nothing
    /// here is trusted until `channel_state::choose_item` checked it.
    pub async fn get_channel(&self, key: &[u8; 32]) -> Vec<ChannelItem> {
        let deadline = tokio::time::Instant::now() + self.config.lookup_timeout;
        let mut answers = self.dht.get_mutable(key, Some(CHANNEL_SALT), None);
        let mut items: Vec<ChannelItem> = Vec::new();
        while items.len() < MAX_ITEMS_CONSIDERED {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(found)) => {
                    let item = ChannelItem {
                        key: *found.key(),
                        seq: found.seq(),
                        value: found.value().to_vec(),
                        signature: *found.signature(),
                        salt: found.salt().unwrap_or_default().to_vec(),
                    };
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        items
    }

    /// Puts `item` on the DHT nodes nearest its target (BEP 44 `put`,
    /// with `cas` when given): how many stored it.
    pub async fn put_channel(
        &self,
        item: &ChannelItem,
        cas: Option<i64>,
    ) -> Result<u32, ChannelPutFailure> {
        let salt = (!item.salt.is_empty()).then_some(item.salt.as_slice());
        let mutable = MutableItem::new_signed_unchecked(
            item.key,
            item.signature,
            &item.value,
            item.seq,
            salt,
        );
        match self.dht.put_mutable(mutable, cas).await {
            Ok(outcome) => Ok(outcome.stored_at),
            Err(PutMutableError::Query(error)) => Err(AnnounceFailure::from(error).into()),
            Err(PutMutableError::Concurrency(error)) => Err(ChannelPutFailure::Conflict(
                match error {
                    ConcurrencyError::ConflictRisk => {
                        "a put of another sequence number without CAS"
                    }
                    ConcurrencyError::NotMostRecent => "its sequence number is not below ours",
                    ConcurrencyError::CasFailed => "CAS did not match",
                }
                .to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_sha1_of_key_and_salt() {
        // Key A of fixtures/channel/vectors.txt and its target.
        let key: [u8; 32] = data_encoding::HEXLOWER
            .decode(b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            data_encoding::HEXLOWER.encode(&channel_target(&key)),
            "5c44988c041c78fd86034510aadab300fb43fd6a"
        );
    }
}
