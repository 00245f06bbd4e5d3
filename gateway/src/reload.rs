//! Hot reload of the rules and credentials files: on SIGHUP and when a file changes
//! (polled, so it also works with Kubernetes ConfigMap symlink swaps). A new version
//! replaces the running one atomically, and only if it loads without errors; an
//! invalid file is logged with its errors and the running version keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// What a file looked like when last loaded: enough to notice a change cheaply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    hash: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    // FNV-1a: enough to tell versions apart; not a security boundary.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        hash,
    })
}

type Loader<T> = Box<dyn Fn(&Path) -> Result<T, String> + Send + Sync>;

/// The version last loaded, and a changed version waiting to be seen unchanged once
/// more: a file caught half-written can still be valid (a rules file cut before its
/// denies), so a change is loaded only when two polls in a row agree.
#[derive(Debug, Default)]
struct Stamps {
    loaded: Option<Stamp>,
    pending: Option<Stamp>,
}

/// A value loaded from a file, replaced atomically when the file changes.
pub struct Reloadable<T> {
    what: &'static str,
    path: PathBuf,
    load: Loader<T>,
    current: RwLock<Arc<T>>,
    stamp: Mutex<Stamps>,
    reloads: AtomicU64,
    failures: AtomicU64,
    /// Unix seconds of the last successful load.
    last_success: AtomicI64,
}

/// The outcome of a reload check.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file is unchanged.
    Unchanged,
    /// A new version is live.
    Reloaded,
    /// The new version was refused; the old one keeps serving. The errors, for logs.
    Refused(String),
}

impl<T> Reloadable<T> {
    /// Loads `path` with `load`; fails if the first load fails.
    pub fn new(
        what: &'static str,
        path: PathBuf,
        load: impl Fn(&Path) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let before = stamp(&path);
        let value = load(&path)?;
        Ok(Self {
            what,
            path,
            load: Box::new(load),
            current: RwLock::new(Arc::new(value)),
            stamp: Mutex::new(Stamps {
                loaded: before,
                pending: None,
            }),
            reloads: 0.into(),
            failures: 0.into(),
            last_success: unix_now().into(),
        })
    }

    /// The live version.
    pub fn get(&self) -> Arc<T> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// What this is (`rules`, `credentials`), for logs.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times a new version went live.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many times a new version was refused (the running version kept serving).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// When a version last loaded successfully (the initial load included), in Unix
    /// seconds.
    pub fn last_success_unix(&self) -> i64 {
        self.last_success.load(Ordering::Relaxed)
    }

    /// Reloads if the file changed and then stayed unchanged for one more check (or
    /// at once, with `force`: SIGHUP means the operator has finished writing).
    pub fn check(&self, force: bool) -> Outcome {
        let now = stamp(&self.path);
        let Ok(mut stamps) = self.stamp.lock() else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Outcome::Refused("internal lock poisoned".into());
        };
        if !force {
            if now == stamps.loaded {
                stamps.pending = None;
                return Outcome::Unchanged;
            }
            if stamps.pending != now || now.is_none() {
                stamps.pending = now;
                return Outcome::Unchanged;
            }
        }
        // Remember this version even if it is refused, so a bad file is reported
        // once, not on every poll; fixing it changes the stamp again.
        stamps.loaded = now;
        stamps.pending = None;
        match (self.load)(&self.path) {
            Ok(value) => {
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(value),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(value),
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.last_success.store(unix_now(), Ordering::Relaxed);
                Outcome::Reloaded
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Outcome::Refused(e)
            }
        }
    }
}

/// Seconds since the Unix epoch, now (0 if the clock is before it).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Something the watcher can reload, and whose reload history metrics can read.
pub trait Reload: Send + Sync {
    /// Reloads if changed (or always, with `force`) and logs the outcome.
    fn check_and_log(&self, force: bool) -> Outcome;

    /// What this is (`rules`, `credentials`); see [`Reloadable::what`].
    fn what(&self) -> &'static str;

    /// How many times a new version went live; see [`Reloadable::reloads`].
    fn reloads(&self) -> u64;

    /// How many times a new version was refused; see [`Reloadable::failures`].
    fn failures(&self) -> u64;

    /// Unix seconds of the last successful load; see [`Reloadable::last_success_unix`].
    fn last_success_unix(&self) -> i64;
}

impl<T: Send + Sync> Reload for Reloadable<T> {
    fn what(&self) -> &'static str {
        Reloadable::what(self)
    }

    fn reloads(&self) -> u64 {
        Reloadable::reloads(self)
    }

    fn failures(&self) -> u64 {
        Reloadable::failures(self)
    }

    fn last_success_unix(&self) -> i64 {
        Reloadable::last_success_unix(self)
    }

    fn check_and_log(&self, force: bool) -> Outcome {
        let outcome = self.check(force);
        match &outcome {
            Outcome::Unchanged => {}
            Outcome::Reloaded => tracing::info!(
                what = self.what,
                file = %self.path.display(),
                "reloaded"
            ),
            Outcome::Refused(errors) => tracing::error!(
                what = self.what,
                file = %self.path.display(),
                errors = %errors,
                "refused the new version; the running version keeps serving"
            ),
        }
        outcome
    }
}

/// Polls every `interval` and reloads on SIGHUP, until `shutdown` resolves.
pub async fn watch(
    items: Vec<Arc<dyn Reload>>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        #[cfg(unix)]
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup_recv = std::future::pending::<Option<()>>();
        let force = tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => false,
            _ = hup_recv => {
                tracing::info!("SIGHUP: reloading rules and credentials");
                true
            }
        };
        for item in &items {
            item.check_and_log(force);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_version_never_replaces_a_good_one() {
        let dir = std::env::temp_dir().join(format!("reload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.txt");
        std::fs::write(&path, "1").unwrap();
        let r = Reloadable::new("number", path.clone(), |p| {
            std::fs::read_to_string(p)
                .map_err(|e| e.to_string())?
                .trim()
                .parse::<u32>()
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .unwrap();
        assert_eq!(*r.get(), 1);
        assert_eq!(r.check(false), Outcome::Unchanged);
        std::fs::write(&path, "22").unwrap();
        assert_eq!(
            r.check(false),
            Outcome::Unchanged,
            "seen once: maybe half-written"
        );
        assert_eq!(r.check(false), Outcome::Reloaded, "seen twice: settled");
        assert_eq!(*r.get(), 22);
        std::fs::write(&path, "not a number").unwrap();
        assert_eq!(r.check(false), Outcome::Unchanged);
        assert!(matches!(r.check(false), Outcome::Refused(_)));
        assert_eq!(*r.get(), 22);
        // Reported once, not on every poll.
        assert_eq!(r.check(false), Outcome::Unchanged);
        assert!(matches!(r.check(true), Outcome::Refused(_)));
        std::fs::write(&path, "333").unwrap();
        assert_eq!(r.check(true), Outcome::Reloaded, "forced: at once");
        assert_eq!(*r.get(), 333);
        assert_eq!(r.reloads(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_and_last_success_are_kept() {
        let dir = std::env::temp_dir().join(format!("reload-count-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.txt");
        std::fs::write(&path, "1").unwrap();
        let before = unix_now();
        let r: Arc<Reloadable<u32>> = Arc::new(
            Reloadable::new("number", path.clone(), |p| {
                std::fs::read_to_string(p)
                    .map_err(|e| e.to_string())?
                    .trim()
                    .parse::<u32>()
                    .map_err(|e| e.to_string())
            })
            .unwrap(),
        );
        // Read through the trait object, as the metrics scrape does.
        let dyn_r: Arc<dyn Reload> = r.clone();
        assert_eq!(dyn_r.what(), "number");
        assert_eq!((dyn_r.reloads(), dyn_r.failures()), (0, 0));
        let initial = dyn_r.last_success_unix();
        assert!(initial >= before && initial <= unix_now(), "{initial}");

        // A refused version counts as a failure and leaves the success time alone.
        r.last_success.store(1_000, Ordering::Relaxed);
        std::fs::write(&path, "x").unwrap();
        assert!(matches!(r.check(true), Outcome::Refused(_)));
        assert_eq!((dyn_r.reloads(), dyn_r.failures()), (0, 1));
        assert_eq!(dyn_r.last_success_unix(), 1_000);
        // Unchanged files are neither.
        assert_eq!(r.check(false), Outcome::Unchanged);
        assert_eq!((dyn_r.reloads(), dyn_r.failures()), (0, 1));

        std::fs::write(&path, "2").unwrap();
        assert_eq!(r.check(true), Outcome::Reloaded);
        assert_eq!((dyn_r.reloads(), dyn_r.failures()), (1, 1));
        assert!(dyn_r.last_success_unix() >= initial);
        assert_eq!(dyn_r.check_and_log(true), Outcome::Reloaded);
        assert_eq!((dyn_r.reloads(), dyn_r.failures()), (2, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
