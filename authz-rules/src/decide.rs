//! Decisions: what a request asks, what the rules answer, and why.
//!
//! `Rules::decide` is the fast path (the compiled matrix); `Rules::explain`
//! walks every rule in file order and says what each one made of the request.
//! Both reach the same decision; tests hold them to it.

use crate::condition::format_rfc3339;
use crate::path::{NormalPath, PathError};
use crate::principal::principal_role;
use crate::rules::{CallerSpec, Conditions, Effect, Rule, Rules, TargetSpec};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    /// The authenticated principal's ARN: a role ARN (path included, when
    /// known) or an assumed-role session ARN, which is matched as its role.
    Principal(&'a str),
    /// A PBC by name (for `explain` and test cases): matches rules naming that
    /// PBC or `*`, but no role-ARN-pattern callers, since no ARN is known.
    Pbc(&'a str),
}

/// What is being asked.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The caller.
    pub caller: Caller<'a>,
    /// The target PBC's name (as routed by the gateway).
    pub target: &'a str,
    /// The HTTP method, as sent (case-sensitive).
    pub method: &'a str,
    /// The request path as received (a query part is ignored).
    pub path: &'a str,
    /// The client address, if known.
    pub source_ip: Option<IpAddr>,
    /// The principal's tags (session tags), as key/value pairs.
    pub tags: &'a [(&'a str, &'a str)],
    /// The time of the request, Unix seconds (UTC).
    pub now: i64,
}

/// Why a decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// An allow rule matched and no deny did.
    Allowed,
    /// An explicit deny matched (it beats any allow).
    ExplicitDeny,
    /// No rule matched: default deny.
    NoRuleMatched,
    /// The path cannot be matched safely.
    BadPath(PathError),
}

/// The answer: allow or deny, the rule that made it (if any), and why.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'r> {
    /// Allow or deny.
    pub effect: Effect,
    /// The deciding rule; `None` for a default deny or a bad path.
    pub rule: Option<&'r Rule>,
    /// Why.
    pub reason: Reason,
    /// The caller's PBC, if the principal belongs to one.
    pub caller_pbc: Option<&'r str>,
}

impl Decision<'_> {
    /// True for allow.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The deciding rule's id.
    pub fn rule_id(&self) -> Option<&str> {
        self.rule.map(|r| &*r.id)
    }
}

impl PartialEq for Decision<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.effect == other.effect
            && self.rule_id() == other.rule_id()
            && self.reason == other.reason
            && self.caller_pbc == other.caller_pbc
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason, self.rule) {
            (Reason::Allowed, Some(r)) => write!(f, "allow: rule `{}`", r.id),
            (Reason::ExplicitDeny, Some(r)) => write!(f, "deny: explicit deny by rule `{}`", r.id),
            (Reason::BadPath(e), _) => write!(f, "deny: {e}"),
            _ => f.write_str("deny: no rule matched (default deny)"),
        }
    }
}

impl Conditions {
    /// Do all conditions hold for the request?
    pub fn hold(&self, req: &Request<'_>) -> bool {
        self.why_not(req).is_none()
    }

    /// The first condition that fails, in words; `None` when all hold.
    pub fn why_not(&self, req: &Request<'_>) -> Option<String> {
        if !self.source_cidrs.is_empty()
            && !req
                .source_ip
                .is_some_and(|ip| self.source_cidrs.iter().any(|c| c.contains(ip)))
        {
            return Some(match req.source_ip {
                Some(ip) => format!("source {ip} is not in {}", join(&self.source_cidrs)),
                None => "the source address is unknown".into(),
            });
        }
        if let Some(ip) = req.source_ip
            && let Some(c) = self.not_source_cidrs.iter().find(|c| c.contains(ip))
        {
            return Some(format!("source {ip} is in {c}"));
        }
        for cond in &self.principal_tags {
            let value = req
                .tags
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&cond.key))
                .map(|(_, v)| *v);
            if !value.is_some_and(|v| cond.values.iter().any(|want| **want == *v)) {
                return Some(match value {
                    Some(v) => format!("tag {}={v} is not one of the accepted values", cond.key),
                    None => format!("the principal has no tag {}", cond.key),
                });
            }
        }
        if let Some(t) = &self.time
            && !t.contains(req.now)
        {
            return Some(format!("{} is outside {t}", format_rfc3339(req.now)));
        }
        None
    }
}

fn join(c: &[crate::condition::Cidr]) -> String {
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A caller's PBC (index) and the principal pattern that matched, if any.
type PbcMatch<'r> = (usize, Option<&'r crate::principal::ArnPattern>);

/// What one rule made of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It matched.
    Matched,
    /// Its caller is someone else.
    OtherCaller,
    /// Its target is another PBC.
    OtherTarget,
    /// It does not cover the method.
    OtherMethod,
    /// None of its paths matches.
    OtherPath,
    /// A condition failed, in words.
    ConditionFailed(String),
}

/// One rule's part in an explanation.
#[derive(Clone, Debug)]
pub struct Step<'r> {
    /// The rule.
    pub rule: &'r Rule,
    /// What it made of the request.
    pub outcome: Outcome,
}

/// How a decision was reached, rule by rule.
#[derive(Clone, Debug)]
pub struct Explanation<'r> {
    /// The ARN the caller is matched by (after session -> role), if any.
    pub principal: Option<String>,
    /// The caller's PBC and the pattern that put it there.
    pub caller_pbc: Option<(&'r str, Option<&'r str>)>,
    /// Whether the target is a declared PBC.
    pub target_known: bool,
    /// The normalized path, or why it cannot be matched.
    pub path: Result<String, PathError>,
    /// Every rule, in file order, with its outcome.
    pub steps: Vec<Step<'r>>,
    /// The decision.
    pub decision: Decision<'r>,
}

impl Rules {
    /// The PBC a principal ARN belongs to (sessions are matched as their role), if any.
    pub fn pbc_of(&self, principal: &str) -> Option<&str> {
        self.matrix
            .resolve_pbc(principal)
            .and_then(|i| self.pbcs().get(i))
            .map(|p| &*p.name)
    }

    /// Decides a request with the compiled matrix. Pure: no I/O, no clock.
    pub fn decide(&self, req: &Request<'_>) -> Decision<'_> {
        self.matrix.decide(self, req)
    }

    /// Decides a request by walking every rule in file order, recording what
    /// each made of it. Slower than [`Rules::decide`]; same answer.
    pub fn explain(&self, req: &Request<'_>) -> Explanation<'_> {
        let (principal, pbc) = self.resolve_caller(req.caller);
        let path = NormalPath::parse(req.path);
        let method = crate::method::Methods::of(req.method);
        let mut steps = Vec::with_capacity(self.rules().len());
        let mut deny: Option<&Rule> = None;
        let mut allow: Option<&Rule> = None;
        for rule in self.rules() {
            let outcome =
                if !self.caller_matches(&rule.caller, principal.as_deref(), pbc.map(|p| p.0)) {
                    Outcome::OtherCaller
                } else if !match rule.target {
                    TargetSpec::Any => true,
                    TargetSpec::Pbc(i) => {
                        self.pbcs().get(i).is_some_and(|p| *p.name == *req.target)
                    }
                } {
                    Outcome::OtherTarget
                } else if !rule.methods.intersects(method) {
                    Outcome::OtherMethod
                } else if !path
                    .as_ref()
                    .is_ok_and(|p| rule.paths.iter().any(|pat| pat.matches(p)))
                {
                    Outcome::OtherPath
                } else if let Some(why) = rule.conditions.why_not(req) {
                    Outcome::ConditionFailed(why)
                } else {
                    Outcome::Matched
                };
            if outcome == Outcome::Matched {
                let slot = match rule.effect {
                    Effect::Allow => &mut allow,
                    Effect::Deny => &mut deny,
                };
                slot.get_or_insert(rule);
            }
            steps.push(Step { rule, outcome });
        }
        let caller_pbc = pbc.and_then(|(i, _)| self.pbcs().get(i)).map(|p| &*p.name);
        let decision = match (&path, deny, allow) {
            (Err(e), _, _) => Decision {
                effect: Effect::Deny,
                rule: None,
                reason: Reason::BadPath(*e),
                caller_pbc,
            },
            (_, Some(rule), _) => Decision {
                effect: Effect::Deny,
                rule: Some(rule),
                reason: Reason::ExplicitDeny,
                caller_pbc,
            },
            (_, None, Some(rule)) => Decision {
                effect: Effect::Allow,
                rule: Some(rule),
                reason: Reason::Allowed,
                caller_pbc,
            },
            (_, None, None) => Decision {
                effect: Effect::Deny,
                rule: None,
                reason: Reason::NoRuleMatched,
                caller_pbc,
            },
        };
        Explanation {
            principal: principal.map(Cow::into_owned),
            caller_pbc: pbc.and_then(|(i, pat)| {
                self.pbcs()
                    .get(i)
                    .map(|p| (&*p.name, pat.map(|x| x.as_str())))
            }),
            target_known: self.pbc(req.target).is_some(),
            path: path.map(|p| p.to_string()),
            steps,
            decision,
        }
    }

    /// The caller's matching ARN and PBC (index, and the pattern that matched),
    /// by the straightforward route: every pattern of every PBC.
    fn resolve_caller<'a>(
        &self,
        caller: Caller<'a>,
    ) -> (Option<Cow<'a, str>>, Option<PbcMatch<'_>>) {
        match caller {
            Caller::Pbc(name) => (None, self.pbc(name).map(|i| (i, None))),
            Caller::Principal(arn) => {
                let role = principal_role(arn);
                let best = self
                    .pbcs()
                    .iter()
                    .enumerate()
                    .flat_map(|(i, p)| p.principals.iter().map(move |pat| (i, pat)))
                    .filter(|(_, pat)| pat.matches(&role))
                    .enumerate()
                    .max_by_key(|(order, (_, pat))| {
                        (
                            pat.is_literal(),
                            pat.specificity(),
                            std::cmp::Reverse(*order),
                        )
                    })
                    .map(|(_, (i, pat))| (i, Some(pat)));
                (Some(role), best)
            }
        }
    }

    fn caller_matches(&self, spec: &CallerSpec, arn: Option<&str>, pbc: Option<usize>) -> bool {
        match spec {
            CallerSpec::Any => true,
            CallerSpec::Pbc(i) => pbc == Some(*i),
            CallerSpec::Principal(pat) => arn.is_some_and(|a| pat.matches(a)),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Matched => f.write_str("matched"),
            Self::OtherCaller => f.write_str("caller differs"),
            Self::OtherTarget => f.write_str("target differs"),
            Self::OtherMethod => f.write_str("method not covered"),
            Self::OtherPath => f.write_str("no path pattern matches"),
            Self::ConditionFailed(why) => write!(f, "condition failed: {why}"),
        }
    }
}
