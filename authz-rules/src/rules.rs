//! The validated model of a rules file, and `Rules::parse`, which refuses a
//! file with every error found (file, line, column, what to do).

use crate::condition::{Cidr, TagCondition, TimeWindow, parse_rfc3339};
use crate::diag::{Diagnostics, Locator, did_you_mean};
use crate::file::{RawFile, RawRule, RawTime};
use crate::limit::{Limit, LimitScope};
use crate::lint;
use crate::matrix::Matrix;
use crate::method::Methods;
use crate::path::PathPattern;
use crate::principal::ArnPattern;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The request may pass.
    Allow,
    /// The request is refused.
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// A packaged business capability: a name and the principals that are it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pbc {
    /// Its name, used as caller and target in rules.
    pub name: Box<str>,
    /// What it is, for rendered matrices.
    pub description: Option<String>,
    /// The role ARN patterns whose principals are this PBC.
    pub principals: Vec<ArnPattern>,
    /// Line of its `[[pbc]]` table.
    pub line: usize,
}

/// Who a rule is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallerSpec {
    /// `*`: every authenticated caller, PBC or not.
    Any,
    /// A PBC, by index into [`Rules::pbcs`].
    Pbc(usize),
    /// Principals whose role ARN matches the pattern, whatever their PBC.
    Principal(ArnPattern),
}

/// Which PBC a rule protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// `*`: every target.
    Any,
    /// A PBC, by index into [`Rules::pbcs`].
    Pbc(usize),
}

/// Optional conditions; a rule applies only when all of them hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conditions {
    /// The source address must be in one of these ranges.
    pub source_cidrs: Vec<Cidr>,
    /// The source address must be in none of these ranges (an unknown address
    /// is in none).
    pub not_source_cidrs: Vec<Cidr>,
    /// Each of these principal tags must have one of its listed values.
    pub principal_tags: Vec<TagCondition>,
    /// The request time must be in this window.
    pub time: Option<TimeWindow>,
}

impl Conditions {
    /// True when the rule has no conditions.
    pub fn is_empty(&self) -> bool {
        self.source_cidrs.is_empty()
            && self.not_source_cidrs.is_empty()
            && self.principal_tags.is_empty()
            && self.time.is_none()
    }
}

impl fmt::Display for Conditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let join = |c: &[Cidr]| {
            c.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.source_cidrs.is_empty() {
            parts.push(format!("source in {}", join(&self.source_cidrs)));
        }
        if !self.not_source_cidrs.is_empty() {
            parts.push(format!("source not in {}", join(&self.not_source_cidrs)));
        }
        for tag in &self.principal_tags {
            let values: Vec<&str> = tag.values.iter().map(|v| &**v).collect();
            parts.push(format!("tag {}={}", tag.key, values.join("|")));
        }
        if let Some(t) = &self.time {
            parts.push(format!("time {t}"));
        }
        f.write_str(&parts.join("; "))
    }
}

/// One `[[allow]]` or `[[deny]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique id, named in every decision it makes.
    pub id: Box<str>,
    /// Allow or deny.
    pub effect: Effect,
    /// Who.
    pub caller: CallerSpec,
    /// Which PBC.
    pub target: TargetSpec,
    /// Which methods.
    pub methods: Methods,
    /// Which paths (any of them).
    pub paths: Vec<PathPattern>,
    /// When.
    pub conditions: Conditions,
    /// Why the rule exists.
    pub description: Option<String>,
    /// Line of its table in the file.
    pub line: usize,
    pub(crate) span: Range<usize>,
}

/// A validated, compiled rules file: immutable, cheap to share.
#[derive(Debug)]
pub struct Rules {
    origin: String,
    pbcs: Vec<Pbc>,
    rules: Vec<Rule>,
    limits: Vec<Limit>,
    pbc_index: HashMap<Box<str>, usize>,
    warnings: Diagnostics,
    pub(crate) matrix: Matrix,
}

impl Rules {
    /// Parses, validates and compiles a rules file. `origin` names it in
    /// diagnostics (usually its path). On success, warnings are in
    /// [`Rules::warnings`]; on failure every error (and warning) is returned.
    pub fn parse(text: &str, origin: &str) -> Result<Rules, Diagnostics> {
        let loc = Locator::new(text, origin);
        let mut diags = Diagnostics::default();
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                diags.push(loc.toml_error(&e));
                return Err(diags);
            }
        };
        let mut builder = Builder {
            loc: &loc,
            diags: &mut diags,
            pbcs: Vec::new(),
            pbc_index: HashMap::new(),
        };
        builder.pbcs(&raw);
        let mut rules = Vec::new();
        let mut all: Vec<(Effect, &Spanned<RawRule>)> = raw
            .allow
            .iter()
            .map(|r| (Effect::Allow, r))
            .chain(raw.deny.iter().map(|r| (Effect::Deny, r)))
            .collect();
        all.sort_by_key(|(_, r)| r.span().start);
        for (effect, raw_rule) in &all {
            if let Some(rule) = builder.rule(*effect, raw_rule) {
                rules.push(rule);
            }
        }
        let mut limits = Vec::new();
        let mut failed_auth: Option<(usize, &str)> = None;
        for raw_limit in &raw.limit {
            let Some(limit) = builder.limit(raw_limit) else {
                continue;
            };
            if limit.scope == LimitScope::FailedAuthPerSourceIp {
                if let Some((first_line, first_id)) = failed_auth {
                    let span = raw_limit
                        .get_ref()
                        .failed_auth_per_source_ip
                        .as_ref()
                        .map_or_else(|| raw_limit.span(), Spanned::span);
                    builder.diags.push(loc.error(
                        "duplicate-failed-auth-limit",
                        span,
                        format!(
                            "limit `{}` is a second failed-authentication limit; `{first_id}` (line {first_line}) is the first",
                            limit.id
                        ),
                        Some(
                            "keep one [[limit]] with failed_auth_per_source_ip = true".to_string(),
                        ),
                    ));
                    continue;
                }
                failed_auth = Some((limit.line, raw_limit.get_ref().id.get_ref()));
            }
            limits.push(limit);
        }
        // Ids are unique across rules and limits, in file order.
        let mut named: Vec<(usize, &Spanned<String>, bool)> = all
            .iter()
            .map(|(_, r)| (r.span().start, &r.get_ref().id, false))
            .chain(
                raw.limit
                    .iter()
                    .map(|l| (l.span().start, &l.get_ref().id, true)),
            )
            .collect();
        named.sort_by_key(|(start, _, _)| *start);
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (start, id, is_limit) in named {
            let text = id.get_ref().as_str();
            if let Some(line) = ids.get(text) {
                let (message, help) = if is_limit {
                    (
                        format!("limit id `{text}` is already used at line {line}"),
                        "give every rule and limit its own id; refusals name limits by id",
                    )
                } else {
                    (
                        format!("rule id `{text}` is already used at line {line}"),
                        "give every rule its own id; decisions name rules by id",
                    )
                };
                builder.diags.push(loc.error(
                    "duplicate-rule-id",
                    id.span(),
                    message,
                    Some(help.to_string()),
                ));
            }
            ids.insert(text, loc.line(start));
        }
        let Builder {
            pbcs, pbc_index, ..
        } = builder;
        if !diags.has_errors() {
            lint::run(&loc, &pbcs, &rules, &mut diags);
            lint::limits(&loc, &pbcs, &rules, &limits, &mut diags);
        }
        diags.sort();
        if diags.has_errors() {
            return Err(diags);
        }
        let matrix = Matrix::compile(&pbcs, &rules);
        Ok(Rules {
            origin: origin.to_string(),
            pbcs,
            rules,
            limits,
            pbc_index,
            warnings: diags,
            matrix,
        })
    }

    /// Where the file came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The PBCs, in file order.
    pub fn pbcs(&self) -> &[Pbc] {
        &self.pbcs
    }

    /// All rules, allows and denies, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rate limits, in file order.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The limits a request from caller PBC index `caller` to target PBC index
    /// `target` counts against, in file order: `Caller` limits of that caller
    /// (or `*`), and `Edge` limits whose caller and target match (or are `*`).
    /// Never the failed-authentication limit.
    pub fn limits_for(&self, caller: usize, target: usize) -> impl Iterator<Item = &Limit> {
        self.limits
            .iter()
            .filter(move |l| l.scope.applies_to(caller, target))
    }

    /// The failed-authentication limit, if any (at most one allowed; a second
    /// is an error).
    pub fn failed_auth_limit(&self) -> Option<&Limit> {
        self.limits
            .iter()
            .find(|l| l.scope == LimitScope::FailedAuthPerSourceIp)
    }

    /// What a limit counts, in words: `calls of checkout`, `checkout -> order`,
    /// `each caller -> payment`, `failed authentication per source IP`, ...
    pub fn limit_scope_name(&self, scope: &LimitScope) -> String {
        let pbc = |i: Option<usize>, each: &str| match i {
            Some(i) => self.pbcs.get(i).map_or("?".into(), |p| p.name.to_string()),
            None => each.to_string(),
        };
        match *scope {
            LimitScope::Caller { caller: Some(c) } => format!("calls of {}", pbc(Some(c), "")),
            LimitScope::Caller { caller: None } => "calls of each caller".to_string(),
            LimitScope::Edge { caller, target } => format!(
                "{} -> {}",
                pbc(caller, "each caller"),
                pbc(target, "each target")
            ),
            LimitScope::FailedAuthPerSourceIp => "failed authentication per source IP".into(),
        }
    }

    /// The warnings found while checking the file.
    pub fn warnings(&self) -> &Diagnostics {
        &self.warnings
    }

    /// A PBC's index by name.
    pub fn pbc(&self, name: &str) -> Option<usize> {
        self.pbc_index.get(name).copied()
    }

    /// How a rule's caller reads in output (`checkout`, `*`, or an ARN pattern).
    pub fn caller_name(&self, caller: &CallerSpec) -> String {
        match caller {
            CallerSpec::Any => "*".into(),
            CallerSpec::Pbc(i) => self.pbcs.get(*i).map_or("?".into(), |p| p.name.to_string()),
            CallerSpec::Principal(p) => p.to_string(),
        }
    }

    /// How a rule's target reads in output.
    pub fn target_name(&self, target: TargetSpec) -> &str {
        match target {
            TargetSpec::Any => "*",
            TargetSpec::Pbc(i) => self.pbcs.get(i).map_or("?", |p| &p.name),
        }
    }
}

pub(crate) struct Builder<'a, 't> {
    pub(crate) loc: &'a Locator<'t>,
    pub(crate) diags: &'a mut Diagnostics,
    pub(crate) pbcs: Vec<Pbc>,
    pub(crate) pbc_index: HashMap<Box<str>, usize>,
}

impl Builder<'_, '_> {
    fn pbcs(&mut self, raw: &RawFile) {
        let mut owner: HashMap<String, (String, usize)> = HashMap::new();
        for spanned in &raw.pbc {
            let p = spanned.get_ref();
            let name = p.name.get_ref().as_str();
            let line = self.loc.line(spanned.span().start);
            if let Err(why) = check_pbc_name(name) {
                self.diags.push(self.loc.error(
                    "invalid-pbc-name",
                    p.name.span(),
                    why,
                    Some(
                        "use a short name like `checkout` (letters, digits, `-`, `_`, `.`)".into(),
                    ),
                ));
                continue;
            }
            if let Some(&i) = self.pbc_index.get(name) {
                let first = self.pbcs.get(i).map_or(0, |p| p.line);
                self.diags.push(self.loc.error(
                    "duplicate-pbc",
                    p.name.span(),
                    format!("PBC `{name}` is already declared at line {first}"),
                    Some("merge the two [[pbc]] tables".into()),
                ));
                continue;
            }
            let mut principals = Vec::new();
            for pr in &p.principals {
                match ArnPattern::parse(pr.get_ref()) {
                    Ok(pat) => {
                        if let Some((other, other_line)) = owner.get(pat.as_str()) {
                            let msg = if other == name {
                                format!("`{pat}` is listed twice for PBC `{name}`")
                            } else {
                                format!(
                                    "`{pat}` is already a principal of PBC `{other}` (line {other_line}); \
                                     a principal belongs to one PBC"
                                )
                            };
                            self.diags.push(self.loc.error(
                                "duplicate-principal",
                                pr.span(),
                                msg,
                                Some("keep it under one PBC".into()),
                            ));
                            continue;
                        }
                        owner.insert(pat.as_str().to_string(), (name.to_string(), line));
                        principals.push(pat);
                    }
                    Err(why) => self.diags.push(self.loc.error(
                        "invalid-principal",
                        pr.span(),
                        why,
                        Some("write a role ARN such as `arn:aws:iam::111122223333:role/checkout`; `*` and `?` are wildcards".into()),
                    )),
                }
            }
            self.pbc_index.insert(name.into(), self.pbcs.len());
            self.pbcs.push(Pbc {
                name: name.into(),
                description: p.description.clone(),
                principals,
                line,
            });
        }
    }

    fn rule(&mut self, effect: Effect, spanned: &Spanned<RawRule>) -> Option<Rule> {
        let r = spanned.get_ref();
        let errors_before = self.diags.errors().count();
        let id = r.id.get_ref();
        if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
            self.diags.push(self.loc.error(
                "invalid-rule-id",
                r.id.span(),
                format!("rule id `{id}` is empty or contains whitespace"),
                Some("use an id like `checkout-reads-catalogue`".into()),
            ));
        }
        let caller = self.caller(&r.caller);
        let target = self.target(&r.target);
        let methods = self.methods(&r.methods);
        let paths = self.paths(&r.paths);
        let conditions = self.conditions(r);
        if self.diags.errors().count() > errors_before {
            return None;
        }
        Some(Rule {
            id: id.as_str().into(),
            effect,
            caller: caller?,
            target: target?,
            methods: methods?,
            paths: paths?,
            conditions: conditions?,
            description: r.description.clone(),
            line: self.loc.line(spanned.span().start),
            span: spanned.span(),
        })
    }

    pub(crate) fn unknown_pbc(&mut self, role: &str, field: &Spanned<String>) {
        let name = field.get_ref();
        let known: Vec<&str> = self.pbcs.iter().map(|p| &*p.name).collect();
        let help = match did_you_mean(name, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? Declare new PBCs with [[pbc]]"),
            None if known.is_empty() => "declare it with a [[pbc]] table".to_string(),
            None => format!(
                "declare it with a [[pbc]] table, or use one of: {}",
                known.join(", ")
            ),
        };
        self.diags.push(self.loc.error(
            "unknown-pbc",
            field.span(),
            format!("{role} `{name}` is not a declared PBC"),
            Some(help),
        ));
    }

    fn caller(&mut self, field: &Spanned<String>) -> Option<CallerSpec> {
        let text = field.get_ref().as_str();
        if text == "*" {
            return Some(CallerSpec::Any);
        }
        if text.starts_with("arn:") {
            return match ArnPattern::parse(text) {
                Ok(p) => Some(CallerSpec::Principal(p)),
                Err(why) => {
                    self.diags.push(self.loc.error(
                        "invalid-principal",
                        field.span(),
                        why,
                        Some("a caller is a PBC name, a role ARN pattern or `*`".into()),
                    ));
                    None
                }
            };
        }
        match self.pbc_index.get(text) {
            Some(&i) => Some(CallerSpec::Pbc(i)),
            None => {
                self.unknown_pbc("caller", field);
                None
            }
        }
    }

    fn target(&mut self, field: &Spanned<String>) -> Option<TargetSpec> {
        let text = field.get_ref().as_str();
        if text == "*" {
            return Some(TargetSpec::Any);
        }
        match self.pbc_index.get(text) {
            Some(&i) => Some(TargetSpec::Pbc(i)),
            None => {
                self.unknown_pbc("target", field);
                None
            }
        }
    }

    fn methods(&mut self, field: &Spanned<Vec<Spanned<String>>>) -> Option<Methods> {
        if field.get_ref().is_empty() {
            self.diags.push(self.loc.error(
                "empty-list",
                field.span(),
                "`methods` is empty, so the rule can never match",
                Some("list methods like [\"GET\", \"HEAD\"], or [\"*\"] for any".to_string()),
            ));
            return None;
        }
        let mut set = Methods::NONE;
        let mut ok = true;
        for m in field.get_ref() {
            match Methods::parse(m.get_ref()) {
                Ok(bits) => set = set.union(bits),
                Err(why) => {
                    ok = false;
                    self.diags
                        .push(self.loc.error("invalid-method", m.span(), why, None));
                }
            }
        }
        ok.then_some(set)
    }

    fn paths(&mut self, field: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<PathPattern>> {
        if field.get_ref().is_empty() {
            self.diags.push(
                self.loc.error(
                    "empty-list",
                    field.span(),
                    "`paths` is empty, so the rule can never match",
                    Some(
                        "list path patterns like [\"/orders/*\"], or [\"/**\"] for any path"
                            .to_string(),
                    ),
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for p in field.get_ref() {
            match PathPattern::parse(p.get_ref()) {
                Ok(pat) => out.push(pat),
                Err(why) => {
                    ok = false;
                    self.diags.push(self.loc.error(
                        "invalid-path",
                        p.span(),
                        why,
                        Some("patterns are `/a/b`, `/a/*` (one segment), `/a/{id}` (one segment, named), `/a/**` (any depth)".into()),
                    ));
                }
            }
        }
        ok.then_some(out)
    }

    fn cidrs(
        &mut self,
        key: &str,
        field: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Option<Vec<Cidr>> {
        let Some(field) = field else {
            return Some(Vec::new());
        };
        if field.get_ref().is_empty() {
            self.diags.push(self.loc.error(
                "empty-list",
                field.span(),
                format!("`{key}` is empty"),
                Some(format!(
                    "list ranges like [\"10.0.0.0/8\"], or remove `{key}`"
                )),
            ));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for c in field.get_ref() {
            match Cidr::parse(c.get_ref()) {
                Ok(cidr) => out.push(cidr),
                Err(why) => {
                    ok = false;
                    self.diags
                        .push(self.loc.error("invalid-cidr", c.span(), why, None));
                }
            }
        }
        ok.then_some(out)
    }

    fn conditions(&mut self, r: &RawRule) -> Option<Conditions> {
        let source_cidrs = self.cidrs("source_cidrs", r.source_cidrs.as_ref());
        let not_source_cidrs = self.cidrs("not_source_cidrs", r.not_source_cidrs.as_ref());
        let mut principal_tags = Vec::new();
        let mut ok = true;
        if let Some(tags) = &r.principal_tags {
            if tags.get_ref().is_empty() {
                ok = false;
                self.diags.push(self.loc.error(
                    "empty-list",
                    tags.span(),
                    "`principal_tags` is empty",
                    Some("write tags like { team = \"payments\" }, or remove the key".to_string()),
                ));
            }
            for (key, values) in tags.get_ref() {
                let vals = &values.get_ref().0;
                if key.is_empty() || vals.is_empty() || vals.iter().any(String::is_empty) {
                    ok = false;
                    self.diags.push(
                        self.loc.error(
                            "invalid-tag",
                            values.span(),
                            format!(
                                "tag `{key}` needs a non-empty key and at least one non-empty value"
                            ),
                            Some(
                                "write `team = \"payments\"` or `team = [\"payments\", \"risk\"]`"
                                    .to_string(),
                            ),
                        ),
                    );
                    continue;
                }
                principal_tags.push(TagCondition {
                    key: key.to_ascii_lowercase().into(),
                    values: vals.iter().map(|v| v.as_str().into()).collect(),
                });
            }
        }
        let time = match &r.time {
            Some(t) => Some(self.time(t)?),
            None => None,
        };
        Some(Conditions {
            source_cidrs: source_cidrs?,
            not_source_cidrs: not_source_cidrs?,
            principal_tags,
            time,
        })
        .filter(|_| ok)
    }

    fn time(&mut self, spanned: &Spanned<RawTime>) -> Option<TimeWindow> {
        let t = spanned.get_ref();
        let mut window = TimeWindow::default();
        let mut ok = true;
        let mut instant = |this: &mut Self, field: &Option<Spanned<String>>| -> Option<i64> {
            let f = field.as_ref()?;
            match parse_rfc3339(f.get_ref()) {
                Ok(v) => Some(v),
                Err(why) => {
                    ok = false;
                    this.diags
                        .push(this.loc.error("invalid-time", f.span(), why, None));
                    None
                }
            }
        };
        window.not_before = instant(self, &t.not_before);
        window.not_after = instant(self, &t.not_after);
        if let (Some(a), Some(b)) = (window.not_before, window.not_after)
            && a >= b
        {
            ok = false;
            self.diags.push(self.loc.error(
                "invalid-time",
                spanned.span(),
                "`not_before` is not earlier than `not_after`, so the window is empty",
                None,
            ));
        }
        if let Some(days) = &t.days {
            if days.get_ref().is_empty() {
                ok = false;
                self.diags.push(self.loc.error(
                    "invalid-time",
                    days.span(),
                    "`days` is empty, so the rule never applies",
                    Some("list days like [\"mon\", \"tue\"], or remove `days`".to_string()),
                ));
            }
            let mut mask = 0u8;
            for d in days.get_ref() {
                match TimeWindow::parse_day(d.get_ref()) {
                    Ok(bit) => mask |= bit,
                    Err(why) => {
                        ok = false;
                        self.diags
                            .push(self.loc.error("invalid-time", d.span(), why, None));
                    }
                }
            }
            window.days = Some(mask);
        }
        if let Some(h) = &t.hours {
            match TimeWindow::parse_hours(h.get_ref()) {
                Ok(range) => window.hours = Some(range),
                Err(why) => {
                    ok = false;
                    self.diags
                        .push(self.loc.error("invalid-time", h.span(), why, None));
                }
            }
        }
        if window == TimeWindow::default() && ok {
            ok = false;
            self.diags.push(self.loc.error(
                "invalid-time",
                spanned.span(),
                "`time` has no bounds",
                Some("set not_before, not_after, days or hours, or remove `time`".to_string()),
            ));
        }
        ok.then_some(window)
    }
}

fn check_pbc_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a PBC name cannot be empty".into());
    }
    if name == "*" || name.starts_with("arn:") {
        return Err(format!(
            "`{name}` cannot be a PBC name: `*` and ARNs mean something else in rules"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "PBC name `{name}` has characters other than letters, digits, `-`, `_`, `.`"
        ));
    }
    Ok(())
}
