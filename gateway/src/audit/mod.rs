//! SKELETON (interface only; the audit helper replaces this file).
#![allow(missing_docs, dead_code, unused_variables)]

pub mod record;

pub use record::{AuditRecord, Decision, EventType, StsDetails, Timings, UserIdentity};

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuditSink {
    Off,
    #[default]
    Stdout,
    File,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    #[default]
    Drop,
    FailClosed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: AuditSink,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub max_file_bytes: u64,
    #[serde(default)]
    pub max_files: u32,
    #[serde(default)]
    pub queue_capacity: usize,
    #[serde(default)]
    pub on_full: OnFull,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: AuditSink::Stdout,
            path: None,
            max_file_bytes: 100 << 20,
            max_files: 10,
            queue_capacity: 10_000,
            on_full: OnFull::Drop,
        }
    }
}

impl AuditConfig {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    pub fn resolve_paths(&mut self, base: &std::path::Path) {}
}

pub struct Auditor;
pub struct Slot;
#[derive(Debug)]
pub struct QueueFull;

impl Auditor {
    pub fn start(config: &AuditConfig) -> Result<Arc<Auditor>, String> {
        Ok(Arc::new(Auditor))
    }
    pub fn reserve(&self) -> Result<Slot, QueueFull> {
        Ok(Slot)
    }
    pub fn policy(&self) -> OnFull {
        OnFull::Drop
    }
    pub fn depth(&self) -> usize {
        0
    }
    pub fn capacity(&self) -> usize {
        0
    }
    pub fn dropped(&self) -> u64 {
        0
    }
    pub fn written(&self) -> u64 {
        0
    }
    pub fn write_errors(&self) -> u64 {
        0
    }
    pub async fn flush(&self) {}
}

impl Slot {
    pub fn send(self, record: AuditRecord) {}
}
