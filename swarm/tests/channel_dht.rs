//! A publisher's channel item on a real Mainline DHT of a few nodes on
//! loopback (the `mainline` crate's own nodes): what one node puts,
//! another gets and `choose_item` accepts; a newer item replaces it under
//! CAS; the DHT nodes refuse an older item after a newer one, an item
//! forged under the key, and a put whose CAS is stale.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::HANG;

mod common;

use mainline::Testnet;
use minimodel_swarm::dht::{Bootstrap, ChannelPutFailure, Discovery, DiscoveryConfig};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{Channel, ChannelItem, Latest, sign_channel};
use minimodel_verifier::channel_state::choose_item;
use minimodel_verifier::ids::ModelId;
use minimodel_verifier::signing::SecretKey;

fn config(bootstrap: &[SocketAddrV4]) -> DiscoveryConfig {
    DiscoveryConfig {
        bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        bootstrap: Bootstrap::Nodes(bootstrap.to_vec()),
        lookup_timeout: Duration::from_secs(5),
        ..DiscoveryConfig::default()
    }
}

async fn testnet(count: usize) -> (Testnet, Vec<SocketAddrV4>) {
    let testnet = tokio::task::spawn_blocking(move || Testnet::builder(count).build().unwrap())
        .await
        .unwrap();
    let addrs = testnet
        .bootstrap
        .iter()
        .map(|addr| addr.parse().unwrap())
        .collect();
    (testnet, addrs)
}

fn item(key: &SecretKey, seq: i64, version: u8) -> ChannelItem {
    let mut channel = Channel::default();
    channel.models.insert(
        ModelId::new("tiny").unwrap(),
        Latest {
            manifest_sha256: Sha256Digest([version; 32]),
            peers: Vec::new(),
        },
    );
    sign_channel(key, seq, &channel).unwrap()
}

/// Gets the channel of `key` until the newest item found has `seq`.
async fn get_until(reader: &Discovery, key: &SecretKey, seq: i64) -> Vec<ChannelItem> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let items = reader.get_channel(key.public_key().as_bytes()).await;
        if items.iter().map(|item| item.seq).max() == Some(seq)
            || tokio::time::Instant::now() > deadline
        {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_item_is_read_back_and_replaced_only_by_a_newer_one() {
    let (_testnet, bootstrap) = testnet(4).await;
    let key = SecretKey::from_seed(&[5; 32]);
    let publisher = Discovery::start(config(&bootstrap)).await.unwrap();
    let reader = Discovery::start(config(&bootstrap)).await.unwrap();

    let first = item(&key, 1, 1);
    assert!(publisher.put_channel(&first, None).await.unwrap() >= 1);
    let found = get_until(&reader, &key, 1).await;
    assert_eq!(found, vec![first.clone()]);
    let chosen = choose_item(&found, &key.public_key(), None)
        .unwrap()
        .unwrap();
    assert_eq!(chosen.seq(), 1);

    let second = item(&key, 2, 2);
    assert!(publisher.put_channel(&second, Some(1)).await.unwrap() >= 1);
    let found = get_until(&reader, &key, 2).await;
    let chosen = choose_item(&found, &key.public_key(), Some(chosen.last_seen()))
        .unwrap()
        .unwrap();
    assert_eq!(chosen.seq(), 2);
    assert_eq!(
        chosen.channel().models[&ModelId::new("tiny").unwrap()].manifest_sha256,
        Sha256Digest([2; 32])
    );

    // The nodes keep the newer item: the older one put again, or a put
    // whose CAS names a sequence number they no longer hold, is refused.
    let replay = publisher.put_channel(&first, None).await.unwrap_err();
    assert!(
        matches!(replay, ChannelPutFailure::Conflict(_)),
        "{replay:?}"
    );
    let stale = publisher
        .put_channel(&item(&key, 3, 3), Some(1))
        .await
        .unwrap_err();
    assert!(matches!(stale, ChannelPutFailure::Conflict(_)), "{stale:?}");

    // An item under the key signed by another key is stored by nobody and
    // never handed out.
    let other = item(&SecretKey::from_seed(&[6; 32]), 9, 9);
    let forged = ChannelItem {
        signature: other.signature,
        ..item(&key, 9, 9)
    };
    assert!(publisher.put_channel(&forged, Some(2)).await.is_err());
    let found = reader.get_channel(key.public_key().as_bytes()).await;
    assert!(found.iter().all(|item| item.seq == 2), "{found:?}");
}
