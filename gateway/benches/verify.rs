//! Verification cost against the cost of signing the same request with `aws-sigv4`.
//!
//! Every group has two functions measured in the same run:
//!
//! - `aws_sigv4_sign`: the baseline, building the `SignableRequest` and signing it with
//!   the `aws-sigv4` crate, as an SDK does per request;
//! - `gateway_verify`: `Verifier::parse` + `Verifier::verify` of the signed request, with
//!   the derived signing key already cached (one warm-up verification) and one
//!   `Verifier` reused across iterations.
//!
//! Group `a_get_5_headers` also has `floor`: one SHA-256 of that request's canonical
//! request plus one HMAC-SHA256 of its string to sign with a pre-keyed HMAC, the least
//! any SigV4 verifier must compute.
//!
//! Run: `cargo bench -p gateway --bench verify`. As a smoke test (each function once):
//! `cargo test -p gateway --benches` or `cargo bench -p gateway --bench verify -- --test`.
//! Setup verifies every request once and panics if it is not accepted.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningParams,
    SigningSettings, sign,
};
use aws_sigv4::sign::{v4, v4a};
use aws_smithy_runtime_api::client::identity::Identity;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::sigv4::{AmzTime, Body, Credential, Payload, Policy, Request, Secret, Verifier};
use hmac::{KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const SERVICE: &str = "svc";
const HOST: &str = "api.example.com";
/// The signing time, 2026-11-22T10:30:00Z; `now` is the same instant.
const SIGNING_TIME: &str = "20261122T103000Z";

fn now() -> i64 {
    AmzTime::parse_iso(SIGNING_TIME).unwrap().unix()
}

fn system_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(now()).unwrap())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Alg {
    V4,
    V4a,
}

/// A request before signing, and how to sign it.
struct Case {
    method: &'static str,
    /// Path and query, as sent.
    target: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
    alg: Alg,
    location: SignatureLocation,
    sign_body_hash: bool,
}

impl Case {
    fn uri(&self) -> String {
        format!("https://{HOST}{}", self.target)
    }

    fn settings(&self) -> SigningSettings {
        let mut s = SigningSettings::default();
        s.signature_location = self.location;
        if self.location == SignatureLocation::QueryParams {
            s.expires_in = Some(Duration::from_secs(900));
        }
        if self.sign_body_hash {
            s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        s
    }

    fn params<'a>(&self, identity: &'a Identity) -> SigningParams<'a> {
        match self.alg {
            Alg::V4 => v4::SigningParams::builder()
                .identity(identity)
                .region(REGION)
                .name(SERVICE)
                .time(system_time())
                .settings(self.settings())
                .build()
                .unwrap()
                .into(),
            Alg::V4a => v4a::SigningParams::builder()
                .identity(identity)
                .region_set("*")
                .name(SERVICE)
                .time(system_time())
                .settings(self.settings())
                .build()
                .unwrap()
                .into(),
        }
    }

    /// The baseline: what an SDK does per request (build the signable request, sign).
    fn aws_sign(
        &self,
        params: &SigningParams<'_>,
    ) -> aws_sigv4::SigningOutput<aws_sigv4::http_request::SigningInstructions> {
        let uri = self.uri();
        let signable = SignableRequest::new(
            self.method,
            uri,
            self.headers
                .iter()
                .map(|(k, v)| (k.as_str(), std::str::from_utf8(v.as_bytes()).unwrap())),
            SignableBody::Bytes(&self.body),
        )
        .unwrap();
        sign(signable, params).unwrap()
    }

    /// The request as the gateway receives it once `aws-sigv4` signed it.
    fn signed(&self, params: &SigningParams<'_>) -> Signed {
        let (instructions, _signature) = self.aws_sign(params).into_parts();
        let mut req = http::Request::builder()
            .method(self.method)
            .uri(self.uri())
            .body(())
            .unwrap();
        *req.headers_mut() = self.headers.clone();
        instructions.apply_to_request_http1x(&mut req);
        let (parts, ()) = req.into_parts();
        Signed {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers: parts.headers,
            body: self.body.clone(),
        }
    }
}

/// A signed request, owned.
struct Signed {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Signed {
    fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: Body::Bytes(&self.body),
        }
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

/// a. GET, header auth, 5 signed headers: accept, accept-encoding, host, x-amz-date,
/// x-request-id (user-agent is sent but, as the SDKs do, not signed).
fn case_get() -> Case {
    Case {
        method: "GET",
        target: "/v1/orders/84512?limit=50",
        headers: headers(&[
            ("host", HOST),
            ("accept", "application/json"),
            ("accept-encoding", "gzip, br"),
            ("user-agent", "orders-client/2.4.1 rust/1.95"),
            ("x-request-id", "7f3c9a1e2b4d"),
        ]),
        body: Vec::new(),
        alg: Alg::V4,
        location: SignatureLocation::Headers,
        sign_body_hash: false,
    }
}

/// A 1 KiB JSON document.
fn json_body() -> Vec<u8> {
    let mut s =
        String::from("{\"order\":{\"customer\":\"c-0042\",\"currency\":\"EUR\",\"items\":[");
    let mut i = 0;
    while s.len() < 1024 - 80 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"sku\":\"SKU-{i:05}\",\"qty\":{},\"price\":{}.99}}",
            i % 7 + 1,
            10 + i
        ));
        i += 1;
    }
    s.push_str("]},\"note\":\"");
    while s.len() < 1024 - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    assert_eq!(s.len(), 1024);
    s.into_bytes()
}

/// b. POST with a 1 KiB JSON body, header auth, x-amz-content-sha256 signed.
fn case_post() -> Case {
    Case {
        method: "POST",
        target: "/v1/orders",
        headers: headers(&[
            ("host", HOST),
            ("content-type", "application/json"),
            ("content-length", "1024"),
            ("user-agent", "orders-client/2.4.1 rust/1.95"),
            ("x-request-id", "0f6c3a52-9d4e-4b8e-b0a7-5c2e9f1d3b64"),
        ]),
        body: json_body(),
        alg: Alg::V4,
        location: SignatureLocation::Headers,
        sign_body_hash: true,
    }
}

/// c. Presigned GET (query auth, 15 minutes).
fn case_presigned() -> Case {
    Case {
        method: "GET",
        target: "/v1/exports/2026-11/report.csv?format=csv",
        headers: headers(&[("host", HOST)]),
        body: Vec::new(),
        alg: Alg::V4,
        location: SignatureLocation::QueryParams,
        sign_body_hash: false,
    }
}

/// d. SigV4a GET (header auth), region set `*`.
fn case_v4a() -> Case {
    Case {
        alg: Alg::V4a,
        ..case_get()
    }
}

fn verifier() -> Verifier {
    Verifier::new(Policy::new([REGION], [SERVICE]))
}

fn credential(secret: &Secret) -> Credential<'_> {
    Credential {
        secret,
        expires_at: None,
        allow_unsigned_payload: false,
    }
}

/// Benchmarks one case: the baseline and the verifier.
fn bench_case(c: &mut Criterion, group_name: &str, case: &Case, floor: bool) {
    let identity: Identity = Credentials::new(ACCESS_KEY_ID, SECRET, None, None, "bench").into();
    let params = case.params(&identity);
    let signed = case.signed(&params);
    let verifier = verifier();
    let secret = Secret::from(SECRET);
    let cred = credential(&secret);
    let now = now();

    // Warm-up (derives and caches the signing key) and smoke check.
    let req = signed.request();
    let auth = verifier
        .parse(&req, now)
        .unwrap_or_else(|e| panic!("{group_name}: parse: {e}"));
    let verified = verifier
        .verify(&req, &auth, &cred, now)
        .unwrap_or_else(|e| panic!("{group_name}: verify: {e}"));
    if case.sign_body_hash {
        assert!(
            matches!(verified.payload, Payload::Signed(_)),
            "{group_name}: payload not signed"
        );
    }

    let mut group = c.benchmark_group(group_name);
    group.bench_function("aws_sigv4_sign", |b| {
        b.iter(|| case.aws_sign(black_box(&params)))
    });
    group.bench_function("gateway_verify", |b| {
        b.iter(|| {
            let req = black_box(&signed).request();
            let auth = verifier.parse(&req, now).unwrap();
            verifier.verify(&req, &auth, &cred, now).unwrap()
        })
    });
    if floor {
        // This request's own canonical request and string to sign, as the gateway builds
        // them: a wrong secret makes it report both.
        let wrong = Secret::from("not-the-secret");
        let detail = verifier
            .verify(&req, &auth, &credential(&wrong), now)
            .unwrap_err();
        let detail = detail
            .signature_detail()
            .expect("a signature mismatch carries its detail")
            .clone();
        let creq = detail.canonical_request.into_bytes();
        let sts = detail.string_to_sign.into_bytes();
        let key = gateway::sigv4::derive_signing_key(&secret, &SIGNING_TIME[..8], REGION, SERVICE);
        let keyed = hmac::Hmac::<Sha256>::new_from_slice(&*key).unwrap();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!(
                "floor: canonical request {} bytes, string to sign {} bytes\n{}\n---\n{}",
                creq.len(),
                sts.len(),
                String::from_utf8_lossy(&creq),
                String::from_utf8_lossy(&sts)
            );
        }
        group.bench_function("floor", |b| {
            b.iter(|| {
                let h = Sha256::digest(black_box(&creq[..]));
                let mut m = keyed.clone();
                m.update(black_box(&sts[..]));
                (h, m.finalize())
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_case(c, "a_get_5_headers", &case_get(), true);
    bench_case(c, "b_post_1k_json", &case_post(), false);
    bench_case(c, "c_presigned_get", &case_presigned(), false);
    bench_case(c, "d_sigv4a_get", &case_v4a(), false);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = verify;
    config = config();
    targets = benches
}
criterion_main!(verify);
