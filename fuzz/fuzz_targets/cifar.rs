//! Fuzz target `cifar`: see `flotilla_fuzz::cifar`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::cifar::check));
