//! Opening a download directory: what is there, what can be trusted, and
//! what it costs to find out (`docs/resume.md`, "Opening").

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use minimodel_verifier::check::verify_with_hashes;
use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex};
use minimodel_verifier::hashing::hash_reader;
use minimodel_verifier::merkle::{MerkleTree, chunk_list_text};
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::{Manifest, Sha256Digest};

use super::dir::SafeDir;
use super::error::{ResumeError, StateError, io_error};
use super::files::{DownloadPaths, StateFile, load_receipt, load_state};
use super::journal::{MAX_JOURNAL_BYTES, parse_journal};
use super::knowledge::ChunkKnowledge;
use super::partial::{PartialDownload, Persisted, Start, receipt_binding};
use super::recheck::{RecheckProgress, fresh_seed, hash_chunks, sample_chunks};
use super::report::{
    CompleteCheck, CompleteDownload, OpenedDownload, RecheckReason, RestartReason, ResumeOptions,
    ResumeOutcome, ResumeReport,
};
use super::state::{PartialState, ResumeCounters, StateBinding};
use crate::store::{FileStorage, Storage};

impl PartialDownload {
    /// Opens the download of `manifest`'s artifact in `dir` (created if
    /// missing), deciding from what is there (`docs/resume.md`):
    /// complete, fresh, resumed, rechecked, fallen back or restarted.
    /// `progress` hears about any rehashing. Refuses, writing nothing, a
    /// directory that holds another artifact or an unknown state format.
    pub fn open(
        dir: &Path,
        manifest: &Manifest,
        manifest_sha256: Sha256Digest,
        options: &ResumeOptions,
        progress: &(dyn Fn(RecheckProgress) + Sync),
    ) -> Result<OpenedDownload, ResumeError> {
        Self::open_with_storage(dir, manifest, manifest_sha256, options, progress, |file| {
            Arc::new(file)
        })
    }

    /// [`Self::open`], with the `.part` wrapped by `wrap` (a test puts a
    /// `FaultyStorage` of the `testing` feature under the download this
    /// way).
    pub fn open_with_storage(
        dir: &Path,
        manifest: &Manifest,
        manifest_sha256: Sha256Digest,
        options: &ResumeOptions,
        progress: &(dyn Fn(RecheckProgress) + Sync),
        wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
    ) -> Result<OpenedDownload, ResumeError> {
        let started = Instant::now();
        let binding = StateBinding::of_manifest(manifest)?;
        let geometry = binding.geometry()?;
        let paths = DownloadPaths::new(dir, &manifest.model_id);
        // Nothing can be refused in a directory that does not exist yet.
        let safe = SafeDir::open(dir, !dir.exists())?;
        let names = paths.names.clone();

        // Read and refuse, writing nothing; then take the download's lock
        // (the first write) and read again under it, so that what another
        // process changed in between (a checkpoint, a delivery) is seen.
        let mut held: Option<File> = None;
        let (current, previous, part_len, lock) = loop {
            if safe.exists(&names.artifact) {
                let done = complete(paths.clone(), &safe, &binding)?;
                let recheck = options.recheck || done.check == CompleteCheck::ChangedSinceVerified;
                if !recheck {
                    return Ok(OpenedDownload::Complete(done));
                }
                // A recheck may repair the file: one process at a time.
                let lock = match held {
                    Some(lock) => lock,
                    None => lock(&safe, &done.paths, manifest)?,
                };
                return recheck_complete(
                    done,
                    safe,
                    lock,
                    manifest,
                    manifest_sha256,
                    progress,
                    started,
                );
            }
            let current = checked(load_state(&safe, &names.state)?, &paths.state, &binding)?;
            let previous = match current {
                StateFile::Usable(_) => StateFile::Missing,
                _ => checked(
                    load_state(&safe, &names.previous)?,
                    &paths.previous,
                    &binding,
                )?,
            };
            let part_len = safe.inspect(&names.part)?.map(|facts| facts.len);
            // Any other file of the download that is not a regular file of
            // ours is refused here, before anything is written or fetched.
            for name in [
                &names.journal,
                &names.journal_prev,
                &names.receipt,
                &names.chunk_list,
                &names.peers,
                &names.mirrors,
            ] {
                safe.inspect(name)?;
            }
            // Nor is a file under one of their names that is not what the
            // download writes there (notes saved as `<id>.receipt.json`):
            // the delivery would replace it.
            refuse_foreign_files(&safe, &paths)?;
            match held {
                Some(lock) => break (current, previous, part_len, lock),
                // One process at a time from here on, where files change: a
                // second fetch (or a companion) into this directory would
                // rewrite the state and the journal under the first.
                None => held = Some(lock(&safe, &paths, manifest)?),
            }
        };
        // Every refusal is behind us: from here on, files change.
        for stem in [
            &names.state,
            &names.receipt,
            &names.chunk_list,
            &names.peers,
            &names.mirrors,
        ] {
            safe.remove_stale_temps(stem)?;
        }
        let file = safe.open_read_write(&names.part)?;
        let file = match FileStorage::sized(file, binding.artifact_bytes) {
            Ok(file) => file,
            Err(error) => {
                if part_len.is_none() {
                    // Not ours to keep: a file this run created and could
                    // not size (a full disk) would only cost a recheck later.
                    let _ = safe.remove_if_present(&names.part);
                }
                return Err(io_error("reserve space for", &paths.part)(error));
            }
        };
        let storage = wrap(file);

        let part = paths.part.clone();
        let mut opening = Opening {
            part: &part,
            geometry,
            storage: storage.as_ref(),
            progress,
            bytes_rechecked: 0,
        };
        let current_problem = problem(&current);
        let previous_problem = problem(&previous);
        let (decision, persisted, current_is_good) = match (current, previous, part_len) {
            (StateFile::Usable(state), _, Some(len)) => {
                let seed = options.sample_seed.unwrap_or_else(fresh_seed);
                let persisted = Persisted::of(&state);
                (
                    opening.resume(*state, len, options, seed)?,
                    Some(persisted),
                    true,
                )
            }
            (StateFile::Usable(state), _, None) | (_, StateFile::Usable(state), None) => {
                let persisted = Persisted::of(&state);
                let decision = Decision {
                    outcome: ResumeOutcome::Restarted {
                        reason: RestartReason::PartMissing,
                    },
                    knowledge: ChunkKnowledge::new(binding.merkle_root, geometry.chunk_count()),
                    counters: state.counters,
                    manifest_sha256: Some(state.manifest_sha256),
                };
                (decision, Some(persisted), false)
            }
            (_, StateFile::Usable(state), Some(_)) => {
                let persisted = Persisted::of(&state);
                (opening.fall_back(*state)?, Some(persisted), false)
            }
            (_, _, Some(len)) => (opening.recover_whole(&binding, len)?, None, false),
            (_, _, None) => (Decision::fresh(&binding), None, false),
        };
        let Decision {
            outcome,
            mut knowledge,
            mut counters,
            manifest_sha256: state_manifest,
        } = decision;
        let from_journal = if part_len.is_some() {
            opening.replay_journals(&safe, &paths, &mut knowledge)?
        } else {
            0
        };
        counters.runs += 1;
        let bytes_rechecked = opening.bytes_rechecked;
        let download = PartialDownload::start(Start {
            paths,
            dir: safe,
            binding,
            manifest_sha256,
            storage,
            knowledge,
            counters,
            persisted,
            current_is_good,
            lock,
            discardable: true,
        })?;
        if !matches!(outcome, ResumeOutcome::Resumed { .. }) || from_journal > 0 {
            // Write down what opening decided, so a crash now does not
            // bring back dropped chunks (or lose journaled ones).
            download.checkpoint()?;
        }
        download.begin_journal()?;
        let report = ResumeReport {
            chunks_verified: download.chunks_verified(),
            chunk_count: geometry.chunk_count(),
            outcome,
            chunks_from_journal: from_journal,
            bytes_rechecked,
            current_problem,
            previous_problem,
            manifest_changed: state_manifest.is_some_and(|state| state != manifest_sha256),
            elapsed: started.elapsed(),
        };
        Ok(OpenedDownload::Partial(download, report))
    }
}

fn problem(file: &StateFile) -> Option<StateError> {
    match file {
        StateFile::Unusable(error) => Some(error.clone()),
        _ => None,
    }
}

/// Refuses a state of another artifact or of an unknown format.
fn checked(file: StateFile, path: &Path, binding: &StateBinding) -> Result<StateFile, ResumeError> {
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

/// The final file is there: complete if its receipt is for this artifact
/// and the file has the artifact's length.
fn complete(
    paths: DownloadPaths,
    dir: &SafeDir,
    binding: &StateBinding,
) -> Result<CompleteDownload, ResumeError> {
    let names = &paths.names;
    let facts = dir
        .inspect(&names.artifact)?
        .ok_or_else(|| ResumeError::ArtifactInTheWay {
            path: paths.artifact.clone(),
        })?;
    let receipt =
        load_receipt(dir, &names.receipt).map_err(|problem| ResumeError::UnverifiedFinal {
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
    remove_leftover_states(&paths, dir, binding)?;
    let verified_at = receipt.last_verified().to_owned();
    // Unchanged only when size, identity and nanosecond times are what the
    // check left, and the check did not end right after a write (racy: a
    // later write in the same clock tick would not show). A receipt
    // without a stamp predates it: checked again.
    let check = match &receipt.file {
        Some(stamp) if stamp.vouches_for(&facts.stamp) => CompleteCheck::Unchanged,
        _ => CompleteCheck::ChangedSinceVerified,
    };
    Ok(CompleteDownload {
        paths,
        receipt,
        verified_at,
        check,
    })
}

/// State files of this very artifact next to its final file are left over
/// from a crash at the end of `finish`: they are removed. Anything else is
/// left alone.
fn remove_leftover_states(
    paths: &DownloadPaths,
    dir: &SafeDir,
    binding: &StateBinding,
) -> Result<(), ResumeError> {
    let names = &paths.names;
    let mut removed = false;
    for name in [&names.state, &names.previous] {
        if let StateFile::Usable(state) = load_state(dir, name)?
            && state.binding.first_difference(binding).is_none()
        {
            dir.remove_if_present(name)?;
            removed = true;
        }
    }
    for name in [&names.journal, &names.journal_prev] {
        if dir.inspect(name)?.is_some() {
            dir.remove_if_present(name)?;
            removed = true;
        }
    }
    if removed {
        dir.sync()?;
    }
    Ok(())
}

/// What a download starts from.
struct Decision {
    outcome: ResumeOutcome,
    knowledge: ChunkKnowledge,
    counters: ResumeCounters,
    /// The manifest file the state was written under, if there was one.
    manifest_sha256: Option<Sha256Digest>,
}

impl Decision {
    fn fresh(binding: &StateBinding) -> Self {
        Self {
            outcome: ResumeOutcome::Fresh,
            knowledge: ChunkKnowledge::new(binding.merkle_root, binding.chunk_count),
            counters: ResumeCounters::default(),
            manifest_sha256: None,
        }
    }
}

/// The rehashing part of opening.
struct Opening<'a> {
    part: &'a Path,
    geometry: ChunkGeometry,
    storage: &'a dyn Storage,
    progress: &'a (dyn Fn(RecheckProgress) + Sync),
    bytes_rechecked: u64,
}

impl Opening<'_> {
    fn hash(&mut self, indices: &[u32]) -> Result<Vec<Sha256Digest>, ResumeError> {
        let hashes = hash_chunks(self.storage, &self.geometry, indices, self.progress)
            .map_err(io_error("rehash the chunks of", self.part))?;
        self.bytes_rechecked += indices
            .iter()
            .filter_map(|&index| self.geometry.chunk_len(ChunkIndex(index)))
            .map(u64::from)
            .sum::<u64>();
        Ok(hashes)
    }

    /// The chunks of `indices` whose bytes do not hash to their chunk hash.
    fn mismatches(
        &mut self,
        knowledge: &ChunkKnowledge,
        indices: &[u32],
    ) -> Result<Vec<u32>, ResumeError> {
        let hashes = self.hash(indices)?;
        Ok(indices
            .iter()
            .zip(hashes)
            .filter(|&(&index, hash)| knowledge.chunk_hash(ChunkIndex(index)) != Some(hash))
            .map(|(&index, _)| index)
            .collect())
    }

    /// Rehashes every verified chunk and drops the bad ones: (good, dropped).
    fn recheck_all(
        &mut self,
        knowledge: &mut ChunkKnowledge,
        counters: &mut ResumeCounters,
    ) -> Result<(u32, u32), ResumeError> {
        let listed: Vec<u32> = knowledge
            .verified()
            .iter_ones()
            .map(|index| index.0)
            .collect();
        let bad = self.mismatches(knowledge, &listed)?;
        for &index in &bad {
            knowledge.drop_chunk(ChunkIndex(index));
        }
        counters.chunks_dropped += bad.len() as u64;
        Ok((listed.len() as u32 - bad.len() as u32, bad.len() as u32))
    }

    /// A usable current state: sample, or recheck when asked or needed.
    fn resume(
        &mut self,
        state: PartialState,
        part_len: u64,
        options: &ResumeOptions,
        seed: u64,
    ) -> Result<Decision, ResumeError> {
        let PartialState {
            mut knowledge,
            mut counters,
            manifest_sha256,
            ..
        } = state;
        let reason = if part_len != self.geometry.artifact_bytes() {
            Some(RecheckReason::PartResized { found: part_len })
        } else if options.recheck {
            Some(RecheckReason::Requested)
        } else {
            let sample = sample_chunks(knowledge.verified(), options.sample, seed);
            match self.mismatches(&knowledge, &sample)?.first() {
                Some(&chunk) => Some(RecheckReason::SampleMismatch { chunk }),
                None => {
                    return Ok(Decision {
                        outcome: ResumeOutcome::Resumed {
                            chunks: knowledge.verified().count_ones(),
                            sampled: sample.len() as u32,
                        },
                        knowledge,
                        counters,
                        manifest_sha256: Some(manifest_sha256),
                    });
                }
            }
        };
        let (good, dropped) = self.recheck_all(&mut knowledge, &mut counters)?;
        Ok(Decision {
            outcome: ResumeOutcome::Rechecked {
                reason: reason.unwrap_or(RecheckReason::Requested),
                good,
                dropped,
            },
            knowledge,
            counters,
            manifest_sha256: Some(manifest_sha256),
        })
    }

    /// The previous generation, every chunk it lists rechecked.
    fn fall_back(&mut self, state: PartialState) -> Result<Decision, ResumeError> {
        let generation = state.generation;
        let PartialState {
            mut knowledge,
            mut counters,
            manifest_sha256,
            ..
        } = state;
        let (good, dropped) = self.recheck_all(&mut knowledge, &mut counters)?;
        Ok(Decision {
            outcome: ResumeOutcome::FellBack {
                generation,
                good,
                dropped,
            },
            knowledge,
            counters,
            manifest_sha256: Some(manifest_sha256),
        })
    }

    /// Brings back chunks the journals (`.prev`, then the current one)
    /// record and the state does not list: a record counts only if its
    /// proof leads to the root and the chunk's bytes on disk hash to its
    /// chunk hash. Returns how many chunks came back. A journal that
    /// cannot be read is ignored: it only costs chunks fetched again.
    fn replay_journals(
        &mut self,
        dir: &SafeDir,
        paths: &DownloadPaths,
        knowledge: &mut ChunkKnowledge,
    ) -> Result<u32, ResumeError> {
        let root = knowledge.root();
        let count = knowledge.chunk_count();
        let mut candidates = std::collections::BTreeMap::new();
        for name in [&paths.names.journal_prev, &paths.names.journal] {
            let Some(bytes) = dir.read(name, MAX_JOURNAL_BYTES)? else {
                continue;
            };
            let Ok(journal) = parse_journal(&bytes, &root) else {
                continue;
            };
            for record in journal.records {
                let index = ChunkIndex(record.index);
                if record.index < count
                    && !knowledge.is_verified(index)
                    && minimodel_verifier::merkle::verify_proof(
                        &root,
                        count,
                        record.index,
                        &record.chunk_hash,
                        &record.proof,
                    )
                    .is_ok()
                {
                    candidates.insert(record.index, record);
                }
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        let indices: Vec<u32> = candidates.keys().copied().collect();
        let hashes = self.hash(&indices)?;
        let mut recovered = 0;
        for (record, found) in candidates.values().zip(hashes) {
            if found == record.chunk_hash
                && knowledge
                    .insert(ChunkIndex(record.index), record.chunk_hash, &record.proof)
                    .unwrap_or(false)
            {
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    /// No usable state: the whole `.part` must hash to the root.
    fn recover_whole(
        &mut self,
        binding: &StateBinding,
        part_len: u64,
    ) -> Result<Decision, ResumeError> {
        let mut decision = Decision::fresh(binding);
        decision.outcome = ResumeOutcome::Restarted {
            reason: RestartReason::PartUnverified,
        };
        if part_len != binding.artifact_bytes {
            return Ok(decision);
        }
        let all: Vec<u32> = (0..self.geometry.chunk_count()).collect();
        let hashes = self.hash(&all)?;
        if let Ok(tree) = MerkleTree::from_chunk_hashes(hashes)
            && tree.root() == binding.merkle_root
        {
            decision.knowledge = ChunkKnowledge::complete(&tree);
            decision.outcome = ResumeOutcome::RecoveredWhole {
                chunks: tree.chunk_count(),
            };
        }
        Ok(decision)
    }
}

/// The final file is to be checked again (`--recheck`, or it changed since
/// its receipt): one pass over its bytes as they are on disk, every check of
/// a local `verify`. A good file gets its recheck time in its receipt (and
/// a chunk list if it had none); a damaged one becomes a partial download
/// again whose good chunks are kept, so that only the bad ones are fetched.
fn recheck_complete(
    done: CompleteDownload,
    dir: SafeDir,
    lock: File,
    manifest: &Manifest,
    manifest_sha256: Sha256Digest,
    progress: &(dyn Fn(RecheckProgress) + Sync),
    started: Instant,
) -> Result<OpenedDownload, ResumeError> {
    let paths = done.paths.clone();
    let names = paths.names.clone();
    let binding = StateBinding::of_manifest(manifest)?;
    let geometry = binding.geometry()?;
    let file = dir
        .open_read(&names.artifact)?
        .ok_or_else(|| io_error("open", &paths.artifact)(std::io::ErrorKind::NotFound.into()))?;
    let total = binding.artifact_bytes;
    let count = geometry.chunk_count();
    let chunk_size = u64::from(geometry.chunk_size());
    let report = |bytes: u64| {
        progress(RecheckProgress {
            chunks_done: (bytes / chunk_size.max(1)).min(u64::from(count)) as u32,
            chunks_total: count,
            bytes_done: bytes,
            bytes_total: total,
        })
    };
    let hashes = hash_reader(&file, geometry.chunk_size(), &report)
        .map_err(io_error("read", &paths.artifact))?;
    let chunk_hashes = hashes.chunk_hashes.clone();
    match verify_with_hashes(manifest, &paths.artifact, hashes) {
        Ok(artifact) => {
            let mut receipt = done.receipt.clone();
            let now = now_rfc3339();
            receipt.last_verified_at = Some(now.clone());
            // The file as this check leaves it: read whole just now.
            receipt.file = dir.inspect(&names.artifact)?.map(|facts| facts.stamp);
            let mut text = serde_json::to_vec_pretty(&receipt).unwrap_or_default();
            text.push(b'\n');
            dir.write_atomically(&names.receipt, &text)?;
            if dir.inspect(&names.chunk_list)?.is_none() {
                let list = chunk_list_text(artifact.tree().chunk_hashes());
                dir.write_atomically(&names.chunk_list, list.as_bytes())?;
            }
            dir.sync()?;
            Ok(OpenedDownload::Complete(CompleteDownload {
                paths,
                receipt,
                verified_at: now,
                check: CompleteCheck::RecheckedNow,
            }))
        }
        Err(error) if error.is_io() => Err(ResumeError::Io {
            action: "read",
            path: paths.artifact.clone(),
            source: std::io::Error::other(error.to_string()),
        }),
        Err(_damaged) => {
            // Which chunks are bad: the chunk list saved at delivery names
            // every chunk's hash, and is trusted only if it gives the root.
            let expected = dir
                .read(&names.chunk_list, CHUNK_LIST_LINE * u64::from(count) + 1)?
                .and_then(|bytes| parse_chunk_list(&bytes, count))
                .and_then(|list| MerkleTree::from_chunk_hashes(list).ok())
                .filter(|tree| tree.root() == binding.merkle_root);
            let (knowledge, bad) = match &expected {
                Some(tree) => {
                    let mut knowledge = ChunkKnowledge::complete(tree);
                    let mut bad = 0;
                    for (index, (found, want)) in
                        chunk_hashes.iter().zip(tree.chunk_hashes()).enumerate()
                    {
                        if found != want {
                            knowledge.drop_chunk(ChunkIndex(index as u32));
                            bad += 1;
                        }
                    }
                    (knowledge, bad)
                }
                None => (ChunkKnowledge::new(binding.merkle_root, count), count),
            };
            let storage: Arc<dyn Storage> = Arc::new(
                FileStorage::sized(
                    dir.open_read_write(&names.artifact)?,
                    binding.artifact_bytes,
                )
                .map_err(io_error("open", &paths.artifact))?,
            );
            let good = count - bad;
            let download = PartialDownload::start(Start {
                paths: paths.clone(),
                dir,
                binding,
                manifest_sha256,
                storage,
                knowledge,
                counters: ResumeCounters {
                    runs: 1,
                    chunks_dropped: u64::from(bad),
                    ..ResumeCounters::default()
                },
                persisted: None,
                current_is_good: false,
                lock,
                discardable: false,
            })?;
            // The state first: a crash before the rename leaves the damaged
            // file with its receipt, which the next run checks again.
            download.checkpoint()?;
            download.dir().rename(&names.artifact, &names.part)?;
            download.dir().remove_if_present(&names.receipt)?;
            download.dir().remove_if_present(&names.chunk_list)?;
            download.dir().sync()?;
            download.begin_journal()?;
            let report = ResumeReport {
                chunks_verified: good,
                chunk_count: count,
                outcome: ResumeOutcome::Repairing {
                    good,
                    dropped: bad,
                    chunk_list: expected.is_some(),
                },
                chunks_from_journal: 0,
                bytes_rechecked: total,
                current_problem: None,
                previous_problem: None,
                manifest_changed: false,
                elapsed: started.elapsed(),
            };
            Ok(OpenedDownload::Partial(download, report))
        }
    }
}

/// A line of the chunk list file: 64 hex digits and its newline.
const CHUNK_LIST_LINE: u64 = 65;

/// The chunk list file (`docs/merkle.md`): `count` lines of 64 lowercase
/// hex digits. `None` for anything else.
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

/// Takes the download's lock ([`DownloadPaths::lock`]), or refuses: another
/// process has it open.
fn lock(safe: &SafeDir, paths: &DownloadPaths, manifest: &Manifest) -> Result<File, ResumeError> {
    safe.lock(&paths.names.lock)?
        .ok_or_else(|| ResumeError::InUse {
            path: paths.lock.clone(),
            model_id: manifest.model_id.to_string(),
        })
}

/// Refuses ([`ResumeError::NotOurs`]) a receipt, chunk list or peer list
/// of the download that is there but is not one: what this version (or an
/// earlier run) wrote there always is (a peer list of another version's
/// format is one). Only the start of a chunk list is
/// read (a whole one is 65 bytes a chunk).
fn refuse_foreign_files(safe: &SafeDir, paths: &DownloadPaths) -> Result<(), ResumeError> {
    let names = &paths.names;
    if let Some(bytes) = safe.read(&names.receipt, 1 << 20)?
        && !serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|value| value["format"] == minimodel_verifier::receipt::RECEIPT_FORMAT)
    {
        return Err(ResumeError::NotOurs {
            path: paths.receipt.clone(),
            what: "receipt",
        });
    }
    const READ: u64 = 65 * 64;
    if let Some(bytes) = safe.read(&names.chunk_list, READ)?
        && !looks_like_chunk_list(&bytes, bytes.len() as u64 == READ)
    {
        return Err(ResumeError::NotOurs {
            path: paths.chunk_list.clone(),
            what: "chunk list",
        });
    }
    // A peer list of ours that this version cannot use (another version's,
    // or one with a bad entry) is replaced at the next checkpoint, as
    // before: only one that is no peer list at all is refused.
    if let Some(bytes) = safe.read(&names.peers, super::MAX_PEERS_FILE_BYTES + 1)?
        && !serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|value| {
            value["format"]
                .as_str()
                .is_some_and(|format| format.starts_with("minimodel-peers"))
        })
    {
        return Err(ResumeError::NotOurs {
            path: paths.peers.clone(),
            what: "peer list",
        });
    }
    // The same for what earlier runs saw of their mirrors.
    if let Some(bytes) = safe.read(&names.mirrors, super::MAX_MIRRORS_FILE_BYTES + 1)?
        && !serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|value| {
            value["format"]
                .as_str()
                .is_some_and(|format| format.starts_with("minimodel-mirrors"))
        })
    {
        return Err(ResumeError::NotOurs {
            path: paths.mirrors.clone(),
            what: "mirror list",
        });
    }
    Ok(())
}

/// Whether `start`, the first bytes of a file (all of it unless `cut`),
/// is a chunk list: lines of 64 lowercase hex digits, each ending in LF;
/// when `cut`, the last line read may be short.
fn looks_like_chunk_list(start: &[u8], cut: bool) -> bool {
    let hex = |line: &[u8]| {
        line.iter()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    };
    let Some(end) = start.iter().rposition(|byte| *byte == b'\n') else {
        return false;
    };
    let (lines, rest) = (&start[..end], &start[end + 1..]);
    lines
        .split(|byte| *byte == b'\n')
        .all(|line| line.len() == 64 && hex(line))
        && (rest.is_empty() || (cut && rest.len() < 64 && hex(rest)))
}

#[cfg(test)]
mod tests {
    use super::looks_like_chunk_list;

    #[test]
    fn a_chunk_list_is_lines_of_64_hex_digits() {
        let line = "0123456789abcdef".repeat(4);
        let two = format!("{line}\n{line}\n");
        assert!(looks_like_chunk_list(two.as_bytes(), false));
        // Cut after a line and a half: the half may be short.
        assert!(looks_like_chunk_list(&two.as_bytes()[..100], true));
        assert!(!looks_like_chunk_list(&two.as_bytes()[..100], false));
        for notes in [
            "".to_owned(),
            "my notes\n".to_owned(),
            "abc\n".to_owned(),
            line.clone(),
            line.to_uppercase() + "\n",
            format!("{line}\r\n"),
            format!("{line}\n\n"),
        ] {
            assert!(!looks_like_chunk_list(notes.as_bytes(), false), "{notes:?}");
        }
    }
}
