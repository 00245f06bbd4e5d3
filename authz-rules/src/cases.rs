//! Policy tests: a TOML table of requests and the decisions a team expects,
//! run by `authz-rules test` so a rules change that breaks one fails CI.
//!
//! ```toml
//! [[case]]
//! name = "storefront browses the catalogue"    # optional
//! caller = "storefront"                        # PBC name or principal ARN
//! target = "catalogue"
//! method = "GET"
//! path = "/products/42"
//! source_ip = "10.1.2.3"                       # optional
//! tags = { team = "web" }                      # optional principal tags
//! time = "2026-11-23T09:00:00Z"                # optional; default: now
//! expect = "allow"                             # or "deny"
//! rule = "storefront-browses-catalogue"        # optional: the deciding rule
//! reason = "allowed"                           # optional: allowed | explicit-deny
//!                                              #   | default-deny | bad-path
//! ```

use crate::condition::parse_rfc3339;
use crate::decide::{Caller, Reason, Request};
use crate::diag::{Diagnostics, Locator, did_you_mean};
use crate::rules::{Effect, Rules};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCases {
    #[serde(default)]
    case: Vec<Spanned<RawCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    name: Option<String>,
    caller: Spanned<String>,
    target: Spanned<String>,
    method: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    source_ip: Option<Spanned<String>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    time: Option<Spanned<String>>,
    expect: Spanned<String>,
    #[serde(default)]
    rule: Option<Spanned<String>>,
    #[serde(default)]
    reason: Option<Spanned<String>>,
}

/// The reason a case may pin, in the words of the cases file.
const REASONS: [&str; 4] = ["allowed", "explicit-deny", "default-deny", "bad-path"];

fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::Allowed => "allowed",
        Reason::ExplicitDeny => "explicit-deny",
        Reason::NoRuleMatched => "default-deny",
        Reason::BadPath(_) => "bad-path",
    }
}

/// One expected decision.
#[derive(Clone, Debug)]
pub struct Case {
    /// A name for reports.
    pub name: String,
    /// Line of its `[[case]]` table.
    pub line: usize,
    caller: String,
    caller_is_arn: bool,
    target: String,
    method: String,
    path: String,
    source_ip: Option<IpAddr>,
    tags: Vec<(String, String)>,
    time: Option<i64>,
    expect: Effect,
    rule: Option<String>,
    reason: Option<&'static str>,
}

/// A validated cases file.
#[derive(Clone, Debug)]
pub struct Cases {
    origin: String,
    cases: Vec<Case>,
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseResult<'c> {
    /// The case.
    pub case: &'c Case,
    /// What the rules decided, in words.
    pub got: String,
    /// Why the case failed; `None` when it passed.
    pub failure: Option<String>,
}

impl CaseResult<'_> {
    /// True when the decision was the expected one.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl Cases {
    /// Parses a cases file against the rules it tests: callers and targets must
    /// be PBCs of `rules` (or ARNs), so a typo cannot make a deny case pass.
    pub fn parse(text: &str, origin: &str, rules: &Rules) -> Result<Cases, Diagnostics> {
        let loc = Locator::new(text, origin);
        let mut diags = Diagnostics::default();
        let raw: RawCases = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                diags.push(loc.toml_error(&e));
                return Err(diags);
            }
        };
        if raw.case.is_empty() {
            diags.push(loc.error(
                "no-cases",
                0..0,
                "the file has no [[case]] tables",
                Some("add cases: caller, target, method, path and expect".to_string()),
            ));
        }
        let pbc_names: Vec<&str> = rules.pbcs().iter().map(|p| &*p.name).collect();
        let mut cases = Vec::new();
        for spanned in &raw.case {
            let c = spanned.get_ref();
            let before = diags.errors().count();
            let pbc_field = |role: &str, field: &Spanned<String>, diags: &mut Diagnostics| {
                let name = field.get_ref();
                if rules.pbc(name).is_none() {
                    let help = did_you_mean(name, pbc_names.iter().copied()).map_or_else(
                        || format!("PBCs in {}: {}", rules.origin(), pbc_names.join(", ")),
                        |s| format!("did you mean `{s}`?"),
                    );
                    diags.push(loc.error(
                        "unknown-pbc",
                        field.span(),
                        format!("{role} `{name}` is not a PBC of {}", rules.origin()),
                        Some(help),
                    ));
                }
            };
            let caller_is_arn = c.caller.get_ref().starts_with("arn:");
            if !caller_is_arn {
                pbc_field("caller", &c.caller, &mut diags);
            }
            pbc_field("target", &c.target, &mut diags);
            let method = c.method.get_ref();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                diags.push(loc.error(
                    "invalid-method",
                    c.method.span(),
                    format!("`{method}` is not an HTTP method"),
                    None,
                ));
            }
            let source_ip =
                c.source_ip
                    .as_ref()
                    .and_then(|ip| match ip.get_ref().parse::<IpAddr>() {
                        Ok(v) => Some(v),
                        Err(_) => {
                            diags.push(loc.error(
                                "invalid-ip",
                                ip.span(),
                                format!("`{}` is not an IP address", ip.get_ref()),
                                Some("write an address like \"10.1.2.3\" or \"::1\"".to_string()),
                            ));
                            None
                        }
                    });
            let time = c
                .time
                .as_ref()
                .and_then(|t| match parse_rfc3339(t.get_ref()) {
                    Ok(v) => Some(v),
                    Err(why) => {
                        diags.push(loc.error("invalid-time", t.span(), why, None));
                        None
                    }
                });
            let expect = match c.expect.get_ref().as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                other => {
                    diags.push(loc.error(
                        "invalid-expect",
                        c.expect.span(),
                        format!("expect = `{other}`: write \"allow\" or \"deny\""),
                        None,
                    ));
                    Effect::Deny
                }
            };
            if let Some(rule) = &c.rule
                && !rules.rules().iter().any(|r| *r.id == **rule.get_ref())
            {
                let help = did_you_mean(rule.get_ref(), rules.rules().iter().map(|r| &*r.id))
                    .map(|s| format!("did you mean `{s}`?"));
                diags.push(loc.error(
                    "unknown-rule",
                    rule.span(),
                    format!("rule `{}` is not in {}", rule.get_ref(), rules.origin()),
                    help,
                ));
            }
            let reason = c.reason.as_ref().and_then(|r| {
                let found = REASONS
                    .iter()
                    .find(|x| **x == r.get_ref().as_str())
                    .copied();
                if found.is_none() {
                    diags.push(loc.error(
                        "invalid-reason",
                        r.span(),
                        format!(
                            "reason `{}` is not one of {}",
                            r.get_ref(),
                            REASONS.join(", ")
                        ),
                        None,
                    ));
                }
                found
            });
            if diags.errors().count() > before {
                continue;
            }
            let name = c.name.clone().unwrap_or_else(|| {
                format!(
                    "{} {} {} -> {}",
                    c.method.get_ref(),
                    c.path.get_ref(),
                    c.caller.get_ref(),
                    c.target.get_ref()
                )
            });
            cases.push(Case {
                name,
                line: loc.line(spanned.span().start),
                caller: c.caller.get_ref().clone(),
                caller_is_arn,
                target: c.target.get_ref().clone(),
                method: method.clone(),
                path: c.path.get_ref().clone(),
                source_ip,
                tags: c.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                time,
                expect,
                rule: c.rule.as_ref().map(|r| r.get_ref().clone()),
                reason,
            });
        }
        diags.sort();
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(Cases {
            origin: origin.to_string(),
            cases,
        })
    }

    /// Where the cases came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The cases, in file order.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// Runs every case; `now` is used for cases without a `time`.
    pub fn run<'c>(&'c self, rules: &Rules, now: i64) -> Vec<CaseResult<'c>> {
        self.cases.iter().map(|case| case.run(rules, now)).collect()
    }
}

impl Case {
    fn run<'c>(&'c self, rules: &Rules, now: i64) -> CaseResult<'c> {
        let tags: Vec<(&str, &str)> = self
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = Request {
            caller: if self.caller_is_arn {
                Caller::Principal(&self.caller)
            } else {
                Caller::Pbc(&self.caller)
            },
            target: &self.target,
            method: &self.method,
            path: &self.path,
            source_ip: self.source_ip,
            tags: &tags,
            now: self.time.unwrap_or(now),
        };
        let decision = rules.decide(&req);
        let got = decision.to_string();
        let mut problems = Vec::new();
        if decision.effect != self.expect {
            problems.push(format!("expected {}, got {}", self.expect, decision.effect));
        }
        if let Some(want) = &self.rule
            && decision.rule_id() != Some(want.as_str())
        {
            problems.push(format!(
                "expected rule `{want}`, got {}",
                decision
                    .rule_id()
                    .map_or("no rule".to_string(), |r| format!("`{r}`"))
            ));
        }
        if let Some(want) = self.reason
            && reason_name(decision.reason) != want
        {
            problems.push(format!(
                "expected reason {want}, got {}",
                reason_name(decision.reason)
            ));
        }
        CaseResult {
            case: self,
            got,
            failure: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }
}

impl fmt::Display for CaseResult<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => write!(
                f,
                "ok    {} (line {}): {}",
                self.case.name, self.case.line, self.got
            ),
            Some(why) => write!(
                f,
                "FAIL  {} (line {}): {why}\n      decision: {}",
                self.case.name, self.case.line, self.got
            ),
        }
    }
}
