//! `gateway demo`: a whole demo mesh on loopback, with nothing to set up.
//!
//! It writes a fresh CA and certificates, the demo credentials, the demo allow matrix
//! (`examples/rules/commerce.toml`) and a `gateway.toml` into a state directory, starts
//! four demo PBC upstreams (checkout, order, catalogue, payment; see [`upstream`]) and
//! then the gateway itself from that `gateway.toml`, loaded with [`Config::load`], so
//! the file on disk is exactly what runs and can be reused with `gateway run --config`.
//! [`Demo::instructions`] prints ready-to-paste `curl --aws-sigv4` commands.

pub mod standalone;
pub mod upstream;

use crate::config::Config;
use crate::server::{self, Running};
use crate::stack::JWKS_PATH;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use upstream::Upstream;
use zeroize::Zeroizing;

/// The SigV4 region the demo accepts.
pub const REGION: &str = "eu-west-1";

/// The SigV4 service the demo accepts.
pub const SERVICE: &str = "execute-api";

/// The `iss` of the demo gateway's identity assertions.
pub const ISSUER: &str = "sigv4-gateway-demo";

/// The demo allow matrix, the same file `authz-rules` checks in CI.
pub const RULES: &str = include_str!("../../../examples/rules/commerce.toml");

/// One demo identity: a PBC, its role and its static access key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoIdentity {
    /// The PBC (also its path prefix, `/<pbc>`, and its upstream's name).
    pub pbc: &'static str,
    /// The role ARN the key belongs to.
    pub role_arn: &'static str,
    /// The access key id.
    pub access_key_id: &'static str,
    /// The secret: a documented demo value, never to be used anywhere else.
    pub secret: &'static str,
}

/// The four demo identities, one per PBC, in the order they are printed.
pub const IDENTITIES: [DemoIdentity; 4] = [
    DemoIdentity {
        pbc: "checkout",
        role_arn: "arn:aws:iam::111122223333:role/CheckoutPBCRole",
        access_key_id: "AKIADEMOCHECKOUT0001",
        secret: "demo+checkout+secret+key+not+for+production",
    },
    DemoIdentity {
        pbc: "order",
        role_arn: "arn:aws:iam::111122223333:role/OrderPBCRole",
        access_key_id: "AKIADEMOORDER0000001",
        secret: "demo+order+secret+key+not+for+production",
    },
    DemoIdentity {
        pbc: "catalogue",
        role_arn: "arn:aws:iam::111122223333:role/CataloguePBCRole",
        access_key_id: "AKIADEMOCATALOGUE001",
        secret: "demo+catalogue+secret+key+not+for+production",
    },
    DemoIdentity {
        pbc: "payment",
        role_arn: "arn:aws:iam::111122223333:role/PaymentPBCRole",
        access_key_id: "AKIADEMOPAYMENT00001",
        secret: "demo+payment+secret+key+not+for+production",
    },
];

/// The demo identity of a PBC.
pub fn identity(pbc: &str) -> Option<&'static DemoIdentity> {
    IDENTITIES.iter().find(|i| i.pbc == pbc)
}

/// What `gateway demo` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The gateway's address (port 0: the system picks one, and the printed commands
    /// use it).
    pub listen: SocketAddr,
    /// The admin listener's address.
    pub admin_listen: SocketAddr,
    /// Where to write the CA, certificates and configuration; default
    /// [`default_state_dir`].
    pub state_dir: Option<PathBuf>,
}

/// `<temp dir>/sigv4-gateway-demo`.
pub fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("sigv4-gateway-demo")
}

/// The state directory holds keys and the rules the gateway reloads, and its default
/// is in a shared temp dir: it must be a real directory (not a symlink) owned by us,
/// and is made private, so another local user cannot plant or swap its files.
fn check_private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("demo state directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "demo state directory {} is a symlink or not a directory; pass --state-dir with a directory of your own",
            dir.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let probe = dir.join(format!(".owner-check-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| format!("demo state directory {}: cannot write: {e}", dir.display()))?;
        let mine = std::fs::metadata(&probe).map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        if mine.map_err(|e| e.to_string())? != meta.uid() {
            return Err(format!(
                "demo state directory {} belongs to another user; pass --state-dir with a directory of your own",
                dir.display()
            ));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("demo state directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// A ready-to-paste command of the instructions, and what it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoCommand {
    /// What the command does.
    pub title: String,
    /// The shell command, one line.
    pub command: String,
    /// What you should see.
    pub expect: String,
}

/// A running demo mesh.
pub struct Demo {
    running: Running,
    upstreams: Vec<Upstream>,
    state_dir: PathBuf,
    ca_path: PathBuf,
    config_path: PathBuf,
    public_url: String,
    admin_url: String,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("public_url", &self.public_url)
            .field("admin_url", &self.admin_url)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Starts the demo: writes the state directory, starts the upstreams, then the
/// gateway from the `gateway.toml` just written.
pub async fn start(options: Options) -> Result<Demo, String> {
    let state_dir = options.state_dir.clone().unwrap_or_else(default_state_dir);
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        format!(
            "cannot create the demo state directory {}: {e}",
            state_dir.display()
        )
    })?;
    check_private_dir(&state_dir)?;
    // Absolute, so the printed paths work from any directory.
    let state_dir = std::fs::canonicalize(&state_dir)
        .map_err(|e| format!("demo state directory {}: {e}", state_dir.display()))?;
    let file = |name: &str| state_dir.join(name);

    let ca = DemoCa::generate()?;
    write_file(&file("ca.pem"), &ca.cert_pem, false)?;
    let gateway_cert = ca.issue("sigv4-gateway-demo", &sans_for(options.listen.ip()))?;
    write_file(&file("gateway.pem"), &gateway_cert.cert_pem, false)?;
    write_file(&file("gateway-key.pem"), &gateway_cert.key_pem, true)?;
    let upstream_cert = ca.issue(
        "demo-pbc-upstream",
        &sans_for(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    )?;
    write_file(&file("upstream.pem"), &upstream_cert.cert_pem, false)?;
    write_file(&file("upstream-key.pem"), &upstream_cert.key_pem, true)?;
    write_file(&file("credentials.toml"), &credentials_toml(), true)?;
    write_file(&file("rules.toml"), RULES, false)?;
    write_file(&file("sts-key"), &random_hex(32)?, true)?;

    // The upstreams listen before the configuration is written (their ports go into
    // it) but serve only once the gateway runs, because they verify assertions with
    // the keys the running gateway publishes. Connections made in between wait in
    // the listen backlog.
    let mut listeners = Vec::with_capacity(IDENTITIES.len());
    for id in &IDENTITIES {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| format!("demo upstream {}: cannot listen on 127.0.0.1: {e}", id.pbc))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("demo upstream {}: {e}", id.pbc))?;
        listeners.push((id.pbc, listener, addr));
    }
    let targets: Vec<(&str, SocketAddr)> = listeners
        .iter()
        .map(|(pbc, _, addr)| (*pbc, *addr))
        .collect();
    let config_path = file("gateway.toml");
    write_file(&config_path, &gateway_toml(&options, &targets), false)?;
    let config = Config::load(&config_path)
        .map_err(|e| format!("the demo configuration is invalid:\n{e}"))?;

    let running = server::start(&config).await.map_err(|e| {
        format!(
            "{e}\n(the demo listens on {} and {}: choose free addresses with --listen and \
             --admin-listen; port 0 lets the system pick)",
            options.listen, options.admin_listen
        )
    })?;
    let upstreams = match serve_upstreams(&running, listeners, &upstream_cert) {
        Ok(u) => u,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    let public_url = format!(
        "https://{}",
        SocketAddr::new(url_ip(running.addr.ip()), running.addr.port())
    );
    let admin_url = format!(
        "http://{}",
        SocketAddr::new(url_ip(running.admin_addr.ip()), running.admin_addr.port())
    );
    tracing::info!(gateway = %public_url, admin = %admin_url, state_dir = %state_dir.display(), "demo mesh running");
    Ok(Demo {
        running,
        upstreams,
        ca_path: file("ca.pem"),
        config_path,
        state_dir,
        public_url,
        admin_url,
    })
}

fn serve_upstreams(
    running: &Running,
    listeners: Vec<(&'static str, TcpListener, SocketAddr)>,
    cert: &IssuedCert,
) -> Result<Vec<Upstream>, String> {
    let verifier = Arc::new(crate::assertion::AssertionVerifier::from_jwks(
        &running.gateway.jwks(),
        ISSUER,
    )?);
    let tls = upstream::tls_config(&cert.cert_pem, &cert.key_pem)?;
    listeners
        .into_iter()
        .map(|(pbc, listener, _)| {
            upstream::serve_upstream(listener, pbc, Arc::clone(&tls), Arc::clone(&verifier))
        })
        .collect()
}

impl Demo {
    /// The gateway's base URL, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> &str {
        &self.public_url
    }

    /// The admin listener's base URL, e.g. `http://127.0.0.1:9090`.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The gateway's address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin_addr
    }

    /// The state directory (absolute).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The audit log the demo gateway writes (in the state directory).
    pub fn audit_path(&self) -> PathBuf {
        self.state_dir.join("audit.log")
    }

    /// The demo CA certificate (PEM): trust it to talk to the gateway.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The `gateway.toml` that is running.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The running gateway.
    pub fn running(&self) -> &Running {
        &self.running
    }

    /// The demo upstreams.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The commands the instructions print, in order.
    pub fn commands(&self) -> Vec<DemoCommand> {
        let ca = shell_quote(&self.ca_path.display().to_string());
        let url = &self.public_url;
        let signed = |who: &str| {
            let id = identity(who).map_or(("", ""), |i| (i.access_key_id, i.secret));
            format!(
                "curl --cacert {ca} --aws-sigv4 \"aws:amz:{REGION}:{SERVICE}\" --user \"{}:{}\"",
                id.0, id.1
            )
        };
        vec![
            DemoCommand {
                title: "checkout reads an order (allowed by rule checkout-manages-orders)".into(),
                command: format!("{} {url}/order/orders/42", signed("checkout")),
                expect: "200 and the order service's JSON: \"path\":\"/orders/42\", \
                         \"caller\":{\"pbc\":\"checkout\",...}, \"assertion_verified\":true"
                    .into(),
            },
            DemoCommand {
                title: "checkout takes a payment, with a signed JSON body (rule checkout-takes-payments)".into(),
                command: format!(
                    "{} -H 'content-type: application/json' -d '{{\"sku\":\"sku-1\"}}' {url}/payment/payments",
                    signed("checkout")
                ),
                expect: "200 from the payment service: \"method\":\"POST\", \"path\":\"/payments\", \
                         \"body\":{\"sku\":\"sku-1\"}"
                    .into(),
            },
            DemoCommand {
                title: "catalogue calls order: no rule allows it (default deny)".into(),
                command: format!("{} -i {url}/order/orders/42", signed("catalogue")),
                expect: "HTTP 403, x-amzn-errortype: AccessDenied, {\"code\":\"AccessDenied\",\"message\":\"User: \
                         ...CataloguePBCRole (PBC catalogue) is not authorized ... because no rule allows it.\",...}"
                    .into(),
            },
            DemoCommand {
                title: "checkout deletes an order: an explicit deny beats the allow".into(),
                command: format!("{} -i -X DELETE {url}/order/orders/42", signed("checkout")),
                expect: "HTTP 403 AccessDenied: \"... because rule `no-order-deletes` denies it.\"".into(),
            },
            DemoCommand {
                title: "an unsigned request".into(),
                command: format!("curl --cacert {ca} -i {url}/order/orders/42"),
                expect: "HTTP 403 MissingAuthenticationToken".into(),
            },
            DemoCommand {
                title: "the public keys the upstreams verify identity assertions with".into(),
                command: format!("curl --cacert {ca} {url}{JWKS_PATH}"),
                expect: "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES256\",...}]}".into(),
            },
            DemoCommand {
                title: "checkout assumes CheckoutToOrderRole through the gateway's STS (AWS CLI; boto3 and the SDKs work with the same endpoint URL)".into(),
                command: format!(
                    "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws sts assume-role --endpoint-url {url}/sts --region {REGION} --ca-bundle {ca} --role-arn {STS_ROLE} --role-session-name demo",
                    identity("checkout").map_or("", |i| i.access_key_id),
                    identity("checkout").map_or("", |i| i.secret),
                ),
                expect: "credentials (ASIA... key, secret, session token) whose requests may create orders and nothing else; catalogue's key gets AccessDenied".into(),
            },
            DemoCommand {
                title: "health and readiness (admin listener, plain HTTP)".into(),
                command: format!("curl -i {}/healthz", self.admin_url),
                expect: "HTTP 200".into(),
            },
            DemoCommand {
                title: "Prometheus metrics (admin listener): requests by caller, target, decision and code".into(),
                command: format!("curl -s {}/metrics | grep gateway_requests_total", self.admin_url),
                expect: "gateway_requests_total{caller=\"checkout\",target=\"order\",decision=\"allow\",code=\"OK\"} ...".into(),
            },
            DemoCommand {
                title: "the audit log: one JSON line per request, who called what and why it was decided".into(),
                command: format!(
                    "tail -n 3 {}",
                    shell_quote(&self.audit_path().display().to_string())
                ),
                expect: "{\"eventVersion\":\"1.0\",...,\"decision\":\"Allow\",\"rule\":...}".into(),
            },
        ]
    }

    /// What `gateway demo` prints: where everything is, the identities, and commands
    /// to paste.
    pub fn instructions(&self) -> String {
        let mut out = String::new();
        let dir = self.state_dir.display();
        let _ = writeln!(
            out,
            "SigV4 gateway demo: a composable-commerce mesh on loopback.\n"
        );
        let _ = writeln!(
            out,
            "  gateway    {}   (TLS; region {REGION}, service {SERVICE})",
            self.public_url
        );
        let _ = writeln!(
            out,
            "  admin      {}    (/healthz, /readyz, /metrics)",
            self.admin_url
        );
        let _ = writeln!(out, "  audit log  {}", self.audit_path().display());
        let _ = writeln!(out, "  JWKS       {}{JWKS_PATH}", self.public_url);
        let _ = writeln!(out, "  CA         {}", self.ca_path.display());
        let _ = writeln!(out, "  state dir  {dir}");
        let _ = writeln!(
            out,
            "             gateway.toml (what is running: `gateway run --config {}`),",
            shell_quote(&self.config_path.display().to_string())
        );
        let _ = writeln!(
            out,
            "             credentials.toml, rules.toml, certificates and keys\n"
        );
        let _ = writeln!(
            out,
            "Demo PBC upstreams (each verifies the gateway's identity assertion on every request):"
        );
        for u in &self.upstreams {
            let _ = writeln!(
                out,
                "  {}/{:<10} -> {:<10} {}",
                self.public_url,
                u.name(),
                u.name(),
                u.url()
            );
        }
        let _ = writeln!(
            out,
            "\nDemo identities (documented demo values: never use them for anything else):"
        );
        let _ = writeln!(
            out,
            "  {:<10} {:<49} {:<21} secret",
            "PBC", "role ARN", "access key id"
        );
        for i in &IDENTITIES {
            let _ = writeln!(
                out,
                "  {:<10} {:<49} {:<21} {}",
                i.pbc, i.role_arn, i.access_key_id, i.secret
            );
        }
        let _ = writeln!(out, "\nTry it:");
        for c in self.commands() {
            let _ = writeln!(out, "\n  # {}", c.title);
            let _ = writeln!(out, "  {}", c.command);
            let _ = writeln!(out, "  #   -> {}", c.expect);
        }
        let rules = shell_quote(&self.state_dir.join("rules.toml").display().to_string());
        let _ = writeln!(
            out,
            "\nThe allow matrix is {rules}; ask it why (from the repository, `cargo run -p authz-rules --` \
             works as `authz-rules`):"
        );
        let _ = writeln!(
            out,
            "  authz-rules explain {rules} --caller catalogue --target order --method GET --path /orders/42"
        );
        let _ = writeln!(
            out,
            "  authz-rules explain {rules} --caller checkout --target order --method DELETE --path /orders/42"
        );
        let _ = writeln!(out, "  authz-rules matrix {rules}");
        let _ = writeln!(
            out,
            "Edit it while the demo runs: the gateway reloads it within {} seconds (a file with errors is \
             refused and the old matrix stays).",
            server::RELOAD_POLL.as_secs()
        );
        let _ = write!(out, "\nCtrl-C stops the demo.");
        out
    }

    /// Stops the gateway (draining in-flight requests), then the upstreams.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
        for u in self.upstreams {
            u.shutdown().await;
        }
        tracing::info!("demo mesh stopped");
    }
}

/// The address to print: a wildcard listener is reached on loopback.
fn url_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Loopback names, plus the listen address when it is a specific other one.
fn sans_for(ip: IpAddr) -> Vec<String> {
    let mut sans = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "::1".to_string(),
    ];
    let ip = url_ip(ip);
    if !ip.is_loopback() {
        sans.push(ip.to_string());
    }
    sans
}

fn credentials_toml() -> String {
    let mut out = String::from(
        "# Demo credentials written by `gateway demo`. The secrets are documented demo values:\n\
         # never use them for anything else.\n",
    );
    for i in &IDENTITIES {
        let _ = write!(
            out,
            "\n[[credential]]\naccess_key_id = \"{}\"\nrole_arn = \"{}\"\nsecret = \"{}\"\ntags = {{ team = \"{}\" }}\n",
            i.access_key_id, i.role_arn, i.secret, i.pbc
        );
    }
    out
}

/// The role checkout may assume through the demo's STS.
pub const STS_ROLE: &str = "arn:aws:iam::111122223333:role/CheckoutToOrderRole";

/// `n` random bytes as hex: key material for the STS sealing key file.
pub(crate) fn random_hex(n: usize) -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; n]);
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn gateway_toml(options: &Options, targets: &[(&str, SocketAddr)]) -> String {
    let mut out = format!(
        r#"# Written by `gateway demo`: the configuration it is running. Relative paths are
# relative to this file. `gateway run --config gateway.toml` runs the same gateway
# (the demo upstreams below exist only while `gateway demo` runs).

[listen]
addr = "{listen}"

[listen.tls]
cert = "gateway.pem"
key = "gateway-key.pem"

[admin]
addr = "{admin}"

[sigv4]
regions = ["{REGION}"]
services = ["{SERVICE}"]

[identity]
credentials_file = "credentials.toml"

[rules]
file = "rules.toml"

[assertion]
issuer = "{ISSUER}"

# One JSON line per request and STS call: who, what, the decision and why.
[audit]
sink = "file"
path = "audit.log"
max_file_bytes = 10485760
max_files = 3

[sts]
path = "/sts"
keys = [{{ id = "demo1", secret_file = "sts-key" }}]

# Checkout assumes this role through /sts; the allow matrix lets its sessions manage
# orders and nothing else. Its own sessions may renew themselves (role chaining: at
# most an hour, and the source identity is kept).
[[role]]
arn = "{STS_ROLE}"
max_session_secs = 3600
trust = ["checkout", "{STS_ROLE}"]
"#,
        listen = options.listen,
        admin = options.admin_listen,
    );
    for (pbc, addr) in targets {
        let _ = write!(
            out,
            "\n[[target]]\nname = \"{pbc}\"\nupstream = \"https://{addr}\"\npath_prefix = \"/{pbc}\"\nca_bundle = \"ca.pem\"\n"
        );
    }
    out
}

/// Writes `contents` to `path`; `private` files (keys, secrets) are readable by the
/// owner only.
pub(crate) fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mode = if private { 0o600 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(fail)?;
        // `mode` applies only to new files; a file from an earlier run keeps its own.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail)?;
        f.write_all(contents.as_bytes()).map_err(fail)
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        std::fs::write(path, contents).map_err(fail)
    }
}

/// Quotes `s` for a POSIX shell when it needs quoting.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@=,%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The common name of the CA `gateway demo` makes.
const DEMO_CA_NAME: &str = "sigv4-gateway demo CA (not for production)";

fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A throwaway certificate authority for loopback demos, tests, and the one-shot
/// certificate init of docker-compose (`gateway certs`).
pub struct DemoCa {
    /// The CA certificate (PEM).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DemoCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCa").finish_non_exhaustive()
    }
}

/// A certificate and its key, issued by a [`DemoCa`].
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM, PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    // The key stays out of any log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl DemoCa {
    /// A fresh CA with a new P-256 key.
    pub fn generate() -> Result<Self, String> {
        Self::generate_named(DEMO_CA_NAME).map(|(ca, _key)| ca)
    }

    /// A fresh CA named `common_name` with a new P-256 key, and that key (PEM, PKCS#8)
    /// for whoever keeps the CA to issue more certificates later.
    pub fn generate_named(common_name: &str) -> Result<(Self, Zeroizing<String>), String> {
        let fail = |e: rcgen::Error| format!("cannot create the CA: {e}");
        let key = KeyPair::generate().map_err(fail)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        let params = ca_params(common_name).map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok((
            Self {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            },
            key_pem,
        ))
    }

    /// The CA made earlier by [`DemoCa::generate_named`] with `common_name`, from its
    /// certificate and key. Certificates it issues name the same issuer and key id, so
    /// they chain to `cert_pem` (callers that must be sure verify the chain).
    pub fn from_pem(cert_pem: &str, key_pem: &str, common_name: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| "the CA key is not a PEM PKCS#8 key rcgen can use".to_string())?;
        let params = ca_params(common_name).map_err(|e| format!("CA parameters: {e}"))?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate for `sans` (IP addresses or DNS names) with a new key.
    pub fn issue(&self, common_name: &str, sans: &[String]) -> Result<IssuedCert, String> {
        let fail =
            |e: rcgen::Error| format!("cannot issue the demo certificate {common_name}: {e}");
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(fail)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            shell_quote("/tmp/sigv4-gateway-demo/ca.pem"),
            "/tmp/sigv4-gateway-demo/ca.pem"
        );
        assert_eq!(shell_quote("/tmp/my demo/ca.pem"), "'/tmp/my demo/ca.pem'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_written_files_parse() {
        let options = Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: None,
        };
        let text = gateway_toml(&options, &[("order", "127.0.0.1:1234".parse().unwrap())]);
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["target"][0]["upstream"].as_str(),
            Some("https://127.0.0.1:1234")
        );
        let keys = crate::identity::static_keys::StaticKeys::parse(
            &credentials_toml(),
            "credentials.toml",
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        assert_eq!(keys.len(), IDENTITIES.len());
        authz_rules::Rules::parse(RULES, "rules.toml").unwrap();
    }

    #[test]
    fn wildcard_listeners_print_loopback() {
        assert_eq!(
            url_ip("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            url_ip("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert!(sans_for("10.1.2.3".parse().unwrap()).contains(&"10.1.2.3".to_string()));
    }
}
