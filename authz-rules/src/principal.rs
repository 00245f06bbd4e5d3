//! Principal ARNs and the IAM-style patterns that name them.
//!
//! Patterns match the way IAM's `StringLike` matches `aws:PrincipalArn`:
//! `*` is any run of characters (`/` and `:` included), `?` is one character,
//! everything else is compared case-sensitively.

use std::borrow::Cow;
use std::fmt;

/// An IAM-style ARN pattern (`arn:aws:iam::111122223333:role/checkout-*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArnPattern {
    text: Box<str>,
}

impl ArnPattern {
    /// Checks the shape of `text`: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
    /// Session ARNs (`arn:aws:sts::...:assumed-role/...`) are refused because
    /// callers are matched by their role: the error says which ARN to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(6, ':');
        let fields: Vec<&str> = parts.by_ref().collect();
        let [arn, partition, service, _region, _account, resource] = fields.as_slice() else {
            return Err(format!(
                "`{text}` is not an ARN: expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE"
            ));
        };
        if *arn != "arn" {
            return Err(format!("`{text}` is not an ARN: it must start with `arn:`"));
        }
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(format!(
                "`{text}` has an empty partition, service or resource; \
                 a role is arn:aws:iam::ACCOUNT:role/NAME"
            ));
        }
        if *service == "sts" && resource.starts_with("assumed-role/") {
            let role = role_of_session(text).map_or_else(
                || "arn:aws:iam::ACCOUNT:role/NAME".to_string(),
                |r| r.into_owned(),
            );
            return Err(format!(
                "`{text}` is an assumed-role session ARN; sessions are matched by their role, \
                 so write the role ARN (`{role}`)"
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{text}` contains whitespace or control characters"
            ));
        }
        Ok(Self { text: text.into() })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no `*` or `?`.
    pub fn is_literal(&self) -> bool {
        !self.text.contains(['*', '?'])
    }

    /// The text before the first wildcard.
    pub fn literal_prefix(&self) -> &str {
        let end = self.text.find(['*', '?']).unwrap_or(self.text.len());
        self.text.get(..end).unwrap_or("")
    }

    /// How specific the pattern is: the number of non-wildcard characters.
    pub fn specificity(&self) -> usize {
        self.text
            .bytes()
            .filter(|b| !matches!(b, b'*' | b'?'))
            .count()
    }

    /// Does `arn` match this pattern?
    pub fn matches(&self, arn: &str) -> bool {
        glob_match(self.text.as_bytes(), arn.as_bytes())
    }

    /// Does every ARN this pattern matches also match `other`? Sound but not
    /// complete: a `false` may be a containment too subtle to prove.
    pub fn covered_by(&self, other: &ArnPattern) -> bool {
        glob_covers(other.text.as_bytes(), self.text.as_bytes())
    }

    /// Is there an ARN both patterns match?
    pub fn overlaps(&self, other: &ArnPattern) -> bool {
        glob_intersects(self.text.as_bytes(), other.text.as_bytes())
    }
}

impl fmt::Display for ArnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The ARN a caller is matched by: an assumed-role session
/// (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`) becomes its role
/// (`arn:aws:iam::ACCT:role/ROLE`); anything else is returned unchanged.
///
/// A session ARN does not carry the role's path; a caller that knows the full
/// role ARN (the gateway's own STS sessions do) should pass that instead, so
/// patterns with role paths match.
pub fn principal_role(arn: &str) -> Cow<'_, str> {
    role_of_session(arn).unwrap_or(Cow::Borrowed(arn))
}

fn role_of_session(arn: &str) -> Option<Cow<'_, str>> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("sts:")?;
    let (_region, rest) = rest.split_once(':')?;
    let (account, resource) = rest.split_once(':')?;
    let role_and_session = resource.strip_prefix("assumed-role/")?;
    let (role, _session) = role_and_session.rsplit_once('/')?;
    if role.is_empty() {
        return None;
    }
    // Built by hand: this runs on every decision for session callers, and
    // `format!` cost about a third of a decision.
    let mut out = String::with_capacity(20 + partition.len() + account.len() + role.len());
    for part in ["arn:", partition, ":iam::", account, ":role/", role] {
        out.push_str(part);
    }
    Some(Cow::Owned(out))
}

/// Wildcard match: `*` any run of bytes, `?` exactly one byte. Linear in
/// practice (the classic two-pointer algorithm with one backtrack point).
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Is every string `inner` matches also matched by `outer`? Decided by
/// matching `inner` as text against `outer`, where `inner`'s `*` may only be
/// absorbed by a `*` of `outer` and its `?` by a `?` or `*`.
pub(crate) fn glob_covers(outer: &[u8], inner: &[u8]) -> bool {
    let (n, m) = (outer.len(), inner.len());
    // reach[j] = outer[..i] can produce inner[..j]
    let mut reach = vec![false; m + 1];
    if let Some(r) = reach.first_mut() {
        *r = true;
    }
    for i in 0..n {
        let oc = outer.get(i).copied().unwrap_or(0);
        let mut next = vec![false; m + 1];
        for j in 0..=m {
            if !reach.get(j).copied().unwrap_or(false) {
                continue;
            }
            if oc == b'*' {
                // `*` absorbs inner[j..k] for every k >= j.
                for slot in next.iter_mut().skip(j) {
                    *slot = true;
                }
                break;
            }
            if let Some(&ic) = inner.get(j) {
                let ok = match oc {
                    b'?' => ic != b'*',
                    c => c == ic && ic != b'*' && ic != b'?',
                };
                if ok && let Some(slot) = next.get_mut(j + 1) {
                    *slot = true;
                }
            }
        }
        reach = next;
    }
    reach.get(m).copied().unwrap_or(false)
}

/// Is there a string both patterns match?
pub(crate) fn glob_intersects(a: &[u8], b: &[u8]) -> bool {
    // Quick reject: literal prefixes must agree.
    let pa = a
        .iter()
        .position(|&c| c == b'*' || c == b'?')
        .unwrap_or(a.len());
    let pb = b
        .iter()
        .position(|&c| c == b'*' || c == b'?')
        .unwrap_or(b.len());
    let common = pa.min(pb);
    if a.get(..common) != b.get(..common) {
        return false;
    }
    let (n, m) = (a.len(), b.len());
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    let mut seen = vec![false; (n + 1) * (m + 1)];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        let Some(slot) = seen.get_mut(idx(i, j)) else {
            continue;
        };
        if *slot {
            continue;
        }
        *slot = true;
        if i == n && j == m {
            return true;
        }
        let ca = a.get(i).copied();
        let cb = b.get(j).copied();
        if ca == Some(b'*') {
            stack.push((i + 1, j)); // `*` matches nothing more
            if cb.is_some() && cb != Some(b'*') {
                stack.push((i, j + 1)); // `*` eats b's next character
            }
        }
        if cb == Some(b'*') {
            stack.push((i, j + 1));
            if ca.is_some() && ca != Some(b'*') {
                stack.push((i + 1, j));
            }
        }
        if let (Some(x), Some(y)) = (ca, cb)
            && x != b'*'
            && y != b'*'
            && (x == y || x == b'?' || y == b'?')
        {
            stack.push((i + 1, j + 1));
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        assert!(glob_match(
            b"arn:aws:iam::1:role/*",
            b"arn:aws:iam::1:role/a/b"
        ));
        assert!(glob_match(b"a*b*c", b"abc"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(!glob_match(b"a*d", b"abc"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"abc", b"ABC"));
    }

    #[test]
    fn coverage_and_overlap() {
        assert!(glob_covers(b"arn:*", b"arn:aws:iam::1:role/x*"));
        assert!(glob_covers(b"a*", b"a?c"));
        assert!(!glob_covers(b"a?c", b"a*c"));
        assert!(!glob_covers(b"abc", b"ab*"));
        assert!(glob_covers(b"ab*", b"ab*"));
        assert!(glob_intersects(b"a*c", b"ab*"));
        assert!(!glob_intersects(b"a*c", b"b*"));
        assert!(!glob_intersects(b"a*x", b"a*y"));
        assert!(glob_intersects(b"*x*", b"*y*"));
    }

    #[test]
    fn sessions_resolve_to_roles() {
        assert_eq!(
            principal_role("arn:aws:sts::111122223333:assumed-role/checkout/i-123"),
            "arn:aws:iam::111122223333:role/checkout"
        );
        assert_eq!(
            principal_role("arn:aws-cn:sts::1:assumed-role/r/s"),
            "arn:aws-cn:iam::1:role/r"
        );
        assert_eq!(
            principal_role("arn:aws:iam::1:role/p/r"),
            "arn:aws:iam::1:role/p/r"
        );
        assert!(ArnPattern::parse("arn:aws:sts::1:assumed-role/r/*").is_err());
        assert!(ArnPattern::parse("role/x").is_err());
        assert!(ArnPattern::parse("arn:aws:iam::1:role/*").is_ok());
    }
}
