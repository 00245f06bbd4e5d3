//! The gateway's one error type, and the one place it becomes an HTTP response.
//!
//! Every rejection is a 4xx/5xx with `x-amzn-ErrorType: <Code>`, `x-amzn-RequestId`
//! and a JSON body `{"code", "message", "requestId"}`, as AWS's JSON APIs answer.

use crate::body::{self, GatewayBody};
use crate::sigv4::Rejection;
use http::{HeaderValue, Response, StatusCode};
use std::fmt;

/// Why the gateway refused or failed a request.
#[derive(Debug, Clone)]
pub struct GatewayError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds, for `Retry-After` (throttled requests). Small, so the error (and the
    /// `Result`s carrying it) stays small.
    retry_after: Option<std::num::NonZeroU32>,
}

impl GatewayError {
    /// An error with an AWS-style code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `ThrottlingException` with `Retry-After` (whole seconds, at least 1).
    pub fn throttled(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: std::num::NonZeroU32::new(
                u32::try_from(retry_after_secs).unwrap_or(u32::MAX).max(1),
            ),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                message,
            )
        }
    }

    /// 403 `AccessDenied`: the allow matrix said no.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    /// 404 `UnknownTarget`: no route matches the request.
    pub fn no_route(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "UnknownTarget", message)
    }

    /// 413 `RequestEntityTooLarge`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            message,
        )
    }

    /// 400 `IncompleteBody`: the client's body could not be read.
    pub fn bad_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "IncompleteBody", message)
    }

    /// 502 `UpstreamUnavailable`: connecting to or talking with the upstream failed.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "UpstreamUnavailable", message)
    }

    /// 504 `UpstreamTimeout`: the upstream did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "UpstreamTimeout", message)
    }

    /// 503 `ServiceUnavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// 500 `InternalFailure`: a bug or a broken local resource; never carries detail
    /// that could leak a secret.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            message,
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The AWS-style error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response: status, `x-amzn-ErrorType`, `x-amzn-RequestId`, JSON body.
    pub fn into_response(self, request_id: &str) -> Response<GatewayBody> {
        let json = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "requestId": request_id,
        });
        // A trailing newline, so `curl -i` leaves the prompt on its own line.
        let mut resp = Response::new(body::full(format!("{json}\n")));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-amzn-requestid", v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.get()));
        }
        resp
    }
}

impl From<Rejection> for GatewayError {
    fn from(r: Rejection) -> Self {
        let mut message = r.message().to_string();
        if let Some(detail) = r.signature_detail() {
            message.push_str(&format!(
                "\n\nThe Canonical String for this request should have been\n'{}'\n\nThe String-to-Sign should have been\n'{}'",
                detail.canonical_request, detail.string_to_sign
            ));
        }
        Self {
            status: StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN),
            code: r.code().as_str(),
            message,
            retry_after: None,
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}
