//! Verification records: which snapshot passed (or failed) a restore drill
//! or a full `verify --read-data`, and when. "The last verified backup" of a
//! source is the newest snapshot with a passing record.
//!
//! Drill records are also written to the repository as attestations, so a
//! catalog rebuild brings them back; a row names its attestation's key when
//! there is one.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Catalog, CatalogError};
use crate::attestation::{self, Attestation, AttestationError};
use crate::ids::IdKey;
use crate::repository::RepoError;
use crate::rfc3339;
use crate::storage::ReadBackend;

/// How a snapshot was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationKind {
    /// Restored into a scratch database and checked (`lockbox drill`).
    Drill,
    /// Every object read back and checked (`lockbox verify --read-data`,
    /// without `--sample`).
    Verify,
}

impl VerificationKind {
    /// `drill` or `verify`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationKind::Drill => "drill",
            VerificationKind::Verify => "verify",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "drill" {
            VerificationKind::Drill
        } else {
            VerificationKind::Verify
        }
    }
}

/// One verification of one snapshot. Times are RFC 3339 UTC. JSON fields
/// may be added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationRow {
    /// The source of the verified snapshot.
    pub source: String,
    /// Full hex id of the snapshot's manifest.
    pub snapshot: String,
    /// When the snapshot's backup started (the data's age is measured from it).
    pub snapshot_started_at: String,
    /// Drill or full verify.
    pub kind: VerificationKind,
    /// Whether every check passed.
    pub passed: bool,
    /// When the verification started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Drills: seconds to restore and load (the RTO this drill achieved).
    pub restore_seconds: Option<f64>,
    /// What failed, or a one-line summary.
    pub detail: Option<String>,
    /// The attestation object in the repository, if one was written.
    pub attestation_key: Option<String>,
}

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, snapshot TEXT NOT NULL,
    snapshot_started_at TEXT NOT NULL, kind TEXT NOT NULL, passed INTEGER NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT NOT NULL, restore_seconds REAL,
    detail TEXT, attestation_key TEXT UNIQUE);
 CREATE INDEX IF NOT EXISTS verifications_by_source
    ON verifications(source, passed, snapshot_started_at);";

const COLUMNS: &str = "source, snapshot, snapshot_started_at, kind, passed, started_at,
    finished_at, restore_seconds, detail, attestation_key";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VerificationRow> {
    Ok(VerificationRow {
        source: r.get(0)?,
        snapshot: r.get(1)?,
        snapshot_started_at: r.get(2)?,
        kind: VerificationKind::parse(&r.get::<_, String>(3)?),
        passed: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        restore_seconds: r.get(7)?,
        detail: r.get(8)?,
        attestation_key: r.get(9)?,
    })
}

impl Catalog {
    /// Records a verification. A row with the same attestation key is
    /// recorded once (so syncing attestations from the repository is
    /// idempotent).
    pub fn record_verification(&self, v: &VerificationRow) -> Result<(), CatalogError> {
        self.conn
            .execute(
                &format!(
                    "INSERT OR IGNORE INTO verifications ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    v.source,
                    v.snapshot,
                    v.snapshot_started_at,
                    v.kind.as_str(),
                    v.passed,
                    v.started_at,
                    v.finished_at,
                    v.restore_seconds,
                    v.detail,
                    v.attestation_key
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every verification, oldest first, optionally of one source.
    pub fn verifications(
        &self,
        source: Option<&str>,
    ) -> Result<Vec<VerificationRow>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM verifications
                 WHERE (?1 IS NULL OR source = ?1) ORDER BY finished_at, id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([source], from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The passing verification of `source`'s newest verified snapshot (if
    /// several passed for it, the latest one): "the last verified backup".
    pub fn last_verified(&self, source: &str) -> Result<Option<VerificationRow>, CatalogError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM verifications WHERE source = ?1 AND passed = 1
                     ORDER BY snapshot_started_at DESC, finished_at DESC, id DESC LIMIT 1"
                ),
                [source],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

impl VerificationRow {
    /// The row an attestation stands for.
    pub fn from_attestation(a: &Attestation, key: &str) -> Self {
        Self {
            source: a.source.clone(),
            snapshot: a.snapshot.to_hex(),
            snapshot_started_at: rfc3339::format(a.snapshot_started_at),
            kind: VerificationKind::parse(&a.kind),
            passed: a.passed,
            started_at: rfc3339::format(a.started_at),
            finished_at: rfc3339::format(a.finished_at),
            restore_seconds: a.restore_seconds,
            detail: Some(a.summary.clone()),
            attestation_key: Some(key.to_string()),
        }
    }
}

impl Catalog {
    /// Reads attestations the catalog does not hold yet into
    /// `verifications` (one LIST, one GET per new attestation). One whose
    /// name does not match its contents, or of a newer version, is logged
    /// and skipped. Returns how many rows were added.
    pub(super) fn sync_attestations(
        &mut self,
        backend: &dyn ReadBackend,
        id_key: &IdKey,
    ) -> Result<usize, CatalogError> {
        let known: std::collections::HashSet<String> = self
            .verifications(None)?
            .into_iter()
            .filter_map(|v| v.attestation_key)
            .collect();
        let mut added = 0;
        for r in attestation::list(backend, None)
            .map_err(CatalogError::Attestation)?
            .into_iter()
            .filter(|r| !known.contains(&r.key))
        {
            match attestation::read(backend, id_key, &r) {
                Ok(a) => {
                    self.record_verification(&VerificationRow::from_attestation(&a, &r.key))?;
                    added += 1;
                }
                Err(AttestationError::Storage(e)) => {
                    return Err(CatalogError::Repo(RepoError::Storage(e)));
                }
                Err(e) => tracing::warn!(key = %r.key, "skipping attestation: {e}"),
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(snapshot: &str, started: &str, passed: bool, finished: &str) -> VerificationRow {
        VerificationRow {
            source: "orders".into(),
            snapshot: snapshot.into(),
            snapshot_started_at: started.into(),
            kind: VerificationKind::Drill,
            passed,
            started_at: finished.into(),
            finished_at: finished.into(),
            restore_seconds: Some(1.5),
            detail: None,
            attestation_key: Some(format!("attestations/orders/{snapshot}-{finished}")),
        }
    }

    #[test]
    fn last_verified_is_the_newest_snapshot_that_passed() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db"), "repo").unwrap();
        assert_eq!(cat.last_verified("orders").unwrap(), None);
        let old_pass = row("aa", "2026-01-01T00:00:00Z", true, "2026-01-02T00:00:00Z");
        // A newer snapshot whose drill failed does not count…
        let new_fail = row("bb", "2026-01-03T00:00:00Z", false, "2026-01-04T00:00:00Z");
        cat.record_verification(&old_pass).unwrap();
        cat.record_verification(&new_fail).unwrap();
        assert_eq!(cat.last_verified("orders").unwrap(), Some(old_pass.clone()));
        // …and an older snapshot verified later does not displace a newer one.
        let newer_pass = row("cc", "2026-01-05T00:00:00Z", true, "2026-01-06T00:00:00Z");
        let late_old = row("dd", "2025-12-01T00:00:00Z", true, "2026-01-07T00:00:00Z");
        cat.record_verification(&newer_pass).unwrap();
        cat.record_verification(&late_old).unwrap();
        assert_eq!(cat.last_verified("orders").unwrap(), Some(newer_pass));
        assert_eq!(cat.last_verified("other").unwrap(), None);
        // Recording the same attestation twice keeps one row.
        cat.record_verification(&old_pass).unwrap();
        assert_eq!(cat.verifications(Some("orders")).unwrap().len(), 4);
    }
}
