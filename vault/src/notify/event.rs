//! The events Lockbox tells of, and their versioned JSON payload (the
//! webhook body and a command's `LOCKBOX_EVENT_JSON`), documented in
//! `examples/README.md`.

use crate::rfc3339;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the webhook payload (and of `LOCKBOX_EVENT_JSON`). Fields may
/// be added without a new version; a field removed, renamed or changed in
/// meaning makes a new one.
pub const PAYLOAD_SCHEMA: u32 = 1;

/// What happened. Names (`backup_failed`, …) are those of `on = [...]`, the
/// payload's `event` and `LOCKBOX_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A backup of the source started.
    BackupStarted,
    /// A backup wrote its snapshot.
    BackupSucceeded,
    /// A backup ended without a snapshot (failed, timed out, interrupted or aborted).
    BackupFailed,
    /// A restore drill loaded the snapshot and every check passed.
    DrillPassed,
    /// A restore drill did not pass: the load or a check failed, or the drill could not run.
    DrillFailed,
    /// `verify` found damage or a failed check.
    VerifyProblem,
    /// A source newly passed its `max_backup_age` or `max_verified_age`.
    Stale,
    /// `lockbox notify test`: reaches every target, whatever its `on`.
    Test,
}

impl EventKind {
    /// The event's name, e.g. `backup_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BackupStarted => "backup_started",
            EventKind::BackupSucceeded => "backup_succeeded",
            EventKind::BackupFailed => "backup_failed",
            EventKind::DrillPassed => "drill_passed",
            EventKind::DrillFailed => "drill_failed",
            EventKind::VerifyProblem => "verify_problem",
            EventKind::Stale => "stale",
            EventKind::Test => "test",
        }
    }

    /// A problem someone has to act on.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            EventKind::BackupFailed
                | EventKind::DrillFailed
                | EventKind::VerifyProblem
                | EventKind::Stale
        )
    }
}

/// One thing worth telling. Only `kind`, `source` and `host` are always
/// there; the rest is filled in when the reporter knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The source's name (empty for `test`).
    pub source: String,
    /// This machine's host name.
    pub host: String,
    /// Full hex id of the snapshot concerned.
    pub snapshot: Option<String>,
    /// The run's or check's outcome word (`success`, `failed`, `aborted`, …).
    pub outcome: Option<String>,
    /// What went wrong, in one or a few lines.
    pub error: Option<String>,
    /// When the run started (UTC).
    pub started_at: Option<OffsetDateTime>,
    /// When it ended (UTC).
    pub finished_at: Option<OffsetDateTime>,
    /// How long it ran, in seconds.
    pub duration_seconds: Option<f64>,
    /// Dump bytes read (backup) or restored (drill).
    pub input_bytes: Option<u64>,
    /// Stored bytes a backup newly wrote.
    pub added_bytes: Option<u64>,
    /// The source's health at the time (`OK`, `WARN`, `CRIT`).
    pub health: Option<String>,
}

impl Event {
    /// An event of `kind` for `source`, from this host, with nothing else filled in.
    pub fn new(kind: EventKind, source: &str) -> Self {
        Self {
            kind,
            source: source.to_string(),
            host: crate::sys::host_name().to_string(),
            snapshot: None,
            outcome: None,
            error: None,
            started_at: None,
            finished_at: None,
            duration_seconds: None,
            input_bytes: None,
            added_bytes: None,
            health: None,
        }
    }

    /// One line for people: a chat message, a ping's log entry.
    pub fn summary(&self) -> String {
        let s = &self.source;
        let what = match self.kind {
            EventKind::BackupStarted => format!("backup of {s} started"),
            EventKind::BackupSucceeded => {
                let snap = self
                    .snapshot
                    .as_deref()
                    .map(|id| format!(" (snapshot {})", &id[..8.min(id.len())]))
                    .unwrap_or_default();
                format!("backup of {s} succeeded{snap}")
            }
            EventKind::BackupFailed => format!("backup of {s} failed"),
            EventKind::DrillPassed => format!("restore drill of {s} passed"),
            EventKind::DrillFailed => format!("restore drill of {s} failed"),
            EventKind::VerifyProblem => format!("verify found a problem in {s}"),
            EventKind::Stale => format!("{s} is stale"),
            EventKind::Test => "test notification".to_string(),
        };
        let why = self
            .error
            .as_deref()
            .map(|e| format!(": {}", e.trim()))
            .unwrap_or_default();
        format!("lockbox on {}: {what}{why}", self.host)
    }
}

/// The webhook body, schema [`PAYLOAD_SCHEMA`]. Times are RFC 3339 UTC;
/// unknown values are `null`.
#[derive(Serialize)]
struct Payload<'a> {
    schema: u32,
    event: EventKind,
    source: &'a str,
    host: &'a str,
    snapshot: Option<&'a str>,
    outcome: Option<&'a str>,
    error: Option<&'a str>,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_seconds: Option<f64>,
    input_bytes: Option<u64>,
    added_bytes: Option<u64>,
    health: Option<&'a str>,
    lockbox_version: &'static str,
    sent_at: String,
    /// `summary()`: lets Slack/Mattermost-style incoming webhooks show it.
    text: String,
}

/// The JSON payload of `event` as sent at `sent_at` (the exact bytes a
/// webhook signature covers).
pub fn payload(event: &Event, sent_at: OffsetDateTime) -> Vec<u8> {
    let p = Payload {
        schema: PAYLOAD_SCHEMA,
        event: event.kind,
        source: &event.source,
        host: &event.host,
        snapshot: event.snapshot.as_deref(),
        outcome: event.outcome.as_deref(),
        error: event.error.as_deref(),
        started_at: event.started_at.map(rfc3339::format),
        finished_at: event.finished_at.map(rfc3339::format),
        duration_seconds: event.duration_seconds.filter(|d| d.is_finite()),
        input_bytes: event.input_bytes,
        added_bytes: event.added_bytes,
        health: event.health.as_deref(),
        lockbox_version: env!("CARGO_PKG_VERSION"),
        sent_at: rfc3339::format(sent_at),
        text: event.summary(),
    };
    serde_json::to_vec(&p).unwrap_or_default()
}
