//! Web identity verification with the issuer's JWKS served over real HTTPS on
//! 127.0.0.1 (certificates made by rcgen at test time): lazy first fetch, caching, one
//! refetch for an unknown key id after a rotation, the refetch rate limit (also under
//! concurrent requests), and every way a fetch can fail (status, size, not JSON, closed
//! port, silent server, redirect, untrusted certificate) reported as `IdpUnreachable`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gateway::sts::web_identity::{
    MAX_JWKS_BYTES, OidcIssuerConfig, WebIdentity, WebIdentityError, WebIdentityVerifier,
};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NOW: i64 = 1_700_000_000;
const K8S: &str = "https://kubernetes.default.svc";
const AUD: &str = "sts.gateway";
const SA: &str = "system:serviceaccount:checkout:checkout-sa";

// ---------------------------------------------------------------------------------------
// PKI and files made at test time

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

    /// A server certificate for 127.0.0.1.
    fn leaf(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "jwks");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("gw-web-identity-{}", uuid::Uuid::new_v4()));
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
// Signing keys and tokens

/// An ES256 key with its public JWK.
struct Key {
    kid: String,
    private: EncodingKey,
    jwk: Value,
}

impl Key {
    fn new(kid: &str) -> Key {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        Key {
            kid: kid.into(),
            private: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    /// A Kubernetes-style service-account token.
    fn token(&self) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = json!({
            "iss": K8S, "sub": SA, "aud": [AUD],
            "exp": NOW + 3600, "iat": NOW, "nbf": NOW,
            "kubernetes.io": {"namespace": "checkout", "serviceaccount": {"name": "checkout-sa"}},
        });
        jsonwebtoken::encode(&header, &claims, &self.private).unwrap()
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

// ---------------------------------------------------------------------------------------
// The JWKS server

/// What the server answers with; changed between requests to rotate keys or break it.
#[derive(Clone)]
enum Reply {
    Jwks(String),
    Status(u16),
    Redirect,
    /// Never answers.
    Silent,
}

struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
}

impl JwksServer {
    async fn start(ca: &Ca, reply: Reply) -> JwksServer {
        let (cert, key) = ca.leaf();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(reply));
        let (h, r) = (hits.clone(), reply.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (h, r) = (h.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (h, r) = (h.clone(), r.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/openid/v1/jwks");
                            h.fetch_add(1, Ordering::SeqCst);
                            let reply = r.lock().unwrap().clone();
                            Ok::<_, Infallible>(respond(reply).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        JwksServer { addr, hits, reply }
    }

    fn url(&self) -> String {
        format!("https://{}/openid/v1/jwks", self.addr)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let (status, body) = match reply {
        Reply::Jwks(body) => (200, body),
        Reply::Status(code) => (code, String::new()),
        Reply::Redirect => {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "https://127.0.0.1:1/elsewhere")
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        Reply::Silent => std::future::pending().await,
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn verifier(url: &str, ca_pem: &str, dir: &TempDir) -> WebIdentityVerifier {
    let ca = dir.write(&format!("ca-{}.pem", uuid::Uuid::new_v4()), ca_pem);
    WebIdentityVerifier::new(&[OidcIssuerConfig {
        issuer: K8S.into(),
        audiences: vec![AUD.into()],
        jwks_file: None,
        jwks_url: Some(url.into()),
        ca_bundle: Some(ca),
        jwks_cache_secs: 300,
        leeway_secs: 60,
    }])
    .unwrap()
}

fn unreachable(r: Result<WebIdentity, WebIdentityError>) -> String {
    match r {
        Err(WebIdentityError::IdpUnreachable(m)) => m,
        other => panic!("expected IdpUnreachable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    let dir = TempDir::new();
    let ca = Ca::new("jwks test CA");
    let a = Key::new("key-a");
    let server = JwksServer::start(&ca, Reply::Jwks(jwks(&[&a]))).await;
    let v = verifier(&server.url(), &ca.pem, &dir);
    assert_eq!(
        server.hits(),
        0,
        "the JWKS is fetched at first use, not at start"
    );

    let id = v.verify(&a.token(), NOW).await.unwrap();
    assert_eq!(
        id,
        WebIdentity {
            issuer: K8S.into(),
            subject: SA.into(),
            audience: AUD.into(),
            expires_at: NOW + 3600,
            issued_at: Some(NOW),
        }
    );
    assert_eq!(server.hits(), 1);
    assert!(v.verify(&a.token(), NOW).await.is_ok());
    assert_eq!(server.hits(), 1, "known key ids are served from the cache");

    // Rotation: the issuer adds key B. A token signed with it is unknown, so the JWKS
    // is fetched again, once.
    let b = Key::new("key-b");
    server.set(Reply::Jwks(jwks(&[&a, &b])));
    assert!(v.verify(&b.token(), NOW).await.is_ok());
    assert_eq!(server.hits(), 2);
    assert!(v.verify(&b.token(), NOW).await.is_ok());
    assert!(v.verify(&a.token(), NOW).await.is_ok());
    assert_eq!(server.hits(), 2);

    // Another rotation right away: within the rate limit the JWKS is not fetched again,
    // however many tokens (concurrent ones included) name an unknown key id.
    let c = Key::new("key-c");
    server.set(Reply::Jwks(jwks(&[&c])));
    match v.verify(&c.token(), NOW).await {
        Err(WebIdentityError::Invalid(m)) => assert!(m.contains("does not publish"), "{m}"),
        other => panic!("{other:?}"),
    }
    let v = Arc::new(v);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let v = v.clone();
            let token = Key::new(&format!("made-up-{i}")).token();
            tokio::spawn(async move { v.verify(&token, NOW).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap(),
            Err(WebIdentityError::Invalid(_))
        ));
    }
    assert_eq!(server.hits(), 2, "refetches are rate-limited");
    // The keys fetched last keep working meanwhile.
    assert!(v.verify(&b.token(), NOW).await.is_ok());
}

#[tokio::test]
async fn concurrent_first_use_fetches_once() {
    let dir = TempDir::new();
    let ca = Ca::new("jwks test CA");
    let a = Key::new("key-a");
    let server = JwksServer::start(&ca, Reply::Jwks(jwks(&[&a]))).await;
    let v = Arc::new(verifier(&server.url(), &ca.pem, &dir));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let v = v.clone();
            let token = a.token();
            tokio::spawn(async move { v.verify(&token, NOW).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn failed_fetches_are_idp_unreachable_and_rate_limited() {
    let dir = TempDir::new();
    let ca = Ca::new("jwks test CA");
    let a = Key::new("key-a");
    let server = JwksServer::start(&ca, Reply::Status(500)).await;
    let v = verifier(&server.url(), &ca.pem, &dir);
    let m = unreachable(v.verify(&a.token(), NOW).await);
    assert!(m.contains(K8S) && m.contains("500"), "{m}");
    // Fixed at the issuer, but the last attempt was moments ago: the failure stands
    // until the rate limit allows another fetch.
    server.set(Reply::Jwks(jwks(&[&a])));
    let m = unreachable(v.verify(&a.token(), NOW).await);
    assert!(m.contains("500"), "{m}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn bad_answers_are_idp_unreachable() {
    let dir = TempDir::new();
    let ca = Ca::new("jwks test CA");
    let a = Key::new("key-a");
    let huge = format!(
        r#"{{"keys": [], "padding": "{}"}}"#,
        "x".repeat(MAX_JWKS_BYTES)
    );
    let cases = [
        (Reply::Status(404), "404"),
        (Reply::Redirect, "302"),
        (Reply::Jwks("<html>hello</html>".into()), "not JSON"),
        (
            Reply::Jwks(r#"{"keys": []}"#.into()),
            "no usable signing key",
        ),
        (Reply::Jwks(huge), "larger than"),
    ];
    for (reply, want) in cases {
        let server = JwksServer::start(&ca, reply).await;
        let v = verifier(&server.url(), &ca.pem, &dir);
        let m = unreachable(v.verify(&a.token(), NOW).await);
        assert!(m.contains(want) && m.contains(&server.url()), "{want}: {m}");
    }
}

#[tokio::test]
async fn closed_port_and_silent_server_are_idp_unreachable_in_bounded_time() {
    let dir = TempDir::new();
    let ca = Ca::new("jwks test CA");
    let a = Key::new("key-a");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let v = verifier(&format!("https://{closed}/openid/v1/jwks"), &ca.pem, &dir);
    let m = unreachable(v.verify(&a.token(), NOW).await);
    assert!(m.to_lowercase().contains("connect"), "{m}");

    let server = JwksServer::start(&ca, Reply::Silent).await;
    let v = verifier(&server.url(), &ca.pem, &dir);
    let started = Instant::now();
    let m = unreachable(v.verify(&a.token(), NOW).await);
    let took = started.elapsed();
    assert!(m.contains("within 5 s"), "{m}");
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let dir = TempDir::new();
    let ca = Ca::new("jwks test CA");
    let other = Ca::new("some other CA");
    let a = Key::new("key-a");
    let server = JwksServer::start(&ca, Reply::Jwks(jwks(&[&a]))).await;
    let v = verifier(&server.url(), &other.pem, &dir);
    let m = unreachable(v.verify(&a.token(), NOW).await);
    assert!(m.to_lowercase().contains("certificate"), "{m}");
    assert_eq!(
        server.hits(),
        0,
        "nothing is requested over an untrusted connection"
    );
}
