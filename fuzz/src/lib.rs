//! Fuzz harness for `gateway::sigv4`.
//!
//! The first input byte picks a mode; the rest is read with `arbitrary`:
//!
//! - **raw**: a request built straight from fuzz data (method, path, query, a handful of
//!   headers among `authorization`, `x-amz-date`, `host`, `x-amz-content-sha256`,
//!   `x-amz-security-token`, ..., each either raw bytes or a well-formed SigV4 shape with
//!   fuzzed pieces; presigned `X-Amz-*` query parameters likewise; body as bytes, hash or
//!   stream). Run through `parse` + `verify` under two policies.
//! - **signed**: a request signed by the AWS SDK's signer (`aws-sigv4`, SigV4 or SigV4a,
//!   header or presigned, services `svc` and `s3`), verified once as signed, then mutated
//!   by a fuzz-chosen list of edits and verified again, so the fuzzer gets past the
//!   signature check.
//! - **streaming**: a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` request with a chunk-signed
//!   body built with `aws-sigv4`'s `sign_chunk`, the body then mutated, fed to the
//!   `ChunkDecoder` in fuzz-chosen pieces and, separately, given whole as `Body::Bytes`.
//!
//! Checked on every input: no panic; every rejection has an AWS status (400/403), a
//! message, and never shows the secret; a `Payload::Signed` hash is the hash of the body
//! actually given; streamed and whole-body decoding of the same bytes agree; a chunk-signed
//! body left unmutated decodes to exactly its chunks (`differential` only). With
//! `differential`, every request `aws-sigv4` signs must also be accepted before it is
//! mutated, and a SigV4 header-signed request the gateway still accepts after mutation
//! must re-sign with `aws-sigv4` to the signature it carries (no accepted edit may change
//! what was signed).

pub mod auth_parse;
pub mod canonical;
pub mod chunked;
pub mod rules;
pub mod sts_request;
mod support;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::{Arbitrary, Result, Unstructured};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningParams, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::{v4, v4a};
use aws_smithy_runtime_api::client::identity::Identity;
use gateway::sigv4::{
    AmzTime, Body, Code, Credential, Payload, Policy, Rejection, Request, Secret, Verified,
    Verifier,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

pub const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const REGION: &str = "us-east-1";
pub const HOST: &str = "api.example.com";
/// 2026-11-22T10:30:00Z.
pub const SIGNING_TIME: &str = "20261122T103000Z";
const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

fn signing_unix() -> i64 {
    AmzTime::parse_iso(SIGNING_TIME)
        .map(|t| t.unix())
        .unwrap_or(0)
}

/// The default policy (services `svc` and `s3`) and a tight one (small limits, an extra
/// required header, a one-second skew window).
fn verifiers() -> &'static [Verifier; 2] {
    static V: OnceLock<[Verifier; 2]> = OnceLock::new();
    V.get_or_init(|| {
        let default = Verifier::new(Policy::new([REGION], ["svc", "s3"]));
        let mut tight = Policy::new([REGION, "eu-west-1"], ["svc", "s3", "s3express"]);
        tight.max_skew_secs = 1;
        tight.required_signed_headers = vec!["content-type".to_owned()];
        tight.limits.max_signed_headers = 4;
        tight.limits.max_query_params = 4;
        tight.limits.max_chunk_size = 64;
        tight.limits.key_cache_capacity = 2;
        [default, Verifier::new(tight)]
    })
}

fn secret() -> &'static Secret {
    static S: OnceLock<Secret> = OnceLock::new();
    S.get_or_init(|| Secret::from(SECRET))
}

/// Entry point of both targets.
pub fn run(data: &[u8], differential: bool) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let _ = match mode % 3 {
        0 => raw(&mut u),
        1 => signed(&mut u, differential),
        _ => streaming(&mut u, differential),
    };
}

// ---------------------------------------------------------------------------------------
// Statistics, to see how deep the inputs reach (`examples/replay.rs` prints them).

/// How many verifications ended how, by mode.
#[derive(Debug, Default)]
pub struct Stats {
    pub verifications: AtomicU64,
    pub parsed: AtomicU64,
    pub accepted: AtomicU64,
    pub accepted_as_signed: AtomicU64,
    pub accepted_after_mutation: AtomicU64,
    pub streamed_accepted: AtomicU64,
    pub streamed_rejected: AtomicU64,
    pub resigned_after_mutation: AtomicU64,
}

pub static STATS: Stats = Stats {
    verifications: AtomicU64::new(0),
    parsed: AtomicU64::new(0),
    accepted: AtomicU64::new(0),
    accepted_as_signed: AtomicU64::new(0),
    accepted_after_mutation: AtomicU64::new(0),
    streamed_accepted: AtomicU64::new(0),
    streamed_rejected: AtomicU64::new(0),
    resigned_after_mutation: AtomicU64::new(0),
};

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Checks shared by all modes.

fn check_rejection(e: &Rejection) {
    assert!(
        matches!(e.status(), 400 | 403),
        "status {} for {:?}",
        e.status(),
        e.code()
    );
    assert_eq!(e.status(), e.code().status());
    assert!(!e.message().is_empty(), "empty message for {:?}", e.code());
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(SECRET),
        "a rejection shows the secret: {shown}"
    );
    if e.signature_detail().is_some() {
        assert_eq!(e.code(), Code::SignatureDoesNotMatch);
    }
}

fn check_verified(v: &Verified, body: Body<'_>) {
    if let Payload::Signed(h) = &v.payload {
        match body {
            Body::Bytes(b) => {
                let actual: [u8; 32] = Sha256::digest(b).into();
                assert_eq!(
                    *h, actual,
                    "Payload::Signed is not the hash of the body received"
                );
            }
            Body::Sha256(given) => assert_eq!(*h, given, "Payload::Signed is not the hash given"),
            Body::Streaming => panic!("Payload::Signed for a body not received"),
        }
    }
    let shown = format!("{v:?}");
    assert!(!shown.contains(SECRET));
}

/// What became of a request: rejected, or accepted with the data of its body when it
/// was decoded (`None` for other payloads).
#[derive(Debug, PartialEq)]
enum Outcome {
    Rejected(Code),
    Accepted(Option<Vec<u8>>),
}

/// Parses and verifies `req` with one verifier; feeds a streamed body from `stream`.
fn verify_one(
    verifier: &Verifier,
    req: &Request<'_>,
    now: i64,
    credential: &Credential<'_>,
    stream: Option<(&[u8], &[usize])>,
) -> Outcome {
    count(&STATS.verifications);
    let auth = match verifier.parse(req, now) {
        Ok(a) => a,
        Err(e) => {
            check_rejection(&e);
            return Outcome::Rejected(e.code());
        }
    };
    count(&STATS.parsed);
    // Accessors never panic.
    let _ = (
        auth.access_key_id(),
        auth.scope(),
        auth.scope_date(),
        auth.region(),
        auth.region_set(),
    );
    let _ = (
        auth.session_token(),
        auth.algorithm(),
        auth.location(),
        auth.time(),
        auth.service(),
    );
    let _ = auth.signed_headers().count();
    let verified = match verifier.verify(req, &auth, credential, now) {
        Ok(v) => v,
        Err(e) => {
            check_rejection(&e);
            return Outcome::Rejected(e.code());
        }
    };
    count(&STATS.accepted);
    check_verified(&verified, req.body);
    assert_eq!(verified.access_key_id(), auth.access_key_id());
    match verified.payload {
        Payload::Decoded(out) => Outcome::Accepted(Some(out)),
        Payload::Streaming(mut decoder) => {
            let (body, splits) = stream.unwrap_or((&[], &[]));
            let mut out = Vec::new();
            let mut rest = body;
            let mut result = Ok(());
            for &n in splits.iter().chain(std::iter::once(&usize::MAX)) {
                let (piece, later) = rest.split_at(n.min(rest.len()));
                rest = later;
                result = decoder.feed(piece, &mut out);
                if result.is_err() || rest.is_empty() {
                    break;
                }
            }
            let feed_failed = result.is_err();
            let result = result.and_then(|()| decoder.finish().map(|_| ()));
            match result {
                Ok(()) => {
                    count(&STATS.streamed_accepted);
                    assert!(decoder.is_done());
                    assert_eq!(decoder.decoded_len(), out.len() as u64);
                    Outcome::Accepted(Some(out))
                }
                Err(e) => {
                    count(&STATS.streamed_rejected);
                    check_rejection(&e);
                    // A decoder that failed on its input keeps failing.
                    if feed_failed {
                        assert!(
                            decoder
                                .feed(b"0;chunk-signature=", &mut Vec::new())
                                .is_err()
                        );
                        assert!(decoder.finish().is_err());
                    }
                    Outcome::Rejected(e.code())
                }
            }
        }
        Payload::Signed(_) | Payload::Unsigned => Outcome::Accepted(None),
    }
}

// ---------------------------------------------------------------------------------------
// Raw mode.

#[derive(Arbitrary, Debug, Clone, Copy)]
enum NameSel {
    Authorization,
    XAmzDate,
    Date,
    Host,
    ContentSha256,
    SecurityToken,
    RegionSet,
    DecodedLength,
    ContentEncoding,
    ContentType,
    UserAgent,
    Meta,
    Other,
}

fn header_name(u: &mut Unstructured<'_>, sel: NameSel) -> Result<HeaderName> {
    Ok(match sel {
        NameSel::Authorization => HeaderName::from_static("authorization"),
        NameSel::XAmzDate => HeaderName::from_static("x-amz-date"),
        NameSel::Date => HeaderName::from_static("date"),
        NameSel::Host => HeaderName::from_static("host"),
        NameSel::ContentSha256 => HeaderName::from_static("x-amz-content-sha256"),
        NameSel::SecurityToken => HeaderName::from_static("x-amz-security-token"),
        NameSel::RegionSet => HeaderName::from_static("x-amz-region-set"),
        NameSel::DecodedLength => HeaderName::from_static("x-amz-decoded-content-length"),
        NameSel::ContentEncoding => HeaderName::from_static("content-encoding"),
        NameSel::ContentType => HeaderName::from_static("content-type"),
        NameSel::UserAgent => HeaderName::from_static("user-agent"),
        NameSel::Meta => HeaderName::from_static("x-amz-meta-a"),
        NameSel::Other => {
            let raw: &[u8] = u.arbitrary()?;
            HeaderName::from_bytes(raw).unwrap_or(HeaderName::from_static("x-other"))
        }
    })
}

fn pick<'a>(u: &mut Unstructured<'a>, choices: &[&'a str]) -> Result<&'a str> {
    if u.ratio(1, 5)? {
        u.arbitrary()
    } else {
        u.choose(choices).copied()
    }
}

/// A SigV4-shaped `Authorization` value with fuzzed pieces.
fn shaped_authorization(u: &mut Unstructured<'_>) -> Result<String> {
    let alg = pick(
        u,
        &[
            "AWS4-HMAC-SHA256",
            "AWS4-ECDSA-P256-SHA256",
            "AWS4-HMAC-SHA1",
            "",
        ],
    )?;
    let akid = pick(u, &[ACCESS_KEY_ID, "", "AKID/X"])?;
    let date = pick(u, &["20261122", "20261121", "2026112", "20261122/x"])?;
    let region = pick(u, &[REGION, "", "eu-west-1"])?;
    let service = pick(u, &["svc", "s3", "iam", ""])?;
    let terminal = pick(u, &["aws4_request", "aws4_reques", ""])?;
    let credential = if alg == "AWS4-ECDSA-P256-SHA256" && u.arbitrary()? {
        format!("{akid}/{date}/{service}/{terminal}")
    } else {
        format!("{akid}/{date}/{region}/{service}/{terminal}")
    };
    let signed = pick(
        u,
        &[
            "host;x-amz-date",
            "host",
            "x-amz-date",
            "host;host",
            "Host;x-amz-date",
            "host;x-amz-content-sha256;x-amz-date",
            "",
        ],
    )?;
    let sig_len: u8 = u.int_in_range(0..=150)?;
    let mut sig = String::with_capacity(usize::from(sig_len));
    for _ in 0..sig_len {
        sig.push(*u.choose(&['0', '1', 'a', 'f', 'F', 'g', '3', '0'])?);
    }
    let sep = pick(u, &[", ", ",", " , ", ",,"])?;
    let order: u8 = u.arbitrary()?;
    let parts = [
        format!("Credential={credential}"),
        format!("SignedHeaders={signed}"),
        format!("Signature={sig}"),
    ];
    let joined = match order % 4 {
        0 => parts.join(sep),
        1 => [&parts[2], &parts[0], &parts[1]]
            .map(String::as_str)
            .join(sep),
        2 => parts[..2].join(sep),
        _ => format!("{}{sep}{}", parts.join(sep), parts[0]),
    };
    Ok(format!("{alg} {joined}"))
}

fn shaped_date(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 4)? {
        return Ok(u.arbitrary::<&str>()?.to_owned());
    }
    let offset: i32 = u.arbitrary()?;
    Ok(
        AmzTime::from_unix(signing_unix() + i64::from(offset % 100_000))
            .iso()
            .to_owned(),
    )
}

fn shaped_presign(u: &mut Unstructured<'_>) -> Result<String> {
    let mut q = Vec::new();
    let n: u8 = u.int_in_range(0..=9)?;
    for _ in 0..n {
        let param = match u.int_in_range(0..=9u8)? {
            0 => format!(
                "X-Amz-Algorithm={}",
                pick(u, &["AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "x"])?
            ),
            1 => format!(
                "X-Amz-Credential={}",
                pick(
                    u,
                    &[
                        "AKIDEXAMPLE%2F20261122%2Fus-east-1%2Fsvc%2Faws4_request",
                        "AKIDEXAMPLE/20261122/svc/aws4_request",
                        "%zz"
                    ]
                )?
            ),
            2 => format!("X-Amz-Date={}", shaped_date(u)?),
            3 => format!(
                "X-Amz-Expires={}",
                pick(
                    u,
                    &[
                        "900",
                        "604800",
                        "604801",
                        "0",
                        "-1",
                        "+5",
                        "99999999999999999999"
                    ]
                )?
            ),
            4 => format!(
                "X-Amz-SignedHeaders={}",
                pick(u, &["host", "host%3Bx-amz-date", ""])?
            ),
            5 => format!(
                "X-Amz-Signature={}",
                pick(
                    u,
                    &[
                        "00",
                        "0000000000000000000000000000000000000000000000000000000000000000"
                    ]
                )?
            ),
            6 => format!("X-Amz-Security-Token={}", u.arbitrary::<&str>()?),
            7 => format!(
                "X-Amz-Region-Set={}",
                pick(u, &["*", "us-*", "us-east-1%2Ceu-west-1", ""])?
            ),
            8 => u.arbitrary::<&str>()?.to_owned(),
            _ => "X-Amz-Signature".to_owned(),
        };
        q.push(param);
    }
    Ok(q.join("&"))
}

fn raw(u: &mut Unstructured<'_>) -> Result<()> {
    let method = pick(u, &["GET", "POST", "PUT", "HEAD", "DELETE"])?;
    let path = pick(u, &["/", "/a/b/../c", "//x//", "/%2F%41 /b", "", "/a/./b/"])?;
    let mut query = pick(u, &["", "a=1&b=2", "b=2&a=1", "a&a=&a=1", "%41=%zz+x"])?.to_owned();
    if u.ratio(1, 2)? {
        let presign = shaped_presign(u)?;
        if !query.is_empty() && !presign.is_empty() {
            query.push('&');
        }
        query.push_str(&presign);
    }
    let mut headers = HeaderMap::new();
    let n: u8 = u.int_in_range(0..=10)?;
    for _ in 0..n {
        let sel: NameSel = u.arbitrary()?;
        let name = header_name(u, sel)?;
        let shaped = u.ratio(2, 3)?;
        let value = match sel {
            NameSel::Authorization if shaped => shaped_authorization(u)?.into_bytes(),
            NameSel::XAmzDate if shaped => shaped_date(u)?.into_bytes(),
            NameSel::Date if shaped => pick(
                u,
                &[
                    "Sun, 22 Nov 2026 10:30:00 GMT",
                    "Sun, 22 Nov 2026 10:30:00 UTC",
                    SIGNING_TIME,
                ],
            )?
            .into(),
            NameSel::Host if shaped => HOST.into(),
            NameSel::ContentSha256 if shaped => pick(
                u,
                &[
                    "UNSIGNED-PAYLOAD",
                    STREAMING,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                ],
            )?
            .into(),
            NameSel::DecodedLength if shaped => {
                pick(u, &["0", "1", " 5 ", "-1", "18446744073709551616"])?.into()
            }
            _ => u.arbitrary::<&[u8]>()?.to_vec(),
        };
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.append(name, v);
        }
    }
    let body: &[u8] = u.arbitrary()?;
    let body = match u.int_in_range(0..=3u8)? {
        0 | 1 => Body::Bytes(body),
        2 => Body::Sha256(u.arbitrary()?),
        _ => Body::Streaming,
    };
    let now = signing_unix() + i64::from(u.arbitrary::<i32>()?);
    let expires_at = if u.ratio(1, 4)? {
        Some(now + i64::from(u.arbitrary::<i16>()?))
    } else {
        None
    };
    let credential = Credential {
        secret: secret(),
        expires_at,
        allow_unsigned_payload: u.arbitrary()?,
    };
    let stream: &[u8] = u.arbitrary()?;
    let splits: Vec<usize> = u
        .arbitrary::<Vec<u8>>()?
        .into_iter()
        .map(usize::from)
        .collect();
    let req = Request {
        method,
        path,
        query: &query,
        headers: &headers,
        body,
    };
    for verifier in verifiers() {
        verify_one(verifier, &req, now, &credential, Some((stream, &splits)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Signing with aws-sigv4.

/// A request as the gateway receives it, owned so it can be mutated.
#[derive(Clone, Debug)]
struct Owned {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Owned {
    fn request(&self, streaming: bool) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: if streaming {
                Body::Streaming
            } else {
                Body::Bytes(&self.body)
            },
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum PayloadMode {
    /// No `x-amz-content-sha256`: the gateway hashes the body.
    NoHeader,
    /// `x-amz-content-sha256` with the body's hash.
    HashHeader,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
    Unsigned,
}

struct SignSpec<'a> {
    s3: bool,
    v4a: bool,
    region_set: &'a str,
    location: SignatureLocation,
    payload: PayloadMode,
    streaming: bool,
    expires: u64,
    token: Option<String>,
}

fn identity(token: Option<String>) -> Identity {
    Credentials::new(ACCESS_KEY_ID, SECRET, token, None, "fuzz").into()
}

fn settings(spec: &SignSpec<'_>) -> SigningSettings {
    let mut s = SigningSettings::default();
    s.signature_location = spec.location;
    if spec.location == SignatureLocation::QueryParams {
        s.expires_in = Some(Duration::from_secs(spec.expires));
    }
    if spec.payload != PayloadMode::NoHeader || spec.streaming {
        s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    if spec.s3 {
        s.percent_encoding_mode = PercentEncodingMode::Single;
        s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    s
}

fn service(spec: &SignSpec<'_>) -> &'static str {
    if spec.s3 { "s3" } else { "svc" }
}

fn v4_params<'a>(
    spec: &SignSpec<'_>,
    identity: &'a Identity,
) -> Option<v4::SigningParams<'a, SigningSettings>> {
    v4::SigningParams::builder()
        .identity(identity)
        .region(REGION)
        .name(service(spec))
        .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(signing_unix()).ok()?))
        .settings(settings(spec))
        .build()
        .ok()
}

fn params<'a>(spec: &SignSpec<'a>, identity: &'a Identity) -> Option<SigningParams<'a>> {
    if spec.v4a {
        v4a::SigningParams::builder()
            .identity(identity)
            .region_set(spec.region_set)
            .name(service(spec))
            .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(signing_unix()).ok()?))
            .settings(settings(spec))
            .build()
            .ok()
            .map(Into::into)
    } else {
        v4_params(spec, identity).map(Into::into)
    }
}

/// Makes a path or query the `http` crate accepts in a URI: the bytes it refuses are
/// percent-encoded.
fn uri_safe(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        // A `%` stays only as the start of an escape (a stray one is no valid URI).
        let escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        let ok = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/".contains(&b)
            || escape
            || (query && b == b'?');
        if ok {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signs a request with `aws-sigv4`; returns it as received and the seed signature.
fn sign_request(
    spec: &SignSpec<'_>,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(HeaderName, String)],
    body: &[u8],
) -> Option<(Owned, String)> {
    // Signers sign the request target as sent, already percent-encoded: encode what a
    // client could not send raw.
    let path = uri_safe(path, false);
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let uri = if query.is_empty() {
        format!("https://{HOST}{path}")
    } else {
        format!("https://{HOST}{path}?{}", uri_safe(query, true))
    };
    let parsed: http::Uri = uri.parse().ok()?;
    // The signer signs the URI's host; the request must carry it as a header too.
    let mut with_host = vec![(HeaderName::from_static("host"), HOST.to_owned())];
    with_host.extend(headers.iter().cloned());
    let headers = &with_host;
    let identity = identity(spec.token.clone());
    let params = params(spec, &identity)?;
    let signable_body = if spec.streaming {
        SignableBody::Precomputed(STREAMING.to_owned())
    } else if spec.payload == PayloadMode::Unsigned {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(body)
    };
    let signable = SignableRequest::new(
        method,
        uri.as_str(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        signable_body,
    )
    .ok()?;
    let (instructions, signature) = sign(signable, &params).ok()?.into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(parsed)
        .body(())
        .ok()?;
    for (k, v) in headers {
        req.headers_mut()
            .append(k.clone(), HeaderValue::from_str(v).ok()?);
    }
    instructions.apply_to_request_http1x(&mut req);
    let (parts, ()) = req.into_parts();
    Some((
        Owned {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers: parts.headers,
            body: body.to_vec(),
        },
        signature,
    ))
}

/// Extra headers for signing: names the signer may sign, values it can take.
fn extra_headers(u: &mut Unstructured<'_>) -> Result<Vec<(HeaderName, String)>> {
    let n: u8 = u.int_in_range(0..=5)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let name = match u.int_in_range(0..=6u8)? {
            0 => HeaderName::from_static("content-type"),
            1 => HeaderName::from_static("x-amz-meta-a"),
            2 => HeaderName::from_static("accept"),
            3 => HeaderName::from_static("user-agent"),
            4 => HeaderName::from_static("x-request-id"),
            5 => HeaderName::from_static("x-amz-meta-b"),
            _ => match HeaderName::from_bytes(u.arbitrary::<&[u8]>()?) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if matches!(
            name.as_str(),
            "authorization"
                | "x-amz-date"
                | "x-amz-content-sha256"
                | "x-amz-security-token"
                | "host"
                | "x-amz-region-set"
                | "x-amz-decoded-content-length"
                | "date"
        ) {
            continue;
        }
        // An HTTP parser strips leading and trailing spaces and tabs from field values;
        // aws-sigv4 signs leading and trailing tabs (it trims spaces only), so values
        // that still have them after parsing cannot reach a verifier.
        let value: &str = u.arbitrary::<&str>()?.trim_matches([' ', '\t']);
        if HeaderValue::from_str(value).is_ok() {
            out.push((name, value.to_owned()));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Mutations.

#[derive(Arbitrary, Debug)]
enum Mutation<'a> {
    Method(&'a str),
    PathAppend(&'a str),
    PathReplace(&'a str),
    PathByte(u16, u8),
    QueryAppend(&'a str),
    QueryReplace(&'a str),
    QueryByte(u16, u8),
    QueryDropParam(u8),
    QueryDupParam(u8),
    QuerySwap(u8, u8),
    HeaderSet(NameSel, &'a [u8]),
    HeaderAppend(NameSel, &'a [u8]),
    HeaderRemove(NameSel),
    HeaderByte(NameSel, u16, u8),
    HeaderInsertByte(NameSel, u16, u8),
    HeaderTruncate(NameSel, u16),
    HeaderDup(NameSel),
    BodyReplace(&'a [u8]),
    BodyByte(u16, u8),
    BodyInsert(u16, &'a [u8]),
    BodyRemove(u16, u16),
    BodyTruncate(u16),
    Now(i32),
    UnsignedAllowed,
    SessionExpired(i16),
}

fn edit_str(s: &mut String, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::mem::take(s).into_bytes();
    let before = bytes.clone();
    f(&mut bytes);
    *s = String::from_utf8(bytes).unwrap_or_else(|_| String::from_utf8(before).unwrap_or_default());
}

fn set_byte(v: &mut [u8], at: u16, b: u8) {
    if !v.is_empty() {
        let i = usize::from(at) % v.len();
        v[i] = b;
    }
}

fn insert_byte(v: &mut Vec<u8>, at: u16, b: u8) {
    let i = usize::from(at) % (v.len() + 1);
    v.insert(i, b);
}

/// Applies a mutation to a header's value(s); the `http` crate refuses some bytes, in
/// which case the header is left as it was.
fn edit_header(headers: &mut HeaderMap, name: &HeaderName, f: impl FnOnce(&mut Vec<u8>)) {
    let Some(v) = headers.get(name) else { return };
    let mut bytes = v.as_bytes().to_vec();
    f(&mut bytes);
    if let Ok(v) = HeaderValue::from_bytes(&bytes) {
        headers.insert(name.clone(), v);
    }
}

struct Context {
    now: i64,
    allow_unsigned: bool,
    expires_at: Option<i64>,
}

fn mutate(
    u: &mut Unstructured<'_>,
    m: Mutation<'_>,
    req: &mut Owned,
    ctx: &mut Context,
) -> Result<()> {
    match m {
        Mutation::Method(s) => req.method = s.to_owned(),
        Mutation::PathAppend(s) => req.path.push_str(s),
        Mutation::PathReplace(s) => req.path = s.to_owned(),
        Mutation::PathByte(at, b) => edit_str(&mut req.path, |v| set_byte(v, at, b)),
        Mutation::QueryAppend(s) => req.query.push_str(s),
        Mutation::QueryReplace(s) => req.query = s.to_owned(),
        Mutation::QueryByte(at, b) => edit_str(&mut req.query, |v| set_byte(v, at, b)),
        Mutation::QueryDropParam(i) | Mutation::QueryDupParam(i) => {
            let mut params: Vec<String> = req.query.split('&').map(str::to_owned).collect();
            let i = usize::from(i) % params.len();
            if matches!(m, Mutation::QueryDropParam(_)) {
                params.remove(i);
            } else {
                let p = params[i].clone();
                params.push(p);
            }
            req.query = params.join("&");
        }
        Mutation::QuerySwap(i, j) => {
            let mut params: Vec<&str> = req.query.split('&').collect();
            let (i, j) = (usize::from(i) % params.len(), usize::from(j) % params.len());
            params.swap(i, j);
            req.query = params.join("&");
        }
        Mutation::HeaderSet(sel, v) | Mutation::HeaderAppend(sel, v) => {
            let name = header_name(u, sel)?;
            if let Ok(v) = HeaderValue::from_bytes(v) {
                if matches!(m, Mutation::HeaderSet(..)) {
                    req.headers.insert(name, v);
                } else {
                    req.headers.append(name, v);
                }
            }
        }
        Mutation::HeaderRemove(sel) => {
            let name = header_name(u, sel)?;
            req.headers.remove(name);
        }
        Mutation::HeaderByte(sel, at, b) => {
            edit_header(&mut req.headers, &header_name(u, sel)?, |v| {
                set_byte(v, at, b)
            })
        }
        Mutation::HeaderInsertByte(sel, at, b) => {
            edit_header(&mut req.headers, &header_name(u, sel)?, |v| {
                insert_byte(v, at, b)
            })
        }
        Mutation::HeaderTruncate(sel, n) => {
            edit_header(&mut req.headers, &header_name(u, sel)?, |v| {
                v.truncate(usize::from(n) % (v.len() + 1))
            })
        }
        Mutation::HeaderDup(sel) => {
            let name = header_name(u, sel)?;
            if let Some(v) = req.headers.get(&name).cloned() {
                req.headers.append(name, v);
            }
        }
        Mutation::BodyReplace(b) => req.body = b.to_vec(),
        Mutation::BodyByte(at, b) => set_byte(&mut req.body, at, b),
        Mutation::BodyInsert(at, b) => {
            let i = usize::from(at) % (req.body.len() + 1);
            req.body.splice(i..i, b.iter().copied());
        }
        Mutation::BodyRemove(at, n) => {
            let i = usize::from(at) % (req.body.len() + 1);
            let end = (i + usize::from(n)).min(req.body.len());
            req.body.drain(i..end);
        }
        Mutation::BodyTruncate(n) => req.body.truncate(usize::from(n) % (req.body.len() + 1)),
        Mutation::Now(d) => ctx.now += i64::from(d),
        Mutation::UnsignedAllowed => ctx.allow_unsigned = !ctx.allow_unsigned,
        Mutation::SessionExpired(d) => ctx.expires_at = Some(ctx.now + i64::from(d)),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Signed mode.

fn sign_spec<'a>(u: &mut Unstructured<'a>) -> Result<SignSpec<'a>> {
    let s3 = u.arbitrary()?;
    // SigV4a costs a P-256 signature and verification: keep it to a few inputs in 16.
    let v4a = u.ratio(1, 16)?;
    let region_set = *u.choose(&["*", REGION, "us-*", "eu-west-1,us-east-1"])?;
    let location = if u.ratio(1, 3)? {
        SignatureLocation::QueryParams
    } else {
        SignatureLocation::Headers
    };
    let payload: PayloadMode = u.arbitrary()?;
    let expires = u.int_in_range(1..=604_800u64)?;
    let token = if u.ratio(1, 4)? {
        let t: &str = u.arbitrary()?;
        Some(
            if t.trim().is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                "FQoGZXIvYXdzEXAMPLE".to_owned()
            } else {
                t.to_owned()
            },
        )
    } else {
        None
    };
    Ok(SignSpec {
        s3,
        v4a,
        region_set,
        location,
        payload,
        streaming: false,
        expires,
        token,
    })
}

fn signed(u: &mut Unstructured<'_>, differential: bool) -> Result<()> {
    let spec = sign_spec(u)?;
    let method = pick(u, &["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"])?;
    let path = pick(
        u,
        &[
            "/",
            "/v1/orders/84512",
            "/a b/%41%2f/",
            "/a/./b/../c//d",
            "/photos/2026/11/täglich.jpg",
            "/~user/x+y=z",
        ],
    )?;
    let query = pick(
        u,
        &[
            "",
            "limit=50",
            "b=2&a=1&a=0",
            "prefix=a%20b&x",
            "k=v+w&%41=%zz",
            "x-id=GetObject",
        ],
    )?;
    let headers = extra_headers(u)?;
    let body: &[u8] = u.arbitrary()?;
    if method.is_empty() || http::Method::from_bytes(method.as_bytes()).is_err() {
        return Ok(());
    }
    let Some((mut req, _seed)) = sign_request(&spec, method, path, query, &headers, body) else {
        return Ok(());
    };
    let mut ctx = Context {
        now: signing_unix(),
        allow_unsigned: false,
        expires_at: None,
    };
    let [default, tight] = verifiers();

    // As signed.
    let credential = Credential {
        secret: secret(),
        expires_at: None,
        allow_unsigned_payload: false,
    };
    let outcome = verify_one(default, &req.request(false), ctx.now, &credential, None);
    if matches!(outcome, Outcome::Accepted(_)) {
        count(&STATS.accepted_as_signed);
    }
    if differential {
        // A query that already names X-Amz-* parameters reads as a second signature.
        let expected_ok = (spec.payload != PayloadMode::Unsigned || body.is_empty())
            && !query.to_ascii_lowercase().contains("x-amz-")
            && query_decodes_to_utf8(&req.query);
        if expected_ok {
            assert!(
                matches!(outcome, Outcome::Accepted(_)),
                "the gateway rejects a request aws-sigv4 signed: {outcome:?}\nrequest: {req:#?}\n{}",
                explain(default, &req, ctx.now)
            );
        }
    }
    if differential
        && matches!(outcome, Outcome::Accepted(_))
        && !spec.v4a
        && spec.location == SignatureLocation::Headers
    {
        // The re-signing check below, on the request as signed.
        if let Some((ours, theirs)) = resign(&spec, &req) {
            assert!(
                ours.eq_ignore_ascii_case(&theirs),
                "re-signing differs unedited: {ours} {theirs}\n{req:#?}"
            );
        }
    }
    verify_one(tight, &req.request(false), ctx.now, &credential, None);

    // Mutated.
    let n: u8 = u.int_in_range(0..=8)?;
    for _ in 0..n {
        let m: Mutation<'_> = u.arbitrary()?;
        mutate(u, m, &mut req, &mut ctx)?;
    }
    let credential = Credential {
        secret: secret(),
        expires_at: ctx.expires_at,
        allow_unsigned_payload: ctx.allow_unsigned,
    };
    for (i, verifier) in verifiers().iter().enumerate() {
        if let Outcome::Accepted(_) =
            verify_one(verifier, &req.request(false), ctx.now, &credential, None)
        {
            count(&STATS.accepted_after_mutation);
            // What the gateway accepted after the edits, aws-sigv4 must sign to the same
            // signature: no edit the gateway lets through may change the canonical request.
            if differential
                && i == 0
                && !spec.v4a
                && spec.location == SignatureLocation::Headers
                && let Some((ours, theirs)) = resign(&spec, &req)
            {
                count(&STATS.resigned_after_mutation);
                assert!(
                    ours.eq_ignore_ascii_case(&theirs),
                    "the gateway accepted an edited request that aws-sigv4 signs differently \
                         (sent {ours}, aws-sigv4 {theirs})\nrequest: {req:#?}"
                );
            }
        }
        if spec.v4a {
            // An ECDSA verification costs ~0.3 ms: one per edited request is enough.
            continue;
        }
        verify_one(
            verifier,
            &Request {
                body: Body::Sha256(Sha256::digest(&req.body).into()),
                ..req.request(false)
            },
            ctx.now,
            &credential,
            None,
        );
        verify_one(verifier, &req.request(true), ctx.now, &credential, None);
    }
    Ok(())
}

/// Signs `req` again with aws-sigv4, over the headers its `Authorization` names, and
/// returns (the signature it carries, aws-sigv4's). `None` when aws-sigv4 cannot be given
/// the request faithfully (a URI it refuses, tabs at the ends of a signed value, which
/// parsers strip and aws-sigv4 signs, ...).
fn resign(spec: &SignSpec<'_>, req: &Owned) -> Option<(String, String)> {
    let auth = req.headers.get("authorization")?.to_str().ok()?;
    let field = |name: &str| -> Option<&str> {
        auth.split(',').find_map(|part| {
            part.trim()
                .split_once(' ')
                .map_or(part.trim(), |(_, p)| p)
                .strip_prefix(name)
        })
    };
    let signed = field("SignedHeaders=")?.trim();
    let signature = field("Signature=")?.trim().to_owned();
    if !query_decodes_to_utf8(&req.query) || req.query.to_ascii_lowercase().contains("x-amz-") {
        return None;
    }
    let value = |name: &str| -> Option<String> {
        let mut values = req.headers.get_all(name).iter();
        let v = values.next()?.to_str().ok()?.trim_matches(' ').to_owned();
        values.next().is_none().then_some(v)
    };
    if value("x-amz-date")? != SIGNING_TIME {
        return None;
    }
    let mut headers = Vec::new();
    for name in signed.split(';') {
        if matches!(
            name,
            "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
        ) {
            continue;
        }
        for v in req.headers.get_all(name) {
            let v = v.to_str().ok()?;
            if v.starts_with(['\t', ' ']) || v.ends_with(['\t', ' ']) {
                return None;
            }
            headers.push((name, v));
        }
    }
    let token = if signed.split(';').any(|n| n == "x-amz-security-token") {
        Some(value("x-amz-security-token")?)
    } else {
        None
    };
    let sha = if signed.split(';').any(|n| n == "x-amz-content-sha256") {
        Some(value("x-amz-content-sha256")?)
    } else {
        None
    };
    let uri = if req.query.is_empty() {
        format!("https://{HOST}{}", req.path)
    } else {
        format!("https://{HOST}{}?{}", req.path, req.query)
    };
    if uri.parse::<http::Uri>().ok()?.path() != req.path {
        return None;
    }
    let spec = SignSpec {
        payload: if sha.is_some() {
            PayloadMode::HashHeader
        } else {
            PayloadMode::NoHeader
        },
        token: token.clone(),
        region_set: spec.region_set,
        ..*spec
    };
    let identity = identity(token);
    let mut settings = settings(&spec);
    settings.excluded_headers = None;
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service(&spec))
        .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(signing_unix()).ok()?))
        .settings(settings)
        .build()
        .ok()?
        .into();
    let body = match &sha {
        Some(h) => SignableBody::Precomputed(h.clone()),
        None => SignableBody::Bytes(&req.body),
    };
    let signable =
        SignableRequest::new(&req.method, uri.as_str(), headers.into_iter(), body).ok()?;
    let (_, theirs) = sign(signable, &params).ok()?.into_parts();
    Some((signature, theirs))
}

/// Whether every `%XX` escape of a query decodes to UTF-8: aws-sigv4 decodes query
/// components lossily (an invalid sequence becomes U+FFFD) before re-encoding them, where
/// SigV4 (and the gateway) keeps the bytes.
fn query_decodes_to_utf8(query: &str) -> bool {
    query.split(['&', '=']).all(|part| {
        let b = part.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
            match (b[i], hex(i + 1), hex(i + 2)) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (c, _, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        std::str::from_utf8(&out).is_ok()
    })
}

/// The gateway's own account of a rejection, for a failed differential check.
fn explain(verifier: &Verifier, req: &Owned, now: i64) -> String {
    let r = req.request(false);
    let credential = Credential {
        secret: secret(),
        expires_at: None,
        allow_unsigned_payload: false,
    };
    match verifier
        .parse(&r, now)
        .and_then(|a| verifier.verify(&r, &a, &credential, now))
    {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Streaming mode.

fn chunk_line(data: &[u8], signature: &str) -> Vec<u8> {
    let mut out = format!("{:x};chunk-signature={signature}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn streaming(u: &mut Unstructured<'_>, differential: bool) -> Result<()> {
    let mut spec = sign_spec(u)?;
    spec.v4a = false;
    spec.location = SignatureLocation::Headers;
    spec.streaming = true;
    // The chunks.
    let n: u8 = u.int_in_range(0..=5)?;
    let mut chunks: Vec<&[u8]> = Vec::new();
    for _ in 0..n {
        let c: &[u8] = u.arbitrary()?;
        if !c.is_empty() {
            chunks.push(c);
        }
    }
    let data: Vec<u8> = chunks.concat();
    let length_ok = !u.ratio(1, 8)?;
    let declared_len = if length_ok {
        data.len() as u64
    } else {
        u.arbitrary()?
    };
    let mut headers = extra_headers(u)?;
    headers.push((
        HeaderName::from_static("x-amz-decoded-content-length"),
        declared_len.to_string(),
    ));
    if u.arbitrary()? {
        headers.push((
            HeaderName::from_static("content-encoding"),
            "aws-chunked".to_owned(),
        ));
    }
    let Some((mut req, seed)) = sign_request(&spec, "PUT", "/bucket/object", "", &headers, &[])
    else {
        return Ok(());
    };

    // The chunk-signed body, each signature chained to the one before (aws-sigv4).
    let identity = identity(spec.token.clone());
    let Some(params) = v4_params(&spec, &identity) else {
        return Ok(());
    };
    let mut body = Vec::new();
    let mut previous = seed;
    for c in chunks.iter().copied().chain(std::iter::once(&[][..])) {
        let Ok(out) = v4::sign_chunk(&bytes::Bytes::copy_from_slice(c), &previous, &params) else {
            return Ok(());
        };
        let (_, sig) = out.into_parts();
        body.extend_from_slice(&chunk_line(c, &sig));
        previous = sig;
    }
    req.body = body;

    let mut ctx = Context {
        now: signing_unix(),
        allow_unsigned: false,
        expires_at: None,
    };
    let n: u8 = u.int_in_range(0..=6)?;
    let mut mutated = false;
    for _ in 0..n {
        let m: Mutation<'_> = u.arbitrary()?;
        mutated |= !matches!(
            m,
            Mutation::Now(_) | Mutation::UnsignedAllowed | Mutation::SessionExpired(_)
        );
        mutate(u, m, &mut req, &mut ctx)?;
    }
    let splits: Vec<usize> = u
        .arbitrary::<Vec<u8>>()?
        .into_iter()
        .map(usize::from)
        .collect();
    let credential = Credential {
        secret: secret(),
        expires_at: ctx.expires_at,
        allow_unsigned_payload: ctx.allow_unsigned,
    };
    for (i, verifier) in verifiers().iter().enumerate() {
        let streamed = verify_one(
            verifier,
            &req.request(true),
            ctx.now,
            &credential,
            Some((&req.body, &splits)),
        );
        let whole = verify_one(verifier, &req.request(false), ctx.now, &credential, None);
        // The same bytes streamed in pieces or given whole are judged alike.
        match (&streamed, &whole) {
            (Outcome::Accepted(a), Outcome::Accepted(b)) => {
                assert_eq!(a, b, "streamed and whole decodings differ")
            }
            (Outcome::Rejected(_), Outcome::Rejected(_)) => {}
            _ => panic!("streamed: {streamed:?}, whole: {whole:?}"),
        }
        // Unmutated, with the right length and clock, a chunk-signed body decodes to its chunks.
        let clean = !mutated && length_ok && ctx.now == signing_unix() && ctx.expires_at.is_none();
        if clean && i == 0 && differential {
            assert_eq!(
                streamed,
                Outcome::Accepted(Some(data.clone())),
                "a chunk-signed body aws-sigv4 produced is not decoded to its chunks\nrequest: {req:#?}\n{}",
                explain(verifier, &req, ctx.now)
            );
        }
    }
    Ok(())
}
