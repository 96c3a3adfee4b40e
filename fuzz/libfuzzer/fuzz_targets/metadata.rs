//! libFuzzer entry of the gla-fuzz target `metadata`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gla_fuzz::targets::metadata::run(data));
