//! The official AWS SigV4 and SigV4a signing suite (`../shared/sigv4-test-suite`), one
//! named test per case, mode (header, query) and version: the canonical request and string
//! to sign the gateway computes must equal the suite's byte for byte, and the signed
//! request must verify.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::PathBuf;

use gateway::sigv4::{Body, Code, Credential, Policy, Request, Secret, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the suite's signing time.
const NOW: i64 = 1_440_938_160;

fn suite_dir() -> PathBuf {
    let dir = std::env::var_os("SIGV4_TEST_SUITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/sigv4-test-suite")
        });
    assert!(
        dir.join("v4").is_dir(),
        "the AWS SigV4 test suite is not at {}: check out shared/ beside the repository or set SIGV4_TEST_SUITE",
        dir.display()
    );
    dir
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A request parsed leniently: the suite's files are not always valid HTTP/1.1 (a literal
/// space or raw UTF-8 in the target, folded header lines, no `HTTP/1.1` at all).
struct RawRequest {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> RawRequest {
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.split('\n');
    let request_line = lines.next().unwrap();
    let (method, rest) = request_line.split_once(' ').unwrap();
    // The target runs to the last space, unless the line has no HTTP version.
    let target = match rest.rsplit_once(' ') {
        Some((target, version)) if version.starts_with("HTTP/") => target,
        _ => rest,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            // obs-fold: a continuation joins the previous value with a space (RFC 9112 §5.2).
            let last = pairs.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').unwrap();
            pairs.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    RawRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

impl RawRequest {
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Header,
    Query,
}

impl Mode {
    fn prefix(self) -> &'static str {
        match self {
            Mode::Header => "header",
            Mode::Query => "query",
        }
    }
}

fn run(version: &str, case: &str, mode: Mode) {
    let dir = suite_dir().join(version).join(case);
    let ctx: serde_json::Value = serde_json::from_str(&read(dir.join("context.json"))).unwrap();
    let mut policy = Policy::new(
        [ctx["region"].as_str().unwrap()],
        [ctx["service"].as_str().unwrap()],
    );
    if !ctx["normalize"].as_bool().unwrap() {
        // The unnormalized cases sign the path as sent, as S3 does.
        policy.s3_style_services = vec![ctx["service"].as_str().unwrap().to_owned()];
    }
    let verifier = Verifier::new(policy);
    let secret = Secret::from(ctx["credentials"]["secret_access_key"].as_str().unwrap());
    let credential = Credential {
        secret: &secret,
        expires_at: None,
        allow_unsigned_payload: false,
    };
    let token = ctx["credentials"]["token"].as_str();
    let p = mode.prefix();
    let mut signed = parse_request(&read(dir.join(format!("{p}-signed-request.txt"))));

    if ctx["omit_session_token"].as_bool() == Some(true) {
        // The token was added after signing: the gateway must refuse the request as is.
        let req = signed.request();
        let err = match mode {
            Mode::Header => verifier.parse(&req, NOW).unwrap_err(),
            Mode::Query => {
                let auth = verifier.parse(&req, NOW).unwrap();
                verifier.verify(&req, &auth, &credential, NOW).unwrap_err()
            }
        };
        let want = if mode == Mode::Header {
            Code::IncompleteSignature
        } else {
            Code::SignatureDoesNotMatch
        };
        assert_eq!(err.code(), want, "{err}");
        // Without the unsigned token, the rest of the request verifies.
        signed.headers.remove("x-amz-security-token");
        signed.query = signed
            .query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-Security-Token="))
            .collect::<Vec<_>>()
            .join("&");
    }

    let req = signed.request();
    let auth = verifier
        .parse(&req, NOW)
        .unwrap_or_else(|e| panic!("parse: {e}"));
    assert_eq!(auth.access_key_id(), "AKIDEXAMPLE");
    if ctx["omit_session_token"].as_bool() != Some(true) {
        assert_eq!(auth.session_token(), token);
    }
    let detail = verifier.canonical(&req, &auth).unwrap();
    assert_eq!(
        detail.canonical_request,
        read(dir.join(format!("{p}-canonical-request.txt"))),
        "canonical request"
    );
    assert_eq!(
        detail.string_to_sign,
        read(dir.join(format!("{p}-string-to-sign.txt"))),
        "string to sign"
    );

    let verified = verifier
        .verify(&req, &auth, &credential, NOW)
        .unwrap_or_else(|e| panic!("verify: {e}"));
    assert_eq!(verified.access_key_id(), "AKIDEXAMPLE");
    assert_eq!(verified.service(), "service");

    // The suite's signature file holds the signature too (SigV4a: another valid one,
    // since ECDSA signatures are randomized): put it in the request and verify again.
    let file_signature = read(dir.join(format!("{p}-signature.txt")));
    let sent_signature = signature_of(&signed, mode);
    if version == "v4" {
        assert_eq!(sent_signature, file_signature);
    }
    for (signature, should_verify) in [
        (file_signature.clone(), true),
        (tamper(&file_signature), false),
    ] {
        let mut copy = parse_request(&read(dir.join(format!("{p}-signed-request.txt"))));
        copy.headers = signed.headers.clone();
        copy.query = signed.query.clone();
        replace_signature(&mut copy, mode, &sent_signature, &signature);
        let req = copy.request();
        let auth = verifier.parse(&req, NOW).unwrap();
        match (
            verifier.verify(&req, &auth, &credential, NOW),
            should_verify,
        ) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                assert_eq!(e.code(), Code::SignatureDoesNotMatch);
                let d = e
                    .signature_detail()
                    .expect("a mismatch reports what was computed");
                // The report redacts the session token, raw (header) or encoded (query).
                let mut want = detail.canonical_request.clone();
                if let Some(t) = token {
                    let encoded = t
                        .replace('/', "%2F")
                        .replace('+', "%2B")
                        .replace('=', "%3D");
                    want = want
                        .replace(&encoded, "<redacted>")
                        .replace(t, "<redacted>");
                    assert!(!format!("{e:?}").contains(t));
                }
                assert_eq!(d.canonical_request, want);
                assert_eq!(d.string_to_sign, detail.string_to_sign);
                assert!(!e.to_string().contains(SECRET));
            }
            (r, _) => panic!("signature {signature}: expected verify={should_verify}, got {r:?}"),
        }
    }
}

fn signature_of(r: &RawRequest, mode: Mode) -> String {
    match mode {
        Mode::Header => {
            let auth = r.headers["authorization"].to_str().unwrap();
            auth.rsplit_once("Signature=").unwrap().1.to_owned()
        }
        Mode::Query => r
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("X-Amz-Signature="))
            .unwrap()
            .to_owned(),
    }
}

fn replace_signature(r: &mut RawRequest, mode: Mode, old: &str, new: &str) {
    match mode {
        Mode::Header => {
            let auth = r.headers["authorization"]
                .to_str()
                .unwrap()
                .replace(old, new);
            r.headers
                .insert("authorization", HeaderValue::from_str(&auth).unwrap());
        }
        Mode::Query => r.query = r.query.replace(old, new),
    }
}

/// Flips one bit in the middle of a hex signature, keeping it well-formed.
fn tamper(hex: &str) -> String {
    let mut b = hex.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

macro_rules! suite {
    ($($name:ident => $dir:literal),* $(,)?) => {
        /// Every case folder the suite has, so none is silently left out.
        const CASES: &[&str] = &[$($dir),*];
        mod v4_header { $(#[test] fn $name() { super::run("v4", $dir, super::Mode::Header) })* }
        mod v4_query { $(#[test] fn $name() { super::run("v4", $dir, super::Mode::Query) })* }
        mod v4a_header { $(#[test] fn $name() { super::run("v4a", $dir, super::Mode::Header) })* }
        mod v4a_query { $(#[test] fn $name() { super::run("v4a", $dir, super::Mode::Query) })* }
    };
}

suite! {
    get_header_key_duplicate => "get-header-key-duplicate",
    get_header_value_multiline => "get-header-value-multiline",
    get_header_value_order => "get-header-value-order",
    get_header_value_trim => "get-header-value-trim",
    get_relative_normalized => "get-relative-normalized",
    get_relative_relative_normalized => "get-relative-relative-normalized",
    get_relative_relative_unnormalized => "get-relative-relative-unnormalized",
    get_relative_unnormalized => "get-relative-unnormalized",
    get_slash_dot_slash_normalized => "get-slash-dot-slash-normalized",
    get_slash_dot_slash_unnormalized => "get-slash-dot-slash-unnormalized",
    get_slash_normalized => "get-slash-normalized",
    get_slash_pointless_dot_normalized => "get-slash-pointless-dot-normalized",
    get_slash_pointless_dot_unnormalized => "get-slash-pointless-dot-unnormalized",
    get_slash_unnormalized => "get-slash-unnormalized",
    get_slashes_normalized => "get-slashes-normalized",
    get_slashes_unnormalized => "get-slashes-unnormalized",
    get_space_normalized => "get-space-normalized",
    get_space_unnormalized => "get-space-unnormalized",
    get_unreserved => "get-unreserved",
    get_utf8 => "get-utf8",
    get_vanilla => "get-vanilla",
    get_vanilla_empty_query_key => "get-vanilla-empty-query-key",
    get_vanilla_query => "get-vanilla-query",
    get_vanilla_query_order_encoded => "get-vanilla-query-order-encoded",
    get_vanilla_query_order_key_case => "get-vanilla-query-order-key-case",
    get_vanilla_query_unreserved => "get-vanilla-query-unreserved",
    get_vanilla_utf8_query => "get-vanilla-utf8-query",
    get_vanilla_with_session_token => "get-vanilla-with-session-token",
    post_header_key_case => "post-header-key-case",
    post_header_key_sort => "post-header-key-sort",
    post_header_value_case => "post-header-value-case",
    post_sts_header_after => "post-sts-header-after",
    post_sts_header_before => "post-sts-header-before",
    post_vanilla => "post-vanilla",
    post_vanilla_empty_query_value => "post-vanilla-empty-query-value",
    post_vanilla_query => "post-vanilla-query",
    post_x_www_form_urlencoded => "post-x-www-form-urlencoded",
    post_x_www_form_urlencoded_parameters => "post-x-www-form-urlencoded-parameters",
}

#[test]
fn every_suite_case_is_listed() {
    for version in ["v4", "v4a"] {
        let mut found: Vec<String> = std::fs::read_dir(suite_dir().join(version))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        found.sort();
        let mut listed: Vec<&str> = CASES.to_vec();
        listed.sort();
        assert_eq!(found, listed, "{version}");
    }
}

/// smithy-rs: a non-S3 path's `%3A` is encoded again as `%253A`.
#[test]
fn smithy_double_url_encode() {
    let dir = suite_dir().join("smithy-rs-extra/v4/double-url-encode");
    let signed = parse_request(&read(dir.join("header-signed-request.txt")));
    let verifier = Verifier::new(Policy::new(["us-east-2"], ["lambda"]));
    let now = 1_620_747_645; // 2021-05-11T15:40:45Z
    let req = signed.request();
    let auth = verifier.parse(&req, now).unwrap();
    let detail = verifier.canonical(&req, &auth).unwrap();
    assert_eq!(
        detail.canonical_request,
        read(dir.join("header-canonical-request.txt"))
    );
    assert_eq!(
        detail.string_to_sign,
        read(dir.join("header-string-to-sign.txt")).trim_end()
    );
    let secret = Secret::from(SECRET);
    let credential = Credential {
        secret: &secret,
        expires_at: None,
        allow_unsigned_payload: false,
    };
    verifier.verify(&req, &auth, &credential, now).unwrap();
}

/// smithy-rs: `@` and an encoded `=` in an API Gateway path. Only the path line of the
/// file is trustworthy (see the suite's README).
#[test]
fn smithy_double_encode_path() {
    let dir = suite_dir().join("smithy-rs-extra/v4/double-encode-path");
    let mut raw = parse_request(&read(dir.join("request.txt")));
    raw.headers.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/execute-api/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000",
        ),
    );
    let verifier = Verifier::new(Policy::new(["us-east-1"], ["execute-api"]));
    let req = raw.request();
    let auth = verifier.parse(&req, NOW).unwrap();
    let detail = verifier.canonical(&req, &auth).unwrap();
    let want = read(dir.join("header-canonical-request.txt"));
    assert_eq!(detail.canonical_request.lines().nth(1), want.lines().nth(1));
    assert_eq!(
        detail.canonical_request.lines().nth(1),
        Some("/test/%40connections/JBDvjfGEIAMCERw%253D")
    );
}
