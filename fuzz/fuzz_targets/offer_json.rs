//! The peer offer and import request readers on arbitrary bytes: they must
//! return, never panic, and whatever they accept must survive a round trip
//! through JSON to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::offer::{ImportRequest, PeerOffer};

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = PeerOffer::parse(data, "fuzz.json") {
        let text = serde_json::to_vec(&offer).expect("an offer serializes");
        let again = PeerOffer::parse(&text, "fuzz.json").expect("its JSON parses");
        assert_eq!(again, offer);
    }
    if let Ok(request) = ImportRequest::parse(data, "fuzz.json") {
        let text = serde_json::to_vec(&request).expect("a request serializes");
        let again = ImportRequest::parse(&text, "fuzz.json").expect("its JSON parses");
        assert_eq!(again, request);
    }
});
