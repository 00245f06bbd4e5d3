//! What the core is given: a request exactly as received, and the policy it is held to.

use http::HeaderMap;

/// A request as received, before anything is decoded or normalized.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path exactly as in the request target, escapes and all.
    pub path: &'a str,
    /// The raw query string, without the `?` (empty when there is none).
    pub query: &'a str,
    /// The headers; repeated headers keep their order. Over HTTP/2 the caller must put
    /// the `:authority` into `host`, since that is what signers sign.
    pub headers: &'a HeaderMap,
    /// The body, or what the caller knows of it.
    pub body: Body<'a>,
}

/// The request body as far as the verifier needs it.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// The whole body.
    Bytes(&'a [u8]),
    /// The SHA-256 of the whole body, computed by the caller while buffering it.
    Sha256([u8; 32]),
    /// The body is still to come: only valid for chunk-signed (`STREAMING-...`) and
    /// unsigned payloads, which are checked as they stream.
    Streaming,
}

/// AWS's S3 services: S3 path rules by default, and `UNSIGNED-PAYLOAD` in presigned URLs.
pub const S3_SERVICES: [&str; 3] = ["s3", "s3-object-lambda", "s3express"];

/// Accepted scopes, time window and limits, fixed when the gateway loads its config.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Regions a credential scope may name (SigV4a: the region set must cover one).
    pub regions: Vec<String>,
    /// Services a credential scope may name.
    pub services: Vec<String>,
    /// Services whose paths are signed S3's way: as sent, encoded once, not normalized
    /// (default `s3`, `s3-object-lambda`, `s3express`). Every other service gets the
    /// normalized, double-encoded path.
    pub s3_style_services: Vec<String>,
    /// How far the request time may be from `now`, in seconds (default 300).
    pub max_skew_secs: i64,
    /// Headers that must be signed whenever present, beyond the ones SigV4 itself
    /// requires (`host`, `x-amz-date`, `x-amz-security-token`, `x-amz-content-sha256`).
    /// Names match ignoring case.
    pub required_signed_headers: Vec<String>,
    /// Input limits.
    pub limits: Limits,
}

impl Policy {
    /// A policy accepting these regions and services, with the default window and limits.
    pub fn new<R: Into<String>, S: Into<String>>(
        regions: impl IntoIterator<Item = R>,
        services: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            regions: regions.into_iter().map(Into::into).collect(),
            services: services.into_iter().map(Into::into).collect(),
            s3_style_services: S3_SERVICES.map(String::from).to_vec(),
            max_skew_secs: 300,
            required_signed_headers: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// Bounds on the parts of a request the verifier walks, so no input costs it unbounded
/// work or memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most headers `SignedHeaders` may name.
    pub max_signed_headers: usize,
    /// Most query parameters a request may carry.
    pub max_query_params: usize,
    /// Largest chunk a streaming body may declare (the chunk is held until its signature
    /// is checked).
    pub max_chunk_size: usize,
    /// Signing keys kept per kind in the derived-key cache.
    pub key_cache_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_signed_headers: 64,
            max_query_params: 512,
            max_chunk_size: 1 << 20,
            key_cache_capacity: 4096,
        }
    }
}

/// What the identity stage knows of the caller's key.
#[derive(Clone, Copy, Debug)]
pub struct Credential<'a> {
    /// The secret access key.
    pub secret: &'a super::Secret,
    /// When session credentials stop being valid (Unix seconds); `None` for long-term keys.
    pub expires_at: Option<i64>,
    /// Whether this caller may send `UNSIGNED-PAYLOAD` with a non-empty body.
    pub allow_unsigned_payload: bool,
}
