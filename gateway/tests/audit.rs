//! Issue 6 end to end, against the demo mesh over TLS: an audit record for an allowed
//! request and for each kind of denial, with CloudTrail's fields and no secret; STS
//! actions audited; `/metrics` read by the Prometheus project's own parser and its
//! counters moving; the W3C trace context reaching the upstream; a full audit queue in
//! fail-closed mode answering 503; and a search of every log line, audit record, error
//! body and metric for the demo's secrets and session tokens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use gateway::demo::{self, Demo, Options};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Every log line of this test process (all tests), JSON, debug level and up.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-audit-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_demo(dir: &TempDir) -> Demo {
    let _ = logs();
    demo::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: Some(dir.0.clone()),
    })
    .await
    .unwrap()
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(ca: &Path) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// What a request is signed with.
struct Key<'a> {
    akid: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
}

fn key(pbc: &str) -> Key<'static> {
    let id = demo::identity(pbc).unwrap();
    Key {
        akid: id.access_key_id,
        secret: id.secret,
        token: None,
    }
}

/// A request signed by the `aws-sigv4` crate for `service` at `time`.
fn signed(
    key: &Key<'_>,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> http::Request<Full<Bytes>> {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let mut all = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    let identity = Credentials::new(
        key.akid,
        key.secret,
        key.token.map(str::to_string),
        None,
        "audit-test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(demo::REGION)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable =
        SignableRequest::new(method, url, all.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in &all {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

/// A signed GET without a body.
fn get(key: &Key<'_>, url: &str, time: SystemTime) -> http::Request<Full<Bytes>> {
    signed(key, demo::SERVICE, "GET", url, &[], b"", time)
}

struct Answer {
    status: StatusCode,
    request_id: String,
    body: String,
}

async fn send(client: &HttpsClient, req: http::Request<Full<Bytes>>) -> Answer {
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-amzn-requestid")
        .expect("every answer carries x-amzn-RequestId")
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        request_id,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The text between `<tag>` and `</tag>`.
fn xml(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = body
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {body}"))
        + open.len();
    let end = body[start..].find(&format!("</{tag}>")).unwrap() + start;
    body[start..end].to_string()
}

/// The audit records written so far, by request id (after flushing the queue).
async fn audit(demo: &Demo) -> HashMap<String, Value> {
    demo.running().gateway.auditor().flush().await;
    let text = std::fs::read_to_string(demo.audit_path()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| (v["requestID"].as_str().unwrap().to_string(), v))
        .collect()
}

const FIELDS: [&str; 15] = [
    "eventVersion",
    "eventTime",
    "eventType",
    "eventName",
    "requestID",
    "traceId",
    "sourceIPAddress",
    "sourcePort",
    "userIdentity",
    "method",
    "path",
    "decision",
    "status",
    "bytesIn",
    "timings",
];

fn check_common(r: &Value, method: &str) {
    for f in FIELDS {
        assert!(r.get(f).is_some(), "record lacks {f}: {r}");
    }
    assert_eq!(r["method"], method, "{r}");
    assert_eq!(r["sourceIPAddress"], "127.0.0.1", "{r}");
    assert!(r["sourcePort"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["traceId"].as_str().unwrap().len(), 32, "{r}");
    assert!(r["eventTime"].as_str().unwrap().ends_with('Z'), "{r}");
    for t in ["verifyUs", "authorizeUs", "upstreamUs", "totalUs"] {
        assert!(r["timings"][t].is_u64(), "{r}");
    }
}

fn denied(r: &Value, code: &str, status: u16) {
    assert_eq!(r["decision"], "Deny", "{r}");
    assert_eq!(r["errorCode"], code, "{r}");
    assert_eq!(r["status"], status, "{r}");
    assert!(
        r["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
        "{r}"
    );
    assert!(r.get("upstreamStatus").is_none(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_audited_and_no_secret_leaks() {
    let dir = TempDir::new("records");
    let demo = start_demo(&dir).await;
    let client = client(demo.ca_path());
    let url = demo.url().to_string();
    let now = SystemTime::now();
    let mut bodies = Vec::new();

    // allowed, with a caller trace context and a query value to redact
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{incoming_trace}-00f067aa0ba902b7-01");
    let allowed = send(
        &client,
        signed(
            &key("checkout"),
            demo::SERVICE,
            "GET",
            &format!("{url}/order/orders/42?customer=alice%40example.com"),
            &[
                ("traceparent", &traceparent),
                ("user-agent", "audit-test/1.0"),
            ],
            b"",
            now,
        ),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    let upstream_saw: Value = serde_json::from_str(&allowed.body).unwrap();
    let forwarded = upstream_saw["traceparent"].as_str().unwrap();
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts.len(), 4, "{forwarded}");
    assert_eq!(parts[1], incoming_trace, "the trace continues upstream");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the gateway is a hop of its own"
    );

    // a POST with a body, allowed
    let post = send(
        &client,
        signed(
            &key("checkout"),
            demo::SERVICE,
            "POST",
            &format!("{url}/payment/payments"),
            &[("content-type", "application/json")],
            br#"{"sku":"sku-1"}"#,
            now,
        ),
    )
    .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.body);

    // denied by the matrix (no rule), and by an explicit deny rule
    let by_default = send(
        &client,
        get(&key("catalogue"), &format!("{url}/order/orders/42"), now),
    )
    .await;
    let by_rule = send(
        &client,
        signed(
            &key("checkout"),
            demo::SERVICE,
            "DELETE",
            &format!("{url}/order/orders/42"),
            &[],
            b"",
            now,
        ),
    )
    .await;
    // a wrong secret, an unknown key, a stale signature, no signature, no route
    let checkout = key("checkout");
    let wrong_secret = send(
        &client,
        get(
            &Key {
                secret: "not-the-secret",
                ..checkout
            },
            &format!("{url}/order/orders/42"),
            now,
        ),
    )
    .await;
    let unknown_key = send(
        &client,
        get(
            &Key {
                akid: "AKIAUNKNOWNKEY000001",
                secret: "whatever",
                token: None,
            },
            &format!("{url}/order/orders/42"),
            now,
        ),
    )
    .await;
    let stale = send(
        &client,
        get(
            &key("checkout"),
            &format!("{url}/order/orders/42"),
            now - Duration::from_secs(3600),
        ),
    )
    .await;
    let unsigned = send(
        &client,
        http::Request::get(format!("{url}/order/orders/42"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    let no_route = send(
        &client,
        get(&key("checkout"), &format!("{url}/nowhere/x"), now),
    )
    .await;

    // STS: checkout assumes the demo role (with a source identity), catalogue may not
    let form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=audit&SourceIdentity=alice",
        demo::STS_ROLE
    );
    let form_type = [("content-type", "application/x-www-form-urlencoded")];
    let assumed = send(
        &client,
        signed(
            &key("checkout"),
            "sts",
            "POST",
            &format!("{url}/sts"),
            &form_type,
            form.as_bytes(),
            now,
        ),
    )
    .await;
    assert_eq!(assumed.status, StatusCode::OK, "{}", assumed.body);
    let session_akid = xml(&assumed.body, "AccessKeyId");
    let session_secret = xml(&assumed.body, "SecretAccessKey");
    let session_token = xml(&assumed.body, "SessionToken");
    let untrusted = send(
        &client,
        signed(
            &key("catalogue"),
            "sts",
            "POST",
            &format!("{url}/sts"),
            &form_type,
            form.as_bytes(),
            now,
        ),
    )
    .await;
    // the session creates an order
    let session = Key {
        akid: &session_akid,
        secret: &session_secret,
        token: Some(&session_token),
    };
    let as_session = send(
        &client,
        signed(
            &session,
            demo::SERVICE,
            "POST",
            &format!("{url}/order/orders"),
            &[("content-type", "application/json")],
            br#"{"sku":"sku-2"}"#,
            now,
        ),
    )
    .await;
    assert_eq!(as_session.status, StatusCode::OK, "{}", as_session.body);
    for a in [
        &allowed,
        &post,
        &by_default,
        &by_rule,
        &wrong_secret,
        &unknown_key,
        &stale,
        &unsigned,
        &no_route,
        &untrusted,
        &as_session,
    ] {
        // (the AssumeRole answer is left out: handing out credentials is its job)
        bodies.push(a.body.clone());
    }

    let records = audit(&demo).await;
    let record = |a: &Answer| {
        records
            .get(&a.request_id)
            .unwrap_or_else(|| panic!("no audit record for {} ({})", a.request_id, a.body))
            .clone()
    };

    let r = record(&allowed);
    check_common(&r, "GET");
    assert_eq!(r["eventType"], "GatewayRequest", "{r}");
    assert_eq!(r["decision"], "Allow", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["upstreamStatus"], 200, "{r}");
    assert_eq!(r["rule"], "checkout-manages-orders", "{r}");
    assert_eq!(r["targetPbc"], "order", "{r}");
    assert_eq!(r["traceId"], incoming_trace, "{r}");
    assert_eq!(r["userAgent"], "audit-test/1.0", "{r}");
    assert_eq!(r["path"], "/order/orders/42?customer=REDACTED", "{r}");
    let who = &r["userIdentity"];
    assert_eq!(
        who["accessKeyId"],
        demo::identity("checkout").unwrap().access_key_id,
        "{r}"
    );
    assert_eq!(
        who["roleArn"],
        demo::identity("checkout").unwrap().role_arn,
        "{r}"
    );
    assert_eq!(who["callerPbc"], "checkout", "{r}");
    assert!(who["principalArn"].as_str().is_some(), "{r}");
    assert_eq!(
        r["bytesOut"].as_u64().unwrap(),
        allowed.body.len() as u64,
        "{r}"
    );
    assert!(r.get("errorCode").is_none(), "{r}");
    assert!(r["timings"]["upstreamUs"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["timings"]["totalUs"].as_u64() >= r["timings"]["upstreamUs"].as_u64(),
        "{r}"
    );

    let r = record(&post);
    check_common(&r, "POST");
    assert_eq!(r["bytesIn"], br#"{"sku":"sku-1"}"#.len(), "{r}");
    assert_eq!(r["targetPbc"], "payment", "{r}");

    let r = record(&by_default);
    check_common(&r, "GET");
    denied(&r, "AccessDenied", 403);
    assert_eq!(r["userIdentity"]["callerPbc"], "catalogue", "{r}");
    assert_eq!(r["targetPbc"], "order", "{r}");
    assert!(r.get("rule").is_none(), "a default deny names no rule: {r}");

    let r = record(&by_rule);
    check_common(&r, "DELETE");
    denied(&r, "AccessDenied", 403);
    assert_eq!(r["rule"], "no-order-deletes", "{r}");

    for (a, code) in [
        (&wrong_secret, "SignatureDoesNotMatch"),
        (&unknown_key, "InvalidClientTokenId"),
        (&stale, "RequestTimeTooSkewed"),
        (&unsigned, "MissingAuthenticationToken"),
    ] {
        let r = record(a);
        check_common(&r, "GET");
        assert_eq!(r["decision"], "Deny", "{r}");
        assert_eq!(r["errorCode"], code, "{r}");
        let status = r["status"].as_u64().unwrap();
        assert!((400..500).contains(&status), "{r}");
        assert!(r.get("targetPbc").is_none(), "never routed: {r}");
        assert!(
            r["userIdentity"].get("principalArn").is_none(),
            "never proved: {r}"
        );
    }
    // the key a failed request claimed is recorded (unverified), so guessing shows
    assert_eq!(
        record(&wrong_secret)["userIdentity"]["accessKeyId"],
        demo::identity("checkout").unwrap().access_key_id
    );
    assert_eq!(
        record(&unknown_key)["userIdentity"]["accessKeyId"],
        "AKIAUNKNOWNKEY000001"
    );
    assert!(
        record(&unsigned)["userIdentity"]
            .get("accessKeyId")
            .is_none()
    );

    let r = record(&no_route);
    denied(&r, "UnknownTarget", 404);
    assert_eq!(r["userIdentity"]["callerPbc"], Value::Null, "{r}");
    assert_eq!(
        r["userIdentity"]["roleArn"],
        demo::identity("checkout").unwrap().role_arn
    );

    let r = record(&assumed);
    check_common(&r, "POST");
    assert_eq!(r["eventType"], "StsAction", "{r}");
    assert_eq!(r["eventName"], "AssumeRole", "{r}");
    assert_eq!(r["decision"], "Allow", "{r}");
    assert_eq!(
        r["userIdentity"]["accessKeyId"],
        demo::identity("checkout").unwrap().access_key_id
    );
    assert_eq!(r["sts"]["roleArn"], demo::STS_ROLE, "{r}");
    assert_eq!(r["sts"]["roleSessionName"], "audit", "{r}");
    assert_eq!(r["sts"]["sourceIdentity"], "alice", "{r}");
    assert_eq!(r["sts"]["issuedAccessKeyId"], session_akid.as_str(), "{r}");
    assert!(
        r["sts"]["expiration"].as_str().unwrap().ends_with('Z'),
        "{r}"
    );

    let r = record(&untrusted);
    assert_eq!(r["eventType"], "StsAction", "{r}");
    denied(&r, "AccessDenied", 403);
    assert_eq!(r["sts"]["roleArn"], demo::STS_ROLE, "{r}");
    assert!(r["sts"].get("issuedAccessKeyId").is_none(), "{r}");

    let r = record(&as_session);
    assert_eq!(r["decision"], "Allow", "{r}");
    assert_eq!(
        r["userIdentity"]["accessKeyId"],
        session_akid.as_str(),
        "{r}"
    );
    assert_eq!(r["userIdentity"]["roleArn"], demo::STS_ROLE, "{r}");
    assert_eq!(r["userIdentity"]["sourceIdentity"], "alice", "{r}");
    assert!(
        r["userIdentity"]["principalArn"]
            .as_str()
            .unwrap()
            .contains(":assumed-role/"),
        "{r}"
    );

    // No secret anywhere: audit log, logs, error bodies, metrics.
    let audit_text = std::fs::read_to_string(demo.audit_path()).unwrap();
    let metrics_text = scrape(&demo).await;
    let log_text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let sts_key = std::fs::read_to_string(dir.0.join("sts-key")).unwrap();
    let mut secrets: Vec<String> = demo::IDENTITIES
        .iter()
        .map(|i| i.secret.to_string())
        .collect();
    secrets.extend([
        session_secret.clone(),
        session_token.clone(),
        sts_key.trim().to_string(),
    ]);
    // and the signatures callers sent (a signature is a password-equivalent for its window)
    for (name, text) in [
        ("the audit log", &audit_text),
        ("the logs", &log_text),
        ("the metrics", &metrics_text),
        ("the error bodies", &bodies.join("\n")),
    ] {
        for s in &secrets {
            assert!(!s.is_empty());
            assert!(
                !text.contains(s.as_str()),
                "a secret ({}...) is in {name}",
                &s[..4]
            );
        }
    }
    assert!(!log_text.is_empty(), "the logs were captured");
    demo.shutdown().await;
}

/// The demo's own configuration for a second gateway in front of the same upstreams:
/// fresh ports, its own audit file. (The demo upstreams trust only the demo gateway's
/// assertion key, so what this one forwards is refused there.)
fn second_gateway_config(demo: &Demo, audit: &Path) -> gateway::config::Config {
    let mut config = gateway::config::Config::load(demo.config_path()).unwrap();
    config.listen.addr = "127.0.0.1:0".parse().unwrap();
    config.admin.addr = "127.0.0.1:0".parse().unwrap();
    config.audit.path = Some(audit.to_path_buf());
    config
}

async fn scrape(demo: &Demo) -> String {
    let url = format!("{}/metrics", demo.admin_url());
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Samples as the Prometheus project's Python parser reads them: name{labels} -> value.
fn parse_metrics(text: &str) -> Option<HashMap<String, f64>> {
    let has_parser = std::process::Command::new(python())
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_parser {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus_client is missing in CI: scripts/test installs it (GATEWAY_TEST_PYTHON)"
        );
        eprintln!("prometheus_client is not installed: skipping (scripts/test installs it)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/parse_metrics.py");
    let mut child = std::process::Command::new(python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let mut labels: Vec<(String, String)> = v["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = format!("{}{{{}}}", v["name"].as_str().unwrap(), labels.join(","));
        samples.insert(key, v["value"].as_f64().unwrap());
    }
    Some(samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_prometheus_parser_and_move_with_requests() {
    let dir = TempDir::new("metrics");
    let demo = start_demo(&dir).await;
    let client = client(demo.ca_path());
    let url = demo.url().to_string();
    let Some(before) = parse_metrics(&scrape(&demo).await) else {
        demo.shutdown().await;
        return;
    };
    let now = SystemTime::now();
    for _ in 0..3 {
        let a = send(
            &client,
            get(&key("checkout"), &format!("{url}/order/orders/1"), now),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let d = send(
        &client,
        get(&key("catalogue"), &format!("{url}/order/orders/1"), now),
    )
    .await;
    assert_eq!(d.status, StatusCode::FORBIDDEN);
    let form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=metrics",
        demo::STS_ROLE
    );
    let s = send(
        &client,
        signed(
            &key("checkout"),
            "sts",
            "POST",
            &format!("{url}/sts"),
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
            now,
        ),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    // A client that does not speak TLS: one failed handshake. The gateway closes the
    // connection once it has counted it, so reading to the end waits for that.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(demo.addr()).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest).await;
    }
    demo.running().gateway.auditor().flush().await;
    let text = scrape(&demo).await;
    let after = parse_metrics(&text).unwrap();
    let delta = |key: &str| {
        let a = after
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no sample {key} in\n{text}"));
        a - before.get(key).copied().unwrap_or(0.0)
    };
    assert_eq!(
        delta("gateway_requests_total{caller=checkout,code=OK,decision=allow,target=order}"),
        3.0
    );
    assert_eq!(
        delta(
            "gateway_requests_total{caller=catalogue,code=AccessDenied,decision=deny,target=order}"
        ),
        1.0
    );
    assert_eq!(
        delta(&format!(
            "gateway_sts_requests_total{{action=AssumeRole,code=OK,role={}}}",
            demo::STS_ROLE
        )),
        1.0
    );
    for stage in ["request", "verify", "authorize"] {
        assert!(
            delta(&format!(
                "gateway_request_duration_seconds_count{{stage={stage}}}"
            )) >= 4.0,
            "{stage}"
        );
    }
    assert_eq!(
        delta("gateway_request_duration_seconds_count{stage=upstream}"),
        3.0
    );
    assert!(after["gateway_upstream_connections_opened_total{target=order}"] >= 1.0);
    assert!(after.contains_key("gateway_reloads_total{file=rules}"));
    assert!(after["gateway_reload_last_success_timestamp_seconds{file=rules}"] > 1.7e9);
    assert_eq!(
        delta("gateway_tls_handshake_errors_total{reason=failed}"),
        1.0
    );
    assert_eq!(delta("gateway_audit_records_written_total{}"), 5.0);
    assert_eq!(after["gateway_audit_records_dropped_total{}"], 0.0);
    assert!(after.contains_key("gateway_audit_queue_depth{}"));
    // bounded labels: no path, no key id
    assert!(
        !text.contains("/orders/1") && !text.contains("AKIA"),
        "{text}"
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_queue_in_fail_closed_mode_answers_503() {
    let dir = TempDir::new("failclosed");
    let demo = start_demo(&dir).await;
    // The demo's own config, with a one-record queue that fails closed.
    let mut config = second_gateway_config(&demo, &dir.0.join("strict-audit.log"));
    config.audit.queue_capacity = 1;
    config.audit.on_full = gateway::audit::OnFull::FailClosed;
    let strict = gateway::server::start(&config).await.unwrap();
    let url = format!("https://127.0.0.1:{}", strict.addr.port());
    let client = client(demo.ca_path());
    let request = || {
        get(
            &key("checkout"),
            &format!("{url}/order/orders/7"),
            SystemTime::now(),
        )
    };

    // The one place in the queue is taken: the gateway cannot audit, so it refuses.
    let held = strict.gateway.auditor().reserve().unwrap();
    let dropped = strict.gateway.auditor().dropped();
    let refused = send(&client, request()).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    let v: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(v["code"], "ServiceUnavailable", "{v}");
    assert!(v["message"].as_str().unwrap().contains("audit"), "{v}");
    assert_eq!(strict.gateway.auditor().dropped(), dropped + 1);

    // Room again: answered, and audited. (A denial: the demo upstreams trust only the
    // demo gateway's assertion key, not this second gateway's.)
    drop(held);
    let served = send(
        &client,
        get(
            &key("catalogue"),
            &format!("{url}/order/orders/7"),
            SystemTime::now(),
        ),
    )
    .await;
    assert_eq!(served.status, StatusCode::FORBIDDEN, "{}", served.body);
    strict.gateway.auditor().flush().await;
    let text = std::fs::read_to_string(dir.0.join("strict-audit.log")).unwrap();
    assert!(text.contains(&served.request_id), "{text}");
    assert!(!text.contains(&refused.request_id), "{text}");
    strict.shutdown().await;
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_come_from_a_trusted_peer_header_or_are_generated() {
    let dir = TempDir::new("requestid");
    let demo = start_demo(&dir).await;
    let mut config = second_gateway_config(&demo, &dir.0.join("lb-audit.log"));
    config.tracing.request_id_header = Some("x-request-id".into());
    config.tracing.request_id_trusted_peers = vec!["127.0.0.0/8".into()];
    let behind_lb = gateway::server::start(&config).await.unwrap();
    let url = format!("https://127.0.0.1:{}", behind_lb.addr.port());
    let client = client(demo.ca_path());
    let denied_with = |id: &str| {
        signed(
            &key("catalogue"),
            demo::SERVICE,
            "GET",
            &format!("{url}/order/orders/7"),
            &[("x-request-id", id)],
            b"",
            SystemTime::now(),
        )
    };

    // From a trusted peer, a well-formed id is the request id everywhere.
    let taken = send(&client, denied_with("lb-7f3a.42:1")).await;
    assert_eq!(taken.request_id, "lb-7f3a.42:1");
    let v: Value = serde_json::from_str(&taken.body).unwrap();
    assert_eq!(v["requestId"], "lb-7f3a.42:1", "{v}");
    // One that could forge a log line or is too long is replaced by a fresh id.
    for hostile in ["a b\"c", &"x".repeat(200)] {
        let replaced = send(&client, denied_with(hostile)).await;
        assert_ne!(replaced.request_id, hostile);
        assert_eq!(
            replaced.request_id.len(),
            36,
            "a UUID: {}",
            replaced.request_id
        );
    }
    behind_lb.gateway.auditor().flush().await;
    let text = std::fs::read_to_string(dir.0.join("lb-audit.log")).unwrap();
    assert!(text.contains("\"requestID\":\"lb-7f3a.42:1\""), "{text}");

    // The demo gateway names no such header: a caller cannot choose its request id.
    let demo_url = demo.url().to_string();
    let ignored = send(
        &client,
        signed(
            &key("catalogue"),
            demo::SERVICE,
            "GET",
            &format!("{demo_url}/order/orders/7"),
            &[("x-request-id", "chosen-by-caller")],
            b"",
            SystemTime::now(),
        ),
    )
    .await;
    assert_ne!(ignored.request_id, "chosen-by-caller");
    behind_lb.shutdown().await;
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_off_by_the_request_timeout_is_audited_under_the_id_it_was_given() {
    let dir = TempDir::new("timeout");
    let demo = start_demo(&dir).await;
    // An upstream that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let mut config = second_gateway_config(&demo, &dir.0.join("timeout-audit.log"));
    config.limits.request_timeout_ms = 300;
    for t in &mut config.targets {
        if t.name == "order" {
            t.upstream = format!("http://{silent_addr}");
            t.ca_bundle = None;
        }
    }
    let gw = gateway::server::start(&config).await.unwrap();
    let url = format!("https://127.0.0.1:{}", gw.addr.port());
    let client = client(demo.ca_path());
    let answer = send(
        &client,
        get(
            &key("checkout"),
            &format!("{url}/order/orders/1"),
            SystemTime::now(),
        ),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );
    let v: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(v["code"], "GatewayTimeout", "{v}");
    assert_eq!(v["requestId"], answer.request_id.as_str(), "{v}");
    // The record of the cut-off request carries the id the caller was given.
    gw.gateway.auditor().flush().await;
    let text = std::fs::read_to_string(dir.0.join("timeout-audit.log")).unwrap();
    let r: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["requestID"] == answer.request_id.as_str())
        .unwrap_or_else(|| panic!("no record for {}: {text}", answer.request_id));
    assert_eq!(r["errorCode"], "RequestCancelled", "{r}");
    assert_eq!(r["decision"], "Allow", "{r}");
    assert_eq!(r["incomplete"], true, "{r}");
    gw.shutdown().await;
    held.abort();
    demo.shutdown().await;
}
