//! Decision cost of the compiled matrix (`Rules::decide`) against the linear
//! walk over every rule (`Rules::explain`), and the cost of compiling a file.
//!
//! The rules files are synthetic but shaped like a real mesh: 200 PBCs (10
//! for the 10-rule file), each one role ARN and every fourth also a
//! `-worker-*` glob; rules come five to a (caller, target) edge with
//! realistic methods and paths (`/orders`, `/orders/{id}`,
//! `/orders/{id}/lines`, `/search/**`, ...); a handful of `*` denies (one
//! conditional), a few role-ARN-pattern callers, and about 5 % conditional
//! rules (source ranges, principal tags, time windows).
//!
//! Groups `rules_10`, `rules_1000`, `rules_10000` each decide four requests
//! from the same caller (an assumed-role session ARN, rewritten to its role,
//! except in `allowed_role_arn`) to a target it has rules for, and measure
//! two functions per request in the same run:
//!
//! - `<kind>/explain` is the baseline: `Rules::explain`, which walks every
//!   rule in file order and records what each made of the request;
//! - `<kind>/decide` is `Rules::decide`, the compiled matrix.
//!
//! The kinds: `allowed` (`GET /orders/8412`, allowed by the edge's rule),
//! `default_deny` (`GET /exports/8412`: no rule matches) and `explicit_deny`
//! (`GET /admin/users/7`: a `*` deny), plus `allowed_role_arn`: the allowed
//! request with the caller given as its role ARN (as the gateway's own STS
//! sessions know it), which skips the session-to-role rewrite. Group
//! `compile` measures `Rules::parse` (TOML, validation, lint, matrix) of the
//! 10,000-rule file.
//!
//! Run: `cargo bench -p authz-rules --bench decide`; as a smoke test (each
//! function once): `cargo bench -p authz-rules --bench decide -- --test`.
//! Setup checks every request's decision and panics if it is not the
//! expected one.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_rules::{Caller, Effect, Reason, Request, Rules};
use criterion::{Criterion, criterion_group, criterion_main};
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

const ACCOUNT: &str = "111122223333";

const DOMAINS: [&str; 20] = [
    "storefront",
    "checkout",
    "cart",
    "catalogue",
    "pricing",
    "inventory",
    "order",
    "payment",
    "shipping",
    "customer",
    "loyalty",
    "search",
    "review",
    "recommend",
    "tax",
    "fraud",
    "invoice",
    "returns",
    "notify",
    "media",
];

const RESOURCES: [&str; 20] = [
    "orders",
    "products",
    "prices",
    "carts",
    "payments",
    "shipments",
    "customers",
    "reviews",
    "stock",
    "reservations",
    "invoices",
    "refunds",
    "quotes",
    "returns",
    "assets",
    "points",
    "notifications",
    "taxes",
    "scores",
    "categories",
];

const SUBS: [&str; 8] = [
    "items", "status", "lines", "capture", "refund", "history", "events", "notes",
];

/// Rules per (caller, target) edge.
const PER_EDGE: usize = 5;

fn pbc_name(i: usize) -> String {
    format!("{}-{:02}", DOMAINS[i % DOMAINS.len()], i / DOMAINS.len())
}

/// A small deterministic mixer, so the files are the same on every run.
fn mix(x: usize) -> usize {
    let mut h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    h as usize
}

/// A synthetic rules file with `n_rules` rules over `n_pbc` PBCs, and the
/// caller and target of its first edge (whose first rule allows
/// `GET /orders/{id}`).
fn synthetic(n_pbc: usize, n_rules: usize) -> (String, String, String) {
    let mut s = String::with_capacity(n_rules * 160);
    s.push_str("# Synthetic rules for benches/decide.rs\n\n");
    for i in 0..n_pbc {
        let name = pbc_name(i);
        write!(
            s,
            "[[pbc]]\nname = \"{name}\"\nprincipals = [\"arn:aws:iam::{ACCOUNT}:role/{name}\""
        )
        .unwrap();
        if i % 4 == 0 {
            write!(s, ", \"arn:aws:iam::{ACCOUNT}:role/{name}-worker-*\"").unwrap();
        }
        s.push_str("]\n\n");
    }
    // Guard rails first, as a reviewer would read them: `*` denies, one of
    // them conditional, and a few role-ARN-pattern callers.
    let payment = pbc_name(7 % n_pbc);
    let customer = pbc_name(9 % n_pbc);
    let mut fixed = vec![
        format!(
            "[[deny]]\nid = \"no-admin-apis\"\ncaller = \"*\"\ntarget = \"*\"\nmethods = [\"*\"]\n\
             paths = [\"/admin/**\", \"/internal/**\"]\n"
        ),
        format!(
            "[[deny]]\nid = \"debug-only-from-the-mesh\"\ncaller = \"*\"\ntarget = \"*\"\n\
             methods = [\"*\"]\npaths = [\"/debug/**\"]\nnot_source_cidrs = [\"10.0.0.0/8\"]\n"
        ),
        format!(
            "[[deny]]\nid = \"card-data-is-write-only\"\ncaller = \"*\"\ntarget = \"{payment}\"\n\
             methods = [\"GET\"]\npaths = [\"/payments/{{id}}/card\"]\n"
        ),
        format!(
            "[[deny]]\nid = \"no-audit-deletes\"\ncaller = \"*\"\ntarget = \"*\"\n\
             methods = [\"DELETE\"]\npaths = [\"/audit/**\"]\n"
        ),
        format!(
            "[[deny]]\nid = \"no-customer-secrets\"\ncaller = \"*\"\ntarget = \"{customer}\"\n\
             methods = [\"*\"]\npaths = [\"/customers/{{id}}/secrets\"]\n"
        ),
        format!(
            "[[allow]]\nid = \"ops-reads-everything\"\ncaller = \"arn:aws:iam::{ACCOUNT}:role/ops-*\"\n\
             target = \"*\"\nmethods = [\"GET\", \"HEAD\"]\npaths = [\"/**\"]\n\
             source_cidrs = [\"10.0.0.0/8\"]\n"
        ),
        format!(
            "[[allow]]\nid = \"workers-post-events\"\n\
             caller = \"arn:aws:iam::{ACCOUNT}:role/*-worker-*\"\ntarget = \"{}\"\n\
             methods = [\"POST\"]\npaths = [\"/events\"]\n",
            pbc_name(18 % n_pbc)
        ),
        format!(
            "[[allow]]\nid = \"auditor-reads-audit\"\ncaller = \"arn:aws:iam::{ACCOUNT}:role/auditor\"\n\
             target = \"*\"\nmethods = [\"GET\"]\npaths = [\"/audit/**\"]\n\
             time = {{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], hours = \"07:00-19:00\" }}\n"
        ),
    ];
    if n_rules < 100 {
        fixed.truncate(2);
    }
    for f in &fixed {
        s.push_str(f);
        s.push('\n');
    }
    let generated = n_rules - fixed.len();
    for k in 0..generated {
        let edge = k / PER_EDGE;
        let caller = edge % n_pbc;
        let round = edge / n_pbc;
        let target = (caller + 1 + round * 7) % n_pbc;
        let (caller, target) = (pbc_name(caller), pbc_name(target));
        // The first rule of every edge is on `orders`, so the allowed request
        // of the bench is realistic for any edge.
        let res = if k % PER_EDGE == 0 {
            "orders"
        } else {
            RESOURCES[mix(k) % RESOURCES.len()]
        };
        let sub = SUBS[mix(k + 1) % SUBS.len()];
        let (effect, methods, paths) = match k % PER_EDGE {
            0 => (
                "allow",
                "\"GET\", \"HEAD\"",
                format!("\"/{res}\", \"/{res}/{{id}}\""),
            ),
            1 => ("allow", "\"POST\"", format!("\"/{res}\"")),
            2 => ("allow", "\"GET\"", format!("\"/{res}/{{id}}/{sub}\"")),
            3 => (
                "allow",
                "\"PUT\", \"PATCH\"",
                format!("\"/{res}/{{id}}\", \"/{res}/{{id}}/{sub}/{{n}}\""),
            ),
            _ if k % 50 == 49 => ("deny", "\"DELETE\"", format!("\"/{res}/**\"")),
            _ => ("allow", "\"GET\"", format!("\"/{res}/**\"")),
        };
        write!(
            s,
            "[[{effect}]]\nid = \"{caller}-{effect}-{k}\"\ncaller = \"{caller}\"\n\
             target = \"{target}\"\nmethods = [{methods}]\npaths = [{paths}]\n"
        )
        .unwrap();
        if k % 37 == 3 {
            s.push_str("source_cidrs = [\"10.0.0.0/8\", \"fd00::/8\"]\n");
        }
        if k % 53 == 4 {
            s.push_str("principal_tags = { env = [\"prod\", \"staging\"] }\n");
        }
        if k % 97 == 2 {
            s.push_str("time = { hours = \"06:00-22:00\" }\n");
        }
        s.push('\n');
    }
    (s, pbc_name(0), pbc_name(1 % n_pbc))
}

struct Size {
    label: &'static str,
    n_pbc: usize,
    n_rules: usize,
}

const SIZES: [Size; 3] = [
    Size {
        label: "rules_10",
        n_pbc: 10,
        n_rules: 10,
    },
    Size {
        label: "rules_1000",
        n_pbc: 200,
        n_rules: 1000,
    },
    Size {
        label: "rules_10000",
        n_pbc: 200,
        n_rules: 10_000,
    },
];

const TAGS: &[(&str, &str)] = &[("env", "prod")];
/// 2026-11-22T10:30:00Z.
const NOW: i64 = 1_795_343_400;

fn decide(c: &mut Criterion) {
    let source: IpAddr = "10.1.2.3".parse().unwrap();
    for size in &SIZES {
        let (text, caller, target) = synthetic(size.n_pbc, size.n_rules);
        let rules = Rules::parse(&text, "synthetic.toml").unwrap_or_else(|d| {
            let errors: Vec<String> = d.errors().map(ToString::to_string).collect();
            panic!("synthetic file refused:\n{}", errors.join("\n"))
        });
        assert_eq!(rules.rules().len(), size.n_rules);
        assert_eq!(rules.pbcs().len(), size.n_pbc);
        let session = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{caller}/i-0abc123def4567890");
        let ask = |path: &'static str| Request {
            caller: Caller::Principal(&session),
            target: &target,
            method: "GET",
            path,
            source_ip: Some(source),
            tags: TAGS,
            now: NOW,
        };
        let role = format!("arn:aws:iam::{ACCOUNT}:role/{caller}");
        let kinds = [
            ("allowed", ask("/orders/8412"), Reason::Allowed),
            ("default_deny", ask("/exports/8412"), Reason::NoRuleMatched),
            ("explicit_deny", ask("/admin/users/7"), Reason::ExplicitDeny),
            (
                "allowed_role_arn",
                Request {
                    caller: Caller::Principal(&role),
                    ..ask("/orders/8412")
                },
                Reason::Allowed,
            ),
        ];
        let mut group = c.benchmark_group(size.label);
        for (kind, req, reason) in &kinds {
            let d = rules.decide(req);
            assert_eq!(d.reason, *reason, "{} {kind}: {d}", size.label);
            assert_eq!(d.caller_pbc, Some(caller.as_str()));
            assert_eq!(d, rules.explain(req).decision, "{} {kind}", size.label);
            if *reason == Reason::Allowed {
                assert_eq!(d.effect, Effect::Allow);
            }
            group.bench_function(format!("{kind}/decide"), |b| {
                b.iter(|| {
                    let d = rules.decide(black_box(req));
                    black_box((d.effect, d.rule.map(|r| r.line)))
                });
            });
            group.bench_function(format!("{kind}/explain"), |b| {
                b.iter(|| {
                    let e = rules.explain(black_box(req));
                    black_box((e.decision.effect, e.decision.rule.map(|r| r.line)))
                });
            });
        }
        group.finish();
    }
}

fn compile(c: &mut Criterion) {
    let (text, _, _) = synthetic(200, 10_000);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("parse_10000", |b| {
        b.iter(|| {
            let rules = Rules::parse(black_box(&text), "synthetic.toml").unwrap();
            black_box(rules.rules().len())
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decide, compile
}
criterion_main!(benches);
