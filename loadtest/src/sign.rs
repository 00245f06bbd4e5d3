//! Signing with the `aws-sigv4` crate: the signer the AWS SDKs use, independent of the
//! gateway's own verification code, so a request the gateway accepts was signed the
//! way a real client signs it.

use crate::scenario::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// A key ready to sign with: the `aws-sigv4` identity is built once, not per request.
#[derive(Clone, Debug)]
pub struct SigningKey {
    identity: Identity,
    /// The access key id (for reports; never the secret).
    pub access_key_id: String,
}

impl SigningKey {
    /// A signing key from credentials.
    pub fn new(c: &Credentials) -> SigningKey {
        let identity = aws_credential_types::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "loadtest",
        )
        .into();
        SigningKey {
            identity,
            access_key_id: c.access_key_id.clone(),
        }
    }
}

/// Lowercase hex SHA-256 of `body`: the payload hash SigV4 signs.
pub fn payload_hash(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0xf));
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// What to sign: the request line, its headers (`host` must be among them) and the hash
/// of its body.
pub struct ToSign<'a> {
    /// The method.
    pub method: &'a str,
    /// The full URL (scheme, authority, path and query).
    pub url: &'a str,
    /// The headers to sign, `host` first.
    pub headers: &'a [(&'a str, &'a str)],
    /// [`payload_hash`] of the body.
    pub payload_hash: &'a str,
}

/// Signs `req` with `key` for `region`/`service` at `time`; returns the headers to add
/// (`authorization`, `x-amz-date`, and `x-amz-security-token` for a session).
pub fn sign_headers(
    key: &SigningKey,
    region: &str,
    service: &str,
    time: SystemTime,
    req: &ToSign<'_>,
) -> Result<Vec<(&'static str, String)>, String> {
    let params = v4::SigningParams::builder()
        .identity(&key.identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.url,
        req.headers.iter().copied(),
        SignableBody::Precomputed(req.payload_hash.to_string()),
    )
    .map_err(|e| format!("cannot sign {} {}: {e}", req.method, req.url))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("cannot sign {} {}: {e}", req.method, req.url))?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers
        .iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

/// Changes the last hex digit of the `Signature=` in an `Authorization` value, so the
/// signature no longer matches (the header stays well formed).
pub fn tamper(authorization: &str) -> String {
    let mut out = authorization.to_string();
    if let Some(last) = out.pop() {
        out.push(if last == '0' { '1' } else { '0' });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_signs() {
        assert_eq!(
            payload_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let key = SigningKey::new(&Credentials::new("AKIDEXAMPLE", "secret"));
        let hash = payload_hash(b"");
        let headers = sign_headers(
            &key,
            "eu-west-1",
            "execute-api",
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            &ToSign {
                method: "GET",
                url: "https://127.0.0.1:8443/order/orders/42",
                headers: &[("host", "127.0.0.1:8443")],
                payload_hash: &hash,
            },
        )
        .unwrap();
        let auth = &headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/execute-api/aws4_request"
        ));
        let t = tamper(auth);
        assert_ne!(&t, auth);
        assert_eq!(t.len(), auth.len());
    }
}
