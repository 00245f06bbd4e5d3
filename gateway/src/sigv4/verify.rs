//! The verifier: parse the signature, hold it to the policy, then (given the caller's
//! secret from the identity stage) check it and the payload. Produces the [`Verified`]
//! proof the rest of the gateway takes.

use std::sync::Arc;

use hmac::Mac;
use sha2::{Digest, Sha256};

use super::auth::{
    self, Algorithm, CredentialString, Location, ParsedAuth, SignatureBytes, header_text, names,
    printable,
};
use super::canonical::{Canonical, PayloadLine, QueryPair, canonical_query, write_string_to_sign};
use super::chunked::{ChunkDecoder, MacSink};
use super::encode::{Buffered, decode_hex, hex, split_byte};
use super::keys::{KeyCache, V4Key};
use super::request::S3_SERVICES;
use super::secret::ct_eq;
use super::{AmzTime, Body, Code, Credential, Policy, Rejection, Request, SignatureDetail, sigv4a};

const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const STREAMING_V4: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// SHA-256 of the empty body, the payload hash of most GETs.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// What was proven about the body.
#[derive(Debug)]
pub enum Payload {
    /// The body's SHA-256 was signed and matches the body received.
    Signed([u8; 32]),
    /// The caller sent `UNSIGNED-PAYLOAD` and was allowed to (or the body is empty).
    Unsigned,
    /// A chunk-signed body still to come: feed it to this decoder, which releases only
    /// verified data and stops at the first bad chunk.
    Streaming(Box<ChunkDecoder>),
    /// A chunk-signed body given whole: every chunk verified; this is the decoded data.
    Decoded(Vec<u8>),
}

/// Proof that a request was signed by the holder of a secret, for this scope, in time.
#[derive(Debug)]
pub struct Verified {
    /// The credential that signed: access key id, scope date, region, service. (The signed
    /// header list shares its allocation.)
    pub credential: CredentialString<String>,
    /// SigV4 or SigV4a.
    pub algorithm: Algorithm,
    /// Header or presigned query.
    pub location: Location,
    /// The signed request time.
    pub time: AmzTime,
    /// Whether a session token was signed with the request.
    pub has_session_token: bool,
    /// What was proven about the body.
    pub payload: Payload,
    /// A fingerprint of the signature (128 bits of it; SigV4a: of its SHA-256), the key
    /// of a replay cache: a request sent again carries the same one.
    pub replay_key: u128,
    /// The last second (Unix time) at which this signature still passes the time
    /// check: the request time plus the skew window, or a presigned URL's expiry. A
    /// replay cache must remember the signature until then, and need not after.
    pub valid_until: i64,
    region_set: Option<String>,
}

impl Verified {
    /// The access key id that signed.
    pub fn access_key_id(&self) -> &str {
        self.credential.access_key_id()
    }

    /// The scope's service.
    pub fn service(&self) -> &str {
        self.credential.service()
    }

    /// The scope's region (`None` for SigV4a).
    pub fn region(&self) -> Option<&str> {
        self.credential.region()
    }

    /// The SigV4a region set.
    pub fn region_set(&self) -> Option<&str> {
        self.region_set.as_deref()
    }

    /// Signed header names, lower-case and sorted.
    pub fn signed_headers(&self) -> impl Iterator<Item = &str> {
        split_byte(self.credential.suffix(), b';')
    }
}

/// Verifies SigV4 and SigV4a requests against one [`Policy`]. Shareable across threads;
/// it keeps a bounded cache of derived signing keys.
pub struct Verifier {
    policy: Policy,
    keys: KeyCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Bytes allowed in a `SignedHeaders` entry: the lower-case HTTP token characters.
// Built at compile time (`b < 256` on a 256-entry table): a bad index would not compile.
#[allow(clippy::indexing_slicing)]
const LOWER_TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'^'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Whether a header name is a lower-case HTTP token, as `SignedHeaders` requires.
fn is_lower_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| LOWER_TOKEN.get(usize::from(b)).copied().unwrap_or(false))
}

/// Whether a region pattern of a SigV4a region set (`*`, `us-*`, `us-east-1`) covers `region`.
fn region_matches(pattern: &str, region: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == region,
        Some((prefix, suffix)) => {
            region.len() >= prefix.len() + suffix.len()
                && region.starts_with(prefix)
                && region.ends_with(suffix)
                && !suffix.contains('*')
        }
    }
}

/// A signature that did not match; the report is built only once every candidate payload
/// line has failed, so a forged request costs no allocation per attempt.
struct Mismatch;

impl Verifier {
    /// A verifier for this policy.
    pub fn new(policy: Policy) -> Self {
        let keys = KeyCache::new(policy.limits.key_cache_capacity);
        Self { policy, keys }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Stage one: parses the signature and checks everything that needs no secret (shape,
    /// signed headers, scope, time; `now` is Unix seconds). The identity stage then looks up
    /// [`ParsedAuth::access_key_id`] and [`ParsedAuth::session_token`].
    pub fn parse<'r>(&self, req: &Request<'r>, now: i64) -> Result<ParsedAuth<'r>, Rejection> {
        let mut auth = auth::parse(req, self.policy.limits.max_query_params)?;
        self.check_signed_headers(req, &mut auth)?;
        self.check_scope(&auth)?;
        self.check_time(&auth, now)?;
        Ok(auth)
    }

    /// Splits `SignedHeaders` once, checks it, and gathers the signed headers' values in one
    /// pass over the request's headers.
    fn check_signed_headers<'r>(
        &self,
        req: &Request<'r>,
        auth: &mut ParsedAuth<'r>,
    ) -> Result<(), Rejection> {
        // Filled in place: `ParsedAuth` is large, and moving vectors into it costs copies.
        let ParsedAuth {
            signed_headers,
            signed_names: ranges,
            signed_values: values,
            location,
            algorithm,
            ..
        } = auth;
        let list: &str = signed_headers;
        let max = self.policy.limits.max_signed_headers;
        let mut start = 0usize;
        let mut previous: Option<&str> = None;
        for name in split_byte(list, b';') {
            if ranges.len() >= max {
                return Err(Rejection::incomplete(format!(
                    "SignedHeaders names more than {max} headers, the most this gateway accepts."
                )));
            }
            if !is_lower_token(name) {
                return Err(Rejection::incomplete(format!(
                    "SignedHeaders entry '{}' is not a lower-case header name.",
                    printable(name)
                )));
            }
            if previous.is_some_and(|p| p >= name) {
                return Err(Rejection::incomplete(
                    "SignedHeaders must list each header once, in lower case, sorted by name.",
                ));
            }
            previous = Some(name);
            let end = start + name.len();
            let range = u32::try_from(start).ok().zip(u32::try_from(end).ok());
            ranges.push(range.ok_or_else(|| Rejection::incomplete("SignedHeaders is too long."))?);
            start = end + 1;
        }
        let name_at = |&(s, e): &(u32, u32)| list.get(s as usize..e as usize).unwrap_or("");
        // Linear and length-first: a handful of names, most rejected without a memcmp.
        let index_of = |name: &str| {
            ranges
                .iter()
                .position(|&(s, e)| (e - s) as usize == name.len() && name_at(&(s, e)) == name)
        };
        let header_mode = *location == Location::Header;
        let must_sign = [
            (names::X_AMZ_SECURITY_TOKEN, true),
            (names::X_AMZ_CONTENT_SHA256, true),
            (names::X_AMZ_DATE, header_mode),
            (
                names::X_AMZ_REGION_SET,
                header_mode && *algorithm == Algorithm::V4a,
            ),
        ];
        let must_be_signed = |name: &str| {
            must_sign
                .iter()
                .any(|&(m, applies)| applies && m.len() == name.len() && m == name)
                || self
                    .policy
                    .required_signed_headers
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(name))
        };

        let mut previous_name: Option<&http::HeaderName> = None;
        let mut previous_index = None;
        for (name, value) in req.headers.iter() {
            // Repeated values of one header come one after another: match the name once.
            let index = match previous_name {
                Some(p) if p == name => previous_index,
                _ => {
                    let index = index_of(name.as_str());
                    if index.is_none() && must_be_signed(name.as_str()) {
                        return Err(Rejection::incomplete(format!(
                            "The request carries '{name}' but does not sign it; add it to SignedHeaders."
                        )));
                    }
                    previous_name = Some(name);
                    previous_index = index;
                    index
                }
            };
            if let Some(i) = index {
                values.push((i, value));
            }
        }
        // Stable: repeated headers keep their request order. Signers usually send headers
        // in signed order already.
        if !values.is_sorted_by_key(|&(i, _)| i) {
            values.sort_by_key(|&(i, _)| i);
        }
        let mut present = values.iter().map(|&(i, _)| i).peekable();
        for (i, range) in ranges.iter().enumerate() {
            if present.peek() != Some(&i) {
                return Err(Rejection::incomplete(format!(
                    "SignedHeaders names '{}', but the request has no such header.",
                    name_at(range)
                )));
            }
            while present.next_if_eq(&i).is_some() {}
        }
        if index_of("host").is_none() {
            return Err(Rejection::incomplete(
                "'Host' must be a signed header (list it in SignedHeaders).",
            ));
        }
        Ok(())
    }

    fn check_scope(&self, auth: &ParsedAuth<'_>) -> Result<(), Rejection> {
        if auth.scope_date() != auth.time.date() {
            return Err(Rejection::new(
                Code::SignatureDoesNotMatch,
                format!(
                    "Date in Credential scope ({}) does not match YYYYMMDD from the request date ({}); \
                     sign with a scope for the request's own date.",
                    printable(auth.scope_date()),
                    auth.time.iso()
                ),
            ));
        }
        let service = auth.service();
        if !self.policy.services.iter().any(|s| s == service) {
            return Err(Rejection::new(
                Code::SignatureDoesNotMatch,
                format!(
                    "Credential should be scoped to a service this gateway accepts ({}), not '{}'.",
                    self.policy.services.join(", "),
                    printable(service)
                ),
            ));
        }
        let region_ok = match (auth.region(), auth.region_set()) {
            (Some(region), _) => self.policy.regions.iter().any(|r| r == region),
            (None, Some(set)) => set.split(',').map(str::trim).any(|pattern| {
                self.policy
                    .regions
                    .iter()
                    .any(|r| region_matches(pattern, r))
            }),
            (None, None) => false,
        };
        if !region_ok {
            let got = auth.region().or(auth.region_set()).unwrap_or("");
            return Err(Rejection::new(
                Code::SignatureDoesNotMatch,
                format!(
                    "Credential should be scoped to a valid region ({}), not '{}'.",
                    self.policy.regions.join(", "),
                    printable(got)
                ),
            ));
        }
        Ok(())
    }

    fn check_time(&self, auth: &ParsedAuth<'_>, now: i64) -> Result<(), Rejection> {
        let t = auth.time.unix();
        let skew = self.policy.max_skew_secs;
        let server = || AmzTime::from_unix(now);
        match auth.expires {
            None if (t - now).abs() > skew => Err(Rejection::new(
                Code::RequestTimeTooSkewed,
                format!(
                    "The difference between the request time ({}) and the server time ({}) is more \
                     than {skew} seconds; check the caller's clock.",
                    auth.time.iso(),
                    server().iso()
                ),
            )),
            Some(_) if t - now > skew => Err(Rejection::new(
                Code::RequestTimeTooSkewed,
                format!(
                    "The presigned URL's X-Amz-Date ({}) is in the future (server time {}); check \
                     the signer's clock.",
                    auth.time.iso(),
                    server().iso()
                ),
            )),
            Some(expires) if now > t + expires => Err(Rejection::new(
                Code::RequestExpired,
                format!(
                    "The presigned URL expired at {} (signed {} for {expires} seconds; server time \
                     {}); presign it again.",
                    AmzTime::from_unix(t + expires).iso(),
                    auth.time.iso(),
                    server().iso()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Stage two: checks the signature with the caller's secret, then the payload.
    pub fn verify(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
        credential: &Credential<'_>,
        now: i64,
    ) -> Result<Verified, Rejection> {
        if let Some(expires_at) = credential.expires_at
            && now >= expires_at
        {
            return Err(Rejection::new(
                Code::ExpiredToken,
                format!(
                    "The security token included in the request expired at {}; get new session \
                     credentials.",
                    AmzTime::from_unix(expires_at).iso()
                ),
            ));
        }
        let query = canonical_query(req.query, auth.location == Location::Query);
        let mut matched = None;
        let mut unresolved = None;
        for declared in self.declared_payloads(auth)?.into_iter().flatten() {
            // A guess whose payload line cannot be had (the body hash of a streamed body)
            // is not the one the caller signed: try the next.
            let (line, kind) = match declared.resolve(req.body) {
                Ok(resolved) => resolved,
                Err(e) => {
                    unresolved.get_or_insert(e);
                    continue;
                }
            };
            let canonical = self.prepare(req, auth, &query, line);
            if let Ok(key) = self.check_signature(auth, credential, &canonical.hash()) {
                matched = Some((kind, key));
                break;
            }
        }
        let Some((kind, v4_key)) = matched else {
            return Err(match unresolved {
                // Nothing could be checked at all: say why.
                Some(e) if auth.location == Location::Header => e,
                _ => self.mismatch_report(req, auth)?,
            });
        };

        let payload = match kind {
            DeclaredKind::Computed(h) => Payload::Signed(h),
            DeclaredKind::Hash(expected) => {
                let actual = body_hash(req.body).ok_or_else(|| {
                    Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        "A body with a declared x-amz-content-sha256 must be received whole \
                         before it is forwarded.",
                    )
                })?;
                if !ct_eq(&actual, &expected) {
                    return Err(Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        format!(
                            "The provided 'x-amz-content-sha256' header does not match what was \
                             computed: the body received hashes to {}. The body was altered or the \
                             hash was computed over other bytes.",
                            hex(&actual)
                        ),
                    ));
                }
                Payload::Signed(actual)
            }
            DeclaredKind::Unsigned => {
                let empty = match req.body {
                    Body::Bytes(b) => b.is_empty(),
                    Body::Sha256(h) => h == EMPTY_SHA256,
                    Body::Streaming => false,
                };
                if !empty && !credential.allow_unsigned_payload {
                    return Err(Rejection::new(
                        Code::AccessDenied,
                        "This caller may not send UNSIGNED-PAYLOAD with a body: sign the payload \
                         (x-amz-content-sha256 with its SHA-256) or ask for unsigned payloads to be \
                         allowed for this caller.",
                    ));
                }
                Payload::Unsigned
            }
            DeclaredKind::Streaming => self.streaming_payload(req, auth, v4_key)?,
        };
        let t = auth.time.unix();
        let valid_until = match auth.expires {
            None => t.saturating_add(self.policy.max_skew_secs),
            Some(expires) => t.saturating_add(expires),
        };
        Ok(Verified {
            credential: auth.credential.to_owned_with(&auth.signed_headers),
            region_set: auth.region_set().map(str::to_owned),
            algorithm: auth.algorithm,
            location: auth.location,
            time: auth.time,
            has_session_token: auth.session_token.is_some(),
            payload,
            replay_key: replay_key(&auth.signature),
            valid_until,
        })
    }

    fn streaming_payload(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
        key: Option<Arc<V4Key>>,
    ) -> Result<Payload, Rejection> {
        let (SignatureBytes::V4(seed), Some(key)) = (&auth.signature, key) else {
            return Err(Rejection::new(
                Code::XAmzContentSHA256Mismatch,
                "Chunk-signed bodies are supported with AWS4-HMAC-SHA256 only.",
            ));
        };
        let expected_length = header_text(
            auth.known.decoded_content_length,
            names::X_AMZ_DECODED_CONTENT_LENGTH,
        )?
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                Rejection::new(
                    Code::IncompleteBody,
                    "x-amz-decoded-content-length is not a whole number of bytes.",
                )
            })
        })
        .transpose()?;
        let mut decoder = ChunkDecoder::new(
            key.mac.clone(),
            auth.time.iso(),
            auth.scope(),
            *seed,
            expected_length,
            self.policy.limits.max_chunk_size,
        );
        match req.body {
            Body::Streaming => Ok(Payload::Streaming(Box::new(decoder))),
            Body::Bytes(b) => {
                let mut out = Vec::with_capacity(b.len());
                decoder.feed(b, &mut out)?;
                decoder.finish()?;
                Ok(Payload::Decoded(out))
            }
            Body::Sha256(_) => Err(Rejection::new(
                Code::IncompleteBody,
                "A chunk-signed body must be given to the verifier as bytes or streamed.",
            )),
        }
    }

    /// The canonical request and string to sign the gateway computes for a parsed
    /// request: what a signer must have produced. Needs no secret.
    pub fn canonical(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
    ) -> Result<SignatureDetail, Rejection> {
        self.detail(req, auth, false)
    }

    fn detail(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
        redact: bool,
    ) -> Result<SignatureDetail, Rejection> {
        // The most likely payload line that can be had.
        let mut line = Err(Rejection::incomplete("No payload line to sign."));
        for declared in self.declared_payloads(auth)?.into_iter().flatten() {
            line = declared.resolve(req.body).map(|(line, _)| line);
            if line.is_ok() {
                break;
            }
        }
        let query = canonical_query(req.query, auth.location == Location::Query);
        let canonical = self.prepare(req, auth, &query, line?);
        let mut sts = Vec::with_capacity(128);
        write_string_to_sign(
            &mut sts,
            auth.algorithm.as_str(),
            auth.time.iso(),
            auth.scope(),
            &canonical.hash(),
        );
        Ok(SignatureDetail {
            canonical_request: if redact {
                canonical.redacted_text()
            } else {
                canonical.text()
            },
            string_to_sign: String::from_utf8_lossy(&sts).into_owned(),
        })
    }

    /// `SignatureDoesNotMatch` with what the gateway computed (for the most likely payload
    /// line), the session token redacted.
    fn mismatch_report(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
    ) -> Result<Rejection, Rejection> {
        let d = self.detail(req, auth, true)?;
        Ok(Rejection::signature_mismatch(
            d.canonical_request,
            d.string_to_sign,
        ))
    }

    fn s3_style(&self, service: &str) -> bool {
        self.policy.s3_style_services.iter().any(|s| s == service)
    }

    /// Assembles the canonical request for one payload line.
    fn prepare<'a, 'r>(
        &self,
        req: &Request<'a>,
        auth: &'a ParsedAuth<'r>,
        query: &'a [QueryPair<'a>],
        payload: PayloadLine<'a>,
    ) -> Canonical<'a, 'r> {
        Canonical {
            method: req.method,
            path: req.path,
            s3_style: self.s3_style(auth.service()),
            query,
            auth,
            payload,
        }
    }

    /// Checks the request signature; for SigV4 returns the signing key (chunk signatures
    /// chain from it).
    fn check_signature(
        &self,
        auth: &ParsedAuth<'_>,
        credential: &Credential<'_>,
        creq_hash: &[u8; 32],
    ) -> Result<Option<Arc<V4Key>>, Mismatch> {
        let akid = auth.access_key_id();
        let alg = auth.algorithm.as_str();
        match &auth.signature {
            SignatureBytes::V4(provided) => {
                let region = auth.region().unwrap_or("");
                let key = self.keys.v4(
                    akid,
                    credential.secret,
                    auth.scope_date(),
                    region,
                    auth.service(),
                );
                let mut mac = key.mac.clone();
                write_string_to_sign(
                    &mut Buffered::new(&mut MacSink(&mut mac)),
                    alg,
                    auth.time.iso(),
                    auth.scope(),
                    creq_hash,
                );
                let computed: [u8; 32] = mac.finalize().into_bytes().into();
                if ct_eq(&computed, provided) {
                    Ok(Some(key))
                } else {
                    Err(Mismatch)
                }
            }
            SignatureBytes::V4a(der) => {
                let key = self.keys.v4a(akid, credential.secret).ok_or(Mismatch)?;
                let mut sts = Vec::with_capacity(128);
                write_string_to_sign(&mut sts, alg, auth.time.iso(), auth.scope(), creq_hash);
                if sigv4a::verify(&key.key, &sts, der) {
                    Ok(None)
                } else {
                    Err(Mismatch)
                }
            }
        }
    }

    /// The payload lines the request may have been signed with, most likely first.
    fn declared_payloads<'r>(
        &self,
        auth: &ParsedAuth<'r>,
    ) -> Result<[Option<Declared<'r>>; 2], Rejection> {
        if auth.location == Location::Query {
            // A presigned URL carries no payload hash: S3 signers sign UNSIGNED-PAYLOAD,
            // others the body's hash, and either may be used for any service. The second
            // guess is only tried when the first fails (for SigV4a, a second ECDSA check).
            let unsigned = Declared::Text(UNSIGNED_PAYLOAD, DeclaredKind::Unsigned);
            let (first, second) = if S3_SERVICES.contains(&auth.service()) {
                (unsigned, Declared::Absent)
            } else {
                (Declared::Absent, unsigned)
            };
            return Ok([Some(first), Some(second)]);
        }
        Ok([Some(self.declared_header(auth)?), None])
    }

    fn declared_header<'r>(&self, auth: &ParsedAuth<'r>) -> Result<Declared<'r>, Rejection> {
        let Some(raw) = header_text(auth.known.content_sha256, names::X_AMZ_CONTENT_SHA256)? else {
            return Ok(Declared::Absent);
        };
        let kind = match raw {
            UNSIGNED_PAYLOAD => DeclaredKind::Unsigned,
            STREAMING_V4 if auth.algorithm == Algorithm::V4 => DeclaredKind::Streaming,
            other => match decode_hex::<32>(other) {
                Some(h) => DeclaredKind::Hash(h),
                None => {
                    return Err(Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        format!(
                            "x-amz-content-sha256 '{}' is not supported: send the body's SHA-256 in \
                             hex, UNSIGNED-PAYLOAD (if allowed) or {STREAMING_V4}.",
                            printable(other)
                        ),
                    ));
                }
            },
        };
        Ok(Declared::Text(raw, kind))
    }
}

fn body_hash(body: Body<'_>) -> Option<[u8; 32]> {
    match body {
        Body::Bytes([]) => Some(EMPTY_SHA256),
        Body::Bytes(b) => Some(Sha256::digest(b).into()),
        Body::Sha256(h) => Some(h),
        Body::Streaming => None,
    }
}

/// What a payload line proves once the signature over it checks out.
#[derive(Clone, Copy)]
enum DeclaredKind {
    /// A declared hash, still to be compared with the body.
    Hash([u8; 32]),
    /// `UNSIGNED-PAYLOAD`, subject to the caller's policy.
    Unsigned,
    /// Chunk signatures follow in the body.
    Streaming,
    /// The body's own hash, computed here: signing it proved the body.
    Computed([u8; 32]),
}

/// What the request says about its payload hash.
enum Declared<'r> {
    /// A value for the canonical request's payload line, and what it means.
    Text(&'r str, DeclaredKind),
    /// Nothing: the verifier hashes the body itself.
    Absent,
}

impl<'r> Declared<'r> {
    /// The canonical request's payload line, and what it proves if it was signed.
    fn resolve(&self, body: Body<'_>) -> Result<(PayloadLine<'r>, DeclaredKind), Rejection> {
        match *self {
            Declared::Text(text, kind) => Ok((PayloadLine::Text(text), kind)),
            Declared::Absent => {
                let h = body_hash(body).ok_or_else(|| {
                    Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        "The body's hash cannot be checked on a streamed body: send \
                         x-amz-content-sha256 (the body's SHA-256, UNSIGNED-PAYLOAD or \
                         STREAMING-AWS4-HMAC-SHA256-PAYLOAD).",
                    )
                })?;
                Ok((PayloadLine::Hash(h), DeclaredKind::Computed(h)))
            }
        }
    }
}

/// 128 bits of the signature: an HMAC-SHA256 output is already uniform; an ECDSA
/// signature (DER, variable length) is hashed first.
fn replay_key(signature: &SignatureBytes) -> u128 {
    let first16 = |b: &[u8]| {
        let mut k = [0u8; 16];
        for (d, s) in k.iter_mut().zip(b) {
            *d = *s;
        }
        u128::from_be_bytes(k)
    };
    match signature {
        SignatureBytes::V4(sig) => first16(sig),
        SignatureBytes::V4a(der) => first16(&Sha256::digest(der)),
    }
}
