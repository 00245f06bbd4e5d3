//! `gateway demo` end to end: the demo mesh started in-process and as the real binary,
//! called with requests signed by the independent `aws-sigv4` crate over TLS (HTTP/1.1
//! and HTTP/2), and with the real `curl --aws-sigv4` exactly as the instructions print
//! the commands.
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
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-demo-test-{tag}-{}-{}",
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
    demo::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: Some(dir.0.clone()),
    })
    .await
    .unwrap()
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client trusting only the demo CA; `http2` offers h2 by ALPN, else HTTP/1.1 only.
fn client(ca: &Path, http2: bool) -> HttpsClient {
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
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1();
    let connector = if http2 {
        builder.enable_http2().build()
    } else {
        builder.build()
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A request signed by `aws-sigv4` as `akid`/`secret` for the demo's region and
/// service, without `x-amz-content-sha256` (as curl sends it: the gateway hashes the
/// body).
fn signed(
    method: &str,
    url: &str,
    akid: &str,
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> http::Request<Full<Bytes>> {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let mut all = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    let identity = Credentials::new(akid, secret, None, None, "demo-test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(demo::REGION)
        .name(demo::SERVICE)
        .time(SystemTime::now())
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

fn signed_as(pbc: &str, method: &str, url: &str) -> http::Request<Full<Bytes>> {
    let id = demo::identity(pbc).unwrap();
    signed(method, url, id.access_key_id, id.secret, &[], b"")
}

struct Answer {
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
    json: serde_json::Value,
}

async fn send(client: &HttpsClient, req: http::Request<Full<Bytes>>) -> Answer {
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    Answer {
        status,
        version,
        headers,
        json,
    }
}

fn assert_rejected(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.json);
    assert_eq!(
        a.headers.get("x-amzn-ErrorType").unwrap(),
        code,
        "{}",
        a.json
    );
    assert_eq!(a.json["code"], code, "{}", a.json);
    assert!(
        a.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        a.json
    );
    let request_id = a.json["requestId"].as_str().unwrap();
    assert_eq!(a.headers.get("x-amzn-RequestId").unwrap(), request_id);
}

#[tokio::test]
async fn signed_requests_through_the_demo_mesh() {
    let dir = TempDir::new("mesh");
    let demo = start_demo(&dir).await;
    let url = demo.url().to_string();
    assert_eq!(url, format!("https://{}", demo.addr()));

    for http2 in [false, true] {
        let client = client(demo.ca_path(), http2);

        // Allowed: the order service answers, and it verified who called.
        let a = send(
            &client,
            signed_as("checkout", "GET", &format!("{url}/order/orders/42")),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let expected_version = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(a.version, expected_version);
        assert_eq!(a.json["service"], "order");
        assert_eq!(a.json["method"], "GET");
        assert_eq!(a.json["path"], "/orders/42");
        assert_eq!(a.json["caller"]["pbc"], "checkout");
        assert_eq!(
            a.json["caller"]["role_arn"],
            "arn:aws:iam::111122223333:role/CheckoutPBCRole"
        );
        assert_eq!(a.json["assertion_verified"], true);
        // The assertion's jti is the request id the gateway returned.
        assert_eq!(
            a.headers.get("x-amzn-RequestId").unwrap(),
            a.json["request_id"].as_str().unwrap()
        );

        // A signed JSON body reaches the payment service intact.
        let id = demo::identity("checkout").unwrap();
        let req = signed(
            "POST",
            &format!("{url}/payment/payments"),
            id.access_key_id,
            id.secret,
            &[("content-type", "application/json")],
            br#"{"sku":"sku-1"}"#,
        );
        let a = send(&client, req).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        assert_eq!(a.json["service"], "payment");
        assert_eq!(a.json["method"], "POST");
        assert_eq!(a.json["path"], "/payments");
        assert_eq!(a.json["body"], serde_json::json!({"sku": "sku-1"}));

        // Default deny: catalogue may not call order.
        let a = send(
            &client,
            signed_as("catalogue", "GET", &format!("{url}/order/orders/42")),
        )
        .await;
        assert_rejected(&a, StatusCode::FORBIDDEN, "AccessDenied");
        let message = a.json["message"].as_str().unwrap();
        assert!(
            message.contains("CataloguePBCRole") && message.contains("no rule allows it"),
            "{message}"
        );

        // Explicit deny beats checkout's allow on order.
        let a = send(
            &client,
            signed_as("checkout", "DELETE", &format!("{url}/order/orders/42")),
        )
        .await;
        assert_rejected(&a, StatusCode::FORBIDDEN, "AccessDenied");
        assert!(
            a.json["message"]
                .as_str()
                .unwrap()
                .contains("no-order-deletes"),
            "{}",
            a.json
        );

        // A key nobody issued.
        let req = signed(
            "GET",
            &format!("{url}/order/orders/42"),
            "AKIANOBODY0000000001",
            "no+such+secret+key+anywhere+at+all+00000",
            &[],
            b"",
        );
        assert_rejected(
            &send(&client, req).await,
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
        );

        // A demo key with the wrong secret.
        let req = signed(
            "GET",
            &format!("{url}/order/orders/42"),
            "AKIADEMOCHECKOUT0001",
            "demo+wrong+secret+key+not+for+production",
            &[],
            b"",
        );
        assert_rejected(
            &send(&client, req).await,
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
        );

        // The JWKS is public and is what the upstreams trust.
        let req = http::Request::get(format!("{url}/.well-known/jwks.json"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = send(&client, req).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json, demo.running().gateway.jwks());
        assert_eq!(a.json["keys"][0]["alg"], "ES256");
    }
    demo.shutdown().await;
}

#[tokio::test]
async fn upstreams_refuse_requests_that_bypass_the_gateway() {
    let dir = TempDir::new("bypass");
    let demo = start_demo(&dir).await;
    let names: Vec<&str> = demo.upstreams().iter().map(|u| u.name()).collect();
    assert_eq!(names, ["checkout", "order", "catalogue", "payment"]);
    let order = demo
        .upstreams()
        .iter()
        .find(|u| u.name() == "order")
        .unwrap();

    // The upstreams speak HTTP/1.1 and HTTP/2, and neither without an assertion.
    for http2 in [false, true] {
        let req = http::Request::get(format!("{}/orders/42", order.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let a = send(&client(demo.ca_path(), http2), req).await;
        let expected_version = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(a.version, expected_version);
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
        assert_eq!(a.json["assertion_verified"], false);
        assert!(
            a.json["reason"]
                .as_str()
                .unwrap()
                .contains("x-gateway-assertion"),
            "{}",
            a.json
        );
    }
    let client = client(demo.ca_path(), true);

    // A forged assertion (signed by a key the gateway does not publish).
    let forger = gateway::assertion::AssertionSigner::generate(demo::ISSUER, 60).unwrap();
    let principal = gateway::identity::Principal {
        role_arn: "arn:aws:iam::111122223333:role/CheckoutPBCRole".into(),
        arn: "arn:aws:iam::111122223333:role/CheckoutPBCRole".into(),
        access_key_id: "AKIADEMOCHECKOUT0001".into(),
        tags: vec![],
        source_identity: None,
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let forged = forger
        .sign(&principal, Some("checkout"), "order", "forged-1", now)
        .unwrap();
    let req = http::Request::get(format!("{}/orders/42", order.url()))
        .header("x-gateway-assertion", forged)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = send(&client, req).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
    assert_eq!(a.json["assertion_verified"], false);
    demo.shutdown().await;
}

#[tokio::test]
async fn the_state_dir_holds_a_config_that_is_what_runs() {
    let dir = TempDir::new("state");
    let demo = start_demo(&dir).await;
    let state = std::fs::canonicalize(&dir.0).unwrap();
    assert_eq!(demo.state_dir(), state);
    for f in [
        "ca.pem",
        "gateway.pem",
        "gateway-key.pem",
        "upstream.pem",
        "upstream-key.pem",
        "gateway.toml",
        "credentials.toml",
        "rules.toml",
    ] {
        assert!(state.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(state.join("rules.toml")).unwrap(),
        demo::RULES
    );
    let config = gateway::config::Config::load(demo.config_path()).unwrap();
    assert_eq!(config.sigv4.regions, [demo::REGION]);
    assert_eq!(config.sigv4.services, [demo::SERVICE]);
    for u in demo.upstreams() {
        let t = config.targets.iter().find(|t| t.name == u.name()).unwrap();
        assert_eq!(t.upstream, u.url());
        assert_eq!(
            t.path_prefix.as_deref(),
            Some(format!("/{}", u.name()).as_str())
        );
    }
    let keys = gateway::stack::load_credentials(&config.identity.credentials_file).unwrap();
    assert_eq!(keys.len(), demo::IDENTITIES.len());

    let text = demo.instructions();
    for needle in [
        demo.url(),
        demo.admin_url(),
        &demo.ca_path().display().to_string(),
        &state.display().to_string(),
        "/.well-known/jwks.json",
        "authz-rules explain",
        "authz-rules matrix",
        "audit.log",
        "/metrics",
    ] {
        assert!(text.contains(needle), "instructions lack {needle}:\n{text}");
    }
    for id in &demo::IDENTITIES {
        for needle in [id.pbc, id.role_arn, id.access_key_id, id.secret] {
            assert!(text.contains(needle), "instructions lack {needle}:\n{text}");
        }
    }
    for c in demo.commands() {
        assert!(
            text.contains(&format!("\n  {}\n", c.command)),
            "{} not printed on its own line",
            c.command
        );
    }
    demo.shutdown().await;
}

fn curl_has_aws_sigv4() -> bool {
    Command::new("curl")
        .args(["--help", "all"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--aws-sigv4"))
}

/// Runs a printed command through `sh`, exactly as a person pasting it would.
fn run_printed(command: &str) -> String {
    let out = Command::new("sh").args(["-c", command]).output().unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn printed_curl_commands_work_as_printed() {
    if !curl_has_aws_sigv4() {
        eprintln!(
            "note: skipping printed_curl_commands_work_as_printed: no `curl` with --aws-sigv4 on PATH"
        );
        return;
    }
    let dir = TempDir::new("curl");
    let demo = start_demo(&dir).await;
    let text = demo.instructions();
    let printed: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect();
    let curl_commands = demo
        .commands()
        .iter()
        .filter(|c| c.command.starts_with("curl "))
        .count();
    assert_eq!(printed.len(), curl_commands, "{text}");
    // The STS command is the AWS CLI's (tests/sts.rs runs the same call with boto3).
    assert!(
        text.contains("aws sts assume-role --endpoint-url") && text.contains("CheckoutToOrderRole"),
        "{text}"
    );
    let find = |needle: &str| {
        printed
            .iter()
            .find(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no printed command with {needle}:\n{text}"))
            .clone()
    };
    // curl is blocking; the demo runs on the other worker threads.
    let run = |c: String| tokio::task::spawn_blocking(move || run_printed(&c));

    let allowed = run(find(
        "AKIADEMOCHECKOUT0001:demo+checkout+secret+key+not+for+production\" https",
    ))
    .await
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&allowed).unwrap_or_else(|e| panic!("{e}: {allowed}"));
    assert_eq!(v["service"], "order", "{v}");
    assert_eq!(v["path"], "/orders/42", "{v}");
    assert_eq!(v["caller"]["pbc"], "checkout", "{v}");
    assert_eq!(v["assertion_verified"], true, "{v}");

    let post = run(find("-d '{\"sku\":\"sku-1\"}'")).await.unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&post).unwrap_or_else(|e| panic!("{e}: {post}"));
    assert_eq!(v["service"], "payment", "{v}");
    assert_eq!(v["method"], "POST", "{v}");
    assert_eq!(v["body"]["sku"], "sku-1", "{v}");

    let denied = run(find("AKIADEMOCATALOGUE001")).await.unwrap();
    assert!(
        denied.starts_with("HTTP/2 403") || denied.starts_with("HTTP/1.1 403"),
        "{denied}"
    );
    assert!(
        denied
            .to_ascii_lowercase()
            .contains("x-amzn-errortype: accessdenied"),
        "{denied}"
    );
    assert!(denied.contains("\"code\":\"AccessDenied\""), "{denied}");

    let deleted = run(find("-X DELETE")).await.unwrap();
    assert!(
        deleted.contains(" 403") && deleted.contains("no-order-deletes"),
        "{deleted}"
    );

    let unsigned = printed
        .iter()
        .find(|c| !c.contains("--aws-sigv4") && c.contains("/order/"))
        .unwrap()
        .clone();
    let unsigned = run(unsigned).await.unwrap();
    assert!(
        unsigned.contains(" 403") && unsigned.contains("MissingAuthenticationToken"),
        "{unsigned}"
    );

    let jwks = run(find("jwks.json")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(v, demo.running().gateway.jwks());

    let health = run(find("/healthz")).await.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // The printed metrics command shows the requests just made.
    let metrics = run(find("/metrics")).await.unwrap();
    assert!(
        metrics.contains(
            "gateway_requests_total{caller=\"checkout\",target=\"order\",decision=\"allow\",code=\"OK\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("decision=\"deny\",code=\"AccessDenied\""),
        "{metrics}"
    );
    // The audit log is where the instructions say, with a line per request, and the
    // printed `tail` command shows it.
    demo.running().gateway.auditor().flush().await;
    let audit = std::fs::read_to_string(demo.audit_path()).unwrap();
    assert!(audit.lines().count() >= 5, "{audit}");
    assert!(
        text.contains(&demo.audit_path().display().to_string()),
        "{text}"
    );
    let tail = demo
        .commands()
        .into_iter()
        .find(|c| c.command.starts_with("tail "))
        .unwrap();
    let shown = run(tail.command).await.unwrap();
    for line in shown.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["eventVersion"], "1.0", "{v}");
    }
    demo.shutdown().await;
}

/// Kills the child if the test fails before it stopped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_runs_the_demo_and_stops_on_sigint() {
    let dir = TempDir::new("bin");
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no instructions ({e}); got:\n{}", printed.join("\n")));
        let done = line.contains("Ctrl-C stops the demo");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    let admin = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("admin"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no admin URL in:\n{text}"))
        .to_string();
    assert!(
        admin.starts_with("http://127.0.0.1:") && !admin.ends_with(":0"),
        "{admin}"
    );
    let ca = std::fs::canonicalize(&dir.0).unwrap().join("ca.pem");
    assert!(text.contains(&ca.display().to_string()), "{text}");

    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = plain
        .request(
            http::Request::get(format!("{admin}/healthz"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(plain);

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop within 30 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the demo exited with {status}");
}
