//! Small reference implementations the focused targets compare the gateway against,
//! written from the SigV4 and RFC 3986 texts rather than from the gateway's code.

use gateway::sigv4::{Algorithm, Location, ParsedAuth};

/// RFC 3986 unreserved characters.
pub fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// SigV4 percent-encoding: every byte but the unreserved ones as `%XX`, uppercase hex.
pub fn encode_strict(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Form decoding as the AWS signers do it: `%XX` (either case) and `+` as a space; a
/// malformed escape stays as it is.
pub fn form_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Whether `s` holds only unreserved characters and `%XX` escapes with uppercase hex
/// (and `/` when `slash`).
pub fn is_strictly_encoded(s: &str, slash: bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let ok =
                |x: Option<&u8>| x.is_some_and(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h));
            if !(ok(b.get(i + 1)) && ok(b.get(i + 2))) {
                return false;
            }
            i += 3;
        } else if unreserved(c) || (slash && c == b'/') {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// What a parsed signature says, through the public accessors only: two parses of
/// equivalent requests must say the same.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub access_key_id: String,
    pub scope: String,
    pub scope_date: String,
    pub region: Option<String>,
    pub region_set: Option<String>,
    pub session_token: Option<String>,
    pub algorithm: Algorithm,
    pub location: Location,
    pub time: String,
    pub service: String,
    pub signed_headers: Vec<String>,
}

impl Summary {
    pub fn of(a: &ParsedAuth<'_>) -> Summary {
        Summary {
            access_key_id: a.access_key_id().to_owned(),
            scope: a.scope().to_owned(),
            scope_date: a.scope_date().to_owned(),
            region: a.region().map(str::to_owned),
            region_set: a.region_set().map(str::to_owned),
            session_token: a.session_token().map(str::to_owned),
            algorithm: a.algorithm(),
            location: a.location(),
            time: a.time().iso().to_owned(),
            service: a.service().to_owned(),
            signed_headers: a.signed_headers().map(str::to_owned).collect(),
        }
    }
}
