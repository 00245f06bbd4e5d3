//! `canonical`: canonicalization (path normalization and encoding, query canonicalization,
//! header values, the payload line, the string to sign), through the public
//! `Verifier::canonical` (what the gateway says a signer must have produced; no secret).
//!
//! Requests carry a well-formed header signature (or presigned query) so they parse;
//! method, path, query, header values and body are fuzzed. The canonical request the
//! gateway builds is compared with one built here from the SigV4 rules:
//!
//! - path, non-S3 services: RFC 3986 dot-segment removal plus empty-segment collapsing,
//!   then strict encoding keeping `/`: only unreserved characters, `/` and `%XX`
//!   (uppercase) remain, no empty/`.`/`..` segment; S3 services: the path as sent, only
//!   bytes <= 0x20 and 0x7f encoded; S3 canonicalization is idempotent;
//! - query: pairs form-decoded (`%XX`, `+`), strictly re-encoded, sorted; only unreserved
//!   characters and `%XX` remain; canonicalizing the canonical query again gives it back
//!   (idempotence); a presigned request leaves out `X-Amz-Signature`;
//! - header lines: `name:value[,value]` with values trimmed and space runs collapsed;
//! - the signed header list and the payload line; the string to sign is
//!   `AWS4-HMAC-SHA256\ntime\nscope\nhex(sha256(canonical request))`.

use arbitrary::{Result, Unstructured};
use gateway::sigv4::{Body, Request, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::support::{encode_strict, form_decode, is_strictly_encoded};
use crate::{ACCESS_KEY_ID, HOST, REGION, SIGNING_TIME, check_rejection, signing_unix, verifiers};

pub fn run(data: &[u8]) {
    let _ = one(&mut Unstructured::new(data));
}

const PATH_PIECES: &[&str] = &[
    "a", "b", ".", "..", "", "...", "%2E", "%2e%2E", "%2F", "a b", "\u{1234}", "~", "%", "%zz",
    "a+b", ";x=1", "@", "{}", "\t", "\u{7f}",
];
const QUERY_PIECES: &[&str] = &[
    "a",
    "b",
    "A",
    "%41",
    "%4",
    "%zz",
    "+",
    "%20",
    " ",
    "\u{1234}",
    "=",
    "&",
    "X-Amz-Meta",
    "X-Amz-Signature",
    "%2B",
    "~",
    "-_.",
    "%e1%88%b4",
    "%",
    "/",
    "?",
];

fn pieces(u: &mut Unstructured<'_>, from: &[&str], max: usize) -> Result<String> {
    let n = u.int_in_range(0..=max)?;
    let mut s = String::new();
    for _ in 0..n {
        if u.ratio(1, 8)? {
            s.push_str(u.arbitrary::<&str>()?);
        } else {
            s.push_str(u.choose(from)?);
        }
    }
    Ok(s)
}

/// RFC 3986 §5.2.4 dot-segment removal, also dropping empty segments (SigV4 for non-S3
/// services); a path ending in `/`, `/.` or `/..` keeps a trailing slash.
fn normalize(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out: String = kept.iter().map(|s| format!("/{s}")).collect();
    if out.is_empty() || path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..") {
        out.push('/');
    }
    out
}

/// S3 paths: as sent, only bytes no request line can hold encoded.
fn s3_path(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut out = Vec::new();
    for &b in path.as_bytes() {
        if b <= b' ' || b == 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .filter(|(k, _)| !(presigned && *k == "X-Amz-Signature"))
        .map(|(k, v)| {
            (
                encode_strict(&form_decode(k), false),
                encode_strict(&form_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn header_line(values: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let v = v.trim_ascii();
        let mut prev_space = false;
        for &b in v {
            if !(b == b' ' && prev_space) {
                out.push(b);
            }
            prev_space = b == b' ';
        }
    }
    out
}

struct Built {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    service: &'static str,
    presigned: bool,
    signed: Vec<String>,
    payload_header: Option<&'static str>,
}

fn build(u: &mut Unstructured<'_>) -> Result<Built> {
    let s3: bool = u.arbitrary()?;
    let service = if s3 { "s3" } else { "svc" };
    let presigned = u.ratio(1, 4)?;
    let method = if u.ratio(1, 8)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        u.choose(&["GET", "PUT", "POST", "DELETE", "HEAD"])?
            .to_string()
    };
    let path = if u.ratio(1, 4)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        let mut p = String::new();
        if !u.ratio(1, 8)? {
            p.push('/');
        }
        let n = u.int_in_range(0..=6)?;
        for i in 0..n {
            if i > 0 {
                p.push('/');
            }
            p.push_str(&pieces(u, PATH_PIECES, 2)?);
        }
        p
    };
    let mut query = if u.ratio(1, 4)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        let n = u.int_in_range(0..=5)?;
        let mut pairs = Vec::new();
        for _ in 0..n {
            let k = pieces(u, QUERY_PIECES, 3)?;
            let v = pieces(u, QUERY_PIECES, 3)?;
            pairs.push(if u.ratio(1, 6)? {
                k
            } else {
                format!("{k}={v}")
            });
        }
        pairs.join("&")
    };

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    let payload_header = match u.int_in_range(0..=3u8)? {
        0 => Some("UNSIGNED-PAYLOAD"),
        1 => Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        _ => None,
    };
    if let Some(p) = payload_header {
        headers.insert("x-amz-content-sha256", HeaderValue::from_static(p));
    }
    let n = u.int_in_range(0..=4)?;
    for _ in 0..n {
        let name = *u.choose(&["x-a", "x-b", "content-type", "x-amz-meta-c", "accept"])?;
        // Visible ASCII, spaces and tabs: the canonical text is then exact UTF-8.
        let raw: &[u8] = u.arbitrary()?;
        let value: Vec<u8> = raw
            .iter()
            .map(|&b| match b % 100 {
                0..=9 => b' ',
                10 => b'\t',
                _ => b' ' + 1 + (b % 94),
            })
            .collect();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.append(HeaderName::from_static(name), v);
        }
    }
    let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    let credential = format!("{ACCESS_KEY_ID}/20261122/{REGION}/{service}/aws4_request");
    let signature = "0".repeat(64);
    if presigned {
        signed.sort();
        let mut extra = vec![
            "X-Amz-Algorithm=AWS4-HMAC-SHA256".to_owned(),
            format!(
                "X-Amz-Credential={}",
                encode_strict(credential.as_bytes(), false)
            ),
            format!("X-Amz-Date={SIGNING_TIME}"),
            "X-Amz-Expires=900".to_owned(),
            format!(
                "X-Amz-SignedHeaders={}",
                encode_strict(signed.join(";").as_bytes(), false)
            ),
            format!("X-Amz-Signature={signature}"),
        ];
        let at = u.int_in_range(0..=extra.len())?;
        if !query.is_empty() {
            extra.insert(at, query);
        }
        query = extra.join("&");
    } else {
        headers.insert("x-amz-date", HeaderValue::from_static(SIGNING_TIME));
        signed.push("x-amz-date".to_owned());
        signed.sort();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={}, Signature={signature}",
            signed.join(";")
        );
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&auth).unwrap(),
        );
    }
    let body = u.arbitrary::<&[u8]>()?.to_vec();
    Ok(Built {
        method,
        path,
        query,
        headers,
        body,
        service,
        presigned,
        signed,
        payload_header,
    })
}

/// The gateway's canonical request and string to sign, if the request parses.
fn gateway_canonical(v: &Verifier, b: &Built, query: &str, path: &str) -> Option<(String, String)> {
    let req = Request {
        method: &b.method,
        path,
        query,
        headers: &b.headers,
        body: Body::Bytes(&b.body),
    };
    let auth = match v.parse(&req, signing_unix()) {
        Ok(a) => a,
        Err(e) => {
            check_rejection(&e);
            return None;
        }
    };
    match v.canonical(&req, &auth) {
        Ok(d) => Some((d.canonical_request, d.string_to_sign)),
        Err(e) => {
            check_rejection(&e);
            None
        }
    }
}

fn one(u: &mut Unstructured<'_>) -> Result<()> {
    let b = build(u)?;
    let v = &verifiers()[0];
    let Some((creq, sts)) = gateway_canonical(v, &b, &b.query, &b.path) else {
        return Ok(());
    };
    crate::count(&crate::STATS.parsed);

    // The canonical request built here.
    let path_line = if b.service == "s3" {
        s3_path(&b.path)
    } else {
        encode_strict(normalize(&b.path).as_bytes(), true)
    };
    let query_line = canonical_query(&b.query, b.presigned);
    let mut want = Vec::new();
    want.extend_from_slice(b.method.as_bytes());
    want.push(b'\n');
    want.extend_from_slice(path_line.as_bytes());
    want.push(b'\n');
    want.extend_from_slice(query_line.as_bytes());
    want.push(b'\n');
    for name in &b.signed {
        let values: Vec<&[u8]> = b
            .headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        want.extend_from_slice(name.as_bytes());
        want.push(b':');
        want.extend_from_slice(&header_line(&values));
        want.push(b'\n');
    }
    want.push(b'\n');
    want.extend_from_slice(b.signed.join(";").as_bytes());
    want.push(b'\n');
    let payload = match (b.presigned, b.payload_header) {
        (true, _) if b.service == "s3" => "UNSIGNED-PAYLOAD".to_owned(),
        (false, Some(p)) => p.to_owned(),
        _ => gateway::sigv4::hex(&Sha256::digest(&b.body)),
    };
    want.extend_from_slice(payload.as_bytes());
    let want = String::from_utf8_lossy(&want).into_owned();
    assert_eq!(
        creq, want,
        "canonical request differs from the SigV4 rules\npath {:?}\nquery {:?}",
        b.path, b.query
    );

    // Shape of the canonical path and query.
    if b.service != "s3" {
        assert!(path_line.starts_with('/'));
        assert!(
            is_strictly_encoded(&path_line, true),
            "path line {path_line:?}"
        );
        let segs: Vec<&str> = path_line.split('/').skip(1).collect();
        for (i, s) in segs.iter().enumerate() {
            assert!(*s != "." && *s != "..", "dot segment left in {path_line:?}");
            assert!(
                !s.is_empty() || i + 1 == segs.len(),
                "empty segment in {path_line:?}"
            );
        }
    }
    for pair in query_line.split('&').filter(|p| !p.is_empty()) {
        let (k, val) = pair.split_once('=').expect("canonical pair without '='");
        assert!(
            is_strictly_encoded(k, false) && is_strictly_encoded(val, false),
            "{pair:?}"
        );
    }

    // The string to sign.
    let scope = format!("20261122/{REGION}/{}/aws4_request", b.service);
    let hash = gateway::sigv4::hex(&Sha256::digest(creq.as_bytes()));
    if !creq.contains('\u{FFFD}') {
        assert_eq!(
            sts,
            format!("AWS4-HMAC-SHA256\n{SIGNING_TIME}\n{scope}\n{hash}")
        );
    }

    // Idempotence: the canonical query (and an S3 canonical path) canonicalize to
    // themselves. (A presigned request's query carries its X-Amz-* parameters, which
    // the canonical query keeps but for the signature: only header-signed requests.)
    if !b.presigned {
        let path_again = if b.service == "s3" {
            path_line.as_str()
        } else {
            b.path.as_str()
        };
        if let Some((again, _)) = gateway_canonical(v, &b, &query_line, path_again) {
            let line = |c: &str, n: usize| c.split('\n').nth(n).map(str::to_owned);
            let skip = b.method.matches('\n').count();
            assert_eq!(
                line(&again, skip + 2),
                Some(query_line.clone()),
                "canonicalizing the canonical query changed it"
            );
            assert_eq!(
                line(&again, skip + 1),
                Some(path_line.clone()),
                "canonicalizing again changed the path"
            );
        }
    }
    Ok(())
}
