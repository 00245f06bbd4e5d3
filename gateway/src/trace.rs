//! Request ids and W3C trace context.
//!
//! Every request gets an id ([`RequestIds::pick`]): the value of a configured header
//! when a trusted peer (a load balancer) sent it, else a fresh UUID v4. The gateway
//! returns it as `x-amzn-RequestId` and logs it on the request's span.
//!
//! Every request also gets a [`TraceContext`] (W3C Trace Context level 1): an
//! incoming `traceparent` is continued (same trace id and flags, a new span id for the
//! gateway's hop), anything else starts a new trace; the upstream request carries
//! `traceparent` naming the gateway's hop as its parent ([`TraceContext::inject`]).
//! With the `otlp` cargo feature, [`TraceContext::attach`] ties the request's
//! `tracing` span to the same ids, so the exported span and the forwarded header agree.

use authz_rules::condition::Cidr;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::net::IpAddr;

/// The `traceparent` header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The longest `tracestate` passed through (the spec's "at least 512 characters");
/// a longer one is dropped whole.
const MAX_TRACESTATE: usize = 512;
/// The most `tracestate` list members the spec allows.
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The `sampled` trace flag.
const SAMPLED: u8 = 0x01;
/// The longest request id taken from a header.
const MAX_REQUEST_ID: usize = 128;
/// The default OTLP `service.name`.
const DEFAULT_SERVICE_NAME: &str = "sigv4-gateway";
/// The OTLP/HTTP path for traces, appended to `otlp_endpoint`.
const OTLP_TRACES_PATH: &str = "/v1/traces";

/// The `[tracing]` table of the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// A header (e.g. `x-request-id`) whose value becomes the request id when the
    /// request comes from a trusted peer.
    pub request_id_header: Option<String>,
    /// CIDRs of peers (load balancers) allowed to set it. Required when
    /// `request_id_header` is set (e.g. `["0.0.0.0/0", "::/0"]` to trust everyone, on
    /// purpose).
    pub request_id_trusted_peers: Vec<String>,
    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`; `/v1/traces` is appended
    /// unless the path already ends with it); only with the `otlp` cargo feature.
    pub otlp_endpoint: Option<String>,
    /// `service.name` for OTLP (default `sigv4-gateway`).
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            request_id_header: None,
            request_id_trusted_peers: Vec::new(),
            otlp_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.to_string(),
        }
    }
}

impl TracingConfig {
    /// Every problem as (key to locate the line, reason). Empty = valid.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        match &self.request_id_header {
            Some(header) => {
                if let Err(e) = header_name(header) {
                    errors.push(("request_id_header", e));
                }
                if self.request_id_trusted_peers.is_empty() {
                    errors.push((
                        "request_id_header",
                        "request_id_header needs request_id_trusted_peers: the CIDRs of the \
                         load balancers allowed to set it (e.g. [\"10.0.0.0/8\"]; \
                         [\"0.0.0.0/0\", \"::/0\"] trusts every client, on purpose)"
                            .to_string(),
                    ));
                }
            }
            None => {
                if !self.request_id_trusted_peers.is_empty() {
                    errors.push((
                        "request_id_trusted_peers",
                        "request_id_trusted_peers does nothing without request_id_header; \
                         set the header or remove the peers"
                            .to_string(),
                    ));
                }
            }
        }
        for peer in &self.request_id_trusted_peers {
            if let Err(e) = Cidr::parse(peer) {
                errors.push((
                    "request_id_trusted_peers",
                    format!("request_id_trusted_peers: {e}"),
                ));
            }
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            if cfg!(feature = "otlp") {
                if let Err(e) = otlp_traces_url(endpoint) {
                    errors.push(("otlp_endpoint", e));
                }
            } else {
                errors.push((
                    "otlp_endpoint",
                    "this gateway was built without the otlp feature; rebuild with \
                     `cargo build --features otlp` or remove otlp_endpoint"
                        .to_string(),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            errors.push(("service_name", "service_name must not be empty".to_string()));
        }
        errors
    }
}

/// A header name from the config, or why it is not one.
fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| format!("request_id_header: `{text}` is not a valid header name"))
}

/// The full OTLP/HTTP traces URL for `otlp_endpoint`, or why it is not usable: plain
/// `http` (the exporter has no TLS: point it at a local collector or sidecar), a host,
/// no query; `/v1/traces` appended unless the path already ends with it.
pub(crate) fn otlp_traces_url(endpoint: &str) -> Result<String, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("otlp_endpoint `{endpoint}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "otlp_endpoint `{endpoint}`: https is not supported (the OTLP exporter has no \
                 TLS); export to a local collector over http, e.g. http://127.0.0.1:4318"
            ));
        }
        _ => {
            return Err(format!(
                "otlp_endpoint `{endpoint}` must be an http:// URL, e.g. http://127.0.0.1:4318"
            ));
        }
    }
    let authority = match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => a,
        _ => {
            return Err(format!(
                "otlp_endpoint `{endpoint}` needs a host (and no user info), e.g. http://127.0.0.1:4318"
            ));
        }
    };
    if uri.query().is_some() {
        return Err(format!("otlp_endpoint `{endpoint}` must not have a query"));
    }
    let path = uri.path().trim_end_matches('/');
    if path.ends_with(OTLP_TRACES_PATH) {
        Ok(format!("http://{authority}{path}"))
    } else {
        Ok(format!("http://{authority}{path}{OTLP_TRACES_PATH}"))
    }
}

/// W3C trace context of one request through the gateway.
#[derive(Clone, Debug)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// The gateway hop's span id: the parent id the upstream sees.
    span_id: [u8; 8],
    /// The caller's span id, when an incoming `traceparent` was continued.
    parent_id: Option<[u8; 8]>,
    flags: u8,
    /// A valid incoming `tracestate`, normalized, passed through.
    tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// Continues a valid incoming `traceparent` (W3C Trace Context level 1: version 00
    /// in its exact format; a future version parsed per the spec's forward-compatibility
    /// rules, keeping only the sampled flag; version `ff`, an all-zero trace id or parent
    /// id, uppercase hex or a repeated header are invalid) keeping its trace id and
    /// flags, with a new random span id for the gateway's hop; otherwise starts a new
    /// trace (random ids, sampled flag 01). Keeps a valid `tracestate` (at most 32
    /// members and 512 bytes, else dropped) for passthrough, only with a continued
    /// `traceparent`.
    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let parsed = match (values.next(), values.next()) {
            (Some(value), None) => parse_traceparent(value.as_bytes()),
            _ => None,
        };
        match parsed {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                span_id: random_id(Some(&p.parent_id)),
                parent_id: Some(p.parent_id),
                flags: p.flags,
                tracestate: parse_tracestate(headers),
            },
            None => TraceContext {
                trace_id: random_id(None),
                span_id: random_id(None),
                parent_id: None,
                flags: SAMPLED,
                tracestate: None,
            },
        }
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        crate::sigv4::hex(&self.trace_id)
    }

    /// The gateway hop's span id (the upstream's parent id): 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        crate::sigv4::hex(&self.span_id)
    }

    /// The caller's span id when an incoming `traceparent` was continued.
    pub fn parent_id(&self) -> Option<String> {
        self.parent_id.map(|p| crate::sigv4::hex(&p))
    }

    /// Whether the trace is sampled (flag 01).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` value sent upstream: `00-<trace id>-<gateway span id>-<flags>`.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.span_id(),
            self.flags
        )
    }

    /// With the `otlp` feature: makes `span` (the request's tracing span, not yet
    /// entered) a child of the incoming remote context and gives its OTel span this
    /// context's ids (the gateway hop's span id and, for a new trace, the trace id), so
    /// what is exported and what is forwarded agree and ids read before `attach` stay
    /// right. Should the OTel span have been built already (the span was entered
    /// first), adopts its ids instead. Call it right after creating the span. Does
    /// nothing when no OpenTelemetry layer is installed (no `otlp_endpoint`). Without
    /// the feature: no-op.
    #[cfg(feature = "otlp")]
    pub fn attach(&mut self, span: &tracing::Span) {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        if let Some(parent) = self.parent_id {
            let state = self
                .tracestate
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default();
            let remote = SpanContext::new(
                TraceId::from_bytes(self.trace_id),
                SpanId::from_bytes(parent),
                TraceFlags::new(self.flags),
                true,
                state,
            );
            if span
                .set_parent(opentelemetry::Context::new().with_remote_span_context(remote))
                .is_err()
            {
                return;
            }
        }
        // Building the OTel span (in `context()`, on this thread) takes these ids.
        otel_ids::NEXT_SPAN.with(|c| c.set(Some(self.span_id)));
        if self.parent_id.is_none() {
            otel_ids::NEXT_TRACE.with(|c| c.set(Some(self.trace_id)));
        }
        let cx = span.context();
        otel_ids::NEXT_SPAN.with(|c| c.set(None));
        otel_ids::NEXT_TRACE.with(|c| c.set(None));
        let otel = cx.span().span_context().clone();
        if !otel.is_valid() {
            return;
        }
        let trace_id = otel.trace_id().to_bytes();
        if self.parent_id.is_some() {
            if trace_id != self.trace_id {
                return;
            }
        } else {
            self.trace_id = trace_id;
            self.flags = if otel.is_sampled() { SAMPLED } else { 0 };
        }
        self.span_id = otel.span_id().to_bytes();
    }

    /// With the `otlp` feature: makes `span` (the request's tracing span, not yet
    /// entered) a child of the incoming remote context and adopts the OTel span's id as
    /// the gateway hop's span id, so what is exported and what is forwarded agree.
    /// Without the feature (this build): no-op.
    #[cfg(not(feature = "otlp"))]
    pub fn attach(&mut self, span: &tracing::Span) {
        let _ = span;
    }

    /// Sets `traceparent` (`00-<trace>-<gateway span>-<flags>`) and passes `tracestate`
    /// through on the upstream request, replacing whatever the caller sent.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.remove(TRACESTATE);
        match HeaderValue::from_str(&self.traceparent()) {
            Ok(v) => {
                headers.insert(TRACEPARENT, v);
            }
            Err(_) => {
                headers.remove(TRACEPARENT);
            }
        }
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
    }
}

/// The fields of a valid `traceparent`.
struct Traceparent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Parses `traceparent` per W3C Trace Context level 1 (section "Versioning of
/// traceparent"): `VV-<32 hex>-<16 hex>-<2 hex>`, lowercase hex only; version `ff` is
/// invalid; version 00 is exactly 55 bytes; a higher version is at least 55 bytes and
/// anything after the flags must start with `-`, and only its sampled flag is kept.
fn parse_traceparent(v: &[u8]) -> Option<Traceparent> {
    let version = hex_byte(v.get(0..2)?)?;
    if version == 0xff {
        return None;
    }
    if v.get(2) != Some(&b'-') || v.get(35) != Some(&b'-') || v.get(52) != Some(&b'-') {
        return None;
    }
    let trace_id: [u8; 16] = hex_array(v.get(3..35)?)?;
    let parent_id: [u8; 8] = hex_array(v.get(36..52)?)?;
    let flags = hex_byte(v.get(53..55)?)?;
    let flags = match (version, v.len()) {
        (0, 55) => flags,
        (0, _) => return None,
        (_, 55) => flags & SAMPLED,
        (_, _) if v.get(55) == Some(&b'-') => flags & SAMPLED,
        _ => return None,
    };
    if trace_id.iter().all(|&b| b == 0) || parent_id.iter().all(|&b| b == 0) {
        return None;
    }
    Some(Traceparent {
        trace_id,
        parent_id,
        flags,
    })
}

/// A lowercase hex digit's value (uppercase is invalid in trace context).
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Two lowercase hex digits as a byte.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [hi, lo] => Some((hex_value(*hi)? << 4) | hex_value(*lo)?),
        _ => None,
    }
}

/// `2 * N` lowercase hex digits as `N` bytes.
fn hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(out)
}

/// The incoming `tracestate` (all its header lines joined with `,`) normalized (no
/// blank members or optional whitespace), when every member is valid, keys are unique,
/// there are 1 to 32 members and the result is at most 512 bytes; else `None`.
fn parse_tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut members: Vec<&str> = Vec::new();
    for value in headers.get_all(TRACESTATE) {
        let text = value.to_str().ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, value) = member.split_once('=')?;
            if !tracestate_key(key) || !tracestate_value(value) {
                return None;
            }
            if members.len() >= MAX_TRACESTATE_MEMBERS
                || members
                    .iter()
                    .any(|m| m.split_once('=').is_some_and(|(k, _)| k == key))
            {
                return None;
            }
            members.push(member);
        }
    }
    if members.is_empty() {
        return None;
    }
    let joined = members.join(",");
    if joined.len() > MAX_TRACESTATE {
        return None;
    }
    HeaderValue::from_str(&joined).ok()
}

/// A `tracestate` key character after the first.
fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` (lcalpha then up to 255 key chars) or `tenant-id@system-id` (a
/// lcalpha or digit then up to 240; a lcalpha then up to 13).
fn tracestate_key(key: &str) -> bool {
    let starts = |s: &str, first: fn(u8) -> bool| s.as_bytes().first().copied().is_some_and(first);
    let all = |s: &str| s.bytes().all(key_char);
    match key.split_once('@') {
        None => key.len() <= 256 && starts(key, |c| c.is_ascii_lowercase()) && all(key),
        Some((tenant, system)) => {
            tenant.len() <= 241
                && starts(tenant, |c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && all(tenant)
                && system.len() <= 14
                && starts(system, |c| c.is_ascii_lowercase())
                && all(system)
        }
    }
}

/// A `tracestate` value: 1 to 256 printable ASCII characters but `,` and `=`, not
/// ending in a space.
fn tracestate_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// OTel span ids for the `otlp` feature: the request span built in
/// [`TraceContext::attach`] takes the context's ids; every other span random ones.
#[cfg(feature = "otlp")]
pub(crate) mod otel_ids {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_sdk::trace::RandomIdGenerator;
    use std::cell::Cell;

    thread_local! {
        /// The span id the next OTel span built on this thread takes.
        pub(super) static NEXT_SPAN: Cell<Option<[u8; 8]>> = const { Cell::new(None) };
        /// The trace id the next OTel root span built on this thread takes.
        pub(super) static NEXT_TRACE: Cell<Option<[u8; 16]>> = const { Cell::new(None) };
    }

    /// The tracer provider's id generator.
    #[derive(Debug, Default)]
    pub(crate) struct IdGenerator {
        random: RandomIdGenerator,
    }

    impl opentelemetry_sdk::trace::IdGenerator for IdGenerator {
        fn new_trace_id(&self) -> TraceId {
            NEXT_TRACE
                .with(Cell::take)
                .map_or_else(|| self.random.new_trace_id(), TraceId::from_bytes)
        }

        fn new_span_id(&self) -> SpanId {
            NEXT_SPAN
                .with(Cell::take)
                .map_or_else(|| self.random.new_span_id(), SpanId::from_bytes)
        }
    }
}

/// A random non-zero id, different from `avoid`.
fn random_id<const N: usize>(avoid: Option<&[u8; N]>) -> [u8; N] {
    let mut id = [0u8; N];
    loop {
        crate::random::fill(&mut id);
        if id.iter().any(|&b| b != 0) && avoid != Some(&id) {
            return id;
        }
    }
}

/// Chooses each request's id.
#[derive(Clone, Debug)]
pub struct RequestIds {
    /// The trusted header, if configured.
    header: Option<HeaderName>,
    /// Peers allowed to set it.
    trusted: Vec<Cidr>,
}

impl RequestIds {
    /// From the `[tracing]` config; an error for an invalid header name or CIDR, or a
    /// header without trusted peers (what [`TracingConfig::validate`] reports too).
    pub fn new(config: &TracingConfig) -> Result<RequestIds, String> {
        let header = match &config.request_id_header {
            Some(h) => {
                if config.request_id_trusted_peers.is_empty() {
                    return Err("request_id_header needs request_id_trusted_peers".to_string());
                }
                Some(header_name(h)?)
            }
            None => None,
        };
        let trusted = config
            .request_id_trusted_peers
            .iter()
            .map(|p| Cidr::parse(p).map_err(|e| format!("request_id_trusted_peers: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RequestIds { header, trusted })
    }

    /// The configured request-id header, if any: the upstream gets the request's id
    /// in it, never a value an untrusted caller chose.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// The trusted header's value when the peer is trusted, the header appears once and
    /// its value is 1-128 characters of `[A-Za-z0-9._:-]` (anything else could forge or
    /// inject log lines: then ignored with a debug log); else a fresh UUID v4.
    pub fn pick(&self, headers: &HeaderMap, peer: IpAddr) -> String {
        if let Some(name) = &self.header {
            let mut values = headers.get_all(name).iter();
            if let Some(value) = values.next() {
                if !self.trusted.iter().any(|c| c.contains(peer)) {
                    tracing::debug!(
                        header = %name,
                        %peer,
                        "request id header ignored: the peer is not in request_id_trusted_peers"
                    );
                } else if values.next().is_some() {
                    tracing::debug!(header = %name, "request id header ignored: repeated");
                } else if let Some(id) = valid_request_id(value) {
                    return id.to_string();
                } else {
                    tracing::debug!(
                        header = %name,
                        len = value.len(),
                        "request id header ignored: not 1-128 characters of A-Z a-z 0-9 . _ : -"
                    );
                }
            }
        }
        crate::random::uuid_v4().to_string()
    }
}

/// `value` as a request id when it is 1-128 characters of `[A-Za-z0-9._:-]`.
fn valid_request_id(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let ok = (1..=MAX_REQUEST_ID).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
    if ok { value.to_str().ok() } else { None }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ctx(traceparent: &str) -> TraceContext {
        TraceContext::from_headers(&headers(&[("traceparent", traceparent)]))
    }

    /// Continued: the incoming trace id and parent id are kept.
    fn continued(traceparent: &str) -> bool {
        let c = ctx(traceparent);
        c.parent_id().is_some()
    }

    #[test]
    fn spec_examples_valid() {
        for tp in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            // Unknown flag bits in version 00 are kept as received.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
        ] {
            assert!(continued(tp), "{tp}");
        }
        let c = ctx("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09");
        assert!(c.traceparent().ends_with("-09"));
        let c = ctx("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!c.sampled());
        assert!(c.traceparent().ends_with("-00"));
    }

    #[test]
    fn future_versions_parse_forward_compatibly() {
        // A higher version with extra fields: parsed as 00, extra fields ignored.
        let c = ctx(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        );
        assert_eq!(c.trace_id(), TRACE);
        assert_eq!(c.parent_id().as_deref(), Some(PARENT));
        assert!(c.sampled());
        // Exactly 55 bytes in a higher version is fine too.
        assert!(continued(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        // Only the sampled flag of a future version is kept; we send version 00.
        let c = ctx("fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
        assert!(c.traceparent().starts_with("00-"));
        assert!(c.traceparent().ends_with("-01"));
        // Extra data not introduced by a dash.
        assert!(!continued(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what"
        ));
    }

    #[test]
    fn spec_examples_invalid() {
        for tp in [
            // Version ff is forbidden.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 with extra data.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // All-zero trace id or parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Uppercase hex anywhere.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            // Wrong lengths.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            // Not hex, wrong separators, garbage, empty.
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
            "hello",
        ] {
            let c = ctx(tp);
            assert!(c.parent_id().is_none(), "{tp:?} accepted");
            assert_ne!(c.trace_id(), TRACE, "{tp:?} kept its trace id");
            assert!(c.sampled(), "a new trace is sampled");
        }
        // A repeated traceparent is invalid.
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::from_headers(&headers(&[("traceparent", tp), ("traceparent", tp)]));
        assert!(c.parent_id().is_none());
    }

    #[test]
    fn continues_trace_with_a_new_span_id() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let c = ctx(&tp);
        assert_eq!(c.trace_id(), TRACE);
        assert_eq!(c.parent_id().as_deref(), Some(PARENT));
        assert_ne!(c.span_id(), PARENT);
        assert_eq!(c.span_id().len(), 16);
        // Each request's hop gets its own span id.
        assert_ne!(ctx(&tp).span_id(), c.span_id());
    }

    #[test]
    fn new_trace_when_absent() {
        let a = TraceContext::from_headers(&HeaderMap::new());
        let b = TraceContext::from_headers(&HeaderMap::new());
        for c in [&a, &b] {
            assert_eq!(c.trace_id().len(), 32);
            assert_eq!(c.span_id().len(), 16);
            assert!(c.trace_id().bytes().all(|b| hex_value(b).is_some()));
            assert!(c.parent_id().is_none());
            assert!(c.sampled());
            assert!(parse_traceparent(c.traceparent().as_bytes()).is_some());
        }
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
    }

    #[test]
    fn inject_format_replaces_callers_headers() {
        let incoming = headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
        ]);
        let c = TraceContext::from_headers(&incoming);
        let mut upstream = headers(&[
            (
                "traceparent",
                "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01",
            ),
            ("tracestate", "evil=1"),
            ("tracestate", "more=2"),
        ]);
        c.inject(&mut upstream);
        let tp: Vec<_> = upstream.get_all("traceparent").iter().collect();
        assert_eq!(tp.len(), 1);
        assert_eq!(
            tp[0].to_str().unwrap(),
            format!("00-{TRACE}-{}-01", c.span_id())
        );
        let ts: Vec<_> = upstream.get_all("tracestate").iter().collect();
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");

        // No tracestate of ours: the caller's is removed, not forwarded.
        let c = ctx(&format!("00-{TRACE}-{PARENT}-01"));
        let mut upstream = headers(&[("tracestate", "evil=1")]);
        c.inject(&mut upstream);
        assert!(upstream.get("tracestate").is_none());
        let v = upstream.get("traceparent").unwrap().to_str().unwrap();
        assert_eq!(v.len(), 55);
        assert!(parse_traceparent(v.as_bytes()).is_some());
    }

    #[test]
    fn tracestate_validation() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let state = |values: &[&str]| {
            let mut pairs = vec![("traceparent", tp.as_str())];
            pairs.extend(values.iter().map(|v| ("tracestate", *v)));
            TraceContext::from_headers(&headers(&pairs))
                .tracestate
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(state(&["a=1"]).as_deref(), Some("a=1"));
        // Several header lines are one list; blank members and OWS dropped.
        assert_eq!(
            state(&["a=1 ,, b=2", "c@sys=3\t"]).as_deref(),
            Some("a=1,b=2,c@sys=3")
        );
        assert_eq!(
            state(&["0tenant@vendor=x"]).as_deref(),
            Some("0tenant@vendor=x")
        );
        assert_eq!(state(&[]), None);
        assert_eq!(state(&[" , "]), None);
        for bad in [
            "A=1",     // uppercase key
            "1a=1",    // simple key starting with a digit
            "a=",      // empty value
            "a",       // no '='
            "a=b=c",   // '=' in the value
            "a=1,a=2", // duplicate key
            "t@Sys=1", // uppercase system id
            "t@=1",    // empty system id
            "t@toolongsystemid=1",
        ] {
            assert_eq!(state(&[bad]), None, "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(state(&[many.join(",").as_str()]), None);
        let ok: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(state(&[ok.join(",").as_str()]).is_some());
        let max = format!("a={}", "x".repeat(256));
        assert_eq!(state(&[max.as_str()]).as_deref(), Some(max.as_str()));
        let long = format!("a={}", "x".repeat(257));
        assert_eq!(state(&[long.as_str()]), None);
        // Over 512 bytes in all: dropped.
        let big: Vec<String> = (0..3)
            .map(|i| format!("k{i}={}", "x".repeat(200)))
            .collect();
        assert_eq!(state(&[big.join(",").as_str()]), None);
        // Without a valid traceparent, tracestate is not parsed.
        let c = TraceContext::from_headers(&headers(&[("tracestate", "a=1")]));
        assert!(c.tracestate.is_none());
    }

    fn ids(header: Option<&str>, peers: &[&str]) -> RequestIds {
        RequestIds::new(&TracingConfig {
            request_id_header: header.map(str::to_string),
            request_id_trusted_peers: peers.iter().map(|p| p.to_string()).collect(),
            ..TracingConfig::default()
        })
        .unwrap()
    }

    fn is_uuid(s: &str) -> bool {
        uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
    }

    #[test]
    fn request_id_from_trusted_peer() {
        let ids = ids(Some("X-Request-Id"), &["10.0.0.0/8", "fd00::/8"]);
        let h = headers(&[("x-request-id", "lb-1234.abc_def:9-Z")]);
        assert_eq!(
            ids.pick(&h, "10.1.2.3".parse().unwrap()),
            "lb-1234.abc_def:9-Z"
        );
        assert_eq!(
            ids.pick(&h, "fd00::1".parse().unwrap()),
            "lb-1234.abc_def:9-Z"
        );
        // IPv4-mapped IPv6 counts as IPv4.
        assert_eq!(
            ids.pick(&h, "::ffff:10.1.2.3".parse().unwrap()),
            "lb-1234.abc_def:9-Z"
        );
        assert_eq!(ids.pick(&h, "10.1.2.3".parse().unwrap()).len(), 19);
    }

    #[test]
    fn request_id_from_untrusted_peer_is_ignored() {
        let ids = ids(Some("x-request-id"), &["10.0.0.0/8"]);
        let h = headers(&[("x-request-id", "forged")]);
        let id = ids.pick(&h, "192.0.2.1".parse().unwrap());
        assert!(is_uuid(&id), "{id}");
        // No header configured: always generated.
        let none = RequestIds::new(&TracingConfig::default()).unwrap();
        assert!(is_uuid(&none.pick(&h, "10.0.0.1".parse().unwrap())));
        // Trusted but absent.
        assert!(is_uuid(
            &ids.pick(&HeaderMap::new(), "10.0.0.1".parse().unwrap())
        ));
    }

    #[test]
    fn request_id_with_invalid_chars_is_ignored() {
        let ids = ids(Some("x-request-id"), &["0.0.0.0/0", "::/0"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let long = "a".repeat(129);
        for bad in [
            "",
            "has space",
            "new\tline",
            "quote\"",
            "{\"json\":1}",
            "slash/es",
            "percent%0a",
            long.as_str(),
        ] {
            let h = headers(&[("x-request-id", bad)]);
            let id = ids.pick(&h, peer);
            assert!(is_uuid(&id), "{bad:?} gave {id}");
        }
        // Non-UTF-8 bytes.
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert!(is_uuid(&ids.pick(&h, peer)));
        // Repeated: ambiguous, ignored.
        let h = headers(&[("x-request-id", "a"), ("x-request-id", "b")]);
        assert!(is_uuid(&ids.pick(&h, peer)));
        // Exactly 128 is fine.
        let max = "b".repeat(128);
        let h = headers(&[("x-request-id", max.as_str())]);
        assert_eq!(ids.pick(&h, peer), max);
    }

    #[test]
    fn request_ids_new_rejects_bad_config() {
        let cfg = |header: Option<&str>, peers: &[&str]| TracingConfig {
            request_id_header: header.map(str::to_string),
            request_id_trusted_peers: peers.iter().map(|p| p.to_string()).collect(),
            ..TracingConfig::default()
        };
        assert!(RequestIds::new(&cfg(Some("x-request-id"), &[])).is_err());
        assert!(RequestIds::new(&cfg(Some("bad header"), &["10.0.0.0/8"])).is_err());
        assert!(RequestIds::new(&cfg(Some("x-request-id"), &["10.1.2.3/8"])).is_err());
        assert!(RequestIds::new(&cfg(Some("x-request-id"), &["nope"])).is_err());
    }

    #[test]
    fn validate_reports_each_problem() {
        let keys = |c: &TracingConfig| c.validate().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert!(TracingConfig::default().validate().is_empty());
        assert_eq!(TracingConfig::default().service_name, "sigv4-gateway");
        let good = TracingConfig {
            request_id_header: Some("x-request-id".into()),
            request_id_trusted_peers: vec!["10.0.0.0/8".into(), "::/0".into()],
            ..TracingConfig::default()
        };
        assert!(good.validate().is_empty());
        let c = TracingConfig {
            request_id_header: Some("bad header".into()),
            ..TracingConfig::default()
        };
        assert_eq!(keys(&c), ["request_id_header", "request_id_header"]);
        let c = TracingConfig {
            request_id_trusted_peers: vec!["10.0.0.0/8".into()],
            ..TracingConfig::default()
        };
        assert_eq!(keys(&c), ["request_id_trusted_peers"]);
        let c = TracingConfig {
            request_id_header: Some("x-request-id".into()),
            request_id_trusted_peers: vec!["10.0.0.1/8".into()],
            ..TracingConfig::default()
        };
        let errors = c.validate();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].1.contains("did you mean `10.0.0.0/8`"),
            "{errors:?}"
        );
        let c = TracingConfig {
            service_name: " ".into(),
            ..TracingConfig::default()
        };
        assert_eq!(keys(&c), ["service_name"]);
    }

    #[test]
    fn validate_otlp_endpoint() {
        let errors = |e: &str| {
            TracingConfig {
                otlp_endpoint: Some(e.into()),
                ..TracingConfig::default()
            }
            .validate()
        };
        if cfg!(feature = "otlp") {
            assert!(errors("http://127.0.0.1:4318").is_empty());
            for bad in [
                "https://collector:4318",
                "127.0.0.1:4318",
                "http://",
                "ftp://x",
                "http://u:p@h:1",
                "http://h:1/?q=1",
            ] {
                let e = errors(bad);
                assert_eq!(e.len(), 1, "{bad}");
                assert_eq!(e[0].0, "otlp_endpoint");
            }
        } else {
            let e = errors("http://127.0.0.1:4318");
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].0, "otlp_endpoint");
            assert!(e[0].1.contains("built without the otlp feature"), "{e:?}");
            assert!(e[0].1.contains("cargo build --features otlp"));
        }
    }

    #[test]
    fn otlp_urls() {
        assert_eq!(
            otlp_traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("http://c:4318/otlp").unwrap(),
            "http://c:4318/otlp/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("http://[::1]:4318").unwrap(),
            "http://[::1]:4318/v1/traces"
        );
        assert!(otlp_traces_url("not a url").is_err());
    }

    #[test]
    fn config_parses_with_defaults() {
        let c: TracingConfig = toml::from_str(
            "request_id_header = \"x-request-id\"\nrequest_id_trusted_peers = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(c.service_name, "sigv4-gateway");
        assert!(c.otlp_endpoint.is_none());
        assert!(toml::from_str::<TracingConfig>("nope = 1").is_err());
        let c: TracingConfig = toml::from_str("").unwrap();
        assert!(c.request_id_header.is_none());
    }

    #[test]
    fn attach_without_a_layer_keeps_ids() {
        let mut c = ctx(&format!("00-{TRACE}-{PARENT}-01"));
        let before = c.span_id();
        let span = tracing::info_span!("request");
        c.attach(&span);
        assert_eq!(c.trace_id(), TRACE);
        assert_eq!(c.span_id(), before);
    }
}
