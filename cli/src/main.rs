//! The `minimodel` command line.

fn main() {}
