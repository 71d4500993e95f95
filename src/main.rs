//! The `qsfs` command line.
fn main() {}
