//! The AWS bridge: a PBC holding real AWS credentials (an ECS task role, an EC2 instance
//! profile, ...) proves who it is the way Vault's `iam` auth method and
//! aws-iam-authenticator let it: it signs an `sts:GetCallerIdentity` request with those
//! credentials, does not send it, and hands it to the gateway (the STS action
//! `AssumeRoleWithAWSIdentity`, form field `Request`). The gateway checks the request,
//! sends it to AWS STS itself and believes STS's answer: the caller is whoever STS says
//! signed it.
//!
//! # The `Request` field
//!
//! Standard base64 (with padding) of a JSON object, unknown members refused:
//!
//! ```json
//! {"method": "POST",
//!  "url": "https://sts.eu-west-1.amazonaws.com/",
//!  "headers": {"Host": ["sts.eu-west-1.amazonaws.com"],
//!              "Content-Type": ["application/x-www-form-urlencoded; charset=utf-8"],
//!              "X-Amz-Date": ["20260301T120000Z"],
//!              "X-Amz-Security-Token": ["..."],
//!              "X-Gateway-Audience": ["gateway-prod"],
//!              "Authorization": ["AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."]},
//!  "body": "Action=GetCallerIdentity&Version=2011-06-15"}
//! ```
//!
//! `headers` maps each header name to a list holding exactly one value; `body` is the
//! form body as text (empty for a presigned `GET`, whose parameters are in `url`).
//! `gateway/tests/bridge.rs` builds it with the `aws-sigv4` crate and
//! `gateway/tests/py/aws_bridge_request.py` with botocore.
//!
//! # What is checked before anything is sent
//!
//! Both CVEs this design must not repeat came from forwarding something other than what
//! was checked. CVE-2020-16250 (Vault): the caller chose the request's URL and headers,
//! including `Host`, so a signed request could be sent to another AWS service or the
//! attacker's own server, whose answer merely had to contain something that parsed as a
//! `GetCallerIdentityResponse`. CVE-2022-2385 (aws-iam-authenticator): query parameters
//! were read into a map by lower-cased name, so with two `Action`s (or `Action` and
//! `action`) the value the authenticator checked was not the one STS executed, and the
//! audience header could be claimed without being signed. So here:
//!
//! - the URL is rebuilt from its parts and must equal what was sent byte for byte:
//!   `https://HOST/` or `https://HOST/?QUERY`, no port, no user info, no other path;
//! - HOST is one of the partition's STS endpoints for the configured regions
//!   (`sts.amazonaws.com` and `sts.REGION.amazonaws.com` in `aws`,
//!   `sts.REGION.amazonaws.com.cn` in `aws-cn`, `sts.REGION.amazonaws.com` in
//!   `aws-us-gov`), and the `Host` header is present, identical and signed;
//! - every parameter (query or form body) is strictly parsed: only unreserved characters
//!   and `%XX` escapes, each name once, compared ignoring case (so `action` beside
//!   `Action` is a duplicate), only `Action=GetCallerIdentity` and `Version=2011-06-15`
//!   (plus the `X-Amz-*` signing parameters of a presigned `GET`);
//! - only allow-listed headers, each once (names compared ignoring case) with one value;
//! - the audience header is present, holds the configured audience and is listed in
//!   `SignedHeaders`, so a request signed for another service (or another gateway)
//!   cannot be replayed here;
//! - the signature's shape, scope (service `sts`, the host's region) and time (AWS's
//!   15 minutes) are checked with the gateway's own SigV4 parser; the signature itself
//!   only AWS can check;
//! - the body is bounded and a `Content-Length` must match it.
//!
//! What is sent is exactly what was checked: the same method, the rebuilt URL, the
//! allow-listed headers (the signed `Host` among them) and the body, over HTTPS (HTTP/1.1,
//! so the signed `Host` header is what STS sees) to the host's address, or to
//! `endpoint_override` (the address only, as a DNS override would: the certificate is
//! still checked for the signed STS host).
//!
//! # The answer
//!
//! Status 200, `text/xml`, at most [`MAX_RESPONSE_BYTES`], and a document that is
//! exactly a `GetCallerIdentityResponse` (one `Arn`, one `UserId`, one `Account`, a
//! `ResponseMetadata`, nothing else; no DTD, comments, CDATA or unknown entities). An
//! `ErrorResponse`, another status or anything else is an upstream failure. The `Arn`:
//!
//! - `arn:P:sts::ACCT:assumed-role/ROLE/SESSION` becomes `arn:P:iam::ACCT:role/ROLE`.
//!   STS's answer drops the role's path, so `role_paths` (full role ARNs) puts it back:
//!   the entry with the same account and role name is used (role names are unique in an
//!   account whatever their path); with none, the pathless ARN is the principal.
//! - `arn:P:iam::ACCT:user/PATH/NAME` (an IAM user) is its own principal.
//! - the account root, federated users and anything else are refused.
//!
//! Trust policies (`[[role]] aws_principals`) match the principal.
//!
//! # Caching
//!
//! A verified identity is cached under the SHA-256 of the checked request until the
//! request would expire at AWS (`X-Amz-Date` + 15 minutes, or + `X-Amz-Expires` when
//! presigned), at most `cache_secs`. Presenting the same signed request again within
//! that time (which AWS would also accept) gets the same answer without a call to STS;
//! every check above still runs first.

use crate::sigv4::{Algorithm, Body, Location, Policy, Verifier};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The STS API version, the only one accepted.
pub const STS_VERSION: &str = "2011-06-15";
/// The STS XML namespace.
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// Largest `Request` field (base64), in bytes: a session token is a few KiB at most.
pub const MAX_ENCODED_BYTES: usize = 32 * 1024;
/// Largest answer read from STS; a `GetCallerIdentityResponse` is under 1 KiB.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// How long AWS accepts a signed request: 15 minutes either side of `X-Amz-Date`.
pub const MAX_SIGNATURE_AGE_SECS: i64 = 900;
/// Identity checks in flight at once: beyond this the gateway refuses rather than queue,
/// so it cannot be turned into a load generator against STS.
const MAX_IN_FLIGHT: usize = 64;
/// Verified identities kept.
const CACHE_CAPACITY: usize = 10_000;
/// Most headers the caller's request may carry (the allow-list has nine names).
const MAX_HEADERS: usize = 16;

/// The headers a caller's request may carry besides the audience header; anything else
/// (`Connection`, `Transfer-Encoding`, `Expect`, `X-Forwarded-*`, ...) is refused, so the
/// gateway never sends a header it did not mean to.
const ALLOWED_HEADERS: [&str; 8] = [
    "authorization",
    "host",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "content-type",
    "content-length",
    "user-agent",
];

/// The signing parameters a presigned `GET` carries in its query.
const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

fn default_audience_header() -> String {
    "x-gateway-audience".into()
}
fn default_partition() -> String {
    "aws".into()
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_body() -> usize {
    4 * 1024
}
fn default_cache_secs() -> u64 {
    900
}

/// `[sts.aws_bridge]`: how `AssumeRoleWithAWSIdentity` checks signed
/// `GetCallerIdentity` requests and where it sends them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsBridgeConfig {
    /// The header that must be signed into the request and hold `audience` (default
    /// `x-gateway-audience`); Vault calls its equivalent `X-Vault-AWS-IAM-Server-ID`,
    /// aws-iam-authenticator `x-k8s-aws-id`.
    #[serde(default = "default_audience_header")]
    pub audience_header: String,
    /// The value the audience header must hold, e.g. this gateway's id. A request signed
    /// for another audience is refused, so it cannot be replayed here.
    pub audience: String,
    /// The AWS partition: `aws` (default), `aws-cn` or `aws-us-gov`.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// Regions whose STS endpoints are accepted (`sts.REGION.amazonaws.com` in `aws`).
    /// In `aws` the global endpoint `sts.amazonaws.com` (scope `us-east-1`) is always
    /// accepted too.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Connect here instead of the STS host's address, e.g. `https://127.0.0.1:8443` for
    /// a test double or a VPC endpoint's address. Only the address changes: the request
    /// keeps its signed `Host` and the certificate is checked for that STS host.
    #[serde(default)]
    pub endpoint_override: Option<String>,
    /// PEM CA bundle STS's certificate is checked against, the only roots used (for AWS:
    /// the system bundle, e.g. `/etc/ssl/certs/ca-certificates.crt`). Required.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Time allowed for the whole call to STS, in milliseconds (default 5000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest body of the caller's signed request, in bytes (default 4096).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Longest a verified identity is cached, in seconds (default and most 900; 0: no
    /// caching). It is never cached past the signed request's own expiry.
    #[serde(default = "default_cache_secs")]
    pub cache_secs: u64,
    /// Full role ARNs (with paths), to put back the path STS's answer leaves out: the
    /// entry with the answer's account and role name is the principal.
    #[serde(default)]
    pub role_paths: Vec<String>,
}

impl AwsBridgeConfig {
    /// Every problem with this configuration (empty: none). File existence is checked
    /// with the configuration's other files.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let header = self.audience_header.as_str();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            out.push(format!(
                "audience_header `{header}` must be a lower-case header name like x-gateway-audience"
            ));
        } else if ALLOWED_HEADERS.contains(&header) || header.starts_with("x-amz-") {
            out.push(format!(
                "audience_header `{header}` must be a header of its own, not one AWS interprets"
            ));
        }
        if self.audience.is_empty()
            || self.audience.len() > 256
            || !self.audience.bytes().all(|b| b.is_ascii_graphic())
        {
            out.push("audience must be 1 to 256 visible ASCII characters".into());
        }
        if let Err(e) = sts_hosts(&self.partition, &self.regions) {
            out.push(e);
        }
        if let Some(o) = &self.endpoint_override
            && let Err(e) = parse_override(o)
        {
            out.push(e);
        }
        if self.ca_bundle.is_none() {
            out.push(
                "ca_bundle is required: the CA bundle STS's certificate is checked against \
                 (for AWS, the system bundle such as /etc/ssl/certs/ca-certificates.crt)"
                    .into(),
            );
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            out.push("timeout_ms must be 1 to 60000".into());
        }
        if !(64..=65_536).contains(&self.max_body_bytes) {
            out.push("max_body_bytes must be 64 to 65536".into());
        }
        if self.cache_secs > 900 {
            out.push(
                "cache_secs must be at most 900 (a signed request is valid for 15 minutes)".into(),
            );
        }
        if let Err(e) = RolePaths::new(&self.partition, &self.role_paths) {
            out.push(e);
        }
        out
    }
}

/// The STS hosts of a partition's regions, with the region each is signed for.
fn sts_hosts(partition: &str, regions: &[String]) -> Result<Vec<(String, String)>, String> {
    let (suffix, prefix_ok): (&str, fn(&str) -> bool) = match partition {
        "aws" => (".amazonaws.com", |r| {
            !r.starts_with("cn-") && !r.starts_with("us-gov-")
        }),
        "aws-cn" => (".amazonaws.com.cn", |r| r.starts_with("cn-")),
        "aws-us-gov" => (".amazonaws.com", |r| r.starts_with("us-gov-")),
        other => {
            return Err(format!(
                "partition `{other}` is not supported: use aws, aws-cn or aws-us-gov"
            ));
        }
    };
    let mut hosts = Vec::new();
    if partition == "aws" {
        hosts.push(("sts.amazonaws.com".to_string(), "us-east-1".to_string()));
    } else if regions.is_empty() {
        return Err(format!(
            "partition `{partition}` has no global STS endpoint: list its regions"
        ));
    }
    for r in regions {
        let shaped = r.split('-').count() >= 3
            && r.split('-').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && r.bytes().last().is_some_and(|b| b.is_ascii_digit());
        if !shaped || !prefix_ok(r) {
            return Err(format!(
                "region `{r}` is not a region of partition `{partition}` (like eu-west-1)"
            ));
        }
        let host = format!("sts.{r}{suffix}");
        if hosts.iter().any(|(h, _)| *h == host) {
            return Err(format!("region `{r}` is listed twice"));
        }
        hosts.push((host, r.clone()));
    }
    Ok(hosts)
}

/// `endpoint_override`: `https://HOST[:PORT][/]`, nothing else. Returns where to connect.
fn parse_override(text: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!(
            "endpoint_override `{text}` must look like https://127.0.0.1:8443 (https, a host, an optional port, no path)"
        )
    };
    let uri: Uri = text.parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    if uri.scheme_str() != Some("https")
        || authority.as_str().contains('@')
        || uri.query().is_some()
        || !matches!(uri.path(), "" | "/")
    {
        return Err(bad());
    }
    let host = authority.host();
    // `lookup_host` wants an IPv6 literal without its brackets.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), authority.port_u16().unwrap_or(443)))
}

/// `role_paths`, by (account, role name).
#[derive(Clone, Debug, Default)]
struct RolePaths(Vec<(String, String, String)>);

impl RolePaths {
    fn new(partition: &str, arns: &[String]) -> Result<Self, String> {
        let mut out: Vec<(String, String, String)> = Vec::new();
        for arn in arns {
            let bad = || {
                format!(
                    "role_paths entry `{arn}` is not a role ARN of partition `{partition}` like \
                     arn:{partition}:iam::111122223333:role/path/RoleName"
                )
            };
            let rest = arn
                .strip_prefix("arn:")
                .and_then(|r| r.strip_prefix(partition))
                .and_then(|r| r.strip_prefix(":iam::"))
                .ok_or_else(bad)?;
            let (account, resource) = rest.split_once(':').ok_or_else(bad)?;
            let path_and_name = resource.strip_prefix("role/").ok_or_else(bad)?;
            let name = path_and_name.rsplit('/').next().unwrap_or_default();
            if !is_account(account) || !path_and_name.split('/').all(is_iam_name) || name.len() > 64
            {
                return Err(bad());
            }
            if out.iter().any(|(a, n, _)| a == account && n == name) {
                return Err(format!(
                    "role_paths names role `{name}` of account {account} twice (role names are unique in an account)"
                ));
            }
            out.push((account.to_string(), name.to_string(), arn.clone()));
        }
        Ok(Self(out))
    }

    fn full_arn(&self, account: &str, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(a, n, _)| a == account && n == name)
            .map(|(_, _, arn)| arn.as_str())
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM names and path segments: `[\w+=,.@-]+`.
fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// Why an AWS identity was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeError {
    /// The caller's request failed a check, or names a principal the bridge does not
    /// accept; nothing was sent, or STS's answer was not usable as a principal (AWS:
    /// `InvalidIdentityToken`).
    Invalid(String),
    /// STS could not be reached, or answered with an error or something else than a
    /// `GetCallerIdentityResponse` (AWS: `IDPCommunicationError`).
    Upstream(String),
}

impl BridgeError {
    /// The message for the caller.
    pub fn message(&self) -> &str {
        match self {
            Self::Invalid(m) | Self::Upstream(m) => m,
        }
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl StdError for BridgeError {}

/// An identity STS vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsIdentity {
    /// What trust policies match: the role ARN (with its path when `role_paths` knows
    /// it) for an assumed role, the user ARN for an IAM user.
    pub principal_arn: String,
    /// The ARN as STS answered, e.g. `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`.
    pub caller_arn: String,
    /// The account id.
    pub account: String,
    /// STS's `UserId` (`AROA...:SESSION` for a role session).
    pub user_id: String,
    /// Whether this came from the cache rather than a call to STS.
    pub cached: bool,
}

/// The caller's request, as decoded from JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerRequest {
    method: String,
    url: String,
    headers: HeaderList,
    #[serde(default)]
    body: String,
}

/// The `headers` object in document order, repeated names kept (a map type would let a
/// second `Host` silently replace the first).
#[derive(Debug, Default)]
struct HeaderList(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HeaderList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to lists of values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HeaderList, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Vec<String>>()? {
                    if out.len() >= MAX_HEADERS {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_HEADERS} headers"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(HeaderList(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A caller's request that passed every check: what will be sent, exactly.
#[derive(Debug)]
struct Checked {
    method: Method,
    /// The STS host, as signed.
    host: String,
    /// The raw query (empty for a POST).
    query: String,
    headers: HeaderMap,
    body: Bytes,
    /// When AWS stops accepting it (Unix seconds).
    valid_until: i64,
    /// SHA-256 of what is sent.
    cache_key: [u8; 32],
}

#[derive(Clone, Debug)]
struct Cached {
    identity: Arc<AwsIdentity>,
    until: i64,
}

type StsClient = Client<HttpsConnector<HttpConnector<StsResolver>>, Full<Bytes>>;

/// The bridge: checks callers' signed `GetCallerIdentity` requests, sends them to STS,
/// reads and caches the answers.
pub struct AwsBridge {
    audience_header: HeaderName,
    audience: String,
    partition: String,
    /// Allowed STS hosts and the region each is signed for.
    hosts: Vec<(String, String)>,
    max_body_bytes: usize,
    cache_secs: i64,
    timeout: Duration,
    role_paths: RolePaths,
    /// The gateway's SigV4 parser, for the request's shape, scope and time (the
    /// signature itself only AWS can check).
    verifier: Verifier,
    client: StsClient,
    cache: quick_cache::sync::Cache<[u8; 32], Cached>,
    in_flight: tokio::sync::Semaphore,
}

impl fmt::Debug for AwsBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBridge")
            .field("audience_header", &self.audience_header)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl AwsBridge {
    /// Checks the configuration and builds the HTTPS client (the CA bundle is read now,
    /// so a broken file fails at start-up). Errors say what to fix.
    pub fn new(config: &AwsBridgeConfig) -> Result<Self, String> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(format!("sts.aws_bridge: {}", problems.join("; ")));
        }
        let hosts = sts_hosts(&config.partition, &config.regions)?;
        let role_paths = RolePaths::new(&config.partition, &config.role_paths)?;
        let connect_to = config
            .endpoint_override
            .as_deref()
            .map(parse_override)
            .transpose()?;
        let ca = config
            .ca_bundle
            .as_deref()
            .ok_or("sts.aws_bridge: ca_bundle is required")?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = sts_client(ca, connect_to, timeout)?;
        let mut policy = Policy::new(
            hosts.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            ["sts"],
        );
        policy.max_skew_secs = MAX_SIGNATURE_AGE_SECS;
        Ok(Self {
            audience_header: HeaderName::from_bytes(config.audience_header.as_bytes())
                .map_err(|e| format!("sts.aws_bridge: audience_header: {e}"))?,
            audience: config.audience.clone(),
            partition: config.partition.clone(),
            hosts,
            max_body_bytes: config.max_body_bytes,
            cache_secs: i64::try_from(config.cache_secs).unwrap_or(0),
            timeout,
            role_paths,
            verifier: Verifier::new(policy),
            client,
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// The STS hosts a request may be addressed to.
    pub fn allowed_hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(h, _)| h.as_str())
    }

    /// Checks the caller's encoded request (the `Request` field), sends it to STS unless
    /// a cached answer for it is still valid, and returns who STS says signed it. `now`
    /// is Unix seconds.
    pub async fn verify(&self, encoded: &str, now: i64) -> Result<AwsIdentity, BridgeError> {
        // Every check runs before the cache is consulted: a cached identity is only ever
        // handed out for a request that would still pass them.
        let checked = self.check(encoded, now).map_err(BridgeError::Invalid)?;
        if let Some(hit) = self.cache.get(&checked.cache_key)
            && hit.until > now
        {
            let mut identity = (*hit.identity).clone();
            identity.cached = true;
            return Ok(identity);
        }
        let _permit = self.in_flight.try_acquire().map_err(|_| {
            BridgeError::Upstream(format!(
                "{MAX_IN_FLIGHT} AWS identity checks are already in flight; retry shortly"
            ))
        })?;
        let answer = self
            .call_sts(&checked)
            .await
            .map_err(BridgeError::Upstream)?;
        let identity = self.identify(answer)?;
        let until = checked.valid_until.min(now.saturating_add(self.cache_secs));
        if until > now {
            self.cache.insert(
                checked.cache_key,
                Cached {
                    identity: Arc::new(identity.clone()),
                    until,
                },
            );
        }
        Ok(identity)
    }

    /// Every check on the caller's request; no I/O.
    fn check(&self, encoded: &str, now: i64) -> Result<Checked, String> {
        use base64::Engine as _;
        if encoded.len() > MAX_ENCODED_BYTES {
            return Err(format!("Request is larger than {MAX_ENCODED_BYTES} bytes."));
        }
        let json = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| {
                format!(
                    "Request is not standard base64 ({e}); in a form body, `+`, `/` and `=` must be percent-encoded."
                )
            })?;
        let req: CallerRequest = serde_json::from_slice(&json).map_err(|e| {
            format!("Request is not the expected JSON object {{method, url, headers, body}}: {e}")
        })?;

        let method = match req.method.as_str() {
            "POST" => Method::POST,
            "GET" => Method::GET,
            other => {
                return Err(format!(
                    "The request's method is `{}`; only POST (or a presigned GET) is accepted.",
                    shown(other)
                ));
            }
        };

        // The URL: rebuilt from its parts, then compared with what was sent, so nothing
        // the parser skipped over (user info, a port, a fragment, odd escapes) survives.
        let rest = req.url.strip_prefix("https://").ok_or_else(|| {
            format!(
                "The request's URL `{}` must start with https://.",
                shown(&req.url)
            )
        })?;
        let (authority, path_and_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let (host, region) = self
            .hosts
            .iter()
            .find(|(h, _)| h == authority)
            .ok_or_else(|| {
                format!(
                    "The request is addressed to `{}`, which is not an STS endpoint this gateway \
                     accepts ({}); no port or user info either.",
                    shown(authority),
                    self.hosts
                        .iter()
                        .map(|(h, _)| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        if path != "/" {
            return Err(format!(
                "The request's path must be `/`, not `{}`.",
                shown(path)
            ));
        }
        let rebuilt = match query {
            Some(q) => format!("https://{host}/?{q}"),
            None => format!("https://{host}/"),
        };
        if rebuilt != req.url || rebuilt.parse::<Uri>().is_err() {
            return Err(format!(
                "The request's URL `{}` is not a plain https://HOST/?QUERY URL.",
                shown(&req.url)
            ));
        }

        // Headers: allow-listed, each once, one value each.
        let mut headers = HeaderMap::new();
        for (name, values) in &req.headers.0 {
            let lower = name.to_ascii_lowercase();
            let allowed =
                ALLOWED_HEADERS.contains(&lower.as_str()) || lower == self.audience_header.as_str();
            if !allowed {
                return Err(format!(
                    "The request carries header `{}`, which is not allowed (allowed: {}, {}).",
                    shown(name),
                    ALLOWED_HEADERS.join(", "),
                    self.audience_header
                ));
            }
            let header = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| format!("`{}` is not a header name.", shown(name)))?;
            if headers.contains_key(&header) {
                return Err(format!(
                    "The request carries header `{lower}` twice (names are compared ignoring case)."
                ));
            }
            let [value] = values.as_slice() else {
                return Err(format!(
                    "Header `{lower}` must have exactly one value, not {}.",
                    values.len()
                ));
            };
            let value = HeaderValue::from_str(value)
                .ok()
                .filter(|_| value.trim() == value && !value.is_empty())
                .ok_or_else(|| {
                    format!("Header `{lower}` has an empty, padded or non-ASCII value.")
                })?;
            headers.insert(header, value);
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match header("host") {
            Some(h) if h == host => {}
            Some(h) => {
                return Err(format!(
                    "The Host header `{}` differs from the URL's host `{host}`.",
                    shown(h)
                ));
            }
            None => return Err("The request has no Host header.".into()),
        }

        // The body: bounded, and what Content-Length says.
        let body = Bytes::from(req.body.into_bytes());
        if body.len() > self.max_body_bytes {
            return Err(format!(
                "The request's body is larger than {} bytes.",
                self.max_body_bytes
            ));
        }
        if let Some(cl) = header("content-length")
            && cl != body.len().to_string()
        {
            return Err(format!(
                "Content-Length says {} but the body has {} bytes.",
                shown(cl),
                body.len()
            ));
        }

        // Parameters: from the form body of a POST, the query of a GET; never both.
        let presigned = auth_in_query(&method, &headers);
        let params_text = if method == Method::POST {
            if query.is_some() {
                return Err(
                    "A POST carries its parameters in the body: the URL must have no query.".into(),
                );
            }
            let form = header("content-type")
                .map(|ct| ct.to_ascii_lowercase().replace(' ', ""))
                .is_some_and(|ct| {
                    ct == "application/x-www-form-urlencoded"
                        || ct == "application/x-www-form-urlencoded;charset=utf-8"
                });
            if !form {
                return Err(
                    "A POST must have Content-Type application/x-www-form-urlencoded.".into(),
                );
            }
            std::str::from_utf8(&body).map_err(|_| "The body is not UTF-8.".to_string())?
        } else {
            if !body.is_empty() {
                return Err("A GET must have an empty body.".into());
            }
            query.ok_or("A GET carries its parameters in the URL's query, which is missing.")?
        };
        let params = parse_params(params_text, presigned)?;
        if presigned {
            for h in ["x-amz-date", "x-amz-security-token"] {
                if headers.contains_key(h) {
                    return Err(format!(
                        "A presigned GET carries its signing values in the query, not in header `{h}`."
                    ));
                }
            }
        }

        // The audience: present, ours, and signed (checked after parsing the signature).
        match headers.get(&self.audience_header).map(HeaderValue::to_str) {
            Some(Ok(v)) if v == self.audience => {}
            Some(v) => {
                return Err(format!(
                    "The audience header {} is `{}`, not this gateway's audience `{}`.",
                    self.audience_header,
                    shown(v.unwrap_or("")),
                    self.audience
                ));
            }
            None => {
                return Err(format!(
                    "The request must carry the audience header {} = `{}`, signed.",
                    self.audience_header, self.audience
                ));
            }
        }

        // The signature's shape, scope and time, with the gateway's own parser.
        let raw_query = query.unwrap_or("");
        let valid_until =
            self.check_signature(&method, raw_query, &headers, &body, &params, region, now)?;
        let cache_key = fingerprint(&method, &rebuilt, &headers, &body);
        Ok(Checked {
            method,
            host: host.clone(),
            query: raw_query.to_string(),
            headers,
            body,
            valid_until,
            cache_key,
        })
    }

    /// The signature's shape, scope (service `sts`, the host's region) and time, and
    /// that the audience header is signed; returns when AWS stops accepting the request.
    #[allow(clippy::too_many_arguments)]
    fn check_signature(
        &self,
        method: &Method,
        raw_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        params: &[(String, String)],
        region: &str,
        now: i64,
    ) -> Result<i64, String> {
        let presigned = auth_in_query(method, headers);
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let sig_req = crate::sigv4::Request {
            method: method.as_str(),
            path: "/",
            query: raw_query,
            headers,
            body: Body::Bytes(body),
        };
        let auth = self
            .verifier
            .parse(&sig_req, now)
            .map_err(|r| format!("The request's signature: {}", r.message()))?;
        if auth.algorithm() != Algorithm::V4 {
            return Err("Sign the request with SigV4 (AWS4-HMAC-SHA256).".into());
        }
        if (auth.location() == Location::Query) != presigned {
            return Err("Sign a POST with an Authorization header; presign only a GET.".into());
        }
        if auth.region() != Some(region) {
            return Err(format!(
                "The request is signed for region `{}`, but {host} is the endpoint of {region}.",
                shown(auth.region().unwrap_or(""))
            ));
        }
        if !auth
            .signed_headers()
            .any(|h| h == self.audience_header.as_str())
        {
            return Err(format!(
                "The audience header {} must be signed (listed in SignedHeaders).",
                self.audience_header
            ));
        }
        let signed_at = auth.time().unix();
        Ok(if presigned {
            let expires = params
                .iter()
                .find(|(k, _)| k == "X-Amz-Expires")
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .filter(|e| (1..=MAX_SIGNATURE_AGE_SECS).contains(e))
                .ok_or_else(|| {
                    format!(
                        "X-Amz-Expires must be 1 to {MAX_SIGNATURE_AGE_SECS} seconds for a presigned GetCallerIdentity."
                    )
                })?;
            signed_at.saturating_add(expires)
        } else {
            signed_at.saturating_add(MAX_SIGNATURE_AGE_SECS)
        })
    }

    /// Sends the checked request to STS; returns (Arn, UserId, Account).
    async fn call_sts(&self, checked: &Checked) -> Result<(String, String, String), String> {
        let uri = if checked.query.is_empty() {
            format!("https://{}/", checked.host)
        } else {
            format!("https://{}/?{}", checked.host, checked.query)
        };
        let mut req = Request::builder()
            .method(checked.method.clone())
            .uri(uri)
            .body(Full::new(checked.body.clone()))
            .map_err(|e| format!("cannot build the request to STS: {e}"))?;
        *req.headers_mut() = checked.headers.clone();
        let host = checked.host.as_str();
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                format!("cannot reach STS at {host}: {}", crate::pki::error_text(&e))
            })?;
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase);
            let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        format!("STS at {host} answered more than {MAX_RESPONSE_BYTES} bytes")
                    } else {
                        format!(
                            "reading STS's answer failed: {}",
                            crate::pki::error_text(e.as_ref())
                        )
                    }
                })?
                .to_bytes();
            Ok::<_, String>((status, content_type, body))
        };
        let (status, content_type, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                format!(
                    "STS at {host} gave no complete answer within {} ms",
                    self.timeout.as_millis()
                )
            })??;
        let text = std::str::from_utf8(&body).ok();
        if status != StatusCode::OK {
            let detail = text
                .and_then(|t| error_response_detail(t).ok())
                .unwrap_or_else(|| "the body is not an STS ErrorResponse".into());
            return Err(format!("STS at {host} answered HTTP {status}: {detail}"));
        }
        if !content_type.is_some_and(|ct| ct.starts_with("text/xml")) {
            return Err(format!(
                "STS at {host} answered 200 without Content-Type text/xml"
            ));
        }
        let text =
            text.ok_or_else(|| format!("STS at {host} answered a body that is not UTF-8"))?;
        parse_caller_identity(text).map_err(|e| format!("STS at {host}: {e}"))
    }

    /// STS's answer -> the principal.
    fn identify(
        &self,
        (arn, user_id, account): (String, String, String),
    ) -> Result<AwsIdentity, BridgeError> {
        let principal = principal_of(&arn, &self.partition, &account)?;
        let principal_arn = match principal {
            Principal::Role { name } => self
                .role_paths
                .full_arn(&account, &name)
                .map(str::to_string)
                .unwrap_or_else(|| format!("arn:{}:iam::{account}:role/{name}", self.partition)),
            Principal::User => arn.clone(),
        };
        Ok(AwsIdentity {
            principal_arn,
            caller_arn: arn,
            account,
            user_id,
            cached: false,
        })
    }
}

/// A GET without an Authorization header carries its signature in the query.
fn auth_in_query(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET && !headers.contains_key(http::header::AUTHORIZATION)
}

/// What kind of principal an ARN from STS is.
#[derive(Debug, PartialEq, Eq)]
enum Principal {
    /// An assumed-role session of the role `name`.
    Role { name: String },
    /// An IAM user: the ARN is the principal.
    User,
}

/// Reads the `Arn` of STS's answer: structurally, never with a pattern, every part
/// checked. A malformed answer is an upstream failure; a well-formed principal the
/// bridge does not accept (the account root, a federated user) is the caller's.
fn principal_of(arn: &str, partition: &str, account: &str) -> Result<Principal, BridgeError> {
    let malformed = || {
        BridgeError::Upstream(format!(
            "STS answered an Arn this gateway cannot read: `{}`",
            shown(arn)
        ))
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(p), Some(service), Some(""), Some(acct), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed());
    };
    if p != partition || !is_account(acct) {
        return Err(malformed());
    }
    if acct != account {
        return Err(BridgeError::Upstream(format!(
            "STS answered Account {} but an Arn of account {acct}",
            shown(account)
        )));
    }
    match service {
        "sts" => {
            if let Some(rest) = resource.strip_prefix("assumed-role/") {
                let mut segments = rest.split('/');
                let (Some(role), Some(session), None) =
                    (segments.next(), segments.next(), segments.next())
                else {
                    return Err(malformed());
                };
                if !is_iam_name(role)
                    || role.len() > 64
                    || !is_iam_name(session)
                    || session.len() > 64
                {
                    return Err(malformed());
                }
                Ok(Principal::Role {
                    name: role.to_string(),
                })
            } else if resource.starts_with("federated-user/") {
                Err(BridgeError::Invalid(format!(
                    "{arn} is a federated user; only IAM roles and users are accepted."
                )))
            } else {
                Err(malformed())
            }
        }
        "iam" => {
            if resource == "root" {
                return Err(BridgeError::Invalid(format!(
                    "{arn} is an account root; sign with a role's or a user's credentials."
                )));
            }
            let path_and_name = resource.strip_prefix("user/").ok_or_else(malformed)?;
            if !path_and_name.split('/').all(is_iam_name) {
                return Err(malformed());
            }
            Ok(Principal::User)
        }
        _ => Err(malformed()),
    }
}

/// Parses `a=b&c=d` strictly: only unreserved characters and `%XX` escapes (what every
/// SigV4 signer sends), every pair with a `=`, names unique ignoring case, and only the
/// allowed names. Returns the decoded pairs.
fn parse_params(text: &str, presigned: bool) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            if pair.is_empty() {
                "A parameter list has an empty entry (`&&`, or a leading or trailing `&`)."
                    .to_string()
            } else {
                format!("Parameter `{}` has no `=`.", shown(pair))
            }
        })?;
        let (k, v) = (strict_decode(k)?, strict_decode(v)?);
        // Repeats first, whatever the names: the message then names the attack
        // (`action` beside `Action`) rather than whichever name came first.
        if let Some((first, _)) = out.iter().find(|(f, _)| f.eq_ignore_ascii_case(&k)) {
            return Err(format!(
                "Parameter `{}` repeats `{}` (names are compared ignoring case; a repeated \
                 parameter is refused).",
                shown(&k),
                shown(first)
            ));
        }
        out.push((k, v));
    }
    for (k, _) in &out {
        let allowed =
            k == "Action" || k == "Version" || (presigned && PRESIGN_PARAMS.contains(&k.as_str()));
        if !allowed {
            return Err(format!(
                "Parameter `{}` is not allowed: only Action=GetCallerIdentity and Version={STS_VERSION}{}.",
                shown(k),
                if presigned {
                    " and the X-Amz-* signing parameters"
                } else {
                    ""
                }
            ));
        }
    }
    let get = |name: &str| out.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match get("Action") {
        Some("GetCallerIdentity") => {}
        Some(other) => {
            return Err(format!(
                "Action must be GetCallerIdentity, not `{}`.",
                shown(other)
            ));
        }
        None => return Err("The request has no Action parameter.".into()),
    }
    match get("Version") {
        Some(STS_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "Version must be {STS_VERSION}, not `{}`.",
                shown(other)
            ));
        }
        None => return Err("The request has no Version parameter.".into()),
    }
    Ok(out)
}

/// Percent-decodes a parameter name or value that may hold only unreserved characters
/// and `%XX`: no `+` (a space to some decoders, a plus to others), no raw `=`, `;`, `/`.
fn strict_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("`{}` has a bad %-escape.", shown(s)))?;
                out.push(hex);
                i += 2;
            }
            _ => {
                return Err(format!(
                    "`{}` has a character that must be percent-encoded.",
                    shown(s)
                ));
            }
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("`{}` does not decode to UTF-8.", shown(s)))
}

/// SHA-256 over what is sent, each part length-prefixed so no two requests collide by
/// moving bytes between parts.
fn fingerprint(method: &Method, url: &str, headers: &HeaderMap, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(method.as_str().as_bytes());
    part(url.as_bytes());
    let mut sorted: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    sorted.sort_unstable();
    for (k, v) in sorted {
        part(k.as_bytes());
        part(v);
    }
    part(body);
    h.finalize().into()
}

/// A caller-supplied string for an error message: bounded and with control characters
/// escaped, so a message can neither flood a log nor forge lines in it.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(128).flat_map(char::escape_debug).collect();
    if s.chars().count() > 128 {
        out.push_str("...");
    }
    out
}

/// Parses a `GetCallerIdentityResponse` strictly; returns (Arn, UserId, Account).
fn parse_caller_identity(text: &str) -> Result<(String, String, String), String> {
    let root = xml::parse(text)?;
    if root.name == "ErrorResponse" {
        return Err(format!(
            "answered an ErrorResponse: {}",
            error_response_detail(text)?
        ));
    }
    if root.name != "GetCallerIdentityResponse" {
        return Err(format!(
            "answered <{}>, not a GetCallerIdentityResponse",
            shown(&root.name)
        ));
    }
    if root.attrs.iter().any(|(k, v)| k != "xmlns" || v != XMLNS) {
        return Err("the GetCallerIdentityResponse has unexpected attributes".into());
    }
    let result = only_children(&root, &["GetCallerIdentityResult", "ResponseMetadata"])?;
    let [result, _metadata] = result.as_slice() else {
        return Err("the GetCallerIdentityResponse is malformed".into());
    };
    let fields = only_children(result, &["Arn", "UserId", "Account"])?;
    let mut values = Vec::with_capacity(3);
    for f in fields {
        if !f.children.is_empty() || !f.attrs.is_empty() || f.text.is_empty() {
            return Err(format!("<{}> is not a plain text element", f.name));
        }
        values.push(f.text.clone());
    }
    let [arn, user_id, account] = <[String; 3]>::try_from(values)
        .map_err(|_| "the GetCallerIdentityResult is malformed".to_string())?;
    Ok((arn, user_id, account))
}

/// The children of `e`, which must be exactly one of each name in `names` (any order,
/// nothing else); returned in the order of `names`.
fn only_children<'e>(e: &'e xml::Element, names: &[&str]) -> Result<Vec<&'e xml::Element>, String> {
    if !e.text.trim().is_empty() {
        return Err(format!("<{}> has text besides its elements", e.name));
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut found = e.children.iter().filter(|c| c.name == *name);
        match (found.next(), found.next()) {
            (Some(c), None) => out.push(c),
            (None, _) => return Err(format!("<{}> has no <{name}>", e.name)),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "<{}> has {} <{name}> elements",
                    e.name,
                    e.children.iter().filter(|c| c.name == *name).count()
                ));
            }
        }
    }
    if let Some(other) = e
        .children
        .iter()
        .find(|c| !names.contains(&c.name.as_str()))
    {
        return Err(format!(
            "<{}> has an unexpected <{}>",
            e.name,
            shown(&other.name)
        ));
    }
    Ok(out)
}

/// `CODE: MESSAGE` of an STS `ErrorResponse`, for the caller's error message.
fn error_response_detail(text: &str) -> Result<String, String> {
    let root = xml::parse(text)?;
    let error = root
        .children
        .iter()
        .find(|c| c.name == "Error")
        .filter(|_| root.name == "ErrorResponse")
        .ok_or("not an ErrorResponse")?;
    let field = |name: &str| {
        error
            .children
            .iter()
            .find(|c| c.name == name)
            .map(|c| shown(&c.text))
            .unwrap_or_default()
    };
    Ok(format!("{}: {}", field("Code"), field("Message")))
}

/// The HTTPS client to STS: only `ca_bundle`'s roots, HTTP/1.1 only (over HTTP/2 the
/// signed `Host` would become `:authority`), connections to `connect_to` when set.
fn sts_client(
    ca_bundle: &Path,
    connect_to: Option<(String, u16)>,
    timeout: Duration,
) -> Result<StsClient, String> {
    let tls = crate::pki::client_config(crate::pki::load_roots(
        ca_bundle,
        "sts.aws_bridge.ca_bundle",
    )?)?;
    let mut http = HttpConnector::new_with_resolver(StsResolver { connect_to });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// Resolves STS host names: normally through the system resolver; with
/// `endpoint_override`, every name to the override's address, the way a DNS override
/// would (the URL, its `Host` and the TLS server name stay the STS host's).
#[derive(Clone, Debug)]
struct StsResolver {
    connect_to: Option<(String, u16)>,
}

impl tower::Service<Name> for StsResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        // The resolved addresses carry the port: the request URI names none, so the
        // connector keeps it (443 for STS, the override's port otherwise).
        let (host, port) = self
            .connect_to
            .clone()
            .unwrap_or_else(|| (name.as_str().to_string(), 443));
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            Ok(addrs.into_iter())
        })
    }
}

/// Just enough XML for STS's answers, and strict: elements, attributes, text and the
/// five predefined entities. No DTD (so no entity expansion), no comments, CDATA or
/// processing instructions, no text after the root, bounded depth and size. Vault's
/// CVE-2020-16250 was exploitable partly because Go's decoder found a
/// `GetCallerIdentityResponse` inside a document that was something else; here the
/// document must be one from its first byte to its last.
mod xml {
    const MAX_DEPTH: usize = 8;
    const MAX_ELEMENTS: usize = 64;

    /// An element.
    #[derive(Debug, Default)]
    pub(super) struct Element {
        pub(super) name: String,
        pub(super) attrs: Vec<(String, String)>,
        pub(super) children: Vec<Element>,
        pub(super) text: String,
    }

    /// Parses a whole document: an optional XML declaration, one root element.
    pub(super) fn parse(doc: &str) -> Result<Element, String> {
        let mut p = Parser {
            s: doc.as_bytes(),
            i: 0,
            elements: 0,
        };
        if p.starts_with(b"<?xml ") {
            let end = p
                .find(b"?>")
                .ok_or("the XML declaration is not terminated")?;
            if p.s.get(p.i + 1..end).is_some_and(|d| d.contains(&b'<')) {
                return Err("the XML declaration is malformed".into());
            }
            p.i = end + 2;
        }
        p.skip_ws();
        let root = p.element(0)?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err("the XML has content after its root element".into());
        }
        Ok(root)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        elements: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn starts_with(&self, t: &[u8]) -> bool {
            self.s.get(self.i..).is_some_and(|r| r.starts_with(t))
        }

        /// The absolute index of the next `t`.
        fn find(&self, t: &[u8]) -> Option<usize> {
            self.s
                .get(self.i..)?
                .windows(t.len())
                .position(|w| w == t)
                .map(|p| p + self.i)
        }

        fn skip_ws(&mut self) -> usize {
            let start = self.i;
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.i += 1;
            }
            self.i - start
        }

        fn expect(&mut self, b: u8) -> Result<(), String> {
            if self.peek() == Some(b) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("the XML is malformed at byte {}", self.i))
            }
        }

        fn name(&mut self) -> Result<String, String> {
            let start = self.i;
            while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
            {
                self.i += 1;
            }
            match self.s.get(start..self.i) {
                Some(n) if !n.is_empty() => Ok(String::from_utf8_lossy(n).into_owned()),
                _ => Err(format!("the XML has no name at byte {start}")),
            }
        }

        fn element(&mut self, depth: usize) -> Result<Element, String> {
            if depth > MAX_DEPTH {
                return Err("the XML is nested too deeply".into());
            }
            self.elements += 1;
            if self.elements > MAX_ELEMENTS {
                return Err("the XML has too many elements".into());
            }
            if self.starts_with(b"<!") || self.starts_with(b"<?") {
                return Err("the XML holds a DTD, comment, CDATA or processing instruction".into());
            }
            self.expect(b'<')?;
            let mut e = Element {
                name: self.name()?,
                ..Element::default()
            };
            loop {
                let spaced = self.skip_ws() > 0;
                match self.peek() {
                    Some(b'>') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'/') => {
                        self.i += 1;
                        self.expect(b'>')?;
                        return Ok(e);
                    }
                    Some(_) if spaced => {
                        let name = self.name()?;
                        self.skip_ws();
                        self.expect(b'=')?;
                        self.skip_ws();
                        let quote = self
                            .peek()
                            .filter(|q| matches!(q, b'"' | b'\''))
                            .ok_or("an XML attribute value is not quoted")?;
                        self.i += 1;
                        let start = self.i;
                        while self.peek().is_some_and(|c| c != quote && c != b'<') {
                            self.i += 1;
                        }
                        let raw = self.s.get(start..self.i).unwrap_or_default();
                        self.expect(quote)?;
                        if e.attrs.iter().any(|(n, _)| *n == name) {
                            return Err(format!("XML attribute {name} is repeated"));
                        }
                        e.attrs.push((name, text(raw)?));
                    }
                    _ => return Err(format!("the XML is malformed at byte {}", self.i)),
                }
            }
            loop {
                match self.peek() {
                    None => return Err(format!("<{}> is not closed", e.name)),
                    Some(b'<') if self.starts_with(b"</") => {
                        self.i += 2;
                        let end = self.name()?;
                        if end != e.name {
                            return Err(format!("<{}> is closed by </{end}>", e.name));
                        }
                        self.skip_ws();
                        self.expect(b'>')?;
                        break;
                    }
                    Some(b'<') => e.children.push(self.element(depth + 1)?),
                    Some(_) => {
                        let start = self.i;
                        while self.peek().is_some_and(|c| c != b'<') {
                            self.i += 1;
                        }
                        e.text
                            .push_str(&text(self.s.get(start..self.i).unwrap_or_default())?);
                    }
                }
            }
            if !e.children.is_empty() && !e.text.trim().is_empty() {
                return Err(format!("<{}> mixes text and elements", e.name));
            }
            Ok(e)
        }
    }

    /// Character data: UTF-8, no control characters but whitespace, and only the five
    /// predefined entities.
    fn text(raw: &[u8]) -> Result<String, String> {
        let s = std::str::from_utf8(raw).map_err(|_| "the XML is not UTF-8".to_string())?;
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        {
            return Err("the XML holds control characters".into());
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(amp) = rest.find('&') {
            out.push_str(rest.get(..amp).unwrap_or_default());
            let after = rest.get(amp..).unwrap_or_default();
            let (entity, c) = [
                ("&amp;", '&'),
                ("&lt;", '<'),
                ("&gt;", '>'),
                ("&quot;", '"'),
                ("&apos;", '\''),
            ]
            .into_iter()
            .find(|(e, _)| after.starts_with(e))
            .ok_or("the XML uses an entity other than the five predefined ones")?;
            out.push(c);
            rest = after.get(entity.len()..).unwrap_or_default();
        }
        out.push_str(rest);
        Ok(out)
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
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    use base64::Engine as _;
    use serde_json::{Value, json};
    use std::time::{SystemTime, UNIX_EPOCH};

    const AUD: &str = "gateway-test";
    const HOST: &str = "sts.eu-west-1.amazonaws.com";
    const FORM: &str = "Action=GetCallerIdentity&Version=2011-06-15";
    const FORM_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

    fn unix(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
    }

    fn config() -> AwsBridgeConfig {
        let dir = std::env::temp_dir().join(format!("gw-bridge-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        if !ca.exists() {
            let pem = crate::demo::DemoCa::generate().unwrap().cert_pem;
            // Written beside, then renamed: tests run in parallel.
            let tmp = dir.join(format!("ca-{:?}.pem", std::thread::current().id()));
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, &ca).unwrap();
        }
        toml::from_str::<AwsBridgeConfig>(&format!(
            "audience = \"{AUD}\"\nregions = [\"eu-west-1\"]\nca_bundle = \"{}\"\n\
             role_paths = [\"arn:aws:iam::444455556666:role/ecs/tasks/CheckoutTaskRole\"]\n",
            ca.display()
        ))
        .unwrap()
    }

    fn bridge() -> AwsBridge {
        AwsBridge::new(&config()).unwrap()
    }

    /// A request to sign, AWS SDK style, with the `aws-sigv4` crate.
    struct Spec {
        method: &'static str,
        url: String,
        headers: Vec<(&'static str, String)>,
        body: String,
        region: &'static str,
        service: &'static str,
        time: SystemTime,
        presign: Option<u64>,
    }

    impl Spec {
        fn post() -> Spec {
            Spec {
                method: "POST",
                url: format!("https://{HOST}/"),
                headers: vec![
                    ("host", HOST.into()),
                    ("content-type", FORM_TYPE.into()),
                    ("x-gateway-audience", AUD.into()),
                ],
                body: FORM.into(),
                region: "eu-west-1",
                service: "sts",
                time: SystemTime::now(),
                presign: None,
            }
        }

        fn presigned_get() -> Spec {
            Spec {
                method: "GET",
                url: format!("https://{HOST}/?{FORM}"),
                headers: vec![("host", HOST.into()), ("x-gateway-audience", AUD.into())],
                body: String::new(),
                presign: Some(60),
                ..Spec::post()
            }
        }

        fn header(mut self, name: &'static str, value: &str) -> Spec {
            self.headers.retain(|(n, _)| *n != name);
            self.headers.push((name, value.into()));
            self
        }

        fn without(mut self, name: &str) -> Spec {
            self.headers.retain(|(n, _)| *n != name);
            self
        }

        /// Signs; returns the JSON the caller would encode.
        fn signed(&self) -> Value {
            let identity = Credentials::new(
                "ASIAAWSCHECKOUT00001",
                "aws-side-secret",
                Some("the-session-token".into()),
                None,
                "unit",
            )
            .into();
            let mut settings = SigningSettings::default();
            if let Some(secs) = self.presign {
                settings.signature_location = SignatureLocation::QueryParams;
                settings.expires_in = Some(Duration::from_secs(secs));
            }
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(self.region)
                .name(self.service)
                .time(self.time)
                .settings(settings)
                .build()
                .unwrap()
                .into();
            let signable = SignableRequest::new(
                self.method,
                &self.url,
                self.headers.iter().map(|(k, v)| (*k, v.as_str())),
                SignableBody::Bytes(self.body.as_bytes()),
            )
            .unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            let mut req = http::Request::builder().method(self.method).uri(&self.url);
            for (k, v) in &self.headers {
                req = req.header(*k, v);
            }
            let mut req = req.body(()).unwrap();
            instructions.apply_to_request_http1x(&mut req);
            let mut headers = serde_json::Map::new();
            for (k, v) in req.headers() {
                headers.insert(k.to_string(), json!([v.to_str().unwrap()]));
            }
            json!({"method": self.method, "url": req.uri().to_string(), "headers": headers, "body": self.body})
        }
    }

    fn encode(v: &Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    fn check(v: &Value) -> Result<Checked, String> {
        bridge().check(&encode(v), unix(SystemTime::now()))
    }

    #[track_caller]
    fn refused(v: &Value, needle: &str) {
        match check(v) {
            Ok(_) => panic!("accepted: {v}"),
            Err(e) => assert!(e.contains(needle), "wanted `{needle}` in: {e}"),
        }
    }

    /// Sets (or replaces) a header in the JSON after signing.
    fn set_header(v: &mut Value, name: &str, value: &str) {
        v["headers"][name] = json!([value]);
    }

    #[test]
    fn a_signed_post_and_a_presigned_get_pass() {
        let now = unix(SystemTime::now());
        let c = check(&Spec::post().signed()).unwrap();
        assert_eq!(c.method, Method::POST);
        assert_eq!(c.host, HOST);
        assert!(c.query.is_empty());
        assert_eq!(&c.body[..], FORM.as_bytes());
        assert!((now + 890..=now + 900).contains(&c.valid_until));
        let c = check(&Spec::presigned_get().signed()).unwrap();
        assert_eq!(c.method, Method::GET);
        assert!(
            c.query
                .starts_with("Action=GetCallerIdentity&Version=2011-06-15&X-Amz-")
        );
        assert!(
            (now + 50..=now + 60).contains(&c.valid_until),
            "presigned for 60 s"
        );
        // The global endpoint, signed for us-east-1 as the SDKs do.
        let mut global = Spec::post().header("host", "sts.amazonaws.com");
        global.url = "https://sts.amazonaws.com/".into();
        global.region = "us-east-1";
        assert_eq!(check(&global.signed()).unwrap().host, "sts.amazonaws.com");
    }

    #[test]
    fn url_must_be_an_allowed_sts_host_at_root() {
        for (url, needle) in [
            (
                "http://sts.eu-west-1.amazonaws.com/",
                "must start with https://",
            ),
            (
                "https://sts.us-east-2.amazonaws.com/",
                "not an STS endpoint",
            ),
            ("https://evil.example/", "not an STS endpoint"),
            (
                "https://sts.eu-west-1.amazonaws.com.evil.example/",
                "not an STS endpoint",
            ),
            (
                "https://sts.eu-west-1.amazonaws.com:8443/",
                "not an STS endpoint",
            ),
            (
                "https://sts.eu-west-1.amazonaws.com@127.0.0.1/",
                "not an STS endpoint",
            ),
            (
                "https://STS.EU-WEST-1.AMAZONAWS.COM/",
                "not an STS endpoint",
            ),
            ("https://sts.eu-west-1.amazonaws.com/x", "path must be `/`"),
            ("https://sts.eu-west-1.amazonaws.com//", "path must be `/`"),
            ("https://sts.eu-west-1.amazonaws.com", "path must be `/`"),
        ] {
            let mut v = Spec::post().signed();
            v["url"] = json!(url);
            refused(&v, needle);
        }
        // A fragment never survives: the rebuilt URL would differ.
        let mut v = Spec::presigned_get().signed();
        v["url"] = json!(format!("{}#frag", v["url"].as_str().unwrap()));
        refused(&v, "must be percent-encoded");
    }

    #[test]
    fn host_header_must_be_the_urls_and_signed() {
        let mut v = Spec::post().signed();
        set_header(&mut v, "host", "evil.example");
        refused(&v, "differs from the URL's host");
        let v = Spec::post().without("host").signed();
        let mut v2 = v.clone();
        v2["headers"].as_object_mut().unwrap().remove("host");
        refused(&v2, "no Host header");
        // Host present but left out of SignedHeaders.
        let mut v = Spec::post().signed();
        let auth = v["headers"]["authorization"][0]
            .as_str()
            .unwrap()
            .replace("host;", "");
        set_header(&mut v, "authorization", &auth);
        refused(&v, "'Host' must be a signed header");
    }

    #[test]
    fn parameters_are_unique_allow_listed_and_exact() {
        for (body, needle) in [
            (
                "Action=GetCallerIdentity&Action=AssumeRole&Version=2011-06-15",
                "repeats `Action`",
            ),
            (
                "Action=GetCallerIdentity&action=AssumeRole&Version=2011-06-15",
                "repeats `Action`",
            ),
            (
                "action=GetCallerIdentity&Version=2011-06-15",
                "`action` is not allowed",
            ),
            (
                "Action=GetCallerIdentity&Act%69on=AssumeRole&Version=2011-06-15",
                "repeats `Action`",
            ),
            (
                "Action=GetCallerIdentity&Version=2011-06-15&RoleArn=x",
                "`RoleArn` is not allowed",
            ),
            (
                "Action=AssumeRole&Version=2011-06-15",
                "must be GetCallerIdentity",
            ),
            (
                "Action=getcalleridentity&Version=2011-06-15",
                "must be GetCallerIdentity",
            ),
            (
                "Action=GetCallerIdentity&Version=2011-06-16",
                "Version must be",
            ),
            ("Version=2011-06-15", "no Action"),
            ("Action=GetCallerIdentity", "no Version"),
            (
                "Action=GetCallerIdentity&&Version=2011-06-15",
                "empty entry",
            ),
            (
                "Action=GetCallerIdentity&Version=2011-06-15&",
                "empty entry",
            ),
            ("Action=GetCallerIdentity&Version", "has no `=`"),
            (
                "Action=Get+CallerIdentity&Version=2011-06-15",
                "must be percent-encoded",
            ),
            (
                "Action=GetCallerIdentity;x&Version=2011-06-15",
                "must be percent-encoded",
            ),
            (
                "Action=GetCallerIdentity&Version=2011-06-1%5",
                "bad %-escape",
            ),
            ("Action=GetCallerIdentity&Version=%FF", "UTF-8"),
            (
                "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Date=20260101T000000Z",
                "`X-Amz-Date` is not allowed",
            ),
        ] {
            let mut s = Spec::post();
            s.body = body.into();
            refused(&s.signed(), needle);
        }
        // The same games in a presigned GET's query.
        for query in [
            "Action=GetCallerIdentity&Action=AssumeRole&Version=2011-06-15",
            "Action=GetCallerIdentity&action=AssumeRole&Version=2011-06-15",
            "Action=AssumeRole&Version=2011-06-15",
            "Action=GetCallerIdentity&Version=2011-06-15&Foo=bar",
        ] {
            let mut s = Spec::presigned_get();
            s.url = format!("https://{HOST}/?{query}");
            assert!(check(&s.signed()).is_err(), "{query}");
        }
    }

    #[test]
    fn post_and_get_carry_parameters_in_one_place() {
        let mut s = Spec::post();
        s.url = format!("https://{HOST}/?{FORM}");
        refused(&s.signed(), "URL must have no query");
        refused(
            &Spec::post()
                .header("content-type", "application/json")
                .signed(),
            "must have Content-Type application/x-www-form-urlencoded",
        );
        refused(
            &Spec::post().without("content-type").signed(),
            "must have Content-Type",
        );
        let mut s = Spec::presigned_get();
        s.body = FORM.into();
        refused(&s.signed(), "GET must have an empty body");
        let mut s = Spec::presigned_get();
        s.url = format!("https://{HOST}/");
        refused(&s.signed(), "no Action");
        let mut v = Spec::post().signed();
        v["method"] = json!("PUT");
        refused(&v, "only POST");
        // A header-signed GET is fine; a presigned one may not repeat its values in headers.
        let mut s = Spec::presigned_get();
        s.presign = None;
        assert!(check(&s.signed()).is_ok());
        let mut v = Spec::presigned_get().signed();
        set_header(&mut v, "x-amz-date", "20260101T000000Z");
        refused(&v, "not in header `x-amz-date`");
    }

    #[test]
    fn headers_are_allow_listed_unique_and_single_valued() {
        for (name, value) in [
            ("x-forwarded-host", "evil.example"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            (
                "x-amz-target",
                "AWSSecurityTokenServiceV20110615.AssumeRole",
            ),
        ] {
            refused(
                &Spec::post().header(name, value).signed(),
                &format!("header `{name}`, which is not allowed"),
            );
        }
        // Case variants of one name: a JSON object may hold both.
        let mut v = Spec::post().signed();
        set_header(&mut v, "Host", HOST);
        refused(&v, "header `host` twice");
        // The same name twice in the JSON text itself.
        let v = Spec::post().signed();
        let text = v.to_string().replacen(
            "\"headers\":{",
            "\"headers\":{\"host\":[\"evil.example\"],",
            1,
        );
        let e = bridge()
            .check(
                &base64::engine::general_purpose::STANDARD.encode(text),
                unix(SystemTime::now()),
            )
            .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let mut v = Spec::post().signed();
        v["headers"]["host"] = json!([HOST, "evil.example"]);
        refused(&v, "exactly one value, not 2");
        v["headers"]["host"] = json!([]);
        refused(&v, "exactly one value, not 0");
        let mut v = Spec::post().signed();
        set_header(&mut v, "user-agent", " padded");
        refused(&v, "padded");
    }

    #[test]
    fn audience_header_must_be_present_ours_and_signed() {
        refused(
            &Spec::post().without("x-gateway-audience").signed(),
            "must carry the audience header x-gateway-audience",
        );
        refused(
            &Spec::post()
                .header("x-gateway-audience", "other-gateway")
                .signed(),
            "is `other-gateway`, not this gateway's audience",
        );
        // Present with the right value but added after signing.
        let mut v = Spec::post().without("x-gateway-audience").signed();
        set_header(&mut v, "x-gateway-audience", AUD);
        refused(&v, "must be signed (listed in SignedHeaders)");
        let mut v = Spec::presigned_get().without("x-gateway-audience").signed();
        set_header(&mut v, "x-gateway-audience", AUD);
        refused(&v, "must be signed");
        // Case variants of the header name are one header.
        let mut v = Spec::post().signed();
        set_header(&mut v, "X-Gateway-Audience", AUD);
        refused(&v, "twice");
    }

    #[test]
    fn body_is_bounded_and_content_length_must_match() {
        let mut s = Spec::post();
        s.body = format!("{FORM}&{}", "a".repeat(5000));
        refused(&s.signed(), "larger than 4096 bytes");
        let s = Spec::post().header("content-length", "999");
        refused(&s.signed(), "Content-Length says 999");
        let s = Spec::post().header("content-length", &FORM.len().to_string());
        assert!(check(&s.signed()).is_ok());
    }

    #[test]
    fn signature_scope_and_time_are_checked() {
        let mut s = Spec::post();
        s.region = "us-east-1";
        refused(&s.signed(), "signed for region `us-east-1`");
        let mut s = Spec::post();
        s.service = "iam";
        refused(&s.signed(), "scoped to a service");
        let mut s = Spec::post();
        s.time = SystemTime::now() - Duration::from_secs(16 * 60);
        refused(&s.signed(), "more than 900 seconds");
        let mut s = Spec::presigned_get();
        s.presign = Some(3600);
        refused(&s.signed(), "X-Amz-Expires must be 1 to 900");
        let mut s = Spec::presigned_get();
        s.time = SystemTime::now() - Duration::from_secs(120);
        refused(&s.signed(), "expired");
        let mut v = Spec::post().signed();
        v["headers"]
            .as_object_mut()
            .unwrap()
            .remove("authorization");
        refused(&v, "signature");
    }

    #[test]
    fn the_encoding_is_strict() {
        let b = bridge();
        let now = unix(SystemTime::now());
        assert!(
            b.check("not base64!", now)
                .unwrap_err()
                .contains("not standard base64")
        );
        let plus_as_space = encode(&Spec::post().signed()).replace('+', " ");
        if plus_as_space.contains(' ') {
            assert!(b.check(&plus_as_space, now).is_err());
        }
        let mut v = Spec::post().signed();
        v["extra"] = json!(1);
        assert!(
            b.check(&encode(&v), now)
                .unwrap_err()
                .contains("unknown field")
        );
        let huge = "A".repeat(MAX_ENCODED_BYTES + 4);
        assert!(b.check(&huge, now).unwrap_err().contains("larger than"));
    }

    #[test]
    fn the_cache_key_covers_everything_sent() {
        let v = Spec::post().signed();
        let a = check(&v).unwrap().cache_key;
        assert_eq!(a, check(&v).unwrap().cache_key);
        let mut other = v.clone();
        set_header(&mut other, "user-agent", "x");
        assert_ne!(a, check(&other).unwrap().cache_key);
    }

    #[test]
    fn arns_map_to_principals() {
        let role = principal_of(
            "arn:aws:sts::444455556666:assumed-role/CheckoutTaskRole/task-1",
            "aws",
            "444455556666",
        );
        assert_eq!(
            role,
            Ok(Principal::Role {
                name: "CheckoutTaskRole".into()
            })
        );
        assert_eq!(
            principal_of(
                "arn:aws:iam::444455556666:user/ops/alice",
                "aws",
                "444455556666"
            ),
            Ok(Principal::User)
        );
        for (arn, invalid) in [
            ("arn:aws:iam::444455556666:root", true),
            ("arn:aws:sts::444455556666:federated-user/bob", true),
            ("arn:aws:sts::444455556666:assumed-role/R/s/extra", false),
            ("arn:aws:sts::444455556666:assumed-role/R", false),
            ("arn:aws:sts::444455556666:assumed-role/R*/s", false),
            ("arn:aws-cn:sts::444455556666:assumed-role/R/s", false),
            ("arn:aws:sts::111122223333:assumed-role/R/s", false),
            ("arn:aws:sts:eu-west-1:444455556666:assumed-role/R/s", false),
            ("arn:aws:s3:::bucket", false),
            ("arn:aws:iam::444455556666:user/", false),
            ("nonsense", false),
        ] {
            match principal_of(arn, "aws", "444455556666") {
                Err(BridgeError::Invalid(_)) if invalid => {}
                Err(BridgeError::Upstream(_)) if !invalid => {}
                other => panic!("{arn}: {other:?}"),
            }
        }
        let b = bridge();
        let answer = |arn: &str| {
            (
                arn.to_string(),
                "AROAX:s".to_string(),
                "444455556666".to_string(),
            )
        };
        assert_eq!(
            b.identify(answer(
                "arn:aws:sts::444455556666:assumed-role/CheckoutTaskRole/task-1"
            ))
            .unwrap()
            .principal_arn,
            "arn:aws:iam::444455556666:role/ecs/tasks/CheckoutTaskRole",
            "role_paths puts the path back"
        );
        assert_eq!(
            b.identify(answer("arn:aws:sts::444455556666:assumed-role/OtherRole/x"))
                .unwrap()
                .principal_arn,
            "arn:aws:iam::444455556666:role/OtherRole",
            "no path known: the pathless ARN"
        );
        assert_eq!(
            b.identify(answer("arn:aws:iam::444455556666:user/ops/alice"))
                .unwrap()
                .principal_arn,
            "arn:aws:iam::444455556666:user/ops/alice"
        );
    }

    fn gci(result: &str) -> String {
        format!(
            "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n{result}\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
        )
    }

    const FIELDS: &str = "<Arn>arn:aws:sts::444455556666:assumed-role/CheckoutTaskRole/task-1</Arn><UserId>AROAEXAMPLE:task-1</UserId><Account>444455556666</Account>";

    #[test]
    fn answers_are_parsed_strictly() {
        let (arn, user, account) = parse_caller_identity(&gci(FIELDS)).unwrap();
        assert_eq!(
            arn,
            "arn:aws:sts::444455556666:assumed-role/CheckoutTaskRole/task-1"
        );
        assert_eq!(user, "AROAEXAMPLE:task-1");
        assert_eq!(account, "444455556666");
        let with_decl = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
            gci(FIELDS)
        );
        assert!(parse_caller_identity(&with_decl).is_ok());
        let entities = gci(&FIELDS.replace("AROAEXAMPLE", "A&amp;B"));
        assert_eq!(parse_caller_identity(&entities).unwrap().1, "A&B:task-1");

        for (doc, needle) in [
            (
                gci(&format!("{FIELDS}<Arn>arn:aws:iam::444455556666:role/Admin</Arn>")),
                "2 <Arn> elements",
            ),
            (gci(&FIELDS.replace("<Account>444455556666</Account>", "")), "no <Account>"),
            (gci(&format!("{FIELDS}<Extra/>")), "unexpected <Extra>"),
            (gci(&FIELDS.replace("<Arn>", "<Arn><b>x</b>")), "mixes text and elements"),
            (
                format!("<!DOCTYPE x [<!ENTITY e \"x\">]>{}", gci(FIELDS)),
                "DTD",
            ),
            (gci(&format!("<!-- c -->{FIELDS}")), "comment"),
            (gci(&FIELDS.replace("AROAEXAMPLE", "&e;")), "entity"),
            (format!("{}trailing", gci(FIELDS)), "after its root"),
            (gci(FIELDS).replace(XMLNS, "urn:other"), "unexpected attributes"),
            (
                "<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>bad</Message></Error></ErrorResponse>".into(),
                "ErrorResponse: InvalidClientTokenId: bad",
            ),
            // Vault's CVE-2020-16250: another service's JSON echoing the attacker's text.
            (
                format!("{{\"Error\":\"{}\"}}", gci(FIELDS).replace('"', "\\\"")),
                "malformed",
            ),
            (format!("<Wrapper>{}</Wrapper>", gci(FIELDS)), "not a GetCallerIdentityResponse"),
            (gci(&FIELDS.replace("</Account>", "")), "closed by"),
        ] {
            let e = parse_caller_identity(&doc).unwrap_err();
            assert!(e.contains(needle), "wanted `{needle}` in: {e}\n{doc}");
        }
        let deep = format!("{}x{}", "<a>".repeat(20), "</a>".repeat(20));
        assert!(xml::parse(&deep).unwrap_err().contains("deeply"));
    }

    #[test]
    fn configuration_problems_are_named() {
        let mut c = config();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let b = AwsBridge::new(&c).unwrap();
        assert_eq!(
            b.allowed_hosts().collect::<Vec<_>>(),
            ["sts.amazonaws.com", "sts.eu-west-1.amazonaws.com"]
        );
        c.partition = "aws-cn".into();
        c.regions = vec!["cn-north-1".into()];
        c.role_paths.clear();
        assert_eq!(
            AwsBridge::new(&c)
                .unwrap()
                .allowed_hosts()
                .collect::<Vec<_>>(),
            ["sts.cn-north-1.amazonaws.com.cn"]
        );
        c.regions.clear();
        assert!(
            c.problems()
                .iter()
                .any(|p| p.contains("no global STS endpoint"))
        );
        let mut c = config();
        c.regions = vec!["cn-north-1".into(), "EU".into()];
        c.partition = "aws-iso".into();
        c.audience_header = "x-amz-audience".into();
        c.audience = String::new();
        c.endpoint_override = Some("http://127.0.0.1:1".into());
        c.ca_bundle = None;
        c.timeout_ms = 0;
        c.max_body_bytes = 1 << 20;
        c.cache_secs = 3600;
        c.role_paths = vec!["arn:aws:iam::1:role/x".into()];
        let p = c.problems().join("\n");
        for needle in [
            "audience_header `x-amz-audience`",
            "audience must be",
            "partition `aws-iso`",
            "endpoint_override",
            "ca_bundle is required",
            "timeout_ms",
            "max_body_bytes",
            "cache_secs",
            "role_paths entry",
        ] {
            assert!(p.contains(needle), "no `{needle}` in:\n{p}");
        }
        let mut c = config();
        c.regions = vec!["cn-north-1".into()];
        assert!(
            c.problems()
                .iter()
                .any(|p| p.contains("not a region of partition `aws`"))
        );
        let mut c = config();
        c.role_paths = vec![
            "arn:aws:iam::444455556666:role/a/R".into(),
            "arn:aws:iam::444455556666:role/b/R".into(),
        ];
        assert!(c.problems().iter().any(|p| p.contains("twice")));
        assert!(toml::from_str::<AwsBridgeConfig>("audience = \"a\"\nunknown = 1").is_err());
        assert_eq!(
            parse_override("https://[::1]:8443").unwrap(),
            ("::1".to_string(), 8443)
        );
        assert_eq!(parse_override("https://vpce.example").unwrap().1, 443);
    }

    #[tokio::test]
    async fn an_unreachable_sts_is_an_upstream_error_and_nothing_is_cached() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let mut c = config();
        c.endpoint_override = Some("https://127.0.0.1:1".into());
        let b = AwsBridge::new(&c).unwrap();
        let encoded = encode(&Spec::post().signed());
        let now = unix(SystemTime::now());
        match b.verify(&encoded, now).await {
            Err(BridgeError::Upstream(m)) => assert!(
                m.contains("cannot reach STS at sts.eu-west-1.amazonaws.com"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.cache.len(), 0);
        // A request that fails a check never gets that far.
        let bad = encode(&Spec::post().header("x-gateway-audience", "x").signed());
        assert!(matches!(
            b.verify(&bad, now).await,
            Err(BridgeError::Invalid(_))
        ));
    }
}
