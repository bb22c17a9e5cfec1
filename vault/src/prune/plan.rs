//! The prune plan: computing it, its JSON file, and its digest.
//!
//! The file is `{"digest": "<64 hex>", "plan": {...}}`. The digest is the
//! BLAKE3 hash of the canonical bytes of `plan` (compact JSON of the
//! [`Plan`] struct, fields in declaration order, times in RFC 3339 UTC), so
//! whitespace does not matter but any change of content does. It holds only
//! public facts (snapshot ids, object keys, version ids, times, reasons).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::PruneError;
use super::inventory::{self, Inventory};
use crate::format::{self, PRUNE_PLAN_TAG, PRUNE_PLAN_VERSION};
use crate::ids::{IdKey, ObjectId};
use crate::retention::{self, Policy, Reason};
use crate::rfc3339;
use crate::storage::{ReadBackend, VersionInfo};

/// A plan file larger than this is refused unread.
pub const MAX_PLAN_BYTES: usize = 256 * 1024 * 1024;

/// Why a plan file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The file is not JSON of a plan, has another format tag, or is inconsistent (a key that
    /// does not match its id, a removal of a snapshot still locked, …). The text says what.
    #[error("prune plan: not a valid plan file: {0}")]
    Malformed(String),
    /// The plan's content does not hash to the digest stored with it: it was altered.
    #[error(
        "prune plan: its content does not match its digest (the file was altered after it was \
         written); make a new plan"
    )]
    DigestMismatch,
    /// The plan's version is not this build's (a newer Lockbox wrote it). Holds the version found.
    #[error("prune plan: version {0} is newer than this Lockbox understands; upgrade Lockbox")]
    UnsupportedVersion(u32),
    /// The file is over [`MAX_PLAN_BYTES`]; it was not read.
    #[error("prune plan: larger than {MAX_PLAN_BYTES} bytes")]
    TooLarge,
}

impl PlanError {
    /// The plan file is the operator's input: a malformed, altered, too
    /// large or too new one is a usage error.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Usage
    }
}

/// What kind of object a deletion removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A version (or delete marker) of a removed snapshot's manifest.
    Manifest,
    /// A delete marker of a snapshot key with no real version left.
    Garbage,
    /// A version (or delete marker) of a chunk no kept snapshot references.
    Chunk,
}

/// One object version to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// Why the version goes: a removed snapshot's manifest, garbage, or an unreferenced chunk.
    pub kind: ObjectKind,
    /// The object's key.
    pub key: String,
    /// The store's version id; `None` on unversioned stores.
    pub version: Option<String>,
    /// The version is an S3 delete marker, not data.
    pub delete_marker: bool,
    /// Size of the version, in bytes.
    pub size: u64,
    /// The storage's LastModified of the version (UTC); `None` if it reported none.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_modified: Option<OffsetDateTime>,
}

/// An unreferenced object the plan does not delete, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Held {
    /// The chunk's key.
    pub key: String,
    /// Why it is held, e.g. "locked until …" or "written … (within the grace period)".
    pub reason: String,
}

/// A kept snapshot whose lock is to be extended to its keep horizon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// Source of the snapshot.
    pub source: String,
    /// The snapshot's manifest id (hex).
    pub snapshot: String,
    /// The manifest's key.
    pub key: String,
    /// The keep horizon (UTC) the chunks and manifest are to be locked until.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// Full manifest id.
    pub id: String,
    /// The manifest's key.
    pub key: String,
    /// The storage's timestamp (what the policy used).
    #[serde(with = "time::serde::rfc3339")]
    pub trusted_time: OffsetDateTime,
    /// When the manifest claims it was written (`finished_at`, the
    /// writer's clock; shown, never used).
    #[serde(with = "time::serde::rfc3339")]
    pub claimed_time: OffsetDateTime,
    /// The two differ by more than the tolerance.
    pub suspicious: bool,
    /// The manifest's current lock, if the storage reports one.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retain_until: Option<OffsetDateTime>,
    /// True: kept; false: the plan deletes it.
    pub keep: bool,
    /// Every rule that keeps it (empty: removed).
    pub reasons: Vec<String>,
    /// Until when the monthly/yearly rules keep it at least (see [`crate::retention`]);
    /// the lock is extended to this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub keep_horizon: Option<OffsetDateTime>,
}

/// The policy's verdicts for one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePlan {
    /// The source's name.
    pub source: String,
    /// The policy applied (the configured one, or the default).
    pub policy: Policy,
    /// Newest first (by trusted time).
    pub snapshots: Vec<Verdict>,
}

/// A snapshot key and its versions as the plan saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    /// The manifest's key.
    pub key: String,
    /// Its version ids when the plan was made (`None` on unversioned stores);
    /// apply refuses if a snapshot the plan deletes now has other versions.
    pub versions: Vec<Option<String>>,
}

/// A prune plan: everything apply will do, computed with read rights only and
/// confirmed by its [`digest`](Plan::digest). JSON fields are part of the plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Always [`PRUNE_PLAN_TAG`].
    pub format: String,
    /// Plan document version ([`PRUNE_PLAN_VERSION`]).
    pub version: u32,
    /// Repository id (from its config object).
    pub repository: String,
    /// The backend the plan was computed from, e.g. `s3://bucket/prefix` (no credentials).
    pub location: String,
    /// When the plan was computed (UTC); the grace period counts back from it.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// IANA timezone the policy's periods were counted in.
    pub timezone: String,
    /// Unreferenced chunks written within this many hours before `created_at` are held.
    pub grace_hours: u32,
    /// Claimed and trusted time may differ by this many seconds before a
    /// snapshot is flagged suspicious.
    pub tolerance_seconds: i64,
    /// Per-source verdicts, by source name.
    pub sources: Vec<SourcePlan>,
    /// Every snapshot key present when the plan was made.
    pub state: Vec<StateEntry>,
    /// In deletion order: manifests, garbage, then chunks.
    pub delete: Vec<Deletion>,
    /// Unreferenced chunks not deleted yet, and why.
    pub held: Vec<Held>,
    /// Kept snapshots whose locks are to be extended to their keep horizon.
    pub extend: Vec<Extension>,
    /// Snapshot keys whose manifest is forged or unreadable: not judged by
    /// the policy, not deleted (`verify` reports them).
    pub invalid: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    digest: String,
    plan: Plan,
}

/// What a plan is computed from besides the repository.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Policies of configured sources; others get `default_policy`.
    pub policies: BTreeMap<String, Policy>,
    /// Policy for sources the configuration does not name.
    pub default_policy: Policy,
    /// Timezone the periods of bucket rules are counted in.
    pub timezone: chrono_tz::Tz,
    /// How far a manifest's claimed time may differ from the storage's before it is flagged.
    pub tolerance: Duration,
    /// Unreferenced chunks newer than this many hours are held (a backup may be
    /// about to reference them).
    pub grace_hours: u32,
    /// Snapshots verified according to this host's catalog (full verify
    /// verdicts); passing attestations in the repository count too.
    pub verified: BTreeSet<ObjectId>,
}

/// Computes a plan at `now` (read rights only).
pub fn compute(
    backend: &dyn ReadBackend,
    id_key: &IdKey,
    repository: &str,
    opts: &PlanOptions,
    now: OffsetDateTime,
) -> Result<Plan, PruneError> {
    let inv = inventory::gather(backend, id_key)?;
    decide(&inv, backend, repository, opts, now)
}

pub(crate) fn decide(
    inv: &Inventory,
    backend: &dyn ReadBackend,
    repository: &str,
    opts: &PlanOptions,
    now: OffsetDateTime,
) -> Result<Plan, PruneError> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let protected = inventory::protected(inv, &opts.verified);
    let mut by_source: BTreeMap<&str, Vec<retention::Snapshot>> = BTreeMap::new();
    for s in inv.snapshots.iter() {
        let Some(m) = &s.manifest else { continue };
        by_source
            .entry(&s.source)
            .or_default()
            .push(retention::Snapshot {
                id: s.id.to_hex(),
                source: s.source.clone(),
                trusted_time: s.trusted_time,
                // When the writer says it put the manifest, to compare with
                // when storage received it.
                claimed_time: m.finished_at,
                retain_until: s.retain_until,
            });
    }
    let mut sources = Vec::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut extend = Vec::new();
    for (source, snaps) in &by_source {
        let policy = opts
            .policies
            .get(*source)
            .copied()
            .unwrap_or(opts.default_policy);
        let decisions = retention::select(snaps, &policy, opts.timezone, now, opts.tolerance);
        let mut verdicts = Vec::new();
        for (mut d, snap) in decisions.into_iter().zip(snaps) {
            let state = inv
                .snapshots
                .iter()
                .find(|s| s.id.to_hex() == d.id && &s.source == source)
                .expect("decision of a listed snapshot");
            // The newest verified snapshot (or, with none verified, the
            // newest, which `select` already keeps).
            if protected.contains(&state.id) && !d.reasons.contains(&Reason::NewestOfSource) {
                d.reasons.push(Reason::NewestVerified);
                d.keep = true;
            }
            if !d.keep {
                removed.insert(state.key.clone());
            } else if let Some(h) = d.keep_horizon
                && snap.retain_until.is_none_or(|r| r < h)
            {
                extend.push(Extension {
                    source: source.to_string(),
                    snapshot: d.id.clone(),
                    key: state.key.clone(),
                    until: h.to_offset(time::UtcOffset::UTC),
                });
            }
            verdicts.push(Verdict {
                id: d.id,
                key: state.key.clone(),
                trusted_time: d.trusted_time.to_offset(time::UtcOffset::UTC),
                claimed_time: d.claimed_time.to_offset(time::UtcOffset::UTC),
                suspicious: d.suspicious,
                retain_until: snap.retain_until.map(|t| t.to_offset(time::UtcOffset::UTC)),
                keep: d.keep,
                reasons: d.reasons.iter().map(ToString::to_string).collect(),
                keep_horizon: d.keep_horizon.map(|t| t.to_offset(time::UtcOffset::UTC)),
            });
        }
        verdicts.sort_by(|a, b| {
            b.trusted_time
                .cmp(&a.trusted_time)
                .then_with(|| b.id.cmp(&a.id))
        });
        sources.push(SourcePlan {
            source: source.to_string(),
            policy,
            snapshots: verdicts,
        });
    }

    let deletion = |kind, v: &VersionInfo| Deletion {
        kind,
        key: v.key.clone(),
        version: v.version.clone(),
        delete_marker: v.delete_marker,
        size: v.size,
        last_modified: v.last_modified.map(|t| t.to_offset(time::UtcOffset::UTC)),
    };
    let mut delete = Vec::new();
    let mut referenced: BTreeSet<&str> = BTreeSet::new();
    for s in &inv.snapshots {
        if removed.contains(&s.key) {
            delete.extend(s.versions.iter().map(|v| deletion(ObjectKind::Manifest, v)));
        } else {
            referenced.extend(s.refs.iter().map(String::as_str));
        }
    }
    for versions in inv.marker_only.values() {
        delete.extend(versions.iter().map(|v| deletion(ObjectKind::Garbage, v)));
    }
    let grace_start = now - Duration::hours(i64::from(opts.grace_hours));
    let mut held = Vec::new();
    for (key, versions) in &inv.chunks {
        if referenced.contains(key.as_str()) {
            continue;
        }
        match chunk_hold(backend, key, versions, now, grace_start)? {
            Some(reason) => held.push(Held {
                key: key.clone(),
                reason,
            }),
            None => delete.extend(versions.iter().map(|v| deletion(ObjectKind::Chunk, v))),
        }
    }

    let state = inv
        .snapshots
        .iter()
        .map(|s| StateEntry {
            key: s.key.clone(),
            versions: s.versions.iter().map(|v| v.version.clone()).collect(),
        })
        .collect();
    Ok(Plan {
        format: PRUNE_PLAN_TAG.into(),
        version: PRUNE_PLAN_VERSION,
        repository: repository.into(),
        location: backend.location(),
        created_at: now,
        timezone: opts.timezone.name().into(),
        grace_hours: opts.grace_hours,
        tolerance_seconds: opts.tolerance.whole_seconds(),
        sources,
        state,
        delete,
        held,
        extend,
        invalid: inv
            .snapshots
            .iter()
            .filter(|s| s.manifest.is_none())
            .map(|s| s.key.clone())
            .collect(),
    })
}

/// Why an unreferenced chunk key may not be deleted yet, if it may not.
pub(crate) fn chunk_hold(
    backend: &dyn ReadBackend,
    key: &str,
    versions: &[VersionInfo],
    now: OffsetDateTime,
    grace_start: OffsetDateTime,
) -> Result<Option<String>, PruneError> {
    for v in versions {
        match v.last_modified {
            Some(t) if t <= grace_start => {}
            Some(t) => {
                return Ok(Some(format!(
                    "written {} (within the grace period)",
                    rfc3339::format(t)
                )));
            }
            None => return Ok(Some("storage reports no LastModified".into())),
        }
    }
    for v in versions.iter().filter(|v| !v.delete_marker) {
        if let Some(info) = backend.head_version(key, v.version.as_deref())?
            && let Some(until) = info.retain_until
            && until > now
        {
            return Ok(Some(format!("locked until {}", rfc3339::format(until))));
        }
    }
    Ok(None)
}

impl Plan {
    /// BLAKE3 of the canonical plan bytes, hex.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("plan serializes");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// The plan file (pretty JSON with the digest).
    pub fn to_bytes(&self) -> Vec<u8> {
        let file = PlanFile {
            digest: self.digest(),
            plan: self.clone(),
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("plan serializes");
        out.push(b'\n');
        out
    }

    /// Decodes and checks a plan file: structure, version, its digest, and
    /// that it is self-consistent (it deletes only what it says it removes,
    /// never a kept or locked snapshot, never outside snapshots/ and chunks/).
    pub fn from_bytes(bytes: &[u8]) -> Result<Plan, PlanError> {
        if bytes.len() > MAX_PLAN_BYTES {
            return Err(PlanError::TooLarge);
        }
        #[derive(Deserialize)]
        struct Header {
            plan: HeaderPlan,
        }
        #[derive(Deserialize)]
        struct HeaderPlan {
            version: u32,
        }
        if let Ok(h) = serde_json::from_slice::<Header>(bytes)
            && h.plan.version > PRUNE_PLAN_VERSION
        {
            return Err(PlanError::UnsupportedVersion(h.plan.version));
        }
        let file: PlanFile =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Malformed(e.to_string()))?;
        let plan = file.plan;
        if plan.format != PRUNE_PLAN_TAG {
            return Err(PlanError::Malformed(format!(
                "format tag is {:?}, expected {PRUNE_PLAN_TAG:?}",
                plan.format
            )));
        }
        if plan.version != PRUNE_PLAN_VERSION {
            return Err(PlanError::UnsupportedVersion(plan.version));
        }
        if file.digest != plan.digest() {
            return Err(PlanError::DigestMismatch);
        }
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<(), PlanError> {
        let bad = |m: String| Err(PlanError::Malformed(m));
        let mut removed = BTreeSet::new();
        let mut kept = BTreeSet::new();
        for sp in &self.sources {
            for v in &sp.snapshots {
                if format::parse_snapshot_key(&v.key)
                    .is_none_or(|(s, id)| s != sp.source || id.to_hex() != v.id)
                {
                    return bad(format!(
                        "snapshot key {:?} does not match its id and source",
                        v.key
                    ));
                }
                if v.keep == v.reasons.is_empty() {
                    return bad(format!(
                        "snapshot {} is kept without a reason, or removed with one",
                        v.id
                    ));
                }
                if !v.keep && v.retain_until.is_some_and(|t| t > self.created_at) {
                    return bad(format!(
                        "snapshot {} is still locked but listed for removal",
                        v.id
                    ));
                }
                if v.keep {
                    kept.insert(v.key.as_str());
                } else {
                    removed.insert(v.key.as_str());
                }
            }
        }
        for d in &self.delete {
            let key_ok = crate::storage::check_key(String::new, &d.key, true).is_ok();
            let kind_ok = match d.kind {
                ObjectKind::Manifest => removed.contains(d.key.as_str()),
                ObjectKind::Garbage => {
                    d.delete_marker && format::parse_snapshot_key(&d.key).is_some()
                }
                ObjectKind::Chunk => d.key.starts_with(format::CHUNKS_PREFIX),
            };
            if !key_ok || !kind_ok || kept.contains(d.key.as_str()) {
                return bad(format!(
                    "deletion of {:?} ({:?}) is not one a plan can hold",
                    d.key, d.kind
                ));
            }
            if d.version
                .as_deref()
                .is_some_and(|v| v.is_empty() || v.len() > 1024)
            {
                return bad(format!("deletion of {:?} has an invalid version id", d.key));
            }
        }
        for e in &self.extend {
            if !kept.contains(e.key.as_str()) {
                return bad(format!(
                    "extension of {:?}, which the plan does not keep",
                    e.key
                ));
            }
        }
        Ok(())
    }
}
