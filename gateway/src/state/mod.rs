//! State the replicas share: the replay cache and the rate-limit buckets. In memory for
//! one replica ([`memory`]), in Redis for many ([`redis`]). Both answer the same two
//! questions, so the stages that use them ([`crate::replay`], [`crate::throttle`]) do
//! not know which one they have.
//!
//! Bounded by refusing, never by evicting: a full replay cache refuses new signatures
//! rather than forgetting live ones (so flooding it cannot make a captured request
//! replayable), and Redis must run with `maxmemory-policy noeviction` for the same
//! reason (checked at start-up, warned about otherwise).

pub mod gcra;
pub mod memory;
pub mod redis;

use serde::Deserialize;

/// Where a piece of shared state lives.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process: right for one replica.
    #[default]
    Memory,
    /// In the `[redis]` server: shared by every replica.
    Redis,
}

/// What to do when the shared store cannot be reached.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Refuse the request (503): no replay or rate check is skipped.
    #[default]
    FailClosed,
    /// Serve it unchecked, counted in `gateway_shared_state_errors_total` and logged.
    FailOpen,
}

/// `[redis]`: the server the replicas share.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key the gateway writes (several gateways may share a server).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Longest wait for one answer, in milliseconds (default 100).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `fail_closed` (default) or `fail_open`.
    #[serde(default)]
    pub on_unavailable: FailMode,
}

fn default_prefix() -> String {
    "sigv4-gateway:".into()
}
fn default_timeout_ms() -> u64 {
    100
}

/// A shared-store answer that is not a yes or no.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The store is full (memory at its bound; Redis out of memory with noeviction).
    Full,
    /// The store did not answer (down, timed out, refused): the fail mode decides.
    Unavailable(String),
}

/// Whether a signature was seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: now remembered until it expires.
    New,
    /// Already seen and still live: a replay.
    Replayed,
}
