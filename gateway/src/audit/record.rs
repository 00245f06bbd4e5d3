//! The audit record: one JSON line per request that reached verification, and one per
//! STS action, modelled on CloudTrail's event fields (`eventTime`, `eventName`,
//! `sourceIPAddress`, `userIdentity`, `errorCode`, ...), in camelCase like CloudTrail.
//!
//! A record never holds a secret: the access key id, never the secret key, session
//! token, signature or identity assertion; query values are redacted.

use serde::Serialize;
use std::net::SocketAddr;

/// The record's schema version; bumped when a field changes meaning.
pub const EVENT_VERSION: &str = "1.0";

/// Whether the gateway let the request through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Decision {
    /// The allow matrix permitted it (the upstream may still have failed).
    Allow,
    /// Refused before reaching an upstream (authentication, authorization or input).
    Deny,
}

impl Decision {
    /// `allow` or `deny`, the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// What kind of event a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// A request to a target PBC through the gateway.
    GatewayRequest,
    /// A call to the gateway's STS endpoint.
    StsAction,
}

/// Who called, as far as verification got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// The access key id that signed (never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The principal ARN (the assumed-role session ARN for STS sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// The role ARN the caller acts as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The source identity carried through role chaining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// The caller's PBC in the rules file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_pbc: Option<String>,
}

/// Time spent per stage, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// SigV4 verification, identity look-up and (for signed bodies) reading the body.
    pub verify_us: u64,
    /// Routing and the allow matrix.
    pub authorize_us: u64,
    /// From sending upstream to the upstream's response head.
    pub upstream_us: u64,
    /// From arrival to the end of the response body.
    pub total_us: u64,
}

/// What an STS action did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StsDetails {
    /// The role asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `RoleSessionName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<String>,
    /// The source identity the session carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// The web identity (`issuer` + `sub`) or AWS principal ARN that proved who called,
    /// for the federated actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federated_identity: Option<String>,
    /// The access key id of the issued session (never its secret or token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_access_key_id: Option<String>,
    /// When the issued session expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// [`EVENT_VERSION`].
    pub event_version: &'static str,
    /// When the request arrived (RFC 3339, milliseconds, UTC).
    pub event_time: String,
    /// Gateway request or STS action.
    pub event_type: EventType,
    /// The STS action (`AssumeRole`, ...) or, for a gateway request, its method.
    pub event_name: String,
    /// The request id (`x-amzn-RequestId`).
    #[serde(rename = "requestID")]
    pub request_id: String,
    /// The W3C trace id the request belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The client's IP address.
    #[serde(rename = "sourceIPAddress")]
    pub source_ip: String,
    /// The client's port.
    pub source_port: u16,
    /// The verified mTLS client certificate's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client: Option<String>,
    /// The `User-Agent`, cut to 256 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Who called (empty when verification failed before the key was known).
    pub user_identity: UserIdentity,
    /// The target PBC, once routed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pbc: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// The path as received, query values redacted (see [`redact_query`]).
    pub path: String,
    /// Allowed or denied.
    pub decision: Decision,
    /// The rule that decided (allow or deny rule id), when the matrix was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The AWS error code of the answer, if it was an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// The error message the caller got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The status the caller got; 0 when the request was dropped before the gateway
    /// answered it (then `errorCode` is `RequestCancelled`).
    pub status: u16,
    /// The upstream's status, when one answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Request body bytes read from the caller.
    pub bytes_in: u64,
    /// Response body bytes sent to the caller.
    pub bytes_out: u64,
    /// Whether the response body was cut short (caller gone, upstream failed mid-body).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// Time per stage.
    pub timings: Timings,
    /// STS details, for STS actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts: Option<StsDetails>,
}

impl AuditRecord {
    /// A record for a request from `peer`, to be filled in as the stages run.
    pub fn new(
        event_type: EventType,
        request_id: &str,
        received_unix_ms: i64,
        peer: SocketAddr,
        method: &http::Method,
        uri: &http::Uri,
    ) -> AuditRecord {
        AuditRecord {
            event_time: format_millis(received_unix_ms),
            event_name: method.as_str().to_string(),
            request_id: request_id.to_string(),
            // An IPv4 client of a dual-stack listener is logged as IPv4, not `::ffff:a.b.c.d`.
            source_ip: peer.ip().to_canonical().to_string(),
            source_port: peer.port(),
            method: method.as_str().to_string(),
            path: redact_query(uri),
            ..AuditRecord::blank(event_type)
        }
    }

    /// A record with every field empty (built without allocating).
    pub fn blank(event_type: EventType) -> AuditRecord {
        AuditRecord {
            event_version: EVENT_VERSION,
            event_time: String::new(),
            event_type,
            event_name: String::new(),
            request_id: String::new(),
            trace_id: None,
            source_ip: String::new(),
            source_port: 0,
            tls_client: None,
            user_agent: None,
            user_identity: UserIdentity::default(),
            target_pbc: None,
            method: String::new(),
            path: String::new(),
            decision: Decision::Deny,
            rule: None,
            error_code: None,
            error_message: None,
            status: 0,
            upstream_status: None,
            bytes_in: 0,
            bytes_out: 0,
            incomplete: false,
            timings: Timings::default(),
            sts: None,
        }
    }
}

/// The path with each query value replaced by `REDACTED` (names kept): query values
/// can carry presigned signatures, session tokens or customer data.
pub fn redact_query(uri: &http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_string();
    };
    let mut out = String::with_capacity(path.len() + query.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// `User-Agent`, cut at 256 bytes on a character boundary.
pub fn user_agent(headers: &http::HeaderMap) -> Option<String> {
    const MAX: usize = 256;
    let ua = String::from_utf8_lossy(headers.get(http::header::USER_AGENT)?.as_bytes());
    let mut end = ua.len().min(MAX);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua.get(..end).map(str::to_string)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T08:00:00.123Z`.
pub fn format_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let whole = authz_rules::condition::format_rfc3339(secs);
    match whole.strip_suffix('Z') {
        Some(base) => format!("{base}.{ms:03}Z"),
        None => whole,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted_and_names_kept() {
        let uri: http::Uri = "/orders/1?X-Amz-Signature=abc&X-Amz-Security-Token=tok&flag&e="
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        assert_eq!(
            redact_query(&uri),
            "/orders/1?X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED&flag&e="
        );
        assert_eq!(redact_query(&http::Uri::from_static("/orders")), "/orders");
    }

    #[test]
    fn times_have_milliseconds() {
        assert_eq!(format_millis(1_795_334_400_123), "2026-11-22T08:00:00.123Z");
        assert_eq!(format_millis(1_795_334_400_000), "2026-11-22T08:00:00.000Z");
    }

    #[test]
    fn user_agent_is_cut_on_a_char_boundary() {
        let mut h = http::HeaderMap::new();
        let long = "é".repeat(200);
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_str(&long).unwrap_or(http::HeaderValue::from_static("x")),
        );
        let ua = user_agent(&h).unwrap_or_default();
        assert!(ua.len() <= 256 && ua.chars().all(|c| c == 'é'));
    }

    #[test]
    fn records_serialize_in_camel_case_without_empty_fields() {
        let peer: SocketAddr = "127.0.0.1:5000"
            .parse()
            .unwrap_or(SocketAddr::from(([0; 4], 0)));
        let r = AuditRecord::new(
            EventType::GatewayRequest,
            "rid",
            0,
            peer,
            &http::Method::GET,
            &http::Uri::from_static("/x?a=1"),
        );
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(v["requestID"], "rid");
        assert_eq!(v["sourceIPAddress"], "127.0.0.1");
        assert_eq!(v["path"], "/x?a=REDACTED");
        assert_eq!(v["decision"], "Deny");
        assert!(v.get("errorCode").is_none() && v.get("sts").is_none());
        assert_eq!(v["timings"]["verifyUs"], 0);
    }
}
