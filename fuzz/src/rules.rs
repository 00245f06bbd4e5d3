//! `rules`: the rules language (`authz_rules::Rules::parse`) and its evaluator.
//!
//! A quarter of the inputs are raw text; the rest are rules files generated from the
//! fuzz data (PBCs with role-ARN patterns, allow/deny rules with methods, path patterns
//! and conditions: CIDRs, principal tags, time windows), with fuzz-chosen pieces, so most
//! of them parse and the compiler and matrix are exercised. Checked:
//!
//! - parsing never panics; a refusal carries at least one error, and its diagnostics
//!   render (text and JSON);
//! - for a file that parses: every matrix format renders, and for fuzz-chosen requests
//!   (principals, session ARNs, PBC names, methods, paths, addresses, tags, times)
//!   `decide` (the compiled matrix) never panics and agrees with `explain` (the rule by
//!   rule walk), which has one step per rule; an allow names a matching allow rule and no
//!   deny matched; an explicit deny names a matching deny rule; a default deny has no
//!   matching rule;
//! - `[[limit]]` tables: the limits of a file that compiles have requests and burst of
//!   at least 1, a period of 1 s to 24 h and a non-zero interval, and render.

use std::net::IpAddr;

use arbitrary::{Result, Unstructured};
use authz_rules::path::NormalPath;
use authz_rules::render::{Format, render};
use authz_rules::{Caller, CallerSpec, Effect, Outcome, Reason, Request, Rules, TargetSpec};

use crate::pick;

pub fn run(data: &[u8]) {
    let _ = one(&mut Unstructured::new(data));
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Up to `max` of `choices`; the first `good` of them (valid ones) seven times in eight.
fn some<'a>(
    u: &mut Unstructured<'a>,
    choices: &[&'a str],
    good: usize,
    max: usize,
) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=max)?;
    let good = &choices[..good.min(choices.len())];
    (0..n)
        .map(|_| mostly_one(u, good, choices).map(str::to_owned))
        .collect()
}

const NAMES: &[&str] = &[
    "checkout",
    "order",
    "catalogue",
    "payment",
    "*",
    "Checkout",
    "",
];
const PRINCIPALS: &[&str] = &[
    "arn:aws:iam::111122223333:role/CheckoutRole",
    "arn:aws:iam::111122223333:role/OrderRole",
    "arn:aws:iam::111122223333:role/*",
    "arn:aws:iam::111122223333:role/team/*Role",
    "arn:aws:iam::*:role/Catalogue",
    "arn:aws:iam::111122223333:role/path/a/PaymentRole",
    "arn:aws:sts::111122223333:assumed-role/OrderRole/s",
    "arn:aws:iam::111122223333:user/bob",
];
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "*", "get", "HEAD", "PATCH", "OPTIONS",
];
const PATTERNS: &[&str] = &[
    "/**",
    "/products/*",
    "/products/**",
    "/orders",
    "/orders/*",
    "/",
    "/a/**/b",
    "/*/x",
    "/{id}",
    "/a*",
    "*",
    "/a//b",
    "/a/../b",
    "/%2F",
    "/products/*/reviews",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "192.168.1.1/32",
    "0.0.0.0/0",
    "::1/128",
    "2001:db8::/32",
    "10.1.2.3",
    "10.0.0.1/8",
    "300.0.0.0/8",
];
const TIMES: &[&str] = &[
    "2026-01-01T00:00:00Z",
    "2026-11-22T10:30:00Z",
    "2027-01-01T00:00:00Z",
    "2026-13-01T00:00:00Z",
];
const DAYS: &[&str] = &["mon", "tue", "Saturday", "sun", "xyz"];
const HOURS: &[&str] = &[
    "08:00-18:00",
    "22:00-06:00",
    "00:00-24:00",
    "10:00-10:00",
    "9-5",
];

/// One of `good` seven times in eight, else anything `pick` gives from `all`.
fn mostly_one<'a>(u: &mut Unstructured<'a>, good: &[&'a str], all: &[&'a str]) -> Result<&'a str> {
    if !good.is_empty() && u.ratio(7, 8)? {
        Ok(u.choose(good)?)
    } else {
        pick(u, all)
    }
}

fn generate(u: &mut Unstructured<'_>) -> Result<String> {
    let mut f = String::new();
    let n = u.int_in_range(0..=4)?;
    let mut declared: Vec<&str> = Vec::new();
    let mut used_principals: Vec<&str> = Vec::new();
    for _ in 0..n {
        // Mostly valid, distinct names and principals: the file then compiles.
        let fresh: Vec<&str> = NAMES[..4]
            .iter()
            .copied()
            .filter(|n| !declared.contains(n))
            .collect();
        let name = mostly_one(u, &fresh, NAMES)?;
        declared.push(name);
        f.push_str(&format!("[[pbc]]\nname = {}\n", q(name)));
        if u.ratio(1, 4)? {
            f.push_str(&format!("description = {}\n", q(u.arbitrary()?)));
        }
        let mut principals = Vec::new();
        for _ in 0..u.int_in_range(0..=2)? {
            let fresh: Vec<&str> = PRINCIPALS[..6]
                .iter()
                .copied()
                .filter(|p| !used_principals.contains(p) && !principals.contains(&p.to_string()))
                .collect();
            let p = mostly_one(u, &fresh, PRINCIPALS)?;
            used_principals.push(p);
            principals.push(p.to_owned());
        }
        if !principals.is_empty() || u.arbitrary()? {
            f.push_str(&format!("principals = {}\n", list(&principals)));
        }
        f.push('\n');
    }
    let mut callers: Vec<&str> = declared.clone();
    callers.extend([
        "*",
        "arn:aws:iam::111122223333:role/CheckoutToOrderRole",
        "arn:aws:iam::111122223333:role/team/*",
    ]);
    let mut targets: Vec<&str> = declared.clone();
    targets.push("*");
    let n = u.int_in_range(0..=6)?;
    for i in 0..n {
        let kind = if u.ratio(1, 3)? { "deny" } else { "allow" };
        f.push_str(&format!("[[{kind}]]\n"));
        let id = if u.ratio(1, 10)? {
            "r0".to_owned()
        } else {
            format!("r{i}")
        };
        f.push_str(&format!("id = {}\n", q(&id)));
        let caller = mostly_one(u, &callers, PRINCIPALS)?;
        f.push_str(&format!("caller = {}\n", q(caller)));
        f.push_str(&format!(
            "target = {}\n",
            q(mostly_one(u, &targets, NAMES)?)
        ));
        let mut methods = some(u, METHODS, 5, 3)?;
        if methods.is_empty() && !u.ratio(1, 8)? {
            methods.push(u.choose(&METHODS[..5])?.to_string());
        }
        f.push_str(&format!("methods = {}\n", list(&methods)));
        let mut paths = some(u, PATTERNS, 6, 3)?;
        if paths.is_empty() && !u.ratio(1, 8)? {
            paths.push(u.choose(&PATTERNS[..6])?.to_string());
        }
        f.push_str(&format!("paths = {}\n", list(&paths)));
        if u.ratio(1, 4)? {
            f.push_str(&format!(
                "source_cidrs = {}\n",
                list(&some(u, CIDRS, 6, 2)?)
            ));
        }
        if u.ratio(1, 6)? {
            f.push_str(&format!(
                "not_source_cidrs = {}\n",
                list(&some(u, CIDRS, 6, 2)?)
            ));
        }
        if u.ratio(1, 5)? {
            let key = pick(u, &["team", "env", "Team"])?;
            let values = some(u, &["checkout", "prod", "dev"], 3, 2)?;
            if u.arbitrary()? && !values.is_empty() {
                f.push_str(&format!(
                    "principal_tags = {{ {} = {} }}\n",
                    q(key),
                    q(&values[0])
                ));
            } else {
                f.push_str(&format!(
                    "principal_tags = {{ {} = {} }}\n",
                    q(key),
                    list(&values)
                ));
            }
        }
        if u.ratio(1, 5)? {
            let mut parts = Vec::new();
            if u.arbitrary()? {
                parts.push(format!("not_before = {}", q(pick(u, TIMES)?)));
            }
            if u.arbitrary()? {
                parts.push(format!("not_after = {}", q(pick(u, TIMES)?)));
            }
            if u.arbitrary()? {
                parts.push(format!("days = {}", list(&some(u, DAYS, 4, 3)?)));
            }
            if u.arbitrary()? {
                parts.push(format!("hours = {}", q(pick(u, HOURS)?)));
            }
            f.push_str(&format!("time = {{ {} }}\n", parts.join(", ")));
        }
        if u.ratio(1, 8)? {
            f.push_str(&format!("description = {}\n", q(u.arbitrary()?)));
        }
        f.push('\n');
    }
    let n = if u.ratio(1, 2)? {
        0
    } else {
        u.int_in_range(1..=3)?
    };
    for i in 0..n {
        f.push_str("[[limit]]\n");
        let id = if u.ratio(1, 10)? {
            "r0".to_owned()
        } else {
            format!("l{i}")
        };
        f.push_str(&format!("id = {}\n", q(&id)));
        match u.int_in_range(0..=5u8)? {
            0 | 1 => f.push_str(&format!(
                "caller = {}\n",
                q(mostly_one(u, &targets, NAMES)?)
            )),
            2 | 3 => f.push_str(&format!(
                "caller = {}\ntarget = {}\n",
                q(mostly_one(u, &targets, NAMES)?),
                q(mostly_one(u, &targets, NAMES)?)
            )),
            4 => f.push_str("failed_auth_per_source_ip = true\n"),
            _ => {
                if u.arbitrary()? {
                    f.push_str(&format!("target = {}\n", q(pick(u, NAMES)?)));
                }
                if u.arbitrary()? {
                    f.push_str(&format!(
                        "failed_auth_per_source_ip = {}\n",
                        u.arbitrary::<bool>()?
                    ));
                }
            }
        }
        if !u.ratio(1, 16)? {
            let requests = match u.int_in_range(0..=7u8)? {
                0 => 0,
                1 => -1,
                2 => 1 << 32,
                3 => u.arbitrary()?,
                _ => *u.choose(&[1i64, 10, 1000, 50_000, 1_000_000_000])?,
            };
            f.push_str(&format!("requests = {requests}\n"));
        }
        if !u.ratio(1, 16)? {
            let per = mostly_one(
                u,
                &["1s", "1m", "1h", "24h", "60s"],
                &[
                    "0s", "25h", "500ms", "1d", "x", "", "86400s", "86401s", "1440m",
                ],
            )?;
            f.push_str(&format!("per = {}\n", q(per)));
        }
        if u.ratio(1, 3)? {
            let burst = match u.int_in_range(0..=3u8)? {
                0 => 0,
                1 => u.arbitrary()?,
                _ => *u.choose(&[1i64, 100, 100_000])?,
            };
            f.push_str(&format!("burst = {burst}\n"));
        }
        f.push('\n');
    }
    if u.ratio(1, 10)? {
        f.push_str(u.arbitrary()?);
    }
    Ok(f)
}

fn one(u: &mut Unstructured<'_>) -> Result<()> {
    let text = if u.ratio(1, 4)? {
        u.arbitrary::<&str>()?.to_owned()
    } else {
        generate(u)?
    };
    let rules = match Rules::parse(&text, "fuzz.toml") {
        Ok(r) => r,
        Err(diags) => {
            assert!(diags.has_errors(), "a refused file without an error");
            let _ = (diags.to_string(), diags.to_json());
            return Ok(());
        }
    };
    crate::count(&crate::STATS.parsed);
    assert!(!rules.warnings().has_errors());
    let _ = rules.warnings().to_string();
    if u.ratio(1, 8)? {
        for format in Format::ALL {
            let out = render(&rules, format);
            assert!(
                out.ends_with('\n'),
                "{} rendering does not end with a newline",
                format.name()
            );
        }
    }

    // Limits hold what validation promises.
    for limit in rules.limits() {
        assert!(limit.requests >= 1 && limit.burst >= 1, "{limit:?}");
        assert!(
            limit.per >= std::time::Duration::from_secs(1)
                && limit.per <= std::time::Duration::from_secs(24 * 3600),
            "{limit:?}"
        );
        assert!(!limit.interval().is_zero(), "{limit:?}");
        let _ = (limit.to_string(), rules.limit_scope_name(&limit.scope));
    }
    let names: Vec<String> = rules.pbcs().iter().map(|p| p.name.to_string()).collect();
    for caller in 0..names.len() {
        for target in 0..names.len() {
            let _ = rules.limits_for(caller, target).count();
        }
    }
    let n = u.int_in_range(1..=8)?;
    for _ in 0..n {
        // Half the requests aim at a rule: its caller, target, a method and a path it
        // covers, so allows and explicit denies are reached, not only default denies.
        let aim = if !rules.rules().is_empty() && u.arbitrary()? {
            Some(u.choose(rules.rules())?)
        } else {
            None
        };
        let principal: String = match (aim.map(|r| &r.caller), u.int_in_range(0..=4u8)?) {
            (Some(CallerSpec::Principal(p)), _) => p.as_str().replace('*', "x"),
            (Some(CallerSpec::Pbc(i)), n) => match rules.pbcs().get(*i) {
                Some(pbc) if n > 0 && !pbc.principals.is_empty() => {
                    let p = u.choose(&pbc.principals)?;
                    p.as_str().replace('*', pick(u, &["x", "team/x", ""])?)
                }
                Some(pbc) => pbc.name.to_string(),
                None => unreachable!("a rule names PBC {i}, which does not exist"),
            },
            (_, 0) => pick(u, PRINCIPALS)?.to_owned(),
            (_, 1) => format!(
                "arn:aws:sts::111122223333:assumed-role/{}/{}",
                pick(u, &["CheckoutRole", "OrderRole", "team/XRole", "Catalogue"])?,
                pick(u, &["pod-1", "", "a/b"])?
            ),
            (_, 2) => format!(
                "arn:aws:iam::{}:role/{}",
                pick(u, &["111122223333", "444455556666", ""])?,
                pick(
                    u,
                    &[
                        "team/CheckoutRole",
                        "path/a/PaymentRole",
                        "Catalogue",
                        "x/y/"
                    ]
                )?
            ),
            (_, 3) if !names.is_empty() => u.choose(&names)?.clone(),
            _ => u.arbitrary::<&str>()?.to_owned(),
        };
        let by_pbc = names.contains(&principal) && u.ratio(1, 2)? || u.ratio(1, 8)?;
        let caller = if by_pbc {
            Caller::Pbc(&principal)
        } else {
            Caller::Principal(&principal)
        };
        let target = match aim.map(|r| r.target) {
            Some(TargetSpec::Pbc(i)) => rules.pbcs()[i].name.to_string(),
            _ if !names.is_empty() && u.ratio(3, 4)? => u.choose(&names)?.clone(),
            _ => u.arbitrary::<&str>()?.to_owned(),
        };
        let aimed_method = match aim.map(|r| r.methods.names()) {
            Some(m) if !m.is_empty() => Some(*u.choose(&m)?),
            _ => None,
        };
        let example = match aim {
            Some(r) if !r.paths.is_empty() => {
                let pattern = u.choose(&r.paths)?;
                let ex = pattern.example("x");
                // A pattern's example is a path it matches.
                let normal = NormalPath::parse(&ex).expect("a pattern's example does not parse");
                assert!(
                    pattern.matches(&normal),
                    "{ex} does not match {}",
                    pattern.as_str()
                );
                Some(pattern.example(pick(u, &["x", "42", "%41", "a b"])?))
            }
            _ => None,
        };
        let method = match aimed_method {
            Some(m) if u.ratio(7, 8)? => m,
            _ => pick(u, METHODS)?,
        };
        let path = match &example {
            Some(e) if u.ratio(7, 8)? => e.as_str(),
            _ => pick(
                u,
                &[
                    "/products/42",
                    "/products/42/reviews",
                    "/orders",
                    "/orders/",
                    "/a/x/y/b",
                    "/",
                    "/a/../b",
                    "/%2e%2e/x",
                    "/a%2Fb",
                    "//x",
                    "/x?y=1",
                    "",
                    "/products/%ZZ",
                ],
            )?,
        };
        let source_ip: Option<IpAddr> = match u.int_in_range(0..=3u8)? {
            0 => None,
            1 => Some(IpAddr::from(u.arbitrary::<[u8; 4]>()?)),
            2 => Some(IpAddr::from(u.arbitrary::<[u8; 16]>()?)),
            _ => Some(
                pick(u, &["10.1.2.3", "192.168.1.1", "::1", "8.8.8.8"])?
                    .parse()
                    .unwrap_or(IpAddr::from([0; 4])),
            ),
        };
        let tags_owned: Vec<(&str, &str)> = (0..u.int_in_range(0..=2)?)
            .map(|_| {
                Ok((
                    pick(u, &["team", "TEAM", "env"])?,
                    pick(u, &["checkout", "prod", ""])?,
                ))
            })
            .collect::<Result<_>>()?;
        let now = match u.int_in_range(0..=2u8)? {
            0 => 1_795_343_400, // 2026-11-22T10:30:00Z
            1 => u.int_in_range(-62_000_000_000i64..=250_000_000_000)?,
            _ => u.arbitrary()?,
        };
        let req = Request {
            caller,
            target: &target,
            method,
            path,
            source_ip,
            tags: &tags_owned,
            now,
        };
        let decision = rules.decide(&req);
        if decision.is_allowed() {
            crate::count(&crate::STATS.accepted);
        }
        let explanation = rules.explain(&req);
        assert_eq!(
            decision, explanation.decision,
            "decide and explain disagree\nrequest: {req:?}\nfile:\n{text}"
        );
        let _ = (decision.to_string(), format!("{explanation:?}"));
        assert_eq!(explanation.steps.len(), rules.rules().len());
        let matched = |effect: Effect| {
            explanation
                .steps
                .iter()
                .any(|s| s.outcome == Outcome::Matched && s.rule.effect == effect)
        };
        match decision.reason {
            Reason::Allowed => {
                let r = decision.rule.expect("an allow without its rule");
                assert_eq!(r.effect, Effect::Allow);
                assert!(decision.is_allowed());
                assert!(!matched(Effect::Deny), "allowed although a deny matched");
                assert!(
                    explanation
                        .steps
                        .iter()
                        .any(|s| s.rule.id == r.id && s.outcome == Outcome::Matched)
                );
            }
            Reason::ExplicitDeny => {
                let r = decision.rule.expect("an explicit deny without its rule");
                assert_eq!(r.effect, Effect::Deny);
                assert!(!decision.is_allowed());
                assert!(
                    explanation
                        .steps
                        .iter()
                        .any(|s| s.rule.id == r.id && s.outcome == Outcome::Matched)
                );
            }
            Reason::NoRuleMatched => {
                assert!(!decision.is_allowed() && decision.rule.is_none());
                assert!(
                    !matched(Effect::Allow) && !matched(Effect::Deny),
                    "default deny although a rule matched"
                );
            }
            Reason::BadPath(_) => assert!(!decision.is_allowed()),
        }
        if let Caller::Principal(p) = caller {
            let _ = rules.pbc_of(p);
        }
    }
    Ok(())
}
