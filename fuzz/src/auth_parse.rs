//! `auth_parse`: the SigV4 `Authorization` header and presigned-query parser, through
//! `Verifier::parse` (stage one: shape, signed headers, scope and time; no secret).
//!
//! Inputs are mostly well-formed signatures with fuzz-chosen pieces and edits, so the
//! parser's accepting paths are reached as often as its refusals. Checked:
//!
//! - no panic; every refusal has status 400/403 and a message (`check_rejection`);
//! - what is accepted holds together: the access key id has no `/`, the scope is
//!   `date/region/service/aws4_request` (SigV4a: no region, a region set) for an
//!   accepted region and service, the scope date is the request date, the signed headers
//!   are lower-case, sorted, unique, include `host` and are all present, every header
//!   that must be signed is, the time is inside the window, the session token is the one
//!   sent;
//! - an `Authorization` header means the same with its components in reverse order and
//!   other separators;
//! - a presigned query means the same minimally encoded and with every key and value
//!   fully percent-encoded (the parser decodes both).

use arbitrary::{Result, Unstructured};
use gateway::sigv4::{Algorithm, Location, ParsedAuth, Rejection, Request, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::support::{Summary, encode_strict, form_decode};
use crate::{
    ACCESS_KEY_ID, HOST, REGION, SIGNING_TIME, check_rejection, extra_headers, pick, shaped_date,
    signing_unix, verifiers,
};

pub fn run(data: &[u8]) {
    let _ = one(&mut Unstructured::new(data));
}

/// Minimal query encoding: only what would change the split or the decoding.
fn encode_min(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '&' | '=' | '+' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Every byte as `%XX`.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// `good` seven times in eight, else one of `others` (or arbitrary text): most inputs
/// then get past the parser, and its accepting paths are checked as often as its refusals.
fn mostly<'a>(u: &mut Unstructured<'a>, good: &'a str, others: &[&'a str]) -> Result<&'a str> {
    if u.ratio(7, 8)? {
        Ok(good)
    } else {
        pick(u, others)
    }
}

fn hex_of(bytes: &[u8], upper: bool) -> String {
    let h = gateway::sigv4::hex(bytes);
    if upper { h.to_uppercase() } else { h }
}

fn one(u: &mut Unstructured<'_>) -> Result<()> {
    let v4a = u.ratio(1, 4)?;
    let alg = if u.ratio(1, 16)? {
        pick(
            u,
            &[
                "AWS4-HMAC-SHA1",
                "",
                "aws4-hmac-sha256",
                "AWS4-ECDSA-P256-SHA256 ",
            ],
        )?
    } else if v4a {
        "AWS4-ECDSA-P256-SHA256"
    } else {
        "AWS4-HMAC-SHA256"
    };
    let presigned: bool = u.arbitrary()?;
    let now = signing_unix()
        + match u.int_in_range(0..=7u8)? {
            0..=4 => 0,
            5 => *u.choose(&[-900i64, -901, 900, 901, 604_800, 604_801, -1, 1])?,
            6 => i64::from(u.arbitrary::<i32>()?),
            _ => i64::from(u.arbitrary::<i16>()?),
        };
    let date_iso = if u.ratio(1, 8)? {
        shaped_date(u)?
    } else {
        SIGNING_TIME.to_owned()
    };
    let scope_date = date_iso.get(..8).unwrap_or("").to_owned();

    let credential = if u.ratio(1, 10)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        let akid = mostly(u, ACCESS_KEY_ID, &["ASIAEXAMPLE", "", "A/B"])?;
        let date = match mostly(u, "", &["20261121", "2026112a", "-"])? {
            "" => scope_date.as_str(),
            "-" => "",
            other => other,
        };
        let region = mostly(u, REGION, &["eu-west-1", "", "*"])?;
        let service = mostly(u, "svc", &["s3", "s3", "s3express", ""])?;
        let terminal = mostly(u, "aws4_request", &["aws4_request/", "AWS4_REQUEST"])?;
        if v4a != u.ratio(1, 10)? {
            format!("{akid}/{date}/{service}/{terminal}")
        } else {
            format!("{akid}/{date}/{region}/{service}/{terminal}")
        }
    };

    // Headers: host, the date, optional token / region set / payload hash, extras.
    let mut headers: Vec<(HeaderName, String)> = Vec::new();
    if !u.ratio(1, 16)? {
        headers.push((HeaderName::from_static("host"), HOST.to_owned()));
    }
    if !presigned || u.ratio(1, 4)? {
        if u.ratio(1, 8)? {
            let d = pick(
                u,
                &[
                    "Sun, 22 Nov 2026 10:30:00 GMT",
                    "Sunday, 22-Nov-26 10:30:00 GMT",
                    "Sun Nov 22 10:30:00 2026",
                ],
            )?;
            headers.push((HeaderName::from_static("date"), d.to_owned()));
        } else {
            headers.push((HeaderName::from_static("x-amz-date"), date_iso.clone()));
        }
    }
    let token = if u.ratio(1, 4)? {
        Some(u.arbitrary::<&str>()?.trim().to_owned())
    } else {
        None
    };
    let token_in_header = token.is_some() && (!presigned || u.ratio(1, 3)?);
    if let (Some(t), true) = (&token, token_in_header) {
        headers.push((HeaderName::from_static("x-amz-security-token"), t.clone()));
    }
    let region_set = if v4a != u.ratio(1, 8)? {
        Some(mostly(
            u,
            "us-east-1",
            &["*", "us-*", "eu-west-1,us-east-1", "", "eu-*"],
        )?)
    } else {
        None
    };
    let region_set_in_header = region_set.is_some() && (!presigned || u.ratio(1, 3)?);
    if let (Some(r), true) = (region_set, region_set_in_header) {
        headers.push((HeaderName::from_static("x-amz-region-set"), r.to_owned()));
    }
    if u.ratio(1, 3)? {
        let v = pick(
            u,
            &[
                "UNSIGNED-PAYLOAD",
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ],
        )?;
        headers.push((
            HeaderName::from_static("x-amz-content-sha256"),
            v.to_owned(),
        ));
    }
    if u.arbitrary()? {
        headers.extend(extra_headers(u)?);
    }
    if u.ratio(1, 16)? && !headers.is_empty() {
        let i = u.choose_index(headers.len())?;
        let dup = headers[i].clone();
        headers.push(dup);
    }

    // SignedHeaders: the headers sent, sorted, then maybe edited.
    let mut names: Vec<String> = headers.iter().map(|(n, _)| n.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    match u.int_in_range(0..=31u8)? {
        0 if !names.is_empty() => names[0] = names[0].to_uppercase(),
        1 => names.reverse(),
        2 => names.push("x-missing".to_owned()),
        3 if !names.is_empty() => {
            let i = u.choose_index(names.len())?;
            names.remove(i);
        }
        4 if !names.is_empty() => {
            let i = u.choose_index(names.len())?;
            let n = names[i].clone();
            names.insert(i, n);
        }
        5 => names = vec![u.arbitrary::<&str>()?.to_owned()],
        _ => {}
    }
    let signed_headers = names.join(";");

    let signature = if u.ratio(1, 16)? {
        u.arbitrary::<&str>()?.to_owned()
    } else if v4a {
        let n = u.int_in_range(0..=80usize)?;
        hex_of(u.bytes(n)?, u.ratio(1, 4)?)
    } else {
        hex_of(&u.arbitrary::<[u8; 32]>()?, u.ratio(1, 4)?)
    };

    let mut header_map = HeaderMap::new();
    for (n, v) in &headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            header_map.append(n.clone(), v);
        }
    }

    if presigned {
        presigned_case(
            u,
            PresignParts {
                alg,
                credential: &credential,
                date: &date_iso,
                signed_headers: &signed_headers,
                signature: &signature,
                token: token.as_deref().filter(|_| !token_in_header),
                region_set: region_set.filter(|_| !region_set_in_header),
            },
            header_map,
            now,
        )
    } else {
        header_case(
            u,
            alg,
            [
                format!("Credential={credential}"),
                format!("SignedHeaders={signed_headers}"),
                format!("Signature={signature}"),
            ],
            header_map,
            now,
        )
    }
}

fn header_case(
    u: &mut Unstructured<'_>,
    alg: &str,
    parts: [String; 3],
    headers: HeaderMap,
    now: i64,
) -> Result<()> {
    let mut parts = parts.to_vec();
    match u.int_in_range(0..=23u8)? {
        0 => {
            let i = u.choose_index(parts.len())?;
            parts.remove(i);
        }
        1 => {
            let i = u.choose_index(parts.len())?;
            let p = parts[i].clone();
            parts.push(p);
        }
        2 => parts.push(format!(
            "{}={}",
            u.arbitrary::<&str>()?,
            u.arbitrary::<&str>()?
        )),
        3 => parts.insert(1, String::new()),
        _ => {}
    }
    let forward = format!("{alg} {}", parts.join(", "));
    let mut reversed = parts.clone();
    reversed.reverse();
    let backward = format!("{alg} {}", reversed.join(" ,"));
    let query = if u.ratio(1, 4)? {
        u.arbitrary::<&str>()?
    } else {
        ""
    };
    let with = |value: &str| {
        let mut h = headers.clone();
        HeaderValue::from_str(value).ok().map(|v| {
            h.insert(http::header::AUTHORIZATION, v);
            h
        })
    };
    let (Some(a), Some(b)) = (with(&forward), with(&backward)) else {
        return Ok(());
    };
    for v in verifiers() {
        let ra = parse_checked(v, &a, query, now);
        let rb = parse_checked(v, &b, query, now);
        assert_eq!(
            ra, rb,
            "reordering the Authorization components changed the result\n{forward}\n{backward}"
        );
    }
    Ok(())
}

struct PresignParts<'a> {
    alg: &'a str,
    credential: &'a str,
    date: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
    token: Option<&'a str>,
    region_set: Option<&'a str>,
}

fn presigned_case(
    u: &mut Unstructured<'_>,
    p: PresignParts<'_>,
    mut headers: HeaderMap,
    now: i64,
) -> Result<()> {
    let expires = if u.ratio(1, 8)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        mostly(
            u,
            "900",
            &["604800", "604801", "0", "1", "+5", "0900", "-1", "86400"],
        )?
        .to_owned()
    };
    let mut pairs: Vec<(String, String)> = vec![
        ("X-Amz-Algorithm".into(), p.alg.into()),
        ("X-Amz-Credential".into(), p.credential.into()),
        ("X-Amz-Date".into(), p.date.into()),
        ("X-Amz-Expires".into(), expires),
        ("X-Amz-SignedHeaders".into(), p.signed_headers.into()),
        ("X-Amz-Signature".into(), p.signature.into()),
    ];
    if let Some(t) = p.token {
        pairs.push(("X-Amz-Security-Token".into(), t.into()));
    }
    if let Some(r) = p.region_set {
        pairs.push(("X-Amz-Region-Set".into(), r.into()));
    }
    let n = u.int_in_range(0..=3u8)?;
    for _ in 0..n {
        pairs.push((u.arbitrary::<&str>()?.into(), u.arbitrary::<&str>()?.into()));
    }
    match u.int_in_range(0..=23u8)? {
        0 => {
            let i = u.choose_index(pairs.len())?;
            pairs.remove(i);
        }
        1 => {
            let i = u.choose_index(pairs.len())?;
            let d = pairs[i].clone();
            pairs.push(d);
        }
        2 => {
            let i = u.choose_index(pairs.len())?;
            pairs[i].0 = pairs[i].0.to_lowercase();
        }
        _ => {}
    }
    let rotate = u.choose_index(pairs.len())?;
    pairs.rotate_left(rotate);
    if u.ratio(1, 16)? {
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host, Signature=0",
            ),
        );
    }

    let minimal: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_min(k), encode_min(v)))
        .collect();
    let over_encode_keys: bool = u.arbitrary()?;
    let full: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let k = if over_encode_keys {
                encode_all(k)
            } else {
                encode_strict(k.as_bytes(), false)
            };
            format!("{k}={}", encode_strict(v.as_bytes(), false))
        })
        .collect();
    let (qa, qb) = (minimal.join("&"), full.join("&"));
    // The decoded pairs are what both queries say.
    for (a, b) in minimal.iter().zip(&full) {
        let split = |s: &str| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (form_decode(k), form_decode(v))
        };
        assert_eq!(split(a), split(b), "test encoders disagree: {a} / {b}");
    }
    for v in verifiers() {
        let ra = parse_checked(v, &headers, &qa, now);
        let rb = parse_checked(v, &headers, &qb, now);
        assert_eq!(
            ra, rb,
            "re-encoding the presigned query changed the result\n{qa}\n{qb}"
        );
    }
    Ok(())
}

/// Parses; checks the outcome; returns what can be compared across equivalent requests.
fn parse_checked(
    v: &Verifier,
    headers: &HeaderMap,
    query: &str,
    now: i64,
) -> std::result::Result<Summary, gateway::sigv4::Code> {
    let req = Request {
        method: "GET",
        path: "/",
        query,
        headers,
        body: gateway::sigv4::Body::Bytes(b""),
    };
    match v.parse(&req, now) {
        Ok(a) => {
            crate::count(&crate::STATS.parsed);
            check_parsed(v, &req, &a, now);
            Ok(Summary::of(&a))
        }
        Err(e) => {
            check_rejection(&e);
            Err(code_of(&e))
        }
    }
}

fn code_of(e: &Rejection) -> gateway::sigv4::Code {
    e.code()
}

fn check_parsed(v: &Verifier, req: &Request<'_>, a: &ParsedAuth<'_>, now: i64) {
    let policy = v.policy();
    let header_auth = req.headers.contains_key(http::header::AUTHORIZATION);
    assert_eq!(
        a.location(),
        if header_auth {
            Location::Header
        } else {
            Location::Query
        }
    );
    let akid = a.access_key_id();
    assert!(
        !akid.is_empty() && !akid.contains('/'),
        "access key id {akid:?}"
    );
    let date = a.scope_date();
    assert!(
        date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()),
        "scope date {date:?}"
    );
    assert_eq!(date, a.time().date(), "scope date is not the request date");
    let service = a.service();
    assert!(
        policy.services.iter().any(|s| s == service),
        "service {service:?}"
    );
    match a.algorithm() {
        Algorithm::V4 => {
            let region = a.region().expect("SigV4 scope without a region");
            assert!(
                policy.regions.iter().any(|r| r == region),
                "region {region:?}"
            );
            assert_eq!(a.scope(), format!("{date}/{region}/{service}/aws4_request"));
        }
        Algorithm::V4a => {
            assert_eq!(a.region(), None);
            assert!(a.region_set().is_some_and(|s| !s.is_empty()));
            assert_eq!(a.scope(), format!("{date}/{service}/aws4_request"));
        }
    }
    let signed: Vec<&str> = a.signed_headers().collect();
    assert!(signed.len() <= policy.limits.max_signed_headers);
    assert!(
        signed.windows(2).all(|w| w[0] < w[1]),
        "signed headers not sorted/unique: {signed:?}"
    );
    assert!(signed.contains(&"host"), "host not signed: {signed:?}");
    for name in &signed {
        assert!(
            !name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()),
            "signed header {name:?}"
        );
        assert!(
            req.headers.contains_key(*name),
            "signed header {name:?} not sent"
        );
    }
    let mut must = vec!["x-amz-security-token", "x-amz-content-sha256"];
    if header_auth {
        must.push("x-amz-date");
    }
    for name in must {
        if req.headers.contains_key(name) {
            assert!(signed.contains(&name), "{name} sent but not signed");
        }
    }
    let t = a.time().unix();
    let skew = policy.max_skew_secs;
    if header_auth {
        assert!(
            (t - now).abs() <= skew,
            "time {t} outside the window around {now}"
        );
    } else {
        assert!(t - now <= skew, "presigned time {t} in the future of {now}");
    }
    if let (true, Some(h)) = (header_auth, req.headers.get("x-amz-security-token")) {
        let sent = std::str::from_utf8(h.as_bytes()).unwrap().trim();
        assert_eq!(a.session_token(), Some(sent));
    }
}
