//! Percent-encoding and path normalization as SigV4 defines them.
//!
//! Canonical pieces are written to a [`Sink`]: a hasher on the hot path (no buffer is
//! built), a `Vec<u8>` when the caller needs the text (a mismatch report, a test).

use sha2::Digest;

/// Where canonical bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for sha2::Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// The hex digit for a nibble (`n < 16`), in upper or lower case.
fn hex_digit(n: u8, upper: bool) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ if upper => b'A' + (n & 0xf) - 10,
        _ => b'a' + (n & 0xf) - 10,
    }
}

/// Collects small writes in a stack buffer and passes them on in large ones: a hasher
/// pays a fixed cost per call, and a canonical request is written in ~40 pieces.
pub(crate) struct Buffered<'a, S: Sink> {
    inner: &'a mut S,
    buf: [u8; 256],
    len: usize,
}

impl<'a, S: Sink> Buffered<'a, S> {
    pub(crate) fn new(inner: &'a mut S) -> Self {
        Self {
            inner,
            buf: [0; 256],
            len: 0,
        }
    }

    /// Passes on what is buffered.
    pub(crate) fn flush(&mut self) {
        self.inner.put(self.buf.get(..self.len).unwrap_or_default());
        self.len = 0;
    }
}

impl<S: Sink> Sink for Buffered<'_, S> {
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.flush();
            if bytes.len() > self.buf.len() {
                self.inner.put(bytes);
                return;
            }
        }
        if let Some(slot) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            copy_small(slot, bytes);
            self.len += bytes.len();
        }
    }
}

/// Copies a piece into a buffer of the same length: an inline loop for the few-byte pieces
/// that make up most of a canonical request (a call into `memcpy` costs more), `memcpy`
/// for longer ones.
pub(crate) fn copy_small(dst: &mut [u8], src: &[u8]) {
    if src.len() <= 32 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

impl<S: Sink> Drop for Buffered<'_, S> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Splits at every `sep`, an ASCII byte (so every piece ends on a char boundary), without
/// the per-match `memcmp` that `str::split(char)` pays: on the short strings of a
/// signature that call is most of the cost.
pub(crate) fn split_byte(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_byte(sep, r.as_bytes()) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `split_once` at an ASCII byte; see [`split_byte`].
pub(crate) fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = find_byte(sep, s.as_bytes())?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// The first `needle` in `haystack`: a plain loop for short strings, where `memchr`'s
/// set-up costs more than the search, `memchr` for long ones.
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    if haystack.len() < 32 {
        haystack.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, haystack)
    }
}

/// RFC 3986 unreserved characters, the only ones SigV4 leaves unencoded.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn put_escaped(out: &mut impl Sink, b: u8) {
    out.put(&[b'%', hex_digit(b >> 4, true), hex_digit(b & 0xf, true)]);
}

/// Writes `input` with every byte but `keep` ones percent-encoded (uppercase hex), in
/// runs so a hasher sees few calls.
fn encode_with(input: &[u8], out: &mut impl Sink, keep: impl Fn(&[u8], usize) -> bool) {
    let mut start = 0;
    for (i, &b) in input.iter().enumerate() {
        if !keep(input, i) {
            out.put(input.get(start..i).unwrap_or_default());
            put_escaped(out, b);
            start = i + 1;
        }
    }
    out.put(input.get(start..).unwrap_or_default());
}

/// Strict SigV4 encoding: everything but unreserved characters (and `/` when `keep_slash`).
/// Used for query keys and values and, on top of the path as received, for the
/// double-encoded paths of non-S3 services.
pub(crate) fn encode_strict(input: &[u8], keep_slash: bool, out: &mut impl Sink) {
    encode_with(input, out, |s, i| {
        s.get(i)
            .is_some_and(|&b| is_unreserved(b) || (keep_slash && b == b'/'))
    });
}

/// S3 paths are signed as sent, as the S3 signers do: every byte a request target can
/// carry (escapes, stray `%`, `{`, raw UTF-8, ...) stays as it is. Only a space or a control
/// byte, which no HTTP/1.1 request line can hold, is encoded, as a signer sending it
/// would have had to.
pub(crate) fn encode_s3_path(input: &[u8], out: &mut impl Sink) {
    encode_with(input, out, |s, i| {
        s.get(i).is_some_and(|&b| b > b' ' && b != 0x7f)
    });
}

/// Decodes `%XX` escapes and, as form encoding does, `+` as a space. Malformed escapes are
/// kept literally (so they are re-encoded as `%25..`), matching the AWS signers.
pub(crate) fn decode_query_component(input: &str) -> std::borrow::Cow<'_, [u8]> {
    let b = input.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return std::borrow::Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).and_then(|&h| hex_val(h));
                let lo = b.get(i + 2).and_then(|&l| hex_val(l));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(c),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Percent-decodes a query component and re-encodes it strictly: the canonical form of a
/// query key or value.
pub(crate) fn canonical_query_component(input: &str) -> Vec<u8> {
    let decoded = decode_query_component(input);
    let mut out = Vec::with_capacity(decoded.len() + 8);
    encode_strict(&decoded, false, &mut out);
    out
}

/// RFC 3986 §5.2.4 dot-segment removal plus collapsing of empty segments, as SigV4 does for
/// non-S3 services. Works on the path as received (escapes are not decoded).
pub(crate) fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.is_empty() {
        return "/".into();
    }
    let needs_work = !path.starts_with('/') || has_empty_or_dot_segment(path.as_bytes());
    if !needs_work {
        return path.into();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in split_byte(path, b'/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let trailing = ["/", "/.", "/.."].iter().any(|end| path.ends_with(end));
    if out.is_empty() || trailing {
        out.push('/');
    }
    out.into()
}

/// Whether a path has an empty, `.` or `..` segment, in one pass over its bytes.
fn has_empty_or_dot_segment(path: &[u8]) -> bool {
    // The length of the current segment, and whether it is all dots so far.
    let mut len = 0usize;
    let mut dots = true;
    for &b in path.iter().skip(1) {
        if b == b'/' {
            if len == 0 || (dots && len <= 2) {
                return true;
            }
            len = 0;
            dots = true;
        } else {
            len += 1;
            dots &= b == b'.';
        }
    }
    // The last segment: empty is a trailing slash (kept), dots are not.
    len > 0 && dots && len <= 2
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(hex_digit(b >> 4, false)));
        out.push(char::from(hex_digit(b & 0xf, false)));
    }
    out
}

/// Writes lowercase hex of `bytes` to a sink without allocating.
pub(crate) fn put_hex(out: &mut impl Sink, bytes: &[u8; 32]) {
    let mut buf = [0u8; 64];
    for (pair, &b) in buf.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = hex_digit(b >> 4, false);
            *lo = hex_digit(b & 0xf, false);
        }
    }
    out.put(&buf);
}

/// Decodes exactly `N` bytes of hex (either case).
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    // For a hex digit, the low nibble plus 9 for letters (bit 6 set) is its value; the
    // validity of every digit is folded into one flag, checked once at the end.
    let nibble = |c: u8| (c & 0x0f) + 9 * (c >> 6);
    let mut valid = true;
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        if let [h, l] = pair {
            valid &= h.is_ascii_hexdigit() & l.is_ascii_hexdigit();
            *o = nibble(*h) << 4 | nibble(*l);
        }
    }
    valid.then_some(out)
}

/// Decodes hex of any even length (either case).
pub(crate) fn decode_hex_vec(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|pair| match pair {
            [h, l] => Some(hex_val(*h)? << 4 | hex_val(*l)?),
            _ => None,
        })
        .collect()
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

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn buffered_sink_passes_everything_on_in_order() {
        let mut out = Vec::new();
        let pieces: Vec<Vec<u8>> = (0..60).map(|i| vec![i as u8; (i * 7) % 300]).collect();
        {
            let mut b = Buffered::new(&mut out);
            for p in &pieces {
                b.put(p);
            }
        }
        assert_eq!(out, pieces.concat());
    }

    #[test]
    fn find_byte_short_and_long() {
        let long = format!("{}={}", "a".repeat(40), "b".repeat(10));
        assert_eq!(find_byte(b'=', long.as_bytes()), Some(40));
        assert_eq!(find_byte(b'=', &long.as_bytes()[..40]), None);
        assert_eq!(find_byte(b'a', long.as_bytes()), Some(0));
        assert_eq!(find_byte(b'b', long.as_bytes()), Some(41));
    }

    #[test]
    fn byte_splitting_matches_str_split() {
        for text in ["", "a", ";", "a;b", ";a;;b;", "host;x-amz-date", "ሴ;ሴ;"] {
            assert_eq!(
                split_byte(text, b';').collect::<Vec<_>>(),
                text.split(';').collect::<Vec<_>>()
            );
            assert_eq!(split_once_byte(text, b';'), text.split_once(';'));
        }
    }

    #[test]
    fn strict_encoding() {
        assert_eq!(s(|o| encode_strict(b"/a b/%3A~", true, o)), "/a%20b/%253A~");
        assert_eq!(s(|o| encode_strict("ሴ".as_bytes(), false, o)), "%E1%88%B4");
        assert_eq!(s(|o| encode_strict(b"a/b", false, o)), "a%2Fb");
    }

    #[test]
    fn s3_encoding_keeps_escapes() {
        assert_eq!(
            s(|o| encode_s3_path(b"/a%3Ab/c d/%zz:@{}", o)),
            "/a%3Ab/c%20d/%zz:@{}"
        );
        assert_eq!(
            s(|o| encode_s3_path("/\u{1234}\t".as_bytes(), o)),
            "/\u{1234}%09"
        );
    }

    #[test]
    fn query_components() {
        assert_eq!(canonical_query_component("%E1%88%B4"), b"%E1%88%B4");
        assert_eq!(canonical_query_component("ሴ"), b"%E1%88%B4");
        assert_eq!(canonical_query_component("a+b%20c"), b"a%20b%20c");
        assert_eq!(canonical_query_component("%zz%4"), b"%25zz%254");
        assert_eq!(canonical_query_component("%e1%88%b4"), b"%E1%88%B4");
    }

    #[test]
    fn normalization() {
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/foo/bar/.", "/foo/bar/"),
            ("/foo/bar/..", "/foo/"),
            ("/../foo", "/foo"),
            ("foo", "/foo"),
            ("/a.b/c..d", "/a.b/c..d"),
            ("/...", "/..."),
            ("/a/", "/a/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a//b", "/a/b"),
            ("/./a", "/a"),
            ("/a/.b/..c", "/a/.b/..c"),
        ] {
            assert_eq!(normalize_path(input), want, "{input}");
        }
    }

    #[test]
    fn hex_round_trip() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i * 37) as u8);
        let h = hex(&bytes);
        assert_eq!(decode_hex::<32>(&h), Some(bytes));
        assert_eq!(decode_hex::<32>(&h.to_uppercase()), Some(bytes));
        assert_eq!(s(|o| put_hex(o, &bytes)), h);
        assert_eq!(decode_hex::<32>("zz"), None);
        assert_eq!(decode_hex_vec("0aFF"), Some(vec![10, 255]));
        assert_eq!(decode_hex_vec("0aF"), None);
    }
}
