//! Identity: an access key id (and session token) becomes a secret and a principal.
//!
//! Sources implement [`IdentitySource`]; this issue brings static keys from a
//! credentials file ([`static_keys`]); STS sessions come behind the same trait.

pub mod sessions;
pub mod static_keys;

use crate::sigv4::{Rejection, Secret};
use std::sync::Arc;

/// Who a verified caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The role ARN the caller acts as (role path included).
    pub role_arn: String,
    /// The ARN the caller is known by: the role ARN for static keys, the assumed-role
    /// session ARN for STS sessions.
    pub arn: String,
    /// The access key id that signed (never the secret).
    pub access_key_id: String,
    /// Principal (session) tags, for rule conditions.
    pub tags: Vec<(String, String)>,
    /// The source identity carried through role chaining, if any.
    pub source_identity: Option<String>,
}

/// What an identity source knows of an access key.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The secret to check the signature with.
    pub secret: Arc<Secret>,
    /// When session credentials expire (Unix seconds); `None` for long-term keys.
    pub expires_at: Option<i64>,
    /// Whether the caller may send `UNSIGNED-PAYLOAD` with a body.
    pub allow_unsigned_payload: bool,
    /// Who the key belongs to.
    pub principal: Principal,
}

/// A source of identities. Look-ups are synchronous and cheap (in memory); sources
/// that need I/O refresh in the background.
pub trait IdentitySource: Send + Sync {
    /// Resolves an access key id (and the session token, when one was signed).
    /// Unknown keys are `InvalidClientTokenId`.
    fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        now: i64,
    ) -> Result<Identity, Rejection>;
}
