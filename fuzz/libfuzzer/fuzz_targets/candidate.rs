//! libFuzzer entry of the gla-fuzz target `candidate`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gla_fuzz::targets::candidate::run(data));
