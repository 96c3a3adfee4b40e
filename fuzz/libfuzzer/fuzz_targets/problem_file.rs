//! libFuzzer entry of the gla-fuzz target `problem_file`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gla_fuzz::targets::problem_file::run(data));
