//! Path patterns (`/orders`, `/orders/*`, `/orders/{id}/lines`, `/orders/**`)
//! and the normal form request paths are matched in.
//!
//! Request paths are matched segment by segment after percent-decoding, with
//! empty and `.` segments dropped and `..` applied, so `/orders//1/`,
//! `/orders/./1` and `/x/../orders/1` are all `/orders/1`. Paths whose
//! meaning depends on the server behind the gateway (an encoded `/` or `\`,
//! a raw `\`, a NUL, a bad escape) cannot be matched safely and are denied.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this (decoded) text.
    Literal(Box<[u8]>),
    /// `*` or `{name}`: any one segment.
    One,
    /// `**`, last only: any number of segments, none included.
    Rest,
}

/// A parsed path pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathPattern {
    text: Box<str>,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses a pattern; the error says why it could never match and what to
    /// write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path pattern `{text}` must start with `/`"));
        };
        if text.contains(['?', '#']) {
            return Err(format!(
                "path pattern `{text}` contains `?` or `#`; queries and fragments are not part \
                 of the matched path"
            ));
        }
        let mut segments = Vec::new();
        if rest.is_empty() {
            return Ok(Self {
                text: text.into(),
                segments,
            });
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "" if i == last => {
                    return Err(format!(
                        "path pattern `{text}` ends with `/`; request paths are matched without \
                         trailing slashes, so write `{}` (it also matches the path with a slash)",
                        text.trim_end_matches('/')
                    ));
                }
                "" => {
                    return Err(format!(
                        "path pattern `{text}` has an empty segment (`//`); empty segments are \
                         dropped from request paths, so this can never match"
                    ));
                }
                "." | ".." => {
                    return Err(format!(
                        "path pattern `{text}` has a `{part}` segment; dot segments are resolved \
                         in request paths, so this can never match"
                    ));
                }
                "**" if i == last => Segment::Rest,
                "**" => {
                    return Err(format!(
                        "path pattern `{text}`: `**` may only be the last segment"
                    ));
                }
                "*" => Segment::One,
                p if p.starts_with('{') && p.ends_with('}') => {
                    let name = p.get(1..p.len() - 1).unwrap_or("");
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        return Err(format!(
                            "path pattern `{text}`: `{p}` is not a parameter; write `{{name}}` \
                             with letters, digits, `_` or `-`"
                        ));
                    }
                    Segment::One
                }
                p if p.contains(['*', '{', '}']) => {
                    return Err(format!(
                        "path pattern `{text}`: `{p}` mixes text with `*`, `{{` or `}}`; a \
                         wildcard stands for a whole segment (`/orders/*`), not part of one"
                    ));
                }
                p => match decode_segment(p.as_bytes()) {
                    Ok(Some(bytes)) => Segment::Literal(bytes.into_owned().into_boxed_slice()),
                    Ok(None) | Err(_) => {
                        return Err(format!(
                            "path pattern `{text}`: segment `{p}` has a bad or ambiguous \
                             percent-escape (an encoded `/`, `\\` or NUL never matches)"
                        ));
                    }
                },
            };
            segments.push(seg);
        }
        Ok(Self {
            text: text.into(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Does the normalized path match? (The straightforward matcher; the
    /// compiled matrix uses a trie and is tested against this one.)
    pub fn matches(&self, path: &NormalPath<'_>) -> bool {
        let segs = path.segments();
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::One => {
                    if segs.get(i).is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => {
                    if segs.get(i).map(|s| s.as_ref()) != Some(&lit[..]) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == segs.len()
    }

    /// Does every path `self` matches also match `other`?
    pub fn covered_by(&self, other: &PathPattern) -> bool {
        let mut mine = self.segments.iter();
        for theirs in &other.segments {
            if *theirs == Segment::Rest {
                return true;
            }
            let Some(seg) = mine.next() else {
                return false;
            };
            match (theirs, seg) {
                (Segment::Rest, _) => return true,
                (Segment::One, Segment::One | Segment::Literal(_)) => {}
                (Segment::Literal(a), Segment::Literal(b)) if a == b => {}
                _ => return false,
            }
        }
        mine.next().is_none()
    }

    /// A concrete path this pattern matches, with `fill` for each wildcard
    /// segment (and nothing for `**`).
    pub fn example(&self, fill: &str) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(lit) => {
                    out.push('/');
                    out.push_str(&encode_segment(lit));
                }
                Segment::One => {
                    out.push('/');
                    out.push_str(fill);
                }
                Segment::Rest => {}
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// The most specific pattern matching exactly the paths both match, if any.
    pub fn meet(&self, other: &PathPattern) -> Option<PathPattern> {
        let (a, b) = (&self.segments, &other.segments);
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match (a.get(i), b.get(i)) {
                (None, None) => break,
                (Some(Segment::Rest), None) | (None, Some(Segment::Rest)) => break,
                (Some(Segment::Rest), Some(_)) => {
                    out.extend(b.get(i..).unwrap_or(&[]).iter().cloned());
                    break;
                }
                (Some(_), Some(Segment::Rest)) => {
                    out.extend(a.get(i..).unwrap_or(&[]).iter().cloned());
                    break;
                }
                (Some(Segment::One), Some(s)) | (Some(s), Some(Segment::One)) => {
                    out.push(s.clone())
                }
                (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x == y => {
                    out.push(Segment::Literal(x.clone()));
                }
                _ => return None,
            }
            i += 1;
        }
        Some(PathPattern::from_segments(out))
    }

    fn from_segments(segments: Vec<Segment>) -> Self {
        let mut text = String::new();
        for seg in &segments {
            text.push('/');
            match seg {
                Segment::Literal(lit) => text.push_str(&encode_segment(lit)),
                Segment::One => text.push('*'),
                Segment::Rest => text.push_str("**"),
            }
        }
        if text.is_empty() {
            text.push('/');
        }
        Self {
            text: text.into(),
            segments,
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a request path cannot be matched safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// `%2F`, `%5C`, `%00`, a raw `\` or NUL: servers disagree on what these mean.
    AmbiguousSeparator,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "the path does not start with `/`",
            Self::AmbiguousSeparator => {
                "the path contains an encoded `/` or `\\`, a raw `\\` or a NUL, which servers \
                 interpret differently; send the path without them"
            }
            Self::BadEscape => "the path has a `%` that is not followed by two hex digits",
        })
    }
}

/// A request path in normal form: decoded segments, no empty or dot segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalPath<'a> {
    segments: SmallVec<[Cow<'a, [u8]>; 8]>,
}

impl<'a> NormalPath<'a> {
    /// Normalizes a request path (anything from `?` on is ignored).
    pub fn parse(path: &'a str) -> Result<Self, PathError> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let Some(rest) = path.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        let mut segments: SmallVec<[Cow<'a, [u8]>; 8]> = SmallVec::new();
        for raw in rest.split('/') {
            let Some(seg) = decode_segment(raw.as_bytes())? else {
                return Err(PathError::AmbiguousSeparator);
            };
            match &*seg {
                b"" | b"." => {}
                b".." => {
                    segments.pop();
                }
                _ => segments.push(seg),
            }
        }
        Ok(Self { segments })
    }

    /// The decoded segments.
    pub fn segments(&self) -> &[Cow<'a, [u8]>] {
        &self.segments
    }
}

impl fmt::Display for NormalPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for seg in &self.segments {
            write!(f, "/{}", encode_segment(seg))?;
        }
        Ok(())
    }
}

/// Percent-decodes one segment. `Ok(None)` when it holds a separator or NUL
/// (raw or encoded), which cannot be matched safely.
fn decode_segment(raw: &[u8]) -> Result<Option<Cow<'_, [u8]>>, PathError> {
    if raw.iter().any(|&b| b == b'\\' || b == 0) {
        return Ok(None);
    }
    if !raw.contains(&b'%') {
        return Ok(Some(Cow::Borrowed(raw)));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&c| hex(c));
            let lo = raw.get(i + 2).and_then(|&c| hex(c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let byte = hi << 4 | lo;
            if matches!(byte, b'/' | b'\\' | 0) {
                return Ok(None);
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(Some(Cow::Owned(out)))
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Writes a decoded segment back in a readable, unambiguous form.
fn encode_segment(seg: &[u8]) -> String {
    let mut out = String::with_capacity(seg.len());
    for &b in seg {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        let p = PathPattern::parse(pattern).unwrap();
        p.matches(&NormalPath::parse(path).unwrap())
    }

    #[test]
    fn pattern_semantics() {
        assert!(m("/orders", "/orders"));
        assert!(m("/orders", "/orders/"));
        assert!(!m("/orders", "/orders/1"));
        assert!(m("/orders/*", "/orders/1"));
        assert!(!m("/orders/*", "/orders"));
        assert!(!m("/orders/*", "/orders/1/lines"));
        assert!(m("/orders/{id}/lines", "/orders/1/lines"));
        assert!(m("/orders/**", "/orders"));
        assert!(m("/orders/**", "/orders/1/lines/2"));
        assert!(!m("/orders/**", "/ordersx"));
        assert!(m("/", "/"));
        assert!(m("/**", "/anything/at/all"));
        assert!(m("/files/a%20b", "/files/a b"));
    }

    #[test]
    fn request_paths_are_normalized() {
        assert!(m("/orders/1", "/orders//1/"));
        assert!(m("/orders/1", "/x/../orders/./1"));
        assert!(m("/orders/1", "/orders/%31"));
        assert!(m("/admin", "/public/%2e%2e/admin"));
        assert!(m("/orders", "/../../orders"));
        assert!(m("/orders/1", "/orders/1?x=/admin"));
        assert_eq!(
            NormalPath::parse("/a%2Fb"),
            Err(PathError::AmbiguousSeparator)
        );
        assert_eq!(
            NormalPath::parse("/a%5cb"),
            Err(PathError::AmbiguousSeparator)
        );
        assert_eq!(
            NormalPath::parse("/a\\b"),
            Err(PathError::AmbiguousSeparator)
        );
        assert_eq!(NormalPath::parse("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(NormalPath::parse("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn patterns_that_cannot_match_are_refused() {
        for bad in [
            "orders", "/orders/", "/a//b", "/a/../b", "/a/./b", "/a/**/b", "/a?x=1", "/a#f",
            "/ord*", "/{}", "/{a b}", "/a%2Fb", "/a%zz",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage_and_meet() {
        let p = |s: &str| PathPattern::parse(s).unwrap();
        assert!(p("/a/b").covered_by(&p("/a/*")));
        assert!(p("/a/b/c").covered_by(&p("/a/**")));
        assert!(p("/a").covered_by(&p("/a/**")));
        assert!(p("/a/**").covered_by(&p("/**")));
        assert!(!p("/a/**").covered_by(&p("/a/*")));
        assert!(!p("/a/*").covered_by(&p("/a/b")));
        assert_eq!(p("/a/*/c").meet(&p("/a/b/*")).unwrap().as_str(), "/a/b/c");
        assert_eq!(p("/a/**").meet(&p("/*/b")).unwrap().as_str(), "/a/b");
        assert!(p("/a/*").meet(&p("/b/*")).is_none());
        assert_eq!(p("/a/{id}").example("x"), "/a/x");
    }
}
