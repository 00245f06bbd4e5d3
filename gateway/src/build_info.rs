//! What this binary is: version, commit, target, compiler and features, as printed by
//! `gateway --version` and exported as `gateway_build_info`.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (short hash), or `unknown`.
pub const COMMIT: &str = env!("GATEWAY_BUILD_COMMIT");

/// The target triple, e.g. `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("GATEWAY_BUILD_TARGET");

/// `rustc --version` of the compiler that built it.
pub const RUSTC: &str = env!("GATEWAY_BUILD_RUSTC");

/// `release` or `debug`.
pub const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The optional cargo features compiled in (`otlp`), or `none`.
pub const FEATURES: &str = if cfg!(feature = "otlp") {
    "otlp"
} else {
    "none"
};

/// The `--version` text after the program name: `0.1.0 (commit ..., ...)`.
pub fn long_version() -> String {
    format!(
        "{VERSION}\ncommit:   {COMMIT}\ntarget:   {TARGET}\nprofile:  {PROFILE}\nfeatures: {FEATURES}\ncompiler: {RUSTC}"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_build_facts_are_filled_in() {
        assert!(!COMMIT.is_empty());
        assert!(
            COMMIT
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
        assert!(!TARGET.is_empty());
        assert!(RUSTC.starts_with("rustc "), "{RUSTC}");
        let text = long_version();
        assert!(text.starts_with(VERSION));
        assert!(text.contains(&format!("commit:   {COMMIT}")));
    }
}
