//! The public listener: TCP, then TLS (rustls, optionally mutual), then HTTP/1.1 or
//! HTTP/2 (chosen by ALPN under TLS, by the connection preface on plain TCP).
//!
//! It owns everything that happens before a request reaches the gateway's stages: the
//! limits on the request head, the timeouts, the connection facts ([`ConnInfo`]) and
//! graceful shutdown. What happens to a request is the [`Handler`]'s business.
//!
//! # Timeouts
//!
//! - TLS handshake: `header_read_timeout`, so a client that connects and stalls
//!   cannot hold a socket open without saying anything.
//! - Header read (HTTP/1): from the first byte of a request head (for the first request
//!   on a connection: from the moment the connection is ready) to the whole head
//!   received. hyper has its own `header_read_timeout`, but its clock starts whenever the
//!   connection is ready for another head, so it also closes idle keep-alive connections
//!   and would make the idle timeout meaningless. The listener keeps its own clock
//!   per connection instead (see `ConnClock`) and switches hyper's off.
//! - Idle: a connection with no request in flight for `idle_timeout` is shut down
//!   gracefully (HTTP/1: closed; HTTP/2: GOAWAY). HTTP/2 also sends keep-alive pings so a
//!   dead peer is noticed while a long request is in flight.
//! - Request: the handler has `request_timeout` to produce the response head; past it the
//!   client gets 504 `GatewayTimeout`. The response body, once started, is not cut off
//!   (a large download must not fail at an arbitrary byte); the upstream client owns
//!   the timeouts of what it streams.
//! - Drain: on shutdown the listener stops accepting at once, lets in-flight requests
//!   finish for `drain_timeout`, then drops what is left.

use crate::body::{BoxError, GatewayBody};
use crate::config::{LimitsConfig, TlsConfig};
use crate::context::ConnInfo;
use crate::error::GatewayError;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, error, info, warn};

/// hyper refuses an HTTP/1 read buffer smaller than this (it asserts), so a smaller
/// `max_header_bytes` is rounded up to it.
const MIN_H1_BUFFER: usize = 8 * 1024;

/// How long the accept loop pauses after an error that is not about one connection
/// (EMFILE, ENFILE, ENOBUFS...): retrying at once would spin while nothing can change.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Server-side TLS from PEM files; ALPN `h2` and `http/1.1`; optional client-certificate
/// verification (mTLS) against a CA bundle.
///
/// Errors name the file and what is wrong with it; they never quote the key file.
pub fn server_tls_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&tls.cert, "certificate chain")?;
    let key = read_key(&tls.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for (n, cert) in read_certs(ca, "client CA bundle")?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    format!(
                        "{}: certificate {} of the client CA bundle is not usable: {e}",
                        ca.display(),
                        n + 1
                    )
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            if !tls.require_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| {
                format!(
                    "{}: cannot verify client certificates with this CA bundle: {e}",
                    ca.display()
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{}: the private key does not belong to the certificate in {}",
            tls.key.display(),
            tls.cert.display()
        ),
        other => format!(
            "{} with {}: unusable certificate or private key: {other}",
            tls.cert.display(),
            tls.key.display()
        ),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("{}: cannot read the {what}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{}: bad PEM in the {what}: {}",
                path.display(),
                pem_problem(&e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{}: the {what} holds no certificate (no -----BEGIN CERTIFICATE----- block)",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // Zeroizing: the file's bytes are the secret itself; do not leave them in freed memory.
    let pem = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| format!("{}: cannot read the private key: {e}", path.display()))?,
    );
    let contains = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let hint = if contains(b"ENCRYPTED PRIVATE KEY") {
                "; it holds an encrypted key, which the gateway cannot use: decrypt it"
            } else if contains(b"CERTIFICATE") {
                "; it holds a certificate: point `key` at the private key"
            } else {
                ""
            };
            Err(format!(
                "{}: no private key in the file (expected a PKCS#8, PKCS#1 or SEC1 PEM block){hint}",
                path.display()
            ))
        }
        Err(e) => Err(format!(
            "{}: bad PEM in the private key file: {}",
            path.display(),
            pem_problem(&e)
        )),
    }
}

/// What is wrong with a PEM file, without quoting it: the parser's own messages can
/// echo a line of the file, and the file may be a private key.
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no matching END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed -----BEGIN line",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::Io(_) => "the file could not be read",
        pem::Error::NoItemsFound => "no PEM block of the expected kind",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "malformed PEM",
    }
}

/// Limits the listener enforces.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Largest request head in bytes (HTTP/1 read buffer, at least 8 KiB; HTTP/2
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_bytes: usize,
    /// Most request header fields.
    pub max_headers: usize,
    /// Longest request target (path and query) in bytes; longer ones get 414.
    pub max_uri_bytes: usize,
    /// Time allowed for the TLS handshake and for a request head once it has begun.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept.
    pub idle_timeout: Duration,
    /// Time the handler has to produce a response head; past it the client gets 504.
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests before dropping them.
    pub drain_timeout: Duration,
}

impl From<&LimitsConfig> for ServerLimits {
    fn from(c: &LimitsConfig) -> Self {
        Self {
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            max_uri_bytes: c.max_uri_bytes,
            header_read_timeout: c.header_read_timeout(),
            idle_timeout: c.idle_timeout(),
            request_timeout: c.request_timeout(),
            drain_timeout: c.drain_timeout(),
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from(&LimitsConfig::default())
    }
}

/// The request handler the listener calls, once per request.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers one request that arrived on the connection `conn` describes. It always
    /// answers: failures are responses too (see [`GatewayError::into_response`]).
    fn call(
        &self,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<GatewayBody>> + Send;

    /// Told when a TLS handshake on this listener fails (`reason` `"failed"`) or does
    /// not finish within `header_read_timeout` (`"timeout"`); for metrics. A handshake
    /// cut short by shutdown is neither. The default does nothing.
    fn tls_handshake_failed(&self, reason: &'static str) {
        let _ = reason;
    }

    /// The id of a request about to be handled: the listener puts it in the request's
    /// extensions as [`crate::context::RequestId`] and answers with it when the handler
    /// runs out of time, so that answer and the handler's audit record name the same
    /// request. Default: a random UUID.
    fn request_id(&self, req: &Request<Incoming>, conn: &ConnInfo) -> String {
        let _ = (req, conn);
        new_request_id()
    }
}

/// A [`Handler`] made from a function or closure; see [`handler_fn`].
#[derive(Clone, Debug)]
pub struct HandlerFn<F>(F);

/// Makes a [`Handler`] from `f(request, connection) -> future of response`; handy for
/// tests and small services.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Request<Incoming>, Arc<ConnInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<GatewayBody>> + Send,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request<Incoming>, Arc<ConnInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<GatewayBody>> + Send,
{
    fn call(
        &self,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<GatewayBody>> + Send {
        (self.0)(req, conn)
    }
}

/// Where the listener is in its life; connections and requests watch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    Draining,
    Stopped,
}

/// Resolves once the listener reached `phase` (or is gone, which means stopped).
async fn reached(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    let _ = rx.wait_for(|p| *p >= phase).await;
}

/// What every connection task shares.
struct Shared<H> {
    handler: H,
    limits: ServerLimits,
    tls: Option<Arc<ServerConfig>>,
    /// hyper connection builders: auto-detecting, HTTP/1 only and HTTP/2 only (the last
    /// two for when ALPN already decided).
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl<H> Shared<H> {
    fn new(handler: H, limits: ServerLimits, tls: Option<Arc<ServerConfig>>) -> Self {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .max_buf_size(limits.max_header_bytes.max(MIN_H1_BUFFER))
            .max_headers(limits.max_headers)
            // Off: the listener's own clock does this without closing idle keep-alive
            // connections early (see the module documentation).
            .header_read_timeout(None);
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(limits.idle_timeout))
            .keep_alive_timeout(limits.header_read_timeout);
        Self {
            h1: b.clone().http1_only(),
            h2: b.clone().http2_only(),
            auto: b,
            handler,
            limits,
            tls,
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests
/// for up to `limits.drain_timeout` (then drops the rest). Returns when done.
///
/// Errors only if the listener's own address cannot be read; accept errors are logged
/// and retried, connection errors end that connection.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: ServerLimits,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let listen_addr = listener.local_addr()?;
    let drain_timeout = limits.drain_timeout;
    let shared = Arc::new(Shared::new(handler, limits, tls));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut paused_until: Option<Instant> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = conns.join_next() => connection_ended(done),
            () = sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                paused_until = None;
            }
            accepted = listener.accept(), if paused_until.is_none() => match accepted {
                Ok((tcp, peer)) => {
                    let local = tcp.local_addr().unwrap_or(listen_addr);
                    conns.spawn(connection(tcp, peer, local, Arc::clone(&shared), phase_rx.clone()));
                }
                Err(e) if is_about_one_connection(&e) => {
                    debug!(error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    warn!(error = %e, addr = %listen_addr, "accept failed; pausing before accepting again");
                    paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                }
            },
        }
    }
    // Closing the socket now makes new connections fail fast (refused) instead of
    // queueing in the backlog of a listener that will never accept them.
    drop(listener);
    info!(
        addr = %listen_addr,
        open_connections = conns.len(),
        "stopped accepting; draining in-flight requests"
    );
    phase_tx.send_replace(Phase::Draining);
    let drained = tokio::time::timeout(drain_timeout, async {
        while let Some(done) = conns.join_next().await {
            connection_ended(done);
        }
    })
    .await
    .is_ok();
    if !drained {
        warn!(
            addr = %listen_addr,
            dropped_connections = conns.len(),
            drain_timeout_ms = drain_timeout.as_millis(),
            "drain timeout passed; dropping the connections still open"
        );
    }
    // Also ends HTTP/2 streams, which run in their own tasks outside `conns`.
    phase_tx.send_replace(Phase::Stopped);
    conns.shutdown().await;
    info!(addr = %listen_addr, "listener stopped");
    Ok(())
}

fn connection_ended(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!("a connection task panicked; that connection was dropped");
    }
}

fn is_about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One accepted TCP connection: TLS handshake if configured, then HTTP.
async fn connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared<H>>,
    mut phase: watch::Receiver<Phase>,
) {
    // Requests and responses are small and latency-bound; Nagle would only add delay.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = shared.tls.clone() else {
        let info = ConnInfo {
            peer,
            local,
            tls: false,
            client_identity: None,
        };
        return serve_http(tcp, Proto::Sniffing, info, &shared, phase).await;
    };
    let handshake = tokio::time::timeout(
        shared.limits.header_read_timeout,
        tokio_rustls::TlsAcceptor::from(tls).accept(tcp),
    );
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                shared.handler.tls_handshake_failed("failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                shared.handler.tls_handshake_failed("timeout");
                return;
            }
        },
        () = reached(&mut phase, Phase::Draining) => return,
    };
    let session = stream.get_ref().1;
    let proto = match session.alpn_protocol() {
        Some(b"h2") => Proto::H2,
        Some(_) => Proto::H1,
        None => Proto::Sniffing,
    };
    let client_identity = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| client_identity(leaf.as_ref()));
    let info = ConnInfo {
        peer,
        local,
        tls: true,
        client_identity,
    };
    serve_http(stream, proto, info, &shared, phase).await;
}

/// Runs HTTP on an established stream until the connection ends, times out or drains.
async fn serve_http<S, H>(
    stream: S,
    proto: Proto,
    info: ConnInfo,
    shared: &Arc<Shared<H>>,
    mut phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let peer = info.peer;
    let info = Arc::new(info);
    let clock = ConnClock::new(proto);
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: Arc::clone(&clock),
    });
    let service = {
        let shared = Arc::clone(shared);
        let clock = Arc::clone(&clock);
        let phase = phase.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = clock.begin();
            let shared = Arc::clone(&shared);
            let info = Arc::clone(&info);
            let phase = phase.clone();
            async move {
                let resp = respond(&shared, req, info, phase).await;
                Ok::<_, Infallible>(resp.map(|inner| Tracked {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let builder = match proto {
        Proto::H1 => &shared.h1,
        Proto::H2 => &shared.h2,
        Proto::Sniffing => &shared.auto,
    };
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    // Set once graceful shutdown has been asked for (idle or drain): from then on only
    // the header-read clock and the deadlines below still apply.
    let mut closing = false;
    // After an idle close, a peer that never lets the connection finish (an HTTP/2 peer
    // not answering GOAWAY's ping) is dropped at this deadline.
    let mut give_up: Option<Instant> = None;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            why = expired(&clock, &shared.limits, closing) => match why {
                Expiry::HeaderRead => {
                    debug!(%peer, "no complete request head within header_read_timeout; closing");
                    return;
                }
                Expiry::Idle => {
                    debug!(%peer, "connection idle for idle_timeout; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    give_up = Some(Instant::now() + shared.limits.header_read_timeout);
                }
            },
            () = reached(&mut phase, Phase::Draining), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until(give_up.unwrap_or_else(Instant::now)), if give_up.is_some() => {
                debug!(%peer, "connection did not close after an idle shutdown; dropping it");
                return;
            }
        }
    }
}

/// Answers one request: the listener's own limits, then the handler under the request
/// timeout.
async fn respond<H: Handler>(
    shared: &Shared<H>,
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    mut phase: watch::Receiver<Phase>,
) -> Response<GatewayBody> {
    let limits = &shared.limits;
    let request_id = shared.handler.request_id(&req, &conn);
    if let Some(refusal) = over_limits(&req, limits) {
        return refusal.into_response(&request_id);
    }
    let mut req = req;
    req.extensions_mut()
        .insert(crate::context::RequestId(request_id.clone()));
    // Only the method and path are logged: the query may hold a presigned credential.
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let call = tokio::time::timeout(limits.request_timeout, shared.handler.call(req, conn));
    tokio::select! {
        done = call => match done {
            Ok(resp) => resp,
            Err(_) => {
                let ms = limits.request_timeout.as_millis();
                warn!(%method, %path, request_timeout_ms = ms, "request timed out");
                GatewayError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "GatewayTimeout",
                    format!("the gateway did not finish the request within its request timeout ({ms} ms)"),
                )
                .into_response(&request_id)
            }
        },
        () = reached(&mut phase, Phase::Stopped) => {
            GatewayError::unavailable("the gateway shut down before this request finished")
                .into_response(&request_id)
        }
    }
}

/// The limits hyper cannot enforce itself: the request-target length (both protocols)
/// and the header count under HTTP/2 (hyper counts HTTP/1 headers while parsing).
fn over_limits(req: &Request<Incoming>, limits: &ServerLimits) -> Option<GatewayError> {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string().len(), |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Some(GatewayError::new(
            StatusCode::URI_TOO_LONG,
            "RequestURITooLong",
            format!(
                "the request target is {target} bytes; the limit is {} bytes",
                limits.max_uri_bytes
            ),
        ));
    }
    if req.headers().len() > limits.max_headers {
        return Some(GatewayError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            format!(
                "the request has {} header fields; the limit is {}",
                req.headers().len(),
                limits.max_headers
            ),
        ));
    }
    None
}

/// The listener answers some requests before the handler sets a request id.
fn new_request_id() -> String {
    crate::random::uuid_v4().to_string()
}

/// The connection's HTTP version, as far as the listener knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// Plain TCP (or TLS without ALPN) before the first bytes told.
    Sniffing,
    H1,
    H2,
}

/// A connection's timing state: what the header-read and idle timeouts measure.
struct ConnClock {
    state: Mutex<ClockState>,
    /// Signalled when a deadline may have moved.
    changed: Notify,
}

struct ClockState {
    proto: Proto,
    /// How many bytes of the HTTP/2 preface the connection has sent so far, while
    /// sniffing.
    preface_seen: usize,
    in_flight: usize,
    /// When the request head now being read began (HTTP/1).
    head_started: Option<Instant>,
    /// When the last request finished (or the connection started).
    idle_since: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Expiry {
    HeaderRead,
    Idle,
}

impl ConnClock {
    fn new(proto: Proto) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            state: Mutex::new(ClockState {
                proto,
                preface_seen: 0,
                in_flight: 0,
                // A new HTTP/1 connection owes its first request head right away, so
                // connecting and saying nothing is a slow head, not an idle connection.
                head_started: (proto != Proto::H2).then_some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ClockState> {
        // The state stays consistent under a panic elsewhere (plain counters and times).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection read `bytes` from the client.
    fn on_read(&self, bytes: &[u8]) {
        let mut s = self.lock();
        if s.proto == Proto::Sniffing {
            s.sniff(bytes);
        }
        if s.proto != Proto::H2 && s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request head arrived and goes to the handler.
    ///
    /// A pipelined client may already have sent part of its next head, read into hyper's
    /// buffer along with this one; no later read then starts the header clock, so that
    /// head is bounded by the idle timeout instead. That gains a client nothing over an
    /// idle keep-alive connection, which it could hold for as long anyway.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_started = None;
        drop(s);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    fn deadline(&self, limits: &ServerLimits, closing: bool) -> Option<(Instant, Expiry)> {
        let s = self.lock();
        if s.in_flight > 0 {
            None
        } else if let Some(started) = s.head_started {
            Some((started + limits.header_read_timeout, Expiry::HeaderRead))
        } else if closing {
            None
        } else {
            Some((s.idle_since + limits.idle_timeout, Expiry::Idle))
        }
    }
}

impl ClockState {
    fn sniff(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if H2_PREFACE.get(self.preface_seen) != Some(&b) {
                self.proto = Proto::H1;
                return;
            }
            self.preface_seen += 1;
            if self.preface_seen == H2_PREFACE.len() {
                self.proto = Proto::H2;
                self.head_started = None;
                return;
            }
        }
    }
}

/// Resolves when the connection's header-read or idle deadline passes. With `closing`,
/// only the header-read deadline counts: the idle close has already been asked for.
async fn expired(clock: &ConnClock, limits: &ServerLimits, closing: bool) -> Expiry {
    loop {
        // Created before reading the state, so a change in between is not missed.
        let changed = clock.changed.notified();
        match clock.deadline(limits, closing) {
            None => changed.await,
            Some((at, why)) => {
                if at <= Instant::now() {
                    return why;
                }
                tokio::select! {
                    () = sleep_until(at) => {}
                    () = changed => {}
                }
            }
        }
    }
}

/// A request in flight on a connection; dropped with its response body.
struct InFlight(Arc<ConnClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// The response body, holding the request in flight until it has been sent.
struct Tracked {
    inner: GatewayBody,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's stream, telling its clock when the client sends bytes.
struct Watched<S> {
    inner: S,
    clock: Arc<ConnClock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Some(new) = buf.filled().get(before..)
            && !new.is_empty()
        {
            this.clock.on_read(new);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Who a verified client certificate names: its subject DN (RFC 4514, as
/// `openssl x509 -subject -nameopt RFC2253` prints it), or, when the certificate has no
/// subject (SAN-only) or it cannot be read, `sha256:` and the certificate's fingerprint.
pub fn client_identity(cert_der: &[u8]) -> String {
    match subject_dn(cert_der) {
        Some(dn) if !dn.is_empty() => dn,
        _ => format!(
            "sha256:{}",
            crate::sigv4::hex(Sha256::digest(cert_der).as_slice())
        ),
    }
}

/// One DER element: its tag, its contents and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // Indefinite (0) and absurd lengths are not DER.
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

fn subject_dn(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = der_next(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_next(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = der_next(rest)?;
    // [0] EXPLICIT version is optional (absent means v1).
    if tag == 0xa0 {
        rest = after;
    }
    // serialNumber, signature, issuer, validity; then subject.
    for _ in 0..4 {
        rest = der_next(rest)?.2;
    }
    let (SEQUENCE, subject, _) = der_next(rest)? else {
        return None;
    };
    render_name(subject)
}

fn render_name(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (SET, mut set, rest) = der_next(name)? else {
            return None;
        };
        name = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, atv, rest) = der_next(set)? else {
                return None;
            };
            set = rest;
            let (OID, oid, value) = der_next(atv)? else {
                return None;
            };
            let (value_tag, value_bytes, _) = der_next(value)?;
            let part = match (attribute_name(oid), decode_string(value_tag, value_bytes)) {
                (Some(short), Some(text)) => format!("{short}={}", escape_dn_value(&text)),
                // RFC 4514: a type without a short name, or a value that is not a string,
                // is written as the dotted OID and the value's DER in hex.
                (short, _) => {
                    let key = match short {
                        Some(s) => s.to_string(),
                        None => oid_string(oid)?,
                    };
                    format!("{key}=#{}", crate::sigv4::hex(value))
                }
            };
            parts.push(part);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn oid_string(oid: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    let (&first, rest) = arcs.split_first()?;
    let (a, b) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in rest {
        let _ = write!(out, ".{arc}");
    }
    Some(out)
}

fn decode_string(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString
        0x0c | 0x12 | 0x13 | 0x16 | 0x1a => std::str::from_utf8(bytes).ok().map(str::to_owned),
        // TeletexString: in practice Latin-1.
        0x14 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e => {
            let units = bytes
                .chunks_exact(2)
                .map(|c| c.iter().fold(0u16, |acc, &b| (acc << 8) | u16::from(b)));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        // UniversalString: UTF-32BE.
        0x1c => bytes
            .chunks_exact(4)
            .map(|c| char::from_u32(c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))))
            .collect(),
        _ => None,
    }
}

/// RFC 4514 escaping, plus hex escapes for control characters so a crafted subject
/// cannot forge log lines.
fn escape_dn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '#' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn subject_dn_is_rfc4514_in_reverse_der_order() {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Commerce, Inc.");
        dn.push(rcgen::DnType::CommonName, " checkout+svc");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            client_identity(cert.der()),
            "CN=\\ checkout\\+svc,O=Commerce\\, Inc.,C=DE"
        );
    }

    #[test]
    fn certificate_without_subject_is_named_by_fingerprint() {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = client_identity(cert.der());
        assert!(id.starts_with("sha256:"), "{id}");
        assert_eq!(id.len(), "sha256:".len() + 64);
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x30) as u8).collect();
            let _ = client_identity(&junk);
        }
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
            "1.2.840.113549"
        );
    }

    #[test]
    fn sniffing_tells_h1_from_h2() {
        let mut s = ClockState {
            proto: Proto::Sniffing,
            preface_seen: 0,
            in_flight: 0,
            head_started: Some(Instant::now()),
            idle_since: Instant::now(),
        };
        s.sniff(b"PRI * HTTP/2.0\r\n");
        assert_eq!(s.proto, Proto::Sniffing);
        s.sniff(b"\r\nSM\r\n\r\n\0\0");
        assert_eq!(s.proto, Proto::H2);
        assert!(s.head_started.is_none());
        let mut s = ClockState {
            proto: Proto::Sniffing,
            preface_seen: 0,
            in_flight: 0,
            head_started: None,
            idle_since: Instant::now(),
        };
        s.sniff(b"POST / HTTP/1.1\r\n");
        assert_eq!(s.proto, Proto::H1);
    }
}
