//! The new artifact's chunk list given to `fetch --chunk-list`
//! (`minimodel_swarm::resume::reuse::NewChunkList::check_against`) on
//! arbitrary bytes: it must return, never panic; a list it accepts has
//! the count asked for and hashes to the root asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimodel_swarm::resume::reuse::NewChunkList;
use minimodel_verifier::Sha256Digest;
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
});
