//! Prometheus metrics, served as OpenMetrics text at the admin listener's `/metrics`.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): its registry,
//! counters, gauges and text encoder. Two pieces are the gateway's own, for the hot path:
//!
//! - labelled families are capped: a look-up with borrowed label values (no
//!   allocation once a series exists, a shared read lock, no global mutex), and at most
//!   [`MAX_SERIES_PER_FAMILY`] distinct label sets per family, past which new label sets
//!   are folded into one series whose every label is `other`;
//! - the latency histograms are lock-free (atomic buckets), where the crate's histogram
//!   takes a mutex per observation.
//!
//! Label values are bounded by construction: PBC names and role ARNs come from the
//! configuration and the rules, codes are `&'static str` error codes, and no raw path,
//! query or access key is ever a label. The cap is the safety net behind that.
//!
//! # Families
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `gateway_requests_total` | counter | `caller`, `target`, `decision`, `code` |
//! | `gateway_request_duration_seconds` | histogram | `stage` (`request`, `verify`, `authorize`, `upstream`) |
//! | `gateway_sts_requests_total` | counter | `action`, `role`, `code` |
//! | `gateway_upstream_errors_total` | counter | `target`, `kind` (see [`UpstreamErrorKind`]) |
//! | `gateway_upstream_connections_opened_total` | counter | `target` |
//! | `gateway_upstream_connections_open` | gauge | `target` |
//! | `gateway_upstream_requests_in_flight` | gauge | `target` |
//! | `gateway_tls_handshake_errors_total` | counter | `reason` (`failed`, `timeout`) |
//! | `gateway_shared_state_errors_total` | counter | `use` (`replay`, `rate_limit`), `policy` (`fail_closed`, `fail_open`) |
//! | `gateway_reloads_total` | counter | `file` |
//! | `gateway_reload_failures_total` | counter | `file` |
//! | `gateway_reload_last_success_timestamp_seconds` | gauge | `file` |
//! | `gateway_audit_queue_depth` | gauge | |
//! | `gateway_audit_queue_capacity` | gauge | |
//! | `gateway_audit_records_dropped_total` | counter | |
//! | `gateway_audit_records_written_total` | counter | |
//! | `gateway_audit_write_errors_total` | counter | |
//! | `gateway_build_info` | gauge (always 1) | `version`, `commit` |

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// The most distinct label sets one labelled family keeps. Past it, a new label set is
/// counted in the family's overflow series (every label `other`), so a family holds at
/// most this many series plus one.
pub const MAX_SERIES_PER_FAMILY: usize = 10_000;

/// The label value that stands for "anything else": the overflow series, unknown STS
/// actions.
pub const OTHER: &str = "other";

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in nanoseconds: 50 µs to 10 s.
const BUCKET_BOUNDS_NS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The STS actions counted under their own name; any other is counted as [`OTHER`].
const STS_ACTIONS: &[&str] = &[
    "GetCallerIdentity",
    "AssumeRole",
    "AssumeRoleWithWebIdentity",
    "AssumeRoleWithAWSIdentity",
    "AssumeRoleWithSAML",
    "GetSessionToken",
    "GetFederationToken",
    "GetAccessKeyInfo",
    "DecodeAuthorizationMessage",
];

/// A timed part of a request: the `stage` label of `gateway_request_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The whole request, from the head received to the response finished.
    Request,
    /// SigV4 verification (identity look-up included).
    Verify,
    /// Route and allow-matrix authorization.
    Authorize,
    /// The upstream call, up to its response head.
    Upstream,
}

impl Stage {
    /// Every stage, in exposition order.
    pub const ALL: [Stage; 4] = [
        Stage::Request,
        Stage::Verify,
        Stage::Authorize,
        Stage::Upstream,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Verify => "verify",
            Stage::Authorize => "authorize",
            Stage::Upstream => "upstream",
        }
    }
}

/// Why an upstream call failed: the `kind` label of `gateway_upstream_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// No response head within the response timeout, or the connection timed out.
    Timeout,
    /// The TCP connect timed out.
    ConnectTimeout,
    /// The upstream refused the connection.
    Refused,
    /// The connection was reset or aborted.
    Reset,
    /// No route to the upstream's host or network.
    Unreachable,
    /// The TLS handshake failed (certificate not trusted, client certificate refused...).
    Tls,
    /// Anything else (protocol errors, DNS failures, ...).
    Other,
}

impl UpstreamErrorKind {
    /// Every kind, in exposition order.
    pub const ALL: [UpstreamErrorKind; 7] = [
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::Refused,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Unreachable,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Refused => "refused",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Unreachable => "unreachable",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// The gateway's metrics. `Send + Sync`; shared as `Arc<Metrics>`.
///
/// Hot-path calls ([`Metrics::request`], [`Metrics::observe`]) take no exclusive lock
/// once their series exists: a shared read lock for the look-up and atomic increments.
pub struct Metrics {
    registry: Registry,
    requests: Capped<Counter, 4>,
    durations: StageHistograms,
    sts: Capped<Counter, 3>,
    tls_handshake_errors: Capped<Counter, 1>,
    shared_state_errors: Capped<Counter, 2>,
    reloads: Capped<Mirror, 1>,
    reload_failures: Capped<Mirror, 1>,
    reload_last_success: Capped<Gauge, 1>,
    audit_depth: Gauge,
    audit_capacity: Gauge,
    audit_dropped: Mirror,
    audit_written: Mirror,
    audit_write_errors: Mirror,
    upstream_errors: Capped<Counter, 2>,
    upstream_opened: Capped<Counter, 1>,
    upstream_open: Capped<Gauge, 1>,
    upstream_in_flight: Capped<Gauge, 1>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, empty.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Capped::new("requests", ["caller", "target", "decision", "code"]);
        let durations = StageHistograms::default();
        let sts = Capped::new("sts_requests", ["action", "role", "code"]);
        let tls_handshake_errors = Capped::new("tls_handshake_errors", ["reason"]);
        let shared_state_errors = Capped::new("shared_state_errors", ["use", "policy"]);
        let reloads = Capped::new("reloads", ["file"]);
        let reload_failures = Capped::new("reload_failures", ["file"]);
        let reload_last_success = Capped::new("reload_last_success_timestamp", ["file"]);
        let audit_depth = Gauge::default();
        let audit_capacity = Gauge::default();
        let audit_dropped = Mirror::default();
        let audit_written = Mirror::default();
        let audit_write_errors = Mirror::default();
        let upstream_errors = Capped::new("upstream_errors", ["target", "kind"]);
        let upstream_opened = Capped::new("upstream_connections_opened", ["target"]);
        let upstream_open = Capped::new("upstream_connections_open", ["target"]);
        let upstream_in_flight = Capped::new("upstream_requests_in_flight", ["target"]);

        // Present from the start, so rate() has a zero to start from.
        for reason in ["failed", "timeout"] {
            tls_handshake_errors.with([reason], |_| ());
        }

        registry.register("build_info", "Build information; always 1", BuildInfo);
        registry.register(
            "requests",
            "Finished gateway requests by caller PBC, target PBC, decision and AWS error code (OK when none)",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time spent per stage: the whole request, SigV4 verification, authorization, and the upstream call up to its response head",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "sts_requests",
            "STS calls by action, role ARN (- when none) and AWS error code (OK when none)",
            sts.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed upstream calls by target and kind of failure",
            upstream_errors.clone(),
        );
        registry.register(
            "upstream_connections_opened",
            "Upstream connections established (TCP and TLS), by target",
            upstream_opened.clone(),
        );
        registry.register(
            "upstream_connections_open",
            "Upstream connections open now (in use or idle in the pool), by target",
            upstream_open.clone(),
        );
        registry.register(
            "upstream_requests_in_flight",
            "Upstream requests under way (until the response body ends), by target",
            upstream_in_flight.clone(),
        );
        registry.register(
            "tls_handshake_errors",
            "TLS handshakes on the public listener that failed or timed out",
            tls_handshake_errors.clone(),
        );
        registry.register(
            "shared_state_errors",
            "Calls to the shared store (Redis) that failed, by use (replay, rate_limit) and the policy applied (fail_closed: refused, fail_open: served unchecked)",
            shared_state_errors.clone(),
        );
        registry.register(
            "reloads",
            "New versions of a reloadable file that went live",
            reloads.clone(),
        );
        registry.register(
            "reload_failures",
            "New versions of a reloadable file that were refused (the running version kept serving)",
            reload_failures.clone(),
        );
        registry.register_with_unit(
            "reload_last_success_timestamp",
            "When a reloadable file last loaded successfully (the initial load included), in Unix seconds",
            Unit::Seconds,
            reload_last_success.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit records waiting to be written",
            audit_depth.clone(),
        );
        registry.register(
            "audit_queue_capacity",
            "How many audit records the queue holds before dropping",
            audit_capacity.clone(),
        );
        registry.register(
            "audit_records_dropped",
            "Audit records dropped because the queue was full",
            audit_dropped.clone(),
        );
        registry.register(
            "audit_records_written",
            "Audit records written",
            audit_written.clone(),
        );
        registry.register(
            "audit_write_errors",
            "Audit records that could not be written",
            audit_write_errors.clone(),
        );

        Metrics {
            registry,
            requests,
            durations,
            sts,
            tls_handshake_errors,
            shared_state_errors,
            reloads,
            reload_failures,
            reload_last_success,
            audit_depth,
            audit_capacity,
            audit_dropped,
            audit_written,
            audit_write_errors,
            upstream_errors,
            upstream_opened,
            upstream_open,
            upstream_in_flight,
        }
    }

    /// One finished gateway request. caller = caller PBC or "-", target = target PBC or
    /// "-", decision = "allow"|"deny", code = AWS error code or "OK".
    pub fn request(&self, caller: &str, target: &str, decision: &str, code: &str) {
        self.requests
            .with([caller, target, decision, code], |c| c.inc());
    }

    /// Records `elapsed` in `stage`'s latency histogram (seconds; buckets from 50 µs to
    /// 10 s).
    pub fn observe(&self, stage: Stage, elapsed: Duration) {
        self.durations.get(stage).observe(elapsed);
    }

    /// One STS call: action (GetCallerIdentity, AssumeRole, ...; anything else →
    /// "other"), role ARN or "-", code ("OK" or the error code).
    pub fn sts(&self, action: &str, role: &str, code: &str) {
        let action = STS_ACTIONS
            .iter()
            .copied()
            .find(|a| *a == action)
            .unwrap_or(OTHER);
        self.sts.with([action, role, code], |c| c.inc());
    }

    /// One TLS handshake on the public listener that failed (`"failed"`) or timed out
    /// (`"timeout"`).
    pub fn tls_handshake_error(&self, reason: &'static str) {
        self.tls_handshake_errors.with([reason], |c| c.inc());
    }

    /// One failed call to the shared store, for `what` (`replay`, `rate_limit`), and
    /// what was done about it.
    pub fn shared_state_error(&self, what: &'static str, mode: crate::state::FailMode) {
        let policy = match mode {
            crate::state::FailMode::FailClosed => "fail_closed",
            crate::state::FailMode::FailOpen => "fail_open",
        };
        self.shared_state_errors.with([what, policy], |c| c.inc());
    }

    /// Mirrors a reloadable file's counters (`what` is its name: `rules`,
    /// `credentials`). Called at scrape time; the values are absolute, not increments.
    pub fn set_reload(&self, what: &str, reloads: u64, failures: u64, last_success_unix: i64) {
        self.reloads.with([what], |m| m.set(reloads));
        self.reload_failures.with([what], |m| m.set(failures));
        self.reload_last_success
            .with([what], |g| g.set(last_success_unix));
    }

    /// Mirrors the audit queue's state. Called at scrape time; the counters are
    /// absolute, not increments.
    pub fn set_audit(
        &self,
        depth: usize,
        capacity: usize,
        dropped: u64,
        written: u64,
        write_errors: u64,
    ) {
        self.audit_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.audit_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        self.audit_dropped.set(dropped);
        self.audit_written.set(written);
        self.audit_write_errors.set(write_errors);
    }

    /// The handles of one upstream target's series, resolved once (the forwarder keeps
    /// them, so its hot path does no look-up). Every error kind's series is created at
    /// zero.
    pub fn upstream(&self, target: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            opened: self.upstream_opened.get([target]),
            open: self.upstream_open.get([target]),
            in_flight: self.upstream_in_flight.get([target]),
            errors: UpstreamErrorKind::ALL.map(|k| self.upstream_errors.get([target, k.as_str()])),
        }
    }

    /// The exposition: OpenMetrics text (see [`CONTENT_TYPE`]), ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; an encoder error would be a bug.
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

/// One upstream target's series (see [`Metrics::upstream`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    opened: Counter,
    open: Gauge,
    in_flight: Gauge,
    errors: [Counter; UpstreamErrorKind::ALL.len()],
}

impl UpstreamMetrics {
    /// Counts a new upstream connection; it is counted open until the guard is dropped
    /// (hold it in the connection's IO).
    pub fn connection_opened(&self) -> OpenConnection {
        self.opened.inc();
        self.open.inc();
        OpenConnection(self.open.clone())
    }

    /// Counts an upstream request under way until the guard is dropped.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts one failed upstream call.
    pub fn error(&self, kind: UpstreamErrorKind) {
        let i = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(UpstreamErrorKind::ALL.len() - 1);
        if let Some(c) = self.errors.get(i) {
            c.inc();
        }
    }
}

/// An open upstream connection: `gateway_upstream_connections_open` goes down by one
/// when this is dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An upstream request under way: `gateway_upstream_requests_in_flight` goes down by one
/// when this is dropped (response finished, error, or the caller gave up).
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// ------------------------------------------------------------------------------------
// Capped families

/// Label values, owned (a key in the map) or borrowed (a look-up): both hash and compare
/// as the sequence of their values, so a look-up needs no allocation.
trait LabelValues {
    fn value(&self, i: usize) -> Option<&str>;
}

impl<const N: usize> LabelValues for [&str; N] {
    fn value(&self, i: usize) -> Option<&str> {
        self.get(i).copied()
    }
}

/// The owned label values of one series.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key<const N: usize>([Box<str>; N]);

impl<const N: usize> LabelValues for Key<N> {
    fn value(&self, i: usize) -> Option<&str> {
        self.0.get(i).map(|v| &**v)
    }
}

fn values<'a>(v: &'a (dyn LabelValues + 'a)) -> impl Iterator<Item = &'a str> {
    (0..).map_while(|i| v.value(i))
}

impl Hash for dyn LabelValues + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // str's Hash ends each value with a terminator, so ["ab", "c"] != ["a", "bc"].
        for v in values(self) {
            v.hash(state);
        }
    }
}

impl PartialEq for dyn LabelValues + '_ {
    fn eq(&self, other: &Self) -> bool {
        values(self).eq(values(other))
    }
}

impl Eq for dyn LabelValues + '_ {}

impl<const N: usize> Hash for Key<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn LabelValues).hash(state);
    }
}

impl<'a, const N: usize> Borrow<dyn LabelValues + 'a> for Key<N> {
    fn borrow(&self) -> &(dyn LabelValues + 'a) {
        self
    }
}

/// A labelled family with at most [`MAX_SERIES_PER_FAMILY`] label sets (plus the
/// overflow series). Clones share the series.
struct Capped<M, const N: usize> {
    inner: Arc<CappedInner<M, N>>,
}

struct CappedInner<M, const N: usize> {
    /// The family's name, for the overflow warning.
    name: &'static str,
    labels: [&'static str; N],
    series: RwLock<HashMap<Key<N>, M>>,
    overflowed: AtomicBool,
}

impl<M, const N: usize> Clone for Capped<M, N> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M, const N: usize> fmt::Debug for Capped<M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capped")
            .field("name", &self.inner.name)
            .field("labels", &self.inner.labels)
            .field("series", &self.read().len())
            .finish()
    }
}

impl<M, const N: usize> Capped<M, N> {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<Key<N>, M>> {
        // Plain atomics inside: the map stays consistent under a panic elsewhere.
        self.inner
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Key<N>, M>> {
        self.inner
            .series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M: Default, const N: usize> Capped<M, N> {
    fn new(name: &'static str, labels: [&'static str; N]) -> Self {
        Self {
            inner: Arc::new(CappedInner {
                name,
                labels,
                series: RwLock::new(HashMap::new()),
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `f` on the series for `values`, creating it (or, past the cap, using the
    /// overflow series).
    fn with<R>(&self, values: [&str; N], f: impl FnOnce(&M) -> R) -> R {
        let lookup: &dyn LabelValues = &values;
        if let Some(m) = self.read().get(lookup) {
            return f(m);
        }
        let mut series = self.write();
        if let Some(m) = series.get(lookup) {
            return f(m);
        }
        let key = if series.len() < MAX_SERIES_PER_FAMILY {
            Key(values.map(Box::from))
        } else {
            if !self.inner.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    family = self.inner.name,
                    limit = MAX_SERIES_PER_FAMILY,
                    "too many distinct label sets; further ones are counted under \"other\""
                );
            }
            Key([OTHER; N].map(Box::from))
        };
        f(series.entry(key).or_default())
    }

    /// The series for `values` (see [`Capped::with`]), as a handle to keep.
    fn get(&self, values: [&str; N]) -> M
    where
        M: Clone,
    {
        self.with(values, M::clone)
    }
}

/// A label set as the encoder wants it: the family's names with one series' values.
struct Pairs<'a, const N: usize> {
    names: &'a [&'static str; N],
    values: &'a [Box<str>; N],
}

impl<const N: usize> EncodeLabelSet for Pairs<'_, N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        for (name, value) in self.names.iter().zip(self.values) {
            (*name, &**value).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

impl<M, const N: usize> EncodeMetric for Capped<M, N>
where
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let series = self.read();
        // Sorted, so consecutive scrapes list series in the same order.
        let mut sorted: Vec<(&Key<N>, &M)> = series.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, metric) in sorted {
            let labels = Pairs {
                names: &self.inner.labels,
                values: &key.0,
            };
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    // The family's HELP and TYPE are listed even before its first series.
}

// ------------------------------------------------------------------------------------
// Mirrored counters, latency histograms, build info

/// A counter whose value is set from elsewhere (a reloader's or the audit queue's own
/// count) at scrape time, and exposed as a counter.
#[derive(Clone, Debug, Default)]
struct Mirror(Arc<AtomicU64>);

impl Mirror {
    fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

impl TypedMetric for Mirror {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Mirror {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_counter::<NoLabelSet, u64, u64>(&self.0.load(Ordering::Relaxed), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A latency histogram with atomic buckets: observing is a few relaxed atomic adds.
#[derive(Debug, Default)]
struct AtomicHistogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKET_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let bounds = BUCKET_BOUNDS_NS
            .iter()
            .map(|&ns| ns as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(le, n)| (le, n.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so `_count` and `le="+Inf"` always agree.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// The four stage histograms: `gateway_request_duration_seconds{stage}`.
#[derive(Clone, Debug, Default)]
struct StageHistograms(Arc<[AtomicHistogram; Stage::ALL.len()]>);

impl StageHistograms {
    fn get(&self, stage: Stage) -> &AtomicHistogram {
        let [request, verify, authorize, upstream] = &*self.0;
        match stage {
            Stage::Request => request,
            Stage::Verify => verify,
            Stage::Authorize => authorize,
            Stage::Upstream => upstream,
        }
    }
}

impl EncodeMetric for StageHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        for stage in Stage::ALL {
            let labels = [("stage", stage.as_str())];
            self.get(stage).encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `gateway_build_info{version} 1`.
#[derive(Debug)]
struct BuildInfo;

impl EncodeMetric for BuildInfo {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let labels = [
            ("version", crate::build_info::VERSION),
            ("commit", crate::build_info::COMMIT),
        ];
        encoder.encode_family(&labels)?.encode_gauge(&1_i64)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    /// The value of the sample line `series` (name and labels exactly as rendered).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.parse().unwrap())
        })
    }

    #[test]
    fn render_lists_every_family_with_its_type() {
        let m = Metrics::new();
        let text = m.render();
        for (family, kind) in [
            ("gateway_build_info", "gauge"),
            ("gateway_requests", "counter"),
            ("gateway_request_duration_seconds", "histogram"),
            ("gateway_sts_requests", "counter"),
            ("gateway_upstream_errors", "counter"),
            ("gateway_upstream_connections_opened", "counter"),
            ("gateway_upstream_connections_open", "gauge"),
            ("gateway_upstream_requests_in_flight", "gauge"),
            ("gateway_tls_handshake_errors", "counter"),
            ("gateway_reloads", "counter"),
            ("gateway_reload_failures", "counter"),
            ("gateway_reload_last_success_timestamp_seconds", "gauge"),
            ("gateway_audit_queue_depth", "gauge"),
            ("gateway_audit_queue_capacity", "gauge"),
            ("gateway_audit_records_dropped", "counter"),
            ("gateway_audit_records_written", "counter"),
            ("gateway_audit_write_errors", "counter"),
        ] {
            let line = format!("# TYPE {family} {kind}\n");
            assert!(text.contains(&line), "{line:?} missing from\n{text}");
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
        assert!(text.ends_with("# EOF\n"));
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(
                &text,
                &format!(
                    "gateway_build_info{{version=\"{version}\",commit=\"{}\"}}",
                    crate::build_info::COMMIT
                )
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "gateway_tls_handshake_errors_total{reason=\"timeout\"}"
            ),
            Some(0.0)
        );
        for stage in Stage::ALL {
            let s = stage.as_str();
            assert_eq!(
                sample(
                    &text,
                    &format!("gateway_request_duration_seconds_count{{stage=\"{s}\"}}")
                ),
                Some(0.0)
            );
        }
    }

    #[test]
    fn counters_move() {
        let m = Metrics::new();
        m.request("checkout", "order", "allow", "OK");
        m.request("checkout", "order", "allow", "OK");
        m.request("-", "-", "deny", "SignatureDoesNotMatch");
        m.sts("AssumeRole", "arn:aws:iam::111122223333:role/r", "OK");
        m.sts("Frobnicate", "-", "InvalidAction");
        m.tls_handshake_error("failed");
        m.set_reload("rules", 3, 1, 1_700_000_000);
        m.set_audit(5, 1024, 2, 40, 1);
        let text = m.render();
        let has = |series: &str, v: f64| {
            assert_eq!(sample(&text, series), Some(v), "{series} in\n{text}");
        };
        has(
            r#"gateway_requests_total{caller="checkout",target="order",decision="allow",code="OK"}"#,
            2.0,
        );
        has(
            r#"gateway_requests_total{caller="-",target="-",decision="deny",code="SignatureDoesNotMatch"}"#,
            1.0,
        );
        has(
            r#"gateway_sts_requests_total{action="AssumeRole",role="arn:aws:iam::111122223333:role/r",code="OK"}"#,
            1.0,
        );
        has(
            r#"gateway_sts_requests_total{action="other",role="-",code="InvalidAction"}"#,
            1.0,
        );
        has(
            r#"gateway_tls_handshake_errors_total{reason="failed"}"#,
            1.0,
        );
        has(r#"gateway_reloads_total{file="rules"}"#, 3.0);
        has(r#"gateway_reload_failures_total{file="rules"}"#, 1.0);
        has(
            r#"gateway_reload_last_success_timestamp_seconds{file="rules"}"#,
            1_700_000_000.0,
        );
        has("gateway_audit_queue_depth", 5.0);
        has("gateway_audit_queue_capacity", 1024.0);
        has("gateway_audit_records_dropped_total", 2.0);
        has("gateway_audit_records_written_total", 40.0);
        has("gateway_audit_write_errors_total", 1.0);

        // Mirrored values are absolute: setting again replaces, never adds.
        m.set_reload("rules", 4, 1, 1_700_000_060);
        let text = m.render();
        assert_eq!(
            sample(&text, r#"gateway_reloads_total{file="rules"}"#),
            Some(4.0)
        );
    }

    #[test]
    fn histograms_bucket_by_stage() {
        let m = Metrics::new();
        m.observe(Stage::Verify, Duration::from_micros(40));
        m.observe(Stage::Verify, Duration::from_micros(50));
        m.observe(Stage::Verify, Duration::from_millis(3));
        m.observe(Stage::Upstream, Duration::from_secs(60));
        let text = m.render();
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("{s} in\n{text}"));
        // le is inclusive: 50 µs lands in the 50 µs bucket. (The encoder writes `le`
        // before the family's own labels.)
        assert_eq!(
            v(r#"gateway_request_duration_seconds_bucket{le="0.00005",stage="verify"}"#),
            2.0
        );
        assert_eq!(
            v(r#"gateway_request_duration_seconds_bucket{le="0.0025",stage="verify"}"#),
            2.0
        );
        assert_eq!(
            v(r#"gateway_request_duration_seconds_bucket{le="0.005",stage="verify"}"#),
            3.0
        );
        assert_eq!(
            v(r#"gateway_request_duration_seconds_bucket{le="+Inf",stage="verify"}"#),
            3.0
        );
        assert_eq!(
            v(r#"gateway_request_duration_seconds_count{stage="verify"}"#),
            3.0
        );
        let sum = v(r#"gateway_request_duration_seconds_sum{stage="verify"}"#);
        assert!((sum - 0.00309).abs() < 1e-9, "{sum}");
        assert_eq!(
            v(r#"gateway_request_duration_seconds_bucket{le="10.0",stage="upstream"}"#),
            0.0
        );
        assert_eq!(
            v(r#"gateway_request_duration_seconds_bucket{le="+Inf",stage="upstream"}"#),
            1.0
        );
        assert_eq!(
            v(r#"gateway_request_duration_seconds_count{stage="request"}"#),
            0.0
        );
    }

    #[test]
    fn label_sets_past_the_cap_fold_into_other() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES_PER_FAMILY + 25 {
            m.request(&format!("caller-{i}"), "order", "allow", "OK");
        }
        // An existing series keeps counting under its own labels.
        m.request("caller-0", "order", "allow", "OK");
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("gateway_requests_total{"))
            .count();
        assert_eq!(series, MAX_SERIES_PER_FAMILY + 1);
        assert_eq!(
            sample(
                &text,
                r#"gateway_requests_total{caller="other",target="other",decision="other",code="other"}"#
            ),
            Some(25.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_requests_total{caller="caller-0",target="order",decision="allow",code="OK"}"#
            ),
            Some(2.0)
        );
        assert!(!text.contains(&format!("caller-{}\"", MAX_SERIES_PER_FAMILY + 20)));
        // Other families are not affected.
        m.sts("AssumeRole", "-", "OK");
        assert_eq!(
            sample(
                &m.render(),
                r#"gateway_sts_requests_total{action="AssumeRole",role="-",code="OK"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn label_values_are_escaped_and_compared_whole() {
        let m = Metrics::new();
        m.request("a\"b\n", "c", "allow", "OK");
        m.request("ab", "c", "allow", "OK");
        m.request("a", "bc", "allow", "OK");
        let text = m.render();
        assert!(text.contains(r#"caller="a\"b\n""#), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("gateway_requests_total{"))
                .count(),
            3
        );
    }

    #[test]
    fn upstream_handles_count_and_guards_release() {
        let m = Metrics::new();
        let up = m.upstream("order");
        let conn = up.connection_opened();
        let req = up.request_started();
        up.error(UpstreamErrorKind::Refused);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_connections_opened_total{target="order"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_connections_open{target="order"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_requests_in_flight{target="order"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_errors_total{target="order",kind="refused"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_errors_total{target="order",kind="tls"}"#
            ),
            Some(0.0)
        );
        drop((conn, req));
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_connections_open{target="order"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_requests_in_flight{target="order"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"gateway_upstream_connections_opened_total{target="order"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Metrics>();
        send_sync::<UpstreamMetrics>();
    }
}
