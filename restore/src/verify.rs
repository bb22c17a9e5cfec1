//! `lockbox verify`: finds every kind of damage without restoring.
//!
//! Without reading data (runs on the backup host, no identity): each
//! manifest's name is its keyed hash; each referenced object exists (a
//! delete marker or a newer version over a good locked version counts as
//! tampering, not loss), has the recorded stored size, and is locked at least
//! as long as every snapshot that needs it; the per-source hash chain has no
//! gap; and no snapshot this host's catalog knows (still locked) has vanished.
//! With `read_data`, stored bytes are also downloaded and checked against the
//! manifest's BLAKE3, and with an identity every chunk is decrypted and
//! checked against its keyed id. `sample_pct` reads a reproducible, seeded
//! subset of the objects.
//!
//! Objects are checked in parallel; an object shared by many snapshots is
//! checked once and a problem with it is charged to every snapshot using it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use lockbox_vault::envelope::Opener;
use lockbox_vault::format::{self, MAX_OBJECT_BYTES};
use lockbox_vault::ids::{IdKey, ObjectId};
use lockbox_vault::keys::Identities;
use lockbox_vault::manifest::{Manifest, ManifestError};
use lockbox_vault::repository::{self, RepoError, SnapshotRef};
use lockbox_vault::rfc3339;
use lockbox_vault::storage::{ReadBackend, StorageError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::RestoreProgress;

/// What kind of damage a problem is. Serialized in snake_case; kinds may be
/// added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The manifest's name is not the keyed hash of its bytes.
    ForgedManifest,
    /// The manifest cannot be read, parsed or unsealed.
    BadManifest,
    /// A snapshot's `previous` is not in the repository: deleted or withheld.
    ChainGap,
    /// A snapshot this host's catalog recorded, still within its lock, is
    /// gone from the repository listing: deleted or withheld.
    MissingSnapshot,
    /// An object a manifest references is not in the repository.
    MissingObject,
    /// An object's stored size differs from what the manifest recorded.
    SizeMismatch,
    /// The object is locked for less time than a snapshot that needs it.
    RetentionTooShort,
    /// Stored bytes differ from what the manifest recorded.
    CorruptObject,
    /// Decrypted plaintext does not match the chunk id, or does not decrypt.
    BadPlaintext,
    /// A delete marker or another version hides a good one (S3).
    Tampering,
    /// Warning only: the time a manifest claims is far from when storage
    /// received it (a wrong or forged writer clock).
    SuspiciousTime,
}

impl ProblemKind {
    /// The snake_case name, as serialized (e.g. `chain_gap`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::ForgedManifest => "forged_manifest",
            ProblemKind::BadManifest => "bad_manifest",
            ProblemKind::ChainGap => "chain_gap",
            ProblemKind::MissingSnapshot => "missing_snapshot",
            ProblemKind::MissingObject => "missing_object",
            ProblemKind::SizeMismatch => "size_mismatch",
            ProblemKind::RetentionTooShort => "retention_too_short",
            ProblemKind::CorruptObject => "corrupt_object",
            ProblemKind::BadPlaintext => "bad_plaintext",
            ProblemKind::Tampering => "tampering",
            ProblemKind::SuspiciousTime => "suspicious_time",
        }
    }
}

/// One finding of `verify`, for people and for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What kind of damage.
    pub kind: ProblemKind,
    /// The source concerned, where one is known.
    pub source: Option<String>,
    /// The snapshot concerned (short id), where there is one; for an object
    /// shared by several snapshots, the first (see `detail`).
    pub snapshot: Option<String>,
    /// The object key (or, for a chain gap, the missing snapshot's id).
    pub object: String,
    /// What exactly was found, for people.
    pub detail: String,
}

/// A snapshot the caller's catalog knows; one missing from the listing
/// while still locked is reported as [`ProblemKind::MissingSnapshot`].
#[derive(Debug, Clone)]
pub struct KnownSnapshot {
    /// The snapshot's manifest key.
    pub key: String,
    /// Its source.
    pub source: String,
    /// Its retain-until as recorded (UTC); until then it must still be listed.
    pub retain_until: OffsetDateTime,
}

/// What to verify and how deeply.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only this source's snapshots; `None`: all.
    pub source: Option<String>,
    /// A snapshot id prefix; with it, only that snapshot (and no chain check).
    pub snapshot: Option<String>,
    /// Download stored bytes and check them against the manifest's BLAKE3
    /// (otherwise only listings and heads).
    pub read_data: bool,
    /// Read only this percentage of objects (with `read_data`).
    pub sample_pct: Option<f64>,
    /// Seed of the `sample_pct` selection: the same seed picks the same objects.
    pub seed: u64,
    /// Decrypt and check each chunk's keyed id (with `read_data`).
    pub identities: Option<Identities>,
    /// Snapshots recorded by this host's catalog.
    pub known: Vec<KnownSnapshot>,
    /// Objects checked in parallel.
    pub workers: usize,
    /// Snapshots a prune audit record says were pruned: a chain gap whose
    /// missing predecessor is one of them is not a problem.
    pub pruned: HashSet<ObjectId>,
    /// Claimed vs storage time beyond this is a `suspicious_time` warning.
    pub time_tolerance: time::Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            source: None,
            snapshot: None,
            read_data: false,
            sample_pct: None,
            seed: 0,
            identities: None,
            known: Vec::new(),
            workers: 8,
            pruned: HashSet::new(),
            time_tolerance: time::Duration::minutes(15),
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotResult {
    /// Full manifest id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// The manifest's key.
    pub key: String,
    /// When its backup started (RFC 3339, UTC).
    pub started_at: String,
    /// Its retain-until (RFC 3339, UTC).
    pub retain_until: String,
    /// Stored bytes of the distinct objects it references.
    pub stored_bytes: u64,
    /// No problem is charged to it.
    pub passed: bool,
    /// Problems charged to this snapshot (its own or its objects').
    pub problems: usize,
}

/// The result; JSON fields may be added.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Snapshots verified.
    pub snapshots: usize,
    /// Distinct objects the snapshots reference (each checked once).
    pub objects: usize,
    /// Objects downloaded and checked (with `read_data`; fewer when sampling).
    pub objects_read: usize,
    /// Stored bytes downloaded.
    pub bytes_read: u64,
    /// Whether object bytes were read.
    pub read_data: bool,
    /// Whether chunks were decrypted and checked against their ids (an identity was given).
    pub decrypted: bool,
    /// The percentage of objects read, when sampling.
    pub sample_pct: Option<f64>,
    /// The sampling seed, when sampling.
    pub seed: Option<u64>,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// The verdict per snapshot.
    pub results: Vec<SnapshotResult>,
    /// Every problem found; verification failed if any.
    pub problems: Vec<Problem>,
    /// Findings that do not fail verification (e.g. `suspicious_time`).
    pub warnings: Vec<Problem>,
}

impl VerifyReport {
    /// No problem was found (warnings do not count).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Whether `id` falls into a `pct` % sample drawn with `seed`: a keyed hash
/// of the id, so the same seed always picks the same objects.
pub fn sampled(id: &ObjectId, pct: f64, seed: u64) -> bool {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let h = blake3::keyed_hash(&key, id.as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (x as f64) < (pct / 100.0) * (u64::MAX as f64)
}

/// Damage found in one object: (kind, detail).
type Found = Vec<(ProblemKind, String)>;

struct ObjectUse {
    /// The chunk id (for a delta object, of the chunk it decodes to).
    id: ObjectId,
    /// The object's key: a delta and the full chunk of the same id are
    /// different objects.
    key: String,
    /// The longest retention any snapshot needs of this object.
    need: OffsetDateTime,
    stored_len: u64,
    stored_hash: ObjectId,
    /// Plaintext length, when a sealed part was opened.
    plain_len: Option<u64>,
    /// Snapshots that reference it, in listing order.
    snapshots: Vec<ObjectId>,
    read: bool,
}

fn problem(kind: ProblemKind, snap: &SnapshotRef, object: &str, detail: String) -> Problem {
    Problem {
        kind,
        source: Some(snap.source.clone()),
        snapshot: Some(snap.id.short()),
        object: object.to_string(),
        detail,
    }
}

/// Picks the snapshots in scope.
fn select(backend: &dyn ReadBackend, opts: &VerifyOptions) -> Result<Vec<SnapshotRef>, RepoError> {
    let Some(prefix) = &opts.snapshot else {
        return repository::list_snapshots(backend, opts.source.as_deref());
    };
    Ok(vec![repository::find_snapshot(
        backend,
        opts.source.as_deref(),
        prefix,
    )?])
}

/// Verifies the snapshots `opts` selects (see the module doc). Problems are
/// reported in the [`VerifyReport`]; an error means verification could not run
/// (e.g. the repository cannot be listed).
pub fn verify(
    backend: &dyn ReadBackend,
    id_key: &IdKey,
    opts: &VerifyOptions,
    progress: &dyn RestoreProgress,
) -> Result<VerifyReport, RepoError> {
    let clock = Instant::now();
    let snaps = select(backend, opts)?;
    // Problems charged to snapshots, by manifest id.
    let mut problems: Vec<(Vec<ObjectId>, Problem)> = Vec::new();

    let mut manifests: Vec<(SnapshotRef, Manifest)> = Vec::new();
    for snap in &snaps {
        match repository::read_manifest(backend, id_key, snap) {
            Ok(m) => manifests.push((snap.clone(), m)),
            Err(RepoError::Manifest(e)) => {
                let kind = if matches!(e, ManifestError::NameMismatch { .. }) {
                    ProblemKind::ForgedManifest
                } else {
                    ProblemKind::BadManifest
                };
                problems.push((vec![snap.id], problem(kind, snap, &snap.key, e.to_string())));
            }
            Err(e) => return Err(e),
        }
    }

    // Manifests and the config must stay locked as long as the snapshots.
    for (snap, m) in &manifests {
        if let Some(p) = lock_problem(backend, &snap.key, m.retain_until)? {
            problems.push((
                vec![snap.id],
                problem(ProblemKind::RetentionTooShort, snap, &snap.key, p),
            ));
        }
    }
    if let Some((snap, m)) = manifests.iter().max_by_key(|(_, m)| m.retain_until)
        && let Some(p) = lock_problem(backend, format::CONFIG_KEY, m.retain_until)?
    {
        problems.push((
            Vec::new(),
            Problem {
                kind: ProblemKind::RetentionTooShort,
                source: Some(snap.source.clone()),
                snapshot: Some(snap.id.short()),
                object: format::CONFIG_KEY.into(),
                detail: format!("{p}; every snapshot needs the config to restore"),
            },
        ));
    }

    if opts.snapshot.is_none() {
        let present: HashSet<ObjectId> = snaps.iter().map(|s| s.id).collect();
        let present_keys: HashSet<&str> = snaps.iter().map(|s| s.key.as_str()).collect();
        // The hash chain, per source: every `previous` must still be there.
        // A chain gap is the snapshot's neighbour's problem, not its own
        // damage, so it is charged to no snapshot.
        let mut gaps: HashSet<String> = HashSet::new();
        for (snap, m) in &manifests {
            if let Some(prev) = m.previous
                && !present.contains(&prev)
                && !opts.pruned.contains(&prev)
            {
                gaps.insert(prev.to_hex());
                problems.push((
                    Vec::new(),
                    problem(
                        ProblemKind::ChainGap,
                        snap,
                        &prev.to_hex(),
                        format!(
                            "snapshot {} of {} names previous snapshot {} which is not in the \
                             repository: it was deleted or is being withheld",
                            snap.id.short(),
                            m.source,
                            prev.short()
                        ),
                    ),
                ));
            }
        }
        // Snapshots this host recorded that vanished while still locked
        // (the newest one has no successor to reveal it through the chain).
        let now = OffsetDateTime::now_utc();
        for k in &opts.known {
            let in_scope = opts.source.as_deref().is_none_or(|s| s == k.source);
            let id = format::parse_snapshot_key(&k.key).map(|(_, id)| id);
            if !in_scope
                || present_keys.contains(k.key.as_str())
                || k.retain_until <= now
                || id.is_some_and(|id| gaps.contains(&id.to_hex()))
            {
                continue;
            }
            problems.push((
                Vec::new(),
                Problem {
                    kind: ProblemKind::MissingSnapshot,
                    source: Some(k.source.clone()),
                    snapshot: id.map(|i| i.short()),
                    object: k.key.clone(),
                    detail: format!(
                        "this host's catalog recorded it, locked until {}, but it is gone from \
                         the repository: deleted or withheld",
                        rfc3339::format(k.retain_until)
                    ),
                },
            ));
        }
    }

    // Every object, once, with the longest retention any snapshot needs.
    let decrypt = opts.read_data && opts.identities.is_some();
    let mut by_key: BTreeMap<String, ObjectUse> = BTreeMap::new();
    for (snap, m) in &manifests {
        let lengths = match (&opts.identities, decrypt) {
            (Some(ids), true) => match m.unseal(ids, &snap.key) {
                Ok(part) => Some(part.chunk_lengths),
                Err(e) => {
                    problems.push((
                        vec![snap.id],
                        problem(ProblemKind::BadManifest, snap, &snap.key, e.to_string()),
                    ));
                    None
                }
            },
            _ => None,
        };
        for (i, c) in m.chunks.iter().enumerate() {
            // A delta's base is an object every snapshot using the delta
            // needs: checked (presence, size, lock, bytes) like any chunk.
            let base = c.delta_base();
            let uses = [
                Some((c.key(), c.id, c.stored_len, c.stored_hash)),
                base.map(|b| (b.key(), b.id, b.stored_len, b.stored_hash)),
            ];
            for (key, id, stored_len, stored_hash) in uses.into_iter().flatten() {
                let u = by_key.entry(key.clone()).or_insert_with(|| ObjectUse {
                    id,
                    key,
                    need: m.retain_until,
                    stored_len,
                    stored_hash,
                    plain_len: None,
                    snapshots: Vec::new(),
                    read: false,
                });
                u.need = u.need.max(m.retain_until);
                // A delta's plaintext needs its base to decode: restore and
                // drills check it; here its stored bytes are checked. A base
                // gets its plaintext length where a manifest stores it full.
                if u.plain_len.is_none() && base.is_none() {
                    u.plain_len = lengths.as_ref().map(|l| l[i]);
                }
                if u.snapshots.last() != Some(&snap.id) && !u.snapshots.contains(&snap.id) {
                    u.snapshots.push(snap.id);
                }
            }
        }
    }
    let mut objects: Vec<ObjectUse> = by_key.into_values().collect();
    for u in &mut objects {
        u.read = opts.read_data
            && opts
                .sample_pct
                .is_none_or(|pct| sampled(&u.id, pct, opts.seed));
    }
    progress.start(
        objects
            .iter()
            .filter(|u| u.read)
            .map(|u| u.stored_len)
            .sum(),
    );

    // Check objects in parallel; a storage error (not damage) stops the run.
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let failure: Mutex<Option<StorageError>> = Mutex::new(None);
    let found: Mutex<Vec<(usize, Found, u64)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.workers.clamp(1, objects.len().max(1)) {
            scope.spawn(|| {
                let mut opener = Opener::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= objects.len() || abort.load(Ordering::Relaxed) {
                        return;
                    }
                    match check_object(backend, id_key, opts, &objects[i], &mut opener) {
                        Ok((p, bytes)) => {
                            progress.written(bytes);
                            found.lock().expect("not poisoned").push((i, p, bytes));
                        }
                        Err(e) => {
                            abort.store(true, Ordering::Relaxed);
                            failure.lock().expect("not poisoned").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("not poisoned") {
        return Err(e.into());
    }
    let mut found = found.into_inner().expect("not poisoned");
    found.sort_by_key(|(i, _, _)| *i);
    let sources: HashMap<ObjectId, &SnapshotRef> =
        manifests.iter().map(|(s, _)| (s.id, s)).collect();
    let mut objects_read = 0;
    let mut bytes_read = 0;
    for (i, list, bytes) in found {
        let u = &objects[i];
        if objects[i].read {
            objects_read += 1;
            bytes_read += bytes;
        }
        let first = sources[&u.snapshots[0]];
        let others = u.snapshots.len() - 1;
        for (kind, detail) in list {
            let detail = if others > 0 {
                format!("{detail} (also used by {others} more snapshot(s))")
            } else {
                detail
            };
            problems.push((u.snapshots.clone(), problem(kind, first, &u.key, detail)));
        }
    }

    let mut charged: HashMap<ObjectId, usize> = HashMap::new();
    for (snaps, _) in &problems {
        for s in snaps {
            *charged.entry(*s).or_default() += 1;
        }
    }
    let results = manifests
        .iter()
        .map(|(s, m)| {
            let n = charged.get(&s.id).copied().unwrap_or(0);
            SnapshotResult {
                id: s.id.to_hex(),
                source: s.source.clone(),
                key: s.key.clone(),
                started_at: rfc3339::format(m.started_at),
                retain_until: rfc3339::format(m.retain_until),
                stored_bytes: m.stored_bytes,
                passed: n == 0,
                problems: n,
            }
        })
        .collect();
    Ok(VerifyReport {
        snapshots: snaps.len(),
        objects: objects.len(),
        objects_read,
        bytes_read,
        read_data: opts.read_data,
        decrypted: decrypt,
        sample_pct: opts.sample_pct,
        seed: opts.sample_pct.map(|_| opts.seed),
        seconds: clock.elapsed().as_secs_f64(),
        results,
        problems: problems.into_iter().map(|(_, p)| p).collect(),
        warnings: suspicious_times(&manifests, opts.time_tolerance),
    })
}

/// Snapshots whose claimed write time (`finished_at`) is further than
/// `tolerance` from the storage's timestamp of the manifest. Retention never
/// uses the claimed time; this only points at a wrong or forged clock.
fn suspicious_times(
    manifests: &[(SnapshotRef, Manifest)],
    tolerance: time::Duration,
) -> Vec<Problem> {
    manifests
        .iter()
        .filter_map(|(snap, m)| {
            let stored = snap.last_modified?;
            let skew = m.finished_at - stored;
            (skew.abs() > tolerance).then(|| {
                problem(
                    ProblemKind::SuspiciousTime,
                    snap,
                    &snap.key,
                    format!(
                        "the manifest claims it was written at {}, storage received it at {} \
                         ({}s apart, tolerance {}s); retention uses the storage's time",
                        rfc3339::format(m.finished_at),
                        rfc3339::format(stored),
                        skew.whole_seconds(),
                        tolerance.whole_seconds()
                    ),
                )
            })
        })
        .collect()
}

/// Why `key` is not locked until `need`, if it is not (a missing object is
/// left to the reads that follow).
fn lock_problem(
    backend: &dyn ReadBackend,
    key: &str,
    need: OffsetDateTime,
) -> Result<Option<String>, StorageError> {
    Ok(match backend.head(key)?.map(|i| i.retain_until) {
        None => None,
        Some(Some(t)) if t >= need => None,
        Some(Some(t)) => Some(format!(
            "locked until {}, but needed until {}",
            rfc3339::format(t),
            rfc3339::format(need)
        )),
        Some(None) => Some(format!(
            "not locked, but needed until {}",
            rfc3339::format(need)
        )),
    })
}

/// Checks one object; returns the damage found and the bytes read.
fn check_object(
    backend: &dyn ReadBackend,
    id_key: &IdKey,
    opts: &VerifyOptions,
    u: &ObjectUse,
    opener: &mut Opener,
) -> Result<(Found, u64), StorageError> {
    let key = u.key.clone();
    let mut found = Vec::new();
    let accept =
        |b: &[u8]| b.len() as u64 == u.stored_len && ObjectId::of_stored(b) == u.stored_hash;
    let tampered = |events: &[lockbox_vault::storage::TamperEvent]| {
        events
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    // The bytes fetched so far, if any (a version-aware read).
    let mut fetched = None;
    match backend.head(&key)? {
        None => {
            // A delete marker may hide a good older version (S3).
            match backend.get_verified(&key, MAX_OBJECT_BYTES, &accept) {
                Ok(v) if accept(&v.data) => {
                    found.push((
                        ProblemKind::Tampering,
                        format!(
                            "the current version is gone (delete marker) but a verified older \
                             version remains: {}",
                            tampered(&v.tampering)
                        ),
                    ));
                    fetched = Some(v.data);
                }
                Ok(_) => found.push((
                    ProblemKind::CorruptObject,
                    "no version of the object has the bytes the manifest recorded".into(),
                )),
                Err(e) if e.is_not_found() => {
                    found.push((ProblemKind::MissingObject, "not in the repository".into()))
                }
                Err(e) => return Err(e),
            }
        }
        Some(info) => {
            let short = match info.retain_until {
                Some(t) if t >= u.need => None,
                Some(t) => Some(format!(
                    "locked until {}, but a snapshot needs it until {}",
                    rfc3339::format(t),
                    rfc3339::format(u.need)
                )),
                None => Some(format!(
                    "not locked, but a snapshot needs it until {}",
                    rfc3339::format(u.need)
                )),
            };
            if let Some(short) = short {
                // The current version may be a planted one over the locked
                // original (S3): that is tampering, not a short lock.
                let v = backend.get_verified(&key, MAX_OBJECT_BYTES, &accept)?;
                if !v.tampering.is_empty() && accept(&v.data) {
                    found.push((
                        ProblemKind::Tampering,
                        format!(
                            "the current version ({short}) hides the verified original: {}",
                            tampered(&v.tampering)
                        ),
                    ));
                    fetched = Some(v.data);
                } else {
                    found.push((ProblemKind::RetentionTooShort, short));
                }
            }
            if info.size != u.stored_len && fetched.is_none() {
                // Another version over a good one (S3), or real damage.
                let v = backend.get_verified(&key, MAX_OBJECT_BYTES, &accept)?;
                if accept(&v.data) {
                    found.push((
                        ProblemKind::Tampering,
                        format!(
                            "the current version ({} bytes) hides the locked original: {}",
                            info.size,
                            tampered(&v.tampering)
                        ),
                    ));
                    fetched = Some(v.data);
                } else {
                    found.push((
                        ProblemKind::SizeMismatch,
                        format!(
                            "stored size {} bytes, manifest says {}",
                            info.size, u.stored_len
                        ),
                    ));
                    return Ok((found, 0));
                }
            }
        }
    }
    if !u.read {
        return Ok((found, 0));
    }
    let data = match fetched {
        Some(d) => d,
        None => {
            let v = backend.get_verified(&key, MAX_OBJECT_BYTES, &accept)?;
            if !v.tampering.is_empty() && accept(&v.data) {
                found.push((
                    ProblemKind::Tampering,
                    format!(
                        "a verified version was found behind others: {}",
                        tampered(&v.tampering)
                    ),
                ));
            }
            v.data
        }
    };
    let bytes = data.len() as u64;
    if !accept(&data) {
        found.push((
            ProblemKind::CorruptObject,
            "stored bytes differ from those the manifest recorded (BLAKE3 mismatch)".into(),
        ));
    } else if let (Some(ids), Some(len)) = (&opts.identities, u.plain_len) {
        match opener.open(ids, &data, len as usize) {
            Ok(plain) if id_key.id_of(&plain) == u.id => {}
            Ok(_) => found.push((
                ProblemKind::BadPlaintext,
                "plaintext does not match the chunk id (keyed BLAKE3)".into(),
            )),
            Err(e) => found.push((ProblemKind::BadPlaintext, e.to_string())),
        }
    }
    Ok((found, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_reproducible_and_roughly_the_asked_share() {
        let ids: Vec<ObjectId> = (0..2000u32)
            .map(|i| ObjectId::of_stored(&i.to_le_bytes()))
            .collect();
        let pick = |seed| ids.iter().filter(|id| sampled(id, 10.0, seed)).count();
        assert_eq!(pick(7), pick(7));
        let n = pick(7);
        assert!((120..=280).contains(&n), "{n} of 2000 at 10 %");
        assert_ne!(
            ids.iter()
                .filter(|id| sampled(id, 10.0, 7))
                .collect::<Vec<_>>(),
            ids.iter()
                .filter(|id| sampled(id, 10.0, 8))
                .collect::<Vec<_>>()
        );
        assert_eq!(ids.iter().filter(|id| sampled(id, 100.0, 1)).count(), 2000);
    }
}
