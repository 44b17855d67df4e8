//! The state file `minimodel-partial-v0` (`docs/formats.md`, section
//! "Partial download state"): what a partial download has verified, bound
//! to its manifest and sealed with a checksum.
//!
//! [`parse_state`] checks everything before anything is trusted, in this
//! order: size, JSON syntax, `format`, the schema (no unknown, missing or
//! duplicate field), the geometry, the checkpoint time, the bitfield, the
//! hash count, the node list, the checksum, and last the Merkle knowledge
//! against the root. A file that fails is never partly used.

use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex, GeometryError};
use minimodel_verifier::manifest::{MAX_CHUNK_COUNT, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use minimodel_verifier::{Manifest, ModelId, Sha256Digest};
use minimodel_wire::HaveBitfield;
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use super::error::StateError;
use super::knowledge::{ChunkKnowledge, SavedNode};

/// The `format` of a state file.
pub const STATE_FORMAT: &str = "minimodel-partial-v0";

/// Largest state file read: 500,000 chunk hashes and as many tree nodes fit
/// in well under this.
pub const MAX_STATE_BYTES: usize = 128 << 20;

/// What a state file is bound to: the artifact a manifest describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBinding {
    /// `model-id`.
    pub model_id: ModelId,
    /// `artifact-bytes`.
    pub artifact_bytes: u64,
    /// `artifact-sha256`.
    pub artifact_sha256: Sha256Digest,
    /// `chunk-size`.
    pub chunk_size: u32,
    /// `chunk-count`.
    pub chunk_count: u32,
    /// `merkle-root`.
    pub merkle_root: Sha256Digest,
    /// The chunks' lengths when the manifest's scheme lists them
    /// (`slm-parts-merkle-v0`), from its checked chunk list; not in the
    /// state file (the root it is bound to determines them) and not
    /// compared by [`StateBinding::first_difference`].
    pub listed: Option<ChunkGeometry>,
}

impl StateBinding {
    /// The binding of the artifact `manifest` describes, when its chunks
    /// are fixed-size.
    pub fn of_manifest(manifest: &Manifest) -> Result<Self, GeometryError> {
        Self::of_download(manifest, None)
    }

    /// The binding of the artifact `manifest` describes, cut as `listed`
    /// (the geometry of its checked chunk list) when its scheme lists its
    /// chunks, which it must then be given.
    pub fn of_download(
        manifest: &Manifest,
        listed: Option<&ChunkGeometry>,
    ) -> Result<Self, GeometryError> {
        let geometry = match listed {
            Some(listed) if manifest.chunks.scheme.is_listed() => {
                if listed.artifact_bytes() != manifest.artifact_bytes
                    || listed.chunk_size() != manifest.chunks.chunk_size
                    || u64::from(listed.chunk_count()) != manifest.chunks.chunk_count
                {
                    return Err(GeometryError::ListedTotal {
                        listed: listed.artifact_bytes(),
                        artifact_bytes: manifest.artifact_bytes,
                    });
                }
                listed.clone()
            }
            _ => ChunkGeometry::of_manifest(manifest)?,
        };
        Ok(Self {
            model_id: manifest.model_id.clone(),
            artifact_bytes: manifest.artifact_bytes,
            artifact_sha256: manifest.artifact_sha256,
            chunk_size: geometry.chunk_size(),
            chunk_count: geometry.chunk_count(),
            merkle_root: manifest.chunks.merkle_root,
            listed: geometry.is_listed().then_some(geometry),
        })
    }

    /// The first field that differs from `other`, if any.
    pub fn first_difference(&self, other: &StateBinding) -> Option<&'static str> {
        if self.model_id != other.model_id {
            Some("model_id")
        } else if self.artifact_bytes != other.artifact_bytes {
            Some("artifact_bytes")
        } else if self.artifact_sha256 != other.artifact_sha256 {
            Some("artifact_sha256")
        } else if self.chunk_size != other.chunk_size {
            Some("chunk_size")
        } else if self.chunk_count != other.chunk_count {
            Some("chunk_count")
        } else if self.merkle_root != other.merkle_root {
            Some("merkle_root")
        } else {
            None
        }
    }

    /// The chunk geometry.
    pub fn geometry(&self) -> Result<ChunkGeometry, GeometryError> {
        match &self.listed {
            Some(listed) => Ok(listed.clone()),
            None => ChunkGeometry::new(self.artifact_bytes, self.chunk_size),
        }
    }
}

/// Counters kept over every run of one download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeCounters {
    /// Runs that opened this download (the first one included).
    pub runs: u64,
    /// Chunks fetched, verified and checkpointed, over all runs.
    pub chunks_fetched: u64,
    /// Their bytes.
    pub bytes_fetched: u64,
    /// Verified chunks later found bad and dropped (by a recheck or
    /// `drop_chunk`), over all runs.
    pub chunks_dropped: u64,
}

/// A checked state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialState {
    /// The artifact it belongs to.
    pub binding: StateBinding,
    /// SHA-256 of the manifest file it was written under.
    pub manifest_sha256: Sha256Digest,
    /// +1 per checkpoint.
    pub generation: u64,
    /// When it was written, RFC 3339 UTC.
    pub checkpoint_at: String,
    /// Counters over all runs.
    pub counters: ResumeCounters,
    /// Verified chunks, their hashes and the Merkle nodes.
    pub knowledge: ChunkKnowledge,
}

impl PartialState {
    /// Verified chunks.
    pub fn chunks_verified(&self) -> u32 {
        self.knowledge.verified().count_ones()
    }

    /// Bytes of the verified chunks.
    pub fn bytes_verified(&self) -> u64 {
        let Ok(geometry) = self.binding.geometry() else {
            return 0;
        };
        // Listed chunks not bound to their lengths: not counted with the
        // fixed cut's.
        if geometry.chunk_count() != self.binding.chunk_count {
            return 0;
        }
        self.knowledge
            .verified()
            .iter_ones()
            .filter_map(|index| geometry.chunk_len(ChunkIndex(index.0)))
            .map(u64::from)
            .sum()
    }

    /// The file bytes ([`StateContent::encode`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        StateContent {
            binding: self.binding.clone(),
            manifest_sha256: self.manifest_sha256,
            generation: self.generation,
            checkpoint_at: self.checkpoint_at.clone(),
            counters: self.counters,
            verified: self.knowledge.verified().clone(),
            chunk_hashes: self.knowledge.verified_hashes(),
            tree_nodes: self.knowledge.extra_nodes(),
        }
        .encode()
    }
}

/// Everything a checkpoint writes, taken from a download at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateContent {
    /// The artifact.
    pub binding: StateBinding,
    /// The manifest file's SHA-256.
    pub manifest_sha256: Sha256Digest,
    /// Generation.
    pub generation: u64,
    /// Time, RFC 3339 UTC.
    pub checkpoint_at: String,
    /// Counters.
    pub counters: ResumeCounters,
    /// Verified chunks.
    pub verified: HaveBitfield,
    /// Their chunk hashes in increasing chunk order.
    pub chunk_hashes: Vec<Sha256Digest>,
    /// The extra tree nodes ([`ChunkKnowledge::extra_nodes`]).
    pub tree_nodes: Vec<SavedNode>,
}

impl StateContent {
    /// The file: the canonical content (compact JSON, fields in spec
    /// order) with `checksum` as its last field, and a final LF.
    pub fn encode(&self) -> Vec<u8> {
        let mut repr = StateRepr {
            format: STATE_FORMAT.to_owned(),
            model_id: self.binding.model_id.clone(),
            artifact_bytes: self.binding.artifact_bytes,
            artifact_sha256: self.binding.artifact_sha256,
            chunk_size: self.binding.chunk_size,
            chunk_count: self.binding.chunk_count,
            merkle_root: self.binding.merkle_root,
            manifest_sha256: self.manifest_sha256,
            generation: self.generation,
            checkpoint_at: self.checkpoint_at.clone(),
            runs: self.counters.runs,
            chunks_fetched: self.counters.chunks_fetched,
            bytes_fetched: self.counters.bytes_fetched,
            chunks_dropped: self.counters.chunks_dropped,
            verified: to_hex(self.verified.as_bytes()),
            chunk_hashes: self.chunk_hashes.clone(),
            tree_nodes: self.tree_nodes.clone(),
            checksum: None,
        };
        repr.checksum = Some(repr.content_checksum());
        let mut bytes = repr.to_json();
        bytes.push(b'\n');
        bytes
    }
}

/// The file as JSON, field by field in spec order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateRepr {
    pub(super) format: String,
    pub(super) model_id: ModelId,
    pub(super) artifact_bytes: u64,
    pub(super) artifact_sha256: Sha256Digest,
    pub(super) chunk_size: u32,
    pub(super) chunk_count: u32,
    pub(super) merkle_root: Sha256Digest,
    pub(super) manifest_sha256: Sha256Digest,
    pub(super) generation: u64,
    pub(super) checkpoint_at: String,
    pub(super) runs: u64,
    pub(super) chunks_fetched: u64,
    pub(super) bytes_fetched: u64,
    pub(super) chunks_dropped: u64,
    pub(super) verified: String,
    pub(super) chunk_hashes: Vec<Sha256Digest>,
    pub(super) tree_nodes: Vec<SavedNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) checksum: Option<Sha256Digest>,
}

impl StateRepr {
    /// Compact JSON of the fields, in order; `checksum` only when set.
    pub(super) fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, integers and arrays cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of the canonical content: every field but `checksum`.
    pub(super) fn content_checksum(&self) -> Sha256Digest {
        let content = StateRepr {
            checksum: None,
            ..self.clone()
        };
        Sha256Digest::of(&content.to_json())
    }
}

/// Only the `format` field, to refuse unknown versions before the schema.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<serde_json::Value>,
}

fn json_error(error: serde_json::Error) -> StateError {
    match error.classify() {
        Category::Data => StateError::Schema(error.to_string()),
        Category::Io | Category::Syntax | Category::Eof => StateError::Syntax(error.to_string()),
    }
}

/// Reads and checks a state file (rules in the module docs and in
/// `docs/formats.md`). Never panics, whatever the bytes.
pub fn parse_state(bytes: &[u8]) -> Result<PartialState, StateError> {
    if bytes.is_empty() {
        return Err(StateError::Empty);
    }
    if bytes.len() > MAX_STATE_BYTES {
        return Err(StateError::TooLarge { len: bytes.len() });
    }
    // serde reads a struct from an array too; a state is an object.
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|&byte| byte == b'[') {
        return Err(StateError::Schema(
            "a state file is a JSON object".to_owned(),
        ));
    }
    let probe: FormatProbe = serde_json::from_slice(bytes).map_err(json_error)?;
    match probe.format {
        None => return Err(StateError::MissingFormat),
        Some(serde_json::Value::String(format)) if format == STATE_FORMAT => {}
        Some(serde_json::Value::String(found)) => {
            return Err(StateError::UnsupportedFormat {
                found: found.chars().take(80).collect(),
            });
        }
        Some(_) => return Err(StateError::Schema("format is not a string".to_owned())),
    }
    let repr: StateRepr = serde_json::from_slice(bytes).map_err(json_error)?;
    check_geometry(&repr)?;
    check_time(&repr.checkpoint_at)?;
    let verified = from_hex(&repr.verified)
        .ok_or_else(|| StateError::Bitfield("not lowercase hex".to_owned()))
        .and_then(|raw| {
            HaveBitfield::from_bytes(raw, repr.chunk_count)
                .map_err(|error| StateError::Bitfield(error.to_string()))
        })?;
    if repr.chunk_hashes.len() != verified.count_ones() as usize {
        return Err(StateError::ChunkHashCount {
            expected: verified.count_ones(),
            found: repr.chunk_hashes.len(),
        });
    }
    check_nodes(&repr.tree_nodes, repr.chunk_count)?;
    let stored = repr.checksum.ok_or(StateError::MissingChecksum)?;
    let computed = repr.content_checksum();
    if stored != computed {
        return Err(StateError::Checksum { stored, computed });
    }
    let knowledge = ChunkKnowledge::restore(
        repr.merkle_root,
        verified,
        &repr.chunk_hashes,
        &repr.tree_nodes,
    )?;
    Ok(PartialState {
        binding: StateBinding {
            model_id: repr.model_id,
            artifact_bytes: repr.artifact_bytes,
            artifact_sha256: repr.artifact_sha256,
            chunk_size: repr.chunk_size,
            chunk_count: repr.chunk_count,
            merkle_root: repr.merkle_root,
            listed: None,
        },
        manifest_sha256: repr.manifest_sha256,
        generation: repr.generation,
        checkpoint_at: repr.checkpoint_at,
        counters: ResumeCounters {
            runs: repr.runs,
            chunks_fetched: repr.chunks_fetched,
            bytes_fetched: repr.bytes_fetched,
            chunks_dropped: repr.chunks_dropped,
        },
        knowledge,
    })
}

fn check_geometry(repr: &StateRepr) -> Result<(), StateError> {
    let fail = |reason| StateError::Geometry {
        artifact_bytes: repr.artifact_bytes,
        chunk_size: repr.chunk_size,
        chunk_count: repr.chunk_count,
        reason,
    };
    if !repr.chunk_size.is_power_of_two()
        || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&repr.chunk_size)
    {
        return Err(fail(
            "the chunk size must be a power of two from 16 KiB to 16 MiB",
        ));
    }
    let geometry = ChunkGeometry::new(repr.artifact_bytes, repr.chunk_size)
        .map_err(|_| fail("the artifact must have at least one byte"))?;
    if u64::from(repr.chunk_count) > MAX_CHUNK_COUNT {
        return Err(fail("more than 500,000 chunks"));
    }
    // Fixed-size chunks make exactly the fewest; listed ones (1 byte to
    // the chunk size each) up to one a byte. The manifest's binding says
    // which.
    if repr.chunk_count < geometry.chunk_count()
        || u64::from(repr.chunk_count) > repr.artifact_bytes
    {
        return Err(fail(
            "the chunk count must be from ceil(artifact_bytes / chunk_size) to artifact_bytes",
        ));
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as `now_rfc3339` writes it.
fn check_time(text: &str) -> Result<(), StateError> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 20
        && bytes
            .iter()
            .enumerate()
            .all(|(position, &byte)| match position {
                4 | 7 => byte == b'-',
                10 => byte == b'T',
                13 | 16 => byte == b':',
                19 => byte == b'Z',
                _ => byte.is_ascii_digit(),
            });
    let field = |range: std::ops::Range<usize>| -> u32 {
        text.get(range)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(u32::MAX)
    };
    if shape_ok
        && (1..=12).contains(&field(5..7))
        && (1..=31).contains(&field(8..10))
        && field(11..13) < 24
        && field(14..16) < 60
        && field(17..19) < 61
    {
        Ok(())
    } else {
        Err(StateError::Time(text.chars().take(40).collect()))
    }
}

/// Strictly increasing `(level, position)`, below the root, in range.
fn check_nodes(nodes: &[SavedNode], chunk_count: u32) -> Result<(), StateError> {
    let mut widths = vec![chunk_count.max(1)];
    while let Some(&width) = widths.last().filter(|&&width| width > 1) {
        widths.push(width.div_ceil(2));
    }
    let mut previous: Option<(u32, u32)> = None;
    for (entry, &(level, position, _)) in nodes.iter().enumerate() {
        let fail = |reason| StateError::TreeNode {
            entry,
            level,
            position,
            reason,
        };
        if level as usize + 1 >= widths.len() {
            return Err(fail("not a level below the root"));
        }
        if position >= widths[level as usize] {
            return Err(fail("no such position at this level"));
        }
        if previous.is_some_and(|previous| previous >= (level, position)) {
            return Err(fail(
                "nodes must be in strictly increasing (level, position) order",
            ));
        }
        previous = Some((level, position));
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
