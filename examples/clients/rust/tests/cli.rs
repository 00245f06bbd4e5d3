//! The command line a PBC developer sees first: `--help` with examples, and a clear
//! error (not a panic) when credentials are missing. Calls through a real gateway are
//! in the repository's `tests/examples.rs`, which runs this binary against
//! `gateway demo`.
//!
//! (This integration test also makes `cargo test --workspace` build the `pbc-client`
//! binary that `tests/examples.rs` runs.)
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

#[test]
fn help_shows_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_pbc-client"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Examples"), "{help}");
    assert!(help.contains("pbc-client "), "{help}");
}

#[test]
fn missing_credentials_are_an_error_that_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_pbc-client"))
        .args(["https://127.0.0.1:1", "GET", "/order/orders/42"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
