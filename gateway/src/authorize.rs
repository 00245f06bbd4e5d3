//! Stage: authorize. Route the request to a target PBC (by `Host`, or by path
//! prefix), then ask the allow matrix. The outcome is a [`Permit`], the only thing
//! the forwarder accepts.

use crate::config::TargetConfig;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::identity::Principal;
use authz_rules::{Caller, Effect, Reason, Request as AuthzRequest, Rules};
use http::request::Parts;
use std::collections::HashMap;

/// Where requests go, built once from the targets in the config.
#[derive(Debug, Default)]
pub struct Routes {
    by_host: HashMap<String, Vec<usize>>,
    targets: Vec<RouteTarget>,
}

#[derive(Debug)]
struct RouteTarget {
    name: String,
    host: Option<String>,
    prefix: Option<String>,
}

/// A request's route: its target and the path the upstream (and the matrix) sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The target PBC.
    pub target: String,
    /// The path and query to request upstream, the route's prefix removed.
    pub path_and_query: String,
}

/// Permission to forward one request: who, where, and the rule that allowed it.
#[derive(Clone, Debug)]
pub struct Permit {
    /// The verified caller.
    pub principal: Principal,
    /// The caller's PBC, if the principal belongs to one.
    pub caller_pbc: Option<String>,
    /// The route.
    pub route: Route,
    /// The allow rule.
    pub rule_id: String,
}

impl Routes {
    /// Routes for these targets (validated by the config loader).
    pub fn new(targets: &[TargetConfig]) -> Self {
        let mut routes = Routes::default();
        for (i, t) in targets.iter().enumerate() {
            let host = t.host.as_ref().map(|h| strip_port(h).to_ascii_lowercase());
            if let Some(h) = &host {
                routes.by_host.entry(h.clone()).or_default().push(i);
            }
            routes.targets.push(RouteTarget {
                name: t.name.clone(),
                host,
                prefix: t.path_prefix.clone(),
            });
        }
        routes
    }

    /// The route of a request: a target whose host matches (port ignored) and whose
    /// prefix, if it has one, matches; else the target with the longest matching path
    /// prefix. A prefix matches whole segments: `/order` matches `/order` and
    /// `/order/...`, never `/orders`.
    pub fn route(&self, host: Option<&str>, path: &str, query: Option<&str>) -> Option<Route> {
        let host = host.map(|h| strip_port(h).to_ascii_lowercase());
        let by_host = host
            .as_deref()
            .and_then(|h| self.by_host.get(h))
            .into_iter()
            .flatten()
            .filter_map(|&i| self.targets.get(i))
            .filter_map(|t| match &t.prefix {
                None => Some((t, 0)),
                Some(p) => strip_prefix(path, p).map(|_| (t, p.len())),
            })
            .max_by_key(|(_, len)| *len);
        let chosen = by_host.map(|(t, _)| t).or_else(|| {
            self.targets
                .iter()
                .filter(|t| t.host.is_none())
                .filter_map(|t| {
                    t.prefix
                        .as_deref()
                        .and_then(|p| strip_prefix(path, p))
                        .map(|_| t)
                })
                .max_by_key(|t| t.prefix.as_ref().map_or(0, String::len))
        })?;
        let rest = match &chosen.prefix {
            Some(p) => strip_prefix(path, p)?,
            None => path,
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        let path_and_query = match query {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        Some(Route {
            target: chosen.name.clone(),
            path_and_query,
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| h.trim_start_matches('['));
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

fn strip_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The tag a session's source identity is matched by in rule conditions.
pub const SOURCE_IDENTITY_TAG: &str = "aws:SourceIdentity";

/// Headers that ask an upstream framework to use another method or path than the
/// request line's. The matrix decides on the request line, so these are refused.
pub const OVERRIDE_HEADERS: [&str; 8] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-envoy-original-path",
    "x-forwarded-prefix",
];

/// Refuses requests whose method or path an upstream could read differently from the
/// matrix: a method not in upper case (`delete` is `DELETE` to many frameworks, but not
/// to the matrix), a path with `.`/`..` segments (raw or `%2e`-encoded) or empty
/// segments (the matrix matches the normalized path, the upstream gets the raw one),
/// and method or path override headers.
pub fn check_request_line(parts: &Parts) -> Result<(), GatewayError> {
    let bad = |message: String| {
        GatewayError::new(http::StatusCode::BAD_REQUEST, "InvalidRequest", message)
    };
    let method = parts.method.as_str();
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(GatewayError::new(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "HTTP methods are case-sensitive: send `{}`, not `{method}`.",
                method.to_ascii_uppercase()
            ),
        ));
    }
    let path = parts.uri.path();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        if decoded == "." || decoded == ".." {
            return Err(bad(format!(
                "The path `{path}` has a `.` or `..` segment; send the path it resolves to."
            )));
        }
        if seg.is_empty() && i != last {
            return Err(bad(format!(
                "The path `{path}` has an empty segment (`//`); send it without."
            )));
        }
    }
    if let Some(h) = OVERRIDE_HEADERS
        .iter()
        .find(|h| parts.headers.contains_key(**h))
    {
        return Err(bad(format!(
            "The header `{h}` is not accepted: the gateway authorizes the method and path of \
             the request line, so upstreams must not be asked to use others."
        )));
    }
    Ok(())
}

/// A refusal by the authorize stage, with what it had found out by then (for the audit
/// record): the caller's PBC, the target and the deciding rule.
#[derive(Debug)]
pub struct Denial {
    /// The answer.
    pub error: GatewayError,
    /// The caller's PBC, if the matrix was reached and the caller is in one.
    pub caller_pbc: Option<String>,
    /// The explicit deny rule, if one decided.
    pub rule: Option<String>,
    /// The target PBC, if the request was routed.
    pub target: Option<String>,
}

impl From<GatewayError> for Denial {
    fn from(error: GatewayError) -> Self {
        Denial {
            error,
            caller_pbc: None,
            rule: None,
            target: None,
        }
    }
}

/// Routes the request and asks the matrix. The path the matrix sees is the one the
/// upstream will be asked for (the route's prefix removed).
pub fn authorize(
    rules: &Rules,
    routes: &Routes,
    principal: Principal,
    parts: &Parts,
    ctx: &RequestContext,
) -> Result<Permit, Denial> {
    check_request_line(parts)?;
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let route = routes
        .route(host, parts.uri.path(), parts.uri.query())
        .ok_or_else(|| {
            Denial::from(GatewayError::no_route(format!(
                "No target serves {} {}: route by one of the configured hosts or path prefixes.",
                parts.method,
                parts.uri.path()
            )))
        })?;
    let path = route
        .path_and_query
        .split_once('?')
        .map_or(route.path_and_query.as_str(), |(p, _)| p);
    // The source identity reaches the rules as the tag `aws:SourceIdentity`, the
    // condition key IAM uses for it (`principal_tags = { "aws:SourceIdentity" = ... }`).
    // Tags in the `aws:` namespace are AWS's to set; a session tag must never pose as one.
    let tags: Vec<(&str, &str)> = principal
        .tags
        .iter()
        .filter(|(k, _)| !k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(
            principal
                .source_identity
                .as_deref()
                .map(|s| (SOURCE_IDENTITY_TAG, s)),
        )
        .collect();
    let decision = rules.decide(&AuthzRequest {
        caller: Caller::Principal(&principal.role_arn),
        target: &route.target,
        method: parts.method.as_str(),
        path,
        source_ip: Some(ctx.conn.peer.ip()),
        tags: &tags,
        now: ctx.now,
    });
    if decision.effect == Effect::Deny {
        let caller = match decision.caller_pbc {
            Some(pbc) => format!("{} (PBC {pbc})", principal.arn),
            None => format!("{} (in no PBC)", principal.arn),
        };
        let why = match (decision.reason, decision.rule_id()) {
            (Reason::ExplicitDeny, Some(rule)) => format!("because rule `{rule}` denies it"),
            (Reason::BadPath(e), _) => format!("because {e}"),
            _ => "because no rule allows it".to_string(),
        };
        return Err(Denial {
            error: GatewayError::access_denied(format!(
                "User: {caller} is not authorized to perform: {} {path} on resource: {} {why}.",
                parts.method, route.target
            )),
            caller_pbc: decision.caller_pbc.map(str::to_string),
            rule: decision.rule_id().map(str::to_string),
            target: Some(route.target),
        });
    }
    Ok(Permit {
        caller_pbc: decision.caller_pbc.map(str::to_string),
        rule_id: decision.rule_id().unwrap_or_default().to_string(),
        principal,
        route,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(name: &str, host: Option<&str>, prefix: Option<&str>) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            upstream: "https://127.0.0.1:1".into(),
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            ca_bundle: None,
            client_cert: None,
            client_key: None,
            connect_timeout_ms: 1,
            response_timeout_ms: 1,
        }
    }

    fn parts(method: &str, uri: &str, header: Option<&str>) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        if let Some(h) = header {
            b = b.header(h, "x");
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn request_lines_an_upstream_could_read_differently_are_refused() {
        let code = |p: Parts| check_request_line(&p).err().map(|e| e.code());
        assert_eq!(code(parts("GET", "/order/orders/1/", None)), None);
        assert_eq!(code(parts("PROPFIND", "/order/x", None)), None);
        assert_eq!(
            code(parts("delete", "/order/orders/1", None)),
            Some("MethodNotAllowed")
        );
        for path in [
            "/order/admin/../orders",
            "/order/admin/%2e%2E/orders",
            "/order/./x",
            "/order//x",
            "/order/%2e",
        ] {
            assert_eq!(
                code(parts("GET", path, None)),
                Some("InvalidRequest"),
                "{path}"
            );
        }
        for h in OVERRIDE_HEADERS {
            assert_eq!(
                code(parts("POST", "/order/orders", Some(h))),
                Some("InvalidRequest"),
                "{h}"
            );
        }
    }

    #[test]
    fn the_source_identity_is_a_tag_rules_can_require() {
        let rules = Rules::parse(
            r#"
[[pbc]]
name = "order"
[[allow]]
id = "alice-only"
caller = "arn:aws:iam::1:role/R"
target = "order"
methods = ["GET"]
paths = ["/orders"]
principal_tags = { "aws:SourceIdentity" = "alice" }
"#,
            "r.toml",
        )
        .unwrap();
        let routes = Routes::new(&[target("order", None, Some("/order"))]);
        let ctx = RequestContext {
            request_id: "r".into(),
            conn: std::sync::Arc::new(crate::context::ConnInfo {
                peer: "127.0.0.1:1".parse().unwrap(),
                local: "127.0.0.1:2".parse().unwrap(),
                tls: true,
                client_identity: None,
            }),
            received: std::time::Instant::now(),
            now: 0,
            now_ms: 0,
            trace: crate::trace::TraceContext::from_headers(&http::HeaderMap::new()),
        };
        let principal = |si: Option<&str>| Principal {
            role_arn: "arn:aws:iam::1:role/R".into(),
            arn: "arn:aws:sts::1:assumed-role/R/s".into(),
            access_key_id: "ASIAEXAMPLE".into(),
            tags: vec![],
            source_identity: si.map(Into::into),
        };
        let p = parts("GET", "/order/orders", None);
        assert!(authorize(&rules, &routes, principal(Some("alice")), &p, &ctx).is_ok());
        assert!(authorize(&rules, &routes, principal(Some("mallory")), &p, &ctx).is_err());
        assert!(authorize(&rules, &routes, principal(None), &p, &ctx).is_err());
    }

    #[test]
    fn routes_by_prefix_and_host() {
        let routes = Routes::new(&[
            target("order", None, Some("/order")),
            target("orders-v2", None, Some("/order/v2")),
            target("payment", Some("payment.mesh"), None),
            target("catalogue", Some("mesh:8443"), Some("/catalogue")),
        ]);
        let r = |host, path, q| {
            routes
                .route(host, path, q)
                .map(|r| (r.target, r.path_and_query))
        };
        assert_eq!(
            r(None, "/order/orders/42", Some("a=1")),
            Some(("order".into(), "/orders/42?a=1".into()))
        );
        assert_eq!(r(None, "/order", None), Some(("order".into(), "/".into())));
        assert_eq!(r(None, "/orders/42", None), None);
        assert_eq!(
            r(None, "/order/v2/x", None),
            Some(("orders-v2".into(), "/x".into()))
        );
        assert_eq!(
            r(Some("Payment.Mesh:8443"), "/payments", None),
            Some(("payment".into(), "/payments".into()))
        );
        assert_eq!(
            r(Some("mesh"), "/catalogue/products", None),
            Some(("catalogue".into(), "/products".into()))
        );
        assert_eq!(
            r(Some("mesh"), "/order/orders", None),
            Some(("order".into(), "/orders".into()))
        );
        assert_eq!(
            r(Some("[::1]:8443"), "/order/x", None),
            Some(("order".into(), "/x".into()))
        );
    }
}
