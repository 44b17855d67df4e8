//! A publisher's channel item (`minimodel_verifier::channel`, BEP 44) on
//! arbitrary bytes: `Channel::decode` must return, never panic, and a value
//! it accepts encodes back to the same bytes (it reads canonical bencode
//! only); `check_item` of an item signed over the bytes, against the last
//! item seen, must return too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::channel::{Channel, ChannelItem, LastSeen, check_item, sign_channel};
use minimodel_verifier::signing::SecretKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(channel) = Channel::decode(data) {
        assert_eq!(channel.encode().as_deref(), Ok(data));
        // Signed, it passes; an older sequence number after it does not.
        let secret = SecretKey::from_seed(&[1; 32]);
        let item = sign_channel(&secret, 2, &channel).unwrap();
        let verified = check_item(&item, &secret.public_key(), None).unwrap();
        let older = sign_channel(&secret, 1, &channel).unwrap();
        assert!(check_item(&older, &secret.public_key(), Some(verified.last_seen())).is_err());
    }
    let secret = SecretKey::from_seed(&[2; 32]);
    let item = ChannelItem {
        key: *secret.public_key().as_bytes(),
        seq: i64::from(data.first().copied().unwrap_or(0)),
        value: data.to_vec(),
        signature: [0; 64],
        salt: minimodel_verifier::channel::CHANNEL_SALT.to_vec(),
    };
    let last = LastSeen {
        seq: 3,
        value_sha256: Sha256Digest::of(data),
    };
    let _ = check_item(&item, &secret.public_key(), Some(last));
});
