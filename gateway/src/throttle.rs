//! Rate limits: the rules file's `[[limit]]`s, enforced. A caller PBC's calls (to any
//! target, or per target) are counted once its identity and target are known, denied
//! calls included; requests that fail authentication are counted per source address,
//! and an address over its budget is refused before its signature is even checked, so
//! a key guesser is slowed before it can try many keys. Over a limit: 429
//! `ThrottlingException` with `Retry-After`. Buckets live in memory (one replica) or in
//! Redis (shared), and use the GCRA ([`crate::state::gcra`]).

use crate::config::RateLimitConfig;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::state::gcra::{Shape, Verdict};
use crate::state::memory::Buckets;
use crate::state::redis::RedisStore;
use crate::state::{FailMode, StoreError, StoreKind};
use authz_rules::{Limit, Rules};
use std::net::IpAddr;
use std::sync::Arc;

/// The error codes that count as a failed authentication: what a key guesser or an
/// unauthenticated scanner gets. (Clock skew and expiry are a legitimate caller's
/// problems and do not count.)
pub const FAILED_AUTH_CODES: [&str; 4] = [
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

enum Store {
    Memory(Buckets<String>),
    Redis(RedisStore, FailMode),
}

/// The rate-limit stage.
pub struct Throttle {
    store: Store,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

impl Throttle {
    /// The stage `config` describes; `redis` is the shared store when it says `redis`.
    pub fn new(
        config: &RateLimitConfig,
        redis: Option<(&RedisStore, FailMode)>,
        metrics: Arc<Metrics>,
    ) -> Result<Throttle, String> {
        let store = match (config.store, redis) {
            (StoreKind::Memory, _) => Store::Memory(Buckets::new(config.max_buckets)),
            (StoreKind::Redis, Some((r, mode))) => Store::Redis(r.clone(), mode),
            (StoreKind::Redis, None) => {
                return Err("[rate_limit] store = \"redis\" needs a [redis] table".into());
            }
        };
        Ok(Throttle { store, metrics })
    }

    /// Before verification: refuses `ip` if it is over the failed-authentication limit.
    pub async fn check_source(
        &self,
        rules: &Rules,
        ip: IpAddr,
        now_ms: i64,
    ) -> Result<(), GatewayError> {
        let Some(limit) = rules.failed_auth_limit() else {
            return Ok(());
        };
        let key = format!("{}|ip|{}", limit.id, source_key(ip));
        match self.bucket(&key, limit, now_ms, false).await? {
            Verdict::Allow { .. } => Ok(()),
            Verdict::Limited { retry_after_ms } => Err(GatewayError::throttled(
                format!(
                    "Too many requests from {ip} failed authentication (limit `{}`: {} per {}); \
                     requests from this address are refused until it slows down. Check the \
                     access key, secret and signing code.",
                    limit.id,
                    limit.requests,
                    per_text(limit)
                ),
                secs(retry_after_ms),
            )),
        }
    }

    /// After a request from `ip` failed authentication: counts it.
    pub async fn failed_auth(&self, rules: &Rules, ip: IpAddr, now_ms: i64) {
        if let Some(limit) = rules.failed_auth_limit() {
            let key = format!("{}|ip|{}", limit.id, source_key(ip));
            // Counting a failure never refuses anything by itself: the next request does.
            let _ = self.bucket(&key, limit, now_ms, true).await;
        }
    }

    /// Counts a call of `caller` to `target` (PBC names) against every limit that
    /// applies, in file order; the first one over its limit refuses it.
    pub async fn check_call(
        &self,
        rules: &Rules,
        caller: &str,
        target: &str,
        now_ms: i64,
    ) -> Result<(), GatewayError> {
        let (Some(c), Some(t)) = (rules.pbc(caller), rules.pbc(target)) else {
            return Ok(());
        };
        for limit in rules.limits_for(c, t) {
            let key = match limit.scope {
                authz_rules::LimitScope::Caller { .. } => format!("{}|{caller}", limit.id),
                _ => format!("{}|{caller}|{target}", limit.id),
            };
            if let Verdict::Limited { retry_after_ms } =
                self.bucket(&key, limit, now_ms, true).await?
            {
                return Err(GatewayError::throttled(
                    format!(
                        "Rate exceeded: {caller} may make {} calls per {} (bursts of {}) under \
                         limit `{}`{}; retry after the time in Retry-After, with backoff.",
                        limit.requests,
                        per_text(limit),
                        limit.burst,
                        limit.id,
                        match limit.scope {
                            authz_rules::LimitScope::Caller { .. } => String::new(),
                            _ => format!(" to {target}"),
                        }
                    ),
                    secs(retry_after_ms),
                ));
            }
        }
        Ok(())
    }

    async fn bucket(
        &self,
        key: &str,
        limit: &Limit,
        now_ms: i64,
        consume: bool,
    ) -> Result<Verdict, GatewayError> {
        let shape = Shape::new(limit.per, limit.requests, limit.burst);
        let result = match &self.store {
            Store::Memory(b) => b.check(key, shape, now_ms, consume),
            Store::Redis(r, _) => r.check_bucket(key, shape, now_ms, consume).await,
        };
        let mode = match &self.store {
            Store::Memory(_) => FailMode::FailClosed,
            Store::Redis(_, mode) => *mode,
        };
        match result {
            Ok(v) => Ok(v),
            Err(StoreError::Full) => Err(GatewayError::unavailable(
                "The rate-limit store is full, so this request cannot be counted and is refused. \
                 Retry with backoff; operators: raise [rate_limit] max_buckets or Redis maxmemory.",
            )),
            Err(StoreError::Unavailable(why)) => {
                self.metrics.shared_state_error("rate_limit", mode);
                match mode {
                    FailMode::FailOpen => {
                        tracing::warn!(store = "redis", error = %why, "rate limits unavailable; serving uncounted (on_unavailable = \"fail_open\")");
                        Ok(Verdict::Allow { new_tat: now_ms })
                    }
                    FailMode::FailClosed => {
                        tracing::warn!(store = "redis", error = %why, "rate limits unavailable; refusing (on_unavailable = \"fail_closed\")");
                        Err(GatewayError::unavailable(
                            "The gateway cannot reach its rate-limit store (Redis) and is configured \
                             to refuse requests it cannot count. Retry with backoff.",
                        ))
                    }
                }
            }
        }
    }
}

/// An IPv6 caller controls its whole /64: counted as one, or a guesser could rotate
/// through addresses. IPv4 (and IPv4-mapped) addresses count alone.
fn source_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000)
}

fn per_text(limit: &Limit) -> String {
    let s = limit.per.as_secs();
    if s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            source_key("10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            "10.1.2.3"
        );
        let a = source_key(
            "2001:db8:1:2:aaaa::1"
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        );
        let b = source_key(
            "2001:db8:1:2:bbbb::2"
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        );
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(
            source_key(
                "::ffff:10.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::from([0, 0, 0, 0]))
            ),
            "10.0.0.1"
        );
        assert_eq!(secs(1), 1);
        assert_eq!(secs(1000), 1);
        assert_eq!(secs(1001), 2);
    }
}
