//! The comparison's servers on loopback, in a work dir: a throwaway PKI, the nginx
//! upstream, the nginx reverse proxy and the gateway (`gateway run`) as child
//! processes, and the engine [`Target`] of each.
//!
//! Every child is stopped when the [`Mesh`] is dropped (SIGTERM, then SIGKILL after a
//! few seconds), also on an error or Ctrl-C. Children run in their own process group,
//! so a Ctrl-C in the terminal reaches only `loadtest`, which stops them in order.

use std::fmt::Write as _;
use std::io::{Read as _, Seek as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::engine::Target;
use crate::nginx::{self, Nginx, Role};
use crate::scenario::Credentials;

/// The SigV4 region the gateway accepts and the load generator signs for.
pub const REGION: &str = "eu-west-1";
/// The SigV4 service the gateway accepts and the load generator signs for.
pub const SERVICE: &str = "execute-api";
/// The role of the load generator's key.
pub const CALLER_ROLE: &str = "arn:aws:iam::111122223333:role/LoadtestCallerRole";
/// The path every target is called on (the upstream answers any path).
pub const PATH: &str = "/bench/x";

/// One of the compared targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The nginx upstream itself (its client port).
    Direct,
    /// The nginx reverse proxy in front of the upstream.
    Nginx,
    /// The gateway in front of the upstream.
    Gateway,
}

impl TargetKind {
    /// `direct`, `nginx`, `gateway`.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct",
            TargetKind::Nginx => "nginx",
            TargetKind::Gateway => "gateway",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The gateway's audit sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Audit {
    /// No audit records (`sink = "off"`).
    Off,
    /// `audit.log` in the work dir (`sink = "file"`), as in production.
    File,
}

/// What to start and how.
#[derive(Clone, Debug)]
pub struct MeshOptions {
    /// The `gateway` executable.
    pub gateway_bin: PathBuf,
    /// The `nginx` executable.
    pub nginx: PathBuf,
    /// TLS everywhere (plain HTTP everywhere otherwise).
    pub tls: bool,
    /// HTTP/2 on the listeners the load generator calls.
    pub http2: bool,
    /// The gateway's audit sink.
    pub audit: Audit,
    /// `RUST_LOG` for the gateway.
    pub gateway_log: String,
    /// Run nginx and the gateway on this CPU (with `taskset`).
    pub server_cpu: Option<usize>,
    /// Keep the work dir here instead of a temporary one.
    pub keep: Option<PathBuf>,
    /// The targets to start (the upstream always runs).
    pub targets: Vec<TargetKind>,
    /// The load generator's key, made a credential of the gateway.
    pub key: Credentials,
    /// More keys the gateway accepts with the same role (a scenario's own keys).
    pub extra_keys: Vec<Credentials>,
    /// The routing prefixes of the gateway's targets (`/bench` and a scenario's first
    /// path segments); each becomes a target forwarding to the upstream.
    pub prefixes: Vec<String>,
    /// Methods the rules allow besides GET and POST (a scenario's).
    pub methods: Vec<String>,
}

/// A fresh random key for the load generator: `AKIALOADTEST` and 8 random characters,
/// and a 40-character secret.
pub fn random_key() -> Result<Credentials, String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = random_bytes(28)?;
    let (id, secret) = bytes.split_at(8);
    let id: String = id
        .iter()
        .map(|b| char::from(ALPHABET.get(usize::from(b % 32)).copied().unwrap_or(b'A')))
        .collect();
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Credentials {
        access_key_id: format!("AKIALOADTEST{id}"),
        secret_access_key: secret,
        session_token: None,
    })
}

fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(bytes)
}

/// The running comparison. Field order is drop order: the gateway stops first, the
/// work dir goes last.
#[derive(Debug)]
pub struct Mesh {
    gateway: Option<Gateway>,
    proxy: Option<Nginx>,
    upstream: Nginx,
    tls: bool,
    http2: bool,
    audit: Audit,
    server_cpu: Option<usize>,
    dir: WorkDir,
}

/// The running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Its process.
    pub proc: Proc,
    /// The public listener.
    pub addr: SocketAddr,
    /// The admin listener (`/readyz`, `/metrics`).
    pub admin_addr: SocketAddr,
}

impl Mesh {
    /// Writes the PKI and configs and starts the upstream, then the proxy and the
    /// gateway when `options.targets` has them; returns once each is ready.
    pub async fn start(options: MeshOptions) -> Result<Mesh, String> {
        let bin = &options.gateway_bin;
        if options.targets.contains(&TargetKind::Gateway) && !bin.is_file() {
            return Err(format!(
                "the gateway binary {} is missing: build it with `cargo build --release -p gateway` \
                 (it is looked for next to loadtest) or give its path with --gateway-bin",
                bin.display()
            ));
        }
        let dir = WorkDir::new(options.keep.as_deref())?;
        let path = dir.path.clone();
        if options.tls {
            write_pki(&path)?;
        }
        nginx::write_docroot(&path)?;
        let build = nginx::probe(&options.nginx)?;
        let as_root = dir.owned_by_root()?;
        let conf = |role: Role| nginx::Conf {
            role,
            tls: options.tls,
            http2: options.http2,
            dir: path.clone(),
            as_root,
            build: build.clone(),
            nofile: nginx::nofile_limit(),
        };
        let upstream_role = nginx::upstream_role()?;
        let Role::Upstream { proxied_port, .. } = upstream_role else {
            return Err("internal error: not an upstream role".into());
        };
        let upstream =
            nginx::start(&options.nginx, &conf(upstream_role), options.server_cpu).await?;
        let proxy = if options.targets.contains(&TargetKind::Nginx) {
            let role = Role::Proxy {
                port: free_port()?,
                upstream_port: proxied_port,
                prefixes: options.prefixes.clone(),
            };
            Some(nginx::start(&options.nginx, &conf(role), options.server_cpu).await?)
        } else {
            None
        };
        let mut mesh = Mesh {
            gateway: None,
            proxy,
            upstream,
            tls: options.tls,
            http2: options.http2,
            audit: options.audit,
            server_cpu: options.server_cpu,
            dir,
        };
        if options.targets.contains(&TargetKind::Gateway) {
            mesh.gateway = Some(start_gateway(&options, &path, proxied_port).await?);
        }
        Ok(mesh)
    }

    /// The CPU nginx and the gateway are pinned to, if any.
    pub fn server_cpu(&self) -> Option<usize> {
        self.server_cpu
    }

    /// The work dir.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// The engine target for `kind`; an error if it was not started.
    pub fn target(&self, kind: TargetKind) -> Result<Target, String> {
        let scheme = if self.tls { "https" } else { "http" };
        let authority = match kind {
            TargetKind::Direct => format!("127.0.0.1:{}", self.upstream.role.client_port()),
            TargetKind::Nginx => match &self.proxy {
                Some(p) => format!("127.0.0.1:{}", p.role.client_port()),
                None => return Err("the nginx proxy was not started".into()),
            },
            TargetKind::Gateway => match &self.gateway {
                Some(g) => g.addr.to_string(),
                None => return Err("the gateway was not started".into()),
            },
        };
        Ok(Target {
            name: kind.name().to_string(),
            base_url: format!("{scheme}://{authority}"),
            ca_file: self.tls.then(|| self.dir.path.join("ca.pem")),
            http2: self.http2,
            region: REGION.to_string(),
            service: SERVICE.to_string(),
        })
    }

    /// The gateway's process id (0 when it was not started).
    pub fn gateway_pid(&self) -> u32 {
        self.gateway.as_ref().map_or(0, |g| g.proc.pid())
    }

    /// Requests the gateway has counted so far (`gateway_requests_total`, every
    /// decision), from its `/metrics`; `None` if that cannot be read.
    pub async fn gateway_requests(&self) -> Option<u64> {
        let text = self.gateway_metrics().await.ok()?;
        // A counter with no sample yet (no request so far) is 0.
        Some(float_count(
            metric_sum(&text, "gateway_requests_total").unwrap_or(0.0),
        ))
    }

    /// The gateway's `/metrics` text.
    pub async fn gateway_metrics(&self) -> Result<String, String> {
        let g = self.gateway.as_ref().ok_or("the gateway was not started")?;
        let (status, body) = admin_get(g.admin_addr, "/metrics").await?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        Ok(body)
    }

    /// An error if a child has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.upstream.proc.check_running()?;
        if let Some(p) = &mut self.proxy {
            p.proc.check_running()?;
        }
        if let Some(g) = &mut self.gateway {
            g.proc.check_running()?;
        }
        Ok(())
    }

    /// What runs where, for the report.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let scheme = if self.tls { "https" } else { "http" };
        let proto = match (self.tls, self.http2) {
            (true, true) => "TLS, HTTP/2 (ALPN h2)",
            (true, false) => "TLS, HTTP/1.1",
            (false, true) => "plain HTTP/2 (prior knowledge)",
            (false, false) => "plain HTTP/1.1",
        };
        let _ = writeln!(out, "work dir: {}", self.dir.describe());
        let up = &self.upstream.role;
        let Role::Upstream { proxied_port, .. } = up else {
            return out;
        };
        let upstream_url = format!("{scheme}://127.0.0.1:{proxied_port}");
        let _ = writeln!(
            out,
            "  direct   {scheme}://127.0.0.1:{}{PATH}  nginx upstream (pid {}), 100-byte file, {proto}; \
             the proxies reach it at {upstream_url} (HTTP/1.1)",
            up.client_port(),
            self.upstream.proc.pid(),
        );
        if let Some(p) = &self.proxy {
            let _ = writeln!(
                out,
                "  nginx    {scheme}://127.0.0.1:{}{PATH}  nginx reverse proxy (pid {}), no auth, \
                 keep-alive pool of 64 to the upstream{}",
                p.role.client_port(),
                p.proc.pid(),
                if self.tls {
                    ", upstream TLS verified"
                } else {
                    ""
                }
            );
        }
        if let Some(g) = &self.gateway {
            let _ = writeln!(
                out,
                "  gateway  {scheme}://{}{PATH}  gateway (pid {}, admin http://{}): SigV4, \
                 authorization, identity assertion; audit log {}",
                g.addr,
                g.proc.pid(),
                g.admin_addr,
                match self.audit {
                    Audit::File => "on (file, audit.log in the work dir)",
                    Audit::Off => "off",
                }
            );
        }
        out.push_str("  nginx: worker_processes 1 each, access_log off\n");
        if let Some(cpu) = self.server_cpu {
            let _ = writeln!(out, "  pinned: nginx and the gateway on CPU {cpu}");
        }
        out
    }

    /// Stops every child, then removes the work dir unless it is kept (and says where
    /// it is when it is).
    pub fn finish(self, announce: bool) {
        let kept = self.dir.keep;
        let path = self.dir.path.clone();
        drop(self);
        if kept && announce {
            println!("configs and logs kept in {}", path.display());
        }
    }
}

/// The sum of every sample of counter `name` (`name` or `name{labels}`) in a
/// Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            found = true;
            sum += v;
        }
    }
    found.then_some(sum)
}

/// A counter value as a count.
pub fn float_count(v: f64) -> u64 {
    // Counters are whole and far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = v.max(0.0).round() as u64;
    n
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot bind a loopback port: {e}"))
}

/// Waits until `127.0.0.1:port` accepts a connection, failing early if `proc` exits.
pub async fn wait_for_port(proc: &mut Proc, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_running()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} does not accept connections on port {port} after {timeout:?}{}",
                proc.name,
                proc.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `bin` as a command, under `taskset -c CPU` when `cpu` is given.
pub fn pinned(bin: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// Whether the `taskset` command is there.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins every thread of this process to `cpu` (`taskset -a -c -p`).
pub fn pin_this_process(cpu: usize) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-c", "-p"])
        .arg(cpu.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A child process, stopped (and reaped) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    /// Where its errors go (shown when it fails).
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with standard output to `stdout_file` and standard error to
    /// `log` (or to `stdout_file` when `log` is an error log the program writes
    /// itself), in its own process group.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        stdout_file: &Path,
        log: Option<&Path>,
    ) -> Result<Proc, String> {
        let open = |p: &Path| {
            std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
        };
        let out = open(stdout_file)?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot create {}: {e}", stdout_file.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {name} ({}): {e}",
                cmd.get_program().to_string_lossy()
            )
        })?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.unwrap_or(stdout_file).to_path_buf(),
            exited: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error (with the end of its log) if it has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        match self.exited {
            None => Ok(()),
            Some(status) => Err(format!(
                "{} exited ({status}){}",
                self.name,
                self.log_tail()
            )),
        }
    }

    /// The last lines of its log, as `:\n  ...` (empty if none).
    pub fn log_tail(&self) -> String {
        let tail = tail(&self.log, 4096);
        if tail.trim().is_empty() {
            return String::new();
        }
        let mut out = format!("; the end of {}:\n", self.log.display());
        for line in tail
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    fn stop(&mut self) {
        if self.exited.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM first: nginx's master then stops its worker (SIGKILL would orphan it,
        // still holding the port) and the gateway writes out its audit queue.
        let termed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `max` bytes of a file, as text.
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        let _ = f.seek(std::io::SeekFrom::Start(len - max));
    }
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The work dir: temporary (removed when dropped) or kept (`--keep DIR`).
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(keep: Option<&Path>) -> Result<WorkDir, String> {
        use std::os::unix::fs::DirBuilderExt as _;
        let (path, keep) = match keep {
            Some(p) => {
                std::fs::create_dir_all(p)
                    .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
                let p = std::fs::canonicalize(p)
                    .map_err(|e| format!("cannot use {}: {e}", p.display()))?;
                (p, true)
            }
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let p = std::env::temp_dir().join(format!(
                    "loadtest-compare-{}-{nanos:08x}",
                    std::process::id()
                ));
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&p)
                    .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
                (p, false)
            }
        };
        let dir = WorkDir { path, keep };
        // Paths go into nginx and TOML files unescaped.
        let text = dir.path.to_string_lossy();
        if text.contains(|c: char| c.is_whitespace() || "\"'\\$;{}#".contains(c)) {
            return Err(format!(
                "the work dir {text} has characters nginx configs cannot hold (spaces, quotes, \
                 $ ; {{ }} #); choose another with --keep"
            ));
        }
        Ok(dir)
    }

    /// Whether files created here belong to root (nginx then needs `user root;`).
    fn owned_by_root(&self) -> Result<bool, String> {
        use std::os::unix::fs::MetadataExt as _;
        let probe = self.path.join(".owner");
        std::fs::write(&probe, b"")
            .map_err(|e| format!("cannot write in {}: {e}", self.path.display()))?;
        let uid = std::fs::metadata(&probe)
            .map_err(|e| format!("cannot read {}: {e}", probe.display()))?
            .uid();
        let _ = std::fs::remove_file(&probe);
        Ok(uid == 0)
    }

    fn describe(&self) -> String {
        if self.keep {
            format!("{} (kept)", self.path.display())
        } else {
            format!(
                "{} (removed at the end; --keep DIR keeps it)",
                self.path.display()
            )
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes `ca.pem`, `server.pem` and `server-key.pem`: a fresh CA and a server
/// certificate for `127.0.0.1` and `localhost` (used by both nginx roles and the
/// gateway).
fn write_pki(dir: &Path) -> Result<(), String> {
    let fail = |e: rcgen::Error| format!("cannot create the test PKI: {e}");
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::new(Vec::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "loadtest compare CA (throwaway)");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(fail)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(fail)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;
    write(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
    write(&dir.join("server.pem"), &cert.pem(), false)?;
    write(&dir.join("server-key.pem"), &key.serialize_pem(), true)
}

/// Writes a file; `private` ones (keys, secrets) readable by the owner only.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(fail)?;
    f.write_all(contents.as_bytes()).map_err(fail)
}

/// The gateway's `gateway.toml`.
pub fn gateway_toml(tls: bool, audit: Audit, upstream: &str, prefixes: &[String]) -> String {
    let mut out = String::from(
        "# Written by `loadtest compare`: the gateway under test. Paths are relative to this file.\n\
         \n[listen]\naddr = \"127.0.0.1:0\"\n",
    );
    if tls {
        out.push_str("\n[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n");
    } else {
        out.push_str("plain_http = true\n");
    }
    let _ = write!(
        out,
        "\n[admin]\naddr = \"127.0.0.1:0\"\n\
         \n[limits]\ndrain_timeout_ms = 2000\n\
         \n[sigv4]\nregions = [\"{REGION}\"]\nservices = [\"{SERVICE}\"]\n\
         \n[identity]\ncredentials_file = \"credentials.toml\"\n\
         \n[rules]\nfile = \"rules.toml\"\n\
         \n[log]\nformat = \"json\"\n\n[audit]\n"
    );
    match audit {
        Audit::Off => out.push_str("sink = \"off\"\n"),
        Audit::File => out.push_str(
            "sink = \"file\"\npath = \"audit.log\"\nmax_file_bytes = 67108864  # keeps a long run's disk use bounded\nmax_files = 2\n",
        ),
    }
    for (i, prefix) in prefixes.iter().enumerate() {
        let name = target_name(i);
        let _ = write!(
            out,
            "\n[[target]]\nname = \"{name}\"\nupstream = \"{upstream}\"\npath_prefix = \"{prefix}\"\n"
        );
        if tls {
            out.push_str("ca_bundle = \"ca.pem\"\n");
        }
    }
    out
}

/// The gateway target (rules PBC) name of the `i`th prefix: `bench`, `bench2`, ...
fn target_name(i: usize) -> String {
    if i == 0 {
        "bench".to_string()
    } else {
        format!("bench{}", i + 1)
    }
}

/// The rules file: the load generator's role may call every target with GET and POST
/// (and the methods of `extra_methods`) on every path.
pub fn rules_toml(targets: usize, extra_methods: &[String]) -> String {
    let mut methods = vec!["GET".to_string(), "POST".to_string()];
    for m in extra_methods {
        if !methods.contains(m) {
            methods.push(m.clone());
        }
    }
    let methods = methods
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "# Written by `loadtest compare`.\n\n[[pbc]]\nname = \"loadtest\"\nprincipals = [\"{CALLER_ROLE}\"]\n"
    );
    for i in 0..targets.max(1) {
        let name = target_name(i);
        let _ = write!(
            out,
            "\n[[pbc]]\nname = \"{name}\"\nprincipals = [\"arn:aws:iam::111122223333:role/LoadtestUpstreamRole{i}\"]\n\
             \n[[allow]]\nid = \"loadtest-calls-{name}\"\ncaller = \"loadtest\"\ntarget = \"{name}\"\nmethods = [{methods}]\npaths = [\"/**\"]\n"
        );
    }
    out
}

/// The credentials file: each key with the load generator's role.
pub fn credentials_toml(keys: &[&Credentials]) -> String {
    let mut out = String::from("# Written by `loadtest compare`: throwaway keys.\n");
    for k in keys {
        let _ = write!(
            out,
            "\n[[credential]]\naccess_key_id = \"{}\"\nrole_arn = \"{CALLER_ROLE}\"\nsecret = \"{}\"\n",
            k.access_key_id, k.secret_access_key
        );
    }
    out
}

async fn start_gateway(
    options: &MeshOptions,
    dir: &Path,
    upstream_port: u16,
) -> Result<Gateway, String> {
    let bin = &options.gateway_bin;
    let scheme = if options.tls { "https" } else { "http" };
    let upstream = format!("{scheme}://127.0.0.1:{upstream_port}");
    let mut keys = vec![&options.key];
    for k in &options.extra_keys {
        if keys
            .iter()
            .all(|have| have.access_key_id != k.access_key_id)
        {
            keys.push(k);
        }
    }
    write(
        &dir.join("credentials.toml"),
        &credentials_toml(&keys),
        true,
    )?;
    write(
        &dir.join("rules.toml"),
        &rules_toml(options.prefixes.len(), &options.methods),
        false,
    )?;
    let config = dir.join("gateway.toml");
    write(
        &config,
        &gateway_toml(options.tls, options.audit, &upstream, &options.prefixes),
        false,
    )?;
    let check = Command::new(bin)
        .arg("check-config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !check.status.success() {
        return Err(format!(
            "`gateway check-config {}` found errors:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let mut cmd = pinned(bin, options.server_cpu);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        // Whatever the level, the `gateway listening` line (its addresses) must be there.
        .env(
            "RUST_LOG",
            format!("{},gateway::server=info", options.gateway_log),
        );
    let log = dir.join("gateway.log");
    let mut proc = Proc::spawn("the gateway", cmd, &log, None)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (addr, admin_addr) = loop {
        proc.check_running()?;
        if let Some(found) = listening(&tail(&log, 1 << 20)) {
            break found;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the gateway did not log `gateway listening` within 15 s{}",
                proc.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        proc.check_running()?;
        if let Ok((200, _)) = admin_get(admin_addr, "/readyz").await {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the gateway's /readyz (http://{admin_addr}/readyz) did not answer 200 within 15 s{}",
                proc.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Gateway {
        proc,
        addr,
        admin_addr,
    })
}

/// The public and admin addresses from the gateway's `gateway listening` JSON log line.
pub fn listening(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    log.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = if v.get("message").is_some() {
            &v
        } else {
            v.get("fields")?
        };
        if fields.get("message")?.as_str()? != "gateway listening" {
            return None;
        }
        let addr = fields.get("addr")?.as_str()?.parse().ok()?;
        let admin = fields.get("admin_addr")?.as_str()?.parse().ok()?;
        Some((addr, admin))
    })
}

/// `GET path` on a plain HTTP/1.1 listener (the gateway's admin port): status and body.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok::<_, String>(bytes)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("http://{addr}{path} did not answer within 5 s"))??;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("http://{addr}{path}: not an HTTP response"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A chunked body's data.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        let Some(chunk) = rest.get(..n) else {
            out.push_str(rest);
            break;
        };
        out.push_str(chunk);
        body = rest.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn sums_counters() {
        let text = "# TYPE gateway_requests counter\n\
                    gateway_requests_total{caller=\"loadtest\",code=\"OK\"} 10\n\
                    gateway_requests_total{caller=\"-\",code=\"AccessDenied\"} 2\n\
                    gateway_requests_created{caller=\"-\"} 1.7e9\n\
                    gateway_audit_records_written_total 7\n";
        assert_eq!(metric_sum(text, "gateway_requests_total"), Some(12.0));
        assert_eq!(
            metric_sum(text, "gateway_audit_records_written_total"),
            Some(7.0)
        );
        assert_eq!(
            metric_sum(text, "gateway_audit_records_dropped_total"),
            None
        );
    }

    #[test]
    fn finds_the_listening_line() {
        let log = "{\"timestamp\":\"x\",\"level\":\"INFO\",\"message\":\"starting\"}\n\
                   {\"timestamp\":\"x\",\"level\":\"INFO\",\"message\":\"gateway listening\",\"addr\":\"127.0.0.1:4000\",\"admin_addr\":\"127.0.0.1:4001\",\"tls\":true}\n";
        let (a, b) = listening(log).unwrap();
        assert_eq!(a.port(), 4000);
        assert_eq!(b.port(), 4001);
        let nested = "{\"fields\":{\"message\":\"gateway listening\",\"addr\":\"127.0.0.1:5\",\"admin_addr\":\"127.0.0.1:6\"}}";
        assert_eq!(listening(nested).unwrap().0.port(), 5);
        assert_eq!(listening("not json\n"), None);
    }

    #[test]
    fn random_keys_are_valid_for_the_gateway() {
        let k = random_key().unwrap();
        assert_eq!(k.access_key_id.len(), 20);
        assert!(
            k.access_key_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_eq!(k.secret_access_key.len(), 40);
        assert_ne!(random_key().unwrap().access_key_id, k.access_key_id);
    }

    #[test]
    fn configs_parse() {
        let prefixes = vec!["/bench".to_string(), "/order".to_string()];
        let g: toml::Value = toml::from_str(&gateway_toml(
            true,
            Audit::File,
            "https://127.0.0.1:9",
            &prefixes,
        ))
        .unwrap();
        assert_eq!(g["target"][1]["name"].as_str(), Some("bench2"));
        assert_eq!(g["target"][0]["ca_bundle"].as_str(), Some("ca.pem"));
        let plain = gateway_toml(false, Audit::Off, "http://127.0.0.1:9", &prefixes);
        let p: toml::Value = toml::from_str(&plain).unwrap();
        assert_eq!(p["listen"]["plain_http"].as_bool(), Some(true));
        assert_eq!(p["audit"]["sink"].as_str(), Some("off"));
        let r: toml::Value = toml::from_str(&rules_toml(2, &["PUT".into()])).unwrap();
        assert_eq!(r["allow"][1]["methods"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
