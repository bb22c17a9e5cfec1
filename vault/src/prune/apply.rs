//! Applying a reviewed plan with the pruner's `DeleteBackend`.
//!
//! Order, chosen so that a crash at any point leaves every remaining
//! snapshot restorable: check the confirmed digest; re-read the repository
//! and refuse if a snapshot the plan removes gained or lost versions, or a
//! snapshot it keeps vanished; compute references from every manifest
//! present now (new ones included) minus those about to go; write the
//! `.intent` audit record; delete manifest versions; then chunk versions that
//! no remaining manifest references, that did not change since the plan and
//! that are older than the plan's grace start; extend promoted snapshots'
//! locks (chunks before manifest, capped per run); write the `.done` record.
//! A refusal from storage (still retained) is reported, never retried.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::PruneError;
use super::audit::{self, AuditRecord, DeletedSnapshot, ObjectVersion};
use super::inventory;
use super::plan::{ObjectKind, Plan};
use crate::format::{PRUNE_RECORD_TAG, PRUNE_RECORD_VERSION};
use crate::ids::{IdKey, ObjectId};
use crate::storage::{DeleteBackend, StorageError};

/// What the operator decided for one apply, beyond the plan itself.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The digest the operator confirmed (`--confirm`).
    pub confirm: String,
    /// Audit records are locked at least this long.
    pub lock_days: u32,
    /// One run extends no lock beyond now plus this.
    pub max_extend_days: u32,
    /// Snapshots verified according to this host's catalog.
    pub verified: BTreeSet<ObjectId>,
    /// This host's name, written into the audit records.
    pub host: String,
}

/// An object version not deleted (or a lock not extended), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotDone {
    /// The object's key.
    pub key: String,
    /// The storage's version id, where one applies (`None` on the local backend
    /// and for lock extensions).
    pub version: Option<String>,
    /// Why it was skipped, refused or failed, for the operator.
    pub reason: String,
}

/// A promoted snapshot whose locks this apply extended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extended {
    /// The snapshot's manifest id (hex).
    pub snapshot: String,
    /// The manifest's object key.
    pub key: String,
    /// The retain-until the plan asked for (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub horizon: OffsetDateTime,
    /// The retain-until actually set: the horizon, capped at now plus `max_extend_days`.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// The horizon was beyond this run's `max_extend_days`.
    pub capped: bool,
    /// Objects whose lock was raised: every object the snapshot references, and
    /// its manifest.
    pub objects: usize,
}

/// What an apply did. JSON fields may be added.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Digest (64 hex) of the plan applied.
    pub plan_digest: String,
    /// When the apply started (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the apply finished (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Snapshots removed: every listed version of their manifest was deleted.
    pub snapshots_deleted: Vec<DeletedSnapshot>,
    /// Every object version deleted.
    pub objects_deleted: Vec<ObjectVersion>,
    /// Total size of the deleted versions, in bytes.
    pub bytes_deleted: u64,
    /// Not deleted by prune's own checks (referenced now, changed, newer than
    /// grace, newest verified snapshot, already gone).
    pub skipped: Vec<NotDone>,
    /// Refused by storage (still retained).
    pub refused: Vec<NotDone>,
    /// Other errors (reported, not retried).
    pub failed: Vec<NotDone>,
    /// Promoted snapshots whose locks were extended.
    pub extended: Vec<Extended>,
    /// Keys of the audit records this apply wrote (`.intent`, `.done`).
    pub audit_records: Vec<String>,
}

impl ApplyReport {
    /// Nothing was refused and nothing failed.
    pub fn clean(&self) -> bool {
        self.refused.is_empty() && self.failed.is_empty()
    }
}

fn versions_of<'a>(versions: impl Iterator<Item = &'a Option<String>>) -> BTreeSet<Option<String>> {
    versions.cloned().collect()
}

/// Applies a reviewed plan: checks the confirmed digest and the repository id,
/// re-reads the repository, refuses if what the plan deletes or keeps changed,
/// then deletes the listed versions (manifests first) and extends promoted
/// snapshots' locks, writing locked `.intent` and `.done` audit records.
///
/// Storage refusals and per-object failures are reported in the
/// [`ApplyReport`], not returned as errors; see [`ApplyReport::clean`].
pub fn apply(
    backend: &dyn DeleteBackend,
    id_key: &IdKey,
    repository: &str,
    plan: &Plan,
    opts: &ApplyOptions,
    now: OffsetDateTime,
) -> Result<ApplyReport, PruneError> {
    let digest = plan.digest();
    let confirmed = opts.confirm.trim().to_ascii_lowercase();
    if confirmed != digest {
        return Err(PruneError::DigestMismatch {
            actual: digest,
            confirmed: opts.confirm.clone(),
        });
    }
    if plan.repository != repository {
        return Err(PruneError::WrongRepository {
            planned: plan.repository.clone(),
            actual: repository.into(),
        });
    }
    let inv = inventory::gather(backend, id_key)?;

    // The state the plan was computed from, where it matters to the plan.
    let planned_manifests: BTreeSet<&str> = plan
        .delete
        .iter()
        .filter(|d| d.kind == ObjectKind::Manifest)
        .map(|d| d.key.as_str())
        .collect();
    for e in &plan.state {
        let cur = inv.snapshot(&e.key);
        if planned_manifests.contains(e.key.as_str()) {
            if let Some(cur) = cur
                && versions_of(cur.versions.iter().map(|v| &v.version))
                    != versions_of(e.versions.iter())
            {
                return Err(PruneError::StateChanged(format!(
                    "snapshot {} now has versions the plan did not see",
                    e.key
                )));
            }
        } else if cur.is_none() {
            return Err(PruneError::StateChanged(format!(
                "snapshot {}, which the plan keeps, is gone",
                e.key
            )));
        }
    }

    let mut report = ApplyReport {
        plan_digest: digest.clone(),
        started_at: now,
        finished_at: now,
        snapshots_deleted: Vec::new(),
        objects_deleted: Vec::new(),
        bytes_deleted: 0,
        skipped: Vec::new(),
        refused: Vec::new(),
        failed: Vec::new(),
        extended: Vec::new(),
        audit_records: Vec::new(),
    };
    let skip = |key: &str, version: &Option<String>, reason: &str| NotDone {
        key: key.into(),
        version: version.clone(),
        reason: reason.into(),
    };

    // Which manifests go: planned, still there, not the newest verified.
    let protected = inventory::protected(&inv, &opts.verified);
    let mut going: BTreeSet<&str> = BTreeSet::new();
    for key in &planned_manifests {
        match inv.snapshot(key) {
            Some(s) if protected.contains(&s.id) => {}
            Some(s) if s.manifest.is_some() => {
                going.insert(key);
            }
            _ => {}
        }
    }
    let mut referenced: BTreeSet<String> = inv
        .snapshots
        .iter()
        .filter(|s| !going.contains(s.key.as_str()))
        .flat_map(|s| s.refs.iter().cloned())
        .collect();

    let record = |phase: &str, r: &ApplyReport, snapshots: Vec<DeletedSnapshot>| AuditRecord {
        format: PRUNE_RECORD_TAG.into(),
        version: PRUNE_RECORD_VERSION,
        repository: repository.into(),
        phase: phase.into(),
        plan_digest: digest.clone(),
        started_at: now,
        finished_at: (phase == "done").then(OffsetDateTime::now_utc),
        host: opts.host.clone(),
        lockbox_version: env!("CARGO_PKG_VERSION").into(),
        snapshots_deleted: snapshots,
        objects_deleted: r.objects_deleted.clone(),
        bytes_deleted: r.bytes_deleted,
        objects_skipped: r.skipped.len(),
        objects_refused: r.refused.len(),
        locks_extended: r.extended.len(),
    };
    let lock = now + Duration::days(i64::from(opts.lock_days));
    let intent: Vec<DeletedSnapshot> = going
        .iter()
        .filter_map(|k| inv.snapshot(k))
        .map(|s| DeletedSnapshot {
            source: s.source.clone(),
            id: s.id.to_hex(),
            key: s.key.clone(),
        })
        .collect();
    report.audit_records.push(audit::write(
        backend,
        &record("intent", &report, intent),
        lock,
    )?);

    // Manifests (and garbage markers) first, then chunks.
    let mut failed_manifests: BTreeSet<String> = BTreeSet::new();
    for d in plan.delete.iter().filter(|d| d.kind != ObjectKind::Chunk) {
        let ok_to_delete = match d.kind {
            ObjectKind::Manifest => going.contains(d.key.as_str()),
            _ => inv.marker_only.contains_key(&d.key),
        };
        if !ok_to_delete {
            let reason = match inv.snapshot(&d.key) {
                None if d.kind == ObjectKind::Manifest => "already gone",
                Some(s) if protected.contains(&s.id) => {
                    "the newest verified snapshot of its source"
                }
                _ => "changed since the plan",
            };
            report.skipped.push(skip(&d.key, &d.version, reason));
            continue;
        }
        if !delete_one(backend, &mut report, &d.key, &d.version, d.size) {
            failed_manifests.insert(d.key.clone());
        }
    }
    for key in &going {
        let s = inv.snapshot(key).expect("going snapshots are listed");
        if failed_manifests.contains(*key) {
            // It stays: so do the chunks it references.
            referenced.extend(s.refs.iter().cloned());
        } else {
            report.snapshots_deleted.push(DeletedSnapshot {
                source: s.source.clone(),
                id: s.id.to_hex(),
                key: s.key.clone(),
            });
        }
    }

    let grace_start = plan.created_at - Duration::hours(i64::from(plan.grace_hours));
    let mut planned_chunk_versions: BTreeMap<&str, BTreeSet<Option<String>>> = BTreeMap::new();
    for d in plan.delete.iter().filter(|d| d.kind == ObjectKind::Chunk) {
        planned_chunk_versions
            .entry(&d.key)
            .or_default()
            .insert(d.version.clone());
    }
    for d in plan.delete.iter().filter(|d| d.kind == ObjectKind::Chunk) {
        let reason = match inv.chunks.get(&d.key) {
            _ if referenced.contains(&d.key) => Some("referenced by a snapshot present now"),
            None => Some("already gone"),
            Some(cur)
                if versions_of(cur.iter().map(|v| &v.version))
                    != planned_chunk_versions[d.key.as_str()] =>
            {
                Some("changed since the plan")
            }
            Some(cur)
                if cur
                    .iter()
                    .any(|v| v.last_modified.is_none_or(|t| t > grace_start)) =>
            {
                Some("newer than the plan's grace period")
            }
            Some(_) => None,
        };
        match reason {
            Some(r) => report.skipped.push(skip(&d.key, &d.version, r)),
            None => {
                delete_one(backend, &mut report, &d.key, &d.version, d.size);
            }
        }
    }

    // Promoted snapshots: chunks first, then the manifest, up to the cap.
    let cap = now + Duration::days(i64::from(opts.max_extend_days));
    for e in &plan.extend {
        let Some(s) = inv.snapshot(&e.key) else {
            report
                .skipped
                .push(skip(&e.key, &None, "gone: lock not extended"));
            continue;
        };
        let until = e.until.min(cap);
        let mut objects = 0;
        let mut ok = true;
        for key in s.refs.iter().chain(std::iter::once(&s.key)) {
            match backend.extend_retention(key, until) {
                Ok(()) => objects += 1,
                Err(err) => {
                    ok = false;
                    report
                        .failed
                        .push(skip(key, &None, &format!("extend lock: {err}")));
                    break;
                }
            }
        }
        if ok {
            report.extended.push(Extended {
                snapshot: e.snapshot.clone(),
                key: e.key.clone(),
                horizon: e.until,
                until,
                capped: e.until > cap,
                objects,
            });
        }
    }

    report.finished_at = OffsetDateTime::now_utc();
    let done = record("done", &report, report.snapshots_deleted.clone());
    report
        .audit_records
        .push(audit::write(backend, &done, lock)?);
    Ok(report)
}

/// Deletes one version; records the outcome. True if it is gone.
fn delete_one(
    backend: &dyn DeleteBackend,
    report: &mut ApplyReport,
    key: &str,
    version: &Option<String>,
    size: u64,
) -> bool {
    let not_done = |reason: String| NotDone {
        key: key.into(),
        version: version.clone(),
        reason,
    };
    match backend.delete_version(key, version.as_deref()) {
        Ok(()) => {
            report.objects_deleted.push(ObjectVersion {
                key: key.into(),
                version: version.clone(),
            });
            report.bytes_deleted += size;
            true
        }
        Err(e @ StorageError::Retained { .. }) => {
            report.refused.push(not_done(e.to_string()));
            false
        }
        Err(e) if e.is_not_found() => {
            report.skipped.push(not_done("already gone".into()));
            true
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "prune could not delete an object version");
            report.failed.push(not_done(e.to_string()));
            false
        }
    }
}
