//! The HTTP client: hand-managed hyper connections over TCP or TLS (tokio-rustls, the
//! target's CA file as the only root), so the number of connections is exactly what
//! was asked for.
//!
//! - HTTP/1.1: a pool of at most `connections` connections, one request in flight on
//!   each; a request waits for a free connection (that wait is part of its latency).
//! - HTTP/2 (ALPN `h2`, or prior knowledge over plain TCP): `connections` connections,
//!   requests spread over them round robin and multiplexed.
//!
//! A connection that fails is dropped and replaced on the next use.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// How long a TCP connect plus TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request that got no response.
#[derive(Clone, Debug)]
pub struct SendError {
    /// A short kind for counting: `connect`, `tls`, `send`, `body`, `timeout`, ...
    pub kind: &'static str,
    /// What happened.
    pub message: String,
}

impl SendError {
    fn new(kind: &'static str, message: impl Into<String>) -> SendError {
        SendError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// A response, read to its end.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// `x-amzn-ErrorType`, if any (the part before a `:`).
    pub code: Option<String>,
    /// Body bytes received.
    pub body_len: usize,
    /// The body, when it was asked for.
    pub body: Option<Bytes>,
}

type H1 = http1::SendRequest<Full<Bytes>>;
type H2 = http2::SendRequest<Full<Bytes>>;

enum Pool {
    H1 {
        idle: std::sync::Mutex<Vec<H1>>,
        slots: Semaphore,
    },
    H2 {
        conns: Vec<H2Slot>,
        next: AtomicUsize,
    },
}

struct H2Slot {
    current: std::sync::Mutex<Option<H2>>,
    connecting: tokio::sync::Mutex<()>,
}

/// A client for one target.
pub struct Client {
    base_url: String,
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    http2: bool,
    pool: Pool,
    opened: AtomicUsize,
}

impl Client {
    /// A client for `base_url` (`http://` or `https://`, host and port), trusting only
    /// the certificates of `ca_file` for `https`, with at most `connections`
    /// connections. No connection is made yet (see [`Client::preconnect`]).
    pub fn new(
        base_url: &str,
        ca_file: Option<&Path>,
        http2: bool,
        connections: usize,
    ) -> Result<Client, String> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let uri: http::Uri = base_url
            .parse()
            .map_err(|e| format!("target URL {base_url}: {e}"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "target URL {base_url}: give only scheme, host and port (routes carry the paths)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("target URL {base_url}: no host"))?
            .to_string();
        let host = uri
            .host()
            .ok_or_else(|| format!("target URL {base_url}: no host"))?;
        let tls = match uri.scheme_str() {
            Some("https") => {
                let ca = ca_file.ok_or_else(|| {
                    format!("target {base_url} is https: give the CA file to trust (--ca)")
                })?;
                let config = tls_config(ca, http2)?;
                let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                    .map_err(|e| format!("target URL {base_url}: host {host}: {e}"))?
                    .to_owned();
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
            Some("http") => None,
            _ => {
                return Err(format!(
                    "target URL {base_url}: the scheme must be http or https"
                ));
            }
        };
        if uri.port_u16().is_none() {
            return Err(format!("target URL {base_url}: give the port"));
        }
        let connections = connections.max(1);
        let pool = if http2 {
            Pool::H2 {
                conns: (0..connections)
                    .map(|_| H2Slot {
                        current: std::sync::Mutex::new(None),
                        connecting: tokio::sync::Mutex::new(()),
                    })
                    .collect(),
                next: AtomicUsize::new(0),
            }
        } else {
            Pool::H1 {
                idle: std::sync::Mutex::new(Vec::with_capacity(connections)),
                slots: Semaphore::new(connections),
            }
        };
        Ok(Client {
            base_url,
            authority,
            tls,
            http2,
            pool,
            opened: AtomicUsize::new(0),
        })
    }

    /// `host:port` of the target: the `host` header (`:authority` over HTTP/2).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The target's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether requests go over HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// The URI to put in a request for `path`: origin-form for HTTP/1.1 (with a `host`
    /// header beside it), absolute for HTTP/2 (`:scheme` and `:authority` come from it).
    pub fn uri_for(&self, path: &str) -> Result<http::Uri, String> {
        let s = if self.http2 {
            format!("{}{path}", self.base_url)
        } else {
            path.to_string()
        };
        s.parse().map_err(|e| format!("{path}: {e}"))
    }

    /// Whether requests carry a `host` header (HTTP/1.1) or only `:authority`.
    pub fn sends_host_header(&self) -> bool {
        !self.http2
    }

    /// Opens `n` connections now (at most the pool's size), so the run does not start
    /// with handshakes. Fails when the target cannot be reached.
    pub async fn preconnect(&self, n: usize) -> Result<(), String> {
        match &self.pool {
            Pool::H1 { idle, .. } => {
                let mut opened = Vec::new();
                for _ in 0..n {
                    opened.push(self.connect_h1().await.map_err(|e| e.to_string())?);
                }
                if let Ok(mut idle) = idle.lock() {
                    idle.extend(opened);
                }
            }
            Pool::H2 { conns, .. } => {
                for slot in conns.iter().take(n) {
                    self.h2_conn(slot).await.map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Sends `req` and reads the whole response; `keep_body` keeps the body bytes.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<Answer, SendError> {
        let resp = match &self.pool {
            Pool::H1 { idle, slots } => {
                let _permit = slots
                    .acquire()
                    .await
                    .map_err(|_| SendError::new("closed", "the client is shutting down"))?;
                let reused = idle.lock().ok().and_then(|mut v| v.pop());
                let (mut conn, fresh) = match reused {
                    Some(c) if !c.is_closed() => (c, false),
                    _ => (self.connect_h1().await?, true),
                };
                let mut req = req;
                let mut fresh = fresh;
                let resp = loop {
                    if conn.ready().await.is_err() {
                        if fresh {
                            return Err(SendError::new(
                                "send",
                                "the new connection closed at once",
                            ));
                        }
                        conn = self.connect_h1().await?;
                        fresh = true;
                        continue;
                    }
                    match conn.try_send_request(req).await {
                        Ok(resp) => break resp,
                        Err(mut e) => match e.take_message() {
                            // Not sent (the server closed the idle connection): once
                            // more on a new connection.
                            Some(back) if !fresh => {
                                req = back;
                                conn = self.connect_h1().await?;
                                fresh = true;
                            }
                            _ => return Err(send_error(e.error())),
                        },
                    }
                };
                let answer = read(resp, keep_body).await?;
                if let Ok(mut v) = idle.lock() {
                    v.push(conn);
                }
                return Ok(answer);
            }
            Pool::H2 { conns, next } => {
                let n = conns.len().max(1);
                let slot = conns
                    .get(next.fetch_add(1, Ordering::Relaxed) % n)
                    .ok_or_else(|| SendError::new("closed", "no connection slot"))?;
                let mut conn = self.h2_conn(slot).await?;
                match conn.try_send_request(req).await {
                    Ok(resp) => resp,
                    Err(mut e) => match e.take_message() {
                        Some(back) => {
                            // The connection went away before the request left:
                            // replace it and send once more.
                            if let Ok(mut cur) = slot.current.lock() {
                                *cur = None;
                            }
                            let mut conn = self.h2_conn(slot).await?;
                            conn.send_request(back).await.map_err(|e| send_error(&e))?
                        }
                        None => return Err(send_error(e.error())),
                    },
                }
            }
        };
        read(resp, keep_body).await
    }

    async fn h2_conn(&self, slot: &H2Slot) -> Result<H2, SendError> {
        if let Some(c) = current_h2(slot) {
            return Ok(c);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(c) = current_h2(slot) {
            return Ok(c);
        }
        let c = self.connect_h2().await?;
        if let Ok(mut cur) = slot.current.lock() {
            *cur = Some(c.clone());
        }
        Ok(c)
    }

    async fn stream(&self) -> Result<Io, SendError> {
        let connect = async {
            let tcp = TcpStream::connect(&self.authority)
                .await
                .map_err(|e| SendError::new("connect", format!("{}: {e}", self.authority)))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Io::Plain(tcp)),
                Some((tls, name)) => {
                    let s = tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| SendError::new("tls", format!("{}: {e}", self.authority)))?;
                    let alpn = s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    if self.http2 && alpn.as_deref() != Some(b"h2".as_slice()) {
                        return Err(SendError::new(
                            "tls",
                            format!("{} did not agree to HTTP/2 (ALPN h2)", self.authority),
                        ));
                    }
                    Ok(Io::Tls(Box::new(s)))
                }
            }
        };
        let io = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| SendError::new("connect", format!("{}: timed out", self.authority)))??;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(io)
    }

    async fn connect_h1(&self) -> Result<H1, SendError> {
        let io = self.stream().await?;
        match io {
            Io::Plain(s) => handshake_h1(s).await,
            Io::Tls(s) => handshake_h1(*s).await,
        }
    }

    async fn connect_h2(&self) -> Result<H2, SendError> {
        let io = self.stream().await?;
        match io {
            Io::Plain(s) => handshake_h2(s).await,
            Io::Tls(s) => handshake_h2(*s).await,
        }
    }
}

fn current_h2(slot: &H2Slot) -> Option<H2> {
    let cur = slot.current.lock().ok()?;
    cur.as_ref().filter(|c| !c.is_closed()).cloned()
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn handshake_h1<IO>(io: IO) -> Result<H1, SendError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::new("handshake", e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn handshake_h2<IO>(io: IO) -> Result<H2, SendError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .adaptive_window(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::new("handshake", e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn send_error(e: &hyper::Error) -> SendError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        "closed"
    } else {
        "send"
    };
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    SendError::new(kind, msg)
}

async fn read(resp: Response<Incoming>, keep_body: bool) -> Result<Answer, SendError> {
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).to_string());
    let mut body = resp.into_body();
    let mut body_len = 0;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| SendError::new("body", e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            body_len += data.len();
            if keep_body {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok(Answer {
        status,
        code,
        body_len,
        body: keep_body.then(|| Bytes::from(kept)),
    })
}

fn tls_config(ca: &Path, http2: bool) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("CA file {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("CA file {}: no certificate in it", ca.display()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}
