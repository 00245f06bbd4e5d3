//! The STS endpoint: AWS's Query protocol (`Action=...&Version=2011-06-15`, a
//! form-encoded POST or a GET query), XML responses and `ErrorResponse`s shaped as
//! AWS's, so `aws-sdk-sts`, boto3 and the AWS CLI work with an endpoint URL.

use super::bridge::{AwsBridge, BridgeError};
use super::roles::Roles;
use super::session::{SessionClaims, SessionKeys};
use super::web_identity::{WebIdentityError, WebIdentityVerifier};
use crate::audit::{Decision, StsDetails};
use crate::body::{self, GatewayBody};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::identity::{IdentitySource, Principal};
use crate::replay::ReplayGuard;
use crate::trail::Trail;
use crate::verify::VerifyStage;
use authz_rules::Rules;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const MAX_FORM_BYTES: usize = 64 * 1024;
/// AWS caps sessions obtained by role chaining at one hour.
const CHAIN_CAP_SECS: i64 = 3600;

/// The STS endpoint's state.
pub struct StsEndpoint {
    path: String,
    verify: VerifyStage,
    keys: Arc<SessionKeys>,
    roles: Roles,
    web: Option<WebIdentityVerifier>,
    aws: Option<AwsBridge>,
    rng: ring::rand::SystemRandom,
}

/// An STS error: the AWS code, the status, a message.
#[derive(Debug)]
struct StsError(GatewayError);

impl From<GatewayError> for StsError {
    fn from(e: GatewayError) -> Self {
        Self(e)
    }
}

impl From<crate::sigv4::Rejection> for StsError {
    fn from(r: crate::sigv4::Rejection) -> Self {
        Self(r.into())
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> StsError {
    StsError(GatewayError::new(StatusCode::BAD_REQUEST, code, message))
}

fn denied(message: impl Into<String>) -> StsError {
    StsError(GatewayError::new(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        message,
    ))
}

impl StsEndpoint {
    /// An endpoint at `path` verifying signatures with `verify` (scoped to service
    /// `sts`), web identity tokens with `web` (if any issuer is configured) and real AWS
    /// identities with `aws` (if the AWS bridge is configured).
    pub fn new(
        path: String,
        verify: VerifyStage,
        keys: Arc<SessionKeys>,
        roles: Roles,
        web: Option<WebIdentityVerifier>,
        aws: Option<AwsBridge>,
    ) -> Self {
        Self {
            path,
            verify,
            keys,
            roles,
            web,
            aws,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// The path it is served at.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Is a request for `path` an STS request? The SDKs append a `/` to an endpoint URL
    /// with a path (`.../sts/`), so both forms are.
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest == "/")
    }

    /// Handles one STS request; every outcome is an XML response.
    #[allow(clippy::too_many_arguments)]
    pub async fn handle(
        &self,
        mut parts: Parts,
        body: GatewayBody,
        identity: &dyn IdentitySource,
        rules: &Rules,
        ctx: &RequestContext,
        trail: &mut Trail,
        replay: Option<&ReplayGuard>,
    ) -> Response<GatewayBody> {
        let mut details = StsDetails::default();
        let result = self
            .dispatch(
                &mut parts,
                body,
                identity,
                rules,
                ctx,
                trail,
                &mut details,
                replay,
            )
            .await;
        trail.record.sts = Some(details);
        match result {
            Ok(xml) => {
                trail.record.decision = Decision::Allow;
                xml_response(StatusCode::OK, xml, &ctx.request_id)
            }
            Err(StsError(e)) => {
                tracing::info!(
                    status = e.status().as_u16(),
                    code = e.code(),
                    "sts: rejected"
                );
                trail.error(&e);
                error_response(&e, &ctx.request_id)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        parts: &mut Parts,
        body: GatewayBody,
        identity: &dyn IdentitySource,
        rules: &Rules,
        ctx: &RequestContext,
        trail: &mut Trail,
        details: &mut StsDetails,
        replay: Option<&ReplayGuard>,
    ) -> Result<String, StsError> {
        let query = parts.uri.query().unwrap_or("").to_string();
        let signed = parts.headers.contains_key(http::header::AUTHORIZATION)
            || query.contains("X-Amz-Signature=");
        let (caller, chain_origin, form) = if signed {
            let presigned = query.contains("X-Amz-Signature=");
            let unsigned_payload = parts
                .headers
                .get("x-amz-content-sha256")
                .is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD");
            let authn = self.verify.run(parts, body, identity, ctx.now).await?;
            trail.principal(&authn.principal);
            // A replayed AssumeRole would hand its sender fresh credentials: STS calls
            // are checked whatever their method.
            if let Some(replay) = replay {
                replay.remember(&authn.verified, ctx.now).await?;
            }
            let form = collect(authn.body).await?;
            // The body is the operation: it must be covered by the signature. A presigned
            // URL or UNSIGNED-PAYLOAD leaves it free, so STS refuses a body with either.
            if !form.is_empty() && (presigned || unsigned_payload) {
                return Err(bad(
                    "InvalidParameterValue",
                    "An STS request signed without its body (presigned or UNSIGNED-PAYLOAD) must \
                     carry its parameters in the signed query, not a body.",
                ));
            }
            let origin = if authn.verified.has_session_token {
                Some(self.chain_origin(parts, &query, &authn.principal, ctx.now))
            } else {
                None
            };
            (Some(authn.principal), origin, form)
        } else {
            (None, None, collect(body).await?)
        };
        let params = params_of(&query, &parts.headers, &parts.method, &form)?;
        let action = action_of(&params)?;
        trail.record.event_name = action.chars().take(64).collect();
        check_parameters(&action, &params)?;
        details.role_arn = params
            .get("RoleArn")
            .map(|r| r.chars().take(2048).collect());
        details.role_session_name = params
            .get("RoleSessionName")
            .map(|r| r.chars().take(64).collect());
        match (action.as_str(), caller) {
            ("GetCallerIdentity", Some(caller)) => Ok(get_caller_identity(&caller, &ctx.request_id)),
            ("AssumeRole", Some(caller)) => {
                self.assume_role(&caller, chain_origin, &params, rules, ctx, details)
            }
            ("AssumeRoleWithWebIdentity", _) => self.assume_role_with_web_identity(&params, ctx, details).await,
            ("AssumeRoleWithAWSIdentity", _) => self.assume_role_with_aws_identity(&params, ctx, details).await,
            ("GetCallerIdentity" | "AssumeRole", None) => Err(StsError(
                crate::sigv4::Rejection::new(
                    crate::sigv4::Code::MissingAuthenticationToken,
                    format!("{action} must be signed with SigV4 (service sts) by the caller's credentials."),
                )
                .into(),
            )),
            (other, _) => Err(bad(
                "InvalidAction",
                format!(
                    "Could not find operation {other} for version 2011-06-15; this gateway serves \
                     GetCallerIdentity, AssumeRole, AssumeRoleWithWebIdentity and \
                     AssumeRoleWithAWSIdentity."
                ),
            )),
        }
    }

    async fn assume_role_with_web_identity(
        &self,
        params: &HashMap<String, String>,
        ctx: &RequestContext,
        details: &mut StsDetails,
    ) -> Result<String, StsError> {
        let role_arn = required(params, "RoleArn")?;
        let session_name = required(params, "RoleSessionName")?;
        check_name("RoleSessionName", session_name)?;
        let token = required(params, "WebIdentityToken")?;
        let web = self.web.as_ref().ok_or_else(|| {
            bad(
                "InvalidIdentityToken",
                "This gateway trusts no OIDC issuer: configure [[sts.oidc_issuer]].",
            )
        })?;
        let identity = web.verify(token, ctx.now).await.map_err(|e| match e {
            WebIdentityError::Expired(m) => bad("ExpiredTokenException", m),
            WebIdentityError::IdpUnreachable(m) => bad("IDPCommunicationError", m),
            WebIdentityError::Invalid(m) => bad("InvalidIdentityToken", m),
        })?;
        details.federated_identity = Some(format!("{} {}", identity.issuer, identity.subject));
        let not_authorized = || {
            denied(format!(
                "Not authorized to perform sts:AssumeRoleWithWebIdentity on {role_arn} with a token of {} for {}",
                identity.issuer, identity.subject
            ))
        };
        let role = self.roles.get(role_arn).ok_or_else(not_authorized)?;
        if !role.trusts_web_identity(&identity.issuer, &identity.subject) {
            return Err(not_authorized());
        }
        let duration = duration(params, role.max_session_secs, false)?;
        let claims = SessionClaims::first_hop(&role.arn, session_name, ctx.now, duration);
        let (credentials, assumed) = self.issue(&claims, details)?;
        tracing::info!(
            issuer = %identity.issuer,
            subject = %identity.subject,
            role = %role.arn,
            session = %session_name,
            expires_at = claims.expires_at,
            "sts: AssumeRoleWithWebIdentity"
        );
        Ok(format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"{XMLNS}\"><AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken><Audience>{}</Audience>{assumed}{credentials}<Provider>{}</Provider></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>",
            escape(&identity.subject),
            escape(&identity.audience),
            escape(&identity.issuer),
            escape(&ctx.request_id),
        ))
    }

    /// `AssumeRoleWithAWSIdentity`: like `AssumeRoleWithWebIdentity`, unsigned at the
    /// gateway; the proof is `Request`, a signed `sts:GetCallerIdentity` request the
    /// AWS bridge checks and sends to AWS STS (see [`super::bridge`]).
    async fn assume_role_with_aws_identity(
        &self,
        params: &HashMap<String, String>,
        ctx: &RequestContext,
        details: &mut StsDetails,
    ) -> Result<String, StsError> {
        let role_arn = required(params, "RoleArn")?;
        let session_name = required(params, "RoleSessionName")?;
        check_name("RoleSessionName", session_name)?;
        let request = required(params, "Request")?;
        let bridge = self.aws.as_ref().ok_or_else(|| {
            bad(
                "InvalidIdentityToken",
                "This gateway has no AWS bridge: configure [sts.aws_bridge].",
            )
        })?;
        let identity = bridge.verify(request, ctx.now).await.map_err(|e| match e {
            BridgeError::Invalid(m) => bad("InvalidIdentityToken", m),
            BridgeError::Upstream(m) => bad("IDPCommunicationError", m),
        })?;
        details.federated_identity = Some(identity.principal_arn.clone());
        let not_authorized = || {
            tracing::info!(
                aws_principal = %identity.principal_arn,
                role = %role_arn,
                "sts: AssumeRoleWithAWSIdentity not trusted"
            );
            denied(format!(
                "AWS principal {} is not authorized to perform sts:AssumeRoleWithAWSIdentity on {role_arn}",
                identity.principal_arn
            ))
        };
        let role = self.roles.get(role_arn).ok_or_else(not_authorized)?;
        if !role.trusts_aws_principal(&identity.principal_arn) {
            return Err(not_authorized());
        }
        let duration = duration(params, role.max_session_secs, false)?;
        // No source identity: the AWS principal is logged instead (a caller that wants
        // one sets it when it chains into another role with AssumeRole).
        let claims = SessionClaims::first_hop(&role.arn, session_name, ctx.now, duration);
        let (credentials, assumed) = self.issue(&claims, details)?;
        tracing::info!(
            aws_principal = %identity.principal_arn,
            aws_caller = %identity.caller_arn,
            cached = identity.cached,
            role = %role.arn,
            session = %session_name,
            expires_at = claims.expires_at,
            "sts: AssumeRoleWithAWSIdentity"
        );
        Ok(format!(
            "<AssumeRoleWithAWSIdentityResponse xmlns=\"{XMLNS}\"><AssumeRoleWithAWSIdentityResult>{assumed}{credentials}<AWSPrincipalArn>{}</AWSPrincipalArn><PackedPolicySize>0</PackedPolicySize></AssumeRoleWithAWSIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleWithAWSIdentityResponse>",
            escape(&identity.principal_arn),
            escape(&ctx.request_id),
        ))
    }

    /// Seals a session; returns the `<Credentials>` and `<AssumedRoleUser>` XML.
    fn issue(
        &self,
        claims: &SessionClaims,
        details: &mut StsDetails,
    ) -> Result<(String, String), StsError> {
        let creds = self.keys.issue(claims, &self.rng).map_err(|e| {
            tracing::error!(error = %e, "sts: cannot issue credentials");
            StsError(GatewayError::internal(
                "The gateway could not issue credentials.",
            ))
        })?;
        let arn = claims
            .assumed_role_arn()
            .map_err(|e| StsError(GatewayError::internal(e)))?;
        details.issued_access_key_id = Some(creds.access_key_id.clone());
        details.expiration = Some(authz_rules::condition::format_rfc3339(creds.expiration));
        details.source_identity.clone_from(&claims.source_identity);
        let credentials = format!(
            "<Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>",
            escape(&creds.access_key_id),
            escape(creds.secret_access_key.expose()),
            escape(&creds.session_token),
            authz_rules::condition::format_rfc3339(creds.expiration),
        );
        let user = format!(
            "<AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>{}</AssumedRoleId></AssumedRoleUser>",
            escape(&arn),
            escape(&claims.user_id())
        );
        Ok((credentials, user))
    }

    /// When the caller's session chain began (the caller signed with a session token,
    /// which verified, so it opens; `now` if it somehow does not).
    fn chain_origin(&self, parts: &Parts, query: &str, caller: &Principal, now: i64) -> i64 {
        let token = parts
            .headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix("X-Amz-Security-Token="))
                    .and_then(|t| decode(t).ok())
            });
        token
            .and_then(|t| self.keys.open(&caller.access_key_id, &t).ok())
            .map_or(now, |(claims, _)| claims.chain_started_at())
    }

    fn assume_role(
        &self,
        caller: &Principal,
        chain_origin: Option<i64>,
        params: &HashMap<String, String>,
        rules: &Rules,
        ctx: &RequestContext,
        details: &mut StsDetails,
    ) -> Result<String, StsError> {
        let chained = chain_origin.is_some();
        let role_arn = required(params, "RoleArn")?;
        let session_name = required(params, "RoleSessionName")?;
        check_name("RoleSessionName", session_name)?;
        let not_authorized = || {
            denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ))
        };
        let role = self.roles.get(role_arn).ok_or_else(not_authorized)?;
        if !role.trusts(caller, rules) {
            return Err(not_authorized());
        }
        if let Some(want) = &role.external_id
            && params.get("ExternalId") != Some(want)
        {
            return Err(not_authorized());
        }
        let duration = duration(params, role.max_session_secs, chained)?;
        let requested_source = params.get("SourceIdentity");
        if let Some(s) = requested_source {
            check_name("SourceIdentity", s)?;
        }
        let source_identity = match (&caller.source_identity, requested_source) {
            (Some(kept), Some(asked)) if kept != asked => {
                return Err(denied(format!(
                    "The source identity {kept} set by an earlier session cannot be changed in role chaining."
                )));
            }
            (Some(kept), _) => Some(kept.clone()),
            (None, asked) => asked.cloned(),
        };
        let tags = session_tags(params)?;
        let claims = SessionClaims {
            role_arn: role.arn.clone(),
            session_name: session_name.to_string(),
            source_identity,
            tags,
            issued_at: ctx.now,
            expires_at: ctx.now + duration,
            chained,
            origin_issued_at: chain_origin,
        };
        let (credentials, assumed) = self.issue(&claims, details)?;
        tracing::info!(
            caller = %caller.arn,
            role = %role.arn,
            session = %session_name,
            source_identity = claims.source_identity.as_deref().unwrap_or("-"),
            expires_at = claims.expires_at,
            "sts: AssumeRole"
        );
        let source = claims
            .source_identity
            .as_deref()
            .map(|s| format!("<SourceIdentity>{}</SourceIdentity>", escape(s)))
            .unwrap_or_default();
        Ok(format!(
            "<AssumeRoleResponse xmlns=\"{XMLNS}\"><AssumeRoleResult>{source}{assumed}{credentials}<PackedPolicySize>0</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
            escape(&ctx.request_id),
        ))
    }
}

fn get_caller_identity(caller: &Principal, request_id: &str) -> String {
    let account = caller.arn.split(':').nth(4).unwrap_or("");
    let user_id = if caller.arn.contains(":assumed-role/") {
        let session = caller.arn.rsplit('/').next().unwrap_or("");
        SessionClaims::first_hop(&caller.role_arn, session, 0, 0).user_id()
    } else {
        caller.access_key_id.clone()
    };
    format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\"><GetCallerIdentityResult><Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
        escape(&caller.arn),
        escape(&user_id),
        escape(account),
        escape(request_id)
    )
}

/// The parameters of an STS request, as the Query protocol carries them: those of the
/// query string and, when the request is a form (`application/x-www-form-urlencoded`) or
/// a POST with a body, those of the body. A parameter given twice (in either, or in both)
/// is refused, as are bad escapes and text that is not UTF-8.
fn params_of(
    query: &str,
    headers: &http::HeaderMap,
    method: &http::Method,
    form: &[u8],
) -> Result<HashMap<String, String>, StsError> {
    let mut params = parse_form(query)?;
    let is_form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form || (!form.is_empty() && *method == http::Method::POST) {
        let text = std::str::from_utf8(form)
            .map_err(|_| bad("InvalidParameterValue", "The form body is not UTF-8."))?;
        for (k, v) in parse_form(text)? {
            if params.contains_key(&k) {
                return Err(bad(
                    "InvalidParameterValue",
                    format!("The parameter {k} is given twice."),
                ));
            }
            params.insert(k, v);
        }
    }
    Ok(params)
}

/// `Version` (2011-06-15 only) and `Action`, which every STS request carries.
fn action_of(params: &HashMap<String, String>) -> Result<String, StsError> {
    match params.get("Version").map(String::as_str) {
        Some("2011-06-15") => {}
        Some(v) => {
            return Err(bad(
                "InvalidParameterValue",
                format!("Version {v} is not supported; use 2011-06-15."),
            ));
        }
        None => {
            return Err(bad(
                "MissingParameter",
                "The request must contain the parameter Version.",
            ));
        }
    }
    params.get("Action").cloned().ok_or_else(|| {
        bad(
            "MissingAction",
            "The request must contain the parameter Action.",
        )
    })
}

/// The parameters of an STS request (query string, and form body when there is one),
/// parsed as [`StsEndpoint::handle`] parses them; see `params_of`.
///
/// Public as the entry point of the `sts_request` fuzz target (`fuzz/`); the endpoint
/// itself goes through `handle`.
pub fn request_params(
    query: &str,
    headers: &http::HeaderMap,
    method: &http::Method,
    form: &[u8],
) -> Result<HashMap<String, String>, GatewayError> {
    params_of(query, headers, method, form).map_err(|StsError(e)| e)
}

/// What [`check_params`] accepted.
#[derive(Debug)]
pub struct CheckedParams {
    /// `Action`.
    pub action: String,
    /// The session tags (`Tags.member.N.Key` / `.Value`), in order.
    pub tags: Vec<(String, String)>,
    /// The session duration, seconds.
    pub duration_secs: i64,
}

/// The checks the endpoint makes of parsed parameters that need no caller, key or
/// role, with the functions it uses: `Version` and `Action`, the parameters the action
/// supports, `RoleSessionName` and `SourceIdentity` (when given), the session tags and
/// `DurationSeconds` (against a role allowing `role_max_secs`, and role chaining when
/// `chained`).
///
/// Public as an entry point of the `sts_request` fuzz target (`fuzz/`): `handle` runs
/// the same checks, interleaved with the caller's and the role's.
pub fn check_params(
    params: &HashMap<String, String>,
    role_max_secs: i64,
    chained: bool,
) -> Result<CheckedParams, GatewayError> {
    let checks = || -> Result<_, StsError> {
        let action = action_of(params)?;
        check_parameters(&action, params)?;
        if let Some(name) = params.get("RoleSessionName") {
            check_name("RoleSessionName", name)?;
        }
        if let Some(source) = params.get("SourceIdentity") {
            check_name("SourceIdentity", source)?;
        }
        let tags = session_tags(params)?;
        let duration_secs = duration(params, role_max_secs, chained)?;
        Ok(CheckedParams {
            action,
            tags,
            duration_secs,
        })
    };
    checks().map_err(|StsError(e)| e)
}

/// `DurationSeconds`: default one hour (or the role's cap if lower), at least 900,
/// at most the role's maximum, and at most an hour for role chaining (as AWS).
fn duration(
    params: &HashMap<String, String>,
    role_max: i64,
    chained: bool,
) -> Result<i64, StsError> {
    let max = if chained {
        role_max.min(CHAIN_CAP_SECS)
    } else {
        role_max
    };
    let Some(d) = params.get("DurationSeconds") else {
        return Ok(max.min(3600));
    };
    let d: i64 = d.parse().map_err(|_| {
        bad(
            "ValidationError",
            format!("DurationSeconds `{d}` is not a number."),
        )
    })?;
    if d < 900 {
        return Err(bad(
            "ValidationError",
            "DurationSeconds must be at least 900.",
        ));
    }
    if d > max {
        return Err(bad(
            "ValidationError",
            if chained {
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.".to_string()
            } else {
                format!(
                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role ({max} s)."
                )
            },
        ));
    }
    Ok(d)
}

/// Refuses parameters an action does not support here: session policies, MFA,
/// transitive tags and the like would be silently ignored otherwise, and a caller
/// scoping credentials down would get the whole role.
fn check_parameters(action: &str, params: &HashMap<String, String>) -> Result<(), StsError> {
    let allowed: &[&str] = match action {
        "GetCallerIdentity" => &[],
        "AssumeRole" => &[
            "RoleArn",
            "RoleSessionName",
            "DurationSeconds",
            "ExternalId",
            "SourceIdentity",
        ],
        "AssumeRoleWithWebIdentity" => &[
            "RoleArn",
            "RoleSessionName",
            "DurationSeconds",
            "WebIdentityToken",
        ],
        "AssumeRoleWithAWSIdentity" => {
            &["RoleArn", "RoleSessionName", "DurationSeconds", "Request"]
        }
        _ => return Ok(()),
    };
    for name in params.keys() {
        let ok = matches!(name.as_str(), "Action" | "Version")
            || name.starts_with("X-Amz-")
            || allowed.contains(&name.as_str())
            || (action == "AssumeRole"
                && name.strip_prefix("Tags.member.").is_some_and(|rest| {
                    rest.split_once('.').is_some_and(|(n, field)| {
                        n.bytes().all(|b| b.is_ascii_digit()) && matches!(field, "Key" | "Value")
                    })
                }));
        if !ok {
            return Err(bad(
                "InvalidParameterValue",
                format!(
                    "The parameter {name} is not supported by this gateway's {action} (session \
                     policies, MFA and transitive tags are not): remove it."
                ),
            ));
        }
    }
    Ok(())
}

fn required<'p>(params: &'p HashMap<String, String>, name: &str) -> Result<&'p str, StsError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            bad(
                "MissingParameter",
                format!("The request must contain the parameter {name}."),
            )
        })
}

/// Session names and source identities: 2 to 64 of `[\w+=,.@-]`, as AWS requires.
fn check_name(field: &str, v: &str) -> Result<(), StsError> {
    let ok = (2..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "ValidationError",
            format!("{field} must be 2 to 64 characters of letters, digits and _+=,.@-"),
        ))
    }
}

fn session_tags(params: &HashMap<String, String>) -> Result<Vec<(String, String)>, StsError> {
    let mut tags = Vec::new();
    for n in 1..=51 {
        let key = params.get(&format!("Tags.member.{n}.Key"));
        let value = params.get(&format!("Tags.member.{n}.Value"));
        match (key, value) {
            (None, None) => break,
            (Some(k), v) => {
                if n > 50 {
                    return Err(bad("ValidationError", "At most 50 session tags."));
                }
                if k.is_empty() || k.len() > 128 || v.is_some_and(|v| v.len() > 256) {
                    return Err(bad(
                        "ValidationError",
                        "Tag keys are 1 to 128 characters, values at most 256.",
                    ));
                }
                if k.len() >= 4 && k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
                    return Err(bad(
                        "ValidationError",
                        format!("Tag key {k} is reserved: keys starting with aws: are AWS's."),
                    ));
                }
                if tags
                    .iter()
                    .any(|(seen, _): &(String, String)| seen.eq_ignore_ascii_case(k))
                {
                    return Err(bad(
                        "ValidationError",
                        format!("Tag key {k} is given twice (tag keys ignore case)."),
                    ));
                }
                tags.push((k.clone(), v.cloned().unwrap_or_default()));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "ValidationError",
                    format!("Tags.member.{n} has a Value but no Key."),
                ));
            }
        }
    }
    Ok(tags)
}

async fn collect(body: GatewayBody) -> Result<Vec<u8>, StsError> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            StsError(GatewayError::bad_body(format!(
                "The request body could not be read: {e}"
            )))
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_FORM_BYTES {
                return Err(StsError(GatewayError::too_large(format!(
                    "STS requests are at most {MAX_FORM_BYTES} bytes."
                ))));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space); a repeated key is refused.
fn parse_form(text: &str) -> Result<HashMap<String, String>, StsError> {
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        if out.insert(k.clone(), v).is_some() {
            return Err(bad(
                "InvalidParameterValue",
                format!("The parameter {k} is given twice."),
            ));
        }
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, StsError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        bad("InvalidParameterValue", "A parameter has a bad %-escape.")
                    })?;
                out.push(hex);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad("InvalidParameterValue", "A parameter is not UTF-8."))
}

/// XML text escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry: echoed input must not break the SDKs' parsers.
            c if !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..) =>
            {
                out.push('\u{FFFD}');
            }
            c => out.push(c),
        }
    }
    out
}

fn xml_response(status: StatusCode, xml: String, request_id: &str) -> Response<GatewayBody> {
    let mut resp = Response::new(body::full(xml));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// AWS's Query-protocol `ErrorResponse`.
fn error_response(e: &GatewayError, request_id: &str) -> Response<GatewayBody> {
    let kind = if e.status().is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let xml = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape(e.code()),
        escape(e.message()),
        escape(request_id)
    );
    let mut resp = xml_response(e.status(), xml, request_id);
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(e.code()));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_refuse_repeats() {
        let p = parse_form("Action=AssumeRole&RoleSessionName=a+b%2Fc&Version=2011-06-15").unwrap();
        assert_eq!(p["RoleSessionName"], "a b/c");
        assert!(parse_form("Action=A&Action=B").is_err());
        assert!(parse_form("A=%zz").is_err());
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }

    #[test]
    fn unsupported_parameters_reserved_tags_and_bad_escapes_are_refused() {
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for extra in [
            "Policy",
            "PolicyArns.member.1.arn",
            "SerialNumber",
            "TokenCode",
            "TransitiveTagKeys.member.1",
        ] {
            let p = params(&[("Action", "AssumeRole"), ("RoleArn", "r"), (extra, "x")]);
            assert!(check_parameters("AssumeRole", &p).is_err(), "{extra}");
        }
        let ok = params(&[
            ("Action", "AssumeRole"),
            ("Tags.member.1.Key", "k"),
            ("Tags.member.1.Value", "v"),
        ]);
        assert!(check_parameters("AssumeRole", &ok).is_ok());
        let reserved = params(&[
            ("Tags.member.1.Key", "AWS:SourceIdentity"),
            ("Tags.member.1.Value", "alice"),
        ]);
        assert!(session_tags(&reserved).is_err());
        let twice = params(&[
            ("Tags.member.1.Key", "Team"),
            ("Tags.member.1.Value", "x"),
            ("Tags.member.2.Key", "team"),
            ("Tags.member.2.Value", "y"),
        ]);
        assert!(session_tags(&twice).is_err());
        assert!(decode("Get%+1").is_err());
        assert_eq!(escape("a\u{1}b\u{FFFE}"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn durations_are_bounded_by_the_role_and_by_chaining() {
        let d = |v: Option<&str>, max, chained| {
            let mut p = HashMap::new();
            if let Some(v) = v {
                p.insert("DurationSeconds".to_string(), v.to_string());
            }
            duration(&p, max, chained).map_err(|e| e.0.code())
        };
        assert_eq!(d(None, 7200, false), Ok(3600));
        assert_eq!(d(None, 1800, false), Ok(1800));
        assert_eq!(d(Some("7200"), 7200, false), Ok(7200));
        assert_eq!(d(Some("7201"), 7200, false), Err("ValidationError"));
        assert_eq!(d(Some("899"), 7200, false), Err("ValidationError"));
        assert_eq!(d(Some("3601"), 7200, true), Err("ValidationError"));
        assert_eq!(d(Some("x"), 7200, false), Err("ValidationError"));
    }

    #[test]
    fn names_and_tags_are_checked() {
        assert!(check_name("RoleSessionName", "pod-7@checkout").is_ok());
        assert!(check_name("RoleSessionName", "x").is_err());
        assert!(check_name("RoleSessionName", "has space").is_err());
        let mut p = HashMap::new();
        p.insert("Tags.member.1.Key".to_string(), "team".to_string());
        p.insert("Tags.member.1.Value".to_string(), "checkout".to_string());
        assert_eq!(
            session_tags(&p).unwrap(),
            [("team".to_string(), "checkout".to_string())]
        );
    }
}
