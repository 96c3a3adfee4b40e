//! libFuzzer entry of the gla-fuzz target `safetensors`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gla_fuzz::targets::safetensors::run(data));
