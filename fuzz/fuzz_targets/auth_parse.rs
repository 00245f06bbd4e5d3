//! See `gateway_fuzz::auth_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_fuzz::auth_parse::run(data);
});
