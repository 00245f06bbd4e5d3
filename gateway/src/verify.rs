//! Stage: verify. The SigV4 core on the request as received, with the identity
//! look-up between its two halves, and the body made ready to forward.
//!
//! Bodies whose hash is signed (a hex `x-amz-content-sha256`, or none) are buffered up
//! to the body limit and checked whole. `UNSIGNED-PAYLOAD` bodies (for callers allowed
//! to send them) stream through. Chunk-signed bodies (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`)
//! stream through a decoder that releases a chunk only once its signature checks out;
//! at the first bad chunk the stream fails, which aborts the upstream request, and the
//! rejection is kept for the response.

use crate::body::{self, BoxError, GatewayBody};
use crate::error::GatewayError;
use crate::identity::{IdentitySource, Principal};
use crate::sigv4::{self, ChunkDecoder, Credential, Payload, Policy, Verified, Verifier};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, header};
use http_body::Body as _;
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The verify stage: the core's verifier and the body limit.
pub struct VerifyStage {
    verifier: Verifier,
    max_body: u64,
}

/// Where a streamed body's verification failure is kept, so the response can carry
/// the rejection rather than a generic upstream error.
#[derive(Clone, Debug, Default)]
pub struct StreamFailure(Arc<Mutex<Option<GatewayError>>>);

impl StreamFailure {
    /// The rejection, if the stream failed verification.
    pub fn take(&self) -> Option<GatewayError> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    fn set(&self, e: GatewayError) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(e);
        }
    }
}

/// Proof that a request was signed by a known caller: hand it to authorize.
pub struct Authenticated {
    /// What the core proved (scope, algorithm, time).
    pub verified: Verified,
    /// Who signed.
    pub principal: Principal,
    /// The body to forward: verified, or streaming through a verifier.
    pub body: GatewayBody,
    /// Set if a streamed body fails verification on the way.
    pub stream_failure: StreamFailure,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

enum Mode {
    Buffer,
    Stream,
}

impl VerifyStage {
    /// A stage holding requests to `policy`, buffering at most `max_body` bytes.
    pub fn new(policy: Policy, max_body: u64) -> Self {
        Self {
            verifier: Verifier::new(policy),
            max_body,
        }
    }

    /// Verifies a request. `parts` may gain a `host` header (HTTP/2 carries it as
    /// `:authority`, and signers sign it as `host`) and lose framing headers that no
    /// longer describe the body forwarded.
    pub async fn run(
        &self,
        parts: &mut Parts,
        body: GatewayBody,
        identity: &dyn IdentitySource,
        now: i64,
    ) -> Result<Authenticated, GatewayError> {
        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        let declared = parts
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok());
        // A request with no body is simply buffered (it is empty), whatever it declares:
        // the core then knows the body is empty.
        let empty = body.is_end_stream()
            || parts
                .headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        let mode = match declared.map(str::trim) {
            _ if empty => Mode::Buffer,
            Some("UNSIGNED-PAYLOAD") => Mode::Stream,
            Some(s) if s.starts_with("STREAMING-") => Mode::Stream,
            _ => Mode::Buffer,
        };
        let (buffered, body) = match mode {
            Mode::Buffer => (Some(self.buffer(parts, body).await?), None),
            Mode::Stream => (None, Some(body)),
        };
        let req = sigv4::Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: match &buffered {
                Some(b) => sigv4::Body::Bytes(b),
                None => sigv4::Body::Streaming,
            },
        };
        let auth = self.verifier.parse(&req, now)?;
        let id = identity.resolve(auth.access_key_id(), auth.session_token(), now)?;
        let credential = Credential {
            secret: &id.secret,
            expires_at: id.expires_at,
            allow_unsigned_payload: id.allow_unsigned_payload,
        };
        let mut verified = self.verifier.verify(&req, &auth, &credential, now)?;
        drop(auth);
        let stream_failure = StreamFailure::default();
        let payload = std::mem::replace(&mut verified.payload, Payload::Unsigned);
        let forward_body = match (payload, buffered, body) {
            (Payload::Decoded(data), _, _) => {
                strip_chunked_framing(parts);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
                body::full(data)
            }
            (Payload::Streaming(decoder), None, Some(incoming)) => {
                strip_chunked_framing(parts);
                BodyExt::boxed_unsync(VerifiedChunks {
                    inner: incoming,
                    decoder: Some(decoder),
                    failure: stream_failure.clone(),
                    out: Vec::new(),
                })
            }
            (_, Some(bytes), _) => body::full(bytes),
            (_, None, Some(incoming)) => incoming,
            (_, None, None) => body::empty(),
        };
        Ok(Authenticated {
            verified,
            principal: id.principal,
            body: forward_body,
            stream_failure,
        })
    }

    async fn buffer(&self, parts: &Parts, body: GatewayBody) -> Result<Bytes, GatewayError> {
        let too_large = || {
            GatewayError::too_large(format!(
                "The request body is larger than the gateway's limit of {} bytes. Sign larger \
                 bodies with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), or send \
                 UNSIGNED-PAYLOAD if your credentials allow it.",
                self.max_body
            ))
        };
        if let Some(len) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > self.max_body
        {
            return Err(too_large());
        }
        // Read frame by frame rather than through `http_body_util::Limited`, whose
        // error conversion makes the handler's future fail rustc's Send check.
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                GatewayError::bad_body(format!("The request body could not be read: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    }
}

/// The upstream gets the decoded body, so the chunked encoding's framing headers go.
/// The body is sent without a length (chunked on HTTP/1.1): `x-amz-decoded-content-length`
/// need not be signed, and a length the upstream trusts would let it act on a prefix
/// before the rest of the stream is verified.
fn strip_chunked_framing(parts: &mut Parts) {
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(enc) = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        let rest: Vec<&str> = enc
            .split(',')
            .map(str::trim)
            .filter(|e| !e.eq_ignore_ascii_case("aws-chunked") && !e.is_empty())
            .collect();
        if rest.is_empty() {
            parts.headers.remove(header::CONTENT_ENCODING);
        } else if let Ok(v) = HeaderValue::from_str(&rest.join(", ")) {
            parts.headers.insert(header::CONTENT_ENCODING, v);
        }
    }
}

/// A chunk-signed body, verified chunk by chunk as it streams.
struct VerifiedChunks {
    inner: GatewayBody,
    decoder: Option<Box<ChunkDecoder>>,
    failure: StreamFailure,
    out: Vec<u8>,
}

impl VerifiedChunks {
    fn fail(&mut self, e: GatewayError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.decoder = None;
        let shown = e.to_string();
        self.failure.set(e);
        Poll::Ready(Some(Err(shown.into())))
    }
}

impl http_body::Body for VerifiedChunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.decoder.is_none() {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(f) => f,
            };
            match frame {
                None => {
                    let finished = self.decoder.as_ref().map(|d| d.finish());
                    self.decoder = None;
                    return match finished {
                        Some(Err(r)) => self.fail(r.into()),
                        _ => Poll::Ready(None),
                    };
                }
                Some(Err(e)) => {
                    return self.fail(GatewayError::bad_body(format!(
                        "The request body could not be read: {e}"
                    )));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let mut out = std::mem::take(&mut self.out);
                    out.clear();
                    let fed = match self.decoder.as_mut() {
                        Some(d) => d.feed(&data, &mut out),
                        None => return Poll::Ready(None),
                    };
                    if let Err(r) = fed {
                        return self.fail(r.into());
                    }
                    if out.is_empty() {
                        self.out = out;
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_none()
    }
}
