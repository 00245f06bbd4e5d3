//! What the gateway knows about a connection and a request beyond its bytes.

use std::net::SocketAddr;
use std::time::Instant;

/// Facts about the connection a request arrived on, set by the listener.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address that accepted the connection.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The verified client certificate's subject (mTLS), if any.
    pub client_identity: Option<String>,
}

/// Per-request facts every stage may read.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The request id, returned as `x-amzn-RequestId` and put in the identity assertion.
    pub request_id: String,
    /// The connection.
    pub conn: std::sync::Arc<ConnInfo>,
    /// When the request arrived (monotonic).
    pub received: Instant,
    /// When the request arrived (Unix seconds): the `now` of the pure stages.
    pub now: i64,
    /// The same in Unix milliseconds (rate limits count at that resolution).
    pub now_ms: i64,
    /// The W3C trace context, propagated to the upstream.
    pub trace: crate::trace::TraceContext,
}

/// The request id the listener chose (through [`crate::listener::Handler::request_id`]),
/// carried in the request's extensions so the handler's answers, its audit record and
/// the listener's own timeout answer all name the same id.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);
