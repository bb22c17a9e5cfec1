//! What a drill leaves behind: the attestation (a public outcome anyone
//! with the ID key can check, with the details sealed to the recipients)
//! and the local catalog's verification row.
//!
//! This crate only builds them; the caller writes them, so restore itself
//! still never holds a writable backend.

use lockbox_vault::attestation::{Attestation, AttestationError, PublicCheck};
use lockbox_vault::catalog::{VerificationKind, VerificationRow};
use lockbox_vault::error::ErrorClass;
use lockbox_vault::format::{ATTESTATION_TAG, ATTESTATION_VERSION};
use lockbox_vault::manifest::Manifest;
use lockbox_vault::repository::{RepoConfig, RepoError, SnapshotRef};
use lockbox_vault::rfc3339;
use time::{Duration, OffsetDateTime};

use crate::drill::DrillReport;

/// Why an attestation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The repository's recipients could not be read.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// The details could not be sealed.
    #[error(transparent)]
    Attestation(#[from] AttestationError),
}

impl AttestError {
    /// See [`ErrorClass`].
    pub fn class(&self) -> ErrorClass {
        match self {
            AttestError::Repository(e) => e.class(),
            AttestError::Attestation(e) => e.class(),
        }
    }
}

/// A drill's attestation, sealed, and how long it must stay locked: at
/// least as long as the snapshot it speaks for, and at least a day.
pub fn drill_attestation(
    repo_config: &RepoConfig,
    snap: &SnapshotRef,
    manifest: &Manifest,
    report: &DrillReport,
    host: String,
    now: OffsetDateTime,
) -> Result<(Attestation, OffsetDateTime), AttestError> {
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.public_name.as_str())
        .collect();
    let mut a = Attestation {
        format: ATTESTATION_TAG.into(),
        version: ATTESTATION_VERSION,
        repository: repo_config.id.clone(),
        source: snap.source.clone(),
        kind: "drill".into(),
        snapshot: snap.id,
        snapshot_started_at: manifest.started_at,
        snapshot_retain_until: manifest.retain_until,
        passed: report.passed,
        started_at: parse_time(&report.started_at, now),
        finished_at: parse_time(&report.finished_at, now),
        restore_seconds: report.restore_seconds,
        data_age_seconds: report.data_age_seconds,
        bytes: report.bytes,
        checks: report
            .checks
            .iter()
            .map(|c| PublicCheck {
                name: c.public_name.clone(),
                passed: c.passed,
            })
            .collect(),
        summary: public_summary(report, &failed),
        lockbox_version: env!("CARGO_PKG_VERSION").into(),
        host,
        sealed: String::new(),
    };
    // The scratch database's name, the engine and the checks' details can
    // name tables and servers: only the recipients may read them.
    let secret = serde_json::json!({
        "engine": report.engine,
        "scratch": report.scratch,
        "failure": report.failure,
        "checks": report.checks,
    });
    a.seal(&repo_config.recipients()?, &secret)?;
    let until = manifest.retain_until.max(now + Duration::days(1));
    Ok((a, until))
}

/// The catalog row that records a drill (and its attestation, if written).
pub fn drill_record(
    snap: &SnapshotRef,
    manifest: &Manifest,
    report: &DrillReport,
    attestation_key: Option<String>,
) -> VerificationRow {
    VerificationRow {
        source: snap.source.clone(),
        snapshot: snap.id.to_hex(),
        snapshot_started_at: rfc3339::format(manifest.started_at),
        kind: VerificationKind::Drill,
        passed: report.passed,
        started_at: report.started_at.clone(),
        finished_at: report.finished_at.clone(),
        restore_seconds: report.restore_seconds,
        detail: Some(match &report.failure {
            None => format!("drill passed: {} checks", report.checks.len()),
            Some(f) => f.clone(),
        }),
        attestation_key,
    }
}

/// Public one-liner: which built-in or numbered check failed, no details.
fn public_summary(report: &DrillReport, failed: &[&str]) -> String {
    if report.passed {
        format!("drill passed: {} checks", report.checks.len())
    } else if failed.is_empty() {
        "drill failed before its checks (see the sealed part)".into()
    } else {
        format!("drill failed: {}", failed.join(", "))
    }
}

fn parse_time(s: &str, now: OffsetDateTime) -> OffsetDateTime {
    rfc3339::parse(s).unwrap_or(now)
}
