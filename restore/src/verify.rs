//! `lockbox verify`: finds every kind of damage without restoring.
//!
//! Without reading data (runs on the backup host, no identity): each
//! manifest's name is its keyed hash; each referenced object exists (a
//! delete marker over a good version counts as tampering, not loss), has the
//! recorded stored size, and is locked at least as long as its snapshot; the
//! per-source hash chain has no gap. With `read_data`, stored bytes are also
//! downloaded and checked against the manifest's BLAKE3, and with an
//! identity every chunk is decrypted and checked against its keyed id.
//! `sample_pct` checks a reproducible, seeded subset of the objects.

use std::collections::{BTreeMap, HashSet};

use lockbox_vault::envelope::Opener;
use lockbox_vault::format::MAX_OBJECT_BYTES;
use lockbox_vault::ids::{IdKey, ObjectId};
use lockbox_vault::keys::Identities;
use lockbox_vault::manifest::Manifest;
use lockbox_vault::repository::{self, RepoError, SnapshotRef};
use lockbox_vault::storage::{ReadBackend, StorageError};
use serde::Serialize;
use time::OffsetDateTime;

/// What kind of damage a problem is. Serialized in snake_case; kinds may be
/// added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The manifest's name is not the keyed hash of its bytes.
    ForgedManifest,
    /// The manifest cannot be read or parsed.
    BadManifest,
    /// A snapshot's `previous` is not in the repository: deleted or withheld.
    ChainGap,
    MissingObject,
    SizeMismatch,
    /// The object is locked for less time than a snapshot that needs it.
    RetentionTooShort,
    /// Stored bytes differ from what the manifest recorded.
    CorruptObject,
    /// Decrypted plaintext does not match the chunk id.
    BadPlaintext,
    /// A delete marker or altered version hides a good one (S3).
    Tampering,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The snapshot concerned (short id), where there is one.
    pub snapshot: Option<String>,
    pub object: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub source: Option<String>,
    /// A snapshot id prefix; with it, only that snapshot (and no chain check).
    pub snapshot: Option<String>,
    pub read_data: bool,
    /// Check only this percentage of objects (with `read_data`).
    pub sample_pct: Option<f64>,
    pub seed: u64,
    /// Decrypt and check each chunk's keyed id (with `read_data`).
    pub identities: Option<Identities>,
}

/// The result; JSON fields may be added.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub snapshots: usize,
    pub objects: usize,
    pub objects_read: usize,
    pub bytes_read: u64,
    pub read_data: bool,
    pub decrypted: bool,
    pub sample_pct: Option<f64>,
    pub seed: Option<u64>,
    /// Full ids of snapshots in which no problem was found.
    pub clean_snapshots: Vec<String>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Whether `id` falls into a `pct` % sample drawn with `seed`: a keyed hash
/// of the id, so the same seed always picks the same objects.
fn sampled(id: &ObjectId, pct: f64, seed: u64) -> bool {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let h = blake3::keyed_hash(&key, id.as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (x as f64) < (pct / 100.0) * (u64::MAX as f64)
}

struct ObjectUse {
    /// The chunk id (for a delta object, of the chunk it decodes to).
    id: ObjectId,
    /// The longest retention any snapshot needs of this object.
    need: OffsetDateTime,
    stored_len: u64,
    stored_hash: ObjectId,
    /// Plaintext length, when a sealed part was opened.
    plain_len: Option<u64>,
    /// Snapshots (short ids) that reference it.
    snapshots: Vec<String>,
}

pub fn verify(
    backend: &dyn ReadBackend,
    id_key: &IdKey,
    opts: &VerifyOptions,
) -> Result<VerifyReport, RepoError> {
    let mut problems = Vec::new();
    let mut snaps = repository::list_snapshots(backend, opts.source.as_deref())?;
    if let Some(prefix) = &opts.snapshot {
        let source = opts.source.as_deref().unwrap_or_default();
        let one = repository::find_snapshot(backend, source, prefix)?;
        snaps.retain(|s| s.key == one.key);
    }

    let mut manifests: Vec<(SnapshotRef, Manifest)> = Vec::new();
    for snap in &snaps {
        match repository::read_manifest(backend, id_key, snap) {
            Ok(m) => manifests.push((snap.clone(), m)),
            Err(RepoError::Manifest(e)) => problems.push(Problem {
                kind: if matches!(
                    e,
                    lockbox_vault::manifest::ManifestError::NameMismatch { .. }
                ) {
                    ProblemKind::ForgedManifest
                } else {
                    ProblemKind::BadManifest
                },
                snapshot: Some(snap.id.short()),
                object: snap.key.clone(),
                detail: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }

    // The hash chain, per source: every `previous` must still be there.
    if opts.snapshot.is_none() {
        let present: HashSet<ObjectId> = snaps.iter().map(|s| s.id).collect();
        for (snap, m) in &manifests {
            if let Some(prev) = m.previous
                && !present.contains(&prev)
            {
                problems.push(Problem {
                    kind: ProblemKind::ChainGap,
                    snapshot: Some(snap.id.short()),
                    object: prev.to_hex(),
                    detail: format!(
                        "snapshot {} of {} names previous snapshot {} which is not in the \
                         repository: it was deleted or is being withheld",
                        snap.id.short(),
                        m.source,
                        prev.short()
                    ),
                });
            }
        }
    }

    // Every object, once, with the longest retention any snapshot needs.
    let decrypt = opts.read_data && opts.identities.is_some();
    // Keyed by object key: a delta object and the full chunk of the same id
    // are different objects. A delta's base is an object every snapshot
    // using the delta needs, checked like any chunk.
    let mut objects: BTreeMap<String, ObjectUse> = BTreeMap::new();
    for (snap, m) in &manifests {
        let lengths = match (&opts.identities, decrypt) {
            (Some(ids), true) => match m.unseal(ids, &snap.key) {
                Ok(part) => Some(part.chunk_lengths),
                Err(e) => {
                    problems.push(Problem {
                        kind: ProblemKind::BadManifest,
                        snapshot: Some(snap.id.short()),
                        object: snap.key.clone(),
                        detail: e.to_string(),
                    });
                    None
                }
            },
            _ => None,
        };
        for (i, c) in m.chunks.iter().enumerate() {
            let base = c.delta_base();
            let uses = [
                Some((c.key(), c.id, c.stored_len, c.stored_hash)),
                base.map(|b| (b.key(), b.id, b.stored_len, b.stored_hash)),
            ];
            for (key, id, stored_len, stored_hash) in uses.into_iter().flatten() {
                let u = objects.entry(key).or_insert_with(|| ObjectUse {
                    id,
                    need: m.retain_until,
                    stored_len,
                    stored_hash,
                    plain_len: None,
                    snapshots: Vec::new(),
                });
                u.need = u.need.max(m.retain_until);
                // Decoding a delta needs its base: restore and drills check
                // delta plaintexts; here their stored bytes are checked.
                if u.plain_len.is_none() && base.is_none() {
                    u.plain_len = lengths.as_ref().map(|l| l[i]);
                }
                let short = snap.id.short();
                if !u.snapshots.contains(&short) {
                    u.snapshots.push(short);
                }
            }
        }
    }

    let mut objects_read = 0usize;
    let mut bytes_read = 0u64;
    let mut opener = Opener::new();
    let mut bad_snapshots: HashSet<String> =
        problems.iter().filter_map(|p| p.snapshot.clone()).collect();
    for (object_key, u) in &objects {
        let (id, key) = (&u.id, object_key.clone());
        let first = u.snapshots.first().cloned();
        let mut found: Vec<Problem> = Vec::new();
        let mut push = |kind, detail: String| {
            found.push(Problem {
                kind,
                snapshot: first.clone(),
                object: key.clone(),
                detail,
            })
        };
        let accept =
            |b: &[u8]| b.len() as u64 == u.stored_len && ObjectId::of_stored(b) == u.stored_hash;
        let read = opts.read_data
            && opts
                .sample_pct
                .is_none_or(|pct| sampled(id, pct, opts.seed));
        match backend.head(&key).map_err(RepoError::from)? {
            None => {
                // A delete marker may hide a good older version (S3).
                match backend.get_verified(&key, MAX_OBJECT_BYTES, &accept) {
                    Ok(v) if accept(&v.data) => push(
                        ProblemKind::Tampering,
                        format!(
                            "the current version is gone but a verified older version remains ({})",
                            v.tampering
                                .iter()
                                .map(|t| t.what.clone())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    ),
                    Ok(_) | Err(StorageError::NotFound { .. }) => {
                        push(ProblemKind::MissingObject, "not in the repository".into())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(info) => {
                if info.size != u.stored_len {
                    push(
                        ProblemKind::SizeMismatch,
                        format!(
                            "stored size {} bytes, manifest says {}",
                            info.size, u.stored_len
                        ),
                    );
                }
                match info.retain_until {
                    Some(t) if t >= u.need => {}
                    Some(t) => push(
                        ProblemKind::RetentionTooShort,
                        format!("locked until {t}, but a snapshot needs it until {}", u.need),
                    ),
                    None => push(
                        ProblemKind::RetentionTooShort,
                        format!("not locked, but a snapshot needs it until {}", u.need),
                    ),
                }
                if read {
                    let v = backend
                        .get_verified(&key, MAX_OBJECT_BYTES, &accept)
                        .map_err(RepoError::from)?;
                    objects_read += 1;
                    bytes_read += v.data.len() as u64;
                    for t in &v.tampering {
                        push(ProblemKind::Tampering, t.to_string());
                    }
                    if !accept(&v.data) {
                        push(
                            ProblemKind::CorruptObject,
                            "stored bytes differ from those the manifest recorded (BLAKE3 mismatch)".into(),
                        );
                    } else if let (Some(ids), Some(len)) = (&opts.identities, u.plain_len) {
                        match opener.open(ids, &v.data, len as usize) {
                            Ok(plain) if id_key.id_of(&plain) == *id => {}
                            Ok(_) => push(
                                ProblemKind::BadPlaintext,
                                "plaintext does not match the chunk id (keyed BLAKE3)".into(),
                            ),
                            Err(e) => push(ProblemKind::BadPlaintext, e.to_string()),
                        }
                    }
                }
            }
        }
        if !found.is_empty() {
            // Damage to a shared object damages every snapshot using it.
            bad_snapshots.extend(u.snapshots.iter().cloned());
            let others = u.snapshots.len().saturating_sub(1);
            for mut p in found {
                if others > 0 {
                    p.detail = format!("{} (also used by {others} more snapshot(s))", p.detail);
                }
                problems.push(p);
            }
        }
    }

    let clean_snapshots = manifests
        .iter()
        .filter(|(s, _)| !bad_snapshots.contains(&s.id.short()))
        .map(|(s, _)| s.id.to_hex())
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
        clean_snapshots,
        problems,
    })
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
