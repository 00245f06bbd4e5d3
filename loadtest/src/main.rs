//! `loadtest`: the command line. `loadtest run` offers a scenario's load to one target
//! and reports; `loadtest compare` runs the same load against the gateway and a plain
//! nginx proxy side by side.

use clap::{Args, Parser, Subcommand};
use loadtest::compare::{self, CompareArgs};
use loadtest::engine::{self, Mode, RunSpec, Target};
use loadtest::plot;
use loadtest::scenario::Scenario;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const RUN_EXAMPLES: &str = "\
Examples:
  # against `gateway demo` (started with: cargo run --release -p gateway -- demo)
  loadtest run --scenario examples/loadtest/demo.toml --target https://127.0.0.1:8443 \\
      --ca /tmp/sigv4-gateway-demo/ca.pem --concurrency 32 --duration 30s

  # open loop: 2,000 requests a second over HTTP/2, whatever the latency
  loadtest run --scenario examples/loadtest/demo.toml --target https://127.0.0.1:8443 \\
      --ca /tmp/sigv4-gateway-demo/ca.pem --http2 --rate 2000 --connections 4 \\
      --json report.json --plot latency.svg

Exit status: 0 when every response was the expected one, 1 when not (an allowed
request that got 403, a denial that got 200, a transport error, a request that could
not be sent), 2 when the run could not be made.";

const TOP_EXAMPLES: &str = "\
Examples:
  loadtest run --scenario examples/loadtest/demo.toml --target https://127.0.0.1:8443 \\
      --ca /tmp/sigv4-gateway-demo/ca.pem --rate 1000 --duration 10s
  loadtest compare --help

The scenario file format is in loadtest/README.md.";

/// Load generator for the SigV4 gateway: every request signed with aws-sigv4 (static or
/// STS credentials), a mix of allowed and denied routes, open or closed loop, HTTP/1.1
/// or HTTP/2 over TLS, HDR latency percentiles.
#[derive(Parser, Debug)]
#[command(name = "loadtest", version, after_help = TOP_EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Offer a scenario's load to one target and report.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// The same load against the gateway and a plain nginx reverse proxy, side by side.
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("mode").args(["rate", "concurrency"]))]
struct RunArgs {
    /// The scenario file (TOML): credentials, routes, deny shares.
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// The target's base URL: http(s)://HOST:PORT.
    #[arg(long, value_name = "URL")]
    target: String,
    /// For an https target: the CA certificates to trust (PEM; the only roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// HTTP/2 (ALPN h2 over TLS, prior knowledge over plain TCP) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Open loop: this many requests a second, latency measured from each request's
    /// intended send time.
    #[arg(long, value_name = "N")]
    rate: Option<u64>,
    /// Closed loop: this many requests in flight, each sent when the previous one
    /// ended (the default, with 8).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// TCP connections. Default: the concurrency (closed loop, HTTP/1.1), 64 (open
    /// loop, HTTP/1.1), 2 (HTTP/2).
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
    /// The measured time: 10s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the measured time, results discarded.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// The SigV4 region to sign for (default: the scenario's).
    #[arg(long)]
    region: Option<String>,
    /// The SigV4 service to sign for (default: the scenario's).
    #[arg(long)]
    service: Option<String>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the latency distribution to FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// No live progress line on standard error.
    #[arg(long)]
    no_progress: bool,
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5s`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (like 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("`{other}`: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Compare(args) => compare::main(args).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: RunArgs) -> Result<bool, String> {
    let scenario = Scenario::load(&args.scenario)?;
    let mode = match (args.rate, args.concurrency) {
        (Some(rate), _) => Mode::Open { rate },
        (None, c) => Mode::Closed {
            concurrency: c.unwrap_or(8),
        },
    };
    let connections = args.connections.unwrap_or(match (mode, args.http2) {
        (_, true) => 2,
        (Mode::Closed { concurrency }, false) => concurrency,
        (Mode::Open { .. }, false) => 64,
    });
    let target = Target {
        name: "target".to_string(),
        base_url: args.target.clone(),
        ca_file: args.ca.clone(),
        http2: args.http2,
        region: args.region.unwrap_or_else(|| scenario.region.clone()),
        service: args.service.unwrap_or_else(|| scenario.service.clone()),
    };
    let spec = RunSpec {
        target,
        mode,
        duration: args.duration,
        warmup: args.warmup,
        connections,
        progress: !args.no_progress,
    };
    let report = engine::run(&spec, &scenario).await?;
    print!("{}", report.render_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = plot::latency_svg(&[(args.target.as_str(), &report)]);
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report.ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(
            Cli::try_parse_from([
                "loadtest",
                "run",
                "--scenario",
                "s.toml",
                "--target",
                "http://127.0.0.1:1",
                "--rate",
                "1",
                "--concurrency",
                "2"
            ])
            .is_err()
        );
    }
}
