//! Whom to fetch from: peers named by hand, peer offers, or an import
//! request, each checked against the manifest before any byte moves
//! (model id, byte count, artifact SHA-256 and Merkle root must agree;
//! the first disagreement is named).

use minimodel_verifier::manifest::Manifest;

use crate::offer::{ImportRequest, OfferError, PeerOffer};
use crate::peers::{PeerAddrs, merge_peers};

/// The peers of a fetch: `named` peers, then each offer's peer (`offers`
/// paired with a name for messages, like its file's path), every offer
/// checked against `manifest` first. One entry per peer id, with every
/// address given for it in the order given.
pub fn from_offers<'a>(
    manifest: &Manifest,
    named: impl IntoIterator<Item = PeerAddrs>,
    offers: impl IntoIterator<Item = (&'a PeerOffer, &'a str)>,
) -> Result<Vec<PeerAddrs>, OfferError> {
    let mut peers: Vec<PeerAddrs> = named.into_iter().collect();
    for (offer, name) in offers {
        offer.check_against(manifest, name)?;
        peers.push(offer.peer.clone());
    }
    Ok(merge_peers(peers))
}

/// The relays the peers of `offers` name ("reach me via"), by peer.
pub fn relays_of_offers<'a>(
    offers: impl IntoIterator<Item = &'a PeerOffer>,
) -> Vec<(minimodel_wire::PeerId, Vec<crate::relay::RelayAddr>)> {
    let mut out: Vec<(minimodel_wire::PeerId, Vec<crate::relay::RelayAddr>)> = Vec::new();
    for offer in offers.into_iter().filter(|offer| !offer.relays.is_empty()) {
        match out.iter_mut().find(|(peer, _)| *peer == offer.peer.id) {
            Some((_, relays)) => {
                for relay in &offer.relays {
                    if !relays.contains(relay) {
                        relays.push(*relay);
                    }
                }
            }
            None => out.push((offer.peer.id, offer.relays.clone())),
        }
    }
    out
}

/// The peers of an import request, once model id, byte count and artifact
/// SHA-256 agree across the request, every offer and the manifest.
pub fn from_request(
    request: &ImportRequest,
    manifest: &Manifest,
) -> Result<Vec<PeerAddrs>, OfferError> {
    request.check_against(manifest)
}

/// How many peers that served an earlier run of this download in `dir`
/// are remembered there and fresh enough to dial (`docs/resume.md`,
/// "Remembered peers"): a download starts from them as from those named.
pub fn remembered_count(dir: &std::path::Path, manifest: &Manifest) -> usize {
    crate::resume::remembered_peers(dir, &manifest.model_id).map_or(0, |peers| peers.len())
}

/// Whether a fetch has anywhere to look for peers: `named` given, some
/// `remembered`, or the DHT or the LAN to look on.
pub fn has_sources(named: usize, remembered: usize, dht: bool, lan: bool) -> bool {
    named > 0 || remembered > 0 || dht || lan
}
