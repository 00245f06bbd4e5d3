//! The audit log: one JSON line per audited request, written off the request path.
//!
//! A request takes a [`Slot`] from the [`Auditor`] when it starts and sends its
//! [`AuditRecord`] through it when it ends. Records go through a bounded queue to a
//! writer thread (`audit-writer`) that serializes them and writes them to the sink:
//! stdout, or a file rotated by size ([`AuditConfig::max_file_bytes`],
//! [`AuditConfig::max_files`]). Nothing on the request path ever waits for I/O.
//!
//! When the queue is full the configured [`OnFull`] policy applies: drop the record
//! and count it (the default), or fail closed, where [`Auditor::reserve`] refuses and
//! the caller answers 503 rather than serve a request it could not audit. Either way
//! the loss is counted ([`Auditor::dropped`]) and logged, at most once a second.

pub mod record;

mod file;

pub use record::{AuditRecord, Decision, EventType, StsDetails, Timings, UserIdentity};

use serde::Deserialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The default [`AuditConfig::max_file_bytes`]: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 << 20;
/// The smallest [`AuditConfig::max_file_bytes`] accepted.
pub const MIN_FILE_BYTES: u64 = 4096;
/// The default [`AuditConfig::max_files`].
pub const DEFAULT_MAX_FILES: u32 = 10;
/// The largest [`AuditConfig::max_files`] accepted (each rotation renames them all).
pub const MAX_MAX_FILES: u32 = 1000;
/// The default [`AuditConfig::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// The largest [`AuditConfig::queue_capacity`] accepted.
pub const MAX_QUEUE_CAPACITY: usize = 1_000_000;

/// How long [`Auditor::flush`] waits at most.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The most records the writer takes before it flushes the sink.
const MAX_BATCH: usize = 1024;
/// After a record, the writer sleeps this long and then takes everything queued
/// meanwhile, instead of waiting on the queue: under load, senders then never have to
/// wake it (a futex call per request) and the sink gets one write per batch, not per
/// record. Records reach the sink within about this time.
const LINGER: Duration = Duration::from_millis(2);
/// How often drops and write errors are logged at most, in milliseconds.
const LOG_INTERVAL_MS: u64 = 1000;

/// Where audit records go.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuditSink {
    /// Nowhere: no records are kept.
    Off,
    /// Standard output, one JSON object per line (the default).
    #[default]
    Stdout,
    /// A file ([`AuditConfig::path`]), rotated by size.
    File,
}

/// What happens to a request when the audit queue is full.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Serve the request; its record is dropped and counted (the default).
    #[default]
    Drop,
    /// Refuse the request (503) rather than serve it unaudited.
    FailClosed,
}

/// The `[audit]` table of the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Where records go: `off`, `stdout` (the default) or `file`.
    pub sink: AuditSink,
    /// The live audit file, when `sink = "file"` (required then); its directory must
    /// exist. A relative path is relative to the config file's directory.
    pub path: Option<PathBuf>,
    /// The live file is rotated before a record would take it past this many bytes
    /// (default 100 MiB, at least 4096).
    pub max_file_bytes: u64,
    /// How many rotated files (`audit.log.1` .. `audit.log.N`, newest first) are kept
    /// (default 10, 1 to 1000).
    pub max_files: u32,
    /// How many records may wait for the writer (default 10 000, 1 to 1 000 000).
    pub queue_capacity: usize,
    /// What happens when the queue is full: `drop` (the default) or `fail_closed`.
    pub on_full: OnFull,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: AuditSink::Stdout,
            path: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_files: DEFAULT_MAX_FILES,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            on_full: OnFull::Drop,
        }
    }
}

impl AuditConfig {
    /// Problems, as (key name to locate the line, reason a person can act on). Empty = valid.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.sink == AuditSink::File {
            match &self.path {
                None => problems.push((
                    "sink",
                    "sink = \"file\" needs a path, e.g. path = \"/var/log/gateway/audit.log\""
                        .to_string(),
                )),
                Some(path) => {
                    if let Some(reason) = path_problem(path) {
                        problems.push(("path", reason));
                    }
                }
            }
        }
        if self.max_file_bytes < MIN_FILE_BYTES {
            problems.push((
                "max_file_bytes",
                format!(
                    "max_file_bytes must be at least {MIN_FILE_BYTES} (it is {})",
                    self.max_file_bytes
                ),
            ));
        }
        if !(1..=MAX_MAX_FILES).contains(&self.max_files) {
            problems.push((
                "max_files",
                format!(
                    "max_files must be 1 to {MAX_MAX_FILES} (it is {}): the number of \
                     rotated files kept",
                    self.max_files
                ),
            ));
        }
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            problems.push((
                "queue_capacity",
                format!(
                    "queue_capacity must be 1 to {MAX_QUEUE_CAPACITY} (it is {})",
                    self.queue_capacity
                ),
            ));
        }
        problems
    }

    /// Resolves a relative `path` against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.path
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
}

/// Why `path` cannot be the audit file, if it cannot.
fn path_problem(path: &Path) -> Option<String> {
    if path.file_name().is_none() {
        return Some(format!("path `{}` does not name a file", path.display()));
    }
    if path.is_dir() {
        return Some(format!(
            "path `{}` is a directory; name a file in it, e.g. `{}`",
            path.display(),
            path.join("audit.log").display()
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Some(format!(
            "path `{}`: the directory `{}` does not exist; create it (writable by \
             the gateway) or choose another",
            path.display(),
            dir.display()
        ));
    }
    None
}

/// The audit queue and its writer.
pub struct Auditor {
    policy: OnFull,
    counters: Arc<Counters>,
    /// `None` when the sink is off.
    shared: Option<Arc<Shared>>,
}

/// A place in the audit queue for one record, taken when a request starts and used
/// (or dropped) when it ends.
pub struct Slot(SlotKind);

enum SlotKind {
    /// The sink is off: sending does nothing.
    Off,
    /// Drop policy: room is looked for when the record is sent.
    Later(Arc<Shared>),
    /// Fail-closed policy: room was set aside when the slot was taken.
    Reserved(Reservation),
}

/// The audit queue had no room (fail-closed policy): the request must be refused.
#[derive(Debug)]
pub struct QueueFull;

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the audit queue is full")
    }
}

impl std::error::Error for QueueFull {}

/// What senders share: the queue's sending end and the counters. The writer holds
/// only the counters, so the queue closes (and the writer ends) once the [`Auditor`]
/// and every [`Slot`] are gone.
struct Shared {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

enum Msg {
    Record(Box<AuditRecord>),
    /// Everything queued before this is written and flushed; then the sender is told.
    Flush(tokio::sync::oneshot::Sender<()>),
}

struct Counters {
    capacity: usize,
    policy: OnFull,
    /// Records queued or reserved; at most `capacity`.
    queued: AtomicUsize,
    dropped: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    /// False once the writer thread has ended.
    writer_alive: AtomicBool,
    /// True from a failed write until the sink works again (a batch written without
    /// error, or the writer's once-a-second probe reopening it): fail-closed mode
    /// refuses requests meanwhile, since their records could not be kept.
    sink_failing: AtomicBool,
    drop_log: RateLimit,
    error_log: RateLimit,
    epoch: Instant,
}

impl Counters {
    /// Takes one place in the queue, if there is one.
    fn try_acquire(&self) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives one place back.
    fn release(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a record lost to a full queue (or a writer that has gone).
    fn note_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.drop_log.add();
        self.report_drops();
    }

    /// Logs the drops not yet logged, unless that was done less than a second ago.
    fn report_drops(&self) {
        let Some(n) = self.drop_log.due(self.now_ms()) else {
            return;
        };
        let total = self.dropped.load(Ordering::Relaxed);
        match self.policy {
            OnFull::Drop => tracing::warn!(
                dropped = n,
                dropped_total = total,
                capacity = self.capacity,
                "audit queue full: {n} audit record(s) dropped since the last warning"
            ),
            OnFull::FailClosed => tracing::warn!(
                dropped = n,
                dropped_total = total,
                capacity = self.capacity,
                "audit queue full: {n} request(s) refused or left unaudited since the last \
                 warning (on_full = fail_closed)"
            ),
        }
    }

    /// Counts a sink error and logs it, at most once a second.
    fn note_write_error(&self, sink: &str, e: &io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        self.sink_failing.store(true, Ordering::Release);
        self.error_log.add();
        if let Some(n) = self.error_log.due(self.now_ms()) {
            tracing::error!(
                sink,
                errors = n,
                errors_total = self.write_errors.load(Ordering::Relaxed),
                "audit sink write failed ({n} error(s) since the last report; records may be \
                 lost): {e}"
            );
        }
    }
}

/// A count of events to log, at most once per [`LOG_INTERVAL_MS`].
struct RateLimit {
    unreported: AtomicU64,
    /// The earliest time (ms since `Counters::epoch`) the next report may be made.
    next_ms: AtomicU64,
}

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit {
            unreported: AtomicU64::new(0),
            next_ms: AtomicU64::new(0),
        }
    }

    fn add(&self) {
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }

    /// The events to report now, if any and if the last report is old enough; one
    /// caller wins when several race.
    fn due(&self, now_ms: u64) -> Option<u64> {
        if self.unreported.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(LOG_INTERVAL_MS),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return None;
        }
        let n = self.unreported.swap(0, Ordering::AcqRel);
        (n > 0).then_some(n)
    }
}

/// One place set aside in the queue; given back when dropped unless the record went in.
struct Reservation {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.shared.counters.release();
        }
    }
}

/// Test-only: holds the writer back until released, so a queue fills deterministically.
#[derive(Default)]
struct Gate(#[cfg(test)] Option<mpsc::Receiver<()>>);

impl Gate {
    fn wait(self) {
        #[cfg(test)]
        if let Some(rx) = self.0 {
            let _ = rx.recv();
        }
    }
}

impl Auditor {
    /// Opens the sink (file: create/append, error string naming the path if it cannot) and starts the writer.
    pub fn start(config: &AuditConfig) -> Result<Arc<Auditor>, String> {
        Self::start_gated(config, Gate::default())
    }

    fn start_gated(config: &AuditConfig, gate: Gate) -> Result<Arc<Auditor>, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|(_, reason)| format!("[audit] {reason}"))
                .collect::<Vec<_>>()
                .join("; "));
        }
        let capacity = match config.sink {
            AuditSink::Off => 0,
            AuditSink::Stdout | AuditSink::File => config.queue_capacity,
        };
        let counters = Arc::new(Counters {
            capacity,
            policy: config.on_full,
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            writer_alive: AtomicBool::new(false),
            sink_failing: AtomicBool::new(false),
            drop_log: RateLimit::new(),
            error_log: RateLimit::new(),
            epoch: Instant::now(),
        });
        let sink = match (config.sink, &config.path) {
            (AuditSink::Off, _) => {
                return Ok(Arc::new(Auditor {
                    policy: config.on_full,
                    counters,
                    shared: None,
                }));
            }
            (AuditSink::Stdout, _) => Sink::Stdout(LineBuffer::default()),
            (AuditSink::File, Some(path)) => Sink::File(
                file::RotatingFile::open(path, config.max_file_bytes, config.max_files)
                    .map_err(|e| format!("[audit] {e}"))?,
            ),
            (AuditSink::File, None) => {
                return Err("[audit] sink = \"file\" needs a path".to_string());
            }
        };
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            rx,
            sink_name: sink.name(),
            sink,
            counters: Arc::clone(&counters),
            line: Vec::with_capacity(1024),
            errors_at_last_flush: 0,
        };
        counters.writer_alive.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("audit-writer".to_string())
            .spawn(move || {
                gate.wait();
                writer.run();
            });
        if let Err(e) = spawned {
            counters.writer_alive.store(false, Ordering::Release);
            return Err(format!("cannot start the audit writer thread: {e}"));
        }
        Ok(Arc::new(Auditor {
            policy: config.on_full,
            shared: Some(Arc::new(Shared {
                tx,
                counters: Arc::clone(&counters),
            })),
            counters,
        }))
    }

    /// Called at the START of every audited request. Drop policy: never fails (no
    /// reservation is held; the record is queued when sent, and counted as dropped if
    /// the queue is full then). Fail-closed policy: sets a queue place aside now, so
    /// the record is guaranteed room; `Err(QueueFull)` (counted as a drop) if there is
    /// none, and the caller answers 503. Sink off: always `Ok`, and sending does nothing.
    pub fn reserve(&self) -> Result<Slot, QueueFull> {
        let Some(shared) = &self.shared else {
            return Ok(Slot(SlotKind::Off));
        };
        match self.policy {
            OnFull::Drop => Ok(Slot(SlotKind::Later(Arc::clone(shared)))),
            OnFull::FailClosed => {
                let c = &self.counters;
                if c.writer_alive.load(Ordering::Acquire)
                    && !c.sink_failing.load(Ordering::Acquire)
                    && c.try_acquire()
                {
                    Ok(Slot(SlotKind::Reserved(Reservation {
                        shared: Arc::clone(shared),
                        armed: true,
                    })))
                } else {
                    c.note_drop();
                    Err(QueueFull)
                }
            }
        }
    }

    /// What happens when the queue is full.
    pub fn policy(&self) -> OnFull {
        self.policy
    }

    /// Records queued, including places set aside by fail-closed slots (a gauge).
    pub fn depth(&self) -> usize {
        self.counters.queued.load(Ordering::Relaxed)
    }

    /// How many records the queue holds at most (0 when the sink is off).
    pub fn capacity(&self) -> usize {
        self.counters.capacity
    }

    /// Records lost because the queue was full (or requests refused for it, when
    /// failing closed); a monotonic counter.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records written to the sink and flushed.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Failed I/O operations on the sink (a failed write can lose the batch it was
    /// writing); a monotonic counter.
    pub fn write_errors(&self) -> u64 {
        self.counters.write_errors.load(Ordering::Relaxed)
    }

    /// Waits (at most 5 s) until every record queued before the call is written and
    /// flushed; used at shutdown and by tests.
    pub async fn flush(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if shared.tx.send(Msg::Flush(tx)).is_err() {
            return;
        }
        if tokio::time::timeout(FLUSH_TIMEOUT, rx).await.is_err() {
            tracing::warn!(
                queued = self.depth(),
                "audit flush gave up after {} s with records still queued",
                FLUSH_TIMEOUT.as_secs()
            );
        }
    }
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("policy", &self.policy)
            .field("enabled", &self.shared.is_some())
            .field("depth", &self.depth())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// Queues the record; never blocks, never panics.
    pub fn send(self, record: AuditRecord) {
        match self.0 {
            SlotKind::Off => {}
            SlotKind::Later(shared) => {
                let c = &shared.counters;
                if !c.try_acquire() {
                    c.note_drop();
                } else if shared.tx.send(Msg::Record(Box::new(record))).is_err() {
                    c.release();
                    c.note_drop();
                }
            }
            SlotKind::Reserved(mut r) => {
                if r.shared.tx.send(Msg::Record(Box::new(record))).is_ok() {
                    // The writer gives the place back when it takes the record.
                    r.armed = false;
                } else {
                    r.shared.counters.note_drop();
                }
            }
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            SlotKind::Off => "Slot(off)",
            SlotKind::Later(_) => "Slot(unreserved)",
            SlotKind::Reserved(_) => "Slot(reserved)",
        })
    }
}

/// Where the writer puts lines.
enum Sink {
    Stdout(LineBuffer),
    File(file::RotatingFile),
}

impl Sink {
    /// How log messages name the sink.
    fn name(&self) -> String {
        match self {
            Sink::Stdout(_) => "stdout".to_string(),
            Sink::File(f) => f.path().display().to_string(),
        }
    }

    fn write_line(&mut self, line: &[u8], report: &mut dyn FnMut(io::Error)) {
        match self {
            Sink::Stdout(b) => {
                b.push(line);
                if b.bytes.len() >= 64 * 1024 {
                    b.write_to_stdout(report);
                }
            }
            Sink::File(f) => f.write_line(line, report),
        }
    }

    /// Writes out what is buffered; returns the records that reached the sink since
    /// the last call.
    fn flush(&mut self, report: &mut dyn FnMut(io::Error)) -> u64 {
        match self {
            Sink::Stdout(b) => {
                b.write_to_stdout(report);
                std::mem::take(&mut b.flushed)
            }
            Sink::File(f) => f.flush(report),
        }
    }
}

/// Lines for stdout, written a batch at a time under one lock.
#[derive(Default)]
struct LineBuffer {
    bytes: Vec<u8>,
    records: u64,
    flushed: u64,
}

impl LineBuffer {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.records += 1;
    }

    fn write_to_stdout(&mut self, report: &mut dyn FnMut(io::Error)) {
        if self.bytes.is_empty() {
            return;
        }
        let mut out = io::stdout().lock();
        let result = out.write_all(&self.bytes).and_then(|()| out.flush());
        self.bytes.clear();
        match result {
            Ok(()) => self.flushed += std::mem::take(&mut self.records),
            Err(e) => {
                self.records = 0;
                report(e);
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    rx: mpsc::Receiver<Msg>,
    sink: Sink,
    sink_name: String,
    counters: Arc<Counters>,
    /// The line being serialized, reused.
    line: Vec<u8>,
    /// `write_errors` when the sink was last flushed.
    errors_at_last_flush: u64,
}

/// Marks the writer as gone when it ends, however it ends.
struct AliveGuard(Arc<Counters>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.writer_alive.store(false, Ordering::Release);
    }
}

impl Writer {
    /// Writes batches until every sender is gone, then flushes and ends.
    fn run(mut self) {
        let _alive = AliveGuard(Arc::clone(&self.counters));
        loop {
            // The timeout lets drops be logged even when no record arrives after them.
            let first = match self.rx.recv_timeout(Duration::from_millis(LOG_INTERVAL_MS)) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.counters.report_drops();
                    self.probe();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let flushing = matches!(first, Msg::Flush(_));
            self.handle(first);
            // Linger while records keep coming (bounded: at most MAX_BATCH between
            // flushes); a flush request is answered at once.
            let mut batch = 1;
            while !flushing && batch < MAX_BATCH {
                std::thread::sleep(LINGER);
                let mut got = 0;
                while batch < MAX_BATCH {
                    match self.rx.try_recv() {
                        Ok(msg) => {
                            got += 1;
                            batch += 1;
                            self.handle(msg);
                        }
                        Err(_) => break,
                    }
                }
                if got == 0 {
                    break;
                }
            }
            self.flush();
            self.counters.report_drops();
        }
        self.flush();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(record) => {
                self.counters.release();
                self.line.clear();
                let counters = &self.counters;
                let sink_name = &self.sink_name;
                let mut report = |e: io::Error| counters.note_write_error(sink_name, &e);
                match serde_json::to_writer(&mut self.line, &*record) {
                    Ok(()) => {
                        self.line.push(b'\n');
                        self.sink.write_line(&self.line, &mut report);
                    }
                    Err(e) => report(io::Error::other(e)),
                }
            }
            Msg::Flush(done) => {
                self.flush();
                let _ = done.send(());
            }
        }
    }

    fn flush(&mut self) {
        let counters = &self.counters;
        let sink_name = &self.sink_name;
        let n = self
            .sink
            .flush(&mut |e| counters.note_write_error(sink_name, &e));
        counters.written.fetch_add(n, Ordering::Relaxed);
        // Healthy again only if everything since the last flush went without error.
        let errors = counters.write_errors.load(Ordering::Relaxed);
        if n > 0 && errors == self.errors_at_last_flush {
            counters.sink_failing.store(false, Ordering::Release);
        }
        self.errors_at_last_flush = errors;
    }

    /// With the sink failing and (in fail-closed mode) no records arriving to try it
    /// with, checks whether it can be opened again.
    fn probe(&mut self) {
        if !self.counters.sink_failing.load(Ordering::Acquire) {
            return;
        }
        let ok = match &mut self.sink {
            Sink::Stdout(b) => b.bytes.is_empty(),
            Sink::File(f) => f.reopen().is_ok(),
        };
        if ok {
            tracing::info!(sink = %self.sink_name, "audit sink writable again");
            self.counters.sink_failing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
pub(crate) mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A directory under the system temp dir, removed when dropped.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "gateway-audit-{name}-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An auditor whose writer is held back until the returned sender is used or dropped.
    fn start_paused(config: &AuditConfig) -> (Arc<Auditor>, mpsc::Sender<()>) {
        let (go, gate) = mpsc::channel();
        (Auditor::start_gated(config, Gate(Some(gate))).unwrap(), go)
    }

    fn record(i: usize) -> AuditRecord {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut r = AuditRecord::new(
            EventType::GatewayRequest,
            &format!("req-{i}"),
            1_795_334_400_123,
            peer,
            &http::Method::GET,
            &http::Uri::from_static("/orders/1?X-Amz-Signature=abc"),
        );
        r.status = 200;
        r.user_agent = Some("aws-sdk-rust/1.0 os/linux".into());
        r.user_identity.access_key_id = Some("AKIDEXAMPLE".into());
        r.user_identity.principal_arn = Some("arn:aws:iam::123456789012:role/orders".into());
        r
    }

    fn file_config(dir: &TempDir) -> AuditConfig {
        AuditConfig {
            sink: AuditSink::File,
            path: Some(dir.path().join("audit.log")),
            ..AuditConfig::default()
        }
    }

    /// The request ids in a file, checking every line is a JSON audit record.
    fn request_ids(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["eventVersion"], record::EVENT_VERSION);
                assert_eq!(v["eventType"], "GatewayRequest");
                assert_eq!(v["path"], "/orders/1?X-Amz-Signature=REDACTED");
                v["requestID"].as_str().unwrap().to_string()
            })
            .collect()
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("req-{i}")).collect()
    }

    #[tokio::test]
    async fn lines_are_json_records_and_flush_waits_for_them() {
        let dir = TempDir::new("lines");
        let a = Auditor::start(&file_config(&dir)).unwrap();
        assert_eq!(a.policy(), OnFull::Drop);
        assert_eq!(a.capacity(), DEFAULT_QUEUE_CAPACITY);
        for i in 0..50 {
            a.reserve().unwrap().send(record(i));
        }
        a.flush().await;
        assert_eq!(request_ids(&dir.path().join("audit.log")), ids(0..50));
        assert_eq!((a.written(), a.dropped(), a.write_errors()), (50, 0, 0));
        assert_eq!(a.depth(), 0);
    }

    #[tokio::test]
    async fn an_existing_file_is_appended_to() {
        let dir = TempDir::new("reopen");
        let config = file_config(&dir);
        let a = Auditor::start(&config).unwrap();
        a.reserve().unwrap().send(record(0));
        a.flush().await;
        drop(a);
        let b = Auditor::start(&config).unwrap();
        b.reserve().unwrap().send(record(1));
        b.flush().await;
        assert_eq!(request_ids(&dir.path().join("audit.log")), ids(0..2));
    }

    #[tokio::test]
    async fn rotation_keeps_max_files_each_within_the_limit() {
        let dir = TempDir::new("rotate");
        let config = AuditConfig {
            max_file_bytes: MIN_FILE_BYTES,
            max_files: 3,
            ..file_config(&dir)
        };
        let a = Auditor::start(&config).unwrap();
        let n = 200;
        for i in 0..n {
            a.reserve().unwrap().send(record(i));
        }
        a.flush().await;
        assert_eq!(a.written(), n as u64);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
        );
        // Oldest first, the kept files hold the newest records, in order, with none
        // missing between them.
        let mut kept = Vec::new();
        for name in ["audit.log.3", "audit.log.2", "audit.log.1", "audit.log"] {
            let path = dir.path().join(name);
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len <= MIN_FILE_BYTES, "{name} has {len} bytes");
            kept.extend(request_ids(&path));
        }
        let first: usize = kept[0].trim_start_matches("req-").parse().unwrap();
        assert_eq!(kept, ids(first..n));
        // Rotated files are full: the next record would not have fitted.
        let line = std::fs::read_to_string(dir.path().join("audit.log"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .len() as u64;
        for name in ["audit.log.3", "audit.log.2", "audit.log.1"] {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(
                len + line + 10 > MIN_FILE_BYTES,
                "{name} has only {len} bytes"
            );
        }
    }

    #[tokio::test]
    async fn fail_closed_refuses_when_the_queue_is_full() {
        let dir = TempDir::new("closed");
        let config = AuditConfig {
            queue_capacity: 1,
            on_full: OnFull::FailClosed,
            ..file_config(&dir)
        };
        let a = Auditor::start(&config).unwrap();
        let held = a.reserve().unwrap();
        assert_eq!(a.depth(), 1);
        assert!(matches!(a.reserve(), Err(QueueFull)));
        assert_eq!(a.dropped(), 1);
        assert!(a.reserve().is_err());
        assert_eq!(a.dropped(), 2);
        held.send(record(0));
        a.flush().await;
        assert_eq!((a.written(), a.depth()), (1, 0));
        // A slot dropped unused gives its place back.
        let unused = a.reserve().unwrap();
        assert!(a.reserve().is_err());
        drop(unused);
        assert_eq!(a.depth(), 0);
        a.reserve().unwrap().send(record(1));
        a.flush().await;
        assert_eq!(request_ids(&dir.path().join("audit.log")), ids(0..2));
        assert_eq!((a.written(), a.dropped()), (2, 3));
    }

    #[tokio::test]
    async fn the_drop_policy_counts_what_does_not_fit() {
        let dir = TempDir::new("drop");
        let config = AuditConfig {
            queue_capacity: 3,
            ..file_config(&dir)
        };
        let (a, go) = start_paused(&config);
        // Taking a slot never fails under the drop policy; room is looked for at send.
        let slots: Vec<Slot> = (0..5).map(|_| a.reserve().unwrap()).collect();
        assert_eq!(a.depth(), 0);
        for (i, slot) in slots.into_iter().enumerate() {
            slot.send(record(i));
        }
        assert_eq!((a.depth(), a.dropped()), (3, 2));
        go.send(()).unwrap();
        a.flush().await;
        assert_eq!((a.written(), a.dropped(), a.depth()), (3, 2, 0));
        assert_eq!(request_ids(&dir.path().join("audit.log")), ids(0..3));
        // Room again once the writer has caught up.
        a.reserve().unwrap().send(record(3));
        a.flush().await;
        assert_eq!((a.written(), a.dropped()), (4, 2));
    }

    #[tokio::test]
    async fn the_off_sink_takes_everything_and_keeps_nothing() {
        let a = Auditor::start(&AuditConfig {
            sink: AuditSink::Off,
            on_full: OnFull::FailClosed,
            ..AuditConfig::default()
        })
        .unwrap();
        for i in 0..10 {
            a.reserve().unwrap().send(record(i));
        }
        a.flush().await;
        assert_eq!(
            (a.written(), a.dropped(), a.depth(), a.capacity()),
            (0, 0, 0, 0)
        );
    }

    #[tokio::test]
    async fn records_queued_when_the_auditor_goes_are_still_written() {
        let dir = TempDir::new("shutdown");
        let a = Auditor::start(&file_config(&dir)).unwrap();
        let counters = Arc::clone(&a.counters);
        let late = a.reserve().unwrap();
        for i in 0..10 {
            a.reserve().unwrap().send(record(i));
        }
        drop(a);
        // A slot outliving the auditor still works; once it is gone the writer ends.
        late.send(record(10));
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.writer_alive.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the writer did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(counters.written.load(Ordering::Relaxed), 11);
        assert_eq!(request_ids(&dir.path().join("audit.log")), ids(0..11));
    }

    #[tokio::test]
    async fn write_errors_are_counted_and_the_writer_keeps_going() {
        let dir = TempDir::new("errors");
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let config = AuditConfig {
            path: Some(sub.join("audit.log")),
            max_file_bytes: MIN_FILE_BYTES,
            ..file_config(&dir)
        };
        let a = Auditor::start(&config).unwrap();
        a.reserve().unwrap().send(record(0));
        a.flush().await;
        std::fs::remove_dir_all(&sub).unwrap();
        // Enough to need a rotation, which cannot open a fresh file.
        for i in 1..30 {
            a.reserve().unwrap().send(record(i));
        }
        a.flush().await;
        assert!(a.write_errors() > 0);
        std::fs::create_dir(&sub).unwrap();
        a.reserve().unwrap().send(record(30));
        a.flush().await;
        assert_eq!(request_ids(&sub.join("audit.log")), ids(30..31));
    }

    #[tokio::test]
    async fn fail_closed_refuses_while_the_sink_fails_and_recovers_after() {
        let dir = TempDir::new("failing");
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let config = AuditConfig {
            path: Some(sub.join("audit.log")),
            max_file_bytes: MIN_FILE_BYTES,
            on_full: OnFull::FailClosed,
            ..file_config(&dir)
        };
        let a = Auditor::start(&config).unwrap();
        a.reserve().unwrap().send(record(0));
        a.flush().await;
        std::fs::remove_dir_all(&sub).unwrap();
        // Enough to need a rotation, which cannot open a fresh file.
        for i in 1..30 {
            if let Ok(slot) = a.reserve() {
                slot.send(record(i));
            }
        }
        a.flush().await;
        assert!(a.write_errors() > 0);
        // The queue has room, but nothing could be kept: refuse.
        let dropped = a.dropped();
        assert!(a.reserve().is_err());
        assert_eq!(a.dropped(), dropped + 1);
        // Writable again: the writer's probe notices within a tick or two.
        std::fs::create_dir(&sub).unwrap();
        let mut reopened = false;
        for _ in 0..100 {
            if a.reserve().is_ok() {
                reopened = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(reopened, "the sink was not probed again");
        a.reserve().unwrap().send(record(99));
        a.flush().await;
        assert!(request_ids(&sub.join("audit.log")).contains(&"req-99".to_string()));
    }

    #[cfg(unix)]
    #[test]
    fn start_names_a_file_it_cannot_open() {
        let dir = TempDir::new("unopenable");
        // Passes validation (the directory exists) but cannot be created: a link into
        // a directory that does not exist.
        let path = dir.path().join("audit.log");
        std::os::unix::fs::symlink(dir.path().join("gone").join("audit.log"), &path).unwrap();
        let e = Auditor::start(&file_config(&dir)).map(|_| ()).unwrap_err();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.starts_with("[audit] cannot open"), "{e}");
    }

    #[test]
    fn the_config_has_defaults_and_refuses_unknown_keys() {
        let c: AuditConfig = toml::from_str("").unwrap();
        assert_eq!(c.sink, AuditSink::Stdout);
        assert_eq!(c.max_file_bytes, 100 << 20);
        assert_eq!((c.max_files, c.queue_capacity), (10, 10_000));
        assert_eq!(c.on_full, OnFull::Drop);
        assert!(c.validate().is_empty());
        let mut c: AuditConfig = toml::from_str(
            "sink = \"file\"\npath = \"logs/audit.log\"\non_full = \"fail_closed\"\nmax_files = 3",
        )
        .unwrap();
        assert_eq!(
            (c.sink, c.on_full, c.max_files),
            (AuditSink::File, OnFull::FailClosed, 3)
        );
        c.resolve_paths(Path::new("/etc/gateway"));
        assert_eq!(c.path, Some(PathBuf::from("/etc/gateway/logs/audit.log")));
        c.resolve_paths(Path::new("/elsewhere"));
        assert_eq!(c.path, Some(PathBuf::from("/etc/gateway/logs/audit.log")));
        assert!(toml::from_str::<AuditConfig>("sinks = \"file\"").is_err());
        assert!(toml::from_str::<AuditConfig>("on_full = \"block\"").is_err());
    }

    #[test]
    fn validate_explains_each_problem() {
        let keys = |c: &AuditConfig| c.validate().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let file_without_path = AuditConfig {
            sink: AuditSink::File,
            ..AuditConfig::default()
        };
        let problems = file_without_path.validate();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "sink");
        assert!(problems[0].1.contains("needs a path"), "{}", problems[0].1);
        let e = Auditor::start(&file_without_path).map(|_| ()).unwrap_err();
        assert!(e.starts_with("[audit] sink = \"file\" needs a path"), "{e}");

        let bounds = AuditConfig {
            max_file_bytes: 100,
            max_files: 0,
            queue_capacity: 0,
            ..AuditConfig::default()
        };
        assert_eq!(
            keys(&bounds),
            ["max_file_bytes", "max_files", "queue_capacity"]
        );
        for (_, reason) in bounds.validate() {
            assert!(
                !reason.starts_with('[') && reason.contains("(it is "),
                "{reason}"
            );
        }
        let too_big = AuditConfig {
            max_files: MAX_MAX_FILES + 1,
            queue_capacity: MAX_QUEUE_CAPACITY + 1,
            ..AuditConfig::default()
        };
        assert_eq!(keys(&too_big), ["max_files", "queue_capacity"]);
        let at_limits = AuditConfig {
            max_file_bytes: MIN_FILE_BYTES,
            max_files: MAX_MAX_FILES,
            queue_capacity: MAX_QUEUE_CAPACITY,
            ..AuditConfig::default()
        };
        assert!(at_limits.validate().is_empty());

        let dir = TempDir::new("validate");
        let no_dir = AuditConfig {
            sink: AuditSink::File,
            path: Some(dir.path().join("missing").join("audit.log")),
            ..AuditConfig::default()
        };
        let problems = no_dir.validate();
        assert_eq!(keys(&no_dir), ["path"]);
        assert!(
            problems[0].1.contains("does not exist"),
            "{}",
            problems[0].1
        );
        let a_dir = AuditConfig {
            sink: AuditSink::File,
            path: Some(dir.path().to_path_buf()),
            ..AuditConfig::default()
        };
        assert!(a_dir.validate()[0].1.contains("is a directory"));
        // A path is only checked when the file sink is chosen.
        let unused = AuditConfig {
            sink: AuditSink::Stdout,
            ..no_dir
        };
        assert!(unused.validate().is_empty());
    }
}
