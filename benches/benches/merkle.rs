//! Merkle benchmarks (placeholder until the verifier lands).
fn main() {}
