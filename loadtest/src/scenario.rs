//! The scenario file: who signs, which routes are called in which mix, what each should
//! get back, and the shares of requests that are made to fail on purpose (a tampered
//! signature, a stale signing time) so the gateway's deny paths are loaded too.
//!
//! ```toml
//! region = "eu-west-1"
//! service = "execute-api"
//!
//! [[credential]]
//! name = "checkout"
//! access_key_id = "AKIADEMOCHECKOUT0001"
//! secret_access_key = "demo+checkout+secret+key+not+for+production"
//!
//! [[credential]]
//! name = "checkout-session"
//! sts = { role_arn = "arn:aws:iam::111122223333:role/CheckoutToOrderRole", using = "checkout" }
//!
//! [[route]]
//! name = "read-order"
//! method = "GET"
//! path = "/order/orders/42"
//! weight = 10
//! credential = "checkout-session"
//!
//! [[route]]
//! name = "catalogue-reads-order"
//! path = "/order/orders/42"
//! credential = "catalogue"
//! expect = { status = 403, code = "AccessDenied" }
//!
//! [deny]
//! tampered = 0.02
//! expired = 0.01
//! ```
//!
//! `loadtest/README.md` documents every key.

use serde::Deserialize;
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// The largest body a route may send (the gateway's default limit is 10 MiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The error code the gateway answers a tampered signature with.
pub const TAMPERED_CODE: &str = "SignatureDoesNotMatch";

/// The error code the gateway answers a request signed an hour ago with (outside the
/// clock-skew window, `[sigv4] max_skew_secs`, 300 s by default).
pub const EXPIRED_CODE: &str = "RequestTimeTooSkewed";

/// How far in the past an `expired` request is signed.
pub const EXPIRED_BY_SECS: u64 = 3600;

/// A parsed and checked scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The SigV4 region requests are signed for (a hint for the command line; the
    /// engine signs for [`crate::engine::Target::region`]).
    pub region: String,
    /// The SigV4 service requests are signed for (likewise a hint).
    pub service: String,
    /// The seed of the random choice of routes and deny shares.
    pub seed: u64,
    /// The named credentials, in file order.
    pub credentials: Vec<NamedCredential>,
    /// The routes, in file order.
    pub routes: Vec<Route>,
    /// The shares of requests made to fail on purpose.
    pub deny: DenyShares,
}

/// Static credentials: what a request is signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary (STS) credentials.
    pub session_token: Option<String>,
}

impl Credentials {
    /// Long-lived credentials, without a session token.
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Credentials {
        Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A credential of the scenario, by name.
#[derive(Clone, Debug)]
pub struct NamedCredential {
    /// Its name, which routes refer to.
    pub name: String,
    /// Where its keys come from.
    pub source: CredentialSource,
}

/// Where a credential's keys come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// Keys written in the scenario (or read from the environment when it was loaded).
    Static(Credentials),
    /// A session the gateway's STS hands out before the run.
    Sts(StsSource),
}

/// A session from the gateway's STS: before the run, `AssumeRole` is called with the
/// static credential `using`, signed for service `sts`.
#[derive(Clone, Debug)]
pub struct StsSource {
    /// The STS path on the target (`/sts`).
    pub endpoint_path: String,
    /// The role to assume.
    pub role_arn: String,
    /// The index in [`Scenario::credentials`] of the static credential that calls
    /// `AssumeRole`.
    pub using: usize,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds`, when set.
    pub duration_secs: Option<u32>,
}

/// What a request should get back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Any 2xx status.
    Allow,
    /// This status, and this `x-amzn-ErrorType` when a code is given.
    Deny {
        /// The status.
        status: u16,
        /// The error code, if checked.
        code: Option<String>,
    },
}

impl Expect {
    /// A denial with a status and code.
    pub fn deny(status: u16, code: &str) -> Expect {
        Expect::Deny {
            status,
            code: Some(code.to_string()),
        }
    }

    /// Whether a response with `status` and error code `code` is this expectation.
    pub fn matches(&self, status: u16, code: Option<&str>) -> bool {
        match self {
            Expect::Allow => (200..300).contains(&status),
            Expect::Deny {
                status: want,
                code: want_code,
            } => status == *want && want_code.as_deref().is_none_or(|c| Some(c) == code),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow => f.write_str("2xx"),
            Expect::Deny { status, code: None } => write!(f, "{status}"),
            Expect::Deny {
                status,
                code: Some(code),
            } => write!(f, "{status} {code}"),
        }
    }
}

/// One route of the mix.
#[derive(Clone, Debug)]
pub struct Route {
    /// Its name in reports.
    pub name: String,
    /// The HTTP method.
    pub method: http::Method,
    /// The path (and query) on the target, starting with `/`.
    pub path: String,
    /// The size of the body sent (a JSON document padded to that size).
    pub body_bytes: usize,
    /// `content-type` of the body (default `application/json` when there is a body).
    pub content_type: Option<String>,
    /// Its weight in the mix.
    pub weight: u32,
    /// The index in [`Scenario::credentials`] of the credential it signs with.
    pub credential: usize,
    /// What it should get back.
    pub expect: Expect,
}

/// The shares of all requests made to fail on purpose, each a fraction in 0..=1. Such
/// a request takes a route by weight, then is spoiled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DenyShares {
    /// Signed, then one hex digit of the signature changed: 403 `SignatureDoesNotMatch`.
    pub tampered: f64,
    /// Signed an hour ago: 403 `RequestTimeTooSkewed`.
    pub expired: f64,
}

impl Scenario {
    /// Reads and checks a scenario file; errors name the file and line.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a scenario; `file` names it in errors (`file:line: ...`).
    pub fn parse(text: &str, file: &str) -> Result<Scenario, String> {
        let at = |span: Option<std::ops::Range<usize>>, msg: &str| -> String {
            match span {
                Some(span) => format!("{file}:{}: {msg}", line_of(text, span.start)),
                None => format!("{file}: {msg}"),
            }
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| at(e.span(), e.message()))?;
        build(raw, &|span, msg| at(Some(span), msg))
    }

    /// A scenario of one allowed route: `method` `path` with a body of `body_bytes`,
    /// signed with `key`, for the demo's region and service (`eu-west-1`,
    /// `execute-api`), no deny shares.
    pub fn single(method: &str, path: &str, body_bytes: usize, key: Credentials) -> Scenario {
        Scenario {
            region: "eu-west-1".to_string(),
            service: "execute-api".to_string(),
            seed: 1,
            credentials: vec![NamedCredential {
                name: "key".to_string(),
                source: CredentialSource::Static(key),
            }],
            routes: vec![Route {
                name: format!("{method} {path}"),
                method: http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET),
                path: path.to_string(),
                body_bytes,
                content_type: None,
                weight: 1,
                credential: 0,
                expect: Expect::Allow,
            }],
            deny: DenyShares::default(),
        }
    }

    /// The same scenario without its deny shares and without the routes that expect a
    /// denial: for targets that authorize nothing (a plain proxy), where every request
    /// is answered 2xx.
    pub fn allowed_only(&self) -> Scenario {
        let mut out = self.clone();
        out.routes.retain(|r| r.expect == Expect::Allow);
        out.deny = DenyShares::default();
        out
    }

    /// The sum of the route weights.
    pub fn total_weight(&self) -> u64 {
        self.routes.iter().map(|r| u64::from(r.weight)).sum()
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let upto = text.get(..offset).unwrap_or(text);
    upto.bytes().filter(|b| *b == b'\n').count() + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    region: Spanned<String>,
    service: Spanned<String>,
    seed: Option<u64>,
    #[serde(default)]
    credential: Vec<Spanned<RawCredential>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    deny: Option<RawDeny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: Spanned<String>,
    access_key_id: Option<String>,
    #[serde(alias = "secret")]
    secret_access_key: Option<String>,
    /// The name of an environment variable holding the secret.
    secret_env: Option<Spanned<String>>,
    session_token: Option<String>,
    sts: Option<Spanned<RawSts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSts {
    #[serde(default = "default_sts_path")]
    endpoint_path: String,
    role_arn: String,
    using: Spanned<String>,
    session_name: Option<String>,
    duration_secs: Option<u32>,
}

fn default_sts_path() -> String {
    "/sts".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    body_bytes: Option<Spanned<usize>>,
    content_type: Option<String>,
    weight: Option<Spanned<u32>>,
    credential: Spanned<String>,
    expect: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    tampered: Option<Spanned<f64>>,
    expired: Option<Spanned<f64>>,
    wrong_pbc: Option<Spanned<toml::Value>>,
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str) -> String;

fn build(raw: RawScenario, at: At<'_>) -> Result<Scenario, String> {
    let region = raw.region.get_ref().trim().to_string();
    if region.is_empty() {
        return Err(at(raw.region.span(), "region is empty"));
    }
    let service = raw.service.get_ref().trim().to_string();
    if service.is_empty() {
        return Err(at(raw.service.span(), "service is empty"));
    }

    // Credentials: names first, so an STS credential may use one defined after it.
    let mut names: Vec<String> = Vec::new();
    for c in &raw.credential {
        let name = c.get_ref().name.get_ref();
        if name.is_empty() {
            return Err(at(c.get_ref().name.span(), "credential name is empty"));
        }
        if names.contains(name) {
            return Err(at(
                c.get_ref().name.span(),
                &format!("credential `{name}` is defined twice"),
            ));
        }
        names.push(name.clone());
    }
    let find = |name: &Spanned<String>, what: &str| -> Result<usize, String> {
        names
            .iter()
            .position(|n| n == name.get_ref())
            .ok_or_else(|| {
                at(
                    name.span(),
                    &format!(
                        "{what} `{}` is not a [[credential]] of this file (known: {})",
                        name.get_ref(),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
            })
    };
    let mut credentials = Vec::new();
    for c in &raw.credential {
        let span = c.span();
        let c = c.get_ref();
        let name = c.name.get_ref().clone();
        let source = match (&c.sts, &c.access_key_id) {
            (Some(_), Some(_)) => {
                return Err(at(
                    span,
                    &format!(
                        "credential `{name}` has both access_key_id and sts: give one (static keys, or a session from the gateway's STS)"
                    ),
                ));
            }
            (None, None) => {
                return Err(at(
                    span,
                    &format!(
                        "credential `{name}` needs access_key_id and secret_access_key, or sts = {{ role_arn = \"...\", using = \"<static credential>\" }}"
                    ),
                ));
            }
            (None, Some(akid)) => {
                let secret = match (&c.secret_access_key, &c.secret_env) {
                    (Some(s), None) => s.clone(),
                    (None, Some(var)) => std::env::var(var.get_ref()).map_err(|_| {
                        at(
                            var.span(),
                            &format!(
                                "credential `{name}`: environment variable {} is not set",
                                var.get_ref()
                            ),
                        )
                    })?,
                    _ => {
                        return Err(at(
                            span,
                            &format!(
                                "credential `{name}` needs exactly one of secret_access_key and secret_env"
                            ),
                        ));
                    }
                };
                if akid.is_empty() || secret.is_empty() {
                    return Err(at(
                        span,
                        &format!("credential `{name}`: empty access key id or secret"),
                    ));
                }
                CredentialSource::Static(Credentials {
                    access_key_id: akid.clone(),
                    secret_access_key: secret,
                    session_token: c.session_token.clone(),
                })
            }
            (Some(sts), None) => {
                if c.secret_access_key.is_some()
                    || c.secret_env.is_some()
                    || c.session_token.is_some()
                {
                    return Err(at(
                        span,
                        &format!(
                            "credential `{name}` uses sts: its keys come from AssumeRole, so it takes no secret or session token"
                        ),
                    ));
                }
                let s = sts.get_ref();
                let using = find(&s.using, "sts.using")?;
                let static_key = raw
                    .credential
                    .get(using)
                    .is_some_and(|u| u.get_ref().sts.is_none());
                if !static_key {
                    return Err(at(
                        s.using.span(),
                        &format!(
                            "sts.using must name a credential with static keys; `{}` is itself an STS session",
                            s.using.get_ref()
                        ),
                    ));
                }
                if !s.endpoint_path.starts_with('/') {
                    return Err(at(sts.span(), "sts.endpoint_path must start with /"));
                }
                if s.role_arn.is_empty() {
                    return Err(at(sts.span(), "sts.role_arn is empty"));
                }
                if let Some(d) = s.duration_secs
                    && !(900..=43200).contains(&d)
                {
                    return Err(at(
                        sts.span(),
                        "sts.duration_secs must be 900..=43200 (STS's own bounds)",
                    ));
                }
                CredentialSource::Sts(StsSource {
                    endpoint_path: s.endpoint_path.clone(),
                    role_arn: s.role_arn.clone(),
                    using,
                    session_name: s
                        .session_name
                        .clone()
                        .unwrap_or_else(|| format!("loadtest-{name}")),
                    duration_secs: s.duration_secs,
                })
            }
        };
        credentials.push(NamedCredential { name, source });
    }

    // Routes.
    let mut routes: Vec<Route> = Vec::new();
    for r in &raw.route {
        let span = r.span();
        let r = r.get_ref();
        let name = r.name.get_ref().clone();
        if name.is_empty() {
            return Err(at(r.name.span(), "route name is empty"));
        }
        if routes.iter().any(|x| x.name == name) || name == "tampered" || name == "expired" {
            return Err(at(
                r.name.span(),
                &format!(
                    "route `{name}` is defined twice (the names `tampered` and `expired` are taken by the deny shares)"
                ),
            ));
        }
        let method = match &r.method {
            None => http::Method::GET,
            Some(m) => http::Method::from_bytes(m.get_ref().as_bytes()).map_err(|_| {
                at(
                    m.span(),
                    &format!("`{}` is not an HTTP method", m.get_ref()),
                )
            })?,
        };
        let path = r.path.get_ref().clone();
        if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(at(
                r.path.span(),
                &format!("path `{path}` must be an absolute path, like /order/orders/42"),
            ));
        }
        let body_bytes = r.body_bytes.as_ref().map_or(0, |b| *b.get_ref());
        if body_bytes > MAX_BODY_BYTES {
            return Err(at(
                r.body_bytes.as_ref().map_or(span.clone(), Spanned::span),
                &format!("body_bytes {body_bytes} is over the limit of {MAX_BODY_BYTES}"),
            ));
        }
        let weight = r.weight.as_ref().map_or(1, |w| *w.get_ref());
        let credential = find(&r.credential, "credential")?;
        let expect = match &r.expect {
            None => Expect::Allow,
            Some(e) => parse_expect(e.get_ref()).map_err(|msg| at(e.span(), &msg))?,
        };
        routes.push(Route {
            name,
            method,
            path,
            body_bytes,
            content_type: r.content_type.clone(),
            weight,
            credential,
            expect,
        });
    }
    if routes.is_empty() {
        return Err(at(0..0, "no [[route]]: give at least one"));
    }
    if routes.iter().all(|r| r.weight == 0) {
        return Err(at(
            raw.route.first().map_or(0..0, Spanned::span),
            "every route has weight 0",
        ));
    }

    // Deny shares.
    let mut deny = DenyShares::default();
    if let Some(d) = &raw.deny {
        if let Some(w) = &d.wrong_pbc {
            return Err(at(
                w.span(),
                "wrong_pbc is not a share: add a [[route]] signed with another PBC's credential and expect = { status = 403, code = \"AccessDenied\" }",
            ));
        }
        for (share, slot) in [
            (&d.tampered, &mut deny.tampered),
            (&d.expired, &mut deny.expired),
        ] {
            if let Some(v) = share {
                let x = *v.get_ref();
                if !(0.0..=1.0).contains(&x) {
                    return Err(at(
                        v.span(),
                        &format!("{x} is not a share: give a fraction of all requests, 0 to 1"),
                    ));
                }
                *slot = x;
            }
        }
        if deny.tampered + deny.expired > 1.0 {
            let span = d
                .expired
                .as_ref()
                .or(d.tampered.as_ref())
                .map_or(0..0, Spanned::span);
            return Err(at(span, "tampered + expired is more than 1"));
        }
    }

    Ok(Scenario {
        region,
        service,
        seed: raw.seed.unwrap_or(1),
        credentials,
        routes,
        deny,
    })
}

fn parse_expect(v: &toml::Value) -> Result<Expect, String> {
    const HELP: &str =
        "expect is \"allow\" or a denial like { status = 403, code = \"AccessDenied\" }";
    match v {
        toml::Value::String(s) if s == "allow" => Ok(Expect::Allow),
        toml::Value::Table(t) => {
            let mut status = None;
            let mut code = None;
            for (k, v) in t {
                match (k.as_str(), v) {
                    ("status", toml::Value::Integer(n)) => {
                        let n = u16::try_from(*n)
                            .ok()
                            .filter(|n| (100..=599).contains(n))
                            .ok_or_else(|| format!("expect.status {n} is not an HTTP status"))?;
                        status = Some(n);
                    }
                    ("code", toml::Value::String(s)) => code = Some(s.clone()),
                    _ => return Err(format!("expect: unexpected key `{k}`; {HELP}")),
                }
            }
            let status = status.ok_or_else(|| format!("expect needs a status; {HELP}"))?;
            if (200..300).contains(&status) {
                return Err(format!(
                    "expect.status {status}: write expect = \"allow\" for a request that should succeed"
                ));
            }
            Ok(Expect::Deny { status, code })
        }
        _ => Err(HELP.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region = "eu-west-1"
service = "execute-api"

[[credential]]
name = "checkout"
access_key_id = "AKIADEMOCHECKOUT0001"
secret_access_key = "s"

[[credential]]
name = "session"
sts = { role_arn = "arn:aws:iam::111122223333:role/CheckoutToOrderRole", using = "checkout" }

[[route]]
name = "read"
path = "/order/orders/42"
weight = 3
credential = "session"

[[route]]
name = "deny"
method = "DELETE"
path = "/order/orders/42"
credential = "checkout"
expect = { status = 403, code = "AccessDenied" }

[deny]
tampered = 0.1
expired = 0.05
"#;

    #[test]
    fn parses_a_full_scenario() {
        let s = Scenario::parse(GOOD, "s.toml").unwrap();
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[0].method, http::Method::GET);
        assert_eq!(s.routes[0].credential, 1);
        assert_eq!(s.routes[1].expect, Expect::deny(403, "AccessDenied"));
        assert!(
            matches!(&s.credentials[1].source, CredentialSource::Sts(x) if x.using == 0 && x.endpoint_path == "/sts")
        );
        assert_eq!(s.deny.tampered, 0.1);
        let a = s.allowed_only();
        assert_eq!(a.routes.len(), 1);
        assert_eq!(a.deny, DenyShares::default());
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD.replace("credential = \"session\"", "credential = \"nobody\"");
        let e = Scenario::parse(&bad, "s.toml").unwrap_err();
        assert!(e.starts_with("s.toml:18: credential `nobody`"), "{e}");
        let bad = GOOD.replace("tampered = 0.1", "tampered = 1.5");
        let e = Scenario::parse(&bad, "s.toml").unwrap_err();
        assert!(e.starts_with("s.toml:28: 1.5 is not a share"), "{e}");
        let bad = GOOD.replace("weight = 3", "wieght = 3");
        let e = Scenario::parse(&bad, "s.toml").unwrap_err();
        assert!(e.starts_with("s.toml:17:") && e.contains("wieght"), "{e}");
        let bad = GOOD.replace("status = 403", "status = 200");
        let e = Scenario::parse(&bad, "s.toml").unwrap_err();
        assert!(e.starts_with("s.toml:25:") && e.contains("allow"), "{e}");
        let bad = GOOD.replace("expired = 0.05", "wrong_pbc = 0.05");
        let e = Scenario::parse(&bad, "s.toml").unwrap_err();
        assert!(e.contains("[[route]]"), "{e}");
    }

    #[test]
    fn expectations_match() {
        assert!(Expect::Allow.matches(200, None));
        assert!(!Expect::Allow.matches(403, Some("AccessDenied")));
        let d = Expect::deny(403, "AccessDenied");
        assert!(d.matches(403, Some("AccessDenied")));
        assert!(!d.matches(403, Some("SignatureDoesNotMatch")));
        assert!(!d.matches(200, None));
    }
}
