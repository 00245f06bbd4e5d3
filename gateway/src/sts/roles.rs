//! Roles callers may assume, and their trust policies.

use crate::config::RoleConfig;
use crate::identity::Principal;
use authz_rules::Rules;
use authz_rules::principal::ArnPattern;
use std::collections::HashMap;

/// Who a trust policy names.
#[derive(Clone, Debug)]
enum Trusted {
    /// A PBC of the rules file: its principals may assume the role.
    Pbc(String),
    /// Principals whose role ARN matches.
    Pattern(ArnPattern),
}

/// One assumable role.
#[derive(Clone, Debug)]
pub struct Role {
    /// The role ARN, path included.
    pub arn: String,
    /// Longest session, in seconds.
    pub max_session_secs: i64,
    /// The `ExternalId` a caller must present, if any.
    pub external_id: Option<String>,
    /// Sessions issued before this instant are refused.
    pub revoke_before: Option<i64>,
    trust: Vec<Trusted>,
    web_identity: Vec<crate::config::WebIdentityTrust>,
    aws_principals: Vec<ArnPattern>,
}

impl Role {
    /// Does the trust policy name the caller? `rules` says which PBC the caller's role is.
    pub fn trusts(&self, caller: &Principal, rules: &Rules) -> bool {
        let pbc = rules.pbc_of(&caller.role_arn);
        self.trust.iter().any(|t| match t {
            Trusted::Pbc(name) => pbc == Some(name.as_str()),
            Trusted::Pattern(p) => p.matches(&caller.role_arn),
        })
    }

    /// Does the trust policy accept this web identity (issuer, and a `sub` pattern)?
    pub fn trusts_web_identity(&self, issuer: &str, subject: &str) -> bool {
        self.web_identity.iter().any(|w| {
            w.issuer == issuer
                && w.sub
                    .iter()
                    .any(|p| crate::sts::web_identity::sub_matches(p, subject))
        })
    }

    /// Does the trust policy accept this real AWS principal (the role ARN, path
    /// included, or the user ARN the AWS bridge verified)?
    pub fn trusts_aws_principal(&self, arn: &str) -> bool {
        self.aws_principals.iter().any(|p| p.matches(arn))
    }
}

/// The configured roles, by ARN.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    by_arn: HashMap<String, Role>,
}

impl Roles {
    /// Builds the roles from the config (validated there); a bad trust entry is an error.
    pub fn new(configs: &[RoleConfig]) -> Result<Roles, String> {
        let mut by_arn = HashMap::new();
        for c in configs {
            let mut trust = Vec::new();
            for t in &c.trust {
                if t.starts_with("arn:") {
                    trust.push(Trusted::Pattern(
                        ArnPattern::parse(t).map_err(|e| format!("role {}: trust: {e}", c.arn))?,
                    ));
                } else {
                    trust.push(Trusted::Pbc(t.clone()));
                }
            }
            let aws_principals = c
                .aws_principals
                .iter()
                .map(|p| {
                    ArnPattern::parse(p).map_err(|e| format!("role {}: aws_principals: {e}", c.arn))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let revoke_before = match &c.revoke_sessions_before {
                Some(t) => Some(
                    authz_rules::condition::parse_rfc3339(t)
                        .map_err(|e| format!("role {}: {e}", c.arn))?,
                ),
                None => None,
            };
            by_arn.insert(
                c.arn.clone(),
                Role {
                    arn: c.arn.clone(),
                    max_session_secs: c.max_session_secs,
                    external_id: c.external_id.clone(),
                    revoke_before,
                    trust,
                    web_identity: c.web_identity.clone(),
                    aws_principals,
                },
            );
        }
        Ok(Roles { by_arn })
    }

    /// A role by ARN.
    pub fn get(&self, arn: &str) -> Option<&Role> {
        self.by_arn.get(arn)
    }

    /// The configured role ARNs.
    pub fn arns(&self) -> impl Iterator<Item = &String> {
        self.by_arn.keys()
    }

    /// Role ARN -> "refuse sessions issued before", for the session identity source.
    pub fn revocations(&self) -> HashMap<String, i64> {
        self.by_arn
            .values()
            .filter_map(|r| r.revoke_before.map(|t| (r.arn.clone(), t)))
            .collect()
    }

    /// PBC names the trust policies use that the rules file does not declare.
    pub fn unknown_pbcs(&self, rules: &Rules) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in self.by_arn.values() {
            for t in &r.trust {
                if let Trusted::Pbc(name) = t
                    && rules.pbc(name).is_none()
                {
                    out.push((r.arn.clone(), name.clone()));
                }
            }
        }
        out
    }
}
