//! A demo PBC upstream: an HTTPS server (HTTP/1.1 and HTTP/2 by ALPN) that trusts
//! nothing but the gateway's identity assertion. Every request must carry an assertion
//! signed by a key of the gateway's JWKS, issued by the gateway and addressed to this
//! PBC; the answer says who called, so a person (or a test) can see what the gateway
//! forwarded.
//!
//! `gateway demo` runs four of these; the end-to-end tests run them too, which is why
//! the server does not depend on the gateway's own listener: a bug there cannot hide
//! behind the same bug here.

use crate::assertion::{AssertionVerifier, Claims};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The header the gateway's assertion arrives in (the gateway's default
/// `assertion.header`, which the demo configuration keeps).
pub const ASSERTION_HEADER: &str = "x-gateway-assertion";

/// Largest request body a demo upstream reads; the demo only ever sends small JSON.
const MAX_BODY: usize = 1024 * 1024;

/// A slow or silent client must not hold a connection task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A running demo upstream. Dropping it stops the server too (without waiting);
/// [`Upstream::shutdown`] stops it and waits for open connections to drain.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// The PBC this upstream plays (the audience it accepts assertions for).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, e.g. `https://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops accepting, lets open connections finish, and returns when the server
    /// task has ended.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A TLS server configuration for an upstream: the PEM certificate chain (leaf
/// first) and PEM private key, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("upstream certificate: {e}"))?;
    if certs.is_empty() {
        return Err("upstream certificate: no PEM certificate found".into());
    }
    // The parser's error is not shown: it could quote key material.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "upstream key: not a PEM private key".to_string())?;
    // An explicit provider, so the process-wide default (which another part of the
    // process may or may not have installed) does not matter.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("upstream TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("upstream TLS: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Starts a demo upstream for PBC `name` on `127.0.0.1`, on a port the system picks.
pub async fn spawn_upstream(
    name: &str,
    tls: Arc<ServerConfig>,
    verifier: Arc<AssertionVerifier>,
) -> Result<Upstream, String> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("demo upstream {name}: cannot listen on 127.0.0.1: {e}"))?;
    serve_upstream(listener, name, tls, verifier)
}

/// The assertion keys an upstream trusts, replaced whole when its JWKS is fetched
/// again (`gateway upstream` refreshes it; the in-process demo never needs to).
#[derive(Debug)]
pub struct TrustedKeys(std::sync::RwLock<Arc<AssertionVerifier>>);

impl TrustedKeys {
    /// Trusts `verifier`'s keys.
    pub fn new(verifier: Arc<AssertionVerifier>) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(verifier)))
    }

    /// The keys trusted now.
    pub fn current(&self) -> Arc<AssertionVerifier> {
        // A poisoned lock still holds a complete Arc: use it.
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Trusts `verifier`'s keys from now on.
    pub fn replace(&self, verifier: Arc<AssertionVerifier>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
    }
}

/// Serves a demo upstream for PBC `name` on an already bound listener.
pub fn serve_upstream(
    listener: TcpListener,
    name: &str,
    tls: Arc<ServerConfig>,
    verifier: Arc<AssertionVerifier>,
) -> Result<Upstream, String> {
    serve_upstream_trusting(listener, name, tls, TrustedKeys::new(verifier))
}

/// Serves a demo upstream for PBC `name` on an already bound listener, trusting
/// whatever `keys` holds at each request.
pub fn serve_upstream_trusting(
    listener: TcpListener,
    name: &str,
    tls: Arc<ServerConfig>,
    keys: Arc<TrustedKeys>,
) -> Result<Upstream, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("demo upstream {name}: {e}"))?;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        Arc::from(name),
        tokio_rustls::TlsAcceptor::from(tls),
        keys,
        stop_rx,
    ));
    tracing::debug!(upstream = name, %addr, "demo upstream listening");
    Ok(Upstream {
        name: name.to_string(),
        addr,
        stop,
        task,
    })
}

/// Resolves when a stop is sent or the [`Upstream`] handle is dropped.
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    acceptor: tokio_rustls::TlsAcceptor,
    keys: Arc<TrustedKeys>,
    stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let stop_signal = stopped(stop);
    tokio::pin!(stop_signal);
    loop {
        let (tcp, _peer) = tokio::select! {
            () = &mut stop_signal => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(upstream = %name, error = %e, "demo upstream: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let name = Arc::clone(&name);
        let keys = Arc::clone(&keys);
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %name, error = %e, "demo upstream: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let name = Arc::clone(&name);
                let verifier = keys.current();
                async move { Ok::<_, std::convert::Infallible>(handle(&name, &verifier, req).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "demo upstream: connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(upstream = %name, "demo upstream: connections still open after the drain timeout");
    }
}

async fn handle(
    name: &str,
    verifier: &AssertionVerifier,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "service": name, "error": format!("cannot read the request body: {e}") }),
            );
        }
    };
    respond(name, verifier, &parts, &body, unix_now())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The demo upstream's answer to one request, at time `now` (Unix seconds): 200 with
/// who called when the assertion verifies, else 401 with the reason.
pub fn respond(
    name: &str,
    verifier: &AssertionVerifier,
    parts: &http::request::Parts,
    body: &[u8],
    now: i64,
) -> Response<Full<Bytes>> {
    let claims = match check_assertion(name, verifier, &parts.headers, now) {
        Ok(claims) => claims,
        Err(reason) => {
            tracing::info!(upstream = name, method = %parts.method, path = parts.uri.path(), %reason,
                "demo upstream: refused a request without a valid assertion");
            return json_response(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({
                    "service": name,
                    "method": parts.method.as_str(),
                    "path": parts.uri.path(),
                    "assertion_verified": false,
                    "reason": reason,
                }),
            );
        }
    };
    let mut answer = serde_json::json!({
        "service": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "http_version": format!("{:?}", parts.version),
        "caller": {
            "pbc": claims.pbc,
            "role_arn": claims.sub,
            "arn": claims.arn,
            "access_key_id": claims.akid,
        },
        "request_id": claims.jti,
        "assertion_verified": true,
    });
    if let Some(obj) = answer.as_object_mut() {
        if let Some(q) = parts.uri.query() {
            obj.insert("query".into(), q.into());
        }
        // The W3C trace context the gateway propagated, to show the trace continues.
        if let Some(tp) = parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
        {
            obj.insert("traceparent".into(), tp.into());
        }
        if !body.is_empty() {
            // Echoed so a POST shows the body made it through the gateway intact.
            let echoed = serde_json::from_slice::<serde_json::Value>(body)
                .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into());
            obj.insert("body".into(), echoed);
        }
    }
    json_response(StatusCode::OK, &answer)
}

/// Exactly one assertion, valid for this PBC now.
fn check_assertion(
    name: &str,
    verifier: &AssertionVerifier,
    headers: &http::HeaderMap,
    now: i64,
) -> Result<Claims, String> {
    let mut values = headers.get_all(ASSERTION_HEADER).iter();
    let token = match (values.next(), values.next()) {
        (None, _) => {
            return Err(format!(
                "no {ASSERTION_HEADER} header: requests must come through the gateway"
            ));
        }
        (Some(_), Some(_)) => return Err(format!("more than one {ASSERTION_HEADER} header")),
        (Some(v), None) => v
            .to_str()
            .map_err(|_| format!("the {ASSERTION_HEADER} header is not ASCII"))?,
    };
    verifier.verify(token, name, now)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{value}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
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
    use crate::assertion::AssertionSigner;
    use crate::identity::Principal;

    const NOW: i64 = 1_700_000_000;

    fn principal() -> Principal {
        Principal {
            role_arn: "arn:aws:iam::111122223333:role/CheckoutPBCRole".into(),
            arn: "arn:aws:iam::111122223333:role/CheckoutPBCRole".into(),
            access_key_id: "AKIADEMOCHECKOUT0001".into(),
            tags: vec![],
            source_identity: None,
        }
    }

    fn parts(token: Option<&str>) -> http::request::Parts {
        let mut b = Request::builder().method("POST").uri("/orders/42?x=1");
        if let Some(t) = token {
            b = b.header(ASSERTION_HEADER, t);
        }
        b.body(()).unwrap().into_parts().0
    }

    async fn json(resp: Response<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn answers_who_called_when_the_assertion_verifies() {
        let signer = AssertionSigner::generate("gw", 60).unwrap();
        let verifier = AssertionVerifier::from_jwks(&signer.jwks(), "gw").unwrap();
        let token = signer
            .sign(&principal(), Some("checkout"), "order", "req-1", NOW)
            .unwrap();
        let (status, v) = json(respond(
            "order",
            &verifier,
            &parts(Some(&token)),
            br#"{"sku":"sku-1"}"#,
            NOW,
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["service"], "order");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/orders/42");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["caller"]["pbc"], "checkout");
        assert_eq!(
            v["caller"]["role_arn"],
            "arn:aws:iam::111122223333:role/CheckoutPBCRole"
        );
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["assertion_verified"], true);
        assert_eq!(v["body"]["sku"], "sku-1");
    }

    #[tokio::test]
    async fn refuses_missing_foreign_and_misaddressed_assertions() {
        let signer = AssertionSigner::generate("gw", 60).unwrap();
        let verifier = AssertionVerifier::from_jwks(&signer.jwks(), "gw").unwrap();
        let (status, v) = json(respond("order", &verifier, &parts(None), b"", NOW)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["assertion_verified"], false);
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains("no x-gateway-assertion"),
            "{v}"
        );

        let for_payment = signer
            .sign(&principal(), Some("checkout"), "payment", "r", NOW)
            .unwrap();
        let (status, v) = json(respond(
            "order",
            &verifier,
            &parts(Some(&for_payment)),
            b"",
            NOW,
        ))
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(v["reason"].as_str().unwrap().contains("audience"), "{v}");

        let other = AssertionSigner::generate("gw", 60).unwrap();
        let forged = other
            .sign(&principal(), Some("checkout"), "order", "r", NOW)
            .unwrap();
        let (status, v) = json(respond("order", &verifier, &parts(Some(&forged)), b"", NOW)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["assertion_verified"], false);

        let token = signer
            .sign(&principal(), Some("checkout"), "order", "r", NOW)
            .unwrap();
        let (status, _) = json(respond(
            "order",
            &verifier,
            &parts(Some(&token)),
            b"",
            NOW + 3600,
        ))
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let mut twice = parts(Some(&token));
        twice
            .headers
            .append(ASSERTION_HEADER, HeaderValue::from_str(&token).unwrap());
        let (status, v) = json(respond("order", &verifier, &twice, b"", NOW)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            v["reason"].as_str().unwrap().contains("more than one"),
            "{v}"
        );
    }
}
