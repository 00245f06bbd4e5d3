//! The gateway's configuration: one TOML file, typed, unknown keys refused, validated
//! once at load. `gateway check-config FILE` prints every error with file and line.
//!
//! Relative paths in the file are resolved against the file's directory.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The public listener.
    pub listen: ListenConfig,
    /// The admin listener (`/healthz`, `/readyz`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Request limits and timeouts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What SigV4 scopes the gateway accepts.
    pub sigv4: SigV4Config,
    /// Where identities come from.
    pub identity: IdentityConfig,
    /// The allow matrix.
    pub rules: RulesConfig,
    /// The identity assertion added to forwarded requests.
    #[serde(default)]
    pub assertion: AssertionConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Request ids, trace propagation and OTLP export.
    #[serde(default)]
    pub tracing: crate::trace::TracingConfig,
    /// Where requests go: one entry per target PBC.
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    /// The STS endpoint (unset: no STS, static keys only).
    #[serde(default)]
    pub sts: Option<StsConfig>,
    /// Roles callers may assume through the STS endpoint.
    #[serde(default, rename = "role")]
    pub roles: Vec<RoleConfig>,
    /// Replay protection (off unless the table is present).
    #[serde(default)]
    pub replay: Option<crate::replay::ReplayConfig>,
    /// Where the rules file's `[[limit]]`s keep their buckets.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The Redis server replicas share (replay cache, rate limits).
    #[serde(default)]
    pub redis: Option<crate::state::RedisConfig>,
}

/// The STS endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsConfig {
    /// The path it is served at on the public listener (default `/sts`).
    #[serde(default = "default_sts_path")]
    pub path: String,
    /// Session sealing keys, newest first: the first seals, all open. Unset: one fresh
    /// key per process (sessions then die with it and work on this replica only).
    #[serde(default)]
    pub keys: Vec<StsKeyConfig>,
    /// OIDC issuers whose tokens `AssumeRoleWithWebIdentity` accepts (Kubernetes
    /// service-account tokens, SPIFFE JWT-SVIDs, ...).
    #[serde(default, rename = "oidc_issuer")]
    pub oidc_issuers: Vec<crate::sts::web_identity::OidcIssuerConfig>,
    /// The AWS bridge: `AssumeRoleWithAWSIdentity` with a signed `GetCallerIdentity`
    /// request (unset: the action is refused).
    #[serde(default)]
    pub aws_bridge: Option<crate::sts::bridge::AwsBridgeConfig>,
}

/// Who may assume a role with a web identity token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebIdentityTrust {
    /// The token's issuer (an `[[sts.oidc_issuer]]`'s `issuer`).
    pub issuer: String,
    /// `sub` patterns (IAM `StringLike`: `*`, `?`), any of which must match.
    pub sub: Vec<String>,
}

/// One session sealing key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsKeyConfig {
    /// Its id (1-16 of `A-Za-z0-9_-`), carried in every token it seals.
    pub id: String,
    /// A file holding at least 32 bytes of key material.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding at least 32 bytes of key material.
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// `[rate_limit]`: where the buckets of the rules file's `[[limit]]`s live.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `memory` (one replica; default) or `redis` (shared by every replica).
    #[serde(default)]
    pub store: crate::state::StoreKind,
    /// The memory store's bound on buckets that are not full (default 100,000).
    #[serde(default = "default_max_buckets")]
    pub max_buckets: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            store: crate::state::StoreKind::Memory,
            max_buckets: default_max_buckets(),
        }
    }
}

fn default_max_buckets() -> usize {
    100_000
}

/// A role callers may assume.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The role ARN (path included), e.g. `arn:aws:iam::111122223333:role/CheckoutToOrderRole`.
    pub arn: String,
    /// Longest session, in seconds (900 to 43200; default 3600).
    #[serde(default = "default_role_max")]
    pub max_session_secs: i64,
    /// Who may `AssumeRole` it: PBC names of the rules file, or role ARN patterns.
    #[serde(default)]
    pub trust: Vec<String>,
    /// An `ExternalId` the caller must present, if set.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Sessions issued before this time (RFC 3339 UTC) are refused.
    #[serde(default)]
    pub revoke_sessions_before: Option<String>,
    /// Who may `AssumeRoleWithWebIdentity` it.
    #[serde(default)]
    pub web_identity: Vec<WebIdentityTrust>,
    /// Real AWS principals (role or user ARN patterns, e.g.
    /// `arn:aws:iam::444455556666:role/*CheckoutTaskRole`) that may
    /// `AssumeRoleWithAWSIdentity` it through `[sts.aws_bridge]`.
    #[serde(default)]
    pub aws_principals: Vec<String>,
}

/// The public listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub addr: SocketAddr,
    /// TLS settings; required unless `plain_http = true`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP. Must be said explicitly: the default is TLS only.
    #[serde(default)]
    pub plain_http: bool,
}

/// Server TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle for client certificates (mTLS). Unset: no client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate (default true).
    #[serde(default = "yes")]
    pub require_client_cert: bool,
}

/// The admin listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/healthz` and `/readyz` (plain HTTP; keep it on a private interface).
    #[serde(default = "default_admin_addr")]
    pub addr: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            addr: default_admin_addr(),
        }
    }
}

/// Request limits and timeouts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes (default 10 MiB). Larger bodies need
    /// `UNSIGNED-PAYLOAD` (if allowed) or chunk signatures.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Largest total size of the request head, in bytes (default 64 KiB).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request headers (default 100).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Longest request target (path and query), in bytes (default 8 KiB).
    #[serde(default = "default_max_uri")]
    pub max_uri_bytes: usize,
    /// Time allowed to receive a request head, in milliseconds (default 10 s).
    #[serde(default = "default_header_read_ms")]
    pub header_read_timeout_ms: u64,
    /// How long an idle connection is kept, in milliseconds (default 60 s).
    #[serde(default = "default_idle_ms")]
    pub idle_timeout_ms: u64,
    /// Time allowed for a whole request, upstream included, in milliseconds (default 60 s).
    #[serde(default = "default_request_ms")]
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds (default 30 s).
    #[serde(default = "default_drain_ms")]
    pub drain_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_uri_bytes: default_max_uri(),
            header_read_timeout_ms: default_header_read_ms(),
            idle_timeout_ms: default_idle_ms(),
            request_timeout_ms: default_request_ms(),
            drain_timeout_ms: default_drain_ms(),
        }
    }
}

impl LimitsConfig {
    /// The header-read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// The drain deadline.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// Accepted SigV4 scopes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    /// Regions a credential scope may name.
    pub regions: Vec<String>,
    /// Services a credential scope may name (e.g. `execute-api`).
    pub services: Vec<String>,
    /// Clock-skew window in seconds (default 300).
    #[serde(default = "default_skew")]
    pub max_skew_secs: i64,
    /// Headers that must be signed when present, beyond SigV4's own.
    #[serde(default)]
    pub required_signed_headers: Vec<String>,
}

/// Identity sources.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The static credentials file (TOML `[[credential]]` tables); reloaded on change.
    pub credentials_file: PathBuf,
}

/// The allow matrix.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The rules file (see authz-rules/README.md); reloaded on change.
    pub file: PathBuf,
}

/// The identity assertion (JWT) added to forwarded requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// The `iss` claim.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Lifetime in seconds (default 60).
    #[serde(default = "default_assertion_ttl")]
    pub ttl_secs: u64,
    /// The header it travels in (default `x-gateway-assertion`).
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// PEM PKCS#8 P-256 signing key. Unset: a fresh key per process (replicas then each
    /// publish their own key at `/.well-known/jwks.json`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            ttl_secs: default_assertion_ttl(),
            header: default_assertion_header(),
            key_file: None,
        }
    }
}

/// Log format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`; `RUST_LOG` sets the levels.
    #[serde(default)]
    pub format: LogFormat,
}

/// One target PBC and how requests reach it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The PBC's name in the rules file.
    pub name: String,
    /// Base URL of the upstream, e.g. `https://orders.internal:8443`.
    pub upstream: String,
    /// Route requests whose `Host` is this (port ignored).
    #[serde(default)]
    pub host: Option<String>,
    /// Route requests whose path starts with this segment prefix (e.g. `/order`); the
    /// prefix is removed before forwarding and before the allow matrix sees the path.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// PEM CA bundle that signed the upstream's certificate: the only roots trusted for
    /// it (public web PKI roots are never used). Required for `https://` upstreams.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// PEM client certificate chain for mTLS to the upstream.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Connect timeout in milliseconds (default 5 s).
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Time to the response head in milliseconds (default 30 s).
    #[serde(default = "default_response_ms")]
    pub response_timeout_ms: u64,
}

fn default_sts_path() -> String {
    "/sts".into()
}
fn default_role_max() -> i64 {
    3600
}
fn yes() -> bool {
    true
}
fn default_admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_uri() -> usize {
    8 * 1024
}
fn default_header_read_ms() -> u64 {
    10_000
}
fn default_idle_ms() -> u64 {
    60_000
}
fn default_request_ms() -> u64 {
    60_000
}
fn default_drain_ms() -> u64 {
    30_000
}
fn default_skew() -> i64 {
    300
}
fn default_issuer() -> String {
    "sigv4-gateway".into()
}
fn default_assertion_ttl() -> u64 {
    60
}
fn default_assertion_header() -> String {
    "x-gateway-assertion".into()
}
fn default_connect_ms() -> u64 {
    5_000
}
fn default_response_ms() -> u64 {
    30_000
}

/// One problem with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Clone, Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "error: {e}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                reason: format!("cannot read the file: {e}"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &file, base)
    }

    /// Parses and validates configuration text; relative paths resolve against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let line_of = |offset: usize| text.get(..offset).map(|t| t.matches('\n').count() + 1);
        let mut config: Config = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                line: e.span().and_then(|s| line_of(s.start)),
                reason: e.message().trim().to_string(),
            }])
        })?;
        config.resolve_paths(base);
        let find = |needle: &str| text.find(needle).and_then(line_of);
        let mut errors = Vec::new();
        let mut err = |line: Option<usize>, reason: String| {
            errors.push(ConfigError {
                file: file.to_string(),
                line,
                reason,
            });
        };
        if config.listen.tls.is_none() && !config.listen.plain_http {
            err(
                find("[listen]"),
                "[listen] has no [listen.tls]; add cert and key, or set plain_http = true to serve \
                 unencrypted HTTP on purpose"
                    .into(),
            );
        }
        if config.listen.tls.is_some() && config.listen.plain_http {
            err(
                find("plain_http"),
                "[listen] has both tls and plain_http = true; choose one".into(),
            );
        }
        if config.admin.addr == config.listen.addr && config.listen.addr.port() != 0 {
            err(
                find("[admin]"),
                "the admin listener must not share the public listener's address".into(),
            );
        }
        for (value, key) in [
            (config.limits.max_body_bytes, "max_body_bytes"),
            (config.limits.max_headers as u64, "max_headers"),
            (
                config.limits.header_read_timeout_ms,
                "header_read_timeout_ms",
            ),
            (config.limits.idle_timeout_ms, "idle_timeout_ms"),
            (config.limits.request_timeout_ms, "request_timeout_ms"),
        ] {
            if value == 0 {
                err(find(key), format!("limits.{key} must be above 0"));
            }
        }
        // A key's line inside its table (`path` also appears under [sts], ...).
        let find_in = |table: &str, key: &str| {
            let start = text.find(table)?;
            let rest = text.get(start..)?;
            let at = rest.find(&format!("\n{key}")).map_or(0, |i| i + 1);
            line_of(start + at)
        };
        for (key, reason) in config.audit.validate() {
            err(find_in("[audit]", key), format!("[audit] {reason}"));
        }
        for (key, reason) in config.tracing.validate() {
            err(find_in("[tracing]", key), format!("[tracing] {reason}"));
        }
        let redis_needed = [
            (config.replay.as_ref().map(|r| r.store), "[replay]"),
            (Some(config.rate_limit.store), "[rate_limit]"),
        ];
        for (store, table) in redis_needed {
            if store == Some(crate::state::StoreKind::Redis) && config.redis.is_none() {
                err(
                    find_in(table, "store"),
                    format!(
                        "{table} store = \"redis\" needs a [redis] table (url = \"redis://host:6379/0\") \
                         shared by every replica; or store = \"memory\" for one replica"
                    ),
                );
            }
        }
        if let Some(r) = &config.redis {
            if !r.url.starts_with("redis://") && !r.url.starts_with("redis+unix://") {
                err(
                    find_in("[redis]", "url"),
                    "[redis] url must start with redis:// (TLS to Redis, rediss://, is not built in: \
                     run Redis on a private network or behind a TLS sidecar)"
                        .into(),
                );
            }
            if r.timeout_ms == 0 {
                err(
                    find_in("[redis]", "timeout_ms"),
                    "[redis] timeout_ms must be above 0".into(),
                );
            }
        }
        if let Some(r) = &config.replay {
            if r.max_entries == 0 {
                err(
                    find_in("[replay]", "max_entries"),
                    "[replay] max_entries must be above 0".into(),
                );
            }
            for m in &r.exempt_methods {
                if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                    err(
                        find_in("[replay]", "exempt_methods"),
                        format!("[replay] exempt_methods: `{m}` is not an upper-case HTTP method"),
                    );
                }
            }
        }
        if config.sigv4.regions.is_empty() || config.sigv4.services.is_empty() {
            err(
                find("[sigv4]"),
                "[sigv4] needs at least one region and one service (e.g. regions = [\"eu-west-1\"], services = [\"execute-api\"])".into(),
            );
        }
        if !(1..=3600).contains(&config.sigv4.max_skew_secs) {
            err(
                find("max_skew_secs"),
                "max_skew_secs must be 1 to 3600".into(),
            );
        }
        if !(1..=3600).contains(&config.assertion.ttl_secs) {
            err(
                find("ttl_secs"),
                "assertion ttl_secs must be 1 to 3600".into(),
            );
        }
        if http::HeaderName::from_bytes(config.assertion.header.as_bytes()).is_err() {
            err(
                find("header"),
                format!("`{}` is not a valid header name", config.assertion.header),
            );
        }
        for (path, what) in config.files() {
            if !path.is_file() {
                err(
                    find(
                        &path
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                    format!(
                        "{what} `{}` does not exist or is not a file",
                        path.display()
                    ),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut routes = std::collections::HashSet::new();
        for t in &config.targets {
            let line = find(&format!("name = \"{}\"", t.name));
            if !names.insert(t.name.clone()) {
                err(line, format!("target `{}` is declared twice", t.name));
            }
            match t.upstream.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("https" | "http"))
                        && uri.host().is_some()
                        && uri.path_and_query().is_none_or(|p| p.query().is_none()) => {}
                _ => err(
                    line,
                    format!(
                        "target `{}`: upstream `{}` is not an http(s) URL like https://orders.internal:8443",
                        t.name, t.upstream
                    ),
                ),
            }
            if t.upstream.starts_with("https://") && t.ca_bundle.is_none() {
                err(
                    line,
                    format!(
                        "target `{}`: an https upstream needs ca_bundle (the CA that signed its certificate)",
                        t.name
                    ),
                );
            }
            if t.client_cert.is_some() != t.client_key.is_some() {
                err(
                    line,
                    format!(
                        "target `{}`: set both client_cert and client_key, or neither",
                        t.name
                    ),
                );
            }
            if t.host.is_none() && t.path_prefix.is_none() {
                err(
                    line,
                    format!(
                        "target `{}` has neither host nor path_prefix, so no request reaches it",
                        t.name
                    ),
                );
            }
            if t.connect_timeout_ms == 0 || t.response_timeout_ms == 0 {
                err(
                    line,
                    format!("target `{}`: timeouts must be above 0", t.name),
                );
            }
            if let Some(p) = &t.path_prefix
                && (!p.starts_with('/')
                    || p.len() < 2
                    || p.ends_with('/')
                    || p.contains(['?', '#', '*', '%'])
                    || p.split('/')
                        .skip(1)
                        .any(|s| s.is_empty() || s == "." || s == ".."))
            {
                err(
                    line,
                    format!(
                        "target `{}`: path_prefix `{p}` must look like `/order` (a leading `/`, \
                         no trailing `/`, no `.`, `..` or empty segments)",
                        t.name
                    ),
                );
            }
            if let Some(h) = &t.host
                && (h.is_empty() || h.contains(['/', ' ', ':']))
            {
                err(
                    line,
                    format!(
                        "target `{}`: host `{h}` must be a bare host name (no port, no scheme)",
                        t.name
                    ),
                );
            }
            let route = (
                t.host.as_ref().map(|h| h.to_ascii_lowercase()),
                t.path_prefix.clone(),
            );
            if (route.0.is_some() || route.1.is_some()) && !routes.insert(route) {
                err(
                    line,
                    format!(
                        "target `{}` has the same host and path_prefix as another target",
                        t.name
                    ),
                );
            }
        }
        if let Some(sts) = &config.sts {
            let line = find("[sts]");
            if !sts.path.starts_with('/') || sts.path.len() < 2 || sts.path.ends_with('/') {
                err(
                    line,
                    format!("sts.path `{}` must look like `/sts`", sts.path),
                );
            }
            if let Some(bridge) = &sts.aws_bridge {
                let line = find("[sts.aws_bridge]");
                for p in bridge.problems() {
                    err(line, format!("sts.aws_bridge: {p}"));
                }
            }
            for k in &sts.keys {
                if k.secret_file.is_some() == k.secret_env.is_some() {
                    err(
                        line,
                        format!(
                            "sts key `{}`: set exactly one of secret_file, secret_env",
                            k.id
                        ),
                    );
                }
            }
        }
        let mut role_arns = std::collections::HashSet::new();
        for r in &config.roles {
            let line = find(&format!("arn = \"{}\"", r.arn));
            if !r.arn.starts_with("arn:") || !r.arn.contains(":role/") || r.arn.contains(['*', '?'])
            {
                err(
                    line,
                    format!(
                        "role `{}` is not a role ARN like arn:aws:iam::111122223333:role/Name",
                        r.arn
                    ),
                );
            }
            if !role_arns.insert(r.arn.clone()) {
                err(line, format!("role `{}` is declared twice", r.arn));
            }
            let usable = crate::sts::session::SessionClaims::first_hop(&r.arn, "check", 0, 900)
                .assumed_role_arn()
                .is_ok();
            if !usable {
                err(
                    line,
                    format!(
                        "role `{}` is not a role ARN sessions can be issued for (arn:PARTITION:iam::12-DIGIT-ACCOUNT:role/[PATH/]NAME)",
                        r.arn
                    ),
                );
            }
            if r.external_id.as_deref().is_some_and(str::is_empty) {
                err(
                    line,
                    format!(
                        "role `{}`: external_id must not be empty (remove it to require none)",
                        r.arn
                    ),
                );
            }
            if !(900..=43_200).contains(&r.max_session_secs) {
                err(
                    line,
                    format!("role `{}`: max_session_secs must be 900 to 43200", r.arn),
                );
            }
            if let Some(t) = &r.revoke_sessions_before
                && authz_rules::condition::parse_rfc3339(t).is_err()
            {
                err(
                    line,
                    format!(
                        "role `{}`: revoke_sessions_before `{t}` is not a UTC time like 2026-11-22T10:00:00Z",
                        r.arn
                    ),
                );
            }
        }
        for r in &config.roles {
            if r.aws_principals.is_empty() {
                continue;
            }
            let line = find(&format!("arn = \"{}\"", r.arn));
            if config.sts.as_ref().is_none_or(|s| s.aws_bridge.is_none()) {
                err(
                    line,
                    format!(
                        "role `{}`: aws_principals needs [sts.aws_bridge] to verify AWS identities",
                        r.arn
                    ),
                );
            }
            for p in &r.aws_principals {
                if let Err(e) = authz_rules::principal::ArnPattern::parse(p) {
                    err(line, format!("role `{}`: aws_principals: {e}", r.arn));
                }
            }
        }
        for r in &config.roles {
            for w in &r.web_identity {
                let known = config
                    .sts
                    .as_ref()
                    .is_some_and(|s| s.oidc_issuers.iter().any(|i| i.issuer == w.issuer));
                if !known {
                    err(
                        find(&format!("issuer = \"{}\"", w.issuer)),
                        format!(
                            "role `{}`: web_identity issuer `{}` is not an [[sts.oidc_issuer]]",
                            r.arn, w.issuer
                        ),
                    );
                }
                if w.sub.is_empty() {
                    err(
                        None,
                        format!(
                            "role `{}`: web_identity needs at least one sub pattern",
                            r.arn
                        ),
                    );
                }
            }
        }
        if !config.roles.is_empty() && config.sts.is_none() {
            err(
                find("[[role]]"),
                "roles are declared but [sts] is not: add an [sts] table to serve them".into(),
            );
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut self.listen.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                fix(ca);
            }
        }
        fix(&mut self.identity.credentials_file);
        self.audit.resolve_paths(base);
        if let Some(sts) = &mut self.sts {
            for k in &mut sts.keys {
                if let Some(f) = &mut k.secret_file {
                    fix(f);
                }
            }
            for i in &mut sts.oidc_issuers {
                for p in [&mut i.jwks_file, &mut i.ca_bundle].into_iter().flatten() {
                    fix(p);
                }
            }
            if let Some(ca) = sts.aws_bridge.as_mut().and_then(|b| b.ca_bundle.as_mut()) {
                fix(ca);
            }
        }
        fix(&mut self.rules.file);
        if let Some(k) = &mut self.assertion.key_file {
            fix(k);
        }
        for t in &mut self.targets {
            for p in [&mut t.ca_bundle, &mut t.client_cert, &mut t.client_key]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
    }

    /// Every file the configuration names, with what it is for.
    pub fn files(&self) -> Vec<(PathBuf, &'static str)> {
        let mut out = Vec::new();
        if let Some(tls) = &self.listen.tls {
            out.push((tls.cert.clone(), "listen.tls.cert"));
            out.push((tls.key.clone(), "listen.tls.key"));
            if let Some(ca) = &tls.client_ca {
                out.push((ca.clone(), "listen.tls.client_ca"));
            }
        }
        out.push((
            self.identity.credentials_file.clone(),
            "identity.credentials_file",
        ));
        out.push((self.rules.file.clone(), "rules.file"));
        if let Some(ca) = self
            .sts
            .as_ref()
            .and_then(|s| s.aws_bridge.as_ref())
            .and_then(|b| b.ca_bundle.as_ref())
        {
            out.push((ca.clone(), "sts.aws_bridge.ca_bundle"));
        }
        if let Some(k) = &self.assertion.key_file {
            out.push((k.clone(), "assertion.key_file"));
        }
        for t in &self.targets {
            for (p, what) in [
                (&t.ca_bundle, "target.ca_bundle"),
                (&t.client_cert, "target.client_cert"),
                (&t.client_key, "target.client_key"),
            ] {
                if let Some(p) = p {
                    out.push((p.clone(), what));
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("gw-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("present.toml"), "").unwrap();
        Config::parse(text, "gw.toml", &dir)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const BASE: &str = r#"
[listen]
addr = "127.0.0.1:8443"
plain_http = true

[sigv4]
regions = ["eu-west-1"]
services = ["execute-api"]

[identity]
credentials_file = "present.toml"

[rules]
file = "present.toml"
"#;

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = errors(&BASE.replace("plain_http = true", "plain_http = true\nplian = 1"));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("gw.toml:5: unknown field `plian`"),
            "{e:?}"
        );
    }

    #[test]
    fn audit_and_tracing_problems_point_at_their_line() {
        let text = format!(
            "{BASE}\n[sts]\npath = \"/sts\"\n\n[audit]\nsink = \"file\"\nqueue_capacity = 0\n\n[tracing]\nrequest_id_header = \"x-request-id\"\n"
        );
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.starts_with("gw.toml:21: [audit] queue_capacity")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("gw.toml:20: [audit] sink = \"file\" needs a path")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("gw.toml:24: [tracing] request_id_header needs")),
            "{e:?}"
        );
    }

    #[test]
    fn the_example_config_has_only_known_keys() {
        let text = include_str!("../../examples/gateway.toml");
        if let Err(e) = toml::from_str::<Config>(text) {
            panic!("examples/gateway.toml: {e}");
        }
    }

    #[test]
    fn tls_must_be_explicitly_off() {
        let e = errors(&BASE.replace("plain_http = true", ""));
        assert!(
            e[0].starts_with("gw.toml:2: [listen] has no [listen.tls]"),
            "{e:?}"
        );
    }

    #[test]
    fn every_target_problem_is_reported() {
        let text = format!(
            "{BASE}\n[[target]]\nname = \"order\"\nupstream = \"https://order:8443\"\npath_prefix = \"/order/\"\n\n[[target]]\nname = \"order\"\nupstream = \"ftp://x\"\n"
        );
        let e = errors(&text);
        assert!(e.iter().any(|m| m.contains("needs ca_bundle")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("path_prefix `/order/` must look like")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("declared twice")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("`ftp://x` is not an http(s) URL")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("neither host nor path_prefix")),
            "{e:?}"
        );
        assert!(e.iter().all(|m| m.starts_with("gw.toml:1")), "{e:?}");
    }

    #[test]
    fn aws_bridge_problems_are_reported_with_their_line() {
        let text = format!(
            "{BASE}\n[sts]\n\n[sts.aws_bridge]\naudience = \"\"\npartition = \"aws-iso\"\nca_bundle = \"no-such-ca.pem\"\n\n[[role]]\narn = \"arn:aws:iam::111122223333:role/R\"\naws_principals = [\"arn:aws:sts::111122223333:assumed-role/X/s\"]\n"
        );
        let e = errors(&text);
        for needle in [
            "gw.toml:18: sts.aws_bridge: audience must be",
            "gw.toml:18: sts.aws_bridge: partition `aws-iso` is not supported",
            "sts.aws_bridge.ca_bundle",
            "gw.toml:24: role `arn:aws:iam::111122223333:role/R`: aws_principals: `arn:aws:sts::111122223333:assumed-role/X/s` is an assumed-role session ARN",
        ] {
            assert!(
                e.iter().any(|m| m.contains(needle)),
                "no `{needle}` in {e:?}"
            );
        }
        // Trusting AWS principals without a bridge to verify them is a mistake.
        let text = format!(
            "{BASE}\n[sts]\n\n[[role]]\narn = \"arn:aws:iam::111122223333:role/R\"\naws_principals = [\"arn:aws:iam::444455556666:role/*\"]\n"
        );
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("aws_principals needs [sts.aws_bridge]")),
            "{e:?}"
        );
    }

    #[test]
    fn missing_files_are_named() {
        let e = errors(&BASE.replace("file = \"present.toml\"", "file = \"no-such-rules.toml\""));
        assert!(
            e.iter()
                .any(|m| m.contains("rules.file") && m.contains("no-such-rules.toml")),
            "{e:?}"
        );
    }
}
