//! The harness of the client end-to-end tests: the real `gateway` binary, started as
//! `gateway demo` on loopback, driven by clients this project did not write.
//!
//! - [`Demo::start`] runs `gateway demo --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
//!   --state-dir <temp dir>` as a child process, reads the gateway URL, the CA and the
//!   audit log from what it prints, and kills it when dropped.
//! - [`Reply`] is one HTTP answer, whoever got it (curl, Python, Rust); [`Demo::assert_forwarded`]
//!   and [`Demo::assert_refused`] check it together with the gateway's audit record of
//!   the same request (found by its `x-amzn-RequestId`), which says whether an upstream
//!   ever saw it.
//! - [`python`] finds the Python with botocore and boto3 (`GATEWAY_TEST_PYTHON`, as
//!   `scripts/test` sets it, else `python3`), [`run_python`] runs the scripts in `py/`.
//! - [`Https`] sends `http::Request`s over TLS trusting the demo CA (for the Rust
//!   clients).
//!
//! Failing loudly, with what the gateway printed, is the harness's job: it panics.
//! (Indexing is `serde_json::Value["field"]`, which gives `Null` for a missing field.)
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// The region the demo gateway accepts.
pub const REGION: &str = "eu-west-1";
/// The service the demo gateway accepts for calls to PBCs.
pub const SERVICE: &str = "execute-api";
/// The service STS calls are signed for (`<gateway>/sts`).
pub const STS_SERVICE: &str = "sts";
/// The role checkout may assume through the demo's STS (catalogue may not); its
/// sessions may manage orders and nothing else (rule `checkout-to-order-role`).
pub const STS_ROLE: &str = "arn:aws:iam::111122223333:role/CheckoutToOrderRole";
/// The assumed-role ARN of a session of [`STS_ROLE`] named `session`.
pub fn assumed_role_arn(session: &str) -> String {
    format!("arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/{session}")
}

/// A demo identity: the documented demo keys `gateway demo` loads (never used
/// anywhere else).
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    /// The PBC.
    pub pbc: &'static str,
    /// Its role.
    pub role_arn: &'static str,
    /// Its access key id.
    pub access_key_id: &'static str,
    /// Its secret.
    pub secret: &'static str,
}

/// Checkout: may `GET`/`POST` orders (rule `checkout-manages-orders`) and assume
/// [`STS_ROLE`].
pub const CHECKOUT: Identity = Identity {
    pbc: "checkout",
    role_arn: "arn:aws:iam::111122223333:role/CheckoutPBCRole",
    access_key_id: "AKIADEMOCHECKOUT0001",
    secret: "demo+checkout+secret+key+not+for+production",
};

/// Catalogue: calls nothing (default deny), may not assume [`STS_ROLE`].
pub const CATALOGUE: Identity = Identity {
    pbc: "catalogue",
    role_arn: "arn:aws:iam::111122223333:role/CataloguePBCRole",
    access_key_id: "AKIADEMOCATALOGUE001",
    secret: "demo+catalogue+secret+key+not+for+production",
};

/// The order every allowed call reads (checkout may, catalogue may not).
pub const ORDER_PATH: &str = "/order/orders/42";
/// The rule that lets checkout read it.
pub const ORDER_RULE: &str = "checkout-manages-orders";
/// The rule that lets sessions of [`STS_ROLE`] read it.
pub const SESSION_RULE: &str = "checkout-to-order-role";

// ---------------------------------------------------------------------------------------
// Binaries and scratch directories

/// A binary of this workspace: `$env_var` if set, else `name` in the target profile
/// directory this test runs from (`target/debug/deps/curl-1234` ->
/// `target/debug/name`). `cargo test --workspace --all-targets` builds it first;
/// `cargo test -p client-e2e` alone does not.
pub fn workspace_binary(name: &str, env_var: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the test executable's directory");
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir = dir.parent().expect("the target profile directory");
    }
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the `{name}` binary is not at {}: build it with `cargo build -p {package}` \
         (or set {env_var} to it)",
        bin.display()
    );
    bin
}

/// The gateway binary (`GATEWAY_BIN`, else `target/<profile>/gateway`).
pub fn gateway_bin() -> PathBuf {
    workspace_binary("gateway", "GATEWAY_BIN", "gateway")
}

/// A directory of its own under the system temp dir, removed when dropped (kept, and
/// named on stderr, when the test failed).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/client-e2e-<name>-<pid>-<n>-<nanos>`.
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "client-e2e-{name}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(kept {} for a look)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The demo mesh, as a child process

/// A running `gateway demo` (the real binary): the gateway over TLS, four demo PBC
/// upstreams, the demo keys and allow matrix, its own STS at `/sts`. Killed (and
/// waited for) when dropped.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    url: String,
    ca: PathBuf,
    audit: PathBuf,
    printed: String,
    // Declared last: removed after the child is gone.
    dir: TempDir,
}

impl Demo {
    /// Starts `gateway demo` on 127.0.0.1 port 0 (gateway and admin listener) in a
    /// fresh state directory and waits until it prints its instructions.
    pub fn start(name: &str) -> Demo {
        let dir = TempDir::new(name);
        let state_dir = dir.path().join("state");
        let stderr = std::fs::File::create(dir.path().join("gateway.stderr"))
            .expect("the gateway's stderr file");
        let mut child = Command::new(gateway_bin())
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--state-dir",
            ])
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", gateway_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut demo = Demo {
            child,
            url: String::new(),
            ca: PathBuf::new(),
            audit: PathBuf::new(),
            printed: String::new(),
            dir,
        };
        // Read stdout on a thread, and keep reading it to the end so the child never
        // blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        loop {
            // Only a guard against a hang: the demo is up in well under a second.
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let done = line.contains("Ctrl-C stops the demo");
                    demo.printed.push_str(&line);
                    demo.printed.push('\n');
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    // Stopped (or hung): its exit status says which (`signal: 9` is ours).
                    let _ = demo.child.kill();
                    let status = demo.child.wait().map(|s| s.to_string());
                    panic!(
                        "`gateway demo` did not print its instructions ({e}; it ended with \
                         {status:?}); it printed:\n{}\nstderr:\n{}",
                        demo.printed,
                        demo.stderr()
                    )
                }
            }
        }
        demo.url = demo.printed_field("gateway");
        demo.ca = PathBuf::from(demo.printed_field("CA"));
        demo.audit = PathBuf::from(demo.printed_field("audit log"));
        assert!(
            demo.url.starts_with("https://127.0.0.1:") && !demo.url.ends_with(":0"),
            "{}",
            demo.printed
        );
        assert!(demo.ca.is_file(), "no CA file: {}", demo.printed);
        demo
    }

    /// The first word after `label` on the line of the instructions that starts with it
    /// (`  gateway    https://127.0.0.1:41234   (TLS; ...)`).
    fn printed_field(&self, label: &str) -> String {
        self.printed
            .lines()
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix(label)?;
                rest.starts_with(char::is_whitespace)
                    .then(|| rest.split_whitespace().next())
                    .flatten()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no `{label}` line in what `gateway demo` printed:\n{}",
                    self.printed
                )
            })
            .to_string()
    }

    /// The gateway's base URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `path` on the gateway: `https://127.0.0.1:PORT/path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The gateway's STS endpoint, `https://127.0.0.1:PORT/sts`.
    pub fn sts_url(&self) -> String {
        self.at("/sts")
    }

    /// The demo CA (PEM) the gateway's certificate chains to.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// What `gateway demo` printed.
    pub fn printed(&self) -> &str {
        &self.printed
    }

    /// What the gateway wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.stderr")).unwrap_or_default()
    }

    /// The audit record of the request with id `request_id` (`x-amzn-RequestId`). The
    /// gateway writes it when the response ends, from a writer thread: this waits
    /// until it is in the file.
    pub fn audit_record(&self, request_id: &str) -> Value {
        assert!(!request_id.is_empty(), "no request id to look up");
        // Only a guard against a hang: records land within milliseconds.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.audit).unwrap_or_default();
            let found = log
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["requestID"] == request_id);
            if let Some(record) = found {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "no audit record for request {request_id} in {}:\n{log}",
                self.audit.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that `reply` is an allowed call answered by the upstream `service`: 200,
    /// the upstream verified the gateway's identity assertion naming `caller_arn` and
    /// echoes the gateway's request id, and the audit record says `Allow` by `rule`
    /// with the upstream's 200. Returns the upstream's JSON.
    pub fn assert_forwarded(
        &self,
        reply: &Reply,
        service: &str,
        caller_arn: &str,
        rule: &str,
    ) -> Value {
        assert_eq!(reply.status, 200, "{reply}");
        let seen = reply.json();
        assert_eq!(seen["service"], service, "{reply}");
        assert_eq!(seen["assertion_verified"], true, "{reply}");
        assert_eq!(seen["caller"]["arn"], caller_arn, "{reply}");
        assert_eq!(seen["request_id"], reply.request_id(), "{reply}");
        let record = self.audit_record(reply.request_id());
        assert_eq!(record["decision"], "Allow", "{record}");
        assert_eq!(record["rule"], rule, "{record}");
        assert_eq!(record["upstreamStatus"], 200, "{record}");
        assert!(record.get("errorCode").is_none(), "{record}");
        seen
    }

    /// Asserts that `reply` is the gateway's refusal with `status` and the AWS error
    /// `code` (in `x-amzn-ErrorType` and the JSON body), and that no upstream saw the
    /// request: its audit record is a `Deny` with that code and no upstream status.
    /// Returns the audit record.
    pub fn assert_refused(&self, reply: &Reply, status: u16, code: &str) -> Value {
        reply.assert_error(status, code);
        let record = self.audit_record(reply.request_id());
        assert_refused_record(&record, status, code);
        record
    }
}

/// Asserts an audit record of a request refused before any upstream: `Deny`, `code`,
/// `status`, no `upstreamStatus`.
pub fn assert_refused_record(record: &Value, status: u16, code: &str) {
    assert_eq!(record["decision"], "Deny", "{record}");
    assert_eq!(record["errorCode"], code, "{record}");
    assert_eq!(record["status"], status, "{record}");
    assert!(
        record.get("upstreamStatus").is_none(),
        "a refused request reached an upstream: {record}"
    );
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "gateway demo at {} (state in {}); the end of its log:",
                self.url,
                self.dir.path().display()
            );
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replies

/// One HTTP answer, as any client got it.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        write!(f, "\n{}", self.body)
    }
}

impl Reply {
    /// Parses `curl -i` output: the status line, headers and body (after any `1xx`
    /// interim responses).
    pub fn from_curl(raw: &str) -> Reply {
        let mut rest = raw;
        loop {
            let (head, body) = rest
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("not an HTTP response:\n{raw}"));
            let mut lines = head.lines();
            let status: u16 = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status line in:\n{raw}"));
            if (100..200).contains(&status) {
                rest = body;
                continue;
            }
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Reply {
                status,
                headers,
                body: body.to_string(),
            };
        }
    }

    /// A reply the Python scripts print: `{"status": 200, "headers": {...}, "body": "..."}`.
    pub fn from_json(v: &Value) -> Reply {
        Reply {
            status: v["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or_else(|| panic!("no status in {v}")),
            headers: v["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            (
                                k.to_ascii_lowercase(),
                                v.as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: v["body"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The gateway's request id (`x-amzn-RequestId`); every answer has one.
    pub fn request_id(&self) -> &str {
        self.header("x-amzn-requestid")
            .unwrap_or_else(|| panic!("no x-amzn-RequestId in:\n{self}"))
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}):\n{self}"))
    }

    /// Asserts the gateway's error answer: `status`, `x-amzn-ErrorType: code`, and the
    /// JSON body `{"code", "message", "requestId"}` with the same code and request id.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(self.header("x-amzn-errortype"), Some(code), "{self}");
        let body = self.json();
        assert_eq!(body["code"], code, "{self}");
        assert_eq!(body["requestId"], self.request_id(), "{self}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self}"
        );
    }
}

/// The text of `<tag>...</tag>` in an STS XML answer.
pub fn xml_field<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(value, _)| value)
        .unwrap_or_else(|| panic!("no <{tag}> in:\n{xml}"))
}

/// Changes the character at `at` to another base64 character: a tampered token.
pub fn flip_char(s: &str, at: usize) -> String {
    s.char_indices()
        .map(|(i, c)| match (i == at, c) {
            (false, c) => c,
            (true, 'A') => 'B',
            (true, _) => 'A',
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Python (botocore, boto3)

/// The Python with botocore and boto3: `GATEWAY_TEST_PYTHON` (`scripts/test` sets it
/// to a virtualenv it fills from PyPI), else `python3`. Fails, never skips, when
/// `modules` cannot be imported.
pub fn python(modules: &[&str]) -> String {
    let (py, from_env) = match std::env::var("GATEWAY_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => (p, true),
        _ => ("python3".to_string(), false),
    };
    let import = format!("import {}", modules.join(", "));
    let out = Command::new(&py).args(["-c", &import]).output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let why = match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        let whose = if from_env {
            format!("GATEWAY_TEST_PYTHON={py}")
        } else {
            "python3 (GATEWAY_TEST_PYTHON is not set)".to_string()
        };
        panic!(
            "{whose} cannot `{import}`: {why}\nRun scripts/test (it installs boto3 into a \
             virtualenv and sets GATEWAY_TEST_PYTHON), or set GATEWAY_TEST_PYTHON to a \
             Python with boto3, e.g.\n  python3 -m venv /tmp/pyv && /tmp/pyv/bin/pip install \
             boto3\n  GATEWAY_TEST_PYTHON=/tmp/pyv/bin/python cargo test -p client-e2e"
        );
    }
    py
}

/// A script in this crate's `py/` directory.
pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

/// Runs `python script args...` with `env`; returns its output whatever its exit status.
pub fn run_python(python: &str, script: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(python);
    cmd.arg(script).args(args);
    without_aws_environment(&mut cmd)
        .envs(env.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} {}: {e}", script.display()))
}

/// `cmd` without the developer's own AWS configuration: no `AWS_*` credentials,
/// profile, CA bundle or endpoint from the environment, no config files, no instance
/// metadata look-ups.
pub fn without_aws_environment(cmd: &mut Command) -> &mut Command {
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CA_BUNDLE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// Runs a script in `py/` that prints one JSON object, and returns it (the script must
/// succeed).
pub fn run_python_json(python: &str, script: &str, args: &[&str]) -> Value {
    let out = run_python(python, &py_script(script), args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script}: not JSON ({e}):\n{stdout}"))
}

// ---------------------------------------------------------------------------------------
// Rust: sending requests over TLS

/// An HTTPS client (hyper, rustls with ring, HTTP/1.1) trusting only the demo CA.
#[derive(Clone, Debug)]
pub struct Https {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl Https {
    /// A client trusting the CA certificates in the PEM file `ca`.
    pub fn new(ca: &Path) -> Https {
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .unwrap_or_else(|e| panic!("{}: {e}", ca.display()))
        {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("a CA certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Https {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build(connector),
        }
    }

    /// Sends `req` and reads the whole answer.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Reply {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = self
            .client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"))
            .to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}
