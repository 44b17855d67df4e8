//! Mirrors: HTTPS copies of the artifact that a person named (on the
//! command line, in the page, in an offer or ticket they were given), as
//! sources of a download beside its peers. Never a project server, never
//! from a manifest or a catalog entry.
//!
//! What the core decides about a mirror (`docs/swarm.md`, "Mirrors"):
//! - it joins the download once its driver has found it usable (the
//!   artifact's chunk list read beside it and checked against the Merkle
//!   root, the file's length the manifest's) and its validators (`ETag`,
//!   `Last-Modified`) are those an earlier run of the download saw, if one
//!   saw it ([`compare_validators`]): a file that changed between runs is
//!   another file;
//! - the picker counts it as holding every chunk (rarest first sees a
//!   chunk only mirrors hold as the rarest), and the download asks it for
//!   byte ranges of whole chunks through the same picker, for what peers
//!   cannot supply fast enough: chunks no connected peer holds, chunks
//!   held up at a much slower peer, and anything when peers together are
//!   much slower than the mirror alone; never raced against peers
//!   (`crate::download`'s mirror rules);
//! - every chunk from it passes the same Merkle check as a peer's before
//!   it counts, and a serving download announces it to its peers at once;
//! - a mirror that lies ([`MirrorFault`]: a range that fails the check, a
//!   range not asked, `Range` ignored, another file, a redirect off HTTPS)
//!   is dropped for this download with the reason, in the receipt and the
//!   events; one that is only slow or failing for a while
//!   ([`MirrorTrouble`]) is asked again after a back-off and never blamed.
//!
//! The driver speaks HTTP; this module knows nothing of it but the typed
//! outcomes the driver reports.

use std::fmt;
use std::time::{Duration, Instant};

use minimodel_verifier::Sha256Digest;
use minimodel_wire::{HaveBitfield, PeerId};
use serde::Serialize;

use crate::session::{PeerDownload, PeerStats};
use crate::upload::TokenBucket;

/// A mirror of the download, as its driver numbers them (its place in the
/// list the person gave, from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MirrorId(pub u16);

impl fmt::Display for MirrorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mirror {}", self.0)
    }
}

/// What a response must carry for the file to be the one an earlier run
/// saw: its validators, as the mirror sent them (each at most
/// [`MAX_VALIDATOR_LEN`] bytes, else the driver leaves it out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Validators {
    /// The `ETag`, as sent (strong or weak).
    pub etag: Option<String>,
    /// The `Last-Modified` date, as sent.
    pub last_modified: Option<String>,
}

/// The longest validator kept.
pub const MAX_VALIDATOR_LEN: usize = 256;

impl Validators {
    /// Whether the mirror sent neither.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// Whether a mirror's file is the one an earlier run saw at the same URL:
/// an `ETag` both runs have must be equal; without one, a `Last-Modified`
/// both have must be equal. A validator only one run has proves nothing
/// either way (a mirror may start or stop sending one), and neither do
/// none: the Merkle check of every chunk still holds.
pub fn compare_validators(before: &Validators, now: &Validators) -> Result<(), MirrorFault> {
    if let (Some(old), Some(new)) = (&before.etag, &now.etag) {
        if old != new {
            return Err(MirrorFault::Changed {
                validator: "ETag",
                before: old.clone(),
                now: new.clone(),
            });
        }
        return Ok(());
    }
    if let (Some(old), Some(new)) = (&before.last_modified, &now.last_modified)
        && old != new
    {
        return Err(MirrorFault::Changed {
            validator: "Last-Modified",
            before: old.clone(),
            now: new.clone(),
        });
    }
    Ok(())
}

/// A mirror's lie: it is dropped for this download, named with the reason
/// in the events and the receipt. Each variant is proven by what the
/// mirror itself sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MirrorFault {
    /// The bytes of a range it sent for a chunk are not that chunk: they
    /// fail the Merkle check (`expected` is the chunk's SHA-256 in the
    /// artifact's chunk list, `got` that of the bytes).
    #[error(
        "chunk {chunk} failed its Merkle check: expected SHA-256 {expected}, got {got} (the mirror's range is not that chunk)"
    )]
    BadChunk {
        /// The chunk.
        chunk: u32,
        /// Its SHA-256 by the chunk list.
        expected: Sha256Digest,
        /// The SHA-256 of what came.
        got: Sha256Digest,
    },
    /// It answered a range request with another range.
    #[error(
        "chunk {chunk}: asked for bytes {asked_start}-{asked_end}, the mirror sent {got} (a range not asked)"
    )]
    UnaskedRange {
        /// The chunk.
        chunk: u32,
        /// First byte asked.
        asked_start: u64,
        /// Last byte asked (inclusive, as HTTP counts).
        asked_end: u64,
        /// What its `Content-Range` named, as sent (shortened).
        got: String,
    },
    /// It answered a range request with the whole file (`200`): it
    /// ignores `Range`.
    #[error(
        "chunk {chunk}: the mirror ignored the Range header and sent the whole file (status 200)"
    )]
    IgnoredRange {
        /// The chunk asked for.
        chunk: u32,
    },
    /// It serves another file: its length is not the artifact's.
    #[error("the mirror serves another file: {got} bytes, the artifact has {expected}")]
    OtherLength {
        /// The artifact's bytes.
        expected: u64,
        /// The length it names.
        got: u64,
    },
    /// It serves another file: its chunk list does not lead to the
    /// manifest's Merkle root.
    #[error(
        "the mirror serves another file: its chunk list does not lead to the manifest's Merkle root"
    )]
    OtherChunkList,
    /// Its file changed: a validator is not what it was (an earlier run,
    /// or an earlier response of this run, saw another).
    #[error("the mirror's file changed: {validator} was {before}, now {now}")]
    Changed {
        /// `ETag` or `Last-Modified`.
        validator: &'static str,
        /// What was seen before.
        before: String,
        /// What it sends now.
        now: String,
    },
    /// It redirected to a URL that is not HTTPS (and plain HTTP was not
    /// allowed), or to a host a mirror may not be.
    #[error("the mirror redirected to {to}, which a mirror may not be: {why}")]
    BadRedirect {
        /// Where (scheme and host only: a path or query may hold a token).
        to: String,
        /// Why not.
        why: String,
    },
}

impl MirrorFault {
    /// The chunk it names, if any.
    pub fn chunk(&self) -> Option<u32> {
        match self {
            MirrorFault::BadChunk { chunk, .. }
            | MirrorFault::UnaskedRange { chunk, .. }
            | MirrorFault::IgnoredRange { chunk } => Some(*chunk),
            _ => None,
        }
    }
}

/// A mirror that failed for a while, or for reasons that are not a lie:
/// asked again after a back-off, never blamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MirrorTrouble {
    /// No response, or no progress, within the driver's timeout.
    #[error("the mirror did not answer in time")]
    Timeout,
    /// The connection failed (refused, reset, TLS, DNS): the transport's
    /// words.
    #[error("connection failed: {reason}")]
    Connection {
        /// Why.
        reason: String,
    },
    /// A status that may pass (408, 429, 5xx).
    #[error("the mirror answered {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// The body ended before the range was whole.
    #[error("the response ended after {got} of {expected} bytes")]
    Short {
        /// Bytes expected.
        expected: u64,
        /// Bytes that came.
        got: u64,
    },
}

/// A mirror that cannot serve this download, without a lie: dropped for
/// this run, not blamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MirrorUnusable {
    /// A status that says the file is not there or not for us (401, 403,
    /// 404, 410, ...).
    #[error("the mirror answered {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// No chunk list could be read beside it (`URL.chunk-list`): its
    /// chunks cannot be checked one by one.
    #[error(
        "no chunk list beside the mirror's file ({reason}); its chunks cannot be checked one by one"
    )]
    NoChunkList {
        /// Why.
        reason: String,
    },
    /// TLS failed on the certificate (not one the system trusts for the
    /// mirror's name), or no trusted roots could be read.
    #[error("TLS: {reason}")]
    Tls {
        /// Why, in the TLS library's words.
        reason: String,
    },
    /// Too many redirects in a row.
    #[error("more than {max} redirects")]
    TooManyRedirects {
        /// The limit.
        max: u32,
    },
    /// It kept failing: the download went on without it.
    #[error("it failed {failures} times in a row: {last}")]
    GaveUp {
        /// Failures in a row.
        failures: u32,
        /// The last one.
        last: MirrorTrouble,
    },
}

/// Why a mirror left the download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "kebab-case")]
pub enum MirrorEnd {
    /// It lied: blamed.
    Dropped {
        /// What it did.
        fault: MirrorFault,
    },
    /// It cannot serve this download.
    Unusable {
        /// Why.
        reason: MirrorUnusable,
    },
}

impl fmt::Display for MirrorEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorEnd::Dropped { fault } => write!(f, "dropped: {fault}"),
            MirrorEnd::Unusable { reason } => write!(f, "not used: {reason}"),
        }
    }
}

/// What a mirror did for the download: the receipt's and the transfer
/// log's entry for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorFigures {
    /// Which.
    pub mirror: MirrorId,
    /// How the person wrote it, without its query (which may hold a
    /// token): `https://host/path`.
    pub label: String,
    /// What it delivered (chunks and bytes verified first, duplicates,
    /// bad chunks, requests that timed out).
    pub download: PeerStats,
    /// Why it left, if it did.
    pub end: Option<MirrorEnd>,
}

/// How a mirror's chunk came out of its check, from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorChunkOutcome {
    /// It passed the Merkle check and is written.
    Stored,
    /// It failed the check: what the chunk list expected, what came.
    Bad {
        /// The chunk's SHA-256 by the chunk list.
        expected: Sha256Digest,
        /// The SHA-256 of the bytes.
        got: Sha256Digest,
    },
    /// It passed but could not be written.
    StoreFailed(crate::ends::Fault),
}

/// What went wrong with a mirror's request, from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorFailure {
    /// A lie: the mirror is dropped.
    Fault(MirrorFault),
    /// A passing failure: back-off, asked again.
    Trouble(MirrorTrouble),
    /// Not for us: dropped without blame.
    Unusable(MirrorUnusable),
}

pub use crate::config::MirrorConfig;

/// One mirror as the download sees it: its requests and rate (tracked as
/// a peer's are), its back-off, its cap.
#[derive(Debug, Clone)]
pub(crate) struct MirrorSession {
    pub(crate) session: PeerDownload,
    /// Failures in a row (reset by a verified chunk).
    pub(crate) failures: u32,
    /// Its own cap, when set.
    pub(crate) bucket: Option<TokenBucket>,
    /// Requests whose responses have begun.
    pub(crate) started: std::collections::BTreeSet<u32>,
}

/// The id a mirror's session is filed under: no peer's (a peer id is a
/// public key's digest, never all `0xFF`).
pub(crate) fn session_id(mirror: u16) -> PeerId {
    let mut id = [0xFF; 32];
    id[..2].copy_from_slice(&mirror.to_be_bytes());
    PeerId(id)
}

impl MirrorSession {
    pub(crate) fn new(
        mirror: u16,
        chunk_count: u32,
        config: &MirrorConfig,
        burst: u64,
        now: Instant,
    ) -> Self {
        Self {
            session: PeerDownload::new(session_id(mirror), HaveBitfield::full(chunk_count), now),
            failures: 0,
            bucket: config
                .max_rate
                .map(|rate| TokenBucket::new(rate, burst, now)),
            started: std::collections::BTreeSet::new(),
        }
    }

    /// The back-off after `failures` failures in a row.
    pub(crate) fn backoff(config: &MirrorConfig, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        config
            .first_backoff
            .saturating_mul(1 << doublings)
            .min(config.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etag(tag: &str) -> Validators {
        Validators {
            etag: Some(tag.into()),
            last_modified: None,
        }
    }

    #[test]
    fn a_changed_etag_is_another_file_and_a_missing_one_proves_nothing() {
        assert_eq!(compare_validators(&etag("\"a\""), &etag("\"a\"")), Ok(()));
        let changed = compare_validators(&etag("\"a\""), &etag("\"b\"")).unwrap_err();
        assert_eq!(
            changed.to_string(),
            "the mirror's file changed: ETag was \"a\", now \"b\""
        );
        assert_eq!(
            compare_validators(&etag("\"a\""), &Validators::default()),
            Ok(())
        );
        assert_eq!(
            compare_validators(&Validators::default(), &etag("\"a\"")),
            Ok(())
        );
    }

    #[test]
    fn last_modified_counts_only_without_an_etag_on_both_sides() {
        let dated = |date: &str, tag: Option<&str>| Validators {
            etag: tag.map(Into::into),
            last_modified: Some(date.into()),
        };
        let monday = "Mon, 01 Jan 2024 00:00:00 GMT";
        let tuesday = "Tue, 02 Jan 2024 00:00:00 GMT";
        assert!(matches!(
            compare_validators(&dated(monday, None), &dated(tuesday, None)),
            Err(MirrorFault::Changed {
                validator: "Last-Modified",
                ..
            })
        ));
        // The same ETag wins over a changed date (a CDN that stamps its
        // own copy).
        assert_eq!(
            compare_validators(&dated(monday, Some("x")), &dated(tuesday, Some("x"))),
            Ok(())
        );
        assert_eq!(
            compare_validators(&dated(monday, None), &dated(monday, None)),
            Ok(())
        );
    }

    #[test]
    fn back_off_doubles_up_to_its_cap() {
        let config = MirrorConfig::default();
        let backoffs: Vec<u64> = (1..=9)
            .map(|n| MirrorSession::backoff(&config, n).as_secs())
            .collect();
        assert_eq!(backoffs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_fault_names_chunk_expected_and_got() {
        let fault = MirrorFault::BadChunk {
            chunk: 7,
            expected: Sha256Digest([0xAA; 32]),
            got: Sha256Digest([0xBB; 32]),
        };
        let text = fault.to_string();
        assert!(text.contains("chunk 7"), "{text}");
        assert!(text.contains(&"aa".repeat(32)), "{text}");
        assert!(text.contains(&"bb".repeat(32)), "{text}");
        let json = serde_json::to_value(&fault).unwrap();
        assert_eq!(json["kind"], "bad-chunk");
        assert_eq!(json["expected"], "aa".repeat(32));
        assert_eq!(fault.chunk(), Some(7));
    }
}
