//! The new artifact's chunk list given to `fetch --chunk-list`
//! (`minimodel_swarm::resume::reuse::NewChunkList::check_against`) on
//! arbitrary bytes: it must return, never panic; a list it accepts has
//! the count asked for and hashes to the root asked for. The same bytes
//! go to the file form's reader of both chunk schemes
//! (`minimodel_verifier::chunk_list::ChunkList::parse`): a list it accepts
//! has one hash per chunk, lengths that make the artifact, and writes back
//! as the very bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::resume::reuse::NewChunkList;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk_list::{ChunkList, ListShape};
use minimodel_verifier::manifest::ChunkScheme;
use minimodel_verifier::merkle::MerkleTree;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the count; the root is the one of the
    // list as parsed when it parses, so that accepted lists are reached.
    let (count, text) = match data {
        [a, b, rest @ ..] => (u32::from(u16::from_le_bytes([*a, *b])) % 64 + 1, rest),
        _ => return,
    };
    let parsed = std::str::from_utf8(text).ok().and_then(|text| {
        text.lines()
            .map(|line| line.parse::<Sha256Digest>().ok())
            .collect::<Option<Vec<_>>>()
    });
    let root = parsed
        .filter(|hashes| !hashes.is_empty())
        .and_then(|hashes| MerkleTree::from_chunk_hashes(hashes).ok())
        .map_or(Sha256Digest::of(b"no list"), |tree| tree.root());
    if let Ok(list) = NewChunkList::check_against(text, count, root, None) {
        assert_eq!(list.chunk_hashes().len(), count as usize);
        let tree = MerkleTree::from_chunk_hashes(list.chunk_hashes().to_vec()).unwrap();
        assert_eq!(tree.root(), root);
    }
    let _ = NewChunkList::check_against(text, count, root, Some(Sha256Digest::of(text)));

    // The file form of either scheme. The artifact's size is the sum of
    // the lengths as written when they parse as numbers, so that accepted
    // listed lists are reached.
    let listed_bytes: u64 = std::str::from_utf8(text).map_or(0, |text| {
        text.lines()
            .filter_map(|line| line.split(' ').nth(1)?.parse::<u64>().ok())
            .fold(0u64, u64::saturating_add)
    });
    for (scheme, artifact_bytes) in [
        (ChunkScheme::SlmParts, listed_bytes.max(1)),
        (ChunkScheme::FixedSize, u64::from(count) * 16384),
    ] {
        let shape = ListShape {
            scheme,
            artifact_bytes,
            chunk_size: 16384,
            chunk_count: count,
        };
        if let Ok(list) = ChunkList::parse(text, shape) {
            assert_eq!(list.hashes().len(), count as usize);
            assert_eq!(list.geometry().chunk_count(), count);
            assert_eq!(list.geometry().artifact_bytes(), artifact_bytes);
            assert_eq!(list.text().as_bytes(), text);
        }
    }
});
