//! The live progress line on standard error, rewritten in place (`\r`) every second:
//! elapsed time, the rate of the last second, errors, unexpected responses and the
//! p50/p99 latency measured so far.

use crate::engine::Shared;
use crate::report::fmt_us;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running progress line.
pub(crate) struct Progress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts printing for a run that starts at `start`, measures from `measure_from`
    /// and ends at `end`.
    pub(crate) fn start(
        shared: Arc<Shared>,
        start: Instant,
        measure_from: Instant,
        end: Instant,
    ) -> Progress {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(start + Duration::from_secs(1)),
                Duration::from_secs(1),
            );
            let mut last_count = 0u64;
            let mut last_at = start;
            let mut width = 0;
            loop {
                let at = tokio::select! {
                    _ = &mut stopped => break,
                    at = tick.tick() => at.into_std(),
                };
                let now = Instant::now();
                let count = shared.stats.completed.load(Ordering::Relaxed);
                let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
                let rate = (count - last_count.min(count)) as f64 / secs;
                last_count = count;
                last_at = now;
                let line = line(
                    &shared,
                    at.saturating_duration_since(start),
                    at <= measure_from,
                    at > end,
                    rate,
                );
                width = width.max(line.chars().count());
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{line:<width$}");
                let _ = err.flush();
            }
            if width > 0 {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{:width$}\r", "");
                let _ = err.flush();
            }
        });
        Progress { stop, task }
    }

    /// Stops and clears the line.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn line(shared: &Shared, elapsed: Duration, warming: bool, draining: bool, rate: f64) -> String {
    let s = shared.stats.snapshot();
    let phase = if warming {
        "warmup "
    } else if draining {
        "drain  "
    } else {
        ""
    };
    let (p50, p99) = if s.responses == 0 {
        ("-".to_string(), "-".to_string())
    } else {
        (fmt_us(s.p50 as f64), fmt_us(s.p99 as f64))
    };
    format!(
        "{phase}{:>5.0}s  {:>7.0} req/s  {} responses  {} errors  {} unexpected  p50 {p50}  p99 {p99}  {} in flight",
        elapsed.as_secs_f64(),
        rate,
        s.responses,
        s.errors,
        s.unexpected,
        shared.stats.in_flight.load(Ordering::Relaxed),
    )
}
