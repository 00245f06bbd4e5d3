//! The identity assertion: a short-lived ES256 JWT the gateway adds to every forwarded
//! request, saying who called (role, session ARN, access key, caller PBC) and for which
//! target. Upstreams verify it against the gateway's `/.well-known/jwks.json`, which is
//! what [`AssertionVerifier`] does (the demo and the tests use it too).
//!
//! Keys carry a key id (the RFC 7638 JWK thumbprint) so they can rotate: the signer signs
//! with one active key and publishes every key still accepted, and a verifier picks the
//! key by the token's `kid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// Clock skew tolerated between the gateway and an upstream, in seconds, for `exp`,
/// `nbf` and `iat`. Kept small because the assertion itself lives only a minute.
pub const LEEWAY_SECS: i64 = 5;

/// The claims of an identity assertion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The gateway that issued it.
    pub iss: String,
    /// The caller's role ARN (role path included).
    pub sub: String,
    /// The target PBC the request is forwarded to.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issue time (Unix seconds).
    pub iat: i64,
    /// Not-before (Unix seconds).
    pub nbf: i64,
    /// The request id (also sent as `x-amzn-RequestId`), so logs on both sides join up.
    pub jti: String,
    /// The caller PBC, or `null` when the principal belongs to no PBC.
    pub pbc: Option<String>,
    /// The ARN the caller is known by (e.g. an assumed-role session ARN).
    pub arn: String,
    /// The access key id that signed the request (never the secret).
    pub akid: String,
    /// The source identity carried through role chaining, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_id: Option<String>,
}

/// A P-256 public key as published in the JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PublicJwk {
    kid: String,
    /// Base64url (no padding) of the 32-byte affine x coordinate.
    x: String,
    /// Base64url (no padding) of the 32-byte affine y coordinate.
    y: String,
}

impl PublicJwk {
    /// From an uncompressed SEC1 point (`0x04 || x || y`).
    fn from_sec1(point: &[u8]) -> Result<Self, String> {
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err("not an uncompressed P-256 public key".into()),
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        Ok(Self {
            kid: thumbprint(&x, &y),
            x,
            y,
        })
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order,
/// with no whitespace. A content-derived kid means every replica loading the same key
/// file publishes the same kid, with nothing to configure.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs assertions with an ES256 (P-256) key that has a key id.
pub struct AssertionSigner {
    issuer: String,
    ttl_secs: i64,
    /// The private key. `ring`'s P-256 (assembly field arithmetic) signs in tens of
    /// microseconds, where a portable implementation took hundreds: this runs on every
    /// forwarded request.
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The kid of `key`.
    kid: String,
    /// `base64url({"typ":"JWT","alg":"ES256","kid":...}) + "."`, built once.
    header_b64: String,
    /// Every key a verifier should accept, the active one first; retired keys stay
    /// here for one assertion lifetime after a rotation.
    published: Vec<PublicJwk>,
}

impl fmt::Debug for AssertionSigner {
    // Hand-written so the private key can never end up in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("issuer", &self.issuer)
            .field("ttl_secs", &self.ttl_secs)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// A signer with a fresh P-256 key (per process: each replica then publishes its
    /// own key).
    pub fn generate(issuer: &str, ttl_secs: u64) -> Result<Self, String> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate an assertion signing key: {e}"))?;
        Self::from_key_pair(&pair, issuer, ttl_secs)
    }

    /// A signer with the PKCS#8 PEM P-256 key in `path`.
    pub fn from_pem_file(path: &Path, issuer: &str, ttl_secs: u64) -> Result<Self, String> {
        let file = path.display();
        let pem = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("assertion key_file `{file}`: cannot read it: {e}"))?,
        );
        let pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|_| {
                    // The parser's error text is not shown: it adds nothing for the operator
                    // and must never risk echoing key material.
                    format!(
                        "assertion key_file `{file}`: not a PKCS#8 P-256 private key (expected \
                     `-----BEGIN PRIVATE KEY-----`; `openssl genpkey -algorithm EC -pkeyopt \
                     ec_paramgen_curve:P-256` makes one, `openssl pkcs8 -topk8 -nocrypt` converts \
                     an `EC PRIVATE KEY`)"
                    )
                })?;
        Self::from_key_pair(&pair, issuer, ttl_secs)
            .map_err(|e| format!("assertion key_file `{file}`: {e}"))
    }

    fn from_key_pair(pair: &rcgen::KeyPair, issuer: &str, ttl_secs: u64) -> Result<Self, String> {
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err("the assertion key must be an ECDSA P-256 key".into());
        }
        let ttl_secs = i64::try_from(ttl_secs)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| format!("assertion ttl_secs {ttl_secs} is out of range"))?;
        let public = PublicJwk::from_sec1(pair.public_key_raw())?;
        let der = Zeroizing::new(pair.serialize_der());
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| format!("the assertion key cannot be used for ES256: {e}"))?;
        let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "kid": public.kid });
        let mut header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        header_b64.push('.');
        Ok(Self {
            issuer: issuer.to_string(),
            ttl_secs,
            key,
            rng,
            kid: public.kid.clone(),
            header_b64,
            published: vec![public],
        })
    }

    /// Signs an assertion that `subject` (acting for `caller_pbc`) calls `audience`,
    /// valid from `now` for the configured lifetime.
    pub fn sign(
        &self,
        subject: &crate::identity::Principal,
        caller_pbc: Option<&str>,
        audience: &str,
        request_id: &str,
        now: i64,
    ) -> Result<String, String> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.role_arn.clone(),
            aud: audience.to_string(),
            exp: now.saturating_add(self.ttl_secs),
            iat: now,
            nbf: now,
            jti: request_id.to_string(),
            pbc: caller_pbc.map(str::to_string),
            arn: subject.arn.clone(),
            akid: subject.access_key_id.clone(),
            src_id: subject.source_identity.clone(),
        };
        // JWS compact serialization (RFC 7515): header.payload.signature, with ES256's
        // fixed-size r || s signature (RFC 7518 section 3.4).
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| format!("cannot encode the identity assertion: {e}"))?;
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 90);
        token.push_str(&self.header_b64);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| "cannot sign the identity assertion".to_string())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// The JWKS document to serve at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self.published.iter().map(PublicJwk::to_json).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The `iss` claim this signer writes.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id of the active signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Verifies assertions against a JWKS document (what an upstream does).
pub struct AssertionVerifier {
    issuer: String,
    keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for AssertionVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("AssertionVerifier")
            .field("issuer", &self.issuer)
            .field("kids", &kids)
            .finish()
    }
}

impl AssertionVerifier {
    /// A verifier trusting the ES256 P-256 keys of `jwks` for assertions from `issuer`.
    /// Keys of other types or uses are skipped (a JWKS may carry them); a JWKS with no
    /// usable key, a malformed P-256 key or a repeated kid is refused.
    pub fn from_jwks(jwks: &serde_json::Value, issuer: &str) -> Result<Self, String> {
        let entries = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("the JWKS has no `keys` array")?;
        let mut keys = HashMap::new();
        for (i, jwk) in entries.iter().enumerate() {
            let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
            if field("kty") != Some("EC") || field("crv") != Some("P-256") {
                continue;
            }
            if field("alg").is_some_and(|a| a != "ES256")
                || field("use").is_some_and(|u| u != "sig")
            {
                continue;
            }
            let kid = field("kid").ok_or_else(|| format!("JWKS key {i} has no `kid`"))?;
            let (Some(x), Some(y)) = (field("x"), field("y")) else {
                return Err(format!("JWKS key `{kid}` lacks `x` or `y`"));
            };
            check_p256_point(x, y).map_err(|e| format!("JWKS key `{kid}`: {e}"))?;
            let key = DecodingKey::from_ec_components(x, y)
                .map_err(|e| format!("JWKS key `{kid}`: {e}"))?;
            if keys.insert(kid.to_string(), key).is_some() {
                return Err(format!("JWKS key id `{kid}` appears twice"));
            }
        }
        if keys.is_empty() {
            return Err("the JWKS holds no ES256 P-256 signing key".into());
        }
        Ok(Self {
            issuer: issuer.to_string(),
            keys,
        })
    }

    /// Checks `token`: ES256 signature by a known kid, `iss`, `aud` = `audience`, and
    /// `exp`/`nbf`/`iat` against `now` with [`LEEWAY_SECS`].
    pub fn verify(&self, token: &str, audience: &str, now: i64) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "malformed assertion".to_string())?;
        // Checked before the key look-up so `none`/HMAC tokens are refused for what they
        // are; `Validation::algorithms` below enforces it again.
        if header.alg != Algorithm::ES256 {
            return Err(format!(
                "assertion algorithm {:?} refused: only ES256 is accepted",
                header.alg
            ));
        }
        let kid = header.kid.ok_or("assertion has no key id (kid)")?;
        let key = self
            .keys
            .get(&kid)
            .ok_or("assertion signed with an unknown key id")?;

        let mut validation = Validation::new(Algorithm::ES256);
        // Time is checked below against the caller's `now`, not jsonwebtoken's system
        // clock, so verification is deterministic and testable.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);

        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => "assertion signature does not verify".to_string(),
                ErrorKind::InvalidIssuer => {
                    format!("assertion was not issued by `{}`", self.issuer)
                }
                ErrorKind::InvalidAudience => format!("assertion is not for audience `{audience}`"),
                ErrorKind::InvalidAlgorithm => {
                    "assertion algorithm refused: only ES256 is accepted".to_string()
                }
                ErrorKind::MissingRequiredClaim(c) => format!("assertion lacks the `{c}` claim"),
                _ => format!("invalid assertion: {e}"),
            })?
            .claims;

        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(format!("assertion expired at {} (now {now})", claims.exp));
        }
        if claims.nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(format!(
                "assertion not valid before {} (now {now})",
                claims.nbf
            ));
        }
        if claims.iat > now.saturating_add(LEEWAY_SECS) {
            return Err(format!(
                "assertion issued in the future at {} (now {now})",
                claims.iat
            ));
        }
        Ok(claims)
    }
}

/// Refuses coordinates that are not base64url of 32 bytes each or not a point on P-256,
/// so a bad JWKS fails when loaded rather than at the first request.
fn check_p256_point(x: &str, y: &str) -> Result<(), String> {
    let decode = |c: &str| URL_SAFE_NO_PAD.decode(c).ok().filter(|b| b.len() == 32);
    let (Some(x), Some(y)) = (decode(x), decode(y)) else {
        return Err("`x` and `y` must be base64url of 32 bytes each".into());
    };
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    p256::PublicKey::from_sec1_bytes(&point)
        .map(|_| ())
        .map_err(|_| "not a point on P-256".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::identity::Principal;
    use jsonwebtoken::{EncodingKey, Header};

    const NOW: i64 = 1_700_000_000;

    fn principal() -> Principal {
        Principal {
            role_arn: "arn:aws:iam::111122223333:role/svc/checkout".into(),
            arn: "arn:aws:sts::111122223333:assumed-role/checkout/session-1".into(),
            access_key_id: "ASIAEXAMPLE".into(),
            tags: vec![],
            source_identity: Some("alice".into()),
        }
    }

    fn signer() -> AssertionSigner {
        AssertionSigner::generate("gw", 60).unwrap()
    }

    fn verifier(s: &AssertionSigner) -> AssertionVerifier {
        AssertionVerifier::from_jwks(&s.jwks(), "gw").unwrap()
    }

    fn segments(token: &str) -> (String, String, String) {
        let mut it = token.split('.');
        let t = (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        );
        assert!(it.next().is_none());
        t
    }

    fn b64json(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn round_trip_carries_every_claim() {
        let s = signer();
        let token = s
            .sign(&principal(), Some("checkout"), "order", "req-1", NOW)
            .unwrap();
        let claims = verifier(&s).verify(&token, "order", NOW).unwrap();
        assert_eq!(
            claims,
            Claims {
                iss: "gw".into(),
                sub: "arn:aws:iam::111122223333:role/svc/checkout".into(),
                aud: "order".into(),
                exp: NOW + 60,
                iat: NOW,
                nbf: NOW,
                jti: "req-1".into(),
                pbc: Some("checkout".into()),
                arn: "arn:aws:sts::111122223333:assumed-role/checkout/session-1".into(),
                akid: "ASIAEXAMPLE".into(),
                src_id: Some("alice".into()),
            }
        );
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(s.kid()));
    }

    #[test]
    fn pbc_is_null_not_missing_when_unknown() {
        let s = signer();
        let mut p = principal();
        p.source_identity = None;
        let token = s.sign(&p, None, "order", "req-1", NOW).unwrap();
        let (_, payload, _) = segments(&token);
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["pbc"], serde_json::Value::Null);
        assert!(json.get("src_id").is_none());
        let claims = verifier(&s).verify(&token, "order", NOW).unwrap();
        assert_eq!(claims.pbc, None);
        assert_eq!(claims.src_id, None);
    }

    #[test]
    fn wrong_audience_is_refused() {
        let s = signer();
        let token = s
            .sign(&principal(), Some("checkout"), "order", "r", NOW)
            .unwrap();
        let err = verifier(&s).verify(&token, "payment", NOW).unwrap_err();
        assert!(err.contains("audience"), "{err}");
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let s = signer();
        let token = s.sign(&principal(), None, "order", "r", NOW).unwrap();
        let v = AssertionVerifier::from_jwks(&s.jwks(), "someone-else").unwrap();
        let err = v.verify(&token, "order", NOW).unwrap_err();
        assert!(err.contains("issued by"), "{err}");
    }

    #[test]
    fn expiry_uses_now_with_five_seconds_leeway() {
        let s = signer();
        let token = s.sign(&principal(), None, "order", "r", NOW).unwrap();
        let v = verifier(&s);
        assert!(v.verify(&token, "order", NOW + 60).is_ok());
        assert!(v.verify(&token, "order", NOW + 65).is_ok());
        let err = v.verify(&token, "order", NOW + 66).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        // Far in the past relative to the system clock: still valid at its own `now`.
        let old = s.sign(&principal(), None, "order", "r", 1000).unwrap();
        assert!(v.verify(&old, "order", 1000).is_ok());
    }

    #[test]
    fn not_yet_valid_is_refused() {
        let s = signer();
        let token = s.sign(&principal(), None, "order", "r", NOW).unwrap();
        let v = verifier(&s);
        assert!(v.verify(&token, "order", NOW - 5).is_ok());
        let err = v.verify(&token, "order", NOW - 6).unwrap_err();
        assert!(err.contains("not valid before"), "{err}");
    }

    #[test]
    fn tampered_token_is_refused() {
        let s = signer();
        let token = s
            .sign(&principal(), Some("checkout"), "order", "r", NOW)
            .unwrap();
        let (h, p, sig) = segments(&token);
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p).unwrap()).unwrap();
        claims["sub"] = "arn:aws:iam::111122223333:role/admin".into();
        let forged = format!("{h}.{}.{sig}", b64json(&claims));
        let err = verifier(&s).verify(&forged, "order", NOW).unwrap_err();
        assert!(err.contains("signature"), "{err}");

        let mut sig_bytes = URL_SAFE_NO_PAD.decode(&sig).unwrap();
        sig_bytes[10] ^= 1;
        let flipped = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig_bytes));
        assert!(verifier(&s).verify(&flipped, "order", NOW).is_err());
        assert!(verifier(&s).verify("not-a-jwt", "order", NOW).is_err());
        assert!(verifier(&s).verify("", "order", NOW).is_err());
    }

    #[test]
    fn other_key_and_unknown_kid_are_refused() {
        let s = signer();
        let other = signer();
        let token = other.sign(&principal(), None, "order", "r", NOW).unwrap();
        let err = verifier(&s).verify(&token, "order", NOW).unwrap_err();
        assert!(err.contains("unknown key id"), "{err}");

        // Same key, but the kid in the header rewritten: the header is signed, and the kid
        // names no key anyway.
        let (_, p, sig) = segments(&s.sign(&principal(), None, "order", "r", NOW).unwrap());
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "nope"});
        let err = verifier(&s)
            .verify(&format!("{}.{p}.{sig}", b64json(&header)), "order", NOW)
            .unwrap_err();
        assert!(err.contains("unknown key id"), "{err}");

        // Other key's signature under our kid: the signature check catches it.
        let (_, p2, sig2) = segments(&token);
        let (h, _, _) = segments(&s.sign(&principal(), None, "order", "r", NOW).unwrap());
        let err = verifier(&s)
            .verify(&format!("{h}.{p2}.{sig2}"), "order", NOW)
            .unwrap_err();
        assert!(err.contains("signature"), "{err}");
    }

    #[test]
    fn alg_none_and_hs256_are_refused() {
        let s = signer();
        let v = verifier(&s);
        let (_, p, _) = segments(&s.sign(&principal(), None, "order", "r", NOW).unwrap());

        let none = serde_json::json!({"alg": "none", "typ": "JWT", "kid": s.kid()});
        assert!(
            v.verify(&format!("{}.{p}.", b64json(&none)), "order", NOW)
                .is_err()
        );

        // HS256 keyed with public JWK material: the classic algorithm-confusion forgery.
        let jwk = &s.jwks()["keys"][0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(s.kid().to_string());
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p).unwrap()).unwrap();
        for secret in [jwk["x"].as_str().unwrap(), &jwk.to_string()] {
            let forged = jsonwebtoken::encode(
                &header,
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap();
            let err = v.verify(&forged, "order", NOW).unwrap_err();
            assert!(err.contains("only ES256"), "{err}");
        }
    }

    #[test]
    fn jwks_shape() {
        let s = signer();
        let jwks = s.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let k = keys[0].as_object().unwrap();
        let mut names: Vec<&str> = k.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["crv"], "P-256");
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["kid"], s.kid());
        for c in ["x", "y"] {
            assert_eq!(
                URL_SAFE_NO_PAD
                    .decode(k[c].as_str().unwrap())
                    .unwrap()
                    .len(),
                32
            );
        }
        // RFC 7638 thumbprint, recomputed independently from the published members.
        let canonical =
            serde_json::json!({"crv": k["crv"], "kty": k["kty"], "x": k["x"], "y": k["y"]});
        let want = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.to_string().as_bytes()));
        assert_eq!(k["kid"], want.as_str());
        assert_eq!(want.len(), 43);
    }

    #[test]
    fn kid_is_stable_per_key() {
        // Different keys give different kids; the same key always the same kid.
        let a = signer();
        let b = signer();
        assert_ne!(a.kid(), b.kid());
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let one = AssertionSigner::from_key_pair(&pair, "gw", 60).unwrap();
        let two = AssertionSigner::from_key_pair(&pair, "gw", 60).unwrap();
        assert_eq!(one.kid(), two.kid());
        assert_eq!(one.jwks(), two.jwks());
    }

    #[test]
    fn pem_file_round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("gw-assertion-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let good = dir.join("key.pem");
        std::fs::write(&good, pair.serialize_pem()).unwrap();
        let a = AssertionSigner::from_pem_file(&good, "gw", 60).unwrap();
        let b = AssertionSigner::from_pem_file(&good, "gw", 60).unwrap();
        assert_eq!(
            a.kid(),
            b.kid(),
            "replicas sharing a key file publish the same kid"
        );
        let token = a.sign(&principal(), None, "order", "r", NOW).unwrap();
        assert!(verifier(&b).verify(&token, "order", NOW).is_ok());
        assert!(format!("{a:?}").contains(a.kid()));

        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let wrong = dir.join("p384.pem");
        std::fs::write(&wrong, p384.serialize_pem()).unwrap();
        let err = AssertionSigner::from_pem_file(&wrong, "gw", 60).unwrap_err();
        assert!(err.contains("p384.pem") && err.contains("P-256"), "{err}");
        assert!(!err.contains("PRIVATE KEY-----\n"), "{err}");

        let missing = dir.join("missing.pem");
        let err = AssertionSigner::from_pem_file(&missing, "gw", 60).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_jwks_documents_are_refused() {
        let s = signer();
        let good = s.jwks()["keys"][0].clone();
        assert!(AssertionVerifier::from_jwks(&serde_json::json!({}), "gw").is_err());
        assert!(AssertionVerifier::from_jwks(&serde_json::json!({"keys": []}), "gw").is_err());
        let rsa_only =
            serde_json::json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}]});
        assert!(AssertionVerifier::from_jwks(&rsa_only, "gw").is_err());
        let dup = serde_json::json!({"keys": [good.clone(), good.clone()]});
        assert!(
            AssertionVerifier::from_jwks(&dup, "gw")
                .unwrap_err()
                .contains("twice")
        );
        let mut off_curve = good.clone();
        off_curve["y"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
        assert!(
            AssertionVerifier::from_jwks(&serde_json::json!({"keys": [off_curve]}), "gw").is_err()
        );
        let mut short = good.clone();
        short["x"] = "AAAA".into();
        assert!(AssertionVerifier::from_jwks(&serde_json::json!({"keys": [short]}), "gw").is_err());
        // Unusable keys beside a good one are skipped, not fatal.
        let mixed = serde_json::json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
            good,
        ]});
        let v = AssertionVerifier::from_jwks(&mixed, "gw").unwrap();
        let token = s.sign(&principal(), None, "order", "r", NOW).unwrap();
        assert!(v.verify(&token, "order", NOW).is_ok());
    }
}
