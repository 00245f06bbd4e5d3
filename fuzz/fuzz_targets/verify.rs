//! Fuzzes the SigV4 verification core: no input may make it panic, and what it reports
//! must be consistent. See `gateway_fuzz::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_fuzz::run(data, false);
});
