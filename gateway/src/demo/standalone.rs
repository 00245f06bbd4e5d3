//! `gateway upstream`: one demo PBC service as its own process (docker-compose runs
//! four). It is the in-process demo upstream ([`super::upstream`]) plus what a separate
//! process needs: its own certificate and key from files, and the gateway's JWKS
//! fetched over HTTPS — waited for at start (the gateway may come up later) and fetched
//! again every [`Options::refresh`] so a rotated assertion key is picked up.

use super::upstream::{self, TrustedKeys};
use crate::assertion::AssertionVerifier;
use http::Uri;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What `gateway upstream` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The PBC it plays: the audience its assertions must name.
    pub pbc: String,
    /// Where it listens (HTTPS; HTTP/2 and HTTP/1.1).
    pub listen: SocketAddr,
    /// Its certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The gateway's JWKS, e.g. `https://gateway:8443/.well-known/jwks.json`.
    pub jwks_url: String,
    /// The CA bundle the JWKS URL's certificate must chain to.
    pub ca: PathBuf,
    /// The `iss` the assertions must carry (the gateway's `[assertion] issuer`).
    pub issuer: String,
    /// How often the JWKS is fetched again.
    pub refresh: Duration,
}

/// Longest wait between two tries while the gateway is not answering yet.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs the upstream until `stop` resolves, then drains it.
pub async fn run(
    options: Options,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert = read(&options.cert)?;
    let key = zeroize::Zeroizing::new(read(&options.key)?);
    let tls = upstream::tls_config(&cert, &key)?;
    let uri: Uri = options
        .jwks_url
        .parse()
        .map_err(|e| format!("--jwks-url `{}`: {e}", options.jwks_url))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "--jwks-url `{}` must be https://",
            options.jwks_url
        ));
    }
    let client = crate::sts::web_identity::jwks_client(&options.ca)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    tracing::info!(pbc = %options.pbc, %addr, "demo PBC upstream listening; waiting for the gateway's JWKS");

    tokio::pin!(stop);
    // Wait for the gateway's keys before serving: without them every request would
    // be refused anyway. Connections made meanwhile wait in the listen backlog.
    let mut backoff = Duration::from_millis(200);
    let verifier = loop {
        // `stop` is polled from the start (that installs the signal handlers: as PID 1
        // in a container, a SIGTERM before then would be lost) and during every fetch.
        let fetched = tokio::select! {
            () = &mut stop => return Ok(()),
            fetched = fetch(&client, &uri, &options.issuer) => fetched,
        };
        match fetched {
            Ok(v) => break v,
            Err(e) => {
                tracing::warn!(pbc = %options.pbc, jwks = %uri, error = %e, "waiting for the gateway's JWKS");
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    tracing::info!(pbc = %options.pbc, %addr, ?verifier, "demo PBC upstream serving");
    let keys = TrustedKeys::new(Arc::new(verifier));
    let server = upstream::serve_upstream_trusting(listener, &options.pbc, tls, Arc::clone(&keys))?;

    let mut ticker = tokio::time::interval(options.refresh.max(Duration::from_secs(1)));
    ticker.tick().await;
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {
                // A stop during the fetch (up to its timeout) is not kept waiting.
                let fetched = tokio::select! {
                    () = &mut stop => break,
                    fetched = fetch(&client, &uri, &options.issuer) => fetched,
                };
                match fetched {
                    Ok(v) => keys.replace(Arc::new(v)),
                    // Keep the keys we have: a gateway restarting is no reason to refuse.
                    Err(e) => tracing::warn!(pbc = %options.pbc, jwks = %uri, error = %e, "JWKS refresh failed; keeping the keys already trusted"),
                }
            }
        }
    }
    server.shutdown().await;
    Ok(())
}

async fn fetch(
    client: &crate::sts::web_identity::JwksClient,
    uri: &Uri,
    issuer: &str,
) -> Result<AssertionVerifier, String> {
    let body = crate::sts::web_identity::fetch_jwks(client, uri).await?;
    let jwks: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    AssertionVerifier::from_jwks(&jwks, issuer)
}
