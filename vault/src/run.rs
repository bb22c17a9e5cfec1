//! The run record. Every backup, drill and verify is recorded in the
//! catalog from the moment its source is chosen: [`RunGuard::begin`] opens
//! the row (`running`, with this process's pid and start time) before the
//! configuration for the source is resolved, a tool is started or storage
//! is reached, and one guard closes it, whatever happens in between:
//!
//! * [`RunGuard::succeed`] or [`RunGuard::fail`] with the result: `success`, or the outcome the
//!   error implies ([`outcome_of`]: `interrupted` after a stop signal,
//!   `timed_out` past the source's `timeout`, else `failed`) and the error
//!   text (already free of secrets: sources scrub what tools print);
//! * dropped unfinished (a panic unwinding): `interrupted`;
//! * forced exit after a stop signal ([`crate::sys`]'s abort hooks):
//!   `interrupted by SIGx`;
//! * SIGKILL or power loss: nothing runs, and the row stays `running` until
//!   a reader ([`Catalog::resolve_dead_runs`]) sees its process is gone.
//!
//! A catalog that cannot be written (a full state directory) never hides a
//! failure: the guard logs it, and the caller still exits non-zero and
//! notifies. Lock contention is not a run: callers take the source's lock
//! before beginning one.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::catalog::{Catalog, CatalogError, RunKind, RunOutcome};
use crate::ids::ObjectId;

pub use crate::catalog::REPOSITORY_WIDE;

/// Facts of a finished run, for notifications and logs.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What ran: backup, drill or verify.
    pub kind: RunKind,
    /// The source it concerned, or [`REPOSITORY_WIDE`].
    pub source: String,
    /// How it ended.
    pub outcome: RunOutcome,
    /// When it started (UTC).
    pub started_at: OffsetDateTime,
    /// When it was closed (UTC).
    pub finished_at: OffsetDateTime,
    /// The snapshot it wrote or checked (manifest id, hex), if any.
    pub snapshot: Option<String>,
    /// Dump bytes read (backup) or restored (drill), when it succeeded.
    pub input_bytes: Option<u64>,
    /// Stored bytes a successful backup newly wrote.
    pub added_bytes: Option<u64>,
    /// The error message, when it did not succeed.
    pub error: Option<String>,
}

impl RunReport {
    /// Seconds from start to close (never negative, even if the clock stepped back).
    pub fn duration_seconds(&self) -> f64 {
        (self.finished_at - self.started_at)
            .as_seconds_f64()
            .max(0.0)
    }
}

/// What a successful run produced.
#[derive(Debug, Clone, Default)]
pub struct RunSuccess {
    /// The snapshot written or checked, if any.
    pub snapshot: Option<ObjectId>,
    /// Dump bytes read or restored.
    pub input_bytes: u64,
    /// Stored bytes newly written (backups; 0 otherwise).
    pub added_bytes: u64,
}

/// An open run row; see the module doc.
pub struct RunGuard {
    catalog: PathBuf,
    id: Option<i64>,
    kind: RunKind,
    source: String,
    started_at: OffsetDateTime,
    abort_hook: u64,
    closed: bool,
}

/// Opens the catalog at `path` to record a run, whether or not the
/// repository has been reached yet: an existing catalog keeps its
/// repository id, a new one adopts the first it is opened with.
pub fn open_catalog(path: &Path) -> Result<Catalog, CatalogError> {
    // The full open (which heals a damaged file, and moves one of another
    // schema aside) with the id the catalog itself holds.
    let id = stored_repository_id(path);
    match id {
        Some(id) => Catalog::open(path, &id),
        None if path.exists() => Catalog::open(path, ""),
        None => {
            if let Some(dir) = path.parent() {
                crate::state::ensure_private_dir(dir).map_err(|source| CatalogError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            Catalog::open(path, "")
        }
    }
}

/// The repository id a catalog file records, if it can be read at all.
fn stored_repository_id(path: &Path) -> Option<String> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'repository_id'",
        [],
        |r| r.get(0),
    )
    .ok()
}

impl RunGuard {
    /// Records that `kind` of `source` has started. Never fails: when the
    /// catalog cannot be written the run goes on unrecorded and the reason
    /// is logged.
    pub fn begin(catalog_path: &Path, kind: RunKind, source: &str) -> Self {
        let started_at = OffsetDateTime::now_utc();
        let opened = open_catalog(catalog_path).and_then(|c| {
            // Rows of runs whose process died are closed before a new one
            // opens, so "running" only ever means running.
            if let Err(e) = c.resolve_dead_runs() {
                tracing::warn!(error = %e, "could not close the rows of runs whose process is gone");
            }
            c.begin_run(kind, source)
        });
        let id = match opened {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(
                    source = %source,
                    kind = kind.as_str(),
                    error = %e,
                    "could not record the start of the run in the catalog; its outcome is \
                     still reported (exit status, notifications, log)"
                );
                None
            }
        };
        let abort_hook = match id {
            Some(id) => {
                let path = catalog_path.to_path_buf();
                crate::sys::add_abort_hook(move || {
                    let reason = match crate::sys::stop_signal() {
                        Some(s) => format!(
                            "interrupted by {}: the run did not stop in time and was ended",
                            crate::sys::signal_name(s)
                        ),
                        None => "interrupted".to_string(),
                    };
                    let _ = close_row(
                        &path,
                        id,
                        RunOutcome::Interrupted,
                        None,
                        0,
                        0,
                        Some(&reason),
                    );
                })
            }
            None => 0,
        };
        tracing::debug!(source = %source, kind = kind.as_str(), run = ?id, "run recorded as running");
        Self {
            catalog: catalog_path.to_path_buf(),
            id,
            kind,
            source: source.to_string(),
            started_at,
            abort_hook,
            closed: false,
        }
    }

    /// Closes the run as a success.
    pub fn succeed(self, s: RunSuccess) -> RunReport {
        self.close(
            RunOutcome::Success,
            s.snapshot.as_ref(),
            Some(s.input_bytes),
            Some(s.added_bytes),
            None,
        )
    }

    /// Closes the run with the outcome `cause` implies and `message` (the
    /// whole error chain, as the user sees it).
    pub fn fail(self, message: &str, cause: &(dyn std::error::Error + 'static)) -> RunReport {
        let outcome = outcome_of(cause);
        // After a stop signal the tool's own error ("killed by signal 2")
        // is a consequence; the cause is the signal.
        let message = match crate::sys::stop_signal() {
            Some(s) => format!(
                "interrupted by {}: {} ({message})",
                crate::sys::signal_name(s),
                crate::sys::stop_note()
            ),
            None => message.to_string(),
        };
        self.close(outcome, None, None, None, Some(&message))
    }

    /// Closes the run with an explicit outcome.
    pub fn close(
        mut self,
        outcome: RunOutcome,
        snapshot: Option<&ObjectId>,
        input_bytes: Option<u64>,
        added_bytes: Option<u64>,
        error: Option<&str>,
    ) -> RunReport {
        self.closed = true;
        crate::sys::remove_abort_hook(self.abort_hook);
        if let Some(id) = self.id {
            let written = close_row(
                &self.catalog,
                id,
                outcome,
                snapshot,
                input_bytes.unwrap_or(0),
                added_bytes.unwrap_or(0),
                error,
            );
            if let Err(e) = written {
                tracing::error!(
                    source = %self.source,
                    kind = self.kind.as_str(),
                    outcome = outcome.as_str(),
                    error = %e,
                    "could not record the end of the run in the catalog; the next reader \
                     marks it interrupted"
                );
            }
        }
        RunReport {
            kind: self.kind,
            source: self.source.clone(),
            outcome,
            started_at: self.started_at,
            finished_at: OffsetDateTime::now_utc(),
            snapshot: snapshot.map(|s| s.to_hex()),
            input_bytes,
            added_bytes,
            error: error.map(str::to_string),
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        crate::sys::remove_abort_hook(self.abort_hook);
        if let Some(id) = self.id {
            let reason = if std::thread::panicking() {
                "interrupted: Lockbox failed internally (a panic); see the log"
            } else {
                "interrupted: the run ended without recording an outcome"
            };
            let _ = close_row(
                &self.catalog,
                id,
                RunOutcome::Interrupted,
                None,
                0,
                0,
                Some(reason),
            );
        }
    }
}

fn close_row(
    path: &Path,
    id: i64,
    outcome: RunOutcome,
    snapshot: Option<&ObjectId>,
    input_bytes: u64,
    added_bytes: u64,
    error: Option<&str>,
) -> Result<(), CatalogError> {
    let catalog = open_catalog(path)?;
    catalog.finish_run(id, outcome, snapshot, input_bytes, added_bytes, error)
}

/// The outcome an error implies: a stop signal → `interrupted`, a source's
/// timeout → `timed_out`, anything else → `failed`.
pub fn outcome_of(err: &(dyn std::error::Error + 'static)) -> RunOutcome {
    if crate::sys::stop_signal().is_some() {
        return RunOutcome::Interrupted;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if c.downcast_ref::<crate::sys::Interrupted>().is_some() {
            return RunOutcome::Interrupted;
        }
        if let Some(crate::source::SourceError::TimedOut { .. }) = c.downcast_ref() {
            return RunOutcome::TimedOut;
        }
        // `transparent` variants hand `source()` past the wrapped error.
        match c.downcast_ref::<crate::backup::BackupError>() {
            Some(crate::backup::BackupError::Source(crate::source::SourceError::TimedOut {
                ..
            }))
            | Some(crate::backup::BackupError::TimedOut { .. }) => return RunOutcome::TimedOut,
            Some(crate::backup::BackupError::Interrupted(_)) => return RunOutcome::Interrupted,
            _ => {}
        }
        cause = c.source();
    }
    RunOutcome::Failed
}

/// The event a finished run is told as, if any: a backup's success or
/// failure, a drill's verdict, a verify that did not come out clean.
fn end_event(report: &RunReport) -> Option<crate::notify::EventKind> {
    use crate::notify::EventKind;
    let ok = report.outcome == RunOutcome::Success;
    Some(match (report.kind, ok) {
        (RunKind::Backup, true) => EventKind::BackupSucceeded,
        (RunKind::Backup, false) => EventKind::BackupFailed,
        (RunKind::Drill, true) => EventKind::DrillPassed,
        (RunKind::Drill, false) => EventKind::DrillFailed,
        (RunKind::Verify, false) => EventKind::VerifyProblem,
        (RunKind::Verify, true) => return None,
    })
}

/// Tells the targets that hear it that a backup started (the start ping of
/// a dead man's switch), and counts the deliveries.
pub fn notify_started(notifier: &crate::notify::Notifier, catalog_path: &Path, source: &str) {
    use crate::notify::{Event, EventKind};
    if !notifier.listens_for(EventKind::BackupStarted) {
        return;
    }
    let mut event = Event::new(EventKind::BackupStarted, source);
    event.started_at = Some(OffsetDateTime::now_utc());
    event.outcome = Some("running".into());
    count_notifications(catalog_path, &notifier.send(&event));
}

/// Tells the targets that hear it how a run ended, with the source's
/// health as status now reports it, and counts the deliveries. Sent
/// whether or not the catalog could record the run: that is when it is
/// needed most.
pub fn notify_end(
    notifier: &crate::notify::Notifier,
    config: &crate::config::Config,
    report: &RunReport,
) -> Vec<crate::notify::Delivery> {
    use crate::notify::Event;
    let Some(kind) = end_event(report) else {
        return Vec::new();
    };
    if !notifier.listens_for(kind) {
        return Vec::new();
    }
    let mut event = Event::new(kind, &report.source);
    event.snapshot = report.snapshot.clone();
    event.outcome = Some(match report.kind {
        RunKind::Drill => if report.outcome == RunOutcome::Success {
            "passed"
        } else {
            "failed"
        }
        .to_string(),
        _ => report.outcome.as_str().to_string(),
    });
    event.error = report.error.clone();
    event.started_at = Some(report.started_at);
    event.finished_at = Some(report.finished_at);
    event.duration_seconds = Some(report.duration_seconds());
    event.input_bytes = report.input_bytes;
    event.added_bytes = report.added_bytes;
    event.health = health_now(config, &report.source).or_else(|| {
        // The catalog could not be read: a failure is CRIT by the rules.
        (report.outcome != RunOutcome::Success).then(|| "CRIT".to_string())
    });
    let deliveries = notifier.send(&event);
    count_notifications(&config.catalog_path(), &deliveries);
    deliveries
}

fn health_now(config: &crate::config::Config, source: &str) -> Option<String> {
    let catalog = crate::health::open_catalog(&config.catalog_path()).ok()??;
    let report = crate::health::report(config, Some(&catalog), OffsetDateTime::now_utc()).ok()?;
    let worst = if source == REPOSITORY_WIDE {
        report.health
    } else {
        report.sources.iter().find(|s| s.source == source)?.health
    };
    Some(worst.as_str().to_string())
}

/// Counts deliveries in the catalog (`lockbox_notifications_total`); a
/// catalog that cannot be written is logged, never an error.
pub fn count_notifications(catalog_path: &Path, deliveries: &[crate::notify::Delivery]) {
    if deliveries.is_empty() {
        return;
    }
    let counted: Vec<(&str, bool)> = deliveries.iter().map(|d| (d.kind, d.ok)).collect();
    if let Err(e) = open_catalog(catalog_path).and_then(|c| c.count_notifications(&counted)) {
        tracing::warn!(error = %e, "could not count the notifications in the catalog");
    }
}

/// The configured notifier; one whose secret cannot be read is logged and
/// replaced by none, since a notification problem must never stop a
/// backup (`lockbox notify test` shows it, and so does the log).
pub fn notifier_for(config: &crate::config::Config) -> crate::notify::Notifier {
    crate::notify::Notifier::new(&config.notify).unwrap_or_else(|e| {
        tracing::error!(
            error = %e,
            "[[notify]] cannot be used; this run notifies nobody (check with `lockbox notify test`)"
        );
        crate::notify::Notifier::none()
    })
}
