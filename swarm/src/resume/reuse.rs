//! Reuse: chunks of a new version copied from versions already on this
//! machine, so that only what changed moves (`docs/swarm.md`, "Reusing
//! older versions").
//!
//! Two halves:
//! - [`plan_reuse`] decides, without I/O: which chunks of the new
//!   artifact, by their hash in its authenticated chunk list, can be read
//!   from which offset of which older file. Only files cut with the same
//!   chunk size count: a hash of a chunk of another size never matches a
//!   chunk of this one.
//! - [`PartialDownload::reuse_local`] is the thin shell: it learns each
//!   older file's chunk hashes (its chunk list beside it, else by hashing
//!   it), plans, reads each planned chunk and checks it with the new
//!   artifact's Merkle proof exactly as a peer's chunk is checked. A chunk
//!   that fails its proof (the older file changed since its chunk list was
//!   written) is not written and is left to the peers.
//!
//! What it is not: it trusts no chunk list, no file name and no manifest
//! of an older version; they only say where to look. The new chunk list
//! itself counts only when it hashes to the manifest's Merkle root
//! ([`NewChunkList::check`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::{ChunkData, ChunkGeometry, ChunkIndex};
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::merkle::MerkleTree;
use minimodel_wire::HaveBitfield;

use super::PartialDownload;
use super::error::ResumeError;
use super::recheck::hash_chunks;
use crate::store::{FileStorage, Storage};

/// The chunk hashes of one older file, cut with `chunk_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceChunks {
    /// Its chunk size.
    pub chunk_size: u32,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its parts cut at `chunk_size` (`slm-parts-merkle-v0`), when it was
    /// cut so; `None`: cut every `chunk_size` bytes.
    pub parts: Option<ChunkGeometry>,
    /// `H[i]` of its chunk `i`, as far as known (a chunk list may be stale:
    /// every copy is checked again).
    pub chunk_hashes: Vec<Sha256Digest>,
}

/// One chunk to copy: chunk `index` of the new artifact is believed to be
/// the `len` bytes at `offset` of source `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseCopy {
    /// The new artifact's chunk.
    pub index: ChunkIndex,
    /// Position of the source in the list given to [`plan_reuse`].
    pub source: usize,
    /// Where its bytes start in the source.
    pub offset: u64,
    /// How many bytes.
    pub len: u32,
}

/// Which chunks of the new artifact (cut as `geometry`, hashes
/// `new_hashes`) that are not in `have` can be read from `sources`: one
/// copy per chunk, from the first source (and its first offset) that holds
/// a chunk of the same size with the same hash, in chunk order. Sources
/// cut with another chunk size contribute nothing.
pub fn plan_reuse(
    geometry: &ChunkGeometry,
    new_hashes: &[Sha256Digest],
    have: &HaveBitfield,
    sources: &[SourceChunks],
) -> Vec<ReuseCopy> {
    let (cuts, known) = known_chunks(geometry.chunk_size(), sources);
    geometry
        .indices()
        .filter(|index| !have.get(minimodel_wire::ChunkIndex(index.0)))
        .filter_map(|index| {
            let hash = new_hashes.get(index.0 as usize)?;
            let len = geometry.chunk_len(index)?;
            let (source, old) = known.get(&(*hash, len))?;
            let offset = cuts[*source].as_ref()?.byte_range(*old)?.start;
            Some(ReuseCopy {
                index,
                source: *source,
                offset,
                len,
            })
        })
        .collect()
}

/// Where a chunk, by its hash and length, first appears among the
/// sources: the source and its chunk there.
type Known = HashMap<(Sha256Digest, u32), (usize, ChunkIndex)>;

/// Each source's chunk geometry (`None` for one cut with another chunk
/// size than `size`, or that cannot be cut), and where each chunk, by its
/// hash and length, first appears among them: the source and its chunk
/// there.
fn known_chunks(size: u32, sources: &[SourceChunks]) -> (Vec<Option<ChunkGeometry>>, Known) {
    let mut known = HashMap::new();
    let cuts: Vec<Option<ChunkGeometry>> = sources
        .iter()
        .map(|source| {
            if source.chunk_size != size {
                return None;
            }
            match &source.parts {
                Some(parts) => Some(parts.clone()),
                None => ChunkGeometry::new(source.bytes, source.chunk_size).ok(),
            }
        })
        .collect();
    for (source_index, (source, cut)) in sources.iter().zip(&cuts).enumerate() {
        let Some(cut) = cut else { continue };
        for (i, hash) in source.chunk_hashes.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let Some(len) = cut.chunk_len(ChunkIndex(i)) else {
                break;
            };
            known
                .entry((*hash, len))
                .or_insert((source_index, ChunkIndex(i)));
        }
    }
    (cuts, known)
}

/// The start of a new chunk that an older file may hold: chunk `index`'s
/// first `len` bytes are believed to be the `len` bytes at `offset` of
/// source `source`, so that a peer need send only the rest (a RequestFrom,
/// `docs/wire-protocol.md` 7.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixCopy {
    /// The new artifact's chunk.
    pub index: ChunkIndex,
    /// Position of the source in the list given to [`plan_prefixes`].
    pub source: usize,
    /// Where the start's bytes are in the source.
    pub offset: u64,
    /// How many bytes: fewer than the new chunk's.
    pub len: u32,
}

/// Which chunks of the new artifact, neither in `have` nor copied whole
/// (`copies`, [`plan_reuse`]'s plan), may begin with a chunk of an older
/// file: the chunk that follows, in that file, the chunk that the new
/// chunk before it is (the same hash and length), when it is shorter than
/// the new chunk. There an older version's part ended and the new
/// version's goes on: a tensor grown by rows, a file cut every chunk size
/// that grew at its end. Its bytes are likely the new chunk's start; only
/// the whole chunk's proof, once the rest has come, says whether they are.
pub fn plan_prefixes(
    geometry: &ChunkGeometry,
    new_hashes: &[Sha256Digest],
    have: &HaveBitfield,
    sources: &[SourceChunks],
    copies: &[ReuseCopy],
) -> Vec<PrefixCopy> {
    let (cuts, known) = known_chunks(geometry.chunk_size(), sources);
    let whole: std::collections::HashSet<u32> = copies.iter().map(|copy| copy.index.0).collect();
    geometry
        .indices()
        .skip(1)
        .filter(|index| !have.get(minimodel_wire::ChunkIndex(index.0)) && !whole.contains(&index.0))
        .filter_map(|index| {
            let before = ChunkIndex(index.0 - 1);
            let hash = new_hashes.get(before.0 as usize)?;
            let (source, old_before) = known.get(&(*hash, geometry.chunk_len(before)?))?;
            let cut = cuts[*source].as_ref()?;
            let old = ChunkIndex(old_before.0 + 1);
            let len = cut.chunk_len(old)?;
            if len >= geometry.chunk_len(index)? {
                return None;
            }
            Some(PrefixCopy {
                index,
                source: *source,
                offset: cut.byte_range(old)?.start,
                len,
            })
        })
        .collect()
}

/// The new artifact's chunk list, proven to hash to its manifest's Merkle
/// root (and to `chunk-list-sha256` when the manifest names one). Only
/// [`NewChunkList::check`] makes one. In a listed scheme
/// (`slm-parts-merkle-v0`) it also gives the chunks' lengths: the
/// download's geometry ([`NewChunkList::listed_geometry`]).
#[derive(Debug, Clone)]
pub struct NewChunkList {
    tree: MerkleTree,
    listed: Option<ChunkGeometry>,
}

/// Why a chunk list given for the new artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkListError {
    /// Not the chunk list format (`docs/merkle.md`) with the manifest's
    /// chunk count.
    #[error("not a chunk list of {count} chunks (one lowercase hex SHA-256 per line)")]
    Malformed {
        /// The manifest's chunk count.
        count: u32,
    },
    /// The file's SHA-256 is not the manifest's `chunk-list-sha256`.
    #[error("its SHA-256 is {found}, the manifest's chunk-list-sha256 is {expected}")]
    ListDigest {
        /// The manifest's.
        expected: Sha256Digest,
        /// The file's.
        found: Sha256Digest,
    },
    /// Its Merkle root is not the manifest's.
    #[error("its Merkle root is {found}, the manifest's is {expected}")]
    MerkleRoot {
        /// The manifest's.
        expected: Sha256Digest,
        /// The list's.
        found: Sha256Digest,
    },
    /// Not the listed form of the manifest's scheme.
    #[error("not the chunk list of `{scheme}`: {why}")]
    Listed {
        /// The scheme.
        scheme: &'static str,
        /// In words.
        why: String,
    },
    /// Hashes alone (a peer's answer) for a scheme whose list carries the
    /// chunks' lengths too.
    #[error("a list of hashes alone, and `{scheme}` needs each chunk's length")]
    NoLengths {
        /// The scheme.
        scheme: &'static str,
    },
    /// Lengths for a scheme whose chunks are cut at fixed size.
    #[error("a list with lengths, and `{scheme}` cuts chunks at a fixed size")]
    NotListed {
        /// The scheme.
        scheme: &'static str,
    },
}

impl NewChunkList {
    /// Checks a chunk list that came from a peer (a chunk list query's
    /// answer, `docs/wire-protocol.md` 8.7): hashes alone for a manifest
    /// cut at a fixed size ([`Self::from_hashes`]), each with its chunk's
    /// length for a listed one, whose file form is then checked exactly
    /// as a file's would be ([`Self::check`]: the lengths make the
    /// artifact, the text hashes to `chunk-list-sha256`, the hashes to
    /// the Merkle root).
    pub fn from_peer(
        manifest: &Manifest,
        hashes: &[[u8; 32]],
        lengths: Option<&[u32]>,
    ) -> Result<Self, ChunkListError> {
        let scheme = manifest.chunks.scheme;
        let Some(lengths) = lengths else {
            return Self::from_hashes(manifest, hashes);
        };
        if !scheme.is_listed() {
            return Err(ChunkListError::NotListed {
                scheme: scheme.name(),
            });
        }
        let count = u32::try_from(manifest.chunks.chunk_count).unwrap_or(u32::MAX);
        if hashes.len() != count as usize || lengths.len() != hashes.len() {
            return Err(ChunkListError::Malformed { count });
        }
        let mut text = String::with_capacity(hashes.len() * 75);
        for (hash, len) in hashes.iter().zip(lengths) {
            use std::fmt::Write as _;
            let _ = writeln!(text, "{} {len}", Sha256Digest(*hash).to_hex());
        }
        Self::check(manifest, text.as_bytes())
    }

    /// Checks a chunk list that came as hashes (a peer's answer to a
    /// chunk list query) against `manifest`, exactly as its file form
    /// would be ([`Self::check`]): as many as chunks, hashing to
    /// `chunk-list-sha256` when the manifest names one, leading to the
    /// Merkle root.
    pub fn from_hashes(manifest: &Manifest, hashes: &[[u8; 32]]) -> Result<Self, ChunkListError> {
        if manifest.chunks.scheme.is_listed() {
            return Err(ChunkListError::NoLengths {
                scheme: manifest.chunks.scheme.name(),
            });
        }
        let count = u32::try_from(manifest.chunks.chunk_count).unwrap_or(u32::MAX);
        if hashes.len() != count as usize {
            return Err(ChunkListError::Malformed { count });
        }
        let hashes: Vec<Sha256Digest> = hashes.iter().copied().map(Sha256Digest).collect();
        let text = minimodel_verifier::merkle::chunk_list_text(&hashes);
        Self::check(manifest, text.as_bytes())
    }

    /// Checks a chunk list file's bytes against `manifest`: in a listed
    /// scheme its form with lengths, which must make the artifact, its
    /// SHA-256 the manifest's `chunk-list-sha256` (which such a manifest
    /// always names) and its root the manifest's.
    pub fn check(manifest: &Manifest, bytes: &[u8]) -> Result<Self, ChunkListError> {
        let scheme = manifest.chunks.scheme;
        if scheme.is_listed() {
            let shape = minimodel_verifier::chunk_list::ListShape::of_manifest(manifest);
            let list = minimodel_verifier::chunk_list::ChunkList::parse(bytes, shape).map_err(
                |error| ChunkListError::Listed {
                    scheme: scheme.name(),
                    why: error.to_string(),
                },
            )?;
            let found = Sha256Digest::of(bytes);
            match manifest.chunks.chunk_list.as_ref().map(|list| list.sha256) {
                Some(expected) if expected == found => {}
                Some(expected) => return Err(ChunkListError::ListDigest { expected, found }),
                None => {
                    return Err(ChunkListError::Listed {
                        scheme: scheme.name(),
                        why: "the manifest names no chunk-list-sha256".to_owned(),
                    });
                }
            }
            let (hashes, geometry) = list.into_parts();
            let count = geometry.chunk_count();
            let tree = MerkleTree::from_chunk_hashes(hashes)
                .map_err(|_| ChunkListError::Malformed { count })?;
            if tree.root() != manifest.chunks.merkle_root {
                return Err(ChunkListError::MerkleRoot {
                    expected: manifest.chunks.merkle_root,
                    found: tree.root(),
                });
            }
            return Ok(Self {
                tree,
                listed: Some(geometry),
            });
        }
        Self::check_against(
            bytes,
            u32::try_from(manifest.chunks.chunk_count).unwrap_or(u32::MAX),
            manifest.chunks.merkle_root,
            manifest.chunks.chunk_list.as_ref().map(|list| list.sha256),
        )
    }

    /// Checks a chunk list file's bytes: `count` lines (`docs/merkle.md`),
    /// the file's SHA-256 `list_sha256` when given, and the tree's root
    /// `merkle_root`.
    pub fn check_against(
        bytes: &[u8],
        count: u32,
        merkle_root: Sha256Digest,
        list_sha256: Option<Sha256Digest>,
    ) -> Result<Self, ChunkListError> {
        // 65 bytes a line: a longer file is not one, and is not parsed.
        if bytes.len() as u64 != 65 * u64::from(count) {
            return Err(ChunkListError::Malformed { count });
        }
        let hashes = super::plan::parse_chunk_list(bytes, count)
            .ok_or(ChunkListError::Malformed { count })?;
        if let Some(expected) = list_sha256 {
            let found = Sha256Digest::of(bytes);
            if found != expected {
                return Err(ChunkListError::ListDigest { expected, found });
            }
        }
        let tree = MerkleTree::from_chunk_hashes(hashes)
            .map_err(|_| ChunkListError::Malformed { count })?;
        if tree.root() != merkle_root {
            return Err(ChunkListError::MerkleRoot {
                expected: merkle_root,
                found: tree.root(),
            });
        }
        Ok(Self { tree, listed: None })
    }

    /// The chunk hashes.
    pub fn chunk_hashes(&self) -> &[Sha256Digest] {
        self.tree.chunk_hashes()
    }

    /// The chunks' lengths as the list gives them, for a manifest whose
    /// scheme lists them; `None` for fixed-size chunks.
    pub fn listed_geometry(&self) -> Option<&ChunkGeometry> {
        self.listed.as_ref()
    }

    /// The list in its file form (`docs/merkle.md`): what [`Self::check`]
    /// reads back as this list.
    pub fn file_form(&self) -> String {
        match &self.listed {
            Some(geometry) => {
                minimodel_verifier::chunk_list::list_text(self.chunk_hashes(), geometry)
            }
            None => minimodel_verifier::merkle::chunk_list_text(self.chunk_hashes()),
        }
    }
}

/// What [`PartialDownload::reuse_local`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReuseReport {
    /// Older files looked at with the download's chunk size.
    pub sources_used: u32,
    /// Older files skipped: another chunk size, or unreadable (with why).
    pub sources_skipped: Vec<(PathBuf, String)>,
    /// Chunks copied and verified.
    pub chunks_reused: u64,
    /// Their bytes.
    pub bytes_reused: u64,
    /// Chunks planned whose bytes failed the proof (left to the peers).
    pub chunks_failed: u64,
    /// Chunks whose start an older file may hold ([`plan_prefixes`]):
    /// peers that speak v3 are asked for the rest only.
    pub starts_held: u64,
}

/// The chunk hashes of the older file at `path` cut as the new artifact
/// `like` is: in `chunk_size` pieces, or, when `like` is listed
/// (`slm-parts-merkle-v0`), its own `.slm` parts cut at that size (a file
/// that is not a valid `.slm` has no parts to cut, and is skipped). From
/// its chunk list beside it (`<stem>.chunk-list`, as a delivered download
/// leaves it) when that is the list of this cut, else by hashing the file.
/// The list is not trusted: each copy is checked again.
pub fn source_chunks(path: &Path, like: &ChunkGeometry) -> std::io::Result<SourceChunks> {
    let chunk_size = like.chunk_size();
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let bytes = metadata.len();
    let invalid = |error: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error.to_string())
    };
    let parts = if like.is_listed() {
        let slm = minimodel_verifier::slm::read_slm_file(path)
            .map_err(|error| invalid(&format!("its .slm parts are unknown ({error})")))?;
        Some(
            ChunkGeometry::slm_parts(bytes, chunk_size, &slm.part_starts)
                .map_err(|error| invalid(&error))?,
        )
    } else {
        None
    };
    let geometry = match &parts {
        Some(parts) => parts.clone(),
        None => ChunkGeometry::new(bytes, chunk_size).map_err(|error| invalid(&error))?,
    };
    let list = path.with_extension("chunk-list");
    // Beside a file given for reuse: read as any named file is, so that a
    // FIFO or a device under its name is passed over, not waited on.
    let input = crate::input::Input::chunk_list(u64::from(geometry.chunk_count()));
    if let Ok(list_bytes) = crate::input::read_input(&list, input)
        && let Some(listed) =
            minimodel_verifier::chunk_list::ChunkList::parse_as(&list_bytes, &geometry)
    {
        return Ok(SourceChunks {
            chunk_size,
            bytes,
            parts,
            chunk_hashes: listed.into_parts().0,
        });
    }
    let storage = FileStorage::open_read_only(path)?;
    let indices: Vec<u32> = (0..geometry.chunk_count()).collect();
    let chunk_hashes = hash_chunks(&storage, &geometry, &indices, &|_| {})?;
    Ok(SourceChunks {
        chunk_size,
        bytes,
        parts,
        chunk_hashes,
    })
}

/// The finished downloads of other models in `dir` (a regular
/// `<id>.slm` with its `<id>.chunk-list` beside it, as a delivered download
/// leaves them), the download of `model_id` itself left out: older
/// versions to reuse chunks from without naming them. Sorted by name.
pub fn finished_versions_in(dir: &Path, model_id: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".slm")?;
            if stem == model_id || stem.is_empty() || stem.starts_with('.') {
                return None;
            }
            // Regular files only: a planted link is not followed.
            let is_file = |path: &Path| {
                std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_file())
            };
            let path = entry.path();
            let list = dir.join(format!("{stem}.chunk-list"));
            (is_file(&path) && is_file(&list)).then_some(path)
        })
        .collect();
    found.sort();
    found
}

impl PartialDownload {
    /// Copies every chunk it can from the older files `sources` (each
    /// checked with its Merkle proof under this artifact's root, as a
    /// peer's chunk) and records them as verified. Blocking; run it before
    /// the node starts, so that peers are asked only for the rest. An
    /// older file that cannot be read is skipped with its reason; a write
    /// to the `.part` that fails is this download's error.
    pub fn reuse_local(
        &self,
        list: &NewChunkList,
        sources: &[PathBuf],
    ) -> Result<ReuseReport, ResumeError> {
        let geometry = self.geometry();
        let mut report = ReuseReport::default();
        let mut found = Vec::new();
        let mut paths = Vec::new();
        for path in sources {
            match source_chunks(path, &geometry) {
                Ok(chunks) => {
                    found.push(chunks);
                    paths.push(path.clone());
                    report.sources_used += 1;
                }
                Err(error) => report
                    .sources_skipped
                    .push((path.clone(), error.to_string())),
            }
        }
        let plan = plan_reuse(&geometry, list.chunk_hashes(), &self.verified(), &found);
        let starts = plan_prefixes(
            &geometry,
            list.chunk_hashes(),
            &self.verified(),
            &found,
            &plan,
        );
        report.starts_held = starts.len() as u64;
        self.hold_starts(
            starts
                .iter()
                .map(|start| {
                    let held = super::partial::HeldStart {
                        path: paths[start.source].clone(),
                        offset: start.offset,
                        len: start.len,
                    };
                    (start.index.0, held)
                })
                .collect(),
        );
        let verifier = self.verifier();
        let mut open: HashMap<usize, FileStorage> = HashMap::new();
        for copy in plan {
            let path = &paths[copy.source];
            if let std::collections::hash_map::Entry::Vacant(entry) = open.entry(copy.source) {
                match FileStorage::open_read_only(path) {
                    Ok(storage) => {
                        entry.insert(storage);
                    }
                    Err(_) => {
                        report.chunks_failed += 1;
                        continue;
                    }
                }
            }
            let storage = &open[&copy.source];
            let mut bytes = vec![0u8; copy.len as usize];
            if storage.read_exact_at(copy.offset, &mut bytes).is_err() {
                report.chunks_failed += 1;
                continue;
            }
            let proof = list.tree.proof(copy.index.0).unwrap_or_default();
            let data = ChunkData::from(bytes::Bytes::from(bytes));
            match verifier.verify(copy.index, data, &proof) {
                Ok(chunk) => {
                    if self.store_reused(&chunk, &proof)? {
                        report.chunks_reused += 1;
                        report.bytes_reused += u64::from(copy.len);
                    }
                }
                Err(_) => report.chunks_failed += 1,
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Sha256Digest {
        Sha256Digest::of(&[n])
    }

    fn source(chunk_size: u32, hashes: &[u8]) -> SourceChunks {
        SourceChunks {
            chunk_size,
            bytes: u64::from(chunk_size) * hashes.len() as u64,
            parts: None,
            chunk_hashes: hashes.iter().map(|n| digest(*n)).collect(),
        }
    }

    /// A new artifact cut every `size` bytes, as `source_chunks` is given it.
    fn cut_every(size: u32) -> ChunkGeometry {
        ChunkGeometry::new(u64::from(size), size).unwrap()
    }

    const SIZE: u32 = 16 * 1024;

    fn list_text(hashes: &[Sha256Digest]) -> String {
        minimodel_verifier::merkle::chunk_list_text(hashes)
    }

    #[test]
    fn a_chunk_list_counts_only_with_the_right_root_digest_and_shape() {
        let hashes = vec![digest(1), digest(2), digest(3)];
        let root = MerkleTree::from_chunk_hashes(hashes.clone())
            .unwrap()
            .root();
        let text = list_text(&hashes);
        let sha = Sha256Digest::of(text.as_bytes());
        let good = NewChunkList::check_against(text.as_bytes(), 3, root, Some(sha)).unwrap();
        assert_eq!(good.chunk_hashes(), &hashes[..]);

        let other = digest(9);
        assert_eq!(
            NewChunkList::check_against(text.as_bytes(), 3, other, None).unwrap_err(),
            ChunkListError::MerkleRoot {
                expected: other,
                found: root
            }
        );
        assert_eq!(
            NewChunkList::check_against(text.as_bytes(), 3, root, Some(other)).unwrap_err(),
            ChunkListError::ListDigest {
                expected: other,
                found: sha
            }
        );
        let malformed = ChunkListError::Malformed { count: 3 };
        // Another count, a missing final LF, upper case, trailing bytes.
        assert_eq!(
            NewChunkList::check_against(text.as_bytes(), 2, root, None).unwrap_err(),
            ChunkListError::Malformed { count: 2 }
        );
        let cut = &text.as_bytes()[..text.len() - 1];
        assert_eq!(
            NewChunkList::check_against(cut, 3, root, None).unwrap_err(),
            malformed
        );
        let upper = text.to_uppercase();
        assert_eq!(
            NewChunkList::check_against(upper.as_bytes(), 3, root, None).unwrap_err(),
            malformed
        );
        let longer = format!("{text}\n");
        assert_eq!(
            NewChunkList::check_against(longer.as_bytes(), 3, root, None).unwrap_err(),
            malformed
        );
    }

    #[test]
    fn a_source_whose_list_has_another_chunk_size_is_hashed_instead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.slm");
        let bytes: Vec<u8> = (0..4 * SIZE).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        // A list of the file in 2 x SIZE pieces, beside it.
        let halves: Vec<_> = bytes
            .chunks(2 * SIZE as usize)
            .map(Sha256Digest::of)
            .collect();
        std::fs::write(dir.path().join("old.chunk-list"), list_text(&halves)).unwrap();
        let found = source_chunks(&path, &cut_every(SIZE)).unwrap();
        let expected: Vec<_> = bytes.chunks(SIZE as usize).map(Sha256Digest::of).collect();
        assert_eq!(found.chunk_hashes, expected);
        assert_eq!(
            source_chunks(&path, &cut_every(2 * SIZE))
                .unwrap()
                .chunk_hashes,
            halves
        );
    }

    #[test]
    fn matching_hashes_are_planned_from_their_offsets() {
        let geometry = ChunkGeometry::new(u64::from(SIZE) * 4, SIZE).unwrap();
        let new: Vec<_> = [1, 9, 3, 2].iter().map(|n| digest(*n)).collect();
        let plan = plan_reuse(
            &geometry,
            &new,
            &HaveBitfield::new(4),
            &[source(SIZE, &[1, 2, 3])],
        );
        let found: Vec<_> = plan
            .iter()
            .map(|c| (c.index.0, c.source, c.offset))
            .collect();
        // Chunk 3 of the new artifact is chunk 1 of the old one: moved
        // chunks are found too.
        assert_eq!(
            found,
            vec![
                (0, 0, 0),
                (2, 0, 2 * u64::from(SIZE)),
                (3, 0, u64::from(SIZE))
            ]
        );
    }

    #[test]
    fn chunks_already_verified_are_not_planned() {
        let geometry = ChunkGeometry::new(u64::from(SIZE) * 2, SIZE).unwrap();
        let new: Vec<_> = [1, 2].iter().map(|n| digest(*n)).collect();
        let mut have = HaveBitfield::new(2);
        have.set(minimodel_wire::ChunkIndex(0), true).unwrap();
        let plan = plan_reuse(&geometry, &new, &have, &[source(SIZE, &[1, 2])]);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].index, ChunkIndex(1));
    }

    #[test]
    fn nothing_is_reused_across_chunk_sizes() {
        let geometry = ChunkGeometry::new(u64::from(SIZE) * 2, SIZE).unwrap();
        let new: Vec<_> = [1, 2].iter().map(|n| digest(*n)).collect();
        let plan = plan_reuse(
            &geometry,
            &new,
            &HaveBitfield::new(2),
            &[source(SIZE * 2, &[1, 2])],
        );
        assert!(plan.is_empty());
    }

    #[test]
    fn a_short_last_chunk_matches_only_a_chunk_of_its_length() {
        // New: one full chunk then a 100-byte one; the source's full chunk
        // has the hash the list gives for the short one (a list that lies):
        // the lengths differ, so it is not planned.
        let geometry = ChunkGeometry::new(u64::from(SIZE) + 100, SIZE).unwrap();
        let new = vec![digest(1), digest(2)];
        let plan = plan_reuse(
            &geometry,
            &new,
            &HaveBitfield::new(2),
            &[source(SIZE, &[1, 2])],
        );
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].index, ChunkIndex(0));
    }

    #[test]
    fn a_chunk_after_one_reused_may_begin_with_the_shorter_chunk_after_it_in_the_source() {
        // The source: two whole chunks and 40 bytes. The new file goes on
        // past them: chunk 2 is whole now, chunk 3 new.
        let old = SourceChunks {
            bytes: u64::from(SIZE) * 2 + 40,
            ..source(SIZE, &[1, 2, 3])
        };
        let geometry = ChunkGeometry::new(u64::from(SIZE) * 4, SIZE).unwrap();
        let new: Vec<_> = [1, 2, 9, 10].iter().map(|n| digest(*n)).collect();
        let have = HaveBitfield::new(4);
        let copies = plan_reuse(&geometry, &new, &have, std::slice::from_ref(&old));
        assert_eq!(copies.len(), 2);
        let prefixes = plan_prefixes(&geometry, &new, &have, std::slice::from_ref(&old), &copies);
        assert_eq!(
            prefixes,
            [PrefixCopy {
                index: ChunkIndex(2),
                source: 0,
                offset: 2 * u64::from(SIZE),
                len: 40
            }]
        );
        // Chunk 3 follows chunk 2, which nothing holds whole: no start.
        // Chunk 2 already had, or copied whole, is not asked in part.
        let mut had = HaveBitfield::new(4);
        had.set(minimodel_wire::ChunkIndex(2), true).unwrap();
        assert!(
            plan_prefixes(&geometry, &new, &had, std::slice::from_ref(&old), &copies).is_empty()
        );
        let whole = [ReuseCopy {
            index: ChunkIndex(2),
            source: 0,
            offset: 0,
            len: SIZE,
        }];
        assert!(plan_prefixes(&geometry, &new, &have, &[old], &whole).is_empty());
    }

    #[test]
    fn a_following_chunk_as_long_or_of_another_chunk_size_is_no_start() {
        // The source's chunk after the matched one is whole: it is another
        // chunk, not the start of this one.
        let geometry = ChunkGeometry::new(u64::from(SIZE) * 3, SIZE).unwrap();
        let new: Vec<_> = [1, 8, 9].iter().map(|n| digest(*n)).collect();
        let have = HaveBitfield::new(3);
        let old = source(SIZE, &[1, 2, 3]);
        let copies = plan_reuse(&geometry, &new, &have, std::slice::from_ref(&old));
        assert!(plan_prefixes(&geometry, &new, &have, &[old], &copies).is_empty());
        let other = SourceChunks {
            bytes: u64::from(SIZE) * 2 + 40,
            ..source(SIZE * 2, &[1, 3])
        };
        assert!(plan_prefixes(&geometry, &new, &have, &[other], &[]).is_empty());
    }

    #[test]
    fn the_first_source_wins() {
        let geometry = ChunkGeometry::new(u64::from(SIZE), SIZE).unwrap();
        let plan = plan_reuse(
            &geometry,
            &[digest(7)],
            &HaveBitfield::new(1),
            &[source(SIZE, &[5, 7]), source(SIZE, &[7])],
        );
        assert_eq!(plan[0].source, 0);
        assert_eq!(plan[0].offset, u64::from(SIZE));
    }

    /// The vectors of `docs/merkle.md`: a listed manifest and its list.
    fn listed_vectors() -> (Manifest, Vec<u8>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/merkle");
        let text = std::fs::read_to_string(dir.join("slm-parts.manifest")).unwrap();
        let list = std::fs::read(dir.join("slm-parts.chunk-list")).unwrap();
        (Manifest::parse(&text).unwrap(), list)
    }

    #[test]
    fn a_listed_chunk_list_gives_its_lengths_and_only_its_own_are_taken() {
        let (manifest, list) = listed_vectors();
        let checked = NewChunkList::check(&manifest, &list).unwrap();
        let geometry = checked.listed_geometry().expect("listed");
        assert_eq!(geometry.chunk_count(), 10);
        assert_eq!(geometry.chunk_len(ChunkIndex(0)), Some(256));
        assert_eq!(geometry.artifact_bytes(), manifest.artifact_bytes);

        // The hashes alone, as a peer that did not send lengths: refused.
        let hashes: Vec<[u8; 32]> = checked.chunk_hashes().iter().map(|h| h.0).collect();
        assert!(matches!(
            NewChunkList::from_hashes(&manifest, &hashes),
            Err(ChunkListError::NoLengths { .. })
        ));
        assert!(matches!(
            NewChunkList::from_peer(&manifest, &hashes, None),
            Err(ChunkListError::NoLengths { .. })
        ));
        // With the lengths, as a peer answers a listed query: the same
        // list, the same geometry.
        let lengths: Vec<u32> = (0..10)
            .map(|i| geometry.chunk_len(ChunkIndex(i)).unwrap())
            .collect();
        let from_peer = NewChunkList::from_peer(&manifest, &hashes, Some(&lengths)).unwrap();
        assert_eq!(from_peer.chunk_hashes(), checked.chunk_hashes());
        assert_eq!(from_peer.listed_geometry(), Some(geometry));
        // A peer's lengths moved by one byte between two chunks: the same
        // total, another list than the manifest commits.
        let mut moved = lengths.clone();
        moved[0] -= 1;
        moved[1] += 1;
        assert!(matches!(
            NewChunkList::from_peer(&manifest, &hashes, Some(&moved)),
            Err(ChunkListError::ListDigest { .. })
        ));
        // Lengths that do not make the artifact, one too few, or a hash
        // changed: refused before or at the digest.
        let mut longer = lengths.clone();
        longer[9] += 1;
        assert!(NewChunkList::from_peer(&manifest, &hashes, Some(&longer)).is_err());
        assert!(NewChunkList::from_peer(&manifest, &hashes, Some(&lengths[..9])).is_err());
        let mut forged = hashes.clone();
        forged[3][0] ^= 1;
        assert!(NewChunkList::from_peer(&manifest, &forged, Some(&lengths)).is_err());
        // Another length: the form holds, the list's digest does not.
        let text = String::from_utf8(list.clone()).unwrap();
        let moved = text
            .replacen(" 256\n", " 255\n", 1)
            .replacen(" 4480\n", " 4481\n", 1);
        assert!(matches!(
            NewChunkList::check(&manifest, moved.as_bytes()),
            Err(ChunkListError::ListDigest { .. })
        ));
        // The fixed form of the same hashes: not this scheme's list.
        let plain = minimodel_verifier::merkle::chunk_list_text(checked.chunk_hashes());
        assert!(matches!(
            NewChunkList::check(&manifest, plain.as_bytes()),
            Err(ChunkListError::Listed { .. })
        ));
    }

    #[test]
    fn an_older_slm_is_cut_at_its_own_parts_for_a_listed_artifact() {
        let (manifest, list) = listed_vectors();
        let like = NewChunkList::check(&manifest, &list)
            .unwrap()
            .listed_geometry()
            .unwrap()
            .clone();
        let slm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/merkle/slm-parts.slm");
        let found = source_chunks(&slm, &like).unwrap();
        assert_eq!(found.parts.as_ref(), Some(&like));
        let checked = NewChunkList::check(&manifest, &list).unwrap();
        assert_eq!(found.chunk_hashes, checked.chunk_hashes());
        // A file that is not a `.slm` has no parts to cut.
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.slm");
        std::fs::write(&other, vec![7u8; 70_000]).unwrap();
        let error = source_chunks(&other, &like).unwrap_err();
        assert!(
            error.to_string().contains(".slm parts are unknown"),
            "{error}"
        );
    }
}
