//! See `gateway_fuzz::rules`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_fuzz::rules::run(data);
});
