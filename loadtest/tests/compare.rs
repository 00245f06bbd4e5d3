//! `loadtest compare` end to end, through the real binary: nginx (upstream and reverse
//! proxy) and the real gateway binary on loopback, a short run per mode. No timing
//! assertions: only that every target answered, every response was as expected, and
//! the report says so.
//!
//! Needs nginx (`apt-get install nginx-light`) and the gateway binary of the same build
//! profile (`cargo build -p gateway`; `cargo test --workspace` builds it). Without them
//! the tests are skipped with a note, or fail when `CI` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One comparison at a time: they share two cores with everything else.
static SERIAL: Mutex<()> = Mutex::new(());

fn loadtest() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadtest"))
}

/// The gateway binary and nginx, or `None` (skip) when one is missing outside CI.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let gateway = loadtest()
        .parent()
        .unwrap()
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    let nginx = loadtest::compare::find_nginx();
    let mut missing = Vec::new();
    if !gateway.is_file() {
        missing.push(format!(
            "the gateway binary {} (build it with `cargo build -p gateway`)",
            gateway.display()
        ));
    }
    let nginx_runs = Command::new(&nginx)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nginx_runs {
        missing.push("nginx (apt-get install nginx-light)".to_string());
    }
    if missing.is_empty() {
        return Some((gateway, nginx));
    }
    let reason = format!("loadtest compare needs {}", missing.join(" and "));
    if std::env::var_os("CI").is_some() {
        panic!("{reason}");
    }
    eprintln!("skipping: {reason}");
    None
}

/// Runs `loadtest compare ARGS` (at most 3 minutes); returns its exit code and output.
fn compare(args: &[&str], gateway: &Path, nginx: &Path) -> (i32, String) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let stdout = out_dir.join(format!("compare-{}-{n}.out", std::process::id()));
    let stderr = stdout.with_extension("err");
    let mut child = Command::new(loadtest())
        .arg("compare")
        .arg("--gateway-bin")
        .arg(gateway)
        .arg("--nginx")
        .arg(nginx)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SIGTERM first: loadtest then stops nginx and the gateway (SIGKILL would
            // leave them running, in their own process groups).
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let grace = Instant::now() + Duration::from_secs(20);
            while Instant::now() < grace && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadtest compare {args:?} did not finish in 3 minutes:\n{}",
                std::fs::read_to_string(&stdout).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text =
        std::fs::read_to_string(&stdout).unwrap() + &std::fs::read_to_string(&stderr).unwrap();
    let _ = std::fs::remove_file(&stdout);
    let _ = std::fs::remove_file(&stderr);
    (status.code().unwrap_or(-1), text)
}

fn json_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.json", std::process::id()))
}

/// A short comparison with `extra` flags: three targets, each with throughput and every
/// response as expected, in the text and in the JSON.
fn short_comparison(name: &str, extra: &[&str]) {
    let Some((gateway, nginx)) = prerequisites() else {
        return;
    };
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let json = json_path(name);
    let plot = json.with_extension("svg");
    let mut args = vec![
        "--rounds",
        "2",
        "--round",
        "1s",
        "--warmup",
        "200ms",
        "--concurrency",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out) = compare(&args, &gateway, &nginx);
    assert_eq!(code, 0, "loadtest compare {args:?} failed:\n{out}");
    for line in [
        "round 1/2  direct",
        "round 1/2  nginx",
        "round 2/2  gateway",
        "throughput  gateway / nginx",
        "all responses as expected: yes",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["all_expected"], true, "{report:#}");
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["direct", "nginx", "gateway"], "{out}");
    for t in targets {
        assert!(t["throughput_rps"].as_f64().unwrap() > 0.0, "{t:#}");
        assert!(t["responses"].as_u64().unwrap() > 0, "{t:#}");
        assert_eq!(t["unexpected"], 0, "{t:#}");
        assert_eq!(t["transport_errors"], 0, "{t:#}");
        assert_eq!(t["rounds"], 2, "{t:#}");
    }
    assert_eq!(report["rounds"].as_array().unwrap().len(), 6);
    assert!(
        report["ratios"]["gateway_over_nginx_throughput"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let gw = &report["gateway"];
    assert!(gw["rss_start_kib"].as_u64().unwrap() > 0, "{gw:#}");
    assert!(gw["peak_kib"].as_u64().unwrap() > 0, "{gw:#}");
    // Every request the client got an answer to was counted by the gateway.
    let served = gw["requests_served"].as_u64().unwrap();
    assert!(
        served >= targets[2]["responses"].as_u64().unwrap(),
        "{gw:#}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    let _ = std::fs::remove_file(&plot);
    assert!(svg.contains("<svg"), "{svg}");
}

#[test]
fn compare_over_tls() {
    short_comparison("tls", &[]);
}

#[test]
fn compare_plain_http2_without_audit() {
    short_comparison("plain-h2", &["--plain", "--http2", "--audit", "off"]);
}

#[test]
fn memory_mode_reads_the_gateway() {
    let Some((gateway, nginx)) = prerequisites() else {
        return;
    };
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let json = json_path("memory");
    let args = [
        "--memory",
        "--plain",
        "--requests",
        "1500",
        "--baseline-requests",
        "300",
        "--open-connections",
        "50",
        "--hold",
        "500ms",
        "--concurrency",
        "4",
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, out) = compare(&args, &gateway, &nginx);
    assert_eq!(code, 0, "loadtest compare {args:?} failed:\n{out}");
    assert!(out.contains("RSS growth from"), "{out}");
    assert!(out.contains("with 50 connections open"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["ok"], true, "{report:#}");
    let readings = report["readings"].as_array().unwrap();
    let labels: Vec<&str> = readings
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["start", "baseline", "end", "connections"]);
    assert!(readings[1]["requests"].as_u64().unwrap() >= 300);
    assert!(readings[2]["requests"].as_u64().unwrap() >= 1500);
    for r in readings {
        assert!(r["rss_kib"].as_u64().unwrap() > 0, "{r:#}");
    }
    assert!(report["growth_percent"].as_f64().is_some());
}

#[test]
fn a_missing_gateway_binary_says_how_to_build_it() {
    let Some((_, nginx)) = prerequisites() else {
        return;
    };
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-gateway");
    let (code, out) = compare(&["--rounds", "1", "--round", "100ms"], &missing, &nginx);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cargo build --release -p gateway"), "{out}");
}
