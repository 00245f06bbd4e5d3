//! `gateway`: run the SigV4 auth gateway, check its configuration, or start the demo mesh.

use clap::{Parser, Subcommand};
use gateway::config::{Config, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// The SigV4 service-to-service auth gateway.
#[derive(Parser)]
#[command(name = "gateway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file (SIGHUP reloads rules and credentials;
    /// SIGTERM/SIGINT drain and stop).
    Run {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and the rules and credentials files it names;
    /// print every error with file and line; exit 1 if there is any.
    CheckConfig {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Start a whole demo mesh on loopback: the gateway over TLS and four demo PBC
    /// upstreams, with demo credentials and the demo allow matrix; prints commands to try.
    Demo {
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// The admin listener's address (/healthz, /readyz).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
        /// Where the demo writes its CA, certificates, keys and config files.
        #[arg(long)]
        state_dir: Option<PathBuf>,
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
        Command::Demo {
            listen,
            admin_listen,
            state_dir,
        } => {
            let _telemetry = match gateway::telemetry::init(
                LogFormat::Text,
                &gateway::trace::TracingConfig::default(),
            ) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("gateway: {e}");
                    return ExitCode::from(2);
                }
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
