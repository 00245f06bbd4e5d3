//! `authz-rules diff`: which (caller, target, method, path) edges a change to a
//! rules file opens and closes, for code review.
//!
//! Access is compared by probing both files with the same requests: for every
//! caller and target either file names, every method their rules name, and
//! every path pattern of those rules plus each pairwise overlap of two patterns
//! (`/a/*/c` and `/a/b/*` meet at `/a/b/c`), so a new deny that bites into an
//! allow shows up where it bites. Conditions are not evaluated: an edge is
//! allowed, allowed under conditions, or denied, and a change of conditions on
//! an allowed edge is reported (and counted as a widening, since it may be one).

use crate::limit::Limit;
use crate::method::{KNOWN, Methods};
use crate::path::{NormalPath, PathPattern};
use crate::principal::principal_role;
use crate::rules::{CallerSpec, Effect, Rule, Rules, TargetSpec};
use crate::{Caller, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a file grants on one edge.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "access", rename_all = "kebab-case")]
pub enum Access {
    /// Denied: by an unconditional deny (named), or by default.
    Denied {
        /// The deny rule, if any.
        rule: Option<String>,
    },
    /// Allowed only when some conditions hold.
    Conditional {
        /// The rules involved (allows, and denies that may cancel them).
        rules: Vec<String>,
        /// The conditions, in words.
        when: String,
    },
    /// Allowed unconditionally.
    Allowed {
        /// The allow rule.
        rule: String,
    },
}

impl Access {
    fn level(&self) -> u8 {
        match self {
            Self::Denied { .. } => 0,
            Self::Conditional { .. } => 1,
            Self::Allowed { .. } => 2,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied { rule: Some(r) } => write!(f, "denied by `{r}`"),
            Self::Denied { rule: None } => f.write_str("denied (no rule)"),
            Self::Conditional { when, .. } => write!(f, "allowed when {when}"),
            Self::Allowed { rule } => write!(f, "allowed by `{rule}`"),
        }
    }
}

/// One edge whose access changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The caller: a PBC name, a role ARN pattern, or `*` (any other principal).
    pub caller: String,
    /// The target PBC.
    pub target: String,
    /// The methods (merged when they changed alike).
    pub methods: Vec<String>,
    /// The path pattern probed.
    pub path: String,
    /// Access in the old file.
    pub before: Access,
    /// Access in the new file.
    pub after: Access,
}

/// A principal added to or removed from a PBC.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Membership {
    /// The PBC.
    pub pbc: String,
    /// The principal pattern.
    pub principal: String,
    /// True when added (the principal gains all of the PBC's access).
    pub added: bool,
}

/// The difference between two rules files.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Diff {
    /// Edges the new file allows (or allows more often) than the old did.
    pub opened: Vec<Change>,
    /// Edges the new file denies (or allows less often).
    pub closed: Vec<Change>,
    /// Conditional edges whose conditions changed.
    pub changed: Vec<Change>,
    /// PBC membership changes.
    pub principals: Vec<Membership>,
    /// Rate limits added, removed or changed (by id). Never counted as
    /// widened access: a limit does not grant anything.
    pub limits: Vec<LimitChange>,
}

/// A rate limit as `diff` shows it, with PBC names rather than indexes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimitSummary {
    /// What it counts, in words (`calls of checkout`, `checkout -> order`, ...).
    pub scope: String,
    /// Requests per `per`.
    pub requests: u32,
    /// The period, in seconds.
    pub per_seconds: u64,
    /// The bucket size.
    pub burst: u32,
    #[serde(skip)]
    rate: String,
}

impl LimitSummary {
    fn of(rules: &Rules, l: &Limit) -> Self {
        LimitSummary {
            scope: rules.limit_scope_name(&l.scope),
            requests: l.requests,
            per_seconds: l.per.as_secs(),
            burst: l.burst,
            rate: l.to_string(),
        }
    }
}

impl fmt::Display for LimitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.scope, self.rate)
    }
}

/// One rate limit added, removed or changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimitChange {
    /// The limit's id.
    pub id: String,
    /// In the old file (`None`: added).
    pub before: Option<LimitSummary>,
    /// In the new file (`None`: removed).
    pub after: Option<LimitSummary>,
    /// `tightened`, `loosened` or `changed` (the scope changed, or the rate
    /// and the burst moved in opposite directions).
    pub direction: &'static str,
}

impl fmt::Display for LimitChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.before, &self.after) {
            (None, Some(a)) => write!(f, "+ {}: {a} (added)", self.id),
            (Some(b), None) => write!(f, "- {}: {b} (removed)", self.id),
            (Some(b), Some(a)) => write!(f, "~ {}: {b} -> {a} ({})", self.id, self.direction),
            (None, None) => write!(f, "  {}", self.id),
        }
    }
}

impl Diff {
    /// Did the change widen access? (Opened edges, changed conditions, or
    /// principals added to a PBC.)
    pub fn widened(&self) -> bool {
        !self.opened.is_empty()
            || !self.changed.is_empty()
            || self.principals.iter().any(|m| m.added)
    }

    /// True when nothing changed, limits included.
    pub fn is_empty(&self) -> bool {
        self.access_unchanged() && self.limits.is_empty()
    }

    /// True when no edge, condition or principal changed (limits may have).
    pub fn access_unchanged(&self) -> bool {
        self.opened.is_empty()
            && self.closed.is_empty()
            && self.changed.is_empty()
            && self.principals.is_empty()
    }
}

/// A probe caller: who, and how to ask each file.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Probe {
    Pbc(String),
    Arn { pattern: String, example: String },
    Other,
}

const OTHER_PRINCIPAL: &str = "arn:aws:iam::000000000000:role/authz-rules-diff-unlisted";
const FILL: &str = "authz-rules-any";

impl Probe {
    fn label(&self) -> String {
        match self {
            Self::Pbc(n) => n.clone(),
            Self::Arn { pattern, .. } => pattern.clone(),
            Self::Other => "* (a principal in no PBC)".into(),
        }
    }

    fn caller(&self) -> Caller<'_> {
        match self {
            Self::Pbc(n) => Caller::Pbc(n),
            Self::Arn { example, .. } => Caller::Principal(example),
            Self::Other => Caller::Principal(OTHER_PRINCIPAL),
        }
    }

    /// The rules of `rules` that can apply to this caller.
    fn relevant<'r>(&self, rules: &'r Rules) -> Vec<&'r Rule> {
        let (arn, pbc) = match self.caller() {
            Caller::Pbc(n) => (None, rules.pbc(n)),
            Caller::Principal(a) => {
                let d = rules.decide(&Request {
                    caller: Caller::Principal(a),
                    target: "",
                    method: "GET",
                    path: "/",
                    source_ip: None,
                    tags: &[],
                    now: 0,
                });
                (
                    Some(principal_role(a).into_owned()),
                    d.caller_pbc.and_then(|n| rules.pbc(n)),
                )
            }
        };
        rules
            .rules()
            .iter()
            .filter(|r| match &r.caller {
                CallerSpec::Any => true,
                CallerSpec::Pbc(i) => pbc == Some(*i),
                CallerSpec::Principal(p) => arn.as_deref().is_some_and(|a| p.matches(a)),
            })
            .collect()
    }
}

/// Compares two rules files.
pub fn diff(old: &Rules, new: &Rules) -> Diff {
    let mut out = Diff {
        principals: membership(old, new),
        limits: limit_changes(old, new),
        ..Diff::default()
    };
    let mut probes: BTreeSet<Probe> = BTreeSet::new();
    let mut targets: BTreeSet<String> = BTreeSet::new();
    for rules in [old, new] {
        for p in rules.pbcs() {
            probes.insert(Probe::Pbc(p.name.to_string()));
            targets.insert(p.name.to_string());
        }
        for r in rules.rules() {
            if let CallerSpec::Principal(p) = &r.caller {
                probes.insert(Probe::Arn {
                    pattern: p.to_string(),
                    example: p.as_str().replace('*', FILL).replace('?', "x"),
                });
            }
        }
    }
    probes.insert(Probe::Other);
    // Keep PBC order stable by file order of the new file, then the old.
    let order: Vec<String> = new
        .pbcs()
        .iter()
        .chain(old.pbcs())
        .map(|p| p.name.to_string())
        .collect();
    let pos = |n: &str| order.iter().position(|o| o == n).unwrap_or(usize::MAX);
    let mut probe_list: Vec<Probe> = probes.into_iter().collect();
    probe_list.sort_by_key(|p| match p {
        Probe::Pbc(n) => (0, pos(n), String::new()),
        Probe::Arn { pattern, .. } => (1, 0, pattern.clone()),
        Probe::Other => (2, 0, String::new()),
    });
    let mut target_list: Vec<String> = targets.into_iter().collect();
    target_list.sort_by_key(|t| pos(t));

    for probe in &probe_list {
        let rel_old = probe.relevant(old);
        let rel_new = probe.relevant(new);
        for target in &target_list {
            let on_target = |r: &&Rule, rules: &Rules| match r.target {
                TargetSpec::Any => true,
                TargetSpec::Pbc(i) => rules.pbcs().get(i).is_some_and(|p| *p.name == **target),
            };
            let t_old: Vec<&Rule> = rel_old
                .iter()
                .copied()
                .filter(|r| on_target(r, old))
                .collect();
            let t_new: Vec<&Rule> = rel_new
                .iter()
                .copied()
                .filter(|r| on_target(r, new))
                .collect();
            if t_old.is_empty() && t_new.is_empty() {
                continue;
            }
            probe_edge(probe, target, &t_old, &t_new, &mut out);
        }
    }
    out
}

fn probe_edge(probe: &Probe, target: &str, t_old: &[&Rule], t_new: &[&Rule], out: &mut Diff) {
    let all: Vec<&Rule> = t_old.iter().chain(t_new).copied().collect();
    // Methods: each one the rules name; `*` means every method.
    let mut mask = Methods::NONE;
    for r in &all {
        mask = mask.union(r.methods);
    }
    let mut methods: Vec<&str> = if mask.is_any() {
        KNOWN.iter().copied().chain(["PROPFIND"]).collect()
    } else {
        mask.names()
    };
    methods.dedup();
    // Paths: each pattern, and each pairwise meet.
    let mut patterns: Vec<PathPattern> = Vec::new();
    // `/a/{id}` and `/a/*` are the same pattern: compare segments, not text.
    let known =
        |ps: &[PathPattern], p: &PathPattern| ps.iter().any(|q| q.segments() == p.segments());
    for r in &all {
        for p in &r.paths {
            if !known(&patterns, p) {
                patterns.push(p.clone());
            }
        }
    }
    let base = patterns.len();
    for i in 0..base {
        for j in i + 1..base {
            if let (Some(a), Some(b)) = (patterns.get(i), patterns.get(j))
                && let Some(m) = a.meet(b)
                && !known(&patterns, &m)
            {
                patterns.push(m);
            }
        }
    }
    // (path, before, after) -> methods
    let mut grouped: BTreeMap<(usize, String), (Access, Access, Vec<String>)> = BTreeMap::new();
    for (pi, pattern) in patterns.iter().enumerate() {
        let example = pattern.example(FILL);
        let Ok(path) = NormalPath::parse(&example) else {
            continue;
        };
        for method in &methods {
            let bit = Methods::of(method);
            let before = access(t_old, bit, &path);
            let after = access(t_new, bit, &path);
            if before == after {
                continue;
            }
            let key = (pi, format!("{before:?}{after:?}"));
            grouped
                .entry(key)
                .or_insert_with(|| (before.clone(), after.clone(), Vec::new()))
                .2
                .push((*method).to_string());
        }
    }
    for ((pi, _), (before, after, methods)) in grouped {
        let change = Change {
            caller: probe.label(),
            target: target.to_string(),
            methods,
            path: patterns.get(pi).map_or_else(String::new, |p| p.to_string()),
            before: before.clone(),
            after: after.clone(),
        };
        match after.level().cmp(&before.level()) {
            std::cmp::Ordering::Greater => out.opened.push(change),
            std::cmp::Ordering::Less => out.closed.push(change),
            std::cmp::Ordering::Equal => {
                // Same level: for unconditional allows and denies only the
                // rule name changed, which grants nothing new.
                if matches!(after, Access::Conditional { .. }) {
                    let (Access::Conditional { when: a, .. }, Access::Conditional { when: b, .. }) =
                        (&before, &after)
                    else {
                        continue;
                    };
                    if a != b {
                        out.changed.push(change);
                    }
                }
            }
        }
    }
}

/// What `rules` (already narrowed to one caller and target) grant for one
/// method and path, with conditions left symbolic.
fn access(rules: &[&Rule], method: Methods, path: &NormalPath<'_>) -> Access {
    let hits: Vec<&Rule> = rules
        .iter()
        .copied()
        .filter(|r| r.methods.intersects(method) && r.paths.iter().any(|p| p.matches(path)))
        .collect();
    if let Some(deny) = hits
        .iter()
        .find(|r| r.effect == Effect::Deny && r.conditions.is_empty())
    {
        return Access::Denied {
            rule: Some(deny.id.to_string()),
        };
    }
    let cond_denies: Vec<&Rule> = hits
        .iter()
        .copied()
        .filter(|r| r.effect == Effect::Deny)
        .collect();
    let allows: Vec<&Rule> = hits
        .iter()
        .copied()
        .filter(|r| r.effect == Effect::Allow)
        .collect();
    let unless = || {
        cond_denies
            .iter()
            .map(|d| format!("not ({})", d.conditions))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    match allows.iter().find(|r| r.conditions.is_empty()) {
        Some(a) if cond_denies.is_empty() => Access::Allowed {
            rule: a.id.to_string(),
        },
        Some(a) => Access::Conditional {
            rules: std::iter::once(a.id.to_string())
                .chain(cond_denies.iter().map(|d| d.id.to_string()))
                .collect(),
            when: unless(),
        },
        None if allows.is_empty() => Access::Denied { rule: None },
        None => {
            let any_of = allows
                .iter()
                .map(|a| format!("({})", a.conditions))
                .collect::<Vec<_>>()
                .join(" or ");
            let when = if cond_denies.is_empty() {
                any_of
            } else {
                format!("{any_of} and {}", unless())
            };
            Access::Conditional {
                rules: allows
                    .iter()
                    .chain(cond_denies.iter())
                    .map(|r| r.id.to_string())
                    .collect(),
                when,
            }
        }
    }
}

fn membership(old: &Rules, new: &Rules) -> Vec<Membership> {
    let mut out = Vec::new();
    let set = |rules: &Rules| -> BTreeSet<(String, String)> {
        rules
            .pbcs()
            .iter()
            .flat_map(|p| {
                p.principals
                    .iter()
                    .map(|a| (p.name.to_string(), a.to_string()))
            })
            .collect()
    };
    let (a, b) = (set(old), set(new));
    for (pbc, principal) in b.difference(&a) {
        out.push(Membership {
            pbc: pbc.clone(),
            principal: principal.clone(),
            added: true,
        });
    }
    for (pbc, principal) in a.difference(&b) {
        out.push(Membership {
            pbc: pbc.clone(),
            principal: principal.clone(),
            added: false,
        });
    }
    out
}

/// Limits by id: added, removed, or changed in scope, rate or burst (a new
/// description alone is no change).
fn limit_changes(old: &Rules, new: &Rules) -> Vec<LimitChange> {
    let mut out = Vec::new();
    let find = |rules: &'_ Rules, id: &str| rules.limits().iter().find(|l| l.id == id).cloned();
    for l in new.limits() {
        let after = LimitSummary::of(new, l);
        match find(old, &l.id) {
            None => out.push(LimitChange {
                id: l.id.clone(),
                before: None,
                after: Some(after),
                direction: "tightened",
            }),
            Some(o) => {
                let before = LimitSummary::of(old, &o);
                if before == after {
                    continue;
                }
                // Compare rates as requests per second without rounding:
                // a/p < b/q  <=>  a*q < b*p.
                let rate = (u64::from(l.requests) * o.per.as_secs())
                    .cmp(&(u64::from(o.requests) * l.per.as_secs()));
                let burst = l.burst.cmp(&o.burst);
                use std::cmp::Ordering::{Equal, Greater, Less};
                let direction = if before.scope != after.scope {
                    "changed"
                } else {
                    match (rate, burst) {
                        (Greater | Equal, Greater | Equal) => "loosened",
                        (Less | Equal, Less | Equal) => "tightened",
                        _ => "changed",
                    }
                };
                out.push(LimitChange {
                    id: l.id.clone(),
                    before: Some(before),
                    after: Some(after),
                    direction,
                });
            }
        }
    }
    for l in old.limits() {
        if find(new, &l.id).is_none() {
            out.push(LimitChange {
                id: l.id.clone(),
                before: Some(LimitSummary::of(old, l)),
                after: None,
                direction: "loosened",
            });
        }
    }
    out
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}  {} {}  ({} -> {})",
            self.caller,
            self.target,
            self.methods.join(","),
            self.path,
            self.before,
            self.after
        )
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change in access\n");
        }

        let section = |f: &mut fmt::Formatter<'_>, title: &str, mark: char, items: &[Change]| {
            if items.is_empty() {
                return Ok(());
            }
            writeln!(f, "{title}:")?;
            for c in items {
                writeln!(f, "  {mark} {c}")?;
            }
            writeln!(f)
        };
        section(f, "opened (access widened)", '+', &self.opened)?;
        section(f, "closed (access narrowed)", '-', &self.closed)?;
        section(
            f,
            "conditions changed (review: may widen)",
            '~',
            &self.changed,
        )?;
        if !self.principals.is_empty() {
            writeln!(f, "principals:")?;
            for m in &self.principals {
                let (mark, what) = if m.added {
                    ('+', "gains all of its access")
                } else {
                    ('-', "loses its access")
                };
                writeln!(f, "  {mark} {}: {} ({what})", m.pbc, m.principal)?;
            }
            writeln!(f)?;
        }
        if !self.limits.is_empty() {
            writeln!(f, "rate limits (not access: never counted as widened):")?;
            for l in &self.limits {
                writeln!(f, "  {l}")?;
            }
            writeln!(f)?;
        }
        if self.access_unchanged() {
            return writeln!(
                f,
                "no change in access; {} rate limit change(s)",
                self.limits.len()
            );
        }
        writeln!(
            f,
            "{} opened, {} closed, {} with changed conditions, {} principal change(s){}; access widened: {}",
            self.opened.len(),
            self.closed.len(),
            self.changed.len(),
            self.principals.len(),
            if self.limits.is_empty() {
                String::new()
            } else {
                format!(", {} rate limit change(s)", self.limits.len())
            },
            if self.widened() { "yes" } else { "no" }
        )
    }
}
