//! Size limits of manifest v0 and the chunk geometry rules.

/// Longest line accepted, in bytes, without its LF. The longest valid entry
/// is `source-identity` with 256 four-byte characters (1041 bytes); the limit
/// leaves room for comments and is checked before UTF-8 is decoded.
pub const MAX_LINE_LEN: usize = 2048;

/// Largest manifest accepted, in bytes, checked before anything is decoded.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;

/// Smallest chunk size: 16 KiB.
pub const MIN_CHUNK_SIZE: u32 = 16 * 1024;

/// Largest chunk size: 16 MiB.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// Most chunks an artifact may have: the wire have-bitfield (one bit a
/// chunk, 62,500 bytes) must fit in one 64 KiB frame.
pub const MAX_CHUNK_COUNT: u64 = 500_000;

/// The chunk size writers start from: 1 MiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;

/// The fewest chunks a writer aims for: an artifact that would have fewer
/// chunks of [`DEFAULT_CHUNK_SIZE`] gets smaller ones, down to
/// [`SMALLEST_DEFAULT_CHUNK_SIZE`]. A swarm trades whole chunks, and a peer
/// serves a chunk only once all of it is verified: with 32 chunks for 24
/// home uplinks, one 1 MiB chunk on a 2 Mbit uplink takes 4.2 s and the
/// crowd finished at 1.34 T* in the lab; with 128 chunks of 256 KiB, 1.18
/// (`docs/performance.md`, "Chunk size").
pub const FEWEST_DEFAULT_CHUNKS: u64 = 128;

/// The smallest chunk size a writer picks by itself: 64 KiB (every chunk
/// costs a piece stream, a proof and a Have on every link).
pub const SMALLEST_DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

/// Longest `display-name`, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;

/// Longest `source-identity`, in characters.
pub const MAX_SOURCE_IDENTITY_CHARS: usize = 256;

/// `ceil(artifact_bytes / chunk_size)`: the chunk count of an artifact.
/// A chunk size of zero describes no geometry and gives zero.
pub fn chunk_count_for(artifact_bytes: u64, chunk_size: u32) -> u64 {
    if chunk_size == 0 {
        return 0;
    }
    artifact_bytes.div_ceil(u64::from(chunk_size))
}

/// The chunk size a writer should use: [`DEFAULT_CHUNK_SIZE`], halved while
/// the artifact would have fewer than [`FEWEST_DEFAULT_CHUNKS`] chunks, not
/// below [`SMALLEST_DEFAULT_CHUNK_SIZE`] (32 MiB: 256 KiB, 16 MiB: 128 KiB,
/// 8 MiB or less: 64 KiB, from just above 127 MiB on: 1 MiB); doubled
/// until the chunk count fits
/// [`MAX_CHUNK_COUNT`], at most [`MAX_CHUNK_SIZE`] (an artifact above
/// 500,000 x 16 MiB has no valid geometry, and
/// [`super::Manifest::validate`] says so).
pub fn default_chunk_size(artifact_bytes: u64) -> u32 {
    let mut chunk_size = DEFAULT_CHUNK_SIZE;
    while chunk_size > SMALLEST_DEFAULT_CHUNK_SIZE
        && chunk_count_for(artifact_bytes, chunk_size) < FEWEST_DEFAULT_CHUNKS
    {
        chunk_size /= 2;
    }
    while chunk_size < MAX_CHUNK_SIZE
        && chunk_count_for(artifact_bytes, chunk_size) > MAX_CHUNK_COUNT
    {
        chunk_size *= 2;
    }
    chunk_size
}

/// Whether `chunk_size` is a power of two from [`MIN_CHUNK_SIZE`] to
/// [`MAX_CHUNK_SIZE`].
pub(crate) fn is_valid_chunk_size(chunk_size: u64) -> bool {
    chunk_size.is_power_of_two()
        && (u64::from(MIN_CHUNK_SIZE)..=u64::from(MAX_CHUNK_SIZE)).contains(&chunk_size)
}
