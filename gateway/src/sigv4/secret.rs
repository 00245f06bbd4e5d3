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
        ct_eq(&self.0, &other.0)
    }
}

/// Compares two byte strings in time that depends on their lengths only: differences are
/// OR-ed together a word at a time and `subtle` judges the result, without a branch on
/// any byte (a byte-wise `subtle` comparison costs a barrier per byte).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in a_words.clone().zip(b_words.clone()) {
        let (Ok(x), Ok(y)) = (<[u8; 8]>::try_from(x), <[u8; 8]>::try_from(y)) else {
            return false;
        };
        diff |= u64::from_ne_bytes(x) ^ u64::from_ne_bytes(y);
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        diff |= u64::from(x ^ y);
    }
    diff.ct_eq(&0).into()
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
    fn constant_time_compare() {
        let a: Vec<u8> = (0..45).collect();
        for i in 0..a.len() {
            let mut b = a.clone();
            b[i] ^= 0x40;
            assert!(!ct_eq(&a, &b), "byte {i}");
        }
        assert!(ct_eq(&a, &a.clone()));
        assert!(!ct_eq(&a, &a[..44]));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn equality() {
        assert_eq!(Secret::from("abc"), Secret::new("abc".to_owned()));
        assert_ne!(Secret::from("abc"), Secret::from("abd"));
        assert_ne!(Secret::from("abc"), Secret::from("abcd"));
    }
}
