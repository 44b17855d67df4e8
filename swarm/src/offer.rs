//! Peer offers and import requests (`docs/formats.md`): how a seeder says
//! where it serves which artifact, and how a receiver is asked to fetch one.
//!
//! Both are checked against the manifest before any connection is made:
//! model id, byte count and artifact SHA-256 must agree across the request,
//! every offer and the manifest, or nothing happens.

use std::path::Path;

use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::{ModelId, Sha256Digest};
use minimodel_wire::PeerAddr;
use serde::{Deserialize, Serialize};

/// The `format` of a peer offer.
pub const OFFER_FORMAT: &str = "minimodel-peer-offer-v0";
/// The `format` of an import request.
pub const REQUEST_FORMAT: &str = "minimodel-import-request-v0";
/// Offers one import request may carry.
pub const MAX_OFFERS: usize = 64;
/// Largest offer or request file read.
pub const MAX_FILE_LEN: u64 = 256 * 1024;

/// A seeder's offer: which artifact, at which peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerOffer {
    /// Always [`OFFER_FORMAT`].
    pub format: String,
    /// The model.
    pub model_id: ModelId,
    /// Size of the artifact.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Sha256Digest,
    /// Merkle root of its chunks.
    pub merkle_root: Sha256Digest,
    /// Where to dial, `PEER_ID@IP:PORT`.
    #[serde(with = "peer_addr_text")]
    pub peer: PeerAddr,
}

/// A request to import an artifact from the offered peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Always [`REQUEST_FORMAT`].
    pub format: String,
    /// The model.
    pub model_id: ModelId,
    /// Size of the artifact.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Sha256Digest,
    /// Where it is offered.
    pub offers: Vec<PeerOffer>,
}

mod peer_addr_text {
    use minimodel_wire::PeerAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(peer: &PeerAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(peer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PeerAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an offer or request is refused. Every one is invalid input.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// Which file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE_LEN`].
    #[error("{path} is {len} bytes; offers and requests are at most {MAX_FILE_LEN}")]
    TooLarge {
        /// Which file.
        path: String,
        /// Its size.
        len: u64,
    },
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

fn read_limited(path: &Path) -> Result<Vec<u8>, OfferError> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path)
        .map_err(|source| OfferError::Read {
            path: name.clone(),
            source,
        })?
        .len();
    if len > MAX_FILE_LEN {
        return Err(OfferError::TooLarge { path: name, len });
    }
    std::fs::read(path).map_err(|source| OfferError::Read { path: name, source })
}

impl PeerOffer {
    /// The offer of a seeder at `peer` for `manifest`'s artifact.
    pub fn for_manifest(manifest: &Manifest, peer: PeerAddr) -> Self {
        Self {
            format: OFFER_FORMAT.to_owned(),
            model_id: manifest.model_id.clone(),
            artifact_bytes: manifest.artifact_bytes,
            artifact_sha256: manifest.artifact_sha256,
            merkle_root: manifest.chunks.merkle_root,
            peer,
        }
    }

    /// Parses an offer.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, OfferError> {
        let offer: PeerOffer =
            serde_json::from_slice(bytes).map_err(|e| OfferError::Malformed {
                path: name.to_owned(),
                kind: "peer offer",
                detail: e.to_string(),
            })?;
        if offer.format != OFFER_FORMAT {
            return Err(OfferError::Format {
                path: name.to_owned(),
                found: offer.format,
                expected: OFFER_FORMAT,
            });
        }
        Ok(offer)
    }

    /// Reads and parses an offer file.
    pub fn read(path: &Path) -> Result<Self, OfferError> {
        Self::parse(&read_limited(path)?, &path.display().to_string())
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
    /// Parses a request.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, OfferError> {
        let request: ImportRequest =
            serde_json::from_slice(bytes).map_err(|e| OfferError::Malformed {
                path: name.to_owned(),
                kind: "import request",
                detail: e.to_string(),
            })?;
        if request.format != REQUEST_FORMAT {
            return Err(OfferError::Format {
                path: name.to_owned(),
                found: request.format,
                expected: REQUEST_FORMAT,
            });
        }
        for offer in &request.offers {
            if offer.format != OFFER_FORMAT {
                return Err(OfferError::Format {
                    path: name.to_owned(),
                    found: offer.format.clone(),
                    expected: OFFER_FORMAT,
                });
            }
        }
        if request.offers.is_empty() || request.offers.len() > MAX_OFFERS {
            return Err(OfferError::OfferCount(request.offers.len()));
        }
        Ok(request)
    }

    /// Reads and parses a request file.
    pub fn read(path: &Path) -> Result<Self, OfferError> {
        Self::parse(&read_limited(path)?, &path.display().to_string())
    }

    /// Checks model id, byte count and artifact SHA-256 across the request,
    /// every offer and the manifest. Returns the peers to dial.
    pub fn check_against(&self, manifest: &Manifest) -> Result<Vec<PeerAddr>, OfferError> {
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
        Ok(self.offers.iter().map(|offer| offer.peer).collect())
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
    use minimodel_wire::PeerId;

    const PEER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:4433";

    fn offer_json(model: &str, bytes: u64) -> String {
        format!(
            r#"{{"format":"{OFFER_FORMAT}","model_id":"{model}","artifact_bytes":{bytes},"artifact_sha256":"{}","merkle_root":"{}","peer":"{PEER}"}}"#,
            "a".repeat(64),
            "b".repeat(64)
        )
    }

    #[test]
    fn an_offer_round_trips_through_json() {
        let offer = PeerOffer::parse(offer_json("tiny", 100).as_bytes(), "o.json").unwrap();
        assert_eq!(offer.peer.id, PeerId([0; 32]));
        let again = serde_json::to_string(&offer).unwrap();
        assert_eq!(PeerOffer::parse(again.as_bytes(), "o.json").unwrap(), offer);
    }

    #[test]
    fn malformed_offers_are_refused_with_the_reason() {
        let cases = [
            ("not json", "not a valid peer offer"),
            (r#"{"format":"minimodel-peer-offer-v0"}"#, "missing field"),
            (&offer_json("../x", 1), "model id"),
            (
                &offer_json("tiny", 1).replace("127.0.0.1:4433", "nowhere"),
                "IP address",
            ),
            (&offer_json("tiny", 1).replace("-v0", "-v9"), "format"),
            (
                &offer_json("tiny", 1).replace(r#""peer""#, r#""extra":1,"peer""#),
                "unknown field",
            ),
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
        let one = empty.replace("[]", &format!("[{}]", offer_json("tiny", 1)));
        assert_eq!(
            ImportRequest::parse(one.as_bytes(), "r.json")
                .unwrap()
                .offers
                .len(),
            1
        );
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; MAX_FILE_LEN as usize + 1]).unwrap();
        assert!(matches!(
            PeerOffer::read(&path),
            Err(OfferError::TooLarge { .. })
        ));
    }
}
