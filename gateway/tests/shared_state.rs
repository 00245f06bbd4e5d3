//! The state replicas share, against the demo mesh, in memory and in a real Redis
//! (`redis-server` from Debian's packages, on 127.0.0.1).
//!
//! Replay protection: a signed request is accepted once and refused when sent again,
//! on the same replica or on another one sharing Redis; exempt methods pass twice; a
//! Redis that is down is refused (fail closed) or served and counted (fail open); a
//! full Redis (`maxmemory` with `noeviction`) refuses new signatures and still
//! remembers the ones it holds.
//!
//! Rate limits (the rules file's `[[limit]]`s): a caller over its limit gets 429
//! `ThrottlingException` with `Retry-After`, other callers do not; denied calls count;
//! an address that keeps failing authentication is refused before its signature is
//! checked; replicas sharing Redis share the buckets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use bytes::Bytes;
use common::redis::{Redis, redis_cmd};
use common::{REGION, signed, temp_dir};
use gateway::config::Config;
use gateway::demo::{self, Demo, Options};
use gateway::replay::ReplayConfig;
use gateway::server::Running;
use gateway::state::{FailMode, RedisConfig, StoreKind};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const CHECKOUT: (&str, &str) = (
    "AKIADEMOCHECKOUT0001",
    "demo+checkout+secret+key+not+for+production",
);

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
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends the request `method url body` signed by checkout at `time`: the same
/// arguments make the same signature, i.e. a replay.
async fn send(
    client: &HttpsClient,
    base: &str,
    method: &str,
    path: &str,
    time: SystemTime,
) -> (StatusCode, String) {
    let body: &[u8] = if method == "POST" {
        b"{\"sku\":\"sku-1\"}"
    } else {
        b""
    };
    let req = signed(
        CHECKOUT,
        method,
        &format!("{base}{path}"),
        body,
        time,
        REGION,
    );
    let a = answer(client, req).await;
    (a.status, a.code)
}

/// Like [`send`], signed for `signed_for` (its Host) but delivered to `deliver_to`:
/// what a replica behind the same load-balancer name receives.
async fn send_to(
    client: &HttpsClient,
    signed_for: &str,
    deliver_to: &str,
    path: &str,
    time: SystemTime,
) -> (StatusCode, String) {
    let body: &[u8] = b"{\"sku\":\"sku-1\"}";
    let mut req = signed(
        CHECKOUT,
        "POST",
        &format!("{signed_for}{path}"),
        body,
        time,
        REGION,
    );
    *req.uri_mut() = format!("{deliver_to}{path}").parse().unwrap();
    let a = answer(client, req).await;
    (a.status, a.code)
}

async fn start_demo(dir: &Path) -> Demo {
    demo::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: Some(dir.to_path_buf()),
    })
    .await
    .unwrap()
}

/// What replicas share besides the demo's configuration: an assertion signing key,
/// and an order upstream that trusts it (the demo's upstreams trust only the demo
/// gateway's own key).
struct Shared {
    key_file: PathBuf,
    upstreams: Vec<gateway::demo::upstream::Upstream>,
}

impl Shared {
    /// Points every target of `config` at the upstreams trusting the shared key.
    fn route(&self, config: &mut Config) {
        config.assertion.key_file = Some(self.key_file.clone());
        for t in &mut config.targets {
            if let Some(u) = self.upstreams.iter().find(|u| u.name() == t.name) {
                t.upstream = u.url();
            }
        }
    }
}

async fn shared(demo: &Demo) -> Shared {
    let key_file = demo.state_dir().join("replicas-assertion-key.pem");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let signer =
        gateway::assertion::AssertionSigner::from_pem_file(&key_file, demo::ISSUER, 60).unwrap();
    let verifier =
        gateway::assertion::AssertionVerifier::from_jwks(&signer.jwks(), demo::ISSUER).unwrap();
    let read = |f: &str| std::fs::read_to_string(demo.state_dir().join(f)).unwrap();
    let tls = gateway::demo::upstream::tls_config(&read("upstream.pem"), &read("upstream-key.pem"))
        .unwrap();
    let verifier = Arc::new(verifier);
    let mut upstreams = Vec::new();
    for pbc in ["checkout", "order", "catalogue", "payment"] {
        upstreams.push(
            gateway::demo::upstream::spawn_upstream(pbc, Arc::clone(&tls), Arc::clone(&verifier))
                .await
                .unwrap(),
        );
    }
    Shared {
        key_file,
        upstreams,
    }
}

/// Another gateway on the demo's configuration (same keys, rules, upstreams), with
/// `replay` and `redis` as given, signing assertions with the shared key.
async fn replica(
    demo: &Demo,
    shared: &Shared,
    replay: ReplayConfig,
    redis: Option<RedisConfig>,
) -> Running {
    replica_with(demo, shared, Some(replay), redis, None, StoreKind::Memory).await
}

/// [`replica`] with every shared-state knob: `limits` is appended to the demo's rules
/// (in a file of its own), `limit_store` holds their buckets.
async fn replica_with(
    demo: &Demo,
    shared: &Shared,
    replay: Option<ReplayConfig>,
    redis: Option<RedisConfig>,
    limits: Option<&str>,
    limit_store: StoreKind,
) -> Running {
    let mut config = Config::load(demo.config_path()).unwrap();
    if let Some(limits) = limits {
        let rules = std::fs::read_to_string(&config.rules.file).unwrap();
        let file = demo.state_dir().join(format!(
            "rules-{}.toml",
            std::process::id() as u128 * 1_000 + u128::from(next())
        ));
        std::fs::write(&file, format!("{rules}\n{limits}")).unwrap();
        config.rules.file = file;
    }
    config.rate_limit.store = limit_store;
    config.listen.addr = "127.0.0.1:0".parse().unwrap();
    config.admin.addr = "127.0.0.1:0".parse().unwrap();
    shared.route(&mut config);
    config.audit.sink = gateway::audit::AuditSink::Off;
    config.replay = replay;
    config.redis = redis;
    gateway::server::start(&config).await.unwrap()
}

fn next() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn replay_config(store: StoreKind, exempt: &[&str]) -> ReplayConfig {
    ReplayConfig {
        store,
        exempt_methods: exempt.iter().map(|m| (*m).to_string()).collect(),
        max_entries: 1000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_refuses_a_second_copy_and_exempts_what_it_is_told() {
    let dir = temp_dir("replay-memory");
    let demo = start_demo(&dir).await;
    let sh = shared(&demo).await;
    let gw = replica(&demo, &sh, replay_config(StoreKind::Memory, &["GET"]), None).await;
    let base = format!("https://{}", gw.addr);
    let c = client(demo.ca_path());
    let t = SystemTime::now();

    assert_eq!(
        send(&c, &base, "POST", "/order/orders", t).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&c, &base, "POST", "/order/orders", t).await,
        (StatusCode::FORBIDDEN, "RequestReplayed".into())
    );
    // Signed a second later: a new signature, a new request.
    let later = t + Duration::from_secs(1);
    assert_eq!(
        send(&c, &base, "POST", "/order/orders", later).await.0,
        StatusCode::OK
    );
    // GET is exempt: the same signed read twice is served twice.
    for _ in 0..2 {
        assert_eq!(
            send(&c, &base, "GET", "/order/orders/42", t).await.0,
            StatusCode::OK
        );
    }
    // The demo's own gateway has no [replay]: the same request passes there.
    let plain = demo.url().to_string();
    assert_eq!(
        send(&c, &plain, "POST", "/order/orders", t).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&c, &plain, "POST", "/order/orders", t).await.0,
        StatusCode::OK
    );
    gw.shutdown().await;
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn counter(admin: std::net::SocketAddr, series: &str) -> f64 {
    let c: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = c
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_refuse_a_replay_sent_to_the_other_one() {
    let dir = temp_dir("replay-redis");
    let mut redis = Redis::start(&dir, &[]);
    let demo = start_demo(&dir.join("demo")).await;
    let sh = shared(&demo).await;
    let a = replica(
        &demo,
        &sh,
        replay_config(StoreKind::Redis, &[]),
        Some(redis.config(FailMode::FailClosed)),
    )
    .await;
    let b = replica(
        &demo,
        &sh,
        replay_config(StoreKind::Redis, &[]),
        Some(redis.config(FailMode::FailClosed)),
    )
    .await;
    let c = client(demo.ca_path());
    let t = SystemTime::now();
    let (url_a, url_b) = (format!("https://{}", a.addr), format!("https://{}", b.addr));

    assert_eq!(
        send(&c, &url_a, "POST", "/order/orders", t).await.0,
        StatusCode::OK
    );
    // The same signed request (same Host) delivered to the other replica.
    assert_eq!(
        send_to(&c, &url_a, &url_b, "/order/orders", t).await,
        (StatusCode::FORBIDDEN, "RequestReplayed".into())
    );
    assert_eq!(
        send(&c, &url_a, "POST", "/order/orders", t).await.1,
        "RequestReplayed"
    );

    // Redis goes down: fail closed refuses, and says why.
    redis.stop();
    let (status, code) = send(
        &c,
        &url_b,
        "POST",
        "/order/orders",
        t + Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    );
    assert!(
        counter(
            b.admin_addr,
            "gateway_shared_state_errors_total{use=\"replay\",policy=\"fail_closed\"}"
        )
        .await
            >= 1.0
    );
    // A fail-open replica serves unchecked, and counts it.
    let open = replica(
        &demo,
        &sh,
        replay_config(StoreKind::Redis, &[]),
        Some(redis.config(FailMode::FailOpen)),
    )
    .await;
    let url_open = format!("https://{}", open.addr);
    assert_eq!(
        send(
            &c,
            &url_open,
            "POST",
            "/order/orders",
            t + Duration::from_secs(3)
        )
        .await
        .0,
        StatusCode::OK
    );
    assert!(
        counter(
            open.admin_addr,
            "gateway_shared_state_errors_total{use=\"replay\",policy=\"fail_open\"}"
        )
        .await
            >= 1.0
    );
    for r in [a, b, open] {
        r.shutdown().await;
    }
    demo.shutdown().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_new_signatures_and_forgets_no_live_one() {
    let dir = temp_dir("replay-full");
    // Tiny and never evicting: writes fail with OOM once it is full.
    let redis = Redis::start(
        &dir,
        &["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"],
    );
    let demo = start_demo(&dir.join("demo")).await;
    let sh = shared(&demo).await;
    let gw = replica(
        &demo,
        &sh,
        replay_config(StoreKind::Redis, &[]),
        Some(redis.config(FailMode::FailClosed)),
    )
    .await;
    let c = client(demo.ca_path());
    let base = format!("https://{}", gw.addr);
    let t0 = SystemTime::now();
    assert_eq!(
        send(&c, &base, "POST", "/order/orders", t0).await.0,
        StatusCode::OK
    );

    // Redis reaches its maxmemory (as under a flood of valid signatures): with
    // noeviction every write is refused with OOM from now on.
    assert_eq!(
        redis_cmd(redis.port, &["CONFIG", "SET", "maxmemory", "1"]),
        "+OK"
    );

    let (status, code) = send(
        &c,
        &base,
        "POST",
        "/order/orders",
        t0 + Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    );
    // The live signature is neither evicted nor served again: its replay is refused
    // (the full store refuses the write before looking at the key), and the entry is
    // still there.
    let (status, _) = send(&c, &base, "POST", "/order/orders", t0).await;
    assert!(!status.is_success(), "a replay was served: {status}");
    assert_eq!(redis_cmd(redis.port, &["DBSIZE"]), ":1");
    gw.shutdown().await;
    demo.shutdown().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One answer: status, AWS error code, `Retry-After`.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    code: String,
    retry_after: Option<u64>,
}

/// A GET of `path` signed by `key` now (a fresh signature each time).
async fn call(client: &HttpsClient, base: &str, key: (&str, &str), path: &str) -> Answer {
    let req = signed(
        key,
        "GET",
        &format!("{base}{path}"),
        b"",
        SystemTime::now(),
        REGION,
    );
    answer(client, req).await
}

/// Sends `req` and reads the answer (the body is drained).
async fn answer(client: &HttpsClient, req: http::Request<Full<Bytes>>) -> Answer {
    let resp = client.request(req).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let answer = Answer {
        status: resp.status(),
        code: header("x-amzn-errortype").unwrap_or_default(),
        retry_after: header("retry-after").map(|v| v.parse().unwrap()),
    };
    let _ = resp.into_body().collect().await;
    answer
}

const CATALOGUE: (&str, &str) = (
    "AKIADEMOCATALOGUE001",
    "demo+catalogue+secret+key+not+for+production",
);

const LIMITS: &str = r#"
[[limit]]
id = "checkout-to-order"
caller = "checkout"
target = "order"
requests = 2
per = "1h"

[[limit]]
id = "catalogue-calls"
caller = "catalogue"
requests = 1
per = "1h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_limit_gets_429_with_retry_after_and_others_do_not() {
    let dir = temp_dir("limits-memory");
    let demo = start_demo(&dir).await;
    let sh = shared(&demo).await;
    let gw = replica_with(&demo, &sh, None, None, Some(LIMITS), StoreKind::Memory).await;
    let c = client(demo.ca_path());
    let base = format!("https://{}", gw.addr);

    for _ in 0..2 {
        assert_eq!(
            call(&c, &base, CHECKOUT, "/order/orders/42").await.status,
            StatusCode::OK
        );
    }
    let over = call(&c, &base, CHECKOUT, "/order/orders/42").await;
    assert_eq!(
        (over.status, over.code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException")
    );
    // One request per half hour: the next fits in about 30 minutes.
    let retry = over.retry_after.unwrap();
    assert!((1_700..=1_800).contains(&retry), "Retry-After {retry}");
    // The limit is per (caller, target): checkout's other targets are not limited.
    assert_eq!(
        call(&c, &base, CHECKOUT, "/catalogue/products/1")
            .await
            .status,
        StatusCode::OK
    );
    // Denied calls count too: catalogue may not call order, and its one call is used.
    assert_eq!(
        call(&c, &base, CATALOGUE, "/order/orders/42").await.code,
        "AccessDenied"
    );
    assert_eq!(
        call(&c, &base, CATALOGUE, "/order/orders/42").await.code,
        "ThrottlingException"
    );
    gw.shutdown().await;
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_failing_authentication_is_refused_before_its_signature_is_checked() {
    let dir = temp_dir("limits-failed-auth");
    let demo = start_demo(&dir).await;
    let sh = shared(&demo).await;
    let limits = r#"
[[limit]]
id = "guessers"
failed_auth_per_source_ip = true
requests = 3
per = "1h"
"#;
    // The demo's own rules already carry a (generous) failed-auth limit; only one is
    // allowed, so this test's rules replace it.
    let mut config = Config::load(demo.config_path()).unwrap();
    let rules = std::fs::read_to_string(&config.rules.file).unwrap();
    let cut = rules.find("\n[[limit]]").unwrap_or(rules.len());
    let file = demo.state_dir().join("rules-guessers.toml");
    std::fs::write(&file, format!("{}\n{limits}", &rules[..cut])).unwrap();
    config.rules.file = file;
    config.listen.addr = "127.0.0.1:0".parse().unwrap();
    config.admin.addr = "127.0.0.1:0".parse().unwrap();
    sh.route(&mut config);
    let gw = gateway::server::start(&config).await.unwrap();
    let c = client(demo.ca_path());
    let base = format!("https://{}", gw.addr);

    let guess = ("AKIADEMOCHECKOUT0001", "a-guessed-secret");
    for _ in 0..3 {
        assert_eq!(
            call(&c, &base, guess, "/order/orders/42").await.code,
            "SignatureDoesNotMatch"
        );
    }
    // Now even the right secret from this address waits: it is not checked at all.
    let refused = call(&c, &base, CHECKOUT, "/order/orders/42").await;
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException")
    );
    assert!(refused.retry_after.unwrap() >= 1);
    gw.shutdown().await;
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_share_the_buckets() {
    let dir = temp_dir("limits-redis");
    let redis = Redis::start(&dir, &[]);
    let demo = start_demo(&dir.join("demo")).await;
    let sh = shared(&demo).await;
    let r = || Some(redis.config(FailMode::FailClosed));
    let a = replica_with(&demo, &sh, None, r(), Some(LIMITS), StoreKind::Redis).await;
    let b = replica_with(&demo, &sh, None, r(), Some(LIMITS), StoreKind::Redis).await;
    let c = client(demo.ca_path());
    let (url_a, url_b) = (format!("https://{}", a.addr), format!("https://{}", b.addr));

    assert_eq!(
        call(&c, &url_a, CHECKOUT, "/order/orders/42").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&c, &url_b, CHECKOUT, "/order/orders/42").await.status,
        StatusCode::OK
    );
    for url in [&url_a, &url_b] {
        let over = call(&c, url, CHECKOUT, "/order/orders/42").await;
        assert_eq!(over.code, "ThrottlingException", "{url}");
        assert!(over.retry_after.unwrap() > 1_000);
    }
    a.shutdown().await;
    b.shutdown().await;
    demo.shutdown().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_assume_role_is_refused_even_when_its_method_is_exempt() {
    let dir = temp_dir("replay-sts");
    let demo = start_demo(&dir).await;
    let sh = shared(&demo).await;
    let gw = replica(
        &demo,
        &sh,
        replay_config(StoreKind::Memory, &["GET", "POST"]),
        None,
    )
    .await;
    let c = client(demo.ca_path());
    let url = format!(
        "https://{}/sts?Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=replayed",
        gw.addr,
        demo::STS_ROLE.replace(':', "%3A").replace('/', "%2F")
    );
    let t = SystemTime::now();
    let assume = || common::signed_for("sts", CHECKOUT, "POST", &url, b"", t, REGION);
    let first = answer(&c, assume()).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    // The same signed AssumeRole again would hand its sender fresh credentials.
    let again = answer(&c, assume()).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{again:?}");
    gw.shutdown().await;
    demo.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
