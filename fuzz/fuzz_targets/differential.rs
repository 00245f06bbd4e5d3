//! Like `verify`, and also asserts that every request the AWS SDK's signer (`aws-sigv4`)
//! signs is accepted before it is mutated (and its chunk-signed bodies decode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_fuzz::run(data, true);
});
