//! SKELETON: filled in by the verifier work.

/// Index of a chunk in an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkIndex(pub u32);
/// Placeholder.
pub struct ChunkGeometry;
/// Placeholder.
pub struct ChunkVerifier;
/// Placeholder.
pub struct VerifiedChunk;
