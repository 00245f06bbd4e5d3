//! A bad rules file is refused with file, line, column and what to do; a
//! questionable one passes with warnings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use authz_rules::{Diagnostic, Rules, Severity};

const PBCS: &str = r#"
[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::111122223333:role/checkout"]

[[pbc]]
name = "payment"
principals = ["arn:aws:iam::111122223333:role/payment"]
"#;

/// The errors of a file that must be refused.
fn errors(rules: &str) -> Vec<Diagnostic> {
    let text = format!("{PBCS}{rules}");
    let diags = Rules::parse(&text, "rules.toml").expect_err("the file should be refused");
    assert!(diags.has_errors());
    diags.errors().cloned().collect()
}

/// The warnings of a file that must be accepted.
fn warnings(rules: &str) -> Vec<Diagnostic> {
    let text = format!("{PBCS}{rules}");
    let parsed = Rules::parse(&text, "rules.toml").unwrap_or_else(|d| panic!("refused:\n{d}"));
    parsed.warnings().warnings().cloned().collect()
}

/// The one error, checked for code, line and column (lines count from the
/// top of the whole file: PBCS fills lines 1 to 8).
fn one_error(rules: &str, code: &str, line: usize, column: usize) -> Diagnostic {
    let errs = errors(rules);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = errs.into_iter().next().unwrap();
    assert_eq!((e.code, e.line, e.column), (code, line, column), "{e}");
    assert_eq!(e.origin, "rules.toml");
    e
}

const BASE_LINE: usize = 8;

#[test]
fn unknown_pbc_names_the_spot_and_suggests() {
    let e = one_error(
        r#"
[[allow]]
id = "a"
caller = "chekout"
target = "payment"
methods = ["POST"]
paths = ["/payments"]
"#,
        "unknown-pbc",
        BASE_LINE + 4,
        10,
    );
    assert!(e.message.contains("`chekout`"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap()
            .contains("did you mean `checkout`"),
        "{e}"
    );
    let shown = e.to_string();
    assert!(shown.contains("--> rules.toml:12:10"), "{shown}");
    assert!(shown.contains("caller = \"chekout\""), "{shown}");
    assert!(shown.contains("^^^^^^^^^"), "{shown}");
}

#[test]
fn unknown_target_is_an_error_too() {
    one_error(
        r#"
[[deny]]
id = "a"
caller = "*"
target = "payments"
methods = ["*"]
paths = ["/**"]
"#,
        "unknown-pbc",
        BASE_LINE + 5,
        10,
    );
}

#[test]
fn duplicate_rule_ids_across_allow_and_deny() {
    let e = one_error(
        r#"
[[allow]]
id = "same"
caller = "checkout"
target = "payment"
methods = ["POST"]
paths = ["/payments"]

[[deny]]
id = "same"
caller = "checkout"
target = "payment"
methods = ["DELETE"]
paths = ["/payments"]
"#,
        "duplicate-rule-id",
        BASE_LINE + 10,
        6,
    );
    assert!(e.message.contains("line 10"), "{e}");
}

#[test]
fn path_patterns_that_cannot_match() {
    for (pattern, hint) in [
        ("orders", "must start with `/`"),
        ("/orders/", "ends with `/`"),
        ("/a//b", "empty segment"),
        ("/a/../b", "dot segments"),
        ("/a/**/b", "last segment"),
        ("/a?x=1", "queries"),
        ("/ord*", "whole segment"),
        ("/a%2Fb", "percent-escape"),
    ] {
        let e = one_error(
            &format!(
                r#"
[[allow]]
id = "a"
caller = "checkout"
target = "payment"
methods = ["POST"]
paths = ["/ok", "{pattern}"]
"#
            ),
            "invalid-path",
            BASE_LINE + 7,
            17,
        );
        assert!(e.message.contains(hint), "{pattern}: {e}");
    }
}

#[test]
fn methods_that_do_not_exist() {
    let e = one_error(
        r#"
[[allow]]
id = "a"
caller = "checkout"
target = "payment"
methods = ["GET", "FETCH"]
paths = ["/payments"]
"#,
        "invalid-method",
        BASE_LINE + 6,
        19,
    );
    assert!(e.message.contains("GET, HEAD, POST"), "{e}");
    let e = one_error(
        r#"
[[allow]]
id = "a"
caller = "checkout"
target = "payment"
methods = ["post"]
paths = ["/payments"]
"#,
        "invalid-method",
        BASE_LINE + 6,
        12,
    );
    assert!(e.message.contains("`POST`"), "{e}");
}

#[test]
fn unknown_keys_are_refused_with_the_expected_ones() {
    let e = one_error(
        r#"
[[allow]]
id = "a"
caller = "checkout"
target = "payment"
method = ["POST"]
paths = ["/payments"]
"#,
        "unknown-key",
        BASE_LINE + 6,
        1,
    );
    assert!(e.message.contains("unknown field `method`"), "{e}");
    assert!(e.message.contains("methods"), "{e}");
    let e = one_error("[[alow]]\nid = \"a\"\n", "unknown-key", BASE_LINE + 1, 3);
    assert!(e.message.contains("`alow`"), "{e}");
}

#[test]
fn missing_keys_and_wrong_types() {
    one_error(
        "\n[[allow]]\nid = \"a\"\ncaller = \"checkout\"\ntarget = \"payment\"\nmethods = [\"GET\"]\n",
        "missing-key",
        BASE_LINE + 2,
        1,
    );
    one_error(
        "\n[[allow]]\nid = \"a\"\ncaller = \"checkout\"\ntarget = \"payment\"\nmethods = \"GET\"\npaths = [\"/\"]\n",
        "wrong-type",
        BASE_LINE + 6,
        11,
    );
}

#[test]
fn toml_syntax_errors_are_located() {
    let errs = errors("\n[[allow]\nid = \"a\"\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].code, "toml-syntax");
    assert_eq!(errs[0].line, BASE_LINE + 2);
}

#[test]
fn conditions_are_validated() {
    for (cond, code) in [
        ("source_cidrs = [\"10.1.2.3/8\"]", "invalid-cidr"),
        ("source_cidrs = []", "empty-list"),
        ("not_source_cidrs = [\"ten/8\"]", "invalid-cidr"),
        ("principal_tags = { team = [] }", "invalid-tag"),
        ("time = { hours = \"8-18\" }", "invalid-time"),
        ("time = { days = [\"someday\"] }", "invalid-time"),
        (
            "time = { not_before = \"2026-02-01\", not_after = \"2026-01-01\" }",
            "invalid-time",
        ),
        (
            "time = { not_after = \"2026-01-01T10:00:00+01:00\" }",
            "invalid-time",
        ),
        ("time = {}", "invalid-time"),
    ] {
        let errs = errors(&format!(
            "\n[[allow]]\nid = \"a\"\ncaller = \"checkout\"\ntarget = \"payment\"\nmethods = [\"GET\"]\npaths = [\"/\"]\n{cond}\n"
        ));
        assert_eq!(errs.len(), 1, "{cond}: {errs:#?}");
        assert_eq!(errs[0].code, code, "{cond}");
        assert_eq!(errs[0].line, BASE_LINE + 8, "{cond}");
    }
    let e = &errors(
        "\n[[allow]]\nid = \"a\"\ncaller = \"checkout\"\ntarget = \"payment\"\nmethods = [\"GET\"]\npaths = [\"/\"]\nsource_cidrs = [\"10.1.2.3/8\"]\n",
    )[0];
    assert!(e.message.contains("did you mean `10.0.0.0/8`"), "{e}");
}

#[test]
fn bad_pbc_declarations() {
    let diags = Rules::parse(
        r#"
[[pbc]]
name = "a"
principals = ["arn:aws:iam::1:role/a"]

[[pbc]]
name = "a"

[[pbc]]
name = "b"
principals = ["arn:aws:iam::1:role/a", "arn:aws:sts::1:assumed-role/b/s", "role/b"]

[[pbc]]
name = "arn:aws:iam::1:role/c"
"#,
        "pbcs.toml",
    )
    .unwrap_err();
    let codes: Vec<(&str, usize)> = diags.errors().map(|d| (d.code, d.line)).collect();
    assert_eq!(
        codes,
        [
            ("duplicate-pbc", 7),
            ("duplicate-principal", 11),
            ("invalid-principal", 11),
            ("invalid-principal", 11),
            ("invalid-pbc-name", 14)
        ],
        "{diags}"
    );
    let session = diags
        .errors()
        .find(|d| d.message.contains("assumed-role"))
        .unwrap();
    assert!(
        session.message.contains("arn:aws:iam::1:role/b"),
        "{session}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors(
        r#"
[[allow]]
id = "a"
caller = "nobody"
target = "nowhere"
methods = ["FETCH"]
paths = ["relative"]
"#,
    );
    let codes: Vec<&str> = errs.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [
            "unknown-pbc",
            "unknown-pbc",
            "invalid-method",
            "invalid-path"
        ]
    );
}

#[test]
fn json_diagnostics_carry_the_location() {
    let diags = Rules::parse("[[alow]]\n", "x.toml").unwrap_err();
    let json = diags.to_json();
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["code"], "unknown-key");
    assert_eq!(json[0]["origin"], "x.toml");
    assert_eq!(json[0]["line"], 1);
    assert_eq!(json[0]["column"], 3);
}

#[test]
fn warning_star_to_star() {
    let w = warnings(
        r#"
[[allow]]
id = "everything"
caller = "*"
target = "*"
methods = ["GET"]
paths = ["/healthz"]
"#,
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!((w[0].code, w[0].line), ("star-to-star", BASE_LINE + 2));
    assert_eq!(w[0].severity, Severity::Warning);
}

#[test]
fn warning_shadowed_rule() {
    let w = warnings(
        r#"
[[allow]]
id = "wide"
caller = "checkout"
target = "payment"
methods = ["GET", "POST"]
paths = ["/payments/**"]

[[allow]]
id = "narrow"
caller = "checkout"
target = "payment"
methods = ["POST"]
paths = ["/payments/{id}/capture", "/payments"]
"#,
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].code, "shadowed-rule");
    assert!(
        w[0].message.contains("`narrow`") && w[0].message.contains("`wide`"),
        "{}",
        w[0]
    );
    // A conditional earlier rule does not shadow.
    let w = warnings(
        r#"
[[allow]]
id = "wide"
caller = "checkout"
target = "payment"
methods = ["*"]
paths = ["/**"]
source_cidrs = ["10.0.0.0/8"]

[[allow]]
id = "narrow"
caller = "checkout"
target = "payment"
methods = ["POST"]
paths = ["/payments"]
"#,
    );
    assert!(w.is_empty(), "{w:#?}");
}

#[test]
fn warning_allow_cancelled_by_deny() {
    let w = warnings(
        r#"
[[allow]]
id = "pay"
caller = "arn:aws:iam::111122223333:role/checkout"
target = "payment"
methods = ["POST"]
paths = ["/payments/{id}"]

[[deny]]
id = "no-payments"
caller = "arn:aws:iam::111122223333:role/*"
target = "*"
methods = ["*"]
paths = ["/payments/**"]
"#,
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].code, "cancelled-allow");
    assert!(w[0].message.contains("`no-payments` (line 17)"), "{}", w[0]);
}

#[test]
fn warning_overlapping_principals_and_empty_callers() {
    let diags = Rules::parse(
        r#"
[[pbc]]
name = "a"
principals = ["arn:aws:iam::1:role/team-*"]

[[pbc]]
name = "b"
principals = ["arn:aws:iam::1:role/team-b"]

[[pbc]]
name = "c"

[[allow]]
id = "c-calls-a"
caller = "c"
target = "a"
methods = ["GET"]
paths = ["/"]
"#,
        "x.toml",
    )
    .unwrap();
    let codes: Vec<&str> = diags.warnings().warnings().map(|d| d.code).collect();
    assert_eq!(
        codes,
        ["overlapping-principals", "caller-without-principals"]
    );
    let overlap = diags.warnings().warnings().next().unwrap();
    assert!(overlap.message.contains("is `b`"), "{overlap}");
}

#[test]
fn empty_file_is_valid_and_denies_everything() {
    let rules = Rules::parse("", "empty.toml").unwrap();
    assert_eq!(rules.warnings().warnings().next().unwrap().code, "no-rules");
}
