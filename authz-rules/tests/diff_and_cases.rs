//! `diff` finds the edges a change opens and closes; `Cases` runs a policy's
//! expected decisions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use authz_rules::Rules;
use authz_rules::cases::Cases;
use authz_rules::diff::{Access, diff};

const PBCS: &str = r#"
[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::1:role/checkout"]

[[pbc]]
name = "payment"
principals = ["arn:aws:iam::1:role/payment"]

[[pbc]]
name = "order"
principals = ["arn:aws:iam::1:role/order"]
"#;

fn rules(body: &str) -> Rules {
    Rules::parse(&format!("{PBCS}{body}"), "t.toml").unwrap_or_else(|d| panic!("{d}"))
}

const PAY: &str = r#"
[[allow]]
id = "pay"
caller = "checkout"
target = "payment"
methods = ["POST"]
paths = ["/payments/*/capture", "/payments"]
"#;

#[test]
fn no_change_is_not_a_widening() {
    let d = diff(&rules(PAY), &rules(PAY));
    assert!(d.is_empty(), "{d}");
    assert!(!d.widened());
    assert!(d.to_string().contains("no change"));
}

#[test]
fn a_new_allow_opens_edges() {
    let new = format!(
        "{PAY}\n[[allow]]\nid = \"refund\"\ncaller = \"order\"\ntarget = \"payment\"\nmethods = [\"POST\", \"GET\"]\npaths = [\"/payments/{{id}}/refund\"]\n"
    );
    let d = diff(&rules(PAY), &rules(&new));
    assert!(d.widened(), "{d}");
    assert_eq!(d.opened.len(), 1, "{d}");
    let c = &d.opened[0];
    assert_eq!((c.caller.as_str(), c.target.as_str()), ("order", "payment"));
    assert_eq!(c.methods, ["GET", "POST"]);
    assert_eq!(c.path, "/payments/{id}/refund");
    assert_eq!(c.before, Access::Denied { rule: None });
    assert_eq!(
        c.after,
        Access::Allowed {
            rule: "refund".into()
        }
    );
    assert!(d.closed.is_empty());
    // And back again: the same edge closes, access does not widen.
    let back = diff(&rules(&new), &rules(PAY));
    assert!(!back.widened(), "{back}");
    assert_eq!(back.closed.len(), 1);
}

#[test]
fn a_deny_that_bites_into_an_allow_is_found_where_it_bites() {
    let old = r#"
[[allow]]
id = "wide"
caller = "checkout"
target = "order"
methods = ["GET"]
paths = ["/a/*/c"]
"#;
    let new = format!(
        "{old}\n[[deny]]\nid = \"no-b\"\ncaller = \"*\"\ntarget = \"order\"\nmethods = [\"*\"]\npaths = [\"/a/b/*\"]\n"
    );
    let d = diff(&rules(old), &rules(&new));
    assert!(!d.widened(), "{d}");
    let closed: Vec<(&str, &str)> = d
        .closed
        .iter()
        .map(|c| (c.caller.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(closed, [("checkout", "/a/b/c")], "{d}");
    assert_eq!(
        d.closed[0].after,
        Access::Denied {
            rule: Some("no-b".into())
        }
    );
}

#[test]
fn widening_a_method_list_opens_just_that_method() {
    let new = PAY.replace("[\"POST\"]", "[\"POST\", \"DELETE\"]");
    let d = diff(&rules(PAY), &rules(&new));
    let opened: Vec<(String, &str)> = d
        .opened
        .iter()
        .map(|c| (c.methods.join(","), c.path.as_str()))
        .collect();
    assert_eq!(
        opened,
        [
            ("DELETE".to_string(), "/payments/*/capture"),
            ("DELETE".to_string(), "/payments")
        ]
    );
}

#[test]
fn changed_conditions_are_reported_and_count_as_widening() {
    let old = format!("{PAY}source_cidrs = [\"10.0.0.0/8\"]\n");
    let new = format!("{PAY}source_cidrs = [\"0.0.0.0/0\"]\n");
    let d = diff(&rules(&old), &rules(&new));
    assert!(d.opened.is_empty() && d.closed.is_empty(), "{d}");
    assert_eq!(d.changed.len(), 2, "{d}");
    assert!(d.widened());
    assert!(d.to_string().contains("source in 0.0.0.0/0"), "{d}");
    // Dropping the condition altogether opens the edge.
    let d = diff(&rules(&old), &rules(PAY));
    assert_eq!(d.opened.len(), 2, "{d}");
    assert!(matches!(d.opened[0].before, Access::Conditional { .. }));
}

#[test]
fn principals_added_to_a_pbc_widen_access() {
    let text = format!("{PBCS}{PAY}");
    let old = Rules::parse(&text, "old.toml").unwrap();
    let new_text = text.replace(
        "principals = [\"arn:aws:iam::1:role/checkout\"]",
        "principals = [\"arn:aws:iam::1:role/checkout\", \"arn:aws:iam::1:role/legacy-*\"]",
    );
    let new = Rules::parse(&new_text, "new.toml").unwrap();
    let d = diff(&old, &new);
    assert!(d.widened(), "{d}");
    assert_eq!(d.principals.len(), 1);
    assert!(d.principals[0].added);
    assert!(
        d.to_string()
            .contains("+ checkout: arn:aws:iam::1:role/legacy-*"),
        "{d}"
    );
    assert!(!diff(&new, &old).widened());
}

#[test]
fn role_pattern_callers_are_probed_as_themselves() {
    let new = format!(
        "{PAY}\n[[allow]]\nid = \"ops\"\ncaller = \"arn:aws:iam::1:role/ops-*\"\ntarget = \"*\"\nmethods = [\"GET\"]\npaths = [\"/metrics\"]\n"
    );
    let d = diff(&rules(PAY), &rules(&new));
    assert!(d.widened());
    let callers: Vec<&str> = d.opened.iter().map(|c| c.caller.as_str()).collect();
    assert_eq!(callers, ["arn:aws:iam::1:role/ops-*"; 3], "{d}");
}

#[test]
fn the_commerce_cases_pass() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules/");
    let text = std::fs::read_to_string(format!("{dir}commerce.toml")).unwrap();
    let rules = Rules::parse(&text, "commerce.toml").unwrap();
    assert!(rules.warnings().is_empty(), "{}", rules.warnings());
    let cases_text = std::fs::read_to_string(format!("{dir}commerce.cases.toml")).unwrap();
    let cases = Cases::parse(&cases_text, "commerce.cases.toml", &rules).unwrap();
    assert!(cases.cases().len() >= 10);
    for r in cases.run(&rules, 1_795_334_400) {
        assert!(r.passed(), "{r}");
    }
}

#[test]
fn a_failing_case_says_what_it_expected() {
    let rules = rules(PAY);
    let cases = Cases::parse(
        r#"
[[case]]
caller = "checkout"
target = "payment"
method = "POST"
path = "/payments"
expect = "deny"

[[case]]
name = "pinned rule"
caller = "arn:aws:sts::1:assumed-role/checkout/s-1"
target = "payment"
method = "POST"
path = "/payments/p1/capture"
expect = "allow"
rule = "pay"
reason = "allowed"
"#,
        "c.toml",
        &rules,
    )
    .unwrap();
    let results = cases.run(&rules, 0);
    assert!(!results[0].passed());
    assert_eq!(results[0].case.name, "POST /payments checkout -> payment");
    let shown = results[0].to_string();
    assert!(
        shown.contains("FAIL")
            && shown.contains("expected deny, got allow")
            && shown.contains("line 2"),
        "{shown}"
    );
    assert!(results[1].passed(), "{}", results[1]);
}

#[test]
fn cases_with_typos_are_refused_not_passed() {
    let rules = rules(PAY);
    let diags = Cases::parse(
        r#"
[[case]]
caller = "chekout"
target = "payment"
method = "POST"
path = "/payments"
expect = "deny"
rule = "pya"
source_ip = "10.0.0.300"
reason = "because"
"#,
        "c.toml",
        &rules,
    )
    .unwrap_err();
    let codes: Vec<(&str, usize)> = diags.errors().map(|d| (d.code, d.line)).collect();
    assert_eq!(
        codes,
        [
            ("unknown-pbc", 3),
            ("unknown-rule", 8),
            ("invalid-ip", 9),
            ("invalid-reason", 10)
        ],
        "{diags}"
    );
    assert!(diags.to_string().contains("did you mean `checkout`"));
    let diags = Cases::parse(
        "[[case]]\ncaller = \"checkout\"\nexpected = \"allow\"\n",
        "c.toml",
        &rules,
    )
    .unwrap_err();
    assert_eq!(diags.errors().next().unwrap().code, "unknown-key");
}
