//! The gateway's STS end to end, through the real clients: boto3 from PyPI (a Python
//! script, `tests/py/sts_boto3.py`) and requests signed by the `aws-sigv4` crate.
//! The demo mesh is the gateway under test: checkout may assume CheckoutToOrderRole,
//! whose sessions may manage orders and nothing else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::SystemTime;

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_boto3() -> bool {
    std::process::Command::new(python())
        .args(["-c", "import boto3, requests"])
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn demo(name: &str) -> (gateway::demo::Demo, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "gateway-sts-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let demo = gateway::demo::start(gateway::demo::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: Some(dir.clone()),
    })
    .await
    .unwrap();
    (demo, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_assumes_a_role_and_uses_the_session() {
    if !has_boto3() {
        if std::env::var_os("CI").is_some() {
            panic!("boto3 is missing in CI: scripts/test installs it (GATEWAY_TEST_PYTHON)");
        }
        eprintln!("boto3 is not installed: skipping (scripts/test installs it)");
        return;
    }
    let (demo, dir) = demo("boto3").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/sts_boto3.py");
    let base = format!("https://127.0.0.1:{}", demo.addr().port());
    let ca = demo.ca_path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(script)
            .arg(&base)
            .arg(&ca)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        v["static_identity"],
        "arn:aws:iam::111122223333:role/CheckoutPBCRole"
    );
    assert_eq!(
        v["assumed_arn"],
        "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/pod-7"
    );
    assert!(v["access_key_id"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(v["source_identity"], "alice");
    assert_eq!(v["session_identity"], v["assumed_arn"]);
    assert_eq!(v["create_order"][0], 200, "{v}");
    assert_eq!(v["call_payment"][0], 403, "{v}");
    assert_eq!(v["call_payment"][1], "AccessDenied");
    assert_eq!(v["chain_over_an_hour"], "ValidationError");
    assert_eq!(v["chain_new_source"], "AccessDenied");
    assert_eq!(v["tampered"], "InvalidClientTokenId");
    assert_eq!(v["swapped"], "InvalidClientTokenId");
    assert_eq!(v["untrusted"], "AccessDenied");
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_malformed_sts_calls_get_xml_errors() {
    let (demo, dir) = demo("errors").await;
    let base = format!("https://127.0.0.1:{}/sts", demo.addr().port());
    let ca = std::fs::read(demo.ca_path()).unwrap();
    let cert = reqwest_like_client(&ca);
    for (body, status, code) in [
        (
            "Action=GetCallerIdentity&Version=2011-06-15",
            403,
            "MissingAuthenticationToken",
        ),
        (
            "Action=AssumeRole&Version=2011-06-15",
            403,
            "MissingAuthenticationToken",
        ),
        ("Action=Frobnicate&Version=2011-06-15", 400, "InvalidAction"),
        ("Action=GetCallerIdentity", 400, "MissingParameter"),
        (
            "Action=GetCallerIdentity&Action=AssumeRole&Version=2011-06-15",
            400,
            "InvalidParameterValue",
        ),
    ] {
        let (got, text) = cert(&base, body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"), "{text}");
        assert!(
            text.contains(&format!("<Code>{code}</Code>")),
            "{body}: {text}"
        );
        assert!(text.contains("<RequestId>"), "{text}");
    }
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A pending (status, body).
type Posted = std::pin::Pin<Box<dyn std::future::Future<Output = (u16, String)> + Send>>;

/// POSTs a form over TLS trusting `ca`; returns (status, body).
fn reqwest_like_client(ca: &[u8]) -> impl Fn(&str, &str) -> Posted + use<> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
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
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    move |url: &str, body: &str| {
        let req = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let client = client.clone();
        Box::pin(async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }
}

// ---------------------------------------------------------------------------------------
// AssumeRoleWithWebIdentity: a second gateway beside the demo's, trusting a Kubernetes
// style OIDC issuer whose JWKS is a file; tokens minted here with ES256.

const K8S: &str = "https://kubernetes.default.svc";
const AUD: &str = "sts.gateway";
const WEB_ROLE: &str = "arn:aws:iam::111122223333:role/CheckoutToOrderRole";

struct Minter {
    kid: String,
    private: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl Minter {
    fn new(kid: &str) -> Minter {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        Minter {
            kid: kid.into(),
            private: jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: serde_json::json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
            }),
        }
    }

    fn token(&self, iss: &str, sub: &str, aud: &str, exp_in: i64) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = serde_json::json!({"iss": iss, "sub": sub, "aud": [aud], "exp": now + exp_in, "iat": now - 10});
        jsonwebtoken::encode(&header, &claims, &self.private).unwrap()
    }
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

fn xml_field<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_tokens_get_sessions_and_bad_ones_fail() {
    let (demo, dir) = demo("web").await;
    let good = Minter::new("k8s-1");
    let stranger = Minter::new("k8s-1"); // same kid, another key: a forged signature
    std::fs::write(
        dir.join("oidc-jwks.json"),
        serde_json::json!({"keys": [good.jwk.clone()]}).to_string(),
    )
    .unwrap();
    let config = std::fs::read_to_string(demo.config_path())
        .unwrap()
        .replace(&format!("addr = \"{}\"", demo.addr()), "addr = \"127.0.0.1:0\"")
        .replace(&format!("addr = \"{}\"", demo.admin_addr()), "addr = \"127.0.0.1:0\"")
        .replace(
            "[[role]]",
            &format!(
                "[[sts.oidc_issuer]]\nissuer = \"{K8S}\"\naudiences = [\"{AUD}\"]\njwks_file = \"oidc-jwks.json\"\n\n[[role]]"
            ),
        )
        .replace(
            "trust = [\"checkout\",",
            &format!(
                "web_identity = [{{ issuer = \"{K8S}\", sub = [\"system:serviceaccount:checkout:*\"] }}]\ntrust = [\"checkout\","
            ),
        );
    let path = dir.join("gateway-web.toml");
    std::fs::write(&path, config).unwrap();
    let config = gateway::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let running = gateway::server::start(&config).await.unwrap();
    let url = format!("https://127.0.0.1:{}/sts", running.addr.port());
    let post = reqwest_like_client(&std::fs::read(demo.ca_path()).unwrap());
    let ask = |token: String| {
        format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName=checkout-sa&WebIdentityToken={}",
            form_encode(WEB_ROLE),
            form_encode(&token)
        )
    };

    let (status, xml) = post(
        &url,
        &ask(good.token(K8S, "system:serviceaccount:checkout:checkout-sa", AUD, 600)),
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.starts_with("<AssumeRoleWithWebIdentityResponse"),
        "{xml}"
    );
    assert_eq!(
        xml_field(&xml, "SubjectFromWebIdentityToken"),
        "system:serviceaccount:checkout:checkout-sa"
    );
    assert_eq!(xml_field(&xml, "Provider"), K8S);
    assert_eq!(
        xml_field(&xml, "Arn"),
        "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/checkout-sa"
    );
    assert!(xml_field(&xml, "AccessKeyId").starts_with("ASIA"));

    // The same through the Rust SDK (it sends AssumeRoleWithWebIdentity unsigned).
    let sdk = sdk_client(
        &url,
        &std::fs::read(demo.ca_path()).unwrap(),
        ("AKIAUNUSED0000000000", "unused-secret-unused-secret", None),
    );
    let out = sdk
        .assume_role_with_web_identity()
        .role_arn(WEB_ROLE)
        .role_session_name("checkout-sa")
        .web_identity_token(good.token(K8S, "system:serviceaccount:checkout:checkout-sa", AUD, 600))
        .send()
        .await
        .unwrap();
    assert_eq!(out.provider(), Some(K8S));
    assert!(
        out.credentials()
            .unwrap()
            .access_key_id()
            .starts_with("ASIA")
    );

    // And through boto3 (unsigned, as botocore sends it).
    if has_boto3() {
        let token = good.token(K8S, "system:serviceaccount:checkout:checkout-sa", AUD, 600);
        let script = "import sys, boto3\n\
            sts = boto3.client('sts', endpoint_url=sys.argv[1], region_name='eu-west-1', verify=sys.argv[2])\n\
            r = sts.assume_role_with_web_identity(RoleArn=sys.argv[3], RoleSessionName='boto3-sa', WebIdentityToken=sys.argv[4])\n\
            print(r['AssumedRoleUser']['Arn'], r['Credentials']['AccessKeyId'][:4], r['Provider'])\n";
        let (url2, ca, role) = (
            url.clone(),
            demo.ca_path().to_path_buf(),
            WEB_ROLE.to_string(),
        );
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python())
                .args(["-c", script, &url2])
                .arg(&ca)
                .args([role.as_str(), token.as_str()])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            format!(
                "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/boto3-sa ASIA {K8S}"
            )
        );
    }

    for (what, token, status, code) in [
        (
            "wrong issuer",
            good.token(
                "https://evil.example",
                "system:serviceaccount:checkout:x",
                AUD,
                600,
            ),
            400,
            "InvalidIdentityToken",
        ),
        (
            "wrong audience",
            good.token(K8S, "system:serviceaccount:checkout:x", "other", 600),
            400,
            "InvalidIdentityToken",
        ),
        (
            "forged signature",
            stranger.token(K8S, "system:serviceaccount:checkout:x", AUD, 600),
            400,
            "InvalidIdentityToken",
        ),
        (
            "expired",
            good.token(K8S, "system:serviceaccount:checkout:x", AUD, -600),
            400,
            "ExpiredTokenException",
        ),
        (
            "sub the trust policy does not name",
            good.token(K8S, "system:serviceaccount:payment:payment-sa", AUD, 600),
            403,
            "AccessDenied",
        ),
    ] {
        let (got, xml) = post(&url, &ask(token)).await;
        assert_eq!(got, status, "{what}: {xml}");
        assert_eq!(xml_field(&xml, "Code"), code, "{what}: {xml}");
    }
    running.shutdown().await;
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------
// The Rust SDK (`aws-sdk-sts`, lean: rustls/ring, hyper 1) against the same STS.

fn sdk_client(endpoint: &str, ca: &[u8], key: (&str, &str, Option<&str>)) -> aws_sdk_sts::Client {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca.to_vec()))
                .build()
                .unwrap(),
        )
        .build_https();
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            key.0,
            key.1,
            key.2.map(str::to_string),
            None,
            "test",
        ))
        .http_client(http)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_assumes_a_role_and_the_session_creates_an_order() {
    let (demo, dir) = demo("sdk").await;
    let endpoint = format!("https://127.0.0.1:{}/sts", demo.addr().port());
    let ca = std::fs::read(demo.ca_path()).unwrap();
    let checkout = sdk_client(
        &endpoint,
        &ca,
        (
            "AKIADEMOCHECKOUT0001",
            "demo+checkout+secret+key+not+for+production",
            None,
        ),
    );
    let me = checkout.get_caller_identity().send().await.unwrap();
    assert_eq!(
        me.arn(),
        Some("arn:aws:iam::111122223333:role/CheckoutPBCRole")
    );
    assert_eq!(me.account(), Some("111122223333"));
    let out = checkout
        .assume_role()
        .role_arn(WEB_ROLE)
        .role_session_name("sdk-1")
        .tags(
            aws_sdk_sts::types::Tag::builder()
                .key("team")
                .value("checkout")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let creds = out.credentials().unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    let session = sdk_client(
        &endpoint,
        &ca,
        (
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token()),
        ),
    );
    let me = session.get_caller_identity().send().await.unwrap();
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/sdk-1")
    );
    assert!(me.user_id().unwrap().ends_with(":sdk-1"));

    // The session's credentials on the mesh: order yes, payment no.
    let call = |method: &str, path: &str| {
        let url = format!("https://127.0.0.1:{}{path}", demo.addr().port());
        signed_with_token(
            (
                creds.access_key_id(),
                creds.secret_access_key(),
                creds.session_token(),
            ),
            method,
            &url,
        )
    };
    let post = reqwest_like_sender(&ca);
    assert_eq!(post(call("POST", "/order/orders")).await.0, 200);
    let (status, body) = post(call("POST", "/payment/payments")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");

    // A trust policy that does not name the caller.
    let catalogue = sdk_client(
        &endpoint,
        &ca,
        (
            "AKIADEMOCATALOGUE001",
            "demo+catalogue+secret+key+not+for+production",
            None,
        ),
    );
    let err = catalogue
        .assume_role()
        .role_arn(WEB_ROLE)
        .role_session_name("x1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&err),
        Some("AccessDenied"),
        "{err:?}"
    );
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A POST (empty JSON body) signed for execute-api with session credentials.
fn signed_with_token(
    key: (&str, &str, &str),
    method: &str,
    url: &str,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity =
        aws_credential_types::Credentials::new(key.0, key.1, Some(key.2.to_string()), None, "t")
            .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = url.split('/').nth(2).unwrap().to_string();
    let body = b"{}";
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req
        .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

/// A pending (status, body) of a sent request.
type Sent = std::pin::Pin<Box<dyn std::future::Future<Output = (u16, String)> + Send>>;

/// Sends requests over TLS trusting `ca`.
fn reqwest_like_sender(
    ca: &[u8],
) -> impl Fn(http::Request<http_body_util::Full<bytes::Bytes>>) -> Sent + use<> {
    use http_body_util::BodyExt;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
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
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    move |req| {
        let client = client.clone();
        Box::pin(async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_caller_identity_as_a_signed_get_query() {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let (demo, dir) = demo("get").await;
    let url = format!(
        "https://127.0.0.1:{}/sts?Action=GetCallerIdentity&Version=2011-06-15",
        demo.addr().port()
    );
    let identity = aws_credential_types::Credentials::new(
        "AKIADEMOCHECKOUT0001",
        "demo+checkout+secret+key+not+for+production",
        None,
        None,
        "t",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("sts")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = url.split('/').nth(2).unwrap().to_string();
    let signable = SignableRequest::new(
        "GET",
        &url,
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::get(&url)
        .header("host", host.as_str())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    let send = reqwest_like_sender(&std::fs::read(demo.ca_path()).unwrap());
    let (status, xml) = send(req).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(
        xml_field(&xml, "Arn"),
        "arn:aws:iam::111122223333:role/CheckoutPBCRole"
    );
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
