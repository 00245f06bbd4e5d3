//! Gateway STS sessions as an identity source: the session token is opened with the
//! gateway's key set (no session store), revocation is applied, and the core is handed
//! the expiry, so an expired session gets `ExpiredToken` from the verification core.
//!
//! [`Chain`] puts this source in front of another (the static keys): requests with a
//! session token and an `ASIA` key go to the sessions, the rest to the other source.

use super::{Identity, IdentitySource, Principal};
use crate::sigv4::{AmzTime, Code, Rejection};
use crate::sts::session::{ACCESS_KEY_PREFIX, SessionKeys};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The identity source for gateway STS sessions: opens the token, applies revocation,
/// hands the core the expiry.
pub struct SessionSource {
    keys: Arc<SessionKeys>,
    /// Per role ARN (path included): sessions issued before this time (Unix seconds)
    /// are refused, as AWS's "revoke active sessions" does.
    revoked_before: HashMap<String, i64>,
    /// The roles still configured; `None`: any role the keys sealed.
    roles: Option<std::collections::HashSet<String>>,
}

impl SessionSource {
    /// Refuses sessions of roles not in `roles` (a role removed from the configuration
    /// ends its live sessions).
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = String>) -> Self {
        self.roles = Some(roles.into_iter().collect());
        self
    }

    /// A source opening tokens with `keys`, refusing sessions of a role issued before
    /// `revoked_before[role ARN]`.
    pub fn new(keys: Arc<SessionKeys>, revoked_before: HashMap<String, i64>) -> Self {
        Self {
            keys,
            revoked_before,
            roles: None,
        }
    }

    /// The key set tokens are opened with.
    pub fn keys(&self) -> &Arc<SessionKeys> {
        &self.keys
    }
}

impl fmt::Debug for SessionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSource")
            .field("keys", &self.keys)
            .field("revoked_before", &self.revoked_before)
            .finish()
    }
}

fn invalid(message: String) -> Rejection {
    Rejection::new(Code::InvalidClientTokenId, message)
}

impl IdentitySource for SessionSource {
    fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        _now: i64,
    ) -> Result<Identity, Rejection> {
        if !access_key_id.starts_with(ACCESS_KEY_PREFIX) {
            return Err(invalid(format!(
                "The security token included in the request is invalid: access key id '{access_key_id}' \
                 is not a session key (session keys start with {ACCESS_KEY_PREFIX}); a long-term key is \
                 signed without X-Amz-Security-Token."
            )));
        }
        let Some(token) = session_token else {
            return Err(invalid(format!(
                "The security token included in the request is invalid: access key id '{access_key_id}' \
                 is a session key, and session keys must be signed with their session token in \
                 X-Amz-Security-Token (the SessionToken of the STS response)."
            )));
        };
        let (claims, secret) = self.keys.open(access_key_id, token)?;
        if self
            .roles
            .as_ref()
            .is_some_and(|roles| !roles.contains(&claims.role_arn))
        {
            return Err(invalid(format!(
                "The security token included in the request is invalid: role {} is no longer assumable through this gateway.",
                claims.role_arn
            )));
        }
        // The chain's start, not this session's: renewing by chaining must not escape a cutoff.
        if let Some(&cutoff) = self.revoked_before.get(&claims.role_arn)
            && claims.chain_started_at() < cutoff
        {
            return Err(invalid(format!(
                "The security token included in the request is invalid: sessions of role {} issued \
                 before {} were revoked, and this one was issued at {}; get new session credentials.",
                claims.role_arn,
                AmzTime::from_unix(cutoff).iso(),
                AmzTime::from_unix(claims.issued_at).iso()
            )));
        }
        // The claims were sealed by `issue`, which refuses an ARN it cannot turn into
        // an assumed-role ARN; a failure here means a key was shared with another issuer.
        let arn = claims.assumed_role_arn().map_err(|_| {
            invalid(
                "The security token included in the request is invalid: its role cannot be made \
                 into an assumed-role ARN; get new session credentials."
                    .to_owned(),
            )
        })?;
        Ok(Identity {
            secret: Arc::new(secret),
            // The core compares this with `now` and answers ExpiredToken.
            expires_at: Some(claims.expires_at),
            allow_unsigned_payload: false,
            principal: Principal {
                role_arn: claims.role_arn,
                arn,
                access_key_id: access_key_id.to_owned(),
                tags: claims.tags,
                source_identity: claims.source_identity,
            },
        })
    }
}

/// Tries the sessions for `ASIA` keys, else another source (the static keys). Built
/// per request from borrowed sources, so a reloadable source's current value can be
/// passed in without a copy.
#[derive(Clone, Copy)]
pub struct Chain<'a> {
    /// The gateway's STS sessions; `None` when the gateway issues none.
    pub sessions: Option<&'a dyn IdentitySource>,
    /// Everything else (long-term keys).
    pub fallback: &'a dyn IdentitySource,
}

impl IdentitySource for Chain<'_> {
    fn resolve(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        now: i64,
    ) -> Result<Identity, Rejection> {
        let Some(sessions) = self.sessions else {
            return self.fallback.resolve(access_key_id, session_token, now);
        };
        let session_key = access_key_id.starts_with(ACCESS_KEY_PREFIX);
        if session_key && session_token.is_some() {
            return sessions.resolve(access_key_id, session_token, now);
        }
        // A long-term key (with or without a stray token) is the fallback's to judge:
        // it knows whether the key exists and says why a token does not belong.
        match self.fallback.resolve(access_key_id, session_token, now) {
            // An ASIA key nobody knows, sent without its token: the sessions explain
            // that the token is missing, which is the likelier mistake.
            Err(e) if session_key && e.code() == Code::InvalidClientTokenId => {
                sessions.resolve(access_key_id, None, now)
            }
            other => other,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::identity::static_keys::StaticKeys;
    use crate::sigv4::{Body, Credential, Policy, Request, Verified, Verifier};
    use crate::sts::session::{IssuedCredentials, SessionClaims, SessionKey};
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use http::HeaderMap;
    use ring::rand::SystemRandom;
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    const ROLE: &str = "arn:aws:iam::111122223333:role/teams/checkout/CheckoutToOrderRole";
    const T0: i64 = 1_700_000_000;
    const STATIC: &str = r#"
[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "demo+checkout+secret+key+not+for+production"
"#;

    fn key_set() -> Arc<SessionKeys> {
        Arc::new(SessionKeys::new(vec![SessionKey::new("k1", &[7; 32]).unwrap()]).unwrap())
    }

    fn claims(issued_at: i64) -> SessionClaims {
        SessionClaims {
            role_arn: ROLE.into(),
            session_name: "checkout-1".into(),
            source_identity: Some("alice".into()),
            tags: vec![("team".into(), "checkout".into())],
            issued_at,
            expires_at: issued_at + 900,
            chained: false,
            origin_issued_at: None,
        }
    }

    fn issue(keys: &SessionKeys, issued_at: i64) -> IssuedCredentials {
        keys.issue(&claims(issued_at), &SystemRandom::new())
            .unwrap()
    }

    fn rejected(r: Result<Identity, Rejection>, code: Code) -> Rejection {
        let e = r.expect_err("expected a rejection");
        assert_eq!(e.code(), code, "{e}");
        e
    }

    #[test]
    fn resolves_a_session() {
        let keys = key_set();
        let source = SessionSource::new(Arc::clone(&keys), HashMap::new());
        let creds = issue(&keys, T0);
        let id = source
            .resolve(&creds.access_key_id, Some(&creds.session_token), T0)
            .unwrap();
        assert_eq!(
            *id.secret,
            crate::sigv4::Secret::from(creds.secret_access_key.expose())
        );
        assert_eq!(id.expires_at, Some(T0 + 900));
        assert!(!id.allow_unsigned_payload);
        assert_eq!(
            id.principal,
            Principal {
                role_arn: ROLE.into(),
                arn: "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/checkout-1".into(),
                access_key_id: creds.access_key_id.clone(),
                tags: vec![("team".into(), "checkout".into())],
                source_identity: Some("alice".into()),
            }
        );
        // Debug shows key ids, never key material.
        let shown = format!("{source:?}");
        assert!(shown.contains("k1"), "{shown}");
    }

    #[test]
    fn session_keys_need_their_token_and_long_term_keys_none() {
        let keys = key_set();
        let source = SessionSource::new(Arc::clone(&keys), HashMap::new());
        let creds = issue(&keys, T0);
        let e = rejected(
            source.resolve(&creds.access_key_id, None, T0),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("X-Amz-Security-Token"), "{e}");
        let e = rejected(
            source.resolve("AKIADEMOCHECKOUT0001", Some(&creds.session_token), T0),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("not a session key"), "{e}");
        // Paired with another session's key id.
        let other = issue(&keys, T0);
        rejected(
            source.resolve(&other.access_key_id, Some(&creds.session_token), T0),
            Code::InvalidClientTokenId,
        );
    }

    #[test]
    fn revocation_refuses_sessions_issued_before_the_cutoff() {
        let keys = key_set();
        let cutoff = T0 + 100;
        let source = SessionSource::new(
            Arc::clone(&keys),
            HashMap::from([(ROLE.to_owned(), cutoff)]),
        );
        let old = issue(&keys, cutoff - 1);
        let e = rejected(
            source.resolve(&old.access_key_id, Some(&old.session_token), cutoff + 5),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("revoked"), "{e}");
        assert!(e.message().contains("20231114T221500Z"), "{e}");
        assert!(!e.message().contains(&old.session_token[..30]), "{e}");
        // Renewed by chaining after the cutoff, from a chain begun before it: still revoked.
        let mut renewed = claims(cutoff + 10);
        renewed.chained = true;
        renewed.origin_issued_at = Some(cutoff - 50);
        let renewed = keys.issue(&renewed, &SystemRandom::new()).unwrap();
        rejected(
            source.resolve(
                &renewed.access_key_id,
                Some(&renewed.session_token),
                cutoff + 20,
            ),
            Code::InvalidClientTokenId,
        );
        // A role no longer configured ends its sessions.
        let fresh = issue(&keys, cutoff + 1);
        let gone = SessionSource::new(Arc::clone(&keys), HashMap::new())
            .with_roles(["arn:aws:iam::111122223333:role/Other".to_owned()]);
        let e = rejected(
            gone.resolve(&fresh.access_key_id, Some(&fresh.session_token), cutoff + 2),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("no longer assumable"), "{e}");
        // Issued at or after the cutoff: fine.
        for t in [cutoff, cutoff + 1] {
            let new = issue(&keys, t);
            source
                .resolve(&new.access_key_id, Some(&new.session_token), t)
                .unwrap();
        }
        // Revoking another role does not touch this one.
        let other = SessionSource::new(
            Arc::clone(&keys),
            HashMap::from([("arn:aws:iam::111122223333:role/Other".to_owned(), cutoff)]),
        );
        other
            .resolve(&old.access_key_id, Some(&old.session_token), cutoff)
            .unwrap();
    }

    #[test]
    fn chain_routes_sessions_and_static_keys() {
        let keys = key_set();
        let sessions = SessionSource::new(Arc::clone(&keys), HashMap::new());
        let statics = StaticKeys::parse(STATIC, "c.toml", Path::new("."), &|_| None).unwrap();
        let chain = Chain {
            sessions: Some(&sessions),
            fallback: &statics,
        };
        let creds = issue(&keys, T0);
        let id = chain
            .resolve(&creds.access_key_id, Some(&creds.session_token), T0)
            .unwrap();
        assert_eq!(id.principal.role_arn, ROLE);
        let id = chain.resolve("AKIADEMOCHECKOUT0001", None, T0).unwrap();
        assert_eq!(id.expires_at, None);
        // A long-term key with a token: the static source says why that is wrong.
        let e = rejected(
            chain.resolve("AKIADEMOCHECKOUT0001", Some(&creds.session_token), T0),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("long-term key"), "{e}");
        // A session key without its token: the session source explains.
        let e = rejected(
            chain.resolve(&creds.access_key_id, None, T0),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("X-Amz-Security-Token"), "{e}");
        rejected(
            chain.resolve("AKIANOBODY0000000001", None, T0),
            Code::InvalidClientTokenId,
        );
        // Without sessions, session credentials are unknown keys.
        let no_sts = Chain {
            sessions: None,
            fallback: &statics,
        };
        rejected(
            no_sts.resolve(&creds.access_key_id, Some(&creds.session_token), T0),
            Code::InvalidClientTokenId,
        );
    }

    /// A request signed by the `aws-sigv4` crate with session credentials, as an AWS SDK
    /// signs it (the token in `x-amz-security-token`, signed).
    struct Signed {
        path: String,
        query: String,
        headers: HeaderMap,
    }

    fn sign_with(creds: &IssuedCredentials, at: i64) -> Signed {
        let identity = Credentials::new(
            creds.access_key_id.clone(),
            creds.secret_access_key.expose().to_owned(),
            Some(creds.session_token.clone()),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("execute-api")
            .time(UNIX_EPOCH + Duration::from_secs(at as u64))
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let uri = "https://gateway.internal:8443/order/orders/42?expand=items";
        let headers = [("host", "gateway.internal:8443")];
        let signable = SignableRequest::new(
            "GET",
            uri,
            headers.iter().copied(),
            SignableBody::Bytes(b""),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method("GET").uri(uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut req = req.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        Signed {
            path: req.uri().path().to_owned(),
            query: req.uri().query().unwrap_or("").to_owned(),
            headers: req.headers().clone(),
        }
    }

    /// parse -> resolve -> verify, as the verify stage runs them.
    fn verify(
        source: &dyn IdentitySource,
        s: &Signed,
        now: i64,
    ) -> Result<(Verified, Identity), Rejection> {
        let verifier = Verifier::new(Policy::new(["eu-west-1"], ["execute-api"]));
        let req = Request {
            method: "GET",
            path: &s.path,
            query: &s.query,
            headers: &s.headers,
            body: Body::Bytes(b""),
        };
        let auth = verifier.parse(&req, now)?;
        let id = source.resolve(auth.access_key_id(), auth.session_token(), now)?;
        let verified = verifier.verify(
            &req,
            &auth,
            &Credential {
                secret: &id.secret,
                expires_at: id.expires_at,
                allow_unsigned_payload: id.allow_unsigned_payload,
            },
            now,
        )?;
        Ok((verified, id))
    }

    #[test]
    fn aws_sigv4_signed_request_with_session_credentials_verifies() {
        let keys = key_set();
        let source = SessionSource::new(Arc::clone(&keys), HashMap::new());
        let creds = issue(&keys, T0);
        let signed = sign_with(&creds, T0 + 60);
        assert!(signed.headers.contains_key("x-amz-security-token"));
        let (verified, id) = verify(&source, &signed, T0 + 60).unwrap();
        assert_eq!(verified.access_key_id(), creds.access_key_id);
        assert_eq!(
            id.principal.arn,
            "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/checkout-1"
        );

        // Another session's token in the signed header: refused before the signature.
        let other = issue(&keys, T0);
        let mut swapped = sign_with(&creds, T0 + 60);
        swapped
            .headers
            .insert("x-amz-security-token", other.session_token.parse().unwrap());
        rejected(
            verify(&source, &swapped, T0 + 60).map(|(_, id)| id),
            Code::InvalidClientTokenId,
        );

        // Signed with the right key id and token but a wrong secret: the signature fails.
        let wrong = IssuedCredentials {
            secret_access_key: other.secret_access_key.clone(),
            ..creds.clone()
        };
        rejected(
            verify(&source, &sign_with(&wrong, T0 + 60), T0 + 60).map(|(_, id)| id),
            Code::SignatureDoesNotMatch,
        );
    }

    #[test]
    fn an_expired_session_gets_expired_token_from_the_core() {
        let keys = key_set();
        let source = SessionSource::new(Arc::clone(&keys), HashMap::new());
        let creds = issue(&keys, T0);
        // Signed (and checked) after the expiry, within the clock-skew window.
        for at in [creds.expiration, creds.expiration + 120] {
            let signed = sign_with(&creds, at);
            let e = rejected(
                verify(&source, &signed, at).map(|(_, id)| id),
                Code::ExpiredToken,
            );
            assert_eq!(e.status(), 400);
            assert!(e.message().contains("20231114T222820Z"), "{e}");
        }
        // One second before the expiry it still verifies.
        let at = creds.expiration - 1;
        verify(&source, &sign_with(&creds, at), at).unwrap();
    }

    #[test]
    fn a_retired_key_refuses_its_sessions_end_to_end() {
        let old = key_set();
        let creds = issue(&old, T0);
        let rotated = Arc::new(
            SessionKeys::new(vec![
                SessionKey::new("k2", &[8; 32]).unwrap(),
                SessionKey::new("k1", &[7; 32]).unwrap(),
            ])
            .unwrap(),
        );
        let signed = sign_with(&creds, T0 + 60);
        verify(
            &SessionSource::new(rotated, HashMap::new()),
            &signed,
            T0 + 60,
        )
        .unwrap();
        let retired =
            Arc::new(SessionKeys::new(vec![SessionKey::new("k2", &[8; 32]).unwrap()]).unwrap());
        let e = rejected(
            verify(
                &SessionSource::new(retired, HashMap::new()),
                &signed,
                T0 + 60,
            )
            .map(|(_, id)| id),
            Code::InvalidClientTokenId,
        );
        assert!(e.message().contains("`k1`"), "{e}");
    }
}
