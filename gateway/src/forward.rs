//! Forwarding: the request rewrite (auth material and client-claimed identity out,
//! hop-by-hop headers out, forwarding headers and the identity assertion in) and the
//! pooled upstream clients.
//!
//! Each target gets its own client because each has its own trust: its `ca_bundle` is
//! the only root store its upstream is checked against (never the web PKI), and its
//! client certificate is presented only to it.

use crate::body::{self, GatewayBody};
use crate::config::TargetConfig;
use crate::error::GatewayError;
use crate::metrics::{InFlight, Metrics, OpenConnection, UpstreamErrorKind, UpstreamMetrics};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Presigned-URL query parameters that carry SigV4 auth material. Names are matched
/// case-sensitively, as AWS spells them, after percent-decoding (so an encoded
/// `X%2DAmz-Signature` the verifier decoded is stripped too).
pub const PRESIGN_QUERY_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Expires",
    "X-Amz-Region-Set",
];

/// Headers a client might send to claim an identity an upstream could believe: the
/// gateway is the only party allowed to say who called, so these never pass through.
/// (The configured assertion header is removed as well, whatever its name.)
///
/// - `x-remote-user`, `x-remote-group`: Kubernetes front-proxy and Apache-style auth;
/// - `x-forwarded-user`, `-email`, `-groups`, `-preferred-username`, `-access-token`:
///   oauth2-proxy and similar;
/// - `x-forwarded-client-cert`: Envoy's client-certificate header (XFCC);
/// - `x-real-ip`, `true-client-ip`, `cf-connecting-ip`, `x-client-ip`,
///   `x-cluster-client-ip`, `fastly-client-ip`: client addresses CDNs and proxies set,
///   which some upstreams allow-list on; the gateway's own
///   record of the address is the last `X-Forwarded-For` element.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-remote-user",
    "x-remote-group",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-client-cert",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
];

/// Name prefixes of client identity headers (matched on the lower-case name):
///
/// - `x-gateway-`: the gateway's own namespace (the default assertion header lives here);
/// - `x-amzn-iam-`, `x-amzn-oidc-`: AWS API Gateway / ALB identity headers;
/// - `x-authenticated-`: `x-authenticated-user`, `-userid`, `-groups`, ...;
/// - `x-client-cert`, `x-ssl-client-`: client certificates as TLS terminators pass them;
/// - `x-remote-extra-`: Kubernetes front-proxy extra attributes;
/// - `x-auth-request-`: oauth2-proxy's auth-request headers.
pub const IDENTITY_HEADER_PREFIXES: &[&str] = &[
    "x-gateway-",
    "x-amzn-iam-",
    "x-amzn-oidc-",
    "x-authenticated-",
    "x-client-cert",
    "x-ssl-client-",
    "x-remote-extra-",
    "x-auth-request-",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), besides those a `Connection` header names.
/// `TE` is listed but `TE: trailers` is passed on (see [`rewrite_request`]).
pub const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZN_REQUESTID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the rewrite needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Rewrite<'a> {
    /// Path and query to request at the upstream (after any route prefix was removed),
    /// joined under the upstream URL's own path, if it has one.
    pub upstream_path_and_query: &'a str,
    /// The header the identity assertion travels in.
    pub assertion_header: &'a HeaderName,
    /// The signed identity assertion.
    pub assertion: &'a str,
    /// The request id, sent as `x-amzn-RequestId`.
    pub request_id: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// The `Host` (or `:authority`) the client used.
    pub host: Option<&'a str>,
}

/// Rewrites an incoming request's parts for the upstream.
///
/// - The URI becomes the upstream's scheme and authority, the upstream URL's path (if
///   any) joined with `upstream_path_and_query`, and the presign parameters
///   ([`PRESIGN_QUERY_PARAMS`]) removed; every other query parameter is kept byte for
///   byte, in order. The version becomes HTTP/1.1: the upstream connection negotiates
///   its own protocol (HTTP/2 by ALPN).
/// - Removed: `Authorization`, `X-Amz-Security-Token`, client identity headers
///   ([`IDENTITY_HEADERS`], [`IDENTITY_HEADER_PREFIXES`], the assertion header), and
///   hop-by-hop headers ([`HOP_BY_HOP_HEADERS`] and every header `Connection` names),
///   except that `TE: trailers` is passed on. `X-Amz-Date` and `X-Amz-Content-Sha256`
///   stay: they are not secret and upstreams may log them.
/// - Set: `Host` (the upstream authority), `X-Forwarded-Proto`, `X-Forwarded-Host`,
///   the assertion header, `x-amzn-RequestId`. Appended: `X-Forwarded-For` and a
///   `Forwarded` element (RFC 7239).
///
/// The removals happen before anything is added, so nothing a client names in
/// `Connection` can remove a header the gateway sets. Should the URI not be buildable
/// (a path the caller made invalid), it is left origin-form and [`Forwarder::send`]
/// refuses it, rather than sending the request somewhere else.
pub fn rewrite_request(parts: &mut http::request::Parts, upstream: &Uri, rw: &Rewrite<'_>) {
    let headers = &mut parts.headers;

    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            list_items(s).any(|item| token_before_params(item).eq_ignore_ascii_case("trailers"))
        })
    });
    strip_hop_by_hop(headers);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    headers.remove(header::AUTHORIZATION);
    headers.remove(X_AMZ_SECURITY_TOKEN);
    headers.remove(rw.assertion_header);
    let identity: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_identity_header(n))
        .cloned()
        .collect();
    for name in identity {
        headers.remove(name);
    }

    match upstream_uri(upstream, rw.upstream_path_and_query) {
        Ok(uri) => parts.uri = uri,
        Err(e) => {
            tracing::error!(upstream = %upstream, error = %e, "cannot build the upstream URI; the request will be refused");
            parts.uri = Uri::default();
        }
    }
    parts.version = Version::HTTP_11;

    if let Some(authority) = upstream.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, v);
    } else {
        headers.remove(header::HOST);
    }

    let client_ip = rw.client_ip.to_canonical();
    let proto = if rw.tls { "https" } else { "http" };
    append_list(headers, X_FORWARDED_FOR, client_ip.to_string().as_bytes());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match rw.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(v) => {
            headers.insert(X_FORWARDED_HOST, v);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    append_list(
        headers,
        header::FORWARDED,
        forwarded_element(client_ip, proto, rw.host).as_bytes(),
    );

    match HeaderValue::from_str(rw.assertion) {
        Ok(mut v) => {
            // Sensitive: HPACK never indexes it and hyper's Debug output hides it.
            v.set_sensitive(true);
            headers.insert(rw.assertion_header.clone(), v);
        }
        // The value itself is never logged. Without it the upstream refuses the
        // request, which is the safe way to fail.
        Err(_) => tracing::error!("the identity assertion is not a valid header value; not sent"),
    }
    match HeaderValue::from_str(rw.request_id) {
        Ok(v) => {
            headers.insert(X_AMZN_REQUESTID, v);
        }
        Err(_) => {
            headers.remove(X_AMZN_REQUESTID);
        }
    }
}

/// Removes hop-by-hop headers from an upstream response before it goes back to the
/// client. The body is untouched (it streams through). [`Forwarder::send`] already
/// calls this; calling it again is harmless.
pub fn rewrite_response(parts: &mut http::response::Parts) {
    strip_hop_by_hop(&mut parts.headers);
}

/// Removes `Connection`, every header it names, and the fixed hop-by-hop list.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(list_items)
        .filter_map(|item| HeaderName::from_bytes(item.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP_HEADERS {
        headers.remove(*name);
    }
}

/// The non-empty, trimmed elements of a comma-separated header list.
fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `trailers;q=1` -> `trailers`.
fn token_before_params(item: &str) -> &str {
    item.split(';').next().unwrap_or_default().trim()
}

fn is_identity_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    IDENTITY_HEADERS.contains(&n) || IDENTITY_HEADER_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// Appends `item` to the comma-separated list in `name`, folding any existing lines
/// into one (equivalent per RFC 9110 §5.3, and one line is easier for upstreams).
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &[u8]) {
    let mut value = Vec::new();
    for existing in headers.get_all(&name) {
        let bytes = existing.as_bytes();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        value.extend_from_slice(bytes);
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(item);
    match HeaderValue::from_bytes(&value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        // Existing bytes came from a valid HeaderValue and `item` is ASCII, so this is
        // unreachable in practice; fall back to our element alone rather than losing it.
        Err(_) => {
            if let Ok(v) = HeaderValue::from_bytes(item) {
                headers.insert(name, v);
            }
        }
    }
}

/// One RFC 7239 element: `for=...;proto=...;host=...`. IPv6 addresses are bracketed
/// and quoted (`for="[2001:db8::1]"`); other values are quoted only when not a token.
fn forwarded_element(client_ip: IpAddr, proto: &str, host: Option<&str>) -> String {
    let node = match client_ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut out = format!("for={node};proto={proto}");
    if let Some(h) = host {
        out.push_str(";host=");
        out.push_str(&token_or_quoted(h));
    }
    out
}

fn token_or_quoted(value: &str) -> Cow<'_, str> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(is_tchar) {
        return Cow::Borrowed(value);
    }
    let mut q = String::with_capacity(value.len() + 2);
    q.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    Cow::Owned(q)
}

/// The upstream URI: its scheme and authority, its base path joined with `path_and_query`
/// minus the presign parameters.
fn upstream_uri(upstream: &Uri, path_and_query: &str) -> Result<Uri, String> {
    let scheme = upstream.scheme().ok_or("the upstream URL has no scheme")?;
    let authority = upstream
        .authority()
        .ok_or("the upstream URL has no authority")?;
    let stripped = strip_presign_params(path_and_query);
    let base = upstream.path().trim_end_matches('/');
    let mut joined = String::with_capacity(base.len() + stripped.len() + 1);
    joined.push_str(base);
    if !stripped.starts_with('/') {
        joined.push('/');
    }
    joined.push_str(&stripped);
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(joined)
        .build()
        .map_err(|e| format!("invalid upstream path: {e}"))
}

/// Removes [`PRESIGN_QUERY_PARAMS`] from the query of `path_and_query`, keeping the
/// other parameters byte for byte and in order.
fn strip_presign_params(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let is_presign = |param: &str| {
        let name = param.split('=').next().unwrap_or_default();
        let decoded = percent_decode(name);
        PRESIGN_QUERY_PARAMS
            .iter()
            .any(|p| p.as_bytes() == decoded.as_ref())
    };
    if !query.split('&').any(is_presign) {
        return Cow::Borrowed(path_and_query);
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_presign(p)).collect();
    if kept.iter().all(|p| p.is_empty()) {
        return Cow::Owned(path.to_string());
    }
    Cow::Owned(format!("{path}?{}", kept.join("&")))
}

/// `%XX` decoding; malformed escapes stay as they are.
fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let mut ahead = bytes.clone();
            if let (Some(h), Some(l)) = (ahead.next().and_then(hex), ahead.next().and_then(hex)) {
                out.push(h << 4 | l);
                bytes = ahead;
                continue;
            }
        }
        out.push(b);
    }
    Cow::Owned(out)
}

type UpstreamClient = Client<MeteredConnector<HttpsConnector<HttpConnector>>, GatewayBody>;

/// One upstream, built from a [`TargetConfig`].
struct Upstream {
    uri: Uri,
    client: UpstreamClient,
    metrics: UpstreamMetrics,
    connect_timeout: Duration,
    response_timeout: Duration,
    ca_bundle: Option<PathBuf>,
    has_client_cert: bool,
}

/// The forwarder: one pooled client per upstream, over TLS with rustls (the target's
/// `ca_bundle` as the only roots, an optional client certificate for mTLS), HTTP/1.1
/// and HTTP/2 by ALPN, with a connect timeout and a response-head timeout. `http://`
/// upstreams are plain HTTP/1.1 (allowed because the configuration says so explicitly).
pub struct Forwarder {
    upstreams: HashMap<String, Upstream>,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list: Vec<(&String, String)> = self
            .upstreams
            .iter()
            .map(|(n, u)| (n, u.uri.to_string()))
            .collect();
        list.sort();
        f.debug_struct("Forwarder")
            .field("upstreams", &list)
            .finish()
    }
}

/// How long an idle pooled connection is kept; below the usual 60 s server idle
/// timeout, so the pool rarely hands out a connection the upstream is closing.
const POOL_IDLE: Duration = Duration::from_secs(30);

impl Forwarder {
    /// Builds a client per target, counting into `metrics` (per target: connections
    /// opened and open, requests in flight, errors by kind). Errors name the target and
    /// the file at fault.
    pub fn new(targets: &[TargetConfig], metrics: Arc<Metrics>) -> Result<Self, String> {
        let mut upstreams = HashMap::with_capacity(targets.len());
        for t in targets {
            let upstream = Upstream::new(t, metrics.upstream(&t.name))
                .map_err(|e| format!("target `{}`: {e}", t.name))?;
            if upstreams.insert(t.name.clone(), upstream).is_some() {
                return Err(format!("target `{}` is declared twice", t.name));
            }
        }
        Ok(Self { upstreams })
    }

    /// The upstream URL of target `name`, to pass to [`rewrite_request`].
    pub fn upstream(&self, name: &str) -> Option<&Uri> {
        self.upstreams.get(name).map(|u| &u.uri)
    }

    /// Sends `req` (already passed through [`rewrite_request`] with this target's
    /// upstream) to target `name` and returns the response head with its body
    /// streaming, hop-by-hop headers removed.
    ///
    /// Fails with 502 when the upstream cannot be reached or talked to (refused,
    /// TLS failure, connection reset) and 504 when connecting or the response head
    /// takes too long: `connect_timeout_ms` bounds the TCP connect, `response_timeout_ms`
    /// everything from the call to the response head (connect and TLS handshake
    /// included), so a silent upstream can never hold a request longer than that. The
    /// body that follows is bounded by the caller's request timeout. A request whose URI
    /// does not point at this target's upstream is refused with 500 without any network
    /// traffic.
    ///
    /// Metrics: the request counts in `gateway_upstream_requests_in_flight` from here
    /// until its response body ends or is dropped (or until it fails, or the caller
    /// drops this future); a failure counts in `gateway_upstream_errors_total` by kind.
    pub async fn send(
        &self,
        name: &str,
        req: Request<GatewayBody>,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let up = self.upstreams.get(name).ok_or_else(|| {
            GatewayError::internal(format!("no upstream is configured for target `{name}`"))
        })?;
        if req.uri().scheme() != up.uri.scheme() || req.uri().authority() != up.uri.authority() {
            tracing::error!(
                target_name = name,
                "request URI was not rewritten for its upstream; refused"
            );
            return Err(GatewayError::internal(format!(
                "the request for target `{name}` was not addressed to its upstream"
            )));
        }
        // Dropped on every way out of here, cancellation included, unless it moves into
        // the response body.
        let in_flight = up.metrics.request_started();
        let started = Instant::now();
        let outcome = tokio::time::timeout(up.response_timeout, up.client.request(req)).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(Ok(resp)) => {
                tracing::debug!(target_name = name, status = resp.status().as_u16(), version = ?resp.version(), elapsed_ms, "upstream responded");
                let (mut parts, incoming) = resp.into_parts();
                rewrite_response(&mut parts);
                let body = InFlightBody {
                    inner: incoming,
                    in_flight: Some(in_flight),
                };
                Ok(Response::from_parts(parts, body::boxed(body)))
            }
            Ok(Err(e)) => {
                let (err, kind) = up.classify(name, &e);
                up.metrics.error(kind);
                tracing::warn!(target_name = name, elapsed_ms, status = err.status().as_u16(), kind = kind.as_str(), error = %err.message(), "upstream failed");
                Err(err)
            }
            Err(_) => {
                up.metrics.error(UpstreamErrorKind::Timeout);
                tracing::warn!(
                    target_name = name,
                    elapsed_ms,
                    "upstream response head timed out"
                );
                Err(GatewayError::gateway_timeout(format!(
                    "upstream `{name}` ({}) sent no response head within {} ms",
                    up.authority(),
                    up.response_timeout.as_millis()
                )))
            }
        }
    }
}

impl Upstream {
    fn new(t: &TargetConfig, metrics: UpstreamMetrics) -> Result<Self, String> {
        let uri: Uri = t
            .upstream
            .parse()
            .map_err(|e| format!("upstream `{}` is not a URL: {e}", t.upstream))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "upstream `{}` must start with https:// or http://",
                    t.upstream
                ));
            }
        };
        if uri.authority().is_none() {
            return Err(format!("upstream `{}` has no host", t.upstream));
        }
        if uri.query().is_some() {
            return Err(format!("upstream `{}` must not have a query", t.upstream));
        }

        let roots = match (&t.ca_bundle, https) {
            (Some(path), _) => crate::pki::load_roots(path, "ca_bundle")?,
            (None, true) => {
                return Err(format!(
                    "https upstream `{}` needs ca_bundle (the CA that signed its certificate)",
                    t.upstream
                ));
            }
            (None, false) => rustls::RootCertStore::empty(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
        let tls = match (&t.client_cert, &t.client_key) {
            (Some(cert), Some(key)) => {
                let chain = crate::pki::load_certs(cert, "client_cert")?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!(
                        "client_key `{}`: no usable PEM private key: {}",
                        key.display(),
                        crate::pki::pem_reason(&e)
                    )
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    format!(
                        "client_cert `{}` / client_key `{}` cannot be used: {e}",
                        cert.display(),
                        key.display()
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("set both client_cert and client_key, or neither".into()),
        };

        let connect_timeout = Duration::from_millis(t.connect_timeout_ms);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let schemes = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let protocols = if https {
            schemes.https_only()
        } else {
            schemes.https_or_http()
        };
        let connector = MeteredConnector {
            inner: protocols.enable_http1().enable_http2().wrap_connector(http),
            metrics: metrics.clone(),
        };

        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .http2_adaptive_window(true)
            .build(connector);

        Ok(Self {
            uri,
            client,
            metrics,
            connect_timeout,
            response_timeout: Duration::from_millis(t.response_timeout_ms),
            ca_bundle: t.ca_bundle.clone(),
            has_client_cert: t.client_cert.is_some(),
        })
    }

    fn authority(&self) -> &str {
        self.uri.authority().map_or("", |a| a.as_str())
    }

    /// Turns a client error into a 502 or 504 that says which upstream and what failed,
    /// and the kind of failure for metrics.
    fn classify(
        &self,
        name: &str,
        e: &hyper_util::client::legacy::Error,
    ) -> (GatewayError, UpstreamErrorKind) {
        let chain = crate::pki::error_chain(e);
        let at = format!("upstream `{name}` ({})", self.authority());
        if chain.iter().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        }) {
            return if e.is_connect() {
                (
                    GatewayError::gateway_timeout(format!(
                        "{at}: connect timed out after {} ms",
                        self.connect_timeout.as_millis()
                    )),
                    UpstreamErrorKind::ConnectTimeout,
                )
            } else {
                (
                    GatewayError::gateway_timeout(format!("{at}: the connection timed out")),
                    UpstreamErrorKind::Timeout,
                )
            };
        }
        if let Some(tls) = chain.iter().find_map(|c| c.downcast_ref::<rustls::Error>()) {
            return (
                GatewayError::bad_gateway(format!(
                    "{at}: TLS handshake failed: {}",
                    self.describe_tls(tls)
                )),
                UpstreamErrorKind::Tls,
            );
        }
        if let Some(io) = chain
            .iter()
            .find_map(|c| c.downcast_ref::<std::io::Error>())
        {
            let what = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    Some(("connection refused", UpstreamErrorKind::Refused))
                }
                std::io::ErrorKind::ConnectionReset => {
                    Some(("connection reset", UpstreamErrorKind::Reset))
                }
                std::io::ErrorKind::ConnectionAborted => {
                    Some(("connection aborted", UpstreamErrorKind::Reset))
                }
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    Some(("host unreachable", UpstreamErrorKind::Unreachable))
                }
                _ => None,
            };
            if let Some((what, kind)) = what {
                return (GatewayError::bad_gateway(format!("{at}: {what}")), kind);
            }
        }
        // Wrappers often repeat their cause's text; keep each piece once.
        let mut pieces: Vec<String> = Vec::new();
        for c in &chain {
            let text = c.to_string();
            if !pieces.last().is_some_and(|prev| prev.ends_with(&text)) {
                pieces.push(text);
            }
        }
        let detail = pieces.join(": ");
        let stage = if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        // Over HTTP/2 the TLS alert reaches us only as text (h2 keeps an io error's kind
        // and message, not the rustls error), so the hint comes from the text.
        let cert_required = detail.contains("CertificateRequired");
        let hint = if !self.has_client_cert && cert_required {
            " (the upstream requires a client certificate: set client_cert and client_key)"
        } else {
            ""
        };
        let kind = if cert_required {
            UpstreamErrorKind::Tls
        } else {
            UpstreamErrorKind::Other
        };
        (
            GatewayError::bad_gateway(format!("{at}: {stage}: {detail}{hint}")),
            kind,
        )
    }

    fn describe_tls(&self, e: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C};
        let bundle = self
            .ca_bundle
            .as_deref()
            .map_or_else(|| "(none)".into(), |p| p.display().to_string());
        match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
                format!("certificate not trusted by ca_bundle {bundle}")
            }
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => {
                format!(
                    "certificate is not valid for host `{}`",
                    self.uri.host().unwrap_or_default()
                )
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                "certificate has expired".into()
            }
            rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                "certificate is not valid yet".into()
            }
            rustls::Error::InvalidCertificate(other) => format!("certificate rejected: {other:?}"),
            rustls::Error::AlertReceived(A::CertificateRequired) if !self.has_client_cert => {
                "the upstream requires a client certificate (set client_cert and client_key)".into()
            }
            rustls::Error::AlertReceived(
                A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::AccessDenied,
            ) if self.has_client_cert => {
                format!("the upstream refused the client certificate ({e})")
            }
            rustls::Error::AlertReceived(A::HandshakeFailure) if !self.has_client_cert => {
                format!("{e} (does the upstream require a client certificate?)")
            }
            other => other.to_string(),
        }
    }
}

/// The upstream response body, counted in flight until it ends or is dropped.
struct InFlightBody<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B: http_body::Body + Unpin> http_body::Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connector under the pooled client, counting the connections it makes:
/// `gateway_upstream_connections_opened_total` when one is established (TCP and TLS),
/// `gateway_upstream_connections_open` until its IO is dropped (the connection closed,
/// by either side or by the pool).
#[derive(Clone)]
struct MeteredConnector<C> {
    inner: C,
    metrics: UpstreamMetrics,
}

impl<C> tower::Service<Uri> for MeteredConnector<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
    C::Error: Send + 'static,
{
    type Response = MeteredIo<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let io = connecting.await?;
            Ok(MeteredIo {
                inner: io,
                _open: metrics.connection_opened(),
            })
        })
    }
}

/// An upstream connection's IO, counted open while it exists. Delegates everything.
struct MeteredIo<T> {
    inner: T,
    _open: OpenConnection,
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for MeteredIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for MeteredIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for MeteredIo<T> {
    fn connected(&self) -> Connected {
        // The inner connection's facts, ALPN's choice of HTTP/2 included.
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    static ASSERTION: HeaderName = HeaderName::from_static("x-gateway-assertion");

    fn upstream() -> Uri {
        "https://orders.internal:8443".parse().unwrap()
    }

    fn rw<'a>(pq: &'a str) -> Rewrite<'a> {
        Rewrite {
            upstream_path_and_query: pq,
            assertion_header: &ASSERTION,
            assertion: "eyJ.token.sig",
            request_id: "req-123",
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            tls: true,
            host: Some("gateway.example:8443"),
        }
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().uri(uri).version(Version::HTTP_2);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn rewritten(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut p = parts("/order/items", headers);
        rewrite_request(&mut p, &upstream(), &rw("/items"));
        p
    }

    fn all(p: &http::request::Parts, name: &str) -> Vec<String> {
        p.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn uri_points_at_the_upstream_and_version_is_reset() {
        let p = rewritten(&[]);
        assert_eq!(p.uri, "https://orders.internal:8443/items");
        assert_eq!(p.version, Version::HTTP_11);
        assert_eq!(all(&p, "host"), ["orders.internal:8443"]);
    }

    #[test]
    fn upstream_base_path_is_joined() {
        let up: Uri = "http://10.0.0.1:8080/api/v1/".parse().unwrap();
        let mut p = parts("/x", &[]);
        rewrite_request(&mut p, &up, &rw("/items?a=1"));
        assert_eq!(p.uri, "http://10.0.0.1:8080/api/v1/items?a=1");
        let mut p = parts("/x", &[]);
        rewrite_request(&mut p, &upstream(), &rw(""));
        assert_eq!(p.uri, "https://orders.internal:8443/");
        let mut p = parts("/x", &[]);
        rewrite_request(&mut p, &upstream(), &rw("?q=1"));
        assert_eq!(p.uri, "https://orders.internal:8443/?q=1");
    }

    #[test]
    fn invalid_path_leaves_an_origin_form_uri_that_send_refuses() {
        let mut p = parts("https://gateway.example/x", &[]);
        rewrite_request(&mut p, &upstream(), &rw("/bad path"));
        assert_eq!(p.uri, Uri::default());
        assert!(p.uri.authority().is_none());
    }

    #[test]
    fn presign_params_are_removed_and_the_rest_kept_in_order() {
        let q = "/p?b=2&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
                 &a=%2F1&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok\
                 &X-Amz-Region-Set=us-east-1&X-Amz-Signature=abc&a=0&flag&=x&c=X-Amz-Signature";
        assert_eq!(
            strip_presign_params(q),
            "/p?b=2&a=%2F1&a=0&flag&=x&c=X-Amz-Signature"
        );
        // Case-sensitive, as AWS names them: a lower-case lookalike is an ordinary parameter.
        assert_eq!(
            strip_presign_params("/p?x-amz-signature=1&X-Amz-Signature=2"),
            "/p?x-amz-signature=1"
        );
        // Percent-encoded names are what a decoding verifier saw: strip them too.
        assert_eq!(
            strip_presign_params("/p?X%2DAmz%2DSecurity%2DToken=t&k=v"),
            "/p?k=v"
        );
        assert_eq!(strip_presign_params("/p?X-Amz-Signature=1"), "/p");
        assert_eq!(strip_presign_params("/p?X-Amz-Signature=1&"), "/p");
        assert!(matches!(
            strip_presign_params("/p?a=1&b"),
            Cow::Borrowed("/p?a=1&b")
        ));
        assert!(matches!(strip_presign_params("/p"), Cow::Borrowed("/p")));

        let mut p = parts("/x", &[]);
        rewrite_request(
            &mut p,
            &upstream(),
            &rw("/items?z=9&X-Amz-Signature=s&y=%20"),
        );
        assert_eq!(p.uri, "https://orders.internal:8443/items?z=9&y=%20");
    }

    #[test]
    fn auth_material_is_removed_but_amz_date_and_content_hash_stay() {
        let p = rewritten(&[
            ("authorization", "AWS4-HMAC-SHA256 Credential=..."),
            ("x-amz-security-token", "secret-token"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert!(p.headers.get("authorization").is_none());
        assert!(p.headers.get("x-amz-security-token").is_none());
        assert_eq!(all(&p, "x-amz-date"), ["20150830T123600Z"]);
        assert_eq!(all(&p, "x-amz-content-sha256"), ["UNSIGNED-PAYLOAD"]);
    }

    #[test]
    fn client_identity_headers_are_removed() {
        let sent = [
            ("x-gateway-assertion", "forged"),
            ("x-gateway-caller", "admin"),
            ("x-amzn-iam-role", "admin"),
            ("x-amzn-oidc-identity", "admin"),
            ("x-remote-user", "admin"),
            ("x-remote-group", "admins"),
            ("x-remote-extra-scopes", "all"),
            ("x-forwarded-user", "admin"),
            ("x-forwarded-email", "a@b"),
            ("x-forwarded-client-cert", "Hash=..."),
            ("x-authenticated-user", "admin"),
            ("x-authenticated-userid", "1"),
            ("x-client-cert", "pem"),
            ("x-client-cert-chain", "pem"),
            ("x-ssl-client-verify", "SUCCESS"),
            ("x-ssl-client-s-dn", "CN=admin"),
            ("x-auth-request-user", "admin"),
            ("x-real-ip", "10.0.0.1"),
            ("x-business", "kept"),
        ];
        let p = rewritten(&sent);
        for (name, _) in &sent[..sent.len() - 1] {
            if *name == "x-gateway-assertion" {
                assert_eq!(
                    all(&p, name),
                    ["eyJ.token.sig"],
                    "the gateway's own assertion replaces the forged one"
                );
            } else {
                assert!(p.headers.get(*name).is_none(), "{name} survived");
            }
        }
        assert_eq!(all(&p, "x-business"), ["kept"]);
    }

    #[test]
    fn custom_assertion_header_is_stripped_and_set() {
        let custom = HeaderName::from_static("x-identity");
        let mut p = parts("/x", &[("x-identity", "forged"), ("x-identity", "again")]);
        let mut r = rw("/x");
        r.assertion_header = &custom;
        rewrite_request(&mut p, &upstream(), &r);
        assert_eq!(all(&p, "x-identity"), ["eyJ.token.sig"]);
        assert!(p.headers.get("x-identity").unwrap().is_sensitive());
        assert!(p.headers.get("x-gateway-assertion").is_none());
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let p = rewritten(&[
            ("connection", "keep-alive, X-Foo"),
            ("connection", "x-bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-baz", "3"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-authenticate", "Basic"),
            ("te", "gzip"),
        ]);
        for name in [
            "connection",
            "x-foo",
            "x-bar",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
        ] {
            assert!(p.headers.get(name).is_none(), "{name} survived");
        }
        assert_eq!(all(&p, "x-baz"), ["3"]);
    }

    #[test]
    fn te_trailers_is_kept_alone() {
        let p = rewritten(&[("connection", "TE"), ("te", "gzip;q=0.5, Trailers")]);
        assert_eq!(all(&p, "te"), ["trailers"]);
        assert!(p.headers.get("connection").is_none());
    }

    #[test]
    fn connection_cannot_remove_what_the_gateway_sets() {
        let p = rewritten(&[(
            "connection",
            "host, x-forwarded-for, forwarded, x-gateway-assertion, x-amzn-requestid, x-forwarded-proto",
        )]);
        assert_eq!(all(&p, "host"), ["orders.internal:8443"]);
        assert_eq!(all(&p, "x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(all(&p, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&p, "x-gateway-assertion"), ["eyJ.token.sig"]);
        assert_eq!(all(&p, "x-amzn-requestid"), ["req-123"]);
        assert_eq!(p.headers.get_all("forwarded").iter().count(), 1);
    }

    #[test]
    fn forwarding_headers_are_appended_and_set() {
        let p = rewritten(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "198.51.100.2, 198.51.100.3"),
            ("forwarded", "for=203.0.113.1;proto=http"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("x-amzn-requestid", "client-chosen"),
            ("host", "gateway.example:8443"),
        ]);
        assert_eq!(
            all(&p, "x-forwarded-for"),
            ["203.0.113.1, 198.51.100.2, 198.51.100.3, 192.0.2.7"]
        );
        assert_eq!(
            all(&p, "forwarded"),
            ["for=203.0.113.1;proto=http, for=192.0.2.7;proto=https;host=\"gateway.example:8443\""]
        );
        assert_eq!(all(&p, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&p, "x-forwarded-host"), ["gateway.example:8443"]);
        assert_eq!(all(&p, "x-amzn-requestid"), ["req-123"]);
        assert_eq!(all(&p, "host"), ["orders.internal:8443"]);
    }

    #[test]
    fn plain_http_client_without_host() {
        let mut p = parts("/x", &[("x-forwarded-host", "evil.example")]);
        let mut r = rw("/x");
        r.tls = false;
        r.host = None;
        rewrite_request(&mut p, &upstream(), &r);
        assert_eq!(all(&p, "x-forwarded-proto"), ["http"]);
        assert!(p.headers.get("x-forwarded-host").is_none());
        assert_eq!(all(&p, "forwarded"), ["for=192.0.2.7;proto=http"]);
    }

    #[test]
    fn ipv6_clients_are_bracketed_and_quoted_in_forwarded() {
        let mut p = parts("/x", &[]);
        let mut r = rw("/x");
        r.client_ip = IpAddr::V6("2001:db8:cafe::17".parse::<Ipv6Addr>().unwrap());
        r.host = Some("orders");
        rewrite_request(&mut p, &upstream(), &r);
        assert_eq!(
            all(&p, "forwarded"),
            ["for=\"[2001:db8:cafe::17]\";proto=https;host=orders"]
        );
        assert_eq!(all(&p, "x-forwarded-for"), ["2001:db8:cafe::17"]);

        // An IPv4 client seen through a dual-stack socket is reported as IPv4.
        let mut p = parts("/x", &[]);
        r.client_ip = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        rewrite_request(&mut p, &upstream(), &r);
        assert_eq!(
            all(&p, "forwarded"),
            ["for=192.0.2.9;proto=https;host=orders"]
        );
        assert_eq!(all(&p, "x-forwarded-for"), ["192.0.2.9"]);
    }

    #[test]
    fn forwarded_host_is_quoted_when_not_a_token() {
        assert_eq!(token_or_quoted("orders.internal"), "orders.internal");
        assert_eq!(token_or_quoted("[::1]:8443"), "\"[::1]:8443\"");
        assert_eq!(token_or_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(token_or_quoted(""), "\"\"");
    }

    #[test]
    fn assertion_and_request_id_are_set() {
        let p = rewritten(&[]);
        let v = p.headers.get("x-gateway-assertion").unwrap();
        assert_eq!(v, "eyJ.token.sig");
        assert!(v.is_sensitive());
        assert_eq!(all(&p, "x-amzn-requestid"), ["req-123"]);
    }

    #[test]
    fn response_hop_by_hop_headers_are_removed() {
        let mut resp = Response::builder()
            .header("connection", "close, x-internal")
            .header("x-internal", "1")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .header("upgrade", "h2c")
            .header("proxy-authenticate", "Basic")
            .header("te", "trailers")
            .header("content-type", "application/json")
            .header("x-amzn-requestid", "up")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        rewrite_response(&mut resp);
        let names: Vec<&str> = resp.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "x-amzn-requestid"]);
    }

    #[test]
    fn percent_decode_handles_malformed_escapes() {
        assert_eq!(percent_decode("a%2Db").as_ref(), b"a-b");
        assert_eq!(percent_decode("%zz%2").as_ref(), b"%zz%2");
        assert_eq!(percent_decode("%").as_ref(), b"%");
        assert_eq!(percent_decode("%e2%82%ac").as_ref(), "€".as_bytes());
    }

    #[test]
    fn forwarder_refuses_bad_targets_by_name() {
        let target = |upstream: &str| TargetConfig {
            name: "order".into(),
            upstream: upstream.into(),
            host: None,
            path_prefix: Some("/order".into()),
            ca_bundle: None,
            client_cert: None,
            client_key: None,
            connect_timeout_ms: 1000,
            response_timeout_ms: 1000,
        };
        let err = Forwarder::new(&[target("https://orders.internal")], Arc::default()).unwrap_err();
        assert!(
            err.contains("target `order`") && err.contains("ca_bundle"),
            "{err}"
        );
        let err = Forwarder::new(&[target("ftp://orders.internal")], Arc::default()).unwrap_err();
        assert!(err.contains("target `order`"), "{err}");
        let mut t = target("https://orders.internal");
        t.ca_bundle = Some(PathBuf::from("/nonexistent/ca.pem"));
        let err = Forwarder::new(&[t], Arc::default()).unwrap_err();
        assert!(
            err.contains("target `order`") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let f = Forwarder::new(&[target("http://127.0.0.1:9")], Arc::default()).unwrap();
        assert_eq!(f.upstream("order").unwrap(), "http://127.0.0.1:9/");
        assert!(f.upstream("payment").is_none());
    }

    #[tokio::test]
    async fn send_refuses_requests_not_addressed_to_the_target() {
        let t = TargetConfig {
            name: "order".into(),
            upstream: "http://127.0.0.1:9".into(),
            host: None,
            path_prefix: Some("/order".into()),
            ca_bundle: None,
            client_cert: None,
            client_key: None,
            connect_timeout_ms: 1000,
            response_timeout_ms: 1000,
        };
        let f = Forwarder::new(&[t], Arc::default()).unwrap();
        for uri in [
            "/items",
            "http://127.0.0.1:10/items",
            "https://127.0.0.1:9/items",
        ] {
            let req = Request::builder().uri(uri).body(body::empty()).unwrap();
            let err = f.send("order", req).await.unwrap_err();
            assert_eq!(
                err.status(),
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "{uri}"
            );
        }
        let req = Request::builder()
            .uri("http://127.0.0.1:9/")
            .body(body::empty())
            .unwrap();
        assert_eq!(
            f.send("nope", req).await.unwrap_err().status(),
            http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
