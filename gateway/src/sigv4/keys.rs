//! Signing keys: SigV4's HMAC chain and SigV4a's P-256 key, both derived from the
//! secret, and a bounded cache so the hot path pays for derivation once per
//! (key, date, region, service) rather than on every request.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use quick_cache::Equivalent;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Secret;
use super::sigv4a;

/// HMAC-SHA256.
pub(crate) type HmacSha256 = hmac::Hmac<Sha256>;

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A keyed HMAC over `key`: cloning it skips the two compressions HMAC spends on the key.
pub(crate) fn keyed_mac(key: &[u8; 32]) -> HmacSha256 {
    // A 32-byte key is always valid for HMAC.
    HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

/// `kSigning` = HMAC chain over date, region, service and `aws4_request`, rooted at
/// `"AWS4" + secret`.
pub fn derive_signing_key(
    secret: &Secret,
    date: &str,
    region: &str,
    service: &str,
) -> Zeroizing<[u8; 32]> {
    let mut root = Zeroizing::new(Vec::with_capacity(secret.expose().len() + 4));
    root.extend_from_slice(b"AWS4");
    root.extend_from_slice(secret.expose());
    let k_date = Zeroizing::new(hmac(&root, date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&*k_date, region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&*k_region, service.as_bytes()));
    Zeroizing::new(hmac(&*k_service, b"aws4_request"))
}

/// A cached SigV4 signing key, with the secret it came from so a rotated secret under
/// the same access key id is never served a stale key.
pub(crate) struct V4Key {
    secret: Secret,
    pub(crate) mac: HmacSha256,
}

/// A cached SigV4a public key.
pub(crate) struct V4aKey {
    secret: Secret,
    pub(crate) key: p256::ecdsa::VerifyingKey,
}

#[derive(Clone, PartialEq, Eq)]
struct ScopeKey {
    access_key_id: Box<str>,
    date: Box<str>,
    region: Box<str>,
    service: Box<str>,
}

struct ScopeRef<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

// ScopeKey and ScopeRef must hash alike so look-ups need no allocation.
fn hash_scope<H: Hasher>(h: &mut H, parts: [&str; 4]) {
    for p in parts {
        p.hash(h);
    }
}

impl Hash for ScopeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_scope(
            h,
            [&self.access_key_id, &self.date, &self.region, &self.service],
        );
    }
}

impl Hash for ScopeRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_scope(
            h,
            [self.access_key_id, self.date, self.region, self.service],
        );
    }
}

impl Equivalent<ScopeKey> for ScopeRef<'_> {
    fn equivalent(&self, key: &ScopeKey) -> bool {
        *key.access_key_id == *self.access_key_id
            && *key.date == *self.date
            && *key.region == *self.region
            && *key.service == *self.service
    }
}

/// Bounded, concurrent caches of derived keys.
pub(crate) struct KeyCache {
    v4: quick_cache::sync::Cache<ScopeKey, Arc<V4Key>>,
    v4a: quick_cache::sync::Cache<Box<str>, Arc<V4aKey>>,
}

impl KeyCache {
    /// Caches at most `capacity` keys of each kind.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            v4: quick_cache::sync::Cache::new(capacity),
            v4a: quick_cache::sync::Cache::new(capacity),
        }
    }

    /// The SigV4 signing key for this scope.
    pub(crate) fn v4(
        &self,
        access_key_id: &str,
        secret: &Secret,
        date: &str,
        region: &str,
        service: &str,
    ) -> Arc<V4Key> {
        let lookup = ScopeRef {
            access_key_id,
            date,
            region,
            service,
        };
        if let Some(hit) = self.v4.get(&lookup)
            && hit.secret == *secret
        {
            return hit;
        }
        let key = derive_signing_key(secret, date, region, service);
        let entry = Arc::new(V4Key {
            secret: secret.clone(),
            mac: keyed_mac(&key),
        });
        let owned = ScopeKey {
            access_key_id: access_key_id.into(),
            date: date.into(),
            region: region.into(),
            service: service.into(),
        };
        self.v4.insert(owned, Arc::clone(&entry));
        entry
    }

    /// The SigV4a public key for this access key, or `None` if derivation fails (it does
    /// not, short of a one-in-2^2000 chance the spec's retry loop runs dry).
    pub(crate) fn v4a(&self, access_key_id: &str, secret: &Secret) -> Option<Arc<V4aKey>> {
        if let Some(hit) = self.v4a.get(access_key_id)
            && hit.secret == *secret
        {
            return Some(hit);
        }
        let key = sigv4a::derive_verifying_key(access_key_id, secret)?;
        let entry = Arc::new(V4aKey {
            secret: secret.clone(),
            key,
        });
        self.v4a.insert(access_key_id.into(), Arc::clone(&entry));
        Some(entry)
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
    fn aws_documented_signing_key() {
        // From AWS's "Examples of how to derive a signing key for Signature Version 4".
        let key = derive_signing_key(
            &Secret::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            super::super::encode::hex(&*key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn cache_follows_secret_rotation() {
        let cache = KeyCache::new(8);
        let a = Secret::from("secret-a");
        let b = Secret::from("secret-b");
        let k1 = cache.v4("AKID", &a, "20150830", "us-east-1", "svc");
        let k2 = cache.v4("AKID", &a, "20150830", "us-east-1", "svc");
        assert!(Arc::ptr_eq(&k1, &k2));
        let k3 = cache.v4("AKID", &b, "20150830", "us-east-1", "svc");
        assert!(!Arc::ptr_eq(&k1, &k3));
        let mac = |k: &V4Key| k.mac.clone().finalize().into_bytes().to_vec();
        assert_ne!(mac(&k1), mac(&k3));
    }
}
