//! The OTLP exporter end to end: a tiny collector on loopback receives what the
//! gateway's telemetry exports, and the exported spans carry the ids that
//! `TraceContext` forwards upstream. Run with `cargo test -p gateway --features otlp
//! --test otlp`.
#![cfg(feature = "otlp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use gateway::config::LogFormat;
use gateway::trace::{TraceContext, TracingConfig};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};

/// One request the collector received: method, path, content type, body.
type Received = (String, String, String, Vec<u8>);

/// Accepts OTLP/HTTP exports on `listener` and records them; answers 200 (an empty
/// protobuf `ExportTraceServiceResponse`).
async fn collector(listener: tokio::net::TcpListener, received: Arc<Mutex<Vec<Received>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let received = received.clone();
                async move {
                    let method = req.method().to_string();
                    let path = req.uri().path().to_string();
                    let content_type = req
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = req.into_body().collect().await?.to_bytes();
                    received
                        .lock()
                        .unwrap()
                        .push((method, path, content_type, body.to_vec()));
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    resp.headers_mut().insert(
                        "content-type",
                        HeaderValue::from_static("application/x-protobuf"),
                    );
                    Ok::<_, hyper::Error>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spans_named<'a>(exports: &'a [ExportTraceServiceRequest], name: &str) -> Vec<&'a Span> {
    exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|s| s.name == name)
        .collect()
}

// One test function: the global subscriber can be installed once per process.
#[test]
fn spans_are_exported_with_the_forwarded_ids() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    runtime.spawn(collector(listener, received.clone()));

    let config = TracingConfig {
        otlp_endpoint: Some(format!("http://{addr}")),
        service_name: "gateway-under-test".into(),
        ..TracingConfig::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let guard = gateway::telemetry::init(LogFormat::Json, &config).unwrap();

    // A request continuing a caller's trace.
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let mut incoming = HeaderMap::new();
    incoming.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{TRACE}-{PARENT}-01")).unwrap(),
    );
    incoming.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    let mut continued = TraceContext::from_headers(&incoming);
    let hop = continued.span_id();
    let span = tracing::info_span!("request", request_id = "req-otlp-1", method = "GET");
    continued.attach(&span);
    // The OTel span took the context's ids: what was read before attach stays right.
    assert_eq!(continued.span_id(), hop);
    span.in_scope(|| tracing::info!(status = 200, "forwarded"));
    drop(span);
    assert_eq!(continued.trace_id(), TRACE);
    assert_ne!(continued.span_id(), PARENT);
    let mut upstream = HeaderMap::new();
    continued.inject(&mut upstream);
    assert_eq!(
        upstream["traceparent"],
        format!("00-{TRACE}-{}-01", continued.span_id())
    );

    // A request that starts a new trace: the gateway's span is the root.
    let mut fresh = TraceContext::from_headers(&HeaderMap::new());
    let ids = (fresh.trace_id(), fresh.span_id());
    let span = tracing::info_span!("request", request_id = "req-otlp-2", method = "PUT");
    fresh.attach(&span);
    assert_eq!((fresh.trace_id(), fresh.span_id()), ids);
    // A child span (a stage) gets an id of its own, not the request's.
    let stage = tracing::info_span!(parent: &span, "verify");
    stage.in_scope(|| tracing::info!("verified"));
    drop(stage);
    span.in_scope(|| tracing::info!("rejected"));
    drop(span);

    // Flush: export what is queued, then shut the exporter down.
    drop(guard);

    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "the collector received nothing");
    let mut exports = Vec::new();
    for (method, path, content_type, body) in &received {
        assert_eq!(method, "POST");
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        exports.push(ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
    }
    // The raw protobuf carries the incoming trace id's 16 bytes.
    let raw_trace: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        received
            .iter()
            .any(|(_, _, _, body)| body.windows(16).any(|w| w == raw_trace.as_slice())),
        "no export holds the incoming trace id"
    );

    let spans = spans_named(&exports, "request");
    assert_eq!(spans.len(), 2, "{spans:?}");
    let request_id = |s: &Span| {
        s.attributes
            .iter()
            .find(|kv| kv.key == "request_id")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    let first = spans
        .iter()
        .find(|s| request_id(s) == Some(Value::StringValue("req-otlp-1".into())))
        .expect("the continued request's span");
    assert_eq!(hex(&first.trace_id), TRACE);
    assert_eq!(hex(&first.parent_span_id), PARENT);
    assert_eq!(hex(&first.span_id), continued.span_id());
    assert_eq!(first.trace_state, "congo=t61rcWkgMzE");
    assert!(
        first.events.iter().any(|e| e.name == "forwarded"),
        "the event is a span event: {:?}",
        first.events
    );

    let second = spans
        .iter()
        .find(|s| request_id(s) == Some(Value::StringValue("req-otlp-2".into())))
        .expect("the new trace's span");
    assert_eq!(hex(&second.trace_id), fresh.trace_id());
    assert_eq!(hex(&second.span_id), fresh.span_id());
    assert!(second.parent_span_id.is_empty(), "a root span");
    assert!(fresh.sampled());

    let stages = spans_named(&exports, "verify");
    assert_eq!(stages.len(), 1);
    assert_eq!(hex(&stages[0].trace_id), fresh.trace_id());
    assert_eq!(hex(&stages[0].parent_span_id), fresh.span_id());
    assert_ne!(hex(&stages[0].span_id), fresh.span_id());

    // service.name is the configured one.
    let service = exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(
        service,
        Some(Value::StringValue("gateway-under-test".into()))
    );
}
