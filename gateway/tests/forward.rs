//! The forwarder against real upstream servers on 127.0.0.1: HTTPS with certificates
//! made by rcgen at test time (HTTP/1.1 and HTTP/2 by ALPN, optionally requiring a client
//! certificate), plain HTTP, slow and silent upstreams, and closed ports.
//!
//! Every upstream answers with a JSON echo of what it received, so the tests check the
//! rewrite as the upstream saw it on the wire, not as the gateway built it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use bytes::Bytes;
use gateway::assertion::{AssertionSigner, AssertionVerifier};
use gateway::body::{self, GatewayBody};
use gateway::config::TargetConfig;
use gateway::forward::{Forwarder, Rewrite, rewrite_request};
use gateway::identity::Principal;
use gateway::metrics::Metrics;
use http::{HeaderName, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const NOW: i64 = 1_700_000_000;
static ASSERTION_HEADER: HeaderName = HeaderName::from_static("x-gateway-assertion");

// ---------------------------------------------------------------------------------------
// PKI made at test time

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    fn leaf(&self, cn: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("gw-forward-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

// ---------------------------------------------------------------------------------------
// Upstream servers

/// A body of `len` bytes (`i % 251` at offset `i`) sent in 64 KiB frames, so it streams.
struct Pattern {
    sent: usize,
    len: usize,
}

fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern_byte).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<GatewayBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let len: usize = n.parse().unwrap();
        return Ok(Response::new(body::boxed(Pattern { sent: 0, len })));
    }
    if path == "/echo" {
        // Streams the request body straight back.
        return Ok(Response::new(body::boxed(req.into_body())));
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let seen = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "authority": req.uri().authority().map(|a| a.to_string()),
        "path_and_query": req.uri().path_and_query().map(|p| p.to_string()),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut resp = Response::new(body::full(seen.to_string()));
    let h = resp.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    if path == "/hop" {
        h.insert("connection", "x-internal".parse().unwrap());
        h.insert("x-internal", "secret-topology".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
    }
    Ok(resp)
}

struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

/// An HTTPS upstream with `leaf` as its certificate, offering `alpn`, and requiring a
/// client certificate from `client_ca` when given.
async fn https_upstream(leaf: &Leaf, alpn: &[&[u8]], client_ca: Option<&Ca>) -> Upstream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service_fn(handle))
                    .await;
            });
        }
    });
    Upstream { addr, accepted }
}

async fn plain_upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .await;
            });
        }
    });
    Upstream { addr, accepted }
}

/// Accepts TCP connections and never says a word (a hung TLS handshake).
async fn silent_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// The gateway side

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new())
}

fn target(upstream: String, ca_bundle: Option<PathBuf>) -> TargetConfig {
    TargetConfig {
        name: "order".into(),
        upstream,
        host: None,
        path_prefix: Some("/order".into()),
        ca_bundle,
        client_cert: None,
        client_key: None,
        connect_timeout_ms: 2_000,
        response_timeout_ms: 5_000,
    }
}

fn principal() -> Principal {
    Principal {
        role_arn: "arn:aws:iam::111122223333:role/pbc/checkout".into(),
        arn: "arn:aws:sts::111122223333:assumed-role/checkout/s1".into(),
        access_key_id: "AKIDEXAMPLE".into(),
        tags: vec![],
        source_identity: None,
    }
}

/// A request as a client sends it to the gateway, full of things that must not pass.
fn client_request(path_and_query: &str, body: GatewayBody) -> Request<GatewayBody> {
    Request::builder()
        .method("POST")
        .uri(path_and_query)
        .header("host", "gateway.example:8443")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc")
        .header("x-amz-security-token", "session-token-value")
        .header("x-amz-date", "20150830T123600Z")
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("x-gateway-assertion", "forged.by.client")
        .header("x-gateway-caller", "admin")
        .header("x-amzn-iam-role", "admin")
        .header("x-remote-user", "admin")
        .header("x-forwarded-user", "admin")
        .header("x-authenticated-user", "admin")
        .header("x-client-cert", "-----BEGIN CERTIFICATE-----")
        .header("x-ssl-client-s-dn", "CN=admin")
        .header("connection", "keep-alive, x-hop-named")
        .header("x-hop-named", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("upgrade", "websocket")
        .header("te", "gzip")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-business", "kept")
        .body(body)
        .unwrap()
}

/// Rewrites `req` for target `order` the way the stack does, with a real assertion.
fn rewrite(
    f: &Forwarder,
    signer: &AssertionSigner,
    req: Request<GatewayBody>,
    upstream_pq: &str,
) -> Request<GatewayBody> {
    let token = signer
        .sign(&principal(), Some("checkout"), "order", "req-42", NOW)
        .unwrap();
    let (mut parts, body) = req.into_parts();
    rewrite_request(
        &mut parts,
        f.upstream("order").unwrap(),
        &Rewrite {
            upstream_path_and_query: upstream_pq,
            assertion_header: &ASSERTION_HEADER,
            assertion: &token,
            request_id: "req-42",
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            tls: true,
            host: Some("gateway.example:8443"),
        },
    );
    Request::from_parts(parts, body)
}

async fn json(resp: Response<GatewayBody>) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn header<'a>(seen: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|kv| kv[0] == name)
        .map(|kv| kv[1].as_str().unwrap())
        .collect()
}

/// Everything the upstream must and must not see, whatever the protocol.
fn check_rewritten(seen: &serde_json::Value, signer: &AssertionSigner, upstream: SocketAddr) {
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path_and_query"], "/items?b=2&a=1&a=0");
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[0].as_str().unwrap())
        .collect();
    for gone in [
        "authorization",
        "x-amz-security-token",
        "x-gateway-caller",
        "x-amzn-iam-role",
        "x-remote-user",
        "x-forwarded-user",
        "x-authenticated-user",
        "x-client-cert",
        "x-ssl-client-s-dn",
        "connection",
        "x-hop-named",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
        "te",
        "transfer-encoding",
    ] {
        assert!(!names.contains(&gone), "upstream saw `{gone}`: {names:?}");
    }
    assert_eq!(header(seen, "x-amz-date"), ["20150830T123600Z"]);
    assert_eq!(header(seen, "x-amz-content-sha256"), ["UNSIGNED-PAYLOAD"]);
    assert_eq!(header(seen, "x-business"), ["kept"]);
    assert_eq!(header(seen, "x-forwarded-for"), ["203.0.113.9, 192.0.2.10"]);
    assert_eq!(header(seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(header(seen, "x-forwarded-host"), ["gateway.example:8443"]);
    assert_eq!(
        header(seen, "forwarded"),
        ["for=192.0.2.10;proto=https;host=\"gateway.example:8443\""]
    );
    assert_eq!(header(seen, "x-amzn-requestid"), ["req-42"]);
    // The upstream learns its own authority, from Host (HTTP/1.1) or :authority (HTTP/2).
    let authority = upstream.to_string();
    let hosts = header(seen, "host");
    assert!(
        hosts == [authority.as_str()]
            || (hosts.is_empty() && seen["authority"] == authority.as_str()),
        "{seen}"
    );

    let tokens = header(seen, "x-gateway-assertion");
    assert_eq!(tokens.len(), 1, "exactly one assertion, the gateway's");
    let verifier = AssertionVerifier::from_jwks(&signer.jwks(), signer.issuer()).unwrap();
    let claims = verifier.verify(tokens[0], "order", NOW).unwrap();
    assert_eq!(claims.sub, "arn:aws:iam::111122223333:role/pbc/checkout");
    assert_eq!(claims.pbc.as_deref(), Some("checkout"));
    assert_eq!(claims.jti, "req-42");
}

const CLIENT_PQ: &str = "/order/items?b=2&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fexecute-api%2Faws4_request&a=1&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok&X-Amz-Signature=abc&a=0";
const UPSTREAM_PQ: &str = "/items?b=2&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fexecute-api%2Faws4_request&a=1&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok&X-Amz-Signature=abc&a=0";

struct Setup {
    _dir: TempDir,
    metrics: Arc<Metrics>,
    forwarder: Forwarder,
    upstream: Upstream,
    signer: AssertionSigner,
}

async fn tls_setup(alpn: &[&[u8]]) -> Setup {
    let dir = TempDir::new();
    let ca = Ca::new("upstream CA");
    let upstream = https_upstream(
        &ca.leaf("orders", ExtendedKeyUsagePurpose::ServerAuth),
        alpn,
        None,
    )
    .await;
    let ca_path = dir.write("ca.pem", &ca.pem);
    let metrics = metrics();
    let forwarder = Forwarder::new(
        &[target(format!("https://{}", upstream.addr), Some(ca_path))],
        Arc::clone(&metrics),
    )
    .unwrap();
    Setup {
        _dir: dir,
        metrics,
        forwarder,
        upstream,
        signer: AssertionSigner::generate("gw-test", 60).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn forwarder_and_its_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Forwarder>();
    let f = Forwarder::new(&[target("http://127.0.0.1:9".into(), None)], metrics()).unwrap();
    let fut = f.send("order", Request::new(body::empty()));
    send(&fut);
}

#[tokio::test]
async fn forwards_over_tls_http1_with_the_request_rewritten() {
    let s = tls_setup(&[b"http/1.1"]).await;
    let req = rewrite(
        &s.forwarder,
        &s.signer,
        client_request(CLIENT_PQ, body::full("hello")),
        UPSTREAM_PQ,
    );
    let resp = s.forwarder.send("order", req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = json(resp).await;
    assert_eq!(seen["version"], "HTTP/1.1");
    check_rewritten(&seen, &s.signer, s.upstream.addr);
}

#[tokio::test]
async fn forwards_over_tls_http2_when_the_upstream_offers_it() {
    let s = tls_setup(&[b"h2", b"http/1.1"]).await;
    let req = rewrite(
        &s.forwarder,
        &s.signer,
        client_request(CLIENT_PQ, body::full("hello")),
        UPSTREAM_PQ,
    );
    let resp = s.forwarder.send("order", req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = json(resp).await;
    assert_eq!(seen["version"], "HTTP/2.0");
    check_rewritten(&seen, &s.signer, s.upstream.addr);
}

#[tokio::test]
async fn te_trailers_reaches_an_http2_upstream() {
    let s = tls_setup(&[b"h2"]).await;
    let mut req = client_request("/order/x", body::empty());
    req.headers_mut().insert("te", "trailers".parse().unwrap());
    req.headers_mut()
        .insert("connection", "te".parse().unwrap());
    let req = rewrite(&s.forwarder, &s.signer, req, "/x");
    let seen = json(s.forwarder.send("order", req).await.unwrap()).await;
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(header(&seen, "te"), ["trailers"]);
}

#[tokio::test]
async fn connections_are_pooled() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let s = tls_setup(alpn).await;
        for _ in 0..5 {
            let req = rewrite(
                &s.forwarder,
                &s.signer,
                client_request("/order/x", body::empty()),
                "/x",
            );
            let resp = s.forwarder.send("order", req).await.unwrap();
            // Reading the body to its end hands the HTTP/1.1 connection back to the pool.
            json(resp).await;
        }
        assert_eq!(s.upstream.accepted.load(Ordering::SeqCst), 1, "{alpn:?}");
    }
}

#[tokio::test]
async fn upstream_hop_by_hop_response_headers_are_removed() {
    let s = tls_setup(&[b"http/1.1"]).await;
    let req = rewrite(
        &s.forwarder,
        &s.signer,
        client_request("/order/hop", body::empty()),
        "/hop",
    );
    let resp = s.forwarder.send("order", req).await.unwrap();
    for gone in [
        "connection",
        "x-internal",
        "keep-alive",
        "proxy-authenticate",
        "transfer-encoding",
    ] {
        assert!(
            resp.headers().get(gone).is_none(),
            "client would see `{gone}`"
        );
    }
    assert_eq!(resp.headers()["x-kept"], "yes");
}

#[tokio::test]
async fn plain_http_upstream_when_configured() {
    let upstream = plain_upstream().await;
    let f = Forwarder::new(
        &[target(format!("http://{}", upstream.addr), None)],
        metrics(),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let req = rewrite(
        &f,
        &signer,
        client_request(CLIENT_PQ, body::full("x")),
        UPSTREAM_PQ,
    );
    let seen = json(f.send("order", req).await.unwrap()).await;
    assert_eq!(seen["version"], "HTTP/1.1");
    check_rewritten(&seen, &signer, upstream.addr);
}

#[tokio::test]
async fn upstream_base_path_is_kept() {
    let upstream = plain_upstream().await;
    let f = Forwarder::new(
        &[target(format!("http://{}/api/v1", upstream.addr), None)],
        metrics(),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let req = rewrite(
        &f,
        &signer,
        client_request("/order/items?q=1", body::empty()),
        "/items?q=1",
    );
    let seen = json(f.send("order", req).await.unwrap()).await;
    assert_eq!(seen["path_and_query"], "/api/v1/items?q=1");
}

#[tokio::test]
async fn certificate_from_another_ca_is_a_502_naming_the_bundle() {
    let dir = TempDir::new();
    let real = Ca::new("real CA");
    let other = Ca::new("other CA");
    let upstream = https_upstream(
        &real.leaf("orders", ExtendedKeyUsagePurpose::ServerAuth),
        &[b"h2", b"http/1.1"],
        None,
    )
    .await;
    let ca_path = dir.write("other-ca.pem", &other.pem);
    let f = Forwarder::new(
        &[target(
            format!("https://{}", upstream.addr),
            Some(ca_path.clone()),
        )],
        metrics(),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let req = rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x");
    let err = f.send("order", req).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(err.code(), "UpstreamUnavailable");
    let msg = err.message();
    assert!(msg.contains("upstream `order`"), "{msg}");
    assert!(
        msg.contains("certificate not trusted by ca_bundle"),
        "{msg}"
    );
    assert!(msg.contains(&ca_path.display().to_string()), "{msg}");
}

#[tokio::test]
async fn certificate_for_another_name_is_a_502() {
    let dir = TempDir::new();
    let ca = Ca::new("CA");
    // Valid chain, but issued for another host than 127.0.0.1.
    let mut params = CertificateParams::new(vec!["orders.internal".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let leaf = Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    };
    let upstream = https_upstream(&leaf, &[b"http/1.1"], None).await;
    let f = Forwarder::new(
        &[target(
            format!("https://{}", upstream.addr),
            Some(dir.write("ca.pem", &ca.pem)),
        )],
        metrics(),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let err = f
        .send(
            "order",
            rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert!(
        err.message().contains("not valid for host `127.0.0.1`"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn closed_port_is_a_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = Forwarder::new(
        &[target(format!("http://127.0.0.1:{port}"), None)],
        metrics(),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let started = Instant::now();
    let err = f
        .send(
            "order",
            rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert!(
        err.message().contains("connection refused"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}")),
        "{}",
        err.message()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn slow_upstream_is_a_504_within_the_response_timeout() {
    let upstream = plain_upstream().await;
    let mut t = target(format!("http://{}", upstream.addr), None);
    t.response_timeout_ms = 300;
    let f = Forwarder::new(&[t], metrics()).unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let started = Instant::now();
    let err = f
        .send(
            "order",
            rewrite(
                &f,
                &signer,
                client_request("/order/slow", body::empty()),
                "/slow",
            ),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(err.code(), "UpstreamTimeout");
    assert!(err.message().contains("300 ms"), "{}", err.message());
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn silent_tls_upstream_is_a_504_not_a_hang() {
    let dir = TempDir::new();
    let ca = Ca::new("CA");
    let addr = silent_upstream().await;
    let mut t = target(
        format!("https://{addr}"),
        Some(dir.write("ca.pem", &ca.pem)),
    );
    t.response_timeout_ms = 300;
    let f = Forwarder::new(&[t], metrics()).unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let started = Instant::now();
    let err = f
        .send(
            "order",
            rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
}

async fn mtls(
    with_client_cert: bool,
    alpn: &[&[u8]],
) -> Result<serde_json::Value, gateway::error::GatewayError> {
    let dir = TempDir::new();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let upstream = https_upstream(
        &server_ca.leaf("orders", ExtendedKeyUsagePurpose::ServerAuth),
        alpn,
        Some(&client_ca),
    )
    .await;
    let mut t = target(
        format!("https://{}", upstream.addr),
        Some(dir.write("ca.pem", &server_ca.pem)),
    );
    if with_client_cert {
        let client = client_ca.leaf("gateway", ExtendedKeyUsagePurpose::ClientAuth);
        t.client_cert = Some(dir.write("client.pem", &client.cert_pem));
        t.client_key = Some(dir.write("client.key", &client.key_pem));
    }
    let f = Forwarder::new(&[t], metrics()).unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let resp = f
        .send(
            "order",
            rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x"),
        )
        .await?;
    Ok(json(resp).await)
}

#[tokio::test]
async fn mtls_upstream_works_with_a_client_certificate() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let seen = mtls(true, alpn).await.unwrap();
        assert_eq!(seen["path_and_query"], "/x");
    }
}

#[tokio::test]
async fn mtls_upstream_without_a_client_certificate_is_a_502() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let err = mtls(false, alpn).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{alpn:?}: {err}");
        assert!(
            err.message().contains("upstream `order`"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("requires a client certificate"),
            "{}",
            err.message()
        );
    }
}

#[tokio::test]
async fn large_bodies_stream_intact_both_ways() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let s = tls_setup(alpn).await;
        let len = 8 * 1024 * 1024 + 17;

        let req = rewrite(
            &s.forwarder,
            &s.signer,
            client_request(&format!("/order/big/{len}"), body::empty()),
            &format!("/big/{len}"),
        );
        let resp = s.forwarder.send("order", req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), len, "{alpn:?}");
        assert!(got == pattern(len), "{alpn:?}: response body differs");

        let up_len = 3 * 1024 * 1024 + 5;
        let req = rewrite(
            &s.forwarder,
            &s.signer,
            client_request(
                "/order/echo",
                body::boxed(Pattern {
                    sent: 0,
                    len: up_len,
                }),
            ),
            "/echo",
        );
        let resp = s.forwarder.send("order", req).await.unwrap();
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            got == pattern(up_len),
            "{alpn:?}: echoed body differs ({} bytes)",
            got.len()
        );
    }
}

#[test]
fn bad_files_are_named_in_errors() {
    let dir = TempDir::new();
    let ca = Ca::new("CA");
    let leaf = ca.leaf("gw", ExtendedKeyUsagePurpose::ClientAuth);

    let not_pem = dir.write("garbage.pem", "this is not PEM\n");
    let err = Forwarder::new(
        &[target("https://127.0.0.1:1".into(), Some(not_pem))],
        metrics(),
    )
    .unwrap_err();
    assert!(
        err.contains("target `order`") && err.contains("garbage.pem"),
        "{err}"
    );

    let good_ca = dir.write("ca.pem", &ca.pem);
    let mut t = target("https://127.0.0.1:1".into(), Some(good_ca.clone()));
    t.client_cert = Some(dir.write("client.pem", &leaf.cert_pem));
    t.client_key = Some(dir.write(
        "client.key",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ));
    let err = Forwarder::new(&[t], metrics()).unwrap_err();
    assert!(
        err.contains("target `order`") && err.contains("client.key"),
        "{err}"
    );

    // A key that does not match the certificate.
    let other_key = KeyPair::generate().unwrap();
    let mut t = target("https://127.0.0.1:1".into(), Some(good_ca));
    t.client_cert = Some(dir.write("client.pem", &leaf.cert_pem));
    t.client_key = Some(dir.write("other.key", &other_key.serialize_pem()));
    let err = Forwarder::new(&[t], metrics()).unwrap_err();
    assert!(
        err.contains("client.pem") && err.contains("other.key"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    let _ = leaf.key_pem;
}

// ---------------------------------------------------------------------------------------
// Metrics

/// The value of `series` (name and labels as rendered) in the exposition.
fn sample(m: &Metrics, series: &str) -> f64 {
    let text = m.render();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .parse()
        .unwrap()
}

const OPENED: &str = r#"gateway_upstream_connections_opened_total{target="order"}"#;
const OPEN: &str = r#"gateway_upstream_connections_open{target="order"}"#;
const IN_FLIGHT: &str = r#"gateway_upstream_requests_in_flight{target="order"}"#;

fn errors(kind: &str) -> String {
    format!(r#"gateway_upstream_errors_total{{target="order",kind="{kind}"}}"#)
}

/// Waits (a few seconds at most) for `series` to reach `want`: connections close in
/// their own tasks.
async fn eventually(m: &Metrics, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while sample(m, series) != want {
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {}",
            sample(m, series)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pooled_connections_are_counted_once_and_closed_ones_leave_the_open_gauge() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let s = tls_setup(alpn).await;
        let m = &s.metrics;
        assert_eq!(sample(m, OPENED), 0.0);
        assert_eq!(sample(m, OPEN), 0.0);
        for round in 1..=2 {
            let req = rewrite(
                &s.forwarder,
                &s.signer,
                client_request("/order/x", body::empty()),
                "/x",
            );
            let resp = s.forwarder.send("order", req).await.unwrap();
            // In flight until the response body is read to its end.
            assert_eq!(sample(m, IN_FLIGHT), 1.0, "{alpn:?} round {round}");
            json(resp).await;
            assert_eq!(sample(m, IN_FLIGHT), 0.0, "{alpn:?} round {round}");
            // The second request reuses the first one's connection.
            assert_eq!(sample(m, OPENED), 1.0, "{alpn:?} round {round}");
            assert_eq!(sample(m, OPEN), 1.0, "{alpn:?} round {round}");
        }
        assert_eq!(s.upstream.accepted.load(Ordering::SeqCst), 1, "{alpn:?}");
        for kind in [
            "timeout",
            "connect_timeout",
            "refused",
            "reset",
            "tls",
            "other",
        ] {
            assert_eq!(sample(m, &errors(kind)), 0.0, "{alpn:?} {kind}");
        }
        // Dropping the forwarder drops its pool: the idle connection closes.
        drop(s.forwarder);
        eventually(m, OPEN, 0.0).await;
        assert_eq!(sample(m, OPENED), 1.0);
    }
}

#[tokio::test]
async fn a_response_body_dropped_unread_leaves_the_in_flight_gauge() {
    let upstream = plain_upstream().await;
    let m = metrics();
    let f = Forwarder::new(
        &[target(format!("http://{}", upstream.addr), None)],
        Arc::clone(&m),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let req = rewrite(
        &f,
        &signer,
        client_request("/order/big/10000000", body::empty()),
        "/big/10000000",
    );
    let resp = f.send("order", req).await.unwrap();
    assert_eq!(sample(&m, IN_FLIGHT), 1.0);
    drop(resp);
    assert_eq!(sample(&m, IN_FLIGHT), 0.0);
    // A connection abandoned mid-body cannot be reused: it closes.
    eventually(&m, OPEN, 0.0).await;
    assert_eq!(sample(&m, OPENED), 1.0);
}

#[tokio::test]
async fn upstream_errors_are_counted_by_kind() {
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();

    // Refused: nothing listens on the port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = metrics();
    let f = Forwarder::new(
        &[target(format!("http://127.0.0.1:{port}"), None)],
        Arc::clone(&m),
    )
    .unwrap();
    let req = rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x");
    assert_eq!(
        f.send("order", req).await.unwrap_err().status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(sample(&m, &errors("refused")), 1.0);
    assert_eq!(sample(&m, &errors("other")), 0.0);
    assert_eq!(sample(&m, IN_FLIGHT), 0.0);
    assert_eq!(
        sample(&m, OPENED),
        0.0,
        "a failed connect is not a connection"
    );

    // Timeout: the upstream sends no response head in time.
    let upstream = plain_upstream().await;
    let mut t = target(format!("http://{}", upstream.addr), None);
    t.response_timeout_ms = 200;
    let m = metrics();
    let f = Forwarder::new(&[t], Arc::clone(&m)).unwrap();
    let req = rewrite(
        &f,
        &signer,
        client_request("/order/slow", body::empty()),
        "/slow",
    );
    assert_eq!(
        f.send("order", req).await.unwrap_err().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(sample(&m, &errors("timeout")), 1.0);
    assert_eq!(sample(&m, IN_FLIGHT), 0.0);

    // TLS: the upstream's certificate is from another CA.
    let dir = TempDir::new();
    let real = Ca::new("real CA");
    let other = Ca::new("other CA");
    let upstream = https_upstream(
        &real.leaf("orders", ExtendedKeyUsagePurpose::ServerAuth),
        &[b"http/1.1"],
        None,
    )
    .await;
    let m = metrics();
    let f = Forwarder::new(
        &[target(
            format!("https://{}", upstream.addr),
            Some(dir.write("other.pem", &other.pem)),
        )],
        Arc::clone(&m),
    )
    .unwrap();
    let req = rewrite(&f, &signer, client_request("/order/x", body::empty()), "/x");
    assert_eq!(
        f.send("order", req).await.unwrap_err().status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(sample(&m, &errors("tls")), 1.0);
    assert_eq!(
        sample(&m, OPENED),
        0.0,
        "a failed handshake is not a connection"
    );
}

#[tokio::test]
async fn a_cancelled_send_leaves_the_in_flight_gauge() {
    let upstream = plain_upstream().await;
    let m = metrics();
    let f = Forwarder::new(
        &[target(format!("http://{}", upstream.addr), None)],
        Arc::clone(&m),
    )
    .unwrap();
    let signer = AssertionSigner::generate("gw-test", 60).unwrap();
    let req = rewrite(
        &f,
        &signer,
        client_request("/order/slow", body::empty()),
        "/slow",
    );
    let mut send = Box::pin(f.send("order", req));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), send.as_mut())
            .await
            .is_err()
    );
    assert_eq!(sample(&m, IN_FLIGHT), 1.0);
    drop(send);
    assert_eq!(sample(&m, IN_FLIGHT), 0.0);
    // The caller gave up, not the upstream: no error is counted.
    for kind in ["timeout", "other"] {
        assert_eq!(sample(&m, &errors(kind)), 0.0);
    }
}
