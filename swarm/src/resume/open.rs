//! Opening a download directory: what is there, what can be trusted, and
//! what it costs to find out (`docs/resume.md`, "Opening").

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use minimodel_verifier::chunk::{ChunkGeometry, ChunkIndex};
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::{Manifest, Sha256Digest};

use super::error::{ResumeError, StateError, io_error};
use super::files::{self, DownloadPaths, StateFile};
use super::knowledge::ChunkKnowledge;
use super::partial::{PartialDownload, Persisted, Start, receipt_binding};
use super::recheck::{RecheckProgress, fresh_seed, hash_chunks, sample_chunks};
use super::report::{
    CompleteDownload, OpenedDownload, RecheckReason, RestartReason, ResumeOptions, ResumeOutcome,
    ResumeReport,
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
        progress: &dyn Fn(RecheckProgress),
    ) -> Result<OpenedDownload, ResumeError> {
        Self::open_with_storage(dir, manifest, manifest_sha256, options, progress, |file| {
            Arc::new(file)
        })
    }

    /// [`Self::open`], with the `.part` wrapped by `wrap` (a test puts a
    /// [`crate::store::FaultyStorage`] under the download this way).
    pub fn open_with_storage(
        dir: &Path,
        manifest: &Manifest,
        manifest_sha256: Sha256Digest,
        options: &ResumeOptions,
        progress: &dyn Fn(RecheckProgress),
        wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
    ) -> Result<OpenedDownload, ResumeError> {
        let started = Instant::now();
        let binding = StateBinding::of_manifest(manifest)?;
        let geometry = binding.geometry()?;
        let paths = DownloadPaths::new(dir, &manifest.model_id);

        if files::exists(&paths.artifact) {
            return complete(paths, &binding).map(OpenedDownload::Complete);
        }
        let current = checked(files::load_state(&paths.state)?, &paths.state, &binding)?;
        let previous = match current {
            StateFile::Usable(_) => StateFile::Missing,
            _ => checked(
                files::load_state(&paths.previous)?,
                &paths.previous,
                &binding,
            )?,
        };
        let part_len = fs::metadata(&paths.part).ok().map(|meta| meta.len());

        // Every refusal is behind us: from here on, files change.
        fs::create_dir_all(dir).map_err(io_error("create the directory", dir))?;
        files::remove_if_present(&paths.temp)?;
        let file = match FileStorage::open_sized(&paths.part, binding.artifact_bytes) {
            Ok(file) => file,
            Err(error) => {
                if part_len.is_none() {
                    // Not ours to keep: a file this run created and could
                    // not size (a full disk) would only cost a recheck later.
                    let _ = fs::remove_file(&paths.part);
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
            knowledge,
            mut counters,
            manifest_sha256: state_manifest,
        } = decision;
        counters.runs += 1;
        let bytes_rechecked = opening.bytes_rechecked;
        let download = PartialDownload::start(Start {
            paths,
            binding,
            manifest_sha256,
            storage,
            knowledge,
            counters,
            persisted,
            current_is_good,
        })?;
        if !matches!(outcome, ResumeOutcome::Resumed { .. }) {
            // Write down what opening decided, so a crash now does not
            // bring back dropped chunks.
            download.checkpoint()?;
        }
        let report = ResumeReport {
            chunks_verified: download.chunks_verified(),
            chunk_count: geometry.chunk_count(),
            outcome,
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

/// The final file is there: complete if its receipt is for this artifact.
fn complete(paths: DownloadPaths, binding: &StateBinding) -> Result<CompleteDownload, ResumeError> {
    let receipt =
        files::load_receipt(&paths.receipt).map_err(|problem| ResumeError::UnverifiedFinal {
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
    let len = fs::metadata(&paths.artifact)
        .map_err(io_error("read the size of", &paths.artifact))?
        .len();
    if len != binding.artifact_bytes {
        return Err(ResumeError::UnverifiedFinal {
            path: paths.artifact.clone(),
            receipt: paths.receipt.clone(),
            problem: format!(
                "is for {} bytes, but the file has {len}",
                binding.artifact_bytes
            ),
        });
    }
    remove_leftover_states(&paths, binding)?;
    Ok(CompleteDownload { paths, receipt })
}

/// State files of this very artifact next to its final file are left over
/// from a crash at the end of `finish`: they are removed. Anything else is
/// left alone.
fn remove_leftover_states(
    paths: &DownloadPaths,
    binding: &StateBinding,
) -> Result<(), ResumeError> {
    let mut removed = false;
    for path in [&paths.state, &paths.previous] {
        if let StateFile::Usable(state) = files::load_state(path)? {
            if state.binding.first_difference(binding).is_none() {
                files::remove_if_present(path)?;
                removed = true;
            }
        }
    }
    if removed {
        files::sync_dir(&paths.dir)?;
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
    progress: &'a dyn Fn(RecheckProgress),
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
        if let Ok(tree) = MerkleTree::from_chunk_hashes(hashes) {
            if tree.root() == binding.merkle_root {
                decision.knowledge = ChunkKnowledge::complete(&tree);
                decision.outcome = ResumeOutcome::RecoveredWhole {
                    chunks: tree.chunk_count(),
                };
            }
        }
        Ok(decision)
    }
}
