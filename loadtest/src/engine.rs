//! The load engine: open loop at a fixed arrival rate (latency from the intended send
//! time, so a slow server cannot hide its queue: no coordinated omission), or closed
//! loop with N concurrent requests. Every request is signed at send time with
//! `aws-sigv4`.
//!
//! A run: resolve the scenario's STS sessions (AssumeRole against the target), open the
//! connections, measure the signing cost, then warm up (results discarded) and measure
//! for the duration.

use crate::client::{Answer, Client, SendError};
use crate::progress::Progress;
use crate::report::{MAX_EXAMPLES, Report, RouteCounts, Schedule, new_histogram};
use crate::scenario::{
    CredentialSource, Credentials, EXPIRED_BY_SECS, EXPIRED_CODE, Expect, Scenario, StsSource,
    TAMPERED_CODE,
};
use crate::sign::{SigningKey, ToSign, payload_hash, sign_headers, tamper};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// The most requests an open-loop run keeps in flight; a scheduled request beyond it is
/// not sent and is counted as an error ([`Report::not_sent`]).
pub const MAX_IN_FLIGHT: usize = 10_000;

/// How long one request may take (waiting for a connection, sending, reading the whole
/// response) before it counts as a `timeout` transport error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// A name for reports (`gateway`, `nginx`, ...).
    pub name: String,
    /// `http(s)://host:port`.
    pub base_url: String,
    /// For `https`: the CA certificates to trust (the only roots).
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 (ALPN `h2`; prior knowledge over plain TCP) instead of HTTP/1.1.
    pub http2: bool,
    /// The SigV4 region requests are signed for.
    pub region: String,
    /// The SigV4 service requests are signed for.
    pub service: String,
}

/// How load is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Mode {
    /// A fixed arrival rate, whatever the server does.
    Open {
        /// Requests a second.
        rate: u64,
    },
    /// N requests in flight at all times, each sent when the previous one ended.
    Closed {
        /// Concurrent requests.
        concurrency: usize,
    },
}

/// One run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Where the load goes.
    pub target: Target,
    /// Open or closed loop.
    pub mode: Mode,
    /// The measured time, after the warmup.
    pub duration: Duration,
    /// Load before the measured time whose results are discarded.
    pub warmup: Duration,
    /// TCP connections: HTTP/1.1 opens up to this many (one request in flight on each;
    /// more requests wait for a free one), HTTP/2 spreads requests over this many.
    pub connections: usize,
    /// A live progress line on standard error.
    pub progress: bool,
}

/// Runs `scenario` as `spec` says and reports what was measured.
pub async fn run(spec: &RunSpec, scenario: &Scenario) -> Result<Report, String> {
    if spec.duration.is_zero() {
        return Err("the duration must be more than 0".to_string());
    }
    match spec.mode {
        Mode::Open { rate: 0 } => return Err("the rate must be at least 1 request/s".into()),
        Mode::Closed { concurrency: 0 } => return Err("the concurrency must be at least 1".into()),
        _ => {}
    }
    if scenario.routes.is_empty() {
        return Err("the scenario has no route".to_string());
    }
    let t = &spec.target;
    let connections = spec.connections.max(1);
    let client = Client::new(&t.base_url, t.ca_file.as_deref(), t.http2, connections)?;
    let warm = match (spec.mode, t.http2) {
        (Mode::Closed { concurrency }, false) => connections.min(concurrency),
        _ => connections,
    };
    client
        .preconnect(warm)
        .await
        .map_err(|e| format!("cannot connect to {} ({}): {e}", t.name, t.base_url))?;
    let keys = resolve_keys(&client, t, scenario).await?;
    let plan = Plan::new(scenario, &client, keys)?;
    let signing_us = plan.calibrate(t);

    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let shared = Arc::new(Shared {
        client,
        plan,
        region: t.region.clone(),
        service: t.service.clone(),
        stats: Stats::new(scenario.routes.len() + 2),
        measure_from,
        end,
    });
    let progress = spec
        .progress
        .then(|| Progress::start(Arc::clone(&shared), start, measure_from, end));

    let schedule = match spec.mode {
        Mode::Open { rate } => Some(run_open(&shared, rate, start, scenario.seed).await?),
        Mode::Closed { concurrency } => {
            run_closed(&shared, concurrency, scenario.seed).await;
            None
        }
    };
    if let Some(p) = progress {
        p.stop().await;
    }

    let mut report = Report::empty(
        &t.name,
        &t.base_url,
        if t.http2 { "HTTP/2" } else { "HTTP/1.1" },
        spec.mode,
    );
    report.connections = shared.client.connections_opened().min(connections);
    report.duration_secs = spec.duration.as_secs_f64();
    report.warmup_secs = spec.warmup.as_secs_f64();
    report.signing_us_per_request = signing_us;
    report.schedule = schedule;
    shared.stats.fill(&mut report, &shared.plan);
    if let Some(s) = report.schedule {
        report.not_sent = s.scheduled.saturating_sub(s.sent);
        // Sent, but still unanswered when the wait for the last ones gave up: errors,
        // not requests that silently never were.
        let unfinished = s.sent.saturating_sub(report.requests);
        if unfinished > 0 {
            report.transport_errors += unfinished;
            *report
                .transport_error_kinds
                .entry("unfinished".to_string())
                .or_insert(0) += unfinished;
            report.requests += unfinished;
        }
    }
    report.finish();
    Ok(report)
}

// ---------------------------------------------------------------------------------
// Credentials

/// Signing keys for every credential of the scenario, sessions fetched from the
/// target's STS.
async fn resolve_keys(
    client: &Client,
    t: &Target,
    scenario: &Scenario,
) -> Result<Vec<SigningKey>, String> {
    let mut keys = Vec::with_capacity(scenario.credentials.len());
    for c in &scenario.credentials {
        let key = match &c.source {
            CredentialSource::Static(k) => SigningKey::new(k),
            CredentialSource::Sts(sts) => {
                let using = scenario
                    .credentials
                    .get(sts.using)
                    .and_then(|u| match &u.source {
                        CredentialSource::Static(k) => Some((u.name.as_str(), k)),
                        CredentialSource::Sts(_) => None,
                    })
                    .ok_or_else(|| format!("credential `{}`: sts.using is not static", c.name))?;
                let session = assume_role(client, t, sts, using.1).await.map_err(|e| {
                    format!(
                        "credential `{}` (AssumeRole with `{}`): {e}",
                        c.name, using.0
                    )
                })?;
                SigningKey::new(&session)
            }
        };
        keys.push(key);
    }
    Ok(keys)
}

/// Calls the target's STS `AssumeRole` (Query protocol, form POST, signed for service
/// `sts` with `caller`) and returns the session's credentials.
pub async fn assume_role(
    client: &Client,
    t: &Target,
    sts: &StsSource,
    caller: &Credentials,
) -> Result<Credentials, String> {
    let mut form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}",
        form_encode(&sts.role_arn),
        form_encode(&sts.session_name)
    );
    if let Some(d) = sts.duration_secs {
        form.push_str(&format!("&DurationSeconds={d}"));
    }
    let url = format!("{}{}", client.base_url(), sts.endpoint_path);
    let content_type = "application/x-www-form-urlencoded";
    let hash = payload_hash(form.as_bytes());
    let headers = [("host", client.authority()), ("content-type", content_type)];
    let signed = sign_headers(
        &SigningKey::new(caller),
        &t.region,
        "sts",
        SystemTime::now(),
        &ToSign {
            method: "POST",
            url: &url,
            headers: &headers,
            payload_hash: &hash,
        },
    )?;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(client.uri_for(&sts.endpoint_path)?);
    if client.sends_host_header() {
        req = req.header(http::header::HOST, client.authority());
    }
    req = req.header(http::header::CONTENT_TYPE, content_type);
    for (k, v) in signed {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, client.send(req, true))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let body = answer
        .body
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    if answer.status != 200 {
        let excerpt: String = body.chars().take(400).collect();
        return Err(format!(
            "{} {}: {excerpt}",
            answer.status,
            answer.code.as_deref().unwrap_or("")
        ));
    }
    let field = |name: &str| {
        xml_text(&body, name).ok_or_else(|| format!("the AssumeRole answer has no <{name}>"))
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
    })
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<name>...</name>` element, with XML's predefined entities
/// decoded.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let from = xml.find(&open)? + open.len();
    let rest = xml.get(from..)?;
    let to = rest.find(&close)?;
    let raw = rest.get(..to)?.trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

// ---------------------------------------------------------------------------------
// The plan: prepared routes and the weighted random choice

/// A small, fast, seeded generator (xorshift64*): the mix is the same for the same
/// seed, and no `rand` crate is needed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; mixed with splitmix64).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// How a chosen request is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Tampered,
    Expired,
}

#[derive(Clone, Copy, Debug)]
struct Pick {
    route: usize,
    kind: Kind,
}

struct Prepared {
    method: http::Method,
    /// The full URL, as signed.
    url: String,
    /// The URI put in the request.
    uri: http::Uri,
    body: Bytes,
    payload_hash: String,
    content_type: Option<String>,
    key: usize,
}

/// The headers `aws-sigv4` adds to a request.
type SignedHeaders = Vec<(&'static str, String)>;

struct Plan {
    routes: Vec<Prepared>,
    names: Vec<String>,
    expects: Vec<Expect>,
    cumulative: Vec<u64>,
    total: u64,
    tampered: f64,
    expired: f64,
    keys: Vec<SigningKey>,
    authority: String,
    host_header: bool,
}

impl Plan {
    fn new(scenario: &Scenario, client: &Client, keys: Vec<SigningKey>) -> Result<Plan, String> {
        let mut routes = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        let mut names = Vec::new();
        let mut expects = Vec::new();
        for r in &scenario.routes {
            let body = Bytes::from(body_of(r.body_bytes));
            let content_type = r.content_type.clone().or_else(|| {
                (r.body_bytes > 0).then(|| {
                    if r.body_bytes >= 10 {
                        "application/json".to_string()
                    } else {
                        "application/octet-stream".to_string()
                    }
                })
            });
            if r.credential >= keys.len() {
                return Err(format!("route `{}`: no such credential", r.name));
            }
            routes.push(Prepared {
                method: r.method.clone(),
                url: format!("{}{}", client.base_url(), r.path),
                uri: client.uri_for(&r.path)?,
                payload_hash: payload_hash(&body),
                body,
                content_type,
                key: r.credential,
            });
            total += u64::from(r.weight);
            cumulative.push(total);
            names.push(r.name.clone());
            expects.push(r.expect.clone());
        }
        if total == 0 {
            return Err("every route has weight 0".to_string());
        }
        names.push("tampered".to_string());
        expects.push(Expect::deny(403, TAMPERED_CODE));
        names.push("expired".to_string());
        expects.push(Expect::deny(403, EXPIRED_CODE));
        Ok(Plan {
            routes,
            names,
            expects,
            cumulative,
            total,
            tampered: scenario.deny.tampered,
            expired: scenario.deny.expired,
            keys,
            authority: client.authority().to_string(),
            host_header: client.sends_host_header(),
        })
    }

    fn pick(&self, rng: &mut Rng) -> Pick {
        let kind = if self.tampered + self.expired > 0.0 {
            let u = rng.unit();
            if u < self.tampered {
                Kind::Tampered
            } else if u < self.tampered + self.expired {
                Kind::Expired
            } else {
                Kind::Normal
            }
        } else {
            Kind::Normal
        };
        let r = rng.below(self.total);
        let route = self
            .cumulative
            .partition_point(|c| *c <= r)
            .min(self.routes.len().saturating_sub(1));
        Pick { route, kind }
    }

    /// The index of a pick's counters: its route, or the deny share it belongs to.
    fn slot(&self, pick: Pick) -> usize {
        match pick.kind {
            Kind::Normal => pick.route,
            Kind::Tampered => self.routes.len(),
            Kind::Expired => self.routes.len() + 1,
        }
    }

    /// The signed headers of `pick`, signed at `now`.
    fn sign(
        &self,
        pick: Pick,
        region: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<(&Prepared, SignedHeaders), String> {
        let r = self
            .routes
            .get(pick.route)
            .ok_or_else(|| "no such route".to_string())?;
        let key = self
            .keys
            .get(r.key)
            .ok_or_else(|| "no such credential".to_string())?;
        let time = if pick.kind == Kind::Expired {
            now - Duration::from_secs(EXPIRED_BY_SECS)
        } else {
            now
        };
        let host = ("host", self.authority.as_str());
        let both;
        let one;
        let headers: &[(&str, &str)] = match &r.content_type {
            Some(ct) => {
                both = [host, ("content-type", ct.as_str())];
                &both
            }
            None => {
                one = [host];
                &one
            }
        };
        let signed = sign_headers(
            key,
            region,
            service,
            time,
            &ToSign {
                method: r.method.as_str(),
                url: &r.url,
                headers,
                payload_hash: &r.payload_hash,
            },
        )?;
        Ok((r, signed))
    }

    /// `pick` as a signed request, ready to send.
    fn request(
        &self,
        pick: Pick,
        region: &str,
        service: &str,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let (r, signed) = self.sign(pick, region, service, SystemTime::now())?;
        let mut req = http::Request::builder()
            .method(r.method.clone())
            .uri(r.uri.clone());
        if self.host_header {
            req = req.header(http::header::HOST, self.authority.as_str());
        }
        if let Some(ct) = &r.content_type {
            req = req.header(http::header::CONTENT_TYPE, ct.as_str());
        }
        for (k, v) in signed {
            if pick.kind == Kind::Tampered && k == "authorization" {
                req = req.header(k, tamper(&v));
            } else {
                req = req.header(k, v);
            }
        }
        req.body(Full::new(r.body.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    /// The mean time `aws-sigv4` takes to sign one of this scenario's requests, in
    /// microseconds: up to 2,000 signatures or 100 ms, before the run.
    fn calibrate(&self, t: &Target) -> f64 {
        let mut rng = Rng::new(0xC0FFEE);
        let started = Instant::now();
        let mut n = 0u32;
        while n < 2000 && started.elapsed() < Duration::from_millis(100) {
            let pick = self.pick(&mut rng);
            let _ = std::hint::black_box(self.sign(pick, &t.region, &t.service, SystemTime::now()));
            n += 1;
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1))
    }
}

/// A body of exactly `n` bytes: a JSON document `{"pad":"xxx..."}` from 10 bytes on.
fn body_of(n: usize) -> Vec<u8> {
    if n < 10 {
        return vec![b'x'; n];
    }
    let mut b = Vec::with_capacity(n);
    b.extend_from_slice(b"{\"pad\":\"");
    b.resize(n - 2, b'x');
    b.extend_from_slice(b"\"}");
    b
}

// ---------------------------------------------------------------------------------
// Counting

const SHARDS: usize = 8;

struct Shard {
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    codes: BTreeMap<String, u64>,
    routes: Vec<RouteCounts>,
    responses: u64,
    expected: u64,
    unexpected: u64,
    transport_errors: u64,
    error_kinds: BTreeMap<String, u64>,
    examples: Vec<String>,
}

/// Counters shared by every request task, sharded to keep lock waits short.
pub(crate) struct Stats {
    shards: Vec<Mutex<Shard>>,
    /// Responses and transport errors, warmup included (for the progress rate).
    pub(crate) completed: AtomicU64,
    /// Requests started and not yet finished.
    pub(crate) in_flight: AtomicU64,
    /// Responses that arrived within the measured window, whatever their send time.
    answered_in_window: AtomicU64,
}

/// A snapshot of the measured results so far, for the progress line.
pub(crate) struct Snapshot {
    pub(crate) responses: u64,
    pub(crate) unexpected: u64,
    pub(crate) errors: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
}

impl Stats {
    fn new(slots: usize) -> Stats {
        Stats {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        histogram: new_histogram(),
                        statuses: BTreeMap::new(),
                        codes: BTreeMap::new(),
                        routes: vec![RouteCounts::default(); slots],
                        responses: 0,
                        expected: 0,
                        unexpected: 0,
                        transport_errors: 0,
                        error_kinds: BTreeMap::new(),
                        examples: Vec::new(),
                    })
                })
                .collect(),
            completed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            answered_in_window: AtomicU64::new(0),
        }
    }

    fn record(
        &self,
        plan: &Plan,
        shard: usize,
        pick: Pick,
        measured: bool,
        result: &Result<Answer, SendError>,
        latency: Duration,
    ) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if !measured {
            return;
        }
        let Some(shard) = self.shards.get(shard % SHARDS) else {
            return;
        };
        let Ok(mut s) = shard.lock() else {
            return;
        };
        let slot = plan.slot(pick);
        match result {
            Ok(a) => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                s.histogram.saturating_record(us.max(1));
                s.responses += 1;
                *s.statuses.entry(a.status).or_insert(0) += 1;
                if let Some(code) = &a.code {
                    if let Some(n) = s.codes.get_mut(code) {
                        *n += 1;
                    } else {
                        s.codes.insert(code.clone(), 1);
                    }
                }
                let expect = plan.expects.get(slot);
                let ok = expect.is_some_and(|e| e.matches(a.status, a.code.as_deref()));
                if ok {
                    s.expected += 1;
                } else {
                    s.unexpected += 1;
                    if s.examples.len() < MAX_EXAMPLES {
                        let example = format!(
                            "{}: expected {}, got {}{}",
                            plan.names.get(slot).map_or("?", String::as_str),
                            expect.map_or_else(|| "?".to_string(), ToString::to_string),
                            a.status,
                            a.code
                                .as_deref()
                                .map(|c| format!(" {c}"))
                                .unwrap_or_default()
                        );
                        s.examples.push(example);
                    }
                }
                if let Some(c) = s.routes.get_mut(slot) {
                    c.responses += 1;
                    if ok {
                        c.expected += 1;
                    } else {
                        c.unexpected += 1;
                    }
                }
            }
            Err(e) => {
                s.transport_errors += 1;
                *s.error_kinds.entry(e.kind.to_string()).or_insert(0) += 1;
                if s.examples.len() < MAX_EXAMPLES {
                    let example = format!(
                        "{}: no response: {e}",
                        plan.names.get(slot).map_or("?", String::as_str)
                    );
                    s.examples.push(example);
                }
                if let Some(c) = s.routes.get_mut(slot) {
                    c.transport_errors += 1;
                }
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut h = new_histogram();
        let mut snap = Snapshot {
            responses: 0,
            unexpected: 0,
            errors: 0,
            p50: 0,
            p99: 0,
        };
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                let _ = h.add(&s.histogram);
                snap.responses += s.responses;
                snap.unexpected += s.unexpected;
                snap.errors += s.transport_errors;
            }
        }
        if !h.is_empty() {
            snap.p50 = h.value_at_quantile(0.5);
            snap.p99 = h.value_at_quantile(0.99);
        }
        snap
    }

    fn fill(&self, report: &mut Report, plan: &Plan) {
        for (i, name) in plan.names.iter().enumerate() {
            let mut counts = RouteCounts {
                expect: plan
                    .expects
                    .get(i)
                    .map_or_else(String::new, ToString::to_string),
                ..RouteCounts::default()
            };
            for shard in &self.shards {
                if let Ok(s) = shard.lock()
                    && let Some(c) = s.routes.get(i)
                {
                    counts.responses += c.responses;
                    counts.expected += c.expected;
                    counts.unexpected += c.unexpected;
                    counts.transport_errors += c.transport_errors;
                }
            }
            // The deny shares appear only when the scenario has them.
            let is_share = i >= plan.routes.len();
            let share = if name == "tampered" {
                plan.tampered
            } else {
                plan.expired
            };
            if !is_share || share > 0.0 {
                report.routes.insert(name.clone(), counts);
            }
        }
        for shard in &self.shards {
            let Ok(s) = shard.lock() else { continue };
            let _ = report.histogram.add(&s.histogram);
            report.responses += s.responses;
            report.expected += s.expected;
            report.unexpected += s.unexpected;
            report.transport_errors += s.transport_errors;
            for (k, v) in &s.statuses {
                *report.statuses.entry(*k).or_insert(0) += v;
            }
            for (k, v) in &s.codes {
                *report.codes.entry(k.clone()).or_insert(0) += v;
            }
            for (k, v) in &s.error_kinds {
                *report.transport_error_kinds.entry(k.clone()).or_insert(0) += v;
            }
            for e in &s.examples {
                if report.examples.len() < MAX_EXAMPLES {
                    report.examples.push(e.clone());
                }
            }
        }
        report.requests = report.responses + report.transport_errors;
        report.answered_in_window = self.answered_in_window.load(Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------
// Running

pub(crate) struct Shared {
    client: Client,
    plan: Plan,
    region: String,
    service: String,
    pub(crate) stats: Stats,
    measure_from: Instant,
    end: Instant,
}

impl Shared {
    /// Signs and sends one request, reads the whole answer.
    async fn exchange(&self, pick: Pick) -> Result<Answer, SendError> {
        let req = self
            .plan
            .request(pick, &self.region, &self.service)
            .map_err(|e| SendError {
                kind: "sign",
                message: e,
            })?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.send(req, false)).await {
            Ok(result) => result,
            Err(_) => Err(SendError {
                kind: "timeout",
                message: format!("no complete response in {} s", REQUEST_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Counts a response that arrived at `at` within the measured window: the
    /// throughput is those over the window's length, not the responses to the requests
    /// sent in it (in an open loop past the target's capacity, those keep arriving long
    /// after the window, and counting them would report the offered rate).
    fn note_arrival(&self, result: &Result<Answer, SendError>, at: Instant) {
        if result.is_ok() && at >= self.measure_from && at < self.end {
            self.stats
                .answered_in_window
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One request of an open-loop run, intended at `intended`.
    async fn one_open(&self, n: u64, pick: Pick, intended: Instant) {
        let result = self.exchange(pick).await;
        let done = Instant::now();
        self.note_arrival(&result, done);
        let latency = done.saturating_duration_since(intended);
        let measured = intended >= self.measure_from;
        self.stats
            .record(&self.plan, n as usize, pick, measured, &result, latency);
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_closed(shared: &Arc<Shared>, concurrency: usize, seed: u64) {
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let shared = Arc::clone(shared);
        let mut rng = Rng::new(seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        workers.push(tokio::spawn(async move {
            loop {
                let started = Instant::now();
                if started >= shared.end {
                    break;
                }
                let pick = shared.plan.pick(&mut rng);
                shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
                let result = shared.exchange(pick).await;
                let done = Instant::now();
                shared.note_arrival(&result, done);
                let latency = done.saturating_duration_since(started);
                shared.stats.record(
                    &shared.plan,
                    w,
                    pick,
                    started >= shared.measure_from,
                    &result,
                    latency,
                );
                shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

async fn run_open(
    shared: &Arc<Shared>,
    rate: u64,
    start: Instant,
    seed: u64,
) -> Result<Schedule, String> {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let handle = tokio::runtime::Handle::current();
    let sched_shared = Arc::clone(shared);
    let sched_permits = Arc::clone(&permits);
    // The schedule runs on its own thread: `std::thread::sleep` wakes within tens of
    // microseconds, where the async timer rounds to milliseconds.
    let schedule = tokio::task::spawn_blocking(move || {
        let shared = sched_shared;
        let mut rng = Rng::new(seed);
        let total = shared.end.saturating_duration_since(start);
        let mut s = Schedule {
            rate,
            ..Schedule::default()
        };
        let mut lag_sum = 0f64;
        let mut i: u64 = 0;
        loop {
            let offset_ns = u128::from(i) * 1_000_000_000 / u128::from(rate);
            let offset = Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX));
            if offset >= total {
                break;
            }
            let intended = start + offset;
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let lag = Instant::now().saturating_duration_since(intended);
            let measured = intended >= shared.measure_from;
            let pick = shared.plan.pick(&mut rng);
            match Arc::clone(&sched_permits).try_acquire_owned() {
                Ok(permit) => {
                    shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
                    let task_shared = Arc::clone(&shared);
                    handle.spawn(async move {
                        task_shared.one_open(i, pick, intended).await;
                        drop(permit);
                    });
                    if measured {
                        s.sent += 1;
                    }
                }
                Err(_) => {
                    shared.stats.completed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if measured {
                s.scheduled += 1;
                let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
                s.max_lag_us = s.max_lag_us.max(lag_us);
                lag_sum += lag_us as f64;
                if lag > Duration::from_millis(1) {
                    s.late_over_1ms += 1;
                }
            }
            i += 1;
        }
        if s.scheduled > 0 {
            s.mean_lag_us = lag_sum / s.scheduled as f64;
        }
        s
    });
    let schedule = schedule
        .await
        .map_err(|e| format!("the scheduler failed: {e}"))?;
    // Wait for what is still in flight (each request has its own timeout).
    let all = u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(5),
        permits.acquire_many(all),
    )
    .await;
    Ok(schedule)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_spread() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[a.below(4) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let u = a.unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn bodies_have_the_asked_size() {
        for n in [0, 1, 9, 10, 11, 1000] {
            assert_eq!(body_of(n).len(), n);
        }
        assert_eq!(body_of(12), b"{\"pad\":\"xx\"}");
        assert!(serde_json::from_slice::<serde_json::Value>(&body_of(500)).is_ok());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            form_encode("arn:aws:iam::1:role/R"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2FR"
        );
        assert_eq!(
            xml_text(
                "<a><AccessKeyId> ASIA1 </AccessKeyId><S>x&amp;y</S></a>",
                "S"
            )
            .as_deref(),
            Some("x&y")
        );
        assert_eq!(
            xml_text("<AccessKeyId>ASIA1</AccessKeyId>", "AccessKeyId").as_deref(),
            Some("ASIA1")
        );
    }
}
