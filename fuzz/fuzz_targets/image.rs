//! Fuzz target `image`: see `flotilla_fuzz::image`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::image::check));
