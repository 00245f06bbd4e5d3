//! A process's memory from `/proc/PID/status` (Linux), and `loadtest compare --memory`:
//! the gateway's resident set after 10,000 requests, after 1,000,000, and while it holds
//! 1,000 open connections.
//!
//! `VmRSS` is the resident set now (anonymous + file-backed + shared pages, in KiB);
//! `VmHWM` is its high-water mark since the process started. Both come from the kernel's
//! own accounting, read without attaching to the process.

use crate::compare::{self, CompareArgs};
use crate::engine::{Mode, RunSpec};
use crate::mesh::{Mesh, TargetKind};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::Duration;

/// The resident set of process `pid` now (`VmRSS`, KiB); `None` if it is gone or this is
/// not Linux.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(&read_status(pid)?, "VmRSS")
}

/// The peak resident set of process `pid` since it started (`VmHWM`, KiB).
pub fn peak_kib(pid: u32) -> Option<u64> {
    status_field(&read_status(pid)?, "VmHWM")
}

fn read_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The value of a `Name:   1234 kB` line of `/proc/PID/status`, in KiB.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (key, rest) = line.split_once(':')?;
        if key != name {
            return None;
        }
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

/// KiB as MiB with one decimal: `14.2 MiB`.
pub fn mib(kib: u64) -> String {
    // Memory sizes stay far below 2^52 KiB, where f64 would round.
    #[allow(clippy::cast_precision_loss)]
    let m = kib as f64 / 1024.0;
    format!("{m:.1} MiB")
}

/// `Some(kib)` as MiB, `None` as `-`.
pub fn mib_opt(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_string(), mib)
}

/// One memory reading of the gateway: after how many requests it had served, and its
/// resident set then.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Reading {
    /// What the reading is (`start`, `baseline`, `end`, `connections`).
    pub label: String,
    /// Requests the gateway had counted (`gateway_requests_total`) at the reading.
    pub requests: u64,
    /// `VmRSS` in KiB.
    pub rss_kib: Option<u64>,
    /// `VmHWM` in KiB.
    pub peak_kib: Option<u64>,
}

/// What `--memory` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryReport {
    /// The readings in order: start, after the baseline requests, after all requests,
    /// and the largest sample while the connections were open.
    pub readings: Vec<Reading>,
    /// Growth of `VmRSS` from the baseline reading to the end reading, in percent.
    pub growth_percent: Option<f64>,
    /// The largest `VmRSS` sampled (every 50 ms) while `open_connections` connections
    /// were open.
    pub rss_with_connections_kib: Option<u64>,
    /// How many connections were held open for that sample.
    pub open_connections: usize,
    /// Every load run answered as expected.
    pub ok: bool,
}

/// `loadtest compare --memory`: starts the upstream and the gateway, sends
/// `--baseline-requests` requests (the gateway's own count), reads its memory, goes on
/// to `--requests` in total, reads it again, then holds `--open-connections` HTTP/1.1
/// connections busy (closed loop, one request in flight on each) while sampling.
pub async fn memory(args: &CompareArgs) -> Result<bool, String> {
    let options = compare::mesh_options(args, &[TargetKind::Gateway])?;
    let scenario = compare::scenario(args, &options.key)?;
    let mesh = Mesh::start(options).await?;
    compare::pin_self(&mesh);
    let pid = mesh.gateway_pid();
    let target = mesh.target(TargetKind::Gateway)?;
    println!("{}", mesh.describe());
    let mut readings = Vec::new();
    let mut ok = true;
    let read = |label: &str, requests: u64| Reading {
        label: label.to_string(),
        requests,
        rss_kib: rss_kib(pid),
        peak_kib: peak_kib(pid),
    };
    let start = read("start", mesh.gateway_requests().await.unwrap_or(0));
    println!(
        "start: RSS {} (peak {})",
        mib_opt(start.rss_kib),
        mib_opt(start.peak_kib)
    );
    readings.push(start);
    let base_mode = args.engine_mode()?;
    let spec = RunSpec {
        target: target.clone(),
        mode: base_mode,
        duration: Duration::from_millis(500),
        warmup: Duration::ZERO,
        connections: args.connection_count(),
        progress: false,
    };
    let goals = [
        ("baseline", args.baseline_requests),
        ("end", args.requests.max(args.baseline_requests)),
    ];
    let mut rate: Option<f64> = None;
    // A live count on a terminal only (a `\r` line would litter a log file).
    let live = std::io::stderr().is_terminal();
    for (label, goal) in goals {
        loop {
            let served = mesh.gateway_requests().await.ok_or_else(|| {
                "cannot read gateway_requests_total from the gateway's /metrics".to_string()
            })?;
            if served >= goal {
                if live {
                    eprint!("\r\x1b[2K");
                }
                let r = read(label, served);
                println!(
                    "after {served} requests: RSS {} (peak {})",
                    mib_opt(r.rss_kib),
                    mib_opt(r.peak_kib)
                );
                readings.push(r);
                break;
            }
            let spec = RunSpec {
                duration: chunk(goal - served, rate),
                ..spec.clone()
            };
            let report = crate::engine::run(&spec, &scenario).await?;
            ok &= report.ok();
            let s = compare::Summary::of(&report);
            if s.requests == 0 {
                return Err(format!(
                    "the gateway answered no request in {:?}:\n{}",
                    spec.duration,
                    report.render_text()
                ));
            }
            rate = Some(s.rps);
            if live {
                eprint!("\r  {served} of {goal} requests, {:.0} req/s", s.rps);
            }
        }
    }
    let growth = match (
        readings.iter().find(|r| r.label == "baseline"),
        readings.iter().find(|r| r.label == "end"),
    ) {
        (
            Some(Reading {
                rss_kib: Some(b), ..
            }),
            Some(Reading {
                rss_kib: Some(e), ..
            }),
        ) if *b > 0 => {
            #[allow(clippy::cast_precision_loss)]
            let g = (*e as f64 - *b as f64) / *b as f64 * 100.0;
            Some(g)
        }
        _ => None,
    };
    // Many connections, each with one request in flight: HTTP/1.1 so that every
    // connection is its own TCP and TLS session in the gateway.
    let n = args.open_connections;
    println!("holding {n} connections open for {:?} ...", args.hold);
    let spec = RunSpec {
        target: crate::engine::Target {
            http2: false,
            ..target
        },
        mode: Mode::Closed { concurrency: n },
        duration: args.hold,
        warmup: Duration::from_secs(1),
        connections: n,
        progress: false,
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut max: Option<u64> = None;
        loop {
            if let Some(kib) = rss_kib(pid) {
                max = Some(max.map_or(kib, |m: u64| m.max(kib)));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop_rx.changed() => break,
            }
        }
        max
    });
    let held = crate::engine::run(&spec, &scenario).await;
    let _ = stop_tx.send(true);
    let with_connections = sampler.await.unwrap_or(None);
    let held = held?;
    ok &= held.ok();
    let served = mesh.gateway_requests().await.unwrap_or(0);
    readings.push(Reading {
        label: "connections".to_string(),
        requests: served,
        rss_kib: with_connections,
        peak_kib: peak_kib(pid),
    });
    let report = MemoryReport {
        readings,
        growth_percent: growth,
        rss_with_connections_kib: with_connections,
        open_connections: n,
        ok,
    };
    print!("{}", render(&report, args));
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| format!("cannot write JSON: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    mesh.finish(args.keep.is_some());
    Ok(ok)
}

/// How long the next load run lasts: about as long as `remaining` requests take at the
/// last rate, from 100 ms to 5 s (the first run, rate unknown, lasts 250 ms).
fn chunk(remaining: u64, rate: Option<f64>) -> Duration {
    match rate {
        Some(r) if r > 0.0 => {
            #[allow(clippy::cast_precision_loss)]
            let secs = remaining as f64 / r;
            Duration::from_secs_f64(secs.clamp(0.1, 5.0))
        }
        _ => Duration::from_millis(250),
    }
}

/// The memory report as text.
pub fn render(report: &MemoryReport, args: &CompareArgs) -> String {
    let mut out = String::from("\ngateway memory\n");
    for r in &report.readings {
        let what = match r.label.as_str() {
            "start" => "at start".to_string(),
            "baseline" | "end" => format!("after {} requests", r.requests),
            "connections" => format!(
                "with {} connections open (largest sample)",
                report.open_connections
            ),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "  {what:<48} RSS {:>10}   peak {:>10}",
            mib_opt(r.rss_kib),
            mib_opt(r.peak_kib)
        );
    }
    let count = |label: &str| {
        report
            .readings
            .iter()
            .find(|r| r.label == label)
            .map_or(0, |r| r.requests)
    };
    match report.growth_percent {
        Some(g) => {
            let _ = writeln!(
                out,
                "  RSS growth from {} to {} requests: {g:+.1}%",
                count("baseline"),
                count("end")
            );
        }
        None => out.push_str("  growth: not measured (no /proc reading)\n"),
    }
    let _ = writeln!(out, "  {}", compare::setup_line(args));
    if !report.ok {
        out.push_str("  some responses were not as expected (see the reports above)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const STATUS: &str = "Name:\tgateway\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  812345 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   15000 kB\nThreads:\t3\n";

    #[test]
    fn reads_fields_in_kib() {
        assert_eq!(status_field(STATUS, "VmRSS"), Some(15000));
        assert_eq!(status_field(STATUS, "VmHWM"), Some(20480));
        assert_eq!(status_field(STATUS, "Threads"), Some(3));
        assert_eq!(status_field(STATUS, "VmSwap"), None);
        assert_eq!(status_field(STATUS, "State"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let rss = rss_kib(pid).unwrap();
        let peak = peak_kib(pid).unwrap();
        // Not `peak >= rss`: the kernel updates VmHWM lazily, so it can trail a VmRSS
        // read a moment earlier while other threads allocate.
        assert!(rss > 0 && peak > 0, "rss {rss} peak {peak}");
        assert_eq!(rss_kib(u32::MAX), None);
    }

    #[test]
    fn chunks_are_bounded() {
        assert_eq!(chunk(10, None), Duration::from_millis(250));
        assert_eq!(chunk(1, Some(1000.0)), Duration::from_millis(100));
        assert_eq!(chunk(1_000_000, Some(1000.0)), Duration::from_secs(5));
        assert_eq!(mib(15360), "15.0 MiB");
    }
}
