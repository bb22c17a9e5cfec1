//! Health of each source: the facts `lockbox status`, `lockbox check`, the
//! metrics and the daemon's status page report, and the OK/WARN/CRIT verdict
//! drawn from them.
//!
//! Everything comes from the local catalog (no storage round trip, so a
//! monitoring probe works while storage is down), and the verdict is a pure
//! function of those facts, the thresholds and an injected `now`.
//!
//! The rules, worst first:
//! * CRIT: never backed up; newest snapshot older than `max_backup_age`;
//!   the newest full `verify --read-data` failed (data in the repository is
//!   damaged); tampering first seen within [`TAMPER_WINDOW`].
//! * WARN: never verified; newest verified snapshot older than
//!   `max_verified_age`; the last finished run failed or was interrupted;
//!   the newest drill failed; the catalog was unreadable and was rebuilt
//!   from the repository within [`CATALOG_REBUILT_WINDOW`] (run history
//!   before it is only in the copy kept aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::catalog::{
    Catalog, CatalogError, Rebuilt, RunOutcome, RunRow, SnapshotRow, VerificationKind,
    VerificationRow,
};
use crate::config::{Config, Thresholds};
use crate::format::SNAPSHOTS_PREFIX;
use crate::rfc3339;

/// Tampering first seen this recently makes a source CRIT; older events are
/// still counted and shown. (The catalog keeps them for good, and a vault
/// that stays red forever teaches people to ignore red.)
pub const TAMPER_WINDOW: Duration = Duration::from_secs(7 * 86400);

/// A catalog rebuilt from the repository (its predecessor was unreadable)
/// makes every source WARN for this long: long enough for a weekly look at
/// the dashboard to catch it, after which it is still shown in
/// `repository.catalog_rebuilt` but no longer a warning.
pub const CATALOG_REBUILT_WINDOW: Duration = Duration::from_secs(7 * 86400);

/// A verdict. Ordered: `Ok < Warn < Crit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Health {
    /// Nothing needs attention.
    #[serde(rename = "OK")]
    Ok,
    /// Something needs a look soon (not verified recently, a rebuilt catalog…).
    #[serde(rename = "WARN")]
    Warn,
    /// Backups are missing, failing, damaged or tampered with.
    #[serde(rename = "CRIT")]
    Crit,
}

impl Health {
    /// `OK`, `WARN` or `CRIT`, as printed and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Warn => "WARN",
            Health::Crit => "CRIT",
        }
    }
    /// 0, 1, 2: the metric value, and the monitoring-plugin exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Everything the catalog knows about one source, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SourceFacts {
    /// The source's name.
    pub source: String,
    /// Listed in the config (others appear because the catalog has them,
    /// e.g. `backup --stdin` names).
    pub configured: bool,
    /// Its snapshots in the catalog, oldest first.
    pub snapshots: Vec<SnapshotRow>,
    /// Its recorded runs (backup, drill, verify), oldest first.
    pub runs: Vec<RunRow>,
    /// Its verifications and drills, oldest first.
    pub verifications: Vec<VerificationRow>,
    /// The newest snapshot that passed a drill or a full verify.
    pub last_verified: Option<VerificationRow>,
    /// First-seen times of tamper events that concern this source: on its
    /// manifests, or on shared objects (chunks, config) that may hold its data.
    pub tamper_seen: Vec<OffsetDateTime>,
    /// The daemon is holding a due run of this source for a free slot.
    pub waiting: Option<Waiting>,
    /// The catalog replaced an unreadable one (it concerns every source).
    pub catalog_rebuilt: Option<Rebuilt>,
}

pub use crate::catalog::Waiting;

/// The newest snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct LastBackup {
    /// The snapshot's manifest id (hex).
    pub snapshot: String,
    /// Its first 8 hex digits.
    pub short_id: String,
    /// When its backup started: the point in time of the data.
    pub started_at: String,
    /// When its manifest was written (RFC 3339, UTC).
    pub finished_at: String,
    /// Seconds from its start to now: the age of the newest data.
    pub age_seconds: i64,
    /// How long the backup took, in seconds.
    pub duration_seconds: f64,
    /// `started_at` as Unix seconds (for metrics; not serialized).
    #[serde(skip)]
    pub started_unix: i64,
}

/// The newest backup run, whatever its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// `running`, `success`, `failed`, `interrupted`, `timed_out` or `aborted`.
    pub outcome: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended; `None` while it is running (or if it was never closed).
    pub finished_at: Option<String>,
    /// The recorded error, for runs that failed.
    pub error: Option<String>,
}

/// The newest run that failed or was interrupted, whatever came after it.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// When it ended (or started, if it never finished), RFC 3339 UTC.
    pub at: String,
    /// `failed`, `interrupted` or `timed_out`.
    pub outcome: String,
    /// The recorded error, if any.
    pub error: Option<String>,
}

/// The newest snapshot that passed a drill or a full verify.
#[derive(Debug, Clone, Serialize)]
pub struct LastVerified {
    /// The verified snapshot's manifest id (hex).
    pub snapshot: String,
    /// When that snapshot's backup started (RFC 3339, UTC).
    pub snapshot_started_at: String,
    /// Age of the verified data (from the snapshot's start).
    pub age_seconds: i64,
    /// Whether a drill or a full verify proved it.
    pub kind: VerificationKind,
    /// When the verification finished (RFC 3339, UTC).
    pub verified_at: String,
    /// `snapshot_started_at` as Unix seconds (for metrics; not serialized).
    #[serde(skip)]
    pub snapshot_started_unix: i64,
}

/// The newest drill, passed or failed.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    /// The drilled snapshot's manifest id (hex).
    pub snapshot: String,
    /// Whether the load and every check passed.
    pub passed: bool,
    /// When the drill finished (RFC 3339, UTC).
    pub finished_at: String,
    /// Seconds from the start of the restore to a loaded, checked database
    /// (RTO); `None` if the load did not complete.
    pub restore_seconds: Option<f64>,
    /// What failed, for a failed drill.
    pub detail: Option<String>,
}

/// Drills recorded for a source, by result.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DrillCounts {
    /// Drills that passed.
    pub passed: u64,
    /// Drills that failed.
    pub failed: u64,
}

/// The thresholds the verdict used, in seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThresholdSeconds {
    /// Newest snapshot older than this: CRIT.
    pub max_backup_age_seconds: u64,
    /// Newest verified snapshot older than this: WARN.
    pub max_verified_age_seconds: u64,
}

/// One source's row of `lockbox status --json`. Fields may be added;
/// existing ones keep their names and meanings.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The source's name.
    pub source: String,
    /// Listed in the config (others appear because the catalog has runs or
    /// snapshots of them).
    pub configured: bool,
    /// The verdict: the worst of `reasons`, OK when there are none.
    pub health: Health,
    /// Why the health is not OK, worst first; empty when OK.
    pub reasons: Vec<String>,
    /// The newest snapshot; `None`: never backed up.
    pub last_backup: Option<LastBackup>,
    /// The newest backup run, including one still running.
    pub last_run: Option<LastRun>,
    /// The last finished run (a run in progress aside) failed or was
    /// interrupted.
    pub last_run_failed: bool,
    /// The newest backup run that failed or was interrupted, even if later ones succeeded.
    pub last_error: Option<LastError>,
    /// The daemon has held a due run for a free slot since then.
    pub waiting_since: Option<String>,
    /// The newest snapshot that passed a drill or a full verify.
    pub last_verified: Option<LastVerified>,
    /// The newest drill.
    pub last_drill: Option<LastDrill>,
    /// Snapshots of the source in the catalog.
    pub snapshots: u64,
    /// Newest snapshot: bytes of the dump, and of the distinct stored
    /// objects it references.
    pub logical_bytes: Option<u64>,
    /// Stored bytes of the distinct objects the newest snapshot references.
    pub stored_bytes: Option<u64>,
    /// All snapshots: bytes of the dumps, and bytes their backups wrote.
    pub total_logical_bytes: u64,
    /// Bytes all its backups newly wrote.
    pub total_added_bytes: u64,
    /// `total_logical_bytes / total_added_bytes` (dedup and compression).
    pub dedup_ratio: Option<f64>,
    /// Earliest and latest lock expiry among the source's snapshots.
    pub retain_until_min: Option<String>,
    /// The newest snapshot's lock expiry (RFC 3339, UTC).
    pub retain_until_latest: Option<String>,
    /// Tamper events concerning this source ever seen (CRIT only while recent).
    pub tamper_events: u64,
    /// Finished runs by outcome.
    pub backup_runs: BTreeMap<String, u64>,
    /// Drills by result.
    pub drill_runs: DrillCounts,
    /// The thresholds this verdict used.
    pub thresholds: ThresholdSeconds,
    /// `retain_until_min` as Unix seconds (for metrics; not serialized).
    #[serde(skip)]
    pub retain_until_min_unix: Option<i64>,
    /// `retain_until_latest` as Unix seconds (for metrics; not serialized).
    #[serde(skip)]
    pub retain_until_latest_unix: Option<i64>,
}

/// `repository.catalog_rebuilt` of `lockbox status --json`: the last time
/// the catalog was found unreadable and rebuilt from the repository.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogRebuilt {
    /// When the unreadable catalog was replaced (RFC 3339, UTC).
    pub rebuilt_at: String,
    /// Why the old catalog could not be used.
    pub reason: String,
    /// Where the old catalog was moved to.
    pub kept_as: String,
    /// When it was refilled from the repository; `null` until then.
    pub refilled_at: Option<String>,
    /// The WARN reason every source carries, while within
    /// [`CATALOG_REBUILT_WINDOW`] of the rebuild; `null` after.
    pub warning: Option<String>,
}

/// Facts about the repository as a whole, from the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryStatus {
    /// Earliest lock expiry of any snapshot in the catalog.
    pub retain_until_min: Option<String>,
    /// Tamper events the catalog has ever recorded.
    pub tamper_events: u64,
    /// The last catalog rebuild, if there was one.
    pub catalog_rebuilt: Option<CatalogRebuilt>,
    /// `retain_until_min` as Unix seconds (for metrics; not serialized).
    #[serde(skip)]
    pub retain_until_min_unix: Option<i64>,
}

/// `lockbox status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// The worst source's health (OK with no sources).
    pub health: Health,
    /// Repository-wide facts.
    pub repository: RepositoryStatus,
    /// One entry per source, by name.
    pub sources: Vec<SourceStatus>,
}

/// Seconds from `then` to `now`, never negative (another host's clock may
/// be a little ahead).
fn age(now: OffsetDateTime, then: OffsetDateTime) -> i64 {
    (now - then).whole_seconds().max(0)
}

/// "3d 4h", "5h 12m", "12m 5s", "40s": two units are enough for a person.
pub fn human_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds % 86400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The WARN reason for a catalog rebuilt at most [`CATALOG_REBUILT_WINDOW`]
/// before `now`; `None` otherwise.
pub fn catalog_rebuilt_warning(r: &Rebuilt, now: OffsetDateTime) -> Option<String> {
    let at = rfc3339::parse(&r.rebuilt_at)?;
    if now - at > CATALOG_REBUILT_WINDOW {
        return None;
    }
    let refill = match &r.refilled_at {
        Some(_) => "",
        None => {
            " (not refilled yet: the next backup, or `lockbox catalog rebuild`, reads the \
             snapshots back)"
        }
    };
    Some(format!(
        "catalog was unreadable ({}) and was rebuilt from the repository at {}{refill}; the \
         unreadable copy is kept at {}",
        one_line(&r.reason),
        r.rebuilt_at,
        r.kept_as
    ))
}

/// Judges one source at `now`.
pub fn assess(facts: &SourceFacts, thresholds: Thresholds, now: OffsetDateTime) -> SourceStatus {
    let mut reasons: Vec<(Health, String)> = Vec::new();

    let newest = facts.snapshots.iter().max_by(|a, b| a.key.cmp(&b.key));
    let last_backup = newest.map(|s| LastBackup {
        snapshot: s.id.clone(),
        short_id: s.short_id.clone(),
        started_at: rfc3339::format(s.started_at),
        finished_at: rfc3339::format(s.finished_at),
        age_seconds: age(now, s.started_at),
        duration_seconds: (s.finished_at - s.started_at).as_seconds_f64().max(0.0),
        started_unix: s.started_at.unix_timestamp(),
    });
    match &last_backup {
        None => reasons.push((Health::Crit, "never backed up".into())),
        Some(b) if b.age_seconds as u64 > thresholds.max_backup_age.as_secs() => reasons.push((
            Health::Crit,
            format!(
                "last backup {} ago, older than max_backup_age {}",
                human_duration(b.age_seconds as u64),
                human_duration(thresholds.max_backup_age.as_secs())
            ),
        )),
        Some(_) => {}
    }

    let recent_tamper = facts
        .tamper_seen
        .iter()
        .filter(|t| now - **t <= TAMPER_WINDOW)
        .count();
    if recent_tamper > 0 {
        reasons.push((
            Health::Crit,
            format!(
                "{recent_tamper} tamper event(s) in the last {}: delete markers or overwritten \
                 versions in the repository; find out who has write access",
                human_duration(TAMPER_WINDOW.as_secs())
            ),
        ));
    }

    let last_of = |kind: VerificationKind| facts.verifications.iter().rfind(|v| v.kind == kind);
    if let Some(v) = last_of(VerificationKind::Verify).filter(|v| !v.passed) {
        reasons.push((
            Health::Crit,
            format!(
                "verify --read-data of snapshot {} failed at {}: {}",
                &v.snapshot[..8.min(v.snapshot.len())],
                v.finished_at,
                v.detail.as_deref().unwrap_or("no detail")
            ),
        ));
    }

    let last_verified = facts.last_verified.as_ref().and_then(|v| {
        let started = rfc3339::parse(&v.snapshot_started_at)?;
        Some(LastVerified {
            snapshot: v.snapshot.clone(),
            snapshot_started_at: v.snapshot_started_at.clone(),
            age_seconds: age(now, started),
            kind: v.kind,
            verified_at: v.finished_at.clone(),
            snapshot_started_unix: started.unix_timestamp(),
        })
    });
    match &last_verified {
        None if last_backup.is_some() => reasons.push((
            Health::Warn,
            "never verified: run `lockbox drill` or `lockbox verify --read-data`".into(),
        )),
        None => {}
        Some(v) if v.age_seconds as u64 > thresholds.max_verified_age.as_secs() => reasons.push((
            Health::Warn,
            format!(
                "last verified backup {} old, older than max_verified_age {}",
                human_duration(v.age_seconds as u64),
                human_duration(thresholds.max_verified_age.as_secs())
            ),
        )),
        Some(_) => {}
    }

    if let Some(w) = facts
        .catalog_rebuilt
        .as_ref()
        .and_then(|r| catalog_rebuilt_warning(r, now))
    {
        reasons.push((Health::Warn, w));
    }

    let of_kind = |kind: &'static str| {
        facts
            .runs
            .iter()
            .filter(move |r| r.kind == kind && r.outcome != "running")
    };
    let finished_runs = of_kind("backup");
    let last_finished = finished_runs.clone().next_back();
    let last_run_failed = last_finished.is_some_and(|r| RunOutcome::is_failure_str(&r.outcome));
    if let Some(r) = last_finished.filter(|_| last_run_failed) {
        reasons.push((Health::Crit, run_reason("last backup", r)));
    }
    let last_drill = last_of(VerificationKind::Drill).map(|v| LastDrill {
        snapshot: v.snapshot.clone(),
        passed: v.passed,
        finished_at: v.finished_at.clone(),
        restore_seconds: v.restore_seconds,
        detail: v.detail.clone(),
    });
    if let Some(d) = last_drill.as_ref().filter(|d| !d.passed) {
        reasons.push((
            Health::Crit,
            format!(
                "last drill failed at {}: {}",
                d.finished_at,
                d.detail
                    .as_deref()
                    .map_or_else(|| "no detail".into(), one_line)
            ),
        ));
    } else if let Some(r) = of_kind("drill")
        .next_back()
        .filter(|r| RunOutcome::is_failure_str(&r.outcome))
    {
        // A drill that failed before it could restore anything (no
        // identity, scratch server down) leaves no verification, only this.
        reasons.push((Health::Crit, run_reason("last drill", r)));
    }
    let verify_damage = reasons
        .iter()
        .any(|r| r.1.starts_with("verify --read-data"));
    if !verify_damage
        && let Some(r) = of_kind("verify")
            .next_back()
            .filter(|r| RunOutcome::is_failure_str(&r.outcome))
    {
        reasons.push((Health::Crit, run_reason("last verify", r)));
    }
    if let Some(w) = &facts.waiting {
        let waited = age(now, w.since);
        if waited as u64 > w.period.as_secs() {
            reasons.push((
                Health::Warn,
                format!(
                    "waiting for a slot since {} ({}, longer than its schedule's period {}): \
                     other runs hold every slot (raise [daemon] max_concurrent, or lower the \
                     sources' timeout)",
                    rfc3339::format(w.since),
                    human_duration(waited as u64),
                    human_duration(w.period.as_secs())
                ),
            ));
        }
    }

    let mut backup_runs = BTreeMap::new();
    for r in finished_runs {
        *backup_runs.entry(r.outcome.clone()).or_insert(0) += 1;
    }
    let mut drill_runs = DrillCounts::default();
    for v in facts
        .verifications
        .iter()
        .filter(|v| v.kind == VerificationKind::Drill)
    {
        if v.passed {
            drill_runs.passed += 1;
        } else {
            drill_runs.failed += 1;
        }
    }
    let last_error = facts
        .runs
        .iter()
        .rfind(|r| r.kind == "backup" && RunOutcome::is_failure_str(&r.outcome))
        .map(|r| LastError {
            at: r
                .finished_at
                .clone()
                .unwrap_or_else(|| r.started_at.clone()),
            outcome: r.outcome.clone(),
            error: r.error.clone(),
        });

    let total_logical_bytes = facts.snapshots.iter().map(|s| s.input_bytes).sum();
    let total_added_bytes: u64 = facts.snapshots.iter().map(|s| s.added_bytes).sum();
    let retain_min = facts.snapshots.iter().map(|s| s.retain_until).min();
    let retain_latest = newest.map(|s| s.retain_until);

    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    SourceStatus {
        source: facts.source.clone(),
        configured: facts.configured,
        health: reasons.first().map_or(Health::Ok, |r| r.0),
        reasons: reasons.into_iter().map(|r| r.1).collect(),
        waiting_since: facts.waiting.as_ref().map(|w| rfc3339::format(w.since)),
        last_run: facts
            .runs
            .iter()
            .rfind(|r| r.kind == "backup")
            .map(|r| LastRun {
                outcome: r.outcome.clone(),
                started_at: r.started_at.clone(),
                finished_at: r.finished_at.clone(),
                error: r.error.clone(),
            }),
        last_run_failed,
        last_error,
        last_drill,
        snapshots: facts.snapshots.len() as u64,
        logical_bytes: newest.map(|s| s.input_bytes),
        stored_bytes: newest.map(|s| s.stored_bytes),
        total_logical_bytes,
        total_added_bytes,
        dedup_ratio: (total_added_bytes > 0)
            .then(|| total_logical_bytes as f64 / total_added_bytes as f64),
        retain_until_min: retain_min.map(rfc3339::format),
        retain_until_latest: retain_latest.map(rfc3339::format),
        retain_until_min_unix: retain_min.map(OffsetDateTime::unix_timestamp),
        retain_until_latest_unix: retain_latest.map(OffsetDateTime::unix_timestamp),
        tamper_events: facts.tamper_seen.len() as u64,
        backup_runs,
        drill_runs,
        thresholds: ThresholdSeconds {
            max_backup_age_seconds: thresholds.max_backup_age.as_secs(),
            max_verified_age_seconds: thresholds.max_verified_age.as_secs(),
        },
        last_backup,
        last_verified,
    }
}

/// "last backup failed at T: first line of the error".
fn run_reason(what: &str, r: &RunRow) -> String {
    format!(
        "{what} {} at {}{}",
        r.outcome.replace('_', " "),
        r.finished_at.as_deref().unwrap_or(&r.started_at),
        r.error
            .as_deref()
            .map(|e| format!(": {}", one_line(e)))
            .unwrap_or_default()
    )
}

/// An error message on one line, cut to a length a reason can carry.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(240) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// Opens the catalog at `path` for reading status, taking the repository id
/// from the catalog itself (so no storage round trip). `None` when there is
/// no catalog yet: nothing was ever backed up from this host. Never writes:
/// an unreadable catalog is an error saying the next backup rebuilds it.
pub fn open_catalog(path: &Path) -> Result<Option<Catalog>, CatalogError> {
    Catalog::open_existing(path)
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// `--source NAME` names nothing this host knows.
    #[error(
        "no source {name:?}: it is not in {} and the catalog has no run or snapshot of it; \
         known: {}",
        config.display(),
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The config file that was searched.
        config: std::path::PathBuf,
        /// The sources the config or the catalog knows.
        known: Vec<String>,
    },
}

impl StatusError {
    /// See [`crate::error::ErrorClass`]: an unknown source is a usage error.
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            StatusError::Catalog(e) => e.class(),
            StatusError::UnknownSource { .. } => crate::error::ErrorClass::Usage,
        }
    }
}

/// The status of every source (or only `only`), now, from the local
/// catalog. Its errors name the catalog and, when it is unreadable, what to
/// do.
pub fn load_report(config: &Config, only: Option<&str>) -> Result<StatusReport, StatusError> {
    let catalog = open_catalog(&config.catalog_path())?;
    let mut report = report(config, catalog.as_ref(), OffsetDateTime::now_utc())?;
    if let Some(name) = only {
        let known: Vec<String> = report.sources.iter().map(|s| s.source.clone()).collect();
        report.sources.retain(|s| s.source == name);
        if report.sources.is_empty() {
            return Err(StatusError::UnknownSource {
                name: name.to_string(),
                config: config.path.clone(),
                known,
            });
        }
        report.health = report.sources[0].health;
    }
    Ok(report)
}

/// The catalog's notification counts, (kind, outcome, count); none
/// without a catalog.
pub fn notification_counts(catalog: &Path) -> Result<Vec<(String, String, u64)>, CatalogError> {
    Ok(match open_catalog(catalog)? {
        Some(c) => c.notification_counts()?,
        None => Vec::new(),
    })
}

/// Gathers the facts of every configured source, and of every other source
/// the catalog knows, and judges them at `now`.
pub fn report(
    config: &Config,
    catalog: Option<&Catalog>,
    now: OffsetDateTime,
) -> Result<StatusReport, CatalogError> {
    let mut facts: BTreeMap<String, SourceFacts> = BTreeMap::new();
    let mut tamper_all = 0u64;
    let mut shared_tamper = Vec::new();
    let mut repository_runs: Vec<RunRow> = Vec::new();
    let mut waits: BTreeMap<String, Waiting> = BTreeMap::new();
    let rebuilt = catalog.map(Catalog::rebuilt).transpose()?.flatten();
    if let Some(cat) = catalog {
        let entry = |facts: &mut BTreeMap<String, SourceFacts>, s: &str| {
            facts.entry(s.to_string()).or_insert_with(|| SourceFacts {
                source: s.to_string(),
                ..Default::default()
            });
        };
        for s in cat.snapshots(None)? {
            entry(&mut facts, &s.source);
            facts
                .get_mut(&s.source)
                .expect("inserted")
                .snapshots
                .push(s);
        }
        // A run whose process is gone is closed before it is judged.
        if let Err(e) = cat.resolve_dead_runs() {
            tracing::debug!(error = %e, "could not close runs whose process is gone (read-only?)");
        }
        for r in cat.runs(None)? {
            if r.source == crate::catalog::REPOSITORY_WIDE {
                repository_runs.push(r);
                continue;
            }
            entry(&mut facts, &r.source);
            facts.get_mut(&r.source).expect("inserted").runs.push(r);
        }
        waits = cat.waiting()?;
        for v in cat.verifications(None)? {
            entry(&mut facts, &v.source);
            facts
                .get_mut(&v.source)
                .expect("inserted")
                .verifications
                .push(v);
        }
        for (seen, e) in cat.tampering()? {
            tamper_all += 1;
            let seen = rfc3339::parse(&seen).unwrap_or(now);
            let owner = e
                .key
                .strip_prefix(SNAPSHOTS_PREFIX)
                .and_then(|r| r.split_once('/'))
                .map(|(s, _)| s.to_string());
            match owner {
                Some(s) => {
                    entry(&mut facts, &s);
                    facts.get_mut(&s).expect("inserted").tamper_seen.push(seen);
                }
                None => shared_tamper.push(seen),
            }
        }
    }
    let configured: BTreeSet<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    let mut order: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    order.extend(
        facts
            .keys()
            .filter(|k| !configured.contains(k.as_str()))
            .cloned(),
    );
    let defaults = config.default_thresholds();
    let mut sources = Vec::new();
    for name in order {
        let mut f = facts.remove(&name).unwrap_or_else(|| SourceFacts {
            source: name.clone(),
            ..Default::default()
        });
        f.configured = configured.contains(name.as_str());
        f.tamper_seen.extend(shared_tamper.iter().copied());
        if f.configured {
            // A repository-wide verify concerns every source.
            f.runs.extend(repository_runs.iter().cloned());
            f.runs.sort_by_key(|r| r.id);
        }
        f.waiting = waits.remove(&name);
        f.catalog_rebuilt = rebuilt.clone();
        if let Some(cat) = catalog {
            f.last_verified = cat.last_verified(&name)?;
        }
        let thresholds = config
            .source(&name)
            .map_or(defaults, |s| s.thresholds(defaults));
        sources.push(assess(&f, thresholds, now));
    }
    let retain_min = sources
        .iter()
        .filter_map(|s| Some((s.retain_until_min_unix?, s.retain_until_min.clone()?)))
        .min();
    Ok(StatusReport {
        generated_at: rfc3339::format(now),
        health: sources.iter().map(|s| s.health).max().unwrap_or(Health::Ok),
        repository: RepositoryStatus {
            retain_until_min: retain_min.as_ref().map(|r| r.1.clone()),
            retain_until_min_unix: retain_min.map(|r| r.0),
            tamper_events: tamper_all,
            catalog_rebuilt: rebuilt.map(|r| CatalogRebuilt {
                warning: catalog_rebuilt_warning(&r, now),
                rebuilt_at: r.rebuilt_at,
                reason: r.reason,
                kept_as: r.kept_as,
                refilled_at: r.refilled_at,
            }),
        },
        sources,
    })
}

#[cfg(test)]
mod tests;
