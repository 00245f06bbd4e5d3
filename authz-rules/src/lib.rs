//! The cross-PBC allow matrix: a rules language, its compiler and evaluator.
//!
//! A rules file declares the PBCs (each a name and the role ARNs that are it)
//! and `allow`/`deny` rules (caller, target, methods, path patterns, optional
//! conditions). [`Rules::parse`] validates it and compiles an immutable matrix;
//! [`Rules::decide`] answers a [`Request`] with a [`Decision`]: default deny,
//! an explicit deny beats any allow, and every decision names its rule.
//! `[[limit]]` tables declare rate limits beside the matrix ([`Limit`],
//! [`Rules::limits_for`], [`Rules::failed_auth_limit`]); the gateway counts.
//!
//! Everything here is pure and synchronous: no I/O, and the clock is an
//! argument ([`Request::now`]).
//!
//! ```
//! use authz_rules::{Caller, Request, Rules};
//!
//! let rules = Rules::parse(r#"
//!     [[pbc]]
//!     name = "checkout"
//!     principals = ["arn:aws:iam::111122223333:role/checkout"]
//!
//!     [[pbc]]
//!     name = "catalogue"
//!
//!     [[allow]]
//!     id = "checkout-reads-catalogue"
//!     caller = "checkout"
//!     target = "catalogue"
//!     methods = ["GET"]
//!     paths = ["/products/**"]
//! "#, "rules.toml").unwrap();
//!
//! let decision = rules.decide(&Request {
//!     caller: Caller::Principal("arn:aws:sts::111122223333:assumed-role/checkout/pod-1"),
//!     target: "catalogue",
//!     method: "GET",
//!     path: "/products/42",
//!     source_ip: None,
//!     tags: &[],
//!     now: 1_795_334_400,
//! });
//! assert!(decision.is_allowed());
//! assert_eq!(decision.rule_id(), Some("checkout-reads-catalogue"));
//! ```

pub mod cases;
pub mod condition;
mod decide;
pub mod diag;
pub mod diff;

mod file;
mod limit;
mod lint;
mod matrix;
pub mod method;
pub mod path;
pub mod principal;
pub mod render;

mod rules;

pub use decide::{Caller, Decision, Explanation, Outcome, Reason, Request, Step};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use limit::{Limit, LimitScope};
pub use rules::{CallerSpec, Conditions, Effect, Pbc, Rule, Rules, TargetSpec};
