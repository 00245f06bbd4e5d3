//! What replay protection and rate limits cost per request in memory, against the
//! SigV4 verification they follow (a typical GET signed by aws-sigv4, verified by the
//! core), measured in the same run.
//!
//! Group `shared_state`:
//! - `verify_get` (baseline): parse and verify a signed GET (key cache warm);
//! - `replay_insert`: `ReplayCache::insert` of a new signature into a cache holding
//!   about 90,000 live ones, retiring the expired (the expiry queue and the shard map);
//! - `bucket_check`: `Buckets::check` (GCRA, consuming) on one of 10,000 keys.
//!
//! Run: `cargo bench -p gateway --bench state`; smoke test: `... -- --test`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::sigv4::{Body, Credential, Policy, Request, Secret, Verifier};
use gateway::state::gcra::Shape;
use gateway::state::memory::{Buckets, ReplayCache};
use http::HeaderMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn signed_get() -> (http::request::Parts, i64) {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let now = SystemTime::now();
    let identity = Credentials::new("AKIDEXAMPLE", "secret", None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("execute-api")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = "https://gateway.internal/order/orders/42?view=full";
    let headers = [("host", "gateway.internal"), ("accept", "application/json")];
    let signable = SignableRequest::new(
        "GET",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method("GET").uri(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    let now = i64::try_from(now.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    (req.into_parts().0, now)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_state");

    let (parts, now) = signed_get();
    let headers: &HeaderMap = &parts.headers;
    let request = Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body: Body::Bytes(b""),
    };
    let verifier = Verifier::new(Policy::new(["eu-west-1"], ["execute-api"]));
    let secret = Secret::from("secret");
    let credential = Credential {
        secret: &secret,
        expires_at: None,
        allow_unsigned_payload: false,
    };
    g.bench_function("verify_get", |b| {
        b.iter(|| {
            let auth = verifier.parse(&request, now).unwrap();
            black_box(verifier.verify(&request, &auth, &credential, now).unwrap())
        });
    });

    // Steady state: the clock moves one second every 300 requests and signatures live
    // 300 s, so about 90,000 are live and each insert also retires an expired one.
    let cache = ReplayCache::new(1_000_000);
    let mut n: u128 = 0;
    let mut step = |cache: &ReplayCache| {
        n += 1;
        let t = now + i64::try_from(n / 300).unwrap_or(0);
        let key = n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        cache.insert(key, t + 300, t).unwrap()
    };
    for _ in 0..90_000 {
        step(&cache);
    }
    g.bench_function("replay_insert", |b| b.iter(|| black_box(step(&cache))));

    let buckets: Buckets<String> = Buckets::new(100_000);
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("checkout-calls|pbc-{i}"))
        .collect();
    let shape = Shape::new(Duration::from_secs(1), 1_000_000, 1_000_000);
    let mut i = 0usize;
    let mut now_ms = now * 1000;
    g.bench_function("bucket_check", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            now_ms += 1;
            black_box(buckets.check(&keys[i], shape, now_ms, true).unwrap())
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
