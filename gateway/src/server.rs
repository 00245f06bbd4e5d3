//! Running the gateway: bind the listeners, start the reload watcher, and shut down
//! gracefully (stop accepting, drain in-flight requests up to a deadline).

use crate::admin::{self, Readiness};
use crate::config::Config;
use crate::listener::{self, ServerLimits};
use crate::stack::{Gateway, GatewayHandler};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the reload watcher looks at the rules and credentials files.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// A running gateway.
pub struct Running {
    /// The public listener's address (useful with port 0).
    pub addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The gateway itself.
    pub gateway: Arc<Gateway>,
    /// Readiness as `/readyz` reports it.
    pub readiness: Readiness,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Binds the listeners and starts serving.
pub async fn start(config: &Config) -> Result<Running, String> {
    let gateway = Arc::new(Gateway::from_config(config)?);
    let tls = match &config.listen.tls {
        Some(t) => Some(listener::server_tls_config(t)?),
        None => None,
    };
    let public = tokio::net::TcpListener::bind(config.listen.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen.addr))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.addr)
        .await
        .map_err(|e| format!("cannot listen on {} (admin): {e}", config.admin.addr))?;
    let addr = public.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, rx) = watch::channel(false);
    let readiness = Readiness::default();
    let limits = ServerLimits::from(&config.limits);
    let mut tasks = Vec::new();
    let handler = GatewayHandler(Arc::clone(&gateway));
    let r = rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = listener::serve(public, tls, limits, handler, stopped(r)).await {
            tracing::error!(error = %e, "the public listener stopped");
        }
    }));
    let r = rx.clone();
    let ready = readiness.clone();
    let scraped = Arc::clone(&gateway);
    let scrape: admin::Scrape = Arc::new(move || scraped.scrape());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = admin::serve(admin_listener, ready, scrape, stopped(r)).await {
            tracing::error!(error = %e, "the admin listener stopped");
        }
    }));
    let reloadables = gateway.reloadables();
    let r = rx.clone();
    tasks.push(tokio::spawn(crate::reload::watch(
        reloadables,
        RELOAD_POLL,
        stopped(r),
    )));
    readiness.set_ready(true);
    tracing::info!(%addr, %admin_addr, tls = config.listen.tls.is_some(), "gateway listening");
    Ok(Running {
        addr,
        admin_addr,
        gateway,
        readiness,
        stop,
        tasks,
    })
}

impl Running {
    /// Stops accepting and drains in-flight requests; returns when everything stopped.
    pub async fn shutdown(self) {
        self.readiness.set_draining();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // Every request has answered: its audit record is queued; write them out.
        self.gateway.auditor().flush().await;
        tracing::info!("gateway stopped");
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn termination() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term_recv = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term_recv => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: no new connections; draining in-flight requests");
}
