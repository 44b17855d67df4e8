//! The verified-chunk journal: one record per chunk verified and written
//! since the last checkpoint, appended without a sync, so that a download
//! killed between two checkpoints loses only what was in flight
//! (`docs/resume.md`, "The journal"; format in `docs/formats.md`).
//!
//! A record carries the chunk's index, its chunk hash and the Merkle proof
//! it was verified with. Nothing in a journal is trusted: when a download
//! is opened, a record counts only if its proof leads to the manifest's
//! Merkle root and the chunk's bytes on disk hash to its chunk hash again.
//! A record torn by a crash fails its check, and reading stops there.
//!
//! Binary, little-endian:
//! - header: the 20 ASCII bytes `minimodel-journal-v0`, the 32-byte Merkle
//!   root, and the first 8 bytes of SHA-256 over those 52 bytes;
//! - record: chunk index (u32), chunk hash (32 bytes), proof length `n`
//!   (u8, at most [`MAX_PROOF_LEN`]), `n` proof hashes (32 bytes each), and
//!   the first 8 bytes of SHA-256 over the record's preceding bytes.

use minimodel_verifier::Sha256Digest;

/// The journal's magic and version.
pub const JOURNAL_MAGIC: &[u8; 20] = b"minimodel-journal-v0";
/// Bytes of a journal header.
pub const JOURNAL_HEADER_LEN: usize = 20 + 32 + 8;
/// Longest proof a record may carry: a tree of at most 2^32 chunks.
pub const MAX_PROOF_LEN: usize = 32;
/// Largest journal read: a record per chunk of the largest artifact
/// (500,000 chunks, 20 proof hashes) fits many times over.
pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;

/// One verified chunk as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The chunk.
    pub index: u32,
    /// SHA-256 of its bytes.
    pub chunk_hash: Sha256Digest,
    /// The Merkle proof it was verified with.
    pub proof: Vec<Sha256Digest>,
}

/// What reading a journal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedJournal {
    /// The records that passed their check, in order.
    pub records: Vec<JournalRecord>,
    /// Bytes after the last good record (a torn or damaged tail), ignored.
    pub ignored_bytes: usize,
}

/// Why a journal cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// Shorter than its header, or the header fails its check.
    #[error("the journal has no valid header")]
    BadHeader,
    /// Written for another artifact.
    #[error("the journal belongs to another artifact (Merkle root {found})")]
    ForeignRoot {
        /// The root its header names.
        found: Sha256Digest,
    },
}

fn check_of(bytes: &[u8]) -> [u8; 8] {
    let digest = Sha256Digest::of(bytes);
    let mut check = [0u8; 8];
    check.copy_from_slice(&digest.as_bytes()[..8]);
    check
}

/// The header of a journal for the artifact with Merkle root `root`.
pub fn encode_header(root: &Sha256Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(JOURNAL_HEADER_LEN);
    out.extend_from_slice(JOURNAL_MAGIC);
    out.extend_from_slice(root.as_bytes());
    let check = check_of(&out);
    out.extend_from_slice(&check);
    out
}

/// One record, ready to append. Panics never: a proof longer than
/// [`MAX_PROOF_LEN`] cannot come from a valid tree and is cut off, which
/// makes the record fail its proof when read.
pub fn encode_record(index: u32, chunk_hash: &Sha256Digest, proof: &[Sha256Digest]) -> Vec<u8> {
    let proof = &proof[..proof.len().min(MAX_PROOF_LEN)];
    let mut out = Vec::with_capacity(4 + 32 + 1 + 32 * proof.len() + 8);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(chunk_hash.as_bytes());
    out.push(proof.len() as u8);
    for hash in proof {
        out.extend_from_slice(hash.as_bytes());
    }
    let check = check_of(&out);
    out.extend_from_slice(&check);
    out
}

/// Reads a journal written for `root`: every record up to the first one
/// that is cut short or fails its check.
pub fn parse_journal(bytes: &[u8], root: &Sha256Digest) -> Result<ParsedJournal, JournalError> {
    let header = bytes
        .get(..JOURNAL_HEADER_LEN)
        .ok_or(JournalError::BadHeader)?;
    let (body, check) = header.split_at(JOURNAL_HEADER_LEN - 8);
    if &body[..20] != JOURNAL_MAGIC || check_of(body) != check {
        return Err(JournalError::BadHeader);
    }
    let mut found = [0u8; 32];
    found.copy_from_slice(&body[20..52]);
    if found != *root.as_bytes() {
        return Err(JournalError::ForeignRoot {
            found: Sha256Digest(found),
        });
    }
    let mut rest = &bytes[JOURNAL_HEADER_LEN..];
    let mut records = Vec::new();
    while let Some((record, len)) = parse_record(rest) {
        records.push(record);
        rest = &rest[len..];
    }
    Ok(ParsedJournal {
        records,
        ignored_bytes: rest.len(),
    })
}

fn digest_at(bytes: &[u8], at: usize) -> Sha256Digest {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&bytes[at..at + 32]);
    Sha256Digest(digest)
}

/// One record at the start of `bytes` and its length, if it is whole and
/// passes its check.
fn parse_record(bytes: &[u8]) -> Option<(JournalRecord, usize)> {
    let proof_len = usize::from(*bytes.get(36)?);
    if proof_len > MAX_PROOF_LEN {
        return None;
    }
    let body_len = 37 + 32 * proof_len;
    let record = bytes.get(..body_len + 8)?;
    let (body, check) = record.split_at(body_len);
    if check_of(body) != check {
        return None;
    }
    let index = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let proof = (0..proof_len)
        .map(|i| digest_at(body, 37 + 32 * i))
        .collect();
    Some((
        JournalRecord {
            index,
            chunk_hash: digest_at(body, 4),
            proof,
        },
        body_len + 8,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> Sha256Digest {
        Sha256Digest([byte; 32])
    }

    fn journal(root: &Sha256Digest, records: &[(u32, u8, usize)]) -> Vec<u8> {
        let mut bytes = encode_header(root);
        for &(index, hash, proof) in records {
            let proof: Vec<_> = (0..proof).map(|i| digest(i as u8)).collect();
            bytes.extend(encode_record(index, &digest(hash), &proof));
        }
        bytes
    }

    #[test]
    fn records_round_trip() {
        let root = digest(7);
        let bytes = journal(&root, &[(0, 1, 3), (5, 2, 0), (u32::MAX, 3, 32)]);
        let parsed = parse_journal(&bytes, &root).unwrap();
        assert_eq!(parsed.ignored_bytes, 0);
        let got: Vec<(u32, Sha256Digest, usize)> = parsed
            .records
            .iter()
            .map(|r| (r.index, r.chunk_hash, r.proof.len()))
            .collect();
        assert_eq!(
            got,
            [
                (0, digest(1), 3),
                (5, digest(2), 0),
                (u32::MAX, digest(3), 32)
            ]
        );
        assert_eq!(parsed.records[0].proof, [digest(0), digest(1), digest(2)]);
    }

    #[test]
    fn a_torn_or_damaged_tail_is_ignored_and_ends_the_journal() {
        let root = digest(7);
        let whole = journal(&root, &[(0, 1, 2), (1, 2, 2), (2, 3, 2)]);
        let record = (whole.len() - JOURNAL_HEADER_LEN) / 3;
        // Cut anywhere inside the last record: two records survive.
        for cut in 1..record {
            let parsed = parse_journal(&whole[..whole.len() - cut], &root).unwrap();
            assert_eq!(parsed.records.len(), 2, "cut {cut}");
            assert_eq!(parsed.ignored_bytes, record - cut);
        }
        // A flipped byte in the second record: only the first survives,
        // even though the third is intact.
        let mut flipped = whole.clone();
        flipped[JOURNAL_HEADER_LEN + record + 10] ^= 1;
        let parsed = parse_journal(&flipped, &root).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(parsed.ignored_bytes, 2 * record);
    }

    #[test]
    fn headers_are_checked() {
        let root = digest(7);
        let bytes = journal(&root, &[(0, 1, 2)]);
        assert_eq!(
            parse_journal(&bytes, &digest(8)),
            Err(JournalError::ForeignRoot { found: root })
        );
        assert_eq!(
            parse_journal(&bytes[..JOURNAL_HEADER_LEN - 1], &root),
            Err(JournalError::BadHeader)
        );
        let mut bad = bytes.clone();
        bad[3] ^= 0x20;
        assert_eq!(parse_journal(&bad, &root), Err(JournalError::BadHeader));
        let mut bad = bytes;
        bad[30] ^= 1;
        assert_eq!(parse_journal(&bad, &root), Err(JournalError::BadHeader));
    }

    #[test]
    fn an_overlong_proof_length_ends_the_journal() {
        let root = digest(7);
        let mut bytes = encode_header(&root);
        let mut record = encode_record(1, &digest(1), &[]);
        record[36] = 33;
        bytes.extend(record);
        let parsed = parse_journal(&bytes, &root).unwrap();
        assert!(parsed.records.is_empty());
    }
}
