//! A whole gateway in-process (`server::start`) on 127.0.0.1 port 0 with real TLS
//! (certificates made here with rcgen), in front of two recording TLS upstreams
//! (`order` and `payment`), for the hostile-client, fault and secret-hygiene suites.
//!
//! Include it next to `common` (it signs with `common::signed`):
//! `mod common; #[path = "common/mesh.rs"] mod mesh;`
//!
//! Each recording upstream counts the TCP connections it accepted as well as the
//! requests it answered, so a test can assert that a rejected request reached nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    missing_docs
)]

use bytes::Bytes;
use gateway::config::Config;
use gateway::server::{self, Running};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use crate::common::{REGION, SERVICE};

/// The demo checkout key (allowed to call order and payment).
pub const CHECKOUT: (&str, &str) = (
    "AKIADEMOCHECKOUT0001",
    "demo+checkout+secret+key+not+for+production",
);
/// The demo catalogue key (allowed nothing), its secret read from a `secret_file`.
pub const CATALOGUE: (&str, &str) = (
    "AKIADEMOCATALOGUE001",
    "demo+catalogue+secret+key+not+for+production",
);

/// Long enough that a healthy loopback exchange on a busy machine never hits it; only
/// ever an "eventually" bound.
pub const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// PKI

pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1/localhost: (cert PEM, key PEM).
    pub fn server(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate: (cert PEM, key PEM).
    pub fn client(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A server-side rustls config from PEM strings (ALPN h2 and http/1.1).
pub fn server_tls(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    server_tls_alpn(cert_pem, key_pem, &[b"h2", b"http/1.1"])
}

/// A server-side rustls config from PEM strings, offering `alpn`.
pub fn server_tls_alpn(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client-side rustls config trusting `ca_pem`, with an optional client certificate.
pub fn client_tls(
    ca_pem: &str,
    client: Option<&(String, String)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------
// A recording upstream

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A TLS upstream that records every request and counts every TCP connection.
#[derive(Clone)]
pub struct Recording {
    pub addr: SocketAddr,
    pub name: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Recording {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// What the upstream has seen so far: (connections, requests).
    pub fn mark(&self) -> (usize, usize) {
        (self.connections(), self.requests().len())
    }

    /// Panics if anything reached this upstream since `mark` (a connection or a request).
    pub fn saw_nothing_since(&self, mark: (usize, usize), what: &str) {
        let now = self.mark();
        assert_eq!(
            now.1,
            mark.1,
            "{what}: a rejected request reached the {} upstream: {:?}",
            self.name,
            self.requests().last()
        );
        assert_eq!(
            now.0, mark.0,
            "{what}: the {} upstream was connected to",
            self.name
        );
    }
}

/// Paths: `/slow/MS` waits MS milliseconds before answering; everything else answers at
/// once with `{"upstream": NAME, "path": ..., "bytes": N}`.
async fn record(
    name: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    if let Some(ms) = parts.uri.path().strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::from_static(b"!"),
    };
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(format!(
        "{{\"upstream\":\"{name}\",\"path\":\"{}\",\"bytes\":{}}}",
        parts.uri.path(),
        body.len()
    ))));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

pub async fn recording_upstream(ca: &Ca, name: &'static str) -> Recording {
    let (cert, key) = ca.server(name);
    let tls = tokio_rustls::TlsAcceptor::from(server_tls(&cert, &key));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let rec = Recording {
        addr,
        name,
        seen: Arc::clone(&seen),
        connections: Arc::clone(&connections),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req| record(name, Arc::clone(&seen), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    rec
}

// ---------------------------------------------------------------------------------------
// The gateway

pub const RULES: &str = r#"
[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::111122223333:role/CheckoutPBCRole"]

[[pbc]]
name = "catalogue"
principals = ["arn:aws:iam::111122223333:role/CataloguePBCRole"]

[[pbc]]
name = "order"

[[pbc]]
name = "payment"

[[pbc]]
name = "flaky"

[[allow]]
id = "checkout-calls-order"
caller = "checkout"
target = "order"
methods = ["GET", "POST", "PUT"]
paths = ["/**"]

[[allow]]
id = "checkout-calls-payment"
caller = "checkout"
target = "payment"
methods = ["GET", "POST", "PUT"]
paths = ["/**"]

[[allow]]
id = "checkout-calls-flaky"
caller = "checkout"
target = "flaky"
methods = ["GET", "POST", "PUT"]
paths = ["/**"]

[[deny]]
id = "no-order-deletes"
caller = "*"
target = "order"
methods = ["DELETE"]
paths = ["/**"]
"#;

pub const CREDENTIALS: &str = r#"
[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "demo+checkout+secret+key+not+for+production"

[[credential]]
access_key_id = "AKIADEMOCATALOGUE001"
role_arn = "arn:aws:iam::111122223333:role/CataloguePBCRole"
secret_file = "catalogue.secret"
"#;

/// What varies between meshes.
#[derive(Default)]
pub struct Options {
    /// Lines for the `[limits]` table (after `drain_timeout_ms`).
    pub limits: String,
    /// Require client certificates from the mesh CA on the public listener.
    pub mtls: bool,
    /// TOML appended to the config (more `[[target]]`s, `[sts]`, `[[role]]`...).
    pub extra: String,
    /// Lines for the order target (e.g. `response_timeout_ms = 500`).
    pub order_target: String,
}

pub struct Mesh {
    running: Option<Running>,
    pub dir: PathBuf,
    pub ca: Ca,
    /// A client certificate from the mesh CA (used when `mtls`).
    pub client_cert: (String, String),
    pub mtls: bool,
    pub order: Recording,
    pub payment: Recording,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gateway-mesh-{tag}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Mesh {
    pub async fn start(tag: &str, options: Options) -> Mesh {
        let dir = temp_dir(tag);
        let ca = Ca::new("mesh test CA");
        let (cert, key) = ca.server("gateway");
        std::fs::write(dir.join("gateway.pem"), cert).unwrap();
        std::fs::write(dir.join("gateway.key"), key).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.join("catalogue.secret"), format!("{}\n", CATALOGUE.1)).unwrap();
        std::fs::write(dir.join("rules.toml"), RULES).unwrap();
        std::fs::write(dir.join("credentials.toml"), CREDENTIALS).unwrap();
        let order = recording_upstream(&ca, "order").await;
        let payment = recording_upstream(&ca, "payment").await;
        let client_ca = if options.mtls {
            "client_ca = \"ca.pem\"\nrequire_client_cert = true"
        } else {
            ""
        };
        let config = format!(
            r#"
[listen]
addr = "127.0.0.1:0"
[listen.tls]
cert = "gateway.pem"
key = "gateway.key"
{client_ca}

[admin]
addr = "127.0.0.1:0"

[limits]
drain_timeout_ms = 10000
{limits}

[sigv4]
regions = ["{REGION}"]
services = ["{SERVICE}"]

[identity]
credentials_file = "credentials.toml"

[rules]
file = "rules.toml"

[audit]
sink = "file"
path = "audit.log"

[[target]]
name = "order"
upstream = "https://{order}"
path_prefix = "/order"
ca_bundle = "ca.pem"
{order_target}

[[target]]
name = "payment"
upstream = "https://{payment}"
path_prefix = "/payment"
ca_bundle = "ca.pem"

{extra}
"#,
            limits = options.limits,
            order = order.addr,
            payment = payment.addr,
            order_target = options.order_target,
            extra = options.extra,
        );
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let config = Config::load(&dir.join("gateway.toml")).unwrap_or_else(|e| panic!("{e}"));
        let running = server::start(&config).await.unwrap();
        Mesh {
            running: Some(running),
            dir,
            client_cert: ca.client("checkout"),
            ca,
            mtls: options.mtls,
            order,
            payment,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr().port())
    }

    /// Both upstreams' (connections, requests) so far.
    pub fn mark(&self) -> [(usize, usize); 2] {
        [self.order.mark(), self.payment.mark()]
    }

    pub fn saw_nothing_since(&self, mark: [(usize, usize); 2], what: &str) {
        self.order.saw_nothing_since(mark[0], what);
        self.payment.saw_nothing_since(mark[1], what);
    }

    pub fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_tls(&self.ca.pem, self.mtls.then_some(&self.client_cert), alpn)
    }

    pub fn client(
        &self,
        http2: bool,
    ) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
        let tls = Arc::unwrap_or_clone(self.tls_config(&[]));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let connector = if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let mut b = Client::builder(TokioExecutor::new());
        if http2 {
            b.http2_only(true);
        }
        b.build(connector)
    }

    /// Sends on a fresh HTTP/1.1 client; the answer, within PATIENCE.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        let client = self.client(false);
        tokio::time::timeout(PATIENCE, answer(client.request(req)))
            .await
            .expect("no answer within PATIENCE")
    }

    /// A normal signed GET to order answers 200 from the order upstream.
    pub async fn still_serving(&self, what: &str) {
        let req = crate::common::signed(
            CHECKOUT,
            "GET",
            &self.url("/order/orders/alive"),
            b"",
            SystemTime::now(),
            REGION,
        );
        let a = self.send(req).await;
        assert_eq!(a.status, StatusCode::OK, "after {what}: {}", a.body);
        assert!(a.body.contains("\"upstream\":\"order\""), "{}", a.body);
    }

    /// A raw TLS connection to the public listener, with the given ALPN.
    pub async fn tls_connect(&self, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr()).await.unwrap();
        tokio_rustls::TlsConnector::from(self.tls_config(alpn))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// `/metrics` from the admin listener.
    pub async fn metrics(&self) -> String {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let url = format!("http://{}/metrics", self.running().admin_addr);
        let resp = client.get(url.parse().unwrap()).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The audit log, after flushing the queue.
    pub async fn audit_text(&self) -> String {
        self.running().gateway.auditor().flush().await;
        std::fs::read_to_string(self.audit_path()).unwrap_or_default()
    }

    /// Stops the gateway (draining) and removes the directory.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn take_running(&mut self) -> Running {
        self.running.take().unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

// ---------------------------------------------------------------------------------------
// Answers

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body ended with an error (cut off), not its proper end.
    pub cut: bool,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts status and AWS error code (header and JSON body agree).
    pub fn expect(&self, status: StatusCode, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert_eq!(self.code(), code, "{what}: {}", self.body);
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", self.body));
        assert_eq!(v["code"], code, "{what}");
    }
}

pub async fn answer(
    fut: impl std::future::Future<
        Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>,
    >,
) -> Answer {
    let resp = fut.await.unwrap();
    let (parts, body) = resp.into_parts();
    let (body, cut) = match body.collect().await {
        Ok(b) => (String::from_utf8_lossy(&b.to_bytes()).into_owned(), false),
        Err(e) => (format!("<body cut off: {e}>"), true),
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        cut,
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1

/// The request head as HTTP/1.1 bytes (request line and headers, ending with the blank
/// line), for requests written to a socket by hand.
pub fn raw_head(req: &Request<Full<Bytes>>) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\n",
        req.method(),
        req.uri().path_and_query().unwrap()
    )
    .into_bytes();
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The whole request as HTTP/1.1 bytes: head (with a `content-length` for the body when
/// it has one) and body.
pub fn raw_request(req: &Request<Full<Bytes>>, body: &[u8]) -> Vec<u8> {
    let mut out = raw_head(req);
    if !body.is_empty() {
        out.truncate(out.len() - 2);
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// Reads until the peer closes (or PATIENCE passes: then panics); returns what was read.
/// A reset counts as closed.
pub async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection was still open after {PATIENCE:?}; read so far: {}",
        String::from_utf8_lossy(&got)
    );
    got
}

/// Writes `bytes`, ignoring a failure (the gateway may close before reading them all).
pub async fn write_lossy<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// The status code of a raw HTTP/1.1 response, and the value of `x-amzn-ErrorType`.
pub fn parse_raw(got: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let code = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-amzn-errortype")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, code)
}

/// How many responses a raw HTTP/1.1 byte stream holds (status lines counted).
pub fn responses(got: &[u8]) -> usize {
    got.windows(9).filter(|w| w == b"HTTP/1.1 ").count()
}

// ---------------------------------------------------------------------------------------
// The process

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}
