//! The canonical request and the string to sign, written to a [`Sink`] so the hot path
//! hashes them without building them.

use std::borrow::Cow;

use super::sha256::Sha256Sink;

use super::auth::{ParsedAuth, Q_SIGNATURE, names, query_pairs};
use super::encode::{
    Sink, canonical_query_component, encode_s3_path, encode_strict, is_unreserved, normalize_path,
    put_hex,
};

/// The payload line of a canonical request.
#[derive(Clone, Copy)]
pub(crate) enum PayloadLine<'a> {
    /// As the request declared it (`x-amz-content-sha256`, `UNSIGNED-PAYLOAD`).
    Text(&'a str),
    /// The hash of the body, computed here.
    Hash([u8; 32]),
}

/// What stands in for the session token in reports.
const REDACTED: &[u8] = b"<redacted>";

/// Canonical query pairs: encoded key and value.
pub(crate) type QueryPairs<'a> = smallvec::SmallVec<[QueryPair<'a>; 6]>;

/// One canonical query pair: encoded key and value.
pub(crate) type QueryPair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The parts of a canonical request that are computed once per verification.
pub(crate) struct Canonical<'a, 'r> {
    pub method: &'a str,
    pub path: &'a str,
    pub s3_style: bool,
    /// Sorted, encoded query pairs, built once per verification.
    pub query: &'a [QueryPair<'a>],
    /// The signature's signed headers and their values, gathered at parse time.
    pub auth: &'a ParsedAuth<'r>,
    pub payload: PayloadLine<'a>,
}

fn component(raw: &str) -> Cow<'_, [u8]> {
    if raw.bytes().all(is_unreserved) {
        Cow::Borrowed(raw.as_bytes())
    } else {
        Cow::Owned(canonical_query_component(raw))
    }
}

/// The query's canonical `(key, value)` pairs, sorted by key then value; presigned
/// requests leave out their own signature.
pub(crate) fn canonical_query(query: &str, presigned: bool) -> QueryPairs<'_> {
    if query.is_empty() {
        return QueryPairs::new();
    }
    let mut pairs: QueryPairs<'_> = query_pairs(query)
        .filter(|(k, _)| !(presigned && *k == Q_SIGNATURE))
        .map(|(k, v)| (component(k), component(v)))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// Writes a header value trimmed, with runs of spaces collapsed to one.
fn put_header_value(out: &mut impl Sink, value: &[u8]) {
    let value = value.trim_ascii();
    let mut start = 0;
    let mut prev_space = false;
    for (i, &b) in value.iter().enumerate() {
        if b == b' ' && prev_space {
            out.put(value.get(start..i).unwrap_or_default());
            start = i + 1;
        }
        prev_space = b == b' ';
    }
    out.put(value.get(start..).unwrap_or_default());
}

impl Canonical<'_, '_> {
    /// Writes the canonical request.
    pub fn write(&self, out: &mut impl Sink) {
        self.write_with(out, false);
    }

    /// Writes the canonical request; with `redact`, the session token's value is replaced
    /// so the text can go into an error body or a log.
    fn write_with(&self, out: &mut impl Sink, redact: bool) {
        out.put(self.method.as_bytes());
        out.put(b"\n");
        if self.s3_style {
            encode_s3_path(
                if self.path.is_empty() {
                    b"/"
                } else {
                    self.path.as_bytes()
                },
                out,
            );
        } else {
            encode_strict(normalize_path(self.path).as_bytes(), true, out);
        }
        out.put(b"\n");
        for (i, (k, v)) in self.query.iter().enumerate() {
            if i > 0 {
                out.put(b"&");
            }
            out.put(k);
            out.put(b"=");
            if redact && &**k == b"X-Amz-Security-Token" {
                out.put(REDACTED);
            } else {
                out.put(v);
            }
        }
        out.put(b"\n");
        let mut values = self.auth.signed_values.iter().peekable();
        for (i, name) in self.auth.signed_headers().enumerate() {
            out.put(name.as_bytes());
            out.put(b":");
            let hide = redact && name == names::X_AMZ_SECURITY_TOKEN;
            if hide {
                out.put(REDACTED);
            }
            let mut first = true;
            while let Some((_, value)) = values.next_if(|(index, _)| *index == i) {
                if !hide {
                    if !first {
                        out.put(b",");
                    }
                    put_header_value(out, value.as_bytes());
                }
                first = false;
            }
            out.put(b"\n");
        }
        out.put(b"\n");
        out.put(self.auth.signed_headers.as_bytes());
        out.put(b"\n");
        match self.payload {
            PayloadLine::Text(t) => out.put(t.as_bytes()),
            PayloadLine::Hash(h) => put_hex(out, &h),
        }
    }

    /// SHA-256 of the canonical request.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256Sink::new();
        self.write(&mut h);
        h.finish()
    }

    /// The canonical request as text.
    pub fn text(&self) -> String {
        let mut v = Vec::with_capacity(256);
        self.write(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The canonical request as text, session token redacted, for a mismatch report.
    pub fn redacted_text(&self) -> String {
        let mut v = Vec::with_capacity(256);
        self.write_with(&mut v, true);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// Writes `ALGORITHM\nTIME\nSCOPE\nHEX(hash)`.
pub(crate) fn write_string_to_sign(
    out: &mut impl Sink,
    algorithm: &str,
    time_iso: &str,
    scope: &str,
    creq_hash: &[u8; 32],
) {
    out.put(algorithm.as_bytes());
    out.put(b"\n");
    out.put(time_iso.as_bytes());
    out.put(b"\n");
    out.put(scope.as_bytes());
    out.put(b"\n");
    put_hex(out, creq_hash);
}
