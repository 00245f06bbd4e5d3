//! Logs and traces: `tracing` to standard error, as text or JSON lines; `RUST_LOG` sets
//! the log levels (default `info`). Nothing secret is ever logged: stages log codes,
//! ARNs and access key ids, never secrets, tokens, signatures or assertion values.
//!
//! A JSON line is one event: `timestamp`, `level`, the event's fields (`message`
//! among them) at the top level, `target`, then `span` (the innermost span's name and
//! fields) and `spans` (every enclosing span, outermost first, with its fields), so
//! each line logged while a request is handled carries that request's `request_id`
//! (in `spans[0]`, and in `span` for events directly in the request span).
//!
//! With the `otlp` cargo feature and `[tracing] otlp_endpoint` set, spans (and the
//! events in them, as span events) at `info` and above are also exported over OTLP/HTTP
//! (protobuf) by a batch exporter, whatever `RUST_LOG` says about logs.

use crate::config::LogFormat;
use crate::trace::TracingConfig;
use std::io::IsTerminal;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Keeps the telemetry pipeline running: hold it until the process exits. Dropping it
/// flushes the spans still queued for OTLP export and shuts the exporter down (a few
/// seconds at most when the collector does not answer). Without the `otlp` feature,
/// or without `otlp_endpoint`, it holds nothing.
#[must_use = "dropping the guard shuts down the OTLP exporter"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    /// The OTLP exporter, when one was started.
    #[cfg(feature = "otlp")]
    _otlp: Option<otlp::Exporter>,
}

/// Installs the global subscriber: logs to standard error in `format`, filtered by
/// `RUST_LOG` (default `info`; an invalid value is reported and `info` used), and,
/// with the `otlp` feature and `tracing.otlp_endpoint` set, the OTLP span exporter.
///
/// Only the first call installs anything; a later call logs nothing new (and fails
/// when it would start an OTLP exporter that could never receive spans). An error
/// means the OTLP exporter could not be set up, or `otlp_endpoint` is set in a build
/// without the `otlp` feature.
pub fn init(format: LogFormat, tracing: &TracingConfig) -> Result<TelemetryGuard, String> {
    let logs = log_layer(format, std::io::stderr, std::io::stderr().is_terminal())
        .with_filter(env_filter());
    #[cfg(feature = "otlp")]
    {
        let (exporter, spans) = match &tracing.otlp_endpoint {
            Some(endpoint) => {
                let (exporter, layer) = otlp::start(endpoint, &tracing.service_name)?;
                (Some(exporter), Some(layer))
            }
            None => (None, None),
        };
        let installed = Registry::default().with(spans).with(logs).try_init();
        if installed.is_err() && exporter.is_some() {
            return Err(
                "a tracing subscriber is already installed; the OTLP exporter was not set up"
                    .to_string(),
            );
        }
        Ok(TelemetryGuard { _otlp: exporter })
    }
    #[cfg(not(feature = "otlp"))]
    {
        if tracing.otlp_endpoint.is_some() {
            return Err(
                "otlp_endpoint: this gateway was built without the otlp feature; \
                 rebuild with `cargo build --features otlp` or remove otlp_endpoint"
                    .to_string(),
            );
        }
        let _ = Registry::default().with(logs).try_init();
        Ok(TelemetryGuard {})
    }
}

/// `RUST_LOG`'s filter, or `info` when it is unset, blank or invalid (reported).
fn env_filter() -> EnvFilter {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .unwrap_or_else(|e| {
                eprintln!("gateway: ignoring RUST_LOG={directives:?} ({e}); logging at info");
                EnvFilter::new("info")
            }),
        _ => EnvFilter::new("info"),
    }
}

/// The log lines layer: text, or JSON with the event's fields flattened and the current
/// span and the span list (with their fields, `request_id` among them) on every line.
fn log_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
    }
}

/// The OTLP span exporter (the `otlp` feature).
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_http::hyper::HyperClient;
    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tracing_opentelemetry::OpenTelemetryLayer;
    use tracing_subscriber::filter::{Filtered, LevelFilter};
    use tracing_subscriber::{Layer, Registry};

    /// One export request's deadline.
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// The tracing layer that turns spans into OTel spans: `info` and above.
    pub(super) type SpanLayer =
        Filtered<OpenTelemetryLayer<Registry, SdkTracer>, LevelFilter, Registry>;

    /// The tracer provider (batch span processor: a background thread) and the small
    /// runtime its HTTP requests run on.
    #[derive(Debug)]
    pub(super) struct Exporter {
        provider: SdkTracerProvider,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl Drop for Exporter {
        fn drop(&mut self) {
            // Exports what is queued (the batch thread sends it through the runtime,
            // still up), then stops the batch thread and the exporter.
            if let Err(e) = self.provider.shutdown() {
                tracing::warn!(error = %e, "OTLP exporter shutdown: queued spans may be lost");
            }
            // Non-blocking, so a guard dropped inside an async context does not panic.
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }

    /// Starts the exporter for `endpoint` (see [`crate::trace::otlp_traces_url`]).
    pub(super) fn start(
        endpoint: &str,
        service_name: &str,
    ) -> Result<(Exporter, SpanLayer), String> {
        let url = crate::trace::otlp_traces_url(endpoint)?;
        // The SDK's batch processor exports from its own thread, blocking on each
        // export; hyper needs a Tokio runtime, so requests run on this one (one worker),
        // independent of the gateway's runtime and of where the guard is dropped.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the OTLP exporter's runtime: {e}"))?;
        let client = OnRuntime {
            inner: HyperClient::with_default_connector(TIMEOUT, None),
            runtime: runtime.handle().clone(),
            url: url.clone(),
            failing: AtomicBool::new(false),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(TIMEOUT)
            .with_http_client(client)
            .build()
            .map_err(|e| format!("otlp_endpoint `{endpoint}`: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_string())
                    .build(),
            )
            .with_id_generator(crate::trace::otel_ids::IdGenerator::default())
            .with_batch_exporter(exporter)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("gateway"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(LevelFilter::INFO);
        Ok((
            Exporter {
                provider,
                runtime: Some(runtime),
            },
            layer,
        ))
    }

    /// Hyper's client, run on the exporter's runtime; logs when exports start failing
    /// (a warning, once) and when they work again.
    #[derive(Debug)]
    struct OnRuntime {
        inner: HyperClient,
        runtime: tokio::runtime::Handle,
        url: String,
        failing: AtomicBool,
    }

    impl OnRuntime {
        fn failed(&self, why: &dyn std::fmt::Display) {
            if self.failing.swap(true, Ordering::Relaxed) {
                tracing::debug!(endpoint = %self.url, error = %why, "OTLP export failed");
            } else {
                tracing::warn!(
                    endpoint = %self.url,
                    error = %why,
                    "OTLP export failed; spans are dropped until the collector answers"
                );
            }
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for OnRuntime {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let inner = self.inner.clone();
            let sent = self
                .runtime
                .spawn(async move { inner.send_bytes(request).await })
                .await;
            let result = match sent {
                Ok(result) => result,
                Err(e) => Err(Box::new(e) as HttpError),
            };
            match &result {
                Ok(response) if response.status().is_success() => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(endpoint = %self.url, "OTLP export works again");
                    }
                }
                Ok(response) => self.failed(&format_args!("HTTP {}", response.status())),
                Err(e) => self.failed(e),
            }
            result
        }
    }
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
    use std::sync::{Arc, Mutex};

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = Registry::default().with(log_layer(format, move || writer.clone(), false));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_carry_the_request_id() {
        let out = capture(LogFormat::Json, || {
            let request = tracing::info_span!("request", request_id = "req-42", method = "GET");
            let _r = request.enter();
            tracing::info!(status = 200, "in request");
            let stage = tracing::info_span!("verify", access_key = "AKIDEXAMPLE");
            let _s = stage.enter();
            tracing::info!(code = "SignatureDoesNotMatch", "rejected");
        });
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        for line in &lines {
            assert_eq!(line["spans"][0]["name"], "request", "{line}");
            assert_eq!(line["spans"][0]["request_id"], "req-42", "{line}");
            assert_eq!(line["level"], "INFO");
            assert!(line["timestamp"].is_string());
        }
        // Event fields are flattened; the current span is there with its fields.
        assert_eq!(lines[0]["message"], "in request");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["span"]["request_id"], "req-42");
        assert_eq!(lines[1]["message"], "rejected");
        assert_eq!(lines[1]["code"], "SignatureDoesNotMatch");
        assert_eq!(lines[1]["span"]["name"], "verify");
        assert_eq!(lines[1]["spans"][1]["access_key"], "AKIDEXAMPLE");
    }

    #[test]
    fn text_lines_carry_the_request_id() {
        let out = capture(LogFormat::Text, || {
            let request = tracing::info_span!("request", request_id = "req-43");
            let _r = request.enter();
            tracing::info!("hello");
        });
        assert!(out.contains("request{request_id=\"req-43\"}"), "{out}");
        assert!(
            !out.contains('\u{1b}'),
            "no ANSI escapes when not a terminal: {out}"
        );
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn a_dead_collector_does_not_hang_shutdown_even_in_async_context() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (exporter, layer) = otlp::start(&format!("http://127.0.0.1:{port}"), "t").unwrap();
        tracing::subscriber::with_default(Registry::default().with(layer), || {
            let span = tracing::info_span!("request", request_id = "r");
            span.in_scope(|| tracing::info!("x"));
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        // Dropped on a runtime thread, as a guard dropped in async code would be.
        runtime.block_on(async move { drop(exporter) });
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn otlp_endpoint_without_the_feature_is_an_error() {
        let config = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            ..TracingConfig::default()
        };
        let e = init(LogFormat::Text, &config).unwrap_err();
        assert!(e.contains("cargo build --features otlp"), "{e}");
    }
}
