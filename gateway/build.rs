//! Records what this binary was built from, for `gateway --version` and the
//! `gateway_build_info` metric: the commit (`GATEWAY_BUILD_COMMIT` when set, as the
//! Dockerfile does, else `git`, else "unknown"), the target and the rustc version.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GATEWAY_BUILD_COMMIT");
    let commit = std::env::var("GATEWAY_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    // Only [0-9a-zA-Z._-]: the value ends up in a metric label and a help text.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(40)
        .collect();
    println!("cargo:rustc-env=GATEWAY_BUILD_COMMIT={commit}");

    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=GATEWAY_BUILD_TARGET={target}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(Command::new(rustc).arg("--version")).unwrap_or_default();
    println!("cargo:rustc-env=GATEWAY_BUILD_RUSTC={rustc_version}");
}

/// The short commit of HEAD, and rebuild triggers for when HEAD moves (a new commit
/// on the branch, a checkout). None outside a git work tree (a source tarball, the
/// Docker build context).
fn git_commit() -> Option<String> {
    let commit = output(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]))?;
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git_path(path) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(branch) = output(Command::new("git").args(["symbolic-ref", "-q", "HEAD"]))
        && let Some(p) = git_path(&branch)
    {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    Some(commit)
}

fn git_path(name: &str) -> Option<PathBuf> {
    let p = output(Command::new("git").args(["rev-parse", "--git-path", name]))?;
    let p = PathBuf::from(p);
    // Relative to the package directory, where cargo runs build scripts.
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    p.exists().then_some(p)
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}
