//! End to end: the real gateway (`server::start`) on 127.0.0.1 port 0 with real TLS
//! (certificates made here with rcgen), a real recording upstream behind it over TLS,
//! and requests signed by the `aws-sigv4` crate or by `curl --aws-sigv4`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use gateway::assertion::AssertionVerifier;
use gateway::body::{self, GatewayBody};
use gateway::config::Config;
use gateway::context::ConnInfo;
use gateway::listener::{self, Handler, ServerLimits};
use gateway::reload::Outcome;
use gateway::server::{self, Running};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const CHECKOUT: (&str, &str) = (
    "AKIADEMOCHECKOUT0001",
    "demo+checkout+secret+key+not+for+production",
);
const CATALOGUE: (&str, &str) = (
    "AKIADEMOCATALOGUE001",
    "demo+catalogue+secret+key+not+for+production",
);
const CHECKOUT_ROLE: &str = "arn:aws:iam::111122223333:role/CheckoutPBCRole";

// ---------------------------------------------------------------------------------------
// PKI

struct Pki {
    dir: PathBuf,
    ca_pem: String,
}

fn pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "e2e test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    for name in ["gateway", "upstream"] {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    Pki {
        dir: dir.to_path_buf(),
        ca_pem: ca.pem(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-e2e-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// A recording upstream

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

impl Handler for Recorder {
    fn call(
        &self,
        req: Request<Incoming>,
        _conn: Arc<ConnInfo>,
    ) -> impl std::future::Future<Output = Response<GatewayBody>> + Send {
        let rec = self.clone();
        async move {
            let (parts, body) = req.into_parts();
            if parts.uri.path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            let body = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => Bytes::from_static(b"!"), // aborted mid-body
            };
            rec.0.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
            let mut resp = Response::new(body::full(format!(
                "{{\"upstream\":\"order\",\"path\":\"{}\",\"bytes\":{}}}",
                parts.uri.path(),
                body.len()
            )));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    }
}

async fn spawn_upstream(pki: &Pki, recorder: Recorder) -> std::net::SocketAddr {
    let tls = listener::server_tls_config(&gateway::config::TlsConfig {
        cert: pki.dir.join("upstream.pem"),
        key: pki.dir.join("upstream.key"),
        client_ca: None,
        require_client_cert: false,
    })
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let limits = ServerLimits::from(&gateway::config::LimitsConfig::default());
    tokio::spawn(async move {
        let _ = listener::serve(tcp, Some(tls), limits, recorder, std::future::pending()).await;
    });
    addr
}

// ---------------------------------------------------------------------------------------
// The gateway

const RULES: &str = r#"
[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::111122223333:role/CheckoutPBCRole"]

[[pbc]]
name = "catalogue"
principals = ["arn:aws:iam::111122223333:role/CataloguePBCRole"]

[[pbc]]
name = "order"

[[allow]]
id = "checkout-manages-orders"
caller = "checkout"
target = "order"
methods = ["GET", "POST", "PUT"]
paths = ["/orders", "/orders/*", "/slow", "/upload"]

[[deny]]
id = "no-order-deletes"
caller = "*"
target = "order"
methods = ["DELETE"]
paths = ["/**"]
"#;

const CREDENTIALS: &str = r#"
[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "demo+checkout+secret+key+not+for+production"

[[credential]]
access_key_id = "AKIADEMOCATALOGUE001"
role_arn = "arn:aws:iam::111122223333:role/CataloguePBCRole"
secret_file = "catalogue.secret"
"#;

struct Mesh {
    running: Option<Running>,
    recorder: Recorder,
    dir: PathBuf,
    ca_pem: String,
}

impl Mesh {
    async fn start(name: &str) -> Mesh {
        let dir = temp_dir(name);
        std::fs::write(dir.join("catalogue.secret"), format!("{}\n", CATALOGUE.1)).unwrap();
        let pki = pki(&dir);
        let recorder = Recorder::default();
        let upstream = spawn_upstream(&pki, recorder.clone()).await;
        std::fs::write(dir.join("rules.toml"), RULES).unwrap();
        std::fs::write(dir.join("credentials.toml"), CREDENTIALS).unwrap();
        let config = format!(
            r#"
[listen]
addr = "127.0.0.1:0"
[listen.tls]
cert = "gateway.pem"
key = "gateway.key"

[admin]
addr = "127.0.0.1:0"

[limits]
max_body_bytes = 1024
drain_timeout_ms = 5000

[sigv4]
regions = ["{REGION}"]
services = ["{SERVICE}"]

[identity]
credentials_file = "credentials.toml"

[rules]
file = "rules.toml"

# Only a load balancer on this (test) network may set request ids; callers on
# 127.0.0.1 may not.
[tracing]
request_id_header = "x-request-id"
request_id_trusted_peers = ["192.0.2.0/24"]

[[target]]
name = "order"
upstream = "https://{upstream}"
path_prefix = "/order"
ca_bundle = "ca.pem"
"#
        );
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let config = Config::load(&dir.join("gateway.toml")).unwrap();
        let running = server::start(&config).await.unwrap();
        Mesh {
            running: Some(running),
            recorder,
            dir,
            ca_pem: pki.ca_pem,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.running().addr.port())
    }

    fn client(
        &self,
        http2: bool,
    ) -> Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    > {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
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

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
        let resp = self.client(false).request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

use rustls_pki_types::pem::PemObject;

mod common;
use common::{REGION, SERVICE, signed};

/// A presigned GET URL (signature in the query), valid for `expires` seconds from `time`.
fn presigned(key: (&str, &str), url: &str, time: SystemTime, expires: u64) -> Request<Full<Bytes>> {
    let mut settings = SigningSettings::default();
    settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(expires));
    let identity = Credentials::new(key.0, key.1, None, None, "e2e").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let headers = [("host", host.as_str())];
    let signable = SignableRequest::new(
        "GET",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::get(url)
        .header("host", host.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_call_reaches_the_upstream_with_a_verifiable_assertion() {
    let mesh = Mesh::start("allowed").await;
    let url = mesh.url("/order/orders/42?view=full&x=a%20b");
    let mut req = signed(CHECKOUT, "GET", &url, b"", SystemTime::now(), REGION);
    // Client-sent identity headers (unsigned here, as an attacker would add them).
    req.headers_mut()
        .insert("x-gateway-assertion", "forged".parse().unwrap());
    req.headers_mut()
        .insert("x-remote-user", "admin".parse().unwrap());
    // A request id and a trace the caller chose (it is no trusted load balancer).
    req.headers_mut()
        .insert("x-request-id", "chosen-by-caller".parse().unwrap());
    req.headers_mut().insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    let (status, headers, body) = mesh.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["path"], "/orders/42");
    let request_id = headers["x-amzn-requestid"].to_str().unwrap().to_string();

    let seen = mesh.recorder.all();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.method, "GET");
    assert!(
        up.uri.ends_with("/orders/42?view=full&x=a%20b"),
        "{}",
        up.uri
    );
    for gone in ["authorization", "x-amz-security-token", "x-remote-user"] {
        assert!(
            !up.headers.contains_key(gone),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(up.headers["x-forwarded-for"], "127.0.0.1");
    // The upstream gets the gateway's request id, not the caller's, and the caller's
    // trace continued with the gateway as a hop of its own.
    assert_ne!(request_id, "chosen-by-caller");
    assert_eq!(up.headers["x-request-id"], request_id.as_str());
    assert_eq!(up.headers["x-amzn-requestid"], request_id.as_str());
    let tp = up.headers["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-01"),
        "{tp}"
    );
    assert!(!tp.contains("b7ad6b7169203331"), "{tp}");
    assert!(up.headers.contains_key("forwarded"));
    let token = up.headers["x-gateway-assertion"].to_str().unwrap();
    assert_ne!(token, "forged");

    // The assertion verifies against the keys the gateway publishes.
    let jwks_req = Request::get(mesh.url("/.well-known/jwks.json"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, jwks) = mesh.send(jwks_req).await;
    assert_eq!(status, StatusCode::OK);
    let verifier = AssertionVerifier::from_jwks(&json(&jwks), "sigv4-gateway").unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = verifier.verify(token, "order", now).unwrap();
    assert_eq!(claims.sub, CHECKOUT_ROLE);
    assert_eq!(claims.pbc.as_deref(), Some("checkout"));
    assert_eq!(claims.jti, request_id);
    assert!(
        verifier.verify(token, "payment", now).is_err(),
        "audience is the target"
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_have_their_codes_and_never_reach_the_upstream() {
    let mesh = Mesh::start("denied").await;
    let now = SystemTime::now();
    let cases: Vec<(&str, Request<Full<Bytes>>, StatusCode, &str)> = vec![
        (
            "no rule allows catalogue -> order",
            signed(
                CATALOGUE,
                "GET",
                &mesh.url("/order/orders/42"),
                b"",
                now,
                REGION,
            ),
            StatusCode::FORBIDDEN,
            "AccessDenied",
        ),
        (
            "explicit deny beats the allow",
            signed(
                CHECKOUT,
                "DELETE",
                &mesh.url("/order/orders/42"),
                b"",
                now,
                REGION,
            ),
            StatusCode::FORBIDDEN,
            "AccessDenied",
        ),
        (
            "unknown access key",
            signed(
                ("AKIANOBODY0000000001", "x".repeat(40).leak()),
                "GET",
                &mesh.url("/order/orders/1"),
                b"",
                now,
                REGION,
            ),
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
        ),
        (
            "signed an hour ago",
            signed(
                CHECKOUT,
                "GET",
                &mesh.url("/order/orders/1"),
                b"",
                now - Duration::from_secs(3600),
                REGION,
            ),
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
        ),
        (
            "wrong scope: another region",
            signed(
                CHECKOUT,
                "GET",
                &mesh.url("/order/orders/1"),
                b"",
                now,
                "us-east-1",
            ),
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
        ),
        (
            "no route",
            signed(CHECKOUT, "GET", &mesh.url("/nowhere/x"), b"", now, REGION),
            StatusCode::NOT_FOUND,
            "UnknownTarget",
        ),
        (
            "body larger than the limit without chunk signatures",
            signed(
                CHECKOUT,
                "POST",
                &mesh.url("/order/orders"),
                &[b'x'; 2048],
                now,
                REGION,
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
        ),
    ];
    let mut tampered = signed(
        CHECKOUT,
        "GET",
        &mesh.url("/order/orders/1"),
        b"",
        now,
        REGION,
    );
    *tampered.uri_mut() = mesh.url("/order/orders/2").parse().unwrap();
    let mut body_swapped = signed(
        CHECKOUT,
        "POST",
        &mesh.url("/order/orders"),
        b"{\"qty\":1}",
        now,
        REGION,
    );
    *body_swapped.body_mut() = Full::new(Bytes::from_static(b"{\"qty\":9}"));
    let mut cases = cases;
    cases.push((
        "tampered path",
        tampered,
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
    ));
    cases.push((
        "tampered body",
        body_swapped,
        StatusCode::BAD_REQUEST,
        "XAmzContentSHA256Mismatch",
    ));
    // Request lines an upstream could read differently from the matrix.
    let dotted = signed(
        CHECKOUT,
        "GET",
        &mesh.url("/order/admin/%2e%2e/orders/1"),
        b"",
        now,
        REGION,
    );
    cases.push((
        "dot segments",
        dotted,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    ));
    let lower = signed(
        CHECKOUT,
        "delete",
        &mesh.url("/order/orders/1"),
        b"",
        now,
        REGION,
    );
    cases.push((
        "lower-case method",
        lower,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    ));
    let mut overridden = signed(
        CHECKOUT,
        "POST",
        &mesh.url("/order/orders"),
        b"",
        now,
        REGION,
    );
    overridden
        .headers_mut()
        .insert("x-http-method-override", "DELETE".parse().unwrap());
    cases.push((
        "method override header",
        overridden,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    ));
    cases.push((
        "a presigned URL past its X-Amz-Expires",
        presigned(
            CHECKOUT,
            &mesh.url("/order/orders/1"),
            now - Duration::from_secs(120),
            60,
        ),
        StatusCode::BAD_REQUEST,
        "RequestExpired",
    ));
    let unsigned = Request::get(mesh.url("/order/orders/1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    cases.push((
        "unsigned",
        unsigned,
        StatusCode::FORBIDDEN,
        "MissingAuthenticationToken",
    ));

    for (what, req, status, code) in cases {
        let (got, headers, body) = mesh.send(req).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(headers["x-amzn-errortype"], code, "{what}: {body}");
        let v = json(&body);
        assert_eq!(v["code"], code, "{what}");
        assert_eq!(
            v["requestId"],
            headers["x-amzn-requestid"].to_str().unwrap(),
            "{what}"
        );
        assert!(!v["message"].as_str().unwrap().is_empty(), "{what}");
        for secret in [CHECKOUT.1, CATALOGUE.1] {
            assert!(!body.contains(secret), "{what}: a secret in the error body");
        }
    }
    assert!(
        mesh.recorder.all().is_empty(),
        "a rejected request reached the upstream"
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_bodies_pass_through() {
    let mesh = Mesh::start("h2").await;
    let req = signed(
        CHECKOUT,
        "POST",
        &mesh.url("/order/orders"),
        b"{\"sku\":\"a\"}",
        SystemTime::now(),
        REGION,
    );
    let resp = mesh.client(true).request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mesh.recorder.all();
    assert_eq!(seen[0].body.as_ref(), b"{\"sku\":\"a\"}");
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rules_file_never_replaces_the_running_rules() {
    let mesh = Mesh::start("reload").await;
    let get = |m: &Mesh| {
        signed(
            CHECKOUT,
            "GET",
            &m.url("/order/orders/7"),
            b"",
            SystemTime::now(),
            REGION,
        )
    };
    assert_eq!(mesh.send(get(&mesh)).await.0, StatusCode::OK);
    let rules = mesh.running().gateway.reloadables();
    std::fs::write(mesh.dir.join("rules.toml"), "[[allow]]\nid = \"broken\"\n").unwrap();
    assert!(matches!(rules[0].check_and_log(true), Outcome::Refused(_)));
    assert_eq!(
        mesh.send(get(&mesh)).await.0,
        StatusCode::OK,
        "old rules keep serving"
    );
    // A valid change takes effect: checkout loses GET.
    std::fs::write(
        mesh.dir.join("rules.toml"),
        RULES.replace("[\"GET\", \"POST\", \"PUT\"]", "[\"POST\"]"),
    )
    .unwrap();
    // Polled: seen once (it could be half-written), then again unchanged: loaded.
    assert_eq!(rules[0].check_and_log(false), Outcome::Unchanged);
    assert_eq!(rules[0].check_and_log(false), Outcome::Reloaded);
    let (status, headers, _) = mesh.send(get(&mesh)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-amzn-errortype"], "AccessDenied");
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_request() {
    let mut mesh = Mesh::start("drain").await;
    let req = signed(
        CHECKOUT,
        "GET",
        &mesh.url("/order/slow"),
        b"",
        SystemTime::now(),
        REGION,
    );
    let client = mesh.client(false);
    let in_flight = tokio::spawn(async move { client.request(req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = mesh.running().addr;
    let running = mesh.running.take().unwrap();
    let stopping = tokio::spawn(running.shutdown());
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the in-flight request finished"
    );
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_aws_sigv4_is_accepted() {
    let has_curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_curl {
        eprintln!("curl is not installed: skipping (scripts/test installs it)");
        return;
    }
    let mesh = Mesh::start("curl").await;
    std::fs::write(mesh.dir.join("client-ca.pem"), &mesh.ca_pem).unwrap();
    let run = |method: &str, path: &str, data: Option<&str>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(mesh.dir.join("client-ca.pem"))
            .args(["--aws-sigv4", &format!("aws:amz:{REGION}:{SERVICE}")])
            .args(["--user", &format!("{}:{}", CHECKOUT.0, CHECKOUT.1)])
            .args(["-X", method]);
        if let Some(d) = data {
            cmd.args(["-H", "content-type: application/json", "--data-binary", d]);
        }
        let out = cmd.arg(mesh.url(path)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run("GET", "/order/orders/42", None);
    assert!(out.ends_with("\n200"), "{out}");
    let out = run("POST", "/order/orders", Some("{\"sku\":\"b\"}"));
    assert!(out.ends_with("\n200"), "{out}");
    let out = run("DELETE", "/order/orders/42", None);
    assert!(
        out.ends_with("\n403") && out.contains("AccessDenied"),
        "{out}"
    );
    assert_eq!(mesh.recorder.all().len(), 2);
    mesh.shutdown().await;
}

/// A chunk-signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) request, as the S3 SDKs send
/// large uploads: the seed signature from aws-sigv4, the chunk signatures computed here
/// per AWS's documentation. `corrupt` flips a byte in the second chunk's data.
/// `declared` overrides `x-amz-decoded-content-length` (signed, as SDKs sign it).
fn chunk_signed(
    url: &str,
    chunks: &[Vec<u8>],
    corrupt: bool,
    declared: Option<usize>,
) -> Request<Full<Bytes>> {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    let now = SystemTime::now();
    let decoded: usize = declared.unwrap_or_else(|| chunks.iter().map(Vec::len).sum());
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = Credentials::new(CHECKOUT.0, CHECKOUT.1, None, None, "e2e").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let decoded_len = decoded.to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded_len.as_str()),
    ];
    let signable = SignableRequest::new(
        "PUT",
        url,
        headers.iter().copied(),
        SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
    )
    .unwrap();
    let (instructions, seed) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::builder().method("PUT").uri(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(Full::new(Bytes::new())).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    let amz_date = req.headers()["x-amz-date"].to_str().unwrap().to_string();
    let date = &amz_date[..8];
    let scope = format!("{date}/{REGION}/{SERVICE}/aws4_request");
    let key = gateway::sigv4::derive_signing_key(
        &gateway::sigv4::Secret::new(CHECKOUT.1.to_string()),
        date,
        REGION,
        SERVICE,
    );
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let empty = hex(&Sha256::digest(b""));
    let mut prev = seed;
    let mut body = Vec::new();
    let mut all: Vec<Vec<u8>> = chunks.to_vec();
    all.push(Vec::new());
    for (i, chunk) in all.iter().enumerate() {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{empty}\n{}",
            hex(&Sha256::digest(chunk))
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&*key).unwrap();
        mac.update(sts.as_bytes());
        let sig = hex(&mac.finalize().into_bytes());
        body.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
        let mut data = chunk.clone();
        if corrupt && i == 1 {
            data[0] ^= 1;
        }
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
        prev = sig;
    }
    req.headers_mut()
        .insert("content-length", body.len().to_string().parse().unwrap());
    *req.body_mut() = Full::new(Bytes::from(body));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_signed_bodies_stream_and_a_bad_chunk_is_refused() {
    let mesh = Mesh::start("chunks").await;
    // 3 x 1000 bytes: past the 1024-byte buffer limit, fine as a signed stream.
    let chunks = vec![vec![b'a'; 1000], vec![b'b'; 1000], vec![b'c'; 1000]];
    let (status, _, body) = mesh
        .send(chunk_signed(
            &mesh.url("/order/upload"),
            &chunks,
            false,
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = mesh.recorder.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body.len(),
        3000,
        "the upstream gets the decoded body"
    );
    assert_eq!(&seen[0].body[..1000], &[b'a'; 1000][..]);
    assert!(!seen[0].headers.contains_key("content-encoding"));

    let (status, headers, body) = mesh
        .send(chunk_signed(
            &mesh.url("/order/upload"),
            &chunks,
            true,
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        headers["x-amzn-errortype"], "SignatureDoesNotMatch",
        "{body}"
    );
    // The upstream never received the bad chunk's data: at most the first, verified chunk.
    for s in mesh.recorder.all().iter().skip(1) {
        assert!(
            !s.body.contains(&b'b') && !s.body.ends_with(b"c"),
            "unverified data reached the upstream"
        );
    }
    // A declared length shorter than the signed chunks: refused, and the upstream never
    // gets a complete request made of a verified prefix.
    let before = mesh.recorder.all().len();
    let (status, headers, body) = mesh
        .send(chunk_signed(
            &mesh.url("/order/upload"),
            &chunks,
            false,
            Some(1500),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(headers["x-amzn-errortype"], "IncompleteBody", "{body}");
    for s in mesh.recorder.all().iter().skip(before) {
        assert_eq!(
            s.body.as_ref(),
            b"!",
            "the upstream saw a complete truncated body"
        );
    }
    mesh.shutdown().await;
}
