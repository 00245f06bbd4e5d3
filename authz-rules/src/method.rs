//! HTTP methods as a bit set.

use std::fmt;

/// The methods a rule can name; anything else (`PROPFIND`, ...) only matches `*`.
pub const KNOWN: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

const OTHER: u16 = 1 << KNOWN.len();

/// A set of HTTP methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Methods(u16);

impl Methods {
    /// Every method, extension methods included (`*`).
    pub const ANY: Methods = Methods((OTHER << 1) - 1);

    /// The empty set.
    pub const NONE: Methods = Methods(0);

    /// The bit of one request method.
    pub fn of(method: &str) -> Methods {
        KNOWN
            .iter()
            .position(|m| *m == method)
            .map_or(Methods(OTHER), |i| Methods(1 << i))
    }

    /// Parses one rule method: a known name in upper case, or `*`.
    pub fn parse(name: &str) -> Result<Methods, String> {
        if name == "*" {
            return Ok(Self::ANY);
        }
        if let Some(i) = KNOWN.iter().position(|m| *m == name) {
            return Ok(Methods(1 << i));
        }
        let upper = name.to_ascii_uppercase();
        if KNOWN.contains(&upper.as_str()) {
            return Err(format!(
                "method `{name}` must be written in upper case: `{upper}`"
            ));
        }
        Err(format!(
            "`{name}` is not an HTTP method; use one of {} or `*`",
            KNOWN.join(", ")
        ))
    }

    /// The union.
    pub fn union(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    /// True when the sets share a method.
    pub fn intersects(self, other: Methods) -> bool {
        self.0 & other.0 != 0
    }

    /// True when every method of `self` is in `other`.
    pub fn is_subset(self, other: Methods) -> bool {
        self.0 & !other.0 == 0
    }

    /// True for `*`.
    pub fn is_any(self) -> bool {
        self == Self::ANY
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The known method names in the set (`*` for all).
    pub fn names(self) -> Vec<&'static str> {
        if self.is_any() {
            return vec!["*"];
        }
        KNOWN
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, m)| *m)
            .collect()
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        assert!(
            Methods::parse("GET")
                .unwrap()
                .intersects(Methods::of("GET"))
        );
        assert!(
            !Methods::parse("GET")
                .unwrap()
                .intersects(Methods::of("POST"))
        );
        assert!(Methods::ANY.intersects(Methods::of("PROPFIND")));
        assert!(
            !Methods::parse("GET")
                .unwrap()
                .intersects(Methods::of("PROPFIND"))
        );
        assert!(Methods::parse("get").unwrap_err().contains("`GET`"));
        assert!(Methods::parse("FETCH").is_err());
        assert_eq!(Methods::ANY.to_string(), "*");
    }
}
