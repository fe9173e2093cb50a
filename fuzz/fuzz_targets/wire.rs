//! Fuzz target `wire`: see `flotilla_fuzz::wire`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::wire::check));
