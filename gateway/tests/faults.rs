//! Faults around the real gateway (in-process, 127.0.0.1, real TLS): upstreams that are
//! down, refuse, reset mid-response, answer too slowly or present an untrusted
//! certificate; rules and credentials files caught half-written; and SIGTERM under load
//! against the real binary.
//!
//! Each upstream fault gets its 502 `UpstreamUnavailable` or 504 `UpstreamTimeout`,
//! the other PBC (payment, a healthy upstream) is served during and after, and the
//! gateway's file descriptors come back to where they were (no leaked connection). The
//! tests of this file run one at a time, so the process's descriptor count is theirs.
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

use bytes::Bytes;
use common::{REGION, SERVICE, signed};
use gateway::reload::{Outcome, Reload};
use http::{Request, StatusCode};
use http_body_util::Full;
use mesh::{CHECKOUT, Ca, Mesh, Options, PATIENCE, open_fds, server_tls_alpn};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One test at a time: they count the process's file descriptors.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn get(mesh: &Mesh, path: &str) -> Request<Full<Bytes>> {
    signed(
        CHECKOUT,
        "GET",
        &mesh.url(path),
        b"",
        SystemTime::now(),
        REGION,
    )
}

/// How a faulty upstream misbehaves.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Nothing listens on the port.
    Down,
    /// Accepts TCP, then closes at once with a reset (no TLS handshake).
    Refuses,
    /// TLS, reads the request, resets before answering.
    ResetsBeforeAnswering,
    /// TLS, sends a response head and part of its body, then resets.
    ResetsMidResponse,
    /// TLS, reads the request, never answers.
    Silent,
    /// TLS with a certificate from a CA the gateway does not trust.
    Untrusted,
}

/// Starts a faulty upstream; its address.
async fn faulty_upstream(fault: Fault, ca: &Ca) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    if let Fault::Down = fault {
        drop(tcp);
        return addr;
    }
    let (cert, key) = match fault {
        Fault::Untrusted => Ca::new("someone else's CA").server("flaky"),
        _ => ca.server("flaky"),
    };
    // HTTP/1.1 only: the misbehaviour below is written in HTTP/1.1.
    let tls = tokio_rustls::TlsAcceptor::from(server_tls_alpn(&cert, &key, &[b"http/1.1"]));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Fault::Refuses = fault {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    return;
                }
                let _ = stream.set_zero_linger();
                let Ok(mut s) = tls.accept(stream).await else {
                    return;
                };
                // Read the request head (the gateway sends GETs without a body).
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                match fault {
                    Fault::ResetsMidResponse => {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10000\r\n\r\n",
                            )
                            .await;
                        let _ = s.write_all(&[b'x'; 1000]).await;
                        let _ = s.flush().await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        drop(s); // SO_LINGER 0: a reset
                    }
                    Fault::Silent => {
                        // Never answers; closes only when the gateway does, so a
                        // connection the gateway leaks stays counted.
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                    _ => drop(s),
                }
            });
        }
    });
    addr
}

/// A mesh whose `flaky` target (path prefix `/flaky`) is the given faulty upstream.
async fn mesh_with(fault: Fault) -> Mesh {
    // flaky has a CA of its own (its `ca_bundle`); `Untrusted` signs with yet another.
    let ca_dir = mesh::temp_dir("flaky-ca");
    let ca = Ca::new("mesh test CA");
    let addr = faulty_upstream(fault, &ca).await;
    std::fs::write(ca_dir.join("flaky-ca.pem"), &ca.pem).unwrap();
    let extra = format!(
        r#"
[[target]]
name = "flaky"
upstream = "https://{addr}"
path_prefix = "/flaky"
ca_bundle = "{}"
connect_timeout_ms = 2000
response_timeout_ms = 1000
"#,
        ca_dir.join("flaky-ca.pem").display()
    );
    Mesh::start(
        "faults",
        Options {
            extra,
            ..Options::default()
        },
    )
    .await
}

async fn settle_fds(before: usize, slack: usize) -> usize {
    let mut now = open_fds();
    for _ in 0..100 {
        if now <= before + slack {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = open_fds();
    }
    now
}

async fn payment_ok(mesh: &Mesh, what: &str) {
    let a = mesh.send(get(mesh, "/payment/charges/1")).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "payment during/after {what}: {}",
        a.body
    );
    assert!(a.body.contains("\"upstream\":\"payment\""), "{}", a.body);
}

async fn check_fault(fault: Fault, status: StatusCode, code: &str) {
    let mesh = mesh_with(fault).await;
    // Warm up: the client side, the payment pool, the audit file.
    payment_ok(&mesh, "warm-up").await;
    let a = mesh.send(get(&mesh, "/flaky/things/1")).await;
    let before = settle_fds(open_fds(), 0).await;
    let what = format!("{fault:?}");
    let rounds = 15;
    for _ in 0..rounds {
        // The fault and a payment call at the same time.
        let (flaky, _) = tokio::join!(
            mesh.send(get(&mesh, "/flaky/things/1")),
            payment_ok(&mesh, &what)
        );
        match fault {
            Fault::ResetsMidResponse => {
                // The head was already on its way: the caller sees the body cut off
                // (an error, never a complete-looking short body), or a 502 if the reset
                // came first.
                assert!(
                    flaky.status == StatusCode::BAD_GATEWAY
                        || (flaky.status == StatusCode::OK && flaky.cut),
                    "{what}: {flaky:?}"
                );
            }
            _ => flaky.expect(status, code, &what),
        }
        assert!(
            flaky.body.contains("flaky") || fault_is_mid_response(fault),
            "{what}: the message names the target: {}",
            flaky.body
        );
    }
    let _ = a;
    payment_ok(&mesh, &what).await;
    mesh.still_serving(&what).await;
    let after = settle_fds(before, 4).await;
    assert!(
        after <= before + 4,
        "{what}: {before} descriptors before {rounds} faults, {after} after"
    );
    mesh.shutdown().await;
}

fn fault_is_mid_response(fault: Fault) -> bool {
    matches!(fault, Fault::ResetsMidResponse)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_the_other_pbc_is_served() {
    let _one = SERIAL.lock().await;
    check_fault(Fault::Down, StatusCode::BAD_GATEWAY, "UpstreamUnavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_connections_is_502() {
    let _one = SERIAL.lock().await;
    check_fault(
        Fault::Refuses,
        StatusCode::BAD_GATEWAY,
        "UpstreamUnavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_resetting_before_answering_is_502() {
    let _one = SERIAL.lock().await;
    check_fault(
        Fault::ResetsBeforeAnswering,
        StatusCode::BAD_GATEWAY,
        "UpstreamUnavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_resetting_mid_response_cuts_the_body_off() {
    let _one = SERIAL.lock().await;
    check_fault(Fault::ResetsMidResponse, StatusCode::OK, "").await;
    // And the caller can tell: over a raw connection, the response is cut short of its
    // Content-Length (or chunked without the last chunk) and the connection closed.
    let mesh = mesh_with(Fault::ResetsMidResponse).await;
    let mut req = get(&mesh, "/flaky/things/1");
    req.headers_mut()
        .insert("connection", "close".parse().unwrap());
    let mut tls = mesh.tls_connect(&[b"http/1.1"]).await;
    mesh::write_lossy(&mut tls, &mesh::raw_head(&req)).await;
    let got = mesh::read_to_close(&mut tls).await;
    let text = String::from_utf8_lossy(&got);
    let head_end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
    let head = text[..head_end].to_ascii_lowercase();
    if head.starts_with("http/1.1 200") {
        let body = &got[head_end..];
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            assert!(body.len() < len.trim().parse().unwrap(), "{head}");
        } else {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            assert!(
                !body.ends_with(b"0\r\n\r\n"),
                "a cut-off body ended like a complete one"
            );
        }
    } else {
        assert!(head.starts_with("http/1.1 502"), "{head}");
    }
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_the_response_timeout_is_504() {
    let _one = SERIAL.lock().await;
    check_fault(
        Fault::Silent,
        StatusCode::GATEWAY_TIMEOUT,
        "UpstreamTimeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_with_an_untrusted_certificate_is_502() {
    let _one = SERIAL.lock().await;
    check_fault(
        Fault::Untrusted,
        StatusCode::BAD_GATEWAY,
        "UpstreamUnavailable",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Reloads of half-written files

fn reloadable(mesh: &Mesh, what: &str) -> Arc<dyn Reload> {
    mesh.running()
        .gateway
        .reloadables()
        .into_iter()
        .find(|r| r.what() == what)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_rules_and_credentials_files_keep_the_old_version() {
    let _one = SERIAL.lock().await;
    let mesh = Mesh::start("halfwritten", Options::default()).await;
    let delete = |m: &Mesh| {
        signed(
            CHECKOUT,
            "DELETE",
            &m.url("/order/orders/1"),
            b"",
            SystemTime::now(),
            REGION,
        )
    };
    let check_old_matrix = |what: &'static str| {
        let mesh = &mesh;
        async move {
            mesh.still_serving(what).await;
            let a = mesh.send(delete(mesh)).await;
            a.expect(StatusCode::FORBIDDEN, "AccessDenied", what);
            assert!(a.body.contains("no-order-deletes"), "{what}: {}", a.body);
        }
    };
    check_old_matrix("start").await;
    let rules = reloadable(&mesh, "rules");
    let creds = reloadable(&mesh, "credentials");
    let rules_path = mesh.path("rules.toml");
    let creds_path = mesh.path("credentials.toml");
    let full_rules = std::fs::read_to_string(&rules_path).unwrap();
    let full_creds = std::fs::read_to_string(&creds_path).unwrap();

    // 1. The rules cut mid-table, in place (not a syntax error only by luck: cut inside a
    //    string): refused on SIGHUP and on polls; the old matrix keeps answering.
    let cut = full_rules.find("checkout-calls-payment").unwrap() + 8;
    std::fs::write(&rules_path, &full_rules[..cut]).unwrap();
    assert!(matches!(rules.check_and_log(true), Outcome::Refused(_)));
    check_old_matrix("rules cut mid-string, SIGHUP").await;
    std::fs::write(&rules_path, &full_rules[..cut - 3]).unwrap();
    assert_eq!(rules.check_and_log(false), Outcome::Unchanged);
    assert!(matches!(rules.check_and_log(false), Outcome::Refused(_)));
    check_old_matrix("rules cut mid-string, polled").await;

    // 2. Cut before its deny (a valid file that would allow DELETE... if the deny were
    //    the only thing in the way): a poll that catches it half-written does not load it
    //    when the writer finishes before the next poll.
    let before_deny = full_rules.find("[[deny]]").unwrap();
    let half = full_rules[..before_deny].replace(
        "methods = [\"GET\", \"POST\", \"PUT\"]",
        "methods = [\"GET\", \"POST\", \"PUT\", \"DELETE\"]",
    );
    std::fs::write(&rules_path, &half).unwrap();
    assert_eq!(rules.check_and_log(false), Outcome::Unchanged);
    std::fs::write(&rules_path, &full_rules).unwrap();
    let outcome = rules.check_and_log(false);
    assert!(
        matches!(outcome, Outcome::Unchanged | Outcome::Reloaded),
        "{outcome:?}"
    );
    check_old_matrix("rules caught before the deny").await;

    // 3. Credentials cut in the middle of a secret: refused; the old keys keep working,
    //    and the refusal does not quote the secret.
    let cut = full_creds.find("demo+checkout").unwrap() + 10;
    std::fs::write(&creds_path, &full_creds[..cut]).unwrap();
    match creds.check_and_log(true) {
        Outcome::Refused(e) => assert!(!e.contains(&CHECKOUT.1[..10]), "{e}"),
        other => panic!("{other:?}"),
    }
    check_old_matrix("credentials cut mid-secret").await;
    // Cut after the first credential (valid, but missing catalogue): polled, caught once
    // and completed before the next poll, catalogue is still known.
    let second = full_creds.rfind("[[credential]]").unwrap();
    std::fs::write(&creds_path, &full_creds[..second]).unwrap();
    assert_eq!(creds.check_and_log(false), Outcome::Unchanged);
    std::fs::write(&creds_path, &full_creds).unwrap();
    let _ = creds.check_and_log(false);
    let a = mesh
        .send(signed(
            mesh::CATALOGUE,
            "GET",
            &mesh.url("/order/orders/1"),
            b"",
            SystemTime::now(),
            REGION,
        ))
        .await;
    // Known (so the matrix decides: catalogue may not call order), not InvalidClientTokenId.
    a.expect(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "catalogue after the cut",
    );
    // Empty files, as a truncating writer leaves them for a moment: a poll that sees
    // one and then the whole file again keeps the running version.
    for (r, path, full) in [
        (&rules, &rules_path, &full_rules),
        (&creds, &creds_path, &full_creds),
    ] {
        std::fs::write(path, "").unwrap();
        assert_eq!(r.check_and_log(false), Outcome::Unchanged, "{}", r.what());
        std::fs::write(path, full).unwrap();
        let o = r.check_and_log(false);
        assert!(
            matches!(o, Outcome::Unchanged | Outcome::Reloaded),
            "{}: {o:?}",
            r.what()
        );
    }
    check_old_matrix("empty files").await;
    mesh.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// SIGTERM under load, against the real binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_every_accepted_request_and_exits_0() {
    let _one = SERIAL.lock().await;
    let dir = mesh::temp_dir("sigterm");
    let ca = Ca::new("sigterm CA");
    let order = mesh::recording_upstream(&ca, "order").await;
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.join("rules.toml"), mesh::RULES).unwrap();
    std::fs::write(dir.join("credentials.toml"), mesh::CREDENTIALS).unwrap();
    std::fs::write(dir.join("catalogue.secret"), mesh::CATALOGUE.1).unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            r#"[listen]
addr = "127.0.0.1:0"
plain_http = true

[admin]
addr = "127.0.0.1:0"

[limits]
drain_timeout_ms = 20000

[sigv4]
regions = ["{REGION}"]
services = ["{SERVICE}"]

[identity]
credentials_file = "credentials.toml"

[rules]
file = "rules.toml"

[log]
format = "json"

[audit]
sink = "off"

[[target]]
name = "order"
upstream = "https://{}"
path_prefix = "/order"
ca_bundle = "ca.pem"
"#,
            order.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(dir.join("gateway.toml"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "no listening line"
            );
            if line.contains("gateway listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                break v["addr"].as_str().unwrap().parse().unwrap();
            }
        }
    };
    // Keep reading the log so the child never blocks on a full pipe.
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });

    // Clients that each open a connection, write a whole signed request (Connection:
    // close), note whether that happened before the signal, and read the answer.
    let signalled = Arc::new(AtomicBool::new(false));
    let written_before = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let signalled = Arc::clone(&signalled);
        let written_before = Arc::clone(&written_before);
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0.. {
                let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                    break; // no longer accepting
                };
                let mut req = signed(
                    CHECKOUT,
                    "GET",
                    &format!("http://{addr}/order/slow/{}", 200 + (c * 37 + i * 11) % 400),
                    b"",
                    SystemTime::now(),
                    REGION,
                );
                req.headers_mut()
                    .insert("connection", "close".parse().unwrap());
                if tcp.write_all(&mesh::raw_head(&req)).await.is_err() {
                    continue;
                }
                let before = !signalled.load(Ordering::SeqCst);
                if before {
                    written_before.fetch_add(1, Ordering::SeqCst);
                }
                let mut got = Vec::new();
                let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut got)).await;
                let result = match read {
                    Ok(Ok(_)) => String::from_utf8_lossy(&got).into_owned(),
                    Ok(Err(e)) => format!("error: {e}"),
                    Err(_) => "no answer".to_string(),
                };
                outcomes.push((before, result));
                if !before {
                    break;
                }
            }
            outcomes
        }));
    }
    // Let the load build up (requests in flight at the slow upstream), then SIGTERM.
    for _ in 0..200 {
        if order.requests().len() >= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signalled.store(true, Ordering::SeqCst);
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut accepted = 0;
    for c in clients {
        for (before, result) in c.await.unwrap() {
            if before {
                accepted += 1;
                assert!(
                    result.starts_with("HTTP/1.1 200"),
                    "a request written before SIGTERM did not complete normally: {result}"
                );
                assert!(result.contains("\"upstream\":\"order\""), "{result}");
            } else {
                // Written after the signal: refused, reset, or served; never a 5xx.
                assert!(
                    !result.starts_with("HTTP/1.1 5"),
                    "a request during shutdown got a 5xx: {result}"
                );
            }
        }
    }
    let log = log.join().unwrap();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(accepted >= 16, "only {accepted} requests before the signal");
    assert_eq!(accepted, written_before.load(Ordering::SeqCst));
    assert!(!log.contains(CHECKOUT.1), "a secret in the log");
    let _ = std::fs::remove_dir_all(&dir);
}
