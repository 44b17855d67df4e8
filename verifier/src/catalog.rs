//! SKELETON: filled in by the verifier work.
