//! `sts_request`: the STS endpoint's Query-protocol parsing
//! (`gateway::sts::endpoint::request_params`: query string plus form body) and the checks
//! that need no caller or role (`check_params`: Version, Action, supported parameters,
//! session name, source identity, session tags, DurationSeconds), and the XML escaping
//! of echoed input (`escape`).
//!
//! Half the inputs are raw query and body text; half are parameter sets generated from
//! the fuzz data (mostly real STS parameter names and plausible values), encoded in
//! fuzz-chosen ways and split between the query and the body. Checked:
//!
//! - no panic; every refusal is a 400 with an AWS code and a message;
//! - raw text parses exactly as a reference form decoder says (strict `%XX`, `+` as a
//!   space, UTF-8, no repeated parameter, the body only for a form or a POST with one);
//! - a generated parameter set comes back unchanged however it is encoded and split;
//! - accepted checks give a duration in [900, the role's limit (1 h when chained)] and
//!   at most 50 session tags with distinct keys (ignoring case), none `aws:`-prefixed;
//! - `escape` leaves no markup character and only XML 1.0 characters, and unescapes to
//!   the input (characters XML cannot carry as U+FFFD).

use std::collections::HashMap;

use arbitrary::{Result, Unstructured};
use gateway::error::GatewayError;
use gateway::sts::endpoint::{CheckedParams, check_params, escape, request_params};
use http::{HeaderMap, HeaderValue, Method};

use crate::pick;
use crate::support::encode_strict;

pub fn run(data: &[u8]) {
    let _ = one(&mut Unstructured::new(data));
}

fn check_error(e: &GatewayError) {
    assert_eq!(e.status().as_u16(), 400, "{} {}", e.code(), e.message());
    assert!(!e.code().is_empty() && !e.message().is_empty());
}

/// Strict form decoding: `+` is a space, `%` must start two hex digits, UTF-8 result.
fn ref_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                if !h.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn ref_form(text: &str, into: &mut HashMap<String, String>) -> Option<()> {
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (ref_decode(k)?, ref_decode(v)?);
        if into.insert(k, v).is_some() {
            return None;
        }
    }
    Some(())
}

fn reference(
    query: &str,
    content_type: Option<&str>,
    method: &Method,
    body: &[u8],
) -> Option<HashMap<String, String>> {
    let mut params = HashMap::new();
    ref_form(query, &mut params)?;
    let is_form = content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if is_form || (!body.is_empty() && *method == Method::POST) {
        ref_form(std::str::from_utf8(body).ok()?, &mut params)?;
    }
    Some(params)
}

const KEYS: &[&str] = &[
    "Action",
    "Version",
    "RoleArn",
    "RoleSessionName",
    "DurationSeconds",
    "ExternalId",
    "SourceIdentity",
    "WebIdentityToken",
    "Request",
    "Tags.member.1.Key",
    "Tags.member.1.Value",
    "Tags.member.2.Key",
    "Tags.member.2.Value",
    "Tags.member.3.Key",
    "Tags.member.51.Key",
    "Tags.member.x.Key",
    "Policy",
    "X-Amz-Date",
];

fn value_for<'a>(u: &mut Unstructured<'a>, key: &str) -> Result<&'a str> {
    Ok(match key {
        "Action" => pick(
            u,
            &[
                "AssumeRole",
                "GetCallerIdentity",
                "AssumeRoleWithWebIdentity",
                "AssumeRoleWithAWSIdentity",
                "Nope",
            ],
        )?,
        "Version" => {
            if u.ratio(7, 8)? {
                "2011-06-15"
            } else {
                pick(u, &["2012-01-01", ""])?
            }
        }
        "DurationSeconds" => pick(
            u,
            &[
                "900",
                "3600",
                "43200",
                "899",
                "3601",
                "x",
                "-1",
                "+900",
                "99999999999999999999",
            ],
        )?,
        "RoleSessionName" | "SourceIdentity" => pick(
            u,
            &["pod-7@checkout", "a", "has space", "x_y+z=w,v.u@t-s", ""],
        )?,
        k if k.ends_with(".Key") => pick(u, &["team", "Team", "aws:x", "AWS:Y", "", "env"])?,
        _ => u.arbitrary()?,
    })
}

fn one(u: &mut Unstructured<'_>) -> Result<()> {
    let method = u.choose(&[Method::POST, Method::GET, Method::PUT])?.clone();
    let content_type = match u.int_in_range(0..=3u8)? {
        0 => None,
        1 | 2 => Some("application/x-www-form-urlencoded; charset=utf-8"),
        _ => Some(pick(
            u,
            &[
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json",
            ],
        )?),
    };
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(http::header::CONTENT_TYPE, ct);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());

    let (query, body, expected): (String, Vec<u8>, Option<HashMap<String, String>>) =
        if u.arbitrary()? {
            let query: &str = u.arbitrary()?;
            let body: &[u8] = u.arbitrary()?;
            (query.to_owned(), body.to_vec(), None)
        } else {
            let mut params: Vec<(String, String)> = Vec::new();
            // Version and Action most of the time, so the checks behind them are reached.
            for key in ["Version", "Action"] {
                if !u.ratio(1, 8)? {
                    let value = value_for(u, key)?;
                    params.push((key.to_owned(), value.to_owned()));
                }
            }
            let n = u.int_in_range(0..=8)?;
            for _ in 0..n {
                let key = if u.ratio(1, 8)? {
                    u.arbitrary::<&str>()?
                } else {
                    *u.choose(KEYS)?
                };
                if params.iter().any(|(k, _)| k == key) {
                    continue;
                }
                let value = value_for(u, key)?;
                params.push((key.to_owned(), value.to_owned()));
            }
            let body_ok = content_type
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
                || method == Method::POST;
            let mut q = Vec::new();
            let mut b = Vec::new();
            for (k, v) in &params {
                let enc = |s: &str, plus: bool| {
                    let e = encode_strict(s.as_bytes(), false);
                    if plus { e.replace("%20", "+") } else { e }
                };
                let plus: bool = u.arbitrary()?;
                let pair = format!("{}={}", enc(k, plus), enc(v, plus));
                if body_ok && u.arbitrary()? {
                    b.push(pair);
                } else {
                    q.push(pair);
                }
            }
            if u.ratio(1, 8)? {
                q.push(String::new());
            }
            let body = b.join("&").into_bytes();
            let expected = Some(params.into_iter().collect());
            (q.join("&"), body, expected)
        };

    let got = request_params(&query, &headers, &method, &body);
    let want = reference(&query, content_type, &method, &body);
    match &got {
        Ok(p) => assert_eq!(Some(p), want.as_ref(), "query {query:?} body {body:?}"),
        Err(e) => {
            check_error(e);
            assert_eq!(e.code(), "InvalidParameterValue");
            assert!(
                want.is_none(),
                "refused ({}) what the reference accepts: {want:?}",
                e.message()
            );
        }
    }
    if let Some(expected) = expected {
        assert_eq!(
            got.as_ref().ok(),
            Some(&expected),
            "a parameter set did not come back"
        );
    }

    if let Ok(params) = &got {
        crate::count(&crate::STATS.parsed);
        let role_max = *u.choose(&[900i64, 3600, 7200, 43200])?;
        let chained: bool = u.arbitrary()?;
        match check_params(params, role_max, chained) {
            Ok(CheckedParams {
                action,
                tags,
                duration_secs: duration,
            }) => {
                crate::count(&crate::STATS.accepted);
                assert_eq!(
                    params.get("Version").map(String::as_str),
                    Some("2011-06-15")
                );
                assert_eq!(params.get("Action"), Some(&action));
                let max = if chained {
                    role_max.min(3600)
                } else {
                    role_max
                };
                assert!(
                    (900..=max).contains(&duration),
                    "duration {duration} max {max}"
                );
                assert!(tags.len() <= 50);
                for (i, (k, v)) in tags.iter().enumerate() {
                    assert!(!k.is_empty() && k.len() <= 128 && v.len() <= 256);
                    assert!(
                        !k.to_ascii_lowercase().starts_with("aws:"),
                        "reserved tag key {k}"
                    );
                    assert!(
                        tags[..i]
                            .iter()
                            .all(|(seen, _)| !seen.eq_ignore_ascii_case(k))
                    );
                }
            }
            Err(e) => {
                check_error(&e);
                assert!(matches!(
                    e.code(),
                    "MissingParameter"
                        | "InvalidParameterValue"
                        | "MissingAction"
                        | "ValidationError"
                ));
            }
        }
        for v in params.values().chain(params.keys()) {
            check_escape(v);
        }
    }
    check_escape(&query);
    Ok(())
}

fn check_escape(s: &str) {
    let e = escape(s);
    assert!(!e.contains(['<', '>', '"', '\'']), "markup left in {e:?}");
    for (i, _) in e.match_indices('&') {
        let rest = &e[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|ent| rest.starts_with(ent)),
            "a bare & in {e:?}"
        );
    }
    assert!(e.chars().all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)));
    let back = e
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let want: String = s
        .chars()
        .map(|c| if matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..) { c } else { '\u{FFFD}' })
        .collect();
    assert_eq!(back, want);
}
