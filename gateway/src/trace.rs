//! SKELETON (interface only; the tracing helper replaces this file).
#![allow(missing_docs, dead_code, unused_variables)]
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    #[serde(default)]
    pub request_id_header: Option<String>,
    #[serde(default)]
    pub request_id_trusted_peers: Vec<String>,
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl TracingConfig {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

#[derive(Clone, Debug)]
pub struct TraceContext;

impl TraceContext {
    pub fn from_headers(headers: &http::HeaderMap) -> TraceContext {
        TraceContext
    }
    pub fn trace_id(&self) -> String {
        String::new()
    }
    pub fn attach(&mut self, span: &tracing::Span) {}
    pub fn inject(&self, headers: &mut http::HeaderMap) {}
}

#[derive(Clone, Debug)]
pub struct RequestIds;

impl RequestIds {
    pub fn new(config: &TracingConfig) -> Result<RequestIds, String> {
        Ok(RequestIds)
    }
    pub fn pick(&self, headers: &http::HeaderMap, peer: std::net::IpAddr) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
