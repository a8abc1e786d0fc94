//! `cargo bench`: CPU op benchmarks at the protocol's shapes (filled in by the engine work).
fn main() {}
