//! Fuzz target `idx`: see `flotilla_fuzz::idx`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::idx::check));
