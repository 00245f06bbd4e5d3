//! The binary's user surface: `--version` says what was built, every command's
//! `--help` has examples, `certs` and `healthcheck` work as the container image uses
//! them, and the minimal production example passes `check-config` once its secrets
//! are in place.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::temp_dir;
use std::path::Path;
use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_names_the_build() {
    let out = gateway(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("gateway {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for field in [
        "commit:",
        "target:",
        "profile:",
        "features:",
        "compiler: rustc",
    ] {
        assert!(text.contains(field), "no `{field}` in:\n{text}");
    }
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit:"))
        .unwrap()
        .trim();
    assert!(!commit.is_empty());
    // `-V` is the one-line form, with the commit.
    let short = stdout(&gateway(&["-V"]));
    assert_eq!(
        short.trim(),
        format!("gateway {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_command_has_help_with_examples() {
    let top = stdout(&gateway(&["--help"]));
    assert!(top.contains("Examples:"), "{top}");
    for command in [
        "run",
        "check-config",
        "demo",
        "certs",
        "upstream",
        "healthcheck",
    ] {
        assert!(top.contains(command), "`{command}` missing from --help");
        let out = gateway(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help failed");
        let text = stdout(&out);
        assert!(
            text.contains("Example") && text.contains(&format!("gateway {command}")),
            "`gateway {command} --help` has no example:\n{text}"
        );
    }
}

#[test]
fn certs_is_idempotent_and_says_what_it_did() {
    let dir = temp_dir("certs");
    let out_dir = dir.join("certs");
    let args = [
        "certs",
        "--out",
        out_dir.to_str().unwrap(),
        "--assertion-key",
        "--sts-key",
        "gateway=gateway,localhost,127.0.0.1",
        "order",
    ];
    let first = gateway(&args);
    assert!(first.status.success(), "{first:?}");
    let text = stdout(&first);
    for f in [
        "ca.pem",
        "ca-key.pem",
        "gateway.pem",
        "gateway-key.pem",
        "order.pem",
        "assertion-key.pem",
        "sts-key",
    ] {
        assert!(
            text.contains(&format!("created {}", out_dir.join(f).display())),
            "{f}: {text}"
        );
    }
    let second = gateway(&args);
    assert!(second.status.success());
    let text = stdout(&second);
    assert!(!text.contains("created"), "{text}");
    assert_eq!(text.lines().count(), 8, "{text}");

    let bad = gateway(&["certs", "--out", out_dir.to_str().unwrap(), "../escape"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("not a usable certificate name"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn healthcheck_exits_by_the_answer() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = gateway(&["healthcheck", "--url", &format!("http://{addr}/healthz")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    // The success path runs against a real admin listener in tests/compose_mesh.rs.
}

/// Copies examples/production, puts secrets and certificates where it expects them,
/// and runs `check-config` on it as an operator would.
#[test]
fn the_production_example_is_valid_once_its_secrets_exist() {
    let dir = temp_dir("prod");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/production");
    for f in ["gateway.toml", "credentials.toml", "rules.toml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let tls = dir.join("tls");
    let secrets = dir.join("secrets");
    let made = gateway(&[
        "certs",
        "--out",
        tls.to_str().unwrap(),
        "gateway=gw.example.internal",
    ]);
    assert!(made.status.success(), "{made:?}");
    std::fs::copy(tls.join("ca.pem"), tls.join("internal-ca.pem")).unwrap();
    let made = gateway(&[
        "certs",
        "--out",
        secrets.to_str().unwrap(),
        "--assertion-key",
        "--sts-key",
    ]);
    assert!(made.status.success(), "{made:?}");
    std::fs::rename(secrets.join("sts-key"), secrets.join("sts-k1")).unwrap();
    std::fs::write(
        secrets.join("checkout"),
        "an-example-secret-for-the-test-only",
    )
    .unwrap();

    let check = |env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args(["check-config", dir.join("gateway.toml").to_str().unwrap()]);
        cmd.env_remove("ORDER_PBC_SECRET");
        if let Some(v) = env {
            cmd.env("ORDER_PBC_SECRET", v);
        }
        cmd.output().unwrap()
    };
    let ok = check(Some("another-example-secret-for-the-test"));
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("valid (2 targets)"), "{}", stdout(&ok));
    // Without the environment variable the credentials file is refused, by name.
    let missing = check(None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stdout(&missing).contains("ORDER_PBC_SECRET"),
        "{}",
        stdout(&missing)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
