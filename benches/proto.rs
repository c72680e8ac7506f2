//! Criterion benchmarks of the sans-IO protocol core.
fn main() {}
