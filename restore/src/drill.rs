//! Restore drills: a snapshot restored (fully verified) into a scratch
//! database and proven to work — it loads, every table the snapshot's
//! metadata recorded exists with the recorded row count (exactly, or within
//! a tolerance for estimates), SQLite's `PRAGMA integrity_check` passes, and
//! the user's checks answer as expected. The scratch database is always
//! dropped afterwards (unless kept on request), also when a check fails or
//! the drill is interrupted.
//!
//! This module only reads the repository (a `ReadBackend`); the caller
//! writes the attestation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lockbox_vault::config::{DrillCheck, ROW_TOLERANCE_FLOOR, expect_text};
use lockbox_vault::error::ErrorClass;
use lockbox_vault::keys::Identities;
use lockbox_vault::repository::SnapshotRef;
use lockbox_vault::rfc3339;
use lockbox_vault::storage::{ReadBackend, TamperEvent};
use serde::Serialize;
use time::OffsetDateTime;

use crate::RestoreProgress;
use crate::load::{self, DbTarget, LoadError, LoadOptions, Login, TableName};

/// What a drill needs besides the snapshot.
pub struct DrillPlan {
    /// The scratch database (already named; see [`scratch_name`]).
    pub scratch: DbTarget,
    /// The drill server's password and the state directory's private
    /// `tmp`, where credential files and the verified dump go.
    pub login: Login,
    /// Leave the scratch database in place after the drill, for inspection.
    pub keep: bool,
    /// How far an estimated row count may differ from the loaded one, in percent (but at
    /// least [`ROW_TOLERANCE_FLOOR`] rows); exact counts must match.
    pub row_tolerance_pct: f64,
    /// The user's checks from `[source.drill]`.
    pub checks: Vec<DrillCheck>,
    /// When the snapshot's backup started (UTC): the data age (RPO) is measured from it, and
    /// checks may name it as `{snapshot_started_at}`.
    pub snapshot_started_at: OffsetDateTime,
}

/// `lockbox_drill_<source>_<UTC time>`: a valid identifier on every engine
/// (source characters other than letters and digits become `_`), at most
/// 63 bytes (PostgreSQL's limit), and never the name of a real database.
pub fn scratch_name(source: &str, now: OffsetDateTime) -> String {
    let clean: String = source
        .chars()
        .take(30)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "lockbox_drill_{clean}_{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// One check's outcome. `detail` may name tables and values: it goes into
/// the sealed part of an attestation, never the public one.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CheckResult {
    /// The check's name (a user check's as configured).
    pub name: String,
    /// The name shown publicly: built-in checks keep theirs, user checks
    /// become `check[N]` (their names may reveal the schema).
    pub public_name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// What was found (e.g. the mismatching tables); may reveal the schema.
    pub detail: String,
    /// User checks: the query and the value it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The first column of the first row it returned (`None` if no row, NULL, or it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What a drill found; JSON fields may be added.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DrillReport {
    /// The source drilled.
    pub source: String,
    /// The snapshot's manifest id (hex).
    pub snapshot: String,
    /// Its 8-digit short id.
    pub short_id: String,
    /// The scratch engine (`postgres`, `mariadb`, `sqlite`).
    pub engine: String,
    /// The scratch database (or file).
    pub scratch: String,
    /// Whether the scratch database was kept (not dropped).
    pub kept: bool,
    /// Whether the snapshot loaded and every check passed.
    pub passed: bool,
    /// The first failed check or error, named.
    pub failure: Option<String>,
    /// Verified dump bytes restored.
    pub bytes: u64,
    /// Restore + verification + load: the recovery time achieved (RTO).
    pub restore_seconds: Option<f64>,
    /// Seconds spent on checks after the load.
    pub check_seconds: f64,
    /// Age of the snapshot's data when the drill started (RPO).
    pub data_age_seconds: f64,
    /// When the drill started (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished (RFC 3339, UTC).
    pub finished_at: String,
    /// Every check run, in order.
    pub checks: Vec<CheckResult>,
    /// What kind of failure it was, `None` if the drill passed: a failed
    /// check, a dump that does not load or damage in the repository is
    /// [`ErrorClass::Integrity`]; the drill server, the disk or a stop is
    /// [`ErrorClass::Operational`]; a wrong identity
    /// [`ErrorClass::Identity`]; a refused target [`ErrorClass::Usage`].
    #[serde(skip)]
    pub failure_class: Option<ErrorClass>,
    /// Delete markers and bad versions passed over to find verified data (S3).
    pub tampering: Vec<TamperEvent>,
}

/// Drops the scratch database when dropped, unless kept.
struct Scratch<'a> {
    target: &'a DbTarget,
    login: &'a Login,
    keep: bool,
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = self.target.drop_database(self.login) {
            tracing::error!(scratch = %self.target, error = %e,
                "could not drop the drill's scratch database; drop it by hand");
        }
    }
}

fn builtin(name: &str, passed: bool, detail: String) -> CheckResult {
    CheckResult {
        name: name.into(),
        public_name: name.into(),
        passed,
        detail,
        sql: None,
        value: None,
    }
}

/// Runs a drill. `cancel` is polled between steps (a signal handler sets
/// it); the scratch database is dropped on every way out.
pub fn run(
    backend: &dyn ReadBackend,
    identities: &Identities,
    snap: &SnapshotRef,
    plan: &DrillPlan,
    cancel: &AtomicBool,
    progress: &dyn RestoreProgress,
) -> DrillReport {
    let started = OffsetDateTime::now_utc();
    let mut report = DrillReport {
        source: snap.source.clone(),
        snapshot: snap.id.to_hex(),
        short_id: snap.id.short(),
        engine: plan.scratch.engine().into(),
        scratch: plan.scratch.to_string(),
        kept: plan.keep,
        passed: false,
        failure: None,
        bytes: 0,
        restore_seconds: None,
        check_seconds: 0.0,
        data_age_seconds: (started - plan.snapshot_started_at).as_seconds_f64(),
        started_at: rfc3339::format(started),
        finished_at: String::new(),
        checks: Vec::new(),
        failure_class: None,
        tampering: Vec::new(),
    };
    let login = &plan.login;
    let outcome = (|| -> Result<(), String> {
        match plan.scratch.exists(login) {
            Ok(false) => {}
            Ok(true) => {
                report.failure_class = Some(ErrorClass::Operational);
                return Err(format!(
                    "the scratch database {} already exists; refusing to touch it",
                    plan.scratch
                ));
            }
            Err(e) => {
                report.failure_class = Some(ErrorClass::Operational);
                return Err(format!("drill server: {e}"));
            }
        }
        let _scratch = Scratch {
            target: &plan.scratch,
            login,
            keep: plan.keep,
        };
        let opts = LoadOptions::default();
        let loaded = load::restore_into(
            backend,
            identities,
            snap,
            &plan.scratch,
            login,
            &opts,
            progress,
        );
        let load = match loaded {
            Ok(l) => l,
            Err(e) => {
                report.failure_class = Some(match &e {
                    // The tool ran and refused the dump: the snapshot does
                    // not load, which is what the drill is there to find.
                    LoadError::Tool { .. } => ErrorClass::Integrity,
                    e => e.class(),
                });
                report.checks.push(builtin("load", false, format!("{e:#}")));
                return Err(format!("check load failed: {e}"));
            }
        };
        report.bytes = load.bytes;
        report.restore_seconds = Some(load.seconds);
        report.tampering = load.tampering.clone();
        report.checks.push(builtin(
            "load",
            true,
            format!(
                "{} bytes verified and loaded in {:.1}s",
                load.bytes, load.seconds
            ),
        ));
        let clock = Instant::now();
        if cancel.load(Ordering::Relaxed) {
            report.failure_class = Some(ErrorClass::Operational);
            return Err("interrupted".into());
        }
        run_checks(plan, &load.source_info, &mut report.checks, cancel);
        report.check_seconds = clock.elapsed().as_secs_f64();
        if cancel.load(Ordering::Relaxed) {
            report.failure_class = Some(ErrorClass::Operational);
            return Err("interrupted".into());
        }
        match report.checks.iter().find(|c| !c.passed) {
            Some(c) => {
                report.failure_class = Some(ErrorClass::Integrity);
                Err(format!("check {} failed: {}", c.name, c.detail))
            }
            None => Ok(()),
        }
    })();
    report.passed = outcome.is_ok();
    report.failure = outcome.err();
    report.finished_at = rfc3339::format(OffsetDateTime::now_utc());
    report
}

fn run_checks(
    plan: &DrillPlan,
    info: &serde_json::Value,
    out: &mut Vec<CheckResult>,
    cancel: &AtomicBool,
) {
    let t = &plan.scratch;
    let login = &plan.login;
    if let DbTarget::Sqlite(_) = t {
        out.push(match t.query_scalar(login, "PRAGMA integrity_check") {
            Ok(Some(v)) if v == "ok" => builtin("integrity_check", true, "ok".into()),
            Ok(v) => builtin("integrity_check", false, format!("returned {v:?}")),
            Err(e) => builtin("integrity_check", false, e.to_string()),
        });
        if let Some(want) = info.get("page_count").and_then(|v| v.as_u64()) {
            out.push(match t.query_scalar(login, "PRAGMA page_count") {
                Ok(Some(v)) if v == want.to_string() => {
                    builtin("page_count", true, format!("{v} pages, as recorded"))
                }
                Ok(v) => builtin(
                    "page_count",
                    false,
                    format!("{v:?} pages, the snapshot recorded {want}"),
                ),
                Err(e) => builtin("page_count", false, e.to_string()),
            });
        }
    } else if let Some(tables) = info.get("tables").and_then(|v| v.as_array()) {
        tables_and_rows(plan, tables, out);
    }
    for (i, c) in plan.checks.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        out.push(user_check(plan, i, c));
    }
}

fn tables_and_rows(plan: &DrillPlan, tables: &[serde_json::Value], out: &mut Vec<CheckResult>) {
    let t = &plan.scratch;
    let login = &plan.login;
    let found = match t.list_tables(login) {
        Ok(f) => f,
        Err(e) => {
            out.push(builtin("tables", false, e.to_string()));
            return;
        }
    };
    let postgres = matches!(t, DbTarget::Postgres(_));
    let recorded: Vec<(TableName, Option<u64>, bool)> = tables
        .iter()
        .filter_map(|v| {
            let name = v.get("name")?.as_str()?.to_string();
            let schema = if postgres {
                v.get("schema").and_then(|s| s.as_str()).map(str::to_string)
            } else {
                None
            };
            let rows = v.get("rows").and_then(|r| r.as_u64());
            let exact = v.get("exact").and_then(|e| e.as_bool()).unwrap_or(false);
            Some((TableName { schema, name }, rows, exact))
        })
        .collect();
    let missing: Vec<String> = recorded
        .iter()
        .filter(|(n, _, _)| !found.contains(n))
        .map(|(n, _, _)| n.to_string())
        .collect();
    out.push(if missing.is_empty() {
        builtin(
            "tables",
            true,
            format!("all {} recorded tables exist", recorded.len()),
        )
    } else {
        builtin(
            "tables",
            false,
            format!("missing after the load: {}", missing.join(", ")),
        )
    });
    let mut bad = Vec::new();
    let mut counted = 0;
    for (name, rows, exact) in &recorded {
        let Some(want) = rows else { continue };
        if !found.contains(name) {
            continue;
        }
        counted += 1;
        match t.count_rows(login, name) {
            Ok(got) => {
                let slack = if *exact {
                    0
                } else {
                    ((*want as f64) * plan.row_tolerance_pct / 100.0).ceil() as u64
                };
                let slack = if *exact {
                    0
                } else {
                    slack.max(ROW_TOLERANCE_FLOOR)
                };
                if got.abs_diff(*want) > slack {
                    bad.push(format!(
                        "{name}: {got} rows, the snapshot recorded {want} ({})",
                        if *exact {
                            "exact".to_string()
                        } else {
                            format!("estimate, tolerance {slack}")
                        }
                    ));
                }
            }
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    out.push(if bad.is_empty() {
        builtin(
            "row_counts",
            true,
            format!("{counted} tables match the recorded counts"),
        )
    } else {
        builtin("row_counts", false, bad.join("; "))
    });
}

fn as_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "t" | "true" | "1" | "yes" | "on" => Some(true),
        "f" | "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn user_check(plan: &DrillPlan, i: usize, c: &DrillCheck) -> CheckResult {
    let started = plan.snapshot_started_at;
    let sql = c
        .sql
        .replace("{snapshot_started_at}", &rfc3339::format(started))
        .replace(
            "{snapshot_started_epoch}",
            &started.unix_timestamp().to_string(),
        );
    let mut r = CheckResult {
        name: c.name.clone(),
        public_name: format!("check[{i}]"),
        passed: false,
        detail: String::new(),
        sql: Some(sql.clone()),
        value: None,
    };
    let value = match plan.scratch.query_scalar(&plan.login, &sql) {
        Ok(v) => v,
        Err(e) => {
            r.detail = format!("the query failed: {e}");
            return r;
        }
    };
    r.value = value.clone();
    let Some(v) = value else {
        r.detail = "the query returned no row or NULL".into();
        return r;
    };
    let num = v.trim().parse::<f64>().ok();
    let (passed, want) = match (&c.expect, c.min, c.max) {
        (Some(toml::Value::Boolean(b)), ..) => (as_bool(&v) == Some(*b), b.to_string()),
        (Some(e @ (toml::Value::Integer(_) | toml::Value::Float(_))), ..) => {
            let want = match e {
                toml::Value::Integer(n) => *n as f64,
                toml::Value::Float(f) => *f,
                _ => unreachable!(),
            };
            (num == Some(want), expect_text(e))
        }
        (Some(e), ..) => (v == expect_text(e), format!("{:?}", expect_text(e))),
        (None, lo, hi) => (
            num.is_some_and(|n| lo.is_none_or(|lo| n >= lo) && hi.is_none_or(|hi| n <= hi)),
            format!(
                "a number{}{}",
                lo.map(|l| format!(" >= {l}")).unwrap_or_default(),
                hi.map(|h| format!(" <= {h}")).unwrap_or_default()
            ),
        ),
    };
    r.passed = passed;
    r.detail = if passed {
        format!("returned {v:?}")
    } else {
        format!("returned {v:?}, expected {want}")
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_safe_identifiers() {
        let t = time::macros::datetime!(2026-11-21 23:04:05 UTC);
        assert_eq!(
            scratch_name("Orders-db.main", t),
            "lockbox_drill_orders_db_main_20261121230405"
        );
        assert!(scratch_name(&"x".repeat(64), t).len() <= 63);
    }
}
