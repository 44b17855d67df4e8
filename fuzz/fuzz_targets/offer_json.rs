//! The peer offer and import request readers on arbitrary bytes: they must
//! return, never panic; whatever they accept (offers of either version)
//! holds 1 to MAX_OFFER_ADDRS distinct addresses, is written as
//! `minimodel-peer-offer-v1`, and survives a round trip through JSON to the
//! same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::offer::{ImportRequest, MAX_OFFER_ADDRS, OFFER_FORMAT, PeerOffer};
use minimodel_swarm::peers::merge_peers;

fn check_offer(offer: &PeerOffer) {
    let addrs = &offer.peer.addrs;
    assert!(!addrs.is_empty() && addrs.len() <= MAX_OFFER_ADDRS);
    assert!(
        addrs
            .iter()
            .enumerate()
            .all(|(i, a)| !addrs[..i].contains(a))
    );
    let value = serde_json::to_value(offer).expect("an offer serializes");
    assert_eq!(value["format"], OFFER_FORMAT);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = PeerOffer::parse(data, "fuzz.json") {
        check_offer(&offer);
        let text = serde_json::to_vec(&offer).expect("an offer serializes");
        let again = PeerOffer::parse(&text, "fuzz.json").expect("its JSON parses");
        assert_eq!(again, offer);
    }
    if let Ok(request) = ImportRequest::parse(data, "fuzz.json") {
        request.offers.iter().for_each(check_offer);
        let peers = merge_peers(request.offers.iter().map(|offer| offer.peer.clone()));
        assert!(
            peers
                .iter()
                .enumerate()
                .all(|(i, p)| peers[..i].iter().all(|q| q.id != p.id))
        );
        let text = serde_json::to_vec(&request).expect("a request serializes");
        let again = ImportRequest::parse(&text, "fuzz.json").expect("its JSON parses");
        assert_eq!(again, request);
    }
});
