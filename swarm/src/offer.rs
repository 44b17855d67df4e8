//! Peer offers and import requests (`docs/formats.md`): how a seeder says
//! where it serves which artifact, and how a receiver is asked to fetch one.
//!
//! An offer names one peer id and every address it may be reached at
//! (`minimodel-peer-offer-v1`), and, when the peer is registered with
//! relays, those too (`minimodel-peer-offer-v2`: v1 and `relays`); offers
//! of the earliest format (`minimodel-peer-offer-v0`, one
//! `PEER_ID@IP:PORT`) are still read, and all read into the same
//! [`PeerOffer`]. Writers write v2 for a peer that names a relay, v1
//! otherwise.
//!
//! Both are checked against the manifest before any connection is made:
//! model id, byte count and artifact SHA-256 must agree across the request,
//! every offer and the manifest, or nothing happens.

use std::net::SocketAddr;
use std::path::Path;

use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::{ModelId, Sha256Digest};
use minimodel_wire::{PeerAddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::peers::{PeerAddrs, merge_peers};

/// The `format` of a peer offer, as written for a peer that names no
/// relay.
pub const OFFER_FORMAT: &str = "minimodel-peer-offer-v1";
/// The `format` of a peer offer that names relays.
pub const OFFER_FORMAT_V2: &str = "minimodel-peer-offer-v2";
/// Relays one offer may name.
pub const MAX_OFFER_RELAYS: usize = 4;
/// The earlier `format` of a peer offer, still read.
pub const OFFER_FORMAT_V0: &str = "minimodel-peer-offer-v0";
/// The `format` of an import request.
pub const REQUEST_FORMAT: &str = "minimodel-import-request-v0";
/// Offers one import request may carry.
pub const MAX_OFFERS: usize = 64;
/// Addresses one offer may list.
pub const MAX_OFFER_ADDRS: usize = crate::addrs::MAX_ADVERTISED;
/// Largest offer or request file read.
pub const MAX_FILE_LEN: u64 = crate::input::Input::OFFER.limit;

/// A seeder's offer: which artifact, at which peer, at which addresses.
/// Read from either format version; serialized as
/// `minimodel-peer-offer-v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOffer {
    /// The model.
    pub model_id: ModelId,
    /// Size of the artifact.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Sha256Digest,
    /// Merkle root of its chunks.
    pub merkle_root: Sha256Digest,
    /// The peer and where to dial it (1 to [`MAX_OFFER_ADDRS`] addresses).
    pub peer: PeerAddrs,
    /// The relays the peer is registered with (0 to [`MAX_OFFER_RELAYS`],
    /// each with its key; `docs/relay.md`).
    pub relays: Vec<crate::relay::RelayAddr>,
}

/// A request to import an artifact from the offered peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportRequest {
    /// Always [`REQUEST_FORMAT`].
    pub format: String,
    /// The model.
    pub model_id: ModelId,
    /// Size of the artifact.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Sha256Digest,
    /// Where it is offered (offers of either version).
    pub offers: Vec<PeerOffer>,
}

/// An offer as written: `minimodel-peer-offer-v1`, or `-v2` with its
/// relays.
#[derive(Serialize)]
struct OfferV1<'a> {
    format: &'static str,
    model_id: &'a ModelId,
    artifact_bytes: u64,
    artifact_sha256: &'a Sha256Digest,
    merkle_root: &'a Sha256Digest,
    peer_id: String,
    addrs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    relays: Vec<String>,
}

impl Serialize for PeerOffer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        OfferV1 {
            format: if self.relays.is_empty() {
                OFFER_FORMAT
            } else {
                OFFER_FORMAT_V2
            },
            model_id: &self.model_id,
            artifact_bytes: self.artifact_bytes,
            artifact_sha256: &self.artifact_sha256,
            merkle_root: &self.merkle_root,
            peer_id: self.peer.id.to_string(),
            addrs: self.peer.addrs.iter().map(ToString::to_string).collect(),
            relays: self.relays.iter().map(ToString::to_string).collect(),
        }
        .serialize(serializer)
    }
}

/// The fields of an offer of any version, before its version's rules.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    format: String,
    model_id: ModelId,
    artifact_bytes: u64,
    artifact_sha256: Sha256Digest,
    merkle_root: Sha256Digest,
    /// v0: `PEER_ID@IP:PORT`.
    #[serde(default)]
    peer: Option<String>,
    /// v1: the peer id.
    #[serde(default)]
    peer_id: Option<String>,
    /// v1: its addresses.
    #[serde(default)]
    addrs: Option<Vec<String>>,
    /// v2: its relays.
    #[serde(default)]
    relays: Option<Vec<String>>,
}

/// The fields of an import request, before its offers' rules.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    format: String,
    model_id: ModelId,
    artifact_bytes: u64,
    artifact_sha256: Sha256Digest,
    offers: Vec<RawOffer>,
}

/// Why an offer or request is refused. Every one is invalid input.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The file could not be read: missing, not a regular file, or
    /// larger than [`MAX_FILE_LEN`] ([`crate::input`]).
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    /// Not JSON of the expected shape.
    #[error("{path} is not a valid {kind}: {detail}")]
    Malformed {
        /// Which file.
        path: String,
        /// Offer or request.
        kind: &'static str,
        /// What is wrong (with line and column).
        detail: String,
    },
    /// A `format` this version does not read.
    #[error("{path} has format {found:?}; expected {expected:?}")]
    Format {
        /// Which file.
        path: String,
        /// What it says.
        found: String,
        /// What we read.
        expected: &'static str,
    },
    /// A request with no offers or too many.
    #[error("the request carries {0} offers; it needs 1 to {MAX_OFFERS}")]
    OfferCount(usize),
    /// A field disagrees between two documents.
    #[error(
        "{field} disagrees: {left_name} says {left}, {right_name} says {right}; nothing was fetched"
    )]
    Mismatch {
        /// Which field.
        field: &'static str,
        /// The first document.
        left_name: String,
        /// Its value.
        left: String,
        /// The second document.
        right_name: String,
        /// Its value.
        right: String,
    },
}

pub use crate::addrs::check_offer_addr;

impl RawOffer {
    /// Applies the rules of the offer's version. `Err(None)`: the format is
    /// not an offer format this version reads.
    fn into_offer(self) -> Result<PeerOffer, Option<String>> {
        let v2 = self.format == OFFER_FORMAT_V2;
        if !v2 && self.relays.is_some() {
            return Err(Some(format!(
                "field `relays` is not part of {} (it is {OFFER_FORMAT_V2}'s)",
                self.format
            )));
        }
        let relays = match (v2, &self.relays) {
            (true, None) => {
                return Err(Some(format!("missing field `relays` ({OFFER_FORMAT_V2})")));
            }
            (true, Some(texts)) => read_relays(texts)?,
            (false, _) => Vec::new(),
        };
        let peer = match self.format.as_str() {
            OFFER_FORMAT_V0 => {
                for (field, present) in [
                    ("peer_id", self.peer_id.is_some()),
                    ("addrs", self.addrs.is_some()),
                ] {
                    if present {
                        return Err(Some(format!(
                            "field `{field}` is not part of {OFFER_FORMAT_V0} (it is {OFFER_FORMAT}'s)"
                        )));
                    }
                }
                let text = self
                    .peer
                    .ok_or_else(|| Some(format!("missing field `peer` ({OFFER_FORMAT_V0})")))?;
                let peer: PeerAddr = text
                    .parse()
                    .map_err(|error| Some(format!("peer {text:?}: {error}")))?;
                check_offer_addr(peer.addr).map_err(|e| Some(format!("peer: {e}")))?;
                PeerAddrs::from(peer)
            }
            OFFER_FORMAT | OFFER_FORMAT_V2 => {
                if self.peer.is_some() {
                    return Err(Some(format!(
                        "field `peer` is not part of {} (it has `peer_id` and `addrs`)",
                        self.format
                    )));
                }
                let id = self
                    .peer_id
                    .ok_or_else(|| Some(format!("missing field `peer_id` ({OFFER_FORMAT})")))?;
                let id: PeerId = id
                    .parse()
                    .map_err(|error| Some(format!("peer_id {id:?}: {error}")))?;
                let texts = self
                    .addrs
                    .ok_or_else(|| Some(format!("missing field `addrs` ({OFFER_FORMAT})")))?;
                if texts.is_empty() || texts.len() > MAX_OFFER_ADDRS {
                    return Err(Some(format!(
                        "addrs lists {} addresses; an offer lists 1 to {MAX_OFFER_ADDRS}",
                        texts.len()
                    )));
                }
                let mut addrs: Vec<SocketAddr> = Vec::with_capacity(texts.len());
                for (index, text) in texts.iter().enumerate() {
                    let addr: SocketAddr = text.parse().map_err(|_| {
                        Some(format!(
                            "addrs[{index}] {text:?} is not IP:PORT (IPv6 in brackets)"
                        ))
                    })?;
                    check_offer_addr(addr).map_err(|e| Some(format!("addrs[{index}]: {e}")))?;
                    if addrs.contains(&addr) {
                        return Err(Some(format!("addrs[{index}] {addr} is listed twice")));
                    }
                    addrs.push(addr);
                }
                PeerAddrs { id, addrs }
            }
            _ => return Err(None),
        };
        Ok(PeerOffer {
            model_id: self.model_id,
            artifact_bytes: self.artifact_bytes,
            artifact_sha256: self.artifact_sha256,
            merkle_root: self.merkle_root,
            peer,
            relays,
        })
    }

    /// [`RawOffer::into_offer`] with the errors of a file called `name`.
    fn check(self, name: &str) -> Result<PeerOffer, OfferError> {
        let found = self.format.clone();
        self.into_offer().map_err(|error| match error {
            Some(detail) => OfferError::Malformed {
                path: name.to_owned(),
                kind: "peer offer",
                detail,
            },
            None => OfferError::Format {
                path: name.to_owned(),
                found,
                expected: OFFER_FORMATS,
            },
        })
    }
}

/// A file that does not read as a `kind`: when its first bytes show it
/// to be another kind of file (a manifest given for an offer, the model),
/// the error says which, not where the JSON reader stopped.
fn malformed(
    name: &str,
    kind: &'static str,
    format: &str,
    bytes: &[u8],
    error: &serde_json::Error,
) -> OfferError {
    use minimodel_verifier::document::{Document, family};
    let found = Document::sniff(bytes);
    let detail = match &found {
        Document::Other => error.to_string(),
        Document::Format(found_format) if family(found_format) == family(format) => {
            error.to_string()
        }
        _ => format!("it holds {}", found.describe()),
    };
    OfferError::Malformed {
        path: name.to_owned(),
        kind,
        detail,
    }
}

/// The offer formats this version reads, for error messages.
const OFFER_FORMATS: &str = "minimodel-peer-offer-v1 (or -v2, -v0)";

/// A v2 offer's `relays`: 1 to [`MAX_OFFER_RELAYS`], each
/// `PEER_ID@IP:PORT` (the relay's key pinned), an address to dial, none
/// twice.
fn read_relays(texts: &[String]) -> Result<Vec<crate::relay::RelayAddr>, Option<String>> {
    if texts.is_empty() || texts.len() > MAX_OFFER_RELAYS {
        return Err(Some(format!(
            "relays lists {} relays; a v2 offer lists 1 to {MAX_OFFER_RELAYS}",
            texts.len()
        )));
    }
    let mut relays: Vec<crate::relay::RelayAddr> = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let relay: crate::relay::RelayAddr = text
            .parse()
            .map_err(|error| Some(format!("relays[{index}] {text:?}: {error}")))?;
        if relay.id.is_none() {
            return Err(Some(format!(
                "relays[{index}] {text:?} has no peer id: write RELAY_ID@IP:PORT"
            )));
        }
        check_offer_addr(relay.addr).map_err(|e| Some(format!("relays[{index}]: {e}")))?;
        if relays.contains(&relay) {
            return Err(Some(format!("relays[{index}] {relay} is listed twice")));
        }
        relays.push(relay);
    }
    Ok(relays)
}

impl PeerOffer {
    /// The offer of a seeder, `peer`, for `manifest`'s artifact.
    pub fn for_manifest(manifest: &Manifest, peer: PeerAddrs) -> Self {
        Self {
            model_id: manifest.model_id.clone(),
            artifact_bytes: manifest.artifact_bytes,
            artifact_sha256: manifest.artifact_sha256,
            merkle_root: manifest.chunks.merkle_root,
            peer,
            relays: Vec::new(),
        }
    }

    /// The same offer naming `relays` (at most [`MAX_OFFER_RELAYS`] of
    /// those with a key; the others are left out).
    pub fn with_relays(mut self, relays: &[crate::relay::RelayAddr]) -> Self {
        self.relays = relays
            .iter()
            .filter(|relay| relay.id.is_some())
            .take(MAX_OFFER_RELAYS)
            .copied()
            .collect();
        self
    }

    /// Parses an offer of either version.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, OfferError> {
        let raw: RawOffer = serde_json::from_slice(bytes)
            .map_err(|e| malformed(name, "peer offer", OFFER_FORMAT, bytes, &e))?;
        raw.check(name)
    }

    /// Reads and parses an offer file.
    pub fn read(path: &Path) -> Result<Self, OfferError> {
        let bytes = crate::input::read_input(path, crate::input::Input::OFFER)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Checks that the offer is for `manifest`'s artifact.
    pub fn check_against(&self, manifest: &Manifest, name: &str) -> Result<(), OfferError> {
        agree(
            "model id",
            name,
            self.model_id.as_str(),
            "the manifest",
            manifest.model_id.as_str(),
        )?;
        agree(
            "artifact bytes",
            name,
            &self.artifact_bytes.to_string(),
            "the manifest",
            &manifest.artifact_bytes.to_string(),
        )?;
        agree(
            "artifact sha256",
            name,
            &self.artifact_sha256.to_hex(),
            "the manifest",
            &manifest.artifact_sha256.to_hex(),
        )?;
        agree(
            "merkle root",
            name,
            &self.merkle_root.to_hex(),
            "the manifest",
            &manifest.chunks.merkle_root.to_hex(),
        )
    }
}

impl ImportRequest {
    /// Parses a request; its offers may be of either version.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, OfferError> {
        let raw: RawRequest = serde_json::from_slice(bytes)
            .map_err(|e| malformed(name, "import request", REQUEST_FORMAT, bytes, &e))?;
        if raw.format != REQUEST_FORMAT {
            return Err(OfferError::Format {
                path: name.to_owned(),
                found: raw.format,
                expected: REQUEST_FORMAT,
            });
        }
        let offers = raw
            .offers
            .into_iter()
            .enumerate()
            .map(|(index, offer)| offer.check(&format!("{name}, offer {}", index + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if offers.is_empty() || offers.len() > MAX_OFFERS {
            return Err(OfferError::OfferCount(offers.len()));
        }
        Ok(ImportRequest {
            format: raw.format,
            model_id: raw.model_id,
            artifact_bytes: raw.artifact_bytes,
            artifact_sha256: raw.artifact_sha256,
            offers,
        })
    }

    /// Reads and parses a request file.
    pub fn read(path: &Path) -> Result<Self, OfferError> {
        let bytes = crate::input::read_input(path, crate::input::Input::REQUEST)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Checks model id, byte count and artifact SHA-256 across the request,
    /// every offer and the manifest. Returns the peers to dial, one entry
    /// per peer id with every address its offers list.
    pub fn check_against(&self, manifest: &Manifest) -> Result<Vec<PeerAddrs>, OfferError> {
        let request = "the request";
        agree(
            "model id",
            request,
            self.model_id.as_str(),
            "the manifest",
            manifest.model_id.as_str(),
        )?;
        agree(
            "artifact bytes",
            request,
            &self.artifact_bytes.to_string(),
            "the manifest",
            &manifest.artifact_bytes.to_string(),
        )?;
        agree(
            "artifact sha256",
            request,
            &self.artifact_sha256.to_hex(),
            "the manifest",
            &manifest.artifact_sha256.to_hex(),
        )?;
        for (index, offer) in self.offers.iter().enumerate() {
            offer.check_against(manifest, &format!("offer {} ({})", index + 1, offer.peer))?;
        }
        Ok(merge_peers(
            self.offers.iter().map(|offer| offer.peer.clone()),
        ))
    }
}

fn agree(
    field: &'static str,
    left_name: &str,
    left: &str,
    right_name: &str,
    right: &str,
) -> Result<(), OfferError> {
    if left == right {
        Ok(())
    } else {
        Err(OfferError::Mismatch {
            field,
            left_name: left_name.to_owned(),
            left: left.to_owned(),
            right_name: right_name.to_owned(),
            right: right.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn v0_json(model: &str, bytes: u64) -> String {
        format!(
            r#"{{"format":"{OFFER_FORMAT_V0}","model_id":"{model}","artifact_bytes":{bytes},"artifact_sha256":"{}","merkle_root":"{}","peer":"{ID}@127.0.0.1:4433"}}"#,
            "a".repeat(64),
            "b".repeat(64)
        )
    }

    fn v1_json(addrs: &str) -> String {
        format!(
            r#"{{"format":"{OFFER_FORMAT}","model_id":"tiny","artifact_bytes":1,"artifact_sha256":"{}","merkle_root":"{}","peer_id":"{ID}","addrs":{addrs}}}"#,
            "a".repeat(64),
            "b".repeat(64)
        )
    }

    #[test]
    fn an_offer_round_trips_through_json_as_v1() {
        let v0 = PeerOffer::parse(v0_json("tiny", 100).as_bytes(), "o.json").unwrap();
        assert_eq!(v0.peer.id, PeerId([0; 32]));
        let again = serde_json::to_string(&v0).unwrap();
        assert!(again.contains(OFFER_FORMAT), "{again}");
        assert_eq!(PeerOffer::parse(again.as_bytes(), "o.json").unwrap(), v0);

        let v1 = PeerOffer::parse(
            v1_json(r#"["127.0.0.1:4433","[::1]:4433"]"#).as_bytes(),
            "o.json",
        )
        .unwrap();
        assert_eq!(v1.peer.addrs.len(), 2);
        let again = serde_json::to_vec(&v1).unwrap();
        assert_eq!(PeerOffer::parse(&again, "o.json").unwrap(), v1);
    }

    #[test]
    fn malformed_offers_are_refused_with_the_reason() {
        let cases = [
            ("not json".to_owned(), "not a valid peer offer"),
            (
                r#"{"format":"minimodel-peer-offer-v0"}"#.to_owned(),
                "missing field",
            ),
            (v0_json("../x", 1), "model id"),
            (
                v0_json("tiny", 1).replace("127.0.0.1:4433", "nowhere"),
                "IP address",
            ),
            (v0_json("tiny", 1).replace("-v0", "-v9"), "format"),
            (
                v0_json("tiny", 1).replace(r#""peer""#, r#""extra":1,"peer""#),
                "unknown field",
            ),
            (v1_json("[]"), "1 to 16"),
            (v1_json(r#"["nowhere:1"]"#), "is not IP:PORT"),
            (v1_json(r#"["10.0.0.1:1","10.0.0.1:1"]"#), "listed twice"),
            (v1_json(r#"["224.0.0.1:1"]"#), "not a unicast address"),
            (v1_json(r#"["10.0.0.1:0"]"#), "port 0"),
        ];
        for (text, expected) in cases {
            let error = PeerOffer::parse(text.as_bytes(), "o.json")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn requests_need_one_to_many_offers() {
        let empty = format!(
            r#"{{"format":"{REQUEST_FORMAT}","model_id":"tiny","artifact_bytes":1,"artifact_sha256":"{}","offers":[]}}"#,
            "a".repeat(64)
        );
        assert!(matches!(
            ImportRequest::parse(empty.as_bytes(), "r.json"),
            Err(OfferError::OfferCount(0))
        ));
        let two = empty.replace(
            "[]",
            &format!("[{},{}]", v0_json("tiny", 1), v1_json(r#"["[::1]:9"]"#)),
        );
        assert_eq!(
            ImportRequest::parse(two.as_bytes(), "r.json")
                .unwrap()
                .offers
                .len(),
            2
        );
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; MAX_FILE_LEN as usize + 1]).unwrap();
        assert!(matches!(
            PeerOffer::read(&path),
            Err(OfferError::Input(crate::input::InputError::TooLarge { .. }))
        ));
    }

    #[test]
    fn another_kind_of_file_is_named_not_parsed() {
        let manifest = b"format: minimodel-manifest-v0\nmodel-id: tiny\n";
        let error = PeerOffer::parse(manifest, "m.manifest").unwrap_err();
        assert_eq!(
            error.to_string(),
            "m.manifest is not a valid peer offer: it holds a minimodel-manifest-v0 document"
        );
        let error = ImportRequest::parse(b"\x7fMINISLM\0\0\0\0", "m.slm").unwrap_err();
        assert!(
            error.to_string().ends_with("it holds a .slm artifact"),
            "{error}"
        );
        // An offer of the right kind that breaks its shape keeps the
        // reader's line and column.
        let error = PeerOffer::parse(
            b"{\"format\": \"minimodel-peer-offer-v1\", \"model_id\": 7}",
            "o.json",
        )
        .unwrap_err();
        assert!(error.to_string().contains("column"), "{error}");
        let error = PeerOffer::parse(b"not json", "o.json").unwrap_err();
        assert!(error.to_string().contains("column"), "{error}");
    }
}
