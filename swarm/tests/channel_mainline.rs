//! The channel item is a BEP 44 mutable item as another implementation
//! makes it: the `mainline` crate's `MutableItem`, given the vectors' key,
//! value, sequence number and salt, signs to the vectors' signature and
//! targets the vectors' target, and an item it signed passes
//! `check_item`.

use minimodel_verifier::channel::{CHANNEL_SALT, ChannelItem, check_item};
use minimodel_verifier::signing::PublicKey;

const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn hex(text: &str) -> Vec<u8> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).unwrap()
}

#[test]
fn mainline_signs_and_targets_the_vectors_as_the_channel_does() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/channel/vectors.txt"),
    )
    .unwrap();
    let field = |line: &str, key: &str| line.strip_prefix(key).map(str::to_owned);
    let target = text.lines().find_map(|l| field(l, "target: ")).unwrap();
    let public: [u8; 32] = hex(&text.lines().find_map(|l| field(l, "public-key: ")).unwrap())
        .try_into()
        .unwrap();
    let seqs: Vec<i64> = (text.lines().filter_map(|l| field(l, "seq: ")))
        .map(|seq| seq.parse().unwrap())
        .collect();
    let values: Vec<Vec<u8>> = (text.lines().filter_map(|l| field(l, "value: ")))
        .map(|value| hex(&value))
        .collect();
    let signatures: Vec<Vec<u8>> = (text.lines().filter_map(|l| field(l, "signature: ")))
        .map(|value| hex(&value))
        .collect();
    assert_eq!(seqs.len(), 3);
    let seed: [u8; 32] = hex(SEED_A).try_into().unwrap();
    let pinned = PublicKey::from_bytes(&public).unwrap();
    for ((seq, value), signature) in seqs.iter().zip(&values).zip(&signatures) {
        let item = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(&seed),
            value,
            *seq,
            Some(CHANNEL_SALT),
        );
        assert_eq!(item.signature().as_slice(), signature.as_slice());
        assert_eq!(hex(&target), item.target().as_bytes());
        let ours = ChannelItem {
            key: *item.key(),
            seq: item.seq(),
            value: item.value().to_vec(),
            signature: *item.signature(),
            salt: item.salt().unwrap_or_default().to_vec(),
        };
        check_item(&ours, &pinned, None).unwrap();
    }
}
