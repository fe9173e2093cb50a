//! Fuzz target `device_trace`: see `flotilla_fuzz::device_trace`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::run(data, flotilla_fuzz::device_trace::check));
