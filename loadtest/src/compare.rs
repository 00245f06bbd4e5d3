//! `loadtest compare`: the same signed requests against the upstream directly, through
//! a plain nginx reverse proxy and through the gateway, in alternating rounds of one
//! run (direct, nginx, gateway, direct, nginx, gateway, ...), so the gateway's cost is
//! a ratio against the most common alternative, measured on the same machine at the
//! same time. `--memory` measures the gateway's memory instead.
//!
//! The servers (nginx upstream, nginx proxy, gateway) are started by [`crate::mesh`] in
//! a work dir and stopped at the end, also on an error or Ctrl-C.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::engine::{Mode, RunSpec};
use crate::mesh::{self, Audit, Mesh, MeshOptions, TargetKind};
use crate::report::{Report, fmt_us};
use crate::rss;
use crate::scenario::{CredentialSource, Credentials, Scenario};

/// Closed or open loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    /// A fixed number of requests in flight (`--concurrency`): measures the most each
    /// target serves.
    Closed,
    /// A fixed arrival rate (`--rate`), whatever the latency: measures latency at a
    /// given load (for "added p99 at half the maximum rate").
    Open,
}

/// Compare the gateway with nginx as a plain reverse proxy and with the upstream
/// called directly, on this machine, in one run.
///
/// Starts, on 127.0.0.1 in a temporary work dir: an nginx upstream serving a 100-byte
/// file, a second nginx as a reverse proxy in front of it (no auth), and the gateway
/// (`gateway run`: full SigV4 verification, authorization and the identity assertion)
/// in front of the same upstream. Then sends the same signed requests (GET /bench/x) to
/// each target in turn, round after round (direct, nginx, gateway, direct, ...),
/// printing each round as it ends, and finally the merged results per target and the
/// ratios: gateway/nginx and gateway/direct throughput, and the latency each proxy adds.
/// TLS everywhere by default (--plain: plain HTTP everywhere).
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "\
Starts on 127.0.0.1, in a temporary work dir: an nginx upstream serving a 100-byte
file (target `direct`), a second nginx as a plain reverse proxy in front of it, no
auth (`nginx`), and the gateway with full SigV4 verification, authorization and the
identity assertion in front of the same upstream (`gateway`). Sends the same signed
requests (GET /bench/x) to each in alternating rounds (direct, nginx, gateway,
direct, ...) and prints each round, then per target throughput and latency
percentiles, the ratios (gateway/nginx, gateway/direct throughput; latency added
over direct and over nginx) and the gateway's RSS. Everything is stopped at the end,
on an error and on Ctrl-C.

Examples:
  loadtest compare                                 # TLS, HTTP/1.1, closed loop, 4 rounds of 5 s
  loadtest compare --plain --concurrency 128       # plain HTTP everywhere
  loadtest compare --mode open --rate 20000        # latency at a fixed rate
  loadtest compare --http2 --pin --json out.json --plot latency.svg
  loadtest compare --targets nginx,gateway --rounds 10 --round 10s
  loadtest compare --memory                        # gateway RSS after 10,000 and 1,000,000
                                                   # requests, and with 1,000 connections open
  loadtest compare --keep /tmp/cmp --rounds 1      # keep configs and logs

Needs nginx (Debian/Ubuntu: apt-get install nginx-light) and the gateway binary
(cargo build --release -p gateway: looked for next to loadtest; build both with
--release for numbers that mean anything).

Exit status: 0 when every response was as expected, 1 when not, 2 when the run could
not be made.")]
pub struct CompareArgs {
    /// The gateway executable [default: `gateway` next to this loadtest executable].
    #[arg(long, value_name = "PATH")]
    pub gateway_bin: Option<PathBuf>,
    /// The nginx executable [default: `nginx` on PATH, else /usr/sbin/nginx].
    #[arg(long, value_name = "PATH")]
    pub nginx: Option<PathBuf>,
    /// TLS everywhere: client to each target, and each proxy to the upstream (the
    /// default).
    #[arg(long, overrides_with = "plain")]
    pub tls: bool,
    /// Plain HTTP everywhere instead of TLS.
    #[arg(long, overrides_with = "tls")]
    pub plain: bool,
    /// HTTP/2 from the client to every target (h2 by ALPN; prior knowledge with
    /// --plain). Both proxies still speak HTTP/1.1 to the upstream.
    #[arg(long)]
    pub http2: bool,
    /// Closed loop (fixed concurrency) or open loop (fixed rate).
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: ModeArg,
    /// Closed loop: requests in flight.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,
    /// Open loop: requests a second (required with --mode open).
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
    /// TCP connections per target [default: HTTP/1.1 --concurrency in closed loop and
    /// 64 in open loop; HTTP/2 2].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// The length of one round against one target (500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
    pub round: Duration,
    /// Rounds: each target gets this many, alternating.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub rounds: u32,
    /// Warmup before a target's first round (discarded); later rounds warm up for a
    /// tenth of it (at least 100 ms). Connections are opened before any warmup.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "TIME")]
    pub warmup: Duration,
    /// Request body size; with a body the requests are POSTs (GETs without).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub body_bytes: usize,
    /// A scenario file instead of GET /bench/x: its allowed routes, with static keys
    /// only (the upstream answers any path; each route's first path segment becomes a
    /// proxy location and a gateway target, and its keys are given to the gateway).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// The gateway's audit log: `file` (audit.log in the work dir, as in production) or
    /// `off`. nginx's access log is always off.
    #[arg(long, value_enum, default_value = "file")]
    pub audit: Audit,
    /// RUST_LOG for the gateway (its log goes to gateway.log in the work dir; its
    /// per-request lines are at `debug`).
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub gateway_log: String,
    /// Pin the load generator to CPU 0 and nginx and the gateway to CPU 1 (with
    /// `taskset`; skipped with a note if taskset or a second CPU is missing).
    #[arg(long)]
    pub pin: bool,
    /// The order and subset of targets.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,nginx,gateway",
        value_name = "LIST"
    )]
    pub targets: Vec<TargetKind>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the latency distributions as an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Use DIR as the work dir and keep it (configs, certificates, logs, audit log).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Measure the gateway's memory instead: RSS after --baseline-requests and after
    /// --requests requests (growth in %), and with --open-connections connections open.
    #[arg(long)]
    pub memory: bool,
    /// --memory: requests in total before the last reading.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub requests: u64,
    /// --memory: requests before the baseline reading.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub baseline_requests: u64,
    /// --memory: connections held open (HTTP/1.1, one request in flight on each).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub open_connections: usize,
    /// --memory: how long those connections are held busy.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
    pub hold: Duration,
}

impl CompareArgs {
    /// TLS unless `--plain`.
    pub fn tls(&self) -> bool {
        !self.plain
    }

    /// The engine's mode.
    pub fn engine_mode(&self) -> Result<Mode, String> {
        match self.mode {
            ModeArg::Closed => {
                if self.concurrency == 0 {
                    return Err("--concurrency must be at least 1".into());
                }
                Ok(Mode::Closed {
                    concurrency: self.concurrency,
                })
            }
            ModeArg::Open => match self.rate {
                Some(rate) if rate > 0 => Ok(Mode::Open { rate }),
                _ => Err("--mode open needs --rate N (requests a second)".into()),
            },
        }
    }

    /// `--connections`, or its default.
    pub fn connection_count(&self) -> usize {
        self.connections.unwrap_or(match (self.mode, self.http2) {
            (_, true) => 2,
            (ModeArg::Closed, false) => self.concurrency,
            (ModeArg::Open, false) => 64,
        })
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 5s or 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a usable duration"))
}

/// Throughput and count of a report.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Responses received.
    pub requests: u64,
    /// Responses a second.
    pub rps: f64,
}

impl Summary {
    /// The summary of `r`.
    pub fn of(r: &Report) -> Summary {
        Summary {
            requests: r.responses,
            rps: r.throughput_rps,
        }
    }
}

/// One finished round of one target.
#[derive(Clone, Debug, Serialize)]
pub struct RoundResult {
    /// 1-based round number.
    pub round: u32,
    /// The target.
    pub target: TargetKind,
    /// Responses a second.
    pub throughput_rps: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Every response as expected.
    pub ok: bool,
    /// The gateway's RSS right after this round, KiB.
    pub gateway_rss_kib: Option<u64>,
}

/// The gateway's side of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GatewayStats {
    /// The process id.
    pub pid: u32,
    /// `VmRSS` before the first round, KiB.
    pub rss_start_kib: Option<u64>,
    /// `VmRSS` after each round (of any target), KiB.
    pub rss_after_round_kib: Vec<Option<u64>>,
    /// `VmRSS` at the end, KiB.
    pub rss_end_kib: Option<u64>,
    /// `VmHWM` at the end, KiB.
    pub peak_kib: Option<u64>,
    /// Requests the gateway counted (`gateway_requests_total`, warmups included).
    pub requests_served: Option<u64>,
    /// Audit records written (`gateway_audit_records_written_total`).
    pub audit_records_written: Option<u64>,
    /// Audit records dropped because the queue was full.
    pub audit_records_dropped: Option<u64>,
}

/// The comparisons between targets (absent when a target was not run).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratios {
    /// Gateway throughput / nginx throughput.
    pub gateway_over_nginx_throughput: Option<f64>,
    /// Gateway throughput / direct throughput.
    pub gateway_over_direct_throughput: Option<f64>,
    /// nginx throughput / direct throughput.
    pub nginx_over_direct_throughput: Option<f64>,
    /// Gateway p50 − direct p50, µs: the latency the gateway adds.
    pub gateway_minus_direct_p50_us: Option<i64>,
    /// Gateway p99 − direct p99, µs.
    pub gateway_minus_direct_p99_us: Option<i64>,
    /// nginx p50 − direct p50, µs: the latency nginx adds.
    pub nginx_minus_direct_p50_us: Option<i64>,
    /// nginx p99 − direct p99, µs.
    pub nginx_minus_direct_p99_us: Option<i64>,
    /// Gateway p50 − nginx p50, µs.
    pub gateway_minus_nginx_p50_us: Option<i64>,
    /// Gateway p99 − nginx p99, µs.
    pub gateway_minus_nginx_p99_us: Option<i64>,
}

/// How the run was set up.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// TLS everywhere (else plain HTTP).
    pub tls: bool,
    /// HTTP/2 from the client.
    pub http2: bool,
    /// Closed or open loop.
    pub mode: Mode,
    /// TCP connections per target.
    pub connections: usize,
    /// Seconds per round.
    pub round_secs: f64,
    /// Rounds per target.
    pub rounds: u32,
    /// Warmup before each target's first round, seconds.
    pub warmup_secs: f64,
    /// Request body bytes (GET /bench/x without a scenario).
    pub body_bytes: usize,
    /// The scenario file, if any.
    pub scenario: Option<PathBuf>,
    /// The gateway's audit sink.
    pub audit: Audit,
    /// The gateway's `RUST_LOG`.
    pub gateway_log: String,
    /// Load generator on CPU 0, servers on CPU 1.
    pub pinned: bool,
    /// The targets in round order.
    pub targets: Vec<TargetKind>,
    /// What runs where.
    pub description: String,
}

/// Everything `loadtest compare` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// How it was run.
    pub setup: Setup,
    /// Each round as it finished.
    pub rounds: Vec<RoundResult>,
    /// Per target, all its rounds merged, in round order.
    pub targets: Vec<Report>,
    /// Ratios and differences between targets.
    pub ratios: Ratios,
    /// The gateway's memory and counters, when it ran.
    pub gateway: Option<GatewayStats>,
    /// Every response of every target as expected.
    pub all_expected: bool,
}

/// Runs `loadtest compare`; `Ok(true)` when every response was as expected.
/// Ctrl-C (SIGINT), SIGTERM or SIGHUP stops the run and the servers it started.
pub async fn main(args: CompareArgs) -> Result<bool, String> {
    tokio::select! {
        result = async {
            if args.memory {
                rss::memory(&args).await
            } else {
                compare(&args).await
            }
        } => result,
        signal = stop_signal() => Err(format!("{signal}: stopped, and so were nginx and the gateway")),
    }
}

/// The next signal of `s`; never, without one.
async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Waits for SIGINT, SIGTERM or SIGHUP; returns its name. (Dropping the run then drops
/// the mesh, which stops the children.)
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        () = recv(term.as_mut()) => "terminated",
        () = recv(hup.as_mut()) => "hung up",
    }
}

/// The gateway binary: `--gateway-bin`, or `gateway` next to this executable.
pub fn gateway_bin(args: &CompareArgs) -> Result<PathBuf, String> {
    if let Some(p) = &args.gateway_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable (give --gateway-bin): {e}"))?;
    let dir = exe
        .parent()
        .ok_or("cannot find this executable's directory (give --gateway-bin)")?;
    Ok(dir.join(format!("gateway{}", std::env::consts::EXE_SUFFIX)))
}

/// `nginx` on PATH, else in the sbin directories a user's PATH often lacks; `nginx`
/// itself (for the error message) when it is nowhere.
pub fn find_nginx() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/sbin",
                "/usr/local/sbin",
                "/sbin",
                "/usr/local/nginx/sbin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

/// The CPU nginx and the gateway are pinned to, if `--pin` can be honoured.
fn server_cpu(args: &CompareArgs) -> Option<usize> {
    if !args.pin {
        return None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus < 2 {
        eprintln!("note: --pin needs 2 CPUs, this machine has {cpus}: not pinning");
        return None;
    }
    if !mesh::have_taskset() {
        eprintln!("note: --pin needs `taskset` (util-linux): not pinning");
        return None;
    }
    Some(1)
}

/// The mesh options for `args`, starting `targets`.
pub fn mesh_options(args: &CompareArgs, targets: &[TargetKind]) -> Result<MeshOptions, String> {
    let key = mesh::random_key()?;
    let routing = match &args.scenario {
        Some(path) => scenario_routing(&Scenario::load(path)?.allowed_only())?,
        None => Routing {
            keys: Vec::new(),
            prefixes: vec!["/bench".to_string()],
            methods: Vec::new(),
        },
    };
    Ok(MeshOptions {
        gateway_bin: gateway_bin(args)?,
        nginx: args.nginx.clone().unwrap_or_else(find_nginx),
        tls: args.tls(),
        http2: args.http2,
        audit: args.audit,
        gateway_log: args.gateway_log.clone(),
        server_cpu: server_cpu(args),
        keep: args.keep.clone(),
        targets: targets.to_vec(),
        key,
        extra_keys: routing.keys,
        prefixes: routing.prefixes,
        methods: routing.methods,
    })
}

/// What the gateway must accept for a scenario.
#[derive(Clone, Debug)]
pub struct Routing {
    /// The static keys its routes sign with.
    pub keys: Vec<Credentials>,
    /// The first path segments of its routes (`/order`): proxy locations and gateway
    /// targets.
    pub prefixes: Vec<String>,
    /// The methods of its routes (the rules allow GET and POST, and these).
    pub methods: Vec<String>,
}

/// A scenario's static keys, routing prefixes (first path segments) and methods. STS
/// credentials cannot be compared: nginx has no STS.
pub fn scenario_routing(s: &Scenario) -> Result<Routing, String> {
    let mut keys: Vec<Credentials> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut methods: Vec<String> = Vec::new();
    for route in &s.routes {
        let Some(named) = s.credentials.get(route.credential) else {
            continue;
        };
        let method = route.method.as_str().to_string();
        if !methods.contains(&method) {
            methods.push(method);
        }
        match &named.source {
            CredentialSource::Static(c) => {
                if c.session_token.is_some() {
                    return Err(format!(
                        "route `{}` signs with `{}`, which has a session token: compare gives \
                         the gateway static keys only",
                        route.name, named.name
                    ));
                }
                if !keys.contains(c) {
                    keys.push(c.clone());
                }
            }
            CredentialSource::Sts(_) => {
                return Err(format!(
                    "route `{}` signs with the STS credential `{}`: compare needs static keys \
                     (nginx has no STS to hand out sessions)",
                    route.name, named.name
                ));
            }
        }
        let path = route.path.split(['?', '#']).next().unwrap_or("");
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if first.is_empty()
            || !first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "route `{}`: path `{}` needs a first segment (letters, digits, - _ .) to route \
                 by, like /bench/x",
                route.name, route.path
            ));
        }
        let prefix = format!("/{first}");
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    if prefixes.is_empty() {
        return Err("the scenario has no allowed route to compare".into());
    }
    Ok(Routing {
        keys,
        prefixes,
        methods,
    })
}

/// The scenario to send: `--scenario`'s allowed routes, or GET (POST with a body)
/// /bench/x signed with `key`.
pub fn scenario(args: &CompareArgs, key: &Credentials) -> Result<Scenario, String> {
    match &args.scenario {
        Some(path) => Ok(Scenario::load(path)?.allowed_only()),
        None => {
            let method = if args.body_bytes > 0 { "POST" } else { "GET" };
            Ok(Scenario::single(
                method,
                mesh::PATH,
                args.body_bytes,
                key.clone(),
            ))
        }
    }
}

/// Pins this process to CPU 0 when nginx and the gateway were pinned to CPU 1.
pub fn pin_self(mesh: &Mesh) {
    if mesh.server_cpu().is_some()
        && let Err(e) = mesh::pin_this_process(0)
    {
        eprintln!("note: cannot pin the load generator: {e}");
    }
}

/// One line about the protocol, mode and audit setting.
pub fn setup_line(args: &CompareArgs) -> String {
    let proto = match (args.tls(), args.http2) {
        (true, false) => "TLS, HTTP/1.1",
        (true, true) => "TLS, HTTP/2",
        (false, false) => "plain HTTP/1.1",
        (false, true) => "plain HTTP/2",
    };
    let mode = match args.engine_mode() {
        Ok(Mode::Closed { concurrency }) => format!("closed loop, {concurrency} in flight"),
        Ok(Mode::Open { rate }) => format!("open loop at {rate} req/s"),
        Err(e) => e,
    };
    let audit = match args.audit {
        Audit::File => "gateway audit log on (file)",
        Audit::Off => "gateway audit log off",
    };
    format!(
        "{proto}; {mode} over {} connections; {audit}, RUST_LOG={}; nginx access_log off",
        args.connection_count(),
        args.gateway_log
    )
}

async fn compare(args: &CompareArgs) -> Result<bool, String> {
    let mode = args.engine_mode()?;
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    if args.round.is_zero() {
        return Err("--round must be longer than 0".into());
    }
    let mut targets: Vec<TargetKind> = Vec::new();
    for t in &args.targets {
        if !targets.contains(t) {
            targets.push(*t);
        }
    }
    if targets.is_empty() {
        return Err("--targets is empty".into());
    }
    let options = mesh_options(args, &targets)?;
    let scenario = scenario(args, &options.key)?;
    let mut mesh = Mesh::start(options).await?;
    pin_self(&mesh);
    let description = mesh.describe();
    println!("{description}");
    println!("{}", setup_line(args));
    println!(
        "{} round(s) of {:?} per target, alternating {}\n",
        args.rounds,
        args.round,
        targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pid = mesh.gateway_pid();
    let has_gateway = targets.contains(&TargetKind::Gateway);
    let mut stats = has_gateway.then(|| GatewayStats {
        pid,
        rss_start_kib: rss::rss_kib(pid),
        ..GatewayStats::default()
    });
    let mut merged: Vec<(TargetKind, Option<Report>)> =
        targets.iter().map(|t| (*t, None)).collect();
    let mut rounds = Vec::new();
    let later_warmup = args
        .warmup
        .min(Duration::from_millis(100).max(args.warmup / 10));
    for round in 1..=args.rounds {
        for (kind, total) in &mut merged {
            mesh.check_running()?;
            let spec = RunSpec {
                target: mesh.target(*kind)?,
                mode,
                duration: args.round,
                warmup: if round == 1 {
                    args.warmup
                } else {
                    later_warmup
                },
                connections: args.connection_count(),
                progress: false,
            };
            let report = crate::engine::run(&spec, &scenario).await?;
            let rss_now = has_gateway.then(|| rss::rss_kib(pid)).flatten();
            if let Some(s) = &mut stats {
                s.rss_after_round_kib.push(rss_now);
            }
            let result = RoundResult {
                round,
                target: *kind,
                throughput_rps: report.throughput_rps,
                p50_us: report.latency_us.p50,
                p99_us: report.latency_us.p99,
                ok: report.ok(),
                gateway_rss_kib: rss_now,
            };
            println!("{}", round_line(&result, args.rounds, &report));
            rounds.push(result);
            match total {
                Some(t) => t.merge(&report),
                None => *total = Some(report),
            }
        }
    }
    mesh.check_running()?;
    if let Some(s) = &mut stats {
        s.rss_end_kib = rss::rss_kib(pid);
        s.peak_kib = rss::peak_kib(pid);
        if let Ok(text) = mesh.gateway_metrics().await {
            // A family without samples (nothing dropped) is 0.
            let count = |name| {
                Some(mesh::float_count(
                    mesh::metric_sum(&text, name).unwrap_or(0.0),
                ))
            };
            s.requests_served = count("gateway_requests_total");
            s.audit_records_written = count("gateway_audit_records_written_total");
            s.audit_records_dropped = count("gateway_audit_records_dropped_total");
        }
    }
    let targets_merged: Vec<Report> = merged.into_iter().filter_map(|(_, r)| r).collect();
    let all_expected = targets_merged.iter().all(Report::ok);
    let comparison = Comparison {
        setup: Setup {
            tls: args.tls(),
            http2: args.http2,
            mode,
            connections: args.connection_count(),
            round_secs: args.round.as_secs_f64(),
            rounds: args.rounds,
            warmup_secs: args.warmup.as_secs_f64(),
            body_bytes: args.body_bytes,
            scenario: args.scenario.clone(),
            audit: args.audit,
            gateway_log: args.gateway_log.clone(),
            pinned: mesh.server_cpu().is_some(),
            targets: targets.clone(),
            description,
        },
        ratios: ratios(&targets_merged),
        rounds,
        targets: targets_merged,
        gateway: stats,
        all_expected,
    };
    print!("\n{}", render(&comparison));
    write_outputs(args, &comparison)?;
    mesh.finish(args.keep.is_some());
    Ok(all_expected)
}

fn write_outputs(args: &CompareArgs, c: &Comparison) -> Result<(), String> {
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(c).map_err(|e| format!("cannot write JSON: {e}"))?;
        write_file(path, &(text + "\n"))?;
        println!("JSON written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let series: Vec<(&str, &Report)> =
            c.targets.iter().map(|r| (r.target.as_str(), r)).collect();
        write_file(path, &crate::plot::latency_svg(&series))?;
        println!("latency chart written to {}", path.display());
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn round_line(r: &RoundResult, rounds: u32, report: &Report) -> String {
    let mut line = format!(
        "round {}/{rounds}  {:<8} {:>10.0} req/s   p50 {:>9}   p99 {:>9}",
        r.round,
        r.target.name(),
        r.throughput_rps,
        fmt_us(u64_f64(r.p50_us)),
        fmt_us(u64_f64(r.p99_us)),
    );
    if let Some(kib) = r.gateway_rss_kib {
        let _ = write!(line, "   gateway RSS {}", rss::mib(kib));
    }
    if !r.ok {
        let _ = write!(
            line,
            "   NOT AS EXPECTED: {} unexpected, {} transport errors, {} not sent{}",
            report.unexpected,
            report.transport_errors,
            report.not_sent,
            report
                .examples
                .first()
                .map(|e| format!(" (e.g. {e})"))
                .unwrap_or_default()
        );
    }
    line
}

fn u64_f64(v: u64) -> f64 {
    // Latencies in µs stay far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let f = v as f64;
    f
}

fn i64_us(a: u64, b: u64) -> i64 {
    let a = i64::try_from(a).unwrap_or(i64::MAX);
    let b = i64::try_from(b).unwrap_or(i64::MAX);
    a.saturating_sub(b)
}

/// Ratios and latency differences between the merged reports present.
pub fn ratios(reports: &[Report]) -> Ratios {
    let find = |kind: TargetKind| reports.iter().find(|r| r.target == kind.name());
    let (direct, nginx, gateway) = (
        find(TargetKind::Direct),
        find(TargetKind::Nginx),
        find(TargetKind::Gateway),
    );
    let ratio = |a: Option<&Report>, b: Option<&Report>| match (a, b) {
        (Some(a), Some(b)) if b.throughput_rps > 0.0 => Some(a.throughput_rps / b.throughput_rps),
        _ => None,
    };
    let diff = |a: Option<&Report>, b: Option<&Report>, p99: bool| match (a, b) {
        (Some(a), Some(b)) if a.responses > 0 && b.responses > 0 => Some(if p99 {
            i64_us(a.latency_us.p99, b.latency_us.p99)
        } else {
            i64_us(a.latency_us.p50, b.latency_us.p50)
        }),
        _ => None,
    };
    Ratios {
        gateway_over_nginx_throughput: ratio(gateway, nginx),
        gateway_over_direct_throughput: ratio(gateway, direct),
        nginx_over_direct_throughput: ratio(nginx, direct),
        gateway_minus_direct_p50_us: diff(gateway, direct, false),
        gateway_minus_direct_p99_us: diff(gateway, direct, true),
        nginx_minus_direct_p50_us: diff(nginx, direct, false),
        nginx_minus_direct_p99_us: diff(nginx, direct, true),
        gateway_minus_nginx_p50_us: diff(gateway, nginx, false),
        gateway_minus_nginx_p99_us: diff(gateway, nginx, true),
    }
}

/// `+0.31 ms` / `-45 µs`.
fn signed_us(us: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = us.unsigned_abs() as f64;
    format!("{}{}", if us < 0 { "-" } else { "+" }, fmt_us(f))
}

/// The final table and ratios, as text.
pub fn render(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<8} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}  as expected",
        "target", "responses", "req/s", "p50", "p90", "p99", "p99.9", "max"
    );
    for r in &c.targets {
        let l = &r.latency_us;
        let ok = if r.ok() {
            "yes".to_string()
        } else {
            format!(
                "NO ({} unexpected, {} errors, {} not sent)",
                r.unexpected, r.transport_errors, r.not_sent
            )
        };
        let _ = writeln!(
            o,
            "{:<8} {:>10} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>9}  {ok}",
            r.target,
            r.responses,
            r.throughput_rps,
            fmt_us(u64_f64(l.p50)),
            fmt_us(u64_f64(l.p90)),
            fmt_us(u64_f64(l.p99)),
            fmt_us(u64_f64(l.p999)),
            fmt_us(u64_f64(l.max)),
        );
    }
    let x = &c.ratios;
    let mut lines = Vec::new();
    for (label, v) in [
        ("gateway / nginx ", x.gateway_over_nginx_throughput),
        ("gateway / direct", x.gateway_over_direct_throughput),
        ("nginx / direct  ", x.nginx_over_direct_throughput),
    ] {
        if let Some(v) = v {
            lines.push(format!("  throughput  {label}  {v:.2}"));
        }
    }
    for (label, p50, p99, what) in [
        (
            "gateway - direct",
            x.gateway_minus_direct_p50_us,
            x.gateway_minus_direct_p99_us,
            "   (latency the gateway adds)",
        ),
        (
            "nginx - direct  ",
            x.nginx_minus_direct_p50_us,
            x.nginx_minus_direct_p99_us,
            "   (latency nginx adds)",
        ),
        (
            "gateway - nginx ",
            x.gateway_minus_nginx_p50_us,
            x.gateway_minus_nginx_p99_us,
            "",
        ),
    ] {
        if let (Some(p50), Some(p99)) = (p50, p99) {
            lines.push(format!(
                "  latency     {label}  p50 {:>9}   p99 {:>9}{what}",
                signed_us(p50),
                signed_us(p99)
            ));
        }
    }
    if !lines.is_empty() {
        o.push_str("\nratios (same machine, same run, alternating rounds)\n");
        for l in lines {
            o.push_str(&l);
            o.push('\n');
        }
    }
    if let Some(g) = &c.gateway {
        let after = g
            .rss_after_round_kib
            .iter()
            .map(|k| rss::mib_opt(*k))
            .collect::<Vec<_>>();
        let _ = writeln!(
            o,
            "\ngateway (pid {}): RSS at start {}, at the end {}, peak {}",
            g.pid,
            rss::mib_opt(g.rss_start_kib),
            rss::mib_opt(g.rss_end_kib),
            rss::mib_opt(g.peak_kib)
        );
        let _ = writeln!(o, "  RSS after each round: {}", after.join(", "));
        let count = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
        let _ = write!(
            o,
            "  requests served (gateway_requests_total, warmups included): {}",
            count(g.requests_served)
        );
        match c.setup.audit {
            Audit::File => {
                let _ = writeln!(
                    o,
                    "; audit records written {}, dropped {}",
                    count(g.audit_records_written),
                    count(g.audit_records_dropped)
                );
            }
            Audit::Off => o.push_str("; audit log off\n"),
        }
    }
    let _ = writeln!(
        o,
        "\nnote: nginx runs with access_log off; {}; the gateway logs at RUST_LOG={}{}",
        match c.setup.audit {
            Audit::File => {
                "the gateway writes its audit log (one JSON line per request; --audit off to compare without)"
            }
            Audit::Off => "the gateway's audit log is off (--audit off)",
        },
        c.setup.gateway_log,
        if c.setup.gateway_log.contains("debug") || c.setup.gateway_log.contains("trace") {
            " (one line per request at debug)"
        } else {
            " (no per-request lines: those are at debug)"
        }
    );
    let _ = writeln!(
        o,
        "all responses as expected: {}",
        if c.all_expected { "yes" } else { "no" }
    );
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn parse(argv: &[&str]) -> CompareArgs {
        let mut full = vec!["compare"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[]);
        assert!(a.tls());
        assert_eq!(
            a.targets,
            vec![TargetKind::Direct, TargetKind::Nginx, TargetKind::Gateway]
        );
        assert_eq!(a.connection_count(), 64);
        assert!(matches!(
            a.engine_mode().unwrap(),
            Mode::Closed { concurrency: 64 }
        ));
        let a = parse(&["--plain", "--targets", "gateway,nginx", "--audit", "off"]);
        assert!(!a.tls());
        assert_eq!(a.targets, vec![TargetKind::Gateway, TargetKind::Nginx]);
        assert_eq!(a.audit, Audit::Off);
        let a = parse(&["--plain", "--tls"]);
        assert!(a.tls());
        let a = parse(&["--mode", "open"]);
        assert!(a.engine_mode().is_err());
        let a = parse(&["--mode", "open", "--rate", "1000"]);
        assert!(matches!(
            a.engine_mode().unwrap(),
            Mode::Open { rate: 1000 }
        ));
        assert_eq!(a.connection_count(), 64);
    }

    #[test]
    fn scenario_routes_become_prefixes() {
        let s = Scenario::parse(
            r#"
region = "eu-west-1"
service = "execute-api"
[[credential]]
name = "a"
access_key_id = "AKIAAAAAAAAAAAAAAAAA"
secret_access_key = "s"
[[route]]
name = "r1"
path = "/order/orders/42"
credential = "a"
[[route]]
name = "r2"
path = "/catalogue/products?x=1"
credential = "a"
[[route]]
name = "r3"
path = "/order"
credential = "a"
"#,
            "s.toml",
        )
        .unwrap();
        let r = scenario_routing(&s).unwrap();
        assert_eq!(r.prefixes, vec!["/order", "/catalogue"]);
        assert_eq!(r.keys.len(), 1);
        assert_eq!(r.keys[0].access_key_id, "AKIAAAAAAAAAAAAAAAAA");
        assert_eq!(r.methods, vec!["GET"]);
    }

    fn report(target: &str, rps: f64, p50: u64, p99: u64) -> Report {
        let mut r = Report::empty(target, "x", "HTTP/1.1", Mode::Closed { concurrency: 1 });
        r.responses = 10;
        r.requests = 10;
        r.throughput_rps = rps;
        r.latency_us.p50 = p50;
        r.latency_us.p99 = p99;
        r
    }

    #[test]
    fn ratios_and_rendering() {
        let reports = vec![
            report("direct", 100_000.0, 300, 900),
            report("nginx", 50_000.0, 500, 1500),
            report("gateway", 55_000.0, 600, 1400),
        ];
        let x = ratios(&reports);
        assert!((x.gateway_over_nginx_throughput.unwrap() - 1.1).abs() < 1e-9);
        assert!((x.gateway_over_direct_throughput.unwrap() - 0.55).abs() < 1e-9);
        assert_eq!(x.gateway_minus_direct_p50_us, Some(300));
        assert_eq!(x.gateway_minus_nginx_p99_us, Some(-100));
        let c = Comparison {
            setup: Setup {
                tls: true,
                http2: false,
                mode: Mode::Closed { concurrency: 1 },
                connections: 1,
                round_secs: 1.0,
                rounds: 1,
                warmup_secs: 0.0,
                body_bytes: 0,
                scenario: None,
                audit: Audit::File,
                gateway_log: "info".into(),
                pinned: false,
                targets: vec![TargetKind::Direct, TargetKind::Nginx, TargetKind::Gateway],
                description: String::new(),
            },
            rounds: Vec::new(),
            ratios: x,
            targets: reports,
            gateway: Some(GatewayStats::default()),
            all_expected: true,
        };
        let text = render(&c);
        assert!(text.contains("gateway / nginx   1.10"), "{text}");
        assert!(text.contains("-100 µs"), "{text}");
        assert!(text.contains("audit records written"), "{text}");
        let only = ratios(&c.targets[2..]);
        assert_eq!(only.gateway_over_nginx_throughput, None);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["setup"]["targets"][2], "gateway");
    }
}
