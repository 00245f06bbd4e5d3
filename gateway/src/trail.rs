//! The account of one request: its audit record filled in as the stages run, and the
//! bodies that count bytes. The record is emitted (audit queue and metrics) once, when
//! the response body ends or is dropped, so `bytesOut` and the total time are real; a
//! request dropped before it answered (the request timeout, the caller gone, shutdown)
//! is emitted when its trail is dropped, so an upstream call is never left unaudited.

use crate::audit::{AuditRecord, Decision, EventType, Slot};
use crate::body::{BoxError, GatewayBody};
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::metrics::{Metrics, Stage};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The `errorCode` (and metrics `code`) of a request dropped before it was answered.
pub const CANCELLED: &str = "RequestCancelled";

/// Where a finished record goes.
pub struct Trail {
    /// The record in progress.
    pub record: AuditRecord,
    slot: Option<Slot>,
    metrics: Arc<Metrics>,
    received: Instant,
    bytes_in: Arc<AtomicU64>,
    /// Set once the record has been emitted: it is emitted exactly once.
    emitted: bool,
}

impl Trail {
    /// A trail for a request that arrived at `received`; `slot` is its place in the
    /// audit queue (none when the queue had no room and the policy is to drop).
    pub fn new(
        record: AuditRecord,
        slot: Option<Slot>,
        metrics: Arc<Metrics>,
        received: Instant,
    ) -> Trail {
        Trail {
            record,
            slot,
            metrics,
            received,
            bytes_in: Arc::default(),
            emitted: false,
        }
    }

    /// Wraps the request body so the bytes read from the caller are counted.
    pub fn count_request_body(&self, body: GatewayBody) -> GatewayBody {
        Counted {
            inner: body,
            count: Arc::clone(&self.bytes_in),
        }
        .boxed_unsync()
    }

    /// Records who signed.
    pub fn principal(&mut self, p: &Principal) {
        let who = &mut self.record.user_identity;
        who.access_key_id = Some(p.access_key_id.clone());
        who.principal_arn = Some(p.arn.clone());
        who.role_arn = Some(p.role_arn.clone());
        who.source_identity.clone_from(&p.source_identity);
    }

    /// Records the access key id a request claimed when verification failed before
    /// it was proved: a key being guessed or misused shows up by id (never a secret).
    pub fn claimed_key(&mut self, parts: &http::request::Parts) {
        if self.record.user_identity.access_key_id.is_none() {
            self.record.user_identity.access_key_id = claimed_access_key_id(parts);
        }
    }

    /// Records a stage's time.
    pub fn stage(&mut self, stage: Stage, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        match stage {
            Stage::Verify => self.record.timings.verify_us = us,
            Stage::Authorize => self.record.timings.authorize_us = us,
            Stage::Upstream => self.record.timings.upstream_us = us,
            Stage::Request => self.record.timings.total_us = us,
        }
        self.metrics.observe(stage, elapsed);
    }

    /// Records the error the caller gets.
    pub fn error(&mut self, e: &GatewayError) {
        self.record.error_code = Some(e.code());
        self.record.error_message = Some(e.message().to_string());
        self.record.status = e.status().as_u16();
    }

    /// Wraps the response body; the record is emitted when it ends or is dropped.
    pub fn finish_with(mut self, status: u16, body: GatewayBody) -> GatewayBody {
        self.record.status = status;
        Audited {
            inner: body,
            bytes_out: 0,
            trail: Some(self),
        }
        .boxed_unsync()
    }

    /// Emits the record now (no response body to wait for).
    pub fn finish_now(mut self, status: u16) {
        self.record.status = status;
        self.emit(0, true);
    }

    /// Emits the record (metrics, then the audit queue); does nothing the second time.
    fn emit(&mut self, bytes_out: u64, complete: bool) {
        if std::mem::replace(&mut self.emitted, true) {
            return;
        }
        let elapsed = self.received.elapsed();
        self.stage(Stage::Request, elapsed);
        let r = &mut self.record;
        r.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        r.bytes_out = bytes_out;
        r.incomplete = !complete;
        match r.sts.as_ref() {
            // Only an issued session names its role: the role asked for in a refused
            // call is the caller's text, and labels must stay bounded.
            Some(sts) => self.metrics.sts(
                &r.event_name,
                match r.error_code {
                    None => sts.role_arn.as_deref().unwrap_or("-"),
                    Some(_) => "-",
                },
                r.error_code.unwrap_or("OK"),
            ),
            None => self.metrics.request(
                r.user_identity.caller_pbc.as_deref().unwrap_or("-"),
                r.target_pbc.as_deref().unwrap_or("-"),
                match r.decision {
                    Decision::Allow => "allow",
                    Decision::Deny => "deny",
                },
                r.error_code.unwrap_or("OK"),
            ),
        }
        if let Some(slot) = self.slot.take() {
            slot.send(std::mem::replace(&mut self.record, spent()));
        }
    }
}

impl Drop for Trail {
    /// A trail dropped before its record was emitted belongs to a request whose future
    /// was dropped before it answered: the listener's request timeout, the caller gone,
    /// or shutdown. The request may already have reached its upstream, so it is audited
    /// (status 0: the handler gave no answer) rather than lost.
    fn drop(&mut self) {
        if self.emitted {
            return;
        }
        if self.record.error_code.is_none() {
            self.record.error_code = Some(CANCELLED);
            self.record.error_message = Some(
                "The request ended before the gateway answered it (the request timeout \
                 passed, the caller went away, or the gateway shut down)."
                    .to_string(),
            );
        }
        self.emit(0, false);
    }
}

/// What is left in a trail once its record has gone to the queue: an empty record,
/// built without allocating.
fn spent() -> AuditRecord {
    AuditRecord::blank(EventType::GatewayRequest)
}

/// The access key id in `Credential=` (header) or `X-Amz-Credential=` (query), if it
/// looks like one: up to 128 of `A-Z0-9`, so a hostile value cannot forge log lines.
fn claimed_access_key_id(parts: &http::request::Parts) -> Option<String> {
    let from_header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("Credential=").map(|(_, rest)| rest));
    let from_query = || {
        parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        })
    };
    let value = from_header.or_else(from_query)?;
    let akid: String = value
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        .take(129)
        .collect();
    (!akid.is_empty() && akid.len() <= 128).then_some(akid)
}

/// A request body that counts the bytes it yields.
struct Counted {
    inner: GatewayBody,
    count: Arc<AtomicU64>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that emits its request's record when it ends (or is dropped: the
/// caller went away, or the body was never polled because it was empty).
struct Audited {
    inner: GatewayBody,
    bytes_out: u64,
    trail: Option<Trail>,
}

impl Body for Audited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                let out = self.bytes_out;
                if let Some(mut trail) = self.trail.take() {
                    trail.emit(out, true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                let out = self.bytes_out;
                if let Some(mut trail) = self.trail.take() {
                    trail.emit(out, false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if let Some(mut trail) = self.trail.take() {
            // An empty body may be dropped unpolled: that is a complete response.
            let complete = self.inner.is_end_stream();
            trail.emit(self.bytes_out, complete);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::audit::tests::TempDir;
    use crate::audit::{AuditConfig, AuditSink, Auditor, EventType};

    fn file_auditor(dir: &TempDir) -> Arc<Auditor> {
        Auditor::start(&AuditConfig {
            sink: AuditSink::File,
            path: Some(dir.path().join("audit.log")),
            ..AuditConfig::default()
        })
        .unwrap()
    }

    fn trail(auditor: &Auditor, metrics: &Arc<Metrics>, id: &str) -> Trail {
        let record = AuditRecord::new(
            EventType::GatewayRequest,
            id,
            1_795_334_400_123,
            "192.0.2.7:40000".parse().unwrap(),
            &http::Method::POST,
            &http::Uri::from_static("/orders"),
        );
        Trail::new(
            record,
            Some(auditor.reserve().unwrap()),
            Arc::clone(metrics),
            Instant::now(),
        )
    }

    fn records(dir: &TempDir) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join("audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_request_dropped_before_it_answered_is_still_audited_once() {
        let dir = TempDir::new("cancelled");
        let auditor = file_auditor(&dir);
        let metrics = Arc::new(Metrics::new());
        // The handler's future dropped mid-forward (request timeout, caller gone): the
        // request was allowed and may have reached the upstream.
        let mut t = trail(&auditor, &metrics, "req-cancelled");
        t.record.decision = Decision::Allow;
        t.record.target_pbc = Some("order".into());
        drop(t);
        // A request that answered: one record when its body ends, none more on drop.
        let t = trail(&auditor, &metrics, "req-answered");
        let mut body = t.finish_with(200, crate::body::full(Bytes::from_static(b"ok")));
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
        drop(body);
        auditor.flush().await;
        let records = records(&dir);
        assert_eq!(records.len(), 2, "{records:?}");
        let cancelled = &records[0];
        assert_eq!(cancelled["requestID"], "req-cancelled");
        assert_eq!(cancelled["decision"], "Allow");
        assert_eq!(cancelled["errorCode"], CANCELLED);
        assert_eq!(cancelled["incomplete"], true);
        assert_eq!(cancelled["status"], 0);
        let answered = &records[1];
        assert_eq!(answered["requestID"], "req-answered");
        assert_eq!(
            (answered["status"].as_u64(), answered["bytesOut"].as_u64()),
            (Some(200), Some(2))
        );
        assert!(answered.get("errorCode").is_none(), "{answered}");
        let text = metrics.render();
        assert!(
            text.contains(
                "gateway_requests_total{caller=\"-\",target=\"order\",decision=\"allow\",code=\"RequestCancelled\"} 1"
            ),
            "{text}"
        );
    }

    fn parts(uri: &str, auth: Option<&str>) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_claimed_key_is_read_from_the_header_or_the_query_and_kept_plain() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE123/20260101/eu-west-1/execute-api/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(
            claimed_access_key_id(&parts("/x", Some(auth))).as_deref(),
            Some("AKIAEXAMPLE123")
        );
        assert_eq!(
            claimed_access_key_id(&parts(
                "/x?X-Amz-Credential=ASIAEXAMPLE%2F20260101%2Feu-west-1&X-Amz-Signature=00",
                None
            ))
            .as_deref(),
            Some("ASIAEXAMPLE")
        );
        assert_eq!(
            claimed_access_key_id(&parts("/x", Some("Credential=<forged>"))),
            None
        );
        let long = format!("Credential={}/x", "A".repeat(200));
        assert_eq!(claimed_access_key_id(&parts("/x", Some(&long))), None);
        assert_eq!(claimed_access_key_id(&parts("/x", None)), None);
    }
}
