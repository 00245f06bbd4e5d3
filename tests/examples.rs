//! The example PBC clients in `examples/clients/` against the real gateway binary, run
//! as a user runs them: `pbc_client.py` (botocore's SigV4Auth) with the test Python,
//! and the `pbc-client` binary (the aws-sigv4 crate). Credentials come from the
//! environment, as the examples document. Each: allowed (exit 0, the upstream's
//! JSON), denied (exit 1, `AccessDenied` and its message), a wrong secret (exit 1,
//! `SignatureDoesNotMatch`), a signed body, and `--assume-role` through the
//! gateway's STS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use client_e2e::{
    CATALOGUE, CHECKOUT, Demo, Identity, ORDER_PATH, ORDER_RULE, SESSION_RULE, STS_ROLE,
    assert_refused_record, assumed_role_arn, python, run_python, without_aws_environment,
    workspace_binary,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// One run of an example client.
struct Ran {
    what: String,
    output: Output,
}

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn exit(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// The status the client printed on its first line (`200`, or `200 OK`).
    fn status(&self) -> u16 {
        self.stdout()
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{self}"))
    }

    /// The body it printed after the status line, as JSON.
    fn body(&self) -> Value {
        let stdout = self.stdout();
        let body = stdout.split_once('\n').map_or("", |(_, b)| b);
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {self}"))
    }

    /// The request id in its error line, `... (request id ID)`.
    fn error_request_id(&self) -> String {
        let stderr = self.stderr();
        stderr
            .split_once("(request id ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(id, _)| id.to_string())
            .unwrap_or_else(|| panic!("no request id in: {self}"))
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// How to run one of the two examples.
trait Example {
    fn run(&self, demo: &Demo, who: Identity, secret: &str, args: &[&str]) -> Ran;
}

/// `examples/clients/python/pbc_client.py`, run by the Python with botocore and boto3.
struct PythonExample(String);

impl Example for PythonExample {
    fn run(&self, demo: &Demo, who: Identity, secret: &str, args: &[&str]) -> Ran {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/clients/python/pbc_client.py");
        let mut all = vec!["--ca", demo.ca().to_str().unwrap(), demo.url()];
        all.extend(args);
        let output = run_python(&self.0, &script, &all, &env(who, secret));
        Ran {
            what: format!("pbc_client.py {all:?}"),
            output,
        }
    }
}

/// The `pbc-client` binary (`examples/clients/rust`), next to the gateway binary.
struct RustExample(PathBuf);

impl Example for RustExample {
    fn run(&self, demo: &Demo, who: Identity, secret: &str, args: &[&str]) -> Ran {
        let mut cmd = Command::new(&self.0);
        cmd.arg("--ca").arg(demo.ca()).arg(demo.url()).args(args);
        let output = without_aws_environment(&mut cmd)
            .envs(env(who, secret))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.0.display()));
        Ran {
            what: format!("pbc-client {args:?}"),
            output,
        }
    }
}

/// The credentials environment of a demo identity, as the examples read it.
fn env(who: Identity, secret: &str) -> [(&'static str, &str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", who.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ]
}

/// The same checks for either example.
fn allowed_denied_tampered(name: &str, example: &dyn Example) {
    let demo = Demo::start(name);

    // Allowed: exit 0, the status and the order service's JSON.
    let ok = example.run(&demo, CHECKOUT, CHECKOUT.secret, &["GET", ORDER_PATH]);
    assert_eq!(ok.exit(), Some(0), "{ok}");
    assert_eq!(ok.status(), 200, "{ok}");
    let seen = ok.body();
    assert_eq!(seen["caller"]["pbc"], "checkout", "{ok}");
    assert_eq!(seen["path"], "/orders/42", "{ok}");
    let record = demo.audit_record(seen["request_id"].as_str().unwrap());
    assert_eq!(record["decision"], "Allow", "{record}");
    assert_eq!(record["rule"], ORDER_RULE, "{record}");

    // A JSON body, signed, reaches the order service as sent.
    let created = example.run(
        &demo,
        CHECKOUT,
        CHECKOUT.secret,
        &["POST", "/order/orders", r#"{"sku":"sku-1","quantity":2}"#],
    );
    assert_eq!(created.exit(), Some(0), "{created}");
    assert_eq!(created.body()["body"]["quantity"], 2, "{created}");

    // Denied: exit 1, the code and message on stderr, the error body on stdout.
    let denied = example.run(&demo, CATALOGUE, CATALOGUE.secret, &["GET", ORDER_PATH]);
    assert_eq!(denied.exit(), Some(1), "{denied}");
    assert_eq!(denied.status(), 403, "{denied}");
    assert!(
        denied.stderr().contains(
            "403 AccessDenied: User: arn:aws:iam::111122223333:role/CataloguePBCRole (PBC catalogue) \
             is not authorized to perform: GET /orders/42 on resource: order"
        ),
        "{denied}"
    );
    assert_eq!(denied.body()["code"], "AccessDenied", "{denied}");
    let record = demo.audit_record(&denied.error_request_id());
    assert_refused_record(&record, 403, "AccessDenied");

    // Tampered: a wrong secret.
    let forged = example.run(
        &demo,
        CHECKOUT,
        "not+the+checkout+secret+at+all",
        &["GET", ORDER_PATH],
    );
    assert_eq!(forged.exit(), Some(1), "{forged}");
    assert!(
        forged.stderr().contains("403 SignatureDoesNotMatch: "),
        "{forged}"
    );
    let record = demo.audit_record(&forged.error_request_id());
    assert_refused_record(&record, 403, "SignatureDoesNotMatch");

    // --assume-role: a session from the gateway's STS, then the call with it.
    let session = example.run(
        &demo,
        CHECKOUT,
        CHECKOUT.secret,
        &["--assume-role", STS_ROLE, "GET", ORDER_PATH],
    );
    assert_eq!(session.exit(), Some(0), "{session}");
    let seen = session.body();
    assert_eq!(
        seen["caller"]["arn"],
        assumed_role_arn("pbc-client"),
        "{session}"
    );
    let record = demo.audit_record(seen["request_id"].as_str().unwrap());
    assert_eq!(record["rule"], SESSION_RULE, "{record}");

    // Catalogue may not assume the role: the example says so and exits non-zero.
    let refused = example.run(
        &demo,
        CATALOGUE,
        CATALOGUE.secret,
        &["--assume-role", STS_ROLE, "GET", ORDER_PATH],
    );
    assert_ne!(refused.exit(), Some(0), "{refused}");
    assert!(refused.stderr().contains("AccessDenied"), "{refused}");
}

#[test]
fn the_python_example_client() {
    let py = python(&["botocore", "boto3"]);
    allowed_denied_tampered("example-python", &PythonExample(py));
}

#[test]
fn the_rust_example_client() {
    let bin = workspace_binary("pbc-client", "PBC_CLIENT_BIN", "pbc-client");
    let example = RustExample(bin.clone());
    allowed_denied_tampered("example-rust", &example);

    // `--help` shows how to use it, with examples.
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for part in [
        "--ca",
        "--assume-role",
        "AWS_ACCESS_KEY_ID",
        "Examples",
        "GET /order/orders/42",
    ] {
        assert!(help.contains(part), "{part} not in:\n{help}");
    }
}
