//! Each rejection the core can produce, with its AWS code, HTTP status and a message a
//! person can act on; requests are signed by the independent `aws-sigv4` crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use gateway::sigv4::{
    Body, Code, Credential, Payload, Policy, Rejection, Request, Secret, Verified, Verifier,
};
use http::{HeaderMap, HeaderValue};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const T0: i64 = 1_700_000_000;

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

struct Opts {
    location: SignatureLocation,
    checksum: PayloadChecksumKind,
    unsigned: bool,
    token: Option<&'static str>,
    expires: Option<Duration>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            location: SignatureLocation::Headers,
            checksum: PayloadChecksumKind::NoHeader,
            unsigned: false,
            token: None,
            expires: None,
        }
    }
}

impl Opts {
    /// A URL presigned for 60 seconds.
    fn presigned() -> Self {
        Self {
            location: SignatureLocation::QueryParams,
            expires: Some(Duration::from_secs(60)),
            ..Self::default()
        }
    }
}

fn signed(method: &str, uri: &str, extra: &[(&str, &str)], body: &[u8], opts: Opts) -> Signed {
    let mut settings = SigningSettings::default();
    settings.signature_location = opts.location;
    settings.payload_checksum_kind = opts.checksum;
    settings.expires_in = opts.expires;
    let identity =
        Credentials::new(AKID, SECRET, opts.token.map(str::to_owned), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("orders")
        .time(UNIX_EPOCH + Duration::from_secs(T0 as u64))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut headers = vec![("host", "orders.internal:8443")];
    headers.extend_from_slice(extra);
    let signable_body = if opts.unsigned {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(body)
    };
    let full_uri = format!("https://orders.internal:8443{uri}");
    let signable = SignableRequest::new(
        method,
        full_uri.as_str(),
        headers.iter().copied(),
        signable_body,
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(full_uri.as_str());
    for (k, v) in &headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    Signed {
        method: method.to_owned(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
        headers: req.headers().clone(),
        body: body.to_vec(),
    }
}

fn verifier() -> Verifier {
    Verifier::new(Policy::new(["us-east-1"], ["orders"]))
}

fn check_with(
    v: &Verifier,
    s: &Signed,
    secret: &str,
    expires_at: Option<i64>,
    unsigned_ok: bool,
    now: i64,
) -> Result<Verified, Rejection> {
    let req = s.request();
    let auth = v.parse(&req, now)?;
    assert_eq!(auth.access_key_id(), AKID);
    let secret = Secret::from(secret);
    v.verify(
        &req,
        &auth,
        &Credential {
            secret: &secret,
            expires_at,
            allow_unsigned_payload: unsigned_ok,
        },
        now,
    )
}

fn check(s: &Signed, now: i64) -> Result<Verified, Rejection> {
    check_with(&verifier(), s, SECRET, None, false, now)
}

/// A rejection with this code and status whose message is useful and leaks nothing.
fn assert_rejected(r: Result<Verified, Rejection>, code: Code, status: u16) -> Rejection {
    let e = r.expect_err("expected a rejection");
    assert_eq!(e.code(), code, "{e}");
    assert_eq!(e.status(), status);
    assert_eq!(code.as_str(), format!("{code}"));
    assert!(e.message().len() > 20, "message too thin: {e}");
    assert!(!e.to_string().contains(SECRET), "secret leaked: {e}");
    e
}

#[test]
fn a_good_request_verifies() {
    let s = signed(
        "GET",
        "/orders/42?expand=items",
        &[("x-request-id", "abc")],
        b"",
        Opts::default(),
    );
    let v = check(&s, T0).unwrap();
    assert_eq!(v.access_key_id(), AKID);
    assert_eq!(v.service(), "orders");
    assert!(matches!(v.payload, Payload::Signed(_)));
}

#[test]
fn missing_authentication_token() {
    let s = Signed {
        method: "GET".into(),
        path: "/".into(),
        query: "a=b".into(),
        headers: HeaderMap::new(),
        body: vec![],
    };
    let e = assert_rejected(check(&s, T0), Code::MissingAuthenticationToken, 403);
    assert!(e.message().contains("Signature Version 4"));
}

#[test]
fn incomplete_signature() {
    let good = signed("GET", "/", &[], b"", Opts::default());
    let auth = good.headers["authorization"].to_str().unwrap().to_owned();
    let cases: Vec<(String, &str)> = vec![
        (
            auth.split(", Signature=").next().unwrap().to_owned(),
            "'Signature'",
        ),
        (auth.replace("Credential=", "Cred="), "Unknown component"),
        (
            auth.replace("AWS4-HMAC-SHA256", "Bearer"),
            "Unsupported signing algorithm",
        ),
        (auth.replace("/us-east-1/", "/"), "malformed"),
        (auth.replace("aws4_request", "aws5_request"), "malformed"),
        (
            auth.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date"),
            "'Host' must be a signed header",
        ),
        (
            auth.replace(
                "SignedHeaders=host;x-amz-date",
                "SignedHeaders=x-amz-date;host",
            ),
            "sorted",
        ),
        (
            auth.replace(
                "SignedHeaders=host;x-amz-date",
                "SignedHeaders=Host;x-amz-date",
            ),
            "lower-case",
        ),
        (
            auth.replace(
                "SignedHeaders=host;x-amz-date",
                "SignedHeaders=host;x-amz-date;x-missing",
            ),
            "no such header",
        ),
        (format!("{auth}0"), "64 hexadecimal"),
    ];
    for (value, expect) in cases {
        let mut s = signed("GET", "/", &[], b"", Opts::default());
        s.headers
            .insert("authorization", HeaderValue::from_str(&value).unwrap());
        let e = assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
        assert!(e.message().contains(expect), "{value}: {e}");
    }
    // No date at all.
    let mut s = signed("GET", "/", &[], b"", Opts::default());
    s.headers.remove("x-amz-date");
    assert!(
        assert_rejected(check(&s, T0), Code::IncompleteSignature, 400)
            .message()
            .contains("X-Amz-Date")
    );
    // Signed twice, in the header and the query.
    let mut s = signed("GET", "/", &[], b"", Opts::default());
    s.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00".into();
    assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
    // A security token that is present but not signed.
    let mut s = signed("GET", "/", &[], b"", Opts::default());
    s.headers
        .insert("x-amz-security-token", HeaderValue::from_static("tok"));
    assert!(
        assert_rejected(check(&s, T0), Code::IncompleteSignature, 400)
            .message()
            .contains("x-amz-security-token")
    );
}

#[test]
fn presigned_query_must_be_complete_and_unambiguous() {
    let good = signed("GET", "/", &[], b"", Opts::presigned());
    assert!(check(&good, T0).is_ok());
    for (edit, expect) in [
        (
            good.query
                .replace("X-Amz-Expires=60", "X-Amz-Expires=604801"),
            "604800",
        ),
        (
            good.query.replace("X-Amz-Expires=60", "X-Amz-Expires=0"),
            "604800",
        ),
        (
            good.query.replace("X-Amz-Expires=60", "X-Amz-Expires=-5"),
            "604800",
        ),
        (
            good.query
                .split('&')
                .filter(|p| !p.starts_with("X-Amz-Date"))
                .collect::<Vec<_>>()
                .join("&"),
            "X-Amz-Date",
        ),
        (
            format!("{}&X-Amz-Date=20231114T221320Z", good.query),
            "more than once",
        ),
    ] {
        let mut s = signed("GET", "/", &[], b"", Opts::presigned());
        s.query = edit.clone();
        let e = assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
        assert!(e.message().contains(expect), "{edit}: {e}");
    }
}

#[test]
fn session_token_sent_twice_is_ambiguous() {
    let mut s = signed(
        "GET",
        "/",
        &[],
        b"",
        Opts {
            token: Some("tok"),
            ..Opts::presigned()
        },
    );
    assert!(check(&s, T0).is_ok());
    s.headers
        .insert("x-amz-security-token", HeaderValue::from_static("other"));
    let e = assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
    assert!(e.message().contains("twice"), "{e}");
}

/// A `DELETE https://bucket.internal/key?b=2&a=1` signed with SigV4a for `service` and
/// `region_set`, in the header or presigned for 60 s (paths signed S3-style).
fn signed_v4a(location: SignatureLocation, service: &str, region_set: &str) -> Signed {
    let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = location;
    settings.expires_in = Some(Duration::from_secs(60));
    settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
    settings.uri_path_normalization_mode =
        aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4a::SigningParams::builder()
        .identity(&identity)
        .region_set(region_set)
        .name(service)
        .time(UNIX_EPOCH + Duration::from_secs(T0 as u64))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri = "https://bucket.internal/key?b=2&a=1";
    let headers = [("host", "bucket.internal")];
    let signable =
        SignableRequest::new("DELETE", uri, headers.into_iter(), SignableBody::Bytes(b"")).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder()
        .method("DELETE")
        .uri(uri)
        .header("host", "bucket.internal")
        .body(())
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    Signed {
        method: "DELETE".into(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
        headers: req.headers().clone(),
        body: vec![],
    }
}

/// Found by the differential fuzzer: a SigV4a URL presigned for S3 over the body's hash
/// (not UNSIGNED-PAYLOAD, S3's usual payload line) must verify too.
#[test]
fn sigv4a_presigned_s3_url_signed_over_the_body_hash() {
    let s = signed_v4a(SignatureLocation::QueryParams, "s3", "us-east-1");
    let v = Verifier::new(Policy::new(["us-east-1"], ["s3"]));
    let verified = check_with(&v, &s, SECRET, None, false, T0).unwrap();
    assert_eq!(verified.algorithm, gateway::sigv4::Algorithm::V4a);
}

#[test]
fn sigv4a_region_sets() {
    // A set covers the gateway's region by name or by pattern.
    for (set, ok) in [
        ("us-east-1", true),
        ("*", true),
        ("us-*", true),
        ("eu-west-1,us-*", true),
        ("eu-*", false),
        ("us-west-2", false),
    ] {
        let s = signed_v4a(SignatureLocation::Headers, "orders", set);
        match check(&s, T0) {
            Ok(_) => assert!(ok, "{set} must not cover us-east-1"),
            Err(e) => {
                assert!(!ok, "{set}: {e}");
                assert_eq!(e.code(), Code::SignatureDoesNotMatch);
                assert!(e.message().contains("valid region"), "{e}");
            }
        }
    }
    // The region set is what SigV4a signs instead of a region: it must be signed.
    let mut s = signed_v4a(SignatureLocation::Headers, "orders", "us-east-1");
    let auth = s.headers["authorization"]
        .to_str()
        .unwrap()
        .replace(";x-amz-region-set", "");
    s.headers
        .insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let e = assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
    assert!(e.message().contains("x-amz-region-set"), "{e}");
}

/// A presigned URL signed over UNSIGNED-PAYLOAD, for a service whose usual presigned
/// payload line is the body's hash, with the body still streaming: the hash guess cannot
/// be made, so the UNSIGNED-PAYLOAD guess must still be tried.
#[test]
fn presigned_unsigned_payload_with_a_streamed_body() {
    let s = signed(
        "PUT",
        "/blob",
        &[],
        b"",
        Opts {
            unsigned: true,
            ..Opts::presigned()
        },
    );
    let req = Request {
        body: Body::Streaming,
        ..s.request()
    };
    let v = verifier();
    let auth = v.parse(&req, T0).unwrap();
    let secret = Secret::from(SECRET);
    let allowed = Credential {
        secret: &secret,
        expires_at: None,
        allow_unsigned_payload: true,
    };
    let verified = v.verify(&req, &auth, &allowed, T0).unwrap();
    assert!(matches!(verified.payload, Payload::Unsigned));
    // Without the permission, a streamed (so possibly non-empty) body is refused.
    let denied = Credential {
        allow_unsigned_payload: false,
        ..allowed
    };
    let e = assert_rejected(v.verify(&req, &auth, &denied, T0), Code::AccessDenied, 403);
    assert!(e.message().contains("UNSIGNED-PAYLOAD"));
    // A header-signed request without x-amz-content-sha256 cannot be checked while streaming.
    let h = signed("PUT", "/blob", &[], b"", Opts::default());
    let req = Request {
        body: Body::Streaming,
        ..h.request()
    };
    let auth = v.parse(&req, T0).unwrap();
    let e = assert_rejected(
        v.verify(&req, &auth, &allowed, T0),
        Code::XAmzContentSHA256Mismatch,
        400,
    );
    assert!(e.message().contains("x-amz-content-sha256"), "{e}");
}

#[test]
fn headers_read_by_name_appear_once_and_as_text() {
    let mut s = signed("GET", "/", &[], b"", Opts::default());
    let date = s.headers["x-amz-date"].clone();
    s.headers.append("x-amz-date", date);
    let e = assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
    assert!(e.message().contains("more than one 'x-amz-date'"), "{e}");
    let mut s = signed("GET", "/", &[], b"", Opts::default());
    s.headers
        .insert("x-amz-date", HeaderValue::from_bytes(b"2023\xff").unwrap());
    let e = assert_rejected(check(&s, T0), Code::IncompleteSignature, 400);
    assert!(e.message().contains("not valid UTF-8"), "{e}");
}

#[test]
fn signed_header_count_is_bounded() {
    let mut policy = Policy::new(["us-east-1"], ["orders"]);
    policy.limits.max_signed_headers = 2;
    let v = Verifier::new(policy);
    let s = signed("GET", "/", &[("x-request-id", "1")], b"", Opts::default());
    let e = assert_rejected(
        check_with(&v, &s, SECRET, None, false, T0),
        Code::IncompleteSignature,
        400,
    );
    assert!(e.message().contains("more than 2 headers"), "{e}");
}

#[test]
fn query_parameter_count_is_bounded() {
    let mut policy = Policy::new(["us-east-1"], ["orders"]);
    policy.limits.max_query_params = 4;
    let v = Verifier::new(policy);
    let ok = signed("GET", "/?a=1&b=2&c=3&d=4", &[], b"", Opts::default());
    assert!(check_with(&v, &ok, SECRET, None, false, T0).is_ok());
    let many = signed("GET", "/?a=1&b=2&c=3&d=4&e=5", &[], b"", Opts::default());
    let e = assert_rejected(
        check_with(&v, &many, SECRET, None, false, T0),
        Code::IncompleteSignature,
        400,
    );
    assert!(e.message().contains("more than 4 parameters"), "{e}");
}

#[test]
fn invalid_client_token_id() {
    // The identity stage produces this when it does not know the key.
    let e = Rejection::unknown_access_key("AKIDUNKNOWN");
    assert_eq!(e.code(), Code::InvalidClientTokenId);
    assert_eq!(e.status(), 403);
    assert!(e.message().contains("AKIDUNKNOWN"));
}

#[test]
fn signature_does_not_match() {
    let s = signed(
        "POST",
        "/orders",
        &[("content-type", "application/json")],
        br#"{"id":1}"#,
        Opts::default(),
    );
    let sent = s.headers["authorization"]
        .to_str()
        .unwrap()
        .rsplit_once('=')
        .unwrap()
        .1
        .to_owned();
    let e = assert_rejected(
        check_with(&verifier(), &s, "not-the-secret", None, false, T0),
        Code::SignatureDoesNotMatch,
        403,
    );
    let detail = e.signature_detail().expect("AWS reports what it computed");
    assert!(
        detail.canonical_request.starts_with("POST\n/orders\n\n"),
        "{}",
        detail.canonical_request
    );
    assert!(
        detail
            .string_to_sign
            .starts_with("AWS4-HMAC-SHA256\n20231114T221320Z\n")
    );
    // The signature the gateway expected under that secret appears nowhere in the
    // rejection (it would let a caller forge requests for the key it tried).
    let expected = {
        use hmac::{KeyInit, Mac};
        let key = gateway::sigv4::derive_signing_key(
            &Secret::from("not-the-secret"),
            "20231114",
            "us-east-1",
            "orders",
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&*key).unwrap();
        mac.update(detail.string_to_sign.as_bytes());
        gateway::sigv4::hex(&mac.finalize().into_bytes())
    };
    assert_ne!(expected, sent);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(&expected));
    assert!(!shown.contains("not-the-secret"));
    // Scope, region and service problems are mismatches too, with their own message.
    for (from, to, expect) in [
        ("/us-east-1/", "/eu-west-1/", "region"),
        ("/orders/", "/payments/", "service"),
    ] {
        let mut s2 = signed("GET", "/", &[], b"", Opts::default());
        let auth = s2.headers["authorization"]
            .to_str()
            .unwrap()
            .replace(from, to);
        s2.headers
            .insert("authorization", HeaderValue::from_str(&auth).unwrap());
        let e = assert_rejected(check(&s2, T0), Code::SignatureDoesNotMatch, 403);
        assert!(e.message().contains(expect), "{e}");
    }
}

#[test]
fn request_time_too_skewed() {
    let s = signed("GET", "/", &[], b"", Opts::default());
    assert!(check(&s, T0 + 300).is_ok());
    assert!(check(&s, T0 - 300).is_ok());
    let e = assert_rejected(check(&s, T0 + 301), Code::RequestTimeTooSkewed, 403);
    assert!(e.message().contains("20231114T221320Z"), "{e}");
    assert_rejected(check(&s, T0 - 301), Code::RequestTimeTooSkewed, 403);
    // The window is configurable.
    let mut policy = Policy::new(["us-east-1"], ["orders"]);
    policy.max_skew_secs = 900;
    assert!(check_with(&Verifier::new(policy), &s, SECRET, None, false, T0 + 899).is_ok());
}

#[test]
fn request_expired() {
    let s = signed("GET", "/", &[], b"", Opts::presigned());
    assert!(check(&s, T0 + 60).is_ok());
    let e = assert_rejected(check(&s, T0 + 61), Code::RequestExpired, 400);
    assert!(e.message().contains("presign it again"), "{e}");
    // Presigned in the future beyond the skew window.
    assert_rejected(check(&s, T0 - 301), Code::RequestTimeTooSkewed, 403);
}

#[test]
fn expired_token() {
    let s = signed(
        "GET",
        "/",
        &[],
        b"",
        Opts {
            token: Some("session-token-value"),
            ..Opts::default()
        },
    );
    assert!(check_with(&verifier(), &s, SECRET, Some(T0 + 1), false, T0).is_ok());
    let e = assert_rejected(
        check_with(&verifier(), &s, SECRET, Some(T0), false, T0),
        Code::ExpiredToken,
        400,
    );
    assert!(!e.to_string().contains("session-token-value"));
    // A mismatch report shows the canonical request with the token redacted, in header
    // and presigned requests alike.
    for opts in [
        Opts {
            token: Some("session-token-value"),
            ..Opts::default()
        },
        Opts {
            token: Some("session-token-value"),
            ..Opts::presigned()
        },
    ] {
        let s = signed("GET", "/", &[], b"", opts);
        let e = assert_rejected(
            check_with(&verifier(), &s, "wrong", None, false, T0),
            Code::SignatureDoesNotMatch,
            403,
        );
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("session-token-value"), "{shown}");
        assert!(
            e.signature_detail()
                .unwrap()
                .canonical_request
                .contains("<redacted>")
        );
    }
}

#[test]
fn x_amz_content_sha256_mismatch() {
    let mut s = signed(
        "PUT",
        "/orders/1",
        &[],
        b"{\"qty\":1}",
        Opts {
            checksum: PayloadChecksumKind::XAmzSha256,
            ..Opts::default()
        },
    );
    assert!(check(&s, T0).is_ok());
    s.body = b"{\"qty\":9}".to_vec();
    let e = assert_rejected(check(&s, T0), Code::XAmzContentSHA256Mismatch, 400);
    assert!(e.message().contains("altered"), "{e}");
    // An unsupported payload mode is named as such.
    let mut s = signed(
        "PUT",
        "/",
        &[],
        b"x",
        Opts {
            checksum: PayloadChecksumKind::XAmzSha256,
            ..Opts::default()
        },
    );
    s.headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
    );
    assert!(
        assert_rejected(check(&s, T0), Code::XAmzContentSHA256Mismatch, 400)
            .message()
            .contains("not supported")
    );
}

#[test]
fn access_denied_for_unsigned_payload_unless_allowed() {
    let s = signed(
        "PUT",
        "/blob",
        &[],
        b"payload",
        Opts {
            unsigned: true,
            checksum: PayloadChecksumKind::XAmzSha256,
            ..Opts::default()
        },
    );
    let e = assert_rejected(check(&s, T0), Code::AccessDenied, 403);
    assert!(e.message().contains("UNSIGNED-PAYLOAD"));
    let v = check_with(&verifier(), &s, SECRET, None, true, T0).unwrap();
    assert!(matches!(v.payload, Payload::Unsigned));
    // With an empty body nothing goes unsigned, so no permission is needed.
    let s = signed(
        "GET",
        "/blob",
        &[],
        b"",
        Opts {
            unsigned: true,
            checksum: PayloadChecksumKind::XAmzSha256,
            ..Opts::default()
        },
    );
    assert!(check(&s, T0).is_ok());
}

#[test]
fn incomplete_body() {
    let e = Rejection::new(Code::IncompleteBody, "cut short");
    assert_eq!((e.code().as_str(), e.status()), ("IncompleteBody", 400));
}

#[test]
fn configured_headers_must_be_signed() {
    let mut policy = Policy::new(["us-east-1"], ["orders"]);
    // Configured as a person would write it: the match ignores case.
    policy.required_signed_headers = vec!["X-Pbc-Tenant".into()];
    let v = Verifier::new(policy);
    let mut s = signed("GET", "/", &[], b"", Opts::default());
    s.headers
        .insert("x-pbc-tenant", HeaderValue::from_static("acme"));
    let e = assert_rejected(
        check_with(&v, &s, SECRET, None, false, T0),
        Code::IncompleteSignature,
        400,
    );
    assert!(e.message().contains("x-pbc-tenant"));
    let s = signed(
        "GET",
        "/",
        &[("x-pbc-tenant", "acme")],
        b"",
        Opts::default(),
    );
    assert!(check_with(&v, &s, SECRET, None, false, T0).is_ok());
}

#[test]
fn date_header_instead_of_x_amz_date() {
    // Some signers send the time in `Date` only; the string to sign uses its ISO form.
    let s = signed("GET", "/", &[], b"", Opts::default());
    let auth = s.headers["authorization"]
        .to_str()
        .unwrap()
        .replace("host;x-amz-date", "date;host");
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("orders.internal:8443"));
    h.insert(
        "date",
        HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
    );
    h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let s2 = Signed { headers: h, ..s };
    let req = s2.request();
    let v = verifier();
    let parsed = v.parse(&req, T0).unwrap();
    assert_eq!(parsed.time().iso(), "20231114T221320Z");
    let detail = v.canonical(&req, &parsed).unwrap();
    assert!(
        detail
            .canonical_request
            .contains("date:Tue, 14 Nov 2023 22:13:20 GMT\n")
    );
    assert!(detail.string_to_sign.contains("\n20231114T221320Z\n"));
}
