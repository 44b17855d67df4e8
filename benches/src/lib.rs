//! Criterion benchmarks for minimodel; the benchmarks live in `benches/`.
//!
//! Run them with `cargo bench -p minimodel-benches`. The figures and how to
//! reproduce them are in `docs/performance.md`.
