//! Smoke runs against `gateway demo` started in-process (a few seconds each; the long
//! runs are not part of the test suite): examples/loadtest/demo.toml with its STS
//! session, wrong-PBC and deny-rule routes and its tampered and expired shares, over
//! TLS with the demo CA, HTTP/1.1 closed loop and HTTP/2 open loop; then the real
//! `loadtest` binary with `--json` and `--plot`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use gateway::demo::{self, Demo, Options};
use loadtest::engine::{self, Mode, RunSpec, Target};
use loadtest::scenario::Scenario;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "loadtest-demo-{tag}-{}-{}",
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

fn scenario_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/loadtest/demo.toml")
}

fn target(demo: &Demo, http2: bool) -> Target {
    Target {
        name: "gateway demo".into(),
        base_url: demo.url().to_string(),
        ca_file: Some(demo.ca_path().to_path_buf()),
        http2,
        region: demo::REGION.into(),
        service: demo::SERVICE.into(),
    }
}

/// Every route of the scenario and both deny shares got responses, all as expected,
/// and the deny paths' codes were counted.
fn assert_every_path_exercised(report: &loadtest::Report, scenario: &Scenario) {
    let text = report.render_text();
    assert!(report.ok(), "{text}");
    assert_eq!(report.unexpected, 0, "{text}");
    for r in &scenario.routes {
        let c = &report.routes[&r.name];
        assert!(c.responses > 0, "route {} got no response: {text}", r.name);
        assert_eq!(c.expected, c.responses, "{text}");
    }
    for share in ["tampered", "expired"] {
        assert!(report.routes[share].expected > 0, "{share}: {text}");
    }
    for code in [
        "AccessDenied",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
    ] {
        assert!(
            report.codes.get(code).copied().unwrap_or(0) > 0,
            "{code}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario_against_gateway_demo() {
    let dir = TempDir::new("engine");
    let demo = start_demo(&dir).await;
    let mut scenario = Scenario::load(&scenario_path()).unwrap();
    assert!(
        scenario
            .credentials
            .iter()
            .any(|c| matches!(c.source, loadtest::scenario::CredentialSource::Sts(_)))
    );
    assert!(scenario.deny.tampered > 0.0 && scenario.deny.expired > 0.0);
    // A short run of a debug build sends a few hundred requests: even out the weights
    // and raise the deny shares so every path surely gets some.
    for r in &mut scenario.routes {
        r.weight = 1;
    }
    scenario.deny.tampered = 0.06;
    scenario.deny.expired = 0.06;

    // HTTP/1.1, closed loop: 8 connections, 3 s.
    let spec = RunSpec {
        target: target(&demo, false),
        mode: Mode::Closed { concurrency: 8 },
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        connections: 8,
        progress: false,
    };
    let report = engine::run(&spec, &scenario).await.unwrap();
    println!("{}", report.render_text());
    assert_every_path_exercised(&report, &scenario);
    assert_eq!(report.protocol, "HTTP/1.1");
    assert!(report.signing_us_per_request > 0.0);

    // HTTP/2, open loop at a modest rate over 2 connections.
    let spec = RunSpec {
        target: target(&demo, true),
        mode: Mode::Open { rate: 150 },
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(300),
        connections: 2,
        progress: false,
    };
    let report = engine::run(&spec, &scenario).await.unwrap();
    println!("{}", report.render_text());
    assert_every_path_exercised(&report, &scenario);
    assert_eq!(report.schedule.unwrap().sent, 300);

    // The gateway audited the denials (the audit log names their codes).
    demo.shutdown().await;
    let audit = std::fs::read_to_string(dir.0.join("audit.log")).unwrap_or_default();
    for code in [
        "AccessDenied",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
    ] {
        assert!(audit.contains(code), "{code} not in the audit log");
    }
    assert!(audit.contains("\"eventName\":\"AssumeRole\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loadtest_binary_writes_json_and_svg() {
    let dir = TempDir::new("binary");
    let demo = start_demo(&dir).await;
    let json = dir.0.join("report.json");
    let svg = dir.0.join("latency.svg");
    let args: Vec<String> = vec![
        "run".into(),
        "--scenario".into(),
        scenario_path().display().to_string(),
        "--target".into(),
        demo.url().to_string(),
        "--ca".into(),
        demo.ca_path().display().to_string(),
        "--concurrency".into(),
        "4".into(),
        "--duration".into(),
        "2s".into(),
        "--warmup".into(),
        "300ms".into(),
        "--json".into(),
        json.display().to_string(),
        "--plot".into(),
        svg.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains("all responses as expected: yes"),
        "{stdout}"
    );
    assert!(stdout.contains("p99.9"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["all_expected"], true, "{report}");
    assert_eq!(report["unexpected"], 0);
    assert!(report["requests"].as_u64().unwrap() > 0);
    assert!(report["latency_us"]["p99"].as_u64().unwrap() > 0);
    assert!(report["codes"]["AccessDenied"].as_u64().unwrap() > 0);
    assert_eq!(report["mode"]["kind"], "closed");
    let drawing = std::fs::read_to_string(&svg).unwrap();
    assert!(drawing.starts_with("<svg"), "{drawing}");
    assert!(drawing.contains("<polyline"));
    demo.shutdown().await;
}

#[test]
fn the_binary_explains_a_bad_scenario() {
    let dir = TempDir::new("bad");
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "region = \"eu-west-1\"\nservice = \"execute-api\"\n\n[[route]]\nname = \"r\"\npath = \"/x\"\ncredential = \"nobody\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "--scenario"])
        .arg(&bad)
        .args(["--target", "http://127.0.0.1:9", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:7: credential `nobody` is not a [[credential]]"),
        "{stderr}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Examples:") && help.contains("--rate"),
        "{help}"
    );
}
