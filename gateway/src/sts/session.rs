//! Stateless session credentials: what the gateway's STS issues and every replica opens.
//!
//! Credentials look like AWS's: an `ASIA...` access key id, a 40-character secret, a
//! session token and an expiration. Nothing is stored: the claims travel inside the
//! token, sealed with an AEAD key that has a key id, and the secret is recomputed from
//! the access key id, so any replica holding the key set verifies a session, and keys
//! rotate (add the new key first, keep the old one until its sessions have expired)
//! without invalidating live sessions.
//!
//! The session token is standard base64 (like AWS's) of
//!
//! ```text
//! version (1 byte, = 1) | kid length (1 byte, 1..=16) | kid | nonce (12 bytes)
//!   | ChaCha20-Poly1305(claims) (ciphertext || 16-byte tag)
//! ```
//!
//! sealed with the kid's AEAD key, the header bytes (version, kid length, kid) and the
//! access key id as associated data: a token presented with any access key id other
//! than its own fails authentication. The secret access key is the first 30 bytes of
//! HMAC-SHA256(derivation key of the kid, `"secret" || access key id || nonce`) in
//! standard base64 (40 characters, like AWS's).
//!
//! This module is pure: no I/O and no clock (`now` is the caller's); randomness comes
//! in as a [`SecureRandom`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SecureRandom;
use ring::{digest, hkdf, hmac};
use zeroize::Zeroizing;

use crate::sigv4::{Code, Rejection, Secret};

/// What session access key ids start with, as AWS's temporary keys do.
pub const ACCESS_KEY_PREFIX: &str = "ASIA";
/// Length of a session access key id (AWS's are 20 characters too).
pub const ACCESS_KEY_LEN: usize = 20;
/// Longest session token accepted (characters of base64). Longer input is refused
/// before it is decoded, so a caller cannot make the gateway decode megabytes; `issue`
/// refuses claims whose token would not fit.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest session `issue` seals, in seconds (AWS's `AssumeRole` maximum, 12 hours).
pub const MAX_SESSION_SECS: i64 = 43_200;
/// Longest chained session (issued from another session), in seconds: AWS caps role
/// chaining at one hour.
pub const MAX_CHAINED_SESSION_SECS: i64 = 3_600;

const VERSION: u8 = 1;
const NONCE_LEN: usize = aead::NONCE_LEN;
const TAG_LEN: usize = 16;
const MAX_KID_LEN: usize = 16;
const MIN_SECRET_LEN: usize = 32;
/// Bytes of the HMAC kept for the secret: 30 bytes are exactly 40 base64 characters.
const SECRET_BYTES: usize = 30;
const SECRET_LEN: usize = 40;
/// AWS's base32 alphabet for key and role ids.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// HKDF salt: a fixed, public domain separator (the key material is the secret).
const HKDF_SALT: &[u8] = b"sigv4-gateway/sts-session/v1";
const INFO_AEAD: &[u8] = b"session-token-aead";
const INFO_SECRET: &[u8] = b"secret-access-key-derivation";
const SECRET_LABEL: &[u8] = b"secret";
const FLAG_CHAINED: u8 = 1;
const FLAG_SOURCE_IDENTITY: u8 = 2;

/// One sealing key: an id and the keys derived from its secret. The secret itself is
/// not kept (only what HKDF derived from it), and `Debug` shows the id alone.
pub struct SessionKey {
    id: String,
    aead: LessSafeKey,
    derive: hmac::Key,
}

impl SessionKey {
    /// A key from its id (1 to 16 characters of `A-Z a-z 0-9 _ -`, as it appears in
    /// every token it seals) and secret (at least 32 bytes, e.g. 32 random bytes).
    /// The AEAD key and the secret-derivation key are derived with HKDF-SHA256 under
    /// distinct labels, so neither can stand in for the other.
    pub fn new(id: &str, secret: &[u8]) -> Result<Self, String> {
        if !valid_kid(id.as_bytes()) {
            return Err(format!(
                "session key id `{}` must be 1 to {MAX_KID_LEN} characters of A-Z, a-z, 0-9, `_` and `-`",
                id.escape_debug()
            ));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "session key `{id}`: the secret must be at least {MIN_SECRET_LEN} bytes (it is {})",
                secret.len()
            ));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let failed = |_| format!("session key `{id}`: key derivation failed");
        let aead_key = UnboundKey::from(
            prk.expand(&[INFO_AEAD], &CHACHA20_POLY1305)
                .map_err(failed)?,
        );
        let derive = hmac::Key::from(
            prk.expand(&[INFO_SECRET], hmac::HMAC_SHA256)
                .map_err(failed)?,
        );
        Ok(Self {
            id: id.to_owned(),
            aead: LessSafeKey::new(aead_key),
            derive,
        })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret access key of `access_key_id` sealed with `nonce`: derived, never
    /// stored, so every replica with this key recomputes the same one.
    fn derive_secret(&self, access_key_id: &str, nonce: &[u8]) -> Zeroizing<[u8; SECRET_LEN]> {
        let mut ctx = hmac::Context::with_key(&self.derive);
        ctx.update(SECRET_LABEL);
        ctx.update(access_key_id.as_bytes());
        ctx.update(nonce);
        let tag = ctx.sign();
        let mut out = Zeroizing::new([0u8; SECRET_LEN]);
        let kept = tag.as_ref().get(..SECRET_BYTES).unwrap_or_default();
        // 30 bytes always encode to exactly 40 characters: the buffer fits.
        let _ = STANDARD.encode_slice(kept, out.as_mut_slice());
        out
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The key set: the first key seals, every key opens. Removing a key retires every
/// session it sealed; adding one before the old (rotation) keeps old sessions valid
/// while new ones are sealed with the new key.
pub struct SessionKeys {
    /// Seals new sessions (and opens its own).
    active: SessionKey,
    /// Open the sessions they sealed before a rotation.
    older: Vec<SessionKey>,
}

impl SessionKeys {
    /// A key set; the first key seals. Refuses an empty set and repeated ids.
    pub fn new(keys: Vec<SessionKey>) -> Result<Self, String> {
        for (i, k) in keys.iter().enumerate() {
            if keys.iter().skip(i + 1).any(|other| other.id == k.id) {
                return Err(format!("session key id `{}` is listed twice", k.id));
            }
        }
        let mut keys = keys.into_iter();
        let active = keys
            .next()
            .ok_or("the session key set is empty: at least one key is needed to seal sessions")?;
        Ok(Self {
            active,
            older: keys.collect(),
        })
    }

    /// One random key with id `k0` (for the demo and tests: sessions it seals die with
    /// the process).
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, String> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(secret.as_mut_slice()).map_err(|_| rng_failed())?;
        Self::new(vec![SessionKey::new("k0", secret.as_slice())?])
    }

    /// The id of the key that seals new sessions.
    pub fn active_kid(&self) -> &str {
        self.active.id()
    }

    /// The ids of every key that opens sessions, sealing key first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys().map(SessionKey::id)
    }

    fn keys(&self) -> impl Iterator<Item = &SessionKey> {
        std::iter::once(&self.active).chain(&self.older)
    }

    fn find(&self, kid: &[u8]) -> Option<&SessionKey> {
        self.keys().find(|k| k.id.as_bytes() == kid)
    }

    /// Issues credentials for `claims`: a fresh `ASIA` access key id, its derived
    /// secret, and the token sealing the claims with the active key. Refuses claims
    /// that could not be used (a role ARN that is not a role, an invalid session name,
    /// a non-positive or too long duration, a chained session over one hour, a token
    /// over [`MAX_TOKEN_LEN`]).
    pub fn issue(
        &self,
        claims: &SessionClaims,
        rng: &dyn SecureRandom,
    ) -> Result<IssuedCredentials, String> {
        claims.assumed_role_arn()?;
        let duration = claims.expires_at.saturating_sub(claims.issued_at);
        if duration <= 0 {
            return Err("the session must expire after it is issued".into());
        }
        if duration > MAX_SESSION_SECS {
            return Err(format!(
                "a session lasts at most {MAX_SESSION_SECS} seconds (asked: {duration})"
            ));
        }
        if claims.chained && duration > MAX_CHAINED_SESSION_SECS {
            return Err(format!(
                "a chained session (assumed with session credentials) lasts at most \
                 {MAX_CHAINED_SESSION_SECS} seconds (asked: {duration})"
            ));
        }
        let key = &self.active;
        let mut random = [0u8; 10 + NONCE_LEN];
        rng.fill(&mut random).map_err(|_| rng_failed())?;
        let (akid_bytes, nonce) = random.split_at(10);
        let mut access_key_id = String::with_capacity(ACCESS_KEY_LEN);
        access_key_id.push_str(ACCESS_KEY_PREFIX);
        base32_into(akid_bytes, 16, &mut access_key_id);

        let mut sealed = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + 256);
        sealed.push(VERSION);
        sealed.push(u8::try_from(key.id.len()).map_err(|_| "session key id too long")?);
        sealed.extend_from_slice(key.id.as_bytes());
        let header_len = sealed.len();
        sealed.extend_from_slice(nonce);
        let body_start = sealed.len();
        encode_claims(claims, &mut sealed)?;
        // Base64 grows by 4/3: refuse before sealing what open() would refuse.
        let token_len = (sealed.len() + TAG_LEN).div_ceil(3) * 4;
        if token_len > MAX_TOKEN_LEN {
            return Err(format!(
                "the session's claims (tags, names) make a token of {token_len} characters; \
                 at most {MAX_TOKEN_LEN} are allowed"
            ));
        }
        let nonce_arr = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| "nonce length")?;
        let (head, body) = sealed
            .split_at_mut_checked(body_start)
            .ok_or("session token layout")?;
        let header = head.get(..header_len).unwrap_or_default();
        let aad = aad_bytes(header, &access_key_id).ok_or("session token layout")?;
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_arr),
                Aad::from(aad),
                body,
            )
            .map_err(|_| "sealing the session token failed")?;
        sealed.extend_from_slice(tag.as_ref());
        let secret = key.derive_secret(&access_key_id, nonce);
        let secret_access_key = SecretAccessKey(Zeroizing::new(
            std::str::from_utf8(secret.as_slice())
                .map_err(|_| "secret encoding")?
                .to_owned(),
        ));
        Ok(IssuedCredentials {
            access_key_id,
            secret_access_key,
            session_token: STANDARD.encode(&sealed),
            expiration: claims.expires_at,
        })
    }

    /// Opens a session token presented with `access_key_id`: the claims and the secret
    /// to verify the signature with. Every failure (not a session token, an unknown or
    /// retired key id, a tampered token, a token sealed for another access key id,
    /// malformed input) is `InvalidClientTokenId`; messages never echo the token.
    /// Expiry and revocation are the caller's to apply.
    pub fn open(
        &self,
        access_key_id: &str,
        session_token: &str,
    ) -> Result<(SessionClaims, Secret), Rejection> {
        if !valid_session_akid(access_key_id) {
            return Err(invalid(
                "the access key id is not a session key id issued by this gateway's STS (ASIA followed by 16 characters)",
            ));
        }
        if session_token.len() > MAX_TOKEN_LEN {
            return Err(invalid(&format!(
                "the session token is longer than {MAX_TOKEN_LEN} characters, so it was not issued by this gateway; \
                 send the token exactly as the STS response gave it"
            )));
        }
        let not_ours = || {
            invalid(
                "the session token is not one this gateway issues (not base64 of a version 1 token); \
                 send the SessionToken exactly as the STS response gave it",
            )
        };
        let mut bytes = STANDARD.decode(session_token).map_err(|_| not_ours())?;
        let (&version, rest) = bytes.split_first().ok_or_else(not_ours)?;
        let (&kid_len, rest) = rest.split_first().ok_or_else(not_ours)?;
        let kid_len = usize::from(kid_len);
        if version != VERSION || kid_len == 0 || kid_len > MAX_KID_LEN {
            return Err(not_ours());
        }
        let kid = rest.get(..kid_len).ok_or_else(not_ours)?;
        if !valid_kid(kid) {
            return Err(not_ours());
        }
        let key = self.find(kid).ok_or_else(|| {
            // The kid passed `valid_kid`: it is a short plain identifier, safe to show.
            let kid = String::from_utf8_lossy(kid);
            invalid(&format!(
                "the session token was sealed with gateway key `{kid}`, which this gateway does not have \
                 (retired after rotation, or never configured here); get new session credentials"
            ))
        })?;
        let header_len = 2 + kid_len;
        if bytes.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(not_ours());
        }
        let (header, tail) = bytes
            .split_at_mut_checked(header_len)
            .ok_or_else(not_ours)?;
        let (nonce, body) = tail.split_at_mut_checked(NONCE_LEN).ok_or_else(not_ours)?;
        let nonce_arr = <[u8; NONCE_LEN]>::try_from(&*nonce).map_err(|_| not_ours())?;
        let aad = aad_bytes(header, access_key_id).ok_or_else(not_ours)?;
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce_arr),
                Aad::from(aad),
                body,
            )
            .map_err(|_| {
                invalid(&format!(
                    "the session token does not authenticate with access key id {access_key_id}: it was altered, \
                     or it belongs to other credentials (send the access key id, secret and token of one \
                     STS response together)"
                ))
            })?;
        let claims = decode_claims(plain).ok_or_else(|| {
            invalid("the session token's claims are malformed; get new session credentials")
        })?;
        let secret = key.derive_secret(access_key_id, nonce);
        let secret = std::str::from_utf8(secret.as_slice())
            .map(Secret::from)
            .map_err(|_| not_ours())?;
        Ok((claims, secret))
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

/// What a session is: sealed into its token, so every replica sees the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionClaims {
    /// The role assumed, with its path (`arn:aws:iam::ACCT:role/PATH/NAME`).
    pub role_arn: String,
    /// The role session name (AWS: 2 to 64 characters of `\w+=,.@-`).
    pub session_name: String,
    /// The source identity, carried through role chaining.
    pub source_identity: Option<String>,
    /// Session tags, for rule conditions.
    pub tags: Vec<(String, String)>,
    /// When the session was issued (Unix seconds): revocation compares with this.
    pub issued_at: i64,
    /// When the session expires (Unix seconds).
    pub expires_at: i64,
    /// Issued from another session: AWS caps role chaining at one hour.
    pub chained: bool,
    /// For a chained session, when the first session of the chain was issued: revocation
    /// compares with this, so renewing a session by chaining does not escape a cutoff.
    pub origin_issued_at: Option<i64>,
}

impl SessionClaims {
    /// A session that starts a chain (web identity, AWS bridge): no source identity, no
    /// tags, valid for `duration` seconds from `now`.
    pub fn first_hop(role_arn: &str, session_name: &str, now: i64, duration: i64) -> Self {
        Self {
            role_arn: role_arn.to_string(),
            session_name: session_name.to_string(),
            source_identity: None,
            tags: Vec::new(),
            issued_at: now,
            expires_at: now.saturating_add(duration),
            chained: false,
            origin_issued_at: None,
        }
    }

    /// When the chain this session belongs to began (its own issue time for a first hop).
    pub fn chain_started_at(&self) -> i64 {
        self.origin_issued_at
            .unwrap_or(self.issued_at)
            .min(self.issued_at)
    }
}

/// The parts of a role ARN an assumed-role ARN is made of.
struct RoleArn<'a> {
    partition: &'a str,
    account: &'a str,
    name: &'a str,
}

fn parse_role_arn(arn: &str) -> Result<RoleArn<'_>, String> {
    let bad = || {
        format!(
            "`{}` is not a role ARN like arn:aws:iam::111122223333:role/path/RoleName",
            arn.escape_debug()
        )
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let path_and_name = resource.strip_prefix("role/").ok_or_else(bad)?;
    // AWS names the session after the role's name, the last path segment.
    let name = path_and_name.rsplit('/').next().unwrap_or_default();
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    };
    if partition.is_empty()
        || !partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !plain(name)
        || path_and_name.contains("//")
    {
        return Err(bad());
    }
    Ok(RoleArn {
        partition,
        account,
        name,
    })
}

impl SessionClaims {
    /// The session's ARN as AWS writes it: `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`,
    /// where ROLE is the role's name (the last segment of its path) and the partition
    /// and account come from the role ARN. Refuses a role ARN that is not a role and a
    /// session name outside AWS's 2 to 64 characters of `\w+=,.@-`.
    pub fn assumed_role_arn(&self) -> Result<String, String> {
        let role = parse_role_arn(&self.role_arn)?;
        let name = &self.session_name;
        if !(2..=64).contains(&name.len())
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
        {
            return Err(format!(
                "role session name `{}` must be 2 to 64 characters of letters, digits and _+=,.@-",
                name.escape_debug()
            ));
        }
        // Pushed rather than `format!`-ed: this runs for every request a session signs.
        let parts = [
            "arn:",
            role.partition,
            ":sts::",
            role.account,
            ":assumed-role/",
            role.name,
            "/",
            name,
        ];
        let mut arn = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| arn.push_str(p));
        Ok(arn)
    }

    /// The account id of the role.
    pub fn account(&self) -> Result<&str, String> {
        parse_role_arn(&self.role_arn).map(|r| r.account)
    }

    /// AWS's `UserId` for an assumed role, `AROA<role id>:SESSION`. The gateway has no
    /// IAM role ids, so a stable pseudo id is derived from the role ARN: 17 base32
    /// characters of its SHA-256 (a role keeps its id across sessions and replicas).
    pub fn user_id(&self) -> String {
        let hash = digest::digest(&digest::SHA256, self.role_arn.as_bytes());
        let mut id = String::with_capacity(4 + 17 + 1 + self.session_name.len());
        id.push_str("AROA");
        base32_into(hash.as_ref(), 17, &mut id);
        id.push(':');
        id.push_str(&self.session_name);
        id
    }
}

/// A secret access key as STS hands it out: wiped on drop, `Debug` redacted.
#[derive(Clone)]
pub struct SecretAccessKey(Zeroizing<String>);

impl SecretAccessKey {
    /// The secret, for the STS response writer (and nothing else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAccessKey(<redacted>)")
    }
}

/// Credentials as STS returns them.
#[derive(Clone)]
pub struct IssuedCredentials {
    /// `ASIA` and 16 base32 characters.
    pub access_key_id: String,
    /// The secret access key (40 characters of base64).
    pub secret_access_key: SecretAccessKey,
    /// The session token (standard base64).
    pub session_token: String,
    /// When the credentials expire (Unix seconds).
    pub expiration: i64,
}

impl fmt::Debug for IssuedCredentials {
    // The token is a credential too (with the secret it signs requests): keep it out
    // of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

fn invalid(reason: &str) -> Rejection {
    Rejection::new(
        Code::InvalidClientTokenId,
        format!("The security token included in the request is invalid: {reason}."),
    )
}

fn rng_failed() -> String {
    "the system random number generator failed".into()
}

fn valid_kid(kid: &[u8]) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn valid_session_akid(akid: &str) -> bool {
    akid.len() == ACCESS_KEY_LEN
        && akid.strip_prefix(ACCESS_KEY_PREFIX).is_some_and(|rest| {
            rest.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        })
}

/// The associated data: the token header and the access key id, so neither can be
/// swapped without the tag failing.
/// On the stack: `open` runs per request, and the two parts are short and bounded.
fn aad_bytes(header: &[u8], access_key_id: &str) -> Option<AadBuf> {
    let mut buf = [0u8; 2 + MAX_KID_LEN + ACCESS_KEY_LEN];
    let len = header.len() + access_key_id.len();
    buf.get_mut(..header.len())?.copy_from_slice(header);
    buf.get_mut(header.len()..len)?
        .copy_from_slice(access_key_id.as_bytes());
    Some(AadBuf { buf, len })
}

struct AadBuf {
    buf: [u8; 2 + MAX_KID_LEN + ACCESS_KEY_LEN],
    len: usize,
}

impl AsRef<[u8]> for AadBuf {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Appends the first `chars` base32 characters of `bytes` (5 bits each, most
/// significant first) to `out`.
fn base32_into(bytes: &[u8], chars: usize, out: &mut String) {
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    let mut written = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            if written == chars {
                return;
            }
            bits -= 5;
            let idx = usize::from((acc >> bits) & 0x1f);
            out.push(char::from(BASE32.get(idx).copied().unwrap_or(b'A')));
            written += 1;
        }
        acc &= (1 << bits) - 1;
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &str) -> Result<(), String> {
    let len = u16::try_from(s.len()).map_err(|_| format!("the session's {what} is too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The claims, compactly: flags, issued_at, expires_at, chain start (i64 big-endian), role ARN,
/// session name, [source identity], tag count, tags; strings are u16-length-prefixed
/// UTF-8.
fn encode_claims(c: &SessionClaims, out: &mut Vec<u8>) -> Result<(), String> {
    let mut flags = 0;
    if c.chained {
        flags |= FLAG_CHAINED;
    }
    if c.source_identity.is_some() {
        flags |= FLAG_SOURCE_IDENTITY;
    }
    out.push(flags);
    out.extend_from_slice(&c.issued_at.to_be_bytes());
    out.extend_from_slice(&c.expires_at.to_be_bytes());
    out.extend_from_slice(&c.chain_started_at().to_be_bytes());
    put_str(out, &c.role_arn, "role ARN")?;
    put_str(out, &c.session_name, "session name")?;
    if let Some(s) = &c.source_identity {
        put_str(out, s, "source identity")?;
    }
    out.push(u8::try_from(c.tags.len()).map_err(|_| "a session has at most 255 tags")?);
    for (k, v) in &c.tags {
        put_str(out, k, "tag key")?;
        put_str(out, v, "tag value")?;
    }
    Ok(())
}

/// A cursor over the opened claims; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?)
            .ok()
            .map(str::to_owned)
    }
}

fn decode_claims(plain: &[u8]) -> Option<SessionClaims> {
    let mut r = Reader(plain);
    let flags = r.u8()?;
    if flags & !(FLAG_CHAINED | FLAG_SOURCE_IDENTITY) != 0 {
        return None;
    }
    let issued_at = r.i64()?;
    let expires_at = r.i64()?;
    let origin = r.i64()?;
    let role_arn = r.string()?;
    let session_name = r.string()?;
    let source_identity = if flags & FLAG_SOURCE_IDENTITY != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let count = r.u8()?;
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        tags.push((r.string()?, r.string()?));
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(SessionClaims {
        role_arn,
        session_name,
        source_identity,
        tags,
        issued_at,
        expires_at,
        chained: flags & FLAG_CHAINED != 0,
        origin_issued_at: (origin != issued_at).then_some(origin),
    })
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
    use proptest::prelude::*;
    use ring::rand::SystemRandom;

    const ROLE: &str = "arn:aws:iam::111122223333:role/teams/checkout/CheckoutToOrderRole";
    const T0: i64 = 1_700_000_000;

    fn key(id: &str, fill: u8) -> SessionKey {
        SessionKey::new(id, &[fill; 32]).unwrap()
    }

    fn keys(ids: &[(&str, u8)]) -> SessionKeys {
        SessionKeys::new(ids.iter().map(|(id, f)| key(id, *f)).collect()).unwrap()
    }

    fn claims() -> SessionClaims {
        SessionClaims {
            role_arn: ROLE.into(),
            session_name: "checkout-7f9c".into(),
            source_identity: Some("alice@example.com".into()),
            tags: vec![
                ("team".into(), "checkout".into()),
                ("env".into(), "prod".into()),
            ],
            issued_at: T0,
            expires_at: T0 + 3600,
            chained: false,
            origin_issued_at: None,
        }
    }

    fn code(r: Result<(SessionClaims, Secret), Rejection>) -> Rejection {
        let e = r.expect_err("expected a rejection");
        assert_eq!(e.code(), Code::InvalidClientTokenId, "{e}");
        assert_eq!(e.status(), 403);
        e
    }

    #[test]
    fn round_trip_claims_and_secret() {
        let rng = SystemRandom::new();
        let set = keys(&[("k1", 1)]);
        let c = claims();
        let creds = set.issue(&c, &rng).unwrap();
        assert_eq!(creds.access_key_id.len(), 20);
        assert!(valid_session_akid(&creds.access_key_id));
        assert_eq!(creds.secret_access_key.expose().len(), 40);
        assert_eq!(creds.expiration, c.expires_at);
        assert!(creds.session_token.len() <= MAX_TOKEN_LEN);
        let (opened, secret) = set
            .open(&creds.access_key_id, &creds.session_token)
            .unwrap();
        assert_eq!(opened, c);
        assert_eq!(secret, Secret::from(creds.secret_access_key.expose()));
        // A second session differs in every credential part.
        let other = set.issue(&c, &rng).unwrap();
        assert_ne!(other.access_key_id, creds.access_key_id);
        assert_ne!(
            other.secret_access_key.expose(),
            creds.secret_access_key.expose()
        );
        assert_ne!(other.session_token, creds.session_token);
        // Claims without the optional parts survive too.
        let bare = SessionClaims {
            source_identity: None,
            tags: vec![],
            chained: true,
            origin_issued_at: None,
            ..c
        };
        let creds = set.issue(&bare, &rng).unwrap();
        assert_eq!(
            set.open(&creds.access_key_id, &creds.session_token)
                .unwrap()
                .0,
            bare
        );
    }

    #[test]
    fn nothing_secret_in_debug_or_errors() {
        let rng = SystemRandom::new();
        let set = keys(&[("k1", 1)]);
        let creds = set.issue(&claims(), &rng).unwrap();
        let shown = format!("{creds:?} {set:?} {:?}", key("k2", 2));
        assert!(!shown.contains(creds.secret_access_key.expose()), "{shown}");
        assert!(!shown.contains(&creds.session_token), "{shown}");
        assert!(shown.contains("k1") && shown.contains("k2"), "{shown}");
        let mut tampered = creds.session_token.clone().into_bytes();
        let last = tampered.len() - 5;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for e in [
            code(set.open(&creds.access_key_id, &tampered)),
            code(set.open(&creds.access_key_id, &creds.session_token[1..])),
            code(set.open("ASIAAAAAAAAAAAAAAAAA", &creds.session_token)),
        ] {
            let text = e.to_string();
            assert!(!text.contains(&creds.session_token[..40]), "{text}");
            assert!(!text.contains(&tampered[..40]), "{text}");
            assert!(!text.contains(creds.secret_access_key.expose()), "{text}");
        }
    }

    #[test]
    fn another_access_key_id_fails() {
        let rng = SystemRandom::new();
        let set = keys(&[("k1", 1)]);
        let a = set.issue(&claims(), &rng).unwrap();
        let b = set.issue(&claims(), &rng).unwrap();
        let e = code(set.open(&b.access_key_id, &a.session_token));
        assert!(e.message().contains("belongs to other credentials"), "{e}");
        let e = code(set.open("AKIADEMOCHECKOUT0001", &a.session_token));
        assert!(e.message().contains("not a session key id"), "{e}");
    }

    #[test]
    fn every_tampered_byte_fails() {
        let rng = SystemRandom::new();
        let set = keys(&[("k1", 1)]);
        let creds = set.issue(&claims(), &rng).unwrap();
        let raw = STANDARD.decode(&creds.session_token).unwrap();
        for i in 0..raw.len() {
            for flip in [0x01u8, 0x80] {
                let mut t = raw.clone();
                t[i] ^= flip;
                let e = code(set.open(&creds.access_key_id, &STANDARD.encode(&t)));
                assert!(!e.message().is_empty());
            }
        }
        // Truncated and extended tokens too.
        for n in 0..raw.len() {
            code(set.open(&creds.access_key_id, &STANDARD.encode(&raw[..n])));
        }
        let mut longer = raw.clone();
        longer.push(0);
        code(set.open(&creds.access_key_id, &STANDARD.encode(&longer)));
    }

    #[test]
    fn unknown_and_retired_keys_fail() {
        let rng = SystemRandom::new();
        let old = keys(&[("k1", 1)]);
        let creds = old.issue(&claims(), &rng).unwrap();
        // A set lacking the sealing key: the key was retired.
        let retired = keys(&[("k2", 2)]);
        let e = code(retired.open(&creds.access_key_id, &creds.session_token));
        assert!(
            e.message().contains("`k1`") && e.message().contains("retired"),
            "{e}"
        );
        // Same kid, another secret (a key id reused for a new key): authentication fails.
        let reused = keys(&[("k1", 9)]);
        code(reused.open(&creds.access_key_id, &creds.session_token));
        // A token naming a kid nobody has: rewrite the kid (its length kept).
        let mut raw = STANDARD.decode(&creds.session_token).unwrap();
        raw[2..4].copy_from_slice(b"zz");
        let e = code(old.open(&creds.access_key_id, &STANDARD.encode(&raw)));
        assert!(e.message().contains("`zz`"), "{e}");
        // A kid that is not a valid id is never echoed.
        raw[2..4].copy_from_slice(b"<>");
        let e = code(old.open(&creds.access_key_id, &STANDARD.encode(&raw)));
        assert!(!e.message().contains("<>"), "{e}");
    }

    #[test]
    fn rotation_keeps_old_sessions_and_seals_with_the_new_key() {
        let rng = SystemRandom::new();
        let before = keys(&[("k1", 1)]);
        let old_session = before.issue(&claims(), &rng).unwrap();
        let rotated = keys(&[("k2", 2), ("k1", 1)]);
        assert_eq!(rotated.active_kid(), "k2");
        assert_eq!(rotated.kids().collect::<Vec<_>>(), ["k2", "k1"]);
        let (c, secret) = rotated
            .open(&old_session.access_key_id, &old_session.session_token)
            .unwrap();
        assert_eq!(c, claims());
        assert_eq!(secret, Secret::from(old_session.secret_access_key.expose()));
        let new_session = rotated.issue(&claims(), &rng).unwrap();
        let raw = STANDARD.decode(&new_session.session_token).unwrap();
        assert_eq!(&raw[..4], &[VERSION, 2, b'k', b'2']);
        // The pre-rotation set does not know k2 yet; a set with k2 alone opens it.
        code(before.open(&new_session.access_key_id, &new_session.session_token));
        keys(&[("k2", 2)])
            .open(&new_session.access_key_id, &new_session.session_token)
            .unwrap();
    }

    #[test]
    fn key_and_set_validation() {
        assert!(SessionKey::new("k1", &[0; 31]).is_err());
        assert!(SessionKey::new("", &[0; 32]).is_err());
        assert!(SessionKey::new("seventeen-chars-x", &[0; 32]).is_err());
        assert!(SessionKey::new("k 1", &[0; 32]).is_err());
        assert!(SessionKey::new("Key_2026-01", &[0; 64]).is_ok());
        assert!(SessionKeys::new(vec![]).is_err());
        let dup = SessionKeys::new(vec![key("k1", 1), key("k1", 2)]).unwrap_err();
        assert!(dup.contains("twice"), "{dup}");
        // The error never shows secret bytes.
        let e = SessionKey::new("k1", b"short secret").unwrap_err();
        assert!(!e.contains("short secret"), "{e}");
        let set = SessionKeys::generate(&SystemRandom::new()).unwrap();
        assert_eq!(set.active_kid(), "k0");
    }

    #[test]
    fn issue_refuses_unusable_claims() {
        let rng = SystemRandom::new();
        let set = keys(&[("k1", 1)]);
        let refuse = |c: SessionClaims| set.issue(&c, &rng).unwrap_err();
        refuse(SessionClaims {
            expires_at: T0,
            ..claims()
        });
        refuse(SessionClaims {
            expires_at: T0 + MAX_SESSION_SECS + 1,
            ..claims()
        });
        let e = refuse(SessionClaims {
            chained: true,
            origin_issued_at: None,
            expires_at: T0 + 3601,
            ..claims()
        });
        assert!(e.contains("chained"), "{e}");
        set.issue(
            &SessionClaims {
                chained: true,
                origin_issued_at: None,
                ..claims()
            },
            &rng,
        )
        .unwrap();
        refuse(SessionClaims {
            role_arn: "arn:aws:iam::111122223333:user/alice".into(),
            ..claims()
        });
        refuse(SessionClaims {
            session_name: "a/b".into(),
            ..claims()
        });
        let e = refuse(SessionClaims {
            tags: (0..50)
                .map(|i| (format!("key{i}"), "v".repeat(100)))
                .collect(),
            ..claims()
        });
        assert!(e.contains("4096"), "{e}");
    }

    #[test]
    fn assumed_role_arn_account_and_user_id() {
        let c = SessionClaims {
            session_name: "SESSION".into(),
            ..claims()
        };
        assert_eq!(
            c.assumed_role_arn().unwrap(),
            "arn:aws:sts::111122223333:assumed-role/CheckoutToOrderRole/SESSION"
        );
        assert_eq!(c.role_arn, ROLE, "the role ARN keeps its path");
        assert_eq!(c.account().unwrap(), "111122223333");
        let plain = SessionClaims {
            role_arn: "arn:aws-cn:iam::123456789012:role/OrderPBCRole".into(),
            ..c.clone()
        };
        assert_eq!(
            plain.assumed_role_arn().unwrap(),
            "arn:aws-cn:sts::123456789012:assumed-role/OrderPBCRole/SESSION"
        );
        let id = c.user_id();
        assert!(id.starts_with("AROA") && id.ends_with(":SESSION"), "{id}");
        assert_eq!(id.len(), 4 + 17 + 1 + 7);
        assert!(id[4..21].bytes().all(|b| BASE32.contains(&b)), "{id}");
        // Stable per role, different across roles, independent of the session.
        let other_session = SessionClaims {
            session_name: "other".into(),
            ..c.clone()
        };
        assert_eq!(other_session.user_id()[..21], id[..21]);
        assert_ne!(plain.user_id()[..21], id[..21]);
        for bad in [
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::1111:role/R",
            "arn:aws:sts::111122223333:role/R",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a//R",
            "not an arn",
        ] {
            let c = SessionClaims {
                role_arn: bad.into(),
                ..c.clone()
            };
            assert!(c.assumed_role_arn().is_err(), "{bad}");
        }
    }

    #[test]
    fn base32_encoding() {
        let mut s = String::new();
        base32_into(&[0xff; 10], 16, &mut s);
        assert_eq!(s, "7777777777777777");
        s.clear();
        base32_into(&[0; 10], 16, &mut s);
        assert_eq!(s, "AAAAAAAAAAAAAAAA");
        s.clear();
        // RFC 4648 test vector "foobar" -> MZXW6YTBOI======
        base32_into(b"foobar", 9, &mut s);
        assert_eq!(s, "MZXW6YTBO");
    }

    #[test]
    fn oversized_and_garbage_tokens() {
        let set = keys(&[("k1", 1)]);
        let akid = "ASIAAAAAAAAAAAAAAAAA";
        let e = code(set.open(akid, &"A".repeat(MAX_TOKEN_LEN + 4)));
        assert!(e.message().contains("longer than"), "{e}");
        for t in [
            "",
            "=",
            "not base64!",
            "AQID",
            "%2B%2F",
            "AQJrMQ==",
            "AQJrMQ",
        ] {
            code(set.open(akid, t));
        }
    }

    proptest! {
        #[test]
        fn random_tokens_never_panic(token in ".{0,600}", b64 in "[A-Za-z0-9+/=]{0,600}") {
            let set = keys(&[("k1", 1)]);
            for t in [&token, &b64] {
                let e = set.open("ASIAAAAAAAAAAAAAAAAA", t).unwrap_err();
                prop_assert_eq!(e.code(), Code::InvalidClientTokenId);
            }
        }

        #[test]
        fn random_bytes_with_a_valid_header_never_open(
            body in proptest::collection::vec(any::<u8>(), 0..400)
        ) {
            let set = keys(&[("k1", 1)]);
            let mut raw = vec![VERSION, 2, b'k', b'1'];
            raw.extend_from_slice(&body);
            let e = set.open("ASIAAAAAAAAAAAAAAAAA", &STANDARD.encode(&raw)).unwrap_err();
            prop_assert_eq!(e.code(), Code::InvalidClientTokenId);
        }

        #[test]
        fn any_claims_round_trip(
            name in "[A-Za-z0-9_+=,.@-]{2,64}",
            source in proptest::option::of(".{0,64}"),
            tags in proptest::collection::vec((".{1,20}", ".{0,40}"), 0..10),
            issued in -1_000_000_000i64..4_000_000_000,
            secs in 1i64..=3600,
            chained in any::<bool>(),
        ) {
            let set = keys(&[("k1", 1)]);
            let c = SessionClaims {
                role_arn: ROLE.into(),
                session_name: name,
                source_identity: source,
                tags,
                issued_at: issued,
                expires_at: issued + secs,
                chained,
                origin_issued_at: None,
            };
            let creds = set.issue(&c, &SystemRandom::new()).unwrap();
            let (opened, secret) = set.open(&creds.access_key_id, &creds.session_token).unwrap();
            prop_assert_eq!(opened, c);
            prop_assert_eq!(secret, Secret::from(creds.secret_access_key.expose()));
        }
    }
}
