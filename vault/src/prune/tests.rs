//! Prune against the real local backend: synthetic repositories whose
//! storage timestamps (file mtimes) and locks are set by the test, so the
//! policy runs with a known clock without any hidden override.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use bytes::Bytes;
use time::{Duration, OffsetDateTime};

use super::PruneError;
use super::apply::{ApplyOptions, apply};
use super::audit;
use super::plan::{self, ObjectKind, Plan, PlanError, PlanOptions};
use crate::error::ErrorClass;
use crate::format::{self, MANIFEST_TAG};
use crate::ids::{IdKey, ObjectId};
use crate::manifest::{ChunkRef, DeltaBase, Manifest};
use crate::retention::Policy;
use crate::storage::{LocalBackend, ReadBackend, WriteBackend};

struct Repo {
    dir: tempfile::TempDir,
    b: LocalBackend,
    key: IdKey,
    now: OffsetDateTime,
}

const REPO: &str = "repo-id";

fn expired(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::days(1)
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(dir.path()).unwrap();
        Self {
            dir,
            b,
            key: IdKey::generate(),
            now: OffsetDateTime::now_utc(),
        }
    }

    /// Sets the storage timestamp of `key` (what LastModified reports).
    fn set_time(&self, key: &str, t: OffsetDateTime) {
        let f = std::fs::File::open(self.dir.path().join(key)).unwrap();
        f.set_modified(SystemTime::from(t)).unwrap();
    }

    /// A full chunk object, stored `age` ago, locked until `until`.
    fn chunk(&self, seed: u8, age: Duration, until: OffsetDateTime) -> ObjectId {
        let id = ObjectId::from_bytes([seed; 32]);
        let key = format::chunk_key(&id);
        self.b
            .put(&key, Bytes::from(vec![seed; 100]), until)
            .unwrap();
        self.set_time(&key, self.now - age);
        id
    }

    fn snapshot_with(
        &self,
        source: &str,
        claimed: OffsetDateTime,
        age: Duration,
        until: OffsetDateTime,
        chunks: Vec<ChunkRef>,
    ) -> (String, ObjectId) {
        let m = Manifest {
            format: MANIFEST_TAG.into(),
            version: 2,
            repository: REPO.into(),
            source: source.into(),
            kind: "stdin".into(),
            started_at: claimed,
            finished_at: claimed,
            retain_until: until,
            previous: None,
            input_bytes: 0,
            stored_bytes: 0,
            added_bytes: 0,
            lockbox_version: "test".into(),
            chunks,
            sealed: "sealed".into(),
        };
        let (bytes, id) = m.encode(&self.key);
        let key = format::snapshot_key(source, claimed, &id);
        self.b.put(&key, Bytes::from(bytes), until).unwrap();
        self.set_time(&key, self.now - age);
        (key, id)
    }

    /// A snapshot stored `age` ago (claiming that time too).
    fn snapshot(
        &self,
        source: &str,
        age: Duration,
        until: OffsetDateTime,
        chunks: &[ObjectId],
    ) -> (String, ObjectId) {
        let refs = chunks
            .iter()
            .map(|c| ChunkRef::full(*c, 100, ObjectId::from_bytes([0; 32])))
            .collect();
        self.snapshot_with(source, self.now - age, age, until, refs)
    }

    fn exists(&self, key: &str) -> bool {
        self.b.head(key).unwrap().is_some()
    }

    fn plan(&self, policy: Policy, verified: &[ObjectId]) -> Result<Plan, PruneError> {
        plan::compute(
            &self.b,
            &self.key,
            REPO,
            &options(policy, verified),
            self.now,
        )
    }

    fn apply(&self, plan: &Plan, verified: &[ObjectId]) -> Result<super::ApplyReport, PruneError> {
        apply(
            &self.b,
            &self.key,
            REPO,
            plan,
            &ApplyOptions {
                confirm: plan.digest(),
                lock_days: 7,
                max_extend_days: 400,
                verified: verified.iter().copied().collect(),
                host: "test".into(),
            },
            OffsetDateTime::now_utc(),
        )
    }
}

fn options(policy: Policy, verified: &[ObjectId]) -> PlanOptions {
    PlanOptions {
        policies: BTreeMap::new(),
        default_policy: policy,
        timezone: chrono_tz::UTC,
        tolerance: Duration::minutes(15),
        grace_hours: 24,
        verified: verified.iter().copied().collect(),
    }
}

fn last(n: u32) -> Policy {
    Policy {
        keep_last: Some(n),
        ..Policy::default()
    }
}

fn removed(p: &Plan) -> BTreeSet<String> {
    p.sources
        .iter()
        .flat_map(|s| &s.snapshots)
        .filter(|v| !v.keep)
        .map(|v| v.key.clone())
        .collect()
}

fn deleted_keys(p: &Plan, kind: ObjectKind) -> BTreeSet<String> {
    p.delete
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| d.key.clone())
        .collect()
}

fn day(n: i64) -> Duration {
    Duration::days(n)
}

#[test]
fn apply_deletes_only_expired_unreferenced_versions() {
    let r = Repo::new();
    let (old, soon) = (expired(r.now), r.now + day(30));
    let shared = r.chunk(1, day(5), soon);
    let only_oldest = r.chunk(2, day(5), old);
    let only_second = r.chunk(3, day(4), old);
    let newest_only = r.chunk(4, day(1), soon);
    let orphan = r.chunk(5, day(10), old);
    let fresh_orphan = r.chunk(6, Duration::hours(1), old);
    let locked_orphan = r.chunk(7, day(10), soon);
    let (s1, _) = r.snapshot("db", day(4), old, &[shared, only_oldest]);
    let (s2, _) = r.snapshot("db", day(3), old, &[shared, only_second]);
    let (s3, _) = r.snapshot("db", day(2), old, &[shared]);
    let (s4, _) = r.snapshot("db", day(1), soon, &[shared, newest_only]);
    // A locked snapshot outside keep_last is still kept.
    let (other_locked, _) = r.snapshot("other", day(9), soon, &[shared]);
    let (other_mid, _) = r.snapshot("other", day(5), old, &[shared]);
    let (other_new, _) = r.snapshot("other", day(1), old, &[shared]);

    let p = r.plan(last(2), &[]).unwrap();
    assert_eq!(removed(&p), BTreeSet::from([s1.clone(), s2.clone()]));
    let reasons = |key: &str| {
        p.sources
            .iter()
            .flat_map(|s| &s.snapshots)
            .find(|v| v.key == key)
            .unwrap()
            .reasons
            .clone()
    };
    assert_eq!(reasons(&s4)[..2], ["newest of source", "last 1"]);
    let locked = reasons(&other_locked);
    assert!(
        locked.len() == 1 && locked[0].starts_with("locked until"),
        "{locked:?}"
    );
    assert_eq!(
        deleted_keys(&p, ObjectKind::Manifest),
        BTreeSet::from([s1.clone(), s2.clone()])
    );
    let chunk_keys: BTreeSet<String> = [only_oldest, only_second, orphan]
        .iter()
        .map(format::chunk_key)
        .collect();
    assert_eq!(deleted_keys(&p, ObjectKind::Chunk), chunk_keys);
    let held: BTreeSet<&str> = p.held.iter().map(|h| h.key.as_str()).collect();
    assert!(held.contains(format::chunk_key(&fresh_orphan).as_str()));
    assert!(held.contains(format::chunk_key(&locked_orphan).as_str()));
    // Trusted and claimed times are both in the plan; no locked object is.
    for d in &p.delete {
        let info = r.b.head(&d.key).unwrap().unwrap();
        assert!(info.retain_until.unwrap() <= r.now, "{} is locked", d.key);
    }

    let report = r.apply(&p, &[]).unwrap();
    assert!(report.clean(), "{report:#?}");
    assert_eq!(report.snapshots_deleted.len(), 2);
    for k in deleted_keys(&p, ObjectKind::Manifest)
        .iter()
        .chain(&chunk_keys)
    {
        assert!(!r.exists(k), "{k} survived");
    }
    for k in [&s3, &s4, &other_locked, &other_mid, &other_new] {
        assert!(r.exists(k), "{k} was deleted");
    }
    for c in [shared, newest_only, fresh_orphan, locked_orphan] {
        assert!(r.exists(&format::chunk_key(&c)));
    }
    // Two locked audit records; verify learns the pruned ids from them.
    assert_eq!(report.audit_records.len(), 2);
    for k in &report.audit_records {
        let until = r.b.head(k).unwrap().unwrap().retain_until.unwrap();
        assert!(
            until >= r.now + day(7) - Duration::seconds(5),
            "{k} locked until {until}"
        );
    }
    let pruned = audit::pruned_snapshots(&r.b).unwrap();
    assert_eq!(pruned.len(), 2);
    let last = audit::last_done(&r.b).unwrap().unwrap();
    assert_eq!((last.snapshots_deleted, last.objects_deleted), (2, 5));
    // Applying the same plan again deletes nothing more and fails nothing.
    let again = r.apply(&p, &[]).unwrap();
    assert!(
        again.clean() && again.objects_deleted.is_empty(),
        "{again:#?}"
    );
}

#[test]
fn delta_bases_of_kept_snapshots_are_referenced() {
    let r = Repo::new();
    let old = expired(r.now);
    let base = r.chunk(1, day(5), old);
    let (s1, _) = r.snapshot("db", day(3), old, &[base]);
    // The newest snapshot holds only a delta against `base`.
    let delta_id = ObjectId::from_bytes([9; 32]);
    let b = DeltaBase {
        id: base,
        stored_len: 100,
        stored_hash: ObjectId::from_bytes([0; 32]),
    };
    let entry = ChunkRef::delta(delta_id, b, 10, ObjectId::from_bytes([0; 32]));
    r.b.put(&entry.key(), Bytes::from_static(b"delta"), old)
        .unwrap();
    r.set_time(&entry.key(), r.now - day(1));
    r.snapshot_with("db", r.now - day(1), day(1), old, vec![entry.clone()]);
    let p = r.plan(last(1), &[]).unwrap();
    assert_eq!(removed(&p), BTreeSet::from([s1]));
    assert!(
        deleted_keys(&p, ObjectKind::Chunk).is_empty(),
        "{:?}",
        p.delete
    );
}

#[test]
fn digest_mismatch_or_a_changed_repository_refuses() {
    let r = Repo::new();
    let old = expired(r.now);
    let c = r.chunk(1, day(5), old);
    let (s1, _) = r.snapshot("db", day(3), old, &[c]);
    let (s2, _) = r.snapshot("db", day(2), old, &[c]);
    let (s3, _) = r.snapshot("db", day(1), old, &[c]);
    let p = r.plan(last(2), &[]).unwrap();
    assert_eq!(removed(&p), BTreeSet::from([s1.clone()]));

    let mut opts = ApplyOptions {
        confirm: "0".repeat(64),
        lock_days: 7,
        max_extend_days: 400,
        verified: BTreeSet::new(),
        host: "t".into(),
    };
    let err = apply(&r.b, &r.key, REPO, &p, &opts, r.now).unwrap_err();
    assert!(
        matches!(err, PruneError::DigestMismatch { .. }) && err.class() == ErrorClass::Usage,
        "{err}"
    );
    opts.confirm = p.digest();
    let err = apply(&r.b, &r.key, "another", &p, &opts, r.now).unwrap_err();
    assert!(matches!(err, PruneError::WrongRepository { .. }), "{err}");
    assert!(r.exists(&s1));

    // A snapshot the plan keeps vanished (deleted behind prune's back).
    std::fs::remove_file(r.dir.path().join(&s2)).unwrap();
    let err = apply(&r.b, &r.key, REPO, &p, &opts, r.now).unwrap_err();
    assert!(
        matches!(err, PruneError::StateChanged(_)) && err.class() == ErrorClass::Operational,
        "{err}"
    );
    assert!(
        r.exists(&s1) && r.exists(&s3),
        "nothing may be deleted on refusal"
    );
    assert!(audit::list(&r.b).unwrap().is_empty());
}

#[test]
fn plan_files_round_trip_and_bad_ones_are_rejected() {
    let r = Repo::new();
    let old = expired(r.now);
    let c = r.chunk(1, day(5), old);
    r.chunk(2, day(5), old);
    r.snapshot("db", day(3), old, &[c]);
    r.snapshot("db", day(1), old, &[c]);
    let p = r.plan(last(1), &[]).unwrap();
    assert_eq!(deleted_keys(&p, ObjectKind::Chunk).len(), 1);
    let bytes = p.to_bytes();
    assert_eq!(Plan::from_bytes(&bytes).unwrap(), p);

    let text = String::from_utf8(bytes.clone()).unwrap();
    // Any change of content breaks the digest.
    let altered = text.replacen("\"grace_hours\": 24", "\"grace_hours\": 0", 1);
    assert_ne!(altered, text);
    assert_eq!(
        Plan::from_bytes(altered.as_bytes()),
        Err(PlanError::DigestMismatch)
    );
    // A consistent digest does not make a dangerous plan acceptable.
    let resealed = |f: &dyn Fn(&mut Plan)| {
        let mut q = p.clone();
        f(&mut q);
        Plan::from_bytes(&q.to_bytes())
    };
    type Edit = Box<dyn Fn(&mut Plan)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "config",
            Box::new(|q: &mut Plan| q.delete[0].key = "config".into()),
        ),
        (
            "attestation",
            Box::new(|q: &mut Plan| q.delete[0].key = "attestations/db/x".into()),
        ),
        (
            "escape",
            Box::new(|q: &mut Plan| {
                let last = q.delete.len() - 1;
                q.delete[last].key = "chunks/../config".into();
            }),
        ),
        (
            "kept snapshot",
            Box::new(|q: &mut Plan| {
                let kept = q.sources[0]
                    .snapshots
                    .iter()
                    .find(|v| v.keep)
                    .unwrap()
                    .key
                    .clone();
                q.delete[0].key = kept;
            }),
        ),
        (
            "locked removal",
            Box::new(|q: &mut Plan| {
                let v = q.sources[0].snapshots.iter_mut().find(|v| !v.keep).unwrap();
                v.retain_until = Some(q.created_at + Duration::days(1));
            }),
        ),
        (
            "reasonless keep",
            Box::new(|q: &mut Plan| q.sources[0].snapshots[0].reasons.clear()),
        ),
        (
            "tag",
            Box::new(|q: &mut Plan| q.format = "something".into()),
        ),
    ];
    for (name, f) in cases {
        match resealed(&*f) {
            Err(PlanError::Malformed(m)) => assert!(!m.is_empty(), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        resealed(&|q: &mut Plan| q.version = 9),
        Err(PlanError::UnsupportedVersion(9))
    ));
    for junk in [
        &b""[..],
        b"{}",
        b"[1,2]",
        b"\xff\xfe",
        b"{\"digest\":\"x\",\"plan\":{}}",
    ] {
        assert!(
            matches!(Plan::from_bytes(junk), Err(PlanError::Malformed(_))),
            "{junk:?}"
        );
    }
    let unknown = text.replacen("\"digest\"", "\"extra\": 1, \"digest\"", 1);
    assert!(matches!(
        Plan::from_bytes(unknown.as_bytes()),
        Err(PlanError::Malformed(_))
    ));
}

#[test]
fn a_backup_racing_the_prune_keeps_every_chunk_it_needs() {
    let r = Repo::new();
    let old = expired(r.now);
    let a = r.chunk(1, day(5), old);
    let b = r.chunk(2, day(5), old);
    let c = r.chunk(3, day(5), old);
    let (s1, _) = r.snapshot("db", day(3), old, &[a, b, c]);
    r.snapshot("db", day(1), old, &[a]);
    let p = r.plan(last(1), &[]).unwrap();
    assert_eq!(removed(&p), BTreeSet::from([s1.clone()]));
    assert_eq!(deleted_keys(&p, ObjectKind::Chunk).len(), 2);

    // After the plan, a backup reuses `b` (its manifest is already written)
    // and, still running, has extended `c`'s lock before referencing it.
    let (racer, _) = r.snapshot("db", Duration::ZERO, r.now + day(30), &[a, b]);
    r.b.extend_retention(&format::chunk_key(&c), r.now + day(30))
        .unwrap();

    let report = r.apply(&p, &[]).unwrap();
    assert!(!r.exists(&s1));
    assert!(r.exists(&racer));
    for id in [a, b, c] {
        assert!(
            r.exists(&format::chunk_key(&id)),
            "chunk {} was deleted",
            id.short()
        );
    }
    let bk = format::chunk_key(&b);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.key == bk && s.reason.contains("referenced"))
    );
    // Storage refused `c` (locked again): reported, not clean.
    assert_eq!(report.refused.len(), 1, "{report:#?}");
    assert!(!report.clean());
}

#[test]
fn the_newest_verified_snapshot_survives_any_policy() {
    let r = Repo::new();
    let old = expired(r.now);
    let c1 = r.chunk(1, day(5), old);
    let c2 = r.chunk(2, day(5), old);
    let (s1, id1) = r.snapshot("db", day(3), old, &[c1]);
    let (s2, id2) = r.snapshot("db", day(2), old, &[c2]);
    r.snapshot("db", day(1), old, &[c2]);
    // s1 verified by the catalog: kept although keep_last = 1.
    let p = r.plan(last(1), &[id1]).unwrap();
    assert_eq!(removed(&p), BTreeSet::from([s2.clone()]));
    // A plan made before s2 was verified: apply re-checks and keeps it.
    let p = r.plan(last(1), &[]).unwrap();
    assert_eq!(removed(&p), BTreeSet::from([s1.clone(), s2.clone()]));
    let report = r.apply(&p, &[id2]).unwrap();
    assert!(r.exists(&s2) && !r.exists(&s1));
    assert!(r.exists(&format::chunk_key(&c2)));
    assert!(!r.exists(&format::chunk_key(&c1)));
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.key == s2 && s.reason.contains("verified"))
    );
}

#[test]
fn a_flood_of_forged_times_does_not_remove_a_real_snapshot() {
    let r = Repo::new();
    let old = expired(r.now);
    let c = r.chunk(1, day(10), old);
    let policy = Policy {
        keep_daily: Some(3),
        ..Policy::default()
    };
    let real: Vec<String> = (1..=5)
        .map(|d| r.snapshot("db", day(d), old, &[c]).0)
        .collect();
    let before = r.plan(policy, &[]).unwrap();
    let kept_before: BTreeSet<String> = real
        .iter()
        .filter(|k| !removed(&before).contains(*k))
        .cloned()
        .collect();
    // The writer (who holds the ID key) floods snapshots claiming times
    // years ahead and years back; storage stamps them all "just now", all
    // within today (UTC, the policy's timezone), whatever the time of day the
    // test runs at.
    let since_midnight = (r.now - r.now.replace_time(time::Time::MIDNIGHT)).whole_seconds();
    for i in 0..40i64 {
        let claimed = if i % 2 == 0 {
            r.now + day(400 + i)
        } else {
            r.now - day(900 + i)
        };
        let age = Duration::seconds(since_midnight * i / 40).min(Duration::minutes(i));
        r.snapshot_with("db", claimed, age, old, Vec::new());
    }
    let after = r.plan(policy, &[]).unwrap();
    let kept_after: BTreeSet<String> = real
        .iter()
        .filter(|k| !removed(&after).contains(*k))
        .cloned()
        .collect();
    // Today's bucket goes to a flood snapshot; yesterday's and the day
    // before's real snapshots keep theirs.
    assert_eq!(kept_before.len(), 3);
    assert!(
        kept_after.contains(&real[0]) && kept_after.contains(&real[1]),
        "{kept_after:?}"
    );
    assert!(kept_before.is_superset(&kept_after));
    let flood: Vec<_> = after.sources[0]
        .snapshots
        .iter()
        .filter(|v| v.suspicious)
        .collect();
    assert_eq!(flood.len(), 40);
    assert!(
        after.sources[0]
            .snapshots
            .iter()
            .filter(|v| !v.suspicious)
            .all(|v| v.claimed_time == v.trusted_time
                || (v.claimed_time - v.trusted_time).abs() < Duration::seconds(1))
    );
}

#[test]
fn promoted_snapshots_are_locked_to_their_keep_horizon_capped_per_run() {
    let r = Repo::new();
    let old = expired(r.now);
    let c = r.chunk(1, day(100), old);
    r.snapshot("db", day(70), old, &[c]);
    r.snapshot("db", day(35), old, &[c]);
    let (newest, _) = r.snapshot("db", day(1), old, &[c]);
    let policy = Policy {
        keep_monthly: Some(12),
        ..Policy::default()
    };
    let p = r.plan(policy, &[]).unwrap();
    assert!(removed(&p).is_empty());
    assert_eq!(p.extend.len(), 3, "{:?}", p.extend);
    let horizon = p.extend.iter().find(|e| e.key == newest).unwrap().until;
    assert!(horizon > r.now + day(300), "{horizon}");
    let report = apply(
        &r.b,
        &r.key,
        REPO,
        &p,
        &ApplyOptions {
            confirm: p.digest(),
            lock_days: 7,
            max_extend_days: 10,
            verified: BTreeSet::new(),
            host: "t".into(),
        },
        r.now,
    )
    .unwrap();
    assert_eq!(report.extended.len(), 3);
    assert!(report.extended.iter().all(|e| e.capped && e.objects == 2));
    for k in [newest, format::chunk_key(&c)] {
        let until = r.b.head(&k).unwrap().unwrap().retain_until.unwrap();
        assert!(
            (until - (r.now + day(10))).abs() < Duration::seconds(2),
            "{k}: {until}"
        );
    }
}

/// Invariant 1: the code a backup runs never names a deleting backend.
#[test]
fn backup_code_cannot_reach_a_delete_backend() {
    for (name, text) in [
        ("vault/src/backup.rs", include_str!("../backup.rs")),
        ("vault/src/delta.rs", include_str!("../delta.rs")),
        (
            "src/commands/backup.rs",
            include_str!("../../../src/commands/backup.rs"),
        ),
        (
            "src/commands/daemon.rs",
            include_str!("../../../src/commands/daemon.rs"),
        ),
    ] {
        for banned in ["DeleteBackend", "open_delete", "delete_version", ".delete("] {
            assert!(!text.contains(banned), "{name} mentions {banned}");
        }
    }
}
