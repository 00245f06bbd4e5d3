//! The engine against small local servers: the open-loop schedule holds (counts, not
//! speed: the machine is shared), closed loop keeps its connections, HTTP/2 works, and
//! the report counts a 403 to an allowed request as an error while a denial that was
//! expected is a success.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use loadtest::engine::{self, Mode, RunSpec, Target};
use loadtest::scenario::{Credentials, Expect, Scenario};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Instant>,
    versions: Vec<http::Version>,
    unsigned: usize,
    connections: usize,
}

/// A plain-HTTP server (HTTP/1.1 and HTTP/2 prior knowledge) on 127.0.0.1:0 that reads
/// the body and answers with `answer(path)`.
async fn server(
    answer: fn(&str) -> (StatusCode, Option<&'static str>),
) -> (SocketAddr, Arc<Mutex<Seen>>) {
    server_taking(answer, Duration::ZERO).await
}

/// [`server`], each answer taking at least `delay` (and so, over one HTTP/1.1
/// connection, at most one answer per `delay`).
async fn server_taking(
    answer: fn(&str) -> (StatusCode, Option<&'static str>),
    delay: Duration,
) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            seen2.lock().unwrap().connections += 1;
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        {
                            let mut s = seen.lock().unwrap();
                            s.arrivals.push(Instant::now());
                            s.versions.push(req.version());
                            if !req.headers().contains_key("authorization") {
                                s.unsigned += 1;
                            }
                        }
                        let path = req.uri().path().to_string();
                        let _ = req.into_body().collect().await;
                        tokio::time::sleep(delay).await;
                        let (status, code) = answer(&path);
                        let mut resp = Response::builder().status(status);
                        if let Some(code) = code {
                            resp = resp.header("x-amzn-ErrorType", code);
                        }
                        Ok::<_, std::convert::Infallible>(
                            resp.body(Full::new(Bytes::from_static(b"{}"))).unwrap(),
                        )
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn ok_answer(_: &str) -> (StatusCode, Option<&'static str>) {
    (StatusCode::OK, None)
}

fn forbidden(_: &str) -> (StatusCode, Option<&'static str>) {
    (StatusCode::FORBIDDEN, Some("AccessDenied"))
}

fn target(addr: SocketAddr, http2: bool) -> Target {
    Target {
        name: "local".into(),
        base_url: format!("http://{addr}"),
        ca_file: None,
        http2,
        region: "eu-west-1".into(),
        service: "execute-api".into(),
    }
}

fn key() -> Credentials {
    Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_its_schedule() {
    let (addr, seen) = server(ok_answer).await;
    let scenario = Scenario::single("POST", "/order/orders", 100, key());
    let rate = 2000;
    let spec = RunSpec {
        target: target(addr, false),
        mode: Mode::Open { rate },
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        connections: 32,
        progress: false,
    };
    let started = Instant::now();
    let report = engine::run(&spec, &scenario).await.unwrap();
    println!("{}", report.render_text());

    // The schedule: exactly rate × duration intended sends in the measured window, all
    // of them sent and answered.
    let s = report.schedule.expect("an open-loop report has a schedule");
    assert!(s.scheduled.abs_diff(rate * 2) <= 1, "{s:?}");
    assert_eq!(s.sent, s.scheduled, "{s:?}");
    assert_eq!(report.not_sent, 0);
    assert_eq!(report.requests, s.sent);
    assert!(report.ok(), "{}", report.render_text());
    assert_eq!(report.statuses.get(&200), Some(&report.requests));

    // The server saw the warmup and the measured requests, and none before its time:
    // no request is sent before it is due, so the k-th arrival (in time order) comes no
    // sooner than k / rate after the run began (no burst at the start). Counts and
    // causality only: on a loaded machine sends may be late, never early.
    let seen = seen.lock().unwrap();
    let expected_total = rate * 5 / 2;
    assert!(
        (seen.arrivals.len() as u64).abs_diff(expected_total) <= expected_total * 3 / 100,
        "{} arrivals, expected {expected_total}",
        seen.arrivals.len()
    );
    let mut arrivals = seen.arrivals.clone();
    arrivals.sort();
    for (k, at) in arrivals.iter().enumerate() {
        let due = started + Duration::from_nanos(k as u64 * 1_000_000_000 / rate);
        assert!(*at >= due, "arrival {k} came before its due time");
    }
    assert_eq!(seen.unsigned, 0, "every request is signed");
    assert!(seen.connections <= 32, "{} connections", seen.connections);
}

/// Past the target's capacity, the open loop's backlog is answered after the window:
/// those answers are responses (counted, with their latency) but not throughput, which
/// is what arrived within the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_throughput_is_what_the_target_answered_in_the_window() {
    // One HTTP/1.1 connection to a server taking 10 ms an answer: at most 100 answers
    // a second, whatever the machine; 200 a second are offered.
    let (addr, _) = server_taking(ok_answer, Duration::from_millis(10)).await;
    let spec = RunSpec {
        target: target(addr, false),
        mode: Mode::Open { rate: 200 },
        duration: Duration::from_millis(500),
        warmup: Duration::ZERO,
        connections: 1,
        progress: false,
    };
    let report = engine::run(&spec, &Scenario::single("GET", "/x", 0, key()))
        .await
        .unwrap();
    let text = report.render_text();
    assert!(report.ok(), "{text}");
    // Every request sent in the window was answered (most of them after it) ...
    assert_eq!(
        report.responses,
        report.schedule.unwrap().scheduled,
        "{text}"
    );
    assert!(report.answered_in_window < report.responses, "{text}");
    // ... but the target answered at most 100 a second (not the 200 offered).
    assert!(report.throughput_rps <= 102.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_and_http2() {
    let (addr, seen) = server(ok_answer).await;
    let scenario = Scenario::single("GET", "/order/orders/1", 0, key());
    let spec = RunSpec {
        target: target(addr, false),
        mode: Mode::Closed { concurrency: 4 },
        duration: Duration::from_millis(700),
        warmup: Duration::from_millis(200),
        connections: 4,
        progress: false,
    };
    let report = engine::run(&spec, &scenario).await.unwrap();
    assert!(report.ok(), "{}", report.render_text());
    assert!(report.requests > 0);
    assert_eq!(report.connections, 4);
    assert_eq!(seen.lock().unwrap().connections, 4);
    assert!(report.latency_us.p50 > 0 && report.latency_us.max >= report.latency_us.p99);

    let (addr, seen) = server(ok_answer).await;
    let spec = RunSpec {
        target: target(addr, true),
        connections: 2,
        ..spec
    };
    let report = engine::run(&spec, &scenario).await.unwrap();
    assert!(report.ok(), "{}", report.render_text());
    assert_eq!(report.protocol, "HTTP/2");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.connections, 2);
    assert!(seen.versions.iter().all(|v| *v == http::Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_403_is_an_error() {
    let (addr, _) = server(forbidden).await;
    // An allowed route and a route that expects exactly this denial.
    let mut scenario = Scenario::single("GET", "/order/orders/42", 0, key());
    let mut deny = scenario.routes[0].clone();
    deny.name = "wrong-pbc".into();
    deny.expect = Expect::deny(403, "AccessDenied");
    scenario.routes[0].name = "read-order".into();
    scenario.routes.push(deny);
    let spec = RunSpec {
        target: target(addr, false),
        mode: Mode::Closed { concurrency: 2 },
        duration: Duration::from_millis(500),
        warmup: Duration::ZERO,
        connections: 2,
        progress: false,
    };
    let report = engine::run(&spec, &scenario).await.unwrap();
    let text = report.render_text();
    println!("{text}");
    assert!(report.unexpected > 0, "{text}");
    assert!(!report.ok());
    assert!(!report.all_expected);
    assert!(text.contains("all responses as expected: no"), "{text}");
    let allowed = &report.routes["read-order"];
    assert!(allowed.responses > 0);
    assert_eq!(allowed.unexpected, allowed.responses, "{allowed:?}");
    let denied = &report.routes["wrong-pbc"];
    assert!(denied.responses > 0);
    assert_eq!(denied.expected, denied.responses, "{denied:?}");
    assert_eq!(report.unexpected, allowed.responses);
    assert_eq!(report.expected, denied.responses);
    assert_eq!(report.codes["AccessDenied"], report.responses);
    assert!(report.examples[0].contains("read-order: expected 2xx, got 403 AccessDenied"));

    // Only the denial: every response is the expected one.
    let mut only_deny = scenario.clone();
    only_deny.routes.remove(0);
    let report = engine::run(&spec, &only_deny).await.unwrap();
    assert!(report.ok(), "{}", report.render_text());
    assert!(report.expected > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_an_error_not_a_report() {
    // A port nobody listens on (bound, then closed).
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let spec = RunSpec {
        target: target(addr, false),
        mode: Mode::Closed { concurrency: 1 },
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        connections: 1,
        progress: false,
    };
    let e = engine::run(&spec, &Scenario::single("GET", "/", 0, key()))
        .await
        .unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
}
