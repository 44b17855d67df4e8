//! SHA-256 of two messages side by side.
//!
//! One core's SHA unit (x86's SHA extensions) finishes a round only a
//! few cycles after it starts it, and a message's next round needs the
//! last one's result: hashed one at a time, a message keeps the unit
//! about half busy. Two independent messages hashed round by round in
//! turn fill it, so two messages cost little more than one (1.16 times
//! one on the machine of `docs/performance.md`, "Two hashes in one
//! pass").
//!
//! A download hashes every byte twice by design: once for its chunk's
//! Merkle proof, once for the whole-file check that reads the file back
//! from disk. [`update_pair`] feeds two [`Sha256`] states at once, e.g.
//! a chunk that just arrived and the next chunk of the file read back from
//! disk. Each state is an ordinary SHA-256: what it returns does not depend
//! on how its bytes were split or paired. On a CPU without the SHA
//! extensions (or not x86-64) the two are hashed one after the other.

use std::sync::OnceLock;

/// The initial hash value (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

const BLOCK: usize = 64;

/// A SHA-256 computation: the state, the bytes of a block not complete
/// yet, and the length so far.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    buffer: [u8; BLOCK],
    buffered: usize,
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha256").field("len", &self.len).finish()
    }
}

impl Sha256 {
    /// A new computation.
    pub fn new() -> Self {
        Self {
            state: H0,
            buffer: [0; BLOCK],
            buffered: 0,
            len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hashes `data` on its own.
    pub fn update(&mut self, data: &[u8]) {
        let mut feed = Feed::new(std::iter::once(data));
        while let Some(segment) = feed.next(self) {
            sha2::block_api::compress256(&mut self.state, segment.blocks());
        }
    }

    /// The digest.
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut block = self.buffer;
        block[self.buffered] = 0x80;
        block[self.buffered + 1..].fill(0);
        if self.buffered >= BLOCK - 8 {
            sha2::block_api::compress256(&mut self.state, std::slice::from_ref(&block));
            block = [0; BLOCK];
        }
        block[BLOCK - 8..].copy_from_slice(&bits.to_be_bytes());
        sha2::block_api::compress256(&mut self.state, std::slice::from_ref(&block));
        let mut digest = [0; 32];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// Whether this CPU hashes a pair side by side ([`update_pair`] is then
/// about as fast as one [`Sha256::update`] of the longer side); without
/// it a pair costs what the two cost one after the other.
pub fn pairs_side_by_side() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    std::is_x86_feature_detected!("sha")
        && std::is_x86_feature_detected!("sse2")
        && std::is_x86_feature_detected!("ssse3")
        && std::is_x86_feature_detected!("sse4.1")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

/// Hashes `a_parts` (in order) into `a` and `b_parts` into `b`, block by
/// block side by side while both have blocks, then the rest of the longer
/// one alone. The same as `a.update` of each of `a_parts` and `b.update`
/// of each of `b_parts`.
pub fn update_pair<'a, 'b>(
    a: &mut Sha256,
    a_parts: impl IntoIterator<Item = &'a [u8]>,
    b: &mut Sha256,
    b_parts: impl IntoIterator<Item = &'b [u8]>,
) {
    let side_by_side = pairs_side_by_side();
    let mut a_feed = Feed::new(a_parts.into_iter());
    let mut b_feed = Feed::new(b_parts.into_iter());
    let (mut a_segment, mut b_segment) = (a_feed.next(a), b_feed.next(b));
    // Blocks of the current segments already hashed.
    let (mut a_done, mut b_done) = (0, 0);
    loop {
        match (&a_segment, &b_segment) {
            (Some(a_blocks), Some(b_blocks)) => {
                let a_blocks = &a_blocks.blocks()[a_done..];
                let b_blocks = &b_blocks.blocks()[b_done..];
                let n = a_blocks.len().min(b_blocks.len());
                compress_pair(
                    side_by_side,
                    &mut a.state,
                    &a_blocks[..n],
                    &mut b.state,
                    &b_blocks[..n],
                );
                a_done += n;
                b_done += n;
                if n == a_blocks.len() {
                    a_segment = a_feed.next(a);
                    a_done = 0;
                }
                if n == b_blocks.len() {
                    b_segment = b_feed.next(b);
                    b_done = 0;
                }
            }
            (Some(blocks), None) => {
                sha2::block_api::compress256(&mut a.state, &blocks.blocks()[a_done..]);
                a_segment = a_feed.next(a);
                a_done = 0;
            }
            (None, Some(blocks)) => {
                sha2::block_api::compress256(&mut b.state, &blocks.blocks()[b_done..]);
                b_segment = b_feed.next(b);
                b_done = 0;
            }
            (None, None) => break,
        }
    }
}

#[allow(unsafe_code)]
fn compress_pair(
    side_by_side: bool,
    a: &mut [u32; 8],
    a_blocks: &[[u8; BLOCK]],
    b: &mut [u32; 8],
    b_blocks: &[[u8; BLOCK]],
) {
    debug_assert_eq!(a_blocks.len(), b_blocks.len());
    #[cfg(target_arch = "x86_64")]
    if side_by_side && pairs_side_by_side() {
        // SAFETY: `pairs_side_by_side` found every feature
        // `x86::compress_pair` is compiled for on this CPU.
        unsafe { x86::compress_pair(a, a_blocks, b, b_blocks) };
        return;
    }
    let _ = side_by_side;
    sha2::block_api::compress256(a, a_blocks);
    sha2::block_api::compress256(b, b_blocks);
}

/// Whole blocks of a message, as they come.
enum Segment<'a> {
    /// A block put together from the end of one part and the start of
    /// the next (or of a part shorter than a block).
    Joined([u8; BLOCK]),
    /// Blocks lying whole in one part.
    Whole(&'a [[u8; BLOCK]]),
}

impl Segment<'_> {
    fn blocks(&self) -> &[[u8; BLOCK]] {
        match self {
            Segment::Joined(block) => std::slice::from_ref(block),
            Segment::Whole(blocks) => blocks,
        }
    }
}

/// Cuts a message's parts into whole blocks, keeping what does not fill
/// one in its state's buffer until the next part completes it.
struct Feed<'a, I> {
    parts: I,
    rest: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> Feed<'a, I> {
    fn new(parts: I) -> Self {
        Self { parts, rest: &[] }
    }

    /// The next whole blocks of the message, counted into `state`'s
    /// length; `None` once every part is taken (a tail shorter than a
    /// block is then in `state`'s buffer).
    fn next(&mut self, state: &mut Sha256) -> Option<Segment<'a>> {
        loop {
            if state.buffered > 0 {
                let take = (BLOCK - state.buffered).min(self.rest.len());
                state.buffer[state.buffered..state.buffered + take]
                    .copy_from_slice(&self.rest[..take]);
                state.buffered += take;
                state.len += take as u64;
                self.rest = &self.rest[take..];
                if state.buffered == BLOCK {
                    state.buffered = 0;
                    return Some(Segment::Joined(state.buffer));
                }
            } else {
                let (blocks, tail) = self.rest.as_chunks::<BLOCK>();
                if !blocks.is_empty() {
                    state.len += (blocks.len() * BLOCK) as u64;
                    self.rest = tail;
                    return Some(Segment::Whole(blocks));
                }
                state.buffer[..tail.len()].copy_from_slice(tail);
                state.buffered = tail.len();
                state.len += tail.len() as u64;
                self.rest = &[];
            }
            self.rest = self.parts.next()?;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Two SHA-256 states compressed round by round in turn with the SHA
    //! extensions (the round and message-schedule instructions of Intel's
    //! "SHA extensions" paper, the same sequence `sha2` runs for one).

    use std::arch::x86_64::*;

    use super::BLOCK;

    /// The round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The state as the round instruction wants it: (ABEF, CDGH).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load_state(state: &[u32; 8]) -> (__m128i, __m128i) {
        let word = |i: usize| state[i] as i32;
        let abef = _mm_set_epi32(word(0), word(1), word(4), word(5));
        let cdgh = _mm_set_epi32(word(2), word(3), word(6), word(7));
        (abef, cdgh)
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store_state(state: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        state[0] = _mm_extract_epi32::<3>(abef) as u32;
        state[1] = _mm_extract_epi32::<2>(abef) as u32;
        state[4] = _mm_extract_epi32::<1>(abef) as u32;
        state[5] = _mm_extract_epi32::<0>(abef) as u32;
        state[2] = _mm_extract_epi32::<3>(cdgh) as u32;
        state[3] = _mm_extract_epi32::<2>(cdgh) as u32;
        state[6] = _mm_extract_epi32::<1>(cdgh) as u32;
        state[7] = _mm_extract_epi32::<0>(cdgh) as u32;
    }

    /// The four message words `16 * group ..` of a block, big-endian.
    #[allow(unsafe_code)]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load_words(block: &[u8; BLOCK], group: usize, swap: __m128i) -> __m128i {
        let bytes: &[u8; 16] = block[group * 16..group * 16 + 16]
            .try_into()
            .expect("a block holds four groups of 16 bytes");
        // SAFETY: `bytes` is 16 readable bytes; the load has no alignment
        // requirement.
        let words = unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) };
        _mm_shuffle_epi8(words, swap)
    }

    /// Compresses `a_blocks` into `a` and `b_blocks` into `b` (as many of
    /// each), round by round in turn.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) fn compress_pair(
        a: &mut [u32; 8],
        a_blocks: &[[u8; BLOCK]],
        b: &mut [u32; 8],
        b_blocks: &[[u8; BLOCK]],
    ) {
        let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let (mut a_abef, mut a_cdgh) = load_state(a);
        let (mut b_abef, mut b_cdgh) = load_state(b);
        // Four message groups in four registers a side, round groups
        // written out so every constant is one.
        macro_rules! rounds {
            ($abef:ident, $cdgh:ident, $words:expr, $group:literal) => {{
                let k = _mm_set_epi32(
                    K[$group * 4 + 3] as i32,
                    K[$group * 4 + 2] as i32,
                    K[$group * 4 + 1] as i32,
                    K[$group * 4] as i32,
                );
                let message = _mm_add_epi32($words, k);
                $cdgh = _mm_sha256rnds2_epu32($cdgh, $abef, message);
                $abef = _mm_sha256rnds2_epu32($abef, $cdgh, _mm_shuffle_epi32::<0x0E>(message));
            }};
        }
        // Both sides' group: the `new` words (from the block, or scheduled
        // from the last four groups), then their four rounds.
        macro_rules! group {
            ($group:literal, $a0:ident, $a1:ident, $a2:ident, $a3:ident,
             $b0:ident, $b1:ident, $b2:ident, $b3:ident) => {{
                $a0 = schedule($a0, $a1, $a2, $a3);
                $b0 = schedule($b0, $b1, $b2, $b3);
                rounds!(a_abef, a_cdgh, $a0, $group);
                rounds!(b_abef, b_cdgh, $b0, $group);
            }};
        }
        // Both sides' group from the block itself, then its four rounds.
        macro_rules! first {
            ($group:literal, $a_block:ident, $b_block:ident, $a:ident, $b:ident) => {
                let mut $a = load_words($a_block, $group, swap);
                let mut $b = load_words($b_block, $group, swap);
                rounds!(a_abef, a_cdgh, $a, $group);
                rounds!(b_abef, b_cdgh, $b, $group);
            };
        }
        for (a_block, b_block) in a_blocks.iter().zip(b_blocks) {
            let (a_abef0, a_cdgh0, b_abef0, b_cdgh0) = (a_abef, a_cdgh, b_abef, b_cdgh);
            first!(0, a_block, b_block, a0, b0);
            first!(1, a_block, b_block, a1, b1);
            first!(2, a_block, b_block, a2, b2);
            first!(3, a_block, b_block, a3, b3);
            group!(4, a0, a1, a2, a3, b0, b1, b2, b3);
            group!(5, a1, a2, a3, a0, b1, b2, b3, b0);
            group!(6, a2, a3, a0, a1, b2, b3, b0, b1);
            group!(7, a3, a0, a1, a2, b3, b0, b1, b2);
            group!(8, a0, a1, a2, a3, b0, b1, b2, b3);
            group!(9, a1, a2, a3, a0, b1, b2, b3, b0);
            group!(10, a2, a3, a0, a1, b2, b3, b0, b1);
            group!(11, a3, a0, a1, a2, b3, b0, b1, b2);
            group!(12, a0, a1, a2, a3, b0, b1, b2, b3);
            group!(13, a1, a2, a3, a0, b1, b2, b3, b0);
            group!(14, a2, a3, a0, a1, b2, b3, b0, b1);
            group!(15, a3, a0, a1, a2, b3, b0, b1, b2);
            a_abef = _mm_add_epi32(a_abef, a_abef0);
            a_cdgh = _mm_add_epi32(a_cdgh, a_cdgh0);
            b_abef = _mm_add_epi32(b_abef, b_abef0);
            b_cdgh = _mm_add_epi32(b_cdgh, b_cdgh0);
        }
        store_state(a, a_abef, a_cdgh);
        store_state(b, b_abef, b_cdgh);
    }

    /// The next four message-schedule words from the last four groups
    /// (`back4` the oldest).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(back4: __m128i, back3: __m128i, back2: __m128i, back1: __m128i) -> __m128i {
        let next = _mm_sha256msg1_epu32(back4, back3);
        let next = _mm_add_epi32(next, _mm_alignr_epi8::<4>(back1, back2));
        _mm_sha256msg2_epu32(next, back1)
    }
}

#[cfg(test)]
mod tests;
