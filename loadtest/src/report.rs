//! What a run measured: throughput, the latency distribution (an HDR histogram, in
//! microseconds), status and error-code counts, and whether every response was the one
//! the scenario expected.

use crate::engine::Mode;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The highest latency the histogram holds, in microseconds (longer ones are counted
/// as this): one minute.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// How many examples of unexpected responses and transport errors a report keeps.
pub const MAX_EXAMPLES: usize = 8;

/// An empty latency histogram (1 µs to [`MAX_LATENCY_US`], 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()))
}

#[allow(clippy::panic)]
fn unreachable_histogram() -> Histogram<u64> {
    panic!("hdrhistogram refused fixed, valid bounds")
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The slowest.
    pub max: u64,
    /// The mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Counts for one route, or for the `tampered` and `expired` deny shares.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RouteCounts {
    /// What it should get (`2xx`, `403 AccessDenied`, ...).
    pub expect: String,
    /// Responses received.
    pub responses: u64,
    /// Responses that were the expected one.
    pub expected: u64,
    /// Responses that were not.
    pub unexpected: u64,
    /// Requests that got no response.
    pub transport_errors: u64,
}

/// How well an open-loop run kept its schedule.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Schedule {
    /// The arrival rate asked for, requests a second.
    pub rate: u64,
    /// Requests the schedule had in the measured window (rate × duration).
    pub scheduled: u64,
    /// Of those, requests handed to the client (the rest could not be sent: too many
    /// in flight).
    pub sent: u64,
    /// How far behind its intended time the latest send was, in microseconds.
    pub max_lag_us: u64,
    /// The mean of that lag, in microseconds.
    pub mean_lag_us: f64,
    /// Sends more than a millisecond late.
    pub late_over_1ms: u64,
}

impl Schedule {
    fn merge(&mut self, o: &Schedule) {
        // The mean is over every scheduled request (sent or not), so weigh by those.
        let n = self.scheduled + o.scheduled;
        if n > 0 {
            self.mean_lag_us = (self.mean_lag_us * self.scheduled as f64
                + o.mean_lag_us * o.scheduled as f64)
                / n as f64;
        }
        self.scheduled += o.scheduled;
        self.sent += o.sent;
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
        self.late_over_1ms += o.late_over_1ms;
    }
}

/// The report of one run (or of several merged).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The target's name.
    pub target: String,
    /// The target's base URL.
    pub url: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    /// Open loop at a rate, or closed loop with a concurrency.
    pub mode: Mode,
    /// TCP connections the client used (at most).
    pub connections: usize,
    /// Runs merged into this report.
    pub rounds: u32,
    /// The measured time (after warmup), seconds, summed over rounds.
    pub duration_secs: f64,
    /// The warmup before each measured window, seconds (its results are discarded).
    pub warmup_secs: f64,
    /// Requests sent in the measured window: responses plus transport errors.
    pub requests: u64,
    /// Responses received (of any status).
    pub responses: u64,
    /// Responses that arrived within the measured window, whatever their send time:
    /// what the throughput counts (an open loop's backlog answered after the window is
    /// not the target's rate in it).
    pub answered_in_window: u64,
    /// Responses a second: those answered within the measured window over its length.
    pub throughput_rps: f64,
    /// Latency of the responses, microseconds. Open loop: from the intended send time
    /// to the end of the response body (waiting for a connection counts); closed loop:
    /// from the send to the end of the body.
    pub latency_us: Latency,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses by error code (`x-amzn-ErrorType`).
    pub codes: BTreeMap<String, u64>,
    /// Counts per route, plus `tampered` and `expired` for the deny shares.
    pub routes: BTreeMap<String, RouteCounts>,
    /// Responses that were the expected one.
    pub expected: u64,
    /// Responses that were not (an allowed request that got 403 is one; so is a request
    /// that should have been denied and got 200).
    pub unexpected: u64,
    /// Requests that got no response (connect, TLS, reset, timeout).
    pub transport_errors: u64,
    /// Transport errors by kind.
    pub transport_error_kinds: BTreeMap<String, u64>,
    /// Open loop: scheduled requests that could not be sent because too many were in
    /// flight (errors, not silently skipped).
    pub not_sent: u64,
    /// The first few unexpected responses and transport errors, described.
    pub examples: Vec<String>,
    /// Open loop: how well the schedule was kept.
    pub schedule: Option<Schedule>,
    /// The mean cost of signing one request with `aws-sigv4` on this machine, measured
    /// before the run over the scenario's own requests, microseconds.
    pub signing_us_per_request: f64,
    /// Every request got its expected response: no unexpected response, no transport
    /// error, nothing left unsent.
    pub all_expected: bool,
    /// The latency histogram (microseconds), for merging rounds and plotting.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl Report {
    /// An empty report for `target` at `url`.
    pub fn empty(target: &str, url: &str, protocol: &str, mode: Mode) -> Report {
        Report {
            target: target.to_string(),
            url: url.to_string(),
            protocol: protocol.to_string(),
            mode,
            connections: 0,
            rounds: 1,
            duration_secs: 0.0,
            warmup_secs: 0.0,
            requests: 0,
            responses: 0,
            answered_in_window: 0,
            throughput_rps: 0.0,
            latency_us: Latency::default(),
            statuses: BTreeMap::new(),
            codes: BTreeMap::new(),
            routes: BTreeMap::new(),
            expected: 0,
            unexpected: 0,
            transport_errors: 0,
            transport_error_kinds: BTreeMap::new(),
            not_sent: 0,
            examples: Vec::new(),
            schedule: None,
            signing_us_per_request: 0.0,
            all_expected: true,
            histogram: new_histogram(),
        }
    }

    /// No unexpected response, no transport error, nothing left unsent.
    pub fn ok(&self) -> bool {
        self.unexpected == 0 && self.transport_errors == 0 && self.not_sent == 0
    }

    /// Recomputes the derived fields (latency, throughput, `all_expected`) from the
    /// histogram and counts.
    pub fn finish(&mut self) {
        self.latency_us = Latency::of(&self.histogram);
        self.throughput_rps = if self.duration_secs > 0.0 {
            self.answered_in_window as f64 / self.duration_secs
        } else {
            0.0
        };
        self.all_expected = self.ok();
    }

    /// Adds another run (a later round against the same target) to this one: counts
    /// and histograms add up, durations too, so throughput is over all rounds.
    pub fn merge(&mut self, other: &Report) {
        let weight = |r: &Report| r.requests.max(1) as f64;
        self.signing_us_per_request = (self.signing_us_per_request * weight(self)
            + other.signing_us_per_request * weight(other))
            / (weight(self) + weight(other));
        self.rounds += other.rounds;
        self.connections = self.connections.max(other.connections);
        self.duration_secs += other.duration_secs;
        self.requests += other.requests;
        self.responses += other.responses;
        self.answered_in_window += other.answered_in_window;
        add_all(&mut self.statuses, &other.statuses);
        add_all(&mut self.codes, &other.codes);
        for (name, c) in &other.routes {
            let mine = self.routes.entry(name.clone()).or_default();
            if mine.expect.is_empty() {
                mine.expect.clone_from(&c.expect);
            }
            mine.responses += c.responses;
            mine.expected += c.expected;
            mine.unexpected += c.unexpected;
            mine.transport_errors += c.transport_errors;
        }
        self.expected += other.expected;
        self.unexpected += other.unexpected;
        self.transport_errors += other.transport_errors;
        add_all(
            &mut self.transport_error_kinds,
            &other.transport_error_kinds,
        );
        self.not_sent += other.not_sent;
        for e in &other.examples {
            if self.examples.len() < MAX_EXAMPLES {
                self.examples.push(e.clone());
            }
        }
        match (&mut self.schedule, &other.schedule) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.schedule = Some(*b),
            _ => {}
        }
        // Both histograms have the same bounds, so adding cannot fail; if it ever did,
        // count the values one by one (saturating at the bound).
        if self.histogram.add(&other.histogram).is_err() {
            for v in other.histogram.iter_recorded() {
                let _ = self.histogram.record_n(
                    v.value_iterated_to().min(MAX_LATENCY_US),
                    v.count_at_value(),
                );
            }
        }
        self.finish();
    }

    /// The report as text, for a terminal.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "target      {} {} ({})",
            self.target, self.url, self.protocol
        );
        let mode = match self.mode {
            Mode::Open { rate } => format!("open loop at {rate} req/s"),
            Mode::Closed { concurrency } => format!("closed loop, {concurrency} concurrent"),
        };
        let rounds = if self.rounds > 1 {
            format!(" over {} rounds", self.rounds)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "mode        {mode}, {} connections; {:.1} s measured{rounds} after {:.1} s warmup",
            self.connections, self.duration_secs, self.warmup_secs
        );
        let _ = writeln!(
            o,
            "requests    {} sent, {} answered: {:.1} responses/s",
            self.requests, self.responses, self.throughput_rps
        );
        let l = &self.latency_us;
        let _ = writeln!(
            o,
            "latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
            fmt_us(l.p50 as f64),
            fmt_us(l.p90 as f64),
            fmt_us(l.p99 as f64),
            fmt_us(l.p999 as f64),
            fmt_us(l.max as f64),
            fmt_us(l.mean)
        );
        let _ = writeln!(o, "statuses    {}", join_counts(&self.statuses));
        if !self.codes.is_empty() {
            let _ = writeln!(o, "codes       {}", join_counts(&self.codes));
        }
        if self.routes.len() > 1
            || self
                .routes
                .keys()
                .any(|k| k == "tampered" || k == "expired")
        {
            let width = self.routes.keys().map(String::len).max().unwrap_or(0);
            let _ = writeln!(o, "routes");
            for (name, c) in &self.routes {
                let _ = write!(
                    o,
                    "  {name:<width$}  {:>8} responses  expect {:<26}  {} as expected",
                    c.responses, c.expect, c.expected
                );
                if c.unexpected > 0 {
                    let _ = write!(o, ", {} NOT", c.unexpected);
                }
                if c.transport_errors > 0 {
                    let _ = write!(o, ", {} transport errors", c.transport_errors);
                }
                o.push('\n');
            }
        }
        if self.transport_errors > 0 {
            let _ = writeln!(
                o,
                "errors      {} transport errors: {}",
                self.transport_errors,
                join_counts(&self.transport_error_kinds)
            );
        }
        if self.not_sent > 0 {
            let _ = writeln!(
                o,
                "not sent    {} scheduled requests (too many in flight)",
                self.not_sent
            );
        }
        if let Some(s) = &self.schedule {
            let _ = writeln!(
                o,
                "schedule    {} of {} scheduled sent; behind schedule by at most {} (mean {}), {} sends over 1 ms late",
                s.sent,
                s.scheduled,
                fmt_us(s.max_lag_us as f64),
                fmt_us(s.mean_lag_us),
                s.late_over_1ms
            );
        }
        let signing_share = self.signing_us_per_request * self.throughput_rps / 1e6 * 100.0;
        let _ = writeln!(
            o,
            "signing     {} per request with aws-sigv4 (about {signing_share:.1}% of one core at this rate)",
            fmt_us(self.signing_us_per_request)
        );
        for e in &self.examples {
            let _ = writeln!(o, "  example: {e}");
        }
        let _ = writeln!(
            o,
            "all responses as expected: {}",
            if self.ok() { "yes" } else { "no" }
        );
        o
    }
}

fn add_all<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

fn join_counts<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Microseconds, readably: `850 µs`, `1.25 ms`, `2.50 s`.
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn report(latencies: &[u64], unexpected: u64) -> Report {
        let mut r = Report::empty("t", "http://x", "HTTP/1.1", Mode::Closed { concurrency: 1 });
        for l in latencies {
            r.histogram.record(*l).unwrap();
        }
        r.requests = latencies.len() as u64;
        r.responses = r.requests;
        r.answered_in_window = r.responses;
        r.unexpected = unexpected;
        r.expected = r.requests - unexpected;
        r.duration_secs = 1.0;
        r.finish();
        r
    }

    #[test]
    fn merges_rounds() {
        let mut a = report(&[100, 200, 300], 0);
        let b = report(&[400, 500], 1);
        assert!(a.ok());
        a.merge(&b);
        assert_eq!(a.requests, 5);
        assert_eq!(a.rounds, 2);
        assert_eq!(a.duration_secs, 2.0);
        assert_eq!(a.throughput_rps, 2.5);
        assert_eq!(a.latency_us.max, 500);
        assert!(!a.ok());
        assert!(!a.all_expected);
        let text = a.render_text();
        assert!(text.contains("all responses as expected: no"), "{text}");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["unexpected"], 1);
        assert_eq!(json["mode"]["kind"], "closed");
    }

    #[test]
    fn throughput_counts_answers_within_the_window() {
        // An open loop past capacity: 100 requests sent in a 1 s window, answered over
        // 2 s; 50 of the answers arrived within the window.
        let mut a = report(&[100; 100], 0);
        a.answered_in_window = 50;
        a.finish();
        assert_eq!(a.throughput_rps, 50.0);
        let mut b = report(&[100; 10], 0);
        b.answered_in_window = 10;
        b.finish();
        a.merge(&b);
        assert_eq!(a.responses, 110);
        assert_eq!(a.throughput_rps, 30.0);
    }

    #[test]
    fn schedule_lag_means_merge_over_scheduled_requests() {
        // The mean lag is over the scheduled requests (the scheduler's sum / scheduled),
        // sent or not: merging weighs by those.
        let mut a = Schedule {
            rate: 10,
            scheduled: 100,
            sent: 10,
            mean_lag_us: 1000.0,
            ..Schedule::default()
        };
        let b = Schedule {
            rate: 10,
            scheduled: 100,
            sent: 100,
            mean_lag_us: 0.0,
            ..Schedule::default()
        };
        a.merge(&b);
        assert_eq!(a.mean_lag_us, 500.0);
        assert_eq!((a.scheduled, a.sent), (200, 110));
    }
}
