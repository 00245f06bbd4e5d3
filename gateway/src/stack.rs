//! The one place the stages are put in order:
//!
//! listener (TCP, TLS) -> **verify** (SigV4; identity look-up between parse and
//! signature check) -> **authorize** (route, allow matrix) -> **forward** (rewrite,
//! identity assertion, upstream) -> response.
//!
//! Each stage hands the next a typed proof: [`crate::verify::Authenticated`] ->
//! [`crate::authorize::Permit`]; the forwarder is only reached with a `Permit`.

use crate::assertion::AssertionSigner;
use crate::audit::{AuditRecord, Auditor, Decision, EventType};
use crate::authorize::{Permit, Routes, authorize};
use crate::body::{self, GatewayBody};
use crate::config::{Config, ConfigErrors};
use crate::context::{ConnInfo, RequestContext};
use crate::error::GatewayError;
use crate::forward::{Forwarder, Rewrite, rewrite_request};
use crate::identity::IdentitySource;
use crate::identity::sessions::{Chain, SessionSource};
use crate::identity::static_keys::StaticKeys;
use crate::listener::Handler;
use crate::metrics::{Metrics, Stage};
use crate::reload::{Reload, Reloadable};
use crate::sigv4::Policy;
use crate::sts::endpoint::StsEndpoint;
use crate::trace::{RequestIds, TraceContext};
use crate::trail::Trail;
use crate::verify::VerifyStage;
use authz_rules::Rules;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// The path the assertion's public keys are published at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    verify: VerifyStage,
    credentials: Arc<Reloadable<StaticKeys>>,
    rules: Arc<Reloadable<Rules>>,
    routes: Routes,
    upstreams: HashMap<String, http::Uri>,
    forwarder: Forwarder,
    signer: AssertionSigner,
    /// `/.well-known/jwks.json`, serialized once: the endpoint is unauthenticated.
    jwks_body: bytes::Bytes,
    assertion_header: HeaderName,
    sts: Option<StsEndpoint>,
    sessions: Option<SessionSource>,
    request_ids: RequestIds,
    metrics: Arc<Metrics>,
    auditor: Arc<Auditor>,
    replay: Option<crate::replay::ReplayGuard>,
    throttle: crate::throttle::Throttle,
}

/// Warns when Redis may evict the gateway's keys: a replay cache that forgets live
/// signatures under memory pressure lets captured requests through again.
async fn warn_unless_noeviction(store: crate::state::redis::RedisStore) {
    match store.eviction_policy().await {
        Some(policy) if policy == "noeviction" => {
            tracing::info!("redis: maxmemory-policy noeviction");
        }
        Some(policy) => tracing::warn!(
            %policy,
            "redis: maxmemory-policy is not noeviction, so under memory pressure Redis may evict \
             live replay-cache entries (making captured requests replayable) and rate-limit \
             buckets; set `maxmemory-policy noeviction`"
        ),
        None => tracing::info!(
            "redis: could not read maxmemory-policy (unreachable, or CONFIG is not allowed); \
             make sure it is noeviction"
        ),
    }
}

/// Loads the rules file, refusing one with errors (the message lists them all).
pub fn load_rules(path: &std::path::Path) -> Result<Rules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the rules file: {e}", path.display()))?;
    let rules = Rules::parse(&text, &path.display().to_string()).map_err(|d| d.to_string())?;
    // An empty file parses (no rules: deny everything), and is what a file truncated in
    // place looks like: never a matrix worth switching to.
    if rules.pbcs().is_empty() {
        return Err(format!(
            "{}: declares no PBC, so it would deny every request; refusing it (an empty or \
             truncated file?). A rules file names at least one [[pbc]].",
            path.display()
        ));
    }
    for w in rules.warnings().warnings() {
        tracing::warn!(file = %path.display(), line = w.line, code = w.code, "{}", w.message);
    }
    Ok(rules)
}

/// Loads the credentials file.
pub fn load_credentials(path: &std::path::Path) -> Result<StaticKeys, String> {
    StaticKeys::load(path).map_err(|e: ConfigErrors| e.to_string())
}

impl Gateway {
    /// Builds the gateway from a validated config: loads rules and credentials, the
    /// assertion key and the upstream clients. Every rules target must be routable.
    pub fn from_config(config: &Config) -> Result<Gateway, String> {
        let mut policy = Policy::new(config.sigv4.regions.clone(), config.sigv4.services.clone());
        policy.max_skew_secs = config.sigv4.max_skew_secs;
        policy.required_signed_headers = config.sigv4.required_signed_headers.clone();
        let credentials = Arc::new(Reloadable::new(
            "credentials",
            config.identity.credentials_file.clone(),
            load_credentials,
        )?);
        let rules = Arc::new(Reloadable::new(
            "rules",
            config.rules.file.clone(),
            load_rules,
        )?);
        for t in &config.targets {
            if rules.get().pbc(&t.name).is_none() {
                tracing::warn!(
                    target = %t.name,
                    rules = %config.rules.file.display(),
                    "target is not a PBC of the rules file: only `*` rules apply to it"
                );
            }
        }
        let signer = match &config.assertion.key_file {
            Some(path) => AssertionSigner::from_pem_file(
                path,
                &config.assertion.issuer,
                config.assertion.ttl_secs,
            )?,
            None => AssertionSigner::generate(&config.assertion.issuer, config.assertion.ttl_secs)?,
        };
        let upstreams = config
            .targets
            .iter()
            .map(|t| {
                t.upstream
                    .parse::<http::Uri>()
                    .map(|u| (t.name.clone(), u))
                    .map_err(|e| format!("target {}: upstream {}: {e}", t.name, t.upstream))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let (sts, sessions) = match &config.sts {
            Some(sts_config) => {
                let keys = Arc::new(crate::sts::load_keys(&sts_config.keys)?);
                let roles = crate::sts::roles::Roles::new(&config.roles)?;
                for (role, pbc) in roles.unknown_pbcs(&rules.get()) {
                    tracing::warn!(%role, %pbc, "a trust policy names a PBC the rules file does not declare");
                }
                let mut sts_policy = Policy::new(config.sigv4.regions.clone(), ["sts"]);
                sts_policy.max_skew_secs = config.sigv4.max_skew_secs;
                sts_policy.required_signed_headers = config.sigv4.required_signed_headers.clone();
                let sessions = SessionSource::new(Arc::clone(&keys), roles.revocations())
                    .with_roles(roles.arns().cloned());
                let web = if sts_config.oidc_issuers.is_empty() {
                    None
                } else {
                    Some(crate::sts::web_identity::WebIdentityVerifier::new(
                        &sts_config.oidc_issuers,
                    )?)
                };
                let aws = sts_config
                    .aws_bridge
                    .as_ref()
                    .map(crate::sts::bridge::AwsBridge::new)
                    .transpose()?;
                let endpoint = StsEndpoint::new(
                    sts_config.path.clone(),
                    VerifyStage::new(sts_policy, config.limits.max_body_bytes),
                    keys,
                    roles,
                    web,
                    aws,
                );
                (Some(endpoint), Some(sessions))
            }
            None => (None, None),
        };
        let jwks_body = bytes::Bytes::from(signer.jwks().to_string());
        let metrics = Arc::new(Metrics::new());
        let redis = config
            .redis
            .as_ref()
            .map(|r| crate::state::redis::RedisStore::new(r).map(|store| (store, r.on_unavailable)))
            .transpose()?;
        if let (Some((store, _)), Ok(runtime)) = (&redis, tokio::runtime::Handle::try_current()) {
            runtime.spawn(warn_unless_noeviction(store.clone()));
        }
        let replay = config
            .replay
            .as_ref()
            .map(|r| {
                crate::replay::ReplayGuard::new(
                    r,
                    redis.as_ref().map(|(s, mode)| (s, *mode)),
                    Arc::clone(&metrics),
                )
            })
            .transpose()?;
        let throttle = crate::throttle::Throttle::new(
            &config.rate_limit,
            redis.as_ref().map(|(s, mode)| (s, *mode)),
            Arc::clone(&metrics),
        )?;
        Ok(Gateway {
            replay,
            throttle,
            request_ids: RequestIds::new(&config.tracing)?,
            auditor: Auditor::start(&config.audit)?,
            forwarder: Forwarder::new(&config.targets, Arc::clone(&metrics))?,
            metrics,
            jwks_body,
            sts,
            sessions,
            verify: VerifyStage::new(policy, config.limits.max_body_bytes),
            credentials,
            rules,
            routes: Routes::new(&config.targets),
            upstreams,
            signer,
            assertion_header: HeaderName::from_bytes(config.assertion.header.as_bytes())
                .map_err(|e| format!("assertion.header: {e}"))?,
        })
    }

    /// The reloadable files, for the watcher.
    pub fn reloadables(&self) -> Vec<Arc<dyn Reload>> {
        vec![
            Arc::clone(&self.rules) as Arc<dyn Reload>,
            Arc::clone(&self.credentials) as Arc<dyn Reload>,
        ]
    }

    /// The live rules.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.get()
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The audit log's queue.
    pub fn auditor(&self) -> &Arc<Auditor> {
        &self.auditor
    }

    /// The `/metrics` exposition: gauges mirrored from the reloaders and the audit
    /// queue are brought up to date first.
    pub fn scrape(&self) -> String {
        for r in self.reloadables() {
            self.metrics
                .set_reload(r.what(), r.reloads(), r.failures(), r.last_success_unix());
        }
        let a = &self.auditor;
        self.metrics.set_audit(
            a.depth(),
            a.capacity(),
            a.dropped(),
            a.written(),
            a.write_errors(),
        );
        self.metrics.render()
    }

    /// The assertion signer's public keys (what `/.well-known/jwks.json` serves).
    pub fn jwks(&self) -> serde_json::Value {
        self.signer.jwks()
    }

    /// Handles one request: every outcome is a response, never a hang or a panic.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<GatewayBody> {
        let (parts, body) = req.into_parts();
        // A concrete closure: a generic `Into::into` here trips the Send check of the
        // handler's future (a higher-ranked lifetime rustc cannot prove).
        let body = body
            .map_err(|e| -> body::BoxError { Box::new(e) })
            .boxed_unsync();
        self.handle_parts(parts, body, conn).await
    }

    /// [`Gateway::handle`] for any body (tests drive it without a socket).
    pub async fn handle_parts(
        &self,
        mut parts: Parts,
        body: GatewayBody,
        conn: Arc<ConnInfo>,
    ) -> Response<GatewayBody> {
        let received = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let request_id = match parts.extensions.remove::<crate::context::RequestId>() {
            Some(chosen) => chosen.0,
            None => self.request_ids.pick(&parts.headers, conn.peer.ip()),
        };
        let mut trace = TraceContext::from_headers(&parts.headers);
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            trace_id = %trace.trace_id(),
            method = %parts.method,
            peer = %conn.peer,
            tls_client = conn.client_identity.as_deref().unwrap_or("-"),
        );
        trace.attach(&span);
        let ctx = RequestContext {
            request_id,
            conn,
            received,
            now: i64::try_from(wall.as_secs()).unwrap_or(i64::MAX),
            now_ms: i64::try_from(wall.as_millis()).unwrap_or(i64::MAX),
            trace,
        };
        let mut resp = if parts.uri.path() == JWKS_PATH && parts.uri.query().is_none() {
            // Public keys, not a call to a PBC: not audited.
            self.serve_jwks(&parts.method)
                .unwrap_or_else(|e| e.into_response(&ctx.request_id))
        } else {
            let wall_ms = i64::try_from(wall.as_millis()).unwrap_or(i64::MAX);
            self.audited(parts, body, &ctx, wall_ms)
                .instrument(span)
                .await
        };
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
        resp
    }

    /// Runs the request through the stages with its audit record: a place in the audit
    /// queue is taken first (in fail-closed mode, no place means 503), the record is
    /// filled in by each stage and emitted when the response body ends.
    async fn audited(
        &self,
        parts: Parts,
        body: GatewayBody,
        ctx: &RequestContext,
        wall_ms: i64,
    ) -> Response<GatewayBody> {
        let sts = self.sts.as_ref().filter(|s| s.serves(parts.uri.path()));
        let kind = if sts.is_some() {
            EventType::StsAction
        } else {
            EventType::GatewayRequest
        };
        let mut record = AuditRecord::new(
            kind,
            &ctx.request_id,
            wall_ms,
            ctx.conn.peer,
            &parts.method,
            &parts.uri,
        );
        record.trace_id = Some(ctx.trace.trace_id());
        record.tls_client.clone_from(&ctx.conn.client_identity);
        record.user_agent = crate::audit::record::user_agent(&parts.headers);
        let Ok(slot) = self.auditor.reserve() else {
            let e = GatewayError::unavailable(
                "The gateway cannot write its audit log (its queue is full or its sink is failing) \
                 and is configured to refuse requests it cannot audit ([audit] on_full = \
                 \"fail_closed\"). Retry with backoff.",
            );
            // The auditor counts and logs the loss (at most once a second).
            tracing::debug!(code = e.code(), "rejected: the audit queue is full");
            self.metrics.request("-", "-", "deny", e.code());
            return e.into_response(&ctx.request_id);
        };
        let mut trail = Trail::new(record, Some(slot), Arc::clone(&self.metrics), ctx.received);
        let body = trail.count_request_body(body);
        let source = ctx.conn.peer.ip();
        let rules = self.rules.get();
        // An address that keeps failing authentication is refused before its signature
        // is checked (rules file: a failed_auth_per_source_ip limit).
        let result = match self.throttle.check_source(&rules, source, ctx.now_ms).await {
            Err(e) => {
                trail.claimed_key(&parts);
                Err(e)
            }
            Ok(()) => match sts {
                Some(sts) => {
                    trail.claimed_key(&parts);
                    let credentials = self.credentials.get();
                    let identity = self.identity(&credentials);
                    Ok(sts
                        .handle(
                            parts,
                            body,
                            &identity,
                            &rules,
                            ctx,
                            &mut trail,
                            self.replay.as_ref(),
                        )
                        .await)
                }
                None => self.pipeline(parts, body, ctx, &mut trail).await,
            },
        };
        let failed_code = match &result {
            Err(e) => Some(e.code()),
            Ok(_) => trail.record.error_code,
        };
        if failed_code.is_some_and(|c| crate::throttle::FAILED_AUTH_CODES.contains(&c)) {
            self.throttle.failed_auth(&rules, source, ctx.now_ms).await;
        }
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let who = &trail.record.user_identity;
                tracing::debug!(
                    status = e.status().as_u16(),
                    code = e.code(),
                    principal = who.principal_arn.as_deref().unwrap_or("-"),
                    access_key_id = who.access_key_id.as_deref().unwrap_or("-"),
                    caller_pbc = who.caller_pbc.as_deref().unwrap_or("-"),
                    target = trail.record.target_pbc.as_deref().unwrap_or("-"),
                    elapsed_us =
                        u64::try_from(ctx.received.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "rejected"
                );
                trail.error(&e);
                e.into_response(&ctx.request_id)
            }
        };
        let (head, body) = resp.into_parts();
        let body = trail.finish_with(head.status.as_u16(), body);
        Response::from_parts(head, body)
    }

    /// Where access keys are looked up: STS sessions first, then the static keys.
    fn identity<'a>(&'a self, credentials: &'a StaticKeys) -> Chain<'a> {
        Chain {
            sessions: self.sessions.as_ref().map(|s| s as &dyn IdentitySource),
            fallback: credentials,
        }
    }

    async fn pipeline(
        &self,
        mut parts: Parts,
        body: GatewayBody,
        ctx: &RequestContext,
        trail: &mut Trail,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let credentials = self.credentials.get();
        let identity = self.identity(&credentials);
        // verify (the identity look-up happens between its two halves)
        let started = Instant::now();
        let authenticated = self
            .verify
            .run(&mut parts, body, &identity, ctx.now)
            .instrument(tracing::info_span!("verify"))
            .await;
        trail.stage(Stage::Verify, started.elapsed());
        let authenticated = match authenticated {
            Ok(a) => a,
            Err(e) => {
                trail.claimed_key(&parts);
                return Err(e);
            }
        };
        trail.principal(&authenticated.principal);
        if let Some(replay) = &self.replay {
            replay
                .check(&parts.method, &authenticated.verified, ctx.now)
                .await?;
        }
        let stream_failure = authenticated.stream_failure.clone();
        // authorize
        let started = Instant::now();
        let rules = self.rules.get();
        let permit = tracing::info_span!("authorize")
            .in_scope(|| authorize(&rules, &self.routes, authenticated.principal, &parts, ctx));
        trail.stage(Stage::Authorize, started.elapsed());
        let permit = match permit {
            Ok(permit) => permit,
            Err(denial) => {
                // Denied calls count against the caller's limits too.
                if let (Some(caller), Some(target)) = (&denial.caller_pbc, &denial.target) {
                    self.throttle
                        .check_call(&rules, caller, target, ctx.now_ms)
                        .await?;
                }
                trail.record.user_identity.caller_pbc = denial.caller_pbc;
                trail.record.target_pbc = denial.target;
                trail.record.rule = denial.rule;
                return Err(denial.error);
            }
        };
        if let Some(caller) = &permit.caller_pbc {
            self.throttle
                .check_call(&rules, caller, &permit.route.target, ctx.now_ms)
                .await?;
        }
        trail.record.decision = Decision::Allow;
        trail
            .record
            .user_identity
            .caller_pbc
            .clone_from(&permit.caller_pbc);
        trail.record.target_pbc = Some(permit.route.target.clone());
        trail.record.rule = Some(permit.rule_id.clone());
        // Per request: debug (the audit log is the record of every decision).
        tracing::debug!(
            principal = %permit.principal.arn,
            role = %permit.principal.role_arn,
            source_identity = permit.principal.source_identity.as_deref().unwrap_or("-"),
            access_key_id = %permit.principal.access_key_id,
            caller_pbc = permit.caller_pbc.as_deref().unwrap_or("-"),
            target = %permit.route.target,
            rule = %permit.rule_id,
            "allowed"
        );
        // forward
        let started = Instant::now();
        let span = tracing::info_span!("forward", target = %permit.route.target);
        let result = self
            .forward(permit, parts, authenticated.body, ctx)
            .instrument(span)
            .await;
        trail.stage(Stage::Upstream, started.elapsed());
        // A chunk that failed verification aborted the upstream request; its
        // rejection is the answer, whatever the upstream managed to say.
        if let Some(rejection) = stream_failure.take() {
            trail.record.decision = Decision::Deny;
            return Err(rejection);
        }
        if let Ok(resp) = &result {
            trail.record.upstream_status = Some(resp.status().as_u16());
        }
        result
    }

    async fn forward(
        &self,
        permit: Permit,
        mut parts: Parts,
        body: GatewayBody,
        ctx: &RequestContext,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let upstream = self.upstreams.get(&permit.route.target).ok_or_else(|| {
            GatewayError::no_route(format!(
                "Target {} has no upstream configured.",
                permit.route.target
            ))
        })?;
        let assertion = self
            .signer
            .sign(
                &permit.principal,
                permit.caller_pbc.as_deref(),
                &permit.route.target,
                &ctx.request_id,
                ctx.now,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign the identity assertion");
                GatewayError::internal("The gateway could not sign the identity assertion.")
            })?;
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        rewrite_request(
            &mut parts,
            upstream,
            &Rewrite {
                upstream_path_and_query: &permit.route.path_and_query,
                assertion_header: &self.assertion_header,
                assertion: &assertion,
                request_id: &ctx.request_id,
                client_ip: ctx.conn.peer.ip(),
                tls: ctx.conn.tls,
                host: host.as_deref(),
            },
        );
        ctx.trace.inject(&mut parts.headers);
        if let Some(name) = self.request_ids.header()
            && let Ok(v) = HeaderValue::from_str(&ctx.request_id)
        {
            parts.headers.insert(name.clone(), v);
        }
        self.forwarder
            .send(&permit.route.target, Request::from_parts(parts, body))
            .await
    }

    fn serve_jwks(&self, method: &Method) -> Result<Response<GatewayBody>, GatewayError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(GatewayError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{JWKS_PATH} only answers GET."),
            ));
        }
        let mut resp = Response::new(body::full(self.jwks_body.clone()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=300"),
        );
        Ok(resp)
    }
}

/// The listener's handler: the shared gateway.
#[derive(Clone)]
pub struct GatewayHandler(pub Arc<Gateway>);

impl Handler for GatewayHandler {
    fn call(
        &self,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl std::future::Future<Output = Response<GatewayBody>> + Send {
        let gateway = Arc::clone(&self.0);
        async move { gateway.handle(req, conn).await }
    }

    fn request_id(&self, req: &Request<Incoming>, conn: &ConnInfo) -> String {
        self.0.request_ids.pick(req.headers(), conn.peer.ip())
    }

    fn tls_handshake_failed(&self, reason: &'static str) {
        self.0.metrics.tls_handshake_error(reason);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_or_pbc_less_rules_file_is_refused() {
        let dir = std::env::temp_dir().join(format!(
            "gateway-stack-rules-{}-{}",
            std::process::id(),
            crate::random::uuid_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.toml");
        for text in ["", "# truncated\n"] {
            std::fs::write(&file, text).unwrap();
            let err = load_rules(&file).unwrap_err();
            assert!(err.contains("declares no PBC"), "{err}");
        }
        std::fs::write(&file, "[[pbc]]\nname = \"order\"\n").unwrap();
        assert!(load_rules(&file).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
