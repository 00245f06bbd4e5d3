//! The AWS bridge end to end: `AssumeRoleWithAWSIdentity` against a local STS double, a
//! real HTTPS server on loopback (its certificate is for `sts.eu-west-1.amazonaws.com`
//! and `sts.amazonaws.com`, issued by a CA made here) that checks the SigV4 signature of
//! every request it receives with the gateway's own verifier and answers a
//! `GetCallerIdentityResponse` the way AWS STS does. Nothing here reaches the internet:
//! the bridge's `endpoint_override` points at the double, and the signed `Host` stays
//! the STS host.
//!
//! The caller's proof is built as a PBC would build it: a `GetCallerIdentity` request
//! signed by the `aws-sigv4` crate (and, when botocore is installed, by botocore through
//! `tests/py/aws_bridge_request.py`), with the audience header signed in.
//!
//! The attacks: CVE-2020-16250 (Vault: a request addressed to the attacker's server,
//! whose answer Vault believed) and CVE-2022-2385 (aws-iam-authenticator: repeated or
//! case-varied parameters, so the checked action was not the executed one). Each is shown
//! failing before any connection: the double and an attacker server that would answer
//! "success" count what reaches them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use bytes::Bytes;
use gateway::demo::{self, DemoCa};
use gateway::sigv4::{Body, Credential, Policy, Secret, Verifier};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "gateway-e2e";
const AUDIENCE_HEADER: &str = "x-gateway-audience";
const STS_HOST: &str = "sts.eu-west-1.amazonaws.com";
const FORM: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const FORM_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// The AWS side of the double: the secret its callers' keys share.
const AWS_SECRET: &str = "aws+side+secret+known+to+the+sts+double";
/// An ECS task of checkout: the double says it is CheckoutTaskRole.
const CHECKOUT_AKID: &str = "ASIAAWSCHECKOUT00001";
/// A task of payment: the double says it is PaymentTaskRole, which no role trusts.
const PAYMENT_AKID: &str = "ASIAAWSPAYMENT000001";
const CHECKOUT_CALLER: &str = "arn:aws:sts::444455556666:assumed-role/CheckoutTaskRole/task-1";
const PAYMENT_CALLER: &str = "arn:aws:sts::444455556666:assumed-role/PaymentTaskRole/task-9";
/// CheckoutTaskRole's real ARN, path included (STS's answer drops the path).
const CHECKOUT_ROLE_WITH_PATH: &str = "arn:aws:iam::444455556666:role/ecs/CheckoutTaskRole";
/// The gateway role the bridge lets CheckoutTaskRole assume: its sessions manage orders.
const GATEWAY_ROLE: &str = demo::STS_ROLE;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------
// The STS double, and an attacker's server.

/// What the double answers to a correctly signed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// A `GetCallerIdentityResponse` for the signer, as AWS does.
    Identity,
    /// HTTP 200 with an `ErrorResponse` body.
    ErrorWith200,
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// HTTP 200 with JSON that carries a `GetCallerIdentityResponse` inside a string:
    /// what another AWS API echoing the attacker's input looked like to Vault.
    JsonEcho,
}

struct StsDouble {
    addr: SocketAddr,
    /// Requests received (any, signed or not).
    requests: Arc<AtomicUsize>,
    /// The `Host` header of each request.
    hosts: Arc<Mutex<Vec<String>>>,
    reply: Arc<Mutex<Reply>>,
}

impl StsDouble {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

fn identity_xml(arn: &str) -> String {
    let account = arn.split(':').nth(4).unwrap();
    let session = arn.rsplit('/').next().unwrap();
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{arn}</Arn>\n    <UserId>AROAEXAMPLEID:{session}</UserId>\n    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
    )
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n  <RequestId>2b4c8b5e-0000-0000-0000-000000000000</RequestId>\n</ErrorResponse>\n"
    )
}

fn xml(status: u16, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// What AWS STS does with a request, for this test: the signature is checked (scope
/// `sts`, the secret of the access key), then the action; the answer depends on `reply`.
async fn sts_answer(
    req: http::Request<hyper::body::Incoming>,
    reply: Reply,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let verifier = Verifier::new(Policy::new(["eu-west-1", "us-east-1"], ["sts"]));
    let request = gateway::sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: Body::Bytes(&body),
    };
    let auth = match verifier.parse(&request, now()) {
        Ok(a) => a,
        Err(r) => return xml(403, error_xml(r.code().as_str(), r.message())),
    };
    let caller = match auth.access_key_id() {
        CHECKOUT_AKID => CHECKOUT_CALLER,
        PAYMENT_AKID => PAYMENT_CALLER,
        other => {
            return xml(
                403,
                error_xml(
                    "InvalidClientTokenId",
                    &format!("The security token included in the request is invalid: {other}"),
                ),
            );
        }
    };
    let secret = Secret::from(AWS_SECRET);
    let credential = Credential {
        secret: &secret,
        expires_at: None,
        allow_unsigned_payload: false,
    };
    if let Err(r) = verifier.verify(&request, &auth, &credential, now()) {
        return xml(403, error_xml("SignatureDoesNotMatch", r.message()));
    }
    let params = if parts.method == http::Method::POST {
        String::from_utf8(body.to_vec()).unwrap()
    } else {
        parts.uri.query().unwrap_or("").to_string()
    };
    if !params.split('&').any(|p| p == "Action=GetCallerIdentity") {
        return xml(400, error_xml("InvalidAction", "not GetCallerIdentity"));
    }
    match reply {
        Reply::Identity => xml(200, identity_xml(caller)),
        Reply::ErrorWith200 => xml(200, error_xml("Throttling", "Rate exceeded")),
        Reply::ServerError => http::Response::builder()
            .status(500)
            .body(Full::new(Bytes::from("internal failure")))
            .unwrap(),
        Reply::JsonEcho => http::Response::builder()
            .status(200)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(
                json!({"Message": identity_xml("arn:aws:sts::444455556666:assumed-role/AdminRole/x")})
                    .to_string(),
            )))
            .unwrap(),
    }
}

/// An HTTPS server on 127.0.0.1 with a certificate for `sans` from `ca`; counts TCP
/// connections and requests, and answers with `handler`.
async fn https_server<F, Fut>(
    ca: &DemoCa,
    sans: &[&str],
    handler: F,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    use rustls_pki_types::pem::PemObject;
    let cert = ca
        .issue(
            "test server",
            &sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (conns, reqs) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    reqs.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections, requests)
}

async fn sts_double(ca: &DemoCa) -> StsDouble {
    let reply = Arc::new(Mutex::new(Reply::Identity));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let (r, h) = (reply.clone(), hosts.clone());
    let (addr, _, requests) = https_server(ca, &[STS_HOST, "sts.amazonaws.com"], move |req| {
        h.lock().unwrap().push(
            req.headers()
                .get("host")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
        );
        let reply = *r.lock().unwrap();
        sts_answer(req, reply)
    })
    .await;
    StsDouble {
        addr,
        requests,
        hosts,
        reply,
    }
}

/// The attacker's server: a certificate the gateway's CA bundle even trusts (for
/// `127.0.0.1` and `evil.example`), answering every request with a
/// `GetCallerIdentityResponse` for an admin role. Returns its address and a count of
/// TCP connections.
async fn attacker(ca: &DemoCa) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, connections, _) = https_server(ca, &["127.0.0.1", "evil.example"], |_req| async {
        xml(
            200,
            identity_xml("arn:aws:sts::444455556666:assumed-role/CheckoutTaskRole/attacker"),
        )
    })
    .await;
    (addr, connections)
}

// ---------------------------------------------------------------------------------------
// The caller's side: a signed GetCallerIdentity request, AWS SDK style.

/// A GetCallerIdentity request to sign with the `aws-sigv4` crate.
#[derive(Clone)]
struct Proof {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
    akid: &'static str,
    secret: &'static str,
    region: &'static str,
    presign: Option<u64>,
    /// Headers added after signing (so they are not signed).
    unsigned: Vec<(String, String)>,
}

impl Proof {
    /// A POST to the regional endpoint, as the AWS SDKs send GetCallerIdentity.
    fn post(akid: &'static str) -> Proof {
        Proof {
            method: "POST",
            url: format!("https://{STS_HOST}/"),
            headers: vec![
                ("host".into(), STS_HOST.into()),
                ("content-type".into(), FORM_TYPE.into()),
                (AUDIENCE_HEADER.into(), AUDIENCE.into()),
            ],
            body: FORM.into(),
            akid,
            secret: AWS_SECRET,
            region: "eu-west-1",
            presign: None,
            unsigned: Vec::new(),
        }
    }

    /// A presigned GET, as aws-iam-authenticator's tokens are.
    fn presigned(akid: &'static str) -> Proof {
        Proof {
            method: "GET",
            url: format!("https://{STS_HOST}/?{FORM}"),
            headers: vec![
                ("host".into(), STS_HOST.into()),
                (AUDIENCE_HEADER.into(), AUDIENCE.into()),
            ],
            body: String::new(),
            presign: Some(60),
            ..Proof::post(akid)
        }
    }

    fn header(mut self, name: &str, value: &str) -> Proof {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    fn without(mut self, name: &str) -> Proof {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    fn unsigned(mut self, name: &str, value: &str) -> Proof {
        self.unsigned.push((name.into(), value.into()));
        self
    }

    fn url(mut self, url: &str) -> Proof {
        self.url = url.into();
        self
    }

    fn body(mut self, body: &str) -> Proof {
        self.body = body.into();
        self
    }

    /// The JSON document the caller encodes: {method, url, headers, body}.
    fn json(&self) -> Value {
        let identity = Credentials::new(
            self.akid,
            self.secret,
            Some("aws-session-token-of-the-task".into()),
            None,
            "bridge-test",
        )
        .into();
        let mut settings = SigningSettings::default();
        if let Some(secs) = self.presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(secs));
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name("sts")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            self.method,
            &self.url,
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(self.body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method(self.method).uri(&self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let mut req = req.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers() {
            headers.insert(k.to_string(), json!([v.to_str().unwrap()]));
        }
        for (k, v) in &self.unsigned {
            headers.insert(k.clone(), json!([v]));
        }
        json!({"method": self.method, "url": req.uri().to_string(), "headers": headers, "body": self.body})
    }

    fn encoded(&self) -> String {
        encode(&self.json())
    }
}

fn encode(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text of the first `<tag>`, XML escapes undone.
fn xml_field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    xml[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------
// The gateway under test: the demo mesh's, reconfigured with the bridge.

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

struct Fixture {
    demo: demo::Demo,
    running: gateway::server::Running,
    dir: PathBuf,
    base: String,
    client: HttpsClient,
    double: StsDouble,
    attacker: SocketAddr,
    attacker_connections: Arc<AtomicUsize>,
    /// The order PBC, trusting this gateway's assertions (the demo's upstreams trust
    /// the demo gateway's key, not this one's).
    order: demo::upstream::Upstream,
}

impl Fixture {
    async fn start(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "gateway-bridge-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let demo = demo::start(demo::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: Some(dir.clone()),
        })
        .await
        .unwrap();
        // The "AWS" side: its own CA, which the bridge's ca_bundle trusts. The attacker's
        // certificate comes from it too: the allow-list, not the PKI, must stop it.
        let aws_ca = DemoCa::generate().unwrap();
        std::fs::write(dir.join("aws-ca.pem"), &aws_ca.cert_pem).unwrap();
        let double = sts_double(&aws_ca).await;
        let (attacker, attacker_connections) = attacker(&aws_ca).await;
        let order_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let demo_order = demo
            .upstreams()
            .iter()
            .find(|u| u.name() == "order")
            .unwrap()
            .addr();
        let config = std::fs::read_to_string(demo.config_path())
            .unwrap()
            .replace(
                &format!("upstream = \"https://{demo_order}\""),
                &format!(
                    "upstream = \"https://{}\"",
                    order_listener.local_addr().unwrap()
                ),
            )
            .replace(&format!("addr = \"{}\"", demo.addr()), "addr = \"127.0.0.1:0\"")
            .replace(
                &format!("addr = \"{}\"", demo.admin_addr()),
                "addr = \"127.0.0.1:0\"",
            )
            .replace(
                "[[role]]",
                &format!(
                    "[sts.aws_bridge]\naudience = \"{AUDIENCE}\"\nregions = [\"eu-west-1\"]\n\
                     endpoint_override = \"https://127.0.0.1:{}\"\nca_bundle = \"aws-ca.pem\"\n\
                     role_paths = [\"{CHECKOUT_ROLE_WITH_PATH}\"]\n\n[[role]]",
                    double.addr.port()
                ),
            )
            .replace(
                "trust = [\"checkout\",",
                "aws_principals = [\"arn:aws:iam::444455556666:role/*CheckoutTaskRole\"]\ntrust = [\"checkout\",",
            );
        let path = dir.join("gateway-bridge.toml");
        std::fs::write(&path, config).unwrap();
        let config = gateway::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let running = gateway::server::start(&config).await.unwrap();
        let order = demo::upstream::serve_upstream(
            order_listener,
            "order",
            demo::upstream::tls_config(
                &std::fs::read_to_string(dir.join("upstream.pem")).unwrap(),
                &std::fs::read_to_string(dir.join("upstream-key.pem")).unwrap(),
            )
            .unwrap(),
            Arc::new(
                gateway::assertion::AssertionVerifier::from_jwks(
                    &running.gateway.jwks(),
                    demo::ISSUER,
                )
                .unwrap(),
            ),
        )
        .unwrap();
        let base = format!("https://127.0.0.1:{}", running.addr.port());
        let client = https_client(&std::fs::read(demo.ca_path()).unwrap());
        Fixture {
            demo,
            running,
            dir,
            base,
            client,
            double,
            attacker,
            attacker_connections,
            order,
        }
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.order.shutdown().await;
        self.demo.shutdown().await;
        let _ = std::fs::remove_dir_all(self.dir);
    }

    /// AssumeRoleWithAWSIdentity with this `Request`; returns (status, XML).
    async fn assume(&self, request: &str) -> (u16, String) {
        self.assume_as(GATEWAY_ROLE, "task-1", request).await
    }

    async fn assume_as(&self, role: &str, session: &str, request: &str) -> (u16, String) {
        let form = format!(
            "Action=AssumeRoleWithAWSIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={session}&Request={}",
            form_encode(role),
            form_encode(request)
        );
        let req = http::Request::post(format!("{}/sts", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .unwrap();
        send(&self.client, req).await
    }

    /// Asserts the call is refused with `code` and a message holding `needle`.
    #[track_caller]
    fn refused(&self, (status, xml): &(u16, String), code: &str, needle: &str) {
        let want = if code == "AccessDenied" { 403 } else { 400 };
        assert_eq!(*status, want, "{xml}");
        assert_eq!(xml_field(xml, "Code"), code, "{xml}");
        assert!(
            xml_field(xml, "Message").contains(needle),
            "wanted `{needle}` in: {xml}"
        );
    }
}

fn https_client(ca: &[u8]) -> HttpsClient {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

async fn send(client: &HttpsClient, req: http::Request<Full<Bytes>>) -> (u16, String) {
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Gateway session credentials from an AssumeRoleWithAWSIdentityResponse.
struct Session {
    akid: String,
    secret: String,
    token: String,
}

impl Session {
    fn from_xml(xml: &str) -> Session {
        Session {
            akid: xml_field(xml, "AccessKeyId"),
            secret: xml_field(xml, "SecretAccessKey"),
            token: xml_field(xml, "SessionToken"),
        }
    }

    /// A request to the gateway signed with the session, as an AWS SDK signs.
    fn sign(
        &self,
        method: &str,
        url: &str,
        service: &str,
        body: &str,
    ) -> http::Request<Full<Bytes>> {
        let identity = Credentials::new(
            &self.akid,
            &self.secret,
            Some(self.token.clone()),
            None,
            "gateway-session",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(demo::REGION)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let uri: http::Uri = url.parse().unwrap();
        let host = uri.authority().unwrap().to_string();
        let mut headers = vec![("host", host.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req
    }
}

// ---------------------------------------------------------------------------------------
// The cases.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_role_gets_a_session_that_works_in_the_mesh() {
    let f = Fixture::start("ok").await;
    let (status, xml) = f.assume(&Proof::post(CHECKOUT_AKID).encoded()).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.starts_with("<AssumeRoleWithAWSIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithAWSIdentityResult>"), "{xml}");
    // The role path STS dropped is back (role_paths), and the trust pattern matched it.
    assert_eq!(xml_field(&xml, "AWSPrincipalArn"), CHECKOUT_ROLE_WITH_PATH);
    assert_eq!(
        xml_field(&xml, "Arn"),
        "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/task-1"
    );
    assert!(xml_field(&xml, "AccessKeyId").starts_with("ASIA"));
    // What reached the double: one request, with the signed Host of the STS endpoint
    // (the override changed only where the connection went).
    assert_eq!(f.double.requests(), 1);
    assert_eq!(*f.double.hosts.lock().unwrap(), [STS_HOST]);

    // The session works in the mesh: CheckoutToOrderRole manages orders...
    let session = Session::from_xml(&xml);
    let (status, body) = send(
        &f.client,
        session.sign(
            "GET",
            &format!("{}/order/orders/42", f.base),
            demo::SERVICE,
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["caller"]["role_arn"], GATEWAY_ROLE);
    assert_eq!(v["assertion_verified"], true);
    // ... and nothing else.
    let (status, body) = send(
        &f.client,
        session.sign(
            "POST",
            &format!("{}/payment/payments", f.base),
            demo::SERVICE,
            "",
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // GetCallerIdentity at the gateway's STS names the assumed role.
    let (status, body) = send(
        &f.client,
        session.sign("POST", &format!("{}/sts", f.base), "sts", FORM),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xml_field(&body, "Arn"),
        "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/task-1"
    );

    // A presigned GET (aws-iam-authenticator's shape) works too.
    let (status, xml) = f.assume(&Proof::presigned(CHECKOUT_AKID).encoded()).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(f.double.requests(), 2);
    assert_eq!(f.attacker_connections.load(Ordering::SeqCst), 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2020_16250_requests_for_other_hosts_never_leave_the_gateway() {
    let f = Fixture::start("cve-2020-16250").await;
    let evil = f.attacker.to_string();
    let cases: Vec<(&str, Proof, &str)> = vec![
        (
            "URL and Host at the attacker's server",
            Proof::post(CHECKOUT_AKID)
                .url(&format!("https://{evil}/"))
                .header("host", &evil),
            "not an STS endpoint",
        ),
        (
            "the STS URL with the attacker's Host header, signed",
            Proof::post(CHECKOUT_AKID).header("host", &evil),
            "differs from the URL's host",
        ),
        (
            "the attacker's URL with the STS Host header",
            Proof::post(CHECKOUT_AKID).url(&format!("https://{evil}/")),
            "not an STS endpoint",
        ),
        (
            "a look-alike host",
            Proof::post(CHECKOUT_AKID)
                .url("https://sts.eu-west-1.amazonaws.com.evil.example/")
                .header("host", "sts.eu-west-1.amazonaws.com.evil.example"),
            "not an STS endpoint",
        ),
        (
            "user info hiding the real host",
            Proof::post(CHECKOUT_AKID).url(&format!("https://{STS_HOST}@{evil}/")),
            "not an STS endpoint",
        ),
        (
            "the STS host on the attacker's port",
            Proof::post(CHECKOUT_AKID)
                .url(&format!("https://{STS_HOST}:{}/", f.attacker.port()))
                .header("host", &format!("{STS_HOST}:{}", f.attacker.port())),
            "not an STS endpoint",
        ),
        (
            "another AWS service's endpoint",
            Proof::post(CHECKOUT_AKID)
                .url("https://iam.amazonaws.com/")
                .header("host", "iam.amazonaws.com"),
            "not an STS endpoint",
        ),
        (
            "an STS region the gateway does not accept",
            Proof::post(CHECKOUT_AKID)
                .url("https://sts.us-west-2.amazonaws.com/")
                .header("host", "sts.us-west-2.amazonaws.com"),
            "not an STS endpoint",
        ),
        (
            "a second, unsigned Host header (case variant)",
            Proof::post(CHECKOUT_AKID).unsigned("Host", &evil),
            "header `host` twice",
        ),
        (
            "a forwarding header steering a proxy",
            Proof::post(CHECKOUT_AKID).header("x-forwarded-host", &evil),
            "not allowed",
        ),
    ];
    for (what, proof, needle) in cases {
        let answer = f.assume(&proof.encoded()).await;
        f.refused(&answer, "InvalidIdentityToken", needle);
        assert_eq!(f.double.requests(), 0, "{what}: reached the STS double");
        eprintln!("{what}: refused ({})", xml_field(&answer.1, "Message"));
        assert_eq!(
            f.attacker_connections.load(Ordering::SeqCst),
            0,
            "{what}: reached the attacker"
        );
    }
    // The attacker's answer would have been taken for a real one by a parser that looks
    // for a GetCallerIdentityResponse anywhere (Vault's); the bridge's parser does not:
    // the double now echoes one inside JSON, as another AWS API would.
    f.double.set(Reply::JsonEcho);
    let answer = f.assume(&Proof::post(CHECKOUT_AKID).encoded()).await;
    f.refused(&answer, "IDPCommunicationError", "the XML is malformed");
    // The zero counts above mean something: the attacker's server is up, trusted by the
    // same CA, and would have answered "success".
    let evil_client = https_client(&std::fs::read(f.dir.join("aws-ca.pem")).unwrap());
    let (status, body) = send(
        &evil_client,
        http::Request::post(format!("https://{evil}/"))
            .body(Full::new(Bytes::from(FORM)))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("<GetCallerIdentityResponse"));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_missing_wrong_or_unsigned_is_refused() {
    let f = Fixture::start("audience").await;
    let cases = [
        (
            Proof::post(CHECKOUT_AKID).without(AUDIENCE_HEADER),
            "must carry the audience header x-gateway-audience",
        ),
        (
            Proof::post(CHECKOUT_AKID).header(AUDIENCE_HEADER, "vault-prod"),
            "is `vault-prod`, not this gateway's audience `gateway-e2e`",
        ),
        (
            // Signed without it, then added: AWS would ignore an unsigned header, so the
            // request could be one signed for someone else.
            Proof::post(CHECKOUT_AKID)
                .without(AUDIENCE_HEADER)
                .unsigned(AUDIENCE_HEADER, AUDIENCE),
            "must be signed (listed in SignedHeaders)",
        ),
        (
            Proof::presigned(CHECKOUT_AKID)
                .without(AUDIENCE_HEADER)
                .unsigned(AUDIENCE_HEADER, AUDIENCE),
            "must be signed",
        ),
    ];
    for (proof, needle) in cases {
        let answer = f.assume(&proof.encoded()).await;
        f.refused(&answer, "InvalidIdentityToken", needle);
    }
    assert_eq!(f.double.requests(), 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2022_2385_parameter_games_are_refused() {
    let f = Fixture::start("cve-2022-2385").await;
    // Every request below is validly signed: AWS would execute it. The gateway refuses
    // it because what it checks might not be what AWS executes.
    let bodies = [
        (
            "Action=GetCallerIdentity&Action=AssumeRole&Version=2011-06-15",
            "repeats `Action`",
        ),
        (
            "Action=AssumeRole&Action=GetCallerIdentity&Version=2011-06-15",
            "repeats `Action`",
        ),
        (
            "action=GetCallerIdentity&Action=AssumeRole&Version=2011-06-15",
            "`Action` repeats `action`",
        ),
        (
            "action=GetCallerIdentity&Version=2011-06-15",
            "`action` is not allowed",
        ),
        (
            "Action=GetCallerIdentity&ACTION=AssumeRole&Version=2011-06-15",
            "repeats `Action`",
        ),
        (
            "Action=GetCallerIdentity&Act%69on=AssumeRole&Version=2011-06-15",
            "repeats `Action`",
        ),
        (
            "Action=GetCallerIdentity&Version=2011-06-15&Version=2011-06-15",
            "repeats `Version`",
        ),
        (
            "Action=GetCallerIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2FAdmin",
            "`RoleArn` is not allowed",
        ),
        (
            "Action=AssumeRole&Version=2011-06-15",
            "must be GetCallerIdentity, not `AssumeRole`",
        ),
        (
            "Action=GetSessionToken&Version=2011-06-15",
            "must be GetCallerIdentity, not `GetSessionToken`",
        ),
    ];
    for (body, needle) in bodies {
        let answer = f
            .assume(&Proof::post(CHECKOUT_AKID).body(body).encoded())
            .await;
        f.refused(&answer, "InvalidIdentityToken", needle);
    }
    // The same games in a presigned GET's query, where aws-iam-authenticator read them.
    let queries = [
        "Action=GetCallerIdentity&Action=AssumeRole&Version=2011-06-15",
        "Action=GetCallerIdentity&action=AssumeRole&Version=2011-06-15",
        "action=GetCallerIdentity&Version=2011-06-15",
        "Action=GetCallerIdentity&Version=2011-06-15&x-amz-signedheaders=host",
        "Action=ListRoles&Version=2011-06-15",
    ];
    for query in queries {
        let proof = Proof::presigned(CHECKOUT_AKID).url(&format!("https://{STS_HOST}/?{query}"));
        let answer = f.assume(&proof.encoded()).await;
        f.refused(&answer, "InvalidIdentityToken", "");
    }
    assert_eq!(f.double.requests(), 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_headers_and_oversized_bodies_are_refused() {
    let f = Fixture::start("shape").await;
    for (proof, needle) in [
        (
            Proof::post(CHECKOUT_AKID).header(
                "x-amz-target",
                "AWSSecurityTokenServiceV20110615.AssumeRole",
            ),
            "header `x-amz-target`, which is not allowed",
        ),
        (
            Proof::post(CHECKOUT_AKID).header("transfer-encoding", "chunked"),
            "header `transfer-encoding`, which is not allowed",
        ),
        (
            Proof::post(CHECKOUT_AKID).body(&format!("{FORM}&{}", "x".repeat(5000))),
            "larger than 4096 bytes",
        ),
        (
            Proof::post(CHECKOUT_AKID).header("content-length", "4"),
            "Content-Length says 4",
        ),
        (
            Proof::post(CHECKOUT_AKID).url(&format!("http://{STS_HOST}/")),
            "must start with https://",
        ),
        (
            Proof::post(CHECKOUT_AKID).url(&format!("https://{STS_HOST}/?{FORM}")),
            "must have no query",
        ),
    ] {
        let answer = f.assume(&proof.encoded()).await;
        f.refused(&answer, "InvalidIdentityToken", needle);
    }
    let answer = f.assume("not-base64!").await;
    f.refused(&answer, "InvalidIdentityToken", "not standard base64");
    assert_eq!(f.double.requests(), 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_errors_are_idp_communication_errors_and_are_not_cached() {
    let f = Fixture::start("upstream").await;
    // A wrong secret: the shape is fine, so the gateway sends it; AWS (the double)
    // refuses the signature.
    let mut forged = Proof::post(CHECKOUT_AKID);
    forged.secret = "not-the-aws-secret";
    let answer = f.assume(&forged.encoded()).await;
    f.refused(
        &answer,
        "IDPCommunicationError",
        "HTTP 403 Forbidden: SignatureDoesNotMatch",
    );
    let answer = f
        .assume(&Proof::post("ASIAUNKNOWNKEY000001").encoded())
        .await;
    f.refused(&answer, "IDPCommunicationError", "InvalidClientTokenId");
    assert_eq!(f.double.requests(), 2);

    let proof = Proof::post(CHECKOUT_AKID).encoded();
    for (reply, needle) in [
        (
            Reply::ErrorWith200,
            "answered an ErrorResponse: Throttling: Rate exceeded",
        ),
        (Reply::ServerError, "HTTP 500 Internal Server Error"),
        (Reply::JsonEcho, "malformed"),
    ] {
        f.double.set(reply);
        let answer = f.assume(&proof).await;
        f.refused(&answer, "IDPCommunicationError", needle);
    }
    assert_eq!(f.double.requests(), 5);
    // Failures are not cached: the same request succeeds once STS answers.
    f.double.set(Reply::Identity);
    let (status, xml) = f.assume(&proof).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(f.double.requests(), 6);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_identities_are_cached_per_signed_request() {
    let f = Fixture::start("cache").await;
    let proof = Proof::post(CHECKOUT_AKID).header("user-agent", "pbc/1");
    let encoded = proof.encoded();
    let (status, first) = f.assume(&encoded).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(f.double.requests(), 1);
    // The identical signed request again: answered from the cache, fresh credentials.
    let (status, second) = f.assume(&encoded).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        f.double.requests(),
        1,
        "the second identical request reached STS"
    );
    assert_ne!(
        xml_field(&first, "AccessKeyId"),
        xml_field(&second, "AccessKeyId")
    );
    // Another session name with the same proof: still the cached identity.
    let (status, _) = f.assume_as(GATEWAY_ROLE, "task-2", &encoded).await;
    assert_eq!(status, 200);
    assert_eq!(f.double.requests(), 1);
    // A request that differs in anything sent is another proof.
    let (status, _) = f
        .assume(&proof.clone().header("user-agent", "pbc/2").encoded())
        .await;
    assert_eq!(status, 200);
    assert_eq!(f.double.requests(), 2);
    // The cache never lets a request skip a check: the same cached proof with the
    // audience header removed is refused before the cache is consulted.
    let mut tampered: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap(),
    )
    .unwrap();
    tampered["headers"]
        .as_object_mut()
        .unwrap()
        .remove(AUDIENCE_HEADER);
    let answer = f.assume(&encode(&tampered)).await;
    f.refused(&answer, "InvalidIdentityToken", "audience header");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_aws_principals_are_denied() {
    let f = Fixture::start("trust").await;
    let answer = f.assume(&Proof::post(PAYMENT_AKID).encoded()).await;
    f.refused(
        &answer,
        "AccessDenied",
        "AWS principal arn:aws:iam::444455556666:role/PaymentTaskRole is not authorized",
    );
    let answer = f
        .assume_as(
            "arn:aws:iam::111122223333:role/NoSuchRole",
            "task-1",
            &Proof::post(CHECKOUT_AKID).encoded(),
        )
        .await;
    f.refused(&answer, "AccessDenied", "not authorized");
    // The demo's other role trusts no AWS principal.
    assert_eq!(f.double.requests(), 2);
    f.stop().await;
}

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_built_by_botocore_is_accepted() {
    let has_botocore = std::process::Command::new(python())
        .args(["-c", "import botocore"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_botocore {
        if std::env::var_os("CI").is_some() {
            panic!("botocore is missing in CI: scripts/test installs boto3 (GATEWAY_TEST_PYTHON)");
        }
        eprintln!("botocore is not installed: skipping (scripts/test installs it)");
        return;
    }
    let f = Fixture::start("botocore").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/aws_bridge_request.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .args([
                script,
                &format!("https://{STS_HOST}/"),
                "eu-west-1",
                CHECKOUT_AKID,
                AWS_SECRET,
                "aws-session-token-of-the-task",
                "X-Gateway-Audience",
                AUDIENCE,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let encoded = String::from_utf8(out.stdout).unwrap();
    let (status, xml) = f.assume(encoded.trim()).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(xml_field(&xml, "AWSPrincipalArn"), CHECKOUT_ROLE_WITH_PATH);
    assert_eq!(f.double.requests(), 1);
    f.stop().await;
}
