//! The opening plan, case by case, with no file system: states, `.part`
//! lengths, journals and hashes are handed in as the adapter would.

use std::path::Path;

use minimodel_verifier::ModelId;
use minimodel_verifier::merkle::chunk_list_text;
use minimodel_verifier::receipt::{
    CheckName, ImportReceipt, NsTime, ReceiptSource, SignatureRecord,
};
use minimodel_verifier::route::Route;

use super::*;
use crate::resume::journal::{encode_header, encode_record};

const CHUNK: u32 = 16384;
const COUNT: u32 = 13;

/// What chunk `index`'s bytes hash to in these tests.
fn hash(index: u32) -> Sha256Digest {
    Sha256Digest::of(&index.to_be_bytes())
}

fn tree() -> MerkleTree {
    MerkleTree::from_chunk_hashes((0..COUNT).map(hash).collect()).unwrap()
}

/// 13 chunks, the last one 100 bytes.
fn binding() -> StateBinding {
    StateBinding {
        model_id: ModelId::new("plan-test").unwrap(),
        artifact_bytes: u64::from(COUNT - 1) * u64::from(CHUNK) + 100,
        artifact_sha256: Sha256Digest::of(b"artifact"),
        chunk_size: CHUNK,
        chunk_count: COUNT,
        merkle_root: tree().root(),
        listed: None,
    }
}

fn knowing(chunks: &[u32]) -> ChunkKnowledge {
    let tree = tree();
    let mut knowledge = ChunkKnowledge::new(tree.root(), COUNT);
    for &index in chunks {
        knowledge
            .insert(ChunkIndex(index), hash(index), &tree.proof(index).unwrap())
            .unwrap();
    }
    knowledge
}

/// A usable state of generation `generation` listing `chunks`.
fn state(generation: u64, chunks: &[u32]) -> StateFile {
    StateFile::Usable(Box::new(PartialState {
        binding: binding(),
        manifest_sha256: Sha256Digest::of(b"manifest"),
        generation,
        checkpoint_at: "2026-11-27T12:00:00Z".to_owned(),
        counters: ResumeCounters {
            runs: 3,
            chunks_fetched: 9,
            bytes_fetched: 9 * u64::from(CHUNK),
            chunks_dropped: 1,
        },
        knowledge: knowing(chunks),
    }))
}

fn damaged() -> StateFile {
    StateFile::Unusable(StateError::Syntax("cut short".to_owned()))
}

fn whole() -> Option<u64> {
    Some(binding().artifact_bytes)
}

fn options(sample: usize) -> ResumeOptions {
    ResumeOptions {
        recheck: false,
        sample,
        sample_seed: Some(7),
        listed: None,
    }
}

fn start(current: StateFile, previous: StateFile, part_len: Option<u64>, sample: usize) -> Next {
    let found = Found {
        current,
        previous,
        part_len,
    };
    OpenPlan::start(found, &binding(), &options(sample), 1).unwrap()
}

/// The chunks asked for, answered with the right hashes except for `bad`.
fn answer(next: Next, bad: &[u32]) -> (Vec<u32>, Next) {
    let Next::Hash(request) = next else {
        panic!("expected a request for hashes, got {next:?}");
    };
    let chunks = request.chunks().to_vec();
    let hashes: Vec<Sha256Digest> = chunks
        .iter()
        .map(|&index| {
            if bad.contains(&index) {
                Sha256Digest::of(b"changed on disk")
            } else {
                hash(index)
            }
        })
        .collect();
    (chunks, request.hashed(&hashes))
}

/// The journals asked for, answered with `journals`.
fn journals(next: Next, journals: &[Vec<u8>]) -> Next {
    let Next::ReadJournals(request) = next else {
        panic!("expected a request for the journals, got {next:?}");
    };
    request.read(journals)
}

fn done(next: Next) -> Decision {
    match next {
        Next::Done(decision) => *decision,
        other => panic!("expected a decision, got {other:?}"),
    }
}

fn verified(decision: &Decision) -> Vec<u32> {
    decision
        .knowledge
        .verified()
        .iter_ones()
        .map(|index| index.0)
        .collect()
}

fn chunk_bytes(chunks: &[u32]) -> u64 {
    let geometry = binding().geometry().unwrap();
    chunks
        .iter()
        .map(|&index| u64::from(geometry.chunk_len(ChunkIndex(index)).unwrap()))
        .sum()
}

#[test]
fn an_empty_directory_is_a_fresh_download_read_from_nowhere() {
    let decision = done(start(StateFile::Missing, StateFile::Missing, None, 4));
    assert_eq!(decision.outcome, ResumeOutcome::Fresh);
    assert!(verified(&decision).is_empty());
    assert_eq!(decision.counters.runs, 1);
    assert!(decision.checkpoint_now && !decision.current_is_good);
    assert!(decision.persisted.is_none() && decision.state_manifest.is_none());
    assert_eq!(decision.bytes_rechecked, 0);
}

#[test]
fn a_trusted_state_is_sampled_and_resumed_without_a_checkpoint() {
    let listed = [0, 1, 5, 8, 12];
    let next = start(state(4, &listed), StateFile::Missing, whole(), 3);
    let (sample, next) = answer(next, &[]);
    assert_eq!(sample.len(), 3);
    assert!(sample.iter().all(|index| listed.contains(index)));
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Resumed {
            chunks: 5,
            sampled: 3
        }
    );
    assert_eq!(verified(&decision), listed);
    assert_eq!(decision.counters.runs, 4);
    assert!(!decision.checkpoint_now && decision.current_is_good);
    assert_eq!(decision.persisted.as_ref().unwrap().generation, 4);
    assert_eq!(decision.bytes_rechecked, chunk_bytes(&sample));
    assert_eq!(decision.state_manifest, Some(Sha256Digest::of(b"manifest")));
}

#[test]
fn no_sample_resumes_without_reading() {
    let next = start(state(1, &[2, 3]), StateFile::Missing, whole(), 0);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Resumed {
            chunks: 2,
            sampled: 0
        }
    );
    assert_eq!(decision.bytes_rechecked, 0);
}

#[test]
fn a_sample_that_changed_rechecks_every_chunk_and_drops_the_bad() {
    let listed = [0, 1, 5, 8, 12];
    let next = start(state(4, &listed), StateFile::Missing, whole(), 5);
    // Every listed chunk is sampled; 5 and 8 changed.
    let (sample, next) = answer(next, &[5, 8]);
    assert_eq!(sample, listed);
    let (all, next) = answer(next, &[5, 8]);
    assert_eq!(all, listed);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Rechecked {
            reason: RecheckReason::SampleMismatch { chunk: 5 },
            good: 3,
            dropped: 2
        }
    );
    assert_eq!(verified(&decision), [0, 1, 12]);
    assert_eq!(decision.counters.chunks_dropped, 1 + 2);
    assert!(decision.checkpoint_now);
    assert_eq!(decision.bytes_rechecked, 2 * chunk_bytes(&listed));
}

#[test]
fn a_resized_part_or_a_requested_recheck_rechecks_everything_at_once() {
    let listed = [3, 4];
    let next = start(state(2, &listed), StateFile::Missing, Some(5), 4);
    let (all, next) = answer(next, &[]);
    assert_eq!(all, listed);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Rechecked {
            reason: RecheckReason::PartResized { found: 5 },
            good: 2,
            dropped: 0
        }
    );

    let found = Found {
        current: state(2, &listed),
        previous: StateFile::Missing,
        part_len: whole(),
    };
    let recheck = ResumeOptions {
        recheck: true,
        ..options(4)
    };
    let next = OpenPlan::start(found, &binding(), &recheck, 1).unwrap();
    let (all, next) = answer(next, &[4]);
    assert_eq!(all, listed);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Rechecked {
            reason: RecheckReason::Requested,
            good: 1,
            dropped: 1
        }
    );
    assert_eq!(verified(&decision), [3]);
}

#[test]
fn a_state_without_its_part_starts_over_and_keeps_its_counters() {
    for (current, previous) in [
        (state(6, &[1, 2]), StateFile::Missing),
        (damaged(), state(5, &[1, 2])),
    ] {
        let decision = done(start(current, previous, None, 4));
        assert_eq!(
            decision.outcome,
            ResumeOutcome::Restarted {
                reason: RestartReason::PartMissing
            }
        );
        assert!(verified(&decision).is_empty());
        assert_eq!(decision.counters.runs, 4);
        assert_eq!(decision.counters.chunks_fetched, 9);
        assert!(decision.persisted.is_some() && !decision.current_is_good);
        assert!(decision.checkpoint_now);
    }
}

#[test]
fn an_unusable_state_falls_back_to_the_previous_generation_rechecked() {
    let next = start(damaged(), state(5, &[0, 7, 9]), whole(), 4);
    let (all, next) = answer(next, &[9]);
    assert_eq!(all, [0, 7, 9]);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::FellBack {
            generation: 5,
            good: 2,
            dropped: 1
        }
    );
    assert_eq!(verified(&decision), [0, 7]);
    assert!(matches!(
        decision.current_problem,
        Some(StateError::Syntax(_))
    ));
    assert_eq!(decision.previous_problem, None);
    assert!(!decision.current_is_good && decision.checkpoint_now);
    // The previous state is only read when the current one is not usable.
    assert!(!needs_previous(&state(1, &[])));
    assert!(needs_previous(&damaged()) && needs_previous(&StateFile::Missing));
}

#[test]
fn a_bare_part_counts_only_when_it_hashes_to_the_root() {
    let all: Vec<u32> = (0..COUNT).collect();
    let next = start(StateFile::Missing, StateFile::Missing, whole(), 4);
    let (asked, next) = answer(next, &[]);
    assert_eq!(asked, all);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::RecoveredWhole { chunks: COUNT }
    );
    assert_eq!(verified(&decision), all);
    assert_eq!(decision.bytes_rechecked, binding().artifact_bytes);

    let next = start(damaged(), damaged(), whole(), 4);
    let (_, next) = answer(next, &[3]);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Restarted {
            reason: RestartReason::PartUnverified
        }
    );
    assert!(verified(&decision).is_empty());
    assert!(decision.current_problem.is_some() && decision.previous_problem.is_some());

    // The wrong length: not even read.
    let next = start(StateFile::Missing, StateFile::Missing, Some(7), 4);
    let decision = done(journals(next, &[]));
    assert_eq!(
        decision.outcome,
        ResumeOutcome::Restarted {
            reason: RestartReason::PartUnverified
        }
    );
    assert_eq!(decision.bytes_rechecked, 0);
}

#[test]
fn journaled_chunks_come_back_when_their_proof_and_bytes_agree() {
    let tree = tree();
    let root = tree.root();
    let mut journal = encode_header(&root);
    // Chunk 2: a good record. Chunk 3: its bytes changed on disk. Chunk 4:
    // a proof that does not lead to the root. Chunk 0: already known.
    for index in [2, 3, 0] {
        journal.extend(encode_record(
            index,
            &hash(index),
            &tree.proof(index).unwrap(),
        ));
    }
    journal.extend(encode_record(4, &hash(4), &tree.proof(5).unwrap()));
    let mut previous = encode_header(&root);
    previous.extend(encode_record(6, &hash(6), &tree.proof(6).unwrap()));
    let other_root = encode_header(&Sha256Digest::of(b"another artifact"));
    let next = start(state(2, &[0, 1]), StateFile::Missing, whole(), 0);
    let next = journals(next, &[previous, journal, other_root, b"junk".to_vec()]);
    let (asked, next) = answer(next, &[3]);
    assert_eq!(asked, [2, 3, 6]);
    let decision = done(next);
    assert_eq!(decision.chunks_from_journal, 2);
    assert_eq!(verified(&decision), [0, 1, 2, 6]);
    // Resumed, but what the journals brought back is written down now.
    assert!(matches!(
        decision.outcome,
        ResumeOutcome::Resumed { chunks: 2, .. }
    ));
    assert!(decision.checkpoint_now);
}

#[test]
fn states_of_another_artifact_or_format_are_refused_with_their_path() {
    let path = Path::new("/d/plan-test.slm.state");
    let StateFile::Usable(mut other) = state(1, &[]) else {
        unreachable!()
    };
    other.binding.artifact_bytes += 1;
    let refused = check_state(StateFile::Usable(other), path, &binding()).unwrap_err();
    assert!(
        matches!(&refused, ResumeError::ForeignState { path: found, .. } if found == path),
        "{refused}"
    );
    let unsupported = StateFile::Unusable(StateError::UnsupportedFormat {
        found: "minimodel-partial-v9".to_owned(),
    });
    let refused = check_state(unsupported, path, &binding()).unwrap_err();
    assert!(
        matches!(&refused, ResumeError::UnsupportedState { found, .. } if found == "minimodel-partial-v9"),
        "{refused}"
    );
    // A damaged state is not refused: it is a problem the plan reports.
    assert!(matches!(
        check_state(damaged(), path, &binding()),
        Ok(StateFile::Unusable(_))
    ));
    assert!(matches!(
        check_state(state(1, &[]), path, &binding()),
        Ok(StateFile::Usable(_))
    ));
}

#[test]
fn only_states_of_this_artifact_are_leftovers_of_a_delivery() {
    assert!(is_leftover_state(&state(3, &[1]), &binding()));
    let mut other = binding();
    other.merkle_root = Sha256Digest::of(b"other");
    assert!(!is_leftover_state(&state(3, &[1]), &other));
    assert!(!is_leftover_state(&damaged(), &binding()));
    assert!(!is_leftover_state(&StateFile::Missing, &binding()));
}

fn receipt(file: Option<FileStamp>) -> ImportReceipt {
    let binding = binding();
    ImportReceipt {
        format: RECEIPT_FORMAT.to_owned(),
        model_id: binding.model_id.clone(),
        artifact_bytes: binding.artifact_bytes,
        artifact_sha256: binding.artifact_sha256,
        manifest_sha256: Sha256Digest::of(b"manifest"),
        merkle_root: binding.merkle_root,
        chunk_size: binding.chunk_size,
        chunk_count: binding.chunk_count,
        license_route: Route::parse("https://example.org/license").unwrap(),
        evidence_route: Route::parse("https://example.org/evidence").unwrap(),
        checks: vec![CheckName::MerkleRoot],
        signature: Some(SignatureRecord::Unsigned),
        source: ReceiptSource::LocalFile,
        verified_at: "2026-11-27T12:00:00Z".to_owned(),
        tool: "minimodel-test".to_owned(),
        last_verified_at: None,
        file,
    }
}

fn stamp(bytes: u64, modified: i64) -> FileStamp {
    FileStamp {
        bytes,
        device: 1,
        inode: 2,
        modified: NsTime {
            secs: modified,
            nanos: 0,
        },
        changed: NsTime {
            secs: modified,
            nanos: 0,
        },
        stamped: NsTime {
            secs: modified + 60,
            nanos: 0,
        },
    }
}

fn facts(stamp: FileStamp) -> FileFacts {
    FileFacts {
        len: stamp.bytes,
        stamp,
    }
}

#[test]
fn a_final_file_is_complete_only_with_its_own_receipt_and_length() {
    let paths = DownloadPaths::new(Path::new("/d"), &binding().model_id);
    let bytes = binding().artifact_bytes;
    let then = stamp(bytes, 1_000);
    let (_, check) =
        judge_final(&paths, &facts(then), Ok(receipt(Some(then))), &binding()).unwrap();
    assert_eq!(check, CompleteCheck::Unchanged);
    assert!(!final_needs_recheck(check, &options(4)));
    assert!(final_needs_recheck(
        check,
        &ResumeOptions {
            recheck: true,
            ..options(4)
        }
    ));
    // Written to since, or a receipt from before stamps: read again.
    for (now, kept) in [(stamp(bytes, 2_000), Some(then)), (then, None)] {
        let (_, check) = judge_final(&paths, &facts(now), Ok(receipt(kept)), &binding()).unwrap();
        assert_eq!(check, CompleteCheck::ChangedSinceVerified);
        assert!(final_needs_recheck(check, &options(4)));
    }
    let refused = judge_final(&paths, &facts(then), Err("is missing".into()), &binding());
    assert!(
        matches!(&refused, Err(ResumeError::UnverifiedFinal { problem, .. }) if problem == "is missing"),
        "{refused:?}"
    );
    let short = stamp(bytes - 1, 1_000);
    let refused = judge_final(&paths, &facts(short), Ok(receipt(None)), &binding());
    assert!(
        matches!(&refused, Err(ResumeError::UnverifiedFinal { problem, .. }) if problem.contains("but the file has")),
        "{refused:?}"
    );
    let mut other = receipt(None);
    other.chunk_size *= 2;
    let refused = judge_final(&paths, &facts(then), Ok(other), &binding());
    assert!(
        matches!(refused, Err(ResumeError::ForeignComplete { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_refreshed_receipt_records_the_check_and_the_file_it_left() {
    let now = stamp(binding().artifact_bytes, 5_000);
    let refreshed = refreshed_receipt(receipt(None), "2026-11-28T00:00:00Z".into(), Some(now));
    assert_eq!(
        refreshed.last_verified_at.as_deref(),
        Some("2026-11-28T00:00:00Z")
    );
    assert_eq!(refreshed.file, Some(now));
    assert_eq!(refreshed.verified_at, "2026-11-27T12:00:00Z");
}

#[test]
fn a_damaged_final_file_keeps_what_its_chunk_list_vouches_for() {
    let tree = tree();
    let list = chunk_list_text(tree.chunk_hashes());
    let mut found: Vec<Sha256Digest> = (0..COUNT).map(hash).collect();
    found[4] = Sha256Digest::of(b"flipped");
    found[11] = Sha256Digest::of(b"flipped too");
    let repair = super::repair(&found, Some(list.as_bytes()), &binding());
    assert!(repair.chunk_list);
    assert_eq!(repair.bad, 2);
    let kept: Vec<u32> = repair
        .knowledge
        .verified()
        .iter_ones()
        .map(|i| i.0)
        .collect();
    assert_eq!(kept, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 12]);
    // A list that is not for this root, or no list: nothing is trusted.
    let mut wrong: Vec<Sha256Digest> = (0..COUNT).map(hash).collect();
    wrong[0] = Sha256Digest::of(b"x");
    let wrong = chunk_list_text(&wrong);
    for list in [Some(wrong.as_bytes()), Some(&b"notes\n"[..]), None] {
        let repair = super::repair(&found, list, &binding());
        assert!(!repair.chunk_list);
        assert_eq!(repair.bad, COUNT);
        assert_eq!(repair.knowledge.verified().count_ones(), 0);
    }
}

#[test]
fn a_chunk_list_is_count_lines_of_64_lowercase_hex_digits() {
    let list = chunk_list_text(tree().chunk_hashes());
    assert_eq!(
        parse_chunk_list(list.as_bytes(), COUNT).unwrap(),
        tree().chunk_hashes()
    );
    assert!(parse_chunk_list(list.as_bytes(), COUNT - 1).is_none());
    assert!(parse_chunk_list(list.trim_end().as_bytes(), COUNT).is_none());
    assert!(parse_chunk_list(list.to_uppercase().as_bytes(), COUNT).is_none());
    // One more than two lines of either form: with lengths, at most 74.
    assert_eq!(chunk_list_limit(2), 149);
}

#[test]
fn a_chunk_list_is_lines_of_64_hex_digits() {
    let line = "0123456789abcdef".repeat(4);
    let two = format!("{line}\n{line}\n");
    assert!(looks_like_chunk_list(two.as_bytes(), false));
    // Cut after a line and a half: the half may be short.
    assert!(looks_like_chunk_list(&two.as_bytes()[..100], true));
    assert!(!looks_like_chunk_list(&two.as_bytes()[..100], false));
    // With lengths (`slm-parts-merkle-v0`), cut inside a length too.
    let listed = format!("{line} 256\n{line} 16384\n");
    assert!(looks_like_chunk_list(listed.as_bytes(), false));
    assert!(looks_like_chunk_list(&listed.as_bytes()[..70], true));
    assert!(looks_like_chunk_list(&listed.as_bytes()[..135], true));
    assert!(!looks_like_chunk_list(
        format!("{line} 0256\n").as_bytes(),
        false
    ));
    assert!(!looks_like_chunk_list(
        format!("{line}  256\n").as_bytes(),
        false
    ));
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

#[test]
fn files_under_a_downloads_names_are_ours_only_when_they_say_so() {
    let receipt = serde_json::to_vec(&receipt(None)).unwrap();
    assert!(OwnFile::Receipt.is_ours(&receipt));
    assert!(!OwnFile::Receipt.is_ours(b"{\"format\": \"notes\"}"));
    assert!(!OwnFile::Receipt.is_ours(b"my notes"));
    let list = chunk_list_text(tree().chunk_hashes());
    assert!(OwnFile::ChunkList.is_ours(list.as_bytes()));
    assert!(!OwnFile::ChunkList.is_ours(b"my notes\n"));
    // A long list is read only in part: a cut line is still a list.
    let long = "ab".repeat(32) + "\n";
    let long = long.repeat(100);
    let limit = OwnFile::ChunkList.read_limit() as usize;
    assert!(OwnFile::ChunkList.is_ours(&long.as_bytes()[..limit]));
    assert!(OwnFile::Peers.is_ours(b"{\"format\": \"minimodel-peers-v9\", \"peers\": 1}"));
    assert!(!OwnFile::Peers.is_ours(b"{\"format\": \"minimodel-receipt-v0\"}"));
    assert!(!OwnFile::Peers.is_ours(b"[]"));
    assert_eq!(OwnFile::Peers.what(), "peer list");
}
