//! Warnings: rules that can never decide anything, allows a deny cancels,
//! `*`-to-`*` allows, PBCs whose principals overlap or that have none, and
//! limits that count nothing an allow rule lets through.

use crate::diag::{Diagnostics, Locator};
use crate::limit::{Limit, LimitScope};
use crate::rules::{CallerSpec, Effect, Pbc, Rule, TargetSpec};
use std::collections::HashMap;

/// Does `outer` cover every request `inner` covers (ignoring conditions)?
pub(crate) fn covers(pbcs: &[Pbc], outer: &Rule, inner: &Rule) -> bool {
    let target = match (outer.target, inner.target) {
        (TargetSpec::Any, _) => true,
        (TargetSpec::Pbc(a), TargetSpec::Pbc(b)) => a == b,
        (TargetSpec::Pbc(_), TargetSpec::Any) => false,
    };
    target
        && inner.methods.is_subset(outer.methods)
        && caller_covers(pbcs, &outer.caller, &inner.caller)
        && inner
            .paths
            .iter()
            .all(|p| outer.paths.iter().any(|o| p.covered_by(o)))
}

fn caller_covers(pbcs: &[Pbc], outer: &CallerSpec, inner: &CallerSpec) -> bool {
    match (outer, inner) {
        (CallerSpec::Any, _) => true,
        (CallerSpec::Pbc(a), CallerSpec::Pbc(b)) => a == b,
        (CallerSpec::Principal(o), CallerSpec::Principal(i)) => i.covered_by(o),
        (CallerSpec::Principal(o), CallerSpec::Pbc(b)) => pbcs.get(*b).is_some_and(|p| {
            !p.principals.is_empty() && p.principals.iter().all(|i| i.covered_by(o))
        }),
        _ => false,
    }
}

/// Bucket key: (caller, target) in a form rules can be grouped by.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CallerKey<'a> {
    Any,
    Pbc(usize),
    Principal(&'a str),
}

pub(crate) fn run(loc: &Locator<'_>, pbcs: &[Pbc], rules: &[Rule], diags: &mut Diagnostics) {
    if rules.is_empty() {
        diags.push(loc.warning(
            "no-rules",
            0..0,
            "the file has no rules, so every request is denied",
            Some("add [[allow]] rules for the calls your PBCs make".to_string()),
        ));
    }
    overlapping_principals(loc, pbcs, diags);
    let mut buckets: HashMap<(CallerKey<'_>, Option<usize>), Vec<usize>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        buckets.entry(key(r)).or_default().push(i);
    }
    let mut principal_keys: Vec<(&str, &crate::principal::ArnPattern)> = Vec::new();
    for r in rules {
        if let CallerSpec::Principal(p) = &r.caller
            && !principal_keys.iter().any(|(k, _)| *k == p.as_str())
        {
            principal_keys.push((p.as_str(), p));
        }
    }
    // Which role-ARN callers cover each caller, worked out once per caller
    // rather than once per rule.
    let mut wider: HashMap<CallerKey<'_>, Vec<&str>> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.effect == Effect::Allow
            && rule.caller == CallerSpec::Any
            && rule.target == TargetSpec::Any
        {
            diags.push(
                loc.warning(
                    "star-to-star",
                    rule.span.clone(),
                    format!("rule `{}` lets every caller call every PBC", rule.id),
                    Some(
                        "name the caller and the target; a zero-trust matrix lists its edges"
                            .to_string(),
                    ),
                ),
            );
        }
        if let CallerSpec::Pbc(p) = rule.caller
            && pbcs.get(p).is_some_and(|p| p.principals.is_empty())
        {
            diags.push(loc.warning(
                "caller-without-principals",
                rule.span.clone(),
                format!(
                    "rule `{}` names caller `{}`, which has no principals, so it never matches a signed request",
                    rule.id,
                    pbcs.get(p).map_or("", |p| &p.name)
                ),
                Some("list the PBC's role ARNs under `principals`".to_string()),
            ));
        }
        // Candidates that could cover this rule: same or wider caller and target.
        let mut callers = vec![CallerKey::Any];
        match &rule.caller {
            CallerSpec::Any => {}
            CallerSpec::Pbc(p) => callers.push(CallerKey::Pbc(*p)),
            CallerSpec::Principal(_) => {}
        }
        let own = key(rule).0;
        let covering = wider.entry(own).or_insert_with(|| {
            principal_keys
                .iter()
                .filter(|(_, pat)| {
                    caller_covers(pbcs, &CallerSpec::Principal((*pat).clone()), &rule.caller)
                })
                .map(|(k, _)| *k)
                .collect()
        });
        callers.extend(covering.iter().map(|p| CallerKey::Principal(p)));
        let targets: &[Option<usize>] = match rule.target {
            TargetSpec::Any => &[None],
            TargetSpec::Pbc(t) => &[Some(t), None],
        };
        let mut shadowed_by: Option<&Rule> = None;
        let mut cancelled_by: Option<&Rule> = None;
        for c in &callers {
            for t in targets {
                let Some(bucket) = buckets.get(&(c.clone(), *t)) else {
                    continue;
                };
                for &j in bucket {
                    let Some(other) = rules.get(j) else { continue };
                    if j == i || !other.conditions.is_empty() || !covers(pbcs, other, rule) {
                        continue;
                    }
                    if other.effect == rule.effect
                        && j < i
                        && shadowed_by.is_none_or(|s| other.line < s.line)
                    {
                        shadowed_by = Some(other);
                    }
                    if other.effect == Effect::Deny
                        && rule.effect == Effect::Allow
                        && cancelled_by.is_none_or(|c| other.line < c.line)
                    {
                        cancelled_by = Some(other);
                    }
                }
            }
        }
        if let Some(cancel) = cancelled_by {
            diags.push(loc.warning(
                "cancelled-allow",
                rule.span.clone(),
                format!(
                    "allow `{}` never takes effect: deny `{}` (line {}) covers all of it",
                    rule.id, cancel.id, cancel.line
                ),
                Some("remove the allow, or narrow the deny".to_string()),
            ));
        } else if let Some(shadow) = shadowed_by {
            diags.push(loc.warning(
                "shadowed-rule",
                rule.span.clone(),
                format!(
                    "{} `{}` never decides anything: `{}` (line {}) comes first and covers all of it",
                    rule.effect, rule.id, shadow.id, shadow.line
                ),
                Some("remove it, or merge the two rules".to_string()),
            ));
        }
    }
}

fn key(r: &Rule) -> (CallerKey<'_>, Option<usize>) {
    let c = match &r.caller {
        CallerSpec::Any => CallerKey::Any,
        CallerSpec::Pbc(p) => CallerKey::Pbc(*p),
        CallerSpec::Principal(p) => CallerKey::Principal(p.as_str()),
    };
    let t = match r.target {
        TargetSpec::Any => None,
        TargetSpec::Pbc(t) => Some(t),
    };
    (c, t)
}

fn overlapping_principals(loc: &Locator<'_>, pbcs: &[Pbc], diags: &mut Diagnostics) {
    let all: Vec<(usize, &crate::principal::ArnPattern)> = pbcs
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.principals.iter().map(move |pat| (i, pat)))
        .collect();
    for (n, (i, a)) in all.iter().enumerate() {
        for (j, b) in all.iter().skip(n + 1) {
            if i == j || !a.overlaps(b) {
                continue;
            }
            let (Some(pa), Some(pb)) = (pbcs.get(*i), pbcs.get(*j)) else {
                continue;
            };
            let a_wins = (a.is_literal(), a.specificity()) >= (b.is_literal(), b.specificity());
            let winner = if a_wins { &pa.name } else { &pb.name };
            let line_start = loc.offset_of_line(pb.line);
            diags.push(loc.warning(
                "overlapping-principals",
                line_start..line_start,
                format!(
                    "principal `{b}` of PBC `{}` overlaps `{a}` of PBC `{}`; a principal matching both is `{winner}` (the more specific pattern wins)",
                    pb.name, pa.name
                ),
                Some("make the patterns disjoint so each role belongs to one PBC".to_string()),
            ));
        }
    }
}

/// Warnings about `[[limit]]`s: a caller that never signs a request, and an
/// edge no allow rule opens (so the limit only counts calls that are denied).
pub(crate) fn limits(
    loc: &Locator<'_>,
    pbcs: &[Pbc],
    rules: &[Rule],
    limits: &[Limit],
    diags: &mut Diagnostics,
) {
    let name = |i: usize| pbcs.get(i).map_or("?", |p| &*p.name);
    for limit in limits {
        let (caller, target) = limit.scope.parts();
        if limit.scope == LimitScope::FailedAuthPerSourceIp {
            continue;
        }
        let at = loc.offset_of_line(limit.line);
        let span = at..at + "[[limit]]".len();
        if let Some(c) = caller
            && pbcs.get(c).is_some_and(|p| p.principals.is_empty())
        {
            diags.push(loc.warning(
                "caller-without-principals",
                span,
                format!(
                    "limit `{}` names caller `{}`, which has no principals, so it never counts a signed request",
                    limit.id,
                    name(c)
                ),
                Some("list the PBC's role ARNs under `principals`".to_string()),
            ));
            continue;
        }
        let opens = rules.iter().any(|r| {
            r.effect == Effect::Allow
                && match (caller, &r.caller) {
                    (_, CallerSpec::Any) | (None, _) => true,
                    (Some(c), CallerSpec::Pbc(p)) => c == *p,
                    (Some(c), CallerSpec::Principal(pat)) => pbcs
                        .get(c)
                        .is_some_and(|p| p.principals.iter().any(|own| own.overlaps(pat))),
                }
                && match (target, r.target) {
                    (_, TargetSpec::Any) | (None, _) => true,
                    (Some(t), TargetSpec::Pbc(p)) => t == p,
                }
        });
        if !opens {
            let edge = match (caller, target) {
                (Some(c), Some(t)) => format!("`{}` call `{}`", name(c), name(t)),
                (Some(c), None) => format!("`{}` call any PBC", name(c)),
                (None, Some(t)) => format!("any caller call `{}`", name(t)),
                (None, None) => "any caller call any PBC".to_string(),
            };
            diags.push(loc.warning(
                "limit-on-denied-edge",
                span,
                format!(
                    "limit `{}` limits calls that are always denied: no allow rule lets {edge}",
                    limit.id
                ),
                Some(
                    "denied calls count too, so the limit only turns some 403s into 429s; remove it, or add the allow rule it was meant for"
                        .to_string(),
                ),
            ));
        }
    }
}
