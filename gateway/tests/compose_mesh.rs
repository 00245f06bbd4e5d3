//! docker-compose.yml's mesh without a container engine: the same processes on
//! loopback. `gateway certs` makes the PKI as the `init` service does, four
//! `gateway upstream` processes play the PBC services, `gateway run` serves
//! deploy/compose/gateway.toml (its paths and host names pointed at loopback), and
//! deploy/compose/client.sh — the `client` service's script — makes its example calls
//! with `curl --aws-sigv4` and checks every answer; a real redis-server holds the
//! replay cache and rate limits, as the compose `redis` service does. The image's health check
//! (`gateway healthcheck`) runs against the admin listener.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::temp_dir;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PBCS: [&str; 4] = ["checkout", "order", "catalogue", "payment"];
/// Where docker-compose.yml mounts the `certs` volume.
const CERTS_IN_COMPOSE: &str = "/var/lib/sigv4-gateway/certs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

/// A child process killed (and reaped) when the test ends, however it ends; its
/// standard error is read by a thread and sent line by line.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// The first log line containing `needle` (waiting up to a minute), with what was
    /// logged before it when it never comes.
    fn wait_for(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "{} never logged `{needle}`; it logged:\n{}",
            self.name,
            seen.join("\n")
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=` in a text log line (ANSI colours off).
fn field(line: &str, key: &str) -> String {
    let needle = format!("{key}=");
    let start = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + needle.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn the_compose_mesh_answers_the_client_script_on_loopback() {
    let dir = temp_dir("compose-mesh");
    let certs = dir.join("certs");
    let etc = dir.join("etc");
    std::fs::create_dir_all(etc.join("rules")).unwrap();

    // The init service's command; each name also gets 127.0.0.1, the address it is
    // reached at here instead of its compose service name.
    let mut init = gateway();
    init.args([
        "certs",
        "--out",
        certs.to_str().unwrap(),
        "--assertion-key",
        "--sts-key",
    ]);
    init.arg("gateway=gateway,localhost,127.0.0.1");
    for pbc in PBCS {
        init.arg(format!("{pbc}={pbc},127.0.0.1"));
    }
    let out = init.output().unwrap();
    assert!(out.status.success(), "gateway certs: {out:?}");

    // The gateway's port is chosen first: the upstreams fetch its JWKS and the gateway
    // routes to the upstreams, so one of the two must be known before it listens.
    let gateway_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ca = certs.join("ca.pem");
    let upstreams: Vec<(&str, Proc, String)> = PBCS
        .iter()
        .map(|pbc| {
            let mut cmd = gateway();
            cmd.args(["upstream", "--pbc", pbc, "--listen", "127.0.0.1:0"])
                .arg("--cert")
                .arg(certs.join(format!("{pbc}.pem")))
                .arg("--key")
                .arg(certs.join(format!("{pbc}-key.pem")))
                .arg("--ca")
                .arg(&ca)
                .args([
                    "--jwks-url",
                    &format!("https://127.0.0.1:{gateway_port}/.well-known/jwks.json"),
                    "--issuer",
                    "sigv4-gateway",
                ]);
            let p = Proc::spawn(pbc, cmd);
            let addr = field(&p.wait_for("upstream listening"), "addr");
            (*pbc, p, addr)
        })
        .collect();

    // deploy/compose/gateway.toml as mounted at /etc/sigv4-gateway, pointed at loopback.
    let mut config = std::fs::read_to_string(repo().join("deploy/compose/gateway.toml")).unwrap();
    for needle in [
        "addr = \"0.0.0.0:8443\"",
        "addr = \"0.0.0.0:9090\"",
        CERTS_IN_COMPOSE,
    ] {
        assert!(
            config.contains(needle),
            "deploy/compose/gateway.toml no longer has `{needle}`"
        );
    }
    config = config
        .replace(
            "addr = \"0.0.0.0:8443\"",
            &format!("addr = \"127.0.0.1:{gateway_port}\""),
        )
        .replace("addr = \"0.0.0.0:9090\"", "addr = \"127.0.0.1:0\"")
        .replace(CERTS_IN_COMPOSE, certs.to_str().unwrap());
    // The compose `redis` service: a real redis-server here, as the replay cache and
    // the rate limits use it.
    let redis = common::redis::Redis::start(&dir, &["--maxmemory-policy", "noeviction"]);
    let compose_redis = "redis://redis:6379/0";
    assert!(
        config.contains(compose_redis),
        "no `{compose_redis}` in the compose config"
    );
    config = config.replace(
        compose_redis,
        &format!("redis://127.0.0.1:{}/0", redis.port),
    );
    for (pbc, _, addr) in &upstreams {
        let compose_url = format!("https://{pbc}:8443");
        assert!(
            config.contains(&compose_url),
            "no `{compose_url}` in the compose config"
        );
        config = config.replace(&compose_url, &format!("https://{addr}"));
    }
    std::fs::write(etc.join("gateway.toml"), config).unwrap();
    std::fs::copy(
        repo().join("deploy/compose/credentials.toml"),
        etc.join("credentials.toml"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("examples/rules/commerce.toml"),
        etc.join("rules/commerce.toml"),
    )
    .unwrap();

    let check = gateway()
        .arg("check-config")
        .arg(etc.join("gateway.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let mut run = gateway();
    run.arg("run").arg("--config").arg(etc.join("gateway.toml"));
    let gw = Proc::spawn("gateway", run);
    let listening = gw.wait_for("gateway listening");
    let admin = field(&listening, "admin_addr");
    for (_, p, _) in &upstreams {
        p.wait_for("upstream serving");
    }

    // The image's HEALTHCHECK, and compose's readiness check.
    for path in ["healthz", "readyz"] {
        let hc = gateway()
            .args(["healthcheck", "--url", &format!("http://{admin}/{path}")])
            .output()
            .unwrap();
        assert!(hc.status.success(), "healthcheck /{path}: {hc:?}");
    }

    let client = Command::new("sh")
        .arg(repo().join("deploy/compose/client.sh"))
        .env("GATEWAY_URL", format!("https://127.0.0.1:{gateway_port}"))
        .env("GATEWAY_CA", &ca)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(client.status.success(), "client.sh:\n{report}");
    assert!(
        report.contains("all calls got the expected answer"),
        "{report}"
    );
    // The allowed call reached the order service with a verified assertion.
    assert!(report.contains("\"assertion_verified\":true"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");

    drop(gw);
    drop(upstreams);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
