//! The in-process stores: a replay cache and rate-limit buckets, sharded so concurrent
//! requests rarely meet on a lock, and bounded by refusing new entries when full.

use super::gcra::{self, Shape, Verdict};
use super::{Seen, StoreError};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 16;

/// Signatures seen, each until it could no longer pass the time check.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Vec<Mutex<ReplayShard>>,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct ReplayShard {
    /// signature fingerprint -> last second it is valid
    live: HashMap<u128, i64>,
    /// the same entries by expiry, soonest first, so expired ones go in O(log n)
    by_expiry: BinaryHeap<Reverse<(i64, u128)>>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live signatures (spread over the shards).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Remembers `key` until `valid_until` (Unix seconds) unless it is already live at
    /// `now`; a full shard refuses rather than forgetting a live signature.
    pub fn insert(&self, key: u128, valid_until: i64, now: i64) -> Result<Seen, StoreError> {
        // The fingerprint is uniform (an HMAC output or a hash): its low bits spread it.
        let index = usize::try_from(key % SHARDS as u128).unwrap_or(0);
        let Some(shard) = self.shards.get(index) else {
            return Err(StoreError::Unavailable("replay cache shard".into()));
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Reverse((expiry, k))) = shard.by_expiry.peek().copied() {
            if expiry >= now {
                break;
            }
            shard.by_expiry.pop();
            if shard.live.get(&k) == Some(&expiry) {
                shard.live.remove(&k);
            }
        }
        if shard.live.get(&key).is_some_and(|&until| until >= now) {
            return Ok(Seen::Replayed);
        }
        if shard.live.len() >= self.per_shard {
            return Err(StoreError::Full);
        }
        shard.live.insert(key, valid_until);
        shard.by_expiry.push(Reverse((valid_until, key)));
        Ok(Seen::New)
    }

    /// Live signatures held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).live.len())
            .sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rate-limit buckets by key (a limit and who it counts), in memory.
#[derive(Debug)]
pub struct Buckets<K> {
    shards: Vec<Mutex<HashMap<K, i64>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl<K: Hash + Eq> Buckets<K> {
    /// Buckets for at most `capacity` keys that are not full (a full bucket is
    /// forgotten: it is the same as no entry).
    pub fn new(capacity: usize) -> Buckets<K> {
        Buckets {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Decides a request for `key` at `now` (ms); `consume` takes a token when allowed
    /// (a peek does not).
    pub fn check<Q>(
        &self,
        key: &Q,
        shape: Shape,
        now: i64,
        consume: bool,
    ) -> Result<Verdict, StoreError>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let Some(shard) = self.shards.get(index) else {
            return Err(StoreError::Unavailable("rate-limit shard".into()));
        };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = gcra::decide(map.get(key).copied(), now, shape);
        if let (true, Verdict::Allow { new_tat }) = (consume, verdict) {
            if !map.contains_key(key) && map.len() >= self.per_shard {
                // Full buckets carry nothing: drop them before refusing a new key.
                map.retain(|_, tat| *tat > now);
                if map.len() >= self.per_shard {
                    return Err(StoreError::Full);
                }
            }
            match map.get_mut(key) {
                Some(tat) => *tat = new_tat,
                // Owned only when a bucket is new: the common case only borrows.
                None => {
                    map.insert(key.to_owned(), new_tat);
                }
            }
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_signature_is_refused_again_until_it_expires() {
        let cache = ReplayCache::new(100);
        assert_eq!(cache.insert(7, 1_300, 1_000), Ok(Seen::New));
        assert_eq!(cache.insert(7, 1_300, 1_200), Ok(Seen::Replayed));
        assert_eq!(cache.insert(7, 1_300, 1_300), Ok(Seen::Replayed));
        // Past its validity the signature could not pass verification anyway.
        assert_eq!(cache.insert(7, 1_300, 1_301), Ok(Seen::New));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_and_forgets_nothing_live() {
        let cache = ReplayCache::new(SHARDS); // one entry per shard
        let mut refused = 0;
        for key in 0..(4 * SHARDS as u128) {
            match cache.insert(key, 2_000, 1_000) {
                Ok(Seen::New) => {}
                Err(StoreError::Full) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 3 * SHARDS);
        // Every signature that got in is still refused as a replay.
        for key in 0..SHARDS as u128 {
            assert_eq!(cache.insert(key, 2_000, 1_500), Ok(Seen::Replayed));
        }
        // Once they expire there is room again.
        assert_eq!(cache.insert(1_000_000, 3_000, 2_001), Ok(Seen::New));
    }

    #[test]
    fn buckets_limit_and_forget_full_buckets_before_refusing() {
        let shape = Shape::new(Duration::from_secs(1), 1, 1);
        let b: Buckets<u32> = Buckets::new(SHARDS);
        assert!(matches!(
            b.check(&1, shape, 0, true),
            Ok(Verdict::Allow { .. })
        ));
        assert!(matches!(
            b.check(&1, shape, 10, true),
            Ok(Verdict::Limited { .. })
        ));
        // A peek does not take a token (room for many keys here: with one place per
        // shard, key 2 could share key 1's shard while key 1's bucket is not full).
        let roomy: Buckets<u32> = Buckets::new(1_000);
        assert!(matches!(
            roomy.check(&2, shape, 0, false),
            Ok(Verdict::Allow { .. })
        ));
        assert!(matches!(
            roomy.check(&2, shape, 0, true),
            Ok(Verdict::Allow { .. })
        ));
        // A bucket is full again a second after its one request, so new keys, each
        // a while after the last, always find room even with one place per shard.
        for k in 100..(100 + 4 * SHARDS as u32) {
            assert!(
                b.check(&k, shape, 60_000 + 2_000 * i64::from(k), true)
                    .is_ok()
            );
        }
    }
}
