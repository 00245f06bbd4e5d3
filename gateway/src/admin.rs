//! The admin listener: liveness and readiness for orchestrators and load balancers, and
//! Prometheus metrics, on its own address so probes and scrapes never compete with (or
//! get exposed like) the public listener.
//!
//! It runs on [`crate::listener::serve`] without TLS, so it gets the same header, idle
//! and drain limits as the public listener instead of a second, unguarded HTTP server.

use crate::body;
use crate::context::ConnInfo;
use crate::listener::{self, Handler, ServerLimits};
use axum::Router;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::body::Incoming;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tower::ServiceExt;

const NOT_READY: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// How long admin shutdown waits for a probe in flight; probes answer at once.
const ADMIN_DRAIN: Duration = Duration::from_secs(5);

/// Readiness shared with the rest of the gateway: not ready until startup says so,
/// ready, or draining (shutting down; never ready again).
#[derive(Clone, Default, Debug)]
pub struct Readiness {
    state: Arc<AtomicU8>,
}

impl Readiness {
    /// Marks the gateway ready or not. Ignored once draining: a late `set_ready(true)`
    /// (say, from a reload finishing) must not put a stopping gateway back in rotation.
    pub fn set_ready(&self, ready: bool) {
        let next = if ready { READY } else { NOT_READY };
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s != DRAINING).then_some(next)
            });
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) == READY
    }

    /// Marks the gateway as shutting down: `/readyz` answers 503 `draining` from now on.
    pub fn set_draining(&self) {
        self.state.store(DRAINING, Ordering::SeqCst);
    }

    /// Whether [`Readiness::set_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.state.load(Ordering::SeqCst) == DRAINING
    }
}

/// Produces the `/metrics` exposition (OpenMetrics text), called once per scrape.
pub type Scrape = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type `/metrics` answers with.
pub const METRICS_CONTENT_TYPE: &str = crate::metrics::CONTENT_TYPE;

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    scrape: Scrape,
}

/// The admin router: `GET /healthz` -> 200 `{"status":"ok"}` always; `GET /readyz` ->
/// 200 `{"status":"ready"}` when ready, else 503 `{"status":"not ready"}` or
/// `{"status":"draining"}`; `GET /metrics` -> 200 with what `scrape` returns, as
/// OpenMetrics text ([`METRICS_CONTENT_TYPE`]); another method on those paths -> 405
/// JSON; any other path -> 404 JSON. Every answer is `Cache-Control: no-store`.
pub fn router(readiness: Readiness, scrape: Scrape) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(AdminState { readiness, scrape })
}

async fn healthz() -> Response<axum::body::Body> {
    status(StatusCode::OK, json!({"status": "ok"}))
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> Response<axum::body::Body> {
    let text = (state.scrape)();
    let mut resp = Response::new(axum::body::Body::from(text));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    // A cached scrape would repeat old values as if they were new.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn readyz(
    axum::extract::State(AdminState { readiness, .. }): axum::extract::State<AdminState>,
) -> Response<axum::body::Body> {
    if readiness.is_ready() {
        status(StatusCode::OK, json!({"status": "ready"}))
    } else if readiness.is_draining() {
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining"}),
        )
    } else {
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready"}),
        )
    }
}

async fn method_not_allowed() -> Response<axum::body::Body> {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"status": "method not allowed"}),
    )
}

async fn not_found(req: Request<axum::body::Body>) -> Response<axum::body::Body> {
    status(
        StatusCode::NOT_FOUND,
        json!({"status": "not found", "path": req.uri().path()}),
    )
}

fn status(code: StatusCode, body: serde_json::Value) -> Response<axum::body::Body> {
    let mut resp = (code, axum::Json(body)).into_response();
    // A cached probe answer would hide a state change from the load balancer.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Clone)]
struct AdminHandler(Router);

impl Handler for AdminHandler {
    fn call(
        &self,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<body::GatewayBody>> + Send {
        let router = self.0.clone();
        async move {
            match router.oneshot(req).await {
                Ok(resp) => resp.map(body::boxed),
                Err(never) => match never {},
            }
        }
    }
}

/// Serves the admin router (see [`router`]) on `listener` (plain HTTP) until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    scrape: Scrape,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ServerLimits {
        drain_timeout: ADMIN_DRAIN,
        ..ServerLimits::default()
    };
    listener::serve(
        listener,
        None,
        limits,
        AdminHandler(router(readiness, scrape)),
        shutdown,
    )
    .await
}
