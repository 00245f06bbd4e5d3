//! Golden tests of the `authz-rules` command: what a person sees, and the exit
//! codes scripts rely on. Run with `UPDATE_GOLDEN=1` to rewrite the files in
//! tests/golden/ after an intended change, then review the diff.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs the binary from the workspace root (so paths in output are relative
/// and stable) and returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_authz-rules"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the golden file; if intended, rerun with UPDATE_GOLDEN=1\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

const RULES: &str = "examples/rules/commerce.toml";
const CASES: &str = "examples/rules/commerce.cases.toml";
const BAD: &str = "authz-rules/tests/fixtures/bad.toml";
const V2: &str = "authz-rules/tests/fixtures/commerce-v2.toml";

#[test]
fn check_valid() {
    let (code, out, _) = run(&["check", RULES, "--deny-warnings"]);
    assert_eq!(code, 0, "{out}");
    golden("check-valid.txt", &out);
}

#[test]
fn check_invalid_human_and_json() {
    let (code, out, _) = run(&["check", BAD]);
    assert_eq!(code, 1, "{out}");
    golden("check-invalid.txt", &out);
    let (code, out, _) = run(&["check", BAD, "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    let first = &v["diagnostics"][0];
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(12), Some(10))
    );
    golden("check-invalid.json", &out);
}

#[test]
fn explain_allow_and_deny() {
    let (code, out, _) = run(&[
        "explain",
        RULES,
        "--caller",
        "arn:aws:sts::111122223333:assumed-role/CheckoutPBCRole/checkout-pod-7",
        "--target",
        "payment",
        "--method",
        "POST",
        "--path",
        "/payments/p-9",
    ]);
    assert_eq!(code, 0, "{out}");
    golden("explain-allow.txt", &out);

    let (code, out, _) = run(&[
        "explain",
        RULES,
        "--caller",
        "checkout",
        "--target",
        "order",
        "--method",
        "DELETE",
        "--path",
        "/orders/42",
    ]);
    assert_eq!(code, 1, "{out}");
    golden("explain-deny.txt", &out);

    let (code, out, _) = run(&[
        "explain",
        RULES,
        "--caller",
        "order",
        "--target",
        "catalogue",
        "--path",
        "/products/../admin/x",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["rule"], "no-admin-apis");
    assert_eq!(v["path"], "/admin/x");
    golden("explain-deny.json", &out);
}

#[test]
fn matrix_formats_match_the_renderer_goldens() {
    for (format, file) in [
        ("table", "matrix.txt"),
        ("markdown", "matrix.md"),
        ("dot", "matrix.dot"),
    ] {
        let (code, out, err) = run(&["matrix", RULES, "--format", format]);
        assert_eq!(code, 0, "{err}");
        golden(file, &out);
    }
    let (code, _, err) = run(&["matrix", RULES, "--format", "svg"]);
    assert_eq!(code, 2);
    assert!(err.contains("table") && err.contains("markdown"), "{err}");
}

#[test]
fn diff_reports_opened_and_closed_edges() {
    let (code, out, _) = run(&["diff", RULES, V2]);
    assert_eq!(code, 1, "access widened: {out}");
    golden("diff.txt", &out);
    let (code, out, _) = run(&["diff", V2, RULES]);
    // Going back closes the new edges but also tightens conditions, which is
    // still reported as a change to review.
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = run(&["diff", RULES, RULES]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no change in access"));
}

#[test]
fn test_runs_the_cases() {
    let (code, out, _) = run(&["test", RULES, CASES, "--verbose"]);
    assert_eq!(code, 0, "{out}");
    golden("test.txt", &out);
    // The proposed change breaks two tested decisions: CI would stop it.
    let (code, out, _) = run(&["test", V2, CASES]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2 failed"), "{out}");
    assert!(out.contains("FAIL  checkout reads an order"), "{out}");
    // A wrong expectation: exit 1, the failure says what was expected.
    let (code, out, _) = run(&[
        "test",
        RULES,
        "authz-rules/tests/fixtures/failing.cases.toml",
    ]);
    assert_eq!(code, 1, "{out}");
    golden("test-failing.txt", &out);
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    let (code, _, err) = run(&["check", "no/such/file.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read no/such/file.toml"), "{err}");
    let (code, _, err) = run(&[
        "explain", BAD, "--caller", "x", "--target", "y", "--path", "/",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("run `authz-rules check"), "{err}");
    let (code, _, err) = run(&[
        "explain", RULES, "--caller", "nobody", "--target", "order", "--path", "/",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("neither an ARN nor a PBC"), "{err}");
    for cmd in ["check", "explain", "matrix", "diff", "test"] {
        let (code, out, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Usage: authz-rules"), "{cmd}: {out}");
    }
}

/// Every command's `--help` ends with examples, and the ones that use the shipped
/// example files run as written.
#[test]
fn help_has_examples_that_run() {
    let (code, top, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(top.contains("Examples:"), "{top}");
    for command in ["check", "explain", "matrix", "diff", "test"] {
        let (code, help, _) = run(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        assert!(
            help.contains("Examples:") && help.contains(&format!("authz-rules {command} ")),
            "`authz-rules {command} --help` has no example:\n{help}"
        );
    }
    // The top-level examples on the repository's own files run as printed (`run` works
    // from the repository root), except the one that writes a file.
    for line in top.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("authz-rules ") else {
            continue;
        };
        if !args.contains("examples/") || args.contains(" -o ") {
            continue;
        }
        let args: Vec<&str> = args.split_whitespace().collect();
        let (code, out, err) = run(&args);
        // explain answers 1 for a denial: the example shows a denied call on purpose.
        assert!(
            code == 0 || (args[0] == "explain" && code == 1),
            "{line}: {code}\n{out}{err}"
        );
        assert!(!out.is_empty(), "{line} printed nothing");
    }
}

#[test]
fn limits_in_explain_matrix_and_diff() {
    let (code, out, _) = run(&[
        "explain",
        RULES,
        "--caller",
        "checkout",
        "--target",
        "payment",
        "--method",
        "POST",
        "--path",
        "/payments",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["limits"][0]["id"], "checkout-calls");
    assert_eq!(v["limits"][0]["scope"], "calls of checkout");
    assert_eq!(v["limits"][0]["per_seconds"], 1);
    assert_eq!(v["limits"].as_array().unwrap().len(), 1);
    // A caller in no PBC counts against no caller limit.
    let (_, out, _) = run(&[
        "explain",
        RULES,
        "--caller",
        "arn:aws:iam::111122223333:role/CheckoutToOrderRole",
        "--target",
        "order",
        "--path",
        "/orders/1",
    ]);
    assert!(
        out.contains("limits:   none: only calls from a PBC to a PBC are counted"),
        "{out}"
    );
    let (code, out, _) = run(&["matrix", RULES, "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["limits"][1]["id"], "failed-auth-per-ip");
    assert_eq!(
        v["limits"][1]["scope"],
        "failed authentication per source IP"
    );

    // Loosening a limit is reported but is not widened access: exit 0.
    let text = std::fs::read_to_string(Path::new(ROOT).join(RULES)).unwrap();
    let looser = text.replace("requests = 50000", "requests = 60000");
    assert_ne!(looser, text);
    let path = std::env::temp_dir().join(format!("authz-rules-limits-{}.toml", std::process::id()));
    std::fs::write(&path, looser).unwrap();
    let tmp = path.to_str().unwrap();
    let (code, out, _) = run(&["diff", RULES, tmp]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("~ checkout-calls: calls of checkout, 50000/1s, burst 100000 -> calls of checkout, 60000/1s, burst 100000 (loosened)"),
        "{out}"
    );
    assert!(
        out.contains("no change in access; 1 rate limit change(s)"),
        "{out}"
    );
    let (code, out, _) = run(&["diff", RULES, tmp, "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["widened"], false);
    assert_eq!(v["diff"]["limits"][0]["direction"], "loosened");
    assert_eq!(v["diff"]["limits"][0]["after"]["requests"], 60000);
    std::fs::remove_file(&path).unwrap();
}
