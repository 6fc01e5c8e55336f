//! The library half of `proxyCli`: the parts with no I/O beyond reading a file, kept here so
//! that they can be tested and fuzzed on their own (`fuzz/fuzz_targets/deploy_file.rs`).

pub mod deploy_file;
pub mod limits;
pub mod normal;
