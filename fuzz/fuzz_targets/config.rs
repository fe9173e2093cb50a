//! Fuzz target `config`: see `flotilla_fuzz::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::config::check));
