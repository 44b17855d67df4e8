//! Import receipts (`docs/formats.md`): the versioned JSON record that an
//! artifact passed every check, written next to it as
//! `<model-id>.receipt.json`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::ids::{KeyId, ModelId, PublisherId};
use crate::route::Route;
use crate::signing::PublicKey;
use crate::signing::trust::KeyTrust;

/// The `format` value of a receipt.
pub const RECEIPT_FORMAT: &str = "minimodel-receipt-v0";

/// A named check that an import passed, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// The manifest parsed and passed every rule.
    Manifest,
    /// The `.slm` container passed every structural check.
    SlmContainer,
    /// Header fields agree with the manifest (size, quantization, shape,
    /// tokenizer and tensor-layout checksums).
    HeaderDrift,
    /// Every chunk hashed to the Merkle root.
    MerkleRoot,
    /// The chunk list hashed to the manifest's `chunk-list-sha256`.
    ChunkList,
    /// The whole file hashed to `artifact-sha256`.
    ArtifactSha256,
}

/// Where the bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReceiptSource {
    /// A file already on this machine.
    LocalFile,
    /// Downloaded from peers.
    Peers(TransferSummary),
}

/// What a download did, per peer and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSummary {
    /// Verified chunks taken over from an earlier, interrupted run.
    pub chunks_resumed: u64,
    /// Chunks fetched and verified in this run.
    pub chunks_fetched: u64,
    /// Of those, chunks fetched again because their bytes on disk failed
    /// the read-back check after they had been verified.
    #[serde(default)]
    pub chunks_refetched: u64,
    /// Chunks copied in this run from versions already on this machine
    /// (`fetch --reuse`), each checked with its Merkle proof like a
    /// peer's; not counted in `chunks_resumed` or `chunks_fetched`.
    #[serde(default)]
    pub chunks_reused: u64,
    /// Bytes received that did not count (duplicates in endgame, bad data,
    /// chunks cut short).
    pub bytes_wasted: u64,
    /// Wall time of this run in milliseconds, until every check passed.
    pub duration_ms: u64,
    /// Milliseconds from the last verified chunk until the receipt was
    /// made: the end of the full-file hash read back from disk, the
    /// container and header checks, and the final sync of the file.
    #[serde(default)]
    pub finish_ms: u64,
    /// One entry per peer that took part.
    pub peers: Vec<PeerContribution>,
    /// One entry per mirror that took part or was found unusable; absent
    /// when the download had none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorContribution>,
}

/// One mirror's part in a download.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorContribution {
    /// The mirror as given, without its query: `https://host/path`.
    pub url: String,
    /// Verified chunks it delivered first.
    pub chunks: u64,
    /// Verified bytes it delivered first.
    pub bytes: u64,
    /// Chunks from it that failed the Merkle check.
    pub bad_chunks: u64,
    /// Whether it was dropped for a lie (then `left` says which).
    pub blamed: bool,
    /// Why it left the download, in words, if it did: a lie (`blamed`),
    /// or why it could not be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
}

/// One peer's part in a download.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerContribution {
    /// Its peer id (base32 public key).
    pub peer_id: String,
    /// Where it was reached.
    pub address: String,
    /// Verified chunks it delivered.
    pub chunks: u64,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Chunks from it that failed their proof.
    pub bad_chunks: u64,
    /// Whether it was banned from this download for sending bad data.
    pub banned: bool,
    /// How it was found: `offer` (an offer or `--peer`), `remembered` (it
    /// served an earlier run), `peer-exchange`, `dht`, `lan` or
    /// `incoming`; empty in receipts that predate it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub found_by: String,
}

/// The signature check made before an import, as its receipt records it
/// (`docs/formats.md`). Made only from a
/// [`crate::signing::trust::SignatureCheck`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SignatureRecord {
    /// The manifest was unsigned (v0): nothing vouched for it but the way
    /// it reached the user.
    Unsigned,
    /// The manifest's signature verified with `publisher_key`, whose trust
    /// `trust` says.
    Signed {
        /// The manifest's publisher id.
        publisher_id: PublisherId,
        /// The key's id (the manifest's `key-id`).
        key_id: KeyId,
        /// The key that signed.
        publisher_key: PublicKey,
        /// Why the key was trusted.
        trust: KeyTrust,
    },
}

/// The receipt of one import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReceipt {
    /// Always [`RECEIPT_FORMAT`].
    pub format: String,
    /// The model.
    pub model_id: ModelId,
    /// Size of the artifact.
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Sha256Digest,
    /// SHA-256 of the manifest file's bytes.
    pub manifest_sha256: Sha256Digest,
    /// Merkle root of the chunks.
    pub merkle_root: Sha256Digest,
    /// Chunk size.
    pub chunk_size: u32,
    /// Chunk count.
    pub chunk_count: u32,
    /// The license route that travels with the artifact.
    pub license_route: Route,
    /// The evidence route that travels with the artifact.
    pub evidence_route: Route,
    /// The checks passed, in order.
    pub checks: Vec<CheckName>,
    /// The manifest's signature as checked before the import; absent in
    /// receipts written before signatures existed (never read as signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRecord>,
    /// Where the bytes came from.
    pub source: ReceiptSource,
    /// When the checks finished, RFC 3339 UTC.
    pub verified_at: String,
    /// The program that wrote the receipt.
    pub tool: String,
    /// When every check was last run again on the file as it is on disk
    /// (`fetch --recheck`), RFC 3339 UTC; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_at: Option<String>,
    /// The file as its last check left it (size, identity, times), so that
    /// a later run can tell whether it may have changed since without
    /// reading it; absent in receipts that predate it (the file then
    /// counts as changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStamp>,
}

/// What a finished file looked like when its check ended: a later run
/// counts it unchanged only when all of it is the same and the check did
/// not end within [`RACY_WINDOW_NS`] of the file's last write (git's
/// "racily clean" rule: a write in the same tick of a coarse clock would
/// leave the times as they were).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Its length in bytes.
    pub bytes: u64,
    /// The device it is on.
    pub device: u64,
    /// Its inode number (a file replaced by a rename has another).
    pub inode: u64,
    /// Its modification time.
    pub modified: NsTime,
    /// Its status-change time (set by any write, rename or `touch`, and
    /// not settable by a user).
    pub changed: NsTime,
    /// When the stamp was taken, after the check read the file.
    pub stamped: NsTime,
}

/// A file written this close before its check's stamp counts as changed
/// even when its stamp matches: 2 s, the coarsest modification-time
/// resolution of a common file system (FAT), so a write in the same tick
/// as the last one before the check cannot go unseen.
pub const RACY_WINDOW_NS: i128 = 2_000_000_000;

impl FileStamp {
    /// Whether `now` (the file as it is) is the file this stamp describes
    /// and the stamp is not racy: only then may the file count as
    /// unchanged since its check.
    pub fn vouches_for(&self, now: &FileStamp) -> bool {
        let same = self.bytes == now.bytes
            && self.device == now.device
            && self.inode == now.inode
            && self.modified == now.modified
            && self.changed == now.changed;
        let racy = self.stamped.as_nanos() - self.modified.as_nanos() < RACY_WINDOW_NS
            || self.stamped.as_nanos() - self.changed.as_nanos() < RACY_WINDOW_NS;
        same && !racy
    }
}

/// A time to the nanosecond since the Unix epoch, written in JSON as the
/// string `SECONDS.NNNNNNNNN` (nine digits; seconds may be negative), so no
/// reader rounds it the way a JSON number past 2^53 would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NsTime {
    /// Whole seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds within the second, below 1e9.
    pub nanos: u32,
}

impl NsTime {
    /// Nanoseconds since the epoch.
    pub fn as_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The current time.
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => Self {
                secs: since.as_secs() as i64,
                nanos: since.subsec_nanos(),
            },
            Err(_) => Self { secs: 0, nanos: 0 },
        }
    }
}

impl std::fmt::Display for NsTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}", self.secs, self.nanos)
    }
}

impl std::str::FromStr for NsTime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a time written SECONDS.NNNNNNNNN");
        let (secs, nanos) = text.split_once('.').ok_or_else(bad)?;
        let digits = secs.strip_prefix('-').unwrap_or(secs);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || nanos.len() != 9
            || !nanos.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        Ok(Self {
            secs: secs.parse().map_err(|_| bad())?,
            nanos: nanos.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for NsTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NsTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl ImportReceipt {
    /// When the file was last verified: the last recheck, or the import.
    pub fn last_verified(&self) -> &str {
        self.last_verified_at
            .as_deref()
            .unwrap_or(&self.verified_at)
    }
}

/// The current time as RFC 3339 UTC with second precision. A clock set
/// before 1970 reads as the epoch.
pub fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_utc(seconds)
}

/// The last second RFC 3339's four-digit year can write,
/// 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic
/// Gregorian, through `humantime`). Times past the year 9999 read as
/// 9999-12-31T23:59:59Z, the last one the format can hold.
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_seconds.min(LAST_RFC3339_SECOND));
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_391_999), "2026-11-22T23:59:59Z");
        // 2100 is not a leap year; 2^31 seconds is past the 32-bit limit.
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_utc(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(2_147_483_648), "2038-01-19T03:14:08Z");
    }

    #[test]
    fn times_past_year_9999_read_as_its_last_second() {
        assert_eq!(rfc3339_utc(LAST_RFC3339_SECOND), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(LAST_RFC3339_SECOND + 1), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn now_has_the_receipt_shape() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
        assert_eq!(&now[4..5], "-");
        assert_eq!(&now[10..11], "T");
    }

    fn stamp(modified: i64, changed: i64, stamped: i64) -> FileStamp {
        let at = |secs| NsTime { secs, nanos: 500 };
        FileStamp {
            bytes: 10,
            device: 1,
            inode: 2,
            modified: at(modified),
            changed: at(changed),
            stamped: at(stamped),
        }
    }

    #[test]
    fn a_stamp_vouches_only_for_the_same_file_written_well_before_its_check() {
        let checked = stamp(100, 100, 110);
        assert!(checked.vouches_for(&checked));
        for other in [
            FileStamp {
                bytes: 11,
                ..checked
            },
            FileStamp {
                inode: 3,
                ..checked
            },
            FileStamp {
                device: 9,
                ..checked
            },
            FileStamp {
                modified: NsTime {
                    secs: 100,
                    nanos: 501,
                },
                ..checked
            },
            FileStamp {
                changed: NsTime {
                    secs: 100,
                    nanos: 499,
                },
                ..checked
            },
        ] {
            assert!(!checked.vouches_for(&other), "{other:?}");
        }
        // Written in the second before its check, or changed then: racy.
        let racy = stamp(109, 100, 110);
        assert!(!racy.vouches_for(&racy));
        let racy = stamp(100, 109, 110);
        assert!(!racy.vouches_for(&racy));
    }

    #[test]
    fn times_are_strings_to_the_nanosecond_and_bad_ones_are_refused() {
        let time = NsTime {
            secs: 1_795_391_999,
            nanos: 7,
        };
        let json = serde_json::to_string(&time).unwrap();
        assert_eq!(json, r#""1795391999.000000007""#);
        assert_eq!(serde_json::from_str::<NsTime>(&json).unwrap(), time);
        assert_eq!(
            "-1.999999999".parse::<NsTime>(),
            Ok(NsTime {
                secs: -1,
                nanos: 999_999_999
            })
        );
        for bad in [
            "",
            "1",
            "1.5",
            "1.0000000000",
            ".000000000",
            "1.00000000x",
            "+1.000000000",
            "1e3.000000000",
            "99999999999999999999.000000000",
            "--1.000000000",
        ] {
            assert!(bad.parse::<NsTime>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn check_names_are_kebab_case_in_json() {
        let json = serde_json::to_string(&vec![CheckName::SlmContainer, CheckName::ArtifactSha256])
            .unwrap();
        assert_eq!(json, r#"["slm-container","artifact-sha256"]"#);
    }

    #[test]
    fn source_is_tagged_by_kind() {
        let json = serde_json::to_value(ReceiptSource::LocalFile).unwrap();
        assert_eq!(json, serde_json::json!({ "kind": "local-file" }));
        let peers = ReceiptSource::Peers(TransferSummary::default());
        let json = serde_json::to_value(&peers).unwrap();
        assert_eq!(json["kind"], "peers");
        assert_eq!(json["chunks_fetched"], 0);
    }
}
