use proptest::prelude::*;
use sha2::Digest;

use super::*;

fn reference(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

fn hex(digest: [u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cuts `data` at `cuts` (positions taken modulo its length, sorted).
fn parts<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in at {
        out.push(&data[start..cut]);
        start = cut;
    }
    out.push(&data[start..]);
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

#[test]
fn the_fips_180_examples() {
    let one = |data: &[u8]| {
        let mut state = Sha256::new();
        state.update(data);
        hex(state.finalize())
    };
    assert_eq!(
        one(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        one(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        one(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

#[test]
fn a_pair_gives_each_message_its_own_digest() {
    let (a_data, b_data) = (b"abc".repeat(1000), pattern(1 << 20, 5));
    let (mut a, mut b) = (Sha256::new(), Sha256::new());
    update_pair(&mut a, [&a_data[..]], &mut b, [&b_data[..]]);
    assert_eq!(a.len(), a_data.len() as u64);
    assert_eq!(b.len(), b_data.len() as u64);
    assert_eq!(a.finalize(), reference(&a_data));
    assert_eq!(b.finalize(), reference(&b_data));
}

#[test]
fn a_pair_carries_on_where_each_state_stood() {
    // One byte ahead on one side, as a leaf hash after its prefix byte.
    let data = pattern(300_000, 9);
    let (mut a, mut b) = (Sha256::new(), Sha256::new());
    a.update(&[0]);
    update_pair(
        &mut a,
        parts(&data, &[1452, 2904, 4356]),
        &mut b,
        [&data[..100_000]],
    );
    update_pair(&mut a, None::<&[u8]>, &mut b, [&data[100_000..]]);
    let mut prefixed = vec![0];
    prefixed.extend_from_slice(&data);
    assert_eq!(a.finalize(), reference(&prefixed));
    assert_eq!(b.finalize(), reference(&data));
}

#[test]
fn this_machine_pairs_side_by_side_where_its_cpu_says_it_can() {
    // Held against the kernel's reading of the CPU, not against the same
    // detection the code uses: on a CPU with the SHA extensions the
    // side-by-side rounds must be the ones the other tests run.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
        .expect("/proc/cpuinfo names the CPU's features (Linux)");
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|line| line.starts_with("flags"))
        .expect("/proc/cpuinfo has a flags line")
        .split_whitespace()
        .collect();
    let has = |flag: &str| flags.contains(&flag);
    let expected = cfg!(target_arch = "x86_64") && has("sha_ni") && has("sse4_1") && has("ssse3");
    assert_eq!(pairs_side_by_side(), expected, "flags: {flags:?}");
}

#[test]
fn the_side_by_side_rounds_match_one_at_a_time() {
    // Whatever this CPU does, compress_pair's two paths agree.
    let a_blocks: Vec<[u8; BLOCK]> = pattern(64 * 40, 1).as_chunks::<BLOCK>().0.to_vec();
    let b_blocks: Vec<[u8; BLOCK]> = pattern(64 * 40, 2).as_chunks::<BLOCK>().0.to_vec();
    let (mut a1, mut b1, mut a2, mut b2) = (H0, H0, H0, H0);
    compress_pair(pairs_side_by_side(), &mut a1, &a_blocks, &mut b1, &b_blocks);
    compress_pair(false, &mut a2, &a_blocks, &mut b2, &b_blocks);
    assert_eq!((a1, b1), (a2, b2));
}

proptest! {
    #[test]
    fn any_split_of_one_message_gives_its_digest(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut state = Sha256::new();
        for part in parts(&data, &cuts) {
            state.update(part);
        }
        prop_assert_eq!(state.finalize(), reference(&data));
    }

    #[test]
    fn any_two_messages_in_any_parts_give_their_digests(
        a_data in proptest::collection::vec(any::<u8>(), 0..3000),
        b_data in proptest::collection::vec(any::<u8>(), 0..3000),
        a_cuts in proptest::collection::vec(any::<usize>(), 0..10),
        b_cuts in proptest::collection::vec(any::<usize>(), 0..10),
        a_before in 0usize..130,
        b_before in 0usize..130,
        rounds in 1usize..4,
    ) {
        // Each side starts some bytes in (its own update), then the rest
        // goes in `rounds` pairs.
        let (mut a, mut b) = (Sha256::new(), Sha256::new());
        let a_start = a_before.min(a_data.len());
        let b_start = b_before.min(b_data.len());
        a.update(&a_data[..a_start]);
        b.update(&b_data[..b_start]);
        let a_parts = parts(&a_data[a_start..], &a_cuts);
        let b_parts = parts(&b_data[b_start..], &b_cuts);
        let a_per = a_parts.len().div_ceil(rounds);
        let b_per = b_parts.len().div_ceil(rounds);
        for round in 0..rounds {
            let a_take = a_parts.iter().skip(round * a_per).take(a_per).copied();
            let b_take = b_parts.iter().skip(round * b_per).take(b_per).copied();
            update_pair(&mut a, a_take, &mut b, b_take);
        }
        prop_assert_eq!(a.len(), a_data.len() as u64);
        prop_assert_eq!(a.finalize(), reference(&a_data));
        prop_assert_eq!(b.finalize(), reference(&b_data));
    }
}
