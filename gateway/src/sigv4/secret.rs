//! The secret access key, kept out of logs and wiped from memory when dropped.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A secret access key. `Debug` prints a placeholder, there is no `Display`, and the
/// bytes are zeroed on drop, so a secret cannot leak through a log line or a panic.
#[derive(Clone)]
pub struct Secret(Zeroizing<Box<[u8]>>);

impl Secret {
    /// Wraps a secret access key; the string's own buffer is wiped.
    pub fn new(mut secret: String) -> Self {
        let boxed: Box<[u8]> = secret.as_bytes().into();
        zeroize::Zeroize::zeroize(&mut secret);
        Self(Zeroizing::new(boxed))
    }

    /// The key bytes, for key derivation only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(Zeroizing::new(value.as_bytes().into()))
    }
}

impl PartialEq for Secret {
    /// Constant-time comparison, so cache look-ups leak nothing about the key.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
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

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn equality() {
        assert_eq!(Secret::from("abc"), Secret::new("abc".to_owned()));
        assert_ne!(Secret::from("abc"), Secret::from("abd"));
        assert_ne!(Secret::from("abc"), Secret::from("abcd"));
    }
}
