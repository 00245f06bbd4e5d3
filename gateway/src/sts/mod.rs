//! The gateway's STS: an endpoint speaking AWS's Query protocol ([`endpoint`]) that
//! issues stateless session credentials ([`session`]) for configured roles
//! ([`roles`]), the verifier of web identity tokens ([`web_identity`]) and the AWS
//! bridge, which accepts signed `GetCallerIdentity` requests as proof of a real AWS
//! identity ([`bridge`]).

pub mod bridge;
pub mod endpoint;
pub mod roles;
pub mod session;
pub mod web_identity;

use crate::config::StsKeyConfig;
use session::{SessionKey, SessionKeys};

/// Loads the sealing keys named by the config (first seals, all open); none configured:
/// one fresh key for this process.
pub fn load_keys(configs: &[StsKeyConfig]) -> Result<SessionKeys, String> {
    if configs.is_empty() {
        return SessionKeys::generate(&ring::rand::SystemRandom::new());
    }
    let mut keys = Vec::new();
    for c in configs {
        let material = match (&c.secret_file, &c.secret_env) {
            (Some(f), None) => std::fs::read_to_string(f)
                .map_err(|e| format!("sts key `{}`: cannot read {}: {e}", c.id, f.display()))?,
            (None, Some(v)) => std::env::var(v)
                .map_err(|_| format!("sts key `{}`: environment variable {v} is not set", c.id))?,
            _ => {
                return Err(format!(
                    "sts key `{}`: set exactly one of secret_file, secret_env",
                    c.id
                ));
            }
        };
        let material = zeroize::Zeroizing::new(material);
        keys.push(
            SessionKey::new(&c.id, material.trim().as_bytes())
                .map_err(|e| format!("sts key `{}`: {e}", c.id))?,
        );
    }
    SessionKeys::new(keys)
}
