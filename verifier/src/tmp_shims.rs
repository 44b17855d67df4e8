//! Temporary shims until the manifest and route modules land.
use std::fmt;

use crate::manifest::{EvidenceStatus, PeerHintStatus};
use crate::route::Route;

impl fmt::Display for EvidenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvidenceStatus::Unreviewed => "unreviewed",
            EvidenceStatus::SelfAttested => "self-attested",
            EvidenceStatus::IndependentlyReviewed => "independently-reviewed",
        })
    }
}
impl fmt::Display for PeerHintStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerHintStatus::None => "none",
            PeerHintStatus::Advisory => "advisory",
        })
    }
}
impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> serde::Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = String::deserialize(d)?;
        Err(serde::de::Error::custom("shim"))
    }
}
