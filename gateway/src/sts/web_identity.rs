//! Web identity tokens for `AssumeRoleWithWebIdentity`: OIDC JWTs (Kubernetes
//! service-account tokens, SPIFFE JWT-SVIDs) from configured issuers, verified with
//! `jsonwebtoken` against each issuer's JWKS.
//!
//! The request that carries such a token is unsigned (as at AWS), so the token is the
//! whole proof and everything about it is checked: its size, its shape, the algorithm
//! (asymmetric only, and only what the issuer's key allows: never `none`, never HMAC, so
//! a public key can never be used as an HMAC secret), the signature, `iss` (exact), `aud`
//! (one of the issuer's configured audiences), `exp` (required), `nbf` and `iat`, with
//! the issuer's leeway. The trust policy's `sub` conditions are checked by the caller
//! with [`sub_matches`].
//!
//! Keys come from a JWKS file or an `https` URL. Both are cached for `jwks_cache_secs`;
//! a token whose `kid` is unknown makes the verifier look again at once: a file is
//! re-read when its modification time or size changed, a URL is fetched again, but such
//! refetches happen at most once per [`REFETCH_INTERVAL`] and a failed fetch is not
//! retried sooner either, so a flood of made-up key ids (or an outage) cannot turn the
//! gateway into a load generator against the identity provider. A JWKS that fails to
//! load never replaces keys that work: through an outage, cached keys keep verifying.
//!
//! Tokens are never logged, not even in part.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Largest token accepted, in bytes. Real service-account tokens and JWT-SVIDs are 1 to
/// 2 KiB; the bound keeps base64 and JSON decoding of hostile input cheap.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest JWKS document accepted, from a file or a URL.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Time allowed for a JWKS fetch: connect, TLS, response head and body together.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Per issuer, a JWKS URL is refetched for an unknown key id at most once per this
/// interval, and a failed fetch is retried no sooner; a smaller `jwks_cache_secs` is
/// refused for the same reason.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Most leeway an issuer may configure: more would make `exp` meaningless for the
/// short-lived tokens these issuers hand out.
const MAX_LEEWAY_SECS: u64 = 600;

/// Longest JWKS cache period: a week. Keys removed at the issuer must stop working.
const MAX_JWKS_CACHE_SECS: u64 = 7 * 24 * 3600;

/// RSA moduli outside these bounds are not used: below 2048 bits is breakable in
/// practice, and `jsonwebtoken`'s RSA backend refuses more than 4096 bits, which is
/// better said when the JWKS is loaded than as a signature failure later.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;

/// The algorithms an RSA key without an `alg` member may verify.
const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn default_jwks_cache_secs() -> u64 {
    300
}

fn default_leeway_secs() -> u64 {
    60
}

/// One trusted OIDC issuer, from config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The exact `iss` its tokens carry, e.g. `https://kubernetes.default.svc`.
    pub issuer: String,
    /// The `aud` values accepted from it; a token is accepted when its `aud` holds any
    /// of them.
    pub audiences: Vec<String>,
    /// A JWKS file (e.g. `kubectl get --raw /openid/v1/jwks`). Exactly one of
    /// `jwks_file` and `jwks_url` is set.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL; `https://` only.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA bundle the `jwks_url` server's certificate is checked against (the only
    /// roots used; for a public identity provider, the system bundle). Required with
    /// `jwks_url`.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// How long loaded keys are used before the source is looked at again, in seconds
    /// (default 300, at least 30).
    #[serde(default = "default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
    /// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds (default 60, at
    /// most 600).
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
}

/// A verified web identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebIdentity {
    /// The issuer (`iss`), as configured.
    pub issuer: String,
    /// The subject (`sub`), e.g. `system:serviceaccount:checkout:checkout-sa` or
    /// `spiffe://mesh.local/ns/checkout/sa/checkout`.
    pub subject: String,
    /// The configured audience the token was accepted for (the first configured one
    /// its `aud` holds).
    pub audience: String,
    /// The token's `exp` (Unix seconds); issued credentials should not outlive it.
    pub expires_at: i64,
    /// The token's `iat` (Unix seconds), when it has one.
    pub issued_at: Option<i64>,
}

/// Why a web identity token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebIdentityError {
    /// The token is malformed, untrusted, badly signed or not valid yet (AWS:
    /// `InvalidIdentityToken`).
    Invalid(String),
    /// The token has expired (AWS: `ExpiredTokenException`).
    Expired(String),
    /// The issuer's keys could not be loaded, so the token could not be checked (AWS:
    /// `IDPCommunicationError`); worth retrying.
    IdpUnreachable(String),
}

impl WebIdentityError {
    /// The message for the caller (it never contains the token).
    pub fn message(&self) -> &str {
        match self {
            Self::Invalid(m) | Self::Expired(m) | Self::IdpUnreachable(m) => m,
        }
    }
}

impl fmt::Display for WebIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl StdError for WebIdentityError {}

fn invalid(message: impl Into<String>) -> WebIdentityError {
    WebIdentityError::Invalid(message.into())
}

/// Verifies web identity tokens against the configured issuers.
pub struct WebIdentityVerifier {
    issuers: HashMap<String, Issuer>,
}

impl fmt::Debug for WebIdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.issuers.keys().collect();
        names.sort();
        f.debug_struct("WebIdentityVerifier")
            .field("issuers", &names)
            .finish()
    }
}

impl WebIdentityVerifier {
    /// Checks the configuration and loads every `jwks_file` now, so a broken file fails
    /// at start-up or reload rather than at the first token. (`jwks_url`s are fetched
    /// at first use: the gateway must start while an identity provider is down.) Errors
    /// name the issuer.
    pub fn new(issuers: &[OidcIssuerConfig]) -> Result<Self, String> {
        let mut map = HashMap::with_capacity(issuers.len());
        for cfg in issuers {
            let issuer =
                Issuer::new(cfg).map_err(|e| format!("oidc issuer `{}`: {e}", cfg.issuer))?;
            if map.insert(cfg.issuer.clone(), issuer).is_some() {
                return Err(format!("oidc issuer `{}` is configured twice", cfg.issuer));
            }
        }
        Ok(Self { issuers: map })
    }

    /// Verifies `token` at `now` (Unix seconds): picks the issuer by the token's
    /// (unverified) `iss`, then the key by `kid` (reloading the JWKS when the kid is
    /// unknown, see the module documentation), checks the signature with the algorithm
    /// the key allows, `iss`, `aud`, `exp` (required; expired when `exp <= now -
    /// leeway`), `nbf` and `iat` (not after `now + leeway`).
    pub async fn verify(&self, token: &str, now: i64) -> Result<WebIdentity, WebIdentityError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "the web identity token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let parts = Parts::split(token)?;
        let header = parse_header(parts.header)?;
        let iss = unverified_issuer(parts.payload)?;
        let Some(issuer) = self.issuers.get(&iss) else {
            return Err(invalid(format!(
                "no OpenID Connect provider is trusted for issuer {}",
                shown(&iss)
            )));
        };
        issuer.verify(token, &header, now).await
    }
}

/// Trust-policy `sub` conditions: IAM `StringLike` matching, case-sensitive, where `*`
/// matches any run of characters (the empty one too) and `?` exactly one, as in
/// `token.actions.githubusercontent.com:sub` or `oidc.eks...:sub` conditions. As in IAM,
/// `${*}`, `${?}` and `${$}` stand for a literal `*`, `?` and `$`.
pub fn sub_matches(pattern: &str, sub: &str) -> bool {
    let pattern = pattern_tokens(pattern);
    let sub: Vec<char> = sub.chars().collect();
    // The classic linear-space wildcard match: on a mismatch, go back to the last `*`
    // and let it swallow one more character. Worst case O(pattern * sub).
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if s == sub.len() {
            return pattern
                .get(p..)
                .is_some_and(|rest| rest.iter().all(|t| *t == Tok::Star));
        }
        match (pattern.get(p), sub.get(s)) {
            (Some(Tok::Star), _) => {
                star = Some((p, s));
                p += 1;
            }
            (Some(Tok::One), Some(_)) => {
                p += 1;
                s += 1;
            }
            (Some(Tok::Lit(want)), Some(got)) if want == got => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    p = sp + 1;
                    s = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Star,
    One,
}

fn pattern_tokens(pattern: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        let (tok, len) = if rest.starts_with("${*}") {
            (Tok::Lit('*'), 4)
        } else if rest.starts_with("${?}") {
            (Tok::Lit('?'), 4)
        } else if rest.starts_with("${$}") {
            (Tok::Lit('$'), 4)
        } else {
            let tok = match c {
                '*' => Tok::Star,
                '?' => Tok::One,
                other => Tok::Lit(other),
            };
            (tok, c.len_utf8())
        };
        out.push(tok);
        rest = rest.get(len..).unwrap_or_default();
    }
    out
}

// ---------------------------------------------------------------------------------------
// The token, before verification

/// The three base64url segments of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, WebIdentityError> {
        let mut it = token.split('.');
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(header), Some(payload), Some(_signature), None)
                if !header.is_empty() && !payload.is_empty() =>
            {
                Ok(Self { header, payload })
            }
            // Five segments is an encrypted JWT (JWE), which no supported issuer sends.
            _ => Err(invalid(
                "the web identity token is not a signed JWT (three base64url segments)",
            )),
        }
    }
}

/// What the verifier needs from the JOSE header.
#[derive(Debug)]
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn decode_segment(segment: &str, what: &str) -> Result<Map<String, Value>, WebIdentityError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| invalid(format!("the web identity token's {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid(format!(
            "the web identity token's {what} is not a JSON object"
        ))),
    }
}

fn parse_header(segment: &str) -> Result<TokenHeader, WebIdentityError> {
    let header = decode_segment(segment, "header")?;
    // RFC 7515 §4.1.11: extensions marked critical must be understood; none are.
    if header.contains_key("crit") {
        return Err(invalid(
            "the web identity token's header has `crit` extensions, which are not supported",
        ));
    }
    let alg = match header.get("alg").and_then(Value::as_str) {
        None => return Err(invalid("the web identity token's header has no `alg`")),
        // Refused by name before any key is looked at, so the reason is plain.
        Some("none") => {
            return Err(invalid(
                "algorithm `none` is refused: web identity tokens must be signed",
            ));
        }
        Some(a) if a.starts_with("HS") => {
            return Err(invalid(format!(
                "algorithm {} is refused: only asymmetric signatures (RS*, PS*, ES256, ES384, \
                 EdDSA) are accepted",
                shown(a)
            )));
        }
        Some(a) => a.parse::<Algorithm>().map_err(|_| {
            invalid(format!(
                "algorithm {} is not supported (RS*, PS*, ES256, ES384, EdDSA are)",
                shown(a)
            ))
        })?,
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("the web identity token's `kid` is not a string")),
    };
    Ok(TokenHeader { alg, kid })
}

/// The `iss` claim, read before the signature is checked: it only chooses which
/// issuer's keys and rules apply, and is then checked again as part of the verified
/// claims.
fn unverified_issuer(segment: &str) -> Result<String, WebIdentityError> {
    let claims = decode_segment(segment, "payload")?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(invalid("the web identity token's `iss` is not a string")),
        None => Err(invalid("the web identity token has no `iss` claim")),
    }
}

/// A value from the token, quoted and cut short, for an error message: the caller
/// controls it, so it must not be able to make the message arbitrarily long.
fn shown(s: &str) -> String {
    const MAX: usize = 128;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

// ---------------------------------------------------------------------------------------
// Keys

/// A usable key from a JWKS and the algorithms it may verify.
#[derive(Clone)]
struct TrustedKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// A parsed JWKS.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, TrustedKey>,
    /// Keys published without a `kid`; usable only by a token without one.
    unnamed: Vec<TrustedKey>,
    /// Why each key with a kid was not used, so a token naming it gets the reason.
    skipped: HashMap<String, String>,
}

enum Lookup<'a> {
    Found(&'a TrustedKey),
    Unknown,
    Unusable(String),
    Ambiguous(usize),
}

impl KeySet {
    fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    fn find(&self, kid: Option<&str>) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(k) => Lookup::Found(k),
                None => match self.skipped.get(kid) {
                    Some(why) => Lookup::Unusable(why.clone()),
                    None => Lookup::Unknown,
                },
            },
            // No kid: only unambiguous when the issuer publishes a single key.
            None => {
                let mut all = self.by_kid.values().chain(self.unnamed.iter());
                match (all.next(), all.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    _ => Lookup::Ambiguous(self.len()),
                }
            }
        }
    }

    fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// Parses a JWKS document. Keys that cannot be used for signature verification here
/// (symmetric, encryption, unsupported curve or algorithm, weak or malformed) are
/// skipped; a JWKS with no usable key or with a kid used twice is refused.
fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no `keys` array")?;
    let mut set = KeySet::default();
    let mut seen = HashSet::new();
    for (i, jwk) in entries.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str);
        if let Some(kid) = kid
            && !seen.insert(kid.to_string())
        {
            return Err(format!("JWKS key id `{kid}` appears twice"));
        }
        match parse_jwk(jwk) {
            Ok(key) => match kid {
                Some(kid) => {
                    set.by_kid.insert(kid.to_string(), key);
                }
                None => set.unnamed.push(key),
            },
            Err(why) => {
                tracing::debug!(key = i, kid, reason = %why, "JWKS key skipped");
                if let Some(kid) = kid {
                    set.skipped.insert(kid.to_string(), why);
                }
            }
        }
    }
    if set.len() == 0 {
        let mut reasons: Vec<String> = set
            .skipped
            .iter()
            .map(|(k, why)| format!("`{k}`: {why}"))
            .collect();
        reasons.sort();
        let detail = if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join("; "))
        };
        return Err(format!("the JWKS holds no usable signing key{detail}"));
    }
    Ok(set)
}

/// Decodes base64url, tolerating the `=` padding some publishers add.
fn b64(value: Option<&Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = value
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no `{name}` member"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// One JWK as a verification key.
fn parse_jwk(jwk: &Value) -> Result<TrustedKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if !jwk.is_object() {
        return Err("not a JSON object".into());
    }
    if let Some(u) = jwk.get("use")
        && u.as_str() != Some("sig")
    {
        return Err("not a signing key (`use` is not `sig`)".into());
    }
    if let Some(ops) = jwk.get("key_ops")
        && !ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")))
    {
        return Err("`key_ops` does not allow `verify`".into());
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(a.as_str()),
        Some(_) => return Err("`alg` is not a string".into()),
    };
    let kty = field("kty").ok_or("no `kty` member")?;
    match kty {
        "RSA" => {
            let n = b64(jwk.get("n"), "n")?;
            let e = b64(jwk.get("e"), "e")?;
            let bits = bit_length(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "RSA modulus of {bits} bits (from {MIN_RSA_BITS} to {MAX_RSA_BITS} are used)"
                ));
            }
            // The exponent bounds jsonwebtoken's RSA backend enforces (odd, 3 to
            // 2^33 - 1), checked here so a bad key is reported as such.
            let e_value = e
                .iter()
                .skip_while(|b| **b == 0)
                .try_fold(0u64, |acc, b| {
                    acc.checked_mul(256).map(|v| v | u64::from(*b))
                })
                .unwrap_or(u64::MAX);
            if e_value < 3 || e_value % 2 == 0 || e_value > (1u64 << 33) - 1 {
                return Err("RSA public exponent out of range".into());
            }
            let algorithms = match alg {
                None => RSA_ALGORITHMS.to_vec(),
                Some(a) => vec![family_alg(a, RSA_ALGORITHMS, "an RSA key")?],
            };
            Ok(TrustedKey {
                key: DecodingKey::from_rsa_raw_components(&n, &e),
                algorithms,
            })
        }
        "EC" => {
            let (want, size) = match field("crv") {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                Some(c) => return Err(format!("unsupported curve {}", shown(c))),
                None => return Err("no `crv` member".into()),
            };
            let x = b64(jwk.get("x"), "x")?;
            let y = b64(jwk.get("y"), "y")?;
            if x.len() != size || y.len() != size {
                return Err(format!("`x` and `y` must be {size} bytes each"));
            }
            if want == Algorithm::ES256 {
                check_p256_point(&x, &y)?;
            }
            let algorithms = match alg {
                None => vec![want],
                Some(a) => vec![family_alg(a, &[want], "this curve")?],
            };
            let key = DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(&x),
                &URL_SAFE_NO_PAD.encode(&y),
            )
            .map_err(|e| format!("unusable EC key: {e}"))?;
            Ok(TrustedKey { key, algorithms })
        }
        "OKP" => {
            match field("crv") {
                Some("Ed25519") => {}
                Some(c) => return Err(format!("unsupported curve {}", shown(c))),
                None => return Err("no `crv` member".into()),
            }
            // Exactly 32 bytes: jsonwebtoken's Ed25519 verifier slices the first 32
            // without checking, so a short key must never reach it.
            let x = b64(jwk.get("x"), "x")?;
            if x.len() != 32 {
                return Err("an Ed25519 `x` must be 32 bytes".into());
            }
            // RFC 9864 names the algorithm `Ed25519`; older JWKS say `EdDSA`.
            if let Some(a) = alg
                && a != "EdDSA"
                && a != "Ed25519"
            {
                return Err(format!("`alg` {} does not fit an Ed25519 key", shown(a)));
            }
            let key = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(&x))
                .map_err(|e| format!("unusable Ed25519 key: {e}"))?;
            Ok(TrustedKey {
                key,
                algorithms: vec![Algorithm::EdDSA],
            })
        }
        // A shared secret in a public document is a misconfiguration, and accepting
        // HMAC at all is what makes algorithm-confusion forgeries possible.
        "oct" => Err("symmetric keys are never trusted".into()),
        other => Err(format!("unsupported key type {}", shown(other))),
    }
}

/// The JWK's `alg`, if it is one of `allowed`.
fn family_alg(alg: &str, allowed: &[Algorithm], what: &str) -> Result<Algorithm, String> {
    alg.parse::<Algorithm>()
        .ok()
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| format!("`alg` {} does not fit {what}", shown(alg)))
}

/// Bits in a big-endian unsigned integer.
fn bit_length(n: &[u8]) -> usize {
    let mut digits = n.iter().skip_while(|b| **b == 0);
    match digits.next() {
        None => 0,
        Some(first) => {
            let rest = digits.count();
            rest * 8 + (8 - first.leading_zeros() as usize)
        }
    }
}

/// Refuses a point that is not on P-256, so such a key is reported when loaded.
fn check_p256_point(x: &[u8], y: &[u8]) -> Result<(), String> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    p256::PublicKey::from_sec1_bytes(&point)
        .map(|_| ())
        .map_err(|_| "not a point on P-256".to_string())
}

// ---------------------------------------------------------------------------------------
// One issuer: its rules, its key source, its cached keys

pub(crate) type JwksClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

enum Source {
    File(PathBuf),
    /// The client is boxed: it is large and the file variant is common.
    Url {
        uri: Uri,
        client: Box<JwksClient>,
    },
}

/// Keys as last loaded, and when the source was last looked at.
#[derive(Clone)]
struct Snapshot {
    keys: Arc<KeySet>,
    checked_at: Instant,
}

/// What a file looked like when it was last read: a change of either means re-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
        }
    }
}

/// Bookkeeping of reloads; behind an async mutex, so one task reloads at a time and
/// the others wait for its result instead of fetching again.
#[derive(Default)]
struct ReloadState {
    /// The last fetch attempt (URL sources): after a failure, the next one waits
    /// [`REFETCH_INTERVAL`], so an outage is not answered with a fetch per token.
    last_attempt: Option<Instant>,
    /// The last fetch made because a token named a key id the cache did not hold (URL
    /// sources): at most one per [`REFETCH_INTERVAL`].
    last_refetch: Option<Instant>,
    /// Why the last attempt failed, if it did.
    last_error: Option<String>,
    /// The file as last read (file sources).
    file_stamp: Option<FileStamp>,
}

struct Issuer {
    name: String,
    audiences: Vec<String>,
    leeway: i64,
    cache_for: Duration,
    /// [`REFETCH_INTERVAL`]; a field so unit tests can shorten it.
    refetch_interval: Duration,
    source: Source,
    /// `None` until a URL source was fetched successfully once. Never held across an
    /// await.
    keys: RwLock<Option<Snapshot>>,
    reload: tokio::sync::Mutex<ReloadState>,
}

/// Where the keys stand after a reload attempt.
struct Reloaded {
    snapshot: Option<Snapshot>,
    /// Set when the source could not be read, now or (rate-limited) the last time.
    failure: Option<String>,
}

impl Issuer {
    fn new(cfg: &OidcIssuerConfig) -> Result<Self, String> {
        if cfg.issuer.is_empty() {
            return Err("`issuer` is empty".into());
        }
        if cfg.audiences.is_empty() || cfg.audiences.iter().any(String::is_empty) {
            return Err("`audiences` must list at least one non-empty audience".into());
        }
        if !(REFETCH_INTERVAL.as_secs()..=MAX_JWKS_CACHE_SECS).contains(&cfg.jwks_cache_secs) {
            return Err(format!(
                "jwks_cache_secs must be from {} to {MAX_JWKS_CACHE_SECS} (keys are never fetched \
                 more often than every {} s)",
                REFETCH_INTERVAL.as_secs(),
                REFETCH_INTERVAL.as_secs()
            ));
        }
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(format!("leeway_secs must be at most {MAX_LEEWAY_SECS}"));
        }
        let mut state = ReloadState::default();
        let (source, snapshot) = match (&cfg.jwks_file, &cfg.jwks_url) {
            (Some(path), None) => {
                if cfg.ca_bundle.is_some() {
                    return Err("ca_bundle is only for jwks_url".into());
                }
                let (keys, stamp) = read_jwks_file_sync(path)?;
                state.file_stamp = Some(stamp);
                let snapshot = Snapshot {
                    keys: Arc::new(keys),
                    checked_at: Instant::now(),
                };
                (Source::File(path.clone()), Some(snapshot))
            }
            (None, Some(url)) => {
                let uri = parse_https_url(url)?;
                let bundle = cfg.ca_bundle.as_deref().ok_or(
                    "jwks_url needs ca_bundle (the CA that signed the JWKS server's certificate; \
                     for a public identity provider, the system CA bundle)",
                )?;
                let client = jwks_client(bundle)?;
                (
                    Source::Url {
                        uri,
                        client: Box::new(client),
                    },
                    None,
                )
            }
            _ => return Err("set exactly one of jwks_file and jwks_url".into()),
        };
        Ok(Self {
            name: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            leeway: i64::try_from(cfg.leeway_secs).unwrap_or(i64::MAX),
            cache_for: Duration::from_secs(cfg.jwks_cache_secs),
            refetch_interval: REFETCH_INTERVAL,
            source,
            keys: RwLock::new(snapshot),
            reload: tokio::sync::Mutex::new(state),
        })
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, snapshot: Snapshot) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }

    fn is_fresh(&self, s: &Snapshot) -> bool {
        s.checked_at.elapsed() < self.cache_for
    }

    async fn verify(
        &self,
        token: &str,
        header: &TokenHeader,
        now: i64,
    ) -> Result<WebIdentity, WebIdentityError> {
        let kid = header.kid.as_deref();
        let key = self.key_for(kid).await?;
        if !key.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} does not match the issuer's key{}",
                header.alg,
                kid.map(|k| format!(" {}", shown(k))).unwrap_or_default()
            )));
        }

        let mut validation = Validation::new(header.alg);
        // Time is checked below against the caller's `now`, not jsonwebtoken's system
        // clock, so verification is deterministic and testable.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.name]);
        validation.set_audience(&self.audiences);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| self.describe(e.kind(), kid))?
            .claims;

        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(invalid(
                    "the web identity token's `sub` is empty or not a string",
                ));
            }
        };
        let audience = accepted_audience(claims.get("aud"), &self.audiences).ok_or_else(|| {
            invalid("the web identity token's audience is not accepted for this issuer")
        })?;
        let exp = numeric_date(&claims, "exp")?
            .ok_or_else(|| invalid("the web identity token lacks the `exp` claim"))?;
        let nbf = numeric_date(&claims, "nbf")?;
        let iat = numeric_date(&claims, "iat")?;

        if exp <= now.saturating_sub(self.leeway) {
            return Err(WebIdentityError::Expired(format!(
                "the web identity token expired at {exp} (now {now})"
            )));
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(invalid(format!(
                "the web identity token is not valid before {nbf} (now {now})"
            )));
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(self.leeway)
        {
            return Err(invalid(format!(
                "the web identity token was issued in the future, at {iat} (now {now})"
            )));
        }
        Ok(WebIdentity {
            issuer: self.name.clone(),
            subject,
            audience,
            expires_at: exp,
            issued_at: iat,
        })
    }

    fn describe(&self, kind: &ErrorKind, kid: Option<&str>) -> WebIdentityError {
        let key = kid.map(|k| format!(" {}", shown(k))).unwrap_or_default();
        invalid(match kind {
            ErrorKind::InvalidSignature => {
                format!(
                    "the web identity token's signature does not verify with the issuer's key{key}"
                )
            }
            ErrorKind::InvalidIssuer => {
                format!("the web identity token was not issued by `{}`", self.name)
            }
            ErrorKind::InvalidAudience => {
                "the web identity token's audience is not accepted for this issuer".to_string()
            }
            ErrorKind::MissingRequiredClaim(c) => {
                format!("the web identity token lacks the `{c}` claim")
            }
            ErrorKind::InvalidAlgorithm => {
                "the web identity token's algorithm does not match the issuer's key".to_string()
            }
            ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEddsaKey => {
                format!("the issuer's key{key} cannot verify signatures")
            }
            _ => "the web identity token is malformed".to_string(),
        })
    }

    /// The key for `kid`, reloading the source when the cache is stale or the kid is
    /// unknown.
    async fn key_for(&self, kid: Option<&str>) -> Result<TrustedKey, WebIdentityError> {
        if let Some(s) = self.snapshot()
            && self.is_fresh(&s)
            && let Lookup::Found(k) = s.keys.find(kid)
        {
            return Ok(k.clone());
        }
        let reloaded = self.reload(kid).await;
        let Some(snapshot) = reloaded.snapshot else {
            return Err(WebIdentityError::IdpUnreachable(format!(
                "the keys of issuer `{}` could not be loaded: {}",
                self.name,
                reloaded.failure.as_deref().unwrap_or("not fetched yet")
            )));
        };
        match snapshot.keys.find(kid) {
            // Possibly from a stale cache when the reload failed: keys that verified
            // before keep working through an identity-provider outage.
            Lookup::Found(k) => Ok(k.clone()),
            Lookup::Unknown => match reloaded.failure {
                Some(why) => Err(WebIdentityError::IdpUnreachable(format!(
                    "the web identity token's key id is not among the keys of issuer `{}`, and \
                     they could not be reloaded: {why}",
                    self.name
                ))),
                None => Err(invalid(format!(
                    "the web identity token is signed with key id {}, which issuer `{}` does not \
                     publish",
                    kid.map(shown).unwrap_or_default(),
                    self.name
                ))),
            },
            Lookup::Unusable(why) => Err(invalid(format!(
                "the issuer's key {} cannot be used: {why}",
                kid.map(shown).unwrap_or_default()
            ))),
            Lookup::Ambiguous(n) => Err(invalid(format!(
                "the web identity token has no `kid` and issuer `{}` publishes {n} keys",
                self.name
            ))),
        }
    }

    /// Looks at the source again, if it is due: one task at a time.
    async fn reload(&self, kid: Option<&str>) -> Reloaded {
        let mut state = self.reload.lock().await;
        // Another task may have reloaded while this one waited for the lock.
        if let Some(s) = self.snapshot()
            && self.is_fresh(&s)
            && matches!(s.keys.find(kid), Lookup::Found(_))
        {
            return Reloaded {
                snapshot: Some(s),
                failure: None,
            };
        }
        match &self.source {
            Source::File(path) => self.reload_file(path, &mut state).await,
            Source::Url { uri, client } => self.reload_url(uri, client, &mut state).await,
        }
    }

    async fn reload_file(&self, path: &Path, state: &mut ReloadState) -> Reloaded {
        let current = self.snapshot();
        let keep = |failure: Option<String>| {
            // The file was looked at: the cache period starts again whatever it held.
            let snapshot = current.as_ref().map(|s| Snapshot {
                keys: s.keys.clone(),
                checked_at: Instant::now(),
            });
            if let Some(s) = &snapshot {
                self.store(s.clone());
            }
            Reloaded { snapshot, failure }
        };
        let stamp = match tokio::fs::metadata(path).await {
            Ok(meta) => FileStamp::of(&meta),
            Err(e) => {
                let why = format!("jwks_file `{}`: cannot read it: {e}", path.display());
                tracing::warn!(issuer = %self.name, error = %why, "JWKS file unreadable; keeping the keys loaded before");
                return keep(Some(why));
            }
        };
        if state.file_stamp == Some(stamp) {
            return keep(state.last_error.clone());
        }
        // Recorded before reading, so a broken file is read once, not on every token,
        // until it changes again.
        state.file_stamp = Some(stamp);
        match read_jwks_file(path).await {
            Ok(keys) => {
                tracing::info!(issuer = %self.name, kids = ?keys.kids(), "JWKS file reloaded");
                state.last_error = None;
                let snapshot = Snapshot {
                    keys: Arc::new(keys),
                    checked_at: Instant::now(),
                };
                self.store(snapshot.clone());
                Reloaded {
                    snapshot: Some(snapshot),
                    failure: None,
                }
            }
            Err(why) => {
                tracing::warn!(issuer = %self.name, error = %why, "JWKS file refused; keeping the keys loaded before");
                state.last_error = Some(why.clone());
                keep(Some(why))
            }
        }
    }

    async fn reload_url(
        &self,
        uri: &Uri,
        client: &JwksClient,
        state: &mut ReloadState,
    ) -> Reloaded {
        let current = self.snapshot();
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < self.refetch_interval);
        // A first load or an expired cache fetches at once; a fresh cache that lacks
        // the token's kid fetches only if no such refetch happened recently. Either way,
        // a recent failure is not retried yet.
        let kid_driven = current.as_ref().is_some_and(|s| self.is_fresh(s));
        if (state.last_error.is_some() && recent(state.last_attempt))
            || (kid_driven && recent(state.last_refetch))
        {
            return Reloaded {
                snapshot: current,
                failure: state.last_error.clone(),
            };
        }
        state.last_attempt = Some(Instant::now());
        if kid_driven {
            state.last_refetch = state.last_attempt;
        }
        let fetched = fetch_jwks(client, uri)
            .await
            .and_then(|bytes| parse_jwks(&bytes));
        match fetched {
            Ok(keys) => {
                tracing::info!(issuer = %self.name, kids = ?keys.kids(), "JWKS fetched");
                state.last_error = None;
                let snapshot = Snapshot {
                    keys: Arc::new(keys),
                    checked_at: Instant::now(),
                };
                self.store(snapshot.clone());
                Reloaded {
                    snapshot: Some(snapshot),
                    failure: None,
                }
            }
            Err(e) => {
                let why = format!("jwks_url {uri}: {e}");
                tracing::warn!(issuer = %self.name, error = %why, "JWKS fetch failed; keeping the keys loaded before, if any");
                state.last_error = Some(why.clone());
                Reloaded {
                    snapshot: current,
                    failure: Some(why),
                }
            }
        }
    }
}

/// Reads a JWKS file at configuration time.
fn read_jwks_file_sync(path: &Path) -> Result<(KeySet, FileStamp), String> {
    let file = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("jwks_file `{file}`: cannot read it: {e}"))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "jwks_file `{file}` is larger than {MAX_JWKS_BYTES} bytes"
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("jwks_file `{file}`: cannot read it: {e}"))?;
    let keys = parse_jwks(&bytes).map_err(|e| format!("jwks_file `{file}`: {e}"))?;
    Ok((keys, FileStamp::of(&meta)))
}

/// Reads a JWKS file while serving.
async fn read_jwks_file(path: &Path) -> Result<KeySet, String> {
    let file = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("jwks_file `{file}`: cannot read it: {e}"))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "jwks_file `{file}` is larger than {MAX_JWKS_BYTES} bytes"
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("jwks_file `{file}`: cannot read it: {e}"))?;
    parse_jwks(&bytes).map_err(|e| format!("jwks_file `{file}`: {e}"))
}

fn parse_https_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("jwks_url `{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("jwks_url `{url}` must start with https://"));
    }
    match uri.authority() {
        None => Err(format!("jwks_url `{url}` has no host")),
        // Credentials in the URL would end up in logs and error messages.
        Some(a) if a.as_str().contains('@') => {
            Err(format!("jwks_url `{url}` must not carry credentials"))
        }
        Some(_) => Ok(uri),
    }
}

/// An HTTPS-only client trusting only `ca_bundle`, keeping no idle connections (a
/// fetch is rare).
pub(crate) fn jwks_client(ca_bundle: &Path) -> Result<JwksClient, String> {
    let tls = crate::pki::client_config(crate::pki::load_roots(ca_bundle, "ca_bundle")?)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(0)
        .build(connector))
}

/// GETs the JWKS: status 200, at most [`MAX_JWKS_BYTES`], all within
/// [`FETCH_TIMEOUT`]. Redirects are not followed: the configured URL is the one trusted.
pub(crate) async fn fetch_jwks(client: &JwksClient, uri: &Uri) -> Result<Vec<u8>, String> {
    let req = Request::get(uri.clone())
        .header(
            http::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| crate::pki::error_text(&e))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes")
                } else {
                    format!(
                        "reading the response failed: {}",
                        crate::pki::error_text(e.as_ref())
                    )
                }
            })?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs()))?
}

/// The claims' accepted audience: the first configured one the token's `aud` (a string
/// or an array of strings) holds.
fn accepted_audience(aud: Option<&Value>, configured: &[String]) -> Option<String> {
    let holds = |want: &str| match aud {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(want)),
        _ => false,
    };
    configured.iter().find(|a| holds(a)).cloned()
}

/// A NumericDate claim (RFC 7519 allows fractions; they are truncated), or `None` when
/// absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, WebIdentityError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            // In range by the filter above, so the cast cannot saturate.
            .map(|f| f.trunc() as i64)
    });
    n.map(Some).ok_or_else(|| {
        invalid(format!(
            "the web identity token's `{name}` is not a valid NumericDate"
        ))
    })
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
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const K8S: &str = "https://kubernetes.default.svc";
    const SPIFFE: &str = "https://oidc.mesh.local";
    const AUD: &str = "sts.gateway";

    /// A test-only RSA-2048 key (PKCS#1 DER), made once with `openssl genrsa`: ring,
    /// which rcgen uses, cannot generate RSA keys. It signs nothing outside these tests.
    const RSA_TEST_KEY_PKCS1_B64: &str = concat!(
        "MIIEpQIBAAKCAQEA6ORs2V9lb7xo0/z7Kc5mwW7G4i70H+nozV4Lo/GPmnz31/XkjlMG/vxavXk48sBZlbxWOAuVdeJ4SO2Q",
        "EIDhRgjCNWxuTMbo3AA/ss6YuiAwPKII6xPe5L2AKTugeYHNyEHSkXnLIeuBu9kcBHWCDsJSt5a88dD/hSFaXjKY9zN/Id0X",
        "jwiSzo671aaoH9kI0Iud0JSox75Y75xaSoQInGNZQPuCXQZueUU7+h2VIDyp3LGM2BY7UR4h2Hz6xLwszh3rng904e0Bp8Tt",
        "8nRlezX2+8DYbVXdAQv4qcfxZJ8yzUzt7DrN0EGQv2xKBTtgQF2VpUmIBp0exxaGxf5PvQIDAQABAoIBABAEuMaRZ4Jc8io1",
        "NKKhKLOAnBCt7BVPMGJXvUiPHTJ3X/tXAAZuCDAnnqd48VrOXMW4yNwH/UVjc08zenzixcaHDwc/qFfYN+dR47piYreCmUQX",
        "slyrkYwoIJWKyAneIg+hFLZJgJhFAOJbwi/oU9lnXOsgZL85LH9gAOgzu2OyjHIB5ekJazcjjyCml8W0KRkfAuav0cm4iP/S",
        "OkTRoCMHp1CT1VcDCnuIsnJFTlY6X31kUZBy6W1XOr0LBSce2Dp7nvTwyUOd/6AWLz7cJtN+3Q8EMGgLT0l/gd8RVkvkY/un",
        "sPmm4NP2AC022AdINrOJD9eXpnYuz5SxScfF0gECgYEA/Zk4ezK/oSApoJ/k6dKk3zjPfyUhtJDSGVgQQXMZ8etWekssPQm5",
        "HYPJajE2N4evvTFQ4awibE30raBS1F0/oEIRjAQ1doU7VbDyXyKjtyeHuLk8a5a49s3YZFIBOKk1yxHTERaYumAN/PERzqbb",
        "6JNFrPqhkgT8QFnytm7/e4ECgYEA6xkCDrSnWytZtruYCK6zY1puVQ5NWXtqLCYZ/xyrQCtfnc52lcoqTeDgeaUtOSlsvUfB",
        "k9MLr/Oe0eRaaYZJdEJg6XXcI9we416XrvQe4fO4NQdJt0eR0yqoDt4dnKA54JVZYS21BGqbkytNVIjbzip3TFZnyGSQUWIE",
        "HasW4j0CgYEAhuJ6Qjzp5B+hRIgHT770Zq5m3y+2z72/oi9O5iD8icoswvs82nJTfblc5hiqx7pp5O1YIdBWtth37em6ZK38",
        "a5b4kkqizRlsR9XH9IYOIhrqe3w7ANa4Jr2x/RoJAEQwEoS2iP5F2cvBZOosGIhzqy65/pmIWoxAR1IQYKyFQwECgYEApTM5",
        "guPnBeV8cS95MgCxBYuyJAqcx9g1Tzim4+FdZQYVdmpyYedhur/efRxYnuZBBvC5UgrnF4j1fUAdWDGIxC0wtFyhiIFRIyyB",
        "IethGB2Ov5STdDrSebRry6bA4CKnCO1plSPtI2FWWSAAgvp4mnK0yeudme8wij957O8gcXECgYEAlge7r0xAG3sfxv5Dtz+T",
        "shUEcOudeIifkWJGUrSrIHRt31pk2k23En6erH1uJ9LW7WUxljSbbcW7vp0xEmV0obiRnckRFo8U8f3WxmU63G2qEWAKC1Oo",
        "ahxVb0vRiDfOd3cLIP4rK/3+Kgw1S818lJcHBEoXb5Ts6NWYg1+S+0s=",
    );

    /// A private key and its public JWK.
    struct Signer {
        key: EncodingKey,
        jwk: Value,
        alg: Algorithm,
    }

    impl Signer {
        fn kid(&self) -> &str {
            self.jwk["kid"].as_str().unwrap()
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_as(self.alg, Some(self.kid()), claims)
        }

        fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
            let mut header = Header::new(alg);
            header.kid = kid.map(str::to_string);
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }
    }

    fn ec(kid: &str, p384: bool) -> Signer {
        let (alg, crv, size) = if p384 {
            (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48)
        } else {
            (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32)
        };
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 1 + 2 * size);
        Signer {
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": crv, "kid": kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&point[1..=size]),
                "y": URL_SAFE_NO_PAD.encode(&point[1 + size..]),
            }),
            alg: if p384 {
                Algorithm::ES384
            } else {
                Algorithm::ES256
            },
        }
    }

    fn ed25519(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Signer {
            key: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
            }),
            alg: Algorithm::EdDSA,
        }
    }

    /// The RSA test key; `jwk_alg` goes into the JWK's `alg` when given.
    fn rsa(kid: &str, jwk_alg: Option<&str>) -> Signer {
        let der = base64::engine::general_purpose::STANDARD
            .decode(RSA_TEST_KEY_PKCS1_B64)
            .unwrap();
        let key = EncodingKey::from_rsa_der(&der);
        let public =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
        let mut jwk =
            json!({"kty": "RSA", "kid": kid, "use": "sig", "n": public["n"], "e": public["e"]});
        if let Some(a) = jwk_alg {
            jwk["alg"] = a.into();
        }
        Signer {
            key,
            jwk,
            alg: Algorithm::RS256,
        }
    }

    fn jwks(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
    }

    /// A scratch directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!("gw-web-identity-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, content).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    fn config(issuer: &str, jwks_file: &Path) -> OidcIssuerConfig {
        OidcIssuerConfig {
            issuer: issuer.into(),
            audiences: vec![AUD.into()],
            jwks_file: Some(jwks_file.to_path_buf()),
            jwks_url: None,
            ca_bundle: None,
            jwks_cache_secs: 300,
            leeway_secs: 60,
        }
    }

    fn claims(iss: &str, sub: &str) -> Value {
        json!({"iss": iss, "sub": sub, "aud": AUD, "exp": NOW + 600, "iat": NOW, "nbf": NOW})
    }

    /// Two issuers: "Kubernetes" with the RSA and an EC key, "SPIFFE" with P-256, P-384
    /// and Ed25519 keys.
    struct Fixture {
        dir: TempDir,
        k8s_rsa: Signer,
        k8s_ec: Signer,
        spiffe_ec: Signer,
        spiffe_p384: Signer,
        spiffe_ed: Signer,
        verifier: WebIdentityVerifier,
    }

    fn fixture() -> Fixture {
        let dir = TempDir::new();
        let k8s_rsa = rsa("k8s-rsa", Some("RS256"));
        let k8s_ec = ec("k8s-ec", false);
        let spiffe_ec = ec("spiffe-ec", false);
        let spiffe_p384 = ec("spiffe-p384", true);
        let spiffe_ed = ed25519("spiffe-ed");
        let k8s = dir.write("k8s.json", &jwks(&[&k8s_rsa, &k8s_ec]));
        let spiffe = dir.write(
            "spiffe.json",
            &jwks(&[&spiffe_ec, &spiffe_p384, &spiffe_ed]),
        );
        let verifier =
            WebIdentityVerifier::new(&[config(K8S, &k8s), config(SPIFFE, &spiffe)]).unwrap();
        Fixture {
            dir,
            k8s_rsa,
            k8s_ec,
            spiffe_ec,
            spiffe_p384,
            spiffe_ed,
            verifier,
        }
    }

    fn invalid_msg(r: Result<WebIdentity, WebIdentityError>) -> String {
        match r {
            Err(WebIdentityError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_string).collect()
    }

    fn b64json(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[tokio::test]
    async fn kubernetes_service_account_token_verifies() {
        let f = fixture();
        let mut c = claims(K8S, "system:serviceaccount:checkout:checkout-sa");
        c["aud"] = json!([AUD]);
        c["kubernetes.io"] = json!({
            "namespace": "checkout",
            "serviceaccount": {"name": "checkout-sa", "uid": "0a1b"},
            "pod": {"name": "checkout-7f9c", "uid": "2c3d"},
        });
        let token = f.k8s_rsa.sign(&c);
        let id = f.verifier.verify(&token, NOW).await.unwrap();
        assert_eq!(
            id,
            WebIdentity {
                issuer: K8S.into(),
                subject: "system:serviceaccount:checkout:checkout-sa".into(),
                audience: AUD.into(),
                expires_at: NOW + 600,
                issued_at: Some(NOW),
            }
        );
        assert!(sub_matches("system:serviceaccount:checkout:*", &id.subject));
        // The same issuer's EC key works too.
        let token = f.k8s_ec.sign(&c);
        assert_eq!(
            f.verifier.verify(&token, NOW).await.unwrap().subject,
            id.subject
        );
    }

    #[tokio::test]
    async fn spiffe_jwt_svid_verifies_with_every_key_type() {
        let f = fixture();
        let sub = "spiffe://mesh.local/ns/checkout/sa/checkout";
        for signer in [&f.spiffe_ec, &f.spiffe_p384, &f.spiffe_ed] {
            let mut c = claims(SPIFFE, sub);
            c.as_object_mut().unwrap().remove("nbf");
            c.as_object_mut().unwrap().remove("iat");
            let mut header = Header::new(signer.alg);
            header.kid = Some(signer.kid().into());
            header.typ = Some("JWT".into());
            let token = jsonwebtoken::encode(&header, &c, &signer.key).unwrap();
            let id = f.verifier.verify(&token, NOW).await.unwrap();
            assert_eq!(id.subject, sub, "{:?}", signer.alg);
            assert_eq!(id.issuer, SPIFFE);
            assert_eq!(id.issued_at, None);
        }
    }

    #[tokio::test]
    async fn rsa_key_without_alg_accepts_every_rsa_algorithm() {
        let dir = TempDir::new();
        let key = rsa("r", None);
        let path = dir.write("jwks.json", &jwks(&[&key]));
        let v = WebIdentityVerifier::new(&[config(K8S, &path)]).unwrap();
        for alg in RSA_ALGORITHMS {
            let token = key.sign_as(*alg, Some("r"), &claims(K8S, "s"));
            assert!(v.verify(&token, NOW).await.is_ok(), "{alg:?}");
        }
        // With `alg` in the JWK, only that one: a PS256 token under an RS256 key fails.
        let f = fixture();
        let token = f
            .k8s_rsa
            .sign_as(Algorithm::PS256, Some("k8s-rsa"), &claims(K8S, "s"));
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(m.contains("does not match the issuer's key"), "{m}");
    }

    #[tokio::test]
    async fn algorithm_must_fit_the_key() {
        let f = fixture();
        // An ES384 header on a P-256 key id.
        let token =
            f.spiffe_p384
                .sign_as(Algorithm::ES384, Some("spiffe-ec"), &claims(SPIFFE, "s"));
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(m.contains("does not match"), "{m}");
    }

    #[tokio::test]
    async fn audience_must_be_configured_and_the_accepted_one_is_reported() {
        let f = fixture();
        let mut c = claims(K8S, "s");
        c["aud"] = json!("https://kubernetes.default.svc");
        let m = invalid_msg(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await);
        assert!(m.contains("audience"), "{m}");

        c["aud"] = json!(["vault", "other"]);
        assert!(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await.is_err());

        c.as_object_mut().unwrap().remove("aud");
        let m = invalid_msg(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await);
        assert!(m.contains("`aud`"), "{m}");

        // Several configured audiences: any match is enough; the first configured one
        // the token holds is reported.
        let path = f.dir.write("k8s2.json", &jwks(&[&f.k8s_ec]));
        let mut cfg = config(K8S, &path);
        cfg.audiences = vec!["first".into(), "second".into()];
        let v = WebIdentityVerifier::new(&[cfg]).unwrap();
        c["aud"] = json!(["vault", "second"]);
        assert_eq!(
            v.verify(&f.k8s_ec.sign(&c), NOW).await.unwrap().audience,
            "second"
        );
        c["aud"] = json!(["second", "first"]);
        assert_eq!(
            v.verify(&f.k8s_ec.sign(&c), NOW).await.unwrap().audience,
            "first"
        );
    }

    #[tokio::test]
    async fn wrong_issuer_is_refused() {
        let f = fixture();
        // An issuer nobody configured.
        let token = f.k8s_ec.sign(&claims("https://evil.example", "s"));
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(
            m.contains("no OpenID Connect provider") && m.contains("evil.example"),
            "{m}"
        );
        // A trusted issuer's name on a token signed by another trusted issuer's key:
        // the key is looked up among the named issuer's keys only.
        let token = f.spiffe_ec.sign(&claims(K8S, "s"));
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(m.contains("does not publish"), "{m}");
        // ... and under a kid the named issuer does have, the signature fails.
        let token = f
            .spiffe_ec
            .sign_as(Algorithm::ES256, Some("k8s-ec"), &claims(K8S, "s"));
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(m.contains("signature"), "{m}");
        // No `iss`, or not a string.
        let mut c = claims(K8S, "s");
        c["iss"] = json!([K8S]);
        assert!(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await.is_err());
        c.as_object_mut().unwrap().remove("iss");
        let m = invalid_msg(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await);
        assert!(m.contains("no `iss`"), "{m}");
    }

    #[tokio::test]
    async fn bad_signature_is_refused() {
        let f = fixture();
        let other = ec("k8s-ec", false);
        let token = other.sign(&claims(K8S, "s"));
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(m.contains("signature does not verify"), "{m}");

        // A changed payload under a genuine signature.
        let good = f
            .k8s_rsa
            .sign(&claims(K8S, "system:serviceaccount:checkout:checkout-sa"));
        let s = segments(&good);
        let forged = format!(
            "{}.{}.{}",
            s[0],
            b64json(&claims(K8S, "system:serviceaccount:kube-system:admin")),
            s[2]
        );
        let m = invalid_msg(f.verifier.verify(&forged, NOW).await);
        assert!(m.contains("signature"), "{m}");
        // No signature at all.
        let m = invalid_msg(f.verifier.verify(&format!("{}.{}.", s[0], s[1]), NOW).await);
        assert!(m.contains("signature") || m.contains("malformed"), "{m}");
    }

    #[tokio::test]
    async fn expiry_and_not_before_use_now_and_the_leeway() {
        let f = fixture();
        let token = f.k8s_ec.sign(&claims(K8S, "s"));
        let v = &f.verifier;
        let exp = NOW + 600;
        assert!(v.verify(&token, exp + 59).await.is_ok());
        match v.verify(&token, exp + 60).await {
            Err(WebIdentityError::Expired(m)) => assert!(m.contains("expired"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            v.verify(&token, exp + 100_000).await,
            Err(WebIdentityError::Expired(_))
        ));
        // Far from the system clock, still judged at its own `now`.
        let mut c = claims(K8S, "s");
        c["exp"] = json!(1000);
        c["iat"] = json!(900);
        c["nbf"] = json!(900);
        assert!(v.verify(&f.k8s_ec.sign(&c), 950).await.is_ok());

        // nbf (and iat) in the future beyond the leeway.
        assert!(v.verify(&token, NOW - 60).await.is_ok());
        let m = invalid_msg(v.verify(&token, NOW - 61).await);
        assert!(m.contains("not valid before"), "{m}");
        let mut c = claims(K8S, "s");
        c.as_object_mut().unwrap().remove("nbf");
        c["iat"] = json!(NOW + 61);
        let m = invalid_msg(v.verify(&f.k8s_ec.sign(&c), NOW).await);
        assert!(m.contains("issued in the future"), "{m}");

        // Fractional NumericDates are allowed.
        let mut c = claims(K8S, "s");
        c["exp"] = json!(NOW as f64 + 10.5);
        assert_eq!(
            v.verify(&f.k8s_ec.sign(&c), NOW).await.unwrap().expires_at,
            NOW + 10
        );
        // A custom leeway.
        let path = f.dir.write("k.json", &jwks(&[&f.k8s_ec]));
        let mut cfg = config(K8S, &path);
        cfg.leeway_secs = 0;
        let strict = WebIdentityVerifier::new(&[cfg]).unwrap();
        assert!(strict.verify(&token, exp - 1).await.is_ok());
        assert!(matches!(
            strict.verify(&token, exp).await,
            Err(WebIdentityError::Expired(_))
        ));
    }

    #[tokio::test]
    async fn missing_or_malformed_claims_are_refused() {
        let f = fixture();
        for (name, value) in [
            ("exp", None),
            ("exp", Some(json!("tomorrow"))),
            ("sub", None),
            ("sub", Some(json!(""))),
            ("sub", Some(json!(7))),
            ("nbf", Some(json!("soon"))),
        ] {
            let mut c = claims(K8S, "s");
            match value {
                None => {
                    c.as_object_mut().unwrap().remove(name);
                }
                Some(v) => c[name] = v,
            }
            let m = invalid_msg(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await);
            assert!(m.contains(name) || m.contains("malformed"), "{name}: {m}");
        }
        let mut c = claims(K8S, "s");
        c.as_object_mut().unwrap().remove("exp");
        let m = invalid_msg(f.verifier.verify(&f.k8s_ec.sign(&c), NOW).await);
        assert!(m.contains("lacks the `exp` claim"), "{m}");
    }

    #[tokio::test]
    async fn alg_none_and_hmac_confusion_are_refused() {
        let f = fixture();
        let c = claims(K8S, "s");
        let payload = b64json(&c);
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "kid": "k8s-rsa", "typ": "JWT"});
            for sig in ["", "AAAA"] {
                let token = format!("{}.{payload}.{sig}", b64json(&header));
                let m = invalid_msg(f.verifier.verify(&token, NOW).await);
                assert!(m.contains("none") || m.contains("not supported"), "{m}");
            }
        }
        // HMAC keyed with public key material under the RSA and EC key ids: the classic
        // algorithm-confusion forgery.
        let rsa_n = f.k8s_rsa.jwk["n"].as_str().unwrap().to_string();
        let ec_x = f.k8s_ec.jwk["x"].as_str().unwrap().to_string();
        let secrets = [
            rsa_n.clone().into_bytes(),
            URL_SAFE_NO_PAD.decode(&rsa_n).unwrap(),
            f.k8s_rsa.jwk.to_string().into_bytes(),
            ec_x.into_bytes(),
            f.k8s_ec.jwk.to_string().into_bytes(),
        ];
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for (kid, secret) in [
                ("k8s-rsa", &secrets[0]),
                ("k8s-rsa", &secrets[1]),
                ("k8s-rsa", &secrets[2]),
                ("k8s-ec", &secrets[3]),
                ("k8s-ec", &secrets[4]),
            ] {
                let mut header = Header::new(alg);
                header.kid = Some(kid.into());
                let token =
                    jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
                let m = invalid_msg(f.verifier.verify(&token, NOW).await);
                assert!(m.contains("refused") && m.contains("asymmetric"), "{m}");
            }
        }
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_without_panicking() {
        let f = fixture();
        let good = f.k8s_ec.sign(&claims(K8S, "s"));
        let s = segments(&good);
        let too_big = format!("{}.{}.{}", s[0], "A".repeat(MAX_TOKEN_BYTES), s[2]);
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "a.b".into(),
            "a.b.c".into(),
            format!("{good}.x.y"),
            format!("{}..{}", s[0], s[2]),
            format!("{}.{}.{}", s[0], "!!!", s[2]),
            format!("{}.{}.{}", b64json(&json!([1, 2])), s[1], s[2]),
            format!("{}.{}.{}", s[0], b64json(&json!("str")), s[2]),
            format!("{}.{}.{}", b64json(&json!({"kid": "k8s-ec"})), s[1], s[2]),
            format!(
                "{}.{}.{}",
                b64json(&json!({"alg": "ES256", "kid": 5})),
                s[1],
                s[2]
            ),
            format!("{}.{}.{}", b64json(&json!({"alg": "ES512"})), s[1], s[2]),
            format!("{}.{}.{}", s[0], s[1], "%%%"),
            too_big,
            "\u{0}\u{1}.\u{2}.\u{3}".into(),
        ];
        for token in &cases {
            assert!(
                matches!(
                    f.verifier.verify(token, NOW).await,
                    Err(WebIdentityError::Invalid(_))
                ),
                "{token:?}"
            );
        }
        let m = invalid_msg(f.verifier.verify(&cases[14], NOW).await);
        assert!(m.contains("larger than"), "{m}");

        // `crit` extensions are not understood, so refused.
        let header = json!({"alg": "ES256", "kid": "k8s-ec", "crit": ["exp"], "exp": 1});
        let m = invalid_msg(
            f.verifier
                .verify(&format!("{}.{}.{}", b64json(&header), s[1], s[2]), NOW)
                .await,
        );
        assert!(m.contains("crit"), "{m}");
    }

    #[tokio::test]
    async fn token_without_kid_needs_a_single_key_issuer() {
        let f = fixture();
        let c = claims(K8S, "s");
        let m = invalid_msg(
            f.verifier
                .verify(&f.k8s_ec.sign_as(Algorithm::ES256, None, &c), NOW)
                .await,
        );
        assert!(m.contains("no `kid`") && m.contains("2 keys"), "{m}");
        let path = f.dir.write("single.json", &jwks(&[&f.k8s_ec]));
        let v = WebIdentityVerifier::new(&[config(K8S, &path)]).unwrap();
        assert!(
            v.verify(&f.k8s_ec.sign_as(Algorithm::ES256, None, &c), NOW)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn jwks_file_is_reread_when_it_changes() {
        let f = fixture();
        let path = f.dir.0.join("k8s.json");
        let c = claims(K8S, "s");
        let old = f.k8s_ec.sign(&c);
        assert!(f.verifier.verify(&old, NOW).await.is_ok());

        // Rotation: a new key replaces the old one (a different length, so the change
        // is seen even where modification times are coarse).
        let new = ec("k8s-ec-2", false);
        std::fs::write(&path, jwks(&[&new])).unwrap();
        assert!(f.verifier.verify(&new.sign(&c), NOW).await.is_ok());
        // The file changed, so the removed key is gone at once.
        let m = invalid_msg(f.verifier.verify(&old, NOW).await);
        assert!(m.contains("does not publish"), "{m}");

        // A broken file never replaces working keys; a token with an unknown kid then
        // says the keys cannot be loaded.
        std::fs::write(&path, "{ not json").unwrap();
        let newer = ec("k8s-ec-3", false);
        match f.verifier.verify(&newer.sign(&c), NOW).await {
            Err(WebIdentityError::IdpUnreachable(m)) => {
                assert!(m.contains("k8s.json") && m.contains("not JSON"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(f.verifier.verify(&new.sign(&c), NOW).await.is_ok());
        // ... and a deleted one neither.
        std::fs::remove_file(&path).unwrap();
        assert!(f.verifier.verify(&new.sign(&c), NOW).await.is_ok());
        assert!(matches!(
            f.verifier.verify(&newer.sign(&c), NOW).await,
            Err(WebIdentityError::IdpUnreachable(_))
        ));
        // Fixed: picked up.
        std::fs::write(&path, jwks(&[&new, &newer])).unwrap();
        assert!(f.verifier.verify(&newer.sign(&c), NOW).await.is_ok());
    }

    #[tokio::test]
    async fn removed_key_stops_working_when_the_cache_period_ends() {
        let mut f = fixture();
        let path = f.dir.0.join("k8s.json");
        let c = claims(K8S, "s");
        let token = f.k8s_ec.sign(&c);
        // The file loses the key, but the kid is known, so the cached keys are used
        // until the cache period ends.
        std::fs::write(&path, jwks(&[&f.k8s_rsa])).unwrap();
        assert!(f.verifier.verify(&token, NOW).await.is_ok());
        f.verifier.issuers.get_mut(K8S).unwrap().cache_for = Duration::ZERO;
        let m = invalid_msg(f.verifier.verify(&token, NOW).await);
        assert!(m.contains("does not publish"), "{m}");
        assert!(f.verifier.verify(&f.k8s_rsa.sign(&c), NOW).await.is_ok());
    }

    #[test]
    fn config_errors_name_the_issuer() {
        let dir = TempDir::new();
        let key = ec("k", false);
        let good = dir.write("jwks.json", &jwks(&[&key]));
        let ca = dir.write("ca.pem", "");
        let err = |cfg: OidcIssuerConfig| WebIdentityVerifier::new(&[cfg]).unwrap_err();

        let mut both = config(K8S, &good);
        both.jwks_url = Some("https://example.com/jwks".into());
        let e = err(both);
        assert!(e.contains(K8S) && e.contains("exactly one"), "{e}");

        let mut neither = config(K8S, &good);
        neither.jwks_file = None;
        assert!(err(neither).contains("exactly one"));

        for url in [
            "http://example.com/jwks",
            "ftp://x/y",
            "not a url",
            "https:///x",
        ] {
            let mut c = config(K8S, &good);
            c.jwks_file = None;
            c.jwks_url = Some(url.into());
            c.ca_bundle = Some(ca.clone());
            let e = err(c);
            assert!(e.contains(K8S) && e.contains("jwks_url"), "{url}: {e}");
        }
        let mut creds = config(K8S, &good);
        creds.jwks_file = None;
        creds.jwks_url = Some("https://user:pw@example.com/jwks".into());
        creds.ca_bundle = Some(ca.clone());
        assert!(err(creds).contains("credentials"));

        let mut no_ca = config(K8S, &good);
        no_ca.jwks_file = None;
        no_ca.jwks_url = Some("https://example.com/jwks".into());
        assert!(err(no_ca).contains("needs ca_bundle"));

        let mut empty_ca = config(K8S, &good);
        empty_ca.jwks_file = None;
        empty_ca.jwks_url = Some("https://example.com/jwks".into());
        empty_ca.ca_bundle = Some(ca.clone());
        assert!(err(empty_ca).contains("ca.pem"));

        let mut file_with_ca = config(K8S, &good);
        file_with_ca.ca_bundle = Some(ca.clone());
        assert!(err(file_with_ca).contains("only for jwks_url"));

        let e = err(config(K8S, &dir.0.join("missing.json")));
        assert!(e.contains(K8S) && e.contains("missing.json"), "{e}");
        let e = err(config(K8S, &dir.write("bad.json", "[]")));
        assert!(e.contains("bad.json") && e.contains("keys"), "{e}");
        let big = dir.write("big.json", &" ".repeat(MAX_JWKS_BYTES + 1));
        assert!(err(config(K8S, &big)).contains("larger than"));

        let mut no_aud = config(K8S, &good);
        no_aud.audiences = vec![];
        assert!(err(no_aud).contains("audiences"));
        let mut blank_aud = config(K8S, &good);
        blank_aud.audiences = vec![String::new()];
        assert!(err(blank_aud).contains("audiences"));
        assert!(err(config("", &good)).contains("issuer"));
        let mut fast = config(K8S, &good);
        fast.jwks_cache_secs = 5;
        assert!(err(fast).contains("jwks_cache_secs"));
        let mut loose = config(K8S, &good);
        loose.leeway_secs = 3600;
        assert!(err(loose).contains("leeway_secs"));

        let e = WebIdentityVerifier::new(&[config(K8S, &good), config(K8S, &good)]).unwrap_err();
        assert!(e.contains("twice"), "{e}");

        // A URL issuer builds without network access: it is fetched at first use.
        let pem = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .unwrap()
            .cert
            .pem();
        let ca = dir.write("real-ca.pem", &pem);
        let mut url = config(SPIFFE, &good);
        url.jwks_file = None;
        url.jwks_url = Some("https://127.0.0.1:1/jwks".into());
        url.ca_bundle = Some(ca);
        let v = WebIdentityVerifier::new(&[url, config(K8S, &good)]).unwrap();
        assert_eq!(
            format!("{v:?}"),
            format!("WebIdentityVerifier {{ issuers: [\"{K8S}\", \"{SPIFFE}\"] }}")
        );
    }

    #[test]
    fn config_from_toml_with_defaults_and_unknown_keys_refused() {
        let cfg: OidcIssuerConfig = toml::from_str(
            r#"
            issuer = "https://kubernetes.default.svc"
            audiences = ["sts.gateway"]
            jwks_file = "k8s-jwks.json"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.jwks_cache_secs, 300);
        assert_eq!(cfg.leeway_secs, 60);
        assert_eq!(cfg.jwks_file, Some(PathBuf::from("k8s-jwks.json")));
        assert!(
            toml::from_str::<OidcIssuerConfig>(
                "issuer = \"x\"\naudiences = [\"a\"]\njwks_file = \"f\"\nalgorithms = [\"HS256\"]\n"
            )
            .is_err()
        );
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys_and_says_why() {
        let good = ec("good", false);
        let mut short_rsa = rsa("short", None).jwk;
        short_rsa["n"] = URL_SAFE_NO_PAD.encode([0xc5u8; 128]).into();
        let mut off_curve = ec("off", false).jwk;
        off_curve["y"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
        let mut short_ed = ed25519("short-ed").jwk;
        short_ed["x"] = URL_SAFE_NO_PAD.encode([1u8; 16]).into();
        let mut wrong_alg = ec("wrong-alg", false).jwk;
        wrong_alg["alg"] = "ES384".into();
        let mut hs_alg = rsa("hs", None).jwk;
        hs_alg["alg"] = "HS256".into();
        let mut enc = ec("enc", false).jwk;
        enc["use"] = "enc".into();
        let mut sign_only = ec("sign-only", false).jwk;
        sign_only["key_ops"] = json!(["sign"]);
        let mut even_e = rsa("even-e", None).jwk;
        even_e["e"] = URL_SAFE_NO_PAD.encode([1u8, 0, 0]).into();
        let doc = json!({"keys": [
            good.jwk,
            short_rsa,
            off_curve,
            short_ed,
            wrong_alg,
            hs_alg,
            enc,
            sign_only,
            even_e,
            {"kty": "oct", "kid": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AA"},
            {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
            "not an object",
        ]});
        let set = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.kids(), ["good"]);
        let why = |kid: &str| set.skipped.get(kid).cloned().unwrap_or_default();
        assert!(why("short").contains("1024 bits"), "{}", why("short"));
        assert!(why("off").contains("not a point"));
        assert!(why("short-ed").contains("32 bytes"));
        assert!(why("wrong-alg").contains("does not fit"));
        assert!(why("hs").contains("does not fit"));
        assert!(why("enc").contains("not a signing key"));
        assert!(why("sign-only").contains("key_ops"));
        assert!(why("even-e").contains("exponent"));
        assert!(why("oct").contains("symmetric"));
        assert!(why("p521").contains("curve"));
        assert!(why("x25519").contains("curve"));
        assert!(why("no-n").contains("`n`"));

        for bad in [
            "",
            "null",
            "{}",
            r#"{"keys": {}}"#,
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "oct", "kid": "a", "k": "AA"}]}"#,
        ] {
            assert!(parse_jwks(bad.as_bytes()).is_err(), "{bad}");
        }
        let e = parse_jwks(r#"{"keys": [{"kty": "oct", "kid": "a", "k": "AA"}]}"#.as_bytes())
            .err()
            .unwrap();
        assert!(e.contains("no usable") && e.contains("symmetric"), "{e}");
        let dup = jwks(&[&good, &good]);
        assert!(parse_jwks(dup.as_bytes()).err().unwrap().contains("twice"));
        // Padded base64url is tolerated.
        let mut padded = ec("padded", false).jwk;
        padded["x"] = format!("{}=", padded["x"].as_str().unwrap()).into();
        assert!(parse_jwks(json!({"keys": [padded]}).to_string().as_bytes()).is_ok());
    }

    #[tokio::test]
    async fn token_naming_a_skipped_key_gets_the_reason() {
        let dir = TempDir::new();
        let good = ec("good", false);
        let mut weak = rsa("weak", None);
        weak.jwk["n"] = URL_SAFE_NO_PAD.encode([0xc5u8; 128]).into();
        let path = dir.write("jwks.json", &jwks(&[&good, &weak]));
        let v = WebIdentityVerifier::new(&[config(K8S, &path)]).unwrap();
        let m = invalid_msg(v.verify(&weak.sign(&claims(K8S, "s")), NOW).await);
        assert!(
            m.contains("cannot be used") && m.contains("1024 bits"),
            "{m}"
        );
    }

    /// A JWKS over HTTPS on 127.0.0.1 answering with `reply` (`None`: HTTP 503), and
    /// the CA file that trusts it. Returns the URL and a count of TLS connections, which
    /// is the count of fetches: the verifier's client keeps no idle connection.
    async fn https_jwks(
        dir: &TempDir,
        reply: Arc<std::sync::Mutex<Option<String>>>,
    ) -> (String, PathBuf, Arc<std::sync::atomic::AtomicUsize>) {
        use hyper_util::rt::TokioIo;
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    continue;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = reply.lock().unwrap().clone();
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let (status, text) = match body {
                            Some(b) => (200, b),
                            None => (503, String::new()),
                        };
                        http::Response::builder()
                            .status(status)
                            .body(http_body_util::Full::new(Bytes::from(text)))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        let ca_file = dir.write("ca.pem", &ca_cert.pem());
        (format!("https://{addr}/jwks"), ca_file, hits)
    }

    fn url_config(url: &str, ca: &Path) -> OidcIssuerConfig {
        OidcIssuerConfig {
            issuer: K8S.into(),
            audiences: vec![AUD.into()],
            jwks_file: None,
            jwks_url: Some(url.into()),
            ca_bundle: Some(ca.to_path_buf()),
            jwks_cache_secs: 300,
            leeway_secs: 60,
        }
    }

    #[tokio::test]
    async fn cached_keys_outlive_an_outage_and_fetching_resumes_after_the_interval() {
        let dir = TempDir::new();
        let a = ec("a", false);
        let reply = Arc::new(std::sync::Mutex::new(Some(jwks(&[&a]))));
        let (url, ca, hits) = https_jwks(&dir, reply.clone()).await;
        let hits = move || hits.load(std::sync::atomic::Ordering::SeqCst);
        let mut v = WebIdentityVerifier::new(&[url_config(&url, &ca)]).unwrap();
        let c = claims(K8S, "s");
        assert!(v.verify(&a.sign(&c), NOW).await.is_ok());
        assert_eq!(hits(), 1);

        // The identity provider goes down and the cache period ends: the cached key
        // keeps verifying; a token naming an unknown key says the keys cannot be loaded.
        *reply.lock().unwrap() = None;
        v.issuers.get_mut(K8S).unwrap().cache_for = Duration::ZERO;
        assert!(v.verify(&a.sign(&c), NOW).await.is_ok());
        assert_eq!(hits(), 2);
        let b = ec("b", false);
        match v.verify(&b.sign(&c), NOW).await {
            Err(WebIdentityError::IdpUnreachable(m)) => assert!(m.contains("503"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The failure is not retried within the interval.
        assert!(v.verify(&a.sign(&c), NOW).await.is_ok());
        assert_eq!(hits(), 2);

        // Back up, and the interval has passed (shortened here): fetching resumes and
        // the rotated key is picked up.
        *reply.lock().unwrap() = Some(jwks(&[&b]));
        let issuer = v.issuers.get_mut(K8S).unwrap();
        issuer.refetch_interval = Duration::ZERO;
        issuer.cache_for = Duration::from_secs(300);
        assert!(v.verify(&b.sign(&c), NOW).await.is_ok());
        assert_eq!(hits(), 3);
        // The fetch replaced the keys, so A is gone.
        let m = invalid_msg(v.verify(&a.sign(&c), NOW).await);
        assert!(m.contains("does not publish"), "{m}");
        assert_eq!(
            hits(),
            4,
            "an unknown kid refetches once the interval allows"
        );
    }

    #[test]
    fn verify_future_is_send() {
        fn send<T: Send>(_: &T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<WebIdentityVerifier>();
        let v = WebIdentityVerifier::new(&[]).unwrap();
        send(&v.verify("t", NOW));
    }

    #[test]
    fn error_messages_and_kinds() {
        let e = WebIdentityError::Expired("gone".into());
        assert_eq!(e.to_string(), "gone");
        assert_eq!(e.message(), "gone");
        assert_eq!(
            WebIdentityError::IdpUnreachable("down".into()).message(),
            "down"
        );
        assert_eq!(shown("ab"), "\"ab\"");
        assert!(shown(&"x".repeat(1000)).len() < 140);
    }

    #[test]
    fn sub_matches_string_like() {
        let yes = [
            (
                "system:serviceaccount:checkout:checkout-sa",
                "system:serviceaccount:checkout:checkout-sa",
            ),
            (
                "system:serviceaccount:checkout:*",
                "system:serviceaccount:checkout:checkout-sa",
            ),
            (
                "system:serviceaccount:*:checkout-sa",
                "system:serviceaccount:checkout:checkout-sa",
            ),
            (
                "spiffe://mesh.local/ns/checkout/sa/*",
                "spiffe://mesh.local/ns/checkout/sa/checkout",
            ),
            (
                "spiffe://mesh.local/ns/*/sa/checkout",
                "spiffe://mesh.local/ns/checkout/sa/checkout",
            ),
            (
                "repo:acme/shop:ref:refs/heads/*",
                "repo:acme/shop:ref:refs/heads/main",
            ),
            ("*", ""),
            ("*", "anything at all"),
            ("**", "x"),
            ("a*", "a"),
            ("*a", "a"),
            ("a*b*c", "abc"),
            ("a*b*c", "aXXbYYbZZc"),
            ("a?c", "abc"),
            ("???", "äöü"),
            ("*ab", "aab"),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"),
            ("lit${*}eral", "lit*eral"),
            ("q${?}", "q?"),
            ("cost${$}", "cost$"),
            ("${", "${"),
            ("", ""),
        ];
        for (p, s) in yes {
            assert!(sub_matches(p, s), "{p:?} should match {s:?}");
        }
        let no = [
            (
                "system:serviceaccount:checkout:checkout-sa",
                "system:serviceaccount:checkout:checkout-sa2",
            ),
            (
                "system:serviceaccount:checkout:*",
                "system:serviceaccount:payment:payment-sa",
            ),
            (
                "system:serviceaccount:checkout:*",
                "system:serviceaccount:checkout",
            ),
            (
                "spiffe://mesh.local/ns/checkout/sa/*",
                "spiffe://mesh.local/ns/payment/sa/checkout",
            ),
            ("System:*", "system:x"),
            ("a?c", "ac"),
            ("a?c", "abbc"),
            ("???", "ab"),
            ("a*b", "aXXbc"),
            ("*a*a*a*a*c", "aaaaaaaaaaaaaaaaaaaab"),
            ("lit${*}eral", "litXeral"),
            ("q${?}", "qx"),
            ("", "x"),
            ("x", ""),
        ];
        for (p, s) in no {
            assert!(!sub_matches(p, s), "{p:?} should not match {s:?}");
        }
    }
}
