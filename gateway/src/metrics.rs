//! SKELETON (interface only; the metrics helper replaces this file).
#![allow(missing_docs, dead_code, unused_variables)]
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Request,
    Verify,
    Authorize,
    Upstream,
}

#[derive(Default)]
pub struct Metrics;

impl Metrics {
    pub fn new() -> Metrics {
        Metrics
    }
    pub fn request(&self, caller: &str, target: &str, decision: &str, code: &str) {}
    pub fn observe(&self, stage: Stage, elapsed: Duration) {}
    pub fn sts(&self, action: &str, role: &str, code: &str) {}
    pub fn tls_handshake_error(&self, reason: &'static str) {}
    pub fn set_reload(&self, what: &str, reloads: u64, failures: u64, last_success_unix: i64) {}
    pub fn set_audit(&self, depth: usize, capacity: usize, dropped: u64, written: u64, write_errors: u64) {}
    pub fn render(&self) -> String {
        String::new()
    }
}
