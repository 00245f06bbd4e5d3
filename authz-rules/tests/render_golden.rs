//! Golden files for `authz-rules matrix`: `examples/rules/commerce.toml`
//! rendered in every format must equal `tests/golden/matrix.{txt,md,html,dot,json}`.
//!
//! After an intended change to a rendering, rewrite the files and review the
//! diff before committing:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p authz-rules --test render_golden
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_rules::Rules;
use authz_rules::render::{Format, render};
use std::path::PathBuf;

const COMMERCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/rules/commerce.toml"
);

fn check(format: Format, extension: &str) {
    let text = std::fs::read_to_string(COMMERCE).expect("read commerce.toml");
    // A repository-relative origin keeps the checkout's location out of the
    // golden files.
    let rules = Rules::parse(&text, "examples/rules/commerce.toml")
        .unwrap_or_else(|d| panic!("commerce.toml does not parse:\n{d}"));
    let actual = render(&rules, format);
    let golden: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "golden",
        &format!("matrix.{extension}"),
    ]
    .iter()
    .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_GOLDEN=1",
            golden.display()
        )
    });
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
        let at = |s: &str| s.lines().nth(line).unwrap_or("<end of output>").to_string();
        panic!(
            "{format} rendering differs from {} at line {}:\n  expected: {}\n  actual:   {}\n\
             If the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff.",
            golden.display(),
            line + 1,
            at(&expected),
            at(&actual),
        );
    }
}

#[test]
fn table() {
    check(Format::Table, "txt");
}

#[test]
fn markdown() {
    check(Format::Markdown, "md");
}

#[test]
fn html() {
    check(Format::Html, "html");
}

#[test]
fn dot() {
    check(Format::Dot, "dot");
}

#[test]
fn json() {
    check(Format::Json, "json");
}
