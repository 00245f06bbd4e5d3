//! See `gateway_fuzz::canonical`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_fuzz::canonical::run(data);
});
