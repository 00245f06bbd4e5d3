//! `[[limit]]`: parsing, every diagnostic (with its line and column), and
//! which limits a request counts against.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use authz_rules::{Diagnostic, LimitScope, Rules, diff};
use std::time::Duration;

/// Three PBCs and an allow on each edge the tests limit (lines 1 to 33).
const BASE: &str = r#"
[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::111122223333:role/checkout"]

[[pbc]]
name = "order"
principals = ["arn:aws:iam::111122223333:role/order"]

[[pbc]]
name = "payment"
principals = ["arn:aws:iam::111122223333:role/payment"]

[[allow]]
id = "checkout-orders"
caller = "checkout"
target = "order"
methods = ["*"]
paths = ["/**"]

[[allow]]
id = "checkout-payments"
caller = "checkout"
target = "payment"
methods = ["*"]
paths = ["/**"]

[[allow]]
id = "order-payments"
caller = "order"
target = "payment"
methods = ["GET"]
paths = ["/**"]
"#;

/// Lines in BASE: the first line of appended text is `BASE_LINES + 1`.
const BASE_LINES: usize = 33;

fn parse(limits: &str) -> Rules {
    let text = format!("{BASE}{limits}");
    Rules::parse(&text, "rules.toml").unwrap_or_else(|d| panic!("refused:\n{d}"))
}

fn errors(limits: &str) -> Vec<Diagnostic> {
    let text = format!("{BASE}{limits}");
    let diags = Rules::parse(&text, "rules.toml").expect_err("the file should be refused");
    diags.errors().cloned().collect()
}

/// The one error, checked for code, line and column.
fn one_error(limits: &str, code: &str, line: usize, column: usize) -> Diagnostic {
    let errs = errors(limits);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = errs.into_iter().next().unwrap();
    assert_eq!(
        (e.code, e.line, e.column),
        (code, BASE_LINES + line, column),
        "{e}"
    );
    assert_eq!(e.origin, "rules.toml");
    e
}

fn warnings(limits: &str) -> Vec<Diagnostic> {
    parse(limits).warnings().warnings().cloned().collect()
}

#[test]
fn base_line_count_is_right() {
    assert_eq!(BASE.lines().count(), BASE_LINES);
}

#[test]
fn parses_every_kind_of_limit() {
    let rules = parse(
        r#"
[[limit]]
id = "checkout-calls"
description = "all of checkout"
caller = "checkout"
requests = 100
per = "1s"
burst = 150

[[limit]]
id = "each-caller-to-each-target"
caller = "*"
target = "*"
requests = 30
per = "5m"

[[limit]]
id = "failed-auth-per-ip"
failed_auth_per_source_ip = true
requests = 20
per = "1m"
"#,
    );
    assert!(rules.warnings().is_empty(), "{}", rules.warnings());
    let limits = rules.limits();
    assert_eq!(limits.len(), 3);
    let l = &limits[0];
    assert_eq!(l.id, "checkout-calls");
    assert_eq!(l.description.as_deref(), Some("all of checkout"));
    assert_eq!(l.line, BASE_LINES + 2);
    assert_eq!(
        l.scope,
        LimitScope::Caller {
            caller: rules.pbc("checkout")
        }
    );
    assert_eq!(
        (l.requests, l.per, l.burst),
        (100, Duration::from_secs(1), 150)
    );
    assert_eq!(l.interval(), Duration::from_millis(10));
    assert_eq!(l.to_string(), "100/1s, burst 150");
    let l = &limits[1];
    assert_eq!(
        l.scope,
        LimitScope::Edge {
            caller: None,
            target: None
        }
    );
    // burst defaults to requests
    assert_eq!(
        (l.requests, l.per, l.burst),
        (30, Duration::from_secs(300), 30)
    );
    assert_eq!(l.interval(), Duration::from_secs(10));
    let l = &limits[2];
    assert_eq!(l.scope, LimitScope::FailedAuthPerSourceIp);
    assert_eq!(l.interval(), Duration::from_secs(3));
    assert_eq!(
        rules.failed_auth_limit().map(|l| &*l.id),
        Some("failed-auth-per-ip")
    );
    assert_eq!(
        rules.limit_scope_name(&limits[0].scope),
        "calls of checkout"
    );
    assert_eq!(
        rules.limit_scope_name(&limits[1].scope),
        "each caller -> each target"
    );
    assert_eq!(
        rules.limit_scope_name(&limits[2].scope),
        "failed authentication per source IP"
    );
}

#[test]
fn periods() {
    let per = |p: &str| {
        parse(&format!(
            "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 1\nper = \"{p}\"\n"
        ))
        .limits()[0]
            .per
    };
    assert_eq!(per("1s"), Duration::from_secs(1));
    assert_eq!(per("90s"), Duration::from_secs(90));
    assert_eq!(per("5m"), Duration::from_secs(300));
    assert_eq!(per("24h"), Duration::from_secs(86_400));
    assert_eq!(per("1440m"), Duration::from_secs(86_400));
    for bad in [
        "",
        "1",
        "s",
        "0s",
        "1.5s",
        "-1s",
        "+1s",
        "1 s",
        "1ms",
        "1d",
        "25h",
        "86401s",
        "99999999999999999999h",
    ] {
        let e = one_error(
            &format!(
                "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 1\nper = \"{bad}\"\n"
            ),
            "invalid-period",
            5,
            7,
        );
        assert!(e.message.contains(&format!("`{bad}`")), "{e}");
        assert!(
            e.help.as_deref().unwrap().contains("use 1s, 30s, 5m or 1h"),
            "{e}"
        );
    }
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 1\nper = 1\n",
        "wrong-type",
        5,
        7,
    );
    assert!(e.message.contains("string"), "{e}");
}

#[test]
fn limits_for_a_request() {
    let rules = parse(
        r#"
[[limit]]
id = "checkout-calls"
caller = "checkout"
requests = 100
per = "1s"

[[limit]]
id = "every-caller"
caller = "*"
requests = 1000
per = "1s"

[[limit]]
id = "checkout-to-payment"
caller = "checkout"
target = "payment"
requests = 10
per = "1s"

[[limit]]
id = "checkout-to-each-target"
caller = "checkout"
target = "*"
requests = 50
per = "1s"

[[limit]]
id = "each-caller-to-payment"
caller = "*"
target = "payment"
requests = 20
per = "1s"

[[limit]]
id = "failed-auth"
failed_auth_per_source_ip = true
requests = 5
per = "1m"
"#,
    );
    let (checkout, order, payment) = (
        rules.pbc("checkout").unwrap(),
        rules.pbc("order").unwrap(),
        rules.pbc("payment").unwrap(),
    );
    let ids = |c, t| -> Vec<&str> { rules.limits_for(c, t).map(|l| &*l.id).collect() };
    assert_eq!(
        ids(checkout, payment),
        [
            "checkout-calls",
            "every-caller",
            "checkout-to-payment",
            "checkout-to-each-target",
            "each-caller-to-payment"
        ]
    );
    assert_eq!(
        ids(checkout, order),
        ["checkout-calls", "every-caller", "checkout-to-each-target"]
    );
    assert_eq!(
        ids(order, payment),
        ["every-caller", "each-caller-to-payment"]
    );
    assert_eq!(ids(payment, order), ["every-caller"]);
    // Out-of-range indexes match only `*` limits (and never panic).
    assert_eq!(ids(99, 98), ["every-caller"]);
    assert_eq!(rules.failed_auth_limit().unwrap().id, "failed-auth");
    // Limits do not change decisions.
    let plain = Rules::parse(BASE, "rules.toml").unwrap();
    assert!(plain.limits().is_empty());
    assert!(plain.failed_auth_limit().is_none());
    assert_eq!(plain.limits_for(checkout, payment).count(), 0);
    assert_eq!(plain.rules(), rules.rules());
}

#[test]
fn unknown_pbc_with_did_you_mean() {
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"chekout\"\nrequests = 1\nper = \"1s\"\n",
        "unknown-pbc",
        3,
        10,
    );
    assert!(e.message.contains("caller `chekout`"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap()
            .contains("did you mean `checkout`"),
        "{e}"
    );
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\ntarget = \"paymnet\"\nrequests = 1\nper = \"1s\"\n",
        "unknown-pbc",
        4,
        10,
    );
    assert!(e.message.contains("target `paymnet`"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap()
            .contains("did you mean `payment`"),
        "{e}"
    );
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"arn:aws:iam::111122223333:role/checkout\"\nrequests = 1\nper = \"1s\"\n",
        "invalid-limit-scope",
        3,
        10,
    );
    assert!(e.message.contains("not a role ARN"), "{e}");
}

#[test]
fn missing_keys() {
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nper = \"1s\"\n",
        "missing-key",
        1,
        1,
    );
    assert!(e.message.contains("`requests`"), "{e}");
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 5\n",
        "missing-key",
        1,
        1,
    );
    assert!(e.message.contains("`per`"), "{e}");
    let e = one_error(
        "[[limit]]\nid = \"l\"\nrequests = 5\nper = \"1s\"\n",
        "missing-key",
        1,
        1,
    );
    assert!(e.message.contains("`caller`"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap()
            .contains("failed_auth_per_source_ip"),
        "{e}"
    );
    // `failed_auth_per_source_ip = false` is a caller limit like any other.
    one_error(
        "[[limit]]\nid = \"l\"\nfailed_auth_per_source_ip = false\nrequests = 5\nper = \"1s\"\n",
        "missing-key",
        1,
        1,
    );
    // Every missing key at once, not only the first.
    let errs = errors("[[limit]]\nid = \"l\"\n");
    let codes: Vec<&str> = errs.iter().map(|e| e.code).collect();
    assert_eq!(codes, ["missing-key"; 3], "{errs:#?}");
    // `id` is required like a rule's.
    one_error(
        "[[limit]]\ncaller = \"checkout\"\nrequests = 5\nper = \"1s\"\n",
        "missing-key",
        1,
        1,
    );
}

#[test]
fn zero_and_out_of_range_counts() {
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 0\nper = \"1s\"\n",
        "invalid-limit",
        4,
        12,
    );
    assert!(e.message.contains("`requests = 0`"), "{e}");
    assert!(e.help.as_deref().unwrap().contains("[[deny]]"), "{e}");
    one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = -3\nper = \"1s\"\n",
        "invalid-limit",
        4,
        12,
    );
    one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 4294967296\nper = \"1s\"\n",
        "invalid-limit",
        4,
        12,
    );
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 1\nper = \"1s\"\nburst = 0\n",
        "invalid-limit",
        6,
        9,
    );
    assert!(e.message.contains("`burst = 0`"), "{e}");
    // More than one request a nanosecond has no emission interval.
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 2000000000\nper = \"1s\"\n",
        "invalid-limit",
        4,
        12,
    );
    assert!(e.message.contains("nanosecond"), "{e}");
    one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = \"10\"\nper = \"1s\"\n",
        "wrong-type",
        4,
        12,
    );
}

#[test]
fn failed_auth_limits() {
    let errs = errors(
        "[[limit]]\nid = \"l\"\nfailed_auth_per_source_ip = true\ncaller = \"checkout\"\ntarget = \"order\"\nrequests = 1\nper = \"1s\"\n",
    );
    let at: Vec<(&str, usize, usize)> = errs
        .iter()
        .map(|e| (e.code, e.line - BASE_LINES, e.column))
        .collect();
    assert_eq!(
        at,
        [
            ("invalid-limit-scope", 4, 10),
            ("invalid-limit-scope", 5, 10)
        ],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("`caller`"), "{}", errs[0]);
    assert!(errs[1].message.contains("`target`"), "{}", errs[1]);
    let e = one_error(
        r#"[[limit]]
id = "first"
failed_auth_per_source_ip = true
requests = 20
per = "1m"

[[limit]]
id = "second"
failed_auth_per_source_ip = true
requests = 5
per = "1s"
"#,
        "duplicate-failed-auth-limit",
        9,
        29,
    );
    assert!(e.message.contains("`second`"), "{e}");
    assert!(
        e.message
            .contains(&format!("`first` (line {})", BASE_LINES + 1)),
        "{e}"
    );
}

#[test]
fn ids_are_unique_among_rules_and_limits() {
    let e = one_error(
        "[[limit]]\nid = \"checkout-orders\"\ncaller = \"checkout\"\nrequests = 1\nper = \"1s\"\n",
        "duplicate-rule-id",
        2,
        6,
    );
    assert!(
        e.message
            .contains("limit id `checkout-orders` is already used at line 14"),
        "{e}"
    );
    let e = one_error(
        "[[limit]]\nid = \"a\"\ncaller = \"checkout\"\nrequests = 1\nper = \"1s\"\n\n[[limit]]\nid = \"a\"\ncaller = \"order\"\nrequests = 1\nper = \"1s\"\n",
        "duplicate-rule-id",
        8,
        6,
    );
    assert!(
        e.message
            .contains(&format!("already used at line {}", BASE_LINES + 1)),
        "{e}"
    );
    // A rule after a limit with its id: the error is on the rule.
    let e = one_error(
        "[[limit]]\nid = \"b\"\ncaller = \"checkout\"\nrequests = 1\nper = \"1s\"\n\n[[deny]]\nid = \"b\"\ncaller = \"*\"\ntarget = \"*\"\nmethods = [\"*\"]\npaths = [\"/admin/**\"]\n",
        "duplicate-rule-id",
        8,
        6,
    );
    assert!(e.message.starts_with("rule id `b`"), "{e}");
    one_error(
        "[[limit]]\nid = \"has space\"\ncaller = \"checkout\"\nrequests = 1\nper = \"1s\"\n",
        "invalid-rule-id",
        2,
        6,
    );
}

#[test]
fn unknown_keys_are_refused() {
    let e = one_error(
        "[[limit]]\nid = \"l\"\ncaller = \"checkout\"\nrequests = 1\nper = \"1s\"\nrate = 5\n",
        "unknown-key",
        6,
        1,
    );
    assert!(e.message.contains("unknown field `rate`"), "{e}");
    assert!(e.message.contains("burst"), "{e}");
}

#[test]
fn warnings_about_limits() {
    // No allow rule lets payment call anything, or order call order.
    let w = warnings(
        r#"
[[limit]]
id = "payment-calls"
caller = "payment"
requests = 1
per = "1s"

[[limit]]
id = "order-to-order"
caller = "order"
target = "order"
requests = 1
per = "1s"

[[limit]]
id = "each-caller-to-order"
caller = "*"
target = "order"
requests = 1
per = "1s"
"#,
    );
    let at: Vec<(&str, usize)> = w.iter().map(|d| (d.code, d.line - BASE_LINES)).collect();
    assert_eq!(
        at,
        [("limit-on-denied-edge", 2), ("limit-on-denied-edge", 8)],
        "{w:#?}"
    );
    assert!(
        w[0].message.contains(
            "limits calls that are always denied: no allow rule lets `payment` call any PBC"
        ),
        "{}",
        w[0]
    );
    assert!(w[1].message.contains("`order` call `order`"), "{}", w[1]);
    // A role-ARN allow that covers a PBC's principals opens its edges.
    let text = format!(
        "{BASE}\n[[allow]]\nid = \"roles\"\ncaller = \"arn:aws:iam::111122223333:role/pay*\"\ntarget = \"order\"\nmethods = [\"GET\"]\npaths = [\"/**\"]\n\n[[limit]]\nid = \"p\"\ncaller = \"payment\"\nrequests = 1\nper = \"1s\"\n"
    );
    let rules = Rules::parse(&text, "rules.toml").unwrap();
    assert!(rules.warnings().is_empty(), "{}", rules.warnings());
    // A caller without principals never counts anything.
    let text = format!(
        "{BASE}\n[[pbc]]\nname = \"batch\"\n\n[[limit]]\nid = \"batch-calls\"\ncaller = \"batch\"\nrequests = 1\nper = \"1s\"\n"
    );
    let rules = Rules::parse(&text, "rules.toml").unwrap();
    let w: Vec<&Diagnostic> = rules.warnings().warnings().collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].code, "caller-without-principals");
    assert!(w[0].message.contains("limit `batch-calls`"), "{}", w[0]);
}

#[test]
fn diff_reports_limits_without_widening() {
    let old = parse(
        "[[limit]]\nid = \"a\"\ncaller = \"checkout\"\nrequests = 10\nper = \"1s\"\n\n[[limit]]\nid = \"gone\"\ncaller = \"order\"\nrequests = 1\nper = \"1s\"\n\n[[limit]]\nid = \"mixed\"\ncaller = \"order\"\nrequests = 10\nper = \"1s\"\nburst = 5\n",
    );
    let new = parse(
        "[[limit]]\nid = \"a\"\ncaller = \"checkout\"\nrequests = 1200\nper = \"1m\"\nburst = 20\n\n[[limit]]\nid = \"mixed\"\ncaller = \"order\"\nrequests = 20\nper = \"1s\"\nburst = 1\n\n[[limit]]\nid = \"new\"\ncaller = \"*\"\ntarget = \"payment\"\nrequests = 1\nper = \"1h\"\n",
    );
    let d = diff::diff(&old, &new);
    assert!(!d.widened());
    assert!(d.access_unchanged());
    assert!(!d.is_empty());
    let summary: Vec<(&str, &str)> = d.limits.iter().map(|c| (&*c.id, c.direction)).collect();
    assert_eq!(
        summary,
        [
            ("a", "loosened"),
            ("mixed", "changed"),
            ("new", "tightened"),
            ("gone", "loosened")
        ]
    );
    let text = d.to_string();
    assert!(
        text.contains("~ a: calls of checkout, 10/1s, burst 10 -> calls of checkout, 1200/1m, burst 20 (loosened)"),
        "{text}"
    );
    assert!(
        text.contains("+ new: each caller -> payment, 1/1h, burst 1 (added)"),
        "{text}"
    );
    assert!(
        text.contains("- gone: calls of order, 1/1s, burst 1 (removed)"),
        "{text}"
    );
    assert!(
        text.ends_with("no change in access; 4 rate limit change(s)\n"),
        "{text}"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["limits"][0]["id"], "a");
    assert_eq!(json["limits"][0]["after"]["requests"], 1200);
    assert_eq!(json["limits"][0]["after"]["per_seconds"], 60);
    assert_eq!(json["limits"][2]["before"], serde_json::Value::Null);
    // A description alone is no change.
    let redescribed = parse(
        "[[limit]]\nid = \"a\"\ndescription = \"now described\"\ncaller = \"checkout\"\nrequests = 10\nper = \"1s\"\n\n[[limit]]\nid = \"gone\"\ncaller = \"order\"\nrequests = 1\nper = \"1s\"\n\n[[limit]]\nid = \"mixed\"\ncaller = \"order\"\nrequests = 10\nper = \"1s\"\nburst = 5\n",
    );
    assert!(diff::diff(&old, &redescribed).is_empty());
}
