//! See `gateway_fuzz::sts_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_fuzz::sts_request::run(data);
});
