//! The real `gateway` binary: `check-config` reports every error with file and line;
//! `run` serves, reloads rules on SIGHUP (refusing a broken file, keeping the old
//! rules), and stops cleanly on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use bytes::Bytes;
use common::{REGION, SERVICE, signed};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const KEY: (&str, &str) = (
    "AKIADEMOCHECKOUT0001",
    "demo+checkout+secret+key+not+for+production",
);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-bin-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const RULES: &str = r#"[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::111122223333:role/CheckoutPBCRole"]

[[pbc]]
name = "order"

[[allow]]
id = "checkout-reads-orders"
caller = "checkout"
target = "order"
methods = ["GET"]
paths = ["/orders/*"]
"#;

/// A plain-HTTP gateway whose one upstream is a closed port: an allowed request is
/// 502 (it got past the matrix), a denied one 403.
fn write_config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    std::fs::write(
        dir.join("credentials.toml"),
        format!(
            "[[credential]]\naccess_key_id = \"{}\"\nrole_arn = \"arn:aws:iam::111122223333:role/CheckoutPBCRole\"\nsecret_env = \"GW_TEST_SECRET\"\n",
            KEY.0
        ),
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        r#"[listen]
addr = "127.0.0.1:0"
plain_http = true

[admin]
addr = "127.0.0.1:0"

[sigv4]
regions = ["{REGION}"]
services = ["{SERVICE}"]

[identity]
credentials_file = "credentials.toml"

[rules]
file = "rules.toml"

[log]
format = "json"

[[target]]
name = "order"
upstream = "http://{closed}"
path_prefix = "/order"
connect_timeout_ms = 500
"#
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn check_config_reports_file_and_line() {
    let dir = temp_dir("check");
    let config = write_config(&dir);
    let out = gateway()
        .arg("check-config")
        .arg(&config)
        .env("GW_TEST_SECRET", KEY.1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("valid (1 targets)"), "{stdout}");

    std::fs::write(
        dir.join("rules.toml"),
        RULES.replace("caller = \"checkout\"", "caller = \"chekout\""),
    )
    .unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[sigv4]", "[sigv4]\nregion = \"x\"");
    std::fs::write(&config, &text).unwrap();
    let out = gateway().arg("check-config").arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("gateway.toml:9: unknown field `region`"),
        "{stdout}"
    );

    // Config fixed; the rules and credentials errors are each reported.
    std::fs::write(&config, text.replace("region = \"x\"\n", "")).unwrap();
    let out = gateway().arg("check-config").arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("rules.toml:10:10"), "{stdout}");
    assert!(
        stdout.contains("GW_TEST_SECRET (secret_env) is not set"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_for_addr(stderr: &mut impl BufRead) -> String {
    let mut line = String::new();
    for _ in 0..200 {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("gateway listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            return v["addr"].as_str().unwrap().to_string();
        }
    }
    panic!("the gateway never said it was listening");
}

fn wait_for_log(stderr: &mut impl BufRead, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "log ended before `{needle}`"
        );
        if line.contains(needle) {
            return line;
        }
    }
}

async fn status(addr: &str) -> StatusCode {
    let req = signed(
        KEY,
        "GET",
        &format!("http://{addr}/order/orders/1"),
        b"",
        SystemTime::now(),
        REGION,
    );
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = temp_dir("run");
    let config = write_config(&dir);
    let mut child = gateway()
        .args(["run", "--config"])
        .arg(&config)
        .env("GW_TEST_SECRET", KEY.1)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = wait_for_addr(&mut stderr);
    let pid = child.id().to_string();
    assert_eq!(
        status(&addr).await,
        StatusCode::BAD_GATEWAY,
        "allowed, upstream down"
    );

    // A broken rules file, then SIGHUP: refused, logged, the old rules keep serving.
    std::fs::write(dir.join("rules.toml"), "[[allow]]\nid = 1\n").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let refused = wait_for_log(&mut stderr, "refused the new version");
    assert!(refused.contains("rules.toml"), "{refused}");
    assert_eq!(status(&addr).await, StatusCode::BAD_GATEWAY);

    // A valid change: GET is no longer allowed.
    std::fs::write(
        dir.join("rules.toml"),
        RULES.replace("[\"GET\"]", "[\"POST\"]"),
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    // SIGHUP reloads credentials too: wait for the rules' line, not the first "reloaded".
    loop {
        let line = wait_for_log(&mut stderr, "reloaded");
        if line.contains("\"what\":\"rules\"") {
            break;
        }
    }
    assert_eq!(status(&addr).await, StatusCode::FORBIDDEN);

    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // Drain the rest of the log: no secret in it.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(!rest.contains(KEY.1) && !refused.contains(KEY.1));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Duration::ZERO;
}
