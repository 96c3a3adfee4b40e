//! libFuzzer entry of the gla-fuzz target `builder`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gla_fuzz::targets::builder::run(data));
