//! Replay protection: a signed request is valid for the whole skew window (or a
//! presigned URL until it expires), so a captured one could be sent again. With
//! `[replay]` configured, each verified signature is remembered until it could no
//! longer pass the time check, and a second request carrying it is refused. Methods the
//! operator declares idempotent can be exempted. Runs right after verification, so only
//! signatures made with a real secret take a place in the cache.

use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::sigv4::Verified;
use crate::state::memory::ReplayCache;
use crate::state::redis::RedisStore;
use crate::state::{FailMode, Seen, StoreError, StoreKind};
use http::Method;
use serde::Deserialize;
use std::sync::Arc;

/// `[replay]`: remember signatures, refuse them a second time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// `memory` (one replica; default) or `redis` (every replica, `[redis]`).
    #[serde(default)]
    pub store: StoreKind,
    /// Methods not checked, e.g. `["GET", "HEAD"]` when reads are idempotent and
    /// SDK retries of them must pass (default: none).
    #[serde(default)]
    pub exempt_methods: Vec<String>,
    /// The memory store's bound on live signatures (default 1,000,000): when full, new
    /// requests are refused (503) rather than live signatures forgotten.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_max_entries() -> usize {
    1_000_000
}

enum Store {
    Memory(ReplayCache),
    Redis(RedisStore, FailMode),
}

/// The replay check, between verification and authorization.
pub struct ReplayGuard {
    store: Store,
    exempt: Vec<Method>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

impl ReplayGuard {
    /// The guard `config` describes; `redis` is the shared store when it says `redis`.
    pub fn new(
        config: &ReplayConfig,
        redis: Option<(&RedisStore, FailMode)>,
        metrics: Arc<Metrics>,
    ) -> Result<ReplayGuard, String> {
        let exempt = config
            .exempt_methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("[replay] exempt_methods: `{m}` is not an HTTP method"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let store = match (config.store, redis) {
            (StoreKind::Memory, _) => Store::Memory(ReplayCache::new(config.max_entries)),
            (StoreKind::Redis, Some((r, mode))) => Store::Redis(r.clone(), mode),
            (StoreKind::Redis, None) => {
                return Err("[replay] store = \"redis\" needs a [redis] table".into());
            }
        };
        Ok(ReplayGuard {
            store,
            exempt,
            metrics,
        })
    }

    /// Refuses `verified` if its signature was seen and is still live at `now`
    /// (Unix seconds); remembers it otherwise.
    pub async fn check(
        &self,
        method: &Method,
        verified: &Verified,
        now: i64,
    ) -> Result<(), GatewayError> {
        if self.exempt.contains(method) {
            return Ok(());
        }
        self.remember(verified, now).await
    }

    /// [`ReplayGuard::check`] without exemptions: for STS calls, which hand out new
    /// credentials whatever their method.
    pub async fn remember(&self, verified: &Verified, now: i64) -> Result<(), GatewayError> {
        let seen = match &self.store {
            Store::Memory(cache) => cache.insert(verified.replay_key, verified.valid_until, now),
            Store::Redis(redis, mode) => {
                match redis
                    .insert_replay(verified.replay_key, verified.valid_until)
                    .await
                {
                    Err(StoreError::Unavailable(why)) => {
                        return self.unavailable(*mode, &why);
                    }
                    other => other,
                }
            }
        };
        match seen {
            Ok(Seen::New) => Ok(()),
            Ok(Seen::Replayed) => Err(GatewayError::new(
                http::StatusCode::FORBIDDEN,
                "RequestReplayed",
                "This signed request was already received: with replay protection on, each \
                 signature is accepted once. Sign every request anew (SDKs do, per attempt); a \
                 retry signed within the same second as the first attempt carries the same \
                 signature, so wait a second or change the request.",
            )),
            Err(StoreError::Full) => Err(GatewayError::unavailable(
                "The replay cache is full, so this request cannot be checked and is refused \
                 rather than served unchecked. Retry with backoff; operators: raise [replay] \
                 max_entries or Redis maxmemory, or exempt idempotent methods.",
            )),
            Err(StoreError::Unavailable(why)) => self.unavailable(FailMode::FailClosed, &why),
        }
    }

    fn unavailable(&self, mode: FailMode, why: &str) -> Result<(), GatewayError> {
        self.metrics.shared_state_error("replay", mode);
        match mode {
            FailMode::FailOpen => {
                tracing::warn!(store = "redis", error = %why, "replay cache unavailable; serving unchecked (on_unavailable = \"fail_open\")");
                Ok(())
            }
            FailMode::FailClosed => {
                tracing::warn!(store = "redis", error = %why, "replay cache unavailable; refusing (on_unavailable = \"fail_closed\")");
                Err(GatewayError::unavailable(
                    "The gateway cannot reach its replay cache (Redis) and is configured to \
                     refuse requests it cannot check. Retry with backoff.",
                ))
            }
        }
    }
}
