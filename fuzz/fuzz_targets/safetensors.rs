//! Fuzz target `safetensors`: see `flotilla_fuzz::safetensors`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(
    data,
    flotilla_fuzz::safetensors::check
));
