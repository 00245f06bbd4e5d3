//! Parsing the signature out of a request: the `Authorization` header or the presigned
//! query parameters. Only the structure is checked here; nothing needs the secret yet.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use super::encode::{
    decode_hex, decode_hex_vec, decode_query_component, split_byte, split_once_byte,
};
use super::{AmzTime, Rejection, Request};

/// The signing algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// SigV4, `AWS4-HMAC-SHA256`.
    V4,
    /// SigV4a, `AWS4-ECDSA-P256-SHA256`.
    V4a,
}

impl Algorithm {
    /// The name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::V4 => "AWS4-HMAC-SHA256",
            Algorithm::V4a => "AWS4-ECDSA-P256-SHA256",
        }
    }

    fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "AWS4-HMAC-SHA256" => Ok(Algorithm::V4),
            "AWS4-ECDSA-P256-SHA256" => Ok(Algorithm::V4a),
            other => Err(Rejection::incomplete(format!(
                "Unsupported signing algorithm '{}': sign with AWS Signature Version 4 (AWS4-HMAC-SHA256) \
                 or SigV4a (AWS4-ECDSA-P256-SHA256).",
                printable(other)
            ))),
        }
    }
}

/// Where the signature was carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The `Authorization` header.
    Header,
    /// Presigned query parameters.
    Query,
}

/// The signature as sent.
#[derive(Clone, Debug)]
pub(crate) enum SignatureBytes {
    V4([u8; 32]),
    V4a(Vec<u8>),
}

/// A request's signature, parsed and checked for shape: who claims to have signed it, for
/// which scope and time, over which headers.
#[derive(Clone, Debug)]
pub struct ParsedAuth<'r> {
    pub(crate) algorithm: Algorithm,
    pub(crate) location: Location,
    /// `AKID/date/region/service/aws4_request`, as sent (decoded when presigned).
    pub(crate) credential: CredentialString<Cow<'r, str>>,
    pub(crate) region_set: Option<Cow<'r, str>>,
    pub(crate) signed_headers: Cow<'r, str>,
    /// Byte ranges of the names in `signed_headers`, split once by the verifier.
    pub(crate) signed_names: SmallVec<[(u32, u32); 8]>,
    /// The values of the signed headers: index into `signed_names`, then request order.
    pub(crate) signed_values: SmallVec<[(usize, &'r HeaderValue); 8]>,
    pub(crate) signature: SignatureBytes,
    pub(crate) time: AmzTime,
    pub(crate) expires: Option<i64>,
    pub(crate) session_token: Option<Cow<'r, str>>,
    /// The headers read by name.
    pub(crate) known: KnownHeaders<'r>,
}

/// A credential string, `AKID/date/region/service/aws4_request` (SigV4a: no region),
/// split once into its parts.
#[derive(Clone, Debug)]
pub struct CredentialString<S> {
    text: S,
    parts: CredentialParts,
}

impl<S: AsRef<str>> CredentialString<S> {
    fn part(&self, range: std::ops::Range<usize>) -> &str {
        self.text.as_ref().get(range).unwrap_or("")
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        self.part(0..self.parts.akid_end)
    }

    /// `date/region/service/aws4_request` (SigV4a: `date/service/aws4_request`).
    pub fn scope(&self) -> &str {
        self.part(self.parts.akid_end + 1..self.parts.end)
    }

    /// The date of the scope, `YYYYMMDD`.
    pub fn scope_date(&self) -> &str {
        self.part(self.parts.date.clone())
    }

    /// The region of the scope (`None` for SigV4a, which signs a region set).
    pub fn region(&self) -> Option<&str> {
        self.parts.region.clone().map(|r| self.part(r))
    }

    /// The service of the scope.
    pub fn service(&self) -> &str {
        self.part(self.parts.service.clone())
    }

    /// An owned copy followed by `suffix` in the same allocation, for the proof the
    /// verifier hands on; [`Self::suffix`] reads it back.
    pub(crate) fn to_owned_with(&self, suffix: &str) -> CredentialString<String> {
        let credential = self.part(0..self.parts.end);
        let mut text = String::with_capacity(credential.len() + suffix.len());
        text.push_str(credential);
        text.push_str(suffix);
        CredentialString {
            text,
            parts: self.parts.clone(),
        }
    }

    /// What follows the credential in an owned copy.
    pub(crate) fn suffix(&self) -> &str {
        self.part(self.parts.end..self.text.as_ref().len())
    }
}

impl<'r> ParsedAuth<'r> {
    /// The access key id the caller claims.
    pub fn access_key_id(&self) -> &str {
        self.credential.access_key_id()
    }

    /// `date/region/service/aws4_request` (SigV4a: `date/service/aws4_request`).
    pub fn scope(&self) -> &str {
        self.credential.scope()
    }

    /// The date of the credential scope, `YYYYMMDD`.
    pub fn scope_date(&self) -> &str {
        self.credential.scope_date()
    }

    /// The region of the credential scope (`None` for SigV4a, which signs a region set).
    pub fn region(&self) -> Option<&str> {
        self.credential.region()
    }

    /// The SigV4a region set, as signed.
    pub fn region_set(&self) -> Option<&str> {
        self.region_set.as_deref()
    }

    /// The session token, if the caller sent one (STS credentials).
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Header or query signing.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The request time the caller signed.
    pub fn time(&self) -> AmzTime {
        self.time
    }

    /// The service of the credential scope.
    pub fn service(&self) -> &str {
        self.credential.service()
    }

    /// The signed header names, in order.
    pub fn signed_headers(&self) -> impl Iterator<Item = &str> {
        self.signed_names.iter().map(|&(start, end)| {
            self.signed_headers
                .get(start as usize..end as usize)
                .unwrap_or("")
        })
    }
}

/// The `x-amz-*` header names the core reads or requires to be signed.
pub(crate) mod names {
    pub(crate) const X_AMZ_DATE: &str = "x-amz-date";
    pub(crate) const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
    pub(crate) const X_AMZ_REGION_SET: &str = "x-amz-region-set";
    pub(crate) const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
    pub(crate) const X_AMZ_DECODED_CONTENT_LENGTH: &str = "x-amz-decoded-content-length";
}

/// Presigned-query parameter names (case-sensitive, as AWS treats them).
const Q_ALGORITHM: &str = "X-Amz-Algorithm";
const Q_CREDENTIAL: &str = "X-Amz-Credential";
const Q_DATE: &str = "X-Amz-Date";
const Q_EXPIRES: &str = "X-Amz-Expires";
const Q_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
/// The query parameter carrying a presigned signature; left out of the canonical query.
pub(crate) const Q_SIGNATURE: &str = "X-Amz-Signature";

/// Splits a raw query into `(key, value)` pairs as sent, skipping empty pieces.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    split_byte(query, b'&')
        .filter(|p| !p.is_empty())
        .map(|p| split_once_byte(p, b'=').unwrap_or((p, "")))
}

/// Shows at most 64 characters of caller input, escaped, in an error message.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push_str("...");
    }
    out
}

/// The headers the core reads by name, found in one pass over the request's headers
/// (a pass is cheaper than a hash look-up per name). Each may appear at most once.
#[derive(Clone, Debug, Default)]
pub(crate) struct KnownHeaders<'r> {
    pub(crate) authorization: Option<&'r HeaderValue>,
    pub(crate) date: Option<&'r HeaderValue>,
    pub(crate) x_amz_date: Option<&'r HeaderValue>,
    pub(crate) security_token: Option<&'r HeaderValue>,
    pub(crate) region_set: Option<&'r HeaderValue>,
    pub(crate) content_sha256: Option<&'r HeaderValue>,
    pub(crate) decoded_content_length: Option<&'r HeaderValue>,
}

impl<'r> KnownHeaders<'r> {
    pub(crate) fn scan(headers: &'r HeaderMap) -> Result<Self, Rejection> {
        let mut known = Self::default();
        for (name, value) in headers {
            let slot = if name == http::header::AUTHORIZATION {
                &mut known.authorization
            } else if name == http::header::DATE {
                &mut known.date
            } else if name.as_str().starts_with("x-amz-") {
                match name.as_str() {
                    names::X_AMZ_DATE => &mut known.x_amz_date,
                    names::X_AMZ_SECURITY_TOKEN => &mut known.security_token,
                    names::X_AMZ_REGION_SET => &mut known.region_set,
                    names::X_AMZ_CONTENT_SHA256 => &mut known.content_sha256,
                    names::X_AMZ_DECODED_CONTENT_LENGTH => &mut known.decoded_content_length,
                    _ => continue,
                }
            } else {
                continue;
            };
            if slot.replace(value).is_some() {
                return Err(Rejection::incomplete(format!(
                    "The request carries more than one '{name}' header; send exactly one."
                )));
            }
        }
        Ok(known)
    }
}

/// A known header's value as text, trimmed.
pub(crate) fn header_text<'h>(
    value: Option<&'h HeaderValue>,
    name: &str,
) -> Result<Option<&'h str>, Rejection> {
    value
        .map(|v| {
            // `from_utf8` checks many bytes at a time where `HeaderValue::to_str` checks one;
            // a header value holds no control bytes, so valid UTF-8 is all that is left.
            std::str::from_utf8(v.as_bytes())
                .map(str::trim)
                .map_err(|_| {
                    Rejection::incomplete(format!("The '{name}' header is not valid UTF-8."))
                })
        })
        .transpose()
}

struct PresignParams<'r> {
    algorithm: Option<Cow<'r, str>>,
    credential: Option<Cow<'r, str>>,
    date: Option<Cow<'r, str>>,
    expires: Option<Cow<'r, str>>,
    signed_headers: Option<Cow<'r, str>>,
    signature: Option<Cow<'r, str>>,
    token: Option<Cow<'r, str>>,
    region_set: Option<Cow<'r, str>>,
}

fn decoded_str(raw: &str) -> Result<Cow<'_, str>, Rejection> {
    match decode_query_component(raw) {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(raw)),
        Cow::Owned(bytes) => String::from_utf8(bytes).map(Cow::Owned).map_err(|_| {
            Rejection::incomplete("A presigned query parameter is not valid UTF-8 once decoded.")
        }),
    }
}

fn presign_params(query: &str) -> Result<Option<PresignParams<'_>>, Rejection> {
    // Every presign key is `X-Amz-...`, possibly percent-encoded: a query with neither
    // "Amz" nor a `%` carries none (the usual case under header auth).
    let q = query.as_bytes();
    if memchr::memchr(b'%', q).is_none() && memchr::memmem::find(q, b"Amz").is_none() {
        return Ok(None);
    }
    let mut p = PresignParams {
        algorithm: None,
        credential: None,
        date: None,
        expires: None,
        signed_headers: None,
        signature: None,
        token: None,
        region_set: None,
    };
    let mut any = false;
    for (raw_key, raw_value) in query_pairs(query) {
        let key = decode_query_component(raw_key);
        let slot = match &*key {
            b"X-Amz-Algorithm" => &mut p.algorithm,
            b"X-Amz-Credential" => &mut p.credential,
            b"X-Amz-Date" => &mut p.date,
            b"X-Amz-Expires" => &mut p.expires,
            b"X-Amz-SignedHeaders" => &mut p.signed_headers,
            b"X-Amz-Signature" => &mut p.signature,
            b"X-Amz-Security-Token" => &mut p.token,
            b"X-Amz-Region-Set" => &mut p.region_set,
            _ => continue,
        };
        if slot.is_some() {
            return Err(Rejection::incomplete(format!(
                "The query parameter '{}' appears more than once; a presigned URL carries each X-Amz-* parameter once.",
                String::from_utf8_lossy(&key)
            )));
        }
        *slot = Some(decoded_str(raw_value)?);
        any = true;
    }
    let presigned = p.algorithm.is_some() || p.credential.is_some() || p.signature.is_some();
    Ok((any && presigned).then_some(p))
}

fn require<'a>(value: Option<Cow<'a, str>>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    value.ok_or_else(|| {
        Rejection::incomplete(format!(
            "The presigned URL lacks the '{name}' query parameter; presign the URL again."
        ))
    })
}

/// Parses the signature out of `req`, from the `Authorization` header or the presigned
/// query. Rejects requests with neither, with both, or with a malformed one.
pub(crate) fn parse<'r>(
    req: &Request<'r>,
    max_query_params: usize,
) -> Result<ParsedAuth<'r>, Rejection> {
    let known = KnownHeaders::scan(req.headers)?;
    let header = header_text(known.authorization, "authorization")?;
    // Bound the work any query can cause before anything walks it.
    if memchr::memchr_iter(b'&', req.query.as_bytes()).count() >= max_query_params {
        return Err(Rejection::incomplete(format!(
            "The query string has more than {max_query_params} parameters, the most this gateway accepts."
        )));
    }
    let presign = presign_params(req.query)?;
    match (header, presign) {
        (Some(_), Some(_)) => Err(Rejection::incomplete(
            "The request is signed both in the Authorization header and in the query string; use only one.",
        )),
        (None, None) => Err(Rejection::new(
            super::Code::MissingAuthenticationToken,
            "Missing Authentication Token: sign the request with AWS Signature Version 4 \
             (an Authorization header or a presigned URL).",
        )),
        (Some(h), None) => parse_header(known, h),
        (None, Some(p)) => {
            if p.token.is_some() && known.security_token.is_some() {
                return Err(Rejection::incomplete(
                    "The session token is sent twice, as X-Amz-Security-Token in the query and as a header; send it once.",
                ));
            }
            parse_presigned(known, p)
        }
    }
}

fn parse_header<'r>(known: KnownHeaders<'r>, value: &'r str) -> Result<ParsedAuth<'r>, Rejection> {
    let (algorithm, rest) = split_once_byte(value, b' ').unwrap_or((value, ""));
    let algorithm = Algorithm::parse(algorithm)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in split_byte(rest, b',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, val) = split_once_byte(part, b'=').unwrap_or((part, ""));
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(Rejection::incomplete(format!(
                    "Unknown component '{}' in the Authorization header; expected Credential, SignedHeaders and Signature.",
                    printable(other)
                )));
            }
        };
        if slot.replace(val).is_some() {
            return Err(Rejection::incomplete(format!(
                "The Authorization header repeats '{name}'."
            )));
        }
    }
    let missing = |name: &str| {
        Rejection::incomplete(format!(
            "Authorization header requires '{name}' parameter. Authorization={}",
            printable(value)
        ))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;

    let time = match header_text(known.x_amz_date, names::X_AMZ_DATE)? {
        Some(v) => AmzTime::parse_iso(v).ok_or_else(|| {
            Rejection::incomplete(format!(
                "X-Amz-Date '{}' is not in the form YYYYMMDD'T'HHMMSS'Z'.",
                printable(v)
            ))
        })?,
        None => match header_text(known.date, "date")? {
            Some(v) => AmzTime::parse_http_date(v).ok_or_else(|| {
                Rejection::incomplete(format!(
                    "The Date header '{}' is not a valid HTTP date.",
                    printable(v)
                ))
            })?,
            None => {
                return Err(Rejection::incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                ));
            }
        },
    };
    let session_token =
        header_text(known.security_token, names::X_AMZ_SECURITY_TOKEN)?.map(Cow::Borrowed);
    let region_set = header_text(known.region_set, names::X_AMZ_REGION_SET)?.map(Cow::Borrowed);
    build(
        known,
        algorithm,
        Location::Header,
        Cow::Borrowed(credential),
        Cow::Borrowed(signed_headers),
        signature,
        time,
        None,
        session_token,
        region_set,
    )
}

fn parse_presigned<'r>(
    known: KnownHeaders<'r>,
    p: PresignParams<'r>,
) -> Result<ParsedAuth<'r>, Rejection> {
    let algorithm = Algorithm::parse(&require(p.algorithm, Q_ALGORITHM)?)?;
    let credential = require(p.credential, Q_CREDENTIAL)?;
    let date = require(p.date, Q_DATE)?;
    let expires = require(p.expires, Q_EXPIRES)?;
    let signed_headers = require(p.signed_headers, Q_SIGNED_HEADERS)?;
    let signature = require(p.signature, Q_SIGNATURE)?;
    let time = AmzTime::parse_iso(&date).ok_or_else(|| {
        Rejection::incomplete(format!(
            "X-Amz-Date '{}' is not in the form YYYYMMDD'T'HHMMSS'Z'.",
            printable(&date)
        ))
    })?;
    let expires = match expires.parse::<i64>() {
        Ok(e) if (1..=604_800).contains(&e) && expires.bytes().all(|b| b.is_ascii_digit()) => e,
        _ => {
            return Err(Rejection::incomplete(format!(
                "X-Amz-Expires '{}' must be a whole number of seconds from 1 to 604800 (7 days).",
                printable(&expires)
            )));
        }
    };
    build(
        known,
        algorithm,
        Location::Query,
        credential,
        signed_headers,
        &signature,
        time,
        Some(expires),
        p.token,
        p.region_set,
    )
}

#[allow(clippy::too_many_arguments)]
fn build<'r>(
    known: KnownHeaders<'r>,
    algorithm: Algorithm,
    location: Location,
    credential: Cow<'r, str>,
    signed_headers: Cow<'r, str>,
    signature: &str,
    time: AmzTime,
    expires: Option<i64>,
    session_token: Option<Cow<'r, str>>,
    region_set: Option<Cow<'r, str>>,
) -> Result<ParsedAuth<'r>, Rejection> {
    let signature = match algorithm {
        Algorithm::V4 => SignatureBytes::V4(decode_hex::<32>(signature).ok_or_else(|| {
            Rejection::incomplete("The Signature must be 64 hexadecimal digits (HMAC-SHA256).")
        })?),
        Algorithm::V4a => {
            let der = (signature.len() <= 160)
                .then(|| decode_hex_vec(signature))
                .flatten()
                .ok_or_else(|| {
                    Rejection::incomplete(
                        "The Signature must be a hex-encoded DER ECDSA P-256 signature.",
                    )
                })?;
            SignatureBytes::V4a(der)
        }
    };
    if algorithm == Algorithm::V4a && region_set.as_deref().is_none_or(str::is_empty) {
        return Err(Rejection::incomplete(
            "SigV4a requests must carry the region set in X-Amz-Region-Set (header or query parameter).",
        ));
    }
    let parts = split_credential(&credential, algorithm)?;
    Ok(ParsedAuth {
        algorithm,
        location,
        credential: CredentialString {
            text: credential,
            parts,
        },
        region_set,
        signed_headers,
        signed_names: SmallVec::new(),
        signed_values: SmallVec::new(),
        known,
        signature,
        time,
        expires,
        session_token,
    })
}

/// Byte ranges of the credential's pieces.
#[derive(Clone, Debug)]
pub(crate) struct CredentialParts {
    akid_end: usize,
    /// Where the credential ends: an owned copy may carry more text after it.
    end: usize,
    date: std::ops::Range<usize>,
    region: Option<std::ops::Range<usize>>,
    service: std::ops::Range<usize>,
}

/// Splits `AKID/date/region/service/aws4_request` (SigV4a: no region) into ranges.
fn split_credential(credential: &str, algorithm: Algorithm) -> Result<CredentialParts, Rejection> {
    let expected = match algorithm {
        Algorithm::V4 => "<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request",
        Algorithm::V4a => "<access key id>/<YYYYMMDD>/<service>/aws4_request",
    };
    let bad = || {
        Rejection::incomplete(format!(
            "Credential '{}' is malformed; expected {expected}.",
            printable(credential)
        ))
    };
    let akid_end = credential.bytes().position(|b| b == b'/').ok_or_else(bad)?;
    // At most four pieces after the key id; a fifth means the shape is wrong.
    let mut ranges: SmallVec<[std::ops::Range<usize>; 5]> = SmallVec::new();
    let mut start = akid_end + 1;
    for piece in split_byte(credential.get(start..).ok_or_else(bad)?, b'/').take(5) {
        ranges.push(start..start + piece.len());
        start += piece.len() + 1;
    }
    let text = |r: &std::ops::Range<usize>| credential.get(r.clone()).unwrap_or("");
    let ok_date = |r: &std::ops::Range<usize>| {
        text(r).len() == 8 && text(r).bytes().all(|b| b.is_ascii_digit())
    };
    let parts = match (algorithm, ranges.as_slice()) {
        (Algorithm::V4, [date, region, service, terminal]) => CredentialParts {
            akid_end,
            end: credential.len(),
            date: date.clone(),
            region: Some(region.clone()),
            service: service.clone(),
        }
        .checked(ok_date(date) && !region.is_empty() && text(terminal) == "aws4_request"),
        (Algorithm::V4a, [date, service, terminal]) => CredentialParts {
            akid_end,
            end: credential.len(),
            date: date.clone(),
            region: None,
            service: service.clone(),
        }
        .checked(ok_date(date) && text(terminal) == "aws4_request"),
        _ => None,
    };
    parts
        .filter(|p| akid_end > 0 && !p.service.is_empty())
        .ok_or_else(bad)
}

impl CredentialParts {
    fn checked(self, ok: bool) -> Option<Self> {
        ok.then_some(self)
    }
}
