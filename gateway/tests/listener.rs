//! The public listener and the admin listener, over real sockets on 127.0.0.1 with
//! certificates made by rcgen at test time.
//!
//! Timeouts are short (hundreds of milliseconds) so the suite is quick; assertions are
//! about outcomes (status, closed, refused), with only generous upper bounds on time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use bytes::Bytes;
use gateway::admin::{self, Readiness};
use gateway::body;
use gateway::config::TlsConfig;
use gateway::context::ConnInfo;
use gateway::listener::{self, ServerLimits, handler_fn};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Long enough that a healthy loopback exchange never hits it, short enough that a
/// hang fails the test instead of the CI job.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- certificates

struct Pki {
    dir: PathBuf,
    ca_pem: String,
    /// Signed by the CA: CN=checkout, O=Commerce.
    client: (String, String),
    /// Signed by another CA.
    rogue: (String, String),
}

impl Pki {
    fn new() -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-listener-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_pem, ca) = new_ca("Test CA");
        let (_, rogue_ca) = new_ca("Rogue CA");

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        server.distinguished_name = DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::CommonName, "gateway");
        server
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let server = server.signed_by(&server_key, &ca).unwrap();

        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Pki {
            client: new_client("checkout", &ca),
            rogue: new_client("checkout", &rogue_ca),
            dir,
            ca_pem,
        }
    }

    fn tls(&self, client_ca: bool, require_client_cert: bool) -> TlsConfig {
        TlsConfig {
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            client_ca: client_ca.then(|| self.dir.join("ca.pem")),
            require_client_cert,
        }
    }

    fn server_config(
        &self,
        client_ca: bool,
        require_client_cert: bool,
    ) -> Arc<rustls::ServerConfig> {
        listener::server_tls_config(&self.tls(client_ca, require_client_cert)).unwrap()
    }

    fn client_config(
        &self,
        alpn: &[&[u8]],
        client: Option<&(String, String)>,
    ) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
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
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn new_client(cn: &str, ca: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Commerce");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .extended_key_usages
        .push(ExtendedKeyUsagePurpose::ClientAuth);
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

// ---------------------------------------------------------------- server under test

fn limits() -> ServerLimits {
    ServerLimits {
        max_header_bytes: 16 * 1024,
        max_headers: 20,
        max_uri_bytes: 256,
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(5),
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<std::io::Result<()>>,
    /// The path of every request as it reaches the handler.
    arrivals: mpsc::UnboundedReceiver<String>,
}

impl Server {
    fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }
}

/// The handler under test: `/slow/<ms>` sleeps that long; every request is answered
/// with what the handler saw, as JSON.
async fn start(tls: Option<Arc<rustls::ServerConfig>>, limits: ServerLimits) -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let handler = handler_fn(move |req: Request<Incoming>, conn: Arc<ConnInfo>| {
        let arrived = arrived.clone();
        async move {
            let path = req.uri().path().to_string();
            let _ = arrived.send(path.clone());
            if let Some(ms) = path.strip_prefix("/slow/") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            let seen = serde_json::json!({
                "path": path,
                "version": format!("{:?}", req.version()),
                "tls": conn.tls,
                "client_identity": conn.client_identity,
                "peer": conn.peer.to_string(),
                "local": conn.local.to_string(),
            });
            Response::new(body::full(seen.to_string()))
        }
    });
    let done = tokio::spawn(listener::serve(tcp, tls, limits, handler, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        done,
        arrivals,
    }
}

// ---------------------------------------------------------------- clients

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

async fn collect(resp: Response<Incoming>) -> Result<Reply, hyper::Error> {
    let (parts, body) = resp.into_parts();
    Ok(Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// HTTP/2 requests carry the scheme and authority as pseudo-headers.
fn get_h2(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// An HTTP/1.1 client connection; the task ends when the connection closes.
async fn h1<S>(
    io: S,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    JoinHandle<hyper::Result<()>>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

/// An HTTP/2 client connection; the task ends when the connection closes.
async fn h2<S>(
    io: S,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    JoinHandle<hyper::Result<()>>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

async fn h1_once<S>(io: S, req: Request<Full<Bytes>>) -> Result<Reply, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let mut send = send;
    collect(send.send_request(req).await?).await
}

async fn h2_once<S>(io: S, req: Request<Full<Bytes>>) -> Result<Reply, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let mut send = send;
    collect(send.send_request(req).await?).await
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Reads until the server closes the connection (EOF or reset); returns what was read,
/// or `None` if it is still open after `PATIENCE`.
async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    match timeout(PATIENCE, stream.read_to_end(&mut got)).await {
        Ok(_) => Some(got),
        Err(_) => None,
    }
}

fn error_type(reply: &Reply) -> &str {
    reply
        .headers
        .get("x-amzn-ErrorType")
        .expect("x-amzn-ErrorType")
        .to_str()
        .unwrap()
}

// ---------------------------------------------------------------- TLS and ALPN

#[tokio::test]
async fn http1_over_tls_when_alpn_says_http1() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(false, false)), limits()).await;
    let stream = tls_connect(server.addr, pki.client_config(&[b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let client_addr = stream.get_ref().0.local_addr().unwrap();
    let reply = h1_once(stream, get("/hello")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_11);
    let seen = reply.json();
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["tls"], true);
    assert_eq!(seen["client_identity"], serde_json::Value::Null);
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["peer"], client_addr.to_string());
    assert_eq!(seen["local"], server.addr.to_string());
}

#[tokio::test]
async fn http2_over_tls_when_alpn_says_h2() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(false, false)), limits()).await;
    let stream = tls_connect(server.addr, pki.client_config(&[b"h2", b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let reply = h2_once(stream, get_h2("/hello")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.json()["version"], "HTTP/2.0");
    assert_eq!(reply.json()["tls"], true);
}

#[tokio::test]
async fn tls_without_alpn_still_serves_http1() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(false, false)), limits()).await;
    let stream = tls_connect(server.addr, pki.client_config(&[], None))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let reply = h1_once(stream, get("/")).await.unwrap();
    assert_eq!(reply.json()["version"], "HTTP/1.1");
}

#[tokio::test]
async fn a_failed_handshake_does_not_hurt_the_listener() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(false, false)), limits()).await;
    // Not TLS at all.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut tcp).await.is_some(),
        "a non-TLS client must be dropped"
    );
    // A client that does not trust the server's CA.
    let (rogue_ca_pem, _) = new_ca("Other");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(rogue_ca_pem.as_bytes()).unwrap())
        .unwrap();
    let distrustful =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    assert!(
        tls_connect(server.addr, Arc::new(distrustful))
            .await
            .is_err()
    );
    // The listener still serves.
    let stream = tls_connect(server.addr, pki.client_config(&[b"h2"], None))
        .await
        .unwrap();
    assert_eq!(
        h2_once(stream, get_h2("/")).await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_after_header_read_timeout() {
    let pki = Pki::new();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..limits()
    };
    let server = start(Some(pki.server_config(false, false)), limits).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // Half a ClientHello record header, then nothing.
    tcp.write_all(&[0x16, 0x03]).await.unwrap();
    assert!(
        read_until_closed(&mut tcp).await.is_some(),
        "the handshake must time out"
    );
}

/// A handler that only records the TLS handshake failures it is told about.
#[derive(Clone, Default)]
struct HandshakeWatcher(Arc<std::sync::Mutex<Vec<&'static str>>>);

impl listener::Handler for HandshakeWatcher {
    async fn call(
        &self,
        _req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> Response<body::GatewayBody> {
        Response::new(body::empty())
    }

    fn tls_handshake_failed(&self, reason: &'static str) {
        self.0.lock().unwrap().push(reason);
    }
}

#[tokio::test]
async fn handshake_failures_and_timeouts_are_reported_to_the_handler() {
    let pki = Pki::new();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..limits()
    };
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let watcher = HandshakeWatcher::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(listener::serve(
        tcp,
        Some(pki.server_config(false, false)),
        limits,
        watcher.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let seen = || watcher.0.lock().unwrap().clone();
    // The socket may close a moment before the listener reports: wait for the report.
    let reported = |want: &'static [&'static str]| {
        let watcher = watcher.clone();
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while *watcher.0.lock().unwrap() != want {
                assert!(tokio::time::Instant::now() < deadline, "{:?}", watcher.0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // Not TLS at all: the handshake fails.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut tcp).await.is_some());
    reported(&["failed"]).await;

    // Half a ClientHello record header, then nothing: the handshake times out.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03]).await.unwrap();
    assert!(read_until_closed(&mut tcp).await.is_some());
    reported(&["failed", "timeout"]).await;

    // A good handshake is not reported.
    let stream = tls_connect(addr, pki.client_config(&[b"h2"], None))
        .await
        .unwrap();
    assert_eq!(
        h2_once(stream, get_h2("/")).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(seen(), ["failed", "timeout"]);

    stop.send(()).unwrap();
    timeout(PATIENCE, done).await.unwrap().unwrap().unwrap();
}

// ---------------------------------------------------------------- mutual TLS

/// With TLS 1.3 the client finishes its side of the handshake before the server has
/// checked the client's certificate; the refusal then arrives as an alert on first use.
async fn refused(addr: SocketAddr, config: Arc<ClientConfig>) -> bool {
    let Ok(stream) = tls_connect(addr, config).await else {
        return true;
    };
    timeout(PATIENCE, h1_once(stream, get("/")))
        .await
        .unwrap()
        .is_err()
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(true, true)), limits()).await;
    assert!(refused(server.addr, pki.client_config(&[b"http/1.1"], None)).await);
}

#[tokio::test]
async fn mtls_refuses_a_certificate_from_another_ca() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(true, true)), limits()).await;
    assert!(
        refused(
            server.addr,
            pki.client_config(&[b"http/1.1"], Some(&pki.rogue))
        )
        .await
    );
}

#[tokio::test]
async fn mtls_names_the_client_by_its_certificate_subject() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(true, true)), limits()).await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let stream = tls_connect(server.addr, pki.client_config(&[alpn], Some(&pki.client)))
            .await
            .unwrap();
        let reply = if alpn == b"h2" {
            h2_once(stream, get_h2("/")).await.unwrap()
        } else {
            h1_once(stream, get("/")).await.unwrap()
        };
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["client_identity"], "CN=checkout,O=Commerce");
    }
}

#[tokio::test]
async fn optional_client_certificates() {
    let pki = Pki::new();
    let server = start(Some(pki.server_config(true, false)), limits()).await;
    let anonymous = tls_connect(server.addr, pki.client_config(&[b"h2"], None))
        .await
        .unwrap();
    let reply = h2_once(anonymous, get_h2("/")).await.unwrap();
    assert_eq!(reply.json()["client_identity"], serde_json::Value::Null);
    let named = tls_connect(server.addr, pki.client_config(&[b"h2"], Some(&pki.client)))
        .await
        .unwrap();
    let reply = h2_once(named, get_h2("/")).await.unwrap();
    assert_eq!(reply.json()["client_identity"], "CN=checkout,O=Commerce");
    // An untrusted certificate is still refused: optional does not mean unchecked.
    assert!(
        refused(
            server.addr,
            pki.client_config(&[b"http/1.1"], Some(&pki.rogue))
        )
        .await
    );
}

// ---------------------------------------------------------------- TLS configuration errors

#[test]
fn tls_config_errors_name_the_file_and_the_problem() {
    let pki = Pki::new();
    let missing = TlsConfig {
        cert: pki.dir.join("nope.pem"),
        ..pki.tls(false, false)
    };
    let e = listener::server_tls_config(&missing).unwrap_err();
    assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");

    let key_is_a_cert = TlsConfig {
        key: pki.dir.join("server.pem"),
        ..pki.tls(false, false)
    };
    let e = listener::server_tls_config(&key_is_a_cert).unwrap_err();
    assert!(
        e.contains("server.pem") && e.contains("no private key"),
        "{e}"
    );

    let cert_is_a_key = TlsConfig {
        cert: pki.dir.join("server.key"),
        ..pki.tls(false, false)
    };
    let e = listener::server_tls_config(&cert_is_a_key).unwrap_err();
    assert!(
        e.contains("server.key") && e.contains("no certificate"),
        "{e}"
    );

    std::fs::write(
        pki.dir.join("other.key"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let mismatched = TlsConfig {
        key: pki.dir.join("other.key"),
        ..pki.tls(false, false)
    };
    let e = listener::server_tls_config(&mismatched).unwrap_err();
    assert!(
        e.contains("other.key") && e.contains("does not belong"),
        "{e}"
    );

    let ca_is_a_key = TlsConfig {
        client_ca: Some(pki.dir.join("server.key")),
        ..pki.tls(false, true)
    };
    let e = listener::server_tls_config(&ca_is_a_key).unwrap_err();
    assert!(
        e.contains("server.key") && e.contains("client CA bundle"),
        "{e}"
    );
}

#[test]
fn tls_config_errors_never_quote_the_key_file() {
    let pki = Pki::new();
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA!!SECRETSECRET";
    for (name, text) in [
        (
            "bad-base64.key",
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
        ),
        (
            "no-end.key",
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n"),
        ),
        ("bad-begin.key", format!("-----BEGIN {secret}\nAAAA\n")),
    ] {
        std::fs::write(pki.dir.join(name), &text).unwrap();
        let config = TlsConfig {
            key: pki.dir.join(name),
            ..pki.tls(false, false)
        };
        let e = listener::server_tls_config(&config).unwrap_err();
        assert!(e.contains(name), "{e}");
        assert!(
            !e.contains("SECRET") && !e.contains("c2VjcmV0"),
            "{name}: the error quotes the key file: {e}"
        );
    }
}

// ---------------------------------------------------------------- plain HTTP

#[tokio::test]
async fn plain_http_detects_http1_and_http2() {
    let server = start(None, limits()).await;
    let reply = h1_once(TcpStream::connect(server.addr).await.unwrap(), get("/one"))
        .await
        .unwrap();
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.json()["tls"], false);
    assert_eq!(reply.json()["version"], "HTTP/1.1");
    // HTTP/2 with prior knowledge (h2c).
    let reply = h2_once(
        TcpStream::connect(server.addr).await.unwrap(),
        get_h2("/two"),
    )
    .await
    .unwrap();
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.json()["version"], "HTTP/2.0");
    assert_eq!(reply.json()["tls"], false);
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn a_too_long_uri_gets_414_json() {
    let server = start(None, limits()).await;
    let long = format!("/{}", "a".repeat(300));
    let h1_reply = h1_once(TcpStream::connect(server.addr).await.unwrap(), get(&long))
        .await
        .unwrap();
    let h2_reply = h2_once(
        TcpStream::connect(server.addr).await.unwrap(),
        get_h2(&long),
    )
    .await
    .unwrap();
    for reply in [h1_reply, h2_reply] {
        assert_eq!(reply.status, StatusCode::URI_TOO_LONG);
        assert_eq!(error_type(&reply), "RequestURITooLong");
        assert_eq!(reply.headers["content-type"], "application/json");
        let json = reply.json();
        assert_eq!(json["code"], "RequestURITooLong");
        let id = json["requestId"].as_str().unwrap();
        assert!(!id.is_empty());
        assert_eq!(reply.headers["x-amzn-RequestId"], id);
    }
    // Right at the limit is fine.
    let at_limit = format!("/{}", "a".repeat(255));
    let reply = h1_once(
        TcpStream::connect(server.addr).await.unwrap(),
        get(&at_limit),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn too_many_headers_are_refused() {
    let server = start(None, limits()).await;
    // HTTP/1: hyper refuses while parsing (431) and closes.
    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        head.push_str(&format!("x-h{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut tcp).await.expect("closed");
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // HTTP/2: the listener counts them.
    let mut req = get_h2("/");
    for i in 0..30 {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_static("v"),
        );
    }
    let reply = h2_once(TcpStream::connect(server.addr).await.unwrap(), req)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(error_type(&reply), "RequestHeaderFieldsTooLarge");
    // Under the limit both are served.
    let reply = h1_once(TcpStream::connect(server.addr).await.unwrap(), get("/"))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_header_block_is_refused() {
    let server = start(None, limits()).await;
    let big = "v".repeat(20 * 1024);
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_until_closed(&mut tcp).await.expect("closed");
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // HTTP/2 enforces SETTINGS_MAX_HEADER_LIST_SIZE: the request never reaches the handler.
    let mut req = get_h2("/");
    req.headers_mut().insert("x-big", big.parse().unwrap());
    let outcome = h2_once(TcpStream::connect(server.addr).await.unwrap(), req).await;
    assert!(
        outcome.as_ref().map_or(true, |r| r.status
            == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------- timeouts

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..limits()
    };
    let mut server = start(None, limits).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /never HTTP/1.1\r\nHost: x\r\nx-slow: ")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut tcp).await.is_some(),
        "still open after {PATIENCE:?}"
    );
    // A client that connects and says nothing is cut off the same way.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent).await.is_some(),
        "still open after {PATIENCE:?}"
    );
    // On a keep-alive connection, a second head that stalls is cut off too.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("/first\"") {
        let mut buf = [0u8; 4096];
        let n = timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the first response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tcp.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut tcp).await.is_some(),
        "still open after {PATIENCE:?}"
    );
    assert_eq!(server.arrivals.recv().await.unwrap(), "/first");
    assert!(
        server.arrivals.try_recv().is_err(),
        "/never and /second must not reach the handler"
    );
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(300),
        // Far above PATIENCE: if the connection closes, the idle timeout closed it.
        header_read_timeout: Duration::from_secs(60),
        ..limits()
    };
    let server = start(None, limits).await;
    let (mut send, conn) = h1(TcpStream::connect(server.addr).await.unwrap()).await;
    // A request in flight longer than idle_timeout does not make the connection idle.
    let reply = collect(send.send_request(get("/slow/800")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let reply = collect(send.send_request(get("/again")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // Now idle: the server closes it while the client still holds it open.
    let closed = timeout(PATIENCE, conn).await;
    assert!(
        closed.is_ok(),
        "the idle connection is still open after {PATIENCE:?}"
    );
    drop(send);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let pki = Pki::new();
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(60),
        ..limits()
    };
    let server = start(Some(pki.server_config(false, false)), limits).await;
    let stream = tls_connect(server.addr, pki.client_config(&[b"h2"], None))
        .await
        .unwrap();
    let (mut send, conn) = h2(stream).await;
    let reply = collect(send.send_request(get_h2("/slow/800")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let closed = timeout(PATIENCE, conn).await;
    assert!(
        closed.is_ok(),
        "the idle connection is still open after {PATIENCE:?}"
    );
    drop(send);
}

#[tokio::test]
async fn a_request_over_request_timeout_gets_504() {
    let limits = ServerLimits {
        request_timeout: Duration::from_millis(200),
        ..limits()
    };
    let server = start(None, limits).await;
    let reply = h1_once(
        TcpStream::connect(server.addr).await.unwrap(),
        get("/slow/3000"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_type(&reply), "GatewayTimeout");
    let json = reply.json();
    assert_eq!(json["code"], "GatewayTimeout");
    assert!(
        json["message"].as_str().unwrap().contains("200 ms"),
        "{json}"
    );
    // A quick request on the same listener is unaffected.
    let reply = h1_once(
        TcpStream::connect(server.addr).await.unwrap(),
        get("/slow/10"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

// ---------------------------------------------------------------- graceful shutdown

/// Tries to connect until the listener refuses; true if it did.
async fn refuses_connections(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_connections() {
    let mut server = start(None, limits()).await;
    let (mut send1, _c1) = h1(TcpStream::connect(server.addr).await.unwrap()).await;
    let (mut send2, _c2) = h2(TcpStream::connect(server.addr).await.unwrap()).await;
    let slow1 =
        tokio::spawn(async move { collect(send1.send_request(get("/slow/800")).await?).await });
    let slow2 =
        tokio::spawn(async move { collect(send2.send_request(get_h2("/slow/800")).await?).await });
    for _ in 0..2 {
        let path = timeout(PATIENCE, server.arrivals.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(path, "/slow/800");
    }
    server.shut_down();
    assert!(
        refuses_connections(server.addr).await,
        "new connections are still accepted"
    );
    let reply1 = slow1.await.unwrap().unwrap();
    let reply2 = slow2.await.unwrap().unwrap();
    assert_eq!(reply1.status, StatusCode::OK);
    assert_eq!(reply2.status, StatusCode::OK);
    // HTTP/1 tells the client not to reuse the connection.
    assert_eq!(reply1.headers["connection"], "close");
    let done = timeout(PATIENCE, server.done)
        .await
        .expect("serve() did not return");
    done.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_drops_requests_still_running_at_the_drain_deadline() {
    let limits = ServerLimits {
        drain_timeout: Duration::from_millis(300),
        ..limits()
    };
    let mut server = start(None, limits).await;
    let (mut send, _conn) = h1(TcpStream::connect(server.addr).await.unwrap()).await;
    let slow =
        tokio::spawn(async move { collect(send.send_request(get("/slow/30000")).await?).await });
    timeout(PATIENCE, server.arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    server.shut_down();
    let done = timeout(PATIENCE, server.done)
        .await
        .expect("serve() did not return");
    done.unwrap().unwrap();
    let outcome = timeout(PATIENCE, slow)
        .await
        .expect("the client still waits")
        .unwrap();
    assert!(
        outcome
            .as_ref()
            .map_or(true, |r| r.status != StatusCode::OK),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn shutdown_with_idle_connections_is_prompt() {
    let mut server = start(None, limits()).await;
    let (mut send, conn) = h1(TcpStream::connect(server.addr).await.unwrap()).await;
    let reply = collect(send.send_request(get("/")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    server.shut_down();
    // drain_timeout is 5 s; idle and silent connections must not hold shutdown that long.
    let started = std::time::Instant::now();
    timeout(PATIENCE, server.done)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(timeout(PATIENCE, conn).await.is_ok());
}

// ---------------------------------------------------------------- admin listener

async fn admin_get(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    h1_once(TcpStream::connect(addr).await.unwrap(), req)
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_healthz_and_readyz() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let readiness = Readiness::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let scrape: admin::Scrape = Arc::new(|| "# TYPE up gauge\nup 1\n# EOF\n".to_string());
    let done = tokio::spawn(admin::serve(tcp, readiness.clone(), scrape, async move {
        let _ = stopped.await;
    }));

    let health = admin_get(addr, "GET", "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(health.headers["content-type"], "application/json");

    let ready = admin_get(addr, "GET", "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json(), serde_json::json!({"status": "not ready"}));

    readiness.set_ready(true);
    assert!(readiness.is_ready());
    let ready = admin_get(addr, "GET", "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), serde_json::json!({"status": "ready"}));

    readiness.set_ready(false);
    assert_eq!(
        admin_get(addr, "GET", "/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    readiness.set_ready(true);
    readiness.set_draining();
    let ready = admin_get(addr, "GET", "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json(), serde_json::json!({"status": "draining"}));
    // Draining is final.
    readiness.set_ready(true);
    assert!(!readiness.is_ready());
    assert_eq!(
        admin_get(addr, "GET", "/readyz").await.json()["status"],
        "draining"
    );
    // Liveness is unaffected by readiness.
    assert_eq!(
        admin_get(addr, "GET", "/healthz").await.status,
        StatusCode::OK
    );

    let metrics = admin_get(addr, "GET", "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(
        metrics.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(metrics.headers["cache-control"], "no-store");
    assert_eq!(&metrics.body[..], b"# TYPE up gauge\nup 1\n# EOF\n");
    assert_eq!(
        admin_get(addr, "POST", "/metrics").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let missing = admin_get(addr, "GET", "/metricz").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["status"], "not found");
    let wrong_method = admin_get(addr, "POST", "/healthz").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json()["status"], "method not allowed");

    stop.send(()).unwrap();
    timeout(PATIENCE, done).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn admin_router_works_without_a_socket() {
    use tower::ServiceExt;
    let readiness = Readiness::default();
    readiness.set_ready(true);
    let resp = admin::router(readiness, Arc::new(String::new))
        .oneshot(
            Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"status":"ready"}"#);
}
