//! The chunk list file (`docs/merkle.md`, "The chunk list"): the ordered
//! chunk hashes of an artifact and, in a listed scheme, each chunk's
//! length, in the one text form whose SHA-256 is a manifest's
//! `chunk-list-sha256`.
//!
//! - `fixed-size-merkle-v0`: one lowercase hex `SHA-256(chunk)` per line,
//!   each line ending in LF (65 bytes a line).
//! - `slm-parts-merkle-v0`: the hash, one space, the chunk's length in
//!   decimal (no sign, no leading zero), LF. The lengths are what the
//!   geometry is made of: they must be 1 to `chunk-size` each and add up
//!   to `artifact-bytes`.
//!
//! The parser reads at most what `chunk-count` lines can hold and refuses
//! anything else; it checks the form and the geometry, not the Merkle root
//! (the caller compares [`ChunkList::hashes`] with it).

use crate::chunk::{ChunkGeometry, ChunkIndex, GeometryError};
use crate::digest::Sha256Digest;
use crate::manifest::{ChunkScheme, Manifest};

/// Longest line of a listed chunk list: 64 hex digits, a space, a length
/// of at most 16 MiB (8 digits), LF.
pub const MAX_LISTED_LINE: usize = 64 + 1 + 8 + 1;

/// What a chunk list must describe: the manifest's chunk section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShape {
    /// `chunk-scheme`.
    pub scheme: ChunkScheme,
    /// `artifact-bytes`.
    pub artifact_bytes: u64,
    /// `chunk-size`.
    pub chunk_size: u32,
    /// `chunk-count`.
    pub chunk_count: u32,
}

impl ListShape {
    /// The shape `manifest` declares.
    pub fn of_manifest(manifest: &Manifest) -> Self {
        Self {
            scheme: manifest.chunks.scheme,
            artifact_bytes: manifest.artifact_bytes,
            chunk_size: manifest.chunks.chunk_size,
            chunk_count: u32::try_from(manifest.chunks.chunk_count).unwrap_or(u32::MAX),
        }
    }
}

/// Why bytes are not the chunk list of a shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkListFormError {
    /// Longer than `chunk-count` lines of the scheme can be.
    #[error("{found} bytes is more than a chunk list of {count} chunks can hold")]
    TooLong {
        /// The chunk count.
        count: u32,
        /// The bytes given.
        found: usize,
    },
    /// A line that is not the scheme's form, or too few or too many lines.
    #[error("line {line} is not a chunk list line of `{scheme}` ({expected})")]
    BadLine {
        /// 1-based line (one past the last when lines are missing).
        line: usize,
        /// The scheme.
        scheme: &'static str,
        /// What a line holds.
        expected: &'static str,
    },
    /// The lengths do not make the artifact's geometry.
    #[error("the listed lengths: {0}")]
    Geometry(#[from] GeometryError),
}

/// A chunk list that has the form of its scheme and the geometry of its
/// shape: one hash per chunk, and in a listed scheme the chunks' lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    hashes: Vec<Sha256Digest>,
    geometry: ChunkGeometry,
}

impl ChunkList {
    /// A list of `hashes` over `geometry`, `None` unless there is one hash
    /// per chunk.
    pub fn new(hashes: Vec<Sha256Digest>, geometry: ChunkGeometry) -> Option<Self> {
        (hashes.len() == geometry.chunk_count() as usize).then_some(Self { hashes, geometry })
    }

    /// Reads a chunk list file's bytes as the list of `shape`.
    pub fn parse(bytes: &[u8], shape: ListShape) -> Result<Self, ChunkListFormError> {
        let count = shape.chunk_count;
        let most = match shape.scheme {
            ChunkScheme::FixedSize => 65,
            ChunkScheme::SlmParts => MAX_LISTED_LINE,
        } * count as usize;
        if bytes.len() > most {
            return Err(ChunkListFormError::TooLong {
                count,
                found: bytes.len(),
            });
        }
        let bad = |line: usize| ChunkListFormError::BadLine {
            line,
            scheme: shape.scheme.name(),
            expected: match shape.scheme {
                ChunkScheme::FixedSize => "64 lowercase hex digits, LF",
                ChunkScheme::SlmParts => {
                    "64 lowercase hex digits, a space, the chunk's length in decimal, LF"
                }
            },
        };
        let mut hashes = Vec::with_capacity(count as usize);
        let mut lengths = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let line = hashes.len() + 1;
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| bad(line))?;
            let (text, tail) = (&rest[..end], &rest[end + 1..]);
            rest = tail;
            if hashes.len() == count as usize {
                return Err(bad(line));
            }
            let (hash, len) = match shape.scheme {
                ChunkScheme::FixedSize => (text, None),
                ChunkScheme::SlmParts => match text.iter().position(|&b| b == b' ') {
                    Some(space) => (&text[..space], Some(&text[space + 1..])),
                    None => return Err(bad(line)),
                },
            };
            hashes.push(parse_hash(hash).ok_or_else(|| bad(line))?);
            if let Some(len) = len {
                lengths.push(parse_len(len).ok_or_else(|| bad(line))?);
            }
        }
        if hashes.len() != count as usize {
            return Err(bad(hashes.len() + 1));
        }
        let geometry = match shape.scheme {
            ChunkScheme::FixedSize => ChunkGeometry::new(shape.artifact_bytes, shape.chunk_size)?,
            ChunkScheme::SlmParts => {
                ChunkGeometry::listed(shape.artifact_bytes, shape.chunk_size, lengths)?
            }
        };
        if geometry.chunk_count() != count {
            return Err(bad(hashes.len() + 1));
        }
        Ok(Self { hashes, geometry })
    }

    /// Reads `bytes` as the list of the chunks `geometry` cuts: in its
    /// form (with lengths when it is listed), and only if the list makes
    /// that very geometry. `None` for anything else.
    pub fn parse_as(bytes: &[u8], geometry: &ChunkGeometry) -> Option<Self> {
        let shape = ListShape {
            scheme: if geometry.is_listed() {
                ChunkScheme::SlmParts
            } else {
                ChunkScheme::FixedSize
            },
            artifact_bytes: geometry.artifact_bytes(),
            chunk_size: geometry.chunk_size(),
            chunk_count: geometry.chunk_count(),
        };
        Self::parse(bytes, shape)
            .ok()
            .filter(|list| list.geometry == *geometry)
    }

    /// The chunk hashes in order.
    pub fn hashes(&self) -> &[Sha256Digest] {
        &self.hashes
    }

    /// The geometry: the fixed one of the shape, or the listed lengths.
    pub fn geometry(&self) -> &ChunkGeometry {
        &self.geometry
    }

    /// Gives up the list, keeping hashes and geometry.
    pub fn into_parts(self) -> (Vec<Sha256Digest>, ChunkGeometry) {
        (self.hashes, self.geometry)
    }

    /// The file form: what [`ChunkList::parse`] reads back, and what
    /// `chunk-list-sha256` is the SHA-256 of.
    pub fn text(&self) -> String {
        list_text(&self.hashes, &self.geometry)
    }
}

/// The file form of `hashes` over `geometry`: with lengths when the
/// geometry is listed.
pub fn list_text(hashes: &[Sha256Digest], geometry: &ChunkGeometry) -> String {
    if !geometry.is_listed() {
        return crate::merkle::chunk_list_text(hashes);
    }
    let mut text = String::with_capacity(hashes.len() * MAX_LISTED_LINE);
    for (index, hash) in (0u32..).zip(hashes) {
        let len = geometry.chunk_len(ChunkIndex(index)).unwrap_or_default();
        text.push_str(&hash.to_hex());
        text.push(' ');
        text.push_str(&len.to_string());
        text.push('\n');
    }
    text
}

/// Whether `line` (without its LF) has the form of a chunk list line of
/// either scheme: a hash, or a hash, a space and a length. What tells a
/// chunk list from other text by its first lines.
pub fn is_list_line(line: &[u8]) -> bool {
    match line.get(..64) {
        Some(hash) if parse_hash(hash).is_some() => match &line[64..] {
            [] => true,
            [b' ', len @ ..] => parse_len(len).is_some(),
            _ => false,
        },
        _ => false,
    }
}

fn parse_hash(text: &[u8]) -> Option<Sha256Digest> {
    if text.len() != 64 || !text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_len(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 8 || text[0] == b'0' || !text.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(scheme: ChunkScheme, artifact_bytes: u64, chunk_count: u32) -> ListShape {
        ListShape {
            scheme,
            artifact_bytes,
            chunk_size: 16384,
            chunk_count,
        }
    }

    fn hash(i: u32) -> Sha256Digest {
        Sha256Digest::of(&i.to_le_bytes())
    }

    #[test]
    fn a_listed_list_reads_back_what_it_wrote() {
        let geometry = ChunkGeometry::listed(20_000, 16384, [256, 3000, 16384, 360]).unwrap();
        let list = ChunkList::new((0..4).map(hash).collect(), geometry.clone()).unwrap();
        let text = list.text();
        assert_eq!(text.lines().next().unwrap(), format!("{} 256", hash(0)));
        let read =
            ChunkList::parse(text.as_bytes(), shape(ChunkScheme::SlmParts, 20_000, 4)).unwrap();
        assert_eq!(read, list);
        assert_eq!(read.geometry().byte_range(ChunkIndex(2)), Some(3256..19640));
    }

    #[test]
    fn a_fixed_list_is_the_plain_form() {
        let geometry = ChunkGeometry::new(20_000, 16384).unwrap();
        let list = ChunkList::new(vec![hash(0), hash(1)], geometry).unwrap();
        assert_eq!(list.text(), format!("{}\n{}\n", hash(0), hash(1)));
        let read = ChunkList::parse(
            list.text().as_bytes(),
            shape(ChunkScheme::FixedSize, 20_000, 2),
        )
        .unwrap();
        assert_eq!(read, list);
    }

    #[test]
    fn lists_that_are_not_the_form_are_refused_with_their_line() {
        let h = hash(0).to_hex();
        let listed = shape(ChunkScheme::SlmParts, 300, 2);
        let cases: Vec<(String, &str)> = vec![
            (format!("{h} 100\n{h} 200"), "no LF at the end"),
            (format!("{h} 100\n{h}\n"), "no length"),
            (format!("{h} 100\n{h} 0200\n"), "a leading zero"),
            (format!("{h} 100\n{h} +200\n"), "a sign"),
            (format!("{h}  100\n{h} 200\n"), "two spaces"),
            (format!("{h} 100\r\n{h} 200\n"), "CR LF"),
            (
                format!("{} 100\n{h} 200\n", h.to_uppercase()),
                "upper-case hex",
            ),
            (format!("{h} 100\n"), "a line missing"),
            (format!("{h} 100\n{h} 100\n{h} 100\n"), "a line too many"),
        ];
        for (text, what) in cases {
            let err = ChunkList::parse(text.as_bytes(), listed).unwrap_err();
            assert!(
                matches!(
                    err,
                    ChunkListFormError::BadLine { .. } | ChunkListFormError::TooLong { .. }
                ),
                "{what}: {err:?}"
            );
        }
    }

    #[test]
    fn listed_lengths_must_make_the_artifact() {
        let h = hash(0).to_hex();
        let listed = shape(ChunkScheme::SlmParts, 300, 2);
        let short = format!("{h} 100\n{h} 100\n");
        assert!(matches!(
            ChunkList::parse(short.as_bytes(), listed),
            Err(ChunkListFormError::Geometry(
                GeometryError::ListedTotal { .. }
            ))
        ));
        let over = format!("{h} 100\n{h} 16385\n");
        assert!(matches!(
            ChunkList::parse(over.as_bytes(), shape(ChunkScheme::SlmParts, 16485, 2)),
            Err(ChunkListFormError::Geometry(GeometryError::ListedLength {
                index: 1,
                ..
            }))
        ));
    }

    #[test]
    fn a_list_longer_than_its_lines_can_be_is_not_read() {
        let bytes = vec![b'a'; MAX_LISTED_LINE * 2 + 1];
        assert_eq!(
            ChunkList::parse(&bytes, shape(ChunkScheme::SlmParts, 300, 2)),
            Err(ChunkListFormError::TooLong {
                count: 2,
                found: bytes.len()
            })
        );
    }
}
