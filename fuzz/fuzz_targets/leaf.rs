//! Fuzz target `leaf`: see `flotilla_fuzz::leaf`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::leaf::check));
