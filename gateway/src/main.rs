//! `gateway`: run the SigV4 auth gateway, check its configuration, or start the demo mesh.

use clap::{Parser, Subcommand};
use gateway::config::{Config, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// The SigV4 service-to-service auth gateway: verifies AWS Signature Version 4 on
/// every call between services, resolves the caller's role, applies the allow matrix
/// and forwards allowed calls over TLS with a signed identity assertion.
#[derive(Parser)]
#[command(
    name = "gateway",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATEWAY_BUILD_COMMIT"), ")"),
    long_version = long_version(),
    about,
    after_help = "\
Examples:
  gateway demo                                  # a whole demo mesh on loopback, no setup
  gateway check-config /etc/sigv4-gateway/gateway.toml
  gateway run --config /etc/sigv4-gateway/gateway.toml
  gateway certs --out ./certs --assertion-key --sts-key gateway=gateway,localhost order payment
  gateway --version

`gateway <command> --help` says more about each command. Documentation: README.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Built once per process, for `--version`; clap takes a `&'static str`.
fn long_version() -> &'static str {
    Box::leak(gateway::build_info::long_version().into_boxed_str())
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file (SIGHUP reloads rules and credentials;
    /// SIGTERM/SIGINT drain and stop).
    #[command(after_help = "\
Examples:
  gateway run --config /etc/sigv4-gateway/gateway.toml
  RUST_LOG=gateway=debug gateway run -c gateway.toml     # a log line per request

Check a file first with `gateway check-config FILE`; a file with errors is refused at
start, and at reload the running version is kept. Every key is described in
examples/gateway.toml and the README's configuration reference.")]
    Run {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and the rules and credentials files it names;
    /// print every error with file and line; exit 1 if there is any.
    #[command(after_help = "\
Examples:
  gateway check-config /etc/sigv4-gateway/gateway.toml
  gateway check-config examples/production/gateway.toml   # after laying out its secrets

Exit status: 0 valid, 1 invalid (every error printed with file, line and reason).")]
    CheckConfig {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Start a whole demo mesh on loopback: the gateway over TLS and four demo PBC
    /// upstreams, with demo credentials and the demo allow matrix; prints commands to try.
    #[command(after_help = "\
Examples:
  gateway demo
  gateway demo --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0   # free ports, printed
  gateway demo --state-dir ./demo-state    # keep the CA, config and audit log here

The demo prints ready-to-paste curl, AWS CLI and authz-rules commands. Ctrl-C stops it.")]
    Demo {
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// The admin listener's address (/healthz, /readyz, /metrics).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
        /// Where the demo writes its CA, certificates, keys and config files.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Make a private CA and server certificates (and optionally the assertion and STS
    /// keys) in a directory, keeping whatever already exists there: the one-shot
    /// certificate init of docker-compose and small setups.
    #[command(after_help = "\
Examples:
  gateway certs --out ./certs gateway=gateway,localhost,127.0.0.1 order payment
  gateway certs --out /certs --assertion-key --sts-key gateway checkout order catalogue payment

Writes OUT/ca.pem and OUT/ca-key.pem (reused when both exist), OUT/NAME.pem (the
certificate, then the CA) and OUT/NAME-key.pem for every NAME, OUT/assertion-key.pem
(`[assertion] key_file`) and OUT/sts-key (an `[sts] keys` secret_file) when asked.
Keys are readable by their owner only. Running it again issues nothing new, so an
init container may run it on every start. Production meshes use their own PKI.")]
    Certs {
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The CA's common name (when the CA is made; give the same name to reuse it).
        #[arg(long, value_name = "NAME", default_value = gateway::certs::DEFAULT_CA_NAME)]
        ca_name: String,
        /// Also write assertion-key.pem: the gateway's identity-assertion signing key
        /// (PKCS#8 P-256), to share across replicas.
        #[arg(long)]
        assertion_key: bool,
        /// Also write sts-key: a 32-byte STS session sealing key (hex).
        #[arg(long)]
        sts_key: bool,
        /// A server certificate to issue: NAME, or NAME=SAN,SAN,... (DNS names or IP
        /// addresses; default: NAME itself).
        #[arg(value_name = "NAME[=SAN,...]")]
        certs: Vec<gateway::certs::CertSpec>,
    },
    /// Serve one demo PBC upstream: HTTPS, accepts only requests with a valid identity
    /// assertion from the gateway for this PBC, answers with who called (docker-compose
    /// runs one per PBC).
    #[command(after_help = "\
Example:
  gateway upstream --pbc order --listen 0.0.0.0:8443 \\
    --cert /certs/order.pem --key /certs/order-key.pem \\
    --jwks-url https://gateway:8443/.well-known/jwks.json --ca /certs/ca.pem

It waits for the gateway's JWKS before serving and fetches it again every
--refresh-secs, so a restarted gateway with a new assertion key is trusted again.")]
    Upstream {
        /// The PBC this service plays: assertions must be addressed to it.
        #[arg(long)]
        pbc: String,
        /// The address to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: std::net::SocketAddr,
        /// The server certificate chain (PEM, leaf first).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The server private key (PEM).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The gateway's JWKS URL (https).
        #[arg(long, value_name = "URL")]
        jwks_url: String,
        /// The CA bundle the gateway's certificate chains to.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The issuer the assertions carry (the gateway's `[assertion] issuer`).
        #[arg(long, default_value = "sigv4-gateway")]
        issuer: String,
        /// How often to fetch the JWKS again.
        #[arg(long, default_value_t = 30)]
        refresh_secs: u64,
    },
    /// GET an admin URL and exit 0 when it answers 2xx, else 1: the container image's
    /// HEALTHCHECK (the image has no shell and no curl).
    #[command(after_help = "\
Examples:
  gateway healthcheck                                   # http://127.0.0.1:9090/healthz
  gateway healthcheck --url http://127.0.0.1:9090/readyz")]
    Healthcheck {
        /// The URL to GET (plain http://: the admin listener).
        #[arg(long, default_value = gateway::healthcheck::DEFAULT_URL)]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!(
                        "{e}\ngateway: refusing to start; fix the errors above (`gateway check-config {}`)",
                        config.display()
                    );
                    return ExitCode::from(2);
                }
            };
            let _telemetry = match gateway::telemetry::init(cfg.log.format, &cfg.tracing) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("gateway: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime(async move {
                let running = gateway::server::start(&cfg).await?;
                gateway::server::termination().await;
                running.shutdown().await;
                Ok(())
            })
        }
        Command::Certs {
            out,
            ca_name,
            assertion_key,
            sts_key,
            certs,
        } => {
            let request = gateway::certs::Request {
                out,
                ca_name,
                certs,
                assertion_key,
                sts_key,
            };
            match gateway::certs::run(&request) {
                Ok(done) => {
                    for outcome in done {
                        println!("{outcome}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gateway certs: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Healthcheck { url } => runtime(async move {
            gateway::healthcheck::check(&url)
                .await
                .map(|line| println!("{line}"))
        }),
        Command::Upstream {
            pbc,
            listen,
            cert,
            key,
            jwks_url,
            ca,
            issuer,
            refresh_secs,
        } => {
            let _telemetry = match text_logs() {
                Ok(guard) => guard,
                Err(code) => return code,
            };
            let options = gateway::demo::standalone::Options {
                pbc,
                listen,
                cert,
                key,
                jwks_url,
                ca,
                issuer,
                refresh: std::time::Duration::from_secs(refresh_secs),
            };
            runtime(gateway::demo::standalone::run(
                options,
                gateway::server::termination(),
            ))
        }
        Command::Demo {
            listen,
            admin_listen,
            state_dir,
        } => {
            let _telemetry = match text_logs() {
                Ok(guard) => guard,
                Err(code) => return code,
            };
            runtime(async move {
                let demo = gateway::demo::start(gateway::demo::Options {
                    listen,
                    admin_listen,
                    state_dir,
                })
                .await?;
                println!("{}", demo.instructions());
                gateway::server::termination().await;
                demo.shutdown().await;
                Ok(())
            })
        }
    }
}

/// Text logs with the default tracing settings: the demo and the demo upstreams.
fn text_logs() -> Result<gateway::telemetry::TelemetryGuard, ExitCode> {
    gateway::telemetry::init(LogFormat::Text, &gateway::trace::TracingConfig::default()).map_err(
        |e| {
            eprintln!("gateway: {e}");
            ExitCode::from(2)
        },
    )
}

fn runtime(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gateway: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut failed = false;
    match gateway::stack::load_credentials(&config.identity.credentials_file) {
        Ok(keys) => println!(
            "{}: {} credential(s)",
            config.identity.credentials_file.display(),
            keys.len()
        ),
        Err(e) => {
            failed = true;
            println!("{e}");
        }
    }
    match gateway::stack::load_rules(&config.rules.file) {
        Ok(rules) => {
            println!(
                "{}: {} PBCs, {} rules",
                config.rules.file.display(),
                rules.pbcs().len(),
                rules.rules().len()
            );
            for t in &config.targets {
                if rules.pbc(&t.name).is_none() {
                    println!(
                        "warning: target `{}` is not a PBC of {}",
                        t.name,
                        config.rules.file.display()
                    );
                }
            }
        }
        Err(e) => {
            failed = true;
            println!("{e}");
        }
    }
    if let Some(tls) = &config.listen.tls
        && let Err(e) = gateway::listener::server_tls_config(tls)
    {
        failed = true;
        println!("error: {}: {e}", file.display());
    }
    if let Some(key) = &config.assertion.key_file
        && let Err(e) = gateway::assertion::AssertionSigner::from_pem_file(
            key,
            &config.assertion.issuer,
            config.assertion.ttl_secs,
        )
    {
        failed = true;
        println!("error: {}: {e}", file.display());
    }
    if let Some(sts) = &config.sts {
        if let Err(e) = gateway::sts::load_keys(&sts.keys) {
            failed = true;
            println!("error: {}: {e}", file.display());
        }
        if !sts.oidc_issuers.is_empty()
            && let Err(e) = gateway::sts::web_identity::WebIdentityVerifier::new(&sts.oidc_issuers)
        {
            failed = true;
            println!("error: {}: {e}", file.display());
        }
    }
    if let Err(e) = gateway::forward::Forwarder::new(&config.targets, Default::default()) {
        failed = true;
        println!("error: {}: {e}", file.display());
    }
    if failed {
        println!("{}: invalid", file.display());
        ExitCode::from(1)
    } else {
        println!(
            "{}: valid ({} targets)",
            file.display(),
            config.targets.len()
        );
        ExitCode::SUCCESS
    }
}
