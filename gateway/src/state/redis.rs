//! The shared stores in Redis: `SET NX PXAT` for the replay cache, a Lua script for
//! the rate-limit buckets (the same arithmetic as [`super::gcra`]). One multiplexed
//! connection, reconnecting in the background; every call bounded by `timeout_ms`.

use super::gcra::{Shape, Verdict};
use super::{RedisConfig, Seen, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// GCRA in Lua: KEYS[1] the bucket; ARGV now_ms, interval_ms, tolerance_ms, consume.
/// Returns {1, 0} when allowed, {0, retry_after_ms} when limited.
const GCRA_LUA: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end
if tat - now > tolerance then
  return {0, tat - now - tolerance}
end
if ARGV[4] == '1' then
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
end
return {1, 0}
";

/// A connection to the `[redis]` server.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    gcra: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `config`; connects lazily, so a Redis that is down at start-up is
    /// handled like one that goes down later (the fail mode decides).
    pub fn new(config: &RedisConfig) -> Result<RedisStore, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("[redis] url: {}", describe(&e)))?;
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| format!("[redis]: {}", describe(&e)))?;
        Ok(RedisStore {
            conn,
            prefix: config.key_prefix.clone(),
            timeout,
            gcra: redis::Script::new(GCRA_LUA),
        })
    }

    /// Remembers signature `key` until `valid_until` (Unix seconds, inclusive) unless
    /// it is already there.
    pub async fn insert_replay(&self, key: u128, valid_until: i64) -> Result<Seen, StoreError> {
        let name = format!("{}replay:{key:032x}", self.prefix);
        let expire_at_ms = valid_until.saturating_add(1).saturating_mul(1000);
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&name)
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expire_at_ms);
        let set = cmd.query_async::<Option<String>>(&mut conn);
        match tokio::time::timeout(self.timeout, set).await {
            Ok(Ok(Some(_))) => Ok(Seen::New),
            Ok(Ok(None)) => Ok(Seen::Replayed),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// Decides a request against bucket `key` at `now` (ms), taking a token if
    /// `consume` and allowed.
    pub async fn check_bucket(
        &self,
        key: &str,
        shape: Shape,
        now: i64,
        consume: bool,
    ) -> Result<Verdict, StoreError> {
        let name = format!("{}limit:{key}", self.prefix);
        let mut conn = self.conn.clone();
        let mut invocation = self.gcra.key(&name);
        invocation
            .arg(now)
            .arg(shape.interval_ms)
            .arg(shape.tolerance_ms)
            .arg(u8::from(consume));
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((1, _))) => Ok(Verdict::Allow {
                new_tat: now.saturating_add(shape.interval_ms),
            }),
            Ok(Ok((_, retry_after_ms))) => Ok(Verdict::Limited { retry_after_ms }),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// The server's `maxmemory-policy`, when it answers `CONFIG GET` (managed services
    /// may forbid it).
    pub async fn eviction_policy(&self) -> Option<String> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let get = cmd.query_async::<Vec<String>>(&mut conn);
        match tokio::time::timeout(Duration::from_secs(2), get).await {
            Ok(Ok(v)) => v.get(1).cloned(),
            _ => None,
        }
    }
}

/// Out of memory (`noeviction` at `maxmemory`) means full, anything else unavailable.
fn classify(e: &redis::RedisError) -> StoreError {
    if e.code() == Some("OOM") {
        StoreError::Full
    } else {
        StoreError::Unavailable(describe(e))
    }
}

/// An error in words, without the URL (it may hold a password).
fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains("redis://") || text.contains('@') {
        format!("{:?} error", e.kind())
    } else {
        text
    }
}
