//! The verifier: parse the signature, hold it to the policy, then (given the caller's
//! secret from the identity stage) check it and the payload. Produces the [`Verified`]
//! proof the rest of the gateway takes.

use hmac::Mac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::auth::{self, Algorithm, Location, ParsedAuth, SignatureBytes, printable};
use super::canonical::{Canonical, PayloadLine, canonical_query, write_string_to_sign};
use super::chunked::{ChunkDecoder, EMPTY_SHA256_HEX, MacSink};
use super::encode::{decode_hex, hex};
use super::keys::KeyCache;
use super::request::S3_SERVICES;
use super::{AmzTime, Body, Code, Credential, Policy, Rejection, Request, SignatureDetail, sigv4a};

const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const STREAMING_V4: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

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
    /// The access key id that signed.
    pub access_key_id: String,
    /// SigV4 or SigV4a.
    pub algorithm: Algorithm,
    /// Header or presigned query.
    pub location: Location,
    /// The signed request time.
    pub time: AmzTime,
    /// The scope's region (`None` for SigV4a).
    pub region: Option<String>,
    /// The SigV4a region set.
    pub region_set: Option<String>,
    /// The scope's service.
    pub service: String,
    /// Signed header names, lower-case and sorted.
    pub signed_headers: Vec<String>,
    /// Whether a session token was signed with the request.
    pub has_session_token: bool,
    /// What was proven about the body.
    pub payload: Payload,
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

/// Whether a header name is a lower-case HTTP token, as `SignedHeaders` requires.
fn is_lower_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
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
        let auth = auth::parse(req, self.policy.limits.max_query_params)?;
        self.check_signed_headers(req, &auth)?;
        self.check_scope(&auth)?;
        self.check_time(&auth, now)?;
        Ok(auth)
    }

    fn check_signed_headers(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
    ) -> Result<(), Rejection> {
        let mut previous: Option<&str> = None;
        let mut count = 0;
        for name in auth.signed_headers() {
            count += 1;
            if count > self.policy.limits.max_signed_headers {
                return Err(Rejection::incomplete(format!(
                    "SignedHeaders names more than {} headers, the most this gateway accepts.",
                    self.policy.limits.max_signed_headers
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
            if !req.headers.contains_key(name) {
                return Err(Rejection::incomplete(format!(
                    "SignedHeaders names '{name}', but the request has no such header."
                )));
            }
        }
        let signed = |name: &str| auth.signed_headers().any(|s| s == name);
        if !signed("host") {
            return Err(Rejection::incomplete(
                "'Host' must be a signed header (list it in SignedHeaders).",
            ));
        }
        let mut must_sign_if_present: Vec<&str> =
            vec!["x-amz-security-token", "x-amz-content-sha256"];
        if auth.location == Location::Header {
            must_sign_if_present.push("x-amz-date");
            if auth.algorithm == Algorithm::V4a {
                must_sign_if_present.push("x-amz-region-set");
            }
        }
        must_sign_if_present.extend(
            self.policy
                .required_signed_headers
                .iter()
                .map(String::as_str),
        );
        for name in must_sign_if_present {
            if req.headers.contains_key(name) && !signed(name) {
                return Err(Rejection::incomplete(format!(
                    "The request carries '{name}' but does not sign it; add it to SignedHeaders."
                )));
            }
        }
        Ok(())
    }

    fn check_scope(&self, auth: &ParsedAuth<'_>) -> Result<(), Rejection> {
        if auth.scope_date() != auth.time.date() {
            return Err(Rejection::new(
                Code::SignatureDoesNotMatch,
                format!(
                    "Date in Credential scope ({}) does not match YYYYMMDD from the request date ({}); sign with \
                     a scope for the request's own date.",
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
        let server = AmzTime::from_unix(now);
        match auth.expires {
            None if (t - now).abs() > skew => Err(Rejection::new(
                Code::RequestTimeTooSkewed,
                format!(
                    "The difference between the request time ({}) and the server time ({}) is more than {skew} \
                     seconds; check the caller's clock.",
                    auth.time.iso(),
                    server.iso()
                ),
            )),
            Some(_) if t - now > skew => Err(Rejection::new(
                Code::RequestTimeTooSkewed,
                format!(
                    "The presigned URL's X-Amz-Date ({}) is in the future (server time {}); check the signer's clock.",
                    auth.time.iso(),
                    server.iso()
                ),
            )),
            Some(expires) if now > t + expires => Err(Rejection::new(
                Code::RequestExpired,
                format!(
                    "The presigned URL expired at {} (signed {} for {expires} seconds; server time {}); presign it again.",
                    AmzTime::from_unix(t + expires).iso(),
                    auth.time.iso(),
                    server.iso()
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
                    "The security token included in the request expired at {}; get new session credentials.",
                    AmzTime::from_unix(expires_at).iso()
                ),
            ));
        }
        let service = auth.service();
        let mut candidates = self.declared_payloads(req, auth)?.into_iter();
        let mut first_error = None;
        let (declared, canonical, signing_mac) = loop {
            let Some(declared) = candidates.next() else {
                return Err(first_error
                    .unwrap_or_else(|| Rejection::incomplete("No payload hash to check.")));
            };
            let canonical = self.prepare(req, auth, &declared)?;
            let creq_hash = canonical.hash();
            match self.check_signature(auth, credential, &creq_hash, || canonical.redacted_text()) {
                Ok(mac) => break (declared, canonical, mac),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        };
        let payload = match declared {
            Declared::Absent => match canonical.payload {
                PayloadLine::Hash(h) => Payload::Signed(h),
                PayloadLine::Text(_) => Payload::Unsigned,
            },
            Declared::Text(_, DeclaredKind::Hash(expected)) => {
                let actual = body_hash(req.body).ok_or_else(|| {
                    Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        "A body with a declared x-amz-content-sha256 must be received whole before it is forwarded.",
                    )
                })?;
                if !bool::from(actual.ct_eq(&expected)) {
                    return Err(Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        format!(
                            "The provided 'x-amz-content-sha256' header does not match what was computed: the body \
                             received hashes to {}. The body was altered or the hash was computed over other bytes.",
                            hex(&actual)
                        ),
                    ));
                }
                Payload::Signed(actual)
            }
            Declared::Text(_, DeclaredKind::Unsigned) => {
                let empty = match req.body {
                    Body::Bytes(b) => b.is_empty(),
                    Body::Sha256(h) => hex(&h) == EMPTY_SHA256_HEX,
                    Body::Streaming => false,
                };
                if !empty && !credential.allow_unsigned_payload {
                    return Err(Rejection::new(
                        Code::AccessDenied,
                        "This caller may not send UNSIGNED-PAYLOAD with a body: sign the payload (x-amz-content-sha256 \
                         with its SHA-256) or ask for unsigned payloads to be allowed for this caller.",
                    ));
                }
                Payload::Unsigned
            }
            Declared::Text(_, DeclaredKind::Streaming) => {
                let (SignatureBytes::V4(seed), Some(mac)) = (&auth.signature, signing_mac) else {
                    return Err(Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        "Chunk-signed bodies are supported with AWS4-HMAC-SHA256 only.",
                    ));
                };
                let expected_length = match req.headers.get("x-amz-decoded-content-length") {
                    None => None,
                    Some(v) => Some(
                        v.to_str()
                            .ok()
                            .and_then(|s| s.trim().parse::<u64>().ok())
                            .ok_or_else(|| {
                                Rejection::new(
                                    Code::IncompleteBody,
                                    "x-amz-decoded-content-length is not a whole number of bytes.",
                                )
                            })?,
                    ),
                };
                let mut decoder = ChunkDecoder::new(
                    mac,
                    auth.time.iso(),
                    auth.scope(),
                    *seed,
                    expected_length,
                    self.policy.limits.max_chunk_size,
                );
                match req.body {
                    Body::Streaming => Payload::Streaming(Box::new(decoder)),
                    Body::Bytes(b) => {
                        let mut out = Vec::with_capacity(b.len());
                        decoder.feed(b, &mut out)?;
                        decoder.finish()?;
                        Payload::Decoded(out)
                    }
                    Body::Sha256(_) => {
                        return Err(Rejection::new(
                            Code::IncompleteBody,
                            "A chunk-signed body must be given to the verifier as bytes or streamed.",
                        ));
                    }
                }
            }
        };
        Ok(Verified {
            access_key_id: auth.access_key_id().to_owned(),
            algorithm: auth.algorithm,
            location: auth.location,
            time: auth.time,
            region: auth.region().map(str::to_owned),
            region_set: auth.region_set().map(str::to_owned),
            service: service.to_owned(),
            signed_headers: auth.signed_headers().map(str::to_owned).collect(),
            has_session_token: auth.session_token.is_some(),
            payload,
        })
    }

    /// The canonical request and string to sign the gateway computes for a parsed
    /// request: what a signer must have produced. Needs no secret.
    pub fn canonical(
        &self,
        req: &Request<'_>,
        auth: &ParsedAuth<'_>,
    ) -> Result<SignatureDetail, Rejection> {
        let declared = self
            .declared_payloads(req, auth)?
            .into_iter()
            .next()
            .unwrap_or(Declared::Absent);
        let canonical = self.prepare(req, auth, &declared)?;
        let mut sts = Vec::with_capacity(128);
        write_string_to_sign(
            &mut sts,
            auth.algorithm.as_str(),
            auth.time.iso(),
            auth.scope(),
            &canonical.hash(),
        );
        Ok(SignatureDetail {
            canonical_request: canonical.text(),
            string_to_sign: String::from_utf8_lossy(&sts).into_owned(),
        })
    }

    fn s3_style(&self, service: &str) -> bool {
        self.policy.s3_style_services.iter().any(|s| s == service)
    }

    /// Reads the declared payload and assembles the canonical request.
    fn prepare<'a>(
        &self,
        req: &Request<'a>,
        auth: &'a ParsedAuth<'_>,
        declared: &Declared<'a>,
    ) -> Result<Canonical<'a>, Rejection> {
        let payload = match declared {
            Declared::Text(text, _) => PayloadLine::Text(text),
            Declared::Absent => PayloadLine::Hash(body_hash(req.body).ok_or_else(|| {
                Rejection::new(
                    Code::XAmzContentSHA256Mismatch,
                    "The body's hash cannot be checked on a streamed body without x-amz-content-sha256.",
                )
            })?),
        };
        let canonical = Canonical {
            method: req.method,
            path: req.path,
            s3_style: self.s3_style(auth.service()),
            query: canonical_query(req.query, auth.location == Location::Query),
            headers: req.headers,
            signed_headers: &auth.signed_headers,
            payload,
        };
        Ok(canonical)
    }

    /// Checks the request signature; for SigV4 returns the keyed MAC (chunk signatures
    /// chain from it).
    fn check_signature(
        &self,
        auth: &ParsedAuth<'_>,
        credential: &Credential<'_>,
        creq_hash: &[u8; 32],
        canonical_text: impl FnOnce() -> String,
    ) -> Result<Option<super::keys::HmacSha256>, Rejection> {
        let akid = auth.access_key_id();
        let alg = auth.algorithm.as_str();
        let (ok, mac) = match &auth.signature {
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
                    &mut MacSink(&mut mac),
                    alg,
                    auth.time.iso(),
                    auth.scope(),
                    creq_hash,
                );
                let computed: [u8; 32] = mac.finalize().into_bytes().into();
                (bool::from(computed.ct_eq(provided)), Some(key.mac.clone()))
            }
            SignatureBytes::V4a(der) => {
                let key = self.keys.v4a(akid, credential.secret).ok_or_else(|| {
                    Rejection::new(
                        Code::SignatureDoesNotMatch,
                        "No SigV4a key can be derived from this credential.",
                    )
                })?;
                let mut sts = Vec::with_capacity(128);
                write_string_to_sign(&mut sts, alg, auth.time.iso(), auth.scope(), creq_hash);
                (sigv4a::verify(&key.key, &sts, der), None)
            }
        };
        if ok {
            return Ok(mac);
        }
        let mut sts = Vec::with_capacity(128);
        write_string_to_sign(&mut sts, alg, auth.time.iso(), auth.scope(), creq_hash);
        Err(Rejection::signature_mismatch(
            canonical_text(),
            String::from_utf8_lossy(&sts).into_owned(),
        ))
    }

    /// The payload lines the request may have been signed with, most likely first.
    fn declared_payloads<'r>(
        &self,
        req: &Request<'r>,
        auth: &ParsedAuth<'_>,
    ) -> Result<Vec<Declared<'r>>, Rejection> {
        if auth.location == Location::Query {
            // A presigned URL carries no payload hash: S3 signers sign UNSIGNED-PAYLOAD,
            // others the body's hash, and some sign UNSIGNED-PAYLOAD for any service.
            let unsigned = Declared::Text(UNSIGNED_PAYLOAD, DeclaredKind::Unsigned);
            return Ok(if S3_SERVICES.contains(&auth.service()) {
                vec![unsigned, Declared::Absent]
            } else {
                vec![Declared::Absent, unsigned]
            });
        }
        self.declared_header(req, auth).map(|d| vec![d])
    }

    fn declared_header<'r>(
        &self,
        req: &Request<'r>,
        auth: &ParsedAuth<'_>,
    ) -> Result<Declared<'r>, Rejection> {
        let raw = {
            let mut values = req.headers.get_all("x-amz-content-sha256").iter();
            match (values.next(), values.next()) {
                (None, _) => return Ok(Declared::Absent),
                (Some(_), Some(_)) => {
                    return Err(Rejection::incomplete(
                        "The request carries more than one x-amz-content-sha256 header.",
                    ));
                }
                (Some(v), None) => v.to_str().map_err(|_| {
                    Rejection::new(
                        Code::XAmzContentSHA256Mismatch,
                        "x-amz-content-sha256 is not valid ASCII.",
                    )
                })?,
            }
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
                            "x-amz-content-sha256 '{}' is not supported: send the body's SHA-256 in hex, \
                             UNSIGNED-PAYLOAD (if allowed) or {STREAMING_V4}.",
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
        Body::Bytes(b) => Some(Sha256::digest(b).into()),
        Body::Sha256(h) => Some(h),
        Body::Streaming => None,
    }
}

enum DeclaredKind {
    Hash([u8; 32]),
    Unsigned,
    Streaming,
}

/// What the request says about its payload hash.
enum Declared<'r> {
    /// A value for the canonical request's payload line, and what it means.
    Text(&'r str, DeclaredKind),
    /// Nothing: the verifier hashes the body itself.
    Absent,
}
