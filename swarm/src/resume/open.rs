//! Opening a download directory: reading what is there and carrying out
//! what `plan.rs` decides it means (`docs/resume.md`, "Opening").

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use minimodel_verifier::check::verify_with_hashes;
use minimodel_verifier::chunk_list::list_text;
use minimodel_verifier::hashing::hash_reader_in;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::{Manifest, Sha256Digest};

use super::dir::SafeDir;
use super::error::{ResumeError, io_error};
use super::files::{DownloadPaths, StateFile, load_receipt, load_state};
use super::journal::MAX_JOURNAL_BYTES;
use super::partial::{PartialDownload, Start};
use super::plan::{self, Found, Next, OpenPlan, OwnFile};
use super::recheck::{RecheckProgress, fresh_seed, hash_chunks};
use super::report::{
    CompleteCheck, CompleteDownload, OpenedDownload, ResumeOptions, ResumeOutcome, ResumeReport,
};
use super::state::{ResumeCounters, StateBinding};
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
    /// way). What each file found means is decided in `plan.rs`; this
    /// reads the files, rehashes what the plan asks and carries out what
    /// it decides.
    pub fn open_with_storage(
        dir: &Path,
        manifest: &Manifest,
        manifest_sha256: Sha256Digest,
        options: &ResumeOptions,
        progress: &(dyn Fn(RecheckProgress) + Sync),
        wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
    ) -> Result<OpenedDownload, ResumeError> {
        let started = Instant::now();
        let binding = StateBinding::of_download(manifest, options.listed.as_ref())?;
        let geometry = binding.geometry()?;
        let paths = DownloadPaths::new(dir, &manifest.model_id);
        // Nothing can be refused in a directory that does not exist yet.
        let safe = SafeDir::open(dir, !dir.exists())?;
        let names = paths.names.clone();

        // Read and refuse, writing nothing; then take the download's lock
        // (the first write) and read again under it, so that what another
        // process changed in between (a checkpoint, a delivery) is seen.
        let mut held: Option<File> = None;
        let (found, lock) = loop {
            if safe.exists(&names.artifact) {
                let done = complete(paths.clone(), &safe, &binding)?;
                if !plan::final_needs_recheck(done.check, options) {
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
                    (manifest, &binding),
                    manifest_sha256,
                    progress,
                    started,
                );
            }
            let found = look(&safe, &paths, &binding)?;
            match held {
                Some(lock) => break (found, lock),
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
        let part_len = found.part_len;
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

        let mut next = OpenPlan::start(found, &binding, options, fresh_seed())?;
        let decision = loop {
            next = match next {
                Next::Hash(request) => {
                    let hashes =
                        hash_chunks(storage.as_ref(), &geometry, request.chunks(), progress)
                            .map_err(io_error("rehash the chunks of", &paths.part))?;
                    request.hashed(&hashes)
                }
                Next::ReadJournals(request) => {
                    let mut journals = Vec::new();
                    for name in [&names.journal_prev, &names.journal] {
                        journals.extend(safe.read(name, MAX_JOURNAL_BYTES)?);
                    }
                    request.read(&journals)
                }
                Next::Done(decision) => break *decision,
            }
        };
        let download = PartialDownload::start(Start {
            paths,
            dir: safe,
            binding,
            manifest_sha256,
            storage,
            knowledge: decision.knowledge,
            counters: decision.counters,
            persisted: decision.persisted,
            current_is_good: decision.current_is_good,
            lock,
            discardable: true,
        })?;
        if decision.checkpoint_now {
            download.checkpoint()?;
        }
        download.begin_journal()?;
        let report = ResumeReport {
            chunks_verified: download.chunks_verified(),
            chunk_count: geometry.chunk_count(),
            outcome: decision.outcome,
            chunks_from_journal: decision.chunks_from_journal,
            bytes_rechecked: decision.bytes_rechecked,
            current_problem: decision.current_problem,
            previous_problem: decision.previous_problem,
            manifest_changed: decision
                .state_manifest
                .is_some_and(|state| state != manifest_sha256),
            elapsed: started.elapsed(),
        };
        Ok(OpenedDownload::Partial(download, report))
    }
}

/// Reads what the plan starts from, refusing (writing nothing) a state of
/// another artifact or format, and any file of the download that is not a
/// regular file of ours or not what the download writes under its name.
fn look(
    safe: &SafeDir,
    paths: &DownloadPaths,
    binding: &StateBinding,
) -> Result<Found, ResumeError> {
    let names = &paths.names;
    let current = plan::check_state(load_state(safe, &names.state)?, &paths.state, binding)?;
    let previous = if plan::needs_previous(&current) {
        plan::check_state(load_state(safe, &names.previous)?, &paths.previous, binding)?
    } else {
        StateFile::Missing
    };
    let part_len = safe.inspect(&names.part)?.map(|facts| facts.len);
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
    for (own, name, path) in [
        (OwnFile::Receipt, &names.receipt, &paths.receipt),
        (OwnFile::ChunkList, &names.chunk_list, &paths.chunk_list),
        (OwnFile::Peers, &names.peers, &paths.peers),
        (OwnFile::Mirrors, &names.mirrors, &paths.mirrors),
    ] {
        if let Some(start) = safe.read(name, own.read_limit())?
            && !own.is_ours(&start)
        {
            return Err(ResumeError::NotOurs {
                path: path.clone(),
                what: own.what(),
            });
        }
    }
    Ok(Found {
        current,
        previous,
        part_len,
    })
}

/// The final file is there: complete if its receipt is for this artifact
/// and the file has the artifact's length ([`plan::judge_final`]). State
/// files of this very artifact left over from a crash at the end of a
/// delivery are removed, and its journals.
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
    let receipt = load_receipt(dir, &names.receipt);
    let (receipt, check) = plan::judge_final(&paths, &facts, receipt, binding)?;
    let mut removed = false;
    for name in [&names.state, &names.previous] {
        if plan::is_leftover_state(&load_state(dir, name)?, binding) {
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
    let verified_at = receipt.last_verified().to_owned();
    Ok(CompleteDownload {
        paths,
        receipt,
        verified_at,
        check,
    })
}

/// The final file is to be checked again (`--recheck`, or it changed since
/// its receipt): one pass over its bytes as they are on disk, every check of
/// a local `verify`. A good file gets its recheck time in its receipt (and
/// a chunk list if it had none); a damaged one becomes a partial download
/// again whose good chunks are kept ([`plan::repair`]), so that only the
/// bad ones are fetched.
fn recheck_complete(
    done: CompleteDownload,
    dir: SafeDir,
    lock: File,
    (manifest, binding): (&Manifest, &StateBinding),
    manifest_sha256: Sha256Digest,
    progress: &(dyn Fn(RecheckProgress) + Sync),
    started: Instant,
) -> Result<OpenedDownload, ResumeError> {
    let paths = done.paths.clone();
    let names = paths.names.clone();
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
    let hashes =
        hash_reader_in(&file, &geometry, &report).map_err(io_error("read", &paths.artifact))?;
    let chunk_hashes = hashes.chunk_hashes.clone();
    match verify_with_hashes(manifest, &paths.artifact, hashes) {
        Ok(artifact) => {
            let now = now_rfc3339();
            let stamp = dir.inspect(&names.artifact)?.map(|facts| facts.stamp);
            let receipt = plan::refreshed_receipt(done.receipt, now.clone(), stamp);
            let mut text = serde_json::to_vec_pretty(&receipt).unwrap_or_default();
            text.push(b'\n');
            dir.write_atomically(&names.receipt, &text)?;
            if dir.inspect(&names.chunk_list)?.is_none() {
                let list = list_text(artifact.tree().chunk_hashes(), artifact.geometry());
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
            let list = dir.read(&names.chunk_list, plan::chunk_list_limit(count))?;
            let repair = plan::repair(&chunk_hashes, list.as_deref(), binding);
            let storage: Arc<dyn Storage> = Arc::new(
                FileStorage::sized(
                    dir.open_read_write(&names.artifact)?,
                    binding.artifact_bytes,
                )
                .map_err(io_error("open", &paths.artifact))?,
            );
            let good = count - repair.bad;
            let download = PartialDownload::start(Start {
                paths: paths.clone(),
                dir,
                binding: binding.clone(),
                manifest_sha256,
                storage,
                knowledge: repair.knowledge,
                counters: ResumeCounters {
                    runs: 1,
                    chunks_dropped: u64::from(repair.bad),
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
                    dropped: repair.bad,
                    chunk_list: repair.chunk_list,
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

/// Takes the download's lock ([`DownloadPaths::lock`]), or refuses: another
/// process has it open.
fn lock(safe: &SafeDir, paths: &DownloadPaths, manifest: &Manifest) -> Result<File, ResumeError> {
    safe.lock(&paths.names.lock)?
        .ok_or_else(|| ResumeError::InUse {
            path: paths.lock.clone(),
            model_id: manifest.model_id.to_string(),
        })
}
