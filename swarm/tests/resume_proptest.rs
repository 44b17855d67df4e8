//! Random runs of store / drop / checkpoint / crash: a reopened download
//! always holds exactly the chunks of its last checkpoint and the chunks
//! journaled since (all of whose bytes are good here).

mod resume_common;

use std::collections::BTreeSet;

use minimodel_swarm::resume::ResumeOutcome;
use minimodel_verifier::chunk::ChunkIndex;
use proptest::prelude::*;
use resume_common::{Artifact, open, options, verified_set};

#[derive(Debug, Clone)]
enum Step {
    /// Write and record a chunk.
    Store(u32),
    /// Drop a chunk as if found bad.
    Drop(u32),
    /// Checkpoint.
    Checkpoint,
    /// Kill the process (no checkpoint) and open the directory again.
    Crash,
}

fn step(chunks: u32) -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..chunks).prop_map(Step::Store),
        1 => (0..chunks).prop_map(Step::Drop),
        2 => Just(Step::Checkpoint),
        1 => Just(Step::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_reopened_download_holds_its_last_checkpoint_and_its_journal(
        steps in prop::collection::vec(step(21), 1..24)
    ) {
        let artifact = Artifact::small("m");
        let dir = tempfile::tempdir().unwrap();
        let (mut download, _) = open(dir.path(), &artifact, &options(4));
        let mut live = BTreeSet::new();
        let mut checkpointed = BTreeSet::new();
        // Stored since the last checkpoint: in the journal.
        let mut journaled = BTreeSet::new();
        for step in steps.iter().chain([&Step::Crash]) {
            match *step {
                Step::Store(index) => {
                    artifact.store(&download, index);
                    live.insert(index);
                    journaled.insert(index);
                }
                Step::Drop(index) => {
                    let was = download.drop_chunk(ChunkIndex(index)).unwrap();
                    prop_assert_eq!(was, live.remove(&index));
                }
                Step::Checkpoint => {
                    let report = download.checkpoint().unwrap();
                    checkpointed = live.clone();
                    journaled.clear();
                    prop_assert_eq!(report.chunks as usize, checkpointed.len());
                }
                Step::Crash => {
                    drop(download);
                    let (reopened, report) = open(dir.path(), &artifact, &options(4));
                    let is_resumed = matches!(report.outcome, ResumeOutcome::Resumed { .. });
                    prop_assert!(is_resumed, "{:?}", report.outcome);
                    download = reopened;
                    let expected: BTreeSet<u32> =
                        checkpointed.union(&journaled).copied().collect();
                    let from_journal = expected.difference(&checkpointed).count();
                    prop_assert_eq!(report.chunks_from_journal as usize, from_journal);
                    let found: BTreeSet<u32> = verified_set(&download).into_iter().collect();
                    prop_assert_eq!(&found, &expected);
                    // Opening persisted what the journal brought back.
                    prop_assert_eq!(download.persisted().count_ones() as usize, expected.len());
                    live = expected.clone();
                    checkpointed = expected;
                    journaled.clear();
                }
            }
            prop_assert_eq!(download.chunks_verified() as usize, live.len());
        }
    }
}
