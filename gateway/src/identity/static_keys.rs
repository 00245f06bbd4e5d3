//! Static keys: a credentials file mapping access key ids to secrets and role ARNs,
//! for local development, docker-compose and bootstrapping.
//!
//! ```toml
//! [[credential]]
//! access_key_id = "AKIADEMOCHECKOUT0001"
//! role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
//! secret_env = "CHECKOUT_SECRET"      # or secret_file = "secrets/checkout", or secret = "..."
//! allow_unsigned_payload = false      # optional
//! tags = { team = "checkout" }        # optional principal tags
//! ```
//!
//! Secrets are never logged or shown in errors; an error names the file, the line
//! and the access key id.

use super::{Identity, IdentitySource, Principal};
use crate::config::{ConfigError, ConfigErrors};
use crate::sigv4::{Rejection, Secret};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    credential: Vec<Spanned<RawCredential>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    access_key_id: String,
    role_arn: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_file: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    allow_unsigned_payload: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// The static keys of one credentials file.
#[derive(Debug, Default)]
pub struct StaticKeys {
    keys: HashMap<String, Identity>,
}

impl StaticKeys {
    /// Reads a credentials file; secrets named by `secret_file` resolve against the
    /// file's directory, `secret_env` against the process environment.
    pub fn load(path: &Path) -> Result<StaticKeys, ConfigErrors> {
        let file = path.display().to_string();
        // Zeroizing: inline secrets are in the file's text.
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                reason: format!("cannot read the credentials file: {e}"),
            }])
        })?);
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &file, base, &|name| std::env::var(name).ok())
    }

    /// Parses credentials text. `env` looks up environment variables (a parameter so
    /// tests need not touch the process environment).
    pub fn parse(
        text: &str,
        file: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StaticKeys, ConfigErrors> {
        let line_of = |offset: usize| text.get(..offset).map(|t| t.matches('\n').count() + 1);
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            // toml's message can quote the offending value; a secret may be there.
            let message = e.message().trim();
            let reason = if message.starts_with("unknown field") || message.starts_with("missing field") {
                message.to_string()
            } else {
                "not a valid credentials file (TOML [[credential]] tables with access_key_id, role_arn and one of secret, secret_file, secret_env)".to_string()
            };
            ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                line: e.span().and_then(|s| line_of(s.start)),
                reason,
            }])
        })?;
        let mut errors = Vec::new();
        let mut keys = HashMap::new();
        for spanned in raw.credential {
            let line = line_of(spanned.span().start);
            let mut c = spanned.into_inner();
            let mut err = |reason: String| {
                errors.push(ConfigError {
                    file: file.to_string(),
                    line,
                    reason,
                });
            };
            let akid = c.access_key_id.clone();
            if akid.len() < 16
                || akid.len() > 128
                || !akid
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                err(format!(
                    "access key id `{akid}` must be 16 to 128 upper-case letters and digits, like AWS's (AKIA...)"
                ));
                continue;
            }
            if keys.contains_key(&akid) {
                err(format!("access key id `{akid}` is listed twice"));
                continue;
            }
            if !c.role_arn.starts_with("arn:") || c.role_arn.contains(['*', '?', ' ']) {
                err(format!(
                    "credential `{akid}`: role_arn `{}` is not a role ARN like arn:aws:iam::111122223333:role/CheckoutPBCRole",
                    c.role_arn
                ));
                continue;
            }
            // Every copy of the secret is wiped when dropped (`Secret` keeps its own).
            let inline = c.secret.take().map(zeroize::Zeroizing::new);
            let secret = match (inline, &c.secret_file, &c.secret_env) {
                (Some(s), None, None) => Ok(s),
                (None, Some(f), None) => {
                    let p = base.join(f);
                    std::fs::read_to_string(&p)
                        .map(|s| {
                            let s = zeroize::Zeroizing::new(s);
                            zeroize::Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_string())
                        })
                        .map_err(|e| {
                            format!(
                                "credential `{akid}`: cannot read secret_file {}: {e}",
                                p.display()
                            )
                        })
                }
                (None, None, Some(v)) => env(v).map(zeroize::Zeroizing::new).ok_or_else(|| {
                    format!("credential `{akid}`: environment variable {v} (secret_env) is not set")
                }),
                _ => Err(format!(
                    "credential `{akid}`: set exactly one of secret, secret_file, secret_env"
                )),
            };
            let secret = match secret {
                Ok(s) if s.len() >= 16 => s,
                Ok(_) => {
                    err(format!(
                        "credential `{akid}`: the secret is shorter than 16 characters"
                    ));
                    continue;
                }
                Err(reason) => {
                    err(reason);
                    continue;
                }
            };
            keys.insert(
                akid.clone(),
                Identity {
                    secret: Arc::new(Secret::from(secret.as_str())),
                    expires_at: None,
                    allow_unsigned_payload: c.allow_unsigned_payload,
                    principal: Principal {
                        role_arn: c.role_arn.clone(),
                        arn: c.role_arn,
                        access_key_id: akid,
                        tags: c.tags.into_iter().collect(),
                        source_identity: None,
                    },
                },
            );
        }
        if errors.is_empty() {
            Ok(StaticKeys { keys })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl IdentitySource for StaticKeys {
    fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        _now: i64,
    ) -> Result<Identity, Rejection> {
        let id = self
            .keys
            .get(access_key_id)
            .ok_or_else(|| Rejection::unknown_access_key(access_key_id))?;
        if session_token.is_some() {
            return Err(Rejection::new(
                crate::sigv4::Code::InvalidClientTokenId,
                format!(
                    "The security token included in the request is invalid: access key {access_key_id} \
                     is a long-term key, which is signed without X-Amz-Security-Token."
                ),
            ));
        }
        Ok(id.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "demo+checkout+secret+key+not+for+production"
tags = { team = "checkout" }

[[credential]]
access_key_id = "AKIADEMOORDER0000001"
role_arn = "arn:aws:iam::111122223333:role/OrderPBCRole"
secret_env = "ORDER_SECRET"
allow_unsigned_payload = true
"#;

    fn env(name: &str) -> Option<String> {
        (name == "ORDER_SECRET").then(|| "demo+order+secret+key+not+for+production".to_string())
    }

    #[test]
    fn loads_and_resolves() {
        let keys = StaticKeys::parse(GOOD, "c.toml", Path::new("."), &env).unwrap();
        assert_eq!(keys.len(), 2);
        let id = keys.resolve("AKIADEMOCHECKOUT0001", None, 0).unwrap();
        assert_eq!(
            id.principal.role_arn,
            "arn:aws:iam::111122223333:role/CheckoutPBCRole"
        );
        assert_eq!(
            id.principal.tags,
            [("team".to_string(), "checkout".to_string())]
        );
        assert!(
            keys.resolve("AKIADEMOORDER0000001", None, 0)
                .unwrap()
                .allow_unsigned_payload
        );
        let unknown = keys.resolve("AKIANOBODY0000000001", None, 0).unwrap_err();
        assert_eq!(unknown.code().as_str(), "InvalidClientTokenId");
        let token = keys
            .resolve("AKIADEMOCHECKOUT0001", Some("tok"), 0)
            .unwrap_err();
        assert_eq!(token.code().as_str(), "InvalidClientTokenId");
    }

    #[test]
    fn errors_name_line_and_never_the_secret() {
        let text = r#"
[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "short-secret"

[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "demo+checkout+secret+key+not+for+production"

[[credential]]
access_key_id = "AKIADEMOORDER0000001"
role_arn = "arn:aws:iam::111122223333:role/OrderPBCRole"
secret_env = "MISSING"
secret = "demo+order+secret+key+not+for+production"
"#;
        let errs = StaticKeys::parse(text, "c.toml", Path::new("."), &env).unwrap_err();
        let lines: Vec<Option<usize>> = errs.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(2), Some(12)], "{errs}");
        let shown = errs.to_string();
        assert!(
            shown.contains("c.toml:2: credential `AKIADEMOCHECKOUT0001`: the secret is shorter"),
            "{shown}"
        );
        assert!(shown.contains("exactly one of"), "{shown}");
        assert!(
            !shown.contains("short-secret") && !shown.contains("demo+order"),
            "{shown}"
        );
        // A syntax error near a secret does not quote it.
        let errs = StaticKeys::parse(
            "[[credential]]\nsecret = \"sekrit-value\" x\n",
            "c.toml",
            Path::new("."),
            &env,
        )
        .unwrap_err();
        assert!(!errs.to_string().contains("sekrit-value"), "{errs}");
        assert_eq!(errs.0[0].line, Some(2));
    }
}
