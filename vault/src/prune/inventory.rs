//! What prune reads before deciding anything: every snapshot manifest (all
//! its versions, its trusted time and lock, what it references), every
//! chunk key's versions, and which snapshots have a passing attestation.
//! Plan and apply both gather one, so apply judges the repository as it is
//! when it deletes, not as it was when the plan was made.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::PruneError;
use crate::attestation;
use crate::format::{self, CHUNKS_PREFIX, SNAPSHOTS_PREFIX};
use crate::ids::{IdKey, ObjectId};
use crate::manifest::{Manifest, ManifestError};
use crate::repository::{self, RepoError, SnapshotRef};
use crate::storage::{ReadBackend, VersionInfo};

/// One snapshot key and what its manifest says.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotState {
    pub key: String,
    pub source: String,
    pub id: ObjectId,
    /// Every version and delete marker of the manifest key.
    pub versions: Vec<VersionInfo>,
    /// The oldest real version's LastModified: when storage received it.
    pub trusted_time: OffsetDateTime,
    /// The latest retain-until over the real versions.
    pub retain_until: Option<OffsetDateTime>,
    /// The name-checked manifest, or `None` for a manifest that is forged
    /// or unreadable (not a snapshot: never counted by a policy, never
    /// deleted by prune; `verify` reports it).
    pub manifest: Option<Manifest>,
    /// Object keys it references (for an invalid manifest, whatever its
    /// bytes name, so prune errs on the side of keeping).
    pub refs: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Snapshot keys with at least one real version, in key order.
    pub snapshots: Vec<SnapshotState>,
    /// Snapshot keys holding only delete markers (garbage).
    pub marker_only: BTreeMap<String, Vec<VersionInfo>>,
    /// Every chunk key's versions and delete markers.
    pub chunks: BTreeMap<String, Vec<VersionInfo>>,
    /// Snapshots with a passing attestation (drill or verify) in the repository.
    pub attested: BTreeSet<ObjectId>,
}

impl Inventory {
    pub fn snapshot(&self, key: &str) -> Option<&SnapshotState> {
        self.snapshots.iter().find(|s| s.key == key)
    }
}

/// The object keys a manifest references: each entry's object and, for a
/// delta, its base (a base must live as long as any delta needing it).
pub(crate) fn references(m: &Manifest) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in &m.chunks {
        out.insert(c.key());
        if let Some(b) = c.delta_base() {
            out.insert(b.key());
        }
    }
    out
}

fn grouped(
    backend: &dyn ReadBackend,
    prefix: &str,
) -> Result<BTreeMap<String, Vec<VersionInfo>>, PruneError> {
    let mut out: BTreeMap<String, Vec<VersionInfo>> = BTreeMap::new();
    backend.list_versions(prefix, &mut |v| {
        out.entry(v.key.clone()).or_default().push(v);
        Ok(())
    })?;
    for versions in out.values_mut() {
        versions.sort_by(|a, b| a.version.cmp(&b.version));
    }
    Ok(out)
}

pub(crate) fn gather(backend: &dyn ReadBackend, id_key: &IdKey) -> Result<Inventory, PruneError> {
    let mut inv = Inventory::default();
    for (key, versions) in grouped(backend, SNAPSHOTS_PREFIX)? {
        let Some((source, id)) = format::parse_snapshot_key(&key) else {
            tracing::warn!(key = %key, "ignoring object that is not a snapshot manifest");
            continue;
        };
        let real: Vec<&VersionInfo> = versions.iter().filter(|v| !v.delete_marker).collect();
        if real.is_empty() {
            inv.marker_only.insert(key, versions);
            continue;
        }
        let Some(trusted_time) = real.iter().filter_map(|v| v.last_modified).min() else {
            return Err(PruneError::UnknownReferences {
                key,
                reason: "storage reports no LastModified for it, so its age is unknown".into(),
            });
        };
        let mut retain_until: Option<OffsetDateTime> = None;
        for v in &real {
            if let Some(info) = backend.head_version(&key, v.version.as_deref())? {
                retain_until = retain_until.max(info.retain_until);
            }
        }
        let snap = SnapshotRef {
            key: key.clone(),
            source: source.clone(),
            id,
            size: real[0].size,
            last_modified: Some(trusted_time),
        };
        let (manifest, refs) = match repository::read_manifest(backend, id_key, &snap) {
            Ok(m) => {
                let refs = references(&m);
                (Some(m), refs)
            }
            Err(RepoError::Manifest(ManifestError::UnsupportedVersion { found, .. })) => {
                return Err(PruneError::UnknownReferences {
                    key,
                    reason: format!("manifest version {found} is newer than this Lockbox"),
                });
            }
            Err(RepoError::Manifest(e)) => {
                tracing::warn!(key = %key, error = %e, "invalid manifest: not pruned, its references kept");
                let refs = backend
                    .get(&key, format::MAX_MANIFEST_BYTES)
                    .ok()
                    .and_then(|b| Manifest::parse_unchecked(&b, &key).ok())
                    .map(|m| references(&m))
                    .unwrap_or_default();
                (None, refs)
            }
            Err(e) => return Err(e.into()),
        };
        inv.snapshots.push(SnapshotState {
            key,
            source,
            id,
            versions,
            trusted_time,
            retain_until,
            manifest,
            refs,
        });
    }
    inv.chunks = grouped(backend, CHUNKS_PREFIX)?;
    for r in attestation::list(backend, None)? {
        match attestation::read(backend, id_key, &r) {
            Ok(a) if a.passed => {
                inv.attested.insert(a.snapshot);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(key = %r.key, error = %e, "ignoring unreadable attestation"),
        }
    }
    Ok(inv)
}

/// Per source, the newest (by trusted time) valid snapshot in `verified`;
/// with none verified, the newest valid snapshot.
pub(crate) fn protected(inv: &Inventory, verified: &BTreeSet<ObjectId>) -> BTreeSet<ObjectId> {
    let mut newest_verified: BTreeMap<&str, &SnapshotState> = BTreeMap::new();
    let mut newest: BTreeMap<&str, &SnapshotState> = BTreeMap::new();
    let newer = |a: &SnapshotState, b: &SnapshotState| {
        (a.trusted_time, a.id.to_hex()) > (b.trusted_time, b.id.to_hex())
    };
    for s in inv.snapshots.iter().filter(|s| s.manifest.is_some()) {
        let slot = newest.entry(&s.source).or_insert(s);
        if newer(s, slot) {
            *slot = s;
        }
        if verified.contains(&s.id) || inv.attested.contains(&s.id) {
            let slot = newest_verified.entry(&s.source).or_insert(s);
            if newer(s, slot) {
                *slot = s;
            }
        }
    }
    newest
        .iter()
        .map(|(src, s)| newest_verified.get(src).unwrap_or(s).id)
        .collect()
}
