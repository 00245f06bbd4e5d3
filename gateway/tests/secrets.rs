//! Secret hygiene, beyond tests/audit.rs (which searches the demo's logs, audit log,
//! error bodies and metrics after the common allow/deny/STS paths): here a gateway with
//! a known STS sealing key and a known assertion key is driven through every error
//! code that can be triggered locally, STS success and each kind of STS failure,
//! chunk-signed and presigned requests, an expired and a tampered session, upstream
//! failures and timeouts, and a credentials reload refused for a syntax error next to a
//! secret. Then everything observable is searched for every secret: every log line
//! (JSON, debug level), the audit log, every error body, `/metrics`, the `Debug` output
//! of the config, the credentials, `Secret`, the session keys and issued credentials,
//! the assertion signer, and any panic message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use bytes::Bytes;
use common::{REGION, SERVICE};
use gateway::reload::Outcome;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use mesh::{Answer, CATALOGUE, CHECKOUT, Mesh, Options};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Every log line of this test process, JSON, debug level and up.
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

/// Every panic message of this process (a gateway task that panics is caught by tokio;
/// its message still goes through the hook).
fn panics() -> Arc<Mutex<Vec<String>>> {
    static PANICS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    PANICS
        .get_or_init(|| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&seen);
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Ok(mut s) = sink.lock() {
                    s.push(info.to_string());
                }
                previous(info);
            }));
            seen
        })
        .clone()
}

const STS_KEY: &str = "sts-sealing-key-for-the-secrets-test-0123456789abcdef";
const ROLE: &str = "arn:aws:iam::111122223333:role/CheckoutPBCRole";

struct Key<'a> {
    akid: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
}

const CHECKOUT_KEY: Key<'static> = Key {
    akid: CHECKOUT.0,
    secret: CHECKOUT.1,
    token: None,
};

/// Signed by aws-sigv4 for `service`; `presign` puts the signature in the query.
#[allow(clippy::too_many_arguments)]
fn signed(
    key: &Key<'_>,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
    presign: Option<Duration>,
) -> Request<Full<Bytes>> {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let mut all = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    let identity = Credentials::new(
        key.akid,
        key.secret,
        key.token.map(str::to_string),
        None,
        "secrets-test",
    )
    .into();
    let mut settings = SigningSettings::default();
    if let Some(expires) = presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    } else {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable =
        SignableRequest::new(method, url, all.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in &all {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

fn get(key: &Key<'_>, url: &str) -> Request<Full<Bytes>> {
    signed(key, SERVICE, "GET", url, &[], b"", SystemTime::now(), None)
}

fn sts(key: &Key<'_>, url: &str, form: &str) -> Request<Full<Bytes>> {
    signed(
        key,
        "sts",
        "POST",
        url,
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
        SystemTime::now(),
        None,
    )
}

fn xml(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = body
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {body}"))
        + open.len();
    let end = body[start..].find(&format!("</{tag}>")).unwrap() + start;
    body[start..end].to_string()
}

/// A chunk-signed PUT (see tests/e2e.rs), `corrupt`: a flipped byte in chunk 2.
fn chunk_signed(mesh: &Mesh, chunks: &[Vec<u8>], corrupt: bool) -> Request<Full<Bytes>> {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    let url = mesh.url("/order/upload");
    let decoded: usize = chunks.iter().map(Vec::len).sum();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = Credentials::new(CHECKOUT.0, CHECKOUT.1, None, None, "secrets").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(SERVICE)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let host = url
        .parse::<http::Uri>()
        .unwrap()
        .authority()
        .unwrap()
        .to_string();
    let decoded_len = decoded.to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded_len.as_str()),
    ];
    let signable = SignableRequest::new(
        "PUT",
        &url,
        headers.iter().copied(),
        SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
    )
    .unwrap();
    let (instructions, seed) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::builder().method("PUT").uri(&url);
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
    let mut all = chunks.to_vec();
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
        .insert("content-length", HeaderValue::from(body.len()));
    *req.body_mut() = Full::new(Bytes::from(body));
    req
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The base64 lines of a PEM's body (each a piece of the key).
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_observable_after_every_error_path() {
    let logs = logs();
    let panics = panics();
    let keys_dir = mesh::temp_dir("secret-keys");
    std::fs::write(keys_dir.join("sts-k1"), STS_KEY).unwrap();
    let assertion_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(keys_dir.join("assertion.pem"), &assertion_key).unwrap();
    std::fs::write(keys_dir.join("ca.pem"), "").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        r#"
[[target]]
name = "flaky"
upstream = "https://{closed}"
path_prefix = "/flaky"
ca_bundle = "ca.pem"
connect_timeout_ms = 1000

[assertion]
key_file = "{dir}/assertion.pem"

[sts]
keys = [{{ id = "k1", secret_file = "{dir}/sts-k1" }}]

[[role]]
arn = "{ROLE}"
trust = ["checkout"]
"#,
        dir = keys_dir.display()
    );
    let mesh = Mesh::start(
        "secrets",
        Options {
            limits: "max_body_bytes = 4096\nmax_uri_bytes = 2048\nmax_header_bytes = 16384\nrequest_timeout_ms = 2500".into(),
            order_target: "response_timeout_ms = 1000".into(),
            extra,
            ..Options::default()
        },
    )
    .await;
    let url = |p: &str| mesh.url(p);
    let now = SystemTime::now();
    let mut bodies: Vec<String> = Vec::new();
    let mut codes: Vec<String> = Vec::new();
    let mut note = |what: &str, a: &Answer, bodies: &mut Vec<String>| {
        assert!(
            a.status.as_u16() < 500
                || ["UpstreamUnavailable", "UpstreamTimeout", "GatewayTimeout"].contains(&a.code()),
            "{what}: {a:?}"
        );
        codes.push(if a.code().is_empty() {
            a.status.to_string()
        } else {
            a.code().to_string()
        });
        bodies.push(a.body.clone());
    };

    // --- allowed, presigned, chunk-signed
    let a = mesh.send(get(&CHECKOUT_KEY, &url("/order/orders/1"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let presigned = signed(
        &CHECKOUT_KEY,
        SERVICE,
        "GET",
        &url("/order/orders/2?x=1"),
        &[],
        b"",
        now,
        Some(Duration::from_secs(60)),
    );
    let presigned_sig = presigned.uri().query().unwrap().to_string();
    let a = mesh.send(presigned).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let chunks = vec![vec![b'a'; 1000], vec![b'b'; 1000], vec![b'c'; 1000]];
    let a = mesh.send(chunk_signed(&mesh, &chunks, false)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = mesh.send(chunk_signed(&mesh, &chunks, true)).await;
    note("bad chunk", &a, &mut bodies);

    // --- STS: success, then the session used, expired, tampered
    let sts_url = url("/sts");
    let a = mesh
        .send(sts(
            &CHECKOUT_KEY,
            &sts_url,
            &format!("Action=AssumeRole&Version=2011-06-15&RoleArn={ROLE}&RoleSessionName=secrets"),
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let session_akid = xml(&a.body, "AccessKeyId");
    let session_secret = xml(&a.body, "SecretAccessKey");
    let session_token = xml(&a.body, "SessionToken");
    let session = Key {
        akid: &session_akid,
        secret: &session_secret,
        token: Some(&session_token),
    };
    let a = mesh.send(get(&session, &url("/order/orders/3"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let mut tampered_token = session_token.clone().into_bytes();
    let mid = tampered_token.len() / 2;
    tampered_token[mid] = if tampered_token[mid] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered_token = String::from_utf8(tampered_token).unwrap();
    let a = mesh
        .send(get(
            &Key {
                token: Some(&tampered_token),
                ..Key {
                    akid: &session_akid,
                    secret: &session_secret,
                    token: None,
                }
            },
            &url("/order/orders/3"),
        ))
        .await;
    a.expect(
        StatusCode::FORBIDDEN,
        "InvalidClientTokenId",
        "tampered token",
    );
    note("tampered token", &a, &mut bodies);
    // An expired session sealed by the same key (as another replica would have).
    let keys = gateway::sts::session::SessionKeys::new(vec![
        gateway::sts::session::SessionKey::new("k1", STS_KEY.as_bytes()).unwrap(),
    ])
    .unwrap();
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = keys
        .issue(
            &gateway::sts::session::SessionClaims::first_hop(ROLE, "old", unix - 7200, 900),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    let a = mesh
        .send(get(
            &Key {
                akid: &expired.access_key_id,
                secret: expired.secret_access_key.expose(),
                token: Some(&expired.session_token),
            },
            &url("/order/orders/4"),
        ))
        .await;
    a.expect(StatusCode::BAD_REQUEST, "ExpiredToken", "expired session");
    note("expired session", &a, &mut bodies);
    // STS failures: untrusted caller, unknown action, missing and invalid parameters,
    // a web identity token from no configured issuer, an unsigned call.
    let catalogue = Key {
        akid: CATALOGUE.0,
        secret: CATALOGUE.1,
        token: None,
    };
    for (what, key, form) in [
        (
            "untrusted",
            &catalogue,
            format!("Action=AssumeRole&Version=2011-06-15&RoleArn={ROLE}&RoleSessionName=x"),
        ),
        (
            "unknown action",
            &CHECKOUT_KEY,
            "Action=CreateUser&Version=2011-06-15".to_string(),
        ),
        (
            "missing parameter",
            &CHECKOUT_KEY,
            "Action=AssumeRole&Version=2011-06-15".to_string(),
        ),
        (
            "invalid duration",
            &CHECKOUT_KEY,
            format!(
                "Action=AssumeRole&Version=2011-06-15&RoleArn={ROLE}&RoleSessionName=x&DurationSeconds=5"
            ),
        ),
        (
            "web identity",
            &CHECKOUT_KEY,
            format!(
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ROLE}&RoleSessionName=x&WebIdentityToken=eyJhbGciOiJub25lIn0.e30."
            ),
        ),
    ] {
        let a = mesh.send(sts(key, &sts_url, &form)).await;
        assert!(a.status.is_client_error(), "STS {what}: {a:?}");
        bodies.push(a.body.clone());
    }
    let a = mesh
        .send(sts(
            &Key {
                akid: CHECKOUT.0,
                secret: "wrong-secret-wrong-secret-wrong",
                token: None,
            },
            &sts_url,
            "Action=GetCallerIdentity&Version=2011-06-15",
        ))
        .await;
    assert!(a.status.is_client_error(), "STS wrong secret: {a:?}");
    bodies.push(a.body.clone());

    // --- every gateway error code that can be triggered locally
    let wrong = Key {
        akid: CHECKOUT.0,
        secret: "wrong+secret+wrong+secret+wrong+secret",
        token: None,
    };
    let unknown = Key {
        akid: "AKIAUNKNOWNKEY000001",
        secret: "unknown+secret+unknown+secret+unknown",
        token: None,
    };
    let mut cases: Vec<(&str, Request<Full<Bytes>>)> = vec![
        (
            "MissingAuthenticationToken",
            Request::get(url("/order/orders/1"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "SignatureDoesNotMatch",
            get(&wrong, &url("/order/orders/1")),
        ),
        (
            "InvalidClientTokenId",
            get(&unknown, &url("/order/orders/1")),
        ),
        (
            "RequestTimeTooSkewed",
            signed(
                &CHECKOUT_KEY,
                SERVICE,
                "GET",
                &url("/order/orders/1"),
                &[],
                b"",
                now - Duration::from_secs(3600),
                None,
            ),
        ),
        (
            "RequestExpired",
            signed(
                &CHECKOUT_KEY,
                SERVICE,
                "GET",
                &url("/order/orders/1"),
                &[],
                b"",
                now - Duration::from_secs(300),
                Some(Duration::from_secs(60)),
            ),
        ),
        ("AccessDenied", get(&catalogue, &url("/order/orders/1"))),
        (
            "AccessDenied",
            signed(
                &CHECKOUT_KEY,
                SERVICE,
                "DELETE",
                &url("/order/orders/1"),
                &[],
                b"",
                now,
                None,
            ),
        ),
        ("UnknownTarget", get(&CHECKOUT_KEY, &url("/nowhere/1"))),
        (
            "InvalidRequest",
            get(&CHECKOUT_KEY, &url("/order/a/%2e%2e/b")),
        ),
        (
            "MethodNotAllowed",
            signed(
                &CHECKOUT_KEY,
                SERVICE,
                "get",
                &url("/order/orders/1"),
                &[],
                b"",
                now,
                None,
            ),
        ),
        (
            "RequestEntityTooLarge",
            signed(
                &CHECKOUT_KEY,
                SERVICE,
                "POST",
                &url("/order/orders"),
                &[],
                &[b'x'; 5000],
                now,
                None,
            ),
        ),
        (
            "RequestURITooLong",
            get(&CHECKOUT_KEY, &url(&format!("/order/{}", "u".repeat(3000)))),
        ),
        ("UpstreamUnavailable", get(&CHECKOUT_KEY, &url("/flaky/x"))),
        (
            "UpstreamTimeout",
            get(&CHECKOUT_KEY, &url("/order/slow/3000")),
        ),
        (
            "GatewayTimeout",
            get(&CHECKOUT_KEY, &url("/payment/slow/5000")),
        ),
    ];
    let mut no_sig = get(&CHECKOUT_KEY, &url("/order/orders/1"));
    let auth = no_sig.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let cut = auth.find(", Signature=").unwrap();
    no_sig
        .headers_mut()
        .insert("authorization", auth[..cut].parse().unwrap());
    cases.push(("IncompleteSignature", no_sig));
    let mut body_swapped = signed(
        &CHECKOUT_KEY,
        SERVICE,
        "POST",
        &url("/order/orders"),
        &[],
        b"{\"a\":1}",
        now,
        None,
    );
    *body_swapped.body_mut() = Full::new(Bytes::from_static(b"{\"a\":2}"));
    cases.push(("XAmzContentSHA256Mismatch", body_swapped));
    let mut short = chunk_signed(&mesh, &chunks, false);
    short.headers_mut().insert(
        "x-amz-decoded-content-length",
        HeaderValue::from_static("10"),
    );
    cases.push(("SignatureDoesNotMatch", short)); // the declared length is signed
    // A chunk-signed body cut off before its last chunk.
    let mut cut_off = chunk_signed(&mesh, &chunks, false);
    let whole = http_body_util::BodyExt::collect(cut_off.body_mut())
        .await
        .unwrap()
        .to_bytes();
    let part = whole.slice(..1500);
    cut_off
        .headers_mut()
        .insert("content-length", HeaderValue::from(part.len()));
    *cut_off.body_mut() = Full::new(part);
    cases.push(("IncompleteBody", cut_off));
    let mut big_header = get(&CHECKOUT_KEY, &url("/order/orders/1"));
    big_header
        .headers_mut()
        .insert("x-big", HeaderValue::from_str(&"h".repeat(20_000)).unwrap());
    cases.push(("431", big_header));
    for (code, req) in cases {
        let a = mesh.send(req).await;
        if code == "431" {
            assert_eq!(a.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        } else {
            assert_eq!(a.code(), code, "{}", a.body);
        }
        note(code, &a, &mut bodies);
    }

    // --- a credentials reload refused: a syntax error right next to a secret
    let creds = mesh
        .running()
        .gateway
        .reloadables()
        .into_iter()
        .find(|r| r.what() == "credentials")
        .unwrap();
    let good = std::fs::read_to_string(mesh.path("credentials.toml")).unwrap();
    for broken in [
        // unquoted: the parser's message would quote the value
        good.replace(
            &format!("secret = \"{}\"", CHECKOUT.1),
            &format!("secret = {}", CHECKOUT.1),
        ),
        // unterminated string
        good.replace(
            &format!("secret = \"{}\"", CHECKOUT.1),
            &format!("secret = \"{}", CHECKOUT.1),
        ),
        // a secret of the wrong type next to a good one
        good.replace(
            &format!("secret = \"{}\"", CHECKOUT.1),
            &format!("secret = [\"{}\"]", CHECKOUT.1),
        ),
        // a key repeated
        good.replace(
            &format!("secret = \"{}\"", CHECKOUT.1),
            &format!("secret = \"{0}\"\nsecret = \"{0}\"", CHECKOUT.1),
        ),
        // the secret on an unknown key
        good.replace(
            &format!("secret = \"{}\"", CHECKOUT.1),
            &format!("secret = \"{0}\"\nsecert = \"{0}\"", CHECKOUT.1),
        ),
    ] {
        std::fs::write(mesh.path("credentials.toml"), &broken).unwrap();
        match creds.check_and_log(true) {
            Outcome::Refused(e) => bodies.push(e),
            other => panic!("a broken credentials file was not refused: {other:?}"),
        }
    }
    std::fs::write(mesh.path("credentials.toml"), &good).unwrap();
    assert_eq!(creds.check_and_log(true), Outcome::Reloaded);
    mesh.still_serving("the reload failures").await;

    // --- Debug of everything that holds a secret
    let mut debug = Vec::new();
    let config = gateway::config::Config::load(&mesh.path("gateway.toml")).unwrap();
    debug.push(format!("{config:?}"));
    let static_keys =
        gateway::identity::static_keys::StaticKeys::load(&mesh.path("credentials.toml")).unwrap();
    debug.push(format!("{static_keys:?}"));
    debug.push(format!(
        "{:?}",
        gateway::sigv4::Secret::new(CHECKOUT.1.to_string())
    ));
    debug.push(format!("{keys:?}"));
    debug.push(format!("{expired:?}"));
    let loaded = gateway::sts::load_keys(&config.sts.as_ref().unwrap().keys).unwrap();
    debug.push(format!("{loaded:?}"));
    let signer = gateway::assertion::AssertionSigner::from_pem_file(
        &keys_dir.join("assertion.pem"),
        "sigv4-gateway",
        60,
    )
    .unwrap();
    debug.push(format!("{signer:?}"));
    debug.push(format!("{:?}", mesh.running().gateway.reloadables().len()));

    // --- what to look for
    let date = &chrono_date(now);
    let mut secrets: Vec<(String, String)> = vec![
        ("checkout's secret".into(), CHECKOUT.1.into()),
        ("catalogue's secret".into(), CATALOGUE.1.into()),
        ("the session secret".into(), session_secret.clone()),
        ("the session token".into(), session_token.clone()),
        (
            "the expired session's token".into(),
            expired.session_token.clone(),
        ),
        (
            "the expired session's secret".into(),
            expired.secret_access_key.expose().to_string(),
        ),
        ("the STS sealing key".into(), STS_KEY.into()),
    ];
    for (i, line) in pem_body_lines(&assertion_key).into_iter().enumerate() {
        secrets.push((format!("assertion key PEM line {i}"), line));
    }
    for (who, secret) in [
        ("checkout", CHECKOUT.1.to_string()),
        ("session", session_secret.clone()),
    ] {
        let k = gateway::sigv4::derive_signing_key(
            &gateway::sigv4::Secret::new(secret),
            date,
            REGION,
            SERVICE,
        );
        secrets.push((format!("{who}'s signing key (hex)"), hex(&*k)));
        secrets.push((
            format!("{who}'s signing key (base64)"),
            base64::engine::general_purpose::STANDARD.encode(*k),
        ));
    }
    // Signatures are password-equivalents within their window: not in logs or records.
    let presigned_signature = presigned_sig
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Signature="))
        .unwrap()
        .to_string();

    let audit = mesh.audit_text().await;
    let metrics = mesh.metrics().await;
    mesh.shutdown().await;
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let panic_text = panics.lock().unwrap().join("\n");
    assert!(!log_text.is_empty(), "logs were captured");
    assert!(audit.lines().count() >= 20, "audit records: {audit}");
    assert!(
        log_text.contains("refused the new version"),
        "the refused reload was logged"
    );
    let places = [
        ("the logs", log_text.as_str()),
        ("the audit log", audit.as_str()),
        ("an error body or reload error", &bodies.join("\n")),
        ("/metrics", metrics.as_str()),
        ("a Debug output", &debug.join("\n")),
        ("a panic message", panic_text.as_str()),
    ];
    for (place, text) in places {
        for (what, secret) in &secrets {
            assert!(!secret.is_empty());
            assert!(!text.contains(secret.as_str()), "{what} is in {place}");
        }
    }
    for (place, text) in [("the logs", &log_text), ("the audit log", &audit)] {
        assert!(
            !text.contains(&presigned_signature),
            "a presigned signature is in {place}"
        );
    }
    assert!(panic_text.is_empty(), "the gateway panicked: {panic_text}");
    eprintln!("error codes exercised: {codes:?}");
    let _ = std::fs::remove_dir_all(&keys_dir);
}

/// `YYYYMMDD` of `t` (UTC), for the signing-key scope.
fn chrono_date(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}{m:02}{d:02}")
}
