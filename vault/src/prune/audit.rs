//! Prune's audit trail: locked records of what each apply deleted.
//!
//! Every apply writes two records under `audit/prune/`: `.intent` before
//! the first delete (the snapshots it is about to remove) and `.done` at the
//! end (every version deleted, skipped or refused). Both are put with a lock
//! of at least `lock_days`, so the trail outlives what it describes. `verify`
//! reads them to tell a pruned predecessor from a deleted one, and catalog
//! sync caches the newest `.done` record for `status`.
//!
//! Records are plain JSON, not name-checked: whoever may put objects can add
//! one. They explain gaps, they do not authorise anything.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::format::{self, MAX_PRUNE_RECORD_BYTES, PRUNE_AUDIT_PREFIX, PRUNE_RECORD_TAG};
use crate::ids::ObjectId;
use crate::storage::{ReadBackend, StorageError, StorageResult, WriteBackend};

/// A snapshot named in an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSnapshot {
    /// Source the snapshot belongs to.
    pub source: String,
    /// The snapshot's manifest id (64 hex).
    pub id: String,
    /// The manifest's object key under `snapshots/`.
    pub key: String,
}

/// One object version prune deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// The object's key.
    pub key: String,
    /// The storage's version id (S3); `None` on a backend without versions (local).
    pub version: Option<String>,
}

/// One audit record. JSON fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Always [`PRUNE_RECORD_TAG`].
    pub format: String,
    /// Record document version ([`format::PRUNE_RECORD_VERSION`]).
    pub version: u32,
    /// Id of the repository (its config object's `id`) the apply ran against.
    pub repository: String,
    /// `intent` (written before deleting) or `done`.
    pub phase: String,
    /// Digest (64 hex) of the plan that was applied.
    pub plan_digest: String,
    /// When the apply started (UTC, the pruning host's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the apply finished; `None` in an `intent` record.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Name of the host that ran the apply.
    pub host: String,
    /// Version of the Lockbox that wrote the record.
    pub lockbox_version: String,
    /// `intent`: the snapshots about to be removed; `done`: those removed.
    pub snapshots_deleted: Vec<DeletedSnapshot>,
    /// Every object version deleted (empty in an `intent` record).
    pub objects_deleted: Vec<ObjectVersion>,
    /// Total size of the deleted versions, in bytes.
    pub bytes_deleted: u64,
    /// Planned deletions prune's own checks skipped (referenced again, changed,
    /// newer than the grace period, already gone).
    pub objects_skipped: usize,
    /// Deletions the storage refused (the version is still locked).
    pub objects_refused: usize,
    /// Promoted snapshots whose locks (manifest and chunks) were extended.
    pub locks_extended: usize,
}

/// Why an audit record could not be listed or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The backend failed while listing or reading audit records.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record is not valid JSON of an audit record or has another format tag.
    #[error("prune audit record {key}: {reason}")]
    Malformed {
        /// The record's storage key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AuditError {
    /// An audit record in the repository that does not parse is damage.
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            AuditError::Storage(e) => e.class(),
            AuditError::Malformed { .. } => crate::error::ErrorClass::Integrity,
        }
    }
}

/// The newest `.done` record's summary, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPrune {
    /// Key of the record (`audit/prune/…`).
    pub key: String,
    /// When that apply finished (RFC 3339, UTC).
    pub finished_at: String,
    /// Digest (64 hex) of the plan it applied.
    pub plan_digest: String,
    /// Host that ran the apply.
    pub host: String,
    /// Number of snapshots it removed.
    pub snapshots_deleted: usize,
    /// Number of object versions it deleted.
    pub objects_deleted: usize,
    /// Bytes it deleted.
    pub bytes_deleted: u64,
    /// Deletions the storage refused because the version was still locked.
    pub objects_refused: usize,
}

impl AuditRecord {
    /// The record's key: `audit/prune/<UTC start time>-<first 16 hex of the plan digest>.<phase>`.
    pub fn key(&self) -> String {
        format!(
            "{PRUNE_AUDIT_PREFIX}{}-{}.{}",
            format::compact_time(self.started_at),
            &self.plan_digest[..16.min(self.plan_digest.len())],
            self.phase
        )
    }

    /// The summary `status` shows, for this record stored under `key`.
    pub fn summary(&self, key: &str) -> LastPrune {
        LastPrune {
            key: key.into(),
            finished_at: crate::rfc3339::format(self.finished_at.unwrap_or(self.started_at)),
            plan_digest: self.plan_digest.clone(),
            host: self.host.clone(),
            snapshots_deleted: self.snapshots_deleted.len(),
            objects_deleted: self.objects_deleted.len(),
            bytes_deleted: self.bytes_deleted,
            objects_refused: self.objects_refused,
        }
    }
}

/// Puts a record locked until `retain_until` and flushes; returns its key.
pub fn write(
    backend: &dyn WriteBackend,
    record: &AuditRecord,
    retain_until: OffsetDateTime,
) -> StorageResult<String> {
    let key = record.key();
    let bytes = serde_json::to_vec_pretty(record).expect("record serializes");
    backend.put(&key, Bytes::from(bytes), retain_until)?;
    backend.flush()?;
    Ok(key)
}

/// Every record key, oldest first.
pub fn list(backend: &dyn ReadBackend) -> StorageResult<Vec<String>> {
    let mut keys = Vec::new();
    backend.list(PRUNE_AUDIT_PREFIX, &mut |i| {
        keys.push(i.key);
        Ok(())
    })?;
    Ok(keys)
}

/// Reads and parses the record at `key`; a wrong `format` tag is [`AuditError::Malformed`].
pub fn read(backend: &dyn ReadBackend, key: &str) -> Result<AuditRecord, AuditError> {
    let bytes = backend.get(key, MAX_PRUNE_RECORD_BYTES)?;
    let r: AuditRecord = serde_json::from_slice(&bytes).map_err(|e| AuditError::Malformed {
        key: key.into(),
        reason: e.to_string(),
    })?;
    if r.format != PRUNE_RECORD_TAG {
        return Err(AuditError::Malformed {
            key: key.into(),
            reason: format!("format tag is {:?}", r.format),
        });
    }
    Ok(r)
}

/// Ids of every snapshot an audit record says prune removed (or was about
/// to): `verify` does not report a chain gap for them.
pub fn pruned_snapshots(backend: &dyn ReadBackend) -> Result<BTreeSet<ObjectId>, AuditError> {
    let mut out = BTreeSet::new();
    for key in list(backend)? {
        match read(backend, &key) {
            Ok(r) => out.extend(
                r.snapshots_deleted
                    .iter()
                    .filter_map(|s| ObjectId::from_hex(&s.id).ok()),
            ),
            Err(e) => tracing::warn!(error = %e, "ignoring unreadable prune audit record"),
        }
    }
    Ok(out)
}

/// The newest finished apply, if any.
pub fn last_done(backend: &dyn ReadBackend) -> Result<Option<LastPrune>, AuditError> {
    let keys = list(backend)?;
    let Some(key) = keys.iter().rev().find(|k| k.ends_with(".done")) else {
        return Ok(None);
    };
    Ok(Some(read(backend, key)?.summary(key)))
}
