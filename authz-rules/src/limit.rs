//! Rate limits, declared beside the matrix with `[[limit]]`: per caller PBC,
//! per (caller, target), and per source IP for requests that fail
//! authentication. The model and its validation; the gateway enforces them.

use crate::file::RawLimit;
use crate::rules::Builder;
use std::fmt;
use std::time::Duration;
use toml::Spanned;

/// One `[[limit]]`: a token bucket (GCRA) of `burst` requests, refilled at
/// `requests` per `per`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Unique among rules and limits; named in refusals and in `explain`.
    pub id: String,
    /// Why the limit exists.
    pub description: Option<String>,
    /// Line of its `[[limit]]` table in the file.
    pub line: usize,
    /// What is counted, and per what.
    pub scope: LimitScope,
    /// Requests allowed per `per`, sustained (the refill rate). At least 1.
    pub requests: u32,
    /// The period `requests` are allowed in: 1 s to 24 h.
    pub per: Duration,
    /// The bucket size: how many requests may come at once after a quiet
    /// spell. At least 1; `requests` when not given.
    pub burst: u32,
}

impl Limit {
    /// The emission interval = `per / requests`: the time one request's worth
    /// of the bucket takes to refill. Never zero (validation refuses a rate
    /// above one request a nanosecond).
    pub fn interval(&self) -> Duration {
        self.per / self.requests.max(1)
    }
}

impl fmt::Display for Limit {
    /// The rate and burst, as `1000/1s, burst 2000` (the scope needs the PBC
    /// names: see [`crate::Rules::limit_scope_name`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}, burst {}",
            self.requests,
            format_period(self.per),
            self.burst
        )
    }
}

/// What a [`Limit`] counts. PBCs are indexes into [`crate::Rules::pbcs`];
/// `None` is `*` in the file: each PBC counted separately (never all of them
/// together). A caller in no PBC counts against no `Caller` or `Edge` limit.
///
/// Counters are kept per (limit, caller PBC) for `Caller`, per (limit, caller
/// PBC, target PBC) for `Edge`, and per (limit, source IP) for
/// `FailedAuthPerSourceIp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// Calls of one caller PBC (`caller` = `Some(pbc index)`) or of each caller
    /// separately (`None` = `"*"`), to any target: the file's `target` is absent.
    Caller {
        /// The caller PBC, or `None` for each caller separately.
        caller: Option<usize>,
    },
    /// Calls of a caller (`Some(index)`, or `None` = each caller separately) to
    /// a target (`Some(index)`, or `None` = each target separately).
    Edge {
        /// The caller PBC, or `None` for each caller separately.
        caller: Option<usize>,
        /// The target PBC, or `None` for each target separately.
        target: Option<usize>,
    },
    /// Requests that failed authentication, counted per source IP address.
    FailedAuthPerSourceIp,
}

impl LimitScope {
    /// Does a request from caller PBC `caller` to target PBC `target` count
    /// against a limit of this scope?
    pub(crate) fn applies_to(self, caller: usize, target: usize) -> bool {
        match self {
            Self::Caller { caller: c } => c.is_none_or(|c| c == caller),
            Self::Edge {
                caller: c,
                target: t,
            } => c.is_none_or(|c| c == caller) && t.is_none_or(|t| t == target),
            Self::FailedAuthPerSourceIp => false,
        }
    }

    /// The caller and target PBCs it names (`None` for `*` or no target).
    pub(crate) fn parts(self) -> (Option<usize>, Option<usize>) {
        match self {
            Self::Caller { caller } => (caller, None),
            Self::Edge { caller, target } => (caller, target),
            Self::FailedAuthPerSourceIp => (None, None),
        }
    }
}

/// The longest `per`.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Parses `per`: `<n>s`, `<n>m` or `<n>h`, from 1 s to 24 h.
pub(crate) fn parse_period(text: &str) -> Result<Duration, String> {
    let unit_at = text.len().saturating_sub(1);
    let (digits, unit) = (text.get(..unit_at), text.get(unit_at..));
    let scale = match unit {
        Some("s") => 1,
        Some("m") => 60,
        Some("h") => 3600,
        _ => {
            return Err(format!(
                "`{text}` is not a period: write a whole number of seconds, minutes or hours"
            ));
        }
    };
    let n: u64 = match digits {
        Some(d) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => d
            .parse()
            .map_err(|_| format!("`{text}` is longer than 24 hours"))?,
        _ => {
            return Err(format!(
                "`{text}` is not a period: write a whole number of seconds, minutes or hours"
            ));
        }
    };
    if n == 0 {
        return Err(format!("`{text}` is zero: a period is at least 1s"));
    }
    let d = Duration::from_secs(n.saturating_mul(scale));
    if d > MAX_PERIOD {
        return Err(format!("`{text}` is longer than 24 hours"));
    }
    Ok(d)
}

/// A period as `per` would write it: `1h`, `5m`, `90s`.
pub(crate) fn format_period(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

const PERIOD_HELP: &str = "use 1s, 30s, 5m or 1h (a whole number of s, m or h, from 1s to 24h)";

impl Builder<'_, '_> {
    /// Validates one `[[limit]]`; `None` (with errors pushed) when it is bad.
    pub(crate) fn limit(&mut self, spanned: &Spanned<RawLimit>) -> Option<Limit> {
        let r = spanned.get_ref();
        let errors_before = self.diags.errors().count();
        let table = spanned.span();
        let id = r.id.get_ref();
        if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
            self.diags.push(self.loc.error(
                "invalid-rule-id",
                r.id.span(),
                format!("limit id `{id}` is empty or contains whitespace"),
                Some("use an id like `checkout-calls`".into()),
            ));
        }
        let failed_auth = r
            .failed_auth_per_source_ip
            .as_ref()
            .filter(|f| *f.get_ref());
        let scope = match failed_auth {
            Some(flag) => {
                for (key, field) in [("caller", &r.caller), ("target", &r.target)] {
                    if let Some(field) = field {
                        self.diags.push(self.loc.error(
                            "invalid-limit-scope",
                            field.span(),
                            format!(
                                "`{key}` cannot be combined with `failed_auth_per_source_ip`: a request that fails authentication has no caller"
                            ),
                            Some(format!(
                                "remove `{key}`, or move it to a separate [[limit]] (line {} sets failed_auth_per_source_ip)",
                                self.loc.line(flag.span().start)
                            )),
                        ));
                    }
                }
                Some(LimitScope::FailedAuthPerSourceIp)
            }
            None => self.limit_edge(r, table.clone()),
        };
        let requests = self.count(id, "requests", r.requests.as_ref(), table.clone());
        let per = match &r.per {
            Some(p) => match parse_period(p.get_ref()) {
                Ok(d) => Some(d),
                Err(why) => {
                    self.diags.push(self.loc.error(
                        "invalid-period",
                        p.span(),
                        why,
                        Some(PERIOD_HELP.into()),
                    ));
                    None
                }
            },
            None => {
                self.diags.push(self.loc.error(
                    "missing-key",
                    table.clone(),
                    format!("limit `{id}` has no `per`"),
                    Some(format!(
                        "add `per = \"1s\"` (or 30s, 5m, 1h): {PERIOD_HELP}"
                    )),
                ));
                None
            }
        };
        let burst = match &r.burst {
            Some(_) => self.count(id, "burst", r.burst.as_ref(), table.clone()),
            None => requests,
        };
        if let (Some(requests), Some(per), Some(field)) = (requests, per, &r.requests)
            && per.as_nanos() < u128::from(requests)
        {
            self.diags.push(self.loc.error(
                "invalid-limit",
                field.span(),
                format!(
                    "{requests} requests per {} is more than one a nanosecond",
                    format_period(per)
                ),
                Some("lower `requests`, or lengthen `per`".into()),
            ));
        }
        if self.diags.errors().count() > errors_before {
            return None;
        }
        Some(Limit {
            id: id.clone(),
            description: r.description.clone(),
            line: self.loc.line(table.start),
            scope: scope?,
            requests: requests?,
            per: per?,
            burst: burst?,
        })
    }

    /// The scope of a limit without `failed_auth_per_source_ip`.
    fn limit_edge(&mut self, r: &RawLimit, table: std::ops::Range<usize>) -> Option<LimitScope> {
        let Some(caller_field) = &r.caller else {
            self.diags.push(self.loc.error(
                "missing-key",
                table,
                format!("limit `{}` has no `caller`", r.id.get_ref()),
                Some(
                    "add `caller = \"<PBC>\"` (or \"*\" for each caller separately), or `failed_auth_per_source_ip = true`"
                        .into(),
                ),
            ));
            // Still check the target.
            if let Some(t) = &r.target {
                self.limit_pbc("target", t);
            }
            return None;
        };
        let caller = self.limit_pbc("caller", caller_field);
        match &r.target {
            None => Some(LimitScope::Caller { caller: caller? }),
            Some(t) => {
                let target = self.limit_pbc("target", t);
                Some(LimitScope::Edge {
                    caller: caller?,
                    target: target?,
                })
            }
        }
    }

    /// A limit's caller or target: a PBC (`Some(Some(i))`) or `*`
    /// (`Some(None)`); `None` after an error.
    fn limit_pbc(&mut self, role: &str, field: &Spanned<String>) -> Option<Option<usize>> {
        let text = field.get_ref().as_str();
        if text == "*" {
            return Some(None);
        }
        if let Some(&i) = self.pbc_index.get(text) {
            return Some(Some(i));
        }
        if text.starts_with("arn:") {
            self.diags.push(self.loc.error(
                "invalid-limit-scope",
                field.span(),
                format!("a limit's {role} is a PBC name or `*`, not a role ARN"),
                Some(
                    "limits count per PBC: name the PBC the role belongs to, or `*` for each PBC separately"
                        .into(),
                ),
            ));
            return None;
        }
        self.unknown_pbc(role, field);
        None
    }

    /// `requests` or `burst`: a whole number from 1 to 4294967295.
    fn count(
        &mut self,
        id: &str,
        key: &str,
        field: Option<&Spanned<i64>>,
        table: std::ops::Range<usize>,
    ) -> Option<u32> {
        let Some(field) = field else {
            self.diags.push(self.loc.error(
                "missing-key",
                table,
                format!("limit `{id}` has no `{key}`"),
                Some(format!(
                    "add `{key} = N`: how many requests are allowed per `per`"
                )),
            ));
            return None;
        };
        let n = *field.get_ref();
        match u32::try_from(n) {
            Ok(v) if v >= 1 => Some(v),
            _ => {
                let help = if key == "burst" {
                    "`burst` is how many requests may come at once: at least 1 (leave it out to use `requests`)"
                } else {
                    "`requests` is at least 1; to refuse every call, use a [[deny]] rule instead"
                };
                self.diags.push(self.loc.error(
                    "invalid-limit",
                    field.span(),
                    if n < 1 {
                        format!("`{key} = {n}` allows no request at all")
                    } else {
                        format!("`{key} = {n}` is more than 4294967295")
                    },
                    Some(help.into()),
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn periods_round_trip() {
        for (text, secs, shown) in [
            ("1s", 1, "1s"),
            ("30s", 30, "30s"),
            ("90s", 90, "90s"),
            ("120s", 120, "2m"),
            ("5m", 300, "5m"),
            ("60m", 3600, "1h"),
            ("24h", 86_400, "24h"),
        ] {
            let d = parse_period(text).unwrap();
            assert_eq!(d, Duration::from_secs(secs), "{text}");
            assert_eq!(format_period(d), shown);
        }
        for bad in ["", "s", "0m", "1w", "1.0s", "25h", "1s ", " 1s", "١s"] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interval_is_per_over_requests() {
        let l = Limit {
            id: "l".into(),
            description: None,
            line: 1,
            scope: LimitScope::FailedAuthPerSourceIp,
            requests: 3,
            per: Duration::from_secs(1),
            burst: 3,
        };
        assert_eq!(l.interval(), Duration::from_nanos(333_333_333));
        assert!(!l.scope.applies_to(0, 0));
    }
}
