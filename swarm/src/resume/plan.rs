//! What opening a download decides from what it finds in `DIR`
//! (`docs/resume.md`, "Opening"): plain functions and one sans-IO plan,
//! shared by every system and tested here without a file system. The
//! caller (`open.rs`) reads the directory, rehashes the chunks it is asked
//! to, writes what it is told, and decides nothing.
//!
//! A partial download ([`OpenPlan::start`], then each [`Next`] answered):
//! 1. from the states and the `.part` found, one start: resume (rehash a
//!    sample of the state's chunks, or all of them when the `.part` was
//!    resized, `--recheck` was given or the sample failed), fall back to
//!    the previous generation (all its chunks rehashed), recover a bare
//!    `.part` (hashed whole against the Merkle root), restart (a state
//!    without its `.part`) or fresh;
//! 2. the hashes asked for come back and decide which chunks are kept;
//! 3. when a `.part` exists, its journals name chunks verified after the
//!    last checkpoint: those whose proofs lead to the root are rehashed
//!    and kept when their bytes still match;
//! 4. [`Next::Done`]: the knowledge, counters and report a download starts
//!    from, and whether to write a checkpoint at once.
//!
//! A finished file: [`judge_final`] holds its receipt and length against
//! the artifact, [`final_needs_recheck`] says whether to read it again,
//! and [`refreshed_receipt`] or [`repair`] say what that reading leaves.

use std::collections::BTreeMap;
use std::path::Path;

use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::GeometryError;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::receipt::{FileStamp, ImportReceipt, RECEIPT_FORMAT};

use super::dir::FileFacts;
use super::error::{ResumeError, StateError};
use super::files::{DownloadPaths, StateFile};
use super::journal::{JournalRecord, parse_journal};
use super::knowledge::ChunkKnowledge;
use super::partial::{Persisted, receipt_binding};
use super::recheck::sample_chunks;
use super::report::{CompleteCheck, RecheckReason, RestartReason, ResumeOptions, ResumeOutcome};
use super::state::{PartialState, ResumeCounters, StateBinding};

/// What opening found under a download's state and `.part` names.
#[derive(Debug)]
pub(crate) struct Found {
    /// The current state, checked by [`check_state`].
    pub(crate) current: StateFile,
    /// The previous state, read only when [`needs_previous`] says so
    /// ([`StateFile::Missing`] otherwise).
    pub(crate) previous: StateFile,
    /// The `.part`'s length, if there is one.
    pub(crate) part_len: Option<u64>,
}

/// What a partial download starts from: the plan's last word.
#[derive(Debug)]
pub(crate) struct Decision {
    /// What opening did.
    pub(crate) outcome: ResumeOutcome,
    /// The chunks kept, with their hashes and proofs.
    pub(crate) knowledge: ChunkKnowledge,
    /// Counters over all runs, this one included.
    pub(crate) counters: ResumeCounters,
    /// The manifest file the state used was written under, if one was.
    pub(crate) state_manifest: Option<Sha256Digest>,
    /// The state on disk the download continues, if any.
    pub(crate) persisted: Option<Persisted>,
    /// Whether the current state file is good (it becomes `.prev` at the
    /// next checkpoint).
    pub(crate) current_is_good: bool,
    /// Chunks brought back from the journals.
    pub(crate) chunks_from_journal: u32,
    /// Bytes rehashed while opening.
    pub(crate) bytes_rechecked: u64,
    /// Why the current state was not used, when it exists but was not.
    pub(crate) current_problem: Option<StateError>,
    /// Why the previous state was not used, when it was needed and exists.
    pub(crate) previous_problem: Option<StateError>,
    /// Whether to write a checkpoint before fetching, so that a crash now
    /// does not bring back dropped chunks (or lose journaled ones).
    pub(crate) checkpoint_now: bool,
}

/// What the plan needs next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Rehash chunks of the `.part`.
    Hash(HashRequest),
    /// Read the journals.
    ReadJournals(JournalRequest),
    /// Decided.
    Done(Box<Decision>),
}

/// Chunks to rehash: answer with [`HashRequest::hashed`].
#[derive(Debug)]
pub(crate) struct HashRequest {
    plan: OpenPlan,
    chunks: Vec<u32>,
    judge: Judge,
}

/// The journals to read: answer with [`JournalRequest::read`].
#[derive(Debug)]
pub(crate) struct JournalRequest {
    plan: OpenPlan,
}

/// What the hashes asked for are judged by.
#[derive(Debug)]
enum Judge {
    /// A sample of a trusted state: a mismatch turns into a full recheck.
    Sample,
    /// Every chunk the state lists: the bad ones are dropped.
    All(AllFor),
    /// The whole `.part`, against the Merkle root.
    Whole,
    /// Chunks the journals recorded, each with its record.
    Journal(BTreeMap<u32, JournalRecord>),
}

/// Why every listed chunk is rehashed.
#[derive(Debug)]
enum AllFor {
    /// The current state, for this reason.
    Recheck(RecheckReason),
    /// The previous generation, the current one being unusable.
    FallBack { generation: u64 },
}

/// A partial download being decided. See the module docs.
#[derive(Debug)]
pub(crate) struct OpenPlan {
    geometry: ChunkGeometry,
    outcome: ResumeOutcome,
    knowledge: ChunkKnowledge,
    counters: ResumeCounters,
    state_manifest: Option<Sha256Digest>,
    persisted: Option<Persisted>,
    current_is_good: bool,
    part_exists: bool,
    chunks_from_journal: u32,
    bytes_rechecked: u64,
    current_problem: Option<StateError>,
    previous_problem: Option<StateError>,
}

impl OpenPlan {
    /// Decides how to start from what was `found`; `seed` chooses the
    /// sample when `options` give none.
    pub(crate) fn start(
        found: Found,
        binding: &StateBinding,
        options: &ResumeOptions,
        seed: u64,
    ) -> Result<Next, GeometryError> {
        let geometry = binding.geometry()?;
        let Found {
            current,
            previous,
            part_len,
        } = found;
        let mut plan = OpenPlan {
            geometry: geometry.clone(),
            outcome: ResumeOutcome::Fresh,
            knowledge: ChunkKnowledge::new(binding.merkle_root, binding.chunk_count),
            counters: ResumeCounters::default(),
            state_manifest: None,
            persisted: None,
            current_is_good: false,
            part_exists: part_len.is_some(),
            chunks_from_journal: 0,
            bytes_rechecked: 0,
            current_problem: problem(&current),
            previous_problem: problem(&previous),
        };
        Ok(match (current, previous, part_len) {
            (StateFile::Usable(state), _, Some(len)) => {
                plan.take_over(*state, true);
                let reason = if len != binding.artifact_bytes {
                    Some(RecheckReason::PartResized { found: len })
                } else if options.recheck {
                    Some(RecheckReason::Requested)
                } else {
                    None
                };
                match reason {
                    Some(reason) => plan.recheck_all(AllFor::Recheck(reason)),
                    None => {
                        let seed = options.sample_seed.unwrap_or(seed);
                        let sample = sample_chunks(plan.knowledge.verified(), options.sample, seed);
                        plan.ask(sample, Judge::Sample)
                    }
                }
            }
            (StateFile::Usable(state), _, None) | (_, StateFile::Usable(state), None) => {
                plan.take_over(*state, false);
                // Its chunks' bytes are gone; its counters and manifest stay.
                plan.knowledge = ChunkKnowledge::new(binding.merkle_root, geometry.chunk_count());
                plan.outcome = ResumeOutcome::Restarted {
                    reason: RestartReason::PartMissing,
                };
                plan.journals()
            }
            (_, StateFile::Usable(state), Some(_)) => {
                let generation = state.generation;
                plan.take_over(*state, false);
                plan.recheck_all(AllFor::FallBack { generation })
            }
            (_, _, Some(len)) => {
                plan.outcome = ResumeOutcome::Restarted {
                    reason: RestartReason::PartUnverified,
                };
                if len == binding.artifact_bytes {
                    plan.ask((0..geometry.chunk_count()).collect(), Judge::Whole)
                } else {
                    plan.journals()
                }
            }
            (_, _, None) => plan.journals(),
        })
    }

    /// Continues from `state`.
    fn take_over(&mut self, state: PartialState, current_is_good: bool) {
        self.persisted = Some(Persisted::of(&state));
        self.current_is_good = current_is_good;
        self.state_manifest = Some(state.manifest_sha256);
        self.counters = state.counters;
        self.knowledge = state.knowledge;
    }

    fn recheck_all(self, why: AllFor) -> Next {
        let listed = self
            .knowledge
            .verified()
            .iter_ones()
            .map(|index| index.0)
            .collect();
        self.ask(listed, Judge::All(why))
    }

    /// Asks for the hashes of `chunks`; nothing to hash is judged at once.
    fn ask(self, chunks: Vec<u32>, judge: Judge) -> Next {
        if chunks.is_empty() {
            return self.judge(&[], &[], judge);
        }
        Next::Hash(HashRequest {
            plan: self,
            chunks,
            judge,
        })
    }

    /// The chunks of `chunks` whose `hashes` are not their known hash.
    fn mismatches(&self, chunks: &[u32], hashes: &[Sha256Digest]) -> Vec<u32> {
        chunks
            .iter()
            .zip(hashes)
            .filter(|&(&index, hash)| self.knowledge.chunk_hash(ChunkIndex(index)) != Some(*hash))
            .map(|(&index, _)| index)
            .collect()
    }

    fn judge(mut self, chunks: &[u32], hashes: &[Sha256Digest], judge: Judge) -> Next {
        match judge {
            Judge::Sample => match self.mismatches(chunks, hashes).first() {
                Some(&chunk) => {
                    self.recheck_all(AllFor::Recheck(RecheckReason::SampleMismatch { chunk }))
                }
                None => {
                    self.outcome = ResumeOutcome::Resumed {
                        chunks: self.knowledge.verified().count_ones(),
                        sampled: chunks.len() as u32,
                    };
                    self.journals()
                }
            },
            Judge::All(why) => {
                let bad = self.mismatches(chunks, hashes);
                for &index in &bad {
                    self.knowledge.drop_chunk(ChunkIndex(index));
                }
                self.counters.chunks_dropped += bad.len() as u64;
                let (good, dropped) = ((chunks.len() - bad.len()) as u32, bad.len() as u32);
                self.outcome = match why {
                    AllFor::Recheck(reason) => ResumeOutcome::Rechecked {
                        reason,
                        good,
                        dropped,
                    },
                    AllFor::FallBack { generation } => ResumeOutcome::FellBack {
                        generation,
                        good,
                        dropped,
                    },
                };
                self.journals()
            }
            Judge::Whole => {
                if let Ok(tree) = MerkleTree::from_chunk_hashes(hashes.to_vec())
                    && tree.root() == self.knowledge.root()
                {
                    self.knowledge = ChunkKnowledge::complete(&tree);
                    self.outcome = ResumeOutcome::RecoveredWhole {
                        chunks: tree.chunk_count(),
                    };
                }
                self.journals()
            }
            Judge::Journal(records) => {
                for (record, found) in records.values().zip(hashes) {
                    if *found == record.chunk_hash
                        && self
                            .knowledge
                            .insert(ChunkIndex(record.index), record.chunk_hash, &record.proof)
                            .unwrap_or(false)
                    {
                        self.chunks_from_journal += 1;
                    }
                }
                self.done()
            }
        }
    }

    /// The journals are read when there is a `.part` their chunks are in.
    fn journals(self) -> Next {
        if self.part_exists {
            Next::ReadJournals(JournalRequest { plan: self })
        } else {
            self.done()
        }
    }

    fn done(mut self) -> Next {
        self.counters.runs += 1;
        let checkpoint_now =
            !matches!(self.outcome, ResumeOutcome::Resumed { .. }) || self.chunks_from_journal > 0;
        Next::Done(Box::new(Decision {
            outcome: self.outcome,
            knowledge: self.knowledge,
            counters: self.counters,
            state_manifest: self.state_manifest,
            persisted: self.persisted,
            current_is_good: self.current_is_good,
            chunks_from_journal: self.chunks_from_journal,
            bytes_rechecked: self.bytes_rechecked,
            current_problem: self.current_problem,
            previous_problem: self.previous_problem,
            checkpoint_now,
        }))
    }
}

impl HashRequest {
    /// The chunks to rehash, in the order their hashes are expected.
    pub(crate) fn chunks(&self) -> &[u32] {
        &self.chunks
    }

    /// The hashes of [`HashRequest::chunks`] as the bytes on disk give
    /// them, in that order.
    pub(crate) fn hashed(self, hashes: &[Sha256Digest]) -> Next {
        let HashRequest {
            mut plan,
            chunks,
            judge,
        } = self;
        plan.bytes_rechecked += chunks
            .iter()
            .filter_map(|&index| plan.geometry.chunk_len(ChunkIndex(index)))
            .map(u64::from)
            .sum::<u64>();
        plan.judge(&chunks, hashes, judge)
    }
}

impl JournalRequest {
    /// The journals' bytes, `.prev` first, then the current one (a missing
    /// journal left out). One that cannot be parsed counts for nothing: it
    /// only costs chunks fetched again.
    pub(crate) fn read(self, journals: &[Vec<u8>]) -> Next {
        let plan = self.plan;
        let root = plan.knowledge.root();
        let count = plan.knowledge.chunk_count();
        let mut records = BTreeMap::new();
        for bytes in journals {
            let Ok(journal) = parse_journal(bytes, &root) else {
                continue;
            };
            for record in journal.records {
                if record.index < count
                    && !plan.knowledge.is_verified(ChunkIndex(record.index))
                    && minimodel_verifier::merkle::verify_proof(
                        &root,
                        count,
                        record.index,
                        &record.chunk_hash,
                        &record.proof,
                    )
                    .is_ok()
                {
                    records.insert(record.index, record);
                }
            }
        }
        if records.is_empty() {
            return plan.done();
        }
        let chunks = records.keys().copied().collect();
        plan.ask(chunks, Judge::Journal(records))
    }
}

/// Why a state file is not used, when it is there but cannot be.
fn problem(file: &StateFile) -> Option<StateError> {
    match file {
        StateFile::Unusable(error) => Some(error.clone()),
        _ => None,
    }
}

/// Whether the previous state is needed: only when the current one is not
/// usable.
pub(crate) fn needs_previous(current: &StateFile) -> bool {
    !matches!(current, StateFile::Usable(_))
}

/// Refuses (writing nothing) a state of another artifact or of an unknown
/// format, found at `path`.
pub(crate) fn check_state(
    file: StateFile,
    path: &Path,
    binding: &StateBinding,
) -> Result<StateFile, ResumeError> {
    match &file {
        StateFile::Usable(state) if state.binding.first_difference(binding).is_some() => {
            Err(ResumeError::ForeignState {
                path: path.to_path_buf(),
                found: Box::new(state.binding.clone()),
                expected: Box::new(binding.clone()),
            })
        }
        StateFile::Unusable(StateError::UnsupportedFormat { found }) => {
            Err(ResumeError::UnsupportedState {
                path: path.to_path_buf(),
                found: found.clone(),
            })
        }
        _ => Ok(file),
    }
}

/// A state file next to the final file that is left over from a crash at
/// the end of a delivery (one of this very artifact): to be removed.
/// Anything else stays.
pub(crate) fn is_leftover_state(file: &StateFile, binding: &StateBinding) -> bool {
    matches!(file, StateFile::Usable(state) if state.binding.first_difference(binding).is_none())
}

/// The final file is there: complete if its receipt (or why it could not
/// be read) is for this artifact and the file has the artifact's length.
/// Whether it is unchanged since its receipt's check: size, identity and
/// nanosecond times as the check left them, and the check did not end
/// right after a write (racy: a later write in the same clock tick would
/// not show). A receipt without a stamp predates it: checked again.
pub(crate) fn judge_final(
    paths: &DownloadPaths,
    facts: &FileFacts,
    receipt: Result<ImportReceipt, String>,
    binding: &StateBinding,
) -> Result<(ImportReceipt, CompleteCheck), ResumeError> {
    let receipt = receipt.map_err(|problem| ResumeError::UnverifiedFinal {
        path: paths.artifact.clone(),
        receipt: paths.receipt.clone(),
        problem,
    })?;
    let found = receipt_binding(&receipt);
    if found.first_difference(binding).is_some() {
        return Err(ResumeError::ForeignComplete {
            path: paths.artifact.clone(),
            found: Box::new(found),
            expected: Box::new(binding.clone()),
        });
    }
    if facts.len != binding.artifact_bytes {
        return Err(ResumeError::UnverifiedFinal {
            path: paths.artifact.clone(),
            receipt: paths.receipt.clone(),
            problem: format!(
                "is for {} bytes, but the file has {}",
                binding.artifact_bytes, facts.len
            ),
        });
    }
    let check = match &receipt.file {
        Some(stamp) if stamp.vouches_for(&facts.stamp) => CompleteCheck::Unchanged,
        _ => CompleteCheck::ChangedSinceVerified,
    };
    Ok((receipt, check))
}

/// Whether a finished file is read again on opening: when asked
/// (`--recheck`) or when it changed since its receipt's check.
pub(crate) fn final_needs_recheck(check: CompleteCheck, options: &ResumeOptions) -> bool {
    options.recheck || check == CompleteCheck::ChangedSinceVerified
}

/// The receipt of a finished file that passed its check again just now:
/// `now` is its last check, `stamp` the file as the check left it (read
/// whole just now).
pub(crate) fn refreshed_receipt(
    mut receipt: ImportReceipt,
    now: String,
    stamp: Option<FileStamp>,
) -> ImportReceipt {
    receipt.last_verified_at = Some(now);
    receipt.file = stamp;
    receipt
}

/// A damaged finished file's good chunks.
#[derive(Debug)]
pub(crate) struct Repair {
    /// The chunks kept.
    pub(crate) knowledge: ChunkKnowledge,
    /// Chunks to fetch again.
    pub(crate) bad: u32,
    /// Whether a chunk list told the good chunks from the bad (without
    /// one, no chunk can be trusted).
    pub(crate) chunk_list: bool,
}

/// Which chunks of a finished file that failed its check are kept:
/// `chunk_hashes` are what its bytes hash to, `chunk_list` the chunk list
/// saved at delivery, if any, trusted only when it gives the root.
pub(crate) fn repair(
    chunk_hashes: &[Sha256Digest],
    chunk_list: Option<&[u8]>,
    binding: &StateBinding,
) -> Repair {
    let count = binding.chunk_count;
    let expected = chunk_list
        .and_then(|bytes| parse_list_of(bytes, binding))
        .and_then(|list| MerkleTree::from_chunk_hashes(list).ok())
        .filter(|tree| tree.root() == binding.merkle_root);
    match &expected {
        Some(tree) => {
            let mut knowledge = ChunkKnowledge::complete(tree);
            let mut bad = 0;
            for (index, (found, want)) in chunk_hashes.iter().zip(tree.chunk_hashes()).enumerate() {
                if found != want {
                    knowledge.drop_chunk(ChunkIndex(index as u32));
                    bad += 1;
                }
            }
            Repair {
                knowledge,
                bad,
                chunk_list: true,
            }
        }
        None => Repair {
            knowledge: ChunkKnowledge::new(binding.merkle_root, count),
            bad: count,
            chunk_list: false,
        },
    }
}

/// A line of the chunk list file: 64 hex digits and its newline.
const CHUNK_LIST_LINE: u64 = 65;

/// The most bytes of a chunk list of `count` chunks worth reading (one
/// more than a whole one of either form, so that a longer file shows).
pub(crate) fn chunk_list_limit(count: u32) -> u64 {
    minimodel_verifier::chunk_list::MAX_LISTED_LINE as u64 * u64::from(count) + 1
}

/// The hashes of `bytes` read as the chunk list of the artifact `binding`
/// names, in its form: with lengths, which must be its own, when its
/// chunks are listed.
pub(crate) fn parse_list_of(bytes: &[u8], binding: &StateBinding) -> Option<Vec<Sha256Digest>> {
    match &binding.listed {
        Some(listed) => minimodel_verifier::chunk_list::ChunkList::parse_as(bytes, listed)
            .map(|list| list.into_parts().0),
        None => parse_chunk_list(bytes, binding.chunk_count),
    }
}

/// The chunk list file of fixed-size chunks (`docs/merkle.md`): `count`
/// lines of 64 lowercase hex digits. `None` for anything else.
pub(crate) fn parse_chunk_list(bytes: &[u8], count: u32) -> Option<Vec<Sha256Digest>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_suffix('\n')?;
    let hashes: Vec<Sha256Digest> = body
        .split('\n')
        .map(|line| {
            let valid =
                line.len() == 64 && line.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            valid.then(|| line.parse::<Sha256Digest>().ok()).flatten()
        })
        .collect::<Option<_>>()?;
    (hashes.len() == count as usize).then_some(hashes)
}

/// The files of a download that opening refuses when they are there but
/// are not what the download writes under their names (notes saved as
/// `<id>.receipt.json`: a delivery would replace them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnFile {
    /// `<id>.receipt.json`.
    Receipt,
    /// `<id>.chunk-list`.
    ChunkList,
    /// `<id>.slm.peers`.
    Peers,
    /// `<id>.slm.mirrors`: what earlier runs saw of their mirrors.
    Mirrors,
}

impl OwnFile {
    /// The most bytes read to tell.
    pub(crate) fn read_limit(self) -> u64 {
        match self {
            OwnFile::Receipt => 1 << 20,
            // Only the start of a chunk list (a whole one is 65 or, with
            // lengths, up to 74 bytes a chunk).
            OwnFile::ChunkList => CHUNK_LIST_LINE * 64,
            OwnFile::Peers => super::MAX_PEERS_FILE_BYTES + 1,
            OwnFile::Mirrors => super::MAX_MIRRORS_FILE_BYTES + 1,
        }
    }

    /// Whether `start` (the file's first [`OwnFile::read_limit`] bytes, or
    /// all of it) is what the download writes there: what this version (or
    /// an earlier run) wrote always is. A peer list of ours that this
    /// version cannot use (another version's, or one with a bad entry) is
    /// one: it is replaced at the next checkpoint.
    pub(crate) fn is_ours(self, start: &[u8]) -> bool {
        match self {
            OwnFile::Receipt => serde_json::from_slice::<serde_json::Value>(start)
                .is_ok_and(|value| value["format"] == RECEIPT_FORMAT),
            OwnFile::ChunkList => {
                looks_like_chunk_list(start, start.len() as u64 == self.read_limit())
            }
            OwnFile::Peers => {
                serde_json::from_slice::<serde_json::Value>(start).is_ok_and(|value| {
                    value["format"]
                        .as_str()
                        .is_some_and(|format| format.starts_with("minimodel-peers"))
                })
            }
            OwnFile::Mirrors => {
                serde_json::from_slice::<serde_json::Value>(start).is_ok_and(|value| {
                    value["format"]
                        .as_str()
                        .is_some_and(|format| format.starts_with("minimodel-mirrors"))
                })
            }
        }
    }

    /// The file's kind, for a message.
    pub(crate) fn what(self) -> &'static str {
        match self {
            OwnFile::Receipt => "receipt",
            OwnFile::ChunkList => "chunk list",
            OwnFile::Peers => "peer list",
            OwnFile::Mirrors => "mirror list",
        }
    }
}

/// Whether `start`, the first bytes of a file (all of it unless `cut`),
/// is a chunk list: lines of 64 lowercase hex digits, each ending in LF;
/// when `cut`, the last line read may be short.
fn looks_like_chunk_list(start: &[u8], cut: bool) -> bool {
    let Some(end) = start.iter().rposition(|byte| *byte == b'\n') else {
        return false;
    };
    let (lines, rest) = (&start[..end], &start[end + 1..]);
    // A line cut by the read limit: a start of a line of either form.
    let partial = |rest: &[u8]| {
        rest.len() < minimodel_verifier::chunk_list::MAX_LISTED_LINE
            && rest.iter().enumerate().all(|(i, byte)| match i {
                0..64 => matches!(byte, b'0'..=b'9' | b'a'..=b'f'),
                64 => *byte == b' ',
                _ => byte.is_ascii_digit(),
            })
    };
    lines
        .split(|byte| *byte == b'\n')
        .all(minimodel_verifier::chunk_list::is_list_line)
        && (rest.is_empty() || (cut && partial(rest)))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
