//! Property tests of the verification core against an independent signer: every request
//! here is signed by the `aws-sigv4` crate (the AWS SDK for Rust's signer), split into the
//! gateway's [`Request`] as a server would receive it, and verified.
//!
//! 1. Random requests signed by `aws-sigv4` verify (SigV4 and SigV4a, header and presigned,
//!    `s3` and other services, with and without a session token, with and without
//!    `x-amz-content-sha256`).
//! 2. Any single change to a signed part is rejected with the right AWS error code.
//! 3. No input, random or a near miss of a valid request, makes the verifier panic.
//!
//! Mutations of the path, query and headers use `aws-sigv4` itself as the oracle for
//! "this really changed what was signed": the mutated request is signed again and a case
//! whose signature does not change (a change that canonicalizes away) is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningParams, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::{v4, v4a};
use aws_smithy_runtime_api::client::identity::Identity;
use gateway::sigv4::{
    Algorithm, AmzTime, Body, Code, Credential, Limits, Location, Payload, Policy, Rejection,
    Request, Secret, Verified, Verifier,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use sha2::{Digest, Sha256};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2023-11-14T22:13:20Z; signing times spread over the following ~2.3 days, so some
/// requests sit right before midnight.
const BASE_TIME: i64 = 1_700_000_000;
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];
const SERVICES: [&str; 3] = ["svc", "s3", "execute-api"];
/// SigV4a region sets, each covering at least one accepted region.
const REGION_SETS: [&str; 4] = ["us-east-1", "*", "us-*", "us-west-2,eu-central-1"];
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
const HOSTS: [&str; 4] = [
    "example.com",
    "svc.internal:8443",
    "localhost:8080",
    "gateway.example.org",
];
/// Custom header names; few, so the same name is often repeated. `user-agent` is one the
/// signer leaves unsigned.
const HEADER_NAMES: [&str; 7] = [
    "x-custom",
    "x-meta-a",
    "content-type",
    "x-amz-meta-b",
    "accept",
    "x-dup",
    "user-agent",
];
/// The authority of the URI handed to the signer; the `Host` header is what is signed.
const URI_AUTHORITY: &str = "upstream.example";
const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

static VERIFIER: LazyLock<Verifier> =
    LazyLock::new(|| Verifier::new(Policy::new(REGIONS, SERVICES)));

/// A verifier with tight limits, for the no-panic properties.
static TIGHT_VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let mut policy = Policy::new(REGIONS, SERVICES);
    policy.limits = Limits {
        max_signed_headers: 3,
        max_query_params: 4,
        max_chunk_size: 16,
        key_cache_capacity: 2,
    };
    policy.required_signed_headers = vec!["content-type".to_owned()];
    Verifier::new(policy)
});

/// `cases` per property, times `PROPTEST_SCALE` when set (for a longer soak run).
fn config(cases: u32) -> ProptestConfig {
    let scale = std::env::var("PROPTEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale.max(1)),
        // Never write regression files next to the tests: a failure prints its case.
        failure_persistence: None,
        max_shrink_iters: 512,
        max_global_rejects: 4096,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// What to sign
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    V4,
    V4a,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    Header,
    Query,
}

/// A request to sign and how to sign it.
#[derive(Clone)]
struct Spec {
    method: &'static str,
    /// The `Host` header (the signer signs it rather than the URI's authority).
    host: String,
    /// Raw path as it goes into the URI.
    path: String,
    /// Raw query (no `?`), before the signer adds its presign parameters.
    query: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    service: &'static str,
    /// SigV4 region.
    region: &'static str,
    /// SigV4a region set.
    region_set: &'static str,
    alg: Alg,
    loc: Loc,
    token: Option<String>,
    /// `PayloadChecksumKind::XAmzSha256` (header signing adds `x-amz-content-sha256`).
    checksum_header: bool,
    /// Sign `UNSIGNED-PAYLOAD` instead of the body's hash.
    unsigned_payload: bool,
    /// Sign `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (no-panic fuzzing only).
    streaming: bool,
    /// Signing time, Unix seconds.
    time: i64,
    /// The server's clock: within the skew window (and before a presigned expiry).
    now: i64,
    /// Presigned `X-Amz-Expires`.
    expires: u64,
}

/// Bodies print as hex, so a failing case stays readable and can be pasted back.
struct HexBytes<'a>(&'a [u8]);

impl std::fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hex\"{}\"", gateway::sigv4::hex(self.0))
    }
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers)
            .field("body", &HexBytes(&self.body))
            .field("service", &self.service)
            .field("region", &self.region)
            .field("region_set", &self.region_set)
            .field("alg", &self.alg)
            .field("loc", &self.loc)
            .field("token", &self.token)
            .field("checksum_header", &self.checksum_header)
            .field("unsigned_payload", &self.unsigned_payload)
            .field("streaming", &self.streaming)
            .field("time", &self.time)
            .field("now", &self.now)
            .field("expires", &self.expires)
            .finish()
    }
}

impl Spec {
    fn s3(&self) -> bool {
        self.service == "s3"
    }

    fn uri(&self) -> String {
        if self.query.is_empty() {
            format!("https://{URI_AUTHORITY}{}", self.path)
        } else {
            format!("https://{URI_AUTHORITY}{}?{}", self.path, self.query)
        }
    }

    fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&self.host).unwrap());
        for (name, value) in &self.headers {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }
}

/// A request as signed by `aws-sigv4` and sent: what the gateway receives.
#[derive(Clone)]
struct Signed {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The signature `aws-sigv4` computed (hex; DER for SigV4a, which is deterministic).
    signature: String,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers)
            .field("body", &HexBytes(&self.body))
            .field("signature", &self.signature)
            .finish()
    }
}

impl Signed {
    fn request(&self, hashed_body: bool) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: if hashed_body {
                Body::Sha256(Sha256::digest(&self.body).into())
            } else {
                Body::Bytes(&self.body)
            },
        }
    }

    fn header(&self, name: &str) -> String {
        self.headers.get(name).unwrap().to_str().unwrap().to_owned()
    }
}

/// Signs `spec` with `aws-sigv4` and applies the signing instructions to an
/// `http::Request`, then splits it into what a server receives.
fn try_sign(spec: &Spec) -> Result<Signed, String> {
    let uri = spec.uri();
    let headers = spec.header_map();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    let body = if spec.streaming {
        SignableBody::Precomputed(STREAMING.to_owned())
    } else if spec.unsigned_payload {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&spec.body)
    };
    let signable = SignableRequest::new(spec.method, uri.as_str(), pairs.into_iter(), body)
        .map_err(|e| e.to_string())?;

    let mut settings = SigningSettings::default();
    if spec.s3() {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    } else {
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    }
    settings.payload_checksum_kind = if spec.checksum_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    match spec.loc {
        Loc::Header => settings.signature_location = SignatureLocation::Headers,
        Loc::Query => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(spec.expires));
        }
    }

    let identity: Identity =
        Credentials::new(AKID, SECRET, spec.token.clone(), None, "proptest").into();
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(spec.time).unwrap());
    let params: SigningParams<'_> = match spec.alg {
        Alg::V4 => v4::SigningParams::builder()
            .identity(&identity)
            .region(spec.region)
            .name(spec.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into(),
        Alg::V4a => v4a::SigningParams::builder()
            .identity(&identity)
            .region_set(spec.region_set)
            .name(spec.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into(),
    };
    let (instructions, signature) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();

    let mut req = http::Request::builder()
        .method(spec.method)
        .uri(uri.as_str())
        .body(())
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = headers;
    instructions.apply_to_request_http1x(&mut req);
    let (parts, ()) = req.into_parts();
    Ok(Signed {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body: spec.body.clone(),
        signature,
    })
}

fn sign_spec(spec: &Spec) -> Signed {
    try_sign(spec).unwrap_or_else(|e| unreachable!("aws-sigv4 could not sign {spec:?}: {e}"))
}

/// What `aws-sigv4` makes of the request's path, query, headers and body: its SigV4
/// signature with everything else fixed. Equal fingerprints mean equal canonical requests.
fn fingerprint(spec: &Spec) -> Option<String> {
    let mut spec = spec.clone();
    spec.alg = Alg::V4;
    try_sign(&spec).ok().map(|s| s.signature)
}

// ---------------------------------------------------------------------------------------
// Verifying
// ---------------------------------------------------------------------------------------

fn credential(secret: &Secret, allow_unsigned_payload: bool) -> Credential<'_> {
    Credential {
        secret,
        expires_at: None,
        allow_unsigned_payload,
    }
}

fn verify_with(
    verifier: &Verifier,
    signed: &Signed,
    hashed_body: bool,
    cred: &Credential<'_>,
    now: i64,
) -> Result<Verified, Rejection> {
    let req = signed.request(hashed_body);
    let auth = verifier.parse(&req, now)?;
    if auth.access_key_id() != AKID {
        return Err(Rejection::unknown_access_key(auth.access_key_id()));
    }
    verifier.verify(&req, &auth, cred, now)
}

/// Verifies with the right secret, the body given whole or (`hashed_body`) as its hash.
fn verify(spec: &Spec, signed: &Signed, hashed_body: bool) -> Result<Verified, Rejection> {
    let secret = Secret::from(SECRET);
    verify_with(
        &VERIFIER,
        signed,
        hashed_body,
        &credential(&secret, spec.unsigned_payload),
        spec.now,
    )
}

fn reject_text(r: &Rejection) -> String {
    let mut s = r.to_string();
    s.truncate(4000);
    s
}

/// Asserts a rejection with `want`, and that no rejection text leaks the secret.
fn expect_code(
    result: Result<Verified, Rejection>,
    want: Code,
    what: &str,
) -> Result<(), TestCaseError> {
    match result {
        Ok(v) => Err(TestCaseError::fail(format!(
            "{what}: accepted, expected {want}: {v:?}"
        ))),
        Err(r) => {
            prop_assert!(
                !r.to_string().contains(SECRET),
                "rejection text contains the secret"
            );
            if r.code() == want {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{what}: expected {want}, got {}",
                    reject_text(&r)
                )))
            }
        }
    }
}

fn expect_ok(result: Result<Verified, Rejection>, what: &str) -> Result<Verified, TestCaseError> {
    result.map_err(|r| TestCaseError::fail(format!("{what}: rejected: {}", reject_text(&r))))
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// `c` percent-encoded as UTF-8, upper- or lower-case hex.
fn pct(c: char, lower: bool) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| {
            if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn non_ascii_char() -> impl Strategy<Value = char> {
    (0x80u32..=0x10_FFFF).prop_filter_map("a char", char::from_u32)
}

fn strs(values: &[&'static str]) -> impl Strategy<Value = String> + use<> {
    select(values.to_vec()).prop_map(str::to_owned)
}

/// One piece of a path segment: RFC 3986 `pchar`, complete escapes, and characters
/// `http::Uri` accepts though they should be escaped, raw UTF-8 and stray `%`.
fn path_atom() -> BoxedStrategy<String> {
    let common = prop_oneof![
        4 => "[a-zA-Z0-9._~-]{1,8}",
        2 => strs(&["!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", ":", "@"]),
        2 => strs(&["%2F", "%3A", "%20", "%25", "%2f", "%3a", "%7E", "%41", "%2B", "%3F", "%23"]),
        2 => (any::<char>(), any::<bool>()).prop_map(|(c, lower)| pct(c, lower)),
    ];
    prop_oneof![
        10 => common,
        1 => strs(&["\"", "{", "}", "[", "]", "|", "^", "\\"]),
        1 => non_ascii_char().prop_map(String::from),
        1 => strs(&["%", "%zz", "%4"]),
    ]
    .boxed()
}

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        8 => prop::collection::vec(path_atom(), 1..4).prop_map(|v| v.concat()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(String::new()),
    ];
    (prop::collection::vec(segment, 0..6), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path = format!("/{}", segments.join("/"));
        if trailing && !path.ends_with('/') {
            path.push('/');
        }
        path
    })
}

/// One piece of a query key or value: words, escaped reserved characters, `+` (a space),
/// raw characters `http::Uri` accepts in a query, escaped and raw UTF-8, malformed escapes
/// (which cannot combine with a neighbour into an escape of a non-ASCII byte).
///
/// Escapes that decode to invalid UTF-8 (`%FF`) are left out on purpose: `aws-sigv4`
/// decodes the query with `form_urlencoded`, which replaces them with U+FFFD and signs
/// `%EF%BF%BD`, while the verifier (like the SigV4 spec and botocore) keeps the bytes.
fn query_atom(in_value: bool) -> BoxedStrategy<String> {
    let atom = prop_oneof![
        4 => "[a-zA-Z0-9._~-]{1,6}",
        2 => strs(&["%26", "%3D", "%2B", "%20", "%23", "%25", "%2F", "%3a", "%7e", "%41"]),
        1 => Just("+".to_owned()),
        2 => strs(&["/", "?", ":", "@", "!", "$", "'", "(", ")", "*", ",", ";", "[", "]", "{", "}", "|", "^", "`", "~", "\\"]),
        1 => (any::<char>(), any::<bool>()).prop_map(|(c, lower)| pct(c, lower)),
        1 => non_ascii_char().prop_map(String::from),
        1 => strs(&["%zz", "%-", "%4"]),
    ];
    if in_value {
        prop_oneof![10 => atom, 1 => Just("=".to_owned())].boxed()
    } else {
        atom.boxed()
    }
}

fn query_value() -> impl Strategy<Value = String> {
    prop::collection::vec(query_atom(true), 1..4).prop_map(|v| v.concat())
}

/// A raw query: keys with and without `=`, empty values, duplicate keys, empty pieces.
fn query_strategy() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        3 => strs(&["a", "b", "key", "Action", "k", "x-y", "a"]),
        1 => prop::collection::vec(query_atom(false), 1..3).prop_map(|v| v.concat()),
    ];
    let value = prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        4 => query_value().prop_map(Some),
    ];
    let piece = prop_oneof![
        12 => (key, value).prop_map(|(k, v)| match v {
            None => k,
            Some(v) => format!("{k}={v}"),
        }),
        1 => Just(String::new()),
    ];
    prop::collection::vec(piece, 0..7).prop_map(|pieces| {
        let q = pieces.join("&");
        // A query of only separators is legal but tells nothing; keep it to a real one.
        if q.bytes().all(|b| b == b'&') {
            String::new()
        } else {
            q
        }
    })
}

/// Header values: visible ASCII with runs of spaces (and single tabs) inside and spaces at
/// the ends. Tabs at the ends are left out: the verifier trims them, `aws-sigv4` trims only
/// spaces, and HTTP/1 parsers strip them before either sees the value.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        8 => "( {0,2})[!-~]{1,5}(( {1,3}|\t)[!-~]{1,5}){0,3}( {0,2})",
    ]
}

fn headers_strategy() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((select(HEADER_NAMES.to_vec()), header_value()), 0..7)
}

fn token_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=]{16,80}"
}

fn alg_strategy(v4a_weight: u32) -> BoxedStrategy<Alg> {
    match v4a_weight {
        0 => Just(Alg::V4).boxed(),
        8.. => Just(Alg::V4a).boxed(),
        w => prop_oneof![(8 - w) => Just(Alg::V4), w => Just(Alg::V4a)].boxed(),
    }
}

/// Valid signed requests. `v4a_weight` out of 8 are SigV4a.
fn spec_strategy(v4a_weight: u32) -> impl Strategy<Value = Spec> {
    (
        alg_strategy(v4a_weight),
        select(SERVICES.to_vec()),
        prop_oneof![Just(Loc::Header), Just(Loc::Query)],
    )
        .prop_flat_map(|(alg, service, loc)| {
            let s3 = service == "s3";
            (
                (
                    select(METHODS.to_vec()),
                    select(HOSTS.to_vec()),
                    path_strategy(),
                    query_strategy(),
                    headers_strategy(),
                    prop::collection::vec(any::<u8>(), 0..2048),
                ),
                (
                    select(REGIONS.to_vec()),
                    select(REGION_SETS.to_vec()),
                    proptest::option::of(token_strategy()),
                    any::<bool>(),
                    prop::bool::weighted(0.2),
                ),
                (0i64..200_000, -290i64..=290, 1u64..=3600),
            )
                .prop_map(
                    move |(
                        (method, host, path, query, headers, body),
                        (region, region_set, token, checksum_header, unsigned),
                        (offset, skew, expires),
                    )| {
                        let time = BASE_TIME + offset;
                        let (checksum_header, unsigned_payload, now) = match loc {
                            // UNSIGNED-PAYLOAD in a header-signed request needs the header.
                            Loc::Header => {
                                (checksum_header, checksum_header && unsigned, time + skew)
                            }
                            // Presigned S3 URLs sign UNSIGNED-PAYLOAD.
                            Loc::Query => {
                                let e = i64::try_from(expires).unwrap();
                                (checksum_header, s3, time + skew.min(e - 1))
                            }
                        };
                        Spec {
                            method,
                            host: host.to_owned(),
                            path,
                            query,
                            headers,
                            body,
                            service,
                            region,
                            region_set,
                            alg,
                            loc,
                            token,
                            checksum_header,
                            unsigned_payload,
                            streaming: false,
                            time,
                            now,
                            expires,
                        }
                    },
                )
        })
}

fn iso(unix: i64) -> String {
    AmzTime::from_unix(unix).iso().to_owned()
}

/// Strict percent-encoding (everything but RFC 3986 unreserved), for query values.
fn q_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Replaces the raw value of query parameter `key` (raw key) with `f(raw value)`.
fn map_query_param(query: &str, key: &str, mut f: impl FnMut(&str) -> String) -> String {
    query
        .split('&')
        .map(|piece| match piece.split_once('=') {
            Some((k, v)) if k == key => format!("{k}={}", f(v)),
            _ => piece.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).unwrap());
}

/// Replaces the caller's part of a signed request's query (the signer appends its
/// presign parameters after it).
fn with_user_query(signed: &Signed, spec: &Spec, user_query: &str) -> String {
    let rest = &signed.query[spec.query.len()..];
    if spec.query.is_empty() && !rest.is_empty() && !user_query.is_empty() {
        format!("{user_query}&{rest}")
    } else {
        format!("{user_query}{rest}")
    }
}

/// Replaces the caller's headers (host and the custom ones) of a signed request.
fn with_user_headers(signed: &Signed, spec: &Spec) -> HeaderMap {
    let mut headers = signed.headers.clone();
    headers.remove("host");
    for name in HEADER_NAMES {
        headers.remove(name);
    }
    for (name, value) in &spec.header_map() {
        headers.append(name.clone(), value.clone());
    }
    headers
}

// ---------------------------------------------------------------------------------------
// 1. Requests signed by aws-sigv4 verify
// ---------------------------------------------------------------------------------------

fn check_verified(spec: &Spec, v: &Verified) -> Result<(), TestCaseError> {
    prop_assert_eq!(v.access_key_id(), AKID);
    prop_assert_eq!(
        v.algorithm,
        if spec.alg == Alg::V4 {
            Algorithm::V4
        } else {
            Algorithm::V4a
        }
    );
    prop_assert_eq!(
        v.location,
        if spec.loc == Loc::Header {
            Location::Header
        } else {
            Location::Query
        }
    );
    prop_assert_eq!(v.time.unix(), spec.time);
    prop_assert_eq!(v.service(), spec.service);
    match spec.alg {
        Alg::V4 => {
            prop_assert_eq!(v.region(), Some(spec.region));
            prop_assert_eq!(v.region_set(), None);
        }
        Alg::V4a => {
            prop_assert_eq!(v.region(), None);
            prop_assert_eq!(v.region_set(), Some(spec.region_set));
        }
    }
    prop_assert_eq!(v.has_session_token, spec.token.is_some());
    prop_assert!(v.signed_headers().any(|h| h == "host"));
    for (name, _) in &spec.headers {
        if *name != "user-agent" {
            prop_assert!(
                v.signed_headers().any(|h| h == *name),
                "{} not signed",
                name
            );
        }
    }
    match (&v.payload, spec.unsigned_payload) {
        (Payload::Signed(hash), false) => {
            let want: [u8; 32] = Sha256::digest(&spec.body).into();
            prop_assert_eq!(*hash, want);
        }
        (Payload::Unsigned, true) => {}
        (other, unsigned) => {
            return Err(TestCaseError::fail(format!(
                "payload {other:?} for unsigned_payload={unsigned}"
            )));
        }
    }
    Ok(())
}

fn signed_request_verifies(spec: &Spec, hashed_body: bool) -> Result<(), TestCaseError> {
    let signed = sign_spec(spec);
    let v = expect_ok(
        verify(spec, &signed, hashed_body),
        "aws-sigv4 signed request",
    )?;
    check_verified(spec, &v)
}

proptest! {
    #![proptest_config(config(128))]

    /// SigV4, header and presigned, every service, token or not, checksum header or not.
    #[test]
    fn sigv4_signed_requests_verify(spec in spec_strategy(0), hashed_body in any::<bool>()) {
        signed_request_verifies(&spec, hashed_body)?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// SigV4a, header and presigned, region sets `us-east-1`, `*`, `us-*` and a list.
    #[test]
    fn sigv4a_signed_requests_verify(spec in spec_strategy(8), hashed_body in any::<bool>()) {
        signed_request_verifies(&spec, hashed_body)?;
    }

    /// A header the signer leaves out of SignedHeaders (`user-agent`) may change freely.
    #[test]
    fn unsigned_header_change_is_accepted(spec in spec_strategy(2), value in header_value()) {
        let mut signed = sign_spec(&spec);
        signed.headers.append("user-agent", HeaderValue::from_str(&value).unwrap());
        let v = expect_ok(verify(&spec, &signed, false), "extra user-agent")?;
        prop_assert!(!v.signed_headers().any(|h| h == "user-agent"));
    }
}

// ---------------------------------------------------------------------------------------
// 2. Any single change to a signed part is rejected with the right code
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum PathEdit {
    Replace(Index, char),
    Insert(Index, char),
    Delete(Index),
}

/// Characters a mutation may put in a path: legal in a URI path and never a `%`, so an
/// S3 path (which is signed as sent) stays one that both signers encode alike.
const PATH_CHARS: [char; 12] = ['a', 'Z', '0', '-', '~', '.', '_', '!', '@', ':', '=', '/'];

/// Byte positions where an edit may happen: past the leading `/`, and not in or right
/// after a `%XX` escape (editing those could leave a stray `%`, see `path_edit`).
fn editable_positions(path: &str) -> Vec<usize> {
    let b = path.as_bytes();
    path.char_indices()
        .map(|(i, _)| i)
        .filter(|&i| i >= 1)
        .filter(|&i| b[i] != b'%' && !(i >= 1 && b[i - 1] == b'%') && !(i >= 2 && b[i - 2] == b'%'))
        .collect()
}

fn path_edit(path: &str, edit: &PathEdit) -> Option<String> {
    let positions = editable_positions(path);
    let mut out = path.to_owned();
    match edit {
        PathEdit::Replace(at, c) => {
            let i = *positions.get(at.index(positions.len().max(1)))?;
            let old = out[i..].chars().next()?;
            if old == *c {
                return None;
            }
            out.replace_range(i..i + old.len_utf8(), &c.to_string());
        }
        PathEdit::Insert(at, c) => {
            // Inserting at the end is also fine.
            let mut ends = positions.clone();
            ends.push(path.len());
            let i = ends[at.index(ends.len())];
            out.insert(i, *c);
        }
        PathEdit::Delete(at) => {
            let i = *positions.get(at.index(positions.len().max(1)))?;
            let old = out[i..].chars().next()?;
            out.replace_range(i..i + old.len_utf8(), "");
        }
    }
    Some(out)
}

fn path_edit_strategy() -> impl Strategy<Value = PathEdit> {
    let c = select(PATH_CHARS.to_vec());
    prop_oneof![
        (any::<Index>(), c.clone()).prop_map(|(i, c)| PathEdit::Replace(i, c)),
        (any::<Index>(), c).prop_map(|(i, c)| PathEdit::Insert(i, c)),
        any::<Index>().prop_map(PathEdit::Delete),
    ]
}

#[derive(Clone, Debug)]
enum QueryEdit {
    /// Appends `x` to a parameter's value (`=x` to a key without `=`).
    AppendToValue(Index),
    /// Replaces a parameter's value.
    ReplaceValue(Index, String),
    /// Drops a parameter.
    Remove(Index),
    /// Adds a parameter.
    Add(String),
}

fn query_edit_strategy() -> impl Strategy<Value = QueryEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(QueryEdit::AppendToValue),
        2 => (any::<Index>(), query_value()).prop_map(|(i, v)| QueryEdit::ReplaceValue(i, v)),
        1 => any::<Index>().prop_map(QueryEdit::Remove),
        1 => query_value().prop_map(|v| QueryEdit::Add(format!("new={v}"))),
    ]
}

fn query_edit(query: &str, edit: &QueryEdit) -> Option<String> {
    let mut pieces: Vec<String> = if query.is_empty() {
        Vec::new()
    } else {
        query.split('&').map(str::to_owned).collect()
    };
    let non_empty: Vec<usize> = (0..pieces.len())
        .filter(|&i| !pieces[i].is_empty())
        .collect();
    let pick = |at: &Index| non_empty.get(at.index(non_empty.len().max(1))).copied();
    match edit {
        QueryEdit::AppendToValue(at) => {
            let i = pick(at)?;
            let p = &mut pieces[i];
            p.push_str(if p.contains('=') { "x" } else { "=x" });
        }
        QueryEdit::ReplaceValue(at, v) => {
            let i = pick(at)?;
            let key = pieces[i]
                .split_once('=')
                .map_or(pieces[i].as_str(), |(k, _)| k)
                .to_owned();
            pieces[i] = format!("{key}={v}");
        }
        QueryEdit::Remove(at) => {
            let i = pick(at)?;
            pieces.remove(i);
        }
        QueryEdit::Add(p) => pieces.push(p.clone()),
    }
    let q = pieces.join("&");
    Some(if q.bytes().all(|b| b == b'&') {
        String::new()
    } else {
        q
    })
}

#[derive(Clone, Debug)]
enum HeaderEdit {
    /// Appends a character to one value of a signed header.
    Append(Index, char),
    /// Changes one character of one value.
    Replace(Index, Index, char),
    /// Inserts a space into one value.
    InsertSpace(Index, Index),
    /// Adds another value under an existing signed name.
    AddValue(Index, String),
    /// Drops one of several values of a repeated header.
    DropRepeat(Index),
    /// Swaps two values of a repeated header.
    Swap(Index),
}

fn header_edit_strategy() -> impl Strategy<Value = HeaderEdit> {
    let c = prop::char::range('!', '~');
    prop_oneof![
        (any::<Index>(), c.clone()).prop_map(|(i, c)| HeaderEdit::Append(i, c)),
        (any::<Index>(), any::<Index>(), c).prop_map(|(i, j, c)| HeaderEdit::Replace(i, j, c)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| HeaderEdit::InsertSpace(i, j)),
        (any::<Index>(), header_value()).prop_map(|(i, v)| HeaderEdit::AddValue(i, v)),
        any::<Index>().prop_map(HeaderEdit::DropRepeat),
        any::<Index>().prop_map(HeaderEdit::Swap),
    ]
}

/// Applies `edit` to the spec's signed headers; `host` is one of them (stored at the
/// front as a pseudo entry).
fn header_edit(spec: &Spec, edit: &HeaderEdit) -> Option<(Vec<(&'static str, String)>, String)> {
    let mut all: Vec<(&'static str, String)> = vec![("host", spec.host.clone())];
    all.extend(
        spec.headers
            .iter()
            .filter(|(n, _)| *n != "user-agent")
            .cloned(),
    );
    let indices_of = |all: &[(&'static str, String)], name: &str| -> Vec<usize> {
        (0..all.len()).filter(|&i| all[i].0 == name).collect()
    };
    match edit {
        HeaderEdit::Append(at, c) => {
            let i = at.index(all.len());
            all[i].1.push(*c);
        }
        HeaderEdit::Replace(at, pos, c) => {
            let i = at.index(all.len());
            let v = &mut all[i].1;
            if v.is_empty() {
                return None;
            }
            let p = pos.index(v.len());
            v.replace_range(p..=p, &c.to_string());
        }
        HeaderEdit::InsertSpace(at, pos) => {
            let i = at.index(all.len());
            let v = &mut all[i].1;
            let p = pos.index(v.len() + 1);
            v.insert(p, ' ');
        }
        HeaderEdit::AddValue(at, value) => {
            let i = at.index(all.len());
            let name = all[i].0;
            all.push((name, value.clone()));
        }
        HeaderEdit::DropRepeat(at) => {
            let i = at.index(all.len());
            if indices_of(&all, all[i].0).len() < 2 {
                return None;
            }
            all.remove(i);
        }
        HeaderEdit::Swap(at) => {
            let i = at.index(all.len());
            let same = indices_of(&all, all[i].0);
            let j = *same.iter().find(|&&j| j != i)?;
            let (a, b) = (all[i].1.clone(), all[j].1.clone());
            all[i].1 = b;
            all[j].1 = a;
        }
    }
    // `host` must stay a single value the signer can sign (it is a static header here).
    let hosts: Vec<String> = all
        .iter()
        .filter(|(n, _)| *n == "host")
        .map(|(_, v)| v.clone())
        .collect();
    if hosts.len() != 1 {
        return None;
    }
    let host = hosts[0].clone();
    let mut headers: Vec<(&'static str, String)> =
        all.into_iter().filter(|(n, _)| *n != "host").collect();
    headers.extend(
        spec.headers
            .iter()
            .filter(|(n, _)| *n == "user-agent")
            .cloned(),
    );
    Some((headers, host))
}

#[derive(Clone, Debug)]
enum BodyEdit {
    Flip(Index, u8),
    Append(u8),
    Truncate(Index),
}

fn body_edit(body: &[u8], edit: &BodyEdit) -> Vec<u8> {
    let mut out = body.to_vec();
    match edit {
        BodyEdit::Flip(at, x) if !out.is_empty() => {
            let i = at.index(out.len());
            out[i] ^= x | 1;
        }
        BodyEdit::Truncate(at) if !out.is_empty() => out.truncate(at.index(out.len())),
        BodyEdit::Flip(_, x) | BodyEdit::Append(x) => out.push(*x),
        BodyEdit::Truncate(_) => out.push(0),
    }
    out
}

fn body_edit_strategy() -> impl Strategy<Value = BodyEdit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, x)| BodyEdit::Flip(i, x)),
        any::<u8>().prop_map(BodyEdit::Append),
        any::<Index>().prop_map(BodyEdit::Truncate),
    ]
}

fn other<T: Copy + PartialEq>(values: &[T], current: T, pick: &Index) -> T {
    let others: Vec<T> = values.iter().copied().filter(|v| *v != current).collect();
    others[pick.index(others.len())]
}

proptest! {
    #![proptest_config(config(96))]

    /// The method -> SignatureDoesNotMatch.
    #[test]
    fn method_change_is_rejected(spec in spec_strategy(2), pick in any::<Index>()) {
        let mut signed = sign_spec(&spec);
        signed.method = other(&METHODS, spec.method, &pick).to_owned();
        expect_code(verify(&spec, &signed, false), Code::SignatureDoesNotMatch, "method")?;
    }

    /// A character of the path -> SignatureDoesNotMatch (unless the change normalizes away,
    /// as `aws-sigv4` decides).
    #[test]
    fn path_change_is_rejected(spec in spec_strategy(2), edit in path_edit_strategy()) {
        let mutated = path_edit(&spec.path, &edit);
        prop_assume!(mutated.is_some());
        let mut changed = spec.clone();
        changed.path = mutated.unwrap();
        let (before, after) = (fingerprint(&spec), fingerprint(&changed));
        prop_assume!(after.is_some() && before != after, "no-op path change");
        let mut signed = sign_spec(&spec);
        signed.path = changed.path.clone();
        expect_code(verify(&spec, &signed, false), Code::SignatureDoesNotMatch, "path")?;
    }

    /// A query parameter (value changed, dropped or added) -> SignatureDoesNotMatch.
    #[test]
    fn query_change_is_rejected(spec in spec_strategy(2), edit in query_edit_strategy()) {
        let mutated = query_edit(&spec.query, &edit);
        prop_assume!(mutated.is_some());
        let mut changed = spec.clone();
        changed.query = mutated.unwrap();
        let (before, after) = (fingerprint(&spec), fingerprint(&changed));
        prop_assume!(after.is_some() && before != after, "no-op query change");
        let mut signed = sign_spec(&spec);
        signed.query = with_user_query(&signed, &spec, &changed.query);
        expect_code(verify(&spec, &signed, false), Code::SignatureDoesNotMatch, "query")?;
    }

    /// A signed header's value (or values) -> SignatureDoesNotMatch.
    #[test]
    fn signed_header_change_is_rejected(spec in spec_strategy(2), edit in header_edit_strategy()) {
        let mutated = header_edit(&spec, &edit);
        prop_assume!(mutated.is_some());
        let (headers, host) = mutated.unwrap();
        let mut changed = spec.clone();
        changed.headers = headers;
        changed.host = host;
        let (before, after) = (fingerprint(&spec), fingerprint(&changed));
        prop_assume!(after.is_some() && before != after, "no-op header change");
        let mut signed = sign_spec(&spec);
        signed.headers = with_user_headers(&signed, &changed);
        expect_code(verify(&spec, &signed, false), Code::SignatureDoesNotMatch, "header")?;
    }

    /// A signed header taken away -> IncompleteSignature (SignedHeaders names a header the
    /// request lacks).
    #[test]
    fn missing_signed_header_is_rejected(spec in spec_strategy(2), pick in any::<Index>()) {
        let signed = sign_spec(&spec);
        let mut names: Vec<&str> = vec!["host"];
        names.extend(spec.headers.iter().map(|(n, _)| *n).filter(|n| *n != "user-agent"));
        let name = names[pick.index(names.len())];
        let mut changed = signed.clone();
        changed.headers.remove(name);
        expect_code(verify(&spec, &changed, false), Code::IncompleteSignature, "missing header")?;
    }

    /// A byte of the body: XAmzContentSHA256Mismatch when x-amz-content-sha256 carries the
    /// hash, SignatureDoesNotMatch when the verifier hashes the body itself, accepted when
    /// the payload is unsigned (and the caller may send that).
    #[test]
    fn body_change_is_rejected(spec in spec_strategy(2), edit in body_edit_strategy(), hashed_body in any::<bool>()) {
        let mut signed = sign_spec(&spec);
        signed.body = body_edit(&spec.body, &edit);
        let secret = Secret::from(SECRET);
        let result = verify_with(&VERIFIER, &signed, hashed_body, &credential(&secret, true), spec.now);
        if spec.unsigned_payload {
            let v = expect_ok(result, "body change under UNSIGNED-PAYLOAD")?;
            prop_assert!(matches!(v.payload, Payload::Unsigned));
        } else if spec.loc == Loc::Header && spec.checksum_header {
            expect_code(result, Code::XAmzContentSHA256Mismatch, "body with x-amz-content-sha256")?;
        } else {
            expect_code(result, Code::SignatureDoesNotMatch, "body without x-amz-content-sha256")?;
        }
    }

    /// The request time shifted by one second, still within the window ->
    /// SignatureDoesNotMatch.
    #[test]
    fn date_change_is_rejected(spec in spec_strategy(2), later in any::<bool>()) {
        let mut signed = sign_spec(&spec);
        let shifted = iso(if later { spec.time + 1 } else { spec.time - 1 });
        match spec.loc {
            Loc::Header => set_header(&mut signed.headers, "x-amz-date", &shifted),
            Loc::Query => signed.query = map_query_param(&signed.query, "X-Amz-Date", |_| shifted.clone()),
        }
        // `spec.now` is at most `time + expires - 1`, so one second earlier is still in
        // a presigned URL's window.
        expect_code(verify(&spec, &signed, false), Code::SignatureDoesNotMatch, "x-amz-date")?;
    }

    /// The credential scope moved to another accepted region, service or (SigV4a)
    /// region set -> SignatureDoesNotMatch.
    #[test]
    fn scope_change_is_rejected(spec in spec_strategy(3), which in 0u8..2, pick in any::<Index>()) {
        let mut signed = sign_spec(&spec);
        let (old_tail, new_tail, new_region_set) = match (spec.alg, which) {
            (Alg::V4, 0) => {
                let r = other(&REGIONS, spec.region, &pick);
                (format!("/{}/{}/aws4_request", spec.region, spec.service), format!("/{r}/{}/aws4_request", spec.service), None)
            }
            (Alg::V4, _) => {
                let s = other(&SERVICES, spec.service, &pick);
                (format!("/{}/{}/aws4_request", spec.region, spec.service), format!("/{}/{s}/aws4_request", spec.region), None)
            }
            (Alg::V4a, 0) => {
                let s = other(&SERVICES, spec.service, &pick);
                (format!("/{}/aws4_request", spec.service), format!("/{s}/aws4_request"), None)
            }
            (Alg::V4a, _) => (String::new(), String::new(), Some(other(&REGION_SETS, spec.region_set, &pick))),
        };
        match (spec.loc, new_region_set) {
            (Loc::Header, None) => {
                let auth = signed.header("authorization");
                prop_assert!(auth.contains(&old_tail), "{}", auth);
                set_header(&mut signed.headers, "authorization", &auth.replace(&old_tail, &new_tail));
            }
            (Loc::Query, None) => {
                signed.query = map_query_param(&signed.query, "X-Amz-Credential", |v| {
                    let decoded = v.replace("%2F", "/");
                    assert!(decoded.contains(&old_tail), "{decoded}");
                    decoded.replace(&old_tail, &new_tail).replace('/', "%2F")
                });
            }
            (Loc::Header, Some(set)) => set_header(&mut signed.headers, "x-amz-region-set", set),
            (Loc::Query, Some(set)) => {
                signed.query = map_query_param(&signed.query, "X-Amz-Region-Set", |_| q_encode(set));
            }
        }
        expect_code(verify(&spec, &signed, false), Code::SignatureDoesNotMatch, "scope")?;
    }

    /// The session token changed, dropped or added -> SignatureDoesNotMatch, or
    /// IncompleteSignature where the header no longer matches SignedHeaders.
    #[test]
    fn session_token_change_is_rejected(spec in spec_strategy(2), token in token_strategy(), op in 0u8..3) {
        let mut spec = spec;
        if op < 2 && spec.token.is_none() {
            spec.token = Some(token.clone());
        }
        if op == 2 {
            spec.token = None;
        }
        let mut signed = sign_spec(&spec);
        let want = match (op, spec.loc) {
            // Changed.
            (0, Loc::Header) => {
                let t = signed.header("x-amz-security-token");
                set_header(&mut signed.headers, "x-amz-security-token", &format!("{t}A"));
                Code::SignatureDoesNotMatch
            }
            (0, Loc::Query) => {
                signed.query = map_query_param(&signed.query, "X-Amz-Security-Token", |v| format!("{v}A"));
                Code::SignatureDoesNotMatch
            }
            // Dropped: the header is still named in SignedHeaders; the query parameter was
            // part of the canonical query.
            (1, Loc::Header) => {
                signed.headers.remove("x-amz-security-token");
                Code::IncompleteSignature
            }
            (1, Loc::Query) => {
                let q = signed
                    .query
                    .split('&')
                    .filter(|p| !p.starts_with("X-Amz-Security-Token="))
                    .collect::<Vec<_>>()
                    .join("&");
                signed.query = q;
                Code::SignatureDoesNotMatch
            }
            // Added to a request signed without one: an unsigned token header, or a query
            // parameter outside the signed canonical query.
            (_, Loc::Header) => {
                set_header(&mut signed.headers, "x-amz-security-token", &token);
                Code::IncompleteSignature
            }
            (_, Loc::Query) => {
                signed.query.push_str(&format!("&X-Amz-Security-Token={}", q_encode(&token)));
                Code::SignatureDoesNotMatch
            }
        };
        expect_code(verify(&spec, &signed, false), want, "session token")?;
    }

    /// The wrong secret -> SignatureDoesNotMatch.
    #[test]
    fn wrong_secret_is_rejected(spec in spec_strategy(2), secret in "[A-Za-z0-9/+]{1,48}") {
        prop_assume!(secret != SECRET);
        let signed = sign_spec(&spec);
        let secret = Secret::new(secret);
        let result = verify_with(&VERIFIER, &signed, false, &credential(&secret, true), spec.now);
        expect_code(result, Code::SignatureDoesNotMatch, "secret")?;
    }

    /// Outside the clock-skew window -> RequestTimeTooSkewed; a presigned URL past its
    /// expiry -> RequestExpired.
    #[test]
    fn time_window_is_enforced(spec in spec_strategy(2), by in 301i64..400_000, later in any::<bool>()) {
        let signed = sign_spec(&spec);
        let secret = Secret::from(SECRET);
        let cred = credential(&secret, true);
        let expires = i64::try_from(spec.expires).unwrap();
        match (spec.loc, later) {
            (Loc::Header, true) => expect_code(
                verify_with(&VERIFIER, &signed, false, &cred, spec.time + by),
                Code::RequestTimeTooSkewed,
                "server clock ahead",
            )?,
            (_, false) => expect_code(
                verify_with(&VERIFIER, &signed, false, &cred, spec.time - by),
                Code::RequestTimeTooSkewed,
                "server clock behind",
            )?,
            (Loc::Query, true) => {
                let now = spec.time + expires + (by - 300);
                expect_code(verify_with(&VERIFIER, &signed, false, &cred, now), Code::RequestExpired, "expired URL")?;
                // The last second of the window is still good.
                expect_ok(verify_with(&VERIFIER, &signed, false, &cred, spec.time + expires), "last second")?;
            }
        }
    }

    /// Session credentials with expires_at <= now -> ExpiredToken; later ones verify.
    #[test]
    fn expired_credentials_are_rejected(spec in spec_strategy(2), ago in 0i64..100_000) {
        let signed = sign_spec(&spec);
        let secret = Secret::from(SECRET);
        let expired = Credential { secret: &secret, expires_at: Some(spec.now - ago), allow_unsigned_payload: true };
        expect_code(verify_with(&VERIFIER, &signed, false, &expired, spec.now), Code::ExpiredToken, "expired")?;
        let valid = Credential { secret: &secret, expires_at: Some(spec.now + 1), allow_unsigned_payload: true };
        expect_ok(verify_with(&VERIFIER, &signed, false, &valid, spec.now), "valid until next second")?;
    }

    /// UNSIGNED-PAYLOAD with a body from a caller not allowed to -> AccessDenied; with an
    /// empty body, or when allowed, it verifies.
    #[test]
    fn unsigned_payload_needs_permission(spec in spec_strategy(2), byte in any::<u8>(), hashed_body in any::<bool>()) {
        let mut spec = spec;
        if spec.loc == Loc::Query && !spec.s3() {
            spec.loc = Loc::Header;
        }
        if spec.loc == Loc::Header {
            spec.checksum_header = true;
        }
        spec.unsigned_payload = true;
        if spec.body.is_empty() {
            spec.body.push(byte);
        }
        let signed = sign_spec(&spec);
        let secret = Secret::from(SECRET);
        expect_code(
            verify_with(&VERIFIER, &signed, hashed_body, &credential(&secret, false), spec.now),
            Code::AccessDenied,
            "unsigned payload not allowed",
        )?;
        let v = expect_ok(verify_with(&VERIFIER, &signed, hashed_body, &credential(&secret, true), spec.now), "allowed")?;
        prop_assert!(matches!(v.payload, Payload::Unsigned));

        spec.body.clear();
        let signed = sign_spec(&spec);
        let v = expect_ok(
            verify_with(&VERIFIER, &signed, hashed_body, &credential(&secret, false), spec.now),
            "empty body",
        )?;
        prop_assert!(matches!(v.payload, Payload::Unsigned));
    }
}

// ---------------------------------------------------------------------------------------
// Chunk-signed bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
// ---------------------------------------------------------------------------------------

/// A header-signed SigV4 request whose body is chunk-signed: the request is signed by
/// `aws-sigv4` over `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, and the chunks by `aws-sigv4`'s
/// SigV4 key derivation and HMAC over the chunk string to sign.
fn streaming_spec(mut spec: Spec, decoded_length: bool) -> Spec {
    spec.alg = Alg::V4;
    spec.loc = Loc::Header;
    spec.streaming = true;
    spec.checksum_header = true;
    spec.unsigned_payload = false;
    if decoded_length {
        spec.headers
            .push(("x-amz-decoded-content-length", spec.body.len().to_string()));
    }
    spec
}

/// Cuts `data` into chunks of `sizes` (the rest in one more chunk), then the final empty
/// chunk; signs each, chained from `seed` (the request's signature).
fn chunk_body(spec: &Spec, seed: &str, sizes: &[usize]) -> Vec<u8> {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(spec.time).unwrap());
    let key = v4::generate_signing_key(SECRET, time, spec.region, spec.service);
    let iso = iso(spec.time);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        &iso[..8],
        spec.region,
        spec.service
    );
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest = &spec.body[..];
    for &n in sizes {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    if !rest.is_empty() {
        chunks.push(rest);
    }
    chunks.push(&[]);
    let mut out = Vec::new();
    let mut previous = seed.to_owned();
    for chunk in chunks {
        let hash = gateway::sigv4::hex(&Sha256::digest(chunk));
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{iso}\n{scope}\n{previous}\n{}\n{hash}",
            gateway::sigv4::EMPTY_SHA256_HEX
        );
        let signature = v4::calculate_signature(&key, sts.as_bytes());
        out.extend_from_slice(
            format!("{:x};chunk-signature={signature}\r\n", chunk.len()).as_bytes(),
        );
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        previous = signature;
    }
    out
}

fn sign_streaming(spec: &Spec, sizes: &[usize]) -> Signed {
    let mut signed = sign_spec(spec);
    signed.body = chunk_body(spec, &signed.signature, sizes);
    signed
}

/// Feeds `body` to a streaming decoder in pieces of `splits` (then the rest).
fn stream(verified: Verified, body: &[u8], splits: &[usize]) -> Result<Vec<u8>, Rejection> {
    let Payload::Streaming(mut decoder) = verified.payload else {
        return Err(Rejection::new(
            Code::IncompleteBody,
            format!("not a streaming payload: {:?}", verified.payload),
        ));
    };
    let mut out = Vec::new();
    let mut rest = body;
    for &n in splits {
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        decoder.feed(piece, &mut out)?;
    }
    decoder.feed(rest, &mut out)?;
    let n = decoder.finish()?;
    assert_eq!(usize::try_from(n).unwrap(), out.len());
    Ok(out)
}

fn streaming_request(signed: &Signed) -> Request<'_> {
    Request {
        body: Body::Streaming,
        ..signed.request(false)
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..700, 0..5)
}

proptest! {
    #![proptest_config(config(64))]

    /// A chunk-signed body decodes to the data, given whole or streamed in pieces; any
    /// byte changed is rejected (or, if it changes nothing the signatures cover, such as
    /// the case of a hex digit, yields the same data).
    #[test]
    fn chunk_signed_bodies_verify(
        spec in spec_strategy(0),
        decoded_length in any::<bool>(),
        sizes in chunk_sizes(),
        splits in prop::collection::vec(0usize..300, 0..8),
        flip in (any::<Index>(), 1u8..=255),
    ) {
        let spec = streaming_spec(spec, decoded_length);
        let signed = sign_streaming(&spec, &sizes);
        let secret = Secret::from(SECRET);
        let cred = credential(&secret, false);

        let v = expect_ok(verify_with(&VERIFIER, &signed, false, &cred, spec.now), "chunk-signed, whole")?;
        match &v.payload {
            Payload::Decoded(data) => prop_assert_eq!(data, &spec.body),
            other => return Err(TestCaseError::fail(format!("payload {other:?}"))),
        }
        let req = streaming_request(&signed);
        let auth = VERIFIER.parse(&req, spec.now).unwrap();
        let v = expect_ok(VERIFIER.verify(&req, &auth, &cred, spec.now), "chunk-signed, streamed")?;
        let data = stream(v, &signed.body, &splits).map_err(|r| TestCaseError::fail(reject_text(&r)))?;
        prop_assert_eq!(&data, &spec.body);

        // One byte changed anywhere in the chunked body.
        let mut altered = signed.clone();
        let i = flip.0.index(altered.body.len());
        altered.body[i] ^= flip.1;
        let req = streaming_request(&altered);
        let v = VERIFIER.verify(&req, &auth, &cred, spec.now).unwrap();
        match stream(v, &altered.body, &splits) {
            Err(_) => {}
            Ok(data) => prop_assert_eq!(&data, &spec.body, "altered body released altered data"),
        }
        match verify_with(&VERIFIER, &altered, false, &cred, spec.now) {
            Err(_) => {}
            Ok(Verified { payload: Payload::Decoded(data), .. }) => {
                prop_assert_eq!(&data, &spec.body, "altered body released altered data");
            }
            Ok(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    /// A byte of a chunk's data changed -> SignatureDoesNotMatch; a wrong
    /// x-amz-decoded-content-length (signed) -> IncompleteBody.
    #[test]
    fn chunk_data_change_is_rejected(
        spec in spec_strategy(0),
        sizes in chunk_sizes(),
        flip in (any::<Index>(), 1u8..=255),
        delta in prop_oneof![1i64..1000, -1000i64..0],
    ) {
        let mut spec = streaming_spec(spec, false);
        if spec.body.is_empty() {
            spec.body.push(b'x');
        }
        let secret = Secret::from(SECRET);
        let cred = credential(&secret, false);
        let signed = sign_streaming(&spec, &sizes);

        // Data bytes are those not inside a chunk's header line or its trailing CRLF:
        // walk the framing to find them.
        let mut data_positions = Vec::new();
        let mut pos = 0;
        let body = &signed.body;
        while pos < body.len() {
            let line_end = pos + body[pos..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size_hex = std::str::from_utf8(&body[pos..line_end]).unwrap().split(';').next().unwrap().to_owned();
            let size = usize::from_str_radix(&size_hex, 16).unwrap();
            data_positions.extend(line_end + 2..line_end + 2 + size);
            pos = line_end + 2 + size + 2;
        }
        prop_assert_eq!(data_positions.len(), spec.body.len());
        let mut altered = signed.clone();
        let i = data_positions[flip.0.index(data_positions.len())];
        altered.body[i] ^= flip.1;
        expect_code(verify_with(&VERIFIER, &altered, false, &cred, spec.now), Code::SignatureDoesNotMatch, "chunk data")?;

        let len = i64::try_from(spec.body.len()).unwrap() + delta;
        prop_assume!(len >= 0);
        spec.headers.push(("x-amz-decoded-content-length", len.to_string()));
        let signed = sign_streaming(&spec, &sizes);
        expect_code(verify_with(&VERIFIER, &signed, false, &cred, spec.now), Code::IncompleteBody, "decoded length")?;
    }
}

// ---------------------------------------------------------------------------------------
// 3. The verifier never panics
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum BodyKind {
    Bytes(Vec<u8>),
    Sha256([u8; 32]),
    Streaming,
}

/// A request for the no-panic properties: owned parts.
#[derive(Clone, Debug)]
struct Raw {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: BodyKind,
}

#[derive(Clone, Debug)]
struct RawCred {
    secret: String,
    expires_at: Option<i64>,
    allow_unsigned_payload: bool,
    now: i64,
    /// Stream the body to a returned decoder in pieces of these sizes.
    splits: Vec<usize>,
}

/// Runs both stages on both verifiers, feeds any streaming decoder, and formats every
/// rejection: nothing may panic. A body given as bytes is also tried as a stream of them.
fn exercise(raw: &Raw, cred: &RawCred) {
    let secret = Secret::new(cred.secret.clone());
    let credential = Credential {
        secret: &secret,
        expires_at: cred.expires_at,
        allow_unsigned_payload: cred.allow_unsigned_payload,
    };
    let (body, streamed): (Body<'_>, &[u8]) = match &raw.body {
        BodyKind::Bytes(b) => (Body::Bytes(b), b),
        BodyKind::Sha256(h) => (Body::Sha256(*h), &[]),
        BodyKind::Streaming => (Body::Streaming, &[]),
    };
    let req = Request {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &raw.headers,
        body,
    };
    for verifier in [&*VERIFIER, &*TIGHT_VERIFIER] {
        for req in [
            req,
            Request {
                body: Body::Streaming,
                ..req
            },
        ] {
            let result = verifier.parse(&req, cred.now).and_then(|auth| {
                let _ = (
                    auth.access_key_id(),
                    auth.session_token(),
                    auth.scope(),
                    auth.region(),
                    auth.region_set(),
                );
                let _ = (
                    auth.algorithm(),
                    auth.location(),
                    auth.time(),
                    auth.service(),
                    auth.signed_headers().count(),
                );
                verifier.verify(&req, &auth, &credential, cred.now)
            });
            match result {
                Err(r) => {
                    let _ = (r.to_string(), r.status(), r.signature_detail());
                }
                Ok(Verified {
                    payload: Payload::Streaming(mut decoder),
                    ..
                }) => {
                    let mut out = Vec::new();
                    let mut rest = streamed;
                    for &n in &cred.splits {
                        let (piece, tail) = rest.split_at(n.min(rest.len()));
                        rest = tail;
                        if let Err(r) = decoder.feed(piece, &mut out) {
                            let _ = r.to_string();
                        }
                    }
                    let _ = decoder.feed(rest, &mut out);
                    let _ = (
                        decoder.finish(),
                        decoder.is_done(),
                        decoder.decoded_len(),
                        format!("{decoder:?}"),
                    );
                }
                Ok(v) => {
                    let _ = format!("{v:?}");
                }
            }
        }
    }
}

fn iso_near() -> impl Strategy<Value = String> {
    prop_oneof![
        (-400i64..400).prop_map(|d| iso(BASE_TIME + d)),
        strs(&[
            "20231114T221320Z",
            "20231114T2213Z",
            "20231314T221320Z",
            "20231114T246060Z",
            "2023111422132Z0",
            ""
        ]),
        "[0-9TZ]{14,17}",
    ]
}

fn hex_str() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-f]{64}", "[0-9a-fA-F]{0,170}", "3044022[0-9a-f]{130}"]
}

/// A value for the `Authorization` header: a (mostly) well-formed one with random parts,
/// or fragments strung together.
fn auth_value() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        6 => strs(&[
            "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "AWS4-HMAC-SHA256 ", " ", "Credential=", "AKIDEXAMPLE",
            "/", "20231114", "20231115", "us-east-1", "*", "svc", "s3", "aws4_request", ",", ", ", ",,",
            "SignedHeaders=", "host", ";", "host;x-amz-date", "x-amz-date", "Signature=", "=", "==", "\t",
            "Credential", "ሴ", "%2F",
        ]),
        1 => hex_str(),
        1 => "[ -~]{0,12}",
    ];
    let template = (
        strs(&["AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "AWS4-HMAC-SHA256  ", "aws4-hmac-sha256"]),
        strs(&["AKIDEXAMPLE", "", "AKID/EXTRA", "ሴ"]),
        strs(&["20231114", "20231115", "2023111", "abcdefgh", ""]),
        strs(&["us-east-1/", "", "*/", "us-*/", "eu-central-1/", "//"]),
        strs(&["svc", "s3", "execute-api", "nope", ""]),
        strs(&["aws4_request", "aws4_requesT", "", "aws4_request/x"]),
        strs(&[
            "host;x-amz-date",
            "host",
            "host;x-amz-content-sha256;x-amz-date",
            "x-amz-date;host",
            "host;host",
            "host;x-amz-date;x-amz-region-set",
            "host;x-amz-date;x-amz-security-token",
            "Host",
            "",
            ";",
            "host;missing",
        ]),
        hex_str(),
        strs(&[", ", ",", " , ", ",,", ", Foo=bar, "]),
    )
        .prop_map(|(alg, akid, date, region, service, term, sh, sig, sep)| {
            format!("{alg} Credential={akid}/{date}/{region}{service}/{term}{sep}SignedHeaders={sh}{sep}Signature={sig}")
        });
    prop_oneof![
        2 => template.prop_map(String::into_bytes),
        2 => prop::collection::vec(fragment, 0..14).prop_map(|v| v.concat().into_bytes()),
        1 => header_bytes(),
    ]
}

/// Bytes `HeaderValue::from_bytes` accepts.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..48,
    )
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => strs(&[
            "authorization", "x-amz-date", "date", "host", "x-amz-security-token", "x-amz-content-sha256",
            "x-amz-region-set", "x-amz-decoded-content-length", "content-type", "x-custom",
        ]),
        1 => "[a-z0-9!#$%&'*+.^_`|~-]{1,12}",
    ]
    .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
}

fn header_value_for(name: &HeaderName) -> BoxedStrategy<Vec<u8>> {
    match name.as_str() {
        "authorization" => auth_value().boxed(),
        "x-amz-date" => {
            prop_oneof![3 => iso_near().prop_map(String::into_bytes), 1 => header_bytes()].boxed()
        }
        "date" => prop_oneof![
            strs(&[
                "Tue, 14 Nov 2023 22:13:20 GMT",
                "Tue, 14 Nov 2023 22:13:2 GMT",
                "Tue, 14 Foo 2023 22:13:20 GMT"
            ]),
            iso_near(),
        ]
        .prop_map(String::into_bytes)
        .boxed(),
        "x-amz-content-sha256" => prop_oneof![
            strs(&[
                STREAMING,
                "UNSIGNED-PAYLOAD",
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
            ]),
            hex_str(),
        ]
        .prop_map(String::into_bytes)
        .boxed(),
        "x-amz-region-set" => strs(&[
            "us-east-1",
            "*",
            "us-*",
            "",
            ",",
            "*,*",
            "**",
            "us-east-1,",
            "u*1",
        ])
        .prop_map(String::into_bytes)
        .boxed(),
        "x-amz-decoded-content-length" => prop_oneof![
            (0u64..5000).prop_map(|n| n.to_string()),
            strs(&["", "-1", "18446744073709551616", " 7 ", "0x10"]),
        ]
        .prop_map(String::into_bytes)
        .boxed(),
        _ => header_bytes().boxed(),
    }
}

fn headers_raw() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec(
        header_name().prop_flat_map(|n| (Just(n.clone()), header_value_for(&n))),
        0..10,
    )
    .prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name, HeaderValue::from_bytes(&value).unwrap());
        }
        headers
    })
}

/// A presigned-looking query: X-Amz-* parameters (and others) with plausible and broken
/// values, raw or encoded.
fn presign_query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => strs(&[
            "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
            "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Region-Set",
        ]),
        1 => strs(&["X-Amz-%44ate", "x-amz-date", "foo", "", "X-Amz-Algorithm+", "%"]),
    ];
    let value = prop_oneof![
        4 => strs(&[
            "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fsvc%2Faws4_request",
            "AKIDEXAMPLE/20231114/us-east-1/svc/aws4_request", "AKIDEXAMPLE%2F20231114%2Fs3%2Faws4_request",
            "AKIDEXAMPLE%2F20231114%2F%2F%2F", "604800", "604801", "0", "1", "-1", "+1", "1e3", "99999999999999999999",
            "host", "host%3Bx-amz-date", "%", "%zz", "%FF", "%C3%28", "*", "%2A", "us-east-1", "",
        ]),
        1 => iso_near(),
        1 => hex_str(),
        1 => "[ -~]{0,10}",
        1 => any::<String>(),
    ];
    let piece = prop_oneof![
        6 => (key, value).prop_map(|(k, v)| format!("{k}={v}")),
        1 => "[a-zA-Z%=+]{0,6}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.join("&"))
}

fn random_raw() -> impl Strategy<Value = Raw> {
    let method = prop_oneof![4 => strs(&METHODS), 1 => "[A-Z]{0,8}", 1 => any::<String>()];
    let path = prop_oneof![
        3 => prop::collection::vec(strs(&["/", "..", ".", "//", "%", "%2F", "%zz", "ሴ", " ", "?", "a", "%E1%88", "+"]), 0..10)
            .prop_map(|v| v.concat()),
        1 => any::<String>(),
    ];
    let query = prop_oneof![3 => presign_query(), 1 => query_strategy(), 1 => any::<String>()];
    let body = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..256).prop_map(BodyKind::Bytes),
        1 => any::<[u8; 32]>().prop_map(BodyKind::Sha256),
        1 => Just(BodyKind::Streaming),
    ];
    (method, path, query, headers_raw(), body).prop_map(|(method, path, query, headers, body)| {
        Raw {
            method,
            path,
            query,
            headers,
            body,
        }
    })
}

fn raw_cred() -> impl Strategy<Value = RawCred> {
    (
        prop_oneof![3 => Just(SECRET.to_owned()), 1 => any::<String>()],
        proptest::option::of(BASE_TIME - 1000..BASE_TIME + 1000),
        any::<bool>(),
        prop_oneof![4 => (-400i64..400).prop_map(|d| BASE_TIME + d), 1 => any::<i64>()],
        prop::collection::vec(0usize..64, 0..8),
    )
        .prop_map(
            |(secret, expires_at, allow_unsigned_payload, now, splits)| RawCred {
                secret,
                expires_at,
                allow_unsigned_payload,
                now,
                splits,
            },
        )
}

/// An edit to a validly signed request, for near-miss fuzzing.
#[derive(Clone, Debug)]
enum Fuzz {
    /// Overwrites a byte of a header value.
    HeaderByte(HeaderName, Index, u8),
    /// Cuts a header value short.
    HeaderTruncate(HeaderName, Index),
    /// Inserts a fragment into a header value.
    HeaderInsert(HeaderName, Index, Vec<u8>),
    /// Repeats a header.
    HeaderDup(HeaderName),
    /// Removes a header.
    HeaderRemove(HeaderName),
    /// Sets a header to a value for its name.
    HeaderSet(HeaderName, Vec<u8>),
    /// Overwrites a character of the query.
    QueryChar(Index, char),
    /// Inserts a fragment into the query.
    QueryInsert(Index, String),
    /// Overwrites a character of the path.
    PathChar(Index, char),
    /// Replaces the body.
    Body(BodyKind),
    /// Overwrites a byte of the body.
    BodyByte(Index, u8),
    /// Cuts the body short.
    BodyTruncate(Index),
    /// Replaces the method.
    Method(String),
}

fn fuzz_target_header() -> impl Strategy<Value = HeaderName> {
    strs(&[
        "authorization",
        "x-amz-date",
        "host",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "x-amz-region-set",
        "x-amz-decoded-content-length",
        "x-custom",
        "date",
    ])
    .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
}

fn fuzz_strategy() -> impl Strategy<Value = Fuzz> {
    let byte = prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff];
    let query_fragment = prop_oneof![
        strs(&[
            "&",
            "&&",
            "=",
            "+",
            "%",
            "%2",
            "%zz",
            "&X-Amz-Date=20231114T221320Z",
            "&X-Amz-Signature=00",
            "&X-Amz-Expires=0",
            "ሴ"
        ]),
        presign_query(),
    ];
    let chunk_body = prop::collection::vec(
        prop_oneof![
            strs(&[
                "0;chunk-signature=",
                "400;chunk-signature=",
                "10;chunk-signature=",
                "\r\n",
                ";",
                "=",
                "ffffffffffffffffff;",
                "0\r\n\r\n",
                ";chunk-signature=",
            ])
            .prop_map(String::into_bytes),
            "[0-9a-f]{64}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..10,
    )
    .prop_map(|v| BodyKind::Bytes(v.concat()));
    prop_oneof![
        3 => (fuzz_target_header(), any::<Index>(), byte).prop_map(|(n, i, b)| Fuzz::HeaderByte(n, i, b)),
        1 => (fuzz_target_header(), any::<Index>()).prop_map(|(n, i)| Fuzz::HeaderTruncate(n, i)),
        2 => (fuzz_target_header(), any::<Index>(), auth_value()).prop_map(|(n, i, v)| Fuzz::HeaderInsert(n, i, v)),
        1 => fuzz_target_header().prop_map(Fuzz::HeaderDup),
        1 => fuzz_target_header().prop_map(Fuzz::HeaderRemove),
        2 => fuzz_target_header().prop_flat_map(|n| (Just(n.clone()), header_value_for(&n))).prop_map(|(n, v)| Fuzz::HeaderSet(n, v)),
        2 => (any::<Index>(), any::<char>()).prop_map(|(i, c)| Fuzz::QueryChar(i, c)),
        2 => (any::<Index>(), query_fragment).prop_map(|(i, f)| Fuzz::QueryInsert(i, f)),
        1 => (any::<Index>(), any::<char>()).prop_map(|(i, c)| Fuzz::PathChar(i, c)),
        2 => prop_oneof![
            chunk_body,
            any::<[u8; 32]>().prop_map(BodyKind::Sha256),
            Just(BodyKind::Streaming),
        ]
        .prop_map(Fuzz::Body),
        1 => prop_oneof![strs(&METHODS), any::<String>()].prop_map(Fuzz::Method),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Fuzz::BodyByte(i, b)),
        1 => any::<Index>().prop_map(Fuzz::BodyTruncate),
    ]
}

fn char_edit(s: &str, at: &Index, c: Option<char>, insert: Option<&str>) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let i = at.index(chars.len() + 1);
    if let Some(ins) = insert {
        let tail = chars.split_off(i);
        chars.extend(ins.chars());
        chars.extend(tail);
    } else if let Some(c) = c {
        if i < chars.len() {
            chars[i] = c;
        } else {
            chars.push(c);
        }
    }
    chars.into_iter().collect()
}

fn apply_fuzz(raw: &mut Raw, fuzz: &Fuzz) {
    let value = |raw: &Raw, n: &HeaderName| {
        raw.headers
            .get(n)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default()
    };
    let put = |raw: &mut Raw, n: &HeaderName, v: &[u8]| {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            raw.headers.insert(n.clone(), v);
        }
    };
    match fuzz {
        Fuzz::HeaderByte(n, at, b) => {
            let mut v = value(raw, n);
            if !v.is_empty() {
                let i = at.index(v.len());
                v[i] = *b;
            }
            put(raw, n, &v);
        }
        Fuzz::HeaderTruncate(n, at) => {
            let mut v = value(raw, n);
            v.truncate(at.index(v.len() + 1));
            put(raw, n, &v);
        }
        Fuzz::HeaderInsert(n, at, ins) => {
            let mut v = value(raw, n);
            let i = at.index(v.len() + 1);
            let tail = v.split_off(i);
            v.extend_from_slice(ins);
            v.extend_from_slice(&tail);
            put(raw, n, &v);
        }
        Fuzz::HeaderDup(n) => {
            if let Some(v) = raw.headers.get(n).cloned() {
                raw.headers.append(n.clone(), v);
            }
        }
        Fuzz::HeaderRemove(n) => {
            raw.headers.remove(n);
        }
        Fuzz::HeaderSet(n, v) => put(raw, n, v),
        Fuzz::QueryChar(at, c) => raw.query = char_edit(&raw.query, at, Some(*c), None),
        Fuzz::QueryInsert(at, f) => raw.query = char_edit(&raw.query, at, None, Some(f)),
        Fuzz::PathChar(at, c) => raw.path = char_edit(&raw.path, at, Some(*c), None),
        Fuzz::Body(b) => raw.body = b.clone(),
        Fuzz::BodyByte(at, b) => {
            if let BodyKind::Bytes(body) = &mut raw.body
                && !body.is_empty()
            {
                let i = at.index(body.len());
                body[i] = *b;
            }
        }
        Fuzz::BodyTruncate(at) => {
            if let BodyKind::Bytes(body) = &mut raw.body {
                body.truncate(at.index(body.len() + 1));
            }
        }
        Fuzz::Method(m) => raw.method.clone_from(m),
    }
}

/// Valid signed requests, some with chunk-signed (`STREAMING-...`) bodies.
fn fuzz_base() -> impl Strategy<Value = (Spec, Option<Vec<usize>>)> {
    (
        spec_strategy(1),
        prop::bool::weighted(0.3),
        any::<bool>(),
        chunk_sizes(),
    )
        .prop_map(|(spec, streaming, decoded_length, sizes)| {
            if streaming {
                (streaming_spec(spec, decoded_length), Some(sizes))
            } else {
                (spec, None)
            }
        })
}

/// Credentials and clock for a near miss: mostly the right ones, so the edits (not the
/// credentials) decide how far verification gets.
fn near_cred(
    spec: &Spec,
    noise: RawCred,
    (right_secret, right_now, no_expiry): (bool, bool, bool),
) -> RawCred {
    RawCred {
        secret: if right_secret {
            SECRET.to_owned()
        } else {
            noise.secret
        },
        expires_at: if no_expiry { None } else { noise.expires_at },
        now: if right_now { spec.now } else { noise.now },
        ..noise
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary requests: parse and verify return, never panic.
    #[test]
    fn never_panics_on_random_requests(raw in random_raw(), cred in raw_cred()) {
        exercise(&raw, &cred);
    }

    /// Validly signed requests (some chunk-signed) with up to three random edits: parse,
    /// verify and the chunk decoder return, never panic.
    #[test]
    fn never_panics_on_near_misses(
        (spec, sizes) in fuzz_base(),
        fuzzes in prop::collection::vec(fuzz_strategy(), 0..3),
        noise in raw_cred(),
        right in (prop::bool::weighted(0.9), prop::bool::weighted(0.9), prop::bool::weighted(0.85)),
    ) {
        let signed = match &sizes {
            Some(sizes) => sign_streaming(&spec, sizes),
            None => sign_spec(&spec),
        };
        let mut raw = Raw {
            method: signed.method.clone(),
            path: signed.path.clone(),
            query: signed.query.clone(),
            headers: signed.headers.clone(),
            body: BodyKind::Bytes(signed.body.clone()),
        };
        for fuzz in &fuzzes {
            apply_fuzz(&mut raw, fuzz);
        }
        exercise(&raw, &near_cred(&spec, noise, right));
    }
}

// ---------------------------------------------------------------------------------------
// S3 paths outside RFC 3986 `pchar`
// ---------------------------------------------------------------------------------------

/// `http::Uri` (and so hyper) accepts `" { } [ ] | ^ \`, raw UTF-8 and a stray `%` in a
/// path; for `s3`, `aws-sigv4` signs such a path verbatim, and so must the gateway (it once
/// encoded them and rejected these requests).
#[test]
fn s3_paths_outside_pchar_verify_as_sent() {
    let mut failures = Vec::new();
    for path in [
        "/a{b}", "/a\"b", "/a[b]", "/a|b", "/a^b", "/a\\b", "/a%zz", "/a%", "/aሴ",
    ] {
        let spec = Spec {
            method: "GET",
            host: "example.com".to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: vec![],
            body: vec![],
            service: "s3",
            region: "us-east-1",
            region_set: "us-east-1",
            alg: Alg::V4,
            loc: Loc::Header,
            token: None,
            checksum_header: false,
            unsigned_payload: false,
            streaming: false,
            time: BASE_TIME,
            now: BASE_TIME,
            expires: 60,
        };
        let signed = sign_spec(&spec);
        if let Err(r) = verify(&spec, &signed, false) {
            let canonical_path = r
                .signature_detail()
                .and_then(|d| d.canonical_request.lines().nth(1).map(str::to_owned));
            failures.push(format!(
                "{path}: {}, verifier's canonical path {canonical_path:?}",
                r.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
